#include "core/trace.hpp"

#include "core/loop.hpp"
#include "uv/pyutil.hpp"

namespace pyloop {

void LoopTrace::start(PyObject* sink, double threshold) {
    Py_INCREF(sink);
    Py_XSETREF(sink_, sink);
    threshold_ = threshold;
    last_counters_ = 0;
    thread_ = PyThread_get_thread_native_id();
}

void LoopTrace::append(PyObject* record) {
    if (!record || PyList_Append(sink_, record) < 0) PyErr_WriteUnraisable(core_->py_loop());
    Py_XDECREF(record);
    records_++;
}

PyObject* callback_name(PyObject* what) {
    PyObject* desc = nullptr;
    PyObject* mod = PyImport_ImportModule("pyloop._trace");
    if (mod) {
        desc = PyObject_CallMethod(mod, "name_of", "O", what);
        Py_DECREF(mod);
    }
    if (!desc) PyErr_Clear();
    return desc;
}

void LoopTrace::callback(double t0, double t1, PyObject* what) {
    if (t1 - t0 < threshold_ || !sink_) return;
    if (records_ >= kMaxRecords) return;
    thread_ = PyThread_get_thread_native_id();  // (the loop may run on another thread each run)
    // What it ran, named now, while it is alive (pyloop._trace.name_of). A callback that
    // failed left its exception set: it waits for the name.
    PyObject* exc = fetch_exception();
    PyObject* desc = callback_name(what ? what : Py_None);
    if (!desc) desc = PyUnicode_FromString("(a callback)");
    append(Py_BuildValue("(sddkN)", "callback", t0, t1, thread_, desc));
    if (exc) restore_exception(exc);
}

void LoopTrace::span(const char* kind, double t0, double t1) {
    if (t1 - t0 < threshold_ || !sink_) return;
    if (records_ >= kMaxRecords) return;
    append(Py_BuildValue("(sddkO)", kind, t0, t1, thread_, Py_None));
}

void LoopTrace::counters(double t) {
    if (!sink_ || t - last_counters_ < 1e-3) return;
    last_counters_ = t;
    if (records_ >= kMaxRecords) return;
    const LoopMetrics& m = core_->metrics();
    append(Py_BuildValue("(sddk(nnKK))", "counters", t, t, thread_, static_cast<Py_ssize_t>(core_->ready_count()),
                         static_cast<Py_ssize_t>(core_->open_handles()), static_cast<unsigned long long>(m.bytes_read),
                         static_cast<unsigned long long>(m.bytes_written)));
}

void LoopTrace::lookup(double t0, double t1, PyObject* what, PyObject* outcome, unsigned long pool_tid, double p0,
                       double p1) {
    if (!sink_) return;
    if (records_ >= kMaxRecords) return;
    append(Py_BuildValue("(sddk(OOkdd))", "lookup", t0, t1, 0UL, what, outcome, pool_tid, p0, p1));
}

}  // namespace pyloop
