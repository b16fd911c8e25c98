#include "core/handle.hpp"

#include "core/loop.hpp"

#include <structmember.h>

#include <condition_variable>
#include <cstring>
#include <mutex>

namespace pyloop {

PyTypeObject* HandleType = nullptr;
PyTypeObject* TimerHandleType = nullptr;

// Recently freed Handles and TimerHandles (they share one layout), reused to spare
// the allocator and the GC bookkeeping on the hottest path.
static constexpr int kFreeListMax = 256;
static HandleObject* g_free_list[kFreeListMax];
static int g_free_count = 0;

// Handles are allocated as the collector allocates its objects (PyObject_GC_New), less
// one thing: the count of allocations that starts a collection. A handle the loop
// queues is not tracked while queued (LoopCore::note_queued), so it gives a collection
// nothing to do, and counting it only made collections come sooner: gather() of 200k
// coroutines, whose handles the loop holds, ran 1.17x more collections on pyloop than on
// loops whose handles are not Python objects, each walking every task alive. A GC
// object is its header (CPython's PyGC_Head: two words, zero while untracked) then the
// object; that is checked at import (check_gc_header), else PyObject_GC_New.
static constexpr size_t kGcHeader = 2 * sizeof(uintptr_t);
static bool g_uncounted_alloc = false;

static HandleObject* alloc_handle(PyTypeObject* type) {
    if (g_free_count > 0) {
        HandleObject* h = g_free_list[--g_free_count];
        PyObject_Init(reinterpret_cast<PyObject*>(h), type);  // new reference, increfs the heap type
        return h;
    }
    if (!g_uncounted_alloc) return PyObject_GC_New(HandleObject, type);
    char* mem = static_cast<char*>(PyObject_Malloc(kGcHeader + sizeof(HandleObject)));
    if (!mem) return reinterpret_cast<HandleObject*>(PyErr_NoMemory());
    std::memset(mem, 0, kGcHeader);
    auto* h = reinterpret_cast<HandleObject*>(mem + kGcHeader);
    PyObject_Init(reinterpret_cast<PyObject*>(h), type);
    return h;
}

static void free_handle(PyObject* self) {
    if (g_uncounted_alloc) PyObject_Free(reinterpret_cast<char*>(self) - kGcHeader);
    else PyObject_GC_Del(self);
}

// Is a GC object laid out as alloc_handle assumes? A handle made by PyObject_GC_New has
// a zero header before it, which tracking fills and untracking zeroes again.
static bool check_gc_header() {
#if defined(Py_GIL_DISABLED) || PY_VERSION_HEX >= 0x03100000
    return false;  // another object layout, or one not checked yet
#else
    PyObject* o = reinterpret_cast<PyObject*>(PyObject_GC_New(HandleObject, HandleType));
    if (!o) {
        PyErr_Clear();
        return false;
    }
    std::memset(reinterpret_cast<char*>(o) + sizeof(PyObject), 0, sizeof(HandleObject) - sizeof(PyObject));
    auto* words = reinterpret_cast<uintptr_t*>(reinterpret_cast<char*>(o) - kGcHeader);
    bool ok = words[0] == 0 && words[1] == 0 &&
              HandleType->tp_basicsize == static_cast<Py_ssize_t>(sizeof(HandleObject));
#ifdef Py_TPFLAGS_MANAGED_DICT  // (3.11+: a type with these has more before its header)
    ok = ok && !PyType_HasFeature(HandleType, Py_TPFLAGS_MANAGED_DICT);
#endif
#ifdef Py_TPFLAGS_MANAGED_WEAKREF
    ok = ok && !PyType_HasFeature(HandleType, Py_TPFLAGS_MANAGED_WEAKREF);
#endif
    PyObject_GC_Track(o);
    ok = ok && words[0] != 0 && PyObject_GC_IsTracked(o);
    PyObject_GC_UnTrack(o);
    ok = ok && words[0] == 0 && words[1] == 0 && !PyObject_GC_IsTracked(o);
    PyObject_GC_Del(o);
    Py_DECREF(HandleType);  // PyObject_GC_New took a reference to the heap type
    return ok;
#endif
}

// ---- contexts ------------------------------------------------------------------------
//
// asyncio gives each handle made without context= a copy of the current context
// (contextvars.copy_context()): an object the garbage collector tracks, one per
// call_soon/call_later. A copy is a new Context over the same immutable mapping of
// variables, so copies made while that mapping stays the same are interchangeable as
// long as none of them is run in (running a callback in it may set variables) or handed
// out. The loop keeps one such copy, the shared snapshot, and gives it to every handle
// made while the current context holds the same mapping. When the handle runs, or its
// context is asked for (get_context()), it gets a copy of its own: made then, it
// comes from CPython's context free list, lives as long as the handle (most run once
// and go) and is never old enough to cost the collector work. The snapshot itself is
// never run in and never handed out.
//
// Whether two contexts hold the same mapping is read from the Context struct: its
// layout (CPython's internal pycore_context.h) is the same in 3.10-3.15 and checked
// at import; on any other Python, or if the check fails, every handle gets its own
// copy as in asyncio.

namespace {
struct ContextLayout {  // CPython's struct _pycontextobject, 3.10-3.15
    PyObject_HEAD
    PyObject* ctx_prev;
    PyObject* ctx_vars;
    PyObject* ctx_weakreflist;
    int ctx_entered;
};

inline PyObject* vars_of(PyObject* ctx) { return reinterpret_cast<ContextLayout*>(ctx)->ctx_vars; }

bool check_context_layout() {
#if PY_VERSION_HEX >= 0x03100000
    return false;  // a layout not checked yet
#else
    PyObject* c = PyContext_New();
    if (!c) {
        PyErr_Clear();
        return false;
    }
    auto* v = reinterpret_cast<ContextLayout*>(c);
    bool ok = PyContext_CheckExact(c) && v->ctx_prev == nullptr && v->ctx_vars != nullptr &&
              std::strcmp(Py_TYPE(v->ctx_vars)->tp_name, "hamt") == 0 && v->ctx_entered == 0;
    if (ok && PyContext_Enter(c) == 0) {
        ok = v->ctx_entered == 1;
        PyContext_Exit(c);
        ok = ok && v->ctx_entered == 0;
    } else {
        PyErr_Clear();
        ok = false;
    }
    PyObject* copy = ok ? PyContext_Copy(c) : nullptr;
    if (copy) ok = vars_of(copy) == v->ctx_vars;
    else ok = false, PyErr_Clear();
    Py_XDECREF(copy);
    Py_DECREF(c);
    return ok;
#endif
}

bool g_contexts_shareable = false;
}  // namespace

bool same_context_vars(PyObject* a, PyObject* b) { return vars_of(a) == vars_of(b); }

// The context for a new handle made without context=: a new reference.
static PyObject* context_for_handle(LoopCore* core, bool* shared) {
    if (core && g_contexts_shareable) {
        PyObject* ctx = core->shared_context();
        *shared = ctx != nullptr;
        return ctx;
    }
    *shared = false;
    return PyContext_CopyCurrent();
}

HandleObject* handle_new(PyTypeObject* type, PyObject* callback, PyObject* const* args,
                         Py_ssize_t nargs, PyObject* context, PyObject* loop, LoopCore* core) {
    PyObject* ctx;
    bool ctx_shared = false;
    if (context == nullptr || context == Py_None) {
        ctx = context_for_handle(core, &ctx_shared);
        if (!ctx) return nullptr;
    } else {
        ctx = Py_NewRef(context);
    }
    PyObject* argtuple = nullptr;
    if (nargs > kInlineArgs) {
        argtuple = PyTuple_New(nargs);
        if (!argtuple) {
            Py_DECREF(ctx);
            return nullptr;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) PyTuple_SET_ITEM(argtuple, i, Py_NewRef(args[i]));
    }
    HandleObject* h = alloc_handle(type);
    if (!h) {
        Py_DECREF(ctx);
        Py_XDECREF(argtuple);
        return nullptr;
    }
    h->callback = Py_NewRef(callback);
    h->args = argtuple;
    h->nargs = nargs;
    h->inline_args[0] = h->inline_args[1] = nullptr;
    if (!argtuple)
        for (Py_ssize_t i = 0; i < nargs; i++) h->inline_args[i] = Py_NewRef(args[i]);
    h->context = ctx;
    h->loop = Py_NewRef(loop);
    h->source_traceback = nullptr;
    h->repr = nullptr;
    h->weakrefs = nullptr;
    h->core = core;
    h->when = 0.0;
    h->seq = 0;
    h->heap_index = -1;
    h->running_in = 0;
    h->cancelled = false;
    h->threadsafe = false;
    h->ctx_shared = ctx_shared;
    PyObject_GC_Track(h);
    return h;
}

// A handle holding the shared snapshot gets a copy of its own before its context is
// handed out or run in. -1 with an exception set.
static int own_context(HandleObject* h) {
    if (!h->ctx_shared) return 0;
    PyObject* copy = PyContext_Copy(h->context);
    if (!copy) return -1;
    Py_SETREF(h->context, copy);
    h->ctx_shared = false;
    return 0;
}

static void clear_args(HandleObject* h) {
    Py_CLEAR(h->args);
    Py_CLEAR(h->inline_args[0]);
    Py_CLEAR(h->inline_args[1]);
}

static inline bool is_fatal_pending() {
    return PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

// A thread-safe handle's callback is "running" from its start to its return; another
// thread's cancel()/cancelled() waits for the end (3.14's _ThreadSafeHandle holds a lock
// around the callback). The wait is rare: one mutex and condition for every handle.
static std::mutex g_run_mutex;
static std::condition_variable g_run_done;
static int g_run_waiters = 0;  // guarded by g_run_mutex

static void threadsafe_run_ended(HandleObject* h) {
    std::lock_guard<std::mutex> lock(g_run_mutex);
    h->running_in = 0;
    if (g_run_waiters) g_run_done.notify_all();
}

// Waits, without the GIL, while another thread runs h's callback.
static void wait_until_not_running(HandleObject* h) {
    unsigned long me = PyThread_get_thread_ident();
    if (h->running_in == 0 || h->running_in == me) return;  // the lock is reentrant
    Py_INCREF(h);
    Py_BEGIN_ALLOW_THREADS
    {
        std::unique_lock<std::mutex> lock(g_run_mutex);
        g_run_waiters++;
        g_run_done.wait(lock, [h] { return h->running_in == 0; });
        g_run_waiters--;
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(h);
}

// callback(*argv) run in ctx: a new reference, or nullptr with the exception set.
static inline PyObject* call_in(PyObject* ctx, PyObject* callback, PyObject* const* argv, Py_ssize_t nargs) {
    if (PyContext_Enter(ctx) < 0) return nullptr;
    PyObject* res = PyObject_Vectorcall(callback, argv, static_cast<size_t>(nargs), nullptr);
    PyContext_Exit(ctx);  // cannot fail: this thread just entered it
    return res;
}

// After h's callback raised: -1 (exception left set) for SystemExit and
// KeyboardInterrupt, else the exception goes to the loop's handler and 0.
static int report_failure(HandleObject* h) {
    if (is_fatal_pending()) return -1;
    PyObject* exc = fetch_exception();
    // The Python face formats asyncio's "Exception in callback ..." context.
    PyObject* r = PyObject_CallMethodObjArgs(h->loop, PY_NAME("_report_callback_exception"),
                                            reinterpret_cast<PyObject*>(h), exc, nullptr);
    Py_DECREF(exc);
    if (r) {
        Py_DECREF(r);
        return 0;
    }
    if (is_fatal_pending()) return -1;
    PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(h));
    return 0;
}

int handle_run(HandleObject* h) {
    if (!h->callback) return 0;
    PyObject* res = nullptr;
    // A shared snapshot is replaced by a private copy, the context the callback runs in
    // and the handle keeps (as asyncio's handle keeps the one its callback changed).
    if (!h->ctx_shared || own_context(h) == 0) {
        PyObject* const* argv = h->args ? &PyTuple_GET_ITEM(h->args, 0) : h->inline_args;
        if (h->threadsafe) {
            h->running_in = PyThread_get_thread_ident();
            Py_INCREF(h);  // a waiter reads it until threadsafe_run_ended
            res = call_in(h->context, h->callback, argv, h->nargs);
            threadsafe_run_ended(h);
            Py_DECREF(h);
        } else {
            res = call_in(h->context, h->callback, argv, h->nargs);
        }
    }
    if (res) {
        Py_DECREF(res);
        return 0;
    }
    return report_failure(h);
}

bool handle_detach(HandleObject* h, QueuedCall* out) {
    if (Py_TYPE(h) != HandleType || Py_REFCNT(h) != 1 || h->weakrefs || h->cancelled || !h->callback ||
        h->args || h->nargs > 1 || h->source_traceback || h->repr || h->threadsafe || !h->context)
        return false;
    out->callback = h->callback;
    out->arg = h->nargs ? h->inline_args[0] : nullptr;
    out->ctx = reinterpret_cast<uintptr_t>(h->context) | (h->ctx_shared ? 1 : 0);
    h->callback = h->inline_args[0] = h->context = nullptr;
    h->nargs = 0;
    return true;
}

HandleObject* queued_call_handle(QueuedCall* c, PyObject* loop, LoopCore* core) {
    HandleObject* h = alloc_handle(HandleType);
    if (!h) return nullptr;
    h->callback = c->callback;
    h->args = nullptr;
    h->inline_args[0] = c->arg;
    h->inline_args[1] = nullptr;
    h->nargs = c->arg ? 1 : 0;
    h->context = c->context();
    h->ctx_shared = c->shared();
    c->callback = c->arg = nullptr;
    c->ctx = 0;
    h->loop = Py_NewRef(loop);
    h->source_traceback = h->repr = h->weakrefs = nullptr;
    h->core = core;
    h->when = 0.0;
    h->seq = 0;
    h->heap_index = -1;
    h->running_in = 0;
    h->cancelled = h->threadsafe = false;
    PyObject_GC_Track(h);
    return h;
}

int queued_call_run(QueuedCall* c, PyObject* loop, LoopCore* core) {
    PyObject* res = nullptr;
    if (c->shared()) {
        PyObject* copy = PyContext_Copy(c->context());
        if (copy) {
            Py_DECREF(c->context());
            c->ctx = reinterpret_cast<uintptr_t>(copy);
        }
    }
    if (!c->shared()) res = call_in(c->context(), c->callback, &c->arg, c->arg ? 1 : 0);
    if (res) {
        Py_DECREF(res);
        return 0;
    }
    if (is_fatal_pending()) return -1;
    // The report names the handle: one is made for it, as it would have run.
    PyObject* exc = fetch_exception();
    QueuedCall parts{Py_NewRef(c->callback), Py_XNewRef(c->arg), c->ctx};
    Py_INCREF(c->context());
    HandleObject* h = queued_call_handle(&parts, loop, core);
    if (!h) {
        queued_call_clear(&parts);
        Py_DECREF(exc);
        PyErr_WriteUnraisable(loop);
        return 0;
    }
    restore_exception(exc);
    int r = report_failure(h);
    Py_DECREF(h);
    return r;
}

void handle_cancel(HandleObject* h) {
    if (h->cancelled) return;
    h->cancelled = true;
    // In debug mode the repr is kept (the callback goes): taken after the flag, as
    // asyncio does, so it says "cancelled".
    if (h->core && h->core->debug() && !h->repr) {
        h->repr = PyObject_Repr(reinterpret_cast<PyObject*>(h));
        if (!h->repr) PyErr_Clear();
    }
    if (h->heap_index >= 0 && h->core) h->core->timer_cancelled();
    Py_CLEAR(h->callback);
    clear_args(h);
}

// ---- Python-visible methods -------------------------------------------------------

static PyObject* Handle_cancel(PyObject* self, PyObject*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (h->threadsafe) wait_until_not_running(h);
    handle_cancel(h);
    Py_RETURN_NONE;
}

static PyObject* Handle_cancelled(PyObject* self, PyObject*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (h->threadsafe) wait_until_not_running(h);
    return PyBool_FromLong(h->cancelled);
}

static PyObject* Handle_get_context(PyObject* self, PyObject*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (!h->context) Py_RETURN_NONE;  // (only after the collector cleared it)
    if (own_context(h) < 0) return nullptr;
    return Py_NewRef(h->context);
}

static PyObject* Handle_get_context_attr(PyObject* self, void*) { return Handle_get_context(self, nullptr); }

static PyObject* Handle_run(PyObject* self, PyObject*) {
    if (handle_run(reinterpret_cast<HandleObject*>(self)) < 0) return nullptr;
    Py_RETURN_NONE;
}

static PyObject* TimerHandle_when(PyObject* self, PyObject*) {
    return PyFloat_FromDouble(reinterpret_cast<HandleObject*>(self)->when);
}

static PyObject* Handle_get_args(PyObject* self, void*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (h->args) return Py_NewRef(h->args);
    // None once cancel() dropped them (asyncio's _args = None); not while cancel() takes
    // debug mode's repr, which shows them
    if (h->cancelled && !h->callback) Py_RETURN_NONE;
    PyObject* t = PyTuple_New(h->nargs);
    if (!t) return nullptr;
    for (Py_ssize_t i = 0; i < h->nargs; i++) PyTuple_SET_ITEM(t, i, Py_NewRef(h->inline_args[i]));
    return t;
}

static PyObject* Handle_get_callback(PyObject* self, void*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    return Py_NewRef(h->callback ? h->callback : Py_None);
}

static PyObject* Handle_get_cancelled(PyObject* self, void*) {
    return PyBool_FromLong(reinterpret_cast<HandleObject*>(self)->cancelled);
}

static PyObject* Handle_get_source_traceback(PyObject* self, void*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    return Py_NewRef(h->source_traceback ? h->source_traceback : Py_None);
}

static int Handle_set_source_traceback(PyObject* self, PyObject* value, void*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    Py_XSETREF(h->source_traceback, value == Py_None ? nullptr : Py_XNewRef(value));
    return 0;
}

static PyObject* Handle_get_repr(PyObject* self, void*) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    return Py_NewRef(h->repr ? h->repr : Py_None);
}

static PyObject* TimerHandle_get_when(PyObject* self, void*) {
    return PyFloat_FromDouble(reinterpret_cast<HandleObject*>(self)->when);
}

static PyObject* TimerHandle_get_scheduled(PyObject* self, void*) {
    return PyBool_FromLong(reinterpret_cast<HandleObject*>(self)->heap_index >= 0);
}

static PyObject* Handle_repr(PyObject* self) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    if (h->repr) return Py_NewRef(h->repr);
    // asyncio's repr format lives in the Python face (pyloop/_handles.py).
    PyObject* mod = PyImport_ImportModule("pyloop._handles");
    if (!mod) return nullptr;
    PyObject* r = PyObject_CallMethod(mod, "handle_repr", "O", self);
    Py_DECREF(mod);
    return r;
}

int handle_traverse(HandleObject* h, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->inline_args[0]);
    Py_VISIT(h->inline_args[1]);
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->source_traceback);
    return 0;
}

static int Handle_traverse(PyObject* self, visitproc visit, void* arg) {
    return handle_traverse(reinterpret_cast<HandleObject*>(self), visit, arg);
}

static int Handle_clear(PyObject* self) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    Py_CLEAR(h->callback);
    clear_args(h);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    return 0;
}

static void Handle_dealloc(PyObject* self) {
    auto* h = reinterpret_cast<HandleObject*>(self);
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (h->weakrefs) PyObject_ClearWeakRefs(self);
    Handle_clear(self);
    if (tp == HandleType || tp == TimerHandleType) {
        if (g_free_count < kFreeListMax) g_free_list[g_free_count++] = h;
        else free_handle(self);
    } else {
        tp->tp_free(self);
    }
    Py_DECREF(tp);
}

static PyObject* Handle_new_from_python(PyTypeObject* type, PyObject*, PyObject*) {
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances directly; use the loop's "
                 "call_soon(), call_later() or call_at()", type->tp_name);
    return nullptr;
}

static PyObject* TimerHandle_richcompare(PyObject* a, PyObject* b, int op) {
    if (!PyObject_TypeCheck(b, TimerHandleType)) Py_RETURN_NOTIMPLEMENTED;
    auto* x = reinterpret_cast<HandleObject*>(a);
    auto* y = reinterpret_cast<HandleObject*>(b);
    if (op == Py_EQ || op == Py_NE) {
        bool eq = a == b;
        if (!eq && x->when == y->when && x->cancelled == y->cancelled) {
            int c = PyObject_RichCompareBool(x->callback ? x->callback : Py_None,
                                             y->callback ? y->callback : Py_None, Py_EQ);
            if (c < 0) return nullptr;
            if (c) {
                PyObject* xa = Handle_get_args(a, nullptr);
                PyObject* ya = xa ? Handle_get_args(b, nullptr) : nullptr;
                c = ya ? PyObject_RichCompareBool(xa, ya, Py_EQ) : -1;
                Py_XDECREF(xa);
                Py_XDECREF(ya);
                if (c < 0) return nullptr;
            }
            eq = c != 0;
        }
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    Py_RETURN_RICHCOMPARE(x->when, y->when, op);
}

static Py_hash_t TimerHandle_hash(PyObject* self) {
    PyObject* f = PyFloat_FromDouble(reinterpret_cast<HandleObject*>(self)->when);
    if (!f) return -1;
    Py_hash_t h = PyObject_Hash(f);
    Py_DECREF(f);
    return h;
}

static PyMethodDef Handle_methods[] = {
    {"cancel", Handle_cancel, METH_NOARGS, "Cancel the callback; no-op if already cancelled or run."},
    {"cancelled", Handle_cancelled, METH_NOARGS, "Return True if the callback was cancelled."},
    {"get_context", Handle_get_context, METH_NOARGS, "The contextvars.Context the callback runs in."},
    {"_run", Handle_run, METH_NOARGS, "Run the callback now (as asyncio.Handle._run)."},
    {nullptr, nullptr, 0, nullptr},
};

static PyGetSetDef Handle_getset[] = {
    {"_callback", Handle_get_callback, nullptr, nullptr, nullptr},
    {"_args", Handle_get_args, nullptr, nullptr, nullptr},
    {"_cancelled", Handle_get_cancelled, nullptr, nullptr, nullptr},
    {"_source_traceback", Handle_get_source_traceback, Handle_set_source_traceback, nullptr, nullptr},
    {"_repr", Handle_get_repr, nullptr, nullptr, nullptr},
    {"_context", Handle_get_context_attr, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

static PyMemberDef Handle_members[] = {
    {"_loop", T_OBJECT, offsetof(HandleObject, loop), READONLY, nullptr},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(HandleObject, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

static PyMethodDef TimerHandle_methods[] = {
    {"when", TimerHandle_when, METH_NOARGS, "The absolute time (loop.time()) the callback is scheduled for."},
    {nullptr, nullptr, 0, nullptr},
};

static PyGetSetDef TimerHandle_getset[] = {
    {"_when", TimerHandle_get_when, nullptr, nullptr, nullptr},
    {"_scheduled", TimerHandle_get_scheduled, nullptr, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_doc, const_cast<char*>("A callback scheduled with call_soon(), as asyncio.Handle.")},
    {Py_tp_dealloc, reinterpret_cast<void*>(Handle_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(Handle_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Handle_clear)},
    {Py_tp_repr, reinterpret_cast<void*>(Handle_repr)},
    {Py_tp_new, reinterpret_cast<void*>(Handle_new_from_python)},
    {Py_tp_methods, Handle_methods},
    {Py_tp_getset, Handle_getset},
    {Py_tp_members, Handle_members},
    {0, nullptr},
};

static PyType_Spec Handle_spec = {
    "pyloop._core.Handle", sizeof(HandleObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE, Handle_slots,
};

static PyType_Slot TimerHandle_slots[] = {
    {Py_tp_doc, const_cast<char*>("A callback scheduled with call_later()/call_at(), as asyncio.TimerHandle.")},
    {Py_tp_traverse, reinterpret_cast<void*>(Handle_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(Handle_clear)},
    {Py_tp_dealloc, reinterpret_cast<void*>(Handle_dealloc)},
    {Py_tp_richcompare, reinterpret_cast<void*>(TimerHandle_richcompare)},
    {Py_tp_hash, reinterpret_cast<void*>(TimerHandle_hash)},
    {Py_tp_methods, TimerHandle_methods},
    {Py_tp_getset, TimerHandle_getset},
    {0, nullptr},
};

static PyType_Spec TimerHandle_spec = {
    "pyloop._core.TimerHandle", sizeof(HandleObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, TimerHandle_slots,
};

int init_handle_types(PyObject* module) {
    g_contexts_shareable = check_context_layout();
    HandleType = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &Handle_spec, nullptr));
    if (!HandleType) return -1;
    TimerHandleType = reinterpret_cast<PyTypeObject*>(
        PyType_FromModuleAndSpec(module, &TimerHandle_spec, reinterpret_cast<PyObject*>(HandleType)));
    if (!TimerHandleType) return -1;
    g_uncounted_alloc = check_gc_header();
    if (PyModule_AddObjectRef(module, "Handle", reinterpret_cast<PyObject*>(HandleType)) < 0) return -1;
    if (PyModule_AddObjectRef(module, "TimerHandle", reinterpret_cast<PyObject*>(TimerHandleType)) < 0)
        return -1;
    return 0;
}

}  // namespace pyloop
