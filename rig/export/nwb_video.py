"""The cameras' videos in an NWB export: referenced lossless video files, frames stored in the
NWB file, or nothing.

- ``"reference"``: each camera's frames go to a lossless video (FFV1 in Matroska) beside the NWB
  file, ``<nwb stem>_<camera>.mkv``, and an ImageSeries points at it by relative path (NWB's
  external file), so NWB tools and video tools both read it and the NWB file stays small. Videos
  are encoded in parallel, one thread per camera (OpenCV encodes without Python's lock).
- ``"store"``: the frames go inside the NWB file as (N, height, width) uint8, gzip level 1, one
  frame per chunk: one file, larger and slower to write (gzip is slow on noisy video,
  HARDWARE_NOTES.md; level 1 shrinks sensor noise about as much as higher levels).
- ``"none"``: no video; the frame times are still in the ``<camera>_frames`` tables.

Frame i of every video or stored series is row i of the camera's ``<camera>_frames`` table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rig.export.trial_contents import CameraContents, ExportError
from rig.export.video_files import VIDEO_SUFFIX, iter_frames, write_video
from rig.trialfile.reader import TrialFile

VideoMode = Literal["reference", "store", "none"]
VIDEO_MODES: tuple[VideoMode, ...] = ("reference", "store", "none")
FRAME_GZIP_LEVEL = 1


@dataclass(frozen=True, eq=False)
class VideoJob:
    """One camera's frames to export: trial file rows (R,) int64, ascending."""

    camera: CameraContents
    rows: np.ndarray
    path: Path


def video_path(nwb_path: Path, camera: str) -> Path:
    """Where ``"reference"`` mode puts the video of ``camera``: beside the NWB file."""
    return nwb_path.with_name(f"{nwb_path.stem}_{camera}{VIDEO_SUFFIX}")


def write_videos(trial: TrialFile, jobs: Sequence[VideoJob], fps: float) -> None:
    """Write every job's lossless video, cameras in parallel. ``fps`` is the containers'
    nominal rate; the exact frame times are the NWB file's."""

    def run(job: VideoJob) -> None:
        camera = job.camera
        frames = iter_frames(trial, camera.name, job.rows)
        written = write_video(frames, job.path, camera.width_px, camera.height_px, fps)
        if written != job.rows.size:
            raise ExportError(f"{job.path}: wrote {written} frames of {job.rows.size}")

    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="video") as pool:
        # list() re-raises the first failure.
        list(pool.map(run, jobs))


def image_series(
    mode: VideoMode,
    trial: TrialFile,
    job: VideoJob,
    timing: dict[str, Any],
    device: Any,
) -> Any:
    """The ImageSeries ``video_<camera>`` for ``mode`` ``"reference"`` (the video must have been
    written) or ``"store"`` (frames are read from ``trial`` while the NWB file is written)."""
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.data_utils import DataChunkIterator
    from pynwb.image import ImageSeries

    camera = job.camera
    common: dict[str, Any] = {
        "name": f"video_{camera.name}",
        "device": device,
        "unit": "n.a.",
        **timing,
    }
    if mode == "reference":
        return ImageSeries(
            **common,
            external_file=[job.path.name],
            starting_frame=[0],
            num_samples=int(job.rows.size),
            format="external",
            dimension=[camera.width_px, camera.height_px],
            description=(
                f"Frames of {camera.name}, lossless (FFV1 in Matroska, 8-bit gray), in the file "
                f"beside this one; frame i of the video is row i of {camera.name}_frames."
            ),
        )
    if mode != "store":
        raise ValueError(f"no ImageSeries for videos={mode!r}")
    frames = DataChunkIterator(
        data=iter_frames(trial, camera.name, job.rows),
        maxshape=(int(job.rows.size), camera.height_px, camera.width_px),
        dtype=np.dtype(np.uint8),
        buffer_size=1,
    )
    return ImageSeries(
        **common,
        data=H5DataIO(
            frames,
            compression="gzip",
            compression_opts=FRAME_GZIP_LEVEL,
            chunks=(1, camera.height_px, camera.width_px),
        ),
        format="raw",
        description=(
            f"Frames of {camera.name} (N, height, width), 8-bit gray, lossless; frame i is row i "
            f"of {camera.name}_frames."
        ),
    )
