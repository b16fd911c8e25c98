"""What `make wheels` (tools/wheels.py) relies on and can be checked without building:
the aarch64 pyconfig.h it derives from the x86_64 one is the one an aarch64 build of the
same CPython has, checked against Debian's own x86_64 and aarch64 packages. (The wheels
themselves are tested by `make wheels-test`, which runs this whole suite on each.)"""

import io
import lzma
import os
import re
import sys
import tarfile
import urllib.request

import pytest

from conftest import missing, needs_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import wheels  # noqa: E402

MIRROR = "http://deb.debian.org/debian"


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()
    except OSError as exc:
        missing(f"Debian's mirror is not reachable ({url}: {exc})")


def packages(suite, arch):
    """{package: Filename} of Debian's `suite` for `arch`: the libpython3.X-dev ones."""
    text = lzma.decompress(fetch(f"{MIRROR}/dists/{suite}/main/binary-{arch}/Packages.xz")).decode()
    found = {}
    for stanza in text.split("\n\n"):
        name = re.search(r"^Package: (libpython3\.\d+-dev)$", stanza, re.M)
        if name:
            found[name.group(1)] = re.search(r"^Filename: (\S+)$", stanza, re.M).group(1)
    return found


def deb_member(deb, suffix):
    """The file of a .deb (an ar archive holding data.tar.*) whose path ends in suffix."""
    assert deb[:8] == b"!<arch>\n"
    pos = 8
    while pos < len(deb):
        name = deb[pos:pos + 16].decode().strip().rstrip("/")
        size = int(deb[pos + 48:pos + 58])
        data = deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                missing("a zstd-compressed .deb (no zstd in the standard library)")
            raw = lzma.decompress(data) if name.endswith(".xz") else data
            with tarfile.open(fileobj=io.BytesIO(raw)) as t:
                for m in t.getmembers():
                    if m.name.endswith(suffix):
                        return t.extractfile(m).read().decode()
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
        x86 = deb_member(fetch(f"{MIRROR}/{amd64[package]}"), f"x86_64-linux-gnu/python{version}/pyconfig.h")
        arm = deb_member(fetch(f"{MIRROR}/{arm64[package]}"), f"aarch64-linux-gnu/python{version}/pyconfig.h")
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
