/* The soak program's items and tasks (see soak_task.h): what a worker runs, and
 * what the master expects of each item. */
#define _GNU_SOURCE 1
#include "soak_task.h"

#include <string.h>
#include <time.h>

/* ---- items ------------------------------------------------------------------- */

uint64_t soak_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void soak_pattern(void *dst, size_t len, uint64_t seed)
{
    unsigned char *d = dst;
    for (uint64_t k = 0; len > 0; k++) {
        uint64_t w = soak_mix64(seed + k);
        size_t m = len < 8 ? len : 8;
        memcpy(d, &w, m);
        d += m;
        len -= m;
    }
}

bool soak_pattern_ok(const void *p, size_t len, uint64_t seed)
{
    const unsigned char *d = p;
    for (uint64_t k = 0; len > 0; k++) {
        uint64_t w = soak_mix64(seed + k);
        size_t m = len < 8 ? len : 8;
        if (memcmp(d, &w, m) != 0)
            return false;
        d += m;
        len -= m;
    }
    return true;
}

uint64_t soak_in_seed(uint64_t x) { return x * 3 + 1; }
uint64_t soak_out_seed(uint64_t x, uint64_t salt) { return (x ^ salt) * 5 + 7; }
bool soak_raises(uint64_t x, uint32_t fail_mod)
{
    return fail_mod && soak_mix64(x ^ 0x5ee5) % fail_mod == 0;
}
int soak_raise_code(uint64_t x) { return 1 + (int)(soak_mix64(x ^ 0xc0de) % 200); }

/* Length of a variable-size output: mostly short, sometimes empty or long. */
size_t soak_var_len(uint64_t x)
{
    uint64_t h = soak_mix64(x ^ 0xa11a);
    if (h % 16 == 0)
        return 0;
    if (h % 64 == 1)
        return 1000 + (size_t)(h >> 8) % 4000;
    return (size_t)(h >> 8) % 200;
}

/* ---- the workers' side ----------------------------------------------------------- */

static uint64_t g_salt; /* per worker, from the initializer */

int soak_init(const void *arg, rp_ctx_t *ctx)
{
    if (!arg)
        return rp_raise(ctx, 1, "no initarg");
    memcpy(&g_salt, arg, sizeof g_salt);
    return 0;
}

/* Checks the input and the index, sleeps; 0 to go on, else the task's return. */
static int prologue(const void *in, rp_ctx_t *ctx, soak_item *h)
{
    memcpy(h, in, sizeof *h);
    if (h->in_size < SOAK_HDR || !soak_pattern_ok((const char *)in + SOAK_HDR,
                                                  h->in_size - SOAK_HDR, soak_in_seed(h->x)))
        return rp_raise(ctx, TC_INPUT, "input of item %zu (x %llx) corrupted",
                        rp_ctx_index(ctx), (unsigned long long)h->x);
    if (rp_ctx_index(ctx) != (size_t)(h->x & 0xffffffffu))
        return rp_raise(ctx, TC_INDEX, "rp_ctx_index %zu for x %llx", rp_ctx_index(ctx),
                        (unsigned long long)h->x);
    if (h->sleep_us) {
        struct timespec ts = { 0, (long)h->sleep_us * 1000L };
        nanosleep(&ts, NULL);
    }
    return 0;
}

int soak_task(const void *in, void *out, rp_ctx_t *ctx)
{
    soak_item h;
    int rc = prologue(in, ctx, &h);
    if (rc)
        return rc;
    if (soak_raises(h.x, h.fail_mod))
        return rp_raise(ctx, soak_raise_code(h.x), "raise %llx", (unsigned long long)h.x);
    if (h.out_size)
        soak_pattern(out, h.out_size, soak_out_seed(h.x, g_salt));
    return 0;
}

/* Variable-size outputs; sometimes replaces a first output, and sometimes sets
 * one before failing (a failed item must have none). */
int soak_var(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)out;
    soak_item h;
    int rc = prologue(in, ctx, &h);
    if (rc)
        return rc;
    uint64_t r = soak_mix64(h.x ^ 7);
    if (r % 5 == 0) {
        size_t junk = soak_var_len(h.x) / 2 + 5;
        void *p = rp_output(ctx, junk);
        if (p)
            memset(p, 0xee, junk);
    }
    if (soak_raises(h.x, h.fail_mod))
        return rp_raise(ctx, soak_raise_code(h.x), "raise %llx", (unsigned long long)h.x);
    size_t len = soak_var_len(h.x);
    void *p = rp_output(ctx, len);
    if (!p)
        return rp_raise(ctx, TC_NOROOM, "rp_output(%zu) returned NULL", len);
    soak_pattern(p, len, soak_out_seed(h.x, g_salt));
    return 0;
}

