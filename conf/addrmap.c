/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * addrmap.c - address rewriting through tables (see addrmap.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/addrmap.h"
#include "conf/lookup.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define ADDRMAP_VALUE_MAX 65536 /* bytes of one table value */

struct addrmap {
    struct addrmap_opts o;
    struct lookup_table **t;
    size_t n;
};

struct addrmap *
addrmap_new(char *const *specs, const struct addrmap_opts *o, struct buf *err)
{
    struct addrmap *m = xcalloc(1, sizeof(*m));
    size_t k = 0;

    while (specs && specs[k])
        k++;
    m->t = xcalloc(k + 1, sizeof(*m->t));
    m->o = *o;
    m->o.title = xstrdup(o->title ? o->title : "");
    m->o.myorigin = xstrdup(o->myorigin ? o->myorigin : "localhost");
    m->o.delim = xstrdup(o->delim ? o->delim : "");
    for (size_t i = 0; i < k; i++) {
        struct buf *e = buf_new(128, 4096);

        if ((m->t[m->n] = lookup_open(specs[i], e)) == NULL) {
            buf_printf(err, "%s: %s: %s", m->o.title, specs[i], buf_data(e));
            buf_free(e);
            addrmap_free(m);
            return NULL;
        }
        buf_free(e);
        m->n++;
    }
    return m;
}

void
addrmap_free(struct addrmap *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        lookup_free(m->t[i]);
    free(m->t);
    free((char *) m->o.title);
    free((char *) m->o.myorigin);
    free((char *) m->o.delim);
    free(m);
}

int
addrmap_empty(const struct addrmap *m)
{
    return m == NULL || m->n == 0;
}

/* One key in every table: 1 (value in v), 0, -1. */
static int
am_get(const struct addrmap *m, const char *key, struct buf *v)
{
    for (size_t i = 0; i < m->n; i++) {
        int rc = lookup_get(m->t[i], key, v);

        if (rc != 0) {
            if (rc < 0)
                log_warning("%s: %s: lookup of %s failed: %s", m->o.title,
                            lookup_spec(m->t[i]), key, buf_data(v));
            return rc;
        }
    }
    return 0;
}

/* mail_addr_find: 1 with the value in v and, when it matched only
 * without the extension, the extension (with its delimiter) in *ext;
 * 0; -1. */
static int
am_find(const struct addrmap *m, const char *addr, struct buf *v, char **ext)
{
    const char *at = strrchr(addr, '@');
    size_t lpl = at ? (size_t) (at - addr) : strlen(addr), base = lpl;
    const char *dom = at ? at + 1 : "";
    struct buf *k = buf_new(256, BUF_NOCAP);
    int rc, ours;

    *ext = NULL;
    if (*m->o.delim && lpl > 0) {
        size_t cut = strcspn(addr, m->o.delim);

        if (cut > 0 && cut < lpl)
            base = cut;
    }
    if ((rc = am_get(m, addr, v)) != 0)
        goto out;
    if (base < lpl) {
        buf_printf(k, "%.*s%s", (int) base, addr, at ? at : "");
        if ((rc = am_get(m, buf_data(k), v)) != 0) {
            if (rc > 0)
                *ext = xmemdup(addr + base, lpl - base);
            goto out;
        }
    }
    ours = at == NULL || lookup_dlist_match(m->o.ours, dom) > 0;
    if (ours && at) {
        buf_reset(k);
        buf_printf(k, "%.*s", (int) lpl, addr);
        if ((rc = am_get(m, buf_data(k), v)) != 0)
            goto out;
        if (base < lpl) {
            buf_reset(k);
            buf_printf(k, "%.*s", (int) base, addr);
            if ((rc = am_get(m, buf_data(k), v)) != 0) {
                if (rc > 0)
                    *ext = xmemdup(addr + base, lpl - base);
                goto out;
            }
        }
    }
    if (at && at[1] != '\0') {
        buf_reset(k);
        buf_printf(k, "@%s", dom);
        rc = am_get(m, buf_data(k), v);
    }
out:
    buf_free(k);
    return rc;
}

int
addrmap_listed(const struct addrmap *m, const char *addr)
{
    struct buf *v;
    char *ext = NULL;
    int rc;

    if (addrmap_empty(m) || addr == NULL || *addr == '\0')
        return 0;
    v = buf_new(128, ADDRMAP_VALUE_MAX);
    rc = am_find(m, addr, v, &ext);
    free(ext);
    buf_free(v);
    return rc;
}

/* The value's addresses, completed, appended to *list. */
static void
am_crunch(const struct addrmap *m, const char *addr, const char *value,
          const char *ext, char ***list, size_t *n)
{
    const char *p = value;
    struct buf *b = buf_new(256, BUF_NOCAP);

    while (*p) {
        size_t len;
        const char *w, *wat;

        p += strspn(p, ", \t\r\n");
        if (*p == '\0')
            break;
        len = strcspn(p, ", \t\r\n");
        w = p;
        p += len;
        if (len >= 2 && w[0] == '<' && w[len - 1] == '>')
            w++, len -= 2;
        if (len == 0)
            continue;
        buf_reset(b);
        wat = memchr(w, '@', len);
        if (wat == w) { /* "@domain": the address's user there */
            const char *at = strrchr(addr, '@');
            size_t ul = at ? (size_t) (at - addr) : strlen(addr);

            if (ext && strlen(ext) <= ul)
                ul -= strlen(ext);
            buf_printf(b, "%.*s%.*s", (int) ul, addr, (int) len, w);
        } else {
            const char *last = w;

            for (const char *q = w; q < w + len; q++)
                if (*q == '@')
                    last = q;
            if (wat == NULL)
                last = w + len;
            buf_printf(b, "%.*s%s%.*s", (int) (last - w), w,
                       ext && m->o.propagate ? ext : "", (int) (w + len - last),
                       last);
            if (wat == NULL)
                buf_printf(b, "@%s", m->o.myorigin);
        }
        *list = xrealloc(*list, (*n + 2) * sizeof(char *));
        (*list)[(*n)++] = xstrdup(buf_data(b));
        (*list)[*n] = NULL;
    }
    buf_free(b);
}

static int
am_seen(char **seen, size_t nseen, const char *a)
{
    for (size_t i = 0; i < nseen; i++)
        if (strcasecmp(seen[i], a) == 0)
            return 1;
    return 0;
}

static void
am_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int
addrmap_expand(const struct addrmap *m, const char *addr, char ***out,
               size_t *n, struct buf *err)
{
    char **v = xcalloc(2, sizeof(char *)), **seen = NULL;
    size_t nv = 1, nseen = 0;
    struct buf *val = NULL;
    int rc = 0;

    v[0] = xstrdup(addr);
    if (addrmap_empty(m))
        goto done;
    val = buf_new(128, ADDRMAP_VALUE_MAX);
    for (size_t arg = 0; arg < nv && rc == 0; arg++) {
        if (nv > m->o.expansion_limit) {
            buf_printf(err, "unreasonable %s map expansion size for %s",
                       m->o.title, addr);
            rc = -1;
            break;
        }
        for (size_t count = 0;; count++) {
            char *ext = NULL, **res = NULL, *lhs;
            size_t nres = 0;
            int found;

            if (am_seen(seen, nseen, v[arg]))
                break;
            if (count >= m->o.recursion_limit) {
                buf_printf(err, "unreasonable %s map nesting for %s",
                           m->o.title, addr);
                rc = -1;
                break;
            }
            buf_reset(val);
            found = am_find(m, v[arg], val, &ext);
            if (found < 0) {
                buf_printf(err, "%s map lookup problem for %s", m->o.title,
                           addr);
                free(ext);
                rc = -1;
                break;
            }
            if (found == 0) {
                free(ext);
                break;
            }
            am_crunch(m, v[arg], buf_data(val), ext, &res, &nres);
            free(ext);
            if (nres == 0) {
                buf_printf(err,
                           "%s lookup of %s returns non-address result "
                           "\"%.100s\"",
                           m->o.title, v[arg], buf_data(val));
                rc = -1;
                break;
            }
            lhs = v[arg];
            for (size_t i = 0; i < nres && rc == 0; i++) {
                if (strlen(res[i]) > m->o.addrlen_limit) {
                    buf_printf(err, "unreasonable %s result %.300s...",
                               m->o.title, res[i]);
                    rc = -1;
                    break;
                }
                /* an address may expand into itself once */
                if (strcasecmp(lhs, res[i]) == 0
                    && !am_seen(seen, nseen, lhs)) {
                    seen = xrealloc(seen, (nseen + 1) * sizeof(char *));
                    seen[nseen++] = xstrdup(lhs);
                }
            }
            if (rc < 0) {
                am_strv_free(res, nres);
                break;
            }
            free(lhs);
            v[arg] = res[0];
            v = xrealloc(v, (nv + nres) * sizeof(char *));
            for (size_t i = 1; i < nres; i++)
                v[nv++] = res[i];
            v[nv] = NULL;
            free(res);
            if (nv > m->o.expansion_limit)
                break; /* said at the top of the next round */
        }
    }
    if (rc == 0 && nv > m->o.expansion_limit) {
        buf_printf(err, "unreasonable %s map expansion size for %s", m->o.title,
                   addr);
        rc = -1;
    }
done:
    buf_free(val);
    am_strv_free(seen, nseen);
    if (rc < 0) {
        am_strv_free(v, nv);
        *out = NULL;
        *n = 0;
        return -1;
    }
    *out = v;
    *n = nv;
    return 0;
}
