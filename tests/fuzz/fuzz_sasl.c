/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_sasl.c - the Dovecot auth client (proxy/sasl.c) against a fake auth
 * server on a unix socket in a temporary directory, whose bytes are the
 * fuzz input. Both ends run in this thread: the harness accepts, writes
 * and reads its end itself and turns the libev loop with EVRUN_NOWAIT,
 * so a run is deterministic (the connect to a unix socket completes at
 * once; reads are at most 4096 bytes each).
 *
 * Per input: sasl_srv_new, accept, a waiter for the mechanism list, two
 * or three requests (PLAIN with an initial response, LOGIN without,
 * CRAM-MD5 with an empty one: ids 1, 2, 3 when started in that order),
 * the server's bytes in two parts with the loop run until nothing more
 * happens after each, sasl_next ("cmVzcA==") for the requests that got
 * SASL_CONT, then sasl_cancel for the rest and sasl_srv_free. When the
 * client connects again (it lost a connection that worked, and a request
 * needs one), the new connection is the server from then on: it says
 * FZ_HELLO, a good handshake, and gets the rest of the input.
 *
 * Input: two option bytes, then the server's bytes.
 *  byte 0: bit 0 the requests start before the server's first part (they
 *          wait for DONE), else after it; bit 1 the third request; bits
 *          2-3 what the callback does with SASL_CONT (0: nothing, the
 *          harness answers it after the part; 1: sasl_next at once; 2:
 *          sasl_cancel at once; 3: sasl_cancel for every other request
 *          that waits for the server, this one kept); bit 4 a final answer
 *          cancels the oldest other request that waits for the server and
 *          starts another one, from its callback (at most FZ_REQS in all);
 *          bit 5 the LOGIN request's timeout is 1 us (it times out on the
 *          first loop turn; its answer comes late); bit 6 the server shuts
 *          its write side down after the second part (EOF); bit 7 the
 *          waiter starts a request (CRAM-MD5, "QUJD") from its callback
 *  byte 1: the split: the first part is the first n * byte1 / 255 of the
 *          n bytes after the options
 *
 * Checked, abort() on a violation: no callback inside sasl_start or
 * sasl_next, none for a request cancelled, answered or not started, one
 * final answer at most; a CONT's text is base64 (sasl_b64_ok), an OK's
 * is not empty, the final texts are printable and no longer than the
 * input buffer's cap; sasl_start and sasl_next give a reason when they
 * fail; the waiter runs once at most, and has run when the list is
 * known; the list holds at most 64 RFC 4422 names, each of them offered
 * under the policy that allows everything, and each one sasl_mechs lists
 * under the default policy is one sasl_mech_offered accepts (for a name
 * the server listed twice too); no fd is left open; a final text is
 * shorter than SASL_LINE_MAX (sasl.h: a longer line drops the
 * connection).
 * Nothing may crash, leak or trip UBSan.
 *
 * FUZZ_SASL_LOG=1: debug logging; the log and the callbacks on stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proxy/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_REQS  8    /* requests per input, callbacks' ones included */
#define FZ_TURNS 4096 /* loop turns per settle: 20 KB is 5 reads */
#define FZ_QUIET 3    /* turns with nothing done: settled */
#define FZ_RESP  "cmVzcA=="
#define FZ_HELLO \
    "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nDONE\n"

#define FZ_FAIL(...)                                \
    do {                                            \
        fprintf(stderr, "fuzz_sasl: " __VA_ARGS__); \
        fputc('\n', stderr);                        \
        abort();                                    \
    } while (0)

enum fq_state {
    FQ_NONE, /* slot free */
    FQ_WAIT, /* the server's turn */
    FQ_CONT, /* the client's turn: sasl_next or sasl_cancel */
    FQ_DONE  /* answered, cancelled or freed by sasl_next */
};

struct freq {
    struct sasl_req *rq;
    enum fq_state st;
};

static struct ev_loop *fz_loop;
static char fz_dir[32], fz_path[64];
static int fz_trace; /* FUZZ_SASL_LOG: the log and the callbacks on stderr */

static struct {
    struct sasl_srv *sv;
    int lfd; /* listening, for reconnections too */
    int fd;  /* the fake server's end */
    unsigned char opt;
    int in_call; /* inside sasl_start or sasl_next */
    int progress;
    int waited; /* the waiter ran */
    struct freq q[FZ_REQS];
    int nq;
    struct sasl_wait w;
} fz;

static void
fz_cleanup(void)
{
    unlink(fz_path);
    rmdir(fz_dir);
}

static void
fz_init(void)
{
    const char *dbg = getenv("FUZZ_SASL_LOG");

    signal(SIGPIPE, SIG_IGN);
    log_init("postfix", "fuzz", dbg ? NULL : "/dev/null");
    fz_trace = dbg != NULL;
    log_set_debug(fz_trace);
    snprintf(fz_dir, sizeof(fz_dir), "/tmp/fuzz_sasl.XXXXXX");
    if (mkdtemp(fz_dir) == NULL)
        abort();
    snprintf(fz_path, sizeof(fz_path), "%s/auth", fz_dir);
    atexit(fz_cleanup);
    fz_loop = ev_loop_new(EVFLAG_AUTO);
    if (fz_loop == NULL)
        abort();
}

static int
fz_nfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Final texts: printable, and bounded. */
static void
fz_check_text(const char *text, enum sasl_status st)
{
    size_t n = strlen(text);

    for (const char *p = text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            FZ_FAIL("status %d: unprintable text", (int) st);
    if (st == SASL_OK && n == 0)
        FZ_FAIL("OK without a user name");
    if (n >= SASL_LINE_MAX)
        FZ_FAIL("status %d: a text of %zu bytes, over SASL_LINE_MAX", (int) st,
                n);
}

static void fz_start(const char *mech, const char *resp, double timeout);

static void
fz_cancel(struct freq *q)
{
    sasl_cancel(q->rq);
    q->rq = NULL;
    q->st = FQ_DONE;
}

/* The client's answer to a challenge. */
static void
fz_next(struct freq *q)
{
    struct buf *why = buf_new(64, 4096);
    int rc;

    fz.in_call = 1;
    q->st = FQ_WAIT; /* a callback inside would be caught as in_call */
    rc = sasl_next(q->rq, FZ_RESP, why);
    fz.in_call = 0;
    if (rc < 0) {
        if (buf_len(why) == 0)
            FZ_FAIL("sasl_next failed without a reason");
        q->st = FQ_DONE;
        q->rq = NULL;
    }
    buf_free(why);
}

static void
fz_cb(void *arg, enum sasl_status st, const char *text)
{
    struct freq *q = arg;

    if (fz.in_call)
        FZ_FAIL("callback inside sasl_start or sasl_next");
    if (q->st != FQ_WAIT)
        FZ_FAIL("callback (status %d) for request %d in state %d", (int) st,
                (int) (q - fz.q), (int) q->st);
    if (text == NULL)
        FZ_FAIL("callback without a text");
    fz.progress++;
    if (fz_trace)
        fprintf(stderr, "fuzz_sasl: request %d: status %d \"%.60s\"\n",
                (int) (q - fz.q), (int) st, text);
    if (st == SASL_CONT) {
        if (!sasl_b64_ok(text))
            FZ_FAIL("CONT with a challenge that is not base64");
        q->st = FQ_CONT;
        switch ((fz.opt >> 2) & 3) {
        case 1:
            fz_next(q);
            break;
        case 2:
            fz_cancel(q);
            break;
        case 3:
            for (int i = 0; i < fz.nq; i++)
                if (fz.q[i].st == FQ_WAIT)
                    fz_cancel(&fz.q[i]);
            break;
        default:
            break;
        }
        return;
    }
    if (st != SASL_OK && st != SASL_FAIL && st != SASL_TEMP)
        FZ_FAIL("status %d", (int) st);
    fz_check_text(text, st);
    q->st = FQ_DONE;
    q->rq = NULL;
    if (fz.opt & 0x10) {
        for (int i = 0; i < fz.nq; i++)
            if (fz.q[i].st == FQ_WAIT) {
                fz_cancel(&fz.q[i]);
                break;
            }
        fz_start("PLAIN", NULL, 30.);
    }
}

static void
fz_start(const char *mech, const char *resp, double timeout)
{
    static const struct sasl_client cl = {.service = "smtp",
                                          .laddr = "192.0.2.1",
                                          .raddr = "198.51.100.7",
                                          .lport = 25,
                                          .rport = 40000,
                                          .secured = 1};
    struct buf *why;
    struct freq *q;

    if (fz.nq >= FZ_REQS)
        return;
    q = &fz.q[fz.nq++];
    why = buf_new(64, 4096);
    fz.in_call = 1;
    q->rq = sasl_start(fz.sv, &cl, mech, resp, timeout, fz_cb, q, why);
    fz.in_call = 0;
    if (q->rq == NULL) {
        if (buf_len(why) == 0)
            FZ_FAIL("sasl_start failed without a reason");
        q->st = FQ_DONE;
    } else {
        q->st = FQ_WAIT;
    }
    buf_free(why);
}

static void
fz_wait_cb(void *arg)
{
    (void) arg;
    if (fz.in_call)
        FZ_FAIL("waiter inside sasl_start or sasl_next");
    if (fz.waited++)
        FZ_FAIL("waiter called twice");
    fz.progress++;
    if (fz.opt & 0x80)
        fz_start("CRAM-MD5", "QUJD", 30.);
}

/* Read and drop what the client sent. */
static void
fz_drain(void)
{
    char tmp[4096];
    ssize_t n;

    while ((n = recv(fz.fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
        fz.progress++;
}

/* Bytes we sent that the client has not read yet. */
static int
fz_outq(void)
{
    int n = 0;

    if (ioctl(fz.fd, SIOCOUTQ, &n) < 0)
        return 0;
    return n;
}

/* The client connected again (after it lost a connection that worked):
 * the new connection is the server from now on; it starts with FZ_HELLO,
 * and the input goes on there. 1 when there is one. */
static int
fz_accept_again(void)
{
    int fd = accept4(fz.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0)
        return 0;
    close(fz.fd);
    fz.fd = fd;
    fz.progress++;
    if (send(fd, FZ_HELLO, strlen(FZ_HELLO), MSG_NOSIGNAL) < 0)
        FZ_FAIL("send: %s", strerror(errno));
    return 1;
}

/* Run the loop until nothing more happens. */
static void
fz_settle(void)
{
    int quiet = 0, before;

    for (int i = 0; i < FZ_TURNS && quiet < FZ_QUIET; i++) {
        before = fz.progress;
        ev_run(fz_loop, EVRUN_NOWAIT);
        fz_accept_again();
        fz_drain();
        if (fz.progress == before && fz_outq() == 0)
            quiet++;
        else
            quiet = 0;
    }
}

/* The server's bytes; stops when the client is gone. */
static void
fz_write(const uint8_t *p, size_t n)
{
    int stuck = 0;

    while (n > 0 && stuck < FZ_TURNS) {
        ssize_t w = send(fz.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_run(fz_loop, EVRUN_NOWAIT);
            fz_accept_again();
            fz_drain();
            stuck++;
            continue;
        }
        if (w <= 0) {
            /* EPIPE, ECONNRESET: the client dropped us; the rest goes to
             * the next connection, if it makes one */
            ev_run(fz_loop, EVRUN_NOWAIT);
            if (!fz_accept_again())
                return;
            stuck++;
            continue;
        }
        p += w;
        n -= (size_t) w;
    }
}

static int
fz_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 20)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '-' || s[i] == '_'))
            return 0;
    return 1;
}

/* How many times does the space-separated list hold name? */
static int
fz_count(const char *list, const char *name)
{
    size_t n = strlen(name);
    int k = 0;

    for (const char *p = list; *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t) (e - p) : strlen(p);

        if (len == n && strncmp(p, name, n) == 0)
            k++;
        p += len + (e != NULL);
    }
    return k;
}

/* The mechanism list, seen through both calls. */
static void
fz_check_mechs(void)
{
    static const struct sasl_policy all = {0, 0};
    static const struct sasl_policy def = {SASL_MF_PRIVATE, 0};
    struct buf *a = buf_new(256, BUF_NOCAP), *d = buf_new(256, BUF_NOCAP);
    struct buf *name = buf_new(32, BUF_NOCAP);
    int rc = sasl_mechs(fz.sv, &all, a), words = 0;

    if (rc < 0) {
        if (sasl_mech_offered(fz.sv, &def, "PLAIN") != -1)
            FZ_FAIL("sasl_mechs says unknown, sasl_mech_offered does not");
        goto done;
    }
    if (!fz.waited)
        FZ_FAIL("the list is known, the waiter has not run");
    if (sasl_mechs(fz.sv, &def, d) < 0)
        FZ_FAIL("sasl_mechs: known for one policy only");
    for (const char *p = buf_data(a); *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t) (e - p) : strlen(p);

        if (!fz_name_ok(p, len))
            FZ_FAIL("mechanism \"%.*s\"", (int) len, p);
        buf_set(name, p, len);
        if (sasl_mech_offered(fz.sv, &all, buf_data(name)) != 1)
            FZ_FAIL("%s listed, not offered", buf_data(name));
        words++;
        p += len + (e != NULL);
    }
    if (words > 64)
        FZ_FAIL("%d mechanisms", words);
    for (const char *p = buf_data(d); *p;) {
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t) (e - p) : strlen(p);

        buf_set(name, p, len);
        if (fz_count(buf_data(a), buf_data(name)) == 0)
            FZ_FAIL("%s: under the default policy only", buf_data(name));
        if (sasl_mech_offered(fz.sv, &def, buf_data(name)) != 1)
            FZ_FAIL("%s listed in EHLO, refused in AUTH", buf_data(name));
        p += len + (e != NULL);
    }
done:
    buf_free(a);
    buf_free(d);
    buf_free(name);
}

/* Answer the challenges that wait for the client. */
static void
fz_answer_conts(void)
{
    for (int i = 0; i < fz.nq; i++)
        if (fz.q[i].st == FQ_CONT)
            fz_next(&fz.q[i]);
}

static void
fz_start_all(void)
{
    fz_start("PLAIN", "AGFsaWNlAHNlY3JldA==", 30.);
    fz_start("LOGIN", NULL, (fz.opt & 0x20) ? 1e-6 : 30.);
    if (fz.opt & 0x02)
        fz_start("CRAM-MD5", "", 30.);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    struct sockaddr_un su;
    struct buf *err;
    size_t n, split;
    int nfds;

    if (!inited) {
        fz_init();
        inited = 1;
    }
    if (size < 2)
        return 0;
    memset(&fz, 0, sizeof(fz));
    fz.opt = data[0];
    n = size - 2;
    split = n * data[1] / 255;
    data += 2;
    nfds = fz_nfds();
    ev_now_update(fz_loop);

    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    snprintf(su.sun_path, sizeof(su.sun_path), "%s", fz_path);
    unlink(fz_path);
    fz.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fz.lfd < 0 || bind(fz.lfd, (struct sockaddr *) &su, sizeof(su)) < 0
        || listen(fz.lfd, 4) < 0)
        abort();
    err = buf_new(64, 4096);
    fz.sv = sasl_srv_new(fz_loop, fz_path, NULL, err);
    if (fz.sv == NULL)
        FZ_FAIL("sasl_srv_new: %s", buf_data(err));
    buf_free(err);
    fz.fd = accept4(fz.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fz.fd < 0)
        FZ_FAIL("no connection from the client");
    if (sasl_wait(fz.sv, &fz.w, fz_wait_cb, NULL) != 1)
        FZ_FAIL("sasl_wait: nothing to wait for before the handshake");

    if (fz.opt & 0x01)
        fz_start_all();
    fz_write(data, split);
    fz_settle();
    if (!(fz.opt & 0x01)) {
        fz_start_all();
        fz_settle();
    }
    fz_check_mechs();
    fz_answer_conts();
    fz_settle();

    fz_write(data + split, n - split);
    if (fz.opt & 0x40)
        shutdown(fz.fd, SHUT_WR);
    fz_settle();
    fz_check_mechs();
    fz_answer_conts();
    fz_settle();
    fz_check_mechs();

    for (int i = 0; i < fz.nq; i++) {
        if (fz.q[i].st == FQ_WAIT || fz.q[i].st == FQ_CONT)
            sasl_cancel(fz.q[i].rq);
        fz.q[i].st = FQ_DONE;
    }
    sasl_wait_cancel(fz.sv, &fz.w);
    sasl_srv_free(fz.sv);
    close(fz.fd);
    close(fz.lfd);
    unlink(fz_path);
    if (fz_nfds() != nfds)
        FZ_FAIL("%d fds open after the input, %d before", fz_nfds(), nfds);
    return 0;
}
