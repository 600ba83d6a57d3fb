/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sluice.c - the admin command (postconf, postqueue, postsuper, postfix
 * start/stop/status in one).
 *   sluice [-c DIR] conf [-n|-d] [name...]
 *   sluice [-c DIR] check
 *   sluice [-c DIR] queue list [--json] | flush | delete ID...|ALL |
 *                         hold ID... | release ID... | requeue ID... | cat ID
 *   sluice [-c DIR] status | stop | reload
 *   sluice [-c DIR] map build [TYPE:]FILE | map query TYPE:NAME KEY...
 *   sluice [-c DIR] aliases
 * Invoked as "mailq" it runs "queue list", as "newaliases" "aliases",
 * as "sendmail" Postfix's sendmail command (tools/sendmail.c).
 * MAIL_CONFIG in the environment names the configuration directory when
 * -c does not, as for Postfix's commands.
 * Queue commands work on the queue directory itself, so they work with
 * the daemon running or stopped (see queue/qadmin.h).
 * Exit: 0 success, 1 failure (with a message on stderr), 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/cf.h"
#include "conf/lookup.h"
#include "filters/clam.h"
#include "filters/header_checks.h"
#include "milter/milter.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "proxy/smtpd.h"
#include "proxy/smtpd_check.h"
#include "queue/dlv.h"
#include "queue/qadmin.h"
#include "queue/qmgr.h"
#include "queue/spool.h"
#include "tools/sendmail.h"

static const char *sluice_confdir = SYSCONFDIR;

static void
sluice_usage(void)
{
    fprintf(stderr,
            "usage: sluice [-c config_directory] command\n"
            "  conf [-n|-d] [name...]     show configuration parameters\n"
            "  check                      validate the configuration\n"
            "  queue list [--json]        list the queue (mailq)\n"
            "  queue flush                retry deferred mail now\n"
            "  queue delete ID...|ALL     delete messages\n"
            "  queue hold ID...|ALL       put messages on hold\n"
            "  queue release ID...|ALL    release held messages\n"
            "  queue requeue ID...|ALL    requeue messages\n"
            "  queue cat ID               show a queued message\n"
            "  status | stop | reload     control the running daemon\n"
            "  map build [TYPE:]FILE      make FILE.db from FILE (postmap)\n"
            "  map query TYPE:NAME KEY... look keys up (postmap -q)\n"
            "  aliases                    make alias_database (newaliases)\n"
            "invoked as mailq, newaliases or sendmail it is that command\n");
    exit(2);
}

static int
sluice_fail(struct buf *err, const char *what)
{
    fprintf(stderr, "sluice: %s%s%s\n", what ? what : "",
            what && buf_len(err) ? ": " : "", buf_data(err));
    return 1;
}

static struct cf *
sluice_load(struct buf *err)
{
    struct cf_service *svcs = NULL;
    size_t nsvcs = 0;
    struct cf *cf = cf_load(sluice_confdir, &svcs, &nsvcs, err);

    if (cf)
        cf_services_free(svcs, nsvcs);
    return cf;
}

static int
sluice_conf(int argc, char **argv, struct buf *err)
{
    enum cf_show mode = CF_SHOW_ALL;
    struct buf *out;
    struct cf *cf;
    int i = 1, rc = 0;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-n") == 0)
            mode = CF_SHOW_SET;
        else if (strcmp(argv[i], "-d") == 0)
            mode = CF_SHOW_DEFAULT;
        else
            sluice_usage();
    }
    if ((cf = sluice_load(err)) == NULL)
        return sluice_fail(err, NULL);
    out = buf_new(65536, BUF_NOCAP);
    if (cf_show(cf, mode, i < argc ? argv + i : NULL, out, err) < 0)
        rc = sluice_fail(err, NULL);
    fwrite(buf_data(out), 1, buf_len(out), stdout);
    buf_free(out);
    cf_free(cf);
    return rc;
}

/* Each line of b to standard error as "sluice: PREFIXline"; b is cut. */
static void
sluice_lines(struct buf *b, const char *prefix)
{
    for (char *l = buf_data(b), *nl; *l; l = nl) {
        nl = strchr(l, '\n');
        if (nl)
            *nl++ = '\0';
        else
            nl = l + strlen(l);
        if (*l)
            fprintf(stderr, "sluice: %s%s\n", prefix, l);
    }
}

/* Each service's TLS certificate and key load as the front would load
 * them; what does not is a warning (the service runs without TLS). */
static void
sluice_check_tls(const struct cf *cf, struct cf_service *svcs, size_t n)
{
    struct smtpd_listener *sl = xcalloc(n ? n : 1, sizeof(*sl));
    size_t i;

    for (i = 0; i < n; i++) {
        sl[i].fd = -1;
        sl[i].svc = &svcs[i];
    }
    smtpd_tls_load(cf, sl, n);
    for (i = 0; i < n; i++)
        tls_srv_free(sl[i].tls);
    free(sl);
}

static int
sluice_check(struct buf *err)
{
    struct cf_service *svcs = NULL;
    size_t nsvcs = 0;
    struct cf *cf = cf_load(sluice_confdir, &svcs, &nsvcs, err);
    struct cf *ccf;
    struct buf *later;
    int rc = 0;

    if (cf == NULL)
        return sluice_fail(err, NULL);

    /* Postfix settings this Sluice does not act on yet */
    later = buf_new(1024, BUF_NOCAP);
    cf_later(cf, svcs, nsvcs, later);
    sluice_lines(later, "warning: ");
    buf_free(later);
    sluice_check_tls(cf, svcs, nsvcs);
    later = buf_new(1024, BUF_NOCAP);
    smtpd_sasl_check(cf, svcs, nsvcs, later);
    sluice_lines(later, "warning: ");
    buf_free(later);
    later = buf_new(1024, BUF_NOCAP);
    dlv_smtp_check_tls(cf, later);
    sluice_lines(later, "warning: ");
    buf_free(later);
    {
        char where[4200];

        snprintf(where, sizeof(where), "%s/main.cf", sluice_confdir);
        if (milter_confs_check(cf, svcs, nsvcs, where, err) < 0) {
            fprintf(stderr, "sluice: error: %s\n", buf_data(err));
            buf_reset(err);
            rc = 1;
        }
        later = buf_new(1024, BUF_NOCAP);
        if (smtpd_check_conf(cf, svcs, nsvcs, where, err, later) < 0) {
            fprintf(stderr, "sluice: error: %s\n", buf_data(err));
            buf_reset(err);
            rc = 1;
        }
        if (hc_conf_check(cf, svcs, nsvcs, where, err) < 0) {
            fprintf(stderr, "sluice: error: %s\n", buf_data(err));
            buf_reset(err);
            rc = 1;
        }
        sluice_lines(later, "warning: ");
        buf_free(later);
    }
    ccf = clam_cf(cf, svcs, nsvcs);
    cf_services_free(svcs, nsvcs);
    if (dlv_smtp_check(cf, err) < 0 || qmgr_check(cf, err) < 0) {
        fprintf(stderr, "sluice: error: %s/main.cf: %s\n", sluice_confdir,
                buf_data(err));
        rc = 1;
    }
    if (access(cf_str(cf, "queue_directory"), F_OK) < 0)
        fprintf(stderr,
                "sluice: warning: queue_directory %s does not exist yet "
                "(sluiced creates it)\n",
                cf_str(cf, "queue_directory"));
    if (ccf) { /* main.cf's or some service's clamav_enable */
        struct clam_conf *cc = clam_conf_new(ccf, err);
        struct buf *out = buf_new(1024, 65536);

        if (cc == NULL) {
            fprintf(stderr, "sluice: error: %s\n", buf_data(err));
            rc = 1;
        } else if (clam_check(ccf, out) < 0) {
            rc = 1;
        }
        clam_conf_free(cc);
        cf_free(ccf);
        /* one line per problem: "error: ..." or "warning: ..." */
        sluice_lines(out, "");
        buf_free(out);
    }
    cf_free(cf);
    return rc;
}

/* Master pid from the pid file, if a master holds its lock. */
static pid_t
sluice_master_pid(const struct cf *cf)
{
    char path[4096], line[32];
    ssize_t n;
    long pid;
    int fd;

    snprintf(path, sizeof(path), "%s/pid/master.pid",
             cf_str(cf, "queue_directory"));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    line[n] = '\0';
    pid = strtol(line, NULL, 10);
    if (pid <= 1 || kill((pid_t) pid, 0) < 0)
        return 0;
    return (pid_t) pid;
}

static int
sluice_control(const char *cmd, struct buf *err)
{
    struct cf *cf = sluice_load(err);
    pid_t pid;
    int i;

    if (cf == NULL)
        return sluice_fail(err, NULL);
    pid = sluice_master_pid(cf);
    cf_free(cf);
    if (strcmp(cmd, "status") == 0) {
        if (pid == 0) {
            fprintf(stderr, "sluice: the Sluice mail system is not running\n");
            return 1;
        }
        printf("sluice: the Sluice mail system is running: PID: %ld\n",
               (long) pid);
        return 0;
    }
    if (pid == 0) {
        fprintf(stderr, "sluice: the Sluice mail system is not running\n");
        return 1;
    }
    if (strcmp(cmd, "reload") == 0) {
        if (kill(pid, SIGHUP) < 0)
            goto fail;
        printf("sluice: refreshing the Sluice mail system\n");
        return 0;
    }
    if (kill(pid, SIGTERM) < 0)
        goto fail;
    printf("sluice: stopping the Sluice mail system\n");
    for (i = 0; i < 150 && kill(pid, 0) == 0; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (kill(pid, 0) == 0) {
        fprintf(stderr, "sluice: master pid %ld is still running\n",
                (long) pid);
        return 1;
    }
    return 0;
fail:
    fprintf(stderr, "sluice: signal master pid %ld: %s\n", (long) pid,
            strerror(errno));
    return 1;
}

static int
sluice_queue(int argc, char **argv, struct buf *err)
{
    const char *qdir, *sub;
    struct cf *cf;
    struct buf *out;
    int n, rc = 0;

    if (argc < 2)
        sluice_usage();
    sub = argv[1];
    if ((cf = sluice_load(err)) == NULL)
        return sluice_fail(err, NULL);
    qdir = cf_str(cf, "queue_directory");
    if (strcmp(sub, "list") == 0) {
        int json = argc > 2 && strcmp(argv[2], "--json") == 0;
        if (argc > 2 + json)
            sluice_usage();
        out = buf_new(65536, BUF_NOCAP);
        if (qadmin_list(qdir, json, out, err) < 0)
            rc = sluice_fail(err, NULL);
        fwrite(buf_data(out), 1, buf_len(out), stdout);
        buf_free(out);
    } else if (strcmp(sub, "flush") == 0) {
        if (argc != 2)
            sluice_usage();
        if (qadmin_flush(qdir, err) < 0)
            rc = sluice_fail(err, NULL);
    } else if (strcmp(sub, "cat") == 0) {
        if (argc != 3)
            sluice_usage();
        fflush(stdout);
        if (qadmin_cat(qdir, argv[2], 1, err) < 0)
            rc = sluice_fail(err, NULL);
    } else {
        int (*fn)(const char *, char *const *, struct buf *) = NULL;
        const char *verb = NULL;
        if (strcmp(sub, "delete") == 0) {
            fn = qadmin_delete;
            verb = "Deleted";
        } else if (strcmp(sub, "hold") == 0) {
            fn = qadmin_hold;
            verb = "Placed on hold";
        } else if (strcmp(sub, "release") == 0) {
            fn = qadmin_release;
            verb = "Released from hold";
        } else if (strcmp(sub, "requeue") == 0) {
            fn = qadmin_requeue;
            verb = "Requeued";
        }
        if (fn == NULL || argc < 3)
            sluice_usage();
        n = fn(qdir, argv + 2, err);
        if (buf_len(err))
            rc = sluice_fail(err, NULL);
        if (n > 0 || rc == 0)
            printf("sluice: %s: %d message%s\n", verb, n > 0 ? n : 0,
                   n == 1 ? "" : "s");
        if (n < 0)
            rc = 1;
    }
    cf_free(cf);
    return rc;
}

/* Warnings of a build, one "sluice: warning: ..." line each. */
static void
sluice_warn_lines(const struct buf *warn)
{
    const char *p = buf_data(warn);

    while (*p) {
        size_t n = strcspn(p, "\n");

        fprintf(stderr, "sluice: warning: %.*s\n", (int) n, p);
        p += n + (p[n] == '\n');
    }
}

static int
sluice_map(int argc, char **argv, struct buf *err)
{
    struct buf *warn = buf_new(256, 1 << 20);
    int rc = 1;

    if (argc == 3 && strcmp(argv[1], "build") == 0) {
        rc = lookup_build(argv[2], 0, warn, err) < 0;
        sluice_warn_lines(warn);
        if (rc)
            sluice_fail(err, NULL);
    } else if (argc >= 4 && strcmp(argv[1], "query") == 0) {
        struct lookup_table *t = lookup_open(argv[2], err);
        struct buf *v = buf_new(256, 1 << 20);

        if (t == NULL) {
            sluice_fail(err, NULL);
            rc = 2;
        }
        for (int i = 3; t && i < argc; i++) {
            int r = lookup_get(t, argv[i], v);

            if (r < 0) {
                fprintf(stderr, "sluice: %s: lookup of %s failed: %s\n",
                        argv[2], argv[i], buf_data(v));
                rc = 2;
                break;
            }
            if (r > 0) {
                printf("%s\n", buf_data(v));
                rc = 0;
            }
            buf_reset(v);
        }
        lookup_free(t);
        buf_free(v);
    } else {
        sluice_usage();
    }
    buf_free(warn);
    return rc;
}

/* newaliases: each hash: or btree: table of alias_database, then a
 * reload of a running daemon, which reads its tables at start. */
static int
sluice_aliases(struct buf *err)
{
    struct cf *cf = sluice_load(err);
    struct buf *warn = buf_new(256, 1 << 20);
    int rc = 0, built = 0;
    pid_t pid;

    if (cf == NULL)
        return sluice_fail(err, NULL);
    for (char *const *l = cf_list(cf, "alias_database"); *l; l++) {
        if (strncmp(*l, "hash:", 5) != 0 && strncmp(*l, "btree:", 6) != 0) {
            fprintf(stderr,
                    "sluice: warning: alias_database: %s: only hash: and "
                    "btree: tables are built\n",
                    *l);
            continue;
        }
        buf_reset(warn);
        buf_reset(err);
        if (lookup_build(*l, 1, warn, err) < 0) {
            sluice_warn_lines(warn);
            sluice_fail(err, "alias_database");
            rc = 1;
            continue;
        }
        sluice_warn_lines(warn);
        built++;
    }
    pid = built ? sluice_master_pid(cf) : 0;
    if (pid > 0 && kill(pid, SIGHUP) == 0)
        printf("sluice: refreshing the Sluice mail system\n");
    cf_free(cf);
    buf_free(warn);
    return rc;
}

/* sendmail -bp, -bi, -q */
static int
sluice_other(const char *what)
{
    struct buf *err = buf_new(256, 65536);
    int rc;

    if (strcmp(what, "newaliases") == 0) {
        rc = sluice_aliases(err);
    } else {
        static char *list[] = {"queue", "list", NULL};
        static char *flush[] = {"queue", "flush", NULL};

        rc = sluice_queue(2, strcmp(what, "flush") == 0 ? flush : list, err);
    }
    buf_free(err);
    return rc;
}

int
main(int argc, char **argv)
{
    struct buf *err;
    const char *cmd;
    char *prog = basename(argv[0]);
    int opt, rc;

    log_init("sluice", "sluice", NULL);
    if (getenv("MAIL_CONFIG") && *getenv("MAIL_CONFIG"))
        sluice_confdir = getenv("MAIL_CONFIG"); /* as Postfix's commands */
    if (strcmp(prog, "sendmail") == 0)
        return sendmail_main(argc, argv, sluice_confdir, sluice_other);
    if (strcmp(prog, "newaliases") == 0) {
        err = buf_new(256, 65536);
        rc = sluice_aliases(err);
        buf_free(err);
        return rc;
    }
    if (strcmp(prog, "mailq") == 0) {
        static char *list[] = {"queue", "list", NULL};
        err = buf_new(256, 8192);
        rc = sluice_queue(2, list, err);
        buf_free(err);
        return rc;
    }
    while ((opt = getopt(argc, argv, "+c:")) != -1) {
        switch (opt) {
        case 'c':
            sluice_confdir = optarg;
            break;
        default:
            sluice_usage();
        }
    }
    if (optind >= argc)
        sluice_usage();
    argc -= optind;
    argv += optind;
    cmd = argv[0];
    err = buf_new(256, 65536);
    if (strcmp(cmd, "conf") == 0)
        rc = sluice_conf(argc, argv, err);
    else if (strcmp(cmd, "check") == 0 && argc == 1)
        rc = sluice_check(err);
    else if (strcmp(cmd, "queue") == 0)
        rc = sluice_queue(argc, argv, err);
    else if (strcmp(cmd, "map") == 0)
        rc = sluice_map(argc, argv, err);
    else if (strcmp(cmd, "aliases") == 0 && argc == 1)
        rc = sluice_aliases(err);
    else if ((strcmp(cmd, "status") == 0 || strcmp(cmd, "stop") == 0
              || strcmp(cmd, "reload") == 0)
             && argc == 1)
        rc = sluice_control(cmd, err);
    else
        sluice_usage();
    buf_free(err);
    return rc;
}
