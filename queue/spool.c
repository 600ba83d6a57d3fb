/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spool.c - durable queue files and the queue directory.
 *
 * File format, version 1. All integers are big-endian.
 *
 *   offset 0   "SLUICEQF"            8-byte magic
 *   offset 8   u32 version (1)
 *   offset 12  optional gap record: 'G' u32 g, then g unused bytes
 *              (room to prepend header fields without moving the content:
 *              spool_prepend() writes them just before the content and
 *              shrinks the gap; spool_replace_head() puts a changed
 *              header where the old one began and moves the gap's end,
 *              never past its first SPOOL_GAP bytes). g <= SPOOL_GAP_MAX.
 *   then       content record:  'C' u32 len, then len raw content bytes
 *              (CRLF lines, exactly as queued). content_off is 17, or
 *              22 + g after a gap record.
 *   then the envelope records, each  u8 type, u32 len, len payload bytes:
 *     'I' queue ID (14 upper-case hex)      mandatory, once
 *     'T' arrival, s64 microseconds (>= 0)  mandatory, once
 *     'N' client name                       optional, once
 *     'a' client address                    optional, once
 *     'p' client port, u32 (0..65535)       optional, once
 *     'H' HELO name                         optional, once (may be empty)
 *     'P' protocol                          optional, once
 *     'S' sender ("" = null sender)         mandatory, once
 *     'B' body type                         optional, once
 *     'h' hold reason                       optional, once
 *     'Z' content size, u64 (== content len) mandatory, once
 *     'R' recipient: u8 status, address [NUL ORCPT [NUL ORIG]]  one or
 *         more; ORCPT (the DSN parameter) may be empty when ORIG (the
 *         address as the client gave it, before virtual_alias_maps
 *         rewrote it) follows
 *   then the end record:
 *     'E' u32 checksum: FNV-1a (32 bit) over every envelope record byte
 *         from the first envelope record up to the end record, with each
 *         recipient status byte counted as 0 (the status is updated in
 *         place after the file is written).
 *   Nothing may follow the end record.
 *
 * Strings carry no NUL byte and are at most SPOOL_STR_MAX bytes; a file
 * holds at most SPOOL_RCPT_MAX recipients and SPOOL_ENV_MAX envelope bytes.
 *
 * Writing order: spool_create() puts the header and a content record
 * whose length is 0 into a write-behind buffer; spool_write() appends
 * content to it (writing out whenever SPOOL_WB_MAX would be passed);
 * spool_content_done() writes out what waits, with the content length
 * patched in; spool_prepend() and spool_replace_head() write the gap's
 * new length, its zero bytes, the content record and the header bytes in
 * one pwrite(); spool_finish() writes the
 * content length if the file does not hold it yet, then what waits and
 * the envelope and the end record in one pwritev(). A file torn anywhere
 * fails to parse: until the envelope is written no valid end record with
 * a matching checksum follows the content (and before the content is
 * done its length is 0, so the content bytes are read as envelope
 * records); a temp file is never renamed into a queue unfinished.
 *
 * The status byte of a recipient sits at a fixed offset (record start + 5),
 * so spool_msg_mark() rewrites it in place with one pwrite().
 *
 * spool_read() leaves errno ENOENT when the file is gone and EBADMSG when
 * it is malformed (the caller moves it to corrupt/); other values are I/O
 * errors. Readers get client_name/client_addr "unknown" and proto "SMTP"
 * when the file has none; helo, body_type and hold_reason stay NULL.
 *
 * Owns: a spool_file owns its fd and temp path until commit or abort; a
 * spool_msg owns its fd, path and envelope strings.
 * Threads: the ID generator is guarded by a mutex; spool_commit() and
 * spool_msg_sync() run in a worker and touch only their argument.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/xalloc.h"
#include "queue/spool.h"

#define SPOOL_MAGIC       "SLUICEQF"
#define SPOOL_MAGIC_LEN   8
#define SPOOL_VERSION     1
#define SPOOL_REC_HDR     5 /* type + u32 length */
#define SPOOL_CONTENT_OFF (SPOOL_MAGIC_LEN + 4 + SPOOL_REC_HDR) /* no gap */
#define SPOOL_GAP         384                  /* written by spool_create() */
#define SPOOL_GAP_MAX     65536                /* accepted when reading */
#define SPOOL_STR_MAX     65536                /* one string */
#define SPOOL_ENV_MAX     (64u * 1024 * 1024)  /* envelope bytes */
#define SPOOL_CONTENT_MAX ((off_t) UINT32_MAX) /* content bytes */
#define SPOOL_WB_MAX      16384                /* write-behind bytes */
#define SPOOL_HEAD_SIZE   (SPOOL_CONTENT_OFF + SPOOL_REC_HDR + SPOOL_GAP)

enum spool_rec {
    REC_CONTENT = 'C',
    REC_GAP = 'G',
    REC_ID = 'I',
    REC_ARRIVAL = 'T',
    REC_CLIENT_NAME = 'N',
    REC_CLIENT_ADDR = 'a',
    REC_CLIENT_PORT = 'p',
    REC_HELO = 'H',
    REC_PROTO = 'P',
    REC_SENDER = 'S',
    REC_BODY = 'B',
    REC_HOLD = 'h',
    REC_SIZE = 'Z',
    REC_RCPT = 'R',
    REC_END = 'E'
};

/* Every queue, in the order spool_locate() looks. */
static const char *const spool_queues[] = {"incoming", "active", "deferred",
                                           "hold", "corrupt"};
#define SPOOL_NQUEUES (sizeof(spool_queues) / sizeof(spool_queues[0]))

enum spool_state {
    SPOOL_S_WRITING,  /* content being appended */
    SPOOL_S_FINISHED, /* envelope written, not yet durable */
    SPOOL_S_COMMITTED /* renamed into its queue */
};

struct spool_file {
    enum spool_state state;
    int fd;
    char id[SPOOL_ID_SIZE];
    char *qdir;
    char *tmp_path;    /* qdir/incoming/.ID[.N] */
    off_t content_off; /* where the content starts (moves back on prepend) */
    off_t content_size;
    int reused; /* taken from free/: cut the old tail at finish */
    /* Write-behind: bytes not in the file yet, for file offset wb_off on
     * (the head and the content up to SPOOL_WB_MAX, so a small message
     * reaches the file in one write); clen_disk: the content length the
     * file's content record holds (or will once wb is written). */
    unsigned char *wb;
    size_t wb_len;
    off_t wb_off;
    uint32_t clen_disk;
    int content_done; /* spool_content_done(): no more spool_write() */
};

/* Error text into a caller's buf (which may be NULL); errno is kept. */
static void __attribute__((format(printf, 2, 3)))
spool_err(struct buf *err, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    if (err != NULL) {
        buf_reset(err);
        va_start(ap, fmt);
        buf_vprintf(err, fmt, ap);
        va_end(ap);
    }
    errno = saved;
}

static const char *
spool_state_name(enum spool_state s)
{
    switch (s) {
    case SPOOL_S_WRITING:
        return "writing";
    case SPOOL_S_FINISHED:
        return "finished";
    case SPOOL_S_COMMITTED:
        return "committed";
    }
    return "?";
}

static void
spool_enter(struct spool_file *sf, enum spool_state to)
{
    if (log_debug_enabled())
        log_debug("%s: spool file %s -> %s", sf->id,
                  spool_state_name(sf->state), spool_state_name(to));
    sf->state = to;
}

/* ------------------------------------------------------------------ */
/* Small helpers */

static int
spool_valid_id(const char *id)
{
    size_t i;

    if (id == NULL)
        return 0;
    for (i = 0; i < SPOOL_ID_LEN; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'F')))
            return 0;
    return id[SPOOL_ID_LEN] == '\0';
}

static int
spool_valid_queue(const char *q)
{
    size_t i;

    for (i = 0; i < SPOOL_NQUEUES; i++)
        if (strcmp(q, spool_queues[i]) == 0)
            return 1;
    return 0;
}

static char *
spool_path(const char *qdir, const char *queue, const char *name)
{
    struct buf *b = buf_new(128, BUF_NOCAP);
    char *p;

    buf_printf(b, "%s/%s/%s", qdir, queue, name);
    p = xstrdup(buf_data(b));
    buf_free(b);
    return p;
}

/* Queue subdirectories opened once by a long-running process
 * (spool_dirs_open): the hot paths (a new file's ID check, taking a file
 * from free/, the commit's rename and directory fsync, the queue
 * manager's moves) look names up relative to these fds, one path
 * component instead of the whole absolute path, and fsync a directory
 * without opening it (Postfix chdir()s into its queue directory for the
 * same reason). Set before any thread starts, read-only afterwards; any
 * other queue directory (tests, the CLI) goes by absolute paths. */
static const char *const spool_subdirs[] = {"incoming", "active",  "deferred",
                                            "hold",     "corrupt", "free"};
#define SPOOL_NSUBDIRS (sizeof(spool_subdirs) / sizeof(spool_subdirs[0]))
static char *spool_dirs_qdir;
static int spool_dirs_fd[SPOOL_NSUBDIRS];

int
spool_dirs_open(const char *qdir)
{
    int fd[SPOOL_NSUBDIRS];
    size_t i, j;

    if (spool_dirs_qdir != NULL)
        return strcmp(spool_dirs_qdir, qdir) == 0 ? 0 : -1;
    for (i = 0; i < SPOOL_NSUBDIRS; i++) {
        char *path = spool_path(qdir, spool_subdirs[i], "");

        fd[i] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(path);
        if (fd[i] < 0) {
            int saved = errno;

            for (j = 0; j < i; j++)
                close(fd[j]);
            errno = saved;
            return -1;
        }
    }
    memcpy(spool_dirs_fd, fd, sizeof(fd));
    spool_dirs_qdir = xstrdup(qdir);
    return 0;
}

/* The opened fd of qdir/queue, or -1. */
static int
spool_dirfd(const char *qdir, const char *queue)
{
    size_t i;

    if (spool_dirs_qdir == NULL || strcmp(spool_dirs_qdir, qdir) != 0)
        return -1;
    for (i = 0; i < SPOOL_NSUBDIRS; i++)
        if (strcmp(spool_subdirs[i], queue) == 0)
            return spool_dirs_fd[i];
    return -1;
}

int
spool_space(const char *qdir, unsigned long long *avail, unsigned long *bsize)
{
    struct statvfs st;
    int fd = spool_dirfd(qdir, "incoming");

    if ((fd >= 0 ? fstatvfs(fd, &st) : statvfs(qdir, &st)) < 0)
        return -1;
    *bsize = st.f_frsize ? st.f_frsize : (st.f_bsize ? st.f_bsize : 1);
    *avail = (unsigned long long) st.f_bavail * *bsize;
    return 0;
}

/* An absolute path as (directory fd, name) when it names a file right in
 * one of the open subdirectories; else (AT_FDCWD, path). */
static int
spool_split(const char *path, const char **name)
{
    size_t n, i, k;
    const char *rest;

    *name = path;
    if (spool_dirs_qdir == NULL)
        return AT_FDCWD;
    n = strlen(spool_dirs_qdir);
    if (strncmp(path, spool_dirs_qdir, n) != 0 || path[n] != '/')
        return AT_FDCWD;
    for (i = 0; i < SPOOL_NSUBDIRS; i++) {
        k = strlen(spool_subdirs[i]);
        rest = path + n + 1 + k + 1;
        if (strncmp(path + n + 1, spool_subdirs[i], k) == 0
            && path[n + 1 + k] == '/' && *rest != '\0'
            && strchr(rest, '/') == NULL) {
            *name = rest;
            return spool_dirs_fd[i];
        }
    }
    return AT_FDCWD;
}

/* Where qdir/queue/name is for the *at() calls: (the opened directory,
 * name), or (AT_FDCWD, the absolute path written into buf). -1 with
 * ENAMETOOLONG when the path does not fit. */
static int
spool_at(const char *qdir, const char *queue, const char *name, char *buf,
         size_t bufsz, const char **out)
{
    int dfd = spool_dirfd(qdir, queue);

    if (dfd >= 0) {
        *out = name;
        return dfd;
    }
    if ((size_t) snprintf(buf, bufsz, "%s/%s/%s", qdir, queue, name) >= bufsz) {
        errno = ENAMETOOLONG;
        return -1;
    }
    *out = buf;
    return AT_FDCWD;
}

static int
spool_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = pwrite(fd, c, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t) w;
        off += w;
    }
    return 0;
}

/* a (an bytes) then b (bn bytes) at off, in one system call when the
 * kernel takes it all. 0 or -1 (errno). */
static int
spool_pwrite2(int fd, const void *a, size_t an, const void *b, size_t bn,
              off_t off)
{
    struct iovec iov[2];
    ssize_t w;

    if (an == 0 || bn == 0)
        return an ? spool_pwrite_all(fd, a, an, off)
                  : spool_pwrite_all(fd, b, bn, off);
    iov[0].iov_base = (void *) a;
    iov[0].iov_len = an;
    iov[1].iov_base = (void *) b;
    iov[1].iov_len = bn;
    do
        w = pwritev(fd, iov, 2, off);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    if ((size_t) w < an) { /* short: the rest one piece at a time */
        if (spool_pwrite_all(fd, (const char *) a + w, an - (size_t) w, off + w)
            < 0)
            return -1;
        return spool_pwrite_all(fd, b, bn, off + (off_t) an);
    }
    return spool_pwrite_all(fd, (const char *) b + ((size_t) w - an),
                            bn - ((size_t) w - an), off + w);
}

/* 0, or -1 (errno; EIO for a short read: the file shrank). */
static int
spool_pread_all(int fd, void *p, size_t n, off_t off)
{
    char *c = p;

    while (n > 0) {
        ssize_t r = pread(fd, c, n, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        c += r;
        n -= (size_t) r;
        off += r;
    }
    return 0;
}

/* fsync a directory: 0 or -1 (errno). */
static int
spool_sync_dir(const char *qdir, const char *queue)
{
    char *path;
    int fd, r = -1, saved;

    if ((fd = spool_dirfd(qdir, queue)) >= 0)
        return fsync(fd);
    path = spool_path(qdir, queue, ".");

    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        goto fail;
    r = fsync(fd);
    saved = errno;
    close(fd);
    errno = saved;
fail:
    free(path);
    return r;
}

static void
spool_put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}

static uint32_t
spool_get_u32(const unsigned char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}

static uint64_t
spool_get_u64(const unsigned char *p)
{
    return ((uint64_t) spool_get_u32(p) << 32) | spool_get_u32(p + 4);
}

static uint32_t
spool_fnv(uint32_t h, const unsigned char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

#define SPOOL_FNV_INIT 2166136261u

/* Checksum of envelope records [0, len): status bytes count as 0. The
 * records must be well formed (checked by the caller or built by us). */
static uint32_t
spool_env_sum(const unsigned char *p, size_t len)
{
    static const unsigned char zero = 0;
    uint32_t h = SPOOL_FNV_INIT;
    size_t pos = 0;

    while (pos + SPOOL_REC_HDR <= len) {
        uint32_t rlen = spool_get_u32(p + pos + 1);
        if (rlen > len - pos - SPOOL_REC_HDR)
            break;
        h = spool_fnv(h, p + pos, SPOOL_REC_HDR);
        if (p[pos] == REC_RCPT && rlen > 0) {
            h = spool_fnv(h, &zero, 1);
            h = spool_fnv(h, p + pos + SPOOL_REC_HDR + 1, rlen - 1);
        } else {
            h = spool_fnv(h, p + pos + SPOOL_REC_HDR, rlen);
        }
        pos += SPOOL_REC_HDR + rlen;
    }
    return h;
}

/* ------------------------------------------------------------------ */
/* Environment and queue directory */

void
spool_env_free(struct spool_env *e)
{
    size_t i;

    if (e == NULL)
        return;
    free(e->client_name);
    free(e->client_addr);
    free(e->helo);
    free(e->proto);
    free(e->sender);
    free(e->body_type);
    free(e->hold_reason);
    for (i = 0; i < e->nrcpt; i++) {
        free(e->rcpt[i].addr);
        free(e->rcpt[i].orcpt);
        free(e->rcpt[i].orig);
    }
    free(e->rcpt);
    memset(e, 0, sizeof(*e));
}

/* mkdir one path (EEXIST ok if it is a directory). */
static int
spool_mkdir1(const char *path, struct buf *err)
{
    struct stat st;

    if (mkdir(path, 0700) == 0)
        return 0;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    spool_err(err, "mkdir %s: %s", path, strerror(errno));
    return -1;
}

int
spool_mkdirs(const char *qdir, struct buf *err)
{
    static const char *const sub[] = {"incoming", "active", "deferred", "hold",
                                      "corrupt",  "public", "pid",      "free"};
    char *p = NULL;
    size_t i;

    if (qdir == NULL || *qdir == '\0') {
        errno = EINVAL;
        spool_err(err, "queue_directory is empty");
        return -1;
    }
    /* Parents first, like mkdir -p. */
    p = xstrdup(qdir);
    for (i = 1; p[i] != '\0'; i++) {
        if (p[i] != '/')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            spool_err(err, "mkdir %s: %s", p, strerror(errno));
            goto fail;
        }
        p[i] = '/';
    }
    if (spool_mkdir1(qdir, err) < 0)
        goto fail;
    for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        free(p);
        p = spool_path(qdir, sub[i], "");
        p[strlen(p) - 1] = '\0'; /* drop the trailing '/' */
        if (spool_mkdir1(p, err) < 0)
            goto fail;
    }
    free(p);
    return 0;
fail:
    free(p);
    return -1;
}

/* IDs are sec (8 hex) usec (5 hex) lane (1 hex) = one 56-bit number;
 * each new ID is greater than the last one made by this process, and at
 * most one per microsecond (ahead of the clock when that is not enough). */
static pthread_mutex_t spool_id_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long spool_id_last;
static int spool_id_lane_no; /* 0: new IDs are checked (spool_id_in_use) */

/* The first value with this lane after v, one microsecond on. */
static unsigned long long
spool_id_next(unsigned long long v, int lane)
{
    unsigned long long sec = v >> 24, usec = (v >> 4) & 0xfffff;

    if (++usec >= 1000000) {
        usec = 0;
        sec = (sec + 1) & 0xffffffffull;
    }
    return (sec << 24) | (usec << 4) | (unsigned long long) lane;
}

/* A new ID: from the clock, or (after a collision) the next value. */
static int
spool_id_make(char id[SPOOL_ID_SIZE], int from_clock)
{
    struct timespec ts;
    unsigned long long v = 0;

    if (from_clock) {
        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
            return -1;
        v = ((unsigned long long) (uint32_t) ts.tv_sec << 24)
            | ((unsigned long long) (ts.tv_nsec / 1000) << 4);
    }
    pthread_mutex_lock(&spool_id_lock);
    v |= (unsigned long long) spool_id_lane_no;
    if (v <= spool_id_last)
        v = spool_id_next(spool_id_last, spool_id_lane_no);
    spool_id_last = v;
    pthread_mutex_unlock(&spool_id_lock);
    snprintf(id, SPOOL_ID_SIZE, "%014llX", v);
    return 0;
}

/* The greatest queue ID among the names in qdir's queues, temp names
 * (".ID", ".ID.N") included, into *max. 0 or -1 (errno). */
static int
spool_id_max(const char *qdir, unsigned long long *max)
{
    char buf[PATH_MAX], hex[SPOOL_ID_SIZE];
    struct dirent *de;
    const char *n;
    size_t i;
    DIR *dir;

    for (i = 0; i < SPOOL_NQUEUES; i++) {
        if ((size_t) snprintf(buf, sizeof(buf), "%s/%s", qdir, spool_queues[i])
            >= sizeof(buf)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if ((dir = opendir(buf)) == NULL) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        while ((de = readdir(dir)) != NULL) {
            n = de->d_name[0] == '.' ? de->d_name + 1 : de->d_name;
            if (strlen(n) < SPOOL_ID_LEN
                || (n[SPOOL_ID_LEN] != '\0' && n[SPOOL_ID_LEN] != '.'))
                continue;
            memcpy(hex, n, SPOOL_ID_LEN);
            hex[SPOOL_ID_LEN] = '\0';
            if (spool_valid_id(hex)) {
                unsigned long long v = strtoull(hex, NULL, 16);
                if (v > *max)
                    *max = v;
            }
        }
        closedir(dir);
    }
    return 0;
}

int
spool_id_lane(const char *qdir, int lane)
{
    unsigned long long max = 0;

    if (lane < 0 || lane >= SPOOL_ID_LANES) {
        errno = EINVAL;
        return -1;
    }
    if (lane > 0 && spool_id_max(qdir, &max) < 0)
        return -1;
    pthread_mutex_lock(&spool_id_lock);
    if (max > spool_id_last)
        spool_id_last = max;
    spool_id_lane_no = lane;
    pthread_mutex_unlock(&spool_id_lock);
    return 0;
}

int
spool_new_id(char id[SPOOL_ID_SIZE])
{
    return spool_id_make(id, 1);
}

const char *
spool_locate(const char *qdir, const char *id)
{
    struct stat st;
    size_t i;

    if (!spool_valid_id(id)) {
        errno = EINVAL;
        return NULL;
    }
    for (i = 0; i < SPOOL_NQUEUES; i++) {
        char *path = spool_path(qdir, spool_queues[i], id);
        int r = lstat(path, &st);
        free(path);
        if (r == 0 && S_ISREG(st.st_mode))
            return spool_queues[i];
    }
    errno = ENOENT;
    return NULL;
}

int
spool_move(const char *qdir, const char *id, const char *from, const char *to)
{
    char sbuf[PATH_MAX], dbuf[PATH_MAX];
    const char *src, *dst;
    int sfd, dfd;

    if (!spool_valid_id(id) || !spool_valid_queue(from)
        || !spool_valid_queue(to)) {
        errno = EINVAL;
        return -1;
    }
    if ((sfd = spool_at(qdir, from, id, sbuf, sizeof(sbuf), &src)) == -1
        || (dfd = spool_at(qdir, to, id, dbuf, sizeof(dbuf), &dst)) == -1
        || renameat(sfd, src, dfd, dst) < 0)
        return -1;
    /* Every queue but hold is scanned at start-up, so a move that a crash
     * undoes only delays mail; into and out of hold it must last. */
    if ((strcmp(to, "hold") == 0 || strcmp(from, "hold") == 0)
        && spool_sync_dir(qdir, to) < 0)
        return -1;
    return 0;
}

void
spool_notify(const char *qdir, const char *msg)
{
    /* One socket per thread, kept: the front wakes the queue manager
     * after every group commit. */
    static _Thread_local int fd = -1;
    struct sockaddr_un sun;
    int saved = errno;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if ((size_t) snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/public/qmgr",
                          qdir)
        >= sizeof(sun.sun_path))
        return;
    if (fd < 0)
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0)
        (void) sendto(fd, msg, strlen(msg), MSG_DONTWAIT,
                      (struct sockaddr *) &sun, sizeof(sun));
    errno = saved;
}

/* ------------------------------------------------------------------ */
/* Writing */

/* A new file's first SPOOL_HEAD_SIZE bytes: header, a gap record of
 * SPOOL_GAP bytes and an empty content record. They wait in the
 * write-behind buffer with the first content (a temp file that a crash
 * leaves empty or with an old message's bytes is as invalid as a torn
 * one: it has no end record with a matching checksum). */
static struct spool_file *
spool_file_new(const char *qdir, const char *id, const char *tmp, int fd)
{
    struct spool_file *sf = xcalloc(1, sizeof(*sf));
    unsigned char *h, *c;

    sf->state = SPOOL_S_WRITING;
    sf->fd = fd;
    memcpy(sf->id, id, SPOOL_ID_SIZE);
    sf->qdir = xstrdup(qdir);
    sf->tmp_path = xstrdup(tmp);
    sf->content_off = SPOOL_HEAD_SIZE;
    sf->content_size = 0;
    sf->wb = h = xmalloc(SPOOL_WB_MAX);
    sf->wb_off = 0;
    sf->wb_len = SPOOL_HEAD_SIZE;
    memset(h, 0, SPOOL_HEAD_SIZE);
    c = h + SPOOL_HEAD_SIZE - SPOOL_REC_HDR;
    memcpy(h, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
    spool_put_u32(h + SPOOL_MAGIC_LEN, SPOOL_VERSION);
    h[SPOOL_MAGIC_LEN + 4] = REC_GAP;
    spool_put_u32(h + SPOOL_MAGIC_LEN + 5, SPOOL_GAP);
    c[0] = REC_CONTENT;
    spool_put_u32(c + 1, 0);
    return sf;
}

/* Write out the write-behind buffer, then (n > 0) p right after it. */
static int
spool_wb_flush(struct spool_file *sf, const void *p, size_t n)
{
    off_t at = sf->wb_len ? sf->wb_off : sf->content_off + sf->content_size;

    if (spool_pwrite2(sf->fd, sf->wb, sf->wb_len, p, n, at) < 0)
        return -1;
    sf->wb_len = 0;
    return 0;
}

/* The content length into the content record: patched into the buffered
 * head when it is still there (the file gets it with the next write),
 * else written, unless the file holds it already. 0 or -1 (errno). */
static int
spool_put_clen(struct spool_file *sf)
{
    off_t at = sf->content_off - 4;
    unsigned char clen[4];

    if (sf->clen_disk == (uint32_t) sf->content_size)
        return 0;
    spool_put_u32(clen, (uint32_t) sf->content_size);
    if (sf->wb_len > 0 && at >= sf->wb_off
        && at + 4 <= sf->wb_off + (off_t) sf->wb_len)
        memcpy(sf->wb + (at - sf->wb_off), clen, 4);
    else if (spool_pwrite_all(sf->fd, clen, 4, at) < 0)
        return -1;
    sf->clen_disk = (uint32_t) sf->content_size;
    return 0;
}

/* Is id the name of a file in any queue? */
static int
spool_id_in_use(const char *qdir, const char *id)
{
    char buf[PATH_MAX];
    const char *name;
    struct stat st;
    size_t i;
    int dfd;

    for (i = 0; i < SPOOL_NQUEUES; i++) {
        dfd = spool_at(qdir, spool_queues[i], id, buf, sizeof(buf), &name);
        if (dfd == -1 || fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
            || errno != ENOENT)
            return 1;
    }
    return 0;
}

/* free/ holds at most SPOOL_FREE_SLOTS files named 0..N-1, none larger
 * than SPOOL_FREE_MAX. The queue manager fills slots round robin (a slot
 * that is still full is simply replaced); a front takes the next slot
 * and moves on only when it found a file there, so it follows the filler
 * and finds files whenever there are any. Two processes racing for one
 * slot are safe: the rename is atomic, the loser creates a file. */
#define SPOOL_FREE_SLOTS 512
#define SPOOL_FREE_MAX   (128 * 1024)

static pthread_mutex_t spool_free_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned spool_free_put, spool_free_get;

static unsigned
spool_free_slot(unsigned *ctr, int advance)
{
    unsigned v;

    pthread_mutex_lock(&spool_free_lock);
    v = *ctr % SPOOL_FREE_SLOTS;
    if (advance)
        (*ctr)++;
    pthread_mutex_unlock(&spool_free_lock);
    return v;
}

int
spool_remove(const char *qdir, const char *path, int fd)
{
    char name[16], buf[PATH_MAX];
    const char *dst, *src;
    struct stat st;
    int dfd, sfd = spool_split(path, &src);

    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
        && st.st_nlink == 1 && st.st_size <= SPOOL_FREE_MAX) {
        snprintf(name, sizeof(name), "%u", spool_free_slot(&spool_free_put, 1));
        dfd = spool_at(qdir, "free", name, buf, sizeof(buf), &dst);
        if (dfd != -1 && renameat(sfd, src, dfd, dst) == 0)
            return 0;
        /* no free/ (or another error): unlink below; a file that is gone
         * already is not an error there either */
    }
    if (unlinkat(sfd, src, 0) < 0 && errno != ENOENT)
        return -1;
    return 0;
}

/* Move a free file to incoming/name (which must not exist): its fd, or
 * -1. */
static int
spool_reuse(const char *qdir, const char *name)
{
    char slot[16], sbuf[PATH_MAX], dbuf[PATH_MAX];
    const char *src, *dst;
    int sfd, dfd, fd;

    snprintf(slot, sizeof(slot), "%u", spool_free_slot(&spool_free_get, 0));
    if ((sfd = spool_at(qdir, "free", slot, sbuf, sizeof(sbuf), &src)) == -1
        || (dfd = spool_at(qdir, "incoming", name, dbuf, sizeof(dbuf), &dst))
               == -1
        || renameat2(sfd, src, dfd, dst, RENAME_NOREPLACE) < 0)
        return -1;
    (void) spool_free_slot(&spool_free_get, 1);
    fd = openat(dfd, dst, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        unlinkat(dfd, dst, 0);
    return fd;
}

#define SPOOL_CREATE_TRIES 1000

struct spool_file *
spool_create(const char *qdir, struct buf *err)
{
    char id[SPOOL_ID_SIZE], name[SPOOL_ID_SIZE + 1];
    char *path = NULL;
    int fd = -1, tries, reused = -1;

    for (tries = 0; tries < SPOOL_CREATE_TRIES; tries++) {
        if (spool_id_make(id, tries == 0) < 0) {
            spool_err(err, "clock_gettime: %s", strerror(errno));
            return NULL;
        }
        snprintf(name, sizeof(name), ".%s", id);
        free(path);
        path = spool_path(qdir, "incoming", name);
        reused = tries == 0 ? spool_reuse(qdir, name) : -1;
        if ((fd = reused) < 0) {
            int dfd = spool_dirfd(qdir, "incoming");

            fd = openat(dfd >= 0 ? dfd : AT_FDCWD, dfd >= 0 ? name : path,
                        O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        }
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            spool_err(err, "create %s: %s", path, strerror(errno));
            goto fail;
        }
        /* Created first, then checked: a committed file with this ID
         * cannot appear after the check (its temp name is ours now). An
         * ID of a lane is new by construction (spool_id_lane). */
        if (id[SPOOL_ID_LEN - 1] != '0' || !spool_id_in_use(qdir, id))
            break;
        close(fd);
        unlink(path);
        fd = reused = -1;
    }
    if (fd < 0) {
        errno = EEXIST;
        spool_err(err, "create %s/incoming: no free queue ID after %d tries",
                  qdir, SPOOL_CREATE_TRIES);
        goto fail;
    }
    struct spool_file *sf = spool_file_new(qdir, id, path, fd);
    sf->reused = reused >= 0;
    free(path);
    return sf;
fail:
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        errno = saved;
    }
    free(path);
    return NULL;
}

struct spool_file *
spool_create_as(const char *qdir, const char *id, struct buf *err)
{
    char name[SPOOL_ID_SIZE + 16];
    char *path = NULL;
    int fd = -1, n;

    if (!spool_valid_id(id)) {
        errno = EINVAL;
        spool_err(err, "bad queue ID");
        return NULL;
    }
    for (n = 1; n <= SPOOL_CREATE_TRIES; n++) {
        snprintf(name, sizeof(name), ".%s.%d", id, n);
        free(path);
        path = spool_path(qdir, "incoming", name);
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        spool_err(err, "create %s: %s", path, strerror(errno));
        goto fail;
    }
    struct spool_file *sf = spool_file_new(qdir, id, path, fd);
    free(path);
    return sf;
fail:
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        unlink(path);
        errno = saved;
    }
    free(path);
    return NULL;
}

const char *
spool_id(const struct spool_file *sf)
{
    return sf->id;
}

int
spool_fd(const struct spool_file *sf)
{
    return sf->fd;
}

off_t
spool_content_off(const struct spool_file *sf)
{
    return sf->content_off;
}

off_t
spool_content_size(const struct spool_file *sf)
{
    return sf->content_size;
}

int
spool_write(struct spool_file *sf, const void *p, size_t n)
{
    if (sf->state != SPOOL_S_WRITING || sf->content_done) {
        errno = EINVAL;
        return -1;
    }
    if ((off_t) n > SPOOL_CONTENT_MAX - sf->content_size) {
        errno = EFBIG;
        return -1;
    }
    if (sf->wb_len + n <= SPOOL_WB_MAX) {
        if (sf->wb_len == 0)
            sf->wb_off = sf->content_off + sf->content_size;
        memcpy(sf->wb + sf->wb_len, p, n);
        sf->wb_len += n;
    } else if (spool_wb_flush(sf, p, n) < 0) {
        return -1;
    }
    sf->content_size += (off_t) n;
    return 0;
}

int
spool_content_done(struct spool_file *sf)
{
    if (sf->state != SPOOL_S_WRITING) {
        errno = EINVAL;
        return -1;
    }
    sf->content_done = 1;
    if (spool_put_clen(sf) < 0)
        return -1;
    return spool_wb_flush(sf, NULL, 0);
}

int
spool_replace_head(struct spool_file *sf, size_t old, const void *p, size_t n)
{
    off_t gap = sf->content_off - SPOOL_CONTENT_OFF - SPOOL_REC_HDR;
    off_t keep = gap + (off_t) old - (off_t) n; /* gap bytes left */
    unsigned char r[4 + SPOOL_GAP + SPOOL_REC_HDR];

    if (sf->state != SPOOL_S_WRITING || (off_t) old > sf->content_size) {
        errno = EINVAL;
        return -1;
    }
    /* the new head must fit in the gap plus the old head; a gap that
     * would grow past its first size (a shorter head) is not kept track
     * of either: both go to a rewrite */
    if (keep < 0 || keep > SPOOL_GAP
        || (off_t) n - (off_t) old > SPOOL_CONTENT_MAX - sf->content_size) {
        errno = ENOSPC;
        return -1;
    }
    if (n == 0 && old == 0)
        return 0;
    if (sf->wb_len > 0 && spool_wb_flush(sf, NULL, 0) < 0)
        return -1;
    /* The content record moves by n - old bytes and the gap with it. One
     * write from the gap's length to the end of the new head: the new
     * length, the gap's bytes (zero), the content record with the length
     * the content will have, then p; the rest of the content stays where
     * it is. (spool_file_new made the gap SPOOL_GAP bytes.) */
    memset(r, 0, sizeof(r));
    spool_put_u32(r, (uint32_t) keep);
    r[4 + keep] = REC_CONTENT;
    spool_put_u32(r + 4 + keep + 1,
                  (uint32_t) (sf->content_size + (off_t) n - (off_t) old));
    if (spool_pwrite2(sf->fd, r, 4 + (size_t) keep + SPOOL_REC_HDR, p, n,
                      SPOOL_MAGIC_LEN + 5)
        < 0)
        return -1;
    sf->content_off += (off_t) old - (off_t) n;
    sf->content_size += (off_t) n - (off_t) old;
    sf->clen_disk = (uint32_t) sf->content_size;
    return 0;
}

int
spool_prepend(struct spool_file *sf, const void *p, size_t n)
{
    return spool_replace_head(sf, 0, p, n);
}

/* Append one record; -1 when the envelope would pass SPOOL_ENV_MAX. */
static int
spool_put_rec(struct buf *b, enum spool_rec type, const void *p1, size_t n1,
              const void *p2, size_t n2)
{
    unsigned char h[SPOOL_REC_HDR];

    if (n1 > SPOOL_ENV_MAX || n2 > SPOOL_ENV_MAX - n1)
        return -1;
    h[0] = (unsigned char) type;
    spool_put_u32(h + 1, (uint32_t) (n1 + n2));
    if (buf_append(b, h, sizeof(h)) < 0 || (n1 > 0 && buf_append(b, p1, n1) < 0)
        || (n2 > 0 && buf_append(b, p2, n2) < 0))
        return -1;
    return 0;
}

static int
spool_put_str(struct buf *b, enum spool_rec type, const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    if (n > SPOOL_STR_MAX)
        return -1;
    return spool_put_rec(b, type, s, n, NULL, 0);
}

static int
spool_put_num(struct buf *b, enum spool_rec type, uint64_t v, size_t width)
{
    unsigned char p[8];
    size_t i;

    for (i = 0; i < width; i++)
        p[i] = (unsigned char) (v >> (8 * (width - 1 - i)));
    return spool_put_rec(b, type, p, width, NULL, 0);
}

static int
spool_put_rcpt(struct buf *b, const struct spool_rcpt *r)
{
    unsigned char st = (unsigned char) r->status;
    size_t alen, olen, glen;
    struct buf *tail;
    int rv;

    if (r->addr == NULL || *r->addr == '\0')
        return -1;
    alen = strlen(r->addr);
    olen = r->orcpt != NULL ? strlen(r->orcpt) : 0;
    glen = r->orig != NULL ? strlen(r->orig) : 0;
    if (alen > SPOOL_STR_MAX || olen > SPOOL_STR_MAX || glen > SPOOL_STR_MAX)
        return -1;
    if ((unsigned) r->status > SPOOL_RCPT_EXPIRED)
        return -1;
    tail = buf_new(alen + olen + glen + 3, BUF_NOCAP);
    buf_append(tail, r->addr, alen);
    if (r->orcpt != NULL || r->orig != NULL) {
        buf_putc(tail, '\0');
        buf_append(tail, r->orcpt ? r->orcpt : "", olen);
    }
    /* an empty ORCPT with ORIG reads back as none */
    if (r->orig != NULL) {
        buf_putc(tail, '\0');
        buf_append(tail, r->orig, glen);
    }
    rv = spool_put_rec(b, REC_RCPT, &st, 1, buf_data(tail), buf_len(tail));
    buf_free(tail);
    return rv;
}

int
spool_finish(struct spool_file *sf, struct spool_env *env)
{
    unsigned char sum[4];
    struct buf *b = NULL;
    size_t i;

    if (sf->state != SPOOL_S_WRITING || env->sender == NULL || env->nrcpt == 0
        || env->nrcpt > SPOOL_RCPT_MAX || env->arrival < 0
        || env->client_port < 0 || env->client_port > 65535) {
        errno = EINVAL;
        return -1;
    }
    memcpy(env->id, sf->id, SPOOL_ID_SIZE);
    env->size = (long long) sf->content_size;

    b = buf_new(4096, SPOOL_ENV_MAX);
    if (spool_put_str(b, REC_ID, env->id) < 0
        || spool_put_num(b, REC_ARRIVAL, (uint64_t) env->arrival, 8) < 0
        || spool_put_str(b, REC_CLIENT_NAME, env->client_name) < 0
        || spool_put_str(b, REC_CLIENT_ADDR, env->client_addr) < 0
        || spool_put_num(b, REC_CLIENT_PORT, (uint64_t) env->client_port, 4) < 0
        || spool_put_str(b, REC_HELO, env->helo) < 0
        || spool_put_str(b, REC_PROTO, env->proto) < 0
        || spool_put_str(b, REC_SENDER, env->sender) < 0
        || spool_put_str(b, REC_BODY, env->body_type) < 0
        || spool_put_str(b, REC_HOLD, env->hold_reason) < 0
        || spool_put_num(b, REC_SIZE, (uint64_t) env->size, 8) < 0)
        goto inval;
    for (i = 0; i < env->nrcpt; i++)
        if (spool_put_rcpt(b, &env->rcpt[i]) < 0)
            goto inval;
    spool_put_u32(
        sum, spool_env_sum((const unsigned char *) buf_data(b), buf_len(b)));
    if (spool_put_rec(b, REC_END, sum, 4, NULL, 0) < 0)
        goto inval;

    /* The content length, then what waits and the envelope in one write. */
    if (spool_put_clen(sf) < 0
        || spool_wb_flush(sf, buf_data(b), buf_len(b)) < 0)
        goto fail;
    if (sf->reused
        && ftruncate(sf->fd,
                     sf->content_off + sf->content_size + (off_t) buf_len(b))
               < 0)
        goto fail;
    buf_free(b);
    spool_enter(sf, SPOOL_S_FINISHED);
    return 0;
inval:
    errno = EINVAL;
fail:
    buf_free(b);
    return -1;
}

/* Rename sf's temp file to queue/ID. */
static int
spool_rename_in(struct spool_file *sf, const char *queue)
{
    char buf[PATH_MAX];
    const char *dst;
    int sfd = spool_dirfd(sf->qdir, "incoming"), dfd;

    if ((dfd = spool_at(sf->qdir, queue, sf->id, buf, sizeof(buf), &dst)) == -1)
        return -1;
    if (sfd >= 0)
        return renameat(sfd, strrchr(sf->tmp_path, '/') + 1, dfd, dst);
    return renameat(AT_FDCWD, sf->tmp_path, dfd, dst);
}

int
spool_commit(struct spool_file *sf, const char *queue)
{
    char *dst = NULL;
    int saved;

    if (sf->state != SPOOL_S_FINISHED
        || (strcmp(queue, "incoming") != 0 && strcmp(queue, "hold") != 0)) {
        errno = EINVAL;
        return -1;
    }
    if (fsync(sf->fd) < 0)
        return -1;
    dst = spool_path(sf->qdir, queue, sf->id);
    if (spool_rename_in(sf, queue) < 0)
        goto fail;
    if (spool_sync_dir(sf->qdir, queue) < 0
        || (strcmp(queue, "incoming") != 0
            && spool_sync_dir(sf->qdir, "incoming") < 0)) {
        /* Not durable: the client will get a 4xx, so the message must
         * not stay in the queue to be delivered. */
        saved = errno;
        unlink(dst);
        errno = saved;
        goto fail;
    }
    free(dst);
    spool_enter(sf, SPOOL_S_COMMITTED);
    return 0;
fail:
    free(dst);
    return -1;
}

void
spool_commit_batch(struct spool_file **sf, const char **queue, int *rc,
                   size_t n)
{
    int dirty_hold = 0, dir_err = 0, hold_err = 0;
    char *dst;
    size_t i;

    for (i = 0; i < n; i++) {
        rc[i] = 0;
        if (sf[i]->state != SPOOL_S_FINISHED
            || (strcmp(queue[i], "incoming") != 0
                && strcmp(queue[i], "hold") != 0))
            rc[i] = EINVAL;
    }
    /* Start writeback of all, so the fsyncs below share device flushes
     * (alone, a file's fsync starts its own). */
    if (n > 1)
        for (i = 0; i < n; i++)
            if (rc[i] == 0)
                (void) sync_file_range(sf[i]->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    for (i = 0; i < n; i++)
        if (rc[i] == 0 && fsync(sf[i]->fd) < 0)
            rc[i] = errno ? errno : EIO;
    for (i = 0; i < n; i++) {
        if (rc[i] != 0)
            continue;
        if (spool_rename_in(sf[i], queue[i]) < 0)
            rc[i] = errno ? errno : EIO;
        else if (strcmp(queue[i], "hold") == 0)
            dirty_hold = 1;
    }
    /* incoming/ lost the temp names (and gained the new files). */
    if (n > 0 && spool_sync_dir(sf[0]->qdir, "incoming") < 0)
        dir_err = errno ? errno : EIO;
    if (dirty_hold && spool_sync_dir(sf[0]->qdir, "hold") < 0)
        hold_err = errno ? errno : EIO;
    for (i = 0; i < n; i++) {
        int e = dir_err;

        if (rc[i] != 0)
            continue;
        if (strcmp(queue[i], "hold") == 0 && hold_err)
            e = hold_err;
        if (e != 0) {
            dst = spool_path(sf[i]->qdir, queue[i], sf[i]->id);
            unlink(dst);
            free(dst);
            rc[i] = e;
            continue;
        }
        spool_enter(sf[i], SPOOL_S_COMMITTED);
    }
}

static void
spool_file_free(struct spool_file *sf)
{
    if (sf->fd >= 0)
        close(sf->fd);
    free(sf->wb);
    free(sf->qdir);
    free(sf->tmp_path);
    free(sf);
}

void
spool_abort(struct spool_file *sf)
{
    if (sf == NULL)
        return;
    switch (sf->state) {
    case SPOOL_S_WRITING:
    case SPOOL_S_FINISHED:
        unlink(sf->tmp_path);
        break;
    case SPOOL_S_COMMITTED:
        break;
    }
    spool_file_free(sf);
}

int
spool_file_reusable(const struct spool_file *sf)
{
    return sf->content_off + sf->content_size <= SPOOL_FREE_MAX;
}

void
spool_free(struct spool_file *sf)
{
    /* Without a commit there is nothing to keep: same as abort. */
    spool_abort(sf);
}

/* ------------------------------------------------------------------ */
/* Reading */

static const char *
spool_rec_name(int type)
{
    switch (type) {
    case REC_ID:
        return "queue ID";
    case REC_ARRIVAL:
        return "arrival";
    case REC_CLIENT_NAME:
        return "client name";
    case REC_CLIENT_ADDR:
        return "client address";
    case REC_CLIENT_PORT:
        return "client port";
    case REC_HELO:
        return "helo";
    case REC_PROTO:
        return "protocol";
    case REC_SENDER:
        return "sender";
    case REC_BODY:
        return "body type";
    case REC_HOLD:
        return "hold reason";
    case REC_SIZE:
        return "size";
    case REC_RCPT:
        return "recipient";
    case REC_END:
        return "end";
    case REC_CONTENT:
        return "content";
    default:
        return "unknown";
    }
}

/* A string payload: bounded, no NUL. NULL (reason in err) if bad. */
static char *
spool_get_str(const unsigned char *p, size_t n, int type, off_t at,
              struct buf *err)
{
    if (n > SPOOL_STR_MAX) {
        spool_err(err, "%s record too long at offset %lld",
                  spool_rec_name(type), (long long) at);
        return NULL;
    }
    if (memchr(p, '\0', n) != NULL) {
        spool_err(err, "NUL byte in %s record at offset %lld",
                  spool_rec_name(type), (long long) at);
        return NULL;
    }
    return xmemdup(p, n);
}

/* The first SPOOL_CONTENT_OFF bytes of a file of total bytes: where its
 * content record is (12, or 17 + g after a gap record). -1 if malformed. */
static off_t
spool_parse_magic(const unsigned char *p, size_t len, off_t total,
                  struct buf *err)
{
    uint32_t g;

    if (len < SPOOL_CONTENT_OFF || total < SPOOL_CONTENT_OFF) {
        spool_err(err, "file too short for a queue file header");
        return -1;
    }
    if (memcmp(p, SPOOL_MAGIC, SPOOL_MAGIC_LEN) != 0) {
        spool_err(err, "bad magic: not a queue file");
        return -1;
    }
    if (spool_get_u32(p + SPOOL_MAGIC_LEN) != SPOOL_VERSION) {
        spool_err(err, "unsupported queue file version %lu",
                  (unsigned long) spool_get_u32(p + SPOOL_MAGIC_LEN));
        return -1;
    }
    if (p[SPOOL_MAGIC_LEN + 4] == REC_CONTENT)
        return SPOOL_MAGIC_LEN + 4;
    if (p[SPOOL_MAGIC_LEN + 4] != REC_GAP) {
        spool_err(err, "missing content record at offset %d",
                  SPOOL_MAGIC_LEN + 4);
        return -1;
    }
    g = spool_get_u32(p + SPOOL_MAGIC_LEN + 5);
    if (g > SPOOL_GAP_MAX
        || (off_t) g > total - SPOOL_CONTENT_OFF - SPOOL_REC_HDR) {
        spool_err(err, "gap of %lu bytes is too long", (unsigned long) g);
        return -1;
    }
    return SPOOL_CONTENT_OFF + (off_t) g;
}

/* The content record c (SPOOL_REC_HDR bytes at offset crec of a file of
 * total bytes): content offset and length. */
static int
spool_parse_content(const unsigned char *c, off_t crec, off_t total,
                    off_t *coff, off_t *clen, struct buf *err)
{
    if (c[0] != REC_CONTENT) {
        spool_err(err, "missing content record at offset %lld",
                  (long long) crec);
        return -1;
    }
    *coff = crec + SPOOL_REC_HDR;
    *clen = (off_t) spool_get_u32(c + 1);
    if (*clen > total - *coff) {
        spool_err(err, "content length %lld past end of file",
                  (long long) *clen);
        return -1;
    }
    return 0;
}

/* Where a string record goes in the envelope; NULL if not a string. */
static char **
spool_str_field(struct spool_env *env, int type)
{
    switch (type) {
    case REC_CLIENT_NAME:
        return &env->client_name;
    case REC_CLIENT_ADDR:
        return &env->client_addr;
    case REC_HELO:
        return &env->helo;
    case REC_PROTO:
        return &env->proto;
    case REC_SENDER:
        return &env->sender;
    case REC_BODY:
        return &env->body_type;
    case REC_HOLD:
        return &env->hold_reason;
    default:
        return NULL;
    }
}

/* A numeric record: 'p' u32, 'T' and 'Z' u64 (both <= INT64_MAX). */
static int
spool_parse_num(struct spool_env *env, int type, const unsigned char *d,
                uint32_t rlen, off_t at, struct buf *err)
{
    size_t want = type == REC_CLIENT_PORT ? 4 : 8;
    uint64_t v;

    if (rlen != want) {
        spool_err(err, "bad %s record length %lu at offset %lld",
                  spool_rec_name(type), (unsigned long) rlen, (long long) at);
        return -1;
    }
    v = want == 4 ? spool_get_u32(d) : spool_get_u64(d);
    if ((type == REC_CLIENT_PORT && v > 65535) || v > (uint64_t) INT64_MAX) {
        spool_err(err, "bad %s value at offset %lld", spool_rec_name(type),
                  (long long) at);
        return -1;
    }
    if (type == REC_ARRIVAL)
        env->arrival = (long long) v;
    else if (type == REC_SIZE)
        env->size = (long long) v;
    else
        env->client_port = (int) v;
    return 0;
}

/* A recipient record: u8 status, address [NUL ORCPT]. */
static int
spool_parse_rcpt(struct spool_env *env, size_t *alloc, const unsigned char *d,
                 uint32_t rlen, off_t at, struct buf *err)
{
    const unsigned char *nul;
    struct spool_rcpt *r;
    size_t alen;

    if (env->nrcpt >= SPOOL_RCPT_MAX) {
        spool_err(err, "too many recipients (limit %d)", SPOOL_RCPT_MAX);
        return -1;
    }
    if (rlen < 2) {
        spool_err(err, "empty recipient record at offset %lld", (long long) at);
        return -1;
    }
    if (d[0] > SPOOL_RCPT_EXPIRED) {
        spool_err(err, "unknown recipient status %u at offset %lld", d[0],
                  (long long) at);
        return -1;
    }
    nul = memchr(d + 1, '\0', rlen - 1);
    alen = nul != NULL ? (size_t) (nul - (d + 1)) : rlen - 1;
    if (alen == 0) {
        spool_err(err, "empty recipient address at offset %lld",
                  (long long) at);
        return -1;
    }
    if (env->nrcpt == *alloc) {
        *alloc = *alloc ? *alloc * 2 : 4;
        env->rcpt = xrealloc(env->rcpt, *alloc * sizeof(*r));
    }
    r = &env->rcpt[env->nrcpt++]; /* counted now, so a failure frees it */
    memset(r, 0, sizeof(*r));
    r->status = (enum spool_rcpt_status) d[0];
    r->status_off = at + SPOOL_REC_HDR;
    if ((r->addr = spool_get_str(d + 1, alen, REC_RCPT, at, err)) == NULL)
        return -1;
    if (nul != NULL) {
        const unsigned char *o = nul + 1, *end = d + rlen;
        const unsigned char *nul2 = memchr(o, '\0', (size_t) (end - o));
        size_t olen = nul2 ? (size_t) (nul2 - o) : (size_t) (end - o);

        /* an empty ORCPT is kept as written, unless ORIG follows it */
        if ((olen > 0 || nul2 == NULL)
            && (r->orcpt = spool_get_str(o, olen, REC_RCPT, at, err)) == NULL)
            return -1;
        if (nul2 != NULL) {
            if (nul2 + 1 == end) {
                spool_err(err, "empty original recipient at offset %lld",
                          (long long) at);
                return -1;
            }
            if ((r->orig = spool_get_str(nul2 + 1, (size_t) (end - nul2 - 1),
                                         REC_RCPT, at, err))
                == NULL)
                return -1;
        }
    }
    return 0;
}

/* Envelope records p[0, len), which start at file offset base. */
static int
spool_parse_env(const unsigned char *p, size_t len, off_t base, off_t clen,
                struct spool_env *env, struct buf *err)
{
    unsigned char seen[256];
    size_t pos = 0, rcpt_alloc = 0;
    int end = 0;

    memset(seen, 0, sizeof(seen));
    while (pos < len && !end) {
        off_t at = base + (off_t) pos;
        const unsigned char *d;
        uint32_t rlen;
        char **str;
        int type;

        if (len - pos < SPOOL_REC_HDR) {
            spool_err(err, "truncated record header at offset %lld",
                      (long long) at);
            goto fail;
        }
        type = p[pos];
        rlen = spool_get_u32(p + pos + 1);
        if (rlen > len - pos - SPOOL_REC_HDR) {
            spool_err(
                err, "%s record at offset %lld: length %lu past end of file",
                spool_rec_name(type), (long long) at, (unsigned long) rlen);
            goto fail;
        }
        d = p + pos + SPOOL_REC_HDR;
        if (type != REC_RCPT && seen[type]) {
            spool_err(err, "duplicate %s record at offset %lld",
                      spool_rec_name(type), (long long) at);
            goto fail;
        }
        seen[type] = 1;

        switch (type) {
        case REC_ID:
            memcpy(env->id, d, rlen == SPOOL_ID_LEN ? SPOOL_ID_LEN : 0);
            env->id[rlen == SPOOL_ID_LEN ? SPOOL_ID_LEN : 0] = '\0';
            if (!spool_valid_id(env->id)) {
                spool_err(err, "bad queue ID record at offset %lld",
                          (long long) at);
                goto fail;
            }
            break;
        case REC_CLIENT_NAME:
        case REC_CLIENT_ADDR:
        case REC_HELO:
        case REC_PROTO:
        case REC_SENDER:
        case REC_BODY:
        case REC_HOLD:
            str = spool_str_field(env, type);
            if ((*str = spool_get_str(d, rlen, type, at, err)) == NULL)
                goto fail;
            break;
        case REC_ARRIVAL:
        case REC_SIZE:
        case REC_CLIENT_PORT:
            if (spool_parse_num(env, type, d, rlen, at, err) < 0)
                goto fail;
            break;
        case REC_RCPT:
            if (spool_parse_rcpt(env, &rcpt_alloc, d, rlen, at, err) < 0)
                goto fail;
            break;
        case REC_END:
            if (rlen != 4) {
                spool_err(err, "bad end record length at offset %lld",
                          (long long) at);
                goto fail;
            }
            if (spool_get_u32(d) != spool_env_sum(p, pos)) {
                spool_err(err, "envelope checksum mismatch");
                goto fail;
            }
            end = 1;
            break;
        case REC_CONTENT:
            spool_err(err, "second content record at offset %lld",
                      (long long) at);
            goto fail;
        default:
            spool_err(err, "unknown record type 0x%02x at offset %lld", type,
                      (long long) at);
            goto fail;
        }
        pos += SPOOL_REC_HDR + rlen;
    }
    if (!end) {
        spool_err(err, "missing end record (truncated file)");
        goto fail;
    }
    if (pos != len) {
        spool_err(err, "data after end record at offset %lld",
                  (long long) (base + (off_t) pos));
        goto fail;
    }
    if (!seen[REC_ID] || !seen[REC_ARRIVAL] || !seen[REC_SENDER]
        || !seen[REC_SIZE]) {
        spool_err(err, "missing %s record",
                  spool_rec_name(!seen[REC_ID]        ? REC_ID
                                 : !seen[REC_ARRIVAL] ? REC_ARRIVAL
                                 : !seen[REC_SENDER]  ? REC_SENDER
                                                      : REC_SIZE));
        goto fail;
    }
    if (env->nrcpt == 0) {
        spool_err(err, "no recipients");
        goto fail;
    }
    if (env->size != (long long) clen) {
        spool_err(err, "size %lld does not match content length %lld",
                  env->size, (long long) clen);
        goto fail;
    }
    if (env->client_name == NULL)
        env->client_name = xstrdup("unknown");
    if (env->client_addr == NULL)
        env->client_addr = xstrdup("unknown");
    if (env->proto == NULL)
        env->proto = xstrdup("SMTP");
    return 0;
fail:
    spool_env_free(env);
    return -1;
}

int
spool_parse(const void *data, size_t len, struct spool_env *env,
            off_t *content_off, off_t *content_len, struct buf *err)
{
    const unsigned char *p = data;
    off_t clen;

    memset(env, 0, sizeof(*env));
    if (len > (size_t) SPOOL_CONTENT_MAX + SPOOL_CONTENT_OFF + SPOOL_ENV_MAX) {
        spool_err(err, "file too large");
        return -1;
    }
    off_t crec = spool_parse_magic(p, len, (off_t) len, err), coff;
    if (crec < 0
        || spool_parse_content(p + crec, crec, (off_t) len, &coff, &clen, err)
               < 0)
        return -1;
    size_t env_off = (size_t) (coff + clen);
    if (spool_parse_env(p + env_off, len - env_off, (off_t) env_off, clen, env,
                        err)
        < 0)
        return -1;
    *content_off = coff;
    *content_len = clen;
    return 0;
}

struct spool_msg *
spool_read(const char *path, struct buf *err)
{
    unsigned char head[SPOOL_CONTENT_OFF];
    unsigned char *env_data = NULL;
    struct spool_msg *m = NULL;
    const char *base;
    struct stat st;
    off_t crec, coff, clen, env_off;
    size_t env_len;
    int fd;

    {
        const char *name;
        int dfd = spool_split(path, &name);

        fd = openat(dfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    }
    if (fd < 0) {
        spool_err(err, "open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        spool_err(err, "stat %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        errno = EBADMSG;
        spool_err(err, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size < SPOOL_CONTENT_OFF) {
        errno = EBADMSG;
        spool_err(err, "%s: file too short for a queue file header", path);
        goto fail;
    }
    if (spool_pread_all(fd, head, sizeof(head), 0) < 0) {
        spool_err(err, "read %s: %s", path, strerror(errno));
        goto fail;
    }
    if ((crec = spool_parse_magic(head, sizeof(head), st.st_size, err)) < 0) {
        errno = EBADMSG;
        goto fail;
    }
    if (crec != SPOOL_MAGIC_LEN + 4
        && spool_pread_all(fd, head, SPOOL_REC_HDR, crec) < 0) {
        spool_err(err, "read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (spool_parse_content(crec == SPOOL_MAGIC_LEN + 4 ? head + crec : head,
                            crec, st.st_size, &coff, &clen, err)
        < 0) {
        errno = EBADMSG;
        goto fail;
    }
    env_off = coff + clen;
    if (st.st_size - env_off > (off_t) SPOOL_ENV_MAX) {
        errno = EBADMSG;
        spool_err(err, "%s: envelope too large", path);
        goto fail;
    }
    env_len = (size_t) (st.st_size - env_off);
    env_data = xmalloc(env_len + 1);
    if (spool_pread_all(fd, env_data, env_len, env_off) < 0) {
        spool_err(err, "read %s: %s", path, strerror(errno));
        goto fail;
    }
    m = xcalloc(1, sizeof(*m));
    m->size = st.st_size;
    if (spool_parse_env(env_data, env_len, env_off, clen, &m->env, err) < 0) {
        errno = EBADMSG;
        goto fail;
    }
    base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (spool_valid_id(base) && strcmp(base, m->env.id) != 0) {
        errno = EBADMSG;
        spool_err(err, "%s: file holds queue ID %s", path, m->env.id);
        spool_env_free(&m->env);
        goto fail;
    }
    free(env_data);
    m->fd = fd;
    m->content_off = coff;
    m->content_len = clen;
    m->path = xstrdup(path);
    return m;
fail : {
    int saved = errno;
    free(env_data);
    free(m);
    close(fd);
    errno = saved;
    return NULL;
}
}

int
spool_msg_mark(struct spool_msg *m, size_t i, enum spool_rcpt_status st)
{
    unsigned char b = (unsigned char) st;

    if (i >= m->env.nrcpt) {
        errno = EINVAL;
        return -1;
    }
    if ((unsigned) st > SPOOL_RCPT_EXPIRED) {
        errno = EINVAL;
        return -1;
    }
    if (spool_pwrite_all(m->fd, &b, 1, m->env.rcpt[i].status_off) < 0)
        return -1;
    m->env.rcpt[i].status = st;
    return 0;
}

int
spool_msg_sync(struct spool_msg *m)
{
    return fdatasync(m->fd);
}

int
spool_msg_reusable(const struct spool_msg *m)
{
    return m->size <= SPOOL_FREE_MAX;
}

void
spool_msg_close(struct spool_msg *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
}

void
spool_msg_free(struct spool_msg *m)
{
    if (m == NULL)
        return;
    spool_env_free(&m->env);
    if (m->fd >= 0)
        close(m->fd);
    free(m->path);
    free(m);
}

size_t
spool_msg_pending(const struct spool_msg *m)
{
    size_t i, n = 0;

    for (i = 0; i < m->env.nrcpt; i++)
        if (m->env.rcpt[i].status == SPOOL_RCPT_PENDING)
            n++;
    return n;
}
