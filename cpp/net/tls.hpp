// TLS over a stream transport, in C++ (Python 3.11+; 3.10 keeps asyncio's own older
// SSLProtocol, whose semantics differ). The TLS state machine is the ssl module's
// SSLObject over two MemoryBIOs, so the user's SSLContext stays the authority; what
// drives it follows asyncio's sslproto of 3.11+ step by step (states, callback order,
// messages, flow control), with bytes moved in C++:
//   TlsProtocol   the protocol of the raw transport (asyncio's SSLProtocol): its state
//                 machine in tls.cpp, its Python type in tls_protocol.cpp
//   TlsTransport  the transport the application sees (asyncio's _SSLProtocolTransport),
//                 tls_transport.cpp
// Over a pyloop StreamTransport the raw side is a C++ fast path: what a read returned
// goes into the incoming BIO straight from libuv's buffer, and records go out through
// the stream's try-write path; over any other transport (TLS in TLS) the protocol is
// an ordinary asyncio BufferedProtocol.
#pragma once
#include "uv/pyutil.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>

namespace pyloop {

class LoopCore;
struct TransportObject;
struct TlsTransportObject;

enum class TlsState : uint8_t { Unwrapped, DoHandshake, Wrapped, Flushing, Shutdown };
enum class AppState : uint8_t { Init, ConMade, Eof, ConLost };

// A water mark pair as asyncio keeps it: the objects the user gave (for
// get_*_limits()) and their values for comparisons.
struct WaterMarks {
    PyObject* high;  // owned
    PyObject* low;   // owned
    double high_v;
    double low_v;
};

// Where the TLS records of the incoming byte stream end, tracked as bytes are fed to
// the incoming BIO: once the SSL object has consumed every complete record, a read
// can only raise SSLWantReadError, and is skipped (an exception per read saved).
struct RecordScan {
    uint64_t fed;           // bytes fed so far
    uint64_t complete_end;  // stream offset just past the last complete record
    uint32_t body_left;     // bytes of the current record's body still to come
    uint8_t header_have;    // bytes of the current 5-byte record header seen
    uint8_t header[5];
    bool broken;            // not TLS record framing: never skip a read
};

struct TlsProtocolObject {
    PyObject_HEAD
    PyObject* weakrefs;
    LoopCore* core;
    PyObject* loop;
    PyObject* app_protocol;         // None after connection_lost
    TlsTransportObject* app_transport;  // dropped at connection_lost
    PyObject* transport;            // the raw transport while connected
    TransportObject* stream;        // == transport when it is a pyloop StreamTransport
    PyObject* sslcontext;
    PyObject* sslobj;               // the ssl.SSLObject (extra info 'ssl_object')
    PyObject* ssl;                  // what the state machine calls: the SSLObject's _ssl
                                    // object when it is a plain ssl.SSLObject (its methods
                                    // only forward), else the SSLObject itself
    PyObject* incoming;             // ssl.MemoryBIO
    PyObject* outgoing;             // ssl.MemoryBIO
    PyObject* extra;                // dict: sslcontext; peercert, cipher, ... after the handshake
    PyObject* waiter;               // future resolved by the handshake, or nullptr
    PyObject* handshake_timer;
    PyObject* shutdown_timer;
    PyObject* handshake_timeout;    // the numbers given (for call_later and messages)
    PyObject* shutdown_timeout;
    PyObject* read_buffer;          // bytearray for get_buffer() over a non-pyloop transport
    std::deque<PyObject*>* backlog; // application data not yet taken by SSLObject.write
    double handshake_start;
    RecordScan scan;
    Py_ssize_t write_buffer_size;
    WaterMarks in_marks;            // incoming (ciphertext) read flow control
    WaterMarks out_marks;           // outgoing write flow control
    long conn_lost;
    TlsState state;
    AppState app_state;
    bool server_side;
    bool accepted;                  // a server's connection: no waiter, failures handled here
    bool app_is_buffer;
    bool app_transport_created;
    bool ssl_writing_paused;
    bool app_reading_paused;
    bool ssl_reading_paused;
    bool eof_received;
    bool app_writing_paused;
};

struct TlsTransportObject {
    PyObject_HEAD
    PyObject* extra;  // asyncio.BaseTransport's `_extra` slot (unused): must come first
    PyObject* weakrefs;
    PyObject* dict;
    PyObject* loop;
    TlsProtocolObject* proto;  // nullptr after a second close(), as asyncio drops it
    bool closed;
};

extern PyTypeObject* TlsProtocolType;
extern PyTypeObject* TlsTransportType;

inline bool is_tls_protocol(PyObject* o) { return TlsProtocolType && Py_TYPE(o) == TlsProtocolType; }

int init_tls_types(PyObject* module);

// The raw stream's fast path: the bytes one read returned, then the state machine's
// step for them (asyncio's buffer_updated). -1 with an exception set.
int tls_feed(PyObject* proto, const char* data, size_t len);
int tls_received(PyObject* proto);

// What the app transport (tls_transport.cpp) calls on the protocol (tls.cpp).
namespace tls {
int write_appdata(TlsProtocolObject* p, PyObject* const* items, Py_ssize_t n);
void append_backlog(TlsProtocolObject* p, PyObject* data, Py_ssize_t len);  // no write step
int start_shutdown(TlsProtocolObject* p);
int abort(TlsProtocolObject* p, PyObject* exc);
int control_app_writing(TlsProtocolObject* p);
int control_ssl_reading(TlsProtocolObject* p);
int resume_reading(TlsProtocolObject* p);
Py_ssize_t write_buffer_size(TlsProtocolObject* p);  // -1 with an exception set
Py_ssize_t read_buffer_size(TlsProtocolObject* p);
int set_app_protocol(TlsProtocolObject* p, PyObject* app_protocol);
PyObject* get_extra_info(TlsProtocolObject* p, PyObject* name, PyObject* dflt);
// asyncio's add_flowcontrol_defaults(high, low, kb): -1 with ValueError/TypeError set.
int set_water_marks(WaterMarks* m, PyObject* high, PyObject* low, long kb);
}  // namespace tls

TlsTransportObject* tls_transport_new(TlsProtocolObject* proto);
int init_tls_transport_type(PyObject* module);

}  // namespace pyloop
