/* Variable-size outputs (rp_map_var, rp_output) on the local backend: a task
 * returns the divisors of n, some items fail, some outputs are large, some empty.
 * (A worker that dies in the middle of a variable-size map: tests/test_crash.c.) */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>

static size_t count_divisors(long n)
{
    size_t k = 0;
    for (long i = 1; i <= n; i++)
        k += n % i == 0;
    return k;
}

/* The divisors of n; multiples of 97 fail; n == 1000 has no output at all. */
static int divisors(const void *in, void *out, rp_ctx_t *ctx)
{
    long n = *(const long *)in;
    if (out != NULL)
        return rp_raise(ctx, 2, "out should be NULL in a variable-size map");
    if (n % 97 == 0)
        return rp_raise(ctx, 97, "%ld is a multiple of 97", n);
    if (n == 1000)
        return 0;
    size_t k = count_divisors(n);
    long *d = rp_output(ctx, k * sizeof(long));
    if (!d)
        return rp_raise(ctx, 1, "rp_output failed");
    size_t j = 0;
    for (long i = 1; i <= n; i++)
        if (n % i == 0)
            d[j++] = i;
    return 0;
}

static void check_divisors(rp_varout_t *vo, const long *in, size_t n)
{
    CU_ASSERT_EQUAL_FATAL(rp_varout_count(vo), n);
    int wrong = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size = 12345;
        const long *d = rp_varout_item(vo, i, &size);
        long x = in[i];
        if (x % 97 == 0 || x == 1000) {
            wrong += d != NULL || size != 0;
            continue;
        }
        size_t k = count_divisors(x);
        if (!d || size != k * sizeof(long)) {
            wrong++;
            continue;
        }
        for (size_t j = 0; j < k; j++)
            wrong += x % d[j] != 0 || (j > 0 && d[j] <= d[j - 1]);
        wrong += d[0] != 1 || d[k - 1] != x;
    }
    CU_ASSERT_EQUAL(wrong, 0);
}

static void test_varsize_divisors(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    size_t n = 3000;
    long *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++)
        in[i] = (long)i + 1;
    size_t chunks[] = { 0, 1, 7, 5000 };
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        rp_map_opts_t mo = { .chunksize = chunks[c] };
        rp_varout_t *vo = NULL;
        rp_error_t e;
        CU_ASSERT_EQUAL(rp_map_var(p, divisors, in, n, sizeof(long), &mo, &vo, &e), RP_ETASK);
        CU_ASSERT_EQUAL(e.index, 96);
        CU_ASSERT_EQUAL(e.task_code, 97);
        CU_ASSERT_STRING_EQUAL(e.message, "97 is a multiple of 97");
        CU_ASSERT_PTR_NOT_NULL_FATAL(vo);
        check_divisors(vo, in, n);
        rp_varout_free(vo);
    }
    /* asynchronously, several at once */
    rp_result_t *r[4];
    rp_varout_t *vo[4];
    for (int k = 0; k < 4; k++)
        CU_ASSERT_EQUAL_FATAL(rp_map_var_async(p, divisors, in, n, sizeof(long), NULL, &vo[k],
                                               &r[k]),
                              RP_OK);
    for (int k = 3; k >= 0; k--) {
        CU_ASSERT_EQUAL(rp_result_get(r[k], 60, NULL), RP_ETASK);
        CU_ASSERT_EQUAL(rp_result_nerrors(r[k]), n / 97);
        check_divisors(vo[k], in, n);
        rp_result_free(r[k]);
        rp_varout_free(vo[k]);
    }
    free(in);
    tu_pool_done(p);
}

/* Outputs of a few MB each. */
static int big(const void *in, void *out, rp_ctx_t *ctx)
{
    long i = *(const long *)in;
    size_t bytes = (size_t)(i + 1) << 20;
    unsigned char *b = rp_output(ctx, bytes);
    if (!b)
        return rp_raise(ctx, 1, "no room for %zu bytes", bytes);
    for (size_t k = 0; k < bytes; k++)
        b[k] = (unsigned char)(k * 7 + (size_t)i);
    return 0;
}

static void test_varsize_big(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long in[12];
    for (int i = 0; i < 12; i++)
        in[i] = i;
    rp_varout_t *vo = NULL;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map_var(p, big, in, 12, sizeof(long), &one, &vo, NULL), RP_OK);
    int wrong = 0;
    for (int i = 0; i < 12; i++) {
        size_t size;
        const unsigned char *b = rp_varout_item(vo, (size_t)i, &size);
        CU_ASSERT_EQUAL(size, (size_t)(i + 1) << 20);
        if (!b)
            continue;
        for (size_t k = 0; k < size; k++)
            wrong += b[k] != (unsigned char)(k * 7 + (size_t)i);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    rp_varout_free(vo);
    tu_pool_done(p);
}

/* Calling rp_output again replaces the earlier output; size 0 is an empty
 * output (not a failure). */
static int twice(const void *in, void *out, rp_ctx_t *ctx)
{
    long i = *(const long *)in;
    char *a = rp_output(ctx, 100);
    if (!a)
        return 1;
    memset(a, 'x', 100);
    if (i % 2)
        return rp_output(ctx, 0) ? 0 : 1;
    char *b = rp_output(ctx, 3);
    if (!b)
        return 1;
    memcpy(b, "abc", 3);
    return 0;
}

static void test_varsize_replace_and_empty(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long in[100];
    for (int i = 0; i < 100; i++)
        in[i] = i;
    rp_varout_t *vo = NULL;
    CU_ASSERT_EQUAL(rp_map_var(p, twice, in, 100, sizeof(long), NULL, &vo, NULL), RP_OK);
    for (int i = 0; i < 100; i++) {
        size_t size = 99;
        const char *b = rp_varout_item(vo, (size_t)i, &size);
        if (i % 2) {
            CU_ASSERT_EQUAL(size, 0);
        } else {
            CU_ASSERT_EQUAL(size, 3);
            CU_ASSERT(b && memcmp(b, "abc", 3) == 0);
        }
    }
    CU_ASSERT_PTR_NULL(rp_varout_item(vo, 100, NULL));
    rp_varout_free(vo);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore);
    static const tu_test tests[] = {
        TU_TEST(test_varsize_divisors),
        TU_TEST(test_varsize_big),
        TU_TEST(test_varsize_replace_and_empty),
        TU_END,
    };
    return tu_run("varsize", tests, argc, argv);
}
