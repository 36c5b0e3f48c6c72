/* process: one function run in another process, then joined.
 *
 * Python:
 *     def f(name):
 *         print('hello', name)
 *
 *     p = Process(target=f, args=('bob',))
 *     p.start()
 *     p.join()
 *
 * A pool of one worker and rp_apply_async is rankpool's Process; unlike a bare
 * Process, the function can also return a value and report a failure.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rankpool.h>

struct greeting {
    long pid;       /* the process that ran f */
    char text[64];
};

static int f(const void *in, void *out, rp_ctx_t *ctx)
{
    const char *name = in;
    struct greeting *g = out;
    (void)ctx;

    printf("hello %s (from process %ld)\n", name, (long)getpid());
    fflush(stdout); /* a worker's stdout is the parent's, but buffered apart */
    g->pid = (long)getpid();
    snprintf(g->text, sizeof g->text, "hello %s", name);
    return 0;
}

int main(void)
{
    const char name[16] = "bob";
    struct greeting g = {0};
    rp_pool_t *pool = NULL;
    rp_result_t *res = NULL;
    rp_error_t err;
    int rc, status = 1;

    rp_pool_opts_t opts = {.workers = 1};
    if ((rc = rp_pool_create(&pool, &opts)) != RP_OK) {
        fprintf(stderr, "process: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    /* start */
    rc = rp_apply_async(pool, f, name, sizeof name, &g, sizeof g, NULL, &res);
    if (rc != RP_OK) {
        fprintf(stderr, "process: rp_apply_async: %s\n", rp_strerror(rc));
        goto done;
    }
    /* join */
    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "process: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    /* The "exit code", and what f returned. */
    if ((rc = rp_result_get(res, 0, &err)) != RP_OK) {
        fprintf(stderr, "process: f failed: %s: %s\n", rp_strerror(rc), err.message);
        goto done;
    }
    printf("process: parent %ld joined child %ld, which said \"%s\"\n", (long)getpid(), g.pid,
           g.text);
    if (g.pid == 0 || g.pid == (long)getpid() || strcmp(g.text, "hello bob") != 0)
        goto done;
    status = 0;
done:
    rp_result_free(res);
    rp_pool_free(pool);
    return status;
}
