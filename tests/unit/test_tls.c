/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_tls.c - lib/tls.c: Postfix's protocol lists give the versions
 * OpenSSL is told (the lowest, the highest, the ones excluded between
 * them), bad lists are refused with the name at fault; a certificate and
 * key load, and a missing file, a file without a key and a key of
 * another certificate are refused with the reason an operator needs.
 * The certificates are made by the openssl command in a temporary
 * directory (skipped without it).
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

#include "lib/buf.h"
#include "lib/tls.h"

static void
check_ok(const char *spec, int minv, int maxv, long no_opts)
{
    struct buf *err = buf_new(64, 4096);
    int lo = -1, hi = -1;
    long no = -1;

    if (tls_protocols(spec, &lo, &hi, &no, err) != 0)
        fail_msg("\"%s\": %s", spec, buf_data(err));
    if (lo != minv || hi != maxv || no != no_opts)
        fail_msg("\"%s\": min %x max %x no %lx, want %x %x %lx", spec, lo, hi,
                 no, minv, maxv, no_opts);
    buf_free(err);
}

static void
check_bad(const char *spec, const char *why)
{
    struct buf *err = buf_new(64, 4096);
    int lo, hi;
    long no;

    assert_int_equal(tls_protocols(spec, &lo, &hi, &no, err), -1);
    if (strstr(buf_data(err), why) == NULL)
        fail_msg("\"%s\": error \"%s\" does not say \"%s\"", spec,
                 buf_data(err), why);
    buf_free(err);
}

static void
test_protocols(void **state)
{
    (void) state;
    /* Postfix's default and the empty list: everything OpenSSL has */
    check_ok("!SSLv2, !SSLv3", TLS1_VERSION, TLS1_3_VERSION, 0);
    check_ok("", SSL3_VERSION, TLS1_3_VERSION, 0);
    check_ok(NULL, SSL3_VERSION, TLS1_3_VERSION, 0);
    check_ok("!SSLv2 !SSLv3 !TLSv1 !TLSv1.1", TLS1_2_VERSION, TLS1_3_VERSION,
             0);
    check_ok("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", TLS1_2_VERSION, TLS1_3_VERSION,
             0);
    check_ok(">=TLSv1.2", TLS1_2_VERSION, TLS1_3_VERSION, 0);
    check_ok(">=TLSv1.3", TLS1_3_VERSION, TLS1_3_VERSION, 0);
    check_ok("<=TLSv1.2, >=TLSv1.1", TLS1_1_VERSION, TLS1_2_VERSION, 0);
    check_ok("TLSv1.2", TLS1_2_VERSION, TLS1_2_VERSION, 0);
    check_ok("tlsv1.2, TLSv1.3", TLS1_2_VERSION, TLS1_3_VERSION, 0);
    /* a hole between the ends is an SSL_OP_NO_ option */
    check_ok("!SSLv3, !TLSv1.2", TLS1_VERSION, TLS1_3_VERSION,
             SSL_OP_NO_TLSv1_2);
    check_ok("TLSv1, TLSv1.3", TLS1_VERSION, TLS1_3_VERSION,
             SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2);
    check_bad("!SSLv2, TLSv1.4", "unknown TLS protocol \"TLSv1.4\"");
    check_bad(">=TLSv9", "unknown TLS protocol \">=TLSv9\"");
    check_bad("!", "unknown TLS protocol \"!\"");
    check_bad("SSLv2", "no TLS protocol left");
    check_bad(">=TLSv1.3, <=TLSv1.2", "no TLS protocol left");
    check_bad("!SSLv3 !TLSv1 !TLSv1.1 !TLSv1.2 !TLSv1.3",
              "no TLS protocol left");
}

static char dir[] = "/tmp/test_tls.XXXXXX";

static int
sh(const char *cmd)
{
    char line[2048];

    snprintf(line, sizeof(line), "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(line);
}

static int
setup(void **state)
{
    (void) state;
    if (mkdtemp(dir) == NULL)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    char line[256];

    (void) state;
    snprintf(line, sizeof(line), "rm -rf %s", dir);
    return system(line) == 0 ? 0 : -1;
}

static void
load(const char *cert, const char *key, const char *protocols, const char *want)
{
    struct buf *err = buf_new(64, 4096);
    char c[512], k[512];
    struct tls_srv *t;

    snprintf(c, sizeof(c), "%s/%s", dir, cert);
    snprintf(k, sizeof(k), "%s/%s", dir, key ? key : "");
    t = tls_srv_new(c, key == NULL ? NULL : *key ? k : "", protocols, err);
    if (want == NULL) {
        if (t == NULL)
            fail_msg("%s, %s: %s", cert, key ? key : "-", buf_data(err));
        SSL *ssl = tls_srv_ssl(t, 0);
        assert_non_null(ssl);
        SSL_free(ssl);
    } else {
        if (t != NULL)
            fail_msg("%s, %s: loaded, want \"%s\"", cert, key ? key : "-",
                     want);
        if (strstr(buf_data(err), want) == NULL)
            fail_msg("%s, %s: error \"%s\" does not say \"%s\"", cert,
                     key ? key : "-", buf_data(err), want);
    }
    tls_srv_free(t);
    buf_free(err);
}

static void
test_load(void **state)
{
    (void) state;
    if (sh("openssl version") != 0)
        skip();
    assert_int_equal(sh("openssl req -x509 -newkey rsa:2048 -nodes "
                        "-keyout k1.pem -out c1.pem -days 2 -subj /CN=one"),
                     0);
    assert_int_equal(sh("openssl req -x509 -newkey ec -pkeyopt "
                        "ec_paramgen_curve:P-256 -nodes -keyout k2.pem "
                        "-out c2.pem -days 2 -subj /CN=two"),
                     0);
    assert_int_equal(sh("openssl req -x509 -newkey rsa:2048 -nodes "
                        "-keyout k3.pem -out c3.pem -days 2 -subj /CN=three"),
                     0);
    assert_int_equal(sh("cat c1.pem k1.pem > both.pem"), 0);
    load("c1.pem", "k1.pem", "!SSLv2, !SSLv3", NULL);
    load("c2.pem", "k2.pem", ">=TLSv1.2", NULL);
    load("both.pem", NULL, "", NULL); /* the key in the certificate file */
    load("both.pem", "", "", NULL);
    load("none.pem", "k1.pem", "", "cannot get certificate from file \"");
    load("none.pem", "k1.pem", "", "none.pem\": No such file or directory");
    load("c1.pem", "none.pem", "", "cannot get private key from file \"");
    load("c1.pem", NULL, "", "cannot get private key from file \"");
    load("k1.pem", "k1.pem", "", "cannot get certificate from file \"");
    /* another pair's key: of the same type (RSA), of another (EC) */
    load("c1.pem", "k3.pem", "", "certificate and private key do not match");
    load("c1.pem", "k2.pem", "", "certificate and private key do not match");
    load("c1.pem", "k1.pem", "TLSv2", "unknown TLS protocol \"TLSv2\"");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocols),
        cmocka_unit_test(test_load),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
