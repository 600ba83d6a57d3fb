/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_buf.c - the growable byte string: caps, consume and compaction,
 * printf over the cap, reserve/commit, find.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"

static void
test_append_grow(void **state)
{
    struct buf *b = buf_new(0, BUF_NOCAP);
    int i;

    assert_int_equal(buf_len(b), 0);
    assert_string_equal(buf_data(b), "");
    for (i = 0; i < 1000; i++)
        assert_int_equal(buf_append(b, "0123456789", 10), 0);
    assert_int_equal(buf_len(b), 10000);
    assert_memory_equal(buf_data(b) + 9990, "0123456789", 10);
    assert_int_equal(buf_data(b)[10000], '\0'); /* always NUL-terminated */
    assert_int_equal(buf_puts(b, "x"), 0);
    assert_int_equal(buf_putc(b, 'y'), 0);
    assert_memory_equal(buf_data(b) + 10000, "xy", 3);
    /* binary bytes */
    buf_reset(b);
    assert_int_equal(buf_append(b, "a\0b", 3), 0);
    assert_int_equal(buf_len(b), 3);
    assert_memory_equal(buf_data(b), "a\0b", 3);
    assert_int_equal(buf_append(b, "", 0), 0);
    assert_int_equal(buf_len(b), 3);
    buf_free(b);
    buf_free(NULL);
}

static void
test_cap(void **state)
{
    struct buf *b = buf_new(4, 10);

    assert_int_equal(buf_puts(b, "0123456789"), 0); /* exactly the cap */
    assert_int_equal(buf_putc(b, 'x'), -1);
    assert_int_equal(buf_len(b), 10);
    assert_string_equal(buf_data(b), "0123456789");
    buf_reset(b);
    assert_int_equal(buf_puts(b, "abcdef"), 0);
    assert_int_equal(buf_append(b, "12345", 5), -1); /* all or nothing */
    assert_string_equal(buf_data(b), "abcdef");
    assert_int_equal(buf_append(b, "1234", 4), 0);
    assert_string_equal(buf_data(b), "abcdef1234");
    assert_int_equal(buf_append(b, "", (size_t) -1), -1); /* no overflow */
    assert_int_equal(buf_set(b, "0123456789A", 11), -1);
    assert_int_equal(buf_len(b), 0); /* set = reset + append */
    assert_int_equal(buf_sets(b, "new"), 0);
    assert_string_equal(buf_data(b), "new");
    buf_free(b);

    b = buf_new(100, 0); /* cap 0: nothing fits */
    assert_int_equal(buf_putc(b, 'a'), -1);
    assert_int_equal(buf_append(b, "", 0), 0);
    buf_free(b);
}

static void
test_printf(void **state)
{
    struct buf *b = buf_new(8, 20);

    assert_int_equal(buf_printf(b, "%d-%s", 250, "ok"), 0);
    assert_string_equal(buf_data(b), "250-ok");
    assert_int_equal(buf_printf(b, " %s", "a much too long string"), -1);
    assert_string_equal(buf_data(b), "250-ok"); /* unchanged */
    assert_int_equal(buf_len(b), 6);
    assert_int_equal(buf_printf(b, "%014d", 7), 0); /* 20 exactly */
    assert_int_equal(buf_len(b), 20);
    assert_string_equal(buf_data(b), "250-ok00000000000007");
    buf_free(b);

    b = buf_new(4, BUF_NOCAP);
    assert_int_equal(buf_printf(b, "%s %s %05d", "grow", "past initial", 42),
                     0);
    assert_string_equal(buf_data(b), "grow past initial 00042");
    buf_free(b);

    /* It fits the memory there is but not the cap: refused, unchanged. */
    b = buf_new(16, 20);
    assert_int_equal(buf_puts(b, "0123456789abcdefg"), 0); /* 17, size 32 */
    assert_int_equal(buf_printf(b, "%s", "ABCDEF"), -1);
    assert_int_equal(buf_len(b), 17);
    assert_string_equal(buf_data(b), "0123456789abcdefg");
    assert_int_equal(buf_printf(b, "%s", "ABC"), 0); /* 20 exactly */
    assert_string_equal(buf_data(b), "0123456789abcdefgABC");
    buf_free(b);

    /* Nothing to format: the same rules; "%%" is still formatted. */
    b = buf_new(4, 10);
    assert_int_equal(buf_printf(b, "250 Ok"), 0);
    assert_int_equal(buf_printf(b, " toolong"), -1);
    assert_string_equal(buf_data(b), "250 Ok");
    assert_int_equal(buf_printf(b, " 5%%"), 0);
    assert_string_equal(buf_data(b), "250 Ok 5%");
    buf_free(b);
}

static void
test_consume(void **state)
{
    struct buf *b = buf_new(16, 16);
    char *base;

    assert_int_equal(buf_puts(b, "EHLO x\r\nQUIT\r\n"), 0); /* 14 */
    buf_consume(b, 8);
    assert_int_equal(buf_len(b), 6);
    assert_string_equal(buf_data(b), "QUIT\r\n");
    assert_int_equal(buf_find(b, '\n'), 5);
    /* appending past the end of storage compacts instead of failing */
    base = b->base;
    assert_int_equal(buf_puts(b, "NOOP\r\n"), 0);
    assert_string_equal(buf_data(b), "QUIT\r\nNOOP\r\n");
    assert_int_equal(b->off, 0);
    assert_ptr_equal(b->base, base);            /* no reallocation needed */
    assert_int_equal(buf_puts(b, "12345"), -1); /* 12 + 5 > 16 */
    buf_consume(b, 100);                        /* more than there is: empty */
    assert_int_equal(buf_len(b), 0);
    assert_string_equal(buf_data(b), "");
    assert_int_equal(buf_puts(b, "0123456789abcdef"), 0);

    buf_truncate(b, 4);
    assert_string_equal(buf_data(b), "0123");
    buf_truncate(b, 10); /* longer: no-op */
    assert_int_equal(buf_len(b), 4);
    buf_consume(b, 1);
    buf_truncate(b, 2);
    assert_string_equal(buf_data(b), "12");
    buf_free(b);
}

static void
test_reserve_commit(void **state)
{
    struct buf *b = buf_new(4, 32);
    char *p;

    assert_int_equal(buf_puts(b, "ab"), 0);
    p = buf_reserve(b, 20);
    assert_non_null(p);
    assert_ptr_equal(p, buf_data(b) + 2);
    memcpy(p, "cdefgh", 6);
    buf_commit(b, 6); /* less than reserved */
    assert_int_equal(buf_len(b), 8);
    assert_string_equal(buf_data(b), "abcdefgh");
    assert_null(buf_reserve(b, 25)); /* 8 + 25 > 32 */
    assert_string_equal(buf_data(b), "abcdefgh");
    p = buf_reserve(b, 24);
    assert_non_null(p);
    buf_commit(b, 0);
    assert_int_equal(buf_len(b), 8);
    buf_free(b);
}

static void
test_find(void **state)
{
    struct buf *b = buf_new(16, BUF_NOCAP);

    assert_int_equal(buf_find(b, 'x'), -1);
    assert_int_equal(buf_append(b, "a\0b\nc\n", 6), 0);
    assert_int_equal(buf_find(b, '\n'), 3);
    assert_int_equal(buf_find(b, '\0'), 1); /* the trailing NUL is not data */
    assert_int_equal(buf_find(b, 'z'), -1);
    buf_consume(b, 4);
    assert_int_equal(buf_find(b, '\n'), 1);
    assert_int_equal(buf_find(b, 'a'), -1);
    buf_reset(b);
    assert_int_equal(buf_find(b, '\0'), -1);
    buf_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grow),    cmocka_unit_test(test_cap),
        cmocka_unit_test(test_printf),         cmocka_unit_test(test_consume),
        cmocka_unit_test(test_reserve_commit), cmocka_unit_test(test_find),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
