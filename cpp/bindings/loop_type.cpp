#include "bindings/loop_type.hpp"

#include <structmember.h>

#include <cmath>

namespace pyloop {

PyTypeObject* CoreLoopType = nullptr;
// asyncio.futures' and asyncio.tasks' namespaces: Future and Task are looked up there on
// every call, as asyncio's create_future/create_task do (code may swap them, e.g. for the
// pure-Python classes).
static PyObject* g_futures_dict = nullptr;
static PyObject* g_tasks_dict = nullptr;
static PyObject* g_str_Future = nullptr;
static PyObject* g_str_Task = nullptr;
static PyObject* g_loop_kwnames = nullptr;  // ("loop",)
static PyObject* g_str_context = nullptr;
static PyObject* g_str_task_factory = nullptr;
static PyObject* g_str_create_task_slow = nullptr;
static PyObject* g_str_name = nullptr;

static inline LoopCore* CORE(PyObject* self) { return reinterpret_cast<CoreLoopObject*>(self)->core; }

static int check_closed(LoopCore* core) {
    if (core->is_closed()) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

// Parses the keyword-only `context=` of the call_* methods.
static int parse_context(PyObject* kwnames, PyObject* const* args, Py_ssize_t nargs, const char* method,
                         PyObject** context) {
    *context = nullptr;
    if (!kwnames) return 0;
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject* key = PyTuple_GET_ITEM(kwnames, i);
        if (key == g_str_context || PyUnicode_Compare(key, g_str_context) == 0) {
            *context = args[nargs + i];
        } else {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", method, key);
            return -1;
        }
    }
    return 0;
}

// Debug mode: asyncio's thread and callback checks, and the source traceback.
static int debug_checks(PyObject* self, PyObject* callback, const char* method, bool check_thread) {
    PyObject* r = PyObject_CallMethod(self, "_check_callback_debug", "Osi", callback, method, check_thread ? 1 : 0);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

static void attach_source_traceback(PyObject* self, HandleObject* h) {
    PyObject* tb = PyObject_CallMethod(self, "_source_traceback_here", nullptr);
    if (!tb) {
        PyErr_Clear();
        return;
    }
    Py_XSETREF(h->source_traceback, tb);
}

static PyObject* schedule_soon(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                               const char* method, bool threadsafe) {
    LoopCore* core = CORE(self);
    PyObject* context;
    if (parse_context(kwnames, args, nargs, method, &context) < 0) return nullptr;
    if (nargs < 1) {
        PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: 'callback'", method);
        return nullptr;
    }
    if (check_closed(core) < 0) return nullptr;
    if (core->debug() && debug_checks(self, args[0], method, !threadsafe) < 0) return nullptr;
    if (threadsafe) {
        core->throttle_foreign_thread();
        if (check_closed(core) < 0) return nullptr;  // closed while we waited
    }
    HandleObject* h = handle_new(HandleType, args[0], args + 1, nargs - 1, context, self, core);
    if (!h) return nullptr;
    if (core->debug()) attach_source_traceback(self, h);
    // Python ran since the check above (the debug checks, the traceback, a collection
    // in an allocation) and may have let the loop's thread close it: check again, with
    // no Python code between this check and the wakeup, which must never reach libuv's
    // async handle after close() (libuv aborts the process).
    if (check_closed(core) < 0) {
        Py_DECREF(h);
        return nullptr;
    }
    h->threadsafe = kThreadSafeHandles && threadsafe;
    Py_INCREF(h);
    core->push_ready(h);
    if (threadsafe) core->wakeup();
    return reinterpret_cast<PyObject*>(h);
}

static PyObject* CoreLoop_call_soon(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    return schedule_soon(self, args, nargs, kwnames, "call_soon", false);
}

static PyObject* CoreLoop_call_soon_threadsafe(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                                               PyObject* kwnames) {
    return schedule_soon(self, args, nargs, kwnames, "call_soon_threadsafe", true);
}

static PyObject* schedule_at(PyObject* self, double when, PyObject* const* args, Py_ssize_t nargs,
                             PyObject* context, const char* method) {
    LoopCore* core = CORE(self);
    if (check_closed(core) < 0) return nullptr;
    if (core->debug() && debug_checks(self, args[0], method, true) < 0) return nullptr;
    HandleObject* h = handle_new(TimerHandleType, args[0], args + 1, nargs - 1, context, self, core);
    if (!h) return nullptr;
    if (core->debug()) attach_source_traceback(self, h);
    h->when = when;
    Py_INCREF(h);
    core->push_timer(h);
    return reinterpret_cast<PyObject*>(h);
}

// A time that is neither a float nor an int: asyncio takes what its own arithmetic takes
// (call_later: `self.time() + delay`; call_at: `when` compared with and subtracted from
// the loop's time), so an object with only __float__ or __index__ is a TypeError there,
// while Fraction, numpy scalars and the like work. -1 with the exception set.
static int exotic_time(PyObject* o, bool is_when) {
    PyObject* now = PyFloat_FromDouble(LoopCore::now());
    if (!now) return -1;
    int ok = -1;
    if (is_when) {
        int ge = PyObject_RichCompareBool(o, now, Py_GE);
        PyObject* diff = ge < 0 ? nullptr : PyNumber_Subtract(o, now);
        ok = diff ? 0 : -1;
        Py_XDECREF(diff);
    } else {
        PyObject* sum = PyNumber_Add(now, o);
        ok = sum ? 0 : -1;
        Py_XDECREF(sum);
    }
    Py_DECREF(now);
    return ok;
}

// The arguments of call_later(delay, ...) and call_at(when, ...) (is_call_at: which
// one; their times are checked as asyncio's arithmetic on each takes them): the time as
// a double, the callback and its arguments, context=. Returns -1 with TypeError set.
static int parse_timer_args(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, const char* method,
                            const char* time_name, const char* none_message, bool is_call_at, double* value,
                            PyObject** context) {
    if (parse_context(kwnames, args, nargs, method, context) < 0) return -1;
    if (nargs < 2) {
        if (nargs == 0)
            PyErr_Format(PyExc_TypeError, "%s() missing 2 required positional arguments: '%s' and 'callback'",
                         method, time_name);
        else
            PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: 'callback'", method);
        return -1;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, none_message);
        return -1;
    }
    if (!PyFloat_Check(args[0]) && !PyLong_Check(args[0]) && exotic_time(args[0], is_call_at) < 0) return -1;
    *value = PyFloat_AsDouble(args[0]);
    if (*value == -1.0 && PyErr_Occurred()) {
        // An int too large for a double: asyncio keeps the int, which compares as
        // later (or earlier) than any time.
        if (!is_call_at || !PyLong_Check(args[0]) || !PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        PyObject* zero = PyLong_FromLong(0);
        int positive = zero ? PyObject_RichCompareBool(args[0], zero, Py_GT) : -1;
        Py_XDECREF(zero);
        if (positive < 0) return -1;
        *value = positive ? HUGE_VAL : -HUGE_VAL;
    }
    return 0;
}

static PyObject* CoreLoop_call_later(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* context;
    double delay;
    if (parse_timer_args(args, nargs, kwnames, "call_later", "delay", "delay must not be None", false, &delay, &context) < 0)
        return nullptr;
    // asyncio implements call_later with call_at (self.time() + delay: a patched
    // loop.time counts), and its debug checks name call_at.
    LoopCore* core = CORE(self);
    core->refresh_clock();
    return schedule_at(self, core->clock() + delay, args + 1, nargs - 1, context, "call_at");
}

static PyObject* CoreLoop_call_at(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    PyObject* context;
    double when;
    if (parse_timer_args(args, nargs, kwnames, "call_at", "when", "when cannot be None", true, &when, &context) < 0)
        return nullptr;
    return schedule_at(self, when, args + 1, nargs - 1, context, "call_at");
}

static PyObject* CoreLoop_time(PyObject*, PyObject*) { return PyFloat_FromDouble(LoopCore::now()); }

static PyObject* CoreLoop_get_debug(PyObject* self, PyObject*) { return PyBool_FromLong(CORE(self)->debug()); }

static PyObject* CoreLoop_set_debug_flag(PyObject* self, PyObject* arg) {
    int v = PyObject_IsTrue(arg);
    if (v < 0) return nullptr;
    CORE(self)->set_debug(v != 0);
    Py_RETURN_NONE;
}

// The class named `name` in a module's namespace, borrowed; nullptr with AttributeError.
static PyObject* current_class(PyObject* dict, PyObject* name, const char* module) {
    PyObject* cls = PyDict_GetItemWithError(dict, name);
    if (!cls && !PyErr_Occurred())
        PyErr_Format(PyExc_AttributeError, "module '%s' has no attribute '%U'", module, name);
    return cls;
}

// type(*args, loop=self). asyncio's C Future and Task have no vectorcall: a call with
// keyword names makes a dict of them per call (5% of TaskGroup's time with 200k tasks).
// For those two, the call goes through one kwargs dict kept for it, whose "loop" is
// self during the call only (their __init__ reads its arguments before it runs any
// Python code, and keeps neither the dict nor its items).
static PyObject* g_c_future_type = nullptr;  // _asyncio.Future, or nullptr
static PyObject* g_c_task_type = nullptr;
static PyObject* g_loop_kwargs = nullptr;    // {"loop": None} between calls

static PyObject* call_with_loop(PyObject* type, PyObject* self, PyObject* arg) {
    if (!g_loop_kwargs || (type != g_c_future_type && type != g_c_task_type)) {
        PyObject* with_arg[3] = {nullptr, arg, self};
        PyObject* without[2] = {nullptr, self};
        if (arg) return PyObject_Vectorcall(type, with_arg + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, g_loop_kwnames);
        return PyObject_Vectorcall(type, without + 1, 0 | PY_VECTORCALL_ARGUMENTS_OFFSET, g_loop_kwnames);
    }
    PyObject* args = arg ? PyTuple_Pack(1, arg) : PyTuple_New(0);
    if (!args) return nullptr;
    PyObject* key = PyTuple_GET_ITEM(g_loop_kwnames, 0);
    PyObject* r = nullptr;
    if (PyDict_SetItem(g_loop_kwargs, key, self) == 0) r = PyObject_Call(type, args, g_loop_kwargs);
    Py_DECREF(args);
    PyObject* exc = r ? nullptr : fetch_exception();
    if (PyDict_SetItem(g_loop_kwargs, key, Py_None) < 0) PyErr_Clear();  // (an existing key: cannot fail)
    if (exc) restore_exception(exc);
    return r;
}

static PyObject* CoreLoop_create_future(PyObject* self, PyObject*) {
    PyObject* future_type = current_class(g_futures_dict, g_str_Future, "asyncio.futures");
    if (!future_type) return nullptr;
    Py_INCREF(future_type);  // the namespace may change while it runs
    PyObject* r = call_with_loop(future_type, self, nullptr);
    Py_DECREF(future_type);
    return r;
}

// The keyword names of Task(coro, <the caller's keywords>, loop=self): a new reference.
// A call site passes the same tuple every time (its code's constant), so the names for
// the first few tuples seen are made once (TaskGroup.create_task passes name=: a
// tuple made per task was an allocation the collector counts, per task).
static PyObject* task_kwnames(PyObject* kwnames) {
    constexpr int kCached = 8;
    static PyObject* seen[kCached];  // the callers' tuples (owned: their identity is the key)
    static PyObject* made[kCached];
    static int nseen = 0;
    for (int i = 0; i < nseen; i++)
        if (seen[i] == kwnames) return Py_NewRef(made[i]);
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    PyObject* names = PyTuple_New(nkw + 1);
    if (!names) return nullptr;
    for (Py_ssize_t i = 0; i < nkw; i++) PyTuple_SET_ITEM(names, i, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
    PyTuple_SET_ITEM(names, nkw, Py_NewRef(PyTuple_GET_ITEM(g_loop_kwnames, 0)));
    if (nseen < kCached) {
        seen[nseen] = Py_NewRef(kwnames);
        made[nseen++] = Py_NewRef(names);
    }
    return names;
}

// create_task without a task factory (the common case) builds the asyncio.Task here;
// with a factory, or in debug mode, the Python face's _create_task_slow does it.
static PyObject* CoreLoop_create_task(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    LoopCore* core = CORE(self);
    if (check_closed(core) < 0) return nullptr;
    auto* obj = reinterpret_cast<CoreLoopObject*>(self);
    PyObject* factory = obj->factory_member && obj->task_factory ? Py_NewRef(obj->task_factory)
                                                                  : PyObject_GetAttr(self, g_str_task_factory);
    if (!factory) return nullptr;
    bool fast = factory == Py_None && !core->debug() && nargs == 1;
    Py_DECREF(factory);
    if (!fast) {
        PyObject* method = PyObject_GetAttr(self, g_str_create_task_slow);
        if (!method) return nullptr;
        PyObject* r = PyObject_Vectorcall(method, args, static_cast<size_t>(nargs), kwnames);
        Py_DECREF(method);
        return r;
    }
    PyObject* task_type = current_class(g_tasks_dict, g_str_Task, "asyncio.tasks");
    if (!task_type) return nullptr;
    Py_INCREF(task_type);  // the namespace may change while it runs
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    // name=None and context=None are Task's defaults (TaskGroup passes both): as if not
    // given. (3.10's Task takes no context: there it is refused as asyncio refuses it.)
    constexpr bool kTaskContext = PY_VERSION_HEX >= 0x030B0000;
    bool defaults_only = true;
    for (Py_ssize_t i = 0; i < nkw && defaults_only; i++) {
        PyObject* kw = PyTuple_GET_ITEM(kwnames, i);
        defaults_only = args[1 + i] == Py_None &&
                        (kw == g_str_name || PyUnicode_Compare(kw, g_str_name) == 0 ||
                         (kTaskContext && (kw == g_str_context || PyUnicode_Compare(kw, g_str_context) == 0)));
    }
    if (defaults_only) {
        PyObject* r = call_with_loop(task_type, self, args[0]);
        Py_DECREF(task_type);
        return r;
    }
    // Task(coro, <the caller's keywords>, loop=self)
    PyObject* names = task_kwnames(kwnames);
    if (!names) {
        Py_DECREF(task_type);
        return nullptr;
    }
    PyObject* argv[8];
    PyObject** heap_argv = nullptr;
    PyObject** av = argv;
    if (nkw + 2 > 8) {
        heap_argv = static_cast<PyObject**>(PyMem_Malloc(sizeof(PyObject*) * static_cast<size_t>(nkw + 2)));
        if (!heap_argv) {
            Py_DECREF(names);
            Py_DECREF(task_type);
            return PyErr_NoMemory();
        }
        av = heap_argv;
    }
    av[0] = args[0];
    for (Py_ssize_t i = 0; i < nkw; i++) av[1 + i] = args[1 + i];
    av[1 + nkw] = self;
    PyObject* r = PyObject_Vectorcall(task_type, av, 1, names);
    Py_DECREF(task_type);
    Py_DECREF(names);
    if (heap_argv) PyMem_Free(heap_argv);
    return r;
}

static PyObject* CoreLoop_is_closed(PyObject* self, PyObject*) { return PyBool_FromLong(CORE(self)->is_closed()); }

static PyObject* CoreLoop_io_peek_mechanism(PyObject* self, PyObject*) {
    return PyUnicode_FromString(CORE(self)->io_peek_mechanism());
}

static PyObject* CoreLoop_is_running(PyObject* self, PyObject*) {
    return PyBool_FromLong(CORE(self)->is_running());
}

static PyObject* CoreLoop_stop(PyObject* self, PyObject*) {
    CORE(self)->stop();
    Py_RETURN_NONE;
}

static PyObject* CoreLoop_run(PyObject* self, PyObject* arg) {
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    if (CORE(self)->run(fd) < 0) return nullptr;
    Py_RETURN_NONE;
}

static PyObject* CoreLoop_close_core(PyObject* self, PyObject*) {
    if (CORE(self)->close() < 0) return nullptr;
    Py_RETURN_NONE;
}

static PyObject* CoreLoop_new(PyTypeObject* type, PyObject*, PyObject*) {
    auto* self = reinterpret_cast<CoreLoopObject*>(type->tp_alloc(type, 0));
    if (!self) return nullptr;
    self->core = new LoopCore(reinterpret_cast<PyObject*>(self));
    if (self->core->init() < 0) {
        Py_DECREF(self);
        return nullptr;
    }
    // A subclass that overrides time() makes the timers follow its clock, as asyncio's.
    PyObject* mine = PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "time");
    PyObject* base = mine ? PyObject_GetAttrString(reinterpret_cast<PyObject*>(CoreLoopType), "time") : nullptr;
    if (!base) {
        Py_XDECREF(mine);
        Py_DECREF(self);
        return nullptr;
    }
    self->core->set_subclass_time(mine != base);
    Py_DECREF(mine);
    Py_DECREF(base);
    self->task_factory = Py_NewRef(Py_None);
    mine = PyObject_GetAttr(reinterpret_cast<PyObject*>(type), g_str_task_factory);
    base = mine ? PyObject_GetAttr(reinterpret_cast<PyObject*>(CoreLoopType), g_str_task_factory) : nullptr;
    if (!base) {
        Py_XDECREF(mine);
        Py_DECREF(self);
        return nullptr;
    }
    self->factory_member = mine == base;
    Py_DECREF(mine);
    Py_DECREF(base);
    return reinterpret_cast<PyObject*>(self);
}

static int CoreLoop_traverse(PyObject* self, visitproc visit, void* arg) {
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(reinterpret_cast<CoreLoopObject*>(self)->task_factory);
    LoopCore* core = CORE(self);
    return core ? core->traverse(visit, arg) : 0;
}

static int CoreLoop_clear(PyObject* self) {
    Py_CLEAR(reinterpret_cast<CoreLoopObject*>(self)->task_factory);
    LoopCore* core = CORE(self);
    if (core) core->clear_all();
    return 0;
}

static void CoreLoop_dealloc(PyObject* self) {
    PyTypeObject* tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    auto* obj = reinterpret_cast<CoreLoopObject*>(self);
    delete obj->core;  // closes the uv loop if the user never did
    obj->core = nullptr;
    Py_CLEAR(obj->task_factory);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject* CoreLoop_get_current_handle(PyObject* self, void*) {
    HandleObject* h = CORE(self)->current_handle();
    return Py_NewRef(h ? reinterpret_cast<PyObject*>(h) : Py_None);
}

static PyMemberDef CoreLoop_members[] = {
    {"_task_factory", T_OBJECT_EX, offsetof(CoreLoopObject, task_factory), 0, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

static PyGetSetDef CoreLoop_getset[] = {
    {"_current_handle", CoreLoop_get_current_handle, nullptr, "The handle running now (debug mode only).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

static PyMethodDef CoreLoop_methods[] = {
    {"call_soon", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(CoreLoop_call_soon)),
     METH_FASTCALL | METH_KEYWORDS, "call_soon(callback, *args, context=None) -> Handle"},
    {"call_soon_threadsafe",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(CoreLoop_call_soon_threadsafe)),
     METH_FASTCALL | METH_KEYWORDS, "call_soon_threadsafe(callback, *args, context=None) -> Handle"},
    {"call_later", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(CoreLoop_call_later)),
     METH_FASTCALL | METH_KEYWORDS, "call_later(delay, callback, *args, context=None) -> TimerHandle"},
    {"call_at", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(CoreLoop_call_at)),
     METH_FASTCALL | METH_KEYWORDS, "call_at(when, callback, *args, context=None) -> TimerHandle"},
    {"time", CoreLoop_time, METH_NOARGS, "The loop's clock: time.monotonic()."},
    {"get_debug", CoreLoop_get_debug, METH_NOARGS, "Is debug mode on?"},
    {"_set_debug_flag", CoreLoop_set_debug_flag, METH_O, nullptr},
    {"create_future", CoreLoop_create_future, METH_NOARGS, "A new asyncio.Future attached to this loop."},
    {"create_task", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(CoreLoop_create_task)),
     METH_FASTCALL | METH_KEYWORDS, "create_task(coro, *, name=None, context=None) -> asyncio.Task"},
    {"is_closed", CoreLoop_is_closed, METH_NOARGS, "Has close() been called?"},
    {"_io_peek_mechanism", CoreLoop_io_peek_mechanism, METH_NOARGS,
     "What tells an iteration its poll would find nothing: 'io_uring', 'epoll' or 'off' (core/io_peek.hpp)."},
    {"is_running", CoreLoop_is_running, METH_NOARGS, "Is the loop running?"},
    {"stop", CoreLoop_stop, METH_NOARGS, "Stop the loop after the callbacks that are ready now have run."},
    {"_run_core", CoreLoop_run, METH_O, nullptr},
    {"_close_core", CoreLoop_close_core, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

static PyType_Slot CoreLoop_slots[] = {
    {Py_tp_doc, const_cast<char*>("The C++ core of pyloop.Loop.")},
    {Py_tp_new, reinterpret_cast<void*>(CoreLoop_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(CoreLoop_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(CoreLoop_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(CoreLoop_clear)},
    {Py_tp_methods, CoreLoop_methods},
    {Py_tp_getset, CoreLoop_getset},
    {Py_tp_members, CoreLoop_members},
    {0, nullptr},
};

static PyType_Spec CoreLoop_spec = {
    "pyloop._core.CoreLoop", sizeof(CoreLoopObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, CoreLoop_slots,
};

int init_loop_type(PyObject* module) {
    PyObject* futures = PyImport_ImportModule("asyncio.futures");
    if (!futures) return -1;
    g_futures_dict = Py_NewRef(PyModule_GetDict(futures));
    Py_DECREF(futures);
    PyObject* tasks = PyImport_ImportModule("asyncio.tasks");
    if (!tasks) return -1;
    g_tasks_dict = Py_NewRef(PyModule_GetDict(tasks));
    Py_DECREF(tasks);
    g_str_Future = PyUnicode_InternFromString("Future");
    g_str_Task = PyUnicode_InternFromString("Task");
    if (!g_str_Future || !g_str_Task) return -1;
    g_str_task_factory = PyUnicode_InternFromString("_task_factory");
    g_str_create_task_slow = PyUnicode_InternFromString("_create_task_slow");
    if (!g_str_task_factory || !g_str_create_task_slow) return -1;
    g_loop_kwnames = Py_BuildValue("(s)", "loop");
    g_str_name = PyUnicode_InternFromString("name");
    if (!g_loop_kwnames || !g_str_name) return -1;
    g_loop_kwargs = PyDict_New();
    if (!g_loop_kwargs || PyDict_SetItem(g_loop_kwargs, PyTuple_GET_ITEM(g_loop_kwnames, 0), Py_None) < 0) return -1;
    if (PyObject* c_asyncio = PyImport_ImportModule("_asyncio")) {
        g_c_future_type = PyObject_GetAttrString(c_asyncio, "Future");
        g_c_task_type = PyObject_GetAttrString(c_asyncio, "Task");
        Py_DECREF(c_asyncio);
        if (!g_c_future_type || !g_c_task_type) PyErr_Clear();
    } else {
        PyErr_Clear();  // (a Python built without it: asyncio's Python classes, called as any other)
    }
    g_str_context = PyUnicode_InternFromString("context");
    if (!g_loop_kwnames || !g_str_context) return -1;
    CoreLoopType = reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &CoreLoop_spec, nullptr));
    if (!CoreLoopType) return -1;
    return PyModule_AddObjectRef(module, "CoreLoop", reinterpret_cast<PyObject*>(CoreLoopType));
}

}  // namespace pyloop
