/* Resume: a map's journal file (opts.journal).
 *
 * The file is a header naming the job, then records appended by the master as
 * items arrive, each checked by its own hash:
 *
 *   header  "RPJRNL01", version, var, n, in_size, out_size (0 for var), a hash of
 *           the n * in_size input bytes, the task's identity (fnref.c: build-id
 *           or contents hash, and offset), a hash of all that
 *   record  magic "RPJR", kind (output | failure), item index, payload length,
 *           payload (padded to 8 bytes), hash of the record
 *
 * A rerun reads the file: a header that differs is RP_EJOURNAL; records are read
 * up to the first that is cut short or does not check (a program killed while
 * writing it), and the file is cut there. The outputs it holds go straight into
 * the caller's buffers (var: its output slots), its failures are kept, and a job
 * of only the missing items is submitted (their inputs gathered into a buffer of
 * their own, a map from the job's indices to the caller's). The job is tracked
 * (RP__JOB_TRACK): the monitor thread (monitor.c) lets the backend collect what
 * arrived and appends it, one write() per batch, fdatasync at most every
 * SYNC_S. Finalization appends the rest, syncs, closes, and gives the result the
 * caller's view: outputs scattered, failures at the caller's indices, restored
 * failures added, n the caller's. */
#include "fnref.h"
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define J_MAGIC   "RPJRNL01"
#define J_VERSION 1u
#define R_MAGIC   0x524a5052u /* "RPJR" */
#define SYNC_S    1.0         /* fdatasync at most this often while running */
#define FAIL_BYTES (6 * 4 + 64 + 256)

enum { REC_OUTPUT = 1, REC_FAIL = 2 };

struct jhdr {
    char     magic[8];
    uint32_t version, var;
    uint64_t n, in_size, out_size;
    uint64_t in_hash;
    uint32_t idkind, idlen;
    uint8_t  id[RP__FNREF_IDMAX];
    uint64_t offset;
    uint64_t check;
};

struct jrec {
    uint32_t magic, kind;
    uint64_t index, len;
};

struct jfail {
    size_t     index;
    rp_error_t e;
};

struct rp__journal {
    pthread_mutex_t lock;
    int           fd;         /* -1 once closed, or after a failed write */
    char         *path;
    bool          var;
    size_t        n, out_size; /* the caller's n; bytes per output (fixed) */
    size_t       *map;        /* job index -> the caller's index; NULL: the same */
    void         *user_out;   /* the caller's outputs (var: its rp__varslot array) */
    const void   *user_in;
    void         *sub_in, *sub_out; /* the job's own buffers (with map) */
    struct jfail *fails;      /* failures read back */
    size_t        nfails;
    char         *buf;        /* records being written */
    size_t        len, cap;
    double        synced;
    bool          dirty;
};

/* ---- hashing ----------------------------------------------------------------------- */

static uint64_t fmix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* 64 bits over len bytes: enough to tell inputs and torn records apart. */
static uint64_t hash64(uint64_t seed, const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = fmix(seed ^ (uint64_t)len);
    for (; len >= 8; b += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, b, len);
    return fmix((h ^ w) * 0x100000001b3ull);
}

static size_t pad8(size_t v)
{
    return (v + 7) & ~(size_t)7;
}

/* ---- writing ------------------------------------------------------------------------ */

static void *buf_room(struct rp__journal *j, size_t bytes)
{
    if (j->len + bytes > j->cap) {
        size_t cap = j->cap ? j->cap : 4096;
        while (cap < j->len + bytes)
            cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b)
            return NULL;
        j->buf = b;
        j->cap = cap;
    }
    void *p = j->buf + j->len;
    j->len += bytes;
    return p;
}

static void put_record(struct rp__journal *j, uint32_t kind, size_t index, const void *data,
                       size_t len)
{
    size_t body = pad8(len);
    char *p = buf_room(j, sizeof(struct jrec) + body + 8);
    if (!p)
        return; /* out of memory: the item is run again by a rerun */
    struct jrec h = { R_MAGIC, kind, index, len };
    memcpy(p, &h, sizeof h);
    if (len)
        memcpy(p + sizeof h, data, len);
    memset(p + sizeof h + len, 0, body - len);
    uint64_t check = hash64(R_MAGIC, p, sizeof h + len);
    memcpy(p + sizeof h + body, &check, 8);
}

static void put_fail(struct rp__journal *j, size_t index, const rp_error_t *e)
{
    char b[FAIL_BYTES];
    int32_t v[6] = { e->code, e->task_code, e->worker, e->signal, e->exit_status, 0 };
    memcpy(b, v, sizeof v);
    memcpy(b + sizeof v, e->host, 64);
    memcpy(b + sizeof v + 64, e->message, 256);
    put_record(j, REC_FAIL, index, b, sizeof b);
}

static void get_fail(const char *b, size_t index, rp_error_t *e)
{
    int32_t v[6];
    memcpy(v, b, sizeof v);
    memset(e, 0, sizeof *e);
    e->code = v[0];
    e->task_code = v[1];
    e->worker = v[2];
    e->signal = v[3];
    e->exit_status = v[4];
    e->index = index;
    memcpy(e->host, b + sizeof v, 64);
    memcpy(e->message, b + sizeof v + 64, 256);
    e->host[63] = e->message[255] = '\0';
}

static bool write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* Writes the records gathered (one write() per batch). A failed write ends the
 * journal: the job goes on, and a rerun runs what is not in the file. */
static void flush(struct rp__journal *j)
{
    if (j->len == 0 || j->fd < 0) {
        j->len = 0;
        return;
    }
    if (!write_all(j->fd, j->buf, j->len)) {
        fprintf(stderr, "rankpool: journal %s: write failed (%s); no more records\n", j->path,
                strerror(errno));
        close(j->fd);
        j->fd = -1;
    }
    j->len = 0;
    j->dirty = true;
}

/* Appends the items of r that arrived (under j->lock). Canceled items, and those
 * failed because no worker was left, say nothing of the item: not journaled. */
static void write_arrivals(rp_result_t *r, struct rp__journal *j)
{
    size_t idx[256], k;
    while ((k = rp__result_take_arrivals(r, idx, 256)) > 0) {
        for (size_t q = 0; q < k; q++) {
            size_t s = idx[q], i = j->map ? j->map[s] : s;
            rp_error_t e;
            if (rp__result_find_error(r, s, &e)) {
                if (e.code != RP_ECANCELED && e.code != RP_EBROKEN)
                    put_fail(j, i, &e);
            } else if (j->var) {
                const rp__varslot *v = (const rp__varslot *)r->job.out + s;
                put_record(j, REC_OUTPUT, i, v->data, v->data ? v->size : 0);
            } else {
                put_record(j, REC_OUTPUT, i,
                           j->out_size ? r->job.out + s * j->out_size : NULL, j->out_size);
            }
        }
        flush(j);
    }
}

static void sync_file(struct rp__journal *j)
{
    if (j->fd >= 0 && j->dirty) {
        fdatasync(j->fd);
        j->dirty = false;
    }
    j->synced = rp__now();
}

void rp__journal_pump(rp_result_t *r)
{
    struct rp__journal *j = r->monitor->journal;
    pthread_mutex_lock(&j->lock);
    if (j->fd >= 0 && rp__result_ops_enter(r)) {
        rp_pool_t *pool = r->pool;
        if (pool->ops->collect) /* local: deliver what the marks say arrived */
            pool->ops->collect(pool, &r->job, false, 0);
        rp__result_ops_leave(r);
    }
    if (j->fd >= 0) {
        write_arrivals(r, j);
        if (rp__now() - j->synced >= SYNC_S)
            sync_file(j);
    }
    pthread_mutex_unlock(&j->lock);
}

/* ---- the caller's view at the end ----------------------------------------------------- */

/* Failures at the job's indices -> the caller's (a range splits where the map
 * does not run on). Under r->lock. */
static void remap_fails(rp_result_t *r, const size_t *map)
{
    rp__fail *nf = NULL;
    size_t nn = 0, cap = 0;
    for (size_t k = 0; k < r->nfails; k++) {
        const rp__fail *f = &r->fails[k];
        for (size_t s = f->start, end = f->start + f->count; s < end;) {
            size_t e = s + 1;
            while (e < end && map[e] == map[e - 1] + 1)
                e++;
            if (nn == cap) {
                size_t c = cap ? 2 * cap : r->nfails + 4;
                rp__fail *g = realloc(nf, c * sizeof *g);
                if (!g)
                    break; /* out of memory: counted, without a record */
                nf = g;
                cap = c;
            }
            nf[nn] = *f;
            nf[nn].start = nf[nn].e.index = map[s];
            nf[nn].count = e - s;
            nn++;
            s = e;
        }
    }
    free(r->fails);
    r->fails = nf;
    r->nfails = nn;
    r->capfails = cap;
    free(r->failidx);
    r->failidx = NULL;
}

void rp__journal_final(rp_result_t *r)
{
    struct rp__journal *j = r->monitor->journal;
    pthread_mutex_lock(&j->lock);
    if (j->fd >= 0) {
        write_arrivals(r, j);
        sync_file(j);
        close(j->fd);
        j->fd = -1;
    }
    size_t m = r->job.n;
    if (j->map) {
        if (j->var) {
            rp__varslot *from = j->sub_out, *to = j->user_out;
            for (size_t s = 0; s < m; s++) {
                to[j->map[s]] = from[s];
                from[s].data = NULL;
            }
        } else if (j->out_size) {
            for (size_t s = 0; s < m; s++)
                memcpy((char *)j->user_out + j->map[s] * j->out_size,
                       (char *)j->sub_out + s * j->out_size, j->out_size);
        }
        pthread_mutex_lock(&r->lock);
        remap_fails(r, j->map);
        pthread_mutex_unlock(&r->lock);
    }
    /* the caller's job from now on (the backend released it: nobody else reads it) */
    r->job.flags &= ~(unsigned)RP__JOB_TRACK;
    r->job.n = j->n;
    r->job.in = j->user_in;
    r->job.out = j->out_size || j->var ? j->user_out : NULL;
    for (size_t k = 0; k < j->nfails; k++)
        rp__job_fail(&r->job, &j->fails[k].e);
    pthread_mutex_unlock(&j->lock);
}

void rp__journal_free(struct rp__journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j->sub_in);
    free(j->sub_out); /* var: its outputs were handed over (or never came) */
    free(j->map);
    free(j->fails);
    free(j->buf);
    free(j->path);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* ---- reading it back ------------------------------------------------------------------- */

static void make_header(struct jhdr *h, const rp__fnref *ref, size_t n, size_t in_size,
                        size_t out_size, bool var, const void *in)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, J_MAGIC, 8);
    h->version = J_VERSION;
    h->var = var;
    h->n = n;
    h->in_size = in_size;
    h->out_size = var ? 0 : out_size;
    h->in_hash = hash64(0x5250494e50555473ull, in, n * in_size);
    h->idkind = ref->idkind;
    h->idlen = ref->idlen;
    memcpy(h->id, ref->id, sizeof h->id);
    h->offset = ref->offset;
    h->check = hash64(R_MAGIC, h, offsetof(struct jhdr, check));
}

/* Applies one checked record. have[i]: 0 missing, 1 output, 2 failed. */
static bool apply_record(struct rp__journal *j, const struct jrec *h, const char *data,
                         uint8_t *have, size_t *nfails)
{
    size_t i = (size_t)h->index;
    if (h->kind == REC_OUTPUT) {
        if (!j->var && h->len != j->out_size)
            return false;
        if (j->var) {
            rp__varslot *v = (rp__varslot *)j->user_out + i;
            void *copy = malloc(h->len ? h->len : 1);
            if (!copy)
                return false;
            memcpy(copy, data, h->len);
            free(v->data);
            v->data = copy;
            v->size = h->len;
        } else if (j->out_size) {
            memcpy((char *)j->user_out + i * j->out_size, data, j->out_size);
        }
        have[i] = 1;
        return true;
    }
    if (h->len != FAIL_BYTES)
        return false;
    if (*nfails % 64 == 0) {
        struct jfail *f = realloc(j->fails, (*nfails + 64) * sizeof *f);
        if (!f)
            return false;
        j->fails = f;
    }
    j->fails[*nfails].index = i;
    get_fail(data, i, &j->fails[*nfails].e);
    (*nfails)++;
    if (j->var) {
        rp__varslot *v = (rp__varslot *)j->user_out + i;
        free(v->data);
        v->data = NULL;
        v->size = 0;
    }
    have[i] = 2;
    return true;
}

/* Reads the records of the file (size bytes, mapped at p) after the header; keeps
 * the last word on each item. \return where the good records end. */
static size_t read_records(struct rp__journal *j, const char *p, size_t size, uint8_t *have)
{
    size_t off = sizeof(struct jhdr), nf = 0;
    while (size - off >= sizeof(struct jrec) + 8) {
        struct jrec h;
        memcpy(&h, p + off, sizeof h);
        if (h.magic != R_MAGIC || (h.kind != REC_OUTPUT && h.kind != REC_FAIL) || h.index >= j->n ||
            h.len > size - off - sizeof h - 8)
            break;
        size_t body = pad8((size_t)h.len);
        if (body > size - off - sizeof h - 8)
            break;
        uint64_t check;
        memcpy(&check, p + off + sizeof h + body, 8);
        if (check != hash64(R_MAGIC, p + off, sizeof h + (size_t)h.len) ||
            !apply_record(j, &h, p + off + sizeof h, have, &nf))
            break;
        off += sizeof h + body + 8;
    }
    /* the failures that are an item's last word (marked from the end: 3), in order */
    for (size_t k = nf; k-- > 0;) {
        size_t i = j->fails[k].index;
        if (have[i] == 2) {
            have[i] = 3;
            j->fails[k].e.index = SIZE_MAX; /* the one kept */
        }
    }
    size_t kept = 0;
    for (size_t k = 0; k < nf; k++)
        if (j->fails[k].e.index == SIZE_MAX) {
            j->fails[kept] = j->fails[k];
            j->fails[kept].e.index = j->fails[kept].index;
            have[j->fails[kept].index] = 2;
            kept++;
        }
    j->nfails = kept;
    return off;
}

/* Opens (or creates) the journal and reads what it holds into the caller's
 * outputs and j->fails. \return RP_OK or RP_EJOURNAL. */
static int journal_open(struct rp__journal *j, const struct jhdr *want, uint8_t *have)
{
    j->fd = open(j->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    struct stat st;
    if (j->fd < 0 || fstat(j->fd, &st) != 0)
        return RP_EJOURNAL;
    size_t size = (size_t)st.st_size;
    if (size < sizeof *want) {
        /* new, or a header cut short: what is there must be the start of ours */
        char head[sizeof *want];
        if (size > 0 && (pread(j->fd, head, size, 0) != (ssize_t)size ||
                         memcmp(head, want, size) != 0))
            return RP_EJOURNAL;
        if (ftruncate(j->fd, 0) != 0 || !write_all(j->fd, (const char *)want, sizeof *want) ||
            fdatasync(j->fd) != 0)
            return RP_EJOURNAL;
        return RP_OK;
    }
    char *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, j->fd, 0);
    if (p == MAP_FAILED)
        return RP_EJOURNAL;
    if (memcmp(p, want, sizeof *want) != 0) {
        munmap(p, size);
        return RP_EJOURNAL;
    }
    size_t good = read_records(j, p, size, have);
    munmap(p, size);
    if (good < size && ftruncate(j->fd, (off_t)good) != 0) /* drop a record cut short */
        return RP_EJOURNAL;
    return RP_OK;
}

int rp__journal_submit(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                       size_t in_size, void *out, size_t out_size,
                       const rp_map_opts_t *opts, unsigned flags, rp_result_t **res)
{
    rp__fnref ref;
    int rc = rp__fnref_make((rp__anyfn)fn, &ref);
    if (rc != RP_OK)
        return rc;
    struct rp__journal *j = calloc(1, sizeof *j);
    struct rp__monitorres *w = calloc(1, sizeof *w);
    uint8_t *have = calloc(n ? n : 1, 1);
    if (!j || !w || !have || !(j->path = strdup(opts->journal))) {
        free(have);
        free(w);
        if (j)
            free(j->path);
        free(j);
        return RP_ENOMEM;
    }
    pthread_mutex_init(&j->lock, NULL);
    j->var = flags & RP__JOB_VAR;
    j->n = n;
    j->out_size = j->var ? 0 : out_size;
    j->user_in = in;
    j->user_out = out;
    w->journal = j;
    w->total = n;
    struct jhdr want;
    make_header(&want, &ref, n, in_size, out_size, j->var, in);
    rc = journal_open(j, &want, have);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += have[i] == 0;
    w->skipped = n - m;
    const void *sub_in = in;
    void *sub_out = out;
    if (rc == RP_OK && m < n) { /* gather the missing items */
        j->map = malloc((m ? m : 1) * sizeof *j->map);
        j->sub_in = malloc(m ? m * in_size : 1);
        j->sub_out = calloc(m ? m : 1, out_size ? out_size : 1);
        if (!j->map || !j->sub_in || !j->sub_out) {
            rc = RP_ENOMEM;
        } else {
            for (size_t i = 0, s = 0; i < n; i++)
                if (have[i] == 0) {
                    j->map[s] = i;
                    memcpy((char *)j->sub_in + s * in_size, (const char *)in + i * in_size,
                           in_size);
                    s++;
                }
            sub_in = j->sub_in;
            sub_out = j->sub_out;
        }
    }
    free(have);
    if (rc != RP_OK) {
        rp__monitor_free(w);
        return rc;
    }
    return rp__result_submit_monitored(pool, fn, sub_in, m, in_size, sub_out, out_size, opts,
                                       flags | RP__JOB_TRACK, 0, w, res);
}
