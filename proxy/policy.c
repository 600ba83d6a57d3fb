/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * policy.c - Postfix's policy delegation protocol, client side (see
 * policy.h). A connection is either busy with one request (connecting,
 * writing it, reading the reply; one timer for the attempt's deadline)
 * or idle in its server's list (watched for the server's close; the
 * timer for max_idle). A request is bound to a connection while it is
 * tried, else waits on its own timer for the retry (or, after its last
 * attempt, for the failure to be told from the loop).
 * Owns: connections, requests. Threads: the loop's.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"
#include "proxy/policy.h"

struct policy_conn {
    struct policy *p;
    int fd;
    ev_io io;
    ev_timer tm;
    double born;
    long nreq;
    int connecting;
    struct policy_req *req; /* NULL: idle */
    size_t sent;            /* bytes of req's request written */
    struct buf *in;
    struct policy_conn *next; /* the idle list */
};

struct policy_req {
    struct policy *p;
    char *msg; /* the attributes and the empty line */
    size_t len;
    policy_cb *cb;
    void *arg;
    long tries;
    struct policy_conn *c; /* while an attempt runs */
    ev_timer wait;         /* a retry, or the failure to tell */
    struct policy_req *next, *prev;
};

struct policy {
    struct ev_loop *loop;
    char *server;
    struct sockaddr_storage sa;
    socklen_t salen;
    struct policy_conf pc;
    struct policy_conn *idle;
    struct policy_req *reqs; /* every open request */
};

int
policy_parse_reply(const char *buf, size_t len, char *action, size_t actsz,
                   size_t *used)
{
    size_t o = 0;

    action[0] = '\0';
    while (o < len) {
        const char *nl = memchr(buf + o, '\n', len - o);
        size_t n;

        if (nl == NULL)
            break;
        n = (size_t) (nl - (buf + o));
        if (memchr(buf + o, '\0', n))
            return -1;
        if (n == 0) { /* the empty line ends the reply */
            *used = o + 1;
            return 1;
        }
        if (memchr(buf + o, '=', n) == NULL)
            return -1;
        if (n > 7 && memcmp(buf + o, "action=", 7) == 0 && action[0] == '\0') {
            size_t an = n - 7;

            if (an > 0 && buf[o + n - 1] == '\r')
                an--;
            if (an == 0 || an >= actsz)
                return -1;
            memcpy(action, buf + o + 7, an);
            action[an] = '\0';
        }
        o += n + 1;
    }
    return len >= POLICY_REPLY_MAX ? -1 : 0;
}

static int
policy_addr(struct policy *p, const char *server, const char *qdir,
            struct buf *err)
{
    if (strncmp(server, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *) &p->sa;
        const char *path = server + 5;
        int n;

        memset(un, 0, sizeof(*un));
        un->sun_family = AF_UNIX;
        if (*path == '/')
            n = snprintf(un->sun_path, sizeof(un->sun_path), "%s", path);
        else
            n = snprintf(un->sun_path, sizeof(un->sun_path), "%s/%s",
                         qdir ? qdir : ".", path);
        if (*path == '\0' || n < 0 || (size_t) n >= sizeof(un->sun_path)) {
            buf_printf(err, "%s: the socket path is empty or too long", server);
            return -1;
        }
        p->salen = (socklen_t) sizeof(*un);
        return 0;
    }
    if (strncmp(server, "inet:", 5) == 0) {
        char *hp = xstrdup(server + 5), *host = NULL, *port = NULL;
        struct addrinfo hints, *res = NULL;
        int rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        if (net_split_hostport(hp, &host, &port) < 0 || port == NULL
            || *host == '\0' || *port == '\0') {
            buf_printf(err, "%s: not inet:host:port", server);
            free(hp);
            return -1;
        }
        rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            buf_printf(err, "%s: %s", server, gai_strerror(rc));
            free(hp);
            return -1;
        }
        memcpy(&p->sa, res->ai_addr, res->ai_addrlen);
        p->salen = res->ai_addrlen;
        freeaddrinfo(res);
        free(hp);
        return 0;
    }
    buf_printf(err, "%s: not inet:host:port or unix:path", server);
    return -1;
}

struct policy *
policy_new(struct ev_loop *loop, const char *server, const char *qdir,
           const struct policy_conf *pc, struct buf *err)
{
    struct policy *p = xcalloc(1, sizeof(*p));

    p->loop = loop;
    p->server = xstrdup(server);
    p->pc = *pc;
    if (p->pc.try_limit < 1)
        p->pc.try_limit = 1;
    if (policy_addr(p, server, qdir, err) < 0) {
        policy_free(p);
        return NULL;
    }
    return p;
}

const char *
policy_server(const struct policy *p)
{
    return p->server;
}

static void
policy_conn_close(struct policy_conn *c)
{
    struct policy *p = c->p;

    ev_io_stop(p->loop, &c->io);
    ev_timer_stop(p->loop, &c->tm);
    if (c->req == NULL) { /* off the idle list */
        for (struct policy_conn **pp = &p->idle; *pp; pp = &(*pp)->next)
            if (*pp == c) {
                *pp = c->next;
                break;
            }
    } else {
        c->req->c = NULL;
    }
    close(c->fd);
    buf_free(c->in);
    free(c);
}

static void policy_try(struct policy_req *r);

static void
policy_req_unlink(struct policy_req *r)
{
    struct policy *p = r->p;

    if (r->prev)
        r->prev->next = r->next;
    else
        p->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    ev_timer_stop(p->loop, &r->wait);
    free(r->msg);
    free(r);
}

static void
policy_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct policy_req *r = w->data;

    (void) loop;
    (void) revents;
    if (r->tries < r->p->pc.try_limit) {
        policy_try(r);
        return;
    }
    {
        policy_cb *cb = r->cb;
        void *arg = r->arg;

        policy_req_unlink(r);
        cb(arg, NULL);
    }
}

/* This attempt failed: closed, then a retry or the failure, from the
 * request's timer. */
static void
policy_fail(struct policy_conn *c, const char *why)
{
    struct policy_req *r = c->req;
    struct policy *p = c->p;

    log_warning("problem talking to server %s: %s", p->server, why);
    policy_conn_close(c);
    if (r == NULL)
        return;
    ev_timer_set(&r->wait, r->tries < p->pc.try_limit ? p->pc.retry_delay : 0.0,
                 0.0);
    ev_timer_start(p->loop, &r->wait);
}

static void policy_io_cb(struct ev_loop *loop, ev_io *w, int revents);

static void
policy_idle_tm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    policy_conn_close(w->data); /* unused for max_idle */
}

static void
policy_req_tm_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct policy_conn *c = w->data;

    (void) loop;
    (void) revents;
    policy_fail(c, c->connecting ? "timeout while connecting"
                                 : "timeout while talking");
}

/* The reply came: the connection goes idle (or closes), then the
 * callback runs. */
static void
policy_done(struct policy_conn *c, const char *action)
{
    struct policy *p = c->p;
    struct policy_req *r = c->req;
    policy_cb *cb = r->cb;
    void *arg = r->arg;
    char *copy = xstrdup(action);

    c->req = NULL;
    r->c = NULL;
    c->nreq++;
    buf_reset(c->in);
    ev_timer_stop(p->loop, &c->tm);
    if ((p->pc.request_limit > 0 && c->nreq >= p->pc.request_limit)
        || ev_now(p->loop) - c->born >= p->pc.max_ttl) {
        policy_conn_close(c);
    } else {
        ev_io_stop(p->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_READ);
        ev_io_start(p->loop, &c->io);
        ev_timer_init(&c->tm, policy_idle_tm_cb, p->pc.max_idle, 0.0);
        c->tm.data = c;
        ev_timer_start(p->loop, &c->tm);
        c->next = p->idle;
        p->idle = c;
    }
    policy_req_unlink(r);
    cb(arg, copy);
    free(copy);
}

static void
policy_read(struct policy_conn *c)
{
    char tmp[4096], action[POLICY_ACTION_MAX];
    ssize_t n = read(c->fd, tmp, sizeof(tmp));
    size_t used;
    int rc;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (c->req == NULL) { /* an idle connection the server closed */
            policy_conn_close(c);
            return;
        }
        policy_fail(c, n == 0 ? "lost connection" : strerror(errno));
        return;
    }
    if (c->req == NULL) { /* nothing was asked */
        log_warning("problem talking to server %s: unexpected data",
                    c->p->server);
        policy_conn_close(c);
        return;
    }
    if (buf_len(c->in) + (size_t) n > POLICY_REPLY_MAX) {
        policy_fail(c, "reply too long");
        return;
    }
    buf_append(c->in, tmp, (size_t) n);
    rc = policy_parse_reply(buf_data(c->in), buf_len(c->in), action,
                            sizeof(action), &used);
    if (rc < 0)
        policy_fail(c, "malformed reply");
    else if (rc > 0 && used != buf_len(c->in))
        policy_fail(c, "data after the reply");
    else if (rc > 0)
        policy_done(c, action);
}

static void
policy_write(struct policy_conn *c)
{
    struct policy_req *r = c->req;
    struct policy *p = c->p;

    if (c->connecting) {
        int e = 0;
        socklen_t el = sizeof(e);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        if (e != 0) {
            policy_fail(c, strerror(e));
            return;
        }
        c->connecting = 0;
    }
    while (c->sent < r->len) {
        ssize_t n =
            send(c->fd, r->msg + c->sent, r->len - c->sent, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0) {
            policy_fail(c, strerror(errno));
            return;
        }
        c->sent += (size_t) n;
    }
    ev_io_stop(p->loop, &c->io);
    ev_io_set(&c->io, c->fd, EV_READ);
    ev_io_start(p->loop, &c->io);
}

static void
policy_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct policy_conn *c = w->data;

    (void) loop;
    if (revents & EV_WRITE)
        policy_write(c);
    else if (revents & EV_READ)
        policy_read(c);
}

/* One attempt: an idle connection that is still young enough, or a new
 * one. */
static void
policy_try(struct policy_req *r)
{
    struct policy *p = r->p;
    struct policy_conn *c;

    r->tries++;
    while ((c = p->idle) != NULL) {
        p->idle = c->next;
        if (ev_now(p->loop) - c->born < p->pc.max_ttl)
            break;
        c->req = r; /* not on the idle list any more */
        r->c = c;
        policy_conn_close(c);
    }
    if (c == NULL) {
        int fd = net_connect((struct sockaddr *) &p->sa, p->salen);

        if (fd < 0) {
            log_warning("problem talking to server %s: %s", p->server,
                        strerror(errno));
            ev_timer_set(&r->wait,
                         r->tries < p->pc.try_limit ? p->pc.retry_delay : 0.0,
                         0.0);
            ev_timer_start(p->loop, &r->wait);
            return;
        }
        c = xcalloc(1, sizeof(*c));
        c->p = p;
        c->fd = fd;
        c->born = ev_now(p->loop);
        c->connecting = 1;
        c->in = buf_new(256, POLICY_REPLY_MAX);
        ev_io_init(&c->io, policy_io_cb, fd, EV_WRITE);
        c->io.data = c;
    } else {
        ev_io_stop(p->loop, &c->io);
        ev_io_set(&c->io, c->fd, EV_WRITE);
    }
    ev_timer_stop(p->loop, &c->tm);
    ev_timer_init(&c->tm, policy_req_tm_cb, p->pc.timeout, 0.0);
    c->tm.data = c;
    c->req = r;
    c->sent = 0;
    c->next = NULL;
    r->c = c;
    ev_io_start(p->loop, &c->io);
    ev_timer_start(p->loop, &c->tm);
}

struct policy_req *
policy_ask(struct policy *p, const char *attrs, size_t len, policy_cb *cb,
           void *arg)
{
    struct policy_req *r = xcalloc(1, sizeof(*r));

    r->p = p;
    r->msg = xmalloc(len + 1);
    memcpy(r->msg, attrs, len);
    r->msg[len] = '\n';
    r->len = len + 1;
    r->cb = cb;
    r->arg = arg;
    ev_timer_init(&r->wait, policy_wait_cb, 0.0, 0.0);
    r->wait.data = r;
    r->next = p->reqs;
    if (p->reqs)
        p->reqs->prev = r;
    p->reqs = r;
    policy_try(r);
    return r;
}

void
policy_cancel(struct policy_req *r)
{
    if (r->c) /* mid-request: that connection's state is unknown */
        policy_conn_close(r->c);
    policy_req_unlink(r);
}

void
policy_free(struct policy *p)
{
    if (p == NULL)
        return;
    while (p->reqs)
        policy_cancel(p->reqs);
    while (p->idle)
        policy_conn_close(p->idle);
    free(p->server);
    free(p);
}
