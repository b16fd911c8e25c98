"""pyloop.Loop: asyncio.AbstractEventLoop over the C++ core.

The hot methods (call_soon, call_later, call_at, call_soon_threadsafe, time,
create_future, get_debug, stop, is_running, is_closed) come from the C base class
pyloop._core.CoreLoop. This module holds the glue that is not hot: running and
closing, tasks, executors, async generators, exception handling, readers/writers
and signals (argument checking here, the work in C++).
"""

import asyncio
import concurrent.futures
import errno
import signal
import socket
import sys
import threading
import warnings
import weakref
from asyncio import constants, coroutines, events, format_helpers, futures, tasks
from asyncio.log import logger

from . import _compat, _core, _dns, _handles, _stall, _trace
from ._net import NetworkMethods, SendfileMethods
from ._pipes import PipeMethods
from ._subprocess import SubprocessMethods
from ._sock import SocketMethods
from ._tls import TlsMethods
from ._udp import DatagramMethods

from ._compat import PY311 as _PY311
from ._compat import PY312 as _PY312
from ._compat import PY314 as _PY314


def _fileobj_to_fd(fileobj):
    """An fd from an int or an object with fileno(), with asyncio's errors."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


_FD_MAX = 2**31 - 1


def _check_signal(sig):
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")


def _handler_context(context):
    """asyncio 3.12+ runs a custom exception handler in the context of the task,
    future or handle the error came from."""
    thing = context.get("task")
    if thing is None:
        thing = context.get("future")
    if thing is None:
        thing = context.get("handle")
    get_context = getattr(thing, "get_context", None)
    ctx = get_context() if get_context is not None else None
    return ctx if hasattr(ctx, "run") else None


def _sighandler_noop(signum, frame):
    """Python's handler while add_signal_handler holds a signal: the signal's number
    reaches the loop through the wakeup fd."""


def _stop_when_done(fut):
    # run_until_complete's done callback: stop unless the future was cancelled by a
    # stop() from elsewhere (as asyncio does).
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return
    fut.get_loop().stop()


class Loop(_core.CoreLoop, SocketMethods, NetworkMethods, SendfileMethods, DatagramMethods, TlsMethods, PipeMethods,
           SubprocessMethods, asyncio.AbstractEventLoop):
    """The pyloop event loop: a drop-in asyncio.AbstractEventLoop."""

    def __init__(self):
        self._exception_handler = None
        self._task_factory = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._child_pidfds = {}  # pidfd -> pid of each child whose exit is awaited
        self._poll_objects = {}  # (fd, writer) -> the object add_reader/add_writer was given
        self._asyncgens_shutdown_called = False
        self._thread_id = None
        self._signals = set()
        self._wakeup_pair = None
        self._wakeup_saved = None  # the wakeup fd in place before pyloop set its own
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._slow_callback_duration = 0.1
        self._set_debug_flag(coroutines._is_debug_mode())
        threshold = _stall.threshold_from_environment()
        if threshold is not None:
            _core.set_stall_threshold(self, threshold)
        threshold = _trace.threshold_from_environment()  # (python -m pyloop.threads --trace)
        if threshold is not None:
            _trace.start(self, threshold)

    def __repr__(self):
        return (f"<{type(self).__module__}.{type(self).__qualname__} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # ---- running and stopping ----------------------------------------------------

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def _check_running(self):
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _take_wakeup_fd(self):
        """Route signals to a socket the core polls (main thread only): Python's C signal
        handler writes each signal's number there, which wakes libuv's poll (libuv would
        otherwise retry it on EINTR and never see Python's signal flag) and tells the
        core which add_signal_handler handlers to run. Returns the read end's fd or -1."""
        if threading.current_thread() is not threading.main_thread():
            return -1
        if self._wakeup_pair is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            self._wakeup_pair = (rsock, wsock)
        rsock, wsock = self._wakeup_pair
        if self._wakeup_saved is None:
            try:
                self._wakeup_saved = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
            except ValueError:  # not the main interpreter
                return -1
        return rsock.fileno()

    def _release_wakeup_fd(self):
        saved, self._wakeup_saved = self._wakeup_saved, None
        if saved is not None:
            try:
                signal.set_wakeup_fd(saved)
            except ValueError:
                pass

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        wakeup_fd = self._take_wakeup_fd()
        try:
            events._set_running_loop(self)
            self._run_core(wakeup_fd)
        finally:
            if not self._signals:  # handlers keep it, so that no signal is lost between runs
                self._release_wakeup_fd()
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def run_until_complete(self, future):
        """Run until the future (or coroutine) is done; return its result."""
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # The task is ours: do not warn that it was destroyed pending if the loop
            # stops early (e.g. on KeyboardInterrupt).
            future._log_destroy_pending = False
        future.add_done_callback(_stop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                # Mark its exception retrieved: the caller is about to see it.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_stop_when_done)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self):
        """Close the loop: drop pending callbacks, release libuv, shut the default
        executor down without waiting. The loop must not be running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        self._executor_shutdown_called = True
        try:
            self._close_core()
        finally:
            self._close_child_watches()
            self._poll_objects.clear()
            self._restore_signals()
            self._release_wakeup_fd()
            if self._wakeup_pair is not None:
                for s in self._wakeup_pair:
                    s.close()
                self._wakeup_pair = None
            executor = self._default_executor
            if executor is not None:
                self._default_executor = None
                executor.shutdown(wait=False)

    # ---- debug mode --------------------------------------------------------------

    def set_debug(self, enabled):
        self._set_debug_flag(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    @property
    def slow_callback_duration(self):
        return self._slow_callback_duration

    @slow_callback_duration.setter
    def slow_callback_duration(self, value):
        _core.set_slow_callback_duration(self, float(value))
        self._slow_callback_duration = value

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(constants.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    def _check_callback_debug(self, callback, method, check_thread):
        # Called by the C core in debug mode only.
        if check_thread and self._thread_id is not None and threading.get_ident() != self._thread_id:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one")
        if _compat.iscoroutine_or_function(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def _source_traceback_here(self):
        # Called by the C core in debug mode: frame 1 is the caller of call_soon().
        return format_helpers.extract_stack(sys._getframe(1))

    def _log_slow_callback(self, handle, seconds):
        cb = handle._callback
        owner = getattr(cb, "__self__", None)
        what = repr(owner) if isinstance(owner, asyncio.Task) else str(handle)
        logger.warning("Executing %s took %.3f seconds", what, seconds)

    # ---- exceptions --------------------------------------------------------------

    def _report_callback_exception(self, handle, exc):
        # Called by the C core when a callback raised (not SystemExit/KeyboardInterrupt).
        source = _handles.format_callback(handle._callback, handle._args, self)
        context = {"message": f"Exception in callback {source}", "exception": exc, "handle": handle}
        if handle._source_traceback:
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    def _report_pipe_read_exception(self, transport, exc):
        # Called by the C core when a read pipe's data_received() raised: asyncio's reader
        # callback (_UnixReadPipeTransport._read_ready) lets it reach the handler as a
        # callback's exception, and the pipe reads on. (No Handle ran: the context names
        # the transport and protocol instead, docs/api.md.)
        self.call_exception_handler({
            "message": f"Exception in callback {type(transport).__name__}._read_ready()",
            "exception": exc, "transport": transport, "protocol": transport.get_protocol()})

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log the context at ERROR on the 'asyncio' logger, as asyncio does."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else False
        current = self._current_handle
        if "source_traceback" not in context and current is not None and current._source_traceback:
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key in ("source_traceback", "handle_traceback"):
                what = "Object" if key == "source_traceback" else "Handle"
                value = f"{what} created at (most recent call last):\n" + "".join(
                    format_helpers.traceback.format_list(value)).rstrip()
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        """Pass the context to the handler set with set_exception_handler(), or to
        default_exception_handler(). Errors in the handler are logged, never raised
        (SystemExit and KeyboardInterrupt excepted)."""
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            ctx = _handler_context(context) if _PY312 else None
            if ctx is not None:
                ctx.run(handler, self, context)
            else:
                handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler while handling an "
                             "unexpected error in custom exception handler", exc_info=True)

    # ---- tasks -------------------------------------------------------------------

    # create_task itself is C (CoreLoop.create_task): it builds the Task directly when
    # no task factory is set and debug mode is off, and calls this otherwise.
    if _PY314:
        def _create_task_slow(self, coro, **kwargs):
            """Schedule a coroutine as a Task (through the task factory, if set)."""
            self._check_closed()
            if self._task_factory is not None:
                return self._task_factory(self, coro, **kwargs)
            task = tasks.Task(coro, loop=self, **kwargs)
            if task._source_traceback:
                del task._source_traceback[-1]
            return task
    else:
        def _create_task_slow(self, coro, *, name=None, context=None):
            """Schedule a coroutine as a Task (through the task factory, if set)."""
            self._check_closed()
            if self._task_factory is None:
                if context is None:
                    task = tasks.Task(coro, loop=self, name=name)
                else:
                    task = tasks.Task(coro, loop=self, name=name, context=context)
                if task._source_traceback:
                    del task._source_traceback[-1]
            else:
                if context is None:
                    task = self._task_factory(self, coro)
                else:
                    task = self._task_factory(self, coro, context=context)
                if name is not None:
                    task.set_name(name)
            return task

    def set_task_factory(self, factory):
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self):
        return self._task_factory

    # ---- executors ---------------------------------------------------------------

    def run_in_executor(self, executor, func, *args):
        self._check_closed()
        if self.get_debug():
            self._check_callback_debug(func, "run_in_executor", False)
        if executor is None:
            executor = self._default_executor
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            if not _PY311:  # 3.10's asyncio only warns
                warnings.warn("Using the default executor that is not an instance of "
                              "ThreadPoolExecutor is deprecated and will be prohibited "
                              "in Python 3.9", DeprecationWarning, 2)
            else:
                raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None):
        """Shut the default executor down and wait for its threads (at most `timeout`
        seconds; asyncio.Runner passes it positionally on 3.12+)."""
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()

        def join():
            try:
                executor.shutdown(wait=True)
            except BaseException as exc:
                result = (done.set_exception, exc)
            else:
                result = (done.set_result, None)
            if not self.is_closed():
                self.call_soon_threadsafe(
                    lambda: done.done() or result[0](result[1]))

        thread = threading.Thread(target=join, name="pyloop-executor-shutdown")
        thread.start()
        try:
            await tasks.wait_for(done, timeout)
        except (TimeoutError, asyncio.TimeoutError):
            warnings.warn("The executor did not finishing joining its threads within "
                          f"{timeout} seconds.", RuntimeWarning, stacklevel=2)
            executor.shutdown(wait=False)
        else:
            thread.join()

    # ---- async generators --------------------------------------------------------

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(f"asynchronous generator {agen!r} was scheduled after "
                          "loop.shutdown_asyncgens() call", ResourceWarning, source=self)
        self._asyncgens.add(agen)

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    async def shutdown_asyncgens(self):
        """Close every async generator still open on this loop."""
        self._asyncgens_shutdown_called = True
        if not self._asyncgens:
            return
        agens = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in agens], return_exceptions=True)
        for agen, result in zip(agens, results):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # ---- DNS (libuv's thread pool; never a Python thread) ------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo() without blocking: numeric addresses at once, names on
        libuv's thread pool (size it with UV_THREADPOOL_SIZE before the first lookup)."""
        if not self.get_debug():
            return await _dns.getaddrinfo(self, host, port, family, type, proto, flags)
        t0 = self.time()
        msg = f"Get address info {host}:{port!r}, family={family!r}, type={type!r}, proto={proto}, flags={flags!r}"
        logger.debug("%s", msg)
        infos = await _dns.getaddrinfo(self, host, port, family, type, proto, flags)
        dt = self.time() - t0
        log = logger.info if dt >= self.slow_callback_duration else logger.debug
        log("Getting address info %s took %.3f ms: %r", msg, dt * 1e3, infos)
        return infos

    async def getnameinfo(self, sockaddr, flags=0):
        """socket.getnameinfo() without blocking, on libuv's thread pool."""
        return await _dns.getnameinfo(self, sockaddr, flags)

    # ---- metrics (a pyloop extension) --------------------------------------------

    def metrics(self):
        """How busy the loop is and what it holds: a dict (docs/observability.md).

        Counters are totals since the loop was made; utilization_since_last and
        slowest_callback cover the time since the previous call. Cheap: call it as often
        as you like (a periodic log line, a /metrics endpoint)."""
        m = _core.metrics(self)
        pending = m["lookups_pending"]
        # libuv does not say which lookups a pool thread has picked up: at most one
        # per thread (the pool is the process's, shared with other loops).
        running = min(pending, _dns.pool_size()[0])
        m["lookups_in_flight"] = running
        m["lookups_queued"] = pending - running
        return m

    def set_stall_threshold(self, seconds):
        """Warn while one callback or task step blocks the loop for longer than
        `seconds`, with the loop thread's Python stack at that moment, and again with the
        total when it returns (docs/observability.md). None (the default) turns it off;
        the environment variable PYLOOP_STALL_THRESHOLD sets it for every new loop."""
        _core.set_stall_threshold(self, _stall.check_threshold(seconds))

    def get_stall_threshold(self):
        """The stall threshold in seconds, or None when the watch is off."""
        return _core.stall_threshold(self) or None

    # ---- readers and writers -----------------------------------------------------

    def _ensure_fd_no_transport(self, fd):
        fd = _fileobj_to_fd(fd)
        transport = _core.stream_for_fd(self, fd) if fd <= _FD_MAX else None
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")
        return fd

    def _add_poll(self, fileobj, writer, callback, args, kind="poller"):
        self._check_closed()
        fd = self._ensure_fd_no_transport(fileobj)
        if fd > _FD_MAX:  # what epoll.register raises for it in asyncio's selector
            raise OverflowError("Python int too large to convert to C int")
        handle = _core.make_handle(self, callback, args)
        _core.add_poll(self, fd, writer, handle, kind)
        if isinstance(fileobj, int):
            self._poll_objects.pop((fd, writer), None)
        else:
            self._poll_objects[fd, writer] = fileobj

    def _remove_poll(self, fileobj, writer):
        if self.is_closed():
            return False
        try:
            fd = self._ensure_fd_no_transport(fileobj)
        except ValueError:
            # A closed socket (fileno() -1): as asyncio's selector, find its
            # registration by the object itself.
            fd = next((f for (f, w), obj in self._poll_objects.items() if obj is fileobj and w == writer), None)
            if fd is None:
                raise
        if fd > _FD_MAX:
            return False
        self._poll_objects.pop((fd, writer), None)
        return _core.remove_poll(self, fd, writer)

    def add_reader(self, fd, callback, *args):
        """Call callback(*args) whenever fd is readable."""
        self._add_poll(fd, False, callback, args)

    def remove_reader(self, fd):
        return self._remove_poll(fd, False)

    # asyncio's selector loop has these private twins (no transport check), and code of
    # asyncio's that runs on any loop calls them: PidfdChildWatcher (3.10-3.13), which a
    # user may set in the policy (pyloop then hands it each child, as asyncio does).
    def _add_reader(self, fd, callback, *args):
        self._add_poll(fd, False, callback, args)

    def _remove_reader(self, fd):
        return self._remove_poll(fd, False)

    def add_writer(self, fd, callback, *args):
        """Call callback(*args) whenever fd is writable."""
        self._add_poll(fd, True, callback, args)

    def remove_writer(self, fd):
        return self._remove_poll(fd, True)

    # ---- signals -----------------------------------------------------------------

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) on the loop when signal sig arrives (main thread only).
        As asyncio: Python's handler for sig becomes a no-op and the signal's number
        reaches the loop through signal.set_wakeup_fd."""
        if _compat.iscoroutine_or_function(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        _check_signal(sig)
        self._check_closed()
        if threading.current_thread() is not threading.main_thread() or self._take_wakeup_fd() < 0:
            raise RuntimeError("set_wakeup_fd only works in main thread of the main interpreter")
        handle = _core.make_handle(self, callback, args)
        _core.add_signal(self, sig, handle)
        self._signals.add(sig)
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            _core.remove_signal(self, sig)
            self._signals.discard(sig)
            if not self._signals and not self.is_running():
                self._release_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler for sig; True if one was set."""
        _check_signal(sig)
        if sig not in self._signals:
            return False
        _core.remove_signal(self, sig)
        self._signals.discard(sig)
        self._restore_signal(sig)
        if not self._signals and not self.is_running():
            self._release_wakeup_fd()
        return True

    def _restore_signal(self, sig):
        # Give the signal back to Python's default, as asyncio does.
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        except ValueError:  # not the main thread: nothing we can restore from here
            pass

    def _restore_signals(self):
        sigs, self._signals = self._signals, set()
        for sig in sigs:
            self._restore_signal(sig)


# loop.sendfile() tries os.sendfile on stream transports, and start_tls() takes them,
# as asyncio's selector transports.
_core.StreamTransport._sendfile_compatible = constants._SendfileMode.TRY_NATIVE
_core.StreamTransport._start_tls_compatible = True

