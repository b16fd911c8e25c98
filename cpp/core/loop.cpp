#include "core/loop.hpp"

#include "uv/error.hpp"

#include <sched.h>
#include <sys/socket.h>

#include <cmath>
#include <ctime>
#include <system_error>
#include <thread>

namespace pyloop {

LoopCore::LoopCore(PyObject* py_loop) : py_loop_(py_loop) {}

LoopCore::~LoopCore() {
    if (!closed_ && close() < 0) PyErr_WriteUnraisable(py_loop_);
    Py_CLEAR(metrics_.slowest_repr);
    Py_CLEAR(metrics_.named_what);
    Py_CLEAR(metrics_.last);
    Py_CLEAR(context_snapshot_);
    delete loop_;
}

double LoopCore::clock() {
    if (!time_patched_) return now();
    static PyObject* s_time = PyUnicode_InternFromString("time");
    PyObject* r = PyObject_CallMethodNoArgs(py_loop_, s_time);
    double d = r ? PyFloat_AsDouble(r) : -1.0;
    Py_XDECREF(r);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_WriteUnraisable(py_loop_);
        return now();
    }
    return d;
}

bool LoopCore::instance_time_patched() {
    static PyObject* s_time = PyUnicode_InternFromString("time");
    PyObject* dict = PyObject_GenericGetDict(py_loop_, nullptr);
    if (!dict) {
        PyErr_Clear();
        return false;
    }
    PyObject* v = PyDict_GetItemWithError(dict, s_time);
    Py_DECREF(dict);
    if (!v) PyErr_Clear();
    return v != nullptr;
}

int LoopCore::init() {
    int r = uv_loop_init(loop_);
    if (r < 0) return set_uv_error(r), -1;
    loop_->data = this;
    uv_idle_init(loop_, &idle_);
    uv_prepare_init(loop_, &prepare_);
    uv_check_init(loop_, &check_);
    uv_timer_init(loop_, &timer_);
    r = uv_async_init(loop_, &async_, on_async);
    if (r < 0) {
        uv_loop_close(loop_);
        return set_uv_error(r), -1;
    }
    idle_.data = prepare_.data = check_.data = timer_.data = async_.data = this;
    // Only the async handle keeps uv_run going: asyncio's run_forever never returns
    // on its own, and the others are internal helpers.
    uv_unref(reinterpret_cast<uv_handle_t*>(&idle_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
    uv_ready_ = true;
    peek_.open(uv_backend_fd(loop_));
    return 0;
}

double LoopCore::now() {
    // time.monotonic()'s clock on Linux.
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// ---- the timer heap ------------------------------------------------------------------

static inline bool earlier(const HandleObject* a, const HandleObject* b) {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

void LoopCore::sift_up(size_t i) {
    HandleObject* h = heap_[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(h, heap_[parent])) break;
        heap_[i] = heap_[parent];
        heap_[i]->heap_index = static_cast<Py_ssize_t>(i);
        i = parent;
    }
    heap_[i] = h;
    h->heap_index = static_cast<Py_ssize_t>(i);
}

void LoopCore::sift_down(size_t i) {
    size_t n = heap_.size();
    HandleObject* h = heap_[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) child++;
        if (!earlier(heap_[child], h)) break;
        heap_[i] = heap_[child];
        heap_[i]->heap_index = static_cast<Py_ssize_t>(i);
        i = child;
    }
    heap_[i] = h;
    h->heap_index = static_cast<Py_ssize_t>(i);
}

void LoopCore::heap_push(HandleObject* h) {
    heap_.push_back(h);
    sift_up(heap_.size() - 1);
}

HandleObject* LoopCore::heap_pop() {
    HandleObject* top = heap_.front();
    HandleObject* last = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) {
        heap_[0] = last;
        sift_down(0);
    }
    top->heap_index = -1;
    return top;
}

void LoopCore::push_timer(HandleObject* h) {
    if (std::isnan(h->when)) {
        // asyncio compares nothing as later than NaN: such a timer is due at once.
        push_ready(h);
        return;
    }
    h->seq = timer_seq_++;
    heap_push(h);
    note_queued(h);
}

void LoopCore::settle_fresh() {
    // (debug mode keeps handles: slow callbacks are reported with them)
    if (!debug_ && !ready_.empty() && ready_.back().h == fresh_ && handle_detach(fresh_, &ready_.back().call)) {
        ready_.back().h = nullptr;
        Py_DECREF(fresh_);  // (its callback, argument and context are the queue's now)
    } else {
        PyObject_GC_UnTrack(fresh_);
    }
}

PyObject* LoopCore::shared_context() {
    PyObject* current = PyThreadState_Get()->context;  // nullptr until this thread has one
    if (current && context_snapshot_ && same_context_vars(current, context_snapshot_))
        return Py_NewRef(context_snapshot_);
    PyObject* copy = PyContext_CopyCurrent();
    if (!copy) return nullptr;
    Py_XSETREF(context_snapshot_, Py_NewRef(copy));
    return copy;
}

void LoopCore::compact_timers() {
    // asyncio's rule: rebuild when more than 100 and more than half are cancelled.
    if (timer_cancelled_count_ <= 100 || timer_cancelled_count_ * 2 <= heap_.size()) return;
    std::vector<HandleObject*> dead;
    size_t keep = 0;
    for (HandleObject* h : heap_) {
        if (h->cancelled) {
            h->heap_index = -1;
            dead.push_back(h);
        } else {
            heap_[keep++] = h;
        }
    }
    heap_.resize(keep);
    for (size_t i = heap_.size() / 2; i-- > 0;) sift_down(i);
    for (size_t i = 0; i < heap_.size(); i++) heap_[i]->heap_index = static_cast<Py_ssize_t>(i);
    timer_cancelled_count_ = 0;
    for (HandleObject* h : dead) drop(h);
}

void LoopCore::schedule_due_timers() {
    // asyncio moves every timer due within the clock's resolution to the ready queue,
    // after it rebuilt a heap that is mostly cancelled timers (one pass, rather than a
    // pop of each that reaches the top: 200k call_later + cancel, 2.5x faster).
    compact_timers();
    refresh_clock();
    double t = now();
    pass_started(t);  // the clock reading doubles as loop.metrics()'s callback timing
    double end = (time_patched_ ? clock() : t) + 1e-9;
    while (!heap_.empty()) {
        HandleObject* h = heap_.front();
        if (h->cancelled) {
            heap_pop();
            timer_cancelled_count_--;
            drop(h);
            continue;
        }
        if (h->when >= end) break;
        heap_pop();
        ready_.push_back({h, {}});  // the heap's reference moves to the queue
    }
}

void LoopCore::arm_timer() {
    while (!heap_.empty() && heap_.front()->cancelled) {
        HandleObject* h = heap_pop();
        timer_cancelled_count_--;
        drop(h);
    }
    if (heap_.empty()) {
        uv_timer_stop(&timer_);
        return;
    }
    double delay = heap_.front()->when - clock();
    // Round up: a timer must never fire before its `when`. A far (or infinite) `when`
    // waits a day at a time: the conversion must stay in range (inf, 1e300).
    constexpr double kMaxWaitMs = 86400.0 * 1000.0;
    uint64_t ms;
    if (!(delay > 0)) ms = 0;
    else if (delay * 1000.0 >= kMaxWaitMs) ms = static_cast<uint64_t>(kMaxWaitMs);
    else ms = static_cast<uint64_t>(std::ceil(delay * 1000.0));
    uv_update_time(loop_);
    uv_timer_start(&timer_, on_timer, ms, 0);
}

// ---- running -------------------------------------------------------------------------

void LoopCore::set_fatal() {
    PyObject* exc = fetch_exception();
    if (fatal_) Py_XDECREF(exc);
    else fatal_ = exc;
    uv_stop(loop_);
}

void LoopCore::log_slow(HandleObject* h, double dt) {
    PyObject* r = PyObject_CallMethod(py_loop_, "_log_slow_callback", "Od", reinterpret_cast<PyObject*>(h), dt);
    if (r) Py_DECREF(r);
    else PyErr_WriteUnraisable(py_loop_);
}

void LoopCore::run_once_ready() {
    // Two copies of the pass: the one that may time callbacks on their own
    // (core/metrics.hpp) only when some are to be; the other is the loop's hot path as
    // it was without (measured: await sleep(0) 4% slower with one copy).
    if (metrics_.exact_left) run_pass<true>();
    else run_pass<false>();
}

template <bool kTimeEach>
void LoopCore::run_pass() {
    size_t ntodo = ready_.size();
    // The metrics' counts live in locals through the pass (registers, not a store
    // after every callback: measured, 200k call_later 1.05x slower with the stores)
    // and are written back when it ends.
    uint64_t ran = 0;
    uint32_t group = metrics_.group_n;
    for (size_t i = 0; i < ntodo && !ready_.empty(); i++) {
        Ready e = ready_.front();
        ready_.pop_front();
        HandleObject* h = e.h;
        if (!h && debug_) {
            // Debug mode reports slow callbacks with their handle: the call is one again.
            h = queued_call_handle(&e.call, py_loop_, this);
            if (!h) {
                queued_call_clear(&e.call);
                PyErr_WriteUnraisable(py_loop_);
                continue;
            }
        }
        int r = 0;
        bool watched = false;
        double traced_at = 0;
        if (!h || !h->cancelled) {
            ran++;
            if (stall_.on()) {
                watched = true;
                stall_.begin(h ? reinterpret_cast<PyObject*>(h) : e.call.callback);
            }
            if (trace_.on()) traced_at = now();
            if (debug_) {
                current_handle_ = h;
                double t0 = now();
                r = handle_run(h);
                current_handle_ = nullptr;
                double t1 = now();
                double dt = t1 - t0;
                // (not after a fatal exception: the repr must not run with it set)
                if (r == 0) metrics_.timed_one(reinterpret_cast<PyObject*>(h), dt);
                metrics_.group_start = t1;
                if (r == 0 && dt >= slow_callback_duration_) log_slow(h, dt);
            } else {
                r = h ? handle_run(h) : queued_call_run(&e.call, py_loop_, this);
                bool alone = false;
                if (kTimeEach && metrics_.exact_left) {
                    // Timed on its own (core/metrics.hpp), so what it ran is kept to be
                    // named: the callable, not the handle (a handle someone else holds
                    // must be tracked by the collector, see drop()).
                    metrics_.exact_left--;
                    if (r == 0) metrics_.ran(h ? h->callback : e.call.callback);
                    // The pass's last callback needs no clock reading of its own: its
                    // group of one ends at the next one, before any other callback runs.
                    alone = i + 1 < ntodo && !ready_.empty();
                }
                if (++group == LoopMetrics::kGroup || alone) {
                    metrics_.group_n = group;
                    // (not after a fatal exception: naming runs Python code)
                    if (r == 0) {
                        double t = now();
                        metrics_.close_group(t, alone);
                        metrics_.group_start = t;
                    }
                    group = 0;
                }
            }
        }
        if (watched) stall_.end(h ? reinterpret_cast<PyObject*>(h) : e.call.callback);
        if (traced_at > 0 && trace_.on())
            trace_.callback(traced_at, now(), h ? reinterpret_cast<PyObject*>(h) : e.call.callback);
        if (!flushes_.empty()) hold_or_flush(std::min(ntodo - i - 1, ready_.size()));  // what it wrote
        if (r < 0) set_fatal();  // (before the reference goes: a __del__ must not see the exception)
        if (h) drop(h);
        else queued_call_clear(&e.call);
        if (r < 0 || closed_) break;
    }
    metrics_.callbacks += ran;
    metrics_.group_n = group;
}

void LoopCore::wait_for_batch() {
    batch_waiters_.fetch_add(1);
    Py_BEGIN_ALLOW_THREADS
    {
        std::unique_lock<std::mutex> lock(batch_mu_);
        uint64_t gen = batch_gen_;
        batch_cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return batch_gen_ != gen; });
    }
    Py_END_ALLOW_THREADS
    batch_waiters_.fetch_sub(1);
}

void LoopCore::yield_gil() {
    Py_BEGIN_ALLOW_THREADS
    sched_yield();
    Py_END_ALLOW_THREADS
}

void LoopCore::batch_done() {
    if (batch_waiters_.load(std::memory_order_relaxed) == 0) return;
    {
        std::lock_guard<std::mutex> lock(batch_mu_);
        batch_gen_++;
    }
    batch_cv_.notify_all();
}

// libuv's count of the I/O events its polls reported (0 with a libuv too old to say).
static uint64_t uv_events(uv_loop_t* loop) {
#if UV_VERSION_HEX >= 0x012D00  // uv_metrics_info: 1.45
    uv_metrics_t m;
    uv_metrics_info(loop, &m);
    return m.events;
#else
    (void)loop;
    return 0;
#endif
}

// Is a libuv queue (struct uv__queue, or the void*[2] of older libuv) empty?
template <typename Q>
static bool uv_queue_empty(const Q* q) {
    return *reinterpret_cast<void* const*>(q) == static_cast<const void*>(q);
}

// Would this iteration's poll find nothing? Yes when the last poll found nothing,
// nothing became ready since (peek_), and libuv holds no work of its own for its turn:
// no watcher to (re)register, no deferred callback, no handle closing.
bool LoopCore::io_quiet() {
#if UV_VERSION_HEX >= 0x012D00
    if (!uv_queue_empty(&loop_->watcher_queue) || !uv_queue_empty(&loop_->pending_queue) ||
        loop_->closing_handles)
        return false;
    if (uv_events(loop_) != events_before_poll_) return false;
    return !peek_.anything_ready();
#else
    return false;
#endif
}

void LoopCore::run_batch() {
    if (fatal_) return;
    run_ready_pass();
    // More iterations without libuv's turn, while callbacks are ready (the poll would
    // not block) and that poll would find nothing: with nothing to poll (no fd,
    // transport or request watched), or when io_quiet() says so. call_soon_threadsafe
    // queues directly and Python's eval loop runs signal handlers, so nothing is
    // missed; the cap lets libuv do its housekeeping. (asyncio polls once an
    // iteration: an event that came since the last poll is still seen by the next
    // iteration, as there.)
    for (int pass = 0; pass < kMaxPollFreeTurns && !ready_.empty() && !fatal_ && !stopping_ && !closed_ &&
                       (!has_io_sources() || io_quiet());
         pass++) {
        run_ready_pass();
    }
}

void LoopCore::run_flushes() {
    while (!flushes_.empty()) {
        std::vector<std::pair<PyObject*, FlushFn>> batch;
        batch.swap(flushes_);
        for (auto& [owner, fn] : batch) {
            fn(owner);
            Py_DECREF(owner);
        }
    }
    hold_started_ = 0;
}

// A callback returned with output held (see queue_flush), and `left` callbacks are
// still to run in this pass. The output waits while the rest of the pass is expected
// to take kHoldTail or more (left times the time per callback measured since the
// previous look, or in an earlier pass), and at most kHoldMax from the first hold:
// then what the pass's callbacks wrote leaves in a few bursts, and a peer on loopback
// is woken once for several responses instead of once for each (a wake-up is an
// inter-processor interrupt, charged to the writer's CPU time). It leaves with time to
// spare before the poll, so that a fast peer's answers are there when the loop looks:
// a pass too short for that (an echo's few connections) sends as each callback
// returns. A held write waits at most kHoldMax and one callback more than asyncio's
// send() in write(): the loop looks after every callback while anything is held.
// (HTTP keep-alive, issue 26's fifth session: aiohttp hello 11%, uvicorn hello 8%,
// 16 KiB JSON 6-7% less server CPU per request; echo rows unchanged.)
void LoopCore::hold_or_flush(size_t left) {
    double t = now();
    if (mark_at_ > 0 && mark_left_ > left) per_callback_ = (t - mark_at_) / static_cast<double>(mark_left_ - left);
    mark_at_ = t;
    mark_left_ = left;
    if (hold_started_ == 0) hold_started_ = t;
    if (static_cast<double>(left) * per_callback_ < kHoldTail || t - hold_started_ >= kHoldMax) run_flushes();
}

// One pass over the ready queue; what it held goes out at its end.
void LoopCore::run_ready_pass() {
    schedule_due_timers();
    running_callbacks_ = true;
    mark_at_ = 0;
    run_once_ready();
    running_callbacks_ = false;
    if (!flushes_.empty()) run_flushes();
    batch_done();
}

void LoopCore::check_write_progress() {
    std::vector<std::pair<PyObject*, WatchFn>> watches;
    watches.swap(write_watches_);
    for (auto& [owner, fn] : watches) {
        if (!closed_ && fn(owner)) write_watches_.push_back({owner, fn});  // (fn may add more)
        else Py_DECREF(owner);
    }
}

void LoopCore::on_prepare(uv_prepare_t* handle) {
    auto* self = static_cast<LoopCore*>(handle->data);
    if (self->saved_tstate_) self->retake_gil();  // (the open group of callbacks goes on)
    self->metrics_.iterations++;
    if (self->trace_.on()) self->trace_.counters(now());
    self->run_batch();
    if (self->closed_) return;
    bool busy = !self->ready_.empty() || self->stopping_ || self->fatal_;
    double t = 0;
    if (!busy) {
        // The open group of callbacks ends before a blocking poll. First: it may run
        // Python code (a name; a finalizer as what the last callback ran goes) that
        // writes or schedules something.
        t = now();
        self->metrics_.close_group(t);
        if (self->closed_) return;
    }
    self->run_flushes();  // what the callbacks wrote, before the poll
    self->compact_timers();
    busy = !self->ready_.empty() || self->stopping_ || self->fatal_;
    self->queue_io_ = busy;
    if (busy) uv_idle_start(&self->idle_, on_idle);
    else uv_idle_stop(&self->idle_);
    self->arm_timer();
    // Let other Python threads run while the loop waits for I/O. The poll cannot block
    // while the idle handle is active: then keep the GIL. Otherwise release it, even
    // when libuv may still decide not to block: uv_backend_timeout() cannot tell (it
    // answers 0 whenever a watcher change is queued, and the poll then blocks all the same).
    if (!busy) {
        if (self->stall_.on()) self->stall_.idle();
        self->metrics_.idle_since = t;
        self->saved_tstate_ = PyEval_SaveThread();
    }
    if (busy && self->trace_.on()) self->io_started_ = now();  // (a blocking poll: retake_gil sets it)
    // The poll comes next: what the peek saw until now, it sees too.
    self->peek_.before_poll();
    self->events_before_poll_ = uv_events(self->loop_);
}

void LoopCore::retake_gil() {
    PyThreadState* t = saved_tstate_;
    saved_tstate_ = nullptr;
    // Time blocked in the poll (not the wait for the GIL) is the loop's idle time.
    double idle_end = metrics_.idle_since > 0 ? now() : 0;
    PyEval_RestoreThread(t);
    if (idle_end > 0) {
        metrics_.idle_time += idle_end - metrics_.idle_since;
        if (trace_.on()) {
            trace_.idle(metrics_.idle_since, idle_end);
            io_started_ = idle_end;
        }
        metrics_.idle_since = 0;
    }
    metrics_.woke();
}

void LoopCore::on_check(uv_check_t* handle) {
    // After the poll: stop() (or an exception that must leave run_forever) takes effect
    // once this iteration's I/O callbacks have run, as asyncio's run_forever does.
    auto* self = static_cast<LoopCore*>(handle->data);
    if (self->trace_.on() && self->io_started_ > 0) {
        self->ensure_gil();
        self->trace_.io_turn(self->io_started_, now());
        self->io_started_ = 0;
    }
    self->run_flushes();  // what the I/O callbacks wrote
    if (!self->write_watches_.empty()) {
        self->ensure_gil();
        self->check_write_progress();
    }
    if (self->stopping_ || self->fatal_) uv_stop(self->loop_);
}

void LoopCore::on_timer(uv_timer_t*) {
    // A TimerHandle is due: waking the poll is all; the next prepare moves it to the
    // ready queue.
}

void LoopCore::on_async(uv_async_t*) {
    // call_soon_threadsafe already queued its handle (under the GIL); this only woke us.
}

void LoopCore::dispatch_signal(int signum) {
    auto it = signals_.find(signum);
    if (it == signals_.end()) return;
    HandleObject* h = it->second;
    if (h->cancelled) {
        // asyncio removes a handler whose handle was cancelled when its signal comes.
        PyObject* r = PyObject_CallMethod(py_loop_, "remove_signal_handler", "i", signum);
        if (r) Py_DECREF(r);
        else PyErr_WriteUnraisable(py_loop_);
        return;
    }
    Py_INCREF(h);
    push_ready(h);
}

void LoopCore::on_wakeup(uv_poll_t* handle, int, int) {
    auto* self = static_cast<LoopCore*>(handle->data);
    self->ensure_gil();
    unsigned char buf[256];
    int fd = -1;
    uv_fileno(reinterpret_cast<uv_handle_t*>(handle), &fd);
    ssize_t n;
    // Python's C signal handler writes each signal's number here.
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0)
        for (ssize_t i = 0; i < n; i++) self->dispatch_signal(buf[i]);
    // Run Python's own handlers now (SIGINT's default one raises KeyboardInterrupt,
    // which leaves run_forever).
    if (PyErr_CheckSignals() < 0) self->set_fatal();
}

void LoopCore::add_signal(int signum, HandleObject* h) {
    Py_INCREF(h);
    HandleObject*& slot = signals_[signum];
    HandleObject* old = slot;
    slot = h;
    if (old) {
        handle_cancel(old);
        Py_DECREF(old);
    }
}

int LoopCore::remove_signal(int signum) {
    auto it = signals_.find(signum);
    if (it == signals_.end()) return 0;
    HandleObject* h = it->second;
    signals_.erase(it);
    handle_cancel(h);
    Py_DECREF(h);
    return 1;
}

int LoopCore::run(int wakeup_fd) {
    running_ = true;
    metrics_.run_started = now();
    metrics_.group_n = 0;
    metrics_.woke();
    thread_id_ = PyThread_get_thread_ident();
    stall_.run_started(thread_id_);
    if (trace_.on()) trace_.run_started();
    if (wakeup_fd >= 0) {
        // The Python face passes the same socket on every run of a loop: watch it once.
        if (!wakeup_active_) {
            int r = uv_poll_init_socket(loop_, &wakeup_, wakeup_fd);
            if (r < 0) {
                running_ = false;
                stall_.run_ended();
                return set_uv_error(r), -1;
            }
            wakeup_.data = this;
            uv_unref(reinterpret_cast<uv_handle_t*>(&wakeup_));
            wakeup_active_ = true;
        }
        uv_poll_start(&wakeup_, UV_READABLE, on_wakeup);
    }
    uv_prepare_start(&prepare_, on_prepare);
    uv_check_start(&check_, on_check);

    uv_run(loop_, UV_RUN_DEFAULT);
    ensure_gil();
    run_flushes();
    stall_.run_ended();

    uv_prepare_stop(&prepare_);
    uv_check_stop(&check_);
    uv_idle_stop(&idle_);
    uv_timer_stop(&timer_);
    if (wakeup_active_) uv_poll_stop(&wakeup_);
    running_ = false;
    stopping_ = false;
    double t_end = now();
    metrics_.close_group(t_end);
    metrics_.run_time += t_end - metrics_.run_started;
    metrics_.run_started = 0;
    batch_done();  // threads waiting for a batch: the loop has stopped
    if (fatal_) {
        restore_exception(fatal_);
        fatal_ = nullptr;
        return -1;
    }
    return 0;
}

void LoopCore::clear_queues() {
    std::deque<Ready> ready;
    ready.swap(ready_);
    std::vector<HandleObject*> heap;
    heap.swap(heap_);
    std::vector<std::pair<PyObject*, FlushFn>> flushes;
    flushes.swap(flushes_);
    std::vector<std::pair<PyObject*, WatchFn>> watches;
    watches.swap(write_watches_);
    timer_cancelled_count_ = 0;
    for (HandleObject* h : heap) h->heap_index = -1;
    // Dropping references can run arbitrary Python code (__del__): do it last.
    for (Ready& e : ready) {
        if (e.h) drop(e.h);
        else queued_call_clear(&e.call);
    }
    for (HandleObject* h : heap) drop(h);
    for (auto& f : flushes) Py_DECREF(f.first);
    for (auto& w : watches) Py_DECREF(w.first);
    Py_CLEAR(context_snapshot_);
}

void LoopCore::clear_all() {
    clear_queues();
    fdw_.clear();
    std::unordered_map<int, HandleObject*> sigs;
    sigs.swap(signals_);
    for (auto& kv : sigs) Py_DECREF(kv.second);
    Py_CLEAR(metrics_.slowest_repr);
    Py_CLEAR(metrics_.named_what);
    Py_CLEAR(metrics_.last);
    stall_.clear();
    trace_.clear();
}

// A queued handle the collector does not track is the queue's alone (see
// note_queued): what it refers to is visited as the loop's.
static int visit_queued(HandleObject* h, visitproc visit, void* arg) {
    if (PyObject_GC_IsTracked(reinterpret_cast<PyObject*>(h))) return visit(reinterpret_cast<PyObject*>(h), arg);
    return handle_traverse(h, visit, arg);
}

int LoopCore::traverse(visitproc visit, void* arg) {
    // A running loop is reachable (run_forever holds it), and so is everything its queues
    // hold: nothing there can be garbage, and not reporting it only makes the collector
    // treat it as reachable from outside, which it is. Reporting it made each full
    // collection walk every queued handle (gather of 200k: 10 full collections, 1.8x
    // rsloop's collector time). A loop that is not running may be garbage: then what
    // its queues hold is reported, so that a dropped loop and its callbacks are freed.
    if (!running_) {
        for (const Ready& e : ready_) {
            if (int r = e.h ? visit_queued(e.h, visit, arg) : queued_call_traverse(&e.call, visit, arg)) return r;
        }
        for (HandleObject* h : heap_) {
            if (int r = visit_queued(h, visit, arg)) return r;
        }
    }
    Py_VISIT(context_snapshot_);
    Py_VISIT(metrics_.last);
    for (auto& f : flushes_) Py_VISIT(f.first);
    for (auto& w : write_watches_) Py_VISIT(w.first);
    for (auto& kv : signals_) Py_VISIT(kv.second);
    // libuv's pointers to open transports stand for one reference each (their
    // self-reference): the loop holds them, so a dropped loop and its transports are
    // one cycle the collector can free.
    for (auto& kv : tracked_) Py_VISIT(kv.second.owner);
    if (int r = trace_.traverse(visit, arg)) return r;
    return fdw_.traverse(visit, arg);
}

bool LoopCore::run_closing() {
    // Close callbacks and finished requests run with the GIL; handles still closing are
    // waited for without it.
    uv_run(loop_, UV_RUN_NOWAIT);
    while (uv_loop_alive(loop_)) {
        if (loop_->active_handles == 0 && loop_->closing_handles == nullptr && !pool_reqs_.empty()) return false;
        saved_tstate_ = PyEval_SaveThread();
        uv_run(loop_, UV_RUN_ONCE);
        ensure_gil();
    }
    return true;
}

void LoopCore::hand_off_running_lookups() {
    // Lookups a pool thread is running cannot be stopped, and their thread reports to
    // this uv_loop_t when it is done (a slow resolver takes seconds): asyncio's close()
    // does not wait for its executor's lookups either. The requests drop their Python
    // references now; a C++ thread (no Python in it) runs the uv_loop_t until the last
    // completes, then closes and frees it. The core keeps a fresh zeroed uv_loop_t.
    std::unordered_map<uv_req_t*, RequestOrphaner> reqs;
    reqs.swap(pool_reqs_);
    for (auto& [r, orphan] : reqs) orphan(r);
    uv_loop_t* old = loop_;
    old->data = nullptr;
    try {
        std::thread([old] {
            uv_run(old, UV_RUN_DEFAULT);
            if (uv_loop_close(old) == 0) delete old;
        }).detach();
    } catch (const std::system_error&) {
        // No thread to be had: wait here, without the GIL, as before.
        saved_tstate_ = PyEval_SaveThread();
        uv_run(old, UV_RUN_DEFAULT);
        ensure_gil();
        if (uv_loop_close(old) == 0) delete old;
    }
    loop_ = new uv_loop_t();
}

int LoopCore::close() {
    if (closed_) return 0;
    run_flushes();  // held-back output goes out before the transports close
    closed_ = true;
    stall_.shutdown();  // (its thread outlives runs)
    clear_queues();
    if (!uv_ready_) return 0;
    peek_.close();
    fdw_.close();
    std::unordered_map<int, HandleObject*> sigs;
    sigs.swap(signals_);
    for (auto& kv : sigs) {
        handle_cancel(kv.second);
        Py_DECREF(kv.second);
    }
    // Transports the user left open: their owners close them (libuv needs every handle
    // closed before the loop can be), or the uv_run below would wait for them forever.
    std::vector<std::pair<uv_handle_t*, Tracked>> tracked(tracked_.begin(), tracked_.end());
    for (auto& [h, t] : tracked) t.closer(h);
    // Lookups no pool thread has started are cancelled (their callbacks see
    // UV_EAI_CANCELED and settle nothing: the loop is closed).
    std::vector<uv_req_t*> reqs;
    for (auto& kv : pool_reqs_) reqs.push_back(kv.first);
    for (uv_req_t* r : reqs) uv_cancel(r);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
    if (wakeup_active_) uv_close(reinterpret_cast<uv_handle_t*>(&wakeup_), nullptr);
    wakeup_active_ = false;
    uv_ready_ = false;
    bool only_lookups_left = !run_closing();
    int r = only_lookups_left ? UV_EBUSY : uv_loop_close(loop_);
    if (r == UV_EBUSY) {
        // A handle we do not own a record of: close it too rather than leak the loop
        // (after the close callbacks above, which may close handles of their own).
        uv_walk(loop_, [](uv_handle_t* h, void*) {
            if (!uv_is_closing(h)) uv_close(h, nullptr);
        }, nullptr);
        if (!run_closing()) {
            hand_off_running_lookups();  // lookups a pool thread runs: no waiting for them
            return 0;
        }
        r = uv_loop_close(loop_);
    }
    if (r < 0) return set_uv_error(r), -1;
    return 0;
}

}  // namespace pyloop
