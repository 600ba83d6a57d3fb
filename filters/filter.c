/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * filter.c - the filter chain: per-filter FIFOs of stage calls, verdict
 * merging, transaction scope, backlog accounting.
 *
 * Design: a pure data structure driven by callbacks; no libev here, so the
 * chain is unit-testable without a loop.
 *  - Each filter of a session has a slot with a FIFO of calls and at most
 *    one active call (handed to ops->stage, not yet answered).
 *  - The arguments of one filter_stage() are copied once into a
 *    reference-counted stage_data shared by every filter's call; its bytes
 *    count toward the backlog until the last call holding it is gone.
 *  - A filter_stage() with a done callback creates a wait: one entry per
 *    filter, counting outstanding calls. Waits complete in the order they
 *    were created, so done callbacks run in stage order.
 *  - Re-entrancy: every public entry point brackets its work with
 *    sess_enter()/sess_leave(). Only the outermost level dispatches calls
 *    and runs done and drain callbacks (the "pump"); nested calls (an
 *    answer given inside ops->stage(), a filter_stage() or
 *    filter_sess_free() from inside a done callback) only record. A free
 *    requested while busy is carried out when the outermost level leaves.
 *    Consequence for filters: filter_answer() may run the caller's done
 *    callback, which may free the session and close the filter; when a
 *    filter answers from its own event callback, filter_answer() must be
 *    the last thing it does with its state.
 *  - Transactions are numbered (gen). ABORT and EOM end the current one;
 *    per-filter transaction state (finished, remembered verdict) is tagged
 *    with its gen, so it goes stale when the transaction ends.
 *  - The ordering rule (ops->modifies_content): at the first content stage
 *    of a transaction (HEADER, EOH, BODY or EOM; CONNECT is answered by
 *    then) the chain asks each filter still in the transaction whether it
 *    may modify content and splits the chain into groups: each such
 *    filter ends a group. Group 0 gets HEADER, EOH and BODY live; the
 *    later groups get nothing live (no queue, no backlog). At EOM group 0
 *    gets its EOM; the held-back filters hold pending entries of the EOM
 *    wait. When a group's EOMs are all answered, a REJECT, TEMPFAIL or
 *    DISCARD so far ends it (the held-back filters get ABORT); else the
 *    next group gets the message replayed: the header fields rewritten
 *    with the header modifications of the earlier groups in chain order
 *    (filter_mods_rewrite() on the header part of the queue file), split
 *    as smtpd splits them, EOH, then the body: the last earlier filter's
 *    replacement or the queue file's body, in chunks of 64 KB; then the
 *    group's EOM. Envelope modifications are not replayed. The replay is
 *    a producer run by the pump: it queues stages into the filters' FIFOs
 *    like live streaming, stops when the backlog reaches
 *    FILTER_BACKLOG_HIGH and goes on when it falls below
 *    FILTER_BACKLOG_LOW. It reads the queue file with pread() on the loop
 *    thread: the file was just written (page cache), a blocking we accept
 *    as we do for spool writes. A replay that cannot read the message
 *    answers the group's filters with tempfail.
 *  - Merging: later filters' header indexes refer to the message as the
 *    earlier filters left it, so the modifications in chain order, applied
 *    in order to the original, give the message the last filter saw. A
 *    body replacement supersedes those of earlier filters: the merged list
 *    keeps only the last replacing filter's REPLACE_BODY mods (which
 *    concatenate).
 *
 * Owns: slots, calls, stage copies, waits, reply copies, modifications.
 * Borrows: the chain and the env (must outlive the session).
 * Threads: loop thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

struct filter_ent {
    const struct filter_ops *ops;
    void *conf;
};

struct filter_chain {
    struct filter_ent *v;
    size_t n, size;
};

/* One copy of stage arguments, shared by the calls of every filter. */
struct stage_data {
    int refs;
    size_t bytes; /* counted in the backlog */
    struct filter_args a;
    char **argv;
};

enum wait_ent_state {
    WAIT_NONE,    /* not offered */
    WAIT_PENDING, /* offered, no answer yet */
    WAIT_ANSWERED,
    WAIT_SKIPPED, /* dropped: the filter finished meanwhile */
    WAIT_HELD     /* EOM of a held-back filter: not offered yet (replay) */
};

struct wait_ent {
    enum wait_ent_state state;
    enum filter_verdict verdict;
    int code;
    char *dsn;
    char *text;
    struct filter_mod *mods;
    unsigned group; /* EOM: the filter's replay group (0: live) */
};

struct replay;

/* One filter_stage() with a done callback. */
struct wait {
    enum filter_stage st;
    unsigned gen;
    filter_done_fn done;
    void *arg;
    size_t outstanding;
    struct wait_ent *ent; /* one per filter */
    struct wait *next;
    /* EOM with held-back filters: the group being run, the number of
     * groups, the message (from the env at EOM), the EOM arguments for
     * the held-back filters, the replay in progress */
    unsigned group, ngroups;
    int fd;
    off_t off, len;
    struct stage_data *eom;
    struct replay *rp;
};

struct filter_call {
    struct filter_sess *fs;
    size_t idx; /* slot */
    enum filter_stage st;
    unsigned gen;
    struct stage_data *data;
    struct wait *wait;
    struct filter_call *next;
};

struct slot {
    const struct filter_ops *ops;
    void *state; /* NULL: unavailable */
    struct filter_call *head, *tail;
    struct filter_call *active;
    int sess_done;     /* ACCEPT at CONNECT/HELO */
    unsigned mail_gen; /* transaction in which MAIL was offered */
    unsigned done_gen; /* transaction the filter finished */
    /* verdict that finished the transaction before EOM */
    unsigned rem_gen;
    enum filter_verdict rem_verdict;
    int rem_code;
    char *rem_dsn;
    char *rem_text;
    /* content plan of transaction plan_gen: 0 = gets content live; k =
     * held back behind k filters that may modify content */
    unsigned plan_gen;
    unsigned group;
};

struct filter_sess {
    struct filter_chain *ch;
    const struct filter_env *env;
    struct slot *slots;
    size_t n;
    struct wait *whead, *wtail;
    unsigned gen;
    size_t backlog;
    int high; /* backlog reached HIGH since the last drain */
    void (*drain)(void *);
    void *drain_arg;
    int busy;
    int free_req;
    unsigned plan_gen; /* transaction the content plan was made for */
    unsigned ngroups;
};

static const char *const stage_names[FILTER_NSTAGES] = {
    [FILTER_CONNECT] = "CONNECT",    [FILTER_HELO] = "HELO",
    [FILTER_MAIL] = "MAIL",          [FILTER_RCPT] = "RCPT",
    [FILTER_DATA] = "DATA",          [FILTER_HEADER] = "HEADER",
    [FILTER_EOH] = "END-OF-HEADERS", [FILTER_BODY] = "BODY",
    [FILTER_EOM] = "END-OF-MESSAGE", [FILTER_ABORT] = "ABORT",
    [FILTER_UNKNOWN] = "UNKNOWN",
};

const char *
filter_stage_name(enum filter_stage st)
{
    if ((unsigned) st >= FILTER_NSTAGES)
        return "INVALID";
    return stage_names[st];
}

const char *
filter_verdict_name(enum filter_verdict v)
{
    switch (v) {
    case FILTER_CONTINUE:
        return "continue";
    case FILTER_ACCEPT:
        return "accept";
    case FILTER_HOLD:
        return "hold";
    case FILTER_DISCARD:
        return "discard";
    case FILTER_TEMPFAIL:
        return "tempfail";
    case FILTER_REJECT:
        return "reject";
    }
    return "invalid";
}

/* Stages that belong to a mail transaction (ABORT excluded). */
static int
filter_txn_stage(enum filter_stage st)
{
    switch (st) {
    case FILTER_MAIL:
    case FILTER_RCPT:
    case FILTER_DATA:
    case FILTER_HEADER:
    case FILTER_EOH:
    case FILTER_BODY:
    case FILTER_EOM:
        return 1;
    case FILTER_CONNECT:
    case FILTER_HELO:
    case FILTER_ABORT:
    case FILTER_UNKNOWN:
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* chain */

struct filter_chain *
filter_chain_new(void)
{
    return xcalloc(1, sizeof(struct filter_chain));
}

void
filter_chain_add(struct filter_chain *ch, const struct filter_ops *ops,
                 void *conf)
{
    if (ch->n == ch->size) {
        ch->size = ch->size ? ch->size * 2 : 4;
        ch->v = xrealloc(ch->v, ch->size * sizeof(*ch->v));
    }
    ch->v[ch->n].ops = ops;
    ch->v[ch->n].conf = conf;
    ch->n++;
}

size_t
filter_chain_len(const struct filter_chain *ch)
{
    return ch->n;
}

/* Has the filter at chain v[c], entry i, the same ops and conf as one
 * earlier in v (an earlier chain, or earlier in this one)? Chains of
 * several services share filters (the one ClamAV scanner). */
static int
filter_ent_seen(struct filter_chain *const *v, size_t c, size_t i)
{
    const struct filter_ent *e = &v[c]->v[i];

    for (size_t k = 0; k <= c; k++)
        for (size_t j = 0; j < (k < c ? v[k]->n : i); j++)
            if (v[k]->v[j].ops == e->ops && v[k]->v[j].conf == e->conf)
                return 1;
    return 0;
}

void
filter_chains_start(struct filter_chain *const *v, size_t n, void *loop)
{
    struct buf *err = buf_new(256, 4096);

    for (size_t c = 0; c < n; c++) {
        for (size_t i = 0; i < v[c]->n; i++) {
            const struct filter_ops *ops = v[c]->v[i].ops;

            if (ops->start == NULL || filter_ent_seen(v, c, i))
                continue;
            buf_reset(err);
            if (ops->start(v[c]->v[i].conf, loop, err) < 0)
                log_warning("filter %s: cannot start: %s", ops->name,
                            buf_len(err) ? buf_data(err) : "unknown error");
        }
    }
    buf_free(err);
}

void
filter_chain_start(struct filter_chain *ch, void *loop)
{
    filter_chains_start(&ch, 1, loop);
}

int
filter_chains_workers(struct filter_chain *const *v, size_t n)
{
    int w, min = 0;

    for (size_t c = 0; c < n; c++) {
        for (size_t i = 0; i < v[c]->n; i++) {
            if (v[c]->v[i].ops->workers == NULL)
                continue;
            w = v[c]->v[i].ops->workers(v[c]->v[i].conf);
            if (w > 0 && (min == 0 || w < min))
                min = w;
        }
    }
    return min;
}

int
filter_chain_workers(const struct filter_chain *ch)
{
    struct filter_chain *v = (struct filter_chain *) ch;

    return filter_chains_workers(&v, 1);
}

void
filter_chains_stop(struct filter_chain *const *v, size_t n)
{
    for (size_t c = n; c > 0; c--) {
        for (size_t i = v[c - 1]->n; i > 0; i--) {
            const struct filter_ent *e = &v[c - 1]->v[i - 1];

            if (e->ops->stop && !filter_ent_seen(v, c - 1, i - 1))
                e->ops->stop(e->conf);
        }
    }
}

void
filter_chain_stop(struct filter_chain *ch)
{
    filter_chains_stop(&ch, 1);
}

void
filter_chain_free(struct filter_chain *ch)
{
    if (ch == NULL)
        return;
    free(ch->v);
    free(ch);
}

/* ------------------------------------------------------------------ */
/* stage copies, calls, waits */

static struct stage_data *
stage_data_new(const struct filter_args *args)
{
    struct stage_data *d = xcalloc(1, sizeof(*d));
    size_t i, n;

    d->refs = 0;
    if (args == NULL)
        return d;
    if (args->str)
        d->a.str = xstrdup(args->str);
    if (args->rejected)
        d->a.rejected = xstrdup(args->rejected);
    if (args->argv) {
        for (n = 0; args->argv[n]; n++)
            ;
        d->argv = xcalloc(n + 1, sizeof(char *));
        for (i = 0; i < n; i++)
            d->argv[i] = xstrdup(args->argv[i]);
        d->a.argv = d->argv;
    }
    if (args->hname) {
        d->a.hname = xstrdup(args->hname);
        d->bytes += strlen(args->hname);
    }
    if (args->hvalue) {
        d->a.hvalue = xstrdup(args->hvalue);
        d->bytes += strlen(args->hvalue);
    }
    if (args->data || args->len) {
        d->a.data = xmemdup(args->data ? args->data : "", args->len);
        d->a.len = args->len;
        d->bytes += args->len;
    }
    return d;
}

static void
stage_data_release(struct filter_sess *fs, struct stage_data *d)
{
    size_t i;

    if (--d->refs > 0)
        return;
    fs->backlog -= d->bytes;
    free((char *) d->a.str);
    free((char *) d->a.rejected);
    if (d->argv) {
        for (i = 0; d->argv[i]; i++)
            free(d->argv[i]);
        free(d->argv);
    }
    free((char *) d->a.hname);
    free((char *) d->a.hvalue);
    free((void *) d->a.data);
    free(d);
}

static void
call_free(struct filter_sess *fs, struct filter_call *c)
{
    stage_data_release(fs, c->data);
    free(c);
}

static void
wait_ent_clear(struct wait_ent *e)
{
    free(e->dsn);
    free(e->text);
    filter_mods_free(e->mods);
    e->dsn = e->text = NULL;
    e->mods = NULL;
}

static void replay_free(struct replay *rp);

static void
wait_free(struct filter_sess *fs, struct wait *w)
{
    size_t i;

    replay_free(w->rp);
    if (w->eom)
        stage_data_release(fs, w->eom);
    for (i = 0; i < fs->n; i++)
        wait_ent_clear(&w->ent[i]);
    free(w->ent);
    free(w);
}

static void
slot_forget(struct slot *s)
{
    free(s->rem_dsn);
    free(s->rem_text);
    s->rem_dsn = s->rem_text = NULL;
    s->rem_gen = 0;
}

/* The call will never be answered: release its part of a wait. */
static void
call_drop(struct filter_sess *fs, struct filter_call *c)
{
    if (c->wait) {
        c->wait->ent[c->idx].state = WAIT_SKIPPED;
        c->wait->outstanding--;
    }
    call_free(fs, c);
}

/* Append a call for slot i to its FIFO; with a wait, the slot's entry
 * becomes pending (a held entry is already counted as outstanding). */
static void
call_queue(struct filter_sess *fs, size_t i, enum filter_stage st, unsigned gen,
           struct stage_data *d, struct wait *w)
{
    struct slot *s = &fs->slots[i];
    struct filter_call *c = xcalloc(1, sizeof(*c));

    c->fs = fs;
    c->idx = i;
    c->st = st;
    c->gen = gen;
    c->data = d;
    d->refs++;
    if (w) {
        c->wait = w;
        if (w->ent[i].state != WAIT_HELD)
            w->outstanding++;
        w->ent[i].state = WAIT_PENDING;
    }
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
}

/* Drop queued calls of a slot: all of them (gen 0) or those of
 * transaction gen except ABORT. */
static void
slot_drop_queued(struct filter_sess *fs, struct slot *s, unsigned gen)
{
    struct filter_call **pp = &s->head, *c;

    s->tail = NULL;
    while ((c = *pp) != NULL) {
        if (gen == 0 || (c->gen == gen && filter_txn_stage(c->st))) {
            *pp = c->next;
            call_drop(fs, c);
        } else {
            s->tail = c;
            pp = &c->next;
        }
    }
}

/* ------------------------------------------------------------------ */
/* answers */

static void
filter_answer_internal(struct filter_sess *fs, struct filter_call *c,
                       const struct filter_reply *r)
{
    static const struct filter_reply cont = {FILTER_CONTINUE, 0, NULL, NULL,
                                             NULL};
    struct slot *s = &fs->slots[c->idx];
    struct filter_mod *mods;
    enum filter_verdict v;

    if (r == NULL)
        r = &cont;
    mods = r->mods;
    v = r->verdict;

    if (s->active != c)
        log_panic("filter %s: answer for a call that is not active",
                  s->ops->name);
    s->active = NULL;
    if ((unsigned) v > FILTER_REJECT) {
        log_warning("filter %s: invalid verdict %d at %s; using tempfail",
                    s->ops->name, (int) v, filter_stage_name(c->st));
        v = FILTER_TEMPFAIL;
    }
    if (log_debug_enabled())
        log_debug("filter %s: %s: %s", s->ops->name, filter_stage_name(c->st),
                  filter_verdict_name(v));

    if (c->wait) {
        struct wait_ent *e = &c->wait->ent[c->idx];

        e->state = WAIT_ANSWERED;
        e->verdict = v;
        e->code = r->code;
        e->dsn = r->dsn ? xstrdup(r->dsn) : NULL;
        e->text = r->text ? xstrdup(r->text) : NULL;
        if (c->st == FILTER_EOM) {
            e->mods = mods;
            mods = NULL;
        }
        c->wait->outstanding--;
    }

    switch (c->st) {
    case FILTER_CONNECT:
    case FILTER_HELO:
        if (v == FILTER_ACCEPT) {
            s->sess_done = 1;
            slot_drop_queued(fs, s, 0);
        }
        break;
    case FILTER_MAIL:
    case FILTER_RCPT:
    case FILTER_DATA:
    case FILTER_HEADER:
    case FILTER_EOH:
    case FILTER_BODY:
    case FILTER_EOM:
        if (v == FILTER_CONTINUE)
            break;
        if (c->st == FILTER_RCPT
            && (v == FILTER_REJECT || v == FILTER_TEMPFAIL))
            break; /* this recipient only */
        s->done_gen = c->gen;
        if (c->st != FILTER_EOM) {
            slot_forget(s);
            s->rem_gen = c->gen;
            s->rem_verdict = v;
            s->rem_code = r->code;
            s->rem_dsn = r->dsn ? xstrdup(r->dsn) : NULL;
            s->rem_text = r->text ? xstrdup(r->text) : NULL;
        }
        slot_drop_queued(fs, s, c->gen);
        break;
    case FILTER_ABORT:
    case FILTER_UNKNOWN:
        break;
    }
    filter_mods_free(mods);
    call_free(fs, c);
}

static int
mods_replace_body(const struct filter_mod *m)
{
    for (; m != NULL; m = m->next)
        if (m->type == FILTER_MOD_REPLACE_BODY)
            return 1;
    return 0;
}

/* Remove the body replacements from a list. */
static void
mods_drop_body(struct filter_mod **pp)
{
    struct filter_mod *m;

    while ((m = *pp) != NULL) {
        if (m->type == FILTER_MOD_REPLACE_BODY) {
            *pp = m->next;
            m->next = NULL;
            filter_mods_free(m);
        } else {
            pp = &m->next;
        }
    }
}

/* Run a completed wait's done callback with the merged result. */
static void
wait_complete(struct filter_sess *fs, struct wait *w)
{
    struct filter_result res;
    struct filter_mod *mods = NULL, **tailp = &mods;
    size_t i, best = (size_t) -1, lastrb = (size_t) -1;
    enum filter_verdict bv = FILTER_CONTINUE; /* ties: earlier filter */

    if (w->st == FILTER_EOM) {
        /* verdicts that finished the transaction before EOM */
        for (i = 0; i < fs->n; i++) {
            struct slot *s = &fs->slots[i];
            struct wait_ent *e = &w->ent[i];

            if (e->state == WAIT_ANSWERED || s->rem_gen != w->gen)
                continue;
            e->state = WAIT_ANSWERED;
            e->verdict = s->rem_verdict;
            e->code = s->rem_code;
            e->dsn = s->rem_dsn;
            e->text = s->rem_text;
            s->rem_dsn = s->rem_text = NULL;
            slot_forget(s);
        }
    }
    for (i = 0; i < fs->n; i++)
        if (w->ent[i].state == WAIT_ANSWERED
            && mods_replace_body(w->ent[i].mods))
            lastrb = i;
    for (i = 0; i < fs->n; i++) {
        struct wait_ent *e = &w->ent[i];

        if (e->state != WAIT_ANSWERED)
            continue;
        if (e->verdict > bv) {
            best = i;
            bv = e->verdict;
        }
        if (lastrb != (size_t) -1 && i != lastrb)
            mods_drop_body(&e->mods); /* a later filter replaced it */
        if (e->mods) {
            *tailp = e->mods;
            e->mods = NULL;
            while (*tailp)
                tailp = &(*tailp)->next;
        }
    }
    memset(&res, 0, sizeof(res));
    res.verdict = bv;
    if (best != (size_t) -1) {
        res.code = w->ent[best].code;
        res.dsn = w->ent[best].dsn;
        res.text = w->ent[best].text;
        res.filter = fs->slots[best].ops->name;
    }
    res.mods = mods;
    w->done(w->arg, &res);
    filter_mods_free(mods);
    wait_free(fs, w);
}

/* ------------------------------------------------------------------ */
/* the ordering rule: replaying the modified message to held-back filters */

#define REPLAY_CHUNK   (64 * 1024)   /* BODY stages and reads */
#define REPLAY_HDR_MAX (1024 * 1024) /* as FILTER_HDR_MAX in filter_mods.c */

enum replay_phase {
    REPLAY_HEADER, /* one HEADER stage per rewritten field */
    REPLAY_EOH,
    REPLAY_BODY, /* chunks from the queue file or the replacement */
    REPLAY_END   /* queue the EOM of the group */
};

/* The producer of one group's replay. */
struct replay {
    enum replay_phase phase;
    int paused;                  /* backlog reached HIGH: wait for LOW */
    struct buf *hdr;             /* the rewritten header fields */
    size_t hpos;                 /* next field in hdr */
    off_t bpos, bend;            /* body still to read from the queue file */
    int replace;                 /* the body is a filter's replacement: */
    const struct filter_mod *rb; /* its mods from this one on */
    size_t rboff;
    int cr; /* replacement: the last byte was CR */
    char *chunk;
};

static int slot_wants(const struct slot *s, enum filter_stage st, unsigned gen);

static void
replay_free(struct replay *rp)
{
    if (rp == NULL)
        return;
    buf_free(rp->hdr);
    free(rp->chunk);
    free(rp);
}

static ssize_t
replay_pread(int fd, void *p, size_t n, off_t off)
{
    ssize_t r;

    do
        r = pread(fd, p, n, off);
    while (r < 0 && errno == EINTR);
    if (r == 0 && n > 0) {
        errno = EIO; /* the file is shorter than the message */
        return -1;
    }
    return r;
}

/* Where the header fields of the original message end (*hend) and its
 * body starts (*body: after the empty line, if any), parsed as
 * filter_mods_rewrite() parses it, so that the rewritten header fields
 * plus the original bytes from *hend on are the rewritten message. */
static int
replay_hdr_end(int fd, off_t off, off_t len, off_t *hend, off_t *body)
{
    struct buf *b = buf_new(REPLAY_CHUNK, REPLAY_HDR_MAX + 2 * REPLAY_CHUNK);
    size_t scan = 0, seplen = 0, nfields = 0;
    off_t got = 0;

    for (;;) {
        const char *d = buf_data(b);
        size_t avail = buf_len(b) - scan;
        const char *lf = memchr(d + scan, '\n', avail);
        size_t ll;

        if (lf == NULL && got < len) {
            size_t want = REPLAY_CHUNK;
            char *p;
            ssize_t r;

            if (buf_len(b) >= REPLAY_HDR_MAX)
                break; /* a line past the header cap: body */
            if ((off_t) want > len - got)
                want = (size_t) (len - got);
            if ((p = buf_reserve(b, want)) == NULL) {
                errno = EFBIG;
                goto fail;
            }
            if ((r = replay_pread(fd, p, want, off + got)) < 0)
                goto fail;
            buf_commit(b, (size_t) r);
            got += r;
            continue;
        }
        if (lf == NULL && avail == 0)
            break; /* end of message */
        ll = lf ? (size_t) (lf - (d + scan)) + 1 : avail;
        if ((ll == 1 && d[scan] == '\n')
            || (ll == 2 && d[scan] == '\r' && d[scan + 1] == '\n')) {
            seplen = ll;
            break;
        }
        if (d[scan] == ' ' || d[scan] == '\t') {
            if (nfields == 0)
                break;
        } else if (filter_hdr_name_len(d + scan, ll) > 0) {
            nfields++;
        } else {
            break;
        }
        scan += ll;
        if (scan >= REPLAY_HDR_MAX)
            break;
    }
    buf_free(b);
    *hend = (off_t) scan;
    *body = (off_t) (scan + seplen);
    return 0;
fail:
    buf_free(b);
    return -1;
}

static int
replay_collect(void *arg, const void *p, size_t n)
{
    return buf_append(arg, p, n);
}

/* Start the replay for group w->group: rewrite the header with the
 * header modifications of the earlier groups (in chain order), find the
 * body: the last earlier replacement, or the original body. */
static struct replay *
replay_new(struct filter_sess *fs, struct wait *w)
{
    struct replay *rp = xcalloc(1, sizeof(*rp));
    struct filter_mod *hmods = NULL, **tailp = &hmods;
    const struct filter_mod *m;
    off_t hend, body;
    size_t i;

    if (w->fd < 0 || w->off < 0 || w->len < 0) {
        errno = EBADF;
        goto fail;
    }
    for (i = 0; i < fs->n; i++) {
        const struct wait_ent *e = &w->ent[i];

        if (e->state != WAIT_ANSWERED || e->group >= w->group)
            continue;
        for (m = e->mods; m != NULL; m = m->next) {
            switch (m->type) {
            case FILTER_MOD_ADD_HEADER:
            case FILTER_MOD_INSERT_HEADER:
            case FILTER_MOD_CHANGE_HEADER:
                *tailp = filter_mod_new(m->type, m->name, m->value, m->len,
                                        m->index, m->args);
                tailp = &(*tailp)->next;
                break;
            case FILTER_MOD_REPLACE_BODY:
                /* this filter's replacements (all of them, from the
                 * head of its list) supersede earlier filters' */
                rp->rb = e->mods;
                rp->replace = 1;
                break;
            case FILTER_MOD_ADD_RCPT:
            case FILTER_MOD_DELETE_RCPT:
            case FILTER_MOD_CHANGE_SENDER:
                break; /* envelope: not part of the replay */
            }
        }
    }
    if (replay_hdr_end(w->fd, w->off, w->len, &hend, &body) < 0)
        goto fail;
    rp->hdr = buf_new(4096, BUF_NOCAP); /* bounded: header cap + mods */
    if (filter_mods_rewrite(hmods, w->fd, w->off, hend, replay_collect, rp->hdr)
        < 0) {
        if (errno == 0)
            errno = EINVAL;
        goto fail;
    }
    rp->bpos = body;
    rp->bend = w->len;
    rp->chunk = xmalloc(REPLAY_CHUNK);
    rp->phase = REPLAY_HEADER;
    filter_mods_free(hmods);
    return rp;
fail:
    filter_mods_free(hmods);
    replay_free(rp);
    return NULL;
}

/* Does a held-back filter of the group still want stage st? */
static int
replay_wanted(struct filter_sess *fs, struct wait *w, enum filter_stage st)
{
    size_t i;

    for (i = 0; i < fs->n; i++)
        if (w->ent[i].state == WAIT_HELD && w->ent[i].group == w->group
            && slot_wants(&fs->slots[i], st, w->gen))
            return 1;
    return 0;
}

/* Queue one replayed stage to the group's filters (their FIFOs, as a
 * live stage). */
static void
replay_emit(struct filter_sess *fs, struct wait *w, enum filter_stage st,
            const struct filter_args *args)
{
    struct stage_data *d = stage_data_new(args);
    size_t i;

    fs->backlog += d->bytes;
    d->refs++; /* ours while queueing */
    for (i = 0; i < fs->n; i++)
        if (w->ent[i].state == WAIT_HELD && w->ent[i].group == w->group
            && slot_wants(&fs->slots[i], st, w->gen))
            call_queue(fs, i, st, w->gen, d, NULL);
    stage_data_release(fs, d);
}

/* The next HEADER stage from the rewritten header: name before the
 * colon, value after it with its leading blank and the CRLFs of folded
 * lines, without the final CRLF (as smtpd splits fields). */
static void
replay_header(struct filter_sess *fs, struct wait *w, struct replay *rp)
{
    const char *p = buf_data(rp->hdr) + rp->hpos;
    size_t n = buf_len(rp->hdr) - rp->hpos, flen = 0, nl, vend;
    const char *colon, *lf;
    struct filter_args a;
    char *name, *value;

    /* the field: its first line and the continuation lines */
    do {
        lf = memchr(p + flen, '\n', n - flen);
        flen = lf ? (size_t) (lf - p) + 1 : n;
    } while (flen < n && (p[flen] == ' ' || p[flen] == '\t'));
    rp->hpos += flen;
    colon = memchr(p, ':', flen);
    if (colon == NULL)
        return; /* not produced by filter_mods_rewrite() */
    nl = (size_t) (colon - p);
    while (nl > 0 && (p[nl - 1] == ' ' || p[nl - 1] == '\t'))
        nl--;
    vend = flen;
    if (vend > 0 && p[vend - 1] == '\n')
        vend--;
    if (vend > 0 && p[vend - 1] == '\r')
        vend--;
    name = xstrndup(p, nl);
    value = xstrndup(colon + 1, vend - (size_t) (colon + 1 - p));
    memset(&a, 0, sizeof(a));
    a.hname = name;
    a.hvalue = value;
    replay_emit(fs, w, FILTER_HEADER, &a);
    free(name);
    free(value);
}

/* The next body chunk into rp->chunk: its length, 0 at the end, -1 on a
 * read error. A replacement body gets bare LF turned into CRLF, as
 * filter_mods_rewrite() does. */
static ssize_t
replay_body(struct replay *rp, int fd, off_t off)
{
    size_t n = 0;
    ssize_t r;

    if (!rp->replace) {
        size_t want = REPLAY_CHUNK;

        if (rp->bpos >= rp->bend)
            return 0;
        if ((off_t) want > rp->bend - rp->bpos)
            want = (size_t) (rp->bend - rp->bpos);
        if ((r = replay_pread(fd, rp->chunk, want, off + rp->bpos)) < 0)
            return -1;
        rp->bpos += r;
        return r;
    }
    while (rp->rb != NULL && n + 2 <= REPLAY_CHUNK) {
        const struct filter_mod *m = rp->rb;
        char c;

        if (m->type != FILTER_MOD_REPLACE_BODY || m->value == NULL
            || rp->rboff >= m->len) {
            rp->rb = m->next;
            rp->rboff = 0;
            continue;
        }
        c = m->value[rp->rboff++];
        if (c == '\n' && !rp->cr)
            rp->chunk[n++] = '\r';
        rp->chunk[n++] = c;
        rp->cr = c == '\r';
    }
    return (ssize_t) n;
}

/* Give the group's held entries their EOM (or skip those that finished
 * meanwhile). */
static void
replay_end(struct filter_sess *fs, struct wait *w)
{
    size_t i;

    for (i = 0; i < fs->n; i++) {
        struct wait_ent *e = &w->ent[i];

        if (e->state != WAIT_HELD || e->group != w->group)
            continue;
        if (slot_wants(&fs->slots[i], FILTER_EOM, w->gen)) {
            call_queue(fs, i, FILTER_EOM, w->gen, w->eom, w);
        } else {
            e->state = WAIT_SKIPPED;
            w->outstanding--;
        }
    }
}

/* Held entries that will not get their EOM: those of group (or of every
 * later group when all is set) get ABORT, and their part of the wait is
 * skipped, or answered with tempfail when why is not NULL. */
static void
replay_cancel(struct filter_sess *fs, struct wait *w, int all, const char *why)
{
    struct stage_data *d = NULL;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        struct wait_ent *e = &w->ent[i];
        struct slot *s = &fs->slots[i];

        if (e->state != WAIT_HELD || (!all && e->group != w->group))
            continue;
        if (why) {
            log_warning("filter %s: cannot replay the modified message: %s",
                        s->ops->name, why);
            e->state = WAIT_ANSWERED;
            e->verdict = FILTER_TEMPFAIL;
            e->code = 451;
            e->dsn = xstrdup("4.3.0");
            e->text = xstrdup("Error: internal error in a content filter");
        } else {
            e->state = WAIT_SKIPPED;
        }
        w->outstanding--;
        if (slot_wants(s, FILTER_ABORT, w->gen)) {
            if (d == NULL) {
                d = stage_data_new(NULL);
                d->refs++;
            }
            call_queue(fs, i, FILTER_ABORT, w->gen, d, NULL);
        }
    }
    if (d)
        stage_data_release(fs, d);
}

/* Queue the replay of w's group until the backlog is high or the replay
 * is over. */
static void
replay_produce(struct filter_sess *fs, struct wait *w)
{
    struct replay *rp = w->rp;
    struct filter_args a;
    ssize_t n;

    while (rp->phase != REPLAY_END) {
        if (fs->backlog >= FILTER_BACKLOG_HIGH) {
            rp->paused = 1;
            return;
        }
        if (!replay_wanted(fs, w, FILTER_HEADER)) {
            rp->phase = REPLAY_END; /* every filter of the group is done */
            break;
        }
        switch (rp->phase) {
        case REPLAY_HEADER:
            if (rp->hpos < buf_len(rp->hdr))
                replay_header(fs, w, rp);
            else
                rp->phase = REPLAY_EOH;
            break;
        case REPLAY_EOH:
            replay_emit(fs, w, FILTER_EOH, NULL);
            rp->phase = REPLAY_BODY;
            break;
        case REPLAY_BODY:
            n = replay_body(rp, w->fd, w->off);
            if (n < 0) {
                w->rp = NULL;
                replay_free(rp);
                replay_cancel(fs, w, 0, strerror(errno));
                return;
            }
            if (n == 0) {
                rp->phase = REPLAY_END;
                break;
            }
            memset(&a, 0, sizeof(a));
            a.data = rp->chunk;
            a.len = (size_t) n;
            replay_emit(fs, w, FILTER_BODY, &a);
            break;
        case REPLAY_END:
            break;
        }
    }
    w->rp = NULL;
    replay_free(rp);
    replay_end(fs, w);
}

/* The strictest verdict of the transaction so far. */
static enum filter_verdict
replay_verdict(struct filter_sess *fs, struct wait *w)
{
    enum filter_verdict v = FILTER_CONTINUE;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        if (w->ent[i].state == WAIT_ANSWERED && w->ent[i].verdict > v)
            v = w->ent[i].verdict;
        if (fs->slots[i].rem_gen == w->gen && fs->slots[i].rem_verdict > v)
            v = fs->slots[i].rem_verdict;
    }
    return v;
}

/* Move an EOM wait with held-back filters on: produce the replay, or
 * when the running group is over, stop (reject, tempfail, discard) or
 * start the next group. Returns nonzero when something happened. */
static int
replay_advance(struct filter_sess *fs, struct wait *w)
{
    size_t i;
    int held = 0;

    if (w->rp) {
        if (w->rp->paused) {
            if (fs->backlog >= FILTER_BACKLOG_LOW)
                return 0;
            w->rp->paused = 0;
        }
        replay_produce(fs, w);
        return 1;
    }
    if (w->st != FILTER_EOM || w->group + 1 >= w->ngroups)
        return 0;
    for (i = 0; i < fs->n; i++)
        if (w->ent[i].group <= w->group && w->ent[i].state == WAIT_PENDING)
            return 0; /* the group's EOMs are not all answered yet */
    if (replay_verdict(fs, w) >= FILTER_DISCARD) {
        replay_cancel(fs, w, 1, NULL);
        w->group = w->ngroups;
        return 1;
    }
    w->group++;
    for (i = 0; i < fs->n; i++)
        if (w->ent[i].state == WAIT_HELD && w->ent[i].group == w->group)
            held = 1;
    if (!held)
        return 1;
    if ((w->rp = replay_new(fs, w)) == NULL)
        replay_cancel(fs, w, 0, strerror(errno));
    return 1;
}

/* ------------------------------------------------------------------ */
/* the pump: dispatch queued calls, complete waits */

static void
filter_unavailable(struct filter_sess *fs, struct filter_call *c)
{
    struct filter_reply r;
    char text[256];

    snprintf(text, sizeof(text), "Error: filter %s unavailable",
             fs->slots[c->idx].ops->name);
    memset(&r, 0, sizeof(r));
    r.verdict = FILTER_TEMPFAIL;
    r.code = 451;
    r.dsn = "4.7.1";
    r.text = text;
    filter_answer_internal(fs, c, &r);
}

static void
filter_pump(struct filter_sess *fs)
{
    struct wait *wt;
    int progress;
    size_t i;

    do {
        progress = 0;
        /* done callbacks first: the reply to the client goes out sooner,
         * and a session freed there gets no pointless calls */
        while (!fs->free_req && fs->whead && fs->whead->outstanding == 0) {
            struct wait *w = fs->whead;

            fs->whead = w->next;
            if (fs->whead == NULL)
                fs->wtail = NULL;
            progress = 1;
            wait_complete(fs, w);
        }
        for (i = 0; i < fs->n && !fs->free_req; i++) {
            struct slot *s = &fs->slots[i];
            struct filter_call *c = s->head;

            if (s->active || c == NULL)
                continue;
            s->head = c->next;
            if (s->head == NULL)
                s->tail = NULL;
            c->next = NULL;
            s->active = c;
            progress = 1;
            if (s->state == NULL)
                filter_unavailable(fs, c);
            else
                s->ops->stage(s->state, c, c->st, &c->data->a);
        }
        for (wt = fs->whead; wt != NULL && !fs->free_req; wt = wt->next)
            if (replay_advance(fs, wt))
                progress = 1;
    } while (progress && !fs->free_req);
}

static void
sess_enter(struct filter_sess *fs)
{
    fs->busy++;
}

static void sess_destroy(struct filter_sess *fs);

/* Leave a public entry point; the outermost level pumps and may free. */
static void
sess_leave(struct filter_sess *fs)
{
    while (fs->busy == 1 && !fs->free_req) {
        filter_pump(fs);
        if (fs->free_req)
            break;
        if (fs->backlog >= FILTER_BACKLOG_HIGH)
            fs->high = 1;
        if (fs->high && fs->backlog < FILTER_BACKLOG_LOW) {
            fs->high = 0;
            if (fs->drain) {
                fs->drain(fs->drain_arg);
                continue; /* the callback may have staged more */
            }
        }
        break;
    }
    if (fs->backlog >= FILTER_BACKLOG_HIGH)
        fs->high = 1;
    if (--fs->busy == 0 && fs->free_req)
        sess_destroy(fs);
}

void
filter_answer(struct filter_call *call, const struct filter_reply *r)
{
    struct filter_sess *fs = call->fs;

    sess_enter(fs);
    filter_answer_internal(fs, call, r);
    sess_leave(fs);
}

/* ------------------------------------------------------------------ */
/* sessions */

struct filter_sess *
filter_sess_new(struct filter_chain *ch, const struct filter_env *env)
{
    struct filter_sess *fs = xcalloc(1, sizeof(*fs));
    size_t i;

    fs->ch = ch;
    fs->env = env;
    fs->n = ch->n;
    fs->gen = 1;
    fs->slots = xcalloc(fs->n ? fs->n : 1, sizeof(struct slot));
    for (i = 0; i < fs->n; i++) {
        struct slot *s = &fs->slots[i];

        s->ops = ch->v[i].ops;
        s->state = s->ops->open(ch->v[i].conf, env);
        if (s->state == NULL)
            log_warning("filter %s: unavailable for client %s[%s]",
                        s->ops->name,
                        env && env->client_name ? env->client_name : "unknown",
                        env && env->client_addr ? env->client_addr : "unknown");
    }
    return fs;
}

static void
sess_destroy(struct filter_sess *fs)
{
    struct filter_call *c;
    struct wait *w;
    size_t i;

    for (i = 0; i < fs->n; i++) {
        struct slot *s = &fs->slots[i];

        if (s->state)
            s->ops->close(s->state);
        if (s->active)
            call_free(fs, s->active);
        while ((c = s->head) != NULL) {
            s->head = c->next;
            call_free(fs, c);
        }
        slot_forget(s);
    }
    while ((w = fs->whead) != NULL) {
        fs->whead = w->next;
        wait_free(fs, w);
    }
    free(fs->slots);
    free(fs);
}

void
filter_sess_free(struct filter_sess *fs)
{
    if (fs == NULL)
        return;
    if (fs->busy > 0) {
        fs->free_req = 1;
        return;
    }
    sess_destroy(fs);
}

/* Is the filter of slot s interested in stage st of transaction gen? */
static int
slot_wants(const struct slot *s, enum filter_stage st, unsigned gen)
{
    if (s->sess_done)
        return 0;
    switch (st) {
    case FILTER_ABORT:
        return s->mail_gen == gen;
    case FILTER_MAIL:
    case FILTER_RCPT:
    case FILTER_DATA:
    case FILTER_HEADER:
    case FILTER_EOH:
    case FILTER_BODY:
    case FILTER_EOM:
        return s->done_gen != gen;
    case FILTER_CONNECT:
    case FILTER_HELO:
    case FILTER_UNKNOWN:
        return 1;
    }
    return 0;
}

/* Content stages: the ones the ordering rule holds back. */
static int
filter_content_stage(enum filter_stage st)
{
    switch (st) {
    case FILTER_HEADER:
    case FILTER_EOH:
    case FILTER_BODY:
    case FILTER_EOM:
        return 1;
    case FILTER_CONNECT:
    case FILTER_HELO:
    case FILTER_MAIL:
    case FILTER_RCPT:
    case FILTER_DATA:
    case FILTER_ABORT:
    case FILTER_UNKNOWN:
        return 0;
    }
    return 0;
}

/* The ordering rule, once per transaction at its first content stage
 * (CONNECT has been answered by then): each filter that may modify
 * content and still takes part ends a group; the filters after it are
 * in the next group. */
static void
sess_plan(struct filter_sess *fs)
{
    unsigned g = 0;
    size_t i;

    if (fs->plan_gen == fs->gen)
        return;
    fs->plan_gen = fs->gen;
    fs->ngroups = 1;
    for (i = 0; i < fs->n; i++) {
        struct slot *s = &fs->slots[i];

        s->plan_gen = fs->gen;
        s->group = g;
        if (g + 1 > fs->ngroups)
            fs->ngroups = g + 1;
        if (s->state && s->ops->modifies_content
            && slot_wants(s, FILTER_EOM, fs->gen)
            && s->ops->modifies_content(s->state))
            g++;
    }
}

void
filter_stage(struct filter_sess *fs, enum filter_stage st,
             const struct filter_args *args, filter_done_fn done, void *arg)
{
    struct stage_data *d = NULL;
    struct wait *w = NULL;
    size_t i;

    if (fs->free_req)
        return;
    if ((unsigned) st >= FILTER_NSTAGES)
        log_panic("filter_stage: invalid stage %d", (int) st);
    sess_enter(fs);
    if (filter_content_stage(st))
        sess_plan(fs);
    if (done) {
        w = xcalloc(1, sizeof(*w));
        w->st = st;
        w->gen = fs->gen;
        w->done = done;
        w->arg = arg;
        w->ent = xcalloc(fs->n ? fs->n : 1, sizeof(struct wait_ent));
        w->ngroups = 1;
        w->fd = -1;
        if (st == FILTER_EOM) {
            w->ngroups = fs->ngroups;
            if (fs->env) {
                w->fd = fs->env->spool_fd;
                w->off = fs->env->spool_off;
                w->len = fs->env->spool_len;
            }
        }
        if (fs->wtail)
            fs->wtail->next = w;
        else
            fs->whead = w;
        fs->wtail = w;
    }
    for (i = 0; i < fs->n; i++) {
        struct slot *s = &fs->slots[i];
        int held = filter_content_stage(st) && s->group > 0;

        if (!slot_wants(s, st, fs->gen))
            continue;
        if (held && st != FILTER_EOM)
            continue; /* gets the content by replay, after EOM */
        if (d == NULL) {
            d = stage_data_new(args);
            fs->backlog += d->bytes;
        }
        if (held && w == NULL) {
            /* an EOM without a wait cannot replay: end the transaction */
            call_queue(fs, i, FILTER_ABORT, fs->gen, d, NULL);
            continue;
        }
        if (held) {
            if (w->eom == NULL) {
                w->eom = d;
                d->refs++;
            }
            w->ent[i].state = WAIT_HELD;
            w->ent[i].group = s->group;
            w->outstanding++;
            continue;
        }
        call_queue(fs, i, st, fs->gen, d, w);
        if (st == FILTER_MAIL)
            s->mail_gen = fs->gen;
    }
    if (st == FILTER_ABORT || st == FILTER_EOM) {
        /* the transaction ends: start a new one; forget verdicts of the
         * aborted one (an EOM's wait still reads them, by gen) */
        if (st == FILTER_ABORT)
            for (i = 0; i < fs->n; i++)
                if (fs->slots[i].rem_gen == fs->gen)
                    slot_forget(&fs->slots[i]);
        fs->gen++;
    }
    sess_leave(fs);
}

size_t
filter_backlog(const struct filter_sess *fs)
{
    return fs->backlog;
}

void
filter_set_drain(struct filter_sess *fs, void (*cb)(void *), void *arg)
{
    fs->drain = cb;
    fs->drain_arg = arg;
}
