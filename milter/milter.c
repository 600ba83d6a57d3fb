/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter.c - the milter client as a filter of the chain (milter.h is the
 * spec; milter_proto.h the wire codec).
 *
 * One milter_sess per milter per SMTP session: open() starts a
 * non-blocking connection (ev_io on the loop given to start()), sends
 * SMFIC_OPTNEG and reads the milter's choice; a stage that arrives
 * meanwhile waits for the negotiation. Each stage then sends its macros
 * (SMFIC_MACRO, always, as Postfix does) and, unless the milter asked not
 * to get it (SMFIP_NO*) or the protocol version lacks it, the command.
 * Where the milter asked for no reply (SMFIP_NR_*) the stage is answered
 * CONTINUE at once, as soon as our output queue is below MILTER_OUT_LOW
 * (back-pressure: the chain does not hand the next stage before that).
 *
 * Follows Postfix's milter8.c where the protocol leaves room: the first
 * header (our own Received:) is not shown to the milter; one leading
 * space of a header value is removed unless SMFIP_HDR_LEADSPC; folded
 * header lines are sent joined with "\n"; body chunks are exactly
 * MILTER_CHUNK_SIZE bytes but the last; CHGHEADER index 0 means 1; a
 * milter with a higher protocol version or asking for actions we did not
 * offer is failed; any SETSYMLIST reply replaces every macro list (lists
 * it did not name become empty); REJECT/TEMPFAIL/REPLYCODE at CONNECT or
 * HELO hold for the whole SMTP session; DISCARD there is ignored.
 *
 * Failure (connect error, timeout, EOF, malformed or oversized packet,
 * unexpected reply): the connection is closed and the milter's
 * default_action answers this and every later stage of the session. The
 * warning is logged once per change of the milter's state (process-wide:
 * failing / working). Connect failures and timeouts also mark the milter
 * down for a back-off (10 s doubling to 5 min): new sessions then get the
 * default action without a connection attempt until it expires.
 *
 * Owns: sessions' sockets, watchers, buffers, negotiated macro lists and
 * pending modifications. Borrows: the cf (milter_confs_new copies what it
 * needs), the loop (start), env and stage arguments (open/stage; the
 * arguments until the stage is answered).
 * Threads: the loop thread; the back-off state of a conf is under a mutex
 * so sessions of several front threads may share it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"
#include "milter/milter.h"
#include "milter/milter_proto.h"

/* MILTER_IN_CAP: a whole packet of the largest length with its length
 * field, and room for a read (milter_read_cb() reserves 64 KB) */
#define MILTER_OUT_CAP       (8 * 1024 * 1024)
#define MILTER_OUT_LOW       (256 * 1024)
#define MILTER_IN_CAP        (MILTER_HDR_LEN + MILTER_PKT_MAX + 64 * 1024)
#define MILTER_MODS_MAX      100000
#define MILTER_MOD_BYTES_MAX (64 * 1024 * 1024)
#define MILTER_BACKOFF_MIN   10.0
#define MILTER_BACKOFF_MAX   300.0
#define MILTER_REASON_MAX    512
#define MILTER_TEXT_MAX      8192

enum milter_action {
    MILTER_A_ACCEPT,
    MILTER_A_REJECT,
    MILTER_A_TEMPFAIL,
    MILTER_A_QUARANTINE,
    MILTER_A_SHUTDOWN
};

/* our macro lists: the SMFIM_* types, then unknown commands */
#define MILTER_M_UNKNOWN MILTER_SMFIM_N
#define MILTER_M_N       (MILTER_SMFIM_N + 1)

struct milter_conf {
    char *name; /* as written: "inet:127.0.0.1:8891" */
    struct sockaddr_storage sa;
    socklen_t salen;
    double connect_timeout, command_timeout, content_timeout;
    enum milter_action def_action;
    int protocol;
    char *myhostname, *daemon_name, *macro_v;
    char **macros[MILTER_M_N]; /* NULL-terminated */

    struct ev_loop *loop; /* from start() */
    pthread_mutex_t lock; /* guards the fields below */
    int failing;          /* a failure was logged, no success since */
    double backoff;       /* 0 = none */
    double down_until;    /* ev_now() time */
};

enum milter_state {
    MILTER_S_CONNECT, /* TCP/unix connect in progress */
    MILTER_S_OPTNEG,  /* SMFIC_OPTNEG sent, waiting */
    MILTER_S_READY,   /* idle, negotiated */
    MILTER_S_REPLY,   /* waiting for the reply to cur_cmd */
    MILTER_S_FLUSH,   /* no-reply stage: waiting for output to drain */
    MILTER_S_FAILED,  /* default action from now on */
    MILTER_S_DONE     /* milter ended the session: conn reply applies */
};

struct milter_sess {
    struct milter_conf *mc;
    const struct filter_env *env;
    struct ev_loop *loop;
    enum milter_state state;
    int fd;
    int quickack; /* TCP: ACK at once (see net_quickack) */
    ev_io rio, wio;
    ev_timer tmr;
    struct buf *out, *in;

    /* negotiated */
    uint32_t version, actions, steps;
    char **symlists[MILTER_M_N]; /* set by SETSYMLIST, else NULL */
    int have_symlists;

    /* the stage being served */
    struct filter_call *call;
    enum filter_stage st;
    const struct filter_args *args;
    int cur_cmd;

    /* transaction */
    struct buf *body; /* partial body chunk */
    const char *bsrc; /* BODY stage data not yet chunked */
    size_t blen;
    int skip_body;
    int hdr_seen;   /* headers seen (the first is ours) */
    int hdr_hidden; /* 1: our Received: was not shown (indexes shift) */
    struct filter_mod *mods, **mtail;
    size_t nmods, mod_bytes;
    char *quarantine;

    /* connection-level verdict (MILTER_S_DONE) */
    enum filter_verdict conn_verdict;
    int conn_code;
    char conn_dsn[16];
    char *conn_text;

    /* reply storage for one answer; scratch for encoding a stage */
    struct buf *rtext;
    struct buf *tmp;
    char rdsn[16];
};

/* ------------------------------------------------------------------ */
/* configuration */

static int
milter_parse_time(const char *v, double *out)
{
    char *end;
    double n;

    errno = 0;
    n = strtod(v, &end);
    if (end == v || errno || n < 0)
        return -1;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        ;
    else if (strcmp(end, "ms") == 0)
        n /= 1000;
    else if (strcmp(end, "m") == 0)
        n *= 60;
    else if (strcmp(end, "h") == 0)
        n *= 3600;
    else if (strcmp(end, "d") == 0)
        n *= 86400;
    else if (strcmp(end, "w") == 0)
        n *= 7 * 86400;
    else
        return -1;
    if (n > 7 * 86400.0)
        n = 7 * 86400.0;
    *out = n;
    return 0;
}

static int
milter_parse_action(const char *v, enum milter_action *a)
{
    static const struct {
        const char *name;
        enum milter_action a;
    } t[] = {
        {"accept", MILTER_A_ACCEPT},     {"reject", MILTER_A_REJECT},
        {"tempfail", MILTER_A_TEMPFAIL}, {"quarantine", MILTER_A_QUARANTINE},
        {"shutdown", MILTER_A_SHUTDOWN},
    };
    size_t i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strcasecmp(v, t[i].name) == 0) {
            *a = t[i].a;
            return 0;
        }
    return -1;
}

/* "inet:host:port", "unix:/path" (also "local:/path") */
static int
milter_parse_addr(struct milter_conf *mc, const char *spec)
{
    memset(&mc->sa, 0, sizeof(mc->sa));
    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        struct sockaddr_un *su = (struct sockaddr_un *) &mc->sa;
        const char *path = strchr(spec, ':') + 1;

        if (*path == '\0' || strlen(path) >= sizeof(su->sun_path))
            return -1;
        su->sun_family = AF_UNIX;
        memcpy(su->sun_path, path, strlen(path) + 1);
        mc->salen = sizeof(*su);
        return 0;
    }
    if (strncmp(spec, "inet:", 5) == 0) {
        char *s = xstrdup(spec + 5), *host, *port, *end;
        struct sockaddr_in *s4 = (struct sockaddr_in *) &mc->sa;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &mc->sa;
        long p;
        int ok = 0;

        if (net_split_hostport(s, &host, &port) == 0 && port && *port && host
            && *host) {
            p = strtol(port, &end, 10);
            if (*end == '\0' && p > 0 && p < 65536) {
                if (strcmp(host, "localhost") == 0)
                    host = "127.0.0.1";
                if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
                    s4->sin_family = AF_INET;
                    s4->sin_port = htons((uint16_t) p);
                    mc->salen = sizeof(*s4);
                    ok = 1;
                } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
                    s6->sin6_family = AF_INET6;
                    s6->sin6_port = htons((uint16_t) p);
                    mc->salen = sizeof(*s6);
                    ok = 1;
                }
            }
        }
        free(s);
        return ok ? 0 : -1;
    }
    return -1;
}

static char **
milter_strv_dup(char *const *v)
{
    size_t n = 0, i;
    char **r;

    while (v && v[n])
        n++;
    r = xcalloc(n + 1, sizeof(char *));
    for (i = 0; i < n; i++)
        r[i] = xstrdup(v[i]);
    return r;
}

static void
milter_strv_free(char **v)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

/* Split on white space into a NULL-terminated vector. */
static char **
milter_strv_split(const char *s)
{
    size_t n = 0, cap = 8;
    char **r = xcalloc(cap, sizeof(char *));

    for (;;) {
        size_t len;

        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (*s == '\0')
            break;
        len = strcspn(s, " \t,");
        if (n + 2 > cap) {
            cap *= 2;
            r = xrealloc(r, cap * sizeof(char *));
        }
        r[n++] = xstrndup(s, len);
        s += len;
    }
    r[n] = NULL;
    return r;
}

static void
milter_conf_free(struct milter_conf *mc)
{
    size_t i;

    if (mc == NULL)
        return;
    free(mc->name);
    free(mc->myhostname);
    free(mc->daemon_name);
    free(mc->macro_v);
    for (i = 0; i < MILTER_M_N; i++)
        milter_strv_free(mc->macros[i]);
    pthread_mutex_destroy(&mc->lock);
    free(mc);
}

void
milter_confs_free(struct milter_conf **v)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; v[i]; i++)
        milter_conf_free(v[i]);
    free(v);
}

static int
milter_check_one(const struct cf *scf, void *arg, struct buf *err)
{
    struct milter_conf **mv = milter_confs_new(scf, "smtpd_milters", err);

    (void) arg;
    milter_confs_free(mv);
    return mv ? 0 : -1;
}

int
milter_confs_check(const struct cf *cf, const struct cf_service *svcs, size_t n,
                   const char *main, struct buf *err)
{
    return cf_check_services(cf, svcs, n, main, milter_check_one, NULL, err);
}

const char *
milter_conf_name(const struct milter_conf *mc)
{
    return mc->name;
}

/* Tokens of a "{ ... }" group: split on commas and blanks, then glue
 * "name", "=", "value" (blanks around '=') into "name=value". */
static char **
milter_group_tokens(const char *inner)
{
    char **raw = milter_strv_split(inner), **r;
    size_t n = 0, i, k = 0;

    while (raw[n])
        n++;
    r = xcalloc(n + 1, sizeof(char *));
    for (i = 0; i < n; i++) {
        char *t = raw[i];

        raw[i] = NULL;
        while (i + 1 < n && (t[strlen(t) - 1] == '=' || raw[i + 1][0] == '=')) {
            size_t a = strlen(t), b = strlen(raw[i + 1]);

            t = xrealloc(t, a + b + 1);
            memcpy(t + a, raw[i + 1], b + 1);
            free(raw[i + 1]);
            raw[i + 1] = NULL;
            i++;
        }
        r[k++] = t;
    }
    r[k] = NULL;
    free(raw);
    return r;
}

static struct milter_conf *
milter_conf_new(const struct cf *cf, const char *param, const char *elem,
                struct buf *err)
{
    static const char *const lists[MILTER_M_N] = {
        [MILTER_SMFIM_CONNECT] = "milter_connect_macros",
        [MILTER_SMFIM_HELO] = "milter_helo_macros",
        [MILTER_SMFIM_ENVFROM] = "milter_mail_macros",
        [MILTER_SMFIM_ENVRCPT] = "milter_rcpt_macros",
        [MILTER_SMFIM_DATA] = "milter_data_macros",
        [MILTER_SMFIM_EOM] = "milter_end_of_data_macros",
        [MILTER_SMFIM_EOH] = "milter_end_of_header_macros",
        [MILTER_M_UNKNOWN] = "milter_unknown_command_macros",
    };
    struct milter_conf *mc = xcalloc(1, sizeof(*mc));
    char **tok = NULL;
    char safe[256];
    const char *addr;
    size_t i;
    long long proto;

    pthread_mutex_init(&mc->lock, NULL);
    mc->connect_timeout = (double) cf_time(cf, "milter_connect_timeout");
    mc->command_timeout = (double) cf_time(cf, "milter_command_timeout");
    mc->content_timeout = (double) cf_time(cf, "milter_content_timeout");
    if (milter_parse_action(cf_str(cf, "milter_default_action"),
                            &mc->def_action)
        < 0) {
        const char *v = cf_str(cf, "milter_default_action");

        buf_printf(err,
                   "milter_default_action: unknown value \"%s\" (accept, "
                   "reject, tempfail, quarantine or shutdown)",
                   log_safe(v, strlen(v), safe, sizeof(safe)));
        goto fail;
    }
    proto = cf_int(cf, "milter_protocol");
    if (proto < 2 || proto > 6) {
        buf_printf(err, "milter_protocol: %lld is out of range (2-6)", proto);
        goto fail;
    }
    mc->protocol = (int) proto;
    mc->myhostname = xstrdup(cf_str(cf, "myhostname"));
    mc->daemon_name = xstrdup(cf_str(cf, "milter_macro_daemon_name"));
    mc->macro_v = xstrdup(cf_str(cf, "milter_macro_v"));
    for (i = 0; i < MILTER_M_N; i++)
        mc->macros[i] = milter_strv_dup(cf_list(cf, lists[i]));

    if (elem[0] == '{') {
        size_t n = strlen(elem);
        char *inner;

        if (n < 2 || elem[n - 1] != '}') {
            buf_printf(err, "%s: missing \"}\" in \"%s\"", param,
                       log_safe(elem, n, safe, sizeof(safe)));
            goto fail;
        }
        inner = xstrndup(elem + 1, n - 2);
        tok = milter_group_tokens(inner);
        free(inner);
        if (tok[0] == NULL) {
            buf_printf(err, "%s: empty milter group \"%s\"", param,
                       log_safe(elem, n, safe, sizeof(safe)));
            goto fail;
        }
        addr = tok[0];
    } else {
        addr = elem;
    }
    if (milter_parse_addr(mc, addr) < 0) {
        buf_printf(err,
                   "%s: bad milter address \"%s\" (inet:address:port with "
                   "a numeric address or localhost, or unix:/path)",
                   param, log_safe(addr, strlen(addr), safe, sizeof(safe)));
        goto fail;
    }
    mc->name = xstrdup(addr);
    for (i = 1; tok && tok[i]; i++) {
        char *eq = strchr(tok[i], '=');
        const char *k, *v;
        int bad = 0;

        if (eq == NULL) {
            buf_printf(err, "%s: milter %s: \"%s\" is not name=value", param,
                       mc->name,
                       log_safe(tok[i], strlen(tok[i]), safe, sizeof(safe)));
            goto fail;
        }
        *eq = '\0';
        k = tok[i];
        v = eq + 1;
        if (strcmp(k, "connect_timeout") == 0)
            bad = milter_parse_time(v, &mc->connect_timeout);
        else if (strcmp(k, "command_timeout") == 0)
            bad = milter_parse_time(v, &mc->command_timeout);
        else if (strcmp(k, "content_timeout") == 0)
            bad = milter_parse_time(v, &mc->content_timeout);
        else if (strcmp(k, "default_action") == 0)
            bad = milter_parse_action(v, &mc->def_action);
        else if (strcmp(k, "protocol") == 0) {
            char *end;
            long p = strtol(v, &end, 10);

            bad = *v == '\0' || *end != '\0' || p < 2 || p > 6 ? -1 : 0;
            if (!bad)
                mc->protocol = (int) p;
        } else {
            buf_printf(err, "%s: milter %s: unknown setting \"%s\"", param,
                       mc->name, log_safe(k, strlen(k), safe, sizeof(safe)));
            goto fail;
        }
        if (bad) {
            buf_printf(err, "%s: milter %s: bad value for %s: \"%s\"", param,
                       mc->name, k, log_safe(v, strlen(v), safe, sizeof(safe)));
            goto fail;
        }
    }
    if (mc->connect_timeout <= 0)
        mc->connect_timeout = 1;
    if (mc->command_timeout <= 0)
        mc->command_timeout = 1;
    if (mc->content_timeout <= 0)
        mc->content_timeout = 1;
    milter_strv_free(tok);
    return mc;
fail:
    milter_strv_free(tok);
    milter_conf_free(mc);
    return NULL;
}

struct milter_conf **
milter_confs_new(const struct cf *cf, const char *param, struct buf *err)
{
    char *const *list = cf_list(cf, param);
    struct milter_conf **v;
    size_t n = 0, i;

    while (list && list[n])
        n++;
    v = xcalloc(n + 1, sizeof(*v));
    for (i = 0; i < n; i++)
        if ((v[i] = milter_conf_new(cf, param, list[i], err)) == NULL)
            goto fail;
    return v;
fail:
    milter_confs_free(v);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* process-wide state of one milter: failing, back-off */

/* A failure: log the first after a success; with down, start or grow
 * the back-off. */
static void
milter_conf_failed(struct milter_conf *mc, double now, int down,
                   const char *reason)
{
    int log_it;
    double secs = 0;

    pthread_mutex_lock(&mc->lock);
    log_it = !mc->failing;
    mc->failing = 1;
    if (down) {
        mc->backoff = mc->backoff > 0 ? mc->backoff * 2 : MILTER_BACKOFF_MIN;
        if (mc->backoff > MILTER_BACKOFF_MAX)
            mc->backoff = MILTER_BACKOFF_MAX;
        mc->down_until = now + mc->backoff;
        secs = mc->backoff;
    }
    pthread_mutex_unlock(&mc->lock);
    if (log_it && down)
        log_warning("milter %s: %s; not used for %.0fs", mc->name, reason,
                    secs);
    else if (log_it)
        log_warning("milter %s: %s", mc->name, reason);
    else
        log_debug("milter %s: %s", mc->name, reason);
}

static void
milter_conf_ok(struct milter_conf *mc)
{
    int was;

    pthread_mutex_lock(&mc->lock);
    was = mc->failing;
    mc->failing = 0;
    mc->backoff = 0;
    mc->down_until = 0;
    pthread_mutex_unlock(&mc->lock);
    if (was)
        log_info("milter %s: connected again", mc->name);
}

static int
milter_conf_down(struct milter_conf *mc, double now)
{
    int down;

    pthread_mutex_lock(&mc->lock);
    down = mc->down_until > now;
    pthread_mutex_unlock(&mc->lock);
    return down;
}

/* ------------------------------------------------------------------ */
/* session helpers */

static const char *
milter_state_name(enum milter_state s)
{
    switch (s) {
    case MILTER_S_CONNECT:
        return "connect";
    case MILTER_S_OPTNEG:
        return "optneg";
    case MILTER_S_READY:
        return "ready";
    case MILTER_S_REPLY:
        return "reply";
    case MILTER_S_FLUSH:
        return "flush";
    case MILTER_S_FAILED:
        return "failed";
    case MILTER_S_DONE:
        return "done";
    }
    return "?";
}

static void
milter_enter(struct milter_sess *ms, enum milter_state to)
{
    if (log_debug_enabled())
        log_debug("milter %s: state %s -> %s", ms->mc->name,
                  milter_state_name(ms->state), milter_state_name(to));
    ms->state = to;
}

/* Set the watchers for what the session waits for. Output is written at
 * once while the socket takes it (a command and its reply cost a send and
 * a read, not also two epoll_ctl calls and a wakeup); the write watcher
 * waits only for the rest. A write error is left to the write watcher,
 * which reports it outside the caller's stage code. */
static void
milter_update_io(struct milter_sess *ms)
{
    if (ms->fd < 0)
        return;
    if (ms->state != MILTER_S_CONNECT && buf_len(ms->out) > 0
        && !ev_is_active(&ms->wio)) {
        ssize_t n = send(ms->fd, buf_data(ms->out), buf_len(ms->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0)
            buf_consume(ms->out, (size_t) n);
    }
    if (ms->state == MILTER_S_CONNECT || buf_len(ms->out) > 0)
        ev_io_start(ms->loop, &ms->wio);
    else
        ev_io_stop(ms->loop, &ms->wio);
    if (ms->state != MILTER_S_CONNECT)
        ev_io_start(ms->loop, &ms->rio);
}

static void
milter_timer(struct milter_sess *ms, double secs)
{
    ev_timer_stop(ms->loop, &ms->tmr);
    ev_timer_set(&ms->tmr, secs, 0.);
    ev_timer_start(ms->loop, &ms->tmr);
}

static void
milter_disconnect(struct milter_sess *ms)
{
    ev_io_stop(ms->loop, &ms->rio);
    ev_io_stop(ms->loop, &ms->wio);
    ev_timer_stop(ms->loop, &ms->tmr);
    if (ms->fd >= 0) {
        close(ms->fd);
        ms->fd = -1;
    }
    buf_reset(ms->out);
    buf_reset(ms->in);
}

static void
milter_txn_reset(struct milter_sess *ms)
{
    buf_reset(ms->body);
    ms->bsrc = NULL;
    ms->blen = 0;
    ms->skip_body = 0;
    ms->hdr_seen = 0;
    ms->hdr_hidden = 0;
    filter_mods_free(ms->mods);
    ms->mods = NULL;
    ms->mtail = &ms->mods;
    ms->nmods = 0;
    ms->mod_bytes = 0;
    free(ms->quarantine);
    ms->quarantine = NULL;
}

/* Answer the pending call. Must be the last thing done with ms: the
 * chain may free the session inside. */
static void
milter_answer(struct milter_sess *ms, const struct filter_reply *r)
{
    struct filter_call *c = ms->call;
    struct filter_reply cont = {FILTER_CONTINUE, 0, NULL, NULL, NULL};

    /* a recipient Sluice refused itself (SMFIP_RCPT_REJ): the milter only
     * learns of it; its verdict does not matter */
    if (ms->st == FILTER_RCPT && ms->args && ms->args->rejected)
        r = &cont;
    ms->call = NULL;
    ms->args = NULL;
    if (c)
        filter_answer(c, r);
}

static void
milter_answer_continue(struct milter_sess *ms)
{
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};

    milter_answer(ms, &r);
}

/* The default action's reply for stage st. */
static void
milter_default_reply(const struct milter_sess *ms, enum filter_stage st,
                     struct filter_reply *r)
{
    memset(r, 0, sizeof(*r));
    r->verdict = FILTER_CONTINUE;
    if (st == FILTER_ABORT)
        return;
    switch (ms->mc->def_action) {
    case MILTER_A_ACCEPT:
        break;
    case MILTER_A_REJECT:
        r->verdict = FILTER_REJECT;
        r->code = 550;
        r->dsn = "5.7.1";
        r->text = "Service unavailable";
        break;
    case MILTER_A_TEMPFAIL:
        r->verdict = FILTER_TEMPFAIL;
        r->code = 451;
        r->dsn = "4.7.1";
        r->text = "Service unavailable - try again later";
        break;
    case MILTER_A_QUARANTINE:
        if (st != FILTER_CONNECT && st != FILTER_HELO && st != FILTER_UNKNOWN) {
            r->verdict = FILTER_HOLD;
            r->text = "milter default_action";
        }
        break;
    case MILTER_A_SHUTDOWN:
        r->verdict = FILTER_TEMPFAIL;
        r->code = 421;
        r->dsn = "4.7.0";
        r->text = "Server closing connection";
        break;
    }
}

static void
milter_answer_default(struct milter_sess *ms)
{
    struct filter_reply r;

    milter_default_reply(ms, ms->st, &r);
    milter_answer(ms, &r);
}

/* The milter failed: log (once per state change), close, and answer a
 * pending call with the default action (last thing done with ms). */
static void milter_fail(struct milter_sess *ms, int down, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
milter_fail(struct milter_sess *ms, int down, const char *fmt, ...)
{
    char reason[MILTER_REASON_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    milter_conf_failed(ms->mc, ev_now(ms->loop), down, reason);
    milter_disconnect(ms);
    milter_txn_reset(ms);
    milter_enter(ms, MILTER_S_FAILED);
    if (ms->call)
        milter_answer_default(ms);
}

/* Answer with the connection-level verdict the milter gave. */
static void
milter_answer_conn(struct milter_sess *ms)
{
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};

    if (ms->st != FILTER_ABORT) {
        r.verdict = ms->conn_verdict;
        r.code = ms->conn_code;
        r.dsn = ms->conn_dsn[0] ? ms->conn_dsn : NULL;
        r.text = ms->conn_text;
    }
    milter_answer(ms, &r);
}

/* ------------------------------------------------------------------ */
/* macros */

static const char *
milter_domain(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;

    return at && at[1] ? at + 1 : NULL;
}

/* Value of macro name ("j", "{daemon_name}") now, or NULL. */
static const char *
milter_macro_value(struct milter_sess *ms, const char *name, char *tmp,
                   size_t tmpsz)
{
    const struct filter_env *e = ms->env;
    const struct milter_conf *mc = ms->mc;
    const char *n = name;
    size_t len = strlen(name);
    char key[64];

    if (len >= 2 && name[0] == '{' && name[len - 1] == '}') {
        if (len - 2 >= sizeof(key))
            return NULL;
        memcpy(key, name + 1, len - 2);
        key[len - 2] = '\0';
        n = key;
    }
    if (strcmp(n, "j") == 0)
        return mc->myhostname;
    if (strcmp(n, "v") == 0)
        return mc->macro_v;
    if (strcmp(n, "daemon_name") == 0)
        return mc->daemon_name;
    if (e == NULL)
        return NULL;
    if (strcmp(n, "_") == 0) {
        if (e->client_addr == NULL)
            return NULL;
        snprintf(tmp, tmpsz, "%s [%s]",
                 e->client_name ? e->client_name : "unknown", e->client_addr);
        return tmp;
    }
    if (strcmp(n, "daemon_addr") == 0)
        return e->server_addr;
    if (strcmp(n, "daemon_port") == 0) {
        if (e->server_addr == NULL)
            return NULL;
        snprintf(tmp, tmpsz, "%d", e->server_port);
        return tmp;
    }
    if (strcmp(n, "client_addr") == 0)
        return e->client_addr;
    if (strcmp(n, "client_port") == 0) {
        if (e->client_addr == NULL)
            return NULL;
        snprintf(tmp, tmpsz, "%d", e->client_port);
        return tmp;
    }
    if (strcmp(n, "client_name") == 0 || strcmp(n, "client_ptr") == 0)
        return e->client_name;
    if (strcmp(n, "client_resolve") == 0) {
        if (e->client_name == NULL)
            return NULL;
        return strcmp(e->client_name, "unknown") == 0 ? "FAIL" : "OK";
    }
    if (strcmp(n, "i") == 0)
        return e->queue_id;
    if (strcmp(n, "tls_version") == 0)
        return e->tls_version;
    if (strcmp(n, "auth_type") == 0)
        return e->auth_type;
    if (strcmp(n, "auth_authen") == 0)
        return e->auth_authen;
    if (strcmp(n, "auth_author") == 0)
        return e->auth_author;
    if (strcmp(n, "cipher") == 0)
        return e->tls_cipher;
    if (strcmp(n, "cipher_bits") == 0) {
        if (e->tls_version == NULL)
            return NULL;
        snprintf(tmp, tmpsz, "%d", e->tls_bits);
        return tmp;
    }
    if (strncmp(n, "mail_", 5) == 0) {
        /* at MAIL the env may not have the sender yet */
        const char *snd = ms->st == FILTER_MAIL && ms->args && ms->args->str
                              ? ms->args->str
                              : e->sender;

        if (snd == NULL)
            return NULL;
        if (strcmp(n + 5, "addr") == 0)
            return snd;
        if (strcmp(n + 5, "host") == 0)
            return milter_domain(snd);
        if (strcmp(n + 5, "mailer") == 0)
            return milter_domain(snd) ? "smtp" : "local";
        return NULL;
    }
    if (strncmp(n, "rcpt_", 5) == 0) {
        const char *r = NULL;

        /* Postfix, for a recipient it refused (SMFIP_RCPT_REJ): mailer
         * "error", host the enhanced status code, addr the reply text */
        if (ms->st == FILTER_RCPT && ms->args && ms->args->rejected) {
            const char *rj = ms->args->rejected, *sp = strchr(rj, ' ');
            const char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;

            if (strcmp(n + 5, "mailer") == 0)
                return "error";
            if (sp == NULL || sp2 == NULL)
                return NULL;
            if (strcmp(n + 5, "addr") == 0)
                return sp2 + 1;
            if (strcmp(n + 5, "host") == 0 && (size_t) (sp2 - sp - 1) < tmpsz) {
                memcpy(tmp, sp + 1, (size_t) (sp2 - sp - 1));
                tmp[sp2 - sp - 1] = '\0';
                return tmp;
            }
            return NULL;
        }
        if (ms->st == FILTER_RCPT && ms->args)
            r = ms->args->str;
        else if (e->nrcpt > 0 && e->rcpts)
            r = e->rcpts[e->nrcpt - 1];
        if (r == NULL)
            return NULL;
        if (strcmp(n + 5, "addr") == 0)
            return r;
        if (strcmp(n + 5, "host") == 0)
            return milter_domain(r);
        if (strcmp(n + 5, "mailer") == 0)
            return milter_domain(r) ? "smtp" : "local";
    }
    /* TLS and SASL macros: not known yet */
    return NULL;
}

/* SMFIC_MACRO for list type t before command cmd (nothing when the list
 * is empty). 0 or -1 (output full). */
static int
milter_put_macros(struct milter_sess *ms, int t, int cmd)
{
    char *const *list = ms->have_symlists ? ms->symlists[t] : ms->mc->macros[t];
    const char **nv;
    char(*tmp)[256];
    size_t n = 0, i, k = 0;
    int rc;

    while (list && list[n])
        n++;
    if (n == 0)
        return 0;
    nv = xcalloc(2 * n + 1, sizeof(char *));
    tmp = xcalloc(n, sizeof(*tmp));
    for (i = 0; i < n; i++) {
        const char *v = milter_macro_value(ms, list[i], tmp[i], sizeof(tmp[i]));

        if (v == NULL || *v == '\0')
            continue;
        nv[k++] = list[i];
        nv[k++] = v;
    }
    nv[k] = NULL;
    rc = milter_enc_macro(ms->out, cmd, nv);
    free(tmp);
    free(nv);
    return rc;
}

/* ------------------------------------------------------------------ */
/* sending stages */

/* After writing a stage's packets: wait for the reply, or answer now
 * (no reply expected), or when the output has drained. */
static void
milter_sent(struct milter_sess *ms, int cmd, int want_reply, double tmo)
{
    milter_update_io(ms);
    if (want_reply) {
        ms->cur_cmd = cmd;
        milter_enter(ms, MILTER_S_REPLY);
        milter_timer(ms, tmo);
        return;
    }
    if (buf_len(ms->out) > 0)
        milter_timer(ms, ms->mc->command_timeout);
    if (buf_len(ms->out) >= MILTER_OUT_LOW) {
        milter_enter(ms, MILTER_S_FLUSH);
        return;
    }
    milter_enter(ms, MILTER_S_READY);
    milter_answer_continue(ms);
}

static void milter_send_eob(struct milter_sess *ms);

/* Send the buffered body chunk, if any. 1: a reply is awaited. */
static int
milter_flush_chunk(struct milter_sess *ms, int *err)
{
    int nr = (ms->steps & MILTER_SMFIP_NR_BODY) != 0;

    *err = 0;
    if (buf_len(ms->body) == 0)
        return 0;
    if (milter_put_macros(ms, MILTER_SMFIM_EOM, MILTER_SMFIC_BODY) < 0
        || milter_enc_body(ms->out, buf_data(ms->body), buf_len(ms->body))
               < 0) {
        *err = 1;
        return 0;
    }
    buf_reset(ms->body);
    if (nr)
        return 0;
    milter_update_io(ms);
    ms->cur_cmd = MILTER_SMFIC_BODY;
    milter_enter(ms, MILTER_S_REPLY);
    milter_timer(ms, ms->mc->content_timeout);
    return 1;
}

/* BODY stage: chunk ms->bsrc into MILTER_CHUNK_SIZE packets. */
static void
milter_body_step(struct milter_sess *ms)
{
    int err;

    for (;;) {
        size_t room, take;

        if (ms->skip_body || (ms->steps & MILTER_SMFIP_NOBODY)) {
            ms->blen = 0;
            milter_sent(ms, MILTER_SMFIC_BODY, 0, 0);
            return;
        }
        if (ms->blen == 0) {
            milter_sent(ms, MILTER_SMFIC_BODY, 0, 0);
            return;
        }
        room = MILTER_CHUNK_SIZE - buf_len(ms->body);
        take = ms->blen < room ? ms->blen : room;
        buf_append(ms->body, ms->bsrc, take);
        ms->bsrc += take;
        ms->blen -= take;
        if (buf_len(ms->body) < MILTER_CHUNK_SIZE)
            continue;
        if (milter_flush_chunk(ms, &err))
            return; /* the reply resumes */
        if (err) {
            milter_fail(ms, 0, "output buffer full");
            return;
        }
    }
}

/* EOM: the last partial chunk, then SMFIC_BODYEOB. */
static void
milter_eom_step(struct milter_sess *ms)
{
    int err;

    if (!ms->skip_body && !(ms->steps & MILTER_SMFIP_NOBODY)) {
        if (milter_flush_chunk(ms, &err))
            return;
        if (err) {
            milter_fail(ms, 0, "output buffer full");
            return;
        }
    }
    milter_send_eob(ms);
}

static void
milter_send_eob(struct milter_sess *ms)
{
    buf_reset(ms->body);
    if (milter_put_macros(ms, MILTER_SMFIM_EOM, MILTER_SMFIC_BODYEOB) < 0
        || milter_enc_simple(ms->out, MILTER_SMFIC_BODYEOB) < 0) {
        milter_fail(ms, 0, "output buffer full");
        return;
    }
    milter_sent(ms, MILTER_SMFIC_BODYEOB, 1, ms->mc->content_timeout);
}

/* "addr" -> "<addr>" into b */
static const char *
milter_bracket(struct buf *b, const char *addr)
{
    buf_reset(b);
    buf_printf(b, "<%s>", addr ? addr : "");
    return buf_data(b);
}

/* Header value as Postfix sends it: one leading space removed (unless
 * SMFIP_HDR_LEADSPC), CRLF line breaks as "\n". */
static const char *
milter_hvalue(struct milter_sess *ms, struct buf *b, const char *v)
{
    buf_reset(b);
    if (!(ms->steps & MILTER_SMFIP_HDR_LEADSPC) && *v == ' ')
        v++;
    for (; *v; v++) {
        if (v[0] == '\r' && v[1] == '\n')
            continue;
        if (buf_putc(b, *v) < 0)
            return NULL;
    }
    return buf_data(b);
}

/* Serve ms->st (negotiated, idle). */
static void
milter_run(struct milter_sess *ms)
{
    const struct filter_args *a = ms->args;
    const struct filter_env *e = ms->env;
    const struct milter_conf *mc = ms->mc;
    uint32_t s = ms->steps;
    struct buf *tmp = ms->tmp;
    int rc = 0, cmd = 0, mt = -1, skip = 0, nr = 0;
    double tmo = mc->command_timeout;

    buf_reset(tmp);
    switch (ms->st) {
    case FILTER_CONNECT: {
        const char *name = e && e->client_name ? e->client_name : "unknown";
        const char *addr = e && e->client_addr ? e->client_addr : "unknown";
        int fam = MILTER_SMFIA_UNKNOWN;

        if (e && e->client_sa) {
            if (e->client_sa->sa_family == AF_INET
                || e->client_sa->sa_family == AF_INET6)
                fam =
                    strchr(addr, ':') ? MILTER_SMFIA_INET6 : MILTER_SMFIA_INET;
            else if (e->client_sa->sa_family == AF_UNIX)
                fam = MILTER_SMFIA_UNIX;
        }
        if (strcmp(name, "unknown") == 0 && strcmp(addr, "unknown") != 0) {
            buf_printf(tmp, "[%s]", addr);
            name = buf_data(tmp);
        }
        cmd = MILTER_SMFIC_CONNECT;
        mt = MILTER_SMFIM_CONNECT;
        skip = (s & MILTER_SMFIP_NOCONNECT) != 0;
        nr = (s & MILTER_SMFIP_NR_CONN) != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip)
            rc = milter_enc_connect(
                ms->out, name, fam,
                fam == MILTER_SMFIA_UNIX || !e ? 0 : e->client_port, addr);
        break;
    }
    case FILTER_HELO:
        cmd = MILTER_SMFIC_HELO;
        mt = MILTER_SMFIM_HELO;
        skip = (s & MILTER_SMFIP_NOHELO) != 0;
        nr = (s & MILTER_SMFIP_NR_HELO) != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip)
            rc = milter_enc_helo(ms->out, a && a->str ? a->str : "");
        break;
    case FILTER_MAIL:
    case FILTER_RCPT:
        if (ms->st == FILTER_RCPT && a && a->rejected
            && !(s & MILTER_SMFIP_RCPT_REJ)) {
            milter_sent(ms, MILTER_SMFIC_RCPT, 0, 0); /* not for this one */
            return;
        }
        if (ms->st == FILTER_MAIL)
            milter_txn_reset(ms);
        cmd = ms->st == FILTER_MAIL ? MILTER_SMFIC_MAIL : MILTER_SMFIC_RCPT;
        mt =
            ms->st == FILTER_MAIL ? MILTER_SMFIM_ENVFROM : MILTER_SMFIM_ENVRCPT;
        skip = (s
                & (ms->st == FILTER_MAIL ? MILTER_SMFIP_NOMAIL
                                         : MILTER_SMFIP_NORCPT))
               != 0;
        nr = (s
              & (ms->st == FILTER_MAIL ? MILTER_SMFIP_NR_MAIL
                                       : MILTER_SMFIP_NR_RCPT))
             != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip)
            rc = milter_enc_envelope(ms->out, cmd,
                                     milter_bracket(tmp, a ? a->str : ""),
                                     a ? (const char *const *) a->argv : NULL);
        break;
    case FILTER_DATA:
        cmd = MILTER_SMFIC_DATA;
        mt = MILTER_SMFIM_DATA;
        if (ms->version < 4) {
            milter_sent(ms, cmd, 0, 0); /* not in the protocol */
            return;
        }
        skip = (s & MILTER_SMFIP_NODATA) != 0;
        nr = (s & MILTER_SMFIP_NR_DATA) != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip)
            rc = milter_enc_simple(ms->out, cmd);
        break;
    case FILTER_HEADER: {
        const char *v;

        cmd = MILTER_SMFIC_HEADER;
        mt = MILTER_SMFIM_EOH;
        tmo = mc->content_timeout;
        if (ms->hdr_seen++ == 0 && a && a->hname
            && strcasecmp(a->hname, "Received") == 0) {
            ms->hdr_hidden = 1;
            milter_sent(ms, cmd, 0, 0); /* our own header */
            return;
        }
        skip = (s & MILTER_SMFIP_NOHDRS) != 0;
        nr = (s & MILTER_SMFIP_NR_HDR) != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip) {
            v = milter_hvalue(ms, tmp, a && a->hvalue ? a->hvalue : "");
            rc =
                v ? milter_enc_header(ms->out, a && a->hname ? a->hname : "", v)
                  : -1;
        }
        break;
    }
    case FILTER_EOH:
        cmd = MILTER_SMFIC_EOH;
        mt = MILTER_SMFIM_EOH;
        tmo = mc->content_timeout;
        skip = (s & MILTER_SMFIP_NOEOH) != 0;
        nr = (s & MILTER_SMFIP_NR_EOH) != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip)
            rc = milter_enc_simple(ms->out, cmd);
        break;
    case FILTER_BODY:
        ms->bsrc = a ? a->data : NULL;
        ms->blen = a && a->data ? a->len : 0;
        milter_body_step(ms);
        return;
    case FILTER_EOM:
        milter_eom_step(ms);
        return;
    case FILTER_ABORT:
        milter_txn_reset(ms);
        if (milter_enc_simple(ms->out, MILTER_SMFIC_ABORT) < 0) {
            milter_fail(ms, 0, "output buffer full");
            return;
        }
        milter_sent(ms, MILTER_SMFIC_ABORT, 0, 0);
        return;
    case FILTER_UNKNOWN:
        cmd = MILTER_SMFIC_UNKNOWN;
        mt = MILTER_M_UNKNOWN;
        if (ms->version < 3) {
            milter_sent(ms, cmd, 0, 0);
            return;
        }
        skip = (s & MILTER_SMFIP_NOUNKNOWN) != 0;
        nr = (s & MILTER_SMFIP_NR_UNKN) != 0;
        rc = milter_put_macros(ms, mt, cmd);
        if (rc == 0 && !skip)
            rc = milter_enc_unknown(ms->out, a && a->str ? a->str : "");
        break;
    }
    if (rc < 0) {
        milter_fail(ms, 0, "output buffer full");
        return;
    }
    milter_sent(ms, cmd, !skip && !nr, tmo);
}

/* ------------------------------------------------------------------ */
/* replies */

static int
milter_is_conn_stage(enum filter_stage st)
{
    return st == FILTER_CONNECT || st == FILTER_HELO;
}

/* The milter decided for the whole SMTP session (at CONNECT/HELO, or
 * SMFIR_SHUTDOWN): close the connection (libmilter closes it too) and
 * give r now and at every later stage. */
static void
milter_conn_decided(struct milter_sess *ms, struct filter_reply *r)
{
    ms->conn_verdict = r->verdict;
    ms->conn_code = r->code;
    snprintf(ms->conn_dsn, sizeof(ms->conn_dsn), "%s", r->dsn ? r->dsn : "");
    free(ms->conn_text);
    ms->conn_text = r->text ? xstrdup(r->text) : NULL;
    milter_disconnect(ms);
    milter_enter(ms, MILTER_S_DONE);
    milter_answer_conn(ms);
}

static uint32_t
milter_mod_action(int cmd)
{
    switch (cmd) {
    case MILTER_SMFIR_ADDHEADER:
    case MILTER_SMFIR_INSHEADER:
        return MILTER_SMFIF_ADDHDRS;
    case MILTER_SMFIR_CHGHEADER:
        return MILTER_SMFIF_CHGHDRS;
    case MILTER_SMFIR_REPLBODY:
        return MILTER_SMFIF_CHGBODY;
    case MILTER_SMFIR_ADDRCPT:
        return MILTER_SMFIF_ADDRCPT;
    case MILTER_SMFIR_ADDRCPT_PAR:
        return MILTER_SMFIF_ADDRCPT_PAR;
    case MILTER_SMFIR_DELRCPT:
        return MILTER_SMFIF_DELRCPT;
    case MILTER_SMFIR_CHGFROM:
        return MILTER_SMFIF_CHGFROM;
    case MILTER_SMFIR_QUARANTINE:
        return MILTER_SMFIF_QUARANTINE;
    }
    return 0;
}

/* "<a@b>" -> "a@b" */
static char *
milter_unbracket(const char *s)
{
    size_t n = strlen(s);

    if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
        return xstrndup(s + 1, n - 2);
    return xstrdup(s);
}

/* A modification at EOM into ms->mods; -1 when over the bounds. */
static int
milter_add_mod(struct milter_sess *ms, const struct milter_reply *r)
{
    struct filter_mod *m = NULL;
    char *v = NULL;
    size_t bytes = r->len + (r->name ? strlen(r->name) : 0);
    int lead = !(ms->steps & MILTER_SMFIP_HDR_LEADSPC);
    /* The milter counts header fields without our hidden Received:, the
     * queued message has it first: shift positions past it, as Postfix's
     * cleanup does. */
    int shift_ins = ms->hdr_hidden;
    int shift_chg =
        ms->hdr_hidden && r->name && strcasecmp(r->name, "Received") == 0;

    if (ms->nmods >= MILTER_MODS_MAX
        || ms->mod_bytes + bytes > MILTER_MOD_BYTES_MAX)
        return -1;
    switch (r->cmd) {
    case MILTER_SMFIR_ADDHEADER:
    case MILTER_SMFIR_INSHEADER:
    case MILTER_SMFIR_CHGHEADER:
        /* 32 unsigned bits on the wire; ours is an int that may get 1
         * added (shift_*): an index that does not fit is malformed, not
         * wrapped around (2^32-1 would become the first field) */
        if (r->index >= INT_MAX)
            return -1;
        if (r->cmd == MILTER_SMFIR_CHGHEADER && r->value[0] == '\0') {
            m = filter_mod_new(FILTER_MOD_CHANGE_HEADER, r->name, NULL, 0,
                               (r->index == 0 ? 1 : (int) r->index) + shift_chg,
                               NULL);
            break;
        }
        v = xmalloc(r->len + 2);
        snprintf(v, r->len + 2, "%s%s", lead ? " " : "", r->value);
        if (r->cmd == MILTER_SMFIR_ADDHEADER)
            m = filter_mod_new(FILTER_MOD_ADD_HEADER, r->name, v, strlen(v), 0,
                               NULL);
        else if (r->cmd == MILTER_SMFIR_INSHEADER)
            m = filter_mod_new(FILTER_MOD_INSERT_HEADER, r->name, v, strlen(v),
                               (int) r->index + shift_ins, NULL);
        else
            m = filter_mod_new(FILTER_MOD_CHANGE_HEADER, r->name, v, strlen(v),
                               (r->index == 0 ? 1 : (int) r->index) + shift_chg,
                               NULL);
        break;
    case MILTER_SMFIR_REPLBODY:
        m = filter_mod_new(FILTER_MOD_REPLACE_BODY, NULL, r->data, r->len, 0,
                           NULL);
        break;
    case MILTER_SMFIR_ADDRCPT:
    case MILTER_SMFIR_ADDRCPT_PAR:
        v = milter_unbracket(r->name);
        m = filter_mod_new(FILTER_MOD_ADD_RCPT, NULL, v, strlen(v), 0,
                           r->value && *r->value ? r->value : NULL);
        break;
    case MILTER_SMFIR_DELRCPT:
        v = milter_unbracket(r->name);
        m = filter_mod_new(FILTER_MOD_DELETE_RCPT, NULL, v, strlen(v), 0, NULL);
        break;
    case MILTER_SMFIR_CHGFROM:
        v = milter_unbracket(r->name);
        m = filter_mod_new(FILTER_MOD_CHANGE_SENDER, NULL, v, strlen(v), 0,
                           r->value && *r->value ? r->value : NULL);
        break;
    }
    free(v);
    if (m == NULL)
        return -1;
    *ms->mtail = m;
    ms->mtail = &m->next;
    ms->nmods++;
    ms->mod_bytes += bytes;
    return 0;
}

/* A final reply to the current stage. */
static void
milter_final(struct milter_sess *ms, const struct milter_reply *mr)
{
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};
    int at_eom = ms->cur_cmd == MILTER_SMFIC_BODYEOB;
    int conn = milter_is_conn_stage(ms->st);
    struct buf *err;
    char safe[256];

    switch (mr->cmd) {
    case MILTER_SMFIR_CONTINUE:
        break;
    case MILTER_SMFIR_ACCEPT:
        r.verdict = FILTER_ACCEPT;
        if (conn) {
            milter_disconnect(ms);
            ms->conn_verdict = FILTER_CONTINUE;
            milter_enter(ms, MILTER_S_DONE);
            milter_answer(ms, &r);
            return;
        }
        break;
    case MILTER_SMFIR_DISCARD:
        if (conn) {
            log_warning("milter %s: DISCARD action is not allowed for "
                        "connect or helo",
                        ms->mc->name);
            break;
        }
        r.verdict = FILTER_DISCARD;
        break;
    case MILTER_SMFIR_REJECT:
        r.verdict = FILTER_REJECT;
        r.code = 550;
        r.dsn = "5.7.1";
        r.text = "Command rejected";
        break;
    case MILTER_SMFIR_TEMPFAIL:
        r.verdict = FILTER_TEMPFAIL;
        r.code = 451;
        r.dsn = "4.7.1";
        r.text = "Service unavailable - try again later";
        break;
    case MILTER_SMFIR_SHUTDOWN:
        r.verdict = FILTER_TEMPFAIL;
        r.code = 421;
        r.dsn = "4.7.0";
        r.text = "Server closing connection";
        milter_txn_reset(ms);
        milter_conn_decided(ms, &r);
        return;
    case MILTER_SMFIR_REPLYCODE:
        err = buf_new(128, 1024);
        if (milter_parse_replycode(mr->name, &r.code, ms->rdsn,
                                   sizeof(ms->rdsn), ms->rtext, err)
            < 0) {
            milter_fail(
                ms, 0, "%s: %s", buf_data(err),
                log_safe(mr->name, strlen(mr->name), safe, sizeof(safe)));
            buf_free(err);
            return;
        }
        buf_free(err);
        r.verdict = r.code >= 500 ? FILTER_REJECT : FILTER_TEMPFAIL;
        r.dsn = ms->rdsn[0] ? ms->rdsn : NULL;
        r.text = buf_data(ms->rtext);
        break;
    default:
        milter_fail(ms, 0, "unexpected reply %s to %s",
                    milter_reply_name(mr->cmd), milter_cmd_name(ms->cur_cmd));
        return;
    }
    if (buf_len(ms->in) > 0) {
        /* more packets after a final reply: out of sync; this stage
         * still gets the reply, later ones the default action */
        milter_conf_failed(ms->mc, ev_now(ms->loop), 0,
                           "unexpected data after a reply");
        milter_disconnect(ms);
        milter_enter(ms, MILTER_S_FAILED);
    } else {
        ev_timer_stop(ms->loop, &ms->tmr);
        milter_enter(ms, MILTER_S_READY);
        if (buf_len(ms->out) > 0)
            milter_timer(ms, ms->mc->command_timeout);
    }
    if (conn && r.verdict != FILTER_CONTINUE) {
        milter_conn_decided(ms, &r);
        return;
    }
    if (at_eom) {
        if (r.verdict == FILTER_CONTINUE || r.verdict == FILTER_ACCEPT) {
            if (ms->quarantine) {
                r.verdict = FILTER_HOLD;
                buf_sets(ms->rtext, ms->quarantine);
                r.text = buf_data(ms->rtext);
            }
            r.mods = ms->mods;
            ms->mods = NULL;
        }
        milter_txn_reset(ms);
    }
    milter_answer(ms, &r);
}

/* One reply packet while waiting (MILTER_S_REPLY). 1: keep reading. */
static int
milter_on_reply(struct milter_sess *ms, int cmd, const char *data, size_t len)
{
    struct milter_reply mr;
    struct buf *err = buf_new(128, 1024);
    uint32_t need;

    if (milter_dec_reply(cmd, data, len, &mr, err) < 0) {
        char e[256];

        snprintf(e, sizeof(e), "%s", buf_data(err));
        buf_free(err);
        milter_fail(ms, 0, "%s", e);
        return 0;
    }
    buf_free(err);
    need = milter_mod_action(cmd);
    if (need && !(ms->actions & need)) {
        milter_fail(ms, 0, "%s: action not negotiated", milter_reply_name(cmd));
        return 0;
    }
    switch (cmd) {
    case MILTER_SMFIR_PROGRESS:
        milter_timer(ms, ms->cur_cmd == MILTER_SMFIC_BODYEOB
                                 || ms->cur_cmd == MILTER_SMFIC_BODY
                                 || ms->cur_cmd == MILTER_SMFIC_HEADER
                                 || ms->cur_cmd == MILTER_SMFIC_EOH
                             ? ms->mc->content_timeout
                             : ms->mc->command_timeout);
        return 1;
    case MILTER_SMFIR_QUARANTINE:
        free(ms->quarantine);
        ms->quarantine = xstrndup(mr.name, 200);
        return 1;
    case MILTER_SMFIR_ADDHEADER:
    case MILTER_SMFIR_INSHEADER:
    case MILTER_SMFIR_CHGHEADER:
    case MILTER_SMFIR_REPLBODY:
    case MILTER_SMFIR_ADDRCPT:
    case MILTER_SMFIR_ADDRCPT_PAR:
    case MILTER_SMFIR_DELRCPT:
    case MILTER_SMFIR_CHGFROM:
        if (ms->cur_cmd != MILTER_SMFIC_BODYEOB) {
            milter_fail(ms, 0, "unexpected reply %s to %s",
                        milter_reply_name(cmd), milter_cmd_name(ms->cur_cmd));
            return 0;
        }
        if (milter_add_mod(ms, &mr) < 0) {
            milter_fail(ms, 0, "bad or too many modifications (%s)",
                        milter_reply_name(cmd));
            return 0;
        }
        return 1;
    case MILTER_SMFIR_SKIP:
    case MILTER_SMFIR_CONTINUE:
        if (ms->cur_cmd == MILTER_SMFIC_BODY) {
            /* a body chunk: go on with this stage */
            if (cmd == MILTER_SMFIR_SKIP)
                ms->skip_body = 1;
            if (buf_len(ms->in) > 0) {
                milter_fail(ms, 0, "unexpected data after a reply");
                return 0;
            }
            ev_timer_stop(ms->loop, &ms->tmr);
            milter_enter(ms, MILTER_S_READY);
            if (ms->st == FILTER_EOM)
                milter_send_eob(ms);
            else
                milter_body_step(ms);
            return 0;
        }
        mr.cmd = MILTER_SMFIR_CONTINUE;
        milter_final(ms, &mr);
        return 0;
    default:
        milter_final(ms, &mr);
        return 0;
    }
}

/* The SMFIC_OPTNEG reply. */
static void
milter_on_optneg(struct milter_sess *ms, int cmd, const char *data, size_t len)
{
    struct milter_optneg o;
    struct buf *err;
    uint32_t my_version = (uint32_t) ms->mc->protocol;
    size_t i;

    if (cmd != MILTER_SMFIC_OPTNEG) {
        milter_fail(ms, 1, "unexpected reply \"%c\" in initial handshake",
                    cmd >= ' ' && cmd < 127 ? cmd : '?');
        return;
    }
    err = buf_new(128, 1024);
    if (milter_dec_optneg(data, len, &o, err) < 0) {
        char e[256];

        snprintf(e, sizeof(e), "%s", buf_data(err));
        buf_free(err);
        milter_fail(ms, 1, "%s", e);
        return;
    }
    buf_free(err);
    if (o.version > my_version) {
        milter_fail(ms, 1,
                    "protocol version %u conflict with MTA protocol "
                    "version %u",
                    o.version, my_version);
        return;
    }
    if (o.version < 2) {
        milter_fail(ms, 1, "unsupported protocol version %u", o.version);
        return;
    }
    if ((o.actions & MILTER_SMFIF_ALL) != o.actions) {
        milter_fail(ms, 1,
                    "request mask 0x%x conflict with MTA request mask 0x%x",
                    o.actions, MILTER_SMFIF_ALL);
        return;
    }
    if (o.unknown_symlists)
        log_warning("milter %s: ignoring %d macro lists of unknown type",
                    ms->mc->name, o.unknown_symlists);
    ms->version = o.version;
    ms->actions = o.actions;
    ms->steps = o.steps;
    for (i = 0; i < MILTER_SMFIM_N; i++)
        if (o.symlist[i])
            ms->have_symlists = 1;
    if (ms->have_symlists)
        for (i = 0; i < MILTER_M_N; i++)
            ms->symlists[i] = milter_strv_split(
                i < MILTER_SMFIM_N && o.symlist[i] ? o.symlist[i] : "");
    if (buf_len(ms->in) > 0) {
        milter_fail(ms, 1, "unexpected data after the handshake");
        return;
    }
    ev_timer_stop(ms->loop, &ms->tmr);
    milter_conf_ok(ms->mc);
    milter_enter(ms, MILTER_S_READY);
    if (ms->call)
        milter_run(ms);
}

/* More of the milter's output is due before Sluice sends anything: ACK
 * what came at once. A milter that writes a reply in pieces, or several
 * packets for SMFIC_BODYEOB, with Nagle on (libmilter does not set
 * TCP_NODELAY) holds each piece until the last is ACKed, and Linux delays
 * that ACK by 40 ms unless told otherwise. When the reply is complete,
 * Sluice's next command carries the ACK, so nothing is set then. */
static void
milter_more_coming(struct milter_sess *ms)
{
    if (ms->quickack)
        net_quickack(ms->fd);
}

/* Parse what was read. */
static void
milter_input(struct milter_sess *ms)
{
    for (;;) {
        struct buf *err;
        const char *data;
        size_t dlen, used;
        int cmd, rc;
        char *copy;

        if (buf_len(ms->in) == 0) {
            milter_more_coming(ms); /* a reply that is not the last */
            return;
        }
        if (ms->state != MILTER_S_OPTNEG && ms->state != MILTER_S_REPLY) {
            milter_fail(ms, 0, "unexpected data from milter");
            return;
        }
        err = buf_new(128, 1024);
        rc = milter_dec_frame(buf_data(ms->in), buf_len(ms->in), MILTER_PKT_MAX,
                              &cmd, &data, &dlen, &used, err);
        if (rc < 0) {
            char e[256];

            snprintf(e, sizeof(e), "%s", buf_data(err));
            buf_free(err);
            milter_fail(ms, ms->state == MILTER_S_OPTNEG, "%s", e);
            return;
        }
        buf_free(err);
        if (rc == 0) {
            milter_more_coming(ms); /* the rest of a packet */
            return;
        }
        /* the packet is consumed first (the handlers check for more
         * input); its data lives in a copy while handled */
        copy = xmemdup(data, dlen);
        buf_consume(ms->in, used);
        if (ms->state == MILTER_S_OPTNEG) {
            milter_on_optneg(ms, cmd, copy, dlen);
            free(copy);
            return; /* any call is answered or pending */
        }
        rc = milter_on_reply(ms, cmd, copy, dlen);
        free(copy);
        if (!rc)
            return; /* answered (ms may be gone) or waiting again */
    }
}

/* ------------------------------------------------------------------ */
/* I/O */

static const char *
milter_wait_name(const struct milter_sess *ms)
{
    return ms->state == MILTER_S_OPTNEG ? "SMFIC_OPTNEG"
                                        : milter_cmd_name(ms->cur_cmd);
}

static void
milter_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct milter_sess *ms = w->data;
    char *p = buf_reserve(ms->in, 65536);
    ssize_t n;

    if (p == NULL) {
        milter_fail(ms, 0, "input buffer full");
        return;
    }
    n = read(ms->fd, p, 65536);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        const char *why = n < 0 ? strerror(errno) : "Connection closed";
        int waiting =
            ms->state == MILTER_S_OPTNEG || ms->state == MILTER_S_REPLY;

        if (!waiting)
            milter_fail(ms, 0, "connection closed by the milter");
        else if (buf_len(ms->in) == 0)
            milter_fail(ms, ms->state == MILTER_S_OPTNEG,
                        "can't read %s reply packet header: %s",
                        milter_wait_name(ms), why);
        else
            milter_fail(ms, 0, "EOF while reading %s reply packet: %s",
                        milter_wait_name(ms), why);
        return;
    }
    buf_commit(ms->in, (size_t) n);
    milter_input(ms);
}

static void
milter_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct milter_sess *ms = w->data;
    ssize_t n;

    if (ms->state == MILTER_S_CONNECT) {
        int e = 0;
        socklen_t el = sizeof(e);

        if (getsockopt(ms->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        if (e != 0) {
            milter_fail(ms, 1, "connect to Milter service: %s", strerror(e));
            return;
        }
        milter_enter(ms, MILTER_S_OPTNEG);
        milter_update_io(ms);
    }
    if (buf_len(ms->out) == 0) {
        milter_update_io(ms);
        return;
    }
    n = send(ms->fd, buf_data(ms->out), buf_len(ms->out), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        milter_fail(ms, 0, "error writing command: %s", strerror(errno));
        return;
    }
    buf_consume(ms->out, (size_t) n);
    milter_update_io(ms);
    if (ms->state == MILTER_S_READY || ms->state == MILTER_S_FLUSH) {
        if (buf_len(ms->out) > 0)
            milter_timer(ms, ms->mc->command_timeout);
        else
            ev_timer_stop(ms->loop, &ms->tmr);
    }
    if (ms->state == MILTER_S_FLUSH && buf_len(ms->out) < MILTER_OUT_LOW) {
        milter_enter(ms, MILTER_S_READY);
        milter_answer_continue(ms);
    }
}

static void
milter_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct milter_sess *ms = w->data;

    switch (ms->state) {
    case MILTER_S_CONNECT:
        milter_fail(ms, 1, "connect to Milter service: Connection timed out");
        return;
    case MILTER_S_OPTNEG:
    case MILTER_S_REPLY:
        milter_fail(ms, 1, "read timeout waiting for %s reply",
                    milter_wait_name(ms));
        return;
    case MILTER_S_READY:
    case MILTER_S_FLUSH:
        milter_fail(ms, 1, "write timeout");
        return;
    case MILTER_S_FAILED:
    case MILTER_S_DONE:
        return;
    }
}

/* ------------------------------------------------------------------ */
/* filter_ops */

static void *
milter_open(void *conf, const struct filter_env *env)
{
    struct milter_conf *mc = conf;
    struct milter_sess *ms;

    if (mc->loop == NULL)
        return NULL;
    ms = xcalloc(1, sizeof(*ms));
    ms->mc = mc;
    ms->env = env;
    ms->loop = mc->loop;
    ms->fd = -1;
    ms->out = buf_new(4096, MILTER_OUT_CAP);
    ms->in = buf_new(4096, MILTER_IN_CAP);
    ms->body = buf_new(4096, MILTER_CHUNK_SIZE);
    ms->rtext = buf_new(256, MILTER_TEXT_MAX);
    ms->tmp = buf_new(256, MILTER_OUT_CAP);
    ms->mtail = &ms->mods;
    ev_io_init(&ms->rio, milter_read_cb, 0, EV_READ);
    ev_io_init(&ms->wio, milter_write_cb, 0, EV_WRITE);
    ev_timer_init(&ms->tmr, milter_timer_cb, 0., 0.);
    ms->rio.data = ms->wio.data = ms->tmr.data = ms;
    ms->state = MILTER_S_CONNECT;

    if (milter_conf_down(mc, ev_now(ms->loop))) {
        milter_enter(ms, MILTER_S_FAILED);
        return ms;
    }
    ms->fd = net_connect((const struct sockaddr *) &mc->sa, mc->salen);
    if (ms->fd < 0) {
        milter_fail(ms, 1, "connect to Milter service: %s", strerror(errno));
        return ms;
    }
    ms->quickack = mc->sa.ss_family == AF_INET || mc->sa.ss_family == AF_INET6;
    ev_io_set(&ms->rio, ms->fd, EV_READ);
    ev_io_set(&ms->wio, ms->fd, EV_WRITE);
    if (milter_enc_optneg(ms->out, (uint32_t) mc->protocol, MILTER_SMFIF_ALL,
                          milter_proto_steps(mc->protocol))
        < 0)
        log_panic("milter %s: cannot encode SMFIC_OPTNEG", mc->name);
    milter_timer(ms, mc->connect_timeout);
    milter_update_io(ms);
    return ms;
}

static void
milter_stage(void *state, struct filter_call *call, enum filter_stage st,
             const struct filter_args *args)
{
    struct milter_sess *ms = state;

    ms->call = call;
    ms->st = st;
    ms->args = args;
    switch (ms->state) {
    case MILTER_S_FAILED:
        milter_answer_default(ms);
        return;
    case MILTER_S_DONE:
        milter_answer_conn(ms);
        return;
    case MILTER_S_CONNECT:
    case MILTER_S_OPTNEG:
        return; /* served after the negotiation */
    case MILTER_S_READY:
        milter_run(ms);
        return;
    case MILTER_S_REPLY:
    case MILTER_S_FLUSH:
        log_panic("milter %s: stage %s while busy", ms->mc->name,
                  filter_stage_name(st));
    }
}

static void
milter_close(void *state)
{
    struct milter_sess *ms = state;
    size_t i;

    if (ms->fd >= 0 && ms->state != MILTER_S_CONNECT) {
        /* best effort: what fits in the socket buffer now */
        if (milter_enc_simple(ms->out, MILTER_SMFIC_QUIT) == 0)
            (void) send(ms->fd, buf_data(ms->out), buf_len(ms->out),
                        MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    milter_disconnect(ms);
    milter_txn_reset(ms);
    for (i = 0; i < MILTER_M_N; i++)
        milter_strv_free(ms->symlists[i]);
    free(ms->conn_text);
    buf_free(ms->out);
    buf_free(ms->in);
    buf_free(ms->body);
    buf_free(ms->rtext);
    buf_free(ms->tmp);
    free(ms);
}

static int
milter_start(void *conf, void *loop, struct buf *err)
{
    struct milter_conf *mc = conf;

    mc->loop = loop;
    return 0;
}

static void
milter_stop(void *conf)
{
    struct milter_conf *mc = conf;

    mc->loop = NULL;
}

static int
milter_modifies_content(void *state)
{
    struct milter_sess *ms = state;

    switch (ms->state) {
    case MILTER_S_READY:
    case MILTER_S_REPLY:
    case MILTER_S_FLUSH:
        return (ms->actions
                & (MILTER_SMFIF_ADDHDRS | MILTER_SMFIF_CHGHDRS
                   | MILTER_SMFIF_CHGBODY))
               != 0;
    case MILTER_S_CONNECT:
    case MILTER_S_OPTNEG:
    case MILTER_S_FAILED:
    case MILTER_S_DONE:
        return 0;
    }
    return 0;
}

const struct filter_ops milter_filter_ops = {
    "milter",
    milter_open,
    milter_stage,
    milter_close,
    milter_start,
    milter_stop,
    milter_modifies_content,
    NULL, /* workers: the milter's own process */
};
