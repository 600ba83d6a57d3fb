/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_spool.c - queue files (spool.c) and queue administration (qadmin.c),
 * each test in its own mkdtemp queue directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "queue/qadmin.h"
#include "queue/spool.h"

/* Sun Nov 22 02:29:38 2015 UTC (TZ=UTC is set in main). */
#define ARRIVAL 1448159378123456LL

struct fx {
    char dir[64];
    struct buf *err;
};

static int
rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int
setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_spool.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->err = buf_new(256, 65536);
    if (spool_mkdirs(f->dir, f->err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    buf_free(f->err);
    free(f);
    return 0;
}

static char *
qpath(const struct fx *f, const char *queue, const char *name)
{
    char *p = xmalloc(256);

    snprintf(p, 256, "%s/%s/%s", f->dir, queue, name);
    return p;
}

static int
exists(const struct fx *f, const char *queue, const char *name)
{
    struct stat st;
    char *p = qpath(f, queue, name);
    int r = stat(p, &st) == 0;

    free(p);
    return r;
}

/* Names in a queue directory, dot-files included. */
static int
count_files(const struct fx *f, const char *queue)
{
    char cmd[256];
    int n = 0;
    FILE *fp;

    snprintf(cmd, sizeof(cmd), "ls -A %s/%s | wc -l", f->dir, queue);
    fp = popen(cmd, "r");
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%d", &n), 1);
    pclose(fp);
    return n;
}

static void *
slurp(const char *path, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    char *p;

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    p = xmalloc((size_t) st.st_size + 1);
    assert_int_equal(read(fd, p, (size_t) st.st_size), st.st_size);
    close(fd);
    *len = (size_t) st.st_size;
    return p;
}

static void
spit(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t) n);
    close(fd);
}

/* Write and commit one message; returns its ID in id. */
static void
put_msg(struct fx *f, const char *queue, const char *sender,
        const char *const *rcpts, const char *content, size_t clen,
        char id[SPOOL_ID_SIZE])
{
    struct spool_rcpt r[8];
    struct spool_env env;
    struct spool_file *sf;
    size_t n = 0;

    memset(&env, 0, sizeof(env));
    memset(r, 0, sizeof(r));
    for (n = 0; rcpts[n] != NULL; n++)
        r[n].addr = (char *) rcpts[n];
    env.arrival = ARRIVAL;
    env.client_name = "mx.example.org";
    env.client_addr = "192.0.2.7";
    env.client_port = 41234;
    env.helo = "mx.example.org";
    env.proto = "ESMTP";
    env.sender = (char *) sender;
    env.rcpt = r;
    env.nrcpt = n;
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    assert_int_equal(spool_write(sf, content, clen), 0);
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_int_equal(spool_commit(sf, queue), 0);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    spool_free(sf);
}

static void
content_is(const struct spool_msg *m, const void *want, size_t n)
{
    char *got = xmalloc(n + 1);

    assert_int_equal(m->content_len, (off_t) n);
    assert_int_equal(pread(m->fd, got, n, m->content_off), (ssize_t) n);
    assert_memory_equal(got, want, n);
    free(got);
}

/* Finish sf with env, commit it into incoming/, free it and read it back;
 * *path (the caller frees it) is the committed file. */
static struct spool_msg *
finish_read(const struct fx *f, struct spool_file *sf, struct spool_env *env,
            char **path)
{
    char id[SPOOL_ID_SIZE];
    struct spool_msg *m;

    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    assert_int_equal(spool_finish(sf, env), 0);
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    spool_free(sf);
    *path = qpath(f, "incoming", id);
    m = spool_read(*path, f->err);
    assert_non_null(m);
    return m;
}

/* ------------------------------------------------------------------ */

static void
test_mkdirs(void **state)
{
    struct fx *f = *state;
    static const char *const sub[] = {"incoming", "active", "deferred", "hold",
                                      "corrupt",  "public", "pid"};
    struct stat st;
    char path[256];
    size_t i;

    for (i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, sub[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    /* Idempotent. */
    assert_int_equal(spool_mkdirs(f->dir, f->err), 0);
    /* A file where a directory belongs: error names the path. */
    snprintf(path, sizeof(path), "%s/sub", f->dir);
    spit(path, "x", 1);
    assert_int_equal(spool_mkdirs(path, f->err), -1);
    assert_non_null(strstr(buf_data(f->err), path));
    /* Nested parents are created. */
    snprintf(path, sizeof(path), "%s/a/b/q", f->dir);
    assert_int_equal(spool_mkdirs(path, f->err), 0);
    strcat(path, "/hold");
    assert_int_equal(stat(path, &st), 0);
}

static void
test_roundtrip_full(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r[3] = {
        {"b@example.net", "rfc822;B@example.net", SPOOL_RCPT_PENDING, 0,
         "info@example.org"},
        {"c@example.net", NULL, SPOOL_RCPT_PENDING, 0, "sales@example.org"},
        {"d@example.com", "", SPOOL_RCPT_PENDING, 0, NULL},
    };
    struct spool_env env = {.arrival = ARRIVAL,
                            .client_name = "mx.example.org",
                            .client_addr = "2001:db8::7",
                            .client_port = 41234,
                            .helo = "mx.example.org",
                            .proto = "ESMTP",
                            .sender = "a@example.org",
                            .body_type = "8BITMIME",
                            .hold_reason = "filter clamav",
                            .rcpt = r,
                            .nrcpt = 3};
    const char *c1 = "Subject: hi\r\n\r\n", *c2 = "body line\r\n";
    struct spool_file *sf;
    struct spool_msg *m;
    struct spool_env penv;
    off_t coff, clen;
    char id[SPOOL_ID_SIZE], *path, *img;
    size_t ilen;

    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    assert_int_equal(strlen(id), SPOOL_ID_LEN);
    {
        char tmp[SPOOL_ID_SIZE + 1];
        snprintf(tmp, sizeof(tmp), ".%s", id);
        assert_true(exists(f, "incoming", tmp));
    }
    assert_int_equal(spool_write(sf, c1, strlen(c1)), 0);
    assert_int_equal(spool_content_size(sf), (off_t) strlen(c1));
    assert_int_equal(spool_write(sf, c2, strlen(c2)), 0);
    assert_int_equal(spool_content_size(sf), (off_t) (strlen(c1) + strlen(c2)));
    assert_true(spool_fd(sf) >= 0);
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_string_equal(env.id, id);
    assert_int_equal(env.size, (long long) (strlen(c1) + strlen(c2)));
    /* No more content after finish. */
    assert_int_equal(spool_write(sf, "x", 1), -1);
    /* Only incoming or hold. */
    assert_int_equal(spool_commit(sf, "deferred"), -1);
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    spool_free(sf);
    assert_true(exists(f, "incoming", id));
    assert_int_equal(count_files(f, "incoming"), 1);
    assert_string_equal(spool_locate(f->dir, id), "incoming");

    path = qpath(f, "incoming", id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_string_equal(m->path, path);
    assert_string_equal(m->env.id, id);
    assert_int_equal(m->env.arrival, ARRIVAL);
    assert_string_equal(m->env.client_name, "mx.example.org");
    assert_string_equal(m->env.client_addr, "2001:db8::7");
    assert_int_equal(m->env.client_port, 41234);
    assert_string_equal(m->env.helo, "mx.example.org");
    assert_string_equal(m->env.proto, "ESMTP");
    assert_string_equal(m->env.sender, "a@example.org");
    assert_string_equal(m->env.body_type, "8BITMIME");
    assert_string_equal(m->env.hold_reason, "filter clamav");
    assert_int_equal(m->env.size, 26);
    assert_int_equal(m->env.nrcpt, 3);
    assert_string_equal(m->env.rcpt[0].addr, "b@example.net");
    assert_string_equal(m->env.rcpt[0].orcpt, "rfc822;B@example.net");
    assert_string_equal(m->env.rcpt[1].addr, "c@example.net");
    assert_null(m->env.rcpt[1].orcpt);
    assert_string_equal(m->env.rcpt[0].orig, "info@example.org");
    assert_string_equal(m->env.rcpt[1].orig, "sales@example.org");
    assert_null(m->env.rcpt[2].orig);
    assert_string_equal(m->env.rcpt[2].addr, "d@example.com");
    assert_string_equal(m->env.rcpt[2].orcpt, "");
    assert_int_equal(m->env.rcpt[0].status, SPOOL_RCPT_PENDING);
    assert_int_equal(spool_msg_pending(m), 3);
    content_is(m, "Subject: hi\r\n\r\nbody line\r\n", 26);

    /* spool_parse on the same bytes agrees. */
    img = slurp(path, &ilen);
    assert_int_equal(spool_parse(img, ilen, &penv, &coff, &clen, f->err), 0);
    assert_int_equal(coff, m->content_off);
    assert_int_equal(clen, 26);
    assert_memory_equal(img + coff, "Subject: hi\r\n\r\nbody line\r\n", 26);
    assert_string_equal(penv.sender, "a@example.org");
    assert_int_equal(penv.rcpt[2].status_off, m->env.rcpt[2].status_off);
    spool_env_free(&penv);
    free(img);
    spool_msg_free(m);
    free(path);
}

static void
test_roundtrip_null_sender_hold(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"postmaster@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {
        .arrival = 0, .helo = "", .sender = "", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf;
    struct spool_msg *m;
    char id[SPOOL_ID_SIZE], *path;

    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    assert_int_equal(spool_finish(sf, &env), 0); /* 0 bytes content */
    assert_int_equal(spool_commit(sf, "hold"), 0);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    spool_free(sf);
    assert_int_equal(count_files(f, "incoming"), 0);
    assert_string_equal(spool_locate(f->dir, id), "hold");

    path = qpath(f, "hold", id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_string_equal(m->env.sender, "");
    assert_string_equal(m->env.helo, "");
    assert_null(m->env.body_type);
    assert_null(m->env.hold_reason);
    assert_string_equal(m->env.client_name, "unknown");
    assert_int_equal(m->env.size, 0);
    assert_int_equal(m->content_len, 0);
    assert_int_equal(m->env.nrcpt, 1);
    spool_msg_free(m);
    free(path);
}

static void
test_big_content(void **state)
{
    struct fx *f = *state;
    size_t n = 1024 * 1024, off = 0, step = 1;
    char *data = xmalloc(n), id[SPOOL_ID_SIZE], *path;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {
        .arrival = ARRIVAL, .sender = "a@b", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf;
    struct spool_msg *m;
    size_t i;

    for (i = 0; i < n; i++)
        data[i] = (char) ((i * 7919) >> 3);
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    /* Uneven chunks, as they arrive from the network. */
    while (off < n) {
        size_t k = step < n - off ? step : n - off;
        assert_int_equal(spool_write(sf, data + off, k), 0);
        off += k;
        step = step * 3 + 1;
    }
    assert_int_equal(spool_content_size(sf), (off_t) n);
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    spool_free(sf);
    path = qpath(f, "incoming", id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_int_equal(m->env.size, (long long) n);
    content_is(m, data, n);
    spool_msg_free(m);
    free(path);
    free(data);
}

static void
test_abort(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf, *sf2;
    char id[SPOOL_ID_SIZE];

    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    assert_int_equal(spool_write(sf, "abc\r\n", 5), 0);
    assert_int_equal(count_files(f, "incoming"), 1);
    spool_abort(sf);
    assert_int_equal(count_files(f, "incoming"), 0);

    /* After finish, and with a rewrite under the same ID. */
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    sf2 = spool_create_as(f->dir, id, f->err);
    assert_non_null(sf2);
    assert_string_equal(spool_id(sf2), id);
    assert_int_equal(count_files(f, "incoming"), 2);
    assert_int_equal(spool_finish(sf, &env), 0);
    spool_abort(sf);
    assert_int_equal(spool_write(sf2, "new\r\n", 5), 0);
    assert_int_equal(spool_finish(sf2, &env), 0);
    assert_int_equal(spool_commit(sf2, "incoming"), 0);
    spool_free(sf2);
    assert_int_equal(count_files(f, "incoming"), 1);
    assert_true(exists(f, "incoming", id));
    spool_abort(NULL);
    spool_free(NULL);
    spool_msg_free(NULL);

    /* Bad ID for create_as; envelope without recipients. */
    assert_null(spool_create_as(f->dir, "../../etc/x", f->err));
    sf = spool_create(f->dir, f->err);
    env.nrcpt = 0;
    assert_int_equal(spool_finish(sf, &env), -1);
    env.nrcpt = 1;
    env.sender = NULL;
    assert_int_equal(spool_finish(sf, &env), -1);
    spool_abort(sf);
    assert_int_equal(count_files(f, "incoming"), 1);
}

static int
cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int
valid_id(const char *id)
{
    return strlen(id) == SPOOL_ID_LEN
           && strspn(id, "0123456789ABCDEF") == SPOOL_ID_LEN;
}

/* Group commit: every file lands in its queue and reads back; a bad one
 * fails alone. */
static void
test_commit_batch(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf[4];
    const char *queue[4] = {"incoming", "hold", "incoming", "bogus"};
    char id[4][SPOOL_ID_SIZE];
    int rc[4];
    size_t i;

    for (i = 0; i < 4; i++) {
        sf[i] = spool_create(f->dir, f->err);
        assert_non_null(sf[i]);
        memcpy(id[i], spool_id(sf[i]), SPOOL_ID_SIZE);
        assert_int_equal(spool_write(sf[i], "Subject: b\r\n\r\nx\r\n", 18), 0);
        assert_int_equal(spool_finish(sf[i], &env), 0);
    }
    spool_commit_batch(sf, queue, rc, 4);
    assert_int_equal(rc[0], 0);
    assert_int_equal(rc[1], 0);
    assert_int_equal(rc[2], 0);
    assert_int_equal(rc[3], EINVAL);
    assert_true(exists(f, "incoming", id[0]));
    assert_true(exists(f, "hold", id[1]));
    assert_true(exists(f, "incoming", id[2]));
    for (i = 0; i < 3; i++)
        spool_free(sf[i]);
    spool_abort(sf[3]);
    assert_int_equal(count_files(f, "incoming"), 2); /* temp of [3] gone */
    for (i = 0; i < 3; i++) {
        char *path = qpath(f, i == 1 ? "hold" : "incoming", id[i]);
        struct spool_msg *m = spool_read(path, f->err);

        assert_non_null(m);
        assert_string_equal(m->env.id, id[i]);
        assert_int_equal(m->content_len, 18);
        spool_msg_free(m);
        free(path);
    }
}

/* A removed small file is kept in free/ and a new message is written over
 * it: the new file must read back exactly (no tail of the old one), and a
 * big file is unlinked. */
static void
test_remove_reuse(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf;
    struct spool_msg *m;
    char *big = xmalloc(300000), *path;
    char id[SPOOL_ID_SIZE];
    struct stat st;
    ino_t ino;
    int i;

    memset(big, 'a', 300000);
    for (i = 0; i < 2; i++) { /* i = 0: long message, i = 1: short one */
        sf = spool_create(f->dir, f->err);
        assert_non_null(sf);
        memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
        assert_int_equal(spool_write(sf, big, i == 0 ? 5000 : 7), 0);
        assert_true(spool_file_reusable(sf));
        m = finish_read(f, sf, &env, &path);
        assert_int_equal(m->content_len, i == 0 ? 5000 : 7);
        assert_int_equal(fstat(m->fd, &st), 0);
        if (i == 1)
            assert_int_equal(st.st_ino, ino); /* the same file again */
        ino = st.st_ino;
        assert_true(spool_msg_reusable(m)); /* the loop may remove it */
        assert_int_equal(spool_remove(f->dir, path, m->fd), 0);
        assert_false(exists(f, "incoming", id));
        assert_int_equal(count_files(f, "free"), 1);
        spool_msg_free(m);
        free(path);
    }
    /* Gone already: not an error. A big file is not kept. */
    path = qpath(f, "incoming", id);
    assert_int_equal(spool_remove(f->dir, path, -1), 0);
    free(path);
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    assert_int_equal(count_files(f, "free"), 0);
    assert_int_equal(spool_write(sf, big, 300000), 0);
    assert_false(spool_file_reusable(sf)); /* aborted: by a worker */
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    spool_free(sf);
    path = qpath(f, "incoming", id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_int_equal(fstat(m->fd, &st), 0);
    assert_int_equal(m->size, st.st_size);
    assert_false(spool_msg_reusable(m)); /* unlinked: by a worker */
    assert_int_equal(spool_remove(f->dir, path, m->fd), 0);
    assert_int_equal(count_files(f, "free"), 0);
    assert_int_equal(count_files(f, "incoming"), 0);
    spool_msg_close(m);
    assert_int_equal(m->fd, -1);
    spool_msg_close(m); /* twice: nothing */
    spool_msg_free(m);
    free(path);
    free(big);
}

/* Prepending: header fields go in front of the content without moving it,
 * several times, until the room is used up (ENOSPC, nothing changed). */
static void
test_prepend(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf = spool_create(f->dir, f->err);
    char big[400], id[SPOOL_ID_SIZE], *path;
    struct spool_msg *m;
    off_t off0;

    assert_non_null(sf);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    off0 = spool_content_off(sf);
    assert_int_equal(spool_write(sf, "Subject: s\r\n\r\nbody\r\n", 21), 0);
    assert_int_equal(spool_prepend(sf, "X-A: 1\r\n", 8), 0);
    assert_int_equal(spool_prepend(sf, "X-B: 2\r\n", 8), 0);
    assert_int_equal(spool_content_off(sf), off0 - 16);
    assert_int_equal(spool_content_size(sf), 37);
    memset(big, 'x', sizeof(big));
    errno = 0;
    assert_int_equal(spool_prepend(sf, big, sizeof(big)), -1);
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(spool_content_size(sf), 37);
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_int_equal(spool_prepend(sf, "X-C: 3\r\n", 8), -1); /* finished */
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    spool_free(sf);
    path = qpath(f, "incoming", id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_int_equal(m->content_off, off0 - 16);
    content_is(m, "X-B: 2\r\nX-A: 1\r\nSubject: s\r\n\r\nbody\r\n", 37);
    spool_msg_free(m);
    free(path);
}

/* A changed header replaces the old one in place: longer by up to the
 * room before the content, shorter as long as the room does not grow
 * past its first size; otherwise ENOSPC and the file as it was. The
 * committed file reads back with the new head and the old rest. */
static void
test_replace_head(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    const char *c = "Subject: s\r\nFrom: <a@b>\r\n\r\nbody\r\n";
    const char *h2 = "Subject: s\r\nFrom: <a@b>\r\nX-Virus-Status: Clean\r\n";
    struct spool_file *sf = spool_create(f->dir, f->err);
    char big[400], *path;
    struct spool_msg *m;
    off_t off0;
    size_t hl = 25, n = strlen(c);

    assert_non_null(sf);
    off0 = spool_content_off(sf);
    assert_int_equal(spool_write(sf, c, n), 0);
    assert_int_equal(spool_content_done(sf), 0);
    /* a field appended at the end of the header */
    assert_int_equal(spool_replace_head(sf, hl, h2, strlen(h2)), 0);
    assert_int_equal(spool_content_off(sf), off0 - 23);
    assert_int_equal(spool_content_size(sf), (off_t) n + 23);
    /* too long for the room left: refused, nothing changed */
    memset(big, 'x', sizeof(big));
    errno = 0;
    assert_int_equal(spool_replace_head(sf, 0, big, sizeof(big)), -1);
    assert_int_equal(errno, ENOSPC);
    /* shorter than the first head by more than the room used: refused */
    errno = 0;
    assert_int_equal(spool_replace_head(sf, strlen(h2), "A: 1\r\n", 6), -1);
    assert_int_equal(errno, ENOSPC);
    /* shorter within it: the Subject dropped again */
    assert_int_equal(
        spool_replace_head(sf, strlen(h2), h2 + 12, strlen(h2) - 12), 0);
    assert_int_equal(spool_content_off(sf), off0 - 11);
    /* past the content: EINVAL */
    errno = 0;
    assert_int_equal(spool_replace_head(sf, 10000, "A", 1), -1);
    assert_int_equal(errno, EINVAL);
    m = finish_read(f, sf, &env, &path);
    assert_int_equal(m->content_off, off0 - 11);
    content_is(m, "From: <a@b>\r\nX-Virus-Status: Clean\r\n\r\nbody\r\n",
               n + 11);
    spool_msg_free(m);
    free(path);
}

/* Content reaches the file (with its length) when it is done, which is
 * when filters read it; writes after that fail; a write error shows there
 * at the latest. */
static void
test_content_done(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    const char *c = "Subject: w\r\n\r\nbody\r\n";
    size_t n = strlen(c), len;
    struct spool_file *sf;
    struct spool_msg *m;
    unsigned char got[64];
    char id[SPOOL_ID_SIZE], *path, *data;
    int fd;

    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    assert_int_equal(spool_write(sf, c, 10), 0);
    assert_int_equal(spool_write(sf, c + 10, n - 10), 0);
    assert_int_equal(spool_content_done(sf), 0);
    assert_int_equal(pread(spool_fd(sf), got, n, spool_content_off(sf)),
                     (ssize_t) n);
    assert_memory_equal(got, c, n);
    assert_int_equal(pread(spool_fd(sf), got, 5, spool_content_off(sf) - 5), 5);
    assert_int_equal(got[0], 'C');
    assert_int_equal(((uint32_t) got[1] << 24) | ((uint32_t) got[2] << 16)
                         | ((uint32_t) got[3] << 8) | got[4],
                     n);
    errno = 0;
    assert_int_equal(spool_write(sf, "x", 1), -1);
    assert_int_equal(errno, EINVAL);
    /* a header field on top still fits, and the length follows it */
    assert_int_equal(spool_prepend(sf, "X-T: 1\r\n", 8), 0);
    m = finish_read(f, sf, &env, &path);
    assert_int_equal(m->content_len, (off_t) n + 8);
    data = slurp(path, &len);
    assert_memory_equal(data + m->content_off, "X-T: 1\r\n", 8);
    assert_memory_equal(data + m->content_off + 8, c, n);
    spool_msg_free(m);
    free(data);
    free(path);

    /* Content past the write-behind buffer: its length is in the file
     * too once done. */
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    data = calloc(1, 40000);
    assert_int_equal(spool_write(sf, data, 30000), 0);
    assert_int_equal(spool_write(sf, data, 7), 0);
    assert_int_equal(spool_content_done(sf), 0);
    assert_int_equal(pread(spool_fd(sf), got, 5, spool_content_off(sf) - 5), 5);
    assert_int_equal(((uint32_t) got[1] << 24) | ((uint32_t) got[2] << 16)
                         | ((uint32_t) got[3] << 8) | got[4],
                     30007);
    free(data);
    spool_abort(sf);

    /* The file cannot be written: done fails with the error. */
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    assert_int_equal(spool_write(sf, c, n), 0);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, spool_fd(sf)), spool_fd(sf));
    close(fd);
    errno = 0;
    assert_int_equal(spool_content_done(sf), -1);
    assert_int_equal(errno, EBADF);
    spool_abort(sf);
    assert_int_equal(count_files(f, "incoming"), 1); /* the first one */
}

static void
test_ids_unique(void **state)
{
    struct fx *f = *state;
    enum {
        N = 10000
    };
    char(*ids)[SPOOL_ID_SIZE] = xcalloc(N, SPOOL_ID_SIZE);
    size_t i;

    for (i = 0; i < N; i++) {
        struct spool_file *sf = spool_create(f->dir, f->err);
        assert_non_null(sf);
        memcpy(ids[i], spool_id(sf), SPOOL_ID_SIZE);
        assert_true(valid_id(ids[i]));
        spool_abort(sf);
    }
    qsort(ids, N, SPOOL_ID_SIZE, cmp_id);
    for (i = 1; i < N; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) < 0);
    /* spool_new_id alone is unique and increasing too. */
    for (i = 0; i < N; i++) {
        assert_int_equal(spool_new_id(ids[i]), 0);
        assert_true(valid_id(ids[i]));
        if (i > 0)
            assert_true(strcmp(ids[i - 1], ids[i]) < 0);
    }
    free(ids);
}

/*
 * A clock the test can stop: this definition takes the place of libc's
 * clock_gettime for the code linked into this binary (spool.c's ID
 * generator); while fake_sec is 0 it passes through to the kernel.
 */
static long long fake_sec;

int
clock_gettime(clockid_t clk, struct timespec *ts)
{
    if (fake_sec != 0 && clk == CLOCK_REALTIME) {
        ts->tv_sec = (time_t) fake_sec;
        ts->tv_nsec = 123456000;
        return 0;
    }
    return (int) syscall(SYS_clock_gettime, clk, ts);
}

static void
put_empty(struct fx *f, const char *queue, const char *name)
{
    char *p = qpath(f, queue, name);

    spit(p, "", 0);
    free(p);
}

/*
 * A restart: the previous run made IDs at the clock reading we see now
 * (clock stepped back, or a restart within the same microsecond). The new
 * IDs must skip every name already in use, in any queue, committed or
 * temporary, and then stay increasing.
 */
static void
test_ids_restart(void **state)
{
    struct fx *f = *state;
    struct spool_file *sf;
    char id[SPOOL_ID_SIZE];
    long long sec;

    /* Far enough ahead that this process never made IDs there. */
    sec = (long long) time(NULL) + 86400;
    {
        char name[SPOOL_ID_SIZE + 1];
        snprintf(name, sizeof(name), "%08llX1E2400", sec); /* lane 0 */
        put_empty(f, "deferred", name);
        snprintf(name, sizeof(name), "%08llX1E2410", sec);
        put_empty(f, "active", name);
        snprintf(name, sizeof(name), "%08llX1E2420", sec);
        put_empty(f, "corrupt", name);
        snprintf(name, sizeof(name), ".%08llX1E2430", sec); /* being written */
        put_empty(f, "incoming", name);
        snprintf(name, sizeof(name), "%08llX1E2450", sec);
        put_empty(f, "hold", name);
    }
    fake_sec = sec;
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    snprintf(id, sizeof(id), "%08llX1E2440", sec);
    assert_string_equal(spool_id(sf), id);
    spool_abort(sf);
    /* Same clock reading again: the next free value. */
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    snprintf(id, sizeof(id), "%08llX1E2460", sec);
    assert_string_equal(spool_id(sf), id);
    spool_abort(sf);
    assert_int_equal(spool_new_id(id), 0);
    fake_sec = 0;
    assert_int_equal(strncmp(id + 8, "1E2470", 6), 0);
    /* The temp file of the other writer is untouched. */
    assert_int_equal(count_files(f, "incoming"), 1);
}

/*
 * A lane (the master gives each front its own): the first ID is above
 * every name in the queues, committed or temporary, even ones the clock
 * has not reached; the IDs go on increasing while the clock stands
 * still or goes back, and they all end in the lane's digit.
 */
static void
test_ids_lane(void **state)
{
    struct fx *f = *state;
    struct spool_file *sf;
    char id[SPOOL_ID_SIZE], prev[SPOOL_ID_SIZE], name[SPOOL_ID_SIZE + 3];
    long long sec = (long long) time(NULL) + 2 * 86400;
    int i;

    snprintf(name, sizeof(name), "%08llX1E2407", sec);
    put_empty(f, "deferred", name);
    snprintf(name, sizeof(name), ".%08llX1E2410.1", sec); /* a rewrite */
    put_empty(f, "incoming", name);
    put_empty(f, "hold", "not-an-id");
    assert_int_equal(spool_id_lane(f->dir, SPOOL_ID_LANES), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(spool_id_lane(f->dir, 3), 0);
    fake_sec = sec; /* the clock reads what those names hold */
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    snprintf(id, sizeof(id), "%08llX1E2423", sec);
    assert_string_equal(spool_id(sf), id);
    spool_abort(sf);
    fake_sec = 0; /* two days back */
    strcpy(prev, id);
    for (i = 0; i < 100; i++) {
        sf = spool_create(f->dir, f->err);
        assert_non_null(sf);
        assert_true(strcmp(prev, spool_id(sf)) < 0);
        assert_int_equal(spool_id(sf)[SPOOL_ID_LEN - 1], '3');
        strcpy(prev, spool_id(sf));
        spool_abort(sf);
    }
    /* Lane 0 again: checked IDs that end in 0. */
    assert_int_equal(spool_id_lane(f->dir, 0), 0);
    assert_int_equal(spool_new_id(id), 0);
    assert_int_equal(id[SPOOL_ID_LEN - 1], '0');
    assert_true(strcmp(prev, id) < 0);
    /* A queue that cannot be read: the process stays in lane 0. */
    {
        char *p = qpath(f, "deferred", "");
        assert_int_equal(chmod(p, 0), 0);
        errno = 0;
        if (access(p, R_OK) != 0) { /* not as root */
            assert_int_equal(spool_id_lane(f->dir, 5), -1);
            assert_int_equal(errno, EACCES);
            assert_int_equal(spool_new_id(id), 0);
            assert_int_equal(id[SPOOL_ID_LEN - 1], '0');
        }
        assert_int_equal(chmod(p, 0755), 0);
        free(p);
    }
}

static void
test_mark(void **state)
{
    struct fx *f = *state;
    const char *rc[] = {"a@x.example", "b@x.example", "c@x.example", NULL};
    char id[SPOOL_ID_SIZE], *path;
    struct spool_msg *m;

    put_msg(f, "incoming", "s@example.org", rc, "hi\r\n", 4, id);
    path = qpath(f, "incoming", id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_int_equal(spool_msg_mark(m, 0, SPOOL_RCPT_SENT), 0);
    assert_int_equal(spool_msg_mark(m, 2, SPOOL_RCPT_BOUNCED), 0);
    assert_int_equal(spool_msg_mark(m, 3, SPOOL_RCPT_SENT), -1);
    assert_int_equal(spool_msg_mark(m, 1, (enum spool_rcpt_status) 9), -1);
    assert_int_equal(spool_msg_sync(m), 0);
    assert_int_equal(spool_msg_pending(m), 1);
    spool_msg_free(m);

    m = spool_read(path, f->err);
    assert_non_null(m); /* the checksum ignores status bytes */
    assert_int_equal(m->env.rcpt[0].status, SPOOL_RCPT_SENT);
    assert_int_equal(m->env.rcpt[1].status, SPOOL_RCPT_PENDING);
    assert_int_equal(m->env.rcpt[2].status, SPOOL_RCPT_BOUNCED);
    assert_int_equal(spool_msg_pending(m), 1);
    assert_int_equal(spool_msg_mark(m, 1, SPOOL_RCPT_EXPIRED), 0);
    spool_msg_free(m);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_int_equal(m->env.rcpt[1].status, SPOOL_RCPT_EXPIRED);
    assert_int_equal(spool_msg_pending(m), 0);
    spool_msg_free(m);
    free(path);
}

/* A valid file image to damage. */
static void *
sample_image(struct fx *f, size_t *len, off_t *coff, off_t *clen)
{
    const char *rc[] = {"a@x.example", "b@x.example", NULL};
    char id[SPOOL_ID_SIZE], *path, *img;
    struct spool_env env;

    put_msg(f, "incoming", "s@example.org", rc, "Subject: t\r\n\r\nx\r\n", 17,
            id);
    path = qpath(f, "incoming", id);
    img = slurp(path, len);
    free(path);
    assert_int_equal(spool_parse(img, *len, &env, coff, clen, f->err), 0);
    spool_env_free(&env);
    return img;
}

static void
test_parse_truncated(void **state)
{
    struct fx *f = *state;
    struct spool_env env;
    off_t coff, clen;
    size_t len, i;
    char *img = sample_image(f, &len, &coff, &clen);
    char *path = qpath(f, "deferred", "0000000000000A");

    for (i = 0; i < len; i++) {
        /* A heap copy of exactly i bytes, so ASan sees any overread. */
        char *cut = xmalloc(i ? i : 1);
        memcpy(cut, img, i);
        buf_reset(f->err);
        assert_int_equal(spool_parse(cut, i, &env, &coff, &clen, f->err), -1);
        assert_true(buf_len(f->err) > 0);
        assert_null(env.sender);
        assert_int_equal(env.nrcpt, 0);
        free(cut);
        if (i % 7 == 0) { /* and through the file reader */
            spit(path, img, i);
            errno = 0;
            assert_null(spool_read(path, f->err));
            assert_int_equal(errno, EBADMSG);
        }
    }
    assert_int_equal(spool_parse(img, len, &env, &coff, &clen, f->err), 0);
    spool_env_free(&env);
    /* Gone: ENOENT. */
    unlink(path);
    assert_null(spool_read(path, f->err));
    assert_int_equal(errno, ENOENT);
    free(path);
    free(img);
}

static void
test_parse_flipped(void **state)
{
    struct fx *f = *state;
    struct spool_env env;
    off_t coff, clen, c2, l2;
    size_t len, i;
    char *img = sample_image(f, &len, &coff, &clen);
    int bit;

    struct spool_env orig;
    off_t status_at[2];

    assert_int_equal(spool_parse(img, len, &orig, &c2, &l2, f->err), 0);
    assert_int_equal(orig.nrcpt, 2);
    status_at[0] = orig.rcpt[0].status_off;
    status_at[1] = orig.rcpt[1].status_off;
    spool_env_free(&orig);
    for (i = 0; i < len; i++) {
        int is_status = (off_t) i == status_at[0] || (off_t) i == status_at[1];
        for (bit = 0; bit < 8; bit++) {
            int in_content = ((off_t) i >= coff && (off_t) i < coff + clen)
                             || (i >= 17 && (off_t) i < coff - 5); /* gap */
            img[i] ^= (char) (1 << bit);
            int r = spool_parse(img, len, &env, &c2, &l2, f->err);
            if (in_content || (is_status && bit < 2)) {
                /* Content and the unused gap bytes are not checksummed;
                 * a status byte may become
                 * another valid status (0..3). */
                assert_int_equal(r, 0);
                if (is_status)
                    assert_int_equal(
                        env.rcpt[i == (size_t) status_at[0] ? 0 : 1].status,
                        1 << bit);
                spool_env_free(&env);
            } else if (r == 0) {
                fail_msg("flip of bit %d at offset %zu accepted", bit, i);
            }
            img[i] ^= (char) (1 << bit);
        }
    }
    free(img);
}

/* A bad gap record is refused with a reason: too long, past the end of
 * the file, or a length that does not lead to the content record. */
static void
test_parse_gap(void **state)
{
    struct fx *f = *state;
    struct spool_env env;
    off_t coff, clen, c2, l2;
    size_t len;
    char *img = sample_image(f, &len, &coff, &clen);
    unsigned char *g = (unsigned char *) img + 13; /* the gap's u32 length */
    unsigned char keep[4];

    assert_int_equal(img[12], 'G');
    assert_true(coff > 22);
    memcpy(keep, g, 4);
    g[0] = 0, g[1] = 1, g[2] = 0, g[3] = 1; /* 65537 > SPOOL_GAP_MAX */
    assert_int_equal(spool_parse(img, len, &env, &c2, &l2, f->err), -1);
    assert_string_equal(buf_data(f->err), "gap of 65537 bytes is too long");
    buf_reset(f->err);
    g[0] = 0, g[1] = 0, g[2] = 0x40, g[3] = 0; /* 16384: past the end */
    assert_int_equal(spool_parse(img, len, &env, &c2, &l2, f->err), -1);
    assert_string_equal(buf_data(f->err), "gap of 16384 bytes is too long");
    buf_reset(f->err);
    g[0] = 0, g[1] = 0, g[2] = 0, g[3] = 100; /* lands inside the gap */
    assert_int_equal(spool_parse(img, len, &env, &c2, &l2, f->err), -1);
    assert_string_equal(buf_data(f->err),
                        "missing content record at offset 117");
    memcpy(g, keep, 4);
    assert_int_equal(spool_parse(img, len, &env, &c2, &l2, f->err), 0);
    assert_int_equal(c2, coff);
    spool_env_free(&env);
    free(img);
}

/* Hand-built images for specific defects. */
static void
rec(struct buf *b, int type, const void *p, size_t n)
{
    unsigned char h[5] = {(unsigned char) type, (unsigned char) (n >> 24),
                          (unsigned char) (n >> 16), (unsigned char) (n >> 8),
                          (unsigned char) n};
    buf_append(b, h, 5);
    buf_append(b, p, n);
}

static uint32_t
fnv_env(const unsigned char *p, size_t n, const size_t *status_at,
        size_t nstatus)
{
    uint32_t h = 2166136261u;
    size_t i, k;

    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        for (k = 0; k < nstatus; k++)
            if (status_at[k] == i)
                c = 0;
        h ^= c;
        h *= 16777619u;
    }
    return h;
}

enum defect {
    D_NONE,
    D_NO_ID,
    D_NO_SENDER,
    D_NO_RCPT,
    D_NUL_SENDER,
    D_BAD_STATUS,
    D_DUP_SENDER,
    D_TRAILING,
    D_UNKNOWN_TYPE,
    D_NO_END,
    D_BAD_SUM,
    D_SIZE_MISMATCH,
    D_BAD_MAGIC
};

static char *
build(enum defect d, size_t *len)
{
    struct buf *b = buf_new(512, BUF_NOCAP), *e = buf_new(512, BUF_NOCAP);
    unsigned char arr[8] = {0, 0, 0, 0, 0, 0, 0, 5};
    unsigned char size[8] = {0, 0, 0, 0, 0, 0, 0, 4};
    size_t status_at[2], ns = 0;
    uint32_t sum;
    unsigned char s4[4];
    char *out;

    buf_append(b, d == D_BAD_MAGIC ? "SLUICEQX" : "SLUICEQF", 8);
    buf_append(b, "\0\0\0\1", 4);
    rec(b, 'C', "ab\r\n", 4);
    if (d != D_NO_ID)
        rec(e, 'I', "0123456789ABCD", 14);
    rec(e, 'T', arr, 8);
    if (d != D_NO_SENDER)
        rec(e, 'S', d == D_NUL_SENDER ? "a\0b" : "a@b", 3);
    if (d == D_DUP_SENDER)
        rec(e, 'S', "c@d", 3);
    if (d == D_SIZE_MISMATCH)
        size[7] = 5;
    rec(e, 'Z', size, 8);
    if (d == D_UNKNOWN_TYPE)
        rec(e, 'q', "zz", 2);
    if (d != D_NO_RCPT) {
        status_at[ns++] = buf_len(e) + 5;
        rec(e, 'R', d == D_BAD_STATUS ? "\007r@x" : "\000r@x", 4);
        status_at[ns++] = buf_len(e) + 5;
        rec(e, 'R', "\001s@x\0orcpt", 10);
    }
    sum = fnv_env((unsigned char *) buf_data(e), buf_len(e), status_at, ns);
    if (d == D_BAD_SUM)
        sum++;
    s4[0] = (unsigned char) (sum >> 24);
    s4[1] = (unsigned char) (sum >> 16);
    s4[2] = (unsigned char) (sum >> 8);
    s4[3] = (unsigned char) sum;
    if (d != D_NO_END)
        rec(e, 'E', s4, 4);
    if (d == D_TRAILING)
        buf_append(e, "x", 1);
    buf_append(b, buf_data(e), buf_len(e));
    *len = buf_len(b);
    out = xmemdup(buf_data(b), buf_len(b));
    buf_free(b);
    buf_free(e);
    return out;
}

static void
test_parse_defects(void **state)
{
    struct fx *f = *state;
    static const struct {
        enum defect d;
        const char *why;
    } cases[] = {
        {D_NO_ID, "missing queue ID"},
        {D_NO_SENDER, "missing sender"},
        {D_NO_RCPT, "no recipients"},
        {D_NUL_SENDER, "NUL byte in sender"},
        {D_BAD_STATUS, "unknown recipient status 7"},
        {D_DUP_SENDER, "duplicate sender"},
        {D_TRAILING, "after end record"},
        {D_UNKNOWN_TYPE, "unknown record type 0x71"},
        {D_NO_END, "missing end record"},
        {D_BAD_SUM, "checksum"},
        {D_SIZE_MISMATCH, "does not match content length"},
        {D_BAD_MAGIC, "bad magic"},
    };
    struct spool_env env;
    off_t coff, clen;
    size_t i, len;
    char *img;

    img = build(D_NONE, &len);
    assert_int_equal(spool_parse(img, len, &env, &coff, &clen, f->err), 0);
    assert_string_equal(env.id, "0123456789ABCD");
    assert_int_equal(env.arrival, 5);
    assert_int_equal(env.nrcpt, 2);
    assert_int_equal(env.rcpt[1].status, SPOOL_RCPT_SENT);
    assert_string_equal(env.rcpt[1].orcpt, "orcpt");
    assert_int_equal(clen, 4);
    spool_env_free(&env);
    free(img);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        img = build(cases[i].d, &len);
        buf_reset(f->err);
        assert_int_equal(spool_parse(img, len, &env, &coff, &clen, f->err), -1);
        if (strstr(buf_data(f->err), cases[i].why) == NULL)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, buf_data(f->err),
                     cases[i].why);
        free(img);
    }
}

static void
test_parse_garbage(void **state)
{
    struct fx *f = *state;
    struct spool_env env;
    off_t coff, clen;
    unsigned int seed = 12345;
    size_t i, j, len;
    char *g;

    assert_int_equal(spool_parse("", 0, &env, &coff, &clen, f->err), -1);
    for (i = 0; i < 2000; i++) {
        len = (size_t) rand_r(&seed) % 300;
        g = xmalloc(len + 1);
        for (j = 0; j < len; j++)
            g[j] = (char) rand_r(&seed);
        if (i % 2 == 0 && len >= 17) /* valid header, garbage after */
            memcpy(g, "SLUICEQF\0\0\0\1C\0\0\0\0", 17);
        assert_int_equal(spool_parse(g, len, &env, &coff, &clen, f->err), -1);
        assert_true(buf_len(f->err) > 0);
        free(g);
    }
    /* Content length past the end. */
    assert_int_equal(spool_parse("SLUICEQF\0\0\0\1C\0\0\1\0", 17, &env, &coff,
                                 &clen, f->err),
                     -1);
    assert_non_null(strstr(buf_data(f->err), "past end"));
    /* A file in the queue under a name not its ID. */
    g = build(D_NONE, &len);
    char *path = qpath(f, "deferred", "0123456789ABCE");
    spit(path, g, len);
    assert_null(spool_read(path, f->err));
    assert_non_null(strstr(buf_data(f->err), "0123456789ABCD"));
    free(path);
    path = qpath(f, "deferred", "0123456789ABCD");
    spit(path, g, len);
    struct spool_msg *m = spool_read(path, f->err);
    assert_non_null(m);
    spool_msg_free(m);
    free(path);
    free(g);
}

static void
test_locate_move(void **state)
{
    struct fx *f = *state;
    const char *rc[] = {"a@x.example", NULL};
    char id[SPOOL_ID_SIZE], lower[SPOOL_ID_SIZE];
    size_t i;

    put_msg(f, "incoming", "s@example.org", rc, "x\r\n", 3, id);
    assert_string_equal(spool_locate(f->dir, id), "incoming");
    assert_null(spool_locate(f->dir, "../x"));
    assert_null(spool_locate(f->dir, "../incoming/ABC"));
    assert_null(spool_locate(f->dir, "ABC"));
    assert_null(spool_locate(f->dir, ""));
    assert_null(spool_locate(f->dir, "0123456789ABCDE"));
    assert_null(spool_locate(f->dir, "0123456789ABCG"));
    memcpy(lower, "0123456789abcd", SPOOL_ID_SIZE);
    assert_null(spool_locate(f->dir, lower));
    /* Lower-case of a real ID. */
    memcpy(lower, id, SPOOL_ID_SIZE);
    for (i = 0; i < SPOOL_ID_LEN; i++)
        if (lower[i] >= 'A' && lower[i] <= 'F')
            lower[i] = (char) (lower[i] - 'A' + 'a');
    if (strcmp(lower, id) != 0)
        assert_null(spool_locate(f->dir, lower));
    assert_null(spool_locate(f->dir, "FFFFFFFFFFFFFF"));

    assert_int_equal(spool_move(f->dir, id, "incoming", "active"), 0);
    assert_string_equal(spool_locate(f->dir, id), "active");
    assert_int_equal(spool_move(f->dir, id, "active", "deferred"), 0);
    assert_string_equal(spool_locate(f->dir, id), "deferred");
    assert_int_equal(spool_move(f->dir, id, "active", "deferred"), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(spool_move(f->dir, "../x", "deferred", "hold"), -1);
    assert_int_equal(spool_move(f->dir, id, "deferred", "../.."), -1);
    assert_string_equal(spool_locate(f->dir, id), "deferred");
}

/* A bound datagram socket at qdir/public/qmgr. */
static int
qmgr_sock(struct fx *f)
{
    struct sockaddr_un sun;
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/public/qmgr", f->dir);
    assert_int_equal(bind(fd, (struct sockaddr *) &sun, sizeof(sun)), 0);
    return fd;
}

/* The next datagram, or "" if none is waiting. */
static void
qmgr_recv(int fd, char *out, size_t n)
{
    ssize_t r = recv(fd, out, n - 1, MSG_DONTWAIT);

    out[r > 0 ? r : 0] = '\0';
}

static void
test_notify(void **state)
{
    struct fx *f = *state;
    char got[16];
    int fd;

    spool_notify(f->dir, "N"); /* nobody listening: no error, no crash */
    fd = qmgr_sock(f);
    spool_notify(f->dir, "N");
    spool_notify(f->dir, "F");
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "N");
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "F");
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "");
    close(fd);
}

/* ------------------------------------------------------------------ */
/* qadmin */

struct qfx {
    char a[SPOOL_ID_SIZE]; /* incoming, 2 rcpts, one sent */
    char b[SPOOL_ID_SIZE]; /* hold, null sender */
    char c[SPOOL_ID_SIZE]; /* deferred */
    char d[SPOOL_ID_SIZE]; /* active, 2000 bytes */
};

static void
queue_setup(struct fx *f, struct qfx *q)
{
    const char *ra[] = {"r1@example.net", "r2@example.net", NULL};
    const char *rb[] = {"bounce@example.org", NULL};
    const char *rc[] = {"r3@example.net", NULL};
    static char big[2000];
    char *path;
    struct spool_msg *m;

    memset(big, 'x', sizeof(big));
    put_msg(f, "incoming", "a@example.org", ra, "A\r\n", 3, q->a);
    put_msg(f, "hold", "", rb, "B\r\n", 3, q->b);
    put_msg(f, "incoming", "c@example.org", rc, "C\r\n", 3, q->c);
    assert_int_equal(spool_move(f->dir, q->c, "incoming", "deferred"), 0);
    put_msg(f, "incoming", "d@example.org", rc, big, sizeof(big), q->d);
    assert_int_equal(spool_move(f->dir, q->d, "incoming", "active"), 0);
    path = qpath(f, "incoming", q->a);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_int_equal(spool_msg_mark(m, 0, SPOOL_RCPT_SENT), 0);
    spool_msg_free(m);
    free(path);
    /* Not listed: a corrupt file, and garbage in deferred. */
    path = qpath(f, "corrupt", "00000000000001");
    spit(path, "junk", 4);
    free(path);
    path = qpath(f, "deferred", "00000000000002");
    spit(path, "junk", 4);
    free(path);
}

static void
test_qadmin_list(void **state)
{
    struct fx *f = *state;
    struct buf *out = buf_new(1024, BUF_NOCAP), *want = buf_new(1024, 65536);
    struct qfx q;

    assert_int_equal(qadmin_list(f->dir, 0, out, f->err), 0);
    assert_string_equal(buf_data(out), "Mail queue is empty\n");
    buf_reset(out);

    queue_setup(f, &q);
    assert_int_equal(qadmin_list(f->dir, 0, out, f->err), 4);
    buf_puts(want, "-Queue ID-  --Size-- ----Arrival Time---- "
                   "-Sender/Recipient-------\n");
    buf_printf(want, "%s         3 Sun Nov 22 02:29:38  a@example.org\n", q.a);
    buf_printf(want, "%46sr2@example.net\n\n", "");
    buf_printf(want, "%s!        3 Sun Nov 22 02:29:38  MAILER-DAEMON\n", q.b);
    buf_printf(want, "%46sbounce@example.org\n\n", "");
    buf_printf(want, "%s         3 Sun Nov 22 02:29:38  c@example.org\n", q.c);
    buf_printf(want, "%46sr3@example.net\n\n", "");
    buf_printf(want, "%s*     2000 Sun Nov 22 02:29:38  d@example.org\n", q.d);
    buf_printf(want, "%46sr3@example.net\n\n", "");
    buf_puts(want, "-- 1 Kbytes in 4 Requests.\n");
    assert_string_equal(buf_data(out), buf_data(want));

    /* JSON, one object per line. */
    buf_reset(out);
    buf_reset(want);
    assert_int_equal(qadmin_list(f->dir, 1, out, f->err), 4);
    buf_printf(want,
               "{\"queue_name\": \"incoming\", \"queue_id\": \"%s\", "
               "\"arrival_time\": 1448159378, \"message_size\": 3, "
               "\"sender\": \"a@example.org\", \"recipients\": "
               "[{\"address\": \"r1@example.net\", \"status\": \"sent\"}, "
               "{\"address\": \"r2@example.net\", \"status\": "
               "\"pending\"}]}\n",
               q.a);
    buf_printf(want,
               "{\"queue_name\": \"hold\", \"queue_id\": \"%s\", "
               "\"arrival_time\": 1448159378, \"message_size\": 3, "
               "\"sender\": \"\", \"recipients\": [{\"address\": "
               "\"bounce@example.org\", \"status\": \"pending\"}]}\n",
               q.b);
    assert_int_equal(strncmp(buf_data(out), buf_data(want), buf_len(want)), 0);
    assert_non_null(strstr(buf_data(out), "\"queue_name\": \"active\""));
    buf_free(out);
    buf_free(want);
}

static void
test_qadmin_json_escape(void **state)
{
    struct fx *f = *state;
    const char *rc[] = {"t\xc3\xa9st@example.net", NULL};
    struct buf *out = buf_new(1024, BUF_NOCAP);
    char id[SPOOL_ID_SIZE];

    put_msg(f, "incoming", "we\"ird\\\x01\x7f\xff@x", rc, "", 0, id);
    assert_int_equal(qadmin_list(f->dir, 1, out, f->err), 1);
    assert_non_null(strstr(buf_data(out),
                           "\"sender\": \"we\\\"ird\\\\\\u0001\\u007f"
                           "\\ufffd@x\""));
    assert_non_null(strstr(buf_data(out), "t\xc3\xa9st@example.net"));
    buf_free(out);
}

static void
test_qadmin_delete(void **state)
{
    struct fx *f = *state;
    struct qfx q;
    char *ids[4];

    queue_setup(f, &q);
    ids[0] = q.a;
    ids[1] = "0000000000000F";
    ids[2] = "../../x";
    ids[3] = NULL;
    buf_reset(f->err);
    assert_int_equal(qadmin_delete(f->dir, ids, f->err), -1);
    assert_non_null(strstr(buf_data(f->err), "0000000000000F: no such"));
    assert_non_null(strstr(buf_data(f->err), "../../x: bad queue ID"));
    assert_null(spool_locate(f->dir, q.a)); /* still deleted */

    ids[0] = q.b;
    ids[1] = NULL;
    assert_int_equal(qadmin_delete(f->dir, ids, f->err), 1);
    assert_null(spool_locate(f->dir, q.b));

    ids[0] = "ALL";
    /* c, d and the garbage file in deferred; not corrupt/. */
    assert_int_equal(qadmin_delete(f->dir, ids, f->err), 3);
    assert_int_equal(count_files(f, "deferred"), 0);
    assert_int_equal(count_files(f, "active"), 0);
    assert_int_equal(count_files(f, "corrupt"), 1);
    assert_int_equal(qadmin_delete(f->dir, ids, f->err), 0);
}

static void
test_qadmin_hold_release_requeue(void **state)
{
    struct fx *f = *state;
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    struct stat st;
    struct qfx q;
    char *ids[3], *path, got[16];
    int fd;

    queue_setup(f, &q);
    fd = qmgr_sock(f);
    ids[0] = q.c;
    ids[1] = q.a;
    ids[2] = NULL;
    assert_int_equal(qadmin_hold(f->dir, ids, f->err), 2);
    assert_string_equal(spool_locate(f->dir, q.c), "hold");
    assert_string_equal(spool_locate(f->dir, q.a), "hold");
    /* Already held: nothing to do. */
    assert_int_equal(qadmin_hold(f->dir, ids, f->err), 0);
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "N");
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "N");

    /* Release: hold -> deferred, due now, qmgr told to flush. */
    path = qpath(f, "hold", q.c);
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    free(path);
    ids[1] = NULL;
    assert_int_equal(qadmin_release(f->dir, ids, f->err), 1);
    assert_string_equal(spool_locate(f->dir, q.c), "deferred");
    path = qpath(f, "deferred", q.c);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_mtime >= time(NULL) - 60);
    free(path);
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "F");

    /* Release ALL: a and b were held. */
    ids[0] = "ALL";
    assert_int_equal(qadmin_release(f->dir, ids, f->err), 2);
    assert_string_equal(spool_locate(f->dir, q.b), "deferred");
    assert_int_equal(count_files(f, "hold"), 0);

    /* Requeue: deferred and active -> incoming. */
    ids[0] = q.c;
    ids[1] = q.d;
    ids[2] = NULL;
    assert_int_equal(qadmin_requeue(f->dir, ids, f->err), 2);
    assert_string_equal(spool_locate(f->dir, q.c), "incoming");
    assert_string_equal(spool_locate(f->dir, q.d), "incoming");
    ids[0] = "ALL";
    ids[1] = NULL;
    /* a, b, c, d and the deferred garbage file */
    assert_int_equal(qadmin_requeue(f->dir, ids, f->err), 5);
    assert_int_equal(count_files(f, "deferred"), 0);
    assert_int_equal(count_files(f, "incoming"), 5);
    assert_int_equal(count_files(f, "corrupt"), 1);
    close(fd);
}

static void
test_qadmin_cat(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r[2] = {
        {"b@example.net", "rfc822;b@example.net", 0, 0, "info@example.net"},
        {"c@example.net", NULL, 0, 0, NULL}};
    struct spool_env env = {.arrival = ARRIVAL,
                            .client_name = "mx.example.org",
                            .client_addr = "192.0.2.7",
                            .client_port = 25,
                            .helo = "mx",
                            .proto = "ESMTP",
                            .sender = "a@example.org",
                            .rcpt = r,
                            .nrcpt = 2};
    const char *content = "Subject: x\r\n\r\nhello\r\n";
    struct spool_file *sf;
    struct buf *want = buf_new(1024, 65536);
    char id[SPOOL_ID_SIZE], *path, *got;
    size_t glen;
    int fd;

    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    assert_int_equal(spool_write(sf, content, strlen(content)), 0);
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    spool_free(sf);

    path = qpath(f, "pid", "cat.out");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(qadmin_cat(f->dir, id, fd, f->err), 1);
    close(fd);
    got = slurp(path, &glen);
    got[glen] = '\0';
    buf_printf(want, "*** ENVELOPE RECORDS %s ***\n", id);
    buf_puts(want, "queue_name: incoming\n"
                   "message_size: 21\n"
                   "message_arrival_time: Sun Nov 22 02:29:38 2015\n"
                   "client_name: mx.example.org\n"
                   "client_address: 192.0.2.7\n"
                   "client_port: 25\n"
                   "helo_name: mx\n"
                   "protocol_name: ESMTP\n"
                   "sender: a@example.org\n"
                   "dsn_orig_rcpt: rfc822;b@example.net\n"
                   "original_recipient: info@example.net\n"
                   "recipient: b@example.net (pending)\n"
                   "recipient: c@example.net (pending)\n");
    buf_printf(want, "*** MESSAGE CONTENTS %s ***\n", id);
    buf_puts(want, content);
    buf_puts(want, "*** END OF MESSAGE ***\n");
    assert_string_equal(got, buf_data(want));
    free(got);

    assert_int_equal(qadmin_cat(f->dir, "0000000000000F", 1, f->err), -1);
    assert_non_null(strstr(buf_data(f->err), "no such message"));
    buf_reset(f->err);
    assert_int_equal(qadmin_cat(f->dir, "../pid/cat.out", 1, f->err), -1);
    assert_non_null(strstr(buf_data(f->err), "bad queue ID"));
    free(path);
    buf_free(want);
}

static void
test_qadmin_flush(void **state)
{
    struct fx *f = *state;
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    struct stat st;
    struct qfx q;
    char *path, got[16];
    int fd;

    queue_setup(f, &q);
    /* c and the garbage file are in deferred. */
    path = qpath(f, "deferred", q.c);
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);

    /* A live qmgr gets "F"; files are left alone. */
    fd = qmgr_sock(f);
    assert_int_equal(qadmin_flush(f->dir, f->err), 2);
    qmgr_recv(fd, got, sizeof(got));
    assert_string_equal(got, "F");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mtime, 1000000000);
    close(fd);

    /* Socket file left but nobody listening: make them due. */
    assert_int_equal(qadmin_flush(f->dir, f->err), 2);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_mtime >= time(NULL) - 60);
    free(path);

    /* No socket at all. */
    path = qpath(f, "public", "qmgr");
    unlink(path);
    free(path);
    assert_int_equal(qadmin_flush(f->dir, f->err), 2);

    /* No queue directory: a clear error. */
    buf_reset(f->err);
    assert_int_equal(qadmin_flush("/nonexistent/q", f->err), -1);
    assert_non_null(strstr(buf_data(f->err), "/nonexistent/q/deferred"));
}

/* With the queue's subdirectories kept open (spool_dirs_open, as the
 * daemons do) every operation goes through them: the create, commit,
 * batch commit, hold, reuse and move tests pass again that way, and after
 * the queue directory is renamed a new file still lands in it and is
 * moved, read and removed by its old path (proof that the open
 * directories, not the path, are used). Last in the list: the
 * opened directories are process-wide. */
static void
test_dirs_open(void **state)
{
    struct fx *f = *state;
    struct spool_rcpt r = {"x@example.net", NULL, 0, 0, NULL};
    struct spool_env env = {.sender = "a@b", .rcpt = &r, .nrcpt = 1};
    struct spool_file *sf;
    struct spool_msg *m;
    char moved[sizeof(f->dir) + 8], path[512], id[SPOOL_ID_SIZE];
    struct stat st;

    assert_int_equal(spool_dirs_open(f->dir), 0);
    assert_int_equal(spool_dirs_open(f->dir), 0); /* again: the same */
    assert_int_equal(spool_dirs_open("/nonexistent/queue"), -1);
    test_remove_reuse(state); /* first: it counts the files in incoming/ */
    test_commit_batch(state);
    test_locate_move(state);

    snprintf(moved, sizeof(moved), "%s.moved", f->dir);
    assert_int_equal(rename(f->dir, moved), 0);
    sf = spool_create(f->dir, f->err);
    assert_non_null(sf);
    memcpy(id, spool_id(sf), SPOOL_ID_SIZE);
    assert_int_equal(spool_write(sf, "Subject: m\r\n\r\nx\r\n", 18), 0);
    assert_int_equal(spool_finish(sf, &env), 0);
    assert_int_equal(spool_commit(sf, "incoming"), 0);
    spool_free(sf);
    snprintf(path, sizeof(path), "%s/incoming/%s", moved, id);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(spool_move(f->dir, id, "incoming", "deferred"), 0);
    snprintf(path, sizeof(path), "%s/deferred/%s", moved, id);
    assert_int_equal(stat(path, &st), 0);
    /* read and remove by the old absolute path: through the open dirs */
    snprintf(path, sizeof(path), "%s/deferred/%s", f->dir, id);
    m = spool_read(path, f->err);
    assert_non_null(m);
    assert_string_equal(m->env.id, id);
    assert_int_equal(spool_remove(f->dir, path, m->fd), 0);
    spool_msg_free(m);
    snprintf(path, sizeof(path), "%s/deferred/%s", moved, id);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(rename(moved, f->dir), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mkdirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_null_sender_hold, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_big_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepend, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_lane, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_flipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_defects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locate_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qadmin_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qadmin_json_escape, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qadmin_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qadmin_hold_release_requeue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_qadmin_cat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qadmin_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirs_open, setup, teardown),
    };

    setenv("TZ", "UTC", 1);
    tzset();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
