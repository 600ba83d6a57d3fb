/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd_check.c - Postfix's smtpd_*_restrictions (see smtpd_check.h).
 * Each list is parsed once into restrictions, the access tables opened
 * then; evaluation walks the lists with what the session knows and fills
 * in the reply, in Postfix's words and codes:
 *   reject_unauth_destination  554 5.7.1 <rcpt>: Relay access denied
 *   defer_unauth_destination   454 4.7.1 <rcpt>: Relay access denied
 *   reject                     554 5.7.1 <name>: CLASS rejected: Access
 *                              denied (CLASS of the list: Client host,
 *                              Helo command, Sender address, Recipient
 *                              address, Data command)
  *   defer                      450 4.3.2 <name>: CLASS rejected: Try
 *                              again later
  *   reject_invalid_helo_hostname
 *                              501 5.5.2 <helo>: Helo command rejected:
 *                              Invalid name (an address literal that does
 *                              not parse: invalid ip address)

 *   reject_non_fqdn_*          504 5.5.2 <x>: ... rejected: need
 *                              fully-qualified hostname / address
 *   sender login mismatch      553 5.7.1 <sender>: Sender address
 *                              rejected: not owned by user U / not
 *                              logged in
 *   access REJECT / DEFER      554 5.7.1 / 450 4.7.1 <key>: CLASS
 *                              rejected: TEXT (default Access denied)
  *   access NNN TEXT            NNN D.D.D <key>: CLASS rejected: TEXT (the
 *                              DSN from TEXT when it starts with one, its
 *                              class made the code's; also for REJECT and
 *                              DEFER with a text)
 *   a bad access action        451 4.3.5 Server configuration error (and
 *                              a warning naming the table)
 * Owns: the lists and tables. Threads: any after smtpd_check_new.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "conf/addrmap.h"
#include "conf/lookup.h"
#include "lib/dns.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "proxy/smtpd_check.h"

enum sc_kind {
    SC_PERMIT,
    SC_REJECT,
    SC_DEFER,
    SC_WARN_IF_REJECT,
    SC_PERMIT_MYNETWORKS,
    SC_PERMIT_SASL,
    SC_PERMIT_AUTH_DEST,
    SC_REJECT_UNAUTH_DEST,
    SC_DEFER_UNAUTH_DEST,
    SC_INVALID_HELO,
    SC_NON_FQDN_HELO,
    SC_NON_FQDN_SENDER,
    SC_NON_FQDN_RCPT,
    SC_LOGIN_MISMATCH,      /* reject_sender_login_mismatch */
    SC_AUTH_LOGIN_MISMATCH, /* reject_authenticated_sender_login_... */
    SC_UNAUTH_LOGIN_MISMATCH,
    SC_KNOWN_LOGIN_MISMATCH, /* reject_known_sender_login_mismatch */
    SC_PLAINTEXT,            /* reject_plaintext_session */
    SC_MULTI_BOUNCE,         /* reject_multi_recipient_bounce */
    SC_SASL_ACCESS,          /* check_sasl_access TABLE */
    SC_UNLISTED_RCPT,        /* reject_unlisted_recipient */
    SC_UNLISTED_SENDER,      /* reject_unlisted_sender */
    SC_TLS_CLIENTCERTS,      /* permit_tls_clientcerts */
    SC_TLS_ALL_CLIENTCERTS,  /* permit_tls_all_clientcerts */
    SC_CCERT_ACCESS,         /* check_ccert_access TABLE */
    SC_CLIENT_ACCESS,        /* the four that take a table */
    SC_HELO_ACCESS,
    SC_SENDER_ACCESS,
    SC_RCPT_ACCESS,
    SC_REV_CLIENT_ACCESS, /* check_reverse_client_hostname_access */
    SC_RBL,               /* reject_rbl_client DOMAIN[=FILTER] */
    SC_DNSWL,             /* permit_dnswl_client DOMAIN[=FILTER] */
    SC_DEFER_IF_PERMIT,
    SC_DEFER_IF_REJECT,
    SC_UNKNOWN_SENDER, /* reject_unknown_sender_domain */
    SC_UNKNOWN_RCPT,   /* reject_unknown_recipient_domain */
    SC_UNKNOWN_HELO,   /* reject_unknown_helo_hostname */
    SC_RHSBL_CLIENT,   /* reject_rhsbl_* DOMAIN[=FILTER] */
    SC_RHSBL_HELO,
    SC_RHSBL_SENDER,
    SC_RHSBL_RCPT,
    SC_RHSBL_REV_CLIENT,
    SC_RHSWL_CLIENT,       /* permit_rhswl_client DOMAIN[=FILTER] */
    SC_UNKNOWN_CLIENT,     /* reject_unknown_client_hostname */
    SC_UNKNOWN_REV_CLIENT, /* reject_unknown_reverse_client_hostname */
    SC_POLICY,             /* check_policy_service SERVER */
    SC_UNAUTH_PIPELINING,
    SC_UNVERIFIED_RCPT,   /* reject_unverified_recipient */
    SC_UNVERIFIED_SENDER, /* reject_unverified_sender */
    SC_CLASS,     /* a smtpd_restriction_classes name: its list (rbl: index) */
    SC_MX_ACCESS, /* check_S_mx_access TABLE (rbl: S's list, SCL_REV for
                     reverse_client) */
    SC_NS_ACCESS, /* check_S_ns_access */
    SC_A_ACCESS,  /* check_S_a_access */
    SC_SKIP       /* accepted, not implemented */
};

/* Restrictions that take no table, by name (also access actions). */
static const struct {
    const char *name;
    enum sc_kind kind;
} sc_names[] = {
    {"permit", SC_PERMIT},
    {"reject", SC_REJECT},
    {"defer", SC_DEFER},
    {"warn_if_reject", SC_WARN_IF_REJECT},
    {"permit_mynetworks", SC_PERMIT_MYNETWORKS},
    {"permit_sasl_authenticated", SC_PERMIT_SASL},
    {"permit_auth_destination", SC_PERMIT_AUTH_DEST},
    {"reject_unauth_destination", SC_REJECT_UNAUTH_DEST},
    {"defer_unauth_destination", SC_DEFER_UNAUTH_DEST},
    {"reject_invalid_helo_hostname", SC_INVALID_HELO},
    {"reject_invalid_hostname", SC_INVALID_HELO}, /* before Postfix 2.3 */
    {"reject_non_fqdn_helo_hostname", SC_NON_FQDN_HELO},
    {"reject_non_fqdn_hostname", SC_NON_FQDN_HELO},
    {"reject_non_fqdn_sender", SC_NON_FQDN_SENDER},
    {"reject_non_fqdn_recipient", SC_NON_FQDN_RCPT},
    {"reject_sender_login_mismatch", SC_LOGIN_MISMATCH},
    {"reject_authenticated_sender_login_mismatch", SC_AUTH_LOGIN_MISMATCH},
    {"reject_unauthenticated_sender_login_mismatch", SC_UNAUTH_LOGIN_MISMATCH},
    {"reject_known_sender_login_mismatch", SC_KNOWN_LOGIN_MISMATCH},
    {"reject_plaintext_session", SC_PLAINTEXT},
    {"reject_multi_recipient_bounce", SC_MULTI_BOUNCE},
    {"reject_unlisted_recipient", SC_UNLISTED_RCPT},
    {"check_recipient_maps", SC_UNLISTED_RCPT}, /* before Postfix 2.1 */
    {"reject_unlisted_sender", SC_UNLISTED_SENDER},
    {"permit_tls_clientcerts", SC_TLS_CLIENTCERTS},
    {"permit_tls_all_clientcerts", SC_TLS_ALL_CLIENTCERTS},
    {"defer_if_permit", SC_DEFER_IF_PERMIT},
    {"defer_if_reject", SC_DEFER_IF_REJECT},
    {"reject_unknown_sender_domain", SC_UNKNOWN_SENDER},
    {"reject_unknown_recipient_domain", SC_UNKNOWN_RCPT},
    {"reject_unknown_helo_hostname", SC_UNKNOWN_HELO},
    {"reject_unknown_hostname", SC_UNKNOWN_HELO}, /* before Postfix 2.3 */
    {"reject_unauth_pipelining", SC_UNAUTH_PIPELINING},
    {"reject_unknown_client_hostname", SC_UNKNOWN_CLIENT},
    {"reject_unknown_client", SC_UNKNOWN_CLIENT}, /* before Postfix 2.3 */
    {"reject_unknown_reverse_client_hostname", SC_UNKNOWN_REV_CLIENT},
    {"reject_unverified_recipient", SC_UNVERIFIED_RCPT},
    {"reject_unverified_sender", SC_UNVERIFIED_SENDER},
};

/* The ones that take DOMAIN[=FILTER] (with reject_rbl_client and
 * permit_dnswl_client). */
static const struct {
    const char *name;
    enum sc_kind kind;
} sc_rhsbl[] = {
    {"reject_rhsbl_client", SC_RHSBL_CLIENT},
    {"reject_rhsbl_helo", SC_RHSBL_HELO},
    {"reject_rhsbl_sender", SC_RHSBL_SENDER},
    {"reject_rhsbl_recipient", SC_RHSBL_RCPT},
    {"reject_rhsbl_reverse_client", SC_RHSBL_REV_CLIENT},
    {"permit_rhswl_client", SC_RHSWL_CLIENT},
};

/* Postfix restrictions this Sluice skips (permit_mx_backup, which
 * Postfix 3.9 deprecates); 1: they take an argument. */
static const struct {
    const char *name;
    int arg;
} sc_skipped[] = {
    {"permit_mx_backup", 0},
};

/* A DNS list's filter: per octet, the values it allows. */
struct sc_filter {
    unsigned char ok[4][32]; /* bit v of octet k: value v allowed */
};

struct sc_restr {
    enum sc_kind kind;
    struct lookup_table *t; /* the check_*_access ones */
    char *spec;             /* their TYPE:TABLE, for warnings */
    size_t rbl;             /* SC_RBL, SC_DNSWL: index of the domain */
    char *dom;              /* SC_RHSBL_*: the list's domain; SC_POLICY: its own
                               default_action, or NULL */
    struct sc_filter *filter; /* and its filter, or NULL: any address */
};

enum sc_list {
    SCL_CLIENT,
    SCL_HELO,
    SCL_SENDER,
    SCL_RELAY,
    SCL_RCPT,
    SCL_DATA,
    SCL_EOD, /* smtpd_end_of_data_restrictions */
    SCL_N,
    SCL_SASL, /* not a list: replies about the SASL login name */
    SCL_CCERT /* nor this: about the client certificate */
};

static const char *const sc_params[SCL_N] = {
    "smtpd_client_restrictions",      "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",      "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",   "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
};

struct smtpd_check {
    struct sc_restr *v[SCL_N];
    size_t n[SCL_N];
    char **rbl; /* the DNS lists' domains, each once */
    size_t nrbl;
    int rbl_code;                /* maps_rbl_reject_code */
    struct lookup_table **login; /* smtpd_sender_login_maps */
    size_t nlogin;
    struct lookup_table **ehlo; /* smtpd_discard_ehlo_keyword_address_maps */
    size_t nehlo;
    unsigned ehlo_mask; /* smtpd_discard_ehlo_keywords */
    char *null_key;     /* smtpd_null_access_lookup_key */
    struct sc_class {   /* smtpd_restriction_classes */
        char *name;
        struct sc_restr *v;
        size_t n;
    } * cls;
    size_t ncls;
    char **policy; /* check_policy_service's servers, each once */
    size_t npolicy;
    int dns;                          /* a restriction asks Q_NAME or Q_DNSXL */
    int unk_addr_code;                /* unknown_address_reject_code */
    int unk_name_code;                /* unknown_hostname_reject_code */
    int unk_client_code;              /* unknown_client_reject_code */
    int plain_code;                   /* plaintext_reject_code */
    struct lookup_table **local_maps; /* local_recipient_maps */
    size_t nlocal;
    int local_missing;            /* one of them has no .db file yet */
    struct lookup_table **ccerts; /* relay_clientcerts */
    size_t nccerts;
    struct lookup_table **relay_maps; /* relay_recipient_maps */
    size_t nrelay;
    int unk_local_code;             /* unknown_local_recipient_reject_code */
    int unk_relay_code;             /* unknown_relay_recipient_reject_code */
    int show_table;                 /* show_user_unknown_table_name */
    int unl_rcpt;                   /* smtpd_reject_unlisted_recipient */
    int unl_sender;                 /* smtpd_reject_unlisted_sender */
    char *delim;                    /* recipient_delimiter */
    char *dbl;                      /* double_bounce_sender */
    int multi_code;                 /* multi_recipient_bounce_reject_code */
    int unk_addr_tf;                /* unknown_address_tempfail_action: 1
                                       defer_if_permit, 0 defer */
    int unk_helo_tf;                /* unknown_helo_hostname_tempfail_action */
    char *policy_def;               /* smtpd_policy_service_default_action */
    struct lookup_dlist *mydest;    /* mydestination */
    struct lookup_dlist *valias_dl; /* virtual_alias_domains */
    struct lookup_dlist *relay_dl;  /* relay_domains */
    struct addrmap *valias;         /* virtual_alias_maps */
    int unk_valias_code;            /* unknown_virtual_alias_reject_code */
    struct {                        /* unverified_{recipient,sender}_*: */
        int rcode, dcode;           /* _reject_code, _defer_code */
        int tf;                     /* _tempfail_action (as unk_addr_tf) */
        char *why;                  /* _reject_reason */
    } unv[2];                       /* [0] recipient, [1] sender */
};

/* A deferral kept for later: defer_if_permit, defer_if_reject. */
struct sc_defer {
    int active;
    int code;
    char dsn[16];
    struct buf *text;
};

/* Evaluation of one request. */
struct sc_run {
    const struct smtpd_check *c;
    const struct smtpd_check_in *in;
    struct smtpd_check_res *res;
    enum sc_list list;
    int warn; /* warn_if_reject for the next restriction */
    int depth;
    int mynet, dest;          /* in->mynetworks, in->auth_dest, once known */
    struct sc_defer dip, dir; /* defer_if_permit, defer_if_reject */
    int rcpt_checked, sender_checked; /* reject_unlisted_* ran (not only
                                         warned) */
};

/* A fact the caller gave (0 or 1), or asked of in->ask once (-1). */
static int
sc_fact(struct sc_run *r, int *cache, enum smtpd_check_fact f)
{
    if (*cache < 0)
        *cache = r->in->ask ? r->in->ask(r->in->arg, f) != 0 : 0;
    return *cache;
}

enum sc_result {
    SCR_DUNNO,
    SCR_PERMIT,
    SCR_REJECT,
    SCR_DISCARD, /* ends every list: the message is accepted and dropped */
    SCR_NEED     /* an answer is not known yet: res->need, res->key */
};

static enum sc_kind
sc_lookup_name(const char *w, int *found)
{
    for (size_t i = 0; i < sizeof(sc_names) / sizeof(sc_names[0]); i++)
        if (strcasecmp(w, sc_names[i].name) == 0) {
            *found = 1;
            return sc_names[i].kind;
        }
    *found = 0;
    return SC_SKIP;
}

/* The tables of param. missing (NULL: none may be): a hash: or btree:
 * table whose file does not exist is left out, *missing set and a line
 * for warn (NULL ok) written. */
static struct lookup_table **
sc_open_tables(const struct cf *cf, const char *param, size_t *n, int *missing,
               struct buf *warn, struct buf *err)
{
    char *const *l = cf_list(cf, param);
    struct lookup_table **v;
    size_t k, i;

    for (k = 0; l[k]; k++)
        ;
    v = xcalloc(k + 1, sizeof(*v));
    for (*n = 0, i = 0; i < k; i++) {
        struct buf *e = buf_new(128, 4096);

        if (missing && lookup_db_missing(l[i])) {
            *missing = 1;
            if (warn)
                buf_printf(warn,
                           "%s: %s: its .db file does not exist (newaliases "
                           "or postmap makes it): the addresses it would "
                           "list are deferred with 451 4.3.0 until it does\n",
                           param, l[i]);
            buf_free(e);
            continue;
        }
        v[*n] = lookup_open(l[i], e);
        if (v[*n] == NULL) {
            buf_printf(err, "%s: %s: %s", param, l[i], buf_data(e));
            buf_free(e);
            for (size_t j = 0; j < *n; j++)
                lookup_free(v[j]);
            free(v);
            *n = 0; /* nothing for smtpd_check_free to free */
            return NULL;
        }
        buf_free(e);
        (*n)++;
    }
    return v;
}

/* One octet of a filter: a number, or [...] of numbers and n..m ranges
 * separated by ';'. 0, or -1. */
static int
sc_parse_octet(const char *s, size_t n, unsigned char ok[32])
{
    char buf[64], *p, *save = NULL;

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    p = buf;
    if (*p == '[') {
        if (n < 3 || buf[n - 1] != ']')
            return -1;
        buf[n - 1] = '\0';
        p++;
    } else if (strchr(p, ';') || strstr(p, "..")) {
        return -1; /* a list or range wants its brackets */
    }
    for (char *e = strtok_r(p, ";", &save); e; e = strtok_r(NULL, ";", &save)) {
        char *dots = strstr(e, ".."), *end;
        long lo, hi;

        lo = strtol(e, &end, 10);
        if (end == e || lo < 0 || lo > 255)
            return -1;
        hi = lo;
        if (dots) {
            if (end != dots)
                return -1;
            hi = strtol(dots + 2, &end, 10);
            if (end == dots + 2 || hi < lo || hi > 255)
                return -1;
        }
        if (*end != '\0')
            return -1;
        for (long v = lo; v <= hi; v++)
            ok[v / 8] |= (unsigned char) (1u << (v % 8));
    }
    return 0;
}

static int
sc_parse_filter(const char *s, struct sc_filter *f)
{
    memset(f, 0, sizeof(*f));
    for (int k = 0; k < 4; k++) {
        const char *dot = s;

        /* the octet ends at a '.' outside brackets */
        for (int depth = 0; *dot && (depth || *dot != '.'); dot++)
            depth += *dot == '[' ? 1 : *dot == ']' ? -1 : 0;
        if (sc_parse_octet(s, (size_t) (dot - s), f->ok[k]) < 0)
            return -1;
        if (k < 3 && *dot != '.')
            return -1;
        s = dot + (k < 3);
    }
    return *s == '\0' ? 0 : -1;
}

/* reject_rbl_client / permit_dnswl_client / reject_rhsbl_* (kind) and
 * its DOMAIN[=FILTER]. */
static int
sc_parse_rbl(struct smtpd_check *c, const char *param, const char *name,
             enum sc_kind kind, const char *arg, struct sc_restr *r,
             struct buf *err)
{
    char dom[256], safe[128];
    const char *eq;
    size_t n, i;

    if (arg == NULL) {
        buf_printf(err, "%s: %s: missing DNS list domain after it", param,
                   name);
        return -1;
    }
    eq = strchr(arg, '=');
    n = eq ? (size_t) (eq - arg) : strlen(arg);
    if (n >= sizeof(dom) - 1) {
        buf_printf(err, "%s: %s: domain too long", param, name);
        return -1;
    }
    memcpy(dom, arg, n);
    dom[n] = '\0';
    if (n > 0 && dom[n - 1] == '.')
        dom[--n] = '\0';
    if (!dns_valid_name(dom)) {
        buf_printf(err, "%s: %s: \"%s\" is not a domain name", param, name,
                   log_safe(dom, n, safe, sizeof(safe)));
        return -1;
    }
    if (eq) {
        r->filter = xcalloc(1, sizeof(*r->filter));
        if (sc_parse_filter(eq + 1, r->filter) < 0) {
            buf_printf(err,
                       "%s: %s %s: bad reply filter \"%s\" (d.d.d.d, each d "
                       "a number or [n..m;...])",
                       param, name, dom,
                       log_safe(eq + 1, strlen(eq + 1), safe, sizeof(safe)));
            free(r->filter); /* the slot is not counted: not freed later */
            r->filter = NULL;
            return -1;
        }
    }
    r->kind = kind;
    if (kind != SC_RBL && kind != SC_DNSWL) { /* looked up when it runs */
        r->dom = xstrdup(dom);
        c->dns = 1;
        return 0;
    }
    for (i = 0; i < c->nrbl; i++)
        if (strcasecmp(c->rbl[i], dom) == 0)
            break;
    if (i == c->nrbl) {
        c->rbl = xrealloc(c->rbl, (c->nrbl + 1) * sizeof(*c->rbl));
        c->rbl[c->nrbl++] = xstrdup(dom);
    }
    r->rbl = i;
    return 0;
}

/* Is name one of the DNS list restrictions? Its kind in *k. */
static int
sc_dnsxl_kind(const char *name, enum sc_kind *k)
{
    if (strcasecmp(name, "reject_rbl_client") == 0
        || strcasecmp(name, "permit_dnswl_client") == 0) {
        *k = strcasecmp(name, "reject_rbl_client") == 0 ? SC_RBL : SC_DNSWL;
        return 1;
    }
    for (size_t i = 0; i < sizeof(sc_rhsbl) / sizeof(sc_rhsbl[0]); i++)
        if (strcasecmp(name, sc_rhsbl[i].name) == 0) {
            *k = sc_rhsbl[i].kind;
            return 1;
        }
    return 0;
}

static int sc_is_action(const char *v);

static const char *const sc_policy_attrs[] = {
    "default_action", "max_idle",    "max_ttl", "policy_context",
    "request_limit",  "retry_delay", "timeout", "try_limit"};

struct cf *
smtpd_check_policy_cf(const struct cf *cf, const char *spec, char *server,
                      size_t serversz, struct buf *err)
{
    char safe[128], *copy, *p, *save = NULL;
    struct cf *o;
    int first = 1;

    if (spec[0] != '{') {
        copy = xstrdup(spec);
        p = copy;
    } else {
        size_t n = strlen(spec);

        if (n < 2 || spec[n - 1] != '}') {
            buf_printf(err, "\"%s\": a '{' without its '}'",
                       log_safe(spec, n, safe, sizeof(safe)));
            return NULL;
        }
        copy = xmemdup(spec + 1, n - 2);
        p = copy;
    }
    o = cf_clone(cf);
    for (char *e = strtok_r(p, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        char *eq, *end;
        struct buf *name;
        size_t k, nl;

        while (*e == ' ' || *e == '\t')
            e++;
        for (end = e + strlen(e);
             end > e && (end[-1] == ' ' || end[-1] == '\t');)
            *--end = '\0';
        if (first) { /* the server */
            first = 0;
            if ((strncmp(e, "inet:", 5) != 0 && strncmp(e, "unix:", 5) != 0)
                || e[5] == '\0' || strlen(e) >= serversz
                || strpbrk(e, " \t=") != NULL) {
                buf_printf(err,
                           "\"%s\" is not a policy server (inet:host:port or "
                           "unix:path)",
                           log_safe(e, strlen(e), safe, sizeof(safe)));
                goto fail;
            }
            if (strncmp(e, "inet:", 5) == 0 && strrchr(e + 5, ':') == NULL) {
                buf_printf(err, "%s: no port",
                           log_safe(e, strlen(e), safe, sizeof(safe)));
                goto fail;
            }
            snprintf(server, serversz, "%s", e);
            continue;
        }
        eq = strchr(e, '=');
        nl = eq ? (size_t) (eq - e) : 0;
        while (nl > 0 && (e[nl - 1] == ' ' || e[nl - 1] == '\t'))
            nl--;
        for (k = 0;
             eq && k < sizeof(sc_policy_attrs) / sizeof(*sc_policy_attrs); k++)
            if (nl == strlen(sc_policy_attrs[k])
                && strncmp(e, sc_policy_attrs[k], nl) == 0)
                break;
        if (eq == NULL
            || k == sizeof(sc_policy_attrs) / sizeof(*sc_policy_attrs)) {
            buf_printf(err,
                       "%s: \"%s\" is not one of default_action, max_idle, "
                       "max_ttl, policy_context, request_limit, retry_delay, "
                       "timeout, try_limit = value",
                       server, log_safe(e, strlen(e), safe, sizeof(safe)));
            goto fail;
        }
        for (eq++; *eq == ' ' || *eq == '\t'; eq++)
            ;
        name = buf_new(64, BUF_NOCAP);
        buf_printf(name, "smtpd_policy_service_%s", sc_policy_attrs[k]);
        if (cf_set(o, buf_data(name), eq, server, err) < 0) {
            buf_free(name);
            goto fail;
        }
        buf_free(name);
    }
    if (first) {
        buf_printf(err, "no policy server in \"%s\"",
                   log_safe(spec, strlen(spec), safe, sizeof(safe)));
        goto fail;
    }
    free(copy);
    if (cf_check(o, err) < 0) {
        cf_free(o);
        return NULL;
    }
    return o;
fail:
    free(copy);
    cf_free(o);
    return NULL;
}

/* check_policy_service inet:HOST:PORT or unix:PATH, or Postfix's
 * "{ SERVER, name = value, ... }" with its own settings (the caller
 * connects; here only its form and its default_action). */
static int
sc_parse_policy(struct smtpd_check *c, const struct cf *cf, const char *param,
                const char *arg, struct sc_restr *r, struct buf *err)
{
    char server[SMTPD_CHECK_KEY_MAX];
    struct buf *e;
    struct cf *o;
    size_t i;

    if (arg == NULL || strlen(arg) >= SMTPD_CHECK_KEY_MAX) {
        buf_printf(err,
                   "%s: check_policy_service: \"%s\" is not a policy server "
                   "(inet:host:port or unix:path)",
                   param, arg ? "(too long)" : "");
        return -1;
    }
    e = buf_new(128, BUF_NOCAP);
    o = smtpd_check_policy_cf(cf, arg, server, sizeof(server), e);
    if (o == NULL) {
        buf_printf(err, "%s: check_policy_service: %s", param, buf_data(e));
        buf_free(e);
        return -1;
    }
    buf_free(e);
    if (arg[0] == '{') {
        const char *d = cf_str(o, "smtpd_policy_service_default_action");

        if (!sc_is_action(d)) {
            buf_printf(err,
                       "%s: check_policy_service %s: default_action \"%s\" is "
                       "not an access action",
                       param, server, d);
            cf_free(o);
            return -1;
        }
        r->dom = xstrdup(d); /* this server's default action */
    }
    cf_free(o);
    r->kind = SC_POLICY;
    r->spec = xstrdup(arg);
    for (i = 0; i < c->npolicy; i++)
        if (strcmp(c->policy[i], arg) == 0)
            return 0;
    c->policy = xrealloc(c->policy, (c->npolicy + 1) * sizeof(*c->policy));
    c->policy[c->npolicy++] = xstrdup(arg);
    return 0;
}

/* Is v an access action (smtpd_policy_service_default_action)? The
 * words sc_action knows, or a 4xx/5xx code. */
static int
sc_is_action(const char *v)
{
    static const char *const w[] = {"OK",
                                    "PERMIT",
                                    "DUNNO",
                                    "REJECT",
                                    "DEFER",
                                    "DEFER_IF_PERMIT",
                                    "DEFER_IF_REJECT",
                                    "WARN",
                                    "INFO",
                                    "HOLD",
                                    "DISCARD"};
    size_t wl = strcspn(v, " \t");

    if (wl == 3 && (v[0] == '4' || v[0] == '5') && isdigit((unsigned char) v[1])
        && isdigit((unsigned char) v[2]))
        return 1;
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
        if (wl == strlen(w[i]) && strncasecmp(v, w[i], wl) == 0)
            return 1;
    return 0;
}

/* A *_tempfail_action: 1 defer_if_permit, 0 defer, -1 neither. */
static int
sc_tempfail(const char *v)
{
    if (strcasecmp(v, "defer_if_permit") == 0)
        return 1;
    return strcasecmp(v, "defer") == 0 ? 0 : -1;
}

/* The class called name (smtpd_restriction_classes), or -1. */
static long
sc_class_find(const struct smtpd_check *c, const char *name)
{
    for (size_t i = 0; i < c->ncls; i++)
        if (strcasecmp(c->cls[i].name, name) == 0)
            return (long) i;
    return -1;
}

/* The subjects of check_S_{mx,ns,a}_access, and their lists. */
static const struct {
    const char *name;
    int list; /* enum sc_list, or SCL_REV (defined below: SCL_N) */
} sc_server_subj[] = {
    {"client", SCL_CLIENT}, {"reverse_client", -1},  {"helo", SCL_HELO},
    {"sender", SCL_SENDER}, {"recipient", SCL_RCPT},
};

/* Is name check_S_T_access (T mx, ns or a)? 1 and the kind and S's list
 * in *kind, *list; else 0. */
static int
sc_server_kind(const char *name, enum sc_kind *kind, size_t *list)
{
    static const char *const t[] = {"_mx_access", "_ns_access", "_a_access"};
    static const enum sc_kind k[] = {SC_MX_ACCESS, SC_NS_ACCESS, SC_A_ACCESS};

    if (strncasecmp(name, "check_", 6) != 0)
        return 0;
    name += 6;
    for (size_t i = 0; i < sizeof(sc_server_subj) / sizeof(sc_server_subj[0]);
         i++) {
        size_t n = strlen(sc_server_subj[i].name);

        if (strncasecmp(name, sc_server_subj[i].name, n) != 0)
            continue;
        for (size_t j = 0; j < 3; j++)
            if (strcasecmp(name + n, t[j]) == 0) {
                *kind = k[j];
                *list = sc_server_subj[i].list < 0
                            ? (size_t) SCL_N
                            : (size_t) sc_server_subj[i].list;
                return 1;
            }
    }
    return 0;
}

/* The words w of the list called param into *vp, *np. */
static int
sc_parse_words(struct smtpd_check *c, const struct cf *cf, const char *param,
               char *const *w, struct sc_restr **vp, size_t *np,
               struct buf *err, struct buf *warn)
{
    size_t k, i;

    for (k = 0; w[k]; k++)
        ;
    *vp = xcalloc(k + 1, sizeof(**vp));
    for (i = 0; i < k; i++) {
        struct sc_restr *r = &(*vp)[*np];
        const char *name = w[i];
        int found, tab = -1, server = 0;
        enum sc_kind sk = SC_SKIP;
        size_t slist = 0;

        r->kind = sc_lookup_name(name, &found);
        if (found
            && (r->kind == SC_UNKNOWN_SENDER || r->kind == SC_UNKNOWN_RCPT
                || r->kind == SC_UNKNOWN_HELO))
            c->dns = 1; /* the caller needs a resolver */
        if (!found && sc_class_find(c, name) >= 0) {
            r->kind = SC_CLASS;
            r->rbl = (size_t) sc_class_find(c, name);
            (*np)++;
            continue;
        }
        if (!found) {
            static const char *const tabs[] = {
                "check_client_access",
                "check_helo_access",
                "check_sender_access",
                "check_recipient_access",
                "check_reverse_client_hostname_access",
                "check_sasl_access",
                "check_ccert_access"};

            for (size_t t = 0; t < 7; t++)
                if (strcasecmp(name, tabs[t]) == 0)
                    tab = (int) t;
            server = tab < 0 && sc_server_kind(name, &sk, &slist);
        }
        if (tab >= 0 || server) {
            struct buf *e;

            if (w[i + 1] == NULL || strchr(w[i + 1], ':') == NULL) {
                buf_printf(err, "%s: %s: missing TYPE:TABLE after it", param,
                           name);
                return -1;
            }
            if (server) {
                r->kind = sk;
                r->rbl = slist;
                c->dns = 1;
            } else {
                r->kind = tab == 5   ? SC_SASL_ACCESS
                          : tab == 6 ? SC_CCERT_ACCESS
                                     : (enum sc_kind)(SC_CLIENT_ACCESS + tab);
            }
            r->spec = xstrdup(w[++i]);
            e = buf_new(128, 4096);
            r->t = lookup_open(r->spec, e);
            if (r->t == NULL) {
                buf_printf(err, "%s: %s %s: %s", param, name, r->spec,
                           buf_data(e));
                buf_free(e);
                free(r->spec);
                r->spec = NULL;
                return -1;
            }

            buf_free(e);
        } else if (!found && sc_dnsxl_kind(name, &r->kind)) {
            if (sc_parse_rbl(c, param, name, r->kind, w[i + 1], r, err) < 0)
                return -1;
            i++;
        } else if (!found && strcasecmp(name, "check_policy_service") == 0) {
            if (sc_parse_policy(c, cf, param, w[i + 1], r, err) < 0)
                return -1;
            i++;
        } else if (!found) {
            size_t s;

            for (s = 0; s < sizeof(sc_skipped) / sizeof(sc_skipped[0]); s++)
                if (strcasecmp(name, sc_skipped[s].name) == 0)
                    break;
            if (s == sizeof(sc_skipped) / sizeof(sc_skipped[0])) {
                char safe[128];

                buf_printf(err, "%s: unknown restriction \"%s\"", param,
                           log_safe(name, strlen(name), safe, sizeof(safe)));
                return -1;
            }
            if (warn)
                buf_printf(warn,
                           "%s: %s: not implemented in this Sluice yet; "
                           "skipped\n",
                           param, sc_skipped[s].name);
            if (sc_skipped[s].arg && w[i + 1])
                i++;
            r->kind = SC_SKIP;
        }
        (*np)++;
    }
    return 0;
}

static int
sc_parse_list(struct smtpd_check *c, const struct cf *cf, enum sc_list l,
              struct buf *err, struct buf *warn)
{
    return sc_parse_words(c, cf, sc_params[l], cf_list(cf, sc_params[l]),
                          &c->v[l], &c->n[l], err, warn);
}

/* smtpd_restriction_classes: each name a main.cf parameter of the
 * operator's whose value is a restriction list, usable as one
 * restriction in the lists (and in other classes) and as an access
 * table's result. The names first, so classes may name each other. */
static int
sc_parse_classes(struct smtpd_check *c, const struct cf *cf, struct buf *err,
                 struct buf *warn)
{
    char *const *names = cf_list(cf, "smtpd_restriction_classes");
    size_t n;

    for (n = 0; names[n]; n++)
        ;
    c->cls = xcalloc(n + 1, sizeof(*c->cls));
    for (c->ncls = 0; c->ncls < n; c->ncls++)
        c->cls[c->ncls].name = xstrdup(names[c->ncls]);
    for (size_t i = 0; i < n; i++) {
        struct buf *e = buf_new(128, 4096);
        char **w = cf_user_list(cf, names[i], e);
        int rc;

        if (w == NULL) {
            buf_printf(err, "smtpd_restriction_classes: %s", buf_data(e));
            buf_free(e);
            return -1;
        }
        buf_free(e);
        rc = sc_parse_words(c, cf, names[i], w, &c->cls[i].v, &c->cls[i].n, err,
                            warn);
        cf_list_free(w);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* A limit parameter: at least 1, as Postfix requires. */
static long long
sc_positive(const struct cf *cf, const char *name)
{
    long long v = cf_int(cf, name);

    return v < 1 ? 1 : v;
}

struct smtpd_check *
smtpd_check_new(const struct cf *cf, struct buf *err, struct buf *warn)
{
    struct smtpd_check *c = xcalloc(1, sizeof(*c));
    int relay = 0;

    if (sc_parse_classes(c, cf, err, warn) < 0)
        goto fail;
    for (int l = 0; l < SCL_N; l++)
        if (sc_parse_list(c, cf, (enum sc_list) l, err, warn) < 0)
            goto fail;
    /* Postfix refuses to run an open relay by mistake */
    for (int l = SCL_RELAY; l <= SCL_RCPT; l++)
        for (size_t i = 0; i < c->n[l]; i++)
            switch (c->v[l][i].kind) {
            case SC_REJECT_UNAUTH_DEST:
            case SC_DEFER_UNAUTH_DEST:
            case SC_REJECT:
            case SC_DEFER:
                relay = 1;
                break;
            default:
                break;
            }
    if (!relay) {
        buf_printf(err, "in parameter smtpd_relay_restrictions or "
                        "smtpd_recipient_restrictions, specify at least one "
                        "working instance of: reject_unauth_destination, "
                        "defer_unauth_destination, reject or defer");
        goto fail;
    }
    c->login = sc_open_tables(cf, "smtpd_sender_login_maps", &c->nlogin, NULL,
                              NULL, err);
    if (c->login == NULL)
        goto fail;
    c->ehlo = sc_open_tables(cf, "smtpd_discard_ehlo_keyword_address_maps",
                             &c->nehlo, NULL, NULL, err);
    if (c->ehlo == NULL)
        goto fail;
    c->ehlo_mask = smtpd_ehlo_mask(cf_str(cf, "smtpd_discard_ehlo_keywords"));
    /* Postfix's default names the alias database, which a machine may
     * not have made yet: its recipients wait (451) rather than bounce */
    c->local_maps = sc_open_tables(cf, "local_recipient_maps", &c->nlocal,
                                   &c->local_missing, warn, err);
    if (c->local_maps == NULL)
        goto fail;
    c->relay_maps =
        sc_open_tables(cf, "relay_recipient_maps", &c->nrelay, NULL, NULL, err);
    if (c->relay_maps == NULL)
        goto fail;
    c->ccerts =
        sc_open_tables(cf, "relay_clientcerts", &c->nccerts, NULL, NULL, err);
    if (c->ccerts == NULL)
        goto fail;
    {
        static const char *const dl[] = {
            "mydestination", "virtual_alias_domains", "relay_domains"};
        struct lookup_dlist **dv[] = {&c->mydest, &c->valias_dl, &c->relay_dl};
        struct addrmap_opts o;
        char *const *prop = cf_list(cf, "propagate_unmatched_extensions");

        for (int k = 0; k < 3; k++) {
            struct buf *e = buf_new(128, 4096);

            *dv[k] = lookup_dlist_new(cf_list(cf, dl[k]), e);
            if (*dv[k] == NULL) {
                buf_printf(err, "%s: %s", dl[k], buf_data(e));
                buf_free(e);
                goto fail;
            }
            buf_free(e);
        }
        memset(&o, 0, sizeof(o));
        o.title = "virtual_alias_maps";
        o.ours = c->mydest;
        o.myorigin = cf_str(cf, "myorigin");
        o.delim = cf_str(cf, "recipient_delimiter");
        for (size_t k = 0; prop[k]; k++)
            if (strcasecmp(prop[k], "virtual") == 0)
                o.propagate = 1;
        o.recursion_limit =
            (size_t) sc_positive(cf, "virtual_alias_recursion_limit");
        o.expansion_limit =
            (size_t) sc_positive(cf, "virtual_alias_expansion_limit");
        o.addrlen_limit =
            (size_t) sc_positive(cf, "virtual_alias_address_length_limit");
        c->valias = addrmap_new(cf_list(cf, "virtual_alias_maps"), &o, err);
        if (c->valias == NULL)
            goto fail;
    }
    c->unk_valias_code = (int) cf_int(cf, "unknown_virtual_alias_reject_code");
    c->unk_local_code = (int) cf_int(cf, "unknown_local_recipient_reject_code");
    c->unk_relay_code = (int) cf_int(cf, "unknown_relay_recipient_reject_code");
    c->show_table = cf_bool(cf, "show_user_unknown_table_name");
    c->unl_rcpt = cf_bool(cf, "smtpd_reject_unlisted_recipient");
    c->unl_sender = cf_bool(cf, "smtpd_reject_unlisted_sender");
    c->delim = xstrdup(cf_str(cf, "recipient_delimiter"));
    c->dbl = xstrdup(cf_str(cf, "double_bounce_sender"));
    c->null_key = xstrdup(cf_str(cf, "smtpd_null_access_lookup_key"));
    c->policy_def = xstrdup(cf_str(cf, "smtpd_policy_service_default_action"));
    c->unk_addr_code = (int) cf_int(cf, "unknown_address_reject_code");
    c->unk_name_code = (int) cf_int(cf, "unknown_hostname_reject_code");
    c->unk_client_code = (int) cf_int(cf, "unknown_client_reject_code");
    c->plain_code = (int) cf_int(cf, "plaintext_reject_code");
    c->multi_code = (int) cf_int(cf, "multi_recipient_bounce_reject_code");
    c->unk_addr_tf = sc_tempfail(cf_str(cf, "unknown_address_tempfail_action"));
    c->unk_helo_tf =
        sc_tempfail(cf_str(cf, "unknown_helo_hostname_tempfail_action"));
    {
        static const char *const codes[] = {
            "unknown_address_reject_code",
            "unknown_hostname_reject_code",
            "unknown_client_reject_code",
            "plaintext_reject_code",
            "multi_recipient_bounce_reject_code",
            "unknown_local_recipient_reject_code",
            "unknown_relay_recipient_reject_code",
            "unknown_virtual_alias_reject_code"};
        static const char *const tfs[] = {
            "unknown_address_tempfail_action",
            "unknown_helo_hostname_tempfail_action"};
        int cv[8] = {c->unk_addr_code,  c->unk_name_code,  c->unk_client_code,
                     c->plain_code,     c->multi_code,     c->unk_local_code,
                     c->unk_relay_code, c->unk_valias_code};
        int tv[2] = {c->unk_addr_tf, c->unk_helo_tf};

        for (int k = 0; k < 8; k++) {
            if (cv[k] < 400 || cv[k] > 599) {
                buf_printf(err, "%s: %d is not a 4xx or 5xx code", codes[k],
                           cv[k]);
                goto fail;
            }
            if (k < 2 && tv[k] < 0) {
                buf_printf(err,
                           "%s: \"%s\" is neither defer_if_permit nor defer",
                           tfs[k], cf_str(cf, tfs[k]));
                goto fail;
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        static const char *const who[2] = {"recipient", "sender"};
        static const char *const what[3] = {"reject_code", "defer_code",
                                            "tempfail_action"};
        char name[3][64];

        for (int w = 0; w < 3; w++)
            snprintf(name[w], sizeof(name[w]), "unverified_%s_%s", who[k],
                     what[w]);
        c->unv[k].rcode = (int) cf_int(cf, name[0]);
        c->unv[k].dcode = (int) cf_int(cf, name[1]);
        c->unv[k].tf = sc_tempfail(cf_str(cf, name[2]));
        snprintf(name[2], sizeof(name[2]), "unverified_%s_reject_reason",
                 who[k]);
        c->unv[k].why = xstrdup(cf_str(cf, name[2]));
        for (int w = 0; w < 2; w++) {
            int v = w ? c->unv[k].dcode : c->unv[k].rcode;

            /* Postfix: 250 accepts the address anyway */
            if (v != 250 && (v < 400 || v > 599)) {
                snprintf(name[2], sizeof(name[2]), "unverified_%s_%s", who[k],
                         what[w]);
                buf_printf(err, "%s: %d is not 250 or a 4xx or 5xx code",
                           name[2], v);
                goto fail;
            }
        }
        if (c->unv[k].tf < 0) {
            snprintf(name[2], sizeof(name[2]), "unverified_%s_%s", who[k],
                     what[2]);
            buf_printf(err, "%s: \"%s\" is neither defer_if_permit nor defer",
                       name[2], cf_str(cf, name[2]));
            goto fail;
        }
    }
    if (!sc_is_action(c->policy_def)) {
        buf_printf(err,
                   "smtpd_policy_service_default_action: \"%s\" is not an "
                   "access action",
                   cf_str(cf, "smtpd_policy_service_default_action"));
        goto fail;
    }
    c->rbl_code = (int) cf_int(cf, "maps_rbl_reject_code");
    if (c->rbl_code < 400 || c->rbl_code > 599) {
        buf_printf(err, "maps_rbl_reject_code: %d is not a 4xx or 5xx code",
                   c->rbl_code);
        goto fail;
    }
    return c;
fail:
    smtpd_check_free(c);
    return NULL;
}

static void
sc_restrs_free(struct sc_restr *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        lookup_free(v[i].t);
        free(v[i].spec);
        free(v[i].filter);
        free(v[i].dom);
    }
    free(v);
}

void
smtpd_check_free(struct smtpd_check *c)
{
    if (c == NULL)
        return;
    for (int l = 0; l < SCL_N; l++)
        sc_restrs_free(c->v[l], c->n[l]);
    for (size_t k = 0; c->cls && k < c->ncls; k++) {
        sc_restrs_free(c->cls[k].v, c->cls[k].n);
        free(c->cls[k].name);
    }
    free(c->cls);
    for (size_t i = 0; i < c->nlogin; i++)
        lookup_free(c->login[i]);
    free(c->login);
    for (size_t i = 0; i < c->nehlo; i++)
        lookup_free(c->ehlo[i]);
    free(c->ehlo);
    for (size_t i = 0; i < c->nlocal; i++)
        lookup_free(c->local_maps[i]);
    free(c->local_maps);
    for (size_t i = 0; i < c->nrelay; i++)
        lookup_free(c->relay_maps[i]);
    free(c->relay_maps);
    for (size_t i = 0; i < c->nccerts; i++)
        lookup_free(c->ccerts[i]);
    free(c->ccerts);
    lookup_dlist_free(c->mydest);
    lookup_dlist_free(c->valias_dl);
    lookup_dlist_free(c->relay_dl);
    addrmap_free(c->valias);
    free(c->delim);
    free(c->dbl);
    free(c->null_key);
    free(c->policy_def);
    free(c->unv[0].why);
    free(c->unv[1].why);
    for (size_t i = 0; i < c->npolicy; i++)
        free(c->policy[i]);
    free(c->policy);
    for (size_t i = 0; i < c->nrbl; i++)
        free(c->rbl[i]);
    free(c->rbl);
    free(c);
}

size_t
smtpd_check_rbl_count(const struct smtpd_check *c)
{
    return c ? c->nrbl : 0;
}

int
smtpd_check_uses_dns(const struct smtpd_check *c)
{
    return c && (c->nrbl > 0 || c->dns);
}

/* Postfix's ehlo_mask.c names, in its order (the log's order). */
static const struct {
    const char *name;
    unsigned bit;
} sc_ehlo_names[] = {
    {"8BITMIME", SMTPD_EHLO_8BITMIME},
    {"AUTH", SMTPD_EHLO_AUTH},
    {"ETRN", SMTPD_EHLO_OTHER},
    {"PIPELINING", SMTPD_EHLO_PIPELINING},
    {"SIZE", SMTPD_EHLO_SIZE},
    {"VERP", SMTPD_EHLO_OTHER},
    {"VRFY", SMTPD_EHLO_VRFY},
    {"XCLIENT", SMTPD_EHLO_OTHER},
    {"XFORWARD", SMTPD_EHLO_OTHER},
    {"STARTTLS", SMTPD_EHLO_STARTTLS},
    {"ENHANCEDSTATUSCODES", SMTPD_EHLO_ENHANCED},
    {"DSN", SMTPD_EHLO_OTHER},
    {"SMTPUTF8", SMTPD_EHLO_OTHER},
    {"CHUNKING", SMTPD_EHLO_OTHER},
    {"SILENT-DISCARD", SMTPD_EHLO_SILENT},
};

unsigned
smtpd_ehlo_mask(const char *words)
{
    char *copy = xstrdup(words), *save = NULL;
    unsigned m = 0;

    for (char *w = strtok_r(copy, ", \t\r\n", &save); w;
         w = strtok_r(NULL, ", \t\r\n", &save))
        for (size_t i = 0; i < sizeof(sc_ehlo_names) / sizeof(*sc_ehlo_names);
             i++)
            if (strcasecmp(w, sc_ehlo_names[i].name) == 0)
                m |= sc_ehlo_names[i].bit; /* others: ignored, as Postfix */
    free(copy);
    return m;
}

char *
smtpd_ehlo_mask_str(unsigned mask, char *out, size_t n)
{
    size_t o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < sizeof(sc_ehlo_names) / sizeof(*sc_ehlo_names); i++)
        if ((mask & sc_ehlo_names[i].bit)
            && sc_ehlo_names[i].bit != SMTPD_EHLO_OTHER
            && sc_ehlo_names[i].bit != SMTPD_EHLO_SILENT) {
            int k = snprintf(out + o, n - o, "%s%s", o ? " " : "",
                             sc_ehlo_names[i].name);

            if (k < 0 || (size_t) k >= n - o)
                break;
            o += (size_t) k;
        }
    return out;
}

unsigned
smtpd_check_ehlo_mask(const struct smtpd_check *c, const char *addr)
{
    struct buf *v;
    unsigned m = c->ehlo_mask;

    if (c->nehlo == 0 || addr == NULL)
        return m;
    v = buf_new(64, 4096);
    for (size_t i = 0; i < c->nehlo; i++) {
        int rc = lookup_get(c->ehlo[i], addr, v);

        if (rc > 0) {
            m = smtpd_ehlo_mask(buf_data(v));
            break;
        }
        if (rc < 0) { /* Postfix would not know what to announce */
            log_warning("smtpd_discard_ehlo_keyword_address_maps: %s",
                        buf_data(v));
            break;
        }
    }
    buf_free(v);
    return m;
}

size_t
smtpd_check_policy_count(const struct smtpd_check *c)
{
    return c ? c->npolicy : 0;
}

const char *
smtpd_check_policy_server(const struct smtpd_check *c, size_t i)
{
    return i < c->npolicy ? c->policy[i] : NULL;
}

const char *
smtpd_check_rbl_domain(const struct smtpd_check *c, size_t i)
{
    return i < c->nrbl ? c->rbl[i] : NULL;
}

int
smtpd_check_rbl_name(const struct sockaddr *sa, const char *domain, char *out,
                     size_t outsz)
{
    const unsigned char *b;
    size_t o = 0;
    int n;

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *) sa;

        b = s6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            b += 12;
            goto v4;
        }
        for (int i = 15; i >= 0; i--) {
            n = snprintf(out + o, outsz - o, "%x.%x.", b[i] & 15, b[i] >> 4);
            if (n < 0 || (size_t) n >= outsz - o)
                return -1;
            o += (size_t) n;
        }
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *) sa;

        b = (const unsigned char *) &s4->sin_addr.s_addr;
    v4:
        n = snprintf(out, outsz, "%u.%u.%u.%u.", b[3], b[2], b[1], b[0]);
        if (n < 0 || (size_t) n >= outsz)
            return -1;
        o = (size_t) n;
    } else {
        return -1;
    }
    n = snprintf(out + o, outsz - o, "%s", domain);
    return n < 0 || (size_t) n >= outsz - o ? -1 : 0;
}

/* ---- replies ---- */

/* Replies about the reverse client name and the SASL login name: named
 * as lists, never ones. */
#define SCL_REV SCL_N

static const char *const sc_class[SCL_N + 3] = {
    "Client host",        "Helo command",           "Sender address",
    "Recipient address",  "Recipient address",      "Data command",
    "End-of-data",        "Unverified Client host", "SASL login name",
    "Client certificate",
};

/* The <name> of a list's replies. */
static void
sc_name(const struct sc_run *r, enum sc_list l, struct buf *b)
{
    const struct smtpd_check_in *in = r->in;

    switch (l) {
    case SCL_CLIENT:
        buf_printf(b, "<%s[%s]>", in->name ? in->name : "unknown",
                   in->addr ? in->addr : "");
        break;
    case SCL_HELO:
        buf_printf(b, "<%s>", in->helo ? in->helo : "");
        break;
    case SCL_SENDER:
        buf_printf(b, "<%s>", in->sender ? in->sender : "");
        break;
    case SCL_RELAY:
    case SCL_RCPT:
        buf_printf(b, "<%s>", in->rcpt ? in->rcpt : "");
        break;
    case SCL_DATA:
        buf_printf(b, "<DATA>");
        break;
    case SCL_EOD:
        buf_printf(b, "<END-OF-MESSAGE>");
        break;
    case SCL_REV:
        buf_printf(b, "<%s>", in->rev_name ? in->rev_name : "unknown");
        break;
    case SCL_CCERT:
        buf_printf(b, "<%s>", in->ccert_cn ? in->ccert_cn : "");
        break;
    case SCL_SASL: { /* printable, as Postfix's */
        const char *u = in->sasl_user ? in->sasl_user : "";
        size_t o = buf_len(b);

        buf_printf(b, "<%s>", u);
        for (char *p = buf_data(b) + o + 1; *p && p[1]; p++)
            if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                *p = '_';
        break;
    }
    }
}

/* A reject (or, after warn_if_reject, a warning): SCR_REJECT or DUNNO. */
static enum sc_result sc_reject(struct sc_run *r, int code, const char *dsn,
                                const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum sc_result
sc_reject(struct sc_run *r, int code, const char *dsn, const char *fmt, ...)
{
    struct buf *t = buf_new(256, BUF_NOCAP);
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(t, fmt, ap);
    va_end(ap);
    /* a configuration error is never only a warning (Postfix) */
    if (r->warn && strcmp(dsn, "4.3.5") != 0) {
        struct buf *l = buf_new(256, BUF_NOCAP);

        buf_printf(l, "%d %s %s", code, dsn, buf_data(t));
        if (r->in->log)
            r->in->log(r->in->arg, "reject_warning", buf_data(l));
        buf_free(l);
        buf_free(t);
        return SCR_DUNNO;
    }
    /* an earlier defer_if_reject turns a 5xx into its deferral */
    if (r->dir.active && code >= 500) {
        r->dir.active = 0;
        code = r->dir.code;
        dsn = r->dir.dsn;
        buf_reset(t);
        buf_append(t, buf_data(r->dir.text), buf_len(r->dir.text));
    }
    r->res->verdict = SMTPD_CHECK_REJECT;
    r->res->code = code;
    snprintf(r->res->dsn, sizeof(r->res->dsn), "%s", dsn);
    buf_reset(r->res->text);
    buf_append(r->res->text, buf_data(t), buf_len(t));
    buf_free(t);
    return SCR_REJECT;
}

/* A reject whose DSN class follows its code: dsn_rest "7.25" gives
 * "4.7.25" or "5.7.25". */
static enum sc_result sc_reject_code(struct sc_run *r, int code,
                                     const char *dsn_rest, const char *fmt,
                                     const char *arg);

static enum sc_result
sc_reject_code(struct sc_run *r, int code, const char *dsn_rest,
               const char *fmt, const char *arg)
{
    char dsn[16];
    struct buf *t = buf_new(128, BUF_NOCAP);
    enum sc_result res;

    snprintf(dsn, sizeof(dsn), "%c.%s", '0' + code / 100, dsn_rest);
    buf_printf(t, fmt, arg);
    res = sc_reject(r, code, dsn, "%s", buf_data(t));
    buf_free(t);
    return res;
}

/* defer_if_permit / defer_if_reject: keep the first deferral of its kind
 * ("<name>: CLASS rejected: TEXT"). Under warn_if_reject a
 * defer_if_permit is a plain reject, so only logged. */
static enum sc_result
sc_defer_if(struct sc_run *r, struct sc_defer *d, const char *name,
            const char *class, int code, const char *dsn, const char *text)
{
    if (d == &r->dip && r->warn)
        return sc_reject(r, code, dsn, "%s: %s rejected: %s", name, class,
                         text);
    if (!d->active) {
        d->active = 1;
        d->code = code;
        snprintf(d->dsn, sizeof(d->dsn), "%s", dsn);
        if (d->text == NULL) /* made when first needed: most lists never */
            d->text = buf_new(128, BUF_NOCAP);
        buf_reset(d->text);
        buf_printf(d->text, "%s: %s rejected: %s", name, class, text);
    }
    return SCR_DUNNO;
}

/* The same with the list's name and class. */
static enum sc_result
sc_defer_if_class(struct sc_run *r, struct sc_defer *d, enum sc_list l,
                  int code, const char *dsn, const char *text)
{
    struct buf *n = buf_new(128, BUF_NOCAP);
    enum sc_result res;

    sc_name(r, l, n);
    res = sc_defer_if(r, d, buf_data(n), sc_class[l], code, dsn, text);
    buf_free(n);
    return res;
}

/* An answer from the network: 1 known (*ans), 0 not yet (the need is in
 * res), -1 the caller has none (the restriction is skipped). */
static int
sc_query(struct sc_run *r, enum smtpd_check_q q, const char *key,
         const struct smtpd_check_ans **ans)
{
    if (r->in->query == NULL || strlen(key) >= SMTPD_CHECK_KEY_MAX)
        return -1; /* too long a key could not be asked for as it is */
    if (r->in->query(r->in->arg, q, key, ans))
        return 1;
    r->res->need = q;
    snprintf(r->res->key, sizeof(r->res->key), "%s", key);
    return 0;
}

/* An access action's text may start with its own DSN ("5.7.2 list
 * closed"): into dsn (its class made the reply code's, as Postfix does)
 * and the text after it returned; else dsn keeps the default. */
static const char *
sc_text_dsn(const char *text, int code, char *dsn, size_t dsnsz)
{
    size_t dl = strspn(text, "0123456789.");
    int dots = 0;

    for (size_t i = 0; i < dl; i++)
        dots += text[i] == '.';
    if (dl >= 5 && dl < dsnsz && dots == 2
        && (text[0] == '2' || text[0] == '4' || text[0] == '5')
        && text[1] == '.' && text[dl - 1] != '.'
        && (text[dl] == ' ' || text[dl] == '\t' || text[dl] == '\0')) {
        snprintf(dsn, dsnsz, "%.*s", (int) dl, text);
        dsn[0] = (char) ('0' + code / 100);
        text += dl;
        while (*text == ' ' || *text == '\t')
            text++;
    }
    return text;
}

/* "<name>: CLASS rejected: TEXT" with the list's or the key's name. */
static enum sc_result
sc_reject_class(struct sc_run *r, enum sc_list l, int code, const char *dsn,
                const char *text)
{
    struct buf *n = buf_new(128, BUF_NOCAP);
    enum sc_result res;

    sc_name(r, l, n);
    res = sc_reject(r, code, dsn, "%s: %s rejected: %s", buf_data(n),
                    sc_class[l], text);
    buf_free(n);
    return res;
}

/* ---- the checks ---- */

/* An RFC 5321 name as Postfix's valid_hostname is lenient: labels of
 * letters, digits, '-' and '_', not starting or ending with '-', at most
 * 255 bytes; one trailing dot is dropped first. Address literals are
 * judged by sc_literal. 1 valid, 0 not. */
static int
sc_valid_hostname(const char *h)
{
    size_t n = strlen(h), lab = 0;

    if (n > 1 && h[n - 1] == '.')
        n--;
    if (n == 0 || n > 255 || h[n - 1] == '.')
        return 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) h[i];

        if (ch == '.') {
            if (lab == 0 || h[i - 1] == '-')
                return 0;
            lab = 0;
        } else if (isalnum(ch) || ch == '_' || ch == '-') {
            if (lab == 0 && ch == '-')
                return 0;
            if (++lab > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return h[n - 1] != '-';
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]": 1 when the address parses. */
static int
sc_literal(const char *h)
{
    size_t n = strlen(h);
    char a[64];
    unsigned char bin[16];

    if (n < 3 || h[0] != '[' || h[n - 1] != ']' || n - 2 >= sizeof(a))
        return 0;
    snprintf(a, sizeof(a), "%.*s", (int) (n - 2), h + 1);
    if (strncasecmp(a, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, a + 5, bin) == 1;
    return inet_pton(AF_INET, a, bin) == 1;
}

/* A fully-qualified domain: valid, with a dot inside (one trailing dot
 * dropped), not all digits and dots (an IP address is not a host name);
 * an address literal counts. */
static int
sc_fqdn(const char *h)
{
    size_t n = strlen(h);
    const char *d;

    if (h[0] == '[')
        return sc_literal(h);
    if (n > 1 && h[n - 1] == '.')
        n--;
    if (!sc_valid_hostname(h) || (d = memchr(h, '.', n)) == NULL || d == h)
        return 0;
    return strspn(h, "0123456789.") < n;
}

static enum sc_result sc_one(struct sc_run *r, const struct sc_restr *x);
static enum sc_result sc_class_run(struct sc_run *r, size_t k);

/* A restriction list given as an access action's value
 * ("permit_auth_destination, reject"): its words in order, as a list. */
static enum sc_result
sc_action_list(struct sc_run *r, const char *v)
{
    char *copy = xstrdup(v), *save = NULL;
    enum sc_result res = SCR_DUNNO;

    for (char *w = strtok_r(copy, ", \t", &save); w && res == SCR_DUNNO;
         w = strtok_r(NULL, ", \t", &save)) {
        int found;
        struct sc_restr x = {
            sc_lookup_name(w, &found), NULL, NULL, 0, NULL, NULL};

        if (!found) { /* checked by the caller: cannot happen */
            res = sc_reject(r, 451, "4.3.5", "Server configuration error");
            break;
        }
        r->depth++;
        res = sc_one(r, &x);
        r->depth--;
    }
    free(copy);
    return res;
}

/* Are all words of v restriction names that take no table? */
static int
sc_is_list(const char *v)
{
    char *copy = xstrdup(v), *save = NULL;
    int ok = 1, n = 0;

    for (char *w = strtok_r(copy, ", \t", &save); w && ok;
         w = strtok_r(NULL, ", \t", &save), n++)
        sc_lookup_name(w, &ok);
    free(copy);
    return ok && n > 0;
}

/* An access table value: the action (Postfix's access(5)). */
static enum sc_result
sc_action(struct sc_run *r, enum sc_list l, const char *spec, const char *v)
{
    size_t wl = strcspn(v, " \t");
    const char *text = v + wl;
    char dsn[16];

    while (*text == ' ' || *text == '\t')
        text++;
#define IS(w) (wl == strlen(w) && strncasecmp(v, w, wl) == 0)
    /* RELAY and an all-digits value: OK, for old tables */
    if (IS("OK") || IS("PERMIT") || IS("RELAY")
        || (wl > 0 && strspn(v, "0123456789") == strlen(v) && wl != 3))
        return SCR_PERMIT;
    if (IS("DUNNO"))
        return SCR_DUNNO;
    if (IS("REJECT") || IS("DEFER")) {
        int rej = IS("REJECT");
        int code = rej ? 554 : 450;

        snprintf(dsn, sizeof(dsn), "%s", rej ? "5.7.1" : "4.7.1");
        text = sc_text_dsn(text, code, dsn, sizeof(dsn));
        return sc_reject_class(r, l, code, dsn, *text ? text : "Access denied");
    }
    if (IS("DEFER_IF_PERMIT") || IS("DEFER_IF_REJECT")) {
        snprintf(dsn, sizeof(dsn), "4.7.1");
        text = sc_text_dsn(text, 450, dsn, sizeof(dsn));
        return sc_defer_if_class(r, IS("DEFER_IF_PERMIT") ? &r->dip : &r->dir,
                                 l, 450, dsn,
                                 *text ? text : "Service unavailable");
    }
    if (IS("WARN") || IS("INFO")) {
        if (r->in->log)
            r->in->log(r->in->arg, IS("WARN") ? "warn" : "info", text);
        return SCR_DUNNO;
    }
    if (IS("HOLD") || IS("DISCARD")) {
        int hold = IS("HOLD");
        struct buf *n = buf_new(128, BUF_NOCAP);

        /* Postfix: "<name>: CLASS triggers HOLD action", or the text */
        sc_name(r, l, n);
        if (!hold || r->res->verdict == SMTPD_CHECK_PASS) {
            r->res->verdict = hold ? SMTPD_CHECK_HOLD : SMTPD_CHECK_DISCARD;
            buf_reset(r->res->text);
            if (*text)
                buf_printf(r->res->text, "%s: %s %s", buf_data(n), sc_class[l],
                           text);
            else
                buf_printf(r->res->text, "%s: %s triggers %s action",
                           buf_data(n), sc_class[l], hold ? "HOLD" : "DISCARD");
        }
        buf_free(n);
        /* DISCARD: accepted, no other restriction runs (Postfix) */
        return hold ? SCR_DUNNO : SCR_DISCARD;
    }
    if (IS("PREPEND")) {
        size_t nl = strcspn(text, ": \t");
        char safe[128];

        /* a header: a name of printable bytes, its colon, a line */
        if (nl == 0 || text[nl] != ':' || strlen(text) > 998
            || strspn(text, "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQ"
                            "RSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~ \t")
                   != strlen(text)) {
            log_warning("access table %s entry \"%s\" requires header: text",
                        spec, log_safe(v, strlen(v), safe, sizeof(safe)));
            return SCR_DUNNO;
        }
        if (r->res->prepend)
            buf_printf(r->res->prepend, "%s\n", text);
        return SCR_DUNNO;
    }
    if (IS("FILTER") || IS("REDIRECT") || IS("BCC")) {
        char safe[128];

        log_warning("access table %s: action \"%.*s\" is not implemented in "
                    "this Sluice yet; ignored",
                    spec, (int) (wl > 32 ? 32 : wl),
                    log_safe(v, wl, safe, sizeof(safe)));
        return SCR_DUNNO;
    }
    if (wl == 3 && (v[0] == '4' || v[0] == '5') && isdigit((unsigned char) v[1])
        && isdigit((unsigned char) v[2])) {
        int code = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');

        snprintf(dsn, sizeof(dsn), "%c.7.1", v[0]);
        text = sc_text_dsn(text, code, dsn, sizeof(dsn));
        return sc_reject_class(r, l, code, dsn, *text ? text : "Access denied");
    }
#undef IS
    if (wl == strlen(v) && sc_class_find(r->c, v) >= 0)
        return sc_class_run(r, (size_t) sc_class_find(r->c, v));
    if (r->depth < 4 && sc_is_list(v))
        return sc_action_list(r, v);
    {
        char safe[128];

        log_warning("access table %s: unknown action \"%s\": treated as a "
                    "temporary server configuration error",
                    spec, log_safe(v, strlen(v), safe, sizeof(safe)));
    }
    return sc_reject(r, 451, "4.3.5", "Server configuration error");
}

/* Look keys up in t, the first that exists decides: the action's result,
 * or DUNNO when none does. *found (NULL ok): 1 when one existed or the
 * lookup failed. */
static enum sc_result
sc_lookup(struct sc_run *r, enum sc_list l, const struct sc_restr *x,
          char *const *keys, size_t nkeys, int *found)
{
    struct buf *v = buf_new(128, 4096);
    enum sc_result res = SCR_DUNNO;
    int f = 0;

    for (size_t i = 0; i < nkeys; i++) {
        int rc = lookup_get(x->t, keys[i], v);

        if (rc < 0) {
            log_warning("access table %s: %s", x->spec, buf_data(v));
            res = sc_reject(r, 451, "4.3.0", "Temporary lookup failure");
            f = 1;
            break;
        }
        if (rc > 0) {
            res = sc_action(r, l, x->spec, buf_data(v));
            f = 1;
            break;
        }
    }
    buf_free(v);
    if (found)
        *found = f;
    return res;
}

/* Keys of a domain: itself, then its parents ("a.b.c", "b.c", "c"). */
static size_t
sc_domain_keys(const char *d, char **keys, size_t max)
{
    size_t n = 0;

    while (d && *d && n < max) {
        keys[n++] = xstrdup(d);
        d = strchr(d, '.');
        if (d)
            d++;
    }
    return n;
}

/* Keys of an address: user@domain, the domain and its parents, user@;
 * the null sender: smtpd_null_access_lookup_key. */
static size_t
sc_addr_keys(const struct sc_run *r, const char *a, char **keys, size_t max)
{
    const char *at = strrchr(a, '@');
    size_t n = 0;

    if (*a == '\0') {
        keys[n++] = xstrdup(r->c->null_key);
        return n;
    }
    keys[n++] = xstrdup(a);
    if (at) {
        n += sc_domain_keys(at + 1, keys + n, max - n - 1);
        keys[n++] = xmemdup(a, (size_t) (at - a) + 1); /* "user@" */
    }
    return n;
}

/* Keys of an address: itself, then cut at each dot (IPv4: "192.0.2",
 * "192.0", "192") or colon (IPv6), as Postfix looks them up. */
static size_t
sc_ip_keys(const char *addr, char **keys, size_t max)
{
    char *a = xstrdup(addr), *d;
    int delim = strchr(a, ':') ? ':' : '.';
    size_t n = 0;

    if (max > 0)
        keys[n++] = xstrdup(a);
    while ((d = strrchr(a, delim)) != NULL && d > a && n < max) {
        *d = '\0';
        keys[n++] = xstrdup(a);
    }
    free(a);
    return n;
}

/* Keys of the client: its name and parents (or "unknown"), then its
 * address's (sc_ip_keys). */
static size_t
sc_client_keys(const struct sc_run *r, const char *name, char **keys,
               size_t max)
{
    const struct smtpd_check_in *in = r->in;
    size_t n = 0;

    if (name && strcmp(name, "unknown") != 0)
        n += sc_domain_keys(name, keys, max - 12);
    else
        keys[n++] = xstrdup("unknown");
    if (in->addr && *in->addr)
        n += sc_ip_keys(in->addr, keys + n, max - n);
    return n;
}

#define SC_KEYS_MAX 140 /* a 255-byte name has at most 128 labels */

static enum sc_result
sc_access(struct sc_run *r, const struct sc_restr *x)
{
    char *keys[SC_KEYS_MAX];
    size_t n = 0;
    enum sc_list l = SCL_CLIENT;
    enum sc_result res;

    keys[0] = NULL; /* none when there is nothing to look up */
    switch (x->kind) {
    case SC_CLIENT_ACCESS:
        n = sc_client_keys(r, r->in->name, keys, SC_KEYS_MAX);
        l = SCL_CLIENT;
        break;
    case SC_HELO_ACCESS:
        if (r->in->helo)
            n = sc_domain_keys(r->in->helo, keys, SC_KEYS_MAX);
        l = SCL_HELO;
        break;
    case SC_SENDER_ACCESS:
        if (r->in->sender)
            n = sc_addr_keys(r, r->in->sender, keys, SC_KEYS_MAX);
        l = SCL_SENDER;
        break;
    case SC_RCPT_ACCESS:
        if (r->in->rcpt)
            n = sc_addr_keys(r, r->in->rcpt, keys, SC_KEYS_MAX);
        l = SCL_RCPT;
        break;
    case SC_REV_CLIENT_ACCESS:
        n = sc_client_keys(r, r->in->rev_name, keys, SC_KEYS_MAX);
        l = SCL_REV;
        break;
    case SC_CCERT_ACCESS: /* the fingerprints: certificate, public key */
        if (r->in->ccert > 0) {
            if (r->in->ccert_fp && *r->in->ccert_fp)
                keys[n++] = xstrdup(r->in->ccert_fp);
            if (r->in->ccert_pkey_fp && *r->in->ccert_pkey_fp)
                keys[n++] = xstrdup(r->in->ccert_pkey_fp);
        }
        l = SCL_CCERT;
        break;
    case SC_SASL_ACCESS: /* the login name alone, as it is */
        if (r->in->authenticated && r->in->sasl_user && *r->in->sasl_user)
            keys[n++] = xstrdup(r->in->sasl_user);
        l = SCL_SASL;
        break;
    default:
        return SCR_DUNNO;
    }
    res = sc_lookup(r, l, x, keys, n, NULL);
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    return res;
}

/* A warning in Postfix's words, for the caller's log (said once, when
 * the evaluation does not end waiting for an answer). */
static void sc_warn(struct sc_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sc_warn(struct sc_run *r, const char *fmt, ...)
{
    struct buf *b = buf_new(256, BUF_NOCAP);
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (r->in->log)
        r->in->log(r->in->arg, "warning", buf_data(b));
    buf_free(b);
}

/* A server's name (with its parents) or address (with the networks
 * above it) in check_S_{mx,ns,a}_access's table. */
static enum sc_result
sc_server_lookup(struct sc_run *r, const struct sc_restr *x, const char *key,
                 int addr, int *found)
{
    char *keys[SC_KEYS_MAX] = {NULL}; /* gcc -O1 cannot see they are set */
    size_t n = addr ? sc_ip_keys(key, keys, SC_KEYS_MAX)
                    : sc_domain_keys(key, keys, SC_KEYS_MAX);
    enum sc_result res = sc_lookup(r, (enum sc_list) x->rbl, x, keys, n, found);

    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    return res;
}

/* Postfix forbids OK in these tables: a server name or address anyone can
 * point their DNS at would let them through. */
static enum sc_result
sc_server_result(struct sc_run *r, const struct sc_restr *x, enum sc_result res,
                 const char *what)
{
    const char *subj = "reverse_client", *t = x->kind == SC_MX_ACCESS   ? "mx"
                                              : x->kind == SC_NS_ACCESS ? "ns"
                                                                        : "a";

    if (res != SCR_PERMIT)
        return res;
    for (size_t i = 0; i < sizeof(sc_server_subj) / sizeof(sc_server_subj[0]);
         i++)
        if (sc_server_subj[i].list == (int) x->rbl)
            subj = sc_server_subj[i].name;
    sc_warn(r, "restriction check_%s_%s_access returns OK for %s", subj, t,
            what);
    sc_warn(r, "this is not allowed for security reasons");
    sc_warn(r, "use DUNNO instead of OK if you want to make an exception");
    return sc_reject(r, 451, "4.3.5", "Server configuration error");
}

/* check_S_mx_access, check_S_ns_access, check_S_a_access (Postfix's
 * check_server_access): the servers' names, then their addresses, in the
 * table; the first entry found decides. */
static enum sc_result
sc_server_access(struct sc_run *r, const struct sc_restr *x)
{
    const struct smtpd_check_in *in = r->in;
    enum sc_list l = (enum sc_list) x->rbl;
    enum smtpd_check_q q = x->kind == SC_MX_ACCESS   ? SMTPD_CHECK_Q_MX
                           : x->kind == SC_NS_ACCESS ? SMTPD_CHECK_Q_NS
                                                     : SMTPD_CHECK_Q_A;
    const char *type = q == SMTPD_CHECK_Q_MX   ? "MX"
                       : q == SMTPD_CHECK_Q_NS ? "NS"
                                               : "A";
    const struct smtpd_check_ans *ans;
    const char *what, *dom, *d;
    char rname[600];
    size_t count = 0;
    int found = 0, rc;
    enum sc_result res;

    switch (l) {
    case SCL_CLIENT:
        what = in->name;
        break;
    case SCL_HELO:
        what = in->helo;
        break;
    case SCL_SENDER:
        what = in->sender;
        break;
    case SCL_RCPT:
        what = in->rcpt;
        break;
    default:
        what = in->rev_name;
        break;
    }
    if (what == NULL || *what == '\0'
        || ((l == SCL_CLIENT || l == SCL_REV)
            && strcasecmp(what, "unknown") == 0))
        return SCR_DUNNO;
    if (l == SCL_CLIENT)
        snprintf(rname, sizeof(rname), "%s[%s]", what,
                 in->addr ? in->addr : "");
    else
        snprintf(rname, sizeof(rname), "%s", what);
    dom = strrchr(what, '@') ? strrchr(what, '@') + 1 : what;
    if (*dom == '\0')
        return SCR_DUNNO; /* "user@": nothing to look up */
    if (*dom == '[') {    /* an address literal: its own MX host */
        char a[64];
        unsigned char bin[16];
        size_t n = strlen(dom);
        int v6;

        if (q == SMTPD_CHECK_Q_NS || n < 3 || dom[n - 1] != ']'
            || n - 2 >= sizeof(a))
            return SCR_DUNNO;
        snprintf(a, sizeof(a), "%.*s", (int) (n - 2), dom + 1);
        v6 = strncasecmp(a, "IPv6:", 5) == 0;
        if (inet_pton(v6 ? AF_INET6 : AF_INET, a + (v6 ? 5 : 0), bin) != 1)
            return SCR_DUNNO;
        res = sc_server_lookup(r, x, a + (v6 ? 5 : 0), 1, &found);
        return sc_server_result(r, x, res, what);
    }
    /* NS: the parent domains' while a name has none, as Postfix */
    for (d = dom;;) {
        rc = sc_query(r, q, d, &ans);
        if (rc <= 0)
            return rc == 0 ? SCR_NEED : SCR_DUNNO;
        if (q != SMTPD_CHECK_Q_NS
            || ans->srv.status != SMTPD_CHECK_SRV_NOTFOUND)
            break;
        if ((d = strchr(d, '.')) == NULL || d[1] == '\0') {
            d = NULL;
            break;
        }
        d++;
    }
    if (ans->srv.status == SMTPD_CHECK_SRV_NULLMX)
        return SCR_DUNNO;
    if (ans->srv.status != SMTPD_CHECK_SRV_OK) {
        sc_warn(r, "Unable to look up %s host for %s: %s", type, d ? d : what,
                ans->srv.why ? ans->srv.why : "Host not found");
        return SCR_DUNNO;
    }
    for (size_t i = 0; i < ans->srv.n; i++) {
        const struct smtpd_check_srv *sv = &ans->srv.v[i];
        unsigned char bin[4];

        if (inet_pton(AF_INET, sv->name, bin) == 1) { /* a name like an
                                                          address */
            res = sc_server_lookup(r, x, sv->name, 1, &found);
            if (res != SCR_DUNNO || found)
                return sc_server_result(r, x, res, what);
            continue;
        }
        if (q != SMTPD_CHECK_Q_A) {
            res = sc_server_lookup(r, x, sv->name, 0, &found);
            if (res != SCR_DUNNO || found)
                return sc_server_result(r, x, res, what);
        }
        if (sv->why) {
            if (q != SMTPD_CHECK_Q_A)
                sc_warn(r, "Unable to look up %s host %s for %s %s: %s", type,
                        sv->name, sc_class[l], rname, sv->why);
            continue;
        }
        for (size_t k = 0; k < sv->naddr; k++) {
            if (++count > SMTPD_CHECK_SRV_MAX) {
                sc_warn(r,
                        "check_server_access: %s server address count limit "
                        "(%d) exceeded for %s %s -- ignoring the remainder",
                        type, SMTPD_CHECK_SRV_MAX, sc_class[l], rname);
                return SCR_DUNNO;
            }
            res = sc_server_lookup(r, x, sv->addr[k], 1, &found);
            if (res != SCR_DUNNO || found)
                return sc_server_result(r, x, res, what);
        }
    }
    return SCR_DUNNO;
}

/* The keys of address a (local part lp, domain d) in a recipient table,
 * as Postfix's mail_addr_find: user+ext@d, user@d, then (ours) user+ext
 * and user, then @d. */
static size_t
sc_rcpt_keys(const struct sc_run *r, const char *lp, size_t lpl, const char *d,
             int ours, char **keys)
{
    size_t n = 0, base = lpl;
    struct buf *b = buf_new(256, BUF_NOCAP);

    if (*r->c->delim && lpl > 0) {
        size_t cut = strcspn(lp, r->c->delim);

        if (cut > 0 && cut < lpl)
            base = cut;
    }
    buf_printf(b, "%.*s@%s", (int) lpl, lp, d);
    keys[n++] = xstrdup(buf_data(b));
    if (base < lpl) {
        buf_reset(b);
        buf_printf(b, "%.*s@%s", (int) base, lp, d);
        keys[n++] = xstrdup(buf_data(b));
    }
    if (ours) {
        keys[n++] = xmemdup(lp, lpl);
        if (base < lpl)
            keys[n++] = xmemdup(lp, base);
    }
    buf_reset(b);
    buf_printf(b, "@%s", d);
    keys[n++] = xstrdup(buf_data(b));
    buf_free(b);
    return n;
}

/* reject_unlisted_recipient / _sender: is address a valid in its
 * domain's recipient table (local_recipient_maps for ours,
 * relay_recipient_maps for relay domains)? */
static enum sc_result
sc_unlisted(struct sc_run *r, const char *a, int sender)
{
    const struct smtpd_check *c = r->c;
    const char *at = a ? strrchr(a, '@') : NULL, *class;
    struct lookup_table *const *maps;
    size_t nmaps, nkeys, lpl;
    char *keys[6];
    struct buf *v;
    int ours, code, found = 0, failed = 0, valias = 0;

    if (r->warn == 0) {
        if (sender)
            r->sender_checked = 1;
        else
            r->rcpt_checked = 1;
    }
    if (at == NULL || at == a || at[1] == '\0' || at[1] == '['
        || r->in->ask == NULL
        || (c->nlocal == 0 && !c->local_missing && c->nrelay == 0
            && lookup_dlist_empty(c->valias_dl)))
        return SCR_DUNNO;
    /* Postfix: an address virtual_alias_maps lists is valid anywhere */
    switch (addrmap_listed(c->valias, a)) {
    case 1:
        return SCR_DUNNO;
    case -1:
        failed = 1;
        break;
    default:
        break;
    }
    lpl = (size_t) (at - a);
    ours = r->in->ask(r->in->arg, sender ? SMTPD_CHECK_SENDER_FINAL
                                         : SMTPD_CHECK_RCPT_FINAL);
    if (ours) {
        static const char *const always[] = {"postmaster", "mailer-daemon"};

        for (size_t i = 0; i < 2; i++)
            if (lpl == strlen(always[i]) && strncasecmp(a, always[i], lpl) == 0)
                return SCR_DUNNO;
        if (lpl == strlen(c->dbl) && strncasecmp(a, c->dbl, lpl) == 0)
            return SCR_DUNNO;
        maps = c->local_maps;
        nmaps = c->nlocal;
        code = c->unk_local_code;
        failed |= c->local_missing; /* unless the others list it */
    } else if (r->in->ask(r->in->arg, sender ? SMTPD_CHECK_SENDER_VALIAS
                                             : SMTPD_CHECK_RCPT_VALIAS)) {
        maps = NULL; /* every valid address was in virtual_alias_maps */
        nmaps = 0;
        code = c->unk_valias_code;
        valias = 1;
    } else if (r->in->ask(r->in->arg, sender ? SMTPD_CHECK_SENDER_RELAY
                                             : SMTPD_CHECK_RCPT_RELAY)) {
        maps = c->relay_maps;
        nmaps = c->nrelay;
        code = c->unk_relay_code;
    } else {
        return SCR_DUNNO; /* not ours to judge */
    }
    if (nmaps == 0 && !failed && !valias)
        return SCR_DUNNO; /* no list: every address is valid */
    nkeys = sc_rcpt_keys(r, a, lpl, at + 1, ours, keys);
    v = buf_new(128, 4096);
    for (size_t t = 0; t < nmaps && !found; t++)
        for (size_t k = 0; k < nkeys && !found; k++) {
            int rc = lookup_get(maps[t], keys[k], v);

            if (rc < 0) {
                log_warning("%s: %s: %s",
                            ours ? "local_recipient_maps"
                                 : "relay_recipient_maps",
                            lookup_spec(maps[t]), buf_data(v));
                failed = 1;
            }
            found = rc > 0;
        }
    buf_free(v);
    for (size_t k = 0; k < nkeys; k++)
        free(keys[k]);
    class = sender ? "Sender address" : "Recipient address";
    if (found)
        return SCR_DUNNO;
    if (failed)
        return sc_reject(r, 451, "4.3.0",
                         "<%s>: %s rejected: Temporary lookup failure", a,
                         class);
    {
        char dsn[16];

        snprintf(dsn, sizeof(dsn), "%c.1.%c", '0' + code / 100,
                 sender ? '0' : '1');
        return sc_reject(r, code, dsn, "<%s>: %s rejected: User unknown%s", a,
                         class,
                         !c->show_table ? ""
                         : ours         ? " in local recipient table"
                         : valias       ? " in virtual alias table"
                                        : " in relay recipient table");
    }
}

enum smtpd_check_dclass
smtpd_check_dclass(const struct smtpd_check *c, const char *domain)
{
    if (lookup_dlist_match(c->mydest, domain) > 0)
        return SMTPD_CHECK_D_LOCAL;
    if (lookup_dlist_match(c->valias_dl, domain) > 0)
        return SMTPD_CHECK_D_VALIAS;
    if (lookup_dlist_match(c->relay_dl, domain) > 0)
        return SMTPD_CHECK_D_RELAY;
    return SMTPD_CHECK_D_OTHER;
}

const struct addrmap *
smtpd_check_valias(const struct smtpd_check *c)
{
    return c->valias;
}

/* smtpd_sender_login_maps: the owners of the sender ("u1, u2"), looked
 * up as the address, then "@domain". 1 found, 0 not. */
static int
sc_owners(const struct sc_run *r, struct buf *out)
{
    const char *s = r->in->sender, *at;
    int rc = 0;

    for (size_t i = 0; i < r->c->nlogin && rc == 0; i++) {
        rc = lookup_get(r->c->login[i], s, out);
        if (rc == 0 && (at = strrchr(s, '@')) != NULL)
            rc = lookup_get(r->c->login[i], at, out);
    }
    return rc > 0;
}

static int
sc_owned_by(const char *owners, const char *user)
{
    size_t ul = strlen(user);

    for (const char *p = owners; *p;) {
        size_t n = strcspn(p, ", \t");

        if (n == ul && strncasecmp(p, user, ul) == 0)
            return 1;
        p += n;
        p += strspn(p, ", \t");
    }
    return 0;
}

static enum sc_result
sc_login_mismatch(struct sc_run *r, enum sc_kind k)
{
    const struct smtpd_check_in *in = r->in;
    struct buf *owners;
    enum sc_result res = SCR_DUNNO;
    int found;

    if (in->sender == NULL || *in->sender == '\0')
        return SCR_DUNNO;
    owners = buf_new(128, 4096);
    found = sc_owners(r, owners);
    if (in->authenticated && in->sasl_user) {
        if (k != SC_UNAUTH_LOGIN_MISMATCH
            && (k != SC_KNOWN_LOGIN_MISMATCH || found)
            && (!found || !sc_owned_by(buf_data(owners), in->sasl_user)))
            res = sc_reject(r, 553, "5.7.1",
                            "<%s>: Sender address rejected: not owned by "
                            "user %s",
                            in->sender, in->sasl_user);
    } else if (found && k != SC_AUTH_LOGIN_MISMATCH) {
        res = sc_reject(r, 553, "5.7.1",
                        "<%s>: Sender address rejected: not logged in",
                        in->sender);
    }
    buf_free(owners);
    return res;
}

/* Does a DNS list answer hold an address the filter allows? */
static int
sc_listed(const struct smtpd_check_rbl *a, const struct sc_filter *f)
{
    if (a->listed != 1)
        return 0; /* not listed, or not known: as Postfix */
    for (size_t i = 0; i < a->naddr; i++) {
        int hit = 1;

        for (int k = 0; k < 4 && f; k++)
            if (!(f->ok[k][a->addrs[i][k] / 8] & (1u << (a->addrs[i][k] % 8))))
                hit = 0;
        if (hit)
            return 1;
    }
    return 0;
}

/* reject_rbl_client, permit_dnswl_client: a listing whose address the
 * filter allows (Postfix's rbl reply, its TXT as the reason). */
/* permit_dnswl_client, permit_rhswl_client: what (the address, the
 * name) listed in an allow list permits, as Postfix: never for a
 * recipient that is not ours to accept (no relaying for listed
 * clients); a lookup that failed turns a later 5xx reject into 450 4.7.1
 * (defer_if_reject). */
static enum sc_result
sc_allow(struct sc_run *r, const struct smtpd_check_rbl *a,
         const struct sc_filter *f, const char *what)
{
    if (r->list < SCL_DATA && r->in->rcpt
        && !sc_fact(r, &r->dest, SMTPD_CHECK_AUTH_DEST))
        return SCR_DUNNO;
    if (a->listed < 0) {
        char name[600];

        snprintf(name, sizeof(name), "<%s>", what);
        return sc_defer_if(r, &r->dir, name, "Client host", 450, "4.7.1",
                           "Service unavailable");
    }
    return sc_listed(a, f) ? SCR_PERMIT : SCR_DUNNO;
}

static enum sc_result
sc_rbl(struct sc_run *r, const struct sc_restr *x)
{
    const struct smtpd_check_rbl *a = r->in->rbl ? &r->in->rbl[x->rbl] : NULL;

    if (a && x->kind == SC_DNSWL)
        return sc_allow(r, a, x->filter, r->in->addr ? r->in->addr : "");
    if (a == NULL || !sc_listed(a, x->filter))
        return SCR_DUNNO;
    return sc_reject(r, r->c->rbl_code,
                     r->c->rbl_code < 500 ? "4.7.1" : "5.7.1",
                     "Service unavailable; Client host [%s] blocked using "
                     "%s%s%s",
                     r->in->addr ? r->in->addr : "", r->c->rbl[x->rbl],
                     a->txt[0] ? "; " : "", a->txt);
}

/* A temporary DNS failure: deferred if the request would pass
 * (defer_if_permit) or at once (defer), as the *_tempfail_action says. */
static enum sc_result
sc_tempfail_reply(struct sc_run *r, int if_permit, const char *name,
                  const char *class, const char *dsn, const char *text)
{
    if (if_permit)
        return sc_defer_if(r, &r->dip, name, class, 450, dsn, text);
    return sc_reject(r, 450, dsn, "%s: %s rejected: %s", name, class, text);
}

/* reject_unknown_sender_domain, reject_unknown_recipient_domain: the
 * domain of a, unless it is ours or a literal, must have an MX (not a
 * null MX), A or AAAA record. */
static enum sc_result
sc_unknown_addr(struct sc_run *r, const char *a, int sender)
{
    const struct smtpd_check_ans *ans;
    const char *class = sender ? "Sender address" : "Recipient address";
    const char *dsn = sender ? "4.1.8" : "4.1.2", *at;
    char name[600];
    int code, rc;

    if (a == NULL || *a == '\0' || (at = strrchr(a, '@')) == NULL
        || at[1] == '\0' || at[1] == '[')
        return SCR_DUNNO;
    if (r->in->ask
        && r->in->ask(r->in->arg, sender ? SMTPD_CHECK_SENDER_FINAL
                                         : SMTPD_CHECK_RCPT_FINAL))
        return SCR_DUNNO; /* mail for us: Postfix does not ask */
    rc = sc_query(r, SMTPD_CHECK_Q_NAME, at + 1, &ans);
    if (rc <= 0)
        return rc == 0 ? SCR_NEED : SCR_DUNNO;
    snprintf(name, sizeof(name), "<%s>", a);
    if (ans->name & (SMTPD_CHECK_NAME_MX | SMTPD_CHECK_NAME_ADDR))
        return SCR_DUNNO;
    if (ans->name & SMTPD_CHECK_NAME_NULLMX)
        return sc_reject(r, sender ? 550 : 556, sender ? "5.7.27" : "5.1.10",
                         "%s: %s rejected: Domain %s does not accept mail "
                         "(nullMX)",
                         name, class, at + 1);
    if (ans->name & SMTPD_CHECK_NAME_TEMP)
        return sc_tempfail_reply(r, r->c->unk_addr_tf, name, class, dsn,
                                 "Domain not found");
    code = r->c->unk_addr_code;
    {
        char d[16];

        snprintf(d, sizeof(d), "%c%s", '0' + code / 100, dsn + 1);
        return sc_reject(r, code, d, "%s: %s rejected: %s", name, class,
                         ans->name & SMTPD_CHECK_NAME_INVAL
                             ? "Malformed DNS server reply"
                             : "Domain not found");
    }
}

/* reject_unknown_helo_hostname: a HELO name with no A, AAAA or MX record
 * (a null MX will do: an MTA's name may have one). */
static enum sc_result
sc_unknown_helo(struct sc_run *r)
{
    const struct smtpd_check_ans *ans;
    const char *h = r->in->helo;
    char name[600], dsn[16];
    int rc;

    if (h == NULL || *h == '\0')
        return SCR_DUNNO;
    if (*h == '[') /* Postfix: a literal must be a valid address */
        return sc_literal(h) ? SCR_DUNNO
                             : sc_reject(r, 501, "5.5.2",
                                         "<%s>: Helo command rejected: "
                                         "invalid ip address",
                                         h);
    rc = sc_query(r, SMTPD_CHECK_Q_NAME, h, &ans);
    if (rc <= 0)
        return rc == 0 ? SCR_NEED : SCR_DUNNO;
    if (ans->name
        & (SMTPD_CHECK_NAME_MX | SMTPD_CHECK_NAME_ADDR
           | SMTPD_CHECK_NAME_NULLMX))
        return SCR_DUNNO;
    snprintf(name, sizeof(name), "<%s>", h);
    if (ans->name & SMTPD_CHECK_NAME_TEMP)
        return sc_tempfail_reply(r, r->c->unk_helo_tf, name, "Helo command",
                                 "4.7.1", "Host not found");
    snprintf(dsn, sizeof(dsn), "%c.7.1", '0' + r->c->unk_name_code / 100);
    return sc_reject(
        r, r->c->unk_name_code, dsn, "%s: Helo command rejected: %s", name,
        ans->name & SMTPD_CHECK_NAME_INVAL ? "Malformed DNS server reply"
                                           : "Host not found");
}

/* reject_rhsbl_client, _helo, _sender, _recipient: the name's domain
 * (the address's, the client's host name, the HELO name) in the list;
 * nothing for an address literal, "unknown" or a name that ends in a
 * number (Postfix skips those too). */
static enum sc_result
sc_rhsbl_check(struct sc_run *r, const struct sc_restr *x)
{
    const struct smtpd_check_in *in = r->in;
    const struct smtpd_check_ans *ans;
    const char *what = NULL, *class = "", *dom, *last;
    char key[SMTPD_CHECK_KEY_MAX];
    int rc;

    switch (x->kind) {
    case SC_RHSBL_CLIENT:
    case SC_RHSWL_CLIENT:
        what = in->name && strcmp(in->name, "unknown") != 0 ? in->name : NULL;
        class = "Client host";
        break;
    case SC_RHSBL_HELO:
        what = in->helo;
        class = "Helo command";
        break;
    case SC_RHSBL_REV_CLIENT:
        what = in->rev_name && strcmp(in->rev_name, "unknown") != 0
                   ? in->rev_name
                   : NULL;
        class = "Unverified Client host";
        break;
    case SC_RHSBL_SENDER:
        what = in->sender && *in->sender ? in->sender : NULL;
        class = "Sender address";
        break;
    default:
        what = in->rcpt;
        class = "Recipient address";
        break;
    }
    if (what == NULL)
        return SCR_DUNNO;
    dom = strrchr(what, '@') ? strrchr(what, '@') + 1 : what;
    if (*dom == '\0' || *dom == '[')
        return SCR_DUNNO;
    last = strrchr(dom, '.') ? strrchr(dom, '.') + 1 : dom;
    if (strspn(last, "0123456789") == strlen(last))
        return SCR_DUNNO;
    if ((size_t) snprintf(key, sizeof(key), "%s.%s", dom, x->dom) >= sizeof(key)
        || !dns_valid_name(key))
        return SCR_DUNNO;
    if (x->kind == SC_RHSWL_CLIENT && r->list < SCL_DATA && in->rcpt
        && !sc_fact(r, &r->dest, SMTPD_CHECK_AUTH_DEST))
        return SCR_DUNNO; /* not asked: it could not permit */
    rc = sc_query(r, SMTPD_CHECK_Q_DNSXL, key, &ans);
    if (rc <= 0)
        return rc == 0 ? SCR_NEED : SCR_DUNNO;
    if (x->kind == SC_RHSWL_CLIENT)
        return sc_allow(r, &ans->dnsxl, x->filter, what);
    if (!sc_listed(&ans->dnsxl, x->filter))
        return SCR_DUNNO;
    return sc_reject(
        r, r->c->rbl_code, r->c->rbl_code < 500 ? "4.7.1" : "5.7.1",
        "Service unavailable; %s [%s] blocked using %s%s%s", class, what,
        x->dom, ans->dnsxl.txt[0] ? "; " : "", ans->dnsxl.txt);
}

/* check_policy_service: the server's action, judged as an access
 * table's; its failure: smtpd_policy_service_default_action. */
static enum sc_result
sc_policy(struct sc_run *r, const struct sc_restr *x)
{
    const struct smtpd_check_ans *ans;
    int rc = sc_query(r, SMTPD_CHECK_Q_POLICY, x->spec, &ans);

    if (rc <= 0)
        return rc == 0 ? SCR_NEED : SCR_DUNNO;
    /* x->dom: the default_action of a "{ server, ... }" */
    return sc_action(r, r->list, x->spec,
                     ans->action ? ans->action
                     : x->dom    ? x->dom
                                 : r->c->policy_def);
}

/* reject_unverified_recipient, reject_unverified_sender: Postfix's
 * reject_unverified_address. */
static enum sc_result
sc_verify(struct sc_run *r, int sender)
{
    const char *a = sender ? r->in->sender : r->in->rcpt;
    const char *class = sender ? "Sender address" : "Recipient address";
    const char *dsn = sender ? "4.1.7" : "4.1.1";
    const struct smtpd_check_ans *ans;
    const char *why;
    char name[600], d[16];
    int rc, code = 0, tf = r->c->unv[sender].tf;

    if (a == NULL || *a == '\0')
        return SCR_DUNNO;
    rc = sc_query(r, SMTPD_CHECK_Q_VERIFY, a, &ans);
    if (rc <= 0)
        return rc == 0 ? SCR_NEED : SCR_DUNNO;
    snprintf(name, sizeof(name), "<%s>", a);
    switch (ans->verify.status) {
    case SMTPD_CHECK_VRFY_OK:
        return SCR_DUNNO;
    case SMTPD_CHECK_VRFY_FAILED:
        if (r->in->log)
            r->in->log(r->in->arg, "warning", "verify service failure");
        return sc_tempfail_reply(r, tf, name, class, dsn,
                                 "address verification problem");
    case SMTPD_CHECK_VRFY_BOUNCE:
        code = r->c->unv[sender].rcode;
        break;
    default: /* DEFER, TODO */
        code = r->c->unv[sender].dcode;
        break;
    }
    why = *r->c->unv[sender].why ? r->c->unv[sender].why
          : ans->verify.why      ? ans->verify.why
                                 : "";
    if (code / 100 == 2)
        return SCR_DUNNO;
    if (code / 100 == 4) {
        char text[400];

        snprintf(text, sizeof(text), "unverified address: %.250s", why);
        if (tf)
            return sc_defer_if(r, &r->dip, name, class, code, dsn, text);
        return sc_reject(r, code, dsn, "%s: %s rejected: %s", name, class,
                         text);
    }
    snprintf(d, sizeof(d), "%c%s", '0' + code / 100, dsn + 1);
    return sc_reject(r, code, d, "%s: %s rejected: undeliverable address: %s",
                     name, class, why);
}

/* A restriction class: its list in order, the first that decides
 * deciding for the class (a permit ends the list that named it too, as
 * in Postfix), at most a few classes deep. */
static enum sc_result
sc_class_run(struct sc_run *r, size_t k)
{
    const struct sc_class *cl = &r->c->cls[k];
    enum sc_result res = SCR_DUNNO;
    int warn = r->warn, inner = 0;

    if (r->depth >= 4) {
        log_warning("restriction class %s: nested too deep", cl->name);
        return sc_reject(r, 451, "4.3.5", "Server configuration error");
    }
    r->depth++;
    /* a warn_if_reject before the class covers all of it */
    for (size_t i = 0; i < cl->n && res == SCR_DUNNO; i++) {
        r->warn = warn || inner;
        res = sc_one(r, &cl->v[i]);
        inner = cl->v[i].kind == SC_WARN_IF_REJECT;
    }
    r->warn = warn;
    r->depth--;
    return res;
}

static enum sc_result
sc_one(struct sc_run *r, const struct sc_restr *x)
{
    const struct smtpd_check_in *in = r->in;

    switch (x->kind) {
    case SC_PERMIT:
        return SCR_PERMIT;
    case SC_REJECT:
        return sc_reject_class(r, r->list, 554, "5.7.1", "Access denied");
    case SC_DEFER:
        return sc_reject_class(r, r->list, 450, "4.3.2", "Try again later");
    case SC_WARN_IF_REJECT:
        return SCR_DUNNO; /* sc_list sets r->warn for the next one */
    case SC_PERMIT_MYNETWORKS:
        return sc_fact(r, &r->mynet, SMTPD_CHECK_MYNETWORKS) ? SCR_PERMIT
                                                             : SCR_DUNNO;
    case SC_PERMIT_SASL:
        return in->authenticated ? SCR_PERMIT : SCR_DUNNO;
    case SC_PERMIT_AUTH_DEST:
        return in->rcpt && sc_fact(r, &r->dest, SMTPD_CHECK_AUTH_DEST)
                   ? SCR_PERMIT
                   : SCR_DUNNO;
    case SC_REJECT_UNAUTH_DEST:
    case SC_DEFER_UNAUTH_DEST:
        if (in->rcpt == NULL || sc_fact(r, &r->dest, SMTPD_CHECK_AUTH_DEST))
            return SCR_DUNNO;
        if (x->kind == SC_REJECT_UNAUTH_DEST)
            return sc_reject(r, 554, "5.7.1", "<%s>: Relay access denied",
                             in->rcpt);
        return sc_reject(r, 454, "4.7.1", "<%s>: Relay access denied",
                         in->rcpt);
    case SC_INVALID_HELO:
        if (in->helo == NULL)
            return SCR_DUNNO;
        if (in->helo[0] == '[') {
            if (sc_literal(in->helo))
                return SCR_DUNNO;
            return sc_reject(r, 501, "5.5.2",
                             "<%s>: Helo command rejected: invalid ip "
                             "address",
                             in->helo);
        }
        if (sc_valid_hostname(in->helo))
            return SCR_DUNNO;
        return sc_reject(r, 501, "5.5.2",
                         "<%s>: Helo command rejected: Invalid name", in->helo);
    case SC_NON_FQDN_HELO:
        if (in->helo == NULL || sc_fqdn(in->helo))
            return SCR_DUNNO;
        return sc_reject(r, 504, "5.5.2",
                         "<%s>: Helo command rejected: need fully-qualified "
                         "hostname",
                         in->helo);
    case SC_NON_FQDN_SENDER:
    case SC_NON_FQDN_RCPT: {
        const char *a = x->kind == SC_NON_FQDN_SENDER ? in->sender : in->rcpt;
        const char *at;

        if (a == NULL || *a == '\0')
            return SCR_DUNNO;
        at = strrchr(a, '@');
        if (at && sc_fqdn(at + 1))
            return SCR_DUNNO;
        return sc_reject(r, 504, "5.5.2",
                         "<%s>: %s rejected: need fully-qualified address", a,
                         x->kind == SC_NON_FQDN_SENDER ? "Sender address"
                                                       : "Recipient address");
    }
    case SC_LOGIN_MISMATCH:
    case SC_AUTH_LOGIN_MISMATCH:
    case SC_UNAUTH_LOGIN_MISMATCH:
    case SC_KNOWN_LOGIN_MISMATCH:
        return sc_login_mismatch(r, x->kind);
    case SC_CLIENT_ACCESS:
    case SC_HELO_ACCESS:
    case SC_SENDER_ACCESS:
    case SC_RCPT_ACCESS:
    case SC_REV_CLIENT_ACCESS:
    case SC_SASL_ACCESS:
    case SC_CCERT_ACCESS:
        return sc_access(r, x);
    case SC_TLS_ALL_CLIENTCERTS:
        return in->ccert == 2 ? SCR_PERMIT : SCR_DUNNO;
    case SC_TLS_CLIENTCERTS: /* a fingerprint in relay_clientcerts */
        if (in->ccert == 0)
            return SCR_DUNNO;
        {
            const char *fps[2] = {in->ccert_fp, in->ccert_pkey_fp};
            struct buf *v = buf_new(64, 4096);
            int found = 0;

            for (size_t t = 0; t < r->c->nccerts && !found; t++)
                for (size_t k = 0; k < 2 && !found; k++)
                    found = fps[k] && *fps[k]
                            && lookup_get(r->c->ccerts[t], fps[k], v) > 0;
            buf_free(v);
            return found ? SCR_PERMIT : SCR_DUNNO;
        }
    case SC_PLAINTEXT:
        if (in->encrypted)
            return SCR_DUNNO;
        {
            char dsn[16];

            snprintf(dsn, sizeof(dsn), "%c.7.1", '0' + r->c->plain_code / 100);
            return sc_reject(r, r->c->plain_code, dsn,
                             "Session encryption is required");
        }
    case SC_UNLISTED_RCPT:
        return in->rcpt ? sc_unlisted(r, in->rcpt, 0) : SCR_DUNNO;
    case SC_UNLISTED_SENDER:
        return in->sender && *in->sender ? sc_unlisted(r, in->sender, 1)
                                         : SCR_DUNNO;
    case SC_MULTI_BOUNCE:
        /* at RCPT, the recipients before this one; at DATA, all */
        if (in->sender == NULL || *in->sender != '\0'
            || in->nrcpt <= (size_t) (r->list >= SCL_DATA))
            return SCR_DUNNO;
        {
            char dsn[16];

            snprintf(dsn, sizeof(dsn), "%c.5.3", '0' + r->c->multi_code / 100);
            return sc_reject_class(r, r->list, r->c->multi_code, dsn,
                                   "Multi-recipient bounce");
        }
    case SC_UNKNOWN_CLIENT:
        if (in->name_status == SMTPD_CHECK_NAME_FOUND)
            return SCR_DUNNO;
        return sc_reject_code(r,
                              in->name_status == SMTPD_CHECK_NAME_FAILED
                                  ? 450
                                  : r->c->unk_client_code,
                              "7.25",
                              "Client host rejected: cannot find your "
                              "hostname, [%s]",
                              in->addr ? in->addr : "");
    case SC_UNKNOWN_REV_CLIENT:
        if (in->rev_status == SMTPD_CHECK_NAME_FOUND)
            return SCR_DUNNO;
        return sc_reject_code(r,
                              in->rev_status == SMTPD_CHECK_NAME_FAILED
                                  ? 450
                                  : r->c->unk_client_code,
                              "7.1",
                              "Client host rejected: cannot find your "
                              "reverse hostname, [%s]",
                              in->addr ? in->addr : "");
    case SC_RBL:
    case SC_DNSWL:
        return sc_rbl(r, x);
    case SC_DEFER_IF_PERMIT:
    case SC_DEFER_IF_REJECT: {
        int p = x->kind == SC_DEFER_IF_PERMIT;

        return sc_defer_if_class(
            r, p ? &r->dip : &r->dir, r->list, 450, "4.7.0",
            p ? "defer_if_permit requested" : "defer_if_reject requested");
    }
    case SC_UNKNOWN_SENDER:
    case SC_UNKNOWN_RCPT:
        return sc_unknown_addr(
            r, x->kind == SC_UNKNOWN_SENDER ? in->sender : in->rcpt,
            x->kind == SC_UNKNOWN_SENDER);
    case SC_UNKNOWN_HELO:
        return sc_unknown_helo(r);
    case SC_RHSBL_CLIENT:
    case SC_RHSBL_HELO:
    case SC_RHSBL_SENDER:
    case SC_RHSBL_RCPT:
    case SC_RHSBL_REV_CLIENT:
    case SC_RHSWL_CLIENT:
        return sc_rhsbl_check(r, x);
    case SC_POLICY:
        return sc_policy(r, x);
    case SC_UNVERIFIED_RCPT:
    case SC_UNVERIFIED_SENDER:
        return sc_verify(r, x->kind == SC_UNVERIFIED_SENDER);
    case SC_CLASS:
        return sc_class_run(r, x->rbl);
    case SC_MX_ACCESS:
    case SC_NS_ACCESS:
    case SC_A_ACCESS:
        return sc_server_access(r, x);
    case SC_UNAUTH_PIPELINING:
        if (in->ask == NULL || !in->ask(in->arg, SMTPD_CHECK_PIPELINED))
            return SCR_DUNNO;
        return sc_reject_class(r, r->list, 503, "5.5.0",
                               "Improper use of SMTP command pipelining");
    case SC_SKIP:
        return SCR_DUNNO;
    }
    return SCR_DUNNO;
}

/* One list: 1 when it rejected (res filled), 2 when an answer is
 * needed, else 0. */
static int
sc_list(struct sc_run *r, enum sc_list l)
{
    r->list = l;
    r->warn = 0;
    r->dir.active = 0; /* Postfix: defer_if_reject holds within a stage */
    for (size_t i = 0; i < r->c->n[l]; i++) {
        const struct sc_restr *x = &r->c->v[l][i];
        enum sc_result res = sc_one(r, x);

        r->warn = x->kind == SC_WARN_IF_REJECT;
        if (res == SCR_PERMIT)
            return 0;
        if (res == SCR_REJECT || res == SCR_DISCARD)
            return 1;
        if (res == SCR_NEED)
            return 2;
    }
    return 0;
}

/* The end of an evaluation: NEED, or a pass turned into the kept
 * defer_if_permit deferral. */
static void
sc_finish(struct sc_run *r, int rc)
{
    if (rc == 2) {
        r->res->verdict = SMTPD_CHECK_NEED;
        r->res->code = 0;
        r->res->dsn[0] = '\0';
        buf_reset(r->res->text);
    } else if (r->res->verdict != SMTPD_CHECK_REJECT && r->dip.active) {
        r->res->verdict = SMTPD_CHECK_REJECT;
        r->res->code = r->dip.code;
        snprintf(r->res->dsn, sizeof(r->res->dsn), "%s", r->dip.dsn);
        buf_reset(r->res->text);
        buf_append(r->res->text, buf_data(r->dip.text), buf_len(r->dip.text));
    }
    buf_free(r->dip.text);
    buf_free(r->dir.text);
}

static void
sc_res_init(struct smtpd_check_res *res)
{
    res->verdict = SMTPD_CHECK_PASS;
    res->code = 0;
    res->dsn[0] = '\0';
    buf_reset(res->text);
    res->need = SMTPD_CHECK_Q_NAME;
    res->key[0] = '\0';
    if (res->prepend)
        buf_reset(res->prepend);
}

static void
sc_run_init(struct sc_run *r, const struct smtpd_check *c,
            const struct smtpd_check_in *in, struct smtpd_check_res *res)
{
    memset(r, 0, sizeof(*r));
    r->c = c;
    r->in = in;
    r->res = res;
    r->mynet = in->mynetworks;
    r->dest = in->auth_dest;
    sc_res_init(res);
}

void
smtpd_check_rcpt(const struct smtpd_check *c, const struct smtpd_check_in *in,
                 struct smtpd_check_res *res)
{
    struct sc_run r;
    int rc = 0;

    sc_run_init(&r, c, in, res);
    /* Postfix: the postmaster is never refused (RFC 5321 4.5.1) */
    if (in->rcpt && strcasecmp(in->rcpt, "postmaster") == 0) {
        sc_finish(&r, 0);
        return;
    }
    for (int l = SCL_CLIENT; l <= SCL_RCPT && rc == 0; l++) {
        if (l == SCL_HELO && in->helo == NULL)
            continue; /* no HELO: the helo list is not used */
        rc = sc_list(&r, (enum sc_list) l);
        /* smtpd_reject_unlisted_sender: after the sender list */
        if (l == SCL_SENDER && rc == 0 && c->unl_sender && !r.sender_checked
            && in->sender && *in->sender) {
            r.warn = 0;
            rc = sc_unlisted(&r, in->sender, 1) == SCR_REJECT;
        }
    }
    /* smtpd_reject_unlisted_recipient: when all passed, unless a kept
     * deferral or a DISCARD decides */
    if (rc == 0 && c->unl_rcpt && !r.rcpt_checked && !r.dip.active
        && res->verdict != SMTPD_CHECK_DISCARD && in->rcpt) {
        r.warn = 0;
        rc = sc_unlisted(&r, in->rcpt, 0) == SCR_REJECT;
    }
    sc_finish(&r, rc);
}

void
smtpd_check_data(const struct smtpd_check *c, const struct smtpd_check_in *in,
                 struct smtpd_check_res *res)
{
    struct sc_run r;

    sc_run_init(&r, c, in, res);
    sc_finish(&r, sc_list(&r, SCL_DATA));
}

int
smtpd_check_eod_used(const struct smtpd_check *c)
{
    return c->n[SCL_EOD] > 0;
}

void
smtpd_check_eod(const struct smtpd_check *c, const struct smtpd_check_in *in,
                struct smtpd_check_res *res)
{
    struct sc_run r;

    sc_run_init(&r, c, in, res);
    sc_finish(&r, sc_list(&r, SCL_EOD));
}

static int
smtpd_check_one(const struct cf *scf, void *arg, struct buf *err)
{
    struct buf *warn = arg, *w = buf_new(256, BUF_NOCAP);
    struct smtpd_check *c = smtpd_check_new(scf, err, w);

    smtpd_check_free(c);
    /* each warning once, however many services share the list */
    for (char *l = buf_data(w), *nl; warn && *l; l = nl) {
        nl = strchr(l, '\n');
        *nl++ = '\0';
        if (strstr(buf_data(warn), l) == NULL)
            buf_printf(warn, "%s\n", l);
    }
    buf_free(w);
    return c ? 0 : -1;
}

int
smtpd_check_conf(const struct cf *cf, const struct cf_service *svcs, size_t n,
                 const char *main, struct buf *err, struct buf *warn)
{
    return cf_check_services(cf, svcs, n, main, smtpd_check_one, warn, err);
}

int
smtpd_check_data_used(const struct smtpd_check *c)
{
    return c->n[SCL_DATA] > 0;
}
