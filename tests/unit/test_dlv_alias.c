/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_dlv_alias.c - alias expansion of the local delivery agent:
 * Postfix's aliases(5) items, recursion, self references, loops,
 * :include:, the command and file permissions, extensions, and the
 * Delivered-To: fields of a header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/lookup.h"
#include "lib/buf.h"
#include "queue/dlv_alias.h"

static struct buf *text, *got;
static struct lookup_dlist *mydest;

static int
setup(void **state)
{
    char *l[] = {"localhost", "ours.example", NULL};

    (void) state;
    text = buf_new(256, BUF_NOCAP);
    got = buf_new(256, BUF_NOCAP);
    mydest = lookup_dlist_new(l, text);
    return mydest ? 0 : -1;
}

static int
teardown(void **state)
{
    (void) state;
    lookup_dlist_free(mydest);
    buf_free(text);
    buf_free(got);
    return 0;
}

/* "kind:what[<via] ..." or "BOUNCE dsn text" / "DEFER dsn text". */
static const char *
expand(const struct dlv_alias_opts *o, const char *rcpt, char **delivered,
       size_t nd)
{
    static const char *const kinds[] = {"mbox", "fwd", "cmd", "file"};
    struct dlv_alias_target *t;
    size_t n;
    char dsn[16];
    enum dlv_alias_result r;

    buf_reset(got);
    buf_reset(text);
    r = dlv_alias_expand(o, rcpt, delivered, nd, &t, &n, dsn, text);
    if (r != DLV_ALIAS_OK) {
        buf_printf(got, "%s %s %s", r == DLV_ALIAS_BOUNCE ? "BOUNCE" : "DEFER",
                   dsn, buf_data(text));
        return buf_data(got);
    }
    for (size_t i = 0; i < n; i++) {
        buf_printf(got, "%s%s:%s", i ? " " : "", kinds[t[i].kind], t[i].what);
        if (t[i].kind == DLV_ALIAS_MAILBOX)
            buf_printf(got, "(%s)", t[i].user);
        if (t[i].via)
            buf_printf(got, "<%s", t[i].via);
    }
    dlv_alias_free(t, n);
    return buf_data(got);
}

static void
test_expand(void **state)
{
    char dir[] = "/tmp/test_dlv_alias.XXXXXX", inc[600], spec[1400];
    struct lookup_table *t;
    struct dlv_alias_opts o;
    FILE *f;

    (void) state;
    assert_non_null(mkdtemp(dir));
    snprintf(inc, sizeof(inc), "%s/list", dir);
    f = fopen(inc, "w");
    assert_non_null(f);
    fputs("# members\nann, bea@remote.example\n\"|/bin/cmd\"\n", f);
    fclose(f);
    snprintf(spec, sizeof(spec),
             "inline:{ root=alice, {team=alice, Bob@Ours.Example, "
             "carol@remote.example}, {self=self, dave}, a=b, b=a, "
             "{pipe=\"|/usr/bin/procmail -a x\"}, file=/var/mail/f, "
             "mdir=/var/md/, {inc=:include:%s}, {rel=:include:list}, "
             "{missing=:include:%s/nope}, deep1=deep2, list=ann, "
             "{quoted=\"a b\"@remote.example, <ann>}, {empty=,} }",
             inc, dir);
    t = lookup_open(spec, text);
    assert_non_null(t);
    memset(&o, 0, sizeof(o));
    o.maps = &t;
    o.nmaps = 1;
    o.mydest = mydest;
    o.myorigin = "ours.example";
    o.delim = "+";
    o.cmd_alias = o.file_alias = 1;

    assert_string_equal(expand(&o, "nobody@localhost", NULL, 0),
                        "mbox:nobody@localhost(nobody)");
    assert_string_equal(expand(&o, "Nobody+Ext@localhost", NULL, 0),
                        "mbox:Nobody+Ext@localhost(nobody)");
    assert_string_equal(expand(&o, "ROOT@localhost", NULL, 0),
                        "mbox:alice@ours.example(alice)<ROOT@localhost");
    assert_string_equal(expand(&o, "team@localhost", NULL, 0),
                        "mbox:alice@ours.example(alice)<team@localhost "
                        "mbox:Bob@Ours.Example(bob)<team@localhost "
                        "fwd:carol@remote.example<team@localhost");
    /* an extension: the alias without it, not put back by default */
    assert_string_equal(expand(&o, "team+x@localhost", NULL, 0),
                        "mbox:alice@ours.example(alice)<team+x@localhost "
                        "mbox:Bob@Ours.Example(bob)<team+x@localhost "
                        "fwd:carol@remote.example<team+x@localhost");
    o.propagate = 1;
    assert_string_equal(expand(&o, "root+x@localhost", NULL, 0),
                        "mbox:alice+x@ours.example(alice)<root+x@localhost");
    o.propagate = 0;
    assert_string_equal(expand(&o, "self@localhost", NULL, 0),
                        "mbox:self@ours.example(self)<self@localhost "
                        "mbox:dave@ours.example(dave)<self@localhost");
    assert_string_equal(expand(&o, "a@localhost", NULL, 0),
                        "mbox:a@ours.example(a)<b@ours.example");
    assert_string_equal(expand(&o, "pipe@localhost", NULL, 0),
                        "cmd:/usr/bin/procmail -a x<pipe@localhost");
    assert_string_equal(expand(&o, "file@localhost", NULL, 0),
                        "file:/var/mail/f<file@localhost");
    assert_string_equal(expand(&o, "mdir@localhost", NULL, 0),
                        "file:/var/md/<mdir@localhost");
    assert_string_equal(expand(&o, "quoted@localhost", NULL, 0),
                        "fwd:a b@remote.example<quoted@localhost "
                        "mbox:ann@ours.example(ann)<quoted@localhost");
    /* :include: (commands there are not allowed unless said) */
    assert_string_equal(expand(&o, "inc@localhost", NULL, 0),
                        "BOUNCE 5.7.1 mail to command is restricted");
    o.cmd_include = 1;
    assert_string_equal(expand(&o, "inc@localhost", NULL, 0),
                        "mbox:ann@ours.example(ann)<inc@localhost "
                        "fwd:bea@remote.example<inc@localhost "
                        "cmd:/bin/cmd<inc@localhost");
    assert_string_equal(expand(&o, "rel@localhost", NULL, 0),
                        "BOUNCE 5.3.5 :include:list is not an absolute path");
    buf_reset(got);
    buf_printf(got,
               "DEFER 4.3.0 cannot open include file %s/nope: No such "
               "file or directory",
               dir);
    {
        char want[800];

        snprintf(want, sizeof(want), "%s", buf_data(got));
        assert_string_equal(expand(&o, "missing@localhost", NULL, 0), want);
    }
    /* an include file over DLV_ALIAS_INCLUDE bytes: deferred, said */
    {
        char path[700], want[800];
        FILE *big;

        snprintf(path, sizeof(path), "%s/nope", dir);
        big = fopen(path, "w");
        assert_non_null(big);
        for (size_t k = 0; k <= DLV_ALIAS_INCLUDE / 16; k++)
            fputs("ann@ours.example\n", big);
        fclose(big);
        snprintf(want, sizeof(want),
                 "DEFER 4.3.0 cannot read include file %s: too large", path);
        assert_string_equal(expand(&o, "missing@localhost", NULL, 0), want);
        unlink(path);
    }
    /* permissions */
    o.cmd_alias = 0;
    assert_string_equal(expand(&o, "pipe@localhost", NULL, 0),
                        "BOUNCE 5.7.1 mail to command is restricted");
    o.file_alias = 0;
    assert_string_equal(expand(&o, "file@localhost", NULL, 0),
                        "BOUNCE 5.7.1 mail to file is restricted");
    /* Delivered-To: loops, at any level */
    {
        char *d1[] = {"Root@LocalHost"};
        char *d2[] = {"alice@ours.example"};

        assert_string_equal(expand(&o, "root@localhost", d1, 1),
                            "BOUNCE 5.4.6 mail forwarding loop for "
                            "root@localhost");
        assert_string_equal(expand(&o, "root@localhost", d2, 1),
                            "BOUNCE 5.4.6 mail forwarding loop for "
                            "alice@ours.example");
    }
    /* a value with no item */
    assert_string_equal(expand(&o, "empty@localhost", NULL, 0),
                        "DEFER 4.3.5 alias expansion of empty@localhost gives "
                        "no address (alias_maps; /dev/null discards)");
    /* a remote recipient is forwarded as it is */
    assert_string_equal(expand(&o, "x@remote.example", NULL, 0),
                        "fwd:x@remote.example");
    lookup_free(t);
    unlink(inc);
    assert_int_equal(rmdir(dir), 0);
}

/* deeper than DLV_ALIAS_DEPTH, and more than DLV_ALIAS_TARGETS */
static void
test_limits(void **state)
{
    struct buf *spec = buf_new(4096, BUF_NOCAP);
    struct lookup_table *t;
    struct dlv_alias_opts o;

    (void) state;
    buf_puts(spec, "inline:{ ");
    for (int i = 0; i <= DLV_ALIAS_DEPTH + 1; i++)
        buf_printf(spec, "d%d=d%d, ", i, i + 1);
    buf_puts(spec, "{wide=");
    for (int i = 0; i <= DLV_ALIAS_TARGETS; i++)
        buf_printf(spec, "%su%d@remote.example", i ? " " : "", i);
    buf_puts(spec, "} }");
    t = lookup_open(buf_data(spec), text);
    assert_non_null(t);
    memset(&o, 0, sizeof(o));
    o.maps = &t;
    o.nmaps = 1;
    o.mydest = mydest;
    o.myorigin = "localhost";
    o.delim = "";
    assert_string_equal(expand(&o, "d0@localhost", NULL, 0),
                        "BOUNCE 5.4.6 alias database loop for "
                        "d101@localhost");
    assert_string_equal(expand(&o, "wide@localhost", NULL, 0),
                        "BOUNCE 5.4.6 alias expansion of more than 1000 "
                        "addresses");
    lookup_free(t);
    buf_free(spec);
}

static void
test_delivered(void **state)
{
    static const char head[] =
        "Received: x\r\nDelivered-To: a@example.org\r\n"
        "delivered-to:   B@Example.org  \r\nX-Delivered-To: c@x\r\n"
        "Delivered-To:\r\n\r\nDelivered-To: body@x\r\n";
    char **v;
    size_t n = dlv_alias_delivered(head, sizeof(head) - 1, &v);

    (void) state;
    assert_int_equal(n, 2);
    assert_string_equal(v[0], "a@example.org");
    assert_string_equal(v[1], "B@Example.org");
    assert_null(v[2]);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    n = dlv_alias_delivered("Delivered-To: a\nSubject: x", 25, &v);
    assert_int_equal(n, 1);
    assert_string_equal(v[0], "a");
    free(v[0]);
    free(v);
    n = dlv_alias_delivered("", 0, &v);
    assert_int_equal(n, 0);
    assert_null(v[0]);
    free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_delivered),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
