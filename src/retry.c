/* Control of running work in the core: a map's time limit and retries.
 *
 * A job's limit (task_timeout: the map's, else the pool's) and its retry count
 * are set at submit and read by the backends: a worker publishes when its item
 * becomes late (rp__runctl), the backend's watcher kills a worker past that
 * moment and reports the death with rp__death.timeout (ledger.c turns it into
 * RP_ETASKTIMEOUT). An item that failed by a death or a timeout runs again while
 * it has attempts left: the dead-worker policy (rp__job_worker_died) asks
 * rp__job_retry and hands it back with the unstarted rest, to run on whichever
 * worker claims it next. The attempts are counted here, per item, only for
 * items that failed at least once (a small hash table under the result's lock),
 * so a job whose items never fail costs nothing. */
#include "result.h"

#include <math.h>
#include <stdlib.h>

struct rp__attempts {
    size_t   *key;    /* item + 1; 0: empty */
    unsigned *val;    /* failed attempts */
    size_t    cap, n;
};

int rp__job_control(rp_result_t *r, const rp_map_opts_t *opts)
{
    rp_map_opts_t none = { 0 };
    if (!opts)
        opts = &none;
    if (!(opts->task_timeout >= 0) || opts->task_timeout > RP__TIMEOUT_MAX ||
        opts->retries < 0)
        return RP_EINVAL;
    double t = opts->task_timeout;
    if (t == 0 && r->pool)
        t = r->pool->opts.task_timeout;
    r->job.timeout = t;
    r->job.retries = opts->retries;
    r->job.retry_raised = opts->retry_raised && opts->retries > 0;
    return RP_OK;
}

static size_t slot_of(const struct rp__attempts *a, size_t key)
{
    size_t h = (key * 0x9E3779B97F4A7C15u) & (a->cap - 1);
    while (a->key[h] && a->key[h] != key)
        h = (h + 1) & (a->cap - 1);
    return h;
}

/* Room for one more key (under the result's lock). \return false: no memory. */
static bool grow(struct rp__attempts *a)
{
    if (2 * (a->n + 1) <= a->cap)
        return true;
    struct rp__attempts b = { 0 };
    b.cap = a->cap ? 2 * a->cap : 16;
    b.key = calloc(b.cap, sizeof *b.key);
    b.val = calloc(b.cap, sizeof *b.val);
    if (!b.key || !b.val) {
        free(b.key);
        free(b.val);
        return false;
    }
    for (size_t k = 0; k < a->cap; k++)
        if (a->key[k]) {
            size_t h = slot_of(&b, a->key[k]);
            b.key[h] = a->key[k];
            b.val[h] = a->val[k];
        }
    b.n = a->n;
    free(a->key);
    free(a->val);
    *a = b;
    return true;
}

bool rp__job_retry(rp_result_t *r, size_t i, unsigned *attempts)
{
    *attempts = 1;
    if (r->job.retries <= 0)
        return false;
    bool again = false;
    pthread_mutex_lock(&r->lock);
    struct rp__attempts *a = r->attempts;
    if (!a)
        a = r->attempts = calloc(1, sizeof *a);
    if (a && grow(a)) {
        size_t h = slot_of(a, i + 1);
        if (!a->key[h]) {
            a->key[h] = i + 1;
            a->n++;
        }
        *attempts = ++a->val[h];
        again = *attempts <= (unsigned)r->job.retries;
    }
    pthread_mutex_unlock(&r->lock);
    return again;
}

void rp__attempts_free(rp_result_t *r)
{
    if (!r->attempts)
        return;
    free(r->attempts->key);
    free(r->attempts->val);
    free(r->attempts);
    r->attempts = NULL;
}
