/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * msgmark.c - patch points that make benchmark messages unique.
 * See msgmark.h. A small MIME walker: top headers, then body lines; a
 * line starting with "--" in a body is taken as a boundary and part
 * headers follow. Content-Type and Content-Transfer-Encoding decide
 * whether a body is text (takes the decimal counter) or base64 (takes
 * the base64 counter on its first line).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/bench/msgmark.h"

static int
is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* A line of a text part that can take the counter: long enough, has a
 * space (so it is prose, not base64) and is not a boundary. */
static int
is_text_line(const char *p, size_t n)
{
    size_t i;
    int space = 0;

    if (n < 2 * MSGMARK_TEXT_LEN || (p[0] == '-' && p[1] == '-'))
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == ' ')
            space = 1;
        else if (c < 0x20 || c > 0x7e)
            return 0;
    }
    return space;
}

static int
is_b64_line(const char *p, size_t n)
{
    size_t i;

    if (n < MSGMARK_B64_LEN)
        return 0;
    for (i = 0; i < n; i++)
        if (!is_b64_char(p[i]))
            return 0;
    return 1;
}

static int
header_is(const char *p, size_t n, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), i;

    if (n < nl || strncasecmp(p, name, nl) != 0)
        return 0;
    for (i = nl; i < n && (p[i] == ' ' || p[i] == '\t'); i++)
        ;
    return n - i >= vl && strncasecmp(p + i, value, vl) == 0;
}

void
msgmark_find(const char *data, size_t len, struct msgmark *mm)
{
    enum {
        IN_TOP_HEADERS,
        IN_PART_HEADERS,
        IN_BODY
    } where = IN_TOP_HEADERS;
    int text = 1, b64 = 0, first_body_line = 0;
    size_t pos = 0;

    mm->text_pos = -1;
    mm->b64_pos = -1;
    while (pos < len && (mm->text_pos < 0 || mm->b64_pos < 0)) {
        const char *p = data + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl != NULL ? (size_t) (nl - p) : len - pos;
        size_t next = pos + n + (nl != NULL);

        if (n > 0 && p[n - 1] == '\r')
            n--;
        switch (where) {
        case IN_TOP_HEADERS:
        case IN_PART_HEADERS:
            if (n == 0) {
                where = IN_BODY;
                first_body_line = 1;
            } else if (header_is(p, n, "Content-Type:", "multipart/")) {
                text = 0;
            } else if (header_is(p, n, "Content-Type:", "text/")) {
                text = 1;
            } else if (header_is(p, n, "Content-Type:", "")) {
                text = 0;
            } else if (header_is(p, n,
                                 "Content-Transfer-Encoding:", "base64")) {
                b64 = 1;
            }
            break;
        case IN_BODY:
            if (n >= 2 && p[0] == '-' && p[1] == '-') {
                /* a boundary line: part headers follow */
                where = IN_PART_HEADERS;
                text = 1; /* MIME default: text/plain */
                b64 = 0;
            } else if (b64 && first_body_line && mm->b64_pos < 0
                       && is_b64_line(p, n)) {
                mm->b64_pos = (long) pos;
            } else if (text && !b64 && mm->text_pos < 0 && is_text_line(p, n)) {
                mm->text_pos = (long) pos;
            }
            first_body_line = 0;
            break;
        }
        pos = next;
    }
}

void
msgmark_text(uint64_t seq, char out[MSGMARK_TEXT_LEN])
{
    uint64_t v = seq % 10000000000ULL;
    int k;

    for (k = MSGMARK_TEXT_LEN - 1; k >= 0; k--, v /= 10)
        out[k] = (char) ('0' + v % 10);
}

void
msgmark_b64(uint64_t seq, char out[MSGMARK_B64_LEN])
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint64_t v = seq;
    int k;

    for (k = MSGMARK_B64_LEN - 1; k >= 0; k--, v >>= 6)
        out[k] = b64[v & 63];
}

void
msgmark_apply(char *data, size_t len, const struct msgmark *mm, uint64_t seq)
{
    if (mm->text_pos >= 0 && (size_t) mm->text_pos + MSGMARK_TEXT_LEN <= len)
        msgmark_text(seq, data + mm->text_pos);
    if (mm->b64_pos >= 0 && (size_t) mm->b64_pos + MSGMARK_B64_LEN <= len)
        msgmark_b64(seq, data + mm->b64_pos);
}

int
msgmark_read(const char *who, const char *path, unsigned long max, char **data,
             size_t *len)
{
    struct stat st;
    char *p = NULL;
    size_t got = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "%s: %s: %s\n", who, path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0
        || (unsigned long long) st.st_size > max) {
        fprintf(stderr, "%s: %s: not a regular file of 1 to %lu bytes\n", who,
                path, max);
        goto fail;
    }
    if ((p = malloc((size_t) st.st_size)) == NULL) {
        fprintf(stderr, "%s: %s: out of memory\n", who, path);
        goto fail;
    }
    while (got < (size_t) st.st_size) {
        ssize_t n = read(fd, p + got, (size_t) st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "%s: %s: %s\n", who, path,
                    n < 0 ? strerror(errno) : "file shrank while read");
            goto fail;
        }
        got += (size_t) n;
    }
    close(fd);
    *data = p;
    *len = got;
    return 0;
fail:
    free(p);
    if (fd >= 0)
        close(fd);
    return -1;
}

static int
msgmark_cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}

void
msgmark_sort_ms(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), msgmark_cmp_double);
}

double
msgmark_percentile(const double *v, size_t n, double p)
{
    double r = p / 100.0 * (double) n;
    size_t rank = (size_t) r;

    if (n == 0)
        return 0;
    if ((double) rank < r) /* ceil without libm */
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}
