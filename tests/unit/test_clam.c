/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test_clam.c - the ClamAV filter with real libclamav on a real libev
 * loop, driven through filter_chain/filter_sess like the SMTP session
 * does: a temp database directory with our own .ndb signatures (EICAR and
 * Sluice test patterns); each message sits in a temp "queue file" at a
 * non-zero offset between junk (the junk after it holds EICAR, so reading
 * outside the message's range would be caught). Zip archives are made
 * with python3 (deflated, so the EICAR bytes are not visible raw); those
 * tests are skipped without python3.
 * Covers: clean (+ header), EICAR plain, base64 attachment, parse_mail=no,
 * logical signatures (with our sscanf and with glibc's),
 * zip, nesting past clamav_max_recursion with each limit action, virus
 * actions, failure actions (empty/missing database), reload with scans
 * straddling the swap, a broken database keeping the old engine, a session
 * closed during its scan, clam_conf_new and clam_check messages.
 */
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/cf.h"
#include "filters/clam.h"
#include "filters/clam_fmap.h"
#include "filters/clam_sscanf.h"
#include "filters/filter.h"
#include "lib/buf.h"
#include "lib/log.h"

#define EICAR \
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
#define PAT1     "SLUICE-TEST-PATTERN-1-9f2c4e"
#define PAT2     "SLUICE-TEST-PATTERN-2-51d07a"
#define JUNK_OFF 1000

static char tmpdir[64];
static char dbdir[128], emptydir[128], nodir[128], logpath[128];
static int have_python;

/* ------------------------------------------------------------------ */
/* files */

static void
write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void
hex(const char *s, char *out)
{
    for (; *s; s++, out += 2)
        sprintf(out, "%02x", (unsigned char) *s);
    *out = '\0';
}

/* Write dir/name atomically (new inode, as freshclam does), with the
 * given signatures: each "Name=string". */
static void
write_ndb(const char *dir, const char *name, const char *const *sigs)
{
    char path[256], tmp[256], h[512];
    struct buf *b = buf_new(1024, BUF_NOCAP);

    for (; *sigs; sigs++) {
        const char *eq = strchr(*sigs, '=');

        hex(eq + 1, h);
        buf_printf(b, "%.*s:0:*:%s\n", (int) (eq - *sigs), *sigs, h);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.tmp", dir);
    write_file(tmp, buf_data(b), buf_len(b));
    assert_int_equal(rename(tmp, path), 0);
    buf_free(b);
}

static const char *const sigs1[] = {"Eicar-Signature=" EICAR,
                                    "Sluice.Test.Pattern-1=" PAT1, NULL};
static const char *const sigs2[] = {"Eicar-Signature=" EICAR,
                                    "Sluice.Test.Pattern-1=" PAT1,
                                    "Sluice.Test.Pattern-2=" PAT2, NULL};

static int
read_log_has(const char *needle)
{
    char *p;
    long n;
    FILE *f = fopen(logpath, "rb");
    int found;

    if (f == NULL)
        return 0;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = calloc(1, (size_t) n + 1);
    n = (long) fread(p, 1, (size_t) n, f);
    fclose(f);
    found = strstr(p, needle) != NULL;
    free(p);
    return found;
}

static void
base64(const unsigned char *in, size_t n, struct buf *out)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, col = 0;

    for (i = 0; i < n; i += 3) {
        unsigned v = in[i] << 16;

        if (i + 1 < n)
            v |= in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        buf_putc(out, t[(v >> 18) & 63]);
        buf_putc(out, t[(v >> 12) & 63]);
        buf_putc(out, i + 1 < n ? t[(v >> 6) & 63] : '=');
        buf_putc(out, i + 2 < n ? t[v & 63] : '=');
        if ((col += 4) >= 76) {
            buf_puts(out, "\r\n");
            col = 0;
        }
    }
    buf_puts(out, "\r\n");
}

/* A MIME message with one base64 attachment (and text parts). */
static struct buf *
mime_msg(const void *att, size_t attlen, const char *text_after)
{
    struct buf *b = buf_new(4096, BUF_NOCAP);

    buf_puts(b, "From: <a@example.org>\r\nTo: <b@example.net>\r\n"
                "Subject: attachment\r\nMIME-Version: 1.0\r\n"
                "Content-Type: multipart/mixed; boundary=\"BND\"\r\n\r\n"
                "--BND\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
                "--BND\r\nContent-Type: application/octet-stream; "
                "name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\n");
    base64(att, attlen, b);
    if (text_after)
        buf_printf(b, "--BND\r\nContent-Type: text/plain\r\n\r\n%s\r\n",
                   text_after);
    buf_puts(b, "--BND--\r\n");
    return b;
}

/* EICAR in a zip in a zip ... (depth levels, deflated), via python3. */
static struct buf *
zip_eicar(int depth)
{
    char cmd[1024], path[256];
    struct buf *b = buf_new(4096, BUF_NOCAP);
    FILE *f;
    size_t n;
    char chunk[4096];

    snprintf(path, sizeof(path), "%s/z%d.zip", tmpdir, depth);
    snprintf(cmd, sizeof(cmd),
             "python3 -c 'import io,sys,zipfile\n"
             "d=bytes.fromhex(sys.argv[2])\n"
             "for i in range(int(sys.argv[1])):\n"
             " o=io.BytesIO();z=zipfile.ZipFile(o,\"w\",zipfile.ZIP_DEFLATED)\n"
             " z.writestr(\"f%%d.bin\"%%i,d);z.close();d=o.getvalue()\n"
             "open(sys.argv[3],\"wb\").write(d)' %d %s %s",
             depth,
             "58354f2150254041505b345c505a58353428505e2937434329377d2445494341"
             "522d5354414e444152442d414e544956495255532d544553542d46494c452124"
             "482b482a",
             path);
    assert_int_equal(system(cmd), 0);
    f = fopen(path, "rb");
    assert_non_null(f);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(b, chunk, n);
    fclose(f);
    unlink(path);
    return b;
}

/* ------------------------------------------------------------------ */
/* a harness: loop, cf, filter, chain */

struct h {
    struct ev_loop *loop;
    ev_timer tick;
    struct cf *cf;
    struct clam_conf *cc;
    struct filter_chain *ch;
};

struct res {
    int done;
    enum filter_verdict v;
    int code;
    char dsn[16];
    char text[512];
    char hname[64];
    char hvalue[512];
    int nmods;
};

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

static void
h_set(struct h *h, const char *name, const char *value)
{
    struct buf *err = buf_new(256, 4096);

    assert_int_equal(cf_set(h->cf, name, value, NULL, err), 0);
    buf_free(err);
}

/* Parameters as "name=value" pairs, NULL-terminated; then start. */
static void
h_init(struct h *h, ...)
{
    struct buf *err = buf_new(256, 4096);
    const char *kv;
    va_list ap;

    memset(h, 0, sizeof(*h));
    h->loop = ev_loop_new(EVFLAG_AUTO);
    ev_timer_init(&h->tick, tick_cb, 0.005, 0.005);
    ev_timer_start(h->loop, &h->tick);
    h->cf = cf_new();
    h_set(h, "myhostname", "mx.example.org");
    h_set(h, "clamav_database_directory", dbdir);
    h_set(h, "clamav_scan_threads", "2");
    va_start(ap, h);
    while ((kv = va_arg(ap, const char *)) != NULL) {
        char name[128];
        const char *eq = strchr(kv, '=');

        snprintf(name, sizeof(name), "%.*s", (int) (eq - kv), kv);
        h_set(h, name, eq + 1);
    }
    va_end(ap);
    assert_int_equal(cf_check(h->cf, err), 0);
    h->cc = clam_conf_new(h->cf, err);
    if (h->cc == NULL)
        fail_msg("clam_conf_new: %s", buf_data(err));
    h->ch = filter_chain_new();
    filter_chain_add(h->ch, &clam_filter_ops, h->cc);
    filter_chain_start(h->ch, h->loop);
    buf_free(err);
}

static void
h_free(struct h *h)
{
    filter_chain_stop(h->ch);
    filter_chain_free(h->ch);
    clam_conf_free(h->cc);
    cf_free(h->cf);
    ev_timer_stop(h->loop, &h->tick);
    ev_loop_destroy(h->loop);
}

static void
h_run_until(struct h *h, int *flag, double secs)
{
    ev_tstamp end;

    ev_now_update(h->loop);
    end = ev_now(h->loop) + secs;
    while (!*flag && ev_now(h->loop) < end)
        ev_run(h->loop, EVRUN_ONCE);
}

static void
h_sleep(struct h *h, double secs)
{
    int never = 0;

    h_run_until(h, &never, secs);
}

static struct clam_stats
h_stats(struct h *h)
{
    struct clam_stats st;

    clam_get_stats(h->cc, &st);
    return st;
}

static void
eom_done(void *arg, const struct filter_result *r)
{
    struct res *res = arg;
    const struct filter_mod *m;

    res->done = 1;
    res->v = r->verdict;
    res->code = r->code;
    snprintf(res->dsn, sizeof(res->dsn), "%s", r->dsn ? r->dsn : "");
    snprintf(res->text, sizeof(res->text), "%s", r->text ? r->text : "");
    for (m = r->mods; m; m = m->next) {
        res->nmods++;
        if (m->type == FILTER_MOD_INSERT_HEADER && m->index == 0) {
            snprintf(res->hname, sizeof(res->hname), "%s", m->name);
            snprintf(res->hvalue, sizeof(res->hvalue), "%.*s", (int) m->len,
                     m->value);
        }
    }
}

/* One message in a temp queue file at JUNK_OFF, EICAR in the junk after
 * it. Returns the fd. */
static int
spool_file(const void *msg, size_t len)
{
    char path[256];
    int fd;
    char junk[JUNK_OFF];
    static const char tail[] = "\r\n" EICAR "\r\n";

    snprintf(path, sizeof(path), "%s/spoolXXXXXX", tmpdir);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    memset(junk, 'J', sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
    assert_int_equal(write(fd, msg, len), (ssize_t) len);
    assert_int_equal(write(fd, tail, sizeof(tail) - 1), sizeof(tail) - 1);
    return fd;
}

struct msgrun {
    struct filter_env env;
    struct filter_sess *fs;
    struct res res;
};

static void
msg_start(struct h *h, struct msgrun *m, const void *msg, size_t len)
{
    memset(m, 0, sizeof(*m));
    m->env.client_addr = "192.0.2.1";
    m->env.client_name = "client.example";
    m->env.queue_id = "4Xq7Test1";
    m->env.sender = "a@example.org";
    m->env.spool_fd = spool_file(msg, len);
    m->env.spool_off = JUNK_OFF;
    m->env.spool_len = (off_t) len;
    m->fs = filter_sess_new(h->ch, &m->env);
    filter_stage(m->fs, FILTER_EOM, NULL, eom_done, &m->res);
}

static void
msg_end(struct msgrun *m)
{
    filter_sess_free(m->fs);
    close(m->env.spool_fd);
}

/* Scan one message, wait for the verdict. */
static struct res
scan(struct h *h, const void *msg, size_t len)
{
    struct msgrun m;
    struct res r;

    msg_start(h, &m, msg, len);
    h_run_until(h, &m.res.done, 10);
    assert_true(m.res.done);
    r = m.res;
    msg_end(&m);
    return r;
}

static struct res
scan_str(struct h *h, const char *msg)
{
    return scan(h, msg, strlen(msg));
}

static const char clean_msg[] =
    "Received: from x (x [192.0.2.1])\r\n\tby mx (Sluice) id 4Xq7Test1\r\n"
    "From: <a@example.org>\r\nSubject: hello\r\n\r\nJust a clean message.\r\n";
static const char eicar_msg[] = "From: <a@example.org>\r\nSubject: test\r\n\r\n"
                                "Body line\r\n" EICAR "\r\n";
static const char pat2_msg[] =
    "From: <a@example.org>\r\nSubject: p2\r\n\r\nhere " PAT2 " it is\r\n";

/* ------------------------------------------------------------------ */
/* tests */

static void
test_clean_and_header(void **state)
{
    struct h h;
    struct res r;

    h_init(&h, "clamav_header=X-Virus-Scanned", NULL);
    r = scan_str(&h, clean_msg);
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_int_equal(r.nmods, 1);
    assert_string_equal(r.hname, "X-Virus-Scanned");
    assert_non_null(strstr(r.hvalue, "ClamAV 1."));
    assert_non_null(strstr(r.hvalue, " at mx.example.org; clean"));
    assert_true(read_log_has("4Xq7Test1: clamav: clean (scan "));
    assert_true(read_log_has("clamav: engine loaded: 2 signatures from "));
    assert_int_equal(h_stats(&h).clean, 1);
    assert_int_equal(h_stats(&h).scans, 1);
    assert_non_null(strstr(h_stats(&h).engine_version, "ClamAV 1."));
    h_free(&h);

    /* no header configured: no modification */
    h_init(&h, NULL);
    r = scan_str(&h, clean_msg);
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_int_equal(r.nmods, 0);
    h_free(&h);
}

/* Either side of CLAM_HEAP_MAP_MAX (heap map below, libclamav's aging
 * map above): EICAR on the message's last line is found, and a clean
 * message is clean although EICAR follows it in the queue file (the map
 * never reads past the message). */
static void
test_map_kinds(void **state)
{
    static const size_t sizes[] = {CLAM_HEAP_MAP_MAX - 4096 - 7,
                                   CLAM_HEAP_MAP_MAX, CLAM_HEAP_MAP_MAX + 1,
                                   CLAM_HEAP_MAP_MAX + 4096 + 13};
    struct buf *b = buf_new(CLAM_HEAP_MAP_MAX + 8192, BUF_NOCAP);
    struct h h;
    struct res r;
    size_t i, n;

    h_init(&h, NULL);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        buf_sets(b, "From: <a@example.org>\r\nSubject: map\r\n\r\n");
        while (buf_len(b) + 80 < sizes[i] - sizeof(EICAR) - 2)
            buf_puts(b, "a line of filler text, the same again and again "
                        "and again to the end\r\n");
        n = sizes[i] - sizeof(EICAR) - 2 - buf_len(b);
        while (n-- > 2)
            buf_putc(b, 'x');
        buf_puts(b, "\r\n");
        r = scan(&h, buf_data(b), buf_len(b));
        assert_int_equal(r.v, FILTER_CONTINUE);
        buf_puts(b, EICAR "\r\n");
        assert_int_equal(buf_len(b), sizes[i] - 1);
        r = scan(&h, buf_data(b), buf_len(b));
        assert_int_equal(r.v, FILTER_REJECT);
    }
    h_free(&h);
    buf_free(b);
}

static void
test_eicar_plain_and_actions(void **state)
{
    struct h h;
    struct res r;

    h_init(&h, NULL);
    r = scan_str(&h, eicar_msg);
    assert_int_equal(r.v, FILTER_REJECT);
    assert_int_equal(r.code, 554);
    assert_string_equal(r.dsn, "5.7.1");
    assert_string_equal(r.text, "Message rejected: Infected: Eicar-Signature");
    assert_true(read_log_has("4Xq7Test1: filter=clamav, action=reject, "
                             "virus=Eicar-Signature (scan "));
    /* another pattern */
    r = scan_str(&h, "Subject: x\r\n\r\n" PAT1 "\r\n");
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text,
                        "Message rejected: Infected: Sluice.Test.Pattern-1");
    assert_int_equal(h_stats(&h).infected, 2);
    h_free(&h);

    h_init(&h, "clamav_virus_action=discard", NULL);
    r = scan_str(&h, eicar_msg);
    assert_int_equal(r.v, FILTER_DISCARD);
    assert_string_equal(r.text, "Infected: Eicar-Signature");
    h_free(&h);

    h_init(&h, "clamav_virus_action=hold", "clamav_header=X-Virus-Scanned",
           NULL);
    r = scan_str(&h, eicar_msg);
    assert_int_equal(r.v, FILTER_HOLD);
    assert_string_equal(r.text, "Infected: Eicar-Signature");
    assert_non_null(strstr(r.hvalue, "; infected (Eicar-Signature)"));
    assert_true(read_log_has("action=hold, virus=Eicar-Signature"));
    h_free(&h);

    /* clamav_enable = no: nothing is scanned */
    h_init(&h, "clamav_enable=no", NULL);
    r = scan_str(&h, eicar_msg);
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_int_equal(h_stats(&h).scans, 0);
    h_free(&h);
}

/* Logical signatures (.ldb): sub-signatures combined with &, a count
 * modifier (0>1) and a block modifier with two numbers ((0|1|2)>2,2: more
 * than two matches from at least two sub-signatures). libclamav parses
 * these expressions with sscanf on every scan, through clam_sscanf.c's
 * fast path; each case runs with it and with glibc's sscanf (the verdicts
 * agree with Debian's clamscan on the same database). */
static void
test_logical_signatures(void **state)
{
    static const char *const subs[] = {
        "SLUICE-LDB-AND-ONE-3b1f", "SLUICE-LDB-AND-TWO-8c2e",
        "SLUICE-LDB-COUNT-77d0",   "SLUICE-LDB-BLK-E-1a",
        "SLUICE-LDB-BLK-F-2b",     "SLUICE-LDB-BLK-G-3c"};
    static const struct {
        const char *body, *virus; /* NULL: clean */
    } cases[] = {
        {"x SLUICE-LDB-AND-ONE-3b1f y", NULL},
        {"x SLUICE-LDB-AND-ONE-3b1f y SLUICE-LDB-AND-TWO-8c2e",
         "Sluice.Ldb.And"},
        {"SLUICE-LDB-COUNT-77d0", NULL},
        {"SLUICE-LDB-COUNT-77d0 and SLUICE-LDB-COUNT-77d0", "Sluice.Ldb.Count"},
        {"SLUICE-LDB-BLK-E-1a SLUICE-LDB-BLK-E-1a SLUICE-LDB-BLK-E-1a", NULL},
        {"SLUICE-LDB-BLK-E-1a SLUICE-LDB-BLK-F-2b", NULL},
        {"SLUICE-LDB-BLK-E-1a SLUICE-LDB-BLK-E-1a SLUICE-LDB-BLK-F-2b",
         "Sluice.Ldb.Block"},
    };
    char dir[256], path[300], kv[300], hx[6][64], msg[512], want[128];
    struct buf *b = buf_new(1024, BUF_NOCAP);
    struct h h;
    struct res r;
    size_t i;
    int plain;

    for (i = 0; i < 6; i++)
        hex(subs[i], hx[i]);
    buf_printf(b, "Sluice.Ldb.And;Target:0;0&1;%s;%s\n", hx[0], hx[1]);
    buf_printf(b, "Sluice.Ldb.Count;Target:0;0>1;%s\n", hx[2]);
    buf_printf(b, "Sluice.Ldb.Block;Target:0;(0|1|2)>2,2;%s;%s;%s\n", hx[3],
               hx[4], hx[5]);
    snprintf(dir, sizeof(dir), "%s/ldb", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/t.ldb", dir);
    write_file(path, buf_data(b), buf_len(b));
    snprintf(kv, sizeof(kv), "clamav_database_directory=%s", dir);
    for (plain = 0; plain <= 1; plain++) {
        clam_sscanf_setup(plain);
        h_init(&h, kv, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            snprintf(msg, sizeof(msg),
                     "From: <a@example.org>\r\nSubject: l\r\n\r\n%s\r\n",
                     cases[i].body);
            r = scan_str(&h, msg);
            if (cases[i].virus == NULL) {
                if (r.v != FILTER_CONTINUE)
                    fail_msg("case %zu (plain %d): %s", i, plain, r.text);
                continue;
            }
            snprintf(want, sizeof(want), "Message rejected: Infected: %s",
                     cases[i].virus);
            assert_int_equal(r.v, FILTER_REJECT);
            assert_string_equal(r.text, want);
        }
        h_free(&h);
    }
    clam_sscanf_setup(0);
    unlink(path);
    rmdir(dir);
    buf_free(b);
}

static void
test_eicar_base64_attachment(void **state)
{
    struct h h;
    struct res r;
    struct buf *m = mime_msg(EICAR, strlen(EICAR), NULL);

    /* the raw message does not hold the EICAR bytes */
    assert_null(strstr(buf_data(m), "EICAR-STANDARD"));
    h_init(&h, NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text, "Message rejected: Infected: Eicar-Signature");
    h_free(&h);

    /* without the mail parser the attachment is not decoded */
    h_init(&h, "clamav_parse_mail=no", NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_CONTINUE);
    h_free(&h);
    buf_free(m);
}

/* libclamav maps each object it extracts (here the decoded attachment)
 * through cl_fmap_open_handle asking for its aging map; clam_fmap.c
 * answers those calls: a heap map up to CLAM_HEAP_MAP_MAX, the aging map
 * above, and EICAR at the end of either is found. (The heap count also
 * shows that libclamav's own calls reach clam_fmap.c at all.) */
static void
test_inner_maps(void **state)
{
    static const size_t sizes[] = {70, 64 * 1024, CLAM_HEAP_MAP_MAX,
                                   CLAM_HEAP_MAP_MAX + 4096};
    unsigned long heap0, aging0, heap1, aging1, msg_aging;
    struct h h;
    struct res r;
    struct buf *att, *m;
    size_t i;

    h_init(&h, NULL);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        att = buf_new(sizes[i], BUF_NOCAP);
        while (buf_len(att) < sizes[i] - strlen(EICAR) - 2)
            buf_putc(att, 'A' + (int) (buf_len(att) % 26));
        buf_puts(att, "\n" EICAR);
        while (buf_len(att) < sizes[i])
            buf_putc(att, '\n');
        assert_int_equal(buf_len(att), sizes[i]);
        m = mime_msg(buf_data(att), buf_len(att), NULL);
        clam_fmap_counts(&heap0, &aging0);
        r = scan(&h, buf_data(m), buf_len(m));
        clam_fmap_counts(&heap1, &aging1);
        assert_int_equal(r.v, FILTER_REJECT);
        assert_string_equal(r.text,
                            "Message rejected: Infected: Eicar-Signature");
        /* the message's own map counts as an aging call when it is
         * over the limit (clam.c asks for the aging map then) */
        msg_aging = buf_len(m) > CLAM_HEAP_MAP_MAX;
        if (sizes[i] <= CLAM_HEAP_MAP_MAX) {
            assert_true(heap1 > heap0);
            assert_int_equal(aging1 - aging0, msg_aging);
        } else {
            assert_true(aging1 - aging0 >= msg_aging + 1);
        }
        buf_free(att);
        buf_free(m);
    }
    h_free(&h);
}

static void
test_zip(void **state)
{
    struct h h;
    struct res r;
    struct buf *z, *m;

    if (!have_python)
        skip();
    z = zip_eicar(1);
    m = mime_msg(buf_data(z), buf_len(z), NULL);
    h_init(&h, NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text, "Message rejected: Infected: Eicar-Signature");
    h_free(&h);
    h_init(&h, "clamav_parse_archive=no", NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_CONTINUE);
    h_free(&h);
    buf_free(z);
    buf_free(m);

    /* a zip in a zip, within the default limits */
    z = zip_eicar(2);
    m = mime_msg(buf_data(z), buf_len(z), NULL);
    h_init(&h, NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_REJECT);
    h_free(&h);
    buf_free(z);
    buf_free(m);
}

static void
test_recursion_limit(void **state)
{
    struct h h;
    struct res r;
    struct buf *z, *m, *m2;

    if (!have_python)
        skip();
    z = zip_eicar(6);
    m = mime_msg(buf_data(z), buf_len(z), NULL);
    /* mail -> attachment -> 6 zips is deeper than 3 */
    h_init(&h, "clamav_max_recursion=3", "clamav_header=X-Virus-Scanned", NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_non_null(strstr(r.hvalue, "; not fully scanned (MaxRecursion)"));
    assert_true(read_log_has(
        "4Xq7Test1: clamav: not fully scanned (MaxRecursion), accepted"));
    assert_int_equal(h_stats(&h).limits, 1);
    h_free(&h);

    h_init(&h, "clamav_max_recursion=3", "clamav_limit_action=tempfail", NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    assert_int_equal(r.code, 451);
    assert_string_equal(r.dsn, "4.3.0");
    assert_non_null(strstr(r.text, "MaxRecursion"));
    h_free(&h);

    h_init(&h, "clamav_max_recursion=3", "clamav_limit_action=reject", NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_REJECT);
    assert_int_equal(r.code, 554);
    assert_string_equal(r.dsn, "5.7.1");
    assert_non_null(strstr(r.text, "not fully scanned (MaxRecursion)"));

    /* libclamav 1.4: a real signature after the limit still wins */
    m2 = mime_msg(buf_data(z), buf_len(z), PAT1);
    r = scan(&h, buf_data(m2), buf_len(m2));
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text,
                        "Message rejected: Infected: Sluice.Test.Pattern-1");
    h_free(&h);

    /* with the default limit the same message is caught */
    h_init(&h, NULL);
    r = scan(&h, buf_data(m), buf_len(m));
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text, "Message rejected: Infected: Eicar-Signature");
    h_free(&h);
    buf_free(z);
    buf_free(m);
    buf_free(m2);
}

static void
test_failure(void **state)
{
    struct h h;
    struct res r;

    /* empty database directory: tempfail */
    {
        char kv[256];

        snprintf(kv, sizeof(kv), "clamav_database_directory=%s", emptydir);
        h_init(&h, kv, NULL);
        r = scan_str(&h, eicar_msg);
        assert_int_equal(r.v, FILTER_TEMPFAIL);
        assert_int_equal(r.code, 451);
        assert_string_equal(r.dsn, "4.3.0");
        assert_string_equal(r.text, "Error: virus scanner failure");
        assert_true(read_log_has("error: clamav: cannot load the database "
                                 "from "));
        assert_true(read_log_has("mail gets clamav_failure_action "
                                 "(tempfail)"));
        assert_true(read_log_has("4Xq7Test1: clamav: unscanned (no virus "
                                 "database loaded), action=tempfail"));
        assert_int_equal(h_stats(&h).failures, 1);
        assert_string_equal(h_stats(&h).engine_version, "");
        h_free(&h);

        snprintf(kv, sizeof(kv), "clamav_database_directory=%s", nodir);
        h_init(&h, kv, "clamav_failure_action=accept", NULL);
        r = scan_str(&h, eicar_msg);
        assert_int_equal(r.v, FILTER_CONTINUE);
        assert_true(read_log_has("clamav: unscanned (no virus database "
                                 "loaded), accepted by clamav_failure_action"));
        h_free(&h);
    }
}

/* Reload: sessions scan PAT2 messages back to back while the database
 * gains PAT2. Every scan submitted before the swap is judged by the old
 * engine (CONTINUE), even when it completes after the swap; scans
 * submitted after it are rejected. */
struct rslot {
    struct h *h;
    struct msgrun m;
    unsigned long long reloads_at_submit;
    int busy;
};

static int straddled, old_ok, new_rejects, bad, rstop;

static void rslot_start(struct rslot *s);

static void
rslot_done(void *arg, const struct filter_result *r)
{
    struct rslot *s = arg;
    unsigned long long now = h_stats(s->h).reloads;

    if (s->reloads_at_submit == 0) {
        if (r->verdict == FILTER_CONTINUE)
            old_ok++;
        else
            bad++;
        if (now > 0 && r->verdict == FILTER_CONTINUE)
            straddled++;
    } else if (r->verdict == FILTER_REJECT)
        new_rejects++;
    else
        bad++;
    filter_sess_free(s->m.fs); /* deferred: we are inside its callback */
    close(s->m.env.spool_fd);
    s->busy = 0;
    if (!rstop && new_rejects < 8 && bad == 0)
        rslot_start(s);
}

static void
rslot_start(struct rslot *s)
{
    struct msgrun *m = &s->m;

    memset(m, 0, sizeof(*m));
    m->env.queue_id = "4Xq7Reload";
    m->env.spool_fd = spool_file(pat2_msg, strlen(pat2_msg));
    m->env.spool_off = JUNK_OFF;
    m->env.spool_len = (off_t) strlen(pat2_msg);
    s->reloads_at_submit = h_stats(s->h).reloads;
    s->busy = 1;
    m->fs = filter_sess_new(s->h->ch, &m->env);
    filter_stage(m->fs, FILTER_EOM, NULL, rslot_done, s);
}

static void
test_reload(void **state)
{
    struct h h;
    struct res r;
    struct rslot slots[4];
    int i, busy = 1;
    char path[256];
    ev_tstamp end;
    struct clam_stats st;

    write_ndb(dbdir, "sluice-test.ndb", sigs1);
    h_init(&h, "clamav_reload_interval=1s", "clamav_scan_threads=1", NULL);
    r = scan_str(&h, pat2_msg);
    assert_int_equal(r.v, FILTER_CONTINUE); /* not known yet */
    write_ndb(dbdir, "sluice-test.ndb", sigs2);

    straddled = old_ok = new_rejects = bad = rstop = 0;
    for (i = 0; i < 4; i++) {
        slots[i].h = &h;
        rslot_start(&slots[i]);
    }
    ev_now_update(h.loop);
    end = ev_now(h.loop) + 10;
    while (busy > 0 && ev_now(h.loop) < end + 5) {
        h_sleep(&h, 0.02);
        rstop = ev_now(h.loop) >= end; /* bounded if the reload never comes */
        for (busy = i = 0; i < 4; i++)
            busy += slots[i].busy;
    }
    assert_int_equal(busy, 0);
    assert_int_equal(bad, 0);
    assert_int_equal(h_stats(&h).reloads, 1);
    assert_true(straddled > 0);
    assert_true(new_rejects >= 8);
    assert_true(read_log_has("clamav: reloaded: 3 signatures (db 0), "));
    r = scan_str(&h, pat2_msg);
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text,
                        "Message rejected: Infected: Sluice.Test.Pattern-2");

    /* a broken database: the current engine stays, tried once */
    snprintf(path, sizeof(path), "%s/broken.ndb", dbdir);
    write_file(path, "this is:not a signature\n", 24);
    for (i = 0; i < 300 && h_stats(&h).reload_failures == 0; i++)
        h_sleep(&h, 0.02);
    st = h_stats(&h);
    assert_int_equal(st.reload_failures, 1);
    assert_int_equal(st.reloads, 1);
    assert_true(read_log_has("warning: clamav: reload failed: "));
    assert_true(read_log_has("; keeping the current engine"));
    r = scan_str(&h, pat2_msg);
    assert_int_equal(r.v, FILTER_REJECT);
    h_sleep(&h, 1.3); /* unchanged: not tried again */
    assert_int_equal(h_stats(&h).reload_failures, 1);
    unlink(path);
    h_free(&h);
    write_ndb(dbdir, "sluice-test.ndb", sigs1);
}

/* A database directory that gets files later is picked up. */
static void
test_late_database(void **state)
{
    struct h h;
    struct res r;
    char dir[256], kv[300];

    snprintf(dir, sizeof(dir), "%s/late", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(kv, sizeof(kv), "clamav_database_directory=%s", dir);
    h_init(&h, kv, "clamav_reload_interval=1s", NULL);
    r = scan_str(&h, eicar_msg);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    write_ndb(dir, "t.ndb", sigs1);
    for (int i = 0; i < 200 && h_stats(&h).engine_version[0] == '\0'; i++)
        h_sleep(&h, 0.02);
    r = scan_str(&h, eicar_msg);
    assert_int_equal(r.v, FILTER_REJECT);
    h_free(&h);
    snprintf(kv, sizeof(kv), "%s/t.ndb", dir);
    unlink(kv);
    rmdir(dir);
}

/* The session goes away while its scan runs. */
static void
test_close_during_scan(void **state)
{
    struct h h;
    struct msgrun m[3];
    struct buf *big = buf_new(1 << 20, BUF_NOCAP);
    int i;

    buf_puts(big, "Subject: big\r\n\r\n");
    while (buf_len(big) < (2 << 20))
        buf_puts(big, "lorem ipsum dolor sit amet, consectetur adipiscing "
                      "elit, sed do eiusmod tempor incididunt\r\n");
    h_init(&h, NULL);
    h_sleep(&h, 0.2); /* engine loaded */
    for (i = 0; i < 3; i++)
        msg_start(&h, &m[i], buf_data(big), buf_len(big));
    for (i = 0; i < 3; i++)
        msg_end(&m[i]); /* scans in flight are orphaned */
    h_sleep(&h, 0.05);
    for (i = 0; i < 3; i++)
        assert_int_equal(m[i].res.done, 0);
    /* a new session still works while orphans finish */
    assert_int_equal(scan_str(&h, eicar_msg).v, FILTER_REJECT);
    h_free(&h); /* waits for the orphans */
    for (i = 0; i < 3; i++)
        assert_int_equal(m[i].res.done, 0);
    buf_free(big);
}

/* ------------------------------------------------------------------ */
/* clamd back end, against a fake clamd on a unix socket (a thread) */

struct fake_clamd {
    int lfd;
    pthread_t th;
    int stop;
    char path[200];
    struct buf *got; /* bytes of the last stream */
    int conns;
    pthread_mutex_t mu;
};

static int
read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    ssize_t r;

    while (got < n) {
        r = read(fd, (char *) p + got, n - got);
        if (r <= 0)
            return -1;
        got += (size_t) r;
    }
    return 0;
}

static void *
fake_clamd_main(void *arg)
{
    struct fake_clamd *f = arg;
    char cmd[10], *data;
    unsigned char len4[4];
    uint32_t n;
    int fd;

    for (;;) {
        struct pollfd pfd = {f->lfd, POLLIN, 0};

        if (poll(&pfd, 1, 20) <= 0) {
            if (__atomic_load_n(&f->stop, __ATOMIC_SEQ_CST))
                break;
            continue;
        }
        if ((fd = accept(f->lfd, NULL, NULL)) < 0)
            continue;
        pthread_mutex_lock(&f->mu);
        f->conns++;
        buf_reset(f->got);
        pthread_mutex_unlock(&f->mu);
        if (read_full(fd, cmd, 10) < 0 || memcmp(cmd, "zINSTREAM", 10) != 0) {
            close(fd);
            continue;
        }
        for (;;) {
            if (read_full(fd, len4, 4) < 0)
                break;
            n = (uint32_t) len4[0] << 24 | (uint32_t) len4[1] << 16
                | (uint32_t) len4[2] << 8 | len4[3];
            if (n == 0) {
                const char *rep;

                pthread_mutex_lock(&f->mu);
                rep = memmem(buf_data(f->got), buf_len(f->got), EICAR,
                             strlen(EICAR))
                          ? "stream: Eicar-Signature.UNOFFICIAL FOUND"
                          : "stream: OK";
                pthread_mutex_unlock(&f->mu);
                if (write(fd, rep, strlen(rep) + 1) < 0)
                    break;
                break;
            }
            data = malloc(n);
            if (read_full(fd, data, n) < 0) {
                free(data);
                break;
            }
            pthread_mutex_lock(&f->mu);
            buf_append(f->got, data, n);
            pthread_mutex_unlock(&f->mu);
            free(data);
        }
        close(fd);
    }
    return NULL;
}

static void
fake_clamd_start(struct fake_clamd *f)
{
    struct sockaddr_un su;

    memset(f, 0, sizeof(*f));
    snprintf(f->path, sizeof(f->path), "%s/clamd.sock", tmpdir);
    f->got = buf_new(4096, BUF_NOCAP);
    pthread_mutex_init(&f->mu, NULL);
    f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    memset(&su, 0, sizeof(su));
    su.sun_family = AF_UNIX;
    assert_true(strlen(f->path) < sizeof(su.sun_path));
    memcpy(su.sun_path, f->path, strlen(f->path) + 1);
    unlink(f->path);
    assert_int_equal(bind(f->lfd, (struct sockaddr *) &su, sizeof(su)), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_clamd_main, f), 0);
}

static void
fake_clamd_stop(struct fake_clamd *f)
{
    __atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(f->th, NULL);
    close(f->lfd);
    unlink(f->path);
    buf_free(f->got);
    pthread_mutex_destroy(&f->mu);
}

static void
stage_done(void *arg, const struct filter_result *r)
{
    *(int *) arg = 1;
}

/* A whole transaction through the stages, the body in chunks of bodychunk
 * bytes; the bytes clamd should get are appended to expect. */
static struct res
clamd_txn(struct h *h, const char *body, size_t bodylen, size_t bodychunk,
          struct buf *expect)
{
    struct filter_env env;
    struct filter_sess *fs;
    struct filter_args a;
    struct res r;
    int mail_done = 0;
    size_t off;

    memset(&env, 0, sizeof(env));
    memset(&r, 0, sizeof(r));
    env.queue_id = "4Xq7Clamd";
    env.spool_fd = -1;
    fs = filter_sess_new(h->ch, &env);
    memset(&a, 0, sizeof(a));
    a.str = "a@example.org";
    filter_stage(fs, FILTER_MAIL, &a, stage_done, &mail_done);
    h_run_until(h, &mail_done, 5);
    assert_true(mail_done);
    memset(&a, 0, sizeof(a));
    a.hname = "Received";
    a.hvalue = " from x (x [192.0.2.1])\r\n\tby mx (Sluice) id 4Xq7Clamd";
    filter_stage(fs, FILTER_HEADER, &a, NULL, NULL);
    a.hname = "Subject";
    a.hvalue = " test";
    filter_stage(fs, FILTER_HEADER, &a, NULL, NULL);
    filter_stage(fs, FILTER_EOH, NULL, NULL, NULL);
    buf_printf(expect, "Received: from x (x [192.0.2.1])\r\n\tby mx (Sluice) "
                       "id 4Xq7Clamd\r\nSubject: test\r\n\r\n");
    for (off = 0; off < bodylen; off += bodychunk) {
        memset(&a, 0, sizeof(a));
        a.data = body + off;
        a.len = bodylen - off < bodychunk ? bodylen - off : bodychunk;
        filter_stage(fs, FILTER_BODY, &a, NULL, NULL);
        /* like the session: stop reading while the backlog is high */
        while (filter_backlog(fs) >= FILTER_BACKLOG_HIGH)
            ev_run(h->loop, EVRUN_ONCE);
    }
    buf_append(expect, body, bodylen);
    filter_stage(fs, FILTER_EOM, NULL, eom_done, &r);
    h_run_until(h, &r.done, 10);
    assert_true(r.done);
    filter_sess_free(fs);
    return r;
}

static void
test_clamd(void **state)
{
    struct fake_clamd f;
    struct h h;
    struct res r;
    struct buf *expect = buf_new(4096, BUF_NOCAP);
    struct buf *big = buf_new(1 << 20, BUF_NOCAP);
    char kv[300];

    fake_clamd_start(&f);
    snprintf(kv, sizeof(kv), "clamav_backend=clamd:unix:%s", f.path);
    h_init(&h, kv, "clamav_header=X-Virus-Scanned", NULL);

    r = clamd_txn(&h, "hello\r\n", 7, 100, expect);
    assert_int_equal(r.v, FILTER_CONTINUE);
    assert_non_null(strstr(r.hvalue, "at mx.example.org; clean"));
    pthread_mutex_lock(&f.mu);
    assert_int_equal(buf_len(f.got), buf_len(expect));
    assert_memory_equal(buf_data(f.got), buf_data(expect), buf_len(expect));
    pthread_mutex_unlock(&f.mu);
    assert_true(read_log_has("4Xq7Clamd: clamav: clean (scan "));

    /* a big body in big chunks: back-pressure through drain */
    buf_reset(expect);
    while (buf_len(big) < (3 << 20))
        buf_puts(big, "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij"
                      "klmnopqrstuv\r\n");
    buf_puts(big, EICAR "\r\n");
    r = clamd_txn(&h, buf_data(big), buf_len(big), 300 * 1024, expect);
    assert_int_equal(r.v, FILTER_REJECT);
    assert_string_equal(r.text, "Message rejected: Infected: Eicar-Signature");
    pthread_mutex_lock(&f.mu);
    assert_int_equal(buf_len(f.got), buf_len(expect));
    assert_memory_equal(buf_data(f.got), buf_data(expect), buf_len(expect));
    assert_int_equal(f.conns, 2);
    pthread_mutex_unlock(&f.mu);
    h_free(&h);

    /* clamd down: failure action, logged once per state change */
    fake_clamd_stop(&f);
    h_init(&h, kv, NULL);
    buf_reset(expect);
    r = clamd_txn(&h, "hello\r\n", 7, 100, expect);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    assert_int_equal(r.code, 451);
    assert_string_equal(r.text, "Error: virus scanner failure");
    r = clamd_txn(&h, "hello\r\n", 7, 100, expect);
    assert_int_equal(r.v, FILTER_TEMPFAIL);
    assert_int_equal(h_stats(&h).failures, 2);
    h_free(&h);
    snprintf(kv, sizeof(kv),
             "warning: clamav: clamd unix:%s/clamd.sock: ", tmpdir);
    assert_true(read_log_has(kv));
    buf_free(expect);
    buf_free(big);
}

static void
test_conf_errors(void **state)
{
    struct cf *cf = cf_new();
    struct buf *err = buf_new(256, 4096);
    struct buf *out = buf_new(256, 8192);
    struct clam_conf *cc;

    assert_int_equal(cf_set(cf, "clamav_virus_action", "bounce", NULL, err), 0);
    assert_null(clam_conf_new(cf, err));
    assert_string_equal(buf_data(err), "clamav_virus_action: unknown value "
                                       "\"bounce\" (reject, discard or hold)");
    assert_int_equal(clam_check(cf, out), -1);
    assert_non_null(strstr(buf_data(out), "error: clamav_virus_action: "));
    cf_set(cf, "clamav_virus_action", "hold", NULL, err);

    buf_reset(err);
    cf_set(cf, "clamav_temporary_directory", "var/tmp", NULL, err);
    assert_null(clam_conf_new(cf, err));
    assert_string_equal(buf_data(err), "clamav_temporary_directory: var/tmp "
                                       "is not an absolute path");
    buf_reset(err); /* one that does not exist: libclamav's default */
    cf_set(cf, "clamav_temporary_directory", "/nonexistent/sluice-tmp", NULL,
           err);
    cc = clam_conf_new(cf, err);
    assert_non_null(cc);
    clam_conf_free(cc);
    cf_set(cf, "clamav_temporary_directory", "/dev/shm", NULL, err);

    buf_reset(err);
    cf_set(cf, "clamav_limit_action", "hold", NULL, err);
    assert_null(clam_conf_new(cf, err));
    assert_string_equal(buf_data(err), "clamav_limit_action: unknown value "
                                       "\"hold\" (accept, tempfail or reject)");
    cf_set(cf, "clamav_limit_action", "accept", NULL, err);

    buf_reset(err);
    cf_set(cf, "clamav_failure_action", "reject", NULL, err);
    assert_null(clam_conf_new(cf, err));
    assert_string_equal(buf_data(err), "clamav_failure_action: unknown value "
                                       "\"reject\" (tempfail or accept)");
    cf_set(cf, "clamav_failure_action", "tempfail", NULL, err);

    buf_reset(err);
    cf_set(cf, "clamav_backend", "clamd:tcp:1.2.3.4", NULL, err);
    assert_null(clam_conf_new(cf, err));
    assert_non_null(strstr(buf_data(err), "clamav_backend: unknown value"));
    cf_set(cf, "clamav_backend", "clamd:inet:127.0.0.1:3310", NULL, err);
    cc = clam_conf_new(cf, err);
    assert_non_null(cc);
    clam_conf_free(cc);
    cf_set(cf, "clamav_backend", "clamd:unix:/run/clamav/clamd.ctl", NULL, err);
    cc = clam_conf_new(cf, err);
    assert_non_null(cc);
    clam_conf_free(cc);

    buf_reset(err);
    cf_set(cf, "clamav_header", "X Virus", NULL, err);
    assert_null(clam_conf_new(cf, err));
    assert_non_null(strstr(buf_data(err), "clamav_header: "));

    cf_free(cf);
    buf_free(err);
    buf_free(out);
}

static void
test_check(void **state)
{
    struct cf *cf = cf_new();
    struct buf *err = buf_new(256, 4096);
    struct buf *out = buf_new(256, 8192);

    cf_set(cf, "clamav_database_directory", dbdir, NULL, err);
    assert_int_equal(clam_check(cf, out), 0);
    assert_int_equal(buf_len(out), 0); /* defaults: 10m message, 100m files */

    cf_set(cf, "message_size_limit", "200m", NULL, err);
    assert_int_equal(clam_check(cf, out), 0);
    assert_non_null(strstr(buf_data(out),
                           "warning: clamav_max_filesize (104857600) is below "
                           "message_size_limit (209715200): larger "
                           "attachments are not fully scanned\n"));
    assert_null(strstr(buf_data(out), "clamav_max_scansize"));
    cf_set(cf, "clamav_max_scansize", "100m", NULL, err);
    buf_reset(out);
    assert_int_equal(clam_check(cf, out), 0);
    assert_non_null(strstr(buf_data(out), "warning: clamav_max_scansize "));

    buf_reset(out);
    cf_set(cf, "message_size_limit", "10m", NULL, err);
    cf_set(cf, "clamav_database_directory", emptydir, NULL, err);
    assert_int_equal(clam_check(cf, out), -1);
    assert_non_null(
        strstr(buf_data(out), "error: clamav: no usable virus database in "));
    assert_non_null(strstr(buf_data(out), emptydir));

    buf_reset(out);
    cf_set(cf, "clamav_database_directory", nodir, NULL, err);
    assert_int_equal(clam_check(cf, out), -1);
    assert_non_null(strstr(buf_data(out), "No such file or directory"));

    /* clamd: no database needed */
    buf_reset(out);
    cf_set(cf, "clamav_backend", "clamd:unix:/run/clamav/clamd.ctl", NULL, err);
    assert_int_equal(clam_check(cf, out), 0);
    assert_int_equal(buf_len(out), 0);

    cf_free(cf);
    buf_free(err);
    buf_free(out);
}

/* ------------------------------------------------------------------ */

static int
group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_clam.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
    snprintf(emptydir, sizeof(emptydir), "%s/empty", tmpdir);
    snprintf(nodir, sizeof(nodir), "%s/missing", tmpdir);
    snprintf(logpath, sizeof(logpath), "%s/maillog", tmpdir);
    if (mkdir(dbdir, 0700) < 0 || mkdir(emptydir, 0700) < 0)
        return -1;
    write_ndb(dbdir, "sluice-test.ndb", sigs1);
    if (log_init("postfix", "smtpd", logpath) < 0)
        return -1;
    have_python = system("python3 -c 'import zipfile' >/dev/null 2>&1") == 0;
    return 0;
}

static int
group_teardown(void **state)
{
    char cmd[128];

    log_init("postfix", "smtpd", NULL);
    if (getenv("TEST_CLAM_KEEP") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            return -1;
    }
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_and_header),
        cmocka_unit_test(test_eicar_plain_and_actions),
        cmocka_unit_test(test_map_kinds),
        cmocka_unit_test(test_eicar_base64_attachment),
        cmocka_unit_test(test_inner_maps),
        cmocka_unit_test(test_logical_signatures),
        cmocka_unit_test(test_zip),
        cmocka_unit_test(test_recursion_limit),
        cmocka_unit_test(test_failure),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_late_database),
        cmocka_unit_test(test_close_during_scan),
        cmocka_unit_test(test_clamd),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_check),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
