/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_local.c - the local delivery agent (aliases, Maildir, files,
 * commands, forwarding), and dlv_delay().
 * Each recipient is expanded through alias_maps first (dlv_alias.c);
 * then each target is delivered:
 *   a mailbox: mail_spool_directory ending in '/' means Maildir, a copy
 *     in mail_spool_directory/USER/new/ (tmp/ first, fsync, rename,
 *     fsync new/), starting with Return-Path:, X-Original-To: (when the
 *     address was rewritten) and Delivered-To: lines, the content
 *     converted from CRLF to LF. USER is the local part, lower-cased,
 *     without the extension (recipient_delimiter). Anything else (mbox)
 *     is deferred: mbox spools are not written yet;
 *   /file: appended in mbox form (From_ line, ">From " quoting, a blank
 *     line after), under an fcntl lock, fsync'ed; /dir/ is a Maildir;
 *   |command: /bin/sh -c command, the message (From_ line first) on its
 *     stdin, Postfix's environment, command_time_limit; the exit status
 *     as Postfix reads it (sysexits, "D.S.N text" output);
 *   other domains' addresses: one new queue file per recipient, the
 *     message with "Delivered-To: RCPT" on top and the same sender:
 *     "forwarded as ID".
 * A recipient is sent when every target is, deferred when one defers
 * (the next attempt delivers every target again, as Postfix's local
 * does), else bounced when one bounces.
 * All file work of one job runs in one wpool worker, one recipient after
 * the other; the log lines and job->done() run on the loop thread.
 * Owns: its struct local_ctx (copies of the config strings it needs).
 * Borrows: the job until done() has been called.
 * Not done yet: switching to the recipient's uid (runs as mail_owner);
 * owner-ALIAS senders for forwarded mail.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/dlv.h"
#include "queue/dlv_alias.h"

#define LOCAL_CHUNK    65536 /* content read per pread */
#define LOCAL_USER_MAX 255   /* bytes in a mailbox name */
#define LOCAL_PATH_MAX 4096

#define LOCAL_HEAD_READ 65536 /* header bytes read for Delivered-To: */
#define LOCAL_CMD_OUT   1000  /* command output kept for the reason */

/* One log line: a target's outcome. */
struct local_line {
    size_t k; /* the job's recipient */
    char *to;
    enum dlv_status st;
    char dsn[16];
    char *text;
};

struct local_ctx {
    struct dlv_job *job;
    char *spooldir;      /* mail_spool_directory, with its trailing '/' */
    int maildir;         /* 1: Maildir; 0: mbox (not supported yet) */
    char *hostname;      /* for unique names, '/' and ':' escaped */
    char *qdir;          /* queue_directory, for forwarded copies */
    char *owner;         /* mail_owner: LOGNAME of commands */
    char *mbox_cmd;      /* mailbox_command, as written, or "" */
    long long cmd_limit; /* command_time_limit, seconds */
    double start;        /* job start, unix seconds */
    double end;          /* worker finished */
    char **delivered;    /* the message's Delivered-To: fields */
    size_t ndelivered;
    struct local_line *lines;
    size_t nlines;
    int forwarded; /* a new queue file was made */
};

static unsigned long local_counter; /* unique-name counter, atomic */

static double
local_now(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (double) tv.tv_sec + (double) tv.tv_usec / 1e6;
}

double
dlv_delay(const struct spool_msg *m)
{
    double d = local_now() - (double) m->env.arrival / 1e6;

    return d < 0 ? 0 : d;
}

char *
dlv_fmt_delay(double d, char *out, size_t n)
{
    if (d < 0.005) { /* the common case: no printf for it */
        if (n >= 2)
            memcpy(out, "0", 2);
        else if (n == 1)
            *out = '\0';
    } else if (d < 0.1)
        snprintf(out, n, "%.2f", d);
    else if (d < 10)
        snprintf(out, n, "%.2g", d);
    else
        snprintf(out, n, "%.0f", d);
    return out;
}

char *
dlv_orig_to(const struct spool_rcpt *r, char *out, size_t n)
{
    char safe[600];

    if (n > 0)
        *out = '\0';
    if (r->orig != NULL && *r->orig && strcasecmp(r->orig, r->addr) != 0)
        snprintf(out, n, ", orig_to=<%s>",
                 log_safe(r->orig, strlen(r->orig), safe, sizeof(safe)));
    return out;
}

/* A mailbox name that may become a path: 0, else -1. */
static int
local_user_ok(const char *user)
{
    size_t n = strlen(user);

    if (n == 0 || n > LOCAL_USER_MAX || user[0] == '.')
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char) user[i];

        if (c == '/' || c < 0x20 || c == 0x7f)
            return -1;
    }
    return 0;
}

/* Envelope text for a header line: control characters become '?'. */
static int
local_put_safe(struct buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;

        if (buf_putc(b, c < 0x20 || c == 0x7f ? '?' : c) < 0)
            return -1;
    }
    return 0;
}

static int
local_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

static int
local_mkdir(const char *path)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Copy the message content from the queue file, CRLF -> LF. */
static int
local_copy(int out, const struct spool_msg *m, struct buf *err)
{
    char *in = xmalloc(LOCAL_CHUNK), *o = xmalloc(LOCAL_CHUNK + 1);
    off_t off = m->content_off, end = m->content_off + m->content_len;
    int cr = 0, rc = -1;

    while (off < end) {
        size_t want =
            end - off > LOCAL_CHUNK ? LOCAL_CHUNK : (size_t) (end - off);
        ssize_t r = pread(m->fd, in, want, off);
        size_t i, k = 0;

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            buf_printf(err, "cannot read queue file: %s", strerror(errno));
            goto fail;
        }
        if (r == 0) {
            buf_printf(err, "queue file content is truncated");
            goto fail;
        }
        for (i = 0; i < (size_t) r; i++) {
            if (cr && in[i] != '\n')
                o[k++] = '\r';
            cr = in[i] == '\r';
            if (!cr)
                o[k++] = in[i];
        }
        if (local_write_all(out, o, k) < 0) {
            buf_printf(err, "cannot write maildir file: %s", strerror(errno));
            goto fail;
        }
        off += r;
    }
    if (cr && local_write_all(out, "\r", 1) < 0) {
        buf_printf(err, "cannot write maildir file: %s", strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    free(o);
    free(in);
    return rc;
}

/* Append to a path: -1 with errno ENAMETOOLONG over LOCAL_PATH_MAX. */
static int
local_path(struct buf *b, const char *s)
{
    if (buf_puts(b, s) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* The Maildir dir (no trailing '/'): dir and dir/{tmp,new,cur}, made
 * when missing; path ends up as dir. parents: make mail_spool_directory
 * above it too. -1 with errno. */
static int
local_dirs(const char *dir, int parent, struct buf *path)
{
    static const char *const sub[] = {"/tmp", "/new", "/cur"};
    size_t base, i;

    if (local_path(path, dir) < 0)
        return -1;
    if (parent) {
        char *slash = strrchr(buf_data(path), '/');

        if (slash && slash != buf_data(path)) {
            *slash = '\0';
            i = local_mkdir(buf_data(path));
            *slash = '/';
            if ((int) i < 0)
                return -1;
        }
    }
    if (local_mkdir(buf_data(path)) < 0)
        return -1;
    base = buf_len(path);
    for (i = 0; i < 3; i++) {
        buf_truncate(path, base);
        if (local_path(path, sub[i]) < 0 || local_mkdir(buf_data(path)) < 0)
            return -1;
    }
    buf_truncate(path, base);
    return 0;
}

/* The header lines a delivery starts with: Return-Path:, X-Original-To:
 * (orig, when it is not addr) and Delivered-To: addr. -1 when too long. */
static int
local_head(struct buf *hdr, const struct spool_msg *m, const char *addr,
           const char *orig)
{
    if (buf_puts(hdr, "Return-Path: <") < 0
        || local_put_safe(hdr, m->env.sender) < 0 || buf_puts(hdr, ">\n") < 0)
        return -1;
    if (orig && *orig && strcasecmp(orig, addr) != 0
        && (buf_puts(hdr, "X-Original-To: ") < 0
            || local_put_safe(hdr, orig) < 0 || buf_puts(hdr, "\n") < 0))
        return -1;
    if (buf_puts(hdr, "Delivered-To: ") < 0 || local_put_safe(hdr, addr) < 0
        || buf_puts(hdr, "\n") < 0)
        return -1;
    return 0;
}

/* One Maildir delivery into dir (parent: under mail_spool_directory);
 * worker thread. 0, or -1 with the reason in err. */
static int
local_maildir(struct local_ctx *c, const char *dir, int parent,
              const struct buf *hdr, struct buf *err)
{
    const struct spool_msg *m = c->job->msg;
    struct buf *tmp = buf_new(256, LOCAL_PATH_MAX);
    struct buf *new = buf_new(256, LOCAL_PATH_MAX);
    struct buf *name = buf_new(128, LOCAL_PATH_MAX);
    struct timeval tv;
    unsigned long q = __atomic_fetch_add(&local_counter, 1, __ATOMIC_RELAXED);
    int fd = -1, dfd = -1, created = 0, rc = -1;

    gettimeofday(&tv, NULL);
    buf_printf(name, "%lld.M%06ldP%ldQ%lu.%s", (long long) tv.tv_sec,
               (long) tv.tv_usec, (long) getpid(), q, c->hostname);
    if (local_dirs(dir, parent, tmp) < 0
        || buf_set(new, buf_data(tmp), buf_len(tmp)) < 0
        || local_path(new, "/new") < 0 || local_path(tmp, "/tmp/") < 0
        || local_path(tmp, buf_data(name)) < 0)
        goto fail;
    fd = open(buf_data(tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    created = 1;
    if (local_write_all(fd, buf_data(hdr), buf_len(hdr)) < 0)
        goto fail;
    if (local_copy(fd, m, err) < 0)
        goto fail;
    if (fsync(fd) < 0)
        goto fail;
    rc = close(fd);
    fd = -1;
    if (rc < 0)
        goto fail;
    rc = -1;
    dfd = open(buf_data(new), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || local_path(new, "/") < 0
        || local_path(new, buf_data(name)) < 0)
        goto fail;
    if (rename(buf_data(tmp), buf_data(new)) < 0)
        goto fail;
    created = 0;
    if (fsync(dfd) < 0) {
        /* not durable: take the copy back, the retry delivers it again */
        int saved = errno;

        unlink(buf_data(new));
        errno = saved;
        buf_sets(tmp, buf_data(new)); /* name it in the error */
        goto fail;
    }
    rc = 0;
fail:
    if (rc < 0 && buf_len(err) == 0)
        buf_printf(err, "maildir delivery failed: %s: %s",
                   buf_len(tmp) ? buf_data(tmp) : dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (created)
        unlink(buf_data(tmp));
    buf_free(name);
    buf_free(new);
    buf_free(tmp);
    return rc;
}

/* mbox form: CRLF -> LF, ">From " at the start of a line (quote: for
 * files, not for commands, as Postfix), into o. */
struct local_mbox {
    struct buf *o;
    int quote;
    int bol, cr;
    size_t pend; /* bytes of "From " matched at the start of a line */
};

static void
local_mbox_char(struct local_mbox *w, char ch)
{
    static const char from[] = "From ";

    if (w->quote && w->bol) {
        if (ch == from[w->pend]) {
            if (++w->pend == 5) {
                buf_puts(w->o, ">From ");
                w->pend = 0;
                w->bol = 0;
            }
            return;
        }
        buf_append(w->o, from, w->pend);
        w->pend = 0;
        w->bol = 0;
    }
    buf_putc(w->o, ch);
    w->bol = ch == '\n';
}

static void
local_mbox_bytes(struct local_mbox *w, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (w->cr && p[i] != '\n')
            local_mbox_char(w, '\r');
        w->cr = p[i] == '\r';
        if (!w->cr)
            local_mbox_char(w, p[i]);
    }
}

/* The content in mbox form, chunk by chunk: *more 0 after the last.
 * 0, or -1 with the reason in err. */
static int
local_mbox_next(const struct spool_msg *m, off_t *off, struct local_mbox *w,
                int *more, struct buf *err)
{
    char in[LOCAL_CHUNK];
    off_t end = m->content_off + m->content_len;
    size_t want;
    ssize_t r;

    buf_reset(w->o);
    if (*off >= end) {
        if (w->cr)
            local_mbox_char(w, '\r');
        w->cr = 0;
        buf_append(w->o, "From ", w->pend); /* "From" alone at the end */
        w->pend = 0;
        *more = 0;
        return 0;
    }
    want = end - *off > LOCAL_CHUNK ? LOCAL_CHUNK : (size_t) (end - *off);
    do
        r = pread(m->fd, in, want, *off);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        buf_printf(err, "cannot read queue file: %s",
                   r < 0 ? strerror(errno) : "content is truncated");
        return -1;
    }
    *off += r;
    local_mbox_bytes(w, in, (size_t) r);
    *more = 1;
    return 0;
}

/* The From_ line: "From SENDER DATE\n". */
static void
local_from_line(struct buf *b, const struct spool_msg *m)
{
    time_t now = time(NULL);
    struct tm tm;
    char date[64];

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
    buf_puts(b, "From ");
    local_put_safe(b, *m->env.sender ? m->env.sender : "MAILER-DAEMON");
    buf_printf(b, "  %s\n", date);
}

/* Append to a file in mbox form; worker thread. */
static enum dlv_status
local_file(struct local_ctx *c, const char *path, const struct buf *hdr,
           char dsn[16], struct buf *err)
{
    const struct spool_msg *m = c->job->msg;
    struct local_mbox w = {buf_new(2 * LOCAL_CHUNK, BUF_NOCAP), 1, 1, 0, 0};
    struct buf *head = buf_new(512, BUF_NOCAP);
    struct flock lk;
    struct stat st;
    off_t off = m->content_off, size0 = -1;
    int fd, more = 1, tries;
    enum dlv_status rc = DLV_DEFER;

    snprintf(dsn, 16, "4.2.0");
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
              0600);
    if (fd < 0) {
        buf_printf(err, "cannot open file %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        snprintf(dsn, 16, "5.2.0");
        buf_printf(err, "cannot append message to file %s: %s", path,
                   S_ISREG(st.st_mode) ? "it has more than one link"
                                       : "not a regular file");
        rc = DLV_BOUNCE;
        goto out;
    }
    memset(&lk, 0, sizeof(lk));
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    for (tries = 0; fcntl(fd, F_SETLK, &lk) < 0; tries++) {
        if ((errno != EAGAIN && errno != EACCES) || tries >= 200) {
            buf_printf(err, "cannot lock file %s: %s", path,
                       tries >= 200 ? "it stays locked" : strerror(errno));
            goto out;
        }
        usleep(100000);
    }
    if (fstat(fd, &st) < 0) {
        buf_printf(err, "cannot stat file %s: %s", path, strerror(errno));
        goto out;
    }
    size0 = st.st_size;
    local_from_line(head, m);
    buf_append(head, buf_data(hdr), buf_len(hdr));
    if (local_write_all(fd, buf_data(head), buf_len(head)) < 0)
        goto werr;
    while (more) {
        if (local_mbox_next(m, &off, &w, &more, err) < 0)
            goto out;
        if (local_write_all(fd, buf_data(w.o), buf_len(w.o)) < 0)
            goto werr;
    }
    /* the message ends with a line end and a blank line */
    if (local_write_all(fd, w.bol || off == m->content_off ? "\n" : "\n\n",
                        w.bol || off == m->content_off ? 1 : 2)
            < 0
        || fsync(fd) < 0)
        goto werr;
    snprintf(dsn, 16, "2.0.0");
    rc = DLV_SENT;
    goto out;
werr:
    buf_printf(err, "cannot append message to file %s: %s", path,
               strerror(errno));
out:
    if (rc != DLV_SENT && size0 >= 0 && ftruncate(fd, size0) < 0)
        log_warning_as("local",
                       "%s: cannot truncate %s after a failed "
                       "delivery: %s",
                       m->env.id, path, strerror(errno));
    if (fd >= 0)
        close(fd);
    buf_free(head);
    buf_free(w.o);
    return rc;
}

/* Postfix's sysexits table: the DSN and text of a command's status. */
static const struct {
    int code;
    const char *dsn, *text;
} local_sysexits[] = {
    {64, "5.3.0", "command line usage error"},
    {65, "5.6.0", "data format error"},
    {66, "5.3.0", "cannot open input"},
    {67, "5.1.1", "user unknown"},
    {68, "5.1.2", "host name unknown"},
    {69, "5.3.0", "service unavailable"},
    {70, "5.3.0", "internal software error"},
    {71, "4.3.0", "system resource problem"},
    {72, "5.3.0", "critical OS file missing"},
    {73, "5.2.0", "can't create user output file"},
    {74, "5.3.0", "input/output error"},
    {75, "4.3.0", "temporary failure"},
    {76, "5.5.0", "remote error in protocol"},
    {77, "5.7.0", "permission denied"},
    {78, "5.3.5", "local configuration error"},
};

/* "D.S.N text" at the start of s? The length of D.S.N, else 0. */
static size_t
local_dsn_prefix(const char *s)
{
    size_t n = 0;

    if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return 0;
    n = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;

        while (s[n + d] >= '0' && s[n + d] <= '9' && d < 3)
            d++;
        if (d == 0)
            return 0;
        n += d;
        if (part == 0 && s[n++] != '.')
            return 0;
    }
    return s[n] == ' ' ? n : 0;
}

static double
local_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* Pipe the message to /bin/sh -c cmd; worker thread. */
static enum dlv_status
local_command(struct local_ctx *c, const char *cmd, const struct buf *hdr,
              char *const *envp, char dsn[16], struct buf *why)
{
    const struct spool_msg *m = c->job->msg;
    struct local_mbox w = {buf_new(2 * LOCAL_CHUNK, BUF_NOCAP), 0, 1, 0, 0};
    struct buf *out = buf_new(256, LOCAL_CMD_OUT + 1);
    int in[2] = {-1, -1}, op[2] = {-1, -1}, status = 0, more = 1;
    int timeout = 0, reaped = 0;
    const char *argv[] = {"sh", "-c", cmd, NULL};
    double deadline = local_mono() + (double) c->cmd_limit;
    off_t off = m->content_off;
    size_t sent = 0;
    pid_t pid;
    enum dlv_status rc = DLV_DEFER;

    snprintf(dsn, 16, "4.3.0");
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(op, O_CLOEXEC) < 0) {
        buf_printf(why, "cannot run command: pipe: %s", strerror(errno));
        goto done;
    }
    pid = fork();
    if (pid < 0) {
        buf_printf(why, "cannot run command: fork: %s", strerror(errno));
        goto done;
    }
    if (pid == 0) { /* only async-signal-safe calls until exec */
        struct sigaction sa;
        sigset_t none;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        for (int sig = 1; sig < 32; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                sigaction(sig, &sa, NULL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        if (dup2(in[0], 0) < 0 || dup2(op[1], 1) < 0 || dup2(op[1], 2) < 0
            || chdir("/") < 0)
            _exit(71);
        /* nothing of the queue manager's: queue files, sockets */
        (void) syscall(SYS_close_range, 3U, ~0U, 0U);
        execve("/bin/sh", (char *const *) argv, envp);
        _exit(71);
    }
    close(in[0]);
    close(op[1]);
    in[0] = op[1] = -1;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(op[0], F_SETFL, O_NONBLOCK);
    buf_reset(w.o);
    local_from_line(w.o, m);
    buf_append(w.o, buf_data(hdr), buf_len(hdr));
    while (in[1] >= 0 || op[0] >= 0) {
        struct pollfd pf[2];
        nfds_t np = 0;
        double left = deadline - local_mono();
        int r;

        if (left <= 0) {
            timeout = 1;
            break;
        }
        if (in[1] >= 0) {
            if (sent == buf_len(w.o) && more) {
                if (local_mbox_next(m, &off, &w, &more, why) < 0)
                    break;
                sent = 0;
            }
            if (sent == buf_len(w.o) && !more) {
                close(in[1]);
                in[1] = -1;
                continue;
            }
            pf[np].fd = in[1];
            pf[np++].events = POLLOUT;
        }
        if (op[0] >= 0) {
            pf[np].fd = op[0];
            pf[np++].events = POLLIN;
        }
        r = poll(pf, np, left > 1000 ? 1000000 : (int) (left * 1000) + 1);
        if (r < 0 && errno != EINTR)
            break;
        for (nfds_t i = 0; r > 0 && i < np; i++) {
            if (pf[i].fd == in[1] && pf[i].revents) {
                ssize_t k =
                    write(in[1], buf_data(w.o) + sent, buf_len(w.o) - sent);

                if (k > 0)
                    sent += (size_t) k;
                else if (k < 0 && errno != EAGAIN && errno != EINTR) {
                    close(in[1]); /* EPIPE: it read what it wanted */
                    in[1] = -1;
                }
            } else if (pf[i].fd == op[0] && pf[i].revents) {
                char b[4096];
                ssize_t k = read(op[0], b, sizeof(b));

                if (k > 0) {
                    size_t room = LOCAL_CMD_OUT - buf_len(out);

                    buf_append(out, b, (size_t) k < room ? (size_t) k : room);
                } else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
                    close(op[0]);
                    op[0] = -1;
                }
            }
        }
    }
    /* the child: at once when it timed out, else until the deadline */
    while (!reaped) {
        pid_t r;

        if (timeout)
            kill(-pid, SIGKILL);
        r = waitpid(pid, &status, timeout ? 0 : WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) {
            reaped = r == pid;
            break;
        }
        if (r == 0 && local_mono() >= deadline)
            timeout = 1;
        else if (r == 0)
            usleep(10000);
    }
    if (timeout)
        kill(-pid, SIGKILL); /* its offspring too */
    {
        /* the output as Postfix shows it: one line, printable */
        char *o = buf_data(out);

        for (size_t i = 0; i < buf_len(out); i++)
            if (o[i] == '\t' || o[i] == '\n' || o[i] == '\r')
                o[i] = ' ';
            else if ((unsigned char) o[i] < 0x20
                     || (unsigned char) o[i] >= 0x7f)
                o[i] = '_';
        while (buf_len(out) > 0 && o[buf_len(out) - 1] == ' ')
            buf_truncate(out, buf_len(out) - 1);
    }
    if (buf_len(why) > 0) {
        /* a read error of the queue file */
    } else if (timeout) {
        snprintf(dsn, 16, "5.3.0");
        buf_printf(why, "Command time limit exceeded: \"%s\"%s%s", cmd,
                   buf_len(out) ? ". Command output: " : "", buf_data(out));
        rc = DLV_BOUNCE;
    } else if (!reaped) {
        buf_printf(why, "cannot wait for command: %s", strerror(errno));
    } else if (WIFSIGNALED(status)) {
        buf_printf(why, "Command died with signal %d: \"%s\"%s%s",
                   WTERMSIG(status), cmd,
                   buf_len(out) ? ". Command output: " : "", buf_data(out));
    } else if (WEXITSTATUS(status) == 0) {
        snprintf(dsn, 16, "2.0.0");
        buf_printf(why, "delivered to command: %s", cmd);
        rc = DLV_SENT;
    } else if (local_dsn_prefix(buf_data(out)) > 0) {
        size_t n = local_dsn_prefix(buf_data(out));

        snprintf(dsn, 16, "%.*s", (int) n, buf_data(out));
        buf_puts(why, buf_data(out) + n + 1);
        rc = dsn[0] == '4' ? DLV_DEFER : DLV_BOUNCE;
    } else {
        int code = WEXITSTATUS(status);
        size_t i;

        for (i = 0; i < sizeof(local_sysexits) / sizeof(local_sysexits[0]); i++)
            if (local_sysexits[i].code == code)
                break;
        if (i < sizeof(local_sysexits) / sizeof(local_sysexits[0])) {
            snprintf(dsn, 16, "%s", local_sysexits[i].dsn);
            buf_printf(why, "%s%s%s", local_sysexits[i].text,
                       buf_len(out) ? ". Command output: " : "", buf_data(out));
            rc = dsn[0] == '4' ? DLV_DEFER : DLV_BOUNCE;
        } else {
            snprintf(dsn, 16, "5.3.0");
            buf_printf(why, "Command died with status %d: \"%s\"%s%s", code,
                       cmd, buf_len(out) ? ". Command output: " : "",
                       buf_data(out));
            rc = DLV_BOUNCE;
        }
    }
done:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (op[i] >= 0)
            close(op[i]);
    }
    buf_free(out);
    buf_free(w.o);
    return rc;
}

/* A command's environment, as Postfix's local(8) gives it. */
static char **
local_env(struct local_ctx *c, const char *rcpt, const char *orig)
{
    static const char *const keep[] = {"TZ", "LANG", "MAIL_CONFIG"};
    const char *at = strrchr(rcpt, '@');
    size_t lpl = at ? (size_t) (at - rcpt) : strlen(rcpt);
    const char *delim = cf_str(c->job->cf, "recipient_delimiter");
    size_t base = lpl;
    char **v = xcalloc(20, sizeof(char *));
    struct buf *b = buf_new(256, BUF_NOCAP);
    size_t n = 0;

    if (*delim) {
        size_t cut = strcspn(rcpt, delim);

        if (cut > 0 && cut < lpl)
            base = cut;
    }
#define LOCAL_ENV(...)                 \
    do {                               \
        buf_reset(b);                  \
        buf_printf(b, __VA_ARGS__);    \
        v[n++] = xstrdup(buf_data(b)); \
    } while (0)
    LOCAL_ENV("PATH=/usr/bin:/bin");
    LOCAL_ENV("HOME=/");
    LOCAL_ENV("SHELL=/bin/sh");
    LOCAL_ENV("LOGNAME=%s", c->owner);
    LOCAL_ENV("USER=%s", c->owner);
    LOCAL_ENV("SENDER=%s", c->job->msg->env.sender);
    LOCAL_ENV("RECIPIENT=%s", rcpt);
    LOCAL_ENV("ORIGINAL_RECIPIENT=%s", orig ? orig : rcpt);
    LOCAL_ENV("LOCAL=%.*s", (int) lpl, rcpt);
    LOCAL_ENV("DOMAIN=%s", at ? at + 1 : "");
    LOCAL_ENV("EXTENSION=%.*s", base < lpl ? (int) (lpl - base - 1) : 0,
              base < lpl ? rcpt + base + 1 : "");
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
        const char *e = getenv(keep[i]);

        if (e)
            LOCAL_ENV("%s=%s", keep[i], e);
    }
#undef LOCAL_ENV
    buf_free(b);
    return v;
}

/* Forward a copy to addresses of other domains: a new queue file with
 * "Delivered-To: rcpt" on top; worker thread. 0 with its ID, or -1. */
static int
local_forward(struct local_ctx *c, const char *rcpt,
              const struct dlv_alias_target *t, size_t nt, char *id,
              struct buf *err)
{
    const struct spool_msg *m = c->job->msg;
    struct spool_file *sf = spool_create(c->qdir, err);
    struct spool_rcpt *r = xcalloc(nt, sizeof(*r));
    struct buf *b = buf_new(256, BUF_NOCAP);
    struct spool_env env;
    struct timeval tv;
    char *chunk = NULL;
    off_t off = m->content_off, end = m->content_off + m->content_len;
    size_t n = 0;
    int rc = -1;

    if (sf == NULL)
        goto out;
    buf_puts(b, "Delivered-To: ");
    local_put_safe(b, rcpt);
    buf_puts(b, "\r\n");
    if (spool_write(sf, buf_data(b), buf_len(b)) < 0)
        goto werr;
    chunk = xmalloc(LOCAL_CHUNK);
    while (off < end) {
        size_t want =
            end - off > LOCAL_CHUNK ? LOCAL_CHUNK : (size_t) (end - off);
        ssize_t k = pread(m->fd, chunk, want, off);

        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            buf_printf(err, "cannot read queue file: %s",
                       k < 0 ? strerror(errno) : "content is truncated");
            goto out;
        }
        if (spool_write(sf, chunk, (size_t) k) < 0)
            goto werr;
        off += k;
    }
    for (size_t i = 0; i < nt; i++)
        if (t[i].kind == DLV_ALIAS_FORWARD) {
            r[n].addr = t[i].what;
            r[n].status = SPOOL_RCPT_PENDING;
            n++;
        }
    memset(&env, 0, sizeof(env));
    gettimeofday(&tv, NULL);
    env.arrival = (long long) tv.tv_sec * 1000000 + tv.tv_usec;
    env.client_name = "localhost";
    env.client_addr = "127.0.0.1";
    env.proto = "local";
    env.sender = m->env.sender;
    env.body_type = m->env.body_type;
    env.rcpt = r;
    env.nrcpt = n;
    if (spool_finish(sf, &env) < 0 || spool_commit(sf, "incoming") < 0)
        goto werr;
    snprintf(id, SPOOL_ID_SIZE, "%s", spool_id(sf));
    spool_free(sf);
    sf = NULL;
    rc = 0;
    goto out;
werr:
    buf_printf(err, "cannot queue the forwarded copy: %s", strerror(errno));
out:
    spool_abort(sf);
    free(chunk);
    free(r);
    buf_free(b);
    return rc;
}

static void
local_result(struct dlv_result *r, enum dlv_status st, const char *dsn,
             const char *text)
{
    r->status = st;
    snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
    free(r->text);
    r->text = xstrdup(text);
}

static void
local_line(struct local_ctx *c, size_t k, const char *to, enum dlv_status st,
           const char *dsn, const char *text)
{
    struct local_line *l;

    c->lines = xrealloc(c->lines, (c->nlines + 1) * sizeof(*c->lines));
    l = &c->lines[c->nlines++];
    l->k = k;
    l->to = xstrdup(to);
    l->st = st;
    snprintf(l->dsn, sizeof(l->dsn), "%s", dsn);
    l->text = xstrdup(text);
}

/* The message's Delivered-To: fields, read once per job. */
static void
local_delivered(struct local_ctx *c)
{
    const struct spool_msg *m = c->job->msg;
    size_t want = m->content_len > LOCAL_HEAD_READ ? LOCAL_HEAD_READ
                                                   : (size_t) m->content_len;
    char *head = xmalloc(want + 1);
    ssize_t r;

    do
        r = pread(m->fd, head, want, m->content_off);
    while (r < 0 && errno == EINTR);
    c->ndelivered =
        dlv_alias_delivered(head, r > 0 ? (size_t) r : 0, &c->delivered);
    free(head);
}

/* One recipient: expand, deliver each target, decide. */
static void
local_rcpt(struct local_ctx *c, size_t k, struct buf *err)
{
    struct dlv_job *job = c->job;
    const struct spool_rcpt *sr = &job->msg->env.rcpt[job->rcpt[k]];
    const char *rcpt = sr->addr, *orig = sr->orig ? sr->orig : sr->addr;
    struct dlv_alias_target *t = NULL;
    struct buf *hdr = buf_new(256, 2 * CF_VALUE_MAX + 256);
    struct buf *why = buf_new(256, 4096);
    size_t nt = 0, nfwd = 0;
    int mbox_cmd = 0; /* a mailbox went to mailbox_command */
    enum dlv_status worst = DLV_SENT;
    char dsn[16], wdsn[16] = "2.0.0";
    char *wtext = NULL;

    switch (dlv_alias_expand(job->alias, rcpt, c->delivered, c->ndelivered, &t,
                             &nt, dsn, why)) {
    case DLV_ALIAS_OK:
        break;
    case DLV_ALIAS_BOUNCE:
        local_line(c, k, rcpt, DLV_BOUNCE, dsn, buf_data(why));
        local_result(&job->result[k], DLV_BOUNCE, dsn, buf_data(why));
        goto out;
    case DLV_ALIAS_DEFER:
        local_line(c, k, rcpt, DLV_DEFER, dsn, buf_data(why));
        local_result(&job->result[k], DLV_DEFER, dsn, buf_data(why));
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        const struct dlv_alias_target *x = &t[i];
        const char *to = x->via ? x->via : rcpt;
        enum dlv_status st = DLV_SENT;

        buf_reset(hdr);
        buf_reset(why);
        snprintf(dsn, sizeof(dsn), "2.0.0");
        if (x->kind == DLV_ALIAS_FORWARD) {
            nfwd++;
            continue;
        }
        if (local_head(hdr, job->msg,
                       x->kind == DLV_ALIAS_MAILBOX ? x->what : to, orig)
            < 0) {
            st = DLV_BOUNCE;
            snprintf(dsn, sizeof(dsn), "5.3.4");
            buf_puts(why, "envelope too long for a header line");
        } else if (x->kind == DLV_ALIAS_MAILBOX) {
            to = x->what;
            if (local_user_ok(x->user) < 0) {
                st = DLV_BOUNCE;
                snprintf(dsn, sizeof(dsn), "5.1.1");
                buf_puts(why, "user unknown (invalid mailbox name)");
            } else if (*c->mbox_cmd) {
                /* mailbox_command: the mailbox is the command's, its
                 * environment the user's (USER, LOGNAME; $NAMEs are the
                 * shell's, from that environment) */
                char **envp = local_env(c, to, orig);

                for (size_t e = 0; envp[e]; e++)
                    if (strncmp(envp[e], "USER=", 5) == 0
                        || strncmp(envp[e], "LOGNAME=", 8) == 0) {
                        size_t kl = strchr(envp[e], '=') - envp[e] + 1;
                        char *nv = xmalloc(kl + strlen(x->user) + 1);

                        memcpy(nv, envp[e], kl);
                        strcpy(nv + kl, x->user);
                        free(envp[e]);
                        envp[e] = nv;
                    }
                st = local_command(c, c->mbox_cmd, hdr, envp, dsn, why);
                for (size_t e = 0; envp[e]; e++)
                    free(envp[e]);
                free(envp);
                mbox_cmd = 1;
            } else if (!c->maildir) {
                st = DLV_DEFER;
                snprintf(dsn, sizeof(dsn), "4.3.0");
                buf_puts(why, "mbox delivery not supported yet");
            } else {
                struct buf *dir = buf_new(256, LOCAL_PATH_MAX);

                buf_printf(dir, "%s%s", c->spooldir, x->user);
                buf_reset(err);
                if (local_maildir(c, buf_data(dir), 1, hdr, err) < 0) {
                    st = DLV_DEFER;
                    snprintf(dsn, sizeof(dsn), "4.3.0");
                    buf_puts(why, buf_data(err));
                } else {
                    buf_puts(why, "delivered to maildir");
                }
                buf_free(dir);
            }
        } else if (x->kind == DLV_ALIAS_FILE) {
            size_t pl = strlen(x->what);

            if (strcmp(x->what, "/dev/null") == 0) {
                buf_puts(why, "delivered to file: /dev/null"); /* discarded */
            } else if (pl > 1 && x->what[pl - 1] == '/') {
                char *dir = xmemdup(x->what, pl - 1);

                buf_reset(err);
                if (local_maildir(c, dir, 0, hdr, err) < 0) {
                    st = DLV_DEFER;
                    snprintf(dsn, sizeof(dsn), "4.3.0");
                    buf_puts(why, buf_data(err));
                } else {
                    buf_printf(why, "delivered to maildir: %s", x->what);
                }
                free(dir);
            } else {
                st = local_file(c, x->what, hdr, dsn, why);
                if (st == DLV_SENT)
                    buf_printf(why, "delivered to file: %s", x->what);
            }
        } else {
            char **envp = local_env(c, to, orig);

            st = local_command(c, x->what, hdr, envp, dsn, why);
            for (size_t e = 0; envp[e]; e++)
                free(envp[e]);
            free(envp);
        }
        local_line(c, k, to, st, dsn, buf_data(why));
        if (st != DLV_SENT
            && (worst == DLV_SENT
                || (worst == DLV_BOUNCE && st == DLV_DEFER))) {
            worst = st;
            snprintf(wdsn, sizeof(wdsn), "%s", dsn);
            free(wtext);
            wtext = xstrdup(buf_data(why));
        }
    }
    if (nfwd > 0 && worst != DLV_DEFER) {
        char id[SPOOL_ID_SIZE];

        buf_reset(err);
        if (local_forward(c, rcpt, t, nt, id, err) < 0) {
            local_line(c, k, rcpt, DLV_DEFER, "4.3.0", buf_data(err));
            worst = DLV_DEFER;
            snprintf(wdsn, sizeof(wdsn), "4.3.0");
            free(wtext);
            wtext = xstrdup(buf_data(err));
        } else {
            buf_reset(why);
            buf_printf(why, "forwarded as %s", id);
            local_line(c, k, rcpt, DLV_SENT, "2.0.0", buf_data(why));
            c->forwarded = 1;
        }
    }
    if (worst == DLV_SENT)
        local_result(&job->result[k], DLV_SENT, "2.0.0",
                     nt == 1 && t[0].kind == DLV_ALIAS_MAILBOX && !mbox_cmd
                         ? "delivered to maildir"
                         : "delivered");
    else
        local_result(&job->result[k], worst, wdsn, wtext ? wtext : "");
out:
    free(wtext);
    dlv_alias_free(t, nt);
    buf_free(why);
    buf_free(hdr);
}

/* Worker thread: every recipient of the job. */
static void
local_work(void *arg)
{
    struct local_ctx *c = arg;
    struct buf *err = buf_new(256, 2048);

    local_delivered(c);
    for (size_t k = 0; k < c->job->nrcpt; k++)
        local_rcpt(c, k, err);
    buf_free(err);
    c->end = local_now();
}

/* Loop thread: log one line per target, hand the job back. */
static void
local_done(void *arg)
{
    struct local_ctx *c = arg;
    struct dlv_job *job = c->job;
    double arrival = (double) job->msg->env.arrival / 1e6;
    char d[32], a[32], dd[32], safe_to[600], safe_text[1100], orig[620];
    int soft = cf_bool(job->cf, "soft_bounce");
    size_t k;

    if (c->end == 0)
        c->end = local_now();
    for (k = 0; k < c->nlines; k++) {
        struct local_line *l = &c->lines[k];
        const struct spool_rcpt *sr = &job->msg->env.rcpt[job->rcpt[l->k]];
        const char *first = sr->orig ? sr->orig : sr->addr;
        const char *status = l->st == DLV_SENT    ? "sent"
                             : l->st == DLV_DEFER ? "deferred"
                             : soft               ? "SOFTBOUNCE"
                                                  : "bounced";

        orig[0] = '\0';
        if (strcasecmp(first, l->to) != 0) {
            char safe[600];

            snprintf(orig, sizeof(orig), ", orig_to=<%s>",
                     log_safe(first, strlen(first), safe, sizeof(safe)));
        }
        log_safe(l->to, strlen(l->to), safe_to, sizeof(safe_to));
        log_safe(l->text, strlen(l->text), safe_text, sizeof(safe_text));
        log_info_as("local",
                    "%s: to=<%s>%s, relay=local, delay=%s, "
                    "delays=%s/0/0/%s, dsn=%s, status=%s (%s)",
                    job->msg->env.id, safe_to, orig,
                    dlv_fmt_delay(c->end - arrival, d, sizeof(d)),
                    dlv_fmt_delay(c->start - arrival, a, sizeof(a)),
                    dlv_fmt_delay(c->end - c->start, dd, sizeof(dd)), l->dsn,
                    status, safe_text);
        free(l->to);
        free(l->text);
    }
    for (k = 0; k < job->nrcpt; k++)
        if (job->result[k].status == DLV_BOUNCE && soft)
            job->result[k].status = DLV_DEFER; /* kept queued, as Postfix */
    if (c->forwarded && job->queued)
        job->queued(job);
    for (k = 0; k < c->ndelivered; k++)
        free(c->delivered[k]);
    free(c->delivered);
    free(c->lines);
    free(c->hostname);
    free(c->spooldir);
    free(c->qdir);
    free(c->owner);
    free(c->mbox_cmd);
    free(c);
    job->done(job);
}

void
dlv_local_start(struct dlv_job *job)
{
    struct local_ctx *c = xcalloc(1, sizeof(*c));
    const char *dir = cf_str(job->cf, "mail_spool_directory");
    size_t n = strlen(dir);
    char host[256];
    size_t k, o = 0;

    c->job = job;
    c->start = local_now();
    c->spooldir = xstrdup(dir);
    c->maildir = n > 1 && dir[n - 1] == '/';
    c->qdir = xstrdup(cf_str(job->cf, "queue_directory"));
    c->owner = xstrdup(cf_str(job->cf, "mail_owner"));
    c->mbox_cmd = xstrdup(cf_raw(job->cf, "mailbox_command"));
    c->cmd_limit = cf_time(job->cf, "command_time_limit");
    if (c->cmd_limit < 1)
        c->cmd_limit = 1;
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    /* Maildir: '/' and ':' in the host name are written as \057 \072 */
    c->hostname = xmalloc(4 * strlen(host) + 1);
    for (k = 0; host[k]; k++) {
        if (host[k] == '/' || host[k] == ':')
            o += (size_t) sprintf(c->hostname + o, "\\%03o",
                                  (unsigned char) host[k]);
        else
            c->hostname[o++] = host[k];
    }
    c->hostname[o] = '\0';
    if (!c->maildir)
        log_warning_as("local",
                       "%s: mail_spool_directory %s is not a Maildir "
                       "(no trailing '/'): mailbox delivery (mbox) not "
                       "supported yet",
                       job->msg->env.id, *dir ? dir : "(empty)");
    wpool_submit(job->pool, local_work, local_done, c);
}
