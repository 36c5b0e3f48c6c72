/* The local backend's watch over task time limits, on the pool thread.
 *
 * A worker running an item of a job with a time limit publishes in its slot the
 * moment the item becomes late (rp__runctl: 0, then the item in `cur`, then the
 * deadline; 0 again after the chunk). The pool thread, which otherwise sleeps in
 * poll() until an event, sleeps no longer than until the nearest deadline (or,
 * when no item is being timed, than the shortest limit of a job in a slot: an
 * item started meanwhile cannot be late before that). At each wake it SIGKILLs
 * the workers whose deadline has passed and remembers the deadline each was
 * killed for. Their deaths come back through the fork server like any other
 * (thread.c): the item is failed with RP_ETASKTIMEOUT by the core if the dead
 * worker's deadline is still the one it was killed for; if the worker had moved
 * on to another item meanwhile, that item did not fail and runs again. With no
 * job with a time limit alive (ntimed 0) none of this runs. */
#include "local.h"

#include <signal.h>

double rp__local_watch_limits(struct lpool *lp)
{
    if (atomic_load_explicit(&lp->ntimed, memory_order_relaxed) == 0)
        return -1;
    struct rp__hdr *hdr = lp->hdr;
    uint64_t now = rp__now_ns(), next = UINT64_MAX;
    for (int j = 0; j < RP__NSLOTS; j++) {
        struct rp__slot *s = &hdr->slots[j];
        if ((atomic_load(&s->state) & 3) == RP__SLOT_ACTIVE && s->timeout_ns
            && now + s->timeout_ns < next)
            next = now + s->timeout_ns;
    }
    for (int k = 0; k < lp->nworkers; k++) {
        struct rp__wslot *ws = rp__wslot_of(lp, k);
        uint64_t dl = atomic_load(&ws->deadline);
        if (dl == 0 || dl == ws->kill_deadline)
            continue; /* not timed, or killed and its death not handled yet */
        if (dl > now) {
            if (dl < next)
                next = dl;
            continue;
        }
        int32_t pid = atomic_load(&ws->pid);
        if (pid <= 0)
            continue;
        ws->kill_deadline = dl;
        rp__trace("local: worker %d (pid %d) is past its item's time limit: killed", k,
                  (int)pid);
        kill(pid, SIGKILL);
    }
    if (next == UINT64_MAX)
        return -1;
    return next > now ? (double)(next - now) * 1e-9 : 0;
}

void rp__local_watch_death(struct lpool *lp, struct ljob *lj, struct rp__wslot *ws,
                           rp__death *d, bool running)
{
    (void)lp;
    uint64_t kd = ws->kill_deadline;
    ws->kill_deadline = 0;
    if (!kd || !running)
        return;
    if (atomic_load(&ws->deadline) == kd)
        d->timeout = lj->job->timeout;
    else
        d->requeue = true;
}
