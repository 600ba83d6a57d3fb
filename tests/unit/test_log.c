/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_log.c - Postfix-form log lines: the time stamp, host, name/service,
 * [pid] (the child's own after fork), the level, and the cut at
 * LOG_LINE_MAX with "..." whether or not the format has conversions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/log.h"

#define STAMP_LEN 16 /* "Mmm dd hh:mm:ss " */

struct fx {
    char path[64];
    char host[256];
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char *dot;
    int fd;

    snprintf(f->path, sizeof(f->path), "/tmp/test_log.XXXXXX");
    fd = mkstemp(f->path);
    if (fd < 0)
        return -1;
    close(fd);
    if (gethostname(f->host, sizeof(f->host) - 1) < 0)
        snprintf(f->host, sizeof(f->host), "localhost");
    if ((dot = strchr(f->host, '.')) != NULL)
        *dot = '\0';
    *state = f;
    return log_init("postfix", "smtpd", f->path);
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    log_init(NULL, NULL, NULL); /* back to stderr */
    unlink(f->path);
    free(f);
    return 0;
}

/* Line i (0-based) of the log, without its newline; the caller frees. */
static char *
line_at(const struct fx *f, int i)
{
    FILE *fp = fopen(f->path, "r");
    char *l = NULL;
    size_t cap = 0;
    ssize_t n = -1;

    assert_non_null(fp);
    while (i-- >= 0)
        if ((n = getline(&l, &cap, fp)) < 0)
            break;
    fclose(fp);
    assert_true(n > 0);
    assert_int_equal(l[n - 1], '\n');
    l[n - 1] = '\0';
    return l;
}

static void
stamp_ok(const char *l)
{
    assert_true(strlen(l) > STAMP_LEN);
    assert_int_equal(l[3], ' ');
    assert_int_equal(l[6], ' ');
    assert_int_equal(l[9], ':');
    assert_int_equal(l[12], ':');
    assert_int_equal(l[15], ' ');
}

/* Line i is "STAMP host postfix/service[our pid]: text". */
static void
line_is(const struct fx *f, int i, const char *service, const char *text)
{
    char want[512], *l = line_at(f, i);

    stamp_ok(l);
    snprintf(want, sizeof(want), "%s postfix/%s[%ld]: %s", f->host, service,
             (long) getpid(), text);
    assert_string_equal(l + STAMP_LEN, want);
    free(l);
}

static void
test_format(void **state)
{
    struct fx *f = *state;
    char *l;

    log_info("connect from %s[%s]", "mx.example.org", "192.0.2.1");
    log_warning("no conversions here");
    log_info_as("cleanup", "%s: message-id=<%d@x>", "4F2A", 7);
    log_info("100%% %s", "done");

    line_is(f, 0, "smtpd", "connect from mx.example.org[192.0.2.1]");
    line_is(f, 1, "smtpd", "warning: no conversions here");
    line_is(f, 2, "cleanup", "4F2A: message-id=<7@x>");
    l = line_at(f, 3);
    assert_non_null(strstr(l, "]: 100% done"));
    free(l);
}

static void
test_cut(void **state)
{
    struct fx *f = *state;
    /* no format attribute through the pointer: a long text as the format */
    void (*plain)(const char *, ...) = log_info;
    char *big = malloc(LOG_LINE_MAX * 2 + 1), *l;

    memset(big, 'a', LOG_LINE_MAX * 2);
    big[LOG_LINE_MAX * 2] = '\0';
    log_info("%s", big);
    plain(big);
    log_info("short");
    l = line_at(f, 0);
    assert_int_equal(strlen(l), LOG_LINE_MAX - 1);
    assert_string_equal(l + LOG_LINE_MAX - 4, "...");
    free(l);
    l = line_at(f, 1);
    assert_int_equal(strlen(l), LOG_LINE_MAX - 1);
    assert_string_equal(l + LOG_LINE_MAX - 4, "...");
    assert_int_equal(l[LOG_LINE_MAX - 5], 'a');
    free(l);
    l = line_at(f, 2);
    assert_non_null(strstr(l, "]: short"));
    free(l);
    free(big);
}

static void
test_fork_pid(void **state)
{
    struct fx *f = *state;
    char want[64], *l;
    pid_t pid;
    int st;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        log_info("from the child");
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    log_info("from the parent");
    l = line_at(f, 0);
    snprintf(want, sizeof(want), "[%ld]: from the child", (long) pid);
    assert_non_null(strstr(l, want));
    free(l);
    l = line_at(f, 1);
    snprintf(want, sizeof(want), "[%ld]: from the parent", (long) getpid());
    assert_non_null(strstr(l, want));
    free(l);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fork_pid, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
