// DatagramBase: the C half of pyloop's datagram transport (pyloop/_udp.py holds the
// Python half: creation, close/abort, the write buffer and flow control). Bytes move
// here: sendto() sends straight from the caller's buffer when nothing is queued, and
// the reader receives up to a batch of datagrams per wake-up into one loop-wide
// buffer, handing each to protocol.datagram_received.
//
// The fd stays the user's socket object's and is watched on the loop's own epoll
// (FdWatchers), not by a uv_udp handle: asyncio's transport exposes that socket, and
// libuv would abort the process if it were closed under a uv_udp handle.
#pragma once
#include "uv/pyutil.hpp"

namespace pyloop {

// Adds pyloop._core.DatagramBase (a subclass of asyncio.Transport) to the module.
int init_udp_type(PyObject* module);

}  // namespace pyloop
