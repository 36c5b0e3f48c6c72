/* The soak program's operations (see soak.h): random jobs for every kind of
 * call, and the check of every item's outcome against what its input says
 * (soak_task.h): the master knows, for every item, whether it must succeed and
 * with which bytes, or fail with which code and message.
 *
 * What the checks accept:
 *  - success: only for an item that does not raise, with exactly its bytes;
 *  - RP_ETASK: only for an item that raises, with its code, message and index;
 *  - RP_EWORKER (signal SIGKILL): only if a worker was killed after the last kill
 *    confirmed before the job was submitted (soak_kills_*);
 *  - RP_ECANCELED: only once terminate was called;
 *  - RP_EBROKEN: never (see broken_ok);
 *  - anything else is a defect, and so is a call returning a code it must not,
 *    a callback called other than exactly once, imap yielding an item twice or
 *    out of order.
 * rp_map and rp_map_var report only the lowest failing item's code; for the other
 * failed items of those calls the code is unknown (counted as such), but every
 * item below the lowest failure must have succeeded, and without kills or
 * terminate every item that does not raise must have succeeded. */
#define _GNU_SOURCE 1
#include "soak.h"
#include "soak_task.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

unsigned soak_kinds_mask = (1u << SK_NKINDS) - 1;
long     soak_fail_mod = -1;
size_t   soak_min_items = 0;

const char *const soak_kind_name[SK_NKINDS] = {
    "map", "map_async", "imap", "imap_unordered", "apply", "apply_async", "map_var",
    "map_var_async",
};

/* ---- jobs -------------------------------------------------------------------------- */

typedef struct job {
    int        kind;
    size_t     n, in_size, out_size, chunksize;
    uint32_t   fail_mod, sleep_us;
    uint64_t   tag, salt;
    char      *in, *out;
    bool       var;
    uint64_t   kc0;      /* soak_kills_confirmed when submitted */
    soak_epoch *ep;
} job;

static uint64_t item_x(const job *j, size_t i) { return j->tag << 32 | (uint64_t)i; }

static const size_t in_sizes[] = { 24, 24, 24, 32, 40, 64, 256, 1000, 4096 };
static const size_t out_sizes[] = { 0, 8, 8, 8, 16, 24, 100, 512, 4096 };
#define COUNT(a) (sizeof(a) / sizeof *(a))
#define MAX_JOB_BYTES ((size_t)48 << 20)

/* A random job of the given kind; inputs filled; out allocated (fixed sizes). */
static bool job_make(soak_thread *t, job *j, int kind)
{
    uint64_t *s = &t->rng;
    memset(j, 0, sizeof *j);
    j->kind = kind;
    j->ep = t->ep;
    j->salt = t->ep->salt;
    j->var = kind == SK_MAP_VAR || kind == SK_MAP_VAR_ASYNC;
    int shape = (int)soak_range(s, 0, 9);
    if (kind == SK_APPLY || kind == SK_APPLY_ASYNC) {
        j->n = 1;
        if (shape == 9)
            j->sleep_us = (uint32_t)soak_logrange(s, 20, 3000);
    } else if (shape < 3) {
        j->n = soak_range(s, 0, 12);
    } else if (shape < 6) {
        j->n = soak_logrange(s, 10, 3000);
    } else if (shape < 9) {
        j->n = soak_logrange(s, 3000, j->var ? 200000 : 1000000);
    } else {
        j->n = soak_logrange(s, 2, 400);
        j->sleep_us = (uint32_t)soak_logrange(s, 20, 3000);
    }
    j->in_size = in_sizes[soak_range(s, 0, COUNT(in_sizes) - 1)];
    j->out_size = j->var ? 0 : out_sizes[soak_range(s, 0, COUNT(out_sizes) - 1)];
    while (j->n > 1 && j->n * (j->in_size + j->out_size) > MAX_JOB_BYTES)
        j->n /= 2;
    if (j->n < soak_min_items && kind != SK_APPLY && kind != SK_APPLY_ASYNC)
        j->n = soak_min_items;
    /* with max_tasks_per_worker every worker is replaced (a fork) after that many
     * items: a few generations per job, not thousands */
    size_t cap = (size_t)t->ep->max_tasks * 8 * (size_t)(t->ep->nworkers > 0 ? t->ep->nworkers : 1);
    if (t->ep->max_tasks > 0 && j->n > cap)
        j->n = cap;
    uint64_t c = soak_range(s, 0, 19);
    j->chunksize = c < 10 ? 0 : c == 19 ? j->n : soak_logrange(s, 1, j->n ? j->n : 1);
    uint64_t f = soak_range(s, 0, 19);
    j->fail_mod = f < 10 ? 0 : f < 14 ? (uint32_t)soak_logrange(s, 100, 100000)
                                       : f < 18 ? (uint32_t)soak_range(s, 2, 20) : 1;
    if (soak_fail_mod >= 0)
        j->fail_mod = (uint32_t)soak_fail_mod;
    j->tag = (soak_rand(s) & 0x7fffffffu) | 1;
    j->in = malloc(j->n * j->in_size + 1);
    j->out = malloc(j->n * (j->out_size ? j->out_size : 1) + 1);
    if (!j->in || !j->out) {
        free(j->in);
        free(j->out);
        return false;
    }
    for (size_t i = 0; i < j->n; i++) {
        char *p = j->in + i * j->in_size;
        soak_item h = { item_x(j, i), j->fail_mod, j->sleep_us, (uint32_t)j->in_size,
                   (uint32_t)j->out_size };
        memcpy(p, &h, sizeof h);
        soak_pattern(p + SOAK_HDR, j->in_size - SOAK_HDR, soak_in_seed(h.x));
    }
    /* what a failed item's output holds is unspecified: make it look wrong */
    memset(j->out, 0xa5, j->n * j->out_size + 1);
    j->kc0 = atomic_load(&soak_kills_confirmed);
    atomic_fetch_add(&soak_st.jobs[kind], 1);
    return true;
}

static void job_free(job *j)
{
    free(j->in);
    free(j->out);
    j->in = j->out = NULL;
}

static rp_map_opts_t job_opts(const job *j)
{
    rp_map_opts_t o = { .chunksize = j->chunksize };
    return o;
}

/* Could a kill or terminate explain a failure seen now? */
static bool kill_window(const job *j) { return atomic_load(&soak_kills_started) > j->kc0; }
static bool term_window(const job *j) { return atomic_load(&j->ep->terminated); }

/* RP_EBROKEN is never explained: the soak's initializer does not fail, and a
 * replacement killed by a signal inside its initializer is started again, on
 * both backends (locally up to 8 times in a row, far more than random kills
 * every half second make). */
static bool broken_ok(const job *j)
{
    (void)j;
    return false;
}

#define JOBFMT "%s n=%zu in=%zu out=%zu chunk=%zu fail_mod=%u sleep=%uus"
#define JOBARG(j) soak_kind_name[(j)->kind], (j)->n, (j)->in_size, (j)->out_size, \
                  (j)->chunksize, (j)->fail_mod, (j)->sleep_us

/* ---- judging one item ------------------------------------------------------------ */

/* Item i was reported a success, with `size` bytes at out. */
static void judge_ok(const job *j, size_t i, const void *out, size_t size)
{
    atomic_fetch_add(&soak_st.items, 1);
    uint64_t x = item_x(j, i);
    if (soak_raises(x, j->fail_mod)) {
        soak_defect(&soak_st.lost, "%s item %zu (x %llx) must fail (RP_ETASK, code %d) but "
                    "was reported a success [" JOBFMT "]", soak_kind_name[j->kind], i,
                    (unsigned long long)x, soak_raise_code(x), JOBARG(j));
        return;
    }
    size_t want = j->var ? soak_var_len(x) : j->out_size;
    if (size != want || !soak_pattern_ok(out, want, soak_out_seed(x, j->salt))) {
        soak_defect(&soak_st.wrong, "%s item %zu (x %llx): wrong output (%zu bytes, %zu "
                    "expected) reported as a success [" JOBFMT "]", soak_kind_name[j->kind],
                    i, (unsigned long long)x, size, want, JOBARG(j));
        return;
    }
    atomic_fetch_add(&soak_st.ok, 1);
}

/* Shows the first failure of each explained kind once: what the library says. */
static void note_first(const job *j, const rp_error_t *e)
{
    static _Atomic uint64_t seen;
    unsigned bit = (unsigned)(-e->code) & 63;
    if (!(atomic_fetch_or(&seen, UINT64_C(1) << bit) & UINT64_C(1) << bit))
        printf("soak: first %s of the run: item %zu, worker %d, signal %d: \"%s\" [" JOBFMT
               "]\n", rp_err_name(e->code), e->index, e->worker, e->signal, e->message,
               JOBARG(j));
}

/* Item i was reported failed with e. */
static void judge_fail(const job *j, size_t i, const rp_error_t *e)
{
    atomic_fetch_add(&soak_st.items, 1);
    uint64_t x = item_x(j, i);
    const char *name = soak_kind_name[j->kind];
    if (e->index != i) {
        soak_defect(&soak_st.badfail, "%s item %zu: its error says index %zu [" JOBFMT "]",
                    name, i, e->index, JOBARG(j));
        return;
    }
    switch (e->code) {
    case RP_ETASK: {
        char msg[64];
        snprintf(msg, sizeof msg, "raise %llx", (unsigned long long)x);
        if (e->task_code >= TC_INPUT && e->task_code <= TC_NOROOM)
            soak_defect(&soak_st.badfail, "%s item %zu: the task found: %s [" JOBFMT "]",
                        name, i, e->message, JOBARG(j));
        else if (!soak_raises(x, j->fail_mod))
            soak_defect(&soak_st.badfail, "%s item %zu (x %llx): RP_ETASK (%d, \"%s\") for "
                        "an item that does not raise [" JOBFMT "]", name, i,
                        (unsigned long long)x, e->task_code, e->message, JOBARG(j));
        else if (e->task_code != soak_raise_code(x) || strcmp(e->message, msg) != 0)
            soak_defect(&soak_st.badfail, "%s item %zu: RP_ETASK with task_code %d \"%s\", "
                        "expected %d \"%s\" [" JOBFMT "]", name, i, e->task_code,
                        e->message, soak_raise_code(x), msg, JOBARG(j));
        else
            atomic_fetch_add(&soak_st.raised, 1);
        return;
    }
    case RP_EWORKER:
        if (!kill_window(j))
            soak_defect(&soak_st.badfail, "%s item %zu: RP_EWORKER but no worker was "
                        "killed during the job (\"%s\") [" JOBFMT "]", name, i, e->message,
                        JOBARG(j));
        else if (e->signal != SIGKILL)
            soak_defect(&soak_st.badfail, "%s item %zu: RP_EWORKER with signal %d exit %d, "
                        "expected SIGKILL (\"%s\")", name, i, e->signal, e->exit_status,
                        e->message);
        else {
            atomic_fetch_add(&soak_st.eworker, 1);
            note_first(j, e);
        }
        return;
    case RP_ECANCELED:
        if (!term_window(j))
            soak_defect(&soak_st.badfail, "%s item %zu: RP_ECANCELED without terminate "
                        "(\"%s\") [" JOBFMT "]", name, i, e->message, JOBARG(j));
        else {
            atomic_fetch_add(&soak_st.canceled, 1);
            note_first(j, e);
        }
        return;
    case RP_EBROKEN:
        if (!broken_ok(j))
            soak_defect(&soak_st.badfail, "%s item %zu: RP_EBROKEN (\"%s\") %s [" JOBFMT "]",
                        name, i, e->message,
                        atomic_load(&j->ep->killed) ? "after kills of MPI worker processes"
                                                    : "in a pool whose workers were never killed",
                        JOBARG(j));
        else {
            atomic_fetch_add(&soak_st.broken, 1);
            note_first(j, e);
        }
        return;
    default: {
        /* the first failure of each unexpected code is shown even when many
         * others were */
        static _Atomic uint64_t seen;
        unsigned bit = (unsigned)(-e->code) & 63;
        if (!(atomic_fetch_or(&seen, UINT64_C(1) << bit) & UINT64_C(1) << bit))
            soak_defect(&soak_st.firsts, "%s item %zu: first failure with %s: \"%s\" "
                        "[" JOBFMT "]", name, i, rp_err_name(e->code), e->message, JOBARG(j));
        soak_defect(&soak_st.badfail, "%s item %zu: unexpected failure %s (\"%s\") "
                    "[" JOBFMT "]", name, i, rp_err_name(e->code), e->message, JOBARG(j));
    }
    }
}

/* Item i of an rp_map / rp_map_var whose failures are not listed: failed (or
 * unknown) but not the reported lowest failure. */
static void judge_unlisted_failure(const job *j, size_t i, size_t lowest, int lowest_code)
{
    uint64_t x = item_x(j, i);
    /* a failure of a whole range (terminate, a rank given up, no worker left)
     * covers the items after the lowest: that one was judged itself */
    bool shared = lowest_code != RP_OK && lowest_code != RP_ETASK && lowest_code != RP_EWORKER;
    if (i < lowest) {
        soak_defect(&soak_st.badfail, "%s item %zu failed (or has a wrong output) below the "
                    "reported lowest failure %zu [" JOBFMT "]", soak_kind_name[j->kind], i,
                    lowest, JOBARG(j));
    } else if (!soak_raises(x, j->fail_mod) && !kill_window(j) && !term_window(j) && !shared) {
        soak_defect(&soak_st.wrong, "%s item %zu (x %llx): no right output, and neither a "
                    "raise, a kill nor terminate explains it [" JOBFMT "]",
                    soak_kind_name[j->kind], i, (unsigned long long)x, JOBARG(j));
    } else {
        atomic_fetch_add(&soak_st.items, 1);
        atomic_fetch_add(&soak_st.unknown, 1);
    }
}

/* The lowest item that must fail with RP_ETASK, or n. */
static size_t lowest_raise(const job *j)
{
    for (size_t i = 0; i < j->n; i++)
        if (soak_raises(item_x(j, i), j->fail_mod))
            return i;
    return j->n;
}

/* ---- judging whole results ---------------------------------------------------------- */

typedef struct cbrec {
    _Atomic int ncb, nerr;
    size_t      index;
    int         code;
} cbrec;

static void on_done(rp_result_t *r, void *ud)
{
    (void)r;
    atomic_fetch_add(&((cbrec *)ud)->ncb, 1);
}

static void on_error(const rp_error_t *e, void *ud)
{
    cbrec *c = ud;
    c->index = e->index;
    c->code = e->code;
    atomic_fetch_add(&c->nerr, 1);
}

/* A ready result with its error list: every listed failure, every other item's
 * output, the value get returned, successful, progress, the callbacks. */
static void judge_result(const job *j, rp_result_t *r, int get_rc, const rp_error_t *get_err,
                         const rp_varout_t *vo, const cbrec *cb)
{
    const char *name = soak_kind_name[j->kind];
    size_t n = j->n, ne = rp_result_nerrors(r);
    unsigned char *failed = calloc(n + 1, 1);
    if (!failed)
        return;
    size_t first = SIZE_MAX, prev = 0;
    int first_code = RP_OK;
    rp_error_t preve;
    memset(&preve, 0, sizeof preve);
    for (size_t k = 0; k < ne; k++) {
        const rp_error_t *p = rp_result_error(r, k);
        if (!p) {
            soak_defect(&soak_st.callerr, "%s: rp_result_error(%zu) NULL with %zu errors",
                        name, k, ne);
            break;
        }
        rp_error_t e = *p;
        if (e.index >= n || (k > 0 && e.index <= prev)) {
            soak_defect(&soak_st.badfail, "%s: error %zu of %zu (n %zu) has index %zu, %s "
                        "\"%s\"; the one before index %zu, %s \"%s\": not in index order%s "
                        "[" JOBFMT "]", name, k, ne, n, e.index, rp_err_name(e.code),
                        e.message, prev, rp_err_name(preve.code), preve.message,
                        kill_window(j) ? " (workers were killed)" : "", JOBARG(j));
            continue;
        }
        preve = e;
        if (k == 0) {
            first = e.index;
            first_code = e.code;
        }
        prev = e.index;
        failed[e.index] = 1;
        judge_fail(j, e.index, &e);
    }
    if (ne == 0 ? get_rc != RP_OK
                : get_rc != first_code || !get_err || get_err->index != first)
        soak_defect(&soak_st.callerr, "%s: rp_result_get returned %s (index %zu) with %zu "
                    "errors, the first %s at %zu", name, rp_err_name(get_rc),
                    get_err ? get_err->index : 0, ne, rp_err_name(first_code), first);
    if (rp_result_successful(r) != (ne == 0))
        soak_defect(&soak_st.callerr, "%s: rp_result_successful %d with %zu errors", name,
                    rp_result_successful(r), ne);
    size_t done = 0, total = 0;
    rp_result_progress(r, &done, &total);
    if (done != n || total != n)
        soak_defect(&soak_st.callerr, "%s: progress %zu/%zu of a ready result of %zu items",
                    name, done, total, n);
    for (size_t i = 0; i < n; i++) {
        if (j->var) {
            size_t size = 0;
            const void *d = rp_varout_item(vo, i, &size);
            if (failed[i] && d)
                soak_defect(&soak_st.wrong, "%s item %zu failed but has an output of %zu "
                            "bytes", name, i, size);
            else if (!failed[i] && !d)
                soak_defect(&soak_st.wrong, "%s item %zu: no output and not listed as "
                            "failed [" JOBFMT "]", name, i, JOBARG(j));
            else if (!failed[i])
                judge_ok(j, i, d, size);
        } else if (!failed[i]) {
            judge_ok(j, i, j->out + i * j->out_size, j->out_size);
        }
    }
    if (cb) {
        int ncb = atomic_load(&cb->ncb), nerr = atomic_load(&cb->nerr);
        if (ne == 0 ? ncb != 1 || nerr != 0
                    : ncb != 0 || nerr != 1 || cb->index != first || cb->code != first_code)
            soak_defect(&soak_st.badcb, "%s: %d callbacks and %d error callbacks (index %zu "
                        "%s) for %zu errors, first %zu %s", name, ncb, nerr, cb->index,
                        rp_err_name(cb->code), ne, first, rp_err_name(first_code));
    }
    free(failed);
}

/* Waits for r in one of three ways, then gets it. */
/* What the thread's watchdog slot says about job j (shown if it hangs). */
static void describe(soak_thread *t, const job *j)
{
    snprintf(t->detail, sizeof t->detail, JOBFMT " tag %llx, pool of %d workers, "
             "max_tasks_per_worker %ld", JOBARG(j), (unsigned long long)j->tag,
             j->ep->nworkers, j->ep->max_tasks);
}

static int wait_and_get(soak_thread *t, const job *j, rp_result_t *r, rp_error_t *err)
{
    describe(t, j);
    atomic_store(&t->waiting, r);
    soak_watch(t, "waiting for a result");
    int rc;
    switch (soak_range(&t->rng, 0, 3)) {
    case 0:
        while (rp_result_wait(r, 0.05) == RP_ETIMEDOUT)
            ;
        rc = rp_result_get(r, 0, err);
        break;
    case 1:
        while (!rp_result_ready(r)) {
            struct timespec ts = { 0, 1000000 };
            nanosleep(&ts, NULL);
        }
        rc = rp_result_get(r, 0, err);
        break;
    case 2:
        while ((rc = rp_result_get(r, 0.2, err)) == RP_ETIMEDOUT)
            ;
        break;
    default:
        rc = rp_result_get(r, RP_FOREVER, err);
    }
    soak_unwatch(t);
    atomic_store(&t->waiting, NULL);
    return rc;
}

/* A submission failed with rc: RP_ECLOSED after terminate stops the thread;
 * anything else is a defect. \return false to stop. */
static bool refused(const job *j, int rc, const char *call)
{
    if (rc == RP_ECLOSED && term_window(j))
        return false;
    soak_defect(&soak_st.callerr, "%s returned %s [" JOBFMT "]", call, rp_err_name(rc),
                JOBARG(j));
    return true;
}

/* ---- the operations ------------------------------------------------------------------ */

static bool op_map(soak_thread *t)
{
    job j;
    if (!job_make(t, &j, SK_MAP))
        return true;
    rp_map_opts_t o = job_opts(&j);
    rp_error_t err;
    memset(&err, 0, sizeof err);
    describe(t, &j);
    soak_watch(t, "rp_map");
    int rc = rp_map(t->ep->pool, soak_task, j.in, j.n, j.in_size, j.out_size ? j.out : NULL,
                    j.out_size, &o, &err);
    soak_unwatch(t);
    bool go_on = true;
    if (rc == RP_ECLOSED || rc == RP_EINVAL || rc == RP_ENOMEM || rc == RP_ESYS) {
        go_on = refused(&j, rc, "rp_map");
    } else if (rc == RP_OK) {
        for (size_t i = 0; i < j.n; i++)
            judge_ok(&j, i, j.out + i * j.out_size, j.out_size);
    } else {
        size_t low = err.index, must = lowest_raise(&j);
        if (low >= j.n || low > must) {
            soak_defect(&soak_st.lost, "rp_map returned %s for item %zu, but item %zu must "
                        "fail [" JOBFMT "]", rp_err_name(rc), low, must, JOBARG(&j));
        } else {
            if (err.code != rc)
                soak_defect(&soak_st.callerr, "rp_map returned %s, its error says %s",
                            rp_err_name(rc), rp_err_name(err.code));
            for (size_t i = 0; i < j.n; i++) {
                const char *o = j.out + i * j.out_size;
                uint64_t x = item_x(&j, i);
                if (i == low)
                    judge_fail(&j, i, &err);
                else if (i < low || (!soak_raises(x, j.fail_mod) &&
                                     soak_pattern_ok(o, j.out_size, soak_out_seed(x, j.salt))))
                    judge_ok(&j, i, o, j.out_size);
                else
                    judge_unlisted_failure(&j, i, low, err.code);
            }
        }
    }
    job_free(&j);
    return go_on;
}

static bool op_map_async(soak_thread *t, bool var)
{
    enum { MAXD = 3 };
    int depth = (int)soak_range(&t->rng, 1, MAXD), nj = 0;
    job j[MAXD];
    rp_result_t *r[MAXD];
    rp_varout_t *vo[MAXD] = { 0 };
    cbrec cb[MAXD];
    bool use_cb[MAXD], go_on = true;
    for (int k = 0; k < depth; k++) {
        if (!job_make(t, &j[nj], var ? SK_MAP_VAR_ASYNC : SK_MAP_ASYNC))
            break;
        rp_map_opts_t o = job_opts(&j[nj]);
        memset(&cb[nj], 0, sizeof cb[nj]);
        use_cb[nj] = soak_range(&t->rng, 0, 2) == 0;
        if (use_cb[nj]) {
            o.callback = on_done;
            o.error_callback = on_error;
            o.userdata = &cb[nj];
        }
        soak_watch(t, var ? "rp_map_var_async" : "rp_map_async");
        int rc = var ? rp_map_var_async(t->ep->pool, soak_var, j[nj].in, j[nj].n,
                                        j[nj].in_size, &o, &vo[nj], &r[nj])
                     : rp_map_async(t->ep->pool, soak_task, j[nj].in, j[nj].n, j[nj].in_size,
                                    j[nj].out_size ? j[nj].out : NULL, j[nj].out_size, &o,
                                    &r[nj]);
        soak_unwatch(t);
        if (rc != RP_OK) {
            go_on = refused(&j[nj], rc, var ? "rp_map_var_async" : "rp_map_async");
            job_free(&j[nj]);
            break;
        }
        nj++;
    }
    /* collect in a random order */
    int order[MAXD];
    for (int k = 0; k < nj; k++)
        order[k] = k;
    for (int k = nj - 1; k > 0; k--) {
        int m = (int)soak_range(&t->rng, 0, (uint64_t)k), tmp = order[k];
        order[k] = order[m];
        order[m] = tmp;
    }
    for (int q = 0; q < nj; q++) {
        int k = order[q];
        rp_error_t err;
        memset(&err, 0, sizeof err);
        int rc = wait_and_get(t, &j[k], r[k], &err);
        judge_result(&j[k], r[k], rc, &err, vo[k], use_cb[k] ? &cb[k] : NULL);
        soak_watch(t, "rp_result_free");
        rp_result_free(r[k]);
        soak_unwatch(t);
        rp_varout_free(vo[k]);
        job_free(&j[k]);
    }
    return go_on;
}

static bool op_imap(soak_thread *t, bool unordered)
{
    job j;
    if (!job_make(t, &j, unordered ? SK_IMAP_UNORDERED : SK_IMAP))
        return true;
    rp_map_opts_t o = job_opts(&j);
    rp_iter_t *it = NULL;
    const char *name = soak_kind_name[j.kind];
    describe(t, &j);
    soak_watch(t, name);
    int rc = unordered ? rp_imap_unordered(t->ep->pool, soak_task, j.in, j.n, j.in_size,
                                           j.out_size, &o, &it)
                       : rp_imap(t->ep->pool, soak_task, j.in, j.n, j.in_size, j.out_size, &o,
                                 &it);
    soak_unwatch(t);
    if (rc != RP_OK) {
        bool go_on = refused(&j, rc, name);
        job_free(&j);
        return go_on;
    }
    /* sometimes the iterator is freed before the last item */
    size_t stop_at = soak_range(&t->rng, 0, 9) == 0 ? soak_range(&t->rng, 0, j.n) : j.n;
    unsigned char *seen = calloc(j.n + 1, 1);
    char *buf = malloc(j.out_size + 1);
    size_t count = 0;
    double timeout = soak_range(&t->rng, 0, 1) ? RP_FOREVER : 0.1;
    while (seen && buf && count < stop_at) {
        size_t idx = SIZE_MAX;
        rp_error_t err;
        memset(&err, 0, sizeof err);
        soak_watch(t, "rp_iter_next");
        rc = rp_iter_next(it, timeout, &idx, j.out_size ? buf : NULL, &err);
        soak_unwatch(t);
        if (rc == RP_ETIMEDOUT)
            continue;
        if (rc == RP_DONE)
            break;
        if (idx >= j.n || seen[idx] || (!unordered && idx != count)) {
            soak_defect(&soak_st.callerr, "%s yielded index %zu as its item %zu (n %zu, %s) "
                        "[" JOBFMT "]", name, idx, count, j.n,
                        idx < j.n && seen[idx] ? "twice" : "out of order", JOBARG(&j));
            break;
        }
        seen[idx] = 1;
        count++;
        if (rc == RP_OK) {
            judge_ok(&j, idx, buf, j.out_size);
        } else {
            if (err.code != rc)
                soak_defect(&soak_st.callerr, "rp_iter_next returned %s, its error %s",
                            rp_err_name(rc), rp_err_name(err.code));
            judge_fail(&j, idx, &err);
        }
    }
    if (stop_at == j.n && count != j.n)
        soak_defect(&soak_st.callerr, "%s yielded %zu items of %zu [" JOBFMT "]", name,
                    count, j.n, JOBARG(&j));
    soak_watch(t, "rp_iter_free");
    rp_iter_free(it);
    soak_unwatch(t);
    free(seen);
    free(buf);
    job_free(&j);
    return true;
}

static bool op_apply(soak_thread *t)
{
    int m = (int)soak_logrange(&t->rng, 1, 200);
    for (int k = 0; k < m; k++) {
        job j;
        if (!job_make(t, &j, SK_APPLY))
            return true;
        rp_error_t err;
        memset(&err, 0, sizeof err);
        describe(t, &j);
        soak_watch(t, "rp_apply");
        int rc = rp_apply(t->ep->pool, soak_task, j.in, j.in_size, j.out_size ? j.out : NULL,
                          j.out_size, &err);
        soak_unwatch(t);
        bool go_on = true;
        if (rc == RP_OK) {
            judge_ok(&j, 0, j.out, j.out_size);
        } else if (rc == RP_ECLOSED || rc == RP_EINVAL || rc == RP_ENOMEM || rc == RP_ESYS) {
            go_on = refused(&j, rc, "rp_apply");
        } else {
            if (err.code != rc)
                soak_defect(&soak_st.callerr, "rp_apply returned %s, its error %s",
                            rp_err_name(rc), rp_err_name(err.code));
            judge_fail(&j, 0, &err);
        }
        job_free(&j);
        if (!go_on)
            return false;
    }
    return true;
}

static bool op_apply_async(soak_thread *t)
{
    enum { MAXA = 64 };
    int m = (int)soak_logrange(&t->rng, 1, MAXA), nj = 0;
    job *j = malloc(sizeof *j * MAXA);
    rp_result_t **r = malloc(sizeof *r * MAXA);
    cbrec *cb = calloc(MAXA, sizeof *cb);
    bool go_on = true, use_cb = soak_range(&t->rng, 0, 1);
    if (!j || !r || !cb)
        m = 0;
    for (int k = 0; k < m; k++) {
        if (!job_make(t, &j[nj], SK_APPLY_ASYNC))
            break;
        rp_map_opts_t o = { .callback = use_cb ? on_done : NULL,
                            .error_callback = use_cb ? on_error : NULL, .userdata = &cb[nj] };
        soak_watch(t, "rp_apply_async");
        int rc = rp_apply_async(t->ep->pool, soak_task, j[nj].in, j[nj].in_size,
                                j[nj].out_size ? j[nj].out : NULL, j[nj].out_size, &o, &r[nj]);
        soak_unwatch(t);
        if (rc != RP_OK) {
            go_on = refused(&j[nj], rc, "rp_apply_async");
            job_free(&j[nj]);
            break;
        }
        nj++;
    }
    for (int k = 0; k < nj; k++) {
        rp_error_t err;
        memset(&err, 0, sizeof err);
        int rc = wait_and_get(t, &j[k], r[k], &err);
        judge_result(&j[k], r[k], rc, &err, NULL, use_cb ? &cb[k] : NULL);
        soak_watch(t, "rp_result_free");
        rp_result_free(r[k]);
        soak_unwatch(t);
        job_free(&j[k]);
    }
    free(j);
    free(r);
    free(cb);
    return go_on;
}

static bool op_map_var(soak_thread *t)
{
    job j;
    if (!job_make(t, &j, SK_MAP_VAR))
        return true;
    rp_map_opts_t o = job_opts(&j);
    rp_varout_t *vo = NULL;
    rp_error_t err;
    memset(&err, 0, sizeof err);
    describe(t, &j);
    soak_watch(t, "rp_map_var");
    int rc = rp_map_var(t->ep->pool, soak_var, j.in, j.n, j.in_size, &o, &vo, &err);
    soak_unwatch(t);
    bool go_on = true;
    if (!vo) {
        go_on = refused(&j, rc, "rp_map_var");
    } else if (rp_varout_count(vo) != j.n) {
        soak_defect(&soak_st.callerr, "rp_map_var: %zu outputs for %zu items",
                    rp_varout_count(vo), j.n);
    } else {
        size_t low = j.n, must = lowest_raise(&j);
        for (size_t i = 0; i < j.n && low == j.n; i++)
            if (!rp_varout_item(vo, i, NULL))
                low = i;
        if ((rc == RP_OK) != (low == j.n) || (rc != RP_OK && err.index != low))
            soak_defect(&soak_st.callerr, "rp_map_var returned %s for item %zu, the first "
                        "item without output is %zu [" JOBFMT "]", rp_err_name(rc), err.index,
                        low, JOBARG(&j));
        if (low > must)
            soak_defect(&soak_st.lost, "rp_map_var: item %zu must fail, the first failure "
                        "is %zu [" JOBFMT "]", must, low, JOBARG(&j));
        for (size_t i = 0; i < j.n; i++) {
            size_t size = 0;
            const void *d = rp_varout_item(vo, i, &size);
            if (d)
                judge_ok(&j, i, d, size);
            else if (i == low && rc != RP_OK)
                judge_fail(&j, i, &err);
            else
                judge_unlisted_failure(&j, i, low, rc == RP_OK ? RP_OK : err.code);
        }
    }
    rp_varout_free(vo);
    job_free(&j);
    return go_on;
}

bool soak_op(soak_thread *t)
{
    /* weights: the asynchronous maps and imap most, as they check the most */
    static const int kinds[] = { SK_MAP, SK_MAP, SK_MAP_ASYNC, SK_MAP_ASYNC, SK_MAP_ASYNC,
                                 SK_IMAP, SK_IMAP, SK_IMAP_UNORDERED, SK_IMAP_UNORDERED,
                                 SK_APPLY, SK_APPLY_ASYNC, SK_APPLY_ASYNC, SK_MAP_VAR,
                                 SK_MAP_VAR_ASYNC, SK_MAP_VAR_ASYNC };
    int kind;
    do
        kind = kinds[soak_range(&t->rng, 0, COUNT(kinds) - 1)];
    while (!(soak_kinds_mask & 1u << kind));
    switch (kind) {
    case SK_MAP: return op_map(t);
    case SK_MAP_ASYNC: return op_map_async(t, false);
    case SK_IMAP: return op_imap(t, false);
    case SK_IMAP_UNORDERED: return op_imap(t, true);
    case SK_APPLY: return op_apply(t);
    case SK_APPLY_ASYNC: return op_apply_async(t);
    case SK_MAP_VAR: return op_map_var(t);
    default: return op_map_async(t, true);
    }
}
