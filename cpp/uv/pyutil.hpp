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

}  // namespace pyloop
