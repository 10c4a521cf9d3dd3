"""Provenance: the versions of the software that wrote a trial file."""

from __future__ import annotations

import importlib.metadata
import platform

# Distributions whose versions every trial file records.
_DISTRIBUTIONS = (
    "jumprig",
    "numpy",
    "h5py",
    "hdf5plugin",
    "pyzmq",
    "blosc",
    "opencv-python-headless",
)


def software_versions() -> dict[str, str]:
    """``{"version_<name>": version}`` of the rig and of the libraries it writes with."""
    import h5py
    import zmq

    versions = {"version_python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            versions[f"version_{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[f"version_{name}"] = "not installed"
    versions["version_hdf5"] = h5py.version.hdf5_version
    versions["version_libzmq"] = zmq.zmq_version()
    return versions
