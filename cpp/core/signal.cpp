#include "core/signal.hpp"

#include "core/loop.hpp"
#include "uv/error.hpp"

namespace pyloop {

int SignalWatcher::start() {
    int r = uv_signal_init(core_->uv(), &sig_);
    if (r < 0) return r;
    initialized_ = true;
    r = uv_signal_start(&sig_, on_signal, signum_);
    if (r < 0) return r;
    // A signal handler alone does not keep run_forever going (asyncio's doesn't either,
    // but asyncio's loop never exits by itself, and neither does ours: see LoopCore::init).
    uv_unref(reinterpret_cast<uv_handle_t*>(&sig_));
    return 0;
}

void SignalWatcher::set_handle(HandleObject* h) {
    HandleObject* old = handle_;
    handle_ = h;
    if (old) {
        handle_cancel(old);
        Py_DECREF(old);
    }
}

void SignalWatcher::close() {
    uv_signal_stop(&sig_);
    uv_close(reinterpret_cast<uv_handle_t*>(&sig_), on_close);
}

void SignalWatcher::on_close(uv_handle_t* h) {
    auto* self = static_cast<SignalWatcher*>(h->data);
    self->core_->ensure_gil();
    Py_CLEAR(self->handle_);
    delete self;
}

void SignalWatcher::on_signal(uv_signal_t* h, int) {
    auto* self = static_cast<SignalWatcher*>(h->data);
    LoopCore* core = self->core_;
    core->ensure_gil();
    HandleObject* handle = self->handle_;
    if (!handle) return;
    if (handle->cancelled) {
        // asyncio removes a handler whose handle was cancelled when the signal comes.
        core->remove_signal(self->signum_);
        return;
    }
    Py_INCREF(handle);
    core->push_ready(handle);
}

// ---- LoopCore's side ------------------------------------------------------------------

int LoopCore::add_signal(int signum, HandleObject* h) {
    auto it = signals_.find(signum);
    if (it != signals_.end()) {
        Py_INCREF(h);
        it->second->set_handle(h);
        return 0;
    }
    auto* w = new SignalWatcher(this, signum);
    int r = w->start();
    if (r < 0) {
        if (w->initialized()) w->close();
        else delete w;
        return set_uv_error(r), -1;
    }
    Py_INCREF(h);
    w->set_handle(h);
    signals_[signum] = w;
    return 0;
}

int LoopCore::remove_signal(int signum) {
    auto it = signals_.find(signum);
    if (it == signals_.end()) return 0;
    SignalWatcher* w = it->second;
    signals_.erase(it);
    w->set_handle(nullptr);
    w->close();
    return 1;
}

}  // namespace pyloop
