# rankpool-run(1), generated from the launcher's own --help text:
#
#   sh launch/rankpool-run --help | awk -f doc/man1.awk -v version=V -v date=D
#
# "Usage:" becomes SYNOPSIS, the text up to "Options:" DESCRIPTION (its indented
# command lines kept as they are), each "  -x, --long ARG   text" an option entry
# (with its continuation lines), the paragraphs after the options ENVIRONMENT and
# NOTES.

function esc(s) {
    gsub(/\\/, "\\e", s)
    if (s ~ /^[.']/) s = "\\&" s
    return s
}
function flush_pre() { if (pre) { print ".fi"; pre = 0 } }

BEGIN {
    printf ".TH RANKPOOL-RUN 1 \"%s\" \"rankpool %s\" \"rankpool\"\n", date, version
    print ".SH NAME"
    print "rankpool-run \\- run a rankpool program locally or on MPI ranks, unchanged"
    section = "head"
}

/^Usage: / {
    sub(/^Usage: /, "")
    print ".SH SYNOPSIS"
    print ".B " esc($0)
    print ".SH DESCRIPTION"
    section = "desc"
    next
}
/^Options:/ { flush_pre(); print ".SH OPTIONS"; section = "opts"; next }

section == "desc" {
    if ($0 == "") { flush_pre(); print ".PP"; next }
    if ($0 ~ /^  /) {
        if (!pre) { print ".nf"; pre = 1 }
        sub(/^  /, "")
        print esc($0)
    } else {
        flush_pre()
        print esc($0)
    }
    next
}

section == "opts" {
    if ($0 == "") { section = "tail"; next }
    if ($0 ~ /^  -/) {
        line = $0
        sub(/^  /, "", line)
        # option and its argument, then two or more spaces, then the text
        if (match(line, /   */)) {
            opt = substr(line, 1, RSTART - 1)
            text = substr(line, RSTART + RLENGTH)
        } else {
            opt = line; text = ""
        }
        print ".TP"
        print ".B " esc(opt)
        if (text != "") print esc(text)
    } else {
        sub(/^ +/, "")
        print esc($0)
    }
    next
}

section == "tail" {
    if ($0 == "") { print ".PP"; next }
    if (!started_tail) {
        started_tail = 1
        print ($0 ~ /^Environment/) ? ".SH ENVIRONMENT" : ".SH NOTES"
    }
    print esc($0)
}

END {
    print ".SH SEE ALSO"
    print ".BR rankpool (3),"
    print ".BR mpirun (1),"
    print ".BR srun (1),"
    print ".BR sbatch (1)"
    print ".PP"
    print "Slurm job-script templates: the launch directory of rankpool's data directory"
    print "(e.g. /usr/local/share/rankpool/launch/slurm-local.sbatch and slurm-mpi.sbatch)."
}
