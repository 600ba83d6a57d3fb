/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tmilter.c - one configurable libmilter test milter for the system
 * tests (tests/system/t_milter*.sh). Every behaviour is chosen on the
 * command line; every callback it receives is logged, one line each,
 * so a test can assert what the milter saw.
 *
 *   tmilter -s unix:/path|inet:PORT@127.0.0.1 [-p PIDFILE] [-l LOGFILE]
 *     -r STAGE:REPLY[:CODE:DSN:TEXT]  reply at STAGE (connect helo mail
 *        rcpt data header eoh body eom unknown); REPLY continue accept
 *        reject tempfail discard replycode quarantine skip. With CODE,
 *        DSN and TEXT the milter sets its own SMTP reply (smfi_setreply;
 *        TEXT with '|' gives a multi-line reply, smfi_setmlreply);
 *        replycode rejects (5xx) or tempfails (4xx) with that reply.
 *        quarantine is an end-of-message action (TEXT is the reason).
 *     -m REGEX       rcpt replies only for addresses matching REGEX
 *     -a NAME:VALUE  add header            -i IDX:NAME:VALUE insert header
 *     -c NAME:IDX:VALUE change header (empty VALUE deletes it)
 *     -b TEXT        replace the body      -f TEXT append TEXT to the body
 *     -R ADDR[ ARGS] add recipient (with ESMTP args when given)
 *     -D ADDR        delete recipient      -S ADDR[ ARGS] change sender
 *     -q REASON      quarantine at eom     -P N  N progress replies at eom
 *     -n FLAGS       negotiation, comma separated: noconnect nohelo nomail
 *        norcpt nobody nohdrs noeoh nounknown nodata nr_conn nr_helo
 *        nr_mail nr_rcpt nr_data nr_unkn nr_eoh nr_body nr_hdr nr_all
 *        (every nr_* but eom, as rspamd asks) hdr_leadspc rcpt_rej skip
 *     -M STAGE:MACROS  macros to ask for at STAGE (connect helo mail rcpt
 *        data eoh eom), smfi_setsymlist: "{client_addr} i"
 *     -x STAGE  crash (abort) at STAGE     -w STAGE  hang at STAGE
 *     -g STAGE:KIND  no libmilter: a raw protocol speaker that answers
 *        "continue" everywhere but writes garbage at STAGE (negotiate,
 *        or a stage above). KIND: huge (length 0x7fffffff), zero (a
 *        packet of length 0), badcode (unknown reply 'Z'), badreply
 *        (replycode with no code), text (a text line), close (hang up).
 * TEXT arguments take C escapes: \n (CRLF in bodies, LF in headers),
 * \t, \\. ADDR/ARGS are split at the first space.
 *
 * Log lines: "STAGE ARGS | conn=N MACRO=<value> ...", e.g.
 *   connect host=<localhost> family=inet addr=<127.0.0.1> | conn=1 j=<...>
 *   header Subject=< hi>      (the value exactly as received)
 *   body len=12 <Hello\r\n...>
 * The macros listed are the known ones with a value at that moment
 * (libmilter also returns values sent at earlier stages).
 * The pid file is written once the socket listens.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#define LOG_BODY_MAX   4096
#define BODY_MAX       (64u * 1024 * 1024)
#define RAW_PACKET_MAX (1024u * 1024)

enum stage {
    ST_NEGOTIATE,
    ST_CONNECT,
    ST_HELO,
    ST_MAIL,
    ST_RCPT,
    ST_DATA,
    ST_HEADER,
    ST_EOH,
    ST_BODY,
    ST_EOM,
    ST_UNKNOWN,
    ST_ABORT,
    ST_CLOSE,
    ST_NONE
};

static const char *const stage_names[] = {
    "negotiate", "connect", "helo", "mail",    "rcpt",  "data",  "header",
    "eoh",       "body",    "eom",  "unknown", "abort", "close", NULL,
};

enum reply_kind {
    R_CONTINUE,
    R_ACCEPT,
    R_REJECT,
    R_TEMPFAIL,
    R_DISCARD,
    R_REPLYCODE,
    R_QUARANTINE,
    R_SKIP
};

static const char *const reply_names[] = {
    "continue",  "accept",     "reject", "tempfail", "discard",
    "replycode", "quarantine", "skip",   NULL,
};

struct reply {
    int set;
    enum reply_kind kind;
    char *code, *dsn, *text; /* NULL when not given */
};

struct hdr_op {
    char *name, *value;
    int idx;
};

struct strlist {
    char **v;
    size_t n;
};

/* Options, set once in main() before any thread runs. */
static struct reply o_reply[ST_NONE];
static regex_t o_rcpt_re;
static int o_rcpt_re_set;
static struct hdr_op *o_add, *o_ins, *o_chg;
static size_t o_nadd, o_nins, o_nchg;
static char *o_body, *o_footer;
static size_t o_body_len, o_footer_len;
static struct strlist o_addrcpt, o_delrcpt;
static char *o_chgfrom;
static char *o_quarantine;
static int o_progress;
static unsigned long o_steps;
static char *o_symlist[SMFIM_LAST + 1];
static enum stage o_crash = ST_NONE, o_hang = ST_NONE, o_garbage = ST_NONE;
static char *o_garbage_kind;

static int log_fd = -1;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static int conn_seq;

struct conn {
    int id;
    unsigned char *body; /* collected for -f */
    size_t len, cap;
    int overflow;
};

static const char *const known_macros[] = {
    "j",
    "_",
    "{daemon_name}",
    "{daemon_addr}",
    "v",
    "{client_addr}",
    "{client_port}",
    "{client_name}",
    "{client_ptr}",
    "{client_resolve}",
    "{client_connections}",
    "{tls_version}",
    "{cipher}",
    "{cipher_bits}",
    "{cert_subject}",
    "{cert_issuer}",
    "{auth_type}",
    "{auth_authen}",
    "{auth_author}",
    "i",
    "{mail_mailer}",
    "{mail_host}",
    "{mail_addr}",
    "{rcpt_mailer}",
    "{rcpt_host}",
    "{rcpt_addr}",
    "{if_name}",
    "{if_addr}",
    NULL,
};

static void
die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tmilter: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL)
        die("out of memory");
    return p;
}

static void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        die("out of memory");
    return p;
}

static char *
xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL)
        die("out of memory");
    return p;
}

/* ------------------------------------------------------------ log lines */

struct line {
    char *p;
    size_t len, cap;
};

static void
line_add(struct line *l, const void *p, size_t n)
{
    if (l->len + n + 2 > l->cap) {
        l->cap = (l->len + n + 2) * 2;
        l->p = xrealloc(l->p, l->cap);
    }
    memcpy(l->p + l->len, p, n);
    l->len += n;
    l->p[l->len] = '\0';
}

static void
line_printf(struct line *l, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("out of memory");
    line_add(l, s, (size_t) n);
    free(s);
}

/* Bytes with \r \n \t \\ and \xHH escapes, at most max of them. */
static void
line_escaped(struct line *l, const unsigned char *p, size_t n, size_t max)
{
    size_t i;
    char tmp[8];

    for (i = 0; i < n && i < max; i++) {
        unsigned char c = p[i];

        if (c == '\r')
            line_add(l, "\\r", 2);
        else if (c == '\n')
            line_add(l, "\\n", 2);
        else if (c == '\t')
            line_add(l, "\\t", 2);
        else if (c == '\\')
            line_add(l, "\\\\", 2);
        else if (c < 0x20 || c >= 0x7f) {
            snprintf(tmp, sizeof(tmp), "\\x%02x", c);
            line_add(l, tmp, 4);
        } else
            line_add(l, &c, 1);
    }
    if (n > max)
        line_add(l, "...", 3);
}

static void
line_flush(struct line *l)
{
    line_add(l, "\n", 1);
    pthread_mutex_lock(&log_mu);
    if (log_fd >= 0 && write(log_fd, l->p, l->len) < 0)
        perror("tmilter: log");
    pthread_mutex_unlock(&log_mu);
    free(l->p);
    l->p = NULL;
    l->len = l->cap = 0;
}

/* --------------------------------------------------------- connections */

static struct conn *
conn_of(SMFICTX *ctx)
{
    struct conn *c = smfi_getpriv(ctx);

    if (c == NULL) {
        c = xmalloc(sizeof(*c));
        memset(c, 0, sizeof(*c));
        pthread_mutex_lock(&log_mu);
        c->id = ++conn_seq;
        pthread_mutex_unlock(&log_mu);
        smfi_setpriv(ctx, c);
    }
    return c;
}

/* Finish a log line with the connection number and the macros, then
 * crash or hang when this is the stage asked for. */
static void
stage_log(SMFICTX *ctx, enum stage st, struct line *l)
{
    struct conn *c = conn_of(ctx);
    size_t i;

    line_printf(l, " | conn=%d", c->id);
    for (i = 0; known_macros[i] != NULL; i++) {
        char *v = smfi_getsymval(ctx, (char *) known_macros[i]);

        if (v != NULL)
            line_printf(l, " %s=<%s>", known_macros[i], v);
    }
    line_flush(l);
    if (o_crash == st) {
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    if (o_hang == st)
        for (;;)
            sleep(60);
}

static const unsigned long nr_bit[ST_NONE] = {
    [ST_CONNECT] = SMFIP_NR_CONN, [ST_HELO] = SMFIP_NR_HELO,
    [ST_MAIL] = SMFIP_NR_MAIL,    [ST_RCPT] = SMFIP_NR_RCPT,
    [ST_DATA] = SMFIP_NR_DATA,    [ST_HEADER] = SMFIP_NR_HDR,
    [ST_EOH] = SMFIP_NR_EOH,      [ST_BODY] = SMFIP_NR_BODY,
    [ST_UNKNOWN] = SMFIP_NR_UNKN,
};

static int
set_reply(SMFICTX *ctx, const struct reply *r)
{
    char *lines[6] = {0};
    char *text, *p;
    int n = 0, rc;

    if (r->code == NULL)
        return 0;
    if (r->text == NULL || strchr(r->text, '|') == NULL)
        return smfi_setreply(ctx, r->code, r->dsn, r->text);
    text = xstrdup(r->text);
    for (p = strtok(text, "|"); p != NULL && n < 6; p = strtok(NULL, "|"))
        lines[n++] = p;
    switch (n) {
    case 1:
        rc = smfi_setmlreply(ctx, r->code, r->dsn, lines[0], NULL);
        break;
    case 2:
        rc = smfi_setmlreply(ctx, r->code, r->dsn, lines[0], lines[1], NULL);
        break;
    case 3:
        rc = smfi_setmlreply(ctx, r->code, r->dsn, lines[0], lines[1], lines[2],
                             NULL);
        break;
    case 4:
        rc = smfi_setmlreply(ctx, r->code, r->dsn, lines[0], lines[1], lines[2],
                             lines[3], NULL);
        break;
    default:
        rc = smfi_setmlreply(ctx, r->code, r->dsn, lines[0], lines[1], lines[2],
                             lines[3], lines[4], NULL);
        break;
    }
    free(text);
    return rc;
}

static void
log_note(SMFICTX *ctx, const char *fmt, ...)
{
    struct line l = {0};
    va_list ap;
    char *s;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        die("out of memory");
    va_end(ap);
    line_printf(&l, "note %s | conn=%d", s, conn_of(ctx)->id);
    free(s);
    line_flush(&l);
}

/* The configured answer for a stage; SMFIS_NOREPLY where no reply was
 * negotiated (libmilter then writes nothing). */
static sfsistat
stage_reply(SMFICTX *ctx, enum stage st, int applies)
{
    const struct reply *r = &o_reply[st];

    if (st < ST_NONE && nr_bit[st] != 0 && (o_steps & nr_bit[st]))
        return SMFIS_NOREPLY;
    if (!r->set || !applies)
        return SMFIS_CONTINUE;
    if (r->kind != R_CONTINUE && r->kind != R_ACCEPT && r->kind != R_DISCARD
        && r->kind != R_SKIP && r->kind != R_QUARANTINE
        && set_reply(ctx, r) != MI_SUCCESS)
        log_note(ctx, "smfi_setreply failed");
    switch (r->kind) {
    case R_CONTINUE:
        return SMFIS_CONTINUE;
    case R_ACCEPT:
        return SMFIS_ACCEPT;
    case R_REJECT:
        return SMFIS_REJECT;
    case R_TEMPFAIL:
        return SMFIS_TEMPFAIL;
    case R_DISCARD:
        return SMFIS_DISCARD;
    case R_REPLYCODE:
        return r->code != NULL && r->code[0] == '4' ? SMFIS_TEMPFAIL
                                                    : SMFIS_REJECT;
    case R_QUARANTINE:
        if (smfi_quarantine(ctx, r->text ? r->text : "tmilter") != MI_SUCCESS)
            log_note(ctx, "smfi_quarantine failed");
        return SMFIS_CONTINUE;
    case R_SKIP:
        return SMFIS_SKIP;
    }
    return SMFIS_CONTINUE;
}

/* ----------------------------------------------------------- callbacks */

static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
             unsigned long *pf2, unsigned long *pf3)
{
    struct line l = {0};
    unsigned long actions = 0;
    int i;

    if (o_nadd || o_nins)
        actions |= SMFIF_ADDHDRS;
    if (o_nchg)
        actions |= SMFIF_CHGHDRS;
    if (o_body || o_footer)
        actions |= SMFIF_CHGBODY;
    if (o_addrcpt.n)
        actions |= SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR;
    if (o_delrcpt.n)
        actions |= SMFIF_DELRCPT;
    if (o_chgfrom)
        actions |= SMFIF_CHGFROM;
    if (o_quarantine
        || (o_reply[ST_EOM].set && o_reply[ST_EOM].kind == R_QUARANTINE))
        actions |= SMFIF_QUARANTINE;
    for (i = 0; i <= SMFIM_LAST; i++)
        if (o_symlist[i])
            actions |= SMFIF_SETSYMLIST;
    line_printf(&l, "negotiate actions=0x%lx steps=0x%lx", f0, f1);
    if ((actions & f0) != actions)
        line_printf(&l, " not-offered-actions=0x%lx", actions & ~f0);
    if ((o_steps & f1) != o_steps)
        line_printf(&l, " not-offered-steps=0x%lx", o_steps & ~f1);
    stage_log(ctx, ST_NEGOTIATE, &l);
    *pf0 = actions & f0;
    *pf1 = o_steps & f1;
    *pf2 = 0;
    *pf3 = 0;
    for (i = 0; i <= SMFIM_LAST; i++)
        if (o_symlist[i] && smfi_setsymlist(ctx, i, o_symlist[i]) != MI_SUCCESS)
            log_note(ctx, "smfi_setsymlist %d failed", i);
    return SMFIS_CONTINUE;
}

static sfsistat
cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
    struct line l = {0};
    char addr[INET6_ADDRSTRLEN] = "";
    const char *fam = "unknown";
    int port = 0;

    if (sa != NULL && sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *) sa;

        fam = "inet";
        inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
        port = ntohs(in->sin_port);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) sa;

        fam = "inet6";
        inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
        port = ntohs(in6->sin6_port);
    } else if (sa != NULL && sa->sa_family == AF_UNIX) {
        fam = "unix";
    }
    line_printf(&l, "connect host=<%s> family=%s addr=<%s> port=%d",
                host ? host : "", fam, addr, port);
    stage_log(ctx, ST_CONNECT, &l);
    return stage_reply(ctx, ST_CONNECT, 1);
}

static sfsistat
cb_helo(SMFICTX *ctx, char *name)
{
    struct line l = {0};

    line_printf(&l, "helo <%s>", name ? name : "");
    stage_log(ctx, ST_HELO, &l);
    return stage_reply(ctx, ST_HELO, 1);
}

static void
line_args(struct line *l, char **argv)
{
    int i;

    line_printf(l, "<%s>", argv[0] ? argv[0] : "");
    line_add(l, " args=", 6);
    for (i = 1; argv[0] && argv[i]; i++)
        line_printf(l, "%s%s", i > 1 ? " " : "", argv[i]);
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct line l = {0};
    struct conn *c = conn_of(ctx);

    c->len = 0;
    c->overflow = 0;
    line_add(&l, "mail ", 5);
    line_args(&l, argv);
    stage_log(ctx, ST_MAIL, &l);
    return stage_reply(ctx, ST_MAIL, 1);
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
    struct line l = {0};
    int applies = 1;

    line_add(&l, "rcpt ", 5);
    line_args(&l, argv);
    stage_log(ctx, ST_RCPT, &l);
    if (o_rcpt_re_set)
        applies =
            argv[0] != NULL && regexec(&o_rcpt_re, argv[0], 0, NULL, 0) == 0;
    return stage_reply(ctx, ST_RCPT, applies);
}

static sfsistat
cb_data(SMFICTX *ctx)
{
    struct line l = {0};

    line_add(&l, "data", 4);
    stage_log(ctx, ST_DATA, &l);
    return stage_reply(ctx, ST_DATA, 1);
}

static sfsistat
cb_unknown(SMFICTX *ctx, const char *cmd)
{
    struct line l = {0};

    line_add(&l, "unknown <", 9);
    line_escaped(&l, (const unsigned char *) cmd, strlen(cmd), 1000);
    line_add(&l, ">", 1);
    stage_log(ctx, ST_UNKNOWN, &l);
    return stage_reply(ctx, ST_UNKNOWN, 1);
}

static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct line l = {0};

    line_printf(&l, "header %s=<", name);
    line_escaped(&l, (const unsigned char *) value, strlen(value), 1000);
    line_add(&l, ">", 1);
    stage_log(ctx, ST_HEADER, &l);
    return stage_reply(ctx, ST_HEADER, 1);
}

static sfsistat
cb_eoh(SMFICTX *ctx)
{
    struct line l = {0};

    line_add(&l, "eoh", 3);
    stage_log(ctx, ST_EOH, &l);
    return stage_reply(ctx, ST_EOH, 1);
}

static sfsistat
cb_body(SMFICTX *ctx, unsigned char *p, size_t n)
{
    struct line l = {0};
    struct conn *c = conn_of(ctx);

    line_printf(&l, "body len=%zu <", n);
    line_escaped(&l, p, n, LOG_BODY_MAX);
    line_add(&l, ">", 1);
    stage_log(ctx, ST_BODY, &l);
    if (o_footer && !c->overflow) {
        if (c->len + n > BODY_MAX) {
            c->overflow = 1;
        } else {
            if (c->len + n > c->cap) {
                c->cap = (c->len + n) * 2;
                c->body = xrealloc(c->body, c->cap);
            }
            memcpy(c->body + c->len, p, n);
            c->len += n;
        }
    }
    return stage_reply(ctx, ST_BODY, 1);
}

/* "ADDR ARGS" split at the first space: *args NULL when none. */
static char *
split_addr(const char *s, char **args)
{
    char *a = xstrdup(s), *sp = strchr(a, ' ');

    *args = NULL;
    if (sp != NULL) {
        *sp = '\0';
        *args = sp + 1;
    }
    return a;
}

static void
eom_modify(SMFICTX *ctx)
{
    struct conn *c = conn_of(ctx);
    size_t i;
    int k;

    for (i = 0; i < o_nadd; i++)
        if (smfi_addheader(ctx, o_add[i].name, o_add[i].value) != MI_SUCCESS)
            log_note(ctx, "smfi_addheader failed");
    for (i = 0; i < o_nins; i++)
        if (smfi_insheader(ctx, o_ins[i].idx, o_ins[i].name, o_ins[i].value)
            != MI_SUCCESS)
            log_note(ctx, "smfi_insheader failed");
    for (i = 0; i < o_nchg; i++)
        if (smfi_chgheader(ctx, o_chg[i].name, o_chg[i].idx,
                           o_chg[i].value[0] ? o_chg[i].value : NULL)
            != MI_SUCCESS)
            log_note(ctx, "smfi_chgheader failed");
    if (o_body
        && smfi_replacebody(ctx, (unsigned char *) o_body, (int) o_body_len)
               != MI_SUCCESS)
        log_note(ctx, "smfi_replacebody failed");
    if (o_footer && c->overflow)
        log_note(ctx, "body too large for a footer");
    else if (o_footer) {
        if (c->len + o_footer_len > c->cap) {
            c->cap = c->len + o_footer_len;
            c->body = xrealloc(c->body, c->cap);
        }
        memcpy(c->body + c->len, o_footer, o_footer_len);
        /* replacebody sends chunks of at most 64 KB itself */
        if (smfi_replacebody(ctx, c->body, (int) (c->len + o_footer_len))
            != MI_SUCCESS)
            log_note(ctx, "smfi_replacebody failed");
    }
    for (i = 0; i < o_addrcpt.n; i++) {
        char *args, *a = split_addr(o_addrcpt.v[i], &args);
        int rc = args ? smfi_addrcpt_par(ctx, a, args) : smfi_addrcpt(ctx, a);

        if (rc != MI_SUCCESS)
            log_note(ctx, "smfi_addrcpt failed");
        free(a);
    }
    for (i = 0; i < o_delrcpt.n; i++)
        if (smfi_delrcpt(ctx, o_delrcpt.v[i]) != MI_SUCCESS)
            log_note(ctx, "smfi_delrcpt failed");
    if (o_chgfrom) {
        char *args, *a = split_addr(o_chgfrom, &args);

        if (smfi_chgfrom(ctx, a, args) != MI_SUCCESS)
            log_note(ctx, "smfi_chgfrom failed");
        free(a);
    }
    if (o_quarantine && smfi_quarantine(ctx, o_quarantine) != MI_SUCCESS)
        log_note(ctx, "smfi_quarantine failed");
    for (k = 0; k < o_progress; k++) {
        if (smfi_progress(ctx) != MI_SUCCESS)
            log_note(ctx, "smfi_progress failed");
        usleep(200 * 1000);
    }
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
    struct line l = {0};
    struct conn *c = conn_of(ctx);

    line_add(&l, "eom", 3);
    stage_log(ctx, ST_EOM, &l);
    eom_modify(ctx);
    c->len = 0;
    c->overflow = 0;
    return stage_reply(ctx, ST_EOM, 1);
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
    struct line l = {0};
    struct conn *c = conn_of(ctx);

    line_add(&l, "abort", 5);
    stage_log(ctx, ST_ABORT, &l);
    c->len = 0;
    c->overflow = 0;
    return SMFIS_CONTINUE;
}

static sfsistat
cb_close(SMFICTX *ctx)
{
    struct line l = {0};
    struct conn *c;

    line_add(&l, "close", 5);
    stage_log(ctx, ST_CLOSE, &l);
    c = smfi_getpriv(ctx);
    if (c != NULL) {
        free(c->body);
        free(c);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

/* ------------------------------------------------- raw garbage speaker */

static int
raw_read_full(int fd, void *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *) p + got, n - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t) r;
    }
    return 0;
}

static int
raw_write(int fd, const void *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(fd, (const char *) p + done, n - done);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t) w;
    }
    return 0;
}

static int
raw_packet(int fd, char cmd, const void *data, uint32_t n)
{
    unsigned char hdr[5];
    uint32_t len = htonl(n + 1);

    memcpy(hdr, &len, 4);
    hdr[4] = (unsigned char) cmd;
    if (raw_write(fd, hdr, 5) < 0)
        return -1;
    return n ? raw_write(fd, data, n) : 0;
}

static void
raw_log(int id, const char *what)
{
    struct line l = {0};

    line_printf(&l, "%s | conn=%d", what, id);
    line_flush(&l);
}

/* Writes the garbage asked for; -1 to hang up. */
static int
raw_garbage(int fd, int id)
{
    const char *k = o_garbage_kind;
    char what[64];

    snprintf(what, sizeof(what), "garbage %s", k);
    raw_log(id, what);
    if (strcmp(k, "huge") == 0) {
        uint32_t len = htonl(0x7fffffffu);

        raw_write(fd, &len, 4);
        raw_write(fd, "c0123456789", 11);
        return 0;
    }
    if (strcmp(k, "zero") == 0) {
        uint32_t len = 0;

        raw_write(fd, &len, 4);
        return 0;
    }
    if (strcmp(k, "badcode") == 0)
        return raw_packet(fd, 'Z', "garbage", 7);
    if (strcmp(k, "badreply") == 0)
        return raw_packet(fd, SMFIR_REPLYCODE, "no code here", 13);
    if (strcmp(k, "text") == 0)
        return raw_write(fd, "garbage garbage garbage\r\n", 25);
    return -1; /* close */
}

static enum stage
raw_stage(char cmd)
{
    switch (cmd) {
    case SMFIC_OPTNEG:
        return ST_NEGOTIATE;
    case SMFIC_CONNECT:
        return ST_CONNECT;
    case SMFIC_HELO:
        return ST_HELO;
    case SMFIC_MAIL:
        return ST_MAIL;
    case SMFIC_RCPT:
        return ST_RCPT;
    case SMFIC_DATA:
        return ST_DATA;
    case SMFIC_HEADER:
        return ST_HEADER;
    case SMFIC_EOH:
        return ST_EOH;
    case SMFIC_BODY:
        return ST_BODY;
    case SMFIC_BODYEOB:
        return ST_EOM;
    case SMFIC_UNKNOWN:
        return ST_UNKNOWN;
    case SMFIC_ABORT:
        return ST_ABORT;
    }
    return ST_NONE;
}

static void *
raw_session(void *arg)
{
    int fd = (int) (intptr_t) arg, id;
    unsigned char *pkt = xmalloc(RAW_PACKET_MAX);

    pthread_mutex_lock(&log_mu);
    id = ++conn_seq;
    pthread_mutex_unlock(&log_mu);
    for (;;) {
        uint32_t len;
        enum stage st;
        char what[64];

        if (raw_read_full(fd, &len, 4) < 0)
            break;
        len = ntohl(len);
        if (len == 0 || len > RAW_PACKET_MAX || raw_read_full(fd, pkt, len) < 0)
            break;
        st = raw_stage((char) pkt[0]);
        snprintf(what, sizeof(what), "raw %c len=%u", pkt[0], len - 1);
        raw_log(id, what);
        if (pkt[0] == SMFIC_QUIT)
            break;
        if (st == o_garbage) {
            if (raw_garbage(fd, id) < 0)
                break;
            continue;
        }
        if (pkt[0] == SMFIC_OPTNEG) {
            uint32_t v[3] = {htonl(6), 0, 0};

            if (raw_packet(fd, SMFIC_OPTNEG, v, sizeof(v)) < 0)
                break;
        } else if (st != ST_NONE && st != ST_ABORT) {
            if (raw_packet(fd, SMFIR_CONTINUE, NULL, 0) < 0)
                break;
        }
    }
    raw_log(id, "close");
    close(fd);
    free(pkt);
    return NULL;
}

static int
raw_listen(const char *spec)
{
    int fd;

    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        const char *path = strchr(spec, ':') + 1;

        if (strlen(path) >= sizeof(sun.sun_path))
            die("socket path too long: %s", path);
        strcpy(sun.sun_path, path);
        unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sun, sizeof(sun)) < 0)
            die("bind %s: %s", spec, strerror(errno));
    } else if (strncmp(spec, "inet:", 5) == 0) {
        struct sockaddr_in in = {.sin_family = AF_INET};
        const char *at = strchr(spec, '@');
        int one = 1;

        in.sin_port = htons((uint16_t) atoi(spec + 5));
        if (inet_pton(AF_INET, at ? at + 1 : "127.0.0.1", &in.sin_addr) != 1)
            die("bad address in %s", spec);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket: %s", strerror(errno));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &in, sizeof(in)) < 0)
            die("bind %s: %s", spec, strerror(errno));
    } else {
        die("bad socket spec %s", spec);
    }
    if (listen(fd, 64) < 0)
        die("listen: %s", strerror(errno));
    return fd;
}

static void
raw_main(int lfd)
{
    for (;;) {
        pthread_t t;
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept: %s", strerror(errno));
        }
        if (pthread_create(&t, NULL, raw_session, (void *) (intptr_t) fd)
            != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

/* --------------------------------------------------------------- options */

static enum stage
parse_stage(const char *s, size_t n)
{
    int i;

    for (i = 0; stage_names[i] != NULL; i++)
        if (strlen(stage_names[i]) == n && strncmp(stage_names[i], s, n) == 0)
            return (enum stage) i;
    die("unknown stage '%.*s'", (int) n, s);
    return ST_NONE;
}

/* C escapes; nl is what "\n" becomes. */
static char *
unescape(const char *s, const char *nl, size_t *lenp)
{
    char *out = xmalloc(strlen(s) * 2 + 1), *o = out;

    for (; *s; s++) {
        if (*s != '\\' || s[1] == '\0') {
            *o++ = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'n':
            strcpy(o, nl);
            o += strlen(nl);
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        default:
            *o++ = *s;
            break;
        }
    }
    *o = '\0';
    if (lenp)
        *lenp = (size_t) (o - out);
    return out;
}

static void
parse_reply(const char *arg)
{
    const char *c1 = strchr(arg, ':');
    char *rest, *f[4] = {0};
    enum stage st;
    struct reply *r;
    int i, n = 0;

    if (c1 == NULL)
        die("-r STAGE:REPLY[:CODE:DSN:TEXT]: %s", arg);
    st = parse_stage(arg, (size_t) (c1 - arg));
    r = &o_reply[st];
    rest = xstrdup(c1 + 1);
    /* REPLY:CODE:DSN:TEXT, TEXT may hold ':' */
    f[n++] = rest;
    while (n < 4) {
        char *c = strchr(f[n - 1], ':');

        if (c == NULL)
            break;
        *c = '\0';
        f[n++] = c + 1;
    }
    for (i = 0; reply_names[i] != NULL; i++)
        if (strcmp(reply_names[i], f[0]) == 0)
            break;
    if (reply_names[i] == NULL)
        die("unknown reply '%s'", f[0]);
    r->set = 1;
    r->kind = (enum reply_kind) i;
    if (r->kind == R_QUARANTINE) {
        if (st != ST_EOM)
            die("quarantine is an end-of-message (eom) reply");
        r->text = NULL;
        if (strchr(c1 + 1, ':') != NULL)
            r->text = unescape(strchr(c1 + 1, ':') + 1, "\n", NULL);
        free(rest);
        return;
    }
    if (n == 4) {
        r->code = f[1];
        r->dsn = f[2][0] ? f[2] : NULL;
        r->text = unescape(f[3], "\n", NULL);
    } else if (n != 1) {
        die("-r %s: give all of CODE:DSN:TEXT", arg);
    }
    if (r->kind == R_REPLYCODE && r->code == NULL)
        die("-r %s: replycode needs CODE:DSN:TEXT", arg);
    if (r->code == NULL)
        free(rest); /* else r->code and r->dsn point into it */
}

static void
parse_steps(const char *arg)
{
    static const struct {
        const char *name;
        unsigned long bits;
    } t[] = {
        {"noconnect", SMFIP_NOCONNECT},
        {"nohelo", SMFIP_NOHELO},
        {"nomail", SMFIP_NOMAIL},
        {"norcpt", SMFIP_NORCPT},
        {"nobody", SMFIP_NOBODY},
        {"nohdrs", SMFIP_NOHDRS},
        {"noeoh", SMFIP_NOEOH},
        {"nounknown", SMFIP_NOUNKNOWN},
        {"nodata", SMFIP_NODATA},
        {"nr_conn", SMFIP_NR_CONN},
        {"nr_helo", SMFIP_NR_HELO},
        {"nr_mail", SMFIP_NR_MAIL},
        {"nr_rcpt", SMFIP_NR_RCPT},
        {"nr_data", SMFIP_NR_DATA},
        {"nr_unkn", SMFIP_NR_UNKN},
        {"nr_unknown", SMFIP_NR_UNKN},
        {"nr_eoh", SMFIP_NR_EOH},
        {"nr_body", SMFIP_NR_BODY},
        {"nr_hdr", SMFIP_NR_HDR},
        {"nr_all", SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT
                       | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH
                       | SMFIP_NR_BODY | SMFIP_NR_HDR},
        {"hdr_leadspc", SMFIP_HDR_LEADSPC},
        {"rcpt_rej", SMFIP_RCPT_REJ},
        {"skip", SMFIP_SKIP},
    };
    char *s = xstrdup(arg), *save = NULL, *w;
    size_t i;

    for (w = strtok_r(s, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
            if (strcmp(t[i].name, w) == 0)
                break;
        if (i == sizeof(t) / sizeof(t[0]))
            die("unknown -n flag '%s'", w);
        o_steps |= t[i].bits;
    }
    free(s);
}

static void
parse_symlist(const char *arg)
{
    static const struct {
        const char *name;
        int where;
    } t[] = {
        {"connect", SMFIM_CONNECT}, {"helo", SMFIM_HELO},
        {"mail", SMFIM_ENVFROM},    {"rcpt", SMFIM_ENVRCPT},
        {"data", SMFIM_DATA},       {"eoh", SMFIM_EOH},
        {"eom", SMFIM_EOM},
    };
    const char *c = strchr(arg, ':');
    size_t i;

    if (c == NULL)
        die("-M STAGE:MACROS: %s", arg);
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strlen(t[i].name) == (size_t) (c - arg)
            && strncmp(t[i].name, arg, (size_t) (c - arg)) == 0)
            break;
    if (i == sizeof(t) / sizeof(t[0]))
        die("-M: unknown stage in %s", arg);
    o_symlist[t[i].where] = xstrdup(c + 1);
}

static void
hdr_push(struct hdr_op **v, size_t *n, const char *name, int idx,
         const char *value)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[*n].name = xstrdup(name);
    (*v)[*n].idx = idx;
    (*v)[*n].value = unescape(value, "\n", NULL);
    (*n)++;
}

static void
strlist_push(struct strlist *l, const char *s)
{
    l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = xstrdup(s);
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: tmilter -s unix:/path|inet:PORT@HOST [-p PIDFILE] "
            "[-l LOGFILE]\n"
            "  [-r STAGE:REPLY[:CODE:DSN:TEXT]] [-m REGEX] [-a NAME:VALUE]\n"
            "  [-i IDX:NAME:VALUE] [-c NAME:IDX:VALUE] [-b TEXT] [-f TEXT]\n"
            "  [-R ADDR[ ARGS]] [-D ADDR] [-S ADDR[ ARGS]] [-q REASON] "
            "[-P N]\n"
            "  [-n FLAGS] [-M STAGE:MACROS] [-x STAGE] [-w STAGE] "
            "[-g STAGE:KIND]\n"
            "  (see the comment at the top of tests/milter/tmilter.c)\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    const char *sock = NULL, *pidfile = NULL, *logfile = NULL;
    struct rlimit nocore = {0, 0};
    char *p, *q;
    int ch, rc;
    struct smfiDesc desc = {
        .xxfi_name = "tmilter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY
                      | SMFIF_ADDRCPT | SMFIF_ADDRCPT_PAR | SMFIF_DELRCPT
                      | SMFIF_CHGFROM | SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
        .xxfi_connect = cb_connect,
        .xxfi_helo = cb_helo,
        .xxfi_envfrom = cb_envfrom,
        .xxfi_envrcpt = cb_envrcpt,
        .xxfi_header = cb_header,
        .xxfi_eoh = cb_eoh,
        .xxfi_body = cb_body,
        .xxfi_eom = cb_eom,
        .xxfi_abort = cb_abort,
        .xxfi_close = cb_close,
        .xxfi_unknown = cb_unknown,
        .xxfi_data = cb_data,
        .xxfi_negotiate = cb_negotiate,
    };

    while ((ch = getopt(argc, argv, "s:p:l:r:m:a:i:c:b:f:R:D:S:q:P:n:M:x:w:g:"))
           != -1) {
        switch (ch) {
        case 's':
            sock = optarg;
            break;
        case 'p':
            pidfile = optarg;
            break;
        case 'l':
            logfile = optarg;
            break;
        case 'r':
            parse_reply(optarg);
            break;
        case 'm':
            if (regcomp(&o_rcpt_re, optarg, REG_EXTENDED | REG_NOSUB) != 0)
                die("bad regex %s", optarg);
            o_rcpt_re_set = 1;
            break;
        case 'a':
            p = xstrdup(optarg);
            q = strchr(p, ':');
            if (q == NULL)
                die("-a NAME:VALUE: %s", optarg);
            *q = '\0';
            hdr_push(&o_add, &o_nadd, p, 0, q + 1);
            free(p);
            break;
        case 'i':
            p = xstrdup(optarg);
            q = strchr(p, ':');
            if (q == NULL || strchr(q + 1, ':') == NULL)
                die("-i IDX:NAME:VALUE: %s", optarg);
            *q = '\0';
            {
                char *name = q + 1, *v = strchr(name, ':');

                *v = '\0';
                hdr_push(&o_ins, &o_nins, name, atoi(p), v + 1);
            }
            free(p);
            break;
        case 'c':
            p = xstrdup(optarg);
            q = strchr(p, ':');
            if (q == NULL || strchr(q + 1, ':') == NULL)
                die("-c NAME:IDX:VALUE: %s", optarg);
            *q = '\0';
            {
                char *v = strchr(q + 1, ':');

                *v = '\0';
                hdr_push(&o_chg, &o_nchg, p, atoi(q + 1), v + 1);
            }
            free(p);
            break;
        case 'b':
            o_body = unescape(optarg, "\r\n", &o_body_len);
            break;
        case 'f':
            o_footer = unescape(optarg, "\r\n", &o_footer_len);
            break;
        case 'R':
            strlist_push(&o_addrcpt, optarg);
            break;
        case 'D':
            strlist_push(&o_delrcpt, optarg);
            break;
        case 'S':
            o_chgfrom = xstrdup(optarg);
            break;
        case 'q':
            o_quarantine = xstrdup(optarg);
            break;
        case 'P':
            o_progress = atoi(optarg);
            break;
        case 'n':
            parse_steps(optarg);
            break;
        case 'M':
            parse_symlist(optarg);
            break;
        case 'x':
            o_crash = parse_stage(optarg, strlen(optarg));
            break;
        case 'w':
            o_hang = parse_stage(optarg, strlen(optarg));
            break;
        case 'g':
            q = strchr(optarg, ':');
            if (q == NULL)
                die("-g STAGE:KIND: %s", optarg);
            o_garbage = parse_stage(optarg, (size_t) (q - optarg));
            o_garbage_kind = xstrdup(q + 1);
            if (strcmp(o_garbage_kind, "huge") && strcmp(o_garbage_kind, "zero")
                && strcmp(o_garbage_kind, "badcode")
                && strcmp(o_garbage_kind, "badreply")
                && strcmp(o_garbage_kind, "text")
                && strcmp(o_garbage_kind, "close"))
                die("-g: unknown kind %s", o_garbage_kind);
            break;
        default:
            usage();
        }
    }
    if (sock == NULL || optind != argc)
        usage();
    setrlimit(RLIMIT_CORE, &nocore);
    signal(SIGPIPE, SIG_IGN);
    if (logfile != NULL) {
        log_fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
            die("open %s: %s", logfile, strerror(errno));
    }
    if (o_garbage != ST_NONE) {
        int lfd = raw_listen(sock);

        if (pidfile != NULL) {
            FILE *f = fopen(pidfile, "w");

            if (f == NULL)
                die("open %s: %s", pidfile, strerror(errno));
            fprintf(f, "%d\n", (int) getpid());
            fclose(f);
        }
        raw_main(lfd);
        return 0;
    }
    if (smfi_setconn((char *) sock) != MI_SUCCESS)
        die("smfi_setconn %s failed", sock);
    if (smfi_register(desc) != MI_SUCCESS)
        die("smfi_register failed");
    if (smfi_opensocket(1) != MI_SUCCESS)
        die("cannot listen on %s", sock);
    if (pidfile != NULL) {
        FILE *f = fopen(pidfile, "w");

        if (f == NULL)
            die("open %s: %s", pidfile, strerror(errno));
        fprintf(f, "%d\n", (int) getpid());
        fclose(f);
    }
    rc = smfi_main();
    return rc == MI_SUCCESS ? 0 : 1;
}
