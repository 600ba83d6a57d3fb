/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xalloc.h - allocation that cannot fail.
 * On allocation failure these log a fatal error and exit; callers do not
 * check the result.
 * Threads: safe from any thread.
 */
#ifndef SLUICE_XALLOC_H
#define SLUICE_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xmemdup(const void *p, size_t n); /* adds a NUL after n bytes */

#endif
