/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * net.h - socket address helpers.
 * Threads: any (net_resolve blocks: worker threads only).
 */
#ifndef SLUICE_NET_H
#define SLUICE_NET_H

#include <stddef.h>
#include <sys/socket.h>

#define NET_ADDR_MAX 64 /* "ffff:...:255.255.255.255" + NUL */

/* Numeric address (IPv4-mapped IPv6 shown as IPv4) into out; port into
 * *port when port != NULL. Returns out ("unknown" on failure). */
char *net_ntop(const struct sockaddr *sa, char *out, size_t n, int *port);
int net_nonblock(int fd);
/* TCP_NODELAY: every protocol here writes a whole request or reply at a
 * time and then waits for the answer, so Nagle's algorithm only adds a
 * delayed-ACK wait (up to 40 ms) to small trailing writes. Errors are
 * ignored (not a TCP socket). net_connect() sets it on TCP sockets. */
void net_nodelay(int fd);
/* TCP_QUICKACK, to be set again after every read (the kernel drops back
 * to delayed ACKs): for a peer that sends one answer in several small
 * writes without TCP_NODELAY (libmilter's modifications, then its final
 * reply), Nagle holds each write until our ACK, which would otherwise
 * come 40 ms later. */
void net_quickack(int fd);
/* Non-blocking listening socket on a numeric host (NULL = any) and port;
 * IPv6 sockets are IPV6_V6ONLY. -1 with errno on failure. */
int net_listen(const char *host, const char *port, int family);
/* Start a non-blocking connect to a numeric address: fd, or -1. */
int net_connect(const struct sockaddr *sa, socklen_t len);
/* The same from a local address (from, flen; from NULL: the kernel's
 * choice). When the bind fails the connect goes ahead from the kernel's
 * choice, as Postfix's smtp does, and *bind_err holds its errno (else 0). */
int net_connect_from(const struct sockaddr *sa, socklen_t len,
                     const struct sockaddr *from, socklen_t flen,
                     int *bind_err);
/* A numeric address of family af (AF_INET or AF_INET6; IPv6 with or
 * without []) with port 0 into *ss, *len: 0, or -1 when it is not one. */
int net_addr_parse(const char *text, int af, struct sockaddr_storage *ss,
                   socklen_t *len);
/* Split "host:port", "[v6]:port", "host" into host and port (port NULL
 * or default when absent). Writes NULs into s. 0 or -1. */
int net_split_hostport(char *s, char **host, char **port);

#endif
