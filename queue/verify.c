/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * verify.c - the address verification service (see verify.h): the
 * socket and its connections (each request is answered at once from the
 * cache, so a connection holds no state but its buffers), the cache, and
 * the decision of when to probe, after Postfix's verify(8).
 * Owns: the listening socket, connections, entries. Threads: the loop's.
 */
#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/hash.h"
#include "lib/log.h"
#include "lib/wpool.h"
#include "lib/xalloc.h"
#include "queue/verify.h"

#define VERIFY_HASH     4096  /* buckets */
#define VERIFY_IDLE     600.0 /* seconds a silent connection is kept */
#define VERIFY_ADDR_MAX 1024  /* bytes of an address, with the NUL */
#define VERIFY_OUT_MAX  65536 /* answers not yet read by their client */

struct verify_entry {
    char *addr;
    enum verify_status status;
    long long probed;  /* when a probe was sent; 0: none out */
    long long updated; /* when a probe's outcome came in; 0: never */
    char *text;
    struct verify_entry *next;
};

struct verify_conn {
    struct verify *v;
    int fd;
    ev_io io;
    ev_timer idle;
    struct buf *in, *out;
    struct verify_conn *next, *prev;
};

struct verify {
    struct ev_loop *loop;
    int fd;
    char *path;
    ev_io accept_w;
    ev_timer purge_t;
    verify_probe_fn *probe;
    void *arg;
    long long pos_exp, pos_try, neg_exp, neg_try;
    int neg_cache;
    long long pending_limit;
    long long pending;
    struct verify_entry *hash[VERIFY_HASH];
    size_t n;
    struct verify_conn *conns;
    size_t nconns;
    struct wpool *pool; /* the saves */
    char *map;          /* address_verify_map's file (".db"), or NULL */
    int dbtype;         /* its DB_BTREE or DB_HASH */
    ev_timer save_t;
    int dirty;  /* changed since the last save began */
    int saving; /* a save is in the pool */
};

/* A snapshot of the cache for the pool to write: "key\0value\0"... */
struct verify_save {
    struct verify *v;
    char *file;
    int dbtype;
    struct buf *data;
    size_t n;
    char err[256];
};

static long long
verify_time(void)
{
    return (long long) time(NULL);
}

long long (*verify_clock)(void) = verify_time;
double verify_save_interval = VERIFY_SAVE_INTERVAL;

static const char *const verify_names[] = {"ok", "defer", "bounce", "todo"};

const char *
verify_status_name(enum verify_status st)
{
    return (unsigned) st < 4 ? verify_names[st] : "todo";
}

int
verify_status_parse(const char *s)
{
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(verify_names[i]);

        if (strncmp(s, verify_names[i], n) == 0
            && (s[n] == '\0' || s[n] == ' '))
            return i;
    }
    return -1;
}

int
verify_parse_request(const char *buf, size_t len, char *addr, size_t addrsz,
                     size_t *used)
{
    size_t o = 0;
    int verify = 0;

    addr[0] = '\0';
    while (o < len) {
        const char *nl = memchr(buf + o, '\n', len - o);
        const char *l = buf + o;
        size_t n;

        if (nl == NULL)
            break;
        n = (size_t) (nl - l);
        if (n > 0 && l[n - 1] == '\r')
            n--;
        if (memchr(l, '\0', n) || memchr(l, '\r', n))
            return -1; /* a NUL, or a CR that does not end the line */
        if (n == 0) {  /* the empty line ends the request */
            if (!verify || addr[0] == '\0')
                return -1;
            *used = (size_t) (nl - buf) + 1;
            return 1;
        }
        if (memchr(l, '=', n) == NULL)
            return -1;
        if (n == 14 && memcmp(l, "request=verify", 14) == 0)
            verify = 1;
        else if (n > 8 && memcmp(l, "address=", 8) == 0) {
            if (n - 8 >= addrsz)
                return -1;
            memcpy(addr, l + 8, n - 8);
            addr[n - 8] = '\0';
        }
        o = (size_t) (nl - buf) + 1;
    }
    return len >= VERIFY_REQUEST_MAX ? -1 : 0;
}

/* ---- the cache ---- */

static unsigned
verify_hash(const char *s)
{
    return hash_fnv1a(HASH_FNV_INIT, s) % VERIFY_HASH;
}

static struct verify_entry **
verify_slot(struct verify *v, const char *addr)
{
    struct verify_entry **pp = &v->hash[verify_hash(addr)];

    while (*pp && strcmp((*pp)->addr, addr) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void
verify_entry_free(struct verify_entry *e)
{
    free(e->addr);
    free(e->text);
    free(e);
}

static void
verify_unlink(struct verify *v, struct verify_entry **pp)
{
    struct verify_entry *e = *pp;

    *pp = e->next;
    verify_entry_free(e);
    v->n--;
    v->dirty = 1;
}

static int
verify_expired(const struct verify *v, const struct verify_entry *e,
               long long now)
{
    if (e->status == VERIFY_OK)
        return e->updated + v->pos_exp < now;
    return e->updated + v->neg_exp < now;
}

/* Drop expired entries, no probe out for them. */
static void
verify_purge(struct verify *v, long long now)
{
    for (size_t b = 0; b < VERIFY_HASH; b++)
        for (struct verify_entry **pp = &v->hash[b]; *pp;) {
            if (now - (*pp)->probed > VERIFY_PROBE_TTL
                && verify_expired(v, *pp, now))
                verify_unlink(v, pp);
            else
                pp = &(*pp)->next;
        }
}

static int
verify_cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *) a, y = *(const long long *) b;

    return (x > y) - (x < y);
}

/* Room for one more entry: expired ones go, then, when that is not
 * enough, the least recently updated sixteenth of the cache at once, so
 * that the walks over it run once per VERIFY_CACHE_MAX / 16 new
 * addresses, not for each (a client trying random recipients fills it). */
static void
verify_room(struct verify *v, long long now)
{
    long long *u, cut;
    size_t k = 0;

    if (v->n < VERIFY_CACHE_MAX)
        return;
    verify_purge(v, now);
    if (v->n < VERIFY_CACHE_MAX)
        return;
    u = xmalloc(v->n * sizeof(*u));
    for (size_t b = 0; b < VERIFY_HASH; b++)
        for (const struct verify_entry *e = v->hash[b]; e; e = e->next)
            u[k++] = e->updated;
    qsort(u, k, sizeof(*u), verify_cmp_ll);
    cut = u[k / 16];
    free(u);
    for (size_t b = 0; b < VERIFY_HASH; b++)
        for (struct verify_entry **pp = &v->hash[b]; *pp;) {
            if ((*pp)->updated <= cut)
                verify_unlink(v, pp);
            else
                pp = &(*pp)->next;
        }
}

static void
verify_put(struct verify *v, const char *addr, enum verify_status st,
           long long probed, long long updated, const char *text)
{
    struct verify_entry **pp = verify_slot(v, addr), *e = *pp;

    if (e == NULL) {
        verify_room(v, verify_clock());
        pp = verify_slot(v, addr); /* the room may have moved it */
        e = xcalloc(1, sizeof(*e));
        e->addr = xstrdup(addr);
        *pp = e;
        v->n++;
    }
    v->dirty = 1;
    e->status = st;
    e->probed = probed;
    e->updated = updated;
    if (e->text == NULL || strcmp(e->text, text) != 0) {
        free(e->text);
        e->text = xstrndup(text, VERIFY_TEXT_MAX - 1);
    }
}

void
verify_result(struct verify *v, const char *addr, enum verify_status st,
              const char *text)
{
    struct verify_entry *e = *verify_slot(v, addr);

    if (v->pending > 0)
        v->pending--;
    if (st == VERIFY_TODO)
        return;
    /* Postfix: a failed probe does not clobber an ok entry before it
     * expires; the address is probed again on the next query */
    if (st != VERIFY_OK && e && e->status == VERIFY_OK) {
        e->probed = 0;
        return;
    }
    verify_put(v, addr, st, 0, verify_clock(), text);
}

/* The answer to a query for addr into out ("STATUS TEXT"); a probe is
 * started when the entry needs one. -1 when out is full (a client that
 * sends and does not read). */
static int
verify_query(struct verify *v, const char *addr, struct buf *out)
{
    long long now = verify_clock();
    struct verify_entry **pp = verify_slot(v, addr), *e = *pp;
    enum verify_status st;
    long long probed, updated;
    char *text;
    int refresh, rc;

    if (e == NULL
        || (now - e->probed > VERIFY_PROBE_TTL && verify_expired(v, e, now))) {
        st = VERIFY_TODO;
        probed = updated = 0;
        text = xstrdup("Address verification in progress");
        if (e && !v->neg_cache) {
            verify_unlink(v, pp);
            e = NULL;
        }
    } else {
        st = e->status;
        probed = e->probed;
        updated = e->updated;
        text = xstrdup(e->text);
    }
    refresh = st == VERIFY_OK ? updated + v->pos_try < now
                              : updated + v->neg_try < now;
    if (now - probed <= VERIFY_PROBE_TTL || !refresh)
        ; /* the answer as it is */
    else if (v->pending >= v->pending_limit)
        log_warning("verify: address_verify_pending_request_limit %lld "
                    "reached; %s not probed",
                    v->pending_limit, addr);
    else {
        struct verify_entry *f;

        /* the probe is out from now on: one per VERIFY_PROBE_TTL; an
         * entry that has none yet is made (a todo one), so that the next
         * query does not probe again */
        verify_put(v, addr, st, now, updated, text);
        v->pending++;
        rc = v->probe(v->arg, addr);
        f = *verify_slot(v, addr);
        if (rc < 0) {
            v->pending--;
            if (f)
                f->probed = 0;
        } else if (f && f->probed == 0 && f->updated == now
                   && f->status != VERIFY_TODO) {
            /* an outcome known without a connection (local mail, no
             * route) came back from inside the call: it is the answer */
            st = f->status;
            free(text);
            text = xstrdup(f->text);
        }
    }
    rc = buf_printf(out, "action=%s %s\n\n", verify_status_name(st), text);
    free(text);
    return rc < 0 ? -1 : 0;
}

/* ---- address_verify_map ---- */

int
verify_entry_format(char *out, size_t n, enum verify_status st,
                    long long probed, long long updated, const char *text)
{
    int k =
        snprintf(out, n, "%d:%lld:%lld:%s", (int) st, probed, updated, text);

    return k < 0 || (size_t) k >= n ? -1 : k;
}

int
verify_entry_parse(const char *s, enum verify_status *st, long long *probed,
                   long long *updated, const char **text)
{
    long long f[3];
    const char *p = s;

    for (int i = 0; i < 3; i++) {
        size_t d = strspn(p, "0123456789");

        if (d == 0 || d > 18 || p[d] != ':')
            return -1;
        f[i] = strtoll(p, NULL, 10);
        p += d + 1;
    }
    if (f[0] > VERIFY_TODO || (f[1] == 0 && f[2] == 0))
        return -1; /* Postfix: such records are never written */
    *st = (enum verify_status) f[0];
    *probed = f[1];
    *updated = f[2];
    *text = p;
    return 0;
}

/* The map as it was saved: every entry that has not expired. A missing
 * file is an empty cache; a bad entry is skipped with a warning. */
static int
verify_load(struct verify *v, struct buf *err)
{
    long long now = verify_clock();
    DB *db = NULL;
    DBC *cur = NULL;
    DBT k, d;
    int rc, r = -1;
    size_t bad = 0;

    if (access(v->map, F_OK) < 0 && errno == ENOENT)
        return 0;
    if ((rc = db_create(&db, NULL, 0)) != 0) {
        buf_printf(err, "%s: %s", v->map, db_strerror(rc));
        return -1;
    }
    if ((rc = db->open(db, NULL, v->map, NULL, v->dbtype, DB_RDONLY, 0)) != 0
        || (rc = db->cursor(db, NULL, &cur, 0)) != 0) {
        buf_printf(err, "address_verify_map: cannot open %s: %s", v->map,
                   db_strerror(rc));
        goto done;
    }
    memset(&k, 0, sizeof(k));
    memset(&d, 0, sizeof(d));
    while ((rc = cur->get(cur, &k, &d, DB_NEXT)) == 0
           && v->n < VERIFY_CACHE_MAX) {
        char key[VERIFY_ADDR_MAX], val[VERIFY_TEXT_MAX + 64];
        size_t kl = k.size, dl = d.size;
        enum verify_status st;
        long long probed, updated;
        const char *text;

        if (kl > 0 && ((const char *) k.data)[kl - 1] == '\0')
            kl--;
        if (dl > 0 && ((const char *) d.data)[dl - 1] == '\0')
            dl--;
        if (kl == 0 || kl >= sizeof(key) || dl >= sizeof(val)
            || memchr(k.data, '\0', kl) || memchr(d.data, '\0', dl)) {
            bad++;
            continue;
        }
        memcpy(key, k.data, kl);
        key[kl] = '\0';
        memcpy(val, d.data, dl);
        val[dl] = '\0';
        if (key[0] == '_') /* Postfix's cache bookkeeping */
            continue;
        if (verify_entry_parse(val, &st, &probed, &updated, &text) < 0) {
            bad++;
            continue;
        }
        if (now - probed > VERIFY_PROBE_TTL) {
            struct verify_entry tmp = {.status = st, .updated = updated};

            if (verify_expired(v, &tmp, now))
                continue;
        }
        verify_put(v, key, st, probed, updated, text);
    }
    if (rc != 0 && rc != DB_NOTFOUND) {
        buf_printf(err, "address_verify_map: %s: %s", v->map, db_strerror(rc));
        goto done;
    }
    if (bad)
        log_warning("verify: %s: %zu bad address verification entries "
                    "skipped",
                    v->map, bad);
    log_info("verify: %zu address verification answers from %s", v->n, v->map);
    v->dirty = 0;
    r = 0;
done:
    if (cur)
        cur->close(cur);
    db->close(db, 0);
    return r;
}

/* Pool (or at the end, the caller): write the snapshot to FILE.tmp, then
 * rename it over the map. */
static void
verify_save_work(void *arg)
{
    struct verify_save *sv = arg;
    char *tmp = xmalloc(strlen(sv->file) + 8);
    const char *p = buf_data(sv->data);
    DB *db = NULL;
    int rc, fd;

    sprintf(tmp, "%s.tmp", sv->file);
    unlink(tmp);
    if ((rc = db_create(&db, NULL, 0)) != 0) {
        snprintf(sv->err, sizeof(sv->err), "%s", db_strerror(rc));
        db = NULL;
        goto out;
    }
    if ((rc = db->open(db, NULL, tmp, NULL, (DBTYPE) sv->dbtype,
                       DB_CREATE | DB_EXCL, 0600))
        != 0) {
        snprintf(sv->err, sizeof(sv->err), "cannot create %s: %s", tmp,
                 db_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < sv->n; i++) {
        DBT dk, dv;
        size_t kl = strlen(p) + 1, vl;

        memset(&dk, 0, sizeof(dk));
        memset(&dv, 0, sizeof(dv));
        dk.data = (void *) p;
        dk.size = (u_int32_t) kl;
        vl = strlen(p + kl) + 1;
        dv.data = (void *) (p + kl);
        dv.size = (u_int32_t) vl;
        if ((rc = db->put(db, NULL, &dk, &dv, 0)) != 0) {
            snprintf(sv->err, sizeof(sv->err), "%s: %s", tmp, db_strerror(rc));
            goto out;
        }
        p += kl + vl;
    }
    rc = db->close(db, 0);
    db = NULL;
    if (rc != 0) {
        snprintf(sv->err, sizeof(sv->err), "%s: %s", tmp, db_strerror(rc));
        goto out;
    }
    /* durable before it replaces the old one */
    if ((fd = open(tmp, O_RDONLY | O_CLOEXEC)) >= 0) {
        (void) fdatasync(fd);
        close(fd);
    }
    if (rename(tmp, sv->file) < 0)
        snprintf(sv->err, sizeof(sv->err), "rename %s: %s", tmp,
                 strerror(errno));
out:
    if (db)
        db->close(db, 0);
    if (sv->err[0])
        unlink(tmp);
    free(tmp);
}

static void
verify_save_free(struct verify_save *sv)
{
    if (sv->err[0])
        log_warning("verify: address_verify_map %s not saved: %s", sv->file,
                    sv->err);
    free(sv->file);
    buf_free(sv->data);
    free(sv);
}

static void
verify_save_done(void *arg)
{
    struct verify_save *sv = arg;

    sv->v->saving = 0;
    if (sv->err[0])
        sv->v->dirty = 1; /* try again next time */
    verify_save_free(sv);
}

/* A copy of the cache, in the map's format. */
static struct verify_save *
verify_snapshot(struct verify *v)
{
    struct verify_save *sv = xcalloc(1, sizeof(*sv));
    char val[VERIFY_TEXT_MAX + 64];

    sv->v = v;
    sv->file = xstrdup(v->map);
    sv->dbtype = v->dbtype;
    sv->data = buf_new(4096, BUF_NOCAP);
    for (size_t b = 0; b < VERIFY_HASH; b++)
        for (const struct verify_entry *e = v->hash[b]; e; e = e->next) {
            if (e->probed == 0 && e->updated == 0)
                continue;
            if (verify_entry_format(val, sizeof(val), e->status, e->probed,
                                    e->updated, e->text)
                < 0)
                continue;
            buf_append(sv->data, e->addr, strlen(e->addr) + 1);
            buf_append(sv->data, val, strlen(val) + 1);
            sv->n++;
        }
    v->dirty = 0;
    return sv;
}

static void
verify_save_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct verify *v = w->data;

    (void) loop;
    (void) revents;
    if (!v->dirty || v->saving)
        return;
    v->saving = 1;
    wpool_submit(v->pool, verify_save_work, verify_save_done,
                 verify_snapshot(v));
}

/* address_verify_map: "" (none), or [proxy:]hash:PATH, btree:PATH. */
static int
verify_map_open(struct verify *v, const char *spec, struct buf *err)
{
    if (*spec == '\0')
        return 0;
    if (strncmp(spec, "proxy:", 6) == 0)
        spec += 6;
    if (strncmp(spec, "btree:/", 7) == 0)
        v->dbtype = DB_BTREE;
    else if (strncmp(spec, "hash:/", 6) == 0)
        v->dbtype = DB_HASH;
    else {
        buf_printf(err,
                   "address_verify_map: \"%s\": not a table Sluice can "
                   "write (btree:/path or hash:/path)",
                   spec);
        return -1;
    }
    v->map = xmalloc(strlen(spec) + 4);
    sprintf(v->map, "%s.db", strchr(spec, ':') + 1);
    if (verify_load(v, err) < 0) {
        /* a cache: what could not be read is probed again, and the next
         * save replaces the file */
        log_warning("verify: %s; starting with an empty cache", buf_data(err));
        buf_reset(err);
        for (size_t b = 0; b < VERIFY_HASH; b++)
            while (v->hash[b])
                verify_unlink(v, &v->hash[b]);
        v->dirty = 1;
    }
    return 0;
}

/* ---- connections ---- */

static void
verify_conn_close(struct verify_conn *c)
{
    struct verify *v = c->v;

    ev_io_stop(v->loop, &c->io);
    ev_timer_stop(v->loop, &c->idle);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        v->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    v->nconns--;
    buf_free(c->in);
    buf_free(c->out);
    free(c);
}

/* Write what is waiting; -1 when the connection is gone. */
static int
verify_conn_flush(struct verify_conn *c)
{
    while (buf_len(c->out) > 0) {
        ssize_t n =
            send(c->fd, buf_data(c->out), buf_len(c->out), MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return -1;
        buf_consume(c->out, (size_t) n);
    }
    ev_io_stop(c->v->loop, &c->io);
    ev_io_set(&c->io, c->fd, buf_len(c->out) > 0 ? EV_WRITE : EV_READ);
    ev_io_start(c->v->loop, &c->io);
    return 0;
}

static void
verify_conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct verify_conn *c = w->data;
    char addr[VERIFY_ADDR_MAX];
    size_t used;
    int rc;

    (void) loop;
    ev_timer_again(c->v->loop, &c->idle);
    if (revents & EV_WRITE) {
        if (verify_conn_flush(c) < 0)
            verify_conn_close(c);
        return;
    }
    for (;;) {
        char *p = buf_reserve(c->in, 1024);
        ssize_t n;

        if (p == NULL) { /* over VERIFY_REQUEST_MAX unparsed */
            log_warning("verify: request over %d bytes; connection closed",
                        VERIFY_REQUEST_MAX);
            verify_conn_close(c);
            return;
        }
        n = recv(c->fd, p, 1024, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            verify_conn_close(c);
            return;
        }
        buf_commit(c->in, (size_t) n);
        while ((rc = verify_parse_request(buf_data(c->in), buf_len(c->in), addr,
                                          sizeof(addr), &used))
               == 1) {
            if (verify_query(c->v, addr, c->out) < 0) {
                log_warning("verify: a client does not read its answers; "
                            "connection closed");
                verify_conn_close(c);
                return;
            }
            buf_consume(c->in, used);
        }
        if (rc < 0) {
            log_warning("verify: malformed request; connection closed");
            verify_conn_close(c);
            return;
        }
    }
    if (verify_conn_flush(c) < 0)
        verify_conn_close(c);
}

static void
verify_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    verify_conn_close(w->data);
}

static void
verify_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct verify *v = w->data;

    (void) revents;
    for (;;) {
        int fd = accept4(v->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct verify_conn *c;

        if (fd < 0 && errno == EINTR)
            continue;
        if (fd < 0)
            return; /* EAGAIN, or no descriptor: the next wake-up */
        if (v->nconns >= VERIFY_CONN_MAX) {
            log_warning("verify: %d connections; one refused", VERIFY_CONN_MAX);
            close(fd);
            continue;
        }
        c = xcalloc(1, sizeof(*c));
        c->v = v;
        c->fd = fd;
        c->in = buf_new(1024, VERIFY_REQUEST_MAX);
        c->out = buf_new(1024, VERIFY_OUT_MAX);
        ev_io_init(&c->io, verify_conn_cb, fd, EV_READ);
        c->io.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_init(&c->idle, verify_idle_cb, 0., VERIFY_IDLE);
        c->idle.data = c;
        ev_timer_again(loop, &c->idle);
        c->next = v->conns;
        if (v->conns)
            v->conns->prev = c;
        v->conns = c;
        v->nconns++;
    }
}

static void
verify_purge_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    verify_purge(w->data, verify_clock());
}

struct verify *
verify_new(struct ev_loop *loop, struct wpool *pool, const struct cf *cf,
           const char *qdir, verify_probe_fn *probe, void *arg, struct buf *err)
{
    struct verify *v = xcalloc(1, sizeof(*v));
    struct sockaddr_un sun;
    struct buf *p = buf_new(128, BUF_NOCAP);
    long long purge = cf_time(cf, "address_verify_cache_cleanup_interval");

    v->loop = loop;
    v->pool = pool;
    v->fd = -1;
    v->probe = probe;
    v->arg = arg;
    v->pos_exp = cf_time(cf, "address_verify_positive_expire_time");
    v->pos_try = cf_time(cf, "address_verify_positive_refresh_time");
    v->neg_exp = cf_time(cf, "address_verify_negative_expire_time");
    v->neg_try = cf_time(cf, "address_verify_negative_refresh_time");
    v->neg_cache = cf_bool(cf, "address_verify_negative_cache");
    v->pending_limit = cf_int(cf, "address_verify_pending_request_limit");
    if (v->pending_limit < 1)
        v->pending_limit = 1;
    if (verify_map_open(v, cf_str(cf, "address_verify_map"), err) < 0)
        goto fail;
    if (v->map) {
        ev_timer_init(&v->save_t, verify_save_cb, verify_save_interval,
                      verify_save_interval);
        v->save_t.data = v;
        ev_timer_start(loop, &v->save_t);
    }
    buf_printf(p, "%s/public/verify", qdir);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (buf_len(p) >= sizeof(sun.sun_path)) {
        buf_printf(err, "queue_directory %s: socket path %s is too long", qdir,
                   buf_data(p));
        goto fail;
    }
    memcpy(sun.sun_path, buf_data(p), buf_len(p) + 1);
    v->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (v->fd < 0) {
        buf_printf(err, "socket: %s", strerror(errno));
        goto fail;
    }
    (void) unlink(sun.sun_path); /* a stale one from an earlier run */
    if (bind(v->fd, (struct sockaddr *) &sun, sizeof(sun)) < 0
        || listen(v->fd, 128) < 0) {
        buf_printf(err, "bind %s: %s", sun.sun_path, strerror(errno));
        goto fail;
    }
    v->path = xstrdup(buf_data(p));
    buf_free(p);
    ev_io_init(&v->accept_w, verify_accept_cb, v->fd, EV_READ);
    v->accept_w.data = v;
    ev_io_start(loop, &v->accept_w);
    if (purge > 0) {
        ev_timer_init(&v->purge_t, verify_purge_cb, (double) purge,
                      (double) purge);
        v->purge_t.data = v;
        ev_timer_start(loop, &v->purge_t);
    }
    return v;
fail:
    buf_free(p);
    verify_free(v);
    return NULL;
}

void
verify_free(struct verify *v)
{
    if (v == NULL)
        return;
    while (v->conns)
        verify_conn_close(v->conns);
    if (v->fd >= 0) {
        ev_io_stop(v->loop, &v->accept_w);
        close(v->fd);
    }
    ev_timer_stop(v->loop, &v->purge_t);
    ev_timer_stop(v->loop, &v->save_t);
    if (v->map && v->dirty && !v->saving) { /* the last answers, at once */
        struct verify_save *sv = verify_snapshot(v);

        verify_save_work(sv);
        verify_save_free(sv);
    }
    free(v->map);
    if (v->path) {
        unlink(v->path);
        free(v->path);
    }
    for (size_t b = 0; b < VERIFY_HASH; b++)
        while (v->hash[b])
            verify_unlink(v, &v->hash[b]);
    free(v);
}
