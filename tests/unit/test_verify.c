/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_verify.c - the address verification service (queue/verify.c):
 * its request parser, and the cache over the socket as a front sees it:
 * when an address is probed, what is answered while a probe is out,
 * refresh and expiry (on a clock the test turns), a failed probe that
 * must not clobber an ok answer, negative caching off, the limit on
 * probes out, a probe that cannot start, and a malformed request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/wpool.h"
#include "queue/verify.h"

static void
test_parse(void **state)
{
    char addr[64];
    size_t used = 0;
    const char two[] = "request=verify\naddress=a@b\n\nrequest=verify\n";

    (void) state;
    assert_int_equal(verify_parse_request("request=verify\naddress=u@x\n\n", 28,
                                          addr, sizeof(addr), &used),
                     1);
    assert_string_equal(addr, "u@x");
    assert_int_equal(used, 28);
    /* CRLF lines, attributes it does not know, any order */
    assert_int_equal(
        verify_parse_request("address=v@y\r\nx=1\r\nrequest=verify\r\n\r\n", 36,
                             addr, sizeof(addr), &used),
        1);
    assert_string_equal(addr, "v@y");
    /* the first of two requests */
    assert_int_equal(
        verify_parse_request(two, sizeof(two) - 1, addr, sizeof(addr), &used),
        1);
    assert_int_equal(used, 28);
    /* not complete yet */
    assert_int_equal(verify_parse_request("request=verify\naddr", 19, addr,
                                          sizeof(addr), &used),
                     0);
    /* malformed: no request=verify, no address, an empty one, a line
     * without '=', a NUL, an address too long */
    assert_int_equal(
        verify_parse_request("address=a@b\n\n", 13, addr, sizeof(addr), &used),
        -1);
    assert_int_equal(verify_parse_request("request=verify\n\n", 16, addr,
                                          sizeof(addr), &used),
                     -1);
    assert_int_equal(verify_parse_request("request=verify\naddress=\n\n", 25,
                                          addr, sizeof(addr), &used),
                     -1);
    assert_int_equal(verify_parse_request("request=verify\nhello\n\n", 22, addr,
                                          sizeof(addr), &used),
                     -1);
    assert_int_equal(verify_parse_request("request=verify\naddress=a\0b\n\n",
                                          28, addr, sizeof(addr), &used),
                     -1);
    assert_int_equal(
        verify_parse_request("request=verify\naddress=aaaaaaaaaa\n\n", 35, addr,
                             8, &used),
        -1);
    /* VERIFY_REQUEST_MAX bytes without an end */
    {
        char *big = malloc(VERIFY_REQUEST_MAX);

        memset(big, 'x', VERIFY_REQUEST_MAX);
        memcpy(big, "a=", 2);
        assert_int_equal(verify_parse_request(big, VERIFY_REQUEST_MAX, addr,
                                              sizeof(addr), &used),
                         -1);
        free(big);
    }
    assert_int_equal(verify_status_parse("ok 250 2.1.5 Ok"), VERIFY_OK);
    assert_int_equal(verify_status_parse("bounce"), VERIFY_BOUNCE);
    assert_int_equal(verify_status_parse("todo x"), VERIFY_TODO);
    assert_int_equal(verify_status_parse("defer x"), VERIFY_DEFER);
    assert_int_equal(verify_status_parse("okay"), -1);
    assert_int_equal(verify_status_parse(""), -1);
    assert_string_equal(verify_status_name(VERIFY_BOUNCE), "bounce");
}

/* ---- the service ---- */

static long long now = 1700000000;
static long long
fake_clock(void)
{
    return now;
}

static char probed[1024]; /* "addr addr ..." of the probes started */
static int probe_fails;
static struct verify *probe_v; /* for the outcomes known at once */

static int
probe_cb(void *arg, const char *addr)
{
    (void) arg;
    if (probe_fails)
        return -1;
    if (strncmp(addr, "local@", 6) == 0) /* as the qmgr answers local mail */
        verify_result(probe_v, addr, VERIFY_OK, "delivers to mailbox");
    if (strncmp(addr, "noroute@", 8) == 0)
        verify_result(probe_v, addr, VERIFY_BOUNCE, "no route");
    snprintf(probed + strlen(probed), sizeof(probed) - strlen(probed), "%s ",
             addr);
    return 0;
}

struct svc {
    char dir[64];
    struct ev_loop *loop;
    struct wpool *pool;
    struct verify *v;
    struct cf *cf;
    int fd;
};

/* The service on a queue directory of its own (dir: an existing one, or
 * NULL for a new one); conf may say $DIR for it. */
static void
svc_start(struct svc *s, const char *dir, const char *conf)
{
    struct buf *err = buf_new(256, BUF_NOCAP), *c = buf_new(256, BUF_NOCAP);
    char path[128];
    struct sockaddr_un sun;
    const char *p;

    if (dir == NULL) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/test_verify.XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(path, sizeof(path), "%s/public", s->dir);
        assert_int_equal(mkdir(path, 0700), 0);
    } else
        snprintf(s->dir, sizeof(s->dir), "%s", dir);
    for (p = conf; *p; p++)
        if (strncmp(p, "$DIR", 4) == 0) {
            buf_puts(c, s->dir);
            p += 3;
        } else
            buf_putc(c, *p);
    s->cf = cf_new();
    if (cf_parse_main(s->cf, buf_data(c), buf_len(c), "main.cf", err) < 0
        || cf_check(s->cf, err) < 0)
        fail_msg("%s", buf_data(err));
    buf_free(c);
    s->loop = ev_loop_new(0);
    s->pool = wpool_new(s->loop, 1, "test", 0);
    s->v = verify_new(s->loop, s->pool, s->cf, s->dir, probe_cb, NULL, err);
    if (s->v == NULL)
        fail_msg("%s", buf_data(err));
    probe_v = s->v;
    buf_free(err);
    s->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/public/verify", s->dir);
    assert_int_equal(connect(s->fd, (struct sockaddr *) &sun, sizeof(sun)), 0);
    probed[0] = '\0';
    probe_fails = 0;
}

/* keep: leave the directory (and the map in it) for the next start */
static void
svc_stop(struct svc *s, int keep)
{
    char path[128];

    close(s->fd);
    wpool_free(s->pool);
    verify_free(s->v);
    snprintf(path, sizeof(path), "%s/public/verify", s->dir);
    assert_int_equal(access(path, F_OK), -1); /* unlinked */
    if (!keep) {
        snprintf(path, sizeof(path), "%s/vc.db", s->dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/public", s->dir);
        rmdir(path);
        assert_int_equal(rmdir(s->dir), 0);
    }
    ev_loop_destroy(s->loop);
    cf_free(s->cf);
}

/* Send raw bytes; the service's answer up to its empty line (without
 * "action=" and the line ends), "" when it closed the connection. */
static const char *
svc_raw(struct svc *s, const char *req, size_t len)
{
    static char out[1024];
    size_t n = 0;

    assert_int_equal(send(s->fd, req, len, 0), (ssize_t) len);
    for (int i = 0; i < 2000; i++) {
        ssize_t k;

        ev_run(s->loop, EVRUN_NOWAIT);
        k = recv(s->fd, out + n, sizeof(out) - 1 - n, MSG_DONTWAIT);
        if (k == 0)
            return "";
        if (k > 0)
            n += (size_t) k;
        out[n] = '\0';
        if (n >= 2 && strcmp(out + n - 2, "\n\n") == 0) {
            assert_memory_equal(out, "action=", 7);
            out[n - 2] = '\0';
            return out + 7;
        }
        usleep(1000);
    }
    fail_msg("no answer");
    return NULL;
}

static const char *
ask(struct svc *s, const char *addr)
{
    char req[512];
    int n = snprintf(req, sizeof(req), "request=verify\naddress=%s\n\n", addr);

    probed[0] = '\0';
    return svc_raw(s, req, (size_t) n);
}

static void
test_cache(void **state)
{
    struct svc s;

    (void) state;
    verify_clock = fake_clock;
    svc_start(&s, NULL, "");
    /* the first question: no answer yet, one probe */
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "u@x ");
    /* while it is out: the same answer, no second probe */
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "");
    verify_result(s.v, "u@x", VERIFY_OK, "250 2.1.5 Ok");
    assert_string_equal(ask(&s, "u@x"), "ok 250 2.1.5 Ok");
    assert_string_equal(probed, "");
    /* past address_verify_positive_refresh_time (7d): answered and
     * probed again */
    now += 7 * 86400 + 1;
    assert_string_equal(ask(&s, "u@x"), "ok 250 2.1.5 Ok");
    assert_string_equal(probed, "u@x ");
    /* a failed probe does not clobber the ok answer; the next question
     * probes again */
    verify_result(s.v, "u@x", VERIFY_BOUNCE, "550 no");
    assert_string_equal(ask(&s, "u@x"), "ok 250 2.1.5 Ok");
    assert_string_equal(probed, "u@x ");
    /* past address_verify_positive_expire_time (31d): as unknown, and
     * the probe of 31 days ago is taken as lost */
    now += 31 * 86400;
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "u@x ");
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "");
    now += VERIFY_PROBE_TTL + 1; /* no answer in VERIFY_PROBE_TTL: again */
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "u@x ");

    /* undeliverable: kept for address_verify_negative_refresh_time (3h),
     * then answered and probed again; after _expire_time (3d) unknown */
    assert_string_equal(ask(&s, "bad@x"),
                        "todo Address verification in progress");
    verify_result(s.v, "bad@x", VERIFY_BOUNCE, "host h[192.0.2.1] said: 550");
    assert_string_equal(ask(&s, "bad@x"), "bounce host h[192.0.2.1] said: 550");
    assert_string_equal(probed, "");
    now += 3 * 3600 + 1;
    assert_string_equal(ask(&s, "bad@x"), "bounce host h[192.0.2.1] said: 550");
    assert_string_equal(probed, "bad@x ");
    verify_result(s.v, "bad@x", VERIFY_DEFER, "connect to h: refused");
    assert_string_equal(ask(&s, "bad@x"), "defer connect to h: refused");
    now += 3 * 86400 + 1;
    assert_string_equal(ask(&s, "bad@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "bad@x ");

    /* an outcome the probe knows at once is the first answer */
    assert_string_equal(ask(&s, "local@x"), "ok delivers to mailbox");
    assert_string_equal(probed, "local@x ");
    assert_string_equal(ask(&s, "local@x"), "ok delivers to mailbox");
    assert_string_equal(probed, "");
    assert_string_equal(ask(&s, "noroute@x"), "bounce no route");

    /* a probe that cannot start: asked again next time */
    probe_fails = 1;
    assert_string_equal(ask(&s, "n@x"),
                        "todo Address verification in progress");
    probe_fails = 0;
    assert_string_equal(ask(&s, "n@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "n@x ");

    /* two requests in one write: two answers */
    {
        const char two[] = "request=verify\naddress=u@x\n\n"
                           "request=verify\naddress=bad@x\n\n";
        char out[512];
        size_t n = 0;

        assert_int_equal(send(s.fd, two, sizeof(two) - 1, 0),
                         (ssize_t) sizeof(two) - 1);
        for (int i = 0; i < 2000 && n < 10; i++) {
            ssize_t k;

            ev_run(s.loop, EVRUN_NOWAIT);
            k = recv(s.fd, out + n, sizeof(out) - 1 - n, MSG_DONTWAIT);
            n += k > 0 ? (size_t) k : 0;
            usleep(1000);
        }
        out[n] = '\0';
        assert_string_equal(out, "action=todo Address verification in "
                                 "progress\n\naction=todo Address "
                                 "verification in progress\n\n");
    }
    /* a malformed request: the connection is closed */
    assert_string_equal(svc_raw(&s, "hello\n\n", 7), "");
    svc_stop(&s, 0);
}

static void
test_limits(void **state)
{
    struct svc s;

    (void) state;
    verify_clock = fake_clock;
    svc_start(&s, NULL,
              "address_verify_pending_request_limit = 1\n"
              "address_verify_negative_cache = no\n");
    assert_string_equal(ask(&s, "a@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "a@x ");
    /* one probe out already: none for b@x */
    assert_string_equal(ask(&s, "b@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "");
    verify_result(s.v, "a@x", VERIFY_BOUNCE, "550 no");
    assert_string_equal(ask(&s, "b@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "b@x ");
    verify_result(s.v, "b@x", VERIFY_OK, "250 ok");
    /* negative caching off: the answer is used until it expires, then
     * the entry goes */
    assert_string_equal(ask(&s, "a@x"), "bounce 550 no");
    now += 3 * 86400 + 1;
    assert_string_equal(ask(&s, "a@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "a@x ");
    svc_stop(&s, 0);
}

/* A full cache drops its least recently updated sixteenth; a request
 * over VERIFY_REQUEST_MAX closes its connection. */
static void
test_full(void **state)
{
    struct svc s;
    char a[64], *big;
    long long t0;

    (void) state;
    verify_clock = fake_clock;
    svc_start(&s, NULL, "");
    t0 = now;
    for (int i = 0; i < VERIFY_CACHE_MAX; i++) {
        snprintf(a, sizeof(a), "u%d@x", i);
        now = t0 + i / 100; /* u0..u99 the oldest */
        verify_result(s.v, a, VERIFY_OK, "250 ok");
    }
    assert_string_equal(ask(&s, "u0@x"), "ok 250 ok");
    assert_string_equal(ask(&s, "new@x"),
                        "todo Address verification in progress");
    assert_string_equal(ask(&s, "u0@x"), "todo Address verification in "
                                         "progress");      /* dropped */
    assert_string_equal(ask(&s, "u99999@x"), "ok 250 ok"); /* kept */
    assert_string_equal(ask(&s, "new@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, ""); /* its probe is still out */
    big = malloc(VERIFY_REQUEST_MAX + 100);
    memset(big, 'x', VERIFY_REQUEST_MAX + 100);
    memcpy(big, "address=", 8);
    assert_string_equal(svc_raw(&s, big, VERIFY_REQUEST_MAX + 100), "");
    free(big);
    svc_stop(&s, 0);
}

/* address_verify_map: the answers survive a restart, in Postfix's
 * format; a file that cannot be read is an empty cache. */
static void
test_map(void **state)
{
    struct svc s;
    char val[128], dir[64], path[128];
    enum verify_status st;
    long long pr, updated;
    const char *text;

    (void) state;
    assert_int_equal(verify_entry_format(val, sizeof(val), VERIFY_BOUNCE, 0,
                                         1700000000, "550 5.1.1 no: such"),
                     33);
    assert_string_equal(val, "2:0:1700000000:550 5.1.1 no: such");
    assert_int_equal(verify_entry_parse(val, &st, &pr, &updated, &text), 0);
    assert_int_equal(st, VERIFY_BOUNCE);
    assert_int_equal(pr, 0);
    assert_int_equal(updated, 1700000000);
    assert_string_equal(text, "550 5.1.1 no: such");
    assert_int_equal(verify_entry_format(val, 10, VERIFY_OK, 1, 2, "long"), -1);
    assert_int_equal(verify_entry_parse("4:1:1:x", &st, &pr, &updated, &text),
                     -1);
    assert_int_equal(verify_entry_parse("0:0:0:x", &st, &pr, &updated, &text),
                     -1);
    assert_int_equal(verify_entry_parse("0:1:x:x", &st, &pr, &updated, &text),
                     -1);
    assert_int_equal(verify_entry_parse("0:1:2", &st, &pr, &updated, &text),
                     -1);
    assert_int_equal(verify_entry_parse("0:1:2:", &st, &pr, &updated, &text),
                     0);

    verify_clock = fake_clock;
    verify_save_interval = 0.2;
    svc_start(&s, NULL, "address_verify_map = btree:$DIR/vc\n");
    snprintf(dir, sizeof(dir), "%s", s.dir);
    snprintf(path, sizeof(path), "%s/vc.db", dir);
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    verify_result(s.v, "u@x", VERIFY_OK, "250 2.1.5 Ok");
    assert_string_equal(ask(&s, "bad@x"),
                        "todo Address verification in progress");
    verify_result(s.v, "bad@x", VERIFY_BOUNCE, "550 5.1.1 no");
    assert_string_equal(ask(&s, "out@x"),
                        "todo Address verification in progress");
    svc_stop(&s, 1); /* saved at the stop */
    assert_int_equal(access(path, F_OK), 0);

    svc_start(&s, dir, "address_verify_map = btree:$DIR/vc\n");
    assert_string_equal(ask(&s, "u@x"), "ok 250 2.1.5 Ok");
    assert_string_equal(ask(&s, "bad@x"), "bounce 550 5.1.1 no");
    assert_string_equal(probed, "");
    /* the probe that was out when it stopped: still out */
    assert_string_equal(ask(&s, "out@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "");
    /* a save while it runs, in the pool, after VERIFY_SAVE_INTERVAL */
    verify_result(s.v, "out@x", VERIFY_OK, "250 late");
    {
        struct stat a, b;

        assert_int_equal(stat(path, &a), 0);
        for (int i = 0; i < 1000; i++) {
            ev_run(s.loop, EVRUN_NOWAIT);
            if (stat(path, &b) == 0 && b.st_ino != a.st_ino)
                break;
            usleep(20000);
        }
        assert_int_not_equal(b.st_ino, a.st_ino); /* a new file, renamed */
    }
    svc_stop(&s, 1);
    svc_start(&s, dir, "address_verify_map = btree:$DIR/vc\n");
    assert_string_equal(ask(&s, "out@x"), "ok 250 late");
    svc_stop(&s, 1);

    /* expired answers are not read back */
    now += 32 * 86400;
    svc_start(&s, dir, "address_verify_map = btree:$DIR/vc\n");
    assert_string_equal(ask(&s, "u@x"),
                        "todo Address verification in progress");
    assert_string_equal(probed, "u@x ");
    svc_stop(&s, 1);

    /* not a Berkeley DB file: a warning, an empty cache */
    {
        FILE *f = fopen(path, "w");

        fputs("garbage\n", f);
        fclose(f);
    }
    svc_start(&s, dir, "address_verify_map = btree:$DIR/vc\n");
    assert_string_equal(ask(&s, "bad@x"),
                        "todo Address verification in progress");
    svc_stop(&s, 0);

    /* a table type that cannot be written: an error */
    {
        struct cf *cf = cf_new();
        struct buf *err = buf_new(256, BUF_NOCAP);
        const char *c = "address_verify_map = texthash:/etc/x\n";

        assert_int_equal(cf_parse_main(cf, c, strlen(c), "main.cf", err), 0);
        assert_int_equal(cf_check(cf, err), 0);
        assert_null(verify_new(EV_DEFAULT, NULL, cf, "/nonexistent", probe_cb,
                               NULL, err));
        assert_string_equal(buf_data(err),
                            "address_verify_map: \"texthash:/etc/x\": not a "
                            "table Sluice can write (btree:/path or "
                            "hash:/path)");
        buf_free(err);
        cf_free(cf);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),  cmocka_unit_test(test_cache),
        cmocka_unit_test(test_limits), cmocka_unit_test(test_full),
        cmocka_unit_test(test_map),
    };
    long long (*real)(void) = verify_clock;
    int rc;

    rc = cmocka_run_group_tests(tests, NULL, NULL);
    verify_clock = real;
    return rc;
}
