"""tests/cpython/run.py (make cpython-tests) reports what it must, on a package of
tests made here: a listed test that hangs is reported (not counted as its expected
failure) unless its line says it hangs, a test that skips on pyloop only is reported, a file a test leaves in / is
removed and reported, and a test that interrupts itself gets KeyboardInterrupt even when
the runner was started with SIGINT ignored (a shell's background job)."""

import os
import signal
import subprocess
import sys
import textwrap

RUN = os.path.join(os.path.dirname(__file__), "cpython", "run.py")

TESTS = '''
import asyncio, os, signal, socket, time, unittest
import pyloop

class Cases(unittest.TestCase):
    def test_passes(self):
        pass

    def test_listed_and_hangs(self):
        time.sleep(60)

    def test_listed_and_fails(self):
        self.fail("as listed")

    def test_listed_as_hanging(self):
        time.sleep(60)

    def test_skips_on_pyloop_only(self):
        loop = asyncio.new_event_loop()
        try:
            if isinstance(loop, pyloop.Loop):
                self.skipTest("needs a selector loop")
        finally:
            loop.close()

    def test_leaves_a_file_in_the_root(self):
        path = "/pyloop-runner-test-%d" % os.getpid()
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(path)

    def test_interrupts_itself(self):
        # (to the process, as CPython's test_runners does: the runner's watchdog thread
        # must never be the one that takes it)
        with self.assertRaises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
'''


def test_the_runner_reports_hangs_pyloop_only_skips_and_litter(tmp_path):
    pkg = tmp_path / "fakesuite"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "test_cases.py").write_text(textwrap.dedent(TESTS))
    expected = tmp_path / "expected.txt"
    expected.write_text("fakesuite.test_cases.Cases.test_listed_and_hangs: fails (it hangs: reported)\n"
                        "fakesuite.test_cases.Cases.test_listed_and_fails: fails, as listed\n"
                        "fakesuite.test_cases.Cases.test_listed_as_hanging: [hangs] as its line says\n")
    before = set(os.listdir("/"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, RUN, "--package", "fakesuite", "--expected", str(expected), "--timeout", "3",
                          "-j", "1"], capture_output=True, text=True, env=env, timeout=300,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    text = out.stdout
    assert out.returncode == 1, text + out.stderr
    assert ("FAIL (crashed or hung though listed as failing (not as hanging)): "
            "fakesuite.test_cases.Cases.test_listed_and_hangs") in text
    assert ("SKIPPED ON PYLOOP ONLY: fakesuite.test_cases.Cases.test_skips_on_pyloop_only (skip reason: needs a "
            "selector loop; on asyncio's loops: success)") in text
    assert "LEFT A FILE OUTSIDE A TEMPORARY FOLDER: fakesuite.test_cases.Cases.test_leaves_a_file_in_the_root" in text
    assert set(os.listdir("/")) == before  # and removed
    # the listed failure is expected; the rest passed (SIGINT reached the test as Python's)
    for quiet in ("test_interrupts_itself", "test_listed_and_fails", "test_listed_as_hanging"):
        assert quiet not in text, text
    assert text.rstrip().endswith("3 passed, 2 failed"), text
