// StreamTransport: the transport of a TCP (later also Unix) stream connection, a
// CPython type that subclasses asyncio.Transport (isinstance holds). It owns a libuv
// stream handle; while the handle is open the transport holds a reference to itself,
// dropped in the close callback (DESIGN.md: ownership and lifetime).
#pragma once
#include "uv/pyutil.hpp"

#include <netinet/in.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace pyloop {

class LoopCore;

// What a TransportObject is: a stream (socket) transport, or a read or write pipe
// transport (asyncio's _UnixReadPipeTransport / _UnixWritePipeTransport semantics).
enum TransportKind : uint8_t { kStream = 0, kReadPipe = 1, kWritePipe = 2 };

// A link in a server's list of its connections (ClientSet, net/server.cpp): a circular
// list through a sentinel, so that a transport unlinks itself without its list.
struct ClientLink {
    ClientLink* prev;
    ClientLink* next;
    void* set;  // the ClientSet it is in (O(1) discard and `in`), or null
};

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
    PyObject* dict;      // instance attributes (tests patch methods on transports)
    PyObject* context;   // contextvars.Context the protocol's read callbacks run in
    PyObject* write_context;  // the context of the write() that began buffering
    PyObject* get_buffer_error;  // a BufferedProtocol's get_buffer() failure, reported by on_read
    PyObject* sock;      // the Python socket object (see owns_fd)
    PyObject* server;    // pyloop Server or None
    PyObject* self_ref;  // set while the uv handle is open
    PyObject* drain_waiter;  // future for loop.sendfile(): set when the write buffer empties
    PyObject* held_reads;    // list or null: queued reads that reached a paused transport (see defer())
    Py_buffer* read_buf;  // BufferedProtocol's buffer during a read (allocated on first use)
    ClientLink client;    // in its server's ClientSet while attached (both null otherwise)
    char* cork;          // small writes held back until the loop's next poll (malloc'd; see write_bytes)
    uint32_t cork_len;
    uint32_t cork_cap;
    size_t write_buffer_size;
    int sock_fd;         // the socket object's fd number (registered with the loop while open)
    int watch_fd;        // libuv's fd of a write pipe, in the loop's epoll while watching_reader
    uint32_t read_deferred;  // reads waiting in the ready queue for their delivery (see defer())
    int deferred_error;  // a read error that came while reads were queued: reported after them
    size_t high_water;
    size_t low_water;
    long conn_lost;
    bool buffered;       // protocol is an asyncio.BufferedProtocol
    bool tls;            // protocol is a TlsProtocol: reads go to it in C++ (tls.hpp)
    bool closing;
    bool paused;         // reading paused by pause_reading()
    bool reading;        // uv_read_start is in effect (or its stop waits for on_read: below)
    // get_buffer() runs inside libuv's allocation callback, where the read must not be
    // stopped (libuv calls on_read right after, with the callback it then lacks): a
    // stop asked for there (close(), pause_reading()) happens in that on_read.
    bool in_alloc;
    bool stop_after_alloc;
    bool buffer_unusable;  // get_buffer_error is the read's (asyncio's recv_into refused the buffer)
    bool read_started;   // connection_made has run and reading may begin
    bool eof_requested;  // write_eof() was called
    bool eof_sent;       // uv_shutdown issued
    bool protocol_paused;
    bool handle_open;
    bool has_read_buf;
    bool owns_fd;        // libuv has the socket object's own fd (detached at close); else a dup
    bool sendfile_busy;  // loop.sendfile() is sending on this connection: write() refuses
    bool read_eof;       // the peer's EOF was delivered: reading never resumes
    // loop.close() closed the handle while the user had not closed the transport. From
    // then on the transport answers as asyncio's does on a closed loop, whose state
    // these three keep: left_open (it warns when collected), closed_under (asyncio's
    // connection_lost not yet scheduled: the first close()/abort() to schedule it raises),
    // user_closing (close() was called), buffered_at_close (close() would wait for it).
    bool left_open;
    bool closed_under;
    bool user_closing;
    bool buffered_at_close;
    bool watching_reader;  // a write pipe's fd is watched for its reader going away (watch_fd)
    bool dripping;          // a read pipe's held read is in the ready queue (Transport_deliver_held)
    bool lost_called;       // _call_connection_lost ran (it tells the protocol once)
    bool progress_watched;  // the loop looks at libuv's write queue after each poll (paused writer)
    bool cork_queued;    // the loop will flush the cork before its next poll
    bool lazy_extra;     // extra's socket/sockname/peername are made from the two below on first use
    struct sockaddr_in6 lazy_local;  // an accepted TCP connection's addresses (IPv4 fits too)
    struct sockaddr_in6 lazy_peer;
    uint8_t kind;        // TransportKind
};

extern PyTypeObject* StreamTransportType;

int init_stream_type(PyObject* module);

// A C type from spec that subclasses asyncio.Transport. Its struct must hold
// BaseTransport's one slot (`_extra`) right after the object header, ending at
// extra_end. Returns a new reference, or nullptr with an exception set.
PyTypeObject* new_transport_type(PyObject* module, PyType_Spec* spec, size_t extra_end,
                                 const char* base = "Transport");

// A transport over an already connected socket. Exactly one party closes each fd:
// with `own` (the loop made the socket) libuv takes the socket's fd and the object is
// detached when libuv closes it; otherwise (a user's socket) libuv gets a duplicate
// and the user's object is closed at connection_lost, as asyncio closes it, so a user
// who closes their socket early closes only their own fd. Schedules
// protocol.connection_made and the start of reading, as asyncio does. The protocol's
// I/O callbacks run in a copy of the current context. Returns a new reference or nullptr.
PyObject* stream_transport_new(PyObject* loop, PyObject* sock, PyObject* protocol, PyObject* extra,
                               PyObject* server, bool own);
// The same when the caller knows the socket's fd and family already. A pipe transport
// (process/pipe.cpp) passes its kind and its type, which must lay out a TransportObject.
PyObject* stream_transport_open(LoopCore* core, PyObject* loop, PyObject* sock, int fd, int family,
                                PyObject* protocol, PyObject* extra, PyObject* server, bool own,
                                uint8_t kind = kStream, PyTypeObject* type = nullptr);

}  // namespace pyloop
