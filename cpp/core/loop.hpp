// LoopCore: the event loop proper. It owns the uv_loop_t, the ready queue and the
// timer heap, and runs asyncio's iteration over libuv:
//
//   uv_run: timers -> idle -> prepare (due timers join the ready queue, then the
//   callbacks that were ready when the batch began run, as one asyncio iteration;
//   the GIL is released if the poll will block) -> poll (I/O callbacks re-take the
//   GIL) -> check (stop() takes effect) -> closing handles.
//
// Running the batch before the poll keeps asyncio's order: a callback queued before
// data arrives runs before data_received. An idle handle is active exactly when the
// ready queue is non-empty or the loop is stopping, so that the poll does not block.
// One uv_timer wakes the poll for the earliest TimerHandle in the heap.
#pragma once
#include "core/fdwatch.hpp"
#include "core/handle.hpp"
#include "core/io_peek.hpp"
#include "core/metrics.hpp"
#include "core/stall.hpp"
#include "core/trace.hpp"

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pyloop {

class LoopCore {
  public:
    explicit LoopCore(PyObject* py_loop);  // py_loop: the owning Python object (borrowed)
    ~LoopCore();
    LoopCore(const LoopCore&) = delete;
    LoopCore& operator=(const LoopCore&) = delete;

    int init();  // -1 with an exception set

    // --- scheduling (the GIL is held by the caller) ---
    //
    // Handles the queues alone hold are not tracked by the garbage collector: a queue
    // of many (500k call_soon, 200k pending timers) would otherwise be walked by every
    // collection that reaches them, and push everything else into the oldest
    // generation. A handle is tracked when made; when the next one is queued, the one
    // queued before it is settled if the queue's reference is its only one (the caller
    // dropped what call_soon returned): in the ready queue, a plain Handle gives way to
    // the QueuedCall that holds what it would run (32 bytes in the queue rather than a
    // 176-byte object beside it: 500k queued call_soon use 16 MB, not 88); any other is
    // untracked. Nothing can reach it then until the queue lets it go (drop()), which
    // tracks it again if its callback kept a reference to it. The loop's tp_traverse
    // visits what such a handle or call refers to as the loop's own references, so a
    // dropped loop and its queued callbacks are still one cycle the collector frees.
    void push_ready(HandleObject* h) {  // takes a new reference
        note_queued(h);
        ready_.push_back({h, {}});
    }
    // Adds `h` (a TimerHandle, h->when set) to the heap; takes a new reference.
    void push_timer(HandleObject* h);
    void timer_cancelled() { timer_cancelled_count_++; }
    // The context a handle made without context= gets: a copy of the current one that
    // handles made while the current context holds the same variables share (see
    // core/handle.cpp). New reference, or nullptr with an exception set.
    PyObject* shared_context();
    void wakeup() { uv_async_send(&async_); }  // any thread
    // call_soon_threadsafe with kThreadsafeBacklog callbacks already waiting. From
    // another thread while the loop runs: wait (without the GIL, at most 1 ms) for the
    // loop to run a batch. While it does not run (threads started before run_forever()):
    // let the other threads have the GIL, as asyncio's call_soon_threadsafe does in its
    // send() to the self-pipe, so the thread about to run the loop gets to it. Without
    // either, threads that only queue callbacks (C calls that never yield the GIL)
    // outpace the loop without bound (a million before run_forever() began) and starve
    // its timers and I/O.
    void throttle_foreign_thread() {
        if (ready_.size() <= kThreadsafeBacklog) return;
        if (!running_) yield_gil();
        else if (PyThread_get_thread_ident() != thread_id_) wait_for_batch();
    }

    // --- the clock ---
    static double now();  // time.monotonic()
    // The loop's time as asyncio would see it: loop.time() when a test patched it on
    // the instance or a subclass overrides it, else now(). -1 with an exception set
    // only if the patched time() failed and `strict`.
    double clock();
    // Re-reads whether loop.time is patched (once per iteration, and by call_later).
    void refresh_clock() { time_patched_ = subclass_time_ || instance_time_patched(); }
    void set_subclass_time(bool v) { subclass_time_ = v; }

    // --- running ---
    // Runs until stop(). `wakeup_fd` (or -1) is the read end of signal.set_wakeup_fd's
    // socket: each byte read from it is a signal number (add_signal_handler's handlers
    // run for it), and Python's own signal handlers run when it becomes readable.
    // Returns -1 with the exception set when one must escape run_forever
    // (KeyboardInterrupt, SystemExit).
    int run(int wakeup_fd);
    void stop() { stopping_ = true; }
    bool is_running() const { return running_; }
    bool is_closed() const { return closed_; }
    bool debug() const { return debug_; }
    void set_debug(bool d) { debug_ = d; }
    void set_slow_callback_duration(double s) { slow_callback_duration_ = s; }
    int close();  // -1 with an exception set

    size_t ready_count() const { return ready_.size(); }
    // One entry of the ready queue: a handle (the queue's reference), or, when h is
    // nullptr, the call a handle only the queue held gave way to (see push_ready).
    struct Ready {
        HandleObject* h;
        QueuedCall call;
    };
    const char* io_peek_mechanism() const { return peek_.mechanism(); }
    size_t timer_count() const { return heap_.size(); }
    size_t timer_cancelled_count() const { return timer_cancelled_count_; }
    uv_loop_t* uv() { return loop_; }
    PyObject* py_loop() const { return py_loop_; }

    // --- readers and writers; each returns -1 with an exception set on error ---
    // `kind` says what the watch is for loop.metrics().
    int add_poll(int fd, bool writer, HandleObject* h, FdWatchers::DirectFn direct = nullptr,
                 HandleKind kind = kKindPoller) {
        if (closed_) {
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
            return -1;
        }
        return fdw_.add(fd, writer, h, direct, kind);
    }
    int remove_poll(int fd, bool writer) { return fdw_.remove(fd, writer); }  // 1 removed, 0 nothing there
    int remove_poll_if(int fd, bool writer, HandleObject* h) { return fdw_.remove_if(fd, writer, h); }

    // --- signals (delivered through the wakeup fd, as asyncio does) ---
    void add_signal(int signum, HandleObject* h);  // takes a new reference; cancels the previous one
    int remove_signal(int signum);                 // 1 removed, 0 nothing there

    // Re-takes the GIL if the loop released it around the poll. Every libuv callback
    // that touches Python starts with this.
    // (An I/O callback after a non-blocking poll also ends the open group of timed
    // callbacks, see core/metrics.hpp: the clock is read only when I/O came.)
    // (An I/O callback begins: the stall watch counts it as one callback.)
    void ensure_gil() {
        if (saved_tstate_) retake_gil();
        else if (metrics_.group_n) metrics_.close_group(now());
        if (stall_.on()) stall_.begin(nullptr);
    }
    // loop.set_stall_threshold() (core/stall.hpp).
    StallWatch& stall() { return stall_; }
    // What python -m pyloop.threads --trace records of the loop (core/trace.hpp).
    LoopTrace& trace() { return trace_; }
    size_t open_handles() const { return tracked_.size(); }
    const LoopMetrics& metrics() const { return metrics_; }
    // Must an I/O callback's protocol call wait its turn in the ready queue? Yes while
    // callbacks queued before this poll are waiting (asyncio runs them first) or the
    // loop is stopping (asyncio's run_forever returns without running more).
    bool io_must_queue() const { return queue_io_; }
    // Records an exception that must leave run_forever and stops the loop.
    void set_fatal();
    // Output held back so that what one callback writes to a stream goes out in one
    // system call: fn(owner) runs once when the callback returns, or later in the same
    // pass while it has a while to run (hold_or_flush), and before the loop polls or
    // closes. Holds a reference to owner until then. fn reports its own errors.
    using FlushFn = void (*)(PyObject*);
    void queue_flush(PyObject* owner, FlushFn fn) {
        Py_INCREF(owner);
        flushes_.push_back({owner, fn});
    }
    void run_flushes();
    static constexpr double kHoldTail = 50e-6;  // output waits while the pass has this left
    static constexpr double kHoldMax = 0.001;   // and for at most this, plus one callback
    // A stream whose protocol paused writing: libuv writes its queue in parts without a
    // callback per part, so after each poll fn(owner) looks at what is left (asyncio
    // resumes the protocol after the send that brings its buffer down to the low-water
    // mark). fn returns false when it needs no more looks; a reference to owner is held
    // until then.
    using WatchFn = bool (*)(PyObject*);
    void watch_write_progress(PyObject* owner, WatchFn fn) {
        Py_INCREF(owner);
        write_watches_.push_back({owner, fn});
    }
    // Is the loop running its ready queue (callbacks, task steps) now, rather than
    // libuv's I/O callbacks?
    bool running_callbacks() const { return running_callbacks_; }

    // Is anything watched that only a poll can report (fds, transports, libuv requests,
    // signal handlers: their signals come through the wakeup fd)?
    bool has_io_sources() const {
        return fdw_.active() || !tracked_.empty() || !signals_.empty() || loop_->active_reqs.count > 0;
    }
    // Components with their own libuv handles (streams, ...) register them while open,
    // with a function that closes one (close() uses it for handles still open then) and
    // the Python object that owns the handle: the loop reports it to the garbage
    // collector, as the reference libuv's pointer stands for.
    using HandleCloser = void (*)(uv_handle_t*);
    void track_handle(uv_handle_t* h, HandleCloser closer, PyObject* owner, HandleKind kind) {
        tracked_[h] = {closer, owner, kind};
    }
    void untrack_handle(uv_handle_t* h) { tracked_.erase(h); }
    // Which open stream transport uses a socket's fd (add_reader and sock_* refuse it,
    // as asyncio's _ensure_fd_no_transport does). Borrowed: registered while open.
    void set_stream_fd(int fd, PyObject* transport) { stream_fds_[fd] = transport; }
    void clear_stream_fd(int fd, PyObject* transport) {
        auto it = stream_fds_.find(fd);
        if (it != stream_fds_.end() && it->second == transport) stream_fds_.erase(it);
    }
    PyObject* stream_for_fd(int fd) const {
        auto it = stream_fds_.find(fd);
        return it == stream_fds_.end() ? nullptr : it->second;
    }
    // Requests on libuv's thread pool (DNS): close() cancels those not started yet and
    // orphans those a pool thread runs: `orphan(r)` (called with the GIL) drops every
    // Python reference the request holds, and its callback then frees only C memory,
    // on the thread that finishes the uv_loop_t (see close()).
    using RequestOrphaner = void (*)(uv_req_t*);
    void track_request(uv_req_t* r, RequestOrphaner orphan) {
        pool_reqs_[r] = orphan;
        metrics_.lookups++;
    }
    void untrack_request(uv_req_t* r) { pool_reqs_.erase(r); }
    // The handle running now, in debug mode (asyncio's _current_handle); else nullptr.
    HandleObject* current_handle() const { return current_handle_; }

    // --- loop.metrics() (core/metrics.cpp) ---
    void count_read(size_t n) { metrics_.bytes_read += n; }
    void count_written(size_t n) { metrics_.bytes_written += n; }
    // The report as a dict; it starts a new "since the last call" period.
    PyObject* report_metrics();

    int traverse(visitproc visit, void* arg);
    void clear_queues();
    void clear_all();  // tp_clear: every Python object the core holds

  private:
    static void on_prepare(uv_prepare_t* h);
    static void on_check(uv_check_t* h);
    static void on_idle(uv_idle_t*) {}
    static void on_timer(uv_timer_t* h);
    static void on_async(uv_async_t* h);
    static void on_wakeup(uv_poll_t* h, int status, int events);

    void run_batch();
    bool io_quiet();
    void run_once_ready();
    template <bool kTimeEach>
    void run_pass();
    void schedule_due_timers();
    void heap_push(HandleObject* h);
    void note_queued(HandleObject* h) {
        if (fresh_ && Py_REFCNT(fresh_) == 1) settle_fresh();
        fresh_ = h;
    }
    void settle_fresh();
    // Releases a queue's (or the heap's) reference to h.
    void drop(HandleObject* h) {
        if (h == fresh_) fresh_ = nullptr;
        else if (Py_REFCNT(h) > 1 && !PyObject_GC_IsTracked(reinterpret_cast<PyObject*>(h)))
            PyObject_GC_Track(h);
        Py_DECREF(h);
    }
    HandleObject* heap_pop();
    void sift_up(size_t i);
    void sift_down(size_t i);
    void compact_timers();
    void arm_timer();
    void log_slow(HandleObject* h, double dt);
    void dispatch_signal(int signum);
    bool instance_time_patched();
    // Runs the loop until its closing handles are closed; false when only lookups a pool
    // thread runs are left (then hand_off_running_lookups()).
    bool run_closing();
    void hand_off_running_lookups();
    void wait_for_batch();
    static void yield_gil();
    void batch_done();
    void retake_gil();
    void pass_started(double t) {
        metrics_.close_group(t);
        metrics_.group_start = t;
    }

    // Heap-allocated: a closed loop whose lookups still run on libuv's pool hands it to
    // the thread that finishes it (close()); loop_ is then a fresh zeroed one.
    uv_loop_t* loop_ = new uv_loop_t();
    uv_idle_t idle_;
    uv_prepare_t prepare_;
    uv_check_t check_;
    uv_timer_t timer_;
    uv_async_t async_;
    uv_poll_t wakeup_;
    bool wakeup_active_ = false;
    bool uv_ready_ = false;

    PyObject* py_loop_;
    std::deque<Ready> ready_;
    HandleObject* fresh_ = nullptr;        // the last handle queued (borrowed), still tracked
    PyObject* context_snapshot_ = nullptr;  // shared_context()'s copy
    std::vector<HandleObject*> heap_;
    std::vector<std::pair<PyObject*, FlushFn>> flushes_;
    double hold_started_ = 0;    // when output was first held (0: none held)
    double mark_at_ = 0;         // hold_or_flush's last look in this pass (0: none yet)
    size_t mark_left_ = 0;       // the callbacks then left in the pass
    double per_callback_ = 0;    // seconds per callback, as measured between two looks
    void hold_or_flush(size_t left);
    void run_ready_pass();
    std::vector<std::pair<PyObject*, WatchFn>> write_watches_;
    void check_write_progress();
    size_t timer_cancelled_count_ = 0;
    uint64_t timer_seq_ = 0;
    PyThreadState* saved_tstate_ = nullptr;
    PyObject* fatal_ = nullptr;
    bool stopping_ = false;
    bool running_ = false;
    bool closed_ = false;
    bool debug_ = false;
    bool time_patched_ = false;
    bool queue_io_ = false;
    bool running_callbacks_ = false;
    bool subclass_time_ = false;
    double slow_callback_duration_ = 0.1;
    struct Tracked {
        HandleCloser closer;
        PyObject* owner;  // borrowed: the owner keeps itself alive while the handle is open
        HandleKind kind;
    };
    std::unordered_map<uv_handle_t*, Tracked> tracked_;
    std::unordered_map<int, PyObject*> stream_fds_;
    std::unordered_map<uv_req_t*, RequestOrphaner> pool_reqs_;
    HandleObject* current_handle_ = nullptr;
    LoopMetrics metrics_;
    StallWatch stall_{this};
    LoopTrace trace_{this};
    double io_started_ = 0;  // tracing: when this turn's poll returned (its I/O callbacks began)
    static constexpr int kMaxPollFreeTurns = 256;
    static constexpr size_t kThreadsafeBacklog = 4096;
    unsigned long thread_id_ = 0;  // the thread running the loop
    std::mutex batch_mu_;
    std::condition_variable batch_cv_;
    uint64_t batch_gen_ = 0;  // guarded by batch_mu_
    std::atomic<int> batch_waiters_{0};

    FdWatchers fdw_{this};
    IoPeek peek_;
    uint64_t events_before_poll_ = 0;  // libuv's count of I/O events, taken right before a poll
    std::unordered_map<int, HandleObject*> signals_;  // signum -> handle (owned)
};

}  // namespace pyloop
