// TlsProtocol's state machine: asyncio's SSLProtocol (3.11+) in C++. Each function is
// the asyncio method of the same name, in the same order of steps; where the bytes move
// (feeding the incoming BIO, reading plaintext, sending records) it works on buffers
// directly instead of building Python objects per record.
//
// The files: tls.hpp (the protocol object and what the rest of pyloop calls),
// tls_internal.hpp (what these files share), this file (state, outgoing flow,
// handshake, shutdown, the app transport's calls, the raw transport's fast path),
// tls_read.cpp (the incoming flow), tls_protocol.cpp (TlsProtocol's Python type),
// tls_transport.cpp (the application's transport, pyloop.TlsTransport).
#include "net/tls_internal.hpp"

#include "core/loop.hpp"
#include "net/stream.hpp"
#include "net/stream_io.hpp"

#include <algorithm>

namespace pyloop {

namespace tls_internal {

PyObject *g_ssl_module, *g_ssl_again, *g_sslobject_type, *g_ssl_error, *g_certificate_error, *g_cancelled_error;
using stream_io::g_buffered_protocol;  // asyncio.BufferedProtocol (set up by the stream type)
using stream_io::g_logger;             // asyncio.log.logger

PyObject *s_read, *s_write, *s_do_handshake, *s_unwrap, *s_getpeercert, *s_cipher, *s_compression, *s_pending,
    *s_data_received, *s_buffer_updated, *s_get_buffer, *s_eof_received, *s_connection_made, *s_connection_lost,
    *s_pause_writing, *s_resume_writing, *s_call_soon, *s_call_later, *s_cancel, *s_force_close, *s_abort, *s_close,
    *s_pause_reading, *s_resume_reading, *s_get_extra_info, *s_set_result, *s_set_exception, *s_cancelled,
    *s_call_exception_handler, *s_wrap_bio, *s_time, *s_shutdown, *s_sslobj_attr;


bool is_sys_exit(PyObject* exc) {
    return PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt) ||
           PyErr_GivenExceptionMatches(exc, PyExc_SystemExit);
}

PyObject* call_soon(TlsProtocolObject* p, PyObject* callable, PyObject* arg) {
    return arg ? call2(p->loop, s_call_soon, callable, arg) : call1(p->loop, s_call_soon, callable);
}

void cancel_timer(PyObject** timer) {
    PyObject* h = *timer;
    if (!h) return;
    *timer = nullptr;
    PyObject* r = call0(h, s_cancel);
    if (r) Py_DECREF(r);
    else PyErr_WriteUnraisable(h);
    Py_DECREF(h);
}

void log_debug(TlsProtocolObject* p, const char* fmt, PyObject* arg) {
    PyObject* r = arg ? PyObject_CallMethod(g_logger, "debug", "sOO", fmt, O(p), arg)
                      : PyObject_CallMethod(g_logger, "debug", "sO", fmt, O(p));
    if (r) Py_DECREF(r);
    else PyErr_Clear();
}

Py_ssize_t bio_pending(PyObject* bio) {
    Ref n(PyObject_GetAttr(bio, s_pending));
    if (!n) return -1;
    return PyLong_AsSsize_t(n.get());
}

Py_ssize_t ssl_pending(TlsProtocolObject* p) {
    Ref n(call0(p->ssl, s_pending));
    if (!n) return -1;
    return PyLong_AsSsize_t(n.get());
}

// ---- state --------------------------------------------------------------------------

const char* state_name(TlsState s) {
    switch (s) {
        case TlsState::Unwrapped: return "SSLProtocolState.UNWRAPPED";
        case TlsState::DoHandshake: return "SSLProtocolState.DO_HANDSHAKE";
        case TlsState::Wrapped: return "SSLProtocolState.WRAPPED";
        case TlsState::Flushing: return "SSLProtocolState.FLUSHING";
        case TlsState::Shutdown: return "SSLProtocolState.SHUTDOWN";
    }
    return "?";
}

int set_state(TlsProtocolObject* p, TlsState s) {
    bool allowed = s == TlsState::Unwrapped ||
                   (p->state == TlsState::Unwrapped && s == TlsState::DoHandshake) ||
                   (p->state == TlsState::DoHandshake && s == TlsState::Wrapped) ||
                   (p->state == TlsState::Wrapped && s == TlsState::Flushing) ||
                   (p->state == TlsState::Flushing && s == TlsState::Shutdown);
    if (!allowed) {
        PyErr_Format(PyExc_RuntimeError, "cannot switch state from %s to %s", state_name(p->state), state_name(s));
        return -1;
    }
    p->state = s;
    return 0;
}

void wakeup_waiter(TlsProtocolObject* p, PyObject* exc) {
    PyObject* w = p->waiter;
    if (!w) return;
    p->waiter = nullptr;
    PyObject* c = call0(w, s_cancelled);
    int cancelled = c ? PyObject_IsTrue(c) : -1;
    Py_XDECREF(c);
    if (cancelled == 0) {
        PyObject* r = exc ? call1(w, s_set_exception, exc) : call1(w, s_set_result, Py_None);
        if (r) Py_DECREF(r);
        else PyErr_WriteUnraisable(w);
    } else if (cancelled < 0) {
        PyErr_WriteUnraisable(w);
    }
    Py_DECREF(w);
}

// asyncio's _fatal_error: close the raw transport with exc; OSErrors are only logged
// in debug mode, cancellations not at all, the rest go to the exception handler.
void fatal_error(TlsProtocolObject* p, PyObject* exc, const char* message) {
    if (p->transport) {
        PyObject* tr = Py_NewRef(p->transport);
        PyObject* r = call1(tr, s_force_close, exc);
        if (r) Py_DECREF(r);
        else PyErr_WriteUnraisable(tr);
        Py_DECREF(tr);
    }
    if (PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        if (p->core->debug()) {
            PyObject* kw = Py_BuildValue("{s:O}", "exc_info", Py_True);
            PyObject* m = PyObject_GetAttrString(g_logger, "debug");
            PyObject* a = Py_BuildValue("(sOs)", "%r: %s", O(p), message);
            PyObject* r = (kw && m && a) ? PyObject_Call(m, a, kw) : nullptr;
            if (!r) PyErr_Clear();
            Py_XDECREF(r);
            Py_XDECREF(kw);
            Py_XDECREF(m);
            Py_XDECREF(a);
        }
    } else if (!PyErr_GivenExceptionMatches(exc, g_cancelled_error)) {
        PyObject* ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc, "transport",
                                      p->transport ? p->transport : Py_None, "protocol", O(p));
        PyObject* r = ctx ? call1(p->loop, s_call_exception_handler, ctx) : nullptr;
        if (r) Py_DECREF(r);
        else PyErr_WriteUnraisable(O(p));
        Py_XDECREF(ctx);
    }
}

// Turns the exception being raised into a fatal error when it is an Exception (as
// asyncio's `except Exception`); anything else stays raised (-1).
int fatal_from_current(TlsProtocolObject* p, const char* message) {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
    PyObject* exc = fetch_exception();
    fatal_error(p, exc, message);
    Py_DECREF(exc);
    return 0;
}

int transport_call(TlsProtocolObject* p, PyObject* name, PyObject* arg) {
    if (!p->transport) return 0;
    Ref tr(Py_NewRef(p->transport));
    return discard(arg ? call1(tr.get(), name, arg) : call0(tr.get(), name));
}

}  // namespace tls_internal

// ---- outgoing flow -----------------------------------------------------------------------

namespace tls {

using namespace tls_internal;

Py_ssize_t write_buffer_size(TlsProtocolObject* p) {
    Py_ssize_t pending = bio_pending(p->outgoing);
    if (pending < 0) return -1;
    return pending + p->write_buffer_size;
}

Py_ssize_t read_buffer_size(TlsProtocolObject* p) { return bio_pending(p->incoming); }

int control_app_writing(TlsProtocolObject* p) {
    Py_ssize_t size = write_buffer_size(p);
    if (size < 0) return -1;
    PyObject* name;
    const char* message;
    if (static_cast<double>(size) >= p->out_marks.high_v && !p->app_writing_paused) {
        p->app_writing_paused = true;
        name = s_pause_writing;
        message = "protocol.pause_writing() failed";
    } else if (static_cast<double>(size) <= p->out_marks.low_v && p->app_writing_paused) {
        p->app_writing_paused = false;
        name = s_resume_writing;
        message = "protocol.resume_writing() failed";
    } else {
        return 0;
    }
    Ref app(Py_NewRef(p->app_protocol));
    PyObject* r = call0(app.get(), name);
    if (r) {
        Py_DECREF(r);
        return 0;
    }
    PyObject* exc = fetch_exception();
    if (is_sys_exit(exc)) {
        restore_exception(exc);
        return -1;
    }
    PyObject* ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc, "transport",
                                  p->app_transport ? reinterpret_cast<PyObject*>(p->app_transport) : Py_None,
                                  "protocol", O(p));
    Py_DECREF(exc);
    if (!ctx) return -1;
    r = call1(p->loop, s_call_exception_handler, ctx);
    Py_DECREF(ctx);
    return discard(r);
}

}  // namespace tls

namespace tls_internal {

// Sends what the outgoing BIO holds (unless the raw transport paused us).
int process_outgoing(TlsProtocolObject* p) {
    if (!p->ssl_writing_paused) {
        Ref data(call0(p->outgoing, s_read));
        if (!data) return -1;
        Py_ssize_t n = PyBytes_GET_SIZE(data.get());
        if (n > 0 && p->transport) {
            if (p->stream) {
                Ref keep(Py_NewRef(p->transport));
                if (stream_io::write_bytes(p->stream, PyBytes_AS_STRING(data.get()), static_cast<size_t>(n)) < 0)
                    return -1;
            } else if (transport_call(p, s_write, data.get()) < 0) {
                return -1;
            }
        }
    }
    return tls::control_app_writing(p);
}

int do_write(TlsProtocolObject* p) {
    auto& backlog = *p->backlog;
    while (!backlog.empty()) {
        PyObject* data = backlog.front();
        PyObject* r = call1(p->ssl, s_write, data);
        if (!r) {
            if (!PyErr_ExceptionMatches(g_ssl_again)) return -1;
            PyErr_Clear();
            break;
        }
        Py_ssize_t count = PyLong_AsSsize_t(r);
        Py_DECREF(r);
        if (count == -1 && PyErr_Occurred()) return -1;
        Py_ssize_t len = PyObject_Size(data);
        if (len < 0) return -1;
        if (count < len) {
            PyObject* rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
            if (!rest) return -1;
            backlog.front() = rest;
            Py_DECREF(data);
            p->write_buffer_size -= count;
        } else {
            backlog.pop_front();
            Py_DECREF(data);
            p->write_buffer_size -= len;
        }
    }
    return process_outgoing(p);
}

// ---- incoming flow: tls_read.cpp ----------------------------------------------------

// ---- handshake --------------------------------------------------------------------

int on_handshake_complete(TlsProtocolObject* p, PyObject* handshake_exc);

int do_handshake(TlsProtocolObject* p) {
    PyObject* r = call0(p->ssl, s_do_handshake);
    if (r) {
        Py_DECREF(r);
        return on_handshake_complete(p, nullptr);
    }
    if (PyErr_ExceptionMatches(g_ssl_again)) {
        PyErr_Clear();
        return process_outgoing(p);
    }
    if (!PyErr_ExceptionMatches(g_ssl_error)) return -1;
    PyObject* exc = fetch_exception();
    int rc = on_handshake_complete(p, exc);
    Py_DECREF(exc);
    return rc;
}

// What asyncio's _accept_connection2 does when a server connection's handshake fails:
// close the transport, and report it in debug mode.
void accept_failed(TlsProtocolObject* p, PyObject* exc) {
    if (p->app_transport) p->app_transport->closed = true;
    if (!p->core->debug()) return;
    PyObject* ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", "Error on transport creation for incoming connection",
                                  "exception", exc, "protocol", p->app_protocol, "transport",
                                  p->app_transport ? reinterpret_cast<PyObject*>(p->app_transport) : Py_None);
    PyObject* r = ctx ? call1(p->loop, s_call_exception_handler, ctx) : nullptr;
    if (r) Py_DECREF(r);
    else PyErr_WriteUnraisable(O(p));
    Py_XDECREF(ctx);
}

int on_handshake_complete(TlsProtocolObject* p, PyObject* handshake_exc) {
    cancel_timer(&p->handshake_timer);
    Ref keep(Py_NewRef(O(p)));
    Ref peercert;
    PyObject* exc = handshake_exc ? Py_NewRef(handshake_exc) : nullptr;
    if (!exc) {
        if (set_state(p, TlsState::Wrapped) == 0) peercert.p = call0(p->ssl, s_getpeercert);
        if (!peercert) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
            exc = fetch_exception();
        }
    }
    if (exc) {
        p->state = TlsState::Unwrapped;
        int cert = PyObject_IsInstance(exc, g_certificate_error);
        if (cert < 0) PyErr_Clear();
        fatal_error(p, exc, cert > 0 ? "SSL handshake failed on verifying the certificate" : "SSL handshake failed");
        wakeup_waiter(p, exc);
        if (p->accepted) accept_failed(p, exc);
        Py_DECREF(exc);
        return 0;
    }
    if (p->core->debug()) {
        Ref now(call0(p->loop, s_time));
        if (now) {
            Ref ms(PyFloat_FromDouble((PyFloat_AsDouble(now.get()) - p->handshake_start) * 1e3));
            Ref text(ms ? PyUnicode_FromFormat("%R: SSL handshake took %S ms", O(p), ms.get()) : nullptr);
            if (text) log_debug(p, "%s", text.get());
        }
        PyErr_Clear();
    }
    Ref cipher(call0(p->ssl, s_cipher));
    Ref compression(cipher ? call0(p->ssl, s_compression) : nullptr);
    if (!compression) return -1;
    if (PyDict_SetItemString(p->extra, "peercert", peercert.get()) < 0 ||
        PyDict_SetItemString(p->extra, "cipher", cipher.get()) < 0 ||
        PyDict_SetItemString(p->extra, "compression", compression.get()) < 0 ||
        PyDict_SetItemString(p->extra, "ssl_object", p->sslobj) < 0)
        return -1;
    if (p->app_state == AppState::Init) {
        p->app_state = AppState::ConMade;
        if (!p->app_transport) {
            if (p->app_transport_created) {
                PyErr_SetString(PyExc_RuntimeError, "Creating _SSLProtocolTransport twice");
                return -1;
            }
            p->app_transport = tls_transport_new(p);
            if (!p->app_transport) return -1;
            p->app_transport_created = true;
        }
        Ref app(Py_NewRef(p->app_protocol));
        if (discard(call1(app.get(), s_connection_made, reinterpret_cast<PyObject*>(p->app_transport))) < 0)
            return -1;
    }
    wakeup_waiter(p, nullptr);
    return do_read(p);
}

// ---- shutdown ---------------------------------------------------------------------

// loop.call_later(ssl_shutdown_timeout, self._check_shutdown_timeout)
static int start_shutdown_timer(TlsProtocolObject* p) {
    Ref check(method(p, PY_NAME("_check_shutdown_timeout")));
    if (!check) return -1;
    PyObject* timer = call2(p->loop, s_call_later, p->shutdown_timeout, check.get());
    if (!timer) return -1;
    Py_XSETREF(p->shutdown_timer, timer);
    return 0;
}

int on_shutdown_complete(TlsProtocolObject* p, PyObject* shutdown_exc) {
    if (shutdown_exc || !kPy314) cancel_timer(&p->shutdown_timer);
    if (shutdown_exc) {
        fatal_error(p, shutdown_exc);
        return 0;
    }
    // 3.14: transport.close() first writes what is buffered, which a peer that does not
    // read delays forever: the timeout runs (from here when the peer began the shutdown)
    // until connection_lost().
    if (kPy314 && !p->shutdown_timer && start_shutdown_timer(p) < 0) return -1;
    if (!p->transport) return 0;
    Ref close(PyObject_GetAttr(p->transport, s_close));
    return close ? discard(call_soon(p, close.get())) : -1;
}

int do_shutdown(TlsProtocolObject* p) {
    if (!p->eof_received) {
        PyObject* r = call0(p->ssl, p->ssl == p->sslobj ? s_unwrap : s_shutdown);
        if (!r) {
            if (PyErr_ExceptionMatches(g_ssl_again)) {
                PyErr_Clear();
                return process_outgoing(p);
            }
            if (!PyErr_ExceptionMatches(g_ssl_error)) return -1;
            PyObject* exc = fetch_exception();
            int rc = on_shutdown_complete(p, exc);
            Py_DECREF(exc);
            return rc;
        }
        Py_DECREF(r);
    }
    if (process_outgoing(p) < 0 || call_eof_received(p) < 0) return -1;
    return on_shutdown_complete(p, nullptr);
}

int do_flush(TlsProtocolObject* p) {
    if (do_read(p) < 0 || set_state(p, TlsState::Shutdown) < 0) return -1;
    return do_shutdown(p);
}

int start_shutdown(TlsProtocolObject* p) {
    if (p->state == TlsState::Flushing || p->state == TlsState::Shutdown || p->state == TlsState::Unwrapped) return 0;
    if (p->app_transport) p->app_transport->closed = true;
    if (p->state == TlsState::DoHandshake) return tls::abort(p, nullptr);
    if (set_state(p, TlsState::Flushing) < 0 || start_shutdown_timer(p) < 0) return -1;
    return do_flush(p);
}

}  // namespace tls_internal

// ---- what the app transport calls -----------------------------------------------------

namespace tls {

using namespace tls_internal;

int start_shutdown(TlsProtocolObject* p) { return tls_internal::start_shutdown(p); }

int abort(TlsProtocolObject* p, PyObject* exc) {
    p->state = TlsState::Unwrapped;
    if (!p->transport) return 0;
    // 3.11 aborts the raw transport; 3.12+ force-closes it with the error.
    if (!kPy312) return transport_call(p, s_abort);
    return transport_call(p, s_force_close, exc ? exc : Py_None);
}

void append_backlog(TlsProtocolObject* p, PyObject* data, Py_ssize_t len) {
    p->backlog->push_back(Py_NewRef(data));
    p->write_buffer_size += len;
}

int write_appdata(TlsProtocolObject* p, PyObject* const* items, Py_ssize_t n) {
    if (p->state == TlsState::Flushing || p->state == TlsState::Shutdown || p->state == TlsState::Unwrapped) {
        if (p->conn_lost >= kLogThresholdConnLostWrites) {
            PyObject* r = PyObject_CallMethod(g_logger, "warning", "s", "SSL connection is closed");
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
        p->conn_lost++;
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyObject_Size(items[i]);
        if (len < 0) return -1;
        append_backlog(p, items[i], len);
    }
    if (p->state != TlsState::Wrapped) return 0;
    Ref keep(Py_NewRef(O(p)));
    if (do_write(p) < 0) return fatal_from_current(p, "Fatal error on SSL protocol");
    return 0;
}

int resume_reading(TlsProtocolObject* p) {
    if (!p->app_reading_paused) return 0;
    p->app_reading_paused = false;
    Ref m(method(p, PY_NAME("_resume")));
    return m ? discard(call_soon(p, m.get())) : -1;
}

int set_app_protocol(TlsProtocolObject* p, PyObject* app_protocol) {
    int buffered = 0;
    int has = PyObject_HasAttr(app_protocol, s_get_buffer);
    if (has) {
        buffered = PyObject_IsInstance(app_protocol, g_buffered_protocol);
        if (buffered < 0) return -1;
    }
    Py_XSETREF(p->app_protocol, Py_NewRef(app_protocol));
    p->app_is_buffer = buffered > 0;
    return 0;
}

PyObject* get_extra_info(TlsProtocolObject* p, PyObject* name, PyObject* dflt) {
    PyObject* v = PyDict_GetItemWithError(p->extra, name);
    if (v) return Py_NewRef(v);
    if (PyErr_Occurred()) return nullptr;
    if (p->transport) {
        Ref tr(Py_NewRef(p->transport));
        return call2(tr.get(), s_get_extra_info, name, dflt);
    }
    return Py_NewRef(dflt);
}

int set_water_marks(WaterMarks* m, PyObject* high_o, PyObject* low_o, long kb) {
    Ref four(PyLong_FromLong(4));
    if (!four) return -1;
    Ref high(high_o != Py_None  ? Py_NewRef(high_o)
             : low_o == Py_None ? PyLong_FromLong(kb * 1024)
                                : PyNumber_Multiply(four.get(), low_o));
    if (!high) return -1;
    Ref low(low_o != Py_None ? Py_NewRef(low_o) : PyNumber_FloorDivide(high.get(), four.get()));
    if (!low) return -1;
    Ref zero(PyLong_FromLong(0));
    if (!zero) return -1;
    int ok = PyObject_RichCompareBool(high.get(), low.get(), Py_GE);
    if (ok == 1) ok = PyObject_RichCompareBool(low.get(), zero.get(), Py_GE);
    if (ok < 0) return -1;
    if (ok == 0) {
        PyErr_Format(PyExc_ValueError, "high (%R) must be >= low (%R) must be >= 0", high.get(), low.get());
        return -1;
    }
    double hv = PyFloat_AsDouble(high.get());
    if (hv == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        hv = 1e300;
    }
    double lv = PyFloat_AsDouble(low.get());
    if (lv == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        lv = 1e300;
    }
    Py_XSETREF(m->high, high.p);
    Py_XSETREF(m->low, low.p);
    high.p = low.p = nullptr;
    m->high_v = hv;
    m->low_v = lv;
    return 0;
}

}  // namespace tls

// ---- the raw transport's fast path ------------------------------------------------------

using namespace tls_internal;

int tls_feed(PyObject* proto, const char* data, size_t len) {
    TlsProtocolObject* p = P(proto);
    Ref view(PyMemoryView_FromMemory(const_cast<char*>(data), static_cast<Py_ssize_t>(len), PyBUF_READ));
    if (!view) return -1;
    if (discard(call1(p->incoming, s_write, view.get())) < 0) return -1;
    scan_records(p->scan, reinterpret_cast<const unsigned char*>(data), len);
    return 0;
}

int tls_received(PyObject* proto) {
    TlsProtocolObject* p = P(proto);
    switch (p->state) {
        case TlsState::DoHandshake: return do_handshake(p);
        case TlsState::Wrapped: return do_read(p);
        case TlsState::Flushing: return do_flush(p);
        case TlsState::Shutdown: return do_shutdown(p);
        case TlsState::Unwrapped: return 0;
    }
    return 0;
}

namespace tls_internal {

int init_state() {
    g_ssl_module = PyImport_ImportModule("ssl");
    if (!g_ssl_module) {
        // No ssl module: TLS is unavailable (pyloop._tls says so), the rest works.
        PyErr_Clear();
        return 0;
    }
    PyObject* want_read = PyObject_GetAttrString(g_ssl_module, "SSLWantReadError");
    PyObject* syscall = PyObject_GetAttrString(g_ssl_module, "SSLSyscallError");
    g_ssl_again = (want_read && syscall) ? PyTuple_Pack(2, want_read, syscall) : nullptr;
    Py_XDECREF(want_read);
    Py_XDECREF(syscall);
    g_ssl_error = PyObject_GetAttrString(g_ssl_module, "SSLError");
    g_sslobject_type = PyObject_GetAttrString(g_ssl_module, "SSLObject");
    g_certificate_error = PyObject_GetAttrString(g_ssl_module, "CertificateError");
    PyObject* exceptions = PyImport_ImportModule("asyncio.exceptions");
    g_cancelled_error = exceptions ? PyObject_GetAttrString(exceptions, "CancelledError") : nullptr;
    Py_XDECREF(exceptions);
    if (!g_ssl_again || !g_ssl_error || !g_sslobject_type || !g_certificate_error || !g_cancelled_error) return -1;
    struct Name {
        PyObject** slot;
        const char* text;
    } names[] = {
        {&s_read, "read"}, {&s_write, "write"}, {&s_do_handshake, "do_handshake"}, {&s_unwrap, "unwrap"},
        {&s_getpeercert, "getpeercert"}, {&s_cipher, "cipher"}, {&s_compression, "compression"},
        {&s_pending, "pending"}, {&s_data_received, "data_received"}, {&s_buffer_updated, "buffer_updated"},
        {&s_get_buffer, "get_buffer"}, {&s_eof_received, "eof_received"}, {&s_connection_made, "connection_made"},
        {&s_connection_lost, "connection_lost"}, {&s_pause_writing, "pause_writing"},
        {&s_resume_writing, "resume_writing"}, {&s_call_soon, "call_soon"}, {&s_call_later, "call_later"},
        {&s_cancel, "cancel"}, {&s_force_close, "_force_close"}, {&s_abort, "abort"}, {&s_close, "close"},
        {&s_pause_reading, "pause_reading"}, {&s_resume_reading, "resume_reading"},
        {&s_get_extra_info, "get_extra_info"}, {&s_set_result, "set_result"}, {&s_set_exception, "set_exception"},
        {&s_cancelled, "cancelled"},
        {&s_call_exception_handler, "call_exception_handler"}, {&s_wrap_bio, "wrap_bio"}, {&s_time, "time"},
        {&s_shutdown, "shutdown"}, {&s_sslobj_attr, "_sslobj"},
    };
    for (auto& n : names)
        if (!(*n.slot = PyUnicode_InternFromString(n.text))) return -1;
    return 0;
}

}  // namespace tls_internal

}  // namespace pyloop
