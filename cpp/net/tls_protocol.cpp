// TlsProtocol as a Python type: the asyncio protocol interface the raw transport (or
// any transport, for TLS inside TLS) calls, the callbacks the state machine schedules,
// creation, the collector's slots. The state machine itself is tls.cpp.
#include "net/tls_internal.hpp"

#include "core/loop_object.hpp"
#include "core/loop.hpp"
#include "net/stream.hpp"
#include "net/stream_io.hpp"

#include <structmember.h>

namespace pyloop {

PyTypeObject* TlsProtocolType = nullptr;

using namespace tls_internal;

// ---- Python methods: the asyncio protocol interface ---------------------------------------

namespace {

PyObject* done(int r) {
    if (r < 0) return nullptr;
    Py_RETURN_NONE;
}

PyObject* Tls_connection_made(PyObject* self, PyObject* transport) {
    TlsProtocolObject* p = P(self);
    Py_XSETREF(p->transport, Py_NewRef(transport));
    p->stream = PyObject_TypeCheck(transport, StreamTransportType) ? reinterpret_cast<TransportObject*>(transport)
                                                                  : nullptr;
    // asyncio's _start_handshake.
    if (p->core->debug()) {
        log_debug(p, "%r starts SSL handshake", nullptr);
        Ref now(call0(p->loop, s_time));
        p->handshake_start = now ? PyFloat_AsDouble(now.get()) : 0.0;
        PyErr_Clear();
    }
    if (set_state(p, TlsState::DoHandshake) < 0) return nullptr;
    Ref check(method(p, PY_NAME("_check_handshake_timeout")));
    if (!check) return nullptr;
    PyObject* timer = call2(p->loop, s_call_later, p->handshake_timeout, check.get());
    if (!timer) return nullptr;
    Py_XSETREF(p->handshake_timer, timer);
    // A server with nothing received yet: SSL_do_handshake could only ask for more (an
    // SSLWantReadError, nothing to send), so the first step waits for the ClientHello
    // (unless start_tls() put bytes a StreamReader held into the incoming BIO).
    if (p->server_side && p->scan.fed == 0) {
        Ref pending(PyObject_GetAttr(p->incoming, s_pending));
        if (!pending) return nullptr;
        if (PyLong_AsLong(pending.get()) == 0) Py_RETURN_NONE;
    }
    return done(do_handshake(p));
}

PyObject* Tls_connection_lost(PyObject* self, PyObject* exc) {
    TlsProtocolObject* p = P(self);
    Ref keep(Py_NewRef(self));
    while (!p->backlog->empty()) {
        Py_DECREF(p->backlog->front());
        p->backlog->pop_front();
    }
    if (discard(call0(p->outgoing, s_read)) < 0) return nullptr;
    p->conn_lost++;
    // A server connection lost with an error during its handshake (a handshake timeout,
    // a reset): asyncio's _accept_connection2 gets it from the waiter and reports it in
    // debug mode, as for a failed handshake.
    if (p->accepted && p->state == TlsState::DoHandshake && exc != Py_None) accept_failed(p, exc);
    if (p->app_transport) p->app_transport->closed = true;
    if (p->state != TlsState::DoHandshake &&
        (p->app_state == AppState::ConMade || p->app_state == AppState::Eof)) {
        p->app_state = AppState::ConLost;
        Ref lost(PyObject_GetAttr(p->app_protocol, s_connection_lost));
        if (!lost || discard(call_soon(p, lost.get(), exc)) < 0) return nullptr;
    }
    p->state = TlsState::Unwrapped;
    p->stream = nullptr;
    Py_CLEAR(p->transport);
    Py_CLEAR(p->app_transport);
    Py_SETREF(p->app_protocol, Py_NewRef(Py_None));
    wakeup_waiter(p, exc == Py_None ? nullptr : exc);
    cancel_timer(&p->shutdown_timer);
    cancel_timer(&p->handshake_timer);
    Py_RETURN_NONE;
}

// Over a transport that is not pyloop's: asyncio's get_buffer/buffer_updated.
PyObject* Tls_get_buffer(PyObject* self, PyObject* arg) {
    TlsProtocolObject* p = P(self);
    Py_ssize_t want = PyLong_AsSsize_t(arg);
    if (want == -1 && PyErr_Occurred()) return nullptr;
    if (want <= 0 || want > kMaxSize) want = kMaxSize;
    if (!p->read_buffer || PyByteArray_GET_SIZE(p->read_buffer) < want) {
        PyObject* b = PyByteArray_FromStringAndSize(nullptr, want);
        if (!b) return nullptr;
        Py_XSETREF(p->read_buffer, b);
    }
    return PyMemoryView_FromObject(p->read_buffer);
}

PyObject* Tls_buffer_updated(PyObject* self, PyObject* arg) {
    TlsProtocolObject* p = P(self);
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (!p->read_buffer || n < 0 || n > PyByteArray_GET_SIZE(p->read_buffer)) {
        PyErr_SetString(PyExc_ValueError, "buffer_updated() without a matching get_buffer()");
        return nullptr;
    }
    Ref keep(Py_NewRef(self));
    if (tls_feed(self, PyByteArray_AS_STRING(p->read_buffer), static_cast<size_t>(n)) < 0) return nullptr;
    return done(tls_received(self));
}

PyObject* Tls_data_received(PyObject* self, PyObject* data) {
    // A transport that does not know BufferedProtocol hands bytes over.
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
    Ref keep(Py_NewRef(self));
    int r = tls_feed(self, static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
    PyBuffer_Release(&view);
    if (r < 0) return nullptr;
    return done(tls_received(self));
}

PyObject* Tls_eof_received(PyObject* self, PyObject*) {
    TlsProtocolObject* p = P(self);
    Ref keep(Py_NewRef(self));
    p->eof_received = true;
    if (p->core->debug()) log_debug(p, "%r received EOF", nullptr);
    int r = 0;
    switch (p->state) {
        case TlsState::DoHandshake: {
            Ref exc(PyObject_CallNoArgs(PyExc_ConnectionResetError));
            r = exc ? on_handshake_complete(p, exc.get()) : -1;
            break;
        }
        case TlsState::Wrapped:
            r = set_state(p, TlsState::Flushing);
            if (r == 0 && p->app_reading_paused) Py_RETURN_TRUE;
            if (r == 0) r = do_flush(p);
            break;
        case TlsState::Flushing:
            r = do_write(p);
            if (r == 0) r = set_state(p, TlsState::Shutdown);
            if (r == 0) r = do_shutdown(p);
            break;
        case TlsState::Shutdown:
            r = do_shutdown(p);
            break;
        case TlsState::Unwrapped:
            break;
    }
    if (r < 0) {
        if (PyErr_ExceptionMatches(PyExc_Exception) && p->transport) {
            PyObject* exc = fetch_exception();
            transport_call(p, s_close);
            PyErr_Clear();
            restore_exception(exc);
        }
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* Tls_pause_writing(PyObject* self, PyObject*) {
    P(self)->ssl_writing_paused = true;
    Py_RETURN_NONE;
}

PyObject* Tls_resume_writing(PyObject* self, PyObject*) {
    TlsProtocolObject* p = P(self);
    p->ssl_writing_paused = false;
    Ref keep(Py_NewRef(self));
    return done(process_outgoing(p));
}

PyObject* Tls_check_handshake_timeout(PyObject* self, PyObject*) {
    TlsProtocolObject* p = P(self);
    if (p->state != TlsState::DoHandshake) Py_RETURN_NONE;
    Ref msg(PyUnicode_FromFormat("SSL handshake is taking longer than %S seconds: aborting the connection",
                                 p->handshake_timeout));
    Ref exc(msg ? PyObject_CallOneArg(PyExc_ConnectionAbortedError, msg.get()) : nullptr);
    if (!exc) return nullptr;
    Ref keep(Py_NewRef(self));
    fatal_error(p, exc.get());
    Py_RETURN_NONE;
}

PyObject* Tls_check_shutdown_timeout(PyObject* self, PyObject*) {
    TlsProtocolObject* p = P(self);
    if (p->state != TlsState::Flushing && p->state != TlsState::Shutdown) Py_RETURN_NONE;
    Ref exc(PyObject_CallFunction(PyExc_TimeoutError, "s", "SSL shutdown timed out"));
    if (!exc) return nullptr;
    return done(transport_call(p, s_force_close, exc.get()));
}

PyObject* Tls_do_read(PyObject* self, PyObject*) { return done(do_read(P(self))); }

// The callback resume_reading() schedules.
PyObject* Tls_resume(PyObject* self, PyObject*) {
    TlsProtocolObject* p = P(self);
    Ref keep(Py_NewRef(self));
    switch (p->state) {
        case TlsState::Wrapped: return done(do_read(p));
        case TlsState::Flushing: return done(do_flush(p));
        case TlsState::Shutdown: return done(do_shutdown(p));
        default: Py_RETURN_NONE;
    }
}

PyObject* Tls_get_app_transport(PyObject* self, void*) {
    TlsProtocolObject* p = P(self);
    return Py_NewRef(p->app_transport ? reinterpret_cast<PyObject*>(p->app_transport) : Py_None);
}

PyObject* Tls_get_app_protocol(PyObject* self, void*) { return Py_NewRef(P(self)->app_protocol); }

PyObject* Tls_get_state(PyObject* self, void*) { return PyUnicode_FromString(state_name(P(self)->state) + 17); }

// TlsProtocol(loop, app_protocol, sslcontext, waiter, server_side, server_hostname,
//             call_connection_made, ssl_handshake_timeout, ssl_shutdown_timeout[, accepted]):
// the arguments checked and defaulted by pyloop._tls already.
PyObject* Tls_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    PyObject *loop, *app_protocol, *sslcontext, *waiter, *server_hostname, *hs_timeout, *sd_timeout;
    int server_side, call_connection_made, accepted = 0;
    if (kwargs && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "TlsProtocol() takes positional arguments only");
        return nullptr;
    }
    if (!PyArg_ParseTuple(args, "OOOOpOpOO|p:TlsProtocol", &loop, &app_protocol, &sslcontext, &waiter, &server_side,
                          &server_hostname, &call_connection_made, &hs_timeout, &sd_timeout, &accepted))
        return nullptr;
    LoopCore* core = core_of(loop);
    if (!core) return nullptr;
    Ref self(type->tp_alloc(type, 0));
    if (!self) return nullptr;
    TlsProtocolObject* p = P(self.get());
    p->backlog = new std::deque<PyObject*>();
    p->core = core;
    p->loop = Py_NewRef(loop);
    p->app_protocol = Py_NewRef(Py_None);
    p->sslcontext = Py_NewRef(sslcontext);
    p->waiter = waiter == Py_None ? nullptr : Py_NewRef(waiter);
    p->handshake_timeout = Py_NewRef(hs_timeout);
    p->shutdown_timeout = Py_NewRef(sd_timeout);
    p->server_side = server_side != 0;
    p->accepted = accepted != 0;
    p->app_state = call_connection_made ? AppState::Init : AppState::ConMade;
    p->extra = Py_BuildValue("{s:O}", "sslcontext", sslcontext);
    if (!p->extra || tls::set_app_protocol(p, app_protocol) < 0) return nullptr;
    p->incoming = PyObject_CallMethod(g_ssl_module, "MemoryBIO", nullptr);
    p->outgoing = p->incoming ? PyObject_CallMethod(g_ssl_module, "MemoryBIO", nullptr) : nullptr;
    if (!p->outgoing) return nullptr;
    PyObject* hostname = (server_hostname != Py_None && PyObject_IsTrue(server_hostname) && !server_side)
                             ? server_hostname : Py_None;
    Ref wrap_args(Py_BuildValue("(OO)", p->incoming, p->outgoing));
    Ref wrap_kw(Py_BuildValue("{s:O,s:O}", "server_side", server_side ? Py_True : Py_False, "server_hostname",
                              hostname));
    Ref wrap(PyObject_GetAttr(sslcontext, s_wrap_bio));
    if (!wrap_args || !wrap_kw || !wrap) return nullptr;
    p->sslobj = PyObject_Call(wrap.get(), wrap_args.get(), wrap_kw.get());
    if (!p->sslobj) return nullptr;
    p->ssl = reinterpret_cast<PyObject*>(Py_TYPE(p->sslobj)) == g_sslobject_type
                 ? PyObject_GetAttr(p->sslobj, s_sslobj_attr)
                 : Py_NewRef(p->sslobj);
    if (!p->ssl) return nullptr;
    if (tls::set_water_marks(&p->in_marks, Py_None, Py_None, kHighWaterSslRead) < 0 ||
        tls::set_water_marks(&p->out_marks, Py_None, Py_None, kHighWaterSslWrite) < 0)
        return nullptr;
    p->app_transport = tls_transport_new(p);
    if (!p->app_transport) return nullptr;
    p->app_transport_created = true;
    PyObject* r = self.p;
    self.p = nullptr;
    return r;
}

int Tls_traverse(PyObject* self, visitproc visit, void* arg) {
    TlsProtocolObject* p = P(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(p->loop);
    Py_VISIT(p->app_protocol);
    Py_VISIT(reinterpret_cast<PyObject*>(p->app_transport));
    Py_VISIT(p->transport);
    Py_VISIT(p->sslcontext);
    Py_VISIT(p->sslobj);
    Py_VISIT(p->ssl);
    Py_VISIT(p->extra);
    Py_VISIT(p->waiter);
    Py_VISIT(p->handshake_timer);
    Py_VISIT(p->shutdown_timer);
    if (p->backlog)
        for (PyObject* o : *p->backlog) Py_VISIT(o);
    return 0;
}

// Breaks reference cycles. What it leaves keeps every method safe to call (the
// protocol is simply unwrapped and without an application), should a finalizer of
// the same garbage still reach it.
int Tls_clear(PyObject* self) {
    TlsProtocolObject* p = P(self);
    p->state = TlsState::Unwrapped;
    p->stream = nullptr;
    if (p->app_protocol) Py_SETREF(p->app_protocol, Py_NewRef(Py_None));
    Py_CLEAR(p->app_transport);
    Py_CLEAR(p->transport);
    Py_CLEAR(p->waiter);
    Py_CLEAR(p->handshake_timer);
    Py_CLEAR(p->shutdown_timer);
    if (p->extra) PyDict_Clear(p->extra);
    if (p->backlog) {
        while (!p->backlog->empty()) {
            Py_DECREF(p->backlog->front());
            p->backlog->pop_front();
        }
    }
    return 0;
}

void Tls_dealloc(PyObject* self) {
    TlsProtocolObject* p = P(self);
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (p->weakrefs) PyObject_ClearWeakRefs(self);
    Tls_clear(self);
    delete p->backlog;
    Py_CLEAR(p->app_protocol);
    Py_CLEAR(p->extra);
    Py_CLEAR(p->sslobj);
    Py_CLEAR(p->ssl);
    Py_CLEAR(p->loop);
    Py_CLEAR(p->sslcontext);
    Py_CLEAR(p->incoming);
    Py_CLEAR(p->outgoing);
    Py_CLEAR(p->handshake_timeout);
    Py_CLEAR(p->shutdown_timeout);
    Py_CLEAR(p->read_buffer);
    Py_CLEAR(p->in_marks.high);
    Py_CLEAR(p->in_marks.low);
    Py_CLEAR(p->out_marks.high);
    Py_CLEAR(p->out_marks.low);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyMethodDef Tls_methods[] = {
    {"connection_made", Tls_connection_made, METH_O, "Start the TLS handshake."},
    {"connection_lost", Tls_connection_lost, METH_O, nullptr},
    {"get_buffer", Tls_get_buffer, METH_O, nullptr},
    {"buffer_updated", Tls_buffer_updated, METH_O, nullptr},
    {"data_received", Tls_data_received, METH_O, nullptr},
    {"eof_received", Tls_eof_received, METH_NOARGS, nullptr},
    {"pause_writing", Tls_pause_writing, METH_NOARGS, nullptr},
    {"resume_writing", Tls_resume_writing, METH_NOARGS, nullptr},
    {"_check_handshake_timeout", Tls_check_handshake_timeout, METH_NOARGS, nullptr},
    {"_check_shutdown_timeout", Tls_check_shutdown_timeout, METH_NOARGS, nullptr},
    {"_do_read", Tls_do_read, METH_NOARGS, nullptr},
    {"_resume", Tls_resume, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef Tls_getset[] = {
    {"_app_transport", Tls_get_app_transport, nullptr, nullptr, nullptr},
    {"_app_protocol", Tls_get_app_protocol, nullptr, nullptr, nullptr},
    {"_state", Tls_get_state, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef Tls_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TlsProtocolObject, weakrefs), READONLY, nullptr},
    {"_loop", T_OBJECT, offsetof(TlsProtocolObject, loop), READONLY, nullptr},
    {"_sslobj", T_OBJECT, offsetof(TlsProtocolObject, sslobj), READONLY, nullptr},
    {"_transport", T_OBJECT, offsetof(TlsProtocolObject, transport), READONLY, nullptr},
    // asyncio's names, read by start_tls (the bytes a StreamReader already holds go to
    // _incoming) and by aiohttp (_sslcontext)
    {"_incoming", T_OBJECT, offsetof(TlsProtocolObject, incoming), READONLY, nullptr},
    {"_sslcontext", T_OBJECT, offsetof(TlsProtocolObject, sslcontext), READONLY, nullptr},
    {"_app_reading_paused", T_BOOL, offsetof(TlsProtocolObject, app_reading_paused), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot Tls_slots[] = {
    {Py_tp_doc, const_cast<char*>("asyncio's SSLProtocol in C++: TLS over a stream transport.")},
    {Py_tp_new, reinterpret_cast<void*>(Tls_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Tls_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Tls_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Tls_clear)},
    {Py_tp_methods, Tls_methods},
    {Py_tp_getset, Tls_getset},
    {Py_tp_members, Tls_members},
    {0, nullptr},
};

PyType_Spec Tls_spec = {
    "pyloop.TlsProtocol", sizeof(TlsProtocolObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, Tls_slots,
};

}  // namespace

int init_tls_types(PyObject* module) {
    int r = init_state();
    if (r < 0 || !g_ssl_module) return r;  // no ssl module: TLS is unavailable, the rest works
    PyObject* bases = PyTuple_Pack(1, stream_io::g_buffered_protocol);
    if (!bases) return -1;
    TlsProtocolType = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &Tls_spec, bases));
    Py_DECREF(bases);
    if (!TlsProtocolType) return -1;
    if (PyModule_AddObjectRef(module, "TlsProtocol", reinterpret_cast<PyObject*>(TlsProtocolType)) < 0) return -1;
    return init_tls_transport_type(module);
}

}  // namespace pyloop
