// TlsProtocol's incoming flow: asyncio's SSLProtocol._do_read and what it calls, over
// the incoming BIO: which bytes make a complete record (the record scan), plaintext
// read in place into one bytes object (data_received) or into the application's own
// buffer (BufferedProtocol), the peer's close_notify, and the raw transport's read
// pausing by the water marks. Part of the state machine of tls.cpp.
#include "net/tls_internal.hpp"

#include "core/loop.hpp"
#include "net/stream.hpp"
#include "net/stream_io.hpp"

#include <algorithm>

namespace pyloop {

namespace tls_internal {

using stream_io::g_logger;  // asyncio.log.logger

// Whether SSLObject.read could return anything: plaintext buffered in the SSL object,
// or a complete record in the incoming BIO (by the record scan; without it, any byte
// there). Otherwise it would raise SSLWantReadError. (A close_notify is a complete
// record; one already read has moved the state machine past WRAPPED.)
int may_read(TlsProtocolObject* p) {
    Py_ssize_t in = bio_pending(p->incoming);
    if (in < 0) return -1;
    const RecordScan& sc = p->scan;
    if (sc.broken) {
        if (in > 0) return 1;
    } else if (sc.fed - static_cast<uint64_t>(in) < sc.complete_end) {
        return 1;
    }
    Py_ssize_t s = ssl_pending(p);
    if (s != 0) return s < 0 ? -1 : 1;
    return 0;
}

// Follows the record framing (5-byte header, then the length it gives) over newly fed bytes.
void scan_records(RecordScan& sc, const unsigned char* data, size_t len) {
    constexpr uint32_t kMaxRecord = 16384 + 2048;  // TLSCiphertext's limit
    size_t i = 0;
    while (i < len && !sc.broken) {
        if (sc.body_left > 0) {
            size_t take = std::min<size_t>(sc.body_left, len - i);
            sc.body_left -= static_cast<uint32_t>(take);
            i += take;
            if (sc.body_left == 0) sc.complete_end = sc.fed + i;
            continue;
        }
        sc.header[sc.header_have++] = data[i++];
        if (sc.header_have < 5) continue;
        sc.header_have = 0;
        sc.body_left = (static_cast<uint32_t>(sc.header[3]) << 8) | sc.header[4];
        if (sc.body_left > kMaxRecord) sc.broken = true;
        if (sc.body_left == 0) sc.complete_end = sc.fed + i;
    }
    sc.fed += len;
}

// SSLObject.read(n, buffer) into [buf, buf + n): the count (0 at close_notify), -2
// when the SSL object wants more ciphertext, -1 with an exception set.
Py_ssize_t ssl_read_into(TlsProtocolObject* p, char* buf, Py_ssize_t n) {
    Ref view(PyMemoryView_FromMemory(buf, n, PyBUF_WRITE));
    if (!view) return -1;
    Ref len(PyLong_FromSsize_t(n));
    if (!len) return -1;
    PyObject* r = call2(p->ssl, s_read, len.get(), view.get());
    if (!r) {
        if (!PyErr_ExceptionMatches(g_ssl_again)) return -1;
        PyErr_Clear();
        return -2;
    }
    Py_ssize_t count = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    return count;
}

// asyncio's _do_read__copied: all plaintext there is, to data_received in one bytes
// object (read in place, grown as needed; no chunks to join).
int do_read_copied(TlsProtocolObject* p) {
    int more = may_read(p);
    if (more <= 0) return more;
    Py_ssize_t in = bio_pending(p->incoming);
    if (in < 0) return -1;
    Py_ssize_t cap = std::max<Py_ssize_t>(in, 16 * 1024);
    PyObject* buf = PyBytes_FromStringAndSize(nullptr, cap);
    if (!buf) return -1;
    Py_ssize_t total = 0;
    bool eof = false;
    for (;;) {
        if (total == cap) {
            cap *= 2;
            if (_PyBytes_Resize(&buf, cap) < 0) return -1;
        }
        Py_ssize_t n = ssl_read_into(p, PyBytes_AS_STRING(buf) + total, cap - total);
        if (n == -1) {
            Py_DECREF(buf);
            return -1;
        }
        if (n == -2) break;
        if (n == 0) {
            eof = true;
            break;
        }
        total += n;
        more = may_read(p);
        if (more < 0) {
            Py_DECREF(buf);
            return -1;
        }
        if (!more) break;
    }
    if (total > 0) {
        if (_PyBytes_Resize(&buf, total) < 0) return -1;
        Ref app(Py_NewRef(p->app_protocol));
        PyObject* r = call1(app.get(), s_data_received, buf);
        Py_DECREF(buf);
        if (discard(r) < 0) return -1;
    } else {
        Py_DECREF(buf);
    }
    if (eof) {
        if (call_eof_received(p) < 0) return -1;
        if (start_shutdown(p) < 0) return -1;
    }
    return 0;
}

// asyncio's _do_read__buffered: plaintext straight into the application's buffer.
int do_read_buffered(TlsProtocolObject* p) {
    Py_ssize_t hint = tls::read_buffer_size(p);
    if (hint < 0) return -1;
    Ref app(Py_NewRef(p->app_protocol));
    Ref n(PyLong_FromSsize_t(hint));
    if (!n) return -1;
    Ref buf(call1(app.get(), s_get_buffer, n.get()));
    if (!buf) return -1;
    // asyncio: wants = len(buf); self._sslobj.read(wants, buf)
    Py_ssize_t len = PyObject_Size(buf.get());
    if (len < 0) return -1;
    Py_buffer view;
    if (get_read_buffer(buf.get(), &view, "nw*:read", &len) < 0) return -1;
    Py_ssize_t wants = view.len;
    Py_ssize_t offset = 0;
    Py_ssize_t count = 1;
    bool again_later = false;
    // The first read always happens, an empty buffer's too: SSLObject.read(0, buf) answers
    // 0, which asyncio then takes for the peer's close_notify (eof_received, shutdown).
    static char s_empty;
    char* base = view.buf ? static_cast<char*>(view.buf) : &s_empty;
    while (offset < wants || offset == 0) {
        if (offset > 0) {
            int more = may_read(p);
            if (more < 0) {
                PyBuffer_Release(&view);
                return -1;
            }
            if (!more) break;
        }
        count = ssl_read_into(p, base + offset, wants - offset);
        if (count == -1) {
            PyBuffer_Release(&view);
            return -1;
        }
        if (count <= 0) break;
        offset += count;
        again_later = offset == wants;  // the buffer filled up: read the rest soon
    }
    PyBuffer_Release(&view);
    if (count == -2) count = 1;  // wants more ciphertext: not an EOF
    if (again_later) {
        Ref m(method(p, PY_NAME("_do_read")));
        if (!m || discard(call_soon(p, m.get())) < 0) return -1;
    }
    if (offset > 0) {
        Ref off(PyLong_FromSsize_t(offset));
        if (!off || discard(call1(app.get(), s_buffer_updated, off.get())) < 0) return -1;
    }
    if (count == 0) {
        if (call_eof_received(p) < 0) return -1;
        if (start_shutdown(p) < 0) return -1;
    }
    return 0;
}

}  // namespace tls_internal

namespace tls {

using namespace tls_internal;

int control_ssl_reading(TlsProtocolObject* p) {
    Py_ssize_t size = read_buffer_size(p);
    if (size < 0) return -1;
    if (static_cast<double>(size) >= p->in_marks.high_v && !p->ssl_reading_paused) {
        p->ssl_reading_paused = true;
        return transport_call(p, s_pause_reading);
    }
    if (static_cast<double>(size) <= p->in_marks.low_v && p->ssl_reading_paused) {
        p->ssl_reading_paused = false;
        return transport_call(p, s_resume_reading);
    }
    return 0;
}

}  // namespace tls

namespace tls_internal {

int do_read(TlsProtocolObject* p) {
    if (p->state != TlsState::Wrapped && p->state != TlsState::Flushing) return 0;
    Ref keep(Py_NewRef(O(p)));
    int r = 0;
    if (!p->app_reading_paused) {
        r = p->app_is_buffer ? do_read_buffered(p) : do_read_copied(p);
        if (r == 0) r = p->backlog->empty() ? process_outgoing(p) : do_write(p);
    }
    if (r == 0) r = tls::control_ssl_reading(p);
    if (r < 0) return fatal_from_current(p, "Fatal error on SSL protocol");
    return 0;
}

int call_eof_received(TlsProtocolObject* p) {
    if (p->app_state != AppState::ConMade) return 0;
    p->app_state = AppState::Eof;
    Ref app(Py_NewRef(p->app_protocol));
    PyObject* keep = call0(app.get(), s_eof_received);
    int keep_open = keep ? PyObject_IsTrue(keep) : -1;
    Py_XDECREF(keep);
    if (keep_open > 0) {
        PyObject* r = PyObject_CallMethod(g_logger, "warning", "s",
                                          "returning true from eof_received() has no effect when using ssl");
        if (r) Py_DECREF(r);
        else PyErr_Clear();
    }
    if (keep_open >= 0) return 0;
    PyObject* exc = fetch_exception();
    if (is_sys_exit(exc)) {
        restore_exception(exc);
        return -1;
    }
    fatal_error(p, exc, "Error calling eof_received()");
    Py_DECREF(exc);
    return 0;
}

}  // namespace tls_internal
}  // namespace pyloop
