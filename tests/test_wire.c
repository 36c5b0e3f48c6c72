/* Message framing of the mpi backend (src/wire.c), in one process: round trips of
 * every message kind, and malformed messages (short, long, bad magic, version,
 * kind, lengths, every truncation and bit flip) are RP_EPROTO, never a crash. */
#include "testutil.h"
#include "wire.h"

#include <stdint.h>

static void sample_ref(rp__fnref *ref)
{
    memset(ref, 0, sizeof *ref);
    ref->offset = 0x1234;
    ref->idkind = RP__FNREF_BUILD_ID;
    ref->idlen = 20;
    for (int i = 0; i < 20; i++)
        ref->id[i] = (uint8_t)(i * 7);
    strcpy(ref->object, "/usr/lib/libexample.so.1");
}

static void test_wire_hello_round_trip(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    int arg[3] = { 7, 8, 9 };
    rp__wire_hello m = { .nworkers = 5, .nranks = 4, .max_tasks = 10, .flags = RP__HELLO_BIND,
                         .has_init = 1, .initarg = arg, .initarg_size = sizeof arg };
    sample_ref(&m.init);
    CU_ASSERT_EQUAL(rp__wire_put_hello(&w, &m), RP_OK);
    rp__wire_hdr h;
    rp__rbuf r;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.kind, RP__MSG_HELLO);
    rp__wire_hello g;
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_hello(&r, &g), RP_OK);
    CU_ASSERT_EQUAL(g.nworkers, 5);
    CU_ASSERT_EQUAL(g.nranks, 4);
    CU_ASSERT_EQUAL(g.max_tasks, 10);
    CU_ASSERT_EQUAL(g.flags, RP__HELLO_BIND);
    CU_ASSERT_EQUAL(g.has_init, 1);
    CU_ASSERT_EQUAL(g.init.offset, 0x1234);
    CU_ASSERT_EQUAL(g.init.idkind, RP__FNREF_BUILD_ID);
    CU_ASSERT_EQUAL(g.init.idlen, 20);
    CU_ASSERT_EQUAL(memcmp(g.init.id, m.init.id, 20), 0);
    CU_ASSERT_STRING_EQUAL(g.init.object, m.init.object);
    CU_ASSERT_EQUAL(g.initarg_size, sizeof arg);
    CU_ASSERT_EQUAL(memcmp(g.initarg, arg, sizeof arg), 0);
    rp__wbuf_free(&w);
}

static void make_batch(rp__wbuf *w, const double *in, size_t n)
{
    rp__wire_batch m = { .job = 3, .seq = 11, .start = 100, .count = n, .chunk = 2,
                         .in_size = sizeof *in, .out_size = 4, .flags = 0 };
    sample_ref(&m.fn);
    CU_ASSERT_EQUAL(rp__wire_put_batch(w, 2, &m, in), RP_OK);
}

static void test_wire_batch_round_trip(void)
{
    double in[5] = { 1, 2, 3, 4, 5 };
    rp__wbuf w;
    rp__wbuf_init(&w);
    make_batch(&w, in, 5);
    rp__wire_hdr h;
    rp__rbuf r;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.kind, RP__MSG_BATCH);
    CU_ASSERT_EQUAL(h.worker, 2);
    rp__wire_batch b;
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_batch(&r, &h, &b), RP_OK);
    CU_ASSERT_EQUAL(b.job, 3);
    CU_ASSERT_EQUAL(b.seq, 11);
    CU_ASSERT_EQUAL(b.start, 100);
    CU_ASSERT_EQUAL(b.count, 5);
    CU_ASSERT_EQUAL(b.chunk, 2);
    CU_ASSERT_EQUAL(b.out_size, 4);
    CU_ASSERT_EQUAL(((uintptr_t)b.input - (uintptr_t)w.buf) % 8, 0);
    CU_ASSERT_EQUAL(memcmp(b.input, in, sizeof in), 0);
    rp__wbuf_free(&w);
}

/* Reading a batch with the reference of an earlier one known: the same task's
 * reference is recognised (not decoded), another task's is decoded; the rest of
 * the batch reads the same either way. UNTIMED travels in the header. */
static void test_wire_batch_known_reference(void)
{
    double in[2] = { 7, 8 };
    rp__wbuf w;
    rp__wbuf_init(&w);
    rp__wire_batch m = { .job = 4, .seq = 1, .start = 0, .count = 2, .in_size = sizeof *in,
                         .out_size = 8, .untimed = true };
    sample_ref(&m.fn);
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&w, 1, &m, in), RP_OK);
    rp__wire_hdr h;
    rp__rbuf r;
    rp__wire_batch b, c;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_batch_known(&r, &h, &b, NULL, 0), RP_OK);
    CU_ASSERT_FALSE(b.fn_known);
    CU_ASSERT_TRUE(b.untimed);
    CU_ASSERT_EQUAL(b.fn.offset, m.fn.offset);
    CU_ASSERT_STRING_EQUAL(b.fn.object, m.fn.object);
    CU_ASSERT_EQUAL_FATAL(b.fn_rawlen, 20 + m.fn.idlen + strlen(m.fn.object));
    char known[400];
    memcpy(known, b.fn_raw, b.fn_rawlen);
    size_t known_len = b.fn_rawlen;
    /* the same task again */
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_batch_known(&r, &h, &c, known, known_len), RP_OK);
    CU_ASSERT_TRUE(c.fn_known);
    CU_ASSERT_EQUAL(c.count, 2);
    CU_ASSERT_EQUAL(memcmp(c.input, in, sizeof in), 0);
    /* another task (another offset): decoded */
    m.fn.offset += 16;
    m.untimed = false;
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&w, 1, &m, in), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_batch_known(&r, &h, &c, known, known_len), RP_OK);
    CU_ASSERT_FALSE(c.fn_known);
    CU_ASSERT_FALSE(c.untimed);
    CU_ASSERT_EQUAL(c.fn.offset, m.fn.offset);
    CU_ASSERT_EQUAL(memcmp(c.input, in, sizeof in), 0);
    rp__wbuf_free(&w);
}

/* A batch of a job with a time limit and retries carries them (header flag
 * RP__BATCH_CONTROL); one without neither has the flag nor the bytes. */
static void test_wire_batch_control(void)
{
    double in[3] = { 1, 2, 3 };
    rp__wbuf w, plain;
    rp__wbuf_init(&w);
    rp__wbuf_init(&plain);
    rp__wire_batch m = { .job = 3, .seq = 11, .start = 100, .count = 3, .chunk = 0,
                         .in_size = sizeof *in, .out_size = 4, .flags = 0,
                         .timeout_ns = 250000001, .retries = 2 };
    sample_ref(&m.fn);
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&w, 2, &m, in), RP_OK);
    m.timeout_ns = 0;
    m.retries = 0;
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&plain, 2, &m, in), RP_OK);
    CU_ASSERT_EQUAL(w.len, plain.len + 16);
    rp__wire_hdr h;
    rp__rbuf r;
    rp__wire_batch b;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT(h.flags & RP__BATCH_CONTROL);
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_batch(&r, &h, &b), RP_OK);
    CU_ASSERT_EQUAL(b.timeout_ns, 250000001);
    CU_ASSERT_EQUAL(b.retries, 2);
    CU_ASSERT_EQUAL(b.count, 3);
    CU_ASSERT_EQUAL(memcmp(b.input, in, sizeof in), 0);
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(plain.buf, plain.len, &h, &r), RP_OK);
    CU_ASSERT_FALSE(h.flags & RP__BATCH_CONTROL);
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_batch(&r, &h, &b), RP_OK);
    CU_ASSERT_EQUAL(b.timeout_ns, 0);
    CU_ASSERT_EQUAL(b.retries, 0);
    rp__wbuf_free(&w);
    rp__wbuf_free(&plain);
}

/* A result built in place as the serving rank builds it: records, then outputs. */
static size_t make_result(char *buf, bool inline_out)
{
    rp_error_t e;
    memset(&e, 0, sizeof e);
    e.code = RP_ETASK;
    e.task_code = 42;
    e.index = 101;
    e.worker = 2;
    e.exit_status = -1;
    strcpy(e.message, "item 101 is bad");
    char *rec = buf + RP__RESULT_FIXED;
    size_t off = rp__wire_error_write(rec, &e);
    rp__wire_var_write(rec + off, 102, 5);
    memcpy(rec + off + RP__WIRE_VAR_HDR, "hello\0\0\0", 8);
    off += RP__WIRE_VAR_HDR + 8;
    rp__wire_var_write(rec + off, 103, 3);
    memcpy(rec + off + RP__WIRE_VAR_HDR, "old\0\0\0\0\0", 8);
    rp__wire_var_kill(rec + off);
    off += RP__WIRE_VAR_HDR + 8;
    size_t len = RP__RESULT_FIXED + off;
    if (inline_out) {
        int outs[3] = { 10, 20, 30 };
        memcpy(buf + len, outs, sizeof outs);
        len += sizeof outs;
    }
    rp__wire_result m = { .job = 3, .seq = 11, .start = 100, .count = 3, .out_size = 4,
                          .nrec = 3, .rec_bytes = off, .compute_ns = 123456 };
    rp__wire_result_write(buf, 2, inline_out ? RP__RESULT_INLINE : 0, &m, len);
    return len;
}

static void test_wire_result_records(void)
{
    char buf[1024];
    size_t len = make_result(buf, true);
    rp__wire_hdr h;
    rp__rbuf r;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(buf, len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.kind, RP__MSG_RESULT);
    rp__wire_result m;
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_result(&r, &h, &m), RP_OK);
    CU_ASSERT_EQUAL(m.start, 100);
    CU_ASSERT_EQUAL(m.count, 3);
    CU_ASSERT_EQUAL(m.compute_ns, 123456);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m.outputs);
    int outs[3];
    memcpy(outs, m.outputs, sizeof outs);
    CU_ASSERT_EQUAL(outs[2], 30);

    rp__rbuf rr;
    rp__rbuf_init(&rr, m.records, m.rec_bytes);
    int kind;
    rp_error_t e;
    uint64_t index, size;
    const void *data;
    CU_ASSERT_EQUAL(rp__wire_next_record(&rr, &kind, &e, &index, &data, &size), 1);
    CU_ASSERT_EQUAL(kind, RP__REC_ERROR);
    CU_ASSERT_EQUAL(e.code, RP_ETASK);
    CU_ASSERT_EQUAL(e.task_code, 42);
    CU_ASSERT_EQUAL(e.index, 101);
    CU_ASSERT_STRING_EQUAL(e.message, "item 101 is bad");
    CU_ASSERT_EQUAL(rp__wire_next_record(&rr, &kind, &e, &index, &data, &size), 1);
    CU_ASSERT_EQUAL(kind, RP__REC_VAR);
    CU_ASSERT_EQUAL(index, 102);
    CU_ASSERT_EQUAL(size, 5);
    CU_ASSERT_EQUAL(memcmp(data, "hello", 5), 0);
    CU_ASSERT_EQUAL(rp__wire_next_record(&rr, &kind, &e, &index, &data, &size), 1);
    CU_ASSERT_EQUAL(kind, RP__REC_DEAD);
    CU_ASSERT_EQUAL(rp__wire_next_record(&rr, &kind, &e, &index, &data, &size), 0);

    /* without the inline flag the outputs are not part of the message */
    len = make_result(buf, false);
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(buf, len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(rp__wire_get_result(&r, &h, &m), RP_OK);
    CU_ASSERT_PTR_NULL(m.outputs);
}

/* A batch whose input travels as its own message: the header says so, the
 * message has no input bytes, and a message that has some anyway is refused. */
static void test_wire_batch_separate_input(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    rp__wire_batch m = { .job = 1, .seq = 2, .start = 0, .count = 1000, .chunk = 0,
                         .in_size = 8, .out_size = 8 };
    sample_ref(&m.fn);
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&w, 0, &m, NULL), RP_OK);
    CU_ASSERT_TRUE(w.len < 200);
    rp__wire_hdr h;
    rp__rbuf r;
    rp__wire_batch b;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_TRUE(h.flags & RP__BATCH_SEPARATE);
    CU_ASSERT_EQUAL(rp__wire_get_batch(&r, &h, &b), RP_OK);
    CU_ASSERT_PTR_NULL(b.input);
    CU_ASSERT_EQUAL(b.count, 1000);
    /* the same header on a message carrying input bytes */
    double in[1000] = { 0 };
    rp__wbuf w2;
    rp__wbuf_init(&w2);
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&w2, 0, &m, in), RP_OK);
    uint32_t flags = RP__BATCH_SEPARATE;
    memcpy(w2.buf + 12, &flags, 4);
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w2.buf, w2.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(rp__wire_get_batch(&r, &h, &b), RP_EPROTO);
    rp__wbuf_free(&w);
    rp__wbuf_free(&w2);
}

static void test_wire_header_checks(void)
{
    double in[2] = { 1, 2 };
    rp__wbuf w;
    rp__wbuf_init(&w);
    make_batch(&w, in, 2);
    rp__wire_hdr h;
    rp__rbuf r;
    CU_ASSERT_EQUAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(rp__wire_open(NULL, 0, &h, &r), RP_EPROTO);
    CU_ASSERT_EQUAL(rp__wire_open(w.buf, 10, &h, &r), RP_EPROTO);      /* short */
    CU_ASSERT_EQUAL(rp__wire_open(w.buf, w.len - 1, &h, &r), RP_EPROTO); /* length */
    char *copy = malloc(w.len + 8);
    memcpy(copy, w.buf, w.len);
    CU_ASSERT_EQUAL(rp__wire_open(copy, w.len + 8, &h, &r), RP_EPROTO); /* too long */
    copy[0] ^= 1;                                                          /* magic */
    CU_ASSERT_EQUAL(rp__wire_open(copy, w.len, &h, &r), RP_EPROTO);
    copy[0] ^= 1;
    copy[4] = 99;                                                          /* version */
    CU_ASSERT_EQUAL(rp__wire_open(copy, w.len, &h, &r), RP_EPROTO);
    copy[4] = RP__WIRE_VERSION;
    copy[6] = (char)RP__MSG_KIND_MAX;                                      /* kind */
    CU_ASSERT_EQUAL(rp__wire_open(copy, w.len, &h, &r), RP_EPROTO);
    copy[6] = 0;
    CU_ASSERT_EQUAL(rp__wire_open(copy, w.len, &h, &r), RP_EPROTO);
    free(copy);
    rp__wbuf_free(&w);
}

/* A batch whose declared count does not match its input bytes. */
static void test_wire_batch_size_mismatch(void)
{
    double in[4] = { 1, 2, 3, 4 };
    rp__wbuf w;
    rp__wbuf_init(&w);
    make_batch(&w, in, 4);
    /* count is at header + 3*8; claim 5 items in a message carrying 4 */
    uint64_t five = 5;
    memcpy(w.buf + RP__WIRE_HDR_SIZE + 24, &five, 8);
    rp__wire_hdr h;
    rp__rbuf r;
    rp__wire_batch b;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(rp__wire_get_batch(&r, &h, &b), RP_EPROTO);
    /* an absurd item size overflowing count * in_size */
    uint64_t huge = UINT64_MAX / 2;
    memcpy(w.buf + RP__WIRE_HDR_SIZE + 40, &huge, 8);
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(rp__wire_get_batch(&r, &h, &b), RP_EPROTO);
    rp__wbuf_free(&w);
}

/* Decodes msg as whatever its header says; returns the status. */
static int decode_any(const char *buf, size_t len)
{
    rp__wire_hdr h;
    rp__rbuf r;
    int rc = rp__wire_open(buf, len, &h, &r);
    if (rc != RP_OK)
        return rc;
    switch (h.kind) {
    case RP__MSG_HELLO: {
        rp__wire_hello m;
        return rp__wire_get_hello(&r, &m);
    }
    case RP__MSG_BATCH: {
        rp__wire_batch m;
        return rp__wire_get_batch(&r, &h, &m);
    }
    case RP__MSG_RESULT: {
        rp__wire_result m;
        rc = rp__wire_get_result(&r, &h, &m);
        if (rc != RP_OK)
            return rc;
        rp__rbuf rr;
        rp__rbuf_init(&rr, m.records, m.rec_bytes);
        int kind;
        rp_error_t e;
        uint64_t index, size;
        const void *data;
        while ((rc = rp__wire_next_record(&rr, &kind, &e, &index, &data, &size)) == 1)
            ;
        return rc;
    }
    case RP__MSG_DIED: {
        rp__wire_died m;
        return rp__wire_get_died(&r, &m);
    }
    case RP__MSG_PROGRESS: {
        rp__wire_progress m;
        return rp__wire_get_progress(&r, &m);
    }
    default: {
        int32_t st;
        uint64_t seq;
        return rp__wire_get_ctl(&r, &st, &seq);
    }
    }
}

/* How many of the truncations of the len bytes at msg (every shorter length) do
 * not decode to RP_EPROTO: 0 when each is refused. Each cut is copied to memory
 * of exactly its size, so that ASan sees a read beyond it. */
static size_t cuts_not_refused(const char *msg, size_t len)
{
    size_t bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        char *c = malloc(cut ? cut : 1);
        memcpy(c, msg, cut);
        bad += decode_any(c, cut) != RP_EPROTO;
        free(c);
    }
    return bad;
}

/* Every truncation and every single-bit flip of valid messages decodes to OK or
 * RP_EPROTO (run under ASan, a read out of bounds would show). */
static void test_wire_mutations_never_crash(void)
{
    char res[1024];
    size_t rlen = make_result(res, true);
    double in[3] = { 1, 2, 3 };
    rp__wbuf w;
    rp__wbuf_init(&w);
    make_batch(&w, in, 3);
    const char *msgs[2] = { res, w.buf };
    size_t lens[2] = { rlen, w.len };
    size_t bad = 0;
    for (int m = 0; m < 2; m++) {
        bad += cuts_not_refused(msgs[m], lens[m]);
        for (size_t bit = 0; bit < lens[m] * 8; bit++) {
            char *c = malloc(lens[m]);
            memcpy(c, msgs[m], lens[m]);
            c[bit / 8] ^= (char)(1 << (bit % 8));
            int rc = decode_any(c, lens[m]);
            if (rc != RP_OK && rc != RP_EPROTO)
                bad++;
            free(c);
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    rp__wbuf_free(&w);
}

/* The bytes that align a batch's input are zero, whatever the buffer held: no
 * stale memory travels (nor is read back as a field when a message is cut). */
static void test_wire_batch_padding_zeroed(void)
{
    double in[5] = { 1, 2, 3, 4, 5 };
    rp__wbuf w;
    rp__wbuf_init(&w);
    void *old = rp__wbuf_grow(&w, 4096); /* a reused buffer full of old bytes */
    CU_ASSERT_PTR_NOT_NULL_FATAL(old);
    memset(old, 0xa5, 4096);
    /* an object name whose length leaves pad bytes before the input */
    rp__wire_batch m = { .job = 3, .seq = 11, .start = 100, .count = 5, .chunk = 2,
                         .in_size = sizeof *in, .out_size = 4, .flags = 0 };
    sample_ref(&m.fn);
    strcpy(m.fn.object, "/usr/lib/libexample.so.12");
    CU_ASSERT_EQUAL_FATAL(rp__wire_put_batch(&w, 2, &m, in), RP_OK);
    /* header, 7 u64 and the flags; the reference (offset, id kind, two lengths,
     * id, name); then the u32 pad count and the pad bytes, then the input */
    rp__fnref ref = m.fn;
    size_t at = RP__WIRE_HDR_SIZE + 7 * 8 + 4 + 8 + 3 * 4 + ref.idlen + strlen(ref.object);
    uint32_t pad;
    memcpy(&pad, w.buf + at, 4);
    CU_ASSERT_EQUAL_FATAL(pad, (8 - (at + 4) % 8) % 8);
    CU_ASSERT_TRUE_FATAL(pad > 0); /* the sample reference leaves some: tested */
    CU_ASSERT_EQUAL((at + 4 + pad) % 8, 0);
    int nonzero = 0;
    for (size_t k = 0; k < pad; k++)
        nonzero += w.buf[at + 4 + k] != 0;
    CU_ASSERT_EQUAL(nonzero, 0);
    CU_ASSERT_EQUAL(memcmp(w.buf + at + 4 + pad, in, sizeof in), 0);
    rp__wbuf_free(&w);
}

static void test_wire_ctl_and_ready(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    CU_ASSERT_EQUAL(rp__wire_put_ctl(&w, RP__MSG_GO, 0, RP_EINIT, 77), RP_OK);
    rp__wire_hdr h;
    rp__rbuf r;
    int32_t st;
    uint64_t seq;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.kind, RP__MSG_GO);
    CU_ASSERT_EQUAL(rp__wire_get_ctl(&r, &st, &seq), RP_OK);
    CU_ASSERT_EQUAL(st, RP_EINIT);
    CU_ASSERT_EQUAL(seq, 77);

    rp__wire_ready m;
    memset(&m, 0, sizeof m);
    m.status = RP_EINIT;
    m.pid = 1234;
    strcpy(m.host, "node7");
    m.err.code = RP_EINIT;
    m.err.task_code = 3;
    strcpy(m.err.message, "no licence");
    CU_ASSERT_EQUAL(rp__wire_put_ready(&w, 4, &m), RP_OK);
    rp__wire_ready g;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.worker, 4);
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_ready(&r, &g), RP_OK);
    CU_ASSERT_EQUAL(g.status, RP_EINIT);
    CU_ASSERT_EQUAL(g.pid, 1234);
    CU_ASSERT_STRING_EQUAL(g.host, "node7");
    CU_ASSERT_EQUAL(g.err.task_code, 3);
    CU_ASSERT_STRING_EQUAL(g.err.message, "no licence");
    rp__wbuf_free(&w);
}

/* The start-up messages (JOIN carries the master's wait in the worker field), and
 * the largest error record is RP__WIRE_ERROR_MAX bytes. */
static void test_wire_start_up_messages(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    unsigned kinds[3] = { RP__MSG_JOIN, RP__MSG_JOINED, RP__MSG_START };
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_EQUAL(rp__wire_put_ctl(&w, kinds[k], 60000, k == 2 ? RP_EMPI : RP_OK,
                                         (uint64_t)1 << 40 | (uint64_t)k), RP_OK);
        rp__wire_hdr h;
        rp__rbuf r;
        int32_t st;
        uint64_t seq;
        CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
        CU_ASSERT_EQUAL(h.kind, kinds[k]);
        CU_ASSERT_EQUAL(h.worker, 60000);
        CU_ASSERT_EQUAL(rp__wire_get_ctl(&r, &st, &seq), RP_OK);
        CU_ASSERT_EQUAL(st, k == 2 ? RP_EMPI : RP_OK);
        CU_ASSERT_EQUAL(seq, (uint64_t)1 << 40 | (uint64_t)k);
    }
    rp__wbuf_free(&w);

    rp_error_t e;
    memset(&e, 'x', sizeof e);
    e.message[sizeof e.message - 1] = '\0';
    CU_ASSERT_EQUAL(rp__wire_error_size(&e), RP__WIRE_ERROR_MAX);
    e.message[10] = '\0';
    CU_ASSERT_TRUE(rp__wire_error_size(&e) < RP__WIRE_ERROR_MAX);
}

/* PROGRESS: how far a running batch is; every truncation is malformed. */
static void test_wire_progress_round_trip(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    rp__wire_progress m = { .job = 12, .seq = (uint64_t)1 << 40, .items = 262143 };
    CU_ASSERT_EQUAL(rp__wire_put_progress(&w, 7, &m), RP_OK);
    rp__wire_hdr h;
    rp__rbuf r;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.kind, RP__MSG_PROGRESS);
    CU_ASSERT_EQUAL(h.worker, 7);
    rp__wire_progress g;
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_progress(&r, &g), RP_OK);
    CU_ASSERT_EQUAL(g.job, 12);
    CU_ASSERT_EQUAL(g.seq, (uint64_t)1 << 40);
    CU_ASSERT_EQUAL(g.items, 262143);
    CU_ASSERT_EQUAL(cuts_not_refused(w.buf, w.len), 0);
    rp__wbuf_free(&w);
}

/* DIED: a worker process's death inside a batch (the item, its wait status, the
 * pid; the header flag says whether an item was running); a short or long body
 * is malformed, and every truncation of it too. */
static void test_wire_died_round_trip(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    rp__wire_died m = { .job = 9, .seq = (uint64_t)1 << 33, .index = 123456789012ull,
                        .status = 0x8b, .pid = 4321 };
    CU_ASSERT_EQUAL(rp__wire_put_died(&w, 5, RP__DIED_IDLE, &m), RP_OK);
    rp__wire_hdr h;
    rp__rbuf r;
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(h.kind, RP__MSG_DIED);
    CU_ASSERT_EQUAL(h.worker, 5);
    CU_ASSERT_EQUAL(h.flags, RP__DIED_IDLE);
    rp__wire_died g;
    CU_ASSERT_EQUAL_FATAL(rp__wire_get_died(&r, &g), RP_OK);
    CU_ASSERT_EQUAL(g.job, 9);
    CU_ASSERT_EQUAL(g.seq, (uint64_t)1 << 33);
    CU_ASSERT_EQUAL(g.index, 123456789012ull);
    CU_ASSERT_EQUAL(g.status, 0x8b);
    CU_ASSERT_EQUAL(g.pid, 4321);
    CU_ASSERT_EQUAL(cuts_not_refused(w.buf, w.len), 0);
    /* a body one word longer than a DIED's, with a header that says so */
    rp__wbuf_u64(&w, 0);
    rp__wire_end(&w);
    CU_ASSERT_EQUAL_FATAL(rp__wire_open(w.buf, w.len, &h, &r), RP_OK);
    CU_ASSERT_EQUAL(rp__wire_get_died(&r, &g), RP_EPROTO);
    rp__wbuf_free(&w);
}

/* A function reference names its object by a build-id or a contents hash; another
 * kind, or an empty identity, is malformed. */
static void test_wire_fnref_identity(void)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    rp__fnref ref, got;
    sample_ref(&ref);
    ref.idkind = RP__FNREF_CONTENTS;
    ref.idlen = RP__FNREF_HASHLEN;
    rp__wire_put_fnref(&w, &ref);
    rp__rbuf r;
    rp__rbuf_init(&r, w.buf, w.len);
    CU_ASSERT_EQUAL(rp__wire_get_fnref(&r, &got), RP_OK);
    CU_ASSERT_EQUAL(got.idkind, RP__FNREF_CONTENTS);
    CU_ASSERT_EQUAL(got.idlen, RP__FNREF_HASHLEN);
    CU_ASSERT_EQUAL(memcmp(got.id, ref.id, RP__FNREF_HASHLEN), 0);
    CU_ASSERT_STRING_EQUAL(got.object, ref.object);
    uint32_t bad[3][2] = { { 0, 20 }, { 3, 20 }, { RP__FNREF_BUILD_ID, 0 } };
    for (int k = 0; k < 3; k++) {
        ref.idkind = bad[k][0];
        ref.idlen = bad[k][1];
        w.len = 0;
        rp__wire_put_fnref(&w, &ref);
        rp__rbuf_init(&r, w.buf, w.len);
        CU_ASSERT_EQUAL(rp__wire_get_fnref(&r, &got), RP_EPROTO);
    }
    rp__wbuf_free(&w);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_wire_hello_round_trip),
        TU_TEST(test_wire_batch_round_trip),
        TU_TEST(test_wire_batch_control),
        TU_TEST(test_wire_batch_known_reference),
        TU_TEST(test_wire_result_records),
        TU_TEST(test_wire_batch_separate_input),
        TU_TEST(test_wire_header_checks),
        TU_TEST(test_wire_batch_size_mismatch),
        TU_TEST(test_wire_mutations_never_crash),
        TU_TEST(test_wire_batch_padding_zeroed),
        TU_TEST(test_wire_ctl_and_ready),
        TU_TEST(test_wire_start_up_messages),
        TU_TEST(test_wire_died_round_trip),
        TU_TEST(test_wire_progress_round_trip),
        TU_TEST(test_wire_fnref_identity),
        TU_END
    };
    return tu_run("wire", tests, argc, argv);
}
