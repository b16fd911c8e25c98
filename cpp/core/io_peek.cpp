#include "core/io_peek.hpp"

#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace pyloop {

namespace {

// A forked child shares the parent's rings with the parent's task: it must not use them.
std::atomic<bool> g_forked{false};
pthread_once_t g_atfork_once = PTHREAD_ONCE_INIT;
void mark_forked() { g_forked.store(true, std::memory_order_relaxed); }
void install_atfork() { pthread_atfork(nullptr, nullptr, mark_forked); }

// PYLOOP_IO_PEEK=epoll (or off) chooses the fallback (or no peeking at all): for tests,
// and for comparing the two in bench/.
enum class Choice { kAuto, kEpoll, kOff };
Choice choice() {
    const char* v = std::getenv("PYLOOP_IO_PEEK");
    if (!v) return Choice::kAuto;
    if (std::strcmp(v, "epoll") == 0) return Choice::kEpoll;
    if (std::strcmp(v, "off") == 0) return Choice::kOff;
    return Choice::kAuto;
}

template <typename T>
T* at(void* base, uint32_t offset) {
    return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

void IoPeek::open(int epoll_fd) {
    close();
    Choice c = choice();
    if (c == Choice::kOff) return;
    epoll_fd_ = epoll_fd;
    if (c == Choice::kAuto) {
        pthread_once(&g_atfork_once, install_atfork);
        if (!g_forked.load(std::memory_order_relaxed) && !ring_open()) {
            ring_close();
            broken_ = false;
        }
    }
}

void IoPeek::close() {
    ring_close();
    epoll_fd_ = -1;
}

const char* IoPeek::mechanism() const {
    if (epoll_fd_ < 0) return "off";
    return ring_fd_ >= 0 && !broken_ ? "io_uring" : "epoll";
}

bool IoPeek::ring_open() {
    io_uring_params p;
    std::memset(&p, 0, sizeof p);
    // No interrupt to post a completion while this thread runs Python: the kernel sets
    // IORING_SQ_TASKRUN instead, which anything_ready() reads (5.19+; plain before).
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int fd = static_cast<int>(syscall(__NR_io_uring_setup, 2, &p));
    if (fd < 0 && errno == EINVAL) {
        std::memset(&p, 0, sizeof p);
        fd = static_cast<int>(syscall(__NR_io_uring_setup, 2, &p));
    }
    if (fd < 0) return false;
    ring_fd_ = fd;
    sq_ring_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cq_ring_size_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sq_ring_size_ = cq_ring_size_ = sq_ring_size_ > cq_ring_size_ ? sq_ring_size_ : cq_ring_size_;
    void* sq = mmap(nullptr, sq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) return false;
    sq_ring_ = sq;
    if (single) {
        cq_ring_ = sq;
    } else {
        void* cq = mmap(nullptr, cq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                        IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED) return false;
        cq_ring_ = cq;
    }
    sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
    void* sqes = mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return false;
    sqes_ = sqes;
    sq_tail_ = at<unsigned>(sq_ring_, p.sq_off.tail);
    sq_mask_ = at<unsigned>(sq_ring_, p.sq_off.ring_mask);
    sq_array_ = at<unsigned>(sq_ring_, p.sq_off.array);
    sq_flags_ = at<unsigned>(sq_ring_, p.sq_off.flags);
    cq_head_ = at<unsigned>(cq_ring_, p.cq_off.head);
    cq_tail_ = at<unsigned>(cq_ring_, p.cq_off.tail);
    cq_mask_ = at<unsigned>(cq_ring_, p.cq_off.ring_mask);
    cqes_ = at<void>(cq_ring_, p.cq_off.cqes);
    // Try a poll now: a kernel that refuses it (or refuses io_uring's polls to this
    // process) answers at once, and the epoll answer is used.
    if (!ring_arm()) return false;
    ring_consume();
    return !broken_;
}

// A one-shot poll for POLLIN on the epoll descriptor: the kernel looks at once (what is
// ready now completes it during this call), then completes it at the next wakeup.
// One-shot, and armed only by anything_ready(): a multishot poll, always armed, made
// the kernel post a completion for every event of a busy server (3x its CPU per
// request on the echo benchmark).
bool IoPeek::ring_arm() {
    unsigned tail = *sq_tail_;
    unsigned index = tail & *sq_mask_;
    auto* sqe = static_cast<io_uring_sqe*>(sqes_) + index;
    std::memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = epoll_fd_;
    sqe->poll32_events = POLLIN;  // (little-endian machines only: x86_64, aarch64)
    sqe->user_data = 1;
    sq_array_[index] = index;
    __atomic_store_n(sq_tail_, tail + 1, __ATOMIC_RELEASE);
    long r;
    do {
        r = syscall(__NR_io_uring_enter, ring_fd_, 1, 0, 0, nullptr, 0);
    } while (r < 0 && errno == EINTR);
    armed_ = r == 1;
    return armed_;
}

void IoPeek::ring_close() {
    if (sqes_) munmap(sqes_, sqes_size_);
    if (cq_ring_ && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_ring_size_);
    if (sq_ring_) munmap(sq_ring_, sq_ring_size_);
    if (ring_fd_ >= 0) ::close(ring_fd_);
    sqes_ = cq_ring_ = sq_ring_ = nullptr;
    ring_fd_ = -1;
    armed_ = false;
}

// Consumes the completions: the poll completed (it is no longer armed). True if any.
bool IoPeek::ring_consume() {
    unsigned head = *cq_head_;
    unsigned tail = __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
    if (head == tail) return false;
    for (; head != tail; head++) {
        auto* cqe = static_cast<io_uring_cqe*>(cqes_) + (head & *cq_mask_);
        if (cqe->res < 0) broken_ = true;  // a refused poll: the epoll answer from now on
    }
    __atomic_store_n(cq_head_, head, __ATOMIC_RELEASE);
    armed_ = false;
    return true;
}

bool IoPeek::ring_usable() const { return ring_fd_ >= 0 && !broken_ && !g_forked.load(std::memory_order_relaxed); }

void IoPeek::before_poll() {
    if (ring_usable()) ring_consume();  // what completed it, the poll sees too
}

bool IoPeek::anything_ready() {
    if (epoll_fd_ < 0) return true;
    if (ring_usable()) {
        if (__atomic_load_n(sq_flags_, __ATOMIC_ACQUIRE) & IORING_SQ_TASKRUN) return true;  // a completion pending
        if (ring_consume()) return true;  // a wakeup since it was armed
        if (armed_) return false;
        // Armed now: the kernel looks at the descriptor during the call.
        if (ring_arm()) {
            bool done = ring_consume() || (__atomic_load_n(sq_flags_, __ATOMIC_ACQUIRE) & IORING_SQ_TASKRUN);
            if (!done) return false;
            if (!broken_) return true;
        }
        // (refused: fall through to the epoll answer)
    }
    epoll_event ev;
    int n;
    do {
        n = epoll_wait(epoll_fd_, &ev, 1, 0);
    } while (n < 0 && errno == EINTR);
    return n != 0;  // (an error: let libuv's poll meet it)
}

}  // namespace pyloop
