"""CPython's own asyncio tests (test.test_asyncio) on pyloop loops.

    python tests/cpython/run.py [-j N] [--timeout S] [MODULE ...]

Every way those tests make a loop (asyncio.new_event_loop(), asyncio.run(), Runner,
IsolatedAsyncioTestCase, the default policy, asyncio.SelectorEventLoop(selector),
asyncio.EventLoop) makes a pyloop loop instead (shim.py). Each test module runs in a
child interpreter of its own (a crash or hang costs that module, not the run); each test
has a time limit. The outcome is compared with expected-failures-3.X.txt for this Python:
a failure not listed, or a listed test that passes, fails the run, so the list can only
shrink. Only tests that read or patch asyncio's private internals may be listed. A
listed test must fail, not hang or crash, unless its reason begins "[hangs] " (then it
must hang); a test that skips on pyloop only (run again on asyncio's loops to see) fails
the run; a file a test leaves in / is removed and reported.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
# Modules that test nothing a loop does: Windows only, or asyncio's own proactor.
NOT_RUN = {"test_windows_events", "test_windows_utils", "test_proactor_events"}


HANGS = "[hangs] "  # a listed test's reason starts so when it fails by hanging (time limit)
PACKAGE = "test.test_asyncio"  # --package: another package of tests (the runner's own test)


def _package():
    import importlib
    return importlib.import_module(PACKAGE)


def modules():
    pkg = _package()
    names = sorted(n[:-3] for n in os.listdir(os.path.dirname(pkg.__file__))
                   if n.startswith("test_") and n.endswith(".py"))
    return [n for n in names if n not in NOT_RUN]


def module_path(name):
    pkg = _package()
    return os.path.join(os.path.dirname(pkg.__file__), name + ".py")


def read_expected(path):
    """{test id: reason} from lines `test_id: reason` (# comments and blank lines)."""
    expected = {}
    if not os.path.exists(path):
        return expected
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, sep, reason = line.partition(": ")
            if not sep or not reason.strip():
                sys.exit(f"{path}:{lineno}: every expected failure needs `test_id: reason`")
            expected[test_id.strip()] = reason.strip()
    return expected


LITTER = []  # {"id", "detail"}: files tests left in / (the child removed them)


def skipped_only_here(outcomes, names, timeout, out_dir, jobs, expected):
    """The tests that skipped on pyloop and run on asyncio's own loops: {id: (pyloop's
    reason, asyncio's outcome)}. A listed test (it reads asyncio's internals, and
    skips where they are missing) is not run again."""
    skipped = {}
    for test_id, rec in outcomes.items():
        if rec["outcome"] == "skipped" and test_id not in expected:
            module = test_id[len(PACKAGE) + 1:].split(".")[0]
            if module in names:
                skipped.setdefault(module, []).append(test_id)
    found = {}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        runs = [pool.submit(run_module, module, timeout, out_dir, None, ids, True) for module, ids in skipped.items()]
        for fut in runs:
            for test_id, rec in fut.result()[0].items():
                if rec["outcome"] not in ("skipped", "started") and test_id in outcomes:
                    found[test_id] = (outcomes[test_id].get("detail", ""), rec["outcome"])
    return found


def run_module(name, timeout, out_dir, expected_file=None, only=None, stock=False):
    """Run one module in child processes; return ({test id: record}, their output). A
    child that dies (a crash, or a test past its time limit: faulthandler ends it) is
    started again past the test it was running, which is recorded as crashed."""
    tag = name + (".stock" if stock else "")
    result = os.path.join(out_dir, tag + ".json")
    skip_file = os.path.join(out_dir, tag + ".skip")
    outcomes, output = {}, []
    for attempt in range(50):
        cmd = [sys.executable, os.path.join(HERE, "child.py"), "--timeout", str(timeout),
               "--json", result, f"{PACKAGE}.{name}"]
        if expected_file:
            cmd[2:2] = ["--expected", expected_file]
        if only is not None:
            only_file = os.path.join(out_dir, tag + ".only")
            with open(only_file, "w", encoding="utf-8") as f:
                f.write("\n".join(only))
            cmd[2:2] = ["--only", only_file]
        if stock:
            cmd[2:2] = ["--stock"]
        if attempt:
            with open(skip_file, "w", encoding="utf-8") as f:
                f.write("\n".join(outcomes))
            cmd[2:2] = ["--skip", skip_file]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=out_dir, timeout=max(900, timeout * 20))
        output.append(proc.stdout.decode(errors="replace"))
        if os.path.exists(result):
            with open(result, encoding="utf-8") as f:
                for line in f:  # JSON lines: "started", then the outcome, per test
                    rec = json.loads(line)
                    if rec["outcome"] == "littered":  # a note, not the test's outcome
                        LITTER.append(rec)
                    elif rec["outcome"] != "started" or rec["id"] not in outcomes:
                        outcomes[rec["id"]] = rec
        hung = [r for r in outcomes.values() if r["outcome"] == "started"]
        if not hung:
            if proc.returncode not in (0, 1):
                outcomes[f"{PACKAGE}.{name}"] = {
                    "id": f"{PACKAGE}.{name}", "outcome": "crashed",
                    "detail": f"the child exited with {proc.returncode}:\n{output[-1][-3000:]}"}
            break
        for rec in hung:
            rec["outcome"] = "crashed"
            rec["detail"] = (f"the child ended (exit status {proc.returncode}) while this test ran, past "
                             f"its {timeout} s limit or by a crash:\n{output[-1][-3000:]}")
    return outcomes, "".join(output)


def main():
    global PACKAGE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=40.0, help="per test, seconds")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure's output")
    ap.add_argument("--expected", default=os.path.join(HERE, f"expected-failures-{VERSION}.txt"))
    ap.add_argument("--package", default=PACKAGE, help=argparse.SUPPRESS)
    ap.add_argument("modules", nargs="*")
    args = ap.parse_args()
    PACKAGE = args.package
    expected = read_expected(args.expected)
    names = args.modules or modules()
    t0 = time.monotonic()
    outcomes, outputs = {}, {}
    with tempfile.TemporaryDirectory(prefix="pyloop-cpython-") as out_dir:
        expected_file = os.path.join(out_dir, "expected.txt")
        with open(expected_file, "w", encoding="utf-8") as f:
            f.write("\n".join(expected))
        # the biggest modules first, so that two jobs end together
        names.sort(key=lambda n: -os.path.getsize(module_path(n)))
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            runs = {name: pool.submit(run_module, name, args.timeout, out_dir, expected_file) for name in names}
            for name, fut in runs.items():
                got, outputs[name] = fut.result()
                outcomes.update(got)
        # Skips that happen on pyloop only (a test that skips when the loop is not the one
        # it expects) would hide what it tests: run those on asyncio's own loops.
        only_here = skipped_only_here(outcomes, set(names), args.timeout, out_dir, args.jobs, expected)
    counts = {}
    unexpected, fixed = [], []
    for test_id, rec in sorted(outcomes.items()):
        kind = rec["outcome"]
        counts[kind] = counts.get(kind, 0) + 1
        bad = kind in ("failure", "error", "crashed")
        hangs = expected.get(test_id, "").startswith(HANGS)
        if kind == "crashed" and test_id in expected and not hangs:
            # a listed test must fail by itself: one that hangs or crashes the process is
            # a defect of its own (and may hide what the listed reason says), unless its
            # line says it fails by hanging
            rec = dict(rec, outcome="crashed or hung though listed as failing (not as hanging)")
            unexpected.append(rec)
        elif kind in ("failure", "error") and hangs:
            rec = dict(rec, outcome=f"{kind} though listed as hanging (the list's line must say how it fails)")
            unexpected.append(rec)
        elif bad and test_id not in expected:
            unexpected.append(rec)
        elif not bad and kind != "skipped" and test_id in expected:
            fixed.append(test_id)
    ran_modules = {f"{PACKAGE}.{n}" for n in names}
    listed_not_run = [t for t in expected if any(t.startswith(m + ".") for m in ran_modules)
                      and t not in outcomes]
    for rec in unexpected:
        print(f"\nFAIL ({rec['outcome']}): {rec['id']}\n{rec.get('detail', '')}")
    for test_id in fixed:
        print(f"\nPASSED BUT LISTED AS EXPECTED TO FAIL: {test_id} ({expected[test_id]}): "
              f"remove it from {os.path.basename(args.expected)}")
    for test_id in listed_not_run:
        print(f"\nLISTED BUT NOT FOUND: {test_id}: remove it from {os.path.basename(args.expected)}")
    for test_id, (reason, there) in sorted(only_here.items()):
        print(f"\nSKIPPED ON PYLOOP ONLY: {test_id} (skip reason: {reason}; on asyncio's loops: {there})")
    for rec in LITTER:
        print(f"\nLEFT A FILE OUTSIDE A TEMPORARY FOLDER: {rec['id']}: {rec['detail']}")
    if args.verbose:
        for name, output in outputs.items():
            print(f"\n==== {name}\n{output}")
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"\nCPython {VERSION} test_asyncio on pyloop: {len(names)} modules, {summary} "
          f"({len(expected)} expected failures listed) in {time.monotonic() - t0:.0f} s")
    ok = not unexpected and not fixed and not listed_not_run and not only_here
    passed = sum(n for k, n in counts.items() if k in ("success", "expected failure"))
    failed = len(unexpected) + len(fixed) + len(listed_not_run) + len(only_here)
    print(f"{passed} passed, {failed} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
