/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_milter_sess.c - whole milter sessions: the milter client
 * (milter.c, through the filter chain as smtpd drives it) against a fake
 * milter on a unix socket whose output is the fuzz input. Both ends run
 * on one libev loop in this thread, so a run is deterministic.
 *
 * Input: four option bytes, then the fake milter's output as records.
 *  byte 0: bits 0-2 default_action (tempfail, accept, reject, quarantine,
 *          shutdown, tempfail, accept, reject), bits 3-5 protocol (6, 6,
 *          6, 6, 5, 4, 3, 2), bit 6 every macro list holds every macro we
 *          know, bit 7 "patient": timeouts of 5 ms, and the fake never
 *          speaks unasked
 *  byte 1: the SMTP script: bit 0 HELO, 1 an unknown command, 2 a
 *          recipient Sluice refused (SMFIP_RCPT_REJ), 3 two transactions,
 *          4 the first one aborted before end of data, 5 a second SMTP
 *          session (the milter's back-off state carries over), bits 6-7
 *          the body: small, small in 9-byte pieces, 140 KB, 600 KB
 *  byte 2: bits 0-1 client family (inet, inet6, unix, nothing known),
 *          bit 2 no Received: of ours first, bit 3 two milters (the
 *          ordering rule: the second gets the content replayed), bit 4
 *          ESMTP parameters, bits 5-6 one to four recipients, bit 7 spin
 *          the loop after each streaming stage
 *  byte 3: bit 0 debug logging, bit 1 a 20 KB folded header, bit 2 200
 *          more header fields, bit 3 an unknown command after MAIL
 *  records: an op byte; bit 7 ends the turn after the record. For packet
 *  records (op&3 of 0 or 3), bit 3 splits the packet: its last 1 + bits
 *  4-5 bytes are held back and start the next turn (a later split in the
 *  same turn replaces them).
 *   op&3 == 0: a packet: command byte, length (one byte, two with op&4),
 *              data; framed by the harness
 *   op&3 == 1: raw bytes: length (one byte, two with op&4), bytes
 *   op&3 == 2: (op>>2)&3: 0 shutdown(SHUT_WR) and 1 close() once the
 *              output is written (both end the turn), 2 stop reading,
 *              3 shutdown(SHUT_RD)
 *   op&3 == 3: with op&4 a repeat: count byte (fz_count: below 32, or
 *              one of a few big counts), command, length byte, data:
 *              that many copies of the packet; without, a big packet:
 *              command, size byte (fz_size: 16 times it, or one of a
 *              few sizes around the chunk size and MILTER_PKT_MAX) of
 *              filler, the last byte a NUL; the fake's output is capped
 *              at FZ_GEN_MAX bytes per input
 * The fake answers, with the next turn, every command that the client
 * waits for a reply to: all but SMFIC_MACRO, ABORT, QUIT and those that
 * its SMFIC_OPTNEG (when that was its first packet) marked SMFIP_NR_*;
 * more packets per turn, or unasked ones, are a misbehaving milter. When the
 * loop has nothing to do while the client waits for an answer, an impatient
 * fake sends the next turn unasked, or, with the input used up, shuts its side
 * down; a patient one lets the client's timeouts fire. Checked: every stage
 * with a done callback is answered (no hang, no lost call), verdicts and reply
 * codes are consistent, modifications come only at end of message and obey
 * filter.h's contract (they are then applied to the message as smtpd applies
 * them), the client sends only well-formed known commands, and every milter
 * connection is closed when its session ends. Nothing may crash, leak or trip
 * UBSan.
 */
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/cf.h"
#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "milter/milter.h"
#include "milter/milter_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CONNS    8
#define FZ_GEN_MAX  (3u * 1024 * 1024) /* fake output per input */
#define FZ_ITER_MAX 100000             /* loop turns per stage */
#define FZ_GUARD    5.0                /* seconds per stage */
#define FZ_BIG_BODY                                                     \
    (7680 * 80)                  /* 80-byte lines: MILTER_OUT_LOW and a \
                                     socket buffer */
#define FZ_MID_BODY  (1792 * 80) /* two body chunks and a bit */
#define FZ_LONG_HDR  (20 * 1024)
#define FZ_BIG_PIECE 100000
#define FZ_HEAD_READ 65536 /* as smtpd's SMTPD_HEAD_READ */

#define FZ_ALL_MACROS                                                         \
    "j v _ {daemon_name} {daemon_addr} {daemon_port} {client_addr} "          \
    "{client_port} {client_name} {client_ptr} {client_resolve} i "            \
    "{mail_addr} {mail_host} {mail_mailer} {rcpt_addr} {rcpt_host} "          \
    "{rcpt_mailer} {auth_type} {tls_version} "                                \
    "{a_macro_name_that_is_longer_than_the_sixty_four_bytes_of_the_key_buf} " \
    "{mail_other} {rcpt_other}"

enum fc_end {
    FC_END_NONE,
    FC_END_SHUT, /* shutdown(SHUT_WR) once out is written */
    FC_END_CLOSE /* close() once out is written */
};

struct fz;

/* The fake milter's side of one connection. */
struct fconn {
    struct fz *z;
    int fd; /* -1: closed */
    ev_io rio, wio;
    struct buf *in, *out;
    enum fc_end end;
    int shut;       /* our write side is shut down */
    int npkt;       /* commands received */
    int sent;       /* bytes were sent */
    uint32_t steps; /* from our first packet when it was SMFIC_OPTNEG */
};

struct fz {
    uint8_t conf, script, envb, extra; /* the option bytes */
    struct ev_loop *loop;
    const uint8_t *p; /* records not used yet */
    size_t left;
    struct buf *held; /* the end of a split packet: starts the next turn */
    size_t gen;       /* bytes of fake output generated */
    int patient;
    struct fconn c[FZ_CONNS];
    size_t nc;
    struct fconn *last; /* the conn that asked last */
    ev_io acc;
    ev_idle idle;
    ev_timer guard;
    int stuck, expired;

    /* the SMTP side */
    struct filter_sess *fs;
    struct filter_env env;
    struct sockaddr_storage sa;
    char *rcpts[8];
    struct buf *msg; /* the message as queued */
    enum filter_stage st;
    int done;
    enum filter_verdict verdict;
};

static int fz_lfd = -1;
static int fz_mfd = -1;
static char fz_dir[64];
static char fz_path[96];
static char *fz_big;  /* FZ_BIG_BODY bytes of body */
static char *fz_long; /* a folded header value */
static int fz_trace;  /* FUZZ_MILTER_LOG set: log to stderr, show answers */

static void
fz_cleanup(void)
{
    if (fz_lfd >= 0)
        close(fz_lfd);
    unlink(fz_path);
    rmdir(fz_dir);
}

static void
fz_init(void)
{
    struct sockaddr_un su;
    const char *dbg = getenv("FUZZ_MILTER_LOG");
    size_t i;

    signal(SIGPIPE, SIG_IGN);
    fz_trace = dbg != NULL;
    log_init("postfix", "fuzz", dbg ? NULL : "/dev/null");
    snprintf(fz_dir, sizeof(fz_dir), "/tmp/fuzz_milter_sess.XXXXXX");
    if (mkdtemp(fz_dir) == NULL)
        abort();
    snprintf(fz_path, sizeof(fz_path), "%s/m.sock", fz_dir);
    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    snprintf(su.sun_path, sizeof(su.sun_path), "%s", fz_path);
    fz_lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fz_lfd < 0 || bind(fz_lfd, (struct sockaddr *) &su, sizeof(su)) < 0
        || listen(fz_lfd, 64) < 0)
        abort();
    atexit(fz_cleanup);
    fz_mfd = memfd_create("fuzz_milter_sess", MFD_CLOEXEC);
    if (fz_mfd < 0)
        abort();
    /* the big body: CRLF lines of 78 characters, a dot-leading one now
     * and then; the long header: lines of 70 joined by CRLF TAB */
    fz_big = malloc(FZ_BIG_BODY);
    fz_long = malloc(FZ_LONG_HDR + 1);
    if (fz_big == NULL || fz_long == NULL)
        abort();
    for (i = 0; i < FZ_BIG_BODY; i++)
        fz_big[i] = i % 80 == 78                ? '\r'
                    : i % 80 == 79              ? '\n'
                    : i % 80 == 0 && i % 7 == 0 ? '.'
                                                : (char) ('a' + i % 26);
    for (i = 0; i < FZ_LONG_HDR; i++)
        fz_long[i] = i % 72 == 70   ? '\r'
                     : i % 72 == 71 ? '\n'
                     : i % 72 == 0  ? (i ? '\t' : ' ')
                                    : (char) ('A' + i % 26);
    fz_long[FZ_LONG_HDR] = '\0';
}

/* ------------------------------------------------------------------ */
/* the fake milter */

static void fc_flush(struct fconn *c);

static void
fc_close(struct fconn *c)
{
    if (c->fd < 0)
        return;
    ev_io_stop(c->z->loop, &c->rio);
    ev_io_stop(c->z->loop, &c->wio);
    close(c->fd);
    c->fd = -1;
    buf_reset(c->out);
}

/* n bytes of the records (fewer at their end) */
static const uint8_t *
fz_take(struct fz *z, size_t *n)
{
    const uint8_t *p = z->p;

    if (*n > z->left)
        *n = z->left;
    z->p += *n;
    z->left -= *n;
    return p;
}

static int
fz_byte(struct fz *z)
{
    size_t n = 1;
    const uint8_t *p = fz_take(z, &n);

    return n ? *p : -1;
}

static size_t
fz_len(struct fz *z, int two)
{
    int a = fz_byte(z), b;

    if (a < 0)
        return 0;
    if (!two)
        return (size_t) a;
    b = fz_byte(z);
    return b < 0 ? (size_t) a : (size_t) a << 8 | (size_t) b;
}

/* One packet into c->out, within the output budget. */
static void
fc_packet(struct fconn *c, int cmd, const void *data, size_t len)
{
    struct fz *z = c->z;
    unsigned char hdr[5];
    uint32_t n = (uint32_t) len + 1;

    if (z->gen + len + 5 > FZ_GEN_MAX)
        return;
    z->gen += len + 5;
    if (!c->sent && cmd == MILTER_SMFIC_OPTNEG && len >= 12) {
        const unsigned char *s = (const unsigned char *) data + 8;

        c->steps = (uint32_t) s[0] << 24 | (uint32_t) s[1] << 16
                   | (uint32_t) s[2] << 8 | s[3];
    }
    c->sent = 1;
    hdr[0] = (unsigned char) (n >> 24);
    hdr[1] = (unsigned char) (n >> 16);
    hdr[2] = (unsigned char) (n >> 8);
    hdr[3] = (unsigned char) n;
    hdr[4] = (unsigned char) cmd;
    if (buf_append(c->out, hdr, 5) < 0 || buf_append(c->out, data, len) < 0)
        abort();
}

/* Counts of a repeat: most small, a few around MILTER_MODS_MAX. (A
 * random input holds many records: big ones only now and then, or most
 * of the time goes into making output.) */
static size_t
fz_count(size_t b)
{
    static const size_t big[] = {1000,   10000,  50000,  99999,
                                 100000, 100001, 120000, 150000};

    return b < 248 ? b % 32 : big[b - 248];
}

/* Sizes of a big packet's data: most below 4 KB, a few at the chunk
 * size and at MILTER_PKT_MAX (the length counts the command). */
static size_t
fz_size(size_t b)
{
    static const size_t big[] = {65534,
                                 65535,
                                 65536,
                                 131072,
                                 MILTER_PKT_MAX - 2,
                                 MILTER_PKT_MAX - 1,
                                 MILTER_PKT_MAX,
                                 1200000};

    return b < 248 ? b * 16 : big[b - 248];
}

/* The next turn of the input, written to c. */
static void
fz_turn(struct fz *z, struct fconn *c)
{
    if (buf_append(c->out, buf_data(z->held), buf_len(z->held)) < 0)
        abort();
    buf_reset(z->held);
    while (z->left > 0) {
        int op = fz_byte(z), cmd, end = op & 0x80;
        size_t n, k, cnt, before = buf_len(c->out);
        const uint8_t *d;

        switch (op & 3) {
        case 0:
            if ((cmd = fz_byte(z)) < 0)
                break;
            n = fz_len(z, op & 4);
            d = fz_take(z, &n);
            fc_packet(c, cmd, d, n);
            break;
        case 1:
            n = fz_len(z, op & 4);
            d = fz_take(z, &n);
            if (z->gen + n <= FZ_GEN_MAX) {
                z->gen += n;
                c->sent |= n > 0;
                if (buf_append(c->out, d, n) < 0)
                    abort();
            }
            break;
        case 2:
            switch ((op >> 2) & 3) {
            case 0:
                c->end = FC_END_SHUT;
                end = 1;
                break;
            case 1:
                c->end = FC_END_CLOSE;
                end = 1;
                break;
            case 2:
                ev_io_stop(z->loop, &c->rio);
                break;
            case 3:
                shutdown(c->fd, SHUT_RD);
                break;
            }
            break;
        case 3:
            if (op & 4) {
                char pd[256];

                cnt = fz_count(fz_len(z, 0));
                if ((cmd = fz_byte(z)) < 0)
                    break;
                n = fz_len(z, 0);
                d = fz_take(z, &n);
                memcpy(pd, d, n);
                for (k = 0; k < cnt && z->gen + n + 5 <= FZ_GEN_MAX; k++)
                    fc_packet(c, cmd, pd, n);
            } else {
                char *big;

                if ((cmd = fz_byte(z)) < 0)
                    break;
                n = fz_size(fz_len(z, 0));
                big = malloc(n + 1);
                if (big == NULL)
                    abort();
                for (k = 0; k < n; k++)
                    big[k] = k % 80 == 78 ? '\r' : k % 80 == 79 ? '\n' : 'x';
                if (n > 0)
                    big[n - 1] = '\0';
                fc_packet(c, cmd, big, n);
                free(big);
            }
            break;
        }
        /* a split packet: its last bytes wait for the next turn */
        if ((op & 3) != 1 && (op & 3) != 2 && (op & 8)) {
            k = 1 + ((size_t) (op >> 4) & 3);
            if (k > buf_len(c->out) - before)
                k = buf_len(c->out) - before;
            buf_set(z->held, buf_data(c->out) + buf_len(c->out) - k, k);
            buf_truncate(c->out, buf_len(c->out) - k);
        }
        if (end)
            break;
    }
    fc_flush(c);
}

static void
fc_flush(struct fconn *c)
{
    struct fz *z = c->z;

    if (c->fd < 0)
        return;
    while (buf_len(c->out) > 0) {
        ssize_t n = send(c->fd, buf_data(c->out), buf_len(c->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            ev_io_start(z->loop, &c->wio);
            return;
        }
        if (n < 0) { /* the client is gone */
            buf_reset(c->out);
            break;
        }
        buf_consume(c->out, (size_t) n);
    }
    ev_io_stop(z->loop, &c->wio);
    if (c->end == FC_END_SHUT && !c->shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut = 1;
    } else if (c->end == FC_END_CLOSE) {
        fc_close(c);
    }
}

static void
fc_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    fc_flush(w->data);
}

/* Does the client wait for a reply to cmd (SMFIP_NR_*)? */
static int
fc_wants_reply(const struct fconn *c, int cmd)
{
    static const struct {
        int cmd;
        uint32_t nr;
    } t[] = {
        {MILTER_SMFIC_CONNECT, MILTER_SMFIP_NR_CONN},
        {MILTER_SMFIC_HELO, MILTER_SMFIP_NR_HELO},
        {MILTER_SMFIC_MAIL, MILTER_SMFIP_NR_MAIL},
        {MILTER_SMFIC_RCPT, MILTER_SMFIP_NR_RCPT},
        {MILTER_SMFIC_DATA, MILTER_SMFIP_NR_DATA},
        {MILTER_SMFIC_UNKNOWN, MILTER_SMFIP_NR_UNKN},
        {MILTER_SMFIC_HEADER, MILTER_SMFIP_NR_HDR},
        {MILTER_SMFIC_EOH, MILTER_SMFIP_NR_EOH},
        {MILTER_SMFIC_BODY, MILTER_SMFIP_NR_BODY},
    };
    size_t i;

    if (cmd == MILTER_SMFIC_MACRO || cmd == MILTER_SMFIC_ABORT
        || cmd == MILTER_SMFIC_QUIT)
        return 0;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (t[i].cmd == cmd)
            return !(c->steps & t[i].nr);
    return 1;
}

/* One command from the client. */
static void
fc_command(struct fconn *c, int cmd)
{
    struct fz *z = c->z;

    if (strchr("ABCDEHLMNOQRTU", cmd) == NULL || cmd == 0) {
        fprintf(stderr, "fuzz_milter_sess: client sent command 0x%02x\n",
                (unsigned) cmd);
        abort();
    }
    if ((c->npkt++ == 0) != (cmd == 'O')) {
        fprintf(stderr, "fuzz_milter_sess: command %c as packet %d\n", cmd,
                c->npkt);
        abort();
    }
    if (fz_trace)
        fprintf(stderr, "fuzz_milter_sess: milter %d got %c\n",
                (int) (c - z->c), cmd);
    z->last = c;
    if (!fc_wants_reply(c, cmd))
        return;
    if (!c->shut && c->end == FC_END_NONE)
        fz_turn(z, c);
}

static void
fc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    static char rb[65536];
    struct fconn *c = w->data;
    ssize_t n = read(c->fd, rb, sizeof(rb));

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        fc_close(c);
        return;
    }
    if (buf_append(c->in, rb, (size_t) n) < 0)
        abort();
    while (buf_len(c->in) >= 5 && c->fd >= 0) {
        const unsigned char *b = (const unsigned char *) buf_data(c->in);
        uint32_t len = (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16
                       | (uint32_t) b[2] << 8 | b[3];
        int cmd;

        if (len < 1 || len > 2 * 1024 * 1024) {
            fprintf(stderr, "fuzz_milter_sess: client packet length %lu\n",
                    (unsigned long) len);
            abort();
        }
        if (buf_len(c->in) < 4 + (size_t) len)
            break;
        cmd = b[4];
        buf_consume(c->in, 4 + (size_t) len);
        fc_command(c, cmd);
    }
}

static void
fz_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fz *z = w->data;
    struct fconn *c;
    int fd = accept4(fz_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0)
        return;
    if (z->nc == FZ_CONNS)
        abort(); /* more connections than sessions * milters */
    c = &z->c[z->nc++];
    memset(c, 0, sizeof(*c));
    c->z = z;
    c->fd = fd;
    c->in = buf_new(1024, BUF_NOCAP);
    c->out = buf_new(4096, BUF_NOCAP);
    ev_io_init(&c->rio, fc_read_cb, fd, EV_READ);
    ev_io_init(&c->wio, fc_write_cb, fd, EV_WRITE);
    c->rio.data = c->wio.data = c;
    ev_io_start(loop, &c->rio);
    z->last = c;
}

/* Nothing to do while the client waits: speak unasked, or hang up. */
static void
fz_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct fz *z = w->data;
    struct fconn *c = z->last;
    size_t i;
    int any = 0;

    if (c == NULL || c->fd < 0 || c->shut || c->end != FC_END_NONE) {
        c = NULL;
        for (i = z->nc; i-- > 0 && c == NULL;)
            if (z->c[i].fd >= 0 && !z->c[i].shut && z->c[i].end == FC_END_NONE)
                c = &z->c[i];
    }
    if (c && (z->left > 0 || buf_len(z->held) > 0)) {
        fz_turn(z, c);
        return;
    }
    for (i = 0; i < z->nc; i++) {
        struct fconn *o = &z->c[i];

        if (o->fd >= 0 && !o->shut) {
            o->end = FC_END_SHUT;
            fc_flush(o);
            any = 1;
        }
    }
    if (!any) {
        z->stuck = 1;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void
fz_guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fz *z = w->data;

    z->expired = 1;
    ev_break(loop, EVBREAK_ONE);
}

/* After a session: every connection the client made must be closed by
 * it (EOF once its output is read). */
static void
fz_check_closed(struct fz *z)
{
    char b[65536];
    size_t i;
    int fd;

    while ((fd = accept4(fz_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
           >= 0) {
        if (z->nc == FZ_CONNS)
            abort();
        /* never served: no fake state but the fd */
        memset(&z->c[z->nc], 0, sizeof(z->c[z->nc]));
        z->c[z->nc].z = z;
        z->c[z->nc].fd = fd;
        z->c[z->nc].in = buf_new(16, 16);
        z->c[z->nc].out = buf_new(16, 16);
        ev_io_init(&z->c[z->nc].rio, fc_read_cb, fd, EV_READ);
        ev_io_init(&z->c[z->nc].wio, fc_write_cb, fd, EV_WRITE);
        z->nc++;
    }
    for (i = 0; i < z->nc; i++) {
        struct fconn *c = &z->c[i];
        ssize_t n;

        if (c->fd < 0)
            continue;
        while ((n = read(c->fd, b, sizeof(b))) > 0)
            ;
        if (n < 0 && errno == EAGAIN) {
            fprintf(stderr,
                    "fuzz_milter_sess: milter connection %zu left "
                    "open after its session\n",
                    i);
            abort();
        }
        fc_close(c);
    }
}

/* ------------------------------------------------------------------ */
/* the SMTP side */

static void
fz_check_mods(const struct filter_mod *m)
{
    for (; m; m = m->next) {
        int ok = 1;

        switch (m->type) {
        case FILTER_MOD_ADD_HEADER:
            ok = m->name && m->value && strlen(m->value) == m->len;
            break;
        case FILTER_MOD_INSERT_HEADER:
            ok = m->name && m->value && m->index >= 0;
            break;
        case FILTER_MOD_CHANGE_HEADER:
            ok = m->name && m->index >= 1;
            break;
        case FILTER_MOD_REPLACE_BODY:
            ok = m->value != NULL || m->len == 0;
            break;
        case FILTER_MOD_ADD_RCPT:
        case FILTER_MOD_DELETE_RCPT:
        case FILTER_MOD_CHANGE_SENDER:
            ok = m->value != NULL;
            break;
        default:
            ok = 0;
        }
        if (!ok) {
            fprintf(stderr,
                    "fuzz_milter_sess: bad modification type %d index %d "
                    "name %s\n",
                    (int) m->type, m->index, m->name ? m->name : "(null)");
            abort();
        }
    }
}

static int
fz_out(void *arg, const void *p, size_t n)
{
    return buf_append(arg, p, n);
}

/* Apply the modifications as smtpd does at end of message. */
static void
fz_apply(struct fz *z, const struct filter_mod *mods)
{
    struct buf *b;
    size_t old;

    if (!filter_mods_have_content(mods))
        return;
    b = buf_new(4096, BUF_NOCAP);
    (void) filter_mods_top_bytes(mods, b);
    buf_reset(b);
    (void) filter_mods_new_head(mods, fz_mfd, 0, (off_t) buf_len(z->msg),
                                FZ_HEAD_READ, b, &old);
    buf_reset(b);
    (void) filter_mods_rewrite(mods, fz_mfd, 0, (off_t) buf_len(z->msg), fz_out,
                               b);
    buf_free(b);
}

static void
fz_done(void *arg, const struct filter_result *r)
{
    struct fz *z = arg;
    int bad = 0;

    if (z->done) {
        fprintf(stderr, "fuzz_milter_sess: %s answered twice\n",
                filter_stage_name(z->st));
        abort();
    }
    z->done = 1;
    z->verdict = r->verdict;
    switch (r->verdict) {
    case FILTER_CONTINUE:
    case FILTER_ACCEPT:
    case FILTER_HOLD:
    case FILTER_DISCARD:
        break;
    case FILTER_TEMPFAIL:
        bad = r->code != 0 && (r->code < 400 || r->code > 499);
        break;
    case FILTER_REJECT:
        bad = r->code != 0 && (r->code < 500 || r->code > 599);
        break;
    default:
        bad = 1;
    }
    if (r->dsn
        && (strlen(r->dsn) >= 16
            || (r->code != 0 && r->dsn[0] != '0' + r->code / 100)))
        bad = 1;
    if (r->mods && z->st != FILTER_EOM)
        bad = 1;
    if (bad) {
        fprintf(stderr, "fuzz_milter_sess: %s: verdict %d code %d dsn %s\n",
                filter_stage_name(z->st), (int) r->verdict, r->code,
                r->dsn ? r->dsn : "(null)");
        abort();
    }
    if (fz_trace) {
        const struct filter_mod *m;
        int nm = 0;

        for (m = r->mods; m; m = m->next)
            nm++;
        fprintf(stderr, "fuzz_milter_sess: %s -> %s %d %s %s (%d mods)\n",
                filter_stage_name(z->st), filter_verdict_name(r->verdict),
                r->code, r->dsn ? r->dsn : "-", r->text ? r->text : "-", nm);
    }
    fz_check_mods(r->mods);
    if (z->st == FILTER_EOM)
        fz_apply(z, r->mods);
}

/* Run the loop until the pending stage is answered. */
static void
fz_wait(struct fz *z)
{
    int i;

    if (z->done)
        return;
    z->stuck = z->expired = 0;
    if (!z->patient)
        ev_idle_start(z->loop, &z->idle);
    ev_timer_set(&z->guard, FZ_GUARD, 0.);
    ev_timer_start(z->loop, &z->guard);
    for (i = 0; !z->done; i++) {
        if (z->stuck || z->expired || i == FZ_ITER_MAX) {
            fprintf(stderr,
                    "fuzz_milter_sess: %s not answered (%s, %d loop "
                    "turns)\n",
                    filter_stage_name(z->st),
                    z->stuck     ? "nothing left to do"
                    : z->expired ? "timed out"
                                 : "loop bound",
                    i);
            abort();
        }
        ev_run(z->loop, EVRUN_ONCE);
    }
    ev_idle_stop(z->loop, &z->idle);
    ev_timer_stop(z->loop, &z->guard);
}

static enum filter_verdict
fz_stage(struct fz *z, enum filter_stage st, const struct filter_args *a)
{
    z->st = st;
    z->done = 0;
    ev_now_update(z->loop); /* as in a callback: timers start from now */
    filter_stage(z->fs, st, a, fz_done, z);
    fz_wait(z);
    return z->verdict;
}

static void
fz_stream(struct fz *z, enum filter_stage st, const struct filter_args *a)
{
    int i;

    ev_now_update(z->loop);
    filter_stage(z->fs, st, a, NULL, NULL);
    /* patient: let replies in before the harness works on, so that the
     * client's short timers rarely race the fake (smtpd runs the loop
     * between its reads too) */
    for (i = 0; i < (z->patient ? 3 : z->envb & 0x80 ? 1 : 0); i++)
        ev_run(z->loop, EVRUN_NOWAIT);
}

static int
fz_refused(enum filter_verdict v)
{
    return v == FILTER_REJECT || v == FILTER_TEMPFAIL;
}

static void
fz_header(struct fz *z, const char *name, const char *value)
{
    struct filter_args a = {0};

    a.hname = name;
    a.hvalue = value;
    buf_printf(z->msg, "%s:%s\r\n", name, value);
    fz_stream(z, FILTER_HEADER, &a);
}

static void
fz_body(struct fz *z, const char *p, size_t n, size_t piece)
{
    while (n > 0) {
        struct filter_args a = {0};
        size_t k = n < piece ? n : piece;

        a.data = p;
        a.len = k;
        buf_append(z->msg, p, k);
        fz_stream(z, FILTER_BODY, &a);
        p += k;
        n -= k;
    }
}

static void
fz_unknown(struct fz *z)
{
    struct filter_args a = {0};

    a.str = "XFOO bar%s%n";
    fz_stage(z, FILTER_UNKNOWN, &a);
}

/* One transaction; abort_it: end it before end of data. */
static void
fz_txn(struct fz *z, int abort_it)
{
    static const char *const addrs[] = {"r1@example.net", "r2@example.net",
                                        "postmaster", "r4@sub.example.net"};
    static char *const margs[] = {"SIZE=1234", "BODY=8BITMIME", NULL};
    static char *const rargs[] = {"NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x@y",
                                  NULL};
    static const char small[] = "Hello,\r\n..a dot-stuffed line\r\n\r\n"
                                "bye\r\n";
    struct filter_args a = {0};
    size_t nr = 1 + ((z->envb >> 5) & 3), i, nok = 0;

    a.str = "sender@example.org";
    a.argv = z->envb & 0x10 ? margs : NULL;
    if (fz_refused(fz_stage(z, FILTER_MAIL, &a))) {
        fz_stream(z, FILTER_ABORT, NULL);
        return;
    }
    z->env.sender = "sender@example.org";
    if (z->extra & 0x08)
        fz_unknown(z);
    if (z->script & 0x04) {
        struct filter_args r = {0};

        r.str = "relay@elsewhere.example";
        r.rejected = "554 5.7.1 <relay@elsewhere.example>: Relay access "
                     "denied";
        fz_stream(z, FILTER_RCPT, &r);
    }
    for (i = 0; i < nr; i++) {
        struct filter_args r = {0};

        r.str = addrs[i];
        r.argv = z->envb & 0x10 ? rargs : NULL;
        if (fz_refused(fz_stage(z, FILTER_RCPT, &r)))
            continue;
        z->rcpts[nok++] = (char *) addrs[i];
        z->rcpts[nok] = NULL;
        z->env.nrcpt = nok;
    }
    if (nok == 0 || fz_refused(fz_stage(z, FILTER_DATA, NULL))) {
        fz_stream(z, FILTER_ABORT, NULL);
        goto out;
    }
    z->env.queue_id = "4ABCDEF";
    buf_reset(z->msg);
    if (!(z->envb & 0x04))
        fz_header(z, "Received",
                  " from client.example (client.example [192.0.2.7])\r\n"
                  "\tby mx.example (Sluice) with ESMTP id 4ABCDEF; Mon, 1 "
                  "Jan 2024 00:00:00 +0000");
    fz_header(z, "From", " <sender@example.org>");
    fz_header(z, "Subject", " hello\r\n\tworld");
    fz_header(z, "X-Empty", "");
    fz_header(z, "X-Lead", "  two spaces");
    fz_header(z, "Received", " from elsewhere");
    if (z->extra & 0x02)
        fz_header(z, "X-Long", fz_long);
    for (i = 0; z->extra & 0x04 && i < 200; i++)
        fz_header(z, i % 2 ? "X-Many" : "x-many", " v");
    buf_puts(z->msg, "\r\n");
    fz_stream(z, FILTER_EOH, NULL);
    switch ((z->script >> 6) & 3) {
    case 0:
        fz_body(z, small, sizeof(small) - 1, sizeof(small));
        break;
    case 1:
        fz_body(z, small, sizeof(small) - 1, 9);
        break;
    case 2:
        fz_body(z, fz_big, FZ_MID_BODY, FZ_BIG_PIECE);
        break;
    case 3:
        fz_body(z, fz_big, FZ_BIG_BODY, FZ_BIG_PIECE);
        break;
    }
    if (abort_it) {
        fz_stream(z, FILTER_ABORT, NULL);
        goto out;
    }
    if (ftruncate(fz_mfd, 0) < 0
        || pwrite(fz_mfd, buf_data(z->msg), buf_len(z->msg), 0)
               != (ssize_t) buf_len(z->msg))
        abort();
    z->env.spool_fd = fz_mfd;
    z->env.spool_off = 0;
    z->env.spool_len = (off_t) buf_len(z->msg);
    fz_stage(z, FILTER_EOM, NULL);
out:
    z->env.spool_fd = -1;
    z->env.spool_len = 0;
    z->env.sender = NULL;
    z->env.queue_id = "";
    z->env.nrcpt = 0;
    z->rcpts[0] = NULL;
}

static void
fz_session(struct fz *z, struct filter_chain *ch)
{
    struct filter_args a = {0};
    struct sockaddr_in *s4 = (struct sockaddr_in *) &z->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &z->sa;

    memset(&z->env, 0, sizeof(z->env));
    memset(&z->sa, 0, sizeof(z->sa));
    z->env.spool_fd = -1;
    z->env.queue_id = "";
    z->env.rcpts = z->rcpts;
    z->rcpts[0] = NULL;
    switch (z->envb & 3) {
    case 0:
        s4->sin_family = AF_INET;
        z->env.client_sa = (struct sockaddr *) &z->sa;
        z->env.client_addr = "192.0.2.7";
        z->env.client_port = 41234;
        z->env.client_name = "client.example";
        z->env.server_addr = "192.0.2.1";
        z->env.server_port = 25;
        break;
    case 1:
        s6->sin6_family = AF_INET6;
        z->env.client_sa = (struct sockaddr *) &z->sa;
        z->env.client_addr = "2001:db8::7";
        z->env.client_port = 5;
        z->env.client_name = "unknown";
        z->env.server_addr = "2001:db8::1";
        z->env.server_port = 587;
        break;
    case 2:
        z->sa.ss_family = AF_UNIX;
        z->env.client_sa = (struct sockaddr *) &z->sa;
        z->env.client_addr = "127.0.0.1";
        z->env.client_name = "localhost";
        break;
    case 3:
        break; /* nothing known */
    }
    ev_now_update(z->loop);
    z->fs = filter_sess_new(ch, &z->env);
    if (fz_refused(fz_stage(z, FILTER_CONNECT, NULL)))
        goto out;
    if (z->script & 0x01) {
        a.str = "helo.example";
        fz_stage(z, FILTER_HELO, &a);
        z->env.helo = "helo.example";
        z->env.proto = "ESMTP";
    }
    if (z->script & 0x02)
        fz_unknown(z);
    fz_txn(z, (z->script & 0x10) != 0);
    if (z->script & 0x08)
        fz_txn(z, 0);
out:
    filter_sess_free(z->fs);
    z->fs = NULL;
    fz_check_closed(z);
}

/* The configuration for option byte opt, one or two milters; built once
 * (cf_check is a good part of a short run) and kept. */
static const struct cf *
fz_cf(uint8_t opt, int two)
{
    static struct cf *cache[256][2];
    static const char *const actions[] = {"tempfail",   "accept",   "reject",
                                          "quarantine", "shutdown", "tempfail",
                                          "accept",     "reject"};
    static const int protos[] = {6, 6, 6, 6, 5, 4, 3, 2};
    static const char *const lists[] = {
        "milter_connect_macros",       "milter_helo_macros",
        "milter_mail_macros",          "milter_rcpt_macros",
        "milter_data_macros",          "milter_end_of_data_macros",
        "milter_end_of_header_macros", "milter_unknown_command_macros"};
    struct buf *err, *spec;
    struct cf *cf;
    size_t i;

    if (cache[opt][two])
        return cache[opt][two];
    err = buf_new(256, BUF_NOCAP);
    spec = buf_new(256, BUF_NOCAP);
    cf = cf_new();
    for (i = 0; i < (two ? 2u : 1u); i++)
        buf_printf(spec, "%s{ unix:%s, default_action=%s, protocol=%d%s }",
                   i ? " " : "", fz_path, actions[opt & 7],
                   protos[(opt >> 3) & 7],
                   opt & 0x80 ? ", connect_timeout=5ms, command_timeout=5ms,"
                                " content_timeout=5ms"
                              : "");
    if (cf_set(cf, "smtpd_milters", buf_data(spec), NULL, err) < 0
        || cf_set(cf, "myhostname", "mx.example", NULL, err) < 0)
        abort();
    if (opt & 0x40)
        for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
            if (cf_set(cf, lists[i], FZ_ALL_MACROS, NULL, err) < 0)
                abort();
    if (cf_check(cf, err) < 0) {
        fprintf(stderr, "fuzz_milter_sess: %s\n", buf_data(err));
        abort();
    }
    buf_free(spec);
    buf_free(err);
    cache[opt][two] = cf;
    return cf;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    struct fz *z;
    struct milter_conf **mcs;
    struct filter_chain *ch;
    struct buf *err;
    size_t i;

    if (!inited) {
        fz_init();
        inited = 1;
    }
    if (size < 4)
        return 0;
    z = calloc(1, sizeof(*z));
    if (z == NULL)
        abort();
    z->conf = data[0];
    z->script = data[1];
    z->envb = data[2];
    z->extra = data[3];
    z->p = data + 4;
    z->left = size - 4;
    z->patient = (z->conf & 0x80) != 0;
    log_set_debug((z->extra & 0x01) != 0);
    z->msg = buf_new(4096, BUF_NOCAP);
    z->held = buf_new(16, BUF_NOCAP);
    z->loop = ev_loop_new(EVFLAG_AUTO);
    if (z->loop == NULL)
        abort();
    ev_io_init(&z->acc, fz_accept_cb, fz_lfd, EV_READ);
    ev_idle_init(&z->idle, fz_idle_cb);
    ev_timer_init(&z->guard, fz_guard_cb, FZ_GUARD, 0.);
    z->acc.data = z->idle.data = z->guard.data = z;
    ev_io_start(z->loop, &z->acc);

    err = buf_new(256, BUF_NOCAP);
    mcs = milter_confs_new(fz_cf(z->conf, (z->envb & 0x08) != 0),
                           "smtpd_milters", err);
    if (mcs == NULL) {
        fprintf(stderr, "fuzz_milter_sess: %s\n", buf_data(err));
        abort();
    }
    buf_free(err);
    ch = filter_chain_new();
    for (i = 0; mcs[i]; i++)
        filter_chain_add(ch, &milter_filter_ops, mcs[i]);
    filter_chain_start(ch, z->loop);

    fz_session(z, ch);
    if (z->script & 0x20)
        fz_session(z, ch);

    filter_chain_stop(ch);
    filter_chain_free(ch);
    milter_confs_free(mcs);
    ev_io_stop(z->loop, &z->acc);
    for (i = 0; i < z->nc; i++) {
        fc_close(&z->c[i]);
        buf_free(z->c[i].in);
        buf_free(z->c[i].out);
    }
    ev_loop_destroy(z->loop);
    buf_free(z->msg);
    buf_free(z->held);
    free(z);
    log_set_debug(0);
    return 0;
}
