#include "net/sock_ops.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

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

// The address tuple the socket module gives for an AF_INET/AF_INET6 sockaddr (with
// a link-local IPv6 address's "%scope" as socket.recvfrom writes it).
char* read_scratch() {
    alignas(64) static char scratch[kReadScratch];
    return scratch;
}

// The last addresses datagrams came from, each with the tuple made for it: a peer that
// sends again gets the same tuple (tuples are immutable: only `is` tells it from a new
// equal one), and a reply sent to that tuple is looked up by identity, not parsed
// (inet_pton). Used with the GIL held.
namespace {
struct KnownAddress {
    struct sockaddr_in6 key;  // the sockaddr, zero-padded (an AF_INET one fits)
    PyObject* tuple;
};
constexpr int kKnownAddresses = 16;
KnownAddress g_known[kKnownAddresses];
int g_known_next = 0;

bool address_key(const struct sockaddr_storage& ss, struct sockaddr_in6* key) {
    std::memset(key, 0, sizeof *key);
    if (ss.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const struct sockaddr_in*>(&ss);
        auto* k = reinterpret_cast<struct sockaddr_in*>(key);
        k->sin_family = AF_INET;
        k->sin_port = in->sin_port;
        k->sin_addr = in->sin_addr;
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        std::memcpy(key, &ss, sizeof *key);
        return true;
    }
    return false;
}

PyObject* make_inet_address(const struct sockaddr_storage& ss);
}  // namespace

PyObject* inet_address(const struct sockaddr_storage& ss) {
    struct sockaddr_in6 key;
    if (!address_key(ss, &key)) return make_inet_address(ss);
    for (auto& k : g_known)
        if (k.tuple && std::memcmp(&k.key, &key, sizeof key) == 0) return Py_NewRef(k.tuple);
    PyObject* t = make_inet_address(ss);
    if (t && PyTuple_CheckExact(t)) {
        KnownAddress& slot = g_known[g_known_next];
        g_known_next = (g_known_next + 1) % kKnownAddresses;
        slot.key = key;
        Py_XSETREF(slot.tuple, Py_NewRef(t));
    }
    return t;
}

namespace {
PyObject* make_inet_address(const struct sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) {
        // inet_ntop formats with sprintf: this is a tenth of its cost.
        auto* in = reinterpret_cast<const struct sockaddr_in*>(&ss);
        const auto* b = reinterpret_cast<const unsigned char*>(&in->sin_addr);
        char host[16];
        char* p = host;
        for (int i = 0; i < 4; i++) {
            unsigned v = b[i];
            if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
            if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
            *p++ = static_cast<char>('0' + v % 10);
            if (i < 3) *p++ = '.';
        }
        PyObject* h = PyUnicode_FromStringAndSize(host, p - host);
        if (!h) return nullptr;
        PyObject* port = PyLong_FromLong(ntohs(in->sin_port));
        if (!port) {
            Py_DECREF(h);
            return nullptr;
        }
        PyObject* t = PyTuple_New(2);
        if (!t) {
            Py_DECREF(h);
            Py_DECREF(port);
            return nullptr;
        }
        PyTuple_SET_ITEM(t, 0, h);
        PyTuple_SET_ITEM(t, 1, port);
        return t;
    }
    if (ss.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(&ss);
        if (in6->sin6_scope_id) {
            char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 1];
            inet_ntop(AF_INET6, &in6->sin6_addr, host, INET6_ADDRSTRLEN);
            char name[IF_NAMESIZE];
            size_t len = strlen(host);
            if (if_indextoname(in6->sin6_scope_id, name)) snprintf(host + len, sizeof host - len, "%%%s", name);
            else snprintf(host + len, sizeof host - len, "%%%u", static_cast<unsigned>(in6->sin6_scope_id));
            return Py_BuildValue("(siII)", host, static_cast<int>(ntohs(in6->sin6_port)),
                                 static_cast<unsigned>(ntohl(in6->sin6_flowinfo)),
                                 static_cast<unsigned>(in6->sin6_scope_id));
        }
    }
    return sockaddr_to_tuple(reinterpret_cast<const struct sockaddr*>(&ss));
}
}  // namespace

// A numeric (host, port[, flowinfo, scope_id]) tuple as a sockaddr: 1; 0 when it is
// anything else (a name to resolve, odd types): the Python half then decides.
int parse_inet_address(int family, PyObject* addr, struct sockaddr_storage* ss, socklen_t* len) {
    if (!PyTuple_CheckExact(addr)) return 0;
    for (auto& k : g_known) {
        if (k.tuple == addr && k.key.sin6_family == family) {
            std::memset(ss, 0, sizeof *ss);
            *len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
            std::memcpy(ss, &k.key, *len);
            return 1;
        }
    }
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    if (n < 2 || n > (family == AF_INET6 ? 4 : 2)) return 0;
    PyObject* host = PyTuple_GET_ITEM(addr, 0);
    PyObject* port = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_CheckExact(host) || !PyLong_CheckExact(port)) return 0;
    const char* h = PyUnicode_AsUTF8(host);
    if (!h) {
        PyErr_Clear();
        return 0;
    }
    long p = PyLong_AsLong(port);
    if (p < 0 || p > 65535) {
        PyErr_Clear();
        return 0;
    }
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        auto* in = reinterpret_cast<struct sockaddr_in*>(ss);
        if (inet_pton(AF_INET, h, &in->sin_addr) != 1) return 0;
        in->sin_family = AF_INET;
        in->sin_port = htons(static_cast<uint16_t>(p));
        *len = sizeof *in;
        return 1;
    }
    auto* in6 = reinterpret_cast<struct sockaddr_in6*>(ss);
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) != 1) return 0;  // "%scope" names too
    unsigned long extra[2] = {0, 0};
    for (Py_ssize_t i = 2; i < n; i++) {
        PyObject* v = PyTuple_GET_ITEM(addr, i);
        if (!PyLong_CheckExact(v)) return 0;
        extra[i - 2] = PyLong_AsUnsignedLong(v);
        if (PyErr_Occurred() || extra[i - 2] > 0xffffffffUL || (i == 2 && extra[0] > 0xfffff)) {
            PyErr_Clear();
            return 0;
        }
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(p));
    in6->sin6_flowinfo = htonl(static_cast<uint32_t>(extra[0]));
    in6->sin6_scope_id = static_cast<uint32_t>(extra[1]);
    *len = sizeof *in6;
    return 1;
}

}  // namespace pyloop
