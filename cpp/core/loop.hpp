// LoopCore: the event loop proper. It owns the uv_loop_t, the ready queue and the
// timer heap, and runs asyncio's iteration over libuv:
//
//   uv_run: timers -> idle -> prepare (GIL released if poll will block) -> poll (I/O
//   callbacks re-take the GIL) -> check (due timers join the ready queue, then the
//   callbacks that were ready when the check began run) -> closing handles.
//
// An idle handle is active exactly when the ready queue is non-empty or the loop is
// stopping, so that the next poll does not block. One uv_timer wakes the poll for the
// earliest TimerHandle in the heap.
#pragma once
#include "core/handle.hpp"

#include <uv.h>

#include <deque>
#include <unordered_map>
#include <vector>

namespace pyloop {

class Poller;
class SignalWatcher;

class LoopCore {
  public:
    explicit LoopCore(PyObject* py_loop);  // py_loop: the owning Python object (borrowed)
    ~LoopCore();
    LoopCore(const LoopCore&) = delete;
    LoopCore& operator=(const LoopCore&) = delete;

    int init();  // -1 with an exception set

    // --- scheduling (the GIL is held by the caller) ---
    void push_ready(HandleObject* h) {  // takes a new reference
        ready_.push_back(h);
    }
    // Adds `h` (a TimerHandle, h->when set) to the heap; takes a new reference.
    void push_timer(HandleObject* h);
    void timer_cancelled() { timer_cancelled_count_++; }
    void wakeup() { uv_async_send(&async_); }  // any thread

    // --- running ---
    // Runs until stop(). `wakeup_fd` (or -1) is the read end of signal.set_wakeup_fd's
    // socket: when it becomes readable, Python's signal handlers run. Returns -1 with the
    // exception set when one must escape run_forever (KeyboardInterrupt, SystemExit).
    int run(int wakeup_fd);
    void stop() { stopping_ = true; }
    bool is_running() const { return running_; }
    bool is_closed() const { return closed_; }
    bool debug() const { return debug_; }
    void set_debug(bool d) { debug_ = d; }
    void set_slow_callback_duration(double s) { slow_callback_duration_ = s; }
    int close();  // -1 with an exception set
    static double now();

    size_t ready_count() const { return ready_.size(); }
    size_t timer_count() const { return heap_.size(); }
    size_t timer_cancelled_count() const { return timer_cancelled_count_; }
    uv_loop_t* uv() { return &loop_; }
    PyObject* py_loop() const { return py_loop_; }

    // --- readers and writers (uv_poll); each returns -1 with an exception set on error ---
    int add_poll(int fd, bool writer, HandleObject* h);
    int remove_poll(int fd, bool writer);  // 1 removed, 0 nothing there
    void poller_activity(int delta) { active_pollers_ += delta; }

    // --- signals (uv_signal) ---
    int add_signal(int signum, HandleObject* h);
    int remove_signal(int signum);  // 1 removed, 0 nothing there
    void forget_signal(int signum) { signals_.erase(signum); }

    // Re-takes the GIL if the loop released it around the poll. Every libuv callback
    // that touches Python starts with this.
    void ensure_gil() {
        if (saved_tstate_) {
            PyThreadState* t = saved_tstate_;
            saved_tstate_ = nullptr;
            PyEval_RestoreThread(t);
        }
    }
    // Records an exception that must leave run_forever and stops the loop.
    void set_fatal();

    // Is anything watched that only a poll can report (fds, signals, libuv requests)?
    bool has_io_sources() const {
        return active_pollers_ > 0 || !signals_.empty() || !tracked_.empty() || loop_.active_reqs.count > 0;
    }
    // Components with their own libuv handles (streams, ...) register them while open,
    // with a function that closes one: close() uses it for handles still open then.
    using HandleCloser = void (*)(uv_handle_t*);
    void track_handle(uv_handle_t* h, HandleCloser closer) { tracked_[h] = closer; }
    void untrack_handle(uv_handle_t* h) { tracked_.erase(h); }
    // The handle running now, in debug mode (asyncio's _current_handle); else nullptr.
    HandleObject* current_handle() const { return current_handle_; }

    int traverse(visitproc visit, void* arg);
    void clear_queues();

  private:
    static void on_prepare(uv_prepare_t* h);
    static void on_check(uv_check_t* h);
    static void on_idle(uv_idle_t*) {}
    static void on_timer(uv_timer_t* h);
    static void on_async(uv_async_t* h);
    static void on_wakeup(uv_poll_t* h, int status, int events);

    void run_once_ready();
    void schedule_due_timers();
    void heap_push(HandleObject* h);
    HandleObject* heap_pop();
    void sift_up(size_t i);
    void sift_down(size_t i);
    void compact_timers();
    void arm_timer();
    void log_slow(HandleObject* h, double dt);

    uv_loop_t loop_;
    uv_idle_t idle_;
    uv_prepare_t prepare_;
    uv_check_t check_;
    uv_timer_t timer_;
    uv_async_t async_;
    uv_poll_t wakeup_;
    bool wakeup_active_ = false;
    bool uv_ready_ = false;

    PyObject* py_loop_;
    std::deque<HandleObject*> ready_;
    std::vector<HandleObject*> heap_;
    size_t timer_cancelled_count_ = 0;
    uint64_t timer_seq_ = 0;
    PyThreadState* saved_tstate_ = nullptr;
    PyObject* fatal_ = nullptr;
    bool stopping_ = false;
    bool running_ = false;
    bool closed_ = false;
    bool debug_ = false;
    double slow_callback_duration_ = 0.1;
    std::unordered_map<uv_handle_t*, HandleCloser> tracked_;
    long active_pollers_ = 0;  // pollers watching at least one direction
    HandleObject* current_handle_ = nullptr;
    static constexpr int kMaxPollFreeTurns = 256;

    std::unordered_map<int, Poller*> pollers_;
    std::unordered_map<int, SignalWatcher*> signals_;
};

}  // namespace pyloop
