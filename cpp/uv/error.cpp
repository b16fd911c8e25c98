#include "uv/error.hpp"

#include <cstring>

namespace pyloop {

PyObject* uv_error_object(int err) {
    // libuv codes are negated errno values on Unix; OSError(errno, strerror) picks the
    // subclass (ConnectionRefusedError, ...) the same way socket calls do.
    int code = err < 0 ? -err : err;
    return PyObject_CallFunction(PyExc_OSError, "is", code, strerror(code));
}

PyObject* set_uv_error(int err) {
    PyObject* exc = uv_error_object(err);
    if (exc) {
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc)), exc);
        Py_DECREF(exc);
    }
    return nullptr;
}

}  // namespace pyloop
