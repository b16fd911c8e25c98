# pyloop: `make test` and `make bench` install what is missing, build, and run.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PIP := $(PYTHON) -m pip --disable-pip-version-check -q

.PHONY: setup build test test-debug cpython-tests mutation-check bench sanitize wheel wheels wheels-test wheel-tools sdist clean

# libuv is built in from vendor/libuv (CMakeLists.txt): a C++ compiler and Python are all
# a build needs (pip brings CMake and Ninja when the machine lacks them).
setup:
	@$(PYTHON) -c "import scikit_build_core, pybind11" 2>/dev/null || $(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12"
	@$(PYTHON) -c "import setuptools" 2>/dev/null || $(PIP) install setuptools  # sdists among the test deps (3.12+ has none)
	@$(PYTHON) -m pip show pyloop >/dev/null 2>&1 && $(PIP) uninstall -y pyloop || true  # the name before pyloop-uv
	@$(PIP) install --no-build-isolation -e '.[test]'
	@$(PYTHON) -c "import uvloop, matplotlib" 2>/dev/null || $(PIP) install uvloop matplotlib \
	  || echo "uvloop/matplotlib could not be installed: the benchmarks run without them"

build: setup

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The suite again in asyncio's debug mode (PYTHONASYNCIODEBUG=1, both loops), so that
# debug-only behaviour stays asyncio's; without the stress and soak tests (millions of
# callbacks, each recording a stack in debug mode: minutes) and the wheel builds (asyncio's
# debug mode changes nothing in packaging; make test builds them).
test-debug: setup
	PYTHONASYNCIODEBUG=1 $(PYTHON) -m pytest -q -p no:cacheprovider $(DEBUG_PYTEST_ARGS) $(PYTEST_ARGS)
DEBUG_PYTEST_ARGS := --ignore=tests/test_stress.py --ignore=tests/test_soak.py --ignore=tests/test_wheel.py

# CPython's own test.test_asyncio on pyloop loops, strict against the list of expected
# failures for this Python (tests/cpython/expected-failures-3.X.txt).
cpython-tests: setup
	$(PYTHON) tests/cpython/run.py $(CPYTHON_ARGS)

# Does the suite catch what it claims? One-line changes to pyloop (tests/mutation/
# mutations.py), each rebuilt in a scratch copy under build/mutation/ and run against the
# tests that must fail: by hand before a release, not in CI (minutes of rebuilds).
mutation-check: setup
	$(PYTHON) tests/mutation/run.py $(MUTATION_ARGS)

bench: setup
	@command -v wrk >/dev/null || { echo "wrk is missing: installing it with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	@$(PYTHON) -c "import uvicorn, httptools" 2>/dev/null || $(PIP) install uvicorn httptools \
	  || echo "uvicorn/httptools could not be installed: the HTTP rows run without them"
	@$(PYTHON) bench/rivals.py setup  # uvloop, rloop, rsloop: each optional (rsloop: see bench/rivals.py)
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# A self-contained wheel in dist/ (libuv built in from vendor/libuv, see CMakeLists.txt;
# its own build folder, build/wheel/, whatever was built before), and the sdist.
wheel: setup
	$(PIP) wheel --no-deps -w dist .
# manylinux2014 wheels, x86_64 and aarch64, CPython 3.10-3.15, in dist/ (docs/wheels.md):
# compiled by zig for glibc 2.17 from a tools venv of their own (build/wheel-tools:
# ziglang (pinned: the compiler is part of what a release is), CMake, Ninja, pybind11,
# scikit-build-core, auditwheel from PyPI). WHEELS_ARGS
# narrows them: WHEELS_ARGS="--arch x86_64 --python 3.12 3.13".
WHEEL_TOOLS := build/wheel-tools
ZIG_VERSION := 0.17.1
wheel-tools:
	@test -x $(WHEEL_TOOLS)/bin/python || $(PYTHON) -m venv $(WHEEL_TOOLS)
	@$(WHEEL_TOOLS)/bin/python -c "import cmake, ninja, pybind11, scikit_build_core, auditwheel; \
	  from importlib.metadata import version; assert version('ziglang') == '$(ZIG_VERSION)'" 2>/dev/null \
	  || $(WHEEL_TOOLS)/bin/python -m pip --disable-pip-version-check -q install "ziglang==$(ZIG_VERSION)" cmake ninja \
	     "pybind11>=2.12" "scikit-build-core>=0.10" "auditwheel>=6"
wheels: wheel-tools
	$(WHEEL_TOOLS)/bin/python tools/wheels.py build $(WHEELS_ARGS)
# Each wheel of dist/ installed in a fresh venv of its Python and the suite run on it:
# x86_64 here (3.14/3.15 in the sid root), aarch64 in the arm64 roots through qemu.
wheels-test: wheel-tools
	$(WHEEL_TOOLS)/bin/python tools/wheels.py test-all $(WHEELS_ARGS) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))
sdist: setup
	cd dist 2>/dev/null || mkdir -p dist; cd dist && $(PYTHON) -m build --sdist --outdir . $(CURDIR)

# The whole suite on a build with AddressSanitizer + UndefinedBehaviorSanitizer, in a
# virtualenv of its own (build/sanitize-venv) so the normal build stays as it is.
# Python itself is not instrumented: libasan (and libstdc++, for C++ exceptions) are
# preloaded, and leak checking is off (CPython keeps memory until exit on purpose).
# allocator_may_return_null: a test asks for a 1 TiB buffer, which must be a MemoryError.
# --capture=sys leaves fd 2 alone, so a sanitizer's report reaches the terminal. It runs
# from the venv's folder: the tests' child interpreters must not import ./pyloop (the
# sources, without the sanitized module).
SAN_VENV := build/sanitize-venv
SAN_PRELOAD = $$(gcc -print-file-name=libasan.so):$$(gcc -print-file-name=libstdc++.so)
sanitize: setup
	@test -x $(SAN_VENV)/bin/python || $(PYTHON) -m venv $(SAN_VENV)
	@$(SAN_VENV)/bin/python -m pip --disable-pip-version-check -q install "scikit-build-core>=0.10" "pybind11>=2.12" \
	  "pytest>=8.4" "pytest-asyncio>=1.4" "pytest-timeout>=2.3" "blockbuster>=1.5" "trustme>=1.1" "aiohttp>=3.9" \
	  "uvicorn>=0.30" "gunicorn>=22" "mypy>=1.10" "matplotlib>=3.5" "auditwheel>=6" "build>=1.0"
	$(SAN_VENV)/bin/python -m pip --disable-pip-version-check -q install --no-build-isolation \
	  -Ccmake.define.PYLOOP_SANITIZE=ON -Ccmake.define.PYLOOP_LIBUV=bundled -Ccmake.build-type=Debug -Cbuild-dir=build/sanitize .
	cd $(SAN_VENV) && LD_PRELOAD="$(SAN_PRELOAD)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ./bin/pytest -q -p no:cacheprovider --capture=sys -c $(CURDIR)/pyproject.toml --rootdir=$(CURDIR) \
	  $(if $(PYTEST_ARGS),$(PYTEST_ARGS),$(CURDIR)/tests)

clean:
	rm -rf build dist *.egg-info pyloop/*.so
