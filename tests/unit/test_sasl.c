/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_sasl.c - proxy/sasl.c: RFC 4954 base64 as the client sent it,
 * Dovecot's tab-escaping undone, smtpd_sasl_security_options parsed; then
 * against a fake Dovecot auth server (a unix socket, or TCP on 127.0.0.1,
 * that this test listens on, accepts, reads and writes itself while it
 * turns the libev loop with EVRUN_NOWAIT): the handshake and the
 * mechanism list under each option, waiters, the AUTH line, OK, FAIL and
 * CONT answers in any order, cancelled and timed-out requests, requests
 * started before the handshake, protocol errors, a line over
 * SASL_LINE_MAX, a lost connection and the reconnection a second later.
 * Callbacks are checked never to run inside sasl_start or sasl_next.
 * Also: write failures, a server that does not read (the 4 MB cap), the
 * 5 s handshake timeout, sasl_probe; and the regressions of four bugs the
 * fuzzer found (a line over SASL_LINE_MAX split across reads, in a reply
 * and in the handshake; a mechanism listed twice; ids with signs or
 * spaces).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "proxy/sasl.h"

static char dir[] = "/tmp/test_sasl.XXXXXX";
static char sock_path[128]; /* dir/auth */
static char log_path[128];  /* dir/maillog */

/* ------------------------------------------------------------------ */
/* the pure helpers */

static void
test_b64(void **state)
{
    static const char *const good[] = {
        "", "QQ==", "QUI=", "QUJD", "AGFsaWNlAHNlY3JldA==", "+/+/", "AA=="};
    static const char *const bad[] = {
        "QQ",      "Q===",       "QQ==QQ==", "QU I=", "QUJ\t",   "QUJD\r",
        "QUJ\xc3", "\xc3\xa9QQ", "====",     "QUJDQ", "QQ=A",    "=QQQ",
        "QUJD\n",  "QUJD=",      "QU-_",     "A===",  "QUJ\x7f", "Q\x80=="};
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (sasl_b64_ok(good[i]) != 1)
            fail_msg("\"%s\" refused", good[i]);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sasl_b64_ok(bad[i]) != 0)
            fail_msg("bad[%zu] \"%s\" accepted", i, bad[i]);
}

static void
check_unescape(const char *in, const char *want)
{
    struct buf *b = buf_new(64, BUF_NOCAP);

    buf_sets(b, in);
    sasl_unescape(buf_data(b));
    if (strcmp(buf_data(b), want) != 0)
        fail_msg("unescape(\"%s\") = \"%s\", want \"%s\"", in, buf_data(b),
                 want);
    buf_free(b);
}

static void
test_unescape(void **state)
{
    (void) state;
    check_unescape("", "");
    check_unescape("alice", "alice");
    check_unescape("Password mismatch", "Password mismatch");
    /* the escapes become their bytes, which are unprintable: '?' */
    check_unescape("a\001tb", "a?b");
    check_unescape("a\001nb", "a?b");
    check_unescape("a\001rb", "a?b");
    check_unescape("a\001lb", "a?b");
    check_unescape("a\0011b", "a?b");
    check_unescape("a\0010b", "a?b");
    check_unescape("\001t\001n\001r\0011\0010", "?????");
    /* \001 before anything else: that character */
    check_unescape("a\001xb", "axb");
    check_unescape("\001\001", "?");
    /* unprintable bytes, raw */
    check_unescape("a\tb\rc\177d\001", "a?b?c?d?");
    check_unescape("caf\xc3\xa9", "caf??");
    check_unescape("\x1b[31mred", "?[31mred");
    /* a trailing lone \001 */
    check_unescape("abc\001", "abc?");
    check_unescape("\001", "?");
}

static int
parse(const char *list, struct sasl_policy *pol, struct buf *err)
{
    char *copy = strdup(list), *words[16], *save = NULL, *w;
    size_t n = 0;
    int rc;

    assert_non_null(copy);
    for (w = strtok_r(copy, " ", &save); w && n < 15;
         w = strtok_r(NULL, " ", &save))
        words[n++] = w;
    words[n] = NULL;
    rc = sasl_policy_parse(words, pol, err);
    free(copy);
    return rc;
}

static void
check_policy(const char *list, unsigned deny, unsigned need)
{
    struct buf *err = buf_new(64, 4096);
    struct sasl_policy pol = {0xffu, 0xffu};

    if (parse(list, &pol, err) != 0)
        fail_msg("\"%s\": %s", list, buf_data(err));
    if (pol.deny != deny || pol.need != need)
        fail_msg("\"%s\": deny %#x need %#x, want %#x %#x", list, pol.deny,
                 pol.need, deny, need);
    buf_free(err);
}

static void
test_policy(void **state)
{
    struct buf *err = buf_new(64, 4096);
    struct sasl_policy pol = {0xffu, 0xffu};

    (void) state;
    /* none: only the private ones are kept back */
    assert_int_equal(sasl_policy_parse(NULL, &pol, err), 0);
    assert_int_equal(pol.deny, SASL_MF_PRIVATE);
    assert_int_equal(pol.need, 0);
    check_policy("", SASL_MF_PRIVATE, 0);
    check_policy("noanonymous", SASL_MF_PRIVATE | SASL_MF_ANONYMOUS, 0);
    check_policy("noplaintext", SASL_MF_PRIVATE | SASL_MF_PLAINTEXT, 0);
    check_policy("nodictionary", SASL_MF_PRIVATE | SASL_MF_DICTIONARY, 0);
    check_policy("noactive", SASL_MF_PRIVATE | SASL_MF_ACTIVE, 0);
    check_policy("mutual_auth", SASL_MF_PRIVATE, SASL_MF_MUTUAL);
    check_policy("forward_secrecy", SASL_MF_PRIVATE, SASL_MF_FWD_SECRET);
    check_policy("NoAnonymous NOPLAINTEXT",
                 SASL_MF_PRIVATE | SASL_MF_ANONYMOUS | SASL_MF_PLAINTEXT, 0);
    check_policy("noanonymous noplaintext nodictionary noactive mutual_auth "
                 "forward_secrecy noanonymous",
                 SASL_MF_PRIVATE | SASL_MF_ANONYMOUS | SASL_MF_PLAINTEXT
                     | SASL_MF_DICTIONARY | SASL_MF_ACTIVE,
                 SASL_MF_MUTUAL | SASL_MF_FWD_SECRET);

    /* unknown words: -1, the first one named, the others still apply */
    pol.deny = pol.need = 0xffu;
    assert_int_equal(parse("noanonymous bogus noplaintext forward_secrecy "
                           "other",
                           &pol, err),
                     -1);
    assert_string_equal(buf_data(err), "unknown security option: bogus");
    assert_int_equal(pol.deny,
                     SASL_MF_PRIVATE | SASL_MF_ANONYMOUS | SASL_MF_PLAINTEXT);
    assert_int_equal(pol.need, SASL_MF_FWD_SECRET);
    buf_reset(err);
    assert_int_equal(parse("no_plaintext", &pol, err), -1);
    assert_non_null(strstr(buf_data(err), "no_plaintext"));
    assert_int_equal(pol.deny, SASL_MF_PRIVATE);
    assert_int_equal(pol.need, 0);
    buf_free(err);
}

/* ------------------------------------------------------------------ */
/* the fake auth server */

struct fake {
    struct ev_loop *loop;
    struct sasl_srv *sv;
    int lfd, fd;
    struct buf *got;  /* what Sluice sent, not yet taken as lines */
    struct buf *line; /* the last line taken */
};

/* What a request's callback saw. */
struct rec {
    int n;     /* calls */
    int order; /* the sequence number of the last call */
    enum sasl_status st;
    struct buf *text;
    /* on a final answer, try to start another request (NULL: don't) */
    struct fake *restart;
    int restarted; /* -1: sasl_start said NULL, 1: it gave a request */
    struct sasl_req *rq;
};

static int seq;     /* callbacks so far */
static int in_call; /* inside sasl_start or sasl_next */

static const struct sasl_client cl_plain = {.service = "smtp",
                                            .laddr = "192.0.2.1",
                                            .raddr = "198.51.100.7",
                                            .lport = 25,
                                            .rport = 40000};

static void
rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
    r->text = buf_new(64, BUF_NOCAP);
}

static void
rec_free(struct rec *r)
{
    buf_free(r->text);
}

static void
rec_cb(void *arg, enum sasl_status st, const char *text)
{
    struct rec *r = arg;

    if (in_call)
        fail_msg("callback inside sasl_start or sasl_next");
    assert_non_null(text);
    r->n++;
    r->order = ++seq;
    r->st = st;
    buf_sets(r->text, text);
    if (st != SASL_CONT)
        r->rq = NULL; /* freed as we return */
    if (st != SASL_CONT && r->restart != NULL) {
        struct buf *why = buf_new(64, 4096);
        struct sasl_req *rq;

        in_call = 1;
        rq = sasl_start(r->restart->sv, &cl_plain, "PLAIN", NULL, 30., rec_cb,
                        r, why);
        in_call = 0;
        r->restarted = rq ? 1 : -1;
        r->restart = NULL;
        r->rq = rq;
        buf_free(why);
    }
}

static void
check_rec(const struct rec *r, int n, enum sasl_status st, const char *text)
{
    if (r->n != n)
        fail_msg("%d callback(s), want %d (last: %d \"%s\")", r->n, n,
                 (int) r->st, buf_data(r->text));
    if (n == 0)
        return;
    if (r->st != st || strcmp(buf_data(r->text), text) != 0)
        fail_msg("status %d \"%.80s\", want %d \"%.80s\"", (int) r->st,
                 buf_data(r->text), (int) st, text);
}

static void
wait_cb(void *arg)
{
    int *n = arg;

    (*n)++;
}

static int
fk_listen_unix(const char *path)
{
    struct sockaddr_un su;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    snprintf(su.sun_path, sizeof(su.sun_path), "%s", path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *) &su, sizeof(su)), 0);
    assert_int_equal(listen(fd, 8), 0);
    return fd;
}

/* Turn the loop until what is in the sockets has been handled. */
static void
fk_pump(struct fake *f)
{
    for (int i = 0; i < 24; i++)
        ev_run(f->loop, EVRUN_NOWAIT);
}

/* Accept Sluice's connection: 0, or -1 when none comes. */
static int
fk_accept(struct fake *f)
{
    struct pollfd p = {f->lfd, POLLIN, 0};

    for (int i = 0; i < 100; i++) {
        fk_pump(f);
        if (poll(&p, 1, 10) == 1) {
            f->fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
            assert_true(f->fd >= 0);
            buf_reset(f->got);
            return 0;
        }
    }
    return -1;
}

/* Read what Sluice sent into f->got: the bytes read, 0 at EOF, -1 when
 * nothing came within ms. */
static ssize_t
fk_read(struct fake *f, int ms)
{
    struct pollfd p = {f->fd, POLLIN, 0};
    char *room;
    ssize_t n;

    fk_pump(f);
    if (poll(&p, 1, ms) != 1)
        return -1;
    room = buf_reserve(f->got, 65536);
    assert_non_null(room);
    n = read(f->fd, room, 65536);
    if (n < 0 && errno == ECONNRESET)
        n = 0;
    assert_true(n >= 0);
    buf_commit(f->got, (size_t) n);
    return n;
}

/* The next line Sluice sent, LF cut off. */
static const char *
fk_line(struct fake *f)
{
    for (int i = 0; i < 200; i++) {
        long lf = buf_find(f->got, '\n');

        if (lf >= 0) {
            buf_set(f->line, buf_data(f->got), (size_t) lf);
            buf_consume(f->got, (size_t) lf + 1);
            return buf_data(f->line);
        }
        if (fk_read(f, 10) == 0)
            break;
    }
    fail_msg("no line from Sluice (have \"%s\")", buf_data(f->got));
    return NULL;
}

/* Sluice sent nothing more (and the connection is still up). */
static void
fk_quiet(struct fake *f)
{
    ssize_t n = fk_read(f, 20);

    if (n >= 0 || buf_len(f->got) > 0)
        fail_msg("Sluice sent \"%s\"%s", buf_data(f->got),
                 n == 0 ? " and closed" : "");
}

/* Sluice closed the connection (having sent nothing more). */
static void
fk_eof(struct fake *f)
{
    for (int i = 0; i < 100; i++) {
        ssize_t n = fk_read(f, 10);

        if (n == 0)
            break;
        if (i == 99)
            fail_msg("Sluice did not close the connection");
    }
    if (buf_len(f->got) > 0)
        fail_msg("Sluice sent \"%s\"", buf_data(f->got));
}

static void
fk_send(struct fake *f, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(f->fd, s, n);

        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        s += w;
        n -= (size_t) w;
    }
    fk_pump(f);
}

static void
fk_say(struct fake *f, const char *s)
{
    fk_send(f, s, strlen(s));
}

/* The handshake Sluice sends when it connects. */
static void
fk_expect_hello(struct fake *f)
{
    char cpid[32];

    assert_string_equal(fk_line(f), "VERSION\t1\t2");
    snprintf(cpid, sizeof(cpid), "CPID\t%ld", (long) getpid());
    assert_string_equal(fk_line(f), cpid);
}

static const char fk_mechs[] = "MECH\tPLAIN\tplaintext\n"
                               "MECH\tLOGIN\tplaintext\n"
                               "MECH\tANONYMOUS\tanonymous\n"
                               "MECH\tCRAM-MD5\tdictionary\tactive\n"
                               "MECH\tSECRET\tprivate\n";

static void
fk_done(struct fake *f)
{
    fk_say(f, "SPID\t4242\nCUID\t7\nCOOKIE\t0123456789abcdef\nDONE\n");
}

/* Sluice connected to path (NULL: unix:sock_path) and sent its half of
 * the handshake; the server has said nothing yet. */
static void
fk_open_path(struct fake *f, const char *path, const char *qdir)
{
    struct buf *err = buf_new(64, 4096);
    char spec[160];

    memset(f, 0, sizeof(*f));
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    f->got = buf_new(4096, BUF_NOCAP);
    f->line = buf_new(256, BUF_NOCAP);
    f->fd = -1;
    if (path == NULL) {
        snprintf(spec, sizeof(spec), "unix:%s", sock_path);
        path = spec;
        f->lfd = fk_listen_unix(sock_path);
    } else {
        f->lfd = -1;
    }
    f->sv = sasl_srv_new(f->loop, path, qdir, err);
    if (f->sv == NULL)
        fail_msg("%s: %s", path, buf_data(err));
    assert_string_equal(sasl_srv_path(f->sv), path);
    buf_free(err);
}

static void
fk_open(struct fake *f)
{
    fk_open_path(f, NULL, NULL);
    assert_int_equal(fk_accept(f), 0);
    fk_expect_hello(f);
}

/* fk_open, then the server's handshake with fk_mechs. */
static void
fk_ready(struct fake *f)
{
    fk_open(f);
    fk_say(f, "VERSION\t1\t2\n");
    fk_say(f, fk_mechs);
    fk_done(f);
}

static void
fk_close(struct fake *f)
{
    sasl_srv_free(f->sv);
    if (f->fd >= 0)
        close(f->fd);
    if (f->lfd >= 0)
        close(f->lfd);
    ev_loop_destroy(f->loop);
    buf_free(f->got);
    buf_free(f->line);
}

static struct sasl_req *
start(struct fake *f, const struct sasl_client *cl, const char *mech,
      const char *resp, double timeout, struct rec *r)
{
    struct buf *why = buf_new(64, 4096);
    struct sasl_req *rq;

    in_call = 1;
    rq = sasl_start(f->sv, cl, mech, resp, timeout, rec_cb, r, why);
    in_call = 0;
    if (rq == NULL)
        fail_msg("sasl_start %s: %s", mech, buf_data(why));
    r->rq = rq;
    buf_free(why);
    return rq;
}

/* The id of the AUTH line Sluice sends next, its mechanism checked. */
static unsigned
auth_id(struct fake *f, const char *mech)
{
    const char *l = fk_line(f);
    char *end;
    unsigned long id;

    if (strncmp(l, "AUTH\t", 5) != 0)
        fail_msg("not an AUTH line: \"%s\"", l);
    id = strtoul(l + 5, &end, 10);
    if (end == l + 5 || *end != '\t' || strncmp(end + 1, mech, strlen(mech))
        || end[1 + strlen(mech)] != '\t')
        fail_msg("\"%s\": not id, then %s", l, mech);
    return (unsigned) id;
}

static void fk_printf(struct fake *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fk_printf(struct fake *f, const char *fmt, ...)
{
    struct buf *b = buf_new(256, BUF_NOCAP);
    va_list ap;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
    fk_send(f, buf_data(b), buf_len(b));
    buf_free(b);
}

static void
check_mechs(struct fake *f, const char *opts, const char *want)
{
    struct buf *out = buf_new(64, BUF_NOCAP), *err = buf_new(64, 4096);
    struct sasl_policy pol;

    assert_int_equal(parse(opts, &pol, err), 0);
    assert_int_equal(sasl_mechs(f->sv, &pol, out), 0);
    if (strcmp(buf_data(out), want) != 0)
        fail_msg("\"%s\": \"%s\", want \"%s\"", opts, buf_data(out), want);
    buf_free(out);
    buf_free(err);
}

static void
check_offered(struct fake *f, const char *opts, const char *mech, int want)
{
    struct buf *err = buf_new(64, 4096);
    struct sasl_policy pol;
    int got;

    assert_int_equal(parse(opts, &pol, err), 0);
    got = sasl_mech_offered(f->sv, &pol, mech);
    if (got != want)
        fail_msg("\"%s\": %s offered %d, want %d", opts, mech, got, want);
    buf_free(err);
}

/* Does the log file say s? */
static int
log_has(const char *s)
{
    FILE *fp = fopen(log_path, "r");
    struct buf *b = buf_new(4096, BUF_NOCAP);
    char *room;
    size_t n;
    int found;

    if (fp == NULL)
        return 0;
    while ((room = buf_reserve(b, 4096)) != NULL
           && (n = fread(room, 1, 4096, fp)) > 0)
        buf_commit(b, n);
    fclose(fp);
    found = strstr(buf_data(b), s) != NULL;
    buf_free(b);
    return found;
}

/* ------------------------------------------------------------------ */
/* the live tests */

static void
test_mechs(void **state)
{
    struct fake f;
    struct sasl_wait w1, w2;
    struct sasl_policy pol = {SASL_MF_PRIVATE, 0};
    struct buf *out = buf_new(64, BUF_NOCAP);
    int n1 = 0, n2 = 0;

    (void) state;
    memset(&w1, 0, sizeof(w1));
    memset(&w2, 0, sizeof(w2));
    fk_open(&f);
    /* not known before the handshake */
    assert_int_equal(sasl_mechs(f.sv, &pol, out), -1);
    assert_int_equal(sasl_mech_offered(f.sv, &pol, "PLAIN"), -1);
    assert_int_equal(sasl_wait(f.sv, &w1, wait_cb, &n1), 1);
    assert_int_equal(sasl_wait(f.sv, &w2, wait_cb, &n2), 1);
    fk_say(&f, "VERSION\t1\t2\n");
    fk_say(&f, fk_mechs);
    fk_say(&f, "SPID\t4242\nCUID\t7\n");
    /* not before DONE */
    assert_int_equal(n1 + n2, 0);
    assert_int_equal(sasl_mechs(f.sv, &pol, out), -1);
    fk_say(&f, "COOKIE\t0123456789abcdef\nDONE\n");
    assert_int_equal(n1, 1);
    assert_int_equal(n2, 1);
    assert_false(w1.linked);
    /* known now: nothing to wait for */
    assert_int_equal(sasl_wait(f.sv, &w1, wait_cb, &n1), 0);
    fk_pump(&f);
    assert_int_equal(n1, 1);

    check_mechs(&f, "", "PLAIN LOGIN ANONYMOUS CRAM-MD5");
    check_mechs(&f, "noplaintext", "ANONYMOUS CRAM-MD5");
    check_mechs(&f, "noanonymous", "PLAIN LOGIN CRAM-MD5");
    check_mechs(&f, "nodictionary", "PLAIN LOGIN ANONYMOUS");
    check_mechs(&f, "noactive", "PLAIN LOGIN ANONYMOUS");
    check_mechs(&f, "noplaintext noanonymous", "CRAM-MD5");
    check_mechs(&f, "noplaintext noanonymous nodictionary", "");
    check_mechs(&f, "mutual_auth", "");
    check_mechs(&f, "forward_secrecy", "");
    /* a policy that lets the private one through */
    pol.deny = pol.need = 0;
    buf_reset(out);
    assert_int_equal(sasl_mechs(f.sv, &pol, out), 0);
    assert_string_equal(buf_data(out), "PLAIN LOGIN ANONYMOUS CRAM-MD5 SECRET");
    /* sasl_mechs appends */
    assert_int_equal(sasl_mechs(f.sv, &pol, out), 0);
    assert_string_equal(buf_data(out), "PLAIN LOGIN ANONYMOUS CRAM-MD5 SECRET"
                                       "PLAIN LOGIN ANONYMOUS CRAM-MD5 SECRET");

    check_offered(&f, "", "PLAIN", 1);
    check_offered(&f, "", "plain", 1);
    check_offered(&f, "", "Cram-Md5", 1);
    check_offered(&f, "", "ANONYMOUS", 1);
    check_offered(&f, "", "SECRET", 0);
    check_offered(&f, "", "GSSAPI", 0);
    check_offered(&f, "", "", 0);
    check_offered(&f, "", "PLAIN ", 0);
    check_offered(&f, "noplaintext", "PLAIN", 0);
    check_offered(&f, "noplaintext", "LOGIN", 0);
    check_offered(&f, "noplaintext", "CRAM-MD5", 1);
    check_offered(&f, "noanonymous", "anonymous", 0);
    check_offered(&f, "noactive", "CRAM-MD5", 0);
    check_offered(&f, "nodictionary", "CRAM-MD5", 0);
    check_offered(&f, "mutual_auth", "PLAIN", 0);
    assert_int_equal(sasl_mech_offered(f.sv, &pol, "secret"), 1);
    fk_quiet(&f);
    fk_close(&f);
    buf_free(out);
}

/* MECH lines Sluice takes, and those it does not. */
static void
test_mech_names(void **state)
{
    struct fake f;
    struct sasl_policy all = {0, 0};
    struct buf *out = buf_new(64, BUF_NOCAP);
    size_t words = 0;

    (void) state;
    fk_open(&f);
    fk_say(&f, "VERSION\t1\t2\n"
               "MECH\tscram-sha-1\tmutual-auth\tforward-secrecy\tdictionary\n"
               "MECH\tbad name\tplaintext\n"
               "MECH\tABCDEFGHIJKLMNOPQRSTU\n" /* 21: too long */
               "MECH\tABCDEFGHIJKLMNOPQRST\n"  /* 20 */
               "MECH\tX.Y\n"
               "MECH\tcaf\xc3\xa9\n"
               "MECH\n"
               "MECH\t\n"
               "MECH\tGS2_KRB5\tunknown-word\tPLAINTEXT\n"
               "NOTMECH\tFOO\n"
               "MECH\tEXTERNAL\n");
    fk_done(&f);
    assert_int_equal(sasl_mechs(f.sv, &all, out), 0);
    assert_string_equal(buf_data(out), "SCRAM-SHA-1 ABCDEFGHIJKLMNOPQRST "
                                       "GS2_KRB5 EXTERNAL");
    check_mechs(&f, "mutual_auth", "SCRAM-SHA-1");
    check_mechs(&f, "mutual_auth forward_secrecy", "SCRAM-SHA-1");
    check_mechs(&f, "nodictionary", "ABCDEFGHIJKLMNOPQRST GS2_KRB5 EXTERNAL");
    /* the flag words are case-sensitive, as Dovecot writes them */
    check_mechs(&f, "noplaintext",
                "SCRAM-SHA-1 ABCDEFGHIJKLMNOPQRST "
                "GS2_KRB5 EXTERNAL");
    check_offered(&f, "", "Scram-SHA-1", 1);
    check_offered(&f, "", "bad name", 0);
    fk_close(&f);

    /* at most 64 mechanisms: the EHLO line stays bounded */
    fk_open(&f);
    fk_say(&f, "VERSION\t1\t2\n");
    for (int i = 0; i < 80; i++)
        fk_printf(&f, "MECH\tM%d\tplaintext\n", i);
    fk_done(&f);
    buf_reset(out);
    assert_int_equal(sasl_mechs(f.sv, &all, out), 0);
    for (const char *p = buf_data(out); p; p = strchr(p + 1, ' '))
        words++;
    assert_int_equal(words, 64);
    assert_non_null(strstr(buf_data(out), " M63"));
    assert_null(strstr(buf_data(out), "M64"));
    fk_close(&f);
    buf_free(out);
}

static void
test_auth_line(void **state)
{
    const struct sasl_client cl1 = {.service = "smtp",
                                    .laddr = "192.0.2.1",
                                    .raddr = "198.51.100.7",
                                    .lport = 25,
                                    .rport = 40000,
                                    .secured = 1};
    const struct sasl_client cl2 = {.service = "s\tm\001t\np\r",
                                    .laddr = "2001:db8::1",
                                    .raddr = "2001:db8::2",
                                    .lport = 587,
                                    .rport = 1};
    struct fake f;
    struct rec r1, r2, r3;

    (void) state;
    rec_init(&r1);
    rec_init(&r2);
    rec_init(&r3);
    fk_ready(&f);
    start(&f, &cl1, "PLAIN", "AGFsaWNlAHNlY3JldA==", 30., &r1);
    assert_string_equal(fk_line(&f),
                        "AUTH\t1\tPLAIN\tservice=smtp\tnologin\t"
                        "lip=192.0.2.1\trip=198.51.100.7\tlport=25\t"
                        "rport=40000\tsecured\tresp=AGFsaWNlAHNlY3JldA==");
    start(&f, &cl2, "LOGIN", NULL, 30., &r2);
    assert_string_equal(fk_line(&f), "AUTH\t2\tLOGIN\tservice="
                                     "s\001tm\0011t\001np\001r\tnologin\t"
                                     "lip=2001:db8::1\trip=2001:db8::2\t"
                                     "lport=587\trport=1");
    start(&f, &cl_plain, "PLAIN", "", 30., &r3);
    assert_string_equal(fk_line(&f),
                        "AUTH\t3\tPLAIN\tservice=smtp\tnologin\t"
                        "lip=192.0.2.1\trip=198.51.100.7\tlport=25\t"
                        "rport=40000\tresp=");
    fk_quiet(&f);
    /* answered by the server, not by sasl_start */
    check_rec(&r1, 0, SASL_OK, "");
    fk_say(&f, "OK\t1\tuser=alice\n");
    check_rec(&r1, 1, SASL_OK, "alice");
    fk_say(&f, "FAIL\t2\tuser=bob\treason=Password mismatch\n");
    check_rec(&r2, 1, SASL_FAIL, "Password mismatch");
    fk_say(&f, "FAIL\t3\n");
    check_rec(&r3, 1, SASL_FAIL, "authentication failure");
    fk_quiet(&f);
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
}

/* One request answered with line (%u: its id): the callback's view. */
static void
answer(struct fake *f, const char *line, enum sasl_status st, const char *text)
{
    struct rec r;
    unsigned id;

    rec_init(&r);
    start(f, &cl_plain, "PLAIN", "AGFsaWNlAHNlY3JldA==", 30., &r);
    id = auth_id(f, "PLAIN");
    fk_printf(f, line, id);
    check_rec(&r, 1, st, text);
    if (st == SASL_CONT)
        sasl_cancel(r.rq);
    rec_free(&r);
}

static void
test_answers(void **state)
{
    struct fake f;

    (void) state;
    fk_ready(&f);
    answer(&f, "OK\t%u\tuser=alice\n", SASL_OK, "alice");
    answer(&f, "OK\t%u\tuser=alice@example.org\tauthz=x\r\n", SASL_OK,
           "alice@example.org");
    answer(&f, "OK\t%u\tuser=a\0011b\001tc\001nd\n", SASL_OK, "a?b?c?d");
    answer(&f, "OK\t%u\tuser=\x1b[1mroot\n", SASL_OK, "?[1mroot");
    answer(&f, "OK\t%u\tfoo\tuser=x\tuser=y\n", SASL_OK, "y");
    answer(&f, "OK\t%u\n", SASL_TEMP, "Authentication backend error");
    answer(&f, "OK\t%u\tuser=\n", SASL_TEMP, "Authentication backend error");
    answer(&f, "FAIL\t%u\treason=Password\001tmismatch\n", SASL_FAIL,
           "Password?mismatch");
    answer(&f, "FAIL\t%u\treason=\n", SASL_FAIL, "authentication failure");
    answer(&f, "FAIL\t%u\tuser=bob\n", SASL_FAIL, "authentication failure");
    answer(&f, "FAIL\t%u\ttemp\n", SASL_TEMP,
           "Temporary authentication server failure");
    answer(&f, "FAIL\t%u\treason=Try later\ttemp\n", SASL_TEMP, "Try later");
    answer(&f, "FAIL\t%u\ttemp\treason=\n", SASL_TEMP,
           "Temporary authentication server failure");
    answer(&f, "FAIL\t%u\tcode=temp_fail\n", SASL_TEMP,
           "Temporary authentication server failure");
    answer(&f, "FAIL\t%u\tcode=temp_fail\treason=Busy\n", SASL_TEMP, "Busy");
    answer(&f, "FAIL\t%u\tcode=authz_fail\treason=Not you\n", SASL_FAIL,
           "Not you");
    answer(&f, "CONT\t%u\tnot base64\n", SASL_TEMP,
           "Authentication backend error");
    answer(&f, "CONT\t%u\tQQ\n", SASL_TEMP, "Authentication backend error");
    answer(&f, "CONT\t%u\n", SASL_TEMP, "Authentication backend error");
    answer(&f, "CONT\t%u\t\n", SASL_CONT, "");
    answer(&f, "CONT\t%u\tVXNlcm5hbWU6\n", SASL_CONT, "VXNlcm5hbWU6");
    fk_close(&f);
}

/* A challenge, the client's answer, then OK; a second round too. */
static void
test_cont(void **state)
{
    struct fake f;
    struct rec r;
    struct buf *why = buf_new(64, 4096);
    unsigned id;

    (void) state;
    rec_init(&r);
    fk_ready(&f);
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r);
    id = auth_id(&f, "LOGIN");
    fk_printf(&f, "CONT\t%u\tVXNlcm5hbWU6\n", id);
    check_rec(&r, 1, SASL_CONT, "VXNlcm5hbWU6");
    in_call = 1;
    assert_int_equal(sasl_next(r.rq, "YWxpY2U=", why), 0);
    in_call = 0;
    assert_string_equal(fk_line(&f), "CONT\t1\tYWxpY2U=");
    fk_printf(&f, "CONT\t%u\tUGFzc3dvcmQ6\n", id);
    check_rec(&r, 2, SASL_CONT, "UGFzc3dvcmQ6");
    in_call = 1;
    assert_int_equal(sasl_next(r.rq, "", why), 0);
    in_call = 0;
    assert_string_equal(fk_line(&f), "CONT\t1\t");
    fk_printf(&f, "OK\t%u\tuser=alice\n", id);
    check_rec(&r, 3, SASL_OK, "alice");
    fk_quiet(&f);
    fk_close(&f);
    rec_free(&r);
    buf_free(why);
}

static void
test_out_of_order(void **state)
{
    struct fake f;
    struct rec r1, r2, r3;
    unsigned id1, id2, id3;

    (void) state;
    rec_init(&r1);
    rec_init(&r2);
    rec_init(&r3);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", "AGFsaWNlAHNlY3JldA==", 30., &r1);
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r2);
    start(&f, &cl_plain, "CRAM-MD5", NULL, 30., &r3);
    id1 = auth_id(&f, "PLAIN");
    id2 = auth_id(&f, "LOGIN");
    id3 = auth_id(&f, "CRAM-MD5");
    assert_true(id1 != id2 && id2 != id3 && id1 != id3);
    /* the second first, then the third, then the first; one write */
    fk_printf(&f,
              "FAIL\t%u\treason=two\nCONT\t%u\tdGhyZWU=\nOK\t%u\tuser=one\n",
              id2, id3, id1);
    check_rec(&r1, 1, SASL_OK, "one");
    check_rec(&r2, 1, SASL_FAIL, "two");
    check_rec(&r3, 1, SASL_CONT, "dGhyZWU=");
    assert_true(r2.order < r3.order && r3.order < r1.order);
    /* and split across writes */
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r2);
    id1 = auth_id(&f, "PLAIN");
    id2 = auth_id(&f, "PLAIN");
    fk_printf(&f, "OK\t%u\tuser=b", id2);
    check_rec(&r2, 1, SASL_FAIL, "two");
    fk_printf(&f, "ob\nFAIL\t%u\tre", id1);
    check_rec(&r2, 2, SASL_OK, "bob");
    check_rec(&r1, 1, SASL_OK, "one");
    fk_say(&f, "ason=no\n");
    check_rec(&r1, 2, SASL_FAIL, "no");
    sasl_cancel(r3.rq);
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
}

/* Cancelled requests, answers to no request, garbage: ignored, and the
 * connection stays. */
static void
test_cancel(void **state)
{
    struct fake f;
    struct rec r1, r2, r3;
    struct buf *why = buf_new(64, 4096);
    unsigned id1, id2, id3;

    (void) state;
    rec_init(&r1);
    rec_init(&r2);
    rec_init(&r3);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r2);
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r3);
    id1 = auth_id(&f, "PLAIN");
    id2 = auth_id(&f, "PLAIN");
    id3 = auth_id(&f, "LOGIN");
    sasl_cancel(r1.rq);
    sasl_cancel(NULL);
    fk_printf(&f, "OK\t%u\tuser=late\nCONT\t%u\tQUJD\n", id1, id1);
    check_rec(&r1, 0, SASL_OK, "");
    fk_printf(&f,
              "OK\t999\tuser=x\nOK\t%ux\tuser=x\nOK\t\tuser=x\n"
              "OK\t4294967296\tuser=x\nOK\t99999999999999999999999\tuser=x\n"
              "OK\nBOGUS\t%u\tuser=x\nok\t%u\tuser=x\n\n\r\n\t\t\n"
              "DONE\nVERSION\t1\t2\nMECH\tFOO\n",
              id2, id2, id2);
    check_rec(&r2, 0, SASL_OK, "");
    /* a request waiting for its client ignores the server */
    fk_printf(&f, "CONT\t%u\tQUJD\n", id3);
    check_rec(&r3, 1, SASL_CONT, "QUJD");
    fk_printf(&f, "OK\t%u\tuser=early\nCONT\t%u\tQUJD\n", id3, id3);
    check_rec(&r3, 1, SASL_CONT, "QUJD");
    in_call = 1;
    assert_int_equal(sasl_next(r3.rq, "QUJD", why), 0);
    in_call = 0;
    assert_string_equal(fk_line(&f), "CONT\t3\tQUJD");
    fk_printf(&f, "OK\t%u\tuser=carol\nOK\t%u\tuser=bob\n", id3, id2);
    check_rec(&r2, 1, SASL_OK, "bob");
    check_rec(&r3, 2, SASL_OK, "carol");
    /* a cancelled challenge: its late answer is dropped too */
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r1);
    id1 = auth_id(&f, "LOGIN");
    fk_printf(&f, "CONT\t%u\tQUJD\n", id1);
    check_rec(&r1, 1, SASL_CONT, "QUJD");
    sasl_cancel(r1.rq);
    fk_printf(&f, "OK\t%u\tuser=late\n", id1);
    check_rec(&r1, 1, SASL_CONT, "QUJD");
    fk_quiet(&f);
    /* the mechanism list is the handshake's: later MECH lines do not count */
    check_mechs(&f, "", "PLAIN LOGIN ANONYMOUS CRAM-MD5");
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
    buf_free(why);
}

static void
test_timeout(void **state)
{
    struct fake f;
    struct rec r1, r2;
    unsigned id1, id2;
    int i;

    (void) state;
    rec_init(&r1);
    rec_init(&r2);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 0.05, &r1);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r2);
    id1 = auth_id(&f, "PLAIN");
    id2 = auth_id(&f, "PLAIN");
    for (i = 0; i < 100 && r1.n == 0; i++)
        ev_run(f.loop, EVRUN_ONCE);
    check_rec(&r1, 1, SASL_TEMP, "Authentication server timed out");
    assert_true(log_has("no answer to request 1 in 0 s"));
    fk_printf(&f, "OK\t%u\tuser=late\nOK\t%u\tuser=bob\n", id1, id2);
    check_rec(&r1, 1, SASL_TEMP, "Authentication server timed out");
    check_rec(&r2, 1, SASL_OK, "bob");
    fk_quiet(&f);
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
}

/* A request started before the handshake is done waits for DONE. */
static void
test_before_handshake(void **state)
{
    struct fake f;
    struct rec r1, r2;
    int nw = 0;
    struct sasl_wait w;

    (void) state;
    memset(&w, 0, sizeof(w));
    rec_init(&r1);
    rec_init(&r2);
    fk_open(&f);
    start(&f, &cl_plain, "PLAIN", "AGFsaWNlAHNlY3JldA==", 30., &r1);
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 1);
    fk_quiet(&f);
    fk_say(&f, "VERSION\t1\t2\n");
    fk_say(&f, fk_mechs);
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r2);
    fk_quiet(&f);
    /* an answer before DONE is no answer */
    fk_say(&f, "OK\t1\tuser=early\n");
    check_rec(&r1, 0, SASL_OK, "");
    assert_int_equal(nw, 0);
    fk_done(&f);
    assert_int_equal(nw, 1);
    /* both now, in some order */
    {
        char *l1 = strdup(fk_line(&f));
        const char *l2 = fk_line(&f), *plain, *login;

        assert_non_null(l1);
        plain = strncmp(l1, "AUTH\t1\t", 7) == 0 ? l1 : l2;
        login = plain == l1 ? l2 : l1;
        assert_string_equal(plain, "AUTH\t1\tPLAIN\tservice=smtp\tnologin\t"
                                   "lip=192.0.2.1\trip=198.51.100.7\t"
                                   "lport=25\trport=40000\t"
                                   "resp=AGFsaWNlAHNlY3JldA==");
        assert_string_equal(login, "AUTH\t2\tLOGIN\tservice=smtp\tnologin\t"
                                   "lip=192.0.2.1\trip=198.51.100.7\t"
                                   "lport=25\trport=40000");
        free(l1);
    }
    fk_quiet(&f);
    fk_say(&f, "OK\t2\tuser=two\nOK\t1\tuser=one\n");
    check_rec(&r1, 1, SASL_OK, "one");
    check_rec(&r2, 1, SASL_OK, "two");
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
}

/* A handshake Sluice refuses: the connection is dropped, pending requests
 * get SASL_TEMP and waiters run; no list is known and, for a second, no
 * new attempt is made. */
static void
bad_handshake(const char *server, const char *logged)
{
    struct fake f;
    struct rec r1, r2;
    struct sasl_wait w;
    struct sasl_policy pol = {SASL_MF_PRIVATE, 0};
    struct buf *why = buf_new(64, 4096), *out = buf_new(64, BUF_NOCAP);
    int nw = 0;

    memset(&w, 0, sizeof(w));
    rec_init(&r1);
    rec_init(&r2);
    fk_open(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 1);
    /* the callback may try again: not now */
    r1.restart = &f;
    fk_say(&f, server);
    check_rec(&r1, 1, SASL_TEMP, "Can't connect to authentication server");
    assert_int_equal(r1.restarted, -1);
    assert_int_equal(nw, 1);
    fk_eof(&f);
    if (!log_has(logged))
        fail_msg("no \"%s\" in the log", logged);
    assert_int_equal(sasl_mechs(f.sv, &pol, out), -1);
    assert_int_equal(sasl_mech_offered(f.sv, &pol, "PLAIN"), -1);
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 0);
    assert_null(
        sasl_start(f.sv, &cl_plain, "PLAIN", NULL, 30., rec_cb, &r2, why));
    assert_string_equal(buf_data(why),
                        "Can't connect to authentication server");
    fk_pump(&f);
    check_rec(&r2, 0, SASL_OK, "");
    assert_int_equal(nw, 1);
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    buf_free(why);
    buf_free(out);
}

static void
test_bad_handshake(void **state)
{
    (void) state;
    bad_handshake("VERSION\t2\t0\nMECH\tPLAIN\tplaintext\nDONE\n",
                  "protocol error: unsupported protocol version 2");
    bad_handshake("VERSION\t10\t0\n",
                  "protocol error: unsupported protocol version 10");
    bad_handshake("VERSION\n",
                  "protocol error: unsupported protocol version (none)");
    bad_handshake("VERSION\t\001t\x1b\n",
                  "protocol error: unsupported protocol version ??");
    bad_handshake("MECH\tPLAIN\tplaintext\nVERSION\t1\t2\nDONE\n",
                  "protocol error: the handshake does not start with VERSION");
    bad_handshake("\nVERSION\t1\t2\nDONE\n",
                  "the handshake does not start with VERSION");
    bad_handshake("OK\t1\tuser=alice\n",
                  "the handshake does not start with VERSION");
}

/* Append a line of n bytes (LF included) answering request 1:
 * "OK\t1\tuser=uuu...". */
static void
long_ok(struct buf *b, size_t n)
{
    size_t end = buf_len(b) + n;

    buf_puts(b, "OK\t1\tuser=");
    while (buf_len(b) < end - 1)
        buf_putc(b, 'u');
    buf_putc(b, '\n');
}

/* Lines over SASL_LINE_MAX drop the connection: here each one starts a
 * read (the buffer is empty when it comes). */
static void
test_long_line(void **state)
{
    static const size_t sizes[] = {SASL_LINE_MAX - 1, SASL_LINE_MAX,
                                   SASL_LINE_MAX + 1, 20 * 1024,
                                   SASL_LINE_MAX + 4096};
    struct buf *big = buf_new(32768, BUF_NOCAP);
    struct fake f;
    struct rec r;
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        rec_init(&r);
        fk_ready(&f);
        start(&f, &cl_plain, "PLAIN", NULL, 30., &r);
        assert_int_equal(auth_id(&f, "PLAIN"), 1);
        buf_reset(big);
        long_ok(big, sizes[i]);
        fk_send(&f, buf_data(big), buf_len(big));
        if (sizes[i] <= SASL_LINE_MAX) {
            assert_int_equal(r.n, 1);
            assert_int_equal(r.st, SASL_OK);
            assert_int_equal(buf_len(r.text), sizes[i] - 11);
            fk_quiet(&f);
        } else {
            check_rec(&r, 1, SASL_TEMP,
                      "Connection lost to authentication server");
            fk_eof(&f);
            assert_true(log_has("protocol error: line too long"));
        }
        fk_close(&f);
        rec_free(&r);
    }

    /* no LF at all */
    rec_init(&r);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r);
    assert_int_equal(auth_id(&f, "PLAIN"), 1);
    buf_reset(big);
    long_ok(big, 20 * 1024);
    buf_truncate(big, buf_len(big) - 1);
    fk_send(&f, buf_data(big), buf_len(big));
    check_rec(&r, 1, SASL_TEMP, "Connection lost to authentication server");
    fk_eof(&f);
    fk_close(&f);
    rec_free(&r);
    buf_free(big);
}

/*
 * Regressions: bugs the fuzzer and this test found in sasl.c, fixed.
 */

/* A long line that does not start a read (a short line before it in the
 * same write) is taken whole: sasl_read_cb checks the partial line only
 * after each 4096-byte read, in a buffer whose cap is SASL_LINE_MAX +
 * 4096, so a line of up to about 20 KB whose LF comes in the read that
 * crosses SASL_LINE_MAX is not "over SASL_LINE_MAX". */
static void
test_bug_long_line_split(void **state)
{
    struct buf *big = buf_new(32768, BUF_NOCAP);
    struct fake f;
    struct rec r1, r2;

    (void) state;
    rec_init(&r1);
    rec_init(&r2);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r2);
    assert_int_equal(auth_id(&f, "PLAIN"), 1);
    assert_int_equal(auth_id(&f, "PLAIN"), 2);
    /* the first read brings the short line and 4096 - 17 bytes of the
     * long one, which is 2000 bytes over */
    buf_sets(big, "FAIL\t2\treason=x\n");
    long_ok(big, SASL_LINE_MAX + 2000);
    fk_send(&f, buf_data(big), buf_len(big));
    check_rec(&r2, 1, SASL_FAIL, "x");
    check_rec(&r1, 1, SASL_TEMP, "Connection lost to authentication server");
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    buf_free(big);
}

/* The same in the handshake: a 20 KB COOKIE line after shorter ones, and
 * the handshake completes. */
static void
test_bug_long_line_handshake(void **state)
{
    struct buf *big = buf_new(32768, BUF_NOCAP);
    struct fake f;
    struct rec r;

    (void) state;
    rec_init(&r);
    fk_open(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r);
    buf_sets(big, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nCOOKIE\t");
    for (int i = 0; i < 20000; i++)
        buf_putc(big, 'c');
    buf_puts(big, "\nDONE\n");
    fk_send(&f, buf_data(big), buf_len(big));
    check_rec(&r, 1, SASL_TEMP, "Can't connect to authentication server");
    fk_close(&f);
    rec_free(&r);
    buf_free(big);
}

/* A name the server lists twice: only its first entry counts, for the
 * EHLO list (sasl_mechs) and for AUTH (sasl_mech_offered) alike; once
 * EHLO could announce a mechanism that AUTH then refused. */
static void
test_bug_duplicate_mech(void **state)
{
    struct fake f;

    (void) state;
    fk_open(&f);
    fk_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\tprivate\n"
               "MECH\tPLAIN\tplaintext\n");
    fk_done(&f);
    /* the first one stands (private): EHLO and AUTH agree on it */
    check_mechs(&f, "", "");
    check_offered(&f, "", "PLAIN", 0);
    fk_close(&f);
}

/* An id that is not a plain decimal number answers a request: strtoul
 * takes leading white space and a sign, and "-18446744073709551615" is
 * 1. */
static void
test_bug_lenient_ids(void **state)
{
    static const char *const ids[] = {"+1", " 1", "-18446744073709551615",
                                      "\v1"};
    struct fake f;
    struct rec r;
    size_t i;

    (void) state;
    rec_init(&r);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r);
    assert_int_equal(auth_id(&f, "PLAIN"), 1);
    for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        fk_printf(&f, "OK\t%s\tuser=x\n", ids[i]);
        if (r.n != 0)
            fail_msg("id \"%s\" answered request 1", ids[i]);
    }
    fk_say(&f, "OK\t1\tuser=y\n");
    check_rec(&r, 1, SASL_OK, "y");
    fk_close(&f);
    rec_free(&r);
}

/* The server closes: requests it owes an answer get SASL_TEMP, one that
 * waits for its client fails at sasl_next; the list is kept. A
 * connection that worked is made again at once (here from the callback:
 * that request waits for the new handshake); after an attempt that
 * failed, none for a second. */
static void
test_lost(void **state)
{
    struct fake f;
    struct rec r1, r2, r3, r4, r5;
    struct sasl_wait w;
    struct sasl_policy pol = {SASL_MF_PRIVATE, 0};
    struct buf *why = buf_new(64, 4096), *out = buf_new(64, BUF_NOCAP);
    unsigned id2;
    int nw = 0;

    (void) state;
    memset(&w, 0, sizeof(w));
    rec_init(&r1);
    rec_init(&r2);
    rec_init(&r3);
    rec_init(&r4);
    rec_init(&r5);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r2);
    assert_int_equal(auth_id(&f, "PLAIN"), 1);
    id2 = auth_id(&f, "LOGIN");
    fk_printf(&f, "CONT\t%u\tVXNlcm5hbWU6\n", id2);
    check_rec(&r2, 1, SASL_CONT, "VXNlcm5hbWU6");
    r1.restart = &f;
    close(f.fd);
    f.fd = -1;
    fk_pump(&f);
    check_rec(&r1, 1, SASL_TEMP, "Connection lost to authentication server");
    assert_int_equal(r1.restarted, 1);
    check_rec(&r2, 1, SASL_CONT, "VXNlcm5hbWU6");
    assert_true(log_has("the authentication server closed the connection"));
    in_call = 1;
    assert_int_equal(sasl_next(r2.rq, "YWxpY2U=", why), -1);
    in_call = 0;
    assert_string_equal(buf_data(why),
                        "Connection lost to authentication server");
    /* the list is kept */
    assert_int_equal(sasl_mechs(f.sv, &pol, out), 0);
    assert_string_equal(buf_data(out), "PLAIN LOGIN ANONYMOUS CRAM-MD5");
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 0);

    /* connected again already; the callback's request goes after DONE */
    assert_int_equal(fk_accept(&f), 0);
    fk_expect_hello(&f);
    fk_quiet(&f);
    buf_reset(out);
    assert_int_equal(sasl_mechs(f.sv, &pol, out), 0);
    assert_string_equal(buf_data(out), "PLAIN LOGIN ANONYMOUS CRAM-MD5");
    fk_say(&f, "VERSION\t1\t3\nMECH\tPLAIN\tplaintext\nMECH\tEXTERNAL\n");
    fk_done(&f);
    buf_reset(out);
    assert_int_equal(sasl_mechs(f.sv, &pol, out), 0);
    assert_string_equal(buf_data(out), "PLAIN EXTERNAL");
    /* ids go on */
    assert_int_equal(auth_id(&f, "PLAIN"), 3);
    start(&f, &cl_plain, "EXTERNAL", NULL, 30., &r4);
    assert_int_equal(auth_id(&f, "EXTERNAL"), 4);
    fk_say(&f, "OK\t4\tuser=four\nFAIL\t3\n");
    check_rec(&r1, 2, SASL_FAIL, "authentication failure");
    check_rec(&r4, 1, SASL_OK, "four");
    fk_quiet(&f);

    /* lost again, and nobody listens: the attempt from the callback
     * fails, and for a second no other is made */
    close(f.lfd);
    f.lfd = -1;
    unlink(sock_path);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r3);
    assert_int_equal(auth_id(&f, "PLAIN"), 5);
    r3.restart = &f;
    close(f.fd);
    f.fd = -1;
    fk_pump(&f);
    check_rec(&r3, 1, SASL_TEMP, "Connection lost to authentication server");
    assert_int_equal(r3.restarted, -1);
    buf_reset(why);
    assert_null(
        sasl_start(f.sv, &cl_plain, "PLAIN", NULL, 30., rec_cb, &r5, why));
    assert_string_equal(buf_data(why),
                        "Can't connect to authentication server");
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 0);
    f.lfd = fk_listen_unix(sock_path);
    buf_reset(why);
    assert_null(
        sasl_start(f.sv, &cl_plain, "PLAIN", NULL, 30., rec_cb, &r5, why));

    /* a second later: connected again */
    usleep(1100 * 1000);
    ev_now_update(f.loop);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r5);
    assert_int_equal(fk_accept(&f), 0);
    fk_expect_hello(&f);
    fk_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n");
    fk_done(&f);
    assert_int_equal(auth_id(&f, "PLAIN"), 6);
    fk_say(&f, "OK\t6\tuser=six\n");
    check_rec(&r5, 1, SASL_OK, "six");
    assert_int_equal(nw, 0);
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
    rec_free(&r4);
    rec_free(&r5);
    buf_free(why);
    buf_free(out);
}

static void
test_waiters(void **state)
{
    struct fake f;
    struct sasl_wait w1, w2, w3;
    int n1 = 0, n2 = 0, n3 = 0;

    (void) state;
    memset(&w1, 0, sizeof(w1));
    memset(&w2, 0, sizeof(w2));
    memset(&w3, 0, sizeof(w3));
    fk_open(&f);
    assert_int_equal(sasl_wait(f.sv, &w1, wait_cb, &n1), 1);
    assert_int_equal(sasl_wait(f.sv, &w2, wait_cb, &n2), 1);
    assert_int_equal(sasl_wait(f.sv, &w3, wait_cb, &n3), 1);
    sasl_wait_cancel(f.sv, &w2);
    sasl_wait_cancel(f.sv, &w2);
    assert_false(w2.linked);
    fk_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n");
    fk_done(&f);
    assert_int_equal(n1, 1);
    assert_int_equal(n2, 0);
    assert_int_equal(n3, 1);
    sasl_wait_cancel(f.sv, &w1);
    fk_close(&f);

    /* freed with waiters and requests pending: no callback */
    {
        struct rec r1, r2;

        rec_init(&r1);
        rec_init(&r2);
        fk_ready(&f);
        start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
        start(&f, &cl_plain, "LOGIN", NULL, 30., &r2);
        auth_id(&f, "PLAIN");
        fk_say(&f, "CONT\t2\tQUJD\n");
        check_rec(&r2, 1, SASL_CONT, "QUJD");
        fk_close(&f);
        check_rec(&r1, 0, SASL_OK, "");
        rec_free(&r1);
        rec_free(&r2);
    }
    fk_open(&f);
    n1 = 0;
    assert_int_equal(sasl_wait(f.sv, &w1, wait_cb, &n1), 1);
    fk_close(&f);
    assert_int_equal(n1, 0);
    sasl_srv_free(NULL);
}

/* A write that fails: sasl_next and sasl_start say so at once, the
 * others learn it on the loop; a reset while Sluice's line is unread. */
static void
test_write_fail(void **state)
{
    struct fake f;
    struct rec r1, r2, r3;
    struct buf *why = buf_new(64, 4096);

    (void) state;
    rec_init(&r1);
    rec_init(&r2);
    rec_init(&r3);
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r2);
    assert_int_equal(auth_id(&f, "PLAIN"), 1);
    assert_int_equal(auth_id(&f, "LOGIN"), 2);
    fk_say(&f, "CONT\t2\tVXNlcm5hbWU6\n");
    check_rec(&r2, 1, SASL_CONT, "VXNlcm5hbWU6");
    close(f.fd); /* and no loop turn before the calls */
    f.fd = -1;
    in_call = 1;
    assert_int_equal(sasl_next(r2.rq, "YWxpY2U=", why), -1);
    assert_string_equal(buf_data(why),
                        "Connection lost to authentication server");
    buf_reset(why);
    assert_null(
        sasl_start(f.sv, &cl_plain, "PLAIN", NULL, 30., rec_cb, &r3, why));
    in_call = 0;
    assert_string_equal(buf_data(why),
                        "Connection lost to authentication server");
    assert_true(log_has("write failed: Broken pipe"));
    check_rec(&r1, 0, SASL_OK, "");
    fk_pump(&f);
    check_rec(&r1, 1, SASL_TEMP, "Connection lost to authentication server");
    check_rec(&r2, 1, SASL_CONT, "VXNlcm5hbWU6");
    check_rec(&r3, 0, SASL_OK, "");
    fk_close(&f);

    /* the server goes with Sluice's AUTH line unread: a reset */
    fk_ready(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r3);
    fk_pump(&f);
    close(f.fd);
    f.fd = -1;
    fk_pump(&f);
    check_rec(&r3, 1, SASL_TEMP, "Connection lost to authentication server");
    assert_true(log_has("read failed: Connection reset by peer"));
    fk_close(&f);

    /* DONE, and the server gone before Sluice sends what waited for it */
    rec_free(&r1);
    rec_init(&r1);
    fk_open(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r1);
    assert_int_equal(write(f.fd, "VERSION\t1\t2\nDONE\n", 17), 17);
    close(f.fd);
    f.fd = -1;
    fk_pump(&f);
    check_rec(&r1, 1, SASL_TEMP, "Connection lost to authentication server");
    fk_close(&f);

    /* the server goes while Sluice's output waits for room */
    rec_free(&r1);
    rec_init(&r1);
    fk_ready(&f);
    {
        struct buf *resp = buf_new(1000001, BUF_NOCAP);

        while (buf_len(resp) < 1000000)
            buf_puts(resp, "QUJD");
        start(&f, &cl_plain, "PLAIN", buf_data(resp), 30., &r1);
        buf_free(resp);
    }
    close(f.fd);
    f.fd = -1;
    fk_pump(&f);
    check_rec(&r1, 1, SASL_TEMP, "Connection lost to authentication server");
    fk_close(&f);
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
    buf_free(why);
}

/* A server that does not read: Sluice queues (up to 4 MB), then says
 * "overloaded"; what is queued goes when the server reads. Requests
 * started before the handshake that do not fit when it is done wait for
 * their timer. */
static void
test_backpressure(void **state)
{
    struct fake f;
    struct rec r[6];
    struct buf *resp = buf_new(1000001, BUF_NOCAP), *why = buf_new(64, 4096);
    size_t i, n;
    int k;

    (void) state;
    while (buf_len(resp) < 1000000)
        buf_puts(resp, "QUJD");
    for (i = 0; i < 6; i++)
        rec_init(&r[i]);
    fk_ready(&f);
    for (i = 0; i < 6; i++) {
        in_call = 1;
        r[i].rq = sasl_start(f.sv, &cl_plain, "PLAIN", buf_data(resp), 30.,
                             rec_cb, &r[i], why);
        in_call = 0;
        if (r[i].rq == NULL)
            break;
    }
    /* 4 MB: four of them, less what the socket took */
    if (i < 4 || i == 6)
        fail_msg("%zu requests of 1 MB queued", i);
    assert_string_equal(buf_data(why),
                        "Authentication server connection overloaded");
    /* the others are whole, in order, when the server reads */
    for (k = 1; k <= (int) i; k++) {
        const char *l = fk_line(&f);
        char head[16];

        snprintf(head, sizeof(head), "AUTH\t%d\t", k);
        assert_int_equal(strncmp(l, head, strlen(head)), 0);
        n = strlen(l);
        assert_true(n > 1000000);
        assert_string_equal(l + n - 1000000, buf_data(resp));
    }
    fk_quiet(&f);
    for (k = 0; k < (int) i; k++) {
        fk_printf(&f, "OK\t%d\tuser=u%d\n", k + 1, k + 1);
        assert_int_equal(r[k].n, 1);
        assert_int_equal(r[k].st, SASL_OK);
    }
    /* an answer to a challenge over the cap by itself */
    start(&f, &cl_plain, "LOGIN", NULL, 30., &r[5]);
    k = (int) auth_id(&f, "LOGIN");
    fk_printf(&f, "CONT\t%d\tQQ==\n", k);
    check_rec(&r[5], 1, SASL_CONT, "QQ==");
    while (buf_len(resp) <= 4 * 1024 * 1024)
        buf_puts(resp, "QUJD");
    buf_reset(why);
    in_call = 1;
    assert_int_equal(sasl_next(r[5].rq, buf_data(resp), why), -1);
    in_call = 0;
    assert_string_equal(buf_data(why),
                        "Authentication server connection overloaded");
    buf_truncate(resp, 1000000);
    fk_quiet(&f);
    fk_close(&f);

    /* before the handshake: five of 1 MB; at DONE the newest four fit */
    for (i = 0; i < 6; i++) {
        rec_free(&r[i]);
        rec_init(&r[i]);
    }
    fk_open(&f);
    for (i = 0; i < 5; i++)
        start(&f, &cl_plain, "PLAIN", buf_data(resp), i == 0 ? 0.3 : 30.,
              &r[i]);
    fk_say(&f, "VERSION\t1\t2\n");
    fk_say(&f, fk_mechs);
    fk_done(&f);
    for (k = 0; k < 4; k++) {
        const char *l = fk_line(&f);
        char head[16];

        snprintf(head, sizeof(head), "AUTH\t%d\t", 5 - k);
        assert_int_equal(strncmp(l, head, strlen(head)), 0);
    }
    fk_quiet(&f);
    for (k = 0; k < 100 && r[0].n == 0; k++)
        ev_run(f.loop, EVRUN_ONCE);
    check_rec(&r[0], 1, SASL_TEMP, "Authentication server timed out");
    fk_say(&f, "OK\t1\tuser=late\nOK\t5\tuser=five\n");
    check_rec(&r[0], 1, SASL_TEMP, "Authentication server timed out");
    check_rec(&r[4], 1, SASL_OK, "five");
    fk_close(&f);
    for (i = 0; i < 6; i++)
        rec_free(&r[i]);
    buf_free(resp);
    buf_free(why);
}

/* A server that accepts and says nothing: after SASL_CONNECT_TIMEOUT
 * (5 s) the handshake has failed, for requests and waiters alike. */
static void
test_hs_timeout(void **state)
{
    struct fake f;
    struct rec r;
    struct sasl_wait w;
    int nw = 0, i;

    (void) state;
    memset(&w, 0, sizeof(w));
    rec_init(&r);
    fk_open(&f);
    start(&f, &cl_plain, "PLAIN", NULL, 30., &r);
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 1);
    fk_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n");
    for (i = 0; i < 1000 && r.n == 0; i++)
        ev_run(f.loop, EVRUN_ONCE);
    check_rec(&r, 1, SASL_TEMP, "Can't connect to authentication server");
    assert_int_equal(nw, 1);
    assert_true(log_has("failed: no handshake in 5 s"));
    fk_eof(&f);
    fk_close(&f);
    rec_free(&r);
}

/* sasl_probe, for sluice check: blocking, no loop. */
static void
test_probe(void **state)
{
    struct buf *err = buf_new(64, 4096);
    char spec[160];
    int lfd = fk_listen_unix(sock_path);

    (void) state;
    snprintf(spec, sizeof(spec), "unix:%s", sock_path);
    assert_int_equal(sasl_probe(spec, NULL, err), 0);
    assert_int_equal(sasl_probe("auth", dir, err), 0);
    close(lfd);
    unlink(sock_path);
    assert_int_equal(sasl_probe(spec, NULL, err), -1);
    assert_non_null(strstr(buf_data(err), "cannot connect to "));
    buf_reset(err);
    assert_int_equal(sasl_probe("", NULL, err), -1);
    assert_non_null(strstr(buf_data(err), "empty path"));
    buf_reset(err);
    assert_int_equal(sasl_probe("inet:127.0.0.1:notaport", NULL, err), -1);
    assert_true(buf_len(err) > 0);
    buf_free(err);
}

/* Paths: relative to qdir, TCP, and those refused. */
static void
test_paths(void **state)
{
    struct fake f;
    struct buf *err = buf_new(64, 4096);
    struct sasl_wait w;
    struct sasl_policy pol = {SASL_MF_PRIVATE, 0};
    struct rec r;
    char p[160];
    int nw = 0, i;

    (void) state;
    memset(&w, 0, sizeof(w));
    rec_init(&r);
    /* refused at once */
    assert_null(sasl_srv_new(NULL, "", dir, err));
    assert_non_null(strstr(buf_data(err), "empty path"));
    buf_reset(err);
    assert_null(sasl_srv_new(NULL, "unix:", dir, err));
    assert_non_null(strstr(buf_data(err), "empty path"));
    buf_reset(err);
    assert_null(sasl_srv_new(NULL, "inet:127.0.0.1", dir, err));
    assert_non_null(strstr(buf_data(err), "not inet:host:port"));
    buf_reset(err);
    assert_null(sasl_srv_new(NULL, "inet::12345", dir, err));
    assert_non_null(strstr(buf_data(err), "not inet:host:port"));
    buf_reset(err);
    assert_null(sasl_srv_new(NULL, "inet:127.0.0.1:", dir, err));
    assert_non_null(strstr(buf_data(err), "not inet:host:port"));
    buf_reset(err);
    memset(p, 'x', sizeof(p) - 1);
    p[0] = '/';
    p[sizeof(p) - 1] = '\0';
    assert_null(sasl_srv_new(NULL, p, dir, err));
    assert_non_null(strstr(buf_data(err), "socket path too long"));

    /* relative: under qdir */
    snprintf(p, sizeof(p), "%s/private", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/private/auth", dir);
    {
        int lfd = fk_listen_unix(p);

        fk_open_path(&f, "private/auth", dir);
        f.lfd = lfd;
        assert_int_equal(fk_accept(&f), 0);
        fk_expect_hello(&f);
        fk_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n");
        fk_done(&f);
        check_mechs(&f, "", "PLAIN");
        fk_close(&f);
        unlink(p);
    }

    /* nobody listening: the list is not known, nothing to wait for, no
     * request */
    fk_open_path(&f, p, NULL);
    assert_int_equal(sasl_mech_offered(f.sv, &pol, "PLAIN"), -1);
    assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 0);
    assert_null(
        sasl_start(f.sv, &cl_plain, "PLAIN", NULL, 30., rec_cb, &r, err));
    assert_string_equal(buf_data(err),
                        "Can't connect to authentication server");
    assert_true(log_has("SASL: Connect to "));
    fk_close(&f);

    /* TCP: a connect under way first */
    {
        struct sockaddr_in sin;
        socklen_t sl = sizeof(sin);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(lfd >= 0);
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(lfd, (struct sockaddr *) &sin, sizeof(sin)), 0);
        assert_int_equal(listen(lfd, 8), 0);
        assert_int_equal(getsockname(lfd, (struct sockaddr *) &sin, &sl), 0);
        snprintf(p, sizeof(p), "inet:127.0.0.1:%d", ntohs(sin.sin_port));
        fk_open_path(&f, p, NULL);
        f.lfd = lfd;
        assert_int_equal(sasl_wait(f.sv, &w, wait_cb, &nw), 1);
        start(&f, &cl_plain, "PLAIN", NULL, 30., &r);
        assert_int_equal(fk_accept(&f), 0);
        fk_expect_hello(&f);
        fk_say(&f, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\n");
        fk_done(&f);
        assert_int_equal(nw, 1);
        assert_int_equal(auth_id(&f, "PLAIN"), 1);
        fk_say(&f, "OK\t1\tuser=tcp\n");
        check_rec(&r, 1, SASL_OK, "tcp");
        fk_close(&f);

        /* and refused: the waiter learns it, now or on the loop */
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        sin.sin_port = 0;
        assert_int_equal(bind(lfd, (struct sockaddr *) &sin, sizeof(sin)), 0);
        sl = sizeof(sin);
        assert_int_equal(getsockname(lfd, (struct sockaddr *) &sin, &sl), 0);
        snprintf(p, sizeof(p), "inet:127.0.0.1:%d", ntohs(sin.sin_port));
        fk_open_path(&f, p, NULL);
        f.lfd = lfd; /* bound, not listening */
        nw = 0;
        if (sasl_wait(f.sv, &w, wait_cb, &nw) == 1)
            for (i = 0; i < 100 && nw == 0; i++)
                ev_run(f.loop, EVRUN_ONCE);
        else
            nw = 1;
        assert_int_equal(nw, 1);
        assert_int_equal(sasl_mech_offered(f.sv, &pol, "PLAIN"), -1);
        fk_close(&f);
    }
    rec_free(&r);
    buf_free(err);
}

static int
setup(void **state)
{
    (void) state;
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(sock_path, sizeof(sock_path), "%s/auth", dir);
    snprintf(log_path, sizeof(log_path), "%s/maillog", dir);
    return log_init("postfix", "smtpd", log_path);
}

static int
teardown(void **state)
{
    char line[256];

    (void) state;
    log_init("postfix", "smtpd", NULL);
    snprintf(line, sizeof(line), "rm -rf %s", dir);
    return system(line) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_mechs),
        cmocka_unit_test(test_mech_names),
        cmocka_unit_test(test_auth_line),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_cont),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_before_handshake),
        cmocka_unit_test(test_bad_handshake),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_lost),
        cmocka_unit_test(test_waiters),
        cmocka_unit_test(test_write_fail),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_hs_timeout),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_bug_long_line_split),
        cmocka_unit_test(test_bug_long_line_handshake),
        cmocka_unit_test(test_bug_duplicate_mech),
        cmocka_unit_test(test_bug_lenient_ids),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
