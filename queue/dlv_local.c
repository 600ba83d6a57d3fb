/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_local.c - the local delivery agent (Maildir), and dlv_delay().
 * mail_spool_directory ending in '/' means Maildir: each recipient gets
 * its own copy in mail_spool_directory/USER/new/ (tmp/ first, fsync,
 * rename, fsync new/), starting with Return-Path: and Delivered-To:
 * lines, the content converted from CRLF to LF. USER is the local part,
 * lower-cased, without the "+extension". Anything else (mbox) is
 * deferred: mbox delivery is not written yet.
 * All file work of one job runs in one wpool worker, one recipient after
 * the other; the log lines and job->done() run on the loop thread.
 * Owns: its struct local_ctx (copies of the config strings it needs).
 * Borrows: the job until done() has been called.
 * Not done yet: switching to the recipient's uid (runs as mail_owner).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/dlv.h"

#define LOCAL_CHUNK    65536 /* content read per pread */
#define LOCAL_USER_MAX 255   /* bytes in a mailbox name */
#define LOCAL_PATH_MAX 4096

struct local_ctx {
    struct dlv_job *job;
    char *spooldir; /* mail_spool_directory, with its trailing '/' */
    int maildir;    /* 1: Maildir; 0: mbox (not supported yet) */
    char *hostname; /* for unique names, '/' and ':' escaped */
    double start;   /* job start, unix seconds */
    double end;     /* worker finished */
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

/*
 * USER from a recipient: the local part (before the last '@'), lower-case,
 * cut at the first '+'. -1 for a name that must not become a path.
 */
static int
local_user(const char *addr, struct buf *user)
{
    const char *at = strrchr(addr, '@');
    size_t n = at ? (size_t) (at - addr) : strlen(addr);
    const char *plus = memchr(addr, '+', n);
    size_t i;

    if (plus)
        n = (size_t) (plus - addr);
    if (n == 0 || n > LOCAL_USER_MAX || addr[0] == '.')
        return -1;
    buf_reset(user);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) addr[i];

        if (c == '/' || c == '\0' || c < 0x20 || c == 0x7f)
            return -1;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char) (c - 'A' + 'a');
        if (buf_putc(user, c) < 0)
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

/* mail_spool_directory, USER/ and USER/{tmp,new,cur}; path ends up as
 * the USER directory. -1 with errno, path naming what failed. */
static int
local_dirs(const char *spooldir, const char *user, struct buf *path)
{
    static const char *const sub[] = {"/tmp", "/new", "/cur"};
    size_t base, i;

    if (local_path(path, spooldir) < 0)
        return -1;
    buf_truncate(path, buf_len(path) - 1); /* the trailing '/' */
    if (local_mkdir(buf_data(path)) < 0 || local_path(path, "/") < 0
        || local_path(path, user) < 0 || local_mkdir(buf_data(path)) < 0)
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

/* One Maildir delivery; worker thread. 0, or -1 with the reason in err. */
static int
local_maildir(struct local_ctx *c, const char *rcpt, const char *user,
              struct buf *err)
{
    const struct spool_msg *m = c->job->msg;
    struct buf *tmp = buf_new(256, LOCAL_PATH_MAX);
    struct buf *new = buf_new(256, LOCAL_PATH_MAX);
    struct buf *hdr = buf_new(256, 2 * CF_VALUE_MAX);
    struct buf *name = buf_new(128, LOCAL_PATH_MAX);
    struct timeval tv;
    unsigned long q = __atomic_fetch_add(&local_counter, 1, __ATOMIC_RELAXED);
    int fd = -1, dfd = -1, created = 0, rc = -1;

    gettimeofday(&tv, NULL);
    buf_printf(name, "%lld.M%06ldP%ldQ%lu.%s", (long long) tv.tv_sec,
               (long) tv.tv_usec, (long) getpid(), q, c->hostname);
    if (local_dirs(c->spooldir, user, tmp) < 0
        || buf_set(new, buf_data(tmp), buf_len(tmp)) < 0
        || local_path(new, "/new") < 0 || local_path(tmp, "/tmp/") < 0
        || local_path(tmp, buf_data(name)) < 0)
        goto fail;
    fd = open(buf_data(tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    created = 1;
    if (buf_puts(hdr, "Return-Path: <") < 0
        || local_put_safe(hdr, m->env.sender) < 0
        || buf_puts(hdr, ">\nDelivered-To: ") < 0
        || local_put_safe(hdr, rcpt) < 0 || buf_puts(hdr, "\n") < 0) {
        errno = E2BIG;
        goto fail;
    }
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
        buf_printf(err, "maildir delivery failed: %s: %s", buf_data(tmp),
                   strerror(errno));
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (created)
        unlink(buf_data(tmp));
    buf_free(name);
    buf_free(hdr);
    buf_free(new);
    buf_free(tmp);
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

/* Worker thread: every recipient of the job. */
static void
local_work(void *arg)
{
    struct local_ctx *c = arg;
    struct dlv_job *job = c->job;
    struct buf *user = buf_new(64, LOCAL_USER_MAX + 1);
    struct buf *err = buf_new(256, 2048);
    size_t k;

    for (k = 0; k < job->nrcpt; k++) {
        const char *rcpt = job->msg->env.rcpt[job->rcpt[k]].addr;

        buf_reset(err);
        if (local_user(rcpt, user) < 0) {
            local_result(&job->result[k], DLV_BOUNCE, "5.1.1",
                         "user unknown (invalid mailbox name)");
            continue;
        }
        if (local_maildir(c, rcpt, buf_data(user), err) < 0) {
            local_result(&job->result[k], DLV_DEFER, "4.3.0", buf_data(err));
            continue;
        }
        local_result(&job->result[k], DLV_SENT, "2.0.0",
                     "delivered to maildir");
    }
    buf_free(err);
    buf_free(user);
    c->end = local_now();
}

/* Loop thread: log one line per recipient, hand the job back. */
static void
local_done(void *arg)
{
    struct local_ctx *c = arg;
    struct dlv_job *job = c->job;
    double arrival = (double) job->msg->env.arrival / 1e6;
    char d[32], a[32], dd[32], safe_to[600], safe_text[1100], orig[620];
    size_t k;

    if (c->end == 0)
        c->end = local_now();
    for (k = 0; k < job->nrcpt; k++) {
        struct dlv_result *r = &job->result[k];
        const struct spool_rcpt *sr = &job->msg->env.rcpt[job->rcpt[k]];
        const char *to = sr->addr;
        const char *status = "sent";

        switch (r->status) {
        case DLV_SENT:
            status = "sent";
            break;
        case DLV_DEFER:
            status = "deferred";
            break;
        case DLV_BOUNCE:
            status = "bounced";
            break;
        }
        if (r->status == DLV_BOUNCE && cf_bool(job->cf, "soft_bounce")) {
            r->status = DLV_DEFER; /* kept queued, as Postfix does */
            status = "SOFTBOUNCE";
        }
        log_safe(to, strlen(to), safe_to, sizeof(safe_to));
        log_safe(r->text ? r->text : "", r->text ? strlen(r->text) : 0,
                 safe_text, sizeof(safe_text));
        log_info_as("local",
                    "%s: to=<%s>%s, relay=local, delay=%s, "
                    "delays=%s/0/0/%s, dsn=%s, status=%s (%s)",
                    job->msg->env.id, safe_to,
                    dlv_orig_to(sr, orig, sizeof(orig)),
                    dlv_fmt_delay(c->end - arrival, d, sizeof(d)),
                    dlv_fmt_delay(c->start - arrival, a, sizeof(a)),
                    dlv_fmt_delay(c->end - c->start, dd, sizeof(dd)), r->dsn,
                    status, safe_text);
    }
    free(c->hostname);
    free(c->spooldir);
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
    if (!c->maildir) {
        log_warning_as("local",
                       "%s: mail_spool_directory %s is not a Maildir "
                       "(no trailing '/'): mbox delivery not supported yet",
                       job->msg->env.id, *dir ? dir : "(empty)");
        for (k = 0; k < job->nrcpt; k++)
            local_result(&job->result[k], DLV_DEFER, "4.3.0",
                         "mbox delivery not supported yet");
        wpool_post(job->pool, local_done, c);
        return;
    }
    wpool_submit(job->pool, local_work, local_done, c);
}
