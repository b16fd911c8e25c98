// pyloop._core: the pybind11 module. Hot paths are plain CPython types (Handle,
// TimerHandle, CoreLoop); the rest of the core is bound here with pybind11.
#include <pybind11/pybind11.h>

#include "bindings/bindings.hpp"
#include "bindings/loop_type.hpp"
#include "uv/error.hpp"

#include <uv.h>

#include <string>

namespace py = pybind11;
using namespace pyloop;

namespace {

LoopCore& core(py::handle loop) {
    LoopCore* c = core_of(loop.ptr());
    if (!c) throw py::error_already_set();
    return *c;
}

HandleObject* as_handle(py::handle h) {
    if (!is_handle(h.ptr())) throw py::type_error("expected a pyloop Handle");
    return reinterpret_cast<HandleObject*>(h.ptr());
}

void check(int r) {
    if (r < 0) throw py::error_already_set();
}

void bind_handles(py::module_& m) {
    if (init_handle_types(m.ptr()) < 0) throw py::error_already_set();
    m.def(
        "make_handle",
        [](py::object loop, py::object callback, py::tuple args, py::object context) {
            LoopCore& c = core(loop);
            PyObject** items = args.empty() ? nullptr : &PyTuple_GET_ITEM(args.ptr(), 0);
            PyObject* h = reinterpret_cast<PyObject*>(handle_new(
                HandleType, callback.ptr(), items, static_cast<Py_ssize_t>(args.size()), context.ptr(),
                loop.ptr(), &c));
            if (!h) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(h);
        },
        py::arg("loop"), py::arg("callback"), py::arg("args"), py::arg("context") = py::none(),
        "A Handle for a reader, writer or signal callback (not scheduled).");
}

void bind_loop(py::module_& m) {
    if (init_loop_type(m.ptr()) < 0) throw py::error_already_set();

    m.def("add_poll", [](py::object loop, int fd, bool writer, py::handle h, const std::string& kind) {
        int k = 0;
        while (k < kKindCount && kind != kHandleKindNames[k]) k++;
        if (k == kKindCount) throw py::value_error("unknown watch kind: " + kind);
        check(core(loop).add_poll(fd, writer, as_handle(h), nullptr, static_cast<HandleKind>(k)));
    }, py::arg("loop"), py::arg("fd"), py::arg("writer"), py::arg("handle"), py::arg("kind") = "poller",
       "Watch fd for reading (writer=False) or writing, replacing and cancelling the previous handle; "
       "kind says what it is for in loop.metrics().");
    m.def("remove_poll", [](py::object loop, int fd, bool writer) {
        int r = core(loop).remove_poll(fd, writer);
        check(r);
        return r == 1;
    }, "Stop watching fd; True if a callback was registered.");

    m.def("add_signal", [](py::object loop, int signum, py::handle h) {
        core(loop).add_signal(signum, as_handle(h));
    }, "Run the handle's callback (through the ready queue) when signum arrives on the wakeup fd.");
    m.def("remove_signal", [](py::object loop, int signum) {
        return core(loop).remove_signal(signum) == 1;
    });

    m.def("stats", [](py::object loop) {
        LoopCore& c = core(loop);
        py::dict d;
        d["ready"] = c.ready_count();
        d["timers"] = c.timer_count();
        d["timers_cancelled"] = c.timer_cancelled_count();
        return d;
    }, "Queue sizes, for tests and debugging.");
    m.def("metrics", [](py::object loop) {
        PyObject* d = core(loop).report_metrics();
        if (!d) throw py::error_already_set();
        return py::reinterpret_steal<py::dict>(d);
    }, "loop.metrics()'s counters (see core/metrics.hpp).");
    m.def("count_bytes", [](py::object loop, size_t nread, size_t nwritten) {
        LoopCore& c = core(loop);
        c.count_read(nread);
        c.count_written(nwritten);
    }, "Bytes the Python half of a transport moved, for loop.metrics().");
    m.def("set_stall_threshold", [](py::object loop, double s) {
        check(core(loop).stall().set_threshold(s));
    }, "loop.set_stall_threshold()'s seconds (0: off), checked by the Python face.");
    m.def("stall_threshold", [](py::object loop) { return core(loop).stall().threshold(); });
    m.def("trace_start", [](py::object loop, py::list sink, double threshold) {
        core(loop).trace().start(sink.ptr(), threshold);
    }, "Record the loop's slow callbacks, waits, counters and lookups into sink (core/trace.hpp).");
    m.def("trace_on", [](py::object loop) { return core(loop).trace().on(); });
    m.def("trace_add", [](py::object loop, py::tuple record) {
        LoopTrace& t = core(loop).trace();
        if (t.on()) t.add(record.ptr());
    }, "Append a record of the Python side's (a child process) while the loop traces.");
    m.def("set_slow_callback_duration", [](py::object loop, double s) {
        core(loop).set_slow_callback_duration(s);
    });
}

}  // namespace

#ifndef PYLOOP_LIBUV_LINKAGE
#define PYLOOP_LIBUV_LINKAGE "bundled"
#endif

// The module needs the GIL (docs/architecture.md, "Free-threaded Python"): it is not
// declared free-threading safe (no py::mod_gil_not_used()), and on a free-threaded
// build it says so explicitly, so that importing it turns the GIL back on.
PYBIND11_MODULE(_core, m) {
#ifdef Py_GIL_DISABLED
    PyUnstable_Module_SetGIL(m.ptr(), Py_MOD_GIL_USED);
#endif
    m.doc() = "pyloop's C++ core over libuv";
    // What `python -m pyloop` reports: the libuv pyloop was compiled against, the one
    // it runs with (the same when it is built in), and how it is linked.
    m.attr("libuv_build_version") = UV_VERSION_MAJOR * 10000 + UV_VERSION_MINOR * 100 + UV_VERSION_PATCH;
    m.def("libuv_version", []() { return uv_version(); }, "The running libuv's version number (major*10000+minor*100+patch).");
    m.def("libuv_version_string", []() { return std::string(uv_version_string()); });
    m.attr("libuv_linkage") = PYLOOP_LIBUV_LINKAGE;
    // and the compiler and C++ library that built it (make wheels: zig's clang and libc++,
    // linked in; a build from source: the machine's compiler, usually GCC and libstdc++)
#if defined(__clang__)
    std::string compiler = __VERSION__;  // "Clang 20.1.2 (...)"
#elif defined(__GNUC__)
    std::string compiler = "GCC " __VERSION__;  // GCC's is the bare number
#else
    std::string compiler = __VERSION__;
#endif
#if defined(_LIBCPP_VERSION)
    compiler += ", libc++ " + std::to_string(_LIBCPP_VERSION);
#elif defined(_GLIBCXX_RELEASE)
    compiler += ", libstdc++ " + std::to_string(_GLIBCXX_RELEASE);
#endif
    m.attr("compiler") = compiler;
    bind_handles(m);
    bind_loop(m);
    bind_dns(m);
    bind_net(m);
}
