/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_smtpd_parse.c - SMTP command lines, MAIL/RCPT paths, addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/smtpd_parse.h"

static const char SYN_MAIL[] = "5.5.2 Syntax: MAIL FROM:<address>";
static const char SYN_RCPT[] = "5.5.2 Syntax: RCPT TO:<address>";
static const char BAD_FROM[] = "5.1.7 Bad sender address syntax";
static const char BAD_TO[] = "5.1.3 Bad recipient address syntax";
static const char TOO_MANY[] = "5.5.4 Too many parameters";
static const char BAD_PARAM[] = "5.5.4 Invalid parameter syntax";

/* Parse a command held in a writable copy; the copy stays alive in *buf. */
static int
cmd(const char *s, size_t len, struct smtpd_cmd *c, char **buf)
{
    *buf = malloc(len + 1);
    memcpy(*buf, s, len);
    (*buf)[len] = '\0';
    return smtpd_parse_cmd(*buf, len, c);
}

static void
check_verb(const char *line, enum smtpd_verb want, const char *arg)
{
    struct smtpd_cmd c;
    char *b;

    assert_int_equal(cmd(line, strlen(line), &c, &b), 0);
    assert_int_equal(c.verb, want);
    assert_string_equal(c.arg, arg);
    free(b);
}

static void
test_verbs(void **state)
{
    static const struct {
        const char *name;
        enum smtpd_verb verb;
    } v[] = {
        {"EHLO", SMTPD_V_EHLO}, {"HELO", SMTPD_V_HELO},
        {"MAIL", SMTPD_V_MAIL}, {"RCPT", SMTPD_V_RCPT},
        {"DATA", SMTPD_V_DATA}, {"RSET", SMTPD_V_RSET},
        {"NOOP", SMTPD_V_NOOP}, {"QUIT", SMTPD_V_QUIT},
        {"VRFY", SMTPD_V_VRFY}, {"EXPN", SMTPD_V_EXPN},
        {"HELP", SMTPD_V_HELP}, {"STARTTLS", SMTPD_V_STARTTLS},
        {"AUTH", SMTPD_V_AUTH}, {"BDAT", SMTPD_V_BDAT},
        {"ETRN", SMTPD_V_ETRN},
    };
    struct smtpd_cmd c;
    char line[64], *b;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        check_verb(v[i].name, v[i].verb, "");
        /* lower case and mixed case */
        for (size_t j = 0; v[i].name[j] != '\0'; j++)
            line[j] = (char) (v[i].name[j] | 0x20);
        line[strlen(v[i].name)] = '\0';
        check_verb(line, v[i].verb, "");
        line[0] = v[i].name[0];
        snprintf(line + strlen(v[i].name), sizeof(line) - 8, " x y");
        check_verb(line, v[i].verb, "x y");
    }

    assert_int_equal(cmd("eHlO  mx.example.org \t ", 23, &c, &b), 0);
    assert_int_equal(c.verb, SMTPD_V_EHLO);
    assert_int_equal(c.name_len, 4);
    assert_memory_equal(c.name, "eHlO", 4);
    assert_string_equal(c.arg, "mx.example.org");
    free(b);

    check_verb("HELO\tfoo", SMTPD_V_HELO, "foo");
    check_verb("MAIL FROM:<a@b> SIZE=10", SMTPD_V_MAIL, "FROM:<a@b> SIZE=10");
    check_verb("MAILFROM:<a@b>", SMTPD_V_UNKNOWN, "");
    check_verb("EHLOX", SMTPD_V_UNKNOWN, "");
    check_verb("XCLIENT ADDR=1.2.3.4", SMTPD_V_UNKNOWN, "ADDR=1.2.3.4");
    check_verb("", SMTPD_V_UNKNOWN, "");
    check_verb("   ", SMTPD_V_UNKNOWN, "");
    check_verb("HEL", SMTPD_V_UNKNOWN, "");
    /* 8-bit bytes are no control characters (AUTH data, HELO junk). */
    check_verb("HELO caf\xc3\xa9", SMTPD_V_HELO, "caf\xc3\xa9");

    assert_int_equal(cmd("HELO", 4, &c, &b), 0);
    assert_int_equal(c.name_len, 4);
    free(b);
}

static void
test_cmd_control(void **state)
{
    struct smtpd_cmd c;
    char *b;

    assert_int_equal(cmd("HELO a\0b", 8, &c, &b), -1);
    free(b);
    assert_int_equal(cmd("\0", 1, &c, &b), -1);
    free(b);
    assert_int_equal(cmd("MAIL FROM:<a@b>\r", 16, &c, &b), -1);
    free(b);
    assert_int_equal(cmd("NOOP \x1b[2J", 9, &c, &b), -1);
    free(b);
    assert_int_equal(cmd("NOOP \x7f", 6, &c, &b), -1);
    free(b);
    assert_int_equal(cmd("RCPT TO:<a@b>\nQUIT", 18, &c, &b), -1);
    free(b);
}

/* Parse "MAIL <arg>" or "RCPT <arg>"; returns the result, keeps the copy. */
static int
path(const char *arg, int is_rcpt, struct smtpd_path *p, const char **why,
     char **b)
{
    *b = strdup(arg);
    *why = "unset";
    return smtpd_parse_path(*b, is_rcpt ? "TO:" : "FROM:", is_rcpt, p, why);
}

static void
path_ok(const char *arg, int is_rcpt, const char *addr)
{
    struct smtpd_path p;
    const char *why;
    char *b;

    if (path(arg, is_rcpt, &p, &why, &b) != 0)
        fail_msg("[%s] refused: %s", arg, why);
    assert_string_equal(p.addr, addr);
    free(b);
}

static void
path_bad(const char *arg, int is_rcpt, const char *want_why)
{
    struct smtpd_path p;
    const char *why;
    char *b;

    if (path(arg, is_rcpt, &p, &why, &b) == 0)
        fail_msg("[%s] accepted as <%s>", arg, p.addr);
    assert_string_equal(why, want_why);
    assert_null(p.addr);
    free(b);
}

static void
test_path_basic(void **state)
{
    path_ok("FROM:<a@example.com>", 0, "a@example.com");
    path_ok("from:<a@example.com>", 0, "a@example.com");
    path_ok("From: <a@example.com>", 0, "a@example.com");
    path_ok("FROM:\t <a@example.com>", 0, "a@example.com");
    path_ok("FROM:a@example.com", 0, "a@example.com");
    path_ok("TO:<b@example.net>", 1, "b@example.net");
    path_ok("to:b@example.net", 1, "b@example.net");
    path_ok("FROM:<first.last+tag@sub.example.co.uk>", 0,
            "first.last+tag@sub.example.co.uk");
    path_ok("FROM:<x@under_score.example>", 0, "x@under_score.example");
    path_ok("FROM:<x@example.com.>", 0, "x@example.com.");
    path_ok("FROM:<{}'*#=?^`|~$&/!%@example.com>", 0,
            "{}'*#=?^`|~$&/!%@example.com");

    path_bad("FROM <a@b>", 0, SYN_MAIL);
    path_bad("FROM:", 0, SYN_MAIL);
    path_bad("FROM:   ", 0, SYN_MAIL);
    path_bad("", 0, SYN_MAIL);
    path_bad("TO:<a@b>", 0, SYN_MAIL);
    path_bad("FROM:<a@b>", 1, SYN_RCPT);
    path_bad("TO:", 1, SYN_RCPT);

    path_bad("FROM:<a@b", 0, BAD_FROM);
    path_bad("FROM:<a@b>x", 0, BAD_FROM);
    path_bad("FROM:<a@b>>", 0, BAD_FROM);
    path_bad("FROM:<<a@b>>", 0, BAD_FROM);
    path_bad("FROM:<a>", 0, BAD_FROM);
    path_bad("TO:<a>", 1, BAD_TO);
    path_bad("TO:<@>", 1, BAD_TO);
    path_bad("TO:<a@>", 1, BAD_TO);
    path_bad("TO:<@b>", 1, BAD_TO);
    /* dots relaxed as in Postfix, but a local part needs a character */
    path_ok("TO:<.a@b>", 1, ".a@b");
    path_ok("TO:<a.@b>", 1, "a.@b");
    path_ok("TO:<a..b@c>", 1, "a..b@c");
    path_bad("TO:<..@b>", 1, BAD_TO);
    path_bad("TO:<a b@c>", 1, BAD_TO);
    path_bad("TO:<a@b..c>", 1, BAD_TO);
    path_bad("TO:<a@.b>", 1, BAD_TO);
    path_bad("TO:<a@b c>", 1, BAD_TO);
    path_bad("TO:<a@b/c>", 1, BAD_TO);
    path_bad("TO:<a(comment)@b>", 1, BAD_TO);
    path_bad("TO:<a@b>c@d>", 1, BAD_TO);
}

static void
test_null_sender(void **state)
{
    path_ok("FROM:<>", 0, "");
    path_ok("FROM: <>", 0, "");
    path_ok("FROM:<> SIZE=100", 0, "");
    path_bad("TO:<>", 1, BAD_TO);
    path_bad("FROM:<@a:>", 0, BAD_FROM);
}

static void
test_postmaster(void **state)
{
    path_ok("TO:<postmaster>", 1, "postmaster");
    path_ok("TO:<PostMaster>", 1, "PostMaster");
    path_ok("TO:<postmaster@example.com>", 1, "postmaster@example.com");
    path_bad("FROM:<postmaster>", 0, BAD_FROM);
    path_bad("TO:<abuse>", 1, BAD_TO);
    path_bad("TO:<\"postmaster\">", 1, BAD_TO);
    assert_true(smtpd_addr_valid("postmaster"));
    assert_false(smtpd_addr_valid("root"));
}

static void
test_source_route(void **state)
{
    struct smtpd_path p;
    const char *why;
    char *b;

    path_ok("TO:<@host:user@other>", 1, "user@other");
    path_ok("TO:<@a,@b.example:user@c.example>", 1, "user@c.example");
    path_ok("FROM:<@a:user@c> SIZE=1", 0, "user@c");
    path_bad("TO:<@a user@c>", 1, BAD_TO);
    path_bad("TO:<@a,b:user@c>", 1, BAD_TO);
    path_bad("TO:<@:user@c>", 1, BAD_TO);
    path_bad("TO:<@a,:user@c>", 1, BAD_TO);
    path_bad("TO:<@a:>", 1, BAD_TO);
    path_bad("TO:<@a:@b:c@d>", 1, BAD_TO);

    assert_int_equal(path("TO:<@a:user%other@c> NOTIFY=NEVER", 1, &p, &why, &b),
                     0);
    assert_string_equal(p.addr, "user%other@c");
    assert_int_equal(p.nparams, 1);
    free(b);
}

static void
routing(const char *addr, const char *want_local, int want_routing)
{
    char *l, *d;

    assert_true(smtpd_addr_valid(addr));
    assert_int_equal(smtpd_addr_split(addr, &l, &d), 0);
    assert_string_equal(l, want_local);
    assert_int_equal(smtpd_local_has_routing(l) != 0, want_routing);
    free(l);
    free(d);
}

static void
test_relay_tricks(void **state)
{
    /* Invalid syntax, or valid with the routing found. */
    path_bad("TO:<user@other@host>", 1, BAD_TO);
    path_bad("TO:user@other@host", 1, BAD_TO);
    assert_false(smtpd_addr_valid("user@other@host"));
    routing("user%other@host", "user%other", 1);
    routing("\"user@other\"@host", "user@other", 1);
    routing("other!user@host", "other!user", 1);
    routing("\"a%b\"@host", "a%b", 1);
    routing("plain.user@host", "plain.user", 0);
    path_ok("TO:<\"user@other\"@host>", 1, "\"user@other\"@host");
    path_ok("TO:<user%other@host>", 1, "user%other@host");
    path_ok("TO:<other!user@host>", 1, "other!user@host");
    assert_true(smtpd_local_has_routing("a@b"));
    assert_false(smtpd_local_has_routing("a.b-c+d"));
}

static void
test_quoted(void **state)
{
    char *l, *d;

    path_ok("TO:<\"a b\"@example.com>", 1, "\"a b\"@example.com");
    path_ok("TO:\"a b\"@example.com NOTIFY=NEVER", 1, "\"a b\"@example.com");
    path_ok("TO:<\"a>b\"@example.com>", 1, "\"a>b\"@example.com");
    path_ok("TO:<\"a\\\"b\"@example.com>", 1, "\"a\\\"b\"@example.com");
    path_ok("TO:<\"\"@example.com>", 1, "\"\"@example.com");
    path_bad("TO:<\"a b@example.com>", 1, BAD_TO);
    path_bad("TO:<\"a\"b@example.com>", 1, BAD_TO);
    path_bad("TO:<a\"b\"@example.com>", 1, BAD_TO);
    path_bad("TO:<\"a\\\">", 1, BAD_TO);
    path_bad("TO:<\"a\tb\"@example.com>", 1, BAD_TO);
    path_bad("TO:<\"a\\\x01\"@example.com>", 1, BAD_TO);

    assert_int_equal(smtpd_addr_split("\"a\\\"b\\\\c d\"@Example.COM.", &l, &d),
                     0);
    assert_string_equal(l, "a\"b\\c d");
    assert_string_equal(d, "example.com");
    free(l);
    free(d);
}

static void
test_literals(void **state)
{
    char *l, *d;

    path_ok("TO:<a@[192.0.2.1]>", 1, "a@[192.0.2.1]");
    path_ok("TO:<a@[IPv6:2001:db8::1]>", 1, "a@[IPv6:2001:db8::1]");
    path_ok("TO:<a@[ipv6:::ffff:192.0.2.1]>", 1, "a@[ipv6:::ffff:192.0.2.1]");
    path_bad("TO:<a@[192.0.2.256]>", 1, BAD_TO);
    path_bad("TO:<a@[192.0.2]>", 1, BAD_TO);
    path_bad("TO:<a@[192.0.2.1]x>", 1, BAD_TO);
    path_bad("TO:<a@[192.0.2.1>", 1, BAD_TO);
    path_bad("TO:<a@[2001:db8::1]>", 1, BAD_TO);
    path_bad("TO:<a@[IPv6:2001:db8::g]>", 1, BAD_TO);
    path_bad("TO:<a@[IPv6:1.2.3.4]>", 1, BAD_TO);
    path_bad("TO:<a@[]>", 1, BAD_TO);
    path_bad("TO:<a@[IPv6:]>", 1, BAD_TO);
    path_bad("TO:<a@[tag:content]>", 1, BAD_TO);

    assert_int_equal(smtpd_addr_split("U@[IPv6:2001:DB8::1]", &l, &d), 0);
    assert_string_equal(l, "U");
    assert_string_equal(d, "[ipv6:2001:db8::1]");
    free(l);
    free(d);
}

static void
test_params(void **state)
{
    struct smtpd_path p;
    const char *why, *val;
    char *b;

    assert_int_equal(
        path("FROM:<a@b>  SIZE=1000 BODY=8BITMIME SMTPUTF8", 0, &p, &why, &b),
        0);
    assert_string_equal(p.addr, "a@b");
    assert_int_equal(p.nparams, 3);
    assert_string_equal(p.params[0], "SIZE=1000");
    assert_string_equal(p.params[1], "BODY=8BITMIME");
    assert_string_equal(p.params[2], "SMTPUTF8");
    assert_null(p.params[3]);
    assert_true(smtpd_param_is(p.params[0], "size", &val));
    assert_string_equal(val, "1000");
    assert_true(smtpd_param_is(p.params[2], "SMTPUTF8", &val));
    assert_null(val);
    assert_false(smtpd_param_is(p.params[1], "BOD", &val));
    assert_false(smtpd_param_is(p.params[0], "SIZES", &val));
    assert_true(smtpd_param_is(p.params[1], "Body", NULL));
    free(b);

    assert_int_equal(
        path("TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c", 1, &p,
             &why, &b),
        0);
    assert_int_equal(p.nparams, 2);
    assert_string_equal(p.params[1], "ORCPT=rfc822;a+2Bb@c");
    free(b);

    path_bad("FROM:<a@b> SIZE=", 0, BAD_PARAM);
    path_bad("FROM:<a@b> =1", 0, BAD_PARAM);
    path_bad("FROM:<a@b> -X=1", 0, BAD_PARAM);
    path_bad("FROM:<a@b> S_IZE=1", 0, BAD_PARAM);
    path_bad("FROM:<a@b> SIZE=1=2", 0, BAD_PARAM);
    path_bad("FROM:<a@b> BODY=8BIT\xc3\xa9", 0, BAD_PARAM);
    path_bad("TO:<a@b> X=\x7f", 1, BAD_PARAM);

    /* 16 parameters are fine, 17 are too many. */
    assert_int_equal(
        path("FROM:<a@b> A B C D E F G H I J K L M N O P", 0, &p, &why, &b), 0);
    assert_int_equal(p.nparams, SMTPD_PARAMS_MAX);
    assert_string_equal(p.params[15], "P");
    assert_null(p.params[16]);
    free(b);
    path_bad("FROM:<a@b> A B C D E F G H I J K L M N O P Q", 0, TOO_MANY);
    path_bad("TO:<a@b> A B C D E F G H I J K L M N O P Q R S", 1, TOO_MANY);
}

static void
test_long_and_control(void **state)
{
    char addr[SMTPD_ADDR_MAX + 64], arg[SMTPD_ADDR_MAX + 80];
    char *l, *d;
    size_t n;

    /* local part of 200, domain labels of 50: total exactly at the max */
    memset(addr, 'a', 200);
    addr[200] = '@';
    n = 201;
    while (n < SMTPD_ADDR_MAX - 51) {
        memset(addr + n, 'b', 50);
        addr[n + 50] = '.';
        n += 51;
    }
    memset(addr + n, 'c', SMTPD_ADDR_MAX - n);
    addr[SMTPD_ADDR_MAX] = '\0';
    assert_int_equal(strlen(addr), SMTPD_ADDR_MAX);
    /* the domain is over 255: invalid for that reason */
    assert_false(smtpd_addr_valid(addr));
    /* a long local part with a short domain is fine up to the max */
    memset(addr, 'a', SMTPD_ADDR_MAX - 4);
    memcpy(addr + SMTPD_ADDR_MAX - 4, "@b.c", 5);
    assert_true(smtpd_addr_valid(addr));
    snprintf(arg, sizeof(arg), "TO:<%s>", addr);
    path_ok(arg, 1, addr);
    assert_int_equal(smtpd_addr_split(addr, &l, &d), 0);
    assert_int_equal(strlen(l), SMTPD_ADDR_MAX - 4);
    free(l);
    free(d);
    /* one more byte: too long */
    memset(addr, 'a', SMTPD_ADDR_MAX - 3);
    memcpy(addr + SMTPD_ADDR_MAX - 3, "@b.c", 5);
    assert_false(smtpd_addr_valid(addr));
    assert_int_equal(smtpd_addr_split(addr, &l, &d), -1);
    assert_null(l);
    snprintf(arg, sizeof(arg), "TO:<%s>", addr);
    path_bad(arg, 1, BAD_TO);
    /* a 64-byte label is too long, 63 is fine */
    snprintf(addr, sizeof(addr), "a@%063d.example", 0);
    assert_true(smtpd_addr_valid(addr));
    snprintf(addr, sizeof(addr), "a@%064d.example", 0);
    assert_false(smtpd_addr_valid(addr));

    /* control characters and 8-bit bytes */
    path_bad("TO:<a\x01@b>", 1, BAD_TO);
    path_bad("TO:<a@b\x01>", 1, BAD_TO);
    path_bad("TO:<\xc3\xa9@example.com>", 1, BAD_TO);
    path_bad("TO:<a@ex\xc3\xa4mple.com>", 1, BAD_TO);
    path_bad("TO:<\"\xc3\xa9\"@example.com>", 1, BAD_TO);
    assert_false(smtpd_addr_valid("a\x7f@b"));
    assert_true(smtpd_addr_valid(""));
    assert_false(smtpd_addr_valid(NULL));
}

static void
test_split(void **state)
{
    char *l, *d;

    assert_int_equal(smtpd_addr_split("User.Name@Mail.Example.ORG", &l, &d), 0);
    assert_string_equal(l, "User.Name");
    assert_string_equal(d, "mail.example.org");
    free(l);
    free(d);

    assert_int_equal(smtpd_addr_split("", &l, &d), 0);
    assert_string_equal(l, "");
    assert_string_equal(d, "");
    free(l);
    free(d);

    assert_int_equal(smtpd_addr_split("postmaster", &l, &d), 0);
    assert_string_equal(l, "postmaster");
    assert_string_equal(d, "");
    free(l);
    free(d);

    assert_int_equal(smtpd_addr_split("a@b@c", &l, &d), -1);
    assert_null(l);
    assert_null(d);
    assert_int_equal(smtpd_addr_split("a@", &l, &d), -1);
    assert_int_equal(smtpd_addr_split("@b", &l, &d), -1);
    assert_int_equal(smtpd_addr_split("\"a@b", &l, &d), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verbs),
        cmocka_unit_test(test_cmd_control),
        cmocka_unit_test(test_path_basic),
        cmocka_unit_test(test_null_sender),
        cmocka_unit_test(test_postmaster),
        cmocka_unit_test(test_source_route),
        cmocka_unit_test(test_relay_tricks),
        cmocka_unit_test(test_quoted),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_long_and_control),
        cmocka_unit_test(test_split),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
