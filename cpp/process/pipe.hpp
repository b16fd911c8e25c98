// Read and write pipe transports (asyncio's _UnixReadPipeTransport and
// _UnixWritePipeTransport) over uv_pipe: a TransportObject of kind kReadPipe or
// kWritePipe, whose reading, writing and closing are the stream's (net/stream_read.cpp,
// stream_write.cpp, stream_io.cpp).
#pragma once
#include "net/stream.hpp"

namespace pyloop {

extern PyTypeObject* ReadPipeTransportType;
extern PyTypeObject* WritePipeTransportType;

// Makes pyloop.ReadPipeTransport and pyloop.WritePipeTransport. -1 with an exception set.
int init_pipe_types(PyObject* module);

// A read or write pipe transport over a pipe, FIFO, socket or character device file
// object (checked and made non-blocking by the caller): libuv works on a duplicate fd
// over uv_pipe, the user's object is closed at connection_lost, as asyncio does.
PyObject* pipe_transport_new(PyObject* loop, PyObject* pipe, PyObject* protocol, PyObject* extra, bool write);

}  // namespace pyloop
