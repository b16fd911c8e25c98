#include "net/dns.hpp"
#include "net/sock_ops.hpp"

#include "core/loop.hpp"
#include "uv/error.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <functional>

namespace py = pybind11;

namespace pyloop {

namespace {

// libuv's UV_EAI_* codes back to the C library's EAI_* codes.
int system_eai(int uv_code) {
    switch (uv_code) {
#ifdef EAI_ADDRFAMILY
        case UV_EAI_ADDRFAMILY: return EAI_ADDRFAMILY;
#endif
        case UV_EAI_AGAIN: return EAI_AGAIN;
        case UV_EAI_BADFLAGS: return EAI_BADFLAGS;
        case UV_EAI_FAIL: return EAI_FAIL;
        case UV_EAI_FAMILY: return EAI_FAMILY;
        case UV_EAI_MEMORY: return EAI_MEMORY;
#ifdef EAI_NODATA
        case UV_EAI_NODATA: return EAI_NODATA;
#endif
        case UV_EAI_NONAME: return EAI_NONAME;
        case UV_EAI_OVERFLOW: return EAI_OVERFLOW;
        case UV_EAI_SERVICE: return EAI_SERVICE;
        case UV_EAI_SOCKTYPE: return EAI_SOCKTYPE;
#ifdef EAI_CANCELED
        case UV_EAI_CANCELED: return EAI_CANCELED;
#endif
        default: return 0;
    }
}

// family and type as socket.AddressFamily / socket.SocketKind members, as the socket
// module gives them (plain ints for values the enums do not know).
PyObject* as_enum(const char* enum_name, int value) {
    static PyObject* caches[2] = {nullptr, nullptr};
    int which = enum_name[0] == 'A' ? 0 : 1;
    if (!caches[which]) {
        py::object socket = py::module_::import("socket");
        py::dict cache;
        for (py::handle member : socket.attr(enum_name))
            cache[py::reinterpret_borrow<py::object>(member).attr("value")] = member;
        caches[which] = cache.release().ptr();
    }
    PyObject* key = PyLong_FromLong(value);
    if (!key) return nullptr;
    PyObject* member = PyDict_GetItemWithError(caches[which], key);
    if (member) {
        Py_DECREF(key);
        return Py_NewRef(member);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return nullptr;
    }
    return key;
}

// Settles the future unless it is done already (cancelled) or the loop has closed.
void settle(LoopCore* core, py::object& future, py::object result, bool is_exception) {
    static PyObject* s_done = PyUnicode_InternFromString("done");
    static PyObject* s_set_result = PyUnicode_InternFromString("set_result");
    static PyObject* s_set_exception = PyUnicode_InternFromString("set_exception");
    if (core->is_closed()) return;
    PyObject* done = PyObject_CallMethodNoArgs(future.ptr(), s_done);
    if (!done) throw py::error_already_set();
    bool is_done = done == Py_True;
    Py_DECREF(done);
    if (is_done) return;
    PyObject* r = PyObject_CallMethodOneArg(future.ptr(), is_exception ? s_set_exception : s_set_result, result.ptr());
    if (!r) throw py::error_already_set();
    Py_DECREF(r);
}

// Tracing: a lookup is a work item of libuv's pool (uv_queue_work) that makes the same
// uv_getaddrinfo()/uv_getnameinfo() call, synchronously, on the pool thread: the trace
// then says which thread served it and when (libuv's own work item says neither). The
// synchronous call counts itself on a loop of its own, never run: one per pool thread.
struct PoolSide {
    uv_work_t work;
    unsigned long tid = 0;  // the pool thread (its OS thread id)
    double t0 = 0, t1 = 0;  // its call
    int status = 0;
    std::string host, port;  // what to ask (getaddrinfo)
    bool has_host = false, has_port = false;
    struct addrinfo hints;
    struct sockaddr_storage addr;  // (getnameinfo)
    int flags = 0;
};

uv_loop_t* sync_loop() {
    static thread_local uv_loop_t loop{};  // (only its count of requests is used)
    return &loop;
}

template <class Req>
struct DnsOp {
    Req req;
    LoopCore* core;
    py::object loop;    // keeps the loop (and so the core) alive until the callback
    py::object future;
    std::shared_ptr<DnsShared> shared;
    bool orphaned = false;  // the loop closed while a pool thread ran it: C memory only
    double traced_at = 0;   // tracing (core/trace.hpp): when it was sent to the pool
    py::object traced_what;  // and what was asked: (host, port)
    std::unique_ptr<PoolSide> pool;  // tracing: run through uv_queue_work
    uv_req_t* tracked() { return pool ? reinterpret_cast<uv_req_t*>(&pool->work) : reinterpret_cast<uv_req_t*>(&req); }
};

// A host or port for the trace: text (undecodable bytes escaped), or None. Never raises.
py::object traced_text(const char* s) {
    if (!s) return py::none();
    PyObject* o = PyUnicode_DecodeUTF8(s, static_cast<Py_ssize_t>(std::strlen(s)), "backslashreplace");
    if (!o) {
        PyErr_Clear();
        return py::none();
    }
    return py::reinterpret_steal<py::object>(o);
}

// Tracing: the lookup, from its submission to its answer (or error), for the trace.
template <class Op>
void trace_lookup(Op* op, int status, const py::object& answer) {
    if (op->traced_at <= 0 || !op->core->trace().on()) return;
    try {
        py::str outcome = status < 0 ? py::str("error: {}").format(py::str(answer))
                                     : py::str("{} answer(s)").format(py::len(answer));
        PoolSide* pool = op->pool.get();
        op->core->trace().lookup(op->traced_at, LoopCore::now(), op->traced_what.ptr(), outcome.ptr(),
                                 pool ? pool->tid : 0, pool ? pool->t0 : 0, pool ? pool->t1 : 0);
    } catch (py::error_already_set&) {
        PyErr_Clear();
    }
}

// LoopCore::close() with the request still running: drop the Python references (with
// the GIL, now); the callback will run on the thread that finishes the uv_loop_t.
template <class Op>
void orphan(uv_req_t* r) {
    auto* op = static_cast<Op*>(r->data);
    op->orphaned = true;
    op->core = nullptr;
    op->shared->req = nullptr;
    op->loop = py::object();
    op->future = py::object();
    op->traced_what = py::object();
}

using GaiOp = DnsOp<uv_getaddrinfo_t>;
using GniOp = DnsOp<uv_getnameinfo_t>;

template <class Op>
void finish(Op* op, const std::function<void()>& deliver) {
    op->shared->req = nullptr;
    op->core->untrack_request(op->tracked());
    try {
        deliver();
    } catch (py::error_already_set& e) {
        e.restore();
        PyErr_WriteUnraisable(op->future.ptr());
    }
    delete op;
}

void on_getaddrinfo(uv_getaddrinfo_t* req, int status, struct addrinfo* res) {
    auto* op = static_cast<GaiOp*>(req->data);
    if (op->orphaned) {
        if (res) uv_freeaddrinfo(res);
        delete op;
        return;
    }
    op->core->ensure_gil();
    finish(op, [&] {
        py::object answer = status < 0 ? gaierror_from_uv(status) : addrinfo_to_list(res);
        trace_lookup(op, status, answer);
        settle(op->core, op->future, answer, status < 0);
    });
    if (res) uv_freeaddrinfo(res);
}

void on_getnameinfo(uv_getnameinfo_t* req, int status, const char* host, const char* service) {
    auto* op = static_cast<GniOp*>(req->data);
    if (op->orphaned) {
        delete op;
        return;
    }
    op->core->ensure_gil();
    finish(op, [&] {
        py::object answer = status < 0 ? gaierror_from_uv(status) : py::make_tuple(py::str(host), py::str(service));
        trace_lookup(op, status, status < 0 ? answer : py::make_tuple(answer));
        settle(op->core, op->future, answer, status < 0);
    });
}

// The traced path's work item, on the pool thread (no GIL, no Python).
void pool_call_started(PoolSide* pool) {
    pool->tid = static_cast<unsigned long>(syscall(SYS_gettid));
    pool->t0 = LoopCore::now();
}

void gai_work(uv_work_t* w) {
    auto* op = static_cast<GaiOp*>(w->data);
    PoolSide* pool = op->pool.get();
    pool_call_started(pool);
    pool->status = uv_getaddrinfo(sync_loop(), &op->req, nullptr, pool->has_host ? pool->host.c_str() : nullptr,
                                  pool->has_port ? pool->port.c_str() : nullptr, &pool->hints);
    pool->t1 = LoopCore::now();
}

void gai_after(uv_work_t* w, int status) {
    auto* op = static_cast<GaiOp*>(w->data);
    PoolSide* pool = op->pool.get();
    struct addrinfo* res = nullptr;
    if (status == UV_ECANCELED) {
        status = UV_EAI_CANCELED;  // (as libuv's own work item answers)
    } else {
        status = pool->status;
        // libuv refuses names it cannot convert (empty, over 255 bytes) with EINVAL:
        // the C library answers EAI_NONAME (as start_getaddrinfo raises at once).
        if (status == UV_EINVAL) status = UV_EAI_NONAME;
        if (status == 0) res = op->req.addrinfo;
    }
    on_getaddrinfo(&op->req, status, res);
}

void gni_work(uv_work_t* w) {
    auto* op = static_cast<GniOp*>(w->data);
    PoolSide* pool = op->pool.get();
    pool_call_started(pool);
    pool->status = uv_getnameinfo(sync_loop(), &op->req, nullptr, reinterpret_cast<struct sockaddr*>(&pool->addr),
                                  pool->flags);
    pool->t1 = LoopCore::now();
}

void gni_after(uv_work_t* w, int status) {
    auto* op = static_cast<GniOp*>(w->data);
    status = status == UV_ECANCELED ? UV_EAI_CANCELED : op->pool->status;
    on_getnameinfo(&op->req, status, op->req.host, op->req.service);
}

py::object new_future(py::object& loop) {
    static PyObject* s_create_future = PyUnicode_InternFromString("create_future");
    PyObject* f = PyObject_CallMethodNoArgs(loop.ptr(), s_create_future);
    if (!f) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(f);
}

template <class Op>
Op* new_op(py::object& loop, LoopCore& core, py::object& future) {
    auto* op = new Op();
    op->req.data = op;
    op->core = &core;
    op->loop = loop;
    op->future = future;
    op->shared = std::make_shared<DnsShared>();
    return op;
}

}  // namespace

bool DnsRequest::cancel() {
    if (!shared_->req) return false;
    return uv_cancel(shared_->req) == 0;
}

py::object gaierror_from_uv(int uv_code) {
    int code = system_eai(uv_code);
    py::object gaierror = py::module_::import("socket").attr("gaierror");
    if (code == 0) return gaierror(uv_code, uv_strerror(uv_code));
    return gaierror(code, gai_strerror(code));
}

py::list addrinfo_to_list(const struct addrinfo* res) {
    py::list out;
    for (const struct addrinfo* ai = res; ai; ai = ai->ai_next) {
        PyObject* family = as_enum("AddressFamily", ai->ai_family);
        PyObject* kind = family ? as_enum("SocketKind", ai->ai_socktype) : nullptr;
        PyObject* addr = kind ? sockaddr_to_tuple(ai->ai_addr) : nullptr;
        PyObject* item = addr ? Py_BuildValue("(NNisN)", family, kind, ai->ai_protocol,
                                              ai->ai_canonname ? ai->ai_canonname : "", addr)
                              : nullptr;
        if (!item) {
            if (!addr) {
                Py_XDECREF(family);
                Py_XDECREF(kind);
            }
            throw py::error_already_set();
        }
        if (PyList_Append(out.ptr(), item) < 0) {
            Py_DECREF(item);
            throw py::error_already_set();
        }
        Py_DECREF(item);
    }
    return out;
}

DnsRequest start_getaddrinfo(py::object loop, LoopCore& core, const char* host, const char* port, int family,
                             int socktype, int proto, int flags) {
    py::object future = new_future(loop);
    auto* op = new_op<GaiOp>(loop, core, future);
    struct addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_protocol = proto;
    hints.ai_flags = flags;
    int r;
    if (core.trace().on()) {  // (before it is submitted: nothing below may throw after that)
        op->traced_what = py::make_tuple(traced_text(host), traced_text(port));
        op->traced_at = LoopCore::now();
        op->pool = std::make_unique<PoolSide>();
        PoolSide* pool = op->pool.get();
        pool->work.data = op;
        pool->has_host = host != nullptr;
        pool->has_port = port != nullptr;
        if (host) pool->host = host;
        if (port) pool->port = port;
        pool->hints = hints;
        r = host || port ? uv_queue_work(core.uv(), &pool->work, gai_work, gai_after) : UV_EINVAL;
    } else {
        r = uv_getaddrinfo(core.uv(), &op->req, on_getaddrinfo, host, port, &hints);
    }
    if (r < 0) {
        delete op;
        // libuv refuses names it cannot convert (empty, over 255 bytes) with EINVAL;
        // the C library, and so the socket module, answers EAI_NONAME for them.
        if (r == UV_EINVAL) {
            py::object exc = gaierror_from_uv(UV_EAI_NONAME);
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
        } else {
            set_uv_error(r);
        }
        throw py::error_already_set();
    }
    op->shared->req = op->tracked();
    core.track_request(op->shared->req, orphan<GaiOp>);
    return DnsRequest(op->shared, future);
}

DnsRequest start_getnameinfo(py::object loop, LoopCore& core, int family, const std::string& host, int port,
                             unsigned flowinfo, unsigned scope_id, int flags) {
    struct sockaddr_storage ss;
    std::memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        auto* in = reinterpret_cast<struct sockaddr_in*>(&ss);
        in->sin_family = AF_INET;
        in->sin_port = htons(static_cast<uint16_t>(port));
        if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) throw py::value_error("bad IPv4 address");
    } else {
        auto* in6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(static_cast<uint16_t>(port));
        in6->sin6_flowinfo = htonl(flowinfo);
        in6->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) throw py::value_error("bad IPv6 address");
    }
    py::object future = new_future(loop);
    auto* op = new_op<GniOp>(loop, core, future);
    int r;
    if (core.trace().on()) {  // (before it is submitted, as above)
        op->traced_what = py::make_tuple(traced_text(host.c_str()), py::int_(port));
        op->traced_at = LoopCore::now();
        op->pool = std::make_unique<PoolSide>();
        op->pool->work.data = op;
        op->pool->addr = ss;
        op->pool->flags = flags;
        r = uv_queue_work(core.uv(), &op->pool->work, gni_work, gni_after);
    } else {
        r = uv_getnameinfo(core.uv(), &op->req, on_getnameinfo, reinterpret_cast<struct sockaddr*>(&ss), flags);
    }
    if (r < 0) {
        delete op;
        set_uv_error(r);
        throw py::error_already_set();
    }
    op->shared->req = op->tracked();
    core.track_request(op->shared->req, orphan<GniOp>);
    return DnsRequest(op->shared, future);
}

}  // namespace pyloop
