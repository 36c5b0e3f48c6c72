/* no_return_wait: tasks that return nothing (out_size 0), and wait().
 *
 * Python:
 *     def touch(i): open(f"{tmp}/item-{i}", "w").write(str(i))
 *     r = pool.map_async(touch, range(16))
 *     r.wait()
 *     assert r.successful()
 *
 * The tasks' only effect is outside the pool: here, files in a temporary
 * directory (worker processes do not share the caller's variables).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rankpool.h>

#define N 16

/* Items are plain bytes: the directory name travels inside each item. */
struct job {
    char dir[64];
    int  i;
};

static int touch(const void *in, void *out, rp_ctx_t *ctx)
{
    const struct job *job = in;
    char path[128];
    (void)out; /* NULL: this map has no outputs */

    snprintf(path, sizeof path, "%s/item-%d", job->dir, job->i);
    FILE *f = fopen(path, "w");
    if (!f)
        return rp_raise(ctx, RP_ETASK, "cannot create %s", path);
    fprintf(f, "%d written by worker %d\n", job->i, rp_ctx_worker(ctx));
    if (fclose(f) != 0)
        return rp_raise(ctx, RP_ETASK, "cannot write %s", path);
    return 0;
}

int main(void)
{
    static struct job jobs[N];
    char dir[] = "/tmp/rankpool-example-XXXXXX";
    bool have_dir = false;
    rp_pool_t *pool = NULL;
    rp_result_t *res = NULL;
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "no_return_wait: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }
    if (!mkdtemp(dir)) {
        perror("no_return_wait: mkdtemp");
        goto done;
    }
    have_dir = true;
    for (int i = 0; i < N; i++) {
        snprintf(jobs[i].dir, sizeof jobs[i].dir, "%s", dir);
        jobs[i].i = i;
    }

    /* out = NULL and out_size = 0: the tasks produce nothing. */
    rc = rp_map_async(pool, touch, jobs, N, sizeof jobs[0], NULL, 0, NULL, &res);
    if (rc != RP_OK) {
        fprintf(stderr, "no_return_wait: rp_map_async: %s\n", rp_strerror(rc));
        goto done;
    }
    if ((rc = rp_result_wait(res, 30.0)) != RP_OK) {
        fprintf(stderr, "no_return_wait: wait: %s\n", rp_strerror(rc));
        goto done;
    }
    /* wait() does not say whether the tasks succeeded: successful() does. */
    if (rp_result_successful(res) != 1) {
        const rp_error_t *e = rp_result_error(res, 0);
        fprintf(stderr, "no_return_wait: %zu tasks failed, first: %s\n",
                rp_result_nerrors(res), e ? e->message : "?");
        goto done;
    }

    int found = 0;
    for (int i = 0; i < N; i++) {
        char path[128], line[128] = "";
        snprintf(path, sizeof path, "%s/item-%d", dir, i);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(line, sizeof line, f) && atoi(line) == i)
                found++;
            fclose(f);
        }
        if (i < 3)
            printf("no_return_wait: %s: %s", path, line);
    }
    printf("no_return_wait: %d tasks done, %d of %d files written\n", N, found, N);
    if (found != N)
        goto done;

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "no_return_wait: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_result_free(res); /* waits for the tasks if they still run */
    rp_pool_free(pool);
    for (int i = 0; have_dir && i < N; i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/item-%d", dir, i);
        unlink(path);
    }
    if (have_dir)
        rmdir(dir);
    return status;
}
