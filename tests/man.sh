#!/bin/sh
# The man pages made by `make` from the headers (doc/man.awk) and rankpool-run's
# --help (doc/man1.awk): every public function has a page that leads to its group's
# page, which carries the function's prototype and its doc comment; rankpool(3)
# lists every status code; every page renders without a warning (groff, if
# installed); rankpool-run(1) lists the launcher's options.
#
# Environment (make check sets it): top_builddir, top_srcdir.
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-.}
top_builddir=$(cd "$top_builddir" && pwd)
man3=$top_builddir/man/man3
man1=$top_builddir/man/man1
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

[ -f "$man3/rankpool.3" ] || { echo "FAIL: no $man3/rankpool.3 (make did not make the pages)"; exit 1; }

n=0
for f in $(sed -n 's/^RP_API [^(]*[ *]\(rp_[a-z_]*\)(.*/\1/p' \
        "$top_srcdir/include/rankpool.h" "$top_srcdir/include/rankpool_mpi.h"); do
    n=$((n + 1))
    page=$man3/$f.3
    if [ ! -f "$page" ]; then fail "no page for $f"; continue; fi
    target=$(sed -n 's|^\.so man3/||p' "$page")
    if [ -z "$target" ] || [ ! -f "$man3/$target" ]; then fail "$f.3 leads nowhere ($target)"; continue; fi
    grep -q "^\.BI \"[^\"]*[ *]$f(" "$man3/$target" || fail "$target lacks the prototype of $f"
done
echo "man.sh: $n functions, each with a page"
[ "$n" -ge 40 ] || fail "only $n functions found in the headers"

# the doc comment's text is on the page (rankpool.h: rp_map's comment)
grep -q "outputs to out\[\] (out_size bytes each) in input order" "$man3/rankpool_work.3" ||
    fail "rankpool_work.3 lacks rp_map's description"
grep -q '^\.IP "\\fBReturns\\fP"' "$man3/rankpool_result.3" || fail "no Returns paragraphs"
for code in $(sed -n 's/^ *XX(\([A-Z]*\),.*/RP_\1/p' "$top_srcdir/include/rankpool.h"); do
    grep -q "^\.BR $code " "$man3/rankpool.3" || fail "rankpool.3 lacks $code"
done
for opt in --oversubscribe --launcher --tcp -x --dry-run; do
    grep -q "^\.B $opt" "$man1/rankpool-run.1" || fail "rankpool-run.1 lacks $opt"
done

if command -v groff >/dev/null 2>&1; then
    for p in "$man1"/*.1 "$man3"/rankpool*.3; do
        w=$(cd "$top_builddir/man" && groff -man -ww -z "$p" 2>&1)
        [ -z "$w" ] || fail "$p: $w"
    done
    echo "man.sh: every page renders without warnings"
else
    echo "man.sh: no groff: pages not rendered"
fi
[ $failed -eq 0 ] && echo "man.sh: all passed"
exit $((failed > 0))
