/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clam.c - the ClamAV filter (clam.h is the spec).
 *
 * libclamav back end:
 *  - struct clam_engine is one compiled engine with a reference count
 *    changed on the loop thread only: the current engine holds one
 *    reference, every scan job one from submit to its done callback. The
 *    last reference frees the engine on the reload worker (freeing a big
 *    engine takes a while; the loop must not wait for it).
 *  - Two pools: the scan pool (clamav_scan_threads) and a one-thread
 *    reload pool, so a reload (tens of seconds with the official
 *    database) never takes a scan thread and two reloads never overlap.
 *  - Reload: a timer every clamav_reload_interval submits one job. With an
 *    engine in service, the job compares the directory with the snapshot
 *    of the last attempt (cl_statchkdir) and does nothing when unchanged,
 *    so a broken database is tried once per change, not every interval.
 *    Without an engine it always tries (a directory that appears later is
 *    picked up). The snapshot is owned by the reload job while it runs.
 *  - EOM: the scan reads the message straight from a dup of the queue
 *    file through a pread callback (cl_fmap_open_handle maps offset 0..len
 *    of our handle; the callback adds spool_off, since libclamav wants
 *    page-aligned map offsets), into a heap map up to CLAM_HEAP_MAP_MAX
 *    (clam.h says why), libclamav's aging map above. A session that closes
 * while its scan runs orphans the job: the done callback then only drops the
 * engine ref. While the first load is still running, EOMs wait for it instead
 * of getting the failure action.
 *  - Scan limits: CL_SCAN_HEURISTIC_EXCEEDS_MAX makes a hit limit a
 *    "Heuristics.Limits.Exceeded.REASON" alert. libclamav 1.4 treats it as
 *    a deferred heuristic (no CL_SCAN_GENERAL_HEURISTIC_PRECEDENCE): the
 *    scan goes on, and a real signature found before or after the limit
 *    is what gets reported (checked with 1.4.6, see test_clam.c).
 *  - Signature names lose libclamav's ".UNOFFICIAL" suffix (added to
 *    every signature of an unsigned database) in replies and logs.
 *
 * clamd back end: one clamd_scan per transaction, opened at the first
 * HEADER stage; HEADER/EOH/BODY reconstruct the queued bytes; a stage is
 * answered when clamd_scan_feed has at most CLAMD_BUF_HIGH buffered,
 * else from the drain callback (back-pressure reaches the client through
 * the chain's backlog). A finished clamd_scan is freed at the next stage
 * or at close, never inside its own callback.
 *
 * Owns: engines, pools, the reload timer, sessions' jobs and clamd scans.
 * Borrows: the cf (clam_conf_new), the loop (start), env (open).
 * Threads: loop thread, except clam_scan_work and clam_reload_work (and
 * clam_engine_free_work) which touch only their job and the engine.
 */
#include <clamav.h>
#include <errno.h>
#include <ev.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filters/clam.h"
#include "filters/clam_fmap.h"
#include "filters/clam_sscanf.h"
#include "filters/clamd.h"
#include "lib/log.h"
#include "lib/wpool.h"
#include "lib/xalloc.h"

#define CLAM_REASON_MAX   512
#define CLAM_VIRNAME_MAX  256
#define CLAM_THREADS_MAX  256
#define CLAM_LIMIT_PREFIX "Heuristics.Limits.Exceeded."
#define CLAM_UNOFFICIAL   ".UNOFFICIAL"

enum clam_action {
    CLAM_A_ACCEPT,
    CLAM_A_TEMPFAIL,
    CLAM_A_REJECT,
    CLAM_A_DISCARD,
    CLAM_A_HOLD
};

enum clam_backend {
    CLAM_B_LIBCLAMAV,
    CLAM_B_CLAMD
};

/* what a scan found */
enum clam_outcome {
    CLAM_O_CLEAN,
    CLAM_O_VIRUS,
    CLAM_O_LIMIT,
    CLAM_O_FAIL
};

struct clam_engine {
    struct cl_engine *e;
    int refs;
    unsigned sigs;
    unsigned dbver;
    char version[64]; /* "ClamAV 1.4.6/27000" (no "/N" for db 0) */
};

struct clam_sess;

struct clam_conf {
    /* parameters */
    int enable;
    enum clam_backend backend;
    char *clamd_spec; /* "unix:/path" or "inet:host:port" */
    char *dbdir;
    int threads;
    long long max_scansize, max_filesize, max_recursion, max_files;
    long long max_scantime_ms;
    enum clam_action limit_action, virus_action, failure_action;
    char *header; /* "" = none */
    char *myhostname;
    double reload_interval; /* 0 = never */
    char *tmpdir;           /* NULL: libclamav's default */
    int disable_cache;
    double clamd_timeout;
    struct cl_scan_options opts;

    /* run time, loop thread */
    struct ev_loop *loop;
    struct wpool *pool;  /* scans */
    struct wpool *rpool; /* (re)loads and engine frees */
    ev_timer reload_timer;
    int timer_on;
    struct clam_engine *cur;
    int reloading;                  /* a reload job is out */
    int first_load;                 /* the first load is still running */
    struct clam_sess *waiting;      /* EOMs waiting for the first load */
    char last_err[CLAM_REASON_MAX]; /* last load failure without engine */
    int clamd_state; /* 0 unknown, 1 ok, -1 failing (log on change) */
    struct clam_stats st;

    /* reload job's own: snapshot of the directory at the last attempt */
    struct cl_stat snap;
    int have_snap;
};

struct clam_job;

struct clam_sess {
    struct clam_conf *cc;
    const struct filter_env *env;
    struct filter_call *call;         /* pending EOM */
    struct filter_call *drain_call;   /* clamd: stage waiting for drain */
    struct clam_job *job;             /* libclamav scan in flight */
    struct clam_sess *wnext, **wprev; /* on cc->waiting */
    struct clamd_scan *cs;            /* clamd: current transaction */
    struct clamd_scan *cs_old;        /* clamd: finished, to free */
    struct timespec t0;
};

struct clam_job {
    struct clam_conf *cc;
    struct clam_sess *s; /* NULL: orphaned */
    struct filter_call *call;
    struct clam_engine *eng;
    struct cl_scan_options opts;
    char qid[64];
    int fd;
    off_t off, len;
    enum clam_outcome out;
    char text[CLAM_REASON_MAX]; /* virus name or reason */
    double ms;
};

struct clam_reload {
    struct clam_conf *cc;
    int check;               /* compare the snapshot first */
    int changed;             /* a load was attempted */
    struct clam_engine *eng; /* new engine or NULL */
    char err[CLAM_REASON_MAX];
    double ms;
};

/* ------------------------------------------------------------------ */
/* small helpers */

static double
clam_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}

static const char *
clam_action_name(enum clam_action a)
{
    switch (a) {
    case CLAM_A_ACCEPT:
        return "accept";
    case CLAM_A_TEMPFAIL:
        return "tempfail";
    case CLAM_A_REJECT:
        return "reject";
    case CLAM_A_DISCARD:
        return "discard";
    case CLAM_A_HOLD:
        return "hold";
    }
    return "?";
}

/* Parse an action word among allowed (a bit set of 1 << action). */
static int
clam_parse_action(const char *param, const char *v, unsigned allowed,
                  const char *words, enum clam_action *out, struct buf *err)
{
    static const enum clam_action all[] = {CLAM_A_ACCEPT, CLAM_A_TEMPFAIL,
                                           CLAM_A_REJECT, CLAM_A_DISCARD,
                                           CLAM_A_HOLD};
    char safe[128];
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if ((allowed & (1u << all[i]))
            && strcasecmp(v, clam_action_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    buf_printf(err, "%s: unknown value \"%s\" (%s)", param,
               log_safe(v, strlen(v), safe, sizeof(safe)), words);
    return -1;
}

/* Strip libclamav's ".UNOFFICIAL" suffix into out. */
static void
clam_virname(const char *v, char *out, size_t outsz)
{
    size_t n = strlen(v), u = strlen(CLAM_UNOFFICIAL);

    if (n > u && strcmp(v + n - u, CLAM_UNOFFICIAL) == 0)
        n -= u;
    log_safe(v, n, out, outsz);
}

static pthread_once_t clam_once = PTHREAD_ONCE_INIT;
static cl_error_t clam_init_rc;
static int clam_fmap_rc;

static void
clam_msg_cb(enum cl_msg severity, const char *fullmsg, const char *msg,
            void *context)
{
    char safe[512];
    size_t n = strlen(msg);

    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        n--;
    log_safe(msg, n, safe, sizeof(safe));
    switch (severity) {
    case CL_MSG_ERROR:
    case CL_MSG_WARN:
        log_warning("clamav: libclamav: %s", safe);
        break;
    case CL_MSG_INFO_VERBOSE:
        break;
    }
}

static void
clam_init_once(void)
{
    cl_set_clcb_msg(clam_msg_cb);
    clam_sscanf_setup(0); /* links clam_sscanf.o in: libclamav's sscanf */
    clam_fmap_rc = clam_fmap_setup(0); /* and clam_fmap.o: its inner maps */
    clam_init_rc = cl_init(CL_INIT_DEFAULT);
}

static int
clam_lib_init(struct buf *err)
{
    pthread_once(&clam_once, clam_init_once);
    if (clam_init_rc != CL_SUCCESS) {
        buf_printf(err, "cannot initialize libclamav: %s",
                   cl_strerror(clam_init_rc));
        return -1;
    }
    if (clam_fmap_rc < 0) {
        buf_puts(err, "cannot find libclamav's cl_fmap_open_handle");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* configuration */

static int
clam_valid_header_name(const char *h)
{
    const char *p;

    for (p = h; *p; p++)
        if (*p <= ' ' || *p >= 127 || *p == ':')
            return 0;
    return p - h <= 76;
}

/* "clamd:unix:/path" or "clamd:inet:host:port" -> "unix:/path" ... */
static int
clam_parse_backend(struct clam_conf *cc, const char *v, struct buf *err)
{
    const char *spec, *port;
    char safe[128];

    if (strcmp(v, "libclamav") == 0) {
        cc->backend = CLAM_B_LIBCLAMAV;
        return 0;
    }
    if (strncmp(v, "clamd:", 6) == 0) {
        spec = v + 6;
        if (strncmp(spec, "unix:/", 6) == 0 && strlen(spec) < 108 + 5) {
            cc->backend = CLAM_B_CLAMD;
            cc->clamd_spec = xstrdup(spec);
            return 0;
        }
        if (strncmp(spec, "inet:", 5) == 0
            && (port = strrchr(spec + 5, ':')) != NULL && port > spec + 5
            && port[1] != '\0'
            && strspn(port + 1, "0123456789") == strlen(port + 1)
            && atoi(port + 1) > 0 && atoi(port + 1) < 65536) {
            cc->backend = CLAM_B_CLAMD;
            cc->clamd_spec = xstrdup(spec);
            return 0;
        }
    }
    buf_printf(err,
               "clamav_backend: unknown value \"%s\" (libclamav, "
               "clamd:unix:/path or clamd:inet:host:port)",
               log_safe(v, strlen(v), safe, sizeof(safe)));
    return -1;
}

struct cf *
clam_cf(const struct cf *cf, const struct cf_service *svcs, size_t n)
{
    struct buf *err;
    struct cf *c;
    size_t i;

    for (i = 0; i < n && !cf_bool(svcs[i].cf, "clamav_enable"); i++)
        ;
    if (!cf_bool(cf, "clamav_enable") && i == n)
        return NULL;
    c = cf_clone(cf);
    err = buf_new(256, 4096);
    if (cf_set(c, "clamav_enable", "yes", NULL, err) < 0
        || cf_check(c, err) < 0)
        log_panic("clam_cf: %s", buf_data(err)); /* main.cf was checked */
    buf_free(err);
    return c;
}

struct clam_conf *
clam_conf_new(const struct cf *cf, struct buf *err)
{
    struct clam_conf *cc = xcalloc(1, sizeof(*cc));
    const char *h;
    long long n;

    cc->enable = cf_bool(cf, "clamav_enable");
    if (clam_parse_backend(cc, cf_str(cf, "clamav_backend"), err) < 0)
        goto fail;
    cc->dbdir = xstrdup(cf_str(cf, "clamav_database_directory"));
    n = cf_int(cf, "clamav_scan_threads");
    if (n < 0 || n > CLAM_THREADS_MAX) {
        buf_printf(err, "clamav_scan_threads: %lld is out of range (0-%d)", n,
                   CLAM_THREADS_MAX);
        goto fail;
    }
    if (n == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

        n = ncpu > 0 ? (ncpu < CLAM_THREADS_MAX ? ncpu : CLAM_THREADS_MAX) : 1;
    }
    cc->threads = (int) n;
    h = cf_str(cf, "clamav_temporary_directory");
    if (h != NULL && *h != '\0') {
        struct stat tsb;

        if (*h != '/') {
            buf_printf(err,
                       "clamav_temporary_directory: %s is not an "
                       "absolute path",
                       h);
            goto fail;
        }
        if (stat(h, &tsb) == 0 && S_ISDIR(tsb.st_mode))
            cc->tmpdir = xstrdup(h);
    }
    cc->disable_cache = cf_bool(cf, "clamav_disable_cache");
    cc->max_scansize = cf_size(cf, "clamav_max_scansize");
    cc->max_filesize = cf_size(cf, "clamav_max_filesize");
    cc->max_recursion = cf_int(cf, "clamav_max_recursion");
    cc->max_files = cf_int(cf, "clamav_max_files");
    if (cc->max_recursion < 0 || cc->max_recursion > UINT32_MAX) {
        buf_printf(err, "clamav_max_recursion: %lld is out of range",
                   cc->max_recursion);
        goto fail;
    }
    if (cc->max_files < 0 || cc->max_files > UINT32_MAX) {
        buf_printf(err, "clamav_max_files: %lld is out of range",
                   cc->max_files);
        goto fail;
    }
    cc->max_scantime_ms = cf_time(cf, "clamav_max_scantime") * 1000;
    if (cc->max_scantime_ms < 0 || cc->max_scantime_ms > UINT32_MAX)
        cc->max_scantime_ms = UINT32_MAX;
    if (clam_parse_action(
            "clamav_limit_action", cf_str(cf, "clamav_limit_action"),
            1u << CLAM_A_ACCEPT | 1u << CLAM_A_TEMPFAIL | 1u << CLAM_A_REJECT,
            "accept, tempfail or reject", &cc->limit_action, err)
            < 0
        || clam_parse_action(
               "clamav_virus_action", cf_str(cf, "clamav_virus_action"),
               1u << CLAM_A_REJECT | 1u << CLAM_A_DISCARD | 1u << CLAM_A_HOLD,
               "reject, discard or hold", &cc->virus_action, err)
               < 0
        || clam_parse_action("clamav_failure_action",
                             cf_str(cf, "clamav_failure_action"),
                             1u << CLAM_A_TEMPFAIL | 1u << CLAM_A_ACCEPT,
                             "tempfail or accept", &cc->failure_action, err)
               < 0)
        goto fail;
    h = cf_str(cf, "clamav_header");
    if (*h && !clam_valid_header_name(h)) {
        char safe[128];

        buf_printf(err, "clamav_header: \"%s\" is not a header field name",
                   log_safe(h, strlen(h), safe, sizeof(safe)));
        goto fail;
    }
    cc->header = xstrdup(h);
    cc->myhostname = xstrdup(cf_str(cf, "myhostname"));
    cc->reload_interval = (double) cf_time(cf, "clamav_reload_interval");
    cc->clamd_timeout = (double) cf_time(cf, "clamav_clamd_timeout");
    if (cc->clamd_timeout <= 0)
        cc->clamd_timeout = 30;

    cc->opts.general = CL_SCAN_GENERAL_HEURISTICS;
    cc->opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
    /* everything but the parsers the operator can turn off */
    cc->opts.parse = ~(uint32_t) (CL_SCAN_PARSE_MAIL | CL_SCAN_PARSE_ARCHIVE
                                  | CL_SCAN_PARSE_HTML | CL_SCAN_PARSE_PDF
                                  | CL_SCAN_PARSE_OLE2);
    if (cf_bool(cf, "clamav_parse_mail"))
        cc->opts.parse |= CL_SCAN_PARSE_MAIL;
    if (cf_bool(cf, "clamav_parse_archive"))
        cc->opts.parse |= CL_SCAN_PARSE_ARCHIVE;
    if (cf_bool(cf, "clamav_parse_html"))
        cc->opts.parse |= CL_SCAN_PARSE_HTML;
    if (cf_bool(cf, "clamav_parse_pdf"))
        cc->opts.parse |= CL_SCAN_PARSE_PDF;
    if (cf_bool(cf, "clamav_parse_ole2"))
        cc->opts.parse |= CL_SCAN_PARSE_OLE2;
    cc->clamd_state = 0;
    return cc;

fail:
    clam_conf_free(cc);
    return NULL;
}

void
clam_conf_free(struct clam_conf *cc)
{
    if (cc == NULL)
        return;
    if (cc->pool || cc->rpool)
        log_panic("clam_conf_free: filter still started");
    if (cc->have_snap)
        cl_statfree(&cc->snap);
    free(cc->clamd_spec);
    free(cc->dbdir);
    free(cc->tmpdir);
    free(cc->header);
    free(cc->myhostname);
    free(cc);
}

void
clam_get_stats(const struct clam_conf *cc, struct clam_stats *st)
{
    *st = cc->st;
}

/* ------------------------------------------------------------------ */
/* engines */

/* Load and compile an engine from dir: any thread, blocking. */
static struct clam_engine *
clam_engine_load(const struct clam_conf *cc, char *err, size_t errsz)
{
    struct clam_engine *eng = xcalloc(1, sizeof(*eng));
    unsigned sigs = 0;
    struct stat sb;
    cl_error_t rc;
    int e;

    if (stat(cc->dbdir, &sb) < 0) {
        snprintf(err, errsz, "%s", strerror(errno));
        goto fail;
    }
    if ((eng->e = cl_engine_new()) == NULL) {
        snprintf(err, errsz, "cannot create a scan engine");
        goto fail;
    }
    if ((rc = cl_engine_set_num(eng->e, CL_ENGINE_MAX_SCANSIZE,
                                cc->max_scansize))
            != CL_SUCCESS
        || (rc = cl_engine_set_num(eng->e, CL_ENGINE_MAX_FILESIZE,
                                   cc->max_filesize))
               != CL_SUCCESS
        || (rc = cl_engine_set_num(eng->e, CL_ENGINE_MAX_RECURSION,
                                   cc->max_recursion))
               != CL_SUCCESS
        || (rc = cl_engine_set_num(eng->e, CL_ENGINE_MAX_FILES, cc->max_files))
               != CL_SUCCESS
        || (rc = cl_engine_set_num(eng->e, CL_ENGINE_MAX_SCANTIME,
                                   cc->max_scantime_ms))
               != CL_SUCCESS) {
        snprintf(err, errsz, "cannot set the scan limits: %s", cl_strerror(rc));
        goto fail;
    }
    if (cc->tmpdir != NULL
        && (rc = cl_engine_set_str(eng->e, CL_ENGINE_TMPDIR, cc->tmpdir))
               != CL_SUCCESS) {
        snprintf(err, errsz, "cannot set the temporary directory: %s",
                 cl_strerror(rc));
        goto fail;
    }
    if (cc->disable_cache
        && (rc = cl_engine_set_num(eng->e, CL_ENGINE_DISABLE_CACHE, 1))
               != CL_SUCCESS) {
        snprintf(err, errsz, "cannot turn the cache off: %s", cl_strerror(rc));
        goto fail;
    }
    rc = cl_load(cc->dbdir, eng->e, &sigs, CL_DB_STDOPT);
    if (rc != CL_SUCCESS) {
        if (rc == CL_EOPEN && S_ISDIR(sb.st_mode))
            snprintf(err, errsz, "no supported database files");
        else
            snprintf(err, errsz, "%s", cl_strerror(rc));
        goto fail;
    }
    if (sigs == 0) {
        snprintf(err, errsz, "no signatures");
        goto fail;
    }
    if ((rc = cl_engine_compile(eng->e)) != CL_SUCCESS) {
        snprintf(err, errsz, "cannot compile the engine: %s", cl_strerror(rc));
        goto fail;
    }
    eng->sigs = sigs;
    eng->dbver = (unsigned) cl_engine_get_num(eng->e, CL_ENGINE_DB_VERSION, &e);
    if (eng->dbver)
        snprintf(eng->version, sizeof(eng->version), "ClamAV %s/%u",
                 cl_retver(), eng->dbver);
    else
        snprintf(eng->version, sizeof(eng->version), "ClamAV %s", cl_retver());
    return eng;

fail:
    if (eng->e)
        cl_engine_free(eng->e);
    free(eng);
    return NULL;
}

static void
clam_engine_free_work(void *arg)
{
    struct clam_engine *eng = arg;

    cl_engine_free(eng->e);
    free(eng);
}

static void
clam_engine_ref(struct clam_engine *eng)
{
    eng->refs++;
}

/* Loop thread. The last reference frees on the reload worker. */
static void
clam_engine_unref(struct clam_conf *cc, struct clam_engine *eng)
{
    if (eng == NULL || --eng->refs > 0)
        return;
    if (cc->rpool)
        wpool_submit(cc->rpool, clam_engine_free_work, NULL, eng);
    else
        clam_engine_free_work(eng);
}

static void
clam_set_version(struct clam_conf *cc)
{
    if (cc->cur)
        snprintf(cc->st.engine_version, sizeof(cc->st.engine_version),
                 "ClamAV %s/db %u", cl_retver(), cc->cur->dbver);
    else
        cc->st.engine_version[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* verdicts */

/* Answer the EOM call: log, count, build the reply. filter_answer() is
 * the last thing (it may free the session). */
static void
clam_verdict(struct clam_conf *cc, struct filter_call *call, const char *qid,
             enum clam_outcome o, const char *text, double ms,
             const char *version)
{
    struct filter_reply r;
    char msg[CLAM_REASON_MAX + 64], hval[CLAM_REASON_MAX + 256];
    const char *id = qid && *qid ? qid : "NOQUEUE";
    long lms = (long) (ms + 0.5);

    memset(&r, 0, sizeof(r));
    hval[0] = '\0';
    cc->st.scans++;
    cc->st.scan_ms += ms;
    switch (o) {
    case CLAM_O_CLEAN:
        cc->st.clean++;
        log_info("%s: clamav: clean (scan %ld ms)", id, lms);
        r.verdict = FILTER_CONTINUE;
        snprintf(hval, sizeof(hval), "clean");
        break;
    case CLAM_O_VIRUS:
        cc->st.infected++;
        log_info("%s: filter=clamav, action=%s, virus=%s (scan %ld ms)", id,
                 clam_action_name(cc->virus_action), text, lms);
        snprintf(msg, sizeof(msg), "Infected: %s", text);
        switch (cc->virus_action) {
        case CLAM_A_REJECT:
            snprintf(msg, sizeof(msg), "Message rejected: Infected: %s", text);
            r.verdict = FILTER_REJECT;
            r.code = 554;
            r.dsn = "5.7.1";
            break;
        case CLAM_A_DISCARD:
            r.verdict = FILTER_DISCARD;
            break;
        case CLAM_A_HOLD:
            r.verdict = FILTER_HOLD;
            snprintf(hval, sizeof(hval), "infected (%s)", text);
            break;
        case CLAM_A_ACCEPT:
        case CLAM_A_TEMPFAIL:
            r.verdict = FILTER_TEMPFAIL; /* not allowed by clam_conf_new */
            break;
        }
        r.text = msg;
        break;
    case CLAM_O_LIMIT:
        cc->st.limits++;
        switch (cc->limit_action) {
        case CLAM_A_ACCEPT:
            log_info("%s: clamav: not fully scanned (%s), accepted", id, text);
            r.verdict = FILTER_CONTINUE;
            snprintf(hval, sizeof(hval), "not fully scanned (%s)", text);
            break;
        case CLAM_A_TEMPFAIL:
            log_info("%s: clamav: not fully scanned (%s), action=tempfail", id,
                     text);
            r.verdict = FILTER_TEMPFAIL;
            r.code = 451;
            r.dsn = "4.3.0";
            snprintf(msg, sizeof(msg), "Error: message not fully scanned (%s)",
                     text);
            r.text = msg;
            break;
        case CLAM_A_REJECT:
        case CLAM_A_DISCARD:
        case CLAM_A_HOLD:
            log_info("%s: clamav: not fully scanned (%s), action=reject", id,
                     text);
            r.verdict = FILTER_REJECT;
            r.code = 554;
            r.dsn = "5.7.1";
            snprintf(msg, sizeof(msg),
                     "Message rejected: not fully scanned (%s)", text);
            r.text = msg;
            break;
        }
        break;
    case CLAM_O_FAIL:
        cc->st.failures++;
        switch (cc->failure_action) {
        case CLAM_A_ACCEPT:
            log_info("%s: clamav: unscanned (%s), accepted by "
                     "clamav_failure_action",
                     id, text);
            r.verdict = FILTER_CONTINUE;
            break;
        case CLAM_A_TEMPFAIL:
        case CLAM_A_REJECT:
        case CLAM_A_DISCARD:
        case CLAM_A_HOLD:
            log_info("%s: clamav: unscanned (%s), action=tempfail", id, text);
            r.verdict = FILTER_TEMPFAIL;
            r.code = 451;
            r.dsn = "4.3.0";
            r.text = "Error: virus scanner failure";
            break;
        }
        break;
    }
    if (*cc->header && *hval) {
        char v[sizeof(hval) + 128];

        snprintf(v, sizeof(v), " %s at %s; %s", version, cc->myhostname, hval);
        /* at the top, like amavisd-new: the front then prepends it in
         * place instead of rewriting the queue file */
        r.mods = filter_mod_new(FILTER_MOD_INSERT_HEADER, cc->header, v,
                                strlen(v), 0, NULL);
    }
    filter_answer(call, &r);
}

static void
clam_answer_continue(struct filter_call *call)
{
    struct filter_reply r;

    memset(&r, 0, sizeof(r));
    r.verdict = FILTER_CONTINUE;
    filter_answer(call, &r);
}

/* ------------------------------------------------------------------ */
/* libclamav scans */

static off_t
clam_pread(void *handle, void *p, size_t count, off_t offset)
{
    struct clam_job *j = handle;
    ssize_t n;

    if (offset < 0 || offset >= j->len)
        return 0;
    if ((off_t) count > j->len - offset)
        count = (size_t) (j->len - offset);
    do
        n = pread(j->fd, p, count, j->off + offset);
    while (n < 0 && errno == EINTR);
    return n;
}

static void
clam_scan_work(void *arg)
{
    struct clam_job *j = arg;
    const char *virname = NULL;
    unsigned long scanned = 0;
    double t0 = clam_now_ms();
    cl_fmap_t *map;
    cl_error_t rc;

    map = cl_fmap_open_handle(j, 0, (size_t) j->len, clam_pread,
                              j->len > CLAM_HEAP_MAP_MAX);
    if (map == NULL) {
        j->out = CLAM_O_FAIL;
        snprintf(j->text, sizeof(j->text), "cannot map the message");
        goto done;
    }
    rc = cl_scanmap_callback(map, NULL, &virname, &scanned, j->eng->e, &j->opts,
                             NULL);
    cl_fmap_close(map);
    switch (rc) {
    case CL_CLEAN:
        j->out = CLAM_O_CLEAN;
        break;
    case CL_VIRUS:
        if (virname == NULL)
            virname = "unknown";
        if (strncmp(virname, CLAM_LIMIT_PREFIX, strlen(CLAM_LIMIT_PREFIX))
            == 0) {
            j->out = CLAM_O_LIMIT;
            clam_virname(virname + strlen(CLAM_LIMIT_PREFIX), j->text,
                         sizeof(j->text));
        } else {
            j->out = CLAM_O_VIRUS;
            clam_virname(virname, j->text, sizeof(j->text));
        }
        break;
    case CL_ETIMEOUT:
        j->out = CLAM_O_LIMIT;
        snprintf(j->text, sizeof(j->text), "MaxScanTime");
        break;
    case CL_EMAXREC:
        j->out = CLAM_O_LIMIT;
        snprintf(j->text, sizeof(j->text), "MaxRecursion");
        break;
    case CL_EMAXSIZE:
        j->out = CLAM_O_LIMIT;
        snprintf(j->text, sizeof(j->text), "MaxScanSize");
        break;
    case CL_EMAXFILES:
        j->out = CLAM_O_LIMIT;
        snprintf(j->text, sizeof(j->text), "MaxFiles");
        break;
    default:
        j->out = CLAM_O_FAIL;
        snprintf(j->text, sizeof(j->text), "scan error: %s", cl_strerror(rc));
        break;
    }
done:
    close(j->fd);
    j->fd = -1;
    j->ms = clam_now_ms() - t0;
}

static void
clam_scan_done(void *arg)
{
    struct clam_job *j = arg;
    struct clam_conf *cc = j->cc;
    struct clam_sess *s = j->s;
    struct filter_call *call = j->call;
    char version[sizeof(j->eng->version)];

    snprintf(version, sizeof(version), "%s", j->eng->version);
    clam_engine_unref(cc, j->eng);
    if (s == NULL) { /* session closed meanwhile */
        free(j);
        return;
    }
    s->job = NULL;
    s->call = NULL;
    clam_verdict(cc, call, j->qid, j->out, j->text, j->ms, version);
    free(j);
}

static void
clam_scan_start(struct clam_sess *s, struct filter_call *call)
{
    struct clam_conf *cc = s->cc;
    const struct filter_env *env = s->env;
    const char *qid = env->queue_id ? env->queue_id : "";
    struct clam_job *j;
    int fd;

    if (cc->cur == NULL) {
        clam_verdict(cc, call, qid, CLAM_O_FAIL, "no virus database loaded", 0,
                     "");
        return;
    }
    if (env->spool_fd < 0 || env->spool_len <= 0) {
        clam_verdict(cc, call, qid, CLAM_O_FAIL, "no message file", 0, "");
        return;
    }
    if ((fd = dup(env->spool_fd)) < 0) {
        char reason[128];

        snprintf(reason, sizeof(reason), "dup: %s", strerror(errno));
        clam_verdict(cc, call, qid, CLAM_O_FAIL, reason, 0, "");
        return;
    }
    j = xcalloc(1, sizeof(*j));
    j->cc = cc;
    j->s = s;
    j->call = call;
    j->eng = cc->cur;
    clam_engine_ref(j->eng);
    j->opts = cc->opts;
    snprintf(j->qid, sizeof(j->qid), "%s", qid);
    j->fd = fd;
    j->off = env->spool_off;
    j->len = env->spool_len;
    s->job = j;
    s->call = call;
    wpool_submit(cc->pool, clam_scan_work, clam_scan_done, j);
}

static void
clam_wait_remove(struct clam_sess *s)
{
    if (s->wprev == NULL)
        return;
    *s->wprev = s->wnext;
    if (s->wnext)
        s->wnext->wprev = s->wprev;
    s->wprev = NULL;
    s->wnext = NULL;
}

/* The first load finished (or failed): start the waiting scans. */
static void
clam_wait_release(struct clam_conf *cc)
{
    struct clam_sess *s;
    struct filter_call *call;

    while ((s = cc->waiting) != NULL) {
        clam_wait_remove(s);
        call = s->call;
        s->call = NULL;
        clam_scan_start(s, call); /* may answer and free s: last use */
    }
}

/* ------------------------------------------------------------------ */
/* reloads */

static void
clam_reload_work(void *arg)
{
    struct clam_reload *rj = arg;
    struct clam_conf *cc = rj->cc; /* only snap and the parameters */
    double t0 = clam_now_ms();

    if (rj->check && cc->have_snap && cl_statchkdir(&cc->snap) == 0)
        return; /* unchanged since the last attempt */
    rj->changed = 1;
    if (cc->have_snap) {
        cl_statfree(&cc->snap);
        cc->have_snap = 0;
    }
    /* snapshot first: a change during the load is seen next time */
    memset(&cc->snap, 0, sizeof(cc->snap));
    if (cl_statinidir(cc->dbdir, &cc->snap) == CL_SUCCESS)
        cc->have_snap = 1;
    rj->eng = clam_engine_load(cc, rj->err, sizeof(rj->err));
    rj->ms = clam_now_ms() - t0;
}

static void
clam_reload_done(void *arg)
{
    struct clam_reload *rj = arg;
    struct clam_conf *cc = rj->cc;
    int first = cc->first_load;

    cc->reloading = 0;
    cc->first_load = 0;
    if (!rj->changed)
        goto out;
    if (rj->eng == NULL) {
        if (!first)
            cc->st.reload_failures++;
        if (cc->cur) {
            log_warning("clamav: reload failed: %s; keeping the current "
                        "engine",
                        rj->err);
        } else if (first || strcmp(cc->last_err, rj->err) != 0) {
            log_error("clamav: cannot load the database from %s: %s; mail "
                      "gets clamav_failure_action (%s)",
                      cc->dbdir, rj->err, clam_action_name(cc->failure_action));
        }
        snprintf(cc->last_err, sizeof(cc->last_err), "%s", rj->err);
        goto out;
    }
    clam_engine_ref(rj->eng);
    cc->last_err[0] = '\0';
    if (cc->cur == NULL)
        log_info("clamav: engine loaded: %u signatures from %s (ClamAV %s, db "
                 "%u), %ld ms",
                 rj->eng->sigs, cc->dbdir, cl_retver(), rj->eng->dbver,
                 (long) (rj->ms + 0.5));
    else {
        cc->st.reloads++;
        log_info("clamav: reloaded: %u signatures (db %u), %ld ms",
                 rj->eng->sigs, rj->eng->dbver, (long) (rj->ms + 0.5));
    }
    clam_engine_unref(cc, cc->cur);
    cc->cur = rj->eng;
    clam_set_version(cc);
out:
    free(rj);
    if (first)
        clam_wait_release(cc);
}

static void
clam_reload_submit(struct clam_conf *cc)
{
    struct clam_reload *rj;

    if (cc->reloading || cc->rpool == NULL)
        return;
    rj = xcalloc(1, sizeof(*rj));
    rj->cc = cc;
    rj->check = cc->cur != NULL;
    cc->reloading = 1;
    wpool_submit(cc->rpool, clam_reload_work, clam_reload_done, rj);
}

static void
clam_reload_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    clam_reload_submit(w->data);
}

/* ------------------------------------------------------------------ */
/* start / stop */

static int
clam_start(void *conf, void *loop, struct buf *err)
{
    struct clam_conf *cc = conf;

    if (!cc->enable || cc->backend == CLAM_B_CLAMD) {
        cc->loop = loop;
        return 0;
    }
    if (cc->pool)
        return 0; /* started already */
    if (clam_lib_init(err) < 0)
        return -1;
    cc->loop = loop;
    cc->pool = wpool_new(cc->loop, cc->threads, "clamscan", WPOOL_BATCH);
    cc->rpool = wpool_new(cc->loop, 1, "clamload", WPOOL_BATCH);
    cc->first_load = 1;
    clam_reload_submit(cc);
    if (cc->reload_interval > 0) {
        ev_timer_init(&cc->reload_timer, clam_reload_timer_cb,
                      cc->reload_interval, cc->reload_interval);
        cc->reload_timer.data = cc;
        ev_timer_start(cc->loop, &cc->reload_timer);
        ev_unref(cc->loop); /* the timer alone does not keep the loop */
        cc->timer_on = 1;
    }
    return 0;
}

static void
clam_stop(void *conf)
{
    struct clam_conf *cc = conf;
    struct wpool *p;

    if (cc->timer_on) {
        ev_ref(cc->loop);
        ev_timer_stop(cc->loop, &cc->reload_timer);
        cc->timer_on = 0;
    }
    if (cc->pool == NULL)
        return;
    p = cc->pool;
    cc->pool = NULL;
    wpool_free(p); /* waits for scans; their done callbacks run */
    p = cc->rpool;
    cc->rpool = NULL; /* engines released from now on are freed inline */
    wpool_free(p);    /* a reload in flight ends (and may swap) */
    clam_engine_unref(cc, cc->cur);
    cc->cur = NULL;
    clam_set_version(cc);
}

/* ------------------------------------------------------------------ */
/* clamd back end */

static void
clam_clamd_state(struct clam_conf *cc, int ok, const char *why)
{
    if (ok && cc->clamd_state < 0)
        log_info("clamav: clamd %s: working again", cc->clamd_spec);
    else if (!ok && cc->clamd_state >= 0)
        log_warning("clamav: clamd %s: %s", cc->clamd_spec, why);
    cc->clamd_state = ok ? 1 : -1;
}

static void
clam_clamd_gc(struct clam_sess *s)
{
    clamd_scan_free(s->cs_old);
    s->cs_old = NULL;
}

static void
clam_clamd_drain(void *arg)
{
    struct clam_sess *s = arg;
    struct filter_call *call = s->drain_call;

    if (call == NULL)
        return;
    s->drain_call = NULL;
    clam_answer_continue(call); /* last use of s */
}

static void
clam_clamd_done(void *arg, enum clamd_result res, const char *text)
{
    struct clam_sess *s = arg;
    struct clam_conf *cc = s->cc;
    struct filter_call *call = s->call;
    const char *qid = s->env->queue_id ? s->env->queue_id : "";
    char name[CLAM_VIRNAME_MAX];
    struct timespec t1;
    double ms;
    enum clam_outcome o = CLAM_O_FAIL;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double) (t1.tv_sec - s->t0.tv_sec) * 1000.0
         + (double) (t1.tv_nsec - s->t0.tv_nsec) / 1e6;
    s->call = NULL;
    s->cs_old = s->cs; /* freed later, not inside its own callback */
    s->cs = NULL;
    if (text == NULL)
        text = "";
    switch (res) {
    case CLAMD_CLEAN:
        o = CLAM_O_CLEAN;
        clam_clamd_state(cc, 1, NULL);
        break;
    case CLAMD_VIRUS:
        o = CLAM_O_VIRUS;
        clam_clamd_state(cc, 1, NULL);
        break;
    case CLAMD_LIMIT:
        o = CLAM_O_LIMIT;
        clam_clamd_state(cc, 1, NULL);
        break;
    case CLAMD_ERROR:
        o = CLAM_O_FAIL;
        clam_clamd_state(cc, 0, text);
        break;
    }
    if (o == CLAM_O_VIRUS)
        clam_virname(text, name, sizeof(name));
    else
        log_safe(text, strlen(text), name, sizeof(name));
    if (call)
        clam_verdict(cc, call, qid, o, name, ms, "ClamAV (clamd)");
}

static void
clam_clamd_open(struct clam_sess *s)
{
    clam_clamd_gc(s);
    if (s->cs)
        return;
    s->cs =
        clamd_scan_new(s->cc->loop, s->cc->clamd_spec, s->cc->clamd_timeout);
    clamd_scan_set_drain(s->cs, clam_clamd_drain, s);
}

/* Feed bytes; answer now, or when clamd's buffer drains. */
static void
clam_clamd_feed(struct clam_sess *s, struct filter_call *call, const void *p,
                size_t n)
{
    clam_clamd_open(s);
    /* clamd.c owes a drain only after going over CLAMD_BUF_HIGH */
    if (clamd_scan_feed(s->cs, p, n) <= CLAMD_BUF_HIGH) {
        clam_answer_continue(call);
        return;
    }
    s->drain_call = call;
}

static void
clam_clamd_stage(struct clam_sess *s, struct filter_call *call,
                 enum filter_stage st, const struct filter_args *args)
{
    struct buf *b;

    if (s->cc->loop == NULL) { /* ops->start was not called */
        if (st == FILTER_EOM)
            clam_verdict(s->cc, call, s->env->queue_id, CLAM_O_FAIL,
                         "clamd back end not started", 0, "");
        else
            clam_answer_continue(call);
        return;
    }
    switch (st) {
    case FILTER_HEADER:
        b = buf_new(256, BUF_NOCAP);
        buf_printf(b, "%s:%s\r\n", args->hname ? args->hname : "",
                   args->hvalue ? args->hvalue : "");
        clam_clamd_feed(s, call, buf_data(b), buf_len(b));
        buf_free(b);
        return;
    case FILTER_EOH:
        clam_clamd_feed(s, call, "\r\n", 2);
        return;
    case FILTER_BODY:
        clam_clamd_feed(s, call, args->data, args->len);
        return;
    case FILTER_EOM:
        clam_clamd_open(s);
        s->call = call;
        clock_gettime(CLOCK_MONOTONIC, &s->t0);
        clamd_scan_end(s->cs, clam_clamd_done, s);
        return;
    case FILTER_ABORT:
    case FILTER_MAIL:
        clamd_scan_free(s->cs);
        s->cs = NULL;
        clam_clamd_gc(s);
        clam_answer_continue(call);
        return;
    case FILTER_CONNECT:
    case FILTER_HELO:
    case FILTER_RCPT:
    case FILTER_DATA:
    case FILTER_UNKNOWN:
        clam_answer_continue(call);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* filter ops */

static void *
clam_open(void *conf, const struct filter_env *env)
{
    struct clam_sess *s = xcalloc(1, sizeof(*s));

    s->cc = conf;
    s->env = env;
    return s;
}

static void
clam_stage(void *state, struct filter_call *call, enum filter_stage st,
           const struct filter_args *args)
{
    struct clam_sess *s = state;
    struct clam_conf *cc = s->cc;

    if (!cc->enable) {
        clam_answer_continue(call);
        return;
    }
    if (cc->backend == CLAM_B_CLAMD) {
        clam_clamd_stage(s, call, st, args);
        return;
    }
    if (st != FILTER_EOM) {
        clam_answer_continue(call);
        return;
    }
    if (cc->first_load) { /* the first load is running: wait for it */
        s->call = call;
        s->wnext = cc->waiting;
        if (cc->waiting)
            cc->waiting->wprev = &s->wnext;
        s->wprev = &cc->waiting;
        cc->waiting = s;
        return;
    }
    clam_scan_start(s, call);
}

static void
clam_close(void *state)
{
    struct clam_sess *s = state;

    clam_wait_remove(s);
    if (s->job) {
        s->job->s = NULL; /* orphaned: its done callback frees it */
        s->job->call = NULL;
    }
    clamd_scan_free(s->cs);
    clamd_scan_free(s->cs_old);
    free(s);
}

/* The scan threads, when the scans run in this process. */
static int
clam_workers(void *conf)
{
    struct clam_conf *cc = conf;

    return cc->pool != NULL ? cc->threads : 0;
}

const struct filter_ops clam_filter_ops = {
    .name = "clamav",
    .open = clam_open,
    .stage = clam_stage,
    .close = clam_close,
    .start = clam_start,
    .stop = clam_stop,
    .workers = clam_workers,
};

/* ------------------------------------------------------------------ */
/* sluice check */

int
clam_check(const struct cf *cf, struct buf *out)
{
    struct buf *err = buf_new(256, 4096);
    struct clam_conf *cc;
    struct clam_engine *eng;
    char reason[CLAM_REASON_MAX];
    long long msl;
    int rc = 0;

    if ((cc = clam_conf_new(cf, err)) == NULL) {
        buf_printf(out, "error: %s\n", buf_data(err));
        rc = -1;
        goto done;
    }
    if (!cc->enable)
        goto done;
    if (cc->backend == CLAM_B_LIBCLAMAV) {
        buf_reset(err);
        if (clam_lib_init(err) < 0) {
            buf_printf(out, "error: clamav: %s\n", buf_data(err));
            rc = -1;
        } else if ((eng = clam_engine_load(cc, reason, sizeof(reason)))
                   == NULL) {
            buf_printf(out,
                       "error: clamav: no usable virus database in %s: "
                       "%s\n",
                       cc->dbdir, reason);
            rc = -1;
        } else
            clam_engine_free_work(eng);
        msl = cf_size(cf, "message_size_limit");
        if (msl == 0 || cc->max_filesize < msl)
            buf_printf(out,
                       "warning: clamav_max_filesize (%lld) is below "
                       "message_size_limit (%lld%s): larger attachments are "
                       "not fully scanned\n",
                       cc->max_filesize, msl, msl == 0 ? ", unlimited" : "");
        if (msl == 0 || cc->max_scansize < msl)
            buf_printf(out,
                       "warning: clamav_max_scansize (%lld) is below "
                       "message_size_limit (%lld%s): larger messages are not "
                       "fully scanned\n",
                       cc->max_scansize, msl, msl == 0 ? ", unlimited" : "");
    }
done:
    clam_conf_free(cc);
    buf_free(err);
    return rc;
}
