/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_spool.c - spool_parse() on arbitrary queue file images.
 * A parse that succeeds must describe content inside the input and a
 * well-formed envelope; everything is freed before returning.
 * Mutated envelopes nearly always fail the end record's checksum, which
 * would keep the fuzzer in front of it: an input that fails for that
 * reason is parsed a second time with the checksum fixed up (computed as
 * spool.c does, written into the first end record), so the envelope
 * checks up to and after the end record get fuzzed too. The checksum's
 * own rejections are test_spool's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "queue/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t
get32(const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}

static uint32_t
fnv(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Write the FNV-1a checksum of the envelope records before it (status
 * bytes of 'R' records counted as 0) into the first 'E' record of length
 * 4; the layout as spool.c's header comment gives it. 0 when done. */
static int
fix_sum(uint8_t *p, size_t len)
{
    static const uint8_t zero = 0;
    size_t crec = 12, env, pos;
    uint32_t h = 2166136261u, rlen;

    if (len < crec + 5)
        return -1;
    if (p[crec] == 'G')
        crec += 5 + (size_t) get32(p + crec + 1);
    if (crec > len || len - crec < 5 || p[crec] != 'C'
        || get32(p + crec + 1) > len - crec - 5)
        return -1;
    env = crec + 5 + get32(p + crec + 1);
    for (pos = env; len - pos >= 5; pos += 5 + rlen) {
        rlen = get32(p + pos + 1);
        if (rlen > len - pos - 5)
            return -1;
        if (p[pos] == 'E' && rlen == 4) {
            p[pos + 5] = (uint8_t) (h >> 24);
            p[pos + 6] = (uint8_t) (h >> 16);
            p[pos + 7] = (uint8_t) (h >> 8);
            p[pos + 8] = (uint8_t) h;
            return 0;
        }
        h = fnv(h, p + pos, 5);
        if (p[pos] == 'R' && rlen > 0) {
            h = fnv(h, &zero, 1);
            h = fnv(h, p + pos + 6, rlen - 1);
        } else {
            h = fnv(h, p + pos + 5, rlen);
        }
    }
    return -1;
}

/* 1: parsed (and checked), 0: failed for a checksum, -1: other failure */
static int
parse_check(const uint8_t *data, size_t size)
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
        buf_free(err);
        return 1;
    }
    if (buf_len(err) == 0 || env.nrcpt != 0 || env.sender != NULL)
        abort(); /* a failure always says why and leaves nothing behind */
    i = strstr(buf_data(err), "checksum mismatch") != NULL;
    buf_free(err);
    return i ? 0 : -1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy;

    if (parse_check(data, size) != 0 || (copy = malloc(size)) == NULL)
        return 0;
    memcpy(copy, data, size);
    if (fix_sum(copy, size) == 0 && parse_check(copy, size) == 0)
        abort(); /* our checksum and spool.c's disagree */
    free(copy);
    return 0;
}
