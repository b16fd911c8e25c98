"""`make bench` runs bench/run.py: every suite, once, at the smallest size, into a
temporary folder. It checks that the suites run to the end and write their results;
the figures themselves mean nothing at this size (speed is never asserted in tests)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import missing

RUN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "run.py")

SUITES = {  # suite: the smallest case of it
    "micro": ["--scale", "0.001", "--only", "call_soon"],
    "dns": ["--scale", "0.01"],
    "echo": ["--seconds", "0.1", "--only", "tcp protocol 1 KiB"],
    "tls": ["--seconds", "0.1", "--only", "handshakes"],
    "proc": ["--scale", "0.01", "--only", "pipe"],
    "http": ["--seconds", "0.5", "--only", "aiohttp hello keep-alive"],
    "scale": ["--scale", "0.01"],
    "flood": ["--seconds", "0.1", "--only", "empty"],
}


@pytest.mark.parametrize("suite", SUITES)
def test_a_bench_suite_runs_and_writes_its_results(suite, tmp_path):
    if suite == "http" and not shutil.which("wrk"):
        missing("wrk is not installed (make bench installs it)")
    out = subprocess.run([sys.executable, RUN, "--suite", suite, "--repeat", "1", "--results", str(tmp_path),
                          *SUITES[suite]], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(tmp_path / f"{suite}.json") as f:
        data = json.load(f)
    assert data["python"] and data["when"]
    assert "pyloop" in out.stdout
