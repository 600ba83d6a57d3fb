/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * loadgen.c - SMTP load generator for the peer benchmark (tests/bench).
 *
 * Like Postfix's smtp-source, but every message it sends is unique (a
 * global counter patched into the wire form at the points msgmark.h
 * finds), it measures end-of-data latency, and it runs on T threads,
 * each with its own libev loop and its share of the sessions. An idle
 * mode (-I) holds many sessions open after EHLO.
 *
 * Each session is a state machine (enum lg_state, changed only by
 * lg_enter()). Commands are never pipelined: one command, one reply.
 * Replies are parsed as a stream (multi-line aware, split reads) into a
 * few bytes of per-session state, so 20,000 sessions cost little memory.
 * The message is converted once to its CRLF, dot-stuffed wire form; each
 * transaction sends it with writev() from that shared read-only copy,
 * with the two small per-session patches as separate iovecs: no copy of
 * the message per session, partial writes resume where they stopped.
 *
 * Owns: everything it allocates and every socket it opens.
 * Threads: worker threads share only the atomic message counter and the
 * atomic idle-mode counters; each keeps its own stats, merged by main()
 * after pthread_join(). main() waits (sleeps) only in idle mode.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "tests/bench/msgmark.h"

#define LG_SESSIONS_MAX 20000
#define LG_THREADS_MAX  64
#define LG_SECONDS_MAX  86400
#define LG_MSG_MAX      (64UL << 20) /* message file */
#define LG_ARG_MAX      256          /* -f, -r, -H */
#define LG_LINE_MAX     4096         /* one reply line */
#define LG_TEXT_MAX     80           /* reply text kept for messages */
#define LG_TIMEOUT      60.0         /* seconds per step */
#define LG_RETRY        0.1          /* seconds before a reconnect */
#define LG_DRAIN        30.0         /* seconds in-flight work may take */
#define LG_QUIT_WAIT    5.0          /* seconds for QUIT reply + close */
#define LG_CONNECTS_MAX 500          /* pending connects, all threads */
#define LG_IDLE_RETRIES 3            /* connect retries in idle mode */
#define LG_READ_BUF     16384
#define LG_SEQ_HDR      "X-Loadgen-Seq: "

enum lg_state {
    LG_S_WAIT,    /* no socket: queued for connect or retry timer */
    LG_S_CONNECT, /* connect() in progress */
    LG_S_GREET,   /* waiting for the greeting */
    LG_S_EHLO,
    LG_S_MAIL,
    LG_S_RCPT,
    LG_S_DATA,
    LG_S_BODY,    /* writing content (and reading an early reply) */
    LG_S_IDLE,    /* idle mode: after EHLO */
    LG_S_QUIT,    /* QUIT sent */
    LG_S_CLOSING, /* QUIT answered, waiting for the server to close */
    LG_S_DONE
};

enum lg_result {
    LG_R_ACCEPTED,
    LG_R_TEMPFAIL,
    LG_R_REJECTED,
    LG_R_ERROR
};

enum lg_parse {
    LG_P_AGAIN, /* need more bytes */
    LG_P_DONE,  /* a complete reply */
    LG_P_BAD    /* malformed, too long or mixed codes */
};

/* One reply being parsed; survives across reads. */
struct lg_reply {
    unsigned len;   /* bytes of the current line so far */
    unsigned lines; /* complete lines of this reply */
    int code;       /* code of the first line; 0 before it */
    char head[4];   /* first bytes of the current line */
    char text[LG_TEXT_MAX];
    unsigned text_len; /* of the first line, capped */
    char last;         /* last byte seen, for CR before LF */
};

struct lg_counts {
    unsigned long sent, accepted, tempfail, rejected, errors, connect_errors;
};

struct lg_thread;

struct lg_session {
    struct lg_thread *t;
    ev_io io;
    ev_timer timer; /* step timeout, retry delay or quit wait */
    int fd;
    enum lg_state state;
    int in_tx;   /* a transaction is counted when it ends */
    int retries; /* idle mode: connect retries so far */
    int settled; /* idle mode: counted as established or failed */
    int queued;  /* in the thread's connect queue */
    int paced;   /* -R: this session's start slot has come */
    struct iovec out[6];
    int out_n, out_i;
    double t_dot;  /* when the last byte of the content was written */
    double t_data; /* when DATA was sent */
    struct lg_reply rp;
    char ptext[MSGMARK_TEXT_LEN];
    char pb64[MSGMARK_B64_LEN];
};

/* Read-only after main() set it up. */
struct lg_conf {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *addr_str;
    unsigned long sessions, threads, idle;
    double run_s, warm_s;
    int keep, same, quiet;
    char *wire; /* CRLF, dot-stuffed, ends with ".\r\n" */
    size_t wire_len;
    size_t msg_bytes; /* wire_len without the final ".\r\n" */
    struct msgmark mark;
    const char *msg_name;
    char *cmd_ehlo, *cmd_mail, *cmd_rcpt;
    size_t ehlo_len, mail_len, rcpt_len;
    double start; /* monotonic seconds */
    double rate;  /* -R: transactions started per second (0: no pacing) */
};

struct lg_thread {
    const struct lg_conf *cf;
    pthread_t tid;
    struct ev_loop *loop;
    struct lg_session *sess;
    unsigned long nsess, active;
    unsigned long *cq; /* connect queue (ring of session indices) */
    unsigned long cq_head, cq_len;
    unsigned long pending, pending_max;
    int stopping, giving_up;
    int pumping; /* in cq_pump(): no recursion */
    ev_timer stop_timer, giveup_timer;
    ev_async stop_async; /* idle mode: main() says stop */
    struct lg_counts win, all;
    double *lat; /* end-of-data latencies in the window, ms */
    size_t nlat, caplat;
    double lat_max;
    double *dlat; /* DATA to 354 in the window, ms */
    size_t ndlat, capdlat;
    unsigned long established, failed, dropped; /* idle mode */
    char first_error[160];
    char first_refusal[160];
};

static atomic_ulong lg_seq;
static atomic_ulong lg_ticket; /* -R: start slots handed out */
static atomic_ulong lg_idle_settled, lg_idle_established;
static atomic_int lg_idle_stop;

static void lg_enter(struct lg_session *s, enum lg_state to);
static void lg_connect_request(struct lg_session *s);
static void lg_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void flush(struct lg_session *s);

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen -a HOST:PORT [-c SESSIONS] [-t SECONDS] "
            "[-w WARMUP_SECONDS] [-m MSGFILE] [-K]\n"
            "               [-f FROM] [-r RCPT] [-H HELO] [-T THREADS] [-S] "
            "[-I IDLE_COUNT] [-q]\n"
            "  -a ADDR   server, IPv4:port or [IPv6]:port (required)\n"
            "  -c N      concurrent sessions (default 10, max %d)\n"
            "  -t S      run time in seconds (default 20)\n"
            "  -w S      warm-up seconds not counted (default 3)\n"
            "  -m FILE   message (RFC 5322, LF or CRLF, max 64 MB; default: "
            "a small built-in one)\n"
            "  -K        keep the connection: next message in the same "
            "session\n"
            "  -f/-r/-H  envelope sender, recipient, EHLO name\n"
            "  -T N      threads, each with its own event loop (default 1, "
            "max %d)\n"
            "  -S        same bytes every message (default: each one "
            "unique)\n"
            "  -I N      idle mode: N sessions after EHLO, held for -t "
            "seconds (max %d)\n"
            "  -R RATE   paced: start RATE transactions per second in all "
            "(an open\n"
            "            load, to see latency below saturation; needs "
            "enough -c; not with -K)\n"
            "  -q        quiet: only the summary line\n",
            LG_SESSIONS_MAX, LG_THREADS_MAX, LG_SESSIONS_MAX);
}

static void *
lg_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static double
lg_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A decimal number in [min, max]; -1 with a message otherwise. */
static int
parse_num(const char *opt, const char *s, double min, double max, int integer,
          double *out)
{
    char *end;
    double v;

    if (*s < '0' || *s > '9')
        goto fail;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || v < min || v > max
        || (integer && v != floor(v)))
        goto fail;
    *out = v;
    return 0;
fail:
    fprintf(stderr, "loadgen: bad %s \"%s\": want a%s number from %g to %g\n",
            opt, s, integer ? "n integer" : "", min, max);
    return -1;
}

/* -f, -r, -H: printable, no space, bounded. */
static int
check_arg(const char *opt, const char *s, int allow_empty)
{
    size_t i, n = strlen(s);

    if ((n == 0 && !allow_empty) || n > LG_ARG_MAX)
        goto fail;
    for (i = 0; i < n; i++)
        if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
            goto fail;
    return 0;
fail:
    fprintf(stderr,
            "loadgen: bad %s \"%s\": want up to %d printable characters "
            "without spaces\n",
            opt, s, LG_ARG_MAX);
    return -1;
}

/* IPv4:port or [IPv6]:port. */
static int
parse_addr(const char *s, struct lg_conf *cf)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *hs = s;
    size_t hl;
    double port;

    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            goto fail;
        hs = s + 1;
        hl = rb - hs;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            goto fail;
        hl = colon - s;
    }
    if (hl == 0 || hl >= sizeof(host))
        goto fail;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (parse_num("port", colon + 1, 1, 65535, 1, &port) < 0)
        goto fail;
    memset(&cf->addr, 0, sizeof(cf->addr));
    if (*s == '[') {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &cf->addr;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            goto fail;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t) port);
        cf->addrlen = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *) &cf->addr;
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
            goto fail;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t) port);
        cf->addrlen = sizeof(*a4);
    }
    return 0;
fail:
    fprintf(stderr,
            "loadgen: bad -a \"%s\": want IPv4:port or [IPv6]:port with a "
            "numeric address\n",
            s);
    return -1;
}

static const char lg_builtin_msg[] =
    "From: Loadgen <bench@example.com>\n"
    "To: Rcpt <rcpt@example.com>\n"
    "Subject: loadgen test message\n"
    "Date: Mon, 01 Jan 2024 12:00:00 +0000\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "This is a small test message sent by the Sluice load generator.\n"
    "It has a few lines of plain text, and the first of them takes a\n"
    "counter so that every copy of it is different.\n";

/* Reads a whole regular file of 1 to LG_MSG_MAX bytes. 0 or -1. */
/*
 * The wire form: every line ends in CRLF (a bare LF becomes CRLF), a line
 * that starts with "." gets another one, the last line gets its CRLF if
 * it had none, and ".\r\n" ends it. With prefix_seq, an X-Loadgen-Seq
 * header with a 10-digit placeholder goes first.
 */
static void
make_wire(struct lg_conf *cf, const char *m, size_t n, int prefix_seq)
{
    size_t cap = 2 * n + 64, o = 0, i;
    char *w = lg_alloc(cap);
    int bol = 1;

    if (prefix_seq) {
        o = (size_t) sprintf(w, "%s%0*d\r\n", LG_SEQ_HDR, MSGMARK_TEXT_LEN, 0);
    }
    for (i = 0; i < n; i++) {
        if (bol && m[i] == '.')
            w[o++] = '.';
        bol = 0;
        if (m[i] == '\n') {
            if (i == 0 || m[i - 1] != '\r')
                w[o++] = '\r';
            bol = 1;
        }
        w[o++] = m[i];
    }
    if (!bol) {
        w[o++] = '\r';
        w[o++] = '\n';
    }
    cf->msg_bytes = o;
    memcpy(w + o, ".\r\n", 3);
    o += 3;
    cf->wire = w;
    cf->wire_len = o;
}

static int
setup_message(struct lg_conf *cf, const char *path)
{
    char *data = NULL;
    size_t len;

    if (path == NULL) {
        data = lg_alloc(sizeof(lg_builtin_msg));
        len = sizeof(lg_builtin_msg) - 1;
        memcpy(data, lg_builtin_msg, len);
        cf->msg_name = "built-in";
    } else {
        const char *base = strrchr(path, '/');
        if (msgmark_read("loadgen", path, LG_MSG_MAX, &data, &len) < 0)
            return -1;
        cf->msg_name = base != NULL ? base + 1 : path;
    }
    make_wire(cf, data, len, 0);
    cf->mark.text_pos = cf->mark.b64_pos = -1;
    if (!cf->same) {
        msgmark_find(cf->wire, cf->msg_bytes, &cf->mark);
        if (cf->mark.text_pos < 0 && cf->mark.b64_pos < 0) {
            fprintf(stderr,
                    "loadgen: %s: no text or base64 line to patch; an "
                    "%sNNNNNNNNNN header at the top makes each copy "
                    "unique\n",
                    cf->msg_name, LG_SEQ_HDR);
            free(cf->wire);
            make_wire(cf, data, len, 1);
            cf->mark.text_pos = (long) strlen(LG_SEQ_HDR);
        }
    }
    free(data);
    return 0;
}

static char *
make_cmd(const char *fmt, const char *arg, size_t *len)
{
    size_t n = strlen(fmt) + strlen(arg) + 1;
    char *c = lg_alloc(n);

    *len = (size_t) snprintf(c, n, fmt, arg);
    return c;
}

/* ------------------------------------------------------------ stats */

static void
note_first(char *slot, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (slot[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(slot, size, fmt, ap);
    va_end(ap);
}

static int
in_window(const struct lg_conf *cf, double now)
{
    double rel = now - cf->start;

    return rel >= cf->warm_s && rel <= cf->run_s;
}

static void
add_ms(double **v, size_t *n, size_t *cap, double ms)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 4096;
        double *p = realloc(*v, c * sizeof(*p));
        if (p == NULL) {
            fprintf(stderr, "loadgen: out of memory for latencies\n");
            exit(1);
        }
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = ms;
}

static void
add_latency(struct lg_thread *t, double ms)
{
    add_ms(&t->lat, &t->nlat, &t->caplat, ms);
    if (ms > t->lat_max)
        t->lat_max = ms;
}

/* Counts the end of one transaction. lat_ms < 0: no latency. A
 * transaction abandoned at the end (giving_up) counts as an error even
 * after the window. */
static void
count_result(struct lg_session *s, enum lg_result r, double lat_ms)
{
    struct lg_thread *t = s->t;
    double now = lg_now();
    int win = in_window(t->cf, now) || (r == LG_R_ERROR && t->giving_up);
    struct lg_counts *cs[2] = {&t->all, win ? &t->win : NULL};
    int k;

    s->in_tx = 0;
    for (k = 0; k < 2; k++) {
        if (cs[k] == NULL)
            continue;
        switch (r) {
        case LG_R_ACCEPTED:
            cs[k]->accepted++;
            break;
        case LG_R_TEMPFAIL:
            cs[k]->tempfail++;
            break;
        case LG_R_REJECTED:
            cs[k]->rejected++;
            break;
        case LG_R_ERROR:
            cs[k]->errors++;
            break;
        }
    }
    if (win && r == LG_R_ACCEPTED && lat_ms >= 0 && in_window(t->cf, now))
        add_latency(t, lat_ms);
}

static void
count_connect_error(struct lg_thread *t)
{
    t->all.connect_errors++;
    if (in_window(t->cf, lg_now()))
        t->win.connect_errors++;
}

/* ------------------------------------------------------------ replies */

static void
reply_reset(struct lg_reply *rp)
{
    rp->len = 0;
    rp->lines = 0;
    rp->code = 0;
    rp->text_len = 0;
    rp->last = 0;
}

/* Ends the current line; LG_P_DONE when it was the last of the reply. */
static enum lg_parse
reply_line(struct lg_reply *rp)
{
    unsigned n = rp->len - (rp->last == '\r');
    int code;

    if (n < 3 || rp->head[0] < '1' || rp->head[0] > '5' || rp->head[1] < '0'
        || rp->head[1] > '9' || rp->head[2] < '0' || rp->head[2] > '9'
        || (n > 3 && rp->head[3] != ' ' && rp->head[3] != '-'))
        return LG_P_BAD;
    code = (rp->head[0] - '0') * 100 + (rp->head[1] - '0') * 10
           + (rp->head[2] - '0');
    if (rp->lines > 0 && code != rp->code)
        return LG_P_BAD;
    if (rp->lines == 0)
        rp->code = code;
    rp->lines++;
    rp->len = 0;
    if (n > 3 && rp->head[3] == '-')
        return LG_P_AGAIN;
    return LG_P_DONE;
}

/*
 * Feeds bytes to the parser. *used says how many it took: on LG_P_DONE,
 * the bytes after the reply are not taken.
 */
static enum lg_parse
reply_feed(struct lg_reply *rp, const char *p, size_t n, size_t *used)
{
    size_t i = 0;

    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t seg = nl != NULL ? (size_t) (nl - (p + i)) : n - i;
        size_t k;

        if (rp->len + seg > LG_LINE_MAX)
            return LG_P_BAD;
        for (k = 0; k < seg && rp->len + k < sizeof(rp->head); k++)
            rp->head[rp->len + k] = p[i + k];
        for (k = 0; rp->lines == 0 && k < seg; k++) {
            unsigned char c = p[i + k];
            if (c != '\r' && rp->text_len < sizeof(rp->text))
                rp->text[rp->text_len++] = c >= 0x20 && c < 0x7f ? c : '?';
        }
        rp->len += seg;
        if (seg > 0)
            rp->last = p[i + seg - 1];
        i += seg;
        if (nl == NULL)
            break;
        i++; /* the LF */
        switch (reply_line(rp)) {
        case LG_P_AGAIN:
            rp->last = 0;
            break;
        case LG_P_DONE:
            *used = i;
            return LG_P_DONE;
        case LG_P_BAD:
            return LG_P_BAD;
        }
    }
    *used = i;
    return LG_P_AGAIN;
}

/* ------------------------------------------------------------ sessions */

static const char *
state_name(enum lg_state st)
{
    switch (st) {
    case LG_S_WAIT:
        return "wait";
    case LG_S_CONNECT:
        return "connect";
    case LG_S_GREET:
        return "greeting";
    case LG_S_EHLO:
        return "EHLO";
    case LG_S_MAIL:
        return "MAIL";
    case LG_S_RCPT:
        return "RCPT";
    case LG_S_DATA:
        return "DATA";
    case LG_S_BODY:
        return "end of data";
    case LG_S_IDLE:
        return "idle";
    case LG_S_QUIT:
        return "QUIT";
    case LG_S_CLOSING:
        return "close";
    case LG_S_DONE:
        return "done";
    }
    return "?";
}

static void
lg_enter(struct lg_session *s, enum lg_state to)
{
    s->state = to;
}

static void
timer_set(struct lg_session *s, double after)
{
    ev_timer_stop(s->t->loop, &s->timer);
    ev_timer_set(&s->timer, after, 0.);
    ev_timer_start(s->t->loop, &s->timer);
}

static void
io_watch(struct lg_session *s, int events)
{
    if (s->io.events == events && ev_is_active(&s->io))
        return;
    ev_io_stop(s->t->loop, &s->io);
    ev_io_set(&s->io, s->fd, events);
    ev_io_start(s->t->loop, &s->io);
}

static void
idle_settle(struct lg_session *s, int established)
{
    if (s->settled)
        return;
    s->settled = 1;
    if (established) {
        s->t->established++;
        atomic_fetch_add(&lg_idle_established, 1);
    } else {
        s->t->failed++;
    }
    atomic_fetch_add(&lg_idle_settled, 1);
}

static void
thread_check_done(struct lg_thread *t)
{
    if (t->active > 0)
        return;
    ev_timer_stop(t->loop, &t->stop_timer);
    ev_timer_stop(t->loop, &t->giveup_timer);
    ev_async_stop(t->loop, &t->stop_async);
    ev_break(t->loop, EVBREAK_ALL);
}

/* Starts queued connects while there are free pending slots. */
static void
cq_pump(struct lg_thread *t)
{
    if (t->pumping)
        return; /* the outer call goes on */
    t->pumping = 1;
    while (t->cq_len > 0 && t->pending < t->pending_max) {
        struct lg_session *q = &t->sess[t->cq[t->cq_head]];
        t->cq_head = (t->cq_head + 1) % t->nsess;
        t->cq_len--;
        q->queued = 0;
        lg_connect_request(q);
    }
    t->pumping = 0;
}

static void
session_done(struct lg_session *s)
{
    lg_enter(s, LG_S_DONE);
    ev_timer_stop(s->t->loop, &s->timer);
    s->t->active--;
    thread_check_done(s->t);
}

/* Closes the socket; then reconnects (after delay s, <0: at once) or
 * finishes the session. */
static void
session_close(struct lg_session *s, double delay)
{
    struct lg_thread *t = s->t;

    ev_io_stop(t->loop, &s->io);
    ev_timer_stop(t->loop, &s->timer);
    if (s->fd >= 0) {
        if (s->state == LG_S_CONNECT) {
            t->pending--;
        }
        close(s->fd);
        s->fd = -1;
    }
    cq_pump(t); /* a pending connect slot may have freed up */
    if (t->stopping || t->cf->idle > 0) {
        if (t->cf->idle > 0 && !t->stopping && !s->settled
            && s->retries < LG_IDLE_RETRIES) {
            s->retries++;
            lg_enter(s, LG_S_WAIT);
            timer_set(s, LG_RETRY);
            return;
        }
        if (t->cf->idle > 0)
            idle_settle(s, 0);
        session_done(s);
        return;
    }
    lg_enter(s, LG_S_WAIT);
    if (delay < 0)
        lg_connect_request(s);
    else
        timer_set(s, delay);
}

/* A failure of this session: count it, close, retry later. */
static void
session_fail(struct lg_session *s, const char *fmt, ...)
{
    struct lg_thread *t = s->t;
    char msg[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->state == LG_S_QUIT || s->state == LG_S_CLOSING) {
        session_close(s, -1); /* the transaction was counted already */
        return;
    }
    note_first(t->first_error, sizeof(t->first_error), "%s: %s",
               state_name(s->state), msg);
    if (s->state == LG_S_CONNECT) {
        count_connect_error(t);
    } else if (s->state == LG_S_IDLE) {
        t->dropped++;
    } else if (s->in_tx) {
        count_result(s, LG_R_ERROR, -1);
    }
    session_close(s, LG_RETRY);
}

/* Sends iov[0..n) (copied); the io watcher finishes a partial write. */
static void
send_iov(struct lg_session *s, const struct iovec *iov, int n)
{
    memcpy(s->out, iov, n * sizeof(*iov));
    s->out_n = n;
    s->out_i = 0;
    reply_reset(&s->rp);
    timer_set(s, LG_TIMEOUT);
    flush(s);
}

static void
send_cmd(struct lg_session *s, enum lg_state to, const char *cmd, size_t len)
{
    struct iovec iov = {.iov_base = (void *) cmd, .iov_len = len};

    lg_enter(s, to);
    send_iov(s, &iov, 1);
}

static void
send_quit(struct lg_session *s)
{
    static const char quit[] = "QUIT\r\n";

    s->in_tx = 0;
    send_cmd(s, LG_S_QUIT, quit, sizeof(quit) - 1);
    if (s->state == LG_S_QUIT)
        timer_set(s, LG_QUIT_WAIT);
}

/* The content with this transaction's patches, as up to 5 iovecs. */
static void
send_body(struct lg_session *s)
{
    const struct lg_conf *cf = s->t->cf;
    struct {
        long pos;
        size_t len;
        char *buf;
    } pt[2];
    struct iovec iov[5];
    size_t cur = 0;
    int np = 0, n = 0, k;

    if (!cf->same) {
        uint64_t seq = atomic_fetch_add(&lg_seq, 1);
        if (cf->mark.text_pos >= 0) {
            msgmark_text(seq, s->ptext);
            pt[np].pos = cf->mark.text_pos;
            pt[np].len = MSGMARK_TEXT_LEN;
            pt[np++].buf = s->ptext;
        }
        if (cf->mark.b64_pos >= 0) {
            msgmark_b64(seq, s->pb64);
            pt[np].pos = cf->mark.b64_pos;
            pt[np].len = MSGMARK_B64_LEN;
            pt[np++].buf = s->pb64;
        }
        if (np == 2 && pt[1].pos < pt[0].pos) {
            long p = pt[0].pos;
            char *b = pt[0].buf;
            size_t l = pt[0].len;
            pt[0] = pt[1];
            pt[1].pos = p;
            pt[1].buf = b;
            pt[1].len = l;
        }
    }
    for (k = 0; k < np; k++) {
        iov[n].iov_base = cf->wire + cur;
        iov[n++].iov_len = (size_t) pt[k].pos - cur;
        iov[n].iov_base = pt[k].buf;
        iov[n++].iov_len = pt[k].len;
        cur = (size_t) pt[k].pos + pt[k].len;
    }
    iov[n].iov_base = cf->wire + cur;
    iov[n++].iov_len = cf->wire_len - cur;
    lg_enter(s, LG_S_BODY);
    send_iov(s, iov, n);
}

/* Starts a transaction on an open session, or ends the session. */
static void
next_transaction(struct lg_session *s)
{
    struct lg_thread *t = s->t;

    if (t->stopping) {
        send_quit(s);
        return;
    }
    s->in_tx = 1;
    send_cmd(s, LG_S_MAIL, t->cf->cmd_mail, t->cf->mail_len);
}

static void
on_reply(struct lg_session *s)
{
    const struct lg_conf *cf = s->t->cf;
    struct lg_thread *t = s->t;
    int code = s->rp.code, cls = code / 100;
    enum lg_result r;

    switch (s->state) {
    case LG_S_GREET:
    case LG_S_EHLO:
    case LG_S_MAIL:
    case LG_S_RCPT:
    case LG_S_DATA:
    case LG_S_BODY:
        break;
    case LG_S_QUIT:
        lg_enter(s, LG_S_CLOSING);
        reply_reset(&s->rp);
        io_watch(s, EV_READ);
        return;
    case LG_S_IDLE:
        /* the server spoke first: a timeout or shutdown notice */
        t->dropped++;
        note_first(t->first_error, sizeof(t->first_error),
                   "idle: server said: %.*s", (int) s->rp.text_len, s->rp.text);
        session_close(s, -1);
        return;
    case LG_S_WAIT:
    case LG_S_CONNECT:
    case LG_S_CLOSING:
    case LG_S_DONE:
        session_fail(s, "unexpected reply");
        return;
    }
    if ((s->state == LG_S_DATA && cls == 3)
        || (s->state != LG_S_DATA && cls == 2)) {
        switch (s->state) {
        case LG_S_GREET:
            send_cmd(s, LG_S_EHLO, cf->cmd_ehlo, cf->ehlo_len);
            return;
        case LG_S_EHLO:
            if (cf->idle > 0) {
                lg_enter(s, LG_S_IDLE);
                ev_timer_stop(t->loop, &s->timer);
                io_watch(s, EV_READ);
                idle_settle(s, 1);
                if (t->stopping)
                    send_quit(s);
                return;
            }
            s->in_tx = 0;
            next_transaction(s);
            return;
        case LG_S_MAIL:
            send_cmd(s, LG_S_RCPT, cf->cmd_rcpt, cf->rcpt_len);
            return;
        case LG_S_RCPT: {
            static const char data[] = "DATA\r\n";
            s->t_data = lg_now();
            send_cmd(s, LG_S_DATA, data, sizeof(data) - 1);
            return;
        }
        case LG_S_DATA: {
            double now = lg_now();

            if (in_window(cf, now))
                add_ms(&t->dlat, &t->ndlat, &t->capdlat,
                       (now - s->t_data) * 1e3);
            send_body(s);
            return;
        }
        case LG_S_BODY:
            if (s->out_i < s->out_n) {
                session_fail(s, "2xx reply before the end of data");
                return;
            }
            count_result(s, LG_R_ACCEPTED, (lg_now() - s->t_dot) * 1e3);
            if (cf->keep)
                next_transaction(s);
            else
                send_quit(s);
            return;
        case LG_S_WAIT:
        case LG_S_CONNECT:
        case LG_S_IDLE:
        case LG_S_QUIT:
        case LG_S_CLOSING:
        case LG_S_DONE:
            break;
        }
        return;
    }
    if (cls == 4) {
        r = LG_R_TEMPFAIL;
    } else if (cls == 5) {
        r = LG_R_REJECTED;
    } else {
        session_fail(s, "unexpected reply: %.*s", (int) s->rp.text_len,
                     s->rp.text);
        return;
    }
    note_first(t->first_refusal, sizeof(t->first_refusal), "%s: %.*s",
               state_name(s->state), (int) s->rp.text_len, s->rp.text);
    if (cf->idle > 0) {
        idle_settle(s, 0);
        send_quit(s);
        return;
    }
    s->in_tx = 1; /* a refusal at greeting or EHLO ends a transaction too */
    count_result(s, r, -1);
    if (s->state == LG_S_BODY && s->out_i < s->out_n) {
        session_close(s, LG_RETRY); /* cannot finish the content */
        return;
    }
    send_quit(s);
}

static void
on_readable(struct lg_session *s)
{
    char buf[LG_READ_BUF];
    size_t used = 0;
    ssize_t n;

    n = read(s->fd, buf, sizeof(buf));
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        session_fail(s, "read: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        if (s->state == LG_S_CLOSING || s->state == LG_S_QUIT) {
            session_close(s, -1);
            return;
        }
        session_fail(s, "connection closed by the server");
        return;
    }
    if (s->state == LG_S_CLOSING) {
        session_fail(s, "data after the QUIT reply");
        return;
    }
    switch (reply_feed(&s->rp, buf, (size_t) n, &used)) {
    case LG_P_AGAIN:
        timer_set(s, s->state == LG_S_QUIT ? LG_QUIT_WAIT : LG_TIMEOUT);
        return;
    case LG_P_BAD:
        session_fail(s, "bad reply line (not \"NNN text\", mixed codes or "
                        "over 4 KB)");
        return;
    case LG_P_DONE:
        break;
    }
    if (used < (size_t) n) {
        session_fail(s, "unexpected data after a reply");
        return;
    }
    if (s->out_i < s->out_n && s->state != LG_S_BODY) {
        session_fail(s, "reply before the command was sent");
        return;
    }
    on_reply(s);
}

static void
on_writable(struct lg_session *s)
{
    if (s->state == LG_S_CONNECT) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err != 0) {
            session_fail(s, "%s", strerror(err));
            return;
        }
        s->t->pending--;
        lg_enter(s, LG_S_GREET);
        s->in_tx = s->t->cf->idle == 0; /* greeting and EHLO count */
        reply_reset(&s->rp);
        s->out_n = s->out_i = 0;
        io_watch(s, EV_READ);
        timer_set(s, LG_TIMEOUT);
        cq_pump(s->t);
        return;
    }
    flush(s);
}

/* Writes what it can of s->out; watches for writability if not all. */
static void
flush(struct lg_session *s)
{
    ssize_t n;

    if (s->out_i >= s->out_n) {
        io_watch(s, EV_READ);
        return;
    }
    n = writev(s->fd, s->out + s->out_i, s->out_n - s->out_i);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            io_watch(s, EV_READ | EV_WRITE);
            return;
        }
        session_fail(s, "write: %s", strerror(errno));
        return;
    }
    while (n > 0 && s->out_i < s->out_n) {
        struct iovec *v = &s->out[s->out_i];
        if ((size_t) n >= v->iov_len) {
            n -= v->iov_len;
            s->out_i++;
        } else {
            v->iov_base = (char *) v->iov_base + n;
            v->iov_len -= n;
            n = 0;
        }
    }
    if (s->out_i == s->out_n) {
        if (s->state == LG_S_BODY) {
            s->t_dot = lg_now();
            s->t->all.sent++;
            if (in_window(s->t->cf, s->t_dot))
                s->t->win.sent++;
        }
        io_watch(s, EV_READ);
    } else {
        timer_set(s, LG_TIMEOUT); /* progress */
        io_watch(s, EV_READ | EV_WRITE);
    }
}

static void
lg_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct lg_session *s = w->data;
    int fd = s->fd;

    if (revents & EV_WRITE) {
        on_writable(s);
        if (s->fd != fd || !(revents & EV_READ))
            return; /* closed or reconnected meanwhile */
    }
    if ((revents & EV_READ) && s->fd >= 0 && s->state != LG_S_CONNECT)
        on_readable(s);
}

static void
lg_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lg_session *s = w->data;

    switch (s->state) {
    case LG_S_WAIT:
        lg_connect_request(s);
        return;
    case LG_S_QUIT:
    case LG_S_CLOSING:
        session_close(s, -1);
        return;
    case LG_S_CONNECT:
    case LG_S_GREET:
    case LG_S_EHLO:
    case LG_S_MAIL:
    case LG_S_RCPT:
    case LG_S_DATA:
    case LG_S_BODY:
    case LG_S_IDLE:
        session_fail(s, "timeout after %.0f s", LG_TIMEOUT);
        return;
    case LG_S_DONE:
        return;
    }
}

static void
do_connect(struct lg_session *s)
{
    const struct lg_conf *cf = s->t->cf;
    struct lg_thread *t = s->t;
    int one = 1;

    s->fd = socket(cf->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        note_first(t->first_error, sizeof(t->first_error), "socket: %s",
                   strerror(errno));
        count_connect_error(t);
        session_close(s, LG_RETRY);
        return;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    t->pending++;
    lg_enter(s, LG_S_CONNECT);
    if (connect(s->fd, (const struct sockaddr *) &cf->addr, cf->addrlen) < 0
        && errno != EINPROGRESS) {
        session_fail(s, "%s", strerror(errno));
        return;
    }
    io_watch(s, EV_WRITE);
    timer_set(s, LG_TIMEOUT);
}

static void
lg_connect_request(struct lg_session *s)
{
    struct lg_thread *t = s->t;

    if (t->stopping) {
        if (t->cf->idle > 0)
            idle_settle(s, 0);
        session_done(s);
        return;
    }
    /* -R: transaction n starts at start + n / rate (a session that finds
     * its slot past starts at once: a slow server is not given a rest) */
    if (t->cf->rate > 0 && !s->paced) {
        unsigned long n = atomic_fetch_add(&lg_ticket, 1);
        double at = t->cf->start + (double) n / t->cf->rate - lg_now();

        if (at > 0) {
            s->paced = 1;
            lg_enter(s, LG_S_WAIT);
            timer_set(s, at);
            return;
        }
    }
    s->paced = 0;
    if (t->pending >= t->pending_max) {
        if (!s->queued) {
            t->cq[(t->cq_head + t->cq_len) % t->nsess] = s - t->sess;
            t->cq_len++;
            s->queued = 1;
        }
        return;
    }
    do_connect(s);
}

/* -t reached: no new transactions; sessions without a socket end. */
static void
thread_stop(struct lg_thread *t)
{
    unsigned long i;

    t->stopping = 1;
    t->cq_len = 0;
    for (i = 0; i < t->nsess; i++) {
        struct lg_session *s = &t->sess[i];
        s->queued = 0;
        switch (s->state) {
        case LG_S_WAIT:
            if (t->cf->idle > 0)
                idle_settle(s, 0);
            session_done(s);
            break;
        case LG_S_IDLE:
            send_quit(s);
            break;
        case LG_S_CONNECT:
        case LG_S_GREET:
        case LG_S_EHLO:
        case LG_S_MAIL:
        case LG_S_RCPT:
        case LG_S_DATA:
        case LG_S_BODY:
        case LG_S_QUIT:
        case LG_S_CLOSING:
        case LG_S_DONE:
            break;
        }
    }
    thread_check_done(t);
}

static void
stop_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    thread_stop(w->data);
}

/* -t + LG_DRAIN reached (or the idle QUIT wait): abandon the rest. */
static void
giveup_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct lg_thread *t = w->data;
    unsigned long i;

    t->giving_up = 1;
    t->stopping = 1;
    for (i = 0; i < t->nsess; i++) {
        struct lg_session *s = &t->sess[i];
        if (s->state == LG_S_DONE)
            continue;
        if (s->in_tx) {
            note_first(t->first_error, sizeof(t->first_error),
                       "%s: abandoned %.0f s after the end of the run",
                       state_name(s->state), LG_DRAIN);
            count_result(s, LG_R_ERROR, -1);
        }
        if (s->fd >= 0) {
            ev_io_stop(loop, &s->io);
            if (s->state == LG_S_CONNECT)
                t->pending--;
            close(s->fd);
            s->fd = -1;
        }
        if (t->cf->idle > 0)
            idle_settle(s, 0);
        session_done(s);
    }
}

static void
stop_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    struct lg_thread *t = w->data;

    if (!atomic_load(&lg_idle_stop))
        return;
    ev_async_stop(loop, w);
    ev_timer_set(&t->giveup_timer, LG_QUIT_WAIT + 1, 0.);
    ev_timer_start(loop, &t->giveup_timer);
    thread_stop(t);
}

static void *
thread_main(void *arg)
{
    struct lg_thread *t = arg;
    const struct lg_conf *cf = t->cf;
    unsigned long i;
    double elapsed;

    for (i = 0; i < t->nsess; i++) {
        struct lg_session *s = &t->sess[i];
        s->t = t;
        s->fd = -1;
        ev_io_init(&s->io, lg_io_cb, -1, EV_READ);
        s->io.data = s;
        ev_timer_init(&s->timer, lg_timer_cb, 0., 0.);
        s->timer.data = s;
        lg_enter(s, LG_S_WAIT);
    }
    t->active = t->nsess;
    ev_now_update(t->loop);
    if (cf->idle == 0) {
        elapsed = lg_now() - cf->start;
        ev_timer_init(&t->stop_timer, stop_timer_cb,
                      cf->run_s > elapsed ? cf->run_s - elapsed : 0., 0.);
        t->stop_timer.data = t;
        ev_timer_start(t->loop, &t->stop_timer);
        ev_timer_set(&t->giveup_timer, cf->run_s + LG_DRAIN - elapsed, 0.);
        ev_timer_start(t->loop, &t->giveup_timer);
    }
    for (i = 0; i < t->nsess; i++)
        lg_connect_request(&t->sess[i]);
    if (t->active > 0)
        ev_run(t->loop, 0);
    return NULL;
}

/* ------------------------------------------------------------ main */

static int
raise_nofile(unsigned long need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, "loadgen: getrlimit: %s\n", strerror(errno));
        return -1;
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need)
            rl.rlim_max = need;
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            fprintf(stderr,
                    "loadgen: cannot raise the open file limit to %lu: %s "
                    "(try ulimit -n %lu)\n",
                    need, strerror(errno), need);
            return -1;
        }
    }
    return 0;
}

static void
sleep_s(double s)
{
    struct timespec ts;

    ts.tv_sec = (time_t) s;
    ts.tv_nsec = (long) ((s - ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int
main(int argc, char **argv)
{
    struct lg_conf cf;
    struct lg_thread *th = NULL;
    struct lg_counts win, all;
    struct rusage ru;
    const char *msgpath = NULL, *from = "bench@example.com",
               *rcpt = "rcpt@example.com", *helo = "loadgen.example";
    unsigned long i, started = 0, nlat = 0, ndlat = 0;
    double v, window, cpu, lat_max = 0, t_end;
    double *lat = NULL, *dlat = NULL;
    char first_error[160] = "", first_refusal[160] = "";
    int c, ret = 2;

    memset(&cf, 0, sizeof(cf));
    cf.sessions = 10;
    cf.threads = 1;
    cf.run_s = 20;
    cf.warm_s = 3;
    while ((c = getopt(argc, argv, "a:c:t:w:m:Kf:r:H:T:SI:R:qh")) != -1) {
        switch (c) {
        case 'a':
            cf.addr_str = optarg;
            if (parse_addr(optarg, &cf) < 0)
                goto usage;
            break;
        case 'c':
            if (parse_num("-c", optarg, 1, LG_SESSIONS_MAX, 1, &v) < 0)
                goto usage;
            cf.sessions = (unsigned long) v;
            break;
        case 't':
            if (parse_num("-t", optarg, 0.1, LG_SECONDS_MAX, 0, &cf.run_s) < 0)
                goto usage;
            break;
        case 'w':
            if (parse_num("-w", optarg, 0, LG_SECONDS_MAX, 0, &cf.warm_s) < 0)
                goto usage;
            break;
        case 'R':
            if (parse_num("-R", optarg, 0.1, 1000000, 0, &cf.rate) < 0)
                goto usage;
            break;
        case 'm':
            msgpath = optarg;
            break;
        case 'K':
            cf.keep = 1;
            break;
        case 'f':
            if (check_arg("-f", optarg, 1) < 0)
                goto usage;
            from = optarg;
            break;
        case 'r':
            if (check_arg("-r", optarg, 0) < 0)
                goto usage;
            rcpt = optarg;
            break;
        case 'H':
            if (check_arg("-H", optarg, 0) < 0)
                goto usage;
            helo = optarg;
            break;
        case 'T':
            if (parse_num("-T", optarg, 1, LG_THREADS_MAX, 1, &v) < 0)
                goto usage;
            cf.threads = (unsigned long) v;
            break;
        case 'S':
            cf.same = 1;
            break;
        case 'I':
            if (parse_num("-I", optarg, 1, LG_SESSIONS_MAX, 1, &v) < 0)
                goto usage;
            cf.idle = (unsigned long) v;
            break;
        case 'q':
            cf.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            goto usage;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "loadgen: unexpected argument \"%s\"\n", argv[optind]);
        goto usage;
    }
    if (cf.addr_str == NULL) {
        fprintf(stderr, "loadgen: -a HOST:PORT is required\n");
        goto usage;
    }
    if (cf.rate > 0 && (cf.keep || cf.idle > 0)) {
        fprintf(stderr, "loadgen: -R paces new connections: not with -K or "
                        "-I\n");
        goto usage;
    }
    if (cf.idle == 0 && cf.warm_s >= cf.run_s) {
        fprintf(stderr,
                "loadgen: -w %g must be less than -t %g (the window is "
                "[w, t])\n",
                cf.warm_s, cf.run_s);
        goto usage;
    }
    if (cf.idle > 0)
        cf.sessions = cf.idle;
    if (cf.threads > cf.sessions)
        cf.threads = cf.sessions;

    ret = 1;
    signal(SIGPIPE, SIG_IGN);
    if (raise_nofile(cf.sessions + 64) < 0)
        goto out;
    if (setup_message(&cf, msgpath) < 0)
        goto out;
    cf.cmd_ehlo = make_cmd("EHLO %s\r\n", helo, &cf.ehlo_len);
    cf.cmd_mail = make_cmd("MAIL FROM:<%s>\r\n", from, &cf.mail_len);
    cf.cmd_rcpt = make_cmd("RCPT TO:<%s>\r\n", rcpt, &cf.rcpt_len);
    {
        /* a run-unique start, so that repeated runs against one server
         * send different bytes too: microseconds since the epoch */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        atomic_store(&lg_seq,
                     (unsigned long) ts.tv_sec * 1000000UL + ts.tv_nsec / 1000);
    }
    if (!cf.quiet) {
        if (cf.idle > 0)
            printf("loadgen: %s, idle mode: %lu sessions on %lu threads, "
                   "held %g s\n",
                   cf.addr_str, cf.idle, cf.threads, cf.run_s);
        else
            printf("loadgen: %s, %lu sessions on %lu threads, %g s "
                   "(warm-up %g s), %s\n",
                   cf.addr_str, cf.sessions, cf.threads, cf.run_s, cf.warm_s,
                   cf.keep ? "many messages per connection"
                           : "one message per connection");
        printf("message: %s, %zu bytes on the wire, ", cf.msg_name,
               cf.msg_bytes);
        if (cf.same)
            printf("same bytes every message\n");
        else
            printf("unique per message: counter in text at byte %ld, in "
                   "base64 at byte %ld (-1: none)\n",
                   cf.mark.text_pos, cf.mark.b64_pos);
        fflush(stdout);
    }

    th = lg_alloc(cf.threads * sizeof(*th));
    for (i = 0; i < cf.threads; i++) {
        struct lg_thread *t = &th[i];
        t->cf = &cf;
        t->nsess = cf.sessions / cf.threads + (i < cf.sessions % cf.threads);
        t->sess = lg_alloc(t->nsess * sizeof(*t->sess));
        t->cq = lg_alloc(t->nsess * sizeof(*t->cq));
        t->pending_max = LG_CONNECTS_MAX / cf.threads;
        if (t->pending_max == 0)
            t->pending_max = 1;
        t->loop = ev_loop_new(EVFLAG_AUTO);
        if (t->loop == NULL) {
            fprintf(stderr, "loadgen: ev_loop_new failed\n");
            goto out;
        }
        ev_async_init(&t->stop_async, stop_async_cb);
        t->stop_async.data = t;
        ev_timer_init(&t->giveup_timer, giveup_timer_cb, 0., 0.);
        t->giveup_timer.data = t;
        if (cf.idle > 0)
            ev_async_start(t->loop, &t->stop_async);
    }
    cf.start = lg_now();
    for (i = 0; i < cf.threads; i++) {
        int err = pthread_create(&th[i].tid, NULL, thread_main, &th[i]);
        if (err != 0) {
            fprintf(stderr, "loadgen: pthread_create: %s\n", strerror(err));
            break;
        }
        started++;
    }
    if (started < cf.threads) {
        /* the started threads must still end: stop them */
        atomic_store(&lg_idle_stop, 1);
        for (i = 0; i < started; i++) {
            if (cf.idle > 0)
                ev_async_send(th[i].loop, &th[i].stop_async);
        }
    }
    if (cf.idle > 0 && started == cf.threads) {
        double t0 = lg_now();
        while (atomic_load(&lg_idle_settled) < cf.idle)
            sleep_s(0.01);
        printf("idle-ready established=%lu failed=%lu\n",
               atomic_load(&lg_idle_established),
               cf.idle - atomic_load(&lg_idle_established));
        fflush(stdout);
        if (!cf.quiet) {
            printf("idle: all settled in %.2f s; holding %g s\n", lg_now() - t0,
                   cf.run_s);
            fflush(stdout);
        }
        sleep_s(cf.run_s);
        atomic_store(&lg_idle_stop, 1);
        for (i = 0; i < cf.threads; i++)
            ev_async_send(th[i].loop, &th[i].stop_async);
    }
    for (i = 0; i < started; i++)
        pthread_join(th[i].tid, NULL);
    t_end = lg_now();
    if (started < cf.threads)
        goto out;
    getrusage(RUSAGE_SELF, &ru);
    cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
          + ru.ru_stime.tv_usec / 1e6;

    memset(&win, 0, sizeof(win));
    memset(&all, 0, sizeof(all));
    for (i = 0; i < cf.threads; i++)
        nlat += th[i].nlat;
    lat = lg_alloc((nlat ? nlat : 1) * sizeof(*lat));
    nlat = 0;
    for (i = 0; i < cf.threads; i++)
        ndlat += th[i].ndlat;
    dlat = lg_alloc((ndlat ? ndlat : 1) * sizeof(*dlat));
    ndlat = 0;
    for (i = 0; i < cf.threads; i++) {
        struct lg_thread *t = &th[i];
        struct lg_counts *src[2] = {&t->win, &t->all}, *dst[2] = {&win, &all};
        int k;
        for (k = 0; k < 2; k++) {
            dst[k]->sent += src[k]->sent;
            dst[k]->accepted += src[k]->accepted;
            dst[k]->tempfail += src[k]->tempfail;
            dst[k]->rejected += src[k]->rejected;
            dst[k]->errors += src[k]->errors;
            dst[k]->connect_errors += src[k]->connect_errors;
        }
        if (t->nlat > 0)
            memcpy(lat + nlat, t->lat, t->nlat * sizeof(*lat));
        nlat += t->nlat;
        if (t->ndlat > 0)
            memcpy(dlat + ndlat, t->dlat, t->ndlat * sizeof(*dlat));
        ndlat += t->ndlat;
        if (t->lat_max > lat_max)
            lat_max = t->lat_max;
        if (first_error[0] == '\0' && t->first_error[0] != '\0')
            snprintf(first_error, sizeof(first_error), "%s", t->first_error);
        if (first_refusal[0] == '\0' && t->first_refusal[0] != '\0')
            snprintf(first_refusal, sizeof(first_refusal), "%s",
                     t->first_refusal);
    }
    msgmark_sort_ms(lat, nlat);
    msgmark_sort_ms(dlat, ndlat);

    if (cf.idle > 0) {
        unsigned long est = 0, failed = 0, dropped = 0;
        for (i = 0; i < cf.threads; i++) {
            est += th[i].established;
            failed += th[i].failed;
            dropped += th[i].dropped;
        }
        if (!cf.quiet) {
            printf("idle: established %lu, failed %lu, dropped by the server "
                   "while idle %lu, connect errors %lu\n",
                   est, failed, dropped, all.connect_errors);
            printf("cpu: client %.2f s (user + sys), peak rss %.1f MB\n", cpu,
                   ru.ru_maxrss / 1024.0);
        }
        if (!cf.quiet && first_error[0] != '\0')
            printf("first error: %s\n", first_error);
        if (!cf.quiet && first_refusal[0] != '\0')
            printf("first refusal: %s\n", first_refusal);
        printf("summary: sessions=%lu threads=%lu window_s=%.3f sent=0 "
               "accepted=0 tempfail=0 rejected=0 errors=%lu "
               "connect_errors=%lu rate=0.0 p50_ms=0.000 p99_ms=0.000 "
               "max_ms=0.000 client_cpu_s=%.3f unique=%d msg_bytes=%zu\n",
               cf.sessions, cf.threads, cf.run_s, failed + dropped,
               all.connect_errors, cpu, !cf.same, cf.msg_bytes);
        ret = 0;
        goto out;
    }

    window = cf.run_s - cf.warm_s;
    if (!cf.quiet) {
        printf("window: %.2f s: sent %lu, accepted %lu (%.1f/s), tempfail "
               "%lu, rejected %lu, errors %lu, connect errors %lu\n",
               window, win.sent, win.accepted, win.accepted / window,
               win.tempfail, win.rejected, win.errors, win.connect_errors);
        printf("latency: end of data p50 %.3f ms, p99 %.3f ms, max %.3f ms "
               "(%lu in the window)\n",
               msgmark_percentile(lat, nlat, 50),
               msgmark_percentile(lat, nlat, 99), nlat ? lat[nlat - 1] : 0.0,
               nlat);
        printf("latency: DATA to 354 p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
               msgmark_percentile(dlat, ndlat, 50),
               msgmark_percentile(dlat, ndlat, 99),
               ndlat ? dlat[ndlat - 1] : 0.0);
        printf("total: %.2f s: sent %lu, accepted %lu, tempfail %lu, "
               "rejected %lu, errors %lu, connect errors %lu\n",
               t_end - cf.start, all.sent, all.accepted, all.tempfail,
               all.rejected, all.errors, all.connect_errors);
        printf("cpu: client %.2f s (user + sys), %.3f ms per accepted "
               "message, peak rss %.1f MB\n",
               cpu, all.accepted ? cpu * 1e3 / all.accepted : 0.0,
               ru.ru_maxrss / 1024.0);
        if (first_error[0] != '\0')
            printf("first error: %s\n", first_error);
        if (first_refusal[0] != '\0')
            printf("first refusal: %s\n", first_refusal);
    }
    printf("summary: sessions=%lu threads=%lu window_s=%.3f sent=%lu "
           "accepted=%lu tempfail=%lu rejected=%lu errors=%lu "
           "connect_errors=%lu rate=%.1f p50_ms=%.3f p99_ms=%.3f "
           "max_ms=%.3f data_p50_ms=%.3f data_p99_ms=%.3f "
           "client_cpu_s=%.3f unique=%d msg_bytes=%zu\n",
           cf.sessions, cf.threads, window, win.sent, win.accepted,
           win.tempfail, win.rejected, win.errors, win.connect_errors,
           win.accepted / window, msgmark_percentile(lat, nlat, 50),
           msgmark_percentile(lat, nlat, 99), nlat ? lat[nlat - 1] : 0.0,
           msgmark_percentile(dlat, ndlat, 50),
           msgmark_percentile(dlat, ndlat, 99), cpu, !cf.same, cf.msg_bytes);
    ret = 0;
out:
    if (th != NULL) {
        for (i = 0; i < cf.threads; i++) {
            free(th[i].sess);
            free(th[i].cq);
            free(th[i].lat);
            free(th[i].dlat);
            if (th[i].loop != NULL)
                ev_loop_destroy(th[i].loop);
        }
    }
    free(th);
    free(lat);
    free(dlat);
    free(cf.wire);
    free(cf.cmd_ehlo);
    free(cf.cmd_mail);
    free(cf.cmd_rcpt);
    return ret;
usage:
    usage(stderr);
    return 2;
}
