/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clamd.c - a clamd INSTREAM client, one per message, on a libev loop.
 *
 * One clamd_scan per message: a non-blocking connect to clamd (unix
 * socket or numeric TCP address), "zINSTREAM\0", then the message bytes
 * as <length:4 bytes big-endian><data> chunks of at most CLAMD_CHUNK_MAX
 * bytes, framed at write time from what is buffered (so many small feeds
 * become few chunks), the zero-length chunk after clamd_scan_end, and the
 * NUL-terminated reply (at most CLAMD_REPLY_MAX bytes).
 *
 * States (enum clamd_state, changed only by clamd_enter):
 *   CONNECT  connect in progress; fed bytes wait in the buffer
 *   STREAM   connected; the command and chunks go out as the socket takes
 *            them; the reply side is read all along, because clamd answers
 *            early and closes when its StreamMaxLength is hit
 *   REPLY    everything sent (or clamd stopped reading: EPIPE/ECONNRESET
 *            on write), waiting for the reply
 *   DONE     result known, socket closed; done runs from a zero timer once
 *            clamd_scan_end was called, so never from inside new/feed/end
 * The timer bounds every wait on clamd (connect, a write the socket does
 * not take, the reply): it is reset on each progress and stopped while
 * the scan only waits for the caller to feed more bytes.
 * Buffering: the caller is told how much waits (clamd_scan_feed's return)
 * and gets the drain callback as declared in clamd.h; when the scan ends
 * early (clamd's error, connection lost) the buffer is dropped and a
 * caller held back is released through drain. A caller that ignores the
 * back-pressure is stopped at CLAMD_PEND_MAX buffered bytes: the scan then
 * fails (CLAMD_ERROR) instead of growing without bound.
 * Texts given to done are made safe with log_safe (they go into log lines
 * and SMTP replies). The address may carry clamav_backend's "clamd:"
 * prefix; it is never looked up (numeric only), so nothing blocks. A unix
 * socket whose listen queue is full fails at once (EAGAIN), as a refused
 * connection does.
 * Owns: its socket, buffers and watchers. Borrows: the loop.
 * Threads: loop thread only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "filters/clamd.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"

#define CLAMD_CHUNK_MAX   65536              /* data bytes in one chunk */
#define CLAMD_PEND_MAX    (32 * 1024 * 1024) /* buffered bytes, hard cap */
#define CLAMD_REPLY_MAX   4096               /* clamd's reply, with NUL */
#define CLAMD_TEXT_MAX    1024               /* result text */
#define CLAMD_SAFE_MAX    512                /* peer text in a result */
#define CLAMD_TIMEOUT_DEF 30.0               /* when given <= 0 */

/* The command, sent with its terminating NUL (10 bytes). */
static const char clamd_cmd[] = "zINSTREAM";
#define CLAMD_CMD_LEN sizeof(clamd_cmd)

enum clamd_state {
    CLAMD_S_CONNECT,
    CLAMD_S_STREAM,
    CLAMD_S_REPLY,
    CLAMD_S_DONE
};

struct clamd_scan {
    struct ev_loop *loop;
    char *spec;
    double timeout;
    enum clamd_state state;
    int fd;
    ev_io rio, wio;
    ev_timer timer; /* timeout while waiting; zero delay in DONE */

    /* Output: the command, then chunks framed from pend. */
    size_t cmd_off;       /* command bytes sent */
    struct buf *pend;     /* message bytes not yet sent */
    unsigned char hdr[4]; /* length of the chunk being sent */
    size_t hdr_off;       /* hdr bytes sent; 4 = no header pending */
    size_t chunk_left;    /* bytes at the front of pend in this chunk */
    int ended;            /* clamd_scan_end was called */
    int term;             /* the zero-length chunk is in hdr (or sent) */
    int wdead;            /* clamd stopped reading; nothing more sent */
    int werr;             /* errno of the failed write */

    /* Input and result. */
    struct buf *reply;
    enum clamd_result result;
    struct buf *text;

    clamd_done_fn done;
    void *done_arg;
    void (*drain)(void *);
    void *drain_arg;
    int over; /* went over CLAMD_BUF_HIGH; drain owed */
};

static void clamd_enter(struct clamd_scan *c, enum clamd_state to);

static const char *
clamd_state_name(enum clamd_state st)
{
    switch (st) {
    case CLAMD_S_CONNECT:
        return "CONNECT";
    case CLAMD_S_STREAM:
        return "STREAM";
    case CLAMD_S_REPLY:
        return "REPLY";
    case CLAMD_S_DONE:
        return "DONE";
    }
    return "?";
}

/* Something left to send (the command, a chunk, the terminator). */
static int
clamd_has_output(const struct clamd_scan *c)
{
    if (c->wdead)
        return 0;
    return c->cmd_off < CLAMD_CMD_LEN || c->hdr_off < 4 || c->chunk_left > 0
           || buf_len(c->pend) > 0 || (c->ended && !c->term);
}

/* Whether the scan waits on clamd now, so the timer must run. */
static int
clamd_waiting(const struct clamd_scan *c)
{
    switch (c->state) {
    case CLAMD_S_CONNECT:
    case CLAMD_S_REPLY:
        return 1;
    case CLAMD_S_STREAM:
        return clamd_has_output(c);
    case CLAMD_S_DONE:
        return 0;
    }
    return 0;
}

/* Run the timer while waiting on clamd; restart it on progress. */
static void
clamd_arm(struct clamd_scan *c, int progress)
{
    if (c->state == CLAMD_S_DONE)
        return;
    if (!clamd_waiting(c)) {
        ev_timer_stop(c->loop, &c->timer);
        return;
    }
    if (progress || !ev_is_active(&c->timer))
        ev_timer_again(c->loop, &c->timer);
}

/* The one place that changes state. */
static void
clamd_enter(struct clamd_scan *c, enum clamd_state to)
{
    log_debug("clamd %s: %s -> %s", c->spec, clamd_state_name(c->state),
              clamd_state_name(to));
    c->state = to;
    switch (to) {
    case CLAMD_S_CONNECT:
        ev_io_start(c->loop, &c->wio);
        ev_timer_again(c->loop, &c->timer);
        break;
    case CLAMD_S_STREAM:
        ev_io_start(c->loop, &c->rio);
        if (clamd_has_output(c))
            ev_io_start(c->loop, &c->wio);
        else
            ev_io_stop(c->loop, &c->wio);
        clamd_arm(c, 1);
        break;
    case CLAMD_S_REPLY:
        ev_io_stop(c->loop, &c->wio);
        ev_io_start(c->loop, &c->rio);
        ev_timer_again(c->loop, &c->timer);
        break;
    case CLAMD_S_DONE:
        ev_io_stop(c->loop, &c->rio);
        ev_io_stop(c->loop, &c->wio);
        ev_timer_stop(c->loop, &c->timer);
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
        buf_reset(c->pend);
        c->chunk_left = 0;
        c->hdr_off = 4;
        if (c->ended || c->over) {
            ev_timer_set(&c->timer, 0., 0.);
            ev_timer_start(c->loop, &c->timer);
        }
        break;
    }
}

/* Record the result and stop talking to clamd. */
static void clamd_finish(struct clamd_scan *c, enum clamd_result r,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
clamd_finish(struct clamd_scan *c, enum clamd_result r, const char *fmt, ...)
{
    va_list ap;

    if (c->state == CLAMD_S_DONE)
        return;
    c->result = r;
    buf_reset(c->text);
    va_start(ap, fmt);
    if (buf_vprintf(c->text, fmt, ap) < 0)
        buf_sets(c->text, "clamd: result text too long");
    va_end(ap);
    clamd_enter(c, CLAMD_S_DONE);
}

/* ---- the reply ---- */

static int
clamd_has_suffix(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);

    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

/* One reply (without its NUL): "stream: OK", "stream: NAME FOUND",
 * "INSTREAM size limit exceeded. ERROR", "... ERROR". */
static void
clamd_parse(struct clamd_scan *c, const char *s, size_t n)
{
    static const char pfx[] = "stream: ";
    static const char lim[] = "Heuristics.Limits.Exceeded";
    char safe[CLAMD_SAFE_MAX];
    size_t k;

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n == 10 && memcmp(s, "stream: OK", 10) == 0) {
        /* OK before the whole stream reached clamd would leave mail
         * unscanned: never take it as clean. */
        if (c->state != CLAMD_S_REPLY || c->wdead)
            clamd_finish(c, CLAMD_ERROR,
                         "clamd %s: answered OK before the end of the stream",
                         c->spec);
        else
            clamd_finish(c, CLAMD_CLEAN, "clean");
        return;
    }
    k = sizeof(pfx) - 1;
    if (n > k + 6 && memcmp(s, pfx, k) == 0
        && clamd_has_suffix(s, n, " FOUND")) {
        log_safe(s + k, n - k - 6, safe, sizeof(safe));
        if (strncmp(safe, lim, sizeof(lim) - 1) == 0)
            clamd_finish(c, CLAMD_LIMIT, "%s", safe);
        else
            clamd_finish(c, CLAMD_VIRUS, "%s", safe);
        return;
    }
    if (clamd_has_suffix(s, n, " ERROR")) {
        k = n - 6;
        while (k > 0 && (s[k - 1] == '.' || s[k - 1] == ' '))
            k--;
        log_safe(s, k, safe, sizeof(safe));
        if (memmem(s, n, "size limit exceeded", 19) != NULL)
            clamd_finish(c, CLAMD_LIMIT, "clamd: %s", safe);
        else
            clamd_finish(c, CLAMD_ERROR, "clamd: %s", safe);
        return;
    }
    log_safe(s, n, safe, sizeof(safe));
    clamd_finish(c, CLAMD_ERROR, "clamd %s: unexpected reply: %s", c->spec,
                 safe);
}

static void
clamd_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct clamd_scan *c = w->data;
    size_t room = c->reply->cap - buf_len(c->reply);
    long nul;
    ssize_t n;
    char *p;

    if (room == 0 || (p = buf_reserve(c->reply, room)) == NULL) {
        clamd_finish(c, CLAMD_ERROR, "clamd %s: reply longer than %d bytes",
                     c->spec, CLAMD_REPLY_MAX);
        return;
    }
    n = read(c->fd, p, room);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n > 0) {
        buf_commit(c->reply, (size_t) n);
        clamd_arm(c, 1);
        if ((nul = buf_find(c->reply, '\0')) >= 0)
            clamd_parse(c, buf_data(c->reply), (size_t) nul);
        return;
    }
    /* End of file or error: a reply without its NUL still counts. */
    if (buf_len(c->reply) > 0)
        clamd_parse(c, buf_data(c->reply), buf_len(c->reply));
    else if (n < 0)
        clamd_finish(c, CLAMD_ERROR, "read from clamd %s: %s", c->spec,
                     strerror(errno));
    else if (c->wdead && c->werr)
        clamd_finish(c, CLAMD_ERROR, "write to clamd %s: %s", c->spec,
                     strerror(c->werr));
    else
        clamd_finish(c, CLAMD_ERROR,
                     "clamd %s: connection closed without a reply", c->spec);
}

/* ---- sending ---- */

/* Start the next chunk (or the terminator) when none is in progress. */
static void
clamd_next_chunk(struct clamd_scan *c)
{
    size_t n;

    if (c->hdr_off < 4 || c->chunk_left > 0 || c->term)
        return;
    n = buf_len(c->pend);
    if (n > CLAMD_CHUNK_MAX)
        n = CLAMD_CHUNK_MAX;
    if (n == 0 && !c->ended)
        return;
    c->hdr[0] = (unsigned char) (n >> 24);
    c->hdr[1] = (unsigned char) (n >> 16);
    c->hdr[2] = (unsigned char) (n >> 8);
    c->hdr[3] = (unsigned char) n;
    c->hdr_off = 0;
    c->chunk_left = n;
    if (n == 0)
        c->term = 1;
}

/* Account n sent bytes: command, then header, then chunk data. */
static void
clamd_sent(struct clamd_scan *c, size_t n)
{
    size_t k;

    k = CLAMD_CMD_LEN - c->cmd_off;
    k = k < n ? k : n;
    c->cmd_off += k;
    n -= k;
    k = 4 - c->hdr_off;
    k = k < n ? k : n;
    c->hdr_off += k;
    n -= k;
    if (n > 0) {
        buf_consume(c->pend, n);
        c->chunk_left -= n;
    }
}

/* Write what the socket takes. */
static void
clamd_send(struct clamd_scan *c)
{
    struct iovec iov[3];
    struct msghdr mh;
    int progress = 0, niov;
    ssize_t n;

    for (;;) {
        clamd_next_chunk(c);
        niov = 0;
        if (c->cmd_off < CLAMD_CMD_LEN) {
            iov[niov].iov_base = (char *) clamd_cmd + c->cmd_off;
            iov[niov++].iov_len = CLAMD_CMD_LEN - c->cmd_off;
        }
        if (c->hdr_off < 4) {
            iov[niov].iov_base = c->hdr + c->hdr_off;
            iov[niov++].iov_len = 4 - c->hdr_off;
        }
        if (c->chunk_left > 0) {
            iov[niov].iov_base = buf_data(c->pend);
            iov[niov++].iov_len = c->chunk_left;
        }
        if (niov == 0)
            break;
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t) niov;
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            /* clamd closed (e.g. its StreamMaxLength was hit): its reply,
             * if any, is still to be read. */
            c->wdead = 1;
            c->werr = errno;
            buf_reset(c->pend);
            c->chunk_left = 0;
            c->hdr_off = 4;
            clamd_enter(c, CLAMD_S_REPLY);
            return;
        }
        progress = 1;
        clamd_sent(c, (size_t) n);
    }
    if (c->ended && c->term && !clamd_has_output(c)) {
        clamd_enter(c, CLAMD_S_REPLY);
        return;
    }
    if (!clamd_has_output(c))
        ev_io_stop(c->loop, &c->wio);
    clamd_arm(c, progress);
}

/* Tell a held-back caller that the buffer drained. Last thing a
 * callback does: the caller may free the scan from drain. */
static void
clamd_maybe_drain(struct clamd_scan *c)
{
    if (!c->over || buf_len(c->pend) >= CLAMD_BUF_HIGH / 2
        || c->state == CLAMD_S_DONE)
        return; /* in DONE the zero timer calls drain */
    c->over = 0;
    if (c->drain)
        c->drain(c->drain_arg);
}

static void
clamd_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct clamd_scan *c = w->data;
    socklen_t len = sizeof(int);
    int err = 0;

    switch (c->state) {
    case CLAMD_S_CONNECT:
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err != 0) {
            clamd_finish(c, CLAMD_ERROR, "connect to %s: %s", c->spec,
                         strerror(err));
            return;
        }
        clamd_enter(c, CLAMD_S_STREAM);
        break;
    case CLAMD_S_STREAM:
        break;
    case CLAMD_S_REPLY:
    case CLAMD_S_DONE:
        ev_io_stop(loop, w);
        return;
    }
    clamd_send(c);
    clamd_maybe_drain(c);
}

static void
clamd_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct clamd_scan *c = w->data;
    clamd_done_fn fn;

    switch (c->state) {
    case CLAMD_S_CONNECT:
        clamd_finish(c, CLAMD_ERROR, "connect to %s: %s", c->spec,
                     strerror(ETIMEDOUT));
        return;
    case CLAMD_S_STREAM:
        clamd_finish(c, CLAMD_ERROR, "clamd %s: timeout sending the message",
                     c->spec);
        return;
    case CLAMD_S_REPLY:
        clamd_finish(c, CLAMD_ERROR, "clamd %s: timeout waiting for the reply",
                     c->spec);
        return;
    case CLAMD_S_DONE:
        break;
    }
    if (c->ended && c->done) {
        fn = c->done;
        c->done = NULL;
        c->over = 0;
        fn(c->done_arg, c->result, buf_data(c->text));
        return; /* c may be gone */
    }
    if (c->over) {
        c->over = 0;
        if (c->drain)
            c->drain(c->drain_arg);
    }
}

/* ---- connecting ---- */

/* Resolve the spec (numeric only: never blocks) into ss. 0, or -1 with
 * the reason in c->text. */
static int
clamd_addr(struct clamd_scan *c, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_un *su = (struct sockaddr_un *) ss;
    struct addrinfo hints, *res = NULL;
    const char *s = c->spec;
    char *copy = NULL, *host, *port;
    int e;

    if (strncmp(s, "clamd:", 6) == 0)
        s += 6;
    memset(ss, 0, sizeof(*ss));
    if (strncmp(s, "unix:", 5) == 0) {
        s += 5;
        if (*s == '\0' || strlen(s) >= sizeof(su->sun_path)) {
            buf_printf(c->text, "connect to %s: bad socket path", c->spec);
            return -1;
        }
        su->sun_family = AF_UNIX;
        memcpy(su->sun_path, s, strlen(s) + 1);
        *len = sizeof(*su);
        return 0;
    }
    if (strncmp(s, "inet:", 5) != 0) {
        buf_printf(c->text, "connect to %s: not unix:/path or inet:host:port",
                   c->spec);
        return -1;
    }
    copy = xstrdup(s + 5);
    if (net_split_hostport(copy, &host, &port) < 0 || port == NULL
        || *host == '\0' || *port == '\0') {
        buf_printf(c->text, "connect to %s: not inet:host:port", c->spec);
        goto fail;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
        buf_printf(c->text, "connect to %s: %s", c->spec,
                   e == EAI_NONAME ? "not a numeric address and port"
                                   : gai_strerror(e));
        goto fail;
    }
    if (res->ai_addrlen > sizeof(*ss)) {
        buf_printf(c->text, "connect to %s: bad address", c->spec);
        goto fail;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    free(copy);
    return 0;
fail:
    if (res)
        freeaddrinfo(res);
    free(copy);
    return -1;
}

struct clamd_scan *
clamd_scan_new(void *loop, const char *spec, double timeout)
{
    struct clamd_scan *c = xcalloc(1, sizeof(*c));
    struct sockaddr_storage ss;
    socklen_t len = 0;

    c->loop = loop;
    c->spec = xstrdup(spec ? spec : "");
    c->timeout = timeout > 0 ? timeout : CLAMD_TIMEOUT_DEF;
    c->fd = -1;
    c->hdr_off = 4;
    c->pend = buf_new(4096, CLAMD_PEND_MAX);
    c->reply = buf_new(256, CLAMD_REPLY_MAX - 1);
    c->text = buf_new(128, CLAMD_TEXT_MAX);
    c->state = CLAMD_S_CONNECT;
    ev_io_init(&c->rio, clamd_read_cb, -1, EV_READ);
    ev_io_init(&c->wio, clamd_write_cb, -1, EV_WRITE);
    ev_init(&c->timer, clamd_timer_cb);
    c->timer.repeat = c->timeout;
    c->rio.data = c->wio.data = c->timer.data = c;

    if (clamd_addr(c, &ss, &len) < 0) {
        c->result = CLAMD_ERROR;
        clamd_enter(c, CLAMD_S_DONE);
        return c;
    }
    c->fd = net_connect((struct sockaddr *) &ss, len);
    if (c->fd < 0) {
        clamd_finish(c, CLAMD_ERROR, "connect to %s: %s", c->spec,
                     strerror(errno));
        return c;
    }
    ev_io_set(&c->rio, c->fd, EV_READ);
    ev_io_set(&c->wio, c->fd, EV_WRITE);
    clamd_enter(c, CLAMD_S_CONNECT);
    return c;
}

size_t
clamd_scan_feed(struct clamd_scan *c, const void *p, size_t n)
{
    switch (c->state) {
    case CLAMD_S_CONNECT:
    case CLAMD_S_STREAM:
        break;
    case CLAMD_S_REPLY:
    case CLAMD_S_DONE:
        return 0; /* clamd stopped reading, or the result is known */
    }
    if (c->ended || n == 0)
        return buf_len(c->pend);
    if (buf_append(c->pend, p, n) < 0) {
        clamd_finish(c, CLAMD_ERROR,
                     "clamd %s: more than %d bytes waiting to be sent", c->spec,
                     CLAMD_PEND_MAX);
        return 0;
    }
    if (buf_len(c->pend) > CLAMD_BUF_HIGH)
        c->over = 1;
    if (c->state == CLAMD_S_STREAM) {
        ev_io_start(c->loop, &c->wio);
        clamd_arm(c, 0);
    }
    return buf_len(c->pend);
}

void
clamd_scan_set_drain(struct clamd_scan *c, void (*cb)(void *), void *arg)
{
    c->drain = cb;
    c->drain_arg = arg;
}

void
clamd_scan_end(struct clamd_scan *c, clamd_done_fn done, void *arg)
{
    c->done = done;
    c->done_arg = arg;
    if (c->ended)
        return;
    c->ended = 1;
    switch (c->state) {
    case CLAMD_S_CONNECT:
        break; /* sent once connected */
    case CLAMD_S_STREAM:
        ev_io_start(c->loop, &c->wio);
        clamd_arm(c, 1);
        break;
    case CLAMD_S_REPLY:
        break; /* clamd stopped reading: its reply is awaited */
    case CLAMD_S_DONE:
        ev_timer_stop(c->loop, &c->timer);
        ev_timer_set(&c->timer, 0., 0.);
        ev_timer_start(c->loop, &c->timer);
        break;
    }
}

void
clamd_scan_free(struct clamd_scan *c)
{
    if (c == NULL)
        return;
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->timer);
    if (c->fd >= 0)
        close(c->fd);
    buf_free(c->pend);
    buf_free(c->reply);
    buf_free(c->text);
    free(c->spec);
    free(c);
}
