/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_resolve.h - the SMTP client's next-hop addresses, found as
 * Postfix's smtp(8) finds them (smtp_addr.c), through lib/dns.
 * A next hop written without [] is a mail domain: its MX records are
 * looked up, sorted by preference (equal ones shuffled with
 * smtp_randomize_addresses), and each exchanger's A and AAAA records
 * (inet_protocols) give the addresses, at most smtp_mx_address_limit of
 * them. A domain without MX records (NXDOMAIN or no data) is its own
 * exchanger (RFC 5321 5.1). A null MX (RFC 7505) bounces with 5.1.0.
 * A [host] next hop, and every exchanger, is looked up as a host (A,
 * AAAA); an IP address in an MX record is taken as it is.
 * Loops: when one of the addresses is this Sluice's own (the listener
 * addresses and ports the master bound, see struct dlv_self, or an
 * address in proxy_interfaces, any port), the list is cut before that
 * exchanger's preference; nothing left is "mail for D loops back to
 * myself" (5.4.6), or "unable to find primary relay for D" (4.4.4) when
 * better exchangers had no address.
 * Failures and their words are Postfix's: a temporary DNS failure
 * defers with 4.4.3, a name that does not exist or has no address
 * bounces with 5.4.4 ("Host or domain name not found. Name service error
 * for name=D type=MX: Host not found, try again").
 * Owns: the lookups in flight until the callback runs or
 * dlv_resolve_cancel. Borrows: dns, loop, opts and self, until then.
 * Threads: loop thread.
 */
#ifndef SLUICE_DLV_RESOLVE_H
#define SLUICE_DLV_RESOLVE_H

#include <sys/socket.h>

#include "lib/dns.h"
#include "queue/dlv.h"

#define DLV_ADDR_MAX 16 /* addresses tried per next hop, at most */
#define DLV_MX_MAX   10 /* exchangers looked up per domain */

struct dlv_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    unsigned pref;
    char host[DNS_NAME_MAX]; /* the exchanger's name, or the host's */
};

/* This mail system's own addresses (loop detection): exact address and
 * port for listeners, any port for proxy_interfaces. */
struct dlv_self {
    struct sockaddr_storage *ss;
    size_t n;
    struct sockaddr_storage *proxy;
    size_t nproxy;
};

struct dlv_resolve_opts {
    int mx;              /* the next hop is a domain: MX first */
    int v4, v6;          /* inet_protocols */
    int randomize;       /* smtp_randomize_addresses */
    unsigned addr_limit; /* smtp_mx_address_limit; 0: DLV_ADDR_MAX */
    int ignore_mx_error; /* ignore_mx_lookup_error */
    int prefer;          /* smtp_address_preference: AF_INET, AF_INET6, 0 */
};

struct dlv_resolve_result {
    enum dlv_status status; /* DLV_SENT: addresses found */
    char dsn[16];
    char text[600];
    struct dlv_addr addrs[DLV_ADDR_MAX];
    size_t n;
};

/* The result is the resolver's: valid while cb runs. */
typedef void dlv_resolve_cb(void *arg, const struct dlv_resolve_result *r);

struct dlv_resolve;

/* name: the domain or host (no []), at most DNS_NAME_MAX - 1 bytes
 * (longer: the callback says it is invalid); port: for every address.
 * cb runs later on the loop thread, never from inside this call. */
struct dlv_resolve *dlv_resolve_start(struct dns *dns, struct ev_loop *loop,
                                      const char *name, int port,
                                      const struct dlv_resolve_opts *opts,
                                      const struct dlv_self *self,
                                      dlv_resolve_cb *cb, void *arg);
/* Stop; the callback will not run. */
void dlv_resolve_cancel(struct dlv_resolve *r);

/* The parts the system tests cannot reach alone (unit-tested): is sa
 * one of self's addresses; sort (stable, by preference) and limit. */
int dlv_resolve_is_self(const struct dlv_self *self,
                        const struct sockaddr_storage *sa);
void dlv_resolve_sort(struct dlv_addr *a, size_t n, int randomize);
/* Within each run of equal preference, the addresses of family first
 * (AF_INET or AF_INET6; 0: no change), stable. */
void dlv_resolve_prefer(struct dlv_addr *a, size_t n, int family);

#endif
