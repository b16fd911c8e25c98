// Handle and TimerHandle: the objects call_soon/call_later return, as plain CPython
// types (they are created on the hottest path, so no pybind11 instance machinery).
#pragma once
#include "uv/pyutil.hpp"

#include <cstdint>

namespace pyloop {

class LoopCore;

constexpr Py_ssize_t kInlineArgs = 2;

struct HandleObject {
    PyObject_HEAD
    PyObject* callback;          // nullptr once cancelled
    PyObject* args;              // tuple when there are more than kInlineArgs arguments
    PyObject* inline_args[2];    // otherwise the arguments themselves (owned)
    Py_ssize_t nargs;
    PyObject* context;           // contextvars.Context the callback runs in
    PyObject* loop;              // the Python loop object
    PyObject* source_traceback;  // debug mode only
    PyObject* repr;              // repr saved at cancel time in debug mode
    PyObject* weakrefs;
    LoopCore* core;              // valid while `loop` is alive (it owns the core)
    double when;                 // TimerHandle only
    uint64_t seq;                // FIFO order among timers with the same `when`
    Py_ssize_t heap_index;       // position in the timer heap, -1 when not scheduled
    unsigned long running_in;    // thread running the callback of a thread-safe handle, else 0
    bool cancelled;
    bool threadsafe;             // from call_soon_threadsafe on 3.14+ (see handle_cancel)
    bool ctx_shared;             // `context` is the loop's shared snapshot (see shared_context)
};

extern PyTypeObject* HandleType;
extern PyTypeObject* TimerHandleType;

// Creates the types and adds them to `module`. Returns -1 with an exception set.
int init_handle_types(PyObject* module);

// A new Handle (or TimerHandle when `type` says so). `context` may be nullptr or None
// (then the current context is copied: the loop's shared snapshot of it, see
// LoopCore::shared_context). Returns a new reference or nullptr.
HandleObject* handle_new(PyTypeObject* type, PyObject* callback, PyObject* const* args,
                         Py_ssize_t nargs, PyObject* context, PyObject* loop, LoopCore* core);

// What a Handle refers to, for the loop's tp_traverse of the handles only its queues
// hold (they are part of the loop then, see LoopCore::traverse).
int handle_traverse(HandleObject* h, visitproc visit, void* arg);

// Do two Context objects hold the same variables (the same immutable mapping)?
bool same_context_vars(PyObject* a, PyObject* b);

// What a queued Handle would run, kept by the loop's ready queue in place of the
// Handle once only the queue held it (LoopCore::settle_fresh): its callback, its one
// argument (or nullptr) and its context, whose low bit says it is the loop's shared
// snapshot (see shared_context). Owned references. 24 bytes where the Handle is 176.
struct QueuedCall {
    PyObject* callback = nullptr;
    PyObject* arg = nullptr;
    uintptr_t ctx = 0;
    PyObject* context() const { return reinterpret_cast<PyObject*>(ctx & ~uintptr_t(1)); }
    bool shared() const { return ctx & 1; }
};

// Moves a queued handle's callback, argument and context into `out` when nothing but
// the queue can reach the handle and a QueuedCall holds all it has: a plain Handle
// (not a subclass or a TimerHandle), only the queue's reference, no weak reference,
// not cancelled, at most one argument, nothing of debug mode's, not thread-safe. The
// caller then drops the handle. False (and h unchanged) otherwise.
bool handle_detach(HandleObject* h, QueuedCall* out);
// Runs a detached call as handle_run runs its handle: an exception goes to the loop's
// handler with a Handle made for the report. A shared snapshot is replaced by a copy
// first (in c). -1 (exception left set) for SystemExit and KeyboardInterrupt.
int queued_call_run(QueuedCall* c, PyObject* loop, LoopCore* core);
// A Handle again (debug mode was turned on while it waited): takes c's references.
HandleObject* queued_call_handle(QueuedCall* c, PyObject* loop, LoopCore* core);
inline void queued_call_clear(QueuedCall* c) {
    PyObject* ctx = c->context();
    c->ctx = 0;
    Py_CLEAR(c->callback);
    Py_CLEAR(c->arg);
    Py_XDECREF(ctx);
}
inline int queued_call_traverse(const QueuedCall* c, visitproc visit, void* arg) {
    Py_VISIT(c->callback);
    Py_VISIT(c->arg);
    Py_VISIT(c->context());
    return 0;
}

// Runs the callback in its context. Exceptions go to the loop's exception handler;
// returns -1 (exception left set) only for SystemExit and KeyboardInterrupt, which
// must stop the loop, as in asyncio.
int handle_run(HandleObject* h);

// Marks the handle cancelled and drops the callback and arguments.
void handle_cancel(HandleObject* h);

// asyncio 3.14's call_soon_threadsafe handle: cancel() and cancelled() from another
// thread wait until a callback that is running has returned.
constexpr bool kThreadSafeHandles = PY_VERSION_HEX >= 0x030E0000;

inline bool is_handle(PyObject* o) { return PyObject_TypeCheck(o, HandleType); }

}  // namespace pyloop
