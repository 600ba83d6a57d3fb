/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_smtp.c - the SMTP client delivery agent.
 * One smtp_sess per dlv_job: resolve the next hop (IP literal directly,
 * a host name through getaddrinfo in the wpool), connect to each address
 * in turn (a server whose greeting is not 2xx is skipped like one that
 * cannot be reached, see smtp_greet_refused), then the dialogue:
 * greeting, EHLO (HELO when EHLO gets 5xx),
 * MAIL FROM, one RCPT TO per recipient, DATA, the content read from the
 * queue file and dot-stuffed on the fly, the final ".", QUIT. Content is
 * read with RWF_NOWAIT: a chunk that is not in the page cache (a deferred
 * message's file may have left it) is read by the wpool instead, and the
 * session waits for it (smtp_read_done), so the loop never waits for
 * the disk.
 * When the server announces PIPELINING (RFC 2920) MAIL FROM, the RCPT TOs
 * (up to SMTP_PIPE_MAX bytes of them; the rest follow in further groups)
 * and DATA go out in one write, as Postfix's smtp(8) does, and the
 * replies are matched to them in order; without it every command waits
 * for its reply. With PIPELINING, DATA is sent before the RCPT replies
 * are known: when none was accepted and the server still answers 354,
 * the connection is closed without sending content, which aborts the
 * transaction (RFC 5321 4.1.1.4).
 * LMTP (job->lmtp, RFC 2033, Postfix's lmtp(8)): LHLO instead of EHLO
 * (no HELO), to a TCP next hop or a unix socket (port 0), and after the
 * "." one reply per accepted recipient, in RCPT order (smtp_lmtp_dot).
 * Address verification probes (job->verify): MAIL and RCPT only, then
 * QUIT; the RCPT reply is the outcome.
 * Connection cache (Postfix's smtp_connection_cache_on_demand): after a
 * transaction whose "." got a 2xx, the connection is kept idle for
 * smtp_connection_cache_time_limit instead of QUIT, and the next delivery
 * to the same next hop (host and port as routed) sends MAIL FROM on it at
 * once. An idle connection the server writes to or closes is dropped; a
 * reused one that fails before the reply to MAIL (or gets 421 to it) is
 * replaced by a new connection, so reuse never defers mail. At most
 * SMTP_IDLE_MAX idle connections; none is used longer than
 * smtp_connection_reuse_time_limit.
 * TLS (job->tls_level, from the queue manager's policy lookup): after
 * EHLO, STARTTLS when the server offers it; the handshake's steps run in
 * the wpool (smtp_tls_step), then EHLO again and every byte through
 * OpenSSL (smtp_io_recv, smtp_io_send). Level may goes on in clear when
 * STARTTLS is not offered or refused, and after a failed handshake tries
 * the same address again without TLS; the levels that require TLS defer
 * instead (smtp_tls_start, smtp_tls_failed), and verify/secure also check
 * the certificate (smtp_tls_ok). A cached connection keeps its ssl.
 * AUTH (job->sasl_user, from smtp_sasl_password_maps): after EHLO (and
 * STARTTLS), when the server lists AUTH, the first of CRAM-MD5, PLAIN and
 * LOGIN it lists that smtp_sasl_mechanism_filter and the security options
 * allow (smtp_auth_start, smtp_auth_reply); a refusal defers the mail
 * (smtp_sasl_auth_soft_bounce) as Postfix does. The password is wiped
 * from the buffers that held it in clear or base64 (not from the
 * output buffer, which the next command overwrites only partly).
 * Every stage has its timeout (smtp_*_timeout); replies are bounded
 * (SMTP_LINE_MAX per line, SMTP_REPLY_LINES lines); the output buffer is
 * bounded and refilled from the file only when empty.
 * Each recipient is decided once: job->result[i] is filled and one
 * Postfix-form line is logged under the "smtp" service. done(job) runs
 * from a zero-delay timer, so never from inside dlv_smtp_start().
 * Owns: the session, its socket and buffers. Borrows: the job and what
 * it points to, until done(job) is called (the session is freed first).
 * Threads: loop thread; only smtp_resolve_work(), smtp_read_work() and
 * smtp_tls_work() (the job struct and its ssl, see smtp_tls_step) run in
 * a worker: the first touches only the session's host, port and
 * address list, the second only its chunk and rd_* fields (the session is
 * not freed while s->reading).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/tls.h"
#include "lib/wpool.h"
#include "lib/xalloc.h"
#include "queue/dlv.h"
#include "queue/dlv_resolve.h"

#define SMTP_LINE_MAX    4096             /* one reply line, without CRLF */
#define SMTP_REPLY_LINES 100              /* lines in one reply */
#define SMTP_REPLY_TEXT  8192             /* joined reply text kept for logs */
#define SMTP_IN_CAP      16384            /* input buffer */
#define SMTP_CHUNK       65536            /* pread size */
#define SMTP_OUT_CAP     (4 * SMTP_CHUNK) /* output buffer */
#define SMTP_ADDR_MAX    DLV_ADDR_MAX     /* addresses tried per next hop */
#define SMTP_SAFE_MAX    1024             /* peer text in a log line */
#define SMTP_IDLE_MAX    32               /* cached idle connections */
#define SMTP_KEY_MAX     (NI_MAXHOST + 300) /* "host:port:tls:user", cached */
#define SMTP_PIPE_MAX    16384 /* RCPT bytes queued in one pipelined group */
#define SMTP_AUTH_MAX    512   /* the server's AUTH mechanism list kept */
#define SMTP_CRED_MAX    1024  /* user name, password (AUTH: base64 below) */

enum smtp_state {
    SMTP_S_RESOLVE, /* getaddrinfo in the wpool */
    SMTP_S_CONNECT, /* non-blocking connect in progress */
    SMTP_S_GREET,   /* waiting for the 220 greeting */
    SMTP_S_EHLO,
    SMTP_S_HELO,
    SMTP_S_STARTTLS, /* STARTTLS sent, waiting for its 220 */
    SMTP_S_TLS,      /* the TLS handshake, its steps in the wpool */
    SMTP_S_AUTH,     /* AUTH sent, waiting for 334 or the final reply */
    SMTP_S_MAIL,
    SMTP_S_RCPT, /* waiting for the reply to recipient s->cur's RCPT TO */
    SMTP_S_DATA, /* DATA sent, waiting for 354 (after the RCPT replies) */
    SMTP_S_XFER, /* sending the content */
    SMTP_S_DOT,  /* "." sent, waiting for the final reply */
    SMTP_S_DONE  /* closed; done(job) runs from the timer */
};

/* Server extensions (from the EHLO reply). */
struct smtp_ext {
    int size, eightbit, pipelining, starttls;
    unsigned long long size_limit;
    char auth[SMTP_AUTH_MAX]; /* " PLAIN LOGIN " (AUTH and AUTH=), or "" */
};

/* The SMTP client's SASL mechanisms, in the order of preference. The
 * flags are the properties smtp_sasl_security_options rule out, as Cyrus
 * SASL states them for these mechanisms: PLAIN and LOGIN send the password
 * (plaintext), all three can be attacked offline with a dictionary and
 * actively, none authenticates the server (mutual_auth). */
enum smtp_mech {
    SMTP_M_NONE,
    SMTP_M_CRAM_MD5,
    SMTP_M_PLAIN,
    SMTP_M_LOGIN
};
#define SMTP_SEC_PLAINTEXT  0x01
#define SMTP_SEC_DICTIONARY 0x02
#define SMTP_SEC_ACTIVE     0x04
#define SMTP_SEC_NOMUTUAL   0x08
static const struct smtp_mech_def {
    const char *name;
    enum smtp_mech mech;
    int flags;
    int steps; /* 334 challenges it answers */
} smtp_mechs[] = {
    {"CRAM-MD5", SMTP_M_CRAM_MD5,
     SMTP_SEC_DICTIONARY | SMTP_SEC_ACTIVE | SMTP_SEC_NOMUTUAL, 1},
    {"PLAIN", SMTP_M_PLAIN,
     SMTP_SEC_PLAINTEXT | SMTP_SEC_DICTIONARY | SMTP_SEC_ACTIVE
         | SMTP_SEC_NOMUTUAL,
     0},
    {"LOGIN", SMTP_M_LOGIN,
     SMTP_SEC_PLAINTEXT | SMTP_SEC_DICTIONARY | SMTP_SEC_ACTIVE
         | SMTP_SEC_NOMUTUAL,
     2},
};

struct smtp_sess {
    struct dlv_job *job;
    enum smtp_state state;
    char *host; /* job->host made safe for logs */
    char portstr[8];
    int unix_sock;   /* LMTP over a unix socket: s->addr is its path */
    size_t dot_next; /* LMTP: the next recipient a dot reply is for */

    /* Next-hop addresses: filled by the resolver (worker) or literal. */
    struct dlv_addr addrs[SMTP_ADDR_MAX]; /* .host: "" for getaddrinfo's */
    size_t naddr, ai;
    int gai_err;
    char addr[NET_ADDR_MAX]; /* address being tried or talked to */
    int conn_err;            /* errno of the last failed connect */
    int connected;           /* a TCP connection was made */
    int reused;              /* the connection came from the cache */
    ev_tstamp born;          /* when the connection was made */
    /* The last greeting refusal (log-safe), while it is the last failure. */
    char *refused;
    char refused_dsn[16];

    int fd;
    ev_io rio, wio;
    ev_timer timer;

    struct buf *in, *out;
    /* Reply being read. */
    int code, nlines;
    struct buf *reply; /* lines joined by ' ', capped */
    char dsn[16];

    struct smtp_ext ext;              /* from the EHLO reply */
    const struct smtp_mech_def *mech; /* AUTH in progress */
    int auth_step;                    /* 334 replies answered */
    char discarded[128]; /* its keywords in smtp_discard_ehlo_keywords */

    /* Recipients. */
    size_t cur;    /* the RCPT whose reply comes next */
    size_t sent;   /* recipients below it: RCPT queued or decided */
    int data_sent; /* DATA queued */
    size_t naccepted;
    unsigned char *decided;
    unsigned char *accepted;

    /* Content transfer. */
    char *chunk;
    off_t pos;    /* content bytes sent to out */
    int bol;      /* at the beginning of a line */
    char last[2]; /* last two content bytes */
    int ended;    /* ".\r\n" queued */
    /* A chunk not in the page cache is read in the pool (smtp_fill). */
    int reading;   /* that read is in flight: the session waits for it */
    off_t rd_pos;  /* the content offset it reads from */
    size_t rd_len; /* and how much */
    ssize_t rd_n;  /* its result */
    int rd_err;

    /* Timing for delay/delays. */
    ev_tstamp t_start, t_conn;
    double qdelay; /* time in queue before this delivery */

    /* TLS (STARTTLS, job->tls_level). */
    struct tls_conn tc; /* ssl, on, failed, rd_ww, wr_wr */
    int tls_busy;       /* a handshake step is in the wpool */
    int tls_timedout;   /* smtp_starttls_timeout ran out during that step */
    int no_tls;         /* level may, the handshake failed: clear this time */
    struct smtp_tls_job {
        struct smtp_sess *s;
        SSL *ssl;
        int res; /* SSL_ERROR_NONE, _WANT_READ, _WANT_WRITE, or failed */
        char why[256];
    } tj;
};

/* The agent's name in the log: Postfix's lmtp(8) is smtp(8) by another
 * name. */
#define SMTP_AGENT(s) ((s)->job->lmtp ? "lmtp" : "smtp")

static void smtp_enter(struct smtp_sess *s, enum smtp_state to);
static void smtp_queue_rcpts(struct smtp_sess *s);
static void smtp_connect_next(struct smtp_sess *s);
static void smtp_finish(struct smtp_sess *s);

static const char *
smtp_state_name(enum smtp_state st)
{
    switch (st) {
    case SMTP_S_RESOLVE:
        return "RESOLVE";
    case SMTP_S_CONNECT:
        return "CONNECT";
    case SMTP_S_GREET:
        return "GREET";
    case SMTP_S_EHLO:
        return "EHLO";
    case SMTP_S_HELO:
        return "HELO";
    case SMTP_S_STARTTLS:
        return "STARTTLS";
    case SMTP_S_TLS:
        return "TLS";
    case SMTP_S_AUTH:
        return "AUTH";
    case SMTP_S_MAIL:
        return "MAIL";
    case SMTP_S_RCPT:
        return "RCPT";
    case SMTP_S_DATA:
        return "DATA";
    case SMTP_S_XFER:
        return "XFER";
    case SMTP_S_DOT:
        return "DOT";
    case SMTP_S_DONE:
        return "DONE";
    }
    return "?";
}

/* What we were doing, for "timed out while ..." / "lost connection ...". */
static const char *
smtp_stage(enum smtp_state st)
{
    switch (st) {
    case SMTP_S_RESOLVE:
    case SMTP_S_CONNECT:
        return "connecting";
    case SMTP_S_GREET:
        return "receiving the initial server greeting";
    case SMTP_S_EHLO:
        return "performing the EHLO handshake";
    case SMTP_S_HELO:
        return "performing the HELO handshake";
    case SMTP_S_STARTTLS:
        return "sending STARTTLS";
    case SMTP_S_TLS:
        return "performing the TLS handshake";
    case SMTP_S_AUTH:
        return "performing the SASL authentication handshake";
    case SMTP_S_MAIL:
        return "sending MAIL FROM";
    case SMTP_S_RCPT:
        return "sending RCPT TO";
    case SMTP_S_DATA:
        return "sending DATA command";
    case SMTP_S_XFER:
        return "sending message body";
    case SMTP_S_DOT:
        return "sending end of data -- message may be sent more than once";
    case SMTP_S_DONE:
        return "sending QUIT";
    }
    return "?";
}

/* The command a reply answers, for "(in reply to ... command)". */
static const char *
smtp_cmd_name(enum smtp_state st)
{
    switch (st) {
    case SMTP_S_EHLO:
        return "EHLO";
    case SMTP_S_HELO:
        return "HELO";
    case SMTP_S_STARTTLS:
        return "STARTTLS";
    case SMTP_S_AUTH:
        return "AUTH";
    case SMTP_S_MAIL:
        return "MAIL FROM";
    case SMTP_S_RCPT:
        return "RCPT TO";
    case SMTP_S_DATA:
        return "DATA";
    case SMTP_S_XFER:
    case SMTP_S_DOT:
        return "end of DATA";
    case SMTP_S_RESOLVE:
    case SMTP_S_CONNECT:
    case SMTP_S_GREET:
    case SMTP_S_TLS:
    case SMTP_S_DONE:
        break;
    }
    return NULL;
}

static char *
smtp_safe(const void *p, size_t n)
{
    char *out = xmalloc(SMTP_SAFE_MAX);

    return log_safe(p, n, out, SMTP_SAFE_MAX);
}

/* Decide recipient i once: result, log line. text: already log-safe. */
static void
smtp_decide(struct smtp_sess *s, size_t i, enum dlv_status st, const char *dsn,
            const char *text)
{
    struct dlv_job *job = s->job;
    struct dlv_result *r = &job->result[i];
    const char *rcpt = job->msg->env.rcpt[job->rcpt[i]].addr
                           ? job->msg->env.rcpt[job->rcpt[i]].addr
                           : "";
    const char *status = "deferred";
    char relay[SMTP_SAFE_MAX + NET_ADDR_MAX + 16];
    char d[32], da[32], db[32], dc[32], dd[32], orig[620];
    char *srcpt;
    ev_tstamp now = ev_time();
    double conn, xfer;

    if (s->decided[i])
        return;
    s->decided[i] = 1;
    switch (st) {
    case DLV_SENT:
        status = "sent";
        break;
    case DLV_DEFER:
        status = "deferred";
        break;
    case DLV_BOUNCE:
        status = "bounced";
        break;
    }
    if (job->verify) /* a probe: Postfix's words for its outcome */
        status = st == DLV_SENT ? "deliverable" : "undeliverable";
    else if (st == DLV_BOUNCE && cf_bool(job->cf, "soft_bounce")) {
        st = DLV_DEFER; /* kept queued, logged as Postfix logs it */
        status = "SOFTBOUNCE";
    }
    r->status = st;
    snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
    r->text = xstrdup(text);
    if (s->connected && s->unix_sock) /* Postfix: myhostname[path] */
        snprintf(relay, sizeof(relay), "%s[%s]", s->host, s->addr);
    else if (s->connected)
        snprintf(relay, sizeof(relay), "%s[%s]:%d", s->host, s->addr,
                 job->port);
    else
        snprintf(relay, sizeof(relay), "none");
    conn = (s->t_conn > 0 ? s->t_conn : now) - s->t_start;
    xfer = s->t_conn > 0 ? now - s->t_conn : 0;
    dlv_fmt_delay(dlv_delay(job->msg), d, sizeof(d));
    dlv_fmt_delay(s->qdelay, da, sizeof(da));
    dlv_fmt_delay(0, db, sizeof(db));
    dlv_fmt_delay(conn, dc, sizeof(dc));
    dlv_fmt_delay(xfer, dd, sizeof(dd));
    srcpt = smtp_safe(rcpt, strlen(rcpt));
    log_info_as(
        SMTP_AGENT(s),
        "%s: to=<%s>%s, relay=%s, delay=%s, delays=%s/%s/%s/%s, "
        "dsn=%s, status=%s (%s)",
        job->msg->env.id, srcpt,
        dlv_orig_to(&job->msg->env.rcpt[job->rcpt[i]], orig, sizeof(orig)),
        relay, d, da, db, dc, dd, dsn, status, text);
    free(srcpt);
}

/* Every undecided recipient gets the same outcome. */
static void
smtp_decide_all(struct smtp_sess *s, enum dlv_status st, const char *dsn,
                const char *text)
{
    size_t i;

    for (i = 0; i < s->job->nrcpt; i++)
        if (!s->decided[i])
            smtp_decide(s, i, st, dsn, text);
}

static void smtp_defer_all(struct smtp_sess *s, const char *dsn,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* smtp_decide_all with a formatted text. */
static void
smtp_vdecide_all(struct smtp_sess *s, enum dlv_status st, const char *dsn,
                 const char *fmt, va_list ap)
{
    struct buf *b = buf_new(256, BUF_NOCAP);

    buf_vprintf(b, fmt, ap);
    smtp_decide_all(s, st, dsn, buf_data(b));
    buf_free(b);
}

static void
smtp_defer_all(struct smtp_sess *s, const char *dsn, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    smtp_vdecide_all(s, DLV_DEFER, dsn, fmt, ap);
    va_end(ap);
}

static enum dlv_status
smtp_class_status(int code)
{
    if (code >= 200 && code < 300)
        return DLV_SENT;
    if (code >= 500 && code < 600)
        return DLV_BOUNCE;
    return DLV_DEFER;
}

/* The dsn for a recipient failed by the current reply: the reply's own,
 * unless a 2xx/3xx came where it makes no sense (then deferred). */
static const char *
smtp_fail_dsn(const struct smtp_sess *s)
{
    return s->code / 100 == 4 || s->code / 100 == 5 ? s->dsn : "4.5.0";
}

/* The current reply, log-safe, malloc'd. */
static char *
smtp_reply_text(struct smtp_sess *s)
{
    return smtp_safe(buf_data(s->reply), buf_len(s->reply));
}

/* Decide every undecided recipient by the current (non-2xx) reply. */
static void
smtp_decide_all_reply(struct smtp_sess *s, int greeting)
{
    struct buf *b = buf_new(256, BUF_NOCAP);
    char *rt = smtp_reply_text(s);
    const char *cmd = smtp_cmd_name(s->state);
    enum dlv_status st = smtp_class_status(s->code);

    if (s->job->lmtp && cmd && strcmp(cmd, "EHLO") == 0)
        cmd = "LHLO";
    if (st == DLV_SENT) /* 2xx/3xx where it makes no sense */
        st = DLV_DEFER;
    if (greeting)
        buf_printf(b, "host %s[%s] refused to talk to me: %s", s->host, s->addr,
                   rt);
    else if (cmd)
        buf_printf(b, "host %s[%s] said: %s (in reply to %s command)", s->host,
                   s->addr, rt, cmd);
    else
        buf_printf(b, "host %s[%s] said: %s", s->host, s->addr, rt);
    smtp_decide_all(s, st, smtp_fail_dsn(s), buf_data(b));
    free(rt);
    buf_free(b);
}

/* ---- socket I/O ---- */

static void
smtp_close(struct smtp_sess *s)
{
    ev_io_stop(s->job->loop, &s->rio);
    ev_io_stop(s->job->loop, &s->wio);
    if (s->tls_busy) {
        /* a handshake step still uses the socket and ssl: it fails now,
         * and smtp_tls_done closes and frees them */
        shutdown(s->fd, SHUT_RDWR);
        return;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    SSL_free(s->tc.ssl);
    s->tc.ssl = NULL;
    s->tc.on = s->tc.failed = s->tc.rd_ww = s->tc.wr_wr = 0;
}

/* recv() and send(), through OpenSSL once TLS is on (tls_conn_io); a
 * read that must wait for the socket to be writable (a TLS 1.3 key
 * update) starts the write watcher. */
static ssize_t
smtp_io_recv(struct smtp_sess *s, void *p, size_t n)
{
    char why[256];
    ssize_t r;

    if (!s->tc.on)
        return recv(s->fd, p, n, 0);
    r = tls_conn_io(&s->tc, 0, p, n, why, sizeof(why));
    if (r < 0 && s->tc.rd_ww)
        ev_io_start(s->job->loop, &s->wio);
    return r;
}

static ssize_t
smtp_io_send(struct smtp_sess *s, const void *p, size_t n)
{
    char why[256];

    if (!s->tc.on)
        return send(s->fd, p, n, MSG_NOSIGNAL);
    return tls_conn_io(&s->tc, 1, (void *) p, n, why, sizeof(why));
}

/* A line (QUIT) without waiting: best effort, never blocking. */
static void
smtp_say(struct smtp_sess *s, const char *text)
{
    size_t len = strlen(text);
    ssize_t n;

    if (s->fd < 0)
        return;
    if (!s->tc.on) {
        n = send(s->fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) n;
    } else if (!s->tc.failed) {
        n = smtp_io_send(s, text, len);
        (void) n;
        ERR_clear_error();
    }
}

static void
smtp_say_quit(struct smtp_sess *s)
{
    smtp_say(s, "QUIT\r\n");
}

/* Connection lost or timed out: the undecided are deferred, we close. */
static void smtp_route(struct smtp_sess *s);
static int smtp_park(struct smtp_sess *s);

/* A reused connection failed before MAIL was answered: start over on a
 * new one (1), instead of deferring; 0 when s did not reuse one. */
static int
smtp_reuse_failed(struct smtp_sess *s)
{
    if (!s->reused || s->state != SMTP_S_MAIL)
        return 0;
    s->reused = 0;
    s->connected = 0;
    smtp_close(s);
    buf_reset(s->in);
    buf_reset(s->out);
    buf_reset(s->reply);
    s->code = s->nlines = 0;
    smtp_route(s);
    return 1;
}

static void
smtp_lost(struct smtp_sess *s, int timeout)
{
    if (smtp_reuse_failed(s))
        return;
    if (timeout)
        smtp_defer_all(s, "4.4.2",
                       "conversation with %s[%s] timed out while %s", s->host,
                       s->addr, smtp_stage(s->state));
    else
        smtp_defer_all(s, "4.4.2", "lost connection with %s[%s] while %s",
                       s->host, s->addr, smtp_stage(s->state));
    smtp_finish(s);
}

static void
smtp_protocol_error(struct smtp_sess *s, const char *what)
{
    smtp_defer_all(s, "4.5.0", "protocol error with %s[%s]: %s while %s",
                   s->host, s->addr, what, smtp_stage(s->state));
    smtp_finish(s);
}

/* Write what is buffered: 1 all written, 0 the rest waits for EV_WRITE,
 * -1 the connection is gone (session finished). */
static int
smtp_flush(struct smtp_sess *s)
{
    ssize_t n;

    while (buf_len(s->out) > 0) {
        n = smtp_io_send(s, buf_data(s->out), buf_len(s->out));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(s->job->loop, &s->wio);
                return 0;
            }
            smtp_lost(s, 0);
            return -1;
        }
        buf_consume(s->out, (size_t) n);
        if (s->state == SMTP_S_XFER) { /* the timeout is per progress */
            ev_timer_stop(s->job->loop, &s->timer);
            ev_timer_set(
                &s->timer,
                (ev_tstamp) cf_time(s->job->cf, "smtp_data_xfer_timeout"), 0.);
            ev_timer_start(s->job->loop, &s->timer);
        }
    }
    ev_io_stop(s->job->loop, &s->wio);
    return 1;
}

static void smtp_send(struct smtp_sess *s, enum smtp_state to, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

/* Queue one command, enter the state that waits for its reply, write. */
static void
smtp_send(struct smtp_sess *s, enum smtp_state to, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(s->out, fmt, ap);
    va_end(ap);
    if (r < 0)
        log_panic("smtp: command over the output buffer size");
    smtp_enter(s, to);
    smtp_flush(s);
}

/* Every recipient is decided: say QUIT (best effort, not waiting for its
 * reply) and hand the results back at once, so that the queue manager
 * records them without waiting on the server: the shorter the time
 * between the server's final reply and the durable mark, the smaller the
 * window in which a crash makes a delivery happen twice. */
static void
smtp_quit(struct smtp_sess *s)
{
    if (s->code != 421 && buf_len(s->out) == 0)
        smtp_say_quit(s);
    smtp_finish(s);
}

/* ---- content ---- */

/* Append the end of data: a line end if the content lacks one, ".". */
static void
smtp_fill_end(struct smtp_sess *s)
{
    if (s->job->msg->content_len > 0
        && (s->last[0] != '\r' || s->last[1] != '\n'))
        buf_puts(s->out, "\r\n");
    buf_puts(s->out, ".\r\n");
    s->ended = 1;
}

/* A queue file read that failed (n <= 0, err): the session finishes. */
static void
smtp_read_failed(struct smtp_sess *s, ssize_t n, int err)
{
    smtp_defer_all(s, "4.3.0", "error reading queue file: %s",
                   n < 0 ? strerror(err) : "unexpected end of file");
    smtp_finish(s); /* no "." sent: the server drops the transaction */
}

static void smtp_fill_chunk(struct smtp_sess *s, size_t n);
static void smtp_pump(struct smtp_sess *s);

/* 0: the kernel takes RWF_NOWAIT for queue file reads (tried first). */
static int smtp_nowait_off;

static void
smtp_read_work(void *arg)
{
    struct smtp_sess *s = arg;
    const struct spool_msg *m = s->job->msg;

    do
        s->rd_n = pread(m->fd, s->chunk, s->rd_len, m->content_off + s->rd_pos);
    while (s->rd_n < 0 && errno == EINTR);
    s->rd_err = errno;
}

static void
smtp_read_done(void *arg)
{
    struct smtp_sess *s = arg;
    struct ev_loop *loop = s->job->loop;

    ev_unref(loop); /* balances the ev_ref in smtp_fill */
    s->reading = 0;
    if (s->state == SMTP_S_DONE) { /* ended meanwhile: the timer frees it */
        /* Its zero timer may not have run yet (still active, or expired
         * in this loop turn and pending): started again as it is, it would
         * stay armed in a session that its pending run frees. */
        ev_timer_stop(loop, &s->timer);
        ev_timer_set(&s->timer, 0., 0.);
        ev_timer_start(loop, &s->timer);
        return;
    }
    if (s->state != SMTP_S_XFER)
        return; /* a new connection took over: it reads when it gets here */
    if (s->pos != s->rd_pos) { /* read for an earlier connection: the one */
        smtp_pump(s);          /* in XFER now waited for it, reads anew */
        return;
    }
    if (s->rd_n <= 0) {
        smtp_read_failed(s, s->rd_n, s->rd_err);
        return;
    }
    smtp_fill_chunk(s, (size_t) s->rd_n);
    smtp_pump(s);
}

/* Append one chunk of content (dot-stuffed) to out, and the end of data
 * after the last one (so they leave in one write). 0; 1 when the chunk is
 * not in the page cache: it is read in the pool and the session goes on
 * from smtp_read_done (a read from the disk on the loop would hold up
 * every other delivery: a deferred message may have left the cache long
 * ago); -1 on a queue file read error (session finished). */
static int
smtp_fill(struct smtp_sess *s)
{
    const struct spool_msg *m = s->job->msg;
    struct iovec iov;
    size_t want;
    ssize_t n;

    if (s->reading)
        return 1;
    if (s->pos >= m->content_len) {
        smtp_fill_end(s);
        return 0;
    }
    want = (size_t) (m->content_len - s->pos);
    if (want > SMTP_CHUNK)
        want = SMTP_CHUNK;
    iov.iov_base = s->chunk;
    iov.iov_len = want;
    do
        n = smtp_nowait_off
                ? pread(m->fd, s->chunk, want, m->content_off + s->pos)
                : preadv2(m->fd, &iov, 1, m->content_off + s->pos, RWF_NOWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) {
        log_debug("%s: smtp: content at %lld not in the page cache: read in "
                  "the pool",
                  m->env.id, (long long) s->pos);
        s->reading = 1;
        s->rd_pos = s->pos;
        s->rd_len = want;
        ev_ref(s->job->loop); /* the pool's watcher does not hold the loop */
        wpool_submit(s->job->pool, smtp_read_work, smtp_read_done, s);
        return 1;
    }
    if (n < 0 && !smtp_nowait_off
        && (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL)) {
        smtp_nowait_off = 1; /* no RWF_NOWAIT here: plain reads from now */
        return smtp_fill(s);
    }
    if (n <= 0) {
        smtp_read_failed(s, n, errno);
        return -1;
    }
    smtp_fill_chunk(s, (size_t) n);
    return 0;
}

/* Dot-stuff n bytes read into s->chunk onto out (and the end of data
 * after the last chunk). */
static void
smtp_fill_chunk(struct smtp_sess *s, size_t n)
{
    const struct spool_msg *m = s->job->msg;
    const char *p, *end, *nl;

    s->pos += (off_t) n;
    p = s->chunk;
    end = s->chunk + n;
    while (p < end) {
        if (s->bol && *p == '.')
            buf_putc(s->out, '.');
        nl = memchr(p, '\n', (size_t) (end - p));
        if (nl == NULL) {
            buf_append(s->out, p, (size_t) (end - p));
            s->bol = 0;
            break;
        }
        buf_append(s->out, p, (size_t) (nl + 1 - p));
        s->bol = 1;
        p = nl + 1;
    }
    if (n >= 2) {
        s->last[0] = s->chunk[n - 2];
        s->last[1] = s->chunk[n - 1];
    } else {
        s->last[0] = s->last[1];
        s->last[1] = s->chunk[0];
    }
    if (s->pos >= m->content_len)
        smtp_fill_end(s);
}

/* Move content to the socket until it would block or all is sent. */
static void
smtp_pump(struct smtp_sess *s)
{
    for (;;) {
        if (buf_len(s->out) == 0) {
            if (s->ended) {
                smtp_enter(s, SMTP_S_DOT);
                return;
            }
            if (smtp_fill(s) != 0)
                return; /* failed, or a read in the pool goes on later */
        }
        if (smtp_flush(s) <= 0)
            return;
    }
}

/* ---- dialogue ---- */

/* An address we can put between <> on a command line: bounded, no
 * control characters (no command injection through CR/LF), no <>. */
static int
smtp_addr_ok(const char *a)
{
    const unsigned char *p;

    if (strlen(a) > 1000)
        return 0;
    for (p = (const unsigned char *) a; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
            return 0;
    return 1;
}

/* "AUTH PLAIN LOGIN" (and the old "AUTH=PLAIN LOGIN"): the mechanism
 * names, upper-cased, into s->ext.auth as " PLAIN LOGIN " (both lines
 * add to it); names that are not RFC 4422 names are dropped, and the
 * list is bounded (what does not fit is not kept). */
static void
smtp_ehlo_auth(struct smtp_sess *s, const char *p, size_t len)
{
    size_t used = strlen(s->ext.auth), i, n;

    while (len > 0) {
        for (n = 0; n < len && p[n] != ' '; n++)
            ;
        if (n > 0 && n <= 20
            && strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "abcdefghijklmnopqrstuvwxyz"
                         "0123456789-_")
                   >= n
            && used + n + 2 < sizeof(s->ext.auth)) {
            if (used == 0)
                s->ext.auth[used++] = ' ';
            for (i = 0; i < n; i++)
                s->ext.auth[used++] = (char) toupper((unsigned char) p[i]);
            s->ext.auth[used++] = ' ';
            s->ext.auth[used] = '\0';
        }
        p += n;
        len -= n;
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
    }
}

static void
smtp_ehlo_line(struct smtp_sess *s, const char *kw, size_t len)
{
    char *const *d = cf_list(s->job->cf, "smtp_discard_ehlo_keywords");
    size_t n = strcspn(kw, " "), used;
    char *end;

    if (n > len)
        n = len;
    for (; d && *d; d++) {
        if (strlen(*d) != n || strncasecmp(*d, kw, n) != 0)
            continue;
        used = strlen(s->discarded); /* noted for the log, as Postfix */
        if (used + n + 2 < sizeof(s->discarded))
            snprintf(s->discarded + used, sizeof(s->discarded) - used, "%s%.*s",
                     used ? " " : "", (int) n, kw);
        return;
    }

    if (len >= 4 && strncasecmp(kw, "SIZE", 4) == 0
        && (len == 4 || kw[4] == ' ')) {
        s->ext.size = 1;
        s->ext.size_limit = 0;
        if (len > 5) {
            /* a copy: kw is not NUL-terminated at the end of the line,
             * and on "SIZE  " strtoull would skip the CRLF after it and
             * take the next line's reply code for the limit */
            char *v = xstrndup(kw + 5, len - 5);

            s->ext.size_limit = strtoull(v, &end, 10);
            free(v);
        }
    } else if (len == 8 && strncasecmp(kw, "8BITMIME", 8) == 0) {
        s->ext.eightbit = 1;
    } else if (len == 10 && strncasecmp(kw, "PIPELINING", 10) == 0) {
        s->ext.pipelining = 1;
    } else if (len == 8 && strncasecmp(kw, "STARTTLS", 8) == 0) {
        s->ext.starttls = 1;
    } else if (len > 5 && strncasecmp(kw, "AUTH", 4) == 0
               && (kw[4] == ' ' || kw[4] == '=')) {
        smtp_ehlo_auth(s, kw + 5, len - 5);
    }
}

/* "silent-discard" in smtp_discard_ehlo_keywords: no log line. */
static int
smtp_silent_discard(struct smtp_sess *s)
{
    char *const *d = cf_list(s->job->cf, "smtp_discard_ehlo_keywords");

    for (; d && *d; d++)
        if (strcasecmp(*d, "silent-discard") == 0)
            return 1;
    return 0;
}

static void
smtp_send_mail(struct smtp_sess *s)
{
    const struct spool_msg *m = s->job->msg;
    const char *sender = m->env.sender ? m->env.sender : "";
    struct buf *b;

    if (!smtp_addr_ok(sender)) {
        smtp_decide_all(s, DLV_BOUNCE, "5.1.7", "bad sender address syntax");
        smtp_quit(s);
        return;
    }
    if (s->ext.size && s->ext.size_limit > 0
        && (unsigned long long) m->content_len > s->ext.size_limit) {
        b = buf_new(256, BUF_NOCAP);
        buf_printf(b,
                   "message size %lld exceeds size limit %llu of server "
                   "%s[%s]",
                   (long long) m->content_len, s->ext.size_limit, s->host,
                   s->addr);
        smtp_decide_all(s, DLV_BOUNCE, "5.3.4", buf_data(b));
        buf_free(b);
        smtp_quit(s);
        return;
    }
    b = buf_new(256, BUF_NOCAP);
    buf_printf(b, "MAIL FROM:<%s>", sender);
    if (s->ext.size && !s->job->verify)
        buf_printf(b, " SIZE=%lld", (long long) m->content_len);
    if (s->ext.eightbit && !s->job->verify && m->env.body_type
        && strcasecmp(m->env.body_type, "8BITMIME") == 0)
        buf_puts(b, " BODY=8BITMIME");
    s->cur = s->sent = 0;
    s->data_sent = 0;
    if (buf_printf(s->out, "%s\r\n", buf_data(b)) < 0)
        log_panic("smtp: command over the output buffer size");
    buf_free(b);
    if (s->ext.pipelining)
        smtp_queue_rcpts(s);
    smtp_enter(s, SMTP_S_MAIL);
    smtp_flush(s);
}

/* Queue RCPT TO for the undecided recipients from s->sent on: one
 * without PIPELINING, with it as many as fit in SMTP_PIPE_MAX; then DATA
 * once every recipient is queued (with PIPELINING right behind the RCPTs,
 * without it only when one was accepted). Nothing is written here. */
static void
smtp_queue_rcpts(struct smtp_sess *s)
{
    struct dlv_job *job = s->job;
    const char *a;
    size_t n = 0;

    for (; s->sent < job->nrcpt; s->sent++) {
        if (s->decided[s->sent])
            continue;
        if (n > 0 && (!s->ext.pipelining || buf_len(s->out) >= SMTP_PIPE_MAX))
            break;
        a = job->msg->env.rcpt[job->rcpt[s->sent]].addr;
        if (a == NULL || !smtp_addr_ok(a)) {
            smtp_decide(s, s->sent, DLV_BOUNCE, "5.1.3",
                        "bad recipient address syntax");
            continue;
        }
        if (buf_printf(s->out, "RCPT TO:<%s>\r\n", a) < 0)
            log_panic("smtp: command over the output buffer size");
        n++;
    }
    if (s->sent < job->nrcpt || s->data_sent || job->verify)
        return; /* a probe ends after RCPT: smtp_rcpt_next says QUIT */
    if (s->ext.pipelining ? n > 0 || s->naccepted > 0
                          : n == 0 && s->naccepted > 0) {
        buf_puts(s->out, "DATA\r\n");
        s->data_sent = 1;
    }
}

/* After MAIL or a RCPT was answered: wait for the next RCPT reply, or
 * the DATA reply, or queue and send what comes next; QUIT when no
 * recipient is left and none was accepted. */
static void
smtp_rcpt_next(struct smtp_sess *s)
{
    int queued = 0;

    for (;;) {
        while (s->cur < s->sent && s->decided[s->cur])
            s->cur++; /* decided when queued: its RCPT was never sent */
        if (s->cur < s->sent) {
            smtp_enter(s, SMTP_S_RCPT);
            break;
        }
        if (s->data_sent) {
            smtp_enter(s, SMTP_S_DATA);
            break;
        }
        if (queued) {
            smtp_quit(s);
            return;
        }
        smtp_queue_rcpts(s);
        queued = 1;
    }
    if (buf_len(s->out) > 0)
        smtp_flush(s);
}

/* The greeting was not 2xx. As Postfix's smtp(8): a 4xx greeting, or a
 * 5xx one with smtp_skip_5xx_greeting (the default), skips this server:
 * the next address is tried, and when none is left the recipients are
 * deferred with the refusal (a 5xx's dsn class turned into 4). A 5xx
 * greeting without it bounces them at once. */
static void
smtp_greet_refused(struct smtp_sess *s)
{
    struct buf *b;
    char *rt;

    if (s->code / 100 == 5 && !cf_bool(s->job->cf, "smtp_skip_5xx_greeting")) {
        smtp_decide_all_reply(s, 1);
        smtp_quit(s);
        return;
    }
    b = buf_new(256, BUF_NOCAP);
    rt = smtp_reply_text(s);
    buf_printf(b, "host %s[%s] refused to talk to me: %s", s->host, s->addr,
               rt);
    free(rt);
    free(s->refused);
    s->refused = xstrdup(buf_data(b));
    buf_free(b);
    snprintf(s->refused_dsn, sizeof(s->refused_dsn), "%s", smtp_fail_dsn(s));
    s->refused_dsn[0] = '4';
    if (s->code != 421 && buf_len(s->out) == 0) {
        ssize_t n = send(s->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) n;
    }
    smtp_close(s);
    buf_reset(s->in);
    s->nlines = 0;
    s->ai++;
    smtp_connect_next(s);
}

/* ---- TLS ---- */

/* After EHLO/HELO: 1 when STARTTLS was sent, or the session ended
 * because the level requires TLS and the server does not offer it
 * (Postfix's words and dsn 4.7.4); 0: go on in clear. */
static int
smtp_tls_start(struct smtp_sess *s)
{
    const struct dlv_job *job = s->job;

    if (s->tc.on || job->tls_level == DLV_TLS_NONE || job->tls == NULL
        || s->no_tls)
        return 0;
    if (s->state == SMTP_S_EHLO && s->ext.starttls) {
        smtp_send(s, SMTP_S_STARTTLS, "STARTTLS\r\n");
        return 1;
    }
    if (job->tls_level == DLV_TLS_MAY)
        return 0;
    smtp_defer_all(s, "4.7.4",
                   "TLS is required, but was not offered by host %s[%s]",
                   s->host, s->addr);
    smtp_quit(s);
    return 1;
}

/* Worker: one step of the handshake; touches only the job struct and
 * its ssl (the loop leaves both alone while s->tls_busy). */
static void
smtp_tls_work(void *arg)
{
    struct smtp_tls_job *j = arg;

    j->res = tls_handshake(j->ssl, j->why, sizeof(j->why));
}

static void smtp_tls_done(void *arg);

static void
smtp_tls_step(struct smtp_sess *s)
{
    struct ev_loop *loop = s->job->loop;

    ev_io_stop(loop, &s->rio);
    ev_io_stop(loop, &s->wio);
    if (s->tls_busy)
        return;
    s->tls_busy = 1;
    s->tj.s = s;
    s->tj.ssl = s->tc.ssl;
    ev_ref(loop); /* the wpool's watcher does not keep the loop alive */
    wpool_submit(s->job->pool, smtp_tls_work, smtp_tls_done, &s->tj);
}

/* The handshake failed (why) or timed out (why NULL). Level may: the
 * same address again without TLS, as Postfix's opportunistic TLS falls
 * back to clear text; a level that requires TLS: the mail is deferred. */
static void
smtp_tls_failed(struct smtp_sess *s, const char *why)
{
    const struct dlv_job *job = s->job;

    s->tc.failed = 1;
    if (job->tls_level == DLV_TLS_MAY) {
        log_warning_as("smtp",
                       "%s: TLS handshake failed with %s[%s]:%d: %s: trying "
                       "again without TLS",
                       job->msg->env.id, s->host, s->addr, job->port,
                       why ? why : "timed out");
        smtp_close(s);
        buf_reset(s->in);
        buf_reset(s->out);
        buf_reset(s->reply);
        s->code = s->nlines = 0;
        s->no_tls = 1;
        smtp_connect_next(s);
        return;
    }
    if (why == NULL) {
        smtp_lost(s, 1);
        return;
    }
    log_info_as("smtp", "%s: SSL_connect error to %s[%s]:%d: %s",
                job->msg->env.id, s->host, s->addr, job->port, why);
    smtp_defer_all(s, "4.7.5", "Cannot start TLS: handshake failure");
    smtp_finish(s);
}

/* Handshake done: the certificate as the level wants it, the log line,
 * then EHLO again (RFC 3207 4.2). */
static void
smtp_tls_ok(struct smtp_sess *s)
{
    const struct dlv_job *job = s->job;
    enum tls_trust trust = tls_cli_trust(s->tc.ssl);
    struct tls_info ti;

    s->tc.on = 1;
    /* as Postfix: names are matched at verify and secure only, so below
     * them a good chain is "Trusted", never "Verified" */
    if (job->tls_level < DLV_TLS_VERIFY && trust == TLS_VERIFIED)
        trust = TLS_TRUSTED;
    if (cf_int(job->cf, "smtp_tls_loglevel") >= 1) {
        tls_info_get(s->tc.ssl, &ti);
        log_info_as("smtp", "%s TLS connection established to %s[%s]:%d: %s",
                    tls_trust_name(trust), s->host, s->addr, job->port,
                    ti.line);
    }
    if (job->tls_level >= DLV_TLS_VERIFY && trust != TLS_VERIFIED) {
        smtp_defer_all(s, "4.7.5",
                       trust == TLS_TRUSTED ? "Server certificate not verified"
                                            : "Server certificate not trusted");
        smtp_quit(s);
        return;
    }
    memset(&s->ext, 0, sizeof(s->ext));
    s->discarded[0] = '\0';
    ev_io_start(job->loop, &s->rio);
    smtp_send(s, SMTP_S_EHLO, "EHLO %s\r\n", cf_str(job->cf, "smtp_helo_name"));
}

static void
smtp_tls_done(void *arg)
{
    struct smtp_tls_job *j = arg;
    struct smtp_sess *s = j->s;
    struct ev_loop *loop = s->job->loop;

    ev_unref(loop);
    s->tls_busy = 0;
    if (s->state != SMTP_S_TLS) {
        /* closed meanwhile (smtp_close left the socket to us) */
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
        SSL_free(s->tc.ssl);
        s->tc.ssl = NULL;
        if (s->state == SMTP_S_DONE) { /* as smtp_read_done */
            ev_timer_stop(loop, &s->timer);
            ev_timer_set(&s->timer, 0., 0.);
            ev_timer_start(loop, &s->timer);
        }
        return;
    }
    if (s->tls_timedout) {
        s->tls_timedout = 0;
        smtp_tls_failed(s, NULL);
        return;
    }
    switch (j->res) {
    case SSL_ERROR_WANT_READ:
        ev_io_start(loop, &s->rio);
        return;
    case SSL_ERROR_WANT_WRITE:
        ev_io_start(loop, &s->wio);
        return;
    case SSL_ERROR_NONE:
        smtp_tls_ok(s);
        return;
    default:
        smtp_tls_failed(s, j->why);
        return;
    }
}

/* 220 to STARTTLS: what the server sent after it in clear is not used. */
static void
smtp_tls_begin(struct smtp_sess *s)
{
    const struct dlv_job *job = s->job;
    const char *match = job->tls_match;

    /* Postfix's smtp_tls_verify_cert_match and smtp_tls_secure_cert_match
     * defaults: at secure the name an MX lookup gave is not trusted, the
     * certificate must name the next hop (or a subdomain of it) */
    if ((match == NULL || *match == '\0') && job->tls_level == DLV_TLS_SECURE)
        match = "nexthop, dot-nexthop";
    buf_reset(s->in);
    s->tc.ssl = tls_cli_ssl(job->tls, s->fd, job->tls_level >= DLV_TLS_ENCRYPT,
                            s->host, job->host, match);
    if (s->tc.ssl == NULL) {
        smtp_defer_all(s, "4.3.0", "cannot start TLS: out of memory");
        smtp_finish(s);
        return;
    }
    smtp_enter(s, SMTP_S_TLS);
    smtp_tls_step(s); /* the ClientHello goes first */
}

/* ------------------------------------------------------------------ */
/* SMTP AUTH (smtp_sasl_*) */

/* smtp_sasl_security_options words into the SMTP_SEC_* properties they
 * rule out: 0, or -1 with the unknown word in err. */
static int
smtp_sasl_exclude(const struct cf *cf, const char *param, int *exclude,
                  struct buf *err)
{
    char *const *w = cf_list(cf, param);

    *exclude = 0;
    for (; w && *w; w++) {
        if (strcasecmp(*w, "noplaintext") == 0)
            *exclude |= SMTP_SEC_PLAINTEXT;
        else if (strcasecmp(*w, "nodictionary") == 0)
            *exclude |= SMTP_SEC_DICTIONARY;
        else if (strcasecmp(*w, "noactive") == 0)
            *exclude |= SMTP_SEC_ACTIVE;
        else if (strcasecmp(*w, "mutual_auth") == 0)
            *exclude |= SMTP_SEC_NOMUTUAL;
        else if (strcasecmp(*w, "noanonymous") != 0) { /* none is */
            char safe[128];

            buf_printf(err,
                       "%s: unknown security option \"%s\" (noplaintext, "
                       "noanonymous, nodictionary, noactive, mutual_auth)",
                       param, log_safe(*w, strlen(*w), safe, sizeof(safe)));
            return -1;
        }
    }
    return 0;
}

/* smtp_sasl_mechanism_filter: empty lets every mechanism through; else
 * the first entry that names it decides ("!NAME" keeps it out), and one
 * that no entry names is kept out. */
static int
smtp_mech_filtered(const struct cf *cf, const char *name)
{
    char *const *f = cf_list(cf, "smtp_sasl_mechanism_filter");

    if (f == NULL || *f == NULL)
        return 0;
    for (; *f; f++) {
        int neg = **f == '!';

        if (strcasecmp(*f + neg, name) == 0)
            return neg;
    }
    return 1;
}

/* The mechanism to use: the first of smtp_mechs the server lists that the
 * filter and the security options (the TLS ones on a TLS connection) let
 * through, or NULL. */
static const struct smtp_mech_def *
smtp_mech_pick(struct smtp_sess *s)
{
    const struct cf *cf = s->job->cf;
    struct buf *err = buf_new(128, 1024);
    char want[32];
    int exclude = 0;
    size_t i;

    /* checked at start (dlv_smtp_check): cannot fail here */
    (void) smtp_sasl_exclude(cf,
                             s->tc.on ? "smtp_sasl_tls_security_options"
                                      : "smtp_sasl_security_options",
                             &exclude, err);
    buf_free(err);
    for (i = 0; i < sizeof(smtp_mechs) / sizeof(smtp_mechs[0]); i++) {
        const struct smtp_mech_def *m = &smtp_mechs[i];

        snprintf(want, sizeof(want), " %s ", m->name);
        if (strstr(s->ext.auth, want) && !(m->flags & exclude)
            && !smtp_mech_filtered(cf, m->name))
            return m;
    }
    return NULL;
}

/* An AUTH failure: every recipient deferred (or bounced), QUIT. */
static void smtp_auth_fail(struct smtp_sess *s, enum dlv_status st,
                           const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
smtp_auth_fail(struct smtp_sess *s, enum dlv_status st, const char *dsn,
               const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    smtp_vdecide_all(s, st, dsn, fmt, ap);
    va_end(ap);
    if (s->state == SMTP_S_AUTH && s->code == 334 && buf_len(s->out) == 0) {
        /* the server waits for an answer: cancel (RFC 4954), then QUIT */
        smtp_say(s, "*\r\nQUIT\r\n");
        smtp_finish(s);
        return;
    }
    smtp_quit(s);
}

/* "AUTH MECH[ base64]\r\n" or a "base64\r\n" response into s->out, then
 * the clear copy is wiped. */
static void
smtp_auth_send(struct smtp_sess *s, const char *cmd, unsigned char *data,
               size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b64 = xmalloc(cap);
    int n = EVP_EncodeBlock(b64, data, (int) len);

    OPENSSL_cleanse(data, len);
    if (cmd && len > 0)
        smtp_send(s, SMTP_S_AUTH, "%s %.*s\r\n", cmd, n, (char *) b64);
    else if (cmd)
        smtp_send(s, SMTP_S_AUTH, "%s\r\n", cmd);
    else
        smtp_send(s, SMTP_S_AUTH, "%.*s\r\n", n, (char *) b64);
    OPENSSL_cleanse(b64, cap);
    free(b64);
}

/* After EHLO (and STARTTLS): AUTH when the job has a password for this
 * server and the server offers AUTH. 1: taken over (AUTH sent, or the
 * mail decided); 0: go on with MAIL. */
static int
smtp_auth_start(struct smtp_sess *s)
{
    const struct dlv_job *job = s->job;
    unsigned char buf[2 * SMTP_CRED_MAX + 2];
    size_t ul, pl;

    s->mech = NULL;
    if (job->sasl_user == NULL || s->ext.auth[0] == '\0')
        return 0; /* no password here, or no AUTH there: as Postfix */
    ul = strlen(job->sasl_user);
    pl = strlen(job->sasl_pass);
    if (ul > SMTP_CRED_MAX || pl > SMTP_CRED_MAX) {
        smtp_auth_fail(s, DLV_DEFER, "4.7.0",
                       "SASL authentication failed; cannot authenticate to "
                       "server %s[%s]: user name or password longer than %d "
                       "bytes in smtp_sasl_password_maps",
                       s->host, s->addr, SMTP_CRED_MAX);
        return 1;
    }
    s->mech = smtp_mech_pick(s);
    if (s->mech == NULL) {
        smtp_auth_fail(s, DLV_DEFER, "4.7.0",
                       "SASL authentication failed: server %s[%s] offered no "
                       "compatible authentication mechanisms for this type "
                       "of connection security",
                       s->host, s->addr);
        return 1;
    }
    s->auth_step = 0;
    switch (s->mech->mech) {
    case SMTP_M_PLAIN: /* authzid "", authcid, password */
        buf[0] = '\0';
        memcpy(buf + 1, job->sasl_user, ul);
        buf[1 + ul] = '\0';
        memcpy(buf + 2 + ul, job->sasl_pass, pl);
        smtp_auth_send(s, "AUTH PLAIN", buf, ul + pl + 2);
        break;
    case SMTP_M_LOGIN:
        smtp_send(s, SMTP_S_AUTH, "AUTH LOGIN\r\n");
        break;
    case SMTP_M_CRAM_MD5:
        smtp_send(s, SMTP_S_AUTH, "AUTH CRAM-MD5\r\n");
        break;
    case SMTP_M_NONE:
        log_panic("smtp: no mechanism");
    }
    return 1;
}

/* The CRAM-MD5 answer to the 334 challenge in s->reply: "user hexdigest"
 * into out (SMTP_CRED_MAX + 34 bytes). Its length, or -1 (why in why). */
static int
smtp_cram_md5(struct smtp_sess *s, unsigned char *out, const char **why)
{
    const char *ch;
    size_t n, ul = strlen(s->job->sasl_user), i, pad;
    unsigned char *dec, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int dl;

    if (buf_len(s->reply) < 5) { /* "334 " and at least one byte */
        *why = "the server's CRAM-MD5 challenge is empty";
        return -1;
    }
    ch = buf_data(s->reply) + 4;
    n = strcspn(ch, " ");
    /* strict base64 (RFC 4648), as EVP_DecodeBlock is lenient: its
     * alphabet, a multiple of 4, '=' only as the last one or two */
    pad = n > 0 && ch[n - 1] == '=' ? (n > 1 && ch[n - 2] == '=' ? 2 : 1) : 0;
    if (n == 0 || n % 4 != 0
        || strspn(ch, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789+/")
               != n - pad) {
        *why = "the server's CRAM-MD5 challenge is empty or not base64";
        return -1;
    }
    dec = xmalloc(n / 4 * 3 + 1);
    dl = EVP_DecodeBlock(dec, (const unsigned char *) ch, (int) n);
    if (dl != (int) (n / 4 * 3)) {
        free(dec);
        *why = "the server's CRAM-MD5 challenge is not base64";
        return -1;
    }
    dl -= (int) pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    if (HMAC(EVP_md5(), s->job->sasl_pass, (int) strlen(s->job->sasl_pass), dec,
             (size_t) dl, md, &mdlen)
        == NULL) {
        free(dec);
        *why = "HMAC-MD5 is not available";
        return -1;
    }
    free(dec);
    memcpy(out, s->job->sasl_user, ul);
    out[ul] = ' ';
    for (i = 0; i < mdlen; i++)
        snprintf((char *) out + ul + 1 + 2 * i, 3, "%02x", md[i]);
    OPENSSL_cleanse(md, sizeof(md));
    return (int) (ul + 1 + 2 * mdlen);
}

/* A reply to AUTH or to one of our responses. */
static void
smtp_auth_reply(struct smtp_sess *s)
{
    const struct dlv_job *job = s->job;
    unsigned char buf[SMTP_CRED_MAX + 40];
    const char *why = NULL;
    char dsn[16], *rt;
    int n;

    if (s->code / 100 == 2) {
        s->t_conn = ev_time();
        smtp_send_mail(s);
        return;
    }
    if (s->code == 334 && s->auth_step < s->mech->steps) {
        s->auth_step++;
        switch (s->mech->mech) {
        case SMTP_M_LOGIN: /* the prompts' text does not matter */
            if (s->auth_step == 1) {
                n = (int) strlen(job->sasl_user);
                memcpy(buf, job->sasl_user, (size_t) n);
            } else {
                n = (int) strlen(job->sasl_pass);
                memcpy(buf, job->sasl_pass, (size_t) n);
            }
            smtp_auth_send(s, NULL, buf, (size_t) n);
            return;
        case SMTP_M_CRAM_MD5:
            if ((n = smtp_cram_md5(s, buf, &why)) < 0) {
                smtp_auth_fail(s, DLV_DEFER, "4.7.0",
                               "SASL authentication failed; cannot "
                               "authenticate to server %s[%s]: %s",
                               s->host, s->addr, why);
                return;
            }
            smtp_auth_send(s, NULL, buf, (size_t) n);
            return;
        case SMTP_M_PLAIN:
        case SMTP_M_NONE:
            break;
        }
    }
    if (s->code / 100 == 3) {
        smtp_auth_fail(s, DLV_DEFER, "4.3.0",
                       "SASL authentication failed; authentication protocol "
                       "loop with server %s[%s]",
                       s->host, s->addr);
        return;
    }
    /* 4xx or 5xx: as Postfix, a 5xx defers unless soft bounce is off */
    snprintf(dsn, sizeof(dsn), "%s", smtp_fail_dsn(s));
    if (s->code / 100 == 5 && cf_bool(job->cf, "smtp_sasl_auth_soft_bounce"))
        dsn[0] = '4';
    rt = smtp_reply_text(s);
    smtp_auth_fail(s, dsn[0] == '5' ? DLV_BOUNCE : DLV_DEFER, dsn,
                   "SASL authentication failed; server %s[%s] said: %s",
                   s->host, s->addr, rt);
    free(rt);
}

/* EHLO (and TLS) done: AUTH, then MAIL. */
static void
smtp_ready(struct smtp_sess *s)
{
    if (smtp_auth_start(s))
        return;
    s->t_conn = ev_time();
    smtp_send_mail(s);
}

/* LMTP: after the dot, one reply for each accepted recipient, in RCPT
 * order (RFC 2033 4.2); the last one ends the transaction. */
static void
smtp_lmtp_dot(struct smtp_sess *s)
{
    struct dlv_job *job = s->job;
    char *rt = smtp_reply_text(s);

    while (s->dot_next < job->nrcpt && !s->accepted[s->dot_next])
        s->dot_next++;
    if (s->dot_next < job->nrcpt) {
        if (s->code / 100 == 2)
            smtp_decide(s, s->dot_next, DLV_SENT, s->dsn, rt);
        else {
            struct buf *b = buf_new(256, BUF_NOCAP);

            buf_printf(b,
                       "host %s[%s] said: %s (in reply to end of DATA "
                       "command)",
                       s->host, s->addr, rt);
            smtp_decide(s, s->dot_next,
                        s->code / 100 == 5 ? DLV_BOUNCE : DLV_DEFER,
                        smtp_fail_dsn(s), buf_data(b));
            buf_free(b);
        }
        s->dot_next++;
    }
    free(rt);
    while (s->dot_next < job->nrcpt && !s->accepted[s->dot_next])
        s->dot_next++;
    if (s->dot_next < job->nrcpt) {
        smtp_enter(s, SMTP_S_DOT); /* the next reply, its own timeout */
        return;
    }
    if (smtp_park(s)) {
        smtp_finish(s);
        return;
    }
    smtp_quit(s);
}

/* A complete reply is in s->code, s->reply, s->dsn. */
static void
smtp_reply(struct smtp_sess *s)
{
    struct dlv_job *job = s->job;
    struct buf *b;
    char *rt;
    size_t i;

    if (s->state == SMTP_S_GREET && s->code / 100 != 2) {
        smtp_greet_refused(s);
        return;
    }
    if (s->code == 421 && smtp_reuse_failed(s))
        return;
    if (s->code == 421) {
        smtp_decide_all_reply(s, 0);
        smtp_finish(s);
        return;
    }
    switch (s->state) {
    case SMTP_S_GREET:
        memset(&s->ext, 0, sizeof(s->ext));
        s->discarded[0] = '\0';
        if (job->lmtp)
            smtp_send(s, SMTP_S_EHLO, "LHLO %s\r\n",
                      cf_str(job->cf, "lmtp_lhlo_name"));
        else
            smtp_send(s, SMTP_S_EHLO, "EHLO %s\r\n",
                      cf_str(job->cf, "smtp_helo_name"));
        return;
    case SMTP_S_EHLO:
        if (s->code / 100 == 5 && !job->lmtp) { /* LMTP has no HELO */
            smtp_send(s, SMTP_S_HELO, "HELO %s\r\n",
                      cf_str(job->cf, "smtp_helo_name"));
            return;
        }
        /* fall through */
    case SMTP_S_HELO:
        if (s->code / 100 != 2) {
            smtp_decide_all_reply(s, 0);
            smtp_quit(s);
            return;
        }
        if (s->state == SMTP_S_HELO)
            memset(&s->ext, 0, sizeof(s->ext));
        else if (s->discarded[0] && !smtp_silent_discard(s))
            log_info_as(SMTP_AGENT(s), "%s: discarding EHLO keywords: %s",
                        s->job->msg->env.id, s->discarded);
        if (smtp_tls_start(s))
            return;
        smtp_ready(s);
        return;
    case SMTP_S_STARTTLS:
        if (s->code == 220) {
            smtp_tls_begin(s);
            return;
        }
        if (job->tls_level == DLV_TLS_MAY) { /* go on in clear */
            smtp_ready(s);
            return;
        }
        b = buf_new(256, BUF_NOCAP);
        rt = smtp_reply_text(s);
        buf_printf(b,
                   "TLS is required, but host %s[%s] refused to start TLS: %s",
                   s->host, s->addr, rt);
        free(rt);
        {
            char dsn[16];

            snprintf(dsn, sizeof(dsn), "%s", smtp_fail_dsn(s));
            dsn[0] = '4'; /* a policy failure: deferred, never bounced */
            smtp_defer_all(s, dsn, "%s", buf_data(b));
        }
        buf_free(b);
        smtp_quit(s);
        return;
    case SMTP_S_TLS:
        return; /* no reply is read during the handshake */
    case SMTP_S_AUTH:
        smtp_auth_reply(s);
        return;
    case SMTP_S_MAIL:
        if (s->code / 100 != 2) {
            smtp_decide_all_reply(s, 0);
            smtp_quit(s);
            return;
        }
        smtp_rcpt_next(s);
        return;
    case SMTP_S_RCPT:
        if (s->code / 100 == 2 && job->verify) {
            rt = smtp_reply_text(s);
            smtp_decide(s, s->cur, DLV_SENT, s->dsn, rt);
            free(rt);
        } else if (s->code / 100 == 2) {
            s->accepted[s->cur] = 1;
            s->naccepted++;
        } else {
            b = buf_new(256, BUF_NOCAP);
            rt = smtp_reply_text(s);
            buf_printf(b, "host %s[%s] said: %s (in reply to RCPT TO command)",
                       s->host, s->addr, rt);
            smtp_decide(s, s->cur, s->code / 100 == 5 ? DLV_BOUNCE : DLV_DEFER,
                        smtp_fail_dsn(s), buf_data(b));
            free(rt);
            buf_free(b);
        }
        s->cur++;
        smtp_rcpt_next(s);
        return;
    case SMTP_S_DATA:
        if (s->naccepted == 0) { /* pipelined DATA, every RCPT refused */
            if (s->code / 100 == 3)
                smtp_finish(s); /* no content, no QUIT: aborted */
            else
                smtp_quit(s);
            return;
        }
        if (s->code / 100 != 3) {
            smtp_decide_all_reply(s, 0);
            smtp_quit(s);
            return;
        }
        s->pos = 0;
        s->dot_next = 0;
        s->bol = 1;
        s->ended = 0;
        s->last[0] = s->last[1] = 0;
        if (s->chunk == NULL)
            s->chunk = xmalloc(SMTP_CHUNK);
        smtp_enter(s, SMTP_S_XFER);
        smtp_pump(s);
        return;
    case SMTP_S_XFER:
        /* A reply before we sent "." (a server giving up early). */
        smtp_decide_all_reply(s, 0);
        smtp_finish(s);
        return;
    case SMTP_S_DOT:
        if (job->lmtp) {
            smtp_lmtp_dot(s);
            return;
        }
        if (s->code / 100 == 2) {
            rt = smtp_reply_text(s);
            for (i = 0; i < job->nrcpt; i++)
                if (s->accepted[i])
                    smtp_decide(s, i, DLV_SENT, s->dsn, rt);
            free(rt);
            if (smtp_park(s)) {
                smtp_finish(s);
                return;
            }
        } else {
            smtp_decide_all_reply(s, 0);
        }
        smtp_quit(s);
        return;
    case SMTP_S_RESOLVE:
    case SMTP_S_CONNECT:
    case SMTP_S_DONE:
        log_panic("smtp: reply in state %s", smtp_state_name(s->state));
    }
}

/* "250 2.1.5 Ok" -> "2.1.5"; else "X.0.0" from the reply class. */
static void
smtp_reply_dsn(struct smtp_sess *s, const char *line, size_t len)
{
    size_t i = 4, start = 4, n;
    int parts = 0;

    snprintf(s->dsn, sizeof(s->dsn), "%d.0.0", s->code / 100);
    if (len < 9 || line[4] != line[0])
        return;
    for (parts = 0; parts < 3; parts++) {
        for (n = 0; i < len && isdigit((unsigned char) line[i]) && n < 3;
             i++, n++)
            ;
        if (n == 0 || (parts == 0 && n != 1))
            return;
        if (parts < 2) {
            if (i >= len || line[i] != '.')
                return;
            i++;
        }
    }
    if (i < len && line[i] != ' ')
        return;
    snprintf(s->dsn, sizeof(s->dsn), "%.*s", (int) (i - start), line + start);
}

/* One reply line (CRLF stripped): 1 the reply is complete, 0 more lines
 * follow, -1 malformed, -2 too many lines. */
static int
smtp_line(struct smtp_sess *s, const char *line, size_t len)
{
    int code;

    if (len < 3 || line[0] < '2' || line[0] > '5'
        || !isdigit((unsigned char) line[1])
        || !isdigit((unsigned char) line[2]))
        return -1;
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return -1;
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (s->nlines == 0) {
        s->code = code;
        buf_reset(s->reply);
        smtp_reply_dsn(s, line, len);
    } /* a continuation line with another code: tolerated, first wins */
    if (++s->nlines > SMTP_REPLY_LINES)
        return -2;
    if (buf_len(s->reply) > 0)
        buf_putc(s->reply, ' '); /* over the cap: the log text is cut */
    buf_append(s->reply, line, len);
    if (s->state == SMTP_S_EHLO && s->nlines > 1 && len > 4)
        smtp_ehlo_line(s, line + 4, len - 4);
    if (len == 3 || line[3] == ' ') {
        s->nlines = 0;
        return 1;
    }
    return 0;
}

/* One read and the replies it completes: 1 when more may be read at
 * once (OpenSSL holds decrypted bytes, which raise no event), 0 when not,
 * -1 when the session is over or moved on. */
static int
smtp_read_once(struct smtp_sess *s)
{
    size_t room = SMTP_IN_CAP - buf_len(s->in), len;
    char *p, *line;
    ssize_t n;
    long nl;
    int r;

    if (room > 4096)
        room = 4096;
    if ((p = buf_reserve(s->in, room)) == NULL) {
        smtp_protocol_error(s, "reply line too long");
        return -1;
    }
    n = smtp_io_recv(s, p, room);
    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        smtp_lost(s, 0);
        return -1;
    }
    if (n == 0) {
        smtp_lost(s, 0);
        return -1;
    }
    buf_commit(s->in, (size_t) n);
    while (s->state != SMTP_S_DONE && s->state != SMTP_S_TLS
           && (nl = buf_find(s->in, '\n')) >= 0) {
        line = buf_data(s->in);
        len = (size_t) nl;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (len > SMTP_LINE_MAX) {
            smtp_protocol_error(s, "reply line too long");
            return -1;
        }
        r = smtp_line(s, line, len);
        buf_consume(s->in, (size_t) nl + 1);
        if (r < 0) {
            smtp_protocol_error(s, r == -2 ? "reply has too many lines"
                                           : "malformed reply");
            return -1;
        }
        if (r == 1)
            smtp_reply(s);
    }
    if (s->state == SMTP_S_DONE || s->state == SMTP_S_TLS)
        return -1;
    if (buf_len(s->in) > SMTP_LINE_MAX) {
        smtp_protocol_error(s, "reply line too long");
        return -1;
    }
    return s->tc.on && s->tc.ssl && !s->tc.failed && SSL_has_pending(s->tc.ssl);
}

static void
smtp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct smtp_sess *s = w->data;

    if (s->state == SMTP_S_TLS) {
        smtp_tls_step(s);
        return;
    }
    if (s->tc.wr_wr) { /* a write waited for this */
        s->tc.wr_wr = 0;
        if (smtp_flush(s) < 0)
            return;
        if (s->state == SMTP_S_XFER)
            smtp_pump(s);
        if (s->state == SMTP_S_DONE)
            return;
    }
    while (smtp_read_once(s) > 0)
        ;
}

static void
smtp_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct smtp_sess *s = w->data;
    socklen_t elen = sizeof(int);
    int err = 0;

    if (s->state == SMTP_S_CONNECT) {
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
        if (err != 0) {
            s->conn_err = err;
            free(s->refused);
            s->refused = NULL;
            smtp_close(s);
            s->ai++;
            smtp_connect_next(s);
            return;
        }
        ev_io_stop(loop, &s->wio);
        s->connected = 1;
        s->born = ev_now(loop);
        ev_io_start(loop, &s->rio);
        smtp_enter(s, SMTP_S_GREET);
        return;
    }
    if (s->state == SMTP_S_TLS) {
        smtp_tls_step(s);
        return;
    }
    if (s->tc.rd_ww) { /* a read waited for this */
        s->tc.rd_ww = 0;
        if (buf_len(s->out) == 0)
            ev_io_stop(loop, &s->wio);
        smtp_read_cb(loop, &s->rio, EV_READ);
        if (s->state == SMTP_S_DONE || s->fd < 0 || buf_len(s->out) == 0)
            return;
    }
    if (smtp_flush(s) <= 0)
        return;
    if (s->state == SMTP_S_XFER)
        smtp_pump(s);
}

static void
smtp_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtp_sess *s = w->data;
    struct dlv_job *job = s->job;

    switch (s->state) {
    case SMTP_S_DONE:
        if (s->reading || s->tls_busy)
            return; /* freed when the read or handshake step is back */
        SSL_free(s->tc.ssl);
        buf_free(s->in);
        buf_free(s->out);
        buf_free(s->reply);
        free(s->chunk);
        free(s->decided);
        free(s->accepted);
        free(s->host);
        free(s->refused);
        free(s);
        job->done(job);
        return;
    case SMTP_S_CONNECT:
        s->conn_err = ETIMEDOUT;
        free(s->refused);
        s->refused = NULL;
        smtp_close(s);
        s->ai++;
        smtp_connect_next(s);
        return;
    case SMTP_S_RESOLVE:
        return; /* no timer while resolving */
    case SMTP_S_TLS:
        if (s->tls_busy) { /* the step fails now and smtp_tls_done goes on */
            s->tls_timedout = 1;
            shutdown(s->fd, SHUT_RDWR);
            return;
        }
        smtp_tls_failed(s, NULL);
        return;
    case SMTP_S_STARTTLS:
    case SMTP_S_GREET:
    case SMTP_S_EHLO:
    case SMTP_S_HELO:
    case SMTP_S_AUTH:
    case SMTP_S_MAIL:
    case SMTP_S_RCPT:
    case SMTP_S_DATA:
    case SMTP_S_XFER:
    case SMTP_S_DOT:
        smtp_lost(s, 1);
        return;
    }
}

/* The one place that changes state; it also arms the stage timer. */
static void
smtp_enter(struct smtp_sess *s, enum smtp_state to)
{
    const struct cf *cf = s->job->cf;
    ev_tstamp t = 0;

    log_debug("%s: smtp %s -> %s", s->job->msg->env.id,
              smtp_state_name(s->state), smtp_state_name(to));
    s->state = to;
    ev_timer_stop(s->job->loop, &s->timer);
    switch (to) {
    case SMTP_S_RESOLVE:
        return;
    case SMTP_S_CONNECT:
        t = (ev_tstamp) cf_time(cf, "smtp_connect_timeout");
        break;
    case SMTP_S_GREET:
    case SMTP_S_EHLO:
    case SMTP_S_HELO:
    case SMTP_S_STARTTLS:
    case SMTP_S_AUTH:
        t = (ev_tstamp) cf_time(cf, "smtp_helo_timeout");
        break;
    case SMTP_S_TLS:
        t = (ev_tstamp) cf_time(cf, "smtp_starttls_timeout");
        break;
    case SMTP_S_MAIL:
        t = (ev_tstamp) cf_time(cf, "smtp_mail_timeout");
        break;
    case SMTP_S_RCPT:
        t = (ev_tstamp) cf_time(cf, "smtp_rcpt_timeout");
        break;
    case SMTP_S_DATA:
        t = (ev_tstamp) cf_time(cf, "smtp_data_init_timeout");
        break;
    case SMTP_S_XFER:
        t = (ev_tstamp) cf_time(cf, "smtp_data_xfer_timeout");
        break;
    case SMTP_S_DOT:
        t = (ev_tstamp) cf_time(cf, "smtp_data_done_timeout");
        break;
    case SMTP_S_DONE:
        t = 0; /* done(job) from the loop, right away */
        break;
    }
    if (t < 0)
        t = 0;
    ev_timer_set(&s->timer, t, 0.);
    ev_timer_start(s->job->loop, &s->timer);
}

/* Close and hand the job back (from the timer). Every recipient must be
 * decided by now; one that is not is deferred rather than lost. */
static void
smtp_finish(struct smtp_sess *s)
{
    if (s->state == SMTP_S_DONE)
        return;
    smtp_defer_all(s, "4.3.0", "delivery to %s ended without a result",
                   s->host);
    smtp_close(s);
    smtp_enter(s, SMTP_S_DONE);
}

/* ---- connection cache ---- */

struct smtp_idle {
    struct smtp_idle *next;
    struct ev_loop *loop;
    char key[SMTP_KEY_MAX]; /* next hop "host:port:tls" */
    char addr[NET_ADDR_MAX];
    int fd;
    SSL *ssl; /* a TLS connection's, or NULL */
    struct smtp_ext ext;
    ev_tstamp born;
    ev_io rio;
    ev_timer timer;
};

static struct smtp_idle *smtp_idle_list; /* loop thread only */
static size_t smtp_nidle;

/* The cache key of a job's next hop into key; 0, or -1 when it does not
 * fit (such a next hop is not cached). */
static int
smtp_idle_key(const struct dlv_job *job, char key[SMTP_KEY_MAX])
{
    /* the TLS level too, as Postfix's cache: a connection parked in
     * clear never serves a job that requires TLS; and the AUTH user: an
     * authenticated connection serves only mail with the same one */
    int n =
        snprintf(key, SMTP_KEY_MAX, "%s%s%s:%d:%d:%s", job->lmtp ? "lmtp:" : "",
                 job->mx ? "" : "[", job->host ? job->host : "", job->port,
                 (int) job->tls_level, job->sasl_user ? job->sasl_user : "");

    return n > 0 && n < SMTP_KEY_MAX ? 0 : -1;
}

/* Take e out of the cache and stop watching it; the caller owns e->fd. */
static void
smtp_idle_unlink(struct smtp_idle *e)
{
    struct smtp_idle **pp;

    for (pp = &smtp_idle_list; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            smtp_nidle--;
            break;
        }
    ev_io_stop(e->loop, &e->rio);
    ev_timer_stop(e->loop, &e->timer);
}

static void
smtp_idle_drop(struct smtp_idle *e)
{
    ssize_t n;

    smtp_idle_unlink(e);
    if (e->ssl == NULL)
        n = send(e->fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
    else
        n = SSL_write(e->ssl, "QUIT\r\n", 6); /* non-blocking: or not */
    (void) n;
    ERR_clear_error();
    close(e->fd);
    SSL_free(e->ssl);
    free(e);
}

/* The server wrote (421, or closed): the connection is no use. */
static void
smtp_idle_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    smtp_idle_drop(w->data);
}

static void
smtp_idle_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    smtp_idle_drop(w->data);
}

/* After a 2xx to ".": keep the connection (1) or not (0). */
static int
smtp_park(struct smtp_sess *s)
{
    const struct cf *cf = s->job->cf;
    double keep = (double) cf_time(cf, "smtp_connection_cache_time_limit");
    double life = (double) cf_time(cf, "smtp_connection_reuse_time_limit");
    struct smtp_idle *e;
    char key[SMTP_KEY_MAX];

    if (smtp_idle_key(s->job, key) < 0
        || !cf_bool(cf, "smtp_connection_cache_on_demand") || keep <= 0
        || s->fd < 0 || buf_len(s->out) > 0 || buf_len(s->in) > 0
        || ev_now(s->job->loop) - s->born >= life || s->tc.failed
        || (s->tc.on && SSL_has_pending(s->tc.ssl)))
        return 0;
    if (smtp_nidle >= SMTP_IDLE_MAX) /* the oldest one makes room */
        for (e = smtp_idle_list; e; e = e->next)
            if (e->next == NULL) {
                smtp_idle_drop(e);
                break;
            }
    ev_io_stop(s->job->loop, &s->rio);
    ev_io_stop(s->job->loop, &s->wio);
    e = xcalloc(1, sizeof(*e));
    e->loop = s->job->loop;
    memcpy(e->key, key, sizeof(key));
    snprintf(e->addr, sizeof(e->addr), "%s", s->addr);
    e->fd = s->fd;
    e->ssl = s->tc.ssl;
    e->ext = s->ext;
    e->born = s->born;
    /* The stopped read watcher moves over as it is, on the same open
     * socket: set up anew (ev_io_init), libev would register the fd with
     * epoll again (a failed EPOLL_CTL_ADD, then a retry). */
    e->rio = s->rio;
    ev_set_cb(&e->rio, smtp_idle_read_cb);
    e->rio.data = e;
    ev_io_start(e->loop, &e->rio);
    ev_timer_init(&e->timer, smtp_idle_timer_cb, keep, 0.);
    e->timer.data = e;
    ev_timer_start(e->loop, &e->timer);
    e->next = smtp_idle_list;
    smtp_idle_list = e;
    smtp_nidle++;
    s->fd = -1; /* the cache owns it now */
    s->tc.ssl = NULL;
    s->tc.on = 0;
    return 1;
}

/* A cached connection to the job's next hop into s: 1, or 0 if none. */
static int
smtp_unpark(struct smtp_sess *s)
{
    char key[SMTP_KEY_MAX];
    struct smtp_idle *e;

    if (smtp_nidle == 0 || smtp_idle_key(s->job, key) < 0)
        return 0;
    for (e = smtp_idle_list; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            break;
    if (e == NULL)
        return 0;
    smtp_idle_unlink(e);
    s->fd = e->fd;
    s->tc.ssl = e->ssl;
    s->tc.on = e->ssl != NULL;
    s->ext = e->ext;
    s->born = e->born;
    snprintf(s->addr, sizeof(s->addr), "%s", e->addr);
    s->rio = e->rio; /* stopped; the same socket (see smtp_park) */
    free(e);
    s->reused = 1;
    s->connected = 1;
    ev_set_cb(&s->rio, smtp_read_cb);
    ev_io_init(&s->wio, smtp_write_cb, s->fd, EV_WRITE);
    s->rio.data = s->wio.data = s;
    ev_io_start(s->job->loop, &s->rio);
    return 1;
}

/* ---- connecting ---- */

/* smtp_bind_address (IPv4) or smtp_bind_address6 for a connection to
 * family af: 1 with the address in *from, 0 when none is set, -1 when it
 * is not a numeric address (sluiced refuses to start with one). */
static int
smtp_bind_from(const struct cf *cf, int af, struct sockaddr_storage *from,
               socklen_t *flen, const char **name)
{
    const char *v;

    *name = af == AF_INET6 ? "smtp_bind_address6" : "smtp_bind_address";
    if (af != AF_INET && af != AF_INET6)
        return 0;
    v = cf_str(cf, *name);
    if (*v == '\0')
        return 0;
    return net_addr_parse(v, af, from, flen) == 0 ? 1 : -1;
}

int
dlv_tls_parse(const char *v, char **match)
{
    static const struct {
        const char *name;
        int level;
    } lv[] = {
        {"", DLV_TLS_NONE},           {"none", DLV_TLS_NONE},
        {"may", DLV_TLS_MAY},         {"dane", DLV_TLS_MAY},
        {"encrypt", DLV_TLS_ENCRYPT}, {"verify", DLV_TLS_VERIFY},
        {"secure", DLV_TLS_SECURE},   {"dane-only", -2},
        {"fingerprint", -2},
    };
    size_t i, n;
    int level = -1;

    v += strspn(v, " \t");
    n = strcspn(v, " \t");
    for (i = 0; i < sizeof(lv) / sizeof(lv[0]); i++)
        if (strlen(lv[i].name) == n && strncasecmp(v, lv[i].name, n) == 0)
            level = lv[i].level;
    if (match == NULL)
        return level;
    *match = NULL;
    for (v += n; *(v += strspn(v, " \t")); v += n) {
        n = strcspn(v, " \t");
        if (n > 6 && strncasecmp(v, "match=", 6) == 0) {
            free(*match);
            *match = xstrndup(v + 6, n - 6);
        }
    }
    return level;
}

void
dlv_smtp_check_tls(const struct cf *cf, struct buf *warn)
{
    const char *v = cf_str(cf, "smtp_tls_security_level");
    struct buf *err = buf_new(128, 4096);
    struct tls_cli *t;
    int lv = dlv_tls_parse(v, NULL);

    if (lv == -1)
        buf_printf(warn,
                   "smtp_tls_security_level = %.64s is not a TLS security "
                   "level: mail to SMTP next hops is deferred (4.7.5)\n",
                   v);
    else if (lv == -2)
        buf_printf(warn,
                   "smtp_tls_security_level = %.64s is not supported by this "
                   "Sluice: mail to SMTP next hops is deferred (4.7.5)\n",
                   v);
    if (lv == DLV_TLS_NONE && *cf_str(cf, "smtp_tls_policy_maps") == '\0') {
        buf_free(err);
        return;
    }
    t = tls_cli_new(cf_str(cf, "smtp_tls_CAfile"),
                    cf_str(cf, "smtp_tls_CApath"),
                    cf_str(cf, "smtp_tls_protocols"),
                    cf_str(cf, "smtp_tls_mandatory_protocols"), err, warn);
    if (t == NULL)
        buf_printf(warn,
                   "smtp: TLS is not available: %s; mail to next hops whose "
                   "TLS level requires it is deferred (4.7.5)\n",
                   buf_data(err));
    else if (buf_len(warn) > 0 && buf_data(warn)[buf_len(warn) - 1] != '\n')
        buf_puts(warn, "; levels verify and secure will find no certificate "
                       "trusted\n");
    tls_cli_free(t);
    buf_free(err);
}

int
dlv_smtp_check(const struct cf *cf, struct buf *err)
{
    static const int fam[] = {AF_INET, AF_INET6};
    struct sockaddr_storage ss;
    socklen_t len;
    const char *name;

    for (size_t i = 0; i < sizeof(fam) / sizeof(fam[0]); i++)
        if (smtp_bind_from(cf, fam[i], &ss, &len, &name) < 0) {
            buf_reset(err);
            buf_printf(err, "%s: not a numeric %s address: %.64s", name,
                       fam[i] == AF_INET ? "IPv4" : "IPv6", cf_str(cf, name));
            return -1;
        }
    if (cf_bool(cf, "smtp_sasl_auth_enable")) {
        int x;

        buf_reset(err);
        if (cf_list(cf, "smtp_sasl_password_maps")[0] == NULL) {
            /* Postfix's smtp(8) stops here too */
            buf_printf(err, "smtp_sasl_auth_enable = yes: specify a password "
                            "table via the smtp_sasl_password_maps "
                            "configuration parameter");
            return -1;
        }
        if (smtp_sasl_exclude(cf, "smtp_sasl_security_options", &x, err) < 0
            || smtp_sasl_exclude(cf, "smtp_sasl_tls_security_options", &x, err)
                   < 0)
            return -1;
    }
    return 0;
}

static void
smtp_connect_next(struct smtp_sess *s)
{
    struct sockaddr_storage from;
    socklen_t flen = 0;
    const char *bname;
    struct dlv_addr *a;
    int fd, b, berr;

    for (; s->ai < s->naddr; s->ai++) {
        a = &s->addrs[s->ai];
        if (a->host[0] != '\0') { /* an exchanger: logs name it */
            free(s->host);
            s->host = smtp_safe(a->host, strlen(a->host));
        }
        if (!s->unix_sock)
            net_ntop((struct sockaddr *) &a->ss, s->addr, sizeof(s->addr),
                     NULL);
        b = s->unix_sock ? 0
                         : smtp_bind_from(s->job->cf, a->ss.ss_family, &from,
                                          &flen, &bname);
        if (b < 0) {
            smtp_defer_all(s, "4.3.5", "bad %s: %.64s", bname,
                           cf_str(s->job->cf, bname));
            smtp_finish(s);
            return;
        }
        fd =
            net_connect_from((struct sockaddr *) &a->ss, a->len,
                             b ? (struct sockaddr *) &from : NULL, flen, &berr);
        if (berr != 0) /* as Postfix: said, and connected all the same */
            log_warning("smtp: bind %s: %s", cf_str(s->job->cf, bname),
                        strerror(berr));
        if (fd < 0) {
            s->conn_err = errno;
            free(s->refused);
            s->refused = NULL;
            continue;
        }
        s->fd = fd;
        ev_io_init(&s->rio, smtp_read_cb, fd, EV_READ);
        ev_io_init(&s->wio, smtp_write_cb, fd, EV_WRITE);
        s->rio.data = s->wio.data = s;
        ev_io_start(s->job->loop, &s->wio);
        smtp_enter(s, SMTP_S_CONNECT);
        return;
    }
    if (s->refused)
        smtp_decide_all(s, DLV_DEFER, s->refused_dsn, s->refused);
    else if (s->naddr == 0)
        smtp_defer_all(s, "4.4.1", "connect to %s: no address", s->host);
    else if (s->unix_sock)
        smtp_defer_all(s, "4.4.1", "connect to %s[%s]: %s", s->host, s->addr,
                       strerror(s->conn_err));
    else
        smtp_defer_all(s, "4.4.1", "connect to %s[%s]:%d: %s", s->host, s->addr,
                       s->job->port, strerror(s->conn_err));
    smtp_finish(s);
}

/* Worker thread: touches only s->job->host (read), portstr, addrs. */
static void
smtp_resolve_work(void *arg)
{
    struct smtp_sess *s = arg;
    struct addrinfo hints, *res = NULL, *ai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    s->gai_err = getaddrinfo(s->job->host, s->portstr, &hints, &res);
    if (s->gai_err != 0)
        return;
    for (ai = res; ai && s->naddr < SMTP_ADDR_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        memset(&s->addrs[s->naddr], 0, sizeof(s->addrs[0]));
        memcpy(&s->addrs[s->naddr].ss, ai->ai_addr, ai->ai_addrlen);
        s->addrs[s->naddr].len = ai->ai_addrlen;
        s->naddr++;
    }
    freeaddrinfo(res);
}

static void
smtp_resolve_done(void *arg)
{
    struct smtp_sess *s = arg;

    ev_unref(s->job->loop); /* balances the ev_ref in dlv_smtp_start */
    if (s->gai_err != 0 || s->naddr == 0) {
        smtp_defer_all(s, "4.4.3",
                       "Host or domain name not found. Name service error "
                       "for name=%s type=A: %s",
                       s->host,
                       s->gai_err ? gai_strerror(s->gai_err) : "no address");
        smtp_finish(s);
        return;
    }
    s->ai = 0;
    smtp_connect_next(s);
}

/* The MX and address lookups' outcome (dlv_resolve). */
static void
smtp_resolved(void *arg, const struct dlv_resolve_result *r)
{
    struct smtp_sess *s = arg;

    if (r->status != DLV_SENT) {
        smtp_decide_all(s, r->status, r->dsn, r->text);
        smtp_finish(s);
        return;
    }
    memcpy(s->addrs, r->addrs, r->n * sizeof(r->addrs[0]));
    s->naddr = r->n;
    s->ai = 0;
    smtp_connect_next(s);
}

/* An IP literal, with or without []: 1 and one address in s, else 0. */
static int
smtp_literal(struct smtp_sess *s, const char *host)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *) &s->addrs[0].ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &s->addrs[0].ss;
    char tmp[NET_ADDR_MAX];
    size_t n = strlen(host);

    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(tmp))
        return 0;
    memcpy(tmp, host, n);
    tmp[n] = '\0';
    memset(&s->addrs[0], 0, sizeof(s->addrs[0]));
    if (inet_pton(AF_INET, tmp, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t) s->job->port);
        s->addrs[0].len = sizeof(*s4);
    } else if (inet_pton(AF_INET6, tmp, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) s->job->port);
        s->addrs[0].len = sizeof(*s6);
    } else {
        return 0;
    }
    s->naddr = 1;
    return 1;
}

void
dlv_smtp_start(struct dlv_job *job)
{
    struct smtp_sess *s = xcalloc(1, sizeof(*s));
    const char *host = job->host ? job->host : "";
    size_t hlen = strlen(host);

    s->job = job;
    s->fd = -1;
    s->state = SMTP_S_RESOLVE;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']')
        s->host = smtp_safe(host + 1, hlen - 2); /* shown as ::1[::1] */
    else
        s->host = smtp_safe(host, hlen);
    snprintf(s->portstr, sizeof(s->portstr), "%d", job->port);
    snprintf(s->addr, sizeof(s->addr), "unknown");
    s->in = buf_new(4096, SMTP_IN_CAP);
    s->out = buf_new(4096, SMTP_OUT_CAP);
    s->reply = buf_new(512, SMTP_REPLY_TEXT);
    s->decided = xcalloc(job->nrcpt ? job->nrcpt : 1, 1);
    s->accepted = xcalloc(job->nrcpt ? job->nrcpt : 1, 1);
    s->t_start = ev_time();
    s->qdelay = dlv_delay(job->msg);
    ev_timer_init(&s->timer, smtp_timer_cb, 0., 0.);
    s->timer.data = s;
    ev_io_init(&s->rio, smtp_read_cb, -1, EV_READ);
    ev_io_init(&s->wio, smtp_write_cb, -1, EV_WRITE);

    for (size_t i = 0; i < job->nrcpt; i++)
        if (job->rcpt[i] >= job->msg->env.nrcpt)
            log_panic("smtp: %s: recipient index %zu out of range",
                      job->msg->env.id, job->rcpt[i]);
    if (job->nrcpt == 0) {
        smtp_finish(s);
        return;
    }
    s->unix_sock = job->lmtp && job->port == 0;
    if (s->unix_sock) { /* logged as Postfix logs it: myhostname[path] */
        free(s->host);
        s->host = xstrdup(cf_str(job->cf, "myhostname"));
        snprintf(s->addr, sizeof(s->addr), "%s", host);
    }
    if ((!s->unix_sock && (job->port <= 0 || job->port > 65535))
        || *host == '\0') {
        smtp_defer_all(s, "4.3.5", "bad next hop %s:%d", s->host, job->port);
        smtp_finish(s);
        return;
    }
    if (smtp_unpark(s)) {
        s->t_conn = ev_time();
        smtp_send_mail(s);
        return;
    }
    smtp_route(s);
}

/* Find the next hop's addresses and connect to the first. */
static void
smtp_route(struct smtp_sess *s)
{
    struct dlv_job *job = s->job;

    s->ai = s->naddr = 0;
    if (s->unix_sock) {
        struct sockaddr_un *un = (struct sockaddr_un *) &s->addrs[0].ss;
        const char *qdir = cf_str(job->cf, "queue_directory");
        int n;

        memset(&s->addrs[0], 0, sizeof(s->addrs[0]));
        un->sun_family = AF_UNIX;
        n = job->host[0] == '/'
                ? snprintf(un->sun_path, sizeof(un->sun_path), "%s", job->host)
                : snprintf(un->sun_path, sizeof(un->sun_path), "%s/%s", qdir,
                           job->host);
        if (n < 0 || (size_t) n >= sizeof(un->sun_path)) {
            smtp_defer_all(s, "4.3.5", "unix-domain name too long: %s",
                           s->addr);
            smtp_finish(s);
            return;
        }
        s->addrs[0].len = sizeof(*un);
        s->naddr = 1;
        smtp_connect_next(s);
        return;
    }
    if (smtp_literal(s, job->host)) {
        smtp_connect_next(s);
        return;
    }
    if (job->dns) { /* DNS: MX records first when the next hop is a domain */
        const char *h = job->host;
        size_t n = strlen(h);
        char name[DNS_NAME_MAX];

        if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
            h++;
            n -= 2;
        }
        snprintf(name, sizeof(name), "%.*s", (int) n, h);
        smtp_enter(s, SMTP_S_RESOLVE);
        dlv_resolve_start(job->dns, job->loop, n < sizeof(name) ? name : h,
                          job->port, job->mx ? job->resolve_mx : job->resolve,
                          job->self, smtp_resolved, s);
        return;
    }
    /* The wpool's async watcher does not keep the loop alive: hold a
     * reference while the lookup runs (released in smtp_resolve_done). */
    ev_ref(job->loop);
    smtp_enter(s, SMTP_S_RESOLVE);
    wpool_submit(job->pool, smtp_resolve_work, smtp_resolve_done, s);
}
