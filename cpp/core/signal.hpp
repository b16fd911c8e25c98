// SignalWatcher: one uv_signal_t per signal number behind add_signal_handler.
#pragma once
#include "core/handle.hpp"

#include <uv.h>

namespace pyloop {

class LoopCore;

class SignalWatcher {
  public:
    SignalWatcher(LoopCore* core, int signum) : core_(core), signum_(signum) { sig_.data = this; }
    int start();  // libuv error code
    bool initialized() const { return initialized_; }
    void close();  // asynchronous: deletes itself in the close callback
    void set_handle(HandleObject* h);  // takes a new reference; cancels the previous one

  private:
    static void on_signal(uv_signal_t* h, int signum);
    static void on_close(uv_handle_t* h);

    uv_signal_t sig_;
    LoopCore* core_;
    int signum_;
    HandleObject* handle_ = nullptr;  // owned
    bool initialized_ = false;
};

}  // namespace pyloop
