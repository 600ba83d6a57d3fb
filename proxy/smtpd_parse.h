/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd_parse.h - SMTP command line and address parsing (RFC 5321).
 * Pure functions over one command line (CRLF already removed). Nothing
 * here allocates except smtpd_addr_split; results point into the line,
 * which the parser may modify (NULs written).
 * Threads: any.
 */
#ifndef SLUICE_SMTPD_PARSE_H
#define SLUICE_SMTPD_PARSE_H

#include <stddef.h>

enum smtpd_verb {
    SMTPD_V_EHLO,
    SMTPD_V_HELO,
    SMTPD_V_MAIL,
    SMTPD_V_RCPT,
    SMTPD_V_DATA,
    SMTPD_V_RSET,
    SMTPD_V_NOOP,
    SMTPD_V_QUIT,
    SMTPD_V_VRFY,
    SMTPD_V_EXPN,
    SMTPD_V_HELP,
    SMTPD_V_STARTTLS,
    SMTPD_V_AUTH,
    SMTPD_V_BDAT,
    SMTPD_V_ETRN,
    SMTPD_V_UNKNOWN
};

struct smtpd_cmd {
    enum smtpd_verb verb;
    const char *name; /* verb as written, upper-cased copy is not made */
    size_t name_len;
    char *arg; /* after the verb and one or more spaces; "" if none */
};

/* Split a command line. Verbs match case-insensitively. A line holding a
 * NUL byte or other control characters except TAB: -1. */
int smtpd_parse_cmd(char *line, size_t len, struct smtpd_cmd *cmd);

#define SMTPD_PARAMS_MAX 16
#define SMTPD_ADDR_MAX   512 /* RFC 5321: 64 local + 255 domain, generous */

struct smtpd_path {
    char *addr; /* without <>, without a source route; "" = <> */
    char *params[SMTPD_PARAMS_MAX + 1]; /* "KEY=VALUE" or "KEY", NULL-term */
    size_t nparams;
};

/* Parse the argument of MAIL or RCPT: prefix is "FROM:" or "TO:" (case-
 * insensitive, white space after ':' tolerated). Accepts <addr> and, like
 * Postfix with strict_rfc821_envelopes = no, a bare addr. A source route
 * (<@a,@b:user@c>) is dropped. On error returns -1 and *why is the reply
 * text after the code, one of:
 *   "5.5.2 Syntax: MAIL FROM:<address>" / "5.5.2 Syntax: RCPT TO:<address>"
 *   "5.1.7 Bad sender address syntax" / "5.1.3 Bad recipient address syntax"
 *   "5.5.4 Too many parameters"
 * (the caller adds "501 ").*/
int smtpd_parse_path(char *arg, const char *prefix, int is_rcpt,
                     struct smtpd_path *p, const char **why);

/* Check an address's syntax: dot-atom or quoted-string local part, '@',
 * a domain name (letters, digits, '-', dots) or an address literal
 * ([192.0.2.1], [IPv6:...]). Empty string is valid (null sender). */
int smtpd_addr_valid(const char *addr);

/* Split addr at its last '@' (outside quotes): *local (quotes removed) and
 * *domain (lower-cased, trailing dot removed), both malloc'd. An address
 * without '@' gives domain "". -1 on syntax error. */
int smtpd_addr_split(const char *addr, char **local, char **domain);

/* Non-zero when a local part holds routing that could open a relay if
 * some later hop interpreted it: '%', '!', '@' (also quoted). */
int smtpd_local_has_routing(const char *local);

/* ESMTP parameter "KEY=VALUE": key (upper-case compare) and value.
 * Returns 1 when p's key is key (case-insensitive); *val = value or NULL. */
int smtpd_param_is(const char *p, const char *key, const char **val);

#endif
