// The asyncio-shaped error and flow-control helpers that StreamTransport's Python
// methods (stream.cpp) share with its libuv side, and closing. Reading into the
// protocol: stream_read.cpp; writing what the kernel did not take: stream_write.cpp.
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

}  // namespace stream_io
}  // namespace pyloop
