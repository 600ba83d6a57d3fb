/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tls.h - OpenSSL set-up for the SMTP server's STARTTLS (and wrapper mode).
 * tls_srv_new() loads a certificate and key into a server context, with
 * the protocol versions a Postfix-style list allows; tls_srv_ssl() makes
 * one connection's SSL object on a non-blocking socket. The handshake
 * and the reads and writes are the caller's (proxy/smtpd.c).
 * Owns: its SSL_CTX. Threads: any (an SSL object in one thread at a time).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "lib/buf.h"

struct tls_srv;

/* Postfix's protocol list ("!SSLv2, !SSLv3", ">=TLSv1.2", "TLSv1.3"):
 * the lowest and highest version allowed (TLS1_VERSION...) and the
 * SSL_OP_NO_* options for versions excluded between them. 0, or -1 with
 * the reason in err (an unknown name, or nothing left). */
int tls_protocols(const char *spec, int *minv, int *maxv, long *no_opts,
                  struct buf *err);

/* A server context for cert (PEM chain, may hold the key too) and key,
 * restricted to protocols (tls_protocols syntax). NULL with the reason
 * in err: 'cannot get certificate from file "F": why', 'cannot get
 * private key from file "F": why', 'certificate and private key do not
 * match (F, K)' or the protocol list's error. */
struct tls_srv *tls_srv_new(const char *cert, const char *key,
                            const char *protocols, struct buf *err);
void tls_srv_free(struct tls_srv *t);

/* A server-side SSL object on fd, or NULL (out of memory). */
SSL *tls_srv_ssl(struct tls_srv *t, int fd);

/* The calling thread's OpenSSL errors as one line ("" when none), and
 * the queue emptied. */
const char *tls_errors(char *out, size_t n);

/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" of an
 * established connection, as Postfix logs it; also each part apart. */
struct tls_info {
    char version[32];
    char cipher[64];
    int bits, alg_bits;
    char line[160];
};
void tls_info_get(SSL *ssl, struct tls_info *ti);

#endif
