// Small helpers over the CPython C API shared by every component.
#pragma once
#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace pyloop {

// An attribute or method name as an interned str, made once per call site: calls by
// name then reuse it (and CPython's type attribute cache), where a C string would make
// a new str on every call. PY_NAME("close") is a borrowed reference.
#define PY_NAME(literal)                                                      \
    ([]() -> PyObject* {                                                      \
        static PyObject* const interned = PyUnicode_InternFromString(literal); \
        return interned;                                                      \
    }())

// Takes the exception being raised (normalized, with its traceback) and clears it.
// Returns a new reference, or nullptr when no exception is set.
inline PyObject* fetch_exception() {
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type) return nullptr;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

// Raises `exc` again (steals the reference).
inline void restore_exception(PyObject* exc) {
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject* tb = PyException_GetTraceback(exc);
    PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(exc));
    Py_INCREF(type);
    PyErr_Restore(type, exc, tb);
#endif
}

// The buffer of `obj` to read into (writable, C-contiguous), as a C function that takes
// it with "w*" sees it. When it is not one, raises the error that function raises,
// word for word: `format` is that function's arguments up to the buffer ("w*:recv_into"
// for sock.recv_into(buf); "nw*:read" for SSLObject.read(n, buf), with `n` the count
// before it).
inline int get_read_buffer(PyObject* obj, Py_buffer* view, const char* format, const Py_ssize_t* n = nullptr) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) == 0) {
        if (PyBuffer_IsContiguous(view, 'C')) return 0;
        PyBuffer_Release(view);
    }
    PyErr_Clear();
    PyObject* args = n ? Py_BuildValue("(nO)", *n, obj) : PyTuple_Pack(1, obj);
    if (!args) return -1;
    Py_ssize_t ignored;
    int ok = n ? PyArg_ParseTuple(args, format, &ignored, view) : PyArg_ParseTuple(args, format, view);
    Py_DECREF(args);
    if (ok) {  // taken after all (a buffer that changed its mind): keep it
        if (PyBuffer_IsContiguous(view, 'C')) return 0;
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_BufferError, "the buffer is not contiguous");
    }
    return -1;
}

}  // namespace pyloop
