/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lookup.c - network lists (mynetworks), domain lists (mydestination,
 * relay_domains) and lookup tables (inline:, texthash:, static:, and
 * hash: and btree:, the Berkeley DB files postmap makes, read whole at
 * open into the same sorted array).
 * A network entry is an address with a prefix length; as in Postfix an
 * entry with host bits set past the mask is an error, and "!entry" negates
 * (the first matching entry decides). A table is a sorted array of
 * lower-cased keys, searched by bisection; a duplicate key keeps the first
 * value, as postmap does.
 * Owns: copies of everything it is given. Threads: read-only after _new.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <regex.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <db.h>

#include "conf/cf_file.h"
#include "conf/lookup.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define LOOKUP_FILE_MAX  (64 * 1024 * 1024) /* bytes in a texthash file */
#define LOOKUP_LINE_MAX  65536
#define LOOKUP_SHOWN_MAX 200

/* ---- network lists ---- */

struct lookup_net_entry {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network address, host bits zero */
    int bits;               /* prefix length */
    int negate;             /* "!entry" */
};

struct lookup_net {
    struct lookup_net_entry *e;
    size_t n;
};

static const char *
lookup_shown(const char *s, char *out, size_t outsz)
{
    return log_safe(s, strlen(s), out, outsz);
}

static int
lookup_prefix_match(const unsigned char *a, const unsigned char *net, int bits)
{
    int full = bits / 8, rest = bits % 8;

    if (memcmp(a, net, (size_t) full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char) (0xff << (8 - rest));
    return (a[full] & mask) == net[full];
}

/* Parse one entry into e: 0, or -1 with a reason in why. */
static int
lookup_net_parse(const char *s, struct lookup_net_entry *e, const char **why)
{
    char buf[128], *slash, *addr;
    size_t alen;
    int maxbits;

    memset(e, 0, sizeof(*e));
    if (*s == '!') {
        e->negate = 1;
        s++;
    }
    if (strlen(s) >= sizeof(buf)) {
        *why = "too long";
        return -1;
    }
    snprintf(buf, sizeof(buf), "%s", s);
    slash = strchr(buf, '/');
    if (slash)
        *slash++ = '\0';
    addr = buf;
    alen = strlen(addr);
    if (addr[0] == '[') {
        if (alen < 3 || addr[alen - 1] != ']') {
            *why = "missing ']'";
            return -1;
        }
        addr[alen - 1] = '\0';
        addr++;
        if (inet_pton(AF_INET6, addr, e->addr) != 1) {
            *why = "not an IPv6 address";
            return -1;
        }
        e->family = AF_INET6;
    } else if (inet_pton(AF_INET, addr, e->addr) == 1) {
        e->family = AF_INET;
    } else if (inet_pton(AF_INET6, addr, e->addr) == 1) {
        e->family = AF_INET6;
    } else {
        *why = "not a numeric address (host names and tables are not "
               "supported here)";
        return -1;
    }
    maxbits = e->family == AF_INET ? 32 : 128;
    e->bits = maxbits;
    if (slash != NULL) {
        char *end;
        long b;

        if (!isdigit((unsigned char) *slash)) {
            *why = "bad prefix length";
            return -1;
        }
        errno = 0;
        b = strtol(slash, &end, 10);
        if (*end != '\0' || errno != 0 || b < 0 || b > maxbits) {
            *why = "bad prefix length";
            return -1;
        }
        e->bits = (int) b;
    }
    for (int i = e->bits; i < maxbits; i++) {
        if (e->addr[i / 8] & (0x80 >> (i % 8))) {
            *why = "non-zero host bits after the prefix";
            return -1;
        }
    }
    return 0;
}

struct lookup_net *
lookup_net_new(char *const *list, struct buf *err)
{
    struct lookup_net *n = xcalloc(1, sizeof(*n));
    size_t cnt = 0;

    while (list && list[cnt])
        cnt++;
    n->e = xcalloc(cnt ? cnt : 1, sizeof(*n->e));
    for (size_t i = 0; i < cnt; i++) {
        const char *why = NULL;
        char shown[LOOKUP_SHOWN_MAX];

        if (lookup_net_parse(list[i], &n->e[i], &why) < 0) {
            if (err) {
                buf_reset(err);
                buf_printf(err, "bad network entry: \"%s\": %s",
                           lookup_shown(list[i], shown, sizeof(shown)), why);
            }
            lookup_net_free(n);
            return NULL;
        }
        n->n++;
    }
    return n;
}

int
lookup_net_match(const struct lookup_net *n, const struct sockaddr *sa)
{
    unsigned char a[16];
    int family;

    if (n == NULL || sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        family = AF_INET;
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 =
            &((const struct sockaddr_in6 *) sa)->sin6_addr;

        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            memcpy(a, &a6->s6_addr[12], 4);
            family = AF_INET;
        } else {
            memcpy(a, a6->s6_addr, 16);
            family = AF_INET6;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < n->n; i++) {
        const struct lookup_net_entry *e = &n->e[i];

        if (e->family == family && lookup_prefix_match(a, e->addr, e->bits))
            return !e->negate;
    }
    return 0;
}

void
lookup_net_free(struct lookup_net *n)
{
    if (n == NULL)
        return;
    free(n->e);
    free(n);
}

/* ---- domain lists ---- */

/* One plain entry e[0, elen) (no trailing dot) against domain[0, dlen):
 * "example.com" itself, ".example.com" any subdomain of it. */
static int
lookup_domain_entry(const char *e, size_t elen, const char *domain, size_t dlen)
{
    if (elen == 0)
        return 0;
    if (e[0] == '.')
        return elen > 1 && dlen > elen
               && strncasecmp(domain + dlen - elen, e, elen) == 0;
    return elen == dlen && strncasecmp(domain, e, dlen) == 0;
}

int
lookup_domain_match(char *const *list, const char *domain)
{
    size_t dlen;

    if (list == NULL || domain == NULL)
        return 0;
    dlen = strlen(domain);
    if (dlen > 0 && domain[dlen - 1] == '.')
        dlen--;
    if (dlen == 0)
        return 0;
    for (char *const *l = list; *l; l++) {
        const char *e = *l;
        size_t elen = strlen(e);

        if (elen > 0 && e[elen - 1] == '.')
            elen--;
        if (lookup_domain_entry(e, elen, domain, dlen))
            return 1;
    }
    return 0;
}

/* ---- lookup tables ---- */

enum lookup_type {
    LOOKUP_INLINE,
    LOOKUP_TEXTHASH,
    LOOKUP_DB, /* hash:, btree: */
    LOOKUP_STATIC,
    LOOKUP_REGEXP,
    LOOKUP_CIDR
};

/* One line of a regexp: table: a rule, "if" or "endif". */
enum lookup_re_kind {
    LOOKUP_RE_RULE,
    LOOKUP_RE_IF,
    LOOKUP_RE_ENDIF
};

struct lookup_re {
    enum lookup_re_kind kind;
    regex_t re;
    struct lookup_net_entry net; /* cidr: the network instead of re */
    int neg;                     /* "!/re/": matches when re does not */
    char *value;                 /* RULE: the result, with $1..$9 */
    size_t endif;                /* IF: the index of its ENDIF */
};

struct lookup_kv {
    char *key; /* lower case */
    char *value;
    size_t order; /* position in the source: the first duplicate wins */
};

struct lookup_table {
    enum lookup_type type;
    char *spec;
    struct lookup_kv *kv;
    size_t n, cap;
    char *value;          /* static: */
    struct lookup_re *re; /* regexp: */
    size_t nre;
};

#define LOOKUP_RE_MAX    100000 /* lines in a regexp: table */
#define LOOKUP_RE_NEST   64     /* if ... endif depth */
#define LOOKUP_RE_GROUPS 10     /* $0 .. $9 */

static void
lookup_add(struct lookup_table *t, const char *k, size_t klen, const char *v,
           size_t vlen)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->kv = xrealloc(t->kv, t->cap * sizeof(*t->kv));
    }
    t->kv[t->n].key = xmemdup(k, klen);
    for (char *p = t->kv[t->n].key; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    t->kv[t->n].value = xmemdup(v, vlen);
    t->kv[t->n].order = t->n;
    t->n++;
}

static int
lookup_kv_cmp(const void *a, const void *b)
{
    const struct lookup_kv *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void
lookup_sort(struct lookup_table *t)
{
    size_t o = 0;

    if (t->n == 0)
        return;
    qsort(t->kv, t->n, sizeof(*t->kv), lookup_kv_cmp);
    for (size_t i = 0; i < t->n; i++) { /* drop later duplicates */
        if (o > 0 && strcmp(t->kv[o - 1].key, t->kv[i].key) == 0) {
            free(t->kv[i].key);
            free(t->kv[i].value);
            continue;
        }
        t->kv[o++] = t->kv[i];
    }
    t->n = o;
}

static int
lookup_isspace(int c)
{
    return isspace((unsigned char) c);
}

#define LOOKUP_PASSWD_MAX 1000000 /* accounts in unix:passwd.byname */

/* unix:passwd.byname: the system's accounts (getpwent, every NSS source
 * that enumerates), read when the table is opened, as Postfix's values:
 * "name:passwd:uid:gid:gecos:dir:shell". */
static int
lookup_parse_passwd(struct lookup_table *t, struct buf *err)
{
    struct buf *v = buf_new(256, BUF_NOCAP);
    struct passwd *pw;
    int rc = 0;

    setpwent();
    while ((pw = getpwent()) != NULL) {
        if (t->n == LOOKUP_PASSWD_MAX) {
            buf_printf(err, "unix:passwd.byname: more than %d accounts",
                       LOOKUP_PASSWD_MAX);
            rc = -1;
            break;
        }
        if (pw->pw_name == NULL || pw->pw_name[0] == '\0')
            continue;
        buf_reset(v);
        buf_printf(v, "%s:%s:%ld:%ld:%s:%s:%s", pw->pw_name,
                   pw->pw_passwd ? pw->pw_passwd : "", (long) pw->pw_uid,
                   (long) pw->pw_gid, pw->pw_gecos ? pw->pw_gecos : "",
                   pw->pw_dir ? pw->pw_dir : "",
                   pw->pw_shell ? pw->pw_shell : "");
        lookup_add(t, pw->pw_name, strlen(pw->pw_name), buf_data(v),
                   buf_len(v));
    }
    endpwent();
    buf_free(v);
    if (rc == 0)
        lookup_sort(t);
    return rc;
}

/* inline:{ key=value, { key = value with spaces }, ... } */
static int
lookup_parse_inline(struct lookup_table *t, const char *s, struct buf *err)
{
    char shown[LOOKUP_SHOWN_MAX];
    const char *end;
    size_t len;

    while (lookup_isspace(*s))
        s++;
    len = strlen(s); /* after the leading space: s[len - 1] is in bounds */
    while (len > 0 && lookup_isspace(s[len - 1]))
        len--;
    if (*s != '{' || len < 2 || s[len - 1] != '}') {
        buf_printf(err,
                   "bad inline table \"%s\": expected inline:{ key=value, "
                   "... }",
                   lookup_shown(t->spec, shown, sizeof(shown)));
        return -1;
    }
    end = s + len - 1;
    s++;
    while (s < end) {
        const char *start, *eq, *k, *ke, *v, *ve;
        int braced = 0;

        while (s < end && (*s == ',' || lookup_isspace(*s)))
            s++;
        if (s >= end)
            break;
        if (*s == '{') {
            braced = 1;
            start = ++s;
            while (s < end && *s != '}')
                s++;
            if (s >= end) {
                buf_printf(err, "bad inline table \"%s\": missing '}'",
                           lookup_shown(t->spec, shown, sizeof(shown)));
                return -1;
            }
            ve = s++;
        } else {
            start = s;
            while (s < end && *s != ',' && !lookup_isspace(*s) && *s != '{'
                   && *s != '}')
                s++;
            ve = s;
        }
        eq = memchr(start, '=', (size_t) (ve - start));
        if (eq == NULL) {
            char *ent = xmemdup(start, (size_t) (ve - start));

            buf_printf(err, "bad inline table entry \"%s\": missing '='",
                       lookup_shown(ent, shown, sizeof(shown)));
            free(ent);
            return -1;
        }
        for (k = start; k < eq && lookup_isspace(*k); k++)
            ;
        for (ke = eq; ke > k && lookup_isspace(ke[-1]); ke--)
            ;
        for (v = eq + 1; braced && v < ve && lookup_isspace(*v); v++)
            ;
        while (braced && ve > v && lookup_isspace(ve[-1]))
            ve--;
        if (ke == k) {
            buf_printf(err, "bad inline table \"%s\": empty key",
                       lookup_shown(t->spec, shown, sizeof(shown)));
            return -1;
        }
        lookup_add(t, k, (size_t) (ke - k), v, (size_t) (ve - v));
    }
    return 0;
}

/* postmap's input rules over the file at path: '#' comments and blank
 * lines are skipped, a line starting with white space continues the
 * previous one; each logical line (white space at its ends removed) goes
 * to fn, which returns 0, or -1 with why in its err. 0, or -1 with
 * "PATH:LINE: why" in err (LINE: where the logical line starts). */
static int
lookup_read_lines(const char *path,
                  int (*fn)(void *arg, const char *line, struct buf *err),
                  void *arg, struct buf *err)
{
    struct buf *line = buf_new(256, LOOKUP_LINE_MAX), *e = buf_new(128, 4096);
    size_t len, pos = 0, lineno = 0, start = 0;
    char *text = NULL;
    int r = -1;

    if (cf_read_file(path, "table", LOOKUP_FILE_MAX, &text, &len, err) < 0)
        goto done;
    for (;;) {
        const char *b = text + pos, *nl;
        size_t n = 0, i = 0;
        int more = pos < len;

        if (more) {
            nl = memchr(b, '\n', len - pos);
            n = nl ? (size_t) (nl - b) : len - pos;
            pos += n + (nl != NULL);
            lineno++;
            if (memchr(b, '\0', n) != NULL) {
                buf_printf(err, "%s:%zu: NUL character in line", path, lineno);
                goto done;
            }
            while (n > 0 && lookup_isspace(b[n - 1]))
                n--;
            while (i < n && lookup_isspace(b[i]))
                i++;
            if (i == n || b[i] == '#')
                continue;
            if (i > 0) { /* continuation */
                if (buf_len(line) == 0) {
                    buf_printf(err,
                               "%s:%zu: line starts with white space but "
                               "continues no line",
                               path, lineno);
                    goto done;
                }
                if (buf_putc(line, ' ') < 0
                    || buf_append(line, b + i, n - i) < 0)
                    goto toolong;
                continue;
            }
        }
        if (buf_len(line) > 0) {
            buf_reset(e);
            if (fn(arg, buf_data(line), e) < 0) {
                buf_printf(err, "%s:%zu: %s", path, start, buf_data(e));
                goto done;
            }
            buf_reset(line);
        }
        if (!more)
            break;
        start = lineno;
        if (buf_append(line, b + i, n - i) < 0)
            goto toolong;
    }
    r = 0;
    goto done;
toolong:
    buf_printf(err, "%s:%zu: line too long (more than %d bytes)", path, lineno,
               LOOKUP_LINE_MAX);
done:
    buf_free(line);
    buf_free(e);
    free(text);
    return r;
}

/* One logical texthash line "key value" into the table. */
static int
lookup_texthash_entry(void *arg, const char *line, struct buf *err)
{
    struct lookup_table *t = arg;
    const char *k = line, *v = k;
    size_t klen;

    while (*v && !lookup_isspace(*v))
        v++;
    klen = (size_t) (v - k);
    while (lookup_isspace(*v))
        v++;
    if (*v == '\0') {
        buf_printf(err, "expected format: key whitespace value");
        return -1;
    }
    lookup_add(t, k, klen, v, strlen(v));
    return 0;
}

/* postmap input: "key value" lines. */
static int
lookup_parse_texthash(struct lookup_table *t, const char *path, struct buf *err)
{
    if (lookup_read_lines(path, lookup_texthash_entry, t, err) < 0)
        return -1;
    lookup_sort(t);
    return 0;
}

/* Berkeley DB's own words for a failure (it prints them on standard
 * error unless told otherwise): the last one, for the error message. */
static __thread char lookup_db_msg[256];

static void
lookup_db_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
    const char *p = strstr(msg, ": ");

    /* "BDB0641 __db_meta_setup: FILE: unexpected file type or format":
     * keep what follows the file name */
    if (p && (p = strstr(p + 2, ": ")) != NULL)
        msg = p + 2;
    snprintf(lookup_db_msg, sizeof(lookup_db_msg), "%s", msg);
}

/* hash:/path or btree:/path: postmap's Berkeley DB file /path.db, read
 * whole. Postfix stores keys and values with a trailing NUL (or without,
 * postmap -N): either is taken. Keys are lower-cased as postmap does
 * (postmap -f keeps case; lookups here are case-insensitive anyway). */
static int
lookup_parse_db(struct lookup_table *t, const char *type, const char *path,
                DBTYPE dbtype, struct buf *err)
{
    struct buf *file = buf_new(256, BUF_NOCAP);
    struct stat st;
    DB *db = NULL;
    DBC *cur = NULL;
    DBT k, v;
    int rc, r = -1;

    buf_printf(file, "%s.db", path);
    if (stat(buf_data(file), &st) < 0) {
        buf_printf(err, "cannot open %s: %s (make it with: postmap %s:%s)",
                   buf_data(file), strerror(errno), type, path);
        goto done;
    }
    if (st.st_size > LOOKUP_FILE_MAX) {
        buf_printf(err, "%s: larger than %d bytes", buf_data(file),
                   LOOKUP_FILE_MAX);
        goto done;
    }
    if ((rc = db_create(&db, NULL, 0)) != 0) {
        buf_printf(err, "%s: %s", buf_data(file), db_strerror(rc));
        db = NULL;
        goto done;
    }
    lookup_db_msg[0] = '\0';
    db->set_errcall(db, lookup_db_errcall);
    rc = db->open(db, NULL, buf_data(file), NULL, dbtype, DB_RDONLY, 0);
    if (rc != 0) {
        buf_printf(err, "cannot open %s as a %s table: %s", buf_data(file),
                   type, lookup_db_msg[0] ? lookup_db_msg : db_strerror(rc));
        goto done;
    }
    if ((rc = db->cursor(db, NULL, &cur, 0)) != 0) {
        buf_printf(err, "%s: %s", buf_data(file), db_strerror(rc));
        cur = NULL;
        goto done;
    }
    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    while ((rc = cur->get(cur, &k, &v, DB_NEXT)) == 0) {
        const char *kp = k.data, *vp = v.data;
        size_t kl = k.size, vl = v.size;

        if (kl > 0 && kp[kl - 1] == '\0')
            kl--;
        if (vl > 0 && vp[vl - 1] == '\0')
            vl--;
        if (kl == 0 || memchr(kp, '\0', kl) || memchr(vp, '\0', vl)) {
            buf_printf(err, "%s: an entry with a NUL byte in its key or value",
                       buf_data(file));
            goto done;
        }
        lookup_add(t, kp, kl, vp, vl);
    }
    if (rc != DB_NOTFOUND) {
        buf_printf(err, "%s: %s", buf_data(file), db_strerror(rc));
        goto done;
    }
    lookup_sort(t);
    r = 0;
done:
    if (cur)
        cur->close(cur);
    if (db)
        db->close(db, 0);
    buf_free(file);
    return r;
}

/* How big glibc's regcomp makes a pattern, roughly: it copies the operand
 * of '+' once more and that of {m,n} up to n times, so nested or stacked
 * repetitions grow exponentially ("/a++++++++++++++++++++++++/" needs
 * gigabytes). The estimate: atoms count 1, a group the sum of what is in
 * it, a repetition multiplies its operand; one that can match nothing
 * (after '*', '?' or {0,n}) and is repeated again costs the square of
 * the factor, as its closures do ("/ /+*++++++++++++/" took 4 GB where
 * "/a++++++++++++/" takes 10 MB). Capped; LOOKUP_RE_COST_MAX is far
 * above any pattern an access or header_checks table holds. */
#define LOOKUP_RE_COST_MAX 100000.0
#define LOOKUP_RE_DEPTH    64

static double
lookup_re_cost(const char *p)
{
    double sum[LOOKUP_RE_DEPTH + 1] = {0}, last[LOOKUP_RE_DEPTH + 1] = {0};
    int empty[LOOKUP_RE_DEPTH + 1] = {0}; /* the last item can match "" */
    int d = 0;

    while (*p) {
        double f = 0;
        int nullable = 0;

        if (*p == '\\' && p[1]) {
            p += 2;
            sum[d] += last[d] = 1;
            empty[d] = 0;
            continue;
        }
        switch (*p) {
        case '[': /* a bracket expression is one atom */
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p && *p != ']') {
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    const char *e = strstr(p + 2, (char[]){p[1], ']', 0});

                    p = e ? e + 2 : p + strlen(p);
                } else {
                    p++;
                }
            }
            if (*p)
                p++;
            sum[d] += last[d] = 1;
            empty[d] = 0;
            continue;
        case '(':
            if (d == LOOKUP_RE_DEPTH)
                return LOOKUP_RE_COST_MAX + 1;
            d++;
            sum[d] = last[d] = 0;
            p++;
            continue;
        case ')':
            if (d > 0) {
                double g = sum[d] + 1;

                d--;
                sum[d] += last[d] = g;
                empty[d] = 0;
            }
            p++;
            continue;
        case '|':
            last[d] = 0;
            p++;
            continue;
        case '+':
            f = 2;
            p++;
            break;
        case '*':
        case '?':
            f = 1;
            nullable = 1;
            p++;
            break;
        case '{': {
            char *e;
            double m = strtod(p + 1, &e), n = m;

            if (*e == ',')
                n = e[1] == '}' ? m + 1 : strtod(e + 1, &e);
            f = (n > m ? n : m) + 1;
            nullable = m < 1;
            p = strchr(p, '}') ? strchr(p, '}') + 1 : p + 1;
            break;
        }
        default:
            p++;
            sum[d] += last[d] = 1;
            empty[d] = 0;
            continue;
        }
        /* a repetition of the last item: it grows by that factor (its
         * square when the item can already match nothing) */
        if (empty[d])
            f *= f;
        sum[d] += last[d] * (f - 1);
        last[d] *= f;
        empty[d] = empty[d] || nullable;
        if (sum[d] > LOOKUP_RE_COST_MAX)
            return sum[d];
    }
    for (; d > 0; d--)
        sum[d - 1] += sum[d];
    return sum[0];
}

/* "/pattern/flags" (any delimiter; a backslash escapes it) at *pp into
 * re, *pp moved past it. Flags as Postfix: i (case-insensitive, on by
 * default), x (extended syntax, on), m (multi-line, off) toggle. 0, or
 * -1 with the reason in err. */
static int
lookup_re_pattern(const char **pp, regex_t *re, struct buf *err)
{
    const char *p = *pp;
    char delim = *p++;
    int flags = REG_ICASE | REG_EXTENDED, rc;
    struct buf *pat = buf_new(64, LOOKUP_LINE_MAX);

    if (delim == '\0' || lookup_isspace(delim)) {
        buf_printf(err, "expected /pattern/");
        buf_free(pat);
        return -1;
    }
    for (; *p && *p != delim; p++) {
        if (*p == '\\' && p[1] == delim) /* the delimiter itself */
            p++;
        buf_putc(pat, *p);
    }
    if (*p != delim) {
        buf_printf(err, "missing closing '%c' of the pattern", delim);
        buf_free(pat);
        return -1;
    }
    for (p++; *p && !lookup_isspace(*p); p++) {
        if (*p == 'i')
            flags ^= REG_ICASE;
        else if (*p == 'x')
            flags ^= REG_EXTENDED;
        else if (*p == 'm')
            flags ^= REG_NEWLINE;
        else {
            buf_printf(err, "unknown pattern flag '%c' (i, x, m)", *p);
            buf_free(pat);
            return -1;
        }
    }
    if (lookup_re_cost(buf_data(pat)) > LOOKUP_RE_COST_MAX) {
        buf_printf(err, "pattern too complex (nested or stacked "
                        "repetitions)");
        buf_free(pat);
        return -1;
    }
    if ((rc = regcomp(re, buf_data(pat), flags)) != 0) {

        char why[256];

        regerror(rc, re, why, sizeof(why));
        buf_printf(err, "bad pattern: %s", why);
        buf_free(pat);
        return -1;
    }
    buf_free(pat);
    *pp = p;
    return 0;
}

/* One logical line of a regexp: table into t. */
static int
lookup_re_line(struct lookup_table *t, const char *l, size_t *stack,
               size_t *depth, struct buf *err)
{
    struct lookup_re *r;
    const char *p = l;

    if (t->nre >= LOOKUP_RE_MAX) {
        buf_printf(err, "more than %d lines", LOOKUP_RE_MAX);
        return -1;
    }
    t->re = xrealloc(t->re, (t->nre + 1) * sizeof(*t->re));
    r = &t->re[t->nre];
    memset(r, 0, sizeof(*r));
    if (strncasecmp(p, "endif", 5) == 0
        && (p[5] == '\0' || lookup_isspace(p[5]))) {
        if (*depth == 0) {
            buf_printf(err, "endif without if");
            return -1;
        }
        r->kind = LOOKUP_RE_ENDIF;
        t->re[stack[--*depth]].endif = t->nre;
        t->nre++;
        return 0;
    }
    if (strncasecmp(p, "if", 2) == 0 && lookup_isspace(p[2])) {
        r->kind = LOOKUP_RE_IF;
        for (p += 2; lookup_isspace(*p); p++)
            ;
        if (*depth >= LOOKUP_RE_NEST) {
            buf_printf(err, "if nested deeper than %d", LOOKUP_RE_NEST);
            return -1;
        }
    }
    if (*p == '!') {
        r->neg = 1;
        p++;
    }
    if (lookup_re_pattern(&p, &r->re, err) < 0)
        return -1;
    while (lookup_isspace(*p))
        p++;
    if (r->kind == LOOKUP_RE_IF) {
        if (*p != '\0') {
            buf_printf(err, "text after the if pattern");
            regfree(&r->re);
            return -1;
        }
        stack[(*depth)++] = t->nre;
    } else if (*p == '\0') {
        buf_printf(err, "expected format: /pattern/ result");
        regfree(&r->re);
        return -1;
    } else {
        r->value = xstrdup(p);
    }
    t->nre++;
    return 0;
}

/* A regexp: file being read: its if/endif stack. */
struct lookup_re_read {
    struct lookup_table *t;
    size_t stack[LOOKUP_RE_NEST];
    size_t depth;
};

static int
lookup_re_entry(void *arg, const char *line, struct buf *err)
{
    struct lookup_re_read *rd = arg;

    return lookup_re_line(rd->t, line, rd->stack, &rd->depth, err);
}

static int
lookup_parse_regexp(struct lookup_table *t, const char *path, struct buf *err)
{
    struct lookup_re_read rd;

    rd.t = t;
    rd.depth = 0;
    if (lookup_read_lines(path, lookup_re_entry, &rd, err) < 0)
        return -1;
    if (rd.depth > 0) {
        buf_printf(err, "%s: if without endif", path);
        return -1;
    }
    return 0;
}

/* The result of rule r for key with its matches: $1..$9 (and ${1}) are
 * the groups, $$ a dollar. -1 when out overflows. */
static int
lookup_re_expand(const char *v, const char *key, const regmatch_t *m,
                 struct buf *out)
{
    buf_reset(out);
    for (const char *p = v; *p; p++) {
        int g = -1;

        if (*p == '$' && p[1] == '$') {
            p++;
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            g = p[1] - '0';
            p++;
        } else if (*p == '$' && p[1] == '{' && p[2] >= '0' && p[2] <= '9'
                   && p[3] == '}') {
            g = p[2] - '0';
            p += 3;
        }

        if (g < 0) {
            if (buf_putc(out, *p) < 0)
                return -1;
        } else if (m != NULL && m[g].rm_so >= 0) {
            if (buf_append(out, key + m[g].rm_so,
                           (size_t) (m[g].rm_eo - m[g].rm_so))
                < 0)
                return -1;
        }
    }
    return 0;
}

/* One logical line of a cidr: table: "NETWORK[/PREFIX] result" (IPv6
 * with or without []), "!NETWORK result", "if [!]NETWORK", "endif". */
static int
lookup_cidr_line(struct lookup_table *t, const char *l, size_t *stack,
                 size_t *depth, struct buf *err)
{
    struct lookup_re *r;
    const char *p = l, *why = NULL;
    char net[160];
    size_t n;
    int is_if = 0;

    if (t->nre >= LOOKUP_RE_MAX) {
        buf_printf(err, "more than %d lines", LOOKUP_RE_MAX);
        return -1;
    }
    if (strncasecmp(p, "endif", 5) == 0
        && (p[5] == '\0' || lookup_isspace(p[5]))) {
        if (*depth == 0) {
            buf_printf(err, "endif without if");
            return -1;
        }
        t->re = xrealloc(t->re, (t->nre + 1) * sizeof(*t->re));
        memset(&t->re[t->nre], 0, sizeof(*t->re));
        t->re[t->nre].kind = LOOKUP_RE_ENDIF;
        t->re[stack[--*depth]].endif = t->nre;
        t->nre++;
        return 0;
    }
    if (strncasecmp(p, "if", 2) == 0 && lookup_isspace(p[2])) {
        is_if = 1;
        for (p += 2; lookup_isspace(*p); p++)
            ;
        if (*depth >= LOOKUP_RE_NEST) {
            buf_printf(err, "if nested deeper than %d", LOOKUP_RE_NEST);
            return -1;
        }
    }
    for (n = 0; p[n] && !lookup_isspace(p[n]); n++)
        ;
    if (n == 0 || n >= sizeof(net)) {
        buf_printf(err, "expected format: network/prefix result");
        return -1;
    }
    memcpy(net, p, n);
    net[n] = '\0';
    for (p += n; lookup_isspace(*p); p++)
        ;
    if (is_if ? *p != '\0' : *p == '\0') {
        buf_printf(err, is_if ? "text after the if network"
                              : "expected format: network/prefix result");
        return -1;
    }
    t->re = xrealloc(t->re, (t->nre + 1) * sizeof(*t->re));
    r = &t->re[t->nre];
    memset(r, 0, sizeof(*r));
    if (lookup_net_parse(net, &r->net, &why) < 0) {
        buf_printf(err, "bad network \"%s\": %s", net, why);
        return -1;
    }
    r->neg = r->net.negate;
    if (is_if) {
        r->kind = LOOKUP_RE_IF;
        stack[(*depth)++] = t->nre;
    } else {
        r->kind = LOOKUP_RE_RULE;
        r->value = xstrdup(p);
    }
    t->nre++;
    return 0;
}

static int
lookup_cidr_entry(void *arg, const char *line, struct buf *err)
{
    struct lookup_re_read *rd = arg;

    return lookup_cidr_line(rd->t, line, rd->stack, &rd->depth, err);
}

/* cidr: lookup: key must be a numeric address (other keys match
 * nothing); the first rule whose network holds it (or, "!", does not),
 * in file order, if/endif blocks whose condition fails skipped. */
static int
lookup_cidr_get(const struct lookup_table *t, const char *key, struct buf *out)
{
    unsigned char a[16];
    int family;

    if (inet_pton(AF_INET, key, a) == 1)
        family = AF_INET;
    else if (inet_pton(AF_INET6, key, a) == 1)
        family = AF_INET6;
    else
        return 0;
    if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((struct in6_addr *) a)) {
        memmove(a, a + 12, 4);
        family = AF_INET;
    }
    for (size_t i = 0; i < t->nre; i++) {
        const struct lookup_re *r = &t->re[i];
        int hit;

        if (r->kind == LOOKUP_RE_ENDIF)
            continue;
        hit = r->net.family == family
              && lookup_prefix_match(a, r->net.addr, r->net.bits);
        if (r->kind == LOOKUP_RE_IF) {
            if (hit == r->neg)
                i = r->endif;
            continue;
        }
        if (hit == r->neg)
            continue;
        if (buf_sets(out, r->value) < 0) {
            buf_reset(out);
            buf_puts(out, "lookup result too long");
            return -1;
        }
        return 1;
    }
    return 0;
}

/* regexp: lookup: the first rule that matches, in file order, with the
 * if/endif blocks whose condition fails skipped. */
static int
lookup_re_get(const struct lookup_table *t, const char *key, struct buf *out)
{
    regmatch_t m[LOOKUP_RE_GROUPS];

    for (size_t i = 0; i < t->nre; i++) {
        const struct lookup_re *r = &t->re[i];
        int hit;

        if (r->kind == LOOKUP_RE_ENDIF)
            continue;
        hit = regexec(&r->re, key, LOOKUP_RE_GROUPS, m, 0) == 0;
        if (r->kind == LOOKUP_RE_IF) {
            if (hit == r->neg)
                i = r->endif; /* skip the block */
            continue;
        }
        if (hit == r->neg)
            continue;
        if (lookup_re_expand(r->value, key, r->neg ? NULL : m, out) < 0) {
            buf_reset(out);
            buf_puts(out, "lookup result too long");
            return -1;
        }
        return 1;
    }
    return 0;
}

struct lookup_table *
lookup_open(const char *spec, struct buf *err)
{
    struct lookup_table *t = xcalloc(1, sizeof(*t));
    const char *colon = strchr(spec, ':');
    struct buf *e = buf_new(256, 4096);
    char shown[LOOKUP_SHOWN_MAX];

    /* proxy: is Postfix's proxymap, which shares a table between
     * processes; Sluice's tables are read into memory at start anyway */
    if (strncmp(spec, "proxy:", 6) == 0 && strchr(spec + 6, ':') != NULL) {
        struct lookup_table *in = lookup_open(spec + 6, err);

        lookup_free(t);
        buf_free(e);
        if (in) {
            free(in->spec);
            in->spec = xstrdup(spec);
        }
        return in;
    }
    t->spec = xstrdup(spec);
    if (colon == NULL || colon == spec) {
        buf_printf(e, "bad lookup table \"%s\": expected type:name",
                   lookup_shown(spec, shown, sizeof(shown)));
        goto fail;
    }
    if (strncmp(spec, "inline:", 7) == 0) {
        t->type = LOOKUP_INLINE;
        if (lookup_parse_inline(t, colon + 1, e) < 0)
            goto fail;
        lookup_sort(t);
    } else if (strncmp(spec, "texthash:", 9) == 0) {
        t->type = LOOKUP_TEXTHASH;
        if (colon[1] == '\0') {
            buf_printf(e, "bad lookup table \"%s\": missing file name",
                       lookup_shown(spec, shown, sizeof(shown)));
            goto fail;
        }
        if (lookup_parse_texthash(t, colon + 1, e) < 0)
            goto fail;
    } else if (strncmp(spec, "hash:", 5) == 0
               || strncmp(spec, "btree:", 6) == 0) {
        int hash = spec[0] == 'h';

        t->type = LOOKUP_DB;
        if (colon[1] == '\0') {
            buf_printf(e, "bad lookup table \"%s\": missing file name",
                       lookup_shown(spec, shown, sizeof(shown)));
            goto fail;
        }
        if (lookup_parse_db(t, hash ? "hash" : "btree", colon + 1,
                            hash ? DB_HASH : DB_BTREE, e)
            < 0)
            goto fail;
    } else if (strncmp(spec, "regexp:", 7) == 0) {
        t->type = LOOKUP_REGEXP;
        if (colon[1] == '\0') {
            buf_printf(e, "bad lookup table \"%s\": missing file name",
                       lookup_shown(spec, shown, sizeof(shown)));
            goto fail;
        }
        if (lookup_parse_regexp(t, colon + 1, e) < 0)
            goto fail;
    } else if (strncmp(spec, "cidr:", 5) == 0) {
        struct lookup_re_read rd;

        t->type = LOOKUP_CIDR;
        if (colon[1] == '\0') {
            buf_printf(e, "bad lookup table \"%s\": missing file name",
                       lookup_shown(spec, shown, sizeof(shown)));
            goto fail;
        }
        rd.t = t;
        rd.depth = 0;
        if (lookup_read_lines(colon + 1, lookup_cidr_entry, &rd, e) < 0)
            goto fail;
        if (rd.depth > 0) {
            buf_printf(e, "%s: if without endif", colon + 1);
            goto fail;
        }
    } else if (strncmp(spec, "unix:", 5) == 0) {
        t->type = LOOKUP_INLINE; /* in memory, sorted, as inline: */
        if (strcmp(colon + 1, "passwd.byname") != 0) {
            buf_printf(e,
                       "unsupported unix: table \"%s\" (supported: "
                       "unix:passwd.byname)",
                       lookup_shown(spec, shown, sizeof(shown)));
            goto fail;
        }
        if (lookup_parse_passwd(t, e) < 0)
            goto fail;
    } else if (strncmp(spec, "static:", 7) == 0) {
        const char *v = colon + 1;
        size_t vlen = strlen(v);

        t->type = LOOKUP_STATIC;
        if (vlen >= 2 && v[0] == '{' && v[vlen - 1] == '}') {
            v++;
            vlen -= 2;
            while (vlen > 0 && lookup_isspace(*v)) {
                v++;
                vlen--;
            }
            while (vlen > 0 && lookup_isspace(v[vlen - 1]))
                vlen--;
        }
        t->value = xmemdup(v, vlen);
    } else {
        buf_printf(e,
                   "unsupported lookup table type \"%.*s\" in \"%s\" "
                   "(supported: inline, texthash, hash, btree, regexp, "
                   "cidr, static, unix, proxy)",
                   (int) (colon - spec > 64 ? 64 : colon - spec), spec,
                   lookup_shown(spec, shown, sizeof(shown)));
        goto fail;
    }
    buf_free(e);
    return t;
fail:
    if (err)
        buf_sets(err, buf_data(e));
    buf_free(e);
    lookup_free(t);
    return NULL;
}

const char *
lookup_spec(const struct lookup_table *t)
{
    return t->spec;
}

int
lookup_get(const struct lookup_table *t, const char *key, struct buf *out)
{
    size_t lo = 0, hi;
    char *lk;

    switch (t->type) {
    case LOOKUP_STATIC:
        if (buf_sets(out, t->value) < 0) {
            buf_reset(out);
            buf_puts(out, "lookup result too long");
            return -1;
        }
        return 1;
    case LOOKUP_REGEXP:
        return lookup_re_get(t, key, out);
    case LOOKUP_CIDR:
        return lookup_cidr_get(t, key, out);
    case LOOKUP_INLINE:
    case LOOKUP_TEXTHASH:
    case LOOKUP_DB:
        break;
    }
    lk = xstrdup(key);
    for (char *p = lk; *p; p++)
        *p = (char) tolower((unsigned char) *p);
    hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(lk, t->kv[mid].key);

        if (c == 0) {
            free(lk);
            if (buf_sets(out, t->kv[mid].value) < 0) {
                buf_reset(out);
                buf_puts(out, "lookup result too long");
                return -1;
            }
            return 1;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    free(lk);
    return 0;
}

void
lookup_free(struct lookup_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->kv[i].key);
        free(t->kv[i].value);
    }
    free(t->kv);
    for (size_t i = 0; i < t->nre; i++) {
        if (t->re[i].kind != LOOKUP_RE_ENDIF && t->type == LOOKUP_REGEXP)
            regfree(&t->re[i].re);
        free(t->re[i].value);
    }
    free(t->re);
    free(t->value);
    free(t->spec);
    free(t);
}

int
lookup_db_missing(const char *spec)
{
    struct stat st;
    char path[4096];

    if (strncmp(spec, "proxy:", 6) == 0)
        spec += 6;
    if (strncmp(spec, "hash:", 5) == 0)
        spec += 5;
    else if (strncmp(spec, "btree:", 6) == 0)
        spec += 6;
    else
        return 0;
    if ((size_t) snprintf(path, sizeof(path), "%s.db", spec) >= sizeof(path))
        return 0;
    return stat(path, &st) < 0 && errno == ENOENT;
}

int
lookup_any_value(const struct lookup_table *t,
                 int (*pred)(const char *value, void *arg), void *arg)
{
    if (t->type == LOOKUP_STATIC)
        return pred(t->value, arg);
    for (size_t i = 0; i < t->n; i++)
        if (pred(t->kv[i].value, arg))
            return 1;
    for (size_t i = 0; i < t->nre; i++)
        if (t->re[i].value && pred(t->re[i].value, arg))
            return 1;
    return 0;
}

/* ---- domain lists with tables and files ---- */

#define LOOKUP_DLIST_FILE_MAX ((off_t) 16 << 20) /* bytes of a /file entry */
#define LOOKUP_DLIST_MAX      1000000            /* entries of a list */

struct lookup_dent {
    int neg;                /* "!entry" */
    char *dom;              /* "example.com" or ".example.com" */
    size_t len;             /* its length without a trailing dot */
    struct lookup_table *t; /* or a table */
};

struct lookup_dlist {
    struct lookup_dent *v;
    size_t n, cap;
};

static int lookup_dlist_add(struct lookup_dlist *l, const char *e, int depth,
                            struct buf *err);

/* A "/file" entry: its words (whitespace or comma separated, '#' to the
 * end of a line a comment) are entries of the list. */
static int
lookup_dlist_file(struct lookup_dlist *l, const char *path, int neg,
                  struct buf *err)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    char line[4096];
    unsigned long lineno = 0;
    off_t total = 0;
    int rc = 0;

    if (f == NULL) {
        buf_printf(err, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && st.st_size > LOOKUP_DLIST_FILE_MAX) {
        buf_printf(err, "%s: larger than %lld bytes", path,
                   (long long) LOOKUP_DLIST_FILE_MAX);
        fclose(f);
        return -1;
    }
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        char *save = NULL, *w;

        lineno++;
        total += (off_t) len;
        if (total > LOOKUP_DLIST_FILE_MAX) { /* a device, a growing file */
            buf_printf(err, "%s: larger than %lld bytes", path,
                       (long long) LOOKUP_DLIST_FILE_MAX);
            rc = -1;
            break;
        }
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            buf_printf(err, "%s, line %lu: longer than %zu bytes", path, lineno,
                       sizeof(line) - 2);
            rc = -1;
            break;
        }
        line[strcspn(line, "#")] = '\0';
        for (w = strtok_r(line, " \t\r\n,", &save); w && rc == 0;
             w = strtok_r(NULL, " \t\r\n,", &save)) {
            char ent[4100];

            snprintf(ent, sizeof(ent), "%s%s", neg ? "!" : "", w);
            if (lookup_dlist_add(l, ent, 1, err) < 0) {
                buf_printf(err, " (%s, line %lu)", path, lineno);
                rc = -1;
            }
        }
    }
    if (rc == 0 && ferror(f)) {
        buf_printf(err, "cannot read %s: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}

static int
lookup_dlist_add(struct lookup_dlist *l, const char *e, int depth,
                 struct buf *err)
{
    struct lookup_dent d;
    int neg = 0;

    while (*e == '!') {
        neg = !neg;
        e++;
    }
    if (*e == '\0') {
        buf_printf(err, "empty entry after '!'");
        return -1;
    }
    if (*e == '/') {
        if (depth > 0) {
            buf_printf(err, "a file entry (%s) inside a file", e);
            return -1;
        }
        return lookup_dlist_file(l, e, neg, err);
    }
    memset(&d, 0, sizeof(d));
    d.neg = neg;
    if (strchr(e, ':') != NULL) {
        if ((d.t = lookup_open(e, err)) == NULL)
            return -1;
    } else {
        d.dom = xstrdup(e);
        d.len = strlen(e);
        if (d.len > 0 && e[d.len - 1] == '.')
            d.len--;
    }
    if (l->n == LOOKUP_DLIST_MAX) {
        buf_printf(err, "more than %d entries", LOOKUP_DLIST_MAX);
        lookup_free(d.t);
        free(d.dom);
        return -1;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = d;
    return 0;
}

struct lookup_dlist *
lookup_dlist_new(char *const *list, struct buf *err)
{
    struct lookup_dlist *l = xcalloc(1, sizeof(*l));

    for (char *const *p = list; p && *p; p++)
        if (lookup_dlist_add(l, *p, 0, err) < 0) {
            lookup_dlist_free(l);
            return NULL;
        }
    return l;
}

/* A table entry: the domain, then each parent as ".parent" (Postfix's
 * match_hostname without parent_domain_matches_subdomains). */
static int
lookup_dlist_table(const struct lookup_table *t, const char *domain,
                   size_t dlen, struct buf *v)
{
    char key[1100];
    const char *p = domain;
    int rc;

    if (dlen >= sizeof(key))
        return 0;
    memcpy(key, domain, dlen);
    key[dlen] = '\0';
    if ((rc = lookup_get(t, key, v)) != 0)
        return rc;
    while ((p = memchr(p + 1, '.', dlen - (size_t) (p + 1 - domain))) != NULL) {
        size_t n = dlen - (size_t) (p - domain);

        if (n <= 1)
            break;
        memcpy(key, p, n);
        key[n] = '\0';
        if ((rc = lookup_get(t, key, v)) != 0)
            return rc;
    }
    return 0;
}

int
lookup_dlist_match(const struct lookup_dlist *l, const char *domain)
{
    size_t dlen;

    if (l == NULL || domain == NULL)
        return 0;
    dlen = strlen(domain);
    if (dlen > 0 && domain[dlen - 1] == '.')
        dlen--;
    if (dlen == 0)
        return 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct lookup_dent *d = &l->v[i];
        int m;

        if (d->t) {
            struct buf *v = buf_new(64, 4096);

            m = lookup_dlist_table(d->t, domain, dlen, v);
            if (m < 0)
                log_warning("%s: lookup of %.*s failed: %s", lookup_spec(d->t),
                            (int) dlen, domain, buf_data(v));
            buf_free(v);
            if (m < 0)
                return -1;
        } else {
            m = lookup_domain_entry(d->dom, d->len, domain, dlen);
        }
        if (m > 0)
            return !d->neg;
    }
    return 0;
}

int
lookup_dlist_empty(const struct lookup_dlist *l)
{
    return l == NULL || l->n == 0;
}

void
lookup_dlist_free(struct lookup_dlist *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        lookup_free(l->v[i].t);
        free(l->v[i].dom);
    }
    free(l->v);
    free(l);
}

/* ---- building .db files (postmap, postalias) ---- */

/* One source entry: its key (lower-case) and value, into db. 1 put, 0 a
 * duplicate (the first one stays), -1 error. */
static int
lookup_build_put(DB *db, const char *k, size_t kl, const char *v, size_t vl,
                 struct buf *err)
{
    char *key = xmalloc(kl + 1);
    DBT dk, dv;
    int rc;

    for (size_t i = 0; i < kl; i++)
        key[i] = (char) tolower((unsigned char) k[i]);
    key[kl] = '\0';
    memset(&dk, 0, sizeof(dk));
    memset(&dv, 0, sizeof(dv));
    dk.data = key;
    dk.size = (u_int32_t) (kl + 1); /* with the NUL, as postmap */
    dv.data = (void *) v;
    dv.size = (u_int32_t) (vl + 1);
    rc = db->put(db, NULL, &dk, &dv, DB_NOOVERWRITE);
    free(key);
    if (rc == DB_KEYEXIST)
        return 0;
    if (rc != 0) {
        buf_printf(err, "%s", db_strerror(rc));
        return -1;
    }
    return 1;
}

int
lookup_build(const char *spec, int aliases, struct buf *warn, struct buf *err)
{
    const char *colon = strchr(spec, ':'), *path = spec;
    DBTYPE dbtype = DB_HASH;
    struct buf *dbf = buf_new(256, BUF_NOCAP), *tmp = buf_new(256, BUF_NOCAP);
    struct buf *ent = buf_new(256, LOOKUP_FILE_MAX);
    FILE *f = NULL;
    DB *db = NULL;
    char line[8192];
    unsigned long lineno = 0, start = 0;
    int rc = -1, r;

    if (colon && colon[1] == '/') {
        if (strncmp(spec, "hash:", 5) == 0)
            dbtype = DB_HASH;
        else if (strncmp(spec, "btree:", 6) == 0)
            dbtype = DB_BTREE;
        else {
            buf_printf(err,
                       "%.*s: a table type that is not built (hash or "
                       "btree are)",
                       (int) (colon - spec), spec);
            goto out;
        }
        path = colon + 1;
    }
    if ((f = fopen(path, "r")) == NULL) {
        buf_printf(err, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    buf_printf(dbf, "%s.db", path);
    buf_printf(tmp, "%s.db.%ld.tmp", path, (long) getpid());
    unlink(buf_data(tmp));
    if ((r = db_create(&db, NULL, 0)) != 0) {
        buf_printf(err, "%s: %s", buf_data(dbf), db_strerror(r));
        db = NULL;
        goto out;
    }
    if ((r = db->open(db, NULL, buf_data(tmp), NULL, dbtype,
                      DB_CREATE | DB_EXCL, 0644))
        != 0) {
        buf_printf(err, "cannot create %s: %s", buf_data(tmp), db_strerror(r));
        goto out;
    }
    /* logical lines: a line that starts with white space continues the
     * one before; '#' lines are comments */
    for (;;) {
        int eof = fgets(line, sizeof(line), f) == NULL;
        size_t len = eof ? 0 : strlen(line);

        if (!eof) {
            lineno++;
            if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
                buf_printf(err, "%s, line %lu: longer than %zu bytes", path,
                           lineno, sizeof(line) - 2);
                goto out;
            }
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = '\0';
            if (line[strspn(line, " \t")] == '#')
                continue;
            if ((line[0] == ' ' || line[0] == '\t') && buf_len(ent) > 0) {
                if (line[strspn(line, " \t")] != '\0'
                    && (buf_putc(ent, ' ') < 0
                        || buf_puts(ent, line + strspn(line, " \t")) < 0)) {
                    buf_printf(err, "%s, line %lu: entry too long", path,
                               lineno);
                    goto out;
                }
                continue;
            }
        }
        if (buf_len(ent) > 0) { /* the entry before this line */
            char *e = buf_data(ent), *k = e, *v;
            size_t kl;

            if (aliases) {
                /* "name: value" (a quoted name may hold blanks) */
                if (*e == '"') {
                    char *q = strchr(e + 1, '"');

                    kl = q ? (size_t) (q - e - 1) : 0;
                    k = e + 1;
                    v = q ? q + 1 : e;
                } else {
                    kl = strcspn(e, ": \t");
                    v = e + kl;
                }
                v += strspn(v, " \t");
                if (kl == 0 || *v != ':') {
                    buf_printf(warn, "%s, line %lu: need name:value pair\n",
                               path, start);
                    goto next;
                }
                v++;
            } else {
                kl = strcspn(e, " \t");
                v = e + kl;
                if (*v == '\0') {
                    buf_printf(warn,
                               "%s, line %lu: expected format: key "
                               "whitespace value\n",
                               path, start);
                    goto next;
                }
            }
            v += strspn(v, " \t");
            {
                size_t vl = strlen(v);

                while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                    v[--vl] = '\0';
                r = lookup_build_put(db, k, kl, v, vl, err);
            }
            if (r < 0)
                goto out;
            if (r == 0)
                buf_printf(warn, "%s, line %lu: duplicate entry: \"%.*s\"\n",
                           path, start, (int) kl, k);
        next:
            buf_reset(ent);
        }
        if (eof)
            break;
        if (line[strspn(line, " \t")] == '\0')
            continue;
        if (buf_puts(ent, line) < 0) {
            buf_printf(err, "%s, line %lu: entry too long", path, lineno);
            goto out;
        }
        start = lineno;
    }
    if (ferror(f)) {
        buf_printf(err, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    r = db->close(db, 0);
    db = NULL;
    if (r != 0) {
        buf_printf(err, "cannot write %s: %s", buf_data(tmp), db_strerror(r));
        goto out;
    }
    if (rename(buf_data(tmp), buf_data(dbf)) < 0) {
        buf_printf(err, "cannot rename %s to %s: %s", buf_data(tmp),
                   buf_data(dbf), strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (db)
        db->close(db, 0);
    if (rc < 0 && buf_len(tmp) > 0)
        unlink(buf_data(tmp));
    if (f)
        fclose(f);
    buf_free(ent);
    buf_free(tmp);
    buf_free(dbf);
    return rc;
}
