// FdWatchers: add_reader/add_writer over an epoll instance of pyloop's own.
//
// libuv aborts the process when an fd it watches with uv_poll was closed (or became
// something epoll refuses) before its next poll applies a change. A user may close a
// watched socket at any time (asyncio survives it), so user fds never go to libuv:
// pyloop registers them in its own epoll instance, whose epoll_ctl errors it reports
// or forgives as asyncio's selector does, and libuv watches only that epoll fd.
#pragma once
#include "core/handle.hpp"
#include "core/metrics.hpp"

#include <uv.h>

#include <cstdint>
#include <unordered_map>

namespace pyloop {

class LoopCore;

class FdWatchers {
  public:
    explicit FdWatchers(LoopCore* core) : core_(core) {}
    FdWatchers(const FdWatchers&) = delete;
    FdWatchers& operator=(const FdWatchers&) = delete;

    // A waiter that C++ code runs itself when its fd is ready (sock_* operations):
    // fn(h->callback) is called straight from the poll (through the ready queue only
    // when asyncio would have queued it: io_must_queue()). Such a watch is registered
    // EPOLLONESHOT when it is the fd's only kind, and its registration is kept
    // (disarmed) after it is removed, so the next wait on that fd costs one epoll_ctl
    // (a MOD) instead of an ADD and a DEL.
    using DirectFn = void (*)(PyObject* callback);

    // Watches fd for reading (writer=false) or writing with h (a new reference is
    // taken), replacing and cancelling the previous handle. -1 with OSError set when
    // the kernel refuses the fd (closed: EBADF; a regular file: EPERM), as asyncio.
    // `kind`: what the watch is for, in loop.metrics().
    int add(int fd, bool writer, HandleObject* h, DirectFn direct = nullptr, HandleKind kind = kKindPoller);
    // 1 removed, 0 nothing there. Never fails: a vanished fd is simply forgotten.
    int remove(int fd, bool writer);
    // Removes the watch only if it is still h (not replaced since): 1 removed, 0 not.
    int remove_if(int fd, bool writer, HandleObject* h);
    // Is any fd watched?
    bool active() const { return slots_ > 0; }
    // Adds the number of watched fds of each kind to counts[kKindCount].
    void count_kinds(uint64_t* counts) const;
    // At loop close: forget every watch and release the epoll instance (asynchronous
    // for the uv_poll on it; the epoll fd is closed at once).
    void close();
    int traverse(visitproc visit, void* arg);
    void clear();  // forgets every watch (tp_clear of the loop; close())

  private:
    struct Watch {
        HandleObject* reader = nullptr;  // owned
        HandleObject* writer = nullptr;  // owned
        DirectFn reader_fn = nullptr;
        DirectFn writer_fn = nullptr;
        uint32_t events = 0;             // what epoll has armed (0: nothing, or disarmed)
        HandleKind reader_kind = kKindPoller;
        HandleKind writer_kind = kKindPoller;
        bool registered = false;         // is the fd in the epoll set?
    };
    int ensure_open();      // -1 with an exception set
    int apply(int fd, Watch& w);  // 0 or an errno
    void forget(int fd);    // drops the watch and its registration
    // Clears a slot (the caller releases the handle); drops the watch when it is empty,
    // keeping a disarmed one-shot registration for the next wait.
    void clear_slot(std::unordered_map<int, Watch>::iterator it, bool writer);
    void dispatch(int fd, bool writer);
    static void on_ready(uv_poll_t* h, int status, int events);

    LoopCore* core_;
    int epfd_ = -1;
    uv_poll_t poll_;  // on epfd_, while epfd_ >= 0
    std::unordered_map<int, Watch> watches_;
    size_t slots_ = 0;  // handles held (watches_ also keeps disarmed registrations)
};

}  // namespace pyloop
