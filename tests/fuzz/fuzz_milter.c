/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_milter.c - milter reply packets and negotiation data: the input is
 * a stream of packets as a milter would send them; each framed packet is
 * decoded as an OPTNEG reply (first) or a reply, and REPLYCODE text is
 * parsed. Nothing may crash or leak.
 */
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "milter/milter_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf *err = buf_new(128, 4096), *text = buf_new(128, 8192);
    size_t off = 0;
    int first = 1;

    while (off < size) {
        const char *d;
        size_t dlen, used;
        int cmd, rc;

        buf_reset(err);
        rc = milter_dec_frame(data + off, size - off, MILTER_PKT_MAX, &cmd, &d,
                              &dlen, &used, err);
        if (rc <= 0)
            break;
        off += used;
        if (first) {
            struct milter_optneg o;

            first = 0;
            (void) milter_dec_optneg(d, dlen, &o, err);
        } else {
            struct milter_reply r;

            if (milter_dec_reply(cmd, d, dlen, &r, err) == 0
                && cmd == MILTER_SMFIR_REPLYCODE) {
                char dsn[16];
                int code;

                (void) milter_parse_replycode(r.name, &code, dsn, sizeof(dsn),
                                              text, err);
            }
        }
    }
    buf_free(text);
    buf_free(err);
    return 0;
}
