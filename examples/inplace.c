/* inplace: a large array squared in place, with no copies on one machine.
 *
 * rp_pool_alloc gives memory the workers share with the caller: a map whose
 * input and output lie in it moves no bytes (the local backend's workers read and
 * write the array itself). A batch task gets a run of consecutive items in one
 * call, a plain loop the compiler can vectorise, instead of one call per item.
 * Under mpirun the same program works: the buffer is then ordinary memory and
 * the items travel to the worker ranks and back.
 *
 *     ./examples/inplace                  # local backend
 *     mpirun -np 3 ./examples/inplace     # mpi backend
 */
#include <stdio.h>

#include <rankpool.h>

#define N 4000000L

/* Squares count items from first_index on; in and out are the same memory here. */
static int square_run(const void *in, void *out, size_t count, size_t first_index,
                      rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++) {
        if (a[k] < 0) /* name the item that fails: the others still succeed */
            return rp_raise_at(ctx, first_index + k, RP_ETASK, "negative input %ld", a[k]);
        b[k] = a[k] * a[k];
    }
    return 0;
}

int main(void)
{
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc = rp_pool_create(&pool, NULL), status = 1;
    if (rc != RP_OK) {
        fprintf(stderr, "inplace: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* a worker rank under mpirun: done */
        rp_pool_free(pool);
        return 0;
    }
    printf("inplace: backend %s, %d workers\n", rp_pool_backend(pool), rp_pool_size(pool));

    long *v = rp_pool_alloc(pool, N * sizeof *v);
    if (!v) {
        perror("inplace: rp_pool_alloc");
        goto done;
    }
    for (long i = 0; i < N; i++)
        v[i] = i % 1000;

    /* in and out are the same buffer: squared where it lies */
    rc = rp_map_batch(pool, square_run, v, N, sizeof *v, v, sizeof *v, NULL, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "inplace: item %zu failed: %s\n", err.index, err.message);
        goto done;
    }
    long wrong = 0;
    for (long i = 0; i < N; i++)
        wrong += v[i] != (i % 1000) * (i % 1000);
    printf("inplace: %ld items squared in place, v[999] = %ld, %ld wrong: %s\n", N, v[999],
           wrong, wrong ? "WRONG" : "ok");
    if (wrong)
        goto done;

    /* one bad item fails alone, named by the task */
    v[12345] = -1;
    rc = rp_map_batch(pool, square_run, v, N, sizeof *v, v, sizeof *v, NULL, &err);
    printf("inplace: with a negative item: %s, item %zu: %s\n", rp_err_name(rc), err.index,
           err.message);
    if (rc != RP_ETASK || err.index != 12345)
        goto done;

    rp_pool_free_buffer(pool, v); /* (rp_pool_free would release it too) */
    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "inplace: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool);
    return status;
}
