/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_alias.c - alias expansion for the local delivery agent (see
 * dlv_alias.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/lookup.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/dlv_alias.h"

#define ALIAS_VALUE_MAX 65536 /* bytes of one alias value */

struct alias_st {
    const struct dlv_alias_opts *o;
    char *const *delivered;
    size_t ndelivered;
    char **visited; /* lower-case alias names already expanded */
    size_t nvisited;
    struct dlv_alias_target *v;
    size_t n;
    char *dsn;
    struct buf *text;
};

static char *
al_lower(const char *s, size_t n)
{
    char *l = xmemdup(s, n);

    for (size_t i = 0; i < n; i++)
        l[i] = (char) tolower((unsigned char) l[i]);
    return l;
}

static enum dlv_alias_result al_fail(struct alias_st *st,
                                     enum dlv_alias_result r, const char *dsn,
                                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum dlv_alias_result
al_fail(struct alias_st *st, enum dlv_alias_result r, const char *dsn,
        const char *fmt, ...)
{
    va_list ap;

    snprintf(st->dsn, 16, "%s", dsn);
    buf_reset(st->text);
    va_start(ap, fmt);
    buf_vprintf(st->text, fmt, ap);
    va_end(ap);
    return r;
}

static enum dlv_alias_result
al_add(struct alias_st *st, enum dlv_alias_kind k, const char *what,
       size_t wlen, const char *via)
{
    struct dlv_alias_target *t;

    for (size_t i = 0; i < st->n; i++) /* each target once */
        if (st->v[i].kind == k && strlen(st->v[i].what) == wlen
            && (k == DLV_ALIAS_COMMAND || k == DLV_ALIAS_FILE
                    ? strncmp(st->v[i].what, what, wlen)
                    : strncasecmp(st->v[i].what, what, wlen))
                   == 0)
            return DLV_ALIAS_OK;
    if (st->n >= DLV_ALIAS_TARGETS)
        return al_fail(st, DLV_ALIAS_BOUNCE, "5.4.6",
                       "alias expansion of more than %d addresses",
                       DLV_ALIAS_TARGETS);
    st->v = xrealloc(st->v, (st->n + 1) * sizeof(*st->v));
    t = &st->v[st->n++];
    memset(t, 0, sizeof(*t));
    t->kind = k;
    t->what = xmemdup(what, wlen);
    t->via = via ? xstrdup(via) : NULL;
    if (k == DLV_ALIAS_MAILBOX) {
        size_t ul = wlen;

        for (size_t i = 0; i < wlen; i++) /* up to the last '@' */
            if (what[i] == '@')
                ul = i;
        if (*st->o->delim) {
            size_t cut = strcspn(what, st->o->delim);

            if (cut > 0 && cut < ul)
                ul = cut;
        }
        t->user = al_lower(what, ul);
    }
    return DLV_ALIAS_OK;
}

static enum dlv_alias_result al_addr(struct alias_st *st, const char *addr,
                                     const char *via, int depth);

/* One alias's value (or an :include: file's text): its items. */
static enum dlv_alias_result
al_items(struct alias_st *st, const char *addr, const char *value,
         const char *ext, int depth, int include)
{
    const char *p = value;
    struct buf *item = buf_new(256, ALIAS_VALUE_MAX);
    enum dlv_alias_result r = DLV_ALIAS_OK;

    while (r == DLV_ALIAS_OK && *p) {
        int q = 0;
        const char *w;

        p += strspn(p, ", \t\r\n");
        if (*p == '\0')
            break;
        buf_reset(item);
        while (*p && (q || strchr(", \t\r\n", *p) == NULL)) {
            if (*p == '"')
                q = !q;
            else if (*p == '\\' && q && p[1])
                buf_putc(item, *++p);
            else
                buf_putc(item, *p);
            p++;
        }
        w = buf_data(item);
        if (buf_len(item) >= 2 && w[0] == '<' && w[buf_len(item) - 1] == '>') {
            buf_truncate(item, buf_len(item) - 1);
            w = buf_data(item) + 1;
        }
        if (*w == '\0')
            continue;
        if (*w == '|') {
            if (!(include ? st->o->cmd_include : st->o->cmd_alias))
                r = al_fail(st, DLV_ALIAS_BOUNCE, "5.7.1",
                            "mail to command is restricted");
            else
                r = al_add(st, DLV_ALIAS_COMMAND, w + 1, strlen(w + 1), addr);
        } else if (*w == '/') {
            if (!(include ? st->o->file_include : st->o->file_alias))
                r = al_fail(st, DLV_ALIAS_BOUNCE, "5.7.1",
                            "mail to file is restricted");
            else
                r = al_add(st, DLV_ALIAS_FILE, w, strlen(w), addr);
        } else if (strncasecmp(w, ":include:", 9) == 0) {
            const char *path = w + 9;
            FILE *f;
            struct buf *text;
            char chunk[4096];
            size_t got;

            if (*path != '/') {
                r = al_fail(st, DLV_ALIAS_BOUNCE, "5.3.5",
                            ":include:%s is not an absolute path", path);
                continue;
            }
            if ((f = fopen(path, "r")) == NULL) {
                r = al_fail(st, DLV_ALIAS_DEFER, "4.3.0",
                            "cannot open include file %s: %s", path,
                            strerror(errno));
                continue;
            }
            text = buf_new(4096, DLV_ALIAS_INCLUDE);
            while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
                if (buf_append(text, chunk, got) < 0)
                    break;
            if (ferror(f) || !feof(f))
                r = al_fail(st, DLV_ALIAS_DEFER, "4.3.0",
                            "cannot read include file %s: %s", path,
                            ferror(f) ? strerror(errno) : "too large");
            fclose(f);
            if (r == DLV_ALIAS_OK) {
                /* '#' lines are comments */
                char *t = buf_data(text);

                for (char *h = t; (h = strchr(h, '#')) != NULL;)
                    if (h == t || h[-1] == '\n')
                        while (*h && *h != '\n')
                            *h++ = ' ';
                    else
                        h++;
                r = al_items(st, addr, t, NULL, depth + 1, 1);
            }
            buf_free(text);
        } else {
            struct buf *a = buf_new(256, BUF_NOCAP);
            const char *at = strrchr(w, '@');

            if (at == NULL)
                buf_printf(a, "%s%s@%s", w, ext ? ext : "", st->o->myorigin);
            else
                buf_printf(a, "%.*s%s%s", (int) (at - w), w, ext ? ext : "",
                           at);
            r = al_addr(st, buf_data(a), addr, depth + 1);
            buf_free(a);
        }
    }
    buf_free(item);
    return r;
}

/* Look the local part up (with the extension, then without): 1 with the
 * value in v and the extension cut off in *ext, 0, -1. */
static int
al_lookup(const struct alias_st *st, const char *lp, size_t lpl, struct buf *v,
          char **ext)
{
    const struct dlv_alias_opts *o = st->o;
    size_t base = lpl;
    char *key;
    int rc = 0;

    *ext = NULL;
    if (*o->delim) {
        size_t cut = strcspn(lp, o->delim);

        if (cut > 0 && cut < lpl)
            base = cut;
    }
    key = al_lower(lp, lpl);
    for (size_t i = 0; i < o->nmaps && rc == 0; i++)
        rc = lookup_get(o->maps[i], key, v);
    if (rc == 0 && base < lpl) {
        key[base] = '\0';
        for (size_t i = 0; i < o->nmaps && rc == 0; i++)
            rc = lookup_get(o->maps[i], key, v);
        if (rc > 0)
            *ext = xmemdup(lp + base, lpl - base);
    }
    free(key);
    return rc;
}

static enum dlv_alias_result
al_addr(struct alias_st *st, const char *addr, const char *via, int depth)
{
    const char *at = strrchr(addr, '@');
    size_t lpl = at ? (size_t) (at - addr) : strlen(addr);
    struct buf *v;
    char *ext = NULL, *low;
    enum dlv_alias_result r;
    int rc;

    if (depth > DLV_ALIAS_DEPTH)
        return al_fail(st, DLV_ALIAS_BOUNCE, "5.4.6",
                       "alias database loop for %s", addr);
    for (size_t i = 0; i < st->ndelivered; i++)
        if (strcasecmp(st->delivered[i], addr) == 0)
            return al_fail(st, DLV_ALIAS_BOUNCE, "5.4.6",
                           "mail forwarding loop for %s", addr);
    if (at && at[1] && lookup_dlist_match(st->o->mydest, at + 1) <= 0)
        return al_add(st, DLV_ALIAS_FORWARD, addr, strlen(addr), via);
    /* our domains share one alias name space: the local part */
    low = al_lower(addr, lpl);
    for (size_t i = 0; i < st->nvisited; i++)
        if (strcmp(st->visited[i], low) == 0) {
            free(low);
            return al_add(st, DLV_ALIAS_MAILBOX, addr, strlen(addr), via);
        }
    if (lpl == 0) {
        free(low);
        return al_add(st, DLV_ALIAS_MAILBOX, addr, strlen(addr), via);
    }
    v = buf_new(128, ALIAS_VALUE_MAX);
    rc = al_lookup(st, addr, lpl, v, &ext);
    if (rc < 0) {
        r = al_fail(st, DLV_ALIAS_DEFER, "4.3.0",
                    "alias_maps lookup of %.*s failed: %s", (int) lpl, addr,
                    buf_data(v));
    } else if (rc == 0) {
        r = al_add(st, DLV_ALIAS_MAILBOX, addr, strlen(addr), via);
    } else {
        st->visited =
            xrealloc(st->visited, (st->nvisited + 1) * sizeof(char *));
        st->visited[st->nvisited++] = low;
        low = NULL;
        r = al_items(st, addr, buf_data(v), st->o->propagate ? ext : NULL,
                     depth, 0);
    }
    free(low);
    free(ext);
    buf_free(v);
    return r;
}

enum dlv_alias_result
dlv_alias_expand(const struct dlv_alias_opts *o, const char *rcpt,
                 char *const *delivered, size_t ndelivered,
                 struct dlv_alias_target **out, size_t *n, char dsn[16],
                 struct buf *text)
{
    struct alias_st st;
    enum dlv_alias_result r;

    memset(&st, 0, sizeof(st));
    st.o = o;
    st.delivered = delivered;
    st.ndelivered = ndelivered;
    st.dsn = dsn;
    st.text = text;
    *dsn = '\0';
    r = al_addr(&st, rcpt, NULL, 0);
    if (r == DLV_ALIAS_OK && st.n == 0) /* an empty value: keep the mail */
        r = al_fail(&st, DLV_ALIAS_DEFER, "4.3.5",
                    "alias expansion of %s gives no address (alias_maps; "
                    "/dev/null discards)",
                    rcpt);
    for (size_t i = 0; i < st.nvisited; i++)
        free(st.visited[i]);
    free(st.visited);
    if (r != DLV_ALIAS_OK) {
        dlv_alias_free(st.v, st.n);
        *out = NULL;
        *n = 0;
        return r;
    }
    *out = st.v;
    *n = st.n;
    return r;
}

void
dlv_alias_free(struct dlv_alias_target *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].what);
        free(v[i].user);
        free(v[i].via);
    }
    free(v);
}

size_t
dlv_alias_delivered(const char *head, size_t len, char ***out)
{
    const char *p = head, *end = head + len;
    char **v = NULL;
    size_t n = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        const char *le = nl ? nl : end;

        if (le == p || (le == p + 1 && *p == '\r'))
            break; /* the end of the header */
        if (le - p > 13 && strncasecmp(p, "Delivered-To:", 13) == 0) {
            const char *s = p + 13, *e = le;

            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            while (e > s && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (e > s && n < DLV_ALIAS_TARGETS) {
                v = xrealloc(v, (n + 2) * sizeof(char *));
                v[n++] = xmemdup(s, (size_t) (e - s));
                v[n] = NULL;
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (v == NULL)
        v = xcalloc(1, sizeof(char *));
    *out = v;
    return n;
}
