/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * filter_mods.c - modification lists and rewriting a message with them.
 *
 * filter_mods_rewrite() streams: the header (at most FILTER_HDR_MAX bytes)
 * is read into memory and parsed into fields; the body is copied in
 * FILTER_CHUNK pieces with pread(), never held whole.
 * Header parsing follows Postfix: a field is "name:" (name of printable
 * non-space characters, optional blanks before the colon) plus its
 * continuation lines (starting with SP or HT); an empty line ends the
 * header; so does a line that is neither a field nor a continuation, and
 * that line starts the body (there is no separator then). Past
 * FILTER_HDR_MAX bytes the rest is body.
 * Added and changed fields are written "Name: value\r\n": every line of
 * the value ends in CRLF, continuation lines start with white space, and
 * a value that does not start with a blank gets one space after the colon.
 *
 * Owns: the mod lists it allocates (filter_mods_free). Borrows: the fd.
 * Threads: pure functions, any thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

#define FILTER_CHUNK   (64 * 1024)
#define FILTER_HDR_MAX (1024 * 1024)

/* len is the length of value (a header value too: pass strlen); a NULL
 * value stays NULL (CHANGE_HEADER: delete). name and args are copied. */
struct filter_mod *
filter_mod_new(enum filter_mod_type type, const char *name, const void *value,
               size_t len, int index, const char *args)
{
    struct filter_mod *m = xcalloc(1, sizeof(*m));

    m->type = type;
    m->name = name ? xstrdup(name) : NULL;
    m->value = value ? xmemdup(value, len) : NULL;
    m->len = value ? len : 0;
    m->index = index;
    m->args = args ? xstrdup(args) : NULL;
    m->next = NULL;
    return m;
}

void
filter_mods_free(struct filter_mod *m)
{
    struct filter_mod *next;

    for (; m != NULL; m = next) {
        next = m->next;
        free(m->name);
        free(m->value);
        free(m->args);
        free(m);
    }
}

static int
filter_mod_is_content(enum filter_mod_type t)
{
    switch (t) {
    case FILTER_MOD_ADD_HEADER:
    case FILTER_MOD_INSERT_HEADER:
    case FILTER_MOD_CHANGE_HEADER:
    case FILTER_MOD_REPLACE_BODY:
        return 1;
    case FILTER_MOD_ADD_RCPT:
    case FILTER_MOD_DELETE_RCPT:
    case FILTER_MOD_CHANGE_SENDER:
        return 0;
    }
    return 0;
}

int
filter_mods_have_content(const struct filter_mod *mods)
{
    for (; mods != NULL; mods = mods->next)
        if (filter_mod_is_content(mods->type))
            return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* header fields */

struct hfield {
    const char *p; /* raw bytes, continuation lines included */
    size_t off;    /* of p in the header buffer, while reading */
    size_t n;
    size_t namelen; /* name at p */
    char *own;      /* p when the field was added or changed */
};

struct hlist {
    struct hfield *v;
    size_t n, size;
};

static void
hlist_insert(struct hlist *h, size_t at, const struct hfield *f)
{
    if (h->n == h->size) {
        h->size = h->size ? h->size * 2 : 32;
        h->v = xrealloc(h->v, h->size * sizeof(*h->v));
    }
    if (at > h->n)
        at = h->n;
    memmove(h->v + at + 1, h->v + at, (h->n - at) * sizeof(*h->v));
    h->v[at] = *f;
    h->n++;
}

static void
hlist_remove(struct hlist *h, size_t at)
{
    free(h->v[at].own);
    memmove(h->v + at, h->v + at + 1, (h->n - at - 1) * sizeof(*h->v));
    h->n--;
}

static void
hlist_free(struct hlist *h)
{
    size_t i;

    for (i = 0; i < h->n; i++)
        free(h->v[i].own);
    free(h->v);
}

size_t
filter_hdr_name_len(const char *p, size_t n)
{
    size_t i = 0, namelen;

    while (i < n && (unsigned char) p[i] > ' ' && (unsigned char) p[i] < 127
           && p[i] != ':')
        i++;
    namelen = i;
    if (namelen == 0)
        return 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return i < n && p[i] == ':' ? namelen : 0;
}

static int
hdr_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    size_t i;

    if (n == 0)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char) name[i] <= ' ' || (unsigned char) name[i] >= 127
            || name[i] == ':')
            return 0;
    return 1;
}

/* Format "Name: value\r\n" with CRLF lines and folded continuations. */
static struct hfield
hdr_format(const char *name, const char *v, size_t len)
{
    struct buf *b = buf_new(strlen(name) + len + 16, BUF_NOCAP);
    struct hfield f;
    size_t i = 0, n = len;

    /* drop trailing line breaks: they would end the header */
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
    buf_puts(b, name);
    buf_putc(b, ':');
    if (n == 0 || (v[0] != ' ' && v[0] != '\t'))
        buf_putc(b, ' ');
    while (i < n) {
        if (v[i] == '\r' || v[i] == '\n') {
            i += v[i] == '\r' && i + 1 < n && v[i + 1] == '\n' ? 2 : 1;
            buf_puts(b, "\r\n");
            if (i >= n || (v[i] != ' ' && v[i] != '\t'))
                buf_putc(b, '\t');
            continue;
        }
        buf_putc(b, v[i]);
        i++;
    }
    buf_puts(b, "\r\n");
    f.off = 0;
    f.namelen = strlen(name);
    f.n = buf_len(b);
    f.own = xmemdup(buf_data(b), f.n);
    f.p = f.own;
    buf_free(b);
    return f;
}

/* Index of the occurrence-th (1-based) field called name, or h->n. */
static size_t
hdr_find(const struct hlist *h, const char *name, int occurrence)
{
    size_t i, nl = strlen(name);
    int seen = 0;

    if (occurrence < 1)
        occurrence = 1;
    for (i = 0; i < h->n; i++)
        if (h->v[i].namelen == nl && strncasecmp(h->v[i].p, name, nl) == 0
            && ++seen == occurrence)
            return i;
    return h->n;
}

static int
hdr_apply(struct hlist *h, const struct filter_mod *m)
{
    struct hfield f;
    size_t at;

    if (!hdr_name_ok(m->name))
        return -1;
    switch (m->type) {
    case FILTER_MOD_ADD_HEADER:
        f = hdr_format(m->name, m->value ? m->value : "", m->len);
        hlist_insert(h, h->n, &f);
        break;
    case FILTER_MOD_INSERT_HEADER:
        f = hdr_format(m->name, m->value ? m->value : "", m->len);
        hlist_insert(h, m->index < 0 ? 0 : (size_t) m->index, &f);
        break;
    case FILTER_MOD_CHANGE_HEADER:
        at = hdr_find(h, m->name, m->index);
        if (m->value == NULL) {
            if (at < h->n)
                hlist_remove(h, at);
            break;
        }
        f = hdr_format(m->name, m->value, m->len);
        if (at < h->n) {
            free(h->v[at].own);
            h->v[at] = f;
        } else {
            hlist_insert(h, h->n, &f);
        }
        break;
    case FILTER_MOD_REPLACE_BODY:
    case FILTER_MOD_ADD_RCPT:
    case FILTER_MOD_DELETE_RCPT:
    case FILTER_MOD_CHANGE_SENDER:
        break;
    }
    return 0;
}

int
filter_mods_top_bytes(const struct filter_mod *mods, struct buf *out)
{
    const struct filter_mod *m;
    struct hfield *v = NULL;
    size_t n = 0, i;
    int rc = 0;

    for (m = mods; m; m = m->next) {
        if (!filter_mod_is_content(m->type))
            continue;
        if (m->type != FILTER_MOD_INSERT_HEADER || m->index > 0
            || !hdr_name_ok(m->name)) {
            rc = -1;
            break;
        }
        v = xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = hdr_format(m->name, m->value ? m->value : "", m->len);
    }
    /* each insertion at the top goes above the ones before it */
    for (i = n; rc == 0 && i > 0; i--)
        if (buf_append(out, v[i - 1].p, v[i - 1].n) < 0)
            rc = -1;
    for (i = 0; i < n; i++)
        free(v[i].own);
    free(v);
    return rc;
}

/* ------------------------------------------------------------------ */
/* reading */

static ssize_t
read_at(int fd, void *p, size_t n, off_t off)
{
    ssize_t r;

    do
        r = pread(fd, p, n, off);
    while (r < 0 && errno == EINTR);
    if (r == 0 && n > 0) {
        errno = EIO; /* the file is shorter than the region */
        return -1;
    }
    return r;
}

/* Read and parse the header. On return hb holds the bytes read so far
 * (header, separator, possibly the start of the body), *hend the end of
 * the header fields, *seplen the length of the empty line (0 if none). */
static int
hdr_read(int fd, off_t off, off_t len, struct buf *hb, struct hlist *h,
         size_t *hend, size_t *seplen)
{
    size_t scan = 0;
    off_t got = 0;
    int eof;

    *seplen = 0;
    for (;;) {
        const char *d = buf_data(hb);
        size_t avail = buf_len(hb) - scan;
        const char *lf = memchr(d + scan, '\n', avail);
        size_t ll, nl;

        eof = got >= len;
        if (lf == NULL && !eof) {
            size_t want = FILTER_CHUNK;
            char *w;
            ssize_t r;

            if (buf_len(hb) >= FILTER_HDR_MAX)
                break; /* a line past the header cap: body */
            if ((off_t) want > len - got)
                want = (size_t) (len - got);
            if ((w = buf_reserve(hb, want)) == NULL) {
                errno = EFBIG;
                return -1;
            }
            if ((r = read_at(fd, w, want, off + got)) < 0)
                return -1;
            buf_commit(hb, (size_t) r);
            got += r;
            continue;
        }
        if (lf == NULL && avail == 0)
            break; /* end of message */
        ll = lf ? (size_t) (lf - (d + scan)) + 1 : avail;
        if ((ll == 1 && d[scan] == '\n')
            || (ll == 2 && d[scan] == '\r' && d[scan + 1] == '\n')) {
            *seplen = ll;
            break;
        }
        if (d[scan] == ' ' || d[scan] == '\t') {
            if (h->n == 0)
                break;
            h->v[h->n - 1].n += ll;
        } else if ((nl = filter_hdr_name_len(d + scan, ll)) > 0) {
            struct hfield f = {NULL, scan, ll, nl, NULL};

            hlist_insert(h, h->n, &f);
        } else {
            break;
        }
        scan += ll;
        if (scan >= FILTER_HDR_MAX)
            break;
    }
    *hend = scan;
    return 0;
}

/* ------------------------------------------------------------------ */
/* writing */

struct body_out {
    filter_out_fn out;
    void *arg;
    struct buf *b;
    int cr; /* last byte seen was CR */
};

static int
body_flush(struct body_out *bo)
{
    if (buf_len(bo->b) > 0 && bo->out(bo->arg, buf_data(bo->b), buf_len(bo->b)))
        return -1;
    buf_reset(bo->b);
    return 0;
}

/* Replacement body bytes with bare LF turned into CRLF. */
static int
body_put(struct body_out *bo, const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (buf_len(bo->b) + 2 > FILTER_CHUNK && body_flush(bo) < 0)
            return -1;
        if (p[i] == '\n' && !bo->cr)
            buf_putc(bo->b, '\r');
        buf_putc(bo->b, p[i]);
        bo->cr = p[i] == '\r';
    }
    return 0;
}

/* Read the header at in_fd[off, off+len) into hb and h, and apply the
 * header mods of mods to h (*replace: a body replacement is among them):
 * 0, or -1 (errno). */
static int
head_apply(const struct filter_mod *mods, int in_fd, off_t off, off_t len,
           struct buf *hb, struct hlist *h, size_t *hend, size_t *seplen,
           int *replace)
{
    const struct filter_mod *m;
    size_t i;

    *replace = 0;
    if (len < 0) {
        errno = EINVAL;
        return -1;
    }
    if (hdr_read(in_fd, off, len, hb, h, hend, seplen) < 0)
        return -1;
    for (i = 0; i < h->n; i++)
        h->v[i].p = buf_data(hb) + h->v[i].off;
    for (m = mods; m != NULL; m = m->next) {
        if (m->type == FILTER_MOD_REPLACE_BODY)
            *replace = 1;
        else if (filter_mod_is_content(m->type) && hdr_apply(h, m) < 0) {
            errno = EINVAL; /* bad header name from a filter */
            return -1;
        }
    }
    return 0;
}

/* The header fields of h as the new message has them. */
static int
head_put(const struct hlist *h, int replace, filter_out_fn out, void *arg)
{
    size_t i;

    for (i = 0; i < h->n; i++) {
        const struct hfield *f = &h->v[i];

        if (out(arg, f->p, f->n))
            return -1;
        /* the last line of a message without line end, when more
         * follows */
        if (f->n > 0 && f->p[f->n - 1] != '\n' && (i + 1 < h->n || replace)
            && out(arg, "\r\n", 2))
            return -1;
    }
    return 0;
}

static int
head_out_buf(void *arg, const void *p, size_t n)
{
    return buf_append(arg, p, n);
}

int
filter_mods_new_head(const struct filter_mod *mods, int in_fd, off_t off,
                     off_t len, size_t max, struct buf *out, size_t *old_len)
{
    struct buf *hb = buf_new(FILTER_CHUNK, FILTER_HDR_MAX + 2 * FILTER_CHUNK);
    struct hlist h = {NULL, 0, 0};
    off_t part = len > (off_t) max ? (off_t) max : len;
    size_t hend, seplen;
    int replace, rc = 1;

    if (head_apply(mods, in_fd, off, part, hb, &h, &hend, &seplen, &replace)
        < 0) {
        rc = -1;
        goto done;
    }
    /* A body replacement; or a header whose end the part read does not
     * show: past a cut, the line where the header ended may be the start
     * of a field ("Subj" of "Subject:"), so the line must be complete. */
    if (replace
        || (part < len
            && memchr(buf_data(hb) + hend, '\n', buf_len(hb) - hend) == NULL))
        goto done;
    if (head_put(&h, 0, head_out_buf, out) < 0) {
        rc = -1;
        goto done;
    }
    *old_len = hend;
    rc = 0;
done:
    hlist_free(&h);
    buf_free(hb);
    return rc;
}

int
filter_mods_rewrite(const struct filter_mod *mods, int in_fd, off_t off,
                    off_t len, filter_out_fn out, void *arg)
{
    struct buf *hb = buf_new(FILTER_CHUNK, FILTER_HDR_MAX + 2 * FILTER_CHUNK);
    struct buf *chunk = NULL;
    struct hlist h = {NULL, 0, 0};
    struct body_out bo = {out, arg, NULL, 0};
    const struct filter_mod *m;
    size_t hend, seplen;
    int replace;
    off_t pos;

    if (head_apply(mods, in_fd, off, len, hb, &h, &hend, &seplen, &replace) < 0
        || head_put(&h, replace, out, arg) < 0)
        goto fail;

    if (replace) {
        if (out(arg, "\r\n", 2))
            goto fail;
        bo.b = buf_new(FILTER_CHUNK, FILTER_CHUNK);
        for (m = mods; m != NULL; m = m->next)
            if (m->type == FILTER_MOD_REPLACE_BODY && m->value
                && body_put(&bo, m->value, m->len) < 0)
                goto fail;
        if (body_flush(&bo) < 0)
            goto fail;
        goto done;
    }

    /* separator and body as they were */
    if (buf_len(hb) > hend && out(arg, buf_data(hb) + hend, buf_len(hb) - hend))
        goto fail;
    pos = (off_t) buf_len(hb);
    chunk = buf_new(FILTER_CHUNK, FILTER_CHUNK);
    while (pos < len) {
        size_t want = FILTER_CHUNK;
        char *w = buf_reserve(chunk, want);
        ssize_t r;

        if ((off_t) want > len - pos)
            want = (size_t) (len - pos);
        if ((r = read_at(in_fd, w, want, off + pos)) < 0)
            goto fail;
        if (out(arg, w, (size_t) r))
            goto fail;
        pos += r;
    }
done:
    buf_free(chunk);
    buf_free(bo.b);
    hlist_free(&h);
    buf_free(hb);
    return 0;
fail:
    buf_free(chunk);
    buf_free(bo.b);
    hlist_free(&h);
    buf_free(hb);
    return -1;
}
