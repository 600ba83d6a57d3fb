/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_dns.c - the pure parts of lib/dns (host name syntax, wire-format
 * names, MX rdata, type names) and of queue/dlv_resolve (loop detection
 * against our own addresses, the preference sort).
 * Wire-format names are written out byte by byte here, so a test says
 * exactly what the resolver would hand over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "lib/dns.h"
#include "queue/dlv_resolve.h"

/* ------------------------------------------------------------------ */
/* helpers */

/* nlabels labels of 63 'a', then one of last bytes ('b'), joined by
 * dots, into out (big enough); its length. */
static size_t
long_name(char *out, int nlabels, size_t last)
{
    size_t o = 0;

    for (int i = 0; i < nlabels; i++) {
        memset(out + o, 'a', 63);
        o += 63;
        out[o++] = '.';
    }
    memset(out + o, 'b', last);
    o += last;
    out[o] = '\0';
    return o;
}

/* The same name in wire format (length bytes, then a zero byte). */
static size_t
long_wire(unsigned char *out, int nlabels, size_t last)
{
    size_t o = 0;

    for (int i = 0; i < nlabels; i++) {
        out[o++] = 63;
        memset(out + o, 'a', 63);
        o += 63;
    }
    out[o++] = (unsigned char) last;
    memset(out + o, 'b', last);
    o += last;
    out[o++] = 0;
    return o;
}

/* dns_name_text over exactly n bytes in a buffer of its own (so ASan
 * sees any read past them), the output pre-filled with junk. */
static int
name_text(const void *p, size_t n, char out[DNS_NAME_MAX])
{
    unsigned char *copy = calloc(1, n ? n : 1);
    int r;

    memcpy(copy, p, n);
    memset(out, 'X', DNS_NAME_MAX);
    r = dns_name_text(copy, n, out);
    free(copy);
    return r;
}

static int
mx_parse(const void *p, size_t n, unsigned *pref, char host[DNS_NAME_MAX])
{
    unsigned char *copy = calloc(1, n ? n : 1);
    int r;

    memcpy(copy, p, n);
    memset(host, 'X', DNS_NAME_MAX);
    r = dns_mx_parse(copy, n, pref, host);
    free(copy);
    return r;
}

/* "n" literal bytes: sizeof counts the string's own NUL, which is not
 * part of the wire data. */
#define W(s) (s), (sizeof(s) - 1)

/* ------------------------------------------------------------------ */
/* dns_valid_name */

static void
test_valid_good(void **state)
{
    assert_true(dns_valid_name("example.com"));
    assert_true(dns_valid_name("mx1.mail.example.com"));
    assert_true(dns_valid_name("localhost"));
    assert_true(dns_valid_name("a"));
    assert_true(dns_valid_name("a-b.c-d"));
    assert_true(dns_valid_name("xn--bcher-kva.example"));
    assert_true(dns_valid_name("_dmarc.example.com"));
    assert_true(dns_valid_name("EXAMPLE.Com"));
    assert_true(dns_valid_name("192.0.2.1")); /* digits are letters here */
    /* a final dot, once */
    assert_true(dns_valid_name("example.com."));
    assert_true(dns_valid_name("a."));
    assert_false(dns_valid_name("example.com.."));
}

static void
test_valid_empty(void **state)
{
    assert_false(dns_valid_name(""));
    assert_false(dns_valid_name("."));
    assert_false(dns_valid_name(".."));
    assert_false(dns_valid_name("a..b"));
    assert_false(dns_valid_name(".example.com"));
    assert_false(dns_valid_name("example..com."));
}

static void
test_valid_label_len(void **state)
{
    char name[400];

    long_name(name, 0, 63);
    assert_int_equal(strlen(name), 63);
    assert_true(dns_valid_name(name));
    long_name(name, 0, 64);
    assert_false(dns_valid_name(name));
    /* a long label in the middle */
    memcpy(name, "x.", 2);
    long_name(name + 2, 0, 63);
    strcat(name, ".y");
    assert_int_equal(strlen(name), 67);
    assert_true(dns_valid_name(name));
    long_name(name + 2, 0, 64);
    strcat(name, ".y");
    assert_false(dns_valid_name(name));
}

static void
test_valid_total_len(void **state)
{
    char name[400];
    size_t n;

    n = long_name(name, 3, 61); /* 3 * 64 + 61 */
    assert_int_equal(n, 253);
    assert_true(dns_valid_name(name));
    strcat(name, "."); /* the final dot does not count */
    assert_true(dns_valid_name(name));
    n = long_name(name, 3, 62);
    assert_int_equal(n, 254);
    assert_false(dns_valid_name(name));
    strcat(name, ".");
    assert_false(dns_valid_name(name));
}

static void
test_valid_bad_chars(void **state)
{
    assert_false(dns_valid_name("exa mple.com"));
    assert_false(dns_valid_name(" example.com"));
    assert_false(dns_valid_name("example.com "));
    assert_false(dns_valid_name("user@example.com"));
    assert_false(dns_valid_name("*.example.com"));
    assert_false(dns_valid_name("a/b.example"));
    assert_false(dns_valid_name("a\\.b.example"));
    assert_false(dns_valid_name("a:b"));
    assert_false(dns_valid_name("[192.0.2.1]"));
    assert_false(dns_valid_name("a\tb"));
    assert_false(dns_valid_name("a\rb"));
    assert_false(dns_valid_name("a\nb"));
    assert_false(dns_valid_name("a\x7f"
                                "b"));
    assert_false(dns_valid_name("b\xc3\xbc"
                                "cher.example")); /* UTF-8 */
    assert_false(dns_valid_name("b\xfc"
                                "cher.example")); /* Latin-1 */
    assert_false(dns_valid_name("\xff"));
}

/* ------------------------------------------------------------------ */
/* dns_name_text */

static void
test_name_plain(void **state)
{
    char out[DNS_NAME_MAX];

    assert_int_equal(name_text(W("\3www\7example\3com\0"), out), 17);
    assert_string_equal(out, "www.example.com");
    assert_int_equal(name_text(W("\1a\0"), out), 3);
    assert_string_equal(out, "a");
    /* lower case out; '-' and '_' kept */
    assert_int_equal(name_text(W("\4MaIl\5Ex-_A\0"), out), 12);
    assert_string_equal(out, "mail.ex-_a");
    /* bytes after the name are not taken */
    assert_int_equal(name_text(W("\4mail\3org\0\xff\xff\x07"), out), 10);
    assert_string_equal(out, "mail.org");
}

static void
test_name_root(void **state)
{
    char out[DNS_NAME_MAX];

    assert_int_equal(name_text(W("\0"), out), 1);
    assert_string_equal(out, "");
    assert_int_equal(name_text(W("\0\3com\0"), out), 1);
    assert_string_equal(out, "");
}

static void
test_name_truncated(void **state)
{
    char out[DNS_NAME_MAX];

    assert_int_equal(name_text(W(""), out), -1);
    /* no final zero byte */
    assert_int_equal(name_text(W("\3www\7example\3com"), out), -1);
    assert_int_equal(name_text(W("\3www"), out), -1);
    /* a label running past the end */
    assert_int_equal(name_text(W("\7exa"), out), -1);
    assert_int_equal(name_text(W("\3www\7example"), out), -1);
    assert_int_equal(name_text(W("\3www\x3f"), out), -1);
    /* every prefix of a good name, read in place: len is the limit
     * even when the bytes after it would complete the name */
    {
        static const unsigned char full[] = "\3www\7example\3com\0";
        const size_t len = sizeof(full) - 1;

        for (size_t n = 0; n < len; n++)
            assert_int_equal(dns_name_text(full, n, out), -1);
        assert_int_equal(dns_name_text(full, len, out), (int) len);
    }
    /* the same bytes, whole, are fine: the lengths are what failed */
    assert_int_equal(name_text(W("\3www\7example\0"), out), 13);
    assert_string_equal(out, "www.example");
}

/* Compression pointers: dns.h says names are uncompressed (libunbound
 * hands over decompressed rdata) and dns_name_text sees no message to
 * point into, so every pointer is refused, whatever it points at. */
static void
test_name_pointer(void **state)
{
    /* "example.com" at 0, "www" + pointer to 0 at 13 */
    static const unsigned char msg[] = "\7example\3com\0\3www\xc0\x00";
    const size_t msglen = sizeof(msg) - 1;
    char out[DNS_NAME_MAX];

    assert_int_equal(msglen, 19);
    /* the target alone parses */
    assert_int_equal(name_text(msg, msglen, out), 13);
    assert_string_equal(out, "example.com");
    /* a pointer to an earlier offset */
    assert_int_equal(name_text(msg + 13, msglen - 13, out), -1);
    /* a name that is only a pointer */
    assert_int_equal(name_text(msg + 17, msglen - 17, out), -1);
    /* a pointer to itself (a loop) ends, and fails */
    assert_int_equal(name_text(W("\xc0\x00"), out), -1);
    assert_int_equal(name_text(W("\1a\xc0\x00"), out), -1);
    /* a pointer past the end, and one cut in half */
    assert_int_equal(name_text(W("\xc0\xff"), out), -1);
    assert_int_equal(name_text(W("\3www\xc0"), out), -1);
    /* the other reserved label types (0x40, 0x80) */
    assert_int_equal(name_text(W("\x41"
                                 "a\0"),
                               out),
                     -1);
    assert_int_equal(name_text(W("\x81"
                                 "a\0"),
                               out),
                     -1);
}

static void
test_name_label_len(void **state)
{
    unsigned char wire[300];
    char out[DNS_NAME_MAX];
    size_t n;

    n = long_wire(wire, 0, 63);
    assert_int_equal(name_text(wire, n, out), (int) n);
    assert_int_equal(strlen(out), 63);
    assert_true(dns_valid_name(out));
    /* 64: the length byte 0x40 is a reserved label type */
    n = long_wire(wire, 0, 64);
    assert_int_equal(name_text(wire, n, out), -1);
}

static void
test_name_total_len(void **state)
{
    unsigned char wire[300];
    char out[DNS_NAME_MAX], text[400];
    size_t n;

    /* 253 characters of text, 255 bytes on the wire: the most DNS has */
    n = long_wire(wire, 3, 61);
    assert_int_equal(n, 255);
    assert_int_equal(name_text(wire, n, out), 255);
    long_name(text, 3, 61);
    assert_string_equal(out, text);
    assert_int_equal(strlen(out), DNS_NAME_MAX - 1);
    /* 254 characters */
    n = long_wire(wire, 3, 62);
    assert_int_equal(name_text(wire, n, out), -1);
    /* far longer, all labels fine */
    n = 0;
    for (int i = 0; i < 4; i++) {
        wire[n++] = 63;
        memset(wire + n, 'c', 63);
        n += 63;
    }
    wire[n++] = 0;
    assert_int_equal(name_text(wire, n, out), -1);
}

/* Bytes that must never reach a dotted name or a log line: a dot inside
 * a label would change the name's structure, control bytes could forge
 * log lines. All of them are refused. */
static void
test_name_bad_bytes(void **state)
{
    char out[DNS_NAME_MAX];

    assert_int_equal(name_text(W("\3a.b\3com\0"), out), -1);
    assert_int_equal(name_text(W("\1.\0"), out), -1);
    assert_int_equal(name_text(W("\3a\nb\0"), out), -1);
    assert_int_equal(name_text(W("\3a\rb\0"), out), -1);
    assert_int_equal(name_text(W("\3a\0b\0"), out), -1);
    assert_int_equal(name_text(W("\3a\x7f"
                                 "b\0"),
                               out),
                     -1);
    assert_int_equal(name_text(W("\3a b\0"), out), -1);
    assert_int_equal(name_text(W("\3a@b\0"), out), -1);
    assert_int_equal(name_text(W("\3a/b\0"), out), -1);
    assert_int_equal(name_text(W("\1*\7example\0"), out), -1);
    assert_int_equal(name_text(W("\4b\xfc"
                                 "ch\0"),
                               out),
                     -1);
    assert_int_equal(name_text(W("\5b\xc3\xbc"
                                 "ch\0"),
                               out),
                     -1);
    /* a bad byte in a later label, after good ones */
    assert_int_equal(name_text(W("\4mail\7exa%ple\0"), out), -1);
}

/* Every name dns_name_text gives is one dns_valid_name takes. */
static void
test_name_output_valid(void **state)
{
    static const struct {
        const char *wire;
        size_t len;
    } ok[] = {
        {W("\3www\7example\3com\0")},
        {W("\1A\0")},
        {W("\6_dmarc\3EXA\0")},
        {W("\3x-y\0")},
    };
    char out[DNS_NAME_MAX];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int r = name_text(ok[i].wire, ok[i].len, out);

        assert_int_equal(r, (int) ok[i].len);
        assert_in_range(strlen(out), 1, DNS_NAME_MAX - 1);
        assert_true(dns_valid_name(out));
        for (const char *c = out; *c; c++)
            assert_false(*c >= 'A' && *c <= 'Z');
    }
}

/* ------------------------------------------------------------------ */
/* dns_mx_parse */

static void
test_mx_plain(void **state)
{
    char host[DNS_NAME_MAX];
    unsigned pref = 12345;

    assert_int_equal(mx_parse(W("\0\x0a\4mail\7example\3com\0"), &pref, host),
                     0);
    assert_int_equal(pref, 10);
    assert_string_equal(host, "mail.example.com");
    /* the preference is big-endian */
    assert_int_equal(mx_parse(W("\x01\x02\2mx\0"), &pref, host), 0);
    assert_int_equal(pref, 0x0102);
    assert_string_equal(host, "mx");
    assert_int_equal(mx_parse(W("\xff\xff\2MX\3Org\0"), &pref, host), 0);
    assert_int_equal(pref, 65535);
    assert_string_equal(host, "mx.org");
}

static void
test_mx_short(void **state)
{
    char host[DNS_NAME_MAX];
    unsigned pref;

    assert_int_equal(mx_parse(W(""), &pref, host), -1);
    assert_int_equal(mx_parse(W("\0"), &pref, host), -1);
    assert_int_equal(mx_parse(W("\0\x0a"), &pref, host), -1);
    /* a name cut short, at each possible point */
    {
        static const unsigned char rd[] = "\0\x0a\4mail\7example\3com\0";
        const size_t len = sizeof(rd) - 1;

        for (size_t n = 3; n < len; n++) {
            assert_int_equal(mx_parse(rd, n, &pref, host), -1);
            /* in place, the rest of the name right behind len */
            assert_int_equal(dns_mx_parse(rd, n, &pref, host), -1);
        }
        assert_int_equal(mx_parse(rd, len, &pref, host), 0);
    }
}

static void
test_mx_trailing(void **state)
{
    char host[DNS_NAME_MAX];
    unsigned pref;

    assert_int_equal(mx_parse(W("\0\x0a\2mx\0\0"), &pref, host), -1);
    assert_int_equal(mx_parse(W("\0\x0a\2mx\0junk"), &pref, host), -1);
    assert_int_equal(mx_parse(W("\0\0\0\0"), &pref, host), -1);
}

/* RFC 7505: preference 0 and the root ("." in zone files) comes out as
 * an empty host, which dlv_resolve bounces as a null MX. */
static void
test_mx_null(void **state)
{
    char host[DNS_NAME_MAX];
    unsigned pref = 99;

    assert_int_equal(mx_parse(W("\0\0\0"), &pref, host), 0);
    assert_int_equal(pref, 0);
    assert_string_equal(host, "");
    /* the root with another preference parses the same way (the parser
     * does not judge; dlv_resolve looks at the name only) */
    assert_int_equal(mx_parse(W("\0\x0a\0"), &pref, host), 0);
    assert_int_equal(pref, 10);
    assert_string_equal(host, "");
}

static void
test_mx_bad_name(void **state)
{
    char host[DNS_NAME_MAX];
    unsigned pref;
    unsigned char rd[300];
    size_t n;

    /* compressed: refused */
    assert_int_equal(mx_parse(W("\0\x0a\4mail\xc0\x0c"), &pref, host), -1);
    /* a dot or a control byte in a label */
    assert_int_equal(mx_parse(W("\0\x0a\3a.b\0"), &pref, host), -1);
    assert_int_equal(mx_parse(W("\0\x0a\3a\nb\0"), &pref, host), -1);
    /* the longest name fits, one more does not */
    rd[0] = 0;
    rd[1] = 5;
    n = long_wire(rd + 2, 3, 61);
    assert_int_equal(mx_parse(rd, n + 2, &pref, host), 0);
    assert_int_equal(strlen(host), 253);
    n = long_wire(rd + 2, 3, 62);
    assert_int_equal(mx_parse(rd, n + 2, &pref, host), -1);
}

/* ------------------------------------------------------------------ */
/* dns_strtype */

static void
test_strtype(void **state)
{
    char saved[16];

    assert_string_equal(dns_strtype(DNS_T_A), "A");
    assert_string_equal(dns_strtype(DNS_T_AAAA), "AAAA");
    assert_string_equal(dns_strtype(DNS_T_MX), "MX");
    assert_string_equal(dns_strtype(DNS_T_PTR), "PTR");
    assert_string_equal(dns_strtype(DNS_T_TXT), "TXT");
    assert_string_equal(dns_strtype(0), "0");
    assert_string_equal(dns_strtype(99), "99");
    assert_string_equal(dns_strtype(65535), "65535");
    assert_string_equal(dns_strtype(-1), "-1");
    /* the number is in one buffer per thread: the next call reuses it */
    snprintf(saved, sizeof(saved), "%s", dns_strtype(257));
    assert_string_equal(saved, "257");
    assert_string_equal(dns_strtype(6), "6");
}

/* ------------------------------------------------------------------ */
/* dlv_resolve_is_self */

static struct sockaddr_storage
sa(const char *addr, int port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t) port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t) port);
    }
    return ss;
}

static int
is_self(const struct dlv_self *self, const char *addr, int port)
{
    struct sockaddr_storage ss = sa(addr, port);

    return dlv_resolve_is_self(self, &ss);
}

static void
test_self_none(void **state)
{
    struct dlv_self empty = {0};

    assert_false(is_self(NULL, "127.0.0.1", 25));
    assert_false(is_self(&empty, "127.0.0.1", 25));
    assert_false(is_self(&empty, "::1", 25));
}

static void
test_self_listeners(void **state)
{
    struct sockaddr_storage ls[3];
    struct dlv_self self = {.ss = ls, .n = 3};

    ls[0] = sa("192.0.2.1", 25);
    ls[1] = sa("2001:db8::1", 25);
    ls[2] = sa("192.0.2.1", 587);
    /* exact address and port */
    assert_true(is_self(&self, "192.0.2.1", 25));
    assert_true(is_self(&self, "192.0.2.1", 587));
    assert_true(is_self(&self, "2001:db8::1", 25));
    /* same address, another port: another server */
    assert_false(is_self(&self, "192.0.2.1", 2525));
    assert_false(is_self(&self, "2001:db8::1", 587));
    /* another address, same port */
    assert_false(is_self(&self, "192.0.2.2", 25));
    assert_false(is_self(&self, "2001:db8::2", 25));
    assert_false(is_self(&self, "2001:db8:1::1", 25));
    /* families do not mix */
    assert_false(is_self(&self, "::192.0.2.1", 25));
}

static void
test_self_proxy(void **state)
{
    struct sockaddr_storage ls[1], px[2];
    struct dlv_self self = {.ss = ls, .n = 1, .proxy = px, .nproxy = 2};

    ls[0] = sa("127.0.0.1", 10025);
    px[0] = sa("198.51.100.7", 0); /* as qmgr fills them: no port */
    px[1] = sa("2001:db8::25", 0);
    /* any port */
    assert_true(is_self(&self, "198.51.100.7", 25));
    assert_true(is_self(&self, "198.51.100.7", 2525));
    assert_true(is_self(&self, "198.51.100.7", 0));
    assert_true(is_self(&self, "2001:db8::25", 25));
    assert_true(is_self(&self, "2001:db8::25", 465));
    assert_false(is_self(&self, "198.51.100.8", 25));
    assert_false(is_self(&self, "2001:db8::26", 25));
    /* the listener list still wants its port */
    assert_true(is_self(&self, "127.0.0.1", 10025));
    assert_false(is_self(&self, "127.0.0.1", 25));
    /* a proxy entry with a port set matches other ports too */
    px[0] = sa("198.51.100.7", 25);
    assert_true(is_self(&self, "198.51.100.7", 26));
}

/* An IPv4 address and the same address IPv4-mapped in IPv6 are not the
 * same to dlv_resolve_is_self: it compares families first. */
static void
test_self_mapped(void **state)
{
    struct sockaddr_storage ls[1], px[1];
    struct dlv_self self = {.ss = ls, .n = 1, .proxy = px, .nproxy = 1};

    ls[0] = sa("192.0.2.1", 25);
    px[0] = sa("198.51.100.7", 0);
    assert_true(is_self(&self, "192.0.2.1", 25));
    assert_false(is_self(&self, "::ffff:192.0.2.1", 25));
    assert_true(is_self(&self, "198.51.100.7", 25));
    assert_false(is_self(&self, "::ffff:198.51.100.7", 25));
    /* and the other way round */
    ls[0] = sa("::ffff:192.0.2.1", 25);
    assert_true(is_self(&self, "::ffff:192.0.2.1", 25));
    assert_false(is_self(&self, "192.0.2.1", 25));
}

static void
test_self_other_family(void **state)
{
    struct sockaddr_storage ls[1], q;
    struct dlv_self self = {.ss = ls, .n = 1, .proxy = ls, .nproxy = 1};

    /* two identical all-zero entries of no family: never self */
    memset(&ls[0], 0, sizeof(ls[0]));
    memset(&q, 0, sizeof(q));
    assert_false(dlv_resolve_is_self(&self, &q));
    ls[0].ss_family = AF_UNIX;
    q.ss_family = AF_UNIX;
    assert_false(dlv_resolve_is_self(&self, &q));
    /* families do not mix even where the bytes line up: 0.0.0.0:25 and
     * [::]:25 share port and (zero) address bytes */
    self.nproxy = 0;
    ls[0] = sa("0.0.0.0", 25);
    assert_true(is_self(&self, "0.0.0.0", 25));
    assert_false(is_self(&self, "::", 25));
    ls[0] = sa("::", 25);
    assert_true(is_self(&self, "::", 25));
    assert_false(is_self(&self, "0.0.0.0", 25));
}

/* ------------------------------------------------------------------ */
/* dlv_resolve_prefer (smtp_address_preference) */

/* a[i]: preference pref[i]; family from fam[i] ('4' or '6'); port 2000+i */
static void
mk_mixed(struct dlv_addr *a, const unsigned *pref, const char *fam, size_t n)
{
    memset(a, 0, n * sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        char addr[48];

        if (fam[i] == '4')
            snprintf(addr, sizeof(addr), "192.0.2.%zu", i + 1);
        else
            snprintf(addr, sizeof(addr), "2001:db8::%zx", i + 1);
        a[i].ss = sa(addr, (int) (2000 + i));
        a[i].len = fam[i] == '4' ? sizeof(struct sockaddr_in)
                                 : sizeof(struct sockaddr_in6);
        a[i].pref = pref[i];
    }
}

static size_t
port_of(const struct dlv_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *) &a->ss)->sin_port) - 2000;
    return ntohs(((const struct sockaddr_in6 *) &a->ss)->sin6_port) - 2000;
}

static void
expect_order(int family, const size_t *want)
{
    /* 10: 4 6 4 6, 20: 6 4, 30: 4 */
    const unsigned pref[] = {10, 10, 10, 10, 20, 20, 30};
    const char fam[] = "4646644";
    struct dlv_addr a[7];

    mk_mixed(a, pref, fam, 7);
    dlv_resolve_prefer(a, 7, family);
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(port_of(&a[i]), want[i]);
        assert_int_equal(a[i].pref, pref[want[i]]);
        assert_int_equal(a[i].ss.ss_family,
                         fam[want[i]] == '4' ? AF_INET : AF_INET6);
    }
}

static void
test_prefer(void **state)
{
    const size_t any[] = {0, 1, 2, 3, 4, 5, 6};
    const size_t v4[] = {0, 2, 1, 3, 5, 4, 6};
    const size_t v6[] = {1, 3, 0, 2, 4, 5, 6};

    (void) state;
    expect_order(0, any);       /* "any": unchanged */
    expect_order(AF_INET, v4);  /* IPv4 first within each preference */
    expect_order(AF_INET6, v6); /* IPv6 first, never across preferences */
}

/* ------------------------------------------------------------------ */
/* dlv_resolve_sort */

/* Entry i: preference pref, port 1000 + i, host "h<i>": every field
 * tells where it came from. */
static void
mk_addrs(struct dlv_addr *a, const unsigned *pref, size_t n)
{
    memset(a, 0, n * sizeof(*a));
    for (size_t i = 0; i < n; i++) {
        char addr[32];

        snprintf(addr, sizeof(addr), "192.0.2.%zu", i + 1);
        a[i].ss = sa(addr, (int) (1000 + i));
        a[i].len = sizeof(struct sockaddr_in);
        a[i].pref = pref[i];
        snprintf(a[i].host, sizeof(a[i].host), "h%zu", i);
    }
}

/* The original index of a sorted entry, after checking that the entry
 * is whole (its fields all agree on it). */
static size_t
origin(const struct dlv_addr *a, const unsigned *pref, size_t n)
{
    const struct sockaddr_in *s4 = (const void *) &a->ss;
    size_t i = (size_t) ntohs(s4->sin_port) - 1000;
    char host[16];

    assert_true(i < n);
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0xc0000201u + i);
    assert_int_equal(a->len, sizeof(struct sockaddr_in));
    assert_int_equal(a->pref, pref[i]);
    snprintf(host, sizeof(host), "h%zu", i);
    assert_string_equal(a->host, host);
    return i;
}

/* Sorted by preference, each input entry exactly once; the origins. */
static void
check_sorted(const struct dlv_addr *a, const unsigned *pref, size_t n,
             size_t *orig)
{
    int seen[32] = {0};

    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        orig[i] = origin(&a[i], pref, n);
        assert_int_equal(seen[orig[i]], 0);
        seen[orig[i]] = 1;
        if (i > 0)
            assert_true(a[i - 1].pref <= a[i].pref);
    }
}

static void
test_sort_stable(void **state)
{
    static const unsigned pref[] = {20, 10, 20, 10, 30, 10, 0, 20};
    /* by preference; equal ones in their input order */
    static const size_t want[] = {6, 1, 3, 5, 0, 2, 7, 4};
    const size_t n = sizeof(pref) / sizeof(pref[0]);
    struct dlv_addr a[8];
    size_t orig[8];

    mk_addrs(a, pref, n);
    dlv_resolve_sort(a, n, 0);
    check_sorted(a, pref, n, orig);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(orig[i], want[i]);
    /* sorting again changes nothing */
    dlv_resolve_sort(a, n, 0);
    check_sorted(a, pref, n, orig);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(orig[i], want[i]);
}

static void
test_sort_small(void **state)
{
    static const unsigned pref[] = {5, 1};
    struct dlv_addr a[2];
    size_t orig[2];

    dlv_resolve_sort(NULL, 0, 0);
    dlv_resolve_sort(NULL, 0, 1);
    mk_addrs(a, pref, 1);
    dlv_resolve_sort(a, 1, 1);
    check_sorted(a, pref, 1, orig);
    assert_int_equal(orig[0], 0);
    /* n bounds the sort: the second entry is not looked at */
    mk_addrs(a, pref, 2);
    dlv_resolve_sort(a, 1, 0);
    assert_int_equal(origin(&a[0], pref, 2), 0);
    assert_int_equal(origin(&a[1], pref, 2), 1);
    dlv_resolve_sort(a, 2, 0);
    assert_int_equal(origin(&a[0], pref, 2), 1);
    assert_int_equal(origin(&a[1], pref, 2), 0);
}

/* randomize: the preference order holds every time; the four entries of
 * preference 10 come in more than one order, each of them first at
 * times and last at times; the single entries of 5 and 20 stay where
 * they belong. */
static void
test_sort_random(void **state)
{
    static const unsigned pref[] = {20, 10, 10, 5, 10, 10};
    const size_t n = sizeof(pref) / sizeof(pref[0]);
    struct dlv_addr a[6];
    size_t orig[6];
    int orders[6 * 6 * 6 * 6] = {0}, first[6] = {0}, last[6] = {0};
    int distinct = 0;

    srandom(12345);
    for (int run = 0; run < 200; run++) {
        size_t code = 0;

        mk_addrs(a, pref, n);
        dlv_resolve_sort(a, n, 1);
        check_sorted(a, pref, n, orig);
        assert_int_equal(orig[0], 3);
        assert_int_equal(orig[5], 0);
        for (size_t i = 1; i < 5; i++) {
            assert_int_equal(pref[orig[i]], 10);
            code = code * 6 + orig[i];
        }
        if (orders[code]++ == 0)
            distinct++;
        first[orig[1]]++;
        last[orig[4]]++;
    }
    assert_true(distinct > 1);
    assert_true(first[1] > 0 && first[2] > 0 && first[4] > 0 && first[5] > 0);
    assert_true(last[1] > 0 && last[2] > 0 && last[4] > 0 && last[5] > 0);
}

/* randomize with all preferences distinct: the sort alone decides. */
static void
test_sort_random_distinct(void **state)
{
    static const unsigned pref[] = {40, 30, 20, 10, 50};
    static const size_t want[] = {3, 2, 1, 0, 4};
    const size_t n = sizeof(pref) / sizeof(pref[0]);
    struct dlv_addr a[5];
    size_t orig[5];

    srandom(1);
    for (int run = 0; run < 50; run++) {
        mk_addrs(a, pref, n);
        dlv_resolve_sort(a, n, 1);
        check_sorted(a, pref, n, orig);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(orig[i], want[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_good),
        cmocka_unit_test(test_valid_empty),
        cmocka_unit_test(test_valid_label_len),
        cmocka_unit_test(test_valid_total_len),
        cmocka_unit_test(test_valid_bad_chars),
        cmocka_unit_test(test_name_plain),
        cmocka_unit_test(test_name_root),
        cmocka_unit_test(test_name_truncated),
        cmocka_unit_test(test_name_pointer),
        cmocka_unit_test(test_name_label_len),
        cmocka_unit_test(test_name_total_len),
        cmocka_unit_test(test_name_bad_bytes),
        cmocka_unit_test(test_name_output_valid),
        cmocka_unit_test(test_mx_plain),
        cmocka_unit_test(test_mx_short),
        cmocka_unit_test(test_mx_trailing),
        cmocka_unit_test(test_mx_null),
        cmocka_unit_test(test_mx_bad_name),
        cmocka_unit_test(test_strtype),
        cmocka_unit_test(test_self_none),
        cmocka_unit_test(test_self_listeners),
        cmocka_unit_test(test_self_proxy),
        cmocka_unit_test(test_self_mapped),
        cmocka_unit_test(test_self_other_family),
        cmocka_unit_test(test_prefer),
        cmocka_unit_test(test_sort_stable),
        cmocka_unit_test(test_sort_small),
        cmocka_unit_test(test_sort_random),
        cmocka_unit_test(test_sort_random_distinct),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
