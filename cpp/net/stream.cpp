// StreamTransport as a Python type: its methods, the collector's slots, creation.
// The libuv side is in stream_read.cpp, stream_write.cpp and stream_io.cpp (closing).
#include "net/stream.hpp"

#include "core/loop_object.hpp"
#include "core/loop.hpp"
#include "net/stream_io.hpp"
#include "net/stream_methods.hpp"
#include "net/server.hpp"
#include "net/tls.hpp"
#include "uv/error.hpp"

#include <fcntl.h>
#include <structmember.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace pyloop {

PyTypeObject* StreamTransportType = nullptr;

using namespace stream_io;

// ---- Python methods -------------------------------------------------------------------

static PyObject* Transport_write(PyObject* self, PyObject* data) {
    TransportObject* t = T(self);
    Py_buffer view;
    // asyncio takes bytes, bytearray and memoryview (subclasses too), nothing else.
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
#if PY_VERSION_HEX >= 0x030E0000  // asyncio 3.14 names the three types
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes, bytearray, or memoryview object, not '%.100s'",
                     Py_TYPE(data)->tp_name);
#else
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.100s'",
                     Py_TYPE(data)->tp_name);
#endif
        return nullptr;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        // A non-contiguous memoryview: asyncio's send() fails on it, a fatal write error.
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) return nullptr;
        PyObject* exc = fetch_exception();
        fatal_error(t, exc, "Fatal write error on socket transport");
        Py_DECREF(exc);
        Py_RETURN_NONE;
    }
    int r = write_bytes(t, static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
    PyBuffer_Release(&view);
    if (r < 0) return nullptr;
    Py_RETURN_NONE;
}

// asyncio 3.12+'s writelines: one write of all the pieces (a false value writes
// nothing); before 3.12, WriteTransport's join-and-write, whose errors it keeps.
static PyObject* Transport_writelines(PyObject* self, PyObject* list_of_data) {
    TransportObject* t = T(self);
    constexpr bool kPy312 = PY_VERSION_HEX >= 0x030C0000;
    if (kPy312) {
        if (write_bytes(t, "", 0) < 0) return nullptr;  // asyncio's checks: after write_eof(), during sendfile
        int truth = PyObject_IsTrue(list_of_data);
        if (truth <= 0) return truth < 0 ? nullptr : Py_NewRef(Py_None);
    }
    PyObject* seq = PySequence_Fast(list_of_data, "can only join an iterable");
    if (!seq) return nullptr;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    std::vector<Py_buffer> views(static_cast<size_t>(n));
    std::vector<uv_buf_t> bufs(static_cast<size_t>(n));
    Py_ssize_t got = 0;
    size_t total = 0;
    int r = 0;
    for (; got < n; got++) {
        PyObject* item = PySequence_Fast_GET_ITEM(seq, got);
        if (!PyObject_CheckBuffer(item)) {
            if (kPy312)
                PyErr_Format(PyExc_TypeError, "memoryview: a bytes-like object is required, not '%.100s'",
                             Py_TYPE(item)->tp_name);
            else
                PyErr_Format(PyExc_TypeError, "sequence item %zd: expected a bytes-like object, %.80s found", got,
                             Py_TYPE(item)->tp_name);
            r = -1;
            break;
        }
        if (PyObject_GetBuffer(item, &views[static_cast<size_t>(got)], PyBUF_SIMPLE) < 0) {
            r = -1;
            break;
        }
        bufs[static_cast<size_t>(got)] = uv_buf_init(static_cast<char*>(views[static_cast<size_t>(got)].buf),
                                                    static_cast<unsigned>(views[static_cast<size_t>(got)].len));
        total += static_cast<size_t>(views[static_cast<size_t>(got)].len);
    }
    if (r == 0) r = write_many(t, bufs.data(), static_cast<size_t>(n), total);
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[static_cast<size_t>(i)]);
    Py_DECREF(seq);
    if (r < 0) return nullptr;
    Py_RETURN_NONE;
}

// asyncio's BaseTransport.get_extra_info, with an accepted connection's addresses
// made into Python objects only now (server.cpp).
static PyObject* Transport_get_extra_info(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* kwlist[] = {"name", "default", nullptr};
    PyObject* name;
    PyObject* dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:get_extra_info", const_cast<char**>(kwlist), &name, &dflt))
        return nullptr;
    TransportObject* t = T(self);
    if (!t->extra) return Py_NewRef(dflt);
    if (t->lazy_extra && make_lazy_extra(t) < 0) return nullptr;
    PyObject* v = PyDict_GetItemWithError(t->extra, name);
    if (v) return Py_NewRef(v);
    return PyErr_Occurred() ? nullptr : Py_NewRef(dflt);
}

static PyObject* Transport_write_eof(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || t->eof_requested) Py_RETURN_NONE;
    t->eof_requested = true;
    if (t->write_buffer_size == 0) send_eof(t);
    Py_RETURN_NONE;
}

PyObject* Transport_can_write_eof(PyObject*, PyObject*) { Py_RETURN_TRUE; }

// asyncio's close()/abort() on a transport the loop closed under: the call that would
// schedule connection_lost raises RuntimeError, once. close() schedules nothing while
// data is buffered (asyncio waits for it to be written), nor a second time.
bool refuse_closed_under(TransportObject* t, bool abort) {
    if (!t->closed_under) return false;
    if (!abort) {
        if (t->user_closing) return false;
        t->user_closing = true;
        if (t->buffered_at_close) return false;
    }
    t->closed_under = false;
    t->user_closing = true;
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return true;
}

static PyObject* Transport_close(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (refuse_closed_under(t, false)) return nullptr;
    if (t->closing) Py_RETURN_NONE;
    if (flush_cork(t) < 0) return nullptr;
    t->closing = true;
    stop_reading(t);
    if (t->write_buffer_size == 0) {
        t->conn_lost++;
        if (call_soon_method(t, self, PY_NAME("_call_connection_lost"), Py_None) < 0) return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* Transport_abort(PyObject* self, PyObject*) {
    if (refuse_closed_under(T(self), true)) return nullptr;
    force_close(T(self), nullptr);
    Py_RETURN_NONE;
}

// asyncio's _force_close(exc): what a protocol stacked on the transport (asyncio's
// SSLProtocol) calls on a fatal error.
PyObject* Transport_force_close(PyObject* self, PyObject* exc) {
    force_close(T(self), exc == Py_None ? nullptr : exc);
    Py_RETURN_NONE;
}

PyObject* Transport_call_connection_lost(PyObject* self, PyObject* exc) {
    // asyncio's _call_connection_lost: tell the protocol, then release the socket
    // (libuv closes the fd) and leave the server.
    TransportObject* t = T(self);
    // Once (asyncio before 3.14 could run it twice: gh-156512), and whatever the protocol
    // is: a protocol the user set to None fails with asyncio's AttributeError.
    bool first = !t->lost_called;
    t->lost_called = true;
    PyObject* r = first ? PyObject_CallMethodOneArg(t->protocol, PY_NAME("connection_lost"), exc)
                        : Py_NewRef(Py_None);
    PyObject* exc_state = r ? nullptr : fetch_exception();
    if (t->drain_waiter) {
        PyObject* lost = PyObject_CallFunction(PyExc_ConnectionError, "s", "Connection is closed by peer");
        if (lost) {
            settle_drain_waiter(t, lost);
            Py_DECREF(lost);
        } else {
            report_unraisable(self);
        }
    }
    close_handle(t);
    Py_SETREF(t->protocol, Py_NewRef(Py_None));
    PyObject* server = t->server;
    t->server = Py_NewRef(Py_None);
    if (server != Py_None) {
        PyObject* d = PyObject_CallMethodOneArg(server, PY_NAME("_detach"), self);
        if (d) Py_DECREF(d);
        else report_unraisable(self);
    }
    Py_DECREF(server);
    if (!r) {
        restore_exception(exc_state);
        return nullptr;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
}

// A future that resolves once everything written so far has gone to the kernel
// (loop.sendfile waits for it before it sends the file on the same socket).
static PyObject* Transport_wait_drained(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (flush_cork(t) < 0) return nullptr;
    if (t->drain_waiter) return Py_NewRef(t->drain_waiter);
    PyObject* fut = PyObject_CallMethodNoArgs(t->loop, PY_NAME("create_future"));
    if (!fut) return nullptr;
    if (t->write_buffer_size == 0) {
        PyObject* r = PyObject_CallMethodOneArg(fut, PY_NAME("set_result"), Py_None);
        if (!r) {
            Py_DECREF(fut);
            return nullptr;
        }
        Py_DECREF(r);
        return fut;
    }
    t->drain_waiter = Py_NewRef(fut);
    return fut;
}

// The queued delivery of a read (see defer()), then reading goes on.
PyObject* Transport_deliver_deferred(PyObject* self, PyObject* what) {
    TransportObject* t = T(self);
    if (!t->read_deferred) Py_RETURN_NONE;
    t->read_deferred--;
    if (!t->conn_lost) {  // as asyncio's reader, unless the connection is gone
        // Held while paused; and a pipe's reads stay behind those it still holds (they
        // go out one per pass: see Transport_deliver_held).
        bool behind = t->kind == kReadPipe && (t->dripping || t->held_reads);
        if ((t->paused && !t->closing) || behind) {
            if (hold_read(t, what) < 0) return nullptr;
        } else {
            deliver(t, what);
        }
    }
    after_deferred_delivery(t);
    Py_RETURN_NONE;
}

// A read pipe's held read, given back after resume_reading(): one per pass over the
// ready queue, so that the pipe_data_received its delivery queues (a subprocess's,
// which may pause again) runs before the next read is delivered, as asyncio reads once
// per event and a pause cancels the read after it. Reads that come meanwhile are held
// behind (Transport_deliver_deferred); the drip ends with a pass that brought none
// (what is Py_Ellipsis then).
PyObject* Transport_deliver_held(PyObject* self, PyObject* what) {
    TransportObject* t = T(self);
    if (!t->read_deferred) Py_RETURN_NONE;
    t->read_deferred--;
    t->dripping = false;
    if (!t->conn_lost) {
        if (what == Py_Ellipsis) {
            if (!t->paused && drip_held_read(t) < 0) return nullptr;
        } else if (t->paused && !t->closing) {
            if (!t->held_reads && !(t->held_reads = PyList_New(0))) return nullptr;
            if (PyList_Insert(t->held_reads, 0, what) < 0) return nullptr;  // first again
        } else {
            deliver(t, what);
            if (!t->paused && !t->conn_lost &&
                (t->held_reads ? drip_held_read(t) : queue_held(t, Py_Ellipsis)) < 0)
                return nullptr;
        }
    }
    after_deferred_delivery(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_set_sendfile_busy(PyObject* self, PyObject* arg) {
    int v = PyObject_IsTrue(arg);
    if (v < 0 || flush_cork(T(self)) < 0) return nullptr;
    T(self)->sendfile_busy = v != 0;
    Py_RETURN_NONE;
}

PyObject* Transport_start_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    t->read_started = true;
    start_reading(t);
    Py_RETURN_NONE;
}

// A transport the loop closed under the user is not closing for asyncio (it never was).
PyObject* Transport_is_closing(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->left_open) return PyBool_FromLong(t->user_closing);
    return PyBool_FromLong(t->closing);
}

PyObject* Transport_is_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    return PyBool_FromLong(!t->paused && !t->closing);
}

PyObject* Transport_pause_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || t->paused) Py_RETURN_NONE;
    t->paused = true;
    stop_reading(t);
    Py_RETURN_NONE;
}

PyObject* Transport_resume_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || !t->paused) Py_RETURN_NONE;
    t->paused = false;
    if (t->held_reads) {
        // a pipe's one per pass (Transport_deliver_held), a socket's all at once (its
        // protocol's data_received pauses at once when it does)
        if ((t->kind == kReadPipe ? drip_held_read(t) : requeue_held_reads(t)) < 0) return nullptr;
    }
    if (t->read_deferred == 0 && t->deferred_error) after_deferred_delivery(t);
    else start_reading(t);
    Py_RETURN_NONE;
}

static int set_protocol(TransportObject* t, PyObject* protocol) {
    int buffered = PyObject_IsInstance(protocol, g_buffered_protocol);
    if (buffered < 0) return -1;
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    // Pipe transports only ever call data_received, as asyncio's do.
    t->buffered = buffered != 0 && t->kind == kStream;
    t->tls = t->kind == kStream && is_tls_protocol(protocol);
    return 0;
}

PyObject* Transport_set_protocol(PyObject* self, PyObject* protocol) {
    if (set_protocol(T(self), protocol) < 0) return nullptr;
    Py_RETURN_NONE;
}

PyObject* Transport_get_protocol(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

PyObject* Transport_get_write_buffer_size(PyObject* self, PyObject*) {
    return PyLong_FromSize_t(unsent_bytes(T(self)));
}

PyObject* Transport_get_write_buffer_limits(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    return Py_BuildValue("(nn)", static_cast<Py_ssize_t>(t->low_water), static_cast<Py_ssize_t>(t->high_water));
}

// A water mark as a byte count: any real number asyncio's arithmetic accepted (floats
// floor, anything past the largest size saturates).
static int water_mark(PyObject* v, size_t* out) {
    if (PyLong_Check(v)) {
        size_t n = PyLong_AsSize_t(v);
        if (n == static_cast<size_t>(-1) && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
            PyErr_Clear();
            n = SIZE_MAX;
        }
        *out = n;
        return 0;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    d = std::floor(d);
    *out = d >= static_cast<double>(SIZE_MAX) ? SIZE_MAX : static_cast<size_t>(d);
    return 0;
}

PyObject* Transport_set_write_buffer_limits(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* kwlist[] = {"high", "low", nullptr};
    PyObject* high_o = Py_None;
    PyObject* low_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:set_write_buffer_limits", const_cast<char**>(kwlist),
                                     &high_o, &low_o))
        return nullptr;
    // asyncio's arithmetic and checks, on the objects given (floats and huge ints too).
    PyObject* four = PyLong_FromLong(4);
    if (!four) return nullptr;
    PyObject* high = high_o != Py_None ? Py_NewRef(high_o)
                     : low_o == Py_None ? PyLong_FromSize_t(kDefaultHighWater)
                                        : PyNumber_Multiply(four, low_o);
    PyObject* low = !high ? nullptr : low_o != Py_None ? Py_NewRef(low_o) : PyNumber_FloorDivide(high, four);
    Py_DECREF(four);
    PyObject* zero = low ? PyLong_FromLong(0) : nullptr;
    int ok = -1;
    if (zero) {
        ok = PyObject_RichCompareBool(high, low, Py_GE);
        if (ok == 1) ok = PyObject_RichCompareBool(low, zero, Py_GE);
        Py_DECREF(zero);
    }
    if (ok == 0) PyErr_Format(PyExc_ValueError, "high (%R) must be >= low (%R) must be >= 0", high, low);
    TransportObject* t = T(self);
    size_t high_n = 0, low_n = 0;
    if (ok == 1 && (water_mark(high, &high_n) < 0 || water_mark(low, &low_n) < 0)) ok = -1;
    Py_XDECREF(high);
    Py_XDECREF(low);
    if (ok != 1) return nullptr;
    if (flush_cork(t) < 0) return nullptr;  // held back under the old limits: it goes now
    t->high_water = high_n;
    t->low_water = low_n;
    maybe_pause_protocol(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_repr(PyObject* self) {
    TransportObject* t = T(self);
    const char* state = t->closed_under                      ? "open"
                        : t->conn_lost && !t->handle_open ? "closed"
                        : t->closing                      ? "closing"
                                                          : "open";
    int fd = t->closed_under ? t->sock_fd : -1;
    if (t->handle_open) uv_fileno(&t->h.handle, &fd);
    return PyUnicode_FromFormat("<%s fd=%d %s>", Py_TYPE(self)->tp_name, fd, state);
}

int Transport_traverse(PyObject* self, visitproc visit, void* arg) {
    TransportObject* t = T(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(t->extra);
    Py_VISIT(t->loop);
    Py_VISIT(t->protocol);
    Py_VISIT(t->dict);
    Py_VISIT(t->context);
    Py_VISIT(t->write_context);
    Py_VISIT(t->get_buffer_error);
    // While libuv has the socket's own fd, the socket object is libuv's too: reported,
    // a dropped loop's garbage cycle could finalize it (closing the fd under libuv)
    // before the loop's finalizer closes the handle.
    if (!(t->handle_open && t->owns_fd)) Py_VISIT(t->sock);
    Py_VISIT(t->server);
    // self_ref is deliberately not visited: it stands for libuv's raw pointer to us, so
    // the collector must count it as a reference from outside. Visited, an open
    // transport nobody else refers to would look like garbage, and the collector would
    // finalize its socket (closing the fd under libuv) and its protocol's tasks.
    Py_VISIT(t->drain_waiter);
    Py_VISIT(t->held_reads);
    return 0;
}

int Transport_clear(PyObject* self) {
    TransportObject* t = T(self);
    if (t->handle_open) return 0;  // libuv still points at us: keep everything
    Py_CLEAR(t->dict);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->server);
    Py_CLEAR(t->context);  // libuv will not call back any more: no InContext can need them
    Py_CLEAR(t->write_context);
    Py_CLEAR(t->get_buffer_error);
    Py_CLEAR(t->held_reads);
    return 0;
}

// asyncio's __del__: a transport left open (the loop closed under it) warns when it is
// collected, and closes the user's socket or pipe object it still holds.
void Transport_finalize(PyObject* self) {
    TransportObject* t = T(self);
    if (!t->left_open) return;
    t->left_open = false;
    PyObject* exc = fetch_exception();
    PyObject* r = PyObject_Repr(self);
    if (!r || PyErr_ResourceWarning(self, 1, "unclosed transport %U", r) < 0) PyErr_WriteUnraisable(self);
    Py_XDECREF(r);
    if (t->sock && t->sock != Py_None && !t->owns_fd) {
        PyObject* c = PyObject_CallMethodNoArgs(t->sock, PY_NAME("close"));
        if (c) Py_DECREF(c);
        else PyErr_WriteUnraisable(self);
    }
    if (exc) restore_exception(exc);
}

void Transport_dealloc(PyObject* self) {
    if (PyObject_CallFinalizerFromDealloc(self) < 0) return;  // resurrected
    TransportObject* t = T(self);
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (t->weakrefs) PyObject_ClearWeakRefs(self);
    client_unlink(t);
    release_read_buf(t);
    PyMem_Free(t->read_buf);
    t->read_buf = nullptr;
    free_cork(t);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->server);
    Py_CLEAR(t->drain_waiter);
    Py_CLEAR(t->held_reads);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->dict);
    Py_CLEAR(t->context);
    Py_CLEAR(t->write_context);
    Py_CLEAR(t->get_buffer_error);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyObject* Transport_new_from_python(PyTypeObject* type, PyObject*, PyObject*) {
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances directly", type->tp_name);
    return nullptr;
}

static PyMethodDef Transport_methods[] = {
    {"write", Transport_write, METH_O, "Write bytes; what the kernel does not take now is buffered."},
    {"writelines", Transport_writelines, METH_O, "Write every bytes-like object of the list, as one write."},
    {"get_extra_info", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Transport_get_extra_info)),
     METH_VARARGS | METH_KEYWORDS, "Information about the transport or its socket (asyncio's keys)."},
    {"write_eof", Transport_write_eof, METH_NOARGS, "Close the write end after the buffered data."},
    {"can_write_eof", Transport_can_write_eof, METH_NOARGS, nullptr},
    {"close", Transport_close, METH_NOARGS, "Close after the buffered data is written; then connection_lost(None)."},
    {"abort", Transport_abort, METH_NOARGS, "Close now, dropping buffered data."},
    {"is_closing", Transport_is_closing, METH_NOARGS, nullptr},
    {"is_reading", Transport_is_reading, METH_NOARGS, nullptr},
    {"pause_reading", Transport_pause_reading, METH_NOARGS, nullptr},
    {"resume_reading", Transport_resume_reading, METH_NOARGS, nullptr},
    {"set_protocol", Transport_set_protocol, METH_O, nullptr},
    {"get_protocol", Transport_get_protocol, METH_NOARGS, nullptr},
    {"get_write_buffer_size", Transport_get_write_buffer_size, METH_NOARGS, nullptr},
    {"get_write_buffer_limits", Transport_get_write_buffer_limits, METH_NOARGS, nullptr},
    {"set_write_buffer_limits", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Transport_set_write_buffer_limits)),
     METH_VARARGS | METH_KEYWORDS, nullptr},
    {"_call_connection_lost", Transport_call_connection_lost, METH_O, nullptr},
    {"_force_close", Transport_force_close, METH_O, nullptr},
    {"_start_reading", Transport_start_reading, METH_NOARGS, nullptr},
    {"_wait_drained", Transport_wait_drained, METH_NOARGS, nullptr},
    {"_set_sendfile_busy", Transport_set_sendfile_busy, METH_O, nullptr},
    {"_deliver_deferred", Transport_deliver_deferred, METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

static PyMemberDef Transport_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakrefs), READONLY, nullptr},
    {"__dictoffset__", T_PYSSIZET, offsetof(TransportObject, dict), READONLY, nullptr},
    {"_loop", T_OBJECT, offsetof(TransportObject, loop), READONLY, nullptr},
    {"_protocol", T_OBJECT, offsetof(TransportObject, protocol), READONLY, nullptr},
    {"_paused", T_BOOL, offsetof(TransportObject, paused), READONLY, nullptr},  // 3.10's SSLProtocol reads it
    {nullptr, 0, 0, 0, nullptr},
};

static PyType_Slot Transport_slots[] = {
    {Py_tp_doc, const_cast<char*>("A stream transport (TCP or Unix socket) over libuv.")},
    {Py_tp_new, reinterpret_cast<void*>(Transport_new_from_python)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Transport_dealloc)},
    {Py_tp_finalize, reinterpret_cast<void*>(Transport_finalize)},
    {Py_tp_traverse, reinterpret_cast<void*>(Transport_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Transport_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(Transport_repr)},
    {Py_tp_methods, Transport_methods},
    {Py_tp_members, Transport_members},
    {0, nullptr},
};

static PyType_Spec Transport_spec = {
    "pyloop.StreamTransport", sizeof(TransportObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, Transport_slots,
};


PyTypeObject* new_transport_type(PyObject* module, PyType_Spec* spec, size_t extra_end, const char* base_name) {
    PyObject* transports = PyImport_ImportModule("asyncio.transports");
    if (!transports) return nullptr;
    PyObject* base = PyObject_GetAttrString(transports, base_name);
    Py_DECREF(transports);
    if (!base) return nullptr;
    if (reinterpret_cast<PyTypeObject*>(base)->tp_basicsize != static_cast<Py_ssize_t>(extra_end)) {
        Py_DECREF(base);
        PyErr_SetString(PyExc_ImportError, "asyncio.Transport has an unexpected layout");
        return nullptr;
    }
    PyObject* bases = PyTuple_Pack(1, base);
    Py_DECREF(base);
    if (!bases) return nullptr;
    auto* type = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, spec, bases));
    Py_DECREF(bases);
    return type;
}

int init_stream_type(PyObject* module) {
    StreamTransportType =
        new_transport_type(module, &Transport_spec, offsetof(TransportObject, extra) + sizeof(PyObject*));
    if (!StreamTransportType) return -1;
    PyObject* protocols = PyImport_ImportModule("asyncio.protocols");
    if (!protocols) return -1;
    g_buffered_protocol = PyObject_GetAttrString(protocols, "BufferedProtocol");
    Py_DECREF(protocols);
    PyObject* log = PyImport_ImportModule("asyncio.log");
    if (!log) return -1;
    g_logger = PyObject_GetAttrString(log, "logger");
    Py_DECREF(log);
    if (!g_buffered_protocol || !g_logger) return -1;
    return PyModule_AddObjectRef(module, "StreamTransport", reinterpret_cast<PyObject*>(StreamTransportType));
}

PyObject* stream_transport_new(PyObject* loop, PyObject* sock, PyObject* protocol, PyObject* extra, PyObject* server,
                               bool own) {
    LoopCore* core = core_of(loop);
    if (!core) return nullptr;
    if (core->is_closed()) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return nullptr;
    }
    PyObject* fileno = PyObject_CallMethodNoArgs(sock, PY_NAME("fileno"));
    if (!fileno) return nullptr;
    int fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    PyObject* family_o = PyObject_GetAttr(sock, PY_NAME("family"));
    if (!family_o) return nullptr;
    long family = PyLong_AsLong(family_o);
    Py_DECREF(family_o);
    if (family == -1 && PyErr_Occurred()) return nullptr;
    if (fd < 0) {
        PyErr_SetString(PyExc_OSError, "the socket is closed");
        return nullptr;
    }
    return stream_transport_open(core, loop, sock, fd, static_cast<int>(family), protocol, extra, server, own);
}

PyObject* stream_transport_open(LoopCore* core, PyObject* loop, PyObject* sock, int fd, int family,
                                PyObject* protocol, PyObject* extra, PyObject* server, bool own, uint8_t kind,
                                PyTypeObject* type) {
    int uv_fd = fd;
    if (!type) type = StreamTransportType;
    if (!own) {
        uv_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (uv_fd < 0) return PyErr_SetFromErrno(PyExc_OSError);
    }

    auto* t = reinterpret_cast<TransportObject*>(type->tp_alloc(type, 0));
    if (!t) {
        if (!own) ::close(uv_fd);
        return nullptr;
    }
    // tp_alloc zeroed the struct: every pointer is null and every flag false.
    t->owns_fd = own;
    t->kind = kind;
    t->context = PyContext_CopyCurrent();
    if (!t->context) {
        if (!own) ::close(uv_fd);
        Py_DECREF(O(t));
        return nullptr;
    }
    t->extra = Py_NewRef(extra);
    t->core = core;
    t->loop = Py_NewRef(loop);
    t->sock = Py_NewRef(sock);
    t->server = Py_NewRef(server);
    t->high_water = kDefaultHighWater;
    t->low_water = kDefaultHighWater / 4;
    if (set_protocol(t, protocol) < 0) {
        if (!own) ::close(uv_fd);
        Py_DECREF(O(t));
        return nullptr;
    }
    int r = family == AF_UNIX ? uv_pipe_init(core->uv(), &t->h.pipe, 0) : uv_tcp_init(core->uv(), &t->h.tcp);
    if (r < 0) {
        if (!own) ::close(uv_fd);
        Py_DECREF(O(t));
        return set_uv_error(r);
    }
    // From here libuv knows the handle: it is only ever released through uv_close.
    t->h.handle.data = t;
    t->handle_open = true;
    t->self_ref = Py_NewRef(O(t));
    core->track_handle(&t->h.handle, close_for_loop_close, O(t),
                       kind != kStream ? kKindPipe : family == AF_UNIX ? kKindUnix : kKindTcp);
    r = family == AF_UNIX ? uv_pipe_open(&t->h.pipe, uv_fd) : uv_tcp_open(&t->h.tcp, uv_fd);
    if (r < 0) {
        // libuv did not take the fd: the socket object keeps its own (do not detach).
        if (!own) ::close(uv_fd);
        t->handle_open = false;
        uv_close(&t->h.handle, on_close);
        Py_DECREF(O(t));
        return set_uv_error(r);
    }
    if (family != AF_UNIX) uv_tcp_nodelay(&t->h.tcp, 1);  // as asyncio does for TCP transports
    PyObject* self = O(t);
    t->sock_fd = fd;
    if (kind == kStream) core->set_stream_fd(fd, self);  // add_reader refuses it, as asyncio does
    // Reading starts once connection_made has run (a write pipe instead watches its fd
    // for the reader going away).
    if (call_soon_method(t, protocol, PY_NAME("connection_made"), self) < 0 ||
        call_soon_method(t, self, kind == kWritePipe ? PY_NAME("_watch_reader") : PY_NAME("_start_reading"), nullptr) < 0) {
        close_handle(t);
        Py_DECREF(self);
        return nullptr;
    }
    if (server != Py_None) {
        PyObject* a = PyObject_CallMethodOneArg(server, PY_NAME("_attach"), self);
        if (!a) {
            close_handle(t);
            Py_DECREF(self);
            return nullptr;
        }
        Py_DECREF(a);
    }
    return self;
}

}  // namespace pyloop
