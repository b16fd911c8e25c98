// IoPeek: could a poll of libuv's loop report anything now? Asked before each loop
// iteration that has callbacks ready (so its poll would not block): when the answer is
// no, the iteration's poll is known to find nothing and the loop runs the ready queue
// again without a turn of libuv's loop (see LoopCore::run_batch).
//
// The answer comes from an io_uring poll on libuv's epoll descriptor, armed when a busy
// iteration first asks: the kernel completes it (in memory shared with this process)
// when that descriptor becomes readable, so while nothing comes, asking again costs a
// memory read, not a system call; after a completion, the next ask arms it again (one
// system call, as the epoll answer). Where io_uring cannot be had (an old kernel, a
// seccomp filter, io_uring_disabled, a forked child), an epoll_wait() with no timeout
// on libuv's descriptor answers instead.
//
// "No" is only said when it is certain: a completion may mean nothing is left (the
// event was handled since), and then one turn of libuv's loop more is the cost.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyloop {

class IoPeek {
  public:
    IoPeek() = default;
    ~IoPeek() { close(); }
    IoPeek(const IoPeek&) = delete;
    IoPeek& operator=(const IoPeek&) = delete;

    void open(int epoll_fd);  // libuv's backend descriptor (uv_backend_fd)
    void close();
    // Called right before each poll of epoll_fd: what the ring recorded until then is
    // dropped (the poll sees it all).
    void before_poll();
    // After a poll that reported nothing: may a poll of epoll_fd report an event now?
    // (true when not open)
    bool anything_ready();
    // "io_uring", "epoll" or "off": what answers (python -m pyloop and tests show it).
    const char* mechanism() const;

  private:
    bool ring_open();
    bool ring_arm();
    void ring_close();
    bool ring_consume();  // true if the ring held completions
    bool ring_usable() const;

    int epoll_fd_ = -1;
    int ring_fd_ = -1;
    bool armed_ = false;   // a poll is in the kernel
    bool broken_ = false;  // the kernel refused a poll: the epoll answer
    void* sq_ring_ = nullptr;
    size_t sq_ring_size_ = 0;
    void* cq_ring_ = nullptr;
    size_t cq_ring_size_ = 0;
    void* sqes_ = nullptr;
    size_t sqes_size_ = 0;
    // pointers into the rings
    unsigned* sq_tail_ = nullptr;
    unsigned* sq_mask_ = nullptr;
    unsigned* sq_array_ = nullptr;
    unsigned* sq_flags_ = nullptr;
    unsigned* cq_head_ = nullptr;
    unsigned* cq_tail_ = nullptr;
    unsigned* cq_mask_ = nullptr;
    void* cqes_ = nullptr;
};

}  // namespace pyloop
