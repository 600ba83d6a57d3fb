/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_dns.c - lib/dns's rdata parsers: dns_name_text, dns_mx_parse and
 * dns_valid_name.
 * The input is one message: dns_name_text reads the name that starts at
 * the offset given by its first byte (modulo its length), dns_mx_parse
 * reads all of it as MX rdata, and dns_valid_name reads it as text (up
 * to the first NUL).
 * Besides "no crash, no read past the bytes", what dns.h promises is
 * checked: a name comes out NUL-terminated, shorter than DNS_NAME_MAX,
 * in lower case, and is either the root ("", one zero byte) or a name
 * dns_valid_name takes; it is the input's bytes and no others (written
 * back in wire format it gives them again, case aside); the bytes it
 * took are enough and all needed. An MX's preference is its first two
 * bytes and its host the rest, whole. A name dns_valid_name takes, put
 * in wire format, parses back to itself in lower case.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Dotted text (no final dot, at least one label) into wire format; its
 * length, or 0 when it does not fit in cap. */
static size_t
fuzz_wire(const char *text, unsigned char *w, size_t cap)
{
    size_t o = 0;

    for (;;) {
        size_t n = strcspn(text, ".");

        if (n > 63 || o + 1 + n + 1 > cap)
            return 0;
        w[o++] = (unsigned char) n;
        memcpy(w + o, text, n);
        o += n;
        if (text[n] == '\0')
            break;
        text += n + 1;
    }
    w[o++] = 0;
    return o;
}

/* out: what dns_name_text made of the used bytes at p. */
static void
fuzz_check_name(const unsigned char *p, size_t len, int used, const char *out)
{
    unsigned char w[DNS_NAME_MAX + 2];
    size_t olen, wlen;
    char again[DNS_NAME_MAX];

    if (used < 1 || (size_t) used > len)
        abort();
    olen = strnlen(out, DNS_NAME_MAX);
    if (olen >= DNS_NAME_MAX)
        abort(); /* not NUL-terminated within its array */
    if (olen == 0) {
        if (used != 1 || p[0] != 0)
            abort(); /* "" is the root and only the root */
        return;
    }
    if (!dns_valid_name(out))
        abort();
    for (size_t i = 0; i < olen; i++)
        if (out[i] >= 'A' && out[i] <= 'Z')
            abort();
    /* the text is the input, case aside */
    wlen = fuzz_wire(out, w, sizeof(w));
    if (wlen != (size_t) used)
        abort();
    for (size_t i = 0; i < wlen; i++)
        if (tolower(w[i]) != tolower(p[i]))
            abort();
    /* the bytes taken are enough, and all of them are needed */
    if (dns_name_text(p, (size_t) used, again) != used
        || strcmp(again, out) != 0)
        abort();
    if (dns_name_text(p, (size_t) used - 1, again) != -1)
        abort();
}

/* The input up to its first NUL, as text. */
static void
fuzz_text(const uint8_t *data, size_t size)
{
    char *text = strndup((const char *) data, size);
    unsigned char w[DNS_NAME_MAX + 2];
    char out[DNS_NAME_MAX];
    size_t len = strlen(text), wlen;

    if (dns_valid_name(text)) {
        if (len > 0 && text[len - 1] == '.')
            text[--len] = '\0';
        if (len == 0 || len >= DNS_NAME_MAX)
            abort(); /* 1..253 characters */
        wlen = fuzz_wire(text, w, sizeof(w));
        if (wlen != len + 2)
            abort();
        if (dns_name_text(w, wlen, out) != (int) wlen)
            abort(); /* a valid name parses... */
        for (size_t i = 0; i < len; i++)
            if (out[i] != tolower((unsigned char) text[i]))
                abort(); /* ...back to itself */
        if (out[len] != '\0')
            abort();
    }
    free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy;
    char out[DNS_NAME_MAX];
    size_t off;
    unsigned pref;
    int r;

    if (size == 0)
        return 0;
    /* exactly size bytes, so ASan sees a read past them (the replay
     * driver's buffer is larger than its input) */
    copy = malloc(size);
    memcpy(copy, data, size);

    off = data[0] % size;
    memset(out, 0xa5, sizeof(out));
    r = dns_name_text(copy + off, size - off, out);
    if (r >= 0)
        fuzz_check_name(copy + off, size - off, r, out);
    else if (r != -1)
        abort();

    memset(out, 0xa5, sizeof(out));
    pref = 0xdeadbeef;
    r = dns_mx_parse(copy, size, &pref, out);
    if (r == 0) {
        if (size < 3 || pref != ((unsigned) data[0] << 8 | data[1]))
            abort();
        fuzz_check_name(copy + 2, size - 2, (int) (size - 2), out);
    } else if (r != -1) {
        abort();
    } else if (size >= 3) {
        /* refused: the name is bad or does not end where the rdata
         * does */
        char t[DNS_NAME_MAX];
        int u = dns_name_text(copy + 2, size - 2, t);

        if (u >= 0 && (size_t) u == size - 2)
            abort();
    }

    fuzz_text(data, size);
    free(copy);
    return 0;
}
