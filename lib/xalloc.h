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
/* malloc settings for the long-running processes, called once at start:
 * glibc gives the free top of each thread's heap back to the kernel
 * (madvise) as soon as it passes 128 KB, so every ClamAV scan, which
 * allocates and frees a few hundred KB, paid for page faults and TLB
 * shootdowns to get the same memory again; keeping up to XALLOC_TRIM per
 * heap cut the CPU of a 10 KB scan by about 18% (docs/PERFORMANCE.md). */
#define XALLOC_TRIM (32 * 1024 * 1024)
void xalloc_tune(void);

#endif
