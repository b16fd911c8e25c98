"""pyloop ships type information (py.typed, pyloop/__init__.pyi, pyloop/_core.pyi):
the README's Python examples pass `mypy --strict` against it."""

import hashlib
import os
import re
import subprocess
import sys

import pytest

from conftest import needs_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_package_is_marked_typed():
    import pyloop  # as installed (a wheel's files, when make wheels-test runs this)
    for name in ("py.typed", "__init__.pyi", "_core.pyi"):
        assert os.path.exists(os.path.join(os.path.dirname(pyloop.__file__), name)), name


def cache_dir():
    # One per environment: mypy's cache remembers where it found a module, and another
    # environment's pyloop (a source checkout, another venv) must not be taken for this one's.
    tag = hashlib.sha1(sys.prefix.encode()).hexdigest()[:12]
    return os.path.join(ROOT, "build", "mypy-cache", tag)


# The examples use asyncio.run(loop_factory=...), which is 3.12+.
@pytest.mark.parametrize("version", ["3.12", "3.13", "3.14"])
def test_readme_examples_pass_mypy_strict(tmp_path, version):
    # pyloop as a user has it: the installed package (a wheel's files in site-packages, or
    # an editable install's path), found by mypy as PEP 561 says; not through MYPYPATH,
    # which would check the stubs as the user's own code (where mypy asks a class deriving
    # from AbstractEventLoop to define its abstract methods again).
    needs_module("mypy")
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    assert blocks
    src = tmp_path / "examples.py"
    src.write_text("\n\n".join(blocks))
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--python-version", version,
                          "--cache-dir", cache_dir(), str(src)],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
