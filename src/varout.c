/* Variable-size outputs: a map whose tasks call rp_output() for room of any
 * length. The job is flagged RP__JOB_VAR; its fixed-size output slots are the
 * varout's array of rp__varslot, which the backend fills with malloc'd copies of
 * each item's output (the core clears the slots of failed items). */
#include "result.h"
#include "monitor.h"

#include <stdlib.h>

struct rp_varout {
    size_t       n;
    rp__varslot *slots;
};

static void varout_destroy(rp_varout_t *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++)
        free(v->slots[i].data);
    free(v->slots);
    free(v);
}

int rp_map_var_async(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                     size_t in_size, const rp_map_opts_t *opts, rp_varout_t **out,
                     rp_result_t **res)
{
    if (!out || !res)
        return RP_EINVAL;
    *out = NULL;
    *res = NULL;
    int rc = rp__check_map_args(pool, fn, in, n, in_size, "", sizeof(rp__varslot));
    if (rc != RP_OK)
        return rc;
    rp_varout_t *v = calloc(1, sizeof *v);
    if (!v)
        return RP_ENOMEM;
    v->n = n;
    v->slots = calloc(n ? n : 1, sizeof *v->slots);
    if (!v->slots) {
        free(v);
        return RP_ENOMEM;
    }
    if (opts && opts->journal)
        rc = rp__journal_submit(pool, fn, in, n, in_size, v->slots, sizeof(rp__varslot), opts,
                                RP__JOB_VAR, res);
    else
        rc = rp__result_submit(pool, fn, in, n, in_size, v->slots, sizeof(rp__varslot), opts,
                               RP__JOB_VAR, res);
    if (rc != RP_OK) {
        varout_destroy(v);
        return rc;
    }
    *out = v;
    return RP_OK;
}

int rp_map_var(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
               const rp_map_opts_t *opts, rp_varout_t **out, rp_error_t *err)
{
    rp_result_t *r;
    int rc = rp__blocking_check(pool, opts);
    if (rc == RP_OK)
        rc = rp_map_var_async(pool, fn, in, n, in_size, opts, out, &r);
    else if (out)
        *out = NULL;
    if (rc != RP_OK)
        return rp__call_refused(err, rc, "rp_map_var");
    rc = rp_result_get(r, RP_FOREVER, err);
    rp_result_free(r);
    return rc;
}

const void *rp_varout_item(const rp_varout_t *out, size_t i, size_t *size)
{
    if (!out || i >= out->n) {
        if (size)
            *size = 0;
        return NULL;
    }
    if (size)
        *size = out->slots[i].size;
    return out->slots[i].data;
}

size_t rp_varout_count(const rp_varout_t *out)
{
    return out ? out->n : 0;
}

void rp_varout_free(rp_varout_t *out)
{
    varout_destroy(out);
}
