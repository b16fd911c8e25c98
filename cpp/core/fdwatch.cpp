#include "core/fdwatch.hpp"

#include "core/loop.hpp"
#include "uv/error.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

namespace pyloop {

int FdWatchers::ensure_open() {
    if (epfd_ >= 0) return 0;
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) return set_uv_error(-errno), -1;
    int r = uv_poll_init(core_->uv(), &poll_, fd);
    if (r < 0) {
        ::close(fd);
        return set_uv_error(r), -1;
    }
    poll_.data = this;
    // Readers alone do not keep run_forever going (nothing does but stop()).
    uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
    r = uv_poll_start(&poll_, UV_READABLE, on_ready);
    if (r < 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
        ::close(fd);
        return set_uv_error(r), -1;
    }
    epfd_ = fd;
    return 0;
}

int FdWatchers::apply(int fd, Watch& w) {
    // One-shot when every waiter is a direct one: each wake-up then disarms the fd in
    // the kernel, and the next wait re-arms it with one MOD.
    bool once = (w.reader || w.writer) && (!w.reader || w.reader_fn) && (!w.writer || w.writer_fn);
    uint32_t want = (w.reader ? EPOLLIN : 0) | (w.writer ? EPOLLOUT : 0);
    if (want && once) want |= EPOLLONESHOT;
    if (want == w.events) return 0;
    struct epoll_event ev = {};
    if (want == 0) {
        if (w.registered) {
            // Fails harmlessly when the fd was closed meanwhile (the kernel forgot it).
            epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
        }
        w.events = 0;
        w.registered = false;
        return 0;
    }
    ev.events = want;
    ev.data.fd = fd;
    int op = w.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(epfd_, op, fd, &ev) < 0) {
        // MOD of an fd the kernel dropped (closed, maybe reused since): register anew.
        // ADD of one still registered (our record was reset): modify it.
        if (op == EPOLL_CTL_MOD && errno == ENOENT) op = EPOLL_CTL_ADD;
        else if (op == EPOLL_CTL_ADD && errno == EEXIST) op = EPOLL_CTL_MOD;
        else return errno;
        if (epoll_ctl(epfd_, op, fd, &ev) < 0) return errno;
    }
    w.events = want;
    w.registered = true;
    return 0;
}

int FdWatchers::add(int fd, bool writer, HandleObject* h, DirectFn direct, HandleKind kind) {
    if (ensure_open() < 0) return -1;
    auto [it, fresh] = watches_.try_emplace(fd);
    Watch& w = it->second;
    HandleObject*& slot = writer ? w.writer : w.reader;
    DirectFn& fn = writer ? w.writer_fn : w.reader_fn;
    HandleObject* old = slot;
    DirectFn old_fn = fn;
    Py_INCREF(h);
    slot = h;
    fn = direct;
    (writer ? w.writer_kind : w.reader_kind) = kind;
    int err = apply(fd, w);
    if (err) {
        slot = old;
        fn = old_fn;
        Py_DECREF(h);
        if (fresh) watches_.erase(it);
        else apply(fd, w);
        return set_uv_error(-err), -1;
    }
    if (old) {
        handle_cancel(old);
        Py_DECREF(old);
    } else {
        slots_++;
    }
    return 0;
}

void FdWatchers::forget(int fd) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;
    Watch w = it->second;
    watches_.erase(it);
    slots_ -= (w.reader ? 1 : 0) + (w.writer ? 1 : 0);
    struct epoll_event ev = {};
    if (w.registered && epfd_ >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
    // Dropping references may run arbitrary code (which may add watches): do it last.
    Py_XDECREF(w.reader);
    Py_XDECREF(w.writer);
}

void FdWatchers::clear_slot(std::unordered_map<int, Watch>::iterator it, bool writer) {
    Watch& w = it->second;
    (writer ? w.writer : w.reader) = nullptr;
    (writer ? w.writer_fn : w.reader_fn) = nullptr;
    slots_--;
    if (w.reader || w.writer) {
        apply(it->first, w);  // a MOD to the remaining direction; an error leaves it as it was
    } else if (w.registered && w.events == 0) {
        // A one-shot registration the kernel has disarmed: kept for the fd's next wait.
        // (Closed and reused meanwhile, the MOD fails with ENOENT and becomes an ADD.)
    } else {
        int fd = it->first;
        bool registered = w.registered;
        watches_.erase(it);  // w is gone from here on
        struct epoll_event ev = {};
        if (registered) epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev);
    }
}

int FdWatchers::remove(int fd, bool writer) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return 0;
    HandleObject* old = writer ? it->second.writer : it->second.reader;
    if (!old) return 0;
    clear_slot(it, writer);
    handle_cancel(old);
    Py_DECREF(old);
    return 1;
}

int FdWatchers::remove_if(int fd, bool writer, HandleObject* h) {
    auto it = watches_.find(fd);
    if (it == watches_.end() || (writer ? it->second.writer : it->second.reader) != h) return 0;
    return remove(fd, writer);
}

void FdWatchers::dispatch(int fd, bool writer) {
    auto it = watches_.find(fd);
    if (it == watches_.end()) return;
    HandleObject* h = writer ? it->second.writer : it->second.reader;
    if (!h) return;
    if (h->cancelled) {
        // asyncio drops a cancelled reader/writer when its fd becomes ready.
        remove(fd, writer);
        return;
    }
    DirectFn fn = writer ? it->second.writer_fn : it->second.reader_fn;
    if (fn && !core_->io_must_queue()) {
        PyObject* cb = Py_NewRef(h->callback);  // the waiter may remove itself
        if (core_->stall().on()) core_->stall().begin(nullptr);  // an I/O callback of its own
        fn(cb);
        Py_DECREF(cb);
        return;
    }
    Py_INCREF(h);
    core_->push_ready(h);
}

void FdWatchers::on_ready(uv_poll_t* handle, int, int) {
    auto* self = static_cast<FdWatchers*>(handle->data);
    self->core_->ensure_gil();
    struct epoll_event evs[256];
    int n = epoll_wait(self->epfd_, evs, 256, 0);
    for (int i = 0; i < n; i++) {
        int fd = evs[i].data.fd;
        uint32_t e = evs[i].events;
        auto it = self->watches_.find(fd);
        if (it == self->watches_.end()) continue;
        bool oneshot = it->second.events & EPOLLONESHOT;
        if (oneshot) it->second.events = 0;  // the kernel has disarmed the fd
        // As asyncio's EpollSelector: anything but EPOLLOUT wakes the reader, anything
        // but EPOLLIN the writer (errors and hang-ups wake both).
        if (e & ~static_cast<uint32_t>(EPOLLOUT)) self->dispatch(fd, false);
        if (e & ~static_cast<uint32_t>(EPOLLIN)) self->dispatch(fd, true);
        if (self->epfd_ < 0) return;  // a finalizer closed the loop
        if (oneshot) {
            // Re-arm for whoever still waits (the other direction; a waiter that found
            // nothing to do, or one queued to run later).
            it = self->watches_.find(fd);
            if (it != self->watches_.end() && (it->second.reader || it->second.writer)) self->apply(fd, it->second);
        }
    }
}

void FdWatchers::close() {
    if (epfd_ >= 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
        ::close(epfd_);  // takes every registration with it
        epfd_ = -1;
    }
    clear();
}

int FdWatchers::traverse(visitproc visit, void* arg) {
    for (auto& kv : watches_) {
        Py_VISIT(kv.second.reader);
        Py_VISIT(kv.second.writer);
    }
    return 0;
}

void FdWatchers::clear() {
    // One at a time: dropping a handle may run code that adds a watch; that one goes too.
    while (!watches_.empty()) forget(watches_.begin()->first);
}

void FdWatchers::count_kinds(uint64_t* counts) const {
    // One per fd: what its reader is for, else its writer.
    for (auto& [fd, w] : watches_) {
        if (w.reader) counts[w.reader_kind]++;
        else if (w.writer) counts[w.writer_kind]++;
    }
}

}  // namespace pyloop
