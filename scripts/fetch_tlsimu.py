#!/usr/bin/env python3
"""Fetch GenICam's reference camera simulator, TLSimu, into a folder (default ``.cache/tlsimu``).

TLSimu is a GenTL producer (``TLSimu.cti``) with four simulated cameras that take software
triggers. It ships only in the ``genicam`` 1.2.0-1.5.0 wheels, for x86_64 Linux and Windows, and
not in the ``genicam`` 1.6.0 the rig installs. This script downloads the 1.5.0 wheel with pip
(nothing is installed) and extracts ``TLSimu.cti`` and the ``libVirtualFG.so`` it loads from its
own folder. It checks both files against known SHA-256 digests and is idempotent: a complete
folder is left alone.

Usage: ``python scripts/fetch_tlsimu.py [--dest DIR]``. On success the last line printed is the
path of ``TLSimu.cti``. Exit status 1: the download or the check failed; 2: unsupported platform.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GENICAM_VERSION = "1.5.0"
# The cp311 manylinux wheel, whatever Python runs this script, so the digests below always hold.
WHEEL_PLATFORM = "manylinux2014_x86_64"
WHEEL_PYTHON = "3.11"
MEMBER_FOLDER = f"genicam-{GENICAM_VERSION}.data/purelib/genicam/"
EXPECTED_SHA256 = {
    "TLSimu.cti": "3efbeb7c4c7eebb6f6da2ceb9ea8db9d4c8a0062e20b211258ef542d7b9a7ce1",
    "libVirtualFG.so": "aac43a4c4b5a352fe2170bf048ea398f617957453f1726d83d2a39d0bbfb0052",
}
DEFAULT_DEST = Path(__file__).resolve().parent.parent / ".cache" / "tlsimu"
PIP_TIMEOUT_S = 300


class FetchError(RuntimeError):
    """TLSimu could not be fetched; the message says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(dest: Path) -> bool:
    """Whether ``dest`` already holds both files with the expected contents."""
    return all(
        (dest / name).is_file() and sha256_of(dest / name) == digest
        for name, digest in EXPECTED_SHA256.items()
    )


def download_wheel(folder: Path) -> Path:
    """Download the genicam wheel into ``folder`` with pip; returns the wheel's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--platform",
        WHEEL_PLATFORM,
        "--python-version",
        WHEEL_PYTHON,
        "--implementation",
        "cp",
        f"genicam=={GENICAM_VERSION}",
        "-d",
        str(folder),
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"pip download of genicam=={GENICAM_VERSION} timed out") from None
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise FetchError(f"pip download of genicam=={GENICAM_VERSION} failed:\n{tail}")
    wheels = sorted(folder.glob(f"genicam-{GENICAM_VERSION}-*.whl"))
    if not wheels:
        raise FetchError(f"pip reported success but left no genicam wheel in {folder}")
    return wheels[0]


def extract(wheel: Path, dest: Path) -> None:
    """Copy the simulator's files out of ``wheel`` into ``dest``, checking their digests.

    Each file is written beside its final name and renamed into place, so a reader never sees a
    half-written producer and two concurrent runs do not corrupt each other.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name, expected in EXPECTED_SHA256.items():
            try:
                data = archive.read(MEMBER_FOLDER + name)
            except KeyError:
                raise FetchError(f"{wheel.name} has no {MEMBER_FOLDER + name}") from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise FetchError(f"{name} in {wheel.name}: SHA-256 {actual}, expected {expected}")
            with tempfile.NamedTemporaryFile(dir=dest, prefix=f".{name}.", delete=False) as tmp:
                tmp.write(data)
            os.chmod(tmp.name, 0o755)
            os.replace(tmp.name, dest / name)


def fetch_tlsimu(dest: Path = DEFAULT_DEST) -> Path:
    """Make sure ``dest`` holds TLSimu; returns the path of ``TLSimu.cti``."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise NotImplementedError(
            f"TLSimu exists for x86_64 Linux and Windows; this script handles x86_64 Linux, "
            f"not {sys.platform}/{platform.machine()}"
        )
    dest = dest.resolve()
    if not is_complete(dest):
        with tempfile.TemporaryDirectory(prefix="tlsimu-wheel-") as folder:
            extract(download_wheel(Path(folder)), dest)
    return dest / "TLSimu.cti"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, help=f"folder to fill (default {DEFAULT_DEST})"
    )
    args = parser.parse_args(argv)
    try:
        cti = fetch_tlsimu(args.dest)
    except NotImplementedError as error:
        print(f"fetch_tlsimu: {error}", file=sys.stderr)
        return 2
    except (FetchError, OSError) as error:
        print(f"fetch_tlsimu: {error}", file=sys.stderr)
        return 1
    print(cti)
    return 0


if __name__ == "__main__":
    sys.exit(main())
