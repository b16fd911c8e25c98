// StreamTransport's writing: what the kernel takes at once, the rest copied into a
// libuv write request; small writes of a callback held back and sent together (the
// cork); on_write (resuming the protocol, ending a close or a write_eof) and the
// shutdown that sends the EOF.
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

namespace {

struct WriteReq {
    uv_write_t req;
    TransportObject* t;
    size_t len;
    char data[1];
};

}  // namespace

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
