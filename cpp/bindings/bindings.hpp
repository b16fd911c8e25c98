// One bind_*() per component of pyloop._core.
#pragma once
#include <pybind11/pybind11.h>

namespace pyloop {

void bind_dns(pybind11::module_& m);
void bind_net(pybind11::module_& m);

}  // namespace pyloop
