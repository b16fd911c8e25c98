"""What `make wheels` (tools/wheels.py) relies on and can be checked without building:
the aarch64 pyconfig.h it derives from the x86_64 one is the one an aarch64 build of the
same CPython has, checked against Debian's own x86_64 and aarch64 packages. (The wheels
themselves are tested by `make wheels-test`, which runs this whole suite on each.)"""

import os
import re
import sys

import pytest

from conftest import missing, needs_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import wheels  # noqa: E402

import debpkg  # noqa: E402  (tools/debpkg.py)


def fetch(url):
    try:
        return debpkg.fetch(url)
    except OSError as exc:
        missing(f"Debian's mirror is not reachable ({url}: {exc})")


def packages(suite, arch):
    """{package: Filename} of Debian's `suite` for `arch`: the libpython3.X-dev ones."""
    try:
        return debpkg.package_files(suite, arch, r"libpython3\.\d+-dev")
    except OSError as exc:
        missing(f"Debian's mirror is not reachable ({exc})")


def deb_member(deb, suffix):
    """The text of the file of a .deb whose path ends in suffix."""
    try:
        tar = debpkg.data_tar(deb)
    except ValueError as exc:
        missing(str(exc))
    with tar:
        for m in tar.getmembers():
            if m.name.endswith(suffix):
                return tar.extractfile(m).read().decode()
    raise AssertionError(f"no {suffix} in the package")


def defines(text):
    """Each macro of a pyconfig.h: its value, or None where configure left it undefined."""
    out = {}
    for m in re.finditer(r"^#define (\w+)(?: (.*))?$|^/\* #undef (\w+) \*/$", text, re.M):
        if m.group(1):
            out[m.group(1)] = (m.group(2) or "").strip()
        else:
            out[m.group(3)] = None
    return out


@pytest.mark.timeout(600)
@pytest.mark.parametrize("suite", ["bookworm", "sid"])
def test_aarch64_pyconfig_is_what_an_aarch64_build_configures(suite):
    amd64, arm64 = packages(suite, "amd64"), packages(suite, "arm64")
    both = sorted(set(amd64) & set(arm64))
    assert both, f"no libpython3.X-dev in Debian {suite}"
    for package in both:
        version = package[len("libpython"):-len("-dev")]
        x86 = deb_member(fetch(f"{debpkg.MIRROR}/{amd64[package]}"), f"x86_64-linux-gnu/python{version}/pyconfig.h")
        arm = deb_member(fetch(f"{debpkg.MIRROR}/{arm64[package]}"), f"aarch64-linux-gnu/python{version}/pyconfig.h")
        derived = defines(wheels.pyconfig_for(x86, "aarch64"))
        assert derived == defines(arm), (version, {k: (derived.get(k), defines(arm).get(k))
                                                   for k in set(derived) | set(defines(arm))
                                                   if derived.get(k) != defines(arm).get(k)})
        # and the derivation changed something: the x86_64 file is not an aarch64 one
        assert defines(x86) != defines(arm)


def test_aarch64_pyconfig_leaves_the_rest_alone():
    text = "#define HAVE_GCC_ASM_FOR_X64 1\n#define SIZEOF_LONG 8\n/* #undef HAVE_USABLE_WCHAR_T */\n"
    assert wheels.pyconfig_for(text, "aarch64") == (
        "/* #undef HAVE_GCC_ASM_FOR_X64 */\n#define SIZEOF_LONG 8\n#define HAVE_USABLE_WCHAR_T 1\n")
    assert wheels.pyconfig_for(text, "x86_64") == text


def test_the_module_check_tells_a_manylinux_build_from_a_local_one():
    # tools/wheels.py checks each module before zipping it. On the module this suite runs:
    # a make-wheels wheel (zig, libc++) passes; a build by this machine's GCC (make test's
    # editable build, make wheel) needs libstdc++ and a newer glibc, and is refused.
    needs_module("elftools")
    import platform

    from pyloop import _core
    if ", libc++ " in _core.compiler:
        wheels.check_module(_core.__file__, platform.machine())
        return
    with pytest.raises(SystemExit) as info:
        wheels.check_module(_core.__file__, platform.machine())
    message = str(info.value)
    assert "would not run on every manylinux2014 machine" in message
    assert "libstdc++.so.6" in message and "@GLIBC_2." in message, message
