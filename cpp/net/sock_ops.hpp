// System calls the Python face would otherwise make through the os module on the
// loop's thread (os.stat, os.unlink, os.fstat, os.sendfile), and the address
// conversions the sock_* and datagram paths share. Blocking-call detectors
// (blockbuster) allow them only from asyncio's own modules; made here, a test suite
// that passes on asyncio passes on pyloop too. Each returns -1 with errno set.
#pragma once
#include "uv/pyutil.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>

namespace pyloop {

// Removes the socket file a former server left at path; 0 when there is none
// (missing, or not a socket), 1 when it was removed.
int remove_stale_socket_file(const char* path);
// The inode of path, or 0 when it does not exist.
int64_t path_inode(const char* path, uint64_t* inode);
// Unlinks path if it is still the file with that inode: 1 removed, 0 not.
int unlink_if_inode(const char* path, uint64_t inode);
// fstat(2)'s st_size of an open file.
int64_t file_size(int fd);
// sendfile(2) from in_fd at offset to out_fd, at most count bytes.
ssize_t send_file(int out_fd, int in_fd, int64_t offset, size_t count);

// The address tuple the socket module gives for an IPv4/IPv6 sockaddr: (host, port) or
// (host, port, flowinfo, scope_id). Returns a new reference or nullptr.
PyObject* sockaddr_to_tuple(const struct sockaddr* sa);
// The same for an AF_INET/AF_INET6 address as socket.recvfrom gives it (a link-local
// IPv6 host with its "%scope"), made without sprintf. Returns a new reference or nullptr.
PyObject* inet_address(const struct sockaddr_storage& ss);
// A numeric (host, port[, flowinfo, scope_id]) tuple of `family` as a sockaddr: 1; 0
// when it is anything else (a name to resolve, odd types): the socket module decides.
int parse_inet_address(int family, PyObject* addr, struct sockaddr_storage* ss, socklen_t* len);

// The one buffer the loop thread reads into before copying what came into a bytes
// object of its size: stream reads (but a BufferedProtocol's), datagrams, sock_recv and
// sock_recvfrom. Memory that stays in place: a bytes made for each read was heap memory
// glibc may have handed back, which the kernel's copy then faulted in page by page.
// Used with the GIL held, and free again before any Python code runs.
constexpr size_t kReadScratch = 256 * 1024;
char* read_scratch();

}  // namespace pyloop

