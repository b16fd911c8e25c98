// StreamTransport: the transport of a TCP (later also Unix) stream connection, a
// CPython type that subclasses asyncio.Transport (isinstance holds). It owns a libuv
// stream handle; while the handle is open the transport holds a reference to itself,
// dropped in the close callback (DESIGN.md: ownership and lifetime).
#pragma once
#include "uv/pyutil.hpp"

#include <uv.h>

#include <cstddef>

namespace pyloop {

class LoopCore;

struct TransportObject {
    PyObject_HEAD
    PyObject* extra;  // asyncio.BaseTransport's `_extra` slot: must come first
    PyObject* weakrefs;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    LoopCore* core;
    PyObject* loop;
    PyObject* protocol;
    PyObject* sock;      // the Python socket object (detached when libuv closes the fd)
    PyObject* server;    // pyloop Server or None
    PyObject* self_ref;  // set while the uv handle is open
    PyObject* drain_waiter;  // future for loop.sendfile(): set when the write buffer empties
    Py_buffer read_buf;  // BufferedProtocol's buffer during a read
    size_t write_buffer_size;
    size_t high_water;
    size_t low_water;
    long conn_lost;
    bool buffered;       // protocol is an asyncio.BufferedProtocol
    bool closing;
    bool paused;         // reading paused by pause_reading()
    bool reading;        // uv_read_start is in effect
    bool read_started;   // connection_made has run and reading may begin
    bool eof_requested;  // write_eof() was called
    bool eof_sent;       // uv_shutdown issued
    bool protocol_paused;
    bool handle_open;
    bool has_read_buf;
};

extern PyTypeObject* StreamTransportType;

int init_stream_type(PyObject* module);

// A transport over an already connected socket fd (the Python socket `sock` keeps
// owning the fd until the transport closes). Schedules protocol.connection_made and
// the start of reading, as asyncio does. Returns a new reference or nullptr.
PyObject* stream_transport_new(PyObject* loop, PyObject* sock, PyObject* protocol, PyObject* extra,
                               PyObject* server);

}  // namespace pyloop
