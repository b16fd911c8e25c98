// LoopMetrics: the counters behind loop.metrics(), kept by LoopCore as it runs.
//
// Cheap enough to leave on: a counter per callback, and the clock is read only where
// the loop reads it anyway or where a system call follows:
// - idle time is the time spent blocked in the poll, measured when the loop releases
//   the GIL before it and re-takes it after (libuv 1.44's UV_METRICS_IDLE_TIME would
//   add a non-blocking epoll_wait before every blocking one, and a mutex);
// - callbacks are timed in groups of up to kGroup run back to back: a group starts at
//   the clock reading the ready-queue pass makes for its timers and ends at the next
//   such reading, every kGroup callbacks, before a blocking poll, or at the first I/O
//   callback after a non-blocking one. A group of one callback is that callback's
//   duration (plus, at most, a non-blocking poll that found nothing); a longer group
//   bounds its slowest callback from above.
//   Debug mode times every callback (asyncio's slow-callback check does) and keeps the
//   slowest one's repr.
// - some callbacks are timed on their own (groups of one, named, see below): the
//   first kExactAfterIdle of a run and after each wait for I/O (the loop was not
//   pressed for time), and the next kExactWindow after a group of several that is the
//   slowest yet and whose callbacks took kExactAvg or more each on average (each of
//   them taking kExactAvg or more renews it). Long callbacks (a server's request
//   handlers) are then each timed, at one clock reading (~25 ns) against
//   microseconds; short ones (hundreds of ns) stay in groups. The last callback of a
//   pass needs no reading of its own: its group of one ends at the next one.
// - what a callback timed on its own ran is named if it is the slowest so timed: the
//   loop keeps its callable until its group of one ends, before the next callback
//   starts (asyncio's loop keeps the handle as long), and names it then
//   (pyloop._trace.name_of: only for a new slowest). Callbacks timed in groups are
//   not kept (measured: 10 ns more per chained call_soon).
#pragma once
#include <Python.h>

#include <cstdint>

namespace pyloop {

// What a libuv handle or an fd watch is, for the "handles" of loop.metrics().
enum HandleKind : uint8_t {
    kKindPoller = 0,  // add_reader / add_writer
    kKindTcp,         // TCP connections and listening sockets
    kKindUnix,        // Unix stream connections and listening sockets
    kKindUdp,         // datagram transports
    kKindPipe,        // pipe transports (connect_read_pipe, subprocess pipes)
    kKindProcess,     // child processes waited for
    kKindSock,        // sockets with a sock_* call waiting
    kKindInternal,    // not counted (a second watch on something counted already)
    kKindCount
};
// Their names in loop.metrics()["handles"] ("internal" is never reported).
extern const char* const kHandleKindNames[kKindCount];

struct LoopMetrics {
    static constexpr uint32_t kGroup = 8;
    static constexpr double kExactAvg = 5e-6;
    static constexpr uint32_t kExactWindow = 64;
    static constexpr uint32_t kExactAfterIdle = 8;

    uint64_t iterations = 0;
    uint64_t callbacks = 0;
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
    uint64_t lookups = 0;

    double run_time = 0;     // finished runs of run_forever
    double run_started = 0;  // while running: when this run began
    double idle_time = 0;    // blocked in the poll
    double idle_since = 0;   // while blocked: since when (0 otherwise)

    // Since the last report.
    double last_running = 0;
    double last_idle = 0;
    double slowest = 0;
    uint32_t slowest_count = 0;       // callbacks in that measurement (1: exact)
    PyObject* slowest_repr = nullptr;  // debug mode: the slowest callback's repr (owned)
    double named = 0;                  // the slowest callback timed on its own ...
    PyObject* named_what = nullptr;    // ... and what it ran (owned str)

    // The open group of callbacks.
    double group_start = 0;
    uint32_t group_n = 0;
    uint32_t exact_left = 0;      // callbacks still to time on their own
    PyObject* last = nullptr;     // what the last callback ran (owned callable), see above

    // The loop starts to run, or waited for I/O: its next callbacks are timed on their
    // own (it was not busy: what they cost is what matters now).
    void woke() {
        if (exact_left < kExactAfterIdle) exact_left = kExactAfterIdle;
    }
    // What a callback ran (its callable; none if a handle cancelled itself), kept for
    // its name.
    void ran(PyObject* what) {
        Py_XSETREF(last, Py_XNewRef(what));
    }
    // Before the next callback runs: what the last one ran may go (it may be the last
    // reference: a finalizer may run).
    void forget_last() { Py_CLEAR(last); }
    // Ends the open group at t (alone: a callback timed on its own right as it
    // returned). May run Python code (a name, a finalizer). Inline only the common
    // case: nothing kept, not the slowest yet.
    void close_group(double t, bool alone = false) {
        double d = t - group_start;
        if (last || (group_n && (d > slowest || (alone && d >= kExactAvg)))) group_closed(d, alone);
        group_n = 0;
    }
    // One callback timed on its own, in debug mode: also its repr if it is the slowest.
    void timed_one(PyObject* handle, double d);
    // Names what a callback timed on its own ran, if still the slowest named (out of line:
    // Python code).
    void name(PyObject* what, double d);
    void keep_name(PyObject* desc, double d);
    // close_group's rare part (cold: out of the loop's hot path).
    [[gnu::cold, gnu::noinline]] void group_closed(double d, bool alone);
};

}  // namespace pyloop
