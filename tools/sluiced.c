/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluiced.c - the master process.
 * Reads the configuration, makes the queue directory, binds every
 * listener of master.cf, then starts and supervises two children: the
 * front (smtpd_run: the SMTP sessions) and the queue manager (qmgr_run:
 * delivery). The queue directory is the only interface between them.
 *  - A child that dies is logged and restarted (at once if it ran for a
 *    while, else after a backoff that doubles up to 60 s); the other child
 *    carries on.
 *  - SIGHUP: re-read the configuration; if it is valid, start a new front
 *    with it at once and tell the old one to drain (SIGHUP: it stops
 *    accepting and exits when its last session ends), so no session is
 *    cut by a reload; the queue manager is stopped, then started again
 *    (two must never run at once). Listeners are kept when master.cf still
 *    names the same addresses, rebound otherwise. A bad configuration is
 *    logged and the old one stays in service.
 *  - SIGTERM/SIGINT: stop the children (SIGTERM, then SIGKILL after a
 *    grace period) and exit 0.
 * Children die with the master (PR_SET_PDEATHSIG), so a kill -9 of the
 * master leaves no orphan accepting mail.
 * Owns: the listening sockets, the pid file lock, the children.
 * Threads: one; signals are taken synchronously with sigtimedwait().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf/cf.h"
#include "filters/clam.h"
#include "filters/header_checks.h"
#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xalloc.h"
#include "milter/milter.h"
#include "proxy/smtpd.h"
#include "proxy/smtpd_check.h"
#include "queue/dlv.h"
#include "queue/qmgr.h"
#include "queue/spool.h"

#define MASTER_GRACE       10 /* seconds children get to stop */
#define MASTER_DRAIN_MAX   16 /* old fronts finishing their sessions */
#define MASTER_BACKOFF_MAX 60

enum master_child {
    MASTER_SMTPD,
    MASTER_QMGR
};
#define MASTER_NCHILD 2

static const char *const master_child_name[MASTER_NCHILD] = {"smtpd", "qmgr"};

struct master_listener {
    int fd;
    char *key; /* "host port" it is bound to */
    const struct cf_service *svc;
};

struct master {
    const char *confdir;
    struct cf *cf;
    struct cf_service *svcs;
    size_t nsvcs;
    struct master_listener *ls;
    size_t nls;
    pid_t pid[MASTER_NCHILD];
    pid_t drain[MASTER_DRAIN_MAX]; /* old fronts after a reload */
    /* the front that holds each queue ID lane, until it is reaped (see
     * spool_id_lane; lane 0 is nobody's) */
    pid_t lane_pid[SPOOL_ID_LANES];
    time_t started[MASTER_NCHILD];
    time_t restart_at[MASTER_NCHILD]; /* 0 = not waiting */
    int expect[MASTER_NCHILD]; /* asked to stop: its exit is no failure */
    int backoff[MASTER_NCHILD];
    uid_t uid;
    gid_t gid;
    int drop; /* switch children to mail_owner */
    int pidfd;
};

static void
master_usage(void)
{
    fprintf(stderr, "usage: sluiced [-c config_directory] [-v]\n");
    exit(2);
}

/* The addresses a service listens on: its own host, or inet_interfaces
 * filtered by inet_protocols. */
static void
master_hosts(const struct cf_service *svc, char ***out, size_t *n)
{
    const struct cf *cf = svc->cf;
    char *const *ifs = cf_list(cf, "inet_interfaces");
    int v4, v6;
    size_t i;

    cf_inet_protocols(cf, &v4, &v6);
    *n = 0;
    *out = xcalloc(64, sizeof(char *));
    if (svc->host) {
        (*out)[(*n)++] = xstrdup(svc->host);
        return;
    }
    for (i = 0; ifs[i] && *n < 62; i++) {
        const char *h = ifs[i];
        if (strcasecmp(h, "all") == 0) {
            if (v4)
                (*out)[(*n)++] = xstrdup("0.0.0.0");
            if (v6)
                (*out)[(*n)++] = xstrdup("::");
        } else if (strcasecmp(h, "loopback-only") == 0
                   || strcasecmp(h, "localhost") == 0) {
            if (v4)
                (*out)[(*n)++] = xstrdup("127.0.0.1");
            if (v6)
                (*out)[(*n)++] = xstrdup("::1");
        } else {
            char *c = xstrdup(h), *host = c;
            size_t len = strlen(c);
            if (c[0] == '[' && len > 1 && c[len - 1] == ']') {
                c[len - 1] = '\0';
                host = c + 1;
            }
            int is6 = strchr(host, ':') != NULL;
            if ((is6 && v6) || (!is6 && v4))
                (*out)[(*n)++] = xstrdup(host);
            free(c);
        }
    }
}

static void
master_free_listeners(struct master_listener *ls, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ls[i].fd >= 0)
            close(ls[i].fd);
        free(ls[i].key);
    }
    free(ls);
}

/* Bind every service's addresses; reuse fds of old listeners with the
 * same key. Returns 0, or -1 with the reason in err. */
static int
master_bind(struct master *m, const struct cf_service *svcs, size_t nsvcs,
            struct master_listener **out, size_t *nout, struct buf *err)
{
    struct master_listener *ls = NULL;
    size_t nls = 0, i, j, k, nh;
    char **hosts;

    for (i = 0; i < nsvcs; i++) {
        master_hosts(&svcs[i], &hosts, &nh);
        for (j = 0; j < nh; j++) {
            char key[300];
            int fd = -1;
            snprintf(key, sizeof(key), "%s %s", hosts[j], svcs[i].port);
            for (k = 0; k < m->nls; k++) {
                if (m->ls[k].fd >= 0 && strcmp(m->ls[k].key, key) == 0) {
                    fd = m->ls[k].fd;
                    m->ls[k].fd = -1; /* moved */
                    break;
                }
            }
            if (fd < 0) {
                int family = strchr(hosts[j], ':') ? AF_INET6 : AF_INET;
                fd = net_listen(hosts[j], svcs[i].port, family);
            }
            if (fd < 0) {
                if (errno == EADDRNOTAVAIL && svcs[i].host == NULL
                    && strchr(hosts[j], ':')) {
                    log_warning("%s: IPv6 is not available: not listening "
                                "on [%s]:%s",
                                svcs[i].where, hosts[j], svcs[i].port);
                    free(hosts[j]);
                    continue;
                }
                buf_printf(err, "%s: cannot listen on %s%s%s:%s: %s",
                           svcs[i].where, strchr(hosts[j], ':') ? "[" : "",
                           hosts[j], strchr(hosts[j], ':') ? "]" : "",
                           svcs[i].port, strerror(errno));
                for (; j < nh; j++)
                    free(hosts[j]);
                free(hosts);
                master_free_listeners(ls, nls);
                return -1;
            }
            ls = xrealloc(ls, (nls + 1) * sizeof(*ls));
            ls[nls].fd = fd;
            ls[nls].key = xstrdup(key);
            ls[nls].svc = &svcs[i];
            nls++;
            free(hosts[j]);
        }
        free(hosts);
    }
    if (nls == 0) {
        buf_puts(err, "no listening address: check master.cf, "
                      "inet_interfaces and inet_protocols");
        free(ls);
        return -1;
    }
    *out = ls;
    *nout = nls;
    return 0;
}

/* Make a directory (and parents) owned by the children's user. */
static int
master_mkdir_owned(struct master *m, const char *path)
{
    char *p = xstrdup(path), *s;
    int r = 0;

    for (s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            r = -1;
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        r = -1;
    if (r == 0 && m->drop && chown(p, m->uid, m->gid) < 0)
        r = -1;
    free(p);
    return r;
}

/* Queue directory, its subdirectories and the Maildir base, owned by the
 * user the children run as. */
static void
master_prepare_dirs(struct master *m)
{
    static const char *const sub[] = {"incoming", "active", "deferred", "hold",
                                      "corrupt",  "public", "pid",      NULL};
    const char *qdir = cf_str(m->cf, "queue_directory");
    const char *mail = cf_str(m->cf, "mail_spool_directory");
    struct buf *err = buf_new(256, 4096);
    char path[4096];
    size_t i;

    if (master_mkdir_owned(m, qdir) < 0)
        log_fatal("queue_directory %s: %s", qdir, strerror(errno));
    if (spool_mkdirs(qdir, err) < 0)
        log_fatal("%s", buf_data(err));
    for (i = 0; m->drop && sub[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", qdir, sub[i]);
        if (chown(path, m->uid, m->gid) < 0)
            log_fatal("chown %s: %s", path, strerror(errno));
    }
    if (*mail && mail[strlen(mail) - 1] == '/'
        && master_mkdir_owned(m, mail) < 0)
        log_warning("mail_spool_directory %s: %s", mail, strerror(errno));
    buf_free(err);
}

static void
master_lock_pid(struct master *m)
{
    char path[4096], line[32];
    int n;

    snprintf(path, sizeof(path), "%s/pid/master.pid",
             cf_str(m->cf, "queue_directory"));
    m->pidfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (m->pidfd < 0)
        log_fatal("open %s: %s", path, strerror(errno));
    if (flock(m->pidfd, LOCK_EX | LOCK_NB) < 0)
        log_fatal("the Sluice mail system is already running (%s is locked)",
                  path);
    n = snprintf(line, sizeof(line), "%ld\n", (long) getpid());
    if (ftruncate(m->pidfd, 0) < 0
        || pwrite(m->pidfd, line, (size_t) n, 0) != n)
        log_fatal("write %s: %s", path, strerror(errno));
}

static void
master_owner(struct master *m)
{
    const char *owner = cf_str(m->cf, "mail_owner");
    struct passwd *pw;

    m->drop = 0;
    if (geteuid() != 0)
        return;
    pw = getpwnam(owner);
    if (pw == NULL) {
        log_warning("mail_owner %s: no such user; the children keep running "
                    "as root (create the user or set mail_owner)",
                    owner);
        return;
    }
    if (pw->pw_uid == 0)
        return;
    m->uid = pw->pw_uid;
    m->gid = pw->pw_gid;
    m->drop = 1;
}

/* Each listener's filter chain, in the order filters see mail: the
 * ClamAV scanner (it only reads) where its service has clamav_enable,
 * then the service's smtpd_milters in their order, with its milter_*
 * settings (main.cf's, or its -o overrides). The listeners of one service
 * share a chain and every chain shares the one scanner, built from
 * main.cf (clam_cf). The configuration was checked by master_load, so
 * this cannot fail. Chains and confs live as long as the process. */
static void
master_chains(struct master *m, struct smtpd_listener *sl)
{
    struct cf *ccf = clam_cf(m->cf, m->svcs, m->nsvcs);
    struct clam_conf *cc = NULL;
    struct buf *err = buf_new(256, 4096);
    struct milter_conf **mv;
    size_t i, k;

    if (ccf && (cc = clam_conf_new(ccf, err)) == NULL)
        log_fatal("%s", buf_data(err));
    for (i = 0; i < m->nls; i++) {
        const struct cf *scf = m->ls[i].svc->cf;

        for (k = 0; k < i && m->ls[k].svc != m->ls[i].svc; k++)
            ;
        if (k < i) {
            sl[i].chain = sl[k].chain;
            continue;
        }
        sl[i].chain = filter_chain_new();
        /* header_checks first: it sees the message as the client sent
         * it, as Postfix's cleanup does */
        {
            int none;
            struct hc_conf *hc = hc_conf_new(scf, &none, err);

            if (hc == NULL && !none)
                log_fatal("%s", buf_data(err));
            if (hc)
                filter_chain_add(sl[i].chain, &hc_filter_ops, hc);
        }
        if (cc && cf_bool(scf, "clamav_enable"))
            filter_chain_add(sl[i].chain, &clam_filter_ops, cc);
        if ((mv = milter_confs_new(scf, "smtpd_milters", err)) == NULL)
            log_fatal("%s", buf_data(err));
        for (k = 0; mv[k]; k++)
            filter_chain_add(sl[i].chain, &milter_filter_ops, mv[k]);
        free(mv); /* the array; the confs are the chain's */
    }
    buf_free(err);
}

static void
master_start(struct master *m, enum master_child c)
{
    struct smtpd_listener *sl = NULL;
    struct qmgr *qm = NULL;
    sigset_t none;
    pid_t pid;
    size_t i;
    int rc = 1, lane = 0;

    /* A front takes a queue ID lane that no running front holds: old
     * fronts that finish their sessions after a reload keep theirs. With
     * more fronts than lanes the new one checks its IDs (lane 0). */
    if (c == MASTER_SMTPD)
        for (lane = 1; lane < SPOOL_ID_LANES && m->lane_pid[lane] > 0; lane++)
            ;
    if (lane == SPOOL_ID_LANES)
        lane = 0;
    pid = fork();
    if (pid < 0) {
        log_warning("fork %s: %s", master_child_name[c], strerror(errno));
        m->restart_at[c] = time(NULL) + 1;
        return;
    }
    if (pid > 0) {
        if (lane > 0)
            m->lane_pid[lane] = pid;
        m->pid[c] = pid;
        m->started[c] = time(NULL);
        m->restart_at[c] = 0;
        return;
    }
    /* child */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        _exit(0);
    prctl(PR_SET_NAME, master_child_name[c]);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    close(m->pidfd);
    log_set_service(master_child_name[c]);
    if (cf_bool(m->cf, "sluice_batch_scheduling")) {
        /* Before any thread exists: they all inherit it. */
        struct sched_param sp = {0};

        if (sched_setscheduler(0, SCHED_BATCH, &sp) < 0)
            log_warning("sluice_batch_scheduling: %s", strerror(errno));
    }
    if (c == MASTER_SMTPD) {
        sl = xcalloc(m->nls, sizeof(*sl));
        for (i = 0; i < m->nls; i++) {
            sl[i].fd = m->ls[i].fd;
            sl[i].svc = m->ls[i].svc;
        }
        smtpd_tls_load(m->cf, sl, m->nls); /* key files: root's, often */
        /* tables (access maps, header_checks): root's, sometimes */
        smtpd_checks_load(m->cf, sl, m->nls);
        master_chains(m, sl);
    }
    if (c == MASTER_QMGR && (qm = qmgr_new(m->cf)) == NULL)
        _exit(1); /* tables: a password file is root's, often */
    if (m->drop) {
        if (setgroups(0, NULL) < 0 || setgid(m->gid) < 0 || setuid(m->uid) < 0)
            log_fatal("cannot switch to mail_owner %s: %s",
                      cf_str(m->cf, "mail_owner"), strerror(errno));
    }
    switch (c) {
    case MASTER_SMTPD:
        if (lane > 0
            && spool_id_lane(cf_str(m->cf, "queue_directory"), lane) < 0)
            log_warning("cannot read the queue for its queue IDs: %s; "
                        "checking each new ID against the queue",
                        strerror(errno));
        rc = smtpd_run(m->cf, sl, m->nls);
        break;
    case MASTER_QMGR: {
        int *fds = xcalloc(m->nls ? m->nls : 1, sizeof(int));

        for (i = 0; i < m->nls; i++)
            fds[i] = m->ls[i].fd;
        qmgr_listeners(qm, fds, m->nls);
        free(fds);
        for (i = 0; i < m->nls; i++)
            close(m->ls[i].fd);
        rc = qmgr_run(qm);
        break;
    }
    }
    _exit(rc);
}

static void
master_reaped(struct master *m, pid_t pid, int status, int stopping)
{
    enum master_child c;
    time_t now = time(NULL);

    for (size_t i = 1; i < SPOOL_ID_LANES; i++)
        if (m->lane_pid[i] == pid)
            m->lane_pid[i] = 0;
    for (size_t i = 0; i < MASTER_DRAIN_MAX; i++) {
        if (m->drain[i] == pid) {
            m->drain[i] = 0;
            log_debug("old smtpd pid %ld finished its sessions", (long) pid);
            return;
        }
    }
    for (c = MASTER_SMTPD; c < MASTER_NCHILD; c++)
        if (m->pid[c] == pid)
            break;
    if (c == MASTER_NCHILD)
        return;
    m->pid[c] = 0;
    if (stopping || m->expect[c]) {
        m->expect[c] = 0;
        return;
    }
    if (WIFSIGNALED(status))
        log_warning("process %s pid %ld killed by signal %d",
                    master_child_name[c], (long) pid, WTERMSIG(status));
    else
        log_warning("process %s pid %ld exit status %d", master_child_name[c],
                    (long) pid, WEXITSTATUS(status));
    if (now - m->started[c] >= 10) {
        m->backoff[c] = 0;
        m->restart_at[c] = now;
    } else {
        m->backoff[c] = m->backoff[c] ? m->backoff[c] * 2 : 1;
        if (m->backoff[c] > MASTER_BACKOFF_MAX)
            m->backoff[c] = MASTER_BACKOFF_MAX;
        log_warning("%s: bad command startup -- throttling for %d s",
                    master_child_name[c], m->backoff[c]);
        m->restart_at[c] = now + m->backoff[c];
    }
}

static void
master_reap_all(struct master *m, int stopping)
{
    pid_t pid;
    int status;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        master_reaped(m, pid, status, stopping);
}

/* SIGTERM both children and wait for them, SIGKILL after the grace. */
static void
master_stop_children(struct master *m)
{
    struct timespec ts = {0, 100 * 1000 * 1000};
    time_t deadline = time(NULL) + MASTER_GRACE;
    enum master_child c;
    int alive;

    for (c = MASTER_SMTPD; c < MASTER_NCHILD; c++)
        if (m->pid[c] > 0)
            kill(m->pid[c], SIGTERM);
    for (size_t i = 0; i < MASTER_DRAIN_MAX; i++)
        if (m->drain[i] > 0)
            kill(m->drain[i], SIGTERM);
    for (;;) {
        master_reap_all(m, 1);
        alive = 0;
        for (c = MASTER_SMTPD; c < MASTER_NCHILD; c++)
            alive |= m->pid[c] > 0;
        for (size_t i = 0; i < MASTER_DRAIN_MAX; i++)
            alive |= m->drain[i] > 0;
        if (!alive)
            break;
        if (time(NULL) >= deadline) {
            for (c = MASTER_SMTPD; c < MASTER_NCHILD; c++)
                if (m->pid[c] > 0) {
                    log_warning("process %s pid %ld did not stop: killing",
                                master_child_name[c], (long) m->pid[c]);
                    kill(m->pid[c], SIGKILL);
                }
            for (size_t i = 0; i < MASTER_DRAIN_MAX; i++)
                if (m->drain[i] > 0)
                    kill(m->drain[i], SIGKILL);
            deadline = time(NULL) + MASTER_GRACE;
        }
        nanosleep(&ts, NULL);
    }
}

/* The scanner's settings (clam_conf_new judges the action words) and
 * every service's smtpd_milters: 0, or -1 with "FILE: ..." in err (main.cf,
 * or the master.cf line of the service's -o). */
static int
master_check_filters(const char *confdir, const struct cf *cf,
                     const struct cf_service *svcs, size_t n, struct buf *err)
{
    struct cf *ccf = clam_cf(cf, svcs, n);
    struct buf *e = buf_new(256, 4096);
    int rc = 0;

    if (ccf) {
        struct clam_conf *cc = clam_conf_new(ccf, e);

        if (cc == NULL) {
            buf_printf(err, "%s/main.cf: %s", confdir, buf_data(e));
            rc = -1;
        }
        clam_conf_free(cc);
        cf_free(ccf);
    }
    if (rc == 0) {
        char where[4200];

        snprintf(where, sizeof(where), "%s/main.cf", confdir);
        rc = milter_confs_check(cf, svcs, n, where, err);
        if (rc == 0)
            rc = smtpd_check_conf(cf, svcs, n, where, err, NULL);
        if (rc == 0)
            rc = hc_conf_check(cf, svcs, n, where, err);
    }
    buf_free(e);
    return rc;
}

static int
master_load(struct master *m, struct cf **cf, struct cf_service **svcs,
            size_t *nsvcs)
{
    struct buf *err = buf_new(256, 8192);

    *cf = cf_load(m->confdir, svcs, nsvcs, err);
    if (*cf == NULL) {
        log_error("%s", buf_data(err));
        buf_free(err);
        return -1;
    }
    /* filter settings that cf_check cannot judge (action words, milter
     * lists): main.cf's, and each service's own */
    if (master_check_filters(m->confdir, *cf, *svcs, *nsvcs, err) < 0) {
        log_error("%s", buf_data(err));
        buf_free(err);
        cf_services_free(*svcs, *nsvcs);
        cf_free(*cf);
        *cf = NULL;
        return -1;
    }
    if (dlv_smtp_check(*cf, err) < 0 || qmgr_check(*cf, err) < 0) {
        log_error("%s/main.cf: %s", m->confdir, buf_data(err));
        buf_free(err);
        cf_services_free(*svcs, *nsvcs);
        cf_free(*cf);
        *cf = NULL;
        return -1;
    }
    buf_free(err);
    return 0;
}

/* Postfix settings this Sluice does not act on yet: said, not hidden. */
static void
master_warn_later(const struct cf *cf, const struct cf_service *svcs,
                  size_t nsvcs)
{
    struct buf *b = buf_new(1024, BUF_NOCAP), *e = buf_new(256, 4096);

    cf_later(cf, svcs, nsvcs, b);
    /* restrictions accepted but skipped (master_load judged the lists) */
    (void) smtpd_check_conf(cf, svcs, nsvcs, "main.cf", e, b);
    buf_free(e);
    for (char *l = buf_data(b), *nl; *l; l = nl) {
        nl = strchr(l, '\n');
        if (nl)
            *nl++ = '\0';
        else
            nl = l + strlen(l);
        log_warning("%s", l);
    }
    buf_free(b);
}

/* Stop one child and wait for it (SIGKILL after the grace). */
static void
master_stop_child(struct master *m, enum master_child c)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    time_t deadline = time(NULL) + MASTER_GRACE;
    pid_t pid = m->pid[c];

    if (pid <= 0)
        return;
    m->expect[c] = 1;
    kill(pid, SIGTERM);
    while (m->pid[c] == pid) {
        master_reap_all(m, 0);
        if (m->pid[c] != pid)
            break;
        if (time(NULL) >= deadline) {
            log_warning("process %s pid %ld did not stop: killing",
                        master_child_name[c], (long) pid);
            kill(pid, SIGKILL);
            deadline = time(NULL) + MASTER_GRACE;
        }
        nanosleep(&ts, NULL);
    }
}

/* The old front finishes its sessions (see smtpd_run) while a new one
 * takes the new connections. */
static void
master_drain_front(struct master *m)
{
    pid_t pid = m->pid[MASTER_SMTPD];
    size_t i;

    if (pid <= 0)
        return;
    m->pid[MASTER_SMTPD] = 0;
    for (i = 0; i < MASTER_DRAIN_MAX && m->drain[i] > 0; i++)
        ;
    if (i == MASTER_DRAIN_MAX) {
        /* reloads faster than sessions end: this one stops now */
        log_warning("too many reloads in a row: stopping smtpd pid %ld",
                    (long) pid);
        kill(pid, SIGTERM);
        return;
    }
    m->drain[i] = pid;
    kill(pid, SIGHUP);
}

static void
master_reload(struct master *m)
{
    struct master_listener *ls;
    struct cf_service *svcs;
    struct cf *cf;
    struct buf *err;
    size_t nsvcs, nls;

    if (master_load(m, &cf, &svcs, &nsvcs) < 0) {
        log_warning("reload failed: the configuration in %s has errors; "
                    "keeping the running configuration",
                    m->confdir);
        return;
    }
    err = buf_new(256, 4096);
    if (master_bind(m, svcs, nsvcs, &ls, &nls, err) < 0) {
        log_warning("reload failed: %s; keeping the running configuration",
                    buf_data(err));
        buf_free(err);
        cf_services_free(svcs, nsvcs);
        cf_free(cf);
        return;
    }
    buf_free(err);
    master_drain_front(m);
    master_stop_child(m, MASTER_QMGR);
    master_free_listeners(m->ls, m->nls); /* closes the ones not reused */
    cf_services_free(m->svcs, m->nsvcs);
    cf_free(m->cf);
    m->cf = cf;
    m->svcs = svcs;
    m->nsvcs = nsvcs;
    m->ls = ls;
    m->nls = nls;
    log_info("reload -- version %s, configuration %s", PACKAGE_VERSION,
             m->confdir);
    master_warn_later(m->cf, m->svcs, m->nsvcs);
    master_start(m, MASTER_SMTPD);
    master_start(m, MASTER_QMGR);
}

/* Soft open-file limit up to the hard one, as the children inherit it:
 * each session and each message in the active queue holds a descriptor,
 * and systemd's default soft limit (1024) is far below its hard one. */
static void
master_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int
main(int argc, char **argv)
{
    struct master m;
    struct buf *err;
    sigset_t set;
    siginfo_t si;
    enum master_child c;
    int opt, verbose = 0;

    xalloc_tune(); /* before the children fork: they inherit it */
    master_raise_nofile();
    memset(&m, 0, sizeof(m));
    m.confdir = SYSCONFDIR;
    m.pidfd = -1;
    while ((opt = getopt(argc, argv, "c:v")) != -1) {
        switch (opt) {
        case 'c':
            m.confdir = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        default:
            master_usage();
        }
    }
    if (optind != argc)
        master_usage();
    log_init("postfix", "master", NULL);
    if (master_load(&m, &m.cf, &m.svcs, &m.nsvcs) < 0)
        log_fatal("cannot start: fix the configuration in %s", m.confdir);
    if (log_init(cf_str(m.cf, "syslog_name"), "master",
                 cf_str(m.cf, "maillog_file"))
        < 0)
        log_fatal("maillog_file %s: %s", cf_str(m.cf, "maillog_file"),
                  strerror(errno));
    log_set_debug(verbose);
    master_warn_later(m.cf, m.svcs, m.nsvcs);

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    master_owner(&m);
    master_prepare_dirs(&m);
    master_lock_pid(&m);
    err = buf_new(256, 4096);
    if (master_bind(&m, m.svcs, m.nsvcs, &m.ls, &m.nls, err) < 0)
        log_fatal("%s", buf_data(err));
    buf_free(err);
    log_info("daemon started -- version %s, configuration %s", PACKAGE_VERSION,
             m.confdir);
    master_start(&m, MASTER_SMTPD);
    master_start(&m, MASTER_QMGR);

    for (;;) {
        struct timespec ts = {1, 0};
        time_t now = time(NULL);
        int sig;

        for (c = MASTER_SMTPD; c < MASTER_NCHILD; c++)
            if (m.pid[c] == 0 && m.restart_at[c] && m.restart_at[c] <= now)
                master_start(&m, c);
        sig = sigtimedwait(&set, &si, &ts);
        if (sig == SIGCHLD) {
            master_reap_all(&m, 0);
        } else if (sig == SIGHUP) {
            master_reload(&m);
        } else if (sig == SIGTERM || sig == SIGINT) {
            log_info("terminating on signal %d", sig);
            master_stop_children(&m);
            break;
        }
        master_reap_all(&m, 0);
    }
    master_free_listeners(m.ls, m.nls);
    cf_services_free(m.svcs, m.nsvcs);
    cf_free(m.cf);
    if (m.pidfd >= 0) {
        if (ftruncate(m.pidfd, 0) < 0)
            log_warning("cannot empty the pid file: %s", strerror(errno));
        close(m.pidfd);
    }
    return 0;
}
