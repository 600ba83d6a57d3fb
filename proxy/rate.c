/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rate.c - per-client event rates in fixed windows (see rate.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"
#include "lib/xalloc.h"
#include "proxy/rate.h"

struct rate_ent {
    struct rate_ent *next; /* in its bucket */
    double start;          /* the window's first event */
    unsigned count[RATE_KINDS];
    char key[]; /* "service\0addr" */
};

struct rate_tab {
    double unit;
    size_t max, n;
    size_t nb; /* buckets, a power of two */
    struct rate_ent **b;
    double swept; /* last sweep */
    int warned;   /* "full" said */
};

/* FNV-1a over "service\0addr". */
static uint32_t
rate_hash(const char *service, const char *addr)
{
    uint32_t h = hash_fnv1a(HASH_FNV_INIT, service);

    h = (h ^ 0) * 16777619u; /* the NUL between them */
    return hash_fnv1a(h, addr);
}

static int
rate_is(const struct rate_ent *e, const char *service, const char *addr)
{
    size_t sl = strlen(service);

    return memcmp(e->key, service, sl + 1) == 0
           && strcmp(e->key + sl + 1, addr) == 0;
}

struct rate_tab *
rate_new(double unit, size_t max)
{
    struct rate_tab *t = xcalloc(1, sizeof(*t));

    t->unit = unit > 0 ? unit : 60;
    t->max = max > 0 ? max : 1;
    for (t->nb = 64; t->nb < t->max && t->nb < ((size_t) 1 << 20); t->nb *= 2)
        ;
    t->b = xcalloc(t->nb, sizeof(*t->b));
    return t;
}

void
rate_free(struct rate_tab *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (struct rate_ent *e = t->b[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    free(t->b);
    free(t);
}

/* Drop the entries whose window ended before now. */
static void
rate_sweep(struct rate_tab *t, double now)
{
    for (size_t i = 0; i < t->nb; i++)
        for (struct rate_ent **pp = &t->b[i]; *pp;) {
            struct rate_ent *e = *pp;

            if (e->start + t->unit < now) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    t->swept = now;
}

static struct rate_ent *
rate_find(const struct rate_tab *t, const char *service, const char *addr)
{
    struct rate_ent *e = t->b[rate_hash(service, addr) & (t->nb - 1)];

    while (e && !rate_is(e, service, addr))
        e = e->next;
    return e;
}

unsigned
rate_hit(struct rate_tab *t, const char *service, const char *addr,
         enum rate_kind kind, double now, int *full)
{
    struct rate_ent *e;

    if (now - t->swept > t->unit)
        rate_sweep(t, now);
    e = rate_find(t, service, addr);
    if (e == NULL) {
        size_t sl = strlen(service), al = strlen(addr);
        uint32_t h = rate_hash(service, addr) & (t->nb - 1);

        if (t->n >= t->max)
            rate_sweep(t, now);
        if (t->n >= t->max) {
            if (full && !t->warned)
                *full = 1;
            t->warned = 1;
            return 0;
        }
        e = xcalloc(1, sizeof(*e) + sl + al + 2);
        memcpy(e->key, service, sl + 1);
        memcpy(e->key + sl + 1, addr, al + 1);
        e->start = now;
        e->next = t->b[h];
        t->b[h] = e;
        t->n++;
    } else if (e->start + t->unit < now) { /* a new window */
        memset(e->count, 0, sizeof(e->count));
        e->start = now;
    }
    if (e->count[kind] < UINT32_MAX)
        e->count[kind]++;
    return e->count[kind];
}

unsigned
rate_peek(const struct rate_tab *t, const char *service, const char *addr,
          enum rate_kind kind, double now)
{
    const struct rate_ent *e = rate_find(t, service, addr);

    return e && e->start + t->unit >= now ? e->count[kind] : 0;
}

size_t
rate_count(const struct rate_tab *t)
{
    return t->n;
}
