# pyloop: `make test` and `make bench` install what is missing, build, and run.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PIP := $(PYTHON) -m pip --disable-pip-version-check -q

.PHONY: setup build test bench clean

setup:
	@pkg-config --exists 'libuv >= 1.40' 2>/dev/null || { \
	  echo "libuv1-dev is missing: installing it with apt-get"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libuv1-dev pkg-config; }
	@$(PYTHON) -c "import scikit_build_core, pybind11" 2>/dev/null || $(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12"
	@$(PIP) install --no-build-isolation -e '.[test]'
	@$(PYTHON) -c "import uvloop, matplotlib" 2>/dev/null || $(PIP) install uvloop matplotlib \
	  || echo "uvloop/matplotlib could not be installed: the benchmarks run without them"

build: setup

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: setup
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info pyloop/*.so
