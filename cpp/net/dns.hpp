// DNS on libuv's thread pool: uv_getaddrinfo / uv_getnameinfo. No Python thread and
// no executor is involved; results are delivered to an asyncio.Future on the loop.
#pragma once
#include <pybind11/pybind11.h>

#include <uv.h>

#include <memory>
#include <string>

namespace pyloop {

class LoopCore;

// What a Python-side DnsRequest and the libuv request share: the request is gone
// (its C++ owner deleted) once `req` is null.
struct DnsShared {
    uv_req_t* req = nullptr;
};

// Returned to Python: the future to await, and cancel() for when the awaiting task
// is cancelled (uv_cancel succeeds only while the request waits for a pool thread).
class DnsRequest {
  public:
    DnsRequest(std::shared_ptr<DnsShared> shared, pybind11::object future)
        : shared_(std::move(shared)), future_(std::move(future)) {}
    pybind11::object future() const { return future_; }
    bool cancel();

  private:
    std::shared_ptr<DnsShared> shared_;
    pybind11::object future_;
};

// host/port: nullptr for None. Starts the lookup on the pool.
DnsRequest start_getaddrinfo(pybind11::object loop, LoopCore& core, const char* host, const char* port,
                             int family, int socktype, int proto, int flags);

// family is AF_INET or AF_INET6; host is a numeric address.
DnsRequest start_getnameinfo(pybind11::object loop, LoopCore& core, int family, const std::string& host,
                             int port, unsigned flowinfo, unsigned scope_id, int flags);

// socket.gaierror(code, message) for a libuv UV_EAI_* code, with the system's EAI_*
// code and gai_strerror() text, as socket.getaddrinfo raises it.
pybind11::object gaierror_from_uv(int uv_code);

// The tuples socket.getaddrinfo returns (family and type as the socket module's enums).
pybind11::list addrinfo_to_list(const struct addrinfo* res);

}  // namespace pyloop
