/* Message framing for the mpi backend: writer, checked reader, and the body of
 * each message kind. See wire.h. Every read goes through rp__rbuf, which fails
 * (RP_EPROTO) instead of reading past the end; every length is checked against
 * what remains before it is used. */
#include "wire.h"

#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* ---- writer ---------------------------------------------------------------------- */

void rp__wbuf_init(rp__wbuf *w)
{
    w->buf = NULL;
    w->len = w->cap = 0;
    w->err = RP_OK;
}

void rp__wbuf_free(rp__wbuf *w)
{
    free(w->buf);
    rp__wbuf_init(w);
}

void *rp__wbuf_grow(rp__wbuf *w, size_t n)
{
    if (w->err)
        return NULL;
    if (n > SIZE_MAX / 2 - w->len) {
        w->err = RP_ENOMEM;
        return NULL;
    }
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->err = RP_ENOMEM;
            return NULL;
        }
        w->buf = b;
        w->cap = cap;
    }
    void *p = w->buf + w->len;
    w->len += n;
    return p;
}

void rp__wbuf_put(rp__wbuf *w, const void *p, size_t n)
{
    void *d = rp__wbuf_grow(w, n);
    if (d && n)
        memcpy(d, p, n);
}

void rp__wbuf_u32(rp__wbuf *w, uint32_t v)
{
    rp__wbuf_put(w, &v, sizeof v);
}

void rp__wbuf_u64(rp__wbuf *w, uint64_t v)
{
    rp__wbuf_put(w, &v, sizeof v);
}

/* ---- reader ------------------------------------------------------------------------ */

void rp__rbuf_init(rp__rbuf *r, const void *p, size_t len)
{
    r->p = p;
    r->left = len;
    r->err = RP_OK;
}

const void *rp__rbuf_get(rp__rbuf *r, size_t n)
{
    if (r->err || n > r->left) {
        r->err = RP_EPROTO;
        return NULL;
    }
    const void *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* The next n bytes into v (v as it was when they are not there). */
static void rbuf_copy(rp__rbuf *r, void *v, size_t n)
{
    const void *p = rp__rbuf_get(r, n);
    if (p)
        memcpy(v, p, n);
}

uint32_t rp__rbuf_u32(rp__rbuf *r)
{
    uint32_t v = 0;
    rbuf_copy(r, &v, sizeof v);
    return v;
}

uint64_t rp__rbuf_u64(rp__rbuf *r)
{
    uint64_t v = 0;
    rbuf_copy(r, &v, sizeof v);
    return v;
}

/* ---- header ------------------------------------------------------------------------- */

void rp__wire_hdr_write(void *p, unsigned kind, uint32_t worker, uint32_t flags,
                        uint64_t length)
{
    char *c = p;
    uint32_t magic = RP__WIRE_MAGIC;
    uint16_t version = RP__WIRE_VERSION, k = (uint16_t)kind;
    memcpy(c, &magic, 4);
    memcpy(c + 4, &version, 2);
    memcpy(c + 6, &k, 2);
    memcpy(c + 8, &worker, 4);
    memcpy(c + 12, &flags, 4);
    memcpy(c + 16, &length, 8);
}

void rp__wire_begin(rp__wbuf *w, unsigned kind, uint32_t worker, uint32_t flags)
{
    w->len = 0;
    w->err = RP_OK;
    void *p = rp__wbuf_grow(w, RP__WIRE_HDR_SIZE);
    if (p)
        rp__wire_hdr_write(p, kind, worker, flags, 0);
}

int rp__wire_end(rp__wbuf *w)
{
    if (w->err)
        return w->err;
    uint64_t len = w->len;
    memcpy(w->buf + 16, &len, 8);
    return RP_OK;
}

int rp__wire_open(const void *buf, size_t len, rp__wire_hdr *h, rp__rbuf *r)
{
    rp__rbuf_init(r, buf, len);
    if (!buf || len < RP__WIRE_HDR_SIZE)
        return RP_EPROTO;
    const char *c = buf;
    uint16_t version, kind;
    memcpy(&h->magic, c, 4);
    memcpy(&version, c + 4, 2);
    memcpy(&kind, c + 6, 2);
    memcpy(&h->worker, c + 8, 4);
    memcpy(&h->flags, c + 12, 4);
    memcpy(&h->length, c + 16, 8);
    h->version = version;
    h->kind = kind;
    if (h->magic != RP__WIRE_MAGIC || h->version != RP__WIRE_VERSION || h->kind == 0 ||
        h->kind >= RP__MSG_KIND_MAX || h->length != (uint64_t)len)
        return RP_EPROTO;
    rp__rbuf_get(r, RP__WIRE_HDR_SIZE);
    return RP_OK;
}

/* ---- function references ---------------------------------------------------------- */

void rp__wire_put_fnref(rp__wbuf *w, const rp__fnref *ref)
{
    uint32_t namelen = (uint32_t)strnlen(ref->object, sizeof ref->object - 1);
    uint32_t idlen = ref->idlen <= RP__FNREF_IDMAX ? ref->idlen : RP__FNREF_IDMAX;
    rp__wbuf_u64(w, ref->offset);
    rp__wbuf_u32(w, ref->idkind);
    rp__wbuf_u32(w, idlen);
    rp__wbuf_u32(w, namelen);
    rp__wbuf_put(w, ref->id, idlen);
    rp__wbuf_put(w, ref->object, namelen);
}

int rp__wire_get_fnref(rp__rbuf *r, rp__fnref *ref)
{
    memset(ref, 0, sizeof *ref);
    ref->offset = rp__rbuf_u64(r);
    uint32_t idkind = rp__rbuf_u32(r);
    uint32_t idlen = rp__rbuf_u32(r);
    uint32_t namelen = rp__rbuf_u32(r);
    if (r->err || idlen == 0 || idlen > RP__FNREF_IDMAX || namelen >= RP__FNREF_NAMEMAX ||
        (idkind != RP__FNREF_BUILD_ID && idkind != RP__FNREF_CONTENTS))
        return r->err = RP_EPROTO;
    const void *id = rp__rbuf_get(r, idlen);
    const void *name = rp__rbuf_get(r, namelen);
    if (r->err)
        return RP_EPROTO;
    ref->idkind = idkind;
    ref->idlen = idlen;
    memcpy(ref->id, id, idlen);
    memcpy(ref->object, name, namelen);
    ref->object[namelen] = '\0';
    if (memchr(ref->object, '\0', namelen) != NULL)
        return r->err = RP_EPROTO;
    return RP_OK;
}

/* ---- HELLO -------------------------------------------------------------------------- */

int rp__wire_put_hello(rp__wbuf *w, const rp__wire_hello *m)
{
    rp__wire_begin(w, RP__MSG_HELLO, 0, 0);
    rp__wbuf_u32(w, m->nworkers);
    rp__wbuf_u32(w, m->nranks);
    rp__wbuf_u64(w, (uint64_t)m->max_tasks);
    rp__wbuf_u32(w, m->flags);
    rp__wbuf_u32(w, m->has_init);
    if (m->has_init)
        rp__wire_put_fnref(w, &m->init);
    rp__wbuf_u64(w, m->initarg_size);
    rp__wbuf_put(w, m->initarg, (size_t)m->initarg_size);
    return rp__wire_end(w);
}

int rp__wire_get_hello(rp__rbuf *r, rp__wire_hello *m)
{
    memset(m, 0, sizeof *m);
    m->nworkers = rp__rbuf_u32(r);
    m->nranks = rp__rbuf_u32(r);
    m->max_tasks = (int64_t)rp__rbuf_u64(r);
    m->flags = rp__rbuf_u32(r);
    m->has_init = rp__rbuf_u32(r);
    if (m->has_init && rp__wire_get_fnref(r, &m->init) != RP_OK)
        return RP_EPROTO;
    m->initarg_size = rp__rbuf_u64(r);
    if (r->err || m->initarg_size > r->left)
        return RP_EPROTO;
    m->initarg = rp__rbuf_get(r, (size_t)m->initarg_size);
    if (r->err || r->left != 0 || m->nworkers == 0 || m->nranks == 0 || m->max_tasks < 0)
        return RP_EPROTO;
    return RP_OK;
}

/* ---- errors (READY and result records) --------------------------------------------- */

#define ERR_FIXED 36
_Static_assert(RP__WIRE_ERROR_MAX ==
                   ((ERR_FIXED + sizeof(((rp_error_t *)0)->message) - 1 + 7) & ~(size_t)7),
               "RP__WIRE_ERROR_MAX is the size of a record with the longest message");

size_t rp__wire_error_size(const rp_error_t *e)
{
    size_t msglen = strnlen(e->message, sizeof e->message - 1);
    return (ERR_FIXED + msglen + 7) & ~(size_t)7;
}

size_t rp__wire_error_write(void *p, const rp_error_t *e)
{
    char *c = p;
    uint32_t kind = RP__REC_ERROR;
    int32_t v[5] = { e->code, e->task_code, e->worker, e->signal, e->exit_status };
    uint64_t index = e->index;
    uint32_t msglen = (uint32_t)strnlen(e->message, sizeof e->message - 1);
    size_t size = rp__wire_error_size(e);
    memcpy(c, &kind, 4);
    memcpy(c + 4, v, sizeof v);
    memcpy(c + 24, &index, 8);
    memcpy(c + 32, &msglen, 4);
    memcpy(c + ERR_FIXED, e->message, msglen);
    memset(c + ERR_FIXED + msglen, 0, size - ERR_FIXED - msglen);
    return size;
}

/* Reads an error record's body (the kind word already consumed). */
static int get_error(rp__rbuf *r, rp_error_t *e)
{
    memset(e, 0, sizeof *e);
    const char *c = rp__rbuf_get(r, ERR_FIXED - 4);
    if (!c)
        return RP_EPROTO;
    int32_t v[5];
    uint64_t index;
    uint32_t msglen;
    memcpy(v, c, sizeof v);
    memcpy(&index, c + 20, 8);
    memcpy(&msglen, c + 28, 4);
    if (msglen >= sizeof e->message)
        return r->err = RP_EPROTO;
    size_t pad = ((ERR_FIXED + (size_t)msglen + 7) & ~(size_t)7) - ERR_FIXED;
    const char *msg = rp__rbuf_get(r, pad);
    if (!msg)
        return RP_EPROTO;
    e->code = v[0];
    e->task_code = v[1];
    e->worker = v[2];
    e->signal = v[3];
    e->exit_status = v[4];
    e->index = (size_t)index;
    memcpy(e->message, msg, msglen);
    e->message[msglen] = '\0';
    /* A failure record always carries a failure code. */
    if (e->code >= 0)
        return r->err = RP_EPROTO;
    return RP_OK;
}

/* ---- READY --------------------------------------------------------------------------- */

int rp__wire_put_ready(rp__wbuf *w, uint32_t worker, const rp__wire_ready *m)
{
    rp__wire_begin(w, RP__MSG_READY, worker, 0);
    rp__wbuf_u32(w, (uint32_t)m->status);
    rp__wbuf_u32(w, (uint32_t)m->pid);
    rp__wbuf_put(w, m->host, sizeof m->host);
    if (m->status != RP_OK) {
        void *p = rp__wbuf_grow(w, rp__wire_error_size(&m->err));
        if (p)
            rp__wire_error_write(p, &m->err);
    }
    return rp__wire_end(w);
}

int rp__wire_get_ready(rp__rbuf *r, rp__wire_ready *m)
{
    memset(m, 0, sizeof *m);
    m->status = (int32_t)rp__rbuf_u32(r);
    m->pid = (int32_t)rp__rbuf_u32(r);
    const char *host = rp__rbuf_get(r, sizeof m->host);
    if (!host)
        return RP_EPROTO;
    memcpy(m->host, host, sizeof m->host);
    m->host[sizeof m->host - 1] = '\0';
    if (m->status != RP_OK) {
        if (rp__rbuf_u32(r) != RP__REC_ERROR || get_error(r, &m->err) != RP_OK)
            return RP_EPROTO;
    }
    if (r->err || r->left != 0 || m->status > 0)
        return RP_EPROTO;
    return RP_OK;
}

/* ---- BATCH ----------------------------------------------------------------------------- */

/* Appends n bytes at *at and moves it on. */
static char *put_at(char *at, const void *p, size_t n)
{
    memcpy(at, p, n);
    return at + n;
}

int rp__wire_put_batch(rp__wbuf *w, uint32_t worker, const rp__wire_batch *m,
                       const void *input)
{
    size_t bytes;
    if (rp__mul_size((size_t)m->count, (size_t)m->in_size, &bytes) != RP_OK)
        return RP_EINVAL;
    bool control = m->timeout_ns || m->retries;
    const rp__fnref *ref = &m->fn;
    uint32_t namelen = (uint32_t)strnlen(ref->object, sizeof ref->object - 1);
    uint32_t idlen = ref->idlen <= RP__FNREF_IDMAX ? ref->idlen : RP__FNREF_IDMAX;
    /* The layout rp__wire_put_fnref and the rp__wbuf_* calls would write, sized
     * first and written in place: a batch goes out per apply. */
    size_t head = RP__WIRE_HDR_SIZE + 7 * 8 + 4 + (control ? 16 : 0) + 8 + 3 * 4 + idlen +
                  namelen;
    size_t pad = (8 - (head + 4) % 8) % 8; /* the input starts 8-byte aligned */
    w->len = 0;
    w->err = RP_OK;
    if (input && bytes > SIZE_MAX / 2 - head - 4 - pad)
        return w->err = RP_ENOMEM;
    char *at = rp__wbuf_grow(w, head + 4 + pad + (input ? bytes : 0));
    if (!at)
        return w->err;
    rp__wire_hdr_write(at, RP__MSG_BATCH, worker,
                       (input ? 0 : RP__BATCH_SEPARATE) | (control ? RP__BATCH_CONTROL : 0) |
                           (m->untimed ? RP__BATCH_UNTIMED : 0),
                       w->len);
    at += RP__WIRE_HDR_SIZE;
    uint64_t v[7] = { m->job, m->seq, m->start, m->count, m->chunk, m->in_size, m->out_size };
    at = put_at(at, v, sizeof v);
    at = put_at(at, &m->flags, 4);
    if (control) {
        uint32_t zero = 0;
        at = put_at(at, &m->timeout_ns, 8);
        at = put_at(at, &m->retries, 4);
        at = put_at(at, &zero, 4);
    }
    uint32_t f[3] = { ref->idkind, idlen, namelen };
    at = put_at(at, &ref->offset, 8);
    at = put_at(at, f, sizeof f);
    at = put_at(at, ref->id, idlen);
    at = put_at(at, ref->object, namelen);
    uint32_t pad32 = (uint32_t)pad;
    at = put_at(at, &pad32, 4);
    memset(at, 0, pad); /* no stale bytes on the wire */
    if (input && bytes)
        memcpy(at + pad, input, bytes);
    return RP_OK;
}

int rp__wire_get_batch(rp__rbuf *r, const rp__wire_hdr *h, rp__wire_batch *m)
{
    return rp__wire_get_batch_known(r, h, m, NULL, 0);
}

/* The encoded reference at r, if it is `known` (skipped) \return true. */
static bool fnref_is_known(rp__rbuf *r, const void *known, size_t known_len)
{
    if (!known || r->left < known_len || memcmp(r->p, known, known_len) != 0)
        return false;
    rp__rbuf_get(r, known_len);
    return true;
}

int rp__wire_get_batch_known(rp__rbuf *r, const rp__wire_hdr *h, rp__wire_batch *m,
                             const void *known, size_t known_len)
{
    /* (all but the reference: a batch is read per apply, the reference is 300 bytes) */
    memset(m, 0, offsetof(rp__wire_batch, fn));
    memset(&m->fn, 0, offsetof(rp__fnref, object) + 1);
    m->input = NULL;
    m->untimed = h->flags & RP__BATCH_UNTIMED;
    const char *fixed = rp__rbuf_get(r, 7 * 8 + 4); /* (one bounds check, not eight) */
    if (fixed) {
        uint64_t v[7];
        memcpy(v, fixed, sizeof v);
        m->job = v[0];
        m->seq = v[1];
        m->start = v[2];
        m->count = v[3];
        m->chunk = v[4];
        m->in_size = v[5];
        m->out_size = v[6];
        memcpy(&m->flags, fixed + sizeof v, 4);
    }
    if (h->flags & RP__BATCH_CONTROL) {
        m->timeout_ns = rp__rbuf_u64(r);
        m->retries = rp__rbuf_u32(r);
        rp__rbuf_u32(r);
    }
    if (r->err)
        return RP_EPROTO;
    m->fn_raw = r->p;
    m->fn_known = fnref_is_known(r, known, known_len);
    if (!m->fn_known && rp__wire_get_fnref(r, &m->fn) != RP_OK)
        return RP_EPROTO;
    m->fn_rawlen = (size_t)(r->p - m->fn_raw);
    uint32_t pad = rp__rbuf_u32(r);
    if (pad >= 8 || !rp__rbuf_get(r, pad))
        return r->err = RP_EPROTO;
    size_t bytes;
    if (m->count == 0 || m->in_size == 0 || m->start + m->count < m->start ||
        rp__mul_size((size_t)m->count, (size_t)m->in_size, &bytes) != RP_OK ||
        rp__mul_size((size_t)m->count, (size_t)m->out_size, &(size_t){ 0 }) != RP_OK)
        return r->err = RP_EPROTO;
    if (h->flags & RP__BATCH_SEPARATE)
        return r->left == 0 ? RP_OK : (r->err = RP_EPROTO);
    if (bytes != r->left)
        return r->err = RP_EPROTO;
    m->input = rp__rbuf_get(r, bytes);
    return m->input ? RP_OK : RP_EPROTO;
}

/* ---- RESULT ---------------------------------------------------------------------------- */

void rp__wire_result_write(void *p, uint32_t worker, uint32_t flags,
                           const rp__wire_result *m, uint64_t length)
{
    char *c = p;
    rp__wire_hdr_write(c, RP__MSG_RESULT, worker, flags, length);
    uint64_t v[8] = { m->job, m->seq, m->start, m->count, m->out_size, m->nrec,
                      m->rec_bytes, m->compute_ns };
    memcpy(c + RP__WIRE_HDR_SIZE, v, sizeof v);
}

int rp__wire_get_result(rp__rbuf *r, const rp__wire_hdr *h, rp__wire_result *m)
{
    memset(m, 0, sizeof *m);
    m->job = rp__rbuf_u64(r);
    m->seq = rp__rbuf_u64(r);
    m->start = rp__rbuf_u64(r);
    m->count = rp__rbuf_u64(r);
    m->out_size = rp__rbuf_u64(r);
    m->nrec = rp__rbuf_u64(r);
    m->rec_bytes = rp__rbuf_u64(r);
    m->compute_ns = rp__rbuf_u64(r);
    if (r->err || m->rec_bytes > r->left || m->nrec > m->rec_bytes / 8 ||
        m->start + m->count < m->start)
        return r->err = RP_EPROTO;
    m->records = rp__rbuf_get(r, (size_t)m->rec_bytes);
    size_t outbytes;
    if (rp__mul_size((size_t)m->count, (size_t)m->out_size, &outbytes) != RP_OK)
        return r->err = RP_EPROTO;
    if (h->flags & RP__RESULT_INLINE) {
        if (r->left != outbytes)
            return r->err = RP_EPROTO;
        m->outputs = rp__rbuf_get(r, outbytes);
    } else if (r->left != 0) {
        return r->err = RP_EPROTO;
    }
    return r->err;
}

void rp__wire_var_write(void *p, uint64_t index, uint64_t size)
{
    char *c = p;
    uint32_t kind = RP__REC_VAR, zero = 0;
    memcpy(c, &kind, 4);
    memcpy(c + 4, &zero, 4);
    memcpy(c + 8, &index, 8);
    memcpy(c + 16, &size, 8);
}

void rp__wire_var_kill(void *p)
{
    uint32_t kind = RP__REC_DEAD;
    memcpy(p, &kind, 4);
}

int rp__wire_next_record(rp__rbuf *r, int *kind, rp_error_t *e, uint64_t *index,
                         const void **data, uint64_t *size)
{
    if (r->err)
        return RP_EPROTO;
    if (r->left == 0)
        return 0;
    uint32_t k = rp__rbuf_u32(r);
    if (r->err)
        return RP_EPROTO;
    *kind = (int)k;
    if (k == RP__REC_ERROR)
        return get_error(r, e) == RP_OK ? 1 : RP_EPROTO;
    if (k != RP__REC_VAR && k != RP__REC_DEAD)
        return r->err = RP_EPROTO;
    rp__rbuf_u32(r);
    *index = rp__rbuf_u64(r);
    *size = rp__rbuf_u64(r);
    if (r->err || *size > r->left)
        return r->err = RP_EPROTO;
    size_t padded = ((size_t)*size + 7) & ~(size_t)7;
    if (padded > r->left)
        return r->err = RP_EPROTO;
    *data = rp__rbuf_get(r, padded);
    return 1;
}

/* ---- DIED --------------------------------------------------------------------------- */

int rp__wire_put_died(rp__wbuf *w, uint32_t worker, uint32_t flags, const rp__wire_died *m)
{
    rp__wire_begin(w, RP__MSG_DIED, worker, flags);
    rp__wbuf_u64(w, m->job);
    rp__wbuf_u64(w, m->seq);
    rp__wbuf_u64(w, m->index);
    rp__wbuf_u32(w, (uint32_t)m->status);
    rp__wbuf_u32(w, (uint32_t)m->pid);
    return rp__wire_end(w);
}

int rp__wire_get_died(rp__rbuf *r, rp__wire_died *m)
{
    m->job = rp__rbuf_u64(r);
    m->seq = rp__rbuf_u64(r);
    m->index = rp__rbuf_u64(r);
    m->status = (int32_t)rp__rbuf_u32(r);
    m->pid = (int32_t)rp__rbuf_u32(r);
    if (r->err || r->left != 0)
        return RP_EPROTO;
    return RP_OK;
}

/* ---- PROGRESS ----------------------------------------------------------------------- */

int rp__wire_put_progress(rp__wbuf *w, uint32_t worker, const rp__wire_progress *m)
{
    rp__wire_begin(w, RP__MSG_PROGRESS, worker, 0);
    rp__wbuf_u64(w, m->job);
    rp__wbuf_u64(w, m->seq);
    rp__wbuf_u64(w, m->items);
    return rp__wire_end(w);
}

int rp__wire_get_progress(rp__rbuf *r, rp__wire_progress *m)
{
    m->job = rp__rbuf_u64(r);
    m->seq = rp__rbuf_u64(r);
    m->items = rp__rbuf_u64(r);
    if (r->err || r->left != 0)
        return RP_EPROTO;
    return RP_OK;
}

/* ---- small control messages --------------------------------------------------------- */

int rp__wire_put_ctl(rp__wbuf *w, unsigned kind, uint32_t worker, int32_t status,
                     uint64_t seq)
{
    rp__wire_begin(w, kind, worker, 0);
    rp__wbuf_u32(w, (uint32_t)status);
    rp__wbuf_u32(w, 0);
    rp__wbuf_u64(w, seq);
    return rp__wire_end(w);
}

int rp__wire_put_cancel(rp__wbuf *w, uint64_t job, uint32_t flags)
{
    rp__wire_begin(w, RP__MSG_CANCEL, 0, flags);
    rp__wbuf_u64(w, job);
    return rp__wire_end(w);
}

int rp__wire_get_cancel(rp__rbuf *r, const rp__wire_hdr *h, uint64_t *job, uint32_t *flags)
{
    *job = rp__rbuf_u64(r);
    *flags = h->flags;
    if (r->err || r->left != 0 || (h->flags & ~(uint32_t)RP_CANCEL_KILL))
        return RP_EPROTO;
    return RP_OK;
}

int rp__wire_get_ctl(rp__rbuf *r, int32_t *status, uint64_t *seq)
{
    *status = (int32_t)rp__rbuf_u32(r);
    rp__rbuf_u32(r);
    *seq = rp__rbuf_u64(r);
    if (r->err || r->left != 0 || *status > 0)
        return RP_EPROTO;
    return RP_OK;
}
