"""The loops bench/ compares, and how a benchmark process is started so that each imports.

stock asyncio and pyloop always; uvloop, rloop and rsloop when installed, each optional.
rsloop's Linux wheels need glibc 2.39 or newer. On an older system `python bench/rivals.py
setup` (run by `make bench`) puts rsloop's wheel for this Python in bench/build/rivals/
and Debian 13's glibc beside it; every benchmark process, of every loop, then starts
through that glibc's dynamic loader (`ld.so --library-path DIR --argv0 PYTHON PYTHON ...`),
so that all loops run on the same libc. Nothing here is needed for pyloop itself.

    python bench/rivals.py setup [LOOP ...]   install what is missing (never fails the bench)
    python bench/rivals.py            which loops the bench would run, and how
"""

import glob
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import debpkg  # noqa: E402  (tools/debpkg.py)

ORDER = ["asyncio", "uvloop", "rloop", "rsloop", "pyloop"]
RIVALS = ["uvloop", "rloop", "rsloop"]
NEEDS_GLIBC = {"rsloop": (2, 39)}
DEBIAN_GLIBC_SUITE = "trixie"  # Debian 13: glibc 2.41
ROOT = os.environ.get("PYLOOP_BENCH_RIVALS") or os.path.join(HERE, "build", "rivals")
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
PACKAGES = os.path.join(ROOT, TAG)  # rsloop's wheel, unpacked, for this Python
GLIBC = os.path.join(ROOT, f"glibc-{platform.machine()}")  # Debian 13's libc6, unpacked


def glibc_version():
    name, version = platform.libc_ver()
    try:
        return tuple(int(x) for x in version.split(".")[:2]) if name == "glibc" else None
    except ValueError:
        return None


def glibc_dirs():
    """(the unpacked glibc's library folder, its ld.so), or None."""
    for lib in glob.glob(os.path.join(GLIBC, "usr", "lib", "*-linux-gnu")):
        loaders = glob.glob(os.path.join(lib, "ld-linux*.so.*"))
        if os.path.exists(os.path.join(lib, "libc.so.6")) and loaders:
            return lib, loaders[0]
    return None


def uses_newer_glibc():
    """Do benchmark processes start through the unpacked glibc? When this system's is too
    old for an installed rival and the unpacked one is there."""
    have = glibc_version()
    if have is None or glibc_dirs() is None:
        return False
    return any(have < need and importable_here(loop) is not True for loop, need in NEEDS_GLIBC.items()
               if os.path.isdir(os.path.join(PACKAGES, loop)) or importlib.util.find_spec(loop))


def python():
    """The command (a list) that starts this Python for a benchmark process. Decided
    once, and passed on to the benchmark processes (they start servers) in the
    environment."""
    known = os.environ.get("PYLOOP_BENCH_PYTHON")
    if known:
        return json.loads(known)
    cmd = [sys.executable]
    if uses_newer_glibc():
        lib, loader = glibc_dirs()
        # --argv0 keeps sys.executable (and so a virtual environment) as it is
        cmd = [loader, "--library-path", lib, "--argv0", sys.executable, os.path.realpath(sys.executable)]
    os.environ["PYLOOP_BENCH_PYTHON"] = json.dumps(cmd)
    return cmd


def environment():
    """os.environ with bench/build/rivals/<this Python> on PYTHONPATH when it exists."""
    python()
    env = dict(os.environ)
    if os.path.isdir(PACKAGES):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGES, env.get("PYTHONPATH")) if p)
    return env


def importable_here(loop):
    """True if `import loop` works in this process's libc, else the reason (a string)."""
    env = dict(os.environ)
    if os.path.isdir(PACKAGES):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGES, env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", f"import {loop}"], capture_output=True, text=True, env=env,
                         timeout=120)
    return True if out.returncode == 0 else (out.stderr.strip().splitlines() or ["failed"])[-1]


def available():
    """([the loops to run, in ORDER], {loop left out: why})."""
    loops, missing = [], {}
    cmd, env = python(), environment()
    for loop in ORDER:
        if loop in RIVALS and importlib.util.find_spec(loop) is None and \
                not os.path.isdir(os.path.join(PACKAGES, loop)):
            missing[loop] = "not installed"
            continue
        out = subprocess.run([*cmd, "-c", f"import {loop}"], capture_output=True, text=True, env=env, timeout=120)
        if out.returncode == 0:
            loops.append(loop)
        elif loop in RIVALS:
            missing[loop] = (out.stderr.strip().splitlines() or ["import failed"])[-1]
        else:
            raise SystemExit(f"{loop} does not import:\n{out.stderr}")
    return loops, missing


def left_out(loop, what, why):
    """A rival that cannot serve a row: noted, and the run goes on without it there."""
    print(f"\n  ({loop} left out of {what}: {why})", flush=True)


def interleaved(loops, repeat, name, run_once):
    """run_once(loop) for each loop, `repeat` rounds interleaved: {loop: [results]}. A
    rival whose run raises RuntimeError (or times out) is left out of the row with a
    note; asyncio's or pyloop's failure ends the bench."""
    results = {lp: [] for lp in loops}
    for _ in range(repeat):
        for lp in list(results):
            try:
                results[lp].append(run_once(lp))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                if lp not in RIVALS:
                    raise
                left_out(lp, name, exc)
                del results[lp]
    return results


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True).returncode == 0


def setup_newer_glibc():
    """Debian 13's libc6 for this machine, unpacked into GLIBC."""
    if glibc_dirs():
        return
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
    files = debpkg.package_files(DEBIAN_GLIBC_SUITE, arch, "libc6")
    with debpkg.data_tar(debpkg.fetch(f"{debpkg.MIRROR}/{files['libc6']}", timeout=300)) as tar:
        members = [m for m in tar.getmembers() if m.name.lstrip("./").startswith(("usr/lib/", "usr/lib64/"))]
        tmp = f"{GLIBC}.{os.getpid()}.tmp"
        tar.extractall(tmp, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    os.replace(tmp, GLIBC)


def setup_wheel_for_newer_glibc(loop, need):
    """loop's newest wheel for this Python, built for glibc `need`, unpacked into PACKAGES."""
    tag = f"manylinux_{need[0]}_{need[1]}_{platform.machine()}"
    v = f"{sys.version_info.major}{sys.version_info.minor}"
    with tempfile.TemporaryDirectory() as tmp:
        if not pip("download", "--no-deps", "--only-binary=:all:", "--platform", tag, "--python-version", v,
                   "--implementation", "cp", "-d", tmp, loop):
            return False
        for wheel in glob.glob(os.path.join(tmp, "*.whl")):
            os.makedirs(PACKAGES, exist_ok=True)
            with zipfile.ZipFile(wheel) as z:
                z.extractall(PACKAGES)
    return os.path.isdir(os.path.join(PACKAGES, loop))


def setup(loops=RIVALS):
    """Installs the rivals that are missing; says what could not be had. Never fails."""
    for loop in loops:
        if importlib.util.find_spec(loop) is not None or os.path.isdir(os.path.join(PACKAGES, loop)):
            continue
        if pip("install", "--only-binary=:all:", loop):
            continue
        need, have = NEEDS_GLIBC.get(loop), glibc_version()
        if need and have and have < need and platform.machine() in ("x86_64", "aarch64"):
            try:
                if setup_wheel_for_newer_glibc(loop, need):
                    setup_newer_glibc()
                    print(f"{loop}: its wheel needs glibc {need[0]}.{need[1]}, this system has "
                          f"{have[0]}.{have[1]}: the benchmarks start through Debian 13's glibc ({GLIBC})")
                    continue
            except (OSError, ValueError, KeyError) as exc:
                print(f"{loop}: Debian 13's glibc could not be had ({exc})")
        print(f"{loop} could not be installed: the benchmarks run without it")


def main():
    if sys.argv[1:2] == ["setup"]:
        unknown = [loop for loop in sys.argv[2:] if loop not in RIVALS]
        if unknown:
            sys.exit(f"rivals.py setup [{'|'.join(RIVALS)} ...]: unknown {', '.join(unknown)}")
        setup(sys.argv[2:] or RIVALS)
        return
    loops, missing = available()
    print("loops:", ", ".join(loops))
    for loop, why in missing.items():
        print(f"left out: {loop} ({why})")
    print("started as:", " ".join(python()))


if __name__ == "__main__":
    main()
