// The sock_* hot paths in C++ (cpp/net/sock_wait.cpp).
#pragma once
#include "uv/pyutil.hpp"

namespace pyloop {

// sock_recv, sock_recv_into, sock_sendall, and for AF_INET/AF_INET6 sockets
// sock_recvfrom, sock_recvfrom_into and sock_sendto. Each tries the system call at
// once and returns its result; when the kernel is not ready it returns a SockOp, an
// awaitable for the result, which waits on the loop's epoll with a one-shot
// registration kept between waits (FdWatchers::DirectFn); an await of it that ends
// otherwise (a cancelled task throws into it, a closed coroutine closes it) stops
// the wait. The datagram ones return NotImplemented for what the socket module must
// do (a host name to resolve, another family, odd arguments). Adds the module
// functions sock_setup, sock_recv, sock_recv_into, sock_sendall, sock_recvfrom,
// sock_recvfrom_into, sock_sendto and the type SockOp.
int init_sock_op_functions(PyObject* module);

// The fd of a socket object, as PyObject_AsFileDescriptor gives it (a closed one's
// ValueError included); read from the struct of a socket.socket, whose layout is
// checked when the Python face calls sock_setup.
int socket_fileno(PyObject* sock);

}  // namespace pyloop
