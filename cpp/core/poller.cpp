#include "core/poller.hpp"

#include "core/loop.hpp"
#include "uv/error.hpp"

namespace pyloop {

int Poller::init() { return uv_poll_init(core_->uv(), &poll_, fd_); }

int Poller::update() {
    int events = (reader_ ? UV_READABLE : 0) | (writer_ ? UV_WRITABLE : 0);
    if (events == events_) return 0;
    bool was_active = events_ != 0;
    // Stop before every change so that libuv registers the fd afresh (EPOLL_CTL_ADD):
    // the fd may have been closed and reused behind our back, and a MOD of an fd the
    // kernel already forgot would fail.
    uv_poll_stop(&poll_);
    events_ = 0;
    int r = 0;
    // A poller with nothing to watch stays (stopped) until the loop closes: closing it
    // while a new uv_poll watched the same fd would make libuv remove that one's
    // registration from epoll (uv_close runs EPOLL_CTL_DEL on the fd number).
    if (events != 0) {
        r = uv_poll_start(&poll_, events, on_poll);
        if (r == 0) events_ = events;
    }
    bool active = events_ != 0;
    if (active != was_active) core_->poller_activity(active ? 1 : -1);
    return r;
}

void Poller::close() {
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), on_close);
}

void Poller::on_close(uv_handle_t* h) {
    auto* self = static_cast<Poller*>(h->data);
    self->core_->ensure_gil();
    Py_CLEAR(self->reader_);
    Py_CLEAR(self->writer_);
    delete self;
}

void Poller::dispatch(bool writer) {
    HandleObject* h = slot(writer);
    if (!h) return;
    if (h->cancelled) {
        // asyncio drops a cancelled reader/writer when its fd becomes ready.
        slot(writer) = nullptr;
        int r = update();
        Py_DECREF(h);
        (void)r;
        return;
    }
    Py_INCREF(h);
    core_->push_ready(h);
}

void Poller::on_poll(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<Poller*>(handle->data);
    self->core_->ensure_gil();
    if (status < 0) events = UV_READABLE | UV_WRITABLE;  // an error wakes both sides, as epoll does
    // update() may close (and later delete) the poller; it stays valid until the close callback.
    if (events & UV_READABLE) self->dispatch(false);
    if (events & UV_WRITABLE) self->dispatch(true);
}

// ---- LoopCore's side ------------------------------------------------------------------

int LoopCore::add_poll(int fd, bool writer, HandleObject* h) {
    Poller* p;
    auto it = pollers_.find(fd);
    if (it == pollers_.end()) {
        p = new Poller(this, fd);
        int r = p->init();
        if (r < 0) {
            delete p;
            return set_uv_error(r), -1;
        }
        pollers_[fd] = p;
    } else {
        p = it->second;
    }
    HandleObject* old = p->slot(writer);
    Py_INCREF(h);
    p->slot(writer) = h;
    int r = p->update();
    if (r < 0) {
        p->slot(writer) = old;
        Py_DECREF(h);
        if (!old) p->update();
        return set_uv_error(r), -1;
    }
    if (old) {
        handle_cancel(old);
        Py_DECREF(old);
    }
    return 0;
}

int LoopCore::remove_poll(int fd, bool writer) {
    auto it = pollers_.find(fd);
    if (it == pollers_.end()) return 0;
    Poller* p = it->second;
    HandleObject* old = p->slot(writer);
    if (!old) return 0;
    p->slot(writer) = nullptr;
    int r = p->update();
    handle_cancel(old);
    Py_DECREF(old);
    if (r < 0) return set_uv_error(r), -1;
    return 1;
}

}  // namespace pyloop
