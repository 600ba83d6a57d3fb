/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * addrmap.h - address rewriting through tables, as Postfix's
 * virtual_alias_maps (mail_addr_map and cleanup's one-to-many
 * expansion).
 * An address is looked up as user+ext@domain, user@domain, then (when
 * the domain is ours) user+ext and user, then @domain. A value is a list
 * of addresses (commas or blanks between them); one without '@' gets
 * "@myorigin", one that is "@domain" gets the address's user, and an
 * extension that matched only by being cut off is put back into each
 * (propagate). Each result is looked up again, until nothing matches,
 * an address comes back as itself, or a limit is passed.
 * Owns: its tables and copies of its settings. Threads: any after _new.
 */
#ifndef SLUICE_ADDRMAP_H
#define SLUICE_ADDRMAP_H

#include <stddef.h>

#include "lib/buf.h"

struct lookup_dlist;

struct addrmap_opts {
    const char *title;               /* "virtual_alias_maps" */
    const struct lookup_dlist *ours; /* mydestination (borrowed) */
    const char *myorigin;            /* for results without '@' */
    const char *delim;               /* recipient_delimiter */
    int propagate;                   /* put an unmatched extension back */
    size_t recursion_limit;          /* virtual_alias_recursion_limit */
    size_t expansion_limit;          /* virtual_alias_expansion_limit */
    size_t addrlen_limit;            /* virtual_alias_address_length_limit */
};

struct addrmap;
/* specs: NULL-terminated "type:name" tables; NULL and the reason in err. */
struct addrmap *addrmap_new(char *const *specs, const struct addrmap_opts *o,
                            struct buf *err);
void addrmap_free(struct addrmap *m);       /* NULL ok */
int addrmap_empty(const struct addrmap *m); /* no tables (or NULL) */
/* Is addr a key (in one of its forms)? 1, 0, or -1 when a table failed. */
int addrmap_listed(const struct addrmap *m, const char *addr);
/* The expansion of addr into *out (NULL-terminated, at least one entry:
 * addr itself when nothing matches; the caller frees each and the
 * array): 0, or -1 with Postfix's warning text in err ("unreasonable
 * virtual_alias_maps map nesting for ADDR", "... lookup problem ...");
 * the message is then not to be accepted (4.6.0 Alias expansion error). */
int addrmap_expand(const struct addrmap *m, const char *addr, char ***out,
                   size_t *n, struct buf *err);

#endif
