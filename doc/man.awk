# Man pages of rankpool's API, generated from the doc comments of the public
# headers (doc/Makefile rules in Makefile.am run it; needs only a POSIX awk):
#
#   awk -f doc/man.awk -v outdir=DIR -v version=V -v date=D include/rankpool.h \
#       include/rankpool_mpi.h
#
# Writes DIR/rankpool.3 (overview, conventions, types, status codes), one page per
# function group of the headers (the "/* ---- name ---" sections of rankpool.h;
# rankpool_mpi.h is one group), DIR/rankpool_<group>.3, and for every function a
# page DIR/<function>.3 that sources its group's page (.so), so that
# `man rp_map` works. Prints the names of the pages it wrote.

function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }

# roff-safe text: backslashes doubled, a leading . or ' protected
function esc(s) {
    gsub(/\\/, "\\e", s)
    if (s ~ /^[.']/) s = "\\&" s
    return s
}

# a group's page name and title from its section header
function group_id(name,   id) {
    id = tolower(name)
    sub(/ *\(.*$/, "", id)
    gsub(/[^a-z0-9]+/, "_", id)
    sub(/_$/, "", id)
    if (id == "variable_size_outputs") id = "varout"
    if (id == "inside_a_task") id = "task"
    if (id == "results") id = "result"
    if (id == "shared_buffers_and_batch_tasks") id = "buffers"
    return id
}

function add_group(id, title) {
    if (!(id in gtitle)) {
        gorder[++ngroups] = id
        gtitle[id] = title
    }
}

BEGIN {
    # what each group's page is about (else its section title)
    about["errors"] = "status codes and their texts"
    about["pool"] = "create, inspect, close, join and free a pool"
    about["work"] = "map, apply and imap: give work to a pool"
    about["varout"] = "maps whose tasks produce outputs of any length"
    about["result"] = "asynchronous results (Python's AsyncResult)"
    about["control"] = "cancel work, wait for any of several results, callbacks added after submission"
    about["task"] = "what a running task can do: raise a failure, ask where it runs"
    about["mpi"] = "pools on MPI communicators (rankpool_mpi.h)"
    about["buffers"] = "memory shared with the workers (maps in place), and batch tasks"
}

# The doc comment (lines kept in doc[1..ndoc]) as roff, \param and \return made
# into paragraphs of their own.
function doc_roff(   i, line, out, tag) {
    out = ""
    for (i = 1; i <= ndoc; i++) {
        line = trim(doc[i])
        if (line == "") continue
        while (match(line, /\\(param|return|note)/)) {
            tag = substr(line, RSTART + 1, RLENGTH - 1)
            if (RSTART > 1) out = out esc(trim(substr(line, 1, RSTART - 1))) "\n"
            line = trim(substr(line, RSTART + RLENGTH))
            if (tag == "param") {
                match(line, /^[A-Za-z_0-9]+/)
                out = out ".IP \"\\fI" substr(line, 1, RLENGTH) "\\fP\" 4\n"
                line = trim(substr(line, RLENGTH + 1))
            } else if (tag == "return") {
                out = out ".IP \"\\fBReturns\\fP\" 4\n"
            } else {
                out = out ".IP \"\\fBNote\\fP\" 4\n"
            }
        }
        if (line != "") out = out esc(line) "\n"
    }
    return out
}

function header_of(file) { n = split(file, parts, "/"); return parts[n] }

FNR == 1 {
    hdr = header_of(FILENAME)
    group = ""
    if (hdr == "rankpool_mpi.h") {
        group = "mpi"
        add_group(group, "calls that name MPI types (rankpool_mpi.h)")
    }
    in_doc = 0; in_top = (FNR == 1); ndoc = 0; proto = ""
}

# the file's opening comment: rankpool.3's description (rankpool.h) or the mpi page's
in_top {
    line = $0
    done = sub(/ *\*\/.*$/, "", line)
    if (FNR == 1) sub(/^\/\* ?/, "", line)
    else sub(/^ \*? ?/, "", line)
    if (!done || line != "") top[hdr, ++ntop[hdr]] = line
    if (done) in_top = 0
    next
}

/^\/\* ---- .* -+ \*\/$/ {
    title = $0
    sub(/^\/\* ---- /, "", title)
    sub(/ -+ \*\/$/, "", title)
    group = group_id(title)
    add_group(group, title)
    next
}

# status codes: XX(NAME, value, "text")
/^ *XX\([A-Z]+, *-?[0-9]+, *".*"\)/ {
    line = $0
    sub(/^ *XX\(/, "", line)
    name = line; sub(/,.*$/, "", name)
    value = line; sub(/^[A-Z]+, */, "", value); sub(/,.*$/, "", value)
    text = line; sub(/^[^"]*"/, "", text); sub(/".*$/, "", text)
    ncodes++
    code_name[ncodes] = "RP_" name; code_value[ncodes] = value; code_text[ncodes] = text
    next
}

# the public types, verbatim, for rankpool.3: from RP_FOREVER to the first group
hdr == "rankpool.h" && /^#define RP_FOREVER/ { in_types = 1 }
in_types && group == "" { types[++ntypes] = $0 }

/^\/\*\*/ {
    in_doc = 1; ndoc = 0
    line = $0; sub(/^\/\*\* ?/, "", line)
    if (sub(/ *\*\/.*$/, "", line)) in_doc = 0
    doc[++ndoc] = line
    next
}
in_doc {
    line = $0; sub(/^ *\* ?/, "", line)
    if (sub(/ *\*\/.*$/, "", line)) in_doc = 0
    doc[++ndoc] = line
    next
}

/^RP_API / || proto != "" {
    proto = proto (proto == "" ? "" : " ") trim($0)
    if (proto !~ /;/) next
    p = proto
    proto = ""
    sub(/^RP_API +/, "", p)
    sub(/ *RP_PRINTF\([^)]*\)/, "", p)
    gsub(/ +/, " ", p)
    fname = p
    sub(/ *\(.*$/, "", fname)
    sub(/^.*[ *]/, "", fname)
    nf++
    f_name[nf] = fname
    f_proto[nf] = p
    f_group[nf] = group
    f_header[nf] = hdr
    f_doc[nf] = doc_roff()
    ndoc = 0
    next
}

{ ndoc = 0 }

function th(name, section, title) {
    return ".TH " toupper(name) " " section " \"" date "\" \"rankpool " version \
           "\" \"rankpool\"\n"
}

function see_also(except,   i, s) {
    s = ".SH SEE ALSO\n.BR rankpool (3)"
    for (i = 1; i <= ngroups; i++)
        if (gorder[i] != except)
            s = s ",\n.BR rankpool_" gorder[i] " (3)"
    return s ",\n.BR rankpool-run (1)\n"
}

END {
    # ---- one page per group ------------------------------------------------------
    for (gi = 1; gi <= ngroups; gi++) {
        g = gorder[gi]
        page = "rankpool_" g
        out = outdir "/" page ".3"
        names = ""
        for (i = 1; i <= nf; i++)
            if (f_group[i] == g) names = names (names == "" ? "" : ", ") f_name[i]
        printf "%s", th(page, 3) > out
        printf ".SH NAME\n%s \\- rankpool: %s\n", names, (g in about) ? about[g] : gtitle[g] > out
        printf ".SH SYNOPSIS\n.nf\n" > out
        inc = (g == "mpi") ? "rankpool_mpi.h" : "rankpool.h"
        printf ".B #include <%s>\n.PP\n", inc > out
        for (i = 1; i <= nf; i++)
            if (f_group[i] == g) printf ".BI \"%s\"\n", esc(f_proto[i]) > out
        printf ".fi\n" > out
        if (g == "mpi") {
            printf ".PP\nLink with\n.BR \"pkg-config --cflags --libs rankpool ompi-c\" ,\n" \
                   "or use\n.B mpicc\nwith\n.BR \"pkg-config --cflags --libs rankpool\" .\n" > out
        } else {
            printf ".PP\nLink with\n.BR \"pkg-config --cflags --libs rankpool\" .\n" > out
        }
        printf ".SH DESCRIPTION\n" > out
        if (g == "mpi") {
            printf ".nf\n" > out
            for (k = 1; k <= ntop["rankpool_mpi.h"]; k++)
                printf "%s\n", esc(top["rankpool_mpi.h", k]) > out
            printf ".fi\n" > out
        }
        for (i = 1; i <= nf; i++) {
            if (f_group[i] != g) continue
            printf ".TP\n.B %s\n.PD 0\n", esc(f_proto[i]) > out
            printf ".RS\n.PD\n%s.RE\n", (f_doc[i] == "" ? "See its group's description.\n" : f_doc[i]) > out
        }
        printf "%s", see_also(g) > out
        close(out)
        print out
        for (i = 1; i <= nf; i++) {
            if (f_group[i] != g) continue
            fo = outdir "/" f_name[i] ".3"
            printf ".so man3/%s.3\n", page > fo
            close(fo)
            print fo
        }
    }

    # ---- rankpool.3: the overview ----------------------------------------------------
    out = outdir "/rankpool.3"
    printf "%s", th("rankpool", 3) > out
    printf ".SH NAME\nrankpool \\- Python's multiprocessing.Pool for C, on forked workers or MPI ranks\n" > out
    printf ".SH SYNOPSIS\n.nf\n.B #include <rankpool.h>\n.PP\n" > out
    printf ".B cc app.c $(pkg-config --cflags --libs rankpool)\n.fi\n" > out
    printf ".SH DESCRIPTION\n.nf\n" > out
    for (k = 2; k <= ntop["rankpool.h"]; k++)
        printf "%s\n", esc(top["rankpool.h", k]) > out
    printf ".fi\n.SS Function groups\n" > out
    for (gi = 1; gi <= ngroups; gi++) {
        g = gorder[gi]
        names = ""
        for (i = 1; i <= nf; i++)
            if (f_group[i] == g) names = names (names == "" ? "" : ", ") f_name[i]
        printf ".TP\n.BR rankpool_%s (3)\n%s: %s\n", g, esc((g in about) ? about[g] : gtitle[g]), names > out
    }
    printf ".SS Types\n.nf\n" > out
    for (k = 1; k <= ntypes; k++)
        printf "%s\n", esc(types[k]) > out
    printf ".fi\n.SS Status codes\n" > out
    printf "Every call that can fail returns one of these;\n.BR rp_strerror ()\n" \
           "gives the text, \n.BR rp_err_name ()\nthe name.\n" > out
    for (k = 1; k <= ncodes; k++)
        printf ".TP\n.BR %s \" (%s)\"\n%s\n", code_name[k], code_value[k], esc(code_text[k]) > out
    printf ".SH ENVIRONMENT\n" > out
    printf ".TP\n.B RP_BACKEND\nlocal or mpi: the backend of a pool whose options name none.\n" > out
    printf ".TP\n.B RP_WORKERS\nthe local backend's worker count when opts.workers is 0 " \
           "(else one per core this process may use, no more than SLURM_CPUS_PER_TASK).\n" > out
    printf ".TP\n.B RP_DEBUG\nset: rankpool traces worker deaths and protocol errors to stderr.\n" > out
    printf ".TP\n.B RP_MPI_ISOLATE\n0: on the mpi backend, run tasks inside the ranks instead of " \
           "in a forked worker process (faster round trips; a crash stops the job).\n" > out
    printf ".TP\n.B RP_MPI_SPIN\n1: on the mpi backend, a serving rank and its worker process " \
           "spin for each other instead of sleeping (wants a core for each); 0: never, not even " \
           "briefly and yielding; unset: when the node has a core for each (a rank of one " \
           "worker with a core per rank: briefly, yielding).\n" > out
    printf ".TP\n.B RP_MPI_LEADERS\n1: on the mpi backend, the lowest serving rank of each " \
           "node hosts all the node's workers and exchanges their batches and results with " \
           "the master in bundles (node leaders); 0: each serving rank hosts its own; auto " \
           "(the default): leaders, with at most 1024 workers, from 128 ranks on one node, " \
           "or from 8 ranks on the master's node when the pool spans several.\n" > out
    printf "%s", see_also("") > out
    close(out)
    print out
}
