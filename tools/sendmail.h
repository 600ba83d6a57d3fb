/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sendmail.h - the sendmail command (see sendmail.c).
 */
#ifndef SLUICE_SENDMAIL_H
#define SLUICE_SENDMAIL_H

/* argv as given to "sendmail"; confdir the configuration; other runs
 * "mailq", "newaliases" or "flush" for -bp, -bi/-I and -q. The exit
 * status (sysexits). */
int sendmail_main(int argc, char **argv, const char *confdir,
                  int (*other)(const char *what));

#endif
