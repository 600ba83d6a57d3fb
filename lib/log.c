/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * log.c - Postfix-form log lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

static int log_fd = 2;
static int log_debug_on;
static char log_name[64] = "postfix";
static char log_service[64] = "sluice";
static char log_host[256] = "localhost";
static pid_t log_pid;       /* getpid() is a system call per line otherwise */
static char log_pidstr[32]; /* "[pid]: " for log_pid */

static void
log_set_pid(void)
{
    log_pid = getpid();
    snprintf(log_pidstr, sizeof(log_pidstr), "[%ld]: ", (long) log_pid);
}

static void
log_atfork_child(void)
{
    log_set_pid();
}

static void
log_register_atfork(void)
{
    (void) pthread_atfork(NULL, NULL, log_atfork_child);
}

int
log_init(const char *name, const char *service, const char *path)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    char *dot;

    if (pthread_once(&once, log_register_atfork) != 0)
        return -1;
    log_set_pid();
    if (name != NULL)
        snprintf(log_name, sizeof(log_name), "%s", name);
    if (service != NULL)
        snprintf(log_service, sizeof(log_service), "%s", service);
    if (gethostname(log_host, sizeof(log_host) - 1) < 0)
        snprintf(log_host, sizeof(log_host), "localhost");
    log_host[sizeof(log_host) - 1] = '\0';
    if ((dot = strchr(log_host, '.')) != NULL)
        *dot = '\0';
    if (path == NULL || *path == '\0' || strcmp(path, "-") == 0
        || strcmp(path, "/dev/stderr") == 0) {
        if (log_fd > 2)
            close(log_fd);
        log_fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    return 0;
}

void
log_set_service(const char *service)
{
    snprintf(log_service, sizeof(log_service), "%s", service);
}

void
log_set_debug(int on)
{
    log_debug_on = on;
}

int
log_debug_enabled(void)
{
    return log_debug_on;
}

/* Append s to line[*n], cut at LOG_LINE_MAX - 1. */
static void
log_cat(char *line, size_t *n, const char *s)
{
    size_t k = strlen(s);

    if (k > LOG_LINE_MAX - 1 - *n)
        k = LOG_LINE_MAX - 1 - *n;
    memcpy(line + *n, s, k);
    *n += k;
}

/* "Mmm dd hh:mm:ss " for now: formatted once per second and thread
 * (localtime_r takes a process-wide lock and strftime is not cheap; a
 * busy process writes thousands of lines a second). */
static size_t
log_stamp(char *out)
{
    static __thread time_t last = (time_t) -1;
    static __thread char stamp[32];
    static __thread size_t slen;
    time_t now = time(NULL);
    struct tm tm;

    if (now != last) {
        localtime_r(&now, &tm);
        slen = strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S ", &tm);
        last = now;
    }
    memcpy(out, stamp, slen);
    return slen;
}

static void
log_vwrite(const char *service, const char *level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX + 2], pid[32];
    size_t n, room, r;
    int k;

    /* "host name/service[pid]: level" without printf: every line has it */
    n = log_stamp(line);
    log_cat(line, &n, log_host);
    log_cat(line, &n, " ");
    log_cat(line, &n, log_name);
    log_cat(line, &n, "/");
    log_cat(line, &n, service ? service : log_service);
    if (log_pid == 0)
        snprintf(pid, sizeof(pid), "[%ld]: ", (long) getpid());
    log_cat(line, &n, log_pid ? log_pidstr : pid);
    log_cat(line, &n, level);
    room = LOG_LINE_MAX - n;        /* what vsnprintf may write, NUL included */
    if (strchr(fmt, '%') == NULL) { /* nothing to format */
        r = strlen(fmt);
        memcpy(line + n, fmt, r < room ? r : room - 1);
    } else {
        k = vsnprintf(line + n, room, fmt, ap);
        r = k < 0 ? 0 : (size_t) k;
    }
    if (r >= room) {
        n = LOG_LINE_MAX - 1;
        memcpy(line + n - 3, "...", 3);
    } else {
        n += r;
    }
    line[n++] = '\n';
    int saved = errno;
    ssize_t w = write(log_fd, line, n);
    (void) w;
    errno = saved;
}

#define LOG_FN(fn, service, level)           \
    void fn(const char *fmt, ...)            \
    {                                        \
        va_list ap;                          \
        va_start(ap, fmt);                   \
        log_vwrite(service, level, fmt, ap); \
        va_end(ap);                          \
    }

LOG_FN(log_info, NULL, "")
LOG_FN(log_warning, NULL, "warning: ")
LOG_FN(log_error, NULL, "error: ")

void
log_debug(const char *fmt, ...)
{
    va_list ap;

    if (!log_debug_on)
        return;
    va_start(ap, fmt);
    log_vwrite(NULL, "debug: ", fmt, ap);
    va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(NULL, "fatal: ", fmt, ap);
    va_end(ap);
    exit(1);
}

void
log_panic(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(NULL, "panic: ", fmt, ap);
    va_end(ap);
    abort();
}

void
log_info_as(const char *service, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(service, "", fmt, ap);
    va_end(ap);
}

void
log_warning_as(const char *service, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite(service, "warning: ", fmt, ap);
    va_end(ap);
}

char *
log_safe(const void *in, size_t n, char *out, size_t outsz)
{
    const unsigned char *p = in;
    size_t o = 0, i;

    if (outsz == 0)
        return out;
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];
        size_t need = (c < 0x20 || c >= 0x7f || c == '\\') ? 4 : 1;

        if (o + need + 3 >= outsz) {
            if (outsz > 4) {
                while (o > outsz - 4)
                    o--;
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (need == 4) {
            snprintf(out + o, 5, "\\%03o", c);
            o += 4;
        } else {
            out[o++] = (char) c;
        }
    }
    out[o] = '\0';
    return out;
}
