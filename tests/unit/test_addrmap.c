/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_addrmap.c - virtual_alias_maps expansion: Postfix's keys
 * (user+ext@domain, user@domain, user for our domains, @domain), value
 * lists, @myorigin, "@domain" results, extension propagation, an address
 * that expands into itself, and the limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/addrmap.h"
#include "conf/lookup.h"
#include "lib/buf.h"

static struct buf *err, *got;
static struct lookup_dlist *ours;

static int
setup(void **state)
{
    char *mydest[] = {"ours.example", NULL};

    (void) state;
    err = buf_new(256, BUF_NOCAP);
    got = buf_new(256, BUF_NOCAP);
    ours = lookup_dlist_new(mydest, err);
    return ours ? 0 : -1;
}

static int
teardown(void **state)
{
    (void) state;
    lookup_dlist_free(ours);
    buf_free(err);
    buf_free(got);
    return 0;
}

static struct addrmap *
mk(const char *table, int propagate, size_t limit)
{
    char *specs[] = {(char *) table, NULL};
    struct addrmap_opts o = {"virtual_alias_maps",
                             ours,
                             "origin.example",
                             "+",
                             propagate,
                             limit,
                             limit,
                             90};
    struct addrmap *m;

    buf_reset(err);
    m = addrmap_new(specs, &o, err);
    if (m == NULL)
        fail_msg("addrmap_new: %s", buf_data(err));
    return m;
}

/* The expansion as "a b c", or "ERR: reason". */
static const char *
expand(const struct addrmap *m, const char *addr)
{
    char **v;
    size_t n;

    buf_reset(got);
    buf_reset(err);
    if (addrmap_expand(m, addr, &v, &n, err) < 0) {
        buf_printf(got, "ERR: %s", buf_data(err));
        return buf_data(got);
    }
    for (size_t i = 0; i < n; i++) {
        buf_printf(got, "%s%s", i ? " " : "", v[i]);
        free(v[i]);
    }
    assert_null(v[n]);
    free(v);
    return buf_data(got);
}

static void
test_keys(void **state)
{
    struct addrmap *m =
        mk("inline:{ info@virt.example=alice, "
           "{sales@virt.example=<Bob@x.example>, carol@y.example}, "
           "postmaster=root@ours.example, @catch.example=@other.example, "
           "full+tag@virt.example=tagged@z.example, "
           "@any.example=catchall@z.example }",
           1, 1000);

    (void) state;
    assert_string_equal(expand(m, "nobody@virt.example"),
                        "nobody@virt.example");
    assert_string_equal(expand(m, "info@virt.example"), "alice@origin.example");
    assert_string_equal(expand(m, "INFO@Virt.Example"), "alice@origin.example");
    assert_string_equal(expand(m, "sales@virt.example"),
                        "Bob@x.example carol@y.example");
    /* the extension: matched without it, put back into each result */
    assert_string_equal(expand(m, "info+news@virt.example"),
                        "alice+news@origin.example");
    assert_string_equal(expand(m, "full+tag@virt.example"), "tagged@z.example");
    assert_string_equal(expand(m, "full+other@virt.example"),
                        "full+other@virt.example");
    /* the user form only for our domains */
    assert_string_equal(expand(m, "postmaster@ours.example"),
                        "root@ours.example");
    assert_string_equal(expand(m, "postmaster@virt.example"),
                        "postmaster@virt.example");
    /* @domain to @domain keeps the user (an @domain key matches the
     * whole address, so the extension is part of the user) */
    assert_string_equal(expand(m, "joe+x@catch.example"),
                        "joe+x@other.example");
    assert_string_equal(expand(m, "joe+x@any.example"), "catchall@z.example");
    assert_int_equal(addrmap_listed(m, "Info+x@virt.example"), 1);
    assert_int_equal(addrmap_listed(m, "joe@catch.example"), 1);
    assert_int_equal(addrmap_listed(m, "nobody@virt.example"), 0);
    addrmap_free(m);
    m = mk("inline:{ info@virt.example=alice }", 0, 1000);
    assert_string_equal(expand(m, "info+news@virt.example"),
                        "alice@origin.example");
    addrmap_free(m);
}

static void
test_recursion(void **state)
{
    struct addrmap *m = mk("inline:{ a@v.example=b@v.example, "
                           "{b@v.example=c@v.example, d@v.example}, "
                           "{self@v.example=self@v.example, e@v.example}, "
                           "e@v.example=f@v.example, "
                           "l1@v.example=l2@v.example, "
                           "l2@v.example=l1@v.example, "
                           "{big@v.example=1@v.example 2@v.example 3@v.example "
                           "4@v.example}, "
                           "long@v.example=" /* 97 bytes, over 90 */
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@v.example, "
                           "{empty@v.example=,} }",
                           1, 3);

    (void) state;
    assert_string_equal(expand(m, "a@v.example"), "c@v.example d@v.example");
    /* an address expands into itself once, then stays */
    assert_string_equal(expand(m, "self@v.example"),
                        "self@v.example f@v.example");
    assert_string_equal(expand(m, "l1@v.example"),
                        "ERR: unreasonable virtual_alias_maps map nesting "
                        "for l1@v.example");
    assert_string_equal(expand(m, "big@v.example"),
                        "ERR: unreasonable virtual_alias_maps map expansion "
                        "size for big@v.example");
    assert_string_equal(expand(m, "long@v.example"),
                        "ERR: unreasonable virtual_alias_maps result "
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@v.example...");
    assert_string_equal(expand(m, "empty@v.example"),
                        "ERR: virtual_alias_maps lookup of empty@v.example "
                        "returns non-address result \",\"");
    addrmap_free(m);
    /* no tables: the address itself */
    m = mk(NULL, 1, 3);
    assert_true(addrmap_empty(m));
    assert_string_equal(expand(m, "a@v.example"), "a@v.example");
    assert_int_equal(addrmap_listed(m, "a@v.example"), 0);
    addrmap_free(m);
}

static void
test_bad_table(void **state)
{
    char *specs[] = {"hash:/nonexistent/virtual", NULL};
    struct addrmap_opts o = {
        "virtual_alias_maps", ours, "o.example", "", 1, 10, 10, 100};

    (void) state;
    buf_reset(err);
    assert_null(addrmap_new(specs, &o, err));
    assert_non_null(
        strstr(buf_data(err), "virtual_alias_maps: hash:/nonexistent/virtual"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_recursion),
        cmocka_unit_test(test_bad_table),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
