"""Debian's packages, read with the standard library only: a suite's package index and
the files of a .deb. Used by tests/test_manylinux.py (Debian's pyconfig.h files) and
bench/rivals.py (Debian 13's glibc, for a rival loop whose wheels need it)."""

import io
import lzma
import re
import tarfile
import urllib.request

MIRROR = "http://deb.debian.org/debian"


def fetch(url, timeout=60):
    """The bytes at url (OSError when the mirror cannot be reached)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def package_files(suite, arch, name_pattern):
    """{package: its Filename in the pool} for the packages of `suite`/`arch` whose whole
    name matches the regular expression name_pattern."""
    text = lzma.decompress(fetch(f"{MIRROR}/dists/{suite}/main/binary-{arch}/Packages.xz")).decode()
    found = {}
    for stanza in text.split("\n\n"):
        name = re.search(rf"^Package: ({name_pattern})$", stanza, re.M)
        if name:
            found[name.group(1)] = re.search(r"^Filename: (\S+)$", stanza, re.M).group(1)
    return found


def data_tar(deb):
    """The data.tar.* of a .deb (an ar archive) as an open tarfile; ValueError for a
    compression the standard library cannot read (zstd)."""
    if deb[:8] != b"!<arch>\n":
        raise ValueError("not a .deb (an ar archive)")
    pos = 8
    while pos < len(deb):
        name = deb[pos:pos + 16].decode().strip().rstrip("/")
        size = int(deb[pos + 48:pos + 58])
        data = deb[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise ValueError("a zstd-compressed .deb (no zstd in the standard library)")
            raw = lzma.decompress(data) if name.endswith(".xz") else data
            return tarfile.open(fileobj=io.BytesIO(raw))
    raise ValueError("no data.tar in the package")
