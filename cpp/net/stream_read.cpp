// StreamTransport's reading: libuv's reads into the protocol (data_received, a
// BufferedProtocol's buffer, the TLS layer), queued behind the ready callbacks when
// asyncio would run them later, held while paused; EOF and read errors as asyncio
// reports them.
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

}  // namespace stream_io
}  // namespace pyloop
