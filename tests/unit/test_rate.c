/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_rate.c - proxy/rate: per-client event counts in anvil-style
 * windows (the smtpd_client_*_rate_limit parameters).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "proxy/rate.h"

/* Counts per kind and per (service, client); the window starts at the
 * first event and a later event starts a new one. */
static void
test_windows(void **state)
{
    struct rate_tab *t = rate_new(60, 100);
    int full = 0;

    (void) state;
    assert_int_equal(rate_hit(t, "smtp", "192.0.2.1", RATE_MAIL, 1000, &full),
                     1);
    assert_int_equal(rate_hit(t, "smtp", "192.0.2.1", RATE_MAIL, 1010, &full),
                     2);
    assert_int_equal(rate_hit(t, "smtp", "192.0.2.1", RATE_RCPT, 1020, &full),
                     1);
    /* another client, another service: counted apart */
    assert_int_equal(rate_hit(t, "smtp", "192.0.2.2", RATE_MAIL, 1020, &full),
                     1);
    assert_int_equal(
        rate_hit(t, "submission", "192.0.2.1", RATE_MAIL, 1020, &full), 1);
    assert_int_equal(rate_peek(t, "smtp", "192.0.2.1", RATE_MAIL, 1030), 2);
    assert_int_equal(rate_peek(t, "smtp", "192.0.2.9", RATE_MAIL, 1030), 0);
    /* the window lasts 60 s from its first event: at 1060 still in it */
    assert_int_equal(rate_hit(t, "smtp", "192.0.2.1", RATE_MAIL, 1060, &full),
                     3);
    /* after it, a new window: every count starts again */
    assert_int_equal(rate_peek(t, "smtp", "192.0.2.1", RATE_MAIL, 1061), 0);
    assert_int_equal(rate_hit(t, "smtp", "192.0.2.1", RATE_RCPT, 1061, &full),
                     1);
    assert_int_equal(rate_peek(t, "smtp", "192.0.2.1", RATE_MAIL, 1061), 0);
    assert_int_equal(rate_count(t), 3);
    assert_int_equal(full, 0);
    rate_free(t);
    rate_free(NULL);
}

/* At most max clients: ended windows are swept out; a table full of live
 * ones counts no new client and says so once. */
static void
test_full(void **state)
{
    struct rate_tab *t = rate_new(10, 3);
    int full = 0;

    (void) state;
    assert_int_equal(rate_hit(t, "s", "a", RATE_CONN, 100, &full), 1);
    assert_int_equal(rate_hit(t, "s", "b", RATE_CONN, 101, &full), 1);
    assert_int_equal(rate_hit(t, "s", "c", RATE_CONN, 102, &full), 1);
    assert_int_equal(rate_hit(t, "s", "d", RATE_CONN, 103, &full), 0);
    assert_int_equal(full, 1);
    full = 0;
    assert_int_equal(rate_hit(t, "s", "e", RATE_CONN, 104, &full), 0);
    assert_int_equal(full, 0); /* said once */
    /* known clients are still counted */
    assert_int_equal(rate_hit(t, "s", "a", RATE_CONN, 105, &full), 2);
    /* a's window ended at 110: swept out, d is counted */
    assert_int_equal(rate_hit(t, "s", "d", RATE_CONN, 110.5, &full), 1);
    assert_int_equal(rate_count(t), 3);
    /* after a whole unit every ended window goes at the next event */
    assert_int_equal(rate_hit(t, "s", "e", RATE_CONN, 200, &full), 1);
    assert_int_equal(rate_count(t), 1);
    rate_free(t);
}

/* Many clients: each found again, nothing lost in the buckets. */
static void
test_many(void **state)
{
    struct rate_tab *t = rate_new(60, 5000);
    char a[32];

    (void) state;
    for (int i = 0; i < 4000; i++) {
        snprintf(a, sizeof(a), "10.0.%d.%d", i / 256, i % 256);
        assert_int_equal(rate_hit(t, "smtp", a, RATE_RCPT, 1, NULL), 1);
    }
    for (int i = 0; i < 4000; i++) {
        snprintf(a, sizeof(a), "10.0.%d.%d", i / 256, i % 256);
        assert_int_equal(rate_hit(t, "smtp", a, RATE_RCPT, 2, NULL), 2);
    }
    assert_int_equal(rate_count(t), 4000);
    rate_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_many),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
