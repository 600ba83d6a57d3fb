/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * lookup.h - address lists, domain lists and lookup tables.
 * lookup_net: mynetworks-style lists of IPv4/IPv6 addresses and CIDR
 *   blocks ("192.0.2.0/24", "::1/128", "[::1]/128", "[2001:db8::]/32",
 *   "127.0.0.1"). An IPv4-mapped IPv6 client matches IPv4 entries.
 * lookup_domain_match: mydestination/relay_domains-style lists; entries
 *   compare case-insensitively; "example.com" matches only itself,
 *   ".example.com" matches any subdomain; a trailing dot in the domain
 *   is ignored.
 * lookup tables ("type:name"): inline:{ key=value, key2=value2 } and
 *   texthash:/path (lines "key value", '#' comments, as postmap's input).
 *   Keys compare case-insensitively. Also hash:, btree: (postmap's .db),
 *   static:, regexp: (regexp_table(5)) and cidr: (cidr_table(5): lines
 *   "network/prefix result", "!network result", "if network" ...
 *   "endif"; the first network holding the key, a numeric address,
 *   decides; any other key finds nothing), unix:passwd.byname (the
 *   system's accounts, read at open) and proxy:TABLE (TABLE itself:
 *   every table is in memory already).
 * Owns: copies of everything it is given. Threads: read-only after _new.
 */
#ifndef SLUICE_LOOKUP_H
#define SLUICE_LOOKUP_H

#include <sys/socket.h>

#include "lib/buf.h"

struct lookup_net;
/* list: NULL-terminated entries. Bad entry: NULL, "bad ... entry: X". */
struct lookup_net *lookup_net_new(char *const *list, struct buf *err);
int lookup_net_match(const struct lookup_net *n, const struct sockaddr *sa);
void lookup_net_free(struct lookup_net *n); /* NULL ok */

int lookup_domain_match(char *const *list, const char *domain);

/* A domain list as Postfix's mydestination, relay_domains or
 * virtual_alias_domains: the entries above, and "type:table" (the
 * domain, then each parent as ".parent", is looked up; any value
 * matches), "/file" (its words are entries) and "!entry" (a match means
 * no). The first entry that matches decides. Bad entry, unreadable file
 * or table: NULL, the reason in err. */
struct lookup_dlist;
struct lookup_dlist *lookup_dlist_new(char *const *list, struct buf *err);
/* 1 match, 0 none, -1 a table failed (a warning logged). */
int lookup_dlist_match(const struct lookup_dlist *l, const char *domain);
int lookup_dlist_empty(const struct lookup_dlist *l); /* NULL: 1 */
void lookup_dlist_free(struct lookup_dlist *l);       /* NULL ok */

struct lookup_table;
struct lookup_table *lookup_open(const char *spec, struct buf *err);
/* 1 found (value in out), 0 not found, -1 error (reason in out). */
int lookup_get(const struct lookup_table *t, const char *key, struct buf *out);
void lookup_free(struct lookup_table *t); /* NULL ok */
/* postmap / postalias: FILE.db from FILE ("hash:/path", "btree:/path"
 * or a path: hash), written beside it and renamed into place. Source
 * lines "key value" (aliases: "name: value"), continued by lines that
 * start with white space, '#' comments; keys lower-cased, keys and
 * values stored with their NUL as Postfix does. Lines that are not an
 * entry, and duplicates (the first stays), are said in warn
 * ("FILE, line N: ..."). 0, or -1 with the reason in err. */
int lookup_build(const char *spec, int aliases, struct buf *warn,
                 struct buf *err);
/* A hash: or btree: table (proxy: in front too) whose .db file does not
 * exist (newaliases or postmap not run yet)? 1 or 0. */
int lookup_db_missing(const char *spec);
/* The table as it was given to lookup_open ("hash:/etc/aliases"). */
const char *lookup_spec(const struct lookup_table *t);
/* Does pred hold for any value the table can return (before $N
 * substitution)? 1 or 0. */
int lookup_any_value(const struct lookup_table *t,
                     int (*pred)(const char *value, void *arg), void *arg);

#endif
