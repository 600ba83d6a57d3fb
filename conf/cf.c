/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cf.c - main.cf parsing, parameter expansion, typed getters, cf_show and
 * cf_load (see cf.h for the rules).
 * A struct cf holds, for every entry of cf_params[] (same index), the raw
 * value set in a file (or NULL = default), where it was set, and a cache of
 * the expanded value and, for lists, of the split list. Expansion is
 * recursive with a stack of the parameters being expanded, so a cycle is
 * found (and reported with the chain of names) instead of looped on.
 * Owns: every string in the struct cf. Borrows nothing.
 * Threads: one thread until cf_check() has filled every cache; after that
 * the getters only read.
 * Also holds two helpers for the other conf/ files: cf_read_file (declared
 * in cf_file.h, also used by cf_master.c and lookup.c) and cf_next_line
 * (shared with cf_master.c; cf.h is a frozen contract, so its prototype is
 * repeated there instead of in a header).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/cf.h"
#include "conf/cf_file.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define CF_DEPTH_MAX  128 /* parameters being expanded at once */
#define CF_TDEPTH_MAX 32  /* nested ${name?text} levels */
#define CF_SHOWN_MAX  200 /* bytes of a bad value quoted in an error */

enum cf_xstate {
    CF_X_NONE, /* not expanded yet */
    CF_X_BUSY, /* being expanded: meeting it again is a loop */
    CF_X_DONE  /* exp (and unknown) valid */
};

struct cf_val {
    char *raw;     /* value set in a file or by cf_set; NULL = default */
    char *where;   /* "FILE:LINE" of raw, or NULL */
    char *exp;     /* cache: expanded value */
    char **list;   /* cache: split list (CF_LIST, CF_MAP) */
    char *unknown; /* cache: first unknown $name in the raw value */
    enum cf_xstate state;
};

/* A parameter the operator made up ("mua_client_restrictions = ..."),
 * as Postfix allows: it has a value, used where $name refers to it. */
struct cf_user {
    char *name;
    char *raw;
    char *where; /* "FILE:LINE", or NULL */
};

struct cf {
    size_t n;             /* entries in cf_params[] */
    char **defs;          /* default raw values (some computed at cf_new) */
    struct cf_val *val;   /* same index as cf_params[] */
    struct cf_user *user; /* user-defined parameters, in the order set */
    size_t nuser;
    void **old;  /* caches dropped by cf_set: strings already */
    size_t nold; /* handed out stay valid until cf_free */
};

/* Expansion context: the stack of parameters being expanded. */
struct cf_xctx {
    struct cf *cf;
    size_t stack[CF_DEPTH_MAX];
    size_t depth;
    int tdepth;
    int failed; /* an error is in err: stop and return -1 */
    struct buf *err;
};

int cf_next_line(const char *text, size_t len, size_t *pos, size_t *lineno,
                 const char *fname, struct buf *line, size_t *start,
                 struct buf *err);

static size_t
cf_nparams(void)
{
    size_t n = 0;

    while (cf_params[n].name != NULL)
        n++;
    return n;
}

static size_t
cf_index(const char *name)
{
    const struct cf_param *p = cf_param_find(name);

    if (p == NULL)
        log_panic("cf: unknown parameter \"%s\" requested", name);
    return (size_t) (p - cf_params);
}

/* Text from a file or a peer, made safe and short for an error message. */
static const char *
cf_shown(const char *s, char *out, size_t outsz)
{
    return log_safe(s, strlen(s), out, outsz);
}

static void cf_err(struct buf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cf_err(struct buf *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    buf_reset(err);
    va_start(ap, fmt);
    if (buf_vprintf(err, fmt, ap) < 0) {
        buf_reset(err);
        buf_puts(err, "configuration error (message too long)");
    }
    va_end(ap);
}

static const char *
cf_where(const struct cf *cf, size_t i)
{
    return cf->val[i].where ? cf->val[i].where : "main.cf";
}

static void
cf_drop(struct cf *cf, void *p, int keep)
{
    if (p == NULL)
        return;
    if (!keep) {
        free(p);
        return;
    }
    cf->old = xrealloc(cf->old, (cf->nold + 1) * sizeof(void *));
    cf->old[cf->nold++] = p;
}

/* Forget every expansion; keep: park what was handed out until cf_free. */
static void
cf_uncache(struct cf *cf, int keep)
{
    for (size_t i = 0; i < cf->n; i++) {
        struct cf_val *v = &cf->val[i];

        cf_drop(cf, v->exp, keep);
        v->exp = NULL;
        if (v->list) {
            for (char **l = v->list; *l; l++)
                cf_drop(cf, *l, keep);
            cf_drop(cf, v->list, keep);
            v->list = NULL;
        }
        free(v->unknown);
        v->unknown = NULL;
        v->state = CF_X_NONE;
    }
}

/* "host.example.org" -> "example.org"; no dot -> "localdomain". */
static void
cf_domain_of(const char *host, struct buf *out)
{
    const char *dot = strchr(host, '.');

    buf_reset(out);
    if (dot != NULL && dot[1] != '\0')
        buf_puts(out, dot + 1);
    else
        buf_puts(out, "localdomain");
}

struct cf *
cf_new(void)
{
    struct cf *cf = xcalloc(1, sizeof(*cf));
    char host[256];
    struct buf *dom = buf_new(64, BUF_NOCAP);

    cf->n = cf_nparams();
    cf->defs = xcalloc(cf->n, sizeof(char *));
    cf->val = xcalloc(cf->n, sizeof(struct cf_val));
    if (gethostname(host, sizeof(host) - 1) < 0 || host[0] == '\0')
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    for (size_t i = 0; i < cf->n; i++)
        cf->defs[i] = xstrdup(cf_params[i].def);
    free(cf->defs[cf_index("myhostname")]);
    if (strchr(host, '.') == NULL) {
        buf_printf(dom, "%s.localdomain", host);
        cf->defs[cf_index("myhostname")] = xstrdup(buf_data(dom));
    } else {
        cf->defs[cf_index("myhostname")] = xstrdup(host);
    }
    cf_domain_of(cf->defs[cf_index("myhostname")], dom);
    free(cf->defs[cf_index("mydomain")]);
    cf->defs[cf_index("mydomain")] = xstrdup(buf_data(dom));
    buf_free(dom);
    return cf;
}

struct cf *
cf_clone(const struct cf *cf)
{
    struct cf *c = xcalloc(1, sizeof(*c));

    c->n = cf->n;
    c->defs = xcalloc(c->n, sizeof(char *));
    c->val = xcalloc(c->n, sizeof(struct cf_val));
    for (size_t i = 0; i < c->n; i++) {
        c->defs[i] = xstrdup(cf->defs[i]);
        if (cf->val[i].raw)
            c->val[i].raw = xstrdup(cf->val[i].raw);
        if (cf->val[i].where)
            c->val[i].where = xstrdup(cf->val[i].where);
    }
    c->nuser = cf->nuser;
    c->user = xcalloc(c->nuser + 1, sizeof(*c->user));
    for (size_t i = 0; i < c->nuser; i++) {
        c->user[i].name = xstrdup(cf->user[i].name);
        c->user[i].raw = xstrdup(cf->user[i].raw);
        c->user[i].where =
            cf->user[i].where ? xstrdup(cf->user[i].where) : NULL;
    }
    return c;
}

void
cf_free(struct cf *cf)
{
    if (cf == NULL)
        return;
    cf_uncache(cf, 0);
    for (size_t i = 0; i < cf->nold; i++)
        free(cf->old[i]);
    free(cf->old);
    for (size_t i = 0; i < cf->n; i++) {
        free(cf->defs[i]);
        free(cf->val[i].raw);
        free(cf->val[i].where);
    }
    free(cf->defs);
    free(cf->val);
    for (size_t i = 0; i < cf->nuser; i++) {
        free(cf->user[i].name);
        free(cf->user[i].raw);
        free(cf->user[i].where);
    }
    free(cf->user);
    free(cf);
}

/* The user-defined parameter called name (n bytes), or NULL. */
static const struct cf_user *
cf_user_find(const struct cf *cf, const char *name, size_t n)
{
    for (size_t i = 0; i < cf->nuser; i++)
        if (strlen(cf->user[i].name) == n
            && strncmp(cf->user[i].name, name, n) == 0)
            return &cf->user[i];
    return NULL;
}

/* ---- expansion ---- */

static int cf_xtext(struct cf_xctx *x, const char *text, struct buf *out);

/* Error in the parameter at the top of the stack: "WHERE: parameter X: " */
static void cf_xerr(struct cf_xctx *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cf_xerr(struct cf_xctx *x, const char *fmt, ...)
{
    va_list ap;

    if (x->failed)
        return;
    x->failed = 1;
    if (x->err == NULL)
        return;
    buf_reset(x->err);
    if (x->depth > 0) {
        size_t i = x->stack[x->depth - 1];
        buf_printf(x->err, "%s: parameter %s: ", cf_where(x->cf, i),
                   cf_params[i].name);
    }
    va_start(ap, fmt);
    buf_vprintf(x->err, fmt, ap);
    va_end(ap);
}

static void
cf_xloop(struct cf_xctx *x, size_t i)
{
    size_t k = 0;

    if (x->failed)
        return;
    x->failed = 1;
    if (x->err == NULL)
        return;
    while (k < x->depth && x->stack[k] != i)
        k++;
    buf_reset(x->err);
    buf_printf(x->err, "%s: parameter %s: expansion loop: ", cf_where(x->cf, i),
               cf_params[i].name);
    for (; k < x->depth; k++)
        buf_printf(x->err, "%s -> ", cf_params[x->stack[k]].name);
    buf_puts(x->err, cf_params[i].name);
}

/* The expanded value of parameter i (cached), or NULL after an error. */
static const char *
cf_xparam(struct cf_xctx *x, size_t i)
{
    struct cf_val *v = &x->cf->val[i];
    struct buf *out;
    int r;

    switch (v->state) {
    case CF_X_DONE:
        return v->exp;
    case CF_X_BUSY:
        cf_xloop(x, i);
        return NULL;
    case CF_X_NONE:
        break;
    }
    if (x->depth >= CF_DEPTH_MAX) {
        cf_xerr(x, "expansion too deep");
        return NULL;
    }
    free(v->unknown);
    v->unknown = NULL;
    v->state = CF_X_BUSY;
    x->stack[x->depth++] = i;
    out = buf_new(64, CF_VALUE_MAX);
    if (v->raw == NULL && i == cf_index("mydomain")) {
        const char *h = cf_xparam(x, cf_index("myhostname"));

        r = h ? 0 : -1;
        if (h)
            cf_domain_of(h, out);
    } else if (i == cf_index("smtpd_reject_footer")
               || i == cf_index("mailbox_command")) {
        /* Postfix's raw parameters: their $names are the session's
         * (expanded at each reply, smtpd.c) or the shell's (the command's
         * environment, dlv_local.c), not parameters */
        const char *t = v->raw ? v->raw : x->cf->defs[i];

        r = buf_append(out, t, strlen(t));
    } else {
        r = cf_xtext(x, v->raw ? v->raw : x->cf->defs[i], out);
    }
    x->depth--;
    if (r < 0) {
        v->state = CF_X_NONE;
        buf_free(out);
        return NULL;
    }
    free(v->exp);
    v->exp = xmemdup(buf_data(out), buf_len(out));
    v->state = CF_X_DONE;
    buf_free(out);
    return v->exp;
}

static int
cf_xappend(struct cf_xctx *x, struct buf *out, const char *p, size_t n)
{
    if (buf_append(out, p, n) < 0) {
        cf_xerr(x, "value too long after expansion (more than %d bytes)",
                CF_VALUE_MAX);
        return -1;
    }
    return 0;
}

static int
cf_isname(int c)
{
    return isalnum((unsigned char) c) || c == '_';
}

/* p points after "${" or "$(": the index of the matching close, or -1. */
static long
cf_xclose(const char *p, char open, char close)
{
    int depth = 1;

    for (const char *q = p; *q; q++) {
        if (*q == open)
            depth++;
        else if (*q == close && --depth == 0)
            return q - p;
    }
    return -1;
}

static void
cf_xunknown(struct cf_xctx *x, const char *name, size_t n)
{
    if (x->depth > 0) {
        struct cf_val *v = &x->cf->val[x->stack[x->depth - 1]];

        if (v->unknown == NULL)
            v->unknown = xmemdup(name, n);
    } else {
        log_warning("unknown parameter %.*s in expanded text", (int) n, name);
    }
}

/* Expand text into out (appending). 0, or -1 with x->failed set. */
static int
cf_xtext(struct cf_xctx *x, const char *text, struct buf *out)
{
    const char *p = text;
    char shown[CF_SHOWN_MAX];

    if (++x->tdepth > CF_TDEPTH_MAX) {
        x->tdepth--;
        cf_xerr(x, "expansion too deep");
        return -1;
    }
    while (*p) {
        const char *start = p, *name, *text2 = NULL;
        size_t nlen, tlen = 0, total;
        char op = 0;
        const char *dollar = strchr(p, '$');

        if (dollar == NULL)
            dollar = p + strlen(p);
        if (dollar > p) {
            if (cf_xappend(x, out, p, (size_t) (dollar - p)) < 0)
                goto fail;
            p = dollar;
            continue;
        }
        p++; /* past '$' */
        if (*p == '$') {
            if (cf_xappend(x, out, "$", 1) < 0)
                goto fail;
            p++;
            continue;
        }
        if (*p == '{' || *p == '(') {
            char close = *p == '{' ? '}' : ')';
            long end = cf_xclose(p + 1, *p, close);

            if (end < 0) {
                cf_xerr(x, "missing '%c' in \"%s\"", close,
                        cf_shown(start, shown, sizeof(shown)));
                goto fail;
            }
            name = p + 1;
            for (nlen = 0; cf_isname(name[nlen]); nlen++)
                ;
            if (nlen == 0
                || (nlen != (size_t) end && name[nlen] != '?'
                    && name[nlen] != ':')) {
                cf_xerr(
                    x, "bad parameter reference \"%s\"",
                    log_safe(start, (size_t) end + 3, shown, sizeof(shown)));
                goto fail;
            }
            if (nlen != (size_t) end) {
                op = name[nlen];
                text2 = name + nlen + 1;
                tlen = (size_t) end - nlen - 1;
            }
            p = p + 1 + end + 1;
        } else if (cf_isname(*p)) {
            name = p;
            for (nlen = 0; cf_isname(name[nlen]); nlen++)
                ;
            p += nlen;
        } else {
            /* a lone '$' is literal text, as in Postfix */
            if (cf_xappend(x, out, "$", 1) < 0)
                goto fail;
            continue;
        }
        total = (size_t) (p - start);

        char *nm = xmemdup(name, nlen);
        const struct cf_param *par = cf_param_find(nm);
        const char *val = "";

        const struct cf_user *u = par ? NULL : cf_user_find(x->cf, name, nlen);
        struct buf *ub = NULL;

        free(nm);
        if (u != NULL) { /* its value, expanded here (not cached) */
            ub = buf_new(64, CF_VALUE_MAX);
            if (cf_xtext(x, u->raw, ub) < 0) {
                buf_free(ub);
                goto fail;
            }
            val = buf_data(ub);
        } else if (par == NULL) {
            cf_xunknown(x, name, nlen);
            if (op == 0) {
                if (cf_xappend(x, out, start, total) < 0)
                    goto fail;
                continue;
            }
        } else if ((val = cf_xparam(x, (size_t) (par - cf_params))) == NULL) {
            goto fail;
        }
        if (op == 0) {
            int r = cf_xappend(x, out, val, strlen(val));

            buf_free(ub);
            if (r < 0)
                goto fail;
        } else if ((op == '?' && *val != '\0') || (op == ':' && *val == '\0')) {
            char *t = xmemdup(text2, tlen);
            int r;

            buf_free(ub);
            r = cf_xtext(x, t, out);
            free(t);
            if (r < 0)
                goto fail;
        } else {
            buf_free(ub);
        }
    }
    x->tdepth--;
    return 0;
fail:
    x->tdepth--;
    return -1;
}

int
cf_expand(const struct cf *cf, const char *text, struct buf *out,
          struct buf *err)
{
    struct cf_xctx x = {.cf = (struct cf *) cf, .err = err};

    return cf_xtext(&x, text, out);
}

/* ---- typed values ---- */

static int
cf_parse_digits(const char **s, long long *v)
{
    const char *p = *s;
    long long n = 0;

    if (!isdigit((unsigned char) *p))
        return -1;
    for (; isdigit((unsigned char) *p); p++) {
        int d = *p - '0';

        if (n > (LLONG_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *s = p;
    *v = n;
    return 0;
}

static int
cf_parse_int(const char *s, long long *v)
{
    int neg = 0;

    if (*s == '-') {
        neg = 1;
        s++;
    }
    if (cf_parse_digits(&s, v) < 0 || *s != '\0')
        return -1;
    if (neg)
        *v = -*v;
    return 0;
}

static int
cf_parse_scaled(const char *s, char defunit, const char *units,
                const long long *mult, long long *v)
{
    long long n, m = 0;
    char u;
    const char *k;

    if (cf_parse_digits(&s, &n) < 0)
        return -1;
    u = (char) tolower((unsigned char) *s);
    if (u == '\0') {
        u = defunit;
    } else if (s[1] != '\0') {
        return -1;
    }
    if (u == 0) {
        m = 1;
    } else if ((k = strchr(units, u)) != NULL) {
        m = mult[k - units];
    } else {
        return -1;
    }
    if (n > LLONG_MAX / m)
        return -1;
    *v = n * m;
    return 0;
}

static int
cf_parse_time(const char *s, char unit, long long *v)
{
    static const long long mult[] = {1, 60, 3600, 86400, 604800};

    return cf_parse_scaled(s, unit ? unit : 's', "smhdw", mult, v);
}

static int
cf_parse_size(const char *s, long long *v)
{
    static const long long mult[] = {1024, 1024 * 1024, 1024 * 1024 * 1024};

    return cf_parse_scaled(s, 0, "kmg", mult, v);
}

static int
cf_parse_bool(const char *s, int *v)
{
    if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0
        || strcmp(s, "1") == 0) {
        *v = 1;
        return 0;
    }
    if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0
        || strcmp(s, "0") == 0) {
        *v = 0;
        return 0;
    }
    return -1;
}

/* Split a list value on commas and white space; "{ ... }" stays one
 * element (with its braces). NULL if a brace is unbalanced. */
static char **
cf_split(const char *s)
{
    size_t n = 0, cap = 8;
    char **l = xmalloc(cap * sizeof(char *));

    for (;;) {
        const char *start;
        int depth = 0;

        while (*s == ',' || isspace((unsigned char) *s))
            s++;
        if (*s == '\0')
            break;
        start = s;
        for (; *s; s++) {
            if (*s == '{') {
                depth++;
            } else if (*s == '}') {
                if (--depth < 0)
                    goto fail;
            } else if (depth == 0 && (*s == ',' || isspace((unsigned char) *s)))
                break;
        }
        if (depth != 0)
            goto fail;
        if (n + 2 > cap) {
            cap *= 2;
            l = xrealloc(l, cap * sizeof(char *));
        }
        l[n++] = xmemdup(start, (size_t) (s - start));
    }
    l[n] = NULL;
    return l;
fail:
    while (n > 0)
        free(l[--n]);
    free(l);
    return NULL;
}

char **
cf_user_list(const struct cf *cf, const char *name, struct buf *err)
{
    const struct cf_user *u = cf_user_find(cf, name, strlen(name));
    struct buf *out;
    char **l;

    if (u == NULL) {
        if (err)
            buf_printf(err, "no parameter %s defined in main.cf", name);
        return NULL;
    }
    out = buf_new(64, CF_VALUE_MAX);
    if (cf_expand(cf, u->raw, out, err) < 0) {
        buf_free(out);
        return NULL;
    }
    l = cf_split(buf_data(out));
    if (l == NULL && err)
        buf_printf(err, "%s: unbalanced '{' or '}'", name);
    buf_free(out);
    return l;
}

void
cf_list_free(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        free(l[i]);
    free(l);
}

static const char *
cf_type_name(enum cf_type t)
{
    switch (t) {
    case CF_STR:
        return "string";
    case CF_INT:
        return "integer";
    case CF_BOOL:
        return "boolean";
    case CF_TIME:
        return "time";
    case CF_SIZE:
        return "size";
    case CF_LIST:
        return "list";
    case CF_MAP:
        return "lookup table list";
    }
    return "?";
}

/* Check the (expanded) value of parameter i against its type; fills the
 * list cache. 0 or -1 with err. */
static int
cf_check_type(struct cf *cf, size_t i, struct buf *err)
{
    const struct cf_param *p = &cf_params[i];
    struct cf_val *v = &cf->val[i];
    char shown[CF_SHOWN_MAX];
    long long n;
    int b, bad = 0;

    switch (p->type) {
    case CF_STR:
        break;
    case CF_INT:
        bad = cf_parse_int(v->exp, &n) < 0;
        break;
    case CF_BOOL:
        bad = cf_parse_bool(v->exp, &b) < 0;
        break;
    case CF_TIME:
        bad = cf_parse_time(v->exp, p->unit, &n) < 0;
        break;
    case CF_SIZE:
        bad = cf_parse_size(v->exp, &n) < 0;
        break;
    case CF_LIST:
    case CF_MAP:
        if (v->list == NULL && (v->list = cf_split(v->exp)) == NULL) {
            cf_err(err, "%s: parameter %s: unbalanced '{' or '}' in \"%s\"",
                   cf_where(cf, i), p->name,
                   cf_shown(v->exp, shown, sizeof(shown)));
            return -1;
        }
        if (p->type == CF_MAP) {
            for (char **l = v->list; *l; l++) {
                const char *c = strchr(*l, ':');

                if (c == NULL || c == *l || c[1] == '\0') {
                    cf_err(err,
                           "%s: parameter %s: bad lookup table \"%s\" "
                           "(expected type:name)",
                           cf_where(cf, i), p->name,
                           cf_shown(*l, shown, sizeof(shown)));
                    return -1;
                }
            }
        }
        break;
    }
    if (bad) {
        cf_err(err, "%s: bad %s value for parameter %s: %s", cf_where(cf, i),
               cf_type_name(p->type), p->name,
               cf_shown(v->exp, shown, sizeof(shown)));
        return -1;
    }
    return 0;
}

int
cf_check(struct cf *cf, struct buf *err)
{
    struct cf_xctx x = {.cf = cf, .err = err};

    for (size_t i = 0; i < cf->n; i++) {
        if (cf_xparam(&x, i) == NULL)
            return -1;
    }
    for (size_t i = 0; i < cf->n; i++) {
        if (cf->val[i].unknown) {
            char shown[CF_SHOWN_MAX];

            cf_err(err, "%s: unknown parameter %s in value of %s",
                   cf_where(cf, i),
                   cf_shown(cf->val[i].unknown, shown, sizeof(shown)),
                   cf_params[i].name);
            return -1;
        }
        if (cf_check_type(cf, i, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- setting values ---- */

#define CF_NAME_MAX 100 /* bytes of a user-defined parameter's name */

/* Edit distance of a and b (insertions, deletions, substitutions and
 * swaps of neighbours), or a number > max once it is beyond max. */
static size_t
cf_distance(const char *a, const char *b, size_t max)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t r0[CF_NAME_MAX + 2], r1[CF_NAME_MAX + 2], r2[CF_NAME_MAX + 2];
    size_t *pp = r0, *p = r1, *c = r2; /* rows i-2, i-1, i */

    if (la > CF_NAME_MAX || lb > CF_NAME_MAX
        || (la > lb ? la - lb : lb - la) > max)
        return max + 1;
    for (size_t j = 0; j <= lb; j++)
        p[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t best = c[0] = i, *t;

        for (size_t j = 1; j <= lb; j++) {
            size_t v = p[j - 1] + (a[i - 1] != b[j - 1]);

            if (p[j] + 1 < v)
                v = p[j] + 1;
            if (c[j - 1] + 1 < v)
                v = c[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]
                && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            c[j] = v;
            if (v < best)
                best = v;
        }
        if (best > max)
            return max + 1;
        t = pp;
        pp = p;
        p = c;
        c = t;
    }
    return p[lb];
}

/* A known parameter's name that name (unknown, 8 bytes or more) is a
 * typing error of (one letter off, two for names of 16 bytes or more),
 * or NULL: such a name is refused, not taken as a user-defined one. */
static const char *
cf_near(const char *name)
{
    const char *best = NULL;
    size_t max = strlen(name) >= 16 ? 2 : 1, bd = max + 1;

    if (strlen(name) < 8)
        return NULL;
    for (size_t i = 0; cf_params[i].name && bd > 1; i++) {
        size_t d = cf_distance(name, cf_params[i].name, max);

        if (d < bd) {
            bd = d;
            best = cf_params[i].name;
        }
    }
    return best;
}

static void
cf_user_set(struct cf *cf, const char *name, const char *value,
            const char *where)
{
    struct cf_user *u = (struct cf_user *) cf_user_find(cf, name, strlen(name));

    if (u == NULL) {
        cf->user = xrealloc(cf->user, (cf->nuser + 1) * sizeof(*cf->user));
        u = &cf->user[cf->nuser++];
        u->name = xstrdup(name);
    } else {
        free(u->raw);
        free(u->where);
    }
    u->raw = xstrdup(value);
    u->where = *where ? xstrdup(where) : NULL;
}

int
cf_set(struct cf *cf, const char *name, const char *value, const char *where,
       struct buf *err)
{
    const struct cf_param *p = cf_param_find(name);
    char shown[CF_SHOWN_MAX];
    const char *sep = where ? ": " : "";
    struct cf_val *v;

    if (where == NULL)
        where = "";
    if (p == NULL) {
        const char *near = NULL;

        if (*name == '\0' || strlen(name) > CF_NAME_MAX
            || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX"
                            "YZ0123456789_")
                   != strlen(name)
            || (near = cf_near(name)) != NULL) {
            cf_err(err, "%s%sunknown parameter \"%s\"%s%s%s", where, sep,
                   cf_shown(name, shown, sizeof(shown)),
                   near ? " (did you mean \"" : "", near ? near : "",
                   near ? "\"?)" : "");
            return -1;
        }
        if (strlen(value) > CF_VALUE_MAX) {
            cf_err(err,
                   "%s%svalue of parameter %s too long (more than %d bytes)",
                   where, sep, name, CF_VALUE_MAX);
            return -1;
        }
        cf_user_set(cf, name, value, where);
        cf_uncache(cf, 1);
        return 0;
    }
    if (strlen(value) > CF_VALUE_MAX) {
        cf_err(err, "%s%svalue of parameter %s too long (more than %d bytes)",
               where, sep, name, CF_VALUE_MAX);
        return -1;
    }
    cf_uncache(cf, 1);
    v = &cf->val[p - cf_params];
    free(v->raw);
    free(v->where);
    v->raw = xstrdup(value);
    v->where = *where ? xstrdup(where) : NULL;
    return 0;
}

static int
cf_trim_ws(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* The next logical line of text: comment and blank lines skipped, lines
 * that start with white space joined to the one before with one space.
 * 1 with the line in line and its first line number in *start; 0 at the
 * end; -1 with "FNAME:LINE: ..." in err. */
int
cf_next_line(const char *text, size_t len, size_t *pos, size_t *lineno,
             const char *fname, struct buf *line, size_t *start,
             struct buf *err)
{
    int have = 0;

    buf_reset(line);
    while (*pos < len) {
        const char *b = text + *pos, *nl = memchr(b, '\n', len - *pos);
        size_t n = nl ? (size_t) (nl - b) : len - *pos;
        size_t save = *pos, i = 0;

        *pos += n + (nl != NULL);
        ++*lineno;
        if (memchr(b, '\0', n) != NULL) {
            cf_err(err, "%s:%zu: NUL character in line", fname, *lineno);
            return -1;
        }
        if (n > CF_VALUE_MAX) {
            cf_err(err, "%s:%zu: line too long (more than %d bytes)", fname,
                   *lineno, CF_VALUE_MAX);
            return -1;
        }
        while (n > 0 && (cf_trim_ws((unsigned char) b[n - 1])))
            n--;
        while (i < n && cf_trim_ws((unsigned char) b[i]))
            i++;
        if (i == n || b[i] == '#')
            continue;
        if (i == 0) {
            if (have) { /* the next logical line: read it next time */
                *pos = save;
                --*lineno;
                return 1;
            }
            have = 1;
            *start = *lineno;
        } else if (!have) {
            cf_err(err,
                   "%s:%zu: line starts with white space but continues "
                   "no line",
                   fname, *lineno);
            return -1;
        } else if (buf_putc(line, ' ') < 0) {
            goto toolong;
        }
        if (buf_append(line, b + i, n - i) < 0)
            goto toolong;
    }
    return have;
toolong:
    cf_err(err, "%s:%zu: line too long (more than %d bytes)", fname, *start,
           CF_VALUE_MAX);
    return -1;
}

int
cf_parse_main(struct cf *cf, const char *text, size_t len, const char *fname,
              struct buf *err)
{
    struct buf *line = buf_new(256, CF_VALUE_MAX);
    struct buf *where = buf_new(64, BUF_NOCAP);
    size_t pos = 0, lineno = 0, start = 0;
    char shown[CF_SHOWN_MAX];
    int r;

    while (
        (r = cf_next_line(text, len, &pos, &lineno, fname, line, &start, err))
        > 0) {
        char *s = buf_data(line), *eq = strchr(s, '='), *name, *value, *e;

        buf_reset(where);
        buf_printf(where, "%s:%zu", fname, start);
        if (eq == NULL) {
            cf_err(err, "%s: missing '=' after parameter name in \"%s\"",
                   buf_data(where), cf_shown(s, shown, sizeof(shown)));
            goto fail;
        }
        for (e = eq; e > s && cf_trim_ws((unsigned char) e[-1]); e--)
            ;
        *e = '\0';
        name = s;
        if (*name == '\0') {
            cf_err(err, "%s: missing parameter name before '='",
                   buf_data(where));
            goto fail;
        }
        for (value = eq + 1; cf_trim_ws((unsigned char) *value); value++)
            ;
        if (cf_set(cf, name, value, buf_data(where), err) < 0)
            goto fail;
    }
    if (r < 0)
        goto fail;
    buf_free(line);
    buf_free(where);
    return 0;
fail:
    buf_free(line);
    buf_free(where);
    return -1;
}

int
cf_read_file(const char *path, const char *what, size_t max, char **text,
             size_t *len, struct buf *err)
{
    struct stat st;
    size_t n = 0;
    char *t = NULL;
    const char *w = what ? what : "", *sp = what ? " " : "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        cf_err(err, "cannot open %s%s%s: %s", w, sp, path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        cf_err(err, "cannot stat %s%s%s: %s", w, sp, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || (unsigned long long) st.st_size > max) {
        cf_err(err, "%s%s%s: not a regular file or larger than %zu bytes", w,
               sp, path, max);
        goto fail;
    }
    t = xmalloc((size_t) st.st_size + 1);
    while (n < (size_t) st.st_size) {
        ssize_t r = read(fd, t + n, (size_t) st.st_size - n);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cf_err(err, "cannot read %s%s%s: %s", w, sp, path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t) r;
    }
    t[n] = '\0';
    close(fd);
    *text = t;
    *len = n;
    return 0;
fail:
    free(t);
    close(fd);
    return -1;
}

int
cf_load_main(struct cf *cf, const char *path, struct buf *err)
{
    char *text;
    size_t len;
    int r;

    if (cf_read_file(path, NULL, CF_FILE_MAX, &text, &len, err) < 0)
        return -1;
    r = cf_parse_main(cf, text, len, path, err);
    free(text);
    return r;
}

/* ---- getters ---- */

static struct cf_val *
cf_get(const struct cf *ccf, const char *name, size_t *ip)
{
    struct cf *cf = (struct cf *) ccf; /* caches only */
    size_t i = cf_index(name);

    if (cf->val[i].state != CF_X_DONE) {
        struct buf *err = buf_new(128, BUF_NOCAP);
        struct cf_xctx x = {.cf = cf, .err = err};

        if (cf_xparam(&x, i) == NULL)
            log_fatal("%s", buf_data(err));
        buf_free(err);
    }
    *ip = i;
    return &cf->val[i];
}

static void
cf_want(size_t i, enum cf_type t)
{
    if (cf_params[i].type != t)
        log_panic("cf: parameter %s is a %s, not a %s", cf_params[i].name,
                  cf_type_name(cf_params[i].type), cf_type_name(t));
}

const char *
cf_str(const struct cf *cf, const char *name)
{
    size_t i;

    return cf_get(cf, name, &i)->exp;
}

long long
cf_int(const struct cf *cf, const char *name)
{
    size_t i;
    struct cf_val *v = cf_get(cf, name, &i);
    long long n;

    cf_want(i, CF_INT);
    if (cf_parse_int(v->exp, &n) < 0)
        log_fatal("%s: bad integer value for parameter %s: %s", cf_where(cf, i),
                  name, v->exp);
    return n;
}

int
cf_bool(const struct cf *cf, const char *name)
{
    size_t i;
    struct cf_val *v = cf_get(cf, name, &i);
    int b;

    cf_want(i, CF_BOOL);
    if (cf_parse_bool(v->exp, &b) < 0)
        log_fatal("%s: bad boolean value for parameter %s: %s", cf_where(cf, i),
                  name, v->exp);
    return b;
}

long long
cf_time(const struct cf *cf, const char *name)
{
    size_t i;
    struct cf_val *v = cf_get(cf, name, &i);
    long long n;

    cf_want(i, CF_TIME);
    if (cf_parse_time(v->exp, cf_params[i].unit, &n) < 0)
        log_fatal("%s: bad time value for parameter %s: %s", cf_where(cf, i),
                  name, v->exp);
    return n;
}

long long
cf_size(const struct cf *cf, const char *name)
{
    size_t i;
    struct cf_val *v = cf_get(cf, name, &i);
    long long n;

    cf_want(i, CF_SIZE);
    if (cf_parse_size(v->exp, &n) < 0)
        log_fatal("%s: bad size value for parameter %s: %s", cf_where(cf, i),
                  name, v->exp);
    return n;
}

char *const *
cf_list(const struct cf *cf, const char *name)
{
    size_t i;
    struct cf_val *v = cf_get(cf, name, &i);
    struct buf *err;

    if (cf_params[i].type != CF_LIST && cf_params[i].type != CF_MAP)
        cf_want(i, CF_LIST);
    if (v->list == NULL) {
        err = buf_new(128, BUF_NOCAP);
        if (cf_check_type((struct cf *) cf, i, err) < 0)
            log_fatal("%s", buf_data(err));
        buf_free(err);
    }
    return v->list;
}

void
cf_inet_protocols(const struct cf *cf, int *v4, int *v6)
{
    char *const *protos = cf_list(cf, "inet_protocols");

    *v4 = *v6 = 0;
    for (size_t i = 0; protos[i]; i++) {
        if (strcasecmp(protos[i], "all") == 0)
            *v4 = *v6 = 1;
        else if (strcasecmp(protos[i], "ipv4") == 0)
            *v4 = 1;
        else if (strcasecmp(protos[i], "ipv6") == 0)
            *v6 = 1;
    }
    if (!*v4 && !*v6)
        *v4 = *v6 = 1;
}

int
cf_is_set(const struct cf *cf, const char *name)
{
    return cf->val[cf_index(name)].raw != NULL;
}

static size_t
cf_later_one(const struct cf *cf, const struct cf *base, struct buf *out)
{
    char shown[256];
    size_t i, n = 0;

    for (i = 0; cf_params[i].name; i++) {
        const struct cf_val *v = &cf->val[i];

        if (cf_params[i].later == 2) {
            /* works in main.cf; a service's -o that differs (even one
             * back to the default, "-o smtpd_milters=") does not */
            const char *b = base ? base->val[i].raw : NULL;

            if (base == NULL || v->raw == NULL
                || strcmp(v->raw, b ? b : cf->defs[i]) == 0)
                continue;
            buf_printf(out,
                       "%s: %s = %s: not implemented per service in this "
                       "Sluice yet; main.cf's value applies to every "
                       "service\n",
                       cf_where(cf, i), cf_params[i].name,
                       cf_shown(v->raw, shown, sizeof(shown)));
            n++;
            continue;
        }
        if (!cf_params[i].later || v->raw == NULL
            || strcmp(v->raw, cf->defs[i]) == 0)
            continue;
        if (base && base->val[i].raw && strcmp(base->val[i].raw, v->raw) == 0)
            continue;
        buf_printf(out,
                   "%s: %s = %s: not implemented in this Sluice yet; the "
                   "setting has no effect\n",
                   cf_where(cf, i), cf_params[i].name,
                   cf_shown(v->raw, shown, sizeof(shown)));
        n++;
    }
    return n;
}

/* Does text refer to name ($name, ${name...}, $(name...))? */
static int
cf_refers(const char *text, const char *name)
{
    size_t nl = strlen(name);

    for (const char *p = text ? strchr(text, '$') : NULL; p;
         p = strchr(p + 1, '$')) {
        const char *q = p + 1;

        if (*q == '{' || *q == '(')
            q++;
        if (strncmp(q, name, nl) == 0 && !cf_isname((unsigned char) q[nl]))
            return 1;
    }
    return 0;
}

/* Is name referred to by a value of cf (its parameters' and its own
 * parameters')? */
static int
cf_referred(const struct cf *cf, const char *name)
{
    for (size_t i = 0; i < cf->n; i++)
        if (cf_refers(cf->val[i].raw ? cf->val[i].raw : cf->defs[i], name))
            return 1;
    for (size_t i = 0; i < cf->nuser; i++)
        if (cf_refers(cf->user[i].raw, name))
            return 1;
    return 0;
}

/* User-defined parameters that no value refers to (in main.cf or a
 * service): Postfix's postconf warning. */
static size_t
cf_unused(const struct cf *cf, const struct cf *in, const struct cf *base,
          const struct cf_service *svcs, size_t nsvcs, struct buf *out)
{
    char shown[256];
    size_t n = 0;

    for (size_t i = 0; i < in->nuser; i++) {
        const struct cf_user *u = &in->user[i], *b;
        int used = cf_referred(cf, u->name);

        /* a service's copy of main.cf's: said once, for main.cf */
        if (base && (b = cf_user_find(base, u->name, strlen(u->name)))
            && strcmp(b->raw, u->raw) == 0)
            continue;
        for (size_t k = 0; k < nsvcs && !used; k++)
            used = svcs[k].cf && cf_referred(svcs[k].cf, u->name);
        if (used)
            continue;
        buf_printf(out, "%s: unused parameter: %s=%s\n",
                   u->where ? u->where : "main.cf", u->name,
                   cf_shown(u->raw, shown, sizeof(shown)));
        n++;
    }
    return n;
}

size_t
cf_later(const struct cf *cf, const struct cf_service *svcs, size_t nsvcs,
         struct buf *out)
{
    size_t i, n = cf_later_one(cf, NULL, out);

    n += cf_unused(cf, cf, NULL, svcs, nsvcs, out);
    for (i = 0; i < nsvcs; i++)
        if (svcs[i].cf) {
            n += cf_later_one(svcs[i].cf, cf, out);
            n += cf_unused(svcs[i].cf, svcs[i].cf, cf, svcs, nsvcs, out);
        }
    return n;
}

const char *
cf_raw(const struct cf *cf, const char *name)
{
    size_t i = cf_index(name);

    return cf->val[i].raw ? cf->val[i].raw : cf->defs[i];
}

/* ---- cf_show ---- */

static int
cf_show_one(const struct cf *cf, enum cf_show mode, size_t i, struct buf *out)
{
    const char *v = NULL;

    switch (mode) {
    case CF_SHOW_ALL:
        v = cf->val[i].raw;
        if (v == NULL && i == cf_index("mydomain")) {
            struct cf_xctx x = {.cf = (struct cf *) cf};

            v = cf_xparam(&x, i); /* computed from myhostname */
        }
        if (v == NULL)
            v = cf->defs[i];
        break;
    case CF_SHOW_SET:
        v = cf->val[i].raw;
        if (v == NULL)
            return 0;
        break;
    case CF_SHOW_DEFAULT:
        v = cf->defs[i];
        break;
    }
    if (*v == '\0')
        return buf_printf(out, "%s =\n", cf_params[i].name);
    return buf_printf(out, "%s = %s\n", cf_params[i].name, v);
}

int
cf_show(const struct cf *cf, enum cf_show mode, char *const *names,
        struct buf *out, struct buf *err)
{
    char shown[CF_SHOWN_MAX];

    if (names != NULL) {
        for (char *const *n = names; *n; n++) {
            if (cf_param_find(*n) == NULL
                && (mode == CF_SHOW_DEFAULT
                    || cf_user_find(cf, *n, strlen(*n)) == NULL)) {
                cf_err(err, "unknown parameter \"%s\"",
                       cf_shown(*n, shown, sizeof(shown)));
                return -1;
            }
        }
        for (char *const *n = names; *n; n++) {
            const struct cf_user *u = cf_user_find(cf, *n, strlen(*n));

            if (cf_param_find(*n) == NULL) {
                if (buf_printf(out, "%s = %s\n", u->name, u->raw) < 0)
                    goto toolong;
            } else if (cf_show_one(cf, mode, cf_index(*n), out) < 0) {
                goto toolong;
            }
        }
        return 0;
    }
    for (size_t i = 0; i < cf->n; i++) {
        if (cf_show_one(cf, mode, i, out) < 0)
            goto toolong;
    }
    /* the operator's own parameters (not in -d: they have no default) */
    for (size_t i = 0; i < cf->nuser && mode != CF_SHOW_DEFAULT; i++)
        if (buf_printf(out, "%s = %s\n", cf->user[i].name, cf->user[i].raw) < 0)
            goto toolong;
    return 0;
toolong:
    cf_err(err, "output too long");
    return -1;
}

/* ---- cf_load ---- */

static const char cf_default_master[] =
    "smtp      inet  n       -       n       -       -       smtpd\n";

struct cf *
cf_load(const char *dir, struct cf_service **svcs, size_t *nsvcs,
        struct buf *err)
{
    struct cf *cf = cf_new();
    struct buf *path = buf_new(256, BUF_NOCAP);
    size_t i = cf_index("config_directory");

    *svcs = NULL;
    *nsvcs = 0;
    free(cf->defs[i]);
    cf->defs[i] = xstrdup(dir);
    buf_printf(path, "%s/main.cf", dir);
    if (access(buf_data(path), F_OK) == 0 || errno != ENOENT) {
        if (cf_load_main(cf, buf_data(path), err) < 0)
            goto fail;
    }
    if (cf_check(cf, err) < 0)
        goto fail;
    buf_reset(path);
    buf_printf(path, "%s/master.cf", dir);
    if (access(buf_data(path), F_OK) == 0 || errno != ENOENT) {
        if (cf_load_master(cf, buf_data(path), svcs, nsvcs, err) < 0)
            goto fail;
    } else if (cf_parse_master(cf, cf_default_master,
                               sizeof(cf_default_master) - 1, "master.cf", svcs,
                               nsvcs, err)
               < 0) {
        goto fail;
    }
    buf_free(path);
    return cf;
fail:
    buf_free(path);
    cf_free(cf);
    return NULL;
}
