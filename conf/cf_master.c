/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cf_master.c - master.cf: one line per service, Postfix format
 *   service type private unpriv chroot wakeup maxproc command [args...]
 * Only "inet" services whose command is smtpd become cf_service entries;
 * Postfix-internal service lines (unix, unix-dgram, fifo, pass) are
 * accepted and ignored so a copied Postfix master.cf loads. "-o name=value"
 * (or "-o { name = value }") sets a parameter in that service's own copy
 * of main.cf. The service name gives the listening address: smtp (25),
 * submission (587), smtps/submissions (465), a port number, host:port or
 * [v6addr]:port with a numeric host.
 * Owns: the services it returns (cf_services_free). Borrows: main.
 * Threads: any; blocking file reads: startup only.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cf.h"
#include "conf/cf_file.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"

#define CF_MASTER_SHOWN 200

/* Shared with cf.c (defined there; cf.h is a frozen contract). */
int cf_next_line(const char *text, size_t len, size_t *pos, size_t *lineno,
                 const char *fname, struct buf *line, size_t *start,
                 struct buf *err);

struct cf_tokens {
    char **v;
    size_t n, cap;
};

static void
cf_tokens_free(struct cf_tokens *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
}

static void
cf_tokens_add(struct cf_tokens *t, const char *p, size_t n)
{
    if (t->n + 2 > t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->v = xrealloc(t->v, t->cap * sizeof(char *));
    }
    t->v[t->n++] = xmemdup(p, n);
    t->v[t->n] = NULL;
}

/* Split on white space; "{ text }" is one token holding the trimmed text
 * between the braces. -1 for an unbalanced brace. */
static int
cf_tokenize(const char *s, struct cf_tokens *t)
{
    for (;;) {
        const char *start;

        while (isspace((unsigned char) *s))
            s++;
        if (*s == '\0')
            return 0;
        if (*s == '{') {
            int depth = 1;
            const char *b = s + 1, *e;

            for (s++; *s && depth > 0; s++) {
                if (*s == '{')
                    depth++;
                else if (*s == '}')
                    depth--;
            }
            if (depth > 0)
                return -1;
            e = s - 1; /* the closing brace */
            while (b < e && isspace((unsigned char) *b))
                b++;
            while (e > b && isspace((unsigned char) e[-1]))
                e--;
            cf_tokens_add(t, b, (size_t) (e - b));
            continue;
        }
        start = s;
        while (*s && !isspace((unsigned char) *s))
            s++;
        cf_tokens_add(t, start, (size_t) (s - start));
    }
}

static void
cf_service_clear(struct cf_service *s)
{
    free(s->name);
    free(s->type);
    free(s->host);
    free(s->port);
    free(s->command);
    if (s->args) {
        for (char **a = s->args; *a; a++)
            free(*a);
        free(s->args);
    }
    cf_free(s->cf);
    free(s->where);
    memset(s, 0, sizeof(*s));
}

int
cf_check_services(const struct cf *cf, const struct cf_service *svcs, size_t n,
                  const char *main,
                  int (*fn)(const struct cf *scf, void *arg, struct buf *err),
                  void *arg, struct buf *err)
{
    struct buf *e = buf_new(256, 8192);
    int rc = 0;

    /* main.cf first: a service that inherits a bad setting is not named */
    for (size_t i = 0; rc == 0 && i <= n; i++) {
        buf_reset(e);
        if (fn(i == 0 ? cf : svcs[i - 1].cf, arg, e) == 0)
            continue;
        if (i == 0)
            buf_printf(err, "%s: %s", main, buf_data(e));
        else
            buf_printf(err, "%s: service %s: %s", svcs[i - 1].where,
                       svcs[i - 1].name, buf_data(e));
        rc = -1;
    }
    buf_free(e);
    return rc;
}

void
cf_services_free(struct cf_service *svcs, size_t n)
{
    if (svcs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        cf_service_clear(&svcs[i]);
    free(svcs);
}

static int
cf_flag_ok(const char *s)
{
    return strcmp(s, "y") == 0 || strcmp(s, "n") == 0 || strcmp(s, "-") == 0;
}

static int
cf_count_ok(const char *s, int question)
{
    if (strcmp(s, "-") == 0)
        return 1;
    if (!isdigit((unsigned char) *s) || strlen(s) > 10)
        return 0;
    while (isdigit((unsigned char) *s))
        s++;
    if (question && *s == '?')
        s++;
    return *s == '\0';
}

/* Port number or well-known service name -> numeric string, or NULL. */
static char *
cf_port(const char *s)
{
    static const struct {
        const char *name, *port;
    } known[] = {{"smtp", "25"},
                 {"submission", "587"},
                 {"smtps", "465"},
                 {"submissions", "465"}};
    char num[8];
    long v = 0;

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(s, known[i].name) == 0)
            return xstrdup(known[i].port);
    }
    if (*s == '\0' || strlen(s) > 5)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char) *p))
            return NULL;
        v = v * 10 + (*p - '0');
    }
    if (v < 1 || v > 65535)
        return NULL;
    snprintf(num, sizeof(num), "%ld", v);
    return xstrdup(num);
}

/* Service name -> host (NULL = all) and port. 0 or -1 with err. */
static int
cf_service_addr(struct cf_service *svc, const char *where, struct buf *err)
{
    char *copy = xstrdup(svc->name), *host = NULL, *port = NULL;
    char shown[CF_MASTER_SHOWN];
    unsigned char a[16];

    if (strchr(copy, ':') == NULL && copy[0] != '[') {
        port = copy;
    } else if (net_split_hostport(copy, &host, &port) < 0 || port == NULL) {
        buf_printf(
            err,
            "%s: bad service address \"%s\" (expected port, "
            "host:port or [address]:port)",
            where,
            log_safe(svc->name, strlen(svc->name), shown, sizeof(shown)));
        goto fail;
    }
    if ((svc->port = cf_port(port)) == NULL) {
        buf_printf(err, "%s: unknown service name or bad port \"%s\"", where,
                   log_safe(port, strlen(port), shown, sizeof(shown)));
        goto fail;
    }
    if (host != NULL && *host != '\0' && strcmp(host, "*") != 0) {
        if (inet_pton(AF_INET, host, a) != 1
            && inet_pton(AF_INET6, host, a) != 1) {
            buf_printf(err,
                       "%s: bad host address \"%s\" (numeric IPv4 or "
                       "[IPv6] address expected)",
                       where,
                       log_safe(host, strlen(host), shown, sizeof(shown)));
            goto fail;
        }
        svc->host = xstrdup(host);
    } else if (host != NULL && *host == '\0') {
        buf_printf(
            err, "%s: empty host in service address \"%s\"", where,
            log_safe(svc->name, strlen(svc->name), shown, sizeof(shown)));
        goto fail;
    }
    free(copy);
    return 0;
fail:
    free(copy);
    return -1;
}

/* "-o" argument "name=value" or "name = value": set in svc->cf. */
static int
cf_service_opt(struct cf_service *svc, const char *arg, const char *where,
               struct buf *err)
{
    char *copy = xstrdup(arg), *eq = strchr(copy, '='), *e, *v;
    char shown[CF_MASTER_SHOWN];
    int r;

    if (eq == NULL || eq == copy) {
        buf_reset(err);
        buf_printf(err, "%s: bad -o option \"%s\" (expected name=value)", where,
                   log_safe(arg, strlen(arg), shown, sizeof(shown)));
        free(copy);
        return -1;
    }
    for (e = eq; e > copy && isspace((unsigned char) e[-1]); e--)
        ;
    *e = '\0';
    for (v = eq + 1; isspace((unsigned char) *v); v++)
        ;
    r = cf_set(svc->cf, copy, v, where, err);
    free(copy);
    return r;
}

/* One inet line, tokens already checked for count: fill svc. */
static int
cf_service_parse(const struct cf *main, struct cf_tokens *t,
                 struct cf_service *svc, const char *where, struct buf *err)
{
    char shown[CF_MASTER_SHOWN];
    size_t nargs = 0;

    svc->name = xstrdup(t->v[0]);
    svc->type = xstrdup(t->v[1]);
    svc->command = xstrdup(t->v[7]);
    svc->where = xstrdup(where);
    svc->args = xcalloc(t->n - 7, sizeof(char *));
    if (strcmp(t->v[7], "smtpd") != 0) {
        buf_printf(err,
                   "%s: unsupported command \"%s\" for inet service "
                   "\"%s\" (only smtpd)",
                   where,
                   log_safe(t->v[7], strlen(t->v[7]), shown, sizeof(shown)),
                   svc->name);
        return -1;
    }
    if (cf_service_addr(svc, where, err) < 0)
        return -1;
    svc->cf = cf_clone(main);
    for (size_t i = 8; i < t->n; i++) {
        const char *a = t->v[i];

        if (strcmp(a, "-o") == 0) {
            if (i + 1 >= t->n) {
                buf_printf(err, "%s: -o without name=value", where);
                return -1;
            }
            if (cf_service_opt(svc, t->v[++i], where, err) < 0)
                return -1;
        } else if (strncmp(a, "-o", 2) == 0) {
            if (cf_service_opt(svc, a + 2, where, err) < 0)
                return -1;
        } else {
            svc->args[nargs++] = xstrdup(a);
        }
    }
    if (cf_check(svc->cf, err) < 0)
        return -1;
    return 0;
}

static int
cf_same_addr(const struct cf_service *a, const struct cf_service *b)
{
    if (strcmp(a->port, b->port) != 0)
        return 0;
    if (a->host == NULL || b->host == NULL)
        return a->host == b->host;
    return strcmp(a->host, b->host) == 0;
}

int
cf_parse_master(const struct cf *main, const char *text, size_t len,
                const char *fname, struct cf_service **svcs, size_t *nsvcs,
                struct buf *err)
{
    struct buf *line = buf_new(256, CF_VALUE_MAX);
    struct buf *where = buf_new(64, BUF_NOCAP);
    struct cf_tokens t = {0};
    struct cf_service *v = NULL;
    struct buf *ownerr = NULL;
    size_t n = 0, pos = 0, lineno = 0, start = 0;
    char shown[CF_MASTER_SHOWN];
    int r;

    if (err == NULL)
        err = ownerr = buf_new(256, BUF_NOCAP);
    *svcs = NULL;
    *nsvcs = 0;
    while (
        (r = cf_next_line(text, len, &pos, &lineno, fname, line, &start, err))
        > 0) {
        const char *type;

        buf_reset(where);
        buf_printf(where, "%s:%zu", fname, start);
        cf_tokens_free(&t);
        buf_reset(err);
        if (cf_tokenize(buf_data(line), &t) < 0) {
            buf_printf(err, "%s: unbalanced '{' in line", buf_data(where));
            goto fail;
        }
        if (t.n < 8) {
            buf_printf(err,
                       "%s: bad field count: %zu fields, expected at "
                       "least 8 (service type private unpriv chroot wakeup "
                       "maxproc command)",
                       buf_data(where), t.n);
            goto fail;
        }
        type = t.v[1];
        if (!cf_flag_ok(t.v[2]) || !cf_flag_ok(t.v[3]) || !cf_flag_ok(t.v[4])) {
            buf_printf(err, "%s: bad private/unpriv/chroot field (y, n or -)",
                       buf_data(where));
            goto fail;
        }
        if (!cf_count_ok(t.v[5], 1) || !cf_count_ok(t.v[6], 0)) {
            buf_printf(err, "%s: bad wakeup or maxproc field (number or -)",
                       buf_data(where));
            goto fail;
        }
        if (strcmp(type, "unix") == 0 || strcmp(type, "unix-dgram") == 0
            || strcmp(type, "fifo") == 0 || strcmp(type, "pass") == 0)
            continue; /* Postfix-internal service: not ours */
        if (strcmp(type, "inet") != 0) {
            buf_printf(err, "%s: unsupported service type \"%s\"",
                       buf_data(where),
                       log_safe(type, strlen(type), shown, sizeof(shown)));
            goto fail;
        }
        v = xrealloc(v, (n + 1) * sizeof(*v));
        memset(&v[n], 0, sizeof(v[n]));
        n++;
        if (cf_service_parse(main, &t, &v[n - 1], buf_data(where), err) < 0)
            goto fail;
        for (size_t i = 0; i + 1 < n; i++) {
            if (cf_same_addr(&v[i], &v[n - 1])) {
                buf_reset(err);
                buf_printf(err,
                           "%s: duplicate service \"%s\" (same address "
                           "as %s)",
                           buf_data(where), v[n - 1].name, v[i].where);
                goto fail;
            }
        }
    }
    if (r < 0)
        goto fail;
    cf_tokens_free(&t);
    buf_free(line);
    buf_free(where);
    buf_free(ownerr);
    *svcs = v;
    *nsvcs = n;
    return 0;
fail:
    cf_services_free(v, n);
    cf_tokens_free(&t);
    buf_free(line);
    buf_free(where);
    buf_free(ownerr);
    return -1;
}

int
cf_load_master(const struct cf *main, const char *path,
               struct cf_service **svcs, size_t *nsvcs, struct buf *err)
{
    char *text;
    size_t len;
    int r;

    *svcs = NULL;
    *nsvcs = 0;
    if (cf_read_file(path, NULL, CF_FILE_MAX, &text, &len, err) < 0)
        return -1;
    r = cf_parse_master(main, text, len, path, svcs, nsvcs, err);
    free(text);
    return r;
}
