// The sock_* hot paths in C++: see sock_wait.hpp.
#include "net/sock_wait.hpp"

#include "core/loop_object.hpp"
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
    PyObject* iter;          // owned: the future's iterator, once awaited
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

// A socket.socket's fd and timeout, read from its C struct (the socket module's
// PySocketSockObject: fd, family, type, proto, an error handler, the timeout in ns)
// rather than by calling fileno() and gettimeout(): two method calls on every sock_*
// call and every datagram sent. The layout is checked when sock_setup() is given the
// class (check_socket_layout); any other layout keeps the calls.
struct SocketLayout {
    PyObject_HEAD
    int fd;
    int family;
    int type;
    int proto;
    void* errorhandler;
    int64_t timeout_ns;  // 0: non-blocking; negative: blocking (no timeout)
};
bool g_socket_layout = false;

inline const SocketLayout* socket_struct(PyObject* sock) {
    return g_socket_layout && Py_TYPE(sock) == reinterpret_cast<PyTypeObject*>(g_socket_type)
               ? reinterpret_cast<const SocketLayout*>(sock)
               : nullptr;
}

bool check_socket_layout(PyObject* socket_type) {
    PyObject* sock = PyObject_CallFunction(socket_type, "ii", AF_INET, SOCK_DGRAM);
    if (!sock) {
        PyErr_Clear();
        return false;
    }
    const auto* l = reinterpret_cast<const SocketLayout*>(sock);
    bool ok = l->family == AF_INET && (l->type & 0xff) == SOCK_DGRAM && l->fd >= 0 &&
              PyObject_AsFileDescriptor(sock) == l->fd;
    PyObject* r = ok ? PyObject_CallMethod(sock, "settimeout", "d", 2.5) : nullptr;
    ok = ok && r && l->timeout_ns == 2500000000LL;
    Py_XDECREF(r);
    r = ok ? PyObject_CallMethod(sock, "setblocking", "O", Py_False) : nullptr;
    ok = ok && r && l->timeout_ns == 0;
    Py_XDECREF(r);
    r = ok ? PyObject_CallMethod(sock, "settimeout", "O", Py_None) : nullptr;
    ok = ok && r && l->timeout_ns < 0;
    Py_XDECREF(r);
    r = PyObject_CallMethod(sock, "close", nullptr);
    ok = ok && r && l->fd == -1;
    Py_XDECREF(r);
    Py_DECREF(sock);
    PyErr_Clear();
    return ok;
}

}  // namespace

int socket_fileno(PyObject* sock) {
    const SocketLayout* l = socket_struct(sock);
    if (l && l->fd >= 0) return l->fd;
    return PyObject_AsFileDescriptor(sock);
}

namespace {
PyObject* g_check_socket = nullptr;  // the Python face's check, for anything else
PyObject* g_family = nullptr;        // _socket.socket's `family` member (not the enum property)
PyObject* g_context = nullptr;       // an empty Context for the watch handles
PyObject *s_gettimeout, *s_done, *s_set_result, *s_set_exception, *s_create_future, *s_is_closing,
    *s_recv, *s_recv_into, *s_send;

inline SockOpObject* OP(PyObject* o) { return reinterpret_cast<SockOpObject*>(o); }

// asyncio's checks of the socket argument (SSLSocket refused; pyloop also refuses a
// blocking socket, in and out of debug mode: in debug mode before anything else, as
// asyncio, otherwise after a closed socket's OSError, as asyncio's call would raise).
// Sets *fd. -1 with an exception set.
int check_socket(PyObject* sock, int* fd, bool debug) {
    if (Py_TYPE(sock) == reinterpret_cast<PyTypeObject*>(g_socket_type)) {
        bool nonblocking;
        if (const SocketLayout* l = socket_struct(sock)) {
            nonblocking = l->timeout_ns == 0;
        } else {
            PyObject* t = PyObject_CallMethodNoArgs(sock, s_gettimeout);
            if (!t) return -1;
            nonblocking = PyFloat_Check(t) && PyFloat_AS_DOUBLE(t) == 0.0;
            Py_DECREF(t);
        }
        if (debug && !nonblocking) {  // asyncio's debug check comes before any use of the socket
            PyErr_SetString(PyExc_ValueError, "the socket must be non-blocking");
            return -1;
        }
        *fd = socket_fileno(sock);
        if (*fd < 0) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {  // fileno() returned -1: closed
                PyErr_Clear();
                errno = EBADF;
                PyErr_SetFromErrno(PyExc_OSError);  // what the socket call would raise
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

// sock_recv and sock_recvfrom of up to kStage bytes receive into the loop's read
// scratch buffer, then copy what came into a bytes object of its size (a bytes of the
// size asked for, as socket.recv makes it, was a quarter of sock_recv's CPU in page
// faults at 100 KiB per request); an attempt that finds nothing allocates nothing.
constexpr Py_ssize_t kStage = static_cast<Py_ssize_t>(kReadScratch);

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
                if (op->n <= kStage) {
                    r = ::recv(op->fd, read_scratch(), op->n, 0);
                    break;
                }
                bytes = PyBytes_FromStringAndSize(nullptr, op->n);
                if (!bytes) return 1;
                r = ::recv(op->fd, PyBytes_AS_STRING(bytes), op->n, 0);
                break;
            case kRecvInto:
                r = ::recv(op->fd, op->buf.buf, op->buf.len, 0);
                break;
            case kRecvFrom:
                from_len = sizeof from;
                if (op->n <= kStage) {
                    r = ::recvfrom(op->fd, read_scratch(), op->n, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
                    break;
                }
                bytes = PyBytes_FromStringAndSize(nullptr, op->n);
                if (!bytes) return 1;
                r = ::recvfrom(op->fd, PyBytes_AS_STRING(bytes), op->n, 0, reinterpret_cast<sockaddr*>(&from),
                               &from_len);
                break;
            case kRecvFromInto:
                from_len = sizeof from;
                r = ::recvfrom(op->fd, op->buf.buf, op->n, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
                break;
            case kSendTo:
                // MSG_NOSIGNAL as sock_sendall's: a stream socket whose peer has gone
                // gives EPIPE, not a SIGPIPE that kills a process at its default action
                r = ::sendto(op->fd, op->buf.buf, op->buf.len, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&op->addr),
                             op->addr_len);
                break;
            default:
                r = ::send(op->fd, static_cast<char*>(op->buf.buf) + op->sent, op->buf.len - op->sent, MSG_NOSIGNAL);
                break;
        }
        if (r < 0) {
            int err = errno;  // before the bytes object is freed
            Py_XDECREF(bytes);
            if (err == EINTR) {
                if (PyErr_CheckSignals() < 0) return 1;
                continue;
            }
            if (err == EAGAIN || err == EWOULDBLOCK) return 0;
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            return 1;
        }
        if (is_writer(op->kind)) op->core->count_written(static_cast<size_t>(r));
        else op->core->count_read(static_cast<size_t>(r));
        switch (op->kind) {
            case kRecv:
                if (!bytes) bytes = PyBytes_FromStringAndSize(read_scratch(), r);
                else if (r != op->n && _PyBytes_Resize(&bytes, r) < 0) return 1;
                *result = bytes;
                return 1;
            case kRecvInto:
            case kSendTo:
                *result = PyLong_FromSsize_t(r);
                return 1;
            case kRecvFrom:
            case kRecvFromInto: {
                if (op->kind == kRecvFrom && !bytes) bytes = PyBytes_FromStringAndSize(read_scratch(), r);
                else if (op->kind == kRecvFrom && r != op->n && _PyBytes_Resize(&bytes, r) < 0) return 1;
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
    int fd = socket_fileno(op->sock);
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

// `await op` awaits the future through the op, which stops the wait when the
// awaiting coroutine is thrown into (a cancelled task) or closed: the Python face
// needs no try/except around it.
PyObject* SockOp_await(PyObject* o) {
    SockOpObject* op = OP(o);
    if (!op->iter) {
        if (!op->fut) {
            PyErr_SetString(PyExc_RuntimeError, "the socket operation is over");
            return nullptr;
        }
        PyAsyncMethods* am = Py_TYPE(op->fut)->tp_as_async;
        op->iter = am && am->am_await ? am->am_await(op->fut) : PyObject_CallMethod(op->fut, "__await__", nullptr);
        if (!op->iter) return nullptr;
    }
    return Py_NewRef(o);
}

PySendResult SockOp_send(PyObject* o, PyObject* arg, PyObject** result) {
    SockOpObject* op = OP(o);
    if (!op->iter) {
        PyErr_SetString(PyExc_RuntimeError, "the socket operation is not awaited");
        *result = nullptr;
        return PYGEN_ERROR;
    }
    return PyIter_Send(op->iter, arg, result);
}

// A send's outcome as next()/send() give it: the value yielded, or StopIteration
// carrying the value returned.
PyObject* as_iteration(PySendResult r, PyObject* result) {
    if (r == PYGEN_NEXT) return result;
    if (r == PYGEN_RETURN) {
        PyObject* exc = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (exc) {
            PyErr_SetObject(PyExc_StopIteration, exc);
            Py_DECREF(exc);
        }
    }
    return nullptr;
}

PyObject* SockOp_iternext(PyObject* o) {
    PyObject* result;
    PySendResult r = SockOp_send(o, Py_None, &result);
    return as_iteration(r, result);
}

PyObject* SockOp_send_method(PyObject* o, PyObject* arg) {
    PyObject* result;
    PySendResult r = SockOp_send(o, arg, &result);
    return as_iteration(r, result);
}

// throw()/close() from the awaiting coroutine: the wait ends here, then the future's
// iterator does what it does (raises what was thrown).
PyObject* SockOp_throw(PyObject* o, PyObject* args) {
    SockOpObject* op = OP(o);
    finish(op);
    if (!op->iter) {
        PyErr_SetString(PyExc_RuntimeError, "the socket operation is not awaited");
        return nullptr;
    }
    PyObject* m = PyObject_GetAttrString(op->iter, "throw");
    if (!m) return nullptr;
    PyObject* r = PyObject_Call(m, args, nullptr);
    Py_DECREF(m);
    return r;
}

PyObject* SockOp_close(PyObject* o, PyObject*) {
    finish(OP(o));
    Py_RETURN_NONE;
}

int SockOp_traverse(PyObject* o, visitproc visit, void* arg) {
    SockOpObject* op = OP(o);
    Py_VISIT(op->loop);
    Py_VISIT(op->fut);
    Py_VISIT(op->iter);
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
    Py_CLEAR(op->iter);
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

// Starts waiting: a future, and a one-shot watch of the fd, for the operation the
// probe describes (its buffer, if has_buf, passes to the SockOp). Returns the SockOp
// (a new reference) or nullptr with an exception set (the buffer released).
PyObject* start_wait(PyObject* loop, LoopCore* core, PyObject* sock, SockOpObject& probe) {
    int fd = probe.fd;
    OpKind kind = probe.kind;
    auto fail = [&]() -> PyObject* {
        if (probe.has_buf) PyBuffer_Release(&probe.buf);
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
    op->iter = nullptr;
    op->has_buf = probe.has_buf;
    if (probe.has_buf) op->buf = probe.buf;
    op->fd = fd;
    op->kind = kind;
    op->n = probe.n;
    op->sent = probe.sent;
    op->addr = probe.addr;
    op->addr_len = probe.addr_len;
    PyObject_GC_Track(op);
    PyObject* self = reinterpret_cast<PyObject*>(op);
    HandleObject* h = handle_new(HandleType, self, nullptr, 0, g_context, loop, core);
    if (!h) {
        Py_DECREF(self);
        return nullptr;
    }
    if (core->add_poll(fd, is_writer(kind), h, op_ready, kKindSock) < 0) {
        handle_cancel(h);
        Py_DECREF(h);
        Py_DECREF(self);
        return nullptr;
    }
    op->handle = h;
    return self;
}

// One call's checked arguments, and the operation as the first attempt makes it.
struct Call {
    LoopCore* core;
    SockOpObject probe;  // fd, kind, n, buf/has_buf, sent, addr: what start_wait copies
};

// loop, sock (and the argument count): checked. -1 with an exception set.
int prologue(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t want, const char* name, OpKind kind, Call* c) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", name, want);
        return -1;
    }
    c->core = core_of(args[0]);
    if (!c->core) return -1;
    c->probe.core = c->core;
    c->probe.kind = kind;
    c->probe.n = 0;
    c->probe.sent = 0;
    c->probe.has_buf = false;
    c->probe.addr_len = 0;
    return check_socket(args[1], &c->probe.fd, c->core->debug());
}

// Takes the buffer of args[i] (writable or not) into the call: false when the object
// has none of that kind (then the socket method judges it).
bool take_buffer(Call* c, PyObject* obj, int flags) {
    if (PyObject_GetBuffer(obj, &c->probe.buf, flags) < 0) {
        PyErr_Clear();
        return false;
    }
    c->probe.has_buf = true;
    return true;
}

// The first attempt; its result, or the wait for it (a SockOp).
PyObject* try_or_wait(PyObject* const* args, Call* c) {
    PyObject* result;
    if (attempt(&c->probe, &result)) {
        if (c->probe.has_buf) PyBuffer_Release(&c->probe.buf);
        return result;
    }
    return start_wait(args[0], c->core, args[1], c->probe);
}

// Runs the first attempt of an operation whose arguments the socket method itself
// must judge (an odd type): the method's own error, or its result.
PyObject* python_attempt(PyObject* sock, PyObject* method, PyObject* arg) {
    return PyObject_CallMethodOneArg(sock, method, arg);
}

PyObject* sock_recv(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Call c;
    if (prologue(args, nargs, 3, "sock_recv", kRecv, &c) < 0) return nullptr;
    PyObject* n = args[2];
    PyObject* index = nullptr;
    if (!PyLong_CheckExact(n)) {
        // An int-like size (__index__), as socket.recv takes it; anything else the
        // socket method judges (its TypeError).
        index = PyNumber_Index(n);
        if (!index) {
            PyErr_Clear();
            return python_attempt(args[1], s_recv, n);
        }
        n = index;
    }
    c.probe.n = PyLong_AsSsize_t(n);
    Py_XDECREF(index);
    if (c.probe.n < 0) {
        if (PyErr_Occurred()) PyErr_Clear();
        return python_attempt(args[1], s_recv, args[2]);  // its ValueError or OverflowError
    }
    if (c.probe.n == 0) return PyBytes_FromStringAndSize(nullptr, 0);  // socket.recv(0) makes no call
    return try_or_wait(args, &c);
}

PyObject* sock_recv_into(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Call c;
    if (prologue(args, nargs, 3, "sock_recv_into", kRecvInto, &c) < 0) return nullptr;
    if (!take_buffer(&c, args[2], PyBUF_WRITABLE)) return python_attempt(args[1], s_recv_into, args[2]);
    return try_or_wait(args, &c);
}

PyObject* sock_sendall(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Call c;
    if (prologue(args, nargs, 3, "sock_sendall", kSendAll, &c) < 0) return nullptr;
    if (!take_buffer(&c, args[2], PyBUF_SIMPLE)) return python_attempt(args[1], s_send, args[2]);
    return try_or_wait(args, &c);
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

// A size argument the C path takes (an exact int, at least `least`): else false, and
// the socket method judges it.
bool size_arg(PyObject* o, Py_ssize_t least, Py_ssize_t* n) {
    if (!PyLong_CheckExact(o)) return false;
    *n = PyLong_AsSsize_t(o);
    if (*n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return false;
    }
    return *n >= least;
}

// The datagram methods return NotImplemented for anything but an AF_INET/AF_INET6
// socket and arguments the C path takes: the Python face then does what asyncio does.
PyObject* sock_recvfrom(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Call c;
    if (prologue(args, nargs, 3, "sock_recvfrom", kRecvFrom, &c) < 0) return nullptr;
    if (!inet_family(args[1]) || !size_arg(args[2], 1, &c.probe.n)) Py_RETURN_NOTIMPLEMENTED;
    return try_or_wait(args, &c);
}

// sock_recvfrom_into(loop, sock, buf, nbytes): nbytes already asyncio's (len(buf) for 0).
PyObject* sock_recvfrom_into(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Call c;
    if (prologue(args, nargs, 4, "sock_recvfrom_into", kRecvFromInto, &c) < 0) return nullptr;
    if (!inet_family(args[1]) || !size_arg(args[3], 0, &c.probe.n) || !take_buffer(&c, args[2], PyBUF_WRITABLE))
        Py_RETURN_NOTIMPLEMENTED;
    if (c.probe.n > c.probe.buf.len) {  // the socket module's ValueError
        PyBuffer_Release(&c.probe.buf);
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (c.probe.n == 0) c.probe.n = c.probe.buf.len;
    return try_or_wait(args, &c);
}

PyObject* sock_sendto(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    Call c;
    if (prologue(args, nargs, 4, "sock_sendto", kSendTo, &c) < 0) return nullptr;
    int family = inet_family(args[1]);
    if (!family || parse_inet_address(family, args[3], &c.probe.addr, &c.probe.addr_len) != 1 ||
        !take_buffer(&c, args[2], PyBUF_SIMPLE))
        Py_RETURN_NOTIMPLEMENTED;  // a name to resolve, a Unix path, odd types
    return try_or_wait(args, &c);
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
    g_socket_layout = check_socket_layout(args[0]);
    Py_RETURN_NONE;
}

PyObject* socket_struct_read(PyObject*, PyObject*) { return PyBool_FromLong(g_socket_layout); }

PyMethodDef functions[] = {
    {"_socket_struct_read", socket_struct_read, METH_NOARGS,
     "Are socket.socket's fd and timeout read from its struct (its layout checked at import)?"},
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
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

static PyMethodDef SockOp_methods[] = {
    {"send", SockOp_send_method, METH_O, nullptr},
    {"throw", SockOp_throw, METH_VARARGS, nullptr},
    {"close", SockOp_close, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

int init_sock_op_functions(PyObject* module) {
    static PyType_Slot slots[] = {
        {Py_tp_dealloc, reinterpret_cast<void*>(SockOp_dealloc)},
        {Py_tp_traverse, reinterpret_cast<void*>(SockOp_traverse)},
        {Py_tp_clear, reinterpret_cast<void*>(SockOp_clear)},
        {Py_tp_call, reinterpret_cast<void*>(SockOp_call)},
        {Py_am_await, reinterpret_cast<void*>(SockOp_await)},
        {Py_am_send, reinterpret_cast<void*>(SockOp_send)},
        {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
        {Py_tp_iternext, reinterpret_cast<void*>(SockOp_iternext)},
        {Py_tp_methods, SockOp_methods},
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
