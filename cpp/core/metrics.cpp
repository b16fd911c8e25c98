// loop.metrics(): the report LoopCore gives of its counters (see core/metrics.hpp).
#include "core/loop.hpp"

namespace pyloop {

const char* const kHandleKindNames[kKindCount] = {"poller", "tcp", "unix", "udp",
                                                 "pipe",   "process", "sock", "internal"};

void LoopMetrics::timed_one(PyObject* handle, double d) {
    if (d <= slowest) return;
    // Rare (a new maximum), and only in debug mode: the repr now, while the callback
    // and its arguments are what they were when it ran. Taken before the time is set:
    // a repr may run Python code that reads the metrics (or starts a new period), which
    // must then see a time and a repr of the same callback.
    PyObject* r = PyObject_Repr(handle);
    if (!r) PyErr_Clear();
    if (d <= slowest) {  // that code ran a slower callback meanwhile
        Py_XDECREF(r);
        return;
    }
    slowest = d;
    slowest_count = 1;
    Py_XSETREF(slowest_repr, r);
}

namespace {

// Sets d[key] = value (a new reference, stolen); false with an exception set.
bool put(PyObject* d, const char* key, PyObject* value) {
    if (!value) return false;
    int r = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return r == 0;
}

PyObject* ratio(double num, double den) {
    if (!(den > 0)) Py_RETURN_NONE;
    double v = num / den;
    return PyFloat_FromDouble(v < 0 ? 0 : v > 1 ? 1 : v);
}

}  // namespace

PyObject* LoopCore::report_metrics() {
    LoopMetrics& m = metrics_;
    double t = now();
    double running = m.run_time + (running_ && m.run_started > 0 ? t - m.run_started : 0);
    // Asked from another thread while the loop waits in the poll: the wait so far is idle.
    double idle = m.idle_time + (m.idle_since > 0 ? t - m.idle_since : 0);
    if (idle > running) idle = running;
    double d_running = running - m.last_running, d_idle = idle - m.last_idle;

    uint64_t kinds[kKindCount] = {};
    fdw_.count_kinds(kinds);
    for (auto& kv : tracked_) kinds[kv.second.kind]++;
    size_t timers = heap_.size() - std::min(heap_.size(), timer_cancelled_count_);

    PyObject* d = PyDict_New();
    if (!d) return nullptr;
    PyObject* handles = PyDict_New();
    bool ok = handles != nullptr;
    for (int k = 0; ok && k < kKindInternal; k++)
        ok = put(handles, kHandleKindNames[k], PyLong_FromUnsignedLongLong(kinds[k]));
    ok = ok && put(handles, "signal", PyLong_FromSize_t(signals_.size()));
    ok = ok && put(d, "utilization", ratio(running - idle, running)) &&
         put(d, "utilization_since_last", ratio(d_running - d_idle, d_running)) &&
         put(d, "running_time", PyFloat_FromDouble(running)) &&
         put(d, "busy_time", PyFloat_FromDouble(running - idle)) &&
         put(d, "idle_time", PyFloat_FromDouble(idle)) &&
         put(d, "iterations", PyLong_FromUnsignedLongLong(m.iterations)) &&
         put(d, "callbacks", PyLong_FromUnsignedLongLong(m.callbacks)) &&
         put(d, "ready", PyLong_FromSize_t(ready_.size())) &&
         put(d, "timers_pending", PyLong_FromSize_t(timers)) &&
         put(d, "handles", Py_XNewRef(handles)) &&
         put(d, "bytes_read", PyLong_FromUnsignedLongLong(m.bytes_read)) &&
         put(d, "bytes_written", PyLong_FromUnsignedLongLong(m.bytes_written)) &&
         put(d, "lookups", PyLong_FromUnsignedLongLong(m.lookups)) &&
         put(d, "lookups_pending", PyLong_FromSize_t(pool_reqs_.size())) &&
         put(d, "slowest_callback", PyFloat_FromDouble(m.slowest)) &&
         put(d, "slowest_callback_group", PyLong_FromUnsignedLong(m.slowest_count)) &&
         put(d, "slowest_callback_repr", Py_NewRef(m.slowest_repr ? m.slowest_repr : Py_None));
    Py_XDECREF(handles);
    if (!ok) {
        Py_DECREF(d);
        return nullptr;
    }
    m.last_running = running;
    m.last_idle = idle;
    m.slowest = 0;
    m.slowest_count = 0;
    Py_CLEAR(m.slowest_repr);
    return d;
}

}  // namespace pyloop
