/* Shared buffers (rp_pool_alloc, rp_pool_free_buffer): memory the backend shares
 * with its workers at the same address (ops->buf_alloc: the local backend carves
 * it from its shared region), so that a map whose input or output lies in one
 * moves no bytes; on a backend that shares nothing (mpi) ordinary malloc'd memory,
 * so one program runs on both. The pool keeps the list of its buffers (under
 * pool->lock): a pointer that is not one is refused, and rp_pool_free forgets
 * them all (the local region is unmapped with the pool; malloc'd ones are freed,
 * by the backend when it has ops->buf_release: mpi keeps one until the sends from
 * it completed). */
#include "backend.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

struct rp__buf {
    char  *p;
    size_t size;
};

struct rp__buffers {
    struct rp__buf *v;
    size_t          n, cap;
};

/* Frees a malloc'd buffer the pool gave up, or hands it to the backend, which
 * frees it once nothing it started still reads it (mpi: a send from it pending to
 * a rank the master stopped waiting for). Not under pool->lock. */
static void release(rp_pool_t *pool, void *p, size_t size)
{
    if (pool->ops->buf_release)
        pool->ops->buf_release(pool, p, size);
    else
        free(p);
}

void *rp_pool_alloc(rp_pool_t *pool, size_t bytes)
{
    if (rp__pool_check(pool) != RP_OK || bytes == 0) {
        errno = EINVAL;
        return NULL;
    }
    /* (without a backend's own memory: no more than the machine has, asked of
     * malloc, which some allocators would not answer with NULL) */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (bytes > PTRDIFF_MAX || (!pool->ops->buf_alloc && pages > 0 && page > 0
                                && bytes / (size_t)page > (size_t)pages)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = NULL;
    pthread_mutex_lock(&pool->lock);
    struct rp__buffers *b = atomic_load(&pool->buffers);
    if (!b) {
        b = calloc(1, sizeof *b);
        atomic_store(&pool->buffers, b);
    }
    if (b && b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        struct rp__buf *v = realloc(b->v, cap * sizeof *v);
        if (v) {
            b->v = v;
            b->cap = cap;
        }
    }
    if (b && b->n < b->cap) {
        if (pool->ops->buf_alloc)
            p = pool->ops->buf_alloc(pool, bytes);
        else if (posix_memalign(&p, 64, bytes) != 0)
            p = NULL;
        if (p)
            b->v[b->n++] = (struct rp__buf){ p, bytes };
    }
    pthread_mutex_unlock(&pool->lock);
    if (!p)
        errno = ENOMEM;
    return p;
}

int rp_pool_free_buffer(rp_pool_t *pool, void *ptr)
{
    if (!ptr)
        return RP_OK;
    int rc = rp__pool_check(pool);
    if (rc != RP_OK)
        return RP_EINVAL;
    rc = RP_EINVAL;
    size_t size = 0;
    pthread_mutex_lock(&pool->lock);
    struct rp__buffers *b = atomic_load(&pool->buffers);
    for (size_t i = 0; b && i < b->n; i++) {
        if (b->v[i].p != ptr)
            continue;
        size = b->v[i].size;
        if (pool->ops->buf_free)
            pool->ops->buf_free(pool, ptr, size);
        b->v[i] = b->v[--b->n];
        rc = RP_OK;
        break;
    }
    pthread_mutex_unlock(&pool->lock);
    if (rc == RP_OK && !pool->ops->buf_alloc) /* malloc'd: out of the list, ours to free */
        release(pool, ptr, size);
    return rc;
}

bool rp__pool_shares(rp_pool_t *pool, const void *p, size_t bytes)
{
    return pool->ops->buf_alloc && rp__pool_owns(pool, p, bytes);
}

bool rp__pool_owns(rp_pool_t *pool, const void *p, size_t bytes)
{
    if (!p || !atomic_load_explicit(&pool->buffers, memory_order_relaxed))
        return false;
    bool in = false;
    uintptr_t a = (uintptr_t)p;
    pthread_mutex_lock(&pool->lock);
    struct rp__buffers *b = atomic_load(&pool->buffers);
    for (size_t i = 0; b && i < b->n && !in; i++) {
        uintptr_t s = (uintptr_t)b->v[i].p;
        in = a >= s && a - s <= b->v[i].size && bytes <= b->v[i].size - (a - s);
    }
    pthread_mutex_unlock(&pool->lock);
    return in;
}

void rp__pool_drop_buffers(rp_pool_t *pool)
{
    struct rp__buffers *b = atomic_load(&pool->buffers);
    if (!b)
        return;
    if (!pool->ops->buf_alloc)
        for (size_t i = 0; i < b->n; i++)
            release(pool, b->v[i].p, b->v[i].size);
    free(b->v);
    free(b);
    atomic_store(&pool->buffers, NULL);
}
