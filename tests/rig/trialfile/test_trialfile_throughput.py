"""Writer throughput for 640x480 frames arriving as encoded chunks (printed, not asserted)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from acquisition.frame_codec import encode_frame_chunk
from rig.trialfile import writer as writer_module
from rig.trialfile.reader import open_trial
from rig.trialfile.writer import CameraLayout, DaqLayout, TrialFileWriter

HEIGHT, WIDTH = 480, 640
CAMERA_NAMES = ("cam_a", "cam_b", "cam_c", "cam_d")
FRAMES_PER_CAMERA = 400
# The writer process flushes every 0.5 s: 250 frames per camera at 500 fps.
FRAMES_PER_FLUSH = 250


def encoded_frames(count: int) -> list[bytes]:
    """Mid-gray frames with 2 DN noise, already encoded as the camera processes send them."""
    rng = np.random.default_rng(17)
    frames = np.clip(np.round(128.0 + rng.normal(0.0, 2.0, (count, HEIGHT, WIDTH))), 0, 255)
    return [encode_frame_chunk(frame) for frame in frames.astype(np.uint8)]


def write_frames(path: Path, chunks: list[bytes]) -> tuple[float, int]:
    """Append FRAMES_PER_CAMERA frames to each camera, interleaved; (seconds, chunk bytes)."""
    writer = TrialFileWriter.create(
        path,
        root_attrs={"trial_id": "throughput"},
        cameras=[CameraLayout(name, HEIGHT, WIDTH) for name in CAMERA_NAMES],
        daq=DaqLayout(20_000.0, ("emg",), ("V",), ("emg",), "camera_trigger"),
    )
    chunk_bytes = 0
    start_s = time.perf_counter()
    for frame in range(FRAMES_PER_CAMERA):
        for name in CAMERA_NAMES:
            chunk = chunks[(frame + len(name)) % len(chunks)]
            writer.append_frame(
                name, chunk, frame_id=frame, trigger_index=-1, t_host_ns=frame, t_device_ns=-1
            )
            chunk_bytes += len(chunk)
        if frame % FRAMES_PER_FLUSH == FRAMES_PER_FLUSH - 1:
            writer.flush()
    writer.finalize(closed_cleanly=True, end_reason="completed")
    return time.perf_counter() - start_s, chunk_bytes


def test_measure_writer_throughput(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = encoded_frames(16)
    frame_count = FRAMES_PER_CAMERA * len(CAMERA_NAMES)
    raw_megabytes = frame_count * HEIGHT * WIDTH / 1e6
    results = {}
    default_growth_rows = writer_module.FRAME_GROWTH_ROWS
    for growth_rows in (default_growth_rows, 1):
        monkeypatch.setattr(writer_module, "FRAME_GROWTH_ROWS", growth_rows)
        path = tmp_path / f"throughput_{growth_rows}.h5"
        elapsed_s, chunk_bytes = write_frames(path, chunks)
        results[growth_rows] = elapsed_s
        print(
            f"\n{len(CAMERA_NAMES)} cameras x {FRAMES_PER_CAMERA} frames 640x480, growth step "
            f"{growth_rows}: {frame_count / elapsed_s:,.0f} frames/s, "
            f"{chunk_bytes / 1e6 / elapsed_s:,.0f} MB/s written "
            f"({raw_megabytes / elapsed_s:,.0f} MB/s of raw pixels), "
            f"file {path.stat().st_size / 1e6:.1f} MB"
        )
        with open_trial(path) as trial:
            assert trial.frames("cam_c", 0, 3).shape == (3, HEIGHT, WIDTH)
            assert trial.summary()["cameras"]["cam_a"]["frames"] == FRAMES_PER_CAMERA
    speedup = results[1] / results[default_growth_rows]
    print(f"growing in steps vs per frame: {speedup:.2f}x")
