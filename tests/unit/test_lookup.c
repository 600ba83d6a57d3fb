/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_lookup.c - network lists, domain lists, inline/texthash/static
 * tables, and hash:/btree: Berkeley DB files (made here with libdb as
 * postmap makes them: keys and values with their trailing NUL, or
 * without as postmap -N).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <db.h>

#include "conf/lookup.h"
#include "lib/buf.h"

static struct buf *err, *out;

static int
setup(void **state)
{
    err = buf_new(256, BUF_NOCAP);
    out = buf_new(256, 1024);
    return 0;
}

static int
teardown(void **state)
{
    buf_free(err);
    buf_free(out);
    return 0;
}

/* Does addr (IPv4 or IPv6 text) match the list? */
static int
net_match(const struct lookup_net *n, const char *addr)
{
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;

    memset(&s4, 0, sizeof(s4));
    memset(&s6, 0, sizeof(s6));
    if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1) {
        s4.sin_family = AF_INET;
        return lookup_net_match(n, (struct sockaddr *) &s4);
    }
    assert_int_equal(inet_pton(AF_INET6, addr, &s6.sin6_addr), 1);
    s6.sin6_family = AF_INET6;
    return lookup_net_match(n, (struct sockaddr *) &s6);
}

static void
test_net_v4(void **state)
{
    char *list[] = {"127.0.0.0/8", "192.0.2.0/24", "198.51.100.7",
                    "203.0.113.128/25", NULL};
    struct lookup_net *n = lookup_net_new(list, err);

    assert_non_null(n);
    assert_true(net_match(n, "127.0.0.1"));
    assert_true(net_match(n, "127.255.255.255"));
    assert_false(net_match(n, "128.0.0.1"));
    assert_true(net_match(n, "192.0.2.200"));
    assert_false(net_match(n, "192.0.3.1"));
    assert_true(net_match(n, "198.51.100.7"));
    assert_false(net_match(n, "198.51.100.8"));
    assert_true(net_match(n, "203.0.113.129"));
    assert_false(net_match(n, "203.0.113.127"));
    assert_false(net_match(n, "::1"));
    /* IPv4-mapped IPv6 clients match IPv4 entries */
    assert_true(net_match(n, "::ffff:192.0.2.9"));
    assert_false(net_match(n, "::ffff:192.0.3.9"));
    lookup_net_free(n);
}

static void
test_net_v6(void **state)
{
    char *list[] = {"[::1]/128", "[2001:db8::]/32", "fe80::/10",
                    "2001:db8:ffff::5", NULL};
    struct lookup_net *n = lookup_net_new(list, err);

    assert_non_null(n);
    assert_true(net_match(n, "::1"));
    assert_false(net_match(n, "::2"));
    assert_true(net_match(n, "2001:db8:1234::1"));
    assert_false(net_match(n, "2001:db9::1"));
    assert_true(net_match(n, "fe80::1"));
    assert_true(net_match(n, "febf::1"));
    assert_false(net_match(n, "fec0::1"));
    assert_false(net_match(n, "127.0.0.1"));
    lookup_net_free(n);

    char *all[] = {"0.0.0.0/0", "::/0", NULL};
    n = lookup_net_new(all, err);
    assert_non_null(n);
    assert_true(net_match(n, "8.8.8.8"));
    assert_true(net_match(n, "2001:4860::8888"));
    lookup_net_free(n);
}

static void
test_net_negation_and_empty(void **state)
{
    char *list[] = {"!192.0.2.1", "192.0.2.0/24", NULL};
    char *none[] = {NULL};
    struct lookup_net *n = lookup_net_new(list, err);

    assert_non_null(n);
    assert_false(net_match(n, "192.0.2.1"));
    assert_true(net_match(n, "192.0.2.2"));
    lookup_net_free(n);
    n = lookup_net_new(none, err);
    assert_non_null(n);
    assert_false(net_match(n, "127.0.0.1"));
    lookup_net_free(n);
    lookup_net_free(NULL);
}

static const char *
net_bad(const char *entry)
{
    char *list[] = {"127.0.0.0/8", (char *) entry, NULL};

    assert_null(lookup_net_new(list, err));
    return buf_data(err);
}

static void
test_net_bad(void **state)
{
    assert_string_equal(net_bad("192.0.2.1/24"),
                        "bad network entry: \"192.0.2.1/24\": non-zero host "
                        "bits after the prefix");
    assert_string_equal(net_bad("[2001:db8::1]/32"),
                        "bad network entry: \"[2001:db8::1]/32\": non-zero "
                        "host bits after the prefix");
    assert_string_equal(net_bad("10.0.0.0/33"),
                        "bad network entry: \"10.0.0.0/33\": bad prefix "
                        "length");
    assert_string_equal(net_bad("10.0.0.0/"),
                        "bad network entry: \"10.0.0.0/\": bad prefix length");
    assert_string_equal(net_bad("10.0.0.0/8x"),
                        "bad network entry: \"10.0.0.0/8x\": bad prefix "
                        "length");
    assert_string_equal(net_bad("::/129"),
                        "bad network entry: \"::/129\": bad prefix length");
    assert_string_equal(net_bad("[::1/128"),
                        "bad network entry: \"[::1/128\": missing ']'");
    assert_string_equal(net_bad("[127.0.0.1]"),
                        "bad network entry: \"[127.0.0.1]\": not an IPv6 "
                        "address");
    assert_string_equal(net_bad("host.example"),
                        "bad network entry: \"host.example\": not a numeric "
                        "address (host names and tables are not supported "
                        "here)");
    assert_string_equal(net_bad("300.0.0.1"),
                        "bad network entry: \"300.0.0.1\": not a numeric "
                        "address (host names and tables are not supported "
                        "here)");
}

static void
test_domain_match(void **state)
{
    char *list[] = {"example.com", ".sub.example.net", "Localhost.", NULL};
    char *empty[] = {NULL};

    assert_true(lookup_domain_match(list, "example.com"));
    assert_true(lookup_domain_match(list, "EXAMPLE.Com"));
    assert_true(lookup_domain_match(list, "example.com."));
    assert_false(lookup_domain_match(list, "www.example.com"));
    assert_false(lookup_domain_match(list, "xexample.com"));
    assert_true(lookup_domain_match(list, "a.sub.example.net"));
    assert_true(lookup_domain_match(list, "a.b.SUB.example.net"));
    assert_false(lookup_domain_match(list, "sub.example.net"));
    assert_false(lookup_domain_match(list, "xsub.example.net"));
    assert_true(lookup_domain_match(list, "localhost"));
    assert_false(lookup_domain_match(list, ""));
    assert_false(lookup_domain_match(list, "."));
    assert_false(lookup_domain_match(empty, "example.com"));
}

static void
test_inline(void **state)
{
    struct lookup_table *t =
        lookup_open("inline:{ example.net=smtp:[127.0.0.1]:2525, "
                    "Other.Example=x, {key with = value with spaces},"
                    "dup=first dup=second, empty= }",
                    err);
    assert_non_null(t);
    assert_int_equal(lookup_get(t, "example.net", out), 1);
    assert_string_equal(buf_data(out), "smtp:[127.0.0.1]:2525");
    assert_int_equal(lookup_get(t, "EXAMPLE.NET", out), 1);
    assert_int_equal(lookup_get(t, "key with", out), 1);
    assert_string_equal(buf_data(out), "value with spaces");
    assert_int_equal(lookup_get(t, "dup", out), 1);
    assert_string_equal(buf_data(out), "first");
    assert_int_equal(lookup_get(t, "empty", out), 1);
    assert_string_equal(buf_data(out), "");
    assert_int_equal(lookup_get(t, "nothere", out), 0);
    assert_int_equal(lookup_get(t, "other.EXAMPLE", out), 1);
    assert_string_equal(buf_data(out), "x");
    lookup_free(t);

    t = lookup_open("inline:{}", err);
    assert_non_null(t);
    assert_int_equal(lookup_get(t, "a", out), 0);
    lookup_free(t);
    lookup_free(NULL);

    /* space before the brace (found by fuzz_lookup: the closing brace was
     * looked for as many bytes past the end of the string as there were
     * leading spaces) */
    t = lookup_open("inline:   { a=1, b=2 }  ", err);
    assert_non_null(t);
    assert_int_equal(lookup_get(t, "b", out), 1);
    assert_string_equal(buf_data(out), "2");
    lookup_free(t);
}

static void
test_inline_bad(void **state)
{
    assert_null(lookup_open("inline:{ a=b, c }", err));
    assert_string_equal(buf_data(err),
                        "bad inline table entry \"c\": missing '='");
    /* white space outside braces separates entries, as in Postfix */
    assert_null(lookup_open("inline:{ a = b }", err));
    assert_string_equal(buf_data(err),
                        "bad inline table entry \"a\": missing '='");
    assert_null(lookup_open("inline:      }", err));
    assert_non_null(strstr(buf_data(err), "expected inline:{ key=value"));
    assert_null(lookup_open("inline:a=b", err));
    assert_string_equal(buf_data(err), "bad inline table \"inline:a=b\": "
                                       "expected inline:{ key=value, ... }");
    assert_null(lookup_open("inline:{ {a=b }", err));
    assert_string_equal(buf_data(err),
                        "bad inline table \"inline:{ {a=b }\": missing '}'");
    assert_null(lookup_open("inline:{ =b }", err));
    assert_string_equal(buf_data(err),
                        "bad inline table \"inline:{ =b }\": empty key");
    assert_null(lookup_open("nocolon", err));
    assert_string_equal(buf_data(err),
                        "bad lookup table \"nocolon\": expected type:name");
    assert_null(lookup_open("cdb:/etc/aliases", err));
    assert_string_equal(buf_data(err),
                        "unsupported lookup table type \"cdb\" in "
                        "\"cdb:/etc/aliases\" (supported: inline, texthash, "
                        "hash, btree, regexp, cidr, static, unix, proxy)");
}

/* unix:passwd.byname: the accounts getpwent gives, Postfix's values;
 * proxy: in front of a table is the table itself. */
static void
test_unix_passwd(void **state)
{
    struct lookup_table *t = lookup_open("unix:passwd.byname", err);
    struct buf *v = buf_new(64, 4096);
    char want[512];
    struct passwd *pw = getpwuid(0);

    assert_non_null(t);
    assert_non_null(pw);
    snprintf(want, sizeof(want), "%s:%s:0:%ld:%s:%s:%s", pw->pw_name,
             pw->pw_passwd, (long) pw->pw_gid, pw->pw_gecos, pw->pw_dir,
             pw->pw_shell);
    assert_int_equal(lookup_get(t, pw->pw_name, v), 1);
    assert_string_equal(buf_data(v), want);
    assert_int_equal(lookup_get(t, "no-such-account-here", v), 0);
    lookup_free(t);
    t = lookup_open("proxy:unix:passwd.byname", err);
    assert_non_null(t);
    assert_int_equal(lookup_get(t, pw->pw_name, v), 1);
    assert_string_equal(buf_data(v), want);
    lookup_free(t);
    t = lookup_open("proxy:inline:{ a=b }", err);
    assert_int_equal(lookup_get(t, "A", v), 1);
    assert_string_equal(buf_data(v), "b");
    lookup_free(t);
    assert_null(lookup_open("unix:group.byname", err));
    assert_string_equal(buf_data(err), "unsupported unix: table "
                                       "\"unix:group.byname\" (supported: "
                                       "unix:passwd.byname)");
    assert_null(lookup_open("proxy:texthash:/nonexistent/x", err));
    buf_free(v);
}

static void
test_static(void **state)
{
    struct lookup_table *t = lookup_open("static:{ smtp:[relay]:25 }", err);

    assert_non_null(t);
    assert_int_equal(lookup_get(t, "anything", out), 1);
    assert_string_equal(buf_data(out), "smtp:[relay]:25");
    lookup_free(t);
    t = lookup_open("static:OK", err);
    assert_non_null(t);
    assert_int_equal(lookup_get(t, "x", out), 1);
    assert_string_equal(buf_data(out), "OK");
    lookup_free(t);
}

static void
test_texthash(void **state)
{
    char dir[] = "/tmp/test_lookup.XXXXXX";
    char path[256], spec[300];
    struct lookup_table *t;
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/transport", dir);
    snprintf(spec, sizeof(spec), "texthash:%s", path);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("# transport map\n"
          "\n"
          "example.net     smtp:[192.0.2.1]:25\n"
          "  # comment between\n"
          "Example.ORG\tsmtp:[192.0.2.2]\n"
          "multi   first part\n"
          "   second part\n"
          "example.net     duplicate ignored\n"
          "last value with  inner  spaces",
          f);
    fclose(f);
    t = lookup_open(spec, err);
    if (t == NULL)
        fail_msg("%s", buf_data(err));
    assert_int_equal(lookup_get(t, "example.net", out), 1);
    assert_string_equal(buf_data(out), "smtp:[192.0.2.1]:25");
    assert_int_equal(lookup_get(t, "example.org", out), 1);
    assert_string_equal(buf_data(out), "smtp:[192.0.2.2]");
    assert_int_equal(lookup_get(t, "MULTI", out), 1);
    assert_string_equal(buf_data(out), "first part second part");
    assert_int_equal(lookup_get(t, "last", out), 1);
    assert_string_equal(buf_data(out), "value with  inner  spaces");
    assert_int_equal(lookup_get(t, "comment", out), 0);
    lookup_free(t);

    /* a key without a value is an error with file and line */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("a b\n\nlonely\n", f);
    fclose(f);
    assert_null(lookup_open(spec, err));
    snprintf(spec, sizeof(spec), "%s:3: expected format: key whitespace value",
             path);
    assert_string_equal(buf_data(err), spec);

    /* a value longer than the caller's buffer: -1 with a reason */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("big ", f);
    for (int i = 0; i < 2000; i++)
        fputc('v', f);
    fputc('\n', f);
    fclose(f);
    snprintf(spec, sizeof(spec), "texthash:%s", path);
    t = lookup_open(spec, err);
    assert_non_null(t);
    assert_int_equal(lookup_get(t, "big", out), -1);
    assert_string_equal(buf_data(out), "lookup result too long");
    lookup_free(t);

    unlink(path);
    assert_int_equal(rmdir(dir), 0);

    /* a missing file is an error naming it */
    assert_null(lookup_open("texthash:/nonexistent/table", err));
    assert_string_equal(buf_data(err), "cannot open table /nonexistent/table: "
                                       "No such file or directory");
    assert_null(lookup_open("texthash:", err));
    assert_string_equal(buf_data(err), "bad lookup table \"texthash:\": "
                                       "missing file name");
}

/* A Berkeley DB file at path (of type t) holding pairs k[i], v[i];
 * with nul, the trailing NUL of each is stored too. */
static void
mkdb(const char *path, DBTYPE t, const char *const *k, const char *const *v,
     size_t n, int nul)
{
    DB *db;
    DBT dk, dv;

    unlink(path);
    assert_int_equal(db_create(&db, NULL, 0), 0);
    assert_int_equal(db->open(db, NULL, path, NULL, t, DB_CREATE, 0600), 0);
    for (size_t i = 0; i < n; i++) {
        memset(&dk, 0, sizeof(dk));
        memset(&dv, 0, sizeof(dv));
        dk.data = (void *) k[i];
        dk.size = (u_int32_t) (strlen(k[i]) + (nul ? 1 : 0));
        dv.data = (void *) v[i];
        dv.size = (u_int32_t) (strlen(v[i]) + (nul ? 1 : 0));
        assert_int_equal(db->put(db, NULL, &dk, &dv, 0), 0);
    }
    assert_int_equal(db->close(db, 0), 0);
}

static void
test_db(void **state)
{
    static const char *const k[] = {"example.net", "Example.ORG",
                                    "[127.0.0.1]:2525"};
    static const char *const v[] = {"smtp:[192.0.2.1]:25", "relay:[h]",
                                    "user:pass:word"};
    char dir[] = "/tmp/test_lookup.XXXXXX";
    char path[256], file[300], spec[300], want[1024];
    struct lookup_table *t;
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/map", dir);
    snprintf(file, sizeof(file), "%s.db", path);
    for (int i = 0; i < 4; i++) {
        int hash = i < 2, nul = i % 2;

        mkdb(file, hash ? DB_HASH : DB_BTREE, k, v, 3, nul);
        snprintf(spec, sizeof(spec), "%s:%s", hash ? "hash" : "btree", path);
        t = lookup_open(spec, err);
        if (t == NULL)
            fail_msg("%s: %s", spec, buf_data(err));
        assert_int_equal(lookup_get(t, "EXAMPLE.net", out), 1);
        assert_string_equal(buf_data(out), "smtp:[192.0.2.1]:25");
        assert_int_equal(lookup_get(t, "example.org", out), 1);
        assert_string_equal(buf_data(out), "relay:[h]");
        assert_int_equal(lookup_get(t, "[127.0.0.1]:2525", out), 1);
        assert_string_equal(buf_data(out), "user:pass:word");
        assert_int_equal(lookup_get(t, "example.com", out), 0);
        lookup_free(t);
    }

    /* a btree file opened as hash: said so, with the file */
    snprintf(spec, sizeof(spec), "hash:%s", path);
    assert_null(lookup_open(spec, err));
    snprintf(want, sizeof(want), "cannot open %s as a hash table: ", file);
    assert_memory_equal(buf_data(err), want, strlen(want));

    /* an entry with a NUL inside its value */
    {
        DB *db;
        DBT dk, dv;

        unlink(file);
        assert_int_equal(db_create(&db, NULL, 0), 0);
        assert_int_equal(
            db->open(db, NULL, file, NULL, DB_HASH, DB_CREATE, 0600), 0);
        memset(&dk, 0, sizeof(dk));
        memset(&dv, 0, sizeof(dv));
        dk.data = "key";
        dk.size = 4;
        dv.data = "va\0lue";
        dv.size = 7;
        assert_int_equal(db->put(db, NULL, &dk, &dv, 0), 0);
        assert_int_equal(db->close(db, 0), 0);
    }
    assert_null(lookup_open(spec, err));
    snprintf(want, sizeof(want),
             "%s: an entry with a NUL byte in its key or value", file);
    assert_string_equal(buf_data(err), want);

    /* not a database at all */
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("example.net smtp:[192.0.2.1]\n", f);
    fclose(f);
    assert_null(lookup_open(spec, err));
    snprintf(want, sizeof(want), "cannot open %s as a hash table: ", file);
    assert_memory_equal(buf_data(err), want, strlen(want));
    unlink(file);

    /* no .db file: the error says how to make it */
    assert_null(lookup_open(spec, err));
    snprintf(want, sizeof(want),
             "cannot open %s: No such file or directory (make it with: "
             "postmap hash:%s)",
             file, path);
    assert_string_equal(buf_data(err), want);
    assert_null(lookup_open("btree:", err));
    assert_string_equal(buf_data(err),
                        "bad lookup table \"btree:\": missing file name");
    assert_int_equal(rmdir(dir), 0);
}

/* Write text to dir/name; its "regexp:" spec into spec. */
static void
mkfile(const char *dir, const char *name, const char *text, char *spec,
       size_t specsz)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    snprintf(spec, specsz, "regexp:%s", path);
}

static void
test_regexp(void **state)
{
    char dir[] = "/tmp/test_lookup.XXXXXX";
    char spec[600], want[1024];
    struct lookup_table *t;

    assert_non_null(mkdtemp(dir));
    mkfile(dir, "re",
           "# access by pattern\n"
           "/^Content-(Disposition|Type).*name[[:space:]]*=[[:space:]]*"
           "\"?(.+\\.(exe|scr|pif|bat|com|vbs|js))\"?[[:space:]]*$/ "
           "REJECT attachment $2\n"
           "/^(.*)@spam\\.example$/   REJECT no mail from $1 (${1})\n"
           "/^postmaster@/          OK\n"
           "/CaseSensitive/i        DUNNO\n"
           "!/@/                    REJECT no domain\n"
           "if /\\.test$/\n"
           "/^admin@/               OK admin\n"
           "if !/^x/\n"
           "/^y/                    HOLD y\n"
           "endif\n"
           "/./                     DEFER test domain\n"
           "endif\n"
           "#/this is a comment/    nothing\n"
           "/^long@/                first part\n"
           "  second part $$5\n"
           "|^pipe/slash@|          pipes as delimiters\n",
           spec, sizeof(spec));
    t = lookup_open(spec, err);
    if (t == NULL)
        fail_msg("%s", buf_data(err));
    assert_int_equal(lookup_get(t, "Bob@SPAM.example", out), 1);
    assert_string_equal(buf_data(out), "REJECT no mail from Bob (Bob)");
    assert_int_equal(lookup_get(t, "postmaster@spam.example", out), 1);
    assert_string_equal(buf_data(out), "REJECT no mail from postmaster "
                                       "(postmaster)"); /* first rule wins */
    assert_int_equal(lookup_get(t, "POSTMASTER@elsewhere.example", out), 1);
    assert_string_equal(buf_data(out), "OK");
    assert_int_equal(lookup_get(t, "casesensitive@a.example", out), 0);
    assert_int_equal(lookup_get(t, "CaseSensitive@a.example", out), 1);
    assert_string_equal(buf_data(out), "DUNNO");
    assert_int_equal(lookup_get(t, "localonly", out), 1);
    assert_string_equal(buf_data(out), "REJECT no domain");
    assert_int_equal(lookup_get(t, "admin@a.test", out), 1);
    assert_string_equal(buf_data(out), "OK admin");
    assert_int_equal(lookup_get(t, "admin@a.example", out), 0);
    assert_int_equal(lookup_get(t, "yes@b.test", out), 1);
    assert_string_equal(buf_data(out), "HOLD y");
    assert_int_equal(lookup_get(t, "xyz@b.test", out), 1);
    assert_string_equal(buf_data(out), "DEFER test domain");
    assert_int_equal(lookup_get(t, "long@c.example", out), 1);
    assert_string_equal(buf_data(out), "first part second part $5");
    assert_int_equal(lookup_get(t, "pipe/slash@c.example", out), 1);
    assert_string_equal(buf_data(out), "pipes as delimiters");
    assert_int_equal(lookup_get(t, "nobody@c.example", out), 0);
    assert_int_equal(lookup_get(t,
                                "Content-Disposition: attachment; "
                                "filename=\"x.EXE\"",
                                out),
                     1);
    assert_string_equal(buf_data(out), "REJECT attachment x.EXE");

    lookup_free(t);

    /* errors name the file and line */
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"/a/ x\n/unclosed x\n", "2: missing closing '/' of the pattern"},
        {"/a(/ x\n", "1: bad pattern: "},
        {"/a/q x\n", "1: unknown pattern flag 'q' (i, x, m)"},
        {"\n\n/a/\n", "3: expected format: /pattern/ result"},
        {"endif\n", "1: endif without if"},
        {"if /a/ x\nendif\n", "1: text after the if pattern"},
        {"if /a/\n/b/ c\n", "if without endif"},
        {"/a++++++++++++++++++++++++++++++/ x\n",
         "1: pattern too complex (nested or stacked repetitions)"},
        {"/((((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+/ x\n",
         "1: pattern too complex (nested or stacked repetitions)"},
        {"/(a{1,100}){1,100}{1,100}/ x\n",
         "1: pattern too complex (nested or stacked repetitions)"},
        /* a repetition that can match nothing, repeated again: its
         * closures grow as the square (4 GB in glibc, found by fuzzing) */
        {"| /+*++++++++++++++| x\n",
         "1: pattern too complex (nested or stacked repetitions)"},

    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[512];

        mkfile(dir, "bad", bad[i].text, spec, sizeof(spec));
        assert_null(lookup_open(spec, err));
        snprintf(path, sizeof(path), "%s/bad", dir);
        snprintf(want, sizeof(want), "%s%s%s", path,
                 bad[i].err[0] == 'i' ? ": " : ":", bad[i].err);
        if (strncmp(buf_data(err), want, strlen(want)) != 0)
            fail_msg("got \"%s\", want \"%s\"", buf_data(err), want);
    }
    /* ifs nested deeper than the bound */
    {
        struct buf *deep = buf_new(4096, BUF_NOCAP);

        for (int i = 0; i < 70; i++)
            buf_puts(deep, "if /a/\n");
        mkfile(dir, "deep", buf_data(deep), spec, sizeof(spec));
        buf_free(deep);
        assert_null(lookup_open(spec, err));
        assert_non_null(strstr(buf_data(err), "if nested deeper than 64"));
    }
    snprintf(want, sizeof(want), "%s/re", dir);
    unlink(want);
    snprintf(want, sizeof(want), "%s/bad", dir);
    unlink(want);
    snprintf(want, sizeof(want), "%s/deep", dir);
    unlink(want);
    assert_int_equal(rmdir(dir), 0);
}

/* cidr: tables, Postfix's cidr_table(5): the first network that holds
 * the address, in file order; "!" and if/endif; a key that is not an
 * address matches nothing. */
static void
test_cidr(void **state)
{
    char dir[] = "/tmp/test_lookup.XXXXXX";
    char spec[600], path[512];
    struct lookup_table *t;
    static const struct {
        const char *key, *want;
    } cases[] = {
        {"192.0.2.7", "REJECT doc net"},
        {"192.0.2.200", "OK the top half"},
        {"198.51.100.1", "DUNNO"},
        {"10.1.2.3", "REJECT private"},
        {"::ffff:10.1.2.3", "REJECT private"},
        {"2001:db8::1", "REJECT v6 doc"},
        {"2001:db8:1::1", "REJECT bracketed"},
        {"203.0.113.9", "HOLD in the if"},
        {"203.0.113.200", NULL},
        {"127.0.0.1", NULL},
        {"mail.example.com", NULL},
        {"192.0.2", NULL},
    };

    assert_non_null(mkdtemp(dir));
    mkfile(dir, "c",
           "# cidr_table(5)\n"
           "192.0.2.128/25   OK the top half\n"
           "192.0.2.0/24     REJECT doc net\n"
           "198.51.100.1     DUNNO\n"
           "10.0.0.0/8       REJECT private\n"
           "[2001:db8:1::]/48 REJECT bracketed\n"
           "2001:db8::/32    REJECT v6 doc\n"
           "if 203.0.113.0/24\n"
           "!203.0.113.128/25 HOLD in the if\n"
           "endif\n",
           spec, sizeof(spec));
    snprintf(path, sizeof(path), "cidr:%s/c", dir);
    t = lookup_open(path, err);
    if (t == NULL)
        fail_msg("%s", buf_data(err));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = lookup_get(t, cases[i].key, out);

        if (cases[i].want == NULL
                ? rc != 0
                : rc != 1 || strcmp(buf_data(out), cases[i].want))
            fail_msg("%s: rc %d \"%s\"", cases[i].key, rc,
                     rc > 0 ? buf_data(out) : "");
    }
    lookup_free(t);
    /* errors name the file and line */
    mkfile(dir, "c", "192.0.2.1/24 OK\n", spec, sizeof(spec));
    assert_null(lookup_open(path, err));
    assert_non_null(strstr(buf_data(err),
                           "/c:1: bad network \"192.0.2.1/24\": "
                           "non-zero host bits after the prefix"));
    mkfile(dir, "c", "\n192.0.2.0/33 OK\n", spec, sizeof(spec));
    assert_null(lookup_open(path, err));
    assert_non_null(strstr(buf_data(err), "/c:2: bad network"));
    mkfile(dir, "c", "mail.example.com OK\n", spec, sizeof(spec));
    assert_null(lookup_open(path, err));
    assert_non_null(strstr(buf_data(err), "not a numeric address"));
    mkfile(dir, "c", "192.0.2.0/24\n", spec, sizeof(spec));
    assert_null(lookup_open(path, err));
    assert_non_null(strstr(buf_data(err), "expected format"));
    mkfile(dir, "c", "if 192.0.2.0/24\n", spec, sizeof(spec));
    assert_null(lookup_open(path, err));
    assert_non_null(strstr(buf_data(err), "if without endif"));
    snprintf(path, sizeof(path), "%s/c", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

/* Domain lists with tables, files and negation (Postfix's match
 * lists): the first entry that matches decides. */
static void
test_dlist(void **state)
{
    char dir[] = "/tmp/test_lookup.XXXXXX";
    char path[600], spec[800];
    char *list[] = {"!bad.example", ".example.com",
                    "inline:{ t.example=OK, .p.example=x }", path, NULL};
    char *badfile[] = {"/nonexistent/domains", NULL};
    char *badtab[] = {"inline:{ x", NULL};
    char *bang[] = {"!", NULL};
    struct lookup_dlist *l;
    FILE *f;

    (void) state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/domains", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("# a comment\nfile.example, other.example # trailing\n"
          "!.neg.example\n.neg.example\n",
          f);
    fclose(f);
    l = lookup_dlist_new(list, err);
    assert_non_null(l);
    assert_int_equal(lookup_dlist_match(l, "a.example.com"), 1);
    assert_int_equal(lookup_dlist_match(l, "example.com"), 0);
    assert_int_equal(lookup_dlist_match(l, "T.Example."), 1);
    assert_int_equal(lookup_dlist_match(l, "x.t.example"), 0);
    assert_int_equal(lookup_dlist_match(l, "x.y.p.example"), 1); /* .parent */
    assert_int_equal(lookup_dlist_match(l, "p.example"), 0);
    assert_int_equal(lookup_dlist_match(l, "file.example"), 1);
    assert_int_equal(lookup_dlist_match(l, "other.example"), 1);
    assert_int_equal(lookup_dlist_match(l, "trailing"), 0);
    assert_int_equal(lookup_dlist_match(l, "a.neg.example"), 0); /* ! first */
    assert_int_equal(lookup_dlist_match(l, "bad.example"), 0);
    assert_int_equal(lookup_dlist_match(l, ""), 0);
    assert_false(lookup_dlist_empty(l));
    lookup_dlist_free(l);
    assert_true(lookup_dlist_empty(NULL));

    buf_reset(err);
    assert_null(lookup_dlist_new(badfile, err));
    assert_string_equal(buf_data(err), "cannot open /nonexistent/domains: No "
                                       "such file or directory");
    buf_reset(err);
    assert_null(lookup_dlist_new(badtab, err));
    assert_non_null(strstr(buf_data(err), "inline"));
    buf_reset(err);
    assert_null(lookup_dlist_new(bang, err));
    assert_string_equal(buf_data(err), "empty entry after '!'");
    /* a file may not name another file */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("ok.example\n/etc/hostname\n", f);
    fclose(f);
    buf_reset(err);
    assert_null(lookup_dlist_new(list, err));
    snprintf(spec, sizeof(spec),
             "a file entry (/etc/hostname) inside a file (%s, line 2)", path);
    assert_string_equal(buf_data(err), spec);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_v4),
        cmocka_unit_test(test_net_v6),
        cmocka_unit_test(test_net_negation_and_empty),
        cmocka_unit_test(test_net_bad),
        cmocka_unit_test(test_domain_match),
        cmocka_unit_test(test_dlist),
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_inline_bad),
        cmocka_unit_test(test_static),
        cmocka_unit_test(test_unix_passwd),
        cmocka_unit_test(test_texthash),
        cmocka_unit_test(test_db),
        cmocka_unit_test(test_regexp),
        cmocka_unit_test(test_cidr),

    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
