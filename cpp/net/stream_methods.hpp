// StreamTransport's Python methods and type slots (stream.cpp) that the pipe
// transports (process/pipe.cpp) share: one TransportObject, several Python types.
#pragma once
#include "net/stream.hpp"

namespace pyloop {

PyObject* Transport_can_write_eof(PyObject* self, PyObject*);
PyObject* Transport_abort(PyObject* self, PyObject*);
PyObject* Transport_force_close(PyObject* self, PyObject* exc);
PyObject* Transport_call_connection_lost(PyObject* self, PyObject* exc);
PyObject* Transport_deliver_deferred(PyObject* self, PyObject* what);
PyObject* Transport_deliver_held(PyObject* self, PyObject* what);
PyObject* Transport_start_reading(PyObject* self, PyObject*);
PyObject* Transport_is_closing(PyObject* self, PyObject*);
PyObject* Transport_is_reading(PyObject* self, PyObject*);
PyObject* Transport_pause_reading(PyObject* self, PyObject*);
PyObject* Transport_resume_reading(PyObject* self, PyObject*);
PyObject* Transport_set_protocol(PyObject* self, PyObject* protocol);
PyObject* Transport_get_protocol(PyObject* self, PyObject*);
PyObject* Transport_get_write_buffer_size(PyObject* self, PyObject*);
PyObject* Transport_get_write_buffer_limits(PyObject* self, PyObject*);
PyObject* Transport_set_write_buffer_limits(PyObject* self, PyObject* args, PyObject* kwargs);
int Transport_traverse(PyObject* self, visitproc visit, void* arg);
int Transport_clear(PyObject* self);
void Transport_dealloc(PyObject* self);
void Transport_finalize(PyObject* self);
PyObject* Transport_new_from_python(PyTypeObject* type, PyObject*, PyObject*);

// asyncio's close()/abort() on a transport the loop closed under: RuntimeError, once.
bool refuse_closed_under(TransportObject* t, bool abort);

}  // namespace pyloop
