/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * spool.h - durable queue files and the queue directory.
 *
 * Queue directory layout (queue_directory):
 *   incoming/ active/ deferred/ hold/ corrupt/  one file per message,
 *                                               named by its queue ID
 *   free/         delivered files kept for reuse (spool_remove): a new
 *                 message is written over one of them instead of a new
 *                 file, which saves the file system an inode and block
 *                 allocation and release per message; never read as mail
 *   public/qmgr   the queue manager's wake-up datagram socket
 *   pid/          master.pid
 * A file being written lives in incoming/ under a name starting with '.'
 * (never picked up) until spool_commit() renames it.
 *
 * File format: see the comment at the top of spool.c (records with type
 * and length; content stored contiguously so scanners and delivery read
 * it straight from the file; an end record, so a torn file is detected).
 *
 * Queue IDs: 14 upper-case hex digits ([0-9A-F]), unique across restarts
 * (time in microseconds plus a counter, and O_EXCL creation).
 *
 * Owns: a spool_file owns its fd and temp path until commit or abort; a
 * spool_msg owns its fd and envelope strings.
 * Threads: spool_commit() and spool_msg_sync() are blocking and run in a
 * worker; the rest is quick page-cache I/O used on the loop thread.
 */
#ifndef SLUICE_SPOOL_H
#define SLUICE_SPOOL_H

#include <sys/types.h>

#include "lib/buf.h"

#define SPOOL_ID_LEN  14
#define SPOOL_ID_SIZE (SPOOL_ID_LEN + 1)

enum spool_rcpt_status {
    SPOOL_RCPT_PENDING = 0,
    SPOOL_RCPT_SENT = 1,    /* delivered */
    SPOOL_RCPT_BOUNCED = 2, /* failed permanently */
    SPOOL_RCPT_EXPIRED = 3  /* given up after maximal_queue_lifetime */
};

#define SPOOL_RCPT_MAX 100000 /* recipients per file */

struct spool_rcpt {
    char *addr;
    char *orcpt; /* NULL or the ORCPT parameter */
    enum spool_rcpt_status status;
    off_t status_off; /* file offset of the status byte (read side) */
    char *orig;       /* NULL or the address before virtual_alias_maps */
};

struct spool_env {
    char id[SPOOL_ID_SIZE];
    long long arrival; /* unix time, microseconds */
    char *client_name; /* "unknown" if none */
    char *client_addr;
    int client_port;
    char *helo;        /* NULL if none */
    char *proto;       /* "SMTP", "ESMTP" */
    char *sender;      /* "" for the null sender */
    char *body_type;   /* NULL, "7BIT", "8BITMIME" */
    char *hold_reason; /* NULL, or why it is held */
    struct spool_rcpt *rcpt;
    size_t nrcpt;
    long long size; /* content bytes */
};

void spool_env_free(struct spool_env *e); /* frees fields, not e */

/* Queue directory */
int spool_mkdirs(const char *qdir, struct buf *err);
/* A long-running process opens qdir's subdirectories once, before its
 * threads start: later calls for qdir look names up relative to them.
 * 0, or -1 (errno; absolute paths are used then). */
int spool_dirs_open(const char *qdir);
int spool_new_id(char id[SPOOL_ID_SIZE]);
/* Queue IDs: seconds (8 hex digits), microseconds (5) and a lane (1).
 * A process that holds a lane (1 to SPOOL_ID_LANES - 1; the master gives
 * each front process its own) makes IDs that no other running process
 * makes, each greater than the last one it made and than every ID in
 * qdir's queues when it took the lane: spool_create() then needs no
 * check of the queues for the new ID. Lane 0 is everyone else's (the
 * queue manager's bounces, tools, tests): those IDs are checked against
 * every queue. spool_id_lane(qdir, 0) goes back to lane 0. 0, or -1
 * (errno; a queue could not be read): the process stays in lane 0. */
#define SPOOL_ID_LANES 16
int spool_id_lane(const char *qdir, int lane);
/* Space in qdir's file system for an unprivileged writer: bytes free and
 * the block size. 0, or -1 with errno. */
int spool_space(const char *qdir, unsigned long long *avail,
                unsigned long *bsize);
/* Which queue holds id: "incoming", "active", ... or NULL. */
const char *spool_locate(const char *qdir, const char *id);
/* rename qdir/from/id to qdir/to/id (fsync the target directory when the
 * move is into or out of hold: other moves a crash may undo harmlessly).
 * 0 or -1 (errno). */
int spool_move(const char *qdir, const char *id, const char *from,
               const char *to);
/* Wake the queue manager (non-blocking datagram; errors ignored; each
 * calling thread keeps one socket open for it).
 * msg: "N" new mail, "F" flush deferred. */
void spool_notify(const char *qdir, const char *msg);

/* Writing a message (front process). */
struct spool_file;
/* Creates incoming/.ID with O_EXCL (or takes a file from free/ under that
 * name), a fresh ID. NULL + reason in err. */
struct spool_file *spool_create(const char *qdir, struct buf *err);
/* Same ID, new temp file (to rewrite the content after filters). */
struct spool_file *spool_create_as(const char *qdir, const char *id,
                                   struct buf *err);
const char *spool_id(const struct spool_file *sf);
int spool_fd(const struct spool_file *sf);
/* Append content. Small writes wait in a write-behind buffer (with the
 * file's head) and reach the file together: errors may show only at
 * spool_content_done() or spool_finish(). */
int spool_write(struct spool_file *sf, const void *p, size_t n);
/* The content is complete: everything written reaches the file, with the
 * content length, so spool_fd() readers (filters) see it. spool_write()
 * fails after it. 0 or -1 (errno). */
int spool_content_done(struct spool_file *sf);
/* Put n bytes in front of the content written so far (header fields a
 * filter adds at the top), in the room spool_create() left for it: -1 with
 * ENOSPC when it does not fit (then rewrite the file instead). */
int spool_prepend(struct spool_file *sf, const void *p, size_t n);
/* Replace the first old bytes of the content with n bytes (a header a
 * filter changed), using the same room: -1 with ENOSPC when the new head
 * does not fit there, or is so much shorter that the room would grow past
 * its first size (then rewrite the file instead; the file is unchanged).
 * Other errors (errno) may leave the head half written. */
int spool_replace_head(struct spool_file *sf, size_t old, const void *p,
                       size_t n);
/* Where the content is in the temp file, and its size so far. */
off_t spool_content_off(const struct spool_file *sf);
off_t spool_content_size(const struct spool_file *sf);
/* Ends the content and writes the envelope (env->id and env->size are
 * filled in from sf) and the end record. 0 or -1. */
int spool_finish(struct spool_file *sf, struct spool_env *env);
/* Worker thread: fsync the file, rename into qdir/queue/ID ("incoming",
 * or "hold"), fsync that directory. 0 or -1 (errno). */
int spool_commit(struct spool_file *sf, const char *queue);
/* Group commit, worker thread: the same for n files at once, with one
 * round of disk flushes: writeback of every file is started before the
 * first fsync, so one flush carries them all, and each directory touched
 * is fsync'ed once after all the renames. rc[i] is 0 or the errno of file
 * i; when a directory cannot be synced every file renamed into it is
 * unlinked again and fails (not durable: the client gets a 4xx). */
void spool_commit_batch(struct spool_file **sf, const char **queue, int *rc,
                        size_t n);
void spool_abort(struct spool_file *sf); /* unlink temp; frees; NULL ok */
/* Small enough for free/ (see spool_msg_reusable)? A bigger file that is
 * aborted is a worker's job: its last close frees its pages and blocks. */
int spool_file_reusable(const struct spool_file *sf);
/* A delivered message's file (path, open as fd) is done with: moved into
 * free/ for reuse when it is small, else unlinked. 0, or -1 (errno; a
 * file that is already gone is not an error). Worker thread. */
int spool_remove(const char *qdir, const char *path, int fd);
void spool_free(struct spool_file *sf); /* after commit; NULL ok */

/* Reading a message (queue manager, delivery, tools). */
struct spool_msg {
    struct spool_env env;
    int fd; /* open O_RDWR (status updates) */
    off_t content_off;
    off_t content_len;
    off_t size; /* the file's, when it was read */
    char *path;
};
/* NULL with the reason in err when the file cannot be opened or parsed
 * (caller moves it to corrupt/). errno ENOENT when it is gone. */
struct spool_msg *spool_read(const char *path, struct buf *err);
/* Record a recipient's status in the file (one byte, pwrite). */
int spool_msg_mark(struct spool_msg *m, size_t i, enum spool_rcpt_status st);
int spool_msg_sync(struct spool_msg *m); /* fdatasync; worker thread */
/* Will spool_remove() move this file into free/ (a rename) rather than
 * unlink it? The last close of an unlinked file frees its pages and
 * blocks, about 0.4 ms per MB: a worker's job, like spool_msg_close()
 * after the removal. */
int spool_msg_reusable(const struct spool_msg *m);
void spool_msg_close(struct spool_msg *m); /* close the file now */
void spool_msg_free(struct spool_msg *m);  /* NULL ok */
/* Pending recipients left. */
size_t spool_msg_pending(const struct spool_msg *m);

/* Parse a whole file image from memory (fuzzing, tests). 0 or -1. */
int spool_parse(const void *data, size_t len, struct spool_env *env,
                off_t *content_off, off_t *content_len, struct buf *err);

#endif
