#include "bindings/bindings.hpp"
#include "bindings/loop_type.hpp"
#include "net/sock_ops.hpp"
#include "net/sock_wait.hpp"
#include "net/server.hpp"
#include "net/stream.hpp"
#include "net/tls.hpp"
#include "net/udp.hpp"
#include "process/pipe.hpp"

#include <string>

namespace py = pybind11;

namespace pyloop {

namespace {

[[noreturn]] void raise_errno(const std::string* path = nullptr) {
    if (path) PyErr_SetFromErrnoWithFilename(PyExc_OSError, path->c_str());
    else PyErr_SetFromErrno(PyExc_OSError);
    throw py::error_already_set();
}

void bind_sock_ops(py::module_& m) {
    m.def("remove_stale_socket_file", [](const std::string& path) {
        int r = remove_stale_socket_file(path.c_str());
        if (r < 0) raise_errno(&path);
        return r == 1;
    }, "Remove a socket file a former server left at path (nothing else); True if removed.");
    m.def("path_inode", [](const std::string& path) -> py::object {
        uint64_t inode = 0;
        if (path_inode(path.c_str(), &inode) < 0) raise_errno(&path);
        if (inode == 0) return py::none();
        return py::int_(inode);
    }, "The inode of path, or None when it does not exist.");
    m.def("unlink_if_inode", [](const std::string& path, uint64_t inode) {
        int r = unlink_if_inode(path.c_str(), inode);
        if (r < 0) raise_errno(&path);
        return r == 1;
    }, "Unlink path if it is still the file with that inode.");
    m.def("file_size", [](int fd) {
        int64_t n = file_size(fd);
        if (n < 0) raise_errno();
        return n;
    }, "fstat(2)'s st_size of an open file.");
    m.def("sendfile", [](int out_fd, int in_fd, int64_t offset, size_t count) {
        ssize_t n;
        {
            py::gil_scoped_release nogil;
            n = send_file(out_fd, in_fd, offset, count);
        }
        if (n < 0) raise_errno();
        return n;
    }, "sendfile(2): bytes sent from in_fd at offset to out_fd (the GIL released).");
}

}  // namespace

void bind_net(py::module_& m) {
    bind_sock_ops(m);
    if (init_stream_type(m.ptr()) < 0) throw py::error_already_set();
    if (init_pipe_types(m.ptr()) < 0) throw py::error_already_set();
    if (init_tls_types(m.ptr()) < 0) throw py::error_already_set();
    if (init_sock_op_functions(m.ptr()) < 0) throw py::error_already_set();
    if (init_udp_type(m.ptr()) < 0) throw py::error_already_set();
    if (init_server_types(m.ptr()) < 0) throw py::error_already_set();
    m.def("pipe_transport", [](py::object loop, py::object pipe, py::object protocol, py::dict extra, bool write) {
        PyObject* t = pipe_transport_new(loop.ptr(), pipe.ptr(), protocol.ptr(), extra.ptr(), write);
        if (!t) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(t);
    }, "A read or write pipe transport over a pipe object; schedules connection_made.");
    m.def("stream_for_fd", [](py::object loop, int fd) -> py::object {
        LoopCore* core = core_of(loop.ptr());
        if (!core) throw py::error_already_set();
        PyObject* t = core->stream_for_fd(fd);
        return t ? py::reinterpret_borrow<py::object>(t) : py::none();
    }, "The open stream transport using this socket fd, or None.");
    m.def("stream_transport", [](py::object loop, py::object sock, py::object protocol, py::dict extra,
                                 py::object server, bool own) {
        PyObject* t = stream_transport_new(loop.ptr(), sock.ptr(), protocol.ptr(), extra.ptr(), server.ptr(), own);
        if (!t) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(t);
    }, py::arg("loop"), py::arg("sock"), py::arg("protocol"), py::arg("extra"), py::arg("server") = py::none(), py::arg("own") = true,
       "A StreamTransport over a connected socket; schedules connection_made and reading.");
}

}  // namespace pyloop
