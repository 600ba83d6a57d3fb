/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_smtpd_check.c - the smtpd_*_restrictions evaluator: list order and
 * scope, every restriction it implements, access actions and key search
 * order, warn_if_reject, HOLD/DISCARD, sender login maps, the replies in
 * Postfix's words, and the configuration errors and warnings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "proxy/smtpd_check.h"

static struct buf *err, *warn, *logs;
static struct smtpd_check_res res;

static int
setup(void **state)
{
    err = buf_new(256, BUF_NOCAP);
    warn = buf_new(256, BUF_NOCAP);
    logs = buf_new(256, BUF_NOCAP);
    res.text = buf_new(256, BUF_NOCAP);
    res.prepend = buf_new(256, BUF_NOCAP);
    return 0;
}

static int
teardown(void **state)
{
    buf_free(err);
    buf_free(warn);
    buf_free(logs);
    buf_free(res.text);
    buf_free(res.prepend);
    return 0;
}

static struct cf *
conf(const char *text)
{
    struct cf *cf = cf_new();

    buf_reset(err);
    /* any local recipient, unless the text says otherwise (the default
     * reads /etc/aliases.db, which a test machine may not have) */
    if (cf_set(cf, "local_recipient_maps", "", NULL, err) < 0
        || cf_parse_main(cf, text, strlen(text), "main.cf", err) < 0
        || cf_check(cf, err) < 0)
        fail_msg("unexpected error: %s", buf_data(err));
    return cf;
}

/* One more setting, as master.cf's -o would give it. */
static void
set(struct cf *cf, const char *name, const char *value)
{
    buf_reset(err);
    if (cf_set(cf, name, value, NULL, err) < 0 || cf_check(cf, err) < 0)
        fail_msg("%s = %s: %s", name, value, buf_data(err));
}

static struct smtpd_check *
compile(struct cf *cf)
{
    struct smtpd_check *c;

    buf_reset(err);
    buf_reset(warn);
    c = smtpd_check_new(cf, err, warn);
    if (c == NULL)
        fail_msg("smtpd_check_new: %s", buf_data(err));
    return c;
}

static void
log_cb(void *arg, const char *what, const char *text)
{
    buf_printf(logs, "%s: %s\n", what, text);
}

/* The default request: an outside client, helo, sender, recipient. */
static struct smtpd_check_in
req(void)
{
    struct smtpd_check_in in;

    memset(&in, 0, sizeof(in));
    in.addr = "192.0.2.7";
    in.name = "mail.client.example";
    in.rev_name = "mail.client.example";
    in.helo = "mail.client.example";
    in.sender = "alice@sender.example";
    in.rcpt = "bob@rcpt.example";
    in.log = log_cb;
    return in;
}

/* "CODE DSN TEXT" of a rejected request, or "PASS", "HOLD: text" ... */
static const char *
run(const struct smtpd_check *c, const struct smtpd_check_in *in)
{
    static char out[1024];

    buf_reset(logs);
    if (in->rcpt)
        smtpd_check_rcpt(c, in, &res);
    else
        smtpd_check_data(c, in, &res);
    switch (res.verdict) {
    case SMTPD_CHECK_PASS:
        return "PASS";
    case SMTPD_CHECK_REJECT:
        snprintf(out, sizeof(out), "%d %s %s", res.code, res.dsn,
                 buf_data(res.text));
        return out;
    case SMTPD_CHECK_HOLD:
        snprintf(out, sizeof(out), "HOLD: %s", buf_data(res.text));
        return out;
    case SMTPD_CHECK_DISCARD:
        snprintf(out, sizeof(out), "DISCARD: %s", buf_data(res.text));
        return out;
    case SMTPD_CHECK_NEED:
        return "NEED";
    }
    return "?";
}

/* Postfix's default relay restrictions, and the relay decision inputs. */
static void
test_relay(void **state)
{
    struct cf *cf = conf("");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    assert_string_equal(run(c, &in),
                        "454 4.7.1 <bob@rcpt.example>: Relay access denied");
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    in.auth_dest = 0;
    in.mynetworks = 1;
    assert_string_equal(run(c, &in), "PASS");
    in.mynetworks = 0;
    in.authenticated = 1;
    in.sasl_user = "alice";
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);

    cf = conf("smtpd_relay_restrictions = permit_mynetworks, "
              "reject_unauth_destination\n");
    c = compile(cf);
    in = req();
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    in.authenticated = 1; /* not permitted by this list */
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    smtpd_check_free(c);
    cf_free(cf);

    /* an empty relay list: the recipient list must hold the relay check */
    cf = conf("smtpd_relay_restrictions =\n"
              "smtpd_recipient_restrictions = permit_auth_destination, "
              "reject\n");
    c = compile(cf);
    in = req();
    assert_string_equal(run(c, &in), "554 5.7.1 <bob@rcpt.example>: "
                                     "Recipient address rejected: Access "
                                     "denied");
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
}

/* A permit ends its own list only; the lists run client, helo, sender,
 * relay, recipient; each list's reject has its class. */
static void
test_lists(void **state)
{
    struct cf *cf = conf("smtpd_client_restrictions = permit, reject\n"
                         "smtpd_recipient_restrictions = reject\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "554 5.7.1 <bob@rcpt.example>: "
                                     "Recipient address rejected: Access "
                                     "denied");
    smtpd_check_free(c);
    cf_free(cf);

    cf = conf("smtpd_client_restrictions = reject\n"
              "smtpd_helo_restrictions = defer\n");
    c = compile(cf);
    assert_string_equal(run(c, &in), "554 5.7.1 <mail.client.example[192.0."
                                     "2.7]>: Client host rejected: Access "
                                     "denied");
    smtpd_check_free(c);
    cf_free(cf);

    cf = conf("smtpd_helo_restrictions = defer\n"
              "smtpd_sender_restrictions = reject\n");
    c = compile(cf);
    assert_string_equal(run(c, &in), "450 4.3.2 <mail.client.example>: Helo "
                                     "command rejected: Try again later");
    smtpd_check_free(c);
    cf_free(cf);

    cf = conf("smtpd_sender_restrictions = reject\n");
    c = compile(cf);
    assert_string_equal(run(c, &in), "554 5.7.1 <alice@sender.example>: "
                                     "Sender address rejected: Access "
                                     "denied");
    in.name = "unknown";
    in.sender = "";
    assert_string_equal(run(c, &in), "554 5.7.1 <>: Sender address "
                                     "rejected: Access denied");
    smtpd_check_free(c);
    cf_free(cf);

    /* DATA: only smtpd_data_restrictions */
    cf = conf("smtpd_client_restrictions = reject\n"
              "smtpd_data_restrictions = permit_mynetworks, reject\n");
    c = compile(cf);
    in = req();
    in.rcpt = NULL;
    assert_string_equal(run(c, &in), "554 5.7.1 <DATA>: Data command "
                                     "rejected: Access denied");
    in.mynetworks = 1;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_hostnames(void **state)
{
    static const struct {
        const char *helo;
        const char *invalid, *nonfqdn; /* NULL: passes */
    } t[] = {
        {"mail.example.com", NULL, NULL},
        {"[192.0.2.1]", NULL, NULL},
        {"[IPv6:2001:db8::1]", NULL, NULL},
        {"localhost", NULL, "504"},
        {"192.0.2.1", NULL, "504"},
        {"mail.example.com.", NULL, NULL}, /* one trailing dot dropped */
        {"mail.example.com..", "501", "504"},
        {"[999.1.1.1]", "ip", "504"},
        {"[IPv6:2001:db8::zz]", "ip", "504"},
        {"bad_but_ok.example", NULL, NULL}, /* '_' tolerated as Postfix */
        {"-bad.example", "501", "504"},
        {"bad-.example", "501", "504"},
        {"a..b", "501", "504"},
        {"sp ace.example", "501", "504"},
        {"bad!name", "501", "504"},
        {"[", "ip", "504"},
    };
    struct cf *cf = conf("smtpd_helo_restrictions = "
                         "reject_invalid_helo_hostname\n");
    struct cf *cf2 = conf("smtpd_helo_restrictions = "
                          "reject_non_fqdn_helo_hostname\n");
    struct smtpd_check *c = compile(cf), *c2 = compile(cf2);
    struct smtpd_check_in in = req();
    char want[256];

    in.auth_dest = 1;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        in.helo = t[i].helo;
        if (t[i].invalid) {
            snprintf(want, sizeof(want),
                     "501 5.5.2 <%s>: Helo command rejected: %s", t[i].helo,
                     strcmp(t[i].invalid, "ip") == 0 ? "invalid ip address"
                                                     : "Invalid name");
            assert_string_equal(run(c, &in), want);
        } else {
            assert_string_equal(run(c, &in), "PASS");
        }
        if (t[i].nonfqdn) {
            snprintf(want, sizeof(want),
                     "504 5.5.2 <%s>: Helo command rejected: need "
                     "fully-qualified hostname",
                     t[i].helo);
            assert_string_equal(run(c2, &in), want);
        } else {
            assert_string_equal(run(c2, &in), "PASS");
        }
    }
    in.helo = NULL; /* no HELO: nothing to judge */
    assert_string_equal(run(c, &in), "PASS");
    assert_string_equal(run(c2, &in), "PASS");
    smtpd_check_free(c);
    smtpd_check_free(c2);
    cf_free(cf);
    cf_free(cf2);

    cf = conf("smtpd_sender_restrictions = reject_non_fqdn_sender\n"
              "smtpd_recipient_restrictions = reject_non_fqdn_recipient\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    in.sender = "alice@localhost";
    assert_string_equal(run(c, &in), "504 5.5.2 <alice@localhost>: Sender "
                                     "address rejected: need "
                                     "fully-qualified address");
    in.sender = ""; /* the null sender is fine */
    assert_string_equal(run(c, &in), "PASS");
    in.rcpt = "bob@localhost";
    assert_string_equal(run(c, &in), "504 5.5.2 <bob@localhost>: Recipient "
                                     "address rejected: need "
                                     "fully-qualified address");
    in.rcpt = "bob@mail.example.com."; /* a trailing dot is fine */
    assert_string_equal(run(c, &in), "PASS");
    in.rcpt = "postmaster"; /* never refused, as Postfix */
    assert_string_equal(run(c, &in), "PASS");

    smtpd_check_free(c);
    cf_free(cf);
}

/* check_*_access: every action, and the key search order. */
static void
test_access(void **state)
{
    struct cf *cf =
        conf("smtpd_relay_restrictions =\n"
             "smtpd_recipient_restrictions = check_recipient_access inline:{ "
             "ok@rcpt.example=OK, dunno@rcpt.example=DUNNO, "
             "rej@rcpt.example=REJECT, { txt@rcpt.example = REJECT go away }, "
             "defer@rcpt.example=DEFER, { c550@rcpt.example = 550 5.1.1 no "
             "such user }, { c450@rcpt.example = 450 later }, "
             "{ warn@rcpt.example = WARN watch this }, "
             "hold@rcpt.example=HOLD, { dis@rcpt.example = DISCARD spam }, "
             "relay@rcpt.example=reject_unauth_destination, "
             "bad@rcpt.example=FROBNICATE, sub.rcpt.example=REJECT, "
             "parent.example=REJECT, postmaster@=OK, "
             "{ d572@rcpt.example = REJECT 5.7.2 list closed }, "
             "{ mism@rcpt.example = 450 5.7.1 mismatched }, "
             "{ dsn@rcpt.example = DEFER 4.2.2 full }, "
             "relayed@rcpt.example=RELAY, num@rcpt.example=12345, "
             "{ info@rcpt.example = INFO noted }, "
             "{ pre@rcpt.example = PREPEND X-Seen: yes }, "
             "{ list@rcpt.example = permit_auth_destination, reject }, "
             "{ x@case.example = REJECT case } }, permit_auth_destination, "
             "reject\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    static const struct {
        const char *rcpt, *want;
    } t[] = {
        {"ok@rcpt.example", "PASS"},
        {"dunno@rcpt.example", "554 5.7.1 <dunno@rcpt.example>: Recipient "
                               "address rejected: Access denied"},
        {"rej@rcpt.example", "554 5.7.1 <rej@rcpt.example>: Recipient "
                             "address rejected: Access denied"},
        {"txt@rcpt.example", "554 5.7.1 <txt@rcpt.example>: Recipient "
                             "address rejected: go away"},
        {"defer@rcpt.example", "450 4.7.1 <defer@rcpt.example>: Recipient "
                               "address rejected: Access denied"},
        {"c550@rcpt.example", "550 5.1.1 <c550@rcpt.example>: Recipient "
                              "address rejected: no such user"},
        {"c450@rcpt.example", "450 4.7.1 <c450@rcpt.example>: Recipient "
                              "address rejected: later"},
        {"relay@rcpt.example", "554 5.7.1 <relay@rcpt.example>: Relay "
                               "access denied"},
        {"bad@rcpt.example", "451 4.3.5 Server configuration error"},
        {"a@sub.rcpt.example", "554 5.7.1 <a@sub.rcpt.example>: Recipient "
                               "address rejected: Access denied"},
        {"a@deep.sub.parent.example", "554 5.7.1 "
                                      "<a@deep.sub.parent.example>: "
                                      "Recipient address rejected: Access "
                                      "denied"},
        {"postmaster@anything.example", "PASS"},
        {"X@CASE.example", "554 5.7.1 <X@CASE.example>: Recipient address "
                           "rejected: case"},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        in.rcpt = t[i].rcpt;
        in.auth_dest = 0;
        assert_string_equal(run(c, &in), t[i].want);
    }
    /* WARN logs and goes on; HOLD and DISCARD are noted and go on */
    in.rcpt = "warn@rcpt.example";
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    assert_string_equal(buf_data(logs), "warn: watch this\n");
    in.rcpt = "hold@rcpt.example";
    assert_string_equal(run(c, &in), "HOLD: <hold@rcpt.example>: Recipient "
                                     "address triggers HOLD action");
    in.rcpt = "dis@rcpt.example";
    assert_string_equal(run(c, &in),
                        "DISCARD: <dis@rcpt.example>: Recipient address spam");
    in.auth_dest = 0; /* held, but the list goes on to reject */
    in.rcpt = "hold@rcpt.example";
    assert_string_equal(run(c, &in), "554 5.7.1 <hold@rcpt.example>: "
                                     "Recipient address rejected: Access "
                                     "denied");
    in.rcpt = "dis@rcpt.example"; /* DISCARD ends the evaluation */
    assert_string_equal(run(c, &in),
                        "DISCARD: <dis@rcpt.example>: Recipient address spam");
    /* DSNs in the text, RELAY and numbers as OK, INFO, ignored actions,
     * a restriction list as the value */
    in.rcpt = "d572@rcpt.example";
    assert_string_equal(run(c, &in), "554 5.7.2 <d572@rcpt.example>: "
                                     "Recipient address rejected: list "
                                     "closed");
    in.rcpt = "mism@rcpt.example";
    assert_string_equal(run(c, &in), "450 4.7.1 <mism@rcpt.example>: "
                                     "Recipient address rejected: "
                                     "mismatched");
    in.rcpt = "dsn@rcpt.example";
    assert_string_equal(run(c, &in), "450 4.2.2 <dsn@rcpt.example>: "
                                     "Recipient address rejected: full");
    in.rcpt = "relayed@rcpt.example";
    assert_string_equal(run(c, &in), "PASS");
    in.rcpt = "num@rcpt.example";
    assert_string_equal(run(c, &in), "PASS");
    in.rcpt = "info@rcpt.example";
    assert_string_equal(run(c, &in), "554 5.7.1 <info@rcpt.example>: "
                                     "Recipient address rejected: Access "
                                     "denied");
    assert_string_equal(buf_data(logs), "info: noted\n");
    in.rcpt = "pre@rcpt.example";
    assert_string_equal(run(c, &in), "554 5.7.1 <pre@rcpt.example>: "
                                     "Recipient address rejected: Access "
                                     "denied");
    in.rcpt = "list@rcpt.example";
    assert_string_equal(run(c, &in), "554 5.7.1 <list@rcpt.example>: "
                                     "Recipient address rejected: Access "
                                     "denied");
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");

    smtpd_check_free(c);
    cf_free(cf);

    /* client keys: name, parents, address, IPv4 prefixes; helo; sender
     * with the null sender's key */
    cf = conf("smtpd_client_restrictions = check_client_access inline:{ "
              "{ 192.0.2 = REJECT net } }\n"
              "smtpd_helo_restrictions = check_helo_access inline:{ "
              "{ client.example = REJECT helo } }\n"
              "smtpd_sender_restrictions = check_sender_access inline:{ "
              "{ <> = REJECT bounce }, { alice@ = REJECT local part } }\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "554 5.7.1 <mail.client.example[192.0."
                                     "2.7]>: Client host rejected: net");
    in.addr = "198.51.100.1";
    assert_string_equal(run(c, &in), "554 5.7.1 <mail.client.example>: Helo "
                                     "command rejected: helo");
    in.helo = "other.test";
    assert_string_equal(run(c, &in), "554 5.7.1 <alice@sender.example>: "
                                     "Sender address rejected: local part");
    in.sender = "";
    assert_string_equal(run(c, &in), "554 5.7.1 <>: Sender address "
                                     "rejected: bounce");
    in.sender = "carol@sender.example";
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);

    cf = conf("smtpd_client_restrictions = check_client_access inline:{ "
              "{ client.example = OK } }, reject\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    in.name = "unknown";
    assert_string_equal(run(c, &in), "554 5.7.1 <unknown[192.0.2.7]>: "
                                     "Client host rejected: Access denied");
    smtpd_check_free(c);
    cf_free(cf);

    /* a client without a name is looked up as "unknown"; IPv6 prefixes */
    cf = conf("smtpd_client_restrictions = check_client_access inline:{ "
              "{ unknown = REJECT no name }, { 2001:db8 = REJECT v6 net } }\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    in.name = "unknown";
    assert_string_equal(run(c, &in), "554 5.7.1 <unknown[192.0.2.7]>: "
                                     "Client host rejected: no name");
    in.name = "v6.client.example";
    in.addr = "2001:db8::7";
    assert_string_equal(run(c, &in), "554 5.7.1 <v6.client.example[2001:db8:"
                                     ":7]>: Client host rejected: v6 net");
    in.addr = "2001:db9::7";
    assert_string_equal(run(c, &in), "PASS");

    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_warn_if_reject(void **state)
{
    struct cf *cf = conf("smtpd_recipient_restrictions = warn_if_reject, "
                         "reject_non_fqdn_recipient, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.rcpt = "bob@localhost";
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    assert_string_equal(buf_data(logs),
                        "reject_warning: 504 5.5.2 <bob@localhost>: Recipient "
                        "address rejected: need fully-qualified address\n");
    in.auth_dest = 0; /* the warning does not carry over */
    assert_string_equal(run(c, &in),
                        "454 4.7.1 <bob@localhost>: Relay access denied");
    smtpd_check_free(c);
    cf_free(cf);

    /* a configuration error is never only a warning */
    cf = conf("smtpd_recipient_restrictions = warn_if_reject, "
              "check_recipient_access inline:{ bob@rcpt.example=FROB }, "
              "reject_unauth_destination\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "451 4.3.5 Server configuration error");
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_login_mismatch(void **state)
{
    struct cf *cf = conf(
        "smtpd_sender_login_maps = inline:{ { alice@sender.example = alice, "
        "admin }, @shared.example=team }\n"
        "smtpd_sender_restrictions = reject_sender_login_mismatch\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "553 5.7.1 <alice@sender.example>: "
                                     "Sender address rejected: not logged "
                                     "in");
    in.sender = "nobody@else.example"; /* owned by no one: fine in clear */
    assert_string_equal(run(c, &in), "PASS");
    in.authenticated = 1;
    in.sasl_user = "admin";
    in.sender = "alice@sender.example";
    assert_string_equal(run(c, &in), "PASS");
    in.sasl_user = "bob";
    assert_string_equal(run(c, &in), "553 5.7.1 <alice@sender.example>: "
                                     "Sender address rejected: not owned by "
                                     "user bob");
    in.sasl_user = "team";
    in.sender = "any@shared.example";
    assert_string_equal(run(c, &in), "PASS");
    in.sender = "nobody@else.example"; /* logged in, owns nothing */
    assert_string_equal(run(c, &in), "553 5.7.1 <nobody@else.example>: "
                                     "Sender address rejected: not owned by "
                                     "user team");
    in.sender = "";
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);

    /* the authenticated-only and unauthenticated-only forms */
    cf = conf("smtpd_sender_login_maps = inline:{ a@s.example=alice }\n"
              "smtpd_sender_restrictions = "
              "reject_authenticated_sender_login_mismatch\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    in.sender = "a@s.example";
    assert_string_equal(run(c, &in), "PASS");
    in.authenticated = 1;
    in.sasl_user = "bob";
    assert_string_equal(run(c, &in), "553 5.7.1 <a@s.example>: Sender "
                                     "address rejected: not owned by user "
                                     "bob");
    smtpd_check_free(c);
    cf_free(cf);
    cf = conf("smtpd_sender_login_maps = inline:{ a@s.example=alice }\n"
              "smtpd_sender_restrictions = "
              "reject_unauthenticated_sender_login_mismatch\n");
    c = compile(cf);
    in.authenticated = 1;
    in.sasl_user = "bob";
    assert_string_equal(run(c, &in), "PASS");
    in.authenticated = 0;
    in.sasl_user = NULL;
    assert_string_equal(run(c, &in), "553 5.7.1 <a@s.example>: Sender "
                                     "address rejected: not logged in");
    smtpd_check_free(c);
    cf_free(cf);
}

/* Facts the session computes on demand: asked once each, only when a
 * restriction needs them. */
static int asked[8], answer[8];

static int
ask_cb(void *arg, enum smtpd_check_fact f)
{
    asked[f]++;
    return answer[f];
}

static void
test_ask(void **state)
{
    struct cf *cf = conf("smtpd_relay_restrictions = permit_mynetworks, "
                         "permit_auth_destination, reject_unauth_destination\n"
                         "smtpd_recipient_restrictions = "
                         "permit_mynetworks, reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.mynetworks = in.auth_dest = -1;
    in.ask = ask_cb;
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    assert_int_equal(asked[SMTPD_CHECK_MYNETWORKS], 1);
    assert_int_equal(asked[SMTPD_CHECK_AUTH_DEST], 1);
    answer[SMTPD_CHECK_MYNETWORKS] = 1;
    asked[0] = asked[1] = 0;
    assert_string_equal(run(c, &in), "PASS");
    assert_int_equal(asked[SMTPD_CHECK_MYNETWORKS], 1);
    assert_int_equal(asked[SMTPD_CHECK_AUTH_DEST], 0); /* never needed */
    assert_int_equal(smtpd_check_data_used(c), 0);
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_conf_errors(void **state)
{
    static const struct {
        const char *text, *err;
    } t[] = {
        {"smtpd_recipient_restrictions = permit_mynetwork\n",
         "smtpd_recipient_restrictions: unknown restriction "
         "\"permit_mynetwork\""},
        {"smtpd_relay_restrictions = permit\n",
         "in parameter smtpd_relay_restrictions or "
         "smtpd_recipient_restrictions, specify at least one working "
         "instance of: reject_unauth_destination, defer_unauth_destination, "
         "reject or defer"},
        {"smtpd_sender_restrictions = check_sender_access\n",
         "smtpd_sender_restrictions: check_sender_access: missing "
         "TYPE:TABLE after it"},
        {"smtpd_sender_restrictions = check_sender_access, permit\n",
         "smtpd_sender_restrictions: check_sender_access: missing "
         "TYPE:TABLE after it"},
        {"smtpd_client_restrictions = check_client_access "
         "texthash:/nonexistent/access\n",
         "smtpd_client_restrictions: check_client_access "
         "texthash:/nonexistent/access: cannot open table "
         "/nonexistent/access: No such file or directory"},
        {"smtpd_sender_login_maps = texthash:/nonexistent/logins\n",
         "smtpd_sender_login_maps: texthash:/nonexistent/logins: cannot open "
         "table /nonexistent/logins: No such file or directory"},
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cf *cf = conf(t[i].text);

        buf_reset(err);
        assert_null(smtpd_check_new(cf, err, NULL));
        assert_string_equal(buf_data(err), t[i].err);
        cf_free(cf);
    }
}

/* reject_rbl_client and permit_dnswl_client over the caller's answers:
 * the domains once each, in order; filters; the reply with and without a
 * TXT; a failed lookup or none lists nothing; query names. */
static void
test_rbl(void **state)
{
    struct cf *cf = conf("smtpd_relay_restrictions =\n"
                         "smtpd_recipient_restrictions = "
                         "reject_rbl_client bl.example=127.0.0.[3..4;9], "
                         "permit_dnswl_client wl.example, "
                         "reject_rbl_client bl.example, "
                         "reject_rbl_client bl2.example., "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_rbl a[3];
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    char name[300];

    (void) state;
    assert_string_equal(buf_data(warn), "");
    assert_int_equal(smtpd_check_rbl_count(c), 3);
    assert_string_equal(smtpd_check_rbl_domain(c, 0), "bl.example");
    assert_string_equal(smtpd_check_rbl_domain(c, 1), "wl.example");
    assert_string_equal(smtpd_check_rbl_domain(c, 2), "bl2.example");
    assert_null(smtpd_check_rbl_domain(c, 3));
    memset(a, 0, sizeof(a));
    in.rbl = a;
    /* nothing listed: the relay check decides */
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    /* listed as 127.0.0.2: the filtered one passes, the plain one hits */
    a[0].listed = 1;
    a[0].naddr = 1;
    memcpy(a[0].addrs[0], "\x7f\x00\x00\x02", 4);
    snprintf(a[0].txt, sizeof(a[0].txt), "see http://bl.example/");
    assert_string_equal(run(c, &in), "554 5.7.1 Service unavailable; Client "
                                     "host [192.0.2.7] blocked using "
                                     "bl.example; see http://bl.example/");
    /* 127.0.0.9 matches the filter too: the same reply, from the first */
    memcpy(a[0].addrs[0], "\x7f\x00\x00\x09", 4);
    a[0].txt[0] = '\0';
    assert_string_equal(run(c, &in), "554 5.7.1 Service unavailable; Client "
                                     "host [192.0.2.7] blocked using "
                                     "bl.example");
    /* in the allow list: the permit ends the list before the second,
     * for a recipient of ours */
    a[1].listed = 1;
    a[1].naddr = 1;
    memcpy(a[1].addrs[0], "\x7f\x00\x02\x01", 4);
    memcpy(a[0].addrs[0], "\x7f\x00\x00\x02", 4);
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    /* never for one that is not (Postfix: no relaying for listed
     * clients): the next list decides */
    in.auth_dest = 0;
    assert_string_equal(run(c, &in), "554 5.7.1 Service unavailable; Client "
                                     "host [192.0.2.7] blocked using "
                                     "bl.example");
    /* the allow list's lookup failed: a later 5xx becomes 450 (Postfix's
     * defer_if_reject) */
    in.auth_dest = 1;
    a[1].listed = -1;
    assert_string_equal(run(c, &in), "450 4.7.1 <192.0.2.7>: Client host "
                                     "rejected: Service unavailable");
    in.auth_dest = 0;
    /* a failed lookup (-1) lists nothing, nor do no answers at all */
    a[1].listed = -1;
    a[0].listed = -1;
    a[2].listed = 1;
    a[2].naddr = 1;
    memcpy(a[2].addrs[0], "\x7f\x00\x00\x0a", 4);
    assert_string_equal(run(c, &in), "554 5.7.1 Service unavailable; Client "
                                     "host [192.0.2.7] blocked using "
                                     "bl2.example");
    in.rbl = NULL;
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    /* query names */
    inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
    assert_int_equal(smtpd_check_rbl_name((struct sockaddr *) &s4, "bl.example",
                                          name, sizeof(name)),
                     0);
    assert_string_equal(name, "7.2.0.192.bl.example");
    inet_pton(AF_INET6, "::ffff:192.0.2.8", &s6.sin6_addr);
    assert_int_equal(smtpd_check_rbl_name((struct sockaddr *) &s6, "bl.example",
                                          name, sizeof(name)),
                     0);
    assert_string_equal(name, "8.2.0.192.bl.example");
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    assert_int_equal(smtpd_check_rbl_name((struct sockaddr *) &s6, "bl.example",
                                          name, sizeof(name)),
                     0);
    assert_string_equal(name, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0"
                              ".0.8.b.d.0.1.0.0.2.bl.example");
    assert_int_equal(
        smtpd_check_rbl_name((struct sockaddr *) &s6, "bl.example", name, 40),
        -1);
    smtpd_check_free(c);
    cf_free(cf);
}

/* Bad DNS list arguments are errors naming them. */
static void
test_rbl_bad(void **state)
{
    static const char *const bad[][2] = {
        {"reject_rbl_client", "missing DNS list domain"},
        {"reject_rbl_client bl.example=127.0.0", "bad reply filter"},
        {"reject_rbl_client bl.example=127.0.0.256", "bad reply filter"},
        {"reject_rbl_client bl.example=127.0.0.[3..1]", "bad reply filter"},
        {"reject_rbl_client bl.example=127.0.0.3..4", "bad reply filter"},
        {"reject_rbl_client bl.example=127.0.0.[1;x]", "bad reply filter"},
        {"permit_dnswl_client bad_domain!", "is not a domain name"},
    };

    (void) state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[256];
        struct cf *cf;
        struct smtpd_check *c;

        snprintf(text, sizeof(text),
                 "smtpd_recipient_restrictions = reject_unauth_destination, "
                 "%s\n",
                 bad[i][0]);
        cf = conf(text);
        buf_reset(err);
        c = smtpd_check_new(cf, err, NULL);
        assert_null(c);
        if (strstr(buf_data(err), bad[i][1]) == NULL)
            fail_msg("%s: %s", bad[i][0], buf_data(err));
        cf_free(cf);
    }
}

/* Restrictions that need DNS or a policy server: skipped with a warning,
 * their argument eaten; the list works around them. */
static void
test_skipped(void **state)
{
    struct cf *cf = conf("smtpd_recipient_restrictions = "
                         "permit_mx_backup, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    assert_string_equal(buf_data(warn),
                        "smtpd_recipient_restrictions: permit_mx_backup: not "
                        "implemented in this Sluice yet; skipped\n");
    assert_string_equal(run(c, &in),
                        "454 4.7.1 <bob@rcpt.example>: Relay access denied");
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
    smtpd_check_free(NULL);
}

/* ---- answers from the network (smtpd_check_in.query) ---- */

/* The answers the stub knows, and what the evaluation asked last. */
static struct {
    enum smtpd_check_q q;
    const char *key;
    struct smtpd_check_ans ans;
} known[8];
static size_t nknown;
static char asked_keys[1024];

static int
query_cb(void *arg, enum smtpd_check_q q, const char *key,
         const struct smtpd_check_ans **ans)
{
    static const char *const qn[] = {"name", "dnsxl", "policy", "mx",
                                     "ns",   "a",     "verify"};

    (void) arg;
    snprintf(asked_keys + strlen(asked_keys),
             sizeof(asked_keys) - strlen(asked_keys), "%s:%s ", qn[q], key);
    for (size_t i = 0; i < nknown; i++)
        if (known[i].q == q && strcmp(known[i].key, key) == 0) {
            *ans = &known[i].ans;
            return 1;
        }
    return 0;
}

static struct smtpd_check_ans *
know(enum smtpd_check_q q, const char *key)
{
    assert_true(nknown < 8);
    memset(&known[nknown], 0, sizeof(known[nknown]));
    known[nknown].q = q;
    known[nknown].key = key;
    return &known[nknown++].ans;
}

/* A DNS list answer: listed at 127.0.X.Y. */
static void
listed_at(struct smtpd_check_ans *a, unsigned char x, unsigned char y)
{
    a->dnsxl.listed = 1;
    a->dnsxl.naddr = 1;
    memcpy(a->dnsxl.addrs[0], (unsigned char[]){127, 0, x, y}, 4);
}

/* Evaluate with the stub: "NEED name:KEY" when an answer is missing. */
static const char *
run_q(const struct smtpd_check *c, struct smtpd_check_in *in)
{
    static char out[1100];
    const char *r;

    in->query = query_cb;
    asked_keys[0] = '\0';
    r = run(c, in);
    if (res.verdict == SMTPD_CHECK_NEED) {
        static const char *const qn[] = {"name", "dnsxl", "policy", "mx",
                                         "ns",   "a",     "verify"};

        snprintf(out, sizeof(out), "NEED %s:%s", qn[res.need], res.key);
        return out;
    }
    return r;
}

static int final_sender;

static int
final_cb(void *arg, enum smtpd_check_fact f)
{
    (void) arg;
    return f == SMTPD_CHECK_SENDER_FINAL ? final_sender : 0;
}

/* reject_unknown_sender_domain and _recipient_domain: Postfix's replies
 * for each DNS outcome, and the domains never asked about. */
static void
test_unknown_domain(void **state)
{
    struct cf *cf = conf("smtpd_recipient_restrictions = "
                         "reject_unknown_sender_domain, "
                         "reject_unknown_recipient_domain, permit\n"
                         "smtpd_relay_restrictions = reject\n");
    struct smtpd_check *c;
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *s, *r;

    set(cf, "smtpd_relay_restrictions", "permit_auth_destination, reject");
    c = compile(cf);
    in.auth_dest = 1;
    in.ask = final_cb;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED name:sender.example");
    assert_string_equal(buf_data(res.text), "");
    s = know(SMTPD_CHECK_Q_NAME, "sender.example");
    s->name = 0; /* NXDOMAIN, or no record of any kind */
    assert_string_equal(run_q(c, &in),
                        "450 4.1.8 <alice@sender.example>: Sender address "
                        "rejected: Domain not found");
    s->name = SMTPD_CHECK_NAME_NULLMX;
    assert_string_equal(run_q(c, &in),
                        "550 5.7.27 <alice@sender.example>: Sender address "
                        "rejected: Domain sender.example does not accept mail "
                        "(nullMX)");
    s->name = SMTPD_CHECK_NAME_INVAL;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.8 <alice@sender.example>: Sender address "
                        "rejected: Malformed DNS server reply");
    s->name = SMTPD_CHECK_NAME_ADDR; /* an A record will do */
    assert_string_equal(run_q(c, &in), "NEED name:rcpt.example");
    r = know(SMTPD_CHECK_Q_NAME, "rcpt.example");
    r->name = SMTPD_CHECK_NAME_MX;
    assert_string_equal(run_q(c, &in), "PASS");
    r->name = SMTPD_CHECK_NAME_NULLMX;
    assert_string_equal(run_q(c, &in),
                        "556 5.1.10 <bob@rcpt.example>: Recipient address "
                        "rejected: Domain rcpt.example does not accept mail "
                        "(nullMX)");
    r->name = 0;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.2 <bob@rcpt.example>: Recipient address "
                        "rejected: Domain not found");
    /* a temporary failure defers, but only a request that would pass */
    r->name = SMTPD_CHECK_NAME_TEMP;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.2 <bob@rcpt.example>: Recipient address "
                        "rejected: Domain not found");
    in.auth_dest = 0; /* now the relay list rejects: that wins */
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Recipient address "
                        "rejected: Access denied");
    in.auth_dest = 1;
    /* not asked: <>, a literal, a local-part only, our own domain */
    r->name = SMTPD_CHECK_NAME_MX;
    in.sender = "";
    assert_string_equal(run_q(c, &in), "PASS");
    in.sender = "alice@[192.0.2.1]";
    assert_string_equal(run_q(c, &in), "PASS");
    in.sender = "alice";
    assert_string_equal(run_q(c, &in), "PASS");
    in.sender = "alice@ours.example";
    final_sender = 1;
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(asked_keys, "name:rcpt.example ");
    final_sender = 0;
    /* a domain too long to be a key: not asked for (and no loop) */
    {
        char longaddr[700];

        memset(longaddr, 'a', sizeof(longaddr) - 1);
        longaddr[sizeof(longaddr) - 1] = '\0';
        longaddr[1] = '@';
        in.sender = longaddr;
        assert_string_equal(run_q(c, &in), "PASS");
        assert_string_equal(asked_keys, "name:rcpt.example ");
    }
    smtpd_check_free(c);

    /* the codes and the tempfail action are the operator's */
    set(cf, "unknown_address_reject_code", "550");
    set(cf, "unknown_address_tempfail_action", "defer");
    c = compile(cf);
    in.sender = "alice@sender.example";
    s->name = 0;
    assert_string_equal(run_q(c, &in),
                        "550 5.1.8 <alice@sender.example>: Sender address "
                        "rejected: Domain not found");
    s->name = SMTPD_CHECK_NAME_TEMP;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.8 <alice@sender.example>: Sender address "
                        "rejected: Domain not found");
    smtpd_check_free(c);
    cf_free(cf);
}

/* check_S_{mx,ns,a}_access: Postfix's check_server_access, with the
 * servers the caller found (smtpd_check_in.query). */
static void
test_server_access(void **state)
{
    struct cf *cf = conf(
        "smtpd_client_restrictions = check_client_mx_access inline:{ "
        "{ mx.bad.example = REJECT bad mx }, { 198.51.100 = REJECT bad net }, "
        "{ mx.exempt.example = DUNNO }, { ok.example = OK } }\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *a;
    static const char *addr1[] = {"192.0.2.1"}, *addr2[] = {"198.51.100.9"};
    static const char *many[101];
    struct smtpd_check_srv v[2] = {{"mx1.other.example", NULL, addr1, 1},
                                   {"mx.bad.example", NULL, addr1, 1}};

    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED mx:mail.client.example");
    a = know(SMTPD_CHECK_Q_MX, "mail.client.example");
    a->srv.v = v;
    a->srv.n = 2;
    /* names, then addresses, server by server, in order */
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <mail.client.example[192.0.2.7]>: Client "
                        "host rejected: bad mx");
    v[0].addr = addr2;
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <mail.client.example[192.0.2.7]>: Client "
                        "host rejected: bad net");
    /* the first entry found decides, DUNNO too */
    v[0].name = "mx.exempt.example";
    assert_string_equal(run_q(c, &in), "PASS");
    /* an MX host that is an address ("198.51.100.3" in the record) */
    v[0].name = "198.51.100.3";
    v[0].addr = addr1;
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <mail.client.example[192.0.2.7]>: Client "
                        "host rejected: bad net");
    /* OK (here a parent domain's) is not allowed */
    v[0].name = "mx.ok.example";
    assert_string_equal(run_q(c, &in), "451 4.3.5 Server configuration error");
    assert_string_equal(
        buf_data(logs),
        "warning: restriction check_client_mx_access returns OK for "
        "mail.client.example\n"
        "warning: this is not allowed for security reasons\n"
        "warning: use DUNNO instead of OK if you want to make an exception\n");
    /* a server without addresses: a warning, the next one judged */
    v[0].name = "mx1.other.example";
    v[0].naddr = 0;
    v[0].why = "Host not found";
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <mail.client.example[192.0.2.7]>: Client "
                        "host rejected: bad mx");
    assert_string_equal(buf_data(logs),
                        "warning: Unable to look up MX host mx1.other.example "
                        "for Client host mail.client.example[192.0.2.7]: Host "
                        "not found\n");
    /* a null MX decides nothing; a failed lookup warns */
    a->srv.status = SMTPD_CHECK_SRV_NULLMX;
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(logs), "");
    a->srv.status = SMTPD_CHECK_SRV_FAILED;
    a->srv.why = "Host not found, try again";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(logs),
                        "warning: Unable to look up MX host for "
                        "mail.client.example: Host not found, try again\n");
    /* at most 100 addresses in all */
    for (size_t i = 0; i < 101; i++)
        many[i] = i < 100 ? "192.0.2.9" : "198.51.100.9";
    v[0].why = NULL;
    v[0].addr = many;
    v[0].naddr = 101;
    a->srv.status = SMTPD_CHECK_SRV_OK;
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(logs),
                        "warning: check_server_access: MX server address "
                        "count limit (100) exceeded for Client host "
                        "mail.client.example[192.0.2.7] -- ignoring the "
                        "remainder\n");
    /* no client name: nothing to ask */
    in.name = "unknown";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(asked_keys, "");
    smtpd_check_free(c);
    cf_free(cf);

    /* NS: the parents' servers while a name has none */
    cf = conf("smtpd_client_restrictions = check_reverse_client_ns_access "
              "inline:{ { ns.bad.example = REJECT bad ns } }\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    in.rev_name = "host.sub.rev.example";
    nknown = 0;
    memset(v, 0, sizeof(v));
    v[0].name = "ns.bad.example";
    assert_string_equal(run_q(c, &in), "NEED ns:host.sub.rev.example");
    know(SMTPD_CHECK_Q_NS, "host.sub.rev.example")->srv.status =
        SMTPD_CHECK_SRV_NOTFOUND;
    assert_string_equal(run_q(c, &in), "NEED ns:sub.rev.example");
    know(SMTPD_CHECK_Q_NS, "sub.rev.example")->srv.status =
        SMTPD_CHECK_SRV_NOTFOUND;
    assert_string_equal(run_q(c, &in), "NEED ns:rev.example");
    a = know(SMTPD_CHECK_Q_NS, "rev.example");
    a->srv.v = v;
    a->srv.n = 1;
    v[0].why = "Host not found";
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <host.sub.rev.example>: Unverified Client "
                        "host rejected: bad ns");
    a->srv.status = SMTPD_CHECK_SRV_NOTFOUND;
    a->srv.why = "Host not found";
    assert_string_equal(run_q(c, &in), "NEED ns:example");
    know(SMTPD_CHECK_Q_NS, "example")->srv.status = SMTPD_CHECK_SRV_NOTFOUND;
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(logs),
                        "warning: Unable to look up NS host for "
                        "host.sub.rev.example: Host not found\n");
    smtpd_check_free(c);
    cf_free(cf);

    /* A: the addresses only, never the name; address literals */
    cf = conf("smtpd_helo_restrictions = check_helo_mx_access inline:{ "
              "{ 192.0.2.99 = REJECT helo literal } }\n"
              "smtpd_sender_restrictions = check_sender_a_access inline:{ "
              "{ 192.0.2 = REJECT bad a }, { sender.example = REJECT by name "
              "} }, check_sender_ns_access inline:{ { 192.0.2 = REJECT ns } "
              "}\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    nknown = 0;
    in.helo = "[192.0.2.99]";
    assert_string_equal(run_q(c, &in), "554 5.7.1 <[192.0.2.99]>: Helo "
                                       "command rejected: helo literal");
    assert_string_equal(asked_keys, "");
    in.helo = "[IPv6:2001:db8::1]";
    assert_string_equal(run_q(c, &in), "NEED a:sender.example");
    a = know(SMTPD_CHECK_Q_A, "sender.example");
    memset(v, 0, sizeof(v));
    v[0].name = "sender.example";
    v[0].addr = (const char *[]){"192.0.2.44"};
    v[0].naddr = 1;
    a->srv.v = v;
    a->srv.n = 1;
    assert_string_equal(run_q(c, &in), "554 5.7.1 <alice@sender.example>: "
                                       "Sender address rejected: bad a");
    v[0].addr = addr2;
    assert_string_equal(run_q(c, &in), "NEED ns:sender.example");
    /* a literal: its own server for _a_ (and _mx_), none for _ns_ */
    in.sender = "alice@[192.0.2.5]";
    assert_string_equal(run_q(c, &in), "554 5.7.1 <alice@[192.0.2.5]>: "
                                       "Sender address rejected: bad a");
    in.sender = "alice@[198.51.100.5]";
    assert_string_equal(run_q(c, &in), "PASS");
    in.sender = "alice@[bogus]";
    assert_string_equal(run_q(c, &in), "PASS");
    in.sender = "alice@"; /* no domain: nothing to ask about */
    assert_string_equal(run_q(c, &in), "PASS");
    in.sender = "";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(asked_keys, "");
    in.helo = "[192.0.2.999]";
    assert_string_equal(run_q(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);

    /* without a table: an error naming it */
    cf = conf("smtpd_recipient_restrictions = reject_unauth_destination, "
              "check_recipient_ns_access\n");
    assert_null(smtpd_check_new(cf, err, warn));
    assert_string_equal(buf_data(err),
                        "smtpd_recipient_restrictions: "
                        "check_recipient_ns_access: missing TYPE:TABLE after "
                        "it");
    cf_free(cf);
}

/* reject_plaintext_session, reject_multi_recipient_bounce,
 * check_sasl_access, reject_known_sender_login_mismatch. */
static void
test_session_restrictions(void **state)
{
    struct cf *cf =
        conf("smtpd_client_restrictions = reject_plaintext_session\n"
             "smtpd_recipient_restrictions = reject_multi_recipient_bounce, "
             "check_sasl_access inline:{ alice=REJECT, { b\001b = REJECT "
             "odd } }, reject_unauth_destination\n"
             "smtpd_data_restrictions = reject_multi_recipient_bounce\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    assert_string_equal(buf_data(warn), "");
    in.auth_dest = 1;
    assert_string_equal(run(c, &in),
                        "450 4.7.1 Session encryption is required");
    in.encrypted = 1;
    assert_string_equal(run(c, &in), "PASS");
    /* the null sender: one recipient, not two */
    in.sender = "";
    assert_string_equal(run(c, &in), "PASS");
    in.nrcpt = 1; /* one accepted before this RCPT */
    assert_string_equal(run(c, &in), "550 5.5.3 <bob@rcpt.example>: "
                                     "Recipient address rejected: "
                                     "Multi-recipient bounce");
    in.rcpt = NULL; /* at DATA: one in all is fine */
    assert_string_equal(run(c, &in), "PASS");
    in.nrcpt = 2;
    assert_string_equal(run(c, &in), "550 5.5.3 <DATA>: Data command "
                                     "rejected: Multi-recipient bounce");
    in.sender = "alice@sender.example";
    assert_string_equal(run(c, &in), "PASS");
    in.rcpt = "bob@rcpt.example";
    /* the SASL login name as the key, when logged in */
    in.sasl_user = "alice";
    assert_string_equal(run(c, &in), "PASS");
    in.authenticated = 1;
    assert_string_equal(run(c, &in), "554 5.7.1 <alice>: SASL login name "
                                     "rejected: Access denied");
    in.sasl_user = "alice@sender.example"; /* the whole name, no parts */
    assert_string_equal(run(c, &in), "PASS");
    in.sasl_user = "b\001b";
    assert_string_equal(run(c, &in), "554 5.7.1 <b_b>: SASL login name "
                                     "rejected: odd");
    smtpd_check_free(c);

    set(cf, "plaintext_reject_code", "554");
    set(cf, "multi_recipient_bounce_reject_code", "450");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    assert_string_equal(run(c, &in),
                        "554 5.7.1 Session encryption is required");
    in.encrypted = 1;
    in.sender = "";
    in.nrcpt = 3;
    assert_string_equal(run(c, &in), "450 4.5.3 <bob@rcpt.example>: "
                                     "Recipient address rejected: "
                                     "Multi-recipient bounce");
    smtpd_check_free(c);
    cf_free(cf);

    cf = conf("smtpd_sender_login_maps = inline:{ a@s.example=alice }\n"
              "smtpd_sender_restrictions = "
              "reject_known_sender_login_mismatch\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    in.sender = "a@s.example";
    assert_string_equal(run(c, &in), "553 5.7.1 <a@s.example>: Sender "
                                     "address rejected: not logged in");
    in.authenticated = 1;
    in.sasl_user = "bob";
    assert_string_equal(run(c, &in), "553 5.7.1 <a@s.example>: Sender "
                                     "address rejected: not owned by user "
                                     "bob");
    in.sasl_user = "alice";
    assert_string_equal(run(c, &in), "PASS");
    in.sasl_user = "bob"; /* a sender the maps do not know: allowed */
    in.sender = "other@s.example";
    assert_string_equal(run(c, &in), "PASS");
    in.authenticated = 0;
    in.sasl_user = NULL;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);

    /* codes outside 4xx and 5xx */
    cf = conf("plaintext_reject_code = 250\n");
    assert_null(smtpd_check_new(cf, err, warn));
    assert_string_equal(buf_data(err),
                        "plaintext_reject_code: 250 is not a 4xx or 5xx code");
    cf_free(cf);
}

/* Facts for the recipient tables: ours.example is ours (mydestination),
 * relay.example and open.example are relay domains, virt.example a
 * virtual alias domain. */
static int
unlisted_ask(void *arg, enum smtpd_check_fact f)
{
    const struct smtpd_check_in *in = arg;
    const char *a = f == SMTPD_CHECK_SENDER_FINAL
                            || f == SMTPD_CHECK_SENDER_RELAY
                            || f == SMTPD_CHECK_SENDER_VALIAS
                        ? in->sender
                        : in->rcpt;
    const char *at = a ? strrchr(a, '@') : NULL;

    if (at == NULL)
        return 0;
    if (f == SMTPD_CHECK_SENDER_FINAL || f == SMTPD_CHECK_RCPT_FINAL)
        return strcasecmp(at + 1, "ours.example") == 0;
    if (f == SMTPD_CHECK_SENDER_RELAY || f == SMTPD_CHECK_RCPT_RELAY)
        return strcasecmp(at + 1, "relay.example") == 0
               || strcasecmp(at + 1, "open.example") == 0;
    if (f == SMTPD_CHECK_SENDER_VALIAS || f == SMTPD_CHECK_RCPT_VALIAS)
        return strcasecmp(at + 1, "virt.example") == 0;
    return 0;
}

/* reject_unlisted_recipient / _sender and smtpd_reject_unlisted_*:
 * local_recipient_maps for our domains, relay_recipient_maps for relay
 * domains, Postfix's keys and replies. */
/* smtpd_end_of_data_restrictions: its own list, named <END-OF-MESSAGE>
 * and "End-of-data" in replies; the DATA list does not run there. */
static void
test_eod(void **state)
{
    struct cf *cf = conf("smtpd_end_of_data_restrictions = "
                         "check_sender_access inline:{ "
                         "{spam@example.org=REJECT no more} }, "
                         "reject_multi_recipient_bounce\n"
                         "smtpd_data_restrictions = reject\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    (void) state;
    assert_int_equal(smtpd_check_eod_used(c), 1);
    in.rcpt = NULL;
    in.nrcpt = 1;
    smtpd_check_eod(c, &in, &res);
    assert_int_equal(res.verdict, SMTPD_CHECK_PASS);
    in.sender = "spam@example.org";
    smtpd_check_eod(c, &in, &res);
    assert_int_equal(res.verdict, SMTPD_CHECK_REJECT);
    assert_string_equal(buf_data(res.text),
                        "<spam@example.org>: Sender address rejected: no "
                        "more");
    in.sender = "";
    in.nrcpt = 2;
    smtpd_check_eod(c, &in, &res);
    assert_int_equal(res.verdict, SMTPD_CHECK_REJECT);
    assert_int_equal(res.code, 550);
    assert_string_equal(buf_data(res.text),
                        "<END-OF-MESSAGE>: End-of-data rejected: "
                        "Multi-recipient bounce");
    smtpd_check_free(c);
    set(cf, "smtpd_end_of_data_restrictions", "reject");
    set(cf, "smtpd_data_restrictions", "");
    c = compile(cf);
    in.nrcpt = 1;
    smtpd_check_eod(c, &in, &res);
    assert_string_equal(buf_data(res.text),
                        "<END-OF-MESSAGE>: End-of-data rejected: Access "
                        "denied");
    assert_int_equal(smtpd_check_data_used(c), 0);
    smtpd_check_free(c);
    set(cf, "smtpd_end_of_data_restrictions", "");
    c = compile(cf);
    assert_int_equal(smtpd_check_eod_used(c), 0);
    smtpd_check_free(c);
    cf_free(cf);
}

/* virtual_alias_maps: what it lists is a valid recipient in any
 * domain; in virtual_alias_domains nothing else is. */
static void
test_unlisted_valias(void **state)
{
    struct cf *cf =
        conf("local_recipient_maps = inline:{ alice=x }\n"
             "virtual_alias_maps = inline:{ virt.example=domain, "
             "info@virt.example=alice, "
             "sales@ours.example=alice@ours.example, @catch.example=x }\n"
             "recipient_delimiter = +\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    static const char *const pass[] = {
        "info@virt.example",  "info+tag@virt.example", "sales@ours.example",
        "alice@ours.example", "anyone@catch.example",
    };

    (void) state;
    in.auth_dest = 1;
    in.ask = unlisted_ask;
    in.arg = &in;
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        in.rcpt = pass[i];
        if (strcmp(run(c, &in), "PASS") != 0)
            fail_msg("%s: %s", pass[i], run(c, &in));
    }
    in.rcpt = "nobody@virt.example";
    assert_string_equal(run(c, &in), "550 5.1.1 <nobody@virt.example>: "
                                     "Recipient address rejected: User "
                                     "unknown in virtual alias table");
    in.rcpt = "nobody@ours.example";
    assert_string_equal(run(c, &in), "550 5.1.1 <nobody@ours.example>: "
                                     "Recipient address rejected: User "
                                     "unknown in local recipient table");
    smtpd_check_free(c);
    set(cf, "unknown_virtual_alias_reject_code", "450");
    c = compile(cf);
    in.rcpt = "nobody@virt.example";
    assert_string_equal(run(c, &in), "450 4.1.1 <nobody@virt.example>: "
                                     "Recipient address rejected: User "
                                     "unknown in virtual alias table");
    smtpd_check_free(c);
    set(cf, "unknown_virtual_alias_reject_code", "250");
    buf_reset(err);
    assert_null(smtpd_check_new(cf, err, NULL));
    assert_string_equal(buf_data(err), "unknown_virtual_alias_reject_code: "
                                       "250 is not a 4xx or 5xx code");
    /* the domain classes, in Postfix's order; tables and negation */
    set(cf, "unknown_virtual_alias_reject_code", "550");
    set(cf, "mydestination", "ours.example, !.ours.example, .sub.ours.example");
    set(cf, "relay_domains", "inline:{ relay.example=OK }, .sub.ours.example");
    c = compile(cf);
    assert_int_equal(smtpd_check_dclass(c, "Ours.Example"),
                     SMTPD_CHECK_D_LOCAL);
    assert_int_equal(smtpd_check_dclass(c, "a.sub.ours.example"),
                     SMTPD_CHECK_D_RELAY);
    assert_int_equal(smtpd_check_dclass(c, "virt.example"),
                     SMTPD_CHECK_D_VALIAS); /* a key of virtual_alias_maps */
    assert_int_equal(smtpd_check_dclass(c, "x.relay.example"),
                     SMTPD_CHECK_D_OTHER);
    assert_int_equal(smtpd_check_dclass(c, "relay.example"),
                     SMTPD_CHECK_D_RELAY);
    assert_int_equal(smtpd_check_dclass(c, "other.example"),
                     SMTPD_CHECK_D_OTHER);
    smtpd_check_free(c);
    set(cf, "relay_domains", "/nonexistent/relay_domains");
    buf_reset(err);
    assert_null(smtpd_check_new(cf, err, NULL));
    assert_string_equal(buf_data(err), "relay_domains: cannot open "
                                       "/nonexistent/relay_domains: No such "
                                       "file or directory");
    cf_free(cf);
}

static void
test_unlisted(void **state)
{
    static const char *const pass[] = {
        "alice@ours.example",         "alice+tag@ours.example",
        "ALICE@Ours.Example",         "bob@ours.example",
        "postmaster@ours.example",    "MAILER-DAEMON@ours.example",
        "double-bounce@ours.example", "carol@relay.example",
        "anyone@open.example",        "dave@elsewhere.example",
        "dave@[192.0.2.1]",           "dave",
    };
    struct cf *cf = conf("local_recipient_maps = inline:{ alice=x, "
                         "bob@ours.example=x }\n"
                         "relay_recipient_maps = inline:{ "
                         "carol@relay.example=x, @open.example=x }\n"
                         "recipient_delimiter = +\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.auth_dest = 1;
    in.ask = unlisted_ask;
    in.arg = &in;
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        in.rcpt = pass[i];
        if (strcmp(run(c, &in), "PASS") != 0)
            fail_msg("%s: %s", pass[i], run(c, &in));
    }
    in.rcpt = "dave@ours.example";
    assert_string_equal(run(c, &in), "550 5.1.1 <dave@ours.example>: "
                                     "Recipient address rejected: User "
                                     "unknown in local recipient table");
    in.rcpt = "bob+x@ours.example"; /* bob@ours.example, not bob alone */
    assert_string_equal(run(c, &in), "PASS");
    in.rcpt = "dan@relay.example";
    assert_string_equal(run(c, &in), "550 5.1.1 <dan@relay.example>: "
                                     "Recipient address rejected: User "
                                     "unknown in relay recipient table");
    /* the sender is not checked unless asked for */
    in.rcpt = "alice@ours.example";
    in.sender = "dave@ours.example";
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);

    /* the sender too; the codes and words are the operator's */
    set(cf, "smtpd_reject_unlisted_sender", "yes");
    set(cf, "unknown_local_recipient_reject_code", "450");
    set(cf, "show_user_unknown_table_name", "no");
    c = compile(cf);
    assert_string_equal(run(c, &in), "450 4.1.0 <dave@ours.example>: Sender "
                                     "address rejected: User unknown");
    in.sender = "";
    in.rcpt = "eve@ours.example";
    assert_string_equal(run(c, &in), "450 4.1.1 <eve@ours.example>: "
                                     "Recipient address rejected: User "
                                     "unknown");
    smtpd_check_free(c);

    /* off: only the restriction in a list checks; warn_if_reject before
     * it only warns, and then the implicit check still rejects */
    set(cf, "smtpd_reject_unlisted_sender", "no");
    set(cf, "smtpd_reject_unlisted_recipient", "no");
    c = compile(cf);
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    set(cf, "smtpd_recipient_restrictions",
        "reject_unlisted_recipient, reject_unauth_destination");
    c = compile(cf);
    assert_string_equal(run(c, &in), "450 4.1.1 <eve@ours.example>: "
                                     "Recipient address rejected: User "
                                     "unknown");
    smtpd_check_free(c);
    set(cf, "smtpd_reject_unlisted_recipient", "yes");
    set(cf, "smtpd_recipient_restrictions",
        "warn_if_reject, reject_unlisted_recipient, "
        "reject_unauth_destination");
    c = compile(cf);
    assert_string_equal(run(c, &in), "450 4.1.1 <eve@ours.example>: "
                                     "Recipient address rejected: User "
                                     "unknown");
    assert_string_equal(buf_data(logs),
                        "reject_warning: 450 4.1.1 <eve@ours.example>: "
                        "Recipient address rejected: User unknown\n");
    smtpd_check_free(c);
    /* a table not made yet: left out with a warning; the addresses the
     * others do not list wait */
    set(cf, "local_recipient_maps",
        "inline:{ alice=x }, proxy:hash:/nonexistent/aliases");
    c = compile(cf);
    assert_string_equal(
        buf_data(warn),
        "local_recipient_maps: proxy:hash:/nonexistent/aliases: "
        "its .db file does not exist (newaliases or postmap "
        "makes it): the addresses it would list are deferred "
        "with 451 4.3.0 until it does\n");
    assert_string_equal(run(c, &in), "451 4.3.0 <eve@ours.example>: "
                                     "Recipient address rejected: Temporary "
                                     "lookup failure");
    in.rcpt = "alice@ours.example";
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    /* reject_unlisted_sender in the sender list */
    set(cf, "smtpd_recipient_restrictions", "reject_unauth_destination");
    set(cf, "smtpd_sender_restrictions", "reject_unlisted_sender");
    c = compile(cf);
    in.rcpt = "alice@ours.example";
    in.sender = "frank@relay.example";
    assert_string_equal(run(c, &in), "550 5.1.0 <frank@relay.example>: "
                                     "Sender address rejected: User "
                                     "unknown");
    smtpd_check_free(c);
    cf_free(cf);
}

/* permit_rhswl_client: the client name in an allow list permits, for
 * recipients of ours only; its failure defers a later 5xx. */
static void
test_rhswl(void **state)
{
    struct cf *cf = conf("smtpd_relay_restrictions =\n"
                         "smtpd_recipient_restrictions = "
                         "permit_rhswl_client wl.example=127.0.0.2, "
                         "reject_rhsbl_client dbl.example, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *w, *b;

    assert_string_equal(buf_data(warn), "");
    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in),
                        "NEED dnsxl:mail.client.example.wl.example");
    w = know(SMTPD_CHECK_Q_DNSXL, "mail.client.example.wl.example");
    listed_at(w, 0, 2);
    assert_string_equal(run_q(c, &in), "PASS");
    listed_at(w, 0, 3); /* the filter wants 127.0.0.2 */
    assert_string_equal(run_q(c, &in),
                        "NEED dnsxl:mail.client.example.dbl.example");
    b = know(SMTPD_CHECK_Q_DNSXL, "mail.client.example.dbl.example");
    listed_at(b, 0, 2);
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 Service unavailable; Client host "
                        "[mail.client.example] blocked using dbl.example");
    w->dnsxl.listed = -1;
    assert_string_equal(run_q(c, &in), "450 4.7.1 <mail.client.example>: "
                                       "Client host rejected: Service "
                                       "unavailable");
    /* a recipient elsewhere: the allow list is not even asked */
    listed_at(w, 0, 2);
    in.auth_dest = 0;
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 Service unavailable; Client host "
                        "[mail.client.example] blocked using dbl.example");
    assert_string_equal(asked_keys, "dnsxl:mail.client.example.dbl.example ");
    smtpd_check_free(c);
    cf_free(cf);
}

/* permit_tls_clientcerts (relay_clientcerts), permit_tls_all_clientcerts,
 * check_ccert_access. */
static void
test_ccert(void **state)
{
    struct cf *cf = conf("relay_clientcerts = inline:{ AA:BB=x, CC:DD=y }\n"
                         "smtpd_relay_restrictions = permit_tls_clientcerts, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    assert_string_equal(buf_data(warn), "");
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    in.encrypted = 1;
    in.ccert = 1; /* not trusted: the fingerprint is what counts */
    in.ccert_cn = "client.example";
    in.ccert_fp = "AA:BB";
    in.ccert_pkey_fp = "00:11";
    assert_string_equal(run(c, &in), "PASS");
    in.ccert_fp = "00:22"; /* the public key's */
    in.ccert_pkey_fp = "cc:dd";
    assert_string_equal(run(c, &in), "PASS");
    in.ccert_pkey_fp = "00:11";
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    smtpd_check_free(c);

    set(cf, "smtpd_relay_restrictions",
        "permit_tls_all_clientcerts, reject_unauth_destination");
    set(cf, "smtpd_recipient_restrictions",
        "check_ccert_access inline:{ { 00:22 = REJECT withdrawn } }");
    c = compile(cf);
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    in.ccert = 2; /* trusted: relays, and then the table judges it */
    assert_string_equal(run(c, &in), "554 5.7.1 <client.example>: Client "
                                     "certificate rejected: withdrawn");
    in.ccert_fp = "00:33";
    assert_string_equal(run(c, &in), "PASS");
    in.ccert = 0; /* no certificate: nothing to look up */
    in.ccert_fp = "00:22";
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_unknown_helo(void **state)
{
    struct cf *cf = conf("smtpd_helo_restrictions = "
                         "reject_unknown_helo_hostname\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *h;

    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED name:mail.client.example");
    h = know(SMTPD_CHECK_Q_NAME, "mail.client.example");
    assert_string_equal(run_q(c, &in),
                        "450 4.7.1 <mail.client.example>: Helo command "
                        "rejected: Host not found");
    h->name = SMTPD_CHECK_NAME_NULLMX; /* an MTA's name may have one */
    assert_string_equal(run_q(c, &in), "PASS");
    h->name = SMTPD_CHECK_NAME_TEMP;
    assert_string_equal(run_q(c, &in),
                        "450 4.7.1 <mail.client.example>: Helo command "
                        "rejected: Host not found");
    in.helo = "[192.0.2.300]";
    assert_string_equal(run_q(c, &in),
                        "501 5.5.2 <[192.0.2.300]>: Helo command rejected: "
                        "invalid ip address");
    in.helo = "[192.0.2.3]";
    assert_string_equal(run_q(c, &in), "PASS");
    in.helo = NULL;
    assert_string_equal(run_q(c, &in), "PASS");
    /* without a resolver (no query callback) it is skipped */
    in.helo = "other.example";
    in.query = NULL;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_rhsbl(void **state)
{
    struct cf *cf = conf("smtpd_recipient_restrictions = "
                         "reject_rhsbl_client dbl.example, "
                         "reject_rhsbl_helo dbl.example=127.0.1.[2..9], "
                         "reject_rhsbl_sender dbl.example, "
                         "reject_rhsbl_recipient rhs.example, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *a;

    in.auth_dest = 1;
    in.helo = "helo.example";
    nknown = 0;
    assert_string_equal(run_q(c, &in),
                        "NEED dnsxl:mail.client.example.dbl.example");
    know(SMTPD_CHECK_Q_DNSXL, "mail.client.example.dbl.example");
    assert_string_equal(run_q(c, &in), "NEED dnsxl:helo.example.dbl.example");
    a = know(SMTPD_CHECK_Q_DNSXL, "helo.example.dbl.example");
    listed_at(a, 1, 1); /* not in the filter */
    assert_string_equal(run_q(c, &in), "NEED dnsxl:sender.example.dbl.example");
    a = know(SMTPD_CHECK_Q_DNSXL, "sender.example.dbl.example");
    listed_at(a, 1, 2);
    snprintf(a->dnsxl.txt, sizeof(a->dnsxl.txt), "see https://dbl/x");
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 Service unavailable; Sender address "
                        "[alice@sender.example] blocked using dbl.example; "
                        "see https://dbl/x");
    a->dnsxl.listed = -1; /* a failed lookup lists nothing */
    assert_string_equal(run_q(c, &in), "NEED dnsxl:rcpt.example.rhs.example");
    a = know(SMTPD_CHECK_Q_DNSXL, "rcpt.example.rhs.example");
    listed_at(a, 0, 2);
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 Service unavailable; Recipient address "
                        "[bob@rcpt.example] blocked using rhs.example");
    /* not asked: an unknown client name, a literal, a numeric name */
    a->dnsxl.listed = 0;
    in.name = "unknown";
    in.helo = "[192.0.2.1]";
    in.sender = "x@192.0.2.1";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(asked_keys, "dnsxl:rcpt.example.rhs.example ");
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_policy(void **state)
{
    struct cf *cf = conf("smtpd_relay_restrictions =\n"
                         "smtpd_recipient_restrictions = "
                         "check_policy_service inet:127.0.0.1:10023, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *a;

    assert_int_equal(smtpd_check_policy_count(c), 1);
    assert_string_equal(smtpd_check_policy_server(c, 0),
                        "inet:127.0.0.1:10023");
    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED policy:inet:127.0.0.1:10023");
    a = know(SMTPD_CHECK_Q_POLICY, "inet:127.0.0.1:10023");
    a->action = "DUNNO";
    assert_string_equal(run_q(c, &in), "PASS");
    /* postgrey's answer: deferred, unless a later restriction rejects */
    a->action = "DEFER_IF_PERMIT Greylisted, see http://grey.example/";
    assert_string_equal(run_q(c, &in),
                        "450 4.7.1 <bob@rcpt.example>: Recipient address "
                        "rejected: Greylisted, see http://grey.example/");
    in.auth_dest = 0;
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    a->action = "OK"; /* a policy server may permit: the list ends */
    assert_string_equal(run_q(c, &in), "PASS");
    in.auth_dest = 1;
    a->action = "550 5.7.1 quota exceeded";
    assert_string_equal(run_q(c, &in),
                        "550 5.7.1 <bob@rcpt.example>: Recipient address "
                        "rejected: quota exceeded");
    a->action = "DEFER_IF_REJECT 4.7.0 try later";
    assert_string_equal(run_q(c, &in), "PASS");
    /* postgrey's pass: a header for the message */
    a->action = "PREPEND X-Greylist: delayed 62 seconds by postgrey-1.37";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(res.prepend),
                        "X-Greylist: delayed 62 seconds by postgrey-1.37\n");
    a->action = "PREPEND no header here"; /* logged, ignored */
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(res.prepend), "");
    a->action = "PREPEND X-Ctl: a\001b";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_string_equal(buf_data(res.prepend), "");
    a->action = NULL; /* the server failed */
    assert_string_equal(run_q(c, &in),
                        "451 4.3.5 <bob@rcpt.example>: Recipient address "
                        "rejected: Server configuration problem");
    a->action = "WHATEVER";
    assert_string_equal(run_q(c, &in), "451 4.3.5 Server configuration error");
    smtpd_check_free(c);
    set(cf, "smtpd_policy_service_default_action", "DUNNO");
    c = compile(cf);
    a->action = NULL;
    assert_string_equal(run_q(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
}

/* reject_unverified_recipient and _sender: the verify service's answer
 * into Postfix's replies, codes, reasons and tempfail actions. */
static void
test_verify(void **state)
{
    struct cf *cf = conf("smtpd_relay_restrictions =\n"
                         "smtpd_recipient_restrictions = "
                         "reject_unverified_recipient, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *a;
    const char *said = "host mx.rcpt.example[192.0.2.25] said: 550 5.1.1 "
                       "User unknown (in reply to RCPT TO command)";

    assert_string_equal(buf_data(warn), "");
    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED verify:bob@rcpt.example");
    a = know(SMTPD_CHECK_Q_VERIFY, "bob@rcpt.example");
    a->verify.status = SMTPD_CHECK_VRFY_OK;
    a->verify.why = "250 2.1.5 Ok";
    assert_string_equal(run_q(c, &in), "PASS");
    /* undeliverable, Postfix's default code 450: "unverified address",
     * deferred only if nothing else rejects */
    a->verify.status = SMTPD_CHECK_VRFY_BOUNCE;
    a->verify.why = said;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: unverified address: host "
                        "mx.rcpt.example[192.0.2.25] said: 550 5.1.1 User "
                        "unknown (in reply to RCPT TO command)");
    in.auth_dest = 0;
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Relay access denied");
    in.auth_dest = 1;
    a->verify.status = SMTPD_CHECK_VRFY_TODO;
    a->verify.why = "Address verification in progress";
    assert_string_equal(run_q(c, &in),
                        "450 4.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: unverified address: Address verification "
                        "in progress");
    a->verify.status = SMTPD_CHECK_VRFY_FAILED;
    a->verify.why = NULL;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: address verification problem");
    assert_string_equal(buf_data(logs), "warning: verify service failure\n");
    smtpd_check_free(c);

    set(cf, "unverified_recipient_reject_code", "550");
    set(cf, "unverified_recipient_tempfail_action", "defer");
    c = compile(cf);
    a->verify.status = SMTPD_CHECK_VRFY_BOUNCE;
    a->verify.why = said;
    assert_string_equal(run_q(c, &in),
                        "550 5.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: undeliverable address: host "
                        "mx.rcpt.example[192.0.2.25] said: 550 5.1.1 User "
                        "unknown (in reply to RCPT TO command)");
    /* defer: at once, before reject_unauth_destination */
    a->verify.status = SMTPD_CHECK_VRFY_DEFER;
    a->verify.why = "connect to mx.rcpt.example[192.0.2.25]:25: Connection "
                    "refused";
    in.auth_dest = 0;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: unverified address: connect to "
                        "mx.rcpt.example[192.0.2.25]:25: Connection refused");
    in.auth_dest = 1;
    smtpd_check_free(c);

    set(cf, "unverified_recipient_reject_reason", "Address lookup failure");
    set(cf, "unverified_recipient_defer_code", "250");
    c = compile(cf);
    assert_string_equal(run_q(c, &in), "PASS"); /* 250: accepted anyway */
    a->verify.status = SMTPD_CHECK_VRFY_BOUNCE;
    assert_string_equal(run_q(c, &in),
                        "550 5.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: undeliverable address: Address lookup "
                        "failure");
    smtpd_check_free(c);
    cf_free(cf);

    /* the sender: 4.1.7 / 5.1.7; the null sender is not verified */
    cf = conf("smtpd_sender_restrictions = reject_unverified_sender\n"
              "unverified_sender_reject_code = 550\n");
    c = compile(cf);
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED verify:alice@sender.example");
    a = know(SMTPD_CHECK_Q_VERIFY, "alice@sender.example");
    a->verify.status = SMTPD_CHECK_VRFY_BOUNCE;
    a->verify.why = said;
    assert_string_equal(run_q(c, &in),
                        "550 5.1.7 <alice@sender.example>: Sender address "
                        "rejected: undeliverable address: host "
                        "mx.rcpt.example[192.0.2.25] said: 550 5.1.1 User "
                        "unknown (in reply to RCPT TO command)");
    a->verify.status = SMTPD_CHECK_VRFY_DEFER;
    assert_string_equal(run_q(c, &in),
                        "450 4.1.7 <alice@sender.example>: Sender address "
                        "rejected: unverified address: host "
                        "mx.rcpt.example[192.0.2.25] said: 550 5.1.1 User "
                        "unknown (in reply to RCPT TO command)");
    in.sender = "";
    assert_string_equal(run_q(c, &in), "PASS");
    assert_false(strstr(asked_keys, "verify:") != NULL);
    smtpd_check_free(c);
    cf_free(cf);

    /* codes that are neither 250 nor 4xx/5xx, and unknown actions */
    {
        static const char *const bad[][3] = {
            {"unverified_recipient_reject_code", "200",
             "unverified_recipient_reject_code: 200 is not 250 or a 4xx or "
             "5xx code"},
            {"unverified_sender_defer_code", "600",
             "unverified_sender_defer_code: 600 is not 250 or a 4xx or 5xx "
             "code"},
            {"unverified_sender_tempfail_action", "dunno",
             "unverified_sender_tempfail_action: \"dunno\" is neither "
             "defer_if_permit nor defer"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            cf = conf("smtpd_sender_restrictions = reject_unverified_sender\n");
            set(cf, bad[i][0], bad[i][1]);
            buf_reset(err);
            assert_null(smtpd_check_new(cf, err, warn));
            assert_string_equal(buf_data(err), bad[i][2]);
            cf_free(cf);
        }
    }
    /* an access table's value may name it */
    cf = conf("smtpd_recipient_restrictions = check_recipient_access "
              "inline:{ rcpt.example=reject_unverified_recipient }, "
              "reject_unauth_destination\n");
    c = compile(cf);
    in = req();
    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED verify:bob@rcpt.example");
    a = know(SMTPD_CHECK_Q_VERIFY, "bob@rcpt.example");
    a->verify.status = SMTPD_CHECK_VRFY_BOUNCE;
    a->verify.why = "no";
    assert_string_equal(run_q(c, &in),
                        "450 4.1.1 <bob@rcpt.example>: Recipient address "
                        "rejected: unverified address: no");
    in.rcpt = "carol@other.example";
    assert_string_equal(run_q(c, &in), "PASS");
    smtpd_check_free(c);
    cf_free(cf);
}

/* smtpd_discard_ehlo_keywords: the mask of a list, by address, and the
 * names for the log. */
static void
test_ehlo_mask(void **state)
{
    char out[256];
    struct cf *cf;
    struct smtpd_check *c;
    unsigned m = smtpd_ehlo_mask("pipelining, STARTTLS,dsn  bogus\tauth");

    assert_int_equal(m, SMTPD_EHLO_PIPELINING | SMTPD_EHLO_STARTTLS
                            | SMTPD_EHLO_AUTH | SMTPD_EHLO_OTHER);
    assert_string_equal(smtpd_ehlo_mask_str(m, out, sizeof(out)),
                        "AUTH PIPELINING STARTTLS");
    assert_int_equal(smtpd_ehlo_mask("silent-discard"), SMTPD_EHLO_SILENT);
    assert_int_equal(smtpd_ehlo_mask(""), 0);
    assert_string_equal(
        smtpd_ehlo_mask_str(SMTPD_EHLO_SILENT, out, sizeof(out)), "");
    cf = conf("smtpd_discard_ehlo_keywords = size\n"
              "smtpd_discard_ehlo_keyword_address_maps = "
              "inline:{ 192.0.2.7=8bitmime }\n");
    c = compile(cf);
    assert_int_equal(smtpd_check_ehlo_mask(c, "192.0.2.7"),
                     SMTPD_EHLO_8BITMIME);
    assert_int_equal(smtpd_check_ehlo_mask(c, "192.0.2.8"), SMTPD_EHLO_SIZE);
    smtpd_check_free(c);
    cf_free(cf);
}

/* Postfix's "{ server, name = value, ... }" form: its own settings. */
static void
test_policy_braces(void **state)
{
    const char *spec = "{ inet:127.0.0.1:10023, default_action = DUNNO, "
                       "timeout=5s, policy_context = grey }";
    struct cf *cf = conf("smtpd_relay_restrictions =\n"
                         "smtpd_recipient_restrictions = check_policy_service "
                         "{ inet:127.0.0.1:10023, default_action = DUNNO, "
                         "timeout=5s, policy_context = grey }, "
                         "check_policy_service inet:127.0.0.1:10023, "
                         "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *a;
    char server[SMTPD_CHECK_KEY_MAX];
    struct cf *o;

    assert_int_equal(smtpd_check_policy_count(c), 2);
    assert_string_equal(smtpd_check_policy_server(c, 0), spec);
    o = smtpd_check_policy_cf(cf, spec, server, sizeof(server), err);
    assert_non_null(o);
    assert_string_equal(server, "inet:127.0.0.1:10023");
    assert_int_equal(cf_time(o, "smtpd_policy_service_timeout"), 5);
    assert_string_equal(cf_str(o, "smtpd_policy_service_policy_context"),
                        "grey");
    assert_int_equal(cf_time(o, "smtpd_policy_service_max_idle"), 300);
    cf_free(o);
    in.auth_dest = 1;
    nknown = 0;
    assert_string_equal(run_q(c, &in), "NEED policy:{ inet:127.0.0.1:10023, "
                                       "default_action = DUNNO, timeout=5s, "
                                       "policy_context = grey }");
    a = know(SMTPD_CHECK_Q_POLICY, spec);
    a->action = NULL; /* failed: its own default action, DUNNO */
    assert_string_equal(run_q(c, &in), "NEED policy:inet:127.0.0.1:10023");
    a = know(SMTPD_CHECK_Q_POLICY, "inet:127.0.0.1:10023");
    a->action = NULL; /* failed: main.cf's */
    assert_string_equal(run_q(c, &in),
                        "451 4.3.5 <bob@rcpt.example>: Recipient address "
                        "rejected: Server configuration problem");
    smtpd_check_free(c);
    cf_free(cf);
}

/* defer_if_permit and defer_if_reject, as restrictions. */
static void
test_defer_if(void **state)
{
    struct cf *cf = conf("smtpd_relay_restrictions =\n"
                         "smtpd_recipient_restrictions = defer_if_permit, "
                         "permit_auth_destination, reject\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.auth_dest = 1;
    assert_string_equal(run(c, &in),
                        "450 4.7.0 <bob@rcpt.example>: Recipient address "
                        "rejected: defer_if_permit requested");
    in.auth_dest = 0;
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <bob@rcpt.example>: Recipient address "
                        "rejected: Access denied");
    smtpd_check_free(c);
    set(cf, "smtpd_recipient_restrictions",
        "defer_if_reject, permit_auth_destination, reject");
    c = compile(cf);
    assert_string_equal(run(c, &in),
                        "450 4.7.0 <bob@rcpt.example>: Recipient address "
                        "rejected: defer_if_reject requested");
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    /* under warn_if_reject a defer_if_permit is only logged */
    set(cf, "smtpd_recipient_restrictions",
        "warn_if_reject, defer_if_permit, permit_auth_destination, reject");
    c = compile(cf);
    assert_string_equal(run(c, &in), "PASS");
    assert_string_equal(buf_data(logs),
                        "reject_warning: 450 4.7.0 <bob@rcpt.example>: "
                        "Recipient address rejected: defer_if_permit "
                        "requested\n");
    smtpd_check_free(c);
    cf_free(cf);
}

/* The client's names: confirmed, reverse only, none, failed for now. */
static void
test_client_names(void **state)
{
    struct cf *cf = conf("smtpd_client_restrictions = "
                         "reject_unknown_reverse_client_hostname, "
                         "check_reverse_client_hostname_access "
                         "inline:{ bad.example=REJECT }, "
                         "reject_rhsbl_reverse_client dbl.example, "
                         "reject_unknown_client_hostname\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();
    struct smtpd_check_ans *a;

    in.auth_dest = 1;
    in.rev_name = "mail.client.example";
    nknown = 0;
    assert_string_equal(run_q(c, &in),
                        "NEED dnsxl:mail.client.example.dbl.example");
    know(SMTPD_CHECK_Q_DNSXL, "mail.client.example.dbl.example");
    assert_string_equal(run_q(c, &in), "PASS");
    /* a reverse name the forward lookup does not confirm */
    in.name = "unknown";
    in.name_status = SMTPD_CHECK_NAME_NONE;
    assert_string_equal(run_q(c, &in),
                        "450 4.7.25 Client host rejected: cannot find your "
                        "hostname, [192.0.2.7]");
    in.name_status = SMTPD_CHECK_NAME_FAILED;
    assert_string_equal(run_q(c, &in),
                        "450 4.7.25 Client host rejected: cannot find your "
                        "hostname, [192.0.2.7]");
    /* no reverse name at all: the reverse check refuses first */
    in.rev_name = "unknown";
    in.rev_status = SMTPD_CHECK_NAME_NONE;
    in.name_status = SMTPD_CHECK_NAME_NONE;
    assert_string_equal(run_q(c, &in),
                        "450 4.7.1 Client host rejected: cannot find your "
                        "reverse hostname, [192.0.2.7]");
    /* the reverse name in the access table and in the DNS list */
    in.rev_status = SMTPD_CHECK_NAME_FOUND;
    in.rev_name = "mx.bad.example";
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 <mx.bad.example>: Unverified Client host "
                        "rejected: Access denied");
    in.rev_name = "spam.example";
    assert_string_equal(run_q(c, &in), "NEED dnsxl:spam.example.dbl.example");
    a = know(SMTPD_CHECK_Q_DNSXL, "spam.example.dbl.example");
    listed_at(a, 0, 2);
    assert_string_equal(run_q(c, &in),
                        "554 5.7.1 Service unavailable; Unverified Client "
                        "host [spam.example] blocked using dbl.example");
    smtpd_check_free(c);
    set(cf, "unknown_client_reject_code", "550");
    set(cf, "smtpd_client_restrictions", "reject_unknown_client_hostname");
    c = compile(cf);
    assert_string_equal(run_q(c, &in),
                        "550 5.7.25 Client host rejected: cannot find your "
                        "hostname, [192.0.2.7]");
    in.name_status = SMTPD_CHECK_NAME_FAILED; /* for now: 450 all the same */
    assert_string_equal(run_q(c, &in),
                        "450 4.7.25 Client host rejected: cannot find your "
                        "hostname, [192.0.2.7]");
    smtpd_check_free(c);
    cf_free(cf);
}

/* smtpd_restriction_classes: named lists of the operator's own, used as
 * a restriction and as an access table's result. */
static void
test_classes(void **state)
{
    struct cf *cf =
        conf("smtpd_restriction_classes = from_freemail, strict\n"
             "from_freemail = check_sender_access inline:{ "
             "{ spam@free.example = REJECT no freemail spam } }, permit\n"
             "strict = reject_non_fqdn_sender, from_freemail\n"
             "smtpd_relay_restrictions =\n"
             "smtpd_recipient_restrictions = check_recipient_access "
             "inline:{ sales@rcpt.example=strict }, from_freemail, "
             "reject_unauth_destination\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.rcpt = "sales@rcpt.example";
    in.sender = "alice";
    assert_string_equal(run(c, &in),
                        "504 5.5.2 <alice>: Sender address rejected: need "
                        "fully-qualified address");
    in.rcpt = "bob@rcpt.example";
    in.sender = "spam@free.example";
    assert_string_equal(run(c, &in),
                        "554 5.7.1 <spam@free.example>: Sender address "
                        "rejected: no freemail spam");
    in.sender = "alice@sender.example"; /* the class's permit ends the list */
    assert_string_equal(run(c, &in), "PASS");
    smtpd_check_free(c);
    /* warn_if_reject before a class covers what is in it */
    set(cf, "smtpd_recipient_restrictions",
        "warn_if_reject, strict, reject_unauth_destination");
    c = compile(cf);
    in.sender = "alice";
    in.auth_dest = 1;
    assert_string_equal(run(c, &in), "PASS");
    assert_non_null(strstr(buf_data(logs), "reject_warning: 504 5.5.2"));
    smtpd_check_free(c);
    /* a class without its parameter */
    set(cf, "smtpd_restriction_classes", "from_freemail, nosuchclass");
    buf_reset(err);
    assert_null(smtpd_check_new(cf, err, NULL));
    assert_string_equal(buf_data(err),
                        "smtpd_restriction_classes: no parameter nosuchclass "
                        "defined in main.cf");
    cf_free(cf);
}

/* reject_unauth_pipelining: the caller says whether the client sent
 * ahead where it may not. */
static void
test_unauth_pipelining(void **state)
{
    struct cf *cf =
        conf("smtpd_data_restrictions = reject_unauth_pipelining\n");
    struct smtpd_check *c = compile(cf);
    struct smtpd_check_in in = req();

    in.rcpt = NULL;
    in.ask = ask_cb;
    memset(asked, 0, sizeof(asked));
    answer[SMTPD_CHECK_PIPELINED] = 0;
    assert_string_equal(run(c, &in), "PASS");
    answer[SMTPD_CHECK_PIPELINED] = 1;
    assert_string_equal(run(c, &in),
                        "503 5.5.0 <DATA>: Data command rejected: Improper "
                        "use of SMTP command pipelining");
    assert_int_equal(asked[SMTPD_CHECK_PIPELINED], 2);
    answer[SMTPD_CHECK_PIPELINED] = 0;
    smtpd_check_free(c);
    cf_free(cf);
}

static void
test_network_conf_errors(void **state)
{
    static const char *const bad[][2] = {
        {"smtpd_recipient_restrictions = check_policy_service, "
         "reject_unauth_destination\n",
         "check_policy_service: \"reject_unauth_destination\" is not a policy "
         "server"},
        {"smtpd_recipient_restrictions = reject_unauth_destination, "
         "check_policy_service\n",
         "check_policy_service: \"\" is not a policy server"},
        {"smtpd_recipient_restrictions = check_policy_service inet:localhost, "
         "reject_unauth_destination\n",
         "check_policy_service: inet:localhost: no port"},
        {"smtpd_recipient_restrictions = reject_unauth_destination, "
         "reject_rhsbl_sender\n",
         "reject_rhsbl_sender: missing DNS list domain"},
        {"unknown_address_tempfail_action = maybe\n",
         "unknown_address_tempfail_action: \"maybe\" is neither "
         "defer_if_permit nor defer"},
        {"unknown_hostname_reject_code = 250\n",
         "unknown_hostname_reject_code: 250 is not a 4xx or 5xx code"},
        {"smtpd_recipient_restrictions = check_policy_service "
         "{ inet:127.0.0.1:9, timeout = soon }, reject_unauth_destination\n",
         "check_policy_service: inet:127.0.0.1:9: bad time value for "
         "parameter smtpd_policy_service_timeout: soon"},
        {"smtpd_recipient_restrictions = check_policy_service "
         "{ inet:127.0.0.1:9, colour = blue }, reject_unauth_destination\n",
         "check_policy_service: inet:127.0.0.1:9: \"colour = blue\" is not one "
         "of default_action"},
        {"smtpd_recipient_restrictions = check_policy_service "
         "{ inet:127.0.0.1:9, default_action = maybe }, "
         "reject_unauth_destination\n",
         "check_policy_service inet:127.0.0.1:9: default_action \"maybe\" is "
         "not an access action"},
        {"smtpd_recipient_restrictions = check_policy_service { timeout=1s }, "
         "reject_unauth_destination\n",
         "check_policy_service: \"timeout=1s\" is not a policy server"},
        {"smtpd_policy_service_default_action = whatever\n",
         "smtpd_policy_service_default_action: \"whatever\" is not an access "
         "action"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cf *cf = conf(bad[i][0]);
        struct smtpd_check *c;

        buf_reset(err);
        c = smtpd_check_new(cf, err, NULL);
        assert_null(c);
        if (strstr(buf_data(err), bad[i][1]) == NULL)
            fail_msg("%s: %s", bad[i][0], buf_data(err));
        cf_free(cf);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_hostnames),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_warn_if_reject),
        cmocka_unit_test(test_login_mismatch),
        cmocka_unit_test(test_ask),
        cmocka_unit_test(test_conf_errors),

        cmocka_unit_test(test_rbl),
        cmocka_unit_test(test_rbl_bad),
        cmocka_unit_test(test_skipped),
        cmocka_unit_test(test_unknown_domain),
        cmocka_unit_test(test_server_access),
        cmocka_unit_test(test_session_restrictions),
        cmocka_unit_test(test_unlisted),
        cmocka_unit_test(test_unlisted_valias),
        cmocka_unit_test(test_eod),
        cmocka_unit_test(test_rhswl),
        cmocka_unit_test(test_ccert),
        cmocka_unit_test(test_unknown_helo),
        cmocka_unit_test(test_rhsbl),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_ehlo_mask),
        cmocka_unit_test(test_policy_braces),
        cmocka_unit_test(test_defer_if),
        cmocka_unit_test(test_unauth_pipelining),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_client_names),
        cmocka_unit_test(test_network_conf_errors),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
