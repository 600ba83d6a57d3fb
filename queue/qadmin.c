/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qadmin.c - queue operations for the admin tool (postqueue/postsuper).
 * Works on the queue directory directly (spool.h), with or without a live
 * queue manager: files are renamed between queues, and the queue manager
 * is woken with a datagram afterwards. A message that vanishes or moves
 * while we act on it (the queue manager is working too) is looked up once
 * more, then skipped quietly.
 * Owns: nothing beyond the call. Threads: the CLI only (blocking I/O).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/xalloc.h"
#include "queue/qadmin.h"
#include "queue/spool.h"

/* The queues that hold live mail (corrupt/ is not one of them). */
static const char *const qadmin_live[] = {"incoming", "active", "deferred",
                                          "hold", NULL};

struct qadmin_ent {
    const char *queue; /* one of the static queue names */
    char id[SPOOL_ID_SIZE];
};

struct qadmin_set {
    struct qadmin_ent *v;
    size_t n, alloc;
};

/* Append a reason to err ("; " between several). */
static void __attribute__((format(printf, 2, 3)))
qadmin_err(struct buf *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    if (buf_len(err) > 0)
        buf_puts(err, "; ");
    va_start(ap, fmt);
    buf_vprintf(err, fmt, ap);
    va_end(ap);
}

static int
qadmin_is_id(const char *s)
{
    size_t i;

    for (i = 0; i < SPOOL_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return s[SPOOL_ID_LEN] == '\0';
}

static char *
qadmin_path(const char *qdir, const char *queue, const char *id)
{
    struct buf *b = buf_new(128, BUF_NOCAP);
    char *p;

    buf_printf(b, "%s/%s/%s", qdir, queue, id);
    p = xstrdup(buf_data(b));
    buf_free(b);
    return p;
}

static void
qadmin_set_add(struct qadmin_set *s, const char *queue, const char *id)
{
    if (s->n == s->alloc) {
        s->alloc = s->alloc ? s->alloc * 2 : 16;
        s->v = xrealloc(s->v, s->alloc * sizeof(*s->v));
    }
    s->v[s->n].queue = queue;
    memcpy(s->v[s->n].id, id, SPOOL_ID_SIZE);
    s->n++;
}

static int
qadmin_ent_cmp(const void *a, const void *b)
{
    const struct qadmin_ent *x = a, *y = b;
    int c = strcmp(x->id, y->id);

    return c != 0 ? c : strcmp(x->queue, y->queue);
}

/* Add every message file of one queue to s. 0 or -1 (reason in err). */
static int
qadmin_scan(const char *qdir, const char *queue, struct qadmin_set *s,
            struct buf *err)
{
    char *path = qadmin_path(qdir, queue, "");
    struct dirent *de;
    DIR *d;

    d = opendir(path);
    if (d == NULL) {
        qadmin_err(err, "open %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    while ((de = readdir(d)) != NULL)
        if (qadmin_is_id(de->d_name)) /* temp files start with '.' */
            qadmin_set_add(s, queue, de->d_name);
    closedir(d);
    free(path);
    return 0;
}

/* Every message of the given queues, sorted by ID. */
static int
qadmin_scan_all(const char *qdir, const char *const *queues,
                struct qadmin_set *s, struct buf *err)
{
    size_t i;

    for (i = 0; queues[i] != NULL; i++)
        if (qadmin_scan(qdir, queues[i], s, err) < 0)
            return -1;
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), qadmin_ent_cmp);
    return 0;
}

/* Send a datagram to the queue manager: 0, or -1 (errno). */
static int
qadmin_send(const char *qdir, const char *msg)
{
    struct sockaddr_un sun;
    int fd, r, saved;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if ((size_t) snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/public/qmgr",
                          qdir)
        >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    r = sendto(fd, msg, strlen(msg), MSG_DONTWAIT, (struct sockaddr *) &sun,
               sizeof(sun))
                < 0
            ? -1
            : 0;
    saved = errno;
    close(fd);
    errno = saved;
    return r;
}

static void
qadmin_time(long long usec, const char *fmt, char *out, size_t outsz)
{
    time_t t = (time_t) (usec / 1000000);
    struct tm tm;

    if (localtime_r(&t, &tm) == NULL || strftime(out, outsz, fmt, &tm) == 0)
        snprintf(out, outsz, "??");
}

static const char *
qadmin_status_name(enum spool_rcpt_status st)
{
    switch (st) {
    case SPOOL_RCPT_PENDING:
        return "pending";
    case SPOOL_RCPT_SENT:
        return "sent";
    case SPOOL_RCPT_BOUNCED:
        return "bounced";
    case SPOOL_RCPT_EXPIRED:
        return "expired";
    }
    return "unknown";
}

/* Length of a valid UTF-8 sequence at p (n bytes left), or 0. */
static size_t
qadmin_utf8_len(const unsigned char *p, size_t n)
{
    size_t len, i;
    unsigned int cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2, cp = p[0] & 0x1f;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3, cp = p[0] & 0x0f;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4, cp = p[0] & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* A JSON string: quotes, escapes, invalid UTF-8 as U+FFFD. */
static int
qadmin_json_str(struct buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t n = strlen(s), i = 0;
    int r = buf_putc(out, '"');

    while (r == 0 && i < n) {
        unsigned char c = p[i];
        size_t l;
        switch (c) {
        case '"':
            r = buf_puts(out, "\\\"");
            i++;
            continue;
        case '\\':
            r = buf_puts(out, "\\\\");
            i++;
            continue;
        case '\n':
            r = buf_puts(out, "\\n");
            i++;
            continue;
        case '\r':
            r = buf_puts(out, "\\r");
            i++;
            continue;
        case '\t':
            r = buf_puts(out, "\\t");
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            r = buf_printf(out, "\\u%04x", c);
            i++;
        } else if ((l = qadmin_utf8_len(p + i, n - i)) == 0) {
            r = buf_puts(out, "\\ufffd");
            i++;
        } else {
            r = buf_append(out, p + i, l);
            i += l;
        }
    }
    return r == 0 ? buf_putc(out, '"') : -1;
}

static int
qadmin_list_json(struct buf *out, const char *queue, const struct spool_env *e)
{
    size_t i;
    int r = 0;

    r |= buf_puts(out, "{\"queue_name\": ");
    r |= qadmin_json_str(out, queue);
    r |= buf_puts(out, ", \"queue_id\": ");
    r |= qadmin_json_str(out, e->id);
    r |= buf_printf(out, ", \"arrival_time\": %lld, \"message_size\": %lld",
                    e->arrival / 1000000, e->size);
    r |= buf_puts(out, ", \"sender\": ");
    r |= qadmin_json_str(out, e->sender);
    if (e->hold_reason != NULL) {
        r |= buf_puts(out, ", \"hold_reason\": ");
        r |= qadmin_json_str(out, e->hold_reason);
    }
    r |= buf_puts(out, ", \"recipients\": [");
    for (i = 0; i < e->nrcpt; i++) {
        r |= buf_puts(out, i > 0 ? ", {\"address\": " : "{\"address\": ");
        r |= qadmin_json_str(out, e->rcpt[i].addr);
        r |= buf_printf(out, ", \"status\": \"%s\"}",
                        qadmin_status_name(e->rcpt[i].status));
    }
    r |= buf_puts(out, "]}\n");
    return r;
}

static int
qadmin_list_text(struct buf *out, const char *queue, const struct spool_env *e)
{
    char when[64];
    char flag = ' ';
    int indent, r = 0;
    size_t i;

    if (strcmp(queue, "active") == 0)
        flag = '*';
    else if (strcmp(queue, "hold") == 0)
        flag = '!';
    qadmin_time(e->arrival, "%a %b %e %H:%M:%S", when, sizeof(when));
    r |= buf_printf(out, "%s%c %8lld %-20s %s\n", e->id, flag, e->size, when,
                    *e->sender ? e->sender : "MAILER-DAEMON");
    /* Recipients line up under the sender. */
    indent = SPOOL_ID_LEN + 1 + 1 + 8 + 1 + 20 + 1;
    for (i = 0; i < e->nrcpt; i++)
        if (e->rcpt[i].status == SPOOL_RCPT_PENDING)
            r |= buf_printf(out, "%*s%s\n", indent, "", e->rcpt[i].addr);
    return r;
}

int
qadmin_list(const char *qdir, int json, struct buf *out, struct buf *err)
{
    struct qadmin_set s = {NULL, 0, 0};
    struct buf *rerr = buf_new(256, 4096);
    long long total = 0;
    int count = 0, r = 0;
    size_t i;

    if (qadmin_scan_all(qdir, qadmin_live, &s, err) < 0)
        goto fail;
    for (i = 0; i < s.n; i++) {
        char *path = qadmin_path(qdir, s.v[i].queue, s.v[i].id);
        struct spool_msg *m = spool_read(path, rerr);
        free(path);
        if (m == NULL)
            continue; /* gone, or corrupt: not listed */
        if (!json && count == 0)
            r |= buf_puts(out, "-Queue ID-  --Size-- ----Arrival Time---- "
                               "-Sender/Recipient-------\n");
        else if (!json)
            r |= buf_putc(out, '\n');
        if (json)
            r |= qadmin_list_json(out, s.v[i].queue, &m->env);
        else
            r |= qadmin_list_text(out, s.v[i].queue, &m->env);
        total += m->env.size;
        count++;
        spool_msg_free(m);
        if (r != 0)
            break;
    }
    if (!json && count == 0)
        r |= buf_puts(out, "Mail queue is empty\n");
    else if (!json)
        r |= buf_printf(out, "\n-- %lld Kbytes in %d Request%s.\n",
                        total / 1024, count, count == 1 ? "" : "s");
    if (r != 0) {
        qadmin_err(err, "queue listing too large");
        goto fail;
    }
    free(s.v);
    buf_free(rerr);
    return count;
fail:
    free(s.v);
    buf_free(rerr);
    return -1;
}

/* One action on one message: 1 done, 0 nothing to do, -1 errno. */
typedef int (*qadmin_fn)(const char *qdir, const char *queue, const char *id);

static int
qadmin_touch(const char *qdir, const char *queue, const char *id)
{
    char *path = qadmin_path(qdir, queue, id);
    int r = utimensat(AT_FDCWD, path, NULL, 0);

    free(path);
    return r;
}

static int
qadmin_do_delete(const char *qdir, const char *queue, const char *id)
{
    char *path = qadmin_path(qdir, queue, id);
    int r = unlink(path);

    free(path);
    return r < 0 ? -1 : 1;
}

static int
qadmin_do_hold(const char *qdir, const char *queue, const char *id)
{
    if (strcmp(queue, "hold") == 0 || strcmp(queue, "corrupt") == 0)
        return 0;
    return spool_move(qdir, id, queue, "hold") < 0 ? -1 : 1;
}

static int
qadmin_do_release(const char *qdir, const char *queue, const char *id)
{
    if (strcmp(queue, "hold") != 0)
        return 0;
    if (spool_move(qdir, id, "hold", "deferred") < 0)
        return -1;
    /* Due at once; a vanished file is the queue manager's doing. */
    if (qadmin_touch(qdir, "deferred", id) < 0 && errno != ENOENT)
        return -1;
    return 1;
}

/* A file in corrupt/ goes back only if it parses now (it may have been
 * put there for a reason that has passed, or repaired by hand). */
static int
qadmin_uncorrupt(const char *qdir, const char *id)
{
    char *path = qadmin_path(qdir, "corrupt", id);
    struct buf *why = buf_new(128, 1024); /* spool_read's; errno says it */
    struct spool_msg *m = spool_read(path, why);

    free(path);
    buf_free(why);
    if (m == NULL)
        return -1; /* EBADMSG: corrupt still */
    spool_msg_free(m);
    return spool_move(qdir, id, "corrupt", "incoming");
}

static int
qadmin_do_requeue(const char *qdir, const char *queue, const char *id)
{
    if (strcmp(queue, "corrupt") == 0) {
        if (qadmin_uncorrupt(qdir, id) < 0)
            return -1;
        queue = "incoming";
    }
    if (strcmp(queue, "incoming") != 0
        && spool_move(qdir, id, queue, "incoming") < 0)
        return -1;
    if (qadmin_touch(qdir, "incoming", id) < 0 && errno != ENOENT)
        return -1;
    return 1;
}

/* Apply fn to the named messages, or with "ALL" to every message of
 * all_queues. Returns the count, or -1 if any ID failed. */
static int
qadmin_each(const char *qdir, char *const *ids, const char *const *all_queues,
            qadmin_fn fn, const char *verb, struct buf *err)
{
    struct qadmin_set s = {NULL, 0, 0};
    int count = 0, bad = 0;
    size_t i;

    for (; ids != NULL && *ids != NULL; ids++) {
        const char *q;
        if (strcmp(*ids, "ALL") == 0) {
            if (qadmin_scan_all(qdir, all_queues, &s, err) < 0)
                bad = 1;
            continue;
        }
        if (!qadmin_is_id(*ids)) {
            qadmin_err(err, "%.64s: bad queue ID", *ids);
            bad = 1;
            continue;
        }
        if ((q = spool_locate(qdir, *ids)) == NULL) {
            qadmin_err(err, "%s: no such message", *ids);
            bad = 1;
            continue;
        }
        qadmin_set_add(&s, q, *ids);
    }
    for (i = 0; i < s.n; i++) {
        const char *q = s.v[i].queue;
        int r = fn(qdir, q, s.v[i].id);
        /* Moved by the queue manager meanwhile: look once more. */
        if (r < 0 && errno == ENOENT
            && (q = spool_locate(qdir, s.v[i].id)) != NULL)
            r = fn(qdir, q, s.v[i].id);
        if (r < 0 && errno != ENOENT) {
            qadmin_err(err, "%s: %s: %s", s.v[i].id, verb, strerror(errno));
            bad = 1;
        } else if (r > 0) {
            count++;
        }
    }
    free(s.v);
    return bad ? -1 : count;
}

int
qadmin_delete(const char *qdir, char *const *ids, struct buf *err)
{
    int n =
        qadmin_each(qdir, ids, qadmin_live, qadmin_do_delete, "delete", err);

    spool_notify(qdir, "N");
    return n;
}

int
qadmin_hold(const char *qdir, char *const *ids, struct buf *err)
{
    static const char *const from[] = {"incoming", "active", "deferred", NULL};
    int n = qadmin_each(qdir, ids, from, qadmin_do_hold, "hold", err);

    spool_notify(qdir, "N");
    return n;
}

int
qadmin_release(const char *qdir, char *const *ids, struct buf *err)
{
    static const char *const from[] = {"hold", NULL};
    int n = qadmin_each(qdir, ids, from, qadmin_do_release, "release", err);

    spool_notify(qdir, "F");
    return n;
}

int
qadmin_requeue(const char *qdir, char *const *ids, struct buf *err)
{
    int n =
        qadmin_each(qdir, ids, qadmin_live, qadmin_do_requeue, "requeue", err);

    spool_notify(qdir, "N");
    return n;
}

static int
qadmin_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t) w;
    }
    return 0;
}

static void
qadmin_cat_env(struct buf *b, const char *queue, const struct spool_env *e)
{
    char when[64];
    size_t i;

    qadmin_time(e->arrival, "%a %b %e %H:%M:%S %Y", when, sizeof(when));
    buf_printf(b, "*** ENVELOPE RECORDS %s ***\n", e->id);
    buf_printf(b, "queue_name: %s\n", queue);
    buf_printf(b, "message_size: %lld\n", e->size);
    buf_printf(b, "message_arrival_time: %s\n", when);
    buf_printf(b, "client_name: %s\n", e->client_name);
    buf_printf(b, "client_address: %s\n", e->client_addr);
    buf_printf(b, "client_port: %d\n", e->client_port);
    if (e->helo != NULL)
        buf_printf(b, "helo_name: %s\n", e->helo);
    buf_printf(b, "protocol_name: %s\n", e->proto);
    if (e->body_type != NULL)
        buf_printf(b, "body_type: %s\n", e->body_type);
    if (e->hold_reason != NULL)
        buf_printf(b, "hold_reason: %s\n", e->hold_reason);
    buf_printf(b, "sender: %s\n", e->sender);
    for (i = 0; i < e->nrcpt; i++) {
        if (e->rcpt[i].orcpt != NULL)
            buf_printf(b, "dsn_orig_rcpt: %s\n", e->rcpt[i].orcpt);
        if (e->rcpt[i].orig != NULL)
            buf_printf(b, "original_recipient: %s\n", e->rcpt[i].orig);
        buf_printf(b, "recipient: %s (%s)\n", e->rcpt[i].addr,
                   qadmin_status_name(e->rcpt[i].status));
    }
    buf_printf(b, "*** MESSAGE CONTENTS %s ***\n", e->id);
}

int
qadmin_cat(const char *qdir, const char *id, int fd, struct buf *err)
{
    struct buf *b = NULL, *rerr = buf_new(256, 4096);
    struct spool_msg *m = NULL;
    const char *q;
    char *path = NULL;
    off_t off, end;
    int tries, last = '\n';

    if (!qadmin_is_id(id)) {
        qadmin_err(err, "%.64s: bad queue ID", id);
        goto fail;
    }
    for (tries = 0; tries < 2 && m == NULL; tries++) {
        if ((q = spool_locate(qdir, id)) == NULL) {
            qadmin_err(err, "%s: no such message", id);
            goto fail;
        }
        free(path);
        path = qadmin_path(qdir, q, id);
        m = spool_read(path, rerr);
        if (m == NULL && errno != ENOENT) {
            qadmin_err(err, "%s", buf_data(rerr));
            goto fail;
        }
    }
    if (m == NULL) {
        qadmin_err(err, "%s: no such message", id);
        goto fail;
    }
    b = buf_new(65536, BUF_NOCAP);
    qadmin_cat_env(b, q, &m->env);
    if (qadmin_write_all(fd, buf_data(b), buf_len(b)) < 0)
        goto wfail;
    end = m->content_off + m->content_len;
    for (off = m->content_off; off < end;) {
        size_t want = end - off > 65536 ? 65536 : (size_t) (end - off);
        char *p;
        ssize_t n;
        buf_reset(b);
        p = buf_reserve(b, want);
        n = pread(m->fd, p, want, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            qadmin_err(err, "read %s: %s", path,
                       n < 0 ? strerror(errno) : "file shrank");
            goto fail;
        }
        if (qadmin_write_all(fd, p, (size_t) n) < 0)
            goto wfail;
        last = p[n - 1];
        off += n;
    }
    buf_reset(b);
    buf_printf(b, "%s*** END OF MESSAGE ***\n", last == '\n' ? "" : "\n");
    if (qadmin_write_all(fd, buf_data(b), buf_len(b)) < 0)
        goto wfail;
    buf_free(b);
    buf_free(rerr);
    spool_msg_free(m);
    free(path);
    return 1;
wfail:
    qadmin_err(err, "write: %s", strerror(errno));
fail:
    buf_free(b);
    buf_free(rerr);
    spool_msg_free(m);
    free(path);
    return -1;
}

int
qadmin_flush(const char *qdir, struct buf *err)
{
    static const char *const deferred[] = {"deferred", NULL};
    struct qadmin_set s = {NULL, 0, 0};
    int count;
    size_t i;

    if (qadmin_scan_all(qdir, deferred, &s, err) < 0) {
        free(s.v);
        return -1;
    }
    count = (int) s.n;
    if (qadmin_send(qdir, "F") < 0
        && (errno == ECONNREFUSED || errno == ENOENT || errno == ENOTSOCK
            || errno == ENAMETOOLONG)) {
        /* No queue manager: make every deferred message due now, so the
         * next start retries them. */
        for (i = 0; i < s.n; i++)
            if (qadmin_touch(qdir, "deferred", s.v[i].id) < 0
                && errno == ENOENT)
                count--;
    }
    free(s.v);
    return count;
}
