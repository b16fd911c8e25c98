// FdWatchers: add_reader/add_writer over an epoll instance of pyloop's own.
//
// libuv aborts the process when an fd it watches with uv_poll was closed (or became
// something epoll refuses) before its next poll applies a change. A user may close a
// watched socket at any time (asyncio survives it), so user fds never go to libuv:
// pyloop registers them in its own epoll instance, whose epoll_ctl errors it reports
// or forgives as asyncio's selector does, and libuv watches only that epoll fd.
#pragma once
#include "core/handle.hpp"

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

    // Watches fd for reading (writer=false) or writing with h (a new reference is
    // taken), replacing and cancelling the previous handle. -1 with OSError set when
    // the kernel refuses the fd (closed: EBADF; a regular file: EPERM), as asyncio.
    int add(int fd, bool writer, HandleObject* h);
    // 1 removed, 0 nothing there. Never fails: a vanished fd is simply forgotten.
    int remove(int fd, bool writer);
    // Is any fd watched?
    bool active() const { return !watches_.empty(); }
    // At loop close: forget every watch and release the epoll instance (asynchronous
    // for the uv_poll on it; the epoll fd is closed at once).
    void close();
    int traverse(visitproc visit, void* arg);
    void clear();  // forgets every watch (tp_clear of the loop; close())

  private:
    struct Watch {
        HandleObject* reader = nullptr;  // owned
        HandleObject* writer = nullptr;  // owned
        uint32_t events = 0;             // what epoll has registered
    };
    int ensure_open();      // -1 with an exception set
    int apply(int fd, Watch& w);  // 0 or an errno
    void forget(int fd);    // drops the watch and its registration
    void dispatch(int fd, bool writer);
    static void on_ready(uv_poll_t* h, int status, int events);

    LoopCore* core_;
    int epfd_ = -1;
    uv_poll_t poll_;  // on epfd_, while epfd_ >= 0
    std::unordered_map<int, Watch> watches_;
};

}  // namespace pyloop
