/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qmgr.c - the queue manager and delivery process.
 *
 * One libev loop. Messages come from incoming/ (named by a front in an
 * "N ID ID..." datagram on public/qmgr after each group commit; found by
 * a scan at start, every QMGR_INCOMING_SCAN seconds and on any other
 * datagram) and from deferred/ (a file's mtime is its next retry time;
 * scanned every queue_run_delay, or when the earliest one is due, or on
 * "F" = flush). Both directories are read in the pool, one scan of
 * each at a time (qmgr_scan_incoming, qmgr_scan_deferred).
 *
 * Life of a message (struct qmgr_msg, enum qmgr_mstate):
 *   TAKE     pool: spool_move to active/, spool_read; the first
 *            QMGR_LOOP_TAKES files a front named on the loop
 *            (qmgr_take_work called directly: files it has just
 *            committed, in the page cache)
 *   CORRUPT  pool: unreadable file renamed to corrupt/
 *   DELIVER  recipients routed and grouped into dlv_jobs, which wait in
 *            their destination's queue (concurrency limit) and run; each
 *            finished job's deliveries are marked in the file and synced
 *            in the pool (its failures wait for FINISH)
 *   FINISH   pool: the non-delivery notice for this pass's failures,
 *            then their marks (no notice queued: they stay pending and
 *            the message is deferred); final sync, then unlink (all
 *            done), or mtime = next retry and move to deferred/, or move
 *            to hold/ (expired);
 *            a delivered file with no notice to make needs no sync: its
 *            move into free/ (or unlink) runs on the loop
 *            (qmgr_finish_work called directly)
 * A file that vanishes under us (an admin deleted or moved it) is dropped
 * quietly. At start everything in active/ goes back to incoming/: the
 * recipients already marked in the file are never delivered again.
 *
 * SIGTERM/SIGINT: no new messages; running deliveries may finish for
 * QMGR_GRACE seconds, then the process exits at once (_exit(0)): the
 * unfinished messages stay in active/ and are recovered at next start.
 *
 * Owns: its messages, jobs, destinations, the socket, the transport_maps
 * tables and the worker pool. Borrows: the cf (read-only, checked).
 * Threads: the loop thread; the *_work functions run in the pool (or,
 * qmgr_finish_work in the case above, on the loop) and touch only their
 * own struct qmgr_msg.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/crypto.h>

#include "conf/cf.h"
#include "conf/lookup.h"
#include "lib/buf.h"
#include "lib/dns.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/tls.h"
#include "lib/wpool.h"
#include "lib/xalloc.h"
#include "queue/dlv.h"
#include "queue/dlv_alias.h"
#include "queue/dlv_resolve.h"
#include "queue/qmgr.h"
#include "queue/spool.h"
#include "queue/verify.h"

#define QMGR_HASH          1024 /* buckets of the in-flight ID table */
#define QMGR_INCOMING_SCAN 5.0  /* safety-net scan of incoming/, seconds */
#define QMGR_GRACE         5.0  /* shutdown grace, under the master's 10 s */
#define QMGR_DGRAMS        256  /* datagrams read per wake-up */
#define QMGR_DGRAM_MAX     4096 /* "N" and the IDs of one group commit */
#define QMGR_NOTIFIED_MAX  4096 /* notified IDs waiting for the kick */
#define QMGR_LOOP_TAKES    64   /* notified files per kick taken on the loop */
#define QMGR_NAME_MAX      255
#define QMGR_HOST_MAX      255
#define QMGR_NOTICE_MAX    65536 /* bounce: failure lines, original header */
#define QMGR_REASON_MAX    900   /* bounce: bytes of one failure reason */

enum qmgr_mstate {
    QMGR_M_TAKE,
    QMGR_M_CORRUPT,
    QMGR_M_DELIVER,
    QMGR_M_FINISH
};

enum qmgr_end {
    QMGR_END_REMOVE, /* no pending recipient: unlink */
    QMGR_END_DEFER,  /* move to deferred/, mtime = retry */
    QMGR_END_HOLD    /* expired: move to hold/ */
};

struct qmgr;

struct qmgr_msg {
    struct qmgr *q;
    char id[QMGR_NAME_MAX + 1]; /* file name */
    const char *from;           /* "incoming" or "deferred" */
    enum qmgr_mstate state;
    struct spool_msg *msg;
    struct buf *err;       /* worker's reason */
    int werr;              /* worker's errno; 0 = ok */
    int moved;             /* TAKE: the file is in active/ now */
    unsigned busy;         /* DELIVER: jobs + syncs not complete */
    int abandoned;         /* shutdown dropped a job: leave it in active/ */
    char **reason;         /* per recipient: last deferral text */
    unsigned char *failed; /* per recipient: failed for good in this pass,
                              its mark not yet written (qmgr_fail) */
    enum qmgr_end end;
    long long retry;    /* QMGR_END_DEFER: next try, unix seconds */
    struct buf *notice; /* failed recipients of this pass, for the bounce */
    size_t nfail;
    char bounce_id[SPOOL_ID_SIZE]; /* the bounce made, or "" */
    struct qmgr_msg *hnext;
};

struct qmgr_dest;

struct qmgr_job {
    struct dlv_job job; /* first member: done() hands us &job */
    struct qmgr_msg *m;
    struct qmgr_dest *dest;
    char *host;
    char *tls_match;
    char *sasl; /* "user\0password": job.sasl_user, job.sasl_pass */
    size_t sasl_len;
    struct qmgr_job *next; /* destination wait queue */
};

struct qmgr_dest {
    char *key; /* "transport:host:port" */
    unsigned active, limit;
    struct qmgr_job *head, *tail;
    struct qmgr_dest *next;
};

/* Where a recipient goes. */
enum qmgr_kind {
    QMGR_R_LOCAL,
    QMGR_R_SMTP,
    QMGR_R_ERROR, /* bounce now with text */
    QMGR_R_DEFER  /* cannot route now (table or config problem) */
};

struct qmgr_route {
    enum qmgr_kind kind;
    char *host; /* SMTP */
    int port;
    enum dlv_tls tls; /* SMTP: the next hop's TLS level */
    char *tls_match;  /* SMTP: its policy's match= names, or NULL */
    char *dest;       /* SMTP: the next hop as written ("[h]:587") */
    char *sasl;       /* SMTP: "user:password" for AUTH, or NULL */
    int mx;           /* SMTP: the next hop is a domain (written without []) */
    int lmtp;         /* SMTP: by LMTP (port 0: host is a unix socket) */
    char dsn[16];
    char *text; /* ERROR, DEFER */
};

struct qmgr {
    const struct cf *cf;
    const char *qdir;
    struct ev_loop *loop;
    struct wpool *pool;
    int sock;
    char *sock_path;
    ev_io sock_w;
    ev_timer incoming_t, deferred_t, kick_t, grace_t;
    ev_signal term_w, int_w;
    struct lookup_table **maps; /* transport_maps */
    size_t nmaps;
    struct lookup_table **tls_maps; /* smtp_tls_policy_maps */
    size_t ntls_maps;
    struct lookup_table **sasl_maps; /* smtp_sasl_password_maps */
    size_t nsasl_maps;
    struct lookup_table **sdrh_maps; /* sender_dependent_relayhost_maps */
    size_t nsdrh_maps;
    int sender_auth;         /* smtp_sender_dependent_authentication */
    const char *tls_level;   /* smtp_tls_security_level */
    int tls_global;          /* its enum dlv_tls, or < 0 (dlv_tls_parse) */
    char *tls_global_match;  /* and its match= names, or NULL */
    struct tls_cli *tls_cli; /* the SMTP client's TLS context, or NULL */
    struct dns *dns;         /* MX and address lookups, or NULL: no DNS */
    struct dlv_resolve_opts resolve, resolve_mx;
    struct dlv_self self;             /* our listeners and proxy_interfaces */
    struct lookup_dlist *mydest;      /* mydestination */
    struct lookup_dlist *valias;      /* virtual_alias_domains */
    struct lookup_table **alias_maps; /* alias_maps, for local delivery */
    size_t nalias;
    struct dlv_alias_opts alias;
    const char *relayhost;
    const char *myhostname;
    struct qmgr_msg *hash[QMGR_HASH];
    size_t nmsg, active_limit;
    unsigned conc, rcpt_limit;
    long long min_backoff, max_backoff, lifetime, run_delay;
    struct qmgr_dest *dests;
    struct verify *verify; /* the address verification service */
    char *verify_sender;   /* its probes' MAIL FROM */
    int ready;             /* startup recovery done */
    int stopping;
    int want_incoming, want_deferred, want_flush;
    int more_incoming, more_deferred; /* a scan stopped at the limit */
    char (*notified)[SPOOL_ID_SIZE];  /* new files a front named */
    size_t nnotified;
    int iscan_busy;     /* a scan of incoming/ is in the pool */
    int dscan_busy;     /* a scan of deferred/ is in the pool */
    double dscan_after; /* no scan of deferred/ before (but a flush) */
};

/* ------------------------------------------------------------------ */
/* Small helpers */

static double
qmgr_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double) tv.tv_sec + (double) tv.tv_usec / 1e6;
}

/* A queue file name as spool.c makes them: 14 upper-case hex digits. */
static int
qmgr_valid_id(const char *s)
{
    size_t i;

    for (i = 0; i < SPOOL_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return s[SPOOL_ID_LEN] == '\0';
}

static unsigned
qmgr_hash(const char *s)
{
    return hash_fnv1a(HASH_FNV_INIT, s) % QMGR_HASH;
}

static struct qmgr_msg *
qmgr_find(struct qmgr *q, const char *id)
{
    struct qmgr_msg *m;

    for (m = q->hash[qmgr_hash(id)]; m; m = m->hnext)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

static void
qmgr_kick(struct qmgr *q)
{
    if (!ev_is_active(&q->kick_t) && !q->stopping) {
        ev_timer_set(&q->kick_t, 0., 0.);
        ev_timer_start(q->loop, &q->kick_t);
    }
}

/* Frees m and its hash entry; the file stays wherever it is now. */
static void
qmgr_msg_free(struct qmgr_msg *m)
{
    struct qmgr *q = m->q;
    struct qmgr_msg **pp;
    size_t i;

    for (pp = &q->hash[qmgr_hash(m->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == m) {
            *pp = m->hnext;
            break;
        }
    if (m->reason && m->msg)
        for (i = 0; i < m->msg->env.nrcpt; i++)
            free(m->reason[i]);
    free(m->reason);
    free(m->failed);
    spool_msg_free(m->msg);
    buf_free(m->notice);
    buf_free(m->err);
    free(m);
    q->nmsg--;
    if (q->stopping) {
        if (q->nmsg == 0)
            ev_break(q->loop, EVBREAK_ALL);
    } else if (q->more_incoming || q->more_deferred) {
        qmgr_kick(q);
    }
}

static const char *
qmgr_state_name(enum qmgr_mstate st)
{
    switch (st) {
    case QMGR_M_TAKE:
        return "take";
    case QMGR_M_CORRUPT:
        return "corrupt";
    case QMGR_M_DELIVER:
        return "deliver";
    case QMGR_M_FINISH:
        return "finish";
    }
    return "?";
}

/* The one place a message changes state. */
static void
qmgr_enter(struct qmgr_msg *m, enum qmgr_mstate to)
{
    log_debug("%s: %s -> %s", m->id, qmgr_state_name(m->state),
              qmgr_state_name(to));
    m->state = to;
}

static char *
qmgr_safe(const char *s, char *out, size_t n)
{
    return log_safe(s, strlen(s), out, n);
}

/* ------------------------------------------------------------------ */
/* Routing */

static void
qmgr_route_reset(struct qmgr_route *r)
{
    free(r->host);
    free(r->text);
    free(r->tls_match);
    free(r->dest);
    if (r->sasl) /* a password: not left in freed memory */
        OPENSSL_cleanse(r->sasl, strlen(r->sasl));
    free(r->sasl);
    memset(r, 0, sizeof(*r));
}

static void qmgr_route_fail(struct qmgr_route *r, enum qmgr_kind kind,
                            const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
qmgr_route_fail(struct qmgr_route *r, enum qmgr_kind kind, const char *dsn,
                const char *fmt, ...)
{
    struct buf *b = buf_new(128, 1024);
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
    qmgr_route_reset(r);
    r->kind = kind;
    snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
    r->text = xstrdup(buf_data(b));
    buf_free(b);
}

static int
qmgr_port(const char *s)
{
    char *end;
    long v;

    if (strcmp(s, "smtp") == 0)
        return 25;
    if (strcmp(s, "lmtp") == 0)
        return 24;
    if (strcmp(s, "submission") == 0)
        return 587;
    if (strcmp(s, "submissions") == 0 || strcmp(s, "smtps") == 0)
        return 465;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 65535)
        return -1;
    return (int) v;
}

/* "[host]:port", "[host]", "host:port", "host" -> SMTP route; an empty
 * host means the domain itself. */
static void
qmgr_nexthop(const char *hop, const char *domain, const char *what,
             struct qmgr_route *r, int defport)
{
    const char *text = *hop ? hop : domain; /* for error messages */
    const char *bad = NULL;
    char *s = xstrdup(text), *host = NULL, *port = NULL;
    int p = defport;

    if (net_split_hostport(s, &host, &port) < 0) {
        bad = "next hop";
    } else {
        if (strncasecmp(host, "ipv6:", 5) == 0)
            host += 5;
        if (*host == '\0' && *hop)
            host = (char *) domain; /* "smtp:[]", "smtp::25" */
        if (port && (p = qmgr_port(port)) < 0)
            bad = "next-hop port";
        else if (*host == '\0' || strlen(host) > QMGR_HOST_MAX)
            bad = "next hop";
    }
    if (bad) {
        qmgr_route_fail(r, QMGR_R_DEFER, "4.3.5", "bad %s %s: %s", what, bad,
                        text);
    } else {
        qmgr_route_reset(r);
        r->kind = QMGR_R_SMTP;
        r->host = xstrdup(host);
        r->port = p;
        r->dest = xstrdup(text);
        r->mx = text[0] != '[';
    }
    free(s);
}

/* An lmtp next hop, as Postfix's lmtp(8) takes it: "unix:path" (a path
 * relative to queue_directory, as Postfix's chroot-less default), or
 * "inet:host:port", "[host]:port", "host" (port lmtp_tcp_port, 24). */
static void
qmgr_lmtp(const char *hop, const char *domain, int defport,
          struct qmgr_route *r)
{
    if (strncmp(hop, "unix:", 5) == 0) {
        const char *path = hop + 5;

        if (*path == '\0' || strlen(path) > 100) {
            qmgr_route_fail(r, QMGR_R_DEFER, "4.3.5", "bad lmtp next hop: %s",
                            hop);
            return;
        }
        qmgr_route_reset(r);
        r->kind = QMGR_R_SMTP;
        r->host = xstrdup(path);
        r->dest = xstrdup(hop);
        r->port = 0;
    } else {
        if (strncmp(hop, "inet:", 5) == 0)
            hop += 5;
        qmgr_nexthop(hop, domain, "lmtp", r, defport);
    }
    if (r->kind == QMGR_R_SMTP)
        r->lmtp = 1;
}

/* A transport_maps value: transport[:nexthop]. */
static void
qmgr_transport(struct qmgr *q, const char *val, const char *domain,
               struct qmgr_route *r)
{
    const char *colon = strchr(val, ':');
    size_t n = colon ? (size_t) (colon - val) : strlen(val);
    const char *hop = colon ? colon + 1 : "";

    while (*hop == ' ' || *hop == '\t')
        hop++;
    if (n == 5 && strncmp(val, "local", 5) == 0) {
        qmgr_route_reset(r);
        r->kind = QMGR_R_LOCAL;
    } else if (n == 5 && strncmp(val, "error", 5) == 0) {
        const char *t = hop;
        char dsn[16] = "5.0.0";
        size_t k = strspn(t, "0123456789.");

        /* optional "5.x.y" at the start of the text */
        if (t[0] == '5' && t[1] == '.' && k >= 5 && k < sizeof(dsn)
            && (t[k] == ' ' || t[k] == '\0')) {
            snprintf(dsn, sizeof(dsn), "%.*s", (int) k, t);
            t += k;
            while (*t == ' ')
                t++;
        }
        qmgr_route_fail(r, QMGR_R_ERROR, dsn, "%s",
                        *t ? t : "mail for this domain is not deliverable");
    } else if (n == 0 || (n == 4 && strncmp(val, "smtp", 4) == 0)
               || (n == 5 && strncmp(val, "relay", 5) == 0)) {
        qmgr_nexthop(hop, domain, "transport_maps", r, 25);
    } else if (n == 4 && strncmp(val, "lmtp", 4) == 0) {
        int p = qmgr_port(cf_str(q->cf, "lmtp_tcp_port"));

        qmgr_lmtp(hop, domain, p > 0 ? p : 24, r);
    } else {
        qmgr_route_fail(r, QMGR_R_DEFER, "4.3.0",
                        "mail transport unavailable: %.*s", (int) n, val);
    }
}

/* One key in every table, in order: 1 found, 0 not, -1 error. */
static int
qmgr_tables_get(struct lookup_table *const *t, size_t n, const char *key,
                struct buf *out)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++)
        if ((rc = lookup_get(t[i], key, out)) != 0)
            return rc;
    return 0;
}

static int
qmgr_map_get(struct qmgr *q, const char *key, struct buf *out)
{
    return qmgr_tables_get(q->maps, q->nmaps, key, out);
}

/* transport_maps: the domain, then its parents as ".parent.example",
 * then "*". 1 found (value in out), 0 not found, -1 error (in out). */
static int
qmgr_map_lookup(struct qmgr *q, const char *domain, struct buf *out)
{
    const char *d;
    int rc;

    if ((rc = qmgr_map_get(q, domain, out)) != 0)
        return rc;
    for (d = strchr(domain, '.'); d; d = strchr(d + 1, '.'))
        if (d[1] != '\0' && (rc = qmgr_map_get(q, d, out)) != 0)
            return rc;
    return qmgr_map_get(q, "*", out);
}

/* The TLS level for an SMTP next hop: smtp_tls_policy_maps by next hop
 * ("[host]:port" and "host:port", then "[host]" and "host", then the
 * host's parent domains as ".parent"), else smtp_tls_security_level. A
 * level this Sluice cannot honour, or a TLS engine that did not start
 * where TLS is required, makes the route a deferral (4.7.5), as Postfix
 * defers mail when its TLS engine is unavailable: never clear text
 * where the policy forbids it. */
static void
qmgr_tls_policy(struct qmgr *q, struct qmgr_route *r)
{
    struct buf *key = NULL, *val = NULL;
    const char *level = q->tls_level, *what = "smtp_tls_security_level";
    const char *d;
    char safe[256], *match = NULL;
    int rc = 0, m, k;

    if (q->ntls_maps == 0) {
        if (q->tls_global == DLV_TLS_NONE)
            return; /* clear text everywhere: nothing to look up */
        if (q->tls_global > DLV_TLS_NONE && q->tls_cli) {
            r->tls = (enum dlv_tls) q->tls_global;
            if (q->tls_global_match) /* parsed once, at start */
                r->tls_match = xstrdup(q->tls_global_match);
            return;
        }
    }
    if (q->ntls_maps > 0) {
        key = buf_new(64, BUF_NOCAP);
        val = buf_new(64, CF_VALUE_MAX);
        for (k = 0; rc == 0 && k < 4; k++) {
            buf_reset(key);
            buf_printf(key, k % 2 ? "%s" : "[%s]", r->host);
            if (k < 2)
                buf_printf(key, ":%d", r->port);
            rc = qmgr_tables_get(q->tls_maps, q->ntls_maps, buf_data(key), val);
        }
        for (d = strchr(r->host, '.'); rc == 0 && d; d = strchr(d + 1, '.'))
            if (d[1] != '\0')
                rc = qmgr_tables_get(q->tls_maps, q->ntls_maps, d, val);
        if (rc < 0) {
            qmgr_route_fail(r, QMGR_R_DEFER, "4.3.0",
                            "smtp_tls_policy_maps lookup failure: %s",
                            buf_data(val));
            goto out;
        }
        if (rc > 0) {
            level = buf_data(val);
            what = "smtp_tls_policy_maps";
        }
    }
    m = dlv_tls_parse(level, &match);
    if (m == -1) {
        qmgr_route_fail(r, QMGR_R_DEFER, "4.7.5",
                        "bad TLS security level in %s: %s", what,
                        qmgr_safe(level, safe, sizeof(safe)));
    } else if (m == -2) {
        level += strspn(level, " \t");
        qmgr_route_fail(r, QMGR_R_DEFER, "4.7.5",
                        "TLS security level %.*s is not supported by this "
                        "Sluice",
                        (int) strcspn(level, " \t"), level);
    } else if (m >= DLV_TLS_ENCRYPT && q->tls_cli == NULL) {
        qmgr_route_fail(r, QMGR_R_DEFER, "4.7.5",
                        "TLS is required, but our TLS engine is unavailable");
    } else if (q->tls_cli != NULL) {
        r->tls = (enum dlv_tls) m;
        r->tls_match = match;
        match = NULL;
    }
out:
    free(match);
    buf_free(key);
    buf_free(val);
}

/* smtp_sasl_password_maps (only open with smtp_sasl_auth_enable), as
 * Postfix's SMTP client: the next-hop host name, then the next hop as
 * written ("[smtp.example.com]:587"). Found: r->sasl = "user:password";
 * a lookup error defers the route. */
/* A table by sender address, as Postfix's mail_addr_find: the address,
 * the address without its recipient_delimiter extension, then
 * "@domain"; the null sender as null_key (NULL: not looked up). 1 found
 * (value in out), 0 not, -1 error (in out). */
static int
qmgr_sender_get(struct qmgr *q, struct lookup_table *const *t, size_t n,
                const char *sender, const char *null_key, struct buf *out)
{
    const char *at, *delim = cf_str(q->cf, "recipient_delimiter");
    char *key;
    size_t lp;
    int rc;

    if (*sender == '\0')
        return null_key && *null_key ? qmgr_tables_get(t, n, null_key, out) : 0;
    if ((rc = qmgr_tables_get(t, n, sender, out)) != 0)
        return rc;
    at = strrchr(sender, '@');
    lp = at ? (size_t) (at - sender) : strlen(sender);
    if (*delim) { /* user+ext@domain -> user@domain */
        size_t k = strcspn(sender, delim);

        if (k > 0 && k < lp) {
            key = xmalloc(strlen(sender) + 1);
            sprintf(key, "%.*s%s", (int) k, sender, at ? at : "");
            rc = qmgr_tables_get(t, n, key, out);
            free(key);
            if (rc != 0)
                return rc;
        }
    }
    return at && at[1] ? qmgr_tables_get(t, n, at, out) : 0;
}

static void
qmgr_sasl_lookup(struct qmgr *q, const char *sender, struct qmgr_route *r)
{
    struct buf *val = buf_new(64, CF_VALUE_MAX);
    int rc = 0;

    /* smtp_sender_dependent_authentication: the sender's own account
     * first (the null sender has none), then the next hop's */
    if (q->sender_auth)
        rc = qmgr_sender_get(q, q->sasl_maps, q->nsasl_maps, sender, NULL, val);
    if (rc == 0)
        rc = qmgr_tables_get(q->sasl_maps, q->nsasl_maps, r->host, val);
    if (rc == 0 && r->dest && strcasecmp(r->dest, r->host) != 0)
        rc = qmgr_tables_get(q->sasl_maps, q->nsasl_maps, r->dest, val);
    if (rc < 0)
        qmgr_route_fail(r, QMGR_R_DEFER, "4.3.0",
                        "smtp_sasl_password_maps lookup failure: %s",
                        buf_data(val));
    else if (rc > 0)
        r->sasl = xstrdup(buf_data(val));
    OPENSSL_cleanse(buf_data(val), buf_len(val));
    buf_free(val);
}

static void
qmgr_resolve(struct qmgr *q, const char *sender, const char *addr,
             struct qmgr_route *r)
{
    const char *at = strrchr(addr, '@');
    char *domain = xstrdup(at ? at + 1 : "");
    struct buf *val = NULL;
    size_t n = strlen(domain), i;
    int rc;

    qmgr_route_reset(r);
    while (n > 0 && domain[n - 1] == '.')
        domain[--n] = '\0';
    for (i = 0; i < n; i++)
        if (domain[i] >= 'A' && domain[i] <= 'Z')
            domain[i] = (char) (domain[i] - 'A' + 'a');
    if (n == 0 || lookup_dlist_match(q->mydest, domain) > 0) {
        /* local_transport: "local:$myhostname", or another transport
         * for all of them (lmtp:unix:private/dovecot-lmtp) */
        qmgr_transport(q, cf_str(q->cf, "local_transport"), domain, r);
        goto done;
    }
    /* the front rewrote every alias it knew before queueing: what is
     * left here (a milter's added recipient, say) has no mailbox */
    if (lookup_dlist_match(q->valias, domain) > 0) {
        qmgr_route_fail(r, QMGR_R_ERROR, "5.1.1",
                        "User unknown in virtual alias table");
        goto done;
    }
    if (q->nmaps > 0) {
        val = buf_new(64, CF_VALUE_MAX);
        rc = qmgr_map_lookup(q, domain, val);
        if (rc < 0) {
            qmgr_route_fail(r, QMGR_R_DEFER, "4.3.0",
                            "transport_maps lookup failure: %s", buf_data(val));
            goto done;
        }
        if (rc > 0) {
            qmgr_transport(q, buf_data(val), domain, r);
            goto done;
        }
    }
    if (q->nsdrh_maps > 0) { /* the sender's own relayhost */
        if (val == NULL)
            val = buf_new(64, CF_VALUE_MAX);
        rc = qmgr_sender_get(
            q, q->sdrh_maps, q->nsdrh_maps, sender,
            cf_str(q->cf, "empty_address_relayhost_maps_lookup_key"), val);
        if (rc < 0) {
            qmgr_route_fail(r, QMGR_R_DEFER, "4.3.0",
                            "sender_dependent_relayhost_maps lookup failure: "
                            "%s",
                            buf_data(val));
            goto done;
        }
        /* DUNNO: as not found (Postfix 3.x) */
        if (rc > 0 && strcasecmp(buf_data(val), "DUNNO") != 0) {
            qmgr_nexthop(buf_data(val), domain,
                         "sender_dependent_relayhost_maps", r, 25);
            goto done;
        }
    }
    if (*q->relayhost)
        qmgr_nexthop(q->relayhost, domain, "relayhost", r, 25);
    else
        qmgr_nexthop("", domain, "domain", r, 25);
done:
    /* LMTP: no TLS, no AUTH (lmtp_tls_security_level and
     * lmtp_sasl_auth_enable are Postfix's, empty and no by default) */
    if (r->kind == QMGR_R_SMTP && !r->lmtp)
        qmgr_tls_policy(q, r);
    if (r->kind == QMGR_R_SMTP && !r->lmtp && q->nsasl_maps > 0)
        qmgr_sasl_lookup(q, sender, r);
    buf_free(val);
    free(domain);
}

/* ------------------------------------------------------------------ */
/* Destinations and jobs */

static struct qmgr_dest *
qmgr_dest_get(struct qmgr *q, const char *transport, const char *host, int port)
{
    struct buf *key = buf_new(64, BUF_NOCAP);
    struct qmgr_dest *d;
    long long lim;

    buf_printf(key, "%s:%s:%d", transport, host, port);
    for (d = q->dests; d; d = d->next)
        if (strcmp(d->key, buf_data(key)) == 0)
            break;
    if (d == NULL) {
        d = xcalloc(1, sizeof(*d));
        d->key = xstrdup(buf_data(key));
        buf_reset(key);
        buf_printf(key, "%s_destination_concurrency_limit", transport);
        lim = cf_int(q->cf, buf_data(key));
        d->limit = lim > 0 ? (unsigned) lim : q->conc;
        d->next = q->dests;
        q->dests = d;
    }
    buf_free(key);
    return d;
}

static void
qmgr_dest_drop(struct qmgr *q, struct qmgr_dest *d)
{
    struct qmgr_dest **pp;

    for (pp = &q->dests; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    free(d->key);
    free(d);
}

static void
qmgr_job_free(struct qmgr_job *j)
{
    size_t k;

    for (k = 0; k < j->job.nrcpt; k++)
        free(j->job.result[k].text);
    free(j->job.result);
    free(j->job.rcpt);
    free(j->host);
    free(j->tls_match);
    if (j->sasl)
        OPENSSL_cleanse(j->sasl, j->sasl_len);
    free(j->sasl);
    free(j);
}

static void qmgr_job_done(struct dlv_job *job);

/* The local agent queued a forwarded copy: the next scan of incoming/
 * takes it. */
static void
qmgr_job_queued(struct dlv_job *job)
{
    struct qmgr *q = ((struct qmgr_job *) job->arg)->m->q;

    q->want_incoming = 1;
    qmgr_kick(q);
}

/* Start waiting jobs while the destination has room. */
static void
qmgr_dest_pump(struct qmgr *q, struct qmgr_dest *d)
{
    struct qmgr_job *j;

    while (!q->stopping && d->head && d->active < d->limit) {
        j = d->head;
        d->head = j->next;
        if (d->head == NULL)
            d->tail = NULL;
        d->active++;
        if (strcmp(j->job.transport, "local") == 0)
            dlv_local_start(&j->job);
        else
            dlv_smtp_start(&j->job);
    }
}

/* The job's next hop and agent settings from its route. */
static void
qmgr_job_fill(struct qmgr *q, struct qmgr_job *j, const struct qmgr_route *r)
{
    j->job.transport = r->kind == QMGR_R_LOCAL ? "local" : "smtp";
    j->host = xstrdup(r->host ? r->host : "");
    j->tls_match = r->tls_match ? xstrdup(r->tls_match) : NULL;
    if (r->sasl) { /* "user:password", split at the first ':' */
        char *c;

        j->sasl = xstrdup(r->sasl);
        j->sasl_len = strlen(j->sasl);
        c = strchr(j->sasl, ':');
        if (c)
            *c++ = '\0';
        j->job.sasl_user = j->sasl;
        j->job.sasl_pass = c ? c : "";
    }
    j->job.host = j->host;
    j->job.port = r->kind == QMGR_R_LOCAL ? 0 : r->port;
    j->job.mx = r->mx;
    j->job.lmtp = r->lmtp;
    if (r->lmtp)
        j->job.transport = "lmtp";
    j->job.dns = q->dns;
    j->job.resolve = &q->resolve;
    j->job.resolve_mx = &q->resolve_mx;
    j->job.self = &q->self;
    j->job.tls_level = r->tls;
    j->job.tls_match = j->tls_match;
    j->job.tls = q->tls_cli;
    j->job.cf = q->cf;
    j->job.loop = q->loop;
    j->job.pool = q->pool;
    j->job.alias = &q->alias;
}

static void
qmgr_job_add(struct qmgr *q, struct qmgr_msg *m, const struct qmgr_route *r,
             const size_t *idx, size_t n)
{
    struct qmgr_job *j = xcalloc(1, sizeof(*j));

    j->m = m;
    qmgr_job_fill(q, j, r);
    j->job.msg = m->msg;
    j->job.rcpt = xmalloc(n * sizeof(size_t));
    memcpy(j->job.rcpt, idx, n * sizeof(size_t));
    j->job.nrcpt = n;
    j->job.result = xcalloc(n, sizeof(struct dlv_result));
    j->job.done = qmgr_job_done;
    j->job.queued = qmgr_job_queued;
    j->job.arg = j;
    j->dest = qmgr_dest_get(q, j->job.transport, j->host, j->job.port);
    if (j->dest->tail)
        j->dest->tail->next = j;
    else
        j->dest->head = j;
    j->dest->tail = j;
    m->busy++;
    qmgr_dest_pump(q, j->dest);
}

/* ------------------------------------------------------------------ */
/* Address verification probes (queue/verify.h) */

/* A probe: a job of one recipient and a message with no content, never
 * queued (Postfix queues its probes; here nothing of one needs to
 * survive a restart: the front asks again). */
struct qmgr_probe {
    struct qmgr_job j; /* first member: qmgr_job_free frees it all */
    struct qmgr *q;
    struct spool_msg msg;
    struct spool_rcpt rcpt;
    size_t idx;
};

static void
qmgr_probe_free(struct qmgr_probe *p)
{
    free(p->rcpt.addr);
    free(p->msg.env.sender);
    qmgr_job_free(&p->j);
}

static void
qmgr_probe_done(struct dlv_job *job)
{
    struct qmgr_probe *p = job->arg;
    const struct dlv_result *r = &job->result[0];

    verify_result(p->q->verify, p->rcpt.addr,
                  r->status == DLV_SENT     ? VERIFY_OK
                  : r->status == DLV_BOUNCE ? VERIFY_BOUNCE
                                            : VERIFY_DEFER,
                  r->text ? r->text : "");
    qmgr_probe_free(p);
}

/* An outcome known without a connection, logged as the agent that would
 * deliver logs it. */
static void
qmgr_probe_now(struct qmgr *q, const char *id, const char *agent,
               const char *addr, enum verify_status st, const char *dsn,
               const char *text)
{
    char safe[600];

    qmgr_safe(addr, safe, sizeof(safe));
    log_info_as(agent,
                "%s: to=<%s>, relay=%s, delay=0, delays=0/0/0/0, dsn=%s, "
                "status=%s (%s)",
                id, safe, strcmp(agent, "local") == 0 ? "local" : "none", dsn,
                st == VERIFY_OK ? "deliverable" : "undeliverable", text);
    verify_result(q->verify, addr, st, text);
}

/* verify_probe_fn: route addr as mail to it would go; an SMTP next hop
 * is asked (dlv_smtp in verify mode), local delivery takes any name. */
static int
qmgr_probe(void *arg, const char *addr)
{
    struct qmgr *q = arg;
    struct qmgr_route r;
    struct qmgr_probe *p;
    char id[SPOOL_ID_SIZE];

    if (q->stopping || spool_new_id(id) < 0)
        return -1;
    memset(&r, 0, sizeof(r));
    qmgr_resolve(q, q->verify_sender, addr, &r);
    log_info_as("qmgr",
                "%s: from=<%s>, size=0, nrcpt=1 (address "
                "verification probe)",
                id, q->verify_sender);
    switch (r.kind) {
    case QMGR_R_LOCAL:
        qmgr_probe_now(q, id, "local", addr, VERIFY_OK, "2.0.0",
                       "delivers to mailbox");
        break;
    case QMGR_R_ERROR:
    case QMGR_R_DEFER:
        qmgr_probe_now(q, id, "error", addr,
                       r.kind == QMGR_R_ERROR ? VERIFY_BOUNCE : VERIFY_DEFER,
                       r.dsn, r.text ? r.text : "");
        break;
    case QMGR_R_SMTP:
        p = xcalloc(1, sizeof(*p));
        p->q = q;
        qmgr_job_fill(q, &p->j, &r);
        memcpy(p->msg.env.id, id, sizeof(id));
        p->msg.env.arrival = (long long) (ev_time() * 1e6);
        p->msg.env.sender = xstrdup(q->verify_sender);
        p->msg.fd = -1;
        p->rcpt.addr = xstrdup(addr);
        p->rcpt.status = SPOOL_RCPT_PENDING;
        p->msg.env.rcpt = &p->rcpt;
        p->msg.env.nrcpt = 1;
        p->j.job.msg = &p->msg;
        p->j.job.rcpt = xcalloc(1, sizeof(size_t));
        p->j.job.nrcpt = 1;
        p->j.job.result = xcalloc(1, sizeof(struct dlv_result));
        p->j.job.verify = 1;
        p->j.job.done = qmgr_probe_done;
        p->j.job.arg = p;
        dlv_smtp_start(&p->j.job);
        break;
    }
    qmgr_route_reset(&r);
    return 0;
}

/* address_verify_sender: "<>" or empty is the null sender; a name
 * without a domain gets @$myorigin, as Postfix makes it. */
static char *
qmgr_verify_sender(const struct cf *cf)
{
    const char *v = cf_str(cf, "address_verify_sender");
    struct buf *b = buf_new(64, BUF_NOCAP);
    char *out;

    if (strcmp(v, "<>") != 0) {
        buf_puts(b, v);
        if (*v && strchr(v, '@') == NULL)
            buf_printf(b, "@%s", cf_str(cf, "myorigin"));
    }
    out = xstrdup(buf_data(b));
    buf_free(b);
    return out;
}

/* ------------------------------------------------------------------ */
/* Finishing a message */

static void
qmgr_mark(struct qmgr_msg *m, size_t i, enum spool_rcpt_status st)
{
    if (spool_msg_mark(m->msg, i, st) < 0)
        log_warning_as("qmgr", "%s: cannot update recipient status: %s", m->id,
                       strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Non-delivery notices (bounces) */

/* Recipient i failed for good in this pass (st: BOUNCED or EXPIRED): one
 * line for the notice. Its mark is not written yet: a failed recipient is
 * settled only together with its notice (qmgr_finish_work writes the
 * marks after the notice is committed), so neither a crash nor a notice
 * that cannot be queued (a full disk) loses the news; until then it counts
 * as done for this pass (in memory) and stays pending in the file. */
static void
qmgr_fail(struct qmgr_msg *m, size_t i, enum spool_rcpt_status st,
          const char *text)
{
    const char *p;
    size_t n = 0;

    m->msg->env.rcpt[i].status = st;
    m->failed[i] = 1;
    if (m->notice == NULL)
        m->notice = buf_new(512, QMGR_NOTICE_MAX);
    m->nfail++;
    if (buf_printf(m->notice, "<%s>: ", m->msg->env.rcpt[i].addr) < 0)
        return;
    for (p = text ? text : "delivery failed"; *p && n < QMGR_REASON_MAX;
         p++, n++)
        if (buf_putc(m->notice, (unsigned char) *p < 0x20 ? ' ' : *p) < 0)
            return;
    buf_puts(m->notice, "\r\n\r\n");
}

/* Worker: the original message's header, CRLF lines, bounded. */
static void
qmgr_bounce_headers(const struct spool_msg *msg, struct buf *out)
{
    size_t n = msg->content_len > QMGR_NOTICE_MAX ? QMGR_NOTICE_MAX
                                                  : (size_t) msg->content_len;
    char *p = xmalloc(n + 1), *end;
    ssize_t r = pread(msg->fd, p, n, msg->content_off);

    if (r > 0) {
        p[r] = '\0';
        end = memmem(p, (size_t) r, "\r\n\r\n", 4);
        buf_append(out, p, end ? (size_t) (end - p) + 2 : (size_t) r);
        if (end == NULL)
            buf_puts(out, "\r\n");
    }
    free(p);
}

/* Worker: queue a notice from the null sender to the original sender.
 * 0 (bounce_id set) or -1 with the reason in m->err. */
static int
qmgr_bounce_work(struct qmgr_msg *m)
{
    struct qmgr *q = m->q;
    const struct spool_env *e = &m->msg->env;
    struct buf *b = buf_new(4096, 4 * QMGR_NOTICE_MAX);
    struct spool_file *sf = spool_create(q->qdir, m->err);
    struct spool_rcpt rcpt;
    struct spool_env env;
    struct timeval tv;
    struct tm tm;
    char date[64];
    time_t now = time(NULL);
    int rc = -1;

    if (sf == NULL)
        goto fail;
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    buf_printf(b,
               "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n"
               "To: <%s>\r\n"
               "Subject: Undelivered Mail Returned to Sender\r\n"
               "Date: %s\r\n"
               "Message-ID: <%s.bounce@%s>\r\n"
               "Auto-Submitted: auto-replied\r\n"
               "MIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=us-ascii\r\n"
               "\r\n"
               "This is the mail system at host %s.\r\n\r\n"
               "I'm sorry to have to inform you that your message could not\r\n"
               "be delivered to one or more recipients.\r\n\r\n"
               "The mail system\r\n\r\n",
               q->myhostname, e->sender, date, spool_id(sf), q->myhostname,
               q->myhostname);
    buf_append(b, buf_data(m->notice), buf_len(m->notice));
    buf_printf(b,
               "--- Headers of the original message (queue ID %s) ---"
               "\r\n\r\n",
               m->id);
    qmgr_bounce_headers(m->msg, b);
    if (spool_write(sf, buf_data(b), buf_len(b)) < 0) {
        buf_printf(m->err, "write: %s", strerror(errno));
        goto fail;
    }
    memset(&env, 0, sizeof(env));
    memset(&rcpt, 0, sizeof(rcpt));
    gettimeofday(&tv, NULL);
    env.arrival = (long long) tv.tv_sec * 1000000 + tv.tv_usec;
    env.client_name = "localhost";
    env.client_addr = "127.0.0.1";
    env.proto = "bounce";
    env.sender = "";
    rcpt.addr = e->sender;
    env.rcpt = &rcpt;
    env.nrcpt = 1;
    if (spool_finish(sf, &env) < 0 || spool_commit(sf, "incoming") < 0) {
        buf_printf(m->err, "queue file: %s", strerror(errno));
        goto fail;
    }
    snprintf(m->bounce_id, sizeof(m->bounce_id), "%s", spool_id(sf));
    spool_free(sf);
    sf = NULL;
    rc = 0;
fail:
    spool_abort(sf);
    buf_free(b);
    return rc;
}

/* Worker: the recipients that failed for good in this pass get their
 * notice first, then their marks, so a crash in between makes a second
 * notice rather than none. A notice that cannot be queued (a full disk)
 * leaves them pending, in the file and in memory, and the message
 * deferred: the next attempt fails them again and queues the notice then
 * (Postfix likewise defers a recipient whose bounce record it cannot
 * write). */
static void
qmgr_failed_work(struct qmgr_msg *m)
{
    struct spool_env *e = &m->msg->env;
    size_t i;

    if (*e->sender != '\0' && strpbrk(e->sender, "\r\n<>") == NULL
        && qmgr_bounce_work(m) < 0) {
        log_warning_as("bounce",
                       "%s: cannot queue non-delivery notice: %s; its "
                       "recipients stay queued",
                       m->id, buf_data(m->err));
        for (i = 0; i < e->nrcpt; i++)
            if (m->failed[i])
                e->rcpt[i].status = SPOOL_RCPT_PENDING;
        m->end = QMGR_END_DEFER;
        m->retry = (long long) time(NULL) + m->q->min_backoff;
        return;
    }
    for (i = 0; i < e->nrcpt; i++)
        if (m->failed[i])
            qmgr_mark(m, i, e->rcpt[i].status);
}

static void
qmgr_finish_work(void *arg)
{
    struct qmgr_msg *m = arg;
    struct qmgr *q = m->q;
    struct timespec ts[2];
    const char *step = "sync";

    m->werr = 0;
    if (m->nfail > 0)
        qmgr_failed_work(m);
    buf_reset(m->err);
    /* Marks must last when the file stays (deferred, hold) or a notice was
     * made from it; a file about to be removed needs none (a crash before
     * the removal redelivers, as it would without the marks: Postfix does
     * not sync here either). */
    if ((m->end != QMGR_END_REMOVE || m->nfail > 0)
        && spool_msg_sync(m->msg) < 0)
        goto fail;
    switch (m->end) {
    case QMGR_END_REMOVE:
        step = "remove";
        if (spool_remove(q->qdir, m->msg->path, m->msg->fd) < 0)
            goto fail;
        spool_msg_close(m->msg); /* unlinked: the close frees the file */
        break;
    case QMGR_END_DEFER:
        step = "move to deferred";
        ts[0].tv_sec = ts[1].tv_sec = (time_t) m->retry;
        ts[0].tv_nsec = ts[1].tv_nsec = 0;
        if (futimens(m->msg->fd, ts) < 0)
            goto fail;
        if (spool_move(q->qdir, m->id, "active", "deferred") < 0)
            goto fail;
        break;
    case QMGR_END_HOLD:
        step = "move to hold";
        if (spool_move(q->qdir, m->id, "active", "hold") < 0)
            goto fail;
        break;
    }
    return;
fail:
    m->werr = errno;
    buf_sets(m->err, step);
}

static void
qmgr_arm_deferred(struct qmgr *q, long long due)
{
    double now = qmgr_now(), at = (double) q->run_delay;

    if (q->stopping)
        return;
    if (due > 0 && (double) due - now < at)
        at = (double) due - now;
    if (at < 0.01)
        at = 0.01;
    if (ev_is_active(&q->deferred_t)
        && ev_timer_remaining(q->loop, &q->deferred_t) <= at)
        return;
    ev_timer_stop(q->loop, &q->deferred_t);
    ev_timer_set(&q->deferred_t, at, 0.);
    ev_timer_start(q->loop, &q->deferred_t);
}

static void
qmgr_finish_done(void *arg)
{
    struct qmgr_msg *m = arg;
    struct qmgr *q = m->q;

    if (m->bounce_id[0]) {
        log_info_as("bounce", "%s: sender non-delivery notification: %s", m->id,
                    m->bounce_id);
        q->want_incoming = 1;
        qmgr_kick(q);
    }
    if (m->werr == ENOENT) {
        log_debug("%s: queue file vanished during %s", m->id, buf_data(m->err));
    } else if (m->werr) {
        log_warning_as("qmgr", "%s: cannot %s queue file: %s", m->id,
                       buf_data(m->err), strerror(m->werr));
    } else {
        switch (m->end) {
        case QMGR_END_REMOVE:
            log_info_as("qmgr", "%s: removed", m->id);
            break;
        case QMGR_END_DEFER:
            qmgr_arm_deferred(q, m->retry);
            break;
        case QMGR_END_HOLD:
            log_info_as("qmgr", "%s: expired, moved to hold queue", m->id);
            break;
        }
    }
    qmgr_msg_free(m);
}

/* All jobs done and synced: remove, defer or expire. */
static void
qmgr_finish(struct qmgr_msg *m)
{
    struct qmgr *q = m->q;
    struct spool_env *e = &m->msg->env;
    double now = qmgr_now(), arrival = (double) e->arrival / 1e6;
    double age = now - arrival;
    char d[32], to[600], why[1100], orig[620];
    size_t i;

    qmgr_enter(m, QMGR_M_FINISH);
    if (age < 0)
        age = 0;
    if (spool_msg_pending(m->msg) == 0) {
        m->end = QMGR_END_REMOVE;
    } else if (age >= (double) q->lifetime) {
        m->end = QMGR_END_HOLD;
        for (i = 0; i < e->nrcpt; i++) {
            if (e->rcpt[i].status != SPOOL_RCPT_PENDING)
                continue;
            qmgr_fail(m, i, SPOOL_RCPT_EXPIRED,
                      m->reason[i] ? m->reason[i] : "message expired");
            dlv_fmt_delay(age, d, sizeof(d));
            log_info_as(
                "qmgr",
                "%s: to=<%s>%s, relay=none, delay=%s, delays=%s/0/0/0, "
                "dsn=4.4.7, status=expired (%s)",
                m->id, qmgr_safe(e->rcpt[i].addr, to, sizeof(to)),
                dlv_orig_to(&e->rcpt[i], orig, sizeof(orig)), d, d,
                qmgr_safe(m->reason[i] ? m->reason[i] : "message expired", why,
                          sizeof(why)));
        }
    } else {
        long long b = (long long) age;

        if (b < q->min_backoff)
            b = q->min_backoff;
        if (b > q->max_backoff)
            b = q->max_backoff;
        m->end = QMGR_END_DEFER;
        m->retry = (long long) (now + 0.999) + b; /* round up */
    }
    /* The common end, a delivered file and no notice to make, is one
     * rename into free/, no fsync: done here, as the front takes files
     * from free/ on its loop, rather than with a round trip through the
     * pool (a wake-up and a context switch each way). A file too big for
     * free/ is unlinked and closed in the pool: freeing its blocks and
     * pages takes 0.4 ms per MB (4 ms for a 10 MB message), which the
     * loop's other deliveries must not wait for. */
    if (m->end == QMGR_END_REMOVE && m->nfail == 0
        && spool_msg_reusable(m->msg)) {
        qmgr_finish_work(m);
        qmgr_finish_done(m);
        return;
    }
    wpool_submit(q->pool, qmgr_finish_work, qmgr_finish_done, m);
}

/* A job or a sync completed: finish when nothing is left. */
static void
qmgr_settle(struct qmgr_msg *m)
{
    if (--m->busy > 0)
        return;
    if (m->abandoned)
        qmgr_msg_free(m); /* stays in active/: recovered at next start */
    else
        qmgr_finish(m);
}

static void
qmgr_sync_work(void *arg)
{
    struct qmgr_msg *m = arg;

    if (spool_msg_sync(m->msg) < 0)
        log_warning_as("qmgr", "%s: cannot sync queue file: %s", m->id,
                       strerror(errno));
}

static void
qmgr_sync_done(void *arg)
{
    qmgr_settle(arg);
}

static void
qmgr_job_done(struct dlv_job *job)
{
    struct qmgr_job *j = job->arg;
    struct qmgr_msg *m = j->m;
    struct qmgr *q = m->q;
    struct qmgr_dest *d = j->dest;
    size_t k;

    for (k = 0; k < job->nrcpt; k++) {
        size_t i = job->rcpt[k];
        struct dlv_result *r = &job->result[k];

        switch (r->status) {
        case DLV_SENT:
            qmgr_mark(m, i, SPOOL_RCPT_SENT);
            break;
        case DLV_BOUNCE:
            qmgr_fail(m, i, SPOOL_RCPT_BOUNCED, r->text);
            break;
        case DLV_DEFER:
            free(m->reason[i]);
            m->reason[i] = r->text;
            r->text = NULL;
            break;
        }
    }
    qmgr_job_free(j);
    d->active--;
    qmgr_dest_pump(q, d);
    if (d->active == 0 && d->head == NULL)
        qmgr_dest_drop(q, d);
    if (m->busy > 1) { /* more to come: make these marks durable now */
        m->busy++;     /* the sync */
        wpool_submit(q->pool, qmgr_sync_work, qmgr_sync_done, m);
    }
    qmgr_settle(m); /* the job; the last one leaves the sync to finish */
}

/* ------------------------------------------------------------------ */
/* Taking a message into the active queue */

/* Same transport, host and port (and AUTH credentials)? */
static int
qmgr_route_same(const struct qmgr_route *a, const struct qmgr_route *b)
{
    return a->kind == b->kind && a->port == b->port && a->mx == b->mx
           && a->lmtp == b->lmtp
           && strcasecmp(a->host ? a->host : "", b->host ? b->host : "") == 0
           && strcmp(a->sasl ? a->sasl : "", b->sasl ? b->sasl : "") == 0;
}

static size_t
qmgr_route_hash(const struct qmgr_route *r, size_t n)
{
    const char *s = r->host ? r->host : "";
    size_t h = 2166136261u ^ (size_t) r->kind ^ ((size_t) r->port << 8);

    for (; *s; s++)
        h = (h ^ (unsigned char) (*s | 0x20)) * 16777619u;
    return h % n;
}

/* Route every pending recipient, group them by next hop (a hash of the
 * group leaders keeps this linear), queue one job per group and per
 * recipient limit. */
static void
qmgr_deliver(struct qmgr *q, struct qmgr_msg *m)
{
    struct spool_env *e = &m->msg->env;
    size_t nr = e->nrcpt ? e->nrcpt : 1, hsize = 2 * nr + 1;
    struct qmgr_route *routes = xcalloc(nr, sizeof(*routes));
    size_t *grp = xcalloc(nr, sizeof(size_t));  /* leader of i's group */
    size_t *nxt = xcalloc(nr, sizeof(size_t));  /* next in i's group */
    size_t *last = xcalloc(nr, sizeof(size_t)); /* leader: its last one */
    size_t *ht = xmalloc(hsize * sizeof(size_t));
    size_t *idx = xcalloc(nr, sizeof(size_t));
    char d[32], to[600], why[1100], orig[620];
    size_t i, h, g, n, limit;
    long long lim;
    int soft;

    qmgr_enter(m, QMGR_M_DELIVER);
    m->reason = xcalloc(nr, sizeof(char *));
    m->failed = xcalloc(nr, 1);
    m->busy = 1; /* held until every job is queued */
    for (h = 0; h < hsize; h++)
        ht[h] = SIZE_MAX;
    /* Only an operator moves an expired message out of hold/ (release,
     * requeue): that asks for one more try of its expired recipients. */
    for (i = n = 0; i < e->nrcpt; i++)
        if (e->rcpt[i].status == SPOOL_RCPT_EXPIRED) {
            qmgr_mark(m, i, SPOOL_RCPT_PENDING);
            n++;
        }
    if (n > 0)
        log_info_as("qmgr", "%s: released: %zu expired recipient(s) retried",
                    m->id, n);
    for (i = 0; i < e->nrcpt; i++) {
        grp[i] = nxt[i] = SIZE_MAX;
        if (e->rcpt[i].status != SPOOL_RCPT_PENDING)
            continue;
        qmgr_resolve(q, e->sender ? e->sender : "", e->rcpt[i].addr,
                     &routes[i]);
        dlv_fmt_delay(dlv_delay(m->msg), d, sizeof(d));
        switch (routes[i].kind) {
        case QMGR_R_ERROR:
            soft = cf_bool(q->cf, "soft_bounce"); /* kept queued */
            log_info_as("error",
                        "%s: to=<%s>%s, relay=none, delay=%s, delays=%s/0/0/0, "
                        "dsn=%s, status=%s (%s)",
                        m->id, qmgr_safe(e->rcpt[i].addr, to, sizeof(to)),
                        dlv_orig_to(&e->rcpt[i], orig, sizeof(orig)), d, d,
                        routes[i].dsn, soft ? "SOFTBOUNCE" : "bounced",
                        qmgr_safe(routes[i].text, why, sizeof(why)));
            if (!soft) {
                qmgr_fail(m, i, SPOOL_RCPT_BOUNCED, routes[i].text);
                continue;
            }
            free(m->reason[i]);
            m->reason[i] = routes[i].text;
            routes[i].text = NULL;
            continue;
        case QMGR_R_DEFER:
            log_info_as("qmgr",
                        "%s: to=<%s>%s, relay=none, delay=%s, delays=%s/0/0/0, "
                        "dsn=%s, status=deferred (%s)",
                        m->id, qmgr_safe(e->rcpt[i].addr, to, sizeof(to)),
                        dlv_orig_to(&e->rcpt[i], orig, sizeof(orig)), d, d,
                        routes[i].dsn,
                        qmgr_safe(routes[i].text, why, sizeof(why)));
            m->reason[i] = routes[i].text;
            routes[i].text = NULL;
            continue;
        case QMGR_R_LOCAL:
        case QMGR_R_SMTP:
            break;
        }
        for (h = qmgr_route_hash(&routes[i], hsize); ht[h] != SIZE_MAX;
             h = (h + 1) % hsize)
            if (qmgr_route_same(&routes[ht[h]], &routes[i]))
                break;
        if (ht[h] == SIZE_MAX) {
            ht[h] = grp[i] = last[i] = i; /* a new group */
        } else {
            g = grp[i] = ht[h];
            nxt[last[g]] = i;
            last[g] = i;
        }
    }
    /* one job per group, at most the recipient limit each */
    for (g = 0; g < e->nrcpt; g++) {
        if (grp[g] != g)
            continue;
        lim = cf_int(q->cf, routes[g].kind == QMGR_R_LOCAL
                                ? "local_destination_recipient_limit"
                            : routes[g].lmtp
                                ? "lmtp_destination_recipient_limit"
                                : "smtp_destination_recipient_limit");
        limit = lim > 0 ? (size_t) lim : q->rcpt_limit;
        n = 0;
        for (i = g; i != SIZE_MAX; i = nxt[i]) {
            idx[n++] = i;
            if (n == limit) {
                qmgr_job_add(q, m, &routes[g], idx, n);
                n = 0;
            }
        }
        if (n > 0)
            qmgr_job_add(q, m, &routes[g], idx, n);
    }
    for (i = 0; i < e->nrcpt; i++)
        qmgr_route_reset(&routes[i]);
    free(idx);
    free(ht);
    free(last);
    free(nxt);
    free(grp);
    free(routes);
    qmgr_settle(m);
}

static void
qmgr_corrupt_work(void *arg)
{
    struct qmgr_msg *m = arg;
    struct buf *src = buf_new(128, BUF_NOCAP), *dst = buf_new(128, BUF_NOCAP);
    const char *from = m->moved ? "active" : m->from;

    m->werr = 0;
    if (qmgr_valid_id(m->id)) {
        if (spool_move(m->q->qdir, m->id, from, "corrupt") < 0)
            m->werr = errno;
    } else {
        /* not a queue ID: spool_move refuses it, rename it ourselves */
        buf_printf(src, "%s/%s/%s", m->q->qdir, from, m->id);
        buf_printf(dst, "%s/corrupt/%s", m->q->qdir, m->id);
        if (rename(buf_data(src), buf_data(dst)) < 0)
            m->werr = errno;
    }
    buf_free(dst);
    buf_free(src);
}

static void
qmgr_corrupt_done(void *arg)
{
    struct qmgr_msg *m = arg;
    char why[1100], id[600];

    qmgr_safe(m->id, id, sizeof(id));
    if (m->werr == 0)
        log_warning_as("qmgr", "%s: corrupt queue file moved to corrupt: %s",
                       id, qmgr_safe(buf_data(m->err), why, sizeof(why)));
    else if (m->werr != ENOENT)
        log_warning_as("qmgr",
                       "%s: corrupt queue file (%s), cannot move it "
                       "to corrupt: %s",
                       id, qmgr_safe(buf_data(m->err), why, sizeof(why)),
                       strerror(m->werr));
    qmgr_msg_free(m);
}

/* Each message in memory keeps its queue file open, so the open-file
 * limit bounds the active queue: past it, opening the next file fails
 * (EMFILE) and every delivery connection with it. Keep a reserve for
 * connections, directories, mailboxes and notices: half the limit, at
 * most QMGR_FD_RESERVE. */
#define QMGR_FD_RESERVE 256
static void
qmgr_fd_cap(struct qmgr *q)
{
    struct rlimit rl;
    size_t cap, reserve;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return;
    reserve = (size_t) rl.rlim_cur / 2;
    if (reserve > QMGR_FD_RESERVE)
        reserve = QMGR_FD_RESERVE;
    cap = (size_t) rl.rlim_cur - reserve;
    if (cap < 1)
        cap = 1;
    if (q->active_limit > cap) {
        log_warning_as("qmgr",
                       "qmgr_message_active_limit = %zu exceeds what the "
                       "open file limit (%llu) allows: using %zu",
                       q->active_limit, (unsigned long long) rl.rlim_cur, cap);
        q->active_limit = cap;
    }
}

/* An error that says nothing about the file (out of descriptors or
 * memory): try it again later rather than call it corrupt. */
static int
qmgr_transient(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS
           || e == EAGAIN || e == EINTR;
}

/* Worker: a file that could not be read for a transient reason goes back
 * from active/ to deferred/, due after queue_run_delay. */
static void
qmgr_take_retry(struct qmgr_msg *m)
{
    struct timespec ts[2];
    struct buf *path = buf_new(128, BUF_NOCAP);

    m->retry = (long long) time(NULL) + m->q->run_delay;
    ts[0].tv_sec = ts[1].tv_sec = (time_t) m->retry;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    buf_printf(path, "%s/active/%s", m->q->qdir, m->id);
    if (utimensat(AT_FDCWD, buf_data(path), ts, 0) < 0
        || spool_move(m->q->qdir, m->id, "active", "deferred") < 0)
        m->retry = 0; /* stays in active/: taken again at the next start */
    buf_free(path);
}

static void
qmgr_take_work(void *arg)
{
    struct qmgr_msg *m = arg;
    struct buf *path = buf_new(128, BUF_NOCAP);

    m->werr = 0;
    if (spool_move(m->q->qdir, m->id, m->from, "active") < 0) {
        m->werr = errno;
        goto done;
    }
    m->moved = 1;
    buf_printf(path, "%s/active/%s", m->q->qdir, m->id);
    if ((m->msg = spool_read(buf_data(path), m->err)) == NULL) {
        m->werr = errno ? errno : EBADMSG;
        /* gone, or unreadable? only a missing file is "gone" */
        if (m->werr == ENOENT && access(buf_data(path), F_OK) == 0)
            m->werr = EBADMSG;
        else if (qmgr_transient(m->werr))
            qmgr_take_retry(m);
    }
done:
    buf_free(path);
}

static void
qmgr_take_done(void *arg)
{
    struct qmgr_msg *m = arg;
    struct qmgr *q = m->q;
    struct spool_env *e;
    char from[600];

    if (!m->moved) {
        if (m->werr != ENOENT)
            log_warning_as("qmgr",
                           "%s: cannot move queue file from %s to "
                           "active: %s",
                           m->id, m->from, strerror(m->werr));
        qmgr_msg_free(m);
        return;
    }
    if (m->msg == NULL) {
        if (m->werr == ENOENT) {
            qmgr_msg_free(m);
            return;
        }
        if (qmgr_transient(m->werr)) {
            char why[1100];

            qmgr_safe(buf_data(m->err), why, sizeof(why));
            if (m->retry > 0) {
                log_warning_as("qmgr", "%s: %s: trying again in %llds", m->id,
                               why, (long long) q->run_delay);
                qmgr_arm_deferred(q, m->retry);
            } else {
                log_warning_as("qmgr",
                               "%s: %s; cannot move it back to deferred: "
                               "left in active until the next start",
                               m->id, why);
            }
            qmgr_msg_free(m);
            return;
        }
        qmgr_enter(m, QMGR_M_CORRUPT);
        wpool_submit(q->pool, qmgr_corrupt_work, qmgr_corrupt_done, m);
        return;
    }
    if (q->stopping) {
        qmgr_msg_free(m); /* in active/ now: recovered at next start */
        return;
    }
    e = &m->msg->env;
    if (strcmp(m->from, "incoming") == 0)
        log_info_as(
            "qmgr", "%s: from=<%s>, size=%lld, nrcpt=%zu (queue active)", m->id,
            qmgr_safe(e->sender, from, sizeof(from)), e->size, e->nrcpt);
    qmgr_deliver(q, m);
}

/* on_loop: move and read here rather than through the pool. */
static void
qmgr_take(struct qmgr *q, const char *name, const char *from, int on_loop)
{
    struct qmgr_msg *m = xcalloc(1, sizeof(*m));
    unsigned h = qmgr_hash(name);

    m->q = q;
    snprintf(m->id, sizeof(m->id), "%s", name);
    m->from = from;
    m->err = buf_new(128, 2048);
    m->hnext = q->hash[h];
    q->hash[h] = m;
    q->nmsg++;
    if (!qmgr_valid_id(name)) {
        qmgr_enter(m, QMGR_M_CORRUPT);
        buf_sets(m->err, "file name is not a queue ID");
        wpool_submit(q->pool, qmgr_corrupt_work, qmgr_corrupt_done, m);
        return;
    }
    qmgr_enter(m, QMGR_M_TAKE);
    if (on_loop) {
        qmgr_take_work(m);
        qmgr_take_done(m);
        return;
    }
    wpool_submit(q->pool, qmgr_take_work, qmgr_take_done, m);
}

/* ------------------------------------------------------------------ */
/* Scans */

/* The files a front named in its "N" datagram after a group commit are
 * taken on the loop, the first QMGR_LOOP_TAKES of each wake-up: the
 * front has just written, synced and renamed them, so the rename to
 * active/ and the reads of the envelope find the page cache, and the
 * round trip through the pool (a wake-up and a context switch each way)
 * would cost more than the work. No scan of incoming/ is needed for
 * them. */
static void
qmgr_take_notified(struct qmgr *q)
{
    size_t i, taken = 0;

    for (i = 0; i < q->nnotified; i++) {
        const char *id = q->notified[i];

        if (qmgr_find(q, id))
            continue; /* a scan took it first */
        if (q->nmsg >= q->active_limit) {
            q->more_incoming = 1; /* a scan finds the rest */
            break;
        }
        qmgr_take(q, id, "incoming", taken++ < QMGR_LOOP_TAKES);
    }
    q->nnotified = 0;
}

/* incoming/: take everything, through the pool: a scan is for the files
 * nobody named (after a restart, a requeue, a lost datagram, a bounce),
 * which may have left the page cache. It is read in the pool as well: in
 * normal running it holds what was committed since the last scan, but
 * after the queue manager was down it holds whatever the fronts accepted
 * meanwhile, and a readdir of that must not hold up the loop. The worker
 * returns at most room + QMGR_SCAN_SLACK names (some may be in flight
 * already: the loop skips those; one taken and gone meanwhile is dropped
 * quietly by the take); one scan at a time. */
#define QMGR_SCAN_SLACK 64

/* A scan's list of names (worker side). */
static void
qmgr_names_add(char ***names, size_t *n, size_t *cap, const char *name)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *names = xrealloc(*names, *cap * sizeof(**names));
    }
    (*names)[(*n)++] = xstrdup(name);
}

/* A scan's names back on the loop: take those not in flight, up to the
 * active limit (*full set when some were left); frees them. */
static size_t
qmgr_take_names(struct qmgr *q, char **names, size_t n, const char *from,
                int *full)
{
    size_t i, taken = 0;

    for (i = 0; i < n; i++) {
        if (!q->stopping && !qmgr_find(q, names[i])) {
            if (q->nmsg >= q->active_limit) {
                *full = 1;
            } else {
                qmgr_take(q, names[i], from, 0);
                taken++;
            }
        }
        free(names[i]);
    }
    return taken;
}

struct qmgr_iscan {
    struct qmgr *q;
    int full, err;
    size_t room, n, cap;
    char **names;
    double took;
};

static void
qmgr_iscan_work(void *arg)
{
    struct qmgr_iscan *s = arg;
    struct buf *path = buf_new(128, BUF_NOCAP);
    double t0 = qmgr_now();
    struct dirent *de;
    DIR *dir;

    buf_printf(path, "%s/incoming", s->q->qdir);
    if ((dir = opendir(buf_data(path))) == NULL) {
        s->err = errno;
        goto done;
    }
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (s->n >= s->room + QMGR_SCAN_SLACK) {
            s->full = 1;
            break;
        }
        qmgr_names_add(&s->names, &s->n, &s->cap, de->d_name);
    }
    closedir(dir);
done:
    s->took = qmgr_now() - t0;
    buf_free(path);
}

static void
qmgr_iscan_done(void *arg)
{
    struct qmgr_iscan *s = arg;
    struct qmgr *q = s->q;
    int full = s->full;
    size_t taken;

    q->iscan_busy = 0;
    if (s->err != 0 && !q->stopping)
        log_warning_as("qmgr", "cannot scan %s/incoming: %s", q->qdir,
                       strerror(s->err));
    taken = qmgr_take_names(q, s->names, s->n, "incoming", &full);
    if (!q->stopping) {
        log_debug("scan of incoming/: %zu file(s), %zu taken, %.1f ms in "
                  "the pool",
                  s->n, taken, s->took * 1e3);
        q->more_incoming = full;
        if (q->want_incoming)
            qmgr_kick(q); /* asked for again while this one ran */
    }
    free(s->names);
    free(s);
}

static void
qmgr_scan_incoming(struct qmgr *q)
{
    struct qmgr_iscan *s;

    if (q->iscan_busy)
        return; /* the want flag stays: its end kicks again */
    q->want_incoming = 0;
    if (q->nmsg >= q->active_limit) {
        q->more_incoming = 1; /* a message that ends kicks again */
        return;
    }
    s = xcalloc(1, sizeof(*s));
    s->q = q;
    s->room = q->active_limit - q->nmsg;
    q->iscan_busy = 1;
    wpool_submit(q->pool, qmgr_iscan_work, qmgr_iscan_done, s);
}

/* deferred/ is scanned in the pool: it holds every message waiting for a
 * retry, and the scan reads each file's inode (its mtime is the retry
 * time): 100,000 deferred messages cost about 0.3 s with the inodes in
 * the cache and twice that without, time in which a scan on the loop
 * would hold up every delivery. The worker returns the names of the
 * files that are due (all of them made due first with flush), at most
 * room + QMGR_SCAN_SLACK (some may be in flight already: the loop skips
 * those), and the earliest retry time of the rest. One scan at a time;
 * after one that took t seconds the next waits QMGR_SCAN_GAP * t (the
 * pool spends at most a tenth of its time scanning; a small queue scans
 * in microseconds and never waits), except a flush. */
#define QMGR_SCAN_GAP 9.0

struct qmgr_dscan {
    struct qmgr *q;
    int flush, full, err;
    size_t room, n, cap, files;
    long long now, next_due;
    char **names;
    double took;
};

static void
qmgr_dscan_work(void *arg)
{
    struct qmgr_dscan *s = arg;
    struct buf *path = buf_new(128, BUF_NOCAP);
    double t0 = qmgr_now();
    struct dirent *de;
    struct stat st;
    DIR *dir;

    buf_printf(path, "%s/deferred", s->q->qdir);
    if ((dir = opendir(buf_data(path))) == NULL) {
        s->err = errno;
        goto done;
    }
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        s->files++;
        if (s->flush) {
            if (utimensat(dirfd(dir), de->d_name, NULL, 0) < 0)
                continue;
        } else {
            if (fstatat(dirfd(dir), de->d_name, &st, 0) < 0)
                continue;
            if ((long long) st.st_mtime > s->now) {
                if (s->next_due == 0 || st.st_mtime < s->next_due)
                    s->next_due = st.st_mtime;
                continue;
            }
        }
        if (s->n >= s->room + QMGR_SCAN_SLACK) {
            s->full = 1;
            if (!s->flush)
                break;
            continue; /* flush: every file is made due all the same */
        }
        qmgr_names_add(&s->names, &s->n, &s->cap, de->d_name);
    }
    closedir(dir);
done:
    s->took = qmgr_now() - t0;
    buf_free(path);
}

static void
qmgr_dscan_done(void *arg)
{
    struct qmgr_dscan *s = arg;
    struct qmgr *q = s->q;
    int full = s->full;
    size_t taken;

    q->dscan_busy = 0;
    q->dscan_after = qmgr_now() + QMGR_SCAN_GAP * s->took;
    if (s->err != 0 && !q->stopping)
        log_warning_as("qmgr", "cannot scan %s/deferred: %s", q->qdir,
                       strerror(s->err));
    taken = qmgr_take_names(q, s->names, s->n, "deferred", &full);
    if (!q->stopping) {
        log_debug("scan of deferred/: %zu file(s), %zu taken, %.1f ms in "
                  "the pool",
                  s->files, taken, s->took * 1e3);
        q->more_deferred = full;
        qmgr_arm_deferred(q, s->next_due);
        if (q->want_deferred || q->want_flush)
            qmgr_kick(q);
    }
    free(s->names);
    free(s);
}

static void
qmgr_scan_deferred(struct qmgr *q, int flush)
{
    struct qmgr_dscan *s;
    double wait = q->dscan_after - qmgr_now();

    if (q->dscan_busy)
        return;               /* the want flags stay: its end kicks again */
    if (!flush && wait > 0) { /* see QMGR_SCAN_GAP */
        if (!ev_is_active(&q->deferred_t)
            || ev_timer_remaining(q->loop, &q->deferred_t) > wait) {
            ev_timer_stop(q->loop, &q->deferred_t);
            ev_timer_set(&q->deferred_t, wait, 0.);
            ev_timer_start(q->loop, &q->deferred_t);
        }
        return;
    }
    if (!flush && q->nmsg >= q->active_limit) {
        q->more_deferred = 1; /* a message that ends kicks again */
        return;
    }
    q->want_deferred = q->want_flush = 0;
    s = xcalloc(1, sizeof(*s));
    s->q = q;
    s->flush = flush;
    s->now = (long long) time(NULL);
    s->room = q->nmsg < q->active_limit ? q->active_limit - q->nmsg : 0;
    q->dscan_busy = 1;
    wpool_submit(q->pool, qmgr_dscan_work, qmgr_dscan_done, s);
}

static void
qmgr_kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct qmgr *q = w->data;

    if (q->stopping || !q->ready)
        return;
    if (q->nnotified > 0)
        qmgr_take_notified(q);
    if (q->want_incoming || q->more_incoming)
        qmgr_scan_incoming(q);
    if (q->want_deferred || q->want_flush || q->more_deferred)
        qmgr_scan_deferred(q, q->want_flush);
}

static void
qmgr_incoming_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct qmgr *q = w->data;

    q->want_incoming = 1;
    qmgr_kick(q);
}

static void
qmgr_deferred_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct qmgr *q = w->data;

    q->want_deferred = 1;
    qmgr_kick(q);
}

/* " ID ID ..." from a front's "N": the IDs wait in q->notified for the
 * kick. How many there were, or -1 when one is not a queue ID or there
 * is no room (a scan then finds them all). */
static int
qmgr_note_ids(struct qmgr *q, const char *p)
{
    int n = 0;

    while (*p == ' ') {
        size_t k = strcspn(++p, " ");
        char *slot;

        if (q->nnotified == QMGR_NOTIFIED_MAX || k != SPOOL_ID_LEN)
            return -1;
        slot = q->notified[q->nnotified];
        memcpy(slot, p, k);
        slot[k] = '\0';
        if (!qmgr_valid_id(slot))
            return -1;
        q->nnotified++;
        p += k;
        n++;
    }
    return *p == '\0' ? n : -1;
}

static void
qmgr_sock_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct qmgr *q = w->data;
    char b[QMGR_DGRAM_MAX + 1];
    ssize_t n;
    int i;

    for (i = 0; i < QMGR_DGRAMS; i++) {
        n = recv(q->sock, b, QMGR_DGRAM_MAX, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (n > 0 && b[0] == 'F')
            q->want_flush = 1;
        if (n > 0 && b[0] == 'N' && n <= QMGR_DGRAM_MAX) {
            b[n] = '\0';
            if (qmgr_note_ids(q, b + 1) > 0)
                continue;
        }
        q->want_incoming = 1; /* anything else: scan */
    }
    qmgr_kick(q);
}

/* ------------------------------------------------------------------ */
/* Start and stop */

/* Pool: a previous run was interrupted; its active/ goes back to
 * incoming/. */
static void
qmgr_recover_work(void *arg)
{
    struct qmgr *q = arg;
    struct buf *path = buf_new(128, BUF_NOCAP);
    struct dirent *de;
    DIR *dir;

    buf_printf(path, "%s/active", q->qdir);
    if ((dir = opendir(buf_data(path))) == NULL) {
        log_warning_as("qmgr", "cannot scan %s: %s", buf_data(path),
                       strerror(errno));
        goto done;
    }
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.' || !qmgr_valid_id(de->d_name))
            continue;
        if (spool_move(q->qdir, de->d_name, "active", "incoming") < 0)
            log_warning_as("qmgr",
                           "%s: cannot move from active to "
                           "incoming: %s",
                           de->d_name, strerror(errno));
        else
            log_debug("%s: recovered from active queue", de->d_name);
    }
    closedir(dir);
done:
    buf_free(path);
}

static void
qmgr_recover_done(void *arg)
{
    struct qmgr *q = arg;

    q->ready = 1;
    if (q->stopping) {
        ev_break(q->loop, EVBREAK_ALL);
        return;
    }
    q->want_incoming = q->want_deferred = 1;
    qmgr_kick(q);
}

static void
qmgr_grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct qmgr *q = w->data;

    log_warning_as("qmgr",
                   "%zu message(s) still in delivery after %.0fs; "
                   "exiting, they stay in the active queue",
                   q->nmsg, QMGR_GRACE);
    /* Running agents still own their jobs and sockets; nothing can be
     * freed safely, and the files are recovered at next start. */
    if (q->sock_path)
        unlink(q->sock_path);
    _exit(0);
}

static void
qmgr_stop(struct qmgr *q)
{
    struct qmgr_dest *d, *dnext;
    struct qmgr_job *j;

    if (q->stopping)
        return;
    q->stopping = 1;
    log_info_as("qmgr", "stopping: %zu message(s) in the active queue",
                q->nmsg);
    ev_io_stop(q->loop, &q->sock_w);
    ev_timer_stop(q->loop, &q->incoming_t);
    ev_timer_stop(q->loop, &q->deferred_t);
    ev_timer_stop(q->loop, &q->kick_t);
    /* jobs that have not started never will: their messages stay in
     * active/ once their running jobs are done */
    for (d = q->dests; d; d = dnext) {
        dnext = d->next;
        while ((j = d->head) != NULL) {
            struct qmgr_msg *m = j->m;

            d->head = j->next;
            qmgr_job_free(j);
            m->abandoned = 1;
            qmgr_settle(m);
        }
        d->tail = NULL;
        if (d->active == 0)
            qmgr_dest_drop(q, d);
    }
    if (!q->ready)
        return; /* qmgr_recover_done breaks the loop */
    if (q->nmsg == 0) {
        ev_break(q->loop, EVBREAK_ALL);
        return;
    }
    ev_timer_start(q->loop, &q->grace_t);
}

static void
qmgr_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    qmgr_stop(w->data);
}

static int
qmgr_bind(struct qmgr *q)
{
    struct sockaddr_un sun;
    struct buf *p = buf_new(128, BUF_NOCAP);
    int rc = -1;

    buf_printf(p, "%s/public/qmgr", q->qdir);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (buf_len(p) >= sizeof(sun.sun_path)) {
        log_error("queue_directory %s: socket path %s is too long", q->qdir,
                  buf_data(p));
        goto fail;
    }
    memcpy(sun.sun_path, buf_data(p), buf_len(p) + 1);
    q->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (q->sock < 0) {
        log_error("socket: %s", strerror(errno));
        goto fail;
    }
    (void) unlink(sun.sun_path); /* a stale one from an earlier run */
    if (bind(q->sock, (struct sockaddr *) &sun, sizeof(sun)) < 0) {
        log_error("bind %s: %s", sun.sun_path, strerror(errno));
        close(q->sock);
        q->sock = -1;
        goto fail;
    }
    q->sock_path = xstrdup(buf_data(p));
    rc = 0;
fail:
    buf_free(p);
    return rc;
}

/* The tables of list parameter name into *tp, *np: 0, or -1 with
 * "NAME: SPEC: why" in err. skip_missing: a hash: or btree: table whose
 * .db file does not exist yet is left out (the front says so at start). */
static int
qmgr_open_tables2(const struct cf *cf, const char *name,
                  struct lookup_table ***tp, size_t *np, int skip_missing,
                  struct buf *err)
{
    char *const *l = cf_list(cf, name);
    struct buf *e = buf_new(128, 4096);
    size_t n;

    for (n = 0; l[n]; n++)
        ;
    *tp = xcalloc(n ? n : 1, sizeof(**tp));
    *np = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_missing && lookup_db_missing(l[i]))
            continue;
        (*tp)[*np] = lookup_open(l[i], e);
        if ((*tp)[*np] == NULL) {
            buf_printf(err, "%s: %s: %s", name, l[i], buf_data(e));
            buf_free(e);
            return -1;
        }
        (*np)++;
    }
    buf_free(e);
    return 0;
}

static int
qmgr_open_tables(const struct cf *cf, const char *name,
                 struct lookup_table ***tp, size_t *np, struct buf *err)
{
    return qmgr_open_tables2(cf, name, tp, np, 0, err);
}

/* Is word in list parameter name? */
static int
qmgr_list_has(const struct cf *cf, const char *name, const char *word)
{
    for (char *const *l = cf_list(cf, name); *l; l++)
        if (strcasecmp(*l, word) == 0)
            return 1;
    return 0;
}

/* The queue manager's tables (the SASL one only with
 * smtp_sasl_auth_enable): 0, or -1 with the reason in err. */
static int
qmgr_open_maps(struct qmgr *q, struct buf *err)
{
    struct buf *e = buf_new(128, 4096);

    q->mydest = lookup_dlist_new(cf_list(q->cf, "mydestination"), e);
    if (q->mydest == NULL) {
        buf_printf(err, "mydestination: %s", buf_data(e));
        buf_free(e);
        return -1;
    }
    q->valias = lookup_dlist_new(cf_list(q->cf, "virtual_alias_domains"), e);
    if (q->valias == NULL) {
        buf_printf(err, "virtual_alias_domains: %s", buf_data(e));
        buf_free(e);
        return -1;
    }
    buf_free(e);
    if (qmgr_open_tables2(q->cf, "alias_maps", &q->alias_maps, &q->nalias, 1,
                          err)
        < 0)
        return -1;
    q->alias.maps = q->alias_maps;
    q->alias.nmaps = q->nalias;
    q->alias.mydest = q->mydest;
    q->alias.myorigin = cf_str(q->cf, "myorigin");
    if (*q->alias.myorigin == '\0')
        q->alias.myorigin = "localhost";
    q->alias.delim = cf_str(q->cf, "recipient_delimiter");
    q->alias.propagate =
        qmgr_list_has(q->cf, "propagate_unmatched_extensions", "alias");
    q->alias.cmd_alias =
        qmgr_list_has(q->cf, "allow_mail_to_commands", "alias");
    q->alias.cmd_include =
        qmgr_list_has(q->cf, "allow_mail_to_commands", "include");
    q->alias.file_alias = qmgr_list_has(q->cf, "allow_mail_to_files", "alias");
    q->alias.file_include =
        qmgr_list_has(q->cf, "allow_mail_to_files", "include");
    if (qmgr_open_tables(q->cf, "transport_maps", &q->maps, &q->nmaps, err) < 0
        || qmgr_open_tables(q->cf, "smtp_tls_policy_maps", &q->tls_maps,
                            &q->ntls_maps, err)
               < 0)
        return -1;
    if (cf_bool(q->cf, "smtp_sasl_auth_enable")
        && qmgr_open_tables(q->cf, "smtp_sasl_password_maps", &q->sasl_maps,
                            &q->nsasl_maps, err)
               < 0)
        return -1;
    q->sender_auth = cf_bool(q->cf, "smtp_sender_dependent_authentication");
    if (qmgr_open_tables(q->cf, "sender_dependent_relayhost_maps",
                         &q->sdrh_maps, &q->nsdrh_maps, err)
        < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* DNS: the SMTP client's lookups (queue/dlv_resolve.c) */

/* 1 when the SMTP client looks names up in DNS: smtp_dns_support_level
 * not disabled (nor disable_dns_lookups), and "dns" in smtp_host_lookup;
 * otherwise getaddrinfo, and no MX lookups. */
static int
qmgr_dns_use(const struct cf *cf)
{
    char *const *hl = cf_list(cf, "smtp_host_lookup");
    int dns = 0;

    if (strcasecmp(cf_str(cf, "smtp_dns_support_level"), "disabled") == 0
        || cf_bool(cf, "disable_dns_lookups"))
        return 0;
    for (size_t i = 0; hl[i]; i++)
        if (strcasecmp(hl[i], "dns") == 0)
            dns = 1;
    return dns;
}

/* The DNS settings cf_check cannot judge: 0, or -1 and the reason. */
static int
qmgr_dns_check(const struct cf *cf, struct buf *err)
{
    char *const *l = cf_list(cf, "sluice_dns_servers");
    char *const *px = cf_list(cf, "proxy_interfaces");
    const char *lvl = cf_str(cf, "smtp_dns_support_level");
    const char *ap = cf_str(cf, "smtp_address_preference");
    char *const *hl = cf_list(cf, "smtp_host_lookup");
    unsigned char probe[16];
    int rc = 0;

    if (dns_servers_check(l, err) < 0) {
        buf_printf(err, " (sluice_dns_servers)");
        rc = -1;
    }
    if (rc == 0 && *lvl && strcasecmp(lvl, "enabled") != 0
        && strcasecmp(lvl, "disabled") != 0 && strcasecmp(lvl, "dnssec") != 0) {
        buf_printf(err,
                   "smtp_dns_support_level: unknown value \"%s\" "
                   "(enabled, disabled or dnssec)",
                   lvl);
        rc = -1;
    }
    if (rc == 0 && strcasecmp(ap, "any") != 0 && strcasecmp(ap, "ipv4") != 0
        && strcasecmp(ap, "ipv6") != 0) {
        buf_printf(err,
                   "smtp_address_preference: unknown value \"%s\" (any, "
                   "ipv4, ipv6)",
                   ap);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && hl[i]; i++)
        if (strcasecmp(hl[i], "dns") != 0 && strcasecmp(hl[i], "native") != 0) {
            buf_printf(err,
                       "smtp_host_lookup: unknown value \"%s\" (dns, "
                       "native)",
                       hl[i]);
            rc = -1;
        }
    for (size_t i = 0; rc == 0 && px[i]; i++) {
        const char *a = px[i];
        char tmp[NET_ADDR_MAX];
        size_t n = strlen(a);

        if (n >= 2 && a[0] == '[' && a[n - 1] == ']')
            snprintf(tmp, sizeof(tmp), "%.*s", (int) (n - 2), a + 1);
        else
            snprintf(tmp, sizeof(tmp), "%s", a);
        if (inet_pton(AF_INET, tmp, probe) != 1
            && inet_pton(AF_INET6, tmp, probe) != 1) {
            buf_printf(err,
                       "proxy_interfaces: \"%s\" is not a numeric "
                       "address",
                       a);
            rc = -1;
        }
    }
    return rc;
}

/* proxy_interfaces as addresses (checked by qmgr_dns_check). */
static void
qmgr_dns_proxy(struct qmgr *q)
{
    char *const *px = cf_list(q->cf, "proxy_interfaces");
    size_t n = 0;

    while (px[n])
        n++;
    q->self.proxy = xcalloc(n ? n : 1, sizeof(*q->self.proxy));
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage *ss = &q->self.proxy[q->self.nproxy];
        struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
        char tmp[NET_ADDR_MAX];
        size_t len = strlen(px[i]);

        if (len >= 2 && px[i][0] == '[' && px[i][len - 1] == ']')
            snprintf(tmp, sizeof(tmp), "%.*s", (int) (len - 2), px[i] + 1);
        else
            snprintf(tmp, sizeof(tmp), "%s", px[i]);
        if (inet_pton(AF_INET, tmp, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            q->self.nproxy++;
        } else if (inet_pton(AF_INET6, tmp, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            q->self.nproxy++;
        }
    }
}

static int
qmgr_dns_start(struct qmgr *q, struct buf *err)
{
    const struct cf *cf = q->cf;
    long long lim = cf_int(cf, "smtp_mx_address_limit");
    const char *pref;
    int v4 = 0, v6 = 0;

    cf_inet_protocols(cf, &v4, &v6);
    q->resolve.v4 = v4;
    q->resolve.v6 = v6;
    q->resolve.randomize = cf_bool(cf, "smtp_randomize_addresses");
    q->resolve.addr_limit =
        lim <= 0 || lim > DLV_ADDR_MAX ? DLV_ADDR_MAX : (unsigned) lim;
    q->resolve.ignore_mx_error = cf_bool(cf, "ignore_mx_lookup_error");
    pref = cf_str(cf, "smtp_address_preference");
    q->resolve.prefer = strcasecmp(pref, "ipv4") == 0   ? AF_INET
                        : strcasecmp(pref, "ipv6") == 0 ? AF_INET6
                                                        : 0;
    q->resolve_mx = q->resolve;
    q->resolve_mx.mx = 1;
    qmgr_dns_proxy(q);
    if (!qmgr_dns_use(cf))
        return 0;
    if (qmgr_dns_check(cf, err) < 0)
        return -1;
    q->dns = dns_new(q->loop, cf_list(cf, "sluice_dns_servers"),
                     (double) cf_time(cf, "sluice_dns_timeout"), err);
    return q->dns ? 0 : -1;
}

/* One listener socket's address into the loop-detection list; a
 * wildcard one (0.0.0.0, ::) as every address of this machine's
 * interfaces in its family, with its port. */
static void
qmgr_self_add(struct qmgr *q, const struct sockaddr_storage *ss)
{
    struct ifaddrs *ifs = NULL, *i;
    int wild = 0;
    uint16_t port = 0;

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *) ss;

        wild = s4->sin_addr.s_addr == htonl(INADDR_ANY);
        port = s4->sin_port;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *) ss;

        wild = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
        port = s6->sin6_port;
    } else {
        return;
    }
    if (!wild) {
        q->self.ss = xrealloc(q->self.ss, (q->self.n + 1) * sizeof(*ss));
        q->self.ss[q->self.n++] = *ss;
        return;
    }
    if (getifaddrs(&ifs) < 0) {
        log_warning("getifaddrs: %s: mail to an MX that is this machine "
                    "may loop",
                    strerror(errno));
        return;
    }
    for (i = ifs; i; i = i->ifa_next) {
        struct sockaddr_storage a;

        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != ss->ss_family)
            continue;
        memset(&a, 0, sizeof(a));
        if (ss->ss_family == AF_INET) {
            memcpy(&a, i->ifa_addr, sizeof(struct sockaddr_in));
            ((struct sockaddr_in *) &a)->sin_port = port;
        } else {
            memcpy(&a, i->ifa_addr, sizeof(struct sockaddr_in6));
            ((struct sockaddr_in6 *) &a)->sin6_port = port;
        }
        q->self.ss = xrealloc(q->self.ss, (q->self.n + 1) * sizeof(a));
        q->self.ss[q->self.n++] = a;
    }
    freeifaddrs(ifs);
}

void
qmgr_listeners(struct qmgr *q, const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        memset(&ss, 0, sizeof(ss));
        if (getsockname(fds[i], (struct sockaddr *) &ss, &len) == 0)
            qmgr_self_add(q, &ss);
    }
}

static void
qmgr_free(struct qmgr *q)
{
    size_t i;

    wpool_free(q->pool);
    free(q->notified);
    if (q->sock >= 0)
        close(q->sock);
    if (q->sock_path) {
        unlink(q->sock_path);
        free(q->sock_path);
    }
    for (i = 0; i < q->nmaps; i++)
        lookup_free(q->maps[i]);
    free(q->maps);
    lookup_dlist_free(q->mydest);
    lookup_dlist_free(q->valias);
    for (i = 0; i < q->nalias; i++)
        lookup_free(q->alias_maps[i]);
    free(q->alias_maps);
    for (i = 0; i < q->ntls_maps; i++)
        lookup_free(q->tls_maps[i]);
    free(q->tls_maps);
    for (i = 0; i < q->nsasl_maps; i++)
        lookup_free(q->sasl_maps[i]);
    free(q->sasl_maps);
    for (i = 0; i < q->nsdrh_maps; i++)
        lookup_free(q->sdrh_maps[i]);
    free(q->sdrh_maps);
    verify_free(q->verify);
    free(q->verify_sender);
    tls_cli_free(q->tls_cli);
    free(q->tls_global_match);
    dns_free(q->dns);
    free(q->self.ss);
    free(q->self.proxy);
    while (q->dests)
        qmgr_dest_drop(q, q->dests);
    free(q);
}

struct qmgr *
qmgr_new(const struct cf *cf)
{
    struct qmgr *q = xcalloc(1, sizeof(*q));
    struct buf *err = buf_new(256, 8192);

    q->cf = cf;
    q->sock = -1;
    if (qmgr_open_maps(q, err) < 0) {
        log_error("%s", buf_data(err));
        buf_free(err);
        qmgr_free(q);
        return NULL;
    }
    buf_free(err);
    return q;
}

int
qmgr_check(const struct cf *cf, struct buf *err)
{
    struct qmgr *q = xcalloc(1, sizeof(*q));
    int rc;

    q->cf = cf;
    q->sock = -1;
    rc = qmgr_open_maps(q, err);
    if (rc == 0 && qmgr_dns_use(cf) && qmgr_dns_check(cf, err) < 0)
        rc = -1;
    qmgr_free(q);
    return rc;
}

int
qmgr_run(struct qmgr *q)
{
    const struct cf *cf = q->cf;
    struct buf *err = buf_new(128, 4096);
    long long v;
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* the master restarts us on reload */
    q->qdir = cf_str(cf, "queue_directory");
    q->relayhost = cf_str(cf, "relayhost");
    q->tls_level = cf_str(cf, "smtp_tls_security_level");
    q->myhostname = cf_str(cf, "myhostname");
    if (*q->myhostname == '\0')
        q->myhostname = "localhost";
    v = cf_int(cf, "qmgr_message_active_limit");
    q->active_limit = v > 0 ? (size_t) v : 1;
    qmgr_fd_cap(q);
    v = cf_int(cf, "default_destination_concurrency_limit");
    q->conc = v > 0 ? (unsigned) v : 1;
    v = cf_int(cf, "default_destination_recipient_limit");
    q->rcpt_limit = v > 0 ? (unsigned) v : 1;
    q->run_delay = cf_time(cf, "queue_run_delay");
    if (q->run_delay < 1)
        q->run_delay = 1;
    q->min_backoff = cf_time(cf, "minimal_backoff_time");
    q->max_backoff = cf_time(cf, "maximal_backoff_time");
    if (q->max_backoff < q->min_backoff)
        q->max_backoff = q->min_backoff;
    q->lifetime = cf_time(cf, "maximal_queue_lifetime");
    if (spool_mkdirs(q->qdir, err) < 0) {
        log_error("%s", buf_data(err));
        goto fail;
    }
    if (spool_dirs_open(q->qdir) < 0) /* before the pool's threads */
        log_debug("%s: queue directories not kept open: %s", q->qdir,
                  strerror(errno));
    if (qmgr_bind(q) < 0)
        goto fail;
    q->tls_global = dlv_tls_parse(q->tls_level, &q->tls_global_match);
    if (q->tls_global != DLV_TLS_NONE || q->ntls_maps > 0) {
        struct buf *warn = buf_new(128, 4096);

        buf_reset(err);
        q->tls_cli = tls_cli_new(
            cf_str(cf, "smtp_tls_CAfile"), cf_str(cf, "smtp_tls_CApath"),
            cf_str(cf, "smtp_tls_protocols"),
            cf_str(cf, "smtp_tls_mandatory_protocols"), err, warn);
        if (q->tls_cli == NULL)
            log_warning("smtp: TLS is not available: %s; mail to next hops "
                        "whose TLS level requires it is deferred (4.7.5)",
                        buf_data(err));
        else if (buf_len(warn) > 0)
            log_warning("smtp: %s; levels verify and secure will find no "
                        "certificate trusted",
                        buf_data(warn));
        buf_free(warn);
    }
    q->loop = ev_default_loop(0);
    if (qmgr_dns_start(q, err) < 0) {
        log_error("%s", buf_data(err));
        goto fail;
    }
    v = cf_int(cf, "sluice_worker_threads");
    q->pool = wpool_new(q->loop, v > 0 ? (int) v : 1, "qmgr-io", 0);
    q->verify_sender = qmgr_verify_sender(cf);
    buf_reset(err);
    q->verify = verify_new(q->loop, q->pool, cf, q->qdir, qmgr_probe, q, err);
    if (q->verify == NULL) {
        log_error("verify: %s", buf_data(err));
        goto fail;
    }
    q->notified = xcalloc(QMGR_NOTIFIED_MAX, sizeof(*q->notified));

    ev_io_init(&q->sock_w, qmgr_sock_cb, q->sock, EV_READ);
    q->sock_w.data = q;
    ev_io_start(q->loop, &q->sock_w);
    ev_timer_init(&q->incoming_t, qmgr_incoming_cb, QMGR_INCOMING_SCAN,
                  QMGR_INCOMING_SCAN);
    q->incoming_t.data = q;
    ev_timer_start(q->loop, &q->incoming_t);
    ev_timer_init(&q->deferred_t, qmgr_deferred_cb, (double) q->run_delay, 0.);
    q->deferred_t.data = q;
    ev_timer_init(&q->kick_t, qmgr_kick_cb, 0., 0.);
    q->kick_t.data = q;
    ev_timer_init(&q->grace_t, qmgr_grace_cb, QMGR_GRACE, 0.);
    q->grace_t.data = q;
    ev_signal_init(&q->term_w, qmgr_signal_cb, SIGTERM);
    q->term_w.data = q;
    ev_signal_start(q->loop, &q->term_w);
    ev_signal_init(&q->int_w, qmgr_signal_cb, SIGINT);
    q->int_w.data = q;
    ev_signal_start(q->loop, &q->int_w);

    log_info_as("qmgr", "started, queue_directory=%s", q->qdir);
    wpool_submit(q->pool, qmgr_recover_work, qmgr_recover_done, q);
    ev_run(q->loop, 0);

    ev_signal_stop(q->loop, &q->term_w);
    ev_signal_stop(q->loop, &q->int_w);
    ev_io_stop(q->loop, &q->sock_w);
    ev_timer_stop(q->loop, &q->incoming_t);
    ev_timer_stop(q->loop, &q->deferred_t);
    ev_timer_stop(q->loop, &q->kick_t);
    ev_timer_stop(q->loop, &q->grace_t);
    log_info_as("qmgr", "stopped");
    rc = 0;
fail:
    buf_free(err);
    qmgr_free(q);
    return rc;
}
