/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_cf.c - main.cf and master.cf parsing, expansion, types, cf_show,
 * cf_load.
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

#include "conf/cf.h"
#include "lib/buf.h"

static struct buf *err;

static int
setup(void **state)
{
    err = buf_new(256, BUF_NOCAP);
    return 0;
}

static int
teardown(void **state)
{
    buf_free(err);
    return 0;
}

/* main.cf text -> checked cf (asserts success). */
static struct cf *
load(const char *text)
{
    struct cf *cf = cf_new();

    buf_reset(err);
    if (cf_parse_main(cf, text, strlen(text), "main.cf", err) < 0
        || cf_check(cf, err) < 0)
        fail_msg("unexpected error: %s", buf_data(err));
    return cf;
}

/* main.cf text that must fail at parse or check; returns the error. */
static const char *
load_fail(const char *text)
{
    struct cf *cf = cf_new();
    int r = cf_parse_main(cf, text, strlen(text), "main.cf", err);

    if (r == 0)
        r = cf_check(cf, err);
    cf_free(cf);
    assert_int_equal(r, -1);
    return buf_data(err);
}

static void
test_table_sorted(void **state)
{
    for (size_t i = 0; cf_params[i].name != NULL; i++) {
        assert_non_null(cf_params[i].def);
        assert_non_null(cf_params[i].doc);
        if (cf_params[i + 1].name != NULL)
            assert_true(strcmp(cf_params[i].name, cf_params[i + 1].name) < 0);
        assert_ptr_equal(cf_param_find(cf_params[i].name), &cf_params[i]);
    }
    assert_null(cf_param_find("no_such_parameter"));
    assert_null(cf_param_find(""));
}

static void
test_defaults(void **state)
{
    struct cf *cf = cf_new();
    char host[256];
    const char *h, *d;

    assert_int_equal(cf_check(cf, err), 0);
    h = cf_str(cf, "myhostname");
    assert_non_null(strchr(h, '.'));
    gethostname(host, sizeof(host));
    assert_memory_equal(h, host, strcspn(host, "."));
    d = cf_str(cf, "mydomain");
    assert_string_equal(d, strchr(h, '.') + 1);
    assert_string_equal(cf_str(cf, "myorigin"), h);
    assert_string_equal(cf_str(cf, "mail_name"), "Sluice");
    assert_string_equal(cf_raw(cf, "smtpd_banner"),
                        "$myhostname ESMTP $mail_name");
    assert_int_equal(cf_size(cf, "message_size_limit"), 10240000);
    assert_int_equal(cf_time(cf, "smtpd_timeout"), 300);
    assert_int_equal(cf_time(cf, "maximal_queue_lifetime"), 5 * 86400);
    assert_int_equal(cf_int(cf, "smtpd_recipient_limit"), 1000);
    assert_int_equal(cf_int(cf, "smtpd_hard_error_limit"), 20);
    assert_int_equal(cf_bool(cf, "smtpd_forbid_bare_newline"), 1);
    assert_int_equal(cf_bool(cf, "disable_vrfy_command"), 0);
    assert_string_equal(cf_str(cf, "queue_directory"), "/var/spool/sluice");
    assert_string_equal(cf_str(cf, "syslog_name"), "postfix");
    assert_string_equal(cf_str(cf, "maillog_file"), "");
    assert_int_equal(cf_is_set(cf, "myhostname"), 0);

    char *const *l = cf_list(cf, "mynetworks");
    assert_string_equal(l[0], "127.0.0.0/8");
    assert_string_equal(l[1], "[::1]/128");
    assert_null(l[2]);
    l = cf_list(cf, "smtpd_forbid_bare_newline_exclusions");
    assert_string_equal(l[0], "127.0.0.0/8");
    l = cf_list(cf, "mydestination");
    assert_string_equal(l[0], h);
    assert_true(strncmp(l[1], "localhost.", 10) == 0);
    assert_string_equal(l[1] + 10, d);
    assert_string_equal(l[2], "localhost");
    assert_null(l[3]);
    l = cf_list(cf, "transport_maps");
    assert_null(l[0]);
    l = cf_list(cf, "smtpd_relay_restrictions");
    assert_string_equal(l[0], "permit_mynetworks");
    assert_string_equal(l[2], "defer_unauth_destination");
    cf_free(cf);
}

static void
test_basic_syntax(void **state)
{
    struct cf *cf = load("# a comment\n"
                         "\n"
                         "myhostname=mx.example.org\n"
                         "   # indented comment\n"
                         "relayhost   =    [192.0.2.1]:2525   \n"
                         "smtpd_banner = $myhostname # not a comment\n"
                         "relay_domains =\n");

    assert_string_equal(cf_str(cf, "myhostname"), "mx.example.org");
    assert_string_equal(cf_str(cf, "relayhost"), "[192.0.2.1]:2525");
    assert_string_equal(cf_str(cf, "smtpd_banner"),
                        "mx.example.org # not a comment");
    assert_string_equal(cf_raw(cf, "smtpd_banner"),
                        "$myhostname # not a comment");
    assert_string_equal(cf_str(cf, "relay_domains"), "");
    assert_null(cf_list(cf, "relay_domains")[0]);
    assert_int_equal(cf_is_set(cf, "relay_domains"), 1);
    assert_int_equal(cf_is_set(cf, "relayhost"), 1);
    assert_int_equal(cf_is_set(cf, "mynetworks"), 0);
    /* mydomain follows the configured myhostname */
    assert_string_equal(cf_str(cf, "mydomain"), "example.org");
    cf_free(cf);
}

static void
test_crlf_and_no_final_newline(void **state)
{
    struct cf *cf = load("myhostname = a.example\r\nmail_name = X");

    assert_string_equal(cf_str(cf, "myhostname"), "a.example");
    assert_string_equal(cf_str(cf, "mail_name"), "X");
    cf_free(cf);
}

static void
test_continuation(void **state)
{
    struct cf *cf = load("mydestination = a.example,\n"
                         "    b.example\n"
                         "# comment inside\n"
                         "\tc.example\n"
                         "mynetworks = 10.0.0.0/8\n");
    char *const *l;

    assert_string_equal(cf_raw(cf, "mydestination"),
                        "a.example, b.example c.example");
    l = cf_list(cf, "mydestination");
    assert_string_equal(l[0], "a.example");
    assert_string_equal(l[1], "b.example");
    assert_string_equal(l[2], "c.example");
    assert_null(l[3]);
    assert_string_equal(cf_str(cf, "mynetworks"), "10.0.0.0/8");
    cf_free(cf);

    assert_string_equal(load_fail("  myhostname = x\n"),
                        "main.cf:1: line starts with white space but "
                        "continues no line");
}

static void
test_last_wins(void **state)
{
    struct cf *cf = load("mail_name = one\nmail_name = two\n");

    assert_string_equal(cf_str(cf, "mail_name"), "two");
    cf_free(cf);
}

static void
test_expansion_forms(void **state)
{
    struct cf *cf = load("myhostname = mx.example.org\n"
                         "mail_name = $(myhostname)/${myhostname}/$myhostname\n"
                         "smtpd_banner = a$$b ${relayhost?set} "
                         "${relayhost:unset} ${myhostname?has $mydomain}"
                         "${myhostname:no}\n"
                         "syslog_name = x$\n");
    struct buf *out = buf_new(64, BUF_NOCAP);

    assert_string_equal(cf_str(cf, "mail_name"),
                        "mx.example.org/mx.example.org/mx.example.org");
    assert_string_equal(cf_str(cf, "smtpd_banner"),
                        "a$b  unset has example.org");
    assert_string_equal(cf_str(cf, "syslog_name"), "x$");
    assert_int_equal(cf_expand(cf, "<$mail_name>", out, err), 0);
    assert_string_equal(buf_data(out),
                        "<mx.example.org/mx.example.org/mx.example.org>");
    buf_free(out);
    cf_free(cf);
}

static void
test_expansion_recursive(void **state)
{
    struct cf *cf = load("myhostname = host.$mydomain\n"
                         "mydomain = example.net\n"
                         "smtp_helo_name = $myorigin\n");

    assert_string_equal(cf_str(cf, "myhostname"), "host.example.net");
    assert_string_equal(cf_str(cf, "smtp_helo_name"), "host.example.net");
    assert_string_equal(cf_str(cf, "smtpd_banner"),
                        "host.example.net ESMTP Sluice");
    cf_free(cf);
}

static void
test_expansion_loop(void **state)
{
    assert_string_equal(load_fail("\nmail_name = $syslog_name\n"
                                  "syslog_name = ${mail_name}\n"),
                        "main.cf:2: parameter mail_name: expansion loop: "
                        "mail_name -> syslog_name -> mail_name");
    assert_string_equal(load_fail("mail_name = x$mail_name\n"),
                        "main.cf:1: parameter mail_name: expansion loop: "
                        "mail_name -> mail_name");
    /* the loop reached through a default value */
    assert_non_null(strstr(load_fail("myhostname = $smtpd_banner\n"),
                           "expansion loop: myhostname -> smtpd_banner -> "
                           "myhostname"));
}

static void
test_expansion_unknown(void **state)
{
    struct cf *cf = cf_new();
    struct buf *out = buf_new(64, BUF_NOCAP);
    const char *t = "mail_name = a $nosuchname b\n";

    assert_int_equal(cf_parse_main(cf, t, strlen(t), "main.cf", err), 0);
    assert_string_equal(cf_str(cf, "mail_name"), "a $nosuchname b");
    assert_int_equal(cf_check(cf, err), -1);
    assert_string_equal(buf_data(err), "main.cf:1: unknown parameter "
                                       "nosuchname in value of mail_name");
    assert_int_equal(cf_expand(cf, "x${foo}y", out, err), 0);
    assert_string_equal(buf_data(out), "x${foo}y");
    buf_free(out);
    cf_free(cf);
}

static void
test_expansion_syntax_errors(void **state)
{
    assert_string_equal(load_fail("mail_name = ${myhostname\n"),
                        "main.cf:1: parameter mail_name: missing '}' in "
                        "\"${myhostname\"");
    assert_non_null(strstr(load_fail("mail_name = ${my-host}\n"),
                           "bad parameter reference \"${my-host}\""));
    assert_non_null(
        strstr(load_fail("mail_name = $()\n"), "bad parameter reference"));
}

static void
test_expansion_bounded(void **state)
{
    /* each level doubles: 2^20 copies would exceed CF_VALUE_MAX */
    const char *t = "mail_name = $syslog_name$syslog_name$syslog_name"
                    "$syslog_name$syslog_name$syslog_name$syslog_name\n"
                    "syslog_name = $smtpd_banner$smtpd_banner$smtpd_banner"
                    "$smtpd_banner$smtpd_banner$smtpd_banner\n"
                    "smtpd_banner = $myorigin$myorigin$myorigin$myorigin"
                    "$myorigin$myorigin$myorigin$myorigin$myorigin\n"
                    "myorigin = $relayhost$relayhost$relayhost$relayhost"
                    "$relayhost$relayhost$relayhost$relayhost\n"
                    "relayhost = 0123456789012345678901234567890123456789\n";

    assert_non_null(strstr(load_fail(t), "value too long after expansion"));

    /* deep nesting of ${name?...} is refused, not recursed on */
    struct buf *b = buf_new(1024, BUF_NOCAP);
    buf_puts(b, "mail_name = ");
    for (int i = 0; i < 1000; i++)
        buf_puts(b, "${myhostname?");
    for (int i = 0; i < 1000; i++)
        buf_puts(b, "}");
    buf_puts(b, "\n");
    assert_non_null(strstr(load_fail(buf_data(b)), "expansion too deep"));
    buf_free(b);
}

static void
test_bad_lines(void **state)
{
    assert_string_equal(load_fail("# c\nsmtpd_bannr = 1\n"),
                        "main.cf:2: unknown parameter \"smtpd_bannr\" (did "
                        "you mean \"smtpd_banner\"?)");
    assert_string_equal(load_fail("myhostname x\n"),
                        "main.cf:1: missing '=' after parameter name in "
                        "\"myhostname x\"");
    assert_string_equal(load_fail("\n\n= value\n"),
                        "main.cf:3: missing parameter name before '='");
    assert_string_equal(load_fail("mail_name = a\nmy host = x\n"),
                        "main.cf:2: unknown parameter \"my host\"");
}

static void
test_nul_in_text(void **state)
{
    struct cf *cf = cf_new();
    const char t[] = "mail_name = a\0b\n";

    assert_int_equal(cf_parse_main(cf, t, sizeof(t) - 1, "f.cf", err), -1);
    assert_string_equal(buf_data(err), "f.cf:1: NUL character in line");
    cf_free(cf);
}

static void
test_long_lines(void **state)
{
    struct buf *b = buf_new(CF_VALUE_MAX + 100, BUF_NOCAP);
    struct cf *cf;

    /* exactly at the limit: accepted */
    buf_puts(b, "relayhost = ");
    while (buf_len(b) < CF_VALUE_MAX)
        buf_putc(b, 'x');
    buf_putc(b, '\n');
    cf = load(buf_data(b));
    assert_int_equal(strlen(cf_str(cf, "relayhost")), CF_VALUE_MAX - 12);
    cf_free(cf);

    /* one physical line too long */
    buf_truncate(b, buf_len(b) - 1);
    buf_puts(b, "x\n");
    assert_string_equal(load_fail(buf_data(b)),
                        "main.cf:1: line too long (more than 65536 bytes)");

    /* too long through continuation lines */
    buf_reset(b);
    buf_puts(b, "# first\nmail_name = x\n");
    for (int i = 0; i < 700; i++)
        buf_printf(b, " %099d\n", i);
    assert_string_equal(load_fail(buf_data(b)),
                        "main.cf:2: line too long (more than 65536 bytes)");

    /* cf_set bounds the value too */
    buf_reset(b);
    while (buf_len(b) <= CF_VALUE_MAX)
        buf_putc(b, 'y');
    cf = cf_new();
    assert_int_equal(cf_set(cf, "mail_name", buf_data(b), "cmd:1", err), -1);
    assert_string_equal(buf_data(err), "cmd:1: value of parameter mail_name "
                                       "too long (more than 65536 bytes)");
    cf_free(cf);
    buf_free(b);
}

static void
test_types_good(void **state)
{
    struct cf *cf = load("smtpd_timeout = 2m\n"
                         "smtp_connect_timeout = 45\n"
                         "maximal_queue_lifetime = 2\n"
                         "minimal_backoff_time = 1w\n"
                         "queue_run_delay = 3h\n"
                         "message_size_limit = 20m\n"
                         "header_size_limit = 4K\n"
                         "mailbox_size_limit = 1g\n"
                         "smtpd_recipient_limit = -5\n"
                         "smtpd_helo_required = YES\n"
                         "disable_vrfy_command = true\n"
                         "smtpd_peername_lookup = 0\n"
                         "soft_bounce = 1\n"
                         "smtpd_delay_reject = False\n");

    assert_int_equal(cf_time(cf, "smtpd_timeout"), 120);
    assert_int_equal(cf_time(cf, "smtp_connect_timeout"), 45);
    assert_int_equal(cf_time(cf, "maximal_queue_lifetime"), 2 * 86400);
    assert_int_equal(cf_time(cf, "minimal_backoff_time"), 7 * 86400);
    assert_int_equal(cf_time(cf, "queue_run_delay"), 3 * 3600);
    assert_int_equal(cf_size(cf, "message_size_limit"), 20 * 1024 * 1024);
    assert_int_equal(cf_size(cf, "header_size_limit"), 4096);
    assert_int_equal(cf_size(cf, "mailbox_size_limit"), 1024LL * 1024 * 1024);
    assert_int_equal(cf_int(cf, "smtpd_recipient_limit"), -5);
    assert_int_equal(cf_bool(cf, "smtpd_helo_required"), 1);
    assert_int_equal(cf_bool(cf, "disable_vrfy_command"), 1);
    assert_int_equal(cf_bool(cf, "smtpd_peername_lookup"), 0);
    assert_int_equal(cf_bool(cf, "soft_bounce"), 1);
    assert_int_equal(cf_bool(cf, "smtpd_delay_reject"), 0);
    cf_free(cf);
}

static void
test_types_bad(void **state)
{
    assert_string_equal(load_fail("\nsmtpd_timeout = abc\n"),
                        "main.cf:2: bad time value for parameter "
                        "smtpd_timeout: abc");
    assert_string_equal(load_fail("smtpd_timeout = 10x\n"),
                        "main.cf:1: bad time value for parameter "
                        "smtpd_timeout: 10x");
    assert_string_equal(load_fail("smtpd_timeout = 10ss\n"),
                        "main.cf:1: bad time value for parameter "
                        "smtpd_timeout: 10ss");
    assert_string_equal(load_fail("smtpd_timeout = -1\n"),
                        "main.cf:1: bad time value for parameter "
                        "smtpd_timeout: -1");
    assert_string_equal(load_fail("smtpd_recipient_limit = 12a\n"),
                        "main.cf:1: bad integer value for parameter "
                        "smtpd_recipient_limit: 12a");
    assert_string_equal(load_fail("smtpd_recipient_limit =\n"),
                        "main.cf:1: bad integer value for parameter "
                        "smtpd_recipient_limit: ");
    assert_string_equal(load_fail("smtpd_recipient_limit = "
                                  "99999999999999999999\n"),
                        "main.cf:1: bad integer value for parameter "
                        "smtpd_recipient_limit: 99999999999999999999");
    assert_string_equal(load_fail("message_size_limit = 9999999999999999g\n"),
                        "main.cf:1: bad size value for parameter "
                        "message_size_limit: 9999999999999999g");
    assert_string_equal(load_fail("smtpd_timeout = 999999999999999999w\n"),
                        "main.cf:1: bad time value for parameter "
                        "smtpd_timeout: 999999999999999999w");
    assert_string_equal(load_fail("soft_bounce = maybe\n"),
                        "main.cf:1: bad boolean value for parameter "
                        "soft_bounce: maybe");
    /* the type is checked on the expanded value */
    assert_string_equal(load_fail("mail_name = 5q\n"
                                  "smtpd_hard_error_limit = $mail_name\n"),
                        "main.cf:2: bad integer value for parameter "
                        "smtpd_hard_error_limit: 5q");
    assert_string_equal(load_fail("transport_maps = inline:{ a=b\n"),
                        "main.cf:1: parameter transport_maps: unbalanced '{' "
                        "or '}' in \"inline:{ a=b\"");
    assert_string_equal(load_fail("transport_maps = /etc/transport\n"),
                        "main.cf:1: parameter transport_maps: bad lookup "
                        "table \"/etc/transport\" (expected type:name)");
}

/* A Postfix main.cf as Debian 12 writes it loads: every Postfix parameter
 * name is known; those Sluice does not act on earn the not-implemented
 * warning, but the paths and caches of Postfix's own programs; $name of
 * an unset one gives "". A name Postfix does not have stays an error. */
static void
test_postfix_names(void **state)
{
    struct cf *cf = load("readme_directory = no\n"
                         "compatibility_level = 3.6\n"
                         "smtp_tls_session_cache_database = "
                         "btree:${data_directory}/smtp_scache\n"
                         "smtpd_tls_session_cache_database = "
                         "btree:${data_directory}/smtpd_scache\n"
                         "smtp_tls_note_starttls_offer = yes\n"
                         "tls_preempt_cipherlist = yes\n"
                         "smtp_fallback_relay =\n"
                         "virtual_transport = lmtp:unix:private/dovecot-lmtp\n"
                         "smtpd_tls_mandatory_ciphers = medium\n");
    struct buf *out = buf_new(256, BUF_NOCAP);
    const char *want =
        "main.cf:5: smtp_tls_note_starttls_offer = yes: not implemented in "
        "this Sluice yet; the setting has no effect\n"
        "main.cf:9: smtpd_tls_mandatory_ciphers = medium: not implemented in "
        "this Sluice yet; the setting has no effect\n"
        "main.cf:6: tls_preempt_cipherlist = yes: not implemented in this "
        "Sluice yet; the setting has no effect\n"
        "main.cf:8: virtual_transport = lmtp:unix:private/dovecot-lmtp: not "
        "implemented in this Sluice yet; the setting has no effect\n";
    struct cf *bad = cf_new();
    const char *t = "smtp_tls_note_starttls_offr = yes\n";

    (void) state;
    assert_int_equal(cf_check(cf, err), 0);
    assert_string_equal(cf_str(cf, "smtpd_tls_session_cache_database"),
                        "btree:/smtpd_scache");
    assert_string_equal(cf_str(cf, "virtual_transport"),
                        "lmtp:unix:private/dovecot-lmtp");
    assert_int_equal(cf_later(cf, NULL, 0, out), 4);
    assert_string_equal(buf_data(out), want);
    assert_non_null(cf_param_find("maildrop_destination_recipient_limit"));
    assert_non_null(cf_param_find("lmtp_tls_CAfile"));
    assert_null(cf_param_find("scalemail-backend_delivery_slot_cost"));
    assert_int_equal(cf_parse_main(bad, t, strlen(t), "main.cf", err), -1);
    assert_string_equal(buf_data(err), "main.cf:1: unknown parameter "
                                       "\"smtp_tls_note_starttls_offr\" (did "
                                       "you mean "
                                       "\"smtp_tls_note_starttls_offer\"?)");
    cf_free(bad);
    buf_free(out);
    cf_free(cf);
}

/* Settings of parameters accepted but not implemented yet are listed;
 * defaults, unset ones and implemented ones are not; with a base, only
 * what differs from it (a service's -o). */
static void
test_later(void **state)
{
    struct cf *cf = load("virtual_mailbox_maps = hash:/etc/postfix/vm\n"
                         "soft_bounce = no\n"
                         "smtpd_timeout = 7s\n"
                         "masquerade_domains = a.example,\n"
                         " b.example\n");
    struct cf *svc = cf_clone(cf);
    struct cf_service sv = {.cf = svc};
    struct buf *out = buf_new(256, BUF_NOCAP), *e = buf_new(256, 4096);
    const char *main_lines =
        "main.cf:4: masquerade_domains = a.example, b.example: not "
        "implemented in this Sluice yet; the setting has no effect\n"
        "main.cf:1: virtual_mailbox_maps = hash:/etc/postfix/vm: not implemented "
        "in this Sluice yet; the setting has no effect\n";
    size_t n;

    for (size_t i = 0; cf_params[i].name != NULL; i++)
        if (cf_params[i].later == 1) /* said in its description too */
            assert_non_null(strstr(cf_params[i].doc, "not implemented yet"));
    n = cf_later(cf, NULL, 0, out);
    assert_int_equal(n, 2);
    assert_string_equal(buf_data(out), main_lines);
    buf_reset(out);
    /* a service: only its own -o setting is added to main.cf's */
    assert_int_equal(cf_set(svc, "smtpd_delay_reject", "no", "master.cf:3", e),
                     0);
    assert_int_equal(cf_later(cf, &sv, 1, out), 3);
    assert_int_equal(strncmp(buf_data(out), main_lines, strlen(main_lines)), 0);
    assert_string_equal(buf_data(out) + strlen(main_lines),
                        "master.cf:3: smtpd_delay_reject = no: not "
                        "implemented in this Sluice yet; the setting has no "
                        "effect\n");
    /* the scanner's settings work in main.cf, not per service: main.cf's
     * own setting earns nothing, a service's -o that differs does, even
     * one back to the default; smtpd_milters and clamav_enable work per
     * service and earn nothing */
    cf_free(svc);
    cf_free(cf);
    cf = load("clamav_virus_action = discard\n"
              "smtpd_milters = inet:127.0.0.1:8891\n");
    svc = cf_clone(cf);
    sv.cf = svc;
    buf_reset(out);
    assert_int_equal(cf_later(cf, &sv, 1, out), 0);
    assert_int_equal(cf_set(svc, "smtpd_milters", "", "master.cf:7", e), 0);
    assert_int_equal(cf_set(svc, "clamav_enable", "no", "master.cf:7", e), 0);
    assert_int_equal(cf_later(cf, &sv, 1, out), 0);
    assert_int_equal(
        cf_set(svc, "clamav_virus_action", "reject", "master.cf:8", e), 0);
    assert_int_equal(cf_later(cf, &sv, 1, out), 1);
    assert_string_equal(buf_data(out),
                        "master.cf:8: clamav_virus_action = reject: not "
                        "implemented per service in this Sluice yet; "
                        "main.cf's value applies to every service\n");
    buf_reset(out);
    assert_int_equal(
        cf_set(svc, "clamav_virus_action", "discard", "master.cf:8", e), 0);
    assert_int_equal(cf_later(cf, &sv, 1, out), 0);
    buf_free(out);
    buf_free(e);
    cf_free(svc);
    cf_free(cf);
}

static void
test_lists(void **state)
{
    struct cf *cf = load("mynetworks = 10.0.0.0/8,192.0.2.0/24 , [::1]/128\n"
                         "   ,, 172.16.0.0/12\n"
                         "transport_maps = inline:{ a.example=smtp:[h]:25, "
                         "{ b = c d } }, texthash:/etc/t\n"
                         "relay_domains = $mydestination other.example\n"
                         "mydestination = localhost\n");
    char *const *l = cf_list(cf, "mynetworks");

    assert_string_equal(l[0], "10.0.0.0/8");
    assert_string_equal(l[1], "192.0.2.0/24");
    assert_string_equal(l[2], "[::1]/128");
    assert_string_equal(l[3], "172.16.0.0/12");
    assert_null(l[4]);
    l = cf_list(cf, "transport_maps");
    assert_string_equal(l[0], "inline:{ a.example=smtp:[h]:25, { b = c d } }");
    assert_string_equal(l[1], "texthash:/etc/t");
    assert_null(l[2]);
    l = cf_list(cf, "relay_domains");
    assert_string_equal(l[0], "localhost");
    assert_string_equal(l[1], "other.example");
    assert_null(l[2]);
    cf_free(cf);
}

/* Parameters the operator makes up, as Postfix allows: used by $name in
 * main.cf and in master.cf's -o, shown by sluice conf, and an unused one
 * is said (postconf's warning). */
static void
test_user_params(void **state)
{
    const char *m = "mua_client_restrictions = permit_sasl_authenticated, "
                    "reject\n"
                    "my_domains = a.example, $mydomain\n"
                    "relay_domains = $my_domains\n"
                    "leftover = 1\n"
                    "mydomain = d.example\n";
    const char *ms = "smtp inet n - n - - smtpd\n"
                     "submission inet n - n - - smtpd\n"
                     "  -o smtpd_client_restrictions=$mua_client_restrictions\n"
                     "  -o { mua_extra = check_sender_access inline:{x=OK} }\n";
    struct cf *cf = load(m);
    struct cf_service *s = NULL;
    struct buf *out = buf_new(256, BUF_NOCAP);
    char *const name[] = {"my_domains", NULL};
    size_t n = 0;

    assert_string_equal(cf_str(cf, "relay_domains"), "a.example, d.example");
    assert_int_equal(
        cf_parse_master(cf, ms, strlen(ms), "master.cf", &s, &n, err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(cf_check(s[1].cf, err), 0);
    assert_string_equal(cf_str(s[1].cf, "smtpd_client_restrictions"),
                        "permit_sasl_authenticated, reject");
    assert_string_equal(cf_str(s[0].cf, "smtpd_client_restrictions"), "");
    cf_later(cf, s, n, out);
    assert_string_equal(buf_data(out),
                        "main.cf:4: unused parameter: leftover=1\n"
                        "master.cf:2: unused parameter: mua_extra=check_sender_"
                        "access inline:{x=OK}\n");
    buf_reset(out);
    assert_int_equal(cf_show(cf, CF_SHOW_SET, name, out, err), 0);
    assert_string_equal(buf_data(out), "my_domains = a.example, $mydomain\n");
    buf_reset(out);
    assert_int_equal(cf_show(cf, CF_SHOW_SET, NULL, out, err), 0);
    assert_non_null(strstr(buf_data(out), "\nleftover = 1\n"));
    assert_int_equal(cf_show(cf, CF_SHOW_DEFAULT, name, out, err), -1);
    /* a loop through user parameters is an error, not a hang */
    assert_non_null(strstr(load_fail("a_one = $a_two\na_two = $a_one\n"
                                     "mail_name = $a_one\n"),
                           "too deep"));
    cf_services_free(s, n);
    buf_free(out);
    cf_free(cf);
}

static void
test_set_and_clone(void **state)
{
    struct cf *cf = load("mail_name = Main\n");
    struct cf *c;
    const char *before = cf_str(cf, "smtpd_banner");

    assert_int_equal(cf_set(cf, "mail_nmae", "x", NULL, err), -1);
    assert_string_equal(buf_data(err), "unknown parameter \"mail_nmae\" (did "
                                       "you mean \"mail_name\"?)");
    assert_int_equal(cf_set(cf, "no such", "x", "master.cf:3", err), -1);
    assert_string_equal(buf_data(err),
                        "master.cf:3: unknown parameter \"no such\"");
    c = cf_clone(cf);
    assert_int_equal(cf_set(c, "mail_name", "Clone", "master.cf:2", err), 0);
    assert_int_equal(cf_check(c, err), 0);
    assert_non_null(strstr(cf_str(c, "smtpd_banner"), "ESMTP Clone"));
    assert_non_null(strstr(cf_str(cf, "smtpd_banner"), "ESMTP Main"));
    /* a string handed out before cf_set stays valid */
    assert_non_null(strstr(before, "ESMTP Main"));
    assert_int_equal(cf_set(cf, "mail_name", "Changed", NULL, err), 0);
    assert_non_null(strstr(before, "ESMTP Main"));
    assert_non_null(strstr(cf_str(cf, "smtpd_banner"), "ESMTP Changed"));
    /* errors in the clone name where the override was set */
    assert_int_equal(cf_set(c, "smtpd_timeout", "soon", "master.cf:7", err), 0);
    assert_int_equal(cf_check(c, err), -1);
    assert_string_equal(buf_data(err), "master.cf:7: bad time value for "
                                       "parameter smtpd_timeout: soon");
    cf_free(c);
    cf_free(cf);
}

static void
test_show(void **state)
{
    struct cf *cf = load("myhostname = mx.example.org\n"
                         "relayhost =\n"
                         "mail_name = Mine\n");
    struct buf *out = buf_new(256, BUF_NOCAP);
    char *sel[] = {"smtpd_banner", "mail_name", "relayhost", NULL};
    char *bad[] = {"mail_name", "nonesuch", NULL};

    assert_int_equal(cf_show(cf, CF_SHOW_SET, NULL, out, err), 0);
    assert_string_equal(buf_data(out), "mail_name = Mine\n"
                                       "myhostname = mx.example.org\n"
                                       "relayhost =\n");
    buf_reset(out);
    assert_int_equal(cf_show(cf, CF_SHOW_ALL, sel, out, err), 0);
    assert_string_equal(buf_data(out),
                        "smtpd_banner = $myhostname ESMTP $mail_name\n"
                        "mail_name = Mine\n"
                        "relayhost =\n");
    buf_reset(out);
    assert_int_equal(cf_show(cf, CF_SHOW_DEFAULT, sel, out, err), 0);
    assert_string_equal(buf_data(out),
                        "smtpd_banner = $myhostname ESMTP $mail_name\n"
                        "mail_name = Sluice\n"
                        "relayhost =\n");
    buf_reset(out);
    char *dom[] = {"mydomain", NULL};
    assert_int_equal(cf_show(cf, CF_SHOW_ALL, dom, out, err), 0);
    assert_string_equal(buf_data(out), "mydomain = example.org\n");
    buf_reset(out);
    assert_int_equal(cf_show(cf, CF_SHOW_SET, dom, out, err), 0);
    assert_string_equal(buf_data(out), "");
    assert_int_equal(cf_show(cf, CF_SHOW_ALL, bad, out, err), -1);
    assert_string_equal(buf_data(err), "unknown parameter \"nonesuch\"");
    assert_string_equal(buf_data(out), "");

    /* all: one sorted line per parameter */
    assert_int_equal(cf_show(cf, CF_SHOW_ALL, NULL, out, err), 0);
    size_t lines = 0, n = 0;
    for (const char *p = buf_data(out); *p; p++)
        lines += *p == '\n';
    while (cf_params[n].name)
        n++;
    assert_int_equal(lines, n);
    assert_non_null(strstr(buf_data(out), "\nmail_name = Mine\n"));
    assert_true(strstr(buf_data(out), "\nmail_name =")
                < strstr(buf_data(out), "\nmyhostname ="));
    buf_free(out);
    cf_free(cf);
}

/* ---- master.cf ---- */

static struct cf_service *
master(const struct cf *cf, const char *text, size_t *n)
{
    struct cf_service *s = NULL;

    buf_reset(err);
    if (cf_parse_master(cf, text, strlen(text), "master.cf", &s, n, err) < 0)
        fail_msg("unexpected error: %s", buf_data(err));
    return s;
}

static const char *
master_fail(const char *text)
{
    struct cf *cf = cf_new();
    struct cf_service *s = (struct cf_service *) 1;
    size_t n = 99;

    assert_int_equal(
        cf_parse_master(cf, text, strlen(text), "master.cf", &s, &n, err), -1);
    assert_null(s);
    assert_int_equal(n, 0);
    cf_free(cf);
    return buf_data(err);
}

static void
test_master_good(void **state)
{
    struct cf *cf = load("mail_name = Main\n");
    size_t n;
    struct cf_service *s = master(
        cf,
        "# Postfix master process configuration file\n"
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "submission inet n       -       y       -       -       smtpd\n"
        "  -o mail_name=Submit\n"
        "  -o smtpd_timeout=60s -v\n"
        "smtps     inet  n       -       y       -       -       smtpd\n"
        "  -o { mail_name = Wrapped Mode }\n"
        "127.0.0.1:2525 inet n - n - - smtpd\n"
        "[::1]:2526 inet n - n - 10 smtpd -oqueue_run_delay=5\n"
        "pickup    unix  n       -       y       60      1       pickup\n"
        "qmgr      unix  n       -       n       300?    1       qmgr\n"
        "relay     unix  -       -       y       -       -       smtp\n"
        "        -o syslog_name=postfix/$service_name\n"
        "maildrop  unix  -       n       n       -       -       pipe\n"
        "  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n",
        &n);

    assert_int_equal(n, 5);
    assert_string_equal(s[0].name, "smtp");
    assert_string_equal(s[0].type, "inet");
    assert_string_equal(s[0].port, "25");
    assert_null(s[0].host);
    assert_string_equal(s[0].command, "smtpd");
    assert_null(s[0].args[0]);
    assert_string_equal(s[0].where, "master.cf:2");
    assert_string_equal(cf_str(s[0].cf, "mail_name"), "Main");

    assert_string_equal(s[1].port, "587");
    assert_string_equal(s[1].where, "master.cf:3");
    assert_string_equal(cf_str(s[1].cf, "mail_name"), "Submit");
    assert_non_null(strstr(cf_str(s[1].cf, "smtpd_banner"), "ESMTP Submit"));
    assert_int_equal(cf_time(s[1].cf, "smtpd_timeout"), 60);
    assert_string_equal(s[1].args[0], "-v");
    assert_null(s[1].args[1]);

    assert_string_equal(s[2].port, "465");
    assert_string_equal(cf_str(s[2].cf, "mail_name"), "Wrapped Mode");
    /* overrides stay in their own service */
    assert_int_equal(cf_time(s[2].cf, "smtpd_timeout"), 300);
    assert_string_equal(cf_str(cf, "mail_name"), "Main");
    assert_int_equal(cf_time(cf, "smtpd_timeout"), 300);

    assert_string_equal(s[3].name, "127.0.0.1:2525");
    assert_string_equal(s[3].host, "127.0.0.1");
    assert_string_equal(s[3].port, "2525");
    assert_string_equal(s[4].name, "[::1]:2526");
    assert_string_equal(s[4].host, "::1");
    assert_string_equal(s[4].port, "2526");
    assert_int_equal(cf_time(s[4].cf, "queue_run_delay"), 5);
    assert_int_equal(cf_time(s[3].cf, "queue_run_delay"), 300);
    cf_services_free(s, n);
    cf_free(cf);
}

static void
test_master_ports(void **state)
{
    struct cf *cf = cf_new();
    size_t n;
    struct cf_service *s = master(cf,
                                  "2525 inet n - n - - smtpd\n"
                                  "0.0.0.0:submission inet n - n - - smtpd\n"
                                  "*:26 inet n - n - - smtpd\n"
                                  "[2001:db8::1]:smtp inet n - n - - smtpd\n",
                                  &n);

    assert_int_equal(n, 4);
    assert_null(s[0].host);
    assert_string_equal(s[0].port, "2525");
    assert_string_equal(s[1].host, "0.0.0.0");
    assert_string_equal(s[1].port, "587");
    assert_null(s[2].host);
    assert_string_equal(s[2].port, "26");
    assert_string_equal(s[3].host, "2001:db8::1");
    assert_string_equal(s[3].port, "25");
    cf_services_free(s, n);
    s = master(cf, "# nothing\n", &n);
    assert_int_equal(n, 0);
    cf_services_free(s, n);
    cf_free(cf);
}

static void
test_master_bad(void **state)
{
    assert_string_equal(master_fail("\nsmtp inet n - n - smtpd\n"),
                        "master.cf:2: bad field count: 7 fields, expected at "
                        "least 8 (service type private unpriv chroot wakeup "
                        "maxproc command)");
    assert_string_equal(master_fail("smtp tcp n - n - - smtpd\n"),
                        "master.cf:1: unsupported service type \"tcp\"");
    assert_string_equal(master_fail("smtp inet n - n - - postscreen\n"),
                        "master.cf:1: unsupported command \"postscreen\" for "
                        "inet service \"smtp\" (only smtpd)");
    assert_string_equal(master_fail("nosuchsvc inet n - n - - smtpd\n"),
                        "master.cf:1: unknown service name or bad port "
                        "\"nosuchsvc\"");
    assert_string_equal(master_fail("70000 inet n - n - - smtpd\n"),
                        "master.cf:1: unknown service name or bad port "
                        "\"70000\"");
    assert_string_equal(master_fail("0 inet n - n - - smtpd\n"),
                        "master.cf:1: unknown service name or bad port \"0\"");
    assert_string_equal(master_fail("localhost:25 inet n - n - - smtpd\n"),
                        "master.cf:1: bad host address \"localhost\" (numeric "
                        "IPv4 or [IPv6] address expected)");
    assert_non_null(strstr(master_fail("[::1 inet n - n - - smtpd\n"),
                           "master.cf:1: bad service address \"[::1\""));
    assert_string_equal(master_fail("smtp inet x - n - - smtpd\n"),
                        "master.cf:1: bad private/unpriv/chroot field "
                        "(y, n or -)");
    assert_string_equal(master_fail("smtp inet n - n - many smtpd\n"),
                        "master.cf:1: bad wakeup or maxproc field "
                        "(number or -)");
    assert_string_equal(master_fail("smtp inet n - n - - smtpd\n"
                                    "  -o smtpd_bannr=1\n"),
                        "master.cf:1: unknown parameter \"smtpd_bannr\" (did "
                        "you mean \"smtpd_banner\"?)");
    assert_string_equal(master_fail("smtp inet n - n - - smtpd\n"
                                    "submission inet n - n - - smtpd\n"
                                    "  -o smtpd_timeout=never\n"),
                        "master.cf:2: bad time value for parameter "
                        "smtpd_timeout: never");
    assert_string_equal(master_fail("smtp inet n - n - - smtpd -o\n"),
                        "master.cf:1: -o without name=value");
    assert_string_equal(master_fail("smtp inet n - n - - smtpd -o foo\n"),
                        "master.cf:1: bad -o option \"foo\" (expected "
                        "name=value)");
    assert_string_equal(master_fail("smtp inet n - n - - smtpd -o { a = b\n"),
                        "master.cf:1: unbalanced '{' in line");
    assert_string_equal(master_fail("smtp inet n - n - - smtpd\n"
                                    "25 inet n - n - - smtpd\n"),
                        "master.cf:2: duplicate service \"25\" (same address "
                        "as master.cf:1)");
    assert_string_equal(master_fail("  smtp inet n - n - - smtpd\n"),
                        "master.cf:1: line starts with white space but "
                        "continues no line");
}

/* ---- cf_load ---- */

static void
write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

static void
test_load(void **state)
{
    char dir[] = "/tmp/test_cf.XXXXXX";
    struct cf_service *s;
    size_t n;
    struct cf *cf;
    char expect[600];

    assert_non_null(mkdtemp(dir));

    /* no files: defaults and one smtp service on port 25 */
    cf = cf_load(dir, &s, &n, err);
    assert_non_null(cf);
    assert_int_equal(n, 1);
    assert_string_equal(s[0].name, "smtp");
    assert_string_equal(s[0].port, "25");
    assert_null(s[0].host);
    assert_string_equal(cf_str(cf, "config_directory"), dir);
    assert_int_equal(cf_is_set(cf, "config_directory"), 0);
    cf_services_free(s, n);
    cf_free(cf);

    write_file(dir, "main.cf",
               "myhostname = mx.test.example\n"
               "queue_directory = $config_directory/q\n");
    write_file(dir, "master.cf",
               "127.0.0.1:2525 inet n - n - - smtpd\n"
               "  -o smtpd_banner=hello\n");
    cf = cf_load(dir, &s, &n, err);
    assert_non_null(cf);
    assert_int_equal(n, 1);
    assert_string_equal(cf_str(cf, "myhostname"), "mx.test.example");
    snprintf(expect, sizeof(expect), "%s/q", dir);
    assert_string_equal(cf_str(cf, "queue_directory"), expect);
    assert_string_equal(cf_str(s[0].cf, "smtpd_banner"), "hello");
    assert_string_equal(cf_str(s[0].cf, "queue_directory"), expect);
    cf_services_free(s, n);
    cf_free(cf);

    /* errors name the file by path and line */
    write_file(dir, "main.cf",
               "myhostname = mx.test.example\nmydestinaton = x\n");
    assert_null(cf_load(dir, &s, &n, err));
    snprintf(expect, sizeof(expect),
             "%s/main.cf:2: unknown parameter "
             "\"mydestinaton\" (did you mean \"mydestination\"?)",
             dir);
    assert_string_equal(buf_data(err), expect);
    assert_null(s);

    write_file(dir, "main.cf", "smtpd_timeout = abc\n");
    assert_null(cf_load(dir, &s, &n, err));
    snprintf(expect, sizeof(expect),
             "%s/main.cf:1: bad time value for "
             "parameter smtpd_timeout: abc",
             dir);
    assert_string_equal(buf_data(err), expect);

    write_file(dir, "main.cf",
               "mail_name = $syslog_name\n"
               "syslog_name = $mail_name\n");
    assert_null(cf_load(dir, &s, &n, err));
    assert_non_null(strstr(buf_data(err), "main.cf:1: parameter mail_name: "
                                          "expansion loop"));

    write_file(dir, "main.cf", "\n");
    write_file(dir, "master.cf", "smtp inet n - n - - smtpd\nbad line\n");
    assert_null(cf_load(dir, &s, &n, err));
    snprintf(expect, sizeof(expect), "%s/master.cf:2: bad field count", dir);
    assert_true(strncmp(buf_data(err), expect, strlen(expect)) == 0);

    /* cf_load_main on a missing file is an error naming it */
    cf = cf_new();
    assert_int_equal(cf_load_main(cf, "/nonexistent/main.cf", err), -1);
    assert_string_equal(buf_data(err), "cannot open /nonexistent/main.cf: "
                                       "No such file or directory");
    cf_free(cf);

    remove_file(dir, "main.cf");
    remove_file(dir, "master.cf");
    assert_int_equal(rmdir(dir), 0);
}

/* The installed default files load, and set nothing. */
static void
test_installed_files(void **state)
{
    const char *srcdir = getenv("srcdir");
    char dir[512], path[600];
    struct cf_service *s;
    struct buf *out = buf_new(64, BUF_NOCAP);
    size_t n;
    struct cf *cf;

    snprintf(dir, sizeof(dir), "%s/conf", srcdir ? srcdir : ".");
    snprintf(path, sizeof(path), "%s/main.cf", dir);
    if (access(path, R_OK) != 0)
        skip();
    cf = cf_load(dir, &s, &n, err);
    if (cf == NULL)
        fail_msg("%s", buf_data(err));
    assert_int_equal(n, 1);
    assert_string_equal(s[0].port, "25");
    assert_int_equal(cf_show(cf, CF_SHOW_SET, NULL, out, err), 0);
    assert_string_equal(buf_data(out), "");
    buf_free(out);
    cf_services_free(s, n);
    cf_free(cf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_sorted),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_basic_syntax),
        cmocka_unit_test(test_crlf_and_no_final_newline),
        cmocka_unit_test(test_continuation),
        cmocka_unit_test(test_last_wins),
        cmocka_unit_test(test_expansion_forms),
        cmocka_unit_test(test_expansion_recursive),
        cmocka_unit_test(test_expansion_loop),
        cmocka_unit_test(test_expansion_unknown),
        cmocka_unit_test(test_expansion_syntax_errors),
        cmocka_unit_test(test_expansion_bounded),
        cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_nul_in_text),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_types_good),
        cmocka_unit_test(test_types_bad),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_later),
        cmocka_unit_test(test_postfix_names),
        cmocka_unit_test(test_set_and_clone),
        cmocka_unit_test(test_user_params),
        cmocka_unit_test(test_show),
        cmocka_unit_test(test_master_good),
        cmocka_unit_test(test_master_ports),
        cmocka_unit_test(test_master_bad),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_installed_files),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
