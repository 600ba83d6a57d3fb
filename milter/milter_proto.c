/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter_proto.c - the milter wire codec (milter_proto.h is the spec).
 * Written from the protocol as Sendmail's libmilter and Postfix's milter8
 * speak it; every length is checked before a byte is read.
 * Owns: nothing. Threads: pure functions, any thread.
 */
#include <ctype.h>
#include <string.h>

#include "milter/milter_proto.h"

uint32_t
milter_proto_steps(int version)
{
    uint32_t s = MILTER_SMFIP_NOCONNECT | MILTER_SMFIP_NOHELO
                 | MILTER_SMFIP_NOMAIL | MILTER_SMFIP_NORCPT
                 | MILTER_SMFIP_NOBODY | MILTER_SMFIP_NOHDRS
                 | MILTER_SMFIP_NOEOH;

    if (version >= 3)
        s |= MILTER_SMFIP_NOUNKNOWN;
    if (version >= 4)
        s |= MILTER_SMFIP_NODATA;
    if (version >= 6)
        s |= MILTER_SMFIP_NR_HDR | MILTER_SMFIP_SKIP | MILTER_SMFIP_RCPT_REJ
             | MILTER_SMFIP_NR_CONN | MILTER_SMFIP_NR_HELO
             | MILTER_SMFIP_NR_MAIL | MILTER_SMFIP_NR_RCPT
             | MILTER_SMFIP_NR_DATA | MILTER_SMFIP_NR_UNKN | MILTER_SMFIP_NR_EOH
             | MILTER_SMFIP_NR_BODY | MILTER_SMFIP_HDR_LEADSPC;
    return s;
}

/* ------------------------------------------------------------------ */
/* encoding */

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}

static uint32_t
get32(const void *q)
{
    const unsigned char *p = q;

    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8
           | (uint32_t) p[3];
}

/* Start a packet: header with a placeholder length; returns its offset
 * from buf_data() (the buf may move while growing). */
static int
pkt_begin(struct buf *out, int cmd, size_t *start)
{
    unsigned char h[5] = {0, 0, 0, 0, (unsigned char) cmd};

    *start = buf_len(out);
    return buf_append(out, h, sizeof(h));
}

static int
pkt_end(struct buf *out, size_t start)
{
    size_t n = buf_len(out) - start - MILTER_HDR_LEN;

    if (n > UINT32_MAX) {
        buf_truncate(out, start);
        return -1;
    }
    put32((unsigned char *) buf_data(out) + start, (uint32_t) n);
    return 0;
}

/* Append with rollback to start on failure. */
static int
pkt_put(struct buf *out, size_t start, const void *p, size_t n)
{
    if (buf_append(out, p, n) < 0) {
        buf_truncate(out, start);
        return -1;
    }
    return 0;
}

static int
pkt_str(struct buf *out, size_t start, const char *s)
{
    return pkt_put(out, start, s, strlen(s) + 1);
}

int
milter_enc_simple(struct buf *out, int cmd)
{
    size_t st;

    if (pkt_begin(out, cmd, &st) < 0)
        return -1;
    return pkt_end(out, st);
}

int
milter_enc_optneg(struct buf *out, uint32_t version, uint32_t actions,
                  uint32_t steps)
{
    unsigned char d[12];
    size_t st;

    put32(d, version);
    put32(d + 4, actions);
    put32(d + 8, steps);
    if (pkt_begin(out, MILTER_SMFIC_OPTNEG, &st) < 0
        || pkt_put(out, st, d, sizeof(d)) < 0)
        return -1;
    return pkt_end(out, st);
}

int
milter_enc_macro(struct buf *out, int for_cmd, const char *const *nv)
{
    unsigned char c = (unsigned char) for_cmd;
    size_t st, i;

    if (pkt_begin(out, MILTER_SMFIC_MACRO, &st) < 0
        || pkt_put(out, st, &c, 1) < 0)
        return -1;
    for (i = 0; nv && nv[i] && nv[i + 1]; i += 2)
        if (pkt_str(out, st, nv[i]) < 0 || pkt_str(out, st, nv[i + 1]) < 0)
            return -1;
    return pkt_end(out, st);
}

int
milter_enc_connect(struct buf *out, const char *host, int family, int port,
                   const char *addr)
{
    unsigned char f = (unsigned char) family, pt[2];
    size_t st;

    if (pkt_begin(out, MILTER_SMFIC_CONNECT, &st) < 0
        || pkt_str(out, st, host) < 0 || pkt_put(out, st, &f, 1) < 0)
        return -1;
    if (family != MILTER_SMFIA_UNKNOWN) {
        pt[0] = (unsigned char) ((unsigned) port >> 8);
        pt[1] = (unsigned char) port;
        if (pkt_put(out, st, pt, 2) < 0 || pkt_str(out, st, addr) < 0)
            return -1;
    }
    return pkt_end(out, st);
}

int
milter_enc_helo(struct buf *out, const char *helo)
{
    size_t st;

    if (pkt_begin(out, MILTER_SMFIC_HELO, &st) < 0
        || pkt_str(out, st, helo) < 0)
        return -1;
    return pkt_end(out, st);
}

int
milter_enc_envelope(struct buf *out, int cmd, const char *first,
                    const char *const *argv)
{
    size_t st, i;

    if (pkt_begin(out, cmd, &st) < 0 || pkt_str(out, st, first) < 0)
        return -1;
    for (i = 0; argv && argv[i]; i++)
        if (pkt_str(out, st, argv[i]) < 0)
            return -1;
    return pkt_end(out, st);
}

int
milter_enc_header(struct buf *out, const char *name, const char *value)
{
    size_t st;

    if (pkt_begin(out, MILTER_SMFIC_HEADER, &st) < 0
        || pkt_str(out, st, name) < 0 || pkt_str(out, st, value) < 0)
        return -1;
    return pkt_end(out, st);
}

int
milter_enc_body(struct buf *out, const void *p, size_t n)
{
    size_t st;

    if (n > MILTER_CHUNK_SIZE)
        return -1;
    if (pkt_begin(out, MILTER_SMFIC_BODY, &st) < 0
        || pkt_put(out, st, p, n) < 0)
        return -1;
    return pkt_end(out, st);
}

int
milter_enc_unknown(struct buf *out, const char *line)
{
    size_t st;

    if (pkt_begin(out, MILTER_SMFIC_UNKNOWN, &st) < 0
        || pkt_str(out, st, line) < 0)
        return -1;
    return pkt_end(out, st);
}

/* ------------------------------------------------------------------ */
/* decoding */

int
milter_dec_frame(const void *p, size_t n, size_t max, int *cmd,
                 const char **data, size_t *dlen, size_t *used, struct buf *err)
{
    const unsigned char *b = p;
    uint32_t len;

    if (n < MILTER_HDR_LEN)
        return 0;
    len = get32(b);
    if (len < 1) {
        buf_printf(err, "bad packet length: %lu", (unsigned long) len);
        return -1;
    }
    if (len > max) {
        buf_printf(err, "unreasonable packet length: %lu > %lu",
                   (unsigned long) len, (unsigned long) max);
        return -1;
    }
    if (n - MILTER_HDR_LEN < len)
        return 0;
    *cmd = b[MILTER_HDR_LEN];
    *data = (const char *) b + MILTER_HDR_LEN + 1;
    *dlen = len - 1;
    *used = MILTER_HDR_LEN + (size_t) len;
    return 1;
}

/* Reader over one packet's data. */
struct rd {
    const char *p;
    size_t n;
};

static int
rd_u32(struct rd *r, uint32_t *v)
{
    if (r->n < 4)
        return -1;
    *v = get32(r->p);
    r->p += 4;
    r->n -= 4;
    return 0;
}

static int
rd_str(struct rd *r, const char **s)
{
    const char *z = memchr(r->p, '\0', r->n);

    if (z == NULL)
        return -1;
    *s = r->p;
    r->n -= (size_t) (z - r->p) + 1;
    r->p = z + 1;
    return 0;
}

int
milter_dec_optneg(const char *data, size_t len, struct milter_optneg *o,
                  struct buf *err)
{
    struct rd r = {data, len};
    uint32_t type;
    const char *s;

    memset(o, 0, sizeof(*o));
    if (rd_u32(&r, &o->version) < 0 || rd_u32(&r, &o->actions) < 0
        || rd_u32(&r, &o->steps) < 0) {
        buf_printf(err, "SMFIC_OPTNEG reply too short (%zu bytes)", len);
        return -1;
    }
    while (r.n > 0) {
        if (rd_u32(&r, &type) < 0 || rd_str(&r, &s) < 0) {
            buf_puts(err, "malformed macro list in SMFIC_OPTNEG reply");
            return -1;
        }
        if (type < MILTER_SMFIM_N)
            o->symlist[type] = s;
        else
            o->unknown_symlists++;
    }
    return 0;
}

static int
dec_fail(struct buf *err, int cmd, const char *what)
{
    const char *n = milter_reply_name(cmd);

    if (n)
        buf_printf(err, "malformed %s reply: %s", n, what);
    else
        buf_printf(err, "malformed reply: %s", what);
    return -1;
}

int
milter_dec_reply(int cmd, const char *data, size_t len, struct milter_reply *rp,
                 struct buf *err)
{
    struct rd r = {data, len};

    memset(rp, 0, sizeof(*rp));
    rp->cmd = cmd;
    switch (cmd) {
    case MILTER_SMFIR_ACCEPT:
    case MILTER_SMFIR_CONTINUE:
    case MILTER_SMFIR_DISCARD:
    case MILTER_SMFIR_REJECT:
    case MILTER_SMFIR_TEMPFAIL:
    case MILTER_SMFIR_SKIP:
    case MILTER_SMFIR_PROGRESS:
    case MILTER_SMFIR_SHUTDOWN:
    case MILTER_SMFIR_CONN_FAIL:
        if (len != 0)
            return dec_fail(err, cmd, "unexpected data");
        return 0;
    case MILTER_SMFIR_REPLYCODE:
    case MILTER_SMFIR_QUARANTINE:
        if (rd_str(&r, &rp->name) < 0)
            return dec_fail(err, cmd, "missing NUL terminator");
        break;
    case MILTER_SMFIR_ADDHEADER:
        if (rd_str(&r, &rp->name) < 0 || rd_str(&r, &rp->value) < 0)
            return dec_fail(err, cmd, "short packet");
        break;
    case MILTER_SMFIR_INSHEADER:
    case MILTER_SMFIR_CHGHEADER:
        if (rd_u32(&r, &rp->index) < 0 || rd_str(&r, &rp->name) < 0
            || rd_str(&r, &rp->value) < 0)
            return dec_fail(err, cmd, "short packet");
        break;
    case MILTER_SMFIR_ADDRCPT:
    case MILTER_SMFIR_DELRCPT:
        if (rd_str(&r, &rp->name) < 0)
            return dec_fail(err, cmd, "missing NUL terminator");
        break;
    case MILTER_SMFIR_ADDRCPT_PAR:
    case MILTER_SMFIR_CHGFROM:
        if (rd_str(&r, &rp->name) < 0)
            return dec_fail(err, cmd, "missing NUL terminator");
        if (r.n > 0 && rd_str(&r, &rp->value) < 0)
            return dec_fail(err, cmd, "missing NUL terminator");
        break;
    case MILTER_SMFIR_REPLBODY:
        rp->data = data;
        rp->len = len;
        return 0;
    default:
        buf_printf(err, "unknown reply code 0x%02x", (unsigned) cmd & 0xff);
        return -1;
    }
    if (r.n != 0)
        return dec_fail(err, cmd, "left-over data");
    if (rp->name && rp->name[0] == '\0'
        && (cmd == MILTER_SMFIR_ADDHEADER || cmd == MILTER_SMFIR_INSHEADER
            || cmd == MILTER_SMFIR_CHGHEADER || cmd == MILTER_SMFIR_ADDRCPT
            || cmd == MILTER_SMFIR_ADDRCPT_PAR || cmd == MILTER_SMFIR_DELRCPT
            || cmd == MILTER_SMFIR_CHGFROM || cmd == MILTER_SMFIR_REPLYCODE))
        return dec_fail(err, cmd, "empty name or address");
    if (rp->value)
        rp->len = strlen(rp->value);
    return 0;
}

/* One line "ddd[ -]x.y.z text" or "ddd text". */
int
milter_parse_replycode(const char *s, int *code, char *dsn, size_t dsnsz,
                       struct buf *text, struct buf *err)
{
    const char *line = s, *eol, *p;
    int first = 1;

    *code = 0;
    dsn[0] = '\0';
    buf_reset(text);
    for (;;) {
        int c, last;
        size_t n, i;

        eol = strchr(line, '\n');
        n = eol ? (size_t) (eol - line) : strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n < 3 || (line[0] != '4' && line[0] != '5')
            || !isdigit((unsigned char) line[1])
            || !isdigit((unsigned char) line[2])
            || (n > 3 && line[3] != ' ' && line[3] != '-')) {
            buf_puts(err, "malformed reply code");
            return -1;
        }
        c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (!first && c != *code) {
            buf_puts(err, "mixed reply codes in a multi-line reply");
            return -1;
        }
        *code = c;
        last = n == 3 || line[3] == ' ';
        p = line + (n > 3 ? 4 : 3);
        /* enhanced status code x.y.z, class matching the reply code */
        if (p < line + n && isdigit((unsigned char) *p)) {
            const char *q = p;
            size_t dl;

            while (q < line + n && (isdigit((unsigned char) *q) || *q == '.'))
                q++;
            dl = (size_t) (q - p);
            if (*p != line[0] || dl < 5 || p[1] != '.' || dl >= dsnsz) {
                buf_puts(err, "malformed enhanced status code");
                return -1;
            }
            if (first) {
                memcpy(dsn, p, dl);
                dsn[dl] = '\0';
            }
            p = q;
            if (p < line + n && *p == ' ')
                p++;
        }
        if (!first)
            buf_putc(text, '\n');
        for (i = (size_t) (p - line); i < n; i++) {
            if (line[i] == '%' && i + 1 < n && line[i + 1] == '%')
                i++;
            else if (line[i] == '%')
                continue;
            if (buf_putc(text, line[i]) < 0) {
                buf_puts(err, "reply text too long");
                return -1;
            }
        }
        first = 0;
        if (eol == NULL || eol[1] == '\0')
            return 0; /* a last line "550-..." is taken as Postfix does */
        if (last) {
            buf_puts(err, "text after the last line of a reply");
            return -1;
        }
        line = eol + 1;
    }
}

const char *
milter_cmd_name(int cmd)
{
    switch (cmd) {
    case MILTER_SMFIC_ABORT:
        return "SMFIC_ABORT";
    case MILTER_SMFIC_BODY:
        return "SMFIC_BODY";
    case MILTER_SMFIC_CONNECT:
        return "SMFIC_CONNECT";
    case MILTER_SMFIC_MACRO:
        return "SMFIC_MACRO";
    case MILTER_SMFIC_BODYEOB:
        return "SMFIC_EOB";
    case MILTER_SMFIC_HELO:
        return "SMFIC_HELO";
    case MILTER_SMFIC_QUIT_NC:
        return "SMFIC_QUIT_NC";
    case MILTER_SMFIC_HEADER:
        return "SMFIC_HEADER";
    case MILTER_SMFIC_MAIL:
        return "SMFIC_MAIL";
    case MILTER_SMFIC_EOH:
        return "SMFIC_EOH";
    case MILTER_SMFIC_OPTNEG:
        return "SMFIC_OPTNEG";
    case MILTER_SMFIC_QUIT:
        return "SMFIC_QUIT";
    case MILTER_SMFIC_RCPT:
        return "SMFIC_RCPT";
    case MILTER_SMFIC_DATA:
        return "SMFIC_DATA";
    case MILTER_SMFIC_UNKNOWN:
        return "SMFIC_UNKNOWN";
    }
    return "?";
}

const char *
milter_reply_name(int cmd)
{
    switch (cmd) {
    case MILTER_SMFIR_ADDRCPT:
        return "SMFIR_ADDRCPT";
    case MILTER_SMFIR_DELRCPT:
        return "SMFIR_DELRCPT";
    case MILTER_SMFIR_ADDRCPT_PAR:
        return "SMFIR_ADDRCPT_PAR";
    case MILTER_SMFIR_SHUTDOWN:
        return "SMFIR_SHUTDOWN";
    case MILTER_SMFIR_ACCEPT:
        return "SMFIR_ACCEPT";
    case MILTER_SMFIR_REPLBODY:
        return "SMFIR_REPLBODY";
    case MILTER_SMFIR_CONTINUE:
        return "SMFIR_CONTINUE";
    case MILTER_SMFIR_DISCARD:
        return "SMFIR_DISCARD";
    case MILTER_SMFIR_CHGFROM:
        return "SMFIR_CHGFROM";
    case MILTER_SMFIR_CONN_FAIL:
        return "SMFIR_CONN_FAIL";
    case MILTER_SMFIR_ADDHEADER:
        return "SMFIR_ADDHEADER";
    case MILTER_SMFIR_INSHEADER:
        return "SMFIR_INSHEADER";
    case MILTER_SMFIR_SETSYMLIST:
        return "SMFIR_SETSYMLIST";
    case MILTER_SMFIR_CHGHEADER:
        return "SMFIR_CHGHEADER";
    case MILTER_SMFIR_PROGRESS:
        return "SMFIR_PROGRESS";
    case MILTER_SMFIR_QUARANTINE:
        return "SMFIR_QUARANTINE";
    case MILTER_SMFIR_REJECT:
        return "SMFIR_REJECT";
    case MILTER_SMFIR_SKIP:
        return "SMFIR_SKIP";
    case MILTER_SMFIR_TEMPFAIL:
        return "SMFIR_TEMPFAIL";
    case MILTER_SMFIR_REPLYCODE:
        return "SMFIR_REPLYCODE";
    }
    return NULL;
}
