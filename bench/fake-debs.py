#!/usr/bin/env python3
"""Writes small valid .debs fast (no dpkg-deb per package), for bench/publish-vs-aptly.sh.

usage: fake-debs.py DIR NAMES FIRST_VERSION LAST_VERSION   -> DIR/bench-pkgNNN_1.V-1_amd64.deb
       fake-debs.py --big DIR SIZE_MIB                      -> one package with a SIZE_MIB data.tar
Each package: debian-binary, control.tar.gz (./control), data.tar.gz (one small file),
so dpkg-deb, apt and both publishers accept it.
"""
import gzip
import io
import os
import sys
import tarfile

MTIME = 1795000000


def ar_member(name, size):
    return b"%-16s%-12d%-6d%-6d%-8o%-10d`\n" % (name.encode(), MTIME, 0, 0, 0o100644, size)


def tar_bytes(files, compress=True):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = MTIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    data = raw.getvalue()
    return gzip.compress(data, mtime=0) if compress else data


def control(name, version, size_kib=1):
    return (
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
        f"Maintainer: Bench <bench@speedy.example>\nInstalled-Size: {size_kib}\n"
        f"Section: misc\nPriority: optional\n"
        f"Description: benchmark package {name}\n a package made by bench/fake-debs.py\n"
    ).encode()


def write_deb(path, members):
    with open(path, "wb") as out:
        out.write(b"!<arch>\n")
        for name, data in members:
            out.write(ar_member(name, len(data)))
            out.write(data)
            if len(data) % 2:
                out.write(b"\n")


def small(directory, names, first, last):
    os.makedirs(directory, exist_ok=True)
    for n in range(names):
        name = f"bench-pkg{n:03d}"
        for v in range(first, last + 1):
            version = f"1.{v}-1"
            payload = f"{name} {version}\n".encode()
            write_deb(
                os.path.join(directory, f"{name}_{version}_amd64.deb"),
                [
                    ("debian-binary", b"2.0\n"),
                    ("control.tar.gz", tar_bytes([("./control", control(name, version))])),
                    ("data.tar.gz", tar_bytes([(f"./usr/share/{name}/version", payload)])),
                ],
            )


def big(directory, size_mib):
    """data.tar (uncompressed) holding one file of SIZE_MIB MiB, streamed to disk."""
    os.makedirs(directory, exist_ok=True)
    size = size_mib * 1024 * 1024
    header = tarfile.TarInfo("./usr/share/bench-big/blob")
    header.size = size
    header.mtime = MTIME
    header.mode = 0o644
    tar_header = header.tobuf(format=tarfile.GNU_FORMAT)
    padding = (512 - size % 512) % 512
    data_len = len(tar_header) + size + padding + 1024  # two zero blocks end the tar
    ctl = tar_bytes([("./control", control("bench-big", "1.0-1", size // 1024))])
    path = os.path.join(directory, "bench-big_1.0-1_amd64.deb")
    block = bytes(range(256)) * 4096  # 1 MiB, not all zeros
    with open(path, "wb") as out:
        out.write(b"!<arch>\n")
        for name, data in [("debian-binary", b"2.0\n"), ("control.tar.gz", ctl)]:
            out.write(ar_member(name, len(data)))
            out.write(data)
            if len(data) % 2:
                out.write(b"\n")
        out.write(ar_member("data.tar", data_len))
        out.write(tar_header)
        for _ in range(size_mib):
            out.write(block)
        out.write(b"\0" * (padding + 1024))
    print(path)


if __name__ == "__main__":
    if sys.argv[1] == "--big":
        big(sys.argv[2], int(sys.argv[3]))
    else:
        small(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
