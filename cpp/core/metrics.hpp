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

    // The open group of callbacks.
    double group_start = 0;
    uint32_t group_n = 0;

    void close_group(double t) {
        if (group_n == 0) return;
        double d = t - group_start;
        if (d > slowest) {
            slowest = d;
            slowest_count = group_n;
            Py_CLEAR(slowest_repr);
        }
        group_n = 0;
    }
    // Debug mode: one callback timed on its own.
    void timed_one(PyObject* handle, double d);
};

}  // namespace pyloop
