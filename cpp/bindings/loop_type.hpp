// pyloop._core.CoreLoop: the C base class of pyloop.Loop. Its hot methods (call_soon,
// call_later, call_at, call_soon_threadsafe, time, create_future, get_debug) are plain
// METH_FASTCALL C functions: pybind11's dispatch would cost more than the work.
#pragma once
#include "core/loop.hpp"

namespace pyloop {

struct CoreLoopObject {
    PyObject_HEAD
    LoopCore* core;
};

extern PyTypeObject* CoreLoopType;

int init_loop_type(PyObject* module);

// The core of a CoreLoop instance, or nullptr with TypeError set.
LoopCore* core_of(PyObject* loop);

}  // namespace pyloop
