/* A task in a module the tests load and unload (dlopen/dlclose): built twice,
 * tests/libdlmod_a.la (DLMOD_VALUE 1) and tests/libdlmod_b.la (2), the same code
 * but for one constant, so the task sits at the same offset in both and the
 * second may well be loaded where the first was. out = DLMOD_VALUE * 1000 + in. */
#include "rankpool.h"

int dlmod_task(const void *in, void *out, rp_ctx_t *ctx);

int dlmod_task(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    *(long *)out = DLMOD_VALUE * 1000 + *(const long *)in;
    return 0;
}
