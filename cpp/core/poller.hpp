// Poller: one uv_poll_t per file descriptor behind add_reader/add_writer.
#pragma once
#include "core/handle.hpp"

#include <uv.h>

namespace pyloop {

class LoopCore;

class Poller {
  public:
    Poller(LoopCore* core, int fd) : core_(core), fd_(fd) { poll_.data = this; }
    int init();            // libuv error code
    int update();          // libuv error code; closes the poller when nothing is watched
    void close();          // asynchronous: deletes itself in the close callback
    HandleObject*& slot(bool writer) { return writer ? writer_ : reader_; }

  private:
    static void on_poll(uv_poll_t* h, int status, int events);
    static void on_close(uv_handle_t* h);
    void dispatch(bool writer);

    uv_poll_t poll_;
    LoopCore* core_;
    int fd_;
    int events_ = 0;
    HandleObject* reader_ = nullptr;  // owned
    HandleObject* writer_ = nullptr;  // owned
};

}  // namespace pyloop
