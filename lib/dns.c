/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns.c - asynchronous DNS lookups through libunbound (see dns.h).
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unbound.h>

#include "lib/dns.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"

#define DNS_SERVERS_MAX 8 /* forwarders in sluice_dns_servers */

struct dns_query {
    struct dns *d;
    struct dns_query *prev, *next; /* open queries, for dns_free */
    int id;                        /* libunbound's async id */
    dns_cb *cb;
    void *arg;
    int type;
    ev_timer deadline;
};

struct dns {
    struct ev_loop *loop;
    struct ub_ctx *ub;
    ev_io io; /* ub_fd: answers are ready */
    double timeout;
    struct dns_query *open;
    size_t nopen;
};

static void
dns_unlink(struct dns_query *q)
{
    struct dns *d = q->d;

    if (q->prev)
        q->prev->next = q->next;
    else
        d->open = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (--d->nopen == 0)
        ev_io_stop(d->loop, &d->io);
    ev_timer_stop(d->loop, &q->deadline);
}

static void
dns_deliver(struct dns_query *q, const struct dns_answer *a)
{
    dns_cb *cb = q->cb;
    void *arg = q->arg;

    dns_unlink(q);
    free(q);
    cb(arg, a);
}

/* libunbound's callback, from ub_process on the loop thread. */
static void
dns_done(void *mydata, int err, struct ub_result *r)
{
    struct dns_query *q = mydata;
    struct dns_answer a = {0};

    if (err != 0 || r == NULL) {
        a.status = DNS_TEMP;
        a.why = "Host not found, try again";
    } else if (r->havedata) {
        size_t n = 0;

        while (r->data[n])
            n++;
        a.status = DNS_OK;
        a.why = "OK";
        a.n = n;
        a.rdata = (const unsigned char *const *) r->data;
        a.len = r->len;
    } else if (r->rcode == 3 /* NXDOMAIN */ || r->nxdomain) {
        a.status = DNS_NOTFOUND;
        a.why = "Host not found";
    } else if (r->rcode == 0) {
        a.status = DNS_NODATA;
        a.why = "Host found but no data record of requested type";
    } else {
        a.status = DNS_TEMP; /* SERVFAIL, REFUSED, ...: as the stub
                                resolver's TRY_AGAIN */
        a.why = "Host not found, try again";
    }
    if (err != 0)
        log_debug("dns: %s type=%s: %s", r && r->qname ? r->qname : "?",
                  dns_strtype(q->type), ub_strerror(err));
    dns_deliver(q, &a);
    if (r)
        ub_resolve_free(r);
}

static void
dns_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct dns *d = w->data;

    (void) loop;
    (void) revents;
    if (ub_process(d->ub) != 0)
        log_warning("dns: cannot read the resolver's answers");
}

static void
dns_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dns_query *q = w->data;
    struct dns_answer a = {0};

    (void) loop;
    (void) revents;
    ub_cancel(q->d->ub, q->id);
    a.status = DNS_TEMP;
    a.why = "Host not found, try again";
    dns_deliver(q, &a);
}

/* One forwarder: "addr", "addr:port", "[addr]", "[addr]:port" into
 * libunbound's "addr@port". 0, or -1 and the reason in err. */
static int
dns_forwarder(const char *s, char *out, size_t n, struct buf *err)
{
    char *c = xstrdup(s), *host = NULL, *port = NULL;
    char probe[16];
    long p = 53;
    int rc = -1;

    if (net_split_hostport(c, &host, &port) < 0 || *host == '\0') {
        buf_printf(err, "bad DNS server \"%s\"", s);
        goto fail;
    }
    if (inet_pton(AF_INET, host, probe) != 1
        && inet_pton(AF_INET6, host, probe) != 1) {
        buf_printf(err, "bad DNS server \"%s\": not a numeric address", s);
        goto fail;
    }
    if (port) {
        char *end;

        p = strtol(port, &end, 10);
        if (end == port || *end || p < 1 || p > 65535) {
            buf_printf(err, "bad DNS server \"%s\": bad port", s);
            goto fail;
        }
    }
    snprintf(out, n, "%s@%ld", host, p);
    rc = 0;
fail:
    free(c);
    return rc;
}

/* Split the servers list (commas and white space) and check or apply
 * each entry. */
static int
dns_servers(struct ub_ctx *ub, char *const *servers, struct buf *err)
{
    char fwd[NET_ADDR_MAX + 8];
    int n = 0, rc = 0, e;

    for (size_t i = 0; servers && servers[i]; i++) {
        const char *w = servers[i];

        if (++n > DNS_SERVERS_MAX) {
            buf_printf(err, "more than %d DNS servers", DNS_SERVERS_MAX);
            rc = -1;
            break;
        }
        if (dns_forwarder(w, fwd, sizeof(fwd), err) < 0) {
            rc = -1;
            break;
        }
        if (ub && (e = ub_ctx_set_fwd(ub, fwd)) != 0) {
            buf_printf(err, "DNS server %s: %s", w, ub_strerror(e));
            rc = -1;
            break;
        }
    }
    return rc;
}

int
dns_servers_check(char *const *servers, struct buf *err)
{
    return dns_servers(NULL, servers, err);
}

/* libunbound's worker calls libevent by name (event_set, event_add...)
 * and libev exports a libevent emulation under the same names: which one
 * libunbound gets is decided by the program's link order (configure.ac
 * puts libevent first). On libev's, every lookup corrupts the heap, so
 * refuse rather than run. 0 when safe. */
static int
dns_event_check(struct buf *err)
{
    void *f = dlsym(RTLD_DEFAULT, "event_set");
    Dl_info info;
    const char *base;

    if (f == NULL)
        return 0; /* a libunbound on its own event code: no clash */
    if (dladdr(f, &info) == 0 || info.dli_fname == NULL)
        return 0;
    base = strrchr(info.dli_fname, '/');
    base = base ? base + 1 : info.dli_fname;
    if (strncmp(base, "libev.", 6) != 0)
        return 0;
    buf_printf(err,
               "libunbound would run on libev's libevent emulation (%s): "
               "the program must be linked with libevent ahead of libev",
               info.dli_fname);
    return -1;
}

struct dns *
dns_new(struct ev_loop *loop, char *const *servers, double timeout,
        struct buf *err)
{
    struct dns *d;
    int e;

    if (dns_event_check(err) < 0)
        return NULL;
    d = xcalloc(1, sizeof(*d));
    d->loop = loop;
    d->timeout = timeout > 0 ? timeout : 30;
    d->ub = ub_ctx_create();
    if (d->ub == NULL) {
        buf_puts(err, "cannot create a DNS resolver context");
        goto fail;
    }
    /* a resolver on this machine (127.0.0.1 in resolv.conf, or a test's
     * server) is the usual case for mail: allow it */
    /* libunbound answers some names itself, as unbound does (RFC 6761
     * and 8375 zones); a stub resolver, as Postfix uses, asks the server:
     * sites and tests do run .test and .home.arpa zones */
    if ((e = ub_ctx_set_option(d->ub, "do-not-query-localhost:", "no")) != 0
        || (e = ub_ctx_set_option(d->ub, "local-zone:", "test. transparent"))
               != 0
        || (e = ub_ctx_set_option(d->ub,
                                  "local-zone:", "home.arpa. transparent"))
               != 0
        || (e = ub_ctx_async(d->ub, 1)) != 0) {
        buf_printf(err, "DNS resolver: %s", ub_strerror(e));
        goto fail;
    }
    if (servers && servers[0]) {
        if (dns_servers(d->ub, servers, err) < 0)
            goto fail;
    } else if ((e = ub_ctx_resolvconf(d->ub, NULL)) != 0) {
        /* no readable resolv.conf: libunbound resolves from the root */
        log_warning("dns: /etc/resolv.conf: %s; resolving without it",
                    ub_strerror(e));
    }
    ev_io_init(&d->io, dns_io_cb, ub_fd(d->ub), EV_READ);
    d->io.data = d;
    return d;
fail:
    dns_free(d);
    return NULL;
}

void
dns_free(struct dns *d)
{
    if (d == NULL)
        return;
    while (d->open) {
        struct dns_query *q = d->open;

        if (q->id >= 0)
            ub_cancel(d->ub, q->id);
        dns_unlink(q);
        free(q);
    }
    if (d->loop)
        ev_io_stop(d->loop, &d->io);
    if (d->ub)
        ub_ctx_delete(d->ub);
    free(d);
}

/* A query that fails before it reaches libunbound is answered from a
 * zero timer, so the callback still never runs inside dns_lookup. */
static void
dns_early_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dns_query *q = w->data;
    struct dns_answer a = {0};

    (void) loop;
    (void) revents;
    if (q->id == -1) {
        a.status = DNS_INVAL;
        a.why = "invalid host or domain name";
    } else {
        a.status = DNS_TEMP;
        a.why = "Host not found, try again";
    }
    dns_deliver(q, &a);
}

struct dns_query *
dns_lookup(struct dns *d, const char *name, int type, dns_cb *cb, void *arg)
{
    struct dns_query *q = xcalloc(1, sizeof(*q));
    int e;

    q->d = d;
    q->cb = cb;
    q->arg = arg;
    q->type = type;
    q->next = d->open;
    if (d->open)
        d->open->prev = q;
    d->open = q;
    if (d->nopen++ == 0)
        ev_io_start(d->loop, &d->io);
    q->deadline.data = q;
    if (!dns_valid_name(name)) {
        q->id = -1;
        ev_timer_init(&q->deadline, dns_early_cb, 0., 0.);
    } else if ((e = ub_resolve_async(d->ub, name, type, 1 /* IN */, q, dns_done,
                                     &q->id))
               != 0) {
        log_warning("dns: %s type=%s: %s", name, dns_strtype(type),
                    ub_strerror(e));
        q->id = -2;
        ev_timer_init(&q->deadline, dns_early_cb, 0., 0.);
    } else {
        ev_timer_init(&q->deadline, dns_deadline_cb, d->timeout, 0.);
    }
    ev_timer_start(d->loop, &q->deadline);
    return q;
}

void
dns_cancel(struct dns_query *q)
{
    if (q->id >= 0)
        ub_cancel(q->d->ub, q->id);
    dns_unlink(q);
    free(q);
}

/* ------------------------------------------------------------------ */
/* Parsers */

/* ASCII letters and digits whatever the locale (isalnum is not) */
static int
dns_ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int
dns_label_ok(const unsigned char *p, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!dns_ldh(p[i]))
            return 0;
    return 1;
}

int
dns_valid_name(const char *name)
{
    size_t len = strlen(name), start = 0;

    if (len > 0 && name[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || name[i] == '.') {
            if (!dns_label_ok((const unsigned char *) name + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

int
dns_name_text(const unsigned char *p, size_t len, char out[DNS_NAME_MAX])
{
    size_t i = 0, o = 0;

    for (;;) {
        size_t n;

        if (i >= len)
            return -1;
        n = p[i++];
        if (n == 0)
            break;
        if (n > 63 || n > len - i || !dns_label_ok(p + i, n))
            return -1; /* compression pointers are not expected here */
        if (o + (o > 0) + n >= DNS_NAME_MAX)
            return -1;
        if (o > 0)
            out[o++] = '.';
        for (size_t k = 0; k < n; k++)
            out[o++] = (char) (p[i + k] >= 'A' && p[i + k] <= 'Z'
                                   ? p[i + k] + ('a' - 'A')
                                   : p[i + k]);
        i += n;
    }
    out[o] = '\0';
    return (int) i;
}

int
dns_mx_parse(const unsigned char *rd, size_t len, unsigned *pref,
             char host[DNS_NAME_MAX])
{
    int used;

    if (len < 3)
        return -1;
    *pref = (unsigned) rd[0] << 8 | rd[1];
    used = dns_name_text(rd + 2, len - 2, host);
    if (used < 0 || (size_t) used != len - 2)
        return -1;
    return 0;
}

const char *
dns_strtype(int type)
{
    static __thread char num[16];

    switch (type) {
    case DNS_T_A:
        return "A";
    case DNS_T_NS:
        return "NS";
    case DNS_T_PTR:
        return "PTR";
    case DNS_T_MX:
        return "MX";
    case DNS_T_TXT:
        return "TXT";
    case DNS_T_AAAA:
        return "AAAA";
    }
    snprintf(num, sizeof(num), "%d", type);
    return num;
}
