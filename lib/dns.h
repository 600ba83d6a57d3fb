/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dns.h - asynchronous DNS lookups on a libev loop, through libunbound.
 * A dns is one libunbound context in its threaded asynchronous mode: its
 * resolver thread does the network work, the loop watches the context's
 * result descriptor and runs ub_process(), which calls each query's
 * callback on the loop thread. Each query also has a deadline of its own
 * (the timeout given to dns_new), so a resolver that never answers costs
 * a temporary failure, not a stuck delivery.
 * The servers: "" reads /etc/resolv.conf (and without a nameserver there
 * libunbound resolves from the root itself); otherwise a list of
 * forwarders, "127.0.0.1", "127.0.0.1:5353", "[::1]:5353" (what the
 * system tests use, and an operator who wants one resolver for mail).
 * No DNSSEC validation (no trust anchor is configured) and no
 * /etc/hosts: the SMTP client's "dns" lookups are DNS lookups, as
 * Postfix's are.
 * The rdata parsers below are pure functions of their bytes (fuzzed by
 * tests/fuzz/fuzz_dns.c); names come out as lower-case dotted text
 * without the final dot, and a name that is not a host name (a label
 * with other bytes than letters, digits, '-' and '_') is refused.
 * Owns: the libunbound context, its watcher and every query until its
 * callback has run or it is cancelled. Borrows: the loop.
 * Threads: everything on the loop thread (libunbound's own thread is
 * internal to it).
 */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <ev.h>
#include <stddef.h>

#include "lib/buf.h"

#define DNS_T_A    1
#define DNS_T_NS   2
#define DNS_T_PTR  12
#define DNS_T_MX   15
#define DNS_T_TXT  16
#define DNS_T_AAAA 28

#define DNS_NAME_MAX 254 /* dotted text, without the final dot, with NUL */

enum dns_status {
    DNS_OK,       /* records of the type asked for */
    DNS_NOTFOUND, /* NXDOMAIN */
    DNS_NODATA,   /* the name exists, but has no record of that type */
    DNS_TEMP,     /* SERVFAIL, REFUSED, no answer in time: try later */
    DNS_INVAL     /* the name asked for is not a valid host name */
};

/* One answer, given to the callback; valid only while it runs. */
struct dns_answer {
    enum dns_status status;
    const char *why; /* Postfix's words for the status: "Host not found" */
    size_t n;        /* records */
    const unsigned char *const *rdata;
    const int *len;
};

typedef void dns_cb(void *arg, const struct dns_answer *a);

struct dns;
struct dns_query;

/* servers: a NULL-terminated list as above (sluice_dns_servers; none:
 * /etc/resolv.conf's); timeout: seconds per query. NULL and the reason
 * in err when the list is bad or libunbound refuses it. */
struct dns *dns_new(struct ev_loop *loop, char *const *servers, double timeout,
                    struct buf *err);
/* Cancels the queries still open (their callbacks are not called). */
void dns_free(struct dns *d);
/* Look up name (dotted text, a final dot allowed) for type. cb runs
 * later on the loop thread, never from inside dns_lookup; returns a
 * handle for dns_cancel until then. */
struct dns_query *dns_lookup(struct dns *d, const char *name, int type,
                             dns_cb *cb, void *arg);
/* The callback will not run. q must not have completed. */
void dns_cancel(struct dns_query *q);

/* The servers setting's syntax alone (sluice check): 0, or -1 and the
 * reason in err. */
int dns_servers_check(char *const *servers, struct buf *err);
/* A host name as DNS may carry it: labels of letters, digits, '-' and
 * '_', 1..63 bytes each, 253 in all, a final dot allowed. 1 or 0. */
int dns_valid_name(const char *name);
/* An uncompressed wire-format name at p (at most len bytes) into out as
 * dotted text: the bytes it took, or -1 when it is malformed, runs past
 * len, or is not a host name. The root is "" (one zero byte). */
int dns_name_text(const unsigned char *p, size_t len, char out[DNS_NAME_MAX]);
/* MX rdata: preference and exchange host; 0, or -1 when malformed
 * (trailing bytes included). */
int dns_mx_parse(const unsigned char *rd, size_t len, unsigned *pref,
                 char host[DNS_NAME_MAX]);
/* "A", "AAAA", "MX", ..., or the number. */
const char *dns_strtype(int type);

#endif
