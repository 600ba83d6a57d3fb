/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sasl.c - a client of Dovecot's authentication protocol (see sasl.h).
 *
 * Connection states: DOWN (no socket; failed_at says when the last
 * attempt failed), CONNECTING (a TCP connect under way), HANDSHAKE
 * (VERSION and CPID sent, reading the server's handshake up to DONE),
 * READY. Requests started before READY keep their AUTH line and send it
 * when the handshake is done. When the connection is lost, requests that
 * wait for the server get SASL_TEMP; those that wait for their client (a
 * challenge was answered) are marked lost and fail at sasl_next.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"
#include "proxy/sasl.h"

#define SASL_OUT_MAX   (4 * 1024 * 1024) /* queued request bytes */
#define SASL_RETRY_GAP 1.0               /* seconds between attempts */

enum sasl_cstate {
    SASL_DOWN,
    SASL_CONNECTING,
    SASL_HANDSHAKE,
    SASL_READY
};

struct sasl_mech {
    char *name;
    unsigned flags;
};

struct sasl_req {
    struct sasl_srv *sv;
    struct sasl_req *next, *prev;
    unsigned id;
    char *line; /* the AUTH line, until the connection is ready */
    sasl_cb cb;
    void *arg;
    ev_timer timer;
    double timeout;
    int cont;  /* challenge handed out: waiting for sasl_next */
    int lost;  /* the connection went while waiting for the client */
    int dying; /* to be answered by sasl_fail_all */
};

struct sasl_srv {
    struct ev_loop *loop;
    char *path; /* as configured */
    struct sockaddr_storage sa;
    socklen_t salen;
    int fd;
    enum sasl_cstate st;
    ev_io rio, wio;
    ev_timer hs_timer; /* connect + handshake deadline */
    ev_tstamp failed_at;
    struct buf *in, *out;
    struct sasl_mech *mechs; /* the known list */
    size_t nmech;
    int known;
    struct sasl_mech *hs_mechs; /* being learned in a handshake */
    size_t hs_nmech;
    int hs_version;
    unsigned next_id;
    struct sasl_req *reqs;
    struct sasl_wait *waiters;
};

static const struct {
    const char *word;
    unsigned flag;
} sasl_mech_words[] = {
    {"anonymous", SASL_MF_ANONYMOUS},
    {"plaintext", SASL_MF_PLAINTEXT},
    {"dictionary", SASL_MF_DICTIONARY},
    {"active", SASL_MF_ACTIVE},
    {"forward-secrecy", SASL_MF_FWD_SECRET},
    {"mutual-auth", SASL_MF_MUTUAL},
    {"private", SASL_MF_PRIVATE},
};

static void sasl_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void sasl_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void sasl_hs_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void
sasl_mechs_free(struct sasl_mech *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].name);
    free(m);
}

void
sasl_unescape(char *s)
{
    char *d = s;

    for (; *s; s++) {
        char c = *s;

        if (c == '\001' && s[1] != '\0') {
            s++;
            switch (*s) {
            case '0':
                c = '?';
                break; /* NUL: never in a C string */
            case '1':
                c = '\001';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'n':
            case 'l':
                c = '\n';
                break;
            default:
                c = *s;
                break;
            }
        }
        *d++ = (c < 0x20 || c == 0x7f) ? '?' : c;
    }
    *d = '\0';
}

int
sasl_b64_ok(const char *s)
{
    size_t n = 0, pad = 0;

    for (; *s; s++, n++) {
        if (*s == '=') {
            pad++;
            continue;
        }
        if (pad > 0)
            return 0; /* data after padding */
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')
              || (*s >= '0' && *s <= '9') || *s == '+' || *s == '/'))
            return 0;
    }
    return pad <= 2 && n % 4 == 0;
}

int
sasl_policy_parse(char *const *words, struct sasl_policy *pol, struct buf *err)
{
    int rc = 0;

    pol->deny = SASL_MF_PRIVATE;
    pol->need = 0;
    for (; words && *words; words++) {
        const char *w = *words;

        if (strcasecmp(w, "noanonymous") == 0)
            pol->deny |= SASL_MF_ANONYMOUS;
        else if (strcasecmp(w, "noplaintext") == 0)
            pol->deny |= SASL_MF_PLAINTEXT;
        else if (strcasecmp(w, "nodictionary") == 0)
            pol->deny |= SASL_MF_DICTIONARY;
        else if (strcasecmp(w, "noactive") == 0)
            pol->deny |= SASL_MF_ACTIVE;
        else if (strcasecmp(w, "mutual_auth") == 0)
            pol->need |= SASL_MF_MUTUAL;
        else if (strcasecmp(w, "forward_secrecy") == 0)
            pol->need |= SASL_MF_FWD_SECRET;
        else if (rc == 0) {
            buf_printf(err, "unknown security option: %s", w);
            rc = -1;
        }
    }
    return rc;
}

static int
sasl_allowed(const struct sasl_mech *m, const struct sasl_policy *pol)
{
    return (m->flags & pol->deny) == 0 && (m->flags & pol->need) == pol->need;
}

int
sasl_mechs(const struct sasl_srv *sv, const struct sasl_policy *pol,
           struct buf *out)
{
    int any = 0;

    if (!sv->known)
        return -1;
    for (size_t i = 0; i < sv->nmech; i++) {
        if (!sasl_allowed(&sv->mechs[i], pol))
            continue;
        buf_printf(out, "%s%s", any ? " " : "", sv->mechs[i].name);
        any = 1;
    }
    return 0;
}

int
sasl_mech_offered(const struct sasl_srv *sv, const struct sasl_policy *pol,
                  const char *mech)
{
    if (!sv->known)
        return -1;
    for (size_t i = 0; i < sv->nmech; i++)
        if (strcasecmp(sv->mechs[i].name, mech) == 0)
            return sasl_allowed(&sv->mechs[i], pol);
    return 0;
}

const char *
sasl_srv_path(const struct sasl_srv *sv)
{
    return sv->path;
}

/*
 * Requests
 */

static void
sasl_req_unlink(struct sasl_req *rq)
{
    struct sasl_srv *sv = rq->sv;

    if (rq->prev)
        rq->prev->next = rq->next;
    else
        sv->reqs = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
    rq->next = rq->prev = NULL;
}

static void
sasl_req_free(struct sasl_req *rq)
{
    ev_timer_stop(rq->sv->loop, &rq->timer);
    sasl_req_unlink(rq);
    free(rq->line);
    free(rq);
}

/* Answer one request and free it. */
static void
sasl_req_answer(struct sasl_req *rq, enum sasl_status st, const char *text)
{
    sasl_cb cb = rq->cb;
    void *arg = rq->arg;

    if (st == SASL_CONT) {
        ev_timer_stop(rq->sv->loop, &rq->timer);
        rq->cont = 1;
        cb(arg, st, text);
        return;
    }
    sasl_req_free(rq);
    cb(arg, st, text);
}

static struct sasl_req *
sasl_req_find(struct sasl_srv *sv, unsigned id)
{
    for (struct sasl_req *rq = sv->reqs; rq; rq = rq->next)
        if (rq->id == id && !rq->cont && rq->line == NULL)
            return rq;
    return NULL;
}

static void
sasl_req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sasl_req *rq = w->data;

    (void) loop;
    (void) revents;
    log_warning("SASL: %s: no answer to request %u in %.0f s", rq->sv->path,
                rq->id, rq->timeout);
    sasl_req_answer(rq, SASL_TEMP, "Authentication server timed out");
}

static void
sasl_req_arm(struct sasl_req *rq)
{
    ev_timer_set(&rq->timer, rq->timeout, 0.);
    ev_timer_start(rq->sv->loop, &rq->timer);
}

/*
 * The connection
 */

static void
sasl_notify_waiters(struct sasl_srv *sv)
{
    struct sasl_wait *w;

    while ((w = sv->waiters) != NULL) {
        sv->waiters = w->next;
        if (sv->waiters)
            sv->waiters->prev = NULL;
        w->next = w->prev = NULL;
        w->linked = 0;
        w->cb(w->arg);
    }
}

static void
sasl_close(struct sasl_srv *sv)
{
    ev_io_stop(sv->loop, &sv->rio);
    ev_io_stop(sv->loop, &sv->wio);
    ev_timer_stop(sv->loop, &sv->hs_timer);
    if (sv->fd >= 0)
        close(sv->fd);
    sv->fd = -1;
    sv->st = SASL_DOWN;
    buf_reset(sv->in);
    buf_reset(sv->out);
    sasl_mechs_free(sv->hs_mechs, sv->hs_nmech);
    sv->hs_mechs = NULL;
    sv->hs_nmech = 0;
    sv->hs_version = 0;
}

/* The connection is gone (why: for the SMTP reply). Runs on the loop only:
 * it answers requests and waiters. */
static void
sasl_fail_all(struct sasl_srv *sv, const char *why)
{
    struct sasl_req *rq;

    /* a connection that worked may be made again at once (Dovecot's auth
     * process restarted); an attempt that failed waits SASL_RETRY_GAP */
    if (sv->st != SASL_READY)
        sv->failed_at = ev_now(sv->loop);
    sasl_close(sv);
    for (rq = sv->reqs; rq; rq = rq->next) {
        if (rq->cont)
            rq->lost = 1;
        else
            rq->dying = 1;
    }
    /* a callback may start or cancel requests: look again each time */
    for (;;) {
        for (rq = sv->reqs; rq && !rq->dying; rq = rq->next)
            ;
        if (rq == NULL)
            break;
        sasl_req_answer(rq, SASL_TEMP, why);
    }
    sasl_notify_waiters(sv);
}

static void
sasl_protocol_error(struct sasl_srv *sv, const char *what)
{
    log_warning("SASL: %s: protocol error: %s", sv->path, what);
    sasl_fail_all(sv, sv->st == SASL_READY
                          ? "Connection lost to authentication server"
                          : "Can't connect to authentication server");
}

static void
sasl_update_write(struct sasl_srv *sv)
{
    if (buf_len(sv->out) > 0 && sv->st != SASL_CONNECTING && sv->fd >= 0)
        ev_io_start(sv->loop, &sv->wio);
    else
        ev_io_stop(sv->loop, &sv->wio);
}

/* Write what is queued: 0, or -1 when the connection failed (the caller
 * decides whether callbacks may run now). */
static int
sasl_flush(struct sasl_srv *sv, int *err)
{
    while (buf_len(sv->out) > 0) {
        ssize_t n =
            send(sv->fd, buf_data(sv->out), buf_len(sv->out), MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            *err = n < 0 ? errno : EPIPE;
            return -1;
        }
        buf_consume(sv->out, (size_t) n);
    }
    sasl_update_write(sv);
    return 0;
}

static void
sasl_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sasl_srv *sv = w->data;
    int err = 0;

    (void) loop;
    (void) revents;
    if (sasl_flush(sv, &err) < 0) {
        log_warning("SASL: %s: write failed: %s", sv->path, strerror(err));
        sasl_fail_all(sv, "Connection lost to authentication server");
    }
}

/* Dovecot's tab-escaping of a value we send. */
static void
sasl_put_escaped(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\001':
            buf_puts(b, "\0011");
            break;
        case '\t':
            buf_puts(b, "\001t");
            break;
        case '\r':
            buf_puts(b, "\001r");
            break;
        case '\n':
            buf_puts(b, "\001n");
            break;
        default:
            buf_putc(b, *s);
            break;
        }
    }
}

/* The handshake is done: the new list is the list, queued requests go. */
static void
sasl_ready(struct sasl_srv *sv)
{
    int err = 0;

    ev_timer_stop(sv->loop, &sv->hs_timer);
    sasl_mechs_free(sv->mechs, sv->nmech);
    sv->mechs = sv->hs_mechs;
    sv->nmech = sv->hs_nmech;
    sv->hs_mechs = NULL;
    sv->hs_nmech = 0;
    sv->known = 1;
    sv->st = SASL_READY;
    log_debug("SASL: %s: connected, %zu mechanism(s)", sv->path, sv->nmech);
    for (struct sasl_req *rq = sv->reqs; rq; rq = rq->next) {
        if (rq->line == NULL)
            continue;
        if (buf_puts(sv->out, rq->line) < 0)
            break; /* over the cap: its timer answers it */
        free(rq->line);
        rq->line = NULL;
    }
    if (sasl_flush(sv, &err) < 0) {
        log_warning("SASL: %s: write failed: %s", sv->path, strerror(err));
        sasl_fail_all(sv, "Connection lost to authentication server");
        return;
    }
    sasl_notify_waiters(sv);
}

/* Split a line at TABs into at most n fields; returns how many. */
static size_t
sasl_split(char *line, char **f, size_t n)
{
    size_t k = 0;

    while (k < n) {
        f[k++] = line;
        line = strchr(line, '\t');
        if (line == NULL)
            break;
        *line++ = '\0';
    }
    return k;
}

/* One handshake line; -1 after a protocol error (the connection is
 * gone). */
static int
sasl_hs_line(struct sasl_srv *sv, char *line)
{
    char *f[16];
    size_t n = sasl_split(line, f, 16);

    if (!sv->hs_version) {
        if (strcmp(f[0], "VERSION") != 0) {
            sasl_protocol_error(sv, "the handshake does not start with "
                                    "VERSION");
            return -1;
        }
        if (n < 2 || strcmp(f[1], "1") != 0) {
            char why[96];

            snprintf(why, sizeof(why), "unsupported protocol version %.16s",
                     n < 2 ? "(none)" : f[1]);
            sasl_unescape(why);
            sasl_protocol_error(sv, why);
            return -1;
        }
        sv->hs_version = 1;
        return 0;
    }
    if (strcmp(f[0], "MECH") == 0 && n >= 2 && *f[1] != '\0') {
        struct sasl_mech m = {NULL, 0};

        if (sv->hs_nmech >= 64)
            return 0; /* enough: the EHLO line stays bounded */
        for (const char *c = f[1]; *c; c++)
            if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')
                  || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_')
                || c - f[1] >= 20)
                return 0; /* not an RFC 4422 name: not offered */
        for (size_t i = 2; i < n; i++)
            for (size_t j = 0;
                 j < sizeof(sasl_mech_words) / sizeof(sasl_mech_words[0]); j++)
                if (strcmp(f[i], sasl_mech_words[j].word) == 0)
                    m.flags |= sasl_mech_words[j].flag;
        for (size_t i = 0; i < sv->hs_nmech; i++)
            if (strcasecmp(sv->hs_mechs[i].name, f[1]) == 0)
                return 0; /* listed twice: the first one stands */
        m.name = xstrdup(f[1]);
        for (char *c = m.name; *c; c++)
            if (*c >= 'a' && *c <= 'z')
                *c = (char) (*c - 'a' + 'A');
        sv->hs_mechs =
            xrealloc(sv->hs_mechs, (sv->hs_nmech + 1) * sizeof(*sv->hs_mechs));
        sv->hs_mechs[sv->hs_nmech++] = m;
        return 0;
    }
    if (strcmp(f[0], "DONE") == 0) {
        sasl_ready(sv);
        return sv->st == SASL_READY ? 0 : -1;
    }
    return 0; /* SPID, CUID, COOKIE and what later versions add */
}

/* One answer line after the handshake. */
static void
sasl_answer_line(struct sasl_srv *sv, char *line)
{
    char *f[64], *end, *user = NULL, *reason = NULL;
    size_t n = sasl_split(line, f, 64), i;
    unsigned long id;
    struct sasl_req *rq;
    int temp = 0;

    if (n < 2 || *f[1] == '\0' || strlen(f[1]) > 10
        || strspn(f[1], "0123456789") != strlen(f[1]))
        return; /* ids are ours: decimal digits only */
    errno = 0;
    id = strtoul(f[1], &end, 10);
    if (*end != '\0' || errno != 0 || id > 0xffffffffu)
        return;
    if (strcmp(f[0], "OK") != 0 && strcmp(f[0], "CONT") != 0
        && strcmp(f[0], "FAIL") != 0)
        return; /* a command this client does not know: ignored */
    rq = sasl_req_find(sv, (unsigned) id);
    if (rq == NULL)
        return; /* cancelled, or timed out: the late answer is dropped */
    if (strcmp(f[0], "CONT") == 0) {
        if (n < 3 || !sasl_b64_ok(f[2])) {
            log_warning("SASL: %s: request %lu: challenge is not base64",
                        sv->path, id);
            sasl_req_answer(rq, SASL_TEMP, "Authentication backend error");
            return;
        }
        sasl_req_answer(rq, SASL_CONT, f[2]);
        return;
    }
    for (i = 2; i < n; i++) {
        if (strncmp(f[i], "user=", 5) == 0)
            user = f[i] + 5;
        else if (strncmp(f[i], "reason=", 7) == 0)
            reason = f[i] + 7;
        else if (strcmp(f[i], "temp") == 0
                 || strcmp(f[i], "code=temp_fail") == 0) /* 2.3 says this */
            temp = 1;
    }
    if (strcmp(f[0], "OK") == 0) {
        if (user == NULL || *user == '\0') {
            log_warning("SASL: %s: request %lu: OK without a user name",
                        sv->path, id);
            sasl_req_answer(rq, SASL_TEMP, "Authentication backend error");
            return;
        }
        sasl_unescape(user);
        sasl_req_answer(rq, SASL_OK, user);
        return;
    }
    if (reason != NULL)
        sasl_unescape(reason);
    if (reason == NULL || *reason == '\0')
        reason = temp ? "Temporary authentication server failure"
                      : "authentication failure";
    sasl_req_answer(rq, temp ? SASL_TEMP : SASL_FAIL, reason);
}

static void
sasl_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sasl_srv *sv = w->data;
    char *room, *lf;
    ssize_t n;

    (void) loop;
    (void) revents;
    room = buf_reserve(sv->in, 4096);
    if (room == NULL) {
        sasl_protocol_error(sv, "line too long");
        return;
    }
    n = read(sv->fd, room, 4096);
    if (n < 0 && (errno == EAGAIN || errno == EINTR || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        if (n < 0)
            log_warning("SASL: %s: read failed: %s", sv->path, strerror(errno));
        else
            log_warning("SASL: %s: the authentication server closed the "
                        "connection",
                        sv->path);
        sasl_fail_all(sv, sv->st == SASL_READY
                              ? "Connection lost to authentication server"
                              : "Can't connect to authentication server");
        return;
    }
    buf_commit(sv->in, (size_t) n);
    /* each line may answer a session, which may start another request:
     * the buffer is only touched through sv, which stays */
    while (sv->fd >= 0
           && (lf = memchr(buf_data(sv->in), '\n', buf_len(sv->in))) != NULL) {
        size_t len = (size_t) (lf - buf_data(sv->in));
        char *line;

        if (len + 1 > SASL_LINE_MAX) { /* however the reads fell */
            sasl_protocol_error(sv, "line too long");
            return;
        }
        line = xmalloc(len + 1);

        memcpy(line, buf_data(sv->in), len);
        line[len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[len - 1] = '\0';
        buf_consume(sv->in, len + 1);
        if (sv->st == SASL_HANDSHAKE) {
            int rc = sasl_hs_line(sv, line);

            free(line);
            if (rc < 0)
                return;
            continue;
        }
        sasl_answer_line(sv, line);
        free(line);
    }
    if (sv->fd >= 0 && buf_len(sv->in) >= SASL_LINE_MAX)
        sasl_protocol_error(sv, "line too long");
}

static void
sasl_hs_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sasl_srv *sv = w->data;

    (void) loop;
    (void) revents;
    log_warning("SASL: Connect to %s failed: no handshake in %.0f s", sv->path,
                SASL_CONNECT_TIMEOUT);
    sasl_fail_all(sv, "Can't connect to authentication server");
}

/* Connected: our half of the handshake. */
static int
sasl_hello(struct sasl_srv *sv, int *err)
{
    sv->st = SASL_HANDSHAKE;
    buf_printf(sv->out, "VERSION\t1\t2\nCPID\t%ld\n", (long) getpid());
    ev_io_start(sv->loop, &sv->rio);
    return sasl_flush(sv, err);
}

static void
sasl_connected_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sasl_srv *sv = w->data;
    int err = 0;
    socklen_t len = sizeof(err);

    (void) loop;
    (void) revents;
    ev_io_stop(sv->loop, &sv->wio);
    ev_set_cb(&sv->wio, sasl_write_cb);
    if (getsockopt(sv->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0 && sasl_hello(sv, &err) == 0)
        return;
    log_warning("SASL: Connect to %s failed: %s", sv->path, strerror(err));
    sasl_fail_all(sv, "Can't connect to authentication server");
}

/* Start connecting: 0 under way, -1 failed now (logged; no callbacks). */
static int
sasl_connect(struct sasl_srv *sv)
{
    int fd, err = 0;

    fd =
        socket(sv->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
        goto fail;
    }
    sv->fd = fd;
    ev_io_set(&sv->rio, fd, EV_READ);
    ev_io_set(&sv->wio, fd, EV_WRITE);
    ev_timer_set(&sv->hs_timer, SASL_CONNECT_TIMEOUT, 0.);
    ev_timer_start(sv->loop, &sv->hs_timer);
    if (connect(fd, (struct sockaddr *) &sv->sa, sv->salen) == 0) {
        if (sasl_hello(sv, &err) == 0)
            return 0;
        goto fail;
    }
    if (errno == EINPROGRESS) {
        sv->st = SASL_CONNECTING;
        ev_set_cb(&sv->wio, sasl_connected_cb);
        ev_io_start(sv->loop, &sv->wio);
        return 0;
    }
    err = errno;
fail:
    log_warning("SASL: Connect to %s failed: %s", sv->path, strerror(err));
    sasl_close(sv);
    sv->failed_at = ev_now(sv->loop);
    return -1;
}

/* Connected or connecting now: 0; -1 when it failed (now, or less than a
 * second ago). */
static int
sasl_need(struct sasl_srv *sv)
{
    if (sv->st != SASL_DOWN)
        return 0;
    if (sv->failed_at > 0 && ev_now(sv->loop) - sv->failed_at < SASL_RETRY_GAP)
        return -1;
    return sasl_connect(sv);
}

int
sasl_wait(struct sasl_srv *sv, struct sasl_wait *w, void (*cb)(void *arg),
          void *arg)
{
    if (sv->known || sasl_need(sv) < 0)
        return 0;
    w->cb = cb;
    w->arg = arg;
    w->prev = NULL;
    w->next = sv->waiters;
    if (sv->waiters)
        sv->waiters->prev = w;
    sv->waiters = w;
    w->linked = 1;
    return 1;
}

void
sasl_wait_cancel(struct sasl_srv *sv, struct sasl_wait *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        sv->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->linked = 0;
}

/* Send what a request just queued: 0, or -1 with the request freed and
 * the reason in why; the other requests learn of the failure on the loop
 * (read_cb sees the shut-down socket), never inside this call. */
static int
sasl_req_flush(struct sasl_req *rq, struct buf *why)
{
    struct sasl_srv *sv = rq->sv;
    int err = 0;

    if (sasl_flush(sv, &err) == 0)
        return 0;
    log_warning("SASL: %s: write failed: %s", sv->path, strerror(err));
    sasl_req_free(rq);
    shutdown(sv->fd, SHUT_RDWR);
    ev_io_start(sv->loop, &sv->rio);
    buf_sets(why, "Connection lost to authentication server");
    return -1;
}

struct sasl_req *
sasl_start(struct sasl_srv *sv, const struct sasl_client *cl, const char *mech,
           const char *resp, double timeout, sasl_cb cb, void *arg,
           struct buf *why)
{
    struct sasl_req *rq;
    struct buf *b;

    if (sasl_need(sv) < 0) {
        buf_sets(why, "Can't connect to authentication server");
        return NULL;
    }
    rq = xcalloc(1, sizeof(*rq));
    rq->sv = sv;
    if (++sv->next_id == 0)
        sv->next_id = 1;
    rq->id = sv->next_id;
    rq->cb = cb;
    rq->arg = arg;
    rq->timeout = timeout > 0 ? timeout : 300;
    ev_timer_init(&rq->timer, sasl_req_timer_cb, 0., 0.);
    rq->timer.data = rq;
    b = buf_new(256, BUF_NOCAP);
    buf_printf(b, "AUTH\t%u\t%s\tservice=", rq->id, mech);
    sasl_put_escaped(b, cl->service);
    buf_printf(b, "\tnologin\tlip=%s\trip=%s\tlport=%d\trport=%d%s", cl->laddr,
               cl->raddr, cl->lport, cl->rport, cl->secured ? "\tsecured" : "");
    if (resp != NULL)
        buf_printf(b, "\tresp=%s", resp);
    buf_putc(b, '\n');
    rq->next = sv->reqs;
    if (sv->reqs)
        sv->reqs->prev = rq;
    sv->reqs = rq;
    sasl_req_arm(rq);
    if (sv->st != SASL_READY) {
        rq->line = xstrdup(buf_data(b)); /* sent by sasl_ready */
        buf_free(b);
        return rq;
    }
    if (buf_append(sv->out, buf_data(b), buf_len(b)) < 0) {
        buf_free(b);
        sasl_req_free(rq);
        buf_sets(why, "Authentication server connection overloaded");
        return NULL;
    }
    buf_free(b);
    return sasl_req_flush(rq, why) < 0 ? NULL : rq;
}

int
sasl_next(struct sasl_req *rq, const char *resp, struct buf *why)
{
    struct sasl_srv *sv = rq->sv;

    if (rq->lost || sv->st != SASL_READY) {
        sasl_req_free(rq);
        buf_sets(why, "Connection lost to authentication server");
        return -1;
    }
    if (buf_printf(sv->out, "CONT\t%u\t%s\n", rq->id, resp) < 0) {
        sasl_req_free(rq);
        buf_sets(why, "Authentication server connection overloaded");
        return -1;
    }
    rq->cont = 0;
    sasl_req_arm(rq);
    return sasl_req_flush(rq, why);
}

void
sasl_cancel(struct sasl_req *rq)
{
    if (rq != NULL)
        sasl_req_free(rq);
}

/* "inet:host:port", "unix:/path", "/path", or relative to qdir. */
static int
sasl_addr(struct sasl_srv *sv, const char *path, const char *qdir,
          struct buf *err)
{
    if (strncmp(path, "inet:", 5) == 0) {
        char *hp = xstrdup(path + 5), *host, *port;
        struct addrinfo hints, *res = NULL;
        int rc;

        if (net_split_hostport(hp, &host, &port) < 0 || *host == '\0'
            || port == NULL || *port == '\0') {
            buf_printf(err, "%s: not inet:host:port", path);
            free(hp);
            return -1;
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            buf_printf(err, "%s: %s", path, gai_strerror(rc));
            free(hp);
            return -1;
        }
        memcpy(&sv->sa, res->ai_addr, res->ai_addrlen);
        sv->salen = res->ai_addrlen;
        freeaddrinfo(res);
        free(hp);
        return 0;
    } else {
        struct sockaddr_un *un = (struct sockaddr_un *) &sv->sa;
        const char *p = strncmp(path, "unix:", 5) == 0 ? path + 5 : path;
        int n;

        if (*p == '\0') {
            buf_printf(err, "%s: empty path", path);
            return -1;
        }
        un->sun_family = AF_UNIX;
        n = *p == '/' ? snprintf(un->sun_path, sizeof(un->sun_path), "%s", p)
                      : snprintf(un->sun_path, sizeof(un->sun_path), "%s/%s",
                                 qdir, p);
        if (n < 0 || (size_t) n >= sizeof(un->sun_path)) {
            buf_printf(err, "%s: socket path too long", path);
            return -1;
        }
        sv->salen = sizeof(*un);
        return 0;
    }
}

struct sasl_srv *
sasl_srv_new(struct ev_loop *loop, const char *path, const char *qdir,
             struct buf *err)
{
    struct sasl_srv *sv = xcalloc(1, sizeof(*sv));

    sv->loop = loop;
    sv->path = xstrdup(path);
    sv->fd = -1;
    if (sasl_addr(sv, path, qdir, err) < 0) {
        free(sv->path);
        free(sv);
        return NULL;
    }
    sv->in = buf_new(4096, SASL_LINE_MAX + 4096);
    sv->out = buf_new(4096, SASL_OUT_MAX);
    ev_init(&sv->rio, sasl_read_cb);
    ev_init(&sv->wio, sasl_write_cb);
    sv->rio.data = sv->wio.data = sv;
    ev_init(&sv->hs_timer, sasl_hs_timer_cb);
    sv->hs_timer.data = sv;
    sasl_connect(sv);
    return sv;
}

void
sasl_srv_free(struct sasl_srv *sv)
{
    if (sv == NULL)
        return;
    while (sv->reqs)
        sasl_req_free(sv->reqs);
    while (sv->waiters)
        sasl_wait_cancel(sv, sv->waiters);
    sasl_close(sv);
    sasl_mechs_free(sv->mechs, sv->nmech);
    buf_free(sv->in);
    buf_free(sv->out);
    free(sv->path);
    free(sv);
}

int
sasl_probe(const char *path, const char *qdir, struct buf *err)
{
    struct sasl_srv sv;
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    int fd, e = 0;

    memset(&sv, 0, sizeof(sv));
    if (sasl_addr(&sv, path, qdir, err) < 0)
        return -1;
    fd = socket(sv.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *) &sv.sa, sv.salen) < 0) {
        e = errno;
        if (e == EINPROGRESS) {
            pfd.fd = fd;
            pfd.events = POLLOUT;
            if (poll(&pfd, 1, 2000) != 1)
                e = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
                e = errno;
        }
    }
    close(fd);
    if (e != 0) {
        buf_printf(err, "cannot connect to %s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}
