/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tls.c - OpenSSL set-up for the SMTP server (tls.h is the spec).
 * The context: the certificate chain and key, the versions allowed,
 * no renegotiation, the server's cipher order, partial writes on a
 * moving buffer (the session's output buffer shifts as it drains), and
 * buffers released while a connection is idle (10,000 idle sessions).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/tls.h"
#include "lib/xalloc.h"

struct tls_srv {
    SSL_CTX *ctx;
};

static const struct {
    const char *name;
    int version; /* 0: SSLv2, never offered */
    long no_opt;
} tls_versions[] = {
    {"SSLv2", 0, 0},
    {"SSLv3", SSL3_VERSION, SSL_OP_NO_SSLv3},
    {"TLSv1", TLS1_VERSION, SSL_OP_NO_TLSv1},
    {"TLSv1.1", TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
    {"TLSv1.2", TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
    {"TLSv1.3", TLS1_3_VERSION, SSL_OP_NO_TLSv1_3},
};
#define TLS_NVERSIONS ((int) (sizeof(tls_versions) / sizeof(tls_versions[0])))

static int
tls_version_index(const char *name, size_t len)
{
    for (int i = 0; i < TLS_NVERSIONS; i++)
        if (strlen(tls_versions[i].name) == len
            && strncasecmp(tls_versions[i].name, name, len) == 0)
            return i;
    return -1;
}

int
tls_protocols(const char *spec, int *minv, int *maxv, long *no_opts,
              struct buf *err)
{
    unsigned incl = 0, excl = 0, all = 0, mask;
    int lo = 0, hi = TLS_NVERSIONS - 1, i, first = -1, last = -1;
    const char *p = spec ? spec : "";

    for (i = 1; i < TLS_NVERSIONS; i++)
        all |= 1u << i;
    while (*p) {
        size_t len = strcspn(p, ", \t:");
        const char *name = p;
        int op = 0, idx;

        if (len == 0) {
            p++;
            continue;
        }
        if (name[0] == '!')
            op = '!';
        else if (len > 2
                 && (strncmp(name, ">=", 2) == 0
                     || strncmp(name, "<=", 2) == 0))
            op = name[0];
        idx = tls_version_index(name
                                    + (op == '!' ? 1
                                       : op      ? 2
                                                 : 0),
                                len
                                    - (op == '!' ? 1
                                       : op      ? 2
                                                 : 0));
        if (idx < 0) {
            buf_printf(err, "unknown TLS protocol \"%.*s\"", (int) len, name);
            return -1;
        }
        if (op == '!')
            excl |= 1u << idx;
        else if (op == '>')
            lo = idx > lo ? idx : lo;
        else if (op == '<')
            hi = idx < hi ? idx : hi;
        else
            incl |= 1u << idx;
        p += len;
    }
    mask = (incl ? incl : all) & all & ~excl;
    for (i = 0; i < TLS_NVERSIONS; i++)
        if (i < lo || i > hi)
            mask &= ~(1u << i);
    for (i = 0; i < TLS_NVERSIONS; i++)
        if (mask & (1u << i)) {
            if (first < 0)
                first = i;
            last = i;
        }
    if (first < 0) {
        buf_printf(err, "no TLS protocol left in \"%s\"", spec ? spec : "");
        return -1;
    }
    *minv = tls_versions[first].version;
    *maxv = tls_versions[last].version;
    *no_opts = 0;
    for (i = first; i < last; i++)
        if (!(mask & (1u << i)))
            *no_opts |= tls_versions[i].no_opt;
    return 0;
}

const char *
tls_errors(char *out, size_t n)
{
    unsigned long e;
    size_t used = 0;

    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];

        ERR_error_string_n(e, one, sizeof(one));
        if (used < n)
            used += (size_t) snprintf(out + used, n - used, "%s%s",
                                      used ? "; " : "", one);
    }
    return out;
}

int
tls_handshake(SSL *ssl, char *why, size_t n)
{
    int rc, res;

    ERR_clear_error();
    errno = 0;
    why[0] = '\0';
    rc = SSL_do_handshake(ssl);
    res = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, rc);
    if (res == SSL_ERROR_NONE || res == SSL_ERROR_WANT_READ
        || res == SSL_ERROR_WANT_WRITE)
        return res;
    if (res == SSL_ERROR_SYSCALL && errno != 0)
        snprintf(why, n, "%s", strerror(errno));
    else if (tls_errors(why, n)[0] == '\0')
        snprintf(why, n, "lost connection");
    ERR_clear_error();
    return res;
}

enum tls_io
tls_io_status(SSL *ssl, int rc, char *why, size_t n)
{
    int e = errno; /* the caller cleared it before the call */

    why[0] = '\0';
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_CLOSED;
    case SSL_ERROR_SYSCALL:
        tls_errors(why, n);
        if (e == 0)
            return TLS_IO_EOF;
        errno = e;
        return TLS_IO_ERROR;
    default:
        tls_errors(why, n);
        errno = EPROTO;
        return TLS_IO_ERROR;
    }
}

ssize_t
tls_conn_io(struct tls_conn *c, int writing, void *p, size_t n, char *why,
            size_t whyn)
{
    size_t moved;
    int rc;

    why[0] = '\0';
    if (c->failed) {
        errno = writing ? EPIPE : EPROTO;
        return -1;
    }
    if (writing)
        c->wr_wr = 0;
    else
        c->rd_ww = 0;
    ERR_clear_error(); /* SSL_get_error reads the queue */
    errno = 0;
    rc = writing ? SSL_write_ex(c->ssl, p, n, &moved)
                 : SSL_read_ex(c->ssl, p, n, &moved);
    if (rc == 1)
        return (ssize_t) moved;
    switch (tls_io_status(c->ssl, rc, why, whyn)) {
    case TLS_IO_WANT_READ:
        c->wr_wr = writing;
        errno = EAGAIN;
        return -1;
    case TLS_IO_WANT_WRITE:
        c->rd_ww = !writing;
        errno = EAGAIN;
        return -1;
    case TLS_IO_CLOSED:
        break;
    case TLS_IO_EOF:
        c->failed = 1;
        break;
    case TLS_IO_ERROR:
        c->failed = 1;
        return -1;
    }
    if (writing) { /* the peer is gone: a write fails */
        errno = EPIPE;
        return -1;
    }
    return 0;
}

/* A file that cannot be read says so plainly (OpenSSL's text for a
 * missing file is a "system library" code). */
static int
tls_readable(const char *what, const char *file, struct buf *err)
{
    if (access(file, R_OK) == 0)
        return 0;
    buf_printf(err, "cannot get %s from file \"%s\": %s", what, file,
               strerror(errno));
    return -1;
}

struct tls_srv *
tls_srv_new(const char *cert, const char *key, const char *protocols,
            struct buf *err)
{
    struct tls_srv *t;
    SSL_CTX *ctx;
    char why[512];
    int minv, maxv;
    long no_opts;

    if (key == NULL || *key == '\0')
        key = cert;
    if (tls_protocols(protocols, &minv, &maxv, &no_opts, err) < 0)
        return NULL;
    if (tls_readable("certificate", cert, err) < 0
        || tls_readable("private key", key, err) < 0)
        return NULL;
    ERR_clear_error();
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        buf_printf(err, "cannot make a TLS context: %s",
                   tls_errors(why, sizeof(why)));
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        buf_printf(err, "cannot get certificate from file \"%s\": %s", cert,
                   tls_errors(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        /* a key of the certificate's type but another pair is refused
         * here, one of another type by the check below */
        if (ERR_GET_REASON(ERR_peek_last_error())
            == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            buf_printf(err, "certificate and private key do not match (%s, %s)",
                       cert, key);
        } else
            buf_printf(err, "cannot get private key from file \"%s\": %s", key,
                       tls_errors(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        buf_printf(err, "certificate and private key do not match (%s, %s)",
                   cert, key);
        goto fail;
    }
    if (SSL_CTX_set_min_proto_version(ctx, minv) != 1
        || SSL_CTX_set_max_proto_version(ctx, maxv) != 1) {
        buf_printf(err, "cannot set the TLS protocols \"%s\": %s", protocols,
                   tls_errors(why, sizeof(why)));
        goto fail;
    }
    SSL_CTX_set_options(ctx, (uint64_t) no_opts | SSL_OP_NO_RENEGOTIATION
                                 | SSL_OP_CIPHER_SERVER_PREFERENCE
                                 | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                              | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                              | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *) "sluice", 6);
    t = xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    return t;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Trust anchors from cafile and capath (empty: none); one that does not
 * load is said in warn. */
static void
tls_load_ca(SSL_CTX *ctx, const char *cafile, const char *capath,
            struct buf *warn)
{
    const char *f = cafile && *cafile ? cafile : NULL;
    const char *d = capath && *capath ? capath : NULL;
    char why[512];

    if ((f || d) && SSL_CTX_load_verify_locations(ctx, f, d) != 1)
        buf_printf(warn, "cannot load the trusted CA certificates (%s%s%s): %s",
                   f ? f : "", f && d ? ", " : "", d ? d : "",
                   tls_errors(why, sizeof(why)));
}

/* Client certificates are judged after the handshake, never by it. */
static int
tls_srv_verify_cb(int ok, X509_STORE_CTX *ctx)
{
    (void) ok;
    (void) ctx;
    return 1;
}

void
tls_srv_ccert(struct tls_srv *t, const char *cafile, const char *capath,
              int depth, struct buf *warn)
{
    tls_load_ca(t->ctx, cafile, capath, warn);
    if (cafile && *cafile) { /* the issuers the client may choose from */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);

        if (names)
            SSL_CTX_set_client_CA_list(t->ctx, names);
        ERR_clear_error();
    }
    /* one more than allowed, so that a longer chain is noticed */
    SSL_CTX_set_verify_depth(t->ctx, depth + 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, tls_srv_verify_cb);
}

int
tls_digest_ok(const char *digest)
{
    return EVP_get_digestbyname(digest) != NULL;
}

/* "AB:CD:..." of n bytes. */
static void
tls_hex(const unsigned char *md, unsigned n, char *out, size_t outsz)
{
    size_t o = 0;

    out[0] = '\0';
    for (unsigned i = 0; i < n && o + 4 <= outsz; i++)
        o += (size_t) snprintf(out + o, outsz - o, "%s%02X", i ? ":" : "",
                               md[i]);
}

/* A name's CommonName (or, for an issuer without one, its organisation),
 * printable. */
static void
tls_name_cn(const X509_NAME *name, int org, char *out, size_t outsz)
{
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *d;
    const unsigned char *p;
    int n;

    out[0] = '\0';
    if (i < 0 && org)
        i = X509_NAME_get_index_by_NID(name, NID_organizationName, -1);
    if (i < 0)
        return;
    d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    p = ASN1_STRING_get0_data(d);
    n = ASN1_STRING_length(d);
    for (int k = 0; k < n && (size_t) k + 1 < outsz; k++)
        out[k] = p[k] >= 0x20 && p[k] < 0x7f ? (char) p[k] : '?';
    out[(size_t) n < outsz ? (size_t) n : outsz - 1] = '\0';
}

void
tls_peer_get(SSL *ssl, const char *digest, struct tls_peer *p)
{
    X509 *peer = SSL_get1_peer_certificate(ssl);
    const EVP_MD *md = EVP_get_digestbyname(digest);
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    long vr;

    memset(p, 0, sizeof(*p));
    if (peer == NULL)
        return;
    p->present = 1;
    vr = SSL_get_verify_result(ssl);
    p->trusted = vr == X509_V_OK;
    if (!p->trusted)
        snprintf(p->verify, sizeof(p->verify), "%s",
                 X509_verify_cert_error_string(vr));
    tls_name_cn(X509_get_subject_name(peer), 0, p->cn, sizeof(p->cn));
    tls_name_cn(X509_get_issuer_name(peer), 1, p->issuer, sizeof(p->issuer));
    if (md && X509_digest(peer, md, buf, &n) == 1)
        tls_hex(buf, n, p->fp, sizeof(p->fp));
    if (md) { /* of the DER SubjectPublicKeyInfo, as Postfix's */
        unsigned char *der = NULL;
        int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(peer), &der);

        if (len > 0 && EVP_Digest(der, (size_t) len, buf, &n, md, NULL) == 1)
            tls_hex(buf, n, p->pkey_fp, sizeof(p->pkey_fp));
        OPENSSL_free(der);
    }
    X509_free(peer);
    ERR_clear_error();
}

void
tls_srv_free(struct tls_srv *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *
tls_srv_ssl(struct tls_srv *t, int fd)
{
    SSL *ssl = SSL_new(t->ctx);

    if (ssl == NULL)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

struct tls_cli {
    SSL_CTX *ctx;
    int minv[2], maxv[2];
    long no_opts[2];
};

struct tls_cli *
tls_cli_new(const char *cafile, const char *capath, const char *protocols,
            const char *mandatory, struct buf *err, struct buf *warn)
{
    struct tls_cli *t = xcalloc(1, sizeof(*t));
    char why[512];

    if (tls_protocols(protocols, &t->minv[0], &t->maxv[0], &t->no_opts[0], err)
            < 0
        || tls_protocols(mandatory, &t->minv[1], &t->maxv[1], &t->no_opts[1],
                         err)
               < 0) {
        free(t);
        return NULL;
    }
    ERR_clear_error();
    if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        buf_printf(err, "cannot make a TLS context: %s",
                   tls_errors(why, sizeof(why)));
        free(t);
        return NULL;
    }
    tls_load_ca(t->ctx, cafile, capath, warn);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(t->ctx,
                        SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                                 | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
                                 | SSL_MODE_RELEASE_BUFFERS);
    return t;
}

void
tls_cli_free(struct tls_cli *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

static int
tls_is_ip(const char *h)
{
    unsigned char a[16];

    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* One expected name: an IP literal as the IP to match, else a DNS name
 * (a leading dot: any subdomain). */
static void
tls_expect(SSL *ssl, const char *name, int *first)
{
    if (tls_is_ip(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        return;
    }
    if (*first)
        SSL_set1_host(ssl, name);
    else
        SSL_add1_host(ssl, name);
    *first = 0;
}

SSL *
tls_cli_ssl(struct tls_cli *t, int fd, int mandatory, const char *host,
            const char *nexthop, const char *match)
{
    SSL *ssl = SSL_new(t->ctx);
    int m = mandatory ? 1 : 0, first = 1;

    if (ssl == NULL)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_min_proto_version(ssl, t->minv[m]);
    SSL_set_max_proto_version(ssl, t->maxv[m]);
    SSL_set_options(ssl, (uint64_t) t->no_opts[m]);
    if (!tls_is_ip(host))
        SSL_set_tlsext_host_name(ssl, host);
    if (match == NULL || *match == '\0') {
        tls_expect(ssl, host, &first);
    } else {
        const char *p = match;

        while (*p) {
            size_t n = strcspn(p, ":, \t");
            char name[256];

            if (n > 0 && n < sizeof(name)) {
                memcpy(name, p, n);
                name[n] = '\0';
                if (strcasecmp(name, "hostname") == 0)
                    tls_expect(ssl, host, &first);
                else if (strcasecmp(name, "nexthop") == 0)
                    tls_expect(ssl, nexthop, &first);
                else if (strcasecmp(name, "dot-nexthop") == 0) {
                    if (!tls_is_ip(nexthop)) { /* an address has none */
                        snprintf(name, sizeof(name), ".%s", nexthop);
                        tls_expect(ssl, name, &first);
                    }
                } else
                    tls_expect(ssl, name, &first);
            }
            p += n;
            if (*p)
                p++;
        }
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

enum tls_trust
tls_cli_trust(SSL *ssl)
{
    long r;

    if (SSL_get0_peer_certificate(ssl) == NULL)
        return TLS_ANONYMOUS;
    r = SSL_get_verify_result(ssl);
    if (r == X509_V_OK)
        return TLS_VERIFIED;
    if (r == X509_V_ERR_HOSTNAME_MISMATCH || r == X509_V_ERR_IP_ADDRESS_MISMATCH
        || r == X509_V_ERR_EMAIL_MISMATCH)
        return TLS_TRUSTED; /* the chain was good: names come after it */
    return TLS_UNTRUSTED;
}

const char *
tls_trust_name(enum tls_trust t)
{
    switch (t) {
    case TLS_ANONYMOUS:
        return "Anonymous";
    case TLS_UNTRUSTED:
        return "Untrusted";
    case TLS_TRUSTED:
        return "Trusted";
    case TLS_VERIFIED:
        return "Verified";
    }
    return "Untrusted";
}

void
tls_info_get(SSL *ssl, struct tls_info *ti)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

    snprintf(ti->version, sizeof(ti->version), "%s", SSL_get_version(ssl));
    snprintf(ti->cipher, sizeof(ti->cipher), "%s",
             c ? SSL_CIPHER_get_name(c) : "unknown");
    ti->bits = c ? SSL_CIPHER_get_bits(c, &ti->alg_bits) : 0;
    if (c == NULL)
        ti->alg_bits = 0;
    snprintf(ti->line, sizeof(ti->line), "%s with cipher %s (%d/%d bits)",
             ti->version, ti->cipher, ti->bits, ti->alg_bits);
}
