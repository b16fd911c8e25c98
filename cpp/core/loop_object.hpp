// The Python object that holds a LoopCore: pyloop._core.CoreLoop, the C base class of
// pyloop.Loop. Its type is made by the bindings (bindings/loop_type.cpp); every layer
// that is handed a loop object (net, process) finds its core through here.
#pragma once
#include "core/loop.hpp"

namespace pyloop {

struct CoreLoopObject {
    PyObject_HEAD
    LoopCore* core;
    // loop._task_factory (a member: create_task reads it without a lookup by name),
    // and whether the class left it so (a subclass may make it a property).
    PyObject* task_factory;
    bool factory_member;
};

extern PyTypeObject* CoreLoopType;  // set by init_loop_type (bindings)

// The core of a CoreLoop instance, or nullptr with TypeError set.
inline LoopCore* core_of(PyObject* loop) {
    if (!CoreLoopType || !PyObject_TypeCheck(loop, CoreLoopType)) {
        PyErr_Format(PyExc_TypeError, "expected a pyloop loop, got %.200s", Py_TYPE(loop)->tp_name);
        return nullptr;
    }
    return reinterpret_cast<CoreLoopObject*>(loop)->core;
}

// The core of `loop` if it is a CoreLoop, else nullptr (no exception).
inline LoopCore* core_if_loop(PyObject* loop) {
    return CoreLoopType && PyObject_TypeCheck(loop, CoreLoopType) ? reinterpret_cast<CoreLoopObject*>(loop)->core
                                                                  : nullptr;
}

}  // namespace pyloop
