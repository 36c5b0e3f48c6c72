/* libFuzzer target: the mpi backend's message decoders (src/wire.c) on arbitrary
 * bytes, applied as the mpi backend (src/mpi/) applies them to what it receives
 * from another rank: rp__wire_open, then by kind rp__wire_get_hello, _get_ready,
 * _get_batch, _get_result followed by every record (rp__wire_next_record, hence
 * the error records' decoder), _get_died, or _get_ctl. Besides crashes (ASan, UBSan), it checks what a
 * decoder that accepts a message promises: every pointer it returns lies inside
 * the message with the length it says, strings are terminated, failure records
 * carry failure codes, and a decoded message encodes back to one that decodes to
 * the same fields.
 *
 * The first byte of an input is not part of the message: bit 0 set means "write
 * the real length into the header's length field first", so that mutations of a
 * body are not all stopped by the length check. Built and run by fuzz/run. */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                \
    do {                                                                        \
        if (!(c)) {                                                             \
            fprintf(stderr, "fuzz_wire: %s:%d: broken promise: %s\n", __FILE__,  \
                    __LINE__, #c);                                              \
            abort();                                                            \
        }                                                                       \
    } while (0)

static const char *msg_lo, *msg_hi; /* the message being decoded */

/* p[0..n) lies inside the message; reads its first and last byte (ASan checks). */
static void inside(const void *p, uint64_t n)
{
    if (n == 0)
        return;
    const char *c = p;
    CHECK(c >= msg_lo && c <= msg_hi && n <= (uint64_t)(msg_hi - c));
    volatile char x = c[0];
    x = c[n - 1];
    (void)x;
}

static void terminated(const char *s, size_t cap)
{
    CHECK(memchr(s, '\0', cap) != NULL);
}

static void same_fnref(const rp__fnref *a, const rp__fnref *b)
{
    CHECK(a->offset == b->offset && a->idkind == b->idkind && a->idlen == b->idlen);
    CHECK(memcmp(a->id, b->id, a->idlen) == 0);
    CHECK(strcmp(a->object, b->object) == 0);
}

/* Opens an encoded message and checks its header. */
static void reopen(rp__wbuf *w, unsigned kind, rp__wire_hdr *h, rp__rbuf *r)
{
    CHECK(w->err == RP_OK);
    CHECK(rp__wire_open(w->buf, w->len, h, r) == RP_OK && h->kind == kind);
}

static void hello(rp__rbuf *r)
{
    rp__wire_hello m;
    if (rp__wire_get_hello(r, &m) != RP_OK)
        return;
    inside(m.initarg, m.initarg_size);
    terminated(m.init.object, sizeof m.init.object);
    CHECK(m.nworkers > 0 && m.nranks > 0 && m.max_tasks >= 0);
    rp__wbuf w;
    rp__wbuf_init(&w);
    CHECK(rp__wire_put_hello(&w, &m) == RP_OK);
    rp__wire_hdr h;
    rp__rbuf rr;
    rp__wire_hello g;
    reopen(&w, RP__MSG_HELLO, &h, &rr);
    CHECK(rp__wire_get_hello(&rr, &g) == RP_OK);
    CHECK(g.nworkers == m.nworkers && g.nranks == m.nranks && g.max_tasks == m.max_tasks &&
          g.flags == m.flags && g.has_init == m.has_init && g.initarg_size == m.initarg_size);
    CHECK(m.initarg_size == 0 || memcmp(g.initarg, m.initarg, m.initarg_size) == 0);
    if (m.has_init)
        same_fnref(&g.init, &m.init);
    rp__wbuf_free(&w);
}

static void check_error(const rp_error_t *e)
{
    CHECK(e->code < 0);
    terminated(e->message, sizeof e->message);
}

static void ready(rp__rbuf *r, uint32_t worker)
{
    rp__wire_ready m;
    if (rp__wire_get_ready(r, &m) != RP_OK)
        return;
    terminated(m.host, sizeof m.host);
    CHECK(m.status <= 0);
    if (m.status != RP_OK)
        check_error(&m.err);
    rp__wbuf w;
    rp__wbuf_init(&w);
    CHECK(rp__wire_put_ready(&w, worker, &m) == RP_OK);
    rp__wire_hdr h;
    rp__rbuf rr;
    rp__wire_ready g;
    reopen(&w, RP__MSG_READY, &h, &rr);
    CHECK(rp__wire_get_ready(&rr, &g) == RP_OK);
    CHECK(g.status == m.status && g.pid == m.pid && strcmp(g.host, m.host) == 0);
    CHECK(m.status == RP_OK || (g.err.code == m.err.code && g.err.index == m.err.index &&
                                strcmp(g.err.message, m.err.message) == 0));
    rp__wbuf_free(&w);
}

static void batch(rp__rbuf *r, const rp__wire_hdr *h)
{
    rp__wire_batch m;
    if (rp__wire_get_batch(r, h, &m) != RP_OK)
        return;
    terminated(m.fn.object, sizeof m.fn.object);
    CHECK(m.count > 0 && m.in_size > 0 && m.start + m.count >= m.start);
    bool separate = h->flags & RP__BATCH_SEPARATE;
    CHECK(separate == (m.input == NULL));
    if (!separate) {
        inside(m.input, m.count * m.in_size);
        /* the input is the rest of the message */
        CHECK(m.input + m.count * m.in_size == msg_hi);
    }
    rp__wbuf w;
    rp__wbuf_init(&w);
    if (rp__wire_put_batch(&w, h->worker, &m, m.input) != RP_OK) {
        rp__wbuf_free(&w);
        return;
    }
    rp__wire_hdr h2;
    rp__rbuf rr;
    rp__wire_batch g;
    reopen(&w, RP__MSG_BATCH, &h2, &rr);
    CHECK(rp__wire_get_batch(&rr, &h2, &g) == RP_OK);
    CHECK(g.job == m.job && g.seq == m.seq && g.start == m.start && g.count == m.count &&
          g.chunk == m.chunk && g.in_size == m.in_size && g.out_size == m.out_size &&
          g.flags == m.flags);
    same_fnref(&g.fn, &m.fn);
    CHECK(separate || memcmp(g.input, m.input, m.count * m.in_size) == 0);
    rp__wbuf_free(&w);
}

/* Every record, as handle_result walks them. */
static void records(const char *p, uint64_t len)
{
    rp__rbuf rr;
    rp__rbuf_init(&rr, p, (size_t)len);
    int kind, rc;
    rp_error_t e;
    uint64_t index, size;
    const void *data;
    while ((rc = rp__wire_next_record(&rr, &kind, &e, &index, &data, &size)) == 1) {
        if (kind == RP__REC_ERROR) {
            check_error(&e);
        } else {
            CHECK(kind == RP__REC_VAR || kind == RP__REC_DEAD);
            inside(data, size);
        }
    }
    CHECK(rc == 0 || rc == RP_EPROTO);
}

static void result(rp__rbuf *r, const rp__wire_hdr *h)
{
    rp__wire_result m;
    if (rp__wire_get_result(r, h, &m) != RP_OK)
        return;
    inside(m.records, m.rec_bytes);
    CHECK(m.nrec <= m.rec_bytes / 8);
    if (h->flags & RP__RESULT_INLINE) {
        inside(m.outputs, m.count * m.out_size);
        CHECK((m.count * m.out_size == 0 || m.outputs != NULL));
    } else {
        CHECK(m.outputs == NULL);
    }
    records(m.records, m.rec_bytes);
}

static void died(rp__rbuf *r, const rp__wire_hdr *h)
{
    rp__wire_died m;
    if (rp__wire_get_died(r, &m) != RP_OK)
        return;
    rp__wbuf w;
    rp__wbuf_init(&w);
    CHECK(rp__wire_put_died(&w, h->worker, h->flags, &m) == RP_OK);
    rp__wire_hdr h2;
    rp__rbuf rr;
    rp__wire_died g;
    reopen(&w, RP__MSG_DIED, &h2, &rr);
    CHECK(rp__wire_get_died(&rr, &g) == RP_OK && h2.flags == h->flags);
    CHECK(g.job == m.job && g.seq == m.seq && g.index == m.index && g.status == m.status &&
          g.pid == m.pid);
    rp__wbuf_free(&w);
}

static void progress(rp__rbuf *r, const rp__wire_hdr *h)
{
    rp__wire_progress m;
    if (rp__wire_get_progress(r, &m) != RP_OK)
        return;
    rp__wbuf w;
    rp__wbuf_init(&w);
    CHECK(rp__wire_put_progress(&w, h->worker, &m) == RP_OK);
    rp__wire_hdr h2;
    rp__rbuf rr;
    rp__wire_progress g;
    reopen(&w, RP__MSG_PROGRESS, &h2, &rr);
    CHECK(rp__wire_get_progress(&rr, &g) == RP_OK && h2.worker == h->worker);
    CHECK(g.job == m.job && g.seq == m.seq && g.items == m.items);
    rp__wbuf_free(&w);
}

static void ctl(rp__rbuf *r, const rp__wire_hdr *h)
{
    int32_t status;
    uint64_t seq;
    if (rp__wire_get_ctl(r, &status, &seq) != RP_OK)
        return;
    CHECK(status <= 0);
    rp__wbuf w;
    rp__wbuf_init(&w);
    CHECK(rp__wire_put_ctl(&w, h->kind, h->worker, status, seq) == RP_OK);
    rp__wire_hdr h2;
    rp__rbuf rr;
    int32_t status2;
    uint64_t seq2;
    reopen(&w, h->kind, &h2, &rr);
    CHECK(rp__wire_get_ctl(&rr, &status2, &seq2) == RP_OK && status2 == status && seq2 == seq);
    rp__wbuf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    data++;
    size--;
    /* an exact-size copy: ASan sees any read past the end */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    if ((mode & 1) && size >= RP__WIRE_HDR_SIZE) {
        uint64_t len = size;
        memcpy(buf + 16, &len, 8);
    }
    msg_lo = buf;
    msg_hi = buf + size;
    rp__wire_hdr h;
    rp__rbuf r;
    if (rp__wire_open(buf, size, &h, &r) == RP_OK) {
        CHECK(h.length == size && h.kind > 0 && h.kind < RP__MSG_KIND_MAX);
        CHECK(r.p == buf + RP__WIRE_HDR_SIZE && r.left == size - RP__WIRE_HDR_SIZE);
        switch (h.kind) {
        case RP__MSG_HELLO: hello(&r); break;
        case RP__MSG_READY: ready(&r, h.worker); break;
        case RP__MSG_BATCH: batch(&r, &h); break;
        case RP__MSG_RESULT: result(&r, &h); break;
        case RP__MSG_DIED: died(&r, &h); break;
        case RP__MSG_PROGRESS: progress(&r, &h); break;
        default: ctl(&r, &h);
        }
    }
    free(buf);
    return 0;
}
