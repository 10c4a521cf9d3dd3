"""Writer benchmark: the trial-file writer next to a raw write of the same bytes to the same disk.

Run: ``.venv/bin/python bench/writer.py [--quick] [--json PATH] [--dir FOLDER]``

1. Throughput. ``rig.trialfile.writer.TrialFileWriter`` stores frame chunks made by
   ``acquisition.frame_codec.encode_frame_chunk`` (compressed beforehand, as the camera processes
   do) for several cameras in turn, flushing every ``--flush-interval-s`` as the writer process
   does, then finalizes the file and fsyncs it. Next to it, in the same run and the same folder, a
   raw sequential write of the same number of raw frame bytes, frame by frame, then fsync. Both are
   timed from the first byte to the end of the fsync. The ratio writer/raw above 1 means
   compression lets the writer store frames faster than the disk could take them raw.
2. Compression. Ratio and single-thread encode speed of ``encode_frame_chunk`` on (a) the digital
   twin's frames and (b) real mouse videos from ``../shared/data`` (beside the repository, never in
   it; ``--data-dir`` elsewhere): ``dlc_openfield`` (640x480, 30 fps) and
   ``lightning_pose_mirror_mouse`` (396x406, 250 fps), decoded with OpenCV and converted to
   grayscale. Each is measured in a spawned process set up like a camera process (one BLAS
   thread); speed is raw MB per CPU second of that process, i.e. per core. A missing video is
   skipped with the reason printed and recorded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    MB,
    SHARED_DATA_DIR,
    Column,
    add_common_arguments,
    best_of_runs,
    load_average_1min,
    machine_info,
    parse_size,
    print_machine,
    print_table,
    size_label,
    synthetic_frames,
    use_single_threaded_compute,
    write_json,
)

from acquisition.frame_codec import encode_frame_chunk
from rig.config import TrialConfig
from rig.trialfile.writer import CameraLayout, DaqLayout, TrialFileWriter

NAME = "writer"
# Distinct frames cycled through, so every camera writes changing content.
CHUNK_POOL = 64
# What the writer must sustain for the rig of the design: 4 cameras at 500 frames/s.
RIG_FRAMES_PER_S = 4 * 500
REAL_VIDEOS = {
    "dlc_openfield": "real open-field mouse video, 640x480, 30 fps",
    "lightning_pose_mirror_mouse": "real mouse video with mirror, 396x406, 250 fps",
}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclass(frozen=True)
class WriterPlan:
    cameras: int
    frames_per_camera: int
    height: int
    width: int
    flush_interval_s: float

    @property
    def frames(self) -> int:
        return self.cameras * self.frames_per_camera

    @property
    def raw_bytes(self) -> int:
        return self.frames * self.height * self.width


# --- throughput ----------------------------------------------------------------------------------


def write_raw(folder: Path, plan: WriterPlan, frames: np.ndarray) -> dict[str, Any]:
    """Write the plan's raw frame bytes from ``frames`` (P, H, W) sequentially, then fsync."""
    path = folder / "raw_sequential.bin"
    start_ns = time.monotonic_ns()
    with open(path, "wb", buffering=0) as stream:
        for index in range(plan.frames):
            stream.write(memoryview(frames[index % len(frames)]).cast("B"))
        os.fsync(stream.fileno())
    elapsed_s = (time.monotonic_ns() - start_ns) / 1e9
    on_disk_bytes = path.stat().st_size
    path.unlink()
    return _throughput_row("raw_write_fsync", plan, elapsed_s, on_disk_bytes)


def write_trial_file(folder: Path, plan: WriterPlan, chunks: list[bytes]) -> dict[str, Any]:
    """Store the plan's frames through TrialFileWriter (cameras in turn), finalize, fsync."""
    path = folder / "bench_trial.h5"
    names = [f"cam{index}" for index in range(plan.cameras)]
    frame_index = 0
    start_ns = time.monotonic_ns()
    writer = TrialFileWriter.create(
        path,
        root_attrs={"trial_id": "bench", "subject": "bench"},
        cameras=[CameraLayout(name, plan.height, plan.width) for name in names],
        daq=DaqLayout(
            rate_hz=10_000.0,
            channel_names=("emg",),
            channel_units=("V",),
            channel_kinds=("emg",),
            trigger_line_name="camera_trigger",
        ),
    )
    try:
        last_flush_ns = time.monotonic_ns()
        flush_interval_ns = int(plan.flush_interval_s * 1e9)
        for trigger_index in range(plan.frames_per_camera):
            for name in names:
                now_ns = time.monotonic_ns()
                writer.append_frame(
                    name,
                    chunks[frame_index % len(chunks)],
                    frame_id=trigger_index,
                    trigger_index=trigger_index,
                    t_host_ns=now_ns,
                    t_device_ns=-1,
                )
                frame_index += 1
                if now_ns - last_flush_ns >= flush_interval_ns:
                    writer.flush()
                    last_flush_ns = now_ns
        writer.finalize(closed_cleanly=True, end_reason="benchmark")
    finally:
        writer.close()
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())
    elapsed_s = (time.monotonic_ns() - start_ns) / 1e9
    on_disk_bytes = path.stat().st_size
    path.unlink()
    return _throughput_row("trialfile_writer", plan, elapsed_s, on_disk_bytes)


def _throughput_row(
    method: str, plan: WriterPlan, elapsed_s: float, on_disk_bytes: int
) -> dict[str, Any]:
    return {
        "method": method,
        "size": size_label(plan.height, plan.width),
        "cameras": plan.cameras,
        "frames": plan.frames,
        "raw_mb": plan.raw_bytes / MB,
        "on_disk_mb": on_disk_bytes / MB,
        "elapsed_s": elapsed_s,
        "raw_mb_per_s": plan.raw_bytes / MB / elapsed_s,
        "on_disk_mb_per_s": on_disk_bytes / MB / elapsed_s,
        "frames_per_s": plan.frames / elapsed_s,
    }


def measure_throughput(
    folder: Path, plan: WriterPlan, repeats: int, frames: np.ndarray
) -> list[dict[str, Any]]:
    """Raw write and writer, alternating, ``repeats`` times each; the median run of each."""
    chunks = [encode_frame_chunk(frame) for frame in frames]
    raw_runs: list[dict[str, Any]] = []
    writer_runs: list[dict[str, Any]] = []
    for _ in range(repeats):
        raw_runs.append(write_raw(folder, plan, frames))
        writer_runs.append(write_trial_file(folder, plan, chunks))
    rows = []
    for runs in (raw_runs, writer_runs):
        row = dict(best_of_runs(runs, "raw_mb_per_s"))
        row["raw_mb_per_s_runs"] = [run["raw_mb_per_s"] for run in runs]
        rows.append(row)
    raw_mb_per_s = rows[0]["raw_mb_per_s"]
    for row in rows:
        row["ratio_to_raw_write"] = row["raw_mb_per_s"] / raw_mb_per_s
        row["ratio_to_rig_need"] = row["frames_per_s"] / RIG_FRAMES_PER_S
    return rows


# --- compression ---------------------------------------------------------------------------------


def measure_compression(source: str, description: str, frames: np.ndarray) -> dict[str, Any]:
    """Ratio and one-thread encode speed of ``encode_frame_chunk`` over frames (N, H, W) uint8."""
    count, height, width = frames.shape
    encode_frame_chunk(frames[0])  # first call sets Blosc's thread count
    chunk_bytes = 0
    wall_start_ns = time.monotonic_ns()
    cpu_start_ns = time.process_time_ns()
    for frame in frames:
        chunk_bytes += len(encode_frame_chunk(frame))
    cpu_s = (time.process_time_ns() - cpu_start_ns) / 1e9
    wall_s = (time.monotonic_ns() - wall_start_ns) / 1e9
    raw_bytes = count * height * width
    return {
        "source": source,
        "description": description,
        "size": size_label(height, width),
        "frames": count,
        "compression_ratio": raw_bytes / chunk_bytes,
        "encode_ms_per_frame": wall_s / count * 1e3,
        "encode_mb_per_s": raw_bytes / MB / wall_s,
        "encode_mb_per_s_per_core": raw_bytes / MB / cpu_s,
    }


def find_video(data_dir: Path, folder: Path) -> Path | None:
    """The dataset's video, as ``manifest.json`` lists it (else the first video file there)."""
    manifest_path = data_dir / "manifest.json"
    if manifest_path.is_file():
        for entry in json.loads(manifest_path.read_text()):
            destination = str(entry.get("dest", ""))
            if destination.startswith(f"{folder.name}/") and destination.lower().endswith(
                VIDEO_SUFFIXES
            ):
                candidate = data_dir / destination
                if candidate.is_file():
                    return candidate
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    return videos[0] if videos else None


def locate_video(data_dir: Path, dataset: str) -> tuple[Path | None, str]:
    """(the dataset's video, "") or (None, why there is none)."""
    if not data_dir.is_dir():
        return None, f"{data_dir} is absent"
    folder = data_dir / dataset
    if not folder.is_dir():
        return None, f"{folder} is absent"
    video = find_video(data_dir, folder)
    if video is None:
        return None, f"no video file in {folder}"
    return video, ""


def read_gray_frames(path: Path, max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` frames of a video, decoded and converted to (N, H, W) uint8 gray."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: OpenCV cannot open this video")
    frames: list[np.ndarray] = []
    try:
        while len(frames) < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
            frames.append(np.ascontiguousarray(gray, dtype=np.uint8))
    finally:
        capture.release()
    if not frames:
        raise OSError(f"{path}: no frame could be decoded")
    return np.stack(frames)


def compression_rows(
    data_dir: Path, height: int, width: int, twin_frames: int, video_frames: int
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows for the twin and each real video; (source, reason) for each video that was skipped.

    Each is measured in a spawned process set up like a camera process (one BLAS thread).
    """
    jobs: list[tuple[str, str, str | None, int]] = [
        ("twin", "digital twin frames, 2 DN noise", None, twin_frames)
    ]
    skipped = []
    for dataset, description in REAL_VIDEOS.items():
        video, reason = locate_video(data_dir, dataset)
        if video is None:
            print(f"  skipped {dataset}: {reason}")
            skipped.append({"source": dataset, "reason": reason})
        else:
            jobs.append((dataset, description, str(video), video_frames))
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as worker:
        rows = [
            worker.submit(
                _compression_job, source, description, video, count, height, width
            ).result()
            for source, description, video, count in jobs
        ]
    return rows, skipped


def _compression_job(
    source: str, description: str, video: str | None, count: int, height: int, width: int
) -> dict[str, Any]:
    """In the worker: make or decode the frames, then measure (decoding is not timed)."""
    if video is None:
        frames, _ = synthetic_frames(count, height, width, seed=3)
    else:
        frames = read_gray_frames(Path(video), count)
    row = measure_compression(source, description, frames)
    if video is not None:
        row["video"] = Path(video).name
    return row


# --- the benchmark -------------------------------------------------------------------------------


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()  # before the load of the benchmark itself
    thread_settings = use_single_threaded_compute()
    quick: bool = arguments.quick
    pool_count = 8 if quick else CHUNK_POOL
    if arguments.frames_from == "twin":
        height, width = arguments.size or ((120, 160) if quick else (480, 640))
        pool_frames, frames_source = synthetic_frames(pool_count, height, width, seed=2)
    else:
        video, reason = locate_video(arguments.data_dir, arguments.frames_from)
        if video is None:
            raise SystemExit(f"--frames-from {arguments.frames_from}: {reason}")
        pool_frames = read_gray_frames(video, pool_count)
        frames_source = f"{arguments.frames_from}: {video.name}"
        _, height, width = pool_frames.shape
    plan = WriterPlan(
        cameras=arguments.cameras,
        frames_per_camera=25 if quick else arguments.frames_per_camera,
        height=height,
        width=width,
        flush_interval_s=arguments.flush_interval_s,
    )
    repeats = 1 if quick else arguments.repeats
    video_frames = 10 if quick else arguments.video_frames
    parent: Path = arguments.dir if arguments.dir is not None else Path.cwd()
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="jumprig-bench-writer-", dir=parent))
    try:
        throughput = measure_throughput(folder, plan, repeats, pool_frames)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for row in throughput:
        print(f"  {row['method']:<18} {row['raw_mb_per_s']:>8.0f} MB/s raw", flush=True)
    twin_frames = 8 if quick else arguments.twin_frames
    twin_height, twin_width = arguments.size or ((120, 160) if quick else (480, 640))
    compression, skipped = compression_rows(
        arguments.data_dir, twin_height, twin_width, twin_frames, video_frames
    )
    return {
        "benchmark": NAME,
        "quick": quick,
        "machine": {**machine, "load_average_1min_end": load_average_1min()},
        "settings": {
            "dir": str(parent.resolve()),
            "cameras": plan.cameras,
            "frames_per_camera": plan.frames_per_camera,
            "size": size_label(height, width),
            "flush_interval_s": plan.flush_interval_s,
            "repeats": repeats,
            "chunk_pool": len(pool_frames),
            "frames_source": frames_source,
            "twin_frames": twin_frames,
            "video_frames": video_frames,
            "data_dir": str(arguments.data_dir),
            "encoder_thread_settings": thread_settings,
            "rig_frames_per_s": RIG_FRAMES_PER_S,
            "mb": "1e6 bytes",
        },
        "throughput": throughput,
        "compression": compression,
        "skipped": skipped,
    }


def print_results(results: dict[str, Any]) -> None:
    print_machine(results["machine"])
    print_table(
        f"Writer throughput, {results['settings']['cameras']} cameras, frames: "
        f"{results['settings']['frames_source']}; with fsync (median of repeats)",
        results["throughput"],
        [
            Column("method", "method"),
            Column("size", "size"),
            Column("frames", "frames"),
            Column("raw_mb", "raw MB", ",.0f"),
            Column("on_disk_mb", "disk MB", ",.0f"),
            Column("raw_mb_per_s", "MB/s raw", ",.0f"),
            Column("frames_per_s", "frames/s", ",.0f"),
            Column("ratio_to_raw_write", "/raw write", ".2f"),
            Column("ratio_to_rig_need", "/2000 fps", ".2f"),
        ],
    )
    print_table(
        "Compression by encode_frame_chunk (Blosc lz4 + bitshuffle + fletcher32), one thread",
        results["compression"],
        [
            Column("source", "source"),
            Column("size", "size"),
            Column("frames", "frames"),
            Column("compression_ratio", "ratio", ".2f"),
            Column("encode_ms_per_frame", "ms/frame", ".3f"),
            Column("encode_mb_per_s_per_core", "MB/s per core", ",.0f"),
        ],
    )
    for skipped in results["skipped"]:
        print(f"skipped {skipped['source']}: {skipped['reason']}")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, NAME)
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="folder on the disk to measure; a temporary folder is made inside it "
        "(default: the current directory)",
    )
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--frames-per-camera", type=int, default=1500)
    parser.add_argument(
        "--size", type=parse_size, default=None, help="WIDTHxHEIGHT (default 640x480)"
    )
    parser.add_argument(
        "--flush-interval-s",
        type=float,
        default=TrialConfig().flush_interval_s,
        help="the writer flushes this often, like the rig's trial.flush_interval_s (default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=SHARED_DATA_DIR,
        help="folder holding dlc_openfield/ and lightning_pose_mirror_mouse/ "
        "(default: ../shared/data beside the repository)",
    )
    parser.add_argument(
        "--frames-from",
        choices=["twin", *REAL_VIDEOS],
        default="twin",
        help="content of the frames the writer stores (a real video sets the frame size)",
    )
    parser.add_argument(
        "--twin-frames", type=int, default=200, help="twin frames rendered for compression"
    )
    parser.add_argument(
        "--video-frames", type=int, default=1000, help="frames decoded from each real video"
    )
    arguments = parser.parse_args(argv)
    for name in (
        "cameras",
        "frames_per_camera",
        "repeats",
        "twin_frames",
        "video_frames",
    ):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if arguments.flush_interval_s <= 0:
        parser.error("--flush-interval-s must be positive")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    results = run(arguments)
    print_results(results)
    write_json(results, arguments.json)


if __name__ == "__main__":
    main()
