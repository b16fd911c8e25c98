#include "bindings/bindings.hpp"
#include "bindings/loop_type.hpp"
#include "net/dns.hpp"

namespace py = pybind11;

namespace pyloop {

namespace {

// The core of an open loop: a request queued on a closed uv loop would abort.
LoopCore* open_core(py::object& loop) {
    LoopCore* core = core_of(loop.ptr());
    if (!core) throw py::error_already_set();
    if (core->is_closed()) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        throw py::error_already_set();
    }
    return core;
}

}  // namespace

void bind_dns(py::module_& m) {
    py::class_<DnsRequest>(m, "DnsRequest", "A lookup running on libuv's thread pool.")
        .def_property_readonly("future", &DnsRequest::future)
        .def("cancel", &DnsRequest::cancel, "Cancel the lookup if no pool thread has started it yet.");

    m.def("getaddrinfo", [](py::object loop, py::object host, py::object port, int family, int type, int proto,
                            int flags) {
        LoopCore* core = open_core(loop);
        std::string h, p;
        if (!host.is_none()) h = host.cast<py::bytes>();
        if (!port.is_none()) p = port.cast<py::bytes>();
        return start_getaddrinfo(loop, *core, host.is_none() ? nullptr : h.c_str(),
                                 port.is_none() ? nullptr : p.c_str(), family, type, proto, flags);
    }, "Start uv_getaddrinfo; host and port are bytes or None.");

    m.def("getnameinfo", [](py::object loop, int family, std::string host, int port, unsigned flowinfo,
                            unsigned scope_id, int flags) {
        LoopCore* core = open_core(loop);
        return start_getnameinfo(loop, *core, family, host, port, flowinfo, scope_id, flags);
    }, "Start uv_getnameinfo on a numeric address.");
}

}  // namespace pyloop
