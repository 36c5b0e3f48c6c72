// lambda: rankpool from C++. The task is a lambda without captures (it converts
// to the rp_task_fn function pointer rankpool wants), the items live in
// std::vector, and the pool is released by a std::unique_ptr.
//
// Python:
//     with Pool() as p:
//         norms = p.map(lambda v: math.hypot(*v), vectors)
//
//     ./examples/lambda                    # local backend: forked workers
//     mpirun -np 3 ./examples/lambda       # mpi backend: rank 0 + 2 worker ranks
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <rankpool.h>

struct vec3 { // an item: plain bytes, no pointers
    double x, y, z;
};

int main()
{
    // A captureless lambda is a plain function: any process of this program
    // (a forked worker, another MPI rank) can call it.
    rp_task_fn norm = [](const void *in, void *out, rp_ctx_t *ctx) -> int {
        const vec3 &v = *static_cast<const vec3 *>(in);
        if (std::isnan(v.x))
            return rp_raise(ctx, 1, "item %zu is not a number", rp_ctx_index(ctx));
        *static_cast<double *>(out) = std::sqrt(v.x * v.x + v.y * v.y + v.z * v.z);
        return 0;
    };

    rp_pool_t *raw = nullptr;
    rp_error_t err;
    if (int rc = rp_pool_create_ex(&raw, nullptr, &err); rc != RP_OK) {
        std::fprintf(stderr, "lambda: rp_pool_create: %s\n", err.message);
        return 1;
    }
    std::unique_ptr<rp_pool_t, void (*)(rp_pool_t *)> pool(raw, rp_pool_free);
    if (!rp_pool_is_master(pool.get())) // under mpirun: a rank that served tasks
        return 0;
    std::printf("lambda: backend %s, %d workers\n", rp_pool_backend(pool.get()),
                rp_pool_size(pool.get()));

    std::vector<vec3> in;
    for (int i = 0; i < 1000; i++)
        in.push_back({ 3.0 * i, 4.0 * i, 12.0 * i }); // |v| = 13 i
    std::vector<double> out(in.size());
    int rc = rp_map(pool.get(), norm, in.data(), in.size(), sizeof(vec3), out.data(),
                    sizeof(double), nullptr, &err);
    if (rc != RP_OK) {
        std::fprintf(stderr, "lambda: item %zu: %s\n", err.index, err.message);
        return 1;
    }
    int wrong = 0;
    for (size_t i = 0; i < out.size(); i++)
        wrong += out[i] != 13.0 * static_cast<double>(i);
    std::printf("lambda: %zu norms, |v[999]| = %g, %d wrong\n", out.size(), out.back(), wrong);

    // a failing item: the lambda's rp_raise, with the others' results kept
    in[500].x = std::nan("");
    out.assign(in.size(), -1);
    rc = rp_map(pool.get(), norm, in.data(), in.size(), sizeof(vec3), out.data(),
                sizeof(double), nullptr, &err);
    std::printf("lambda: %s at item %zu: %s; |v[999]| still %g\n", rp_err_name(rc), err.index,
                err.message, out[999]);
    if (rc != RP_ETASK || err.index != 500 || out[999] != 13.0 * 999)
        wrong++;

    if (rp_pool_close(pool.get()) != RP_OK || rp_pool_join(pool.get()) != RP_OK)
        return 1;
    return wrong == 0 ? 0 : 1;
}
