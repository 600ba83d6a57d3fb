/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_smtpd_check.c - the smtpd_*_restrictions: parsing the lists (and
 * the inline: access tables in them) from main.cf text, then evaluating
 * them with fuzzed session facts.
 * Input: NUL-separated fields: main.cf text, then helo, sender, rcpt,
 * client address, client name; a missing field is NULL (helo) or a
 * default; then one flag byte: bit 0 mynetworks, bit 1 authenticated,
 * bit 2 the recipient is ours (auth_dest), bit 3 evaluate at DATA (with
 * bit 2: after the final dot, smtpd_end_of_data_restrictions), bits 6-7
 * how the client name lookups ended.
 * Besides "no crash, no leak", what smtpd_check.h promises is checked:
 * a reject has a 4xx or 5xx code, a DSN "C.x.y" whose class is the code's
 * and a text; HOLD and DISCARD have a text; a bare postmaster recipient
 * is never refused; evaluating twice gives the same answer.
 * Answers from the network (smtpd_check_in.query) are given the way
 * smtpd does: each NEED names what to ask (a key that is not empty and
 * never one already answered), the answer is added and the evaluation
 * runs again, until it decides. The answers come from the key and the
 * flags (bit 5: the name lookups fail for now); a policy server's
 * action is the HELO field (NULL, the server failed, when it is empty).
 * PREPEND headers come out as whole "Name: value" lines. The facts the
 * evaluation asks (our domain, a relay domain, pipelining) come from the
 * address's length (fz_ask); the client certificate and the recipient
 * count from the lengths of the client name and the recipient.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "proxy/smtpd_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fz_log(void *arg, const char *what, const char *text)
{
    (void) arg;
    if (what == NULL || text == NULL)
        abort();
}

/* The facts smtpd would look up, from the address's length: ours
 * (mydestination) when it is a multiple of 3, a relay domain's when one
 * more, a virtual alias domain's when two more and even. */
static int
fz_ask(void *arg, enum smtpd_check_fact f)
{
    const struct smtpd_check_in *in = arg;
    const char *a = f == SMTPD_CHECK_SENDER_FINAL
                            || f == SMTPD_CHECK_SENDER_RELAY
                            || f == SMTPD_CHECK_SENDER_VALIAS
                        ? in->sender
                        : in->rcpt;
    size_t n = a ? strlen(a) : 0;

    switch (f) {
    case SMTPD_CHECK_SENDER_FINAL:
    case SMTPD_CHECK_RCPT_FINAL:
        return n % 3 == 0;
    case SMTPD_CHECK_SENDER_RELAY:
    case SMTPD_CHECK_RCPT_RELAY:
        return n % 3 == 1;
    case SMTPD_CHECK_SENDER_VALIAS:
    case SMTPD_CHECK_RCPT_VALIAS:
        return n % 3 == 2 && n % 2 == 0;
    case SMTPD_CHECK_PIPELINED:
        return (int) (n % 2);
    default:
        return 0;
    }
}

#define FZ_ANS 32

static struct {
    enum smtpd_check_q q;
    char key[SMTPD_CHECK_KEY_MAX];
    struct smtpd_check_ans ans;
    struct smtpd_check_srv sv[3]; /* Q_MX, Q_NS, Q_A */
    char name[SMTPD_CHECK_KEY_MAX];
} fz_ans[FZ_ANS];

static const char *const fz_addrs[] = {"192.0.2.1", "2001:db8::1"};
static size_t fz_nans;

static int
fz_query(void *arg, enum smtpd_check_q q, const char *key,
         const struct smtpd_check_ans **ans)
{
    (void) arg;
    for (size_t i = 0; i < fz_nans; i++)
        if (fz_ans[i].q == q && strcmp(fz_ans[i].key, key) == 0) {
            *ans = &fz_ans[i].ans;
            return 1;
        }
    return 0;
}

/* The answer smtpd would get for a NEED: 0, or -1 when the evaluation
 * asked for what it already has. */
static int
fz_answer(const struct smtpd_check_res *r, const struct smtpd_check_in *in,
          unsigned flags)
{
    const struct smtpd_check_ans *a;
    struct smtpd_check_ans *n;
    size_t kl = strlen(r->key);

    if (kl == 0 || fz_query(NULL, r->need, r->key, &a) || fz_nans == FZ_ANS)
        return -1;
    n = &fz_ans[fz_nans].ans;
    memset(n, 0, sizeof(*n));
    fz_ans[fz_nans].q = r->need;
    memcpy(fz_ans[fz_nans].key, r->key, kl + 1);
    fz_nans++;
    switch (r->need) {
    case SMTPD_CHECK_Q_NAME:
        n->name = (unsigned) (kl * 7) & 31;
        if (flags & 32)
            n->name = SMTPD_CHECK_NAME_TEMP;
        break;
    case SMTPD_CHECK_Q_DNSXL:
        n->dnsxl.listed = flags & 16 ? 1 : (int) (kl % 2);
        n->dnsxl.naddr = 1;
        n->dnsxl.addrs[0][0] = 127;
        n->dnsxl.addrs[0][3] = (unsigned char) kl;
        snprintf(n->dnsxl.txt, sizeof(n->dnsxl.txt), "%s",
                 in->helo ? in->helo : "");
        break;
    case SMTPD_CHECK_Q_POLICY:
        n->action = in->helo; /* NULL: the server failed */
        break;
    case SMTPD_CHECK_Q_MX:
    case SMTPD_CHECK_Q_NS:
    case SMTPD_CHECK_Q_A: {
        /* servers: the HELO name (what the tables may hold), a name that
         * is an address, the key; 0 to 3 of them */
        struct smtpd_check_srv *sv = fz_ans[fz_nans - 1].sv;
        char *name = fz_ans[fz_nans - 1].name;

        n->srv.status = (int) (kl % 4);
        n->srv.why = "Host not found";
        if (flags & 32)
            n->srv.status = SMTPD_CHECK_SRV_FAILED;
        snprintf(name, SMTPD_CHECK_KEY_MAX, "%s", in->helo ? in->helo : "");
        sv[0].name = name;
        sv[1].name = "192.0.2.9";
        sv[2].name = fz_ans[fz_nans - 1].key;
        for (int i = 0; i < 3; i++) {
            sv[i].naddr = (kl + (size_t) i) % 3;
            sv[i].addr = fz_addrs;
            sv[i].why = sv[i].naddr ? NULL : "Host not found";
        }
        n->srv.v = sv;
        n->srv.n = (kl / 4) % 4;
        break;
    }
    case SMTPD_CHECK_Q_VERIFY: /* every status, and a missing text */
        n->verify.status = (int) (kl % 5);
        n->verify.why = flags & 32 ? NULL : in->helo;
        break;
    }
    return 0;
}

static void
fz_check_res(const struct smtpd_check_res *r)
{
    switch (r->verdict) {
    case SMTPD_CHECK_NEED: /* fz_answer checks its key */
        break;
    case SMTPD_CHECK_PASS:
        break;
    case SMTPD_CHECK_REJECT:
        if (r->code < 400 || r->code > 599 || r->dsn[0] != '0' + r->code / 100
            || r->dsn[1] != '.' || buf_len(r->text) == 0) {
            fprintf(stderr, "bad reject: %d %s %s\n", r->code, r->dsn,
                    buf_data(r->text));
            abort();
        }
        break;
    case SMTPD_CHECK_HOLD:
    case SMTPD_CHECK_DISCARD:
        if (buf_len(r->text) == 0)
            abort();
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    const char *f[6] = {NULL};
    char *copy = malloc(size + 1);
    size_t nf = 0, start = 0;
    unsigned flags = 0;
    struct cf *cf;
    struct buf *err, *warn;
    struct smtpd_check *c;
    struct smtpd_check_in in;
    struct smtpd_check_res r1, r2;
    struct smtpd_check_rbl *rbl = NULL;
    size_t nrbl;

    if (size > 65536) {
        free(copy);
        return 0;
    }
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (size_t i = 0; i <= size && nf < 6; i++)
        if (i == size || copy[i] == '\0') {
            copy[i] = '\0';
            f[nf++] = copy + start;
            start = i + 1;
        }
    if (nf == 6 && start < size)
        flags = (unsigned char) copy[start];
    if (!once) { /* the unknown-action warnings: not on the terminal */
        log_init("fuzz", "smtpd", "/dev/null");
        once = 1;
    }

    err = buf_new(256, BUF_NOCAP);
    warn = buf_new(256, BUF_NOCAP);
    cf = cf_new();
    /* local_recipient_maps' default reads /etc/aliases.db: the input
     * may name its own tables */
    if (cf_set(cf, "local_recipient_maps", "", NULL, err) < 0
        || cf_parse_main(cf, f[0], strlen(f[0]), "main.cf", err) < 0
        || cf_check(cf, err) < 0)
        goto out;
    /* tables other than inline: and static: would read files */
    if (strstr(f[0], "hash:") || strstr(f[0], "btree:"))
        goto out; /* texthash: too */

    c = smtpd_check_new(cf, err, warn);
    if (c == NULL) {
        if (buf_len(err) == 0)
            abort(); /* an error says why */
        goto out;
    }
    memset(&in, 0, sizeof(in));
    in.helo = f[1] && *f[1] ? f[1] : NULL;
    in.sender = f[2] ? f[2] : "";
    in.rcpt = f[3] ? f[3] : "rcpt@example.com";
    in.addr = f[4] && *f[4] ? f[4] : "192.0.2.1";
    in.name = f[5] && *f[5] ? f[5] : "unknown";
    in.rev_name = in.name;
    in.name_status = (int) ((flags >> 6) % 3);
    in.rev_status = in.name_status == SMTPD_CHECK_NAME_NONE ? (int) (flags & 1)
                                                            : in.name_status;
    in.mynetworks = flags & 1;
    in.authenticated = (flags & 2) != 0;
    in.sasl_user = in.authenticated ? "fuzzuser" : NULL;
    in.auth_dest = (flags & 4) != 0;
    in.log = fz_log;
    in.query = fz_query;
    in.ask = fz_ask;
    in.arg = &in;
    /* a client certificate (none, untrusted, trusted) from the name's
     * length; its fingerprints are the HELO name and the address, which
     * the input's tables may hold; the recipients before this one */
    in.ccert = (int) (strlen(in.name) % 3);
    in.encrypted = in.ccert > 0;
    in.ccert_cn = in.name;
    in.ccert_fp = in.helo ? in.helo : "";
    in.ccert_pkey_fp = in.addr;
    in.nrcpt = strlen(in.rcpt) % 3;
    fz_nans = 0;
    /* DNS list answers: listed (flag 16) at 127.0.0.N, N from the client
     * name's length, with the helo as TXT; else not known */
    nrbl = smtpd_check_rbl_count(c);
    if (nrbl > 0) {
        rbl = calloc(nrbl, sizeof(*rbl));
        for (size_t i = 0; i < nrbl; i++) {
            if (smtpd_check_rbl_domain(c, i) == NULL)
                abort();
            rbl[i].listed = flags & 16 ? 1 : -1;
            rbl[i].naddr = 1;
            rbl[i].addrs[0][0] = 127;
            rbl[i].addrs[0][3] = (unsigned char) (strlen(in.name) + i);
            snprintf(rbl[i].txt, sizeof(rbl[i].txt), "%s",
                     in.helo ? in.helo : "");
        }
        in.rbl = rbl;
    }
    r1.text = buf_new(128, BUF_NOCAP);
    r2.text = buf_new(128, BUF_NOCAP);
    r1.prepend = buf_new(128, BUF_NOCAP);
    r2.prepend = buf_new(128, BUF_NOCAP);
    for (int pass = 0; pass < 2; pass++) {
        struct smtpd_check_res *r = pass ? &r2 : &r1;

        for (;;) {
            if ((flags & 12) == 12)
                smtpd_check_eod(c, &in, r);
            else if (flags & 8)
                smtpd_check_data(c, &in, r);
            else
                smtpd_check_rcpt(c, &in, r);
            fz_check_res(r);
            if (r->verdict != SMTPD_CHECK_NEED)
                break;
            if (pass == 1 || fz_answer(r, &in, flags) < 0)
                abort(); /* the second pass has every answer */
        }
    }
    if (r1.verdict != r2.verdict || r1.code != r2.code
        || strcmp(r1.dsn, r2.dsn) != 0
        || strcmp(buf_data(r1.text), buf_data(r2.text)) != 0
        || strcmp(buf_data(r1.prepend), buf_data(r2.prepend)) != 0)
        abort();
    /* PREPEND: whole header lines, "Name: value" each */
    for (const char *h = buf_data(r1.prepend); *h;) {
        const char *nl = strchr(h, '\n');

        if (nl == NULL || strcspn(h, ": \t\n") == 0
            || h[strcspn(h, ": \t\n")] != ':'
            || memchr(h, '\r', (size_t) (nl - h)))
            abort();
        h = nl + 1;
    }
    if (!(flags & 8) && strcmp(in.rcpt, "postmaster") == 0
        && r1.verdict != SMTPD_CHECK_PASS)
        abort();
    buf_free(r1.text);
    buf_free(r2.text);
    buf_free(r1.prepend);
    buf_free(r2.prepend);
    free(rbl);
    smtpd_check_free(c);
out:
    cf_free(cf);
    buf_free(err);
    buf_free(warn);
    free(copy);
    return 0;
}
