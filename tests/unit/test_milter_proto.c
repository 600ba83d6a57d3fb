/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_milter_proto.c - the milter codec (byte-exact commands, every
 * reply, malformed and oversized packets) and the milter client against a
 * fake milter: a thread on a unix socket that answers from a table of
 * canned replies per command and records what it received.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/cf.h"
#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "milter/milter.h"
#include "milter/milter_proto.h"

/* ------------------------------------------------------------------ */
/* codec */

static void
expect_bytes(struct buf *b, const void *want, size_t n)
{
    assert_int_equal(buf_len(b), n);
    assert_memory_equal(buf_data(b), want, n);
}

static void
test_enc_commands(void **st)
{
    struct buf *b = buf_new(64, 1024 * 1024);
    const char *argv[] = {"SIZE=10", "BODY=8BITMIME", NULL};
    const char *nv[] = {"j", "mx", "{daemon_name}", "d", NULL};

    assert_int_equal(milter_enc_optneg(b, 6, 0x1ff, 0x1fffff), 0);
    expect_bytes(b,
                 "\0\0\0\x0d"
                 "O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff",
                 17);
    buf_reset(b);
    assert_int_equal(milter_enc_simple(b, MILTER_SMFIC_BODYEOB), 0);
    expect_bytes(b,
                 "\0\0\0\x01"
                 "E",
                 5);
    buf_reset(b);
    assert_int_equal(milter_enc_macro(b, 'C', nv), 0);
    expect_bytes(b,
                 "\0\0\0\x17"
                 "DCj\0mx\0{daemon_name}\0d\0",
                 27);
    buf_reset(b);
    assert_int_equal(milter_enc_connect(b, "h.example", '4', 25, "192.0.2.1"),
                     0);
    expect_bytes(b,
                 "\0\0\0\x18"
                 "Ch.example\0"
                 "4\0\x19"
                 "192.0.2.1\0",
                 28);
    buf_reset(b);
    assert_int_equal(milter_enc_connect(b, "local", 'U', 0, NULL), 0);
    expect_bytes(b,
                 "\0\0\0\x08"
                 "Clocal\0U",
                 12);
    buf_reset(b);
    assert_int_equal(milter_enc_helo(b, "x.org"), 0);
    expect_bytes(b,
                 "\0\0\0\x07"
                 "Hx.org\0",
                 11);
    buf_reset(b);
    assert_int_equal(milter_enc_envelope(b, 'M', "<a@b>", argv), 0);
    expect_bytes(b,
                 "\0\0\0\x1d"
                 "M<a@b>\0SIZE=10\0BODY=8BITMIME\0",
                 33);
    buf_reset(b);
    assert_int_equal(milter_enc_envelope(b, 'R', "<c@d>", NULL), 0);
    expect_bytes(b,
                 "\0\0\0\x07"
                 "R<c@d>\0",
                 11);
    buf_reset(b);
    assert_int_equal(milter_enc_header(b, "Subject", "hi\n\tthere"), 0);
    expect_bytes(b,
                 "\0\0\0\x13"
                 "LSubject\0hi\n\tthere\0",
                 23);
    buf_reset(b);
    assert_int_equal(milter_enc_body(b, "ab\r\n", 4), 0);
    expect_bytes(b,
                 "\0\0\0\x05"
                 "Bab\r\n",
                 9);
    buf_reset(b);
    assert_int_equal(milter_enc_unknown(b, "XFOO bar"), 0);
    expect_bytes(b,
                 "\0\0\0\x0a"
                 "UXFOO bar\0",
                 14);
    buf_reset(b);
    {
        static char big[MILTER_CHUNK_SIZE + 1];

        assert_int_equal(milter_enc_body(b, big, sizeof(big)), -1);
        assert_int_equal(milter_enc_body(b, big, MILTER_CHUNK_SIZE), 0);
        assert_int_equal(buf_len(b), 5 + MILTER_CHUNK_SIZE);
    }
    buf_free(b);

    /* over the cap: -1 and the buf unchanged */
    b = buf_new(8, 12);
    assert_int_equal(milter_enc_helo(b, "a"), 0);
    assert_int_equal(milter_enc_helo(b, "toolong"), -1);
    assert_int_equal(buf_len(b), 7);
    buf_free(b);
}

static void
test_dec_frame(void **st)
{
    struct buf *err = buf_new(64, 1024);
    const char *data;
    size_t dlen, used;
    int cmd;

    assert_int_equal(
        milter_dec_frame("\0\0", 2, 100, &cmd, &data, &dlen, &used, err), 0);
    assert_int_equal(milter_dec_frame("\0\0\0\x03"
                                      "yab",
                                      6, 100, &cmd, &data, &dlen, &used, err),
                     0);
    assert_int_equal(milter_dec_frame("\0\0\0\x03"
                                      "yabXX",
                                      9, 100, &cmd, &data, &dlen, &used, err),
                     1);
    assert_int_equal(cmd, 'y');
    assert_int_equal(dlen, 2);
    assert_int_equal(used, 7);
    assert_memory_equal(data, "ab", 2);
    assert_int_equal(
        milter_dec_frame("\0\0\0\0c", 5, 100, &cmd, &data, &dlen, &used, err),
        -1);
    assert_non_null(strstr(buf_data(err), "bad packet length"));
    buf_reset(err);
    assert_int_equal(milter_dec_frame("\x7f\0\0\0c", 5, MILTER_PKT_MAX, &cmd,
                                      &data, &dlen, &used, err),
                     -1);
    assert_non_null(strstr(buf_data(err), "unreasonable"));
    buf_free(err);
}

static void
test_dec_optneg(void **st)
{
    struct buf *err = buf_new(64, 1024);
    struct milter_optneg o;
    static const char ok[] = "\0\0\0\x06\0\0\0\x11\0\x10\0\x80"
                             "\0\0\0\x00{client_addr} j\0"
                             "\0\0\0\x05i\0"
                             "\0\0\0\x63zz\0";

    assert_int_equal(milter_dec_optneg(ok, sizeof(ok) - 1, &o, err), 0);
    assert_int_equal(o.version, 6);
    assert_int_equal(o.actions, 0x11);
    assert_int_equal(o.steps, 0x100080);
    assert_string_equal(o.symlist[MILTER_SMFIM_CONNECT], "{client_addr} j");
    assert_string_equal(o.symlist[MILTER_SMFIM_EOM], "i");
    assert_null(o.symlist[MILTER_SMFIM_HELO]);
    assert_int_equal(o.unknown_symlists, 1);
    assert_int_equal(milter_dec_optneg(ok, 11, &o, err), -1);
    /* macro list without NUL */
    assert_int_equal(milter_dec_optneg(ok, 12 + 4 + 3, &o, err), -1);
    buf_free(err);
}

static void
test_dec_replies(void **st)
{
    struct buf *err = buf_new(64, 1024);
    struct milter_reply r;
    static const int simple[] = {'a', 'c', 'd', 'r', 't', 's', 'p', '4'};
    size_t i;

    for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        assert_int_equal(milter_dec_reply(simple[i], "", 0, &r, err), 0);
        assert_int_equal(r.cmd, simple[i]);
        assert_int_equal(milter_dec_reply(simple[i], "x", 1, &r, err), -1);
    }
    assert_int_equal(milter_dec_reply('h', "X-A\0v 1\0", 8, &r, err), 0);
    assert_string_equal(r.name, "X-A");
    assert_string_equal(r.value, "v 1");
    assert_int_equal(milter_dec_reply('h', "X-A\0v 1", 7, &r, err), -1);
    assert_int_equal(milter_dec_reply('h', "X-A\0v\0junk", 10, &r, err), -1);
    assert_int_equal(milter_dec_reply('h', "\0v\0", 3, &r, err), -1);
    assert_int_equal(milter_dec_reply('i', "\0\0\0\x02X\0y\0", 8, &r, err), 0);
    assert_int_equal(r.index, 2);
    assert_int_equal(milter_dec_reply('m', "\0\0\0\x01X\0\0", 7, &r, err), 0);
    assert_int_equal(r.index, 1);
    assert_string_equal(r.value, "");
    assert_int_equal(milter_dec_reply('m', "\0\0\x01", 3, &r, err), -1);
    assert_int_equal(milter_dec_reply('b', "body\0x", 6, &r, err), 0);
    assert_int_equal(r.len, 6);
    assert_int_equal(milter_dec_reply('+', "<a@b>\0", 6, &r, err), 0);
    assert_string_equal(r.name, "<a@b>");
    assert_int_equal(
        milter_dec_reply('2', "<a@b>\0NOTIFY=NEVER\0", 19, &r, err), 0);
    assert_string_equal(r.value, "NOTIFY=NEVER");
    assert_int_equal(milter_dec_reply('2', "<a@b>\0", 6, &r, err), 0);
    assert_null(r.value);
    assert_int_equal(milter_dec_reply('-', "<a@b>\0", 6, &r, err), 0);
    assert_int_equal(milter_dec_reply('e', "<s@b>\0SIZE=1\0", 13, &r, err), 0);
    assert_string_equal(r.value, "SIZE=1");
    assert_int_equal(milter_dec_reply('q', "spam\0", 5, &r, err), 0);
    assert_string_equal(r.name, "spam");
    assert_int_equal(milter_dec_reply('y', "550 5.7.1 no\0", 13, &r, err), 0);
    assert_int_equal(milter_dec_reply('y', "550", 3, &r, err), -1);
    assert_int_equal(milter_dec_reply('Z', "", 0, &r, err), -1);
    assert_non_null(strstr(buf_data(err), "unknown reply"));
    buf_free(err);
}

static void
test_replycode(void **st)
{
    struct buf *t = buf_new(64, 1024), *err = buf_new(64, 1024);
    char dsn[16];
    int code;

    assert_int_equal(milter_parse_replycode("550 5.7.1 Go away", &code, dsn,
                                            sizeof(dsn), t, err),
                     0);
    assert_int_equal(code, 550);
    assert_string_equal(dsn, "5.7.1");
    assert_string_equal(buf_data(t), "Go away");
    assert_int_equal(milter_parse_replycode("550-5.7.1 a\r\n550 5.7.1 b", &code,
                                            dsn, sizeof(dsn), t, err),
                     0);
    assert_string_equal(buf_data(t), "a\nb");
    assert_int_equal(milter_parse_replycode("451 try 100%% later", &code, dsn,
                                            sizeof(dsn), t, err),
                     0);
    assert_int_equal(code, 451);
    assert_string_equal(dsn, "");
    assert_string_equal(buf_data(t), "try 100% later");
    assert_int_equal(
        milter_parse_replycode("250 ok", &code, dsn, sizeof(dsn), t, err), -1);
    assert_int_equal(
        milter_parse_replycode("550 4.7.1 x", &code, dsn, sizeof(dsn), t, err),
        -1);
    assert_int_equal(milter_parse_replycode("550-a\r\n450 b", &code, dsn,
                                            sizeof(dsn), t, err),
                     -1);
    assert_int_equal(
        milter_parse_replycode("5x0 a", &code, dsn, sizeof(dsn), t, err), -1);
    buf_free(t);
    buf_free(err);
}

/* ------------------------------------------------------------------ */
/* fake milter */

#define FK_MAXREPLY 16
#define FK_LOG      (256 * 1024)

struct fake {
    char dir[64];
    char path[128];
    int lfd;
    pthread_t th;
    int conns; /* connections accepted */
    uint32_t version, actions, steps;
    const char *symlist; /* SETSYMLIST for SMFIM_CONNECT, or NULL */
    /* replies per command byte: raw packets */
    struct buf *reply[256];
    int hang_at;       /* command: never answer */
    int close_at;      /* command: close the socket */
    size_t split_tail; /* write the last split_tail bytes of a reply
                          after a pause (0: one write) */
    char log[FK_LOG];  /* one line per packet: cmd + printable data */
    size_t loglen;
    pthread_mutex_t mu;
};

static void
fk_put32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

/* Add a reply packet cmd+data for command c. */
static void
fk_reply(struct fake *f, int c, int cmd, const void *data, size_t n)
{
    unsigned char h[5];

    if (f->reply[c] == NULL)
        f->reply[c] = buf_new(64, BUF_NOCAP);
    fk_put32(h, (uint32_t) n + 1);
    h[4] = (unsigned char) cmd;
    buf_append(f->reply[c], h, 5);
    buf_append(f->reply[c], data, n);
}

static int
fk_readn(int fd, void *p, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *) p + got, n - got);

        if (r <= 0)
            return -1;
        got += (size_t) r;
    }
    return 0;
}

static void
fk_log(struct fake *f, int cmd, const unsigned char *d, size_t n)
{
    size_t i;

    pthread_mutex_lock(&f->mu);
    if (f->loglen + n + 4 < FK_LOG) {
        f->log[f->loglen++] = (char) cmd;
        f->log[f->loglen++] = ':';
        for (i = 0; i < n; i++)
            f->log[f->loglen++] = d[i] == 0      ? '|'
                                  : d[i] == '\n' ? '~'
                                  : d[i] == '\r' ? '^'
                                                 : (char) d[i];
        f->log[f->loglen++] = '\n';
        f->log[f->loglen] = '\0';
    }
    pthread_mutex_unlock(&f->mu);
}

static void
fk_serve(struct fake *f, int fd)
{
    unsigned char h[4], *d;
    uint32_t len;

    for (;;) {
        int cmd;

        if (fk_readn(fd, h, 4) < 0)
            return;
        len = (uint32_t) h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
        if (len == 0 || len > 2 * 1024 * 1024)
            return;
        d = malloc(len);
        if (fk_readn(fd, d, len) < 0) {
            free(d);
            return;
        }
        cmd = d[0];
        fk_log(f, cmd, d + 1, len - 1);
        free(d);
        if (cmd == f->close_at)
            return;
        if (cmd == f->hang_at) {
            char c;

            while (read(fd, &c, 1) > 0)
                ;
            return;
        }
        if (cmd == 'O') {
            unsigned char o[12 + 4 + 256];
            size_t n = 12;

            fk_put32(o, f->version);
            fk_put32(o + 4, f->actions);
            fk_put32(o + 8, f->steps);
            if (f->symlist) {
                fk_put32(o + 12, 0);
                memcpy(o + 16, f->symlist, strlen(f->symlist) + 1);
                n = 16 + strlen(f->symlist) + 1;
            }
            fk_put32(h, (uint32_t) n + 1);
            if (write(fd, h, 4) < 0 || write(fd, "O", 1) < 0
                || write(fd, o, n) < 0)
                return;
            continue;
        }
        if (cmd == 'Q')
            return;
        if (f->reply[cmd] && f->split_tail > 0
            && f->split_tail < buf_len(f->reply[cmd])) {
            size_t head = buf_len(f->reply[cmd]) - f->split_tail;

            if (write(fd, buf_data(f->reply[cmd]), head) != (ssize_t) head)
                return;
            usleep(200 * 1000); /* the client reads all of it meanwhile */
            if (write(fd, buf_data(f->reply[cmd]) + head, f->split_tail) < 0)
                return;
            continue;
        }
        if (f->reply[cmd]
            && write(fd, buf_data(f->reply[cmd]), buf_len(f->reply[cmd])) < 0)
            return;
    }
}

static void *
fk_main(void *arg)
{
    struct fake *f = arg;
    int fd;

    while ((fd = accept(f->lfd, NULL, NULL)) >= 0) {
        pthread_mutex_lock(&f->mu);
        f->conns++;
        pthread_mutex_unlock(&f->mu);
        fk_serve(f, fd);
        close(fd);
    }
    return NULL;
}

static struct fake *
fk_new(void)
{
    struct fake *f = calloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/test_milter.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
    f->version = 6;
    f->actions = MILTER_SMFIF_ALL;
    f->steps = 0;
    f->hang_at = -1;
    f->close_at = -1;
    f->lfd = -1;
    pthread_mutex_init(&f->mu, NULL);
    return f;
}

static void
fk_start(struct fake *f)
{
    struct sockaddr_un su;

    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    strcpy(su.sun_path, f->path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *) &su, sizeof(su)), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    pthread_create(&f->th, NULL, fk_main, f);
}

static void
fk_free(struct fake *f)
{
    size_t i;

    if (f->lfd >= 0) {
        shutdown(f->lfd, SHUT_RDWR);
        close(f->lfd);
        pthread_join(f->th, NULL);
    }
    unlink(f->path);
    rmdir(f->dir);
    for (i = 0; i < 256; i++)
        buf_free(f->reply[i]);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

/* ------------------------------------------------------------------ */
/* client harness */

struct h {
    struct ev_loop *loop;
    struct cf *cf;
    struct milter_conf **mcs;
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct filter_env env;
    struct sockaddr_in sa;
    int done;
    enum filter_verdict verdict;
    int code;
    char dsn[32];
    char text[512];
    struct filter_mod *mods;
};

static void
h_done(void *arg, const struct filter_result *r)
{
    struct h *h = arg;
    const struct filter_mod *m;
    struct filter_mod **tail = &h->mods;

    h->done = 1;
    h->verdict = r->verdict;
    h->code = r->code;
    snprintf(h->dsn, sizeof(h->dsn), "%s", r->dsn ? r->dsn : "");
    snprintf(h->text, sizeof(h->text), "%s", r->text ? r->text : "");
    filter_mods_free(h->mods);
    h->mods = NULL;
    for (m = r->mods; m; m = m->next) {
        *tail = filter_mod_new(m->type, m->name, m->value, m->len, m->index,
                               m->args);
        tail = &(*tail)->next;
    }
}

static void
h_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Run the loop until the done callback ran (or secs passed). */
static void
h_wait(struct h *h, double secs)
{
    ev_timer t;

    ev_timer_init(&t, h_timeout, secs, 0.);
    ev_timer_start(h->loop, &t);
    while (!h->done && ev_is_active(&t))
        ev_run(h->loop, EVRUN_ONCE);
    ev_timer_stop(h->loop, &t);
}

/* Spin the loop a little (for stages without a callback). */
static void
h_spin(struct h *h, double secs)
{
    ev_timer t;

    ev_timer_init(&t, h_timeout, secs, 0.);
    ev_timer_start(h->loop, &t);
    ev_run(h->loop, 0);
    ev_timer_stop(h->loop, &t);
}

static struct h *
h_new(const char *milters, const char *extra_name, const char *extra_val)
{
    struct h *h = calloc(1, sizeof(*h));
    struct buf *err = buf_new(256, 4096);

    h->loop = ev_loop_new(EVFLAG_AUTO);
    h->cf = cf_new();
    assert_int_equal(cf_set(h->cf, "smtpd_milters", milters, NULL, err), 0);
    assert_int_equal(cf_set(h->cf, "myhostname", "mx.example", NULL, err), 0);
    if (extra_name)
        assert_int_equal(cf_set(h->cf, extra_name, extra_val, NULL, err), 0);
    assert_int_equal(cf_check(h->cf, err), 0);
    h->mcs = milter_confs_new(h->cf, "smtpd_milters", err);
    assert_non_null(h->mcs);
    buf_free(err);
    h->ch = filter_chain_new();
    for (size_t i = 0; h->mcs[i]; i++)
        filter_chain_add(h->ch, &milter_filter_ops, h->mcs[i]);
    filter_chain_start(h->ch, h->loop);
    h->sa.sin_family = AF_INET;
    h->env.client_sa = (struct sockaddr *) &h->sa;
    h->env.client_addr = "192.0.2.7";
    h->env.client_port = 41234;
    h->env.client_name = "client.example";
    h->env.server_addr = "192.0.2.1";
    h->env.server_port = 25;
    h->env.queue_id = "";
    h->env.spool_fd = -1;
    return h;
}

static void
h_sess(struct h *h)
{
    h->fs = filter_sess_new(h->ch, &h->env);
}

static void
h_endsess(struct h *h)
{
    filter_sess_free(h->fs);
    h->fs = NULL;
    h_spin(h, 0.05);
}

static void
h_free(struct h *h)
{
    if (h->fs)
        filter_sess_free(h->fs);
    filter_chain_stop(h->ch);
    filter_chain_free(h->ch);
    milter_confs_free(h->mcs);
    cf_free(h->cf);
    filter_mods_free(h->mods);
    ev_loop_destroy(h->loop);
    free(h);
}

static void
h_stage(struct h *h, enum filter_stage st, const char *str)
{
    struct filter_args a = {0};

    a.str = str;
    h->done = 0;
    filter_stage(h->fs, st, &a, h_done, h);
    h_wait(h, 5);
    assert_true(h->done);
}

static void
h_header(struct h *h, const char *name, const char *value)
{
    struct filter_args a = {0};

    a.hname = name;
    a.hvalue = value;
    filter_stage(h->fs, FILTER_HEADER, &a, NULL, NULL);
}

static void
h_body(struct h *h, const void *p, size_t n)
{
    struct filter_args a = {0};

    a.data = p;
    a.len = n;
    filter_stage(h->fs, FILTER_BODY, &a, NULL, NULL);
}

/* A whole message: MAIL, RCPT, DATA, headers, body, EOM. */
static void
h_message(struct h *h)
{
    h_stage(h, FILTER_MAIL, "s@example.org");
    h->env.sender = "s@example.org";
    h_stage(h, FILTER_RCPT, "r@example.net");
    h_stage(h, FILTER_DATA, NULL);
    h->env.queue_id = "4ABCDEF";
    h_header(h, "Received", " from x by y");
    h_header(h, "Subject", " hello\r\n\tworld");
    filter_stage(h->fs, FILTER_EOH, NULL, NULL, NULL);
    h_body(h, "line 1\r\nline 2\r\n", 16);
    h_stage(h, FILTER_EOM, NULL);
}

static char *
sock_spec(struct fake *f)
{
    static char s[200];

    snprintf(s, sizeof(s), "unix:%s", f->path);
    return s;
}

static int
log_has(struct fake *f, const char *s)
{
    int r;

    pthread_mutex_lock(&f->mu);
    r = strstr(f->log, s) != NULL;
    pthread_mutex_unlock(&f->mu);
    return r;
}

static void
std_replies(struct fake *f)
{
    const char *c = "CHMRTLNB";

    for (; *c; c++)
        fk_reply(f, (unsigned char) *c, 'c', "", 0);
}

/* ------------------------------------------------------------------ */
/* client tests */

static void
test_conf(void **st)
{
    struct buf *err = buf_new(256, 4096);
    struct cf *cf = cf_new();
    struct milter_conf **v;

    assert_int_equal(
        cf_set(cf, "smtpd_milters",
               "inet:127.0.0.1:8891, unix:/run/m.sock "
               "{ inet:[::1]:99, connect_timeout = 10s, default_action=accept,"
               " protocol=4 } inet:localhost:1",
               NULL, err),
        0);
    assert_int_equal(cf_check(cf, err), 0);
    v = milter_confs_new(cf, "smtpd_milters", err);
    assert_non_null(v);
    assert_string_equal(milter_conf_name(v[0]), "inet:127.0.0.1:8891");
    assert_string_equal(milter_conf_name(v[1]), "unix:/run/m.sock");
    assert_string_equal(milter_conf_name(v[2]), "inet:[::1]:99");
    assert_string_equal(milter_conf_name(v[3]), "inet:localhost:1");
    assert_null(v[4]);
    milter_confs_free(v);

    assert_int_equal(
        cf_set(cf, "smtpd_milters", "inet:mx.example.org:1", NULL, err), 0);
    assert_int_equal(cf_check(cf, err), 0);
    assert_null(milter_confs_new(cf, "smtpd_milters", err));
    assert_non_null(strstr(buf_data(err), "smtpd_milters: bad milter address"));
    buf_reset(err);
    assert_int_equal(
        cf_set(cf, "smtpd_milters", "{ unix:/x, colour=blue }", NULL, err), 0);
    assert_int_equal(cf_check(cf, err), 0);
    assert_null(milter_confs_new(cf, "smtpd_milters", err));
    assert_non_null(strstr(buf_data(err), "unknown setting \"colour\""));
    buf_reset(err);
    assert_int_equal(cf_set(cf, "smtpd_milters",
                            "{ unix:/x, default_action=maybe }", NULL, err),
                     0);
    assert_int_equal(cf_check(cf, err), 0);
    assert_null(milter_confs_new(cf, "smtpd_milters", err));
    assert_non_null(strstr(buf_data(err), "default_action"));
    buf_reset(err);
    assert_int_equal(cf_set(cf, "smtpd_milters", "", NULL, err), 0);
    assert_int_equal(cf_check(cf, err), 0);
    v = milter_confs_new(cf, "smtpd_milters", err);
    assert_non_null(v);
    assert_null(v[0]);
    milter_confs_free(v);
    cf_free(cf);
    buf_free(err);
}

/* A full message with replies to every stage; what the milter saw. */
static void
test_flow(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    std_replies(f);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_stage(h, FILTER_HELO, "helo.example");
    h_message(h);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    assert_null(h->mods);
    h_endsess(h);
    /* negotiation offered v6, all actions, all steps */
    assert_true(log_has(f, "O:|||\x06||\x01\xff|\x1f\xff\xff\n"));
    assert_true(log_has(f, "D:Cj|mx.example|{daemon_name}|mx.example|"
                           "{daemon_addr}|192.0.2.1|v|Sluice"));
    assert_true(log_has(f, "_|client.example [192.0.2.7]|\n"));
    assert_true(log_has(f, "C:client.example|4\xa1\x12"
                           "192.0.2.7|\n"));
    assert_true(log_has(f, "H:helo.example|\n"));
    assert_true(log_has(f, "D:M{mail_addr}|s@example.org|{mail_host}|"
                           "example.org|{mail_mailer}|smtp|\n"));
    assert_true(log_has(f, "M:<s@example.org>|\n"));
    assert_true(log_has(f, "{rcpt_addr}|r@example.net|"));
    assert_true(log_has(f, "R:<r@example.net>|\n"));
    assert_true(log_has(f, "T:\n"));
    /* our Received: is not shown; one leading space removed; LF folding */
    assert_false(log_has(f, "L:Received"));
    assert_true(log_has(f, "L:Subject|hello~\tworld|\n"));
    assert_true(log_has(f, "N:\n"));
    assert_true(log_has(f, "D:Ei|4ABCDEF|\n"));
    assert_true(log_has(f, "B:line 1^~line 2^~\n"));
    assert_true(log_has(f, "E:\n"));
    assert_true(log_has(f, "Q:\n"));
    h_free(h);
    fk_free(f);
}

/* rspamd style: no reply on every stage but EOM; no header/body skips. */
static void
test_noreply(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    f->steps = MILTER_SMFIP_NR_CONN | MILTER_SMFIP_NR_HELO
               | MILTER_SMFIP_NR_MAIL | MILTER_SMFIP_NR_RCPT
               | MILTER_SMFIP_NR_DATA | MILTER_SMFIP_NR_HDR
               | MILTER_SMFIP_NR_EOH | MILTER_SMFIP_NR_BODY
               | MILTER_SMFIP_NR_UNKN | MILTER_SMFIP_HDR_LEADSPC;
    fk_reply(f, 'E', 'h', "X-Spam\0no\0", 10);
    fk_reply(f, 'E', 'a', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_HELO, "h");
    h_message(h);
    assert_int_equal(h->verdict, FILTER_ACCEPT);
    assert_non_null(h->mods);
    assert_int_equal(h->mods->type, FILTER_MOD_ADD_HEADER);
    assert_string_equal(h->mods->name, "X-Spam");
    assert_string_equal(h->mods->value, "no"); /* LEADSPC: as sent */
    /* with HDR_LEADSPC the value keeps its space */
    assert_true(log_has(f, "L:Subject| hello~\tworld|\n"));
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* SMFIP_NO* steps are not sent (macros still are); version 2 gets no
 * DATA and no UNKNOWN. */
static void
test_nosteps(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    f->version = 2;
    f->steps = MILTER_SMFIP_NOHELO | MILTER_SMFIP_NOHDRS | MILTER_SMFIP_NOBODY;
    std_replies(f);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_HELO, "h");
    h_stage(h, FILTER_UNKNOWN, "XFOO");
    h_message(h);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_endsess(h);
    assert_false(log_has(f, "H:"));
    assert_false(log_has(f, "L:"));
    assert_false(log_has(f, "B:"));
    assert_false(log_has(f, "T:"));
    assert_false(log_has(f, "U:"));
    assert_true(log_has(f, "N:\n"));
    assert_true(log_has(f, "E:\n"));
    h_free(h);
    fk_free(f);
}

/* SETSYMLIST replaces the macro lists. */
static void
test_symlist(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    f->symlist = "{client_addr} {client_port}";
    std_replies(f);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_MAIL, "a@b.c");
    h_endsess(h);
    assert_true(
        log_has(f, "D:C{client_addr}|192.0.2.7|{client_port}|41234|\n"));
    /* its list for MAIL is empty: ours is not used */
    assert_false(log_has(f, "{mail_addr}"));
    h_free(h);
    fk_free(f);
}

static void
test_reject_stages(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    std_replies(f);
    buf_reset(f->reply['R']);
    fk_reply(f, 'R', 'y', "550-5.7.1 first\r\n550 5.7.1 second\0", 34);
    buf_reset(f->reply['M']);
    fk_reply(f, 'M', 'p', "", 0);
    fk_reply(f, 'M', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_MAIL, "a@b.c");
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_stage(h, FILTER_RCPT, "x@y.z");
    assert_int_equal(h->verdict, FILTER_REJECT);
    assert_int_equal(h->code, 550);
    assert_string_equal(h->dsn, "5.7.1");
    assert_string_equal(h->text, "first\nsecond");
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* REJECT at CONNECT holds for the whole session; TEMPFAIL at MAIL. */
static void
test_connect_reject(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    fk_reply(f, 'C', 'r', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    assert_int_equal(h->verdict, FILTER_REJECT);
    assert_int_equal(h->code, 550);
    h_stage(h, FILTER_HELO, "x");
    assert_int_equal(h->verdict, FILTER_REJECT);
    h_endsess(h);
    h_free(h);
    fk_free(f);

    f = fk_new();
    std_replies(f);
    buf_reset(f->reply['M']);
    fk_reply(f, 'M', 't', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_MAIL, "a@b.c");
    assert_int_equal(h->verdict, FILTER_TEMPFAIL);
    assert_int_equal(h->code, 451);
    assert_string_equal(h->dsn, "4.7.1");
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* EOM: every modification, then the final reply. */
static void
test_mods(void **st)
{
    struct fake *f = fk_new();
    struct h *h;
    struct filter_mod *m;

    std_replies(f);
    fk_reply(f, 'E', 'h', "X-Added\0yes\0", 12);
    fk_reply(f, 'E', 'i', "\0\0\0\0X-Top\0t\0", 12);
    fk_reply(f, 'E', 'm', "\0\0\0\0Subject\0new\0", 16);
    fk_reply(f, 'E', 'm', "\0\0\0\x02X-Old\0\0", 11);
    fk_reply(f, 'E', 'b', "new body\r\n", 10);
    fk_reply(f, 'E', 'b', "more\r\n", 6);
    fk_reply(f, 'E', '+', "<n@x.y>\0", 8);
    fk_reply(f, 'E', '2', "<p@x.y>\0NOTIFY=NEVER\0", 21);
    fk_reply(f, 'E', '-', "<r@example.net>\0", 16);
    fk_reply(f, 'E', 'e', "<new@s.t>\0SIZE=5\0", 17);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    m = h->mods;
    assert_int_equal(m->type, FILTER_MOD_ADD_HEADER);
    assert_string_equal(m->value, " yes");
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_INSERT_HEADER);
    /* index 0 among the fields the milter saw: below our hidden Received */
    assert_int_equal(m->index, 1);
    assert_string_equal(m->name, "X-Top");
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_CHANGE_HEADER);
    assert_int_equal(m->index, 1); /* 0 means 1 */
    assert_string_equal(m->value, " new");
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_CHANGE_HEADER);
    assert_int_equal(m->index, 2);
    assert_null(m->value); /* delete */
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_REPLACE_BODY);
    assert_memory_equal(m->value, "new body\r\n", 10);
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_REPLACE_BODY);
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_ADD_RCPT);
    assert_string_equal(m->value, "n@x.y");
    assert_null(m->args);
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_ADD_RCPT);
    assert_string_equal(m->args, "NOTIFY=NEVER");
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_DELETE_RCPT);
    assert_string_equal(m->value, "r@example.net");
    m = m->next;
    assert_int_equal(m->type, FILTER_MOD_CHANGE_SENDER);
    assert_string_equal(m->value, "new@s.t");
    assert_string_equal(m->args, "SIZE=5");
    assert_null(m->next);
    assert_true(milter_filter_ops.modifies_content != NULL);
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* Quarantine -> HOLD; DISCARD; REJECT drops mods; a second transaction
 * on the same connection after ABORT. */
static void
test_eom_verdicts(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    std_replies(f);
    fk_reply(f, 'E', 'q', "looks odd\0", 10);
    fk_reply(f, 'E', 'h', "X-A\0b\0", 6);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_HOLD);
    assert_string_equal(h->text, "looks odd");
    assert_non_null(h->mods);
    /* second transaction, aborted, then a third */
    h_stage(h, FILTER_MAIL, "a@b.c");
    filter_stage(h->fs, FILTER_ABORT, NULL, NULL, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_HOLD);
    h_endsess(h);
    assert_int_equal(f->conns, 1);
    assert_true(log_has(f, "A:\n"));
    h_free(h);
    fk_free(f);

    f = fk_new();
    std_replies(f);
    fk_reply(f, 'E', 'h', "X-A\0b\0", 6);
    fk_reply(f, 'E', 'd', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_DISCARD);
    assert_null(h->mods);
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* A milter asking for an action not negotiated... it offered all; one
 * that sends a mod it did not ask for fails; higher version fails. */
static void
test_negotiation_failures(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    f->actions = MILTER_SMFIF_ADDHDRS;
    std_replies(f);
    fk_reply(f, 'E', 'b', "x", 1); /* CHGBODY not negotiated */
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "tempfail");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_TEMPFAIL);
    assert_int_equal(h->code, 451);
    assert_string_equal(h->text, "Service unavailable - try again later");
    h_endsess(h);
    h_free(h);
    fk_free(f);

    f = fk_new();
    f->version = 7;
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "reject");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    assert_int_equal(h->verdict, FILTER_REJECT);
    assert_int_equal(h->code, 550);
    assert_string_equal(h->dsn, "5.7.1");
    h_endsess(h);
    h_free(h);
    fk_free(f);

    f = fk_new();
    f->actions = 0x400; /* not offered */
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL); /* shutdown: 421 */
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    assert_int_equal(h->verdict, FILTER_TEMPFAIL);
    assert_int_equal(h->code, 421);
    assert_string_equal(h->dsn, "4.7.0");
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* Hang at EOM: content_timeout, default action, then back-off: the next
 * session gets the default action without a connection. */
static void
test_timeout_backoff(void **st)
{
    struct fake *f = fk_new();
    struct h *h;
    char spec[256];

    std_replies(f);
    f->hang_at = 'E';
    fk_start(f);
    snprintf(spec, sizeof(spec),
             "{ %s, content_timeout=1s, default_action=quarantine }",
             sock_spec(f));
    h = h_new(spec, NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_HOLD);
    h_endsess(h);
    assert_int_equal(f->conns, 1);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_stage(h, FILTER_MAIL, "a@b.c");
    assert_int_equal(h->verdict, FILTER_HOLD);
    h_endsess(h);
    assert_int_equal(f->conns, 1); /* no new connection during back-off */
    h_free(h);
    fk_free(f);
}

/* Not running: connect refused -> default action; crash mid-message. */
static void
test_down_and_crash(void **st)
{
    struct fake *f = fk_new();
    struct h *h;
    char spec[256];

    snprintf(spec, sizeof(spec), "{ %s, default_action=accept }", sock_spec(f));
    h = h_new(spec, NULL, NULL); /* nobody listening */
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_endsess(h);
    h_free(h);
    fk_free(f);

    f = fk_new();
    std_replies(f);
    f->close_at = 'B';
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "tempfail");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_TEMPFAIL);
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* A body larger than one chunk goes in MILTER_CHUNK_SIZE pieces; SKIP
 * stops the body. */
static void
test_body_chunks(void **st)
{
    struct fake *f = fk_new();
    struct h *h;
    static char big[150000];
    size_t nb = 0;
    const char *p;

    memset(big, 'x', sizeof(big));
    std_replies(f);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_MAIL, "a@b.c");
    h_stage(h, FILTER_RCPT, "c@d.e");
    h_body(h, big, 100000);
    h_body(h, big, 50000);
    h_stage(h, FILTER_EOM, NULL);
    h_endsess(h);
    for (p = f->log; (p = strstr(p, "\nB:")) != NULL; p++)
        nb++;
    assert_int_equal(nb, 3); /* 65535 + 65535 + 18930 */
    h_free(h);
    fk_free(f);

    f = fk_new();
    std_replies(f);
    buf_reset(f->reply['B']);
    fk_reply(f, 'B', 's', "", 0);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), NULL, NULL);
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_MAIL, "a@b.c");
    h_body(h, big, 150000);
    h_stage(h, FILTER_EOM, NULL);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    h_endsess(h);
    nb = 0;
    for (p = f->log; (p = strstr(p, "\nB:")) != NULL; p++)
        nb++;
    assert_int_equal(nb, 1);
    h_free(h);
    fk_free(f);
}

/* A malformed reply (bad REPLYCODE) and an oversized packet fail. */
static void
test_bad_packets(void **st)
{
    struct fake *f = fk_new();
    struct h *h;

    std_replies(f);
    buf_reset(f->reply['M']);
    fk_reply(f, 'M', 'y', "250 fine\0", 9);
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "reject");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_MAIL, "a@b.c");
    assert_int_equal(h->verdict, FILTER_REJECT);
    assert_string_equal(h->text, "Service unavailable");
    h_endsess(h);
    h_free(h);
    fk_free(f);

    f = fk_new();
    std_replies(f);
    buf_reset(f->reply['H']);
    buf_append(f->reply['H'], "\x10\0\0\0c", 5);
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "tempfail");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_stage(h, FILTER_HELO, "x");
    assert_int_equal(h->verdict, FILTER_TEMPFAIL);
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* Header indexes: the wire has 32 unsigned bits, a filter_mod an int
 * that gets our hidden Received: added. An index that does not fit is a
 * malformed reply; it used to wrap (a deletion at index 2^32-1 deleted
 * the first field of that name, our own Received:; INT_MAX + 1 was
 * undefined). The largest that fits is taken. */
static void
test_mod_index_bounds(void **st)
{
    static const struct {
        int cmd;
        const char *data;
        size_t len;
    } bad[] = {
#define PKT(s) s, sizeof(s) - 1
        {'m', PKT("\xff\xff\xff\xffReceived\0\0")},
        {'m', PKT("\x80\0\0\0Subject\0\0")},
        {'m', PKT("\x7f\xff\xff\xffReceived\0new\0")},
        {'i', PKT("\x7f\xff\xff\xffX-Top\0t\0")},
#undef PKT
    };
    struct fake *f;
    struct h *h;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        f = fk_new();
        std_replies(f);
        fk_reply(f, 'E', bad[i].cmd, bad[i].data, bad[i].len);
        fk_reply(f, 'E', 'c', "", 0);
        fk_start(f);
        h = h_new(sock_spec(f), "milter_default_action", "tempfail");
        h_sess(h);
        h_stage(h, FILTER_CONNECT, NULL);
        h_message(h);
        assert_int_equal(h->verdict, FILTER_TEMPFAIL);
        assert_null(h->mods);
        h_endsess(h);
        h_free(h);
        fk_free(f);
    }

    f = fk_new();
    std_replies(f);
    fk_reply(f, 'E', 'm', "\x7f\xff\xff\xfeReceived\0new\0", 17);
    fk_reply(f, 'E', 'c', "", 0);
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "tempfail");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    assert_non_null(h->mods);
    assert_int_equal(h->mods->type, FILTER_MOD_CHANGE_HEADER);
    assert_int_equal(h->mods->index, 0x7fffffff);
    h_endsess(h);
    h_free(h);
    fk_free(f);
}

/* A reply packet of the largest length is taken however it arrives, also
 * when all but its last bytes were read before (the input buffer holds a
 * whole packet and its length field). */
static void
test_max_packet_split(void **st)
{
    size_t n = MILTER_PKT_MAX - 1;
    char *body = malloc(n);
    struct fake *f = fk_new();
    struct h *h;

    memset(body, 'x', n);
    std_replies(f);
    fk_reply(f, 'E', 'b', body, n);
    fk_reply(f, 'E', 'c', "", 0);
    f->split_tail = 2 + 5; /* the packet's last 2 bytes, then 'c' */
    fk_start(f);
    h = h_new(sock_spec(f), "milter_default_action", "tempfail");
    h_sess(h);
    h_stage(h, FILTER_CONNECT, NULL);
    h_message(h);
    assert_int_equal(h->verdict, FILTER_CONTINUE);
    assert_non_null(h->mods);
    assert_int_equal(h->mods->type, FILTER_MOD_REPLACE_BODY);
    assert_int_equal(h->mods->len, n);
    h_endsess(h);
    h_free(h);
    fk_free(f);
    free(body);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enc_commands),
        cmocka_unit_test(test_dec_frame),
        cmocka_unit_test(test_dec_optneg),
        cmocka_unit_test(test_dec_replies),
        cmocka_unit_test(test_replycode),
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_flow),
        cmocka_unit_test(test_noreply),
        cmocka_unit_test(test_nosteps),
        cmocka_unit_test(test_symlist),
        cmocka_unit_test(test_reject_stages),
        cmocka_unit_test(test_connect_reject),
        cmocka_unit_test(test_mods),
        cmocka_unit_test(test_eom_verdicts),
        cmocka_unit_test(test_negotiation_failures),
        cmocka_unit_test(test_timeout_backoff),
        cmocka_unit_test(test_down_and_crash),
        cmocka_unit_test(test_body_chunks),
        cmocka_unit_test(test_bad_packets),
        cmocka_unit_test(test_mod_index_bounds),
        cmocka_unit_test(test_max_packet_split),
    };

    log_init("postfix", "smtpd",
             getenv("TEST_LOG") ? getenv("TEST_LOG") : "/dev/null");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
