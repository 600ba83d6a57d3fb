/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * buf.c - the one growable byte string.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xalloc.h"

struct buf *
buf_new(size_t initial, size_t cap)
{
    struct buf *b = xmalloc(sizeof(*b));

    if (initial < 16)
        initial = 16;
    if (initial > cap + 1)
        initial = cap + 1;
    b->base = xmalloc(initial);
    b->base[0] = '\0';
    b->off = 0;
    b->len = 0;
    b->size = initial;
    b->cap = cap;
    return b;
}

void
buf_free(struct buf *b)
{
    if (b == NULL)
        return;
    free(b->base);
    free(b);
}

/* Make room for n more bytes plus the NUL; -1 over cap. */
static int
buf_room(struct buf *b, size_t n)
{
    size_t need;

    if (n > b->cap || b->len > b->cap - n)
        return -1;
    need = b->len + n + 1;
    if (b->off + need <= b->size)
        return 0;
    if (b->off > 0) {
        memmove(b->base, b->base + b->off, b->len + 1);
        b->off = 0;
        if (need <= b->size)
            return 0;
    }
    size_t nsize = b->size;
    while (nsize < need)
        nsize = nsize < BUF_NOCAP / 2 ? nsize * 2 : need;
    b->base = xrealloc(b->base, nsize);
    b->size = nsize;
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_room(b, n) < 0)
        return -1;
    if (n == 0)
        return 0;
    memcpy(b->base + b->off + b->len, p, n);
    b->len += n;
    b->base[b->off + b->len] = '\0';
    return 0;
}

int
buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
buf_putc(struct buf *b, int c)
{
    char ch = (char) c;

    return buf_append(b, &ch, 1);
}

/* Formats once into the room there is, and again only when the result did
 * not fit (the one growable string: replies, headers, commands). */
int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    size_t end = b->off + b->len, room = b->size - end;
    va_list aq;
    int n;

    if (strchr(fmt, '%') == NULL)
        return buf_puts(b, fmt);
    va_copy(aq, ap);
    n = vsnprintf(b->base + end, room, fmt, aq);
    va_end(aq);
    if (n < 0) {
        b->base[end] = '\0';
        return -1;
    }
    if ((size_t) n < room) {
        if ((size_t) n > b->cap || b->len > b->cap - (size_t) n) {
            b->base[end] = '\0'; /* over cap: as if never written */
            return -1;
        }
        b->len += (size_t) n;
        return 0;
    }
    b->base[end] = '\0';
    if (buf_room(b, (size_t) n) < 0)
        return -1;
    vsnprintf(b->base + b->off + b->len, (size_t) n + 1, fmt, ap);
    b->len += (size_t) n;
    return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

int
buf_set(struct buf *b, const void *p, size_t n)
{
    buf_reset(b);
    return buf_append(b, p, n);
}

int
buf_sets(struct buf *b, const char *s)
{
    return buf_set(b, s, strlen(s));
}

void
buf_reset(struct buf *b)
{
    b->off = 0;
    b->len = 0;
    b->base[0] = '\0';
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    b->off += n;
    b->len -= n;
}

void
buf_truncate(struct buf *b, size_t n)
{
    if (n < b->len) {
        b->len = n;
        b->base[b->off + n] = '\0';
    }
}

char *
buf_reserve(struct buf *b, size_t n)
{
    if (buf_room(b, n) < 0)
        return NULL;
    return b->base + b->off + b->len;
}

void
buf_commit(struct buf *b, size_t n)
{
    b->len += n;
    b->base[b->off + b->len] = '\0';
}

long
buf_find(const struct buf *b, int c)
{
    const char *p = memchr(b->base + b->off, c, b->len);

    return p ? (long) (p - (b->base + b->off)) : -1;
}
