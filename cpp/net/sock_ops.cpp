#include "net/sock_ops.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace pyloop {

int remove_stale_socket_file(const char* path) {
    struct stat st;
    if (stat(path, &st) < 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) return 0;
    if (unlink(path) < 0) return errno == ENOENT ? 0 : -1;
    return 1;
}

int64_t path_inode(const char* path, uint64_t* inode) {
    struct stat st;
    if (stat(path, &st) < 0) {
        if (errno != ENOENT) return -1;
        *inode = 0;
        return 0;
    }
    *inode = static_cast<uint64_t>(st.st_ino);
    return 0;
}

int unlink_if_inode(const char* path, uint64_t inode) {
    struct stat st;
    if (stat(path, &st) < 0) return errno == ENOENT ? 0 : -1;
    if (static_cast<uint64_t>(st.st_ino) != inode) return 0;
    if (unlink(path) < 0) return errno == ENOENT ? 0 : -1;
    return 1;
}

int64_t file_size(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    return static_cast<int64_t>(st.st_size);
}

ssize_t send_file(int out_fd, int in_fd, int64_t offset, size_t count) {
    off_t off = static_cast<off_t>(offset);
    return sendfile(out_fd, in_fd, &off, count);
}

// The sockaddr tuple socket.getaddrinfo gives: (host, port) for IPv4, (host, port,
// flowinfo, scope_id) for IPv6. Returns a new reference or nullptr.
PyObject* sockaddr_to_tuple(const struct sockaddr* sa) {
    char buf[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        auto* in = reinterpret_cast<const struct sockaddr_in*>(sa);
        inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
        return Py_BuildValue("(si)", buf, static_cast<int>(ntohs(in->sin_port)));
    }
    if (sa->sa_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
        return Py_BuildValue("(siII)", buf, static_cast<int>(ntohs(in6->sin6_port)),
                             static_cast<unsigned>(ntohl(in6->sin6_flowinfo)),
                             static_cast<unsigned>(in6->sin6_scope_id));
    }
    return Py_BuildValue("(iy#)", static_cast<int>(sa->sa_family), sa->sa_data,
                         static_cast<Py_ssize_t>(sizeof sa->sa_data));
}

}  // namespace pyloop
