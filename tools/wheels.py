"""manylinux2014 wheels of pyloop for x86_64 and aarch64, every CPython 3.10-3.15, made on
one x86_64 Debian machine with what PyPI and Debian provide (docs/wheels.md says why each
choice). `make wheels` runs `build`; `make wheels-test` runs `test`.

  wheels.py build [--arch A ...] [--python 3.X ...] [--out dist]
      Compiles pyloop and the vendored libuv with zig (the `ziglang` package from PyPI) for
      glibc 2.17, with its own libc++ linked in, and writes one wheel per target into out/,
      each checked: `auditwheel show` must call it manylinux_2_17 on its architecture, its
      module may need only glibc 2.17's libraries and export only PyInit__core.
  wheels.py test --wheel W [--python P] [--venv V] [-- pytest args]
      Installs the wheel (and its test extra) into a fresh venv of Python P and runs
      pyloop's suite against that installed copy (never the sources). Standard library
      only: it runs inside the sid and arm64 roots as well, on their Pythons.
  wheels.py test-all [--arch A ...] [--python 3.X ...] [-- pytest args]
      `test` for each wheel in dist/, where it runs (here, the sid root, the arm64 roots).

Run `build` with the Python of a tools venv that has ziglang, cmake, ninja, pybind11,
scikit-build-core and auditwheel (the Makefile makes one: build/wheel-tools).
"""

import argparse
import base64
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
ARCHES = ["x86_64", "aarch64"]
GLIBC = "2.17"  # manylinux2014: CentOS 7's glibc; every Linux of the last decade has it or newer
# What a module in a manylinux2014 wheel may need (auditwheel's policy has the full list;
# pyloop's module needs only these).
ALLOWED_NEEDED = {"libc.so.6", "libpthread.so.0", "libdl.so.2", "libm.so.6", "librt.so.1",
                  "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}  # the dynamic loader (thread-local storage)
ELF_MACHINE = {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}

# pyconfig.h is the one header of CPython's that configure writes per machine. Between
# x86_64 and aarch64 builds of one CPython version, Debian's packages (3.11, 3.13, 3.14,
# 3.15: tests/test_manylinux.py compares them) differ in these macros only, none of which
# changes a type, a struct or an inline function an extension compiles against (x87/x64
# inline assembly for CPython's own float code, the hash library's SIMD, whether wchar.h
# is included, the support tier, the platform in SOABI). The aarch64 headers are the
# x86_64 headers of the same version with these set as an aarch64 configure sets them.
AARCH64_PYCONFIG = {
    "HAVE_GCC_ASM_FOR_X64": None,
    "HAVE_GCC_ASM_FOR_X87": None,
    "_Py_HACL_CAN_COMPILE_VEC128": None,
    "_Py_HACL_CAN_COMPILE_VEC256": None,
    "HAVE_USABLE_WCHAR_T": "1",
    "PY_SUPPORT_TIER": "2",
    "SOABI_PLATFORM": '"aarch64-linux-gnu"',
}


def say(*args):
    print("wheels:", *args, flush=True)


def run(cmd, quiet=False, **kw):
    """cmd, which must succeed; quiet: its output is shown only if it fails."""
    if quiet:
        kw.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        return subprocess.run(cmd, check=True, text=True, **kw)
    except subprocess.CalledProcessError as exc:
        if quiet:
            print(exc.stdout[-5000:])
        sys.exit(f"wheels: failed ({exc.returncode}): {' '.join(map(str, cmd))}")


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------- headers

def pyconfig_for(text, arch):
    """The pyconfig.h of `arch` from the x86_64 one of the same CPython version."""
    if arch == "x86_64":
        return text
    out = text
    for name, value in AARCH64_PYCONFIG.items():
        pattern = re.compile(r"^(#define %s\b.*|/\* #undef %s \*/)$" % (name, name), re.M)
        line = f"/* #undef {name} */" if value is None else f"#define {name} {value}"
        out = pattern.sub(line, out)
    return out


def x86_64_headers(version):
    """A folder with Python.h of CPython `version` and the x86_64 pyconfig.h that goes with
    it: PYLOOP_HEADERS_3_X if set; else the interpreter of that version on PATH or under
    pyenv; else Debian's python3.X-dev in the sid root of shared/tools/newer-pythons."""
    env = os.environ.get("PYLOOP_HEADERS_" + version.replace(".", "_"))
    candidates = [env] if env else []
    py = host_python(version)
    if py:
        candidates.append(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
                                         capture_output=True, text=True, check=True).stdout.strip())
    sid = os.environ.get("NEWER_PYTHONS_ROOT", "/opt/sidroot")
    candidates.append(f"{sid}/usr/include/python{version}")
    for inc in candidates:
        if os.path.isfile(os.path.join(inc, "Python.h")):
            pyconfig = os.path.join(inc, "pyconfig.h")
            # Debian's pyconfig.h only picks the architecture's own from its multiarch folder
            multiarch = os.path.join(os.path.dirname(inc), "x86_64-linux-gnu", f"python{version}", "pyconfig.h")
            if os.path.isfile(multiarch):
                pyconfig = multiarch
            text = read(pyconfig).decode()
            if "#define HAVE_GCC_ASM_FOR_X64 1" not in text:
                continue  # not an x86_64 build's
            return inc, text
    sys.exit(f"wheels: no headers of Python {version} (tried {', '.join(candidates)}): install that Python, "
             f"run ../shared/tools/newer-pythons setup (3.14, 3.15), or set PYLOOP_HEADERS_{version.replace('.', '_')}")


def target_headers(version, arch, where):
    """A copy of the version's headers with the architecture's pyconfig.h (a copy, not an
    overlay: Python.h includes "pyconfig.h" from its own folder first)."""
    src, pyconfig = x86_64_headers(version)
    dst = os.path.join(where, f"python{version}")
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=False)
    with open(os.path.join(dst, "pyconfig.h"), "w") as f:
        f.write(pyconfig_for(pyconfig, arch))
    return dst, src


# ---------------------------------------------------------------------------- compiling

def toolchain(arch, where):
    """Wrappers that run zig as a C and C++ compiler for `arch` and glibc 2.17 (CMake wants
    one program per compiler), and a CMake toolchain file naming them. A toolchain file
    makes every build a cross build, so nothing asks the machine's own Python or libraries."""
    import ziglang
    zig = os.path.join(os.path.dirname(ziglang.__file__), "zig")
    os.makedirs(where, exist_ok=True)
    tools = {}
    for name, args in (("cc", f"cc -target {arch}-linux-gnu.{GLIBC}"), ("c++", f"c++ -target {arch}-linux-gnu.{GLIBC}"),
                       ("ar", "ar"), ("ranlib", "ranlib")):
        path = tools[name] = os.path.join(where, name)
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec "{zig}" {args} "$@"\n')
        os.chmod(path, 0o755)
    path = os.path.join(where, "toolchain.cmake")
    with open(path, "w") as f:
        f.write(f"set(CMAKE_SYSTEM_NAME Linux)\nset(CMAKE_SYSTEM_PROCESSOR {arch})\n"
                f"set(CMAKE_C_COMPILER \"{tools['cc']}\")\nset(CMAKE_CXX_COMPILER \"{tools['c++']}\")\n"
                f"set(CMAKE_AR \"{tools['ar']}\")\nset(CMAKE_RANLIB \"{tools['ranlib']}\")\n")
    return path


def tools_dir():
    return os.path.dirname(sys.executable)


def compile_core(version, arch, work, jobs):
    import pybind11
    tag = f"cp{version.replace('.', '')}"
    include, source = target_headers(version, arch, os.path.join(work, "include"))
    suffix = f".cpython-{version.replace('.', '')}-{arch}-linux-gnu.so"
    build = os.path.join(work, "cmake")
    ninja = shutil.which("ninja", path=tools_dir()) or shutil.which("ninja")
    cmake = shutil.which("cmake", path=tools_dir()) or shutil.which("cmake")
    cmd = [cmake, "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DPYLOOP_LIBUV=bundled",
           f"-DCMAKE_TOOLCHAIN_FILE={toolchain(arch, os.path.join(work, 'toolchain'))}",
           f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_INCLUDE_DIR={include}",
           f"-DPYTHON_MODULE_EXT_SUFFIX={suffix}", "-DPYTHON_IS_DEBUG=OFF", "-DPYTHON_MODULE_DEBUG_POSTFIX=",
           # stripped: no symbol table and no debug information in the wheel
           "-DCMAKE_MODULE_LINKER_FLAGS=-s"]
    if ninja:
        cmd += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    say(f"{tag} {arch}: headers of {source}")
    run(cmd, quiet=True)
    run([cmake, "--build", build, "--target", "_core", "-j", str(jobs)], quiet=True)
    (core,) = glob.glob(os.path.join(build, "_core" + suffix))
    return core


# ---------------------------------------------------------------------------- checking

def check_module(path, arch):
    """The module runs on glibc 2.17 and needs nothing else: what auditwheel checks, plus
    what it lets pass (symbols without a version, a symbol exported beyond PyInit__core)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.gnuversions import GNUVerSymSection, GNUVerNeedSection
    problems = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != ELF_MACHINE[arch]:
            problems.append(f"machine {elf['e_machine']}")
        dynamic = next(s for s in elf.iter_sections() if isinstance(s, DynamicSection))
        needed = {t.needed for t in dynamic.iter_tags() if t.entry.d_tag == "DT_NEEDED"}
        if needed - ALLOWED_NEEDED:
            problems.append(f"needs {sorted(needed - ALLOWED_NEEDED)}")
        versions = {}  # version index -> name, from .gnu.version_r
        for sec in elf.iter_sections():
            if isinstance(sec, GNUVerNeedSection):
                for _, auxes in sec.iter_versions():
                    for aux in auxes:
                        versions[aux.entry.vna_other] = aux.name
        dynsym = elf.get_section_by_name(".dynsym")
        versym = next((s for s in elf.iter_sections() if isinstance(s, GNUVerSymSection)), None)
        exported = []
        for i, sym in enumerate(dynsym.iter_symbols()):
            if not sym.name:
                continue
            if sym["st_shndx"] != "SHN_UNDEF":
                exported.append(sym.name)
                continue
            version = versions.get(versym.get_symbol(i).entry.ndx) if versym else None
            if version is None:
                if not re.match(r"_?Py", sym.name) and sym["st_info"]["bind"] != "STB_WEAK":
                    problems.append(f"{sym.name} has no version and is not Python's")
            elif version.startswith("GLIBC_"):
                if tuple(map(int, version[6:].split("."))) > tuple(map(int, GLIBC.split("."))):
                    problems.append(f"{sym.name}@{version}")
            else:
                problems.append(f"{sym.name}@{version}")
        if exported != ["PyInit__core"]:
            problems.append(f"exports {exported[:10]}")
        if elf.get_section_by_name(".symtab") is not None or elf.get_section_by_name(".debug_info") is not None:
            problems.append("not stripped")
    if problems:
        sys.exit(f"wheels: {path} would not run on every manylinux2014 machine: " + "; ".join(problems))


def check_wheel(wheel, arch):
    out = run([sys.executable, "-m", "auditwheel", "show", wheel], capture_output=True).stdout
    want = f'"manylinux_2_17_{arch}"'
    flat = " ".join(out.split())
    if f"consistent with the following platform tag: {want}" not in flat:
        sys.exit(f"wheels: auditwheel does not call {wheel} manylinux_2_17_{arch}:\n{out}")


# ---------------------------------------------------------------------------- the wheel

def metadata(work):
    """The dist-info pyproject.toml gives (scikit-build-core's own metadata hook: the same
    METADATA and entry points as `pip wheel .` writes)."""
    out = os.path.join(work, "metadata")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        from scikit_build_core.build import prepare_metadata_for_build_wheel
        name = prepare_metadata_for_build_wheel(out)
    finally:
        os.chdir(here)
    return os.path.join(out, name)


def package_files():
    """pyloop/ as the wheel carries it: what git tracks there (the sources, the stubs,
    py.typed), or, outside a git checkout (an sdist), every file but caches and builds."""
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "pyloop"], capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return sorted(out.stdout.split())
    found = []
    for top, dirs, files in os.walk(os.path.join(ROOT, "pyloop")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [os.path.relpath(os.path.join(top, f), ROOT) for f in files if not f.endswith((".so", ".pyc"))]
    return sorted(found)


def write_wheel(core, dist_info, version, arch, out):
    tag = f"cp{version.replace('.', '')}"
    plat = f"manylinux_2_17_{arch}.manylinux2014_{arch}"
    info = os.path.basename(dist_info)
    name, ver = info[: -len(".dist-info")].rsplit("-", 1)
    path = os.path.join(out, f"{name}-{ver}-{tag}-{tag}-{plat}.whl")
    entries = [(f, read(os.path.join(ROOT, f))) for f in package_files()]
    entries.append((f"pyloop/{os.path.basename(core)}", read(core)))
    for top, _, files in sorted(os.walk(dist_info)):
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(top, f), dist_info)
            if rel not in ("WHEEL", "RECORD"):
                entries.append((f"{info}/{rel}", read(os.path.join(top, f))))
    # libuv is in the module: its license goes with it
    entries.append((f"{info}/licenses/vendor/libuv/LICENSE", read(os.path.join(ROOT, "vendor/libuv/LICENSE"))))
    lines = ["Wheel-Version: 1.0", "Generator: pyloop tools/wheels.py", "Root-Is-Purelib: false"]
    lines += [f"Tag: {tag}-{tag}-{p}" for p in plat.split(".")]
    entries.append((f"{info}/WHEEL", ("\n".join(lines) + "\n").encode()))
    record = []
    for f, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{f},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f, data in entries:
            zi = zipfile.ZipInfo(f, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o755 if f.endswith(".so") else 0o644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    os.replace(tmp, path)
    return path


def build(args):
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    work = os.path.join(ROOT, "build", "wheels")
    dist_info = metadata(work)
    for arch in args.arch:
        for version in args.python:
            target = os.path.join(work, f"cp{version.replace('.', '')}-{arch}")
            core = compile_core(version, arch, target, args.jobs)
            check_module(core, arch)
            wheel = write_wheel(core, dist_info, version, arch, out)
            check_wheel(wheel, arch)
            say(f"{os.path.relpath(wheel)}: manylinux_2_17_{arch}, {os.path.getsize(wheel) // 1024} KiB")


# ---------------------------------------------------------------------------- testing

def test(args):
    """pyloop's suite against the installed wheel, from a folder outside the checkout (so
    that `import pyloop` cannot find the sources), with the checkout's tests and settings."""
    wheel = os.path.abspath(args.wheel)
    venv = os.path.abspath(args.venv)
    shutil.rmtree(venv, ignore_errors=True)
    run([args.python, "-m", "venv", venv])
    py = os.path.join(venv, "bin", "python")
    pip = [py, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(pip + ["install", "--upgrade", "pip"], quiet=True)
    # As on a machine with no compiler: pyloop installs from the wheel with a PATH that
    # holds no cc, c++ or CMake (the venv's bin/ alone), binaries only.
    bare = dict(os.environ, PATH=os.path.join(venv, "bin"))
    found = [t for t in ("cc", "c++", "gcc", "g++", "clang", "cmake", "ninja", "make") if shutil.which(t, path=bare["PATH"])]
    assert not found, found
    run(pip + ["install", "--only-binary=:all:", wheel], quiet=True, env=bare)
    # then the test extra, as pip finds it
    run(pip + ["install", wheel + "[test]"], quiet=True)
    env = dict(os.environ, PYLOOP_TEST_INSTALLED=venv)
    # paths among pytest's arguments are the caller's: the suite runs from the venv
    given = [os.path.abspath(a) if os.path.exists(a.split("::")[0]) else a for a in args.pytest]
    if not [a for a in given if os.path.exists(a.split("::")[0])]:
        given.append(os.path.join(ROOT, "tests"))
    cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.path.join(ROOT, "pyproject.toml"),
           "--rootdir", ROOT] + given
    say(f"pyloop's suite on {os.path.basename(wheel)} installed in {venv}")
    try:
        return subprocess.run(cmd, cwd=venv, env=env).returncode
    finally:
        if args.remove_venv:
            shutil.rmtree(venv, ignore_errors=True)


def test_all(args):
    """Every wheel in dist/ of the given architectures and versions, each where it runs:
    x86_64 on this machine's Python of its version (3.14/3.15: in the sid root of
    shared/tools/newer-pythons), aarch64 in the arm64 roots of shared/tools/arm64-root
    (bookworm: 3.11; sid: 3.14, 3.15), through qemu. A wheel with no Python to run it here
    is reported, not passed."""
    tools = os.path.join(os.path.dirname(ROOT), "shared", "tools")
    # the roots start their commands with a clean environment: what the suite reads goes along
    require = f"PYLOOP_REQUIRE_TOOLS={os.environ.get('PYLOOP_REQUIRE_TOOLS', '0')}"
    failed, untested = [], []
    for arch in args.arch:
        for version in args.python:
            tag = f"cp{version.replace('.', '')}"
            found = glob.glob(os.path.join(os.path.abspath(args.dist), f"pyloop_uv-*-{tag}-{tag}-*_{arch}.whl"))
            if not found:
                sys.exit(f"wheels: no {tag} {arch} wheel in {args.dist} (make wheels)")
            wheel = os.path.relpath(max(found, key=os.path.getmtime), ROOT)
            inner = (f"python{version} tools/wheels.py test --wheel {wheel} --python python{version} "
                     f"--venv /tmp/pyloop-wheel-test-{tag}-{os.getpid()} --remove-venv -- " + " ".join(args.pytest))
            env = dict(os.environ)
            if arch == "x86_64" and version in ("3.14", "3.15"):
                cmd = [os.path.join(tools, "newer-pythons"), "run", f"{require} {inner}"]
            elif arch == "x86_64":
                py = host_python(version)
                if py is None:
                    untested.append(f"{tag} {arch}: no Python {version} on this machine")
                    continue
                cmd = [sys.executable, __file__, "test", "--wheel", os.path.join(ROOT, wheel), "--python", py,
                       "--venv", os.path.join(ROOT, "build", f"wheel-test-{tag}-{arch}"), "--"] + args.pytest
            elif version in ARM64_PYTHONS:
                env["ARM64_SUITE"] = ARM64_PYTHONS[version]
                # (the arm64 roots lack the tools some tests use, wrk among them: those skip
                # there, each skip listed with -rfEs, and run on x86_64)
                cmd = [os.path.join(tools, "arm64-root"), "run", f"PYLOOP_EMULATED=1 {inner} -rfEs"]
            else:
                untested.append(f"{tag} {arch}: Debian has no aarch64 Python {version} to run it")
                continue
            say(f"== {tag} {arch}")
            if subprocess.run(cmd, cwd=ROOT, env=env).returncode != 0:
                failed.append(f"{tag} {arch}")
    for line in untested:
        say("not tested:", line)
    if failed:
        say("FAILED:", ", ".join(failed))
        return 1
    return 0


def host_python(version):
    """This machine's interpreter of `version` (on PATH, or pyenv's), not a free-threaded one."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for py in [shutil.which(f"python{version}")] + sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python{version}")):
        if py and subprocess.run([py, "-c", "import sys, sysconfig; sys.exit(sys.version_info[:2] != (%s) or "
                                  "bool(sysconfig.get_config_var('Py_GIL_DISABLED')))" % version.replace(".", ", ")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return py
    return None


# The Debian release of shared/tools/arm64-root that has each aarch64 Python
ARM64_PYTHONS = {"3.11": "bookworm", "3.14": "sid", "3.15": "sid"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("build")
    b.add_argument("--arch", nargs="+", default=ARCHES, choices=ARCHES)
    b.add_argument("--python", nargs="+", default=VERSIONS, choices=VERSIONS)
    b.add_argument("--out", default=os.path.join(ROOT, "dist"))
    b.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    t = sub.add_parser("test")
    t.add_argument("--wheel", required=True)
    t.add_argument("--python", default=sys.executable)
    t.add_argument("--venv", default=os.path.join(ROOT, "build", "wheel-test-venv"))
    t.add_argument("--remove-venv", action="store_true", help="remove the venv when the suite ends")
    t.add_argument("pytest", nargs="*", help="pytest's arguments (default: the whole suite)")
    a = sub.add_parser("test-all")
    a.add_argument("--arch", nargs="+", default=ARCHES, choices=ARCHES)
    a.add_argument("--python", nargs="+", default=VERSIONS, choices=VERSIONS)
    a.add_argument("--dist", default=os.path.join(ROOT, "dist"))
    a.add_argument("pytest", nargs="*", help="pytest's arguments (default: the whole suite)")
    args = parser.parse_args()
    if args.what == "build":
        build(args)
        return 0
    return test_all(args) if args.what == "test-all" else test(args)


if __name__ == "__main__":
    sys.exit(main())
