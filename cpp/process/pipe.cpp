// The pipe transports as Python types: what differs from a stream transport (a write
// pipe watches for its reader going away, write_eof closes, close on a read pipe is
// immediate); the rest is StreamTransport's (net/stream_methods.hpp, net/stream_io.hpp).
#include "process/pipe.hpp"

#include "core/loop_object.hpp"
#include "core/loop.hpp"
#include "net/stream_io.hpp"
#include "net/stream_methods.hpp"

#include <structmember.h>
#include <sys/socket.h>
#include <sys/stat.h>

namespace pyloop {

using namespace stream_io;

PyTypeObject* ReadPipeTransportType = nullptr;
PyTypeObject* WritePipeTransportType = nullptr;

static PyObject* WritePipe_watch_reader(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || !t->handle_open || t->watching_reader || t->core->is_closed()) Py_RETURN_NONE;
    // libuv's own fd (not the user's, which the user may close): it stays open until
    // the handle closes, and the watch ends before that.
    int fd = -1;
    uv_fileno(&t->h.handle, &fd);
    // As asyncio: only a socket's or a FIFO's readability means the reader went away. A
    // terminal (a pty, the user's stdout) is readable when a key is pressed.
    struct stat st;
    if (fstat(fd, &st) < 0 || !(S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode))) Py_RETURN_NONE;
    PyObject* m = PyObject_GetAttr(self, PY_NAME("_reader_gone"));
    HandleObject* h = m ? handle_new(HandleType, m, nullptr, 0, t->context, t->loop, t->core) : nullptr;
    Py_XDECREF(m);
    if (!h) return nullptr;
    int r = t->core->add_poll(fd, false, h, nullptr, kKindInternal);  // the pipe counts once
    Py_DECREF(reinterpret_cast<PyObject*>(h));
    if (r < 0) return nullptr;
    t->watch_fd = fd;
    t->watching_reader = true;
    Py_RETURN_NONE;
}

// The read end went away (asyncio's _read_ready of a write pipe).
static PyObject* WritePipe_reader_gone(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->core->debug()) {
        PyObject* r = PyObject_CallMethod(g_logger, "info", "sO", "%r was closed by peer", self);
        if (r) Py_DECREF(r);
        else PyErr_Clear();
    }
    if (t->write_buffer_size == 0) {
        force_close(t, nullptr);
        Py_RETURN_NONE;
    }
    PyObject* exc = PyObject_CallNoArgs(PyExc_BrokenPipeError);
    if (!exc) return nullptr;
    force_close(t, exc);
    Py_DECREF(exc);
    Py_RETURN_NONE;
}

static PyObject* WritePipe_write(PyObject* self, PyObject* data) {
    TransportObject* t = T(self);
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        // asyncio asserts the type.
        PyObject* r = PyObject_Repr(data);
        if (r) PyErr_SetObject(PyExc_AssertionError, r);
        Py_XDECREF(r);
        return nullptr;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
    if (view.len == 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    if (t->closing && !t->conn_lost) {
        // Closing (write_eof/close) but not lost yet: asyncio drops and counts it too.
        if (t->conn_lost >= kLogThresholdConnLostWrites) {
            PyObject* r = PyObject_CallMethod(g_logger, "warning", "s",
                                              "pipe closed by peer or os.write(pipe, data) raised exception.");
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
        t->conn_lost++;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    int r = write_bytes(t, static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
    PyBuffer_Release(&view);
    if (r < 0) return nullptr;
    Py_RETURN_NONE;
}

// A pipe cannot be half-closed: write_eof() closes it once the buffer is written.
static PyObject* WritePipe_write_eof(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing) Py_RETURN_NONE;
    t->closing = true;
    if (t->write_buffer_size == 0) {
        unwatch_reader(t);
        t->conn_lost++;
        if (call_soon_method(t, self, PY_NAME("_call_connection_lost"), Py_None) < 0) return nullptr;
    }
    Py_RETURN_NONE;
}

static PyObject* WritePipe_close(PyObject* self, PyObject* arg) {
    TransportObject* t = T(self);
    if (refuse_closed_under(t, false)) return nullptr;
    if (!t->handle_open || t->closing) Py_RETURN_NONE;
    return WritePipe_write_eof(self, arg);
}

static PyObject* ReadPipe_close(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (refuse_closed_under(t, true)) return nullptr;  // closes at once: as abort()
    if (!t->closing) force_close(t, nullptr);
    Py_RETURN_NONE;
}

static PyObject* Pipe_repr(PyObject* self) {
    TransportObject* t = T(self);
    const char* state = t->closed_under ? "open" : !t->handle_open ? "closed" : t->closing ? "closing" : "open";
    return PyUnicode_FromFormat("<%s fd=%d %s>", Py_TYPE(self)->tp_name, t->sock_fd, state);
}

static PyMethodDef ReadPipe_methods[] = {
    {"close", ReadPipe_close, METH_NOARGS, "Close the pipe; then connection_lost(None)."},
    {"is_closing", Transport_is_closing, METH_NOARGS, nullptr},
    {"is_reading", Transport_is_reading, METH_NOARGS, nullptr},
    {"pause_reading", Transport_pause_reading, METH_NOARGS, nullptr},
    {"resume_reading", Transport_resume_reading, METH_NOARGS, nullptr},
    {"set_protocol", Transport_set_protocol, METH_O, nullptr},
    {"get_protocol", Transport_get_protocol, METH_NOARGS, nullptr},
    {"_call_connection_lost", Transport_call_connection_lost, METH_O, nullptr},
    {"_force_close", Transport_force_close, METH_O, nullptr},
    {"_start_reading", Transport_start_reading, METH_NOARGS, nullptr},
    {"_deliver_deferred", Transport_deliver_deferred, METH_O, nullptr},
    {"_deliver_held", Transport_deliver_held, METH_O, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

static PyMethodDef WritePipe_methods[] = {
    {"write", WritePipe_write, METH_O, "Write bytes; what the pipe does not take now is buffered."},
    {"write_eof", WritePipe_write_eof, METH_NOARGS, "Close the pipe after the buffered data."},
    {"can_write_eof", Transport_can_write_eof, METH_NOARGS, nullptr},
    {"close", WritePipe_close, METH_NOARGS, "Close after the buffered data is written; then connection_lost(None)."},
    {"abort", Transport_abort, METH_NOARGS, "Close now, dropping buffered data."},
    {"is_closing", Transport_is_closing, METH_NOARGS, nullptr},
    {"set_protocol", Transport_set_protocol, METH_O, nullptr},
    {"get_protocol", Transport_get_protocol, METH_NOARGS, nullptr},
    {"get_write_buffer_size", Transport_get_write_buffer_size, METH_NOARGS, nullptr},
    {"get_write_buffer_limits", Transport_get_write_buffer_limits, METH_NOARGS, nullptr},
    {"set_write_buffer_limits", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Transport_set_write_buffer_limits)),
     METH_VARARGS | METH_KEYWORDS, nullptr},
    {"_call_connection_lost", Transport_call_connection_lost, METH_O, nullptr},
    {"_force_close", Transport_force_close, METH_O, nullptr},
    {"_watch_reader", WritePipe_watch_reader, METH_NOARGS, nullptr},
    {"_reader_gone", WritePipe_reader_gone, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

static PyMemberDef Pipe_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakrefs), READONLY, nullptr},
    {"__dictoffset__", T_PYSSIZET, offsetof(TransportObject, dict), READONLY, nullptr},
    {"_loop", T_OBJECT, offsetof(TransportObject, loop), READONLY, nullptr},
    {"_protocol", T_OBJECT, offsetof(TransportObject, protocol), READONLY, nullptr},
    {"_pipe", T_OBJECT, offsetof(TransportObject, sock), 0, nullptr},  // writable, as asyncio's
    {"_fileno", T_INT, offsetof(TransportObject, sock_fd), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

static PyType_Slot ReadPipe_slots[] = {
    {Py_tp_doc, const_cast<char*>("A read pipe transport over libuv (asyncio's _UnixReadPipeTransport).")},
    {Py_tp_new, reinterpret_cast<void*>(Transport_new_from_python)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Transport_dealloc)},
    {Py_tp_finalize, reinterpret_cast<void*>(Transport_finalize)},
    {Py_tp_traverse, reinterpret_cast<void*>(Transport_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Transport_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(Pipe_repr)},
    {Py_tp_methods, ReadPipe_methods},
    {Py_tp_members, Pipe_members},
    {0, nullptr},
};

static PyType_Slot WritePipe_slots[] = {
    {Py_tp_doc, const_cast<char*>("A write pipe transport over libuv (asyncio's _UnixWritePipeTransport).")},
    {Py_tp_new, reinterpret_cast<void*>(Transport_new_from_python)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Transport_dealloc)},
    {Py_tp_finalize, reinterpret_cast<void*>(Transport_finalize)},
    {Py_tp_traverse, reinterpret_cast<void*>(Transport_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Transport_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(Pipe_repr)},
    {Py_tp_methods, WritePipe_methods},
    {Py_tp_members, Pipe_members},
    {0, nullptr},
};

static PyType_Spec ReadPipe_spec = {
    "pyloop.ReadPipeTransport", sizeof(TransportObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, ReadPipe_slots,
};

static PyType_Spec WritePipe_spec = {
    "pyloop.WritePipeTransport", sizeof(TransportObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, WritePipe_slots,
};

PyObject* pipe_transport_new(PyObject* loop, PyObject* pipe, PyObject* protocol, PyObject* extra, bool write) {
    LoopCore* core = core_of(loop);
    if (!core) return nullptr;
    if (core->is_closed()) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return nullptr;
    }
    PyObject* fileno = PyObject_CallMethodNoArgs(pipe, PY_NAME("fileno"));
    if (!fileno) return nullptr;
    int fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    return stream_transport_open(core, loop, pipe, fd, AF_UNIX, protocol, extra, Py_None, false,
                                 write ? kWritePipe : kReadPipe, write ? WritePipeTransportType : ReadPipeTransportType);
}

int init_pipe_types(PyObject* module) {
    constexpr size_t extra_end = offsetof(TransportObject, extra) + sizeof(PyObject*);
    ReadPipeTransportType = new_transport_type(module, &ReadPipe_spec, extra_end, "ReadTransport");
    if (!ReadPipeTransportType ||
        PyModule_AddObjectRef(module, "ReadPipeTransport", reinterpret_cast<PyObject*>(ReadPipeTransportType)) < 0)
        return -1;
    // asyncio's _UnixReadPipeTransport.max_size: the most one read takes
    PyObject* max_size = PyLong_FromLong(256 * 1024);
    int r = max_size ? PyObject_SetAttrString(reinterpret_cast<PyObject*>(ReadPipeTransportType), "max_size", max_size)
                     : -1;
    Py_XDECREF(max_size);
    if (r < 0) return -1;
    // asyncio's _UnixWritePipeTransport is a full Transport (_FlowControlMixin): its
    // reading methods are ReadTransport's, which raise NotImplementedError.
    WritePipeTransportType = new_transport_type(module, &WritePipe_spec, extra_end, "Transport");
    if (!WritePipeTransportType ||
        PyModule_AddObjectRef(module, "WritePipeTransport", reinterpret_cast<PyObject*>(WritePipeTransportType)) < 0)
        return -1;
    return 0;
}

}  // namespace pyloop
