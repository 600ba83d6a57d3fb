/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_filter.c - the filter chain driven by scripted test filters:
 * synchronous, deferred and threaded answers, FIFO order, backlog and
 * drain, verdict scopes and merging, modifications, unavailable filters,
 * re-entrancy (free and stage from inside done callbacks), ABORT; the
 * ordering rule: filters after one that may modify content get the
 * modified message replayed from a queue file before their EOM.
 */
#include <ev.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "filters/filter.h"
#include "lib/wpool.h"

/* ------------------------------------------------------------------ */
/* a scripted test filter */

enum tf_mode {
    TF_SYNC,   /* answer inside ops->stage */
    TF_DEFER,  /* keep the call; the test answers with tf_answer() */
    TF_THREAD, /* work on a wpool worker, answer in the done callback */
    TF_POST    /* own thread, back to the loop with wpool_post() */
};

struct tf_mspec {
    enum filter_mod_type type;
    const char *name;
    const char *value;
    int index;
};

struct tf {
    struct filter_ops ops;
    enum tf_mode mode;
    int fail_open;
    enum filter_verdict v[FILTER_NSTAGES];
    const char *text[FILTER_NSTAGES];
    int code[FILTER_NSTAGES];
    const char *dsn[FILTER_NSTAGES];
    struct tf_mspec mods[6];
    int nmods;
    int rcpt_reject_first; /* REJECT the first RCPT only */
    int nrcpt;
    int body_reject_at; /* REJECT the n-th BODY chunk (1-based) */
    int nbody;
    char log[8192];
    char body[1 << 16];
    size_t bodylen;
    struct filter_call *pending;
    enum filter_stage pending_st;
    int opened, closed;
    int overlap; /* stage() called while a call was pending */
    struct wpool *pool;
    int modifies; /* answer of ops->modifies_content */
    int asked;    /* modifies_content calls */
    /* the message as the filter saw it: "name:value\r\n" per HEADER,
     * "\r\n" at EOH, then the body (the first 64 KB) */
    char msg[1 << 16];
    size_t msglen;
    size_t bodytotal, maxchunk;
    unsigned long bodyhash; /* FNV-1a of all body bytes */
};

static struct filter_env msg_env = {
    .client_addr = "192.0.2.1",
    .client_name = "client.example",
    .queue_id = "",
    .spool_fd = -1,
};

static unsigned long
fnv(unsigned long h, const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211UL;
    return h;
}

static void
tf_msg(struct tf *t, const void *p, size_t n)
{
    if (t->msglen + n <= sizeof(t->msg)) {
        memcpy(t->msg + t->msglen, p, n);
        t->msglen += n;
    }
}

static const struct filter_env test_env = {
    .client_addr = "192.0.2.1",
    .client_name = "client.example",
    .queue_id = "",
};

static void
tf_logf(struct tf *t, const char *fmt, ...)
{
    size_t n = strlen(t->log);
    va_list ap;

    if (n > 0 && n < sizeof(t->log) - 1)
        t->log[n++] = ' ';
    va_start(ap, fmt);
    vsnprintf(t->log + n, sizeof(t->log) - n, fmt, ap);
    va_end(ap);
}

static void
tf_make_reply(struct tf *t, enum filter_stage st, enum filter_verdict v,
              struct filter_reply *r)
{
    int i;

    memset(r, 0, sizeof(*r));
    r->verdict = v;
    r->code = t->code[st];
    r->dsn = t->dsn[st];
    r->text = t->text[st];
    if (st == FILTER_EOM) {
        struct filter_mod **tail = &r->mods;

        for (i = 0; i < t->nmods; i++) {
            const struct tf_mspec *m = &t->mods[i];

            *tail =
                filter_mod_new(m->type, m->name, m->value,
                               m->value ? strlen(m->value) : 0, m->index, NULL);
            tail = &(*tail)->next;
        }
    } else if (st == FILTER_BODY) {
        /* mods outside EOM are dropped by the chain (ASan checks) */
        r->mods =
            filter_mod_new(FILTER_MOD_ADD_HEADER, "X-Ignored", "1", 1, 0, NULL);
    }
}

static enum filter_verdict
tf_verdict(struct tf *t, enum filter_stage st)
{
    if (st == FILTER_RCPT && t->rcpt_reject_first)
        return t->nrcpt == 1 ? FILTER_REJECT : FILTER_CONTINUE;
    if (st == FILTER_BODY && t->body_reject_at)
        return t->nbody == t->body_reject_at ? FILTER_REJECT : FILTER_CONTINUE;
    return t->v[st];
}

static void *
tf_open(void *conf, const struct filter_env *env)
{
    struct tf *t = conf;

    assert_true(env == &test_env || env == &msg_env);
    if (t->fail_open)
        return NULL;
    t->opened++;
    return t;
}

static void
tf_close(void *state)
{
    struct tf *t = state;

    t->closed++;
    t->pending = NULL; /* cancelled */
}

struct tjob {
    struct tf *t;
    struct filter_call *call;
    enum filter_stage st;
    enum filter_verdict v;
    pthread_t loop_thread, worker;
    pthread_t th;
};

static void
tjob_work(void *arg)
{
    struct tjob *j = arg;

    usleep(200);
    j->worker = pthread_self();
}

static void
tjob_done(void *arg)
{
    struct tjob *j = arg;
    struct filter_reply r;

    assert_true(pthread_equal(pthread_self(), j->loop_thread));
    assert_false(pthread_equal(j->worker, j->loop_thread));
    if (j->t->mode == TF_POST)
        pthread_join(j->th, NULL);
    tf_make_reply(j->t, j->st, j->v, &r);
    j->t->pending = NULL;
    filter_answer(j->call, &r);
    free(j);
}

static void *
tjob_thread(void *arg)
{
    struct tjob *j = arg;

    tjob_work(j);
    wpool_post(j->t->pool, tjob_done, j);
    return NULL;
}

static void
tf_stage(void *state, struct filter_call *call, enum filter_stage st,
         const struct filter_args *a)
{
    struct tf *t = state;
    struct filter_reply r;
    struct tjob *j;
    int i;

    if (t->pending)
        t->overlap++;
    switch (st) {
    case FILTER_HELO:
    case FILTER_UNKNOWN:
        tf_logf(t, "%s:%s", filter_stage_name(st), a->str);
        break;
    case FILTER_MAIL:
    case FILTER_RCPT:
        if (st == FILTER_RCPT)
            t->nrcpt++;
        tf_logf(t, "%s:%s", filter_stage_name(st), a->str);
        for (i = 0; a->argv && a->argv[i]; i++)
            tf_logf(t, "+%s", a->argv[i]);
        break;
    case FILTER_HEADER:
        tf_logf(t, "HEADER:%s=%s", a->hname, a->hvalue);
        tf_msg(t, a->hname, strlen(a->hname));
        tf_msg(t, ":", 1);
        tf_msg(t, a->hvalue, strlen(a->hvalue));
        tf_msg(t, "\r\n", 2);
        break;
    case FILTER_BODY:
        t->nbody++;
        t->bodytotal += a->len;
        if (a->len > t->maxchunk)
            t->maxchunk = a->len;
        t->bodyhash = fnv(t->bodyhash, a->data, a->len);
        tf_msg(t, a->data, a->len);
        if (t->nbody > 20) /* large bodies: keep the log short */
            break;
        tf_logf(t, "BODY:%zu", a->len);
        if (t->bodylen + a->len <= sizeof(t->body)) {
            memcpy(t->body + t->bodylen, a->data, a->len);
            t->bodylen += a->len;
        }
        break;
    case FILTER_EOH:
        tf_msg(t, "\r\n", 2);
        tf_logf(t, "%s", filter_stage_name(st));
        break;
    case FILTER_CONNECT:
    case FILTER_DATA:
    case FILTER_EOM:
    case FILTER_ABORT:
        tf_logf(t, "%s", filter_stage_name(st));
        break;
    }
    t->pending = call;
    t->pending_st = st;
    switch (t->mode) {
    case TF_SYNC:
        tf_make_reply(t, st, tf_verdict(t, st), &r);
        t->pending = NULL;
        filter_answer(call, &r);
        break;
    case TF_DEFER:
        break;
    case TF_THREAD:
    case TF_POST:
        j = calloc(1, sizeof(*j));
        j->t = t;
        j->call = call;
        j->st = st;
        j->v = tf_verdict(t, st);
        j->loop_thread = pthread_self();
        if (t->mode == TF_THREAD)
            wpool_submit(t->pool, tjob_work, tjob_done, j);
        else
            assert_int_equal(pthread_create(&j->th, NULL, tjob_thread, j), 0);
        break;
    }
}

static int
tf_modifies(void *state)
{
    struct tf *t = state;

    t->asked++;
    return t->modifies;
}

static void
tf_init(struct tf *t, const char *name, enum tf_mode mode)
{
    memset(t, 0, sizeof(*t));
    t->ops.name = name;
    t->ops.open = tf_open;
    t->ops.stage = tf_stage;
    t->ops.close = tf_close;
    t->ops.modifies_content = tf_modifies;
    t->mode = mode;
    t->bodyhash = 14695981039346656037UL;
}

/* Answer the pending call of a deferred filter. */
static void
tf_answer(struct tf *t, enum filter_verdict v)
{
    struct filter_call *c = t->pending;
    struct filter_reply r;

    assert_non_null(c);
    tf_make_reply(t, t->pending_st, v, &r);
    t->pending = NULL;
    filter_answer(c, &r);
}

/* ------------------------------------------------------------------ */
/* done recorder */

static char g_seq[1024]; /* order of done callbacks */

struct rec {
    const char *tag;
    int n;
    enum filter_verdict v;
    int code;
    char dsn[32];
    char text[128];
    char filter[64];
    char mods[512];
    /* actions run inside the callback */
    struct filter_sess **free_sess;
    struct filter_sess *stage_sess;
    enum filter_stage stage_next;
    struct rec *stage_rec;
};

static void
rec_done(void *arg, const struct filter_result *res)
{
    struct rec *r = arg;
    const struct filter_mod *m;
    size_t n;

    r->n++;
    r->v = res->verdict;
    r->code = res->code;
    snprintf(r->dsn, sizeof(r->dsn), "%s", res->dsn ? res->dsn : "");
    snprintf(r->text, sizeof(r->text), "%s", res->text ? res->text : "");
    snprintf(r->filter, sizeof(r->filter), "%s",
             res->filter ? res->filter : "");
    r->mods[0] = '\0';
    for (m = res->mods; m; m = m->next) {
        n = strlen(r->mods);
        snprintf(r->mods + n, sizeof(r->mods) - n, "%d:%s=%s;", (int) m->type,
                 m->name ? m->name : "", m->value ? m->value : "(null)");
    }
    n = strlen(g_seq);
    snprintf(g_seq + n, sizeof(g_seq) - n, "%s%s", n ? " " : "",
             r->tag ? r->tag : "?");
    if (r->stage_sess) {
        struct filter_args a = {.str = "next@example.org"};

        filter_stage(r->stage_sess, r->stage_next, &a,
                     r->stage_rec ? rec_done : NULL, r->stage_rec);
    }
    if (r->free_sess) {
        filter_sess_free(*r->free_sess);
        *r->free_sess = NULL;
    }
}

static int
setup(void **state)
{
    g_seq[0] = '\0';
    return 0;
}

static struct filter_chain *
chain_of(struct tf **tfs, int n)
{
    struct filter_chain *ch = filter_chain_new();
    int i;

    for (i = 0; i < n; i++)
        filter_chain_add(ch, &tfs[i]->ops, tfs[i]);
    assert_int_equal(filter_chain_len(ch), (size_t) n);
    return ch;
}

static void
stage_str(struct filter_sess *fs, enum filter_stage st, const char *s,
          struct rec *r)
{
    struct filter_args a = {.str = s};

    filter_stage(fs, st, &a, r ? rec_done : NULL, r);
}

static void
stage_header(struct filter_sess *fs, const char *name, const char *value)
{
    struct filter_args a = {.hname = name, .hvalue = value};

    filter_stage(fs, FILTER_HEADER, &a, NULL, NULL);
}

static void
stage_body(struct filter_sess *fs, const void *p, size_t n)
{
    struct filter_args a = {.data = p, .len = n};

    filter_stage(fs, FILTER_BODY, &a, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* tests */

static void
test_names(void **state)
{
    assert_string_equal(filter_stage_name(FILTER_CONNECT), "CONNECT");
    assert_string_equal(filter_stage_name(FILTER_HELO), "HELO");
    assert_string_equal(filter_stage_name(FILTER_MAIL), "MAIL");
    assert_string_equal(filter_stage_name(FILTER_RCPT), "RCPT");
    assert_string_equal(filter_stage_name(FILTER_DATA), "DATA");
    assert_string_equal(filter_stage_name(FILTER_HEADER), "HEADER");
    assert_string_equal(filter_stage_name(FILTER_EOH), "END-OF-HEADERS");
    assert_string_equal(filter_stage_name(FILTER_BODY), "BODY");
    assert_string_equal(filter_stage_name(FILTER_EOM), "END-OF-MESSAGE");
    assert_string_equal(filter_stage_name(FILTER_ABORT), "ABORT");
    assert_string_equal(filter_stage_name(FILTER_UNKNOWN), "UNKNOWN");
    assert_string_equal(filter_verdict_name(FILTER_CONTINUE), "continue");
    assert_string_equal(filter_verdict_name(FILTER_ACCEPT), "accept");
    assert_string_equal(filter_verdict_name(FILTER_HOLD), "hold");
    assert_string_equal(filter_verdict_name(FILTER_DISCARD), "discard");
    assert_string_equal(filter_verdict_name(FILTER_TEMPFAIL), "tempfail");
    assert_string_equal(filter_verdict_name(FILTER_REJECT), "reject");
}

static void
test_empty_chain(void **state)
{
    struct filter_chain *ch = filter_chain_new();
    struct filter_sess *fs = filter_sess_new(ch, &test_env);
    struct rec r = {.tag = "c"};

    stage_str(fs, FILTER_CONNECT, NULL, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_string_equal(r.filter, "");
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.n, 2);
    assert_int_equal(filter_backlog(fs), 0);
    filter_sess_free(fs);
    filter_chain_free(ch);
    filter_sess_free(NULL);
    filter_chain_free(NULL);
}

/* filter_chain_workers: the smallest fixed number of end-of-data
 * workers among the filters that report one; 0 when none does. */
static int
tf_workers(void *conf)
{
    return *(const int *) conf;
}

static void
test_workers(void **state)
{
    static const int three = 3, five = 5, none = 0;
    struct filter_chain *ch = filter_chain_new();
    struct tf a, b, c;

    assert_int_equal(filter_chain_workers(ch), 0);
    tf_init(&a, "milter-like", TF_SYNC); /* no workers op */
    filter_chain_add(ch, &a.ops, &a);
    assert_int_equal(filter_chain_workers(ch), 0);
    tf_init(&b, "five", TF_SYNC);
    b.ops.workers = tf_workers;
    filter_chain_add(ch, &b.ops, (void *) &five);
    assert_int_equal(filter_chain_workers(ch), 5);
    tf_init(&c, "three", TF_SYNC);
    c.ops.workers = tf_workers;
    filter_chain_add(ch, &c.ops, (void *) &three);
    assert_int_equal(filter_chain_workers(ch), 3);
    filter_chain_free(ch);

    ch = filter_chain_new(); /* a scanner that did not start: 0 */
    tf_init(&a, "stopped", TF_SYNC);
    a.ops.workers = tf_workers;
    filter_chain_add(ch, &a.ops, (void *) &none);
    assert_int_equal(filter_chain_workers(ch), 0);
    filter_chain_free(ch);
}

/* The chains of several services share a filter (the one scanner): it
 * is started once, stopped once (after the filters of later chains), and
 * its workers count once; a filter of one chain only starts in it. */
struct tf_life {
    char log[256];
};
static struct tf_life *tf_life_cur;

static void
tf_life_log(const char *what, const struct tf *t)
{
    size_t n = strlen(tf_life_cur->log);

    snprintf(tf_life_cur->log + n, sizeof(tf_life_cur->log) - n, "%s %s;", what,
             t->ops.name);
}

static int
tf_life_start(void *conf, void *loop, struct buf *err)
{
    struct tf *t = conf;

    assert_ptr_equal(loop, tf_life_cur);
    tf_life_log("start", t);
    if (strcmp(t->ops.name, "bad") == 0) {
        buf_printf(err, "no database");
        return -1;
    }
    return 0;
}

static void
tf_life_stop(void *conf)
{
    tf_life_log("stop", conf);
}

static int
tf_life_workers(void *conf)
{
    struct tf *t = conf;

    return strcmp(t->ops.name, "scan") == 0 ? 4 : 0;
}

static void
test_chains_shared(void **state)
{
    struct filter_chain *v[3];
    struct tf scan, m1, m2, bad;
    struct tf_life l = {{0}};

    tf_init(&scan, "scan", TF_SYNC);
    tf_init(&m1, "m1", TF_SYNC);
    tf_init(&m2, "m2", TF_SYNC);
    tf_init(&bad, "bad", TF_SYNC);
    for (struct tf *t = &scan; t; t = t == &scan ? &m1
                                      : t == &m1 ? &m2
                                      : t == &m2 ? &bad
                                                 : NULL) {
        t->ops.start = tf_life_start;
        t->ops.stop = tf_life_stop;
        t->ops.workers = tf_life_workers;
    }
    for (int i = 0; i < 3; i++)
        v[i] = filter_chain_new();
    filter_chain_add(v[0], &scan.ops, &scan); /* smtp: scan, m1 */
    filter_chain_add(v[0], &m1.ops, &m1);
    /* submission: m2, m2's twin listed twice, scan, bad */
    filter_chain_add(v[1], &m2.ops, &m2);
    filter_chain_add(v[1], &m2.ops, &m2);
    filter_chain_add(v[1], &scan.ops, &scan);
    filter_chain_add(v[1], &bad.ops, &bad);
    /* v[2]: a service with no filter at all */
    tf_life_cur = &l;
    filter_chains_start(v, 3, &l);
    assert_string_equal(l.log, "start scan;start m1;start m2;start bad;");
    assert_int_equal(filter_chains_workers(v, 3), 4);
    assert_int_equal(filter_chains_workers(v + 2, 1), 0);
    assert_int_equal(filter_chain_workers(v[1]), 4);
    l.log[0] = '\0';
    filter_chains_stop(v, 3);
    assert_string_equal(l.log, "stop bad;stop m2;stop m1;stop scan;");
    for (int i = 0; i < 3; i++)
        filter_chain_free(v[i]);
}

/* Every stage through two synchronous filters; arguments arrive intact. */
static void
test_sync_all_stages(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};
    char *argv[] = {"SIZE=100", "BODY=8BITMIME", NULL};
    struct filter_args ma = {.str = "s@example.org", .argv = argv};
    char body1[] = "line one\r\n", body2[] = "line two\r\n";

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_SYNC);
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);
    assert_int_equal(a.opened, 1);
    assert_int_equal(b.opened, 1);

    stage_str(fs, FILTER_CONNECT, NULL, &r);
    assert_int_equal(r.n, 1); /* synchronous */
    stage_str(fs, FILTER_HELO, "client.example", &r);
    filter_stage(fs, FILTER_MAIL, &ma, rec_done, &r);
    argv[0] = "CHANGED"; /* the chain copied it */
    stage_str(fs, FILTER_RCPT, "r@example.net", &r);
    stage_str(fs, FILTER_UNKNOWN, "XFOO bar", &r);
    stage_str(fs, FILTER_DATA, NULL, &r);
    stage_header(fs, "Subject", " hello\r\n\tworld");
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    stage_body(fs, body1, strlen(body1));
    body1[0] = 'X';
    stage_body(fs, body2, strlen(body2));
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.n, 7);
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_string_equal(r.filter, "");
    assert_string_equal(r.mods, "");

    const char *want = "CONNECT HELO:client.example MAIL:s@example.org "
                       "+SIZE=100 +BODY=8BITMIME RCPT:r@example.net "
                       "UNKNOWN:XFOO bar DATA HEADER:Subject= hello\r\n\tworld "
                       "END-OF-HEADERS BODY:10 BODY:10 END-OF-MESSAGE";
    assert_string_equal(a.log, want);
    assert_string_equal(b.log, want);
    assert_int_equal(a.bodylen, 20);
    assert_memory_equal(a.body, "line one\r\nline two\r\n", 20);
    assert_int_equal(filter_backlog(fs), 0);
    assert_int_equal(a.overlap + b.overlap, 0);

    filter_sess_free(fs);
    assert_int_equal(a.closed, 1);
    assert_int_equal(b.closed, 1);
    filter_chain_free(ch);
}

/* A deferred filter gets one call at a time; done waits for it. */
static void
test_deferred(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec rm = {.tag = "mail"}, r1 = {.tag = "r1"}, r2 = {.tag = "r2"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_DEFER);
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_MAIL, "s@example.org", &rm);
    stage_str(fs, FILTER_RCPT, "one@example.net", &r1);
    stage_str(fs, FILTER_RCPT, "two@example.net", &r2);
    assert_int_equal(rm.n + r1.n + r2.n, 0);
    assert_string_equal(a.log, "MAIL:s@example.org RCPT:one@example.net "
                               "RCPT:two@example.net");
    assert_string_equal(b.log, "MAIL:s@example.org"); /* one at a time */

    tf_answer(&b, FILTER_CONTINUE);
    assert_int_equal(rm.n, 1);
    assert_int_equal(r1.n, 0);
    assert_string_equal(b.log, "MAIL:s@example.org RCPT:one@example.net");
    tf_answer(&b, FILTER_CONTINUE);
    assert_int_equal(r1.n, 1);
    tf_answer(&b, FILTER_CONTINUE);
    assert_int_equal(r2.n, 1);
    assert_null(b.pending);
    assert_string_equal(g_seq, "mail r1 r2");
    assert_int_equal(b.overlap, 0);

    /* a call pending at free time is cancelled: close, no done */
    stage_str(fs, FILTER_DATA, NULL, &rm);
    assert_non_null(b.pending);
    filter_sess_free(fs);
    assert_int_equal(rm.n, 1);
    assert_int_equal(b.closed, 1);
    filter_chain_free(ch);
}

/* Filters answering from other threads through the wpool, on a loop. */
struct loopctx {
    struct rec *last;
    int timeout;
};

static void
guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct loopctx *lc = w->data;

    lc->timeout = 1;
    ev_break(loop, EVBREAK_ALL);
}

static void
run_until(struct ev_loop *loop, struct rec *r, int n)
{
    struct loopctx lc = {r, 0};
    ev_timer guard;

    ev_timer_init(&guard, guard_cb, 10.0, 0);
    guard.data = &lc;
    ev_timer_start(loop, &guard);
    while (r->n < n && !lc.timeout)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
    assert_false(lc.timeout);
}

static void
test_threaded(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct wpool *pool = wpool_new(loop, 3, NULL, 0);
    struct tf a, b, c;
    struct tf *tfs[] = {&a, &b, &c};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};
    char chunk[100];
    int i;

    tf_init(&a, "a", TF_THREAD);
    tf_init(&b, "b", TF_POST);
    tf_init(&c, "c", TF_SYNC);
    a.pool = b.pool = pool;
    b.v[FILTER_EOM] = FILTER_HOLD;
    b.text[FILTER_EOM] = "quarantined by b";
    a.nmods = 1;
    a.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-A", "yes", 0};
    ch = chain_of(tfs, 3);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_CONNECT, NULL, &r);
    assert_int_equal(r.n, 0); /* answers come later, on the loop */
    run_until(loop, &r, 1);
    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    stage_str(fs, FILTER_RCPT, "r@example.net", &r);
    run_until(loop, &r, 3);
    stage_str(fs, FILTER_DATA, NULL, &r);
    run_until(loop, &r, 4);
    stage_header(fs, "From", " s@example.org");
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    for (i = 0; i < 20; i++) {
        memset(chunk, 'a' + i, sizeof(chunk));
        stage_body(fs, chunk, sizeof(chunk));
    }
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_true(filter_backlog(fs) > 0);
    run_until(loop, &r, 5);
    assert_int_equal(r.v, FILTER_HOLD);
    assert_string_equal(r.filter, "b");
    assert_string_equal(r.text, "quarantined by b");
    assert_string_equal(r.mods, "0:X-A=yes;");
    assert_int_equal(filter_backlog(fs), 0);
    /* body chunks arrived in order at every filter */
    assert_int_equal(a.bodylen, 2000);
    assert_int_equal(b.bodylen, 2000);
    for (i = 0; i < 20; i++) {
        assert_int_equal(a.body[i * 100], 'a' + i);
        assert_int_equal(b.body[i * 100 + 99], 'a' + i);
    }
    assert_int_equal(a.overlap + b.overlap, 0);
    assert_string_equal(g_seq, "x x x x x");

    filter_sess_free(fs);
    filter_chain_free(ch);
    wpool_free(pool);
    ev_loop_destroy(loop);
}

/* A slow filter gets body chunks in FIFO order; the backlog counts them. */
static void
test_fifo_backlog(void **state)
{
    struct tf slow, fast;
    struct tf *tfs[] = {&fast, &slow};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "eom"};
    char c1[] = "first\r\n", c2[] = "second\r\n", c3[] = "third\r\n";

    tf_init(&fast, "fast", TF_SYNC);
    tf_init(&slow, "slow", TF_DEFER);
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);
    slow.mode = TF_SYNC;
    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    stage_str(fs, FILTER_DATA, NULL, NULL);
    slow.mode = TF_DEFER;

    stage_header(fs, "Subject", " hi"); /* 7 + 3 bytes */
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    stage_body(fs, c1, 7);
    stage_body(fs, c2, 8);
    stage_body(fs, c3, 7);
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_string_equal(slow.log, "MAIL:s@example.org DATA HEADER:Subject= hi");
    assert_int_equal(filter_backlog(fs), 10 + 7 + 8 + 7);
    tf_answer(&slow, FILTER_CONTINUE); /* header */
    assert_int_equal(filter_backlog(fs), 22);
    tf_answer(&slow, FILTER_CONTINUE); /* eoh */
    tf_answer(&slow, FILTER_CONTINUE); /* first */
    assert_int_equal(filter_backlog(fs), 15);
    tf_answer(&slow, FILTER_CONTINUE); /* second */
    assert_int_equal(filter_backlog(fs), 7);
    assert_int_equal(r.n, 0);
    tf_answer(&slow, FILTER_CONTINUE); /* third */
    assert_int_equal(filter_backlog(fs), 0);
    assert_int_equal(r.n, 0);
    tf_answer(&slow, FILTER_CONTINUE); /* eom */
    assert_int_equal(r.n, 1);
    assert_string_equal(slow.log,
                        "MAIL:s@example.org DATA HEADER:Subject= hi "
                        "END-OF-HEADERS BODY:7 BODY:8 BODY:7 END-OF-MESSAGE");
    assert_memory_equal(slow.body, "first\r\nsecond\r\nthird\r\n", 22);
    assert_memory_equal(fast.body, "first\r\nsecond\r\nthird\r\n", 22);

    filter_sess_free(fs);
    filter_chain_free(ch);
}

static int g_drains;

static void
drain_cb(void *arg)
{
    g_drains++;
    assert_true(filter_backlog(arg) < FILTER_BACKLOG_LOW);
}

static void
test_drain(void **state)
{
    struct tf slow;
    struct tf *tfs[] = {&slow};
    struct filter_chain *ch;
    struct filter_sess *fs;
    size_t sz = 256 * 1024;
    char *big = calloc(1, sz);
    int i;

    g_drains = 0;
    tf_init(&slow, "slow", TF_DEFER);
    ch = chain_of(tfs, 1);
    fs = filter_sess_new(ch, &test_env);
    filter_set_drain(fs, drain_cb, fs);

    /* never high: no drain */
    stage_body(fs, "x\r\n", 3);
    assert_int_equal(filter_backlog(fs), 3);
    tf_answer(&slow, FILTER_CONTINUE);
    assert_int_equal(g_drains, 0);

    for (i = 0; i < 5; i++)
        stage_body(fs, big, sz);
    assert_true(filter_backlog(fs) >= FILTER_BACKLOG_HIGH);
    for (i = 0; i < 4; i++) {
        tf_answer(&slow, FILTER_CONTINUE);
        assert_int_equal(g_drains, 0); /* 1 MB ... 256 KB: not below LOW */
    }
    assert_int_equal(filter_backlog(fs), sz);
    tf_answer(&slow, FILTER_CONTINUE);
    assert_int_equal(filter_backlog(fs), 0);
    assert_int_equal(g_drains, 1);

    filter_sess_free(fs);
    filter_chain_free(ch);
    free(big);
}

/* ACCEPT at CONNECT ends the session for a filter, at MAIL the
 * transaction (ABORT still comes); the transaction verdict is accept. */
static void
test_accept_scopes(void **state)
{
    struct tf a, b, c, d;
    struct tf *tfs[] = {&a, &b, &c, &d};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_SYNC);
    tf_init(&c, "c", TF_SYNC);
    tf_init(&d, "d", TF_SYNC);
    a.v[FILTER_CONNECT] = FILTER_ACCEPT;
    b.v[FILTER_MAIL] = FILTER_ACCEPT;
    d.v[FILTER_HELO] = FILTER_ACCEPT;
    ch = chain_of(tfs, 4);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_CONNECT, NULL, &r);
    assert_int_equal(r.v, FILTER_ACCEPT);
    assert_string_equal(r.filter, "a");
    stage_str(fs, FILTER_HELO, "h", &r);
    assert_int_equal(r.v, FILTER_ACCEPT);
    assert_string_equal(r.filter, "d");
    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    assert_int_equal(r.v, FILTER_ACCEPT);
    assert_string_equal(r.filter, "b");
    stage_str(fs, FILTER_RCPT, "r@example.net", &r);
    assert_int_equal(r.v, FILTER_CONTINUE);
    stage_str(fs, FILTER_DATA, NULL, &r);
    stage_body(fs, "b\r\n", 3);
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.v, FILTER_ACCEPT); /* b's transaction verdict */
    assert_string_equal(r.filter, "b");

    /* next transaction: b is back, then aborted */
    stage_str(fs, FILTER_MAIL, "s2@example.org", &r);
    filter_stage(fs, FILTER_ABORT, NULL, NULL, NULL);

    assert_string_equal(a.log, "CONNECT");
    assert_string_equal(d.log, "CONNECT HELO:h");
    assert_string_equal(b.log, "CONNECT HELO:h MAIL:s@example.org "
                               "MAIL:s2@example.org ABORT");
    assert_string_equal(c.log, "CONNECT HELO:h MAIL:s@example.org "
                               "RCPT:r@example.net DATA BODY:3 "
                               "END-OF-MESSAGE MAIL:s2@example.org ABORT");
    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* Strictest verdict wins; ties go to the earlier filter, whatever the
 * order of the answers. */
static void
test_merge(void **state)
{
    struct tf a, b, c, d;
    struct tf *tfs[] = {&a, &b, &c, &d};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};
    static const enum filter_verdict order[] = {FILTER_CONTINUE, FILTER_ACCEPT,
                                                FILTER_HOLD,     FILTER_DISCARD,
                                                FILTER_TEMPFAIL, FILTER_REJECT};
    size_t i, j;

    tf_init(&a, "a", TF_DEFER);
    tf_init(&b, "b", TF_DEFER);
    tf_init(&c, "c", TF_DEFER);
    tf_init(&d, "d", TF_DEFER);
    a.text[FILTER_UNKNOWN] = "text a";
    b.text[FILTER_UNKNOWN] = "text b";
    c.text[FILTER_UNKNOWN] = "text c";
    c.code[FILTER_UNKNOWN] = 554;
    c.dsn[FILTER_UNKNOWN] = "5.7.0";
    d.text[FILTER_UNKNOWN] = "text d";
    ch = chain_of(tfs, 4);
    fs = filter_sess_new(ch, &test_env);

    /* every pair of verdicts: the stricter one decides */
    for (i = 0; i < 6; i++) {
        for (j = 0; j < 6; j++) {
            int n = r.n;

            stage_str(fs, FILTER_UNKNOWN, "X", &r);
            tf_answer(&d, FILTER_CONTINUE);
            tf_answer(&c, order[j]);
            tf_answer(&a, FILTER_CONTINUE);
            assert_int_equal(r.n, n);
            tf_answer(&b, order[i]);
            assert_int_equal(r.n, n + 1);
            if (i == 0 && j == 0) {
                assert_int_equal(r.v, FILTER_CONTINUE);
                assert_string_equal(r.filter, "");
                assert_string_equal(r.text, "");
            } else if (i >= j) {
                assert_int_equal(r.v, order[i]);
                assert_string_equal(r.filter, "b"); /* tie: earlier */
                assert_string_equal(r.text, "text b");
                assert_int_equal(r.code, 0);
            } else {
                assert_int_equal(r.v, order[j]);
                assert_string_equal(r.filter, "c");
                assert_string_equal(r.text, "text c");
                assert_int_equal(r.code, 554);
                assert_string_equal(r.dsn, "5.7.0");
            }
        }
    }
    /* tie between a and d answered in reverse order: a wins */
    stage_str(fs, FILTER_UNKNOWN, "X", &r);
    tf_answer(&d, FILTER_REJECT);
    tf_answer(&c, FILTER_TEMPFAIL);
    tf_answer(&b, FILTER_CONTINUE);
    tf_answer(&a, FILTER_REJECT);
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.filter, "a");
    assert_string_equal(r.text, "text a");

    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* REJECT at RCPT is per recipient: the filter stays in the transaction. */
static void
test_rcpt_reject(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r1 = {.tag = "r1"}, r2 = {.tag = "r2"}, re = {.tag = "eom"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_SYNC);
    a.rcpt_reject_first = 1;
    a.text[FILTER_RCPT] = "No such user";
    a.code[FILTER_RCPT] = 550;
    a.dsn[FILTER_RCPT] = "5.1.1";
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    stage_str(fs, FILTER_RCPT, "bad@example.net", &r1);
    assert_int_equal(r1.v, FILTER_REJECT);
    assert_int_equal(r1.code, 550);
    assert_string_equal(r1.dsn, "5.1.1");
    assert_string_equal(r1.text, "No such user");
    assert_string_equal(r1.filter, "a");
    stage_str(fs, FILTER_RCPT, "good@example.net", &r2);
    assert_int_equal(r2.v, FILTER_CONTINUE);
    stage_str(fs, FILTER_DATA, NULL, NULL);
    stage_str(fs, FILTER_EOM, NULL, &re);
    assert_int_equal(re.v, FILTER_CONTINUE);
    assert_string_equal(a.log, "MAIL:s@example.org RCPT:bad@example.net "
                               "RCPT:good@example.net DATA END-OF-MESSAGE");
    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* A verdict during the body ends the transaction for that filter: queued
 * chunks are dropped, and the verdict is merged into the EOM result. */
static void
test_body_verdict(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec re = {.tag = "eom"};
    int i;

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_DEFER);
    b.body_reject_at = 2;
    b.code[FILTER_BODY] = 554;
    b.dsn[FILTER_BODY] = "5.7.1";
    b.text[FILTER_BODY] = "Infected: Eicar-Test-Signature";
    a.v[FILTER_EOM] = FILTER_TEMPFAIL;
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);
    b.mode = TF_SYNC;
    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    b.mode = TF_DEFER;

    for (i = 0; i < 4; i++)
        stage_body(fs, "0123456789", 10);
    stage_str(fs, FILTER_EOM, NULL, &re);
    assert_int_equal(filter_backlog(fs), 40);
    tf_answer(&b, FILTER_CONTINUE);
    assert_int_equal(filter_backlog(fs), 30);
    assert_int_equal(re.n, 0);
    tf_answer(&b, FILTER_REJECT); /* second chunk */
    assert_null(b.pending);
    assert_int_equal(filter_backlog(fs), 0);
    assert_int_equal(re.n, 1);
    assert_int_equal(re.v, FILTER_REJECT);
    assert_string_equal(re.filter, "b");
    assert_int_equal(re.code, 554);
    assert_string_equal(re.text, "Infected: Eicar-Test-Signature");
    assert_string_equal(b.log, "MAIL:s@example.org BODY:10 BODY:10");

    /* next transaction: b is offered everything again, nothing remembered */
    b.mode = TF_SYNC;
    a.v[FILTER_EOM] = FILTER_CONTINUE;
    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    stage_body(fs, "0123456789", 10);
    stage_str(fs, FILTER_EOM, NULL, &re);
    assert_int_equal(re.n, 2);
    assert_int_equal(re.v, FILTER_CONTINUE);
    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* Modifications come in chain order whatever the answer order; every
 * type passes through. */
static void
test_mods_order(void **state)
{
    struct tf a, b, c;
    struct tf *tfs[] = {&a, &b, &c};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec re = {.tag = "eom"};

    tf_init(&a, "a", TF_DEFER);
    tf_init(&b, "b", TF_DEFER);
    tf_init(&c, "c", TF_SYNC);
    a.nmods = 4;
    a.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-A", "1", 0};
    a.mods[1] = (struct tf_mspec){FILTER_MOD_INSERT_HEADER, "X-I", "2", 0};
    a.mods[2] = (struct tf_mspec){FILTER_MOD_CHANGE_HEADER, "Subject", NULL, 1};
    a.mods[3] = (struct tf_mspec){FILTER_MOD_REPLACE_BODY, NULL, "new", 0};
    b.nmods = 3;
    b.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_RCPT, NULL, "n@x.org", 0};
    b.mods[1] = (struct tf_mspec){FILTER_MOD_DELETE_RCPT, NULL, "o@x.org", 0};
    b.mods[2] = (struct tf_mspec){FILTER_MOD_CHANGE_SENDER, NULL, "s@x.org", 0};
    c.nmods = 1;
    c.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-C", "3", 0};
    ch = chain_of(tfs, 3);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_EOM, NULL, &re);
    tf_answer(&b, FILTER_CONTINUE);
    tf_answer(&a, FILTER_CONTINUE);
    assert_int_equal(re.n, 1);
    assert_string_equal(re.mods, "0:X-A=1;1:X-I=2;2:Subject=(null);3:=new;"
                                 "4:=n@x.org;5:=o@x.org;6:=s@x.org;"
                                 "0:X-C=3;");
    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* open() returning NULL: every stage is answered tempfail. */
static void
test_open_null(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "milter:inet:127.0.0.1:8891", TF_SYNC);
    b.fail_open = 1;
    a.v[FILTER_CONNECT] = FILTER_HOLD;
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_CONNECT, NULL, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    assert_int_equal(r.code, 451);
    assert_string_equal(r.dsn, "4.7.1");
    assert_string_equal(r.text,
                        "Error: filter milter:inet:127.0.0.1:8891 unavailable");
    assert_string_equal(r.filter, "milter:inet:127.0.0.1:8891");
    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    stage_body(fs, "x", 1);
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    filter_sess_free(fs);
    assert_int_equal(b.closed, 0); /* nothing opened, nothing closed */
    assert_int_equal(a.closed, 1);
    filter_chain_free(ch);
}

/* The done callback frees the session: synchronously inside
 * filter_stage(), and inside filter_answer(). */
static void
test_free_in_done(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_SYNC);
    ch = chain_of(tfs, 2);

    fs = filter_sess_new(ch, &test_env);
    r.free_sess = &fs;
    stage_str(fs, FILTER_CONNECT, NULL, &r);
    assert_null(fs);
    assert_int_equal(r.n, 1);
    assert_int_equal(a.closed, 1);
    assert_int_equal(b.closed, 1);

    b.mode = TF_DEFER;
    fs = filter_sess_new(ch, &test_env);
    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    stage_body(fs, "abc", 3); /* queued behind MAIL for b */
    assert_int_equal(r.n, 1);
    tf_answer(&b, FILTER_CONTINUE);
    assert_null(fs);
    assert_int_equal(r.n, 2);
    assert_int_equal(b.closed, 2);
    assert_string_equal(b.log, "CONNECT MAIL:s@example.org");
    filter_chain_free(ch);
}

/* The done callback stages the next stage; its done runs after. */
static void
test_stage_in_done(void **state)
{
    struct tf a;
    struct tf *tfs[] = {&a};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r2 = {.tag = "rcpt"};
    struct rec r1 = {.tag = "mail", .stage_next = FILTER_RCPT};

    tf_init(&a, "a", TF_SYNC);
    ch = chain_of(tfs, 1);
    fs = filter_sess_new(ch, &test_env);
    r1.stage_sess = fs;
    r1.stage_rec = &r2;
    stage_str(fs, FILTER_MAIL, "s@example.org", &r1);
    assert_int_equal(r1.n, 1);
    assert_int_equal(r2.n, 1);
    assert_string_equal(g_seq, "mail rcpt");
    assert_string_equal(a.log, "MAIL:s@example.org RCPT:next@example.org");

    /* same with a deferred filter: the next stage is queued */
    a.mode = TF_DEFER;
    stage_str(fs, FILTER_MAIL, "t@example.org", &r1);
    assert_int_equal(r1.n, 1);
    tf_answer(&a, FILTER_CONTINUE);
    assert_int_equal(r1.n, 2);
    assert_int_equal(r2.n, 1);
    tf_answer(&a, FILTER_CONTINUE);
    assert_int_equal(r2.n, 2);
    assert_string_equal(g_seq, "mail rcpt mail rcpt");
    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* ABORT: offered only to filters that saw MAIL, after their queued calls,
 * and it clears the transaction. */
static void
test_abort(void **state)
{
    struct tf a, b, c;
    struct tf *tfs[] = {&a, &b, &c};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_SYNC);
    tf_init(&c, "c", TF_SYNC);
    c.v[FILTER_CONNECT] = FILTER_ACCEPT;
    a.v[FILTER_MAIL] = FILTER_REJECT;
    a.text[FILTER_MAIL] = "sender refused";
    ch = chain_of(tfs, 3);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_CONNECT, NULL, &r);
    filter_stage(fs, FILTER_ABORT, NULL, NULL, NULL); /* no MAIL yet */
    assert_string_equal(a.log, "CONNECT");

    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text, "sender refused");
    stage_str(fs, FILTER_RCPT, "r@example.net", &r); /* a is out */
    assert_int_equal(r.v, FILTER_CONTINUE);
    filter_stage(fs, FILTER_ABORT, NULL, NULL, NULL);
    assert_string_equal(a.log, "CONNECT MAIL:s@example.org ABORT");
    assert_string_equal(c.log, "CONNECT"); /* finished for the session */

    /* new transaction: a's MAIL reject is forgotten */
    a.v[FILTER_MAIL] = FILTER_CONTINUE;
    b.mode = TF_DEFER;
    stage_str(fs, FILTER_MAIL, "s2@example.org", &r);
    tf_answer(&b, FILTER_CONTINUE);
    stage_body(fs, "one", 3);
    stage_body(fs, "two", 3);
    filter_stage(fs, FILTER_ABORT, NULL, NULL, NULL);
    stage_str(fs, FILTER_MAIL, "s3@example.org", &r);
    assert_string_equal(b.log, "CONNECT MAIL:s@example.org RCPT:r@example.net "
                               "ABORT MAIL:s2@example.org BODY:3");
    tf_answer(&b, FILTER_CONTINUE);
    tf_answer(&b, FILTER_CONTINUE);
    tf_answer(&b, FILTER_CONTINUE);
    assert_string_equal(b.log, "CONNECT MAIL:s@example.org RCPT:r@example.net "
                               "ABORT MAIL:s2@example.org BODY:3 BODY:3 "
                               "ABORT MAIL:s3@example.org");
    tf_answer(&b, FILTER_CONTINUE);
    b.mode = TF_SYNC;
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.v, FILTER_CONTINUE);

    /* a verdict at ABORT means nothing; REJECT at BODY then ABORT: the
     * queued chunks are dropped but ABORT still comes */
    b.mode = TF_DEFER;
    stage_str(fs, FILTER_MAIL, "s4@example.org", NULL);
    tf_answer(&b, FILTER_CONTINUE);
    stage_body(fs, "one", 3);
    stage_body(fs, "two", 3);
    filter_stage(fs, FILTER_ABORT, NULL, NULL, NULL);
    tf_answer(&b, FILTER_REJECT);
    assert_int_equal(b.pending_st, FILTER_ABORT);
    tf_answer(&b, FILTER_REJECT);
    assert_null(b.pending);
    assert_int_equal(filter_backlog(fs), 0);
    b.mode = TF_SYNC;
    stage_str(fs, FILTER_MAIL, "s5@example.org", &r);
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.v, FILTER_CONTINUE);

    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* HOLD, DISCARD at RCPT end the transaction for the filter and come back
 * in the EOM result; TEMPFAIL at MAIL is remembered too. */
static void
test_txn_verdicts(void **state)
{
    struct tf a, b;
    struct tf *tfs[] = {&a, &b};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct rec r = {.tag = "x"};

    tf_init(&a, "a", TF_SYNC);
    tf_init(&b, "b", TF_SYNC);
    a.v[FILTER_RCPT] = FILTER_HOLD;
    a.text[FILTER_RCPT] = "held";
    b.v[FILTER_EOH] = FILTER_DISCARD;
    ch = chain_of(tfs, 2);
    fs = filter_sess_new(ch, &test_env);

    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    stage_str(fs, FILTER_RCPT, "r@example.net", &r);
    assert_int_equal(r.v, FILTER_HOLD);
    stage_str(fs, FILTER_RCPT, "r2@example.net", &r);
    assert_int_equal(r.v, FILTER_CONTINUE);
    stage_str(fs, FILTER_DATA, NULL, &r);
    stage_header(fs, "A", " b");
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    stage_body(fs, "x", 1);
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.v, FILTER_DISCARD);
    assert_string_equal(r.filter, "b");
    assert_string_equal(a.log, "MAIL:s@example.org RCPT:r@example.net");
    assert_string_equal(b.log, "MAIL:s@example.org RCPT:r@example.net "
                               "RCPT:r2@example.net DATA HEADER:A= b "
                               "END-OF-HEADERS");

    a.v[FILTER_RCPT] = FILTER_CONTINUE;
    b.v[FILTER_EOH] = FILTER_CONTINUE;
    b.v[FILTER_MAIL] = FILTER_TEMPFAIL;
    stage_str(fs, FILTER_MAIL, "s@example.org", &r);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    stage_str(fs, FILTER_EOM, NULL, &r);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    assert_string_equal(r.filter, "b");
    filter_sess_free(fs);
    filter_chain_free(ch);
}

/* ------------------------------------------------------------------ */
/* the ordering rule */

/* The message of a transaction in a file, after 4 bytes of "envelope",
 * as the queue file holds it; msg_env points at it. */
static char g_dir[64];
static char g_path[128];

static void
msg_file(const char *p, size_t n, size_t bigbody)
{
    int fd;
    size_t i;
    char line[32];

    snprintf(g_dir, sizeof(g_dir), "/tmp/test_filter.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/msg", g_dir);
    fd = open(g_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "ENV\n", 4), 4);
    assert_int_equal(write(fd, p, n), (ssize_t) n);
    for (i = 0; i < bigbody / 16; i++) {
        snprintf(line, sizeof(line), "line %09zu\r\n", i); /* 16 bytes */
        assert_int_equal(write(fd, line, 16), 16);
    }
    msg_env.spool_fd = fd;
    msg_env.spool_off = 4;
    msg_env.spool_len = (off_t) (n + bigbody / 16 * 16);
}

static void
msg_file_done(void)
{
    close(msg_env.spool_fd);
    msg_env.spool_fd = -1;
    unlink(g_path);
    rmdir(g_dir);
}

struct outbuf {
    char p[1 << 16];
    size_t n;
};

static int
out_collect(void *arg, const void *p, size_t n)
{
    struct outbuf *o = arg;

    if (o->n + n > sizeof(o->p))
        return -1;
    memcpy(o->p + o->n, p, n);
    o->n += n;
    return 0;
}

/* An EOM result kept past its callback. */
struct keep {
    int n;
    enum filter_verdict v;
    char filter[64];
    struct filter_mod *mods;
};

static void
keep_done(void *arg, const struct filter_result *res)
{
    struct keep *k = arg;
    const struct filter_mod *m;
    struct filter_mod **tail = &k->mods;

    k->n++;
    k->v = res->verdict;
    snprintf(k->filter, sizeof(k->filter), "%s",
             res->filter ? res->filter : "");
    filter_mods_free(k->mods);
    k->mods = NULL;
    for (m = res->mods; m; m = m->next) {
        *tail = filter_mod_new(m->type, m->name, m->value, m->len, m->index,
                               m->args);
        tail = &(*tail)->next;
    }
}

/* The mods applied to the message file, as delivery will do. */
static void
keep_rewrite(const struct keep *k, struct outbuf *o)
{
    o->n = 0;
    assert_int_equal(filter_mods_rewrite(k->mods, msg_env.spool_fd,
                                         msg_env.spool_off, msg_env.spool_len,
                                         out_collect, o),
                     0);
}

/* Answer a deferred filter until it waits at EOM (or has nothing). */
static void
tf_answer_until_eom(struct tf *t)
{
    while (t->pending && t->pending_st != FILTER_EOM)
        tf_answer(t, FILTER_CONTINUE);
}

static const char small_msg[] = "Received: from x\r\n\tby y\r\n"
                                "Subject: hi\r\n"
                                "\r\n"
                                "body line\r\n";

/* The envelope and the live content of small_msg. */
static void
stage_small(struct filter_sess *fs, struct tf *deferred)
{
    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    if (deferred)
        tf_answer_until_eom(deferred);
    stage_str(fs, FILTER_RCPT, "r@example.net", NULL);
    if (deferred)
        tf_answer_until_eom(deferred);
    stage_str(fs, FILTER_DATA, NULL, NULL);
    if (deferred)
        tf_answer_until_eom(deferred);
    stage_header(fs, "Received", " from x\r\n\tby y");
    stage_header(fs, "Subject", " hi");
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    stage_body(fs, "body line\r\n", 11);
    if (deferred)
        tf_answer_until_eom(deferred);
}

/* A reader before a modifier gets the content live; one after it gets
 * nothing live, then the modified message before its EOM. */
static void
test_order_replay(void **state)
{
    struct tf r, m, a;
    struct tf *tfs[] = {&r, &m, &a};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct keep k = {0};
    struct outbuf o;
    const char *envlog = "MAIL:s@example.org RCPT:r@example.net DATA";

    tf_init(&r, "r", TF_SYNC);
    tf_init(&m, "m", TF_DEFER);
    tf_init(&a, "a", TF_SYNC);
    m.modifies = 1;
    m.nmods = 3;
    m.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-M", "yes", 0};
    m.mods[1] = (struct tf_mspec){FILTER_MOD_REPLACE_BODY, NULL, "new ", 0};
    m.mods[2] = (struct tf_mspec){FILTER_MOD_REPLACE_BODY, NULL, "body\n", 0};
    msg_file(small_msg, strlen(small_msg), 0);
    ch = chain_of(tfs, 3);
    fs = filter_sess_new(ch, &msg_env);

    stage_str(fs, FILTER_CONNECT, NULL, NULL);
    tf_answer(&m, FILTER_CONTINUE);
    stage_small(fs, &m);
    assert_int_equal(r.msglen, strlen(small_msg));
    assert_memory_equal(r.msg, small_msg, r.msglen);
    assert_int_equal(m.msglen, strlen(small_msg));
    assert_string_equal(a.log, "CONNECT MAIL:s@example.org "
                               "RCPT:r@example.net DATA");
    assert_true(m.asked >= 1);

    filter_stage(fs, FILTER_EOM, NULL, keep_done, &k);
    assert_string_equal(r.log + strlen(r.log) - 14, "END-OF-MESSAGE");
    assert_int_equal(k.n, 0);
    assert_int_equal(a.msglen, 0); /* still nothing: m has not answered */
    tf_answer(&m, FILTER_CONTINUE);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.v, FILTER_CONTINUE);
    assert_string_equal(a.log, "CONNECT MAIL:s@example.org "
                               "RCPT:r@example.net DATA "
                               "HEADER:Received= from x\r\n\tby y "
                               "HEADER:Subject= hi HEADER:X-M= yes "
                               "END-OF-HEADERS BODY:10 END-OF-MESSAGE");
    keep_rewrite(&k, &o);
    assert_int_equal(o.n, a.msglen);
    assert_memory_equal(o.p, a.msg, o.n);
    assert_memory_equal(a.msg + a.msglen - 12, "\r\nnew body\r\n", 12);
    assert_int_equal(filter_backlog(fs), 0);
    assert_int_equal(a.overlap + m.overlap, 0);

    /* next transaction: m no longer modifies; a gets content live */
    m.modifies = 0;
    m.mode = TF_SYNC;
    a.log[0] = '\0';
    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    stage_header(fs, "Subject", " live");
    assert_string_equal(a.log, "MAIL:s@example.org HEADER:Subject= live");
    filter_stage(fs, FILTER_EOM, NULL, keep_done, &k);
    assert_int_equal(k.n, 2);
    (void) envlog;

    filter_sess_free(fs);
    filter_chain_free(ch);
    filter_mods_free(k.mods);
    msg_file_done();
}

/* R, M1 (header mods, body), M2 (header mod on M1's header, body), R2:
 * M2 sees M1's changes, R2 sees both; the merged list applied to the
 * original is exactly what R2 saw; the later body replacement wins. */
static void
test_order_three(void **state)
{
    struct tf r, m1, m2, r2;
    struct tf *tfs[] = {&r, &m1, &m2, &r2};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct keep k = {0};
    struct outbuf o;
    const struct filter_mod *mm;
    int nbody = 0;
    const char *m2_saw = "X-Top: 1\r\n"
                         "Received: from x\r\n\tby y\r\n"
                         "Subject: hi\r\n"
                         "X-M1: a\r\n"
                         "\r\n"
                         "one\r\n";
    const char *r2_saw = "X-Top: 1\r\n"
                         "Received: from x\r\n\tby y\r\n"
                         "Subject: hi\r\n"
                         "X-M1: changed\r\n"
                         "\r\n"
                         "two\r\n2\r\n";

    tf_init(&r, "r", TF_SYNC);
    tf_init(&m1, "m1", TF_SYNC);
    tf_init(&m2, "m2", TF_SYNC);
    tf_init(&r2, "r2", TF_SYNC);
    m1.modifies = m2.modifies = 1;
    m1.nmods = 3;
    m1.mods[0] = (struct tf_mspec){FILTER_MOD_INSERT_HEADER, "X-Top", "1", 0};
    m1.mods[1] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-M1", "a", 0};
    m1.mods[2] = (struct tf_mspec){FILTER_MOD_REPLACE_BODY, NULL, "one\n", 0};
    m2.nmods = 4;
    m2.mods[0] =
        (struct tf_mspec){FILTER_MOD_CHANGE_HEADER, "X-M1", "changed", 1};
    m2.mods[1] = (struct tf_mspec){FILTER_MOD_REPLACE_BODY, NULL, "two\n", 0};
    m2.mods[2] = (struct tf_mspec){FILTER_MOD_ADD_RCPT, NULL, "n@x.org", 0};
    m2.mods[3] = (struct tf_mspec){FILTER_MOD_REPLACE_BODY, NULL, "2\n", 0};
    msg_file(small_msg, strlen(small_msg), 0);
    ch = chain_of(tfs, 4);
    fs = filter_sess_new(ch, &msg_env);

    stage_small(fs, NULL);
    assert_int_equal(m1.msglen, strlen(small_msg));
    assert_int_equal(m2.msglen + r2.msglen, 0);
    filter_stage(fs, FILTER_EOM, NULL, keep_done, &k);
    assert_int_equal(k.n, 1);
    assert_int_equal(r.msglen, strlen(small_msg));
    assert_memory_equal(r.msg, small_msg, r.msglen);
    assert_int_equal(m2.msglen, strlen(m2_saw));
    assert_memory_equal(m2.msg, m2_saw, m2.msglen);
    assert_int_equal(r2.msglen, strlen(r2_saw));
    assert_memory_equal(r2.msg, r2_saw, r2.msglen);
    assert_string_equal(r2.log + strlen(r2.log) - 14, "END-OF-MESSAGE");

    keep_rewrite(&k, &o);
    assert_int_equal(o.n, r2.msglen);
    assert_memory_equal(o.p, r2.msg, o.n);
    for (mm = k.mods; mm; mm = mm->next)
        if (mm->type == FILTER_MOD_REPLACE_BODY) {
            nbody++;
            assert_true(strncmp(mm->value, "one", 3) != 0);
        }
    assert_int_equal(nbody, 2); /* m2's two parts; m1's dropped */

    filter_sess_free(fs);
    filter_chain_free(ch);
    filter_mods_free(k.mods);
    msg_file_done();
}

/* A reject from M1 ends the transaction: no replay, later filters get
 * ABORT. A replay that cannot read the message: tempfail. */
static void
test_order_reject(void **state)
{
    struct tf r, m1, m2, r2;
    struct tf *tfs[] = {&r, &m1, &m2, &r2};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct keep k = {0};
    const char *live = "MAIL:s@example.org RCPT:r@example.net DATA";

    tf_init(&r, "r", TF_SYNC);
    tf_init(&m1, "m1", TF_SYNC);
    tf_init(&m2, "m2", TF_SYNC);
    tf_init(&r2, "r2", TF_SYNC);
    m1.modifies = m2.modifies = 1;
    m1.v[FILTER_EOM] = FILTER_REJECT;
    m1.text[FILTER_EOM] = "no thanks";
    m1.nmods = 1;
    m1.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-M1", "a", 0};
    msg_file(small_msg, strlen(small_msg), 0);
    ch = chain_of(tfs, 4);
    fs = filter_sess_new(ch, &msg_env);

    stage_small(fs, NULL);
    filter_stage(fs, FILTER_EOM, NULL, keep_done, &k);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.v, FILTER_REJECT);
    assert_string_equal(k.filter, "m1");
    assert_int_equal(m2.msglen + r2.msglen, 0);
    assert_string_equal(m2.log, "MAIL:s@example.org RCPT:r@example.net DATA "
                                "ABORT");
    assert_string_equal(r2.log, m2.log);

    /* the message cannot be read: the held-back filters cannot be served */
    m1.v[FILTER_EOM] = FILTER_CONTINUE;
    m2.log[0] = r2.log[0] = '\0';
    msg_env.spool_len = 1 << 20; /* longer than the file */
    stage_small(fs, NULL);
    filter_stage(fs, FILTER_EOM, NULL, keep_done, &k);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.v, FILTER_TEMPFAIL);
    assert_string_equal(k.filter, "m2");
    /* the header came through, the body read failed: ABORT, no EOM */
    assert_string_equal(m2.log + strlen(m2.log) - 13, "BODY:11 ABORT");
    assert_null(strstr(m2.log, "END-OF-MESSAGE"));
    assert_string_equal(r2.log, "MAIL:s@example.org RCPT:r@example.net DATA "
                                "ABORT"); /* r2: not run after m2 failed */
    (void) live;

    filter_sess_free(fs);
    filter_chain_free(ch);
    filter_mods_free(k.mods);
    msg_file_done();
}

#define BIG_BODY (3 * 1024 * 1024)

static const char big_hdr[] = "Subject: big\r\n\r\n";

/* The held-back filter a answers synchronously until EOM, then it is
 * deferred. */
static struct filter_sess *
big_session(struct filter_chain *ch, struct tf *m, struct tf *a, struct keep *k)
{
    struct filter_sess *fs = filter_sess_new(ch, &msg_env);
    char *chunk = malloc(64 * 1024);
    off_t pos = (off_t) strlen(big_hdr) + 4;
    ssize_t n;

    stage_str(fs, FILTER_MAIL, "s@example.org", NULL);
    stage_str(fs, FILTER_DATA, NULL, NULL);
    stage_header(fs, "Subject", " big");
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    while ((n = pread(msg_env.spool_fd, chunk, 64 * 1024, pos)) > 0) {
        stage_body(fs, chunk, (size_t) n);
        pos += n;
    }
    free(chunk);
    assert_int_equal(m->bodytotal, BIG_BODY);
    a->mode = TF_DEFER;
    filter_stage(fs, FILTER_EOM, NULL, keep_done, k);
    return fs;
}

/* A large body is replayed in chunks, within the backlog bounds. */
static void
test_order_large(void **state)
{
    struct tf m, a;
    struct tf *tfs[] = {&m, &a};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct keep k = {0};
    size_t maxback = 0;

    tf_init(&m, "m", TF_SYNC);
    tf_init(&a, "a", TF_DEFER);
    m.modifies = 1;
    m.nmods = 1;
    m.mods[0] = (struct tf_mspec){FILTER_MOD_ADD_HEADER, "X-M", "1", 0};
    msg_file(big_hdr, strlen(big_hdr), BIG_BODY);
    ch = chain_of(tfs, 2);
    a.mode = TF_SYNC;
    fs = big_session(ch, &m, &a, &k);
    assert_int_equal(a.bodytotal, 0);
    assert_int_equal(k.n, 0);
    while (a.pending && a.pending_st != FILTER_EOM) {
        if (filter_backlog(fs) > maxback)
            maxback = filter_backlog(fs);
        tf_answer(&a, FILTER_CONTINUE);
    }
    assert_non_null(a.pending);
    tf_answer(&a, FILTER_CONTINUE);
    assert_int_equal(k.n, 1);
    assert_true(maxback >= FILTER_BACKLOG_HIGH);        /* it did pause */
    assert_true(maxback < FILTER_BACKLOG_HIGH + 65536); /* and stopped */
    assert_int_equal(a.bodytotal, BIG_BODY);
    assert_int_equal(a.maxchunk, 65536);
    assert_int_equal(a.nbody, BIG_BODY / 65536);
    assert_true(a.bodyhash == m.bodyhash);
    assert_memory_equal(a.msg, "Subject: big\r\nX-M: 1\r\n\r\n", 24);
    assert_int_equal(filter_backlog(fs), 0);
    assert_int_equal(a.overlap, 0);

    filter_sess_free(fs);
    filter_chain_free(ch);
    filter_mods_free(k.mods);
    msg_file_done();
}

static void
free_drain(void *arg)
{
    struct filter_sess **fsp = arg;

    filter_sess_free(*fsp);
    *fsp = NULL;
}

/* The session freed during a replay: directly, and from the drain
 * callback run when the replay's backlog falls. */
static void
test_order_free(void **state)
{
    struct tf m, a;
    struct tf *tfs[] = {&m, &a};
    struct filter_chain *ch;
    struct filter_sess *fs;
    struct keep k = {0};
    int i;

    tf_init(&m, "m", TF_SYNC);
    tf_init(&a, "a", TF_DEFER);
    m.modifies = 1;
    msg_file(big_hdr, strlen(big_hdr), BIG_BODY);
    ch = chain_of(tfs, 2);
    a.mode = TF_SYNC;
    fs = big_session(ch, &m, &a, &k);
    for (i = 0; i < 5; i++)
        tf_answer(&a, FILTER_CONTINUE);
    assert_true(filter_backlog(fs) > 0);
    filter_sess_free(fs);
    assert_int_equal(a.closed, 1);
    assert_int_equal(k.n, 0);

    a.closed = 0;
    a.mode = TF_SYNC;
    m.bodytotal = a.bodytotal = 0;
    fs = big_session(ch, &m, &a, &k);
    filter_set_drain(fs, free_drain, &fs);
    while (fs != NULL && a.pending)
        tf_answer(&a, FILTER_CONTINUE);
    assert_null(fs);
    assert_int_equal(a.closed, 1);
    assert_int_equal(k.n, 0);
    assert_true(a.bodytotal < BIG_BODY);

    filter_chain_free(ch);
    filter_mods_free(k.mods);
    msg_file_done();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_names, setup),
        cmocka_unit_test_setup(test_empty_chain, setup),
        cmocka_unit_test_setup(test_workers, setup),
        cmocka_unit_test_setup(test_sync_all_stages, setup),
        cmocka_unit_test_setup(test_deferred, setup),
        cmocka_unit_test_setup(test_threaded, setup),
        cmocka_unit_test_setup(test_fifo_backlog, setup),
        cmocka_unit_test_setup(test_drain, setup),
        cmocka_unit_test_setup(test_accept_scopes, setup),
        cmocka_unit_test_setup(test_merge, setup),
        cmocka_unit_test_setup(test_rcpt_reject, setup),
        cmocka_unit_test_setup(test_body_verdict, setup),
        cmocka_unit_test_setup(test_mods_order, setup),
        cmocka_unit_test_setup(test_open_null, setup),
        cmocka_unit_test_setup(test_free_in_done, setup),
        cmocka_unit_test_setup(test_stage_in_done, setup),
        cmocka_unit_test_setup(test_abort, setup),
        cmocka_unit_test_setup(test_txn_verdicts, setup),
        cmocka_unit_test_setup(test_order_replay, setup),
        cmocka_unit_test_setup(test_order_three, setup),
        cmocka_unit_test_setup(test_order_reject, setup),
        cmocka_unit_test_setup(test_order_large, setup),
        cmocka_unit_test_setup(test_order_free, setup),
        cmocka_unit_test(test_chains_shared),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
