/* The master's monitor thread: one per pool, started by the first result that has
 * a progress bar or a journal, stopped by rp_pool_free. Every MONITOR_TICK_S it
 * appends what arrived to each journal (journal.c) and redraws the bars that are
 * due (bar.c); the workers never wait for it. It holds a reference to each
 * result it watches and lets go once the result is ready (finalization wrote the
 * last records and the last line itself: rp__monitor_final). With nothing to
 * watch it sleeps until a result comes (no periodic wake-up).
 *
 * Locks: w->lock guards the list and `stop`; it is taken with no other lock held
 * and the thread holds it while it pumps and draws, which take a result's lock
 * and the backend's (through the ops gate), never the other way round. */
#include "monitor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char **environ; /* POSIX: declared by whoever uses it */

struct rp__monitor {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    pthread_t       thread;
    bool            stop;
    rp_result_t    *head;        /* watched results, each held (a reference) */
};

/* $RP_PROGRESS is looked at for every submit, but searching the environment
 * each time costs more than the rest of a one-item submit. Each thread remembers
 * where it found the variable last (the array, the place in it, the entry) or,
 * when it was not there, the array, its length and its first and last entries;
 * that is trusted only while the array still shows exactly that. setenv,
 * unsetenv, putenv and clearenv each change one of these (setenv adds at the
 * end, unsetenv moves the later entries down, and glibc never frees a string
 * setenv made, so a new entry cannot take an old one's address), and then the
 * environment is searched again. The value is read through the entry each time:
 * a putenv string edited in place is seen too. (Not seen: an environ array
 * rebuilt by hand in place, or a string edited in place into another name.) */
#define PROGRESS_VAR "RP_PROGRESS="
#define PROGRESS_LEN (sizeof PROGRESS_VAR - 1)

struct env_memo {
    char      **env;   /* the environ array looked at; NULL: nothing remembered */
    size_t      i;     /* the entry's place, or the array's length */
    const char *entry; /* the entry found, or NULL */
    const char *first, *last; /* not found: env[0] and env[i - 1] (NULL when empty) */
};

static _Thread_local struct env_memo progress_memo;

static bool progress_on(const char *entry)
{
    const char *v = entry + PROGRESS_LEN;
    return *v && strcmp(v, "0") != 0;
}

bool rp__progress_env(void)
{
    struct env_memo *m = &progress_memo;
    char **env = environ;
    if (!env)
        return false;
    if (m->env == env) {
        if (m->entry) {
            const char *e = env[m->i];
            if (e == m->entry && strncmp(e, PROGRESS_VAR, PROGRESS_LEN) == 0)
                return progress_on(e);
        } else if (env[m->i] == NULL && (m->i == 0 || (env[0] == m->first
                                                        && env[m->i - 1] == m->last))) {
            return false;
        }
    }
    size_t i = 0;
    while (env[i] && strncmp(env[i], PROGRESS_VAR, PROGRESS_LEN) != 0)
        i++;
    m->env = env;
    m->i = i;
    m->entry = env[i];
    m->first = i ? env[0] : NULL;
    m->last = i ? env[i - 1] : NULL;
    return m->entry ? progress_on(m->entry) : false;
}

int rp__monitor_attach(rp_result_t *r, const rp_map_opts_t *opts)
{
    /* no bar for an imap stream's segments: a stream is not one job */
    bool segment = (r->job.flags & RP__JOB_TRACK) && !r->monitor;
    bool bar = !segment && ((opts && opts->progress) || rp__progress_env());
    if (!bar && !r->monitor)
        return RP_OK;
    if (!r->monitor) {
        r->monitor = calloc(1, sizeof *r->monitor);
        if (!r->monitor)
            return RP_ENOMEM;
        r->monitor->total = r->job.n;
    }
    r->monitor->bar = bar;
    r->monitor->asked = opts && opts->progress;
    r->monitor->t0 = rp__now();
    return RP_OK;
}

void rp__monitor_free(struct rp__monitorres *w)
{
    if (!w)
        return;
    rp__journal_free(w->journal);
    free(w);
}

static void tick(struct rp__monitor *w)
{
    rp_result_t **link = &w->head;
    while (*link) {
        rp_result_t *r = *link;
        if (atomic_load(&r->state) == RP__RES_READY) {
            *link = r->monitor->wnext;
            rp__result_release(r);
            continue;
        }
        if (r->monitor->journal)
            rp__journal_pump(r);
        if (r->monitor->bar)
            rp__bar_draw(r, false);
        link = &r->monitor->wnext;
    }
}

static void *watch_main(void *arg)
{
    struct rp__monitor *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        tick(w);
        if (!w->head) { /* nothing to watch: sleep until a result comes */
            pthread_cond_wait(&w->cond, &w->lock);
            continue;
        }
        struct timespec ts;
        rp__abstime(&ts, MONITOR_TICK_S);
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* The pool's monitor thread, started on first use (under pool->lock). */
static struct rp__monitor *watch_of(rp_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    struct rp__monitor *w = pool->monitor;
    if (!w && (w = calloc(1, sizeof *w)) != NULL) {
        rp__cond_init_monotonic(&w->cond);
        pthread_mutex_init(&w->lock, NULL);
        if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
            pthread_mutex_destroy(&w->lock);
            pthread_cond_destroy(&w->cond);
            free(w);
            w = NULL;
        } else {
            pool->monitor = w;
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return w;
}

int rp__monitor_add(rp_pool_t *pool, rp_result_t *r)
{
    struct rp__monitor *w = watch_of(pool);
    if (!w)
        return RP_ESYS;
    rp__result_hold(r);
    pthread_mutex_lock(&w->lock);
    r->monitor->wnext = w->head;
    w->head = r;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return RP_OK;
}

void rp__monitor_final(rp_result_t *r)
{
    if (r->monitor->journal)
        rp__journal_final(r);
    if (r->monitor->bar)
        rp__bar_draw(r, true);
}

void rp__monitor_stop(rp_pool_t *pool)
{
    struct rp__monitor *w = pool->monitor;
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    /* every result is ready by now (the pool was joined) */
    while (w->head) {
        rp_result_t *r = w->head;
        w->head = r->monitor->wnext;
        rp__result_release(r);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
    pool->monitor = NULL;
}
