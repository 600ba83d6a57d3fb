/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_clam_sscanf.c - clam_sscanf.c's sscanf and __isoc99_sscanf give
 * glibc's results: the same return value and the same stored fields, for
 * "%u" and "%u,%u" (the fast path) over edge cases (overflow, signs,
 * spaces, a missing or a bare comma, the end of the string) and 200,000
 * random strings, and for other formats (passed through); and this
 * executable's definitions are the ones the dynamic linker hands out, so
 * libclamav gets them.
 */
#define _GNU_SOURCE 1 /* RTLD_DEFAULT; sscanf is then the GNU symbol */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "filters/clam_sscanf.h"

/* the two names clam_sscanf.c defines, whatever stdio.h calls sscanf */
int gnu_sscanf(const char *s, const char *fmt, ...) __asm__("sscanf");
int c99_sscanf(const char *s, const char *fmt, ...) __asm__("__isoc99_sscanf");
int c99_vsscanf(const char *s, const char *fmt,
                va_list ap) __asm__("__isoc99_vsscanf");

#define SENT 0xdeadbeefu

static int
ref_gnu(const char *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsscanf(s, fmt, ap); /* glibc's: this file does not define it */
    va_end(ap);
    return n;
}

static int
ref_c99(const char *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = c99_vsscanf(s, fmt, ap);
    va_end(ap);
    return n;
}

/* both entry points against glibc for one string and both formats */
static void
check(const char *s)
{
    unsigned int a[4], b[4];
    int n, m;

    a[0] = a[1] = b[0] = b[1] = SENT;
    n = gnu_sscanf(s, "%u", &a[0]);
    m = ref_gnu(s, "%u", &b[0]);
    if (n != m || a[0] != b[0])
        fail_msg("sscanf(\"%s\", \"%%u\"): %d %u, glibc %d %u", s, n, a[0], m,
                 b[0]);
    a[0] = a[1] = b[0] = b[1] = SENT;
    n = c99_sscanf(s, "%u,%u", &a[0], &a[1]);
    m = ref_c99(s, "%u,%u", &b[0], &b[1]);
    if (n != m || a[0] != b[0] || a[1] != b[1])
        fail_msg("__isoc99_sscanf(\"%s\", \"%%u,%%u\"): %d %u %u, glibc %d "
                 "%u %u",
                 s, n, a[0], a[1], m, b[0], b[1]);
    a[0] = a[1] = b[0] = b[1] = SENT;
    n = gnu_sscanf(s, "%u,%u", &a[0], &a[1]);
    m = ref_gnu(s, "%u,%u", &b[0], &b[1]);
    assert_int_equal(n, m);
    assert_int_equal(a[0], b[0]);
    assert_int_equal(a[1], b[1]);
    a[0] = b[0] = SENT;
    n = c99_sscanf(s, "%u", &a[0]);
    m = ref_c99(s, "%u", &b[0]);
    assert_int_equal(n, m);
    assert_int_equal(a[0], b[0]);
}

static void
test_edge_cases(void **state)
{
    static const char *const cases[] = {
        "0",
        "7",
        "12)",
        "123&4",
        "007",
        "4294967295",
        "4294967296",
        "9223372036854775808",
        "10000000000000000000",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999",
        "1,2",
        "1,",
        "1,x",
        "1, 2",
        "1,+2",
        "1,-2",
        "1,,2",
        "1,2,3",
        "12>3",
        "2,99999999999999999999",
        "",
        " ",
        " 1",
        "\t1,2",
        "+1",
        "-1",
        "-",
        "x",
        "0x10",
        ",1",
        "3)&(4|5)>2,2",
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check(cases[i]);
}

static void
test_random(void **state)
{
    static const char alpha[] = "0123456789,+- x&|()>=<9";
    char s[16];
    unsigned int seed = 12345;
    int i, j, len;

    for (i = 0; i < 200000; i++) {
        len = (int) (rand_r(&seed) % 15);
        for (j = 0; j < len; j++)
            s[j] = alpha[rand_r(&seed) % (sizeof(alpha) - 1)];
        s[len] = '\0';
        check(s);
    }
}

/* other formats go to glibc unchanged */
static void
test_other_formats(void **state)
{
    unsigned int u = SENT, v = SENT;
    char w[8] = "";
    int d = 0, n = -1;

    assert_int_equal(gnu_sscanf("-12 ab", "%d %7s", &d, w), 2);
    assert_int_equal(d, -12);
    assert_string_equal(w, "ab");
    assert_int_equal(c99_sscanf("ff", "%x", &u), 1);
    assert_int_equal(u, 255);
    assert_int_equal(c99_sscanf("5:6", "%u:%u", &u, &v), 2);
    assert_int_equal(u, 5);
    assert_int_equal(v, 6);
    assert_int_equal(gnu_sscanf("42", "%u%n", &u, &n), 1);
    assert_int_equal(n, 2);
    assert_int_equal(c99_sscanf("9", "%2u", &u), 1);
    assert_int_equal(u, 9);
}

/* the names resolve to this executable's definitions for every object
 * that looks them up (libclamav imports both) */
static void
test_interposed(void **state)
{
    void *g = dlsym(RTLD_DEFAULT, "sscanf");
    void *c = dlsym(RTLD_DEFAULT, "__isoc99_sscanf");

    assert_ptr_equal(g, (void *) gnu_sscanf);
    assert_ptr_equal(c, (void *) c99_sscanf);
    assert_ptr_not_equal(g, dlsym(RTLD_NEXT, "sscanf"));
}

/* -S of bench_scan: glibc's for every call, same results */
static void
test_plain(void **state)
{
    clam_sscanf_setup(1);
    check("12,34");
    check("4294967296");
    check("1,x");
    clam_sscanf_setup(0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases),    cmocka_unit_test(test_random),
        cmocka_unit_test(test_other_formats), cmocka_unit_test(test_interposed),
        cmocka_unit_test(test_plain),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
