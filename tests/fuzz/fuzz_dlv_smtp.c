/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fuzz_dlv_smtp.c - whole delivery sessions of the SMTP client delivery
 * agent (dlv_smtp.c: dlv_smtp_start(), the relay to the next hop) against
 * a fake SMTP server on 127.0.0.1 whose output is the fuzz input. Both
 * ends run on one libev loop in this thread, so a run is deterministic
 * but for how the kernel hands over big writes.
 * For that the harness brings its own wpool (wpool.h's functions, so
 * lib/wpool.o is not linked in; a wpool function that a linked module
 * starts to use must be added here, or the link fails with duplicates):
 * work and done run on the loop thread from a zero timer started by the
 * first wpool_submit, in order, as a pool whose worker finished at once
 * would have them; and its own preadv2(), which says EAGAIN (not in the
 * page cache) when told to.
 *
 * Input: five option bytes, then the fake server's output as records.
 *  byte 0: bits 0-2 the first job's message (small, empty with the null
 *          sender, no final CRLF, dot lines, 8-bit with BODY=8BITMIME,
 *          192 KB in four SMTP_CHUNK reads, the last of one byte, a bad
 *          sender, one bare LF), bits 3-5 the stage whose timeout is 0s
 *          (none, helo, mail, rcpt, data_init, data_xfer, data_done,
 *          connect; the others are 300s: a 0s timer fires on the next
 *          loop turn, before a reply the fake writes in it is read; with
 *          credentials (byte 4 bit 6) helo is 1s instead, as at 0s the
 *          greeting times out and AUTH, under the same timeout, is never
 *          reached: see op 2's stall), bit 6 connection cache off, bit 7
 *          debug logging
 *  byte 1: bits 0-2 recipients per job (1 to 5), bits 3-4 jobs in
 *          sequence to the same next hop (1 to 3: the connection cache),
 *          bits 5-7 where in the address table the recipients start
 *          (the table holds addresses Sluice must refuse to send)
 *  byte 2: bits 0-1 smtp_discard_ehlo_keywords (none, pipelining,
 *          size+8bitmime+silent-discard with smtp_skip_5xx_greeting=no,
 *          pipelining+silent-discard),
 *          bit 2 between jobs the fake speaks unasked on the idle
 *          connection, bit 3 24 long recipients instead (over
 *          SMTP_PIPE_MAX: pipelined groups), bit 4 the second job's next
 *          hop written without [] (another cache key), bit 5 "cold":
 *          queue file reads with RWF_NOWAIT fail with EAGAIN (bits 6-7:
 *          all, the first, every other, the first and then EIO), so the
 *          content is read in the wpool (which answers after one zero
 *          timer round, two for the last two patterns)
 *  byte 3: bits 0-2 the second job's message, bits 3-5 the third's,
 *          bit 6 smtp_connection_reuse_time_limit=0s (nothing is cached),
 *          bit 7 the first job's next hop is "localhost" (resolved in the
 *          wpool) and, with byte 2 bit 4, the second one's port has no
 *          listener (connection refused)
 *  byte 4: bits 0-1 the jobs' TLS level (none: no context; may, encrypt,
 *          verify: job->tls is a context made once by tls_cli_new with
 *          the defaults), bit 2 smtp_starttls_timeout=0s, bit 3 STARTTLS
 *          in smtp_discard_ehlo_keywords too, bit 4 ok EHLO replies made
 *          by op 6 offer STARTTLS (first), bit 5 the pool's zero timer
 *          has a higher priority: what it runs comes before the
 *          session's 0s timers of the same loop turn (a handshake step
 *          back before smtp_starttls_timeout fires), bit 6 the jobs
 *          carry credentials (sasl_user FZ_USER, sasl_pass FZ_PASS) and
 *          smtp_sasl_auth_enable = yes (smtp_sasl_password_maps =
 *          static:x, not consulted: the jobs are made here;
 *          smtp_sasl_security_options = noanonymous, which rules no
 *          mechanism out), bit 7 smtp_sasl_auth_soft_bounce = no and
 *          smtp_sasl_mechanism_filter = "LOGIN, !plain" (only LOGIN
 *          passes: PLAIN is named with '!', CRAM-MD5 not at all) (inputs
 *          made when there were four option bytes, or before AUTH, got a
 *          0 in bits 6-7)
 *  records: an op byte; bit 7 ends the turn after the record.
 *   op&7 == 0: a reply line: code byte (fz_code), length byte, text;
 *              bit 3: '-' (else ' '), bit 4: "C.1.0 " before the text
 *              (C the code's class); CRLF added
 *   op&7 == 1: raw bytes: length (one byte, two with bit 3), bytes
 *   op&7 == 2: (op>>3)&3: 0 shutdown(SHUT_WR) and 1 close() once the
 *              output is written, 2 reset (SO_LINGER 0, close) (these
 *              end the turn), 3 stop reading; that with bit 5, with
 *              credentials and helo at 1s (byte 0): and stall, say
 *              nothing, not even unasked, for FZ_STALL seconds (not with
 *              FUZZ_DLV_NOSTALL set in the environment: slow inputs)
 *   op&7 == 3: a repeated line: count byte (fz_count), code byte, length
 *              byte, text; bit 3 '-' (else ' '); bit 4 a last line
 *              "code ok" after them
 *   op&7 == 4: a long line: size byte (fz_size) of 'x' after "250",
 *              bit 3 '-' (else ' '), bit 4 no CRLF
 *   op&7 == 5: the last 1 + ((op>>3)&3) bytes of the turn wait for the
 *              next turn (a reply split across reads)
 *   op&7 == 6: a canned reply to the command it will be paired with
 *              (fz_canned): byte v, bits 0-1 ok, 4xx, 5xx, 421; an ok
 *              EHLO reply takes one more byte: its keywords, and with
 *              credentials v bits 2-4 its AUTH lines (none, "AUTH PLAIN
 *              LOGIN", "AUTH=LOGIN", "AUTH CRAM-MD5 PLAIN", "AUTH GSSAPI",
 *              "AUTH LOGIN PLAIN" and "AUTH=LOGIN PLAIN", "AUTH CRAM-MD5",
 *              "AUTH DIGEST-MD5 NTLM LOGIN"), after STARTTLS and the junk;
 *              an ok reply to AUTH or to a response, v bits 2-3: the next
 *              step (a 334, LOGIN's prompts or a base64 CRAM-MD5
 *              challenge, while the mechanism has steps left, else 235),
 *              a 334 always (a loop past the steps), "334 not+base64!",
 *              a 235 at once; 4xx 454 4.7.0, 5xx 535 5.7.8; on a
 *              connection gone to TLS: a fatal alert, a ServerHello cut
 *              short (OpenSSL waits for more), a record over the maximum
 *              length, a 421 in clear
 *   op&7 == 7: a bare code: code byte; bit 3 LF only, bit 4 "code "
 * The fake answers every command with the next turn (QUIT with nothing;
 * content is no command), and the first TLS bytes after a 220 to
 * STARTTLS (the ClientHello) too. When the loop has nothing to do while
 * the client waits, the fake sends the next turn unasked, or, with the
 * input used up, shuts its side down. Its output is capped at FZ_GEN_MAX
 * per input.
 *
 * The fake keeps a model of the client's reply parser (the same line
 * rules) over its own output: the n-th complete reply on a connection is
 * the answer to the n-th thing the client waits for there (the greeting,
 * then its commands in order, STARTTLS and AUTH among them, and each
 * base64 line it answers a 334 to AUTH with), which is how the client
 * pairs them, pipelined or not. A line is such a response when the
 * connection's last event is AUTH (or a response) paired with a 334 and
 * the mechanism has steps left (CRAM-MD5 1, LOGIN 2, PLAIN 0). A 220 paired
 * with STARTTLS puts the connection in TLS: what the client sends on it from
 * then on goes to the server's TLS, not to the command checks (only its first
 * byte must start a TLS handshake record), and it carries no mail: the fake
 * cannot complete a handshake, so the client gives up on it (level may:
 * and makes a new connection to the same address, modelled as any
 * other, on which it must not try STARTTLS again; the levels that
 * require TLS: defers). From it, checked (abort() on a violation):
 *  - done(job) is called once per job, never inside dlv_smtp_start, and
 *    within FZ_ITER_MAX loop turns and FZ_GUARD seconds;
 *  - every recipient has a result: status SENT, DEFER or BOUNCE, a dsn
 *    "D.D{1,3}.D{1,3}" whose class is 2, 4 or 5 to match, a text;
 *  - SENT only when the fake answered that recipient's RCPT TO with 2xx,
 *    MAIL with 2xx, DATA with 3xx and the final "." with 2xx, in one
 *    transaction whose content (dot-stuffing undone) is byte for byte the
 *    queue file's content, plus CRLF when it is not empty and does not end
 *    in CRLF; any content that differs aborts at once;
 *  - BOUNCE only for an address Sluice cannot send (5.1.3, never sent),
 *    a bad sender (5.1.7, no MAIL), a SIZE the fake announced that the
 *    message exceeds (5.3.4, no MAIL), or a 5xx paired with that
 *    recipient's RCPT TO or with the greeting, HELO, MAIL, DATA or "."
 *    (DATA and "." only for a recipient accepted in that transaction);
 *    these two are not checked for a job during or after which the fake
 *    closed a connection or the client reset one (deaf_job; not for a
 *    connection in TLS, whose commands were all read): replies the
 *    fake sent ahead may then answer commands it never got to read;
 *  - TLS: at level encrypt or verify no recipient is SENT and the fake
 *    never sees MAIL (it is sent in clear only); a deferral with 4.7.4
 *    "TLS is required, but was not offered" only at those levels, after
 *    a 2xx to EHLO without STARTTLS (or with it discarded) or to HELO;
 *    "refused to start TLS" (class 4) only there, after a reply to
 *    STARTTLS neither 220 nor 421; 4.7.5 "Cannot start TLS: handshake
 *    failure" and 4.4.2 "timed out while performing the TLS handshake"
 *    only there, after a 220 to STARTTLS; "while sending STARTTLS" only
 *    at a level that asks for TLS (the reply checks not when deaf); at
 *    encrypt and verify no new connection after a 220 to STARTTLS;
 *  - the client sends only CRLF-terminated EHLO/HELO <smtp_helo_name>,
 *    STARTTLS, MAIL FROM:<sender> [SIZE=<content size>] [BODY=8BITMIME
 *    (8-bit messages only)], RCPT TO:<a recipient of the job, once>, DATA
 *    and QUIT, each in its place (EHLO after a 2xx greeting, HELO after a
 *    5xx to EHLO, STARTTLS right after a 2xx to EHLO that offered it, not
 *    discarded, at level may and up, once per job; MAIL after a 2xx to
 *    EHLO/HELO (not when STARTTLS was due then, unless deaf), to a
 *    STARTTLS that was not 220, or to the last ".", RCPT and DATA inside
 *    a transaction, not before the previous reply unless the fake
 *    announced PIPELINING and it is not discarded), no line over
 *    FZ_CMD_MAX, nothing after QUIT, no content unless MAIL, a RCPT and
 *    DATA were accepted;
 *  - AUTH (byte 4 bit 6): only with credentials; right after a 2xx to
 *    EHLO whose reply listed AUTH with a name the client keeps (as
 *    smtp_ehlo_auth: names of 1-20 [A-Za-z0-9_-], within SMTP_AUTH_MAX),
 *    not when STARTTLS was due then (never in clear before STARTTLS), or
 *    after a refused STARTTLS at level may; once per connection; the
 *    first of CRAM-MD5, PLAIN, LOGIN listed that the filter lets
 *    through; PLAIN's initial response is base64 of "\0user\0password",
 *    LOGIN's responses the user then the password, CRAM-MD5's
 *    "user " + 32 lower-case hex, the HMAC-MD5 of the challenge keyed
 *    with the password, and only to a challenge in strict base64 (not
 *    checked with FUZZ_DLV_LAX_B64 set); no response unless a 334 came
 *    and the mechanism has steps left; "*" (a cancel) only right after
 *    a 334 to AUTH or a response, then nothing but QUIT; MAIL FROM with
 * credentials on a connection whose EHLO listed AUTH only after a 2xx to AUTH
 * (or to a response) there: so no SENT without it;
 *  - AUTH outcomes: "SASL authentication failed..." and the AUTH stage's
 *    timeout or lost connection only with credentials; "offered no
 *    compatible authentication mechanisms" 4.7.0 after a 2xx EHLO that
 *    listed AUTH with nothing usable; "cannot authenticate" 4.7.0 after
 *    a CRAM-MD5 challenge that is not base64, left unanswered; the
 *    protocol loop 4.3.0 after a 3xx past the mechanism's steps; "server
 *    ... said: " after a 4xx or 5xx (not 421) to AUTH or a response,
 *    DEFER with the reply's dsn, its first digit made 4 for a 5xx with
 *    soft bounce on, BOUNCE with the 5.x.x dsn for a 5xx with it off
 *    (status and dsn always, the event not when deaf); the timeout
 *    (4.4.2) only with helo at 1s;
 *  - no result text and no log line (the log goes to a file, read back
 *    after each input; with FUZZ_DLV_LOG to stderr, unchecked) holds
 *    the password or its base64, unless the fake's output did;
 *  - no fd leaks: after the input (the fake shuts down every connection,
 *    so that the cache drops what it holds) the process has the fds it
 *    had before. Nothing may crash, leak or trip UBSan.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "lib/wpool.h"
#include "queue/dlv.h"
#include "queue/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CONNS    12
#define FZ_EVENTS   128 /* 3 jobs of 24 recipients on one connection: 86 */
#define FZ_REPLIES  128
#define FZ_GEN_MAX  (3u * 1024 * 1024) /* fake output per input */
#define FZ_ITER_MAX 200000             /* loop turns per job */
#define FZ_GUARD    10.0               /* seconds per job */
#define FZ_STUCK    1.0  /* seconds with nothing to do while the client waits */
#define FZ_SETTLE   0.02 /* a quiet spell: what was sent has arrived */
#define FZ_CMD_MAX  1100 /* a command line, with CRLF */
#define FZ_LINE_MAX 4096 /* as dlv_smtp's SMTP_LINE_MAX */
#define FZ_LINES    100  /* SMTP_REPLY_LINES */
#define FZ_NMSG     8
#define FZ_NBASIC   8
#define FZ_NLONG    24
#define FZ_NADDR    (FZ_NBASIC + FZ_NLONG)
#define FZ_JOBS     3
#define FZ_RCPTS    FZ_NLONG
#define FZ_HELO     "client.example"
#define FZ_BIG      (3 * 65536 + 1) /* SMTP_CHUNK: a last chunk of 1 */
#define FZ_USER     "fz-user"
#define FZ_PASS     "fz:pass"
#define FZ_AUTH_MAX 512 /* SMTP_AUTH_MAX: the mechanism list kept */
#define FZ_STALL    1.5 /* seconds the fake says nothing (op 0x3a) */

enum fc_end {
    FC_END_NONE,
    FC_END_SHUT, /* shutdown(SHUT_WR) once out is written */
    FC_END_CLOSE,
    FC_END_RESET
};

/* What the client waits for a reply to, in order, on one connection. */
enum fe_kind {
    FE_GREET,
    FE_EHLO,
    FE_HELO,
    FE_MAIL,
    FE_RCPT,
    FE_DATA,
    FE_DOT,
    FE_QUIT,
    FE_STARTTLS,
    FE_AUTH /* AUTH (step 0), or the client's response to a 334 */
};

/* What a reply said, as the client's EHLO parser sees it. */
#define FR_STARTTLS 1 /* a line "STARTTLS" after the first */
#define FR_AUTH     2 /* AUTH lines left the client a mechanism name */
#define FR_CRAM     4 /* and these among them */
#define FR_PLAIN    8
#define FR_LOGIN    16
#define FR_MECHS    (FR_CRAM | FR_PLAIN | FR_LOGIN)

struct fevent {
    enum fe_kind kind;
    int job;
    int rcpt;     /* FE_RCPT: index into the job's recipients */
    int txn;      /* transaction on the connection (MAIL .. DOT) */
    int code;     /* the paired reply's code; 0: none yet */
    int received; /* FE_DOT: the "." came (0: reserved after a 354) */
    int flags;    /* the paired reply's FR_* */
    int mech;     /* FE_AUTH: the connection's mechanism (FR_CRAM ...) */
    int step;     /* FE_AUTH: 0 the AUTH command, n the n-th response */
};

/* content states: undoing dot-stuffing */
enum fc_cst {
    CS_BOL,
    CS_MID,
    CS_DOT,  /* a '.' at the beginning of a line */
    CS_DOTCR /* ".\r" there */
};

struct fz;
struct fmsg;

/* The fake server's side of one connection. */
struct fconn {
    struct fz *z;
    int fd; /* -1: closed */
    ev_io rio, wio;
    struct buf *in, *out;
    enum fc_end end;
    int shut; /* our write side is shut down */
    int quit; /* QUIT came */

    /* the model of the client's reply parser over our output */
    struct buf *pline;         /* the partial line */
    int pn, pcode;             /* lines in the reply being made, its code */
    int pflags;                /* and its FR_* */
    char pauth[FZ_AUTH_MAX];   /* its AUTH names, as smtp_ehlo_auth keeps
                                  them: " PLAIN LOGIN " */
    char *pchal;               /* a 334's first line text up to a space */
    char *repchal[FZ_REPLIES]; /* that of each 334 reply, or NULL */
    int broken;                /* the client gives up on what we sent */
    int nrep;
    int repcode[FZ_REPLIES];
    int repflags[FZ_REPLIES];
    int pipelining; /* some reply line announced PIPELINING */
    /* SIZE values announced, each once */
    unsigned long long sizes[8];
    int nsizes;
    int sizes_over; /* more than fit: any value is taken as announced */

    struct fevent ev[FZ_EVENTS];
    int nev;
    int paired;

    /* the dialogue */
    int ready; /* a MAIL may come: 2xx to EHLO/HELO or to a "." */
    int txn;   /* transaction number; open while txn_open */
    int txn_open, txn_mail, txn_data, txn_job;
    unsigned long long txn_rcpts; /* bit per recipient of the job */
    int content;
    enum fc_cst cst;
    size_t cpos; /* expected bytes matched */

    /* STARTTLS got 220: the client's bytes from then on are TLS, no
     * commands; the connection is no use for mail (the handshake cannot
     * succeed against the fake) */
    int tls;
    int hello; /* the first TLS bytes came (and were answered) */

    /* SMTP AUTH */
    int auth_list;   /* FR_* of the 2xx EHLO reply (0 after HELO) */
    int auth_mech;   /* AUTH sent with this mechanism (FR_CRAM ...), or 0 */
    int auth_resp;   /* responses the client sent to 334s */
    int authed;      /* a 2xx was paired with an FE_AUTH */
    int auth_cancel; /* "*" came: QUIT must follow */
};

struct fmsg {
    struct spool_msg *m;
    char *exp; /* the content as the server must see it */
    size_t explen;
    int bad_sender;
    int eight;
};

struct fjob {
    struct dlv_job job;
    struct fz *z;
    size_t idx[FZ_RCPTS];
    int msg;
    int done;
    int tls_went; /* a connection of the job got 220 to STARTTLS */
};

struct fz {
    uint8_t o[5];
    const uint8_t *p; /* records not used yet */
    size_t left;
    struct buf *held; /* the end of a split turn: starts the next one */
    size_t gen;       /* bytes of fake output generated */
    struct fconn c[FZ_CONNS];
    size_t nc;
    struct fconn *last; /* the conn that spoke last */
    ev_io acc;
    ev_idle idle;
    ev_timer guard;
    ev_tstamp nothing; /* since when the fake had nothing to do */
    int stuck, expired;
    int in_start;
    int cur;      /* the job running */
    int nopl;     /* PIPELINING is discarded */
    int tls;      /* the jobs' enum dlv_tls */
    int notls_kw; /* STARTTLS is discarded */
    int creds;    /* the jobs carry FZ_USER and FZ_PASS */
    int soft;     /* smtp_sasl_auth_soft_bounce = yes */
    int allowed;  /* FR_* mechanisms the mechanism filter lets through */
    int stall_ok; /* op 0x3a stalls (credentials, helo at 1s) */
    int stall;    /* set by such an op during the turn */
    ev_timer stall_t;
    int echo;      /* the fake's output held a secret (fz_secret_scan) */
    char tail[16]; /* the last bytes of its output, for that */
    size_t ntail;
    /* The first job during which the fake closed a connection with what
     * the client sent after it unread, or a reset dropped it: from then on
     * replies the fake sent ahead may answer commands it never saw, and
     * SENT and BOUNCE are not checked against its view (a server that
     * answers before it reads fools any client). */
    int deaf_job;
    struct fjob jobs[FZ_JOBS];
    int njobs;
};

static int fz_cold;       /* preadv2 pattern: 0 none, 1 + bits 6-7 */
static int fz_pool_hops;  /* zero timer rounds before the pool answers */
static unsigned fz_ncold; /* RWF_NOWAIT reads in this input */
static struct ev_loop *fz_loop;
static struct wpool *fz_pool;
static int fz_lfd = -1;
static int fz_port;
static int fz_closed_port; /* nothing listens there */
static char fz_dir[64];
static struct fmsg fz_msgs[FZ_NMSG];
static char *fz_addrs[FZ_NADDR];
static int fz_trace;           /* FUZZ_DLV_LOG set: log to stderr */
static struct tls_cli *fz_tls; /* the jobs' client context, made once */
static int fz_logfd = -1;      /* the log file, read back after an input */
static int fz_nostall;         /* FUZZ_DLV_NOSTALL set: op 0x3a never stalls */
static int fz_lax;             /* FUZZ_DLV_LAX_B64 set: a CRAM-MD5 answer to a
                                  challenge that is not strict base64 passes */

#define FZ_FAIL(...)                                    \
    do {                                                \
        fprintf(stderr, "fuzz_dlv_smtp: " __VA_ARGS__); \
        fputc('\n', stderr);                            \
        abort();                                        \
    } while (0)

/* ------------------------------------------------------------------ */
/* a deterministic wpool and preadv2 */

#define FZ_POOL_Q 64

struct wpool {
    struct ev_loop *loop;
    ev_timer t;
    struct {
        wpool_fn work, done;
        void *arg;
    } q[FZ_POOL_Q];
    size_t n;
    int hop; /* rounds left before the next delivery */
};

/* What was queued when the timer fired: work, then done, in order (with
 * fz_pool_hops of 2, one more zero timer round first: the completion
 * comes after the session's own zero timer). */
static void
fz_pool_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct wpool *p = w->data;
    size_t k = p->n;

    (void) loop;
    (void) revents;
    if (p->hop-- > 0) {
        ev_timer_set(&p->t, 0., 0.);
        ev_timer_start(p->loop, &p->t);
        return;
    }
    while (k-- > 0) {
        wpool_fn work = p->q[0].work, done = p->q[0].done;
        void *arg = p->q[0].arg;

        p->n--;
        memmove(&p->q[0], &p->q[1], p->n * sizeof(p->q[0]));
        if (work)
            work(arg);
        done(arg);
    }
}

struct wpool *
wpool_new(struct ev_loop *loop, int nthreads, const char *name, int flags)
{
    struct wpool *p = calloc(1, sizeof(*p));

    (void) nthreads;
    (void) name;
    (void) flags;
    if (p == NULL)
        abort();
    p->loop = loop;
    ev_timer_init(&p->t, fz_pool_cb, 0., 0.);
    p->t.data = p;
    return p;
}

void
wpool_free(struct wpool *p)
{
    if (p == NULL)
        return;
    ev_timer_stop(p->loop, &p->t);
    free(p);
}

void
wpool_submit(struct wpool *p, wpool_fn work, wpool_fn done, void *arg)
{
    if (p->n == FZ_POOL_Q)
        FZ_FAIL("more than %d jobs in the pool", FZ_POOL_Q);
    p->q[p->n].work = work;
    p->q[p->n].done = done;
    p->q[p->n].arg = arg;
    p->n++;
    if (!ev_is_active(&p->t)) {
        p->hop = fz_pool_hops - 1;
        ev_timer_set(&p->t, 0., 0.);
        ev_timer_start(p->loop, &p->t);
    }
}

void
wpool_post(struct wpool *p, wpool_fn done, void *arg)
{
    wpool_submit(p, NULL, done, arg);
}

unsigned
wpool_pending(struct wpool *p)
{
    return (unsigned) p->n;
}

/* dlv_smtp reads the queue file with RWF_NOWAIT first. */
ssize_t
preadv2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags)
{
    unsigned k = fz_ncold++;

    if ((flags & RWF_NOWAIT) && fz_cold
        && (fz_cold == 1                    /* all */
            || (fz_cold == 2 && k == 0)     /* the first */
            || (fz_cold == 3 && k % 2 == 0) /* every other */
            || (fz_cold == 4 && k == 0))) { /* the first, then EIO */
        errno = EAGAIN;
        return -1;
    }
    if ((flags & RWF_NOWAIT) && fz_cold == 4) {
        errno = EIO;
        return -1;
    }
    return preadv(fd, iov, iovcnt, off);
}

/* ------------------------------------------------------------------ */
/* setup */

static int
fz_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static void
fz_cleanup(void)
{
    nftw(fz_dir, fz_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* As dlv_smtp's smtp_addr_ok, written again: may it go between <>? */
static int
fz_addr_ok(const char *a)
{
    const unsigned char *p;

    if (strlen(a) > 1000)
        return 0;
    for (p = (const unsigned char *) a; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
            return 0;
    return 1;
}

static void
fz_addrs_init(void)
{
    static const char *const basic[FZ_NBASIC] = {
        "r0@example.net",
        "r1@example.net",
        "r2@sub.example.net",
        "postmaster",
        "bad\r\nRCPT TO:<inject@example.net>", /* CR LF */
        "b<a>d@example.net",
        NULL, /* 1000 bytes: the longest we may send */
        NULL, /* 1001 bytes */
    };
    size_t i;

    for (i = 0; i < FZ_NBASIC; i++) {
        if (basic[i]) {
            fz_addrs[i] = strdup(basic[i]);
        } else {
            size_t n = i == 6 ? 1000 : 1001;

            fz_addrs[i] = malloc(n + 1);
            if (fz_addrs[i] == NULL)
                abort();
            memset(fz_addrs[i], 'a' + (int) i, n);
            memcpy(fz_addrs[i] + n - 12, "@example.net", 12);
            fz_addrs[i][n] = '\0';
        }
    }
    for (i = 0; i < FZ_NLONG; i++) {
        char *a = malloc(1001);

        if (a == NULL)
            abort();
        /* 24 of ~900 bytes: more than SMTP_PIPE_MAX in RCPT TO lines */
        snprintf(a, 1001, "long%02zu.%0880d@example.net", i, 0);
        fz_addrs[FZ_NBASIC + i] = a;
    }
    for (i = 0; i < FZ_NADDR; i++)
        if (fz_addrs[i] == NULL)
            abort();
}

/* A queue file with this content and sender, read back. */
static void
fz_msg_make(struct fmsg *f, const char *content, size_t len, const char *sender,
            const char *body)
{
    struct buf *err = buf_new(256, BUF_NOCAP);
    struct spool_env env;
    struct spool_rcpt r[FZ_NADDR];
    struct spool_file *sf;
    char path[256], id[SPOOL_ID_SIZE];
    size_t i;

    memset(&env, 0, sizeof(env));
    memset(r, 0, sizeof(r));
    for (i = 0; i < FZ_NADDR; i++)
        r[i].addr = (char *) "placeholder@example.net";
    env.arrival = 1448159378123456LL;
    env.client_name = "mx.example.org";
    env.client_addr = "192.0.2.7";
    env.client_port = 41234;
    env.helo = "mx.example.org";
    env.proto = "ESMTP";
    env.sender = "sender@example.org";
    env.body_type = (char *) body;
    env.rcpt = r;
    env.nrcpt = FZ_NADDR;
    sf = spool_create(fz_dir, err);
    if (sf == NULL || spool_write(sf, content, len) < 0
        || spool_finish(sf, &env) < 0 || spool_commit(sf, "incoming") < 0) {
        fprintf(stderr, "fuzz_dlv_smtp: spool: %s\n", buf_data(err));
        abort();
    }
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    spool_free(sf);
    snprintf(path, sizeof(path), "%s/incoming/%s", fz_dir, id);
    f->m = spool_read(path, err);
    if (f->m == NULL || f->m->content_len != (off_t) len) {
        fprintf(stderr, "fuzz_dlv_smtp: spool_read: %s\n", buf_data(err));
        abort();
    }
    /* the envelope as the tests want it (spool.c need not take these) */
    free(f->m->env.sender);
    f->m->env.sender = strdup(sender);
    for (i = 0; i < FZ_NADDR; i++) {
        free(f->m->env.rcpt[i].addr);
        f->m->env.rcpt[i].addr = strdup(fz_addrs[i]);
        if (f->m->env.rcpt[i].addr == NULL)
            abort();
    }
    f->bad_sender = !fz_addr_ok(sender);
    f->eight = body && strcmp(body, "8BITMIME") == 0;
    f->explen = len;
    f->exp = malloc(len + 2);
    if (f->exp == NULL)
        abort();
    memcpy(f->exp, content, len);
    if (len > 0
        && (len < 2 || content[len - 2] != '\r' || content[len - 1] != '\n')) {
        memcpy(f->exp + len, "\r\n", 2);
        f->explen += 2;
    }
    buf_free(err);
}

static void
fz_msgs_init(void)
{
    static const char small[] = "From: <sender@example.org>\r\n"
                                "Subject: hello\r\n\r\nHello,\r\nbye\r\n";
    static const char noend[] = "Subject: x\r\n\r\nno end";
    static const char dots[] = ".\r\n..\r\n.x\r\n\r\n.\r\nend.\r\n.\n.\r."
                               "\r\n.\r\r\n.";
    static const char eight[] = "Subject: \xc3\xa9t\xc3\xa9\r\n\r\n"
                                "caf\xc3\xa9 \xff\xfe\x80\x00 nul\r\n";
    char *big = malloc(FZ_BIG);
    size_t i;

    if (big == NULL)
        abort();
    /* CRLF lines of 80, a dot-leading one now and then; a CRLF across
     * the first chunk boundary, a '.' right after the second; ends in
     * CRLF whose LF is alone in the last chunk */
    for (i = 0; i < FZ_BIG; i++)
        big[i] = i % 80 == 78                ? '\r'
                 : i % 80 == 79              ? '\n'
                 : i % 80 == 0 && i % 7 == 0 ? '.'
                                             : (char) ('a' + i % 26);
    big[65535] = '\r';
    big[65536] = '\n';
    big[131071] = '\n';
    big[131072] = '.';
    big[FZ_BIG - 2] = '\r';
    big[FZ_BIG - 1] = '\n';
    fz_msg_make(&fz_msgs[0], small, sizeof(small) - 1, "sender@example.org",
                NULL);
    fz_msg_make(&fz_msgs[1], "", 0, "", NULL);
    fz_msg_make(&fz_msgs[2], noend, sizeof(noend) - 1, "sender@example.org",
                "7BIT");
    fz_msg_make(&fz_msgs[3], dots, sizeof(dots) - 1, "s.dots@example.org",
                NULL);
    fz_msg_make(&fz_msgs[4], eight, sizeof(eight) - 1, "sender@example.org",
                "8BITMIME");
    fz_msg_make(&fz_msgs[5], big, FZ_BIG, "sender@example.org", NULL);
    fz_msg_make(&fz_msgs[6], small, sizeof(small) - 1, "bad<sender>@x", NULL);
    fz_msg_make(&fz_msgs[7], "\n", 1, "sender@example.org", NULL);
    free(big);
}

static void
fz_init(void)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    struct buf *err = buf_new(256, BUF_NOCAP);
    const char *dbg = getenv("FUZZ_DLV_LOG");

    signal(SIGPIPE, SIG_IGN);
    fz_trace = dbg != NULL;
    fz_nostall = getenv("FUZZ_DLV_NOSTALL") != NULL;
    fz_lax = getenv("FUZZ_DLV_LAX_B64") != NULL;
    snprintf(fz_dir, sizeof(fz_dir), "/tmp/fuzz_dlv_smtp.XXXXXX");
    if (mkdtemp(fz_dir) == NULL)
        abort();
    atexit(fz_cleanup);
    /* the log goes to a file that is read back (no secret in it), or,
     * with FUZZ_DLV_LOG, to stderr */
    if (dbg) {
        log_init("postfix", "fuzz", NULL);
    } else {
        char lp[128];

        snprintf(lp, sizeof(lp), "%s/log", fz_dir);
        if (log_init("postfix", "fuzz", lp) < 0
            || (fz_logfd = open(lp, O_RDWR | O_CLOEXEC)) < 0)
            abort();
    }
    if (spool_mkdirs(fz_dir, err) < 0)
        abort();
    buf_free(err);
    fz_addrs_init();
    fz_msgs_init();

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fz_lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* a small window (inherited by accepted sockets), so that the client
     * meets a full socket buffer while sending content */
    setsockopt(fz_lfd, SOL_SOCKET, SO_RCVBUF, &(int){16384}, sizeof(int));
    if (fz_lfd < 0 || bind(fz_lfd, (struct sockaddr *) &sin, sizeof(sin)) < 0
        || listen(fz_lfd, 64) < 0
        || getsockname(fz_lfd, (struct sockaddr *) &sin, &sl) < 0)
        abort();
    fz_port = ntohs(sin.sin_port);
    {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        sin.sin_port = 0;
        sl = sizeof(sin);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0
            || getsockname(fd, (struct sockaddr *) &sin, &sl) < 0)
            abort();
        fz_closed_port = ntohs(sin.sin_port);
        close(fd);
    }
    fz_loop = ev_loop_new(EVFLAG_AUTO);
    if (fz_loop == NULL)
        abort();
    fz_pool = wpool_new(fz_loop, 1, "fuzzpool", 0);
    {
        struct buf *warn = buf_new(256, BUF_NOCAP);

        err = buf_new(256, BUF_NOCAP);
        fz_tls = tls_cli_new("", "", "", "", err, warn);
        if (fz_tls == NULL || buf_len(warn) > 0) {
            fprintf(stderr, "fuzz_dlv_smtp: tls_cli_new: %s%s\n", buf_data(err),
                    buf_data(warn));
            abort();
        }
        buf_free(err);
        buf_free(warn);
    }
}

/* The configuration for the option bytes; built once and kept. */
static const struct cf *
fz_cf(const struct fz *z)
{
    static struct cf *cache[8][2][4][2][2][2][2][2];
    static const char *const zero[8] = {
        NULL,
        "smtp_helo_timeout",
        "smtp_mail_timeout",
        "smtp_rcpt_timeout",
        "smtp_data_init_timeout",
        "smtp_data_xfer_timeout",
        "smtp_data_done_timeout",
        "smtp_connect_timeout",
    };
    static const char *const discard[2][4] = {
        {"", "pipelining", "size, 8bitmime, silent-discard",
         "PIPELINING silent-discard dsn"},
        {"starttls", "pipelining, StartTLS",
         "size, 8bitmime, silent-discard, starttls",
         "PIPELINING silent-discard dsn STARTTLS"}};
    int t = (z->o[0] >> 3) & 7, off = (z->o[0] >> 6) & 1, d = z->o[2] & 3,
        r = (z->o[3] >> 6) & 1, st = (z->o[4] >> 2) & 1, dt = z->notls_kw,
        au = (z->o[4] >> 6) & 1, hb = (z->o[4] >> 7) & 1;
    struct buf *err;
    struct cf *cf;

    if (cache[t][off][d][r][st][dt][au][hb])
        return cache[t][off][d][r][st][dt][au][hb];
    err = buf_new(256, BUF_NOCAP);
    cf = cf_new();
    if (cf_set(cf, "myhostname", "mx.example", NULL, err) < 0
        || cf_set(cf, "smtp_helo_name", FZ_HELO, NULL, err) < 0
        || cf_set(cf, "smtp_connection_cache_on_demand", off ? "no" : "yes",
                  NULL, err)
               < 0
        || cf_set(cf, "smtp_discard_ehlo_keywords", discard[dt][d], NULL, err)
               < 0
        || (d == 2 && cf_set(cf, "smtp_skip_5xx_greeting", "no", NULL, err) < 0)
        || (r
            && cf_set(cf, "smtp_connection_reuse_time_limit", "0s", NULL, err)
                   < 0)
        /* with credentials the helo stage gets 1s: at 0s the greeting
         * times out, and AUTH is never reached */
        || (zero[t]
            && cf_set(cf, zero[t], au && t == 1 ? "1s" : "0s", NULL, err) < 0)
        || (st && cf_set(cf, "smtp_starttls_timeout", "0s", NULL, err) < 0)
        || (au && cf_set(cf, "smtp_sasl_auth_enable", "yes", NULL, err) < 0)
        || (au
            && cf_set(cf, "smtp_sasl_password_maps", "static:x", NULL, err) < 0)
        || (au
            && cf_set(cf, "smtp_sasl_security_options", "noanonymous", NULL,
                      err)
                   < 0)
        || (hb && cf_set(cf, "smtp_sasl_auth_soft_bounce", "no", NULL, err) < 0)
        || (hb
            && cf_set(cf, "smtp_sasl_mechanism_filter", "LOGIN, !plain", NULL,
                      err)
                   < 0)
        || cf_check(cf, err) < 0 || dlv_smtp_check(cf, err) < 0) {
        fprintf(stderr, "fuzz_dlv_smtp: cf: %s\n", buf_data(err));
        abort();
    }
    buf_free(err);
    cache[t][off][d][r][st][dt][au][hb] = cf;
    return cf;
}

/* ------------------------------------------------------------------ */
/* the model of the client's reply parser */

static void fc_pair(struct fconn *c);

static unsigned long long
fz_strtoull_n(const char *p, size_t n)
{
    char tmp[64];

    if (n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    return strtoull(tmp, NULL, 10);
}

/* The mechanism names of an AUTH line ("AUTH PLAIN LOGIN", "AUTH=LOGIN")
 * into c->pauth, as smtp_ehlo_auth keeps them: names of 1 to 20 of
 * [A-Za-z0-9_-], upper-cased, while they fit. */
static void
fm_auth_names(struct fconn *c, const char *p, size_t len)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t used = strlen(c->pauth), i, n;

    while (len > 0) {
        for (n = 0; n < len && p[n] != ' '; n++)
            ;
        for (i = 0; i < n && p[i] != '\0' && strchr(ok, p[i]); i++)
            ;
        if (n > 0 && n <= 20 && i == n && used + n + 2 < sizeof(c->pauth)) {
            if (used == 0)
                c->pauth[used++] = ' ';
            for (i = 0; i < n; i++)
                c->pauth[used++] = (char) toupper((unsigned char) p[i]);
            c->pauth[used++] = ' ';
            c->pauth[used] = '\0';
        }
        p += n;
        len -= n;
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
    }
}

/* The FR_* of the AUTH names kept for the reply made. */
static int
fm_auth_flags(const struct fconn *c)
{
    if (c->pauth[0] == '\0')
        return 0;
    return FR_AUTH | (strstr(c->pauth, " CRAM-MD5 ") ? FR_CRAM : 0)
           | (strstr(c->pauth, " PLAIN ") ? FR_PLAIN : 0)
           | (strstr(c->pauth, " LOGIN ") ? FR_LOGIN : 0);
}

/* One complete line of our output (CR stripped), as smtp_line sees it. */
static void
fm_line(struct fconn *c, const char *line, size_t len)
{
    int code;

    if (len > FZ_LINE_MAX || len < 3 || line[0] < '2' || line[0] > '5'
        || !isdigit((unsigned char) line[1])
        || !isdigit((unsigned char) line[2])
        || (len > 3 && line[3] != ' ' && line[3] != '-')) {
        c->broken = 1;
        return;
    }
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (c->pn == 0) {
        c->pcode = code;
        c->pflags = 0;
        c->pauth[0] = '\0';
        free(c->pchal);
        c->pchal = NULL;
        if (code == 334) { /* smtp_cram_md5: after "334 ", to a space */
            const char *ch = len > 4 ? line + 4 : "";
            size_t n = len > 4 ? len - 4 : 0, k;

            for (k = 0; k < n && ch[k] != ' '; k++)
                ;
            c->pchal = strndup(ch, k);
            if (c->pchal == NULL)
                abort();
        }
    }
    if (++c->pn > FZ_LINES) {
        c->broken = 1;
        return;
    }
    if (c->pn > 1 && len > 4) { /* keywords, loosely: from any reply */
        const char *kw = line + 4;
        size_t n = len - 4;

        if (n == 10 && strncasecmp(kw, "PIPELINING", 10) == 0)
            c->pipelining = 1;
        if (n >= 4 && strncasecmp(kw, "SIZE", 4) == 0
            && (n == 4 || kw[4] == ' ')) {
            unsigned long long v = n > 5 ? fz_strtoull_n(kw + 5, n - 5) : 0;
            int a;

            for (a = 0; a < c->nsizes && c->sizes[a] != v; a++)
                ;
            if (a == c->nsizes && c->nsizes < 8)
                c->sizes[c->nsizes++] = v;
            else if (a == c->nsizes)
                c->sizes_over = 1;
        }
        /* exactly, as smtp_ehlo_line takes it (discarded or not) */
        if (n == 8 && strncasecmp(kw, "STARTTLS", 8) == 0)
            c->pflags |= FR_STARTTLS;
        if (n > 5 && strncasecmp(kw, "AUTH", 4) == 0
            && (kw[4] == ' ' || kw[4] == '='))
            fm_auth_names(c, kw + 5, n - 5);
    }
    if (len == 3 || line[3] == ' ') {
        if (c->nrep < FZ_REPLIES) {
            c->repcode[c->nrep] = c->pcode;
            c->repflags[c->nrep] = c->pflags | fm_auth_flags(c);
            c->repchal[c->nrep] = c->pchal;
            c->pchal = NULL;
        }
        c->nrep++;
        c->pn = 0;
        fc_pair(c);
    }
}

/* Bytes that leave for the client, in order. */
static void
fm_bytes(struct fconn *c, const char *p, size_t n)
{
    const char *nl;
    size_t k, len;

    while (n > 0 && !c->broken) {
        nl = memchr(p, '\n', n);
        k = nl ? (size_t) (nl - p) : n;
        if (buf_len(c->pline) + k <= FZ_LINE_MAX + 1) /* + a CR */
            buf_append(c->pline, p, k);
        else
            c->broken = 1; /* too long already */
        if (nl == NULL || c->broken)
            return;
        len = buf_len(c->pline);
        if (len > 0 && buf_data(c->pline)[len - 1] == '\r')
            len--;
        fm_line(c, buf_data(c->pline), len);
        buf_reset(c->pline);
        p += k + 1;
        n -= k + 1;
    }
}

static void
fc_add_event(struct fconn *c, enum fe_kind kind, int rcpt, int received)
{
    struct fevent *e;

    if (c->nev == FZ_EVENTS)
        FZ_FAIL("more than %d commands on one connection", FZ_EVENTS);
    e = &c->ev[c->nev++];
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->job = c->z->cur;
    e->rcpt = rcpt;
    e->txn = c->txn;
    e->received = received;
    if (kind == FE_AUTH) {
        e->mech = c->auth_mech;
        e->step = c->auth_resp;
    }
    fc_pair(c);
}

/* Does the client send content after this DATA event's reply? As
 * smtp_reply: MAIL got 2xx, a RCPT 2xx and none 421, DATA 3xx. */
static int
fc_content_due(const struct fconn *c, int di)
{
    int i, ok = 0, mail = 0;

    if (c->ev[di].code / 100 != 3)
        return 0;
    for (i = di - 1; i >= 0 && c->ev[i].txn == c->ev[di].txn; i--) {
        if (c->ev[i].kind == FE_RCPT) {
            if (c->ev[i].code == 0 || c->ev[i].code == 421)
                return 0;
            ok |= c->ev[i].code / 100 == 2;
        } else if (c->ev[i].kind == FE_MAIL) {
            mail = c->ev[i].code / 100 == 2;
            break;
        }
    }
    return ok && mail;
}

static void
fc_pair(struct fconn *c)
{
    while (c->paired < c->nev && c->paired < c->nrep
           && c->paired < FZ_REPLIES) {
        struct fevent *e = &c->ev[c->paired++];

        e->code = c->repcode[c->paired - 1];
        e->flags = c->repflags[c->paired - 1];
        switch (e->kind) {
        case FE_EHLO:
        case FE_HELO:
            c->ready = e->code / 100 == 2;
            /* what smtp_auth_start sees: the EHLO's AUTH names */
            c->auth_list = e->kind == FE_EHLO && c->ready ? e->flags : 0;
            break;
        case FE_AUTH:
            if (e->code / 100 == 2) /* MAIL may come */
                c->authed = c->ready = 1;
            break;
        case FE_DATA:
            /* the "." that the client sends next is paired now */
            if (c->paired == c->nev && fc_content_due(c, c->paired - 1))
                fc_add_event(c, FE_DOT, 0, 0);
            break;
        case FE_DOT:
            c->ready = e->code / 100 == 2;
            break;
        case FE_STARTTLS:
            /* 220: TLS from here on (smtp_tls_begin); else level may
             * goes on in clear with MAIL, the others QUIT */
            if (e->code == 220) {
                c->tls = 1;
                c->z->jobs[e->job].tls_went = 1;
            } else {
                c->ready = 1;
            }
            break;
        case FE_GREET:
        case FE_MAIL:
        case FE_RCPT:
        case FE_QUIT:
            break;
        }
    }
}

/* ------------------------------------------------------------------ */
/* the fake server's output */

static void fc_flush(struct fconn *c);

/* What the client sent on c may be lost for the fake (see deaf_job).
 * Not on a connection gone to TLS: the fake read every command up to
 * STARTTLS (its 220 is paired), and what came after is no command. */
static void
fz_deaf(struct fconn *c)
{
    struct fz *z = c->z;

    if (!c->tls && z->deaf_job > z->cur)
        z->deaf_job = z->cur;
}

/* At EOF: was it a reset? */
static int
fc_reset(const struct fconn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    return getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0;
}

static void
fc_close(struct fconn *c)
{
    if (c->fd < 0)
        return;
    ev_io_stop(fz_loop, &c->rio);
    ev_io_stop(fz_loop, &c->wio);
    close(c->fd);
    c->fd = -1;
    buf_reset(c->out);
}

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

/* Reply codes: the usual ones first, then every code from 200 to 255
 * (and a few outside the classes the client takes). */
static int
fz_code(int b)
{
    static const int usual[] = {220, 250, 354, 421, 450, 451, 452, 550, 551,
                                552, 553, 554, 221, 500, 501, 502, 503, 530,
                                251, 252, 334, 555, 200, 299, 399, 499, 599,
                                300, 100, 600, 199, 999, 211, 214, 235, 535};
    size_t nu = sizeof(usual) / sizeof(usual[0]);

    if (b < 0)
        return 250;
    if ((size_t) b < nu)
        return usual[b];
    return 200 + (int) ((size_t) b - nu) * 2;
}

static size_t
fz_count(size_t b)
{
    static const size_t big[] = {99, 100, 101, 1000, 10000, 50000, 99, 100};

    return b < 248 ? b % 40 : big[b - 248];
}

static size_t
fz_size(size_t b)
{
    static const size_t big[] = {4091,  4092,  4093,   4094,   4095,
                                 4096,  4097,  8192,   16380,  16384,
                                 20000, 65536, 100000, 1000000};

    return b < 242 ? b * 16 : big[b - 242];
}

/* Append n bytes to the turn t, within the output budget. */
static void
fz_put(struct fz *z, struct buf *t, const void *p, size_t n)
{
    if (z->gen + n > FZ_GEN_MAX)
        return;
    z->gen += n;
    if (buf_append(t, p, n) < 0)
        abort();
}

static void
fz_puts(struct fz *z, struct buf *t, const char *s)
{
    fz_put(z, t, s, strlen(s));
}

/* The 334 challenges a mechanism answers (smtp_mechs' steps). */
static int
fz_steps(int mech)
{
    return mech == FR_LOGIN ? 2 : mech == FR_CRAM ? 1 : 0;
}

/* What must never show in a result text or a log line: the password,
 * and its base64 (PLAIN's and LOGIN's responses hold it aligned). */
static const char *const fz_secrets[] = {FZ_PASS, "Zno6cGFzcw"};

static int
fz_has_secret(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof(fz_secrets) / sizeof(fz_secrets[0]); i++)
        if (memmem(p, n, fz_secrets[i], strlen(fz_secrets[i])))
            return 1;
    return 0;
}

/* The fake's output: did it say a secret itself (then the client may
 * repeat it in a result text, as the server's words)? */
static void
fz_secret_scan(struct fz *z, const char *p, size_t n)
{
    char w[sizeof(z->tail) + 64];
    size_t k;

    while (n > 0 && !z->echo) {
        k = n > 64 ? 64 : n;
        memcpy(w, z->tail, z->ntail);
        memcpy(w + z->ntail, p, k);
        z->echo = fz_has_secret(w, z->ntail + k);
        if (z->ntail + k > sizeof(z->tail)) {
            memcpy(z->tail, w + z->ntail + k - sizeof(z->tail),
                   sizeof(z->tail));
            z->ntail = sizeof(z->tail);
        } else {
            memcpy(z->tail, w, z->ntail + k);
            z->ntail += k;
        }
        p += k;
        n -= k;
    }
}

/* Strict base64 (RFC 4648, padded, nothing else): 0 and the bytes in out
 * (room for n / 4 * 3 + 1), or -1. */
static int
fz_b64dec(const char *s, size_t n, unsigned char *out, size_t *outlen)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    int j;

    if (n == 0 || n % 4 != 0)
        return -1;
    for (i = 0; i < n; i += 4) {
        unsigned v = 0;
        int pad = 0;

        for (j = 0; j < 4; j++) {
            const char *q = s[i + j] ? strchr(al, s[i + j]) : NULL;

            if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                pad++;
                v <<= 6;
                continue;
            }
            if (q == NULL || pad)
                return -1;
            v = v << 6 | (unsigned) (q - al);
        }
        out[o++] = (unsigned char) (v >> 16);
        if (pad < 2)
            out[o++] = (unsigned char) (v >> 8);
        if (pad < 1)
            out[o++] = (unsigned char) v;
    }
    *outlen = o;
    return 0;
}

/* The keywords of an ok EHLO reply; a (with credentials) its AUTH lines. */
static void
fz_ehlo(struct fz *z, struct buf *t, int e, int a)
{
    static const char *const auths[8][2] = {
        {NULL, NULL},
        {"AUTH PLAIN LOGIN", NULL},
        {"AUTH=LOGIN", NULL},
        {"AUTH CRAM-MD5 PLAIN", NULL},
        {"AUTH GSSAPI", NULL}, /* nothing the client can use */
        {"AUTH LOGIN PLAIN", "AUTH=LOGIN PLAIN"},
        {"AUTH CRAM-MD5", NULL},
        {"AUTH DIGEST-MD5 NTLM LOGIN", NULL}};
    static const char *const sizes[16] = {
        NULL,
        "SIZE",
        "SIZE 0",
        "SIZE 10",
        "SIZE 200000",
        "SIZE 100000000",
        "SIZE 18446744073709551615",
        "SIZE 99999999999999999999999",
        "SIZE -1",
        "SIZE abc",
        "SIZE  ", /* no number, trailing blanks */
        "SIZE 1000 extra",
        "SIZE=1000",
        "SIZE\t1000",
        "SIZE 300",
        "SIZE 1"};
    static const char *const junk[] = {
        "STARTTLS",  "AUTH PLAIN LOGIN",    "PIPELININGX",
        "8BITMIME2", "ENHANCEDSTATUSCODES", "X"};
    const char *kw[12];
    size_t n = 0, i, j;
    char line[64];

    if (z->o[4] & 0x10)
        kw[n++] = "STARTTLS";
    if (e & 0x80)
        for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
            kw[n++] = junk[i];
    for (i = 0; i < 2; i++)
        if (auths[a & 7][i])
            kw[n++] = auths[a & 7][i];
    if (e & 1)
        kw[n++] = "PIPELINING";
    if (e & 2)
        kw[n++] = "8BITMIME";
    if (sizes[(e >> 2) & 15])
        kw[n++] = sizes[(e >> 2) & 15];
    fz_puts(z, t, n ? "250-fake.example\r\n" : "250 fake.example\r\n");
    for (i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "250%c%s", i + 1 < n ? '-' : ' ', kw[i]);
        if (e & 0x40)
            for (j = 0; line[j]; j++)
                line[j] = (char) tolower((unsigned char) line[j]);
        fz_puts(z, t, line);
        fz_puts(z, t, "\r\n");
    }
}

/* Complete replies in the turn so far (roughly: lines "ddd" or "ddd "). */
static int
fz_replies_in(const struct buf *t)
{
    const char *p = buf_data(t), *end = p + buf_len(t), *nl;
    int n = 0;

    for (; p < end && (nl = memchr(p, '\n', (size_t) (end - p))) != NULL;
         p = nl + 1) {
        size_t len = (size_t) (nl - p);

        if (len > 0 && p[len - 1] == '\r')
            len--;
        n += len == 3 || (len > 3 && p[3] == ' ');
    }
    return n;
}

/* A canned reply to what the next reply on c answers. */
static void
fz_canned(struct fz *z, struct fconn *c, struct buf *t)
{
    int v = fz_byte(z), kind = v < 0 ? 0 : v & 3;
    int at = c->nrep + fz_replies_in(t); /* what the next reply answers */
    enum fe_kind k = FE_QUIT;
    const char *s = "250 2.0.0 Ok\r\n";

    if (c->tls) { /* for OpenSSL: TLS records, or SMTP in clear */
        static const uint8_t alert[] = {0x15, 3, 3, 0, 2, 2, 40};
        static const uint8_t part[] = {0x16, 3, 3, 0, 64, 2, 0, 0, 60, 3, 3};
        static const uint8_t huge[] = {0x16, 3, 3, 0xff, 0xff, 2, 0};

        if (kind == 0) /* a fatal handshake_failure alert */
            fz_put(z, t, alert, sizeof(alert));
        else if (kind == 1) /* a ServerHello cut short: OpenSSL waits */
            fz_put(z, t, part, sizeof(part));
        else if (kind == 2) /* a record over the maximum length */
            fz_put(z, t, huge, sizeof(huge));
        else
            fz_puts(z, t, "421 4.4.2 fake.example closing\r\n");
        return;
    }
    if (at < c->nev)
        k = c->ev[at].kind;
    else if (c->nev == 0)
        k = FE_GREET;
    if (kind == 3) {
        fz_puts(z, t, "421 4.4.2 fake.example closing\r\n");
        return;
    }
    if (kind == 1) {
        fz_puts(z, t,
                k == FE_GREET      ? "454 4.3.0 try later\r\n"
                : k == FE_STARTTLS ? "454 4.7.0 TLS not available\r\n"
                : k == FE_AUTH
                    ? "454 4.7.0 Temporary authentication failure\r\n"
                    : "451 4.3.0 try again later\r\n");
        return;
    }
    if (kind == 2) {
        fz_puts(z, t,
                k == FE_RCPT   ? "550 5.1.1 no such user\r\n"
                : k == FE_EHLO ? "502 5.5.2 what\r\n"
                : k == FE_AUTH
                    ? "535 5.7.8 Authentication credentials invalid\r\n"
                    : "554 5.7.1 rejected\r\n");
        return;
    }
    switch (k) {
    case FE_GREET:
        s = "220 fake.example ESMTP\r\n";
        break;
    case FE_EHLO:
        fz_ehlo(z, t, fz_byte(z) & 0xff, z->creds ? (v >> 2) & 7 : 0);
        return;
    case FE_AUTH: {
        /* v bits 2-3: the next step (a 334 while the mechanism has
         * steps left, else 235), a 334 always (past the steps: a loop),
         * a 334 whose text is not base64, a 235 at once */
        const struct fevent *e = &c->ev[at];
        int more = e->step < fz_steps(e->mech), sub = (v >> 2) & 3;

        if (sub == 3 || (sub == 0 && !more))
            s = "235 2.7.0 Authentication successful\r\n";
        else if (sub == 2)
            s = "334 not+base64!\r\n";
        else if (e->mech == FR_LOGIN)
            s = e->step == 0 ? "334 VXNlcm5hbWU6\r\n" : "334 UGFzc3dvcmQ6\r\n";
        else
            s = "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UuZXhhbXBsZS5uZXQ+\r\n";
        break;
    }
    case FE_HELO:
        s = "250 fake.example\r\n";
        break;
    case FE_MAIL:
        s = "250 2.1.0 Ok\r\n";
        break;
    case FE_RCPT:
        s = "250 2.1.5 Ok\r\n";
        break;
    case FE_DATA:
        s = "354 End data with <CR><LF>.<CR><LF>\r\n";
        break;
    case FE_DOT:
        s = "250 2.0.0 Ok: queued as 4FAKE\r\n";
        break;
    case FE_STARTTLS:
        s = "220 2.0.0 Ready to start TLS\r\n";
        break;
    case FE_QUIT:
        break;
    }
    fz_puts(z, t, s);
}

/* The next turn of the input, written to c. */
static void
fz_turn(struct fz *z, struct fconn *c)
{
    struct buf *t = buf_new(1024, BUF_NOCAP);
    char tmp[300];

    if (buf_append(t, buf_data(z->held), buf_len(z->held)) < 0)
        abort();
    buf_reset(z->held);
    while (z->left > 0) {
        int op = fz_byte(z), end = op & 0x80, code, sep = op & 8 ? '-' : ' ';
        size_t n, k, cnt;
        const uint8_t *d;

        switch (op & 7) {
        case 0:
            code = fz_code(fz_byte(z));
            n = fz_len(z, 0);
            d = fz_take(z, &n);
            if (op & 0x10)
                snprintf(tmp, sizeof(tmp), "%03d%c%d.1.0 ", code, sep,
                         code / 100);
            else
                snprintf(tmp, sizeof(tmp), "%03d%c", code, sep);
            fz_puts(z, t, tmp);
            fz_put(z, t, d, n);
            fz_puts(z, t, "\r\n");
            break;
        case 1:
            n = fz_len(z, op & 8);
            d = fz_take(z, &n);
            fz_put(z, t, d, n);
            break;
        case 2:
            switch ((op >> 3) & 3) {
            case 0:
                c->end = FC_END_SHUT;
                end = 1;
                break;
            case 1:
                c->end = FC_END_CLOSE;
                end = 1;
                break;
            case 2:
                c->end = FC_END_RESET;
                end = 1;
                break;
            case 3:
                ev_io_stop(fz_loop, &c->rio);
                z->stall |= (op & 0x20) && z->stall_ok;
                break;
            }
            break;
        case 3:
            cnt = fz_count((size_t) fz_len(z, 0));
            code = fz_code(fz_byte(z));
            n = fz_len(z, 0);
            d = fz_take(z, &n);
            k = (size_t) snprintf(tmp, sizeof(tmp), "%03d%c%.*s\r\n", code, sep,
                                  (int) n, (const char *) d);
            for (; cnt > 0 && z->gen + k <= FZ_GEN_MAX; cnt--)
                fz_put(z, t, tmp, k);
            if (op & 0x10) {
                snprintf(tmp, sizeof(tmp), "%03d ok\r\n", code);
                fz_puts(z, t, tmp);
            }
            break;
        case 4:
            n = fz_size(fz_len(z, 0));
            if (z->gen + n + 6 > FZ_GEN_MAX)
                break;
            snprintf(tmp, sizeof(tmp), "250%c", sep);
            fz_puts(z, t, tmp);
            for (k = 0; k < n; k++)
                if (buf_putc(t, 'x') < 0)
                    abort();
            z->gen += n;
            if (!(op & 0x10))
                fz_puts(z, t, "\r\n");
            break;
        case 5:
            k = 1 + ((size_t) (op >> 3) & 3);
            if (k > buf_len(t))
                k = buf_len(t);
            buf_set(z->held, buf_data(t) + buf_len(t) - k, k);
            buf_truncate(t, buf_len(t) - k);
            break;
        case 6:
            fz_canned(z, c, t);
            break;
        case 7:
            code = fz_code(fz_byte(z));
            snprintf(tmp, sizeof(tmp), "%03d%s%s", code, op & 0x10 ? " " : "",
                     op & 8 ? "\n" : "\r\n");
            fz_puts(z, t, tmp);
            break;
        }
        if (end)
            break;
    }
    fz_secret_scan(z, buf_data(t), buf_len(t));
    if (c->fd >= 0 && !c->shut) {
        fm_bytes(c, buf_data(t), buf_len(t));
        if (buf_append(c->out, buf_data(t), buf_len(t)) < 0)
            abort();
    }
    buf_free(t);
    fc_flush(c);
    if (z->stall) { /* say nothing (not even unasked) for a while */
        z->stall = 0;
        ev_idle_stop(fz_loop, &z->idle);
        ev_timer_stop(fz_loop, &z->stall_t);
        ev_timer_set(&z->stall_t, FZ_STALL, 0.);
        ev_timer_start(fz_loop, &z->stall_t);
    }
}

static void
fc_flush(struct fconn *c)
{
    if (c->fd < 0)
        return;
    while (buf_len(c->out) > 0) {
        ssize_t n = send(c->fd, buf_data(c->out), buf_len(c->out),
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            ev_io_start(fz_loop, &c->wio);
            return;
        }
        if (n < 0) { /* the client is gone */
            if (errno == ECONNRESET)
                fz_deaf(c);
            buf_reset(c->out);
            break;
        }
        buf_consume(c->out, (size_t) n);
    }
    ev_io_stop(fz_loop, &c->wio);
    if (c->end == FC_END_SHUT && !c->shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut = 1;
    } else if (c->end == FC_END_CLOSE || c->end == FC_END_RESET) {
        struct linger l = {1, 0};

        if (c->end == FC_END_RESET)
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        fc_close(c);
        fz_deaf(c);
    }
}

static void
fc_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void) loop;
    (void) revents;
    fc_flush(w->data);
}

/* ------------------------------------------------------------------ */
/* what the client sends */

static const struct fjob *
fz_job(const struct fz *z)
{
    return &z->jobs[z->cur];
}

static const struct fmsg *
fz_job_msg(const struct fz *z)
{
    return &fz_msgs[fz_job(z)->msg];
}

/* The previous command was answered, or pipelining is allowed. */
static void
fc_pipelined(struct fconn *c, const char *what)
{
    if (c->nev > 0 && c->ev[c->nev - 1].code == 0
        && (!c->pipelining || c->z->nopl))
        FZ_FAIL("%s before the reply to the previous command, without "
                "PIPELINING",
                what);
}

/* Must the client send STARTTLS after this EHLO event (with its reply)?
 * The level asks for TLS, the reply offered it (not discarded), and the
 * job did not try TLS already (after a failed handshake level may tries
 * again in clear: no_tls). Not when the fake is deaf: the client may
 * have gone to TLS on a connection where the fake never saw STARTTLS. */
static int
fz_tls_due(const struct fconn *c, const struct fevent *e)
{
    const struct fz *z = c->z;

    return z->tls >= DLV_TLS_MAY && e->code / 100 == 2
           && (e->flags & FR_STARTTLS) && !z->notls_kw
           && !z->jobs[e->job].tls_went && z->deaf_job > e->job;
}

/* STARTTLS: right after a 2xx to EHLO that offered it, at a level that
 * asks for TLS, once per job. */
static void
fc_starttls(struct fconn *c)
{
    const struct fz *z = c->z;

    if (c->nev != 2 || c->ev[1].kind != FE_EHLO || c->ev[1].code / 100 != 2)
        FZ_FAIL("STARTTLS out of place");
    if (z->tls == DLV_TLS_NONE)
        FZ_FAIL("STARTTLS at TLS level none");
    if (!(c->ev[1].flags & FR_STARTTLS) || z->notls_kw)
        FZ_FAIL("STARTTLS that the EHLO reply did not offer%s",
                z->notls_kw ? " (discarded)" : "");
    if (z->jobs[z->cur].tls_went)
        FZ_FAIL("STARTTLS again after a TLS handshake of the same job");
    c->ready = 0;
    fc_add_event(c, FE_STARTTLS, 0, 1);
}

static void
fc_rcpt(struct fconn *c, const char *arg, size_t len)
{
    const struct fjob *j = fz_job(c->z);
    size_t i;

    if (!c->txn_open || c->txn_data || c->txn_job != c->z->cur)
        FZ_FAIL("RCPT outside a transaction");
    fc_pipelined(c, "RCPT");
    if (len < 2 || arg[0] != '<' || arg[len - 1] != '>')
        FZ_FAIL("RCPT TO:%.*s", (int) len, arg);
    for (i = 0; i < j->job.nrcpt; i++) {
        const char *a = fz_addrs[j->idx[i]];

        if (strlen(a) == len - 2 && memcmp(a, arg + 1, len - 2) == 0)
            break;
    }
    if (i == j->job.nrcpt)
        FZ_FAIL("RCPT TO:%.*s: not a recipient of the job", (int) len, arg);
    if (!fz_addr_ok(fz_addrs[j->idx[i]]))
        FZ_FAIL("RCPT TO: a recipient Sluice cannot send");
    if (c->txn_rcpts & (1ull << i))
        FZ_FAIL("RCPT TO:%.*s twice in a transaction", (int) len, arg);
    c->txn_rcpts |= 1ull << i;
    fc_add_event(c, FE_RCPT, (int) i, 1);
}

static void
fc_mail(struct fconn *c, const char *arg, size_t len)
{
    const struct fmsg *m = fz_job_msg(c->z);
    const char *sender = m->m->env.sender;
    size_t sl = strlen(sender), i;
    char want[64];

    if (c->z->tls >= DLV_TLS_ENCRYPT)
        FZ_FAIL("MAIL FROM in clear at TLS level %d", c->z->tls);
    if (!c->ready || c->txn_open)
        FZ_FAIL("MAIL out of place (ready %d, transaction open %d)", c->ready,
                c->txn_open);
    if (c->nev > 0 && c->ev[c->nev - 1].kind == FE_EHLO
        && fz_tls_due(c, &c->ev[c->nev - 1]))
        FZ_FAIL("MAIL FROM after an EHLO reply that offered STARTTLS, "
                "without it");
    if (c->z->creds && (c->auth_list & FR_AUTH) && !c->authed)
        FZ_FAIL("MAIL FROM with credentials after an EHLO reply that listed "
                "AUTH (%s), without a 2xx to AUTH",
                (c->auth_list & FR_MECHS & c->z->allowed) ? "usable"
                                                          : "nothing usable");
    if (m->bad_sender)
        FZ_FAIL("MAIL with a bad sender");
    if (len < sl + 2 || arg[0] != '<' || memcmp(arg + 1, sender, sl) != 0
        || arg[sl + 1] != '>')
        FZ_FAIL("MAIL FROM:%.*s", (int) len, arg);
    i = sl + 2;
    snprintf(want, sizeof(want), " SIZE=%lld", (long long) m->m->content_len);
    if (len - i >= strlen(want) && memcmp(arg + i, want, strlen(want)) == 0)
        i += strlen(want);
    if (len - i == 14 && memcmp(arg + i, " BODY=8BITMIME", 14) == 0) {
        if (!m->eight)
            FZ_FAIL("BODY=8BITMIME for a 7-bit message");
        i += 14;
    }
    if (i != len)
        FZ_FAIL("MAIL FROM:%.*s: parameters", (int) len, arg);
    c->ready = 0;
    c->txn++;
    c->txn_open = 1;
    c->txn_mail = 1;
    c->txn_data = 0;
    c->txn_job = c->z->cur;
    c->txn_rcpts = 0;
    fc_add_event(c, FE_MAIL, 0, 1);
}

/* The mechanism the client must pick from an EHLO reply's FR_*: the
 * first of CRAM-MD5, PLAIN, LOGIN listed that the filter lets through
 * (the security options, noanonymous, rule none out), or 0. */
static int
fz_mech_want(const struct fz *z, int flags)
{
    int usable = flags & FR_MECHS & z->allowed;

    return usable & FR_CRAM ? FR_CRAM : usable & FR_PLAIN ? FR_PLAIN : usable;
}

/* "AUTH ...": right after a 2xx to EHLO that listed AUTH (not when
 * STARTTLS was due then), or after a refused STARTTLS at level may; once
 * per connection; with credentials; the mechanism the client must pick;
 * PLAIN's initial response "\0user\0password". */
static void
fc_auth(struct fconn *c, const char *arg, size_t len)
{
    const struct fz *z = c->z;
    const struct fevent *eh = c->nev >= 2 ? &c->ev[1] : NULL;
    int m, want, here;
    unsigned char dec[FZ_CMD_MAX];
    size_t dl;

    if (!z->creds)
        FZ_FAIL("AUTH without credentials");
    if (c->auth_mech)
        FZ_FAIL("AUTH again on a connection");
    if (eh == NULL || eh->kind != FE_EHLO || eh->code / 100 != 2)
        FZ_FAIL("AUTH before a 2xx to EHLO");
    here = (c->nev == 2 && !fz_tls_due(c, eh))
           || (c->nev == 3 && c->ev[2].kind == FE_STARTTLS && c->ev[2].code != 0
               && c->ev[2].code != 220 && c->ev[2].code != 421
               && z->tls == DLV_TLS_MAY);
    if (!here)
        FZ_FAIL("AUTH out of place%s",
                c->nev == 2 ? " (in clear, STARTTLS was due)" : "");
    if (!(eh->flags & FR_AUTH))
        FZ_FAIL("AUTH after an EHLO reply that listed no AUTH");
    if (len == 5 && memcmp(arg, "LOGIN", 5) == 0)
        m = FR_LOGIN;
    else if (len == 8 && memcmp(arg, "CRAM-MD5", 8) == 0)
        m = FR_CRAM;
    else if (len > 6 && memcmp(arg, "PLAIN ", 6) == 0)
        m = FR_PLAIN;
    else
        FZ_FAIL("AUTH %.*s", len > 200 ? 200 : (int) len, arg);
    if (!(eh->flags & m))
        FZ_FAIL("AUTH %.*s: a mechanism the server did not list",
                len > 200 ? 200 : (int) len, arg);
    want = fz_mech_want(z, eh->flags);
    if (m != want)
        FZ_FAIL("AUTH %.*s: not the mechanism to pick (filter %d, listed %d)",
                len > 200 ? 200 : (int) len, arg, z->allowed, eh->flags);
    if (m == FR_PLAIN
        && (fz_b64dec(arg + 6, len - 6, dec, &dl) < 0
            || dl != sizeof(FZ_USER) + sizeof(FZ_PASS)
            || memcmp(dec, "\0" FZ_USER "\0" FZ_PASS, dl) != 0))
        FZ_FAIL("AUTH PLAIN with a wrong initial response");
    c->ready = 0;
    c->auth_mech = m;
    c->auth_resp = 0;
    fc_add_event(c, FE_AUTH, 0, 1);
}

/* Is the client's next line a response to a 334 (not a command)? */
static int
fc_auth_due(const struct fconn *c)
{
    const struct fevent *e = c->nev > 0 ? &c->ev[c->nev - 1] : NULL;

    return c->auth_mech && e && e->kind == FE_AUTH && e->code == 334
           && c->auth_resp < fz_steps(c->auth_mech);
}

/* A response line: LOGIN the user, then the password; CRAM-MD5 "user
 * hexdigest", the HMAC-MD5 of the challenge (strict base64) keyed with
 * the password. */
static void
fc_auth_resp(struct fconn *c, const char *line, size_t len)
{
    int ai = c->nev - 1, step = c->auth_resp + 1;
    unsigned char dec[FZ_CMD_MAX], md[EVP_MAX_MD_SIZE];
    size_t dl, i;
    unsigned mdlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (fz_b64dec(line, len, dec, &dl) < 0)
        FZ_FAIL("AUTH response \"%.*s\" is not base64",
                len > 200 ? 200 : (int) len, line);
    if (c->auth_mech == FR_LOGIN) {
        const char *want = step == 1 ? FZ_USER : FZ_PASS;

        if (dl != strlen(want) || memcmp(dec, want, dl) != 0)
            FZ_FAIL("AUTH LOGIN response %d is not the %s", step,
                    step == 1 ? "user name" : "password");
    } else if (c->auth_mech == FR_CRAM) {
        const char *ch = ai < FZ_REPLIES ? c->repchal[ai] : NULL;
        unsigned char *cd;
        size_t cl = 0;
        int bad;

        if (dl != strlen(FZ_USER) + 33 || memcmp(dec, FZ_USER " ", 8) != 0)
            FZ_FAIL("AUTH CRAM-MD5 response is not \"%s hexdigest\"", FZ_USER);
        for (i = 8; i < dl; i++)
            if (!isdigit(dec[i]) && (dec[i] < 'a' || dec[i] > 'f'))
                FZ_FAIL("AUTH CRAM-MD5 response: the digest is not lower "
                        "case hex");
        if (ch == NULL)
            FZ_FAIL("AUTH CRAM-MD5 response without a challenge");
        cd = malloc(strlen(ch) / 4 * 3 + 1);
        if (cd == NULL)
            abort();
        bad = fz_b64dec(ch, strlen(ch), cd, &cl) < 0;
        if (bad && !fz_lax) {
            free(cd);
            FZ_FAIL("AUTH CRAM-MD5 response to a challenge that is not "
                    "base64: \"%.200s\"",
                    ch);
        }
        if (!bad) {
            if (HMAC(EVP_md5(), FZ_PASS, (int) strlen(FZ_PASS), cd, cl, md,
                     &mdlen)
                    == NULL
                || mdlen != 16)
                abort();
            for (i = 0; i < mdlen; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
            if (memcmp(dec + 8, hex, 32) != 0)
                FZ_FAIL("AUTH CRAM-MD5 response: a wrong digest");
        }
        free(cd);
    } else {
        abort();
    }
    c->auth_resp = step;
    fc_add_event(c, FE_AUTH, 0, 1);
}

static void fz_begin_content(struct fconn *c);

/* One command line (CRLF stripped). */
static void
fc_command(struct fconn *c, const char *line, size_t len)
{
    struct fz *z = c->z;

    if (fz_trace)
        fprintf(stderr, "fuzz_dlv_smtp: conn %d got: %.*s\n", (int) (c - z->c),
                len > 200 ? 200 : (int) len, line);
    if (len == 4 && memcmp(line, "QUIT", 4) == 0) {
        c->quit = 1;
        fc_add_event(c, FE_QUIT, 0, 1);
        return; /* no turn: the client does not wait for it */
    }
    if (c->auth_cancel)
        FZ_FAIL("\"%.*s\" after the AUTH cancel \"*\", not QUIT",
                len > 200 ? 200 : (int) len, line);
    if (len == 1 && line[0] == '*') { /* the exchange cancelled (RFC 4954) */
        if (!c->auth_mech || c->nev == 0 || c->ev[c->nev - 1].kind != FE_AUTH
            || c->ev[c->nev - 1].code != 334)
            FZ_FAIL("AUTH cancel \"*\" but not after a 334 to AUTH");
        c->auth_cancel = 1;
        return; /* no turn: QUIT follows, no reply is waited for */
    }
    if (fc_auth_due(c)) {
        fc_auth_resp(c, line, len);
    } else if (len > 5
               && (memcmp(line, "EHLO ", 5) == 0
                   || memcmp(line, "HELO ", 5) == 0)) {
        int ehlo = line[0] == 'E';

        if (len - 5 != strlen(FZ_HELO) || memcmp(line + 5, FZ_HELO, len - 5))
            FZ_FAIL("%.*s: not smtp_helo_name", (int) len, line);
        if (ehlo && (c->nev != 1 || c->ev[0].code / 100 != 2))
            FZ_FAIL("EHLO out of place");
        if (!ehlo
            && (c->nev != 2 || c->ev[1].kind != FE_EHLO
                || c->ev[1].code / 100 != 5))
            FZ_FAIL("HELO out of place");
        fc_add_event(c, ehlo ? FE_EHLO : FE_HELO, 0, 1);
    } else if (len == 8 && memcmp(line, "STARTTLS", 8) == 0) {
        fc_starttls(c);
    } else if (len >= 5 && memcmp(line, "AUTH ", 5) == 0) {
        fc_auth(c, line + 5, len - 5);
    } else if (len >= 10 && memcmp(line, "MAIL FROM:", 10) == 0) {
        fc_mail(c, line + 10, len - 10);
    } else if (len >= 8 && memcmp(line, "RCPT TO:", 8) == 0) {
        fc_rcpt(c, line + 8, len - 8);
    } else if (len == 4 && memcmp(line, "DATA", 4) == 0) {
        if (!c->txn_open || c->txn_data || c->txn_rcpts == 0)
            FZ_FAIL("DATA out of place");
        fc_pipelined(c, "DATA");
        c->txn_data = 1;
        fc_add_event(c, FE_DATA, 0, 1);
    } else {
        FZ_FAIL("client sent \"%.*s\"", len > 200 ? 200 : (int) len, line);
    }
    z->last = c;
    if (!c->shut && c->end == FC_END_NONE)
        fz_turn(z, c);
}

/* The "." came: the reserved event, or a new one. */
static void
fc_dot(struct fconn *c)
{
    struct fevent *e = c->nev > 0 ? &c->ev[c->nev - 1] : NULL;

    c->content = 0;
    c->txn_open = 0;
    if (e && e->kind == FE_DOT && !e->received && e->txn == c->txn)
        e->received = 1;
    else
        FZ_FAIL("content without a 354 the client could act on");
    c->z->last = c;
    if (!c->shut && c->end == FC_END_NONE)
        fz_turn(c->z, c);
}

static void
fz_begin_content(struct fconn *c)
{
    c->content = 1;
    c->cst = CS_BOL;
    c->cpos = 0;
}

static void
fc_content_byte(struct fconn *c, const struct fmsg *m, int b)
{
    int emit = -1;

    switch (c->cst) {
    case CS_BOL:
        if (b == '.') {
            c->cst = CS_DOT;
            return;
        }
        emit = b;
        c->cst = b == '\n' ? CS_BOL : CS_MID;
        break;
    case CS_MID:
        emit = b;
        if (b == '\n')
            c->cst = CS_BOL;
        break;
    case CS_DOT:
        if (b == '.') {
            emit = '.';
            c->cst = CS_MID;
        } else if (b == '\r') {
            c->cst = CS_DOTCR;
            return;
        } else {
            FZ_FAIL("a line starts with an unstuffed '.' at %zu", c->cpos);
        }
        break;
    case CS_DOTCR:
        if (b != '\n')
            FZ_FAIL("\".\\r\" at the start of a line at %zu", c->cpos);
        if (c->cpos != m->explen)
            FZ_FAIL("end of data after %zu of %zu content bytes", c->cpos,
                    m->explen);
        fc_dot(c);
        return;
    }
    if (c->cpos >= m->explen || m->exp[c->cpos] != (char) emit)
        FZ_FAIL("content differs at %zu (0x%02x, want 0x%02x) of %zu", c->cpos,
                emit & 0xff, c->cpos < m->explen ? m->exp[c->cpos] & 0xff : 0,
                m->explen);
    c->cpos++;
}

/* Bytes from the client. */
static void
fc_input(struct fconn *c, const char *p, size_t n)
{
    while (n > 0) { /* read before a close: it came, on, see deaf_job */
        /* after the 220: the ClientHello, alerts, for the server's TLS */
        if (c->tls) {
            if (!c->hello && (unsigned char) p[0] != 0x16)
                FZ_FAIL("\"%.*s\" after the 220 to STARTTLS, not a TLS "
                        "handshake record",
                        n > 100 ? 100 : (int) n, p);
            if (!c->hello) { /* answered with the next turn */
                c->hello = 1;
                c->z->last = c;
                if (!c->shut && c->end == FC_END_NONE)
                    fz_turn(c->z, c);
            }
            return;
        }
        if (c->quit)
            FZ_FAIL("%.*s after QUIT", n > 100 ? 100 : (int) n, p);
        if (c->content) {
            const struct fmsg *m = &fz_msgs[c->z->jobs[c->txn_job].msg];

            while (n > 0 && c->content) {
                fc_content_byte(c, m, (unsigned char) *p);
                p++;
                n--;
            }
            continue;
        }
        if (c->txn_data && c->nev > 0 && c->ev[c->nev - 1].kind == FE_DOT
            && !c->ev[c->nev - 1].received) {
            fz_begin_content(c);
            continue;
        }
        if (c->txn_data && c->nev > 0 && c->ev[c->nev - 1].kind == FE_DATA
            && c->ev[c->nev - 1].code == 0
            && (n < 6 || memcmp(p, "QUIT\r\n", 6) != 0))
            FZ_FAIL("\"%.*s\" before the reply to DATA",
                    n > 100 ? 100 : (int) n, p);
        {
            const char *nl = memchr(p, '\n', n);
            size_t k = nl ? (size_t) (nl - p) + 1 : n;

            if (buf_len(c->in) + k > FZ_CMD_MAX)
                FZ_FAIL("command line over %d bytes", FZ_CMD_MAX);
            buf_append(c->in, p, k);
            p += k;
            n -= k;
            if (nl) {
                size_t len = buf_len(c->in);
                char *line = buf_data(c->in);

                if (len < 2 || line[len - 2] != '\r')
                    FZ_FAIL("a command line without CRLF");
                if (memchr(line, '\r', len - 2) || memchr(line, '\n', len - 1))
                    FZ_FAIL("a bare CR or LF in a command line");
                fc_command(c, line, len - 2);
                buf_reset(c->in);
            }
        }
    }
}

static void
fc_read(struct fconn *c)
{
    static char rb[65536];
    ssize_t n;

    while (c->fd >= 0) {
        n = read(c->fd, rb, sizeof(rb));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* EOF or reset: the client closed */
            /* a reset (the client closed with our replies unread) may
             * have dropped what it sent last */
            if (n < 0 || fc_reset(c))
                fz_deaf(c);
            fc_close(c);
            return;
        }
        fc_input(c, rb, (size_t) n);
    }
}

static void
fc_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void) loop;
    (void) revents;
    fc_read(w->data);
}

static void
fz_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fz *z = w->data;
    struct fconn *c;
    int fd;

    (void) revents;
    while ((fd = accept4(fz_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
           >= 0) {
        if (z->nc == FZ_CONNS)
            FZ_FAIL("more than %d connections", FZ_CONNS);
        /* a failed handshake ends the session there (only may falls
         * back to clear text, on a new connection) */
        if (z->tls >= DLV_TLS_ENCRYPT && z->jobs[z->cur].tls_went)
            FZ_FAIL("a new connection after a TLS handshake at level %d",
                    z->tls);
        c = &z->c[z->nc++];
        memset(c, 0, sizeof(*c));
        c->z = z;
        c->fd = fd;
        /* no Nagle: what the fake writes is readable at once, so the loop
         * is not idle while a reply waits for an ACK */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int){16384}, sizeof(int));
        c->in = buf_new(1024, BUF_NOCAP);
        c->out = buf_new(4096, BUF_NOCAP);
        c->pline = buf_new(256, BUF_NOCAP);
        ev_io_init(&c->rio, fc_read_cb, fd, EV_READ);
        ev_io_init(&c->wio, fc_write_cb, fd, EV_WRITE);
        c->rio.data = c->wio.data = c;
        ev_io_start(loop, &c->rio);
        z->last = c;
        fc_add_event(c, FE_GREET, 0, 1);
        fz_turn(z, c); /* the greeting */
    }
}

/* ------------------------------------------------------------------ */
/* running */

static struct fconn *
fz_speaker(struct fz *z)
{
    struct fconn *c = z->last;
    size_t i;

    if (c && c->fd >= 0 && !c->shut && !c->quit && c->end == FC_END_NONE)
        return c;
    for (i = z->nc; i-- > 0;) {
        c = &z->c[i];
        if (c->fd >= 0 && !c->shut && !c->quit && c->end == FC_END_NONE)
            return c;
    }
    return NULL;
}

/* Shut every connection's write side down (what is queued goes first). */
static int
fz_shut_all(struct fz *z)
{
    int any = 0;
    size_t i;

    for (i = 0; i < z->nc; i++) {
        struct fconn *o = &z->c[i];

        if (o->fd >= 0 && !o->shut && o->end == FC_END_NONE) {
            o->end = FC_END_SHUT;
            fc_flush(o);
            any = 1;
        }
    }
    return any;
}

/* Nothing to do while the client waits: speak unasked, or hang up. */
static void
fz_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct fz *z = w->data;
    struct fconn *c = fz_speaker(z);

    (void) revents;
    if (wpool_pending(fz_pool) > 0)
        return; /* a content read in the pool */
    if (c && (z->left > 0 || buf_len(z->held) > 0)) {
        z->nothing = 0;
        fz_turn(z, c);
        return;
    }
    if (fz_shut_all(z)) {
        z->nothing = 0;
        return;
    }
    /* the client may still be on its way to EOF: give it a while */
    if (z->nothing == 0) {
        z->nothing = ev_time();
    } else if (ev_time() - z->nothing > FZ_STUCK) {
        z->stuck = 1;
        ev_break(loop, EVBREAK_ONE);
    }
}

/* The stall is over: the fake goes on (the idle watcher). */
static void
fz_stall_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fz *z = w->data;

    (void) revents;
    z->nothing = 0;
    ev_idle_start(loop, &z->idle);
}

static void
fz_guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fz *z = w->data;

    (void) revents;
    z->expired = 1;
    ev_break(loop, EVBREAK_ONE);
}

static void
fz_done(struct dlv_job *job)
{
    struct fjob *j = job->arg;

    if (job != &j->job)
        FZ_FAIL("done() with a job not ours");
    if (j->z->in_start)
        FZ_FAIL("done(job) called from inside dlv_smtp_start");
    if (j->done++)
        FZ_FAIL("done(job) called twice");
}

static int
fz_dsn_ok(const char *d, int cls)
{
    int parts, n;

    if (d[0] != '0' + cls || d[1] != '.')
        return 0;
    d += 2;
    for (parts = 1; parts < 3; parts++) {
        for (n = 0; isdigit((unsigned char) *d); d++, n++)
            ;
        if (n < 1 || n > 3)
            return 0;
        if (parts == 1 && *d++ != '.')
            return 0;
    }
    return *d == '\0';
}

/* Was recipient i of job k accepted in a transaction that completed? */
static int
fz_sent_ok(const struct fz *z, int k, int i)
{
    size_t ci;
    int a, b;

    for (ci = 0; ci < z->nc; ci++) {
        const struct fconn *c = &z->c[ci];

        for (a = 0; a < c->nev; a++) {
            const struct fevent *e = &c->ev[a];
            int mail = 0, data = 0, dot = 0;

            if (e->kind != FE_RCPT || e->job != k || e->rcpt != i
                || e->code / 100 != 2)
                continue;
            for (b = 0; b < c->nev; b++) {
                const struct fevent *f = &c->ev[b];

                if (f->txn != e->txn)
                    continue;
                mail |= f->kind == FE_MAIL && f->code / 100 == 2;
                data |= f->kind == FE_DATA && f->code / 100 == 3;
                dot |= f->kind == FE_DOT && f->received && f->code / 100 == 2;
            }
            if (mail && data && dot)
                return 1;
        }
    }
    return 0;
}

/* Did recipient i get a 2xx to its RCPT TO in transaction txn? */
static int
fz_accepted_in(const struct fconn *c, int txn, int i)
{
    int a;

    for (a = 0; a < c->nev; a++)
        if (c->ev[a].kind == FE_RCPT && c->ev[a].txn == txn
            && c->ev[a].rcpt == i && c->ev[a].code / 100 == 2)
            return 1;
    return 0;
}

/* A 5xx that applies to recipient i of job k? */
static int
fz_bounce_ok(const struct fz *z, int k, int i)
{
    size_t ci;
    int a;

    for (ci = 0; ci < z->nc; ci++) {
        const struct fconn *c = &z->c[ci];

        for (a = 0; a < c->nev; a++) {
            const struct fevent *e = &c->ev[a];

            if (e->job != k || e->code / 100 != 5)
                continue;
            switch (e->kind) {
            case FE_GREET:
            case FE_HELO:
            case FE_MAIL:
                return 1;
            case FE_RCPT:
                if (e->rcpt == i)
                    return 1;
                break;
            case FE_DATA:
            case FE_DOT: /* only for the accepted ones */
                if (fz_accepted_in(c, e->txn, i))
                    return 1;
                break;
            case FE_EHLO:     /* HELO follows */
            case FE_STARTTLS: /* clear text, or a deferral */
            case FE_QUIT:
            case FE_AUTH: /* fz_check_auth's */
                break;
            }
        }
    }
    return 0;
}

static int
fz_mail_sent(const struct fz *z, int k)
{
    size_t ci;
    int a;

    for (ci = 0; ci < z->nc; ci++)
        for (a = 0; a < z->c[ci].nev; a++)
            if (z->c[ci].ev[a].kind == FE_MAIL && z->c[ci].ev[a].job == k)
                return 1;
    return 0;
}

/* A SIZE limit n announced on a connection where job k sent no MAIL? */
static int
fz_size_ok(const struct fz *z, int k, unsigned long long n)
{
    size_t ci;
    int a, b;

    for (ci = 0; ci < z->nc; ci++) {
        const struct fconn *c = &z->c[ci];

        for (a = 0; a < c->nsizes && c->sizes[a] != n; a++)
            ;
        for (b = 0; b < c->nev; b++)
            if (c->ev[b].kind == FE_MAIL && c->ev[b].job == k)
                break;
        if ((a < c->nsizes || c->sizes_over) && b == c->nev)
            return 1;
    }
    return 0;
}

/* A reply to STARTTLS in job k: 220 (want220), or one that is neither
 * 220 nor 421 (a refusal; a 421 is said as any 421)? */
static int
fz_starttls_got(const struct fz *z, int k, int want220)
{
    size_t ci;
    int a;

    for (ci = 0; ci < z->nc; ci++)
        for (a = 0; a < z->c[ci].nev; a++) {
            const struct fevent *e = &z->c[ci].ev[a];

            if (e->kind == FE_STARTTLS && e->job == k && e->code != 0
                && (want220 ? e->code == 220
                            : e->code != 220 && e->code != 421))
                return 1;
        }
    return 0;
}

/* A 2xx to EHLO that did not offer STARTTLS (or it is discarded), or a
 * 2xx to HELO, in job k? */
static int
fz_tls_unoffered(const struct fz *z, int k)
{
    size_t ci;
    int a;

    for (ci = 0; ci < z->nc; ci++)
        for (a = 0; a < z->c[ci].nev; a++) {
            const struct fevent *e = &z->c[ci].ev[a];

            if (e->job != k || e->code / 100 != 2)
                continue;
            if (e->kind == FE_HELO
                || (e->kind == FE_EHLO
                    && (!(e->flags & FR_STARTTLS) || z->notls_kw)))
                return 1;
        }
    return 0;
}

/* Does text start with pre and end with suf? */
static int
fz_affix(const char *text, const char *pre, const char *suf)
{
    size_t n = strlen(text), np = strlen(pre), ns = strlen(suf);

    return n >= np + ns && strncmp(text, pre, np) == 0
           && strcmp(text + n - ns, suf) == 0;
}

/* What the client sent may still be on its way (the kernel moves a big
 * write over as the fake reads): read until a quiet spell. */
static void
fz_settle(struct fz *z)
{
    struct pollfd pf[FZ_CONNS];
    size_t i, n;
    int round;

    for (round = 0; round < 500; round++) {
        for (n = 0, i = 0; i < z->nc; i++)
            if (z->c[i].fd >= 0) {
                pf[n].fd = z->c[i].fd;
                pf[n].events = POLLIN;
                n++;
            }
        if (n == 0 || poll(pf, n, (int) (FZ_SETTLE * 1000)) <= 0)
            return;
        for (i = 0; i < z->nc; i++)
            fc_read(&z->c[i]);
    }
}

/* FUZZ_DLV_LOG: the fake's view, when a check fails. */
static void
fz_dump(const struct fz *z)
{
    static const char *const kinds[] = {"GREET",    "EHLO", "HELO", "MAIL",
                                        "RCPT",     "DATA", "DOT",  "QUIT",
                                        "STARTTLS", "AUTH"};
    size_t ci;
    int a;

    if (!fz_trace)
        return;
    for (ci = 0; ci < z->nc; ci++) {
        const struct fconn *c = &z->c[ci];

        fprintf(stderr,
                "fuzz_dlv_smtp: conn %zu: fd %d, %d replies, broken %d, "
                "content %d at %zu, tls %d, deaf from job %d\n",
                ci, c->fd, c->nrep, c->broken, c->content, c->cpos, c->tls,
                z->deaf_job);
        for (a = 0; a < c->nev; a++)
            fprintf(stderr,
                    "fuzz_dlv_smtp:   %s job %d rcpt %d txn %d code %d%s%s"
                    " auth %d mech %d step %d\n",
                    kinds[c->ev[a].kind], c->ev[a].job, c->ev[a].rcpt,
                    c->ev[a].txn, c->ev[a].code,
                    c->ev[a].flags & FR_STARTTLS ? " (STARTTLS offered)" : "",
                    c->ev[a].received ? "" : " (not received)",
                    c->ev[a].flags & ~FR_STARTTLS, c->ev[a].mech,
                    c->ev[a].step);
    }
}

/* The TLS outcomes (Postfix's words, dlv_smtp.c) only where they can be:
 * 4.7.4 "not offered" and the refusal after a reply that says so, 4.7.5
 * "handshake failure" and a handshake timeout after a 220 to STARTTLS,
 * all of them at a level that requires TLS; "while sending STARTTLS" at
 * one that asks for it; nothing sent at a level that requires TLS (no
 * handshake can succeed with the fake). */
static void
fz_check_tls(struct fz *z, int k, size_t i, const struct dlv_result *r)
{
    static const char *const who[] = {"conversation with ",
                                      "lost connection with "};
    const char *t = r->text;
    int need = 0, ok = 1, w, hs = 0, st = 0;

    if (r->status == DLV_SENT && z->tls >= DLV_TLS_ENCRYPT)
        FZ_FAIL("job %d rcpt %zu sent at TLS level %d without TLS (%s)", k, i,
                z->tls, t);
    for (w = 0; w < 2; w++) {
        hs |= fz_affix(t, who[w], " while performing the TLS handshake");
        st |= fz_affix(t, who[w], " while sending STARTTLS");
    }
    if (strncmp(t, "TLS is required, but was not offered by host ", 45) == 0) {
        need = DLV_TLS_ENCRYPT;
        if (strcmp(r->dsn, "4.7.4") != 0)
            ok = 0;
        else if (!fz_tls_unoffered(z, k) && z->deaf_job > k)
            ok = (fz_settle(z), fz_tls_unoffered(z, k));
    } else if (strncmp(t, "TLS is required, but host ", 26) == 0
               && strstr(t, " refused to start TLS: ") != NULL) {
        need = DLV_TLS_ENCRYPT;
        if (!fz_starttls_got(z, k, 0) && z->deaf_job > k)
            ok = (fz_settle(z), fz_starttls_got(z, k, 0));
    } else if (strcmp(t, "Cannot start TLS: handshake failure") == 0 || hs) {
        need = DLV_TLS_ENCRYPT;
        if (strcmp(r->dsn, hs ? "4.4.2" : "4.7.5") != 0
            || (hs && strncmp(t, who[0], strlen(who[0])) != 0))
            ok = 0;
        else if (!fz_starttls_got(z, k, 1) && z->deaf_job > k)
            ok = (fz_settle(z), fz_starttls_got(z, k, 1));
    } else if (st) {
        need = DLV_TLS_MAY;
    }
    if (!need)
        return;
    if (z->tls < need || r->status != DLV_DEFER || !ok)
        FZ_FAIL("job %d rcpt %zu: status %d dsn %s \"%s\" at TLS level %d, "
                "not what the fake said%s",
                k, i, (int) r->status, r->dsn, t, z->tls, (fz_dump(z), ""));
}

/* What job k's FE_AUTH events (and 2xx EHLO replies) say. */
enum fz_aq {
    AQ_SENT,   /* AUTH was sent */
    AQ_NOMECH, /* a 2xx EHLO listed AUTH, nothing usable, no AUTH sent */
    AQ_BADCH,  /* a 334 to AUTH CRAM-MD5 with a challenge that is not
                  base64, not answered */
    AQ_LOOP,   /* a 3xx to AUTH past the mechanism's steps (or not 334) */
    AQ_SAID    /* a 4xx or 5xx (not 421) to AUTH with code want */
};

static int
fz_auth_q(const struct fz *z, int k, enum fz_aq q, int want)
{
    size_t ci;
    int a, b, any;

    for (ci = 0; ci < z->nc; ci++) {
        const struct fconn *c = &z->c[ci];

        for (any = 0, b = 0; b < c->nev; b++)
            any |= c->ev[b].kind == FE_AUTH;
        for (a = 0; a < c->nev; a++) {
            const struct fevent *e = &c->ev[a];
            unsigned char *cd;
            size_t cl;
            int bad;

            if (e->job != k)
                continue;
            if (q == AQ_NOMECH) {
                if (e->kind == FE_EHLO && e->code / 100 == 2
                    && (e->flags & FR_AUTH) && !fz_mech_want(z, e->flags)
                    && !any)
                    return 1;
                continue;
            }
            if (e->kind != FE_AUTH)
                continue;
            if (q == AQ_SENT)
                return 1;
            if (e->code == 0)
                continue;
            switch (q) {
            case AQ_SENT:
                break;
            case AQ_BADCH:
                if (e->mech != FR_CRAM || e->step != 0 || e->code != 334
                    || (a + 1 < c->nev && c->ev[a + 1].kind == FE_AUTH)
                    || a >= FZ_REPLIES || c->repchal[a] == NULL)
                    break;
                cd = malloc(strlen(c->repchal[a]) / 4 * 3 + 1);
                if (cd == NULL)
                    abort();
                bad = fz_b64dec(c->repchal[a], strlen(c->repchal[a]), cd, &cl)
                      < 0;
                free(cd);
                if (bad)
                    return 1;
                break;
            case AQ_LOOP:
                if (e->code / 100 == 3
                    && (e->code != 334 || e->step >= fz_steps(e->mech)))
                    return 1;
                break;
            case AQ_SAID:
                if (e->code == want)
                    return 1;
                break;
            case AQ_NOMECH:
                break;
            }
        }
    }
    return 0;
}

/* The dsn smtp_reply_dsn takes from a reply (its log-safe text; the
 * lines joined by ' '), the first digit made 4 when st says defer. */
static void
fz_reply_dsn(const char *p, int defer, char out[16])
{
    size_t i = 4, n;
    int parts;

    snprintf(out, 16, "%c.0.0", p[0]);
    if (strlen(p) >= 9 && p[4] == p[0]) {
        for (parts = 0; parts < 3; parts++) {
            for (n = 0; isdigit((unsigned char) p[i]) && n < 3; i++, n++)
                ;
            if (n == 0 || (parts == 0 && n != 1))
                break;
            if (parts < 2) {
                if (p[i] != '.')
                    break;
                i++;
            }
        }
        if (parts == 3 && (p[i] == ' ' || p[i] == '\0'))
            snprintf(out, 16, "%.*s", (int) (i - 4), p + 4);
    }
    if (defer)
        out[0] = '4';
}

/* The AUTH outcomes (dlv_smtp.c's words) only where they can be, with
 * their status and dsn; 1 when r is one of them. */
static int
fz_check_auth(struct fz *z, int k, size_t i, const struct dlv_result *r)
{
    static const char pre[] = "SASL authentication failed";
    static const char hs[] = " while performing the SASL authentication "
                             "handshake";
    const char *t = r->text, *p;
    enum fz_aq q;
    int want = 0, ok = 1, tmo, lost;
    char dsn[16];

    if (!z->echo && fz_has_secret(t, strlen(t)))
        FZ_FAIL("job %d rcpt %zu: the password in \"%s\"", k, i, t);
    tmo = fz_affix(t, "conversation with ", hs);
    lost = fz_affix(t, "lost connection with ", hs);
    if (strncmp(t, pre, sizeof(pre) - 1) != 0 && !tmo && !lost)
        return 0;
    if (!z->creds)
        FZ_FAIL("job %d rcpt %zu: \"%s\" without credentials", k, i, t);
    if (tmo || lost) {
        q = AQ_SENT;
        if (tmo && (strcmp(r->dsn, "4.4.2") != 0 || ((z->o[0] >> 3) & 7) != 1))
            ok = 0;
    } else if (fz_affix(t, "SASL authentication failed: server ",
                        " offered no compatible authentication mechanisms "
                        "for this type of connection security")) {
        q = AQ_NOMECH;
        ok = strcmp(r->dsn, "4.7.0") == 0;
    } else if (fz_affix(t,
                        "SASL authentication failed; cannot authenticate to "
                        "server ",
                        "")) {
        q = AQ_BADCH;
        ok = strcmp(r->dsn, "4.7.0") == 0 && strstr(t, "challenge") != NULL;
    } else if (fz_affix(t,
                        "SASL authentication failed; authentication protocol "
                        "loop with server ",
                        "")) {
        q = AQ_LOOP;
        ok = strcmp(r->dsn, "4.3.0") == 0;
    } else if (fz_affix(t, "SASL authentication failed; server ", "")
               && (p = strstr(t, " said: ")) != NULL && p[7] >= '4'
               && p[7] <= '5' && isdigit((unsigned char) p[8])
               && isdigit((unsigned char) p[9])) {
        q = AQ_SAID;
        p += 7;
        want = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        fz_reply_dsn(p, p[0] == '4' || z->soft, dsn);
        /* a 5xx bounces only with soft bounce off */
        ok = want != 421 && strcmp(r->dsn, dsn) == 0
             && r->status == (p[0] == '5' && !z->soft ? DLV_BOUNCE : DLV_DEFER);
    } else {
        FZ_FAIL("job %d rcpt %zu: \"%s\": not an AUTH outcome", k, i, t);
    }
    if (!ok || (r->status != DLV_DEFER && q != AQ_SAID))
        FZ_FAIL("job %d rcpt %zu: status %d dsn %s \"%s\"%s", k, i,
                (int) r->status, r->dsn, t, (fz_dump(z), ""));
    if (!fz_auth_q(z, k, q, want) && z->deaf_job > k
        && (fz_settle(z), !fz_auth_q(z, k, q, want)))
        FZ_FAIL("job %d rcpt %zu: \"%s\", not what the fake said%s", k, i, t,
                (fz_dump(z), ""));
    return 1;
}

static void
fz_check_job(struct fz *z, int k)
{
    struct fjob *j = &z->jobs[k];
    const struct fmsg *m = &fz_msgs[j->msg];
    size_t i;

    for (i = 0; i < j->job.nrcpt; i++) {
        const struct dlv_result *r = &j->job.result[i];
        const char *a = fz_addrs[j->idx[i]];
        int cls = r->status == DLV_SENT     ? 2
                  : r->status == DLV_DEFER  ? 4
                  : r->status == DLV_BOUNCE ? 5
                                            : 0;
        const char *p;
        unsigned long long lim;

        if (cls == 0)
            FZ_FAIL("job %d rcpt %zu: status %d", k, i, (int) r->status);
        if (r->text == NULL)
            FZ_FAIL("job %d rcpt %zu: no result", k, i);
        if (!fz_dsn_ok(r->dsn, cls))
            FZ_FAIL("job %d rcpt %zu: status %d with dsn \"%s\" (%s)", k, i,
                    (int) r->status, r->dsn, r->text);
        if (fz_trace)
            fprintf(stderr, "fuzz_dlv_smtp: job %d rcpt %zu: %d %s %s\n", k, i,
                    (int) r->status, r->dsn, r->text);
        fz_check_tls(z, k, i, r);
        if (fz_check_auth(z, k, i, r))
            continue; /* checked there, BOUNCE too */
        switch (r->status) {
        case DLV_SENT:
            if (!fz_sent_ok(z, k, (int) i) && z->deaf_job > k
                && (fz_settle(z), !fz_sent_ok(z, k, (int) i)))
                FZ_FAIL("job %d rcpt %zu sent without a complete accepted "
                        "transaction (%s)%s",
                        k, i, r->text, (fz_dump(z), ""));
            break;
        case DLV_BOUNCE:
            if (!fz_addr_ok(a) && strcmp(r->dsn, "5.1.3") == 0)
                break;
            if (m->bad_sender && strcmp(r->dsn, "5.1.7") == 0
                && !fz_mail_sent(z, k))
                break;
            if (strcmp(r->dsn, "5.3.4") == 0
                && (p = strstr(r->text, "exceeds size limit ")) != NULL) {
                lim = strtoull(p + 19, NULL, 10);
                if (lim == 0 || (unsigned long long) m->m->content_len <= lim
                    || !fz_size_ok(z, k, lim))
                    FZ_FAIL("job %d rcpt %zu: %s", k, i, r->text);
                break;
            }
            if (!fz_bounce_ok(z, k, (int) i) && z->deaf_job > k
                && (fz_settle(z), !fz_bounce_ok(z, k, (int) i)))
                FZ_FAIL("job %d rcpt %zu bounced without a 5xx for it (%s "
                        "%s)%s",
                        k, i, r->dsn, r->text, (fz_dump(z), ""));
            break;
        case DLV_DEFER:
            break;
        }
    }
}

/* Run the loop until job k is done. */
static void
fz_run_job(struct fz *z, int k)
{
    struct fjob *j = &z->jobs[k];
    size_t ci;
    int i;

    z->cur = k;
    z->nothing = 0;
    z->stuck = z->expired = 0;
    ev_now_update(fz_loop);
    z->in_start = 1;
    dlv_smtp_start(&j->job);
    z->in_start = 0;
    if (j->done)
        FZ_FAIL("done(job) called from inside dlv_smtp_start");
    ev_idle_start(fz_loop, &z->idle);
    ev_timer_set(&z->guard, FZ_GUARD, 0.);
    ev_timer_start(fz_loop, &z->guard);
    for (i = 0; !j->done; i++) {
        if (z->stuck || z->expired || i == FZ_ITER_MAX)
            FZ_FAIL("job %d not done (%s, %d loop turns)", k,
                    z->stuck     ? "nothing left to do"
                    : z->expired ? "timed out"
                                 : "loop bound",
                    i);
        ev_run(fz_loop, EVRUN_ONCE);
    }
    ev_idle_stop(fz_loop, &z->idle);
    ev_timer_stop(fz_loop, &z->guard);
    ev_timer_stop(fz_loop, &z->stall_t);
    /* what the client wrote before it was done, read now */
    for (ci = 0; ci < z->nc; ci++)
        fc_read(&z->c[ci]);
    fz_check_job(z, k);
}

static int
fz_nfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n++;
    closedir(d);
    return n;
}

/* After the input: every connection is shut down by the fake, so that the
 * client's cache drops (and closes) what it holds; then every connection
 * must be closed by the client, and the fds back to what they were. */
static void
fz_drain(struct fz *z, int nfds)
{
    size_t i;
    int k, open = 1, n;
    ev_tstamp t0;

    for (i = 0; i < z->nc; i++) {
        buf_reset(z->c[i].out); /* what did not leave stays unsaid */
        if (z->c[i].end == FC_END_NONE)
            z->c[i].end = FC_END_SHUT;
        fc_flush(&z->c[i]);
    }
    t0 = ev_time();
    for (k = 0; open; k++) {
        if (k > 100 && ev_time() - t0 > FZ_GUARD)
            FZ_FAIL("a connection left open after its job");
        if (k > 100)
            fz_settle(z);
        ev_run(fz_loop, EVRUN_NOWAIT);
        for (i = 0; i < z->nc; i++)
            fc_read(&z->c[i]);
        for (open = 0, i = 0; i < z->nc; i++)
            open |= z->c[i].fd >= 0;
    }
    t0 = ev_time();
    for (k = 0; (n = fz_nfds()) != nfds; k++) {
        if (k > 100 && ev_time() - t0 > FZ_GUARD)
            FZ_FAIL("%d fds open after the input, %d before", n, nfds);
        if (k > 100)
            usleep(1000);
        ev_run(fz_loop, EVRUN_NOWAIT);
    }
}

/* No secret in what was logged (the log file is emptied for the next
 * input); not checked when the fake said one itself. */
static void
fz_check_log(const struct fz *z)
{
    struct stat st;
    char *lb;
    ssize_t n;

    if (fz_logfd < 0 || fstat(fz_logfd, &st) < 0 || st.st_size == 0)
        return;
    lb = malloc((size_t) st.st_size);
    if (lb == NULL)
        abort();
    n = pread(fz_logfd, lb, (size_t) st.st_size, 0);
    if (n > 0 && !z->echo && fz_has_secret(lb, (size_t) n)) {
        const char *q = memmem(lb, (size_t) n, FZ_PASS, strlen(FZ_PASS));

        FZ_FAIL("a secret in the log: \"%.200s\"", q ? q : lb);
    }
    free(lb);
    if (ftruncate(fz_logfd, 0) < 0)
        abort();
}

static void
fz_job_init(struct fz *z, int k, int msg)
{
    static const char *const hosts[2] = {"[127.0.0.1]", "127.0.0.1"};
    struct fjob *j = &z->jobs[k];
    size_t n = 1 + (size_t) (z->o[1] & 7) % 5, i;
    size_t start = (size_t) (z->o[1] >> 5) + (size_t) k;

    j->msg = msg;
    j->z = z;
    if (z->o[2] & 0x08) {
        n = FZ_NLONG;
        for (i = 0; i < n; i++)
            j->idx[i] = FZ_NBASIC + i;
    } else {
        for (i = 0; i < n; i++)
            j->idx[i] = (start + i) % FZ_NBASIC;
    }
    j->job.msg = fz_msgs[msg].m;
    j->job.rcpt = j->idx;
    j->job.nrcpt = n;
    j->job.result = calloc(n, sizeof(struct dlv_result));
    if (j->job.result == NULL)
        abort();
    j->job.transport = "smtp";
    j->job.host = hosts[k == 1 && (z->o[2] & 0x10)];
    j->job.port = fz_port;
    if (k == 0 && (z->o[3] & 0x80))
        j->job.host = "localhost";
    if (k == 1 && (z->o[3] & 0x80) && (z->o[2] & 0x10))
        j->job.port = fz_closed_port;
    j->job.tls_level = (enum dlv_tls) z->tls;
    j->job.tls_match = NULL;
    j->job.tls = z->tls != DLV_TLS_NONE ? fz_tls : NULL;
    j->job.sasl_user = z->creds ? FZ_USER : NULL;
    j->job.sasl_pass = z->creds ? FZ_PASS : NULL;
    j->job.cf = fz_cf(z);
    j->job.loop = fz_loop;
    j->job.pool = fz_pool;
    j->job.done = fz_done;
    j->job.arg = j;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    struct fz *z;
    int k, nfds;
    size_t i;

    if (!inited) {
        fz_init();
        inited = 1;
    }
    if (size < sizeof(z->o))
        return 0;
    z = calloc(1, sizeof(*z));
    if (z == NULL)
        abort();
    memcpy(z->o, data, sizeof(z->o));
    z->p = data + sizeof(z->o);
    z->left = size - sizeof(z->o);
    z->held = buf_new(16, BUF_NOCAP);
    z->nopl = (z->o[2] & 3) == 1 || (z->o[2] & 3) == 3;
    z->njobs = 1 + ((z->o[1] >> 3) & 3) % 3;
    z->deaf_job = FZ_JOBS;
    z->tls = z->o[4] & 3; /* none, may, encrypt, verify */
    z->notls_kw = (z->o[4] >> 3) & 1;
    z->creds = (z->o[4] >> 6) & 1;
    z->soft = !((z->o[4] >> 7) & 1);
    z->allowed = z->o[4] & 0x80 ? FR_LOGIN : FR_MECHS;
    z->stall_ok = z->creds && ((z->o[0] >> 3) & 7) == 1 && !fz_nostall;
    log_set_debug((z->o[0] & 0x80) != 0);
    fz_cold = z->o[2] & 0x20 ? 1 + (z->o[2] >> 6) : 0;
    fz_pool_hops = fz_cold >= 3 ? 2 : 1;
    fz_ncold = 0;
    if (!ev_is_active(&fz_pool->t))
        ev_set_priority(&fz_pool->t, (z->o[4] & 0x20) ? 1 : 0);
    nfds = fz_nfds();

    ev_io_init(&z->acc, fz_accept_cb, fz_lfd, EV_READ);
    ev_idle_init(&z->idle, fz_idle_cb);
    ev_timer_init(&z->guard, fz_guard_cb, FZ_GUARD, 0.);
    ev_timer_init(&z->stall_t, fz_stall_cb, FZ_STALL, 0.);
    z->acc.data = z->idle.data = z->guard.data = z->stall_t.data = z;
    ev_io_start(fz_loop, &z->acc);

    fz_job_init(z, 0, z->o[0] & 7);
    fz_job_init(z, 1, z->o[3] & 7);
    fz_job_init(z, 2, (z->o[3] >> 3) & 7);
    for (k = 0; k < z->njobs; k++) {
        fz_run_job(z, k);
        if ((z->o[2] & 0x04) && k + 1 < z->njobs) {
            struct fconn *c = fz_speaker(z);
            int t;

            if (c && z->left > 0)
                fz_turn(z, c); /* to the cached connection, unasked */
            for (t = 0; t < 4; t++)
                ev_run(fz_loop, EVRUN_NOWAIT);
            for (i = 0; i < z->nc; i++)
                fc_read(&z->c[i]);
        }
    }

    fz_drain(z, nfds);
    ev_io_stop(fz_loop, &z->acc);
    ev_timer_stop(fz_loop, &z->stall_t);
    fz_check_log(z);
    for (i = 0; i < z->nc; i++) {
        int r;

        fc_close(&z->c[i]);
        buf_free(z->c[i].in);
        buf_free(z->c[i].out);
        buf_free(z->c[i].pline);
        free(z->c[i].pchal);
        for (r = 0; r < FZ_REPLIES; r++)
            free(z->c[i].repchal[r]);
    }
    for (k = 0; k < FZ_JOBS; k++) {
        for (i = 0; i < z->jobs[k].job.nrcpt; i++)
            free(z->jobs[k].job.result[i].text);
        free(z->jobs[k].job.result);
    }
    buf_free(z->held);
    free(z);
    fz_cold = 0;
    log_set_debug(0);
    return 0;
}
