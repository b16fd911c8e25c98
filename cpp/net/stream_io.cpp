// The libuv side of StreamTransport: reading into the protocol, writing what the
// kernel did not take, closing; and the asyncio-shaped error and flow-control helpers
// the Python methods (stream.cpp) share with it.
#include "net/stream_io.hpp"

#include "core/loop_object.hpp"
#include "core/loop.hpp"
#include "net/sock_ops.hpp"
#include "net/tls.hpp"
#include "uv/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace pyloop {
namespace stream_io {

PyObject* g_buffered_protocol = nullptr;
PyObject* g_logger = nullptr;

namespace {

struct WriteReq {
    uv_write_t req;
    TransportObject* t;
    size_t len;
    char data[1];
};

}  // namespace


// asyncio 3.15: a socket transport's own callbacks (connection_lost after close() or an
// error, the writer whose end calls resume_writing) run in the context of its creation,
// not in the caller's; pipe transports keep the caller's.
constexpr bool kPy315 = PY_VERSION_HEX >= 0x030F0000;
static bool callbacks_in_own_context(const TransportObject* t) { return kPy315 && t->kind == kStream; }

// Schedules callable(*args) on the loop as a Handle (asyncio's loop.call_soon).
int call_soon(TransportObject* t, PyObject* callable, PyObject* const* args, Py_ssize_t nargs) {
    if (t->core->is_closed()) return 0;  // nothing would ever run it
    HandleObject* h = handle_new(HandleType, callable, args, nargs, callbacks_in_own_context(t) ? t->context : nullptr,
                                 t->loop, t->core);
    if (!h) return -1;
    t->core->push_ready(h);
    return 0;
}

int call_soon_method(TransportObject* t, PyObject* obj, PyObject* name, PyObject* arg) {
    PyObject* m = PyObject_GetAttr(obj, name);
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
    PyObject* r = PyObject_CallMethodOneArg(t->loop, PY_NAME("call_exception_handler"), ctx);
    Py_DECREF(ctx);
    if (r) Py_DECREF(r);
    else report_unraisable(O(t));
}

const char* write_error_message(TransportObject* t) {
    return t->kind == kWritePipe ? "Fatal write error on pipe transport" : "Fatal write error on socket transport";
}

void stop_reading(TransportObject* t) {
    if (!t->reading) return;
    t->reading = false;
    if (t->in_alloc) t->stop_after_alloc = true;  // on_read stops it
    else uv_read_stop(&t->h.stream);
}

void unwatch_reader(TransportObject* t) {
    if (!t->watching_reader) return;
    t->watching_reader = false;
    if (!t->core->is_closed()) t->core->remove_poll(t->watch_fd, false);
}

// asyncio's _force_close (a pipe's _close): drop what was buffered, stop reading, and
// schedule connection_lost(exc) once.
void force_close(TransportObject* t, PyObject* exc) {
    unwatch_reader(t);
    if (t->conn_lost) return;
    // abort(): what write() held back goes first (asyncio had sent it). An error drops it.
    if (!exc && flush_cork(t) < 0) report_unraisable(O(t));
    free_cork(t);
    if (t->conn_lost) return;
    t->write_buffer_size = 0;  // queued uv_writes complete with UV_ECANCELED on close
    if (!t->closing) {
        t->closing = true;
        stop_reading(t);
    }
    t->conn_lost++;
    if (call_soon_method(t, O(t), PY_NAME("_call_connection_lost"), exc ? exc : Py_None) < 0) report_unraisable(O(t));
}

// asyncio's _fatal_error: OSErrors are only logged in debug mode; anything else goes
// to the exception handler. Then the transport is closed with exc.
void fatal_error(TransportObject* t, PyObject* exc, const char* message) {
    bool quiet = PyErr_GivenExceptionMatches(exc, PyExc_OSError);
    if (quiet && t->kind == kReadPipe) {
        // asyncio's read pipe only keeps EIO (a pty's end) out of the handler.
        PyObject* no = PyObject_GetAttrString(exc, "errno");
        quiet = no && PyLong_Check(no) && PyLong_AsLong(no) == EIO;
        Py_XDECREF(no);
        PyErr_Clear();
    }
    if (quiet) {
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

void call_protocol_flow(TransportObject* t, PyObject* method, const char* message) {
    PyObject* r = PyObject_CallMethodNoArgs(t->protocol, method);
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
    PyObject* done = PyObject_CallMethodNoArgs(fut, PY_NAME("done"));
    if (done == Py_False) {
        PyObject* r = exc ? PyObject_CallMethodOneArg(fut, PY_NAME("set_exception"), exc)
                          : PyObject_CallMethodOneArg(fut, PY_NAME("set_result"), Py_None);
        if (r) Py_DECREF(r);
        else report_unraisable(O(t));
    } else if (!done) {
        report_unraisable(O(t));
    }
    Py_XDECREF(done);
    Py_DECREF(fut);
}

// What write() took and the kernel has not: asyncio's get_write_buffer_size(). libuv
// writes a request in parts, and its queue size counts what is left of each.
size_t unsent_bytes(TransportObject* t) {
    if (t->write_buffer_size == 0 || !t->handle_open) return t->write_buffer_size;
    return uv_stream_get_write_queue_size(&t->h.stream);
}

static bool watch_write_progress(PyObject* owner);

void maybe_pause_protocol(TransportObject* t) {
    if (t->protocol_paused || unsent_bytes(t) <= t->high_water) return;
    t->protocol_paused = true;
    // A socket's protocol resumes once the queue is down to the low-water mark, which
    // libuv reaches between two of its writes (watched after each poll); a pipe's, as
    // asyncio's, only once everything is written (on_write sees that).
    if (t->kind == kStream && !t->progress_watched) {
        t->progress_watched = true;
        t->core->watch_write_progress(O(t), watch_write_progress);
    }
    call_protocol_flow(t, PY_NAME("pause_writing"), "protocol.pause_writing() failed");
}

void maybe_resume_protocol(TransportObject* t) {
    if (!t->protocol_paused) return;
    size_t left = unsent_bytes(t);
    if (t->kind == kWritePipe ? left != 0 : left > t->low_water) return;
    t->protocol_paused = false;
    call_protocol_flow(t, PY_NAME("resume_writing"), "protocol.resume_writing() failed");
}

// The loop's look after a poll at a paused socket transport (see maybe_pause_protocol).
static bool watch_write_progress(PyObject* owner) {
    TransportObject* t = T(owner);
    if (t->protocol_paused && !t->conn_lost && t->handle_open) {
        // As asyncio's writer callback: in the context of the write() that began
        // buffering (3.15: of the transport's creation).
        InContext in_context(t->write_context && !callbacks_in_own_context(t) ? t->write_context : t->context);
        maybe_resume_protocol(t);
        if (t->protocol_paused) return true;
    }
    t->progress_watched = false;
    return false;
}

// ---- reading ----------------------------------------------------------------------

// get_buffer() failed: the empty buffer makes libuv call on_read with UV_ENOBUFS, which
// reports the error. Not here: inside libuv's allocation callback the stream must not be
// stopped or closed (libuv calls read_cb right after, and stopping clears it).
static void defer_get_buffer_failure(TransportObject* t) { Py_XSETREF(t->get_buffer_error, fetch_exception()); }

void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    auto* t = static_cast<TransportObject*>(handle->data);
    t->core->ensure_gil();
    if (!t->buffered || t->tls) {
        *buf = uv_buf_init(read_scratch(), kReadScratch);  // (on_read copies out of it)
        return;
    }
    *buf = uv_buf_init(nullptr, 0);
    InContext in_context(t->context);
    // asyncio's _read_ready__get_buffer: get_buffer(-1), `if not len(buf)` (both failures
    // are get_buffer()'s), then sock.recv_into(buf), whose refusal of the buffer (bytes,
    // str, a read-only or strided view) is a read error.
    static PyObject* s_get_buffer = PyUnicode_InternFromString("get_buffer");
    static PyObject* s_hint = PyLong_FromLong(-1);
    PyObject* args[2] = {t->protocol, s_hint};
    t->in_alloc = true;
    PyObject* b = PyObject_VectorcallMethod(s_get_buffer, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    t->in_alloc = false;
    if (!b) return defer_get_buffer_failure(t);
    Py_ssize_t len = PyObject_Size(b);
    if (len <= 0) {
        Py_DECREF(b);
        if (len == 0) PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        return defer_get_buffer_failure(t);
    }
    if (!t->read_buf) {
        t->read_buf = static_cast<Py_buffer*>(PyMem_Malloc(sizeof(Py_buffer)));
        if (!t->read_buf) {
            Py_DECREF(b);
            PyErr_NoMemory();
            return defer_get_buffer_failure(t);
        }
    }
    int r = get_read_buffer(b, t->read_buf, "w*:recv_into", nullptr);
    Py_DECREF(b);
    if (r < 0) {
        t->buffer_unusable = true;
        return defer_get_buffer_failure(t);
    }
    if (t->read_buf->len == 0) {
        PyBuffer_Release(t->read_buf);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        return defer_get_buffer_failure(t);
    }
    t->has_read_buf = true;
    *buf = uv_buf_init(static_cast<char*>(t->read_buf->buf), static_cast<unsigned>(t->read_buf->len));
}

void release_read_buf(TransportObject* t) {
    if (t->has_read_buf) {
        t->has_read_buf = false;
        PyBuffer_Release(t->read_buf);
    }
}

void on_eof(TransportObject* t) {
    stop_reading(t);
    t->read_eof = true;
    if (t->kind == kReadPipe) {
        // asyncio's read pipe: closed by the peer, then eof_received and
        // connection_lost(None), each in a later callback.
        if (t->core->debug()) {
            PyObject* r = PyObject_CallMethod(g_logger, "info", "sO", "%r was closed by peer", O(t));
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
        t->closing = true;
        if (call_soon_method(t, t->protocol, PY_NAME("eof_received"), nullptr) < 0) report_unraisable(O(t));
        t->conn_lost++;
        if (call_soon_method(t, O(t), PY_NAME("_call_connection_lost"), Py_None) < 0) report_unraisable(O(t));
        return;
    }
    PyObject* keep = PyObject_CallMethodNoArgs(t->protocol, PY_NAME("eof_received"));
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
        PyObject* r = PyObject_CallMethodNoArgs(O(t), PY_NAME("close"));
        if (r) Py_DECREF(r);
        else report_unraisable(O(t));
    }
}

// Tells the protocol what one read brought: bytes (data_received), a count
// (buffer_updated: the bytes are in its buffer already), None (end of file) or False
// (nothing: an error came, which after_deferred_delivery() reports).
void deliver(TransportObject* t, PyObject* what) {
    if (what == Py_None) return on_eof(t);
    if (what == Py_False) return;  // a read error's place in the queue (deferred_error)
    PyObject* r;
    if (what == Py_True) {
        // TLS: the bytes went into the incoming BIO at once; now the state machine's step.
        if (t->tls && tls_received(t->protocol) < 0)
            protocol_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
        return;
    }
    if (PyBytes_CheckExact(what) && (t->tls || t->buffered)) {
        // Read (and queued) while the protocol took data_received; it changed since
        // (start_tls, set_protocol): hand the bytes over the way the new one reads.
        if (t->tls) {
            if (tls_feed(t->protocol, PyBytes_AS_STRING(what), static_cast<size_t>(PyBytes_GET_SIZE(what))) < 0 ||
                tls_received(t->protocol) < 0)
                protocol_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
            return;
        }
        static PyObject* s_feed = nullptr;
        if (!s_feed) {
            PyObject* protocols = PyImport_ImportModule("asyncio.protocols");
            s_feed = protocols ? PyObject_GetAttrString(protocols, "_feed_data_to_buffered_proto") : nullptr;
            Py_XDECREF(protocols);
        }
        r = s_feed ? PyObject_CallFunctionObjArgs(s_feed, t->protocol, what, nullptr) : nullptr;
        if (!r) protocol_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
        Py_XDECREF(r);
        return;
    }
    if (t->buffered) {
        static PyObject* s_buffer_updated = PyUnicode_InternFromString("buffer_updated");
        r = PyObject_CallMethodOneArg(t->protocol, s_buffer_updated, what);
        if (!r) protocol_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
    } else {
        static PyObject* s_data_received = PyUnicode_InternFromString("data_received");
        r = PyObject_CallMethodOneArg(t->protocol, s_data_received, what);
        if (!r && t->kind == kReadPipe) {
            // asyncio's read pipe calls data_received() unguarded in its reader callback:
            // the exception reaches the handler as that callback's, and the pipe reads on.
            PyObject* exc = fetch_exception();
            PyObject* rep = PyObject_CallMethodObjArgs(t->loop, PY_NAME("_report_pipe_read_exception"), O(t), exc,
                                                       nullptr);
            Py_DECREF(exc);
            if (rep) Py_DECREF(rep);
            else report_unraisable(O(t));
            return;
        }
        if (!r) protocol_failed(t, "Fatal error: protocol.data_received() call failed.");
    }
    Py_XDECREF(r);
}

// Whether reading stops while a read waits for its delivery: for a BufferedProtocol
// (its buffer must not be asked for again before buffer_updated) and TLS. Other
// transports keep libuv reading: a stop and a start would cost two epoll_ctl calls
// per read, and the ready queue runs before the next poll anyway, so a further read
// is rare (a read that filled the buffer, a loop stopped mid-queue) and queues behind.
static bool stops_while_deferred(TransportObject* t) { return t->buffered || t->tls; }

// Queues the transport's method `name`(what), in its context, as a read that waits for
// its delivery (read_deferred counts them).
static int queue_read(TransportObject* t, PyObject* name, PyObject* what) {
    PyObject* m = PyObject_GetAttr(O(t), name);
    HandleObject* h = m ? handle_new(HandleType, m, &what, 1, t->context, t->loop, t->core) : nullptr;
    Py_XDECREF(m);
    if (!h) return -1;
    t->read_deferred++;
    t->core->push_ready(h);
    return 0;
}

static int queue_delivery(TransportObject* t, PyObject* what) {
    static PyObject* s_deliver = PyUnicode_InternFromString("_deliver_deferred");
    return queue_read(t, s_deliver, what);
}

// asyncio runs a reader's callback after the callbacks queued before the poll found
// it ready. When some are waiting (or the loop is stopping), what libuv read is
// queued behind them; so is every read while an earlier one waits (order kept).
void defer(TransportObject* t, PyObject* what) {
    if (stops_while_deferred(t)) stop_reading(t);
    if (queue_delivery(t, what) < 0) protocol_failed(t, "Fatal read error on socket transport");
}

int hold_read(TransportObject* t, PyObject* what) {
    if (!t->held_reads && !(t->held_reads = PyList_New(0))) return -1;
    return PyList_Append(t->held_reads, what);
}

// Queues Transport_deliver_held(what): a held read, or Py_Ellipsis, the end of the drip.
int queue_held(TransportObject* t, PyObject* what) {
    static PyObject* s_deliver_held = PyUnicode_InternFromString("_deliver_held");
    if (queue_read(t, s_deliver_held, what) < 0) return -1;
    t->dripping = true;
    return 0;
}

int drip_held_read(TransportObject* t) {
    PyObject* held = t->held_reads;
    if (!held || t->dripping) return 0;
    if (PyList_GET_SIZE(held) == 0) {
        Py_CLEAR(t->held_reads);
        return 0;
    }
    PyObject* what = Py_NewRef(PyList_GET_ITEM(held, 0));
    int r = PyList_SetSlice(held, 0, 1, nullptr);
    if (r == 0 && PyList_GET_SIZE(held) == 0) Py_CLEAR(t->held_reads);
    if (r == 0) r = queue_held(t, what);
    Py_DECREF(what);
    return r;
}

int requeue_held_reads(TransportObject* t) {
    PyObject* held = t->held_reads;
    t->held_reads = nullptr;
    int r = 0;
    for (Py_ssize_t i = 0; r == 0 && i < PyList_GET_SIZE(held); i++) r = queue_delivery(t, PyList_GET_ITEM(held, i));
    Py_DECREF(held);
    return r;
}

void after_deferred_delivery(TransportObject* t) {
    if (t->deferred_error && t->read_deferred == 0 && !t->held_reads && !t->paused && !t->conn_lost) {
        int err = t->deferred_error;
        t->deferred_error = 0;
        fatal_uv_error(t, err, t->kind == kReadPipe ? "Fatal read error on pipe transport"
                                                    : "Fatal read error on socket transport");
        return;
    }
    start_reading(t);
}

// libuv (1.45 on) ends a stream on POLLHUP without calling read(). On a pty's master
// whose other end closed, read() says EIO on Linux, and asyncio, which reads, reports
// connection_lost(OSError(EIO)): ask the kernel, as asyncio does, on a terminal's end.
static ssize_t pty_end(TransportObject* t) {
    uv_os_fd_t fd;
    if (uv_fileno(&t->h.handle, &fd) < 0 || !isatty(fd)) return UV_EOF;
    char byte;
    if (read(fd, &byte, 1) < 0 && errno == EIO) return UV_EIO;
    return UV_EOF;  // POLLHUP came without POLLIN: nothing is left to read
}

// libuv reports EOF on POLLHUP after a partial read without calling read() again, and
// after a peer's RST (data, then the reset) asyncio's next recv() raises
// ConnectionResetError. So every EOF asks the kernel what asyncio's recv() would have
// said: a peek returns 0 after the peer's FIN (EOF, whatever error the socket also holds:
// after our write met a peer that had closed, the kernel keeps EPIPE, which recv() does
// not report once the FIN is in), and raises the pending error when no FIN came.
static ssize_t socket_end(TransportObject* t) {
    uv_os_fd_t fd;
    if (uv_fileno(&t->h.handle, &fd) < 0) return UV_EOF;
    char byte;
    ssize_t n;
    do n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTSOCK) return -errno;
    return UV_EOF;  // libuv's error codes are negative errnos on Unix
}

// A read pipe reads once per loop iteration, as asyncio's does (one read per event):
// libuv would read on while data is there, and a subprocess's protocol hears of each
// chunk only through call_soon (asyncio's base_subprocess), so a StreamReader's
// pause_reading() would come megabytes late. Reading starts again behind those callbacks
// (a queued read's delivery starts it at once: the next read queues behind the callbacks,
// and one that comes after a pause is held until resume_reading()).
static void one_read_per_iteration(TransportObject* t) {
    if (!t->reading || !t->handle_open) return;
    stop_reading(t);
    if (call_soon_method(t, O(t), PY_NAME("_start_reading"), nullptr) < 0) report_unraisable(O(t));
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* t = static_cast<TransportObject*>(stream->data);
    if (t->stop_after_alloc) {  // get_buffer() stopped reading: this read is still delivered, as asyncio's
        t->stop_after_alloc = false;
        uv_read_stop(stream);
    }
    if (nread == 0) {  // EAGAIN: nothing to tell the protocol
        if (t->buffered && !t->tls) {
            t->core->ensure_gil();
            release_read_buf(t);
        }
        return;
    }
    t->core->ensure_gil();
    Py_INCREF(O(t));  // protocol callbacks may close and release the transport
    InContext in_context(t->context);
    if (nread == UV_EOF) nread = t->kind == kReadPipe ? pty_end(t) : t->kind == kStream ? socket_end(t) : nread;
    if (nread > 0 || nread == UV_EOF) {
        if (nread > 0) t->core->count_read(static_cast<size_t>(nread));
        PyObject* what;
        if (nread == UV_EOF) {
            release_read_buf(t);
            what = Py_NewRef(Py_None);
        } else if (t->tls) {
            what = tls_feed(t->protocol, buf->base, static_cast<size_t>(nread)) < 0 ? nullptr : Py_NewRef(Py_True);
        } else if (t->buffered) {
            release_read_buf(t);
            what = PyLong_FromSsize_t(nread);
        } else {
            what = PyBytes_FromStringAndSize(buf->base, nread);
        }
        if (!what) protocol_failed(t, t->tls ? "Fatal error: protocol.buffer_updated() call failed."
                                             : "Fatal read error on socket transport");
        else if (t->read_deferred || t->core->io_must_queue()) defer(t, what);
        else deliver(t, what);
        Py_XDECREF(what);
        if (nread > 0 && t->kind == kReadPipe) one_read_per_iteration(t);
    } else {
        release_read_buf(t);
        if (nread == UV_ENOBUFS) {
            stop_reading(t);  // get_buffer() failed
            if (PyObject* exc = t->get_buffer_error) {
                t->get_buffer_error = nullptr;
                restore_exception(exc);
                protocol_failed(t, t->buffer_unusable ? "Fatal read error on socket transport"
                                                      : "Fatal error: protocol.get_buffer() call failed.");
                t->buffer_unusable = false;
            }
        } else if (t->read_deferred || t->held_reads || t->core->io_must_queue()) {
            // Reported once the reads before it are delivered, and behind the callbacks
            // queued before this poll (asyncio's reader callback runs after them: a
            // close() among them ends the connection with None, not with this error).
            stop_reading(t);
            t->deferred_error = static_cast<int>(nread);
            if (!t->read_deferred && !t->held_reads) defer(t, Py_False);
        } else fatal_uv_error(t, static_cast<int>(nread), t->kind == kReadPipe ? "Fatal read error on pipe transport"
                                                                             : "Fatal read error on socket transport");
    }
    Py_DECREF(O(t));
}

int start_reading(TransportObject* t) {
    if (t->reading || t->paused || t->closing || !t->read_started || !t->handle_open || t->read_eof ||
        t->deferred_error || (t->read_deferred && stops_while_deferred(t)))
        return 0;
    if (t->stop_after_alloc) {  // stopped and restarted inside get_buffer(): libuv still reads
        t->stop_after_alloc = false;
        t->reading = true;
        return 0;
    }
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
    if (flush_cork(t) < 0) report_unraisable(O(t));
    if (t->write_buffer_size) return;  // the kernel did not take it all: on_write sends the EOF
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
    if (status == 0) t->core->count_written(len);
    // As asyncio's writer callback: in the context of the write() that began buffering
    // (3.15: of the transport's creation).
    InContext in_context(t->write_context && !callbacks_in_own_context(t) ? t->write_context : t->context);
    if (status < 0) {
        fatal_uv_error(t, status, write_error_message(t));
    } else {
        maybe_resume_protocol(t);
        if (t->write_buffer_size == 0) {
            settle_drain_waiter(t, nullptr);
            if (t->closing) {
                unwatch_reader(t);
                t->conn_lost++;
                if (call_soon_method(t, O(t), PY_NAME("_call_connection_lost"), Py_None) < 0) report_unraisable(O(t));
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

void close_handle(TransportObject* t, bool close_user_object) {
    if (!t->handle_open) return;
    free_cork(t);  // closing flushed it; after an error it is dropped
    t->handle_open = false;
    unwatch_reader(t);  // before libuv closes the watched fd
    t->core->clear_stream_fd(t->sock_fd, O(t));
    stop_reading(t);
    // libuv closes its fd. The loop's own socket object must not close that fd again
    // (detach); a user's socket object has an fd of its own, closed as asyncio does.
    if (t->sock && t->sock != Py_None && (t->owns_fd || close_user_object)) {
        PyObject* r = PyObject_CallMethodNoArgs(t->sock, t->owns_fd ? PY_NAME("detach") : PY_NAME("close"));
        if (r) Py_DECREF(r);
        else PyErr_Clear();
    }
    uv_close(&t->h.handle, on_close);
}

// The loop is closing with this transport still open: close the handle now (libuv
// closes its duplicate of the fd). The protocol hears nothing (no callback can run on a
// closed loop, as in asyncio), and the user's socket or pipe object stays open, as
// asyncio leaves it: the transport still says it is open, and warns (closing that object)
// when it is collected, as asyncio's __del__ does.
void close_for_loop_close(uv_handle_t* handle) {
    auto* t = static_cast<TransportObject*>(handle->data);
    // The user's first close()/abort() afterwards raises what asyncio's raises then
    // (it cannot schedule connection_lost on a closed loop).
    t->closed_under = t->left_open = !t->closing;
    t->buffered_at_close = t->write_buffer_size > 0;
    t->closing = true;
    t->conn_lost++;
    t->write_buffer_size = 0;
    close_handle(t, false);
}


static bool may_cork(TransportObject* t, size_t total);
static bool cork(TransportObject* t, const char* p, size_t len);
static int write_bufs(TransportObject* t, const uv_buf_t* bufs, unsigned nbufs, size_t len);

int write_many(TransportObject* t, const uv_buf_t* bufs, size_t n, size_t total) {
    if (total == 0 || n == 1) return write_bytes(t, n ? bufs[0].base : "", total);
    // write()'s checks, and a lost connection counts one dropped write, as asyncio's.
    if (write_bytes(t, "", 0) < 0) return -1;
    if (t->conn_lost || !t->handle_open) return write_bytes(t, bufs[0].base, total);
    if (total > kMaxWriteChunk || may_cork(t, t->cork_len + total)) {
        // Small pieces join the cork; huge ones go in libuv-sized chunks.
        int r = 0;
        for (size_t i = 0; i < n && r == 0 && !t->conn_lost; i++) r = write_bytes(t, bufs[i].base, bufs[i].len);
        return r;
    }
    // The held-back bytes first, then every piece, in one writev.
    std::vector<uv_buf_t> all;
    all.reserve(n + 1);
    char* held = nullptr;
    if (t->cork_len) {
        held = t->cork;
        all.push_back(uv_buf_init(held, t->cork_len));
        total += t->cork_len;
        t->cork = nullptr;
        t->cork_len = t->cork_cap = 0;
    }
    all.insert(all.end(), bufs, bufs + n);
    int r = write_bufs(t, all.data(), static_cast<unsigned>(all.size()), total);
    free(held);
    return r;
}

int write_bytes(TransportObject* t, const char* p, size_t len) {
    if (t->eof_requested) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        return -1;
    }
    if (t->sendfile_busy) {
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        return -1;
    }
    if (len == 0) return 0;
    if (t->conn_lost || !t->handle_open) {
        if (t->conn_lost >= kLogThresholdConnLostWrites) {
            PyObject* r = PyObject_CallMethod(g_logger, "warning", "s",
                                              t->kind == kWritePipe
                                                  ? "pipe closed by peer or os.write(pipe, data) raised exception."
                                                  : "socket.send() raised exception.");
            if (r) Py_DECREF(r);
            else PyErr_Clear();
        }
        t->conn_lost++;
        return 0;
    }
    if (cork(t, p, len)) return 0;
    // libuv's buffers count bytes in an unsigned int: hand it at most 1 GiB at a time.
    int r = 0;
    for (size_t off = 0; off < len && r == 0 && !t->conn_lost; off += kMaxWriteChunk)
        r = write_chunk(t, p + off, std::min(kMaxWriteChunk, len - off));
    return r;
}

// Writes the buffers (together <= 1 GiB): what the kernel takes now, the rest copied
// into one uv_write request. -1 with MemoryError set; write errors close the transport.
static int write_bufs(TransportObject* t, const uv_buf_t* bufs, unsigned nbufs, size_t len) {
    size_t sent = 0;
    if (t->write_buffer_size == 0) {
        // Try the kernel first; only what it does not take is buffered.
        int n = uv_try_write(&t->h.stream, bufs, nbufs);
        if (n >= 0) {
            sent = static_cast<size_t>(n);
            t->core->count_written(sent);
        } else if (n != UV_EAGAIN) {
            fatal_uv_error(t, n, write_error_message(t));
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
    size_t skip = sent, at = 0;
    for (unsigned i = 0; i < nbufs; i++) {
        size_t n = bufs[i].len;
        if (skip >= n) {
            skip -= n;
            continue;
        }
        std::memcpy(w->data + at, bufs[i].base + skip, n - skip);
        at += n - skip;
        skip = 0;
    }
    w->t = t;
    w->len = rest;
    uv_buf_t b = uv_buf_init(w->data, static_cast<unsigned>(rest));
    int r = uv_write(&w->req, &t->h.stream, &b, 1, on_write);
    if (r < 0) {
        free(w);
        fatal_uv_error(t, r, write_error_message(t));
        return 0;
    }
    Py_INCREF(O(t));  // held until on_write
    if (t->write_buffer_size == 0 && !callbacks_in_own_context(t)) {
        PyObject* ctx = PyContext_CopyCurrent();
        if (ctx) Py_XSETREF(t->write_context, ctx);
        else PyErr_Clear();
    }
    t->write_buffer_size += rest;
    maybe_pause_protocol(t);
    return 0;
}

void free_cork(TransportObject* t) {
    free(t->cork);
    t->cork = nullptr;
    t->cork_len = t->cork_cap = 0;
}

// Sends the cork followed by p[0:len] (len may be 0) in one system call.
static int write_with_cork(TransportObject* t, const char* p, size_t len) {
    // The cork is detached first: an error below may run Python code that writes again.
    char* held = t->cork;
    size_t held_len = t->cork_len, cap = t->cork_cap;
    t->cork = nullptr;
    t->cork_len = t->cork_cap = 0;
    uv_buf_t bufs[2] = {uv_buf_init(held, static_cast<unsigned>(held_len)),
                        uv_buf_init(const_cast<char*>(p), static_cast<unsigned>(len))};
    int r = 0;
    if (!t->conn_lost && t->handle_open) r = write_bufs(t, bufs, len ? 2 : 1, held_len + len);
    if (!t->cork && cap <= 4096 && t->handle_open) {  // keep a small buffer for the next time
        t->cork = held;
        t->cork_cap = static_cast<uint32_t>(cap);
    } else {
        free(held);
    }
    return r;
}

int flush_cork(TransportObject* t) { return t->cork_len ? write_with_cork(t, nullptr, 0) : 0; }

static void flush_cork_for_loop(PyObject* o) {
    TransportObject* t = T(o);
    t->cork_queued = false;
    if (flush_cork(t) < 0) report_unraisable(o);
}

// Holds a small write made by a callback or task step back when nothing waits in
// libuv's queue, so that what one callback writes (an HTTP server's headers, then its
// body, from its request task) leaves in one system call when it returns, or with the
// writes of the callbacks after it while the pass has a while to run
// (LoopCore::hold_or_flush says when, and what bounds it). Holding every write until
// the pass over the ready callbacks is done was measured and dropped: a fast peer then
// waits for the pass to end instead of answering while it goes on (a unix streams
// echo, 8 connections, 191k -> 105k requests/s; docs/benchmarks.md). A write from an I/O callback
// (data_received answering at once) goes now. At most kCorkMax bytes, and never more
// than the high water mark: what is held counts as written (asyncio would have sent
// it), so flow control is as asyncio's. Returns true if held.
static bool may_cork(TransportObject* t, size_t total) {
    return t->kind == kStream && t->write_buffer_size == 0 && total <= kCorkMax && total <= t->high_water &&
           t->core->running_callbacks();
}

static bool cork(TransportObject* t, const char* p, size_t len) {
    size_t total = t->cork_len + len;
    if (!may_cork(t, total)) return false;
    if (total > t->cork_cap) {
        size_t cap = t->cork_cap ? t->cork_cap : 256;
        while (cap < total) cap *= 2;
        char* grown = static_cast<char*>(realloc(t->cork, cap));
        if (!grown) return false;  // write it now instead
        t->cork = grown;
        t->cork_cap = static_cast<uint32_t>(cap);
    }
    std::memcpy(t->cork + t->cork_len, p, len);
    t->cork_len = static_cast<uint32_t>(total);
    if (!t->cork_queued) {
        t->cork_queued = true;
        t->core->queue_flush(O(t), flush_cork_for_loop);
    }
    return true;
}

// Writes len (<= 1 GiB) bytes: what the kernel takes now, the rest copied into a
// uv_write request. Returns -1 with MemoryError set; write errors close the transport.
int write_chunk(TransportObject* t, const char* p, size_t len) {
    if (t->cork_len) return write_with_cork(t, p, len);
    uv_buf_t b = uv_buf_init(const_cast<char*>(p), static_cast<unsigned>(len));
    return write_bufs(t, &b, 1, len);
}

}  // namespace stream_io
}  // namespace pyloop
