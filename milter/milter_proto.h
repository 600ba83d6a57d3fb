/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * milter_proto.h - the milter wire codec (Sendmail 8 milter protocol,
 * versions 2 to 6), MTA side.
 *
 * A packet is <4-byte length, network order><1-byte command><data>; the
 * length counts the command byte and the data. Encoders append one whole
 * packet to a struct buf (0, or -1 when the buf's cap is reached: the buf
 * is then left as it was). Decoders read a packet's data and check it
 * completely: strings must be NUL-terminated inside the packet, no bytes
 * may be left over, and a packet longer than MILTER_PKT_MAX is an error.
 * Decoded replies point into the packet data (borrowed, not copied).
 *
 * Owns: nothing. Threads: pure functions, any thread.
 */
#ifndef SLUICE_MILTER_PROTO_H
#define SLUICE_MILTER_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define MILTER_CHUNK_SIZE 65535                /* body chunk, both ways */
#define MILTER_PKT_MAX    (1024 * 1024 + 1024) /* reply packet length */
#define MILTER_HDR_LEN    4
#define MILTER_VERSION    6 /* highest protocol version we speak */

/* commands (MTA -> milter) */
#define MILTER_SMFIC_ABORT   'A'
#define MILTER_SMFIC_BODY    'B'
#define MILTER_SMFIC_CONNECT 'C'
#define MILTER_SMFIC_MACRO   'D'
#define MILTER_SMFIC_BODYEOB 'E'
#define MILTER_SMFIC_HELO    'H'
#define MILTER_SMFIC_QUIT_NC 'K'
#define MILTER_SMFIC_HEADER  'L'
#define MILTER_SMFIC_MAIL    'M'
#define MILTER_SMFIC_EOH     'N'
#define MILTER_SMFIC_OPTNEG  'O'
#define MILTER_SMFIC_QUIT    'Q'
#define MILTER_SMFIC_RCPT    'R'
#define MILTER_SMFIC_DATA    'T'
#define MILTER_SMFIC_UNKNOWN 'U'

/* replies (milter -> MTA) */
#define MILTER_SMFIR_ADDRCPT     '+'
#define MILTER_SMFIR_DELRCPT     '-'
#define MILTER_SMFIR_ADDRCPT_PAR '2'
#define MILTER_SMFIR_SHUTDOWN    '4'
#define MILTER_SMFIR_ACCEPT      'a'
#define MILTER_SMFIR_REPLBODY    'b'
#define MILTER_SMFIR_CONTINUE    'c'
#define MILTER_SMFIR_DISCARD     'd'
#define MILTER_SMFIR_CHGFROM     'e'
#define MILTER_SMFIR_CONN_FAIL   'f'
#define MILTER_SMFIR_ADDHEADER   'h'
#define MILTER_SMFIR_INSHEADER   'i'
#define MILTER_SMFIR_SETSYMLIST  'l'
#define MILTER_SMFIR_CHGHEADER   'm'
#define MILTER_SMFIR_PROGRESS    'p'
#define MILTER_SMFIR_QUARANTINE  'q'
#define MILTER_SMFIR_REJECT      'r'
#define MILTER_SMFIR_SKIP        's'
#define MILTER_SMFIR_TEMPFAIL    't'
#define MILTER_SMFIR_REPLYCODE   'y'

/* actions the milter may take (SMFIF_*) */
#define MILTER_SMFIF_ADDHDRS     0x001u
#define MILTER_SMFIF_CHGBODY     0x002u
#define MILTER_SMFIF_ADDRCPT     0x004u
#define MILTER_SMFIF_DELRCPT     0x008u
#define MILTER_SMFIF_CHGHDRS     0x010u
#define MILTER_SMFIF_QUARANTINE  0x020u
#define MILTER_SMFIF_CHGFROM     0x040u
#define MILTER_SMFIF_ADDRCPT_PAR 0x080u
#define MILTER_SMFIF_SETSYMLIST  0x100u
#define MILTER_SMFIF_ALL         0x1ffu

/* protocol steps (SMFIP_*) */
#define MILTER_SMFIP_NOCONNECT   0x00000001u
#define MILTER_SMFIP_NOHELO      0x00000002u
#define MILTER_SMFIP_NOMAIL      0x00000004u
#define MILTER_SMFIP_NORCPT      0x00000008u
#define MILTER_SMFIP_NOBODY      0x00000010u
#define MILTER_SMFIP_NOHDRS      0x00000020u
#define MILTER_SMFIP_NOEOH       0x00000040u
#define MILTER_SMFIP_NR_HDR      0x00000080u
#define MILTER_SMFIP_NOUNKNOWN   0x00000100u
#define MILTER_SMFIP_NODATA      0x00000200u
#define MILTER_SMFIP_SKIP        0x00000400u
#define MILTER_SMFIP_RCPT_REJ    0x00000800u
#define MILTER_SMFIP_NR_CONN     0x00001000u
#define MILTER_SMFIP_NR_HELO     0x00002000u
#define MILTER_SMFIP_NR_MAIL     0x00004000u
#define MILTER_SMFIP_NR_RCPT     0x00008000u
#define MILTER_SMFIP_NR_DATA     0x00010000u
#define MILTER_SMFIP_NR_UNKN     0x00020000u
#define MILTER_SMFIP_NR_EOH      0x00040000u
#define MILTER_SMFIP_NR_BODY     0x00080000u
#define MILTER_SMFIP_HDR_LEADSPC 0x00100000u

/* address families of SMFIC_CONNECT */
#define MILTER_SMFIA_UNKNOWN 'U'
#define MILTER_SMFIA_UNIX    'L'
#define MILTER_SMFIA_INET    '4'
#define MILTER_SMFIA_INET6   '6'

/* macro list types of SMFIR_SETSYMLIST (SMFIM_*) */
enum milter_macro_type {
    MILTER_SMFIM_CONNECT,
    MILTER_SMFIM_HELO,
    MILTER_SMFIM_ENVFROM,
    MILTER_SMFIM_ENVRCPT,
    MILTER_SMFIM_DATA,
    MILTER_SMFIM_EOM,
    MILTER_SMFIM_EOH
};
#define MILTER_SMFIM_N (MILTER_SMFIM_EOH + 1)

/* The protocol steps we offer for a protocol version (2..6). */
uint32_t milter_proto_steps(int version);

/* Encoders: append one packet to out; 0 or -1 (over the buf's cap). */
int milter_enc_simple(struct buf *out, int cmd); /* no data: ABORT, EOH,
                                                    BODYEOB, QUIT, DATA */
int milter_enc_optneg(struct buf *out, uint32_t version, uint32_t actions,
                      uint32_t steps);
/* nv: name, value, name, value, ..., NULL */
int milter_enc_macro(struct buf *out, int for_cmd, const char *const *nv);
/* family 'U': host only; else port (host order) and address too */
int milter_enc_connect(struct buf *out, const char *host, int family, int port,
                       const char *addr);
int milter_enc_helo(struct buf *out, const char *helo);
/* MAIL or RCPT: first ("<addr>") then the ESMTP args (NULL-terminated,
 * argv may be NULL) */
int milter_enc_envelope(struct buf *out, int cmd, const char *first,
                        const char *const *argv);
int milter_enc_header(struct buf *out, const char *name, const char *value);
int milter_enc_body(struct buf *out, const void *p, size_t n); /* n <= CHUNK */
int milter_enc_unknown(struct buf *out, const char *line);

/* Framing: look at the bytes p[0..n). Returns 1 with one packet's command,
 * data and total size (*used), 0 when more bytes are needed, -1 on a bad
 * length (0, or above max) with the reason in err. */
int milter_dec_frame(const void *p, size_t n, size_t max, int *cmd,
                     const char **data, size_t *dlen, size_t *used,
                     struct buf *err);

/* SMFIC_OPTNEG reply. Macro lists (SETSYMLIST) point into the data;
 * NULL where the milter did not set one. */
struct milter_optneg {
    uint32_t version;
    uint32_t actions;
    uint32_t steps;
    const char *symlist[MILTER_SMFIM_N];
    int unknown_symlists; /* macro lists of unknown type (ignored) */
};
int milter_dec_optneg(const char *data, size_t len, struct milter_optneg *o,
                      struct buf *err);

/* One reply other than OPTNEG, decoded and checked. */
struct milter_reply {
    int cmd;           /* MILTER_SMFIR_* */
    uint32_t index;    /* INSHEADER, CHGHEADER */
    const char *name;  /* header name; address (ADDRCPT*, DELRCPT,
                          CHGFROM); quarantine reason; REPLYCODE text */
    const char *value; /* header value; ESMTP args (NULL when none) */
    const char *data;  /* REPLBODY bytes */
    size_t len;        /* REPLBODY length; strlen of value for headers */
};
int milter_dec_reply(int cmd, const char *data, size_t len,
                     struct milter_reply *r, struct buf *err);

/* A REPLYCODE text "550 5.7.1 text" or multi-line "550-5.7.1 a\r\n550
 * 5.7.1 b" into code, dsn ("" when none; dsnsz >= 16) and text (lines
 * joined with "\n", without code and dsn; "%%" becomes "%"). 0, or -1
 * with the reason in err (not 4xx/5xx, mixed codes, bad dsn class). */
int milter_parse_replycode(const char *s, int *code, char *dsn, size_t dsnsz,
                           struct buf *text, struct buf *err);

const char *milter_cmd_name(int cmd);   /* "SMFIC_EOB" ... or "?" */
const char *milter_reply_name(int cmd); /* "SMFIR_ACCEPT" ... or NULL */

#endif
