/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_clamd.c - the clamd INSTREAM client against a fake clamd: a
 * listening socket (127.0.0.1, ::1 or a unix socket in a temp dir) served
 * by a thread that records the command and every chunk and answers as
 * told: clean, FOUND, size limit mid-stream, error text, no answer,
 * close without answer, garbage, a reply too long, OK too early; plus
 * connect refused, bad addresses, framing for several feed patterns,
 * back-pressure and drain against a slow reader, free while in progress.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "filters/clamd.h"

/* ------------------------------------------------------------------ */
/* the fake clamd */

enum fake_mode {
    FK_OK,       /* "stream: OK" */
    FK_FOUND,    /* "stream: Eicar-Test-Signature FOUND" */
    FK_HEUR,     /* "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND" */
    FK_LIMIT,    /* after limit bytes: size limit error, close at once */
    FK_ERRTEXT,  /* "stream: Can't allocate memory ERROR" */
    FK_SILENT,   /* read everything, never answer (until released) */
    FK_CLOSE,    /* read everything, close without a word */
    FK_GARBAGE,  /* control characters, no known form */
    FK_LONG,     /* 5000 bytes without a NUL */
    FK_EARLY_OK, /* "stream: OK" right after the command */
    FK_SLOW,     /* small receive buffer, small reads, pauses; then OK */
    FK_STALL     /* read the command, then nothing (until released) */
};

struct fake {
    enum fake_mode mode;
    int family;
    int lfd;
    char dir[64];
    char spec[160];
    size_t limit;
    int release[2]; /* FK_SILENT waits for a byte here (or client EOF) */
    pthread_t th;
    int joined;
    /* recorded */
    char cmd[10];
    int cmd_ok;
    unsigned char *data;
    size_t len, cap;
    size_t nchunks, maxchunk;
    int terminated; /* the zero-length chunk arrived */
    int got_eof;    /* the client closed before the terminator */
};

/* Read exactly n bytes: 1, 0 on EOF/error. */
static int
readn(int fd, void *p, size_t n, int slow)
{
    size_t got = 0;
    ssize_t r;

    while (got < n) {
        size_t want = n - got;
        if (slow && want > 2048)
            want = 2048;
        r = read(fd, (char *) p + got, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        got += (size_t) r;
        if (slow)
            usleep(300);
    }
    return 1;
}

static void
writes(int fd, const void *p, size_t n)
{
    ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
    (void) r;
}

static void
fake_reply(int fd, const char *s)
{
    writes(fd, s, strlen(s) + 1);
}

static void *
fake_main(void *arg)
{
    struct fake *f = arg;
    unsigned char hdr[4], *chunk = malloc(1 << 20);
    int fd;
    uint32_t n;

    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        goto out;
    if (!readn(fd, f->cmd, sizeof(f->cmd), 0)) {
        f->got_eof = 1;
        goto done;
    }
    f->cmd_ok = memcmp(f->cmd, "zINSTREAM", 10) == 0;
    if (f->mode == FK_STALL) {
        struct pollfd pf = {f->release[0], POLLIN, 0};
        poll(&pf, 1, 10000);
        goto done;
    }
    if (f->mode == FK_EARLY_OK) {
        fake_reply(fd, "stream: OK");
        usleep(200 * 1000);
        goto done;
    }
    for (;;) {
        if (!readn(fd, hdr, 4, 0)) {
            f->got_eof = 1;
            goto done;
        }
        n = (uint32_t) hdr[0] << 24 | (uint32_t) hdr[1] << 16
            | (uint32_t) hdr[2] << 8 | hdr[3];
        if (n == 0) {
            f->terminated = 1;
            break;
        }
        if (n > (1 << 20) || !readn(fd, chunk, n, f->mode == FK_SLOW)) {
            f->got_eof = 1;
            goto done;
        }
        f->nchunks++;
        if (n > f->maxchunk)
            f->maxchunk = n;
        if (f->len + n > f->cap) {
            f->cap = (f->len + n) * 2;
            f->data = realloc(f->data, f->cap);
        }
        memcpy(f->data + f->len, chunk, n);
        f->len += n;
        if (f->mode == FK_LIMIT && f->len > f->limit) {
            fake_reply(fd, "INSTREAM size limit exceeded. ERROR");
            goto done; /* close with unread data: the client gets RST */
        }
    }
    switch (f->mode) {
    case FK_OK:
    case FK_SLOW:
    case FK_EARLY_OK:
    case FK_LIMIT:
        fake_reply(fd, "stream: OK");
        break;
    case FK_FOUND:
        fake_reply(fd, "stream: Eicar-Test-Signature FOUND");
        break;
    case FK_HEUR:
        fake_reply(fd, "stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND");
        break;
    case FK_ERRTEXT:
        fake_reply(fd, "stream: Can't allocate memory ERROR");
        break;
    case FK_STALL:
        break;
    case FK_SILENT: {
        struct pollfd pf[2] = {{fd, POLLIN, 0}, {f->release[0], POLLIN, 0}};
        poll(pf, 2, 10000);
        break;
    }
    case FK_CLOSE:
        break;
    case FK_GARBAGE:
        writes(fd, "\x01\x02hello\r\n\x1b[31m", 13);
        writes(fd, "", 1);
        break;
    case FK_LONG: {
        char *big = malloc(5000);
        memset(big, 'A', 5000);
        writes(fd, big, 5000);
        free(big);
        usleep(200 * 1000);
        break;
    }
    }
done:
    close(fd);
out:
    free(chunk);
    return NULL;
}

static struct fake *
fake_start(enum fake_mode mode, int family)
{
    struct fake *f = calloc(1, sizeof(*f));
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1;

    f->mode = mode;
    f->family = family;
    assert_int_equal(pipe(f->release), 0);
    f->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    memset(&ss, 0, sizeof(ss));
    if (family == AF_UNIX) {
        struct sockaddr_un *su = (struct sockaddr_un *) &ss;
        strcpy(f->dir, "/tmp/test_clamd.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        su->sun_family = AF_UNIX;
        snprintf(su->sun_path, sizeof(su->sun_path), "%s/clamd.sock", f->dir);
        snprintf(f->spec, sizeof(f->spec), "unix:%s", su->sun_path);
        len = sizeof(*su);
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*s4);
    }
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (mode == FK_SLOW || mode == FK_STALL) {
        int small = 4096;
        setsockopt(f->lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    assert_int_equal(bind(f->lfd, (struct sockaddr *) &ss, len), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    if (family != AF_UNIX) {
        len = sizeof(ss);
        getsockname(f->lfd, (struct sockaddr *) &ss, &len);
        if (family == AF_INET6)
            snprintf(f->spec, sizeof(f->spec), "inet:[::1]:%d",
                     ntohs(((struct sockaddr_in6 *) &ss)->sin6_port));
        else
            snprintf(f->spec, sizeof(f->spec), "inet:127.0.0.1:%d",
                     ntohs(((struct sockaddr_in *) &ss)->sin_port));
    }
    f->limit = 100000;
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

/* Release and join the thread; the record stays readable. */
static void
fake_join(struct fake *f)
{
    if (f->joined)
        return;
    writes(f->release[1], "x", 1);
    pthread_join(f->th, NULL);
    f->joined = 1;
}

static void
fake_free(struct fake *f)
{
    char path[128];

    fake_join(f);
    close(f->lfd);
    close(f->release[0]);
    close(f->release[1]);
    if (f->family == AF_UNIX) {
        snprintf(path, sizeof(path), "%s/clamd.sock", f->dir);
        unlink(path);
        rmdir(f->dir);
    }
    free(f->data);
    free(f);
}

/* ------------------------------------------------------------------ */
/* driving a scan */

struct run {
    struct ev_loop *loop;
    struct clamd_scan *c;
    int done;
    enum clamd_result r;
    char text[1024];
    int drains;
    /* producer for the back-pressure tests */
    unsigned char *msg;
    size_t total, sent, piece;
    size_t maxbuf;   /* largest feed() return */
    size_t at_drain; /* buffered after the first feed in a drain */
    int held;        /* producer held back (feed returned > HIGH) */
};

static void
on_done(void *arg, enum clamd_result r, const char *text)
{
    struct run *run = arg;

    run->done++;
    run->r = r;
    snprintf(run->text, sizeof(run->text), "%s", text);
    ev_break(run->loop, EVBREAK_ALL);
}

static void
guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Run the loop until done (or 10 s). */
static void
run_loop(struct run *run, double limit)
{
    ev_timer guard;

    ev_now_update(run->loop); /* the loop's clock is stale between runs */
    ev_timer_init(&guard, guard_cb, limit, 0.);
    ev_timer_start(run->loop, &guard);
    ev_run(run->loop, 0);
    ev_timer_stop(run->loop, &guard);
}

static unsigned char *
pattern(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char) ((i * 7 + 13) % 251);
    return p;
}

/* Scan msg in one feed with the fake in mode; returns the fake (stopped
 * by the caller). */
static struct fake *
scan_once(struct run *run, enum fake_mode mode, int family,
          const unsigned char *msg, size_t n, double timeout)
{
    struct fake *f = fake_start(mode, family);

    memset(run, 0, sizeof(*run));
    run->loop = EV_DEFAULT;
    /* the scan's timer starts from the loop's clock, stale since the last
     * run (by the pattern's making, under a sanitizer on a busy machine
     * more than a 0.3 s timeout) */
    ev_now_update(run->loop);
    run->c = clamd_scan_new(run->loop, f->spec, timeout);
    clamd_scan_feed(run->c, msg, n);
    clamd_scan_end(run->c, on_done, run);
    assert_int_equal(run->done, 0); /* never from inside end */
    run_loop(run, 10.);
    return f;
}

static void
check_stream(const struct fake *f, const unsigned char *msg, size_t n)
{
    assert_true(f->cmd_ok);
    assert_true(f->terminated);
    assert_int_equal(f->len, n);
    assert_memory_equal(f->data, msg, n);
    assert_true(f->maxchunk <= 65536);
}

/* ------------------------------------------------------------------ */
/* verdicts */

static void
test_clean_inet(void **state)
{
    struct run run;
    unsigned char *msg = pattern(5000);
    struct fake *f = scan_once(&run, FK_OK, AF_INET, msg, 5000, 5.);

    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_CLEAN);
    fake_join(f);
    check_stream(f, msg, 5000);
    assert_int_equal(f->nchunks, 1);
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

static void
test_clean_unix(void **state)
{
    struct run run;
    unsigned char *msg = pattern(200000);
    struct fake *f = scan_once(&run, FK_OK, AF_UNIX, msg, 200000, 5.);

    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_CLEAN);
    fake_join(f);
    check_stream(f, msg, 200000);
    assert_int_equal(f->maxchunk, 65536);
    assert_true(f->nchunks >= 4);
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

static void
test_clean_ipv6(void **state)
{
    struct run run;
    unsigned char *msg = pattern(100);
    struct fake *f;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 s6;

    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    s6.sin6_addr = in6addr_loopback;
    if (fd < 0 || bind(fd, (struct sockaddr *) &s6, sizeof(s6)) < 0) {
        if (fd >= 0)
            close(fd);
        free(msg);
        skip();
    }
    close(fd);
    f = scan_once(&run, FK_OK, AF_INET6, msg, 100, 5.);
    assert_string_equal(run.text, "clean");
    assert_int_equal(run.r, CLAMD_CLEAN);
    fake_join(f);
    check_stream(f, msg, 100);
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

static void
test_empty_message(void **state)
{
    struct run run;
    struct fake *f = scan_once(&run, FK_OK, AF_INET, NULL, 0, 5.);

    assert_int_equal(run.r, CLAMD_CLEAN);
    fake_join(f);
    assert_true(f->cmd_ok);
    assert_true(f->terminated);
    assert_int_equal(f->nchunks, 0);
    fake_free(f);
    clamd_scan_free(run.c);
}

static void
test_found(void **state)
{
    struct run run;
    unsigned char *msg = pattern(3000);
    struct fake *f = scan_once(&run, FK_FOUND, AF_INET, msg, 3000, 5.);

    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_VIRUS);
    assert_string_equal(run.text, "Eicar-Test-Signature");
    fake_join(f);
    check_stream(f, msg, 3000);
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

static void
test_heuristics_limit(void **state)
{
    struct run run;
    struct fake *f =
        scan_once(&run, FK_HEUR, AF_UNIX, (const unsigned char *) "x", 1, 5.);

    assert_int_equal(run.r, CLAMD_LIMIT);
    assert_string_equal(run.text, "Heuristics.Limits.Exceeded.MaxFileSize");
    fake_free(f);
    clamd_scan_free(run.c);
}

static void
test_error_text(void **state)
{
    struct run run;
    struct fake *f = scan_once(&run, FK_ERRTEXT, AF_INET,
                               (const unsigned char *) "abc", 3, 5.);

    assert_int_equal(run.r, CLAMD_ERROR);
    assert_string_equal(run.text, "clamd: stream: Can't allocate memory");
    fake_free(f);
    clamd_scan_free(run.c);
}

static void
test_timeout(void **state)
{
    struct run run;
    struct fake *f;
    ev_tstamp t0;

    ev_now_update(EV_DEFAULT);
    t0 = ev_now(EV_DEFAULT);
    f = scan_once(&run, FK_SILENT, AF_INET, (const unsigned char *) "abc", 3,
                  0.3);
    ev_now_update(EV_DEFAULT);
    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_ERROR);
    assert_non_null(strstr(run.text, "timeout waiting for the reply"));
    assert_true(ev_now(EV_DEFAULT) - t0 < 3.);
    assert_true(ev_now(EV_DEFAULT) - t0 >= 0.25);
    fake_join(f);
    assert_true(f->terminated);
    fake_free(f);
    clamd_scan_free(run.c);
}

/* clamd takes the command and then no more bytes: the send times out. */
static void
test_send_timeout(void **state)
{
    struct run run;
    size_t total = 16 * 1024 * 1024;
    unsigned char *msg = pattern(total);
    struct fake *f = scan_once(&run, FK_STALL, AF_INET, msg, total, 0.3);

    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_ERROR);
    assert_non_null(strstr(run.text, "timeout sending the message"));
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

/* A listener whose accept queue is full drops the SYN: the connect
 * itself times out. */
static void
test_connect_timeout(void **state)
{
    struct sockaddr_in s4;
    socklen_t len = sizeof(s4);
    char spec[64];
    int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd[4];
    struct run run;

    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *) &s4, sizeof(s4)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    getsockname(lfd, (struct sockaddr *) &s4, &len);
    for (int i = 0; i < 4; i++) { /* fill the accept queue */
        cfd[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(cfd[i], (struct sockaddr *) &s4, sizeof(s4));
    }
    usleep(50 * 1000);
    snprintf(spec, sizeof(spec), "inet:127.0.0.1:%d", ntohs(s4.sin_port));
    memset(&run, 0, sizeof(run));
    run.loop = EV_DEFAULT;
    ev_now_update(run.loop); /* as in scan_once */
    run.c = clamd_scan_new(run.loop, spec, 0.3);
    clamd_scan_feed(run.c, "abc", 3);
    clamd_scan_end(run.c, on_done, &run);
    run_loop(&run, 5.);
    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_ERROR);
    if (strstr(run.text, "Connection timed out") == NULL)
        fail_msg("got \"%s\"", run.text);
    clamd_scan_free(run.c);
    for (int i = 0; i < 4; i++)
        close(cfd[i]);
    close(lfd);
}

static void
test_close_without_answer(void **state)
{
    struct run run;
    struct fake *f = scan_once(&run, FK_CLOSE, AF_UNIX,
                               (const unsigned char *) "abc", 3, 5.);

    assert_int_equal(run.r, CLAMD_ERROR);
    assert_non_null(strstr(run.text, "connection closed without a reply"));
    assert_non_null(strstr(run.text, f->spec));
    fake_free(f);
    clamd_scan_free(run.c);
}

static void
test_garbage(void **state)
{
    struct run run;
    struct fake *f = scan_once(&run, FK_GARBAGE, AF_INET,
                               (const unsigned char *) "abc", 3, 5.);

    assert_int_equal(run.r, CLAMD_ERROR);
    assert_non_null(strstr(run.text, "unexpected reply"));
    assert_non_null(strstr(run.text, "hello"));
    for (const char *p = run.text; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f); /* safe for logs and SMTP */
    fake_free(f);
    clamd_scan_free(run.c);
}

static void
test_long_reply(void **state)
{
    struct run run;
    struct fake *f =
        scan_once(&run, FK_LONG, AF_INET, (const unsigned char *) "abc", 3, 5.);

    assert_int_equal(run.r, CLAMD_ERROR);
    assert_non_null(strstr(run.text, "reply longer than"));
    fake_free(f);
    clamd_scan_free(run.c);
}

/* An OK before the terminator would pass unscanned bytes: an error. */
static void
test_early_ok(void **state)
{
    struct run run;
    unsigned char *msg = pattern(1000);
    struct fake *f = fake_start(FK_EARLY_OK, AF_INET);

    memset(&run, 0, sizeof(run));
    run.loop = EV_DEFAULT;
    run.c = clamd_scan_new(run.loop, f->spec, 5.);
    clamd_scan_feed(run.c, msg, 1000);
    run_loop(&run, 0.1); /* the reply arrives while streaming */
    assert_int_equal(run.done, 0);
    clamd_scan_feed(run.c, msg, 1000);
    clamd_scan_end(run.c, on_done, &run);
    assert_int_equal(run.done, 0);
    run_loop(&run, 5.);
    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_ERROR);
    assert_non_null(strstr(run.text, "before the end of the stream"));
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

/* ------------------------------------------------------------------ */
/* connecting */

static void
expect_error(const char *spec, const char *want)
{
    struct run run;

    memset(&run, 0, sizeof(run));
    run.loop = EV_DEFAULT;
    run.c = clamd_scan_new(run.loop, spec, 5.);
    assert_non_null(run.c);
    clamd_scan_feed(run.c, "abc", 3);
    clamd_scan_end(run.c, on_done, &run);
    assert_int_equal(run.done, 0);
    run_loop(&run, 5.);
    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_ERROR);
    if (strstr(run.text, want) == NULL)
        fail_msg("\"%s\" lacks \"%s\"", run.text, want);
    clamd_scan_free(run.c);
}

static void
test_connect_refused(void **state)
{
    struct sockaddr_in s4;
    socklen_t len = sizeof(s4);
    char spec[64], want[128];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    s4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *) &s4, sizeof(s4)), 0);
    getsockname(fd, (struct sockaddr *) &s4, &len);
    close(fd); /* nobody listens there now */
    snprintf(spec, sizeof(spec), "inet:127.0.0.1:%d", ntohs(s4.sin_port));
    snprintf(want, sizeof(want), "connect to %s: Connection refused", spec);
    expect_error(spec, want);
}

static void
test_unix_missing(void **state)
{
    expect_error("unix:/nonexistent-sluice/clamd.sock",
                 "connect to unix:/nonexistent-sluice/clamd.sock: "
                 "No such file or directory");
    expect_error("clamd:unix:/nonexistent-sluice/clamd.sock",
                 "No such file or directory");
}

static void
test_bad_spec(void **state)
{
    expect_error("tcp:127.0.0.1:3310", "not unix:/path or inet:host:port");
    expect_error("inet:localhost:3310", "not a numeric address");
    expect_error("inet:127.0.0.1", "not inet:host:port");
    expect_error("inet:[::1", "not inet:host:port");
    expect_error("unix:", "bad socket path");
    expect_error("", "not unix:/path or inet:host:port");
}

/* ------------------------------------------------------------------ */
/* framing and buffering */

static void
test_many_small_feeds(void **state)
{
    struct run run;
    size_t total = 200000, off = 0, k, i = 0;
    unsigned char *msg = pattern(total);
    struct fake *f = fake_start(FK_OK, AF_INET);

    memset(&run, 0, sizeof(run));
    run.loop = EV_DEFAULT;
    run.c = clamd_scan_new(run.loop, f->spec, 5.);
    while (off < total) {
        k = 1 + (i * 13) % 37;
        if (k > total - off)
            k = total - off;
        clamd_scan_feed(run.c, msg + off, k);
        off += k;
        if (++i % 50 == 0)
            ev_run(run.loop, EVRUN_NOWAIT); /* partial sends between feeds */
    }
    clamd_scan_end(run.c, on_done, &run);
    run_loop(&run, 10.);
    assert_int_equal(run.r, CLAMD_CLEAN);
    fake_join(f);
    check_stream(f, msg, total);
    assert_true(f->nchunks > 1);
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

static void
test_big_feed(void **state)
{
    struct run run;
    size_t total = 300001;
    unsigned char *msg = pattern(total);
    struct fake *f = scan_once(&run, FK_OK, AF_UNIX, msg, total, 5.);

    assert_int_equal(run.r, CLAMD_CLEAN);
    fake_join(f);
    check_stream(f, msg, total);
    assert_int_equal(f->maxchunk, 65536);
    assert_int_equal(f->nchunks, 5); /* 4 full chunks and the rest */
    fake_free(f);
    clamd_scan_free(run.c);
    free(msg);
}

/* A caller that holds back while feed() says more than CLAMD_BUF_HIGH
 * waits, and goes on from the drain callback. */
static void
produce(struct run *run)
{
    size_t k, b;

    while (run->sent < run->total) {
        k = run->total - run->sent;
        if (k > run->piece)
            k = run->piece;
        b = clamd_scan_feed(run->c, run->msg + run->sent, k);
        if (run->held && b >= k && b - k > run->at_drain)
            run->at_drain = b - k; /* what was left when drain came */
        run->held = 0;
        run->sent += k;
        if (b > run->maxbuf)
            run->maxbuf = b;
        if (b > CLAMD_BUF_HIGH) {
            run->held = 1;
            return;
        }
    }
    clamd_scan_end(run->c, on_done, run);
}

static void
on_drain(void *arg)
{
    struct run *run = arg;

    run->drains++;
    assert_int_equal(run->held, 1); /* only after having been over */
    produce(run);
}

static struct fake *
scan_produced(struct run *run, enum fake_mode mode, size_t total)
{
    struct fake *f = fake_start(mode, AF_INET);

    memset(run, 0, sizeof(*run));
    run->loop = EV_DEFAULT;
    run->msg = pattern(total);
    run->total = total;
    run->piece = 32768;
    run->c = clamd_scan_new(run->loop, f->spec, 5.);
    clamd_scan_set_drain(run->c, on_drain, run);
    produce(run);
    assert_int_equal(run->done, 0);
    run_loop(run, 20.);
    return f;
}

static void
test_backpressure_drain(void **state)
{
    struct run run;
    size_t total = 3 * 1024 * 1024;
    struct fake *f = scan_produced(&run, FK_SLOW, total);

    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_CLEAN);
    assert_true(run.drains >= 1);
    assert_true(run.maxbuf <= CLAMD_BUF_HIGH + run.piece);
    assert_true(run.at_drain < CLAMD_BUF_HIGH / 2);
    fake_join(f);
    check_stream(f, run.msg, total);
    fake_free(f);
    clamd_scan_free(run.c);
    free(run.msg);
}

/* clamd's StreamMaxLength: it answers mid-stream and closes; the caller
 * held back is released, the result is LIMIT. */
static void
test_size_limit_midstream(void **state)
{
    struct run run;
    size_t total = 4 * 1024 * 1024;
    struct fake *f = scan_produced(&run, FK_LIMIT, total);

    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_LIMIT);
    assert_string_equal(run.text, "clamd: INSTREAM size limit exceeded");
    assert_int_equal(run.sent, total); /* the producer ran to its end */
    fake_join(f);
    assert_false(f->terminated);
    assert_true(f->len > f->limit);
    assert_memory_equal(f->data, run.msg, f->len);
    fake_free(f);
    clamd_scan_free(run.c);
    free(run.msg);
}

/* ------------------------------------------------------------------ */
/* freeing */

static void
test_free_in_progress(void **state)
{
    struct run run;
    unsigned char *msg = pattern(100000);
    struct fake *f = fake_start(FK_SILENT, AF_INET);

    memset(&run, 0, sizeof(run));
    run.loop = EV_DEFAULT;
    run.c = clamd_scan_new(run.loop, f->spec, 5.);
    clamd_scan_feed(run.c, msg, 100000);
    run_loop(&run, 0.2);
    clamd_scan_free(run.c); /* streaming, not ended */
    fake_join(f);
    assert_true(f->got_eof); /* the socket was closed */
    assert_false(f->terminated);
    fake_free(f);

    /* ended, waiting for the reply */
    f = fake_start(FK_SILENT, AF_UNIX);
    run.c = clamd_scan_new(run.loop, f->spec, 5.);
    clamd_scan_feed(run.c, msg, 100);
    clamd_scan_end(run.c, on_done, &run);
    run_loop(&run, 0.2);
    clamd_scan_free(run.c);
    run_loop(&run, 0.2); /* nothing left to fire */
    assert_int_equal(run.done, 0);
    fake_free(f);

    /* before the connect completed, and with a result pending */
    run.c = clamd_scan_new(run.loop, "inet:127.0.0.1:1", 5.);
    clamd_scan_feed(run.c, msg, 100);
    clamd_scan_free(run.c);
    run.c = clamd_scan_new(run.loop, "unix:/nonexistent-sluice/s", 5.);
    clamd_scan_end(run.c, on_done, &run);
    clamd_scan_free(run.c);
    run_loop(&run, 0.2);
    assert_int_equal(run.done, 0);
    clamd_scan_free(NULL);
    free(msg);
}

static void
on_done_free(void *arg, enum clamd_result r, const char *text)
{
    struct run *run = arg;

    on_done(arg, r, text);
    clamd_scan_free(run->c); /* from inside the callback */
    run->c = NULL;
}

static void
test_free_in_done(void **state)
{
    struct run run;
    struct fake *f = fake_start(FK_FOUND, AF_INET);

    memset(&run, 0, sizeof(run));
    run.loop = EV_DEFAULT;
    run.c = clamd_scan_new(run.loop, f->spec, 5.);
    clamd_scan_feed(run.c, "X5O!P%@AP", 9);
    clamd_scan_end(run.c, on_done_free, &run);
    run_loop(&run, 5.);
    assert_int_equal(run.done, 1);
    assert_int_equal(run.r, CLAMD_VIRUS);
    assert_null(run.c);
    run_loop(&run, 0.1);
    assert_int_equal(run.done, 1); /* once */
    fake_free(f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_inet),
        cmocka_unit_test(test_clean_unix),
        cmocka_unit_test(test_clean_ipv6),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_found),
        cmocka_unit_test(test_heuristics_limit),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_send_timeout),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_close_without_answer),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_long_reply),
        cmocka_unit_test(test_early_ok),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_unix_missing),
        cmocka_unit_test(test_bad_spec),
        cmocka_unit_test(test_many_small_feeds),
        cmocka_unit_test(test_big_feed),
        cmocka_unit_test(test_backpressure_drain),
        cmocka_unit_test(test_size_limit_midstream),
        cmocka_unit_test(test_free_in_progress),
        cmocka_unit_test(test_free_in_done),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
