/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd.c - the SMTP front end: listeners and sessions.
 *
 * One libev loop accepts on every listener and runs one session state
 * machine per connection (enum smtpd_state, changed only by smtpd_enter).
 * Input is read into a bounded buf; every complete command line is handled
 * in turn (PIPELINING), replies are appended to an output buf and flushed
 * when no further complete command is buffered or when a command has to
 * wait (filter verdict, commit, error sleep). After "354" the buffered
 * bytes go to the DATA decoder (smtpd_data), which streams the content to
 * the spool file and the header/body to the filter chain.
 *
 * Blocking work runs in the worker pool: the reverse + forward name lookup
 * of the client (its answer cached 60 s per address), the content rewrite
 * after filter modifications (header fields for the top are instead
 * prepended in the room the queue file keeps), and the commit (fsync +
 * rename). Commits are grouped: one batch at a time is in the pool, and
 * the files finished meanwhile wait and go together in the next one (one
 * flush round for all), whose completion sends their 250s. A session that
 * is waiting for such a job stays
 * allocated until the job is back on the loop, even when its client is
 * gone; dead sessions are freed from an ev_idle watcher (armed when a
 * session dies or a dead session's job comes back), never inside a
 * callback chain (filter callbacks may run synchronously in filter_stage).
 *
 * TLS (STARTTLS, or wrapper mode from the connect): the handshake's steps
 * run in the pool (smtpd_tls_step); after it every read and write of the
 * session goes through OpenSSL (smtpd_recv, smtpd_send), and what OpenSSL
 * has decrypted but not handed out is fed to the read watcher as an event
 * (smtpd_update_io), since the socket will not signal it.
 *
 * Owns: its sessions, their sockets, spool files, filter sessions, the
 * loop's watchers and the worker pool. Borrows: cf, the listeners (their
 * fds are not closed here), the filter chain.
 * Threads: the loop thread; worker jobs touch only their job struct.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conf/addrmap.h"
#include "conf/cf.h"
#include "conf/lookup.h"
#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/dns.h"
#include "lib/dnshosts.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/tls.h"
#include "lib/wpool.h"
#include "lib/xalloc.h"
#include "proxy/policy.h"
#include "proxy/rate.h"
#include "proxy/sasl.h"
#include "proxy/smtpd.h"
#include "proxy/smtpd_check.h"
#include "proxy/smtpd_data.h"
#include "proxy/smtpd_parse.h"
#include "queue/spool.h"
#include "queue/verify.h"

#define SMTPD_OUT_HIGH        (256 * 1024) /* stop reading while more is queued */
#define SMTPD_OUT_MAX         (1024 * 1024) /* hard cap of queued replies */
#define SMTPD_READ_CHUNK      16384
#define SMTPD_READ_MIN        256
#define SMTPD_HEAD_READ       65536 /* header changes in place: the most read */
#define SMTPD_IN_EXTRA        65536 /* input buffer: line_length_limit + this */
#define SMTPD_GRACE           10.0  /* seconds to finish on shutdown */
#define SMTPD_DRAIN_MAX       600.0 /* seconds old sessions get after a reload */
#define SMTPD_SAFE            320   /* log_safe output for one peer string */
#define SMTPD_GATE_WAIT       1.0   /* seconds a DATA waits for admission */
#define SMTPD_GATE_PER_WORKER 8 /* default admission slots per scan thread */
#define SMTPD_NVERB           (SMTPD_V_UNKNOWN + 1)
#define SMTPD_NO_VERB         (-1)

enum smtpd_state {
    SMTPD_S_LOOKUP, /* client name lookup running in the pool */
    SMTPD_S_GREET,  /* CONNECT offered to the filters; no greeting yet */
    SMTPD_S_HELO,   /* greeted, no HELO/EHLO yet */
    SMTPD_S_MAIL,   /* HELO done, no transaction */
    SMTPD_S_RCPT,   /* MAIL accepted: RCPT, DATA */
    SMTPD_S_DATA,   /* after 354: input goes to the DATA decoder */
    SMTPD_S_FILTER, /* end of data: waiting for the EOM verdict */
    SMTPD_S_COMMIT, /* content rewrite / commit in the pool */
    SMTPD_S_QUIT    /* flushing the last replies, then close */
};

static const char *const smtpd_state_names[] = {
    "LOOKUP", "GREET",  "HELO",   "MAIL", "RCPT",
    "DATA",   "FILTER", "COMMIT", "QUIT",
};

#define ST(x)  (1u << (x))
#define ST_CMD (ST(SMTPD_S_HELO) | ST(SMTPD_S_MAIL) | ST(SMTPD_S_RCPT))

/* Parameters of one service, read once at start. */
struct smtpd_conf {
    const struct cf *cf;
    const char *service;
    const char *myhostname;
    const char *banner;
    const char *mail_name;
    const char *qdir;
    long long size_limit; /* 0 = none */
    long long queue_minfree;
    long long header_limit;
    long long line_limit;
    long long rcpt_limit;
    long long soft_limit;
    long long hard_limit;
    long long junk_limit;
    long long conn_limit;
    /* smtpd_client_*_rate_limit (0: none), per anvil_rate_time_unit */
    long long rate_limit[RATE_KINDS];
    double timeout;
    double daemon_timeout;
    double error_sleep;
    int disable_vrfy;
    const char *footer; /* smtpd_reject_footer, as written ($name kept) */
    int helo_required;
    int tls_required; /* smtpd_tls_security_level = encrypt: no MAIL */
    int tls_wrapper;  /* smtpd_tls_wrappermode: TLS before the greeting */
    int tls_loglevel;
    int tls_received;           /* smtpd_tls_received_header */
    int ask_ccert;              /* ask for client certificates */
    int req_ccert;              /* 421 without a trusted one */
    const char *fp_digest;      /* smtpd_tls_fingerprint_digest */
    double starttls_timeout;    /* the handshake's time limit */
    struct tls_srv *tls;        /* NULL: no STARTTLS (off, or did not load) */
    struct filter_chain *chain; /* the service's filters */
    int soft_bounce;            /* every 5xx reply said as 4xx */
    int forbid_bare;
    int peername_lookup;
    struct lookup_net *mynetworks;
    struct lookup_net *event_exc;
    struct lookup_net *bare_exc;
    /* SMTP AUTH: NULL when smtpd_sasl_auth_enable is off (or the back end
     * did not load); the connection is the front's, shared by services
     * with the same smtpd_sasl_path */
    struct sasl_srv *sasl;
    struct sasl_policy sasl_pol;     /* smtpd_sasl_security_options */
    struct sasl_policy sasl_tls_pol; /* smtpd_sasl_tls_security_options */
    const char *sasl_service;
    int tls_auth_only;
    int sasl_header; /* smtpd_sasl_authenticated_header */
    int sasl_broken; /* broken_sasl_auth_clients: AUTH=... too */
    long long sasl_resp_limit;
    struct lookup_net *sasl_exc; /* not offered AUTH in EHLO */
    struct smtpd_check *check;   /* smtpd_*_restrictions */
    int check_own;               /* made here, not given by the caller */
};

struct smtpd_srv;
struct smtpd_sess;

struct smtpd_lsn {
    ev_io io;
    int fd;
    struct smtpd_conf conf;
    struct smtpd_srv *srv;
    int nodelay;              /* accepted sockets inherit TCP_NODELAY */
    int fixed;                /* bound to one address: laddr, lport */
    char laddr[NET_ADDR_MAX]; /* the local address of its connections */
    int lport;
};

#define SMTPD_RATE_CLIENTS 100000 /* clients counted at once, at most */

struct smtpd_srv {
    struct ev_loop *loop;
    struct rate_tab *rates; /* the clients' event rates (anvil's) */
    struct wpool *pool;
    struct filter_chain **chains; /* the listeners' chains, each once */
    size_t nchains;
    struct smtpd_lsn *lsn;
    size_t nlsn;
    struct smtpd_sess *live; /* open sessions */
    struct smtpd_sess *dead; /* closed, waiting to be freed */
    size_t nlive;
    int stopping;
    int draining; /* reload: no new sessions, old ones finish */
    ev_signal sigterm, sigint, sighup;
    ev_idle reap; /* frees dead sessions; active only while some wait */
    ev_timer accept_pause;
    ev_timer grace;
    ev_timer drain; /* how long draining may last */
    /* Group commit: finished files wait here while a batch is in the pool;
     * the next batch takes all of them (one flush round for the lot).
     * Beside a batch in flight another starts only for a big file (see
     * smtpd_commit_launch), at most commit_max at once. */
    struct smtpd_job *commit_head, **commit_tail;
    int commit_busy; /* batches in the pool */
    int commit_max;
    int commit_wait_big;   /* big files waiting */
    int commit_flight_big; /* batches in the pool with a big file */
    /* DATA admission: at most data_limit sessions at once from their
     * DATA command to the end-of-data verdict (0 = no limit); the others
     * wait at DATA, oldest first, at most SMTPD_GATE_WAIT. */
    int data_limit;
    int data_busy;
    struct smtpd_sess *gate_head, *gate_tail;
    ev_check gate_admit;    /* admits waiting sessions after slots freed */
    ev_timer gate_timer;    /* the oldest waiting session's deadline */
    struct sasl_srv **sasl; /* one per distinct smtpd_sasl_path */
    size_t nsasl;
    struct dns *dns;      /* DNS lists' lookups, when a service names one */
    struct smtpd_pol {    /* check_policy_service's servers */
        char *spec;       /* the argument as written (the query key) */
        char *context;    /* its own policy_context, or NULL */
        struct policy *p; /* NULL: it could not be set up */
    } * policy;
    size_t npolicy;
    struct policy *verify;   /* the queue manager's verify service, when a
                                service's restrictions ask it */
    struct buf *prepend;     /* the restrictions' PREPEND headers, scratch */
    unsigned long instances; /* mail transactions begun */
};

/* One DNS list lookup of a session's client: A, then TXT when listed. */
struct smtpd_rblq {
    struct smtpd_sess *s;
    size_t i;
    struct dns_query *q;
    char name[DNS_NAME_MAX + 80];
};

/* An answer from the network for the restrictions (smtpd_check_q): the
 * session's, for the command being checked. */
struct smtpd_q {
    struct smtpd_sess *s;
    enum smtpd_check_q q;
    char key[SMTPD_CHECK_KEY_MAX];
    int done;
    unsigned open;      /* lookups still out */
    struct smtpd_qdns { /* Q_NAME: MX, A, AAAA; Q_DNSXL: [0] */
        struct smtpd_q *q;
        int type;
        struct dns_query *h;
    } dq[3];
    struct policy_req *pr;      /* Q_POLICY, Q_VERIFY */
    ev_timer poll;              /* Q_VERIFY: the next question */
    long polls;                 /* Q_VERIFY: questions asked */
    struct dnshosts *hosts;     /* Q_MX, Q_NS, Q_A */
    struct smtpd_check_srv *sv; /* their answer, as the restrictions take it */
    struct smtpd_check_ans ans; /* once done */
    char *action; /* Q_POLICY's, NULL: the server failed; Q_VERIFY's text */
};

typedef void (*smtpd_cont)(struct smtpd_sess *s,
                           const struct filter_result *res);

struct smtpd_sess {
    struct smtpd_srv *srv;
    int read_full; /* the last read filled its room: read more next time */
    const struct smtpd_conf *conf;
    struct smtpd_sess *next, *prev;
    enum smtpd_state state;
    int fd;
    ev_io rio, wio;
    ev_timer idle, total, sleep;
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[NET_ADDR_MAX];
    int port;
    char laddr[NET_ADDR_MAX];
    int lport;
    char name[NI_MAXHOST];
    char *rev_name;          /* the reverse lookup's, when not name */
    int name_code, rev_code; /* SMTPD_CHECK_NAME_* (NONE: no lookup) */
    char ident[NI_MAXHOST + NET_ADDR_MAX + 4]; /* NAME[ADDR] */
    struct buf *in, *out, *line, *raw;
    struct filter_sess *fs;
    struct filter_env env;
    smtpd_cont cont; /* waiting for this filter verdict */
    unsigned jobs;   /* pool jobs holding this session */
    /* before the greeting: the name lookup and the DNS lists */
    unsigned connect_wait;
    struct smtpd_check_rbl *rbl; /* the client in each DNS list */
    struct smtpd_rblq *rblq;
    size_t nrbl;
    /* the restrictions' answers for the command being checked, and what
     * runs again once the one it waits for is in */
    struct smtpd_q **qv;
    size_t nq;
    void (*check_again)(struct smtpd_sess *s);
    unsigned long instance; /* this mail transaction's, for policy servers */
    unsigned long long size_decl; /* MAIL FROM's SIZE=, or 0 */
    int waiting;                  /* a command waits: filter, commit */
    int sleeping;                 /* error sleep before the next reply */
    int closing;                  /* close once the output is flushed */
    int dead;
    int denied;             /* CONNECT rejected: 503 to everything */
    const char *tls_refuse; /* smtpd_tls_req_ccert: why, 421 to all */
    int skip_line;          /* discarding an overlong line */
    int backlog_paused;     /* filter backlog high: not reading */
    int data_slot;          /* holds a DATA admission slot */
    int gated;              /* waiting at DATA for a slot */
    struct smtpd_sess *gate_next, *gate_prev;
    ev_tstamp gate_since;
    int in_process;
    int esmtp;
    unsigned ehlo_mask; /* smtpd_discard_ehlo_keywords, once known */
    int ehlo_known;
    int forbid_bare;
    const char *last_cmd; /* for "... after CMD from ..." */
    int cur;              /* verb whose reply is pending, or NO_VERB */
    unsigned cnt[SMTPD_NVERB], ok[SMTPD_NVERB];
    long long errors, junk;
    char *helo;
    const char *proto;
    /* transaction */
    char *sender;
    char *body_type;
    char **rcpts;
    size_t nrcpt, rcpt_alloc;
    unsigned rcpt_tried;
    int txn_filters; /* MAIL offered to the filters: ABORT owed */
    enum filter_verdict txn_verdict; /* HOLD/DISCARD before EOM */
    char *txn_text;
    /* the restrictions' HOLD or DISCARD for the RCPT waiting for its
     * filter verdict (SMTPD_CHECK_PASS: none), and its text */
    enum smtpd_check_verdict pend_check;
    char *pend_check_text;
    char *pend_prepend;  /* and its PREPEND headers, or NULL */
    struct buf *prepend; /* the accepted ones' ("Name: value\n"...) */
    char *pend_addr;     /* MAIL/RCPT address waiting for a verdict */
    char *pend_body;
    struct spool_file *sf;
    char qid[SPOOL_ID_SIZE];
    struct smtpd_data *dec;
    int write_err;
    int msgid_logged;
    char safe[4][SMTPD_SAFE];
    /* TLS (STARTTLS, or wrapper mode from the start) */
    struct tls_conn tc; /* ssl, on, failed, rd_ww, wr_wr */
    int tls_hs;         /* handshake under way: only it may touch tc.ssl */
    int tls_busy;       /* a handshake step is in the pool (fd kept open) */
    int tls_start;      /* STARTTLS answered: handshake once the 220 is out */
    struct smtpd_tls *tls; /* from the first handshake step on */
    /* SMTP AUTH */
    int sasl_line;           /* 334 sent: the next line is the answer */
    struct smtpd_sasl *sasl; /* from EHLO's wait or AUTH on */
};

/* A session's AUTH state (allocated for sessions that need it only). */
struct smtpd_sasl {
    struct sasl_req *req;  /* the exchange under way */
    struct sasl_wait wait; /* EHLO waits for the mechanism list */
    char *mech;            /* of the exchange under way */
    char *method;          /* authenticated: the mechanism, */
    char *user;            /* and the user name */
    char *sender;          /* MAIL FROM's AUTH=, this transaction */
};

/* A TLS session's own (allocated for TLS sessions only: 10,000 idle
 * sessions in clear do not carry it). */
struct smtpd_tls {
    void (*cont)(struct smtpd_sess *s); /* after the handshake */
    struct smtpd_tls_job {
        struct smtpd_sess *s;
        SSL *ssl;
        int res; /* SSL_ERROR_NONE, _WANT_READ, _WANT_WRITE, or failed */
        char why[256];
    } job;
    struct tls_info ti;
    struct tls_peer peer; /* the client's certificate */
};

static void smtpd_process(struct smtpd_sess *s);
static void smtpd_flush(struct smtpd_sess *s);
static int smtpd_rate_over(struct smtpd_sess *s, enum rate_kind kind);
static void smtpd_update_io(struct smtpd_sess *s);
static void smtpd_close(struct smtpd_sess *s);
static void smtpd_finish(struct smtpd_sess *s);
static void smtpd_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void smtpd_tls_begin(struct smtpd_sess *s,
                            void (*cont)(struct smtpd_sess *s));
static void smtpd_tls_step(struct smtpd_sess *s);
static void smtpd_starttls_done(struct smtpd_sess *s);
static void smtpd_greet(struct smtpd_sess *s);

static struct lookup_net *
smtpd_net_new(const struct cf *cf, const char *name, const char *service)
{
    struct buf *err = buf_new(128, 4096);
    struct lookup_net *n = lookup_net_new(cf_list(cf, name), err);

    if (n == NULL)
        log_fatal("service %s: %s: %s", service, name, buf_data(err));
    buf_free(err);
    return n;
}

/* smtpd_tls_security_level: 0 none (or empty), 1 may, 2 encrypt. Any
 * other word (the client's levels: verify, secure...) fails closed, as
 * encrypt; smtpd_tls_load says so. */
static int
smtpd_tls_level(const struct cf *cf)
{
    const char *v = cf_str(cf, "smtpd_tls_security_level");

    if (*v == '\0' || strcasecmp(v, "none") == 0)
        return 0;
    if (strcasecmp(v, "may") == 0)
        return 1;
    return 2;
}

void
smtpd_tls_load(const struct cf *cf, struct smtpd_listener *ls, size_t n)
{
    struct buf *err = buf_new(256, 4096);

    for (size_t i = 0; i < n; i++) {
        const struct cf *scf = ls[i].svc && ls[i].svc->cf ? ls[i].svc->cf : cf;
        const char *svc =
            ls[i].svc && ls[i].svc->name ? ls[i].svc->name : "smtp";
        const char *level = cf_str(scf, "smtpd_tls_security_level");
        const char *cert = cf_str(scf, "smtpd_tls_cert_file");
        int lv = smtpd_tls_level(scf);

        ls[i].tls = NULL;
        if (lv == 0 && !cf_bool(scf, "smtpd_tls_wrappermode"))
            continue;
        if (lv == 2 && strcasecmp(level, "encrypt") != 0)
            log_warning("service %s: smtpd_tls_security_level = %s is not a "
                        "level of the SMTP server (none, may, encrypt): "
                        "taken as encrypt",
                        svc, level);
        if (*cert == '\0') {
            log_warning("service %s: TLS is enabled, but smtpd_tls_cert_file "
                        "is empty: disabling TLS support",
                        svc);
            continue;
        }
        buf_reset(err);
        ls[i].tls =
            tls_srv_new(cert, cf_str(scf, "smtpd_tls_key_file"),
                        cf_str(scf, lv == 2 ? "smtpd_tls_mandatory_protocols"
                                            : "smtpd_tls_protocols"),
                        err);
        if (ls[i].tls == NULL) {
            log_warning("service %s: %s: disabling TLS support", svc,
                        buf_data(err));
            continue;
        }
        if (cf_bool(scf, "smtpd_tls_req_ccert") && lv != 2)
            log_warning("service %s: Can't require client certs unless TLS "
                        "is required (smtpd_tls_security_level = encrypt)",
                        svc);
        if (!tls_digest_ok(cf_str(scf, "smtpd_tls_fingerprint_digest")))
            log_warning("service %s: smtpd_tls_fingerprint_digest: unknown "
                        "digest \"%s\": client certificates have no "
                        "fingerprint",
                        svc, cf_str(scf, "smtpd_tls_fingerprint_digest"));
        if (cf_bool(scf, "smtpd_tls_ask_ccert")
            || (lv == 2 && cf_bool(scf, "smtpd_tls_req_ccert"))) {
            buf_reset(err);
            tls_srv_ccert(ls[i].tls, cf_str(scf, "smtpd_tls_CAfile"),
                          cf_str(scf, "smtpd_tls_CApath"),
                          (int) cf_int(scf, "smtpd_tls_ccert_verifydepth"),
                          err);
            if (buf_len(err) > 0)
                log_warning("service %s: %s", svc, buf_data(err));
        }
    }
    buf_free(err);
}

static void
smtpd_sasl_policy(const struct cf *cf, const char *name, const char *service,
                  struct sasl_policy *pol)
{
    struct buf *err = buf_new(64, 1024);

    if (sasl_policy_parse(cf_list(cf, name), pol, err) < 0)
        log_warning("service %s: %s: %s (ignored)", service, name,
                    buf_data(err));
    buf_free(err);
}

static void
smtpd_conf_init(struct smtpd_conf *c, const struct cf *cf, const char *service,
                struct smtpd_check *check)
{
    c->cf = cf;
    c->service = service;
    c->myhostname = cf_str(cf, "myhostname");
    c->banner = cf_str(cf, "smtpd_banner");
    c->mail_name = cf_str(cf, "mail_name");
    c->qdir = cf_str(cf, "queue_directory");
    c->size_limit = cf_size(cf, "message_size_limit");
    c->queue_minfree = cf_size(cf, "queue_minfree");
    c->header_limit = cf_size(cf, "header_size_limit");
    c->line_limit = cf_int(cf, "line_length_limit");
    c->rcpt_limit = cf_int(cf, "smtpd_recipient_limit");
    c->soft_limit = cf_int(cf, "smtpd_soft_error_limit");
    c->hard_limit = cf_int(cf, "smtpd_hard_error_limit");
    c->junk_limit = cf_int(cf, "smtpd_junk_command_limit");
    c->conn_limit = cf_int(cf, "smtpd_client_connection_count_limit");
    c->rate_limit[RATE_CONN] = cf_int(cf, "smtpd_client_connection_rate_limit");
    c->rate_limit[RATE_MAIL] = cf_int(cf, "smtpd_client_message_rate_limit");
    c->rate_limit[RATE_RCPT] = cf_int(cf, "smtpd_client_recipient_rate_limit");
    c->rate_limit[RATE_AUTH] = cf_int(cf, "smtpd_client_auth_rate_limit");
    c->rate_limit[RATE_NEWTLS] =
        cf_int(cf, "smtpd_client_new_tls_session_rate_limit");
    c->timeout = (double) cf_time(cf, "smtpd_timeout");
    c->daemon_timeout = (double) cf_time(cf, "daemon_timeout");
    c->error_sleep = (double) cf_time(cf, "smtpd_error_sleep_time");
    c->disable_vrfy = cf_bool(cf, "disable_vrfy_command");
    c->footer = cf_raw(cf, "smtpd_reject_footer");
    c->helo_required = cf_bool(cf, "smtpd_helo_required");
    c->tls_required = smtpd_tls_level(cf) == 2;
    c->tls_wrapper = cf_bool(cf, "smtpd_tls_wrappermode");
    c->tls_loglevel = (int) cf_int(cf, "smtpd_tls_loglevel");
    c->tls_received = cf_bool(cf, "smtpd_tls_received_header");
    /* Postfix: required certificates only where TLS is required */
    c->req_ccert = c->tls_required && cf_bool(cf, "smtpd_tls_req_ccert");
    c->ask_ccert = cf_bool(cf, "smtpd_tls_ask_ccert") || c->req_ccert;
    c->fp_digest = cf_str(cf, "smtpd_tls_fingerprint_digest");
    c->starttls_timeout = (double) cf_time(cf, "smtpd_starttls_timeout");
    if (c->starttls_timeout <= 0)
        c->starttls_timeout = 300;
    c->forbid_bare = cf_bool(cf, "smtpd_forbid_bare_newline");
    c->soft_bounce = cf_bool(cf, "soft_bounce");
    c->peername_lookup = cf_bool(cf, "smtpd_peername_lookup");
    c->mynetworks = smtpd_net_new(cf, "mynetworks", service);
    c->event_exc =
        smtpd_net_new(cf, "smtpd_client_event_limit_exceptions", service);
    c->bare_exc =
        smtpd_net_new(cf, "smtpd_forbid_bare_newline_exclusions", service);
    if (c->line_limit < 512)
        c->line_limit = 512;
    if (c->timeout <= 0)
        c->timeout = 300;
    if (c->daemon_timeout <= 0)
        c->daemon_timeout = 18000;
    if (c->header_limit <= 0)
        c->header_limit = 102400;
    c->sasl_service = cf_str(cf, "smtpd_sasl_service");
    c->tls_auth_only = cf_bool(cf, "smtpd_tls_auth_only");
    c->sasl_header = cf_bool(cf, "smtpd_sasl_authenticated_header");
    c->sasl_broken = cf_bool(cf, "broken_sasl_auth_clients");
    c->sasl_resp_limit = cf_int(cf, "smtpd_sasl_response_limit");
    if (c->sasl_resp_limit < 512)
        c->sasl_resp_limit = 512;
    if (c->sasl_resp_limit > c->line_limit + SMTPD_IN_EXTRA / 2)
        c->sasl_resp_limit = c->line_limit + SMTPD_IN_EXTRA / 2;
    c->sasl_exc = smtpd_net_new(cf, "smtpd_sasl_exceptions_networks", service);
    smtpd_sasl_policy(cf, "smtpd_sasl_security_options", service, &c->sasl_pol);
    smtpd_sasl_policy(cf, "smtpd_sasl_tls_security_options", service,
                      &c->sasl_tls_pol);
    c->check = check;
    if (check == NULL) {
        struct buf *err = buf_new(256, 4096);

        /* checked by the master before it started us (smtpd_check_conf) */
        if ((c->check = smtpd_check_new(cf, err, NULL)) == NULL)
            log_fatal("service %s: %s", service, buf_data(err));
        c->check_own = 1;
        buf_free(err);
    }
}

void
smtpd_checks_load(const struct cf *cf, struct smtpd_listener *ls, size_t n)
{
    struct buf *err = buf_new(256, 4096);

    for (size_t i = 0; i < n; i++) {
        const struct cf *scf = ls[i].svc && ls[i].svc->cf ? ls[i].svc->cf : cf;
        size_t k;

        for (k = 0; k < i && ls[k].svc != ls[i].svc; k++)
            ;
        if (k < i) { /* the same service: the same restrictions */
            ls[i].check = ls[k].check;
            continue;
        }
        if ((ls[i].check = smtpd_check_new(scf, err, NULL)) == NULL)
            log_fatal("%s", buf_data(err));
    }
    buf_free(err);
}

static void
smtpd_conf_free(struct smtpd_conf *c)
{
    if (c->check_own)
        smtpd_check_free(c->check);
    lookup_net_free(c->mynetworks);
    lookup_net_free(c->event_exc);
    lookup_net_free(c->bare_exc);
    lookup_net_free(c->sasl_exc);
}

static void
smtpd_sasl_check_one(const struct cf *cf, const char *svc, struct buf *out)
{
    const char *type = cf_str(cf, "smtpd_sasl_type");
    static const char *const opts[] = {"smtpd_sasl_security_options",
                                       "smtpd_sasl_tls_security_options"};
    struct sasl_policy pol;
    struct buf *err;

    if (!cf_bool(cf, "smtpd_sasl_auth_enable"))
        return;
    if (strcasecmp(type, "dovecot") != 0) {
        buf_printf(out,
                   "service %s: smtpd_sasl_type = %s: unsupported SASL "
                   "server implementation (only dovecot); AUTH disabled\n",
                   svc, type);
        return;
    }
    err = buf_new(128, 1024);
    for (size_t i = 0; i < 2; i++) {
        buf_reset(err);
        if (sasl_policy_parse(cf_list(cf, opts[i]), &pol, err) < 0)
            buf_printf(out, "service %s: %s: %s (ignored)\n", svc, opts[i],
                       buf_data(err));
    }
    buf_reset(err);
    if (sasl_probe(cf_str(cf, "smtpd_sasl_path"), cf_str(cf, "queue_directory"),
                   err)
        < 0)
        buf_printf(out,
                   "service %s: smtpd_sasl_path: %s: AUTH will not be "
                   "offered until the Dovecot auth socket is there\n",
                   svc, buf_data(err));
    buf_free(err);
}

void
smtpd_sasl_check(const struct cf *cf, const struct cf_service *svcs, size_t n,
                 struct buf *out)
{
    for (size_t i = 0; i < n; i++)
        smtpd_sasl_check_one(svcs[i].cf ? svcs[i].cf : cf,
                             svcs[i].name ? svcs[i].name : "smtp", out);
}

/* The service's SMTP AUTH back end, shared with services that name the
 * same smtpd_sasl_path; none when AUTH is off or the back end is not
 * usable (said in the log). */
static void
smtpd_sasl_attach(struct smtpd_srv *srv, struct smtpd_conf *c)
{
    const struct cf *cf = c->cf;
    const char *type, *path;
    struct buf *err;

    if (!cf_bool(cf, "smtpd_sasl_auth_enable"))
        return;
    type = cf_str(cf, "smtpd_sasl_type");
    if (strcasecmp(type, "dovecot") != 0) {
        log_warning("service %s: smtpd_sasl_type = %s: unsupported SASL "
                    "server implementation (only dovecot); AUTH disabled",
                    c->service, type);
        return;
    }
    path = cf_str(cf, "smtpd_sasl_path");
    for (size_t i = 0; i < srv->nsasl; i++)
        if (strcmp(sasl_srv_path(srv->sasl[i]), path) == 0) {
            c->sasl = srv->sasl[i];
            return;
        }
    err = buf_new(128, 1024);
    c->sasl = sasl_srv_new(srv->loop, path, c->qdir, err);
    if (c->sasl == NULL) {
        log_warning("service %s: smtpd_sasl_path = %s: AUTH disabled",
                    c->service, buf_data(err));
    } else {
        srv->sasl = xrealloc(srv->sasl, (srv->nsasl + 1) * sizeof(*srv->sasl));
        srv->sasl[srv->nsasl++] = c->sasl;
    }
    buf_free(err);
}

/* Peer text for a log line; slot picks one of four buffers. */
static const char *
smtpd_safe(struct smtpd_sess *s, int slot, const char *str)
{
    if (str == NULL)
        str = "";
    return log_safe(str, strlen(str), s->safe[slot], SMTPD_SAFE);
}

static void smtpd_gate_release(struct smtpd_sess *s);

static void
smtpd_enter(struct smtpd_sess *s, enum smtpd_state to)
{
    if (log_debug_enabled() && s->state != to)
        log_debug("%s: state %s -> %s", s->ident, smtpd_state_names[s->state],
                  smtpd_state_names[to]);
    s->state = to;
    /* the end-of-data verdict is in, or the transaction ended */
    if (s->data_slot && to != SMTPD_S_DATA && to != SMTPD_S_FILTER)
        smtpd_gate_release(s);
}

static enum smtpd_state
smtpd_idle_state(const struct smtpd_sess *s)
{
    if (s->closing)
        return SMTPD_S_QUIT; /* a 421 was said: no more commands */
    return s->helo ? SMTPD_S_MAIL : SMTPD_S_HELO;
}

/*
 * Replies
 */

/* Count a final reply to the current command (stats, error counter). */
static void
smtpd_account(struct smtpd_sess *s, int code)
{
    if (s->cur == SMTPD_NO_VERB || code == 354 || code == 334)
        return;
    if (code >= 200 && code < 400)
        s->ok[s->cur]++;
    else
        s->errors++;
    s->cur = SMTPD_NO_VERB;
    if (code >= 400 && s->errors >= s->conf->soft_limit
        && s->conf->error_sleep > 0 && !s->closing) {
        s->sleeping = 1;
        ev_timer_set(&s->sleep, s->conf->error_sleep, 0.);
        ev_timer_start(s->srv->loop, &s->sleep);
    }
}

static void
smtpd_out_overflow(struct smtpd_sess *s)
{
    log_warning("%s: reply queue over %d bytes: client does not read", s->ident,
                SMTPD_OUT_MAX);
    buf_reset(s->out);
    s->closing = 1;
}

/* soft_bounce, as Postfix's smtpd: a reply line "5xx ..." becomes
 * "4xx ...", and its enhanced code "5.x.y" right after it "4.x.y". */
static void
smtpd_soften(char *line, size_t len)
{
    if (len >= 3 && line[0] == '5')
        line[0] = '4';
    if (len >= 6 && (line[3] == ' ' || line[3] == '-') && line[4] == '5'
        && line[5] == '.')
        line[4] = '4';
}

/* A smtpd_reject_footer macro's value (Postfix's smtpd_expand names), or
 * NULL for a name it does not know. */
static const char *
smtpd_footer_value(struct smtpd_sess *s, const char *name, char *tmp, size_t n)
{
    if (strcmp(name, "server_name") == 0)
        return s->conf->myhostname;
    if (strcmp(name, "client") == 0)
        return s->ident;
    if (strcmp(name, "client_address") == 0)
        return s->addr;
    if (strcmp(name, "client_name") == 0)
        return s->name;
    if (strcmp(name, "reverse_client_name") == 0)
        return s->rev_name ? s->rev_name : s->name;
    if (strcmp(name, "client_port") == 0) {
        snprintf(tmp, n, "%d", s->port);
        return tmp;
    }
    if (strcmp(name, "helo_name") == 0)
        return s->helo ? s->helo : "";
    if (strcmp(name, "sender") == 0)
        return s->sender ? s->sender : "";
    if (strcmp(name, "localtime") == 0) {
        time_t now = time(NULL);
        struct tm tm;

        localtime_r(&now, &tm);
        strftime(tmp, n, "%b %d %H:%M:%S", &tm);
        return tmp;
    }
    return NULL;
}

/* Expand $name, ${name}, ${name?text} and ${name:text} in t[0, len) into
 * out, values made printable (smtpd_expansion_filter's default). -1 for
 * an unknown name or a "${" without its "}". */
static int
smtpd_footer_expand(struct smtpd_sess *s, const char *t, size_t len,
                    struct buf *out)
{
    const char *end = t + len;

    while (t < end) {
        char name[64], tmp[64];
        const char *v, *alt = NULL, *q;
        size_t nl, altl = 0;
        int brace, cond = 0;

        if (*t != '$') {
            buf_putc(out, *t++);
            continue;
        }
        t++;
        brace = t < end && *t == '{';
        if (brace)
            t++;
        for (q = t; q < end && (isalnum((unsigned char) *q) || *q == '_'); q++)
            ;
        nl = (size_t) (q - t);
        if (nl == 0 || nl >= sizeof(name))
            return -1;
        memcpy(name, t, nl);
        name[nl] = '\0';
        t = q;
        if (brace) {
            if (t < end && (*t == '?' || *t == ':')) {
                cond = *t == '?' ? 1 : 2;
                alt = ++t;
                while (t < end && *t != '}')
                    t++;
                altl = (size_t) (t - alt);
            }
            if (t >= end || *t != '}')
                return -1;
            t++;
        }
        if ((v = smtpd_footer_value(s, name, tmp, sizeof(tmp))) == NULL) {
            log_warning("smtpd_reject_footer: unknown macro name \"%s\"; the "
                        "footer is not added",
                        name);
            return -1;
        }
        if (cond == 1) { /* ${name?text}: text when the value is not empty */
            if (*v && smtpd_footer_expand(s, alt, altl, out) < 0)
                return -1;
            continue;
        }
        if (cond == 2) { /* ${name:text}: text when it is empty */
            if (!*v && smtpd_footer_expand(s, alt, altl, out) < 0)
                return -1;
            continue;
        }
        for (; *v; v++)
            buf_putc(out, (unsigned char) *v < 0x20 || *v == 0x7f ? '_' : *v);
    }
    return 0;
}

/* smtpd_reject_footer after the 4xx/5xx reply that starts at s->out's
 * start, as Postfix's smtp_reply_footer: each "\n" of the template a new
 * line with the reply's code and enhanced status code (the line before
 * it continued with '-'), or, for a template that starts with "\c", the
 * first part on the reply's last line. Nothing is added when the
 * template does not expand. */
static void
smtpd_footer(struct smtpd_sess *s, size_t start)
{
    const char *tpl = s->conf->footer;
    struct buf *f;
    size_t end = buf_len(s->out), last, dl = 0, cur;
    const char *p, *b;
    char code[4], dsn[16];

    if (end < start + 6 || s->dead)
        return;
    b = buf_data(s->out);
    last = end - 2;
    while (last > start && b[last - 1] != '\n')
        last--;
    memcpy(code, b + last, 3);
    code[3] = '\0';
    for (p = b + last + 4; dl < sizeof(dsn) - 1 && p + dl < b + end
                           && (isdigit((unsigned char) p[dl]) || p[dl] == '.');
         dl++)
        ;
    if (dl < 5 || p[dl] != ' ' || p[1] != '.')
        dl = 0;
    memcpy(dsn, p, dl);
    dsn[dl] = '\0';
    f = buf_new(256, 4096);
    buf_append(f, b + start, end - start - 2); /* without the last CRLF */
    cur = last - start;                        /* the line being ended */
    for (p = tpl;;) {
        const char *nl = strstr(p, "\\n");
        size_t n = nl ? (size_t) (nl - p) : strlen(p);

        if (p == tpl && strncmp(p, "\\c", 2) == 0) {
            p += 2;
            n -= 2;
        } else {
            /* the line before goes on: its code gets '-' */
            buf_data(f)[cur + 3] = '-';
            buf_puts(f, "\r\n");
            cur = buf_len(f);
            buf_printf(f, "%s %s%s", code, dsn, dl ? " " : "");
        }
        if (smtpd_footer_expand(s, p, n, f) < 0) {
            buf_free(f);
            return;
        }
        if (nl == NULL)
            break;
        p = nl + 2;
    }
    if (buf_puts(f, "\r\n") < 0) { /* over its bound: no footer */
        buf_free(f);
        return;
    }
    buf_truncate(s->out, start);
    if (buf_append(s->out, buf_data(f), buf_len(f)) < 0)
        smtpd_out_overflow(s);
    buf_free(f);
}

/* One reply line "CODE text" (no CRLF); the code is parsed from it. */
static void __attribute__((format(printf, 2, 3)))
smtpd_reply(struct smtpd_sess *s, const char *fmt, ...)
{
    va_list ap;
    size_t start = buf_len(s->out);
    int code;

    if (s->dead)
        return;
    va_start(ap, fmt);
    if (buf_vprintf(s->out, fmt, ap) < 0 || buf_puts(s->out, "\r\n") < 0) {
        va_end(ap);
        smtpd_out_overflow(s);
        return;
    }
    va_end(ap);
    if (s->conf->soft_bounce)
        smtpd_soften(buf_data(s->out) + start, buf_len(s->out) - start);
    code = atoi(buf_data(s->out) + start);
    if (code >= 400 && code <= 599 && *s->conf->footer)
        smtpd_footer(s, start);
    smtpd_account(s, code);
}

/* A reply of one or more lines; text lines are separated by "\n". */
static void
smtpd_reply_text(struct smtpd_sess *s, int code, const char *dsn,
                 const char *text)
{
    const char *p = text, *nl;
    char soft[16];
    size_t n, i, start = buf_len(s->out);
    int fail = 0;

    if (s->dead)
        return;
    if (s->conf->soft_bounce && code >= 500 && code <= 599) {
        code -= 100;
        if (dsn && dsn[0] == '5') {
            snprintf(soft, sizeof(soft), "4%s", dsn + 1);
            dsn = soft;
        }
    }
    for (;;) {
        nl = strchr(p, '\n');
        n = nl ? (size_t) (nl - p) : strlen(p);
        fail |= buf_printf(s->out, "%d%c%s%s", code, nl ? '-' : ' ',
                           dsn ? dsn : "", dsn ? " " : "");
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char) p[i];

            if (c == '\r')
                continue;
            fail |= buf_putc(s->out, c < 0x20 || c == 0x7f ? ' ' : c);
        }
        fail |= buf_puts(s->out, "\r\n");
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    if (fail) {
        smtpd_out_overflow(s);
        return;
    }
    if (code >= 400 && code <= 599 && *s->conf->footer)
        smtpd_footer(s, start);
    smtpd_account(s, code);
}

/* Reply and log values of a REJECT or TEMPFAIL verdict. */
static void
smtpd_verdict_reply(const struct filter_result *r, int *code, const char **dsn,
                    const char **text)
{
    if (r->verdict == FILTER_REJECT) {
        *code = r->code >= 500 && r->code <= 599 ? r->code : 550;
        *dsn = r->dsn && r->dsn[0] == '5' ? r->dsn : "5.7.1";
        *text = r->text && *r->text ? r->text : "Command rejected";
    } else {
        *code = r->code >= 400 && r->code <= 499 ? r->code : 451;
        *dsn = r->dsn && r->dsn[0] == '4' ? r->dsn : "4.7.1";
        *text = r->text && *r->text ? r->text
                                    : "Service unavailable - try again later";
    }
}

/* "ID: reject: STAGE from NAME[ADDR]: CODE DSN TEXT; from=<> to=<> ..." */
static void
smtpd_log_event(struct smtpd_sess *s, const char *what, const char *stage,
                const char *reply, const char *rcpt)
{
    struct buf *b = buf_new(256, LOG_LINE_MAX);
    char *soft = NULL;

    if (s->conf->soft_bounce && reply[0] == '5') { /* as it was said */
        soft = xstrdup(reply);
        smtpd_soften(soft, strlen(soft));
        reply = soft;
    }
    buf_printf(b, "%s: %s: %s from %s: %s;", s->qid[0] ? s->qid : "NOQUEUE",
               what, stage, s->ident, smtpd_safe(s, 0, reply));
    free(soft);
    if (s->sender)
        buf_printf(b, " from=<%s>", smtpd_safe(s, 1, s->sender));
    else if (s->pend_addr && strcmp(stage, "MAIL") == 0)
        buf_printf(b, " from=<%s>", smtpd_safe(s, 1, s->pend_addr));
    if (rcpt)
        buf_printf(b, " to=<%s>", smtpd_safe(s, 2, rcpt));
    buf_printf(b, " proto=%s", s->proto ? s->proto : "SMTP");
    if (s->helo)
        buf_printf(b, " helo=<%s>", smtpd_safe(s, 3, s->helo));
    log_info("%s", buf_data(b));
    buf_free(b);
}

/* Postfix names events decided by a milter "milter-reject", ... */
static const char *
smtpd_event(const struct filter_result *r, const char *what)
{
    static char name[32];

    if (r == NULL || r->filter == NULL || strncmp(r->filter, "milter", 6) != 0)
        return what;
    snprintf(name, sizeof(name), "milter-%s", what);
    return name;
}

/* Reply with a filter verdict and log it as a reject. A 421 (a milter's
 * "shutdown" default action) also ends the session, as in Postfix. */
static void
smtpd_reject(struct smtpd_sess *s, const struct filter_result *r,
             const char *stage, const char *rcpt)
{
    struct buf *b = buf_new(128, LOG_LINE_MAX);
    const char *dsn, *text, *what = smtpd_event(r, "reject");
    int code;

    smtpd_verdict_reply(r, &code, &dsn, &text);
    smtpd_reply_text(s, code, dsn, text);
    /* Postfix: "milter-reject: END-OF-MESSAGE from ...: 5.7.1 text" */
    if (what[0] == 'm' && strcmp(stage, "END-OF-MESSAGE") == 0)
        buf_printf(b, "%s ", dsn);
    else
        buf_printf(b, "%d %s ", code, dsn);
    if (rcpt && strcmp(stage, "RCPT") == 0)
        buf_printf(b, "<%s>: ", rcpt);
    buf_puts(b, text);
    smtpd_log_event(s, what, stage, buf_data(b), rcpt);
    buf_free(b);
    if (code == 421)
        smtpd_finish(s);
}

/*
 * Output and input
 */

/* Waiting for the filters' verdict or the commit, the only reply the
 * client is owed: it normally sends nothing meanwhile, so the read
 * watcher is left running (stopping and restarting it costs two
 * epoll_ctl calls per message) and smtpd_read_cb stops it only if input
 * does arrive. */
static int
smtpd_lazy_wait(const struct smtpd_sess *s)
{
    return s->waiting || s->state == SMTPD_S_FILTER
           || s->state == SMTPD_S_COMMIT;
}

static void
smtpd_update_io(struct smtpd_sess *s)
{
    struct ev_loop *loop = s->srv->loop;
    int rd;

    if (s->dead || s->tls_hs) /* the handshake runs its own watchers */
        return;
    rd = !s->closing && !s->waiting && !s->sleeping && !s->backlog_paused
         && buf_len(s->out) < SMTPD_OUT_HIGH && buf_len(s->in) < s->in->cap;
    if (smtpd_lazy_wait(s) && !s->closing && !s->sleeping && !s->backlog_paused
        && buf_len(s->out) < SMTPD_OUT_HIGH && buf_len(s->in) < s->in->cap)
        rd = -1; /* leave the read watcher as it is */
    switch (s->state) {
    case SMTPD_S_LOOKUP:
    case SMTPD_S_GREET:
    case SMTPD_S_QUIT:
        rd = 0;
        break;
    case SMTPD_S_FILTER:
    case SMTPD_S_COMMIT:
        if (rd > 0)
            rd = 0;
        break;
    case SMTPD_S_HELO:
    case SMTPD_S_MAIL:
    case SMTPD_S_RCPT:
    case SMTPD_S_DATA:
        break;
    }
    if (s->tc.wr_wr) /* a write waits for the socket to be readable */
        rd = 1;
    if (rd > 0) {
        ev_io_start(loop, &s->rio);
        /* what OpenSSL decrypted and holds raises no event of its own */
        if (s->tc.on && SSL_has_pending(s->tc.ssl))
            ev_feed_event(loop, &s->rio, EV_READ);
    } else if (rd == 0)
        ev_io_stop(loop, &s->rio);
    if ((buf_len(s->out) > 0 && !s->sleeping) || s->tc.rd_ww)
        ev_io_start(loop, &s->wio);
    else
        ev_io_stop(loop, &s->wio);
}

/*
 * TLS I/O: with TLS on, reads and writes go through OpenSSL, and these
 * two say what recv() and send() would (-1 with EAGAIN: try when the
 * socket is ready; the direction OpenSSL needs is noted for
 * smtpd_update_io). Renegotiation is off; a TLS 1.3 key update is the
 * one case where a read must write or a write must read.
 */
static ssize_t
smtpd_tls_io(struct smtpd_sess *s, int writing, void *p, size_t n)
{
    char why[256];
    ssize_t r = tls_conn_io(&s->tc, writing, p, n, why, sizeof(why));
    int e = errno;

    if (r < 0 && e != EAGAIN && why[0]) {
        log_info("SSL_%s error from %s: %s", writing ? "write" : "read",
                 s->ident, why);
        errno = e;
    }
    return r;
}

static ssize_t
smtpd_recv(struct smtpd_sess *s, void *p, size_t n)
{
    return s->tc.on ? smtpd_tls_io(s, 0, p, n) : recv(s->fd, p, n, 0);
}

static ssize_t
smtpd_send(struct smtpd_sess *s, const void *p, size_t n)
{
    return s->tc.on ? smtpd_tls_io(s, 1, (void *) p, n)
                    : send(s->fd, p, n, MSG_NOSIGNAL);
}

static void
smtpd_lost(struct smtpd_sess *s)
{
    log_info("lost connection after %s from %s", s->last_cmd, s->ident);
    smtpd_close(s);
}

static void
smtpd_flush(struct smtpd_sess *s)
{
    ssize_t n;

    if (s->dead || s->sleeping)
        return;
    while (buf_len(s->out) > 0) {
        n = smtpd_send(s, buf_data(s->out), buf_len(s->out));
        if (n > 0) {
            buf_consume(s->out, (size_t) n);
            ev_timer_again(s->srv->loop, &s->idle);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        smtpd_lost(s);
        return;
    }
    if (buf_len(s->out) == 0 && s->closing) {
        smtpd_close(s);
        return;
    }
    if (buf_len(s->out) == 0 && s->tls_start) { /* the 220 is out */
        smtpd_tls_begin(s, smtpd_starttls_done);
        return;
    }
    smtpd_update_io(s);
}

/* Close once the replies queued so far are out; read nothing more. */
static void
smtpd_finish(struct smtpd_sess *s)
{
    s->closing = 1;
    s->sleeping = 0;
    ev_timer_stop(s->srv->loop, &s->sleep);
    smtpd_enter(s, SMTPD_S_QUIT);
}

static void
smtpd_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct smtpd_sess *s = w->data;
    int was_high = buf_len(s->out) >= SMTPD_OUT_HIGH;

    if (s->dead)
        return;
    if (s->tls_hs) {
        smtpd_tls_step(s);
        return;
    }
    if (s->tc.rd_ww) { /* a read waited for this */
        s->tc.rd_ww = 0;
        smtpd_read_cb(loop, &s->rio, EV_READ);
        if (s->dead)
            return;
    }
    smtpd_flush(s);
    /* The client read its replies: go on with buffered commands. */
    if (!s->dead && was_high && buf_len(s->out) < SMTPD_OUT_HIGH)
        smtpd_process(s);
}

static void
smtpd_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct smtpd_sess *s = w->data;
    size_t room;
    ssize_t n;
    char *p;

    if (s->dead)
        return;
    if (s->tls_hs) {
        smtpd_tls_step(s);
        return;
    }
    if (s->tc.wr_wr) { /* a write waited for this */
        s->tc.wr_wr = 0;
        smtpd_flush(s);
        if (s->dead)
            return;
    }
    if (smtpd_lazy_wait(s)) { /* input while we owe a reply: later */
        ev_io_stop(loop, w);
        return;
    }
    /* Read what fits: a client that only sends commands keeps a small
     * buffer (10,000 idle sessions), one that streams DATA fills it, and
     * then it doubles up to SMTPD_READ_CHUNK per read; message content
     * is read SMTPD_READ_CHUNK at a time from the start (a 10 KB message
     * in one read instead of four). */
    room =
        s->in->size > buf_len(s->in) + 1 ? s->in->size - buf_len(s->in) - 1 : 0;
    if (s->state == SMTPD_S_DATA) /* content streams: read it in big pieces */
        room = SMTPD_READ_CHUNK;
    else if (s->read_full || room < SMTPD_READ_MIN)
        room = 2 * s->in->size;
    if (room > SMTPD_READ_CHUNK)
        room = SMTPD_READ_CHUNK;
    if (room > s->in->cap - buf_len(s->in))
        room = s->in->cap - buf_len(s->in);
    if (room == 0 || (p = buf_reserve(s->in, room)) == NULL) {
        smtpd_update_io(s);
        return;
    }
    n = smtpd_recv(s, p, room);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (s->tc.rd_ww)
            smtpd_update_io(s);
        return;
    }
    if (n <= 0) {
        smtpd_lost(s);
        return;
    }
    s->read_full = (size_t) n == room;
    buf_commit(s->in, (size_t) n);
    ev_timer_again(loop, &s->idle);
    smtpd_process(s);
}

/*
 * The TLS handshake (after STARTTLS, or at connect in wrapper mode). Its
 * steps run in the pool: the server's key exchange and signature cost a
 * millisecond of CPU with an RSA key, which the loop's other clients must
 * not wait for. While a step is out, the loop watches nothing on the
 * socket and does not touch ssl; the result says which way to wait next.
 * smtpd_starttls_timeout limits the whole handshake (the idle timer).
 */
static void
smtpd_tls_work(void *arg)
{
    struct smtpd_tls_job *j = arg;

    j->res = tls_handshake(j->ssl, j->why, sizeof(j->why));
}

static void
smtpd_tls_done(void *arg)
{
    struct smtpd_tls_job *j = arg;
    struct smtpd_sess *s = j->s;
    struct ev_loop *loop = s->srv->loop;

    s->jobs--;
    s->tls_busy = 0;
    if (s->dead) { /* smtpd_close left the socket to us */
        close(s->fd);
        s->fd = -1;
        if (s->jobs == 0)
            ev_idle_start(loop, &s->srv->reap);
        return;
    }
    switch (j->res) {
    case SSL_ERROR_WANT_READ:
        ev_io_start(loop, &s->rio);
        return;
    case SSL_ERROR_WANT_WRITE:
        ev_io_start(loop, &s->wio);
        return;
    case SSL_ERROR_NONE:
        break;
    default:
        s->tc.failed = 1;
        log_info("SSL_accept error from %s: %s", s->ident, j->why);
        smtpd_lost(s);
        return;
    }
    s->tls_hs = 0;
    s->tc.on = 1;
    s->idle.repeat = s->conf->timeout;
    ev_timer_again(loop, &s->idle);
    tls_info_get(s->tc.ssl, &s->tls->ti);
    s->env.tls_version = s->tls->ti.version;
    s->env.tls_cipher = s->tls->ti.cipher;
    s->env.tls_bits = s->tls->ti.bits;
    if (s->conf->ask_ccert)
        tls_peer_get(s->tc.ssl, s->conf->fp_digest, &s->tls->peer);
    if (s->conf->tls_loglevel >= 2 && s->tls->peer.present)
        log_info("%s: subject_CN=%s, issuer=%s, cert fingerprint=%s, pkey "
                 "fingerprint=%s",
                 s->ident, s->tls->peer.cn, s->tls->peer.issuer,
                 s->tls->peer.fp, s->tls->peer.pkey_fp);
    if (s->conf->tls_loglevel >= 1)
        log_info("%s TLS connection established from %s: %s",
                 !s->tls->peer.present  ? "Anonymous"
                 : s->tls->peer.trusted ? "Trusted"
                                        : "Untrusted",
                 s->ident, s->tls->ti.line);
    if (!SSL_session_reused(s->tc.ssl) && smtpd_rate_over(s, RATE_NEWTLS)) {
        smtpd_reply(s, "421 4.7.0 %s Error: too many new TLS sessions from %s",
                    s->conf->myhostname, s->ident);
        smtpd_finish(s);
        smtpd_flush(s);
        return;
    }
    if (s->conf->req_ccert && !s->tls->peer.trusted) {
        s->tls_refuse = s->tls->peer.present ? "Client certificate not trusted"
                                             : "No client certificate "
                                               "presented";
        log_info("NOQUEUE: abort: TLS from %s: %s", s->ident, s->tls_refuse);
        if (s->tls->cont == smtpd_greet) { /* wrapper mode: no greeting */
            smtpd_reply(s, "421 4.7.1 %s Error: %s", s->conf->myhostname,
                        s->tls_refuse);
            smtpd_finish(s);
            smtpd_flush(s);
            return;
        }
    }
    s->tls->cont(s);
}

static void
smtpd_tls_step(struct smtpd_sess *s)
{
    ev_io_stop(s->srv->loop, &s->rio);
    ev_io_stop(s->srv->loop, &s->wio);
    if (s->tls_busy)
        return;
    s->tls_busy = 1;
    s->jobs++;
    s->tls->job.s = s;
    s->tls->job.ssl = s->tc.ssl;
    wpool_submit(s->srv->pool, smtpd_tls_work, smtpd_tls_done, &s->tls->job);
}

static void
smtpd_tls_begin(struct smtpd_sess *s, void (*cont)(struct smtpd_sess *s))
{
    struct ev_loop *loop = s->srv->loop;

    s->tls_start = 0;
    /* RFC 3207 5: nothing the client sent in clear before the handshake
     * is used after it (commands pipelined behind STARTTLS) */
    buf_reset(s->in);
    if ((s->tc.ssl = tls_srv_ssl(s->conf->tls, s->fd)) == NULL) {
        log_warning("%s: cannot start TLS: out of memory", s->ident);
        smtpd_close(s);
        return;
    }
    s->tls = xcalloc(1, sizeof(*s->tls));
    s->tls->cont = cont;
    s->tls_hs = 1;
    s->idle.repeat = s->conf->starttls_timeout;
    ev_timer_again(loop, &s->idle);
    ev_io_stop(loop, &s->wio);
    ev_io_start(loop, &s->rio); /* the ClientHello first */
}

/*
 * Transactions
 */

static void
smtpd_env_sync(struct smtpd_sess *s)
{
    s->env.helo = s->helo;
    s->env.proto = s->proto;
    s->env.queue_id = s->qid;
    s->env.sender = s->sender;
    s->env.rcpts = s->rcpts;
    s->env.nrcpt = s->nrcpt;
    s->env.auth_type = s->sasl ? s->sasl->method : NULL;
    s->env.auth_authen = s->sasl ? s->sasl->user : NULL;
    s->env.auth_author = s->sasl ? s->sasl->sender : NULL;
    /* the queue file is shown to filters from EOM on only */
    s->env.spool_fd = -1;
    s->env.spool_off = 0;
    s->env.spool_len = 0;
}

static void
smtpd_abort_work(void *arg)
{
    spool_abort(arg);
}

/* A queue file that will not be committed goes; a big one in the pool:
 * the last close of an unlinked file frees its pages and blocks, 0.4 ms
 * per MB, which the loop's other clients must not wait for (a client
 * could otherwise send one big message after another to be refused). */
static void
smtpd_drop_file(struct smtpd_srv *srv, struct spool_file *sf)
{
    if (sf != NULL && !srv->stopping && !spool_file_reusable(sf))
        wpool_submit(srv->pool, smtpd_abort_work, NULL, sf);
    else
        spool_abort(sf);
}

/* End the transaction; with_abort: offer ABORT to the filters. */
static void
smtpd_txn_end(struct smtpd_sess *s, int with_abort)
{
    size_t i;

    if (s->txn_filters && with_abort && s->fs)
        filter_stage(s->fs, FILTER_ABORT, NULL, NULL, NULL);
    s->txn_filters = 0;
    smtpd_drop_file(s->srv, s->sf);
    s->sf = NULL;
    s->qid[0] = '\0';
    smtpd_data_free(s->dec);
    s->dec = NULL;
    free(s->sender);
    s->sender = NULL;
    free(s->body_type);
    s->body_type = NULL;
    for (i = 0; i < s->nrcpt; i++)
        free(s->rcpts[i]);
    s->nrcpt = 0;
    if (s->rcpts)
        s->rcpts[0] = NULL;
    s->rcpt_tried = 0;
    s->txn_verdict = FILTER_CONTINUE;
    free(s->txn_text);
    s->txn_text = NULL;
    free(s->pend_addr);
    s->pend_addr = NULL;
    free(s->pend_check_text);
    s->pend_check_text = NULL;
    s->pend_check = SMTPD_CHECK_PASS;
    free(s->pend_prepend);
    s->pend_prepend = NULL;
    buf_free(s->prepend);
    s->prepend = NULL;
    free(s->pend_body);
    s->pend_body = NULL;
    s->write_err = 0;
    s->msgid_logged = 0;
    s->backlog_paused = 0;
    if (s->sasl) {
        free(s->sasl->sender);
        s->sasl->sender = NULL;
    }
    smtpd_env_sync(s);
}

/* Remember a HOLD or DISCARD given before end of data. */
static void
smtpd_txn_note(struct smtpd_sess *s, const struct filter_result *r)
{
    if ((r->verdict == FILTER_HOLD || r->verdict == FILTER_DISCARD)
        && r->verdict > s->txn_verdict) {
        s->txn_verdict = r->verdict;
        free(s->txn_text);
        s->txn_text = xstrdup(r->text ? r->text : "");
    }
}

static void
smtpd_rcpt_add(struct smtpd_sess *s, const char *addr)
{
    if (s->nrcpt + 2 > s->rcpt_alloc) {
        s->rcpt_alloc = s->rcpt_alloc ? s->rcpt_alloc * 2 : 8;
        s->rcpts = xrealloc(s->rcpts, s->rcpt_alloc * sizeof(char *));
    }
    s->rcpts[s->nrcpt++] = xstrdup(addr);
    s->rcpts[s->nrcpt] = NULL;
    smtpd_env_sync(s);
}

/*
 * Filters: a command that waits for a verdict
 */

static void
smtpd_filter_done(void *arg, const struct filter_result *res)
{
    struct smtpd_sess *s = arg;
    smtpd_cont k = s->cont;

    if (s->dead || k == NULL)
        return;
    s->cont = NULL;
    s->waiting = 0;
    k(s, res);
    if (!s->dead)
        smtpd_process(s);
}

static void
smtpd_filter(struct smtpd_sess *s, enum filter_stage st,
             const struct filter_args *a, smtpd_cont k)
{
    s->cont = k;
    s->waiting = 1;
    smtpd_update_io(s);
    filter_stage(s->fs, st, a, smtpd_filter_done, s);
}

static void
smtpd_drain_cb(void *arg)
{
    struct smtpd_sess *s = arg;

    if (s->dead || !s->backlog_paused)
        return;
    log_debug("%s: filter backlog drained: reading", s->ident);
    s->backlog_paused = 0;
    smtpd_update_io(s);
}

/*
 * Commands
 */

static void
smtpd_sasl_free(struct smtpd_sess *s)
{
    struct smtpd_sasl *a = s->sasl;

    if (a == NULL)
        return;
    if (s->conf->sasl)
        sasl_wait_cancel(s->conf->sasl, &a->wait);
    sasl_cancel(a->req);
    free(a->mech);
    free(a->method);
    free(a->user);
    free(a->sender);
    free(a);
    s->sasl = NULL;
    s->sasl_line = 0;
    s->env.auth_type = s->env.auth_authen = s->env.auth_author = NULL;
}

static struct smtpd_sasl *
smtpd_sasl_get(struct smtpd_sess *s)
{
    if (s->sasl == NULL)
        s->sasl = xcalloc(1, sizeof(*s->sasl));
    return s->sasl;
}

/* May this session use AUTH (smtpd_sasl_auth_enable, and TLS first with
 * smtpd_tls_auth_only)? */
static int
smtpd_sasl_usable(const struct smtpd_sess *s)
{
    return s->conf->sasl != NULL && (!s->conf->tls_auth_only || s->tc.on);
}

static const struct sasl_policy *
smtpd_sasl_pol(const struct smtpd_sess *s)
{
    return s->tc.on ? &s->conf->sasl_tls_pol : &s->conf->sasl_pol;
}

/* What EHLO does not offer this client (Postfix decides it at connect:
 * smtpd_discard_ehlo_keyword_address_maps by address, else
 * smtpd_discard_ehlo_keywords); asked once. */
static unsigned
smtpd_ehlo_discards(struct smtpd_sess *s)
{
    if (!s->ehlo_known) {
        s->ehlo_mask = smtpd_check_ehlo_mask(s->conf->check, s->addr);
        s->ehlo_known = 1;
    }
    return s->ehlo_mask;
}

static void
smtpd_ehlo_reply(struct smtpd_sess *s)
{
    const struct smtpd_conf *c = s->conf;
    unsigned m = smtpd_ehlo_discards(s);
    size_t at;

    if ((m & ~(SMTPD_EHLO_SILENT | SMTPD_EHLO_OTHER))
        && !(m & SMTPD_EHLO_SILENT)) {
        char names[256];

        log_info("discarding EHLO keywords: %s",
                 smtpd_ehlo_mask_str(m, names, sizeof(names)));
    }

    buf_printf(s->out, "250-%s\r\n", c->myhostname);
    if (!(m & SMTPD_EHLO_PIPELINING))
        buf_puts(s->out, "250-PIPELINING\r\n");
    if (m & SMTPD_EHLO_SIZE)
        ;
    else if (c->size_limit > 0)
        buf_printf(s->out, "250-SIZE %lld\r\n", c->size_limit);
    else
        buf_puts(s->out, "250-SIZE\r\n");
    if (!c->disable_vrfy && !(m & SMTPD_EHLO_VRFY))
        buf_puts(s->out, "250-VRFY\r\n");
    if (c->tls != NULL && !s->tc.on && !(m & SMTPD_EHLO_STARTTLS))
        buf_puts(s->out, "250-STARTTLS\r\n");
    if (smtpd_sasl_usable(s) && !(m & SMTPD_EHLO_AUTH)
        && !lookup_net_match(c->sasl_exc, (const struct sockaddr *) &s->sa)) {
        size_t start = buf_len(s->out);

        buf_puts(s->out, "250-AUTH ");
        at = buf_len(s->out);
        if (sasl_mechs(c->sasl, smtpd_sasl_pol(s), s->out) < 0
            || buf_len(s->out) == at) { /* none known, or none allowed */
            buf_truncate(s->out, start);
        } else {
            buf_puts(s->out, "\r\n");
            if (c->sasl_broken) {
                char *mech =
                    xmemdup(buf_data(s->out) + at, buf_len(s->out) - at);

                buf_printf(s->out, "250-AUTH=%s", mech);
                free(mech);
            }
        }
    }
    if (!(m & SMTPD_EHLO_ENHANCED))
        buf_puts(s->out, "250-ENHANCEDSTATUSCODES\r\n");
    if (!(m & SMTPD_EHLO_8BITMIME)) {
        smtpd_reply(s, "250 8BITMIME");
        return;
    }
    /* the last line offered ends the reply: "250-X" becomes "250 X" */
    {
        size_t end = buf_len(s->out) - 2, start = end;
        char *last;

        while (start > 0 && buf_data(s->out)[start - 1] != '\n')
            start--;
        last = xmemdup(buf_data(s->out) + start + 4, end - start - 4);
        buf_truncate(s->out, start);
        smtpd_reply(s, "250 %s", last);
        free(last);
    }
}

/* The mechanism list is known now, or cannot be learned: EHLO goes on. */
static void
smtpd_ehlo_ready(void *arg)
{
    struct smtpd_sess *s = arg;

    if (s->dead)
        return;
    s->waiting = 0;
    smtpd_ehlo_reply(s);
    smtpd_process(s);
}

static void
smtpd_helo_done(struct smtpd_sess *s, const struct filter_result *r)
{
    const struct smtpd_conf *c = s->conf;

    if (r->verdict == FILTER_REJECT || r->verdict == FILTER_TEMPFAIL) {
        free(s->pend_addr);
        s->pend_addr = NULL;
        smtpd_reject(s, r, s->esmtp ? "EHLO" : "HELO", NULL);
        return;
    }
    free(s->helo);
    s->helo = s->pend_addr;
    s->pend_addr = NULL;
    s->proto = s->esmtp ? "ESMTP" : "SMTP";
    smtpd_env_sync(s);
    smtpd_enter(s, SMTPD_S_MAIL);
    if (!s->esmtp) {
        smtpd_reply(s, "250 %s", c->myhostname);
        return;
    }
    /* the AUTH line needs the back end's mechanisms: the first EHLOs
     * after start wait for its handshake (SASL_CONNECT_TIMEOUT at most) */
    if (smtpd_sasl_usable(s)
        && sasl_wait(c->sasl, &smtpd_sasl_get(s)->wait, smtpd_ehlo_ready, s)) {
        s->waiting = 1;
        smtpd_update_io(s);
        return;
    }
    smtpd_ehlo_reply(s);
}

static void
smtpd_cmd_helo(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    struct filter_args a = {0};
    int ehlo = cmd->verb == SMTPD_V_EHLO;

    if (*cmd->arg == '\0') {
        smtpd_reply(s, "501 5.5.4 Syntax: %s hostname", ehlo ? "EHLO" : "HELO");
        return;
    }
    smtpd_txn_end(s, 1);
    smtpd_enter(s, smtpd_idle_state(s));
    s->esmtp = ehlo;
    s->pend_addr = xstrdup(cmd->arg);
    a.str = s->pend_addr;
    smtpd_filter(s, FILTER_HELO, &a, smtpd_helo_done);
}

static void
smtpd_mail_done(struct smtpd_sess *s, const struct filter_result *r)
{
    if (r->verdict == FILTER_REJECT || r->verdict == FILTER_TEMPFAIL) {
        smtpd_reject(s, r, "MAIL", NULL);
        smtpd_txn_end(s, 1);
        return;
    }
    smtpd_txn_note(s, r);
    s->sender = s->pend_addr;
    s->pend_addr = NULL;
    s->body_type = s->pend_body;
    s->pend_body = NULL;
    smtpd_env_sync(s);
    smtpd_enter(s, SMTPD_S_RCPT);
    smtpd_reply(s, "250 2.1.0 Ok");
}

/* Postfix's check of the queue file system at MAIL FROM: less than
 * queue_minfree bytes free, or less than 1.5 times message_size_limit,
 * and the client gets 452 4.3.1 (try later) before it sends anything.
 * The free space comes from counters the kernel keeps in memory
 * (fstatvfs: no I/O on a local file system), on the loop, like the
 * queue's other metadata calls. 1 = go on. */
static int
smtpd_space_ok(struct smtpd_sess *s)
{
    const struct smtpd_conf *c = s->conf;
    const char *reply = "452 4.3.1 Insufficient system storage";
    unsigned long long avail, blocks;
    unsigned long bsize;

    if (spool_space(c->qdir, &avail, &bsize) < 0)
        return 1; /* unknown: a write that fails still gets its 451 */
    blocks = avail / bsize;
    if ((unsigned long long) c->queue_minfree / bsize < blocks
        && (double) ((unsigned long long) c->size_limit / bsize)
               < (double) blocks / 1.5)
        return 1;
    smtpd_reply(s, "%s", reply);
    smtpd_log_event(s, "reject", "MAIL", reply, NULL);
    log_warning("not enough free space in mail queue: %llu bytes < "
                "1.5*message size limit",
                avail);
    return 0;
}

static void
smtpd_cmd_mail(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    const struct smtpd_conf *c = s->conf;
    struct smtpd_path p;
    struct filter_args a = {0};
    const char *why, *val;
    char *end;
    size_t i;

    if (c->helo_required && s->helo == NULL) {
        smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (c->tls_required && !s->tc.on) {
        smtpd_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    if (smtpd_rate_over(s, RATE_MAIL)) {
        smtpd_reply(s, "450 4.7.1 Error: too much mail from %s", s->addr);
        return;
    }
    if (smtpd_parse_path(cmd->arg, "FROM:", 0, &p, &why) < 0) {
        smtpd_reply(s, "501 %s", why);
        return;
    }
    free(s->pend_body);
    s->pend_body = NULL;
    free(s->pend_addr); /* a reject below logs no sender, as Postfix */
    s->pend_addr = NULL;
    s->instance = ++s->srv->instances;
    s->size_decl = 0;
    if (s->sasl) {
        free(s->sasl->sender);
        s->sasl->sender = NULL;
        smtpd_env_sync(s);
    }
    for (i = 0; i < p.nparams; i++) {
        if (s->esmtp && smtpd_param_is(p.params[i], "SIZE", &val)) {
            unsigned long long sz;

            if (val == NULL || *val < '0' || *val > '9') {
                smtpd_reply(s, "501 5.5.4 Bad message size syntax");
                return;
            }
            errno = 0;
            sz = strtoull(val, &end, 10);
            if (*end != '\0' || errno == ERANGE) {
                smtpd_reply(s, "501 5.5.4 Bad message size syntax");
                return;
            }
            s->size_decl = sz;
            if (c->size_limit > 0 && sz > (unsigned long long) c->size_limit) {
                /* Postfix's smtpd_check_size: a reject line for log
                 * readers (pflogsumm counts "Message size exceeds...") */
                smtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
                smtpd_log_event(s, "reject", "MAIL",
                                "552 5.3.4 Message size exceeds fixed limit",
                                NULL);
                return;
            }
        } else if (s->esmtp && smtpd_param_is(p.params[i], "BODY", &val) && val
                   && (strcasecmp(val, "7BIT") == 0
                       || strcasecmp(val, "8BITMIME") == 0)) {
            free(s->pend_body);
            s->pend_body = xstrdup(val);
            for (end = s->pend_body; *end; end++)
                if (*end >= 'a' && *end <= 'z')
                    *end = (char) (*end - 'a' + 'A');
        } else if (s->esmtp && smtpd_param_is(p.params[i], "AUTH", &val)) {
            /* RFC 4954 section 5: kept for the log and {auth_author} */
            if (!smtpd_sasl_usable(s)) {
                smtpd_reply(s, "503 5.5.4 Error: authentication disabled");
                return;
            }
            if (s->sasl && s->sasl->sender) {
                smtpd_reply(s, "503 5.5.4 Error: multiple AUTH= options");
                return;
            }
            if (val == NULL || *val == '\0') {
                smtpd_reply(s, "501 5.5.4 Bad AUTH parameter value");
                return;
            }
            if (strcmp(val, "<>") != 0) {
                smtpd_sasl_get(s)->sender = xstrdup(val);
                smtpd_env_sync(s);
            }
        } else {
            smtpd_reply(s, "555 5.5.4 Unsupported option: %s", p.params[i]);
            return;
        }
    }
    s->pend_addr = xstrdup(p.addr);
    if (!smtpd_space_ok(s)) {
        free(s->pend_addr);
        s->pend_addr = NULL;
        return;
    }
    s->txn_filters = 1;
    a.str = s->pend_addr;
    a.argv = p.params;
    smtpd_filter(s, FILTER_MAIL, &a, smtpd_mail_done);
}

/* Is addr a destination of ours (mydestination, virtual_alias_domains,
 * relay_domains, a bare postmaster; *cls caches the domain's class, as
 * smtpd_check_log.cls), i.e. what permit_auth_destination permits
 * and reject_unauth_destination does not reject? Invariant 8: the rest is
 * relaying, which the restrictions allow only to mynetworks and
 * authenticated clients. */
static int
smtpd_rcpt_auth_dest(const struct smtpd_sess *s, const char *addr, int *cls)
{
    const struct smtpd_conf *c = s->conf;
    char *local = NULL, *domain = NULL;
    int ok = 0;

    if (smtpd_addr_split(addr, &local, &domain) < 0)
        return 0;
    if (smtpd_local_has_routing(local))
        ok = 0;
    else if (*domain == '\0')
        ok = strcasecmp(local, "postmaster") == 0;
    else if (domain[0] == '[') /* address literals are never ours */
        ok = 0;
    else {
        if (*cls == 0)
            *cls = (int) smtpd_check_dclass(c->check, domain) + 1;
        ok = *cls - 1 != (int) SMTPD_CHECK_D_OTHER;
    }
    free(local);
    free(domain);
    return ok;
}

/* warn_if_reject and WARN actions: "NOQUEUE: reject_warning: RCPT from
 * ...: 554 5.7.1 ...; from=<> to=<> ..." as Postfix logs them; held
 * until the evaluation is over (one that waits for an answer runs again
 * and says them again). */
struct smtpd_check_log {
    struct smtpd_sess *s;
    const char *stage;
    const char *rcpt;
    char **held; /* what, text, what, text, ... */
    size_t nheld;
    int cls[2]; /* the sender's and the recipient's domain class, once
                   known (smtpd_check_dclass + 1), else 0 */
};

static void
smtpd_check_log(void *arg, const char *what, const char *text)
{
    struct smtpd_check_log *l = arg;

    l->held = xrealloc(l->held, (l->nheld + 2) * sizeof(*l->held));
    l->held[l->nheld++] = xstrdup(what);
    l->held[l->nheld++] = xstrdup(text);
}

/* The end of an evaluation: its lines logged (unless it waits), freed. */
static void
smtpd_check_log_end(struct smtpd_check_log *l, int say)
{
    for (size_t i = 0; i + 1 < l->nheld; i += 2) {
        if (say && strcmp(l->held[i], "warning") == 0)
            log_warning("%s", l->held[i + 1]); /* Postfix's own words */
        else if (say)
            smtpd_log_event(l->s, l->held[i], l->stage, l->held[i + 1],
                            l->rcpt);
        free(l->held[i]);
        free(l->held[i + 1]);
    }
    free(l->held);
}

/* ---- the restrictions' answers from the network ---- */

/* The TXT record of a listing: its strings, printable, joined. */
static void
smtpd_rbl_txt(const struct dns_answer *a, char *out, size_t outsz)
{
    size_t o = 0;

    out[0] = '\0';
    if (a->n == 0)
        return;
    for (int i = 0; i < a->len[0];) {
        int n = a->rdata[0][i++];

        for (int k = 0; k < n && i < a->len[0]; k++, i++) {
            unsigned char c = a->rdata[0][i];

            if (o + 1 < outsz)
                out[o++] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
    }
    out[o] = '\0';
}

/* A DNS list's A answer for name into r: listed (its 127.x addresses),
 * not listed, or failed (as Postfix: it lists nothing, with a warning). */
static void
smtpd_dnsxl_a(struct smtpd_check_rbl *r, const struct dns_answer *a,
              const char *ident, const char *name)
{
    switch (a->status) {
    case DNS_OK:
        for (size_t i = 0; i < a->n && r->naddr < SMTPD_CHECK_RBL_ADDRS; i++)
            if (a->len[i] == 4)
                memcpy(r->addrs[r->naddr++], a->rdata[i], 4);
        r->listed = r->naddr > 0;
        break;
    case DNS_NOTFOUND:
    case DNS_NODATA:
        r->listed = 0;
        break;
    default:
        r->listed = -1;
        log_warning("%s: RBL lookup error: Host or domain name not found. "
                    "Name service error for name=%s type=A: %s",
                    ident, name, a->why);
        break;
    }
}

static void
smtpd_q_free(struct smtpd_q *q)
{
    for (int i = 0; i < 3; i++)
        if (q->dq[i].h)
            dns_cancel(q->dq[i].h);
    if (q->pr)
        policy_cancel(q->pr);
    ev_timer_stop(q->s->srv->loop, &q->poll);
    dnshosts_free(q->hosts);
    free(q->sv);
    free(q->action);
    free(q);
}

/* A new command: the last one's answers go (and any still out). */
static void
smtpd_q_clear(struct smtpd_sess *s)
{
    for (size_t i = 0; i < s->nq; i++)
        smtpd_q_free(s->qv[i]);
    s->nq = 0;
}

static int
smtpd_check_query(void *arg, enum smtpd_check_q q, const char *key,
                  const struct smtpd_check_ans **ans)
{
    struct smtpd_check_log *l = arg;
    const struct smtpd_sess *s = l->s;

    for (size_t i = 0; i < s->nq; i++)
        if (s->qv[i]->done && s->qv[i]->q == q
            && strcmp(s->qv[i]->key, key) == 0) {
            *ans = &s->qv[i]->ans;
            return 1;
        }
    return 0;
}

/* An answer is in: the command's evaluation runs again. */
static void
smtpd_q_done(struct smtpd_q *q)
{
    struct smtpd_sess *s = q->s;
    void (*again)(struct smtpd_sess *) = s->check_again;

    q->done = 1;
    if (s->dead || again == NULL)
        return;
    s->check_again = NULL;
    s->waiting = 0;
    again(s);
    if (!s->dead)
        smtpd_process(s);
}

/* Q_NAME: MX, A and AAAA, all three asked at once. */
static void
smtpd_q_name_cb(void *arg, const struct dns_answer *a)
{
    struct smtpd_qdns *d = arg;
    struct smtpd_q *q = d->q;

    d->h = NULL;
    switch (a->status) {
    case DNS_OK:
        if (d->type != DNS_T_MX) {
            q->ans.name |= SMTPD_CHECK_NAME_ADDR;
            break;
        }
        for (size_t i = 0; i < a->n; i++) {
            char host[DNS_NAME_MAX];
            unsigned pref;

            if (dns_mx_parse(a->rdata[i], (size_t) a->len[i], &pref, host) < 0)
                q->ans.name |= SMTPD_CHECK_NAME_INVAL;
            else if (host[0] == '\0' && a->n == 1) /* RFC 7505 */
                q->ans.name |= SMTPD_CHECK_NAME_NULLMX;
            else if (host[0] != '\0')
                q->ans.name |= SMTPD_CHECK_NAME_MX;
        }
        break;
    case DNS_NOTFOUND:
    case DNS_NODATA:
        break;
    case DNS_TEMP:
        q->ans.name |= SMTPD_CHECK_NAME_TEMP;
        break;
    case DNS_INVAL:
        q->ans.name |= SMTPD_CHECK_NAME_INVAL;
        break;
    }
    if (--q->open == 0)
        smtpd_q_done(q);
}

/* Q_DNSXL: A, then TXT when listed. */
static void
smtpd_q_dnsxl_cb(void *arg, const struct dns_answer *a)
{
    struct smtpd_qdns *d = arg;
    struct smtpd_q *q = d->q;
    struct smtpd_check_rbl *r = &q->ans.dnsxl;

    d->h = NULL;
    if (d->type == DNS_T_TXT) {
        if (a->status == DNS_OK)
            smtpd_rbl_txt(a, r->txt, sizeof(r->txt));
        smtpd_q_done(q);
        return;
    }
    smtpd_dnsxl_a(r, a, q->s->ident, q->key);
    if (r->listed == 1) {
        d->type = DNS_T_TXT;
        d->h =
            dns_lookup(q->s->srv->dns, q->key, DNS_T_TXT, smtpd_q_dnsxl_cb, d);
        return;
    }
    smtpd_q_done(q);
}

/* Q_MX, Q_NS, Q_A: the servers and their addresses. */
static void
smtpd_q_hosts_cb(void *arg, const struct dnshosts_answer *a)
{
    struct smtpd_q *q = arg;
    static const int st[] = {
        [DNSHOSTS_OK] = SMTPD_CHECK_SRV_OK,
        [DNSHOSTS_NOTFOUND] = SMTPD_CHECK_SRV_NOTFOUND,
        [DNSHOSTS_NULLMX] = SMTPD_CHECK_SRV_NULLMX,
        [DNSHOSTS_FAILED] = SMTPD_CHECK_SRV_FAILED,
    };

    q->ans.srv.status = st[a->status];
    q->ans.srv.why = a->why;
    q->sv = xcalloc(a->n + 1, sizeof(*q->sv));
    for (size_t i = 0; i < a->n; i++) {
        q->sv[i].name = a->v[i].name;
        q->sv[i].why = a->v[i].why;
        q->sv[i].addr = (const char *const *) a->v[i].addr;
        q->sv[i].naddr = a->v[i].naddr;
    }
    q->ans.srv.v = q->sv;
    q->ans.srv.n = a->n;
    smtpd_q_done(q);
}

static void
smtpd_q_policy_cb(void *arg, const char *action)
{
    struct smtpd_q *q = arg;

    q->pr = NULL;
    q->action = action ? xstrdup(action) : NULL;
    q->ans.action = q->action;
    if (action == NULL)
        log_warning("%s: policy server %s failed: using "
                    "smtpd_policy_service_default_action",
                    q->s->ident, q->key);
    smtpd_q_done(q);
}

static void smtpd_q_verify_ask(struct smtpd_q *q);

/* The verify service's answer "STATUS TEXT" (NULL: it failed). While it
 * says todo, it is asked again after address_verify_poll_delay, up to
 * address_verify_poll_count questions in all, as Postfix's smtpd does. */
static void
smtpd_q_verify_cb(void *arg, const char *action)
{
    struct smtpd_q *q = arg;
    const struct cf *cf = q->s->conf->cf;
    int st = action ? verify_status_parse(action) : -1;

    q->pr = NULL;
    if (action && st < 0)
        log_warning("%s: verify service: malformed answer", q->s->ident);
    if (st == VERIFY_TODO
        && ++q->polls < cf_int(cf, "address_verify_poll_count")) {
        ev_timer_set(&q->poll,
                     (double) cf_time(cf, "address_verify_poll_delay"), 0.);
        ev_timer_start(q->s->srv->loop, &q->poll);
        return;
    }
    q->ans.verify.status = st < 0 ? SMTPD_CHECK_VRFY_FAILED : st;
    if (st >= 0) {
        const char *sp = strchr(action, ' ');

        q->action = xstrdup(sp ? sp + 1 : "");
        q->ans.verify.why = q->action;
    }
    smtpd_q_done(q);
}

static void
smtpd_q_poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    smtpd_q_verify_ask(w->data);
}

static void
smtpd_q_verify_ask(struct smtpd_q *q)
{
    struct buf *b = buf_new(1100, BUF_NOCAP);

    buf_printf(b, "request=verify\naddress=%s\n", q->key);
    q->pr = policy_ask(q->s->srv->verify, buf_data(b), buf_len(b),
                       smtpd_q_verify_cb, q);
    buf_free(b);
}

/* One "name=value" line of a policy request; a value keeps no line end. */
static void
smtpd_policy_attr(struct buf *b, const char *name, const char *v)
{
    size_t o = buf_len(b);

    buf_printf(b, "%s=%s\n", name, v ? v : "");
    for (char *p = buf_data(b) + o; *p; p++)
        if ((*p == '\n' || *p == '\r') && p[1] != '\0')
            *p = ' ';
}

/* Postfix's policy request for the command being checked (stage "RCPT",
 * "DATA" or "END-OF-MESSAGE", where size is the message's own). */
static void
smtpd_policy_request(struct smtpd_sess *s, const char *stage,
                     const char *context, struct buf *b)
{
    const struct filter_env *e = &s->env;
    const char *rcpt = strcmp(stage, "RCPT") == 0 ? s->pend_addr
                       : s->nrcpt == 1            ? s->rcpts[0]
                                                  : "";
    char num[32];

    smtpd_env_sync(s);
    smtpd_policy_attr(b, "request", "smtpd_access_policy");
    smtpd_policy_attr(b, "protocol_state", stage);
    smtpd_policy_attr(b, "protocol_name", s->proto ? s->proto : "SMTP");
    smtpd_policy_attr(b, "client_address", s->addr);
    smtpd_policy_attr(b, "client_name", s->name[0] ? s->name : "unknown");
    snprintf(num, sizeof(num), "%d", s->port);
    smtpd_policy_attr(b, "client_port", num);
    smtpd_policy_attr(b, "reverse_client_name",
                      s->rev_name  ? s->rev_name
                      : s->name[0] ? s->name
                                   : "unknown");
    smtpd_policy_attr(b, "server_address", s->laddr);
    snprintf(num, sizeof(num), "%d", s->lport);
    smtpd_policy_attr(b, "server_port", num);
    smtpd_policy_attr(b, "helo_name", s->helo);
    smtpd_policy_attr(b, "sender", s->sender);
    smtpd_policy_attr(b, "recipient", rcpt);
    snprintf(num, sizeof(num), "%zu",
             strcmp(stage, "RCPT") != 0 ? s->nrcpt : (size_t) 0);
    smtpd_policy_attr(b, "recipient_count", num);
    smtpd_policy_attr(b, "queue_id", s->qid);
    snprintf(num, sizeof(num), "%lx.%lx", (unsigned long) getpid(),
             (unsigned long) s->instance);
    smtpd_policy_attr(b, "instance", num);
    snprintf(num, sizeof(num), "%llu",
             strcmp(stage, "END-OF-MESSAGE") == 0 && s->sf
                 ? (unsigned long long) spool_content_size(s->sf)
                 : s->size_decl);
    smtpd_policy_attr(b, "size", num);
    smtpd_policy_attr(b, "etrn_domain", "");
    smtpd_policy_attr(b, "stress", "");
    smtpd_policy_attr(b, "sasl_method", e->auth_type);
    smtpd_policy_attr(b, "sasl_username", e->auth_authen);
    smtpd_policy_attr(b, "sasl_sender", e->auth_author);
    {
        const struct tls_peer *p = s->tc.on ? &s->tls->peer : NULL;

        smtpd_policy_attr(b, "ccert_subject", p ? p->cn : "");
        smtpd_policy_attr(b, "ccert_issuer", p ? p->issuer : "");
        smtpd_policy_attr(b, "ccert_fingerprint", p ? p->fp : "");
        smtpd_policy_attr(b, "ccert_pubkey_fingerprint", p ? p->pkey_fp : "");
    }
    smtpd_policy_attr(b, "encryption_protocol", e->tls_version);
    smtpd_policy_attr(b, "encryption_cipher", e->tls_cipher);
    snprintf(num, sizeof(num), "%d", e->tls_version ? e->tls_bits : 0);
    smtpd_policy_attr(b, "encryption_keysize", num);
    smtpd_policy_attr(
        b, "policy_context",
        context ? context
                : cf_str(s->conf->cf, "smtpd_policy_service_policy_context"));
    smtpd_policy_attr(b, "compatibility_level", "3.6");
    smtpd_policy_attr(b, "mail_version", "sluice-" PACKAGE_VERSION);
}

/* The evaluation needs res->need about res->key: start it; again runs
 * once it is in. 0 waiting, or 1 when the answer is already there (no
 * resolver, no such server: a failure), so run again now. */
static int
smtpd_q_start(struct smtpd_sess *s, const struct smtpd_check_res *res,
              const char *stage, void (*again)(struct smtpd_sess *s))
{
    struct smtpd_q *q = xcalloc(1, sizeof(*q));
    struct smtpd_srv *srv = s->srv;

    q->s = s;
    ev_timer_init(&q->poll, smtpd_q_poll_cb, 0., 0.);
    q->poll.data = q;
    q->q = res->need;
    snprintf(q->key, sizeof(q->key), "%s", res->key);
    s->qv = xrealloc(s->qv, (s->nq + 1) * sizeof(*s->qv));
    s->qv[s->nq++] = q;
    s->check_again = again;
    s->waiting = 1;
    switch (q->q) {
    case SMTPD_CHECK_Q_NAME: {
        static const int types[3] = {DNS_T_MX, DNS_T_A, DNS_T_AAAA};

        if (srv->dns == NULL)
            break;
        for (int i = 0; i < 3; i++) {
            q->dq[i].q = q;
            q->dq[i].type = types[i];
            q->open++;
            q->dq[i].h = dns_lookup(srv->dns, q->key, types[i], smtpd_q_name_cb,
                                    &q->dq[i]);
        }
        smtpd_update_io(s);
        return 0;
    }
    case SMTPD_CHECK_Q_DNSXL:
        q->ans.dnsxl.listed = -1;
        if (srv->dns == NULL)
            break;
        q->dq[0].q = q;
        q->dq[0].type = DNS_T_A;
        q->dq[0].h =
            dns_lookup(srv->dns, q->key, DNS_T_A, smtpd_q_dnsxl_cb, &q->dq[0]);
        smtpd_update_io(s);
        return 0;
    case SMTPD_CHECK_Q_MX:
    case SMTPD_CHECK_Q_NS:
    case SMTPD_CHECK_Q_A:
        if (srv->dns == NULL)
            break;
        q->hosts = dnshosts_lookup(srv->dns, q->key,
                                   q->q == SMTPD_CHECK_Q_MX   ? DNS_T_MX
                                   : q->q == SMTPD_CHECK_Q_NS ? DNS_T_NS
                                                              : DNS_T_A,
                                   smtpd_q_hosts_cb, q);
        smtpd_update_io(s);
        return 0;
    case SMTPD_CHECK_Q_POLICY:
        for (size_t i = 0; i < srv->npolicy; i++)
            if (srv->policy[i].p && strcmp(srv->policy[i].spec, q->key) == 0) {
                struct buf *b = buf_new(1024, BUF_NOCAP);

                smtpd_policy_request(s, stage, srv->policy[i].context, b);
                q->pr = policy_ask(srv->policy[i].p, buf_data(b), buf_len(b),
                                   smtpd_q_policy_cb, q);
                buf_free(b);
                smtpd_update_io(s);
                return 0;
            }
        break;
    case SMTPD_CHECK_Q_VERIFY:
        /* a key with a line end would be a second attribute */
        if (srv->verify == NULL || strpbrk(q->key, "\r\n"))
            break;
        smtpd_q_verify_ask(q);
        smtpd_update_io(s);
        return 0;
    }
    /* nothing to ask with: a temporary failure (the server's, for a
     * policy: smtpd_policy_service_default_action) */
    q->ans.verify.status = SMTPD_CHECK_VRFY_FAILED;
    q->ans.name = SMTPD_CHECK_NAME_TEMP;
    q->ans.srv.status = SMTPD_CHECK_SRV_FAILED;
    q->ans.srv.why = "Host not found, try again";
    q->done = 1;
    s->check_again = NULL;
    s->waiting = 0;
    return 1;
}

static int
smtpd_check_ask(void *arg, enum smtpd_check_fact f)
{
    struct smtpd_check_log *l = arg;
    const struct smtpd_sess *s = l->s;

    if (f == SMTPD_CHECK_MYNETWORKS)
        return lookup_net_match(s->conf->mynetworks,
                                (const struct sockaddr *) &s->sa);
    if (f == SMTPD_CHECK_PIPELINED) {
        int pending = 0;

        /* more than this command read, or waiting in the socket */
        if (buf_len(s->in) == 0 && s->fd >= 0
            && ioctl(s->fd, FIONREAD, &pending) < 0)
            pending = 0;
        if (buf_len(s->in) == 0 && pending <= 0)
            return 0;
        return strcmp(l->stage, "DATA") == 0 || s->proto == NULL
               || strcmp(s->proto, "ESMTP") != 0;
    }
    if (f == SMTPD_CHECK_SENDER_FINAL || f == SMTPD_CHECK_RCPT_FINAL
        || f == SMTPD_CHECK_SENDER_RELAY || f == SMTPD_CHECK_RCPT_RELAY
        || f == SMTPD_CHECK_SENDER_VALIAS || f == SMTPD_CHECK_RCPT_VALIAS) {
        int snd = f == SMTPD_CHECK_SENDER_FINAL || f == SMTPD_CHECK_SENDER_RELAY
                  || f == SMTPD_CHECK_SENDER_VALIAS;
        enum smtpd_check_dclass want =
            f == SMTPD_CHECK_SENDER_FINAL || f == SMTPD_CHECK_RCPT_FINAL
                ? SMTPD_CHECK_D_LOCAL
            : f == SMTPD_CHECK_SENDER_VALIAS || f == SMTPD_CHECK_RCPT_VALIAS
                ? SMTPD_CHECK_D_VALIAS
                : SMTPD_CHECK_D_RELAY;
        const char *a = snd ? s->sender : l->rcpt;
        const char *at = a ? strrchr(a, '@') : NULL;

        if (at == NULL)
            return 0;
        if (l->cls[!snd] == 0) /* each domain's class once */
            l->cls[!snd] = (int) smtpd_check_dclass(s->conf->check, at + 1) + 1;
        return l->cls[!snd] - 1 == (int) want;
    }
    return l->rcpt && smtpd_rcpt_auth_dest(s, l->rcpt, &l->cls[1]);
}

/* The restrictions of the session's service, at RCPT (rcpt) or at DATA
 * (rcpt NULL) or after the final dot (eod), into res. */
static void
smtpd_check_run(struct smtpd_sess *s, const char *rcpt, int eod,
                struct smtpd_check_res *res)
{
    const struct smtpd_conf *c = s->conf;
    /* at DATA, a single recipient is known, as in Postfix */
    const char *one = rcpt ? rcpt : s->nrcpt == 1 ? s->rcpts[0] : NULL;
    struct smtpd_check_log lg = {
        s,     rcpt ? "RCPT" : eod ? "END-OF-MESSAGE" : "DATA", one, NULL, 0,
        {0, 0}};
    struct smtpd_check_in in;

    memset(&in, 0, sizeof(in));
    in.sa = (const struct sockaddr *) &s->sa;
    in.addr = s->addr;
    in.name = s->name[0] ? s->name : "unknown";
    in.rev_name = s->rev_name ? s->rev_name : in.name;
    in.name_status = s->name_code;
    in.rev_status = s->rev_code;
    in.helo = s->helo;
    in.sender = s->sender;
    in.rcpt = one;
    in.mynetworks = -1; /* smtpd_check_ask, if a restriction wants them */
    /* permit_sasl_authenticated, as Postfix: not with ANONYMOUS */
    in.authenticated =
        s->sasl && s->sasl->user && strcmp(s->sasl->method, "ANONYMOUS") != 0;
    in.sasl_user = in.authenticated ? s->sasl->user : NULL;
    in.encrypted = s->tc.on;
    if (s->tc.on && s->tls->peer.present) {
        in.ccert = s->tls->peer.trusted ? 2 : 1;
        in.ccert_cn = s->tls->peer.cn;
        in.ccert_fp = s->tls->peer.fp;
        in.ccert_pkey_fp = s->tls->peer.pkey_fp;
    }
    in.nrcpt = s->nrcpt;
    in.auth_dest = one ? -1 : 0;
    in.rbl = s->rbl;
    in.ask = smtpd_check_ask;
    in.query = smtpd_check_query;
    in.log = smtpd_check_log;
    in.arg = &lg;
    if (rcpt)
        smtpd_check_rcpt(c->check, &in, res);
    else if (eod)
        smtpd_check_eod(c->check, &in, res);
    else
        smtpd_check_data(c->check, &in, res);
    smtpd_check_log_end(&lg, res->verdict != SMTPD_CHECK_NEED);
}

/* PREPEND headers of an accepted RCPT or DATA, for the message. */
static void
smtpd_prepend_add(struct smtpd_sess *s, const char *lines)
{
    if (*lines == '\0')
        return;
    if (s->prepend == NULL)
        s->prepend = buf_new(256, BUF_NOCAP);
    buf_puts(s->prepend, lines);
}

static void
smtpd_rcpt_done(struct smtpd_sess *s, const struct filter_result *r)
{
    struct buf *err;

    if (r->verdict == FILTER_REJECT || r->verdict == FILTER_TEMPFAIL) {
        smtpd_reject(s, r, "RCPT", s->pend_addr);
        goto out;
    }
    if (s->sf == NULL) {
        err = buf_new(128, 1024);
        s->sf = spool_create(s->conf->qdir, err);
        if (s->sf == NULL) {
            log_warning("queue file create failed: %s", buf_data(err));
            smtpd_reply(s, "451 4.3.0 Error: queue file write error");
            buf_free(err);
            goto out;
        }
        buf_free(err);
        snprintf(s->qid, sizeof(s->qid), "%s", spool_id(s->sf));
        if (s->sasl && (s->sasl->user || s->sasl->sender))
            log_info("%s: client=%s%s%s%s%s%s%s", s->qid, s->ident,
                     s->sasl->user ? ", sasl_method=" : "",
                     s->sasl->user ? s->sasl->method : "",
                     s->sasl->user ? ", sasl_username=" : "",
                     s->sasl->user ? smtpd_safe(s, 0, s->sasl->user) : "",
                     s->sasl->sender ? ", sasl_sender=" : "",
                     s->sasl->sender ? smtpd_safe(s, 1, s->sasl->sender) : "");
        else
            log_info("%s: client=%s", s->qid, s->ident);
    }
    smtpd_txn_note(s, r);
    if (s->pend_check != SMTPD_CHECK_PASS) { /* an access HOLD or DISCARD */
        struct filter_result hr = {0};

        hr.verdict =
            s->pend_check == SMTPD_CHECK_HOLD ? FILTER_HOLD : FILTER_DISCARD;
        hr.text = s->pend_check_text;
        if (hr.verdict > s->txn_verdict) /* logged once, as Postfix */
            smtpd_log_event(
                s, s->pend_check == SMTPD_CHECK_HOLD ? "hold" : "discard",
                "RCPT", s->pend_check_text, s->pend_addr);
        smtpd_txn_note(s, &hr);
    }
    smtpd_rcpt_add(s, s->pend_addr);
    if (s->pend_prepend)
        smtpd_prepend_add(s, s->pend_prepend);
    smtpd_reply(s, "250 2.1.5 Ok");
out:
    free(s->pend_addr);
    s->pend_addr = NULL;
    free(s->pend_check_text);
    s->pend_check_text = NULL;
    free(s->pend_prepend);
    s->pend_prepend = NULL;
    s->pend_check = SMTPD_CHECK_PASS;
}

static void smtpd_rcpt_check(struct smtpd_sess *s);

static void
smtpd_cmd_rcpt(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    struct smtpd_path p;
    const char *why;

    if (smtpd_rate_over(s, RATE_RCPT)) {
        smtpd_reply(s, "450 4.7.1 Error: too many recipients from %s", s->addr);
        return;
    }
    if (smtpd_parse_path(cmd->arg, "TO:", 1, &p, &why) < 0) {
        smtpd_reply(s, "501 %s", why);
        return;
    }
    if (p.nparams > 0) {
        smtpd_reply(s, "555 5.5.4 Unsupported option: %s", p.params[0]);
        return;
    }
    s->rcpt_tried++;
    if (s->conf->rcpt_limit > 0
        && (long long) s->nrcpt >= s->conf->rcpt_limit) {
        smtpd_reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    free(s->pend_addr);
    s->pend_addr = xstrdup(p.addr);
    smtpd_q_clear(s);
    smtpd_rcpt_check(s);
}

/* One evaluation (rcpt, or DATA, or eod) until it decides or waits for
 * an answer (then again runs when it is in): 1 decided, res filled (its
 * text for the caller to free); 0 waiting, nothing to free. */
static int
smtpd_check_eval(struct smtpd_sess *s, const char *rcpt, int eod,
                 void (*again)(struct smtpd_sess *s),
                 struct smtpd_check_res *res)
{
    res->text = buf_new(128, LOG_LINE_MAX);
    res->prepend = s->srv->prepend; /* scratch: emptied by the check */
    do
        smtpd_check_run(s, rcpt, eod, res);
    while (res->verdict == SMTPD_CHECK_NEED
           && smtpd_q_start(s, res,
                            rcpt  ? "RCPT"
                            : eod ? "END-OF-MESSAGE"
                                  : "DATA",
                            again));
    if (res->verdict == SMTPD_CHECK_NEED) {
        buf_free(res->text);
        return 0;
    }
    return 1;
}

/* The outcome at DATA or END-OF-MESSAGE (stage): a reject is replied and
 * logged (1; with 421 or 521 the session ends, as in Postfix), HOLD or
 * DISCARD noted for the message (0). */
static int
smtpd_check_msg_outcome(struct smtpd_sess *s, const char *stage,
                        const struct smtpd_check_res *res)
{
    if (res->verdict == SMTPD_CHECK_REJECT) {
        struct buf *b = buf_new(128, LOG_LINE_MAX);

        buf_printf(b, "%d %s %s", res->code, res->dsn, buf_data(res->text));
        smtpd_reply(s, "%s", buf_data(b));
        smtpd_log_event(s, "reject", stage, buf_data(b),
                        s->nrcpt == 1 ? s->rcpts[0] : NULL);
        buf_free(b);
        if (res->code == 421 || res->code == 521)
            smtpd_finish(s);
        return 1;
    }
    if (res->verdict != SMTPD_CHECK_PASS) {
        struct filter_result hr = {0};

        hr.verdict =
            res->verdict == SMTPD_CHECK_HOLD ? FILTER_HOLD : FILTER_DISCARD;
        hr.text = buf_data(res->text);
        if (hr.verdict > s->txn_verdict) /* logged once, as Postfix */
            smtpd_log_event(
                s, res->verdict == SMTPD_CHECK_HOLD ? "hold" : "discard", stage,
                buf_data(res->text), s->nrcpt == 1 ? s->rcpts[0] : NULL);
        smtpd_txn_note(s, &hr);
    }
    return 0;
}

/* RCPT's restrictions for s->pend_addr; again after each answer they
 * waited for. */
static void
smtpd_rcpt_check(struct smtpd_sess *s)
{
    static char *const none[] = {NULL};
    struct smtpd_check_res res;
    struct filter_args a = {0};
    const char *addr = s->pend_addr;

    if (!smtpd_check_eval(s, addr, 0, smtpd_rcpt_check, &res))
        return;
    free(s->pend_prepend);
    s->pend_prepend = res.verdict != SMTPD_CHECK_REJECT && buf_len(res.prepend)
                          ? xstrdup(buf_data(res.prepend))
                          : NULL;
    if (res.verdict == SMTPD_CHECK_REJECT) {
        struct buf *b = buf_new(128, LOG_LINE_MAX);
        struct filter_args fa;

        buf_printf(b, "%d %s %s", res.code, res.dsn, buf_data(res.text));
        smtpd_reply(s, "%s", buf_data(b));
        smtpd_log_event(s, "reject", "RCPT", buf_data(b), addr);
        /* filters may want to know (milters with SMFIP_RCPT_REJ) */
        memset(&fa, 0, sizeof(fa));
        fa.str = addr;
        fa.rejected = buf_data(b);
        smtpd_env_sync(s);
        filter_stage(s->fs, FILTER_RCPT, &fa, NULL, NULL);
        buf_free(b);
        buf_free(res.text);
        free(s->pend_addr);
        s->pend_addr = NULL;
        if (res.code == 421 || res.code == 521) /* as Postfix: and hang up */
            smtpd_finish(s);
        return;
    }
    free(s->pend_check_text);
    s->pend_check = res.verdict;
    s->pend_check_text =
        res.verdict != SMTPD_CHECK_PASS ? xstrdup(buf_data(res.text)) : NULL;
    buf_free(res.text);
    a.str = s->pend_addr;
    a.argv = none; /* RCPT parameters were refused */
    smtpd_filter(s, FILTER_RCPT, &a, smtpd_rcpt_done);
}

/* DATA decoder callbacks */
static void
smtpd_dec_content(void *arg, const void *p, size_t n)
{
    struct smtpd_sess *s = arg;

    if (s->write_err || s->sf == NULL)
        return;
    if (spool_write(s->sf, p, n) < 0)
        s->write_err = errno ? errno : EIO;
}

static void
smtpd_dec_header(void *arg, const char *name, size_t nlen, const char *value,
                 size_t vlen)
{
    struct smtpd_sess *s = arg;
    struct filter_args a = {0};
    char *hn = xmemdup(name, nlen), *hv = xmemdup(value, vlen);

    if (!s->msgid_logged && strcasecmp(hn, "Message-ID") == 0) {
        const char *v = hv;
        size_t n = vlen;

        while (n > 0 && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
            v++, n--;
        while (n > 0
               && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'
                   || v[n - 1] == '\n'))
            n--;
        log_info_as("cleanup", "%s: message-id=%s", s->qid,
                    log_safe(v, n, s->safe[0], SMTPD_SAFE));
        s->msgid_logged = 1;
    }
    a.hname = hn;
    a.hvalue = hv;
    filter_stage(s->fs, FILTER_HEADER, &a, NULL, NULL);
    free(hn);
    free(hv);
}

static void
smtpd_dec_eoh(void *arg)
{
    struct smtpd_sess *s = arg;

    filter_stage(s->fs, FILTER_EOH, NULL, NULL, NULL);
}

static void
smtpd_dec_body(void *arg, const void *p, size_t n)
{
    struct smtpd_sess *s = arg;
    struct filter_args a = {0};

    a.data = p;
    a.len = n;
    filter_stage(s->fs, FILTER_BODY, &a, NULL, NULL);
    if (!s->backlog_paused && filter_backlog(s->fs) >= FILTER_BACKLOG_HIGH) {
        log_debug("%s: filter backlog high: not reading", s->ident);
        s->backlog_paused = 1;
    }
}

static const struct smtpd_data_cb smtpd_dec_cb = {
    smtpd_dec_content,
    smtpd_dec_header,
    smtpd_dec_eoh,
    smtpd_dec_body,
};

/* The Received: header, Postfix form; value is what follows the colon. */
static void
smtpd_received(struct smtpd_sess *s, struct buf *b)
{
    const struct smtpd_conf *c = s->conf;
    char date[64];
    struct tm tm;
    time_t now = time(NULL);
    int v6 = strchr(s->addr, ':') != NULL;
    char tls[sizeof(s->tls->ti.line) + 640] = "";
    const char *auth = s->sasl ? s->sasl->user : NULL;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
    if (s->tc.on && c->tls_received) {
        const struct tls_peer *p = &s->tls->peer;

        if (p->present) /* CN and issuer: printable, no quotes inside */
            snprintf(tls, sizeof(tls),
                     "\r\n\t(using %s)\r\n\t(Client CN \"%.*s\", Issuer "
                     "\"%.*s\" (%s))",
                     s->tls->ti.line, (int) strcspn(p->cn, "\"()\\"), p->cn,
                     (int) strcspn(p->issuer, "\"()\\"), p->issuer,
                     p->trusted ? "verified OK" : "not verified");
        else
            snprintf(tls, sizeof(tls), "\r\n\t(using %s)\r\n\t(%s)",
                     s->tls->ti.line,
                     c->ask_ccert ? "Client did not present a certificate"
                                  : "No client certificate requested");
    }
    /* one format for the whole field (a printf call costs) */
    buf_printf(
        b, " from %s (%s [%s%s])%s%s%s%s\r\n\tby %s (%s) with %s%s%s id %s",
        s->helo ? s->helo : "unknown", s->name, v6 ? "IPv6:" : "", s->addr, tls,
        auth && c->sasl_header ? "\r\n\t(Authenticated sender: " : "",
        auth && c->sasl_header ? smtpd_safe(s, 0, auth) : "",
        auth && c->sasl_header ? ")" : "", c->myhostname, c->mail_name,
        s->proto ? s->proto : "SMTP",
        s->tc.on ? "S" : "", /* RFC 3848: ESMTPS over TLS, */
        auth ? "A" : "",     /* ESMTPA, ESMTPSA authenticated */
        s->qid);
    if (s->nrcpt == 1)
        buf_printf(b, "\r\n\tfor <%s>; %s", s->rcpts[0], date);
    else
        buf_printf(b, "; %s", date);
}

static void
smtpd_data_done(struct smtpd_sess *s, const struct filter_result *r)
{
    struct filter_args a = {0};
    struct buf *b;
    size_t max;

    if (r->verdict == FILTER_REJECT || r->verdict == FILTER_TEMPFAIL) {
        smtpd_reject(s, r, "DATA", s->nrcpt ? s->rcpts[0] : NULL);
        smtpd_txn_end(s, 1);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    }
    smtpd_txn_note(s, r);
    smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    smtpd_enter(s, SMTPD_S_DATA);
    max = s->conf->size_limit > 0 ? (size_t) s->conf->size_limit
                                  : (size_t) -1 / 2;
    s->dec = smtpd_data_new(&smtpd_dec_cb, s, max,
                            (size_t) s->conf->header_limit, s->forbid_bare);
    /* the restrictions' PREPEND headers come first, as in Postfix */
    for (char *h = s->prepend ? buf_data(s->prepend) : NULL, *nl;
         h && *h && (nl = strchr(h, '\n')) != NULL; h = nl + 1) {
        char *colon = memchr(h, ':', (size_t) (nl - h));

        *nl = '\0';
        if (spool_write(s->sf, h, strlen(h)) < 0
            || spool_write(s->sf, "\r\n", 2) < 0)
            s->write_err = errno ? errno : EIO;
        if (colon) {
            *colon = '\0';
            a.hname = h;
            a.hvalue = colon + 1;
            filter_stage(s->fs, FILTER_HEADER, &a, NULL, NULL);
            *colon = ':';
        }
        *nl = '\n';
    }
    b = buf_new(512, 8192 + 2 * (size_t) s->conf->line_limit);
    buf_puts(b, "Received:");
    smtpd_received(s, b);
    buf_puts(b, "\r\n"); /* one write for the whole field */
    if (spool_write(s->sf, buf_data(b), buf_len(b)) < 0)
        s->write_err = errno ? errno : EIO;
    buf_truncate(b, buf_len(b) - 2);
    a.hname = "Received";
    a.hvalue = buf_data(b) + 9;
    filter_stage(s->fs, FILTER_HEADER, &a, NULL, NULL);
    buf_free(b);
}

/*
 * DATA admission. A message costs the scan threads the same wherever its
 * client waits; with more messages past their DATA than the scan threads
 * can take, the surplus would wait after its end of data, in the scan
 * queue, where the client has sent everything and only the reply is
 * missing: a lost connection there makes a duplicate (RFC 1047), and the
 * spool holds the whole message meanwhile. Instead a DATA beyond
 * data_limit waits for its 354 until a message ahead gets its verdict
 * (its client, pipelining or not, sends nothing more meanwhile), at most
 * SMTPD_GATE_WAIT, after which it goes ahead over the limit.
 */

static void
smtpd_gate_unlink(struct smtpd_sess *s)
{
    struct smtpd_srv *srv = s->srv;

    if (s->gate_prev)
        s->gate_prev->gate_next = s->gate_next;
    else
        srv->gate_head = s->gate_next;
    if (s->gate_next)
        s->gate_next->gate_prev = s->gate_prev;
    else
        srv->gate_tail = s->gate_prev;
    s->gate_next = s->gate_prev = NULL;
    s->gated = 0;
}

static void
smtpd_gate_arm(struct smtpd_srv *srv)
{
    ev_timer_stop(srv->loop, &srv->gate_timer);
    if (srv->gate_head == NULL)
        return;
    ev_timer_set(
        &srv->gate_timer,
        srv->gate_head->gate_since + SMTPD_GATE_WAIT - ev_now(srv->loop), 0.);
    ev_timer_start(srv->loop, &srv->gate_timer);
}

static void smtpd_data_done(struct smtpd_sess *s,
                            const struct filter_result *r);

/* Take a slot and offer DATA to the filters. */
static void
smtpd_data_begin(struct smtpd_sess *s)
{
    s->data_slot = 1;
    s->srv->data_busy++;
    smtpd_filter(s, FILTER_DATA, NULL, smtpd_data_done);
}

/* The oldest waiting session goes ahead. Runs from the loop (a check or
 * timer watcher), not inside another session's callbacks. */
static void
smtpd_gate_pass(struct smtpd_sess *s)
{
    smtpd_gate_unlink(s);
    s->waiting = 0;
    smtpd_data_begin(s); /* an answer at once goes on with smtpd_process */
}

static void
smtpd_gate_admit_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    struct smtpd_srv *srv = w->data;

    ev_check_stop(loop, w);
    while (srv->gate_head != NULL && srv->data_busy < srv->data_limit)
        smtpd_gate_pass(srv->gate_head);
    smtpd_gate_arm(srv);
}

static void
smtpd_gate_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_srv *srv = w->data;
    ev_tstamp now = ev_now(loop);

    while (srv->gate_head != NULL
           && srv->gate_head->gate_since + SMTPD_GATE_WAIT <= now + 1e-3) {
        log_debug("%s: DATA admitted over the limit of %d after %.1f s",
                  srv->gate_head->ident, srv->data_limit, SMTPD_GATE_WAIT);
        smtpd_gate_pass(srv->gate_head);
    }
    smtpd_gate_arm(srv);
}

static void
smtpd_gate_release(struct smtpd_sess *s)
{
    struct smtpd_srv *srv = s->srv;

    s->data_slot = 0;
    srv->data_busy--;
    if (srv->gate_head != NULL && srv->data_busy < srv->data_limit)
        ev_check_start(srv->loop, &srv->gate_admit);
}

static void smtpd_data_go(struct smtpd_sess *s);

/* smtpd_data_restrictions, then DATA goes on (smtpd_data_go) unless it
 * was refused (replied, logged); again after each answer they waited
 * for. */
static void
smtpd_data_check(struct smtpd_sess *s)
{
    struct smtpd_check_res res;
    int refused;

    if (!smtpd_check_eval(s, NULL, 0, smtpd_data_check, &res))
        return;
    if (res.verdict != SMTPD_CHECK_REJECT)
        smtpd_prepend_add(s, buf_data(res.prepend));
    refused = smtpd_check_msg_outcome(s, "DATA", &res);
    buf_free(res.text);
    if (!refused)
        smtpd_data_go(s);
}

static void
smtpd_cmd_data(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    if (*cmd->arg != '\0') {
        smtpd_reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (s->nrcpt == 0) {
        if (s->rcpt_tried)
            smtpd_reply(s, "554 5.5.1 Error: no valid recipients");
        else
            smtpd_reply(s, "503 5.5.1 Error: need RCPT command");
        return;
    }
    smtpd_q_clear(s);
    if (smtpd_check_data_used(s->conf->check))
        smtpd_data_check(s);
    else
        smtpd_data_go(s);
}

/* DATA accepted by the restrictions: admission, then the 354. */
static void
smtpd_data_go(struct smtpd_sess *s)
{
    if (s->srv->data_limit > 0
        && (s->srv->data_busy >= s->srv->data_limit
            || s->srv->gate_head != NULL)) {
        struct smtpd_srv *srv = s->srv;

        s->gated = 1;
        s->waiting = 1;
        s->gate_since = ev_now(srv->loop);
        s->gate_prev = srv->gate_tail;
        if (srv->gate_tail)
            srv->gate_tail->gate_next = s;
        else
            srv->gate_head = s;
        srv->gate_tail = s;
        if (srv->gate_head == s)
            smtpd_gate_arm(srv);
        smtpd_update_io(s);
        return;
    }
    smtpd_data_begin(s);
}

static void
smtpd_cmd_rset(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    smtpd_txn_end(s, 1);
    smtpd_enter(s, smtpd_idle_state(s));
    smtpd_reply(s, "250 2.0.0 Ok");
}

static void
smtpd_cmd_noop(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    smtpd_reply(s, "250 2.0.0 Ok");
}

static void
smtpd_cmd_quit(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    smtpd_txn_end(s, 1);
    smtpd_reply(s, "221 2.0.0 Bye");
    smtpd_finish(s);
}

static void
smtpd_cmd_vrfy(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    if (s->conf->disable_vrfy)
        smtpd_reply(s, "502 5.5.1 VRFY command is disabled");
    else if (*cmd->arg == '\0')
        smtpd_reply(s, "501 5.5.4 Syntax: VRFY address");
    else
        smtpd_reply(s, "252 2.0.0 %s", cmd->arg);
}

static void
smtpd_cmd_expn(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    smtpd_reply(s, "502 5.5.2 Error: command not recognized");
}

static void
smtpd_cmd_help(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    smtpd_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP "
                   "QUIT VRFY HELP");
}

/* After the handshake: RFC 3207 4.2, the client starts afresh (EHLO). */
static void
smtpd_starttls_done(struct smtpd_sess *s)
{
    smtpd_sasl_free(s); /* a clear-text AUTH does not carry over */
    free(s->helo);
    s->helo = NULL;
    s->esmtp = 0;
    s->proto = NULL;
    smtpd_env_sync(s);
    smtpd_enter(s, SMTPD_S_HELO);
    smtpd_process(s);
}

static void
smtpd_cmd_starttls(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    const struct smtpd_conf *c = s->conf;

    if (*cmd->arg != '\0') {
        smtpd_reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (s->tc.on) {
        smtpd_reply(s, "554 5.5.1 Error: TLS already active");
        return;
    }
    if (c->tls == NULL || (smtpd_ehlo_discards(s) & SMTPD_EHLO_STARTTLS)) {
        if (c->tls_required && c->tls == NULL)
            smtpd_reply(s, "454 4.7.0 TLS not available due to local problem");
        else
            smtpd_reply(s, "502 5.5.1 Error: command not implemented");
        return;
    }
    if (s->sender != NULL) {
        smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    /* before the handshake's cost: the new sessions already counted */
    if (c->rate_limit[RATE_NEWTLS] > 0
        && !lookup_net_match(c->event_exc, (const struct sockaddr *) &s->sa)
        && (long long) rate_peek(s->srv->rates, c->service, s->addr,
                                 RATE_NEWTLS, ev_now(s->srv->loop))
               > c->rate_limit[RATE_NEWTLS]) {
        log_warning("Refusing STARTTLS request from %s for service %s",
                    s->ident, c->service);
        smtpd_reply(s, "454 4.7.0 Error: too many new TLS sessions from %s",
                    s->ident);
        return;
    }
    smtpd_reply(s, "220 2.0.0 Ready to start TLS");
    if (buf_len(s->in) > 0)
        log_info("improper command pipelining after STARTTLS from %s",
                 s->ident);
    s->tls_start = 1; /* smtpd_flush starts the handshake */
}

/* The exchange failed: Postfix's warning (fail2ban's postfix-sasl filter
 * reads it) and reply. */
static void
smtpd_sasl_failed(struct smtpd_sess *s, int temp, const char *why)
{
    struct smtpd_sasl *a = s->sasl;

    log_warning("%s: SASL %s authentication failed: %s", s->ident,
                smtpd_safe(s, 0, a->mech), smtpd_safe(s, 1, why));
    if (temp)
        smtpd_reply(s, "454 4.7.0 Temporary authentication failure: %s",
                    smtpd_safe(s, 1, why));
    else
        smtpd_reply(s, "535 5.7.8 Error: authentication failed: %s",
                    smtpd_safe(s, 1, why));
    free(a->mech);
    a->mech = NULL;
}

/* The back end's answer to AUTH or to a response (on the loop). */
static void
smtpd_sasl_cb(void *arg, enum sasl_status st, const char *text)
{
    struct smtpd_sess *s = arg;
    struct smtpd_sasl *a = s->sasl;

    if (st != SASL_CONT)
        a->req = NULL;
    s->waiting = 0;
    switch (st) {
    case SASL_CONT:
        s->sasl_line = 1;
        smtpd_reply(s, "334 %s", text);
        break;
    case SASL_OK:
        a->method = a->mech;
        a->mech = NULL;
        a->user = xstrdup(text);
        smtpd_env_sync(s);
        smtpd_reply(s, "235 2.7.0 Authentication successful");
        break;
    case SASL_FAIL:
        smtpd_sasl_failed(s, 0, text);
        break;
    case SASL_TEMP:
        smtpd_sasl_failed(s, 1, text);
        break;
    }
    smtpd_process(s);
}

static void
smtpd_sasl_client(const struct smtpd_sess *s, struct sasl_client *cl)
{
    cl->service = s->conf->sasl_service;
    cl->laddr = s->laddr;
    cl->lport = s->lport;
    cl->raddr = s->addr;
    cl->rport = s->port;
    cl->secured = s->tc.on;
}

/* RFC 4954: AUTH mechanism [initial-response] */
static void
smtpd_cmd_auth(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    const struct smtpd_conf *c = s->conf;
    struct smtpd_sasl *a;
    struct sasl_client cl;
    struct buf *why;
    char *mech, *resp, *extra;
    int ok;

    if (s->helo == NULL) {
        smtpd_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (c->sasl == NULL || (smtpd_ehlo_discards(s) & SMTPD_EHLO_AUTH)) {
        smtpd_reply(s, "503 5.5.1 Error: authentication not enabled");
        return;
    }
    if (smtpd_rate_over(s, RATE_AUTH)) {
        smtpd_reply(s, "450 4.7.1 Error: too many AUTH commands from %s",
                    s->addr);
        return;
    }
    if (c->tls_auth_only && !s->tc.on) {
        /* RFC 4954 section 4 */
        smtpd_reply(s, "504 5.5.4 Encryption required for requested "
                       "authentication mechanism");
        return;
    }
    if (s->sasl && s->sasl->user) {
        smtpd_reply(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (s->sender != NULL) {
        smtpd_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    mech = strtok_r(cmd->arg, " ", &extra);
    resp = mech ? strtok_r(NULL, " ", &extra) : NULL;
    if (mech == NULL || strtok_r(NULL, " ", &extra) != NULL) {
        smtpd_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    a = smtpd_sasl_get(s);
    free(a->mech);
    a->mech = xstrdup(mech);
    for (char *p = a->mech; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char) (*p - 'a' + 'A');
    ok = sasl_mech_offered(c->sasl, smtpd_sasl_pol(s), a->mech);
    if (ok < 0) {
        /* the mechanisms were never learned, so EHLO offered no AUTH (its
         * next attempt to learn them is made by the next EHLO) */
        free(a->mech);
        a->mech = NULL;
        smtpd_reply(s, "503 5.5.1 Error: authentication not enabled");
        return;
    }
    if (ok == 0) {
        smtpd_sasl_failed(s, 0, "Invalid authentication mechanism");
        return;
    }
    if (resp != NULL && strcmp(resp, "=") == 0)
        resp = ""; /* RFC 4954: an empty initial response */
    else if (resp != NULL && !sasl_b64_ok(resp)) {
        smtpd_sasl_failed(s, 0, "Invalid base64 data in initial response");
        return;
    }
    smtpd_sasl_client(s, &cl);
    why = buf_new(64, 256);
    a->req = sasl_start(c->sasl, &cl, a->mech, resp, c->timeout, smtpd_sasl_cb,
                        s, why);
    if (a->req == NULL)
        smtpd_sasl_failed(s, 1, buf_data(why));
    else {
        s->waiting = 1;
        smtpd_update_io(s);
    }
    buf_free(why);
}

/* The client's answer to a 334: "*" ends the exchange. */
static void
smtpd_sasl_answer(struct smtpd_sess *s, const char *line, size_t len)
{
    struct smtpd_sasl *a = s->sasl;
    struct buf *why;

    s->sasl_line = 0;
    if (strcmp(line, "*") == 0) {
        log_warning("%s: SASL %s authentication aborted", s->ident,
                    smtpd_safe(s, 0, a->mech));
        sasl_cancel(a->req);
        a->req = NULL;
        free(a->mech);
        a->mech = NULL;
        smtpd_reply(s, "501 5.7.0 Authentication aborted");
        return;
    }
    if (strlen(line) != len || !sasl_b64_ok(line)) {
        sasl_cancel(a->req);
        a->req = NULL;
        smtpd_sasl_failed(s, 0, "Invalid base64 data in continued response");
        return;
    }
    why = buf_new(64, 256);
    if (sasl_next(a->req, line, why) < 0) {
        a->req = NULL; /* freed */
        smtpd_sasl_failed(s, 1, buf_data(why));
    } else {
        s->waiting = 1;
        smtpd_update_io(s);
    }
    buf_free(why);
}

/* The answer line was too long (RFC 4954 section 4): the exchange ends. */
static void
smtpd_sasl_too_long(struct smtpd_sess *s)
{
    struct smtpd_sasl *a = s->sasl;

    s->sasl_line = 0;
    log_warning("%s: SASL %s authentication failed: response too long",
                s->ident, smtpd_safe(s, 0, a->mech));
    sasl_cancel(a->req);
    a->req = NULL;
    free(a->mech);
    a->mech = NULL;
    smtpd_reply(s, "500 5.5.6 Authentication exchange line is too long");
}

static void
smtpd_unknown_done(struct smtpd_sess *s, const struct filter_result *r)
{
    if ((r->verdict == FILTER_REJECT || r->verdict == FILTER_TEMPFAIL)
        && r->text) {
        const char *dsn, *text;
        int code;

        smtpd_verdict_reply(r, &code, &dsn, &text);
        smtpd_reply_text(s, code, dsn, text);
        return;
    }
    smtpd_reply(s, "502 5.5.2 Error: command not recognized");
}

static void
smtpd_cmd_unknown(struct smtpd_sess *s, struct smtpd_cmd *cmd)
{
    struct filter_args a = {0};

    a.str = buf_data(s->raw);
    smtpd_filter(s, FILTER_UNKNOWN, &a, smtpd_unknown_done);
}

struct smtpd_verb_ent {
    const char *name; /* upper case, for "after CMD" */
    const char *stat; /* lower case, for the disconnect line */
    void (*fn)(struct smtpd_sess *s, struct smtpd_cmd *cmd);
    unsigned states;  /* where the verb is allowed */
    const char *deny; /* reply elsewhere */
    int junk;         /* counts toward smtpd_junk_command_limit */
};

/* Indexed by enum smtpd_verb. */
static const struct smtpd_verb_ent smtpd_verbs[SMTPD_NVERB] = {
    [SMTPD_V_EHLO] = {"EHLO", "ehlo", smtpd_cmd_helo, ST_CMD, NULL, 0},
    [SMTPD_V_HELO] = {"HELO", "helo", smtpd_cmd_helo, ST_CMD, NULL, 0},
    [SMTPD_V_MAIL] = {"MAIL", "mail", smtpd_cmd_mail,
                      ST(SMTPD_S_HELO) | ST(SMTPD_S_MAIL),
                      "503 5.5.1 Error: nested MAIL command", 0},
    [SMTPD_V_RCPT] = {"RCPT", "rcpt", smtpd_cmd_rcpt, ST(SMTPD_S_RCPT),
                      "503 5.5.1 Error: need MAIL command", 0},
    [SMTPD_V_DATA] = {"DATA", "data", smtpd_cmd_data, ST(SMTPD_S_RCPT),
                      "503 5.5.1 Error: need RCPT command", 0},
    [SMTPD_V_RSET] = {"RSET", "rset", smtpd_cmd_rset, ST_CMD, NULL, 1},
    [SMTPD_V_NOOP] = {"NOOP", "noop", smtpd_cmd_noop, ST_CMD, NULL, 1},
    [SMTPD_V_QUIT] = {"QUIT", "quit", smtpd_cmd_quit, ST_CMD, NULL, 0},
    [SMTPD_V_VRFY] = {"VRFY", "vrfy", smtpd_cmd_vrfy, ST_CMD, NULL, 1},
    [SMTPD_V_EXPN] = {"EXPN", "expn", smtpd_cmd_expn, ST_CMD, NULL, 1},
    [SMTPD_V_HELP] = {"HELP", "help", smtpd_cmd_help, ST_CMD, NULL, 1},
    [SMTPD_V_STARTTLS] = {"STARTTLS", "starttls", smtpd_cmd_starttls, ST_CMD,
                          NULL, 0},
    [SMTPD_V_AUTH] = {"AUTH", "auth", smtpd_cmd_auth, ST_CMD, NULL, 0},
    [SMTPD_V_BDAT] = {"BDAT", "bdat", smtpd_cmd_unknown, ST_CMD, NULL, 1},
    [SMTPD_V_ETRN] = {"ETRN", "etrn", smtpd_cmd_unknown, ST_CMD, NULL, 1},
    [SMTPD_V_UNKNOWN] = {"UNKNOWN", "unknown", smtpd_cmd_unknown, ST_CMD, NULL,
                         1},
};

/* Postfix's order of the counters on the disconnect line. */
static const enum smtpd_verb smtpd_stat_order[] = {
    SMTPD_V_HELO, SMTPD_V_EHLO, SMTPD_V_STARTTLS, SMTPD_V_AUTH,
    SMTPD_V_MAIL, SMTPD_V_RCPT, SMTPD_V_BDAT,     SMTPD_V_DATA,
    SMTPD_V_RSET, SMTPD_V_NOOP, SMTPD_V_VRFY,     SMTPD_V_EXPN,
    SMTPD_V_HELP, SMTPD_V_ETRN, SMTPD_V_QUIT,     SMTPD_V_UNKNOWN,
};

static void
smtpd_begin(struct smtpd_sess *s, enum smtpd_verb v)
{
    s->cur = (int) v;
    s->cnt[v]++;
    s->last_cmd = smtpd_verbs[v].name;
    if (smtpd_verbs[v].junk && ++s->junk > s->conf->junk_limit)
        s->errors++;
}

static void
smtpd_command(struct smtpd_sess *s, char *line, size_t len)
{
    const struct smtpd_verb_ent *v;
    struct smtpd_cmd cmd;

    buf_set(s->raw, line, len);
    if (smtpd_parse_cmd(line, len, &cmd) < 0) {
        smtpd_begin(s, SMTPD_V_UNKNOWN);
        smtpd_reply(s, "500 5.5.2 Error: bad syntax");
        return;
    }
    v = &smtpd_verbs[cmd.verb];
    smtpd_begin(s, cmd.verb);
    if (s->tls_refuse) { /* smtpd_tls_req_ccert, after STARTTLS */
        smtpd_reply(s, "421 4.7.1 %s Error: %s", s->conf->myhostname,
                    s->tls_refuse);
        smtpd_finish(s);
        return;
    }
    if (s->denied && cmd.verb != SMTPD_V_QUIT) {
        smtpd_reply(s, "503 5.5.1 Error: access denied for %s", s->ident);
        return;
    }
    if (!(v->states & ST(s->state))) {
        smtpd_reply(s, "%s",
                    v->deny ? v->deny
                            : "503 5.5.1 Error: bad sequence of "
                              "commands");
        return;
    }
    v->fn(s, &cmd);
}

/* Bare LF or CR received: 521 and close. */
static void
smtpd_bare(struct smtpd_sess *s, const char *what)
{
    log_info("%s: bare <%s> received after %s from %s",
             s->qid[0] ? s->qid : "NOQUEUE", what, s->last_cmd, s->ident);
    smtpd_reply(s, "521 5.5.2 %s Error: bare <%s> received",
                s->conf->myhostname, what);
    smtpd_txn_end(s, 1);
    smtpd_finish(s);
}

/* Take one command line from the input: 0 handled, -1 need more input. */
static int
smtpd_next_line(struct smtpd_sess *s)
{
    char *d = buf_data(s->in), *lf;
    size_t len = buf_len(s->in), n, ll;
    long long limit = s->conf->line_limit;
    int bare;

    if (s->sasl_line && s->conf->sasl_resp_limit > limit)
        limit = s->conf->sasl_resp_limit;

    lf = memchr(d, '\n', len);
    if (s->skip_line) {
        if (lf == NULL) {
            buf_reset(s->in);
            return -1;
        }
        buf_consume(s->in, (size_t) (lf - d) + 1);
        s->skip_line = 0;
        return 0;
    }
    if (lf == NULL) {
        if ((long long) len <= limit)
            return -1;
        if (s->sasl_line)
            smtpd_sasl_too_long(s);
        else {
            smtpd_begin(s, SMTPD_V_UNKNOWN);
            smtpd_reply(s, "500 5.5.2 Error: line too long");
        }
        buf_reset(s->in);
        s->skip_line = 1;
        return 0;
    }
    n = (size_t) (lf - d);
    bare = n == 0 || d[n - 1] != '\r';
    ll = bare ? n : n - 1;
    if (bare && s->forbid_bare) {
        smtpd_bare(s, "LF");
        return -1;
    }
    if ((long long) ll > limit) {
        buf_consume(s->in, n + 1);
        if (s->sasl_line)
            smtpd_sasl_too_long(s);
        else {
            smtpd_begin(s, SMTPD_V_UNKNOWN);
            smtpd_reply(s, "500 5.5.2 Error: line too long");
        }
        return 0;
    }
    buf_set(s->line, d, ll);
    buf_consume(s->in, n + 1);
    if (s->sasl_line)
        smtpd_sasl_answer(s, buf_data(s->line), ll);
    else
        smtpd_command(s, buf_data(s->line), ll);
    return 0;
}

/*
 * End of data, verdict, commit
 */

struct smtpd_job {
    struct smtpd_sess *s;
    struct smtpd_job *next; /* group commit queue */
    struct spool_file *sf;  /* commit: the file; rewrite: the old one */
    struct spool_file *nsf; /* rewrite: the new one */
    struct spool_env *env;
    struct filter_mod *mods;
    const char *queue;
    char *qdir;
    char id[SPOOL_ID_SIZE];
    off_t off, len;
    off_t size; /* commit: the content's size */
    int rc, err;
    struct buf *errbuf;
};

static void
smtpd_job_free(struct smtpd_job *j)
{
    if (j->env) {
        spool_env_free(j->env);
        free(j->env);
    }
    filter_mods_free(j->mods);
    buf_free(j->errbuf);
    free(j->qdir);
    free(j);
}

/* virtual_alias_maps: each of r[0, *nr) replaced by what it expands
 * into; orig[i] is NULL, or the address r[i] came from. 0, or -1 with
 * the reason in err (nothing changed then). */
static int
smtpd_valias(struct smtpd_sess *s, char ***r, size_t *nr, char ***orig,
             struct buf *err)
{
    const struct addrmap *m = smtpd_check_valias(s->conf->check);
    char **nv = NULL, **no = NULL;
    size_t n = 0;

    for (size_t i = 0; i < *nr; i++) {
        char **x;
        size_t nx;

        if (addrmap_expand(m, (*r)[i], &x, &nx, err) < 0)
            goto fail;
        if (n + nx > SPOOL_RCPT_MAX) {
            buf_printf(err,
                       "unreasonable virtual_alias_maps map expansion size "
                       "for %s: more than %d recipients",
                       (*r)[i], SPOOL_RCPT_MAX);
            for (size_t k = 0; k < nx; k++)
                free(x[k]);
            free(x);
            goto fail;
        }
        nv = xrealloc(nv, (n + nx + 1) * sizeof(char *));
        no = xrealloc(no, (n + nx + 1) * sizeof(char *));
        for (size_t k = 0; k < nx; k++, n++) {
            nv[n] = x[k];
            no[n] = strcasecmp(x[k], (*r)[i]) != 0 ? xstrdup((*r)[i]) : NULL;
        }
        free(x);
    }
    for (size_t i = 0; i < *nr; i++)
        free((*r)[i]);
    free(*r);
    *r = nv;
    *orig = no;
    *nr = n;
    return 0;
fail:
    for (size_t k = 0; k < n; k++) {
        free(nv[k]);
        free(no[k]);
    }
    free(nv);
    free(no);
    return -1;
}

static int
smtpd_rcpt_cmp(const void *a, const void *b, void *arg)
{
    char **v = arg;
    size_t x = *(const size_t *) a, y = *(const size_t *) b;
    int c = strcasecmp(v[x], v[y]);

    return c ? c : (x > y) - (x < y);
}

/* Which of v[0, n) repeat an earlier one (case-insensitively): 1s in a
 * calloc'd array, or NULL for none (fewer than 2). Sorted, not pairwise:
 * virtual_alias_maps may make SPOOL_RCPT_MAX recipients, and this runs
 * on the loop. */
static unsigned char *
smtpd_rcpt_dups(char **v, size_t n)
{
    unsigned char *dup;
    size_t *ix;

    if (n < 2)
        return NULL;
    dup = xcalloc(n, 1);
    ix = xmalloc(n * sizeof(*ix));
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    qsort_r(ix, n, sizeof(*ix), smtpd_rcpt_cmp, v);
    for (size_t i = 1; i < n; i++) /* each group's first is the earliest */
        if (strcasecmp(v[ix[i]], v[ix[i - 1]]) == 0)
            dup[ix[i]] = 1;
    free(ix);
    return dup;
}

/* The envelope of the transaction with the filters' changes; NULL with
 * the reason in *why (malloc'd) when virtual_alias_maps cannot expand
 * it. */
static struct spool_env *
smtpd_env_new(struct smtpd_sess *s, const struct filter_mod *mods,
              const char *hold, char **why)
{
    struct spool_env *e;
    const struct filter_mod *m;
    struct timeval tv;
    char **r = xcalloc(s->nrcpt + 1, sizeof(char *)), **orig = NULL;
    unsigned char *dup;
    size_t nr = 0, i;
    char *sender = xstrdup(s->sender ? s->sender : "");

    for (i = 0; i < s->nrcpt; i++)
        r[nr++] = xstrdup(s->rcpts[i]);
    for (m = mods; m; m = m->next) {
        const char *v = m->value ? m->value : "";
        size_t vl = strlen(v);

        if (vl >= 2 && v[0] == '<' && v[vl - 1] == '>')
            v++, vl -= 2;
        switch (m->type) {
        case FILTER_MOD_CHANGE_SENDER:
            free(sender);
            sender = xstrndup(v, vl);
            break;
        case FILTER_MOD_ADD_RCPT:
            r = xrealloc(r, (nr + 2) * sizeof(char *));
            r[nr++] = xstrndup(v, vl);
            break;
        case FILTER_MOD_DELETE_RCPT:
            for (i = 0; i < nr; i++) {
                if (strlen(r[i]) == vl && strncasecmp(r[i], v, vl) == 0) {
                    free(r[i]);
                    r[i] = r[--nr];
                    i--;
                }
            }
            break;
        case FILTER_MOD_ADD_HEADER:
        case FILTER_MOD_INSERT_HEADER:
        case FILTER_MOD_CHANGE_HEADER:
        case FILTER_MOD_REPLACE_BODY:
            break;
        }
    }
    if (!addrmap_empty(smtpd_check_valias(s->conf->check))) {
        struct buf *err = buf_new(128, 1024);
        int rc = smtpd_valias(s, &r, &nr, &orig, err);

        *why = rc < 0 ? xstrdup(buf_data(err)) : NULL;
        buf_free(err);
        if (rc < 0) {
            for (i = 0; i < nr; i++)
                free(r[i]);
            free(r);
            free(sender);
            return NULL;
        }
    }
    e = xcalloc(1, sizeof(*e));
    gettimeofday(&tv, NULL);
    e->arrival = (long long) tv.tv_sec * 1000000 + tv.tv_usec;
    e->client_name = xstrdup(s->name);
    e->client_addr = xstrdup(s->addr);
    e->client_port = s->port;
    e->helo = s->helo ? xstrdup(s->helo) : NULL;
    e->proto = xstrdup(s->proto ? s->proto : "SMTP");
    e->sender = sender;
    e->body_type = s->body_type ? xstrdup(s->body_type) : NULL;
    e->hold_reason = hold ? xstrdup(hold) : NULL;
    e->rcpt = xcalloc(nr ? nr : 1, sizeof(struct spool_rcpt));
    dup = smtpd_rcpt_dups(r, nr);
    for (i = 0; i < nr; i++) {
        if (dup && dup[i]) { /* duplicates: deliver once */
            free(r[i]);
            if (orig)
                free(orig[i]);
            continue;
        }
        e->rcpt[e->nrcpt].addr = r[i];
        e->rcpt[e->nrcpt].orig = orig ? orig[i] : NULL;
        e->rcpt[e->nrcpt].status = SPOOL_RCPT_PENDING;
        e->nrcpt++;
    }
    free(dup);
    free(r);
    free(orig);
    return e;
}

#define SMTPD_COMMIT_BATCH 256
/* Batches in the pool at once, at most (and one pool thread left for
 * other work), and the content size from which a file is big: another
 * batch starts beside those in flight when a big file waits or one is in
 * flight. Small files commit cheaper together (one wake-up and one
 * directory fsync for the lot, while the batch in flight gathers the
 * next); a big file's writeback costs as much alone, it only waits
 * behind a batch in flight, and the small files behind it would wait
 * for its writeback. */
#define SMTPD_COMMIT_FLIGHT 3
#define SMTPD_COMMIT_BIG    ((off_t) 256 << 10)

struct smtpd_batch {
    struct smtpd_srv *srv;
    struct smtpd_job *jobs;
    size_t n;
    int big; /* holds a big file */
};

static void
smtpd_commit_work(void *arg)
{
    struct smtpd_batch *b = arg;
    struct spool_file *sf[SMTPD_COMMIT_BATCH];
    const char *queue[SMTPD_COMMIT_BATCH];
    int rc[SMTPD_COMMIT_BATCH];
    struct smtpd_job *j;
    size_t i = 0;

    for (j = b->jobs; j; j = j->next, i++) {
        sf[i] = j->sf;
        queue[i] = j->queue;
    }
    spool_commit_batch(sf, queue, rc, b->n);
    for (i = 0, j = b->jobs; j; j = j->next, i++) {
        j->rc = rc[i] ? -1 : 0;
        j->err = rc[i];
    }
}

static void smtpd_commit_launch(struct smtpd_srv *srv);

/* One message of a batch is durable (or not): tell its client. */
static void
smtpd_commit_reply(struct smtpd_job *j)
{
    struct smtpd_sess *s = j->s;

    s->jobs--;
    if (s->dead && s->jobs == 0)
        ev_idle_start(s->srv->loop, &s->srv->reap);
    if (j->rc == 0) {
        spool_free(j->sf);
    } else {
        log_warning("%s: queue file commit failed: %s", j->id,
                    strerror(j->err ? j->err : EIO));
        smtpd_drop_file(s->srv, j->sf);
    }
    if (!s->dead) {
        s->waiting = 0;
        if (j->rc == 0)
            smtpd_reply(s, "250 2.0.0 Ok: queued as %s", j->id);
        else
            smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        s->qid[0] = '\0';
        smtpd_txn_end(s, 0);
        smtpd_enter(s, smtpd_idle_state(s));
        smtpd_process(s);
    }
    smtpd_job_free(j);
}

static void
smtpd_commit_done(void *arg)
{
    struct smtpd_batch *b = arg;
    struct smtpd_srv *srv = b->srv;
    struct smtpd_job *j, *next;
    /* "N" and the IDs of the new files in incoming/: the queue manager
     * takes them without a scan (SMTPD_COMMIT_BATCH IDs fit) */
    char note[2 + SMTPD_COMMIT_BATCH * (SPOOL_ID_LEN + 1)];
    size_t nl = 1;

    note[0] = 'N';
    for (j = b->jobs; j; j = j->next)
        if (j->rc == 0 && strcmp(j->queue, "incoming") == 0
            && nl + 1 + SPOOL_ID_LEN < sizeof(note)) {
            note[nl++] = ' ';
            memcpy(note + nl, j->id, SPOOL_ID_LEN);
            nl += SPOOL_ID_LEN;
        }
    note[nl] = '\0';
    if (nl > 1)
        spool_notify(b->jobs->qdir, note);
    for (j = b->jobs; j; j = next) {
        next = j->next;
        smtpd_commit_reply(j);
    }
    srv->commit_busy--;
    srv->commit_flight_big -= b->big;
    free(b);
    smtpd_commit_launch(srv);
}

/* Hand what waits to the pool as one batch. With a batch in flight,
 * what waits goes with the next one (the completion launches it), unless
 * a big file waits or is in flight: then another batch starts beside it,
 * up to commit_max. */
static void
smtpd_commit_launch(struct smtpd_srv *srv)
{
    struct smtpd_batch *b;
    struct smtpd_job *j, **tail;

    if (srv->commit_head == NULL || srv->commit_busy >= srv->commit_max)
        return;
    if (srv->commit_busy > 0 && srv->commit_wait_big == 0
        && srv->commit_flight_big == 0)
        return;
    if (srv->stopping) { /* the pool is going: the clients are gone */
        while ((j = srv->commit_head) != NULL) {
            srv->commit_head = j->next;
            j->rc = -1;
            j->err = ESHUTDOWN;
            smtpd_commit_reply(j);
        }
        srv->commit_tail = &srv->commit_head;
        srv->commit_wait_big = 0;
        return;
    }
    b = xcalloc(1, sizeof(*b));
    b->srv = srv;
    tail = &b->jobs;
    while ((j = srv->commit_head) != NULL && b->n < SMTPD_COMMIT_BATCH) {
        srv->commit_head = j->next;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        b->n++;
        if (j->size >= SMTPD_COMMIT_BIG) {
            b->big = 1;
            srv->commit_wait_big--;
        }
    }
    if (srv->commit_head == NULL)
        srv->commit_tail = &srv->commit_head;
    srv->commit_flight_big += b->big;
    srv->commit_busy++;
    log_debug("group commit: %zu file(s)%s, %d batch(es) in flight", b->n,
              b->big ? ", a big one" : "", srv->commit_busy);
    wpool_submit(srv->pool, smtpd_commit_work, smtpd_commit_done, b);
}

/* On the loop: the queue file of j could not be written (what, why: the
 * log line); it goes, and the client gets a 451 for the message. */
static void
smtpd_write_failed(struct smtpd_sess *s, struct smtpd_job *j, const char *what,
                   const char *why)
{
    log_warning("%s: queue file %s: %s", j->id, what, why);
    smtpd_drop_file(s->srv, j->sf);
    smtpd_job_free(j);
    s->waiting = 0;
    smtpd_reply(s, "451 4.3.0 Error: queue file write error");
    smtpd_txn_end(s, 0);
    smtpd_enter(s, smtpd_idle_state(s));
}

/* On the loop: write the envelope and queue the file for a group commit. */
static void
smtpd_commit(struct smtpd_sess *s, struct smtpd_job *j)
{
    struct smtpd_srv *srv = s->srv;

    if (spool_finish(j->sf, j->env) < 0) {
        smtpd_write_failed(s, j, "write error", strerror(errno));
        return;
    }
    smtpd_enter(s, SMTPD_S_COMMIT);
    s->waiting = 1;
    s->jobs++;
    j->next = NULL;
    j->size = spool_content_size(j->sf);
    if (j->size >= SMTPD_COMMIT_BIG)
        srv->commit_wait_big++;
    if (srv->commit_tail == NULL)
        srv->commit_tail = &srv->commit_head;
    *srv->commit_tail = j;
    srv->commit_tail = &j->next;
    smtpd_commit_launch(srv);
}

static int
smtpd_rewrite_out(void *arg, const void *p, size_t n)
{
    struct smtpd_job *j = arg;

    return spool_write(j->nsf, p, n);
}

static void
smtpd_rewrite_work(void *arg)
{
    struct smtpd_job *j = arg;

    j->nsf = spool_create_as(j->qdir, j->id, j->errbuf);
    if (j->nsf == NULL) {
        j->rc = -1;
        return;
    }
    errno = 0;
    j->rc = filter_mods_rewrite(j->mods, spool_fd(j->sf), j->off, j->len,
                                smtpd_rewrite_out, j);
    j->err = errno;
    if (j->rc < 0)
        buf_sets(j->errbuf, strerror(j->err ? j->err : EIO));
}

static void
smtpd_rewrite_done(void *arg)
{
    struct smtpd_job *j = arg;
    struct smtpd_sess *s = j->s;

    s->jobs--;
    if (s->dead && s->jobs == 0)
        ev_idle_start(s->srv->loop, &s->srv->reap);
    smtpd_drop_file(s->srv, j->sf);
    j->sf = j->nsf;
    j->nsf = NULL;
    if (s->dead) {
        if (j->rc < 0)
            log_warning("%s: queue file rewrite failed: %s", j->id,
                        buf_data(j->errbuf));
        smtpd_drop_file(s->srv, j->sf);
        smtpd_job_free(j);
        return;
    }
    if (j->rc < 0) {
        smtpd_write_failed(s, j, "rewrite failed", buf_data(j->errbuf));
        smtpd_process(s);
        return;
    }
    smtpd_commit(s, j);
    if (!s->waiting)
        smtpd_process(s);
}

static void
smtpd_eom_done(struct smtpd_sess *s, const struct filter_result *r)
{
    enum filter_verdict v = r->verdict;
    const char *text = r->text;
    const struct filter_mod *m;
    struct smtpd_job *j;
    struct buf *b;
    size_t old;
    char *why = NULL;
    int rc, err;

    s->txn_filters = 0; /* EOM delivered: the filters are done */
    if (s->txn_verdict > v) {
        v = s->txn_verdict;
        text = s->txn_text;
    }
    switch (v) {
    case FILTER_REJECT:
    case FILTER_TEMPFAIL:
        smtpd_reject(s, r, "END-OF-MESSAGE", s->rcpts[0]);
        smtpd_txn_end(s, 0);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    case FILTER_DISCARD:
        b = buf_new(128, LOG_LINE_MAX);
        buf_puts(b, text && *text ? text : "discarded");
        smtpd_log_event(s, smtpd_event(r, "discard"), "END-OF-MESSAGE",
                        buf_data(b), s->rcpts[0]);
        buf_free(b);
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
        smtpd_txn_end(s, 0);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    case FILTER_HOLD:
        b = buf_new(128, LOG_LINE_MAX);
        buf_puts(b, text && *text ? text : "held");
        smtpd_log_event(s, smtpd_event(r, "hold"), "END-OF-MESSAGE",
                        buf_data(b), s->rcpts[0]);
        buf_free(b);
        break;
    case FILTER_CONTINUE:
    case FILTER_ACCEPT:
        break;
    }
    j = xcalloc(1, sizeof(*j));
    j->s = s;
    j->qdir = xstrdup(s->conf->qdir);
    snprintf(j->id, sizeof(j->id), "%s", s->qid);
    j->queue = v == FILTER_HOLD ? "hold" : "incoming";
    j->env = smtpd_env_new(
        s, r->mods, v == FILTER_HOLD ? (text && *text ? text : "held") : NULL,
        &why);
    j->sf = s->sf;
    s->sf = NULL;         /* the job owns it now */
    if (j->env == NULL) { /* Postfix's cleanup says it so */
        log_warning("%s: %s -- message not accepted, try again later", j->id,
                    why);
        free(why);
        smtpd_drop_file(s->srv, j->sf);
        smtpd_job_free(j);
        smtpd_reply(s, "451 4.6.0 Alias expansion error");
        smtpd_txn_end(s, 0);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    }
    if (j->env->nrcpt == 0) {
        log_info("%s: discard: END-OF-MESSAGE from %s: no recipients left",
                 j->id, s->ident);
        smtpd_drop_file(s->srv, j->sf);
        smtpd_job_free(j);
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
        smtpd_txn_end(s, 0);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    }
    if (filter_mods_have_content(r->mods)) {
        struct filter_mod **tail = &j->mods;

        /* Header fields for the top go into the room before the content;
         * other header changes replace the header in place when the new
         * one fits in that room and the old one's place (a page-cache
         * read of at most SMTPD_HEAD_READ bytes of what was just written,
         * as the filters read it); a body replacement or a header too big
         * for that needs a rewritten copy of the message, in the pool. */
        b = buf_new(256, BUF_NOCAP); /* bounded: the read, the mods' cap */
        if (filter_mods_top_bytes(r->mods, b) == 0
            && spool_prepend(j->sf, buf_data(b), buf_len(b)) == 0) {
            buf_free(b);
            smtpd_commit(s, j);
            return;
        }
        buf_reset(b);
        rc = filter_mods_new_head(
            r->mods, spool_fd(j->sf), spool_content_off(j->sf),
            spool_content_size(j->sf), SMTPD_HEAD_READ, b, &old);
        if (rc == 0
            && spool_replace_head(j->sf, old, buf_data(b), buf_len(b)) < 0)
            rc = errno == ENOSPC ? 1 : -1; /* ENOSPC: the file as it was */
        err = errno;
        buf_free(b);
        if (rc == 0) {
            smtpd_commit(s, j);
            return;
        }
        if (rc < 0) {
            /* a read error or a bad header name (a rewrite would fail
             * alike), or a head half written */
            smtpd_write_failed(s, j, "rewrite failed", strerror(err));
            return;
        }

        for (m = r->mods; m; m = m->next) {
            *tail = filter_mod_new(m->type, m->name, m->value, m->len, m->index,
                                   m->args);
            tail = &(*tail)->next;
        }
        j->off = spool_content_off(j->sf);
        j->len = spool_content_size(j->sf);
        j->errbuf = buf_new(128, 1024);
        smtpd_enter(s, SMTPD_S_COMMIT);
        s->waiting = 1;
        s->jobs++;
        wpool_submit(s->srv->pool, smtpd_rewrite_work, smtpd_rewrite_done, j);
        return;
    }
    smtpd_commit(s, j);
}

static void smtpd_eod_check(struct smtpd_sess *s);
static void smtpd_eom_go(struct smtpd_sess *s);

static void
smtpd_data_end(struct smtpd_sess *s)
{
    int fl = smtpd_data_flags(s->dec);

    s->last_cmd = "END-OF-MESSAGE";
    if (fl & SMTPD_DATA_TOO_BIG) {
        smtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
        smtpd_log_event(s, "reject", "END-OF-MESSAGE",
                        "552 5.3.4 Message size exceeds fixed limit",
                        s->rcpts[0]);
        smtpd_txn_end(s, 1);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    }
    /* The content out of the write-behind buffer: the filters read the
     * file from here on. */
    if (!s->write_err && s->sf != NULL && spool_content_done(s->sf) < 0)
        s->write_err = errno ? errno : EIO;
    if (s->write_err) {
        log_warning("%s: queue file write error: %s", s->qid,
                    strerror(s->write_err));
        smtpd_reply(s, "451 4.3.0 Error: queue file write error");
        smtpd_txn_end(s, 1);
        smtpd_enter(s, smtpd_idle_state(s));
        return;
    }
    smtpd_enter(s, SMTPD_S_FILTER);
    if (smtpd_check_eod_used(s->conf->check)) {
        smtpd_q_clear(s);
        smtpd_eod_check(s);
        return;
    }
    smtpd_eom_go(s);
}

/* The filters' end of message. */
static void
smtpd_eom_go(struct smtpd_sess *s)
{
    s->env.spool_fd = spool_fd(s->sf);
    s->env.spool_off = spool_content_off(s->sf);
    s->env.spool_len = spool_content_size(s->sf);
    smtpd_filter(s, FILTER_EOM, NULL, smtpd_eom_done);
}

/* smtpd_end_of_data_restrictions, as Postfix runs them: after the final
 * dot, before the message is handed on (here: before the filters'
 * verdict, so a refused message is not scanned). */
static void
smtpd_eod_check(struct smtpd_sess *s)
{
    struct smtpd_check_res res;

    if (!smtpd_check_eval(s, NULL, 1, smtpd_eod_check, &res))
        return;
    if (res.verdict != SMTPD_CHECK_REJECT && buf_len(res.prepend) > 0)
        log_warning("%s: PREPEND in smtpd_end_of_data_restrictions: the "
                    "header is written already; ignored",
                    s->qid);
    if (smtpd_check_msg_outcome(s, "END-OF-MESSAGE", &res)) {
        buf_free(res.text);
        smtpd_txn_end(s, 1);
        if (!s->closing)
            smtpd_enter(s, smtpd_idle_state(s));
        return;
    }
    buf_free(res.text);
    smtpd_eom_go(s);
}

/* Feed buffered input to the decoder: 0 go on, -1 stop. */
static int
smtpd_data_step(struct smtpd_sess *s)
{
    ssize_t n;
    int done = 0;

    n = smtpd_data_feed(s->dec, buf_data(s->in), buf_len(s->in), &done);
    if (n < 0) {
        smtpd_bare(s,
                   smtpd_data_flags(s->dec) & SMTPD_DATA_BARE_CR ? "CR" : "LF");
        return -1;
    }
    buf_consume(s->in, (size_t) n);
    if (!done)
        return -1;
    smtpd_data_end(s);
    return 0;
}

/* Handle what is buffered until a command must wait or input runs out. */
static void
smtpd_process(struct smtpd_sess *s)
{
    if (s->in_process || s->dead)
        return;
    s->in_process = 1;
    while (!s->dead && !s->closing && !s->waiting && !s->sleeping
           && !s->tls_start && !s->tls_hs && buf_len(s->out) < SMTPD_OUT_HIGH) {
        if (s->state == SMTPD_S_DATA) {
            if (buf_len(s->in) == 0 || smtpd_data_step(s) < 0)
                break;
            continue;
        }
        if (!(ST(s->state) & ST_CMD))
            break;
        if (s->srv->stopping) {
            smtpd_reply(s, "421 4.3.2 %s Service shutting down",
                        s->conf->myhostname);
            smtpd_finish(s);
            break;
        }
        if (s->errors >= s->conf->hard_limit) {
            log_info("too many errors after %s from %s", s->last_cmd, s->ident);
            smtpd_reply(s, "421 4.7.0 %s Error: too many errors",
                        s->conf->myhostname);
            smtpd_finish(s);
            break;
        }
        if (smtpd_next_line(s) < 0)
            break;
    }
    s->in_process = 0;
    if (s->dead)
        return;
    smtpd_flush(s);
    if (!s->dead)
        smtpd_update_io(s);
}

/*
 * Timers
 */

/* A timer ran out while the client could talk: end the transaction,
 * 421, close after the reply is out. */
static void
smtpd_timed_out(struct smtpd_sess *s)
{
    s->cur = SMTPD_NO_VERB;
    smtpd_txn_end(s, 1);
    smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->conf->myhostname);
    smtpd_finish(s);
    smtpd_flush(s);
}

static void
smtpd_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_sess *s = w->data;

    if (s->dead)
        return;
    if (s->tls_hs) { /* smtpd_starttls_timeout: nothing can be said */
        log_info("timeout after %s from %s", s->last_cmd, s->ident);
        smtpd_close(s);
        return;
    }
    if (s->waiting || s->backlog_paused) { /* our turn, not the client's */
        ev_timer_again(loop, w);
        return;
    }
    log_info("timeout after %s from %s", s->last_cmd, s->ident);
    if (s->closing) { /* the client does not read its replies */
        smtpd_close(s);
        return;
    }
    smtpd_timed_out(s);
}

static void
smtpd_total_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_sess *s = w->data;

    if (s->dead)
        return;
    log_info("timeout after %s from %s", s->last_cmd, s->ident);
    if (s->waiting || s->closing || s->tls_hs) {
        smtpd_close(s);
        return;
    }
    smtpd_timed_out(s);
}

static void
smtpd_sleep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_sess *s = w->data;

    if (s->dead)
        return;
    s->sleeping = 0;
    smtpd_process(s);
}

/*
 * Session life
 */

static void
smtpd_list_del(struct smtpd_sess **head, struct smtpd_sess *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void
smtpd_list_add(struct smtpd_sess **head, struct smtpd_sess *s)
{
    s->prev = NULL;
    s->next = *head;
    if (*head)
        (*head)->prev = s;
    *head = s;
}

static void
smtpd_log_disconnect(struct smtpd_sess *s)
{
    struct buf *b = buf_new(256, LOG_LINE_MAX);
    unsigned tot = 0, ok = 0;
    size_t i;

    buf_printf(b, "disconnect from %s", s->ident);
    for (i = 0; i < sizeof(smtpd_stat_order) / sizeof(smtpd_stat_order[0]);
         i++) {
        enum smtpd_verb v = smtpd_stat_order[i];

        if (s->cnt[v] == 0)
            continue;
        tot += s->cnt[v];
        ok += s->ok[v];
        if (s->ok[v] == s->cnt[v])
            buf_printf(b, " %s=%u", smtpd_verbs[v].stat, s->cnt[v]);
        else
            buf_printf(b, " %s=%u/%u", smtpd_verbs[v].stat, s->ok[v],
                       s->cnt[v]);
    }
    if (ok == tot)
        buf_printf(b, " commands=%u", tot);
    else
        buf_printf(b, " commands=%u/%u", ok, tot);
    log_info("%s", buf_data(b));
    buf_free(b);
}

/* Close the connection now; the memory goes at the next loop check. */
static void
smtpd_close(struct smtpd_sess *s)
{
    struct smtpd_srv *srv = s->srv;
    struct ev_loop *loop = srv->loop;

    if (s->dead)
        return;
    s->dead = 1;
    if (s->gated) {
        smtpd_gate_unlink(s);
        smtpd_gate_arm(srv);
    }
    if (s->data_slot)
        smtpd_gate_release(s);
    if (s->state != SMTPD_S_LOOKUP)
        smtpd_log_disconnect(s);
    for (size_t i = 0; i < s->nrbl; i++) /* no callback after this */
        if (s->rblq[i].q) {
            dns_cancel(s->rblq[i].q);
            s->rblq[i].q = NULL;
        }
    smtpd_q_clear(s); /* nor after this */
    /* a file owned by a pool job is not in s->sf */
    smtpd_drop_file(srv, s->sf);
    s->sf = NULL;
    ev_io_stop(loop, &s->rio);
    ev_io_stop(loop, &s->wio);
    ev_timer_stop(loop, &s->idle);
    ev_timer_stop(loop, &s->total);
    ev_timer_stop(loop, &s->sleep);
    if (s->tc.on && !s->tc.failed) {
        SSL_shutdown(s->tc.ssl); /* close_notify, if the socket takes it */
        ERR_clear_error();
    }
    if (s->tls_busy) {
        /* a handshake step in the pool still uses the socket: it fails
         * now, and smtpd_tls_done closes the descriptor (so its number
         * cannot go to another connection meanwhile) */
        shutdown(s->fd, SHUT_RDWR);
    } else {
        close(s->fd);
        s->fd = -1;
    }
    smtpd_sasl_free(s); /* no callback comes after this */
    smtpd_list_del(&srv->live, s);
    smtpd_list_add(&srv->dead, s);
    ev_idle_start(loop, &srv->reap);
    srv->nlive--;
    if ((srv->stopping || srv->draining) && srv->nlive == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void
smtpd_sess_free(struct smtpd_sess *s)
{
    size_t i;

    filter_sess_free(s->fs);
    SSL_free(s->tc.ssl);
    free(s->rbl);
    free(s->rblq);
    free(s->qv);
    free(s->rev_name);
    free(s->pend_prepend);
    buf_free(s->prepend);
    free(s->tls);
    smtpd_data_free(s->dec);
    spool_abort(s->sf);
    buf_free(s->in);
    buf_free(s->out);
    buf_free(s->line);
    buf_free(s->raw);
    free(s->helo);
    free(s->sender);
    free(s->body_type);
    for (i = 0; i < s->nrcpt; i++)
        free(s->rcpts[i]);
    free(s->rcpts);
    free(s->txn_text);
    free(s->pend_addr);
    free(s->pend_check_text);
    free(s->pend_body);
    free(s);
}

/* Free closed sessions no pool job refers to (runs outside callbacks). */
static void
smtpd_reap_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct smtpd_srv *srv = w->data;
    struct smtpd_sess *s = srv->dead, *next;

    for (; s; s = next) {
        next = s->next;
        if (s->jobs > 0)
            continue;
        smtpd_list_del(&srv->dead, s);
        smtpd_sess_free(s);
    }
    /* the ones still waiting for a job re-arm it when the job is back */
    ev_idle_stop(loop, w);
}

static void
smtpd_connect_done(struct smtpd_sess *s, const struct filter_result *r)
{
    const struct smtpd_conf *c = s->conf;
    const char *dsn, *text;
    int code;

    switch (r->verdict) {
    case FILTER_REJECT:
        smtpd_verdict_reply(r, &code, &dsn, &text);
        smtpd_reply_text(s, 554, "5.7.1", text);
        log_info("NOQUEUE: reject: CONNECT from %s: %s %s; proto=SMTP",
                 s->ident, c->soft_bounce ? "454 4.7.1" : "554 5.7.1",
                 smtpd_safe(s, 0, text));
        s->denied = 1;
        smtpd_enter(s, SMTPD_S_HELO);
        return;
    case FILTER_TEMPFAIL:
        smtpd_verdict_reply(r, &code, &dsn, &text);
        if (r->text == NULL || *r->text == '\0') {
            smtpd_reply(s,
                        "421 4.7.0 %s Service unavailable - try again "
                        "later",
                        c->myhostname);
            text = "Service unavailable - try again later";
        } else {
            dsn = r->dsn && r->dsn[0] == '4' ? r->dsn : "4.7.0";
            smtpd_reply_text(s, 421, dsn, text);
        }
        log_info("NOQUEUE: reject: CONNECT from %s: 421 %s %s; proto=SMTP",
                 s->ident, dsn, smtpd_safe(s, 0, text));
        smtpd_finish(s);
        return;
    case FILTER_CONTINUE:
    case FILTER_ACCEPT:
    case FILTER_HOLD:
    case FILTER_DISCARD:
        break;
    }
    smtpd_reply(s, "220 %s", c->banner);
    smtpd_enter(s, SMTPD_S_HELO);
}

/* A per-client rate limit, as Postfix's anvil counts it: counts this
 * event of kind, and 1 (after Postfix's warning) when it is over the
 * service's limit; clients in smtpd_client_event_limit_exceptions are
 * neither counted nor limited. */
static int
smtpd_rate_over(struct smtpd_sess *s, enum rate_kind kind)
{
    static const char *const what[RATE_KINDS] = {
        [RATE_CONN] = "Connection rate",
        [RATE_MAIL] = "Message delivery request rate",
        [RATE_RCPT] = "Recipient address rate",
        [RATE_AUTH] = "AUTH command rate",
        [RATE_NEWTLS] = "New TLS session rate",
    };
    long long limit = s->conf->rate_limit[kind];
    unsigned n;
    int full = 0;

    if (limit <= 0
        || lookup_net_match(s->conf->event_exc,
                            (const struct sockaddr *) &s->sa))
        return 0;
    n = rate_hit(s->srv->rates, s->conf->service, s->addr, kind,
                 ev_now(s->srv->loop), &full);
    if (full)
        log_warning("%zu clients already counted within "
                    "anvil_rate_time_unit: the rate limits do not count new "
                    "clients until older windows end",
                    rate_count(s->srv->rates));
    if ((long long) n <= limit)
        return 0;
    log_warning("%s limit exceeded: %u from %s for service %s", what[kind], n,
                s->ident, s->conf->service);
    return 1;
}

static int
smtpd_conn_count(struct smtpd_sess *s)
{
    struct smtpd_sess *o;
    int n = 0;

    for (o = s->srv->live; o; o = o->next)
        if (o->conf == s->conf && strcmp(o->addr, s->addr) == 0)
            n++;
    return n;
}

/* The client is known: limits, then CONNECT to the filters. */
static void
smtpd_connected(struct smtpd_sess *s)
{
    const struct smtpd_conf *c = s->conf;

    if (s->dead || --s->connect_wait > 0)
        return; /* the name or a DNS list is still being looked up */

    snprintf(s->ident, sizeof(s->ident), "%s[%s]", s->name, s->addr);
    s->env.client_name = s->name;
    log_info("connect from %s", s->ident);
    smtpd_enter(s, SMTPD_S_GREET);
    if (c->tls_wrapper && !s->tc.on) { /* TLS first, then the rest */
        if (c->tls == NULL) {
            smtpd_close(s); /* said at start: TLS support is disabled */
            return;
        }
        smtpd_tls_begin(s, smtpd_greet);
        return;
    }
    smtpd_greet(s);
}

/* Limits, then CONNECT to the filters (after the handshake in wrapper
 * mode). */
static void
smtpd_greet(struct smtpd_sess *s)
{
    const struct smtpd_conf *c = s->conf;
    const struct sockaddr *sa = (const struct sockaddr *) &s->sa;
    int n;

    s->forbid_bare = c->forbid_bare && !lookup_net_match(c->bare_exc, sa);
    smtpd_enter(s, SMTPD_S_GREET);
    if (c->conn_limit > 0 && (n = smtpd_conn_count(s)) > c->conn_limit
        && !lookup_net_match(c->event_exc, sa)) {
        log_warning("Connection concurrency limit exceeded: %d from %s for "
                    "service %s",
                    n, s->ident, c->service);
        smtpd_reply(s, "421 4.7.0 %s Error: too many connections from %s",
                    c->myhostname, s->addr);
        smtpd_finish(s);
        smtpd_flush(s);
        return;
    }
    if (smtpd_rate_over(s, RATE_CONN)) {
        smtpd_reply(s, "421 4.7.0 %s Error: too many connections from %s",
                    c->myhostname, s->addr);
        smtpd_finish(s);
        smtpd_flush(s);
        return;
    }
    s->fs = filter_sess_new(c->chain, &s->env);
    filter_set_drain(s->fs, smtpd_drain_cb, s);
    smtpd_filter(s, FILTER_CONNECT, NULL, smtpd_connect_done);
}

struct smtpd_lookup {
    struct smtpd_sess *s;
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[NET_ADDR_MAX];
    char name[NI_MAXHOST];     /* confirmed by the forward lookup */
    char rev_name[NI_MAXHOST]; /* what the reverse lookup said */
    int code, rev_code;        /* SMTPD_CHECK_NAME_* */
    int final; /* a definite answer (a name, or no name): may be cached */
};

/* Client names found by the lookups, kept SMTPD_NAME_TTL seconds, so a
 * client that connects again and again (a relaying MTA, a submission
 * client) costs one reverse and forward lookup a minute instead of one
 * per connection. Direct-mapped by a hash of the address: a collision
 * replaces the older entry. Temporary failures are not kept. */
#define SMTPD_NAME_SLOTS 1024
#define SMTPD_NAME_TTL   60.

struct smtpd_name {
    char addr[NET_ADDR_MAX];
    char name[NI_MAXHOST];
    char rev_name[NI_MAXHOST];
    int code, rev_code; /* SMTPD_CHECK_NAME_* */
    ev_tstamp expires;
};

static struct smtpd_name *smtpd_names; /* loop thread only */

static struct smtpd_name *
smtpd_name_slot(const char *addr)
{
    if (smtpd_names == NULL)
        smtpd_names = xcalloc(SMTPD_NAME_SLOTS, sizeof(*smtpd_names));
    return &smtpd_names[hash_fnv1a(HASH_FNV_INIT, addr) % SMTPD_NAME_SLOTS];
}

/* The cached names of addr, or NULL. */
static const struct smtpd_name *
smtpd_name_get(struct ev_loop *loop, const char *addr)
{
    struct smtpd_name *n = smtpd_name_slot(addr);

    if (strcmp(n->addr, addr) != 0 || n->expires <= ev_now(loop))
        return NULL;
    return n;
}

static void
smtpd_name_put(struct ev_loop *loop, const struct smtpd_lookup *l)
{
    struct smtpd_name *n = smtpd_name_slot(l->addr);

    snprintf(n->addr, sizeof(n->addr), "%s", l->addr);
    snprintf(n->name, sizeof(n->name), "%s", l->name);
    snprintf(n->rev_name, sizeof(n->rev_name), "%s", l->rev_name);
    n->code = l->code;
    n->rev_code = l->rev_code;
    n->expires = ev_now(loop) + SMTPD_NAME_TTL;
}

/* A session's names: the confirmed one in s->name, the reverse one
 * kept only when it differs. */
static void
smtpd_names_set(struct smtpd_sess *s, const char *name, const char *rev,
                int code, int rev_code)
{
    snprintf(s->name, sizeof(s->name), "%s", name);
    free(s->rev_name);
    s->rev_name = strcmp(rev, name) != 0 ? xstrdup(rev) : NULL;
    s->name_code = code;
    s->rev_code = rev_code;
}

static int
smtpd_hostname_ok(const char *n)
{
    size_t len = strlen(n);

    if (len == 0 || len > 255 || n[0] == '.' || n[0] == '-')
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z')
              || (*n >= '0' && *n <= '9') || *n == '-' || *n == '.'
              || *n == '_'))
            return 0;
    return 1;
}

/* Worker: reverse lookup, confirmed by a forward lookup. */
static void
smtpd_lookup_work(void *arg)
{
    struct smtpd_lookup *l = arg;
    struct addrinfo hints, *res = NULL, *ai;
    char host[NI_MAXHOST], a[NET_ADDR_MAX];
    char *p;
    int rc;

    snprintf(l->name, sizeof(l->name), "unknown");
    snprintf(l->rev_name, sizeof(l->rev_name), "unknown");
    rc = getnameinfo((struct sockaddr *) &l->sa, l->salen, host, sizeof(host),
                     NULL, 0, NI_NAMEREQD);
    if (rc != 0 || !smtpd_hostname_ok(host)) {
        l->final = rc == 0 || rc == EAI_NONAME;
        l->code = l->rev_code =
            l->final ? SMTPD_CHECK_NAME_NONE : SMTPD_CHECK_NAME_FAILED;
        return;
    }
    for (p = host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char) (*p - 'A' + 'a');
    snprintf(l->rev_name, sizeof(l->rev_name), "%s", host);
    l->rev_code = SMTPD_CHECK_NAME_FOUND;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        l->final = rc == EAI_NONAME;
        l->code = l->final ? SMTPD_CHECK_NAME_NONE : SMTPD_CHECK_NAME_FAILED;
        return;
    }
    l->final = 1;
    l->code = SMTPD_CHECK_NAME_NONE; /* unless an address matches: forged */
    for (ai = res; ai; ai = ai->ai_next) {
        if (strcmp(net_ntop(ai->ai_addr, a, sizeof(a), NULL), l->addr) == 0) {
            snprintf(l->name, sizeof(l->name), "%s", host);
            l->code = SMTPD_CHECK_NAME_FOUND;
            break;
        }
    }
    freeaddrinfo(res);
}

static void
smtpd_lookup_done(void *arg)
{
    struct smtpd_lookup *l = arg;
    struct smtpd_sess *s = l->s;

    s->jobs--;
    if (s->dead && s->jobs == 0)
        ev_idle_start(s->srv->loop, &s->srv->reap);
    if (l->final)
        smtpd_name_put(s->srv->loop, l);
    if (!s->dead) {
        smtpd_names_set(s, l->name, l->rev_name, l->code, l->rev_code);
        smtpd_connected(s);
    }
    free(l);
}

static void
smtpd_rbl_cb(void *arg, const struct dns_answer *a)
{
    struct smtpd_rblq *rq = arg;
    struct smtpd_sess *s = rq->s;
    struct smtpd_check_rbl *r = &s->rbl[rq->i];

    rq->q = NULL;
    if (r->listed == 1) { /* the TXT record's answer */
        if (a->status == DNS_OK)
            smtpd_rbl_txt(a, r->txt, sizeof(r->txt));
        smtpd_connected(s);
        return;
    }
    smtpd_dnsxl_a(r, a, s->ident, rq->name);
    if (r->listed == 1) {
        rq->q = dns_lookup(s->srv->dns, rq->name, DNS_T_TXT, smtpd_rbl_cb, rq);
        return;
    }
    smtpd_connected(s);
}

/* The client's DNS list lookups (reject_rbl_client, permit_dnswl_client)
 * start with the session: the lists have the answers when they run, and
 * nothing at all is asked when none of them names a DNS list. */
static void
smtpd_rbl_start(struct smtpd_sess *s)
{
    const struct smtpd_conf *c = s->conf;
    struct smtpd_srv *srv = s->srv;
    size_t n = smtpd_check_rbl_count(c->check);

    if (n == 0)
        return;
    s->nrbl = n;
    s->rbl = xcalloc(n, sizeof(*s->rbl));
    s->rblq = xcalloc(n, sizeof(*s->rblq));
    for (size_t i = 0; i < n; i++) {
        struct smtpd_rblq *rq = &s->rblq[i];

        rq->s = s;
        rq->i = i;
        s->rbl[i].listed = -1;
        if (srv->dns == NULL
            || smtpd_check_rbl_name((const struct sockaddr *) &s->sa,
                                    smtpd_check_rbl_domain(c->check, i),
                                    rq->name, sizeof(rq->name))
                   < 0)
            continue;
        s->connect_wait++;
        rq->q = dns_lookup(srv->dns, rq->name, DNS_T_A, smtpd_rbl_cb, rq);
    }
}

static void
smtpd_sess_new(struct smtpd_lsn *lsn, int fd, const struct sockaddr *sa,
               socklen_t salen)
{
    struct smtpd_srv *srv = lsn->srv;
    const struct smtpd_conf *c = &lsn->conf;
    struct smtpd_sess *s = xcalloc(1, sizeof(*s));
    struct sockaddr_storage ls;
    socklen_t lslen = sizeof(ls);
    struct smtpd_lookup *l;
    const struct smtpd_name *cached;

    s->srv = srv;
    s->conf = c;
    s->fd = fd;
    s->state = SMTPD_S_LOOKUP;
    s->cur = SMTPD_NO_VERB;
    s->last_cmd = "CONNECT";
    memcpy(&s->sa, sa, salen);
    s->salen = salen;
    net_ntop(sa, s->addr, sizeof(s->addr), &s->port);
    if (lsn->fixed) {
        memcpy(s->laddr, lsn->laddr, sizeof(s->laddr));
        s->lport = lsn->lport;
    } else if (getsockname(fd, (struct sockaddr *) &ls, &lslen) == 0)
        net_ntop((struct sockaddr *) &ls, s->laddr, sizeof(s->laddr),
                 &s->lport);
    else
        snprintf(s->laddr, sizeof(s->laddr), "unknown");
    snprintf(s->name, sizeof(s->name), "unknown");
    s->name_code = s->rev_code =
        SMTPD_CHECK_NAME_NONE; /* until a lookup finds one */
    snprintf(s->ident, sizeof(s->ident), "%s[%s]", s->name, s->addr);
    s->in = buf_new(1024, (size_t) c->line_limit + 2 + SMTPD_IN_EXTRA);
    s->out = buf_new(1024, SMTPD_OUT_MAX);
    s->line =
        buf_new(512, (size_t) (c->sasl && c->sasl_resp_limit > c->line_limit
                                   ? c->sasl_resp_limit
                                   : c->line_limit)
                         + 2);
    s->raw = buf_new(512, (size_t) c->line_limit + 2);
    s->env.client_sa = (const struct sockaddr *) &s->sa;
    s->env.client_addr = s->addr;
    s->env.client_port = s->port;
    s->env.client_name = s->name;
    s->env.server_addr = s->laddr;
    s->env.server_port = s->lport;
    s->env.spool_fd = -1;
    smtpd_env_sync(s);
    ev_io_init(&s->rio, smtpd_read_cb, fd, EV_READ);
    ev_io_init(&s->wio, smtpd_write_cb, fd, EV_WRITE);
    s->rio.data = s->wio.data = s;
    ev_init(&s->idle, smtpd_idle_cb);
    s->idle.repeat = c->timeout;
    s->idle.data = s;
    ev_timer_again(srv->loop, &s->idle);
    ev_timer_init(&s->total, smtpd_total_cb, c->daemon_timeout, 0.);
    s->total.data = s;
    ev_timer_start(srv->loop, &s->total);
    ev_timer_init(&s->sleep, smtpd_sleep_cb, 1., 0.);
    s->sleep.data = s;
    smtpd_list_add(&srv->live, s);
    srv->nlive++;
    s->connect_wait = 1; /* the name (or none); smtpd_rbl_start adds */
    smtpd_rbl_start(s);
    if (!c->peername_lookup) {
        smtpd_connected(s);
        return;
    }
    if ((cached = smtpd_name_get(srv->loop, s->addr)) != NULL) {
        smtpd_names_set(s, cached->name, cached->rev_name, cached->code,
                        cached->rev_code);
        smtpd_connected(s);
        return;
    }
    l = xcalloc(1, sizeof(*l));
    l->s = s;
    memcpy(&l->sa, sa, salen);
    l->salen = salen;
    snprintf(l->addr, sizeof(l->addr), "%s", s->addr);
    s->jobs++;
    wpool_submit(srv->pool, smtpd_lookup_work, smtpd_lookup_done, l);
}

/*
 * Listeners and signals
 */

static void
smtpd_accept_on(struct smtpd_srv *srv, int on)
{
    size_t i;

    for (i = 0; i < srv->nlsn; i++) {
        if (on)
            ev_io_start(srv->loop, &srv->lsn[i].io);
        else
            ev_io_stop(srv->loop, &srv->lsn[i].io);
    }
}

static void
smtpd_accept_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_srv *srv = w->data;

    if (!srv->stopping && !srv->draining)
        smtpd_accept_on(srv, 1);
}

/* What every connection to l shares, found out once instead of per
 * connection: TCP_NODELAY set on a listening TCP socket is inherited by
 * the sockets accept() returns (Linux), and the local address of a
 * connection to a listener bound to one address is that address. */
static void
smtpd_lsn_prepare(struct smtpd_lsn *l)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int on = 1, any;

    if (getsockname(l->fd, (struct sockaddr *) &ss, &sl) < 0
        || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return;
    l->nodelay =
        setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == 0;
    if (ss.ss_family == AF_INET)
        any =
            ((struct sockaddr_in *) &ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    else
        any =
            IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *) &ss)->sin6_addr);
    if (any)
        return;
    net_ntop((struct sockaddr *) &ss, l->laddr, sizeof(l->laddr), &l->lport);
    l->fixed = 1;
}

static void
smtpd_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct smtpd_lsn *lsn = w->data;
    struct smtpd_srv *srv = lsn->srv;
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd;

    for (;;) {
        sl = sizeof(ss);
        fd = accept4(lsn->fd, (struct sockaddr *) &ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (!lsn->nodelay
                && (ss.ss_family == AF_INET || ss.ss_family == AF_INET6))
                net_nodelay(fd);
            smtpd_sess_new(lsn, fd, (struct sockaddr *) &ss, sl);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            log_warning("accept: %s: not accepting for a second",
                        strerror(errno));
            smtpd_accept_on(srv, 0);
            ev_timer_set(&srv->accept_pause, 1., 0.);
            ev_timer_start(loop, &srv->accept_pause);
            return;
        default:
            log_warning("accept: %s", strerror(errno));
            return;
        }
    }
}

static void
smtpd_grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_srv *srv = w->data;

    while (srv->live)
        smtpd_close(srv->live);
    ev_break(loop, EVBREAK_ALL);
}

/* Stop: idle sessions get 421 now, busy ones after their command; what
 * is left after SMTPD_GRACE is closed. */
static void
smtpd_shutdown(struct smtpd_srv *srv)
{
    struct ev_loop *loop = srv->loop;
    struct smtpd_sess *s, *next;

    if (srv->stopping)
        return;
    srv->stopping = 1;
    ev_timer_stop(loop, &srv->drain);
    smtpd_accept_on(srv, 0);
    ev_timer_stop(loop, &srv->accept_pause);
    ev_timer_stop(loop, &srv->gate_timer);
    for (s = srv->live; s; s = next) {
        next = s->next;
        if (s->gated) { /* its DATA is answered with the 421 */
            smtpd_gate_unlink(s);
            s->waiting = 0;
        }
        if (s->waiting || s->closing)
            continue; /* finishes its command, then gets the 421 */
        if (s->state == SMTPD_S_LOOKUP) {
            smtpd_close(s);
            continue;
        }
        s->cur = SMTPD_NO_VERB;
        s->sleeping = 0;
        smtpd_txn_end(s, 1);
        smtpd_reply(s, "421 4.3.2 %s Service shutting down",
                    s->conf->myhostname);
        smtpd_finish(s);
        smtpd_flush(s);
    }
    if (srv->nlive == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&srv->grace, SMTPD_GRACE, 0.);
    ev_timer_start(loop, &srv->grace);
}

static void
smtpd_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct smtpd_srv *srv = w->data;

    if (srv->stopping)
        return;
    log_info("terminating on signal %d", w->signum);
    smtpd_shutdown(srv);
}

/*
 * SIGHUP (a reload): a new front process with the new configuration
 * already accepts on the same sockets. This one stops accepting and lets
 * its sessions end on their own, with the configuration (and filters)
 * they started with: no transaction fails because of a reload. Draining
 * is bounded: after SMTPD_DRAIN_MAX the rest get the shutdown treatment.
 */
static void
smtpd_drain_start_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct smtpd_srv *srv = w->data;

    if (srv->stopping || srv->draining)
        return;
    srv->draining = 1;
    smtpd_accept_on(srv, 0);
    ev_timer_stop(loop, &srv->accept_pause);
    log_info("reload: no new connections here; %zu session(s) finish with "
             "the old configuration",
             srv->nlive);
    if (srv->nlive == 0) {
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&srv->drain, SMTPD_DRAIN_MAX, 0.);
    ev_timer_start(loop, &srv->drain);
}

static void
smtpd_drain_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct smtpd_srv *srv = w->data;

    log_info("reload: %zu old session(s) still open after %.0f s: closing",
             srv->nlive, SMTPD_DRAIN_MAX);
    smtpd_shutdown(srv);
}

/* sluice_data_concurrency_limit: negative (-1) = SMTPD_GATE_PER_WORKER per
 * end-of-data worker of the chain (the in-process scanner's threads), no
 * limit without them. Fewer held the scan threads' queue so short that
 * they idled while clients sent the next messages (4 per thread cost 18%
 * of the throughput at 100 sessions, see docs/PERFORMANCE.md). */
static int
smtpd_data_limit(const struct cf *cf, const struct smtpd_srv *srv)
{
    long long v = cf_int(cf, "sluice_data_concurrency_limit");
    int w;

    if (v < 0) {
        w = filter_chains_workers(srv->chains, srv->nchains);
        v = (long long) SMTPD_GATE_PER_WORKER * w;
    }
    if (v > 100000)
        v = 100000;
    if (v > 0)
        log_info("DATA admission: at most %lld session(s) at once from DATA "
                 "to the end-of-data verdict",
                 v);
    return (int) v;
}

/* A client for each policy server the services' restrictions name (their
 * host names resolved now, before the loop serves), with main.cf's
 * smtpd_policy_service_* settings or the ones of its "{ ... }". */
static void
smtpd_policy_start(struct smtpd_srv *srv, const struct cf *cf)
{
    for (size_t i = 0; i < srv->nlsn; i++) {
        const struct smtpd_check *c = srv->lsn[i].conf.check;

        for (size_t k = 0; k < smtpd_check_policy_count(c); k++) {
            const char *spec = smtpd_check_policy_server(c, k);
            char server[SMTPD_CHECK_KEY_MAX];
            struct smtpd_pol *sp;
            struct policy_conf pc;
            struct buf *err;
            struct cf *o;
            size_t j;

            for (j = 0; j < srv->npolicy; j++)
                if (strcmp(srv->policy[j].spec, spec) == 0)
                    break;
            if (j < srv->npolicy)
                continue;
            srv->policy = xrealloc(srv->policy,
                                   (srv->npolicy + 1) * sizeof(*srv->policy));
            sp = &srv->policy[srv->npolicy++];
            memset(sp, 0, sizeof(*sp));
            sp->spec = xstrdup(spec);
            err = buf_new(128, 4096);
            o = smtpd_check_policy_cf(cf, spec, server, sizeof(server), err);
            if (o != NULL) {
                pc.timeout =
                    (double) cf_time(o, "smtpd_policy_service_timeout");
                pc.max_idle =
                    (double) cf_time(o, "smtpd_policy_service_max_idle");
                pc.max_ttl =
                    (double) cf_time(o, "smtpd_policy_service_max_ttl");
                pc.request_limit =
                    cf_int(o, "smtpd_policy_service_request_limit");
                pc.try_limit = cf_int(o, "smtpd_policy_service_try_limit");
                pc.retry_delay =
                    (double) cf_time(o, "smtpd_policy_service_retry_delay");
                if (spec[0] == '{' && strstr(spec, "policy_context"))
                    sp->context = xstrdup(
                        cf_str(o, "smtpd_policy_service_policy_context"));
                sp->p = policy_new(srv->loop, server,
                                   cf_str(cf, "queue_directory"), &pc, err);
                cf_free(o);
            }
            if (sp->p == NULL) /* its requests get the default action */
                log_warning("check_policy_service %s: %s", spec, buf_data(err));
            buf_free(err);
        }
    }
    /* The verify service, for reject_unverified_* in a list or in an
     * access table's value: nothing is connected before a question. The
     * queue manager answers from memory at once: a short timeout; a
     * connection is kept while it is used. */
    {
        struct policy_conf pc = {10.0, 300.0, 1000.0, 0, 2, 1.0};
        struct buf *err = buf_new(128, 4096);

        srv->verify = policy_new(srv->loop, "unix:public/verify",
                                 cf_str(cf, "queue_directory"), &pc, err);
        if (srv->verify == NULL)
            log_warning("verify service: %s", buf_data(err));
        buf_free(err);
    }
}

int
smtpd_run(const struct cf *cf, struct smtpd_listener *ls, size_t n)
{
    struct smtpd_srv srv;
    struct sigaction sa;
    size_t i, k;
    long long nthr;

    memset(&srv, 0, sizeof(srv));
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    srv.loop = ev_default_loop(0);
    if (srv.loop == NULL)
        log_fatal("cannot initialise the event loop");
    srv.rates = rate_new((double) cf_time(cf, "anvil_rate_time_unit"),
                         SMTPD_RATE_CLIENTS);
    if (spool_dirs_open(cf_str(cf, "queue_directory")) < 0)
        log_debug("%s: queue directories not kept open: %s",
                  cf_str(cf, "queue_directory"), strerror(errno));
    nthr = cf_int(cf, "sluice_worker_threads");
    srv.pool = wpool_new(srv.loop,
                         nthr < 1     ? 1
                         : nthr > 256 ? 256
                                      : (int) nthr,
                         "smtpd-io", 0);
    srv.commit_max = nthr - 1 < 1                     ? 1
                     : nthr - 1 > SMTPD_COMMIT_FLIGHT ? SMTPD_COMMIT_FLIGHT
                                                      : (int) nthr - 1;
    srv.lsn = xcalloc(n ? n : 1, sizeof(*srv.lsn));
    srv.nlsn = n;
    srv.chains = xcalloc(n ? n : 1, sizeof(*srv.chains));
    for (i = 0; i < n; i++) {
        struct smtpd_lsn *l = &srv.lsn[i];
        const struct cf *scf = ls[i].svc && ls[i].svc->cf ? ls[i].svc->cf : cf;

        l->fd = ls[i].fd;
        l->srv = &srv;
        smtpd_conf_init(&l->conf, scf,
                        ls[i].svc && ls[i].svc->name ? ls[i].svc->name : "smtp",
                        ls[i].check);
        l->conf.tls = ls[i].tls;
        l->conf.chain = ls[i].chain;
        for (k = 0; k < srv.nchains && srv.chains[k] != ls[i].chain; k++)
            ;
        if (k == srv.nchains)
            srv.chains[srv.nchains++] = ls[i].chain;
        smtpd_sasl_attach(&srv, &l->conf);
        /* TLS required but not there: no mail in clear, as Postfix */
        if (l->conf.tls_required && l->conf.tls == NULL)
            log_warning("service %s: smtpd_tls_security_level = encrypt, but "
                        "TLS support is disabled: every MAIL FROM gets 530 "
                        "5.7.0 instead of mail being taken in clear",
                        l->conf.service);
        if (l->conf.tls_wrapper && l->conf.tls == NULL)
            log_warning("service %s: smtpd_tls_wrappermode = yes, but TLS "
                        "support is disabled: its connections are closed "
                        "after connect",
                        l->conf.service);
        net_nonblock(l->fd);
        smtpd_lsn_prepare(l);
        ev_io_init(&l->io, smtpd_accept_cb, l->fd, EV_READ);
        l->io.data = l;
    }
    smtpd_accept_on(&srv, 1);
    ev_init(&srv.accept_pause, smtpd_accept_pause_cb);
    srv.accept_pause.data = &srv;
    ev_init(&srv.grace, smtpd_grace_cb);
    srv.grace.data = &srv;
    ev_signal_init(&srv.sigterm, smtpd_signal_cb, SIGTERM);
    ev_signal_init(&srv.sigint, smtpd_signal_cb, SIGINT);
    srv.sigterm.data = srv.sigint.data = &srv;
    ev_signal_init(&srv.sighup, smtpd_drain_start_cb, SIGHUP);
    srv.sighup.data = &srv;
    ev_init(&srv.drain, smtpd_drain_timeout_cb);
    srv.drain.data = &srv;
    ev_signal_start(srv.loop, &srv.sigterm);
    ev_signal_start(srv.loop, &srv.sigint);
    ev_signal_start(srv.loop, &srv.sighup);
    ev_idle_init(&srv.reap, smtpd_reap_cb);
    srv.reap.data = &srv;
    filter_chains_start(srv.chains, srv.nchains, srv.loop);
    for (i = 0; i < n && srv.dns == NULL; i++) /* made before any session */
        if (smtpd_check_uses_dns(srv.lsn[i].conf.check)) {
            struct buf *err = buf_new(128, 4096);

            srv.dns = dns_new(srv.loop, cf_list(cf, "sluice_dns_servers"),
                              (double) cf_time(cf, "sluice_dns_timeout"), err);
            if (srv.dns == NULL)
                log_warning("DNS restrictions are not looked up: %s",
                            buf_data(err));
            buf_free(err);
            break;
        }
    smtpd_policy_start(&srv, cf);
    srv.prepend = buf_new(256, BUF_NOCAP);
    srv.data_limit = smtpd_data_limit(cf, &srv);
    ev_check_init(&srv.gate_admit, smtpd_gate_admit_cb);
    srv.gate_admit.data = &srv;
    ev_init(&srv.gate_timer, smtpd_gate_timer_cb);
    srv.gate_timer.data = &srv;

    ev_run(srv.loop, 0);

    srv.stopping = 1;
    while (srv.live)
        smtpd_close(srv.live);
    filter_chains_stop(srv.chains, srv.nchains);
    wpool_free(srv.pool); /* runs the done callbacks of finished jobs */
    ev_idle_stop(srv.loop, &srv.reap);
    smtpd_reap_cb(srv.loop, &srv.reap, 0);
    smtpd_accept_on(&srv, 0);
    ev_timer_stop(srv.loop, &srv.accept_pause);
    ev_timer_stop(srv.loop, &srv.grace);
    ev_signal_stop(srv.loop, &srv.sigterm);
    ev_signal_stop(srv.loop, &srv.sigint);
    ev_signal_stop(srv.loop, &srv.sighup);
    ev_timer_stop(srv.loop, &srv.drain);
    ev_check_stop(srv.loop, &srv.gate_admit);
    ev_timer_stop(srv.loop, &srv.gate_timer);
    for (i = 0; i < n; i++) {
        smtpd_conf_free(&srv.lsn[i].conf);
        tls_srv_free(srv.lsn[i].conf.tls);
    }
    for (i = 0; i < srv.nsasl; i++)
        sasl_srv_free(srv.sasl[i]);
    free(srv.sasl);
    dns_free(srv.dns); /* the sessions' lookups were cancelled */
    policy_free(srv.verify);
    for (i = 0; i < srv.npolicy; i++) {
        policy_free(srv.policy[i].p);
        free(srv.policy[i].spec);
        free(srv.policy[i].context);
    }
    free(srv.policy);
    buf_free(srv.prepend);
    rate_free(srv.rates);
    free(srv.chains);
    free(srv.lsn);
    log_info("smtpd stopped");
    return 0;
}
