/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * smtpd_parse.c - SMTP command line and address parsing (RFC 5321).
 * Pure functions over one command line; the only allocations are the two
 * strings smtpd_addr_split() returns. Results of smtpd_parse_cmd() and
 * smtpd_parse_path() point into the caller's line, where NULs are written
 * to end the argument, the address and each parameter.
 *
 * The line given to smtpd_parse_cmd() must be followed by a NUL at
 * line[len] (struct buf guarantees this): a non-empty argument runs to it.
 *
 * Address syntax: a dot-atom (dots relaxed as in Postfix) or quoted-string
 * local part, '@', then a domain (labels of letters, digits, '-' and '_', one
 * trailing dot allowed) or an address literal ([192.0.2.1],
 * [IPv6:2001:db8::1]). Bytes >= 0x80 are refused (SMTPUTF8 is not offered). An
 * address without '@' is only "postmaster" (RFC 5321 4.5.1), and only in RCPT
 * TO. smtpd_addr_valid() is a predicate: 1 when valid, 0 when not.
 * smtpd_addr_split() also takes a bare local part without '@' (domain "").
 * Owns: nothing. Threads: any.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "lib/xalloc.h"
#include "proxy/smtpd_parse.h"

static const struct {
    const char *name;
    enum smtpd_verb verb;
} smtpd_verbs[] = {
    {"EHLO", SMTPD_V_EHLO}, {"HELO", SMTPD_V_HELO},
    {"MAIL", SMTPD_V_MAIL}, {"RCPT", SMTPD_V_RCPT},
    {"DATA", SMTPD_V_DATA}, {"RSET", SMTPD_V_RSET},
    {"NOOP", SMTPD_V_NOOP}, {"QUIT", SMTPD_V_QUIT},
    {"VRFY", SMTPD_V_VRFY}, {"EXPN", SMTPD_V_EXPN},
    {"HELP", SMTPD_V_HELP}, {"STARTTLS", SMTPD_V_STARTTLS},
    {"AUTH", SMTPD_V_AUTH}, {"BDAT", SMTPD_V_BDAT},
    {"ETRN", SMTPD_V_ETRN},
};

static int
smtpd_is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

int
smtpd_parse_cmd(char *line, size_t len, struct smtpd_cmd *cmd)
{
    static char empty[1];
    size_t i, j, end;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char) line[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -1;
    }

    for (i = 0; i < len && !smtpd_is_wsp(line[i]); i++)
        ;
    cmd->verb = SMTPD_V_UNKNOWN;
    cmd->name = line;
    cmd->name_len = i;
    for (size_t v = 0; v < sizeof(smtpd_verbs) / sizeof(smtpd_verbs[0]); v++) {
        if (strlen(smtpd_verbs[v].name) == i
            && strncasecmp(line, smtpd_verbs[v].name, i) == 0) {
            cmd->verb = smtpd_verbs[v].verb;
            break;
        }
    }

    for (j = i; j < len && smtpd_is_wsp(line[j]); j++)
        ;
    end = len;
    while (end > j && smtpd_is_wsp(line[end - 1]))
        end--;
    if (end == j) {
        /* Never written to: smtpd_parse_path() rejects "" untouched. */
        cmd->arg = empty;
        return 0;
    }
    if (end < len)
        line[end] = '\0';
    cmd->arg = line + j;
    return 0;
}

/* atext of RFC 5321/5322. */
static int
smtpd_is_atext(int c)
{
    if (c >= 0x80 || c < 0)
        return 0;
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Length of the local part at the start of s (up to '@' or the end), or
 * -1 when it is neither a dot-atom nor a quoted string. */
static ssize_t
smtpd_local_scan(const char *s)
{
    size_t i;
    int has_atext = 0;

    if (s[0] == '"') {
        for (i = 1;;) {
            unsigned char c = (unsigned char) s[i];

            if (c == '"') {
                i++;
                break;
            }
            if (c == '\\') {
                unsigned char e = (unsigned char) s[i + 1];

                if (e < 32 || e > 126)
                    return -1;
                i += 2;
                continue;
            }
            if (c < 32 || c > 126)
                return -1;
            i++;
        }
        if (s[i] != '@' && s[i] != '\0')
            return -1;
        return (ssize_t) i;
    }
    /* Like Postfix, dots may lead, trail or repeat ("a..b", "a."): such
     * addresses exist in the wild (some mobile carriers issue them) and
     * are harmless here; at least one atext character is required. */
    for (i = 0; s[i] != '@' && s[i] != '\0'; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c == '.')
            continue;
        if (!smtpd_is_atext(c))
            return -1;
        has_atext = 1;
    }
    if (!has_atext)
        return -1;
    return (ssize_t) i;
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]": 0 or -1. */
static int
smtpd_literal_valid(const char *s)
{
    char ip[64]; /* longer than any IPv6 text form */
    size_t len = strlen(s);
    struct in6_addr a6;
    struct in_addr a4;

    if (len < 3 || s[0] != '[' || s[len - 1] != ']')
        return -1;
    s++;
    len -= 2;
    if (len >= 5 && strncasecmp(s, "IPv6:", 5) == 0) {
        if (len - 5 >= sizeof(ip))
            return -1;
        memcpy(ip, s + 5, len - 5);
        ip[len - 5] = '\0';
        return inet_pton(AF_INET6, ip, &a6) == 1 ? 0 : -1;
    }
    if (len >= sizeof(ip))
        return -1;
    memcpy(ip, s, len);
    ip[len] = '\0';
    return inet_pton(AF_INET, ip, &a4) == 1 ? 0 : -1;
}

/* A domain name or an address literal: 0 or -1. */
static int
smtpd_domain_valid(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (s[0] == '[')
        return smtpd_literal_valid(s);
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 255)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c == '.') {
            if (label == 0)
                return -1;
            label = 0;
        } else if (c < 0x80 && (isalnum(c) || c == '-' || c == '_')) {
            if (++label > 63)
                return -1;
        } else {
            return -1;
        }
    }
    return label > 0 ? 0 : -1;
}

int
smtpd_addr_valid(const char *addr)
{
    ssize_t l;

    if (addr == NULL || strnlen(addr, SMTPD_ADDR_MAX + 1) > SMTPD_ADDR_MAX)
        return 0;
    if (addr[0] == '\0')
        return 1;
    if ((l = smtpd_local_scan(addr)) < 0)
        return 0;
    if (addr[l] == '\0')
        return strcasecmp(addr, "postmaster") == 0;
    return smtpd_domain_valid(addr + l + 1) == 0;
}

int
smtpd_addr_split(const char *addr, char **local, char **domain)
{
    ssize_t l;
    char *lp, *dp;

    *local = NULL;
    *domain = NULL;
    if (strnlen(addr, SMTPD_ADDR_MAX + 1) > SMTPD_ADDR_MAX)
        return -1;
    if (addr[0] == '\0') {
        l = 0;
    } else if ((l = smtpd_local_scan(addr)) < 0) {
        return -1;
    }
    if (addr[l] == '@' && smtpd_domain_valid(addr + l + 1) < 0)
        return -1;

    if (addr[0] == '"') {
        /* Drop the quotes, resolve the backslash escapes. */
        size_t o = 0;

        lp = xmalloc((size_t) l);
        for (ssize_t i = 1; i < l - 1; i++) {
            if (addr[i] == '\\')
                i++;
            lp[o++] = addr[i];
        }
        lp[o] = '\0';
    } else {
        lp = xstrndup(addr, (size_t) l);
    }
    if (addr[l] == '@') {
        size_t dlen;

        dp = xstrdup(addr + l + 1);
        for (char *c = dp; *c != '\0'; c++)
            *c = (char) tolower((unsigned char) *c);
        dlen = strlen(dp);
        if (dlen > 0 && dp[dlen - 1] == '.')
            dp[dlen - 1] = '\0';
    } else {
        dp = xstrdup("");
    }
    *local = lp;
    *domain = dp;
    return 0;
}

int
smtpd_local_has_routing(const char *local)
{
    return strpbrk(local, "%!@") != NULL;
}

int
smtpd_param_is(const char *p, const char *key, const char **val)
{
    size_t k = strlen(key);

    if (strncasecmp(p, key, k) != 0)
        return 0;
    if (p[k] == '\0') {
        if (val != NULL)
            *val = NULL;
        return 1;
    }
    if (p[k] == '=') {
        if (val != NULL)
            *val = p + k + 1;
        return 1;
    }
    return 0;
}

/* The '>' closing a path that starts at s (just after '<'), skipping
 * quoted strings; NULL when there is none. */
static char *
smtpd_path_close(char *s)
{
    int quoted = 0;

    for (; *s != '\0'; s++) {
        if (quoted && *s == '\\') {
            if (s[1] == '\0')
                return NULL;
            s++;
        } else if (*s == '"') {
            quoted = !quoted;
        } else if (!quoted && *s == '>') {
            return s;
        }
    }
    return NULL;
}

/* The end of a bare (unbracketed) path: white space outside quotes. */
static char *
smtpd_path_end(char *s)
{
    int quoted = 0;

    for (; *s != '\0'; s++) {
        if (quoted && *s == '\\') {
            if (s[1] == '\0')
                return s + 1;
            s++;
        } else if (*s == '"') {
            quoted = !quoted;
        } else if (!quoted && smtpd_is_wsp(*s)) {
            return s;
        }
    }
    return s;
}

/* Skip a source route "@a,@b:" at s: returns what follows the ':', or
 * NULL when the route is malformed. */
static char *
smtpd_route_skip(char *s)
{
    char *colon = strchr(s, ':');

    if (colon == NULL)
        return NULL;
    *colon = '\0';
    for (char *hop = s; hop != NULL;) {
        char *comma = strchr(hop, ',');

        if (comma != NULL)
            *comma = '\0';
        if (hop[0] != '@' || smtpd_domain_valid(hop + 1) < 0)
            return NULL;
        hop = comma != NULL ? comma + 1 : NULL;
    }
    return colon + 1;
}

/* "KEY" or "KEY=VALUE" (RFC 5321 esmtp-param): 0 or -1. */
static int
smtpd_param_valid(const char *s)
{
    size_t i = 0;

    if (!isalnum((unsigned char) s[0]) || (unsigned char) s[0] >= 0x80)
        return -1;
    for (i = 1; s[i] != '\0' && s[i] != '='; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c >= 0x80 || !(isalnum(c) || c == '-'))
            return -1;
    }
    if (s[i] == '\0')
        return 0;
    if (s[++i] == '\0')
        return -1;
    for (; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char) s[i];

        if (c < 33 || c > 126 || c == '=')
            return -1;
    }
    return 0;
}

int
smtpd_parse_path(char *arg, const char *prefix, int is_rcpt,
                 struct smtpd_path *p, const char **why)
{
    const char *syntax = is_rcpt ? "5.5.2 Syntax: RCPT TO:<address>"
                                 : "5.5.2 Syntax: MAIL FROM:<address>";
    const char *bad = is_rcpt ? "5.1.3 Bad recipient address syntax"
                              : "5.1.7 Bad sender address syntax";
    size_t plen = strlen(prefix);
    char *s, *a, *rest;

    p->addr = NULL;
    p->params[0] = NULL;
    p->nparams = 0;

    if (strncasecmp(arg, prefix, plen) != 0) {
        *why = syntax;
        goto fail;
    }
    for (s = arg + plen; smtpd_is_wsp(*s); s++)
        ;
    if (*s == '\0') {
        *why = syntax;
        goto fail;
    }
    *why = bad;
    if (*s == '<') {
        char *close = smtpd_path_close(s + 1);

        if (close == NULL)
            goto fail;
        if (close[1] != '\0' && !smtpd_is_wsp(close[1]))
            goto fail;
        a = s + 1;
        rest = close + 1;
        *close = '\0';
    } else {
        char *end = smtpd_path_end(s);

        a = s;
        rest = end;
        if (*end != '\0') {
            *end = '\0';
            rest = end + 1;
        }
    }

    if (a[0] == '@') {
        if ((a = smtpd_route_skip(a)) == NULL || a[0] == '\0')
            goto fail;
    }
    if (a[0] == '\0') {
        if (is_rcpt)
            goto fail;
    } else {
        if (!smtpd_addr_valid(a))
            goto fail;
        /* No '@': only "postmaster", only as a recipient. */
        if (!is_rcpt && strcasecmp(a, "postmaster") == 0)
            goto fail;
    }
    p->addr = a;

    for (s = rest;;) {
        char *tok;

        while (smtpd_is_wsp(*s))
            s++;
        if (*s == '\0')
            break;
        tok = s;
        while (*s != '\0' && !smtpd_is_wsp(*s))
            s++;
        if (*s != '\0')
            *s++ = '\0';
        if (smtpd_param_valid(tok) < 0) {
            *why = "5.5.4 Invalid parameter syntax";
            goto fail;
        }
        if (p->nparams == SMTPD_PARAMS_MAX) {
            *why = "5.5.4 Too many parameters";
            goto fail;
        }
        p->params[p->nparams++] = tok;
        p->params[p->nparams] = NULL;
    }
    *why = NULL;
    return 0;

fail:
    p->addr = NULL;
    p->params[0] = NULL;
    p->nparams = 0;
    return -1;
}
