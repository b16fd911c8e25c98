"""One test.test_asyncio module on pyloop loops (started by run.py).

    python child.py --json OUT [--timeout S] [--skip FILE] [--only FILE] [--stock]
                    test.test_asyncio.MODULE

Writes a JSON line per test to OUT: {"id", "outcome", "detail"}, with an "started"
line first, so that the parent knows which test was running if this process dies.
A test that runs past --timeout seconds ends the process (faulthandler prints every
thread's stack); the parent records it and starts the module again past it.
--only runs just the test ids in FILE; --stock runs them on asyncio's own loops (no shim:
does a test skip there too?).

A test that leaves a file in / (as root, a test whose mocks pyloop does not go through
binds a real socket at /test) has it removed, and its outcome says so.
"""

import argparse
import faulthandler
import json
import os
import signal
import stat
import sys
import traceback
import unittest


# test_events, test_sendfile and test_sock_lowlevel run one mixin of tests on a selector
# loop per selector (select, poll, epoll): on pyloop they are the same loop, run once (as
# EPollEventLoopTests).
DUPLICATES = {"SelectEventLoopTests", "PollEventLoopTests"}
EXPECTED_LIMIT = 15.0  # seconds for a test on the list of expected failures


class JsonResult(unittest.TextTestResult):
    expected = frozenset()

    def __init__(self, out, timeout, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = out
        self._timeout = timeout

    def _write(self, test, outcome, detail=""):
        self._out.write(json.dumps({"id": test.id(), "outcome": outcome, "detail": detail}) + "\n")
        self._out.flush()

    def startTest(self, test):
        self._write(test, "started")
        self._root = set(os.listdir("/"))
        # A test expected to fail may fail by hanging: it gets less time.
        limit = min(self._timeout, EXPECTED_LIMIT) if test.id() in self.expected else self._timeout
        # faulthandler's watchdog thread blocks every signal once it runs; started with
        # them blocked already, it can never take a SIGINT a test sends the process
        # (which the main thread's sleep would then not see: a hang).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            faulthandler.dump_traceback_later(limit, exit=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        super().startTest(test)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        litter = sorted(set(os.listdir("/")) - self._root)
        for name in litter:
            path = "/" + name
            try:
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    continue  # not ours to remove (a mount point, a tool's)
                os.unlink(path)
            except OSError:
                continue
            self._write(test, "littered", f"left {path} behind (removed)")
        super().stopTest(test)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._write(test, "success")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._write(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.case._SubTest) or not hasattr(test, "id"):
            return
        self._write(test, "error", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failure" if issubclass(err[0], test.failureException) else "error"
            # A subtest's failure is its test's failure.
            self._out.write(json.dumps({"id": test.id(), "outcome": kind,
                                        "detail": self._exc_info_to_string(err, test)}) + "\n")
            self._out.flush()

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._write(test, "skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._write(test, "expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._write(test, "failure", "unexpected success")


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--skip", help="a file of test ids already run")
    ap.add_argument("--expected", help="a file of the test ids expected to fail")
    ap.add_argument("--only", help="a file of the test ids to run (no other)")
    ap.add_argument("--stock", action="store_true", help="on asyncio's own loops")
    ap.add_argument("module")
    args = ap.parse_args()
    # Started from a shell's background job, the process inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: tests that interrupt themselves
    # (test_runners) would hang. A test process gets Python's default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not args.stock:
        import shim
        shim.install()
    if args.expected:
        with open(args.expected, encoding="utf-8") as f:
            JsonResult.expected = frozenset(line.strip() for line in f if line.strip())
    skip = set()
    if args.skip:
        with open(args.skip, encoding="utf-8") as f:
            skip = {line.strip() for line in f if line.strip()}
    try:
        suite = unittest.defaultTestLoader.loadTestsFromName(args.module)
    except unittest.SkipTest as exc:
        print(f"{args.module} skipped: {exc}")
        return 0
    except Exception:
        traceback.print_exc()
        return 3
    only = None
    if args.only:
        with open(args.only, encoding="utf-8") as f:
            only = {line.strip() for line in f if line.strip()}
    tests = [t for t in flatten(suite)
             if t.id() not in skip and type(t).__name__ not in DUPLICATES and (only is None or t.id() in only)]
    # Loader errors (an import that failed) come as _FailedTest: they fail as tests.
    with open(args.json, "a", encoding="utf-8") as out:
        runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=1,
                                         resultclass=lambda *a, **k: JsonResult(out, args.timeout, *a, **k))
        result = runner.run(unittest.TestSuite(tests))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
