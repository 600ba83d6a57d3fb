/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_spool.c - spool_parse() on arbitrary queue file images.
 * A parse that succeeds must describe content inside the input and a
 * well-formed envelope; everything is freed before returning.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "queue/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf *err = buf_new(128, 4096);
    struct spool_env env;
    off_t off = -1, len = -1;
    size_t i;

    if (spool_parse(data, size, &env, &off, &len, err) == 0) {
        if (off < 0 || len < 0 || (size_t) (off + len) > size || env.nrcpt == 0
            || env.sender == NULL || strlen(env.id) != SPOOL_ID_LEN
            || env.size != (long long) len)
            abort();
        for (i = 0; i < env.nrcpt; i++)
            if (env.rcpt[i].addr == NULL || env.rcpt[i].status_off < 0
                || (size_t) env.rcpt[i].status_off >= size
                || data[env.rcpt[i].status_off] != env.rcpt[i].status)
                abort();
        spool_env_free(&env);
    } else if (buf_len(err) == 0 || env.nrcpt != 0 || env.sender != NULL) {
        abort(); /* a failure always says why and leaves nothing behind */
    }
    buf_free(err);
    return 0;
}
