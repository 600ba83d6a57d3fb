/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * net.c - socket address helpers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/net.h"

char *
net_ntop(const struct sockaddr *sa, char *out, size_t n, int *port)
{
    const struct sockaddr_in6 *s6;
    const struct sockaddr_in *s4;

    snprintf(out, n, "unknown");
    if (port)
        *port = 0;
    if (sa == NULL)
        return out;
    if (sa->sa_family == AF_INET) {
        s4 = (const struct sockaddr_in *) sa;
        inet_ntop(AF_INET, &s4->sin_addr, out, (socklen_t) n);
        if (port)
            *port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        s6 = (const struct sockaddr_in6 *) sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, (socklen_t) n);
        else
            inet_ntop(AF_INET6, &s6->sin6_addr, out, (socklen_t) n);
        if (port)
            *port = ntohs(s6->sin6_port);
    }
    return out;
}

int
net_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

int
net_listen(const char *host, const char *port, int family)
{
    struct addrinfo hints, *res = NULL;
    int fd = -1, on = 1, e;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
        errno = EINVAL;
        return -1;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        goto fail;
    if (listen(fd, 1024) < 0 || net_nonblock(fd) < 0)
        goto fail;
    freeaddrinfo(res);
    return fd;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    errno = e;
    return -1;
}

void
net_nodelay(int fd)
{
    int on = 1;

    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

void
net_quickack(int fd)
{
    int on = 1;

    (void) setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
}

int
net_connect(const struct sockaddr *sa, socklen_t len)
{
    return net_connect_from(sa, len, NULL, 0, NULL);
}

int
net_connect_from(const struct sockaddr *sa, socklen_t len,
                 const struct sockaddr *from, socklen_t flen, int *bind_err)
{
    int fd =
        socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (bind_err)
        *bind_err = 0;
    if (fd < 0)
        return -1;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        net_nodelay(fd);
    if (from && bind(fd, from, flen) < 0 && bind_err)
        *bind_err = errno;
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int
net_addr_parse(const char *text, int af, struct sockaddr_storage *ss,
               socklen_t *len)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
    char tmp[NET_ADDR_MAX];
    size_t n = strlen(text);

    if (af == AF_INET6 && n >= 2 && text[0] == '[' && text[n - 1] == ']') {
        text++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, text, n);
    tmp[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (af == AF_INET && inet_pton(AF_INET, tmp, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        *len = sizeof(*s4);
        return 0;
    }
    if (af == AF_INET6 && inet_pton(AF_INET6, tmp, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        *len = sizeof(*s6);
        return 0;
    }
    return -1;
}

int
net_split_hostport(char *s, char **host, char **port)
{
    char *p;

    *port = NULL;
    if (*s == '[') {
        if ((p = strchr(s, ']')) == NULL)
            return -1;
        *p++ = '\0';
        *host = s + 1;
        if (*p == ':')
            *port = p + 1;
        else if (*p != '\0')
            return -1;
        return 0;
    }
    if ((p = strrchr(s, ':')) != NULL) {
        if (strchr(s, ':') != p) /* bare IPv6: no port */
            p = NULL;
    }
    if (p) {
        *p = '\0';
        *port = p + 1;
    }
    *host = s;
    return 0;
}
