/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ioshim.c - an LD_PRELOAD library for the system tests: it slows or
 * fails chosen file system calls of sluiced, so that a test can show
 * which thread makes them and what happens when they fail.
 *   IOSHIM_FSTATAT_US=N     fstatat(dirfd, ID, st, 0) on a name of 14
 *                           hex digits (a queue file) sleeps N us first
 *   IOSHIM_NOWAIT_EAGAIN=1  preadv2() with RWF_NOWAIT fails with EAGAIN
 *                           (the data is not in the page cache)
 *   IOSHIM_READDIR_US=N     readdir() sleeps N us before returning the
 *                           entry of a queue file, in threads whose name
 *                           begins with IOSHIM_READDIR_COMM (all if unset)
 *   IOSHIM_FSYNC_US=N       fsync() of a regular file of at least
 *                           IOSHIM_FSYNC_MIN bytes (0 if unset) sleeps N
 *                           us first (directories are not slowed)
 *   IOSHIM_HOSTS=NAME=A,B   getaddrinfo() of NAME gives the numeric
 *                           addresses A, B... in that order (a next hop
 *                           with several addresses, on loopback); more
 *                           names separated by ';' (NAME=A;NAME2=B)
 *   IOSHIM_PTR=ADDR=NAME    getnameinfo() of the numeric address ADDR
 *                           with NI_NAMEREQD gives the host NAME, or
 *                           fails with EAI_NONAME (NAME "!none") or
 *                           EAI_AGAIN ("!again"); entries separated by
 *                           ';' (127.0.0.1=a.test;::1=!none)
 * Built by the test that uses it (cc -shared -fPIC ioshim.c -ldl).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int
ioshim_queue_name(const char *s)
{
    size_t i;

    for (i = 0; i < 14; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return s[14] == '\0';
}

static void
ioshim_delay(const char *name, int flags)
{
    const char *v = getenv("IOSHIM_FSTATAT_US");

    if (v != NULL && flags == 0 && name != NULL && ioshim_queue_name(name))
        usleep((useconds_t) atol(v));
}

typedef int (*fstatat_fn)(int, const char *, struct stat *, int);
typedef ssize_t (*preadv2_fn)(int, const struct iovec *, int, off_t, int);

int
fstatat(int fd, const char *name, struct stat *st, int flags)
{
    static fstatat_fn next;

    if (next == NULL)
        next = (fstatat_fn) dlsym(RTLD_NEXT, "fstatat");
    ioshim_delay(name, flags);
    return next(fd, name, st, flags);
}

typedef int (*fstatat64_fn)(int, const char *, struct stat64 *, int);

int
fstatat64(int fd, const char *name, struct stat64 *st, int flags)
{
    static fstatat64_fn next;

    if (next == NULL)
        next = (fstatat64_fn) dlsym(RTLD_NEXT, "fstatat64");
    ioshim_delay(name, flags);
    return next(fd, name, st, flags);
}

static ssize_t
ioshim_preadv2(const char *sym, preadv2_fn *next, int fd,
               const struct iovec *iov, int n, off_t off, int flags)
{
    const char *v = getenv("IOSHIM_NOWAIT_EAGAIN");

    if (*next == NULL)
        *next = (preadv2_fn) dlsym(RTLD_NEXT, sym);
    if (v != NULL && *v == '1' && (flags & RWF_NOWAIT)) {
        errno = EAGAIN;
        return -1;
    }
    return (*next)(fd, iov, n, off, flags);
}

ssize_t
preadv2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    static preadv2_fn next;

    return ioshim_preadv2("preadv2", &next, fd, iov, n, off, flags);
}

ssize_t
preadv64v2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    static preadv2_fn next;

    return ioshim_preadv2("preadv64v2", &next, fd, iov, n, off, flags);
}

static void
ioshim_readdir_delay(const char *name)
{
    const char *v = getenv("IOSHIM_READDIR_US");
    const char *comm = getenv("IOSHIM_READDIR_COMM");
    char me[17] = "";

    if (v == NULL || !ioshim_queue_name(name))
        return;
    if (comm != NULL
        && (prctl(PR_GET_NAME, me) != 0
            || strncmp(me, comm, strlen(comm)) != 0))
        return;
    usleep((useconds_t) atol(v));
}

typedef struct dirent *(*readdir_fn)(DIR *);
typedef struct dirent64 *(*readdir64_fn)(DIR *);

struct dirent *
readdir(DIR *d)
{
    static readdir_fn next;
    struct dirent *de;

    if (next == NULL)
        next = (readdir_fn) dlsym(RTLD_NEXT, "readdir");
    if ((de = next(d)) != NULL)
        ioshim_readdir_delay(de->d_name);
    return de;
}

struct dirent64 *
readdir64(DIR *d)
{
    static readdir64_fn next;
    struct dirent64 *de;

    if (next == NULL)
        next = (readdir64_fn) dlsym(RTLD_NEXT, "readdir64");
    if ((de = next(d)) != NULL)
        ioshim_readdir_delay(de->d_name);
    return de;
}

typedef int (*fsync_fn)(int);

int
fsync(int fd)
{
    static fsync_fn next;
    const char *v = getenv("IOSHIM_FSYNC_US");
    const char *min = getenv("IOSHIM_FSYNC_MIN");
    struct stat st;

    if (next == NULL)
        next = (fsync_fn) dlsym(RTLD_NEXT, "fsync");
    if (v != NULL && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
        && st.st_size >= (min ? atol(min) : 0))
        usleep((useconds_t) atol(v));
    return next(fd);
}

typedef int (*getaddrinfo_fn)(const char *, const char *,
                              const struct addrinfo *, struct addrinfo **);

/* The value of KEY in "KEY=VALUE;KEY2=VALUE2" (env var var): a pointer to
 * it and its length in *len, or NULL. */
static const char *
ioshim_entry(const char *var, const char *key, size_t *len)
{
    const char *v = getenv(var);
    size_t kl = strlen(key);

    while (v && *v) {
        size_t n = strcspn(v, ";");
        const char *eq = memchr(v, '=', n);

        if (eq && (size_t) (eq - v) == kl && strncmp(v, key, kl) == 0) {
            *len = n - kl - 1;
            return eq + 1;
        }
        v += n + (v[n] == ';');
    }
    return NULL;
}

int
getaddrinfo(const char *node, const char *service,
            const struct addrinfo *hints, struct addrinfo **res)
{
    static getaddrinfo_fn next;
    const char *v, *end;
    struct addrinfo h, *head = NULL, **tail = &head, *one;
    char addr[64];
    size_t n, len;

    if (next == NULL)
        next = (getaddrinfo_fn) dlsym(RTLD_NEXT, "getaddrinfo");
    if (node == NULL || (v = ioshim_entry("IOSHIM_HOSTS", node, &len)) == NULL)
        return next(node, service, hints, res);
    end = v + len;
    memset(&h, 0, sizeof(h));
    if (hints)
        h = *hints;
    h.ai_family = AF_UNSPEC;
    h.ai_flags |= AI_NUMERICHOST;
    for (; v < end; v += n + (v[n] == ',')) {
        n = strcspn(v, ",;");
        snprintf(addr, sizeof(addr), "%.*s", (int) n, v);
        if (next(addr, service, &h, &one) != 0)
            continue;
        *tail = one; /* glibc's freeaddrinfo frees node by node */
        while (*tail)
            tail = &(*tail)->ai_next;
    }
    if (head == NULL)
        return EAI_NONAME;
    *res = head;
    return 0;
}

typedef int (*getnameinfo_fn)(const struct sockaddr *, socklen_t, char *,
                              socklen_t, char *, socklen_t, int);

int
getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host,
            socklen_t hostlen, char *serv, socklen_t servlen, int flags)
{
    static getnameinfo_fn next;
    char addr[64];
    const char *v;
    size_t len;

    if (next == NULL)
        next = (getnameinfo_fn) dlsym(RTLD_NEXT, "getnameinfo");
    if (host == NULL || !(flags & NI_NAMEREQD)
        || next(sa, salen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) != 0
        || (v = ioshim_entry("IOSHIM_PTR", addr, &len)) == NULL)
        return next(sa, salen, host, hostlen, serv, servlen, flags);
    if (len == 5 && strncmp(v, "!none", 5) == 0)
        return EAI_NONAME;
    if (len == 6 && strncmp(v, "!again", 6) == 0)
        return EAI_AGAIN;
    if (len >= hostlen)
        return EAI_OVERFLOW;
    memcpy(host, v, len);
    host[len] = '\0';
    return 0;
}
