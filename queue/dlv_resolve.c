/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_resolve.c - MX and address lookups for the SMTP client (see
 * dlv_resolve.h).
 * One dlv_resolve runs in two rounds: the MX query (domains only), then
 * the A and AAAA queries of every exchanger (or of the host) at once.
 * Each host has a slot that collects its addresses and the outcome of
 * its queries; when the last query is answered the slots are folded
 * into one list or one failure (dlv_resolve_finish).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/dlv_resolve.h"

#define RES_HOST_ADDRS 16 /* addresses kept per host and type */

struct res_host {
    char name[DNS_NAME_MAX];
    unsigned pref;
    struct dlv_addr addrs[2 * RES_HOST_ADDRS];
    size_t naddr;
    /* the worst outcome of its queries, and its words */
    int temp, hard;
    int why_type; /* the query type why is about */
    char why[400];
};

struct res_q {
    struct dlv_resolve *r;
    struct res_host *h;
    struct dns_query *q;
    int type;
};

struct dlv_resolve {
    struct dns *dns;
    struct ev_loop *loop;
    const struct dlv_resolve_opts *opts;
    const struct dlv_self *self;
    dlv_resolve_cb *cb;
    void *arg;
    char name[DNS_NAME_MAX];
    int port;
    struct dns_query *mxq;
    struct res_host hosts[DLV_MX_MAX];
    size_t nhosts;
    struct res_q qs[2 * DLV_MX_MAX];
    size_t nqs, pending;
    int via_mx;     /* the hosts are exchangers */
    ev_timer early; /* an answer known without a query */
    struct dlv_resolve_result res;
};

static void res_finish(struct dlv_resolve *r);

static void res_fail(struct dlv_resolve *r, enum dlv_status st, const char *dsn,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
res_fail(struct dlv_resolve *r, enum dlv_status st, const char *dsn,
         const char *fmt, ...)
{
    va_list ap;

    r->res.status = st;
    snprintf(r->res.dsn, sizeof(r->res.dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(r->res.text, sizeof(r->res.text), fmt, ap);
    va_end(ap);
    r->res.n = 0;
}

static void
res_deliver(struct dlv_resolve *r)
{
    dlv_resolve_cb *cb = r->cb;
    void *arg = r->arg;

    ev_timer_stop(r->loop, &r->early);
    cb(arg, &r->res);
    free(r);
}

static void
res_early_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    res_deliver(w->data);
}

/* An IP address as text: 1 and the address in a, else 0. */
static int
res_literal(const char *s, int port, struct dlv_addr *a)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *) &a->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &a->ss;

    memset(&a->ss, 0, sizeof(a->ss));
    if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t) port);
        a->len = sizeof(*s4);
        return 1;
    }
    if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) port);
        a->len = sizeof(*s6);
        return 1;
    }
    return 0;
}

/* Record a failed query's outcome in its host: a temporary failure
 * dominates, as in Postfix (its text is kept). */
static void
res_host_fail(struct res_host *h, const char *name, int type,
              const struct dns_answer *a)
{
    int temp = a->status == DNS_TEMP;

    /* the answers come in any order: the words are those of the last
     * type in Postfix's order (A, then AAAA), so logs do not vary */
    if ((h->temp && !temp) || (h->temp == temp && h->why_type > type))
        return;
    h->why_type = type;
    h->temp |= temp;
    h->hard |= !temp;
    if (a->status == DNS_INVAL)
        snprintf(h->why, sizeof(h->why),
                 "Name service error for %s: invalid host or domain name",
                 name);
    else
        snprintf(h->why, sizeof(h->why),
                 "Host or domain name not found. Name service error for "
                 "name=%s type=%s: %s",
                 name, dns_strtype(type), a->why);
}

static void
res_addr_cb(void *arg, const struct dns_answer *a)
{
    struct res_q *rq = arg;
    struct dlv_resolve *r = rq->r;
    struct res_host *h = rq->h;
    size_t i, kept = 0;

    rq->q = NULL;
    if (a->status != DNS_OK) {
        res_host_fail(h, h->name, rq->type, a);
    } else {
        for (i = 0; i < a->n && kept < RES_HOST_ADDRS; i++) {
            struct dlv_addr *d = &h->addrs[h->naddr];
            struct sockaddr_in *s4 = (struct sockaddr_in *) &d->ss;
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &d->ss;

            memset(d, 0, sizeof(*d));
            if (rq->type == DNS_T_A && a->len[i] == 4) {
                s4->sin_family = AF_INET;
                s4->sin_port = htons((uint16_t) r->port);
                memcpy(&s4->sin_addr, a->rdata[i], 4);
                d->len = sizeof(*s4);
            } else if (rq->type == DNS_T_AAAA && a->len[i] == 16) {
                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons((uint16_t) r->port);
                memcpy(&s6->sin6_addr, a->rdata[i], 16);
                d->len = sizeof(*s6);
            } else {
                continue; /* malformed: skipped */
            }
            d->pref = h->pref;
            memcpy(d->host, h->name, sizeof(h->name));
            h->naddr++;
            kept++;
        }
        if (kept == 0) {
            struct dns_answer bad = {.status = DNS_TEMP,
                                     .why = "Malformed or unexpected name "
                                            "server reply"};
            res_host_fail(h, h->name, rq->type, &bad);
        }
    }
    if (--r->pending == 0)
        res_finish(r);
}

/* Look up one host's addresses (a slot already filled with its name). */
static void
res_host_start(struct dlv_resolve *r, struct res_host *h)
{
    int types[2], nt = 0;

    if (res_literal(h->name, r->port, &h->addrs[0])) {
        h->addrs[0].pref = h->pref;
        memcpy(h->addrs[0].host, h->name, sizeof(h->name));
        h->naddr = 1;
        return;
    }
    if (r->opts->v4)
        types[nt++] = DNS_T_A;
    if (r->opts->v6)
        types[nt++] = DNS_T_AAAA;
    for (int i = 0; i < nt; i++) {
        struct res_q *rq = &r->qs[r->nqs++];

        rq->r = r;
        rq->h = h;
        rq->type = types[i];
        r->pending++;
        rq->q = dns_lookup(r->dns, h->name, types[i], res_addr_cb, rq);
    }
}

/* The round of address queries; answered at once when all were IP
 * literals. */
static void
res_hosts_go(struct dlv_resolve *r)
{
    size_t i;

    r->pending = 1; /* held while starting */
    for (i = 0; i < r->nhosts; i++)
        res_host_start(r, &r->hosts[i]);
    if (--r->pending == 0) {
        ev_timer_start(r->loop, &r->early); /* -> res_early_cb via finish */
        res_finish(r);
    }
}

static int
res_pref_cmp(const void *a, const void *b)
{
    const struct dlv_addr *x = a, *y = b;

    return x->pref < y->pref ? -1 : x->pref > y->pref;
}

void
dlv_resolve_sort(struct dlv_addr *a, size_t n, int randomize)
{
    size_t i, j;

    if (randomize)
        for (i = n; i > 1; i--) {
            struct dlv_addr t;

            j = (size_t) random() % i;
            t = a[i - 1];
            a[i - 1] = a[j];
            a[j] = t;
        }
    /* insertion sort: stable, and n is small */
    for (i = 1; i < n; i++) {
        struct dlv_addr t = a[i];

        for (j = i; j > 0 && res_pref_cmp(&a[j - 1], &t) > 0; j--)
            a[j] = a[j - 1];
        a[j] = t;
    }
}

void
dlv_resolve_prefer(struct dlv_addr *a, size_t n, int family)
{
    size_t i, j, k, p;

    if (family == 0)
        return;
    for (i = 0; i < n; i = j) {
        for (j = i; j < n && a[j].pref == a[i].pref; j++)
            ;
        /* stable partition of a[i..j) by rotation: n is small */
        for (p = i, k = i; k < j; k++) {
            if (a[k].ss.ss_family == family) {
                struct dlv_addr t = a[k];

                memmove(a + p + 1, a + p, (k - p) * sizeof(*a));
                a[p++] = t;
            }
        }
    }
}

static int
res_same_addr(const struct sockaddr_storage *a,
              const struct sockaddr_storage *b, int port_too)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *) a, *y = (const void *) b;

        return x->sin_addr.s_addr == y->sin_addr.s_addr
               && (!port_too || x->sin_port == y->sin_port);
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *) a, *y = (const void *) b;

        return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0
               && (!port_too || x->sin6_port == y->sin6_port);
    }
    return 0;
}

int
dlv_resolve_is_self(const struct dlv_self *self,
                    const struct sockaddr_storage *sa)
{
    size_t i;

    if (self == NULL)
        return 0;
    for (i = 0; i < self->n; i++)
        if (res_same_addr(&self->ss[i], sa, 1))
            return 1;
    for (i = 0; i < self->nproxy; i++)
        if (res_same_addr(&self->proxy[i], sa, 0))
            return 1;
    return 0;
}

/* All answers are in: one list, or one failure. */
static void
res_finish(struct dlv_resolve *r)
{
    struct dlv_addr *all;
    size_t n = 0, i, limit;
    const struct res_host *worst = NULL;

    all = xcalloc(DLV_MX_MAX * 2 * RES_HOST_ADDRS, sizeof(*all));
    for (i = 0; i < r->nhosts; i++) {
        const struct res_host *h = &r->hosts[i];

        memcpy(all + n, h->addrs, h->naddr * sizeof(*all));
        n += h->naddr;
        if (h->naddr == 0 && (h->temp || h->hard)
            && (worst == NULL || (h->temp && !worst->temp)))
            worst = h;
    }
    if (n == 0) {
        /* as Postfix: a soft failure of any exchanger dominates */
        const char *why = worst ? worst->why : "no address";

        if (r->via_mx)
            log_warning("no MX host for %s has a valid address record",
                        r->name);
        if (worst && worst->temp)
            res_fail(r, DLV_DEFER, "4.4.3", "%s", why);
        else
            res_fail(r, DLV_BOUNCE, "5.4.4", "%s", why);
        goto done;
    }
    dlv_resolve_sort(all, n, r->opts->randomize);
    dlv_resolve_prefer(all, n, r->opts->prefer);
    /* loop detection: cut the list before our own preference */
    for (i = 0; i < n; i++) {
        if (dlv_resolve_is_self(r->self, &all[i].ss)) {
            unsigned best = all[0].pref, mine = all[i].pref;
            unsigned best_mx = r->via_mx ? r->hosts[0].pref : best;
            size_t k;

            if (!r->via_mx) {
                res_fail(r, DLV_BOUNCE, "5.4.6",
                         "mail for %s loops back to myself", r->name);
                goto done;
            }
            for (k = 0; k < n && all[k].pref < mine; k++)
                ;
            n = k;
            if (n == 0) {
                if (best_mx != best)
                    res_fail(r, DLV_DEFER, "4.4.4",
                             "unable to find primary relay for %s", r->name);
                else
                    res_fail(r, DLV_BOUNCE, "5.4.6",
                             "mail for %s loops back to myself", r->name);
                goto done;
            }
            break;
        }
    }
    limit = r->opts->addr_limit;
    if (limit == 0 || limit > DLV_ADDR_MAX)
        limit = DLV_ADDR_MAX;
    if (n > limit)
        n = limit;
    memcpy(r->res.addrs, all, n * sizeof(*all));
    r->res.n = n;
    r->res.status = DLV_SENT;
done:
    free(all);
    if (!ev_is_active(&r->early))
        res_deliver(r);
    /* else: answered from the zero timer (res_hosts_go) */
}

/* A host lookup of the name itself (no MX, or none found). */
static void
res_host_round(struct dlv_resolve *r)
{
    r->via_mx = 0;
    r->nhosts = 1;
    memset(&r->hosts[0], 0, sizeof(r->hosts[0]));
    snprintf(r->hosts[0].name, sizeof(r->hosts[0].name), "%s", r->name);
    res_hosts_go(r);
}

static int
res_mx_cmp(const void *a, const void *b)
{
    const struct res_host *x = a, *y = b;

    return x->pref < y->pref ? -1 : x->pref > y->pref;
}

static void
res_mx_cb(void *arg, const struct dns_answer *a)
{
    struct dlv_resolve *r = arg;
    size_t i, j, bad = 0;

    r->mxq = NULL;
    switch (a->status) {
    case DNS_OK:
        break;
    case DNS_NOTFOUND:
    case DNS_NODATA:
        res_host_round(r); /* RFC 5321 5.1: the domain is its own MX */
        return;
    case DNS_INVAL:
        res_fail(r, DLV_BOUNCE, "5.4.4",
                 "Name service error for %s: invalid host or domain name",
                 r->name);
        res_deliver(r);
        return;
    case DNS_TEMP:
        if (r->opts->ignore_mx_error) {
            res_host_round(r);
            return;
        }
        res_fail(r, DLV_DEFER, "4.4.3",
                 "Host or domain name not found. Name service error for "
                 "name=%s type=MX: %s",
                 r->name, a->why);
        res_deliver(r);
        return;
    }
    for (i = 0; i < a->n; i++) {
        struct res_host h;

        memset(&h, 0, sizeof(h));
        if (dns_mx_parse(a->rdata[i], (size_t) a->len[i], &h.pref, h.name)
            < 0) {
            bad++;
            continue;
        }
        if (h.name[0] == '\0' && (a->n > 1 || h.pref != 0)) {
            bad++; /* RFC 7505: a null MX is the only one, preference 0 */
            continue;
        }
        if (h.name[0] == '\0') {
            res_fail(r, DLV_BOUNCE, "5.1.0",
                     "Domain %s does not accept mail (nullMX)", r->name);
            res_deliver(r);
            return;
        }
        for (j = 0; j < r->nhosts; j++)
            if (strcmp(r->hosts[j].name, h.name) == 0)
                break;
        if (j < r->nhosts) { /* listed twice: the better preference */
            if (h.pref < r->hosts[j].pref)
                r->hosts[j].pref = h.pref;
            continue;
        }
        if (r->nhosts < DLV_MX_MAX) {
            r->hosts[r->nhosts++] = h;
        } else { /* keep the DLV_MX_MAX best */
            size_t w = 0;

            for (j = 1; j < r->nhosts; j++)
                if (r->hosts[j].pref > r->hosts[w].pref)
                    w = j;
            if (h.pref < r->hosts[w].pref)
                r->hosts[w] = h;
        }
    }
    if (r->nhosts == 0) {
        res_fail(r, DLV_DEFER, "4.4.3",
                 "Name service error for name=%s type=MX: Malformed or "
                 "unexpected name server reply",
                 r->name);
        res_deliver(r);
        return;
    }
    if (bad)
        log_warning("%s: %zu malformed MX record%s ignored", r->name, bad,
                    bad == 1 ? "" : "s");
    qsort(r->hosts, r->nhosts, sizeof(r->hosts[0]), res_mx_cmp);
    r->via_mx = 1;
    res_hosts_go(r);
}

struct dlv_resolve *
dlv_resolve_start(struct dns *dns, struct ev_loop *loop, const char *name,
                  int port, const struct dlv_resolve_opts *opts,
                  const struct dlv_self *self, dlv_resolve_cb *cb, void *arg)
{
    struct dlv_resolve *r = xcalloc(1, sizeof(*r));
    struct dlv_addr lit;
    size_t len = strlen(name);

    r->dns = dns;
    r->loop = loop;
    r->opts = opts;
    r->self = self;
    r->cb = cb;
    r->arg = arg;
    r->port = port;
    ev_timer_init(&r->early, res_early_cb, 0., 0.);
    r->early.data = r;
    if (len > 0 && name[len - 1] == '.')
        len--; /* "example.com." */
    if (len == 0 || len >= sizeof(r->name)) {
        snprintf(r->name, sizeof(r->name), "%.*s", (int) (len ? 64 : 0), name);
        res_fail(r, DLV_BOUNCE, "5.4.4",
                 "Name service error for %s: invalid host or domain name",
                 r->name);
        ev_timer_start(loop, &r->early);
        return r;
    }
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    if (opts->mx && !res_literal(r->name, port, &lit)) {
        r->mxq = dns_lookup(dns, r->name, DNS_T_MX, res_mx_cb, r);
        return r;
    }
    res_host_round(r);
    return r;
}

void
dlv_resolve_cancel(struct dlv_resolve *r)
{
    size_t i;

    if (r->mxq)
        dns_cancel(r->mxq);
    for (i = 0; i < r->nqs; i++)
        if (r->qs[i].q)
            dns_cancel(r->qs[i].q);
    ev_timer_stop(r->loop, &r->early);
    free(r);
}
