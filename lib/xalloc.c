/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xalloc.c - allocation that cannot fail.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/xalloc.h"

static void
xalloc_die(size_t n)
{
    log_fatal("out of memory allocating %zu bytes", n);
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        xalloc_die(n);
    return p;
}

void *
xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);

    if (p == NULL)
        xalloc_die(nmemb * n);
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL)
        xalloc_die(n);
    return q;
}

char *
xstrdup(const char *s)
{
    return xmemdup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
    return xmemdup(s, strnlen(s, n));
}

char *
xmemdup(const void *p, size_t n)
{
    char *q = xmalloc(n + 1);

    memcpy(q, p, n);
    q[n] = '\0';
    return q;
}

void
xalloc_tune(void)
{
    /* a fixed mmap threshold too: setting one turns off glibc's dynamic
     * threshold, which would otherwise move under the trim setting */
    (void) mallopt(M_TRIM_THRESHOLD, XALLOC_TRIM);
    (void) mallopt(M_MMAP_THRESHOLD, XALLOC_TRIM / 2);
}
