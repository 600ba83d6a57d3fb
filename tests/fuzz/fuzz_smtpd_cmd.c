/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_smtpd_cmd.c - one input is one SMTP command line (CRLF removed).
 * Parses it; for MAIL and RCPT parses the path and checks what comes out:
 * an accepted address is valid and splits, parameters are well formed.
 * The whole input is also tried as a bare address. abort() on a broken
 * invariant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/smtpd_parse.h"

static void
check_split(const char *addr, int must_work)
{
    char *local = NULL, *domain = NULL;
    int rc = smtpd_addr_split(addr, &local, &domain);

    if (rc < 0) {
        if (must_work || local != NULL || domain != NULL)
            abort();
        return;
    }
    if (local == NULL || domain == NULL)
        abort();
    if (strlen(local) > strlen(addr) || strlen(domain) > strlen(addr))
        abort();
    for (const char *c = domain; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z')
            abort();
    }
    (void) smtpd_local_has_routing(local);
    free(local);
    free(domain);
}

static void
check_path(char *arg, int is_rcpt)
{
    struct smtpd_path p;
    const char *why = NULL;

    if (smtpd_parse_path(arg, is_rcpt ? "TO:" : "FROM:", is_rcpt, &p, &why)
        < 0) {
        if (why == NULL || strncmp(why, "5.", 2) != 0 || p.addr != NULL)
            abort();
        return;
    }
    if (p.addr == NULL || p.nparams > SMTPD_PARAMS_MAX
        || p.params[p.nparams] != NULL)
        abort();
    if (p.addr[0] == '\0' && is_rcpt)
        abort();
    if (!smtpd_addr_valid(p.addr) || strlen(p.addr) > SMTPD_ADDR_MAX)
        abort();
    if (!is_rcpt && p.addr[0] != '\0' && strchr(p.addr, '@') == NULL)
        abort();
    check_split(p.addr, 1);
    for (size_t i = 0; i < p.nparams; i++) {
        const char *eq = strchr(p.params[i], '='), *val = NULL;
        char key[64];
        size_t klen = eq ? (size_t) (eq - p.params[i]) : strlen(p.params[i]);

        if (klen == 0 || strpbrk(p.params[i], " \t") != NULL)
            abort();
        if (klen < sizeof(key)) {
            memcpy(key, p.params[i], klen);
            key[klen] = '\0';
            if (!smtpd_param_is(p.params[i], key, &val))
                abort();
            if ((eq == NULL) != (val == NULL))
                abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtpd_cmd cmd;
    char *line;

    if (size > 4096)
        return 0;
    line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = '\0';

    /* the raw input as an address */
    if (memchr(line, '\0', size) == NULL) {
        int valid = smtpd_addr_valid(line);

        check_split(line, 0);
        if (valid && strlen(line) > SMTPD_ADDR_MAX)
            abort();
        if (valid)
            check_split(line, 1);
    }

    if (smtpd_parse_cmd(line, size, &cmd) == 0) {
        if (cmd.name != line || cmd.name_len > size || cmd.arg == NULL)
            abort();
        if (cmd.verb != SMTPD_V_UNKNOWN && cmd.name_len < 4)
            abort();
        switch (cmd.verb) {
        case SMTPD_V_MAIL:
            check_path(cmd.arg, 0);
            break;
        case SMTPD_V_RCPT:
            check_path(cmd.arg, 1);
            break;
        case SMTPD_V_EHLO:
        case SMTPD_V_HELO:
        case SMTPD_V_DATA:
        case SMTPD_V_RSET:
        case SMTPD_V_NOOP:
        case SMTPD_V_QUIT:
        case SMTPD_V_VRFY:
        case SMTPD_V_EXPN:
        case SMTPD_V_HELP:
        case SMTPD_V_STARTTLS:
        case SMTPD_V_AUTH:
        case SMTPD_V_BDAT:
        case SMTPD_V_ETRN:
        case SMTPD_V_UNKNOWN:
            break;
        }
    } else {
        /* refused lines hold a control character */
        size_t i;

        for (i = 0; i < size; i++) {
            unsigned char c = (unsigned char) line[i];

            if ((c < 0x20 && c != '\t') || c == 0x7f)
                break;
        }
        if (i == size)
            abort();
    }
    free(line);
    return 0;
}
