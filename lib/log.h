/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * log.h - Postfix-form log lines.
 * Each line: "Mon DD HH:MM:SS host NAME/SERVICE[pid]: text", written with
 * one write(2) to maillog_file (O_APPEND) or to stderr, so lines from
 * threads and processes never interleave. NAME is syslog_name ("postfix"
 * by default, so pflogsumm and fail2ban's postfix filters match unchanged),
 * SERVICE is the process role (smtpd, qmgr, smtp, local, master, ...).
 * Levels other than info prefix the text with "warning: ", "error: ",
 * "fatal: ", "panic: " as Postfix does.
 * Owns: the log fd. Threads: every function is safe from any thread.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdarg.h>
#include <stddef.h>

#define LOG_LINE_MAX 4096 /* longer lines are cut, ending in "..." */

/* name: syslog_name; service: default role; path NULL, "" or "-" = stderr.
 * May be called again (after a fork, or on reload). Returns 0 or -1. */
int log_init(const char *name, const char *service, const char *path);
void log_set_service(const char *service); /* this process's default */
void log_set_debug(int on);
int log_debug_enabled(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn)); /* exit(1) */
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
__attribute__((noreturn)); /* abort() */
/* An info line under another service name (qmgr logging for smtp/local). */
void log_info_as(const char *service, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_warning_as(const char *service, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Peer-supplied text made safe for a log line: control characters and
 * bytes >= 0x7f become \ooo escapes, output capped at outsz-1 bytes
 * (ending in "..." when cut). Returns out. */
char *log_safe(const void *in, size_t n, char *out, size_t outsz);

#endif
