// What the TLS state machine (tls.cpp, its incoming flow in tls_read.cpp) and
// TlsProtocol's Python type (tls_protocol.cpp) share: the names and ssl-module objects looked up once, small
// call helpers, and the state machine's steps (each asyncio's SSLProtocol method of
// the same name). Private to those two files.
#pragma once
#include "net/tls.hpp"

namespace pyloop {
namespace tls_internal {

extern PyObject* g_ssl_module;        // the ssl module (nullptr: TLS is unavailable)
extern PyObject* g_ssl_again;         // (ssl.SSLWantReadError, ssl.SSLSyscallError)
extern PyObject* g_sslobject_type;    // ssl.SSLObject
extern PyObject* g_ssl_error;         // ssl.SSLError
extern PyObject* g_certificate_error; // ssl.CertificateError
extern PyObject* g_cancelled_error;   // asyncio.CancelledError

extern PyObject *s_read, *s_write, *s_do_handshake, *s_unwrap, *s_getpeercert, *s_cipher, *s_compression,
    *s_pending, *s_data_received, *s_buffer_updated, *s_get_buffer, *s_eof_received, *s_connection_made,
    *s_connection_lost, *s_pause_writing, *s_resume_writing, *s_call_soon, *s_call_later, *s_cancel,
    *s_force_close, *s_abort, *s_close, *s_pause_reading, *s_resume_reading, *s_get_extra_info, *s_set_result,
    *s_set_exception, *s_cancelled, *s_call_exception_handler, *s_wrap_bio, *s_time, *s_shutdown, *s_sslobj_attr;

// Looks up the ssl module's classes and interns the names above. 0 with the ssl module
// missing too (g_ssl_module stays nullptr), -1 with an exception set.
int init_state();

constexpr Py_ssize_t kMaxSize = 256 * 1024;  // SSLProtocol.max_size
constexpr long kHighWaterSslRead = 256;      // asyncio.constants (KiB)
constexpr long kHighWaterSslWrite = 512;

inline TlsProtocolObject* P(PyObject* o) { return reinterpret_cast<TlsProtocolObject*>(o); }
inline PyObject* O(TlsProtocolObject* p) { return reinterpret_cast<PyObject*>(p); }

// An owned reference released at scope exit.
struct Ref {
    PyObject* p;
    explicit Ref(PyObject* o = nullptr) : p(o) {}
    ~Ref() { Py_XDECREF(p); }
    Ref(const Ref&) = delete;
    Ref& operator=(const Ref&) = delete;
    PyObject* get() const { return p; }
    explicit operator bool() const { return p != nullptr; }
};

inline PyObject* call0(PyObject* obj, PyObject* name) {
    PyObject* args[1] = {obj};
    return PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

inline PyObject* call1(PyObject* obj, PyObject* name, PyObject* a) {
    PyObject* args[2] = {obj, a};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

inline PyObject* call2(PyObject* obj, PyObject* name, PyObject* a, PyObject* b) {
    PyObject* args[3] = {obj, a, b};
    return PyObject_VectorcallMethod(name, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

inline int discard(PyObject* r) {
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

// A bound method of the protocol for loop.call_soon/call_later.
inline PyObject* method(TlsProtocolObject* p, PyObject* name) { return PyObject_GetAttr(O(p), name); }

PyObject* call_soon(TlsProtocolObject* p, PyObject* callable, PyObject* arg = nullptr);
void cancel_timer(PyObject** timer);
void log_debug(TlsProtocolObject* p, const char* fmt, PyObject* arg);
const char* state_name(TlsState s);
int set_state(TlsProtocolObject* p, TlsState s);
void wakeup_waiter(TlsProtocolObject* p, PyObject* exc);
void fatal_error(TlsProtocolObject* p, PyObject* exc, const char* message = "Fatal error on transport");
int transport_call(TlsProtocolObject* p, PyObject* name, PyObject* arg = nullptr);
bool is_sys_exit(PyObject* exc);
Py_ssize_t bio_pending(PyObject* bio);
Py_ssize_t ssl_pending(TlsProtocolObject* p);
int fatal_from_current(TlsProtocolObject* p, const char* message);
constexpr long kLogThresholdConnLostWrites = 5;
constexpr bool kPy312 = PY_VERSION_HEX >= 0x030C0000;
constexpr bool kPy314 = PY_VERSION_HEX >= 0x030E0000;

// The incoming flow (tls_read.cpp).
void scan_records(RecordScan& sc, const unsigned char* data, size_t len);
int call_eof_received(TlsProtocolObject* p);
// The rest of the state machine (tls.cpp).
int start_shutdown(TlsProtocolObject* p);
int process_outgoing(TlsProtocolObject* p);
int do_write(TlsProtocolObject* p);
int do_read(TlsProtocolObject* p);
int do_handshake(TlsProtocolObject* p);
int on_handshake_complete(TlsProtocolObject* p, PyObject* handshake_exc);
// A server connection's handshake failed: close the app transport, report in debug mode.
void accept_failed(TlsProtocolObject* p, PyObject* exc);
int do_shutdown(TlsProtocolObject* p);
int do_flush(TlsProtocolObject* p);

}  // namespace tls_internal
}  // namespace pyloop
