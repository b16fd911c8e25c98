// The accept path of TCP servers in C++: an Acceptor is the callback pyloop's fd watch
// runs when a listening socket is readable. It accepts up to the server's backlog of
// connections (accept4, non-blocking, close-on-exec), and for each makes what asyncio's
// _accept_connection makes (the socket object, the transport's extra info, the
// protocol from the server's factory; for TLS servers the TLS protocol) and a
// StreamTransport over it, with no Python frame of pyloop's own in between.
#pragma once
#include "uv/pyutil.hpp"

namespace pyloop {

extern PyTypeObject* AcceptorType;

int init_server_types(PyObject* module);

struct TransportObject;
// An accepted connection's extra info (socket, sockname, peername), made the first
// time it is asked for. -1 with an exception set.
int make_lazy_extra(TransportObject* t);
// Takes a transport out of the ClientSet it is in, if any (its dealloc does).
void client_unlink(TransportObject* t);

}  // namespace pyloop
