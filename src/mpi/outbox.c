/* The master's sends it no longer waits for, kept until they complete.
 *
 * Open MPI does not take a started send back: MPI_Cancel of a send is a no-op in
 * its ob1 PML, and MPI_Request_free lets the send go on, reading its buffer,
 * whenever the receiver takes it. A rank the master stops waiting for (its batches
 * stranded, or the rank given up) may take its sends much later: a stopped rank
 * resumed, a link back up. So a send whose buffer the master would reuse or free
 * before it completed comes here with its buffer: the buffer is freed only once
 * the send is complete (MPI_Testsome on each pass of the pool thread), never
 * before. What is still pending when the pool ends is let go (MPI_Request_free)
 * and its buffer kept for the life of the process: the rank may take it even then.
 *
 * The copies of batches' large inputs (send.c) come here when their rank is given
 * up; a large input that lies in a buffer of rp_pool_alloc (malloc'd memory the
 * library frees) goes from that buffer as it is, its send watched here. Such a
 * buffer given up (rp_pool_free_buffer, rp_pool_free) while a send from it is
 * pending is held here and freed once no send from it is (checked with the
 * completions), or kept for the life of the process when one still was as the
 * pool ended. Under plock, but rp__mpi_buf_release (any thread:
 * it only trylocks plock, and hands the buffer over under mp->lock when busy). */
#include "backend_mpi.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The buffers of sends still pending when their pool ended, for the life of the
 * process (reachable, so no leak checker counts them). */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static void **kept;
static size_t nkept, capkept;

/* What the sends let go of at the end of a pool read in buffers of rp_pool_alloc
 * (under kept_lock): a buffer given up later is kept when it holds one of them. */
static struct mout *gone;
static size_t ngone, capgone;
static bool gone_unknown; /* one could not be remembered: every such buffer is kept */

/* Reallocates the array whose pointer is at pv to cap elements of `size` bytes.
 * \return false, the array as it was, when there is no memory. */
static bool resize(void *pv, size_t cap, size_t size)
{
    void *a;
    memcpy(&a, pv, sizeof a);
    if (!(a = realloc(a, cap * size)))
        return false;
    memcpy(pv, &a, sizeof a);
    return true;
}

/* Room for one more element in the array whose pointer is at pv (n elements of
 * `size` bytes, *cap allocated, at most `most`): doubled when full.
 * \return false when there is none (no memory, or `most` reached). */
static bool room(void *pv, size_t n, size_t *cap, size_t size, size_t most)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? 2 * *cap : 16;
    if (c > most)
        c = most;
    if (c <= n || !resize(pv, c, size))
        return false;
    *cap = c;
    return true;
}

static bool overlaps(const struct mout *o, const char *p, size_t size)
{
    uintptr_t a = (uintptr_t)o->from, b = (uintptr_t)p;
    return !o->buf && o->len && a < b + size && b < a + o->len;
}

static void keep(void *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&kept_lock);
    if (room(&kept, nkept, &capkept, sizeof *kept, SIZE_MAX / sizeof *kept))
        kept[nkept++] = buf; /* (else: unreachable, but never freed either) */
    pthread_mutex_unlock(&kept_lock);
}

/* Remembers a range of a pool buffer read by a send let go at the end (its buffer
 * is then kept, never freed: a later allocation cannot take its addresses). */
static void remember_gone(const struct mout *o)
{
    pthread_mutex_lock(&kept_lock);
    if (room(&gone, ngone, &capgone, sizeof *gone, SIZE_MAX / sizeof *gone))
        gone[ngone++] = *o;
    else
        gone_unknown = true;
    pthread_mutex_unlock(&kept_lock);
}

static bool gone_reads(const char *p, size_t size)
{
    pthread_mutex_lock(&kept_lock);
    bool in = gone_unknown;
    for (size_t k = 0; k < ngone && !in; k++)
        in = overlaps(&gone[k], p, size);
    pthread_mutex_unlock(&kept_lock);
    return in;
}

static void add(struct mpi_pool *mp, MPI_Request *req, struct mout o)
{
    if (*req == MPI_REQUEST_NULL) {
        free(o.buf);
        return;
    }
    /* The three arrays share capout: grown together (one grown alone is grown
     * again, to the same size, next time). MPI_Testsome counts in int: past
     * INT_MAX sends pending (not to be met: each holds a batch's buffer), a
     * send goes on unwatched, as when memory runs out. */
    size_t cap = mp->capout;
    if (!room(&mp->out_req, mp->nout, &cap, sizeof *mp->out_req, INT_MAX) ||
        !resize(&mp->out, cap, sizeof *mp->out) ||
        !resize(&mp->out_idx, cap, sizeof *mp->out_idx)) {
        /* the send goes on unwatched; its buffer is never freed */
        MPI_Request_free(req);
        *req = MPI_REQUEST_NULL;
        if (o.buf)
            keep(o.buf);
        else
            remember_gone(&o);
        return;
    }
    mp->capout = cap;
    mp->out_req[mp->nout] = *req;
    mp->out[mp->nout] = o;
    mp->nout++;
    *req = MPI_REQUEST_NULL;
}

void rp__mpi_outbox_add(struct mpi_pool *mp, MPI_Request *req, void *buf)
{
    add(mp, req, (struct mout){ buf, NULL, 0 });
}

void rp__mpi_outbox_add_from(struct mpi_pool *mp, MPI_Request *req, const void *from,
                             size_t len)
{
    add(mp, req, (struct mout){ NULL, from, len });
}

/* Whether a send still pending reads [p, p + size). */
static bool pending_reads(const struct mpi_pool *mp, const char *p, size_t size)
{
    for (size_t k = 0; k < mp->nout; k++)
        if (overlaps(&mp->out[k], p, size))
            return true;
    return false;
}

/* Appends x to the list (v, n, cap). \return false when there is no room. */
static bool push(struct mheld **v, size_t *n, size_t *cap, struct mheld x)
{
    if (!room(v, *n, cap, sizeof **v, SIZE_MAX / sizeof **v))
        return false;
    (*v)[(*n)++] = x;
    return true;
}

/* A buffer given up, under plock: held while a pending send reads it, else freed
 * (or kept: read by a send let go as its pool ended). */
static void hold_or_free(struct mpi_pool *mp, struct mheld b)
{
    if (!pending_reads(mp, b.p, b.size)) {
        if (gone_reads(b.p, b.size))
            keep(b.p);
        else
            free(b.p);
    } else if (push(&mp->held, &mp->nheld, &mp->capheld, b)) {
        rp__trace("mpi: a buffer of rp_pool_alloc given up while sends read it: held");
    } else { /* no room to hold it: kept for good */
        keep(b.p);
    }
}

/* Under plock: the buffers handed over while plock was busy (rp__mpi_buf_release). */
static void take_given(struct mpi_pool *mp)
{
    if (!atomic_load_explicit(&mp->anygiven, memory_order_acquire))
        return;
    pthread_mutex_lock(&mp->lock);
    struct mheld *g = mp->given;
    size_t n = mp->ngiven;
    mp->given = NULL;
    mp->ngiven = mp->capgiven = 0;
    atomic_store(&mp->anygiven, false);
    pthread_mutex_unlock(&mp->lock);
    for (size_t k = 0; k < n; k++)
        hold_or_free(mp, g[k]);
    free(g);
}

/* Frees the held pool buffers no pending send reads any more. */
static void free_held(struct mpi_pool *mp)
{
    size_t kept = 0;
    for (size_t h = 0; h < mp->nheld; h++) {
        if (!pending_reads(mp, mp->held[h].p, mp->held[h].size)) {
            free(mp->held[h].p);
            continue;
        }
        mp->held[kept++] = mp->held[h];
    }
    mp->nheld = kept;
}

void rp__mpi_outbox_poll(struct mpi_pool *mp)
{
    take_given(mp);
    if (mp->nout == 0)
        return;
    int done = 0;
    if (MPI_Testsome((int)mp->nout, mp->out_req, &done, mp->out_idx, MPI_STATUSES_IGNORE) !=
            MPI_SUCCESS ||
        done <= 0) /* (MPI_UNDEFINED: none active) */
        return;
    size_t kept = 0;
    for (size_t k = 0; k < mp->nout; k++) {
        if (mp->out_req[k] == MPI_REQUEST_NULL) { /* completed: set so by MPI_Testsome */
            free(mp->out[k].buf);
            continue;
        }
        mp->out_req[kept] = mp->out_req[k];
        mp->out[kept] = mp->out[k];
        kept++;
    }
    mp->nout = kept;
    if (mp->nheld > 0)
        free_held(mp);
}

void rp__mpi_buf_release(rp_pool_t *pool, void *p, size_t bytes)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    struct mheld b = { p, bytes };
    if (!mp || mp->sv) {
        free(p);
        return;
    }
    /* (a user thread only ever trylocks plock: its holder may be this thread, in a
     * callback, or be waiting for locks of the core) */
    if (!mp->hand_over && pthread_mutex_trylock(&mp->plock) == 0) {
        rp__mpi_outbox_poll(mp); /* (the sends done by now need not hold it) */
        hold_or_free(mp, b);
        pthread_mutex_unlock(&mp->plock);
        return;
    }
    /* plock busy: the pool thread takes it on its next pass, or the pool's end */
    pthread_mutex_lock(&mp->lock);
    bool handed = !mp->out_closed && push(&mp->given, &mp->ngiven, &mp->capgiven, b);
    if (handed)
        atomic_store_explicit(&mp->anygiven, true, memory_order_release);
    bool closed = mp->out_closed;
    pthread_mutex_unlock(&mp->lock);
    if (handed)
        return;
    if (closed && !gone_reads(p, bytes)) /* (every send let go is in `gone`) */
        free(p);
    else
        keep(p);
}

void rp__mpi_outbox_close(struct mpi_pool *mp)
{
    rp__mpi_outbox_poll(mp);
    pthread_mutex_lock(&mp->lock); /* (no more hand-overs: rp__mpi_buf_release) */
    mp->out_closed = true;
    pthread_mutex_unlock(&mp->lock);
    take_given(mp);
    if (mp->nout > 0)
        rp__trace("mpi: %zu sends never taken: let go, their buffers kept", mp->nout);
    for (size_t k = 0; k < mp->nout; k++) {
        MPI_Request_free(&mp->out_req[k]);
        if (mp->out[k].buf)
            keep(mp->out[k].buf);
        else
            remember_gone(&mp->out[k]);
    }
    for (size_t h = 0; h < mp->nheld; h++) /* (each read by a send let go just now) */
        keep(mp->held[h].p);
    free(mp->out_req);
    free(mp->out);
    free(mp->out_idx);
    free(mp->held);
    mp->out_req = NULL;
    mp->out = NULL;
    mp->out_idx = NULL;
    mp->held = NULL;
    mp->nout = mp->capout = mp->nheld = mp->capheld = 0;
}
