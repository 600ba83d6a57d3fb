/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * filter.h - the filter interface and the filter chain.
 *
 * Every content or policy check (milters, the ClamAV scanner, header and
 * body checks, policy services) is a filter: a struct filter_ops that is
 * offered each SMTP stage and answers later, on the loop thread, with a
 * verdict and, at end of message, modifications. The SMTP state machine
 * knows filters only through this header.
 *
 * Model:
 *  - A filter_chain is the configured list of one service (built at
 *    start-up; the chains of several services may share a filter).
 *  - A filter_sess is the chain for one SMTP session; each filter gets its
 *    own per-session state from ops->open().
 *  - filter_stage() offers a stage to every filter still interested. Per
 *    filter, stages are delivered strictly in order and one at a time: a
 *    stage is handed to a filter only after it answered the previous one
 *    (the chain queues, copying header and body data). Different filters
 *    work in parallel.
 *  - Stages CONNECT, HELO, MAIL, RCPT, DATA, UNKNOWN and EOM take a done
 *    callback: it runs once every filter has answered that stage, with
 *    the strictest verdict. It may run before filter_stage() returns.
 *  - HEADER, EOH, BODY and ABORT take no callback: the caller goes on
 *    (streaming); verdicts given at those stages are remembered and
 *    reported with the EOM result. filter_backlog() tells how many bytes
 *    wait in the chain's queues, so the caller can stop reading from its
 *    client until the drain callback says the backlog fell below the low
 *    mark.
 *  - Verdict scope: ACCEPT at CONNECT or HELO ends the filter's calls for
 *    the session; ACCEPT, REJECT, TEMPFAIL, DISCARD, HOLD at MAIL or later
 *    end them for the transaction (the filter still gets ABORT). A REJECT
 *    or TEMPFAIL at RCPT applies to that recipient only.
 *  - Strictness: CONTINUE < ACCEPT < HOLD < DISCARD < TEMPFAIL < REJECT;
 *    ties go to the earlier filter in chain order.
 *  - Modifications from EOM answers are kept in chain order (all of the
 *    first filter's, then the second's, ...). Header indexes of a filter
 *    refer to the message as the filters before it modified it (see the
 *    ordering rule at modifies_content); a filter's body replacement
 *    supersedes earlier filters' (only its REPLACE_BODY mods are kept).
 *
 * Owns: per-session filter state (closed in filter_sess_free), queued
 * stage copies, reply texts and modifications. Borrows: the env given to
 * filter_sess_new (must outlive the session) and stage arguments (copied
 * when queued). Threads: loop thread only; a filter that works on another
 * thread gets back to the loop with wpool_post() before filter_answer().
 */
#ifndef SLUICE_FILTER_H
#define SLUICE_FILTER_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "lib/buf.h"

enum filter_stage {
    FILTER_CONNECT,
    FILTER_HELO,
    FILTER_MAIL,
    FILTER_RCPT,
    FILTER_DATA,   /* the DATA command, before 354 */
    FILTER_HEADER, /* one per header field */
    FILTER_EOH,
    FILTER_BODY, /* body bytes, any chunking, CRLF lines, unstuffed */
    FILTER_EOM,
    FILTER_ABORT,  /* transaction ended without EOM (RSET, QUIT, reject) */
    FILTER_UNKNOWN /* unknown or unimplemented SMTP command */
};
#define FILTER_NSTAGES (FILTER_UNKNOWN + 1)

enum filter_verdict {
    FILTER_CONTINUE,
    FILTER_ACCEPT,
    FILTER_HOLD,     /* accept into the hold queue; text = reason */
    FILTER_DISCARD,  /* accept and drop */
    FILTER_TEMPFAIL, /* 4xx */
    FILTER_REJECT    /* 5xx */
};

const char *
filter_stage_name(enum filter_stage st); /* "RCPT", "END-OF-MESSAGE" */
const char *filter_verdict_name(enum filter_verdict v); /* "reject", ... */

/* What a session knows; owned by the caller, read by filters at any
 * stage. Fields fill in as the session goes on (NULL/0 = not yet). */
struct filter_env {
    const struct sockaddr *client_sa;
    const char *client_addr; /* "192.0.2.1" */
    int client_port;
    const char *client_name; /* "unknown" when no name */
    const char *server_addr; /* local address and port */
    int server_port;
    const char *helo;
    const char *proto; /* "SMTP" or "ESMTP" */
    /* after STARTTLS (or in wrapper mode): "TLSv1.3", the cipher's name
     * and its bits; NULL and 0 in clear */
    const char *tls_version;
    const char *tls_cipher;
    int tls_bits;
    /* after AUTH: the mechanism and user name; auth_author: MAIL FROM's
     * AUTH= value. NULL when not authenticated / not given */
    const char *auth_type;
    const char *auth_authen;
    const char *auth_author;
    const char *queue_id; /* "" until the queue file exists */
    const char *sender;   /* MAIL FROM address, "" for <> */
    char *const *rcpts;   /* accepted recipients so far */
    size_t nrcpt;
    /* From EOM on: the message as it will be queued (Received header
     * included), in the open queue file: spool_off .. spool_off+spool_len.
     * Read it with pread(); do not write, seek or close. -1 before EOM. */
    int spool_fd;
    off_t spool_off;
    off_t spool_len;
};

/* Arguments of one stage; copied by the chain when a stage is queued. */
struct filter_args {
    const char *str;    /* HELO name; MAIL/RCPT address (no <>);
                           UNKNOWN: the command line */
    char *const *argv;  /* MAIL/RCPT ESMTP parameters, NULL-terminated */
    const char *hname;  /* HEADER: field name */
    const char *hvalue; /* HEADER: value, after "name:", unfolded
                           lines joined with their CRLF kept */
    const void *data;   /* BODY */
    size_t len;
    const char *rejected; /* RCPT: Sluice itself refused this recipient
                             with this reply ("554 5.7.1 <a@b>: Relay
                             access denied"); offered without a done
                             callback, for filters that want to see such
                             recipients (milters with SMFIP_RCPT_REJ);
                             any verdict is ignored */
};

enum filter_mod_type {
    FILTER_MOD_ADD_HEADER,    /* append at the end of the header */
    FILTER_MOD_INSERT_HEADER, /* before the index-th field (0 = top) */
    FILTER_MOD_CHANGE_HEADER, /* index-th (1-based) field of that name;
                                 value NULL = delete it */
    FILTER_MOD_REPLACE_BODY,  /* successive mods concatenate */
    FILTER_MOD_ADD_RCPT,      /* value = address, args = ESMTP args */
    FILTER_MOD_DELETE_RCPT,   /* value = address */
    FILTER_MOD_CHANGE_SENDER  /* value = address, args = ESMTP args */
};

struct filter_mod {
    enum filter_mod_type type;
    char *name;  /* header name */
    char *value; /* header value, address, or body bytes */
    size_t len;  /* length of value (body data may hold NULs) */
    int index;
    char *args; /* NULL or ESMTP args */
    struct filter_mod *next;
};

struct filter_mod *filter_mod_new(enum filter_mod_type type, const char *name,
                                  const void *value, size_t len, int index,
                                  const char *args);
void filter_mods_free(struct filter_mod *m); /* the whole list; NULL ok */

/* One answer. code 0 / dsn NULL / text NULL mean the defaults of the
 * verdict (550 5.7.1 / 451 4.7.1 ...). text may hold several lines
 * separated by "\n" (a multi-line reply). */
struct filter_reply {
    enum filter_verdict verdict;
    int code;
    const char *dsn;
    const char *text;
    struct filter_mod *mods; /* EOM only; ownership passes to the chain */
};

struct filter_call; /* one pending stage of one filter */

struct filter_ops {
    const char *name; /* "milter:inet:127.0.0.1:8891", "clamav" */
    /* Per-session state; NULL means the filter cannot serve this session
     * and its stages are answered with TEMPFAIL "filter unavailable"
     * unless the filter handles its failure itself. */
    void *(*open)(void *conf, const struct filter_env *env);
    /* Start a stage. The filter calls filter_answer(call, ...) exactly
     * once, now or later, on the loop thread. */
    void (*stage)(void *state, struct filter_call *call, enum filter_stage st,
                  const struct filter_args *args);
    /* Session over; any pending call is cancelled: the filter must not
     * answer it afterwards. Frees state. */
    void (*close)(void *state);
    /* Optional, process-wide: called once by the front process when its
     * event loop exists (loop: a struct ev_loop *), before any session,
     * e.g. to start worker threads or load data; 0, or -1 with the reason
     * in err (the front logs it and goes on: the filter's sessions then
     * get its failure action). stop: at shutdown, after every session. */
    int (*start)(void *conf, void *loop, struct buf *err);
    void (*stop)(void *conf);
    /* Optional: may this filter change the header or body of the message
     * (a milter knows once it negotiated, i.e. after CONNECT)? NULL or 0:
     * no. The ordering rule: a filter placed after one that may change
     * content gets HEADER, EOH and BODY only after that one's EOM, replayed
     * from the message with its modifications applied (so a DKIM signer
     * placed last signs what is delivered); filters that only read get the
     * content while DATA arrives, in parallel. Asked once per transaction,
     * at its first content stage. With several such filters this goes
     * group by group: a filter after two of them sees both changes. A
     * REJECT, TEMPFAIL or DISCARD from an earlier group ends the message:
     * the later filters get ABORT instead. Envelope changes are not
     * replayed. The EOM stage needs its done callback and, in the env,
     * the message (spool_fd) for the replay. */
    int (*modifies_content)(void *state);
    /* Optional, process-wide, after start: how many messages the filter
     * works on at once at end of message when that number is fixed by
     * threads of this process (the in-process scanner's scan threads);
     * NULL or 0: no such bound (a milter, clamd: their own processes). */
    int (*workers)(void *conf);
};

void filter_answer(struct filter_call *call, const struct filter_reply *r);

/* Result given to the caller's done callback; valid during the callback
 * only (copy what you keep). mods: EOM only, chain order. */
struct filter_result {
    enum filter_verdict verdict;
    int code;           /* 0 = caller's default */
    const char *dsn;    /* NULL = caller's default */
    const char *text;   /* NULL = caller's default */
    const char *filter; /* name of the deciding filter, NULL if none */
    const struct filter_mod *mods;
};

typedef void (*filter_done_fn)(void *arg, const struct filter_result *res);

struct filter_chain;
struct filter_chain *filter_chain_new(void);
/* conf is kept (borrowed) and passed to ops->open. */
void filter_chain_add(struct filter_chain *ch, const struct filter_ops *ops,
                      void *conf);
size_t filter_chain_len(const struct filter_chain *ch);
/* ops->start of every filter, in order; a failure is logged as a warning
 * naming the filter and does not stop the others. */
void filter_chain_start(struct filter_chain *ch, void *loop);
/* The smallest ops->workers of the chain's filters that have one, or 0:
 * the front's DATA admission (sluice_data_concurrency_limit) sizes on it. */
int filter_chain_workers(const struct filter_chain *ch);
void filter_chain_stop(struct filter_chain *ch); /* ops->stop, reverse */
/* The same for the n chains of a front (one per service): a filter that
 * several chains hold (the same ops and conf, e.g. the one ClamAV
 * scanner) is started, counted and stopped once. */
void filter_chains_start(struct filter_chain *const *v, size_t n, void *loop);
int filter_chains_workers(struct filter_chain *const *v, size_t n);
void filter_chains_stop(struct filter_chain *const *v, size_t n);
void filter_chain_free(struct filter_chain *ch); /* NULL ok */

struct filter_sess;
struct filter_sess *filter_sess_new(struct filter_chain *ch,
                                    const struct filter_env *env);
/* Closes every filter; pending done callbacks are never called. */
void filter_sess_free(struct filter_sess *fs); /* NULL ok */
void filter_stage(struct filter_sess *fs, enum filter_stage st,
                  const struct filter_args *args, filter_done_fn done,
                  void *arg);
size_t filter_backlog(const struct filter_sess *fs);
#define FILTER_BACKLOG_HIGH (1024 * 1024)
#define FILTER_BACKLOG_LOW  (256 * 1024)
/* Called (on the loop) when the backlog falls below FILTER_BACKLOG_LOW. */
void filter_set_drain(struct filter_sess *fs, void (*cb)(void *), void *arg);

/*
 * Applying modifications.
 * filter_mods_rewrite: copy a message (header + body, CRLF lines) from
 * in_fd[off, off+len) to out(), applying the header and body
 * modifications of mods in list order; envelope mods are ignored.
 * Returns 0, or -1 with errno (read error) or the out() failure.
 * filter_mods_have_content: nonzero when mods hold header or body mods.
 * Threads: pure functions, any thread.
 */
typedef int (*filter_out_fn)(void *arg, const void *p, size_t n);
int filter_mods_have_content(const struct filter_mod *mods);
/* Length of the field name when the line [p, p+n) starts a header field
 * ("Name:", printable non-blank name, blanks allowed before the colon),
 * else 0: the one rule the rewrite and the ordering-rule replay share. */
size_t filter_hdr_name_len(const char *p, size_t n);
int filter_mods_rewrite(const struct filter_mod *mods, int in_fd, off_t off,
                        off_t len, filter_out_fn out, void *arg);
/* When the only header or body mods are insertions at the top (INSERT
 * with index 0), the bytes that go in front of the message, exactly as
 * filter_mods_rewrite() would put them there, into out: 0. Else -1 (a
 * rewrite is needed). */
int filter_mods_top_bytes(const struct filter_mod *mods, struct buf *out);
/* When mods change the header only, the new header fields (what
 * filter_mods_rewrite() writes before the old separator and body) into
 * out, and in *old_len the length of the fields they replace
 * (in_fd[off, off + *old_len)): 0. The message is then out followed by
 * in_fd[off + *old_len, off + len). 1 when a rewrite is needed instead (a
 * body replacement, or no end of the header in the first max bytes); -1
 * (errno: a read error, EINVAL for a bad header name, out's failure). */
int filter_mods_new_head(const struct filter_mod *mods, int in_fd, off_t off,
                         off_t len, size_t max, struct buf *out,
                         size_t *old_len);

#endif
