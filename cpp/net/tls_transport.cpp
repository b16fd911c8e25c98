// TlsTransport: the transport a TLS connection's application sees (asyncio's
// _SSLProtocolTransport), a CPython type that subclasses asyncio.Transport. It only
// keeps `closed` and forwards to its TlsProtocol (tls.cpp), as asyncio's does.
#include "net/tls.hpp"

#include "net/stream.hpp"

#include <structmember.h>

namespace pyloop {

PyTypeObject* TlsTransportType = nullptr;

namespace {

inline TlsTransportObject* T(PyObject* o) { return reinterpret_cast<TlsTransportObject*>(o); }

PyObject* done(int r) {
    if (r < 0) return nullptr;
    Py_RETURN_NONE;
}

// The protocol, or nullptr with AttributeError set (asyncio's after a second close()).
TlsProtocolObject* proto_of(PyObject* self) {
    TlsProtocolObject* p = T(self)->proto;
    if (!p) PyErr_SetString(PyExc_AttributeError, "'NoneType' object has no attribute '_ssl_protocol'");
    return p;
}

PyObject* TlsT_get_extra_info(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    static const char* const names[] = {"name", "default"};
    PyObject* vals[2] = {nullptr, Py_None};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs < 1 && nkw == 0) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info() missing required argument 'name'");
        return nullptr;
    }
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info() takes at most 2 arguments");
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) vals[i] = args[i];
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject* k = PyTuple_GET_ITEM(kwnames, i);
        int which = -1;
        for (int j = 0; j < 2; j++)
            if (PyUnicode_CompareWithASCIIString(k, names[j]) == 0) which = j;
        if (which < 0 || (which < nargs)) {
            PyErr_Format(PyExc_TypeError, "get_extra_info() got an unexpected keyword argument '%U'", k);
            return nullptr;
        }
        vals[which] = args[nargs + i];
    }
    if (!vals[0]) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info() missing required argument 'name'");
        return nullptr;
    }
    TlsProtocolObject* p = proto_of(self);
    return p ? tls::get_extra_info(p, vals[0], vals[1]) : nullptr;
}

PyObject* TlsT_set_protocol(PyObject* self, PyObject* protocol) {
    TlsProtocolObject* p = proto_of(self);
    return p ? done(tls::set_app_protocol(p, protocol)) : nullptr;
}

PyObject* TlsT_get_protocol(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    return p ? Py_NewRef(p->app_protocol) : nullptr;
}

PyObject* TlsT_is_closing(PyObject* self, PyObject*) { return PyBool_FromLong(T(self)->closed); }

PyObject* TlsT_close(PyObject* self, PyObject*) {
    TlsTransportObject* t = T(self);
    if (t->closed) {
        // asyncio forgets its protocol on a second close().
        TlsProtocolObject* p = t->proto;
        t->proto = nullptr;
        Py_XDECREF(reinterpret_cast<PyObject*>(p));
        Py_RETURN_NONE;
    }
    t->closed = true;
    if (!t->proto) Py_RETURN_NONE;
    PyObject* keep = Py_NewRef(reinterpret_cast<PyObject*>(t->proto));
    int r = tls::start_shutdown(t->proto);
    Py_DECREF(keep);
    return done(r);
}

PyObject* TlsT_force_close(PyObject* self, PyObject* exc) {
    TlsTransportObject* t = T(self);
    t->closed = true;
    if (!t->proto) Py_RETURN_NONE;
    PyObject* keep = Py_NewRef(reinterpret_cast<PyObject*>(t->proto));
    int r = tls::abort(t->proto, exc == Py_None ? nullptr : exc);
    Py_DECREF(keep);
    return done(r);
}

PyObject* TlsT_abort(PyObject* self, PyObject*) { return TlsT_force_close(self, Py_None); }

PyObject* TlsT_is_reading(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    return p ? PyBool_FromLong(!p->app_reading_paused) : nullptr;
}

PyObject* TlsT_pause_reading(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    if (!p) return nullptr;
    p->app_reading_paused = true;
    Py_RETURN_NONE;
}

PyObject* TlsT_resume_reading(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    return p ? done(tls::resume_reading(p)) : nullptr;
}

bool parse_limits(PyObject* args, PyObject* kwargs, const char* fname, PyObject** high, PyObject** low) {
    static const char* kwlist[] = {"high", "low", nullptr};
    *high = *low = Py_None;
    char fmt[64];
    PyOS_snprintf(fmt, sizeof fmt, "|OO:%s", fname);
    return PyArg_ParseTupleAndKeywords(args, kwargs, fmt, const_cast<char**>(kwlist), high, low);
}

PyObject* TlsT_set_write_buffer_limits(PyObject* self, PyObject* args, PyObject* kwargs) {
    PyObject *high, *low;
    if (!parse_limits(args, kwargs, "set_write_buffer_limits", &high, &low)) return nullptr;
    TlsProtocolObject* p = proto_of(self);
    if (!p || tls::set_water_marks(&p->out_marks, high, low, 512) < 0) return nullptr;
    return done(tls::control_app_writing(p));
}

PyObject* TlsT_set_read_buffer_limits(PyObject* self, PyObject* args, PyObject* kwargs) {
    PyObject *high, *low;
    if (!parse_limits(args, kwargs, "set_read_buffer_limits", &high, &low)) return nullptr;
    TlsProtocolObject* p = proto_of(self);
    if (!p || tls::set_water_marks(&p->in_marks, high, low, 256) < 0) return nullptr;
    return done(tls::control_ssl_reading(p));
}

PyObject* TlsT_get_write_buffer_limits(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    return p ? PyTuple_Pack(2, p->out_marks.low, p->out_marks.high) : nullptr;
}

PyObject* TlsT_get_read_buffer_limits(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    return p ? PyTuple_Pack(2, p->in_marks.low, p->in_marks.high) : nullptr;
}

PyObject* TlsT_get_write_buffer_size(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    if (!p) return nullptr;
    Py_ssize_t n = tls::write_buffer_size(p);
    return n < 0 ? nullptr : PyLong_FromSsize_t(n);
}

PyObject* TlsT_get_read_buffer_size(PyObject* self, PyObject*) {
    TlsProtocolObject* p = proto_of(self);
    if (!p) return nullptr;
    Py_ssize_t n = tls::read_buffer_size(p);
    return n < 0 ? nullptr : PyLong_FromSsize_t(n);
}

PyObject* TlsT_write(PyObject* self, PyObject* data) {
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject* name = PyObject_GetAttrString(reinterpret_cast<PyObject*>(Py_TYPE(data)), "__name__");
        if (name) PyErr_Format(PyExc_TypeError, "data: expecting a bytes-like instance, got %U", name);
        Py_XDECREF(name);
        return nullptr;
    }
    int empty = PyObject_Not(data);
    if (empty < 0) return nullptr;
    if (empty) Py_RETURN_NONE;
    TlsProtocolObject* p = proto_of(self);
    return p ? done(tls::write_appdata(p, &data, 1)) : nullptr;
}

// asyncio's test hook (its own test_ssl fills the backlog with it): the data joins the
// backlog as if written while the handshake ran, and goes out with the next write step.
PyObject* TlsT_test_append_write_backlog(PyObject* self, PyObject* data) {
    TlsProtocolObject* p = proto_of(self);
    if (!p) return nullptr;
    Py_ssize_t len = PyObject_Size(data);
    if (len < 0) return nullptr;
    tls::append_backlog(p, data, len);
    Py_RETURN_NONE;
}

PyObject* TlsT_writelines(PyObject* self, PyObject* list_of_data) {
    TlsProtocolObject* p = proto_of(self);
    if (!p) return nullptr;
    PyObject* seq = PySequence_Fast(list_of_data, "writelines() argument must be iterable");
    if (!seq) return nullptr;
    int r = tls::write_appdata(p, PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq));
    Py_DECREF(seq);
    return done(r);
}

PyObject* TlsT_write_eof(PyObject*, PyObject*) {
    PyErr_SetNone(PyExc_NotImplementedError);
    return nullptr;
}

PyObject* TlsT_can_write_eof(PyObject*, PyObject*) { Py_RETURN_FALSE; }

PyObject* TlsT_get_protocol_paused(PyObject* self, void*) {
    TlsProtocolObject* p = proto_of(self);
    return p ? PyBool_FromLong(p->app_writing_paused) : nullptr;
}

PyObject* TlsT_get_ssl_protocol(PyObject* self, void*) {
    TlsTransportObject* t = T(self);
    return Py_NewRef(t->proto ? reinterpret_cast<PyObject*>(t->proto) : Py_None);
}

PyObject* TlsT_get_closed(PyObject* self, void*) { return PyBool_FromLong(T(self)->closed); }

// asyncio's __del__: an unclosed transport warns.
void TlsT_finalize(PyObject* self) {
    TlsTransportObject* t = T(self);
    if (t->closed) return;
    t->closed = true;
    PyObject* exc = fetch_exception();
    if (PyErr_WarnEx(PyExc_ResourceWarning, "unclosed transport <pyloop.TlsTransport object>", 1) < 0)
        PyErr_WriteUnraisable(self);
    if (exc) restore_exception(exc);
}

int TlsT_traverse(PyObject* self, visitproc visit, void* arg) {
    TlsTransportObject* t = T(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(t->extra);
    Py_VISIT(t->dict);
    Py_VISIT(t->loop);
    Py_VISIT(reinterpret_cast<PyObject*>(t->proto));
    return 0;
}

int TlsT_clear(PyObject* self) {
    TlsTransportObject* t = T(self);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->dict);
    PyObject* p = reinterpret_cast<PyObject*>(t->proto);
    t->proto = nullptr;
    Py_XDECREF(p);
    return 0;
}

void TlsT_dealloc(PyObject* self) {
    if (PyObject_CallFinalizerFromDealloc(self) < 0) return;  // resurrected
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    TlsTransportObject* t = T(self);
    if (t->weakrefs) PyObject_ClearWeakRefs(self);
    TlsT_clear(self);
    Py_CLEAR(t->loop);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyObject* TlsT_new_from_python(PyTypeObject* type, PyObject*, PyObject*) {
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances directly", type->tp_name);
    return nullptr;
}

PyMethodDef TlsT_methods[] = {
    {"get_extra_info", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(TlsT_get_extra_info)),
     METH_FASTCALL | METH_KEYWORDS, "Optional transport information (ssl_object, peercert, cipher, ...)."},
    {"set_protocol", TlsT_set_protocol, METH_O, nullptr},
    {"get_protocol", TlsT_get_protocol, METH_NOARGS, nullptr},
    {"is_closing", TlsT_is_closing, METH_NOARGS, nullptr},
    {"close", TlsT_close, METH_NOARGS, "Send close_notify after the buffered data; then connection_lost(None)."},
    {"abort", TlsT_abort, METH_NOARGS, "Close now, dropping buffered data."},
    {"_force_close", TlsT_force_close, METH_O, nullptr},
    {"is_reading", TlsT_is_reading, METH_NOARGS, nullptr},
    {"pause_reading", TlsT_pause_reading, METH_NOARGS, nullptr},
    {"resume_reading", TlsT_resume_reading, METH_NOARGS, nullptr},
    {"set_write_buffer_limits",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(TlsT_set_write_buffer_limits)),
     METH_VARARGS | METH_KEYWORDS, nullptr},
    {"get_write_buffer_limits", TlsT_get_write_buffer_limits, METH_NOARGS, nullptr},
    {"get_write_buffer_size", TlsT_get_write_buffer_size, METH_NOARGS, nullptr},
    {"set_read_buffer_limits",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(TlsT_set_read_buffer_limits)),
     METH_VARARGS | METH_KEYWORDS, nullptr},
    {"get_read_buffer_limits", TlsT_get_read_buffer_limits, METH_NOARGS, nullptr},
    {"get_read_buffer_size", TlsT_get_read_buffer_size, METH_NOARGS, nullptr},
    {"write", TlsT_write, METH_O, "Encrypt and send bytes (buffered until the handshake completes)."},
    {"writelines", TlsT_writelines, METH_O, nullptr},
    {"write_eof", TlsT_write_eof, METH_NOARGS, nullptr},
    {"_test__append_write_backlog", TlsT_test_append_write_backlog, METH_O, nullptr},
    {"can_write_eof", TlsT_can_write_eof, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef TlsT_getset[] = {
    {"_protocol_paused", TlsT_get_protocol_paused, nullptr, nullptr, nullptr},
    {"_ssl_protocol", TlsT_get_ssl_protocol, nullptr, nullptr, nullptr},
    {"_closed", TlsT_get_closed, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef TlsT_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TlsTransportObject, weakrefs), READONLY, nullptr},
    {"__dictoffset__", T_PYSSIZET, offsetof(TlsTransportObject, dict), READONLY, nullptr},
    {"_loop", T_OBJECT, offsetof(TlsTransportObject, loop), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot TlsT_slots[] = {
    {Py_tp_doc, const_cast<char*>("The transport of a TLS connection (asyncio's _SSLProtocolTransport).")},
    {Py_tp_new, reinterpret_cast<void*>(TlsT_new_from_python)},
    {Py_tp_dealloc, reinterpret_cast<void*>(TlsT_dealloc)},
    {Py_tp_finalize, reinterpret_cast<void*>(TlsT_finalize)},
    {Py_tp_traverse, reinterpret_cast<void*>(TlsT_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(TlsT_clear)},
    {Py_tp_methods, TlsT_methods},
    {Py_tp_getset, TlsT_getset},
    {Py_tp_members, TlsT_members},
    {0, nullptr},
};

PyType_Spec TlsT_spec = {
    "pyloop.TlsTransport", sizeof(TlsTransportObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, TlsT_slots,
};

}  // namespace

TlsTransportObject* tls_transport_new(TlsProtocolObject* proto) {
    auto* t = reinterpret_cast<TlsTransportObject*>(TlsTransportType->tp_alloc(TlsTransportType, 0));
    if (!t) return nullptr;
    t->loop = Py_NewRef(proto->loop);
    t->proto = reinterpret_cast<TlsProtocolObject*>(Py_NewRef(reinterpret_cast<PyObject*>(proto)));
    return t;
}

int init_tls_transport_type(PyObject* module) {
    TlsTransportType =
        new_transport_type(module, &TlsT_spec, offsetof(TlsTransportObject, extra) + sizeof(PyObject*));
    if (!TlsTransportType) return -1;
    PyObject* type = reinterpret_cast<PyObject*>(TlsTransportType);
    PyObject* constants = PyImport_ImportModule("asyncio.constants");
    PyObject* mode = constants ? PyObject_GetAttrString(constants, "_SendfileMode") : nullptr;
    PyObject* fallback = mode ? PyObject_GetAttrString(mode, "FALLBACK") : nullptr;
    Py_XDECREF(constants);
    Py_XDECREF(mode);
    int r = fallback ? PyObject_SetAttrString(type, "_sendfile_compatible", fallback) : -1;
    Py_XDECREF(fallback);
    if (r < 0 || PyObject_SetAttrString(type, "_start_tls_compatible", Py_True) < 0) return -1;
    return PyModule_AddObjectRef(module, "TlsTransport", type);
}

}  // namespace pyloop
