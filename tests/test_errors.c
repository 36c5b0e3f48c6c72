/* The status code table: texts and names, distinct, for every code; any int gets
 * a text. */
#include "testutil.h"

#include <limits.h>

static const int codes[] = {
#define TU_CODE(name, value, text) RP_##name,
    RP_ERRNO_MAP(TU_CODE)
#undef TU_CODE
};
#define NCODES (sizeof codes / sizeof codes[0])

static void test_errors_texts_distinct(void)
{
    size_t dup = 0, empty = 0;
    for (size_t i = 0; i < NCODES; i++) {
        const char *t = rp_strerror(codes[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        empty += t[0] == '\0';
        for (size_t j = 0; j < i; j++)
            dup += strcmp(t, rp_strerror(codes[j])) == 0;
    }
    CU_ASSERT_EQUAL(dup, 0);
    CU_ASSERT_EQUAL(empty, 0);
}

static void test_errors_names_distinct(void)
{
    size_t dup = 0, badprefix = 0;
    for (size_t i = 0; i < NCODES; i++) {
        const char *n = rp_err_name(codes[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(n);
        badprefix += strncmp(n, "RP_", 3) != 0 || strcmp(n, "RP_UNKNOWN") == 0;
        for (size_t j = 0; j < i; j++)
            dup += strcmp(n, rp_err_name(codes[j])) == 0;
    }
    CU_ASSERT_EQUAL(dup, 0);
    CU_ASSERT_EQUAL(badprefix, 0);
    CU_ASSERT_STRING_EQUAL(rp_err_name(RP_ETIMEDOUT), "RP_ETIMEDOUT");
    CU_ASSERT_STRING_EQUAL(rp_err_name(RP_OK), "RP_OK");
}

static void test_errors_codes_distinct_and_signs(void)
{
    size_t dup = 0, positive = 0;
    for (size_t i = 0; i < NCODES; i++) {
        for (size_t j = 0; j < i; j++)
            dup += codes[i] == codes[j];
        positive += codes[i] > 0;
    }
    CU_ASSERT_EQUAL(dup, 0);
    CU_ASSERT_EQUAL(positive, 1); /* RP_DONE only */
    CU_ASSERT_TRUE(RP_DONE > 0);
    CU_ASSERT_EQUAL(RP_OK, 0);
    CU_ASSERT_TRUE(RP_EINVAL < 0 && RP_ETASK < 0 && RP_EFORK < 0);
}

static void test_errors_unknown_codes_have_text(void)
{
    static const int odd[] = { -1000, 1000, INT_MIN, INT_MAX, -99, 2 };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *t = rp_strerror(odd[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        CU_ASSERT_TRUE(t[0] != '\0');
        CU_ASSERT_STRING_EQUAL(rp_err_name(odd[i]), "RP_UNKNOWN");
        for (size_t j = 0; j < NCODES; j++)
            CU_ASSERT_TRUE(strcmp(t, rp_strerror(codes[j])) != 0);
    }
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_errors_texts_distinct),
        TU_TEST(test_errors_names_distinct),
        TU_TEST(test_errors_codes_distinct_and_signs),
        TU_TEST(test_errors_unknown_codes_have_text),
        TU_END
    };
    return tu_run("errors", tests, argc, argv);
}
