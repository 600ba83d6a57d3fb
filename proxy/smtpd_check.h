/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd_check.h - Postfix's SMTP access restrictions: the
 * smtpd_client_restrictions, smtpd_helo_restrictions,
 * smtpd_sender_restrictions, smtpd_relay_restrictions,
 * smtpd_recipient_restrictions and smtpd_data_restrictions lists, with
 * smtpd_delay_reject's evaluation: the first five at each RCPT TO, in
 * that order, the last at DATA.
 *
 * Within a list the restrictions run in order until one decides: a
 * permit ends that list (the next list still runs), a reject or defer
 * ends the evaluation with its reply; a list that runs out decides
 * nothing. Every list must let the recipient through. As in Postfix, a
 * bare "postmaster" recipient is never refused, and the helo list is not
 * used before HELO/EHLO. Restrictions:
 *   permit reject defer warn_if_reject
 *   permit_mynetworks permit_sasl_authenticated
 *   permit_auth_destination reject_unauth_destination
 *   defer_unauth_destination
 *   reject_invalid_helo_hostname reject_non_fqdn_helo_hostname
 *   reject_non_fqdn_sender reject_non_fqdn_recipient
 *   reject_sender_login_mismatch (smtpd_sender_login_maps; also the
 *     reject_authenticated_ and reject_unauthenticated_ forms)
 *   check_client_access check_helo_access check_sender_access
 *   check_recipient_access TYPE:TABLE, whose values are Postfix's access
 *     actions: OK, PERMIT, RELAY (and an all-digits value: OK), DUNNO,
 *     REJECT [text], DEFER [text], NNN text (4xx, 5xx; 421 and 521 also
 *     end the session), a text may start with its DSN; WARN text, INFO
 *     text (logged), HOLD [text], DISCARD [text] (accepts and drops the
 *     message: no restriction runs after it), or a list of the
 *     restrictions above that take no table. PREPEND TEXT adds the
 *     header TEXT to the message (res->prepend; a TEXT that is not
 *     "Name: value" is logged and ignored, as Postfix does). FILTER,
 *     REDIRECT and BCC are logged as not implemented and ignored;
 *     anything else is a "451 4.3.5 Server configuration error" (never
 *     only a warning).
 * reject_rbl_client and permit_dnswl_client DOMAIN[=FILTER] (the filter
 * d.d.d.d, each d a number, or [n..m] and [a;b;...] ranges, matched
 * against the answer's addresses) use the answers the caller looked up;
 * one that failed counts as not listed. A listed client is refused with
 * maps_rbl_reject_code (554) 5.7.1 "Service unavailable; Client host [A]
 * blocked using DOMAIN; TXT" (without "; TXT" when there is none). An
 * allow list (permit_dnswl_client, and permit_rhswl_client DOMAIN[=FILTER]
 * for the client name, SMTPD_CHECK_Q_DNSXL) permits only a recipient
 * that is ours (auth_dest: no relaying for listed clients), and its
 * failed lookup is a defer_if_reject "450 4.7.1 <A>: Client host
 * rejected: Service unavailable", as Postfix's.
 * Restrictions whose answer comes from the network ask the caller
 * (smtpd_check_in.query); an answer not known yet ends the evaluation with
 * SMTPD_CHECK_NEED and what to ask (smtpd_check_res.need, .key); the
 * caller gets it without blocking and runs the same evaluation again,
 * which then finds it. The evaluation has no other effect than its
 * result and in->log calls, so a caller that holds the log lines of an
 * evaluation ending in NEED back loses nothing. They are:
 *   reject_unknown_sender_domain, reject_unknown_recipient_domain
 *     (SMTPD_CHECK_Q_NAME of the address's domain, unless it is ours
 *     (mydestination) or a literal): no MX, A or AAAA record:
 *     unknown_address_reject_code (450) 4.1.8 (sender) / 4.1.2
 *     (recipient) "<a>: Sender address rejected: Domain not found"; a
 *     null MX: 550 5.7.27 / 556 5.1.10 "... rejected: Domain D does not
 *     accept mail (nullMX)"; a temporary DNS failure:
 *     unknown_address_tempfail_action (defer_if_permit) with 450.
 *   reject_unknown_helo_hostname (and reject_unknown_hostname): a HELO
 *     name (not a literal) without A, AAAA or MX: unknown_hostname_reject_
 *     code (450) 4.7.1 "<h>: Helo command rejected: Host not found";
 *     unknown_helo_hostname_tempfail_action on a temporary failure.
 *   reject_rhsbl_client, _sender, _helo, _recipient DOMAIN[=FILTER]
 *     (SMTPD_CHECK_Q_DNSXL of "name.DOMAIN"): maps_rbl_reject_code
 *     "Service unavailable; Sender address [a@b] blocked using D; TXT".
 *   check_policy_service SERVER or { SERVER, name = value, ... }
 *     (SMTPD_CHECK_Q_POLICY, the key the argument as written; the caller speaks
 *     Postfix's policy delegation protocol): the action the server gave,
 *     judged as an access table's (below, with the list's reply name), or
 *     smtpd_policy_service_default_action when the server failed.
 *   reject_unverified_recipient, reject_unverified_sender
 *     (SMTPD_CHECK_Q_VERIFY of the address; the caller asks the queue
 *     manager's verify service, polling while it says "in progress"), as
 *     Postfix: deliverable passes; undeliverable gets
 *     unverified_*_reject_code "<a>: Recipient address rejected:
 *     undeliverable address: WHY" (5.1.1; sender 5.1.7), unverified for
 *     now or no answer yet unverified_*_defer_code "...: unverified
 *     address: WHY" (4.1.1 / 4.1.7) through unverified_*_tempfail_action
 *     (defer_if_permit: only if nothing else rejects); 250 as either code
 *     accepts; unverified_*_reject_reason replaces WHY; the service
 *     failing: 450 "...: address verification problem", through the
 *     tempfail action. The null sender is not verified.
 * defer_if_permit and defer_if_reject (restrictions, and DEFER_IF_PERMIT /
 * DEFER_IF_REJECT access actions, "450 4.7.1 <name>: CLASS rejected:
 * TEXT") work as Postfix's: the first such deferral is kept; a request
 * that would pass is deferred with it (defer_if_permit), a 5xx reject in
 * the same list is turned into it (defer_if_reject).
 * reject_unknown_client_hostname (reject_unknown_client): no client
 * name confirmed by a forward lookup: unknown_client_reject_code (450)
 * 4.7.25 "Client host rejected: cannot find your hostname, [A]" (450 when
 * the lookup failed for now); reject_unknown_reverse_client_hostname: no
 * reverse name at all: 4.7.1 "... cannot find your reverse hostname,
 * [A]"; check_reverse_client_hostname_access TYPE:TABLE and
 * reject_rhsbl_reverse_client DOMAIN use the reverse name (replies
 * "<name>: Unverified Client host rejected: ...").
 * smtpd_restriction_classes: each name a user-defined main.cf parameter
 * whose value is a list; the name is one restriction in any list (or
 * another class, at most 4 deep) and an access table's result: the
 * class's first deciding restriction decides (a permit ends the list
 * that named it, as in Postfix); warn_if_reject before it covers it all.
 * reject_unauth_pipelining: 503 5.5.0 "<name>: CLASS rejected: Improper
 * use of SMTP command pipelining" when the caller says the client sent
 * ahead where it may not (SMTPD_CHECK_PIPELINED).
 * check_S_mx_access, check_S_ns_access, check_S_a_access TYPE:TABLE, S
 * one of client, reverse_client, helo, sender, recipient (Postfix's
 * check_server_access): the name (the client's or reverse name unless
 * "unknown", the HELO name, the domain of a sender other than <> or of
 * the recipient) has its MX hosts (SMTPD_CHECK_Q_MX: the name itself
 * when it has none; a null MX decides nothing), its DNS servers
 * (SMTPD_CHECK_Q_NS of the name, then of each parent while there are
 * none) or itself (SMTPD_CHECK_Q_A) as servers. In order, each server's
 * name (not for _a_; with its parent domains) and then each of its
 * addresses (with the networks above it, "192.0.2", ...) is looked up in
 * the table, with the reply name and class of S's list; the first entry
 * found decides, DUNNO too. An address literal is its own server (not
 * for _ns_). A lookup that failed, a server whose addresses failed and
 * more than 100 addresses in all are logged as Postfix's warnings
 * (in->log "warning") and decide nothing. OK (or anything that permits)
 * is not allowed: 451 4.3.5 "Server configuration error", with Postfix's
 * three warnings.
 * reject_plaintext_session: plaintext_reject_code (450) 4.7.1 "Session
 * encryption is required" when the session is not under TLS.
 * reject_multi_recipient_bounce: multi_recipient_bounce_reject_code (550)
 * 5.5.3 "<name>: CLASS rejected: Multi-recipient bounce" for the null
 * sender's second recipient at RCPT, or at DATA with more than one.
 * check_sasl_access TYPE:TABLE: the SASL login name (when authenticated)
 * as the key, the action's reply "<user>: SASL login name rejected: ...".
 * reject_known_sender_login_mismatch: reject_sender_login_mismatch for the
 * senders smtpd_sender_login_maps lists; others pass.
 * reject_unlisted_recipient (check_recipient_maps), reject_unlisted_sender:
 * an address in a domain of ours (SMTPD_CHECK_*_FINAL) that
 * local_recipient_maps (unless empty) does not list, or in a relay
 * domain (SMTPD_CHECK_*_RELAY) that relay_recipient_maps (unless empty)
 * does not list: unknown_local_recipient_reject_code /
 * unknown_relay_recipient_reject_code (550) 5.1.1 (sender 5.1.0)
 * "<a>: Recipient address rejected: User unknown in local recipient
 * table" ("relay recipient table"; without " in ..." when
 * show_user_unknown_table_name = no). The keys, as Postfix's
 * mail_addr_find: user+ext@domain, user@domain, then for our domains
 * user+ext and user, then @domain (the extension split at the first
 * recipient_delimiter character); postmaster, MAILER-DAEMON and
 * double_bounce_sender of our domains are always valid. With
 * smtpd_reject_unlisted_recipient (yes) the recipient is checked after
 * the lists pass (once), with smtpd_reject_unlisted_sender (no) the
 * sender after the sender list.
 * permit_tls_clientcerts: the client certificate's (or its public key's)
 * fingerprint in relay_clientcerts (in->ccert, ccert_fp, ccert_pkey_fp,
 * trusted or not); permit_tls_all_clientcerts: any trusted certificate;
 * check_ccert_access TYPE:TABLE: both fingerprints as keys, replies
 * "<CN>: Client certificate rejected: ...".
 * Other Postfix restrictions that this Sluice does not have
 * (reject_unverified_*, permit_mx_backup) are accepted
 * and skipped, with a warning at start (smtpd_check_new's warn); an
 * unknown name is an error. As Postfix, the relay and recipient lists
 * together must hold a relay check (reject_unauth_destination,
 * defer_unauth_destination, reject or defer).
 *
 * Table lookups are in memory (lookup.h): nothing here blocks.
 * Owns: the parsed lists and the opened tables. Threads: any (read-only
 * after smtpd_check_new).
 */
#ifndef SLUICE_SMTPD_CHECK_H
#define SLUICE_SMTPD_CHECK_H

#include <sys/socket.h>

#include "conf/cf.h"
#include "lib/buf.h"

struct smtpd_check;

/* The lists of cf (a service's parameters). NULL with "PARAM: ..." in err
 * on an unknown restriction, a missing or unopenable table, or no relay
 * check; lines "PARAM: NAME: not implemented in this Sluice yet; skipped"
 * appended to warn (NULL ok) for accepted but skipped restrictions. */
struct smtpd_check *smtpd_check_new(const struct cf *cf, struct buf *err,
                                    struct buf *warn);
void smtpd_check_free(struct smtpd_check *c); /* NULL ok */
/* For sluiced's start and sluice check: main.cf's lists and each of the n
 * services' (with their -o): 0, or -1 with the first problem in err
 * ("MAIN: ..." or "FILE:LINE: service NAME: ..."); the skipped
 * restrictions' warnings appended to warn, each line once. */
struct cf_service;
int smtpd_check_conf(const struct cf *cf, const struct cf_service *svcs,
                     size_t n, const char *main, struct buf *err,
                     struct buf *warn);

/* DNS lists of the client address (reject_rbl_client and
 * permit_dnswl_client, each "domain" or "domain=filter"): the caller
 * looks the client up in each domain once per session, before the first
 * list runs, and gives the answers in smtpd_check_in.rbl (index i for
 * smtpd_check_rbl_domain(c, i)). Nothing to look up when the count is 0. */
#define SMTPD_CHECK_RBL_ADDRS 8
struct smtpd_check_rbl {
    int listed; /* 1 listed (addrs), 0 not, -1 the lookup failed */
    unsigned char addrs[SMTPD_CHECK_RBL_ADDRS][4]; /* its A records */
    size_t naddr;
    char txt[256]; /* its TXT record (printable), or "" */
};
size_t smtpd_check_rbl_count(const struct smtpd_check *c);
/* Does any list use DNS (client lists or the restrictions that ask
 * Q_NAME or Q_DNSXL)? The caller needs a resolver then. */
int smtpd_check_uses_dns(const struct smtpd_check *c);
/* smtpd_discard_ehlo_keywords: what EHLO does not offer. */
#define SMTPD_EHLO_PIPELINING 1u
#define SMTPD_EHLO_SIZE       2u
#define SMTPD_EHLO_VRFY       4u
#define SMTPD_EHLO_STARTTLS   8u  /* and STARTTLS gets 502 */
#define SMTPD_EHLO_AUTH       16u /* and AUTH gets 503 */
#define SMTPD_EHLO_ENHANCED   32u /* ENHANCEDSTATUSCODES (replies keep them) */
#define SMTPD_EHLO_8BITMIME   64u
#define SMTPD_EHLO_SILENT     128u /* silent-discard: not logged */
#define SMTPD_EHLO_OTHER      256u /* a Postfix name Sluice does not offer */
/* The mask of a keyword list (Postfix's names, any case; others are
 * ignored, as Postfix ignores them). */
unsigned smtpd_ehlo_mask(const char *words);
/* The client's: smtpd_discard_ehlo_keyword_address_maps by its address
 * (the first table that has it), else smtpd_discard_ehlo_keywords. */
unsigned smtpd_check_ehlo_mask(const struct smtpd_check *c, const char *addr);
/* The names of the keywords mask discards that Sluice offers, space
 * separated, in Postfix's order, into out: for the log line. */
char *smtpd_ehlo_mask_str(unsigned mask, char *out, size_t n);
/* A check_policy_service argument: "inet:host:port", "unix:path", or
 * "{ SERVER, name = value, ... }" with Postfix's per-server settings
 * (default_action, max_idle, max_ttl, policy_context, request_limit,
 * retry_delay, timeout, try_limit): a copy of cf whose
 * smtpd_policy_service_* parameters have those values (checked), the
 * server in server; NULL and the reason in err. The caller frees it. */
struct cf *smtpd_check_policy_cf(const struct cf *cf, const char *spec,
                                 char *server, size_t serversz,
                                 struct buf *err);
/* The policy servers the lists name (their argument as written), each
 * once (i < count). */
size_t smtpd_check_policy_count(const struct smtpd_check *c);
const char *smtpd_check_policy_server(const struct smtpd_check *c, size_t i);
const char *smtpd_check_rbl_domain(const struct smtpd_check *c, size_t i);
/* The name to look up: the address's octets (IPv4, also IPv4-mapped) or
 * nibbles (IPv6) reversed, then the domain. 0, or -1 when it does not
 * fit in outsz or the family is neither. */
int smtpd_check_rbl_name(const struct sockaddr *sa, const char *domain,
                         char *out, size_t outsz);

enum smtpd_check_fact {
    SMTPD_CHECK_MYNETWORKS,
    SMTPD_CHECK_AUTH_DEST,
    SMTPD_CHECK_SENDER_FINAL,  /* the sender's domain is ours
                                  (mydestination) */
    SMTPD_CHECK_RCPT_FINAL,    /* the recipient's */
    SMTPD_CHECK_SENDER_RELAY,  /* the sender's domain is in relay_domains */
    SMTPD_CHECK_RCPT_RELAY,    /* the recipient's */
    SMTPD_CHECK_PIPELINED,     /* the client sent more after this command
                                  where it may not: the command is DATA,
                                  or the session is not ESMTP */
    SMTPD_CHECK_SENDER_VALIAS, /* the sender's domain is in
                                  virtual_alias_domains (and not ours) */
    SMTPD_CHECK_RCPT_VALIAS    /* the recipient's */
};

/* A domain's class, as Postfix's trivial-rewrite resolves it: ours
 * (mydestination), then virtual_alias_domains, then relay_domains. */
enum smtpd_check_dclass {
    SMTPD_CHECK_D_OTHER,
    SMTPD_CHECK_D_LOCAL,
    SMTPD_CHECK_D_VALIAS,
    SMTPD_CHECK_D_RELAY
};
enum smtpd_check_dclass smtpd_check_dclass(const struct smtpd_check *c,
                                           const char *domain);
/* virtual_alias_maps with its settings (addrmap.h), for the commit. */
struct addrmap;
const struct addrmap *smtpd_check_valias(const struct smtpd_check *c);

/* The answers from the network (smtpd_check_in.query). */
enum smtpd_check_q {
    SMTPD_CHECK_Q_NAME,   /* a domain's MX, A and AAAA records */
    SMTPD_CHECK_Q_DNSXL,  /* a name in a DNS list: A, then TXT */
    SMTPD_CHECK_Q_POLICY, /* a policy server's action for this request */
    SMTPD_CHECK_Q_MX,     /* a domain's MX hosts and their addresses */
    SMTPD_CHECK_Q_NS,     /* a domain's DNS servers and their addresses */
    SMTPD_CHECK_Q_A,      /* a name's addresses, as one server */
    SMTPD_CHECK_Q_VERIFY  /* the verify service's answer for an address */
};

#define SMTPD_CHECK_KEY_MAX 512 /* a query's key, with its NUL */

/* SMTPD_CHECK_Q_NAME: what the three lookups found, bits */
#define SMTPD_CHECK_NAME_MX     1u  /* MX records, not a null MX */
#define SMTPD_CHECK_NAME_NULLMX 2u  /* a null MX (RFC 7505) */
#define SMTPD_CHECK_NAME_ADDR   4u  /* A or AAAA records */
#define SMTPD_CHECK_NAME_TEMP   8u  /* a lookup failed for now */
#define SMTPD_CHECK_NAME_INVAL  16u /* a malformed reply */

/* Q_MX, Q_NS, Q_A: how the lookup of the servers ended */
#define SMTPD_CHECK_SRV_OK       0   /* srv.v[0 .. srv.n - 1] */
#define SMTPD_CHECK_SRV_NOTFOUND 1   /* Q_NS: no such name, or no NS records */
#define SMTPD_CHECK_SRV_NULLMX   2   /* Q_MX: a null MX (RFC 7505) */
#define SMTPD_CHECK_SRV_FAILED   3   /* for now, or a malformed reply */
#define SMTPD_CHECK_SRV_MAX      100 /* servers (Postfix's dns_rr_list_limit) */

/* Q_VERIFY: the address's status (queue/verify.h's order) */
#define SMTPD_CHECK_VRFY_OK     0 /* deliverable */
#define SMTPD_CHECK_VRFY_DEFER  1 /* undeliverable for now */
#define SMTPD_CHECK_VRFY_BOUNCE 2 /* undeliverable */
#define SMTPD_CHECK_VRFY_TODO   3 /* no answer yet, after the polls */
#define SMTPD_CHECK_VRFY_FAILED 4 /* the service did not answer */

/* One server: its host name and addresses. Q_MX gives the MX hosts in
 * order of preference (the domain itself when it has no MX record or
 * does not exist, as Postfix), Q_NS the DNS servers, Q_A the name asked
 * about alone. */
struct smtpd_check_srv {
    const char *name;
    const char *why;         /* NULL, or why no address was found ("Host
                                not found"): naddr is 0 then */
    const char *const *addr; /* "192.0.2.1", "2001:db8::1" */
    size_t naddr;
};

struct smtpd_check_ans {
    unsigned name;                /* Q_NAME: the bits above */
    struct smtpd_check_rbl dnsxl; /* Q_DNSXL: as for the client lists */
    const char *action;  /* Q_POLICY: the action; NULL: the server failed */
    struct {             /* Q_MX, Q_NS, Q_A */
        int status;      /* SMTPD_CHECK_SRV_* */
        const char *why; /* NOTFOUND, FAILED: Postfix's words ("Host not
                            found, try again") */
        const struct smtpd_check_srv *v;
        size_t n;
    } srv;
    struct {             /* Q_VERIFY */
        int status;      /* SMTPD_CHECK_VRFY_* */
        const char *why; /* the probe's outcome, as the service says it */
    } verify;
};

/* How the client name lookups ended (Postfix's name_status). */
#define SMTPD_CHECK_NAME_FOUND  0
#define SMTPD_CHECK_NAME_FAILED 1 /* for now: try again */
#define SMTPD_CHECK_NAME_NONE               \
    2 /* no name, or not confirmed, or none \
         looked up */

/* What the session knows when a list runs. */
struct smtpd_check_in {
    const struct sockaddr *sa;
    const char *addr;     /* client address, "192.0.2.1" */
    const char *name;     /* client host name, "unknown" when none */
    const char *rev_name; /* what the reverse lookup gave (not confirmed
                             by a forward one), "unknown" when none */
    int name_status;      /* SMTPD_CHECK_NAME_FOUND, _FAILED, _NONE */
    int rev_status;       /* the same for rev_name */
    const char *helo;     /* NULL: no HELO/EHLO yet */
    const char *sender;   /* MAIL FROM ("" for <>) */
    const char *rcpt;     /* RCPT TO (NULL at DATA) */
    int mynetworks;       /* the client is in mynetworks; -1: ask */
    int authenticated;    /* SMTP AUTH, not ANONYMOUS */
    const char *sasl_user;
    int encrypted;        /* the session is under TLS */
    int ccert;            /* its client certificate: 0 none, 1 not trusted, 2
                             trusted */
    const char *ccert_cn; /* its subject CN */
    const char *ccert_fp; /* its fingerprint ("AB:CD:...") */
    const char *ccert_pkey_fp; /* its public key's */
    size_t nrcpt;  /* recipients accepted so far in the transaction */
    int auth_dest; /* rcpt is in mydestination or relay_domains; -1: ask */
    const struct smtpd_check_rbl *rbl; /* smtpd_check_rbl_count, or NULL */
    /* the -1 facts, asked only when a restriction needs them */
    int (*ask)(void *arg, enum smtpd_check_fact f);
    /* An answer from the network: 1 and *ans (valid until the caller's
     * evaluation returns), or 0 when it is not known yet (the evaluation
     * ends with SMTPD_CHECK_NEED). NULL: nothing is known, every such
     * restriction is skipped. */
    int (*query)(void *arg, enum smtpd_check_q q, const char *key,
                 const struct smtpd_check_ans **ans);
    /* a WARN action or warn_if_reject: "reject_warning" or "warn" and
     * the text, for the caller's log line; "warning" and a text: a
     * warning of Postfix's own words for the log ("Unable to look up MX
     * host for example.com: Host not found") */
    void (*log)(void *arg, const char *what, const char *text);
    void *arg;
};

enum smtpd_check_verdict {
    SMTPD_CHECK_PASS,
    SMTPD_CHECK_REJECT,  /* reply: code 4xx or 5xx */
    SMTPD_CHECK_HOLD,    /* accept into the hold queue; text: the reason */
    SMTPD_CHECK_DISCARD, /* accept and drop; text: the reason */
    SMTPD_CHECK_NEED     /* ask need about key, then evaluate again */
};

struct smtpd_check_res {
    enum smtpd_check_verdict verdict;
    int code;         /* REJECT: 450, 454, 501, 504, 550, 553, 554, ... */
    char dsn[16];     /* REJECT: "5.7.1" */
    struct buf *text; /* the caller's: "<a@b>: Relay access denied" */
    /* the caller's, or NULL: PREPEND actions' headers ("Name: value\n"
     * each, in order), for the message; reset by each evaluation */
    struct buf *prepend;
    enum smtpd_check_q need;       /* NEED: what to ask */
    char key[SMTPD_CHECK_KEY_MAX]; /* NEED: about what */
};

/* At RCPT TO: client, helo, sender, relay and recipient lists. HOLD and
 * DISCARD apply to the whole message; HOLD lets the evaluation go on (a
 * later reject still rejects), DISCARD ends it. */

void smtpd_check_rcpt(const struct smtpd_check *c,
                      const struct smtpd_check_in *in,
                      struct smtpd_check_res *res);
/* At DATA: smtpd_data_restrictions; smtpd_check_data_used: is that list
 * not empty (nothing to run otherwise)? */
int smtpd_check_data_used(const struct smtpd_check *c);

void smtpd_check_data(const struct smtpd_check *c,
                      const struct smtpd_check_in *in,
                      struct smtpd_check_res *res);
/* After the final dot, before the filters' end of message:
 * smtpd_end_of_data_restrictions (replies name <END-OF-MESSAGE> and
 * "End-of-data", as Postfix); smtpd_check_eod_used as above. */
int smtpd_check_eod_used(const struct smtpd_check *c);
void smtpd_check_eod(const struct smtpd_check *c,
                     const struct smtpd_check_in *in,
                     struct smtpd_check_res *res);

#endif
