// StallWatch: loop.set_stall_threshold(). A thread of its own notices, while it
// happens, that one callback (a ready callback or task step, or an I/O callback) has
// held the loop longer than the threshold, and has pyloop._stall log it with the loop
// thread's Python stack at that moment. The loop thread logs the total when the
// callback returns.
//
// What the loop thread does for it, only while a threshold is set: before each
// callback, a counter and a pointer stored; after it, one load and compare. No clock
// reading: the watch thread samples the counter (every threshold/8, between 1 and 25
// ms) and a value it sees unchanged for the threshold is a stall. It reports once the
// counter has stood still for the threshold by its own clock, so a stall is reported
// between the threshold and the threshold plus one sampling interval after it began.
// Off, the loop thread tests one bool per callback.
//
// The stack needs the GIL. Code stuck in Python gives it up every switch interval,
// code that blocks in a system call releases it: the watch thread takes it and reads
// the loop thread's frame. C code that holds the GIL throughout cannot be looked at
// while it runs; its stall is logged when it returns, by the loop thread.
#pragma once
#include <Python.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace pyloop {

class LoopCore;

class StallWatch {
  public:
    explicit StallWatch(LoopCore* core) : core_(core) {}
    ~StallWatch();
    StallWatch(const StallWatch&) = delete;
    StallWatch& operator=(const StallWatch&) = delete;

    // With the GIL. seconds > 0 (finite), or 0 for off. Starts the watch thread when
    // the loop is running, stops it when turned off. -1 with an exception set.
    int set_threshold(double seconds);
    double threshold() const { return threshold_.load(std::memory_order_relaxed); }
    bool on() const { return on_; }

    // The loop thread, with the GIL. The watch thread, started by the first run with a
    // threshold set, is kept between runs, asleep without a timeout, until the watch is
    // turned off or the loop closed (shutdown): a program that runs its loop many times
    // (run_until_complete in a loop) starts it once.
    void run_started(unsigned long thread_id);
    void run_ended();
    void shutdown();  // stops the thread (the GIL is released while it is joined)

    // A callback begins: `what` (borrowed) is the Handle or the callable it runs, or
    // nullptr for an I/O callback (a libuv callback that calls into Python).
    void begin(PyObject* what) {
        uint64_t s = state_.load(std::memory_order_relaxed);
        if (s == stalled_.load(std::memory_order_acquire) && s != ended_) ended(nullptr);
        what_ = what;
        state_.store(((s >> 1) + 1) << 1 | 1, std::memory_order_release);
    }
    // The callback begun last returned; `what` is still alive.
    void end(PyObject* what) {
        uint64_t s = state_.load(std::memory_order_relaxed);
        if (s == stalled_.load(std::memory_order_acquire) && s != ended_) ended(what);
        what_ = nullptr;
    }
    // The loop is about to wait in its poll (nothing it does then can stall).
    void idle() {
        uint64_t s = state_.load(std::memory_order_relaxed);
        if (s == stalled_.load(std::memory_order_acquire) && s != ended_) ended(nullptr);
        what_ = nullptr;
        state_.store(((s >> 1) + 1) << 1, std::memory_order_release);
    }

    void clear();  // drops the description it keeps (tp_clear)

  private:
    // One watch thread, with its own lock and stop flag: a thread being stopped (the GIL
    // released while it is joined) and the next one started meanwhile never share them,
    // and a forked child, where the parent's thread does not exist and its lock may be
    // held, leaves the old one alone (leaked) and starts afresh.
    struct Worker {
        std::thread thread;
        long pid = 0;
        std::mutex mu;
        std::condition_variable cv;
        bool stop = false;    // guarded by mu
        bool active = true;   // the loop runs (guarded by mu); false: the thread sleeps
    };
    Worker* own_worker();  // worker_, forgotten (leaked) if a forked child has the parent's
    void start();
    void stop();  // the GIL may be held: it is released while joining
    void thread_main(Worker* w);
    void report_blocked(Worker* w, uint64_t s, double elapsed);  // the watch thread
    void ended(PyObject* what);                        // the loop thread, with the GIL

    LoopCore* core_;
    bool on_ = false;
    bool running_ = false;  // the loop runs (between run_started and run_ended)
    std::atomic<double> threshold_{0};
    unsigned long loop_thread_ = 0;

    // state_: a count of callbacks begun, shifted left once; the low bit is set while
    // the loop thread is busy (in or between callbacks) rather than waiting in its poll.
    std::atomic<uint64_t> state_{0};
    PyObject* what_ = nullptr;  // borrowed, read by the watch thread with the GIL only
    std::atomic<uint64_t> stalled_{UINT64_MAX};  // the state the watch thread found stuck
    double stall_start_ = 0;                     // when it first saw that state (before stalled_)
    uint64_t warned_ = UINT64_MAX;               // the stall it logged with a stack (GIL)
    uint64_t ended_ = UINT64_MAX;                // the stall whose end was logged (loop thread)
    PyObject* desc_ = nullptr;                   // the warning's description (GIL)
    bool reporting_ = false;                     // the watch thread's message is being made (GIL)

    Worker* worker_ = nullptr;
    bool stopping(Worker* w) {
        std::lock_guard<std::mutex> lk(w->mu);
        return w->stop;
    }
};

}  // namespace pyloop
