#include "net/stream.hpp"

#include "bindings/loop_type.hpp"
#include "core/loop.hpp"
#include "uv/error.hpp"

#include <fcntl.h>
#include <structmember.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace pyloop {

PyTypeObject* StreamTransportType = nullptr;

namespace {

constexpr size_t kDefaultHighWater = 64 * 1024;
constexpr long kLogThresholdConnLostWrites = 5;  // asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
constexpr size_t kReadBufferSize = 256 * 1024;

PyObject* g_buffered_protocol = nullptr;  // asyncio.BufferedProtocol
PyObject* g_logger = nullptr;             // asyncio.log.logger

struct WriteReq {
    uv_write_t req;
    TransportObject* t;
    size_t len;
    char data[1];
};

inline TransportObject* T(PyObject* o) { return reinterpret_cast<TransportObject*>(o); }
inline PyObject* O(TransportObject* t) { return reinterpret_cast<PyObject*>(t); }

// Schedules callable(*args) on the loop as a Handle (asyncio's loop.call_soon).
int call_soon(TransportObject* t, PyObject* callable, PyObject* const* args, Py_ssize_t nargs) {
    if (t->core->is_closed()) return 0;  // nothing would ever run it
    HandleObject* h = handle_new(HandleType, callable, args, nargs, nullptr, t->loop, t->core);
    if (!h) return -1;
    t->core->push_ready(h);
    return 0;
}

int call_soon_method(TransportObject* t, PyObject* obj, const char* name, PyObject* arg) {
    PyObject* m = PyObject_GetAttrString(obj, name);
    if (!m) return -1;
    int r = call_soon(t, m, &arg, arg ? 1 : 0);
    Py_DECREF(m);
    return r;
}

void report_unraisable(PyObject* obj) { PyErr_WriteUnraisable(obj); }

// Runs the protocol's callbacks of one libuv callback in a context of the transport's.
class InContext {
  public:
    // Holds its own reference: the callbacks may release the transport (and so its
    // context) before the context is exited.
    explicit InContext(PyObject* ctx) : ctx_(Py_NewRef(ctx)) {
        if (PyContext_Enter(ctx_) < 0) {
            // Entered already (a callback re-entered the loop's I/O): stay in it.
            PyErr_Clear();
            entered_ = false;
        }
    }
    ~InContext() {
        if (entered_) PyContext_Exit(ctx_);
        Py_DECREF(ctx_);
    }
    InContext(const InContext&) = delete;
    InContext& operator=(const InContext&) = delete;

  private:
    PyObject* ctx_;
    bool entered_ = true;
};

// loop.call_exception_handler({message, exception, transport, protocol}).
void call_exception_handler(TransportObject* t, const char* message, PyObject* exc) {
    PyObject* ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc, "transport", O(t),
                                  "protocol", t->protocol ? t->protocol : Py_None);
    if (!ctx) return report_unraisable(O(t));
    PyObject* r = PyObject_CallMethod(t->loop, "call_exception_handler", "O", ctx);
    Py_DECREF(ctx);
    if (r) Py_DECREF(r);
    else report_unraisable(O(t));
}

void stop_reading(TransportObject* t) {
    if (t->reading) {
        uv_read_stop(&t->h.stream);
        t->reading = false;
    }
}

int start_reading(TransportObject* t);

// asyncio's _force_close: drop what was buffered, stop reading, and schedule
// connection_lost(exc) once.
void force_close(TransportObject* t, PyObject* exc) {
    if (t->conn_lost) return;
    t->write_buffer_size = 0;  // queued uv_writes complete with UV_ECANCELED on close
    if (!t->closing) {
        t->closing = true;
        stop_reading(t);
    }
    t->conn_lost++;
    if (call_soon_method(t, O(t), "_call_connection_lost", exc ? exc : Py_None) < 0) report_unraisable(O(t));
}

// asyncio's _fatal_error: OSErrors are only logged in debug mode; anything else goes
// to the exception handler. Then the transport is closed with exc.
void fatal_error(TransportObject* t, PyObject* exc, const char* message) {
    if (PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        if (t->core->debug()) {
            PyObject* r = PyObject_CallMethod(g_logger, "debug", "sOs", "%r: %s", O(t), message);
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
    } else {
        call_exception_handler(t, message, exc);
    }
    force_close(t, exc);
}

// Handles a Python exception raised by a protocol callback. Returns -1 if it must
// escape the loop (SystemExit, KeyboardInterrupt): the core stops then.
int protocol_failed(TransportObject* t, const char* message) {
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        t->core->set_fatal();
        return -1;
    }
    PyObject* exc = fetch_exception();
    fatal_error(t, exc, message);
    Py_DECREF(exc);
    return 0;
}

void fatal_uv_error(TransportObject* t, int err, const char* message) {
    PyObject* exc = uv_error_object(err);
    if (!exc) return report_unraisable(O(t));
    fatal_error(t, exc, message);
    Py_DECREF(exc);
}

void call_protocol_flow(TransportObject* t, const char* method, const char* message) {
    PyObject* r = PyObject_CallMethod(t->protocol, method, nullptr);
    if (r) {
        Py_DECREF(r);
        return;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        t->core->set_fatal();
        return;
    }
    PyObject* exc = fetch_exception();
    call_exception_handler(t, message, exc);
    Py_DECREF(exc);
}

// Settles the drain waiter (if any): with None, or with exc when exc is not null.
void settle_drain_waiter(TransportObject* t, PyObject* exc) {
    PyObject* fut = t->drain_waiter;
    if (!fut) return;
    t->drain_waiter = nullptr;
    PyObject* done = PyObject_CallMethod(fut, "done", nullptr);
    if (done == Py_False) {
        PyObject* r = exc ? PyObject_CallMethod(fut, "set_exception", "O", exc)
                          : PyObject_CallMethod(fut, "set_result", "O", Py_None);
        if (r) Py_DECREF(r);
        else report_unraisable(O(t));
    } else if (!done) {
        report_unraisable(O(t));
    }
    Py_XDECREF(done);
    Py_DECREF(fut);
}

void maybe_pause_protocol(TransportObject* t) {
    if (t->write_buffer_size <= t->high_water || t->protocol_paused) return;
    t->protocol_paused = true;
    call_protocol_flow(t, "pause_writing", "protocol.pause_writing() failed");
}

void maybe_resume_protocol(TransportObject* t) {
    if (!t->protocol_paused || t->write_buffer_size > t->low_water) return;
    t->protocol_paused = false;
    call_protocol_flow(t, "resume_writing", "protocol.resume_writing() failed");
}

// ---- reading ----------------------------------------------------------------------

void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    auto* t = static_cast<TransportObject*>(handle->data);
    t->core->ensure_gil();
    if (!t->buffered) {
        static char shared[kReadBufferSize];  // the loop thread reads into it, then copies to bytes
        *buf = uv_buf_init(shared, sizeof shared);
        return;
    }
    *buf = uv_buf_init(nullptr, 0);
    InContext in_context(t->context);
    static PyObject* s_get_buffer = PyUnicode_InternFromString("get_buffer");
    static PyObject* s_hint = PyLong_FromLong(65536);
    PyObject* args[2] = {t->protocol, s_hint};
    PyObject* b = PyObject_VectorcallMethod(s_get_buffer, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    if (!b) {
        protocol_failed(t, "Fatal error: protocol.get_buffer() call failed.");
        return;
    }
    int r = PyObject_GetBuffer(b, &t->read_buf, PyBUF_WRITABLE);
    Py_DECREF(b);
    if (r < 0) {
        protocol_failed(t, "Fatal error: protocol.get_buffer() call failed.");
        return;
    }
    if (t->read_buf.len == 0) {
        PyBuffer_Release(&t->read_buf);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        protocol_failed(t, "Fatal error: protocol.get_buffer() call failed.");
        return;
    }
    t->has_read_buf = true;
    *buf = uv_buf_init(static_cast<char*>(t->read_buf.buf), static_cast<unsigned>(t->read_buf.len));
}

void release_read_buf(TransportObject* t) {
    if (t->has_read_buf) {
        t->has_read_buf = false;
        PyBuffer_Release(&t->read_buf);
    }
}

void on_eof(TransportObject* t) {
    stop_reading(t);
    t->read_eof = true;
    PyObject* keep = PyObject_CallMethod(t->protocol, "eof_received", nullptr);
    if (!keep) {
        protocol_failed(t, "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    int keep_open = PyObject_IsTrue(keep);
    Py_DECREF(keep);
    if (keep_open < 0) {
        protocol_failed(t, "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    if (!keep_open) {
        PyObject* r = PyObject_CallMethod(O(t), "close", nullptr);
        if (r) Py_DECREF(r);
        else report_unraisable(O(t));
    }
}

// Tells the protocol what one read brought: bytes (data_received), a count
// (buffer_updated: the bytes are in its buffer already) or None (end of file).
void deliver(TransportObject* t, PyObject* what) {
    if (what == Py_None) return on_eof(t);
    PyObject* r;
    if (t->buffered) {
        static PyObject* s_buffer_updated = PyUnicode_InternFromString("buffer_updated");
        r = PyObject_CallMethodOneArg(t->protocol, s_buffer_updated, what);
        if (!r) protocol_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
    } else {
        static PyObject* s_data_received = PyUnicode_InternFromString("data_received");
        r = PyObject_CallMethodOneArg(t->protocol, s_data_received, what);
        if (!r) protocol_failed(t, "Fatal error: protocol.data_received() call failed.");
    }
    Py_XDECREF(r);
}

// asyncio runs a reader's callback after the callbacks queued before the poll found
// it ready. When some are waiting (or the loop is stopping), what libuv read is
// queued behind them, and reading pauses until it has been delivered (a
// BufferedProtocol's buffer must not be asked for again before buffer_updated).
void defer(TransportObject* t, PyObject* what) {
    stop_reading(t);
    t->read_deferred = true;
    static PyObject* s_deliver = PyUnicode_InternFromString("_deliver_deferred");
    PyObject* m = PyObject_GetAttr(O(t), s_deliver);
    HandleObject* h = m ? handle_new(HandleType, m, &what, 1, t->context, t->loop, t->core) : nullptr;
    Py_XDECREF(m);
    if (!h) {
        t->read_deferred = false;
        protocol_failed(t, "Fatal read error on socket transport");
        return;
    }
    t->core->push_ready(h);
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    if (nread == 0) return;  // EAGAIN: nothing to tell the protocol
    auto* t = static_cast<TransportObject*>(stream->data);
    t->core->ensure_gil();
    Py_INCREF(O(t));  // protocol callbacks may close and release the transport
    InContext in_context(t->context);
    if (nread > 0 || nread == UV_EOF) {
        PyObject* what;
        if (nread == UV_EOF) {
            release_read_buf(t);
            what = Py_NewRef(Py_None);
        } else if (t->buffered) {
            release_read_buf(t);
            what = PyLong_FromSsize_t(nread);
        } else {
            what = PyBytes_FromStringAndSize(buf->base, nread);
        }
        if (!what) protocol_failed(t, "Fatal read error on socket transport");
        else if (t->core->io_must_queue()) defer(t, what);
        else deliver(t, what);
        Py_XDECREF(what);
    } else {
        release_read_buf(t);
        if (nread == UV_ENOBUFS) stop_reading(t);  // get_buffer() failed: already reported
        else fatal_uv_error(t, static_cast<int>(nread), "Fatal read error on socket transport");
    }
    Py_DECREF(O(t));
}

int start_reading(TransportObject* t) {
    if (t->reading || t->paused || t->closing || !t->read_started || !t->handle_open || t->read_deferred ||
        t->read_eof)
        return 0;
    int r = uv_read_start(&t->h.stream, on_alloc, on_read);
    if (r < 0) {
        fatal_uv_error(t, r, "Fatal read error on socket transport");
        return 0;
    }
    t->reading = true;
    return 0;
}

// ---- writing ----------------------------------------------------------------------

void on_shutdown(uv_shutdown_t* req, int) {
    auto* t = static_cast<TransportObject*>(req->data);
    free(req);
    t->core->ensure_gil();
    Py_DECREF(O(t));
}

void send_eof(TransportObject* t) {
    if (t->eof_sent || !t->handle_open) return;
    t->eof_sent = true;
    auto* req = static_cast<uv_shutdown_t*>(malloc(sizeof(uv_shutdown_t)));
    req->data = t;
    Py_INCREF(O(t));
    int r = uv_shutdown(req, &t->h.stream, on_shutdown);
    if (r < 0) {
        free(req);
        Py_DECREF(O(t));
    }
}

void on_write(uv_write_t* req, int status) {
    auto* w = reinterpret_cast<WriteReq*>(req);
    TransportObject* t = w->t;
    t->core->ensure_gil();
    size_t len = w->len;
    free(w);
    if (t->conn_lost) {  // force-closed: the buffer was dropped already
        Py_DECREF(O(t));
        return;
    }
    t->write_buffer_size -= len;
    // As asyncio's writer callback: in the context of the write() that began buffering.
    InContext in_context(t->write_context ? t->write_context : t->context);
    if (status < 0) {
        fatal_uv_error(t, status, "Fatal write error on socket transport");
    } else {
        maybe_resume_protocol(t);
        if (t->write_buffer_size == 0) {
            settle_drain_waiter(t, nullptr);
            if (t->closing) {
                t->conn_lost++;
                if (call_soon_method(t, O(t), "_call_connection_lost", Py_None) < 0) report_unraisable(O(t));
            } else if (t->eof_requested) {
                send_eof(t);
            }
        }
    }
    Py_DECREF(O(t));
}

// ---- lifetime -----------------------------------------------------------------------

void on_close(uv_handle_t* handle) {
    auto* t = static_cast<TransportObject*>(handle->data);
    t->core->ensure_gil();
    t->core->untrack_handle(handle);
    PyObject* self_ref = t->self_ref;
    t->self_ref = nullptr;
    Py_XDECREF(self_ref);
}

void close_handle(TransportObject* t) {
    if (!t->handle_open) return;
    t->handle_open = false;
    stop_reading(t);
    // libuv closes its fd. The loop's own socket object must not close that fd again
    // (detach); a user's socket object has an fd of its own, closed as asyncio does.
    if (t->sock && t->sock != Py_None) {
        PyObject* r = PyObject_CallMethod(t->sock, t->owns_fd ? "detach" : "close", nullptr);
        if (r) Py_DECREF(r);
        else PyErr_Clear();
    }
    uv_close(&t->h.handle, on_close);
}

// The loop is closing with this transport still open: close the handle now. The
// protocol hears nothing (no callback can run on a closed loop, as in asyncio).
void close_for_loop_close(uv_handle_t* handle) {
    auto* t = static_cast<TransportObject*>(handle->data);
    // The user's first close()/abort() afterwards raises what asyncio's raises then
    // (it cannot schedule connection_lost on a closed loop).
    t->closed_under = !t->closing;
    t->closing = true;
    t->conn_lost++;
    t->write_buffer_size = 0;
    close_handle(t);
}

}  // namespace

// ---- Python methods -------------------------------------------------------------------

static constexpr size_t kMaxWriteChunk = size_t{1} << 30;

// Writes len (<= 1 GiB) bytes: what the kernel takes now, the rest copied into a
// uv_write request. Returns -1 with MemoryError set; write errors close the transport.
static int write_chunk(TransportObject* t, const char* p, size_t len) {
    size_t sent = 0;
    if (t->write_buffer_size == 0) {
        // Try the kernel first; only what it does not take is buffered.
        uv_buf_t b = uv_buf_init(const_cast<char*>(p), static_cast<unsigned>(len));
        int n = uv_try_write(&t->h.stream, &b, 1);
        if (n >= 0) {
            sent = static_cast<size_t>(n);
        } else if (n != UV_EAGAIN) {
            fatal_uv_error(t, n, "Fatal write error on socket transport");
            return 0;
        }
    }
    if (sent == len) return 0;
    size_t rest = len - sent;
    auto* w = static_cast<WriteReq*>(malloc(offsetof(WriteReq, data) + rest));
    if (!w) {
        PyErr_NoMemory();
        return -1;
    }
    std::memcpy(w->data, p + sent, rest);
    w->t = t;
    w->len = rest;
    uv_buf_t b = uv_buf_init(w->data, static_cast<unsigned>(rest));
    int r = uv_write(&w->req, &t->h.stream, &b, 1, on_write);
    if (r < 0) {
        free(w);
        fatal_uv_error(t, r, "Fatal write error on socket transport");
        return 0;
    }
    Py_INCREF(O(t));  // held until on_write
    if (t->write_buffer_size == 0) {
        PyObject* ctx = PyContext_CopyCurrent();
        if (ctx) Py_XSETREF(t->write_context, ctx);
        else PyErr_Clear();
    }
    t->write_buffer_size += rest;
    maybe_pause_protocol(t);
    return 0;
}

static PyObject* Transport_write(PyObject* self, PyObject* data) {
    TransportObject* t = T(self);
    Py_buffer view;
    // asyncio takes bytes, bytearray and memoryview (subclasses too), nothing else.
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.100s'",
                     Py_TYPE(data)->tp_name);
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
    if (t->eof_requested) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        return nullptr;
    }
    if (t->sendfile_busy) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        return nullptr;
    }
    size_t len = static_cast<size_t>(view.len);
    if (len == 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    if (t->conn_lost || !t->handle_open) {
        if (t->conn_lost >= kLogThresholdConnLostWrites) {
            PyObject* r = PyObject_CallMethod(g_logger, "warning", "s", "socket.send() raised exception.");
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
        t->conn_lost++;
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    // libuv's buffers count bytes in an unsigned int: hand it at most 1 GiB at a time.
    const char* p = static_cast<const char*>(view.buf);
    int r = 0;
    for (size_t off = 0; off < len && r == 0 && !t->conn_lost; off += kMaxWriteChunk)
        r = write_chunk(t, p + off, std::min(kMaxWriteChunk, len - off));
    PyBuffer_Release(&view);
    if (r < 0) return nullptr;
    Py_RETURN_NONE;
}

static PyObject* Transport_write_eof(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || t->eof_requested) Py_RETURN_NONE;
    t->eof_requested = true;
    if (t->write_buffer_size == 0) send_eof(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_can_write_eof(PyObject*, PyObject*) { Py_RETURN_TRUE; }

// asyncio's close()/abort() on a transport the loop closed under: RuntimeError, once.
static bool refuse_closed_under(TransportObject* t) {
    if (!t->closed_under) return false;
    t->closed_under = false;
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return true;
}

static PyObject* Transport_close(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (refuse_closed_under(t)) return nullptr;
    if (t->closing) Py_RETURN_NONE;
    t->closing = true;
    stop_reading(t);
    if (t->write_buffer_size == 0) {
        t->conn_lost++;
        if (call_soon_method(t, self, "_call_connection_lost", Py_None) < 0) return nullptr;
    }
    Py_RETURN_NONE;
}

static PyObject* Transport_abort(PyObject* self, PyObject*) {
    if (refuse_closed_under(T(self))) return nullptr;
    force_close(T(self), nullptr);
    Py_RETURN_NONE;
}

// asyncio's _force_close(exc): what a protocol stacked on the transport (asyncio's
// SSLProtocol) calls on a fatal error.
static PyObject* Transport_force_close(PyObject* self, PyObject* exc) {
    force_close(T(self), exc == Py_None ? nullptr : exc);
    Py_RETURN_NONE;
}

static PyObject* Transport_call_connection_lost(PyObject* self, PyObject* exc) {
    // asyncio's _call_connection_lost: tell the protocol, then release the socket
    // (libuv closes the fd) and leave the server.
    TransportObject* t = T(self);
    PyObject* r = t->protocol != Py_None ? PyObject_CallMethod(t->protocol, "connection_lost", "O", exc)
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
        PyObject* d = PyObject_CallMethod(server, "_detach", "O", self);
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
    if (t->drain_waiter) return Py_NewRef(t->drain_waiter);
    PyObject* fut = PyObject_CallMethod(t->loop, "create_future", nullptr);
    if (!fut) return nullptr;
    if (t->write_buffer_size == 0) {
        PyObject* r = PyObject_CallMethod(fut, "set_result", "O", Py_None);
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
static PyObject* Transport_deliver_deferred(PyObject* self, PyObject* what) {
    TransportObject* t = T(self);
    if (!t->read_deferred) Py_RETURN_NONE;
    t->read_deferred = false;
    if (!t->conn_lost) deliver(t, what);  // as asyncio's reader, unless the connection is gone
    start_reading(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_set_sendfile_busy(PyObject* self, PyObject* arg) {
    int v = PyObject_IsTrue(arg);
    if (v < 0) return nullptr;
    T(self)->sendfile_busy = v != 0;
    Py_RETURN_NONE;
}

static PyObject* Transport_start_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    t->read_started = true;
    start_reading(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_is_closing(PyObject* self, PyObject*) { return PyBool_FromLong(T(self)->closing); }

static PyObject* Transport_is_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    return PyBool_FromLong(!t->paused && !t->closing);
}

static PyObject* Transport_pause_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || t->paused) Py_RETURN_NONE;
    t->paused = true;
    stop_reading(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_resume_reading(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    if (t->closing || !t->paused) Py_RETURN_NONE;
    t->paused = false;
    start_reading(t);
    Py_RETURN_NONE;
}

static int set_protocol(TransportObject* t, PyObject* protocol) {
    int buffered = PyObject_IsInstance(protocol, g_buffered_protocol);
    if (buffered < 0) return -1;
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    t->buffered = buffered != 0;
    return 0;
}

static PyObject* Transport_set_protocol(PyObject* self, PyObject* protocol) {
    if (set_protocol(T(self), protocol) < 0) return nullptr;
    Py_RETURN_NONE;
}

static PyObject* Transport_get_protocol(PyObject* self, PyObject*) {
    TransportObject* t = T(self);
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

static PyObject* Transport_get_write_buffer_size(PyObject* self, PyObject*) {
    return PyLong_FromSize_t(T(self)->write_buffer_size);
}

static PyObject* Transport_get_write_buffer_limits(PyObject* self, PyObject*) {
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

static PyObject* Transport_set_write_buffer_limits(PyObject* self, PyObject* args, PyObject* kwargs) {
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
    t->high_water = high_n;
    t->low_water = low_n;
    maybe_pause_protocol(t);
    Py_RETURN_NONE;
}

static PyObject* Transport_repr(PyObject* self) {
    TransportObject* t = T(self);
    const char* state = t->conn_lost && !t->handle_open ? "closed" : t->closing ? "closing" : "open";
    int fd = -1;
    if (t->handle_open) uv_fileno(&t->h.handle, &fd);
    return PyUnicode_FromFormat("<%s fd=%d %s>", Py_TYPE(self)->tp_name, fd, state);
}

static int Transport_traverse(PyObject* self, visitproc visit, void* arg) {
    TransportObject* t = T(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(t->extra);
    Py_VISIT(t->loop);
    Py_VISIT(t->protocol);
    Py_VISIT(t->dict);
    Py_VISIT(t->context);
    Py_VISIT(t->write_context);
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
    return 0;
}

static int Transport_clear(PyObject* self) {
    TransportObject* t = T(self);
    if (t->handle_open) return 0;  // libuv still points at us: keep everything
    Py_CLEAR(t->dict);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->server);
    return 0;
}

static void Transport_dealloc(PyObject* self) {
    TransportObject* t = T(self);
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (t->weakrefs) PyObject_ClearWeakRefs(self);
    release_read_buf(t);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->server);
    Py_CLEAR(t->drain_waiter);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->dict);
    Py_CLEAR(t->context);
    Py_CLEAR(t->write_context);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject* Transport_new_from_python(PyTypeObject* type, PyObject*, PyObject*) {
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances directly", type->tp_name);
    return nullptr;
}

static PyMethodDef Transport_methods[] = {
    {"write", Transport_write, METH_O, "Write bytes; what the kernel does not take now is buffered."},
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

int init_stream_type(PyObject* module) {
    PyObject* transports = PyImport_ImportModule("asyncio.transports");
    if (!transports) return -1;
    PyObject* base = PyObject_GetAttrString(transports, "Transport");
    Py_DECREF(transports);
    if (!base) return -1;
    // Our struct puts BaseTransport's one slot (`_extra`) right after the header.
    if (reinterpret_cast<PyTypeObject*>(base)->tp_basicsize !=
        static_cast<Py_ssize_t>(offsetof(TransportObject, extra) + sizeof(PyObject*))) {
        Py_DECREF(base);
        PyErr_SetString(PyExc_ImportError, "asyncio.Transport has an unexpected layout");
        return -1;
    }
    PyObject* bases = PyTuple_Pack(1, base);
    Py_DECREF(base);
    if (!bases) return -1;
    StreamTransportType = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &Transport_spec, bases));
    Py_DECREF(bases);
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
    PyObject* fileno = PyObject_CallMethod(sock, "fileno", nullptr);
    if (!fileno) return nullptr;
    int fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    PyObject* family_o = PyObject_GetAttrString(sock, "family");
    if (!family_o) return nullptr;
    long family = PyLong_AsLong(family_o);
    Py_DECREF(family_o);
    if (family == -1 && PyErr_Occurred()) return nullptr;
    if (fd < 0) {
        PyErr_SetString(PyExc_OSError, "the socket is closed");
        return nullptr;
    }
    int uv_fd = fd;
    if (!own) {
        uv_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (uv_fd < 0) return PyErr_SetFromErrno(PyExc_OSError);
    }

    auto* t = reinterpret_cast<TransportObject*>(StreamTransportType->tp_alloc(StreamTransportType, 0));
    if (!t) {
        if (!own) ::close(uv_fd);
        return nullptr;
    }
    // tp_alloc zeroed the struct: every pointer is null and every flag false.
    t->owns_fd = own;
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
    core->track_handle(&t->h.handle, close_for_loop_close, O(t));
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
    if (call_soon_method(t, protocol, "connection_made", self) < 0 ||
        call_soon_method(t, self, "_start_reading", nullptr) < 0) {
        close_handle(t);
        Py_DECREF(self);
        return nullptr;
    }
    if (server != Py_None) {
        PyObject* a = PyObject_CallMethod(server, "_attach", "O", self);
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
