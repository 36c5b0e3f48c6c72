/* Seconds from the environment (src/envtime.c): one rule for every variable. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "internal.h"

#define VAR "RP_TEST_SECONDS"

static double read_as(const char *value, bool never_ok)
{
    if (value)
        setenv(VAR, value, 1);
    else
        unsetenv(VAR);
    return rp__env_seconds(VAR, 42.0, never_ok);
}

static void test_envtime_numbers(void)
{
    CU_ASSERT_EQUAL(read_as("30", true), 30.0);
    CU_ASSERT_EQUAL(read_as("0.5", false), 0.5);
    CU_ASSERT_EQUAL(read_as("1e3", true), 1000.0);
    CU_ASSERT_EQUAL(read_as(" 7", false), 7.0); /* strtod skips leading space */
}

static void test_envtime_unset_or_empty_is_the_default(void)
{
    CU_ASSERT_EQUAL(read_as(NULL, true), 42.0);
    CU_ASSERT_EQUAL(read_as("", true), 42.0);
}

static void test_envtime_no_limit_words(void)
{
    const char *words[] = { "0", "0.0", "inf", "INF", "infinity", "off", "Off", "never" };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        CU_ASSERT(isinf(read_as(words[i], true)));
        CU_ASSERT_EQUAL(read_as(words[i], false), 42.0); /* no "no limit" here */
    }
}

static void test_envtime_unusable_values_give_the_default(void)
{
    const char *bad[] = { "10s", "-1", "-0.5", "nan", "abc", "1e999", "5 ", "0x", "--" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CU_ASSERT_EQUAL(read_as(bad[i], true), 42.0);
        CU_ASSERT_EQUAL(read_as(bad[i], false), 42.0);
    }
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_envtime_numbers),
        TU_TEST(test_envtime_unset_or_empty_is_the_default),
        TU_TEST(test_envtime_no_limit_words),
        TU_TEST(test_envtime_unusable_values_give_the_default),
        TU_END
    };
    return tu_run("envtime", tests, argc, argv);
}
