"""Recording the threads of a script's process, from both sides.

Inside the script's process (`python -m pyloop.threads.record LOOP OUT SCRIPT ARGS`):
`threading.Thread.start` is wrapped, so every Python thread is known exactly: its name,
its OS thread id, when it started and ended, the Python stack that started it, and
the executor it works for. Nothing runs in the process between those events: no
sampler thread, so the recording adds no thread of its own.

Outside it (`sample_process`, in the tool's own process): /proc/PID/task is read every
`interval` seconds: each OS thread's id, name (comm) and CPU time (schedstat, in ns),
Python threads and others alike. An OS thread that lives less than one interval can be
missed; a Python thread never is (its start and end come from the hooks).

All times are CLOCK_MONOTONIC (time.monotonic()), the same clock in both processes.
"""

import asyncio
import json
import os
import signal
import sys
import threading
import time

# Frames that say nothing about why a thread started.
_SKIP_MODULES = ("threading", "concurrent.futures.thread", "concurrent.futures._base", "pyloop.threads.record",
                 "runpy", "asyncio.events", "asyncio.runners", "contextvars")
_SKIP_PACKAGES = tuple(m + "." for m in _SKIP_MODULES)
_MAX_FRAMES = 6
# Where the walk outwards stops: the loop's own machinery and the script's top level.
_STOP_LABELS = ("loop._run_once", "loop.run_forever", "loop.run_until_complete", "<module>")


def _frame_label(frame):
    code = frame.f_code
    this = frame.f_locals.get("self") if code.co_argcount else None
    if isinstance(this, asyncio.AbstractEventLoop):  # any loop's method: asyncio's, pyloop's
        return f"loop.{code.co_name}"
    qualname = getattr(code, "co_qualname", None)  # 3.11+
    if qualname is None:
        qualname = f"{type(this).__name__}.{code.co_name}" if this is not None else code.co_name
    module = frame.f_globals.get("__name__", "?")
    if module.startswith("asyncio.") or module == "__main__":
        return qualname
    top = module.split(".")[0]
    return f"{top} {qualname}"


def condensed_stack(frame, limit=_MAX_FRAMES):
    """The frames that matter, innermost first: [`loop.run_in_executor`,
    `loop.getaddrinfo`, `loop.create_connection`, `aiohttp TCPConnector._wrap_...`]."""
    out = []
    while frame is not None and len(out) < limit:
        module = frame.f_globals.get("__name__", "")
        if module not in _SKIP_MODULES and not module.startswith(_SKIP_PACKAGES):
            label = _frame_label(frame)
            if label in _STOP_LABELS:
                break
            if not out or out[-1] != label:
                out.append(label)
        frame = frame.f_back
    return out


def _executor_of(frame):
    """If a ThreadPoolExecutor is starting this thread: how to name it."""
    while frame is not None:
        if frame.f_globals.get("__name__") == "concurrent.futures.thread":
            ex = frame.f_locals.get("self")
            if ex is not None and type(ex).__name__.endswith("Executor"):
                loop = asyncio._get_running_loop()
                if loop is not None and getattr(loop, "_default_executor", None) is ex:
                    return f"the loop's default executor ({type(ex).__name__})"
                return f"{type(ex).__name__} {getattr(ex, '_thread_name_prefix', '') or hex(id(ex))}"
        frame = frame.f_back
    return None


class Recorder:
    """Python threads of this process, from threading.Thread.start's hook, written to
    a file as JSON lines as they happen (a script that leaves through os._exit keeps
    what it did until then)."""

    def __init__(self, out):
        self._out = out  # line-buffered text file
        self._lock = threading.Lock()
        self._count = 0

    def write(self, event, **fields):
        with self._lock:
            self._out.write(json.dumps({"event": event, **fields}) + "\n")

    def install(self):
        recorder = self
        original = threading.Thread.start

        def start(thread):
            caller = sys._getframe(1)
            with recorder._lock:
                recorder._count += 1
                index = recorder._count
            info = {"id": index, "name": thread.name, "daemon": thread.daemon,
                    "started_from": condensed_stack(caller), "executor": _executor_of(caller)}
            run = thread.run

            def recorded_run():
                recorder.write("thread", tid=threading.get_native_id(), start=time.monotonic(), **info)
                try:
                    run()
                finally:
                    recorder.write("thread_end", id=index, end=time.monotonic())

            thread.run = recorded_run
            return original(thread)

        threading.Thread.start = start


def run_recorded(loop_name, out_path, argv):
    """The script's side: run argv on loop_name, recording its Python threads."""
    from pyloop.__main__ import exec_script, use_loop

    out = open(out_path, "w", buffering=1)
    recorder = Recorder(out)
    recorder.install()
    use_loop(loop_name)
    script_start = time.monotonic()
    recorder.write("run", loop=loop_name, pid=os.getpid(), python=sys.version.split()[0],
                   main_tid=threading.get_native_id(), script_start=script_start)
    exit_code = 0
    error = None
    try:
        exec_script(argv)
    except SystemExit as exc:
        code = exc.code
        exit_code = code if isinstance(code, int) else (0 if code is None else 1)
        if exit_code and not isinstance(code, int):
            error = str(code)
        raise
    except BaseException as exc:
        exit_code = 1
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise
    finally:
        script_end = time.monotonic()
        if os.environ.get("PYLOOP_TRACE") and "pyloop._trace" in sys.modules:
            # what the pyloop loops recorded of themselves (--trace), times from the start
            recorder.write("loop_events", events=sys.modules["pyloop._trace"].chrome_events(script_start))
        recorder.write("end", script_end=script_end, exit_code=exit_code, error=error)
        out.close()


def read_record(path, returncode):
    """The script's record as one dict (None if the script never started)."""
    data, threads = None, {}
    with open(path) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a line cut short by the process's end
            kind = ev.pop("event")
            if kind == "run":
                data = dict(ev, script_end=None, exit_code=returncode)
            elif kind == "thread":
                threads[ev["id"]] = dict(ev, end=None)
            elif kind == "thread_end" and ev["id"] in threads:
                threads[ev["id"]]["end"] = ev["end"]
            elif kind == "loop_events" and data is not None:
                data["loop_events"] = ev["events"]
            elif kind == "end" and data is not None:
                data.update(ev)
    if data is not None:
        data["python_threads"] = list(threads.values())
    return data


# ---- the tool's side ------------------------------------------------------------------

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _cpu_ns(pid, tid):
    raw = _read(f"/proc/{pid}/task/{tid}/schedstat")
    if raw:
        return int(raw.split()[0])
    raw = _read(f"/proc/{pid}/task/{tid}/stat")  # no schedstat: clock ticks
    if raw:
        fields = raw.rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return None


def sample_process(proc, interval):
    """Reads /proc/PID/task every `interval` s until proc exits: {tid: record}, where a
    record has comm, first and last seen, CPU ns, and busy spans [t0, t1, CPU ns]."""
    interrupted = [0]

    def on_sigint(signum, frame):
        # Ctrl-C reached the script too (one process group): keep sampling to record its
        # way out (a KeyboardInterrupt could land anywhere in a round). A second one stops it.
        interrupted[0] += 1
        if interrupted[0] > 1:
            proc.kill()

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        return _sample(proc, interval)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _sample(proc, interval):
    pid = proc.pid
    seen = {}
    rounds = 0
    while True:
        rounds += 1
        now = time.monotonic()
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            tids = []
        for tid in tids:
            cpu = _cpu_ns(pid, tid)
            if cpu is None:
                continue
            rec = seen.get(tid)
            if rec is None:
                comm = _read(f"/proc/{pid}/task/{tid}/comm")
                seen[tid] = {"comm": comm.decode(errors="replace").strip() if comm else "?", "first": now,
                             "last": now, "cpu_first": cpu, "cpu": cpu, "busy": [], "samples": 1}
                continue
            rec["samples"] += 1
            if cpu > rec["cpu"] and now > rec["last"]:
                used = cpu - rec["cpu"]
                frac = used / 1e9 / (now - rec["last"])
                busy = rec["busy"]  # spans [t0, t1, CPU ns]
                if busy and busy[-1][1] == rec["last"] and abs(busy[-1][2] / 1e9 / (busy[-1][1] - busy[-1][0]) - frac) < 0.05:
                    busy[-1][1] = now  # one span while the load stays the same
                    busy[-1][2] += used
                else:
                    busy.append([rec["last"], now, used])
            rec["cpu"] = cpu
            rec["last"] = now
            # Names change: a new thread usually names itself right after it starts (libuv's
            # pool threads, 3.14's Python threads), so its first samples read it again;
            # later, every 64th round does.
            if rec["samples"] <= 8 or rounds % 64 == 0:
                comm = _read(f"/proc/{pid}/task/{tid}/comm")
                if comm:
                    rec["comm"] = comm.decode(errors="replace").strip()
        if proc.poll() is not None:
            return seen
        time.sleep(interval)


def merge(data, samples, interval):
    """One run's threads: the script's own record joined with the samples, times in
    seconds from the script's start. Main thread first, then Python threads, then the
    others, each by start time."""
    t0 = data["script_start"]
    last_sample = max((rec["last"] for rec in samples.values()), default=t0)
    if data["script_end"] is None:  # left through os._exit or a signal
        data["script_end"] = last_sample
    end = max(data["script_end"], last_sample) - t0  # the process's end (after the script's)

    def spans(rec):
        # [start, end, busy fraction], from the script's start on
        out = []
        for a, b, used in rec["busy"] if rec else ():
            frac = min(1.0, used / 1e9 / (b - a))
            a, b = max(a - t0, 0.0), b - t0
            if b > 0:
                # (at least 0.001: a span is there because the thread ran, however little)
                out.append([round(a, 6), round(b, 6), max(round(frac, 3), 0.001)])
        return out

    def cpu(rec):
        # CPU seconds since the script started (a span across the start counts in part)
        if not rec:
            return None
        total = 0.0
        for a, b, used in rec["busy"]:
            if b > t0:
                total += used * (b - max(a, t0)) / (b - a)
        if rec["first"] >= t0:
            total += rec["cpu_first"]  # used before its first sample: within one interval of its start
        return round(total / 1e9, 6)

    threads = []
    main = samples.get(data["main_tid"])
    threads.append({"tid": data["main_tid"], "kind": "main", "name": "MainThread", "comm": main and main["comm"],
                    "start": 0.0, "end": round(end, 6), "cpu": cpu(main), "busy": spans(main),
                    "started_from": [], "executor": None})
    python_tids = set()
    for t in sorted(data["python_threads"], key=lambda t: t["start"]):
        if t["tid"] is None:
            continue  # start() failed
        python_tids.add(t["tid"])
        rec = samples.get(t["tid"])
        t_end = t["end"] if t["end"] is not None else data["script_end"]
        threads.append({"tid": t["tid"], "kind": "python", "name": t["name"], "comm": rec and rec["comm"],
                        "start": round(t["start"] - t0, 6), "end": round(t_end - t0, 6), "cpu": cpu(rec),
                        "busy": spans(rec), "started_from": t["started_from"], "executor": t["executor"],
                        "daemon": t["daemon"]})
    others = [(tid, rec) for tid, rec in samples.items() if tid != data["main_tid"] and tid not in python_tids]
    for tid, rec in sorted(others, key=lambda x: x[1]["first"]):
        # Seen at the last sample: alive when the process ended.
        t_end = end if rec["last"] >= last_sample - interval / 2 else rec["last"] - t0
        threads.append({"tid": tid, "kind": "os", "name": rec["comm"], "comm": rec["comm"],
                        "start": round(max(rec["first"] - t0, 0.0), 6), "end": round(max(t_end, 0.0), 6),
                        "cpu": cpu(rec), "busy": spans(rec), "started_from": [], "executor": None})
    run = {"loop": data["loop"], "python": data["python"], "exit_code": data["exit_code"],
           "error": data.get("error"), "script_time": round(data["script_end"] - t0, 6), "duration": round(end, 6),
           "interval": interval, "threads": threads}
    if "loop_events" in data:
        run["loop_events"] = data["loop_events"]
    return run


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python -m pyloop.threads.record LOOP OUT.json SCRIPT [ARGS...]")
    # Through the module's real name: the hooks' frames must be recognised as the
    # recorder's, not as the script's (which also runs as __main__).
    from pyloop.threads import record as _record
    _record.run_recorded(sys.argv[1], sys.argv[2], sys.argv[3:])
