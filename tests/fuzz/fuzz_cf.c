/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_cf.c - main.cf and master.cf parsers.
 * The input up to the first NUL is main.cf text: parsed into a fresh cf,
 * checked and shown. The bytes after the NUL (or the whole input when
 * there is none) are master.cf text, parsed against that cf (or against
 * the defaults when main.cf was refused).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "conf/cf.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    const char *nul = memchr(text, '\0', size);
    size_t mlen = nul ? (size_t) (nul - text) : size;
    const char *mtext = nul ? nul + 1 : text;
    size_t mtlen = nul ? size - mlen - 1 : size;
    struct buf *err = buf_new(256, BUF_NOCAP);
    struct buf *out = buf_new(4096, 1024 * 1024);
    struct cf *cf = cf_new();
    struct cf_service *svcs = NULL;
    size_t n = 0;

    if (cf_parse_main(cf, text, mlen, "main.cf", err) == 0
        && cf_check(cf, err) == 0) {
        cf_show(cf, CF_SHOW_ALL, NULL, out, err);
        buf_reset(out);
        cf_show(cf, CF_SHOW_SET, NULL, out, err);
        buf_reset(out);
        cf_expand(cf, "$myhostname ${mydomain?x} $(mail_name)", out, err);
    } else { /* master.cf is still parsed, against the defaults */
        cf_free(cf);
        cf = cf_new();
    }
    if (cf_parse_master(cf, mtext, mtlen, "master.cf", &svcs, &n, err) == 0)
        cf_services_free(svcs, n);
    cf_free(cf);
    buf_free(out);
    buf_free(err);
    return 0;
}
