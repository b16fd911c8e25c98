// What StreamTransport's Python methods (stream.cpp) share with its libuv side
// (stream_io.cpp: asyncio's error and flow-control steps, closing; stream_read.cpp,
// stream_write.cpp).
#pragma once
#include "net/stream.hpp"

#include <cstddef>

namespace pyloop {
namespace stream_io {

constexpr size_t kDefaultHighWater = 64 * 1024;
constexpr long kLogThresholdConnLostWrites = 5;  // asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
constexpr size_t kMaxWriteChunk = size_t{1} << 30;  // libuv counts buffer bytes in an unsigned int
constexpr size_t kCorkMax = 16 * 1024;  // writes held back per stream per iteration, at most

extern PyObject* g_buffered_protocol;  // asyncio.BufferedProtocol
extern PyObject* g_logger;             // asyncio.log.logger

inline TransportObject* T(PyObject* o) { return reinterpret_cast<TransportObject*>(o); }
inline PyObject* O(TransportObject* t) { return reinterpret_cast<PyObject*>(t); }

// asyncio 3.15: a socket transport's own callbacks (connection_lost after close() or an
// error, the writer whose end calls resume_writing) run in the context of its creation,
// not in the caller's; pipe transports keep the caller's.
constexpr bool kPy315 = PY_VERSION_HEX >= 0x030F0000;
inline bool callbacks_in_own_context(const TransportObject* t) { return kPy315 && t->kind == kStream; }

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


// A protocol callback raised: handled as asyncio does (a fatal error with `message`).
// Returns -1 if it must escape the loop (SystemExit, KeyboardInterrupt).
int protocol_failed(TransportObject* t, const char* message);
const char* write_error_message(TransportObject* t);
void maybe_resume_protocol(TransportObject* t);

// Schedules callable(*args) / obj.name(arg) on the loop, as asyncio's loop.call_soon
// (nothing on a closed loop). -1 with an exception set.
int call_soon(TransportObject* t, PyObject* callable, PyObject* const* args, Py_ssize_t nargs);
int call_soon_method(TransportObject* t, PyObject* obj, PyObject* name, PyObject* arg);
void report_unraisable(PyObject* obj);

void stop_reading(TransportObject* t);
void fatal_uv_error(TransportObject* t, int err, const char* message);
// Stops watching a write pipe's fd for its reader going away (asyncio's _remove_reader).
void unwatch_reader(TransportObject* t);
int start_reading(TransportObject* t);  // unless paused, closing, deferred, at EOF
// asyncio's _force_close, _fatal_error.
void force_close(TransportObject* t, PyObject* exc);
void fatal_error(TransportObject* t, PyObject* exc, const char* message);
// Tells the protocol what a read brought (bytes, a count for BufferedProtocol, None at EOF).
void deliver(TransportObject* t, PyObject* what);
// A queued read that reached a transport paused meanwhile waits for resume_reading();
// then it is queued again, ahead of any new read. -1 with an exception set.
int hold_read(TransportObject* t, PyObject* what);
int requeue_held_reads(TransportObject* t);
int drip_held_read(TransportObject* t);  // a read pipe's next held read, one per pass
int queue_held(TransportObject* t, PyObject* what);
// After a queued read was delivered: the read error that waited behind it, or reading on.
void after_deferred_delivery(TransportObject* t);
void settle_drain_waiter(TransportObject* t, PyObject* exc);
void maybe_pause_protocol(TransportObject* t);
size_t unsent_bytes(TransportObject* t);  // asyncio's get_write_buffer_size()
void send_eof(TransportObject* t);
// Writes len (<= kMaxWriteChunk) bytes: what the kernel takes now, the rest copied
// into a uv_write request. -1 with MemoryError set; write errors close the transport.
int write_chunk(TransportObject* t, const char* p, size_t len);
// Sends what write() held back (the cork) now, ahead of anything else: every path that
// sends, shuts down, closes or measures the stream calls it first. -1 with an
// exception set (MemoryError).
int flush_cork(TransportObject* t);
void free_cork(TransportObject* t);
void release_read_buf(TransportObject* t);
// transport.write() of len bytes, after its type checks: refused after write_eof() or
// during sendfile (RuntimeError), dropped (and counted) once the connection is lost.
int write_bytes(TransportObject* t, const char* p, size_t len);
// transport.writelines(): the pieces as one write (one system call when the kernel
// takes them), with write_bytes' checks once.
int write_many(TransportObject* t, const uv_buf_t* bufs, size_t n, size_t total);
// libuv closes the fd; the socket object is detached (the loop's) or closed (a user's).
// Closes the libuv handle (libuv closes its fd). The loop's own socket object is
// detached; a user's object (its own fd) is closed too unless close_user_object is false.
void close_handle(TransportObject* t, bool close_user_object = true);
void on_close(uv_handle_t* handle);
// The loop closes with this transport open (LoopCore's HandleCloser).
void close_for_loop_close(uv_handle_t* handle);

}  // namespace stream_io
}  // namespace pyloop
