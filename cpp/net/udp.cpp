// DatagramBase: see udp.hpp.
#include "net/udp.hpp"

#include "core/loop_object.hpp"
#include "core/loop.hpp"
#include "net/sock_ops.hpp"
#include "net/sock_wait.hpp"
#include "net/stream.hpp"

#include <netinet/in.h>
#include <structmember.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace pyloop {

namespace {

struct DgramObject {
    PyObject_HEAD
    PyObject* extra;       // asyncio.BaseTransport's `_extra` slot: must come first
    PyObject* protocol;    // _protocol
    PyObject* address;     // _address: the connected peer (remote_addr), or None
    PyObject* sock;        // _sock: the socket object, None once closed
    Py_ssize_t conn_lost;  // _conn_lost
    Py_ssize_t buffer_size;  // _buffer_size: bytes in the Python half's write buffer
    int fd;                // _fd
    int family;            // _family
    char closing;          // _closing
    char paused;           // _paused: reading paused
    char connected;        // _connected: the socket has a peer (send, not sendto)
    PyObject* loop;        // _loop
    LoopCore* core;        // loop's core (bytes counted for loop.metrics()), or nullptr
};

constexpr Py_ssize_t kMaxDatagram = kReadScratch;  // asyncio's max_size (256 KiB)
constexpr int kBatch = 32;                          // datagrams read per wake-up, at most

PyObject *s_datagram_received, *s_error_received, *s_sendto_slow;

inline DgramObject* D(PyObject* o) { return reinterpret_cast<DgramObject*>(o); }

PyObject* error_received(DgramObject* t, int err) {
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject* exc = fetch_exception();
    PyObject* args[2] = {t->protocol, exc};
    PyObject* r = PyObject_VectorcallMethod(s_error_received, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    Py_DECREF(exc);
    return r;
}

// sendto(data, addr=None): asyncio's, with the common case here: nothing queued, the
// transport open, bytes-like data, the connected peer or a numeric address. Anything
// else, and a send the kernel refuses with EAGAIN, goes to the Python half.
PyObject* Dgram_sendto(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    DgramObject* t = D(self);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject* addr = Py_None;
    bool fast = !kwnames && (nargs == 1 || nargs == 2) && t->buffer_size == 0 && t->conn_lost == 0 &&
                t->sock != Py_None && (t->family == AF_INET || t->family == AF_INET6);
    if (fast && nargs == 2) addr = args[1];
    Py_buffer buf;
    if (fast) {
        PyObject* data = args[0];
        fast = (PyBytes_Check(data) || PyByteArray_Check(data) || PyMemoryView_Check(data)) &&
               PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) == 0;
        if (!fast) PyErr_Clear();
    }
    if (fast) {
#if PY_VERSION_HEX < 0x030D0000
        if (buf.len == 0) {  // asyncio sends no empty datagram before 3.13
            PyBuffer_Release(&buf);
            Py_RETURN_NONE;
        }
#endif
        struct sockaddr_storage ss;
        socklen_t sl = 0;
        if (t->address != Py_None) {
            fast = addr == Py_None || addr == t->address;  // else the Python half compares (and raises)
        } else if (!t->connected) {
            fast = parse_inet_address(t->family, addr, &ss, &sl) == 1;
        }
        if (fast) {
            // A socket object closed under the transport (the user's, passed as sock=)
            // must not send through a number the kernel may have reused: the Python
            // half makes the call, and the socket module raises what asyncio sees.
            int fd = socket_fileno(t->sock);
            if (fd != t->fd) {
                PyErr_Clear();
                fast = false;
            }
        }
        if (fast) {
            ssize_t r;
            do {
                r = t->connected ? ::send(t->fd, buf.buf, buf.len, 0)
                                 : ::sendto(t->fd, buf.buf, buf.len, 0, reinterpret_cast<sockaddr*>(&ss), sl);
            } while (r < 0 && errno == EINTR);
            int err = r < 0 ? errno : 0;
            PyBuffer_Release(&buf);
            if (r >= 0) {
                if (t->core) t->core->count_written(static_cast<size_t>(r));
                Py_RETURN_NONE;
            }
            if (err != EAGAIN && err != EWOULDBLOCK) {
                PyObject* res = error_received(t, err);
                if (!res) return nullptr;
                Py_DECREF(res);
                Py_RETURN_NONE;
            }
            // EAGAIN: the Python half tries again and queues what the kernel refuses.
        } else {
            PyBuffer_Release(&buf);
        }
    }
    // The Python half, with the arguments as given (its signature judges odd ones).
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject* small[4];
    PyObject** all = total < 4 ? small : static_cast<PyObject**>(PyMem_Malloc((total + 1) * sizeof(PyObject*)));
    if (!all) return PyErr_NoMemory();
    all[0] = self;
    for (Py_ssize_t i = 0; i < total; i++) all[i + 1] = args[i];
    PyObject* r = PyObject_VectorcallMethod(s_sendto_slow, all, (nargs + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    if (all != small) PyMem_Free(all);
    return r;
}

// The reader: what asyncio's _read_ready does once, done for up to kBatch datagrams
// while the transport stays open and reading (a callback may pause or close it).
PyObject* Dgram_read_ready(PyObject* self, PyObject*) {
    DgramObject* t = D(self);
    if (t->conn_lost) Py_RETURN_NONE;
    int fd = socket_fileno(t->sock);
    if (fd != t->fd) {  // the user closed the socket object under the transport: as asyncio
        PyErr_Clear();
        return PyObject_CallMethodNoArgs(self, PY_NAME("_read_ready_py"));
    }
    for (int i = 0; i < kBatch; i++) {
        if (t->conn_lost || (i > 0 && (t->closing || t->paused))) break;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        ssize_t r = ::recvfrom(t->fd, read_scratch(), kMaxDatagram, 0, reinterpret_cast<sockaddr*>(&ss), &sl);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            PyObject* res = error_received(t, errno);
            if (!res) return nullptr;
            Py_DECREF(res);
            break;  // as asyncio: one error per wake-up
        }
        if (t->core) t->core->count_read(static_cast<size_t>(r));
        PyObject* data = PyBytes_FromStringAndSize(read_scratch(), r);
        if (!data) return nullptr;
        PyObject* addr = inet_address(ss);
        if (!addr) {
            Py_DECREF(data);
            return nullptr;
        }
        PyObject* protocol = Py_NewRef(t->protocol);
        PyObject* args[3] = {protocol, data, addr};
        PyObject* res =
            PyObject_VectorcallMethod(s_datagram_received, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
        Py_DECREF(protocol);
        Py_DECREF(data);
        Py_DECREF(addr);
        if (!res) return nullptr;  // to the loop's exception handler, as asyncio's would go
        Py_DECREF(res);
    }
    Py_RETURN_NONE;
}

int Dgram_traverse(PyObject* o, visitproc visit, void* arg) {
    DgramObject* t = D(o);
    Py_VISIT(Py_TYPE(o));
    Py_VISIT(t->extra);
    Py_VISIT(t->protocol);
    Py_VISIT(t->address);
    Py_VISIT(t->sock);
    Py_VISIT(t->loop);
    return 0;
}

int Dgram_clear(PyObject* o) {
    DgramObject* t = D(o);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->address);
    Py_CLEAR(t->sock);
    t->core = nullptr;
    Py_CLEAR(t->loop);
    return 0;
}

void Dgram_dealloc(PyObject* o) {
    PyTypeObject* tp = Py_TYPE(o);
    PyObject_GC_UnTrack(o);
    Dgram_clear(o);
    tp->tp_free(o);
    Py_DECREF(tp);
}

PyObject* Dgram_new(PyTypeObject* type, PyObject*, PyObject*) {
    PyObject* o = type->tp_alloc(type, 0);
    if (!o) return nullptr;
    DgramObject* t = D(o);
    t->protocol = Py_NewRef(Py_None);
    t->address = Py_NewRef(Py_None);
    t->sock = Py_NewRef(Py_None);
    t->fd = -1;
    return o;
}

PyObject* Dgram_get_loop(PyObject* o, void*) { return Py_NewRef(D(o)->loop ? D(o)->loop : Py_None); }

int Dgram_set_loop(PyObject* o, PyObject* v, void*) {
    DgramObject* t = D(o);
    if (!v) v = Py_None;
    t->core = core_if_loop(v);
    Py_XSETREF(t->loop, Py_NewRef(v));
    return 0;
}

PyGetSetDef Dgram_getset[] = {
    {"_loop", Dgram_get_loop, Dgram_set_loop, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef Dgram_methods[] = {
    {"sendto", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Dgram_sendto)),
     METH_FASTCALL | METH_KEYWORDS, "Send data to addr (the connected peer when None)."},
    {"_read_ready", Dgram_read_ready, METH_NOARGS, "Receive what is there and hand it to the protocol."},
    {nullptr, nullptr, 0, nullptr},
};

PyMemberDef Dgram_members[] = {
    {"_protocol", T_OBJECT, offsetof(DgramObject, protocol), 0, nullptr},
    {"_address", T_OBJECT, offsetof(DgramObject, address), 0, nullptr},
    {"_sock", T_OBJECT, offsetof(DgramObject, sock), 0, nullptr},
    {"_conn_lost", T_PYSSIZET, offsetof(DgramObject, conn_lost), 0, nullptr},
    {"_buffer_size", T_PYSSIZET, offsetof(DgramObject, buffer_size), 0, nullptr},
    {"_fd", T_INT, offsetof(DgramObject, fd), 0, nullptr},
    {"_family", T_INT, offsetof(DgramObject, family), 0, nullptr},
    {"_closing", T_BOOL, offsetof(DgramObject, closing), 0, nullptr},
    {"_paused", T_BOOL, offsetof(DgramObject, paused), 0, nullptr},
    {"_connected", T_BOOL, offsetof(DgramObject, connected), 0, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot Dgram_slots[] = {
    {Py_tp_doc, const_cast<char*>("The C half of pyloop's datagram transport (pyloop._udp.DatagramTransport).")},
    {Py_tp_new, reinterpret_cast<void*>(Dgram_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Dgram_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Dgram_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Dgram_clear)},
    {Py_tp_methods, Dgram_methods},
    {Py_tp_members, Dgram_members},
    {Py_tp_getset, Dgram_getset},
    {0, nullptr},
};

PyType_Spec Dgram_spec = {
    "pyloop._core.DatagramBase", sizeof(DgramObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, Dgram_slots,
};

}  // namespace

int init_udp_type(PyObject* module) {
    PyTypeObject* type = new_transport_type(module, &Dgram_spec, offsetof(DgramObject, extra) + sizeof(PyObject*));
    if (!type) return -1;
    struct {
        PyObject** slot;
        const char* s;
    } names[] = {{&s_datagram_received, "datagram_received"}, {&s_error_received, "error_received"},
                 {&s_sendto_slow, "_sendto_slow"}};
    for (auto& n : names)
        if (!(*n.slot = PyUnicode_InternFromString(n.s))) return -1;
    int r = PyModule_AddObjectRef(module, "DatagramBase", reinterpret_cast<PyObject*>(type));
    Py_DECREF(type);
    return r;
}

}  // namespace pyloop
