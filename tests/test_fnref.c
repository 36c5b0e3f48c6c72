/* Function references across address layouts (src/fnref.c): a static function and
 * a library function survive the trip, even into a fresh exec of the program (its
 * own ASLR layout); a reference to another binary or to non-code is RP_EFNREF.
 * Built twice: tests/test_fnref (the program has a GNU build-id) and
 * tests/test_fnref_nobid (linked with --build-id=none, TEST_NO_BUILD_ID: the
 * program is identified by the contents of its loadable segments). */
#include "fnref.h"
#include "testutil.h"

#include <dlfcn.h>
#include <stdint.h>
#include <unistd.h>

static int triple(int x)
{
    return 3 * x;
}

int fnref_data_object = 5;

static void test_fnref_static_function_round_trip(void)
{
    rp__fnref ref;
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)triple, &ref), RP_OK);
    CU_ASSERT_STRING_EQUAL(ref.object, ""); /* the main program */
    rp__anyfn fn = NULL;
    char why[512];
    CU_ASSERT_EQUAL_FATAL(rp__fnref_resolve(&ref, &fn, why, sizeof why), RP_OK);
    CU_ASSERT_PTR_EQUAL(fn, (rp__anyfn)triple);
    CU_ASSERT_EQUAL(((int (*)(int))fn)(4), 12);
}

static void test_fnref_library_function_round_trip(void)
{
    rp__fnref ref;
    rp__anyfn q = (rp__anyfn)qsort;
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make(q, &ref), RP_OK);
    /* a shared library (libc, or a sanitizer runtime that interposes qsort) */
    CU_ASSERT_PTR_NOT_NULL(strstr(ref.object, ".so"));
    rp__anyfn fn = NULL;
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ref, &fn, NULL, 0), RP_OK);
    CU_ASSERT_PTR_EQUAL(fn, q);
}

static void test_fnref_rejects_non_code(void)
{
    rp__fnref ref;
    CU_ASSERT_EQUAL(rp__fnref_make((rp__anyfn)(uintptr_t)&fnref_data_object, &ref),
                    RP_EFNREF);
    CU_ASSERT_EQUAL(rp__fnref_make(NULL, &ref), RP_EINVAL);
    CU_ASSERT_EQUAL(rp__fnref_make((rp__anyfn)(uintptr_t)16, &ref), RP_EFNREF);
}

static void test_fnref_identity_of_the_program(void)
{
    rp__fnref ref;
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)triple, &ref), RP_OK);
#ifdef TEST_NO_BUILD_ID
    CU_ASSERT_EQUAL(ref.idkind, RP__FNREF_CONTENTS);
    CU_ASSERT_EQUAL(ref.idlen, RP__FNREF_HASHLEN);
#else
    CU_ASSERT_EQUAL(ref.idkind, RP__FNREF_BUILD_ID);
    CU_ASSERT_TRUE(ref.idlen >= 8);
#endif
    char desc[600];
    rp__fnref_format(&ref, desc, sizeof desc);
    printf("\n    %s ", desc);
}

/* Another program: the same name (the main program is always ""), the same offset,
 * another identity. Without a build-id that is what two different programs linked
 * with --build-id=none look like: they must not match by name. */
static void test_fnref_other_binary_refused(void)
{
    rp__fnref ref;
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)triple, &ref), RP_OK);
    ref.id[0] ^= 0xff;
    rp__anyfn fn = NULL;
    char why[512] = "";
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ref, &fn, why, sizeof why), RP_EFNREF);
    CU_ASSERT_PTR_NULL(fn);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "same binary"));
    /* the right identity under the other kind is another program too */
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)triple, &ref), RP_OK);
    ref.idkind = ref.idkind == RP__FNREF_BUILD_ID ? RP__FNREF_CONTENTS : RP__FNREF_BUILD_ID;
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ref, &fn, why, sizeof why), RP_EFNREF);
    CU_ASSERT_PTR_NULL(fn);
}

static void test_fnref_offset_outside_code_refused(void)
{
    rp__fnref ref;
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)triple, &ref), RP_OK);
    ref.offset += (uint64_t)1 << 40;
    rp__anyfn fn = NULL;
    char why[512] = "";
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ref, &fn, why, sizeof why), RP_EFNREF);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "not code"));
}

/* The reference travels as hex to a new exec of this program, which resolves it in
 * its own layout, calls it, and prints the result and the address it found. */
static void to_hex(const void *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", ((const unsigned char *)p)[i]);
}

static int resolve_child(const char *hex)
{
    rp__fnref ref;
    if (strlen(hex) != 2 * sizeof ref)
        return 2;
    for (size_t i = 0; i < sizeof ref; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        ((unsigned char *)&ref)[i] = (unsigned char)v;
    }
    rp__anyfn fn;
    char why[512];
    if (rp__fnref_resolve(&ref, &fn, why, sizeof why) != RP_OK) {
        printf("EFNREF %s\n", why);
        return 1;
    }
    printf("%d %p\n", ((int (*)(int))fn)(14), (void *)(uintptr_t)fn);
    return 0;
}

/* A module unloaded, another loaded (often at the same address, its task at the
 * same offset): the references made and resolved before do not stand for it. */
static void test_fnref_module_unloaded_and_another_loaded(void)
{
    void *ha, *hb;
    tu_dlmod_fn fa = tu_dlmod_open("a", &ha);
    rp__fnref ra, rb;
    rp__anyfn fn = NULL;
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)fa, &ra), RP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(ra.object, "libdlmod_a.so"));
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ra, &fn, NULL, 0), RP_OK);
    CU_ASSERT_PTR_EQUAL(fn, (rp__anyfn)fa);
    uintptr_t a_at = (uintptr_t)fa;
    CU_ASSERT_EQUAL_FATAL(dlclose(ha), 0);
    /* a is gone: its reference names no loaded object any more */
    char why[600];
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ra, &fn, why, sizeof why), RP_EFNREF);
    tu_dlmod_fn fb = tu_dlmod_open("b", &hb);
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)fb, &rb), RP_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(rb.object, "libdlmod_b.so"));
    CU_ASSERT_FALSE(rb.idlen == ra.idlen && memcmp(rb.id, ra.id, ra.idlen) == 0);
    CU_ASSERT_EQUAL(rp__fnref_resolve(&rb, &fn, NULL, 0), RP_OK);
    CU_ASSERT_PTR_EQUAL(fn, (rp__anyfn)fb);
    CU_ASSERT_EQUAL(rp__fnref_resolve(&ra, &fn, NULL, 0), RP_EFNREF);
    long x = 5, y = 0;
    CU_ASSERT_EQUAL(fb(&x, &y, NULL), 0);
    CU_ASSERT_EQUAL(y, 2005);
    printf("\n    b loaded %s a's address ", (uintptr_t)fb == a_at ? "at" : "away from");
    dlclose(hb);
}

static void test_fnref_across_exec(void)
{
    rp__fnref ref;
    memset(&ref, 0, sizeof ref);
    CU_ASSERT_EQUAL_FATAL(rp__fnref_make((rp__anyfn)triple, &ref), RP_OK);
    char hex[2 * sizeof ref + 1];
    to_hex(&ref, sizeof ref, hex);
    char cmd[2 * sizeof ref + 64];
    snprintf(cmd, sizeof cmd, "/proc/%d/exe --resolve %s", (int)getpid(), hex);
    FILE *f = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[600] = "";
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
    CU_ASSERT_EQUAL(pclose(f), 0);
    int v = 0;
    void *addr = NULL;
    CU_ASSERT_EQUAL(sscanf(line, "%d %p", &v, &addr), 2);
    CU_ASSERT_EQUAL(v, 42);
    printf("\n    here %p, in the new process %p ", (void *)(uintptr_t)triple, addr);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--resolve") == 0)
        return resolve_child(argv[2]);
    static const tu_test tests[] = {
        TU_TEST(test_fnref_static_function_round_trip),
        TU_TEST(test_fnref_library_function_round_trip),
        TU_TEST(test_fnref_rejects_non_code),
        TU_TEST(test_fnref_identity_of_the_program),
        TU_TEST(test_fnref_other_binary_refused),
        TU_TEST(test_fnref_offset_outside_code_refused),
        TU_TEST(test_fnref_across_exec),
        TU_TEST(test_fnref_module_unloaded_and_another_loaded),
        TU_END
    };
#ifdef TEST_NO_BUILD_ID
    return tu_run("fnref_nobid", tests, argc, argv);
#else
    return tu_run("fnref", tests, argc, argv);
#endif
}
