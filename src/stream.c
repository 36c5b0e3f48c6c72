/* imap streams: every imap (over an array or a producer, fixed or variable-size
 * outputs, ordered or not) is a sequence of segments (iter.c), each an ordinary
 * tracked job of at most `seglen` items, submitted as the consumer advances.
 *
 * Bounds. `window` (opts.buffersize) items at most are read (submitted) and not
 * yet yielded: a segment is opened only when produced - consumed + seglen <=
 * window, with seglen = window / 4 (so three quarters of the window at least are
 * in flight while the consumer works). At most MAX_LIVE segments are kept, so an
 * unordered stream whose old segments wait for one slow item each holds at most
 * 2 * window items of memory. The master's memory is flat in n: nothing is
 * allocated per item of the whole stream.
 *
 * The producer is called only on the thread that creates the stream or calls
 * rp_iter_next / rp_iter_next_var on it, at the start of the call, never
 * concurrently and never from rp_iter_free. After it returns 0 or an error it is
 * not called again. A producer error ends the stream: the items read before it
 * run and are yielded as usual, then one call returns the producer's code (with
 * *err: index = the item it failed to produce, worker -1), then RP_DONE.
 *
 * A segment the pool refuses (closed, terminated, out of memory) yields each of its
 * items with the refusal's code (RP_ECLOSED; RP_ECANCELED once the pool was
 * terminated); a producer is not called again after that.
 *
 * Outputs are not copied out of the segments: rp_iter_next_var hands out a pointer
 * valid until the next call. So finished segments are freed, and the last variable-
 * size output released, at the start of the next call. */
#include "monitor.h"
#include "result.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIVE 8
#define DEFAULT_BYTES ((size_t)16 << 20)
#define DEFAULT_MAX ((size_t)1 << 18)
#define VAR_ITEM_GUESS 64   /* bytes of a variable-size output, for the default window */
#define VAR_DEFAULT_MAX 4096 /* their sizes are not known ahead: a smaller window */
#define SLICE_MIN 1e-3      /* unordered: waits on one segment in slices growing */
#define SLICE_MAX 16e-3     /* from 1 to 16 ms while another may be yielding */

struct part {
    rp__seg *seg;       /* NULL when refused */
    int      refused;   /* the pool's code for a refused segment */
    size_t   base, n;
    size_t   next;      /* refused: next item to yield */
    char    *in;        /* producer: the items it wrote (owned) */
};

struct rp_iter {
    rp_pool_t     *pool;
    rp_task_fn     fn;
    const char    *in;       /* array source, else NULL */
    size_t         n;        /* array: items; producer: unknown */
    rp_producer_fn producer;
    void          *userdata;
    size_t         in_size, out_size;
    bool           ordered, var;
    rp_map_opts_t  opts;     /* given to each segment (no callbacks) */
    size_t         window, seglen;
    size_t         produced; /* items read (array: handed to segments) */
    size_t         consumed; /* items yielded */
    bool           eof;      /* nothing more to read */
    int            perr;     /* the producer's error, 0 if none */
    size_t         perr_index;
    bool           perr_told;
    struct part   *live[MAX_LIVE]; /* oldest first */
    size_t         nlive;
    struct part   *last;     /* the part of the item the last call yielded */
    size_t         last_i;
    bool           last_ok;
    size_t         turn;     /* unordered: the part to look at first */
    bool           canceled; /* rp_iter_cancel: nothing more is submitted or read */
    struct rp__sbar bar;     /* opts.progress or $RP_PROGRESS: the stream's own bar */
    size_t         nfailed;  /* items yielded with a failure (for the bar) */
};

static size_t default_window(rp_pool_t *pool, size_t in_size, size_t out_size, bool var)
{
    size_t per = in_size + (var ? VAR_ITEM_GUESS : out_size);
    size_t w = DEFAULT_BYTES / (per ? per : 1);
    int workers = rp_pool_size(pool);
    size_t least = 4 * (size_t)(workers > 0 ? workers : 1);
    size_t most = var ? VAR_DEFAULT_MAX : DEFAULT_MAX;
    if (w > most)
        w = most;
    return w < least ? least : w;
}

static void part_free(struct part *p)
{
    if (!p)
        return;
    rp__seg_free(p->seg);
    free(p->in);
    free(p);
}

/* Reads up to len items from the producer into p->in. \return how many. */
static size_t produce(rp_iter_t *it, struct part *p, size_t len)
{
    size_t k = 0;
    while (k < len) {
        int rc = it->producer(p->in + k * it->in_size, it->userdata);
        if (rc > 0) {
            k++;
            continue;
        }
        if (rc < 0) {
            it->perr = rc;
            it->perr_index = it->produced + k;
        }
        it->eof = true;
        break;
    }
    return k;
}

/* Opens the next segment. \return RP_OK, or RP_ENOMEM (nothing changed). */
static int open_next(rp_iter_t *it)
{
    size_t len = it->seglen;
    if (!it->producer) {
        if (len > it->n - it->produced)
            len = it->n - it->produced;
        if (len == 0) {
            it->eof = true;
            return RP_OK;
        }
    }
    if (it->canceled && it->producer) {
        it->eof = true; /* canceled: the producer is not read again */
        return RP_OK;
    }
    struct part *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    if (it->canceled) { /* the array's items not submitted yet: canceled, not run */
        p->base = it->produced;
        p->n = len;
        p->refused = RP_ECANCELED;
        it->produced += len;
        if (it->produced == it->n)
            it->eof = true;
        it->live[it->nlive++] = p;
        return RP_OK;
    }
    const char *in;
    if (it->producer) {
        /* zeroed: bytes a producer leaves unwritten still travel to the workers */
        if (!(p->in = calloc(len, it->in_size))) {
            free(p);
            return RP_ENOMEM;
        }
        len = produce(it, p, len);
        if (len == 0) {
            part_free(p);
            return RP_OK;
        }
        in = p->in;
    } else {
        in = it->in + it->produced * it->in_size;
    }
    p->base = it->produced;
    p->n = len;
    int rc = rp__seg_open(it->pool, it->fn, in, len, it->in_size, it->out_size, &it->opts,
                          it->ordered, it->var, p->base, &p->seg);
    if (rc != RP_OK) {
        p->seg = NULL;
        /* refused by a terminated pool: canceled, as its unfinished items are */
        p->refused = rc == RP_ECLOSED && rp__pool_terminating(it->pool) ? RP_ECANCELED : rc;
        if (it->producer)
            it->eof = true; /* what it would read next could not run either */
    }
    it->produced += len;
    if (!it->producer && it->produced == it->n)
        it->eof = true; /* the pool is not used again: the stream may outlive it */
    it->live[it->nlive++] = p;
    return RP_OK;
}

/* Opens segments while the window has room for a whole one. */
static void top_up(rp_iter_t *it)
{
    while (!it->eof && it->nlive < MAX_LIVE &&
           it->produced - it->consumed + it->seglen <= it->window)
        if (open_next(it) != RP_OK)
            break; /* out of memory: the consumer goes on with what is open */
}

static size_t part_left(const struct part *p)
{
    return p->seg ? rp__seg_left(p->seg) : p->n - p->next;
}

/* Releases what the last call handed out and frees the finished segments. Only
 * the segment that yielded last can have finished since. */
static void reap(rp_iter_t *it)
{
    struct part *last = it->last;
    if (!last)
        return;
    if (it->last_ok && it->var && last->seg)
        rp__seg_drop(last->seg, it->last_i);
    it->last = NULL;
    if (part_left(last) > 0)
        return;
    size_t k = 0;
    for (size_t j = 0; j < it->nlive; j++) {
        if (part_left(it->live[j]) == 0)
            part_free(it->live[j]);
        else
            it->live[k++] = it->live[j];
    }
    it->nlive = k;
    if (it->turn >= k)
        it->turn = 0;
}

/* Takes the next item of part p (timeout as rp__seg_next). */
static int take(rp_iter_t *it, struct part *p, double timeout, size_t *index,
                const void **data, size_t *size, rp_error_t *err)
{
    size_t i;
    int rc;
    if (!p->seg) {
        i = p->next++;
        *data = NULL;
        *size = 0;
        rc = p->refused;
        if (err && it->canceled && rc == RP_ECANCELED)
            rp__error_set(err, rc, p->base + i, -1, NULL,
                          "canceled by rp_iter_cancel before it was submitted");
        else if (err)
            rp__error_set(err, rc, p->base + i, -1, NULL,
                          "not run: the pool refused the stream's items %zu to %zu (%s)",
                          p->base, p->base + p->n - 1, rp_err_name(rc));
    } else {
        rc = rp__seg_next(p->seg, timeout, &i, data, size, err);
        if (rc == RP_ETIMEDOUT || rc == RP_DONE)
            return rc;
        if (rc != RP_OK && err)
            err->index += p->base;
    }
    it->consumed++;
    it->last = p;
    it->last_i = i;
    it->last_ok = rc == RP_OK;
    *index = p->base + i;
    return rc;
}

static int next_unordered(rp_iter_t *it, double deadline, size_t *index, const void **data,
                          size_t *size, rp_error_t *err)
{
    double slice = SLICE_MIN;
    for (;;) {
        for (size_t k = 0; k < it->nlive; k++) {
            struct part *p = it->live[(it->turn + k) % it->nlive];
            if (part_left(p) == 0)
                continue;
            int rc = take(it, p, 0, index, data, size, err);
            if (rc != RP_ETIMEDOUT) {
                it->turn = (it->turn + k) % it->nlive;
                return rc;
            }
        }
        /* Nothing now: wait on the oldest segment with items left (the scheduler
         * serves it first), in slices, since another may yield meanwhile. */
        struct part *oldest = NULL;
        for (size_t k = 0; k < it->nlive && !oldest; k++)
            if (part_left(it->live[k]) > 0)
                oldest = it->live[k];
        double left = deadline - rp__now();
        if (!oldest || left <= 0)
            return RP_ETIMEDOUT;
        int rc = take(it, oldest, fmin(left, slice), index, data, size, err);
        if (rc != RP_ETIMEDOUT)
            return rc;
        slice = fmin(2 * slice, SLICE_MAX);
    }
}

static int next_item_raw(rp_iter_t *it, double timeout, size_t *index, const void **data,
                         size_t *size, rp_error_t *err);

/* The next item, and the stream's bar: its line when due, the last one at the end. */
static int next_item(rp_iter_t *it, double timeout, size_t *index, const void **data,
                     size_t *size, rp_error_t *err)
{
    int rc = next_item_raw(it, timeout, index, data, size, err);
    if (!it->bar.on || rc == RP_ETIMEDOUT)
        return rc;
    if (rc == RP_DONE) {
        rp__bar_stream(&it->bar, it->consumed, it->consumed, it->nfailed, true);
        return rc;
    }
    it->nfailed += rc != RP_OK;
    size_t total = it->producer ? (it->eof ? it->produced : SIZE_MAX) : it->n;
    rp__bar_stream(&it->bar, it->consumed, total, it->nfailed, false);
    return rc;
}

static int next_item_raw(rp_iter_t *it, double timeout, size_t *index, const void **data,
                         size_t *size, rp_error_t *err)
{
    double deadline = rp__deadline(rp__timeout(timeout));
    reap(it);
    top_up(it);
    if (it->nlive == 0) {
        if (it->perr && !it->perr_told) {
            it->perr_told = true;
            *index = it->perr_index;
            if (err)
                rp__error_set(err, it->perr, it->perr_index, -1, NULL,
                              "the producer returned %d instead of item %zu", it->perr,
                              it->perr_index);
            return it->perr;
        }
        return RP_DONE;
    }
    if (it->ordered) {
        double left = isinf(deadline) ? RP_FOREVER : fmax(0, deadline - rp__now());
        return take(it, it->live[0], left, index, data, size, err);
    }
    return next_unordered(it, deadline, index, data, size, err);
}

int rp_iter_next(rp_iter_t *it, double timeout, size_t *index, void *out_item,
                 rp_error_t *err)
{
    if (!it || (it->var && out_item))
        return RP_EINVAL;
    size_t i, size;
    const void *data;
    int rc = next_item(it, timeout, &i, &data, &size, err);
    if (rc == RP_DONE || rc == RP_ETIMEDOUT)
        return rc;
    if (index)
        *index = i;
    if (rc == RP_OK && out_item && size)
        memcpy(out_item, data, size);
    return rc;
}

int rp_iter_next_var(rp_iter_t *it, double timeout, size_t *index, const void **data,
                     size_t *size, rp_error_t *err)
{
    if (!it)
        return RP_EINVAL;
    size_t i, sz;
    const void *d;
    int rc = next_item(it, timeout, &i, &d, &sz, err);
    if (rc == RP_DONE || rc == RP_ETIMEDOUT)
        return rc;
    if (index)
        *index = i;
    if (data)
        *data = d;
    if (size)
        *size = sz;
    return rc;
}

int rp_iter_cancel(rp_iter_t *it, int flags)
{
    if (!it || (flags & ~RP_CANCEL_KILL))
        return RP_EINVAL;
    it->canceled = true;
    int rc = RP_OK;
    for (size_t j = 0; j < it->nlive; j++)
        if (it->live[j]->seg) {
            int r = rp_result_cancel(rp__seg_result(it->live[j]->seg), flags);
            if (r != RP_OK)
                rc = r;
        }
    return rc;
}

void rp_iter_free(rp_iter_t *it)
{
    if (!it)
        return;
    for (size_t k = 0; k < it->nlive; k++)
        part_free(it->live[k]);
    free(it);
}

/* ---- creation ------------------------------------------------------------------ */

static int stream_open(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                       rp_producer_fn producer, void *userdata, size_t in_size,
                       size_t out_size, const rp_map_opts_t *opts, bool ordered, bool var,
                       rp_iter_t **itp)
{
    if (!itp)
        return RP_EINVAL;
    *itp = NULL;
    /* The whole array's sizes are checked as a map's would be (a producer's n is
     * unknown: its items are checked one segment at a time). */
    int rc = rp__check_map_args(pool, fn, in, producer ? 0 : n, in_size, "",
                                var ? sizeof(rp__varslot) : out_size);
    if (rc != RP_OK)
        return rc;
    /* A stream has no result object to give a callback, and no single job for a
     * journal to name. */
    if (opts && (opts->callback || opts->error_callback || opts->journal))
        return RP_EINVAL;
    rp_iter_t *it = calloc(1, sizeof *it);
    if (!it)
        return RP_ENOMEM;
    it->pool = pool;
    it->fn = fn;
    it->in = in;
    it->n = producer ? SIZE_MAX : n;
    it->producer = producer;
    it->userdata = userdata;
    it->in_size = in_size;
    it->out_size = var ? 0 : out_size;
    it->ordered = ordered;
    it->var = var;
    if (opts)
        it->opts = *opts;
    it->opts.progress = false; /* no bar per segment: the stream draws its own */
    it->bar.asked = opts && opts->progress;
    it->bar.on = it->bar.asked || rp__progress_env();
    it->bar.t0 = rp__now();
    it->window = it->opts.buffersize ? it->opts.buffersize
                                     : default_window(pool, in_size, out_size, var);
    it->seglen = it->window / 4 ? it->window / 4 : 1;
    /* A whole segment's sizes, before anything is read. */
    rc = rp__check_map_args(pool, fn, "", it->seglen, in_size, "",
                            var ? sizeof(rp__varslot) : out_size);
    if (rc != RP_OK) {
        free(it);
        return rc;
    }
    /* The pool's verdict before any item is read: an empty segment. */
    rp__seg *probe;
    rc = rp__seg_open(pool, fn, NULL, 0, in_size, it->out_size, &it->opts, ordered, var, 0,
                      &probe);
    if (rc != RP_OK) {
        free(it);
        return rc;
    }
    rp__seg_free(probe);
    top_up(it);
    if (it->nlive > 0 && it->live[0]->refused && it->live[0]->refused != RP_ENOMEM) {
        rc = it->live[0]->refused; /* closed meanwhile: nothing runs */
        rp_iter_free(it);
        return rc;
    }
    *itp = it;
    return RP_OK;
}

int rp_imap(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
            size_t out_size, const rp_map_opts_t *opts, rp_iter_t **it)
{
    return stream_open(pool, fn, in, n, NULL, NULL, in_size, out_size, opts, true, false, it);
}

int rp_imap_unordered(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                      size_t in_size, size_t out_size, const rp_map_opts_t *opts,
                      rp_iter_t **it)
{
    return stream_open(pool, fn, in, n, NULL, NULL, in_size, out_size, opts, false, false, it);
}

static int check_producer(rp_producer_fn producer, rp_iter_t **it)
{
    if (it)
        *it = NULL;
    return producer ? RP_OK : RP_EINVAL;
}

int rp_imap_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer, void *userdata,
                     size_t in_size, size_t out_size, const rp_map_opts_t *opts,
                     rp_iter_t **it)
{
    int rc = check_producer(producer, it);
    return rc ? rc
              : stream_open(pool, fn, NULL, 0, producer, userdata, in_size, out_size, opts,
                            true, false, it);
}

int rp_imap_unordered_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer,
                               void *userdata, size_t in_size, size_t out_size,
                               const rp_map_opts_t *opts, rp_iter_t **it)
{
    int rc = check_producer(producer, it);
    return rc ? rc
              : stream_open(pool, fn, NULL, 0, producer, userdata, in_size, out_size, opts,
                            false, false, it);
}

int rp_imap_var(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                const rp_map_opts_t *opts, rp_iter_t **it)
{
    return stream_open(pool, fn, in, n, NULL, NULL, in_size, 0, opts, true, true, it);
}

int rp_imap_var_unordered(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                          size_t in_size, const rp_map_opts_t *opts, rp_iter_t **it)
{
    return stream_open(pool, fn, in, n, NULL, NULL, in_size, 0, opts, false, true, it);
}

int rp_imap_var_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer,
                         void *userdata, size_t in_size, const rp_map_opts_t *opts,
                         rp_iter_t **it)
{
    int rc = check_producer(producer, it);
    return rc ? rc
              : stream_open(pool, fn, NULL, 0, producer, userdata, in_size, 0, opts, true,
                            true, it);
}

int rp_imap_var_unordered_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer,
                                   void *userdata, size_t in_size, const rp_map_opts_t *opts,
                                   rp_iter_t **it)
{
    int rc = check_producer(producer, it);
    return rc ? rc
              : stream_open(pool, fn, NULL, 0, producer, userdata, in_size, 0, opts, false,
                            true, it);
}
