/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * cf.h - main.cf / master.cf in Postfix syntax, and the parameter table.
 *
 * main.cf: "name = value"; '#' comment lines; a line starting with white
 * space continues the previous line; the last definition wins; $name,
 * ${name}, $(name) expand recursively (also ${name?text} and ${name:text}
 * as in Postfix); a cycle is an error naming the parameters. Lists split
 * on commas and/or white space.
 *
 * Every parameter is in one table (cf_params.c): name, type, default,
 * one-line doc. Unknown names and values of the wrong type are errors of
 * the form "FILE:LINE: message" (or "main.cf: message" for defaults).
 *
 * Owns: all strings it returns (valid until cf_free). Borrows nothing.
 * Threads: a loaded cf is read-only and may be read from any thread;
 * cf_str/cf_list cache expansions, so call cf_check() first (it expands
 * and caches every value) before sharing one between threads.
 */
#ifndef SLUICE_CF_H
#define SLUICE_CF_H

#include <stddef.h>

#include "lib/buf.h"

#define CF_VALUE_MAX 65536 /* bytes in one expanded value */

enum cf_type {
    CF_STR,
    CF_INT,
    CF_BOOL, /* yes/no (also true/false, 1/0 accepted) */
    CF_TIME, /* number with unit s, m, h, d, w; bare number = unit */
    CF_SIZE, /* bytes; k, m, g suffixes accepted */
    CF_LIST, /* comma and/or white-space separated */
    CF_MAP   /* list of lookup tables "type:name" */
};

struct cf_param {
    const char *name;
    enum cf_type type;
    const char *def; /* default value, may contain $name */
    char unit;       /* CF_TIME: unit of a bare number ('s' mostly) */
    const char *doc; /* one line */
    int later;       /* accepted, not implemented yet: see cf_later();
                        2: works in main.cf only, not per service (-o) */
};

extern const struct cf_param cf_params[]; /* ends with name == NULL */
const struct cf_param *cf_param_find(const char *name);

struct cf; /* opaque */

struct cf *cf_new(void); /* every parameter at its default */
struct cf *cf_clone(const struct cf *cf);
void cf_free(struct cf *cf); /* NULL ok */

/* Parse main.cf text into cf. fname names the file in errors. Stops at
 * the first error: -1 and "FNAME:LINE: message" in err. */
int cf_parse_main(struct cf *cf, const char *text, size_t len,
                  const char *fname, struct buf *err);
int cf_load_main(struct cf *cf, const char *path, struct buf *err);
/* Set one value (master.cf -o, command line); where = "FILE:LINE" or
 * NULL. A name that is not a parameter becomes a user-defined one, as
 * in Postfix ("mua_client_restrictions = ...", used as
 * $mua_client_restrictions in other values, master.cf's -o included);
 * -1 when it is not a name (letters, digits, '_', at most 100 bytes) or,
 * 8 bytes or more, is one letter off a parameter's name (two from 16
 * bytes on): a typing error ("unknown parameter "X" (did you mean
 * "Y"?)"). */
int cf_set(struct cf *cf, const char *name, const char *value,
           const char *where, struct buf *err);
/* Expand every value, check types and cycles: 0 or -1 with the first
 * error ("FILE:LINE: ..." where the value was set). */
int cf_check(struct cf *cf, struct buf *err);

/* Typed getters of the expanded value. The name must be in the table
 * and of that type, else log_panic (a programming error). */
const char *cf_str(const struct cf *cf, const char *name);
long long cf_int(const struct cf *cf, const char *name);
int cf_bool(const struct cf *cf, const char *name);
long long cf_time(const struct cf *cf, const char *name); /* seconds */
long long cf_size(const struct cf *cf, const char *name); /* bytes */
/* CF_LIST and CF_MAP: NULL-terminated, owned by cf. */
char *const *cf_list(const struct cf *cf, const char *name);
int cf_is_set(const struct cf *cf, const char *name); /* set in a file */
/* inet_protocols as two flags: "all", "ipv4", "ipv6" (none known: both,
 * as "all"). */
void cf_inet_protocols(const struct cf *cf, int *v4, int *v6);
/* Parameters Sluice accepts (a Postfix main.cf loads) but does not
 * implement yet, set to a value other than their default in cf, or by a
 * service's -o to one other than cf's (svcs: nsvcs services, NULL ok):
 * one line "FILE:LINE: NAME = VALUE: not implemented in this Sluice yet;
 * the setting has no effect" each, appended to out; and for parameters
 * that work in main.cf only (later == 2, the clamav_ settings but
 * clamav_enable), a service's -o that differs from main.cf: "...: not
 * implemented per service in this Sluice yet; main.cf's value applies to every
 * service"; and user-defined parameters that no value refers to (main.cf's
 * or a service's): "FILE:LINE: unused parameter: NAME=VALUE", as
 * Postfix's postconf warns. Returns their number. */
struct cf_service;
size_t cf_later(const struct cf *cf, const struct cf_service *svcs,
                size_t nsvcs, struct buf *out);
/* The raw (unexpanded) value, as postconf shows it. */
const char *cf_raw(const struct cf *cf, const char *name);

/* A user-defined parameter's value (smtpd_restriction_classes), expanded
 * and split as a list ("{ ... }" kept whole): free with cf_list_free.
 * NULL and the reason in err when there is no such parameter. */
char **cf_user_list(const struct cf *cf, const char *name, struct buf *err);
void cf_list_free(char **l); /* NULL ok */
/* Expand $name references in text against cf (for -o values, tests). */
int cf_expand(const struct cf *cf, const char *text, struct buf *out,
              struct buf *err);

/* `sluice conf`: "name = value" lines into out, sorted by name.
 * mode: CF_SHOW_ALL (effective raw values), CF_SHOW_SET (-n: only set
 * in main.cf), CF_SHOW_DEFAULT (-d: defaults). names: NULL-terminated
 * selection or NULL for all; an unknown name is an error (-1, err). */
enum cf_show {
    CF_SHOW_ALL,
    CF_SHOW_SET,
    CF_SHOW_DEFAULT
};
int cf_show(const struct cf *cf, enum cf_show mode, char *const *names,
            struct buf *out, struct buf *err);

/* master.cf: one entry per service. */
struct cf_service {
    char *name;    /* as written: smtp, submission, 2525, [::1]:2525 */
    char *type;    /* "inet" (only type supported now) */
    char *host;    /* NULL = every inet_interfaces address */
    char *port;    /* numeric string, resolved from the service name */
    char *command; /* "smtpd" */
    char **args;   /* NULL-terminated, after the command */
    struct cf *cf; /* main.cf with this service's -o overrides */
    char *where;   /* "FILE:LINE" */
};

/* Parse master.cf text. Services inherit main (cloned) plus their -o
 * overrides (checked like main.cf values). -1 and "FNAME:LINE: ..." on
 * the first error. */
int cf_parse_master(const struct cf *main, const char *text, size_t len,
                    const char *fname, struct cf_service **svcs, size_t *nsvcs,
                    struct buf *err);
int cf_load_master(const struct cf *main, const char *path,
                   struct cf_service **svcs, size_t *nsvcs, struct buf *err);
void cf_services_free(struct cf_service *svcs, size_t n);
/* fn(cf) for main.cf's parameters, then fn(svc->cf) for each of the n
 * services (main.cf's with its -o): 0, or at the first -1 -1 with
 * "MAIN: WHY" (MAIN names main.cf) or "FILE:LINE: service NAME: WHY" in
 * err, WHY being what fn put in its err. For the checks of settings a
 * service may override (sluice check, sluiced's start). */
int cf_check_services(const struct cf *cf, const struct cf_service *svcs,
                      size_t n, const char *main,
                      int (*fn)(const struct cf *scf, void *arg,
                                struct buf *err),
                      void *arg, struct buf *err);

/* Load DIR/main.cf (missing file = all defaults) and DIR/master.cf
 * (missing = one "smtp inet ... smtpd" service), check both. */
struct cf *cf_load(const char *dir, struct cf_service **svcs, size_t *nsvcs,
                   struct buf *err);

#endif
