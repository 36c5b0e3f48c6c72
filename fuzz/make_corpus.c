/* Writes the seed corpora of the fuzz targets with the real encoders of
 * src/wire.c: one file per kind of message (and variant) the mpi backend sends.
 *
 *   make_corpus wire DIR     messages for fuzz_wire (first byte: mode 0)
 *   make_corpus fnref DIR    function references for fuzz_fnref
 *
 * fuzz/run --seeds rewrites fuzz/corpus/ with it (after a change of the format). */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;
static int written;

static void save(const char *name, const void *p, size_t len, int with_mode)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (with_mode)
        fputc(0, f);
    if (len && fwrite(p, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    written++;
}

static void sample_ref(rp__fnref *ref, int with_id, const char *object)
{
    memset(ref, 0, sizeof *ref);
    ref->offset = 0x11e9;
    /* a GNU build-id, or the contents hash of an object linked without one */
    ref->idkind = with_id ? RP__FNREF_BUILD_ID : RP__FNREF_CONTENTS;
    ref->idlen = with_id ? 20 : RP__FNREF_HASHLEN;
    for (uint32_t i = 0; i < ref->idlen; i++)
        ref->id[i] = (uint8_t)(0x3c + 7 * i);
    snprintf(ref->object, sizeof ref->object, "%s", object);
}

static void error(rp_error_t *e, int code, size_t index, const char *msg)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->task_code = code == RP_ETASK ? 7 : 0;
    e->index = index;
    e->worker = 1;
    e->signal = code == RP_EWORKER ? 9 : 0;
    e->exit_status = -1;
    snprintf(e->message, sizeof e->message, "%s", msg);
}

/* A RESULT as a serving rank builds it in place: fixed part, records, outputs. */
static void result(const char *name, int inline_out, int nerr, int nvar, uint64_t count,
                   uint64_t out_size)
{
    char *b = calloc(1, 1 << 16);
    size_t at = RP__RESULT_FIXED, nrec = 0;
    for (int k = 0; k < nerr; k++) {
        rp_error_t e;
        error(&e, k % 2 ? RP_EWORKER : RP_ETASK, 100 + (size_t)k,
              k % 2 ? "worker 1 (rank 1 on node1, pid 4242) was killed by signal 9" : "bad item");
        at += rp__wire_error_write(b + at, &e);
        nrec++;
    }
    for (int k = 0; k < nvar; k++) {
        size_t size = (size_t)(3 + 5 * k);
        rp__wire_var_write(b + at, 100 + (uint64_t)k, size);
        memset(b + at + RP__WIRE_VAR_HDR, 'a' + k, size);
        if (k == 0)
            rp__wire_var_kill(b + at); /* replaced by a later output */
        at += RP__WIRE_VAR_HDR + ((size + 7) & ~(size_t)7);
        nrec++;
    }
    size_t rec = at - RP__RESULT_FIXED;
    if (inline_out) {
        for (uint64_t i = 0; i < count * out_size; i++)
            b[at + i] = (char)i;
        at += count * out_size;
    }
    rp__wire_result m = { .job = 3, .seq = 5, .start = 100, .count = count,
                          .out_size = out_size, .nrec = nrec, .rec_bytes = rec,
                          .compute_ns = 123456 };
    rp__wire_result_write(b, 1, inline_out ? RP__RESULT_INLINE : 0, &m, at);
    save(name, b, at, 1);
    free(b);
}

static void wire(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    char arg[40];
    for (size_t i = 0; i < sizeof arg; i++)
        arg[i] = (char)(i * 3);

    rp__wire_hello h = { .nworkers = 4, .nranks = 2, .max_tasks = 0, .flags = 0 };
    rp__wire_put_hello(&w, &h);
    save("hello-plain", w.buf, w.len, 1);
    h = (rp__wire_hello){ .nworkers = 8, .nranks = 3, .max_tasks = 100,
                          .flags = RP__HELLO_BIND | RP__HELLO_INPROCESS, .has_init = 1,
                          .initarg = arg, .initarg_size = sizeof arg };
    sample_ref(&h.init, 1, "/usr/lib/x86_64-linux-gnu/libexample.so.1");
    rp__wire_put_hello(&w, &h);
    save("hello-init", w.buf, w.len, 1);

    rp__wire_ready rd;
    memset(&rd, 0, sizeof rd);
    rd.status = RP_OK;
    rd.pid = 4242;
    snprintf(rd.host, sizeof rd.host, "node1");
    rp__wire_put_ready(&w, 1, &rd);
    save("ready-ok", w.buf, w.len, 1);
    rd.status = RP_EINIT;
    error(&rd.err, RP_EINIT, 0, "initializer returned 3");
    rp__wire_put_ready(&w, 2, &rd);
    save("ready-init-failed", w.buf, w.len, 1);

    double in[6] = { 1, 2, 3, 4, 5, 6 };
    rp__wire_batch bt = { .job = 3, .seq = 5, .start = 100, .count = 6, .chunk = 2,
                          .in_size = sizeof *in, .out_size = 8, .flags = 0 };
    sample_ref(&bt.fn, 1, "");
    rp__wire_put_batch(&w, 1, &bt, in);
    save("batch-inline", w.buf, w.len, 1);
    bt.flags = 1; /* RP__JOB_VAR */
    bt.out_size = 16;
    sample_ref(&bt.fn, 0, "");
    rp__wire_put_batch(&w, 0, &bt, NULL);
    save("batch-separate-var", w.buf, w.len, 1);

    result("result-inline-errors", 1, 3, 0, 6, 8);
    result("result-separate", 0, 1, 0, 6, 8);
    result("result-var", 0, 1, 3, 6, 0);
    result("result-empty", 1, 0, 0, 1, 0);
    {
        /* a whole batch failed: one record */
        char b[512];
        rp_error_t e;
        error(&e, RP_EFNREF, 100, "rank 1 on node1: function +0x11e9: no such object");
        size_t at = RP__RESULT_FIXED + rp__wire_error_write(b + RP__RESULT_FIXED, &e);
        rp__wire_result m = { .job = 3, .seq = 6, .start = 100, .count = 6, .nrec = 1,
                              .rec_bytes = at - RP__RESULT_FIXED };
        rp__wire_result_write(b, 1, RP__RESULT_ALLFAIL, &m, at);
        save("result-allfail", b, at, 1);
        /* a gone worker's batch handed back: no records, no outputs */
        rp__wire_result r = { .job = 3, .seq = 7, .start = 106, .count = 9 };
        rp__wire_result_write(b, 1, RP__RESULT_RETURNED | RP__RESULT_GONE, &r,
                              RP__RESULT_FIXED);
        save("result-returned", b, RP__RESULT_FIXED, 1);
    }
    {
        /* a worker process died running item 37 (SIGSEGV), and one between items */
        rp__wire_died d = { .job = 4, .seq = 2, .index = 37, .status = 11, .pid = 4242 };
        rp__wire_put_died(&w, 1, 0, &d);
        save("died-running", w.buf, w.len, 1);
        d.index = 40;
        rp__wire_put_died(&w, 1, RP__DIED_IDLE, &d);
        save("died-idle", w.buf, w.len, 1);
    }

    static const struct { unsigned kind; const char *name; int32_t status; } ctls[] = {
        { RP__MSG_GO, "ctl-go", RP_OK },           { RP__MSG_GO, "ctl-go-abort", RP_EINIT },
        { RP__MSG_TERMINATE, "ctl-terminate", 0 }, { RP__MSG_STOP, "ctl-stop", 0 },
        { RP__MSG_BYE, "ctl-bye", 0 },             { RP__MSG_PROTO, "ctl-proto", RP_EPROTO },
    };
    for (size_t k = 0; k < sizeof ctls / sizeof *ctls; k++) {
        rp__wire_put_ctl(&w, ctls[k].kind, 0, ctls[k].status, 77);
        save(ctls[k].name, w.buf, w.len, 1);
    }
    rp__wbuf_free(&w);
}

static void fnref(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    static const struct { int id; const char *object; const char *name; } refs[] = {
        { 0, "", "main-by-name" },
        { 1, "", "main-by-id" },
        { 1, "/lib/x86_64-linux-gnu/libc.so.6", "library" },
        { 0, "linux-vdso.so.1", "vdso" },
    };
    for (size_t k = 0; k < sizeof refs / sizeof *refs; k++) {
        rp__fnref ref;
        sample_ref(&ref, refs[k].id, refs[k].object);
        w.len = 0;
        rp__wire_put_fnref(&w, &ref);
        save(refs[k].name, w.buf, w.len, 0);
    }
    rp__wbuf_free(&w);
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "wire") != 0 && strcmp(argv[1], "fnref") != 0)) {
        fprintf(stderr, "usage: make_corpus wire|fnref DIR\n");
        return 2;
    }
    dir = argv[2];
    if (strcmp(argv[1], "wire") == 0)
        wire();
    else
        fnref();
    printf("make_corpus: %d %s seeds in %s\n", written, argv[1], dir);
    return 0;
}
