/* The soak program's items (see tests/soak_ops.c for how results are judged).
 *
 * Every item carries its own expectation. Item i of a job has the key
 * x = tag << 32 | i; its input is a header (x, the job's failure modulus, a sleep,
 * the item sizes) followed by bytes derived from x, which the task verifies. The
 * task fails with rp_raise exactly when soak_raises(x, fail_mod), with
 * soak_raise_code(x) and the message "raise <x in hex>"; otherwise it writes
 * output bytes derived from x and the pool's salt, which only the initializer
 * gives a worker (a worker that did not run it writes wrong outputs). */
#ifndef RP_SOAK_TASK_H
#define RP_SOAK_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rankpool.h"

typedef struct soak_item {
    uint64_t x;
    uint32_t fail_mod, sleep_us, in_size, out_size;
} soak_item;
#define SOAK_HDR ((size_t)sizeof(soak_item)) /* 24: the smallest input item */

/* Task codes of failures a task finds itself (never expected): its input was
 * corrupted, rp_ctx_index did not match, rp_output returned NULL. */
enum { TC_INPUT = 1001, TC_INDEX, TC_NOROOM };

uint64_t soak_mix64(uint64_t z);
/* len bytes derived from seed; soak_pattern_ok compares with them. */
void     soak_pattern(void *dst, size_t len, uint64_t seed);
bool     soak_pattern_ok(const void *p, size_t len, uint64_t seed);
uint64_t soak_in_seed(uint64_t x);
uint64_t soak_out_seed(uint64_t x, uint64_t salt);
bool     soak_raises(uint64_t x, uint32_t fail_mod);
int      soak_raise_code(uint64_t x);
/* Length of a variable-size output: mostly short, sometimes empty or long. */
size_t   soak_var_len(uint64_t x);

/* The initializer every pool gets: stores *(uint64_t *)arg, the pool's salt. */
int soak_init(const void *arg, rp_ctx_t *ctx);

/* The tasks: fixed-size outputs, and variable-size ones (rp_output; sometimes a
 * first output replaced, sometimes one set before failing). */
int soak_task(const void *in, void *out, rp_ctx_t *ctx);
int soak_var(const void *in, void *out, rp_ctx_t *ctx);

#endif /* RP_SOAK_TASK_H */
