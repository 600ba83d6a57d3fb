/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * dlv_alias.h - alias expansion for the local delivery agent, as
 * Postfix's local(8) does it with alias_maps (aliases(5)).
 * A recipient of ours is looked up by its local part, lower-case (with
 * its extension, then without); the value is a list (commas or blanks
 * between items; "double quotes" keep an item whole):
 *   name, name@domain   an address: ours is expanded again (an address
 *                       already expanded on this path is delivered to
 *                       its mailbox: "bob: bob, carol" keeps a copy),
 *                       another domain's is forwarded
 *   |command            the message is piped to the command
 *   /file/name          appended to the file (mbox); /dir/ is a Maildir
 *   :include:/file      the file's items, as if they were here
 * An address without an alias is a mailbox. Commands and files are
 * allowed from alias_maps and from :include: files as
 * allow_mail_to_commands / allow_mail_to_files say ("alias", "include").
 * An expansion that gives no target at all (an empty value or include
 * file) defers (4.3.5): the mail waits for the operator.
 * An address found in the message's Delivered-To: fields is a mail
 * forwarding loop (5.4.6); so is nesting deeper than DLV_ALIAS_DEPTH.
 * Owns: nothing (the options borrow the tables). Threads: any.
 */
#ifndef SLUICE_DLV_ALIAS_H
#define SLUICE_DLV_ALIAS_H

#include <stddef.h>

#include "lib/buf.h"

#define DLV_ALIAS_DEPTH   100       /* nested aliases */
#define DLV_ALIAS_TARGETS 1000      /* results of one recipient */
#define DLV_ALIAS_INCLUDE (1 << 20) /* bytes of an :include: file */

struct lookup_table;
struct lookup_dlist;

struct dlv_alias_opts {
    struct lookup_table *const *maps; /* alias_maps */
    size_t nmaps;
    const struct lookup_dlist *mydest; /* mydestination */
    const char *myorigin;              /* for names without a domain */
    const char *delim;                 /* recipient_delimiter */
    int propagate;              /* propagate_unmatched_extensions has "alias" */
    int cmd_alias, cmd_include; /* allow_mail_to_commands */
    int file_alias, file_include; /* allow_mail_to_files */
};

enum dlv_alias_kind {
    DLV_ALIAS_MAILBOX, /* what: the address; user: the mailbox name */
    DLV_ALIAS_FORWARD, /* what: the address */
    DLV_ALIAS_COMMAND, /* what: the command (without '|') */
    DLV_ALIAS_FILE     /* what: the path (a Maildir when it ends in '/') */
};

struct dlv_alias_target {
    enum dlv_alias_kind kind;
    char *what;
    char *user; /* MAILBOX only */
    char *via;  /* the address whose alias gave it (NULL: the recipient
                   itself, not an alias) */
};

enum dlv_alias_result {
    DLV_ALIAS_OK,
    DLV_ALIAS_BOUNCE, /* dsn and text say why (5.x.x) */
    DLV_ALIAS_DEFER   /* a table failed, a file could not be read */
};

/* The targets of rcpt (an address of a mydestination domain); delivered
 * holds the message's Delivered-To: addresses. Targets are in *out
 * (caller frees with dlv_alias_free) for DLV_ALIAS_OK; else dsn and
 * text are set. */
enum dlv_alias_result dlv_alias_expand(const struct dlv_alias_opts *o,
                                       const char *rcpt, char *const *delivered,
                                       size_t ndelivered,
                                       struct dlv_alias_target **out, size_t *n,
                                       char dsn[16], struct buf *text);
void dlv_alias_free(struct dlv_alias_target *v, size_t n);
/* The Delivered-To: field values of a message header (CRLF or LF lines,
 * folded lines joined), into *out (NULL-terminated): their count. */
size_t dlv_alias_delivered(const char *head, size_t len, char ***out);

#endif
