#include "bindings/bindings.hpp"
#include "net/stream.hpp"

namespace py = pybind11;

namespace pyloop {

void bind_net(py::module_& m) {
    if (init_stream_type(m.ptr()) < 0) throw py::error_already_set();
    m.def("stream_transport", [](py::object loop, py::object sock, py::object protocol, py::dict extra,
                                 py::object server, bool own) {
        PyObject* t = stream_transport_new(loop.ptr(), sock.ptr(), protocol.ptr(), extra.ptr(), server.ptr(), own);
        if (!t) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(t);
    }, py::arg("loop"), py::arg("sock"), py::arg("protocol"), py::arg("extra"), py::arg("server") = py::none(), py::arg("own") = true,
       "A StreamTransport over a connected socket; schedules connection_made and reading.");
}

}  // namespace pyloop
