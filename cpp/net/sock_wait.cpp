// The sock_* hot paths in C++: see sock_wait.hpp.
#include "net/sock_wait.hpp"

#include "bindings/loop_type.hpp"
#include "core/handle.hpp"
#include "net/sock_ops.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace pyloop {

namespace {

enum OpKind { kRecv, kRecvInto, kSendAll, kRecvFrom, kRecvFromInto, kSendTo };

inline bool is_writer(OpKind k) { return k == kSendAll || k == kSendTo; }

struct SockOpObject {
    PyObject_HEAD
    PyObject* loop;          // owned
    LoopCore* core;          // valid while `loop` is alive
    PyObject* fut;           // owned; nullptr once the operation is over
    PyObject* sock;          // owned: the socket object stays alive while its fd is watched
    HandleObject* handle;    // owned while the fd is watched for this operation
    Py_buffer buf;           // recv_into's target, sendall's data (while has_buf)
    bool has_buf;
    int fd;
    OpKind kind;
    Py_ssize_t n;            // recv, recvfrom: the most to receive; recvfrom_into: nbytes
    Py_ssize_t sent;         // sendall: bytes the kernel has taken so far
    struct sockaddr_storage addr;  // sendto's destination
    socklen_t addr_len;
};

PyTypeObject* SockOpType = nullptr;
PyObject* g_socket_type = nullptr;   // socket.socket: its instances are checked here
PyObject* g_check_socket = nullptr;  // the Python face's check, for anything else
PyObject* g_family = nullptr;        // _socket.socket's `family` member (not the enum property)
PyObject* g_context = nullptr;       // an empty Context for the watch handles
PyObject *s_gettimeout, *s_done, *s_set_result, *s_set_exception, *s_create_future, *s_is_closing,
    *s_recv, *s_recv_into, *s_send;

inline SockOpObject* OP(PyObject* o) { return reinterpret_cast<SockOpObject*>(o); }

// asyncio's checks of the socket argument (SSLSocket refused; pyloop also refuses a
// blocking socket, in and out of debug mode). Sets *fd. -1 with an exception set.
int check_socket(PyObject* sock, int* fd) {
    if (Py_TYPE(sock) == reinterpret_cast<PyTypeObject*>(g_socket_type)) {
        PyObject* t = PyObject_CallMethodNoArgs(sock, s_gettimeout);
        if (!t) return -1;
        bool nonblocking = PyFloat_Check(t) && PyFloat_AS_DOUBLE(t) == 0.0;
        Py_DECREF(t);
        *fd = PyObject_AsFileDescriptor(sock);
        if (*fd < 0) {
            if (!PyErr_Occurred()) errno = EBADF, PyErr_SetFromErrno(PyExc_OSError);
            else if (PyErr_ExceptionMatches(PyExc_ValueError)) {  // fileno() returned -1: closed
                PyErr_Clear();
                errno = EBADF;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            return -1;
        }
        if (!nonblocking) {
            PyErr_SetString(PyExc_ValueError, "the socket must be non-blocking");
            return -1;
        }
        return 0;
    }
    PyObject* r = PyObject_CallOneArg(g_check_socket, sock);
    if (!r) return -1;
    Py_DECREF(r);
    *fd = PyObject_AsFileDescriptor(sock);
    return *fd < 0 ? -1 : 0;
}

void release_buffer(SockOpObject* op) {
    if (op->has_buf) {
        op->has_buf = false;
        PyBuffer_Release(&op->buf);
    }
}

// The operation is over (done, failed, or abandoned): stop watching and let go.
void finish(SockOpObject* op) {
    if (op->handle) {
        HandleObject* h = op->handle;
        op->handle = nullptr;
        op->core->remove_poll_if(op->fd, is_writer(op->kind), h);
        Py_DECREF(h);
    }
    release_buffer(op);
    Py_CLEAR(op->fut);
}

// One attempt. 1: done, *result set (a new reference) or an exception set for the
// future; 0: the kernel is not ready (nothing set).
int attempt(SockOpObject* op, PyObject** result) {
    *result = nullptr;
    struct sockaddr_storage from;
    socklen_t from_len = 0;
    for (;;) {
        ssize_t r;
        PyObject* bytes = nullptr;
        switch (op->kind) {
            case kRecv:
                bytes = PyBytes_FromStringAndSize(nullptr, op->n);
                if (!bytes) return 1;
                r = ::recv(op->fd, PyBytes_AS_STRING(bytes), op->n, 0);
                break;
            case kRecvInto:
                r = ::recv(op->fd, op->buf.buf, op->buf.len, 0);
                break;
            case kRecvFrom:
                bytes = PyBytes_FromStringAndSize(nullptr, op->n);
                if (!bytes) return 1;
                from_len = sizeof from;
                r = ::recvfrom(op->fd, PyBytes_AS_STRING(bytes), op->n, 0, reinterpret_cast<sockaddr*>(&from),
                               &from_len);
                break;
            case kRecvFromInto:
                from_len = sizeof from;
                r = ::recvfrom(op->fd, op->buf.buf, op->n, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
                break;
            case kSendTo:
                r = ::sendto(op->fd, op->buf.buf, op->buf.len, 0, reinterpret_cast<sockaddr*>(&op->addr),
                             op->addr_len);
                break;
            default:
                r = ::send(op->fd, static_cast<char*>(op->buf.buf) + op->sent, op->buf.len - op->sent, MSG_NOSIGNAL);
                break;
        }
        if (r < 0) {
            Py_XDECREF(bytes);
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) return 1;
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            PyErr_SetFromErrno(PyExc_OSError);
            return 1;
        }
        switch (op->kind) {
            case kRecv:
                if (r != op->n && _PyBytes_Resize(&bytes, r) < 0) return 1;
                *result = bytes;
                return 1;
            case kRecvInto:
            case kSendTo:
                *result = PyLong_FromSsize_t(r);
                return 1;
            case kRecvFrom:
            case kRecvFromInto: {
                if (op->kind == kRecvFrom && r != op->n && _PyBytes_Resize(&bytes, r) < 0) return 1;
                if (op->kind == kRecvFromInto) bytes = PyLong_FromSsize_t(r);
                if (!bytes) return 1;
                PyObject* addr;
                if (from_len == 0) addr = Py_NewRef(Py_None);  // as the socket module: no address
                else addr = inet_address(from);
                if (!addr) {
                    Py_DECREF(bytes);
                    return 1;
                }
                *result = PyTuple_Pack(2, bytes, addr);
                Py_DECREF(bytes);
                Py_DECREF(addr);
                return 1;
            }
            default:
                op->sent += r;
                if (op->sent < op->buf.len) continue;
                *result = Py_NewRef(Py_None);
                return 1;
        }
    }
}

// The fd is ready (straight from the poll, or from the ready queue).
void op_ready(PyObject* o) {
    SockOpObject* op = OP(o);
    if (!op->fut) return;
    PyObject* done = PyObject_CallMethodNoArgs(op->fut, s_done);
    if (!done) {
        PyErr_WriteUnraisable(o);
        return;
    }
    bool over = done == Py_True;
    Py_DECREF(done);
    if (over) {  // cancelled: what the kernel has stays there
        finish(op);
        return;
    }
    PyObject* result = nullptr;
    int fd = PyObject_AsFileDescriptor(op->sock);
    if (fd != op->fd) {
        // The socket object was closed while it waited (its number may belong to
        // another socket by now): what its own call would raise, as in asyncio.
        PyErr_Clear();
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
    } else if (attempt(op, &result) == 0) {
        return;  // a spurious wake-up: still watched
    }
    PyObject* r;
    if (result) {
        r = PyObject_CallMethodOneArg(op->fut, s_set_result, result);
        Py_DECREF(result);
    } else {
        PyObject* exc = fetch_exception();
        r = PyObject_CallMethodOneArg(op->fut, s_set_exception, exc);
        Py_DECREF(exc);
    }
    if (r) Py_DECREF(r);
    else PyErr_WriteUnraisable(o);
    finish(op);
}

PyObject* SockOp_call(PyObject* o, PyObject*, PyObject*) {
    op_ready(o);
    Py_RETURN_NONE;
}

PyObject* SockOp_await(PyObject* o) {
    SockOpObject* op = OP(o);
    if (!op->fut) {
        PyErr_SetString(PyExc_RuntimeError, "the socket operation is over");
        return nullptr;
    }
    PyAsyncMethods* am = Py_TYPE(op->fut)->tp_as_async;
    if (am && am->am_await) return am->am_await(op->fut);
    return PyObject_CallMethod(op->fut, "__await__", nullptr);
}

int SockOp_traverse(PyObject* o, visitproc visit, void* arg) {
    SockOpObject* op = OP(o);
    Py_VISIT(op->loop);
    Py_VISIT(op->fut);
    Py_VISIT(op->sock);
    Py_VISIT(reinterpret_cast<PyObject*>(op->handle));
    if (op->has_buf) Py_VISIT(op->buf.obj);
    return 0;
}

int SockOp_clear(PyObject* o) {
    SockOpObject* op = OP(o);
    Py_CLEAR(op->handle);  // a cycle through the watch is broken here: the watch keeps it
    release_buffer(op);
    Py_CLEAR(op->fut);
    Py_CLEAR(op->sock);
    Py_CLEAR(op->loop);
    return 0;
}

void SockOp_dealloc(PyObject* o) {
    PyObject_GC_UnTrack(o);
    SockOp_clear(o);
    PyTypeObject* tp = Py_TYPE(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

// Starts waiting: a future, and a one-shot watch of the fd. Returns the SockOp (a
// new reference) or nullptr with an exception set (the buffer, if any, released).
PyObject* start_wait(PyObject* loop, LoopCore* core, PyObject* sock, int fd, OpKind kind, Py_ssize_t n,
                     Py_buffer* buf, Py_ssize_t sent) {
    auto fail = [&]() -> PyObject* {
        if (buf) PyBuffer_Release(buf);
        return nullptr;
    };
    if (core->is_closed()) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return fail();
    }
    if (PyObject* t = core->stream_for_fd(fd)) {
        PyObject* closing = PyObject_CallMethodNoArgs(t, s_is_closing);
        if (!closing) return fail();
        int c = PyObject_IsTrue(closing);
        Py_DECREF(closing);
        if (c < 0) return fail();
        if (!c) {
            PyErr_Format(PyExc_RuntimeError, "File descriptor %d is used by transport %R", fd, t);
            return fail();
        }
    }
    PyObject* fut = PyObject_CallMethodNoArgs(loop, s_create_future);
    if (!fut) return fail();
    SockOpObject* op = PyObject_GC_New(SockOpObject, SockOpType);
    if (!op) {
        Py_DECREF(fut);
        return fail();
    }
    op->loop = Py_NewRef(loop);
    op->core = core;
    op->fut = fut;
    op->sock = Py_NewRef(sock);
    op->handle = nullptr;
    op->has_buf = buf != nullptr;
    if (buf) op->buf = *buf;
    op->fd = fd;
    op->kind = kind;
    op->n = n;
    op->sent = sent;
    PyObject_GC_Track(op);
    PyObject* self = reinterpret_cast<PyObject*>(op);
    HandleObject* h = handle_new(HandleType, self, nullptr, 0, g_context, loop, core);
    if (!h) {
        Py_DECREF(self);
        return nullptr;
    }
    if (core->add_poll(fd, is_writer(kind), h, op_ready) < 0) {
        handle_cancel(h);
        Py_DECREF(h);
        Py_DECREF(self);
        return nullptr;
    }
    op->handle = h;
    return self;
}

struct Prologue {
    LoopCore* core;
    int fd;
};

// loop, sock: checked; -1 with an exception set.
int prologue(PyObject* const* args, Py_ssize_t nargs, const char* name, Prologue* p) {
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "%s() takes 3 arguments", name);
        return -1;
    }
    p->core = core_of(args[0]);
    if (!p->core) return -1;
    return check_socket(args[1], &p->fd);
}

// Runs the first attempt of an operation whose arguments the socket method itself
// must judge (an odd type): the method's own error, or its result.
PyObject* python_attempt(PyObject* sock, PyObject* method, PyObject* arg) {
    return PyObject_CallMethodOneArg(sock, method, arg);
}

PyObject* sock_recv(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Prologue p;
    if (prologue(args, nargs, "sock_recv", &p) < 0) return nullptr;
    PyObject* sock = args[1];
    if (!PyLong_CheckExact(args[2])) return python_attempt(sock, s_recv, args[2]);
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n < 0) {
        if (PyErr_Occurred()) PyErr_Clear();
        return python_attempt(sock, s_recv, args[2]);  // its ValueError or OverflowError
    }
    if (n == 0) return PyBytes_FromStringAndSize(nullptr, 0);  // socket.recv(0) makes no call
    SockOpObject probe;
    probe.fd = p.fd;
    probe.kind = kRecv;
    probe.n = n;
    PyObject* result;
    if (attempt(&probe, &result)) return result;
    return start_wait(args[0], p.core, sock, p.fd, kRecv, n, nullptr, 0);
}

PyObject* sock_recv_into(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Prologue p;
    if (prologue(args, nargs, "sock_recv_into", &p) < 0) return nullptr;
    PyObject* sock = args[1];
    Py_buffer buf;
    if (PyObject_GetBuffer(args[2], &buf, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        return python_attempt(sock, s_recv_into, args[2]);  // its TypeError
    }
    SockOpObject probe;
    probe.fd = p.fd;
    probe.kind = kRecvInto;
    probe.buf = buf;
    PyObject* result;
    if (attempt(&probe, &result)) {
        PyBuffer_Release(&buf);
        return result;
    }
    return start_wait(args[0], p.core, sock, p.fd, kRecvInto, 0, &buf, 0);
}

PyObject* sock_sendall(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Prologue p;
    if (prologue(args, nargs, "sock_sendall", &p) < 0) return nullptr;
    PyObject* sock = args[1];
    Py_buffer buf;
    if (PyObject_GetBuffer(args[2], &buf, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return python_attempt(sock, s_send, args[2]);  // its TypeError
    }
    SockOpObject probe;
    probe.fd = p.fd;
    probe.kind = kSendAll;
    probe.buf = buf;
    probe.sent = 0;
    PyObject* result;
    if (attempt(&probe, &result)) {
        PyBuffer_Release(&buf);
        return result;
    }
    return start_wait(args[0], p.core, sock, p.fd, kSendAll, 0, &buf, probe.sent);
}

// The socket's address family when it is AF_INET or AF_INET6 (whose addresses are
// made here); 0 for any other (the Python face then does the work).
int inet_family(PyObject* sock) {
    PyObject* f = Py_TYPE(g_family)->tp_descr_get(g_family, sock, nullptr);
    if (!f) {
        PyErr_Clear();
        return 0;
    }
    long family = PyLong_AsLong(f);
    Py_DECREF(f);
    if (family == -1) PyErr_Clear();
    return family == AF_INET || family == AF_INET6 ? static_cast<int>(family) : 0;
}

PyObject* sock_recvfrom(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Prologue p;
    if (prologue(args, nargs, "sock_recvfrom", &p) < 0) return nullptr;
    PyObject* sock = args[1];
    if (!inet_family(sock)) Py_RETURN_NOTIMPLEMENTED;
    if (!PyLong_CheckExact(args[2])) Py_RETURN_NOTIMPLEMENTED;  // the socket method judges it
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n <= 0) {  // 0: the socket module's own rules; < 0: its ValueError
        if (PyErr_Occurred()) PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    SockOpObject probe;
    probe.fd = p.fd;
    probe.kind = kRecvFrom;
    probe.n = n;
    PyObject* result;
    if (attempt(&probe, &result)) return result;
    return start_wait(args[0], p.core, sock, p.fd, kRecvFrom, n, nullptr, 0);
}

// sock_recvfrom_into(loop, sock, buf, nbytes): nbytes already asyncio's (len(buf) for 0).
PyObject* sock_recvfrom_into(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Prologue p;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "sock_recvfrom_into() takes 4 arguments");
        return nullptr;
    }
    if (prologue(args, 3, "sock_recvfrom_into", &p) < 0) return nullptr;
    PyObject* sock = args[1];
    if (!inet_family(sock) || !PyLong_CheckExact(args[3])) Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t n = PyLong_AsSsize_t(args[3]);
    if (n < 0) {
        if (PyErr_Occurred()) PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_buffer buf;
    if (PyObject_GetBuffer(args[2], &buf, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (n > buf.len) {  // the socket module's ValueError
        PyBuffer_Release(&buf);
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (n == 0) n = buf.len;
    SockOpObject probe;
    probe.fd = p.fd;
    probe.kind = kRecvFromInto;
    probe.buf = buf;
    probe.n = n;
    PyObject* result;
    if (attempt(&probe, &result)) {
        PyBuffer_Release(&buf);
        return result;
    }
    return start_wait(args[0], p.core, sock, p.fd, kRecvFromInto, n, &buf, 0);
}

PyObject* sock_sendto(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Prologue p;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "sock_sendto() takes 4 arguments");
        return nullptr;
    }
    if (prologue(args, 3, "sock_sendto", &p) < 0) return nullptr;
    PyObject* sock = args[1];
    int family = inet_family(sock);
    SockOpObject probe;
    if (!family || parse_inet_address(family, args[3], &probe.addr, &probe.addr_len) != 1)
        Py_RETURN_NOTIMPLEMENTED;  // a name to resolve, a Unix path, odd types
    Py_buffer buf;
    if (PyObject_GetBuffer(args[2], &buf, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    probe.fd = p.fd;
    probe.kind = kSendTo;
    probe.buf = buf;
    PyObject* result;
    if (attempt(&probe, &result)) {
        PyBuffer_Release(&buf);
        return result;
    }
    PyObject* op = start_wait(args[0], p.core, sock, p.fd, kSendTo, 0, &buf, 0);
    if (op) {
        OP(op)->addr = probe.addr;
        OP(op)->addr_len = probe.addr_len;
    }
    return op;
}

PyObject* sock_op_abort(PyObject*, PyObject* o) {
    if (Py_TYPE(o) != SockOpType) {
        PyErr_SetString(PyExc_TypeError, "expected a SockOp");
        return nullptr;
    }
    finish(OP(o));
    Py_RETURN_NONE;
}

PyObject* sock_setup(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sock_setup(socket_type, check_socket)");
        return nullptr;
    }
    if (!PyType_Check(args[0]) || !reinterpret_cast<PyTypeObject*>(args[0])->tp_base) {
        PyErr_SetString(PyExc_TypeError, "socket.socket expected");
        return nullptr;
    }
    PyObject* family = PyObject_GetAttrString(
        reinterpret_cast<PyObject*>(reinterpret_cast<PyTypeObject*>(args[0])->tp_base), "family");
    if (!family) return nullptr;
    if (!Py_TYPE(family)->tp_descr_get) {
        Py_DECREF(family);
        PyErr_SetString(PyExc_TypeError, "_socket.socket.family is not a descriptor");
        return nullptr;
    }
    Py_XSETREF(g_family, family);
    Py_XSETREF(g_socket_type, Py_NewRef(args[0]));
    Py_XSETREF(g_check_socket, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

PyMethodDef functions[] = {
    {"sock_setup", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_setup)), METH_FASTCALL,
     "sock_setup(socket.socket, check_socket): what sock_* check their socket argument with."},
    {"sock_recv", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_recv)), METH_FASTCALL,
     "sock_recv(loop, sock, n): the bytes received, or a SockOp to await for them."},
    {"sock_recv_into", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_recv_into)), METH_FASTCALL,
     "sock_recv_into(loop, sock, buf): the number of bytes received, or a SockOp to await for it."},
    {"sock_sendall", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_sendall)), METH_FASTCALL,
     "sock_sendall(loop, sock, data): None when the kernel took it all, or a SockOp to await."},
    {"sock_recvfrom", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_recvfrom)), METH_FASTCALL,
     "sock_recvfrom(loop, sock, bufsize): (data, address), a SockOp to await for it, or NotImplemented "
     "(not an AF_INET/AF_INET6 socket, or arguments the socket method must judge)."},
    {"sock_recvfrom_into", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_recvfrom_into)),
     METH_FASTCALL, "sock_recvfrom_into(loop, sock, buf, nbytes): as sock_recvfrom, (nbytes, address)."},
    {"sock_sendto", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sock_sendto)), METH_FASTCALL,
     "sock_sendto(loop, sock, data, address): bytes sent, a SockOp, or NotImplemented (an address to "
     "resolve, not an AF_INET/AF_INET6 socket)."},
    {"sock_op_abort", sock_op_abort, METH_O, "Stop a SockOp's wait (its await ended otherwise)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int init_sock_op_functions(PyObject* module) {
    static PyType_Slot slots[] = {
        {Py_tp_dealloc, reinterpret_cast<void*>(SockOp_dealloc)},
        {Py_tp_traverse, reinterpret_cast<void*>(SockOp_traverse)},
        {Py_tp_clear, reinterpret_cast<void*>(SockOp_clear)},
        {Py_tp_call, reinterpret_cast<void*>(SockOp_call)},
        {Py_am_await, reinterpret_cast<void*>(SockOp_await)},
        {Py_tp_doc, const_cast<char*>("A sock_* operation waiting for its socket (await it).")},
        {0, nullptr},
    };
    static PyType_Spec spec = {"pyloop._core.SockOp", sizeof(SockOpObject), 0,
                               Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots};
    SockOpType = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&spec));
    if (!SockOpType) return -1;
    if (PyModule_AddObjectRef(module, "SockOp", reinterpret_cast<PyObject*>(SockOpType)) < 0) return -1;
    struct {
        PyObject** slot;
        const char* s;
    } names[] = {{&s_gettimeout, "gettimeout"}, {&s_done, "done"}, {&s_set_result, "set_result"},
                 {&s_set_exception, "set_exception"}, {&s_create_future, "create_future"},
                 {&s_is_closing, "is_closing"}, {&s_recv, "recv"}, {&s_recv_into, "recv_into"}, {&s_send, "send"}};
    for (auto& n : names)
        if (!(*n.slot = PyUnicode_InternFromString(n.s))) return -1;
    g_context = PyContext_New();
    if (!g_context) return -1;
    return PyModule_AddFunctions(module, functions);
}

}  // namespace pyloop
