/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench_scan.c - ClamAV scan benchmark (a benchmark, not a timed test).
 *
 * Loads one database directory into one libclamav engine with the
 * settings the product uses (clamav_max_* defaults; mail, archive, HTML,
 * PDF and OLE2 parsers; CL_SCAN_GENERAL_HEURISTICS with
 * CL_SCAN_HEURISTIC_EXCEEDS_MAX), reports load and compile time and the
 * RSS after load, then runs COUNT scans on THREADS threads and reports
 * scans/s, CPU ms per scan, wall p50/p99 per scan, peak RSS and the
 * scan-bound ceiling (cores / CPU seconds per scan).
 *
 * Like the product, each scan reads a region of a file (the message after
 * a prefix that stands in for the queue file's envelope records) through
 * cl_fmap_open_handle + cl_scanmap_callback, with the product's choice
 * of map (filters/clam.h, CLAM_HEAP_MAP_MAX; -A: the aging map always),
 * the product's maps for what libclamav extracts (filters/clam_fmap.h;
 * -a: libclamav's aging maps) and the product's sscanf for libclamav
 * (filters/clam_sscanf.h; -S: glibc's).
 *
 * Messages: -m FILE (one template) or -m DIR (every regular file in it,
 * used round robin). Unless -s is given, every scan sees unique bytes:
 * a 10-digit counter is written over the start of a text line inside the
 * body and a base64-encoded counter over the first 8 characters of the
 * first base64 line of an attachment, so that libclamav's clean cache
 * (keyed by the hash of every layer: message, text part, attachment)
 * never turns a scan into a hash lookup. -s scans identical bytes (cache
 * hits after the first scan); -C turns the clean cache off.
 *
 * -g MS: each thread sleeps MS milliseconds before each scan, as a scan
 * thread of a server that is not saturated waits for its next message.
 * Back-to-back scans keep the engine's tries in the CPU's caches; a scan
 * after a pause finds them evicted (by the machine's other work, on a
 * virtual machine by its neighbours too) and costs more. The pause is
 * outside the CPU and wall figures.
 *
 * Owns: everything it allocates; each thread owns one unlinked scan file
 * under $TMPDIR (or /tmp). Threads: the scan threads touch only their own
 * file, their own slots of the latency array and atomic counters.
 */
#include <clamav.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filters/clam.h"
#include "filters/clam_fmap.h"
#include "filters/clam_sscanf.h"
#include "lib/xalloc.h"
#include "tests/bench/msgmark.h"

#define BENCH_MSG_MAX     (256UL << 20) /* one message */
#define BENCH_TOTAL_MAX   (256UL << 20) /* all messages together */
#define BENCH_FILES_MAX   10000         /* messages in a -m directory */
#define BENCH_COUNT_MAX   10000000UL    /* scans */
#define BENCH_THREADS_MAX 256
#define BENCH_COUNT_DEF   1000UL
#define BENCH_PREFIX      4096 /* bytes before each message in a scan file */
#define BENCH_VIRNAME_MAX 128

/* The product's defaults (clamav_max_* in conf/cf_params.c). */
#define BENCH_MAX_SCANSIZE  (400ULL << 20)
#define BENCH_MAX_FILESIZE  (100ULL << 20)
#define BENCH_MAX_RECURSION 17
#define BENCH_MAX_FILES     10000
#define BENCH_MAX_SCANTIME  120000 /* ms */
#define BENCH_GAP_MAX       10000  /* -g: ms */

struct bench_msg {
    char *name;
    char *data;
    size_t len;
    size_t off;          /* where the message starts in every scan file */
    struct msgmark mark; /* where the counters go (msgmark.h) */
};

struct bench {
    /* set up before the threads start, then read-only */
    struct cl_engine *engine;
    struct cl_scan_options scanopts;
    struct bench_msg *msgs;
    size_t nmsgs;
    size_t file_len; /* size of one scan file */
    unsigned long count;
    int same;
    int aging;            /* -A: libclamav's aging map for every size */
    unsigned long gap_ms; /* -g: pause before each scan */
    const char *tmpdir;
    double *lat_ms; /* one slot per scan, written by the thread doing it */
    /* shared between threads */
    atomic_ulong next;
    atomic_ulong clean, infected, limits, errors;
    atomic_int setup_failed; /* a thread could not make its scan file */
    pthread_mutex_t lock;    /* first_virus, first_error */
    char first_virus[BENCH_VIRNAME_MAX];
    char first_error[256];
};

/* The pread handle for one scan: a region of a scan file. */
struct bench_region {
    int fd;
    off_t off;
};

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: bench_scan -d DBDIR -m MSGFILE|MSGDIR [-n COUNT] "
            "[-t THREADS] [-g MS] [-s] [-C] [-E] [-A] [-a] [-S]\n"
            "  -d DBDIR    ClamAV database directory (cl_load)\n"
            "  -m MSG      one message file (made unique per scan) or a\n"
            "              directory of message files (used round robin)\n"
            "  -n COUNT    number of scans (default %lu, max %lu)\n"
            "  -t THREADS  scan threads (default: CPUs online, max %d)\n"
            "  -g MS       pause MS ms before each scan (0-%d; a scan after\n"
            "              a pause, as in a server that is not saturated)\n"
            "  -s          same bytes every scan (clean-cache hits)\n"
            "  -C          clean cache off (CL_ENGINE_DISABLE_CACHE)\n"
            "  -E          expect a virus: exit 1 unless every scan is "
            "infected\n"
            "  -A          libclamav's aging map for every message (the\n"
            "              product uses a heap map up to CLAM_HEAP_MAP_MAX)\n"
            "  -a          libclamav's aging map for every object it extracts\n"
            "              (the product: a heap map up to CLAM_HEAP_MAP_MAX,\n"
            "              clam_fmap.c)\n"
            "  -S          glibc's sscanf for libclamav (the product has its\n"
            "              own for \"%%u\" and \"%%u,%%u\", clam_sscanf.c)\n",
            BENCH_COUNT_DEF, BENCH_COUNT_MAX, BENCH_THREADS_MAX, BENCH_GAP_MAX);
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A decimal number in [min, max]; -1 with a message otherwise. */
static int
parse_ulong(const char *opt, const char *s, unsigned long min,
            unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        goto fail;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto fail;
    *out = v;
    return 0;
fail:
    fprintf(stderr,
            "bench_scan: bad %s \"%s\": want a number from %lu to %lu\n", opt,
            s, min, max);
    return -1;
}

/* VmRSS or VmHWM from /proc/self/status in KB; 0 if unknown. */
static unsigned long
proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t klen = strlen(key);
    unsigned long kb = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            kb = strtoul(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static off_t
bench_pread(void *handle, void *buf, size_t count, off_t offset)
{
    const struct bench_region *r = handle;
    ssize_t n;

    do
        n = pread(r->fd, buf, count, r->off + offset);
    while (n < 0 && errno == EINTR);
    return n;
}

static int
add_msg(struct bench_msg **msgs, size_t *nmsgs, size_t *total, const char *path,
        const char *name)
{
    struct bench_msg m;

    memset(&m, 0, sizeof(m));
    if (msgmark_read("bench_scan", path, BENCH_MSG_MAX, &m.data, &m.len) < 0)
        return -1;
    if (*total + BENCH_PREFIX + m.len > BENCH_TOTAL_MAX) {
        fprintf(stderr, "bench_scan: messages larger than %lu bytes in all\n",
                BENCH_TOTAL_MAX);
        free(m.data);
        return -1;
    }
    m.name = xstrdup(name);
    m.off = *total + BENCH_PREFIX;
    *total = m.off + m.len;
    msgmark_find(m.data, m.len, &m.mark);
    *msgs = xrealloc(*msgs, (*nmsgs + 1) * sizeof(**msgs));
    (*msgs)[(*nmsgs)++] = m;
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* -m FILE or -m DIR (its regular, non-hidden files, sorted by name). */
static int
load_msgs(struct bench *b, const char *path)
{
    struct stat st;
    DIR *d = NULL;
    struct dirent *de;
    char **names = NULL;
    size_t nnames = 0, i;
    int ret = -1;

    if (stat(path, &st) < 0) {
        fprintf(stderr, "bench_scan: %s: %s\n", path, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        const char *base = strrchr(path, '/');
        ret = add_msg(&b->msgs, &b->nmsgs, &b->file_len, path,
                      base != NULL ? base + 1 : path);
        goto fail;
    }
    d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "bench_scan: %s: %s\n", path, strerror(errno));
        goto fail;
    }
    while ((de = readdir(d)) != NULL) {
        char *full;
        if (de->d_name[0] == '.')
            continue;
        if (asprintf(&full, "%s/%s", path, de->d_name) < 0)
            goto fail;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            if (nnames == BENCH_FILES_MAX) {
                fprintf(stderr, "bench_scan: %s: more than %d files\n", path,
                        BENCH_FILES_MAX);
                free(full);
                goto fail;
            }
            names = xrealloc(names, (nnames + 1) * sizeof(*names));
            names[nnames++] = full;
        } else {
            free(full);
        }
    }
    if (nnames == 0) {
        fprintf(stderr, "bench_scan: %s: no message files\n", path);
        goto fail;
    }
    qsort(names, nnames, sizeof(*names), cmp_str);
    for (i = 0; i < nnames; i++)
        if (add_msg(&b->msgs, &b->nmsgs, &b->file_len, names[i],
                    names[i] + strlen(path) + 1)
            < 0)
            goto fail;
    ret = 0;
fail:
    for (i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    if (d != NULL)
        closedir(d);
    return ret;
}

/* One scan file per thread: each message after a BENCH_PREFIX filler. */
static int
make_scan_file(const struct bench *b)
{
    char *path = NULL, *filler = xmalloc(BENCH_PREFIX);
    size_t i;
    int fd = -1;

    memset(filler, 'E', BENCH_PREFIX);
    if (asprintf(&path, "%s/bench_scan.XXXXXX", b->tmpdir) < 0) {
        path = NULL;
        goto fail;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "bench_scan: mkstemp %s: %s\n", path, strerror(errno));
        goto fail;
    }
    unlink(path);
    for (i = 0; i < b->nmsgs; i++) {
        const struct bench_msg *m = &b->msgs[i];
        if (pwrite(fd, filler, BENCH_PREFIX, m->off - BENCH_PREFIX)
                != BENCH_PREFIX
            || pwrite(fd, m->data, m->len, m->off) != (ssize_t) m->len) {
            fprintf(stderr, "bench_scan: write scan file in %s: %s\n",
                    b->tmpdir, strerror(errno));
            goto fail;
        }
    }
    free(path);
    free(filler);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    free(filler);
    return -1;
}

/* Makes scan number i of message m unique in the thread's scan file. */
static int
patch_msg(int fd, const struct bench_msg *m, unsigned long i)
{
    char text[MSGMARK_TEXT_LEN], enc[MSGMARK_B64_LEN];

    if (m->mark.text_pos >= 0) {
        msgmark_text(i, text);
        if (pwrite(fd, text, MSGMARK_TEXT_LEN, m->off + m->mark.text_pos)
            != MSGMARK_TEXT_LEN)
            return -1;
    }
    if (m->mark.b64_pos >= 0) {
        msgmark_b64(i, enc);
        if (pwrite(fd, enc, MSGMARK_B64_LEN, m->off + m->mark.b64_pos)
            != MSGMARK_B64_LEN)
            return -1;
    }
    return 0;
}

static void
note_first(struct bench *b, char *slot, size_t size, const char *what)
{
    pthread_mutex_lock(&b->lock);
    if (slot[0] == '\0')
        snprintf(slot, size, "%s", what);
    pthread_mutex_unlock(&b->lock);
}

static void *
scan_thread(void *arg)
{
    struct bench *b = arg;
    int fd = make_scan_file(b);
    unsigned long i;

    if (fd < 0) {
        atomic_store(&b->setup_failed, 1);
        return NULL;
    }
    while ((i = atomic_fetch_add(&b->next, 1)) < b->count) {
        const struct bench_msg *m = &b->msgs[i % b->nmsgs];
        struct bench_region r = {.fd = fd, .off = m->off};
        struct cl_scan_options opts = b->scanopts;
        const char *virname = NULL;
        unsigned long scanned = 0;
        cl_fmap_t *map;
        cl_error_t rc;
        double t0;

        if (!b->same && patch_msg(fd, m, i) < 0) {
            atomic_fetch_add(&b->errors, 1);
            note_first(b, b->first_error, sizeof(b->first_error),
                       strerror(errno));
            b->lat_ms[i] = 0;
            continue;
        }
        if (b->gap_ms > 0) {
            struct timespec gap = {.tv_sec = (time_t) (b->gap_ms / 1000),
                                   .tv_nsec =
                                       (long) (b->gap_ms % 1000) * 1000000L};

            while (nanosleep(&gap, &gap) < 0 && errno == EINTR)
                ;
        }
        t0 = now_ms();
        map = cl_fmap_open_handle(&r, 0, m->len, bench_pread,
                                  b->aging || m->len > CLAM_HEAP_MAP_MAX);
        if (map == NULL) {
            rc = CL_EMEM;
        } else {
            rc = cl_scanmap_callback(map, m->name, &virname, &scanned,
                                     b->engine, &opts, NULL);
            cl_fmap_close(map);
        }
        b->lat_ms[i] = now_ms() - t0;
        if (rc == CL_CLEAN) {
            atomic_fetch_add(&b->clean, 1);
        } else if (rc == CL_VIRUS && virname != NULL
                   && strncmp(virname, "Heuristics.Limits.Exceeded", 26) == 0) {
            atomic_fetch_add(&b->limits, 1);
            note_first(b, b->first_virus, sizeof(b->first_virus), virname);
        } else if (rc == CL_VIRUS) {
            atomic_fetch_add(&b->infected, 1);
            note_first(b, b->first_virus, sizeof(b->first_virus),
                       virname != NULL ? virname : "(no name)");
        } else {
            atomic_fetch_add(&b->errors, 1);
            note_first(b, b->first_error, sizeof(b->first_error),
                       cl_strerror(rc));
        }
    }
    close(fd);
    return NULL;
}

static int
engine_load(struct bench *b, const char *dbdir, int no_cache)
{
    unsigned int sigs = 0;
    unsigned long rss0, rss1;
    double t0, t1, t2;
    struct stat sb;
    cl_error_t rc;
    int version;

    rc = cl_init(CL_INIT_DEFAULT);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "bench_scan: cl_init: %s\n", cl_strerror(rc));
        return -1;
    }
    rss0 = proc_status_kb("VmRSS");
    b->engine = cl_engine_new();
    if (b->engine == NULL) {
        fprintf(stderr, "bench_scan: cl_engine_new failed\n");
        return -1;
    }
    if (cl_engine_set_num(b->engine, CL_ENGINE_MAX_SCANSIZE, BENCH_MAX_SCANSIZE)
            != CL_SUCCESS
        || cl_engine_set_num(b->engine, CL_ENGINE_MAX_FILESIZE,
                             BENCH_MAX_FILESIZE)
               != CL_SUCCESS
        || cl_engine_set_num(b->engine, CL_ENGINE_MAX_RECURSION,
                             BENCH_MAX_RECURSION)
               != CL_SUCCESS
        || cl_engine_set_num(b->engine, CL_ENGINE_MAX_FILES, BENCH_MAX_FILES)
               != CL_SUCCESS
        || cl_engine_set_num(b->engine, CL_ENGINE_MAX_SCANTIME,
                             BENCH_MAX_SCANTIME)
               != CL_SUCCESS
        || (no_cache
            && cl_engine_set_num(b->engine, CL_ENGINE_DISABLE_CACHE, 1)
                   != CL_SUCCESS)) {
        fprintf(stderr, "bench_scan: cl_engine_set_num failed\n");
        return -1;
    }
    /* as the product: clamav_temporary_directory's default, /dev/shm */
    if (stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode)
        && cl_engine_set_str(b->engine, CL_ENGINE_TMPDIR, "/dev/shm")
               != CL_SUCCESS) {
        fprintf(stderr, "bench_scan: cl_engine_set_str failed\n");
        return -1;
    }
    t0 = now_ms();
    rc = cl_load(dbdir, b->engine, &sigs, CL_DB_STDOPT);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "bench_scan: cl_load %s: %s\n", dbdir, cl_strerror(rc));
        return -1;
    }
    if (sigs == 0) {
        fprintf(stderr, "bench_scan: %s: no signatures loaded\n", dbdir);
        return -1;
    }
    t1 = now_ms();
    rc = cl_engine_compile(b->engine);
    if (rc != CL_SUCCESS) {
        fprintf(stderr, "bench_scan: cl_engine_compile: %s\n", cl_strerror(rc));
        return -1;
    }
    t2 = now_ms();
    rss1 = proc_status_kb("VmRSS");
    version = (int) cl_engine_get_num(b->engine, CL_ENGINE_DB_VERSION, NULL);
    printf("engine:      ClamAV %s, db version %d, %u signatures from %s\n",
           cl_retver(), version, sigs, dbdir);
    printf("load:        %.0f ms load + %.0f ms compile = %.0f ms\n", t1 - t0,
           t2 - t1, t2 - t0);
    printf("rss:         %.1f MB after load (%.1f MB before, +%.1f MB)\n",
           rss1 / 1024.0, rss0 / 1024.0, ((double) rss1 - rss0) / 1024.0);
    return 0;
}

static double
tv_ms(struct timeval tv)
{
    return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

static int
run(struct bench *b, unsigned long nthreads)
{
    pthread_t *tids = xcalloc(nthreads, sizeof(*tids));
    struct rusage ru0, ru1;
    unsigned long started = 0, t, ncpu;
    double t0, wall, user, sys, cpu_ms, ceiling;
    int ret = -1;

    getrusage(RUSAGE_SELF, &ru0);
    t0 = now_ms();
    for (t = 0; t < nthreads; t++) {
        int err = pthread_create(&tids[t], NULL, scan_thread, b);
        if (err != 0) {
            fprintf(stderr, "bench_scan: pthread_create: %s\n", strerror(err));
            break;
        }
        started++;
    }
    for (t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    wall = now_ms() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    if (started < nthreads || atomic_load(&b->setup_failed))
        goto fail;

    user = tv_ms(ru1.ru_utime) - tv_ms(ru0.ru_utime);
    sys = tv_ms(ru1.ru_stime) - tv_ms(ru0.ru_stime);
    cpu_ms = (user + sys) / b->count;
    ncpu =
        sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    ceiling = cpu_ms > 0 ? ncpu * 1000.0 / cpu_ms : 0;
    msgmark_sort_ms(b->lat_ms, b->count);

    printf("scans:       %lu in %.2f s on %lu threads: %.1f scans/s\n",
           b->count, wall / 1e3, nthreads, b->count * 1e3 / wall);
    printf("cpu:         %.3f ms per scan (user %.3f + sys %.3f)\n", cpu_ms,
           user / b->count, sys / b->count);
    printf("wall:        p50 %.3f ms, p99 %.3f ms, max %.3f ms per scan\n",
           msgmark_percentile(b->lat_ms, b->count, 50),
           msgmark_percentile(b->lat_ms, b->count, 99),
           b->lat_ms[b->count - 1]);
    printf("peak rss:    %.1f MB\n", ru1.ru_maxrss / 1024.0);
    printf("ceiling:     %.0f msg/s scan-bound (%lu cores / %.3f ms CPU per "
           "scan)\n",
           ceiling, ncpu, cpu_ms);
    printf("results:     clean %lu, infected %lu, limits %lu, errors %lu%s%s"
           "%s%s\n",
           atomic_load(&b->clean), atomic_load(&b->infected),
           atomic_load(&b->limits), atomic_load(&b->errors),
           b->first_virus[0] != '\0' ? "; first virus: " : "", b->first_virus,
           b->first_error[0] != '\0' ? "; first error: " : "", b->first_error);
    printf("summary: scans_per_s=%.1f cpu_ms=%.3f p50_ms=%.3f p99_ms=%.3f "
           "peak_rss_mb=%.1f ceiling=%.0f threads=%lu count=%lu gap_ms=%lu "
           "clean=%lu infected=%lu limits=%lu errors=%lu virus=%s\n",
           b->count * 1e3 / wall, cpu_ms,
           msgmark_percentile(b->lat_ms, b->count, 50),
           msgmark_percentile(b->lat_ms, b->count, 99), ru1.ru_maxrss / 1024.0,
           ceiling, nthreads, b->count, b->gap_ms, atomic_load(&b->clean),
           atomic_load(&b->infected), atomic_load(&b->limits),
           atomic_load(&b->errors),
           b->first_virus[0] != '\0' ? b->first_virus : "-");
    ret = 0;
fail:
    free(tids);
    return ret;
}

/* One line per message: size and how it is made unique per scan. */
static void
describe_msg(const struct bench_msg *m, int same)
{
    printf("message:     %s, %zu bytes, ", m->name, m->len);
    if (same)
        printf("same bytes every scan\n");
    else if (m->mark.text_pos < 0 && m->mark.b64_pos < 0)
        printf("NOT unique: no text or base64 line to patch\n");
    else
        printf("unique per scan: counter in text at byte %ld, in base64 at "
               "byte %ld (-1: none)\n",
               m->mark.text_pos, m->mark.b64_pos);
}

int
main(int argc, char **argv)
{
    struct bench b;
    const char *dbdir = NULL, *msgpath = NULL;
    unsigned long count = BENCH_COUNT_DEF, nthreads = 0, ncpu;
    int no_cache = 0, expect_virus = 0, plain_fmap = 0, c, ret = 2;
    size_t i;

    xalloc_tune(); /* the product's malloc settings (lib/xalloc.h) */
    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.lock, NULL);
    while ((c = getopt(argc, argv, "d:m:n:t:g:sCEAaSh")) != -1) {
        switch (c) {
        case 'd':
            dbdir = optarg;
            break;
        case 'm':
            msgpath = optarg;
            break;
        case 'n':
            if (parse_ulong("-n COUNT", optarg, 1, BENCH_COUNT_MAX, &count) < 0)
                goto fail;
            break;
        case 't':
            if (parse_ulong("-t THREADS", optarg, 1, BENCH_THREADS_MAX,
                            &nthreads)
                < 0)
                goto fail;
            break;
        case 'g':
            if (parse_ulong("-g MS", optarg, 0, BENCH_GAP_MAX, &b.gap_ms) < 0)
                goto fail;
            break;
        case 's':
            b.same = 1;
            break;
        case 'C':
            no_cache = 1;
            break;
        case 'E':
            expect_virus = 1;
            break;
        case 'A':
            b.aging = 1;
            break;
        case 'a':
            plain_fmap = 1;
            break;
        case 'S':
            clam_sscanf_setup(1);
            break;
        case 'h':
            usage(stdout);
            ret = 0;
            goto fail;
        default:
            usage(stderr);
            goto fail;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bench_scan: unexpected argument \"%s\"\n",
                argv[optind]);
        usage(stderr);
        goto fail;
    }
    if (dbdir == NULL || msgpath == NULL || *dbdir == '\0'
        || *msgpath == '\0') {
        fprintf(stderr, "bench_scan: -d DBDIR and -m MSG are required\n");
        usage(stderr);
        goto fail;
    }
    if (clam_fmap_setup(plain_fmap) < 0) {
        fprintf(stderr, "bench_scan: cannot find libclamav's "
                        "cl_fmap_open_handle\n");
        ret = 1;
        goto fail;
    }
    ncpu =
        sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    if (nthreads == 0)
        nthreads = ncpu < BENCH_THREADS_MAX ? ncpu : BENCH_THREADS_MAX;
    if (nthreads > count)
        nthreads = count;
    b.count = count;
    b.tmpdir = getenv("TMPDIR") != NULL && *getenv("TMPDIR") != '\0'
                   ? getenv("TMPDIR")
                   : "/tmp";

    ret = 1;
    if (load_msgs(&b, msgpath) < 0)
        goto fail;
    for (i = 0; i < b.nmsgs; i++) {
        describe_msg(&b.msgs[i], b.same);
    }
    if (engine_load(&b, dbdir, no_cache) < 0)
        goto fail;
    b.scanopts.general = CL_SCAN_GENERAL_HEURISTICS;
    b.scanopts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;
    b.scanopts.parse = ~(uint32_t) 0; /* as filters/clam.c: every parser */
    printf("settings:    %lu threads, %lu scans, clean cache %s, scan files "
           "in %s, pause before each scan %lu ms\n",
           nthreads, count, no_cache ? "off" : "on", b.tmpdir, b.gap_ms);
    fflush(stdout);
    b.lat_ms = xcalloc(count, sizeof(*b.lat_ms));
    if (run(&b, nthreads) < 0)
        goto fail;
    ret = atomic_load(&b.errors) > 0 ? 1 : 0;
    if (expect_virus && atomic_load(&b.infected) != count) {
        fprintf(stderr, "bench_scan: -E: %lu of %lu scans found a virus\n",
                atomic_load(&b.infected), count);
        ret = 1;
    }
fail:
    free(b.lat_ms);
    for (i = 0; i < b.nmsgs; i++) {
        free(b.msgs[i].name);
        free(b.msgs[i].data);
    }
    free(b.msgs);
    if (b.engine != NULL)
        cl_engine_free(b.engine);
    pthread_mutex_destroy(&b.lock);
    return ret;
}
