/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * buf.h - the one growable byte string.
 * A buf holds bytes between a read offset and its end, always followed by a
 * NUL (so buf_data() is a C string when the bytes hold no NUL). It grows on
 * demand up to a hard cap given at creation; an append past the cap fails
 * with -1 and leaves the buf unchanged, so protocol input is bounded.
 * Owns: its storage. Threads: one thread at a time.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *base;  /* storage */
    size_t off;  /* start of live bytes (after buf_consume) */
    size_t len;  /* live bytes */
    size_t size; /* allocated bytes */
    size_t cap;  /* hard limit on len */
};

#define BUF_NOCAP ((size_t) -1 / 2)

struct buf *buf_new(size_t initial, size_t cap);
void buf_free(struct buf *b); /* NULL ok */

static inline char *
buf_data(const struct buf *b)
{
    return b->base + b->off;
}

static inline size_t
buf_len(const struct buf *b)
{
    return b->len;
}

int buf_append(struct buf *b, const void *p, size_t n); /* 0, or -1 over cap */
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, int c);
int buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
int buf_set(struct buf *b, const void *p, size_t n); /* reset + append */
int buf_sets(struct buf *b, const char *s);          /* reset + puts */
void buf_reset(struct buf *b);                       /* keeps capacity */
void buf_consume(struct buf *b, size_t n);           /* drop n from front */
void buf_truncate(struct buf *b, size_t n);          /* keep first n */
/* Room for n more bytes at the end: returns the pointer to write to, or
 * NULL over cap. Call buf_commit(b, written) after writing. */
char *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Find a byte; returns index from buf_data() or -1. */
long buf_find(const struct buf *b, int c);

#endif
