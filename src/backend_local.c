/* TEMPORARY: a stub of the local backend, until the port of the local backend to
 * the new core (src/local/) lands. It only lets this tree build and run the mpi
 * backend; creating a local pool fails with RP_EBACKEND. Replaced at integration. */
#include "backend.h"

static int stub_start(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    rp__error_set(err, RP_EBACKEND, 0, -1, pool->host,
                  "the local backend is not built in this tree (stub until its port "
                  "to the new core lands)");
    return RP_EBACKEND;
}

static int stub_submit(rp_pool_t *pool, struct rp__job *job)
{
    return RP_EBACKEND;
}

static void stub_job(rp_pool_t *pool, struct rp__job *job) {}
static void stub_pool(rp_pool_t *pool) {}
static int stub_ok(rp_pool_t *pool)
{
    return RP_OK;
}

const struct rp__backend_ops rp__backend_local = {
    .name = "local",
    .start = stub_start,
    .submit = stub_submit,
    .release = stub_job,
    .kick = stub_pool,
    .join = stub_ok,
    .terminate = stub_ok,
    .destroy = stub_pool,
};
