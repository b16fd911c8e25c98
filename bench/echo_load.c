/* pyloop's echo load generator: N connections, each sends a SIZE-byte message and
 * waits for all of it to come back, again and again, for SECONDS. Prints
 * "<requests> <elapsed seconds>". Cheap on purpose: one thread, poll(2).
 * With udp, each "connection" is a connected UDP socket and a message one datagram
 * (sent again if its echo has not come back within RESEND seconds).
 *
 *   echo_load tcp HOST PORT | udp HOST PORT | unix PATH   CONNECTIONS SIZE SECONDS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t sent, received;
    double sent_at;
};

#define RESEND 0.2

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int connect_to(const char* kind, const char* a, const char* b) {
    int fd;
    if (strcmp(kind, "unix") == 0) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        strncpy(sa.sun_path, a, sizeof sa.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr*)&sa, sizeof sa) < 0) return -1;
    } else {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((unsigned short)atoi(b));
        inet_pton(AF_INET, a, &sa.sin_addr);
        int udp = strcmp(kind, "udp") == 0;
        fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr*)&sa, sizeof sa) < 0) return -1;
        int one = 1;
        if (!udp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

int main(int argc, char** argv) {
    int udp = argc == 7 && strcmp(argv[1], "udp") == 0;
    int tcp = udp || (argc == 7 && strcmp(argv[1], "tcp") == 0);
    int unx = argc == 6 && strcmp(argv[1], "unix") == 0;
    if (!tcp && !unx) {
        fprintf(stderr, "usage: echo_load tcp HOST PORT | udp HOST PORT | unix PATH  CONNECTIONS SIZE SECONDS\n");
        return 2;
    }
    int base = tcp ? 4 : 3;
    int nconn = atoi(argv[base]);
    size_t size = (size_t)atol(argv[base + 1]);
    double seconds = atof(argv[base + 2]);
    char* out = malloc(size);
    char* in = malloc(size);
    memset(out, 'x', size);
    struct conn* c = calloc((size_t)nconn, sizeof *c);
    struct pollfd* p = calloc((size_t)nconn, sizeof *p);
    for (int i = 0; i < nconn; i++) {
        c[i].fd = connect_to(argv[1], argv[2], tcp ? argv[3] : NULL);
        if (c[i].fd < 0) {
            perror("connect");
            return 1;
        }
    }
    long requests = 0;
    double start = now(), end = start + seconds;
    double t;
    while ((t = now()) < end) {
        for (int i = 0; i < nconn; i++) {
            if (udp && c[i].sent == size && t - c[i].sent_at > RESEND) c[i].sent = c[i].received = 0;  // lost
            p[i].fd = c[i].fd;
            p[i].events = POLLIN | (c[i].sent < size ? POLLOUT : 0);
        }
        if (poll(p, (nfds_t)nconn, udp ? 20 : 100) < 0 && errno != EINTR) {
            perror("poll");
            return 1;
        }
        for (int i = 0; i < nconn; i++) {
            struct conn* k = &c[i];
            if (p[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
                fprintf(stderr, "connection %d failed\n", i);
                return 1;
            }
            if ((p[i].revents & POLLOUT) && k->sent < size) {
                ssize_t n = send(k->fd, out + k->sent, size - k->sent, MSG_NOSIGNAL);
                if (n > 0) k->sent += (size_t)n;
                k->sent_at = t;
            }
            if (p[i].revents & POLLIN) {
                ssize_t n = recv(k->fd, in, size, 0);
                if (n == 0) {
                    fprintf(stderr, "connection %d closed by the server\n", i);
                    return 1;
                }
                if (n > 0) k->received += (size_t)n;
                if (udp && n > 0 && k->sent < size) k->received = 0;  // the echo of a datagram sent again
                if (k->received >= size) {
                    requests++;
                    k->sent = k->received = 0;
                }
            }
        }
    }
    printf("%ld %.6f\n", requests, now() - start);
    for (int i = 0; i < nconn; i++) close(c[i].fd);
    return 0;
}
