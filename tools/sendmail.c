/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sendmail.c - the sendmail command of Postfix (and Sendmail), for
 * scripts and cron: the sluice binary invoked as "sendmail".
 *   sendmail [-t] [-i|-oi] [-f sender] [-F name] [recipient...] < message
 *   sendmail -bp (mailq), -bi / -I (newaliases), -q (flush the queue)
 * The message (LF or CRLF lines; a line "." ends it unless -i) gets
 * From:, Date: and Message-ID: when it has none, and a Received: line,
 * as Postfix's pickup/cleanup add them; -t takes the recipients from
 * To:, Cc: and Bcc: (Bcc: is removed) besides those given. Names without
 * a domain get @$myorigin.
 * Design: the message is handed to the running daemon's own SMTP service
 * (the first smtpd service of master.cf without wrapper-mode TLS, on its
 * address or on loopback), so the filters (ClamAV, milters, header
 * checks) judge it as any other mail, and no user needs write access to
 * the queue. Unlike Postfix's maildrop, the daemon must run: a message
 * that cannot be handed over is not queued and the command fails with
 * EX_TEMPFAIL (75); a recipient refused for good is said on stderr, with
 * exit EX_NOUSER (67) or EX_UNAVAILABLE (69), and the others get the
 * message.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "conf/cf.h"
#include "lib/buf.h"
#include "lib/xalloc.h"
#include "tools/sendmail.h"

#define SM_LINE_MAX 2048 /* bytes of an SMTP reply line */
#define SM_TIMEOUT  300  /* seconds per reply */

#define EX_USAGE_    64
#define EX_DATAERR_  65
#define EX_NOUSER_   67
#define EX_UNAVAIL_  69
#define EX_SOFTWARE_ 70
#define EX_TEMPFAIL_ 75

struct sm {
    int fd;
    char in[8192];
    size_t inlen;
    struct buf *reply; /* the last reply, lines joined by "\n" */
};

static void sm_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

static void
sm_die(int code, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sendmail: fatal: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

static int
sm_write(struct sm *s, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(s->fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

/* One reply (its lines): the code, or -1 when the connection failed. */
static int
sm_reply(struct sm *s)
{
    int code = -1;

    buf_reset(s->reply);
    for (;;) {
        char *nl = memchr(s->in, '\n', s->inlen);
        struct pollfd pf = {s->fd, POLLIN, 0};
        ssize_t r;

        if (nl) {
            size_t len = (size_t) (nl - s->in) + 1, l = len - 1;
            int last;

            if (l > 0 && s->in[l - 1] == '\r')
                l--;
            if (l < 3 || !isdigit((unsigned char) s->in[0]))
                return -1;
            code = atoi(s->in);
            last = l == 3 || s->in[3] != '-';
            if (buf_len(s->reply))
                buf_putc(s->reply, '\n');
            buf_append(s->reply, s->in, l);
            memmove(s->in, s->in + len, s->inlen - len);
            s->inlen -= len;
            if (last)
                return code;
            continue;
        }
        if (s->inlen == sizeof(s->in))
            return -1;
        if (poll(&pf, 1, SM_TIMEOUT * 1000) <= 0)
            return -1;
        r = recv(s->fd, s->in + s->inlen, sizeof(s->in) - s->inlen, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        s->inlen += (size_t) r;
    }
}

static int sm_cmd(struct sm *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
sm_cmd(struct sm *s, const char *fmt, ...)
{
    struct buf *b = buf_new(256, BUF_NOCAP);
    va_list ap;
    int rc;

    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
    buf_puts(b, "\r\n");
    rc = sm_write(s, buf_data(b), buf_len(b)) < 0 ? -1 : sm_reply(s);
    buf_free(b);
    return rc;
}

/* The daemon's SMTP service: host and port to connect to. */
static int
sm_service(const struct cf_service *svcs, size_t n, char *host, size_t hsz,
           char *port, size_t psz)
{
    for (size_t i = 0; i < n; i++) {
        const struct cf_service *v = &svcs[i];
        const char *h = v->host;

        if (strcmp(v->type, "inet") != 0 || strcmp(v->command, "smtpd") != 0
            || cf_bool(v->cf, "smtpd_tls_wrappermode")
            || strcasecmp(cf_str(v->cf, "smtpd_tls_security_level"), "encrypt")
                   == 0)
            continue;
        if (h == NULL || *h == '\0' || strcmp(h, "0.0.0.0") == 0
            || strcmp(h, "*") == 0)
            h = "127.0.0.1";
        else if (strcmp(h, "::") == 0 || strcmp(h, "[::]") == 0)
            h = "::1";
        snprintf(host, hsz, "%s", h);
        if (host[0] == '[') { /* [::1] */
            size_t l = strlen(host);

            memmove(host, host + 1, l);
            if (l >= 2 && host[l - 2] == ']')
                host[l - 2] = '\0';
        }
        snprintf(port, psz, "%s", v->port);
        return 0;
    }
    return -1;
}

static int
sm_connect(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* An address as given: <> stripped, @myorigin added to a bare name. */
static char *
sm_qualify(const char *a, size_t n, const char *origin)
{
    struct buf *b = buf_new(128, BUF_NOCAP);
    char *r;

    while (n > 0 && isspace((unsigned char) *a))
        a++, n--;
    while (n > 0 && isspace((unsigned char) a[n - 1]))
        n--;
    if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
        a++, n -= 2;
    buf_append(b, a, n);
    if (n > 0 && memchr(a, '@', n) == NULL)
        buf_printf(b, "@%s", origin);
    r = xstrdup(buf_data(b));
    buf_free(b);
    return r;
}

static void
sm_add(char ***v, size_t *n, char *a)
{
    for (size_t i = 0; i < *n; i++)
        if (strcasecmp((*v)[i], a) == 0) {
            free(a);
            return;
        }
    *v = xrealloc(*v, (*n + 2) * sizeof(char *));
    (*v)[(*n)++] = a;
    (*v)[*n] = NULL;
}

/* The addresses of a To:/Cc:/Bcc: value: "Name <a@b>, c@d (comment)". */
static void
sm_header_addrs(const char *v, size_t len, const char *origin, char ***out,
                size_t *n)
{
    struct buf *cur = buf_new(256, BUF_NOCAP), *angle = NULL;
    int q = 0, depth = 0;

    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? v[i] : ',';

        if (q) {
            if (c == '"')
                q = 0;
            else if (c == '\\' && i + 1 < len)
                buf_putc(cur, v[++i]);
            else
                buf_putc(cur, c);
            continue;
        }
        if (depth > 0) { /* a (comment) */
            depth += c == '(' ? 1 : c == ')' ? -1 : 0;
            continue;
        }
        if (c == '(') {
            depth = 1;
        } else if (c == '"') {
            q = 1;
        } else if (c == '<') {
            buf_free(angle);
            angle = buf_new(128, BUF_NOCAP);
        } else if (c == '>' && angle) {
            buf_reset(cur);
            buf_append(cur, buf_data(angle), buf_len(angle));
            buf_free(angle);
            angle = NULL;
            buf_putc(cur, '\001'); /* an address in <>: the name is gone */
        } else if (c == ',' || c == ';') {
            const char *a = buf_data(cur);
            size_t al = buf_len(cur);

            if (al > 0 && a[al - 1] == '\001')
                al--;
            if (memchr(a, ':', al) != NULL) /* "group: a, b;" */
                al = 0;
            if (al > 0 && strspn(a, " \t") < al && memchr(a, ' ', al) == NULL)
                sm_add(out, n, sm_qualify(a, al, origin));
            buf_reset(cur);
        } else if (angle) {
            buf_putc(angle, c);
        } else if (!(isspace((unsigned char) c) && buf_len(cur) == 0)) {
            buf_putc(cur, c);
        }
    }
    buf_free(angle);
    buf_free(cur);
}

/* Options with a value: -f x or -fx. */
static const char *
sm_optval(int argc, char **argv, int *i)
{
    if (argv[*i][2] != '\0')
        return argv[*i] + 2;
    if (*i + 1 >= argc)
        sm_die(EX_USAGE_, "option %s requires a value", argv[*i]);
    return argv[++*i];
}

int
sendmail_main(int argc, char **argv, const char *confdir,
              int (*other)(const char *what))
{
    struct cf_service *svcs = NULL;
    size_t nsvcs = 0, nrcpt = 0, nok = 0;
    struct buf *err = NULL;
    struct cf *cf;
    char *cdir = NULL;
    const char *sender = NULL, *fullname = NULL, *origin, *myhost;
    int extract = 0, dots = 1, i, rc = 0, code;
    char **rcpts = NULL, *from;
    struct buf *msg, *head, *body;
    char host[256], port[32];
    long long limit;
    struct passwd *pw = getpwuid(getuid());
    struct sm s;

    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        switch (a[1]) {
        case 't':
            extract = 1;
            break;
        case 'i':
            dots = 0;
            break;
        case 'f':
        case 'r':
            sender = sm_optval(argc, argv, &i);
            break;
        case 'F':
            fullname = sm_optval(argc, argv, &i);
            break;
        case 'o':
            if (a[2] == 'i')
                dots = 0;
            else if (a[2] == '\0')
                i++; /* -o x: an option of Sendmail's, not ours */
            break;
        case 'b':
            if (a[2] == 'p')
                return free(cdir), other("mailq");
            if (a[2] == 'i')
                return free(cdir), other("newaliases");
            if (a[2] == 'm' || a[2] == '\0')
                break;
            sm_die(EX_USAGE_, "unsupported: -%s", a + 1);
        case 'I':
            return free(cdir), other("newaliases");
        case 'q':
            return free(cdir), other("flush");
        case 'C': /* main.cf, or its directory */
            free(cdir);
            cdir = xstrdup(sm_optval(argc, argv, &i));
            if (strlen(cdir) > 8
                && strcmp(cdir + strlen(cdir) - 8, "/main.cf") == 0)
                cdir[strlen(cdir) - 8] = '\0';
            confdir = cdir;
            break;
        case 'B':
        case 'L':
        case 'N':
        case 'O':
        case 'R':
        case 'V':
            (void) sm_optval(argc, argv, &i); /* accepted, not used */
            break;
        case 'G':
        case 'U':
        case 'v':
        case 'm':
        case 'n':
        case 'X':
            break;
        default:
            sm_die(EX_USAGE_, "unknown option: %s", a);
        }
    }
    err = buf_new(256, 8192);
    if ((cf = cf_load(confdir, &svcs, &nsvcs, err)) == NULL)
        sm_die(EX_TEMPFAIL_, "%s", buf_data(err));
    origin = cf_str(cf, "myorigin");
    myhost = cf_str(cf, "myhostname");
    if (*myhost == '\0')
        myhost = "localhost";
    if (*origin == '\0')
        origin = myhost;
    for (; i < argc; i++) /* "a@b, c@d" works too */
        sm_header_addrs(argv[i], strlen(argv[i]), origin, &rcpts, &nrcpt);
    if (sender == NULL)
        sender = pw ? pw->pw_name : "nobody";
    from = *sender ? sm_qualify(sender, strlen(sender), origin) : xstrdup("");
    if (fullname == NULL && pw && pw->pw_gecos && *pw->pw_gecos)
        fullname = pw->pw_gecos;
    limit = cf_size(cf, "message_size_limit");

    /* the message: header and body, CRLF lines, dot handling */
    msg = buf_new(65536, BUF_NOCAP);
    {
        /* standard input, bounded: message_size_limit (with room for
         * CRLF line ends), or 1 GB when there is none */
        size_t cap = limit > 0 ? (size_t) limit : (size_t) 1 << 30;
        struct buf *raw = buf_new(65536, BUF_NOCAP);
        char chunk[65536];
        size_t got;
        const char *p, *end;

        while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
            buf_append(raw, chunk, got);
            if (buf_len(raw) > cap)
                sm_die(EX_DATAERR_,
                       "message is larger than "
                       "message_size_limit (%lld bytes)",
                       limit);
        }
        if (ferror(stdin))
            sm_die(EX_TEMPFAIL_, "cannot read the message: %s",
                   strerror(errno));
        p = buf_data(raw);
        end = p + buf_len(raw);
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t) (end - p));
            size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
            const char *next = nl ? nl + 1 : end;

            while (n > 0 && p[n - 1] == '\r')
                n--;
            if (dots && n == 1 && p[0] == '.')
                break;
            buf_append(msg, p, n);
            buf_puts(msg, "\r\n");
            p = next;
        }
        buf_free(raw);
        if (limit > 0 && (long long) buf_len(msg) > limit)
            sm_die(EX_DATAERR_,
                   "message is larger than message_size_limit "
                   "(%lld bytes)",
                   limit);
    }
    head = buf_new(4096, BUF_NOCAP);
    body = buf_new(4096, BUF_NOCAP);
    {
        const char *p = buf_data(msg), *end = p + buf_len(msg);
        int seen_from = 0, seen_date = 0, seen_mid = 0, in_bcc = 0, inhead = 1;

        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t) (end - p));
            size_t len = (size_t) (nl - p) + 1, l = len - 2;
            int cont = *p == ' ' || *p == '\t';

            if (inhead && l == 0) { /* the blank line */
                inhead = 0;
                p += len;
                break;
            }
            if (inhead && !cont
                && (memchr(p, ':', l) == NULL
                    || memchr(p, ' ',
                              (size_t) ((char *) memchr(p, ':', l) - p))))
                inhead = 0; /* not a header line: the body starts here */
            if (!inhead)
                break;
            if (!cont) {
                size_t nl2 = (size_t) ((char *) memchr(p, ':', l) - p);

                in_bcc = nl2 == 3 && strncasecmp(p, "Bcc", 3) == 0;
                seen_from |= nl2 == 4 && strncasecmp(p, "From", 4) == 0;
                seen_date |= nl2 == 4 && strncasecmp(p, "Date", 4) == 0;
                seen_mid |= nl2 == 10 && strncasecmp(p, "Message-ID", 10) == 0;
                if (extract
                    && ((nl2 == 2 && strncasecmp(p, "To", 2) == 0)
                        || (nl2 == 2 && strncasecmp(p, "Cc", 2) == 0)
                        || in_bcc)) {
                    /* the value with its continuation lines */
                    const char *e = p + len;

                    while (e < end && (*e == ' ' || *e == '\t')) {
                        const char *n2 = memchr(e, '\n', (size_t) (end - e));

                        e = n2 + 1;
                    }
                    sm_header_addrs(p + nl2 + 1, (size_t) (e - p - nl2 - 1),
                                    origin, &rcpts, &nrcpt);
                }
            }
            if (!in_bcc)
                buf_append(head, p, len);
            p += len;
        }
        buf_append(body, p, (size_t) (end - p));
        {
            struct buf *top = buf_new(1024, BUF_NOCAP);
            char date[64];
            time_t now = time(NULL);
            struct tm tm;
            struct timeval tv;

            gettimeofday(&tv, NULL);
            localtime_r(&now, &tm);
            strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z (%Z)", &tm);
            buf_printf(top,
                       "Received: by %s (Sluice, from userid %ld);\r\n"
                       "\t%s\r\n",
                       myhost, (long) getuid(), date);
            if (!seen_from) {
                if (fullname && *fullname
                    && strpbrk(fullname, "\"\\\r\n") == NULL)
                    buf_printf(top, "From: \"%s\" <%s>\r\n", fullname,
                               *from ? from : "MAILER-DAEMON");
                else
                    buf_printf(top, "From: %s\r\n",
                               *from ? from : "MAILER-DAEMON");
            }
            buf_append(top, buf_data(head), buf_len(head));
            if (!seen_date)
                buf_printf(top, "Date: %s\r\n", date);
            if (!seen_mid)
                buf_printf(top, "Message-Id: <%lld%06ld.%ld@%s>\r\n",
                           (long long) tv.tv_sec, (long) tv.tv_usec,
                           (long) getpid(), myhost);
            buf_free(head);
            head = top;
        }
    }
    if (nrcpt == 0)
        sm_die(EX_USAGE_, "no recipients specified");

    /* hand it to the daemon */
    if (sm_service(svcs, nsvcs, host, sizeof(host), port, sizeof(port)) < 0)
        sm_die(EX_TEMPFAIL_, "master.cf has no smtpd service without "
                             "wrapper-mode or required TLS to submit to");
    memset(&s, 0, sizeof(s));
    s.reply = buf_new(256, 65536);
    if ((s.fd = sm_connect(host, port)) < 0)
        sm_die(EX_TEMPFAIL_,
               "cannot connect to the Sluice SMTP service at "
               "%s port %s: %s (is sluiced running?); the "
               "message is not queued",
               host, port, strerror(errno));
    code = sm_reply(&s);
    if (code != 220)
        goto smtp_fail;
    if ((code = sm_cmd(&s, "EHLO %s", myhost)) != 250)
        goto smtp_fail;
    if ((code = sm_cmd(&s, "MAIL FROM:<%s>", from)) != 250)
        goto smtp_fail;
    for (size_t k = 0; k < nrcpt; k++) {
        code = sm_cmd(&s, "RCPT TO:<%s>", rcpts[k]);
        if (code == 250 || code == 251) {
            nok++;
            continue;
        }
        if (code < 0)
            goto smtp_fail;
        fprintf(stderr, "sendmail: %s: %s\n", rcpts[k], buf_data(s.reply));
        rc =
            code >= 500 ? (rc == EX_TEMPFAIL_ ? rc : EX_NOUSER_) : EX_TEMPFAIL_;
    }
    if (nok == 0) {
        sm_cmd(&s, "QUIT");
        close(s.fd);
        if (rc == 0)
            rc = EX_UNAVAIL_;
        goto out;
    }
    if ((code = sm_cmd(&s, "DATA")) != 354)
        goto smtp_fail;
    {
        /* dot-stuffed, head and body */
        struct buf *out =
            buf_new(buf_len(head) + buf_len(body) + 1024, BUF_NOCAP);
        const struct buf *parts[2] = {head, body};

        for (int k = 0; k < 2; k++) {
            const char *p = buf_data(parts[k]), *end = p + buf_len(parts[k]);

            if (k == 1)
                buf_puts(out, "\r\n");
            while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = (size_t) (nl - p) + 1;

                if (*p == '.')
                    buf_putc(out, '.');
                buf_append(out, p, len);
                p += len;
            }
        }
        buf_puts(out, ".\r\n");
        if (sm_write(&s, buf_data(out), buf_len(out)) < 0)
            code = -1;
        else
            code = sm_reply(&s);
        buf_free(out);
    }
    if (code != 250)
        goto smtp_fail;
    sm_cmd(&s, "QUIT");
    close(s.fd);
out:
    buf_free(s.reply);
    buf_free(msg);
    buf_free(head);
    buf_free(body);
    for (size_t k = 0; k < nrcpt; k++)
        free(rcpts[k]);
    free(rcpts);
    free(from);
    cf_services_free(svcs, nsvcs);
    cf_free(cf);
    buf_free(err);
    free(cdir);
    return rc;
smtp_fail:
    if (code < 0)
        sm_die(EX_TEMPFAIL_,
               "lost connection with the Sluice SMTP service "
               "at %s port %s; the message is not queued",
               host, port);
    sm_die(code >= 500 ? EX_UNAVAIL_ : EX_TEMPFAIL_,
           "the Sluice SMTP service refused the message: %s",
           buf_data(s.reply));
}
