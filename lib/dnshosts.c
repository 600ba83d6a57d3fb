/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnshosts.c - a domain's servers and their addresses (see dnshosts.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dnshosts.h"
#include "lib/xalloc.h"

/* One address lookup: a host's A or AAAA. */
struct dnshosts_q {
    struct dnshosts *h;
    size_t host;
    int type;
    struct dns_query *q; /* NULL once answered */
    const char *why;     /* NULL: found or none; else how it failed */
    int temp;            /* it failed for now */
};

struct dnshosts {
    struct dns *d;
    char name[DNS_NAME_MAX];
    int type;
    dnshosts_cb *cb;
    void *arg;
    struct dns_query *q;   /* the MX or NS lookup, until answered */
    struct dnshosts_q *aq; /* 2 per host: A, AAAA */
    size_t open;
    unsigned *pref; /* MX: each host's preference */
    struct dnshosts_answer a;
};

static void
dnshosts_done(struct dnshosts *h)
{
    h->cb(h->arg, &h->a);
}

/* All addresses are in: each host's why, then the callback. */
static void
dnshosts_addrs_done(struct dnshosts *h)
{
    for (size_t i = 0; i < h->a.n; i++) {
        struct dnshosts_host *v = &h->a.v[i];
        const struct dnshosts_q *q4 = &h->aq[2 * i], *q6 = &h->aq[2 * i + 1];

        if (v->naddr > 0)
            continue;
        /* as getaddrinfo: a failure for now wins over "not found" */
        v->why = q4->temp   ? q4->why
                 : q6->temp ? q6->why
                 : q4->why  ? q4->why
                            : q6->why;
        if (v->why == NULL)
            v->why = "Host not found";
    }
    dnshosts_done(h);
}

static void
dnshosts_addr_cb(void *arg, const struct dns_answer *a)
{
    struct dnshosts_q *q = arg;
    struct dnshosts *h = q->h;
    struct dnshosts_host *v = &h->a.v[q->host];

    q->q = NULL;
    switch (a->status) {
    case DNS_OK:
        for (size_t i = 0; i < a->n && v->naddr < DNSHOSTS_MAX; i++) {
            char text[INET6_ADDRSTRLEN];
            int af = q->type == DNS_T_A ? AF_INET : AF_INET6;

            if (a->len[i] != (af == AF_INET ? 4 : 16)
                || inet_ntop(af, a->rdata[i], text, sizeof(text)) == NULL)
                continue;
            v->addr = xrealloc(v->addr, (v->naddr + 1) * sizeof(*v->addr));
            v->addr[v->naddr++] = xstrdup(text);
        }
        break;
    case DNS_NOTFOUND:
    case DNS_NODATA:
        q->why = a->why;
        break;
    case DNS_TEMP:
    case DNS_INVAL:
        q->why = a->why;
        q->temp = 1;
        break;
    }
    if (--h->open == 0)
        dnshosts_addrs_done(h);
}

/* The hosts are known: their address lookups, all at once. */
static void
dnshosts_addrs(struct dnshosts *h)
{
    h->aq = xcalloc(2 * h->a.n + 1, sizeof(*h->aq));
    for (size_t i = 0; i < 2 * h->a.n; i++) {
        struct dnshosts_q *q = &h->aq[i];

        q->h = h;
        q->host = i / 2;
        q->type = i % 2 ? DNS_T_AAAA : DNS_T_A;
        h->open++;
    }
    /* dns_lookup never calls back from inside: open is complete first */
    for (size_t i = 0; i < 2 * h->a.n; i++)
        h->aq[i].q = dns_lookup(h->d, h->a.v[i / 2].name, h->aq[i].type,
                                dnshosts_addr_cb, &h->aq[i]);
}

static void
dnshosts_add(struct dnshosts *h, const char *name, unsigned pref)
{
    size_t i;

    for (i = 0; i < h->a.n; i++) /* each host once */
        if (strcmp(h->a.v[i].name, name) == 0)
            return;
    if (h->a.n == DNSHOSTS_MAX)
        return;
    h->a.v = xrealloc(h->a.v, (h->a.n + 1) * sizeof(*h->a.v));
    h->pref = xrealloc(h->pref, (h->a.n + 1) * sizeof(*h->pref));
    memset(&h->a.v[h->a.n], 0, sizeof(h->a.v[0]));
    snprintf(h->a.v[h->a.n].name, sizeof(h->a.v[0].name), "%s", name);
    /* in order of preference, equal ones as they came */
    for (i = h->a.n; i > 0 && h->pref[i - 1] > pref; i--) {
        struct dnshosts_host t = h->a.v[i];

        h->a.v[i] = h->a.v[i - 1];
        h->a.v[i - 1] = t;
        h->pref[i] = h->pref[i - 1];
    }
    h->pref[i] = pref;
    h->a.n++;
}

static void
dnshosts_fail(struct dnshosts *h, enum dnshosts_status st, const char *why)
{
    h->a.status = st;
    h->a.why = why;
    dnshosts_done(h);
}

static void
dnshosts_srv_cb(void *arg, const struct dns_answer *a)
{
    struct dnshosts *h = arg;
    size_t bad = 0;

    h->q = NULL;
    switch (a->status) {
    case DNS_OK:
        break;
    case DNS_NOTFOUND:
    case DNS_NODATA:
        if (h->type == DNS_T_NS) {
            dnshosts_fail(h, DNSHOSTS_NOTFOUND, a->why);
            return;
        }
        dnshosts_add(h, h->name, 0); /* its own MX host */
        dnshosts_addrs(h);
        return;
    default:
        dnshosts_fail(h, DNSHOSTS_FAILED, a->why);
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        char host[DNS_NAME_MAX];
        unsigned pref = 0;
        int used;

        if (h->type == DNS_T_MX) {
            if (dns_mx_parse(a->rdata[i], (size_t) a->len[i], &pref, host)
                < 0) {
                bad++;
                continue;
            }
            if (host[0] == '\0' && a->n == 1) {
                dnshosts_fail(h, DNSHOSTS_NULLMX, NULL);
                return;
            }
        } else {
            used = dns_name_text(a->rdata[i], (size_t) a->len[i], host);
            if (used < 0 || used != a->len[i]) {
                bad++;
                continue;
            }
        }
        if (host[0] != '\0')
            dnshosts_add(h, host, pref);
    }
    if (h->a.n == 0) {
        dnshosts_fail(h, DNSHOSTS_FAILED,
                      bad ? "Malformed DNS server reply" : "Host not found");
        return;
    }
    dnshosts_addrs(h);
}

struct dnshosts *
dnshosts_lookup(struct dns *d, const char *name, int type, dnshosts_cb *cb,
                void *arg)
{
    struct dnshosts *h = xcalloc(1, sizeof(*h));
    size_t n = strlen(name);

    h->d = d;
    h->type = type;
    h->cb = cb;
    h->arg = arg;
    if (n > 1 && name[n - 1] == '.')
        n--;
    snprintf(h->name, sizeof(h->name), "%.*s", (int) n, name);
    if (n >= sizeof(h->name)) /* the lookup says it is not a name */
        h->name[0] = '\0';
    if (type == DNS_T_A) {
        dnshosts_add(h, h->name, 0);
        dnshosts_addrs(h);
    } else {
        h->q = dns_lookup(d, h->name, type, dnshosts_srv_cb, h);
    }
    return h;
}

void
dnshosts_free(struct dnshosts *h)
{
    if (h == NULL)
        return;
    if (h->q)
        dns_cancel(h->q);
    for (size_t i = 0; h->aq && i < 2 * h->a.n; i++)
        if (h->aq[i].q)
            dns_cancel(h->aq[i].q);
    for (size_t i = 0; i < h->a.n; i++) {
        for (size_t k = 0; k < h->a.v[i].naddr; k++)
            free(h->a.v[i].addr[k]);
        free(h->a.v[i].addr);
    }
    free(h->a.v);
    free(h->aq);
    free(h->pref);
    free(h);
}
