// loop.metrics(): the report LoopCore gives of its counters (see core/metrics.hpp).
#include "core/loop.hpp"

namespace pyloop {

const char* const kHandleKindNames[kKindCount] = {"poller", "tcp", "unix", "udp",
                                                 "pipe",   "process", "sock", "internal"};

// Both below are rare (a new slowest) and run Python code: they take the name (and
// repr) now, while what the callback ran is alive and as it was, and set the times
// after. That code may read the metrics (or start a new period), which must then see
// a time and a name of the same callback; if it ran a slower callback meanwhile,
// that one stays.

// Keeps desc (stolen; may be nullptr) as the slowest named if d still is.
void LoopMetrics::keep_name(PyObject* desc, double d) {
    if (desc && d > named) {
        named = d;
        Py_XSETREF(named_what, desc);
    } else {
        Py_XDECREF(desc);
    }
}

void LoopMetrics::name(PyObject* what, double d) {
    keep_name(callback_name(what), d);
}

void LoopMetrics::group_closed(double d, bool alone) {
    if (group_n) {
        if (group_n == 1 && last && d > named) name(last, d);
        bool slowest_yet = d > slowest;
        if (slowest_yet) {
            slowest = d;
            slowest_count = group_n;
            Py_CLEAR(slowest_repr);
        }
        // (Only a group that is the slowest yet starts it: a loop of short callbacks
        // has one long group now and then, a poll or an interrupt. A group of one that
        // was not timed alone also holds the loop's turn after it: that says nothing of
        // its callback.)
        if (group_n > 1 ? slowest_yet && d >= kExactAvg * group_n : alone && d >= kExactAvg)
            exact_left = kExactWindow;
    }
    forget_last();
}

void LoopMetrics::timed_one(PyObject* handle, double d) {
    PyObject* desc = d > named ? callback_name(handle) : nullptr;
    PyObject* r = nullptr;
    if (d > slowest && !(r = PyObject_Repr(handle))) PyErr_Clear();
    keep_name(desc, d);
    if (d > slowest) {
        slowest = d;
        slowest_count = 1;
        Py_XSETREF(slowest_repr, r);
    } else {
        Py_XDECREF(r);
    }
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
         put(d, "slowest_callback_repr", Py_NewRef(m.slowest_repr ? m.slowest_repr : Py_None)) &&
         put(d, "slowest_callback_name", Py_NewRef(m.named_what ? m.named_what : Py_None)) &&
         put(d, "slowest_callback_name_seconds", m.named_what ? PyFloat_FromDouble(m.named) : Py_NewRef(Py_None));
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
    m.named = 0;
    Py_CLEAR(m.named_what);
    return d;
}

}  // namespace pyloop
