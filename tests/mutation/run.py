"""Does the suite catch what it claims? Applies each one-line change listed in
mutations.py to a scratch copy of this tree, rebuilds, and runs the tests that must
catch it: every mutation must make them fail.

    python tests/mutation/run.py [--only TEXT] [--list]

By hand, before a release (make mutation-check); not in CI, where the rebuilds would
cost more than the time it has. It needs what a build needs (a C++ compiler, CMake) and
PyPI for the test dependencies, once. Everything it makes is under build/mutation/: the
scratch copy of the tree (the working tree as it is, uncommitted changes included), its
CMake build, and a virtual environment with the test dependencies and no pyloop (the
tests, and the interpreters they start, import the scratch copy's pyloop through
PYTHONPATH). The real tree is never changed.

Exit status: 0 when the unmutated tests pass and every mutation was caught; 1 when a
mutation survived (or did not build); 2 when the unmutated tests fail.
"""

import argparse
import ast
import glob
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORK = os.path.join(ROOT, "build", "mutation")
TREE = os.path.join(WORK, "tree")
BUILD = os.path.join(WORK, f"cmake-{sys.version_info[0]}.{sys.version_info[1]}")
VENV = os.path.join(WORK, f"venv-{sys.version_info[0]}.{sys.version_info[1]}")
PY = os.path.join(VENV, "bin", "python")
TEST_TIME_LIMIT = 900  # seconds for one run of the selected tests

sys.path.insert(0, HERE)
from mutations import MUTATIONS  # noqa: E402


def say(*args):
    print(*args, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def copy_tree():
    """The working tree's files (tracked and new, not ignored) into TREE, afresh."""
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True).stdout.split("\0")
    shutil.rmtree(TREE, ignore_errors=True)
    for f in filter(None, files):
        src = os.path.join(ROOT, f)
        if not os.path.isfile(src):
            continue
        dst = os.path.join(TREE, f)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


def requirements():
    """The project's dependencies and its test extras, from pyproject.toml (by hand:
    tomllib is 3.11+)."""
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    reqs = []
    for pattern in (r"^dependencies = (\[.*?\])", r"^test = (\[.*?\])"):
        m = re.search(pattern, text, re.M | re.S)
        if m:
            reqs += ast.literal_eval(m.group(1))
    return reqs + ["pybind11>=2.12"]


def make_venv():
    if not os.path.exists(PY):
        say(f"virtual environment for the tests: {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    out = run([PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements()])
    if out.returncode != 0:
        sys.exit(f"pip could not install the test dependencies:\n{out.stderr[-3000:]}")


def configure():
    pybind11_dir = run([PY, "-m", "pybind11", "--cmakedir"], check=True).stdout.strip()
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    out = run(["cmake", "-S", TREE, "-B", BUILD, *gen, "-DCMAKE_BUILD_TYPE=Release",
               f"-DPython_EXECUTABLE={PY}", f"-Dpybind11_DIR={pybind11_dir}"])
    if out.returncode != 0:
        sys.exit(f"cmake could not configure the scratch tree:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")


def build():
    """Builds the scratch tree and puts _core next to its sources; the error text, or None."""
    out = run(["cmake", "--build", BUILD, "--parallel", str(os.cpu_count() or 2)])
    if out.returncode != 0:
        return (out.stdout + out.stderr)[-3000:]
    for old in glob.glob(os.path.join(TREE, "pyloop", "_core*.so")):
        os.remove(old)
    [so] = glob.glob(os.path.join(BUILD, "_core*.so"))
    shutil.copy2(so, os.path.join(TREE, "pyloop"))
    return None


def tests_fail(test, k):
    """(failed?, the end of pytest's output). pytest's 5 (nothing selected) is no catch."""
    env = dict(os.environ, PYTHONPATH=TREE, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONASYNCIODEBUG", None)
    try:
        out = run([PY, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test, "-k", k],
                  cwd=TREE, env=env, timeout=TEST_TIME_LIMIT)
    except subprocess.TimeoutExpired:
        return True, f"(ran past {TEST_TIME_LIMIT} s)"
    tail = (out.stdout + out.stderr).strip().splitlines()[-1:] or [""]
    if out.returncode == 5:
        return False, "no test selected: " + tail[0]
    return out.returncode != 0, tail[0]


def applies(m):
    v = sys.version_info[:2]
    return v >= m.get("since", (0, 0)) and v < m.get("before", (99, 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="only the mutations whose file, text or promise contain this")
    ap.add_argument("--list", action="store_true", help="list the mutations and stop")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if any(args.only in m[key] for key in ("file", "old", "why"))]
    if args.list:
        for i, m in enumerate(chosen, 1):
            say(f"{i:2} {m['file']}: {m['why']}  [{m['test']} -k {m['k']!r}]")
        return 0
    t0 = time.monotonic()
    say(f"scratch copy of the tree: {TREE}")
    copy_tree()
    make_venv()
    configure()
    err = build()
    if err:
        sys.exit(f"the unmutated tree does not build:\n{err}")
    for m in chosen:  # each must change exactly one place
        text = open(os.path.join(TREE, m["file"]), encoding="utf-8").read()
        if text.count(m["old"]) != 1:
            sys.exit(f"{m['file']}: the text to change occurs {text.count(m['old'])} times, not once:\n{m['old']}")

    say("\nthe unmutated tests first (they must pass):")
    broken = False
    for test, k in sorted({(m["test"], m["k"]) for m in chosen if applies(m)}):
        failed, tail = tests_fail(test, k)
        say(f"  {'FAIL' if failed else 'pass'}  {test} -k {k!r}: {tail}")
        broken |= failed
    if broken:
        say("\nthe unmutated tree fails the tests above: fix that first")
        return 2

    say(f"\n{len(chosen)} mutations:")
    survived, skipped = [], 0
    for i, m in enumerate(chosen, 1):
        label = f"{i:2} {m['file']}: {m['why']}"
        if not applies(m):
            say(f"  skip    {label} (not on Python {sys.version_info[0]}.{sys.version_info[1]})")
            skipped += 1
            continue
        path = os.path.join(TREE, m["file"])
        original = open(path, encoding="utf-8").read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m["old"], m["new"], 1))
        try:
            compiled = not m["file"].startswith("cpp/")
            err = None if compiled else build()
            if err:
                survived.append((label, "did not build: " + err.splitlines()[-1]))
                say(f"  BUILD   {label}")
                continue
            caught, tail = tests_fail(m["test"], m["k"])
            say(f"  {'caught ' if caught else 'SURVIVED'} {label}  [{m['test']} -k {m['k']!r}: {tail}]")
            if not caught:
                survived.append((label, tail))
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
    if any(m["file"].startswith("cpp/") for m in chosen):
        build()  # the scratch tree as it was, for the next run
    tried = len(chosen) - skipped
    say(f"\n{tried - len(survived)} of {tried} caught ({skipped} not for this Python) in {time.monotonic() - t0:.0f} s")
    for label, why in survived:
        say(f"  not caught: {label}: {why}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
