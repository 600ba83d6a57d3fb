/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cf_file.h - read a whole configuration file into memory: main.cf and
 * master.cf (cf.c, cf_master.c), texthash tables (lookup.c).
 * Internal to conf/: cf.h is a frozen contract, so the one reader these
 * files share is declared here. Defined in cf.c.
 * Owns: nothing; the text it returns belongs to the caller (free()).
 * Threads: any; it blocks on file I/O (startup and table loading only).
 */
#ifndef SLUICE_CF_FILE_H
#define SLUICE_CF_FILE_H

#include <stddef.h>

#include "lib/buf.h"

#define CF_FILE_MAX (16 * 1024 * 1024) /* bytes in main.cf or master.cf */

/* Read the regular file path, at most max bytes, into *text (NUL
 * terminated, free() it) and *len. what names the kind of file in error
 * messages ("table" gives "cannot open table PATH: ...") or is NULL
 * ("cannot open PATH: ..."). 0, or -1 with the reason in err (replaced;
 * err may be NULL). */
int cf_read_file(const char *path, const char *what, size_t max, char **text,
                 size_t *len, struct buf *err);

#endif
