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
 *
 * Owns: slots, calls, stage copies, waits, reply copies, modifications.
 * Borrows: the chain and the env (must outlive the session).
 * Threads: loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/filter.h"
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
    WAIT_SKIPPED /* dropped: the filter finished meanwhile */
};

struct wait_ent {
    enum wait_ent_state state;
    enum filter_verdict verdict;
    int code;
    char *dsn;
    char *text;
    struct filter_mod *mods;
};

/* One filter_stage() with a done callback. */
struct wait {
    enum filter_stage st;
    unsigned gen;
    filter_done_fn done;
    void *arg;
    size_t outstanding;
    struct wait_ent *ent; /* one per filter */
    struct wait *next;
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

void
filter_chain_start(struct filter_chain *ch, void *loop)
{
    struct buf *err = buf_new(256, 4096);
    size_t i;

    for (i = 0; i < ch->n; i++) {
        const struct filter_ops *ops = ch->v[i].ops;

        if (ops->start == NULL)
            continue;
        buf_reset(err);
        if (ops->start(ch->v[i].conf, loop, err) < 0)
            log_warning("filter %s: cannot start: %s", ops->name,
                        buf_len(err) ? buf_data(err) : "unknown error");
    }
    buf_free(err);
}

void
filter_chain_stop(struct filter_chain *ch)
{
    size_t i;

    for (i = ch->n; i > 0; i--)
        if (ch->v[i - 1].ops->stop)
            ch->v[i - 1].ops->stop(ch->v[i - 1].conf);
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

static void
wait_free(struct filter_sess *fs, struct wait *w)
{
    size_t i;

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

/* Run a completed wait's done callback with the merged result. */
static void
wait_complete(struct filter_sess *fs, struct wait *w)
{
    struct filter_result res;
    struct filter_mod *mods = NULL, **tailp = &mods;
    size_t i, best = (size_t) -1;
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
    for (i = 0; i < fs->n; i++) {
        struct wait_ent *e = &w->ent[i];

        if (e->state != WAIT_ANSWERED)
            continue;
        if (e->verdict > bv) {
            best = i;
            bv = e->verdict;
        }
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
    if (done) {
        w = xcalloc(1, sizeof(*w));
        w->st = st;
        w->gen = fs->gen;
        w->done = done;
        w->arg = arg;
        w->ent = xcalloc(fs->n ? fs->n : 1, sizeof(struct wait_ent));
        if (fs->wtail)
            fs->wtail->next = w;
        else
            fs->whead = w;
        fs->wtail = w;
    }
    for (i = 0; i < fs->n; i++) {
        struct slot *s = &fs->slots[i];
        struct filter_call *c;

        if (!slot_wants(s, st, fs->gen))
            continue;
        if (d == NULL) {
            d = stage_data_new(args);
            fs->backlog += d->bytes;
        }
        c = xcalloc(1, sizeof(*c));
        c->fs = fs;
        c->idx = i;
        c->st = st;
        c->gen = fs->gen;
        c->data = d;
        d->refs++;
        if (w) {
            c->wait = w;
            w->ent[i].state = WAIT_PENDING;
            w->outstanding++;
        }
        if (s->tail)
            s->tail->next = c;
        else
            s->head = c;
        s->tail = c;
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
