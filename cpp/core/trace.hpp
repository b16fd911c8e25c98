// LoopTrace: what a pyloop loop records of itself for `python -m pyloop.threads --trace`
// (pyloop/_trace.py turns the records into Chrome Trace Event Format events).
//
// Off unless started (loop._trace_start(), which PYLOOP_TRACE in the environment does
// for every new loop); off, the loop tests one bool per callback. On, the loop reads the
// clock before and after each ready callback (two clock readings, ~40 ns) and records:
// - each callback or task step that took at least the threshold, named by what it ran
//   (pyloop._trace.name_of(): a task's name and coroutine, else the callback's function);
// - each wait in the poll of at least the threshold ("idle");
// - each turn's I/O callbacks (data_received and the like) when together they took at
//   least the threshold;
// - at most every millisecond, at the start of a turn, the counters: callbacks in the
//   ready queue, libuv handles open (transports, servers, pipes, processes), bytes read
//   and written;
// - name lookups (dns.cpp) from submission to answer, with the host, the port and the
//   answer or the error, and the pool thread that made the call, from when to when.
// Each record is a tuple appended to a Python list (the sink) that the loop does not
// own alone: pyloop/_trace.py keeps it, so it outlives the loop. At most kMaxRecords
// records per loop; what comes after is not recorded.
#pragma once
#include <Python.h>

#include <cstddef>
#include <cstdint>

namespace pyloop {

class LoopCore;

// What a callback ran, named by pyloop._trace.name_of (a task step "<task name>:
// <coroutine>()", a callback "<function>()"): a new str, or nullptr (no error set).
PyObject* callback_name(PyObject* what);

class LoopTrace {
  public:
    static constexpr size_t kMaxRecords = 1000000;

    explicit LoopTrace(LoopCore* core) : core_(core) {}
    ~LoopTrace() { Py_CLEAR(sink_); }
    LoopTrace(const LoopTrace&) = delete;
    LoopTrace& operator=(const LoopTrace&) = delete;

    bool on() const { return sink_ != nullptr; }
    double threshold() const { return threshold_; }
    // sink: a list the records are appended to; threshold in seconds (>= 0).
    void start(PyObject* sink, double threshold);
    void run_started() { thread_ = PyThread_get_thread_native_id(); }  // the loop thread
    // Python code's own records (pyloop/_trace.py: child processes): appended as they are.
    void add(PyObject* record) {
        Py_INCREF(record);
        append(record);
    }

    // The loop thread, with the GIL; each only when on().
    void callback(double t0, double t1, PyObject* what);  // records it if t1 - t0 >= threshold
    void idle(double t0, double t1) { span("idle", t0, t1); }
    void io_turn(double t0, double t1) { span("io", t0, t1); }
    void counters(double t);
    // (host, port), answer or error; pool_tid: the OS thread that made the call, from
    // p0 to p1 (0: none did, it was cancelled)
    void lookup(double t0, double t1, PyObject* what, PyObject* outcome, unsigned long pool_tid, double p0,
                double p1);

    int traverse(visitproc visit, void* arg) {
        Py_VISIT(sink_);
        return 0;
    }
    void clear() { Py_CLEAR(sink_); }

  private:
    void append(PyObject* record);  // steals; nullptr: an error to report
    void span(const char* kind, double t0, double t1);  // a record of at least the threshold

    LoopCore* core_;
    PyObject* sink_ = nullptr;
    double threshold_ = 1e-4;
    double last_counters_ = 0;
    size_t records_ = 0;
    unsigned long thread_ = 0;  // the loop thread's native id (gettid), for the records
};

}  // namespace pyloop
