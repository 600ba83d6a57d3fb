/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dnshosts.h - a domain's servers and their addresses, for the access
 * restrictions that judge a name by its MX hosts or DNS servers
 * (Postfix's check_*_mx_access, check_*_ns_access, check_*_a_access).
 * One lookup asks the domain's MX or NS records (type DNS_T_MX or
 * DNS_T_NS), then each host's A and AAAA records, all hosts at once; for
 * DNS_T_A the name itself is the one host. As Postfix's
 * check_server_access:
 *   - MX: a name without MX records, or that does not exist, is its own
 *     MX host; a null MX (RFC 7505) is DNSHOSTS_NULLMX. The hosts come
 *     in order of preference.
 *   - NS: a name without NS records, or that does not exist, is
 *     DNSHOSTS_NOTFOUND (the caller walks up to the parent domain).
 *   - a temporary failure or a malformed reply is DNSHOSTS_FAILED.
 * At most DNSHOSTS_MAX hosts (more records are ignored) and
 * DNSHOSTS_MAX addresses per host. A host whose name is an IPv4 address
 * (an MX record may say "192.0.2.1") is looked up all the same; the
 * caller takes the name as the address.
 * Owns: the lookups until the callback, the answer until dnshosts_free.
 * Borrows: the dns. Threads: loop thread.
 */
#ifndef SLUICE_DNSHOSTS_H
#define SLUICE_DNSHOSTS_H

#include <stddef.h>

#include "lib/dns.h"

#define DNSHOSTS_MAX 100 /* Postfix's dns_rr_list_limit */

enum dnshosts_status {
    DNSHOSTS_OK,       /* v[0 .. n - 1] */
    DNSHOSTS_NOTFOUND, /* NS: none for that name */
    DNSHOSTS_NULLMX,
    DNSHOSTS_FAILED
};

struct dnshosts_host {
    char name[DNS_NAME_MAX];
    const char *why; /* NULL: addr holds what was found; else why no
                        address was ("Host not found") */
    char **addr;     /* "192.0.2.1", "2001:db8::1" */
    size_t naddr;
};

struct dnshosts_answer {
    enum dnshosts_status status;
    const char *why; /* NOTFOUND, FAILED: Postfix's words */
    struct dnshosts_host *v;
    size_t n;
};

struct dnshosts;

/* The answer is the lookup's, valid until dnshosts_free. */
typedef void dnshosts_cb(void *arg, const struct dnshosts_answer *a);

/* type: DNS_T_MX, DNS_T_NS or DNS_T_A. cb runs later on the loop thread,
 * never from inside this call. */
struct dnshosts *dnshosts_lookup(struct dns *d, const char *name, int type,
                                 dnshosts_cb *cb, void *arg);
/* Cancels what is still out (the callback will not run) and frees the
 * answer. NULL ok. */
void dnshosts_free(struct dnshosts *h);

#endif
