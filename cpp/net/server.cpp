// Acceptor: a TCP server's accept loop (see server.hpp), as asyncio's
// _accept_connection and _accept_connection2 do it, minus the task per connection.
#include "net/server.hpp"

#include "core/loop_object.hpp"
#include "core/loop.hpp"
#include "net/sock_ops.hpp"
#include "net/stream.hpp"
#include "net/stream_methods.hpp"
#include "net/tls.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pyloop {

PyTypeObject* AcceptorType = nullptr;

namespace {

PyObject* g_socket_type;            // socket.socket
PyObject* g_transport_socket_type;  // asyncio.trsock.TransportSocket

struct AcceptorObject {
    PyObject_HEAD
    LoopCore* core;
    PyObject* loop;
    PyObject* server;
    PyObject* sock;        // the listening socket object
    PyObject* factory;     // the server's protocol factory
    PyObject* tls_args;    // None, or (sslcontext, handshake timeout, shutdown timeout)
    PyObject* on_resource_error;  // loop._accept_out_of_resources(server, sock, exc)
    Py_ssize_t backlog;
    int family;
    int type;
    int proto;
};

inline AcceptorObject* A(PyObject* o) { return reinterpret_cast<AcceptorObject*>(o); }

bool is_sys_exit() {
    return PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

// What pyloop's accept loop does when making a connection's transport failed: close
// the socket, tell the exception handler, go on with the next connection.
int creation_failed(AcceptorObject* a, PyObject* conn) {
    if (is_sys_exit()) return -1;
    PyObject* exc = fetch_exception();
    if (conn) {
        PyObject* r = PyObject_CallMethodNoArgs(conn, PY_NAME("close"));
        if (r) Py_DECREF(r);
        else PyErr_Clear();
    }
    PyObject* ctx = Py_BuildValue("{s:s,s:O}", "message", "Error on transport creation for incoming connection",
                                  "exception", exc);
    PyObject* r = ctx ? PyObject_CallMethod(a->loop, "call_exception_handler", "O", ctx) : nullptr;
    Py_XDECREF(ctx);
    Py_DECREF(exc);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

// An AF_INET or AF_INET6 address into a sockaddr_in6-sized slot (AF_UNSPEC otherwise).
void keep_address(struct sockaddr_in6* slot, const struct sockaddr* sa) {
    std::memset(slot, 0, sizeof *slot);
    if (sa->sa_family == AF_INET) std::memcpy(slot, sa, sizeof(struct sockaddr_in));
    else if (sa->sa_family == AF_INET6) std::memcpy(slot, sa, sizeof(struct sockaddr_in6));
    else slot->sin6_family = AF_UNSPEC;
}

PyObject* address_or_none(const struct sockaddr* sa) {
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) Py_RETURN_NONE;
    return sockaddr_to_tuple(sa);
}

// One accepted connection: its socket object, extra info, protocol and transport.
int make_connection(AcceptorObject* a, int cfd, const struct sockaddr* peer) {
    // SOCK_NONBLOCK in the type: the object knows it is non-blocking (timeout 0.0, as
    // asyncio's conn.setblocking(False) leaves it) without another system call.
    PyObject* conn = PyObject_CallFunction(g_socket_type, "iiii", a->family, a->type | SOCK_NONBLOCK, a->proto, cfd);
    if (!conn) {
        ::close(cfd);
        return creation_failed(a, nullptr);
    }
    // The extra info (socket, sockname, peername) is made when first asked for
    // (stream.cpp): most servers never ask, and it is most of a connection's memory.
    // The addresses are kept now, as asyncio keeps them: readable after the peer left.
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    if (getsockname(cfd, reinterpret_cast<struct sockaddr*>(&local), &local_len) != 0) local.ss_family = AF_UNSPEC;
    PyObject* extra = PyDict_New();
    PyObject* protocol = extra ? PyObject_CallNoArgs(a->factory) : nullptr;
    PyObject* layer = protocol;
    if (protocol && a->tls_args != Py_None) {
        PyObject* ctx = PyTuple_GET_ITEM(a->tls_args, 0);
        PyObject* hs = PyTuple_GET_ITEM(a->tls_args, 1);
        PyObject* sd = PyTuple_GET_ITEM(a->tls_args, 2);
        layer = PyObject_CallFunction(reinterpret_cast<PyObject*>(TlsProtocolType), "OOOOOOOOOO", a->loop, protocol,
                                      ctx, Py_None, Py_True, Py_None, Py_True, hs, sd, Py_True);
        Py_DECREF(protocol);
    }
    PyObject* transport =
        layer ? stream_transport_open(a->core, a->loop, conn, cfd, a->family, layer, extra, a->server, true) : nullptr;
    Py_XDECREF(layer);
    Py_XDECREF(extra);
    if (!transport) {
        int r = creation_failed(a, conn);
        Py_DECREF(conn);
        return r;
    }
    auto* t = reinterpret_cast<TransportObject*>(transport);
    keep_address(&t->lazy_local, reinterpret_cast<const struct sockaddr*>(&local));
    keep_address(&t->lazy_peer, peer);
    t->lazy_extra = true;
    Py_DECREF(transport);  // it holds itself while open
    Py_DECREF(conn);
    return 0;
}

PyObject* Acceptor_call(PyObject* self, PyObject* args, PyObject* kwargs) {
    AcceptorObject* a = A(self);
    if ((args && PyTuple_GET_SIZE(args)) || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Acceptor() takes no arguments");
        return nullptr;
    }
    // The socket object's fd now (the user may have closed it): as sock.accept() would.
    PyObject* fileno = PyObject_CallMethodNoArgs(a->sock, PY_NAME("fileno"));
    if (!fileno) return nullptr;
    int fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    if (fd < 0) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_INCREF(self);  // a protocol factory may stop the server
    for (Py_ssize_t i = 0; i < a->backlog; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int cfd = accept4(fd, reinterpret_cast<struct sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) break;
            PyObject* exc = PyObject_CallFunction(PyExc_OSError, "is", e, strerror(e));
            if (!exc) {
                Py_DECREF(self);
                return nullptr;
            }
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                // Out of file descriptors (or memory): pyloop's Python side says so,
                // pauses accepting and tries again later, as asyncio does.
                PyObject* r = PyObject_CallFunctionObjArgs(a->on_resource_error, a->server, a->sock, exc, nullptr);
                Py_DECREF(exc);
                Py_DECREF(self);
                if (!r) return nullptr;
                Py_DECREF(r);
                Py_RETURN_NONE;
            }
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
            Py_DECREF(exc);
            Py_DECREF(self);
            return nullptr;
        }
        if (make_connection(a, cfd, reinterpret_cast<struct sockaddr*>(&peer)) < 0) {
            Py_DECREF(self);
            return nullptr;
        }
    }
    Py_DECREF(self);
    Py_RETURN_NONE;
}

// Acceptor(loop, server, sock, backlog, protocol_factory, tls_args, on_resource_error)
PyObject* Acceptor_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    PyObject *loop, *server, *sock, *factory, *tls_args, *on_error;
    Py_ssize_t backlog;
    if (kwargs && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "Acceptor() takes positional arguments only");
        return nullptr;
    }
    if (!PyArg_ParseTuple(args, "OOOnOOO:Acceptor", &loop, &server, &sock, &backlog, &factory, &tls_args, &on_error))
        return nullptr;
    if (tls_args != Py_None && (!PyTuple_Check(tls_args) || PyTuple_GET_SIZE(tls_args) != 3)) {
        PyErr_SetString(PyExc_TypeError, "tls_args must be None or (sslcontext, handshake_timeout, shutdown_timeout)");
        return nullptr;
    }
    LoopCore* core = core_of(loop);
    if (!core) return nullptr;
    int nums[3];
    const char* names[3] = {"family", "type", "proto"};
    for (int i = 0; i < 3; i++) {
        PyObject* v = PyObject_GetAttrString(sock, names[i]);
        if (!v) return nullptr;
        nums[i] = PyLong_AsLong(v);
        Py_DECREF(v);
        if (nums[i] == -1 && PyErr_Occurred()) return nullptr;
    }
    auto* a = A(type->tp_alloc(type, 0));
    if (!a) return nullptr;
    a->core = core;
    a->loop = Py_NewRef(loop);
    a->server = Py_NewRef(server);
    a->sock = Py_NewRef(sock);
    a->factory = Py_NewRef(factory);
    a->tls_args = Py_NewRef(tls_args);
    a->on_resource_error = Py_NewRef(on_error);
    a->backlog = backlog;
    a->family = nums[0];
    a->type = nums[1];
    a->proto = nums[2];
    return reinterpret_cast<PyObject*>(a);
}

int Acceptor_traverse(PyObject* self, visitproc visit, void* arg) {
    AcceptorObject* a = A(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(a->loop);
    Py_VISIT(a->server);
    Py_VISIT(a->sock);
    Py_VISIT(a->factory);
    Py_VISIT(a->tls_args);
    Py_VISIT(a->on_resource_error);
    return 0;
}

int Acceptor_clear(PyObject* self) {
    AcceptorObject* a = A(self);
    // loop stays: the core pointer is only valid while it lives.
    Py_CLEAR(a->server);
    Py_CLEAR(a->sock);
    Py_CLEAR(a->factory);
    Py_CLEAR(a->tls_args);
    Py_CLEAR(a->on_resource_error);
    return 0;
}

void Acceptor_dealloc(PyObject* self) {
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Acceptor_clear(self);
    Py_CLEAR(A(self)->loop);
    tp->tp_free(self);
    Py_DECREF(tp);
}

PyObject* Acceptor_call_checked(PyObject* self, PyObject* args, PyObject* kwargs) {
    if (!A(self)->sock) {
        PyErr_SetString(PyExc_RuntimeError, "Acceptor was cleared");
        return nullptr;
    }
    return Acceptor_call(self, args, kwargs);
}

PyType_Slot Acceptor_slots[] = {
    {Py_tp_doc, const_cast<char*>("A TCP server's accept loop in C++ (the callback of its listening socket).")},
    {Py_tp_new, reinterpret_cast<void*>(Acceptor_new)},
    {Py_tp_call, reinterpret_cast<void*>(Acceptor_call_checked)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Acceptor_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Acceptor_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Acceptor_clear)},
    {0, nullptr},
};

PyType_Spec Acceptor_spec = {
    "pyloop.Acceptor", sizeof(AcceptorObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, Acceptor_slots,
};

// ---- ClientSet: a server's connections ------------------------------------------------
// What asyncio's Server keeps in a WeakSet (close_clients(), abort_clients()), without
// the weak reference and set entry per connection (153 bytes of the 1035 an idle
// connection cost): each transport links itself into its server's list, and unlinks
// itself when detached or freed. The list holds no references; objects that are not
// pyloop transports (a user's own, passed to _attach) are refused, for the Python face
// to keep elsewhere.

struct ClientSetObject {
    PyObject_HEAD
    ClientLink head;  // the sentinel: head.next is the first, head.prev the last
};

inline ClientSetObject* CS(PyObject* o) { return reinterpret_cast<ClientSetObject*>(o); }

inline TransportObject* transport_of(ClientLink* l) {
    return reinterpret_cast<TransportObject*>(reinterpret_cast<char*>(l) - offsetof(TransportObject, client));
}

inline bool linkable(PyObject* o) { return Py_TYPE(o)->tp_dealloc == Transport_dealloc; }

void unlink(ClientLink* l) {
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = nullptr;
    l->set = nullptr;
}

PyObject* ClientSet_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    if ((args && PyTuple_GET_SIZE(args)) || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "ClientSet() takes no arguments");
        return nullptr;
    }
    auto* self = CS(type->tp_alloc(type, 0));
    if (!self) return nullptr;
    self->head.prev = self->head.next = &self->head;
    return reinterpret_cast<PyObject*>(self);
}

void ClientSet_dealloc(PyObject* self) {
    PyTypeObject* tp = Py_TYPE(self);
    ClientLink* head = &CS(self)->head;
    while (head->next != head) unlink(head->next);
    tp->tp_free(self);
    Py_DECREF(tp);
}

// add(transport) -> True, or False for an object this set cannot hold.
PyObject* ClientSet_add(PyObject* self, PyObject* o) {
    if (!linkable(o)) Py_RETURN_FALSE;
    ClientLink* l = &reinterpret_cast<TransportObject*>(o)->client;
    if (l->next) unlink(l);  // (in a set already: moves, as a transport has one server)
    ClientLink* head = &CS(self)->head;
    l->prev = head->prev;
    l->next = head;
    l->set = self;
    head->prev->next = l;
    head->prev = l;
    Py_RETURN_TRUE;
}

// discard(transport): takes it out if it is in this set.
PyObject* ClientSet_discard(PyObject* self, PyObject* o) {
    if (!linkable(o)) Py_RETURN_FALSE;
    ClientLink* l = &reinterpret_cast<TransportObject*>(o)->client;
    if (l->set != self) Py_RETURN_FALSE;
    unlink(l);
    Py_RETURN_TRUE;
}

// The transports, in the order they were added: a new list (of new references).
PyObject* ClientSet_list(PyObject* self) {
    PyObject* out = PyList_New(0);
    if (!out) return nullptr;
    ClientLink* head = &CS(self)->head;
    for (ClientLink* p = head->next; p != head; p = p->next) {
        if (PyList_Append(out, reinterpret_cast<PyObject*>(transport_of(p))) < 0) {
            Py_DECREF(out);
            return nullptr;
        }
    }
    return out;
}

PyObject* ClientSet_iter(PyObject* self) {
    PyObject* items = ClientSet_list(self);
    if (!items) return nullptr;
    PyObject* it = PyObject_GetIter(items);
    Py_DECREF(items);
    return it;
}

Py_ssize_t ClientSet_len(PyObject* self) {
    Py_ssize_t n = 0;
    ClientLink* head = &CS(self)->head;
    for (ClientLink* p = head->next; p != head; p = p->next) n++;
    return n;
}

int ClientSet_contains(PyObject* self, PyObject* o) {
    return linkable(o) && reinterpret_cast<TransportObject*>(o)->client.set == self;
}

PyMethodDef ClientSet_methods[] = {
    {"add", ClientSet_add, METH_O, "Add a pyloop transport: True, or False for any other object."},
    {"discard", ClientSet_discard, METH_O, "Take a transport out, if it is in."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot ClientSet_slots[] = {
    {Py_tp_doc, const_cast<char*>("A server's open connections, weakly held (asyncio keeps a WeakSet).")},
    {Py_tp_new, reinterpret_cast<void*>(ClientSet_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(ClientSet_dealloc)},
    {Py_tp_iter, reinterpret_cast<void*>(ClientSet_iter)},
    {Py_sq_length, reinterpret_cast<void*>(ClientSet_len)},
    {Py_sq_contains, reinterpret_cast<void*>(ClientSet_contains)},
    {Py_tp_methods, ClientSet_methods},
    {0, nullptr},
};

PyType_Spec ClientSet_spec = {
    "pyloop.ClientSet", sizeof(ClientSetObject), 0, Py_TPFLAGS_DEFAULT, ClientSet_slots,
};

}  // namespace

int init_server_types(PyObject* module) {
    PyObject* socket_mod = PyImport_ImportModule("socket");
    g_socket_type = socket_mod ? PyObject_GetAttrString(socket_mod, "socket") : nullptr;
    Py_XDECREF(socket_mod);
    PyObject* trsock = PyImport_ImportModule("asyncio.trsock");
    g_transport_socket_type = trsock ? PyObject_GetAttrString(trsock, "TransportSocket") : nullptr;
    Py_XDECREF(trsock);
    if (!g_socket_type || !g_transport_socket_type) return -1;
    AcceptorType = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &Acceptor_spec, nullptr));
    if (!AcceptorType) return -1;
    if (PyModule_AddObjectRef(module, "Acceptor", reinterpret_cast<PyObject*>(AcceptorType)) < 0) return -1;
    PyObject* client_set = PyType_FromModuleAndSpec(module, &ClientSet_spec, nullptr);
    if (!client_set) return -1;
    int r = PyModule_AddObjectRef(module, "ClientSet", client_set);
    Py_DECREF(client_set);
    return r;
}

void client_unlink(TransportObject* t) {
    if (t->client.next) unlink(&t->client);
}

// extra's socket, sockname and peername of an accepted connection, made on first use
// (setdefault: what the user set stays).
int make_lazy_extra(TransportObject* t) {
    t->lazy_extra = false;
    static PyObject* keys[3] = {PyUnicode_InternFromString("socket"), PyUnicode_InternFromString("sockname"),
                                PyUnicode_InternFromString("peername")};
    const struct sockaddr_in6* addrs[3] = {nullptr, &t->lazy_local, &t->lazy_peer};
    for (int i = 0; i < 3; i++) {
        if (!keys[i]) return -1;
        PyObject* v;
        if (i == 0) v = t->sock ? PyObject_CallOneArg(g_transport_socket_type, t->sock) : Py_NewRef(Py_None);
        else if (addrs[i]->sin6_family == AF_UNSPEC) v = Py_NewRef(Py_None);
        else v = address_or_none(reinterpret_cast<const struct sockaddr*>(addrs[i]));
        if (!v) return -1;
        PyObject* r = PyDict_SetDefault(t->extra, keys[i], v);
        Py_DECREF(v);
        if (!r) return -1;
    }
    return 0;
}

}  // namespace pyloop
