/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_content.c - the content-checks filter (header_checks.c) on
 * arbitrary messages: MIME boundaries followed from the body stream, part
 * headers, attached messages, body lines, with arbitrary chunking.
 * Input: a regexp: table up to the first NUL (used as header_checks,
 * mime_header_checks, nested_header_checks and body_checks at once), one
 * byte of chunk size, then the message: header fields (as the session
 * hands them over: name and value, up to the blank line) and the body.
 * Checked, besides "no crash, no leak": the end-of-message callback runs
 * once, with a verdict the filter can give (CONTINUE, REJECT 550 with a
 * 5.x.x DSN, DISCARD, HOLD), and modifications only when the table has
 * a header-changing action.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/cf.h"
#include "filters/filter.h"
#include "filters/header_checks.h"
#include "lib/buf.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int eom_calls;

static void
fz_done(void *arg, const struct filter_result *r)
{
    (void) arg;
    if (r->verdict == FILTER_REJECT
        && (r->code != 550 || r->dsn == NULL || r->dsn[0] != '5'))
        abort();
    if (r->verdict == FILTER_TEMPFAIL || r->verdict == FILTER_ACCEPT)
        abort();
    eom_calls++;
}

static void
fz_nop(void *arg, const struct filter_result *r)
{
    (void) arg;
    (void) r;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    const char *nul = memchr(data, '\0', size);
    struct buf *spec, *err;
    struct cf *cf;
    struct hc_conf *hc;
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct filter_env env;
    struct filter_args a;
    const char *msg, *end, *p;
    size_t chunk;
    int fd, none;

    if (!once) { /* the actions' log lines: not on the terminal */
        log_init("fuzz", "smtpd", "/dev/null");
        once = 1;
    }
    if (nul == NULL || (size_t) (nul - (const char *) data) + 2 > size
        || size > 1 << 20)
        return 0;
    fd = memfd_create("fuzz_content", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, (size_t) (nul - (const char *) data))
        != nul - (const char *) data) {
        close(fd);
        return 0;
    }
    chunk = (unsigned char) nul[1] + 1;
    msg = nul + 2;
    end = (const char *) data + size;
    spec = buf_new(64, BUF_NOCAP);
    err = buf_new(256, BUF_NOCAP);
    buf_printf(spec, "regexp:/proc/self/fd/%d", fd);
    cf = cf_new();
    if (cf_set(cf, "header_checks", buf_data(spec), NULL, err) < 0
        || cf_set(cf, "body_checks", buf_data(spec), NULL, err) < 0
        || cf_check(cf, err) < 0
        || (hc = hc_conf_new(cf, &none, err)) == NULL) {
        cf_free(cf);
        buf_free(spec);
        buf_free(err);
        close(fd);
        return 0;
    }
    ch = filter_chain_new();
    filter_chain_add(ch, &hc_filter_ops, hc);
    memset(&env, 0, sizeof(env));
    env.client_addr = "192.0.2.1";
    env.client_name = "client.example";
    env.queue_id = "FUZZ";
    env.sender = "s@example.org";
    env.spool_fd = -1;
    fs = filter_sess_new(ch, &env);
    memset(&a, 0, sizeof(a));
    a.str = "s@example.org";
    filter_stage(fs, FILTER_MAIL, &a, fz_nop, NULL);
    /* header fields up to the blank line: "Name: value" lines, folded
     * lines joined with their CRLF as the session hands them over */
    p = msg;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p)), *f = p;
        size_t nlen;
        char *name, *value;

        if (nl == NULL || nl == p || (nl == p + 1 && *p == '\r'))
            break;
        while (nl && nl + 1 < end && (nl[1] == ' ' || nl[1] == '\t'))
            nl = memchr(nl + 1, '\n', (size_t) (end - nl - 1));
        if (nl == NULL)
            break;
        p = nl + 1;
        nlen = filter_hdr_name_len(f, (size_t) (nl - f));
        if (nlen == 0)
            continue;
        name = strndup(f, nlen);
        value = strndup(strchr(f + nlen, ':') + 1,
                        (size_t) (nl - (strchr(f + nlen, ':') + 1)));
        memset(&a, 0, sizeof(a));
        a.hname = name;
        a.hvalue = value;
        filter_stage(fs, FILTER_HEADER, &a, NULL, NULL);
        free(name);
        free(value);
    }
    if (p < end && *p == '\r')
        p++;
    if (p < end && *p == '\n')
        p++;
    memset(&a, 0, sizeof(a));
    filter_stage(fs, FILTER_EOH, &a, NULL, NULL);
    while (p < end) {
        size_t n = (size_t) (end - p) < chunk ? (size_t) (end - p) : chunk;

        memset(&a, 0, sizeof(a));
        a.data = p;
        a.len = n;
        filter_stage(fs, FILTER_BODY, &a, NULL, NULL);
        p += n;
    }
    eom_calls = 0;
    memset(&a, 0, sizeof(a));
    filter_stage(fs, FILTER_EOM, &a, fz_done, NULL);
    if (eom_calls != 1)
        abort();
    filter_sess_free(fs);
    filter_chain_free(ch);
    hc_conf_free(hc);
    cf_free(cf);
    buf_free(spec);
    buf_free(err);
    close(fd);
    return 0;
}
