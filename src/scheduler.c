/* The scheduler's dispatcher: the jobs with unclaimed items in a min-heap by id
 * (oldest first), the live workers in buckets by how many batches they hold
 * (the idle first). Policy and invariants are in sched.h. */
#include "scheduler.h"

#include <stdlib.h>
#include <string.h>

/* ---- the job heap ------------------------------------------------------------------- */

static void heap_set(rp__sched *s, uint32_t i, rp__sjob *j)
{
    s->heap[i] = j;
    j->heap = i + 1;
}

static void heap_up(rp__sched *s, uint32_t i)
{
    rp__sjob *j = s->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->heap[p]->id <= j->id)
            break;
        heap_set(s, i, s->heap[p]);
        i = p;
    }
    heap_set(s, i, j);
}

static void heap_down(rp__sched *s, uint32_t i)
{
    rp__sjob *j = s->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && s->heap[c + 1]->id < s->heap[c]->id)
            c++;
        if (j->id <= s->heap[c]->id)
            break;
        heap_set(s, i, s->heap[c]);
        i = c;
    }
    heap_set(s, i, j);
}

static int heap_push(rp__sched *s, rp__sjob *j)
{
    if (j->heap)
        return 0;
    if (s->nheap == s->capheap) {
        uint32_t cap = s->capheap ? 2 * s->capheap : 16;
        rp__sjob **h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return -1;
        s->heap = h;
        s->capheap = cap;
    }
    s->heap[s->nheap++] = j;
    heap_up(s, s->nheap - 1);
    return 0;
}

static void heap_remove(rp__sched *s, rp__sjob *j)
{
    if (!j->heap)
        return;
    uint32_t i = j->heap - 1;
    j->heap = 0;
    rp__sjob *last = s->heap[--s->nheap];
    if (i == s->nheap)
        return;
    heap_set(s, i, last);
    if (i > 0 && s->heap[(i - 1) / 2]->id > last->id)
        heap_up(s, i);
    else
        heap_down(s, i);
}

/* ---- worker buckets ------------------------------------------------------------------ */

/* Bucket k lists the live workers holding k batches, for k < conf.depth; a worker
 * holding conf.depth batches is in none. */
static void unlist(rp__sched *s, uint32_t w)
{
    rp__sworker *x = &s->w[w];
    if (!x->listed)
        return;
    if (x->prev >= 0)
        s->w[x->prev].next = x->next;
    else
        s->bucket[x->held] = x->next;
    if (x->next >= 0)
        s->w[x->next].prev = x->prev;
    s->count[x->held]--;
    x->listed = false;
}

/* Appends at the tail would keep FIFO fairness, but the head is as good and O(1)
 * without a tail pointer: a worker that just finished is the likeliest to be
 * waiting, and the oldest job goes to it. */
static void list(rp__sched *s, uint32_t w)
{
    rp__sworker *x = &s->w[w];
    if (x->listed || !x->alive || x->held >= s->conf.depth)
        return;
    x->prev = -1;
    x->next = s->bucket[x->held];
    if (x->next >= 0)
        s->w[x->next].prev = (int32_t)w;
    s->bucket[x->held] = (int32_t)w;
    s->count[x->held]++;
    x->listed = true;
}

/* ---- set-up ---------------------------------------------------------------------------- */

int rp__sched_open(rp__sched *s, const rp__sched_conf *conf, uint32_t nworkers)
{
    memset(s, 0, sizeof *s);
    s->conf = *conf;
    if (s->conf.depth == 0)
        s->conf.depth = 1;
    if (s->conf.depth_long == 0 || s->conf.depth_long > s->conf.depth)
        s->conf.depth_long = s->conf.depth;
    s->nworkers = nworkers;
    s->w = calloc(nworkers ? nworkers : 1, sizeof *s->w);
    s->bucket = malloc(s->conf.depth * sizeof *s->bucket);
    s->count = calloc(s->conf.depth, sizeof *s->count);
    if (!s->w || !s->bucket || !s->count) {
        rp__sched_close(s);
        return -1;
    }
    for (uint32_t k = 0; k < s->conf.depth; k++)
        s->bucket[k] = -1;
    /* listed in reverse, so that worker 0 is at the head: the first job goes to it */
    for (uint32_t w = nworkers; w-- > 0;) {
        s->w[w].alive = true;
        list(s, w);
    }
    s->alive = nworkers;
    return 0;
}

void rp__sched_close(rp__sched *s)
{
    free(s->w);
    free(s->bucket);
    free(s->count);
    free(s->heap);
    memset(s, 0, sizeof *s);
}

/* ---- jobs -------------------------------------------------------------------------------- */

int rp__sched_add(rp__sched *s, rp__sjob *j, uint64_t id, uint64_t n, uint64_t chunksize,
                  uint64_t item_bytes)
{
    memset(j, 0, sizeof *j);
    j->id = id;
    j->n = n;
    j->remaining = n;
    j->chunksize = chunksize;
    j->item_bytes = item_bytes;
    j->added = true;
    return n > 0 ? heap_push(s, j) : 0;
}

void rp__sched_remove(rp__sched *s, rp__sjob *j)
{
    if (!j->added)
        return;
    heap_remove(s, j);
    free(j->back);
    j->back = NULL;
    j->nback = j->capback = 0;
    j->remaining = 0;
    j->added = false;
}

double rp__sched_batch_seconds(const rp__sched *s, const rp__sjob *j)
{
    if (j->item_s <= 0)
        return 0;
    uint64_t len = rp__sched_len(&s->conf, j->remaining, j->chunksize, s->alive,
                                 s->conf.depth, j->item_s, j->item_bytes, true, 0);
    return j->item_s * (double)len;
}

/* Takes up to len items of j: the oldest put-back range first, else [next, n). */
static uint64_t take(rp__sjob *j, uint64_t len, uint64_t *start)
{
    if (j->nback > 0) {
        rp__span *sp = &j->back[0];
        uint64_t k = sp->b - sp->a < len ? sp->b - sp->a : len;
        *start = sp->a;
        sp->a += k;
        if (sp->a == sp->b) {
            memmove(&j->back[0], &j->back[1], (j->nback - 1) * sizeof *j->back);
            j->nback--;
        }
        j->remaining -= k;
        return k;
    }
    uint64_t k = j->n - j->next < len ? j->n - j->next : len;
    *start = j->next;
    j->next += k;
    j->remaining -= k;
    return k;
}

bool rp__sched_next(rp__sched *s, rp__pick *p)
{
    if (s->nheap == 0 || s->alive == 0)
        return false;
    rp__sjob *j = s->heap[0];
    uint32_t depth = rp__sched_depth(&s->conf, rp__sched_batch_seconds(s, j));
    int32_t w = -1;
    for (uint32_t k = 0; k < depth && k < s->conf.depth; k++)
        if (s->bucket[k] >= 0) {
            w = s->bucket[k];
            break;
        }
    if (w < 0)
        return false;
    /* A retried range is claimed as it is, whatever its length: splitting it
     * only adds batches; the guided length applies to fresh items. */
    uint64_t len;
    if (j->nback > 0)
        len = rp__sched_len(&s->conf, j->back[0].b - j->back[0].a, j->chunksize, 1, 1,
                            j->item_s, j->item_bytes, true, 0);
    else
        len = rp__sched_len(&s->conf, j->remaining, j->chunksize, s->alive, s->conf.depth,
                            j->item_s, j->item_bytes, true, 0);
    uint64_t start;
    len = take(j, len, &start);
    if (j->remaining == 0)
        heap_remove(s, j);
    unlist(s, (uint32_t)w);
    s->w[w].held++;
    list(s, (uint32_t)w);
    p->worker = (uint32_t)w;
    p->job = j;
    p->start = start;
    p->len = len;
    return true;
}

void rp__sched_finished(rp__sched *s, uint32_t w, rp__sjob *j, uint64_t items, double seconds)
{
    if (w < s->nworkers) {
        rp__sworker *x = &s->w[w];
        unlist(s, w);
        if (x->held > 0)
            x->held--;
        list(s, w);
    }
    if (j && items > 0 && seconds > 0) {
        double t = seconds / (double)items;
        j->item_s = j->item_s > 0 ? 0.5 * j->item_s + 0.5 * t : t;
    }
}

int rp__sched_putback(rp__sched *s, rp__sjob *j, uint64_t a, uint64_t b)
{
    if (b <= a || !j->added)
        return 0;
    if (j->nback == j->capback) {
        uint32_t cap = j->capback ? 2 * j->capback : 4;
        rp__span *v = realloc(j->back, cap * sizeof *v);
        if (!v)
            return -1;
        j->back = v;
        j->capback = cap;
    }
    j->back[j->nback++] = (rp__span){ a, b };
    j->remaining += b - a;
    return heap_push(s, j);
}

void rp__sched_withdraw(rp__sched *s, rp__sjob *j,
                        void (*fn)(void *arg, uint64_t a, uint64_t b), void *arg)
{
    if (!j->added)
        return;
    for (uint32_t k = 0; k < j->nback; k++)
        if (fn && j->back[k].b > j->back[k].a)
            fn(arg, j->back[k].a, j->back[k].b);
    j->nback = 0;
    if (j->next < j->n && fn)
        fn(arg, j->next, j->n);
    j->next = j->n;
    j->remaining = 0;
    heap_remove(s, j);
}

void rp__sched_worker_lost(rp__sched *s, uint32_t w)
{
    if (w >= s->nworkers || !s->w[w].alive)
        return;
    unlist(s, w);
    s->w[w].alive = false;
    s->w[w].held = 0;
    s->alive--;
}

void rp__sched_worker_back(rp__sched *s, uint32_t w)
{
    if (w >= s->nworkers || s->w[w].alive)
        return;
    s->w[w].alive = true;
    s->w[w].held = 0;
    s->alive++;
    list(s, w);
}
