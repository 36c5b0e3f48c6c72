/* initializer: set-up run once in each worker before its first task.
 *
 * Python:
 *     def init(scale):
 *         global table
 *         table = [i * scale for i in range(256)]
 *
 *     with Pool(initializer=init, initargs=(3,)) as p:
 *         print(p.map(lookup, data))
 *
 * Each worker has its own copy of the program's globals, so what the initializer
 * builds there stays private to that worker. Unlike Python, where a failing
 * initializer makes the pool respawn workers forever, rankpool fails
 * rp_pool_create with RP_EINIT and the initializer's message.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <rankpool.h>

struct config {
    int scale;
};

/* Built by init() in each worker; the caller's own copy stays zero. */
static long table[256];

static int init(const void *arg, rp_ctx_t *ctx)
{
    const struct config *c = arg; /* a copy, made at rp_pool_create */
    if (c->scale <= 0)
        return rp_raise(ctx, RP_EINIT, "scale must be positive, got %d", c->scale);
    for (int i = 0; i < 256; i++)
        table[i] = (long)i * c->scale;
    return 0;
}

static int lookup(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    *(long *)out = table[*(const unsigned char *)in];
    return 0;
}

int main(void)
{
    const unsigned char data[] = {0, 1, 2, 10, 100, 255};
    enum { N = sizeof data };
    long out[N];
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc, status = 1;

    /* initarg_size bytes at initarg are copied to every worker. */
    struct config good = {.scale = 3};
    rp_pool_opts_t opts = {.initializer = init, .initarg = &good, .initarg_size = sizeof good};
    if ((rc = rp_pool_create_ex(&pool, &opts, &err)) != RP_OK) {
        fprintf(stderr, "initializer: rp_pool_create: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }
    bool master = rp_pool_is_master(pool);
    if (master) {
        rc = rp_map(pool, lookup, data, N, sizeof data[0], out, sizeof out[0], NULL, &err);
        if (rc != RP_OK) {
            fprintf(stderr, "initializer: item %zu: %s: %s\n", err.index, rp_strerror(rc),
                    err.message);
            goto done;
        }
        printf("initializer: scale 3:");
        for (int i = 0; i < N; i++)
            printf(" %d->%ld", data[i], out[i]);
        printf(" (the caller's own table[255] is %ld)\n", table[255]);
        for (int i = 0; i < N; i++)
            if (out[i] != 3L * data[i])
                goto done;
        if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
            fprintf(stderr, "initializer: close/join: %s\n", rp_strerror(rc));
            goto done;
        }
    }
    rp_pool_free(pool);
    pool = NULL;

    /* A failing initializer: creation fails, promptly, saying why. (Under mpirun,
     * every rank gets RP_EINIT; the master has the initializer's own message.) */
    struct config bad = {.scale = 0};
    opts.initarg = &bad;
    rc = rp_pool_create_ex(&pool, &opts, &err);
    if (master)
        printf("initializer: scale 0: rp_pool_create: %s: %s\n", rp_err_name(rc),
               rc == RP_OK ? "" : err.message);
    if (rc != RP_EINIT || pool != NULL ||
        (master && !strstr(err.message, "scale must be positive"))) {
        fprintf(stderr, "initializer: expected RP_EINIT with the initializer's message\n");
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool);
    return status;
}
