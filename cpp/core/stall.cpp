#include "core/stall.hpp"

#include "core/loop.hpp"
#include "uv/pyutil.hpp"

#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h>  // (PyFrame_GetBack: in Python.h from 3.11)
#endif

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <new>

namespace pyloop {

namespace {

// pyloop._stall.<name>(*args): the messages are made and logged in Python.
PyObject* call_stall(const char* name, const char* fmt, ...) {
    PyObject* mod = PyImport_ImportModule("pyloop._stall");
    if (!mod) return nullptr;
    PyObject* fn = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    if (!fn) return nullptr;
    va_list va;
    va_start(va, fmt);
    PyObject* args = Py_VaBuildValue(fmt, va);
    va_end(va);
    PyObject* r = args ? PyObject_CallObject(fn, args) : nullptr;
    Py_XDECREF(args);
    Py_DECREF(fn);
    return r;
}

// The loop thread's Python stack as it is now, innermost last: a list of (filename,
// line, function). C calls only: no Python code runs, so the GIL is not given up while
// the frames are read and the loop thread cannot move on.
PyObject* capture_stack(unsigned long thread_id) {
    PyObject* current_frames = PySys_GetObject("_current_frames");  // borrowed
    if (!current_frames) {
        PyErr_SetString(PyExc_RuntimeError, "sys._current_frames is missing");
        return nullptr;
    }
    PyObject* frames = PyObject_CallNoArgs(current_frames);
    if (!frames) return nullptr;
    PyObject* key = PyLong_FromUnsignedLong(thread_id);
    PyObject* frame = key ? PyDict_GetItemWithError(frames, key) : nullptr;  // borrowed
    Py_XDECREF(key);
    PyObject* out = PyErr_Occurred() ? nullptr : PyList_New(0);
    auto* f = reinterpret_cast<PyFrameObject*>(Py_XNewRef(frame));
    for (int depth = 0; out && f && depth < 200; depth++) {
        PyCodeObject* code = PyFrame_GetCode(f);
        // The line as frame.f_lineno gives it: Python 3.15's PyFrame_GetLineNumber() can
        // answer a stale line for a frame another thread is running (seen: the line its
        // function began at), where f_lineno reads where it is now.
        PyObject* line = PyObject_GetAttrString(reinterpret_cast<PyObject*>(f), "f_lineno");
        PyObject* item = line ? Py_BuildValue("(OOO)", code->co_filename, line, code->co_name) : nullptr;
        Py_XDECREF(line);
        Py_DECREF(code);
        if (!item || PyList_Append(out, item) < 0) Py_CLEAR(out);
        Py_XDECREF(item);
        PyFrameObject* back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    Py_DECREF(frames);
    if (out && PyList_Reverse(out) < 0) Py_CLEAR(out);
    return out;
}

bool finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

}  // namespace

StallWatch::~StallWatch() {
    Worker* w = worker_;
    worker_ = nullptr;
    if (w && w->pid == getpid()) {  // (run_ended() stopped it already, unless a run broke off)
        {
            std::lock_guard<std::mutex> lk(w->mu);
            w->stop = true;
        }
        w->cv.notify_all();
        if (PyGILState_Check()) {  // it may be waiting for the GIL
            Py_BEGIN_ALLOW_THREADS
            w->thread.join();
            Py_END_ALLOW_THREADS
        } else {
            w->thread.join();
        }
        delete w;
    }
    Py_CLEAR(desc_);
}

void StallWatch::clear() { Py_CLEAR(desc_); }

int StallWatch::set_threshold(double seconds) {
    if (!(seconds >= 0) || std::isinf(seconds)) {
        PyErr_SetString(PyExc_ValueError, "the stall threshold must be a positive number of seconds, or None");
        return -1;
    }
    threshold_.store(seconds, std::memory_order_relaxed);
    on_ = seconds > 0;
    if (running_ && on_ && !own_worker()) start();
    else if (!on_ && worker_) stop();
    return 0;
}

StallWatch::Worker* StallWatch::own_worker() {
    if (worker_ && worker_->pid != getpid()) worker_ = nullptr;  // the parent's: its thread is not here
    return worker_;
}

void StallWatch::run_started(unsigned long thread_id) {
    running_ = true;
    loop_thread_ = thread_id;
    if (!on_) return;
    if (Worker* w = own_worker()) {
        {
            std::lock_guard<std::mutex> lk(w->mu);
            w->active = true;
        }
        w->cv.notify_all();
    } else {
        start();
    }
}

void StallWatch::run_ended() {
    idle();
    running_ = false;
    if (Worker* w = own_worker()) {
        std::lock_guard<std::mutex> lk(w->mu);
        w->active = false;  // it goes to sleep at its next look
    }
}

void StallWatch::shutdown() {
    if (worker_) stop();
}

void StallWatch::start() {
    own_worker();
    auto* w = new (std::nothrow) Worker;
    if (!w) return;  // no watch (the loop runs on; set_stall_threshold() again retries)
    w->pid = getpid();
    try {
        w->thread = std::thread([this, w] { thread_main(w); });
    } catch (...) {
        delete w;  // no thread to be had: no watch, as above
        return;
    }
    pthread_setname_np(w->thread.native_handle(), "pyloop-stall");  // (what ps and the thread diagram show)
    worker_ = w;
}

void StallWatch::stop() {
    Worker* w = worker_;
    worker_ = nullptr;
    if (!w || w->pid != getpid()) return;  // a forked child: the thread is the parent's
    {
        std::lock_guard<std::mutex> lk(w->mu);
        w->stop = true;
    }
    w->cv.notify_all();
    // It may be waiting for the GIL to report: let it have it, and finish.
    Py_BEGIN_ALLOW_THREADS
    w->thread.join();
    Py_END_ALLOW_THREADS
    delete w;
}

void StallWatch::thread_main(Worker* w) {
    std::unique_lock<std::mutex> lk(w->mu);
    uint64_t seen = state_.load(std::memory_order_acquire);
    double since = LoopCore::now();
    while (!w->stop) {
        if (!w->active) {  // the loop stopped: sleep until it runs again (or the end)
            w->cv.wait(lk, [w] { return w->stop || w->active; });
            seen = state_.load(std::memory_order_acquire);
            since = LoopCore::now();
            continue;
        }
        double th = threshold_.load(std::memory_order_relaxed);
        double interval = std::clamp(th / 8, 0.001, 0.025);
        w->cv.wait_for(lk, std::chrono::duration<double>(interval));
        if (w->stop) break;
        uint64_t s = state_.load(std::memory_order_acquire);
        double t = LoopCore::now();
        if (s != seen) {
            seen = s;
            since = t;  // it began after the previous look: what is measured is never more
            continue;
        }
        if (!(s & 1) || th <= 0 || t - since < th || stalled_.load(std::memory_order_relaxed) == s) continue;
        stall_start_ = since;
        stalled_.store(s, std::memory_order_release);
        lk.unlock();
        report_blocked(w, s, t - since);
        lk.lock();
    }
}

void StallWatch::report_blocked(Worker* w, uint64_t s, double elapsed) {
    if (finalizing()) return;
    PyGILState_STATE g = PyGILState_Ensure();
    bool stop = stopping(w);
    // Still the same callback? (C code that held the GIL until it returned is logged by
    // the loop thread instead.) While this thread holds the GIL, what_ cannot go.
    if (!stop && state_.load(std::memory_order_acquire) == s) {
        elapsed = std::max(elapsed, LoopCore::now() - stall_start_);
        // The message's Python code may give the GIL up (its I/O): the loop thread may
        // then go on in the callback, but waits in ended() for the message to be out.
        warned_ = s;
        reporting_ = true;
        PyObject* stack = capture_stack(loop_thread_);
        PyObject* r = stack ? call_stall("report_blocked", "(OOOdd)", core_->py_loop(), what_ ? what_ : Py_None,
                                         stack, elapsed, threshold_.load(std::memory_order_relaxed))
                            : nullptr;
        Py_XDECREF(stack);
        if (r) Py_XSETREF(desc_, r);
        else PyErr_WriteUnraisable(core_->py_loop());
        reporting_ = false;
    }
    PyGILState_Release(g);
}

void StallWatch::ended(PyObject* what) {
    uint64_t s = stalled_.load(std::memory_order_acquire);
    ended_ = s;
    double total = LoopCore::now() - stall_start_;
    PyObject* exc = fetch_exception();  // (a callback that failed: its exception waits)
    while (reporting_) {  // the watch thread's message first
        Py_BEGIN_ALLOW_THREADS
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        Py_END_ALLOW_THREADS
    }
    PyObject* r = call_stall("report_ended", "(OOdOO)", core_->py_loop(), what ? what : Py_None, total,
                             warned_ == s ? Py_True : Py_False, desc_ && warned_ == s ? desc_ : Py_None);
    if (r) Py_DECREF(r);
    else PyErr_WriteUnraisable(core_->py_loop());
    if (exc) restore_exception(exc);
}

}  // namespace pyloop
