/* The floor for the echo benchmark: an echo server in C over epoll, one thread, what an
 * event loop would cost if it cost nothing. Same contract as echo_server.py: prints
 * "ready <port>" once listening on 127.0.0.1 (TCP, PORT 0 for any) or on a Unix
 * socket path, and serves until its stdin closes.
 *
 *   echo_floor tcp PORT | unix PATH
 */
#define _GNU_SOURCE /* accept4 (GCC 14+ refuses implicit declarations) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUF (256 * 1024)

struct conn {
    int fd;
    char* pending; /* what the kernel did not take yet */
    size_t len, off;
};

static char buf[BUF];

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static int listen_on(const char* kind, const char* addr, int* port) {
    int fd;
    if (strcmp(kind, "unix") == 0) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        strncpy(sa.sun_path, addr, sizeof sa.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr*)&sa, sizeof sa) < 0) return -1;
        *port = 0;
    } else {
        struct sockaddr_in sa;
        socklen_t sl = sizeof sa;
        int one = 1;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((unsigned short)atoi(addr));
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return -1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr*)&sa, sizeof sa) < 0) return -1;
        getsockname(fd, (struct sockaddr*)&sa, &sl);
        *port = ntohs(sa.sin_port);
    }
    if (listen(fd, 128) < 0) return -1;
    set_nonblocking(fd);
    return fd;
}

static void drop(int ep, struct conn* c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Sends what is pending; 1 when all of it went, 0 when the kernel is full, -1 on error. */
static int flush(struct conn* c) {
    while (c->off < c->len) {
        ssize_t n = write(c->fd, c->pending + c->off, c->len - c->off);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->len = c->off = 0;
    return 1;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: echo_floor tcp PORT | unix PATH\n");
        return 2;
    }
    int port, lfd = listen_on(argv[1], argv[2], &port);
    if (lfd < 0) {
        perror("listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct conn stdin_marker;
    ev.data.ptr = &stdin_marker;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    printf("ready %d\n", port);
    fflush(stdout);
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(ep, events, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            struct conn* c = events[i].data.ptr;
            if (c == &stdin_marker) return 0; /* the harness closed our stdin */
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    int one = 1;
                    if (strcmp(argv[1], "tcp") == 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                int r = flush(c);
                if (r < 0) {
                    drop(ep, c);
                    continue;
                }
                if (r == 1) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                }
                continue;
            }
            ssize_t got = read(c->fd, buf, BUF);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                drop(ep, c);
                continue;
            }
            ssize_t sent = write(c->fd, buf, (size_t)got);
            if (sent < 0) {
                if (errno != EAGAIN) {
                    drop(ep, c);
                    continue;
                }
                sent = 0;
            }
            if (sent < got) { /* keep the rest; wait until the socket takes more */
                c->len = (size_t)(got - sent);
                c->off = 0;
                c->pending = malloc(c->len);
                memcpy(c->pending, buf + sent, c->len);
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
}
