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
#include <sys/types.h>

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
/* Ask each client of t for a certificate (smtpd_tls_ask_ccert), trusting
 * cafile and capath (either may be empty; cafile's names are sent as the
 * acceptable issuers) down to depth intermediates. The handshake never
 * fails for a certificate: tls_peer_get says what it proved. A CA file
 * or directory that does not load is said in warn (nothing is trusted
 * then). */
void tls_srv_ccert(struct tls_srv *t, const char *cafile, const char *capath,
                   int depth, struct buf *warn);
/* The peer's certificate after a handshake, as Postfix reports it. */
#define TLS_FPRINT_MAX 200 /* "AB:CD:..." of a SHA-512 digest, and NUL */
struct tls_peer {
    int present;                  /* a certificate was presented */
    int trusted;                  /* and it chains to a trusted CA */
    char cn[256];                 /* its subject's CommonName ("" when none) */
    char issuer[256];             /* its issuer's CommonName, or organisation */
    char fp[TLS_FPRINT_MAX];      /* digest of the certificate */
    char pkey_fp[TLS_FPRINT_MAX]; /* digest of its public key */
    char verify[128];             /* why it is not trusted, or "" */
};
/* digest: an OpenSSL digest name (smtpd_tls_fingerprint_digest, "sha256");
 * an unknown one leaves the fingerprints empty. */
void tls_peer_get(SSL *ssl, const char *digest, struct tls_peer *p);
/* Is digest an OpenSSL digest name? */
int tls_digest_ok(const char *digest);

/* The SMTP client's context: trust anchors (cafile, capath; either may
 * be empty: Postfix trusts no other CA by default, tls_append_default_CA
 * = no) and the versions for opportunistic (protocols) and mandatory TLS
 * (mandatory). Certificates are checked after the handshake
 * (tls_cli_trust), never during it. NULL with the reason in err (a
 * protocol list); a CA file or directory that does not load is said in
 * warn, and the context is made all the same (nothing verifies then). */
struct tls_cli;
struct tls_cli *tls_cli_new(const char *cafile, const char *capath,
                            const char *protocols, const char *mandatory,
                            struct buf *err, struct buf *warn);
void tls_cli_free(struct tls_cli *t);

/* A client SSL object on fd for host (the server's name: SNI when it is
 * a name), with the mandatory versions or not, expecting the names in
 * match (":" or "," separated; "hostname" stands for host, "nexthop" for
 * nexthop, the domain whose MX host is host or host itself, and
 * "dot-nexthop" for nexthop's subdomains) or, without match, host itself
 * (an IP literal matches an IP subjectAltName). NULL: out of memory. */
SSL *tls_cli_ssl(struct tls_cli *t, int fd, int mandatory, const char *host,
                 const char *nexthop, const char *match);

/* What the server's certificate proved, in Postfix's words. */
enum tls_trust {
    TLS_ANONYMOUS, /* no certificate */
    TLS_UNTRUSTED, /* not from a trusted CA */
    TLS_TRUSTED,   /* from a trusted CA, without the expected name */
    TLS_VERIFIED   /* from a trusted CA, with the expected name */
};
enum tls_trust tls_cli_trust(SSL *ssl);
const char *tls_trust_name(enum tls_trust t); /* "Verified", ... */

/* One step of a handshake on a non-blocking socket (worker threads
 * too): SSL_ERROR_NONE when it is done, SSL_ERROR_WANT_READ or
 * SSL_ERROR_WANT_WRITE to wait for the socket, another SSL_ERROR_* when
 * it failed, with the reason in why ("lost connection" at a plain EOF).
 * The thread's error queue is left empty. */
int tls_handshake(SSL *ssl, char *why, size_t n);

/* What SSL_read_ex or SSL_write_ex returning rc (not 1) on a
 * non-blocking socket means. After TLS_IO_EOF and TLS_IO_ERROR the only
 * SSL call left is SSL_free (no close_notify). */
enum tls_io {
    TLS_IO_WANT_READ,  /* wait for the socket to be readable */
    TLS_IO_WANT_WRITE, /* or writable */
    TLS_IO_CLOSED,     /* the peer's close_notify */
    TLS_IO_EOF,        /* the connection ended without it */
    TLS_IO_ERROR       /* errno set (EPROTO: OpenSSL's reason in why) */
};
enum tls_io tls_io_status(SSL *ssl, int rc, char *why, size_t n);

/* A connection's TLS state, kept by its session. */
struct tls_conn {
    SSL *ssl;   /* from the handshake on; NULL in clear */
    int on;     /* handshake done: all I/O through ssl */
    int failed; /* TLS_IO_EOF or TLS_IO_ERROR: no SSL call but SSL_free */
    int rd_ww;  /* a read waits for the socket to be writable */
    int wr_wr;  /* a write waits for it to be readable */
};

/* recv() (writing 0) or send() (writing 1) of at most n bytes through
 * c->ssl on a non-blocking socket, as those calls answer: the bytes
 * moved; 0 at the end (close_notify, or EOF: c->failed); -1 with errno:
 * EAGAIN when the socket must be ready first (c->rd_ww or c->wr_wr says
 * when that is the other direction), else an error (c->failed, and
 * OpenSSL's reason in why when it has one). */
ssize_t tls_conn_io(struct tls_conn *c, int writing, void *p, size_t n,
                    char *why, size_t whyn);

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
