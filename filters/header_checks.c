/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * header_checks.c - Postfix's header_checks (see header_checks.h).
 * Per transaction the filter counts the fields it has seen, so that its
 * modifications name the right field in the message as it stands when
 * they are applied one after another (filter_mods.c): an IGNORE deletes
 * the k-th field of that name, corrected for the fields of that name this
 * filter already deleted or inserted before it; a PREPEND inserts at the
 * field's position, corrected the same way for all names.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/lookup.h"
#include "filters/header_checks.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#define HC_NAMES_MAX 256   /* distinct field names counted per message */
#define HC_KEY_MAX   65536 /* a field as looked up (longer ones: cut) */

struct hc_conf {
    struct lookup_table **t;
    size_t n;
    int modifies; /* some value is IGNORE, PREPEND or REPLACE */
};

struct hc_name {
    char *name;
    int seen;  /* fields of this name in the original message so far */
    int delta; /* inserted minus deleted by us, before the current one */
};

struct hc_sess {
    const struct hc_conf *c;
    const struct filter_env *env;
    int pos;   /* fields seen so far (the next one's original position) */
    int shift; /* inserted minus deleted so far, all names */
    struct hc_name names[HC_NAMES_MAX];
    size_t nnames;
    struct filter_mod *mods, **tail;
};

static int
hc_modifying(const char *v, void *arg)
{
    size_t wl = strcspn(v, " \t");

    (void) arg;
    return (wl == 6 && strncasecmp(v, "IGNORE", 6) == 0)
           || (wl == 7 && strncasecmp(v, "PREPEND", 7) == 0)
           || (wl == 7 && strncasecmp(v, "REPLACE", 7) == 0);
}

struct hc_conf *
hc_conf_new(const struct cf *cf, int *none, struct buf *err)
{
    char *const *l = cf_list(cf, "header_checks");
    struct hc_conf *c;
    size_t k;

    for (k = 0; l[k]; k++)
        ;
    *none = k == 0;
    if (k == 0)
        return NULL;
    c = xcalloc(1, sizeof(*c));
    c->t = xcalloc(k, sizeof(*c->t));
    for (; c->n < k; c->n++) {
        struct buf *e = buf_new(128, 4096);

        c->t[c->n] = lookup_open(l[c->n], e);
        if (c->t[c->n] == NULL) {
            buf_printf(err, "header_checks: %s: %s", l[c->n], buf_data(e));
            buf_free(e);
            hc_conf_free(c);
            return NULL;
        }
        buf_free(e);
        if (lookup_any_value(c->t[c->n], hc_modifying, NULL))
            c->modifies = 1;
    }
    return c;
}

static int
hc_check_one(const struct cf *scf, void *arg, struct buf *err)
{
    int none;
    struct hc_conf *c = hc_conf_new(scf, &none, err);

    (void) arg;
    hc_conf_free(c);
    return c || none ? 0 : -1;
}

int
hc_conf_check(const struct cf *cf, const struct cf_service *svcs, size_t n,
              const char *main, struct buf *err)
{
    return cf_check_services(cf, svcs, n, main, hc_check_one, NULL, err);
}

void
hc_conf_warn(const struct cf *cf, const struct cf_service *svcs, size_t n,
             struct buf *warn)
{
    for (size_t i = 0; i <= n; i++) {
        const struct cf *scf = i == 0 ? cf : svcs[i - 1].cf;

        /* in Postfix the MIME part headers get header_checks too (the
         * default mime_header_checks = $header_checks): say that they
         * do not here, where an attachment rule would silently fail */
        if (cf_list(scf, "mime_header_checks")[0] != NULL
            || cf_list(scf, "nested_header_checks")[0] != NULL) {
            buf_printf(warn,
                       "header_checks: applied to the message header only: "
                       "MIME part headers and attached messages' headers "
                       "(mime_header_checks, nested_header_checks, by default "
                       "$header_checks) are not checked in this Sluice yet\n");
            return;
        }
    }
}

void
hc_conf_free(struct hc_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        lookup_free(c->t[i]);
    free(c->t);
    free(c);
}

static void
hc_reset(struct hc_sess *s)
{
    for (size_t i = 0; i < s->nnames; i++)
        free(s->names[i].name);
    s->nnames = 0;
    s->pos = s->shift = 0;
    filter_mods_free(s->mods);
    s->mods = NULL;
    s->tail = &s->mods;
}

static void *
hc_open(void *conf, const struct filter_env *env)
{
    struct hc_sess *s = xcalloc(1, sizeof(*s));

    s->c = conf;
    s->env = env;
    s->tail = &s->mods;
    return s;
}

static void
hc_close(void *state)
{
    struct hc_sess *s = state;

    hc_reset(s);
    free(s);
}

static struct hc_name *
hc_name(struct hc_sess *s, const char *name)
{
    for (size_t i = 0; i < s->nnames; i++)
        if (strcasecmp(s->names[i].name, name) == 0)
            return &s->names[i];
    if (s->nnames == HC_NAMES_MAX)
        return NULL;
    s->names[s->nnames].name = xstrdup(name);
    s->names[s->nnames].seen = 0;
    s->names[s->nnames].delta = 0;
    return &s->names[s->nnames++];
}

static void
hc_add(struct hc_sess *s, struct filter_mod *m)
{
    *s->tail = m;
    s->tail = &m->next;
}

/* "ID: WHAT: header FIELD from host[addr]; from=<> to=<> proto=P
 * helo=<h>: TEXT", Postfix's cleanup line. */
static void
hc_log(const struct hc_sess *s, const char *what, const char *field,
       const char *text)
{
    const struct filter_env *e = s->env;
    char f[512], t[512], from[256], to[256], helo[256];

    log_info_as("cleanup",
                "%s: %s: header %s from %s[%s]; from=<%s> to=<%s> proto=%s "
                "helo=<%s>%s%s",
                e->queue_id && *e->queue_id ? e->queue_id : "NOQUEUE", what,
                log_safe(field, strlen(field), f, sizeof(f)),
                e->client_name ? e->client_name : "unknown",
                e->client_addr ? e->client_addr : "",
                log_safe(e->sender ? e->sender : "",
                         strlen(e->sender ? e->sender : ""), from,
                         sizeof(from)),
                e->nrcpt > 0
                    ? log_safe(e->rcpts[0], strlen(e->rcpts[0]), to, sizeof(to))
                    : "",
                e->proto ? e->proto : "SMTP",
                log_safe(e->helo ? e->helo : "", strlen(e->helo ? e->helo : ""),
                         helo, sizeof(helo)),
                text ? ": " : "",
                text ? log_safe(text, strlen(text), t, sizeof(t)) : "");
}

/* A "Name: value" text (PREPEND, REPLACE) into a mod at index. */
static struct filter_mod *
hc_field_mod(const char *text, int index)
{
    size_t nl = filter_hdr_name_len(text, strlen(text));
    char *name;
    const char *v;
    struct filter_mod *m;

    if (nl == 0)
        return NULL;
    name = xmemdup(text, nl);
    v = strchr(text + nl, ':') + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    m = filter_mod_new(FILTER_MOD_INSERT_HEADER, name, v, strlen(v), index,
                       NULL);
    free(name);
    return m;
}

/* One field: its action. Answers call. */
static void
hc_field(struct hc_sess *s, struct filter_call *call, const char *hname,
         const char *hvalue)
{
    struct buf *key = buf_new(256, HC_KEY_MAX), *v = buf_new(128, 8192);
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};
    struct hc_name *nm = hc_name(s, hname);
    int pos = s->pos++, rc = 0;
    const char *act, *text;
    size_t wl;
    char dsn[16];

    if (nm)
        nm->seen++;
    /* "Name: value": the value as received after the colon, its CRLF
     * line breaks as "\n"; a field over HC_KEY_MAX is looked up cut */
    buf_puts(key, hname);
    buf_putc(key, ':');
    for (const char *p = hvalue; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n') && buf_putc(key, *p) < 0)
            break;
    for (size_t i = 0; i < s->c->n && rc == 0; i++)
        rc = lookup_get(s->c->t[i], buf_data(key), v);
    if (rc < 0) {
        log_warning("header_checks: %s", buf_data(v));
        r.verdict = FILTER_TEMPFAIL;
        r.code = 451;
        r.dsn = "4.3.0";
        r.text = "Error: header_checks lookup failure";
        goto out;
    }
    if (rc == 0)
        goto out;
    act = buf_data(v);
    wl = strcspn(act, " \t");
    for (text = act + wl; *text == ' ' || *text == '\t'; text++)
        ;
#define IS(w) (wl == strlen(w) && strncasecmp(act, w, wl) == 0)
    if (IS("REJECT")) {
        size_t dl = strspn(text, "0123456789.");

        snprintf(dsn, sizeof(dsn), "5.7.1");
        if (dl >= 5 && dl < sizeof(dsn) && text[1] == '.'
            && (text[0] == '5' || text[0] == '4')
            && (text[dl] == ' ' || text[dl] == '\0')) {
            snprintf(dsn, sizeof(dsn), "5%.*s", (int) dl - 1, text + 1);
            for (text += dl; *text == ' '; text++)
                ;
        }
        if (!*text)
            text = "Message content rejected";
        {
            char l[600];

            snprintf(l, sizeof(l), "%s %s", dsn, text);
            hc_log(s, "reject", buf_data(key), l);
        }
        r.verdict = FILTER_REJECT;
        r.code = 550;
        r.dsn = dsn;
        r.text = text;
    } else if (IS("DISCARD") || IS("HOLD")) {
        int hold = IS("HOLD");

        hc_log(s, hold ? "hold" : "discard", buf_data(key),
               *text ? text : NULL);
        r.verdict = hold ? FILTER_HOLD : FILTER_DISCARD;
        r.text = *text ? text : hold ? "header_checks HOLD" : NULL;
    } else if (IS("WARN") || IS("INFO")) {
        hc_log(s, IS("WARN") ? "warning" : "info", buf_data(key),
               *text ? text : NULL);
    } else if (IS("IGNORE")) {
        if (nm) { /* its occurrence now: after our own inserts/deletes */
            hc_add(s, filter_mod_new(FILTER_MOD_CHANGE_HEADER, hname, NULL, 0,
                                     nm->seen + nm->delta, NULL));
            nm->delta--;
            s->shift--;
        }
    } else if (IS("PREPEND") || IS("REPLACE")) {
        struct filter_mod *m = hc_field_mod(text, pos + s->shift);

        if (m == NULL) {
            log_warning("header_checks: %s %s: not a header field (Name: "
                        "value); ignored",
                        IS("PREPEND") ? "PREPEND" : "REPLACE", text);
            goto out;
        }
        if (IS("REPLACE") && nm) { /* delete this one, insert the text */
            hc_add(s, filter_mod_new(FILTER_MOD_CHANGE_HEADER, hname, NULL, 0,
                                     nm->seen + nm->delta, NULL));
            nm->delta--;
            s->shift--;
        }
        {
            /* later fields of the inserted name come one place later */
            struct hc_name *in = hc_name(s, m->name);

            if (in)
                in->delta++;
        }

        hc_add(s, m);
        s->shift++;
    } else if (IS("FILTER") || IS("REDIRECT") || IS("BCC")) {
        log_warning("header_checks: action %.*s is not implemented in this "
                    "Sluice yet; ignored",
                    (int) wl, act);
    } else if (!IS("DUNNO") && !IS("OK")) {
        char safe[128];

        log_warning("header_checks: unknown action \"%s\"; ignored",
                    log_safe(act, strlen(act), safe, sizeof(safe)));
    }
#undef IS
out:
    filter_answer(call, &r);
    buf_free(key);
    buf_free(v);
}

static void
hc_stage(void *state, struct filter_call *call, enum filter_stage st,
         const struct filter_args *args)
{
    struct hc_sess *s = state;
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};

    switch (st) {
    case FILTER_MAIL:
    case FILTER_ABORT:
        hc_reset(s);
        break;
    case FILTER_HEADER:
        hc_field(s, call, args->hname, args->hvalue);
        return;
    case FILTER_EOM:
        r.mods = s->mods; /* the chain owns them now */
        s->mods = NULL;
        s->tail = &s->mods;
        break;
    default:
        break;
    }
    filter_answer(call, &r);
}

static int
hc_modifies(void *state)
{
    const struct hc_sess *s = state;

    return s->c->modifies;
}

const struct filter_ops hc_filter_ops = {
    .name = "header_checks",
    .open = hc_open,
    .stage = hc_stage,
    .close = hc_close,
    .modifies_content = hc_modifies,
};
