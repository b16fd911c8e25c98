// pyloop._core.CoreLoop: the C base class of pyloop.Loop. Its hot methods (call_soon,
// call_later, call_at, call_soon_threadsafe, time, create_future, get_debug) are plain
// METH_FASTCALL C functions: pybind11's dispatch would cost more than the work. The
// object's layout and core_of() are core's (core/loop_object.hpp).
#pragma once
#include "core/loop_object.hpp"

namespace pyloop {

int init_loop_type(PyObject* module);

}  // namespace pyloop
