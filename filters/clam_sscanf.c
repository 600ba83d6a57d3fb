/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clam_sscanf.c - sscanf for libclamav's logical signatures, without the
 * stdio machinery for the two formats it uses on every scan.
 *
 * Why: libclamav evaluates every logical signature after every object it
 * scans by parsing the text of the signature's expression again
 * (cli_ac_chklsig), with sscanf(p, "%u", ...) and sscanf(p, "%u,%u", ...)
 * for each sub-signature number: about 4,900 calls per 10 KB message with
 * 300 logical signatures, each of them a FILE set up on the string, the
 * format interpreted and the digits read through getc. glibc's sscanf and
 * its helpers were 11% of a 10 KB scan's CPU (perf, bench_scan, 1 thread).
 * libclamav is the system's shared library, so the fix is here: this
 * executable defines sscanf and __isoc99_sscanf (the name glibc's headers
 * give sscanf in C99 mode; libclamav imports both), and the dynamic linker
 * binds libclamav's calls to the executable's definitions first.
 *
 * Exactly glibc's result or glibc itself:
 *  - the fast path takes only the format "%u" or "%u,%u" with a string
 *    that starts with an ASCII digit (for "%u,%u": whose second number, if
 *    a comma follows the first, starts with a digit right after it). Then
 *    %u reads the longest run of digits and converts it as strtoul does
 *    (glibc's %u calls its strtoul on the same digits; on overflow
 *    ULONG_MAX; here a loop over the digits, as strtoul's locale and base
 *    handling cost more than the rest of the call), stored as unsigned
 *    int (glibc's cast); a comma that does not follow, or the end of the
 *    string, ends the conversion with one field, as glibc's matching or
 *    input failure after the first field;
 *  - everything else (other formats, leading space or sign, and all of our
 *    own or other libraries' calls) goes to glibc's vsscanf with the same
 *    arguments. tests/unit/test_clam_sscanf.c compares both over a set of
 *    edge cases and random strings.
 *
 * Not including <stdio.h> (nor any header of ours that does) is
 * deliberate: without _GNU_SOURCE it renames sscanf to __isoc99_sscanf,
 * and this file must define both names.
 *
 * Threads: any (no state but the flag, set before scan threads start).
 */
#include <limits.h>
#include <stdarg.h>
#include <string.h>

#include "filters/clam_sscanf.h"

int sscanf(const char *s, const char *fmt, ...);
int __isoc99_sscanf(const char *s, const char *fmt, ...);
int vsscanf(const char *s, const char *fmt, va_list ap);
int __isoc99_vsscanf(const char *s, const char *fmt, va_list ap);

static int clam_sscanf_plain; /* bench_scan -S: glibc for every call */

void
clam_sscanf_setup(int plain)
{
    clam_sscanf_plain = plain;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* strtoul for a string of digits in base 10: ULONG_MAX on overflow; *end
 * after the last digit */
static unsigned long
digits(const char *s, const char **end)
{
    unsigned long v = 0;
    int over = 0;

    for (; is_digit(*s); s++) {
        unsigned long d = (unsigned long) (*s - '0');

        if (v > (ULONG_MAX - d) / 10)
            over = 1;
        else
            v = v * 10 + d;
    }
    *end = s;
    return over ? ULONG_MAX : v;
}

/* the fast path: the number of fields stored, or -2 for "ask glibc" */
static int
fast_u(const char *s, const char *fmt, va_list ap)
{
    unsigned long a, b;
    unsigned int *p, *q;
    const char *e;

    if (clam_sscanf_plain || fmt[0] != '%' || fmt[1] != 'u' || !is_digit(s[0]))
        return -2;
    if (fmt[2] == '\0') {
        p = va_arg(ap, unsigned int *);
        *p = (unsigned int) digits(s, &e);
        return 1;
    }
    if (strcmp(fmt + 2, ",%u") != 0)
        return -2;
    a = digits(s, &e);
    if (*e == ',' && !is_digit(e[1]))
        return -2; /* space or a sign after the comma: glibc's rules */
    p = va_arg(ap, unsigned int *);
    *p = (unsigned int) a;
    if (*e != ',')
        return 1;
    b = digits(e + 1, &e);
    q = va_arg(ap, unsigned int *);
    *q = (unsigned int) b;
    return 2;
}

/* the fast path on a copy of the arguments, else glibc's vscan on them */
static int
scan(const char *s, const char *fmt,
     int (*vscan)(const char *, const char *, va_list), va_list ap)
{
    va_list aq;
    int n;

    va_copy(aq, ap);
    n = fast_u(s, fmt, aq);
    va_end(aq);
    return n != -2 ? n : vscan(s, fmt, ap);
}

int
sscanf(const char *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = scan(s, fmt, vsscanf, ap);
    va_end(ap);
    return n;
}

int
__isoc99_sscanf(const char *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = scan(s, fmt, __isoc99_vsscanf, ap);
    va_end(ap);
    return n;
}
