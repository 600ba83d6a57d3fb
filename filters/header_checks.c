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

/* The four tables lists, Postfix's parameters. */
enum hc_kind {
    HC_HEADER, /* header_checks: the message header */
    HC_MIME,   /* mime_header_checks: MIME part headers */
    HC_NESTED, /* nested_header_checks: attached messages' headers */
    HC_BODY,   /* body_checks: body lines */
    HC_NKINDS
};

static const char *const hc_params[HC_NKINDS] = {
    "header_checks", "mime_header_checks", "nested_header_checks",
    "body_checks"};

struct hc_conf {
    struct lookup_table **t[HC_NKINDS];
    size_t n[HC_NKINDS];
    int modifies;         /* a header_checks value is IGNORE, PREPEND ... */
    long long body_limit; /* body_checks_size_limit, per body part */
};

#define HC_LINE_MAX  65536 /* a body line checked (longer: its start) */
#define HC_DEPTH_MAX 20    /* nested multiparts followed */
#define HC_BOUND_MAX 70    /* RFC 2046: a boundary is 1 to 70 chars */

struct hc_name {
    char *name;
    int seen;  /* fields of this name in the original message so far */
    int delta; /* inserted minus deleted by us, before the current one */
};

enum hc_bstate {
    HC_B_BODY,    /* body lines (a part's, the preamble, the epilogue) */
    HC_B_PARTHDR, /* a MIME part's header (or an attached message's) */
};

struct hc_sess {
    const struct hc_conf *c;
    const struct filter_env *env;
    int pos;   /* fields seen so far (the next one's original position) */
    int shift; /* inserted minus deleted so far, all names */
    struct hc_name names[HC_NAMES_MAX];
    size_t nnames;
    struct filter_mod *mods, **tail;
    int done; /* a REJECT, DISCARD or HOLD decided: no more checks */
    /* MIME: the boundaries of the multiparts we are in, innermost last */
    char *top_ct; /* the message's Content-Type value */
    char bound[HC_DEPTH_MAX][HC_BOUND_MAX + 1];
    size_t nbound;
    enum hc_bstate bstate;
    int nested;          /* the header being read is an attached message's */
    struct buf *line;    /* body line being put together */
    int line_over;       /* it is longer than HC_LINE_MAX: the rest dropped */
    struct buf *field;   /* part header field being put together */
    char *part_ct;       /* that part's Content-Type value */
    long long part_body; /* body bytes of the current part checked */
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
    struct hc_conf *c = xcalloc(1, sizeof(*c));
    int any = 0;

    for (int k = 0; k < HC_NKINDS; k++) {
        char *const *l = cf_list(cf, hc_params[k]);
        size_t n;

        for (n = 0; l[n]; n++)
            ;
        any |= n > 0;
        c->t[k] = xcalloc(n + 1, sizeof(*c->t[k]));
        for (; c->n[k] < n; c->n[k]++) {
            struct buf *e = buf_new(128, 4096);

            c->t[k][c->n[k]] = lookup_open(l[c->n[k]], e);
            if (c->t[k][c->n[k]] == NULL) {
                buf_printf(err, "%s: %s: %s", hc_params[k], l[c->n[k]],
                           buf_data(e));
                buf_free(e);
                hc_conf_free(c);
                *none = 0;
                return NULL;
            }
            buf_free(e);
            if (k == HC_HEADER
                && lookup_any_value(c->t[k][c->n[k]], hc_modifying, NULL))
                c->modifies = 1;
        }
    }
    c->body_limit = cf_size(cf, "body_checks_size_limit");
    *none = !any;
    if (!any) {
        hc_conf_free(c);
        return NULL;
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
hc_conf_free(struct hc_conf *c)
{
    if (c == NULL)
        return;
    for (int k = 0; k < HC_NKINDS; k++) {
        for (size_t i = 0; i < c->n[k]; i++)
            lookup_free(c->t[k][i]);
        free(c->t[k]);
    }
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
    s->done = 0;
    free(s->top_ct);
    s->top_ct = NULL;
    s->nbound = 0;
    s->bstate = HC_B_BODY;
    s->nested = 0;
    buf_reset(s->line);
    s->line_over = 0;
    buf_reset(s->field);
    free(s->part_ct);
    s->part_ct = NULL;
    s->part_body = 0;
}

static void *
hc_open(void *conf, const struct filter_env *env)
{
    struct hc_sess *s = xcalloc(1, sizeof(*s));

    s->c = conf;
    s->env = env;
    s->tail = &s->mods;
    s->line = buf_new(256, BUF_NOCAP);
    s->field = buf_new(256, BUF_NOCAP);
    return s;
}

static void
hc_close(void *state)
{
    struct hc_sess *s = state;

    hc_reset(s);
    buf_free(s->line);
    buf_free(s->field);
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
 * helo=<h>: TEXT", Postfix's cleanup line (WHERE: "header" or "body"). */
static void
hc_log(const struct hc_sess *s, const char *what, const char *where,
       const char *field, const char *text)
{
    const struct filter_env *e = s->env;
    char f[512], t[512], from[256], to[256], helo[256];

    log_info_as("cleanup",
                "%s: %s: %s %s from %s[%s]; from=<%s> to=<%s> proto=%s "
                "helo=<%s>%s%s",
                e->queue_id && *e->queue_id ? e->queue_id : "NOQUEUE", what,
                where, log_safe(field, strlen(field), f, sizeof(f)),
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

/* Look key up in the tables of kind: 1 with the action in v, 0 none, -1
 * (r filled with the tempfail). */
static int
hc_lookup(struct hc_sess *s, enum hc_kind kind, const char *key, struct buf *v,
          struct filter_reply *r)
{
    int rc = 0;

    for (size_t i = 0; i < s->c->n[kind] && rc == 0; i++)
        rc = lookup_get(s->c->t[kind][i], key, v);
    if (rc < 0) {
        log_warning("%s: %s", hc_params[kind], buf_data(v));
        r->verdict = FILTER_TEMPFAIL;
        r->code = 451;
        r->dsn = "4.3.0";
        r->text = "Error: content check lookup failure";
        s->done = 1;
    }
    return rc;
}

/* The actions every kind has: REJECT, DISCARD, HOLD, WARN, INFO, DUNNO,
 * OK. r filled (texts point into act and dsn); 1 when act was one of
 * them, 0 when it is a header modification or unknown. */
static int
hc_act(struct hc_sess *s, const char *where, const char *key, const char *act,
       struct filter_reply *r, char dsn[16])
{
    size_t wl = strcspn(act, " \t");
    const char *text = act + wl;

    while (*text == ' ' || *text == '\t')
        text++;
#define IS(w) (wl == strlen(w) && strncasecmp(act, w, wl) == 0)
    if (IS("REJECT")) {
        size_t dl = strspn(text, "0123456789.");
        char l[600];

        snprintf(dsn, 16, "5.7.1");
        if (dl >= 5 && dl < 16 && text[1] == '.'
            && (text[0] == '5' || text[0] == '4')
            && (text[dl] == ' ' || text[dl] == '\0')) {
            snprintf(dsn, 16, "5%.*s", (int) dl - 1, text + 1);
            for (text += dl; *text == ' '; text++)
                ;
        }
        if (!*text)
            text = "Message content rejected";
        snprintf(l, sizeof(l), "%s %s", dsn, text);
        hc_log(s, "reject", where, key, l);
        r->verdict = FILTER_REJECT;
        r->code = 550;
        r->dsn = dsn;
        r->text = text;
        s->done = 1;
        return 1;
    }
    if (IS("DISCARD") || IS("HOLD")) {
        int hold = IS("HOLD");

        hc_log(s, hold ? "hold" : "discard", where, key, *text ? text : NULL);
        r->verdict = hold ? FILTER_HOLD : FILTER_DISCARD;
        r->text = *text ? text : hold ? "content check HOLD" : NULL;
        s->done = 1;
        return 1;
    }
    if (IS("WARN") || IS("INFO")) {
        hc_log(s, IS("WARN") ? "warning" : "info", where, key,
               *text ? text : NULL);
        return 1;
    }
    return IS("DUNNO") || IS("OK");
#undef IS
}

/* An action this kind does not have: said, once per action word. */
static void
hc_unsupported(enum hc_kind kind, const char *act)
{
    size_t wl = strcspn(act, " \t");
    char safe[128];

    log_warning("%s: action \"%s\" is not implemented for it in this "
                "Sluice; ignored",
                hc_params[kind],
                log_safe(act, wl > 32 ? 32 : wl, safe, sizeof(safe)));
}

/* One field of the message header. Answers call. */
static void
hc_field(struct hc_sess *s, struct filter_call *call, const char *hname,
         const char *hvalue)
{
    struct buf *key = buf_new(256, HC_KEY_MAX), *v = buf_new(128, 8192);
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};
    struct hc_name *nm = hc_name(s, hname);
    int pos = s->pos++;
    const char *act, *text;
    size_t wl;
    char dsn[16];

    if (nm)
        nm->seen++;
    if (strcasecmp(hname, "Content-Type") == 0 && s->top_ct == NULL)
        s->top_ct = xstrdup(hvalue); /* for the MIME structure */
    if (s->done || s->c->n[HC_HEADER] == 0)
        goto out;
    /* "Name: value": the value as received after the colon, its CRLF
     * line breaks as "\n"; a field over HC_KEY_MAX is looked up cut */
    buf_puts(key, hname);
    buf_putc(key, ':');
    for (const char *p = hvalue; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n') && buf_putc(key, *p) < 0)
            break;
    if (hc_lookup(s, HC_HEADER, buf_data(key), v, &r) <= 0)
        goto out;
    act = buf_data(v);
    if (hc_act(s, "header", buf_data(key), act, &r, dsn))
        goto out;
    wl = strcspn(act, " \t");
    for (text = act + wl; *text == ' ' || *text == '\t'; text++)
        ;
#define IS(w) (wl == strlen(w) && strncasecmp(act, w, wl) == 0)
    if (IS("IGNORE")) {
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
    } else {
        hc_unsupported(HC_HEADER, act);
    }
#undef IS
out:
    filter_answer(call, &r);
    buf_free(key);
    buf_free(v);
}

/* The boundary of a multipart Content-Type value into out; 0, or -1 when
 * it is not multipart or has none (or a bad one). */
static int
hc_boundary(const char *ct, char out[HC_BOUND_MAX + 1])
{
    const char *p = ct, *b;
    size_t n = 0;

    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (strncasecmp(p, "multipart/", 10) != 0)
        return -1;
    for (b = p; (b = strchr(b, '=')) != NULL; b++) {
        const char *k = b;

        while (k > p && (k[-1] == ' ' || k[-1] == '\t'))
            k--;
        if (k - p >= 8 && strncasecmp(k - 8, "boundary", 8) == 0
            && (k - 8 == p || strchr("; \t\r\n", k[-9])))
            break;
    }
    if (b == NULL)
        return -1;
    for (b++; *b == ' ' || *b == '\t'; b++)
        ;
    if (*b == '"') {
        for (b++; *b && *b != '"' && n < HC_BOUND_MAX; b++) {
            if (*b == '\\' && b[1])
                b++;
            out[n++] = *b;
        }
        if (*b && *b != '"')
            return -1; /* over RFC 2046's 70: not followed */
    } else {
        while (*b && !strchr(" \t\r\n;", *b) && n < HC_BOUND_MAX)
            out[n++] = *b++;
        if (*b && !strchr(" \t\r\n;", *b))
            return -1;
    }
    out[n] = '\0';
    return n > 0 ? 0 : -1;
}

static int
hc_is_message(const char *ct)
{
    while (ct && (*ct == ' ' || *ct == '\t'))
        ct++;
    return ct && strncasecmp(ct, "message/rfc822", 14) == 0;
}

/* The header of a part (or of an attached message) ended, or the body
 * starts: what follows, from its Content-Type. */
static void
hc_part_start(struct hc_sess *s, const char *ct)
{
    char b[HC_BOUND_MAX + 1];

    s->bstate = HC_B_BODY;
    s->nested = 0;
    s->part_body = 0;
    if (ct && hc_boundary(ct, b) == 0 && s->nbound < HC_DEPTH_MAX) {
        memcpy(s->bound[s->nbound++], b, sizeof(b));
    } else if (hc_is_message(ct)) {
        s->bstate = HC_B_PARTHDR; /* an attached message: its header */
        s->nested = 1;
    }
}

/* A complete part header field in s->field: checked. */
static void
hc_part_field(struct hc_sess *s, struct filter_reply *r, struct buf *v,
              char dsn[16])
{
    enum hc_kind kind = s->nested ? HC_NESTED : HC_MIME;
    const char *f = buf_data(s->field);

    if (buf_len(s->field) == 0)
        return;
    if (strncasecmp(f, "Content-Type:", 13) == 0 && s->part_ct == NULL)
        s->part_ct = xstrdup(f + 13);
    if (!s->done && s->c->n[kind] > 0 && hc_lookup(s, kind, f, v, r) > 0
        && !hc_act(s, "header", f, buf_data(v), r, dsn))
        hc_unsupported(kind, buf_data(v));
}

/* One body line (CRLF removed, l[n] a NUL): MIME structure and body_checks. */
static void
hc_line(struct hc_sess *s, const char *l, size_t n, struct filter_reply *r,
        struct buf *v, char dsn[16])
{
    if (s->bstate == HC_B_PARTHDR) {
        if (n > 0 && (l[0] == ' ' || l[0] == '\t')) { /* folded */
            if (buf_len(s->field) + n + 1 < HC_KEY_MAX) {
                buf_putc(s->field, '\n');
                buf_append(s->field, l, n);
            }
            return;
        }
        hc_part_field(s, r, v, dsn);
        buf_reset(s->field);
        if (n == 0) { /* the end of the part's header */
            char *ct = s->part_ct;

            s->part_ct = NULL;
            hc_part_start(s, ct);
            free(ct);
            return;
        }
        buf_append(s->field, l, n < HC_KEY_MAX ? n : HC_KEY_MAX - 1);
        return;
    }
    if (s->nbound > 0 && n >= 2 && l[0] == '-' && l[1] == '-') {
        for (size_t k = s->nbound; k > 0; k--) {
            const char *b = s->bound[k - 1];
            size_t bl = strlen(b), i = 2 + bl;

            if (n < i || memcmp(l + 2, b, bl) != 0)
                continue;
            if (n >= i + 2 && l[i] == '-' && l[i + 1] == '-') {
                s->nbound = k - 1; /* closed: the epilogue follows */
                s->bstate = HC_B_BODY;
                s->part_body = 0;
                return;
            }
            while (i < n && (l[i] == ' ' || l[i] == '\t'))
                i++;
            if (i == n) { /* a new part: its header follows */
                s->nbound = k;
                s->bstate = HC_B_PARTHDR;
                s->nested = 0;
                free(s->part_ct);
                s->part_ct = NULL;
                return;
            }
        }
    }
    if (s->done || s->c->n[HC_BODY] == 0 || s->part_body >= s->c->body_limit)
        return;
    s->part_body += (long long) n + 2;
    if (hc_lookup(s, HC_BODY, l, v, r) > 0 /* l[n] is NUL (hc_take) */
        && !hc_act(s, "body", l, buf_data(v), r, dsn))
        hc_unsupported(HC_BODY, buf_data(v));
}

/* The line in s->line without its CR, NUL-terminated in place. */
static const char *
hc_take(struct hc_sess *s, size_t *len)
{
    size_t n = buf_len(s->line);

    if (n > 0 && buf_data(s->line)[n - 1] == '\r')
        n--;
    if (n < buf_len(s->line))
        buf_data(s->line)[n] = '\0';
    else
        buf_putc(s->line, '\0');
    *len = n;
    return buf_data(s->line);
}

/* Body bytes (CRLF lines, any chunking): whole lines to hc_line. */
static void
hc_body(struct hc_sess *s, const char *p, size_t n, struct filter_reply *r,
        struct buf *v, char dsn[16])
{
    while (n > 0 && !s->done) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t) (nl - p) : n;

        if (!s->line_over) {
            if (buf_len(s->line) + k > HC_LINE_MAX) {
                buf_append(s->line, p, HC_LINE_MAX - buf_len(s->line));
                s->line_over = 1;
            } else {
                buf_append(s->line, p, k);
            }
        }
        if (nl == NULL)
            return;
        p += k + 1;
        n -= k + 1;
        {
            size_t len;
            const char *l = hc_take(s, &len);

            hc_line(s, l, len, r, v, dsn);
        }
        buf_reset(s->line);
        s->line_over = 0;
    }
}

static void
hc_stage(void *state, struct filter_call *call, enum filter_stage st,
         const struct filter_args *args)
{
    struct hc_sess *s = state;
    struct filter_reply r = {FILTER_CONTINUE, 0, NULL, NULL, NULL};
    struct buf *v = NULL;
    char dsn[16];
    int mime = s->c->n[HC_MIME] + s->c->n[HC_NESTED] + s->c->n[HC_BODY] > 0;

    switch (st) {
    case FILTER_MAIL:
    case FILTER_ABORT:
        hc_reset(s);
        break;
    case FILTER_HEADER:
        hc_field(s, call, args->hname, args->hvalue);
        return;
    case FILTER_EOH:
        if (mime)
            hc_part_start(s, s->top_ct);
        break;
    case FILTER_BODY:
        if (mime && !s->done) {
            v = buf_new(128, 8192);
            hc_body(s, args->data, args->len, &r, v, dsn);
        }
        break;
    case FILTER_EOM:
        if (mime && !s->done && buf_len(s->line) > 0) { /* no final CRLF */
            v = buf_new(128, 8192);
            size_t len;
            const char *l = hc_take(s, &len);

            hc_line(s, l, len, &r, v, dsn);
        }
        if (r.verdict == FILTER_CONTINUE) {
            r.mods = s->mods; /* the chain owns them now */
            s->mods = NULL;
            s->tail = &s->mods;
        }
        break;
    default:
        break;
    }
    filter_answer(call, &r);
    buf_free(v);
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
