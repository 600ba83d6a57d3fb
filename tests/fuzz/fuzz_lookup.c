/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_lookup.c - lookup tables (inline:, texthash:, static:), network
 * lists (mynetworks) and domain lists (mydestination).
 * The first byte picks what the rest is; the text up to the first NUL is
 * the table or list, the lines after it are the keys (or client
 * addresses, or domains) looked up:
 *   0 inline table body ("inline:" is put in front)
 *   1 texthash file content (in a memfd, opened by its /proc path)
 *   2 static table value
  *   3 a mynetworks list and a domain list (entries split at white space
 *     and commas, as in main.cf; also as lookup_dlist, its "/file"
 *     entries left out)
 *   any byte with bits 7 and 6 set: cidr file content (memfd); an
 *     address key and the same address IPv4-mapped find the same thing
 *   any other byte with bit 7 set: regexp file content (memfd)

 * The inline table (0) also runs as virtual_alias_maps (addrmap.h) and
 * as alias_maps (dlv_alias.h, :include: files left out) on each key,
 * and the keys' text is read as a header for its Delivered-To: fields.
 * Besides "no crash, no leak", what the documentation promises is
 * checked: keys compare case-insensitively; an IPv4 client and the same
 * address IPv4-mapped in IPv6 match the same network entries; a domain
 * matches with or without a trailing dot and in any case, and a
 * lookup_dlist of plain entries agrees with lookup_domain_match; an
 * expansion gives at least one address, within its limits.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/addrmap.h"
#include "conf/lookup.h"
#include "lib/buf.h"
#include "queue/dlv_alias.h"

#define FUZZ_KEYS_MAX 64
#define FUZZ_KEY_MAX  512

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
upper(char *s)
{
    for (; *s; s++)
        *s = (char) toupper((unsigned char) *s);
}

/* The keys: the lines after the NUL, each NUL-free and bounded. */
static size_t
split_keys(const char *p, size_t n, char keys[][FUZZ_KEY_MAX])
{
    size_t k = 0;

    while (n > 0 && k < FUZZ_KEYS_MAX) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t) (nl - p) : n;
        size_t c = len < FUZZ_KEY_MAX - 1 ? len : FUZZ_KEY_MAX - 1;

        memcpy(keys[k], p, c);
        keys[k][c] = '\0';
        keys[k][strcspn(keys[k], "\r")] = '\0';
        k++;
        p += len + (nl != NULL);
        n -= len + (nl != NULL);
    }
    return k;
}

/* A main.cf-style list: NULL-terminated copies of its entries. */
static char **
split_list(const char *text)
{
    char *copy = strdup(text), *save = NULL, *tok;
    char **v = calloc(strlen(text) / 2 + 2, sizeof(char *));
    size_t n = 0;

    for (tok = strtok_r(copy, " \t\r\n,", &save); tok;
         tok = strtok_r(NULL, " \t\r\n,", &save))
        v[n++] = strdup(tok);
    v[n] = NULL;
    free(copy);
    return v;
}

static void
free_list(char **v)
{
    for (size_t i = 0; v[i]; i++)
        free(v[i]);
    free(v);
}

static void
check_table(const struct lookup_table *t, char keys[][FUZZ_KEY_MAX],
            size_t nkeys)
{
    struct buf *a = buf_new(64, 1024 * 1024), *b = buf_new(64, 1024 * 1024);
    char k2[FUZZ_KEY_MAX];

    for (size_t i = 0; i < nkeys; i++) {
        int ra = lookup_get(t, keys[i], a);

        memcpy(k2, keys[i], FUZZ_KEY_MAX);
        upper(k2);
        int rb = lookup_get(t, k2, b);

        if (ra != rb || (ra == 1 && strcmp(buf_data(a), buf_data(b)) != 0))
            abort(); /* keys compare case-insensitively */
        buf_reset(a);
        buf_reset(b);
    }
    buf_free(a);
    buf_free(b);
}

static void
check_nets(const char *text, char keys[][FUZZ_KEY_MAX], size_t nkeys)
{
    char **list = split_list(text);
    struct buf *err = buf_new(256, BUF_NOCAP);
    struct lookup_net *n = lookup_net_new(list, err);
    char d2[FUZZ_KEY_MAX + 1];

    char **plain = split_list(text);
    size_t np = 0;
    struct lookup_dlist *dl;
    int negated = 0;

    /* no "/file" entries: the input must not name the machine's files */
    for (size_t i = 0; plain[i]; i++) {
        if (strchr(plain[i], '/') != NULL) {
            free(plain[i]);
            continue;
        }
        negated |= plain[i][0] == '!' || strchr(plain[i], ':') != NULL;
        plain[np++] = plain[i];
    }
    plain[np] = NULL;
    dl = lookup_dlist_new(plain, err);
    for (size_t i = 0; i < nkeys; i++) {
        struct sockaddr_in s4 = {0};
        struct sockaddr_in6 s6 = {0};

        if (n != NULL && inet_pton(AF_INET, keys[i], &s4.sin_addr) == 1) {
            s4.sin_family = AF_INET;
            s6.sin6_family = AF_INET6;
            s6.sin6_addr.s6_addr[10] = 0xff;
            s6.sin6_addr.s6_addr[11] = 0xff;
            memcpy(&s6.sin6_addr.s6_addr[12], &s4.sin_addr, 4);
            if (lookup_net_match(n, (struct sockaddr *) &s4)
                != lookup_net_match(n, (struct sockaddr *) &s6))
                abort(); /* an IPv4-mapped client matches IPv4 entries */
        } else if (n != NULL
                   && inet_pton(AF_INET6, keys[i], &s6.sin6_addr) == 1) {
            s6.sin6_family = AF_INET6;
            (void) lookup_net_match(n, (struct sockaddr *) &s6);
        }
        if (keys[i][0] != '\0' && keys[i][strlen(keys[i]) - 1] != '.') {
            int r = lookup_domain_match(list, keys[i]);

            snprintf(d2, sizeof(d2), "%s.", keys[i]);
            if (lookup_domain_match(list, d2) != r)
                abort(); /* a trailing dot is ignored */
            upper(d2);
            if (lookup_domain_match(list, d2) != r)
                abort(); /* case-insensitive */
        }
        if (dl != NULL) {
            int r = lookup_dlist_match(dl, keys[i]);

            if (!negated && r != lookup_domain_match(plain, keys[i]))
                abort(); /* plain entries: as lookup_domain_match */
        }
    }
    lookup_dlist_free(dl);
    free_list(plain);
    lookup_net_free(n);
    buf_free(err);
    free_list(list);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char keys[FUZZ_KEYS_MAX][FUZZ_KEY_MAX];
    const char *text, *nul;
    size_t tlen, nkeys;
    struct buf *spec, *err;
    struct lookup_table *t = NULL;
    char *table;
    int mode, fd = -1;

    if (size < 1)
        return 0;
    mode = (data[0] & 0xc0) == 0xc0 ? 5 : data[0] & 0x80 ? 4 : data[0] % 4;
    text = (const char *) data + 1;
    size--;
    nul = memchr(text, '\0', size);
    tlen = nul ? (size_t) (nul - text) : size;
    nkeys = nul ? split_keys(nul + 1, size - tlen - 1, keys) : 0;
    table = strndup(text, tlen);
    spec = buf_new(256, BUF_NOCAP);
    err = buf_new(256, BUF_NOCAP);
    switch (mode) {
    case 0:
        buf_puts(spec, "inline:");
        buf_puts(spec, table);
        t = lookup_open(buf_data(spec), err);
        break;
    case 1:
        fd = memfd_create("fuzz_lookup", 0);
        if (fd < 0 || write(fd, text, tlen) != (ssize_t) tlen)
            break;
        buf_printf(spec, "texthash:/proc/self/fd/%d", fd);
        t = lookup_open(buf_data(spec), err);
        break;
    case 2:
        buf_puts(spec, "static:");
        buf_puts(spec, table);
        t = lookup_open(buf_data(spec), err);
        break;
    case 4: /* regexp: no case rule (the i flag toggles it) */
        fd = memfd_create("fuzz_lookup", 0);
        if (fd < 0 || write(fd, text, tlen) != (ssize_t) tlen)
            break;
        buf_printf(spec, "regexp:/proc/self/fd/%d", fd);
        t = lookup_open(buf_data(spec), err);
        for (size_t i = 0; t != NULL && i < nkeys; i++) {
            struct buf *o = buf_new(64, 4096);

            (void) lookup_get(t, keys[i], o);
            buf_free(o);
        }
        lookup_free(t);
        t = NULL;
        break;
    case 5: /* cidr: addresses; IPv4 and its IPv4-mapped form agree */
        fd = memfd_create("fuzz_lookup", 0);
        if (fd < 0 || write(fd, text, tlen) != (ssize_t) tlen)
            break;
        buf_printf(spec, "cidr:/proc/self/fd/%d", fd);
        t = lookup_open(buf_data(spec), err);
        for (size_t i = 0; t != NULL && i < nkeys; i++) {
            struct buf *o = buf_new(64, 4096), *o2 = buf_new(64, 4096);
            struct in_addr a4;
            char mapped[FUZZ_KEY_MAX + 8];
            int r1 = lookup_get(t, keys[i], o);

            if (inet_pton(AF_INET, keys[i], &a4) == 1) {
                snprintf(mapped, sizeof(mapped), "::ffff:%s", keys[i]);
                if (lookup_get(t, mapped, o2) != r1
                    || strcmp(buf_data(o), buf_data(o2)) != 0)
                    abort();
            }
            buf_free(o);
            buf_free(o2);
        }
        break;
    default:
        check_nets(table, keys, nkeys);
        break;
    }
    if (t != NULL)
        check_table(t, keys, nkeys);
    if (t != NULL && mode == 0) {
        char *specs[] = {buf_data(spec), NULL};
        struct addrmap_opts o = {
            "virtual_alias_maps", NULL, "origin.example", "+-", 1, 20, 50, 300};
        struct addrmap *m = addrmap_new(specs, &o, err);

        for (size_t i = 0; m != NULL && i < nkeys; i++) {
            char **v = NULL;
            size_t n = 0;

            buf_reset(err);
            if (addrmap_expand(m, keys[i], &v, &n, err) == 0) {
                if (n < 1 || n > 50 || v[n] != NULL)
                    abort();
                for (size_t k = 0; k < n; k++)
                    free(v[k]);
                free(v);
            } else if (v != NULL || buf_len(err) == 0) {
                abort();
            }
        }
        addrmap_free(m);
    }
    if (t != NULL && mode == 0 && strstr(table, ":include:") == NULL) {
        char *dl[] = {"localhost", ".example", NULL};
        struct lookup_dlist *mydest = lookup_dlist_new(dl, err);
        struct dlv_alias_opts o = {&t, 1, mydest, "localhost", "+",
                                   1,  1, 1,      1,           1};
        char **deliv;
        size_t nd = dlv_alias_delivered(nul ? nul + 1 : "",
                                        nul ? size - tlen - 1 : 0, &deliv);

        for (size_t i = 0; mydest && i < nkeys; i++) {
            struct dlv_alias_target *v;
            size_t n;
            char dsn[16];

            buf_reset(err);
            if (dlv_alias_expand(&o, keys[i], deliv, nd, &v, &n, dsn, err)
                == DLV_ALIAS_OK) {
                if (n < 1 || n > DLV_ALIAS_TARGETS)
                    abort();
                dlv_alias_free(v, n);
            } else if (v != NULL || (dsn[0] != '4' && dsn[0] != '5')) {
                abort();
            }
        }
        for (size_t i = 0; i < nd; i++)
            free(deliv[i]);
        free(deliv);
        lookup_dlist_free(mydest);
    }

    lookup_free(t);
    if (fd >= 0)
        close(fd);
    buf_free(spec);
    buf_free(err);
    free(table);
    return 0;
}
