// libuv error codes as the OSError subclasses Python raises for the same errno.
#pragma once
#include "uv/pyutil.hpp"
#include <uv.h>

namespace pyloop {

// Builds the exception object (ConnectionResetError, BrokenPipeError, ...) for a
// negative libuv error code. Returns a new reference.
PyObject* uv_error_object(int err);

// Sets the exception for a libuv error code and returns nullptr.
PyObject* set_uv_error(int err);

}  // namespace pyloop
