"""Crash safety across processes: SIGKILL a writer, and read a file while another process writes.

HDF5 shares one open file between handles of the same process, so these tests put the writer
and the reader in different processes, as on the rig.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from trialfile_synthetic import CAMERAS, SyntheticTrial, digest

from rig.trialfile.reader import open_trial
from rig.trialfile.writer import TrialFileWriter

WriterFactory = Callable[..., TrialFileWriter]
PROJECT_ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CHILD_TIMEOUT_S = 60

# Writes `flushed_blocks` blocks with a flush after each (the last one complete if asked), reports
# the writer's committed counters, then writes `unflushed_blocks` more without a flush, says so on
# stdout and waits to be killed.
WRITER_SCRIPT = """
import json, sys, time
from pathlib import Path
from trialfile_synthetic import SyntheticTrial, create_writer
path = sys.argv[1]
seed, flushed_blocks, unflushed_blocks, complete = map(int, sys.argv[2:6])
synthetic = SyntheticTrial(seed=seed, block_count=flushed_blocks + unflushed_blocks)
writer = create_writer(Path(path))
for block in range(flushed_blocks):
    synthetic.write_block(writer, block)
    writer.flush(complete=bool(complete) and block == flushed_blocks - 1)
committed = {
    "frames": writer.frames_committed("cam_left"),
    "samples": writer.samples_committed(),
    "pulses": writer.pulses_committed(),
    "pose": writer.rows_committed("/pose2d/cam_left"),
}
print(json.dumps(committed), flush=True)
for block in range(flushed_blocks, flushed_blocks + unflushed_blocks):
    synthetic.write_block(writer, block)
print("written", flush=True)
time.sleep(120)
"""

# Opens the file with open_trial and answers each line on stdin with digests of what it reads.
READER_SCRIPT = """
import json, sys
from rig.trialfile.reader import open_trial
from trialfile_synthetic import digest
trial = open_trial(sys.argv[1])
for command in sys.stdin:
    if command.strip() == "quit":
        break
    trial.refresh()
    answer = {"swmr": trial.opened_in_swmr_mode, "committed": {}}
    for camera in trial.camera_names:
        answer["committed"][camera] = len(trial.frame_table(camera)["frame_id"])
        answer[camera] = digest(trial.frames(camera))
        table = trial.frame_table(camera)
        answer[camera + "/daq_sample_index"] = table["daq_sample_index"].tolist()
    answer["analog"] = digest(trial.daq_analog())
    answer["samples"] = int(trial.daq_analog().shape[0])
    answer["pulses"] = trial.trigger_sample_index().tolist()
    print(json.dumps(answer), flush=True)
trial.close()
"""


def child_environment() -> dict[str, str]:
    environment = dict(os.environ)
    paths = [str(HERE), str(PROJECT_ROOT), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    return environment


def start_child(script: str, *arguments: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, arguments)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.kill()
        _, errors = child.communicate(timeout=CHILD_TIMEOUT_S)
        raise RuntimeError(f"child process ended early:\n{errors}")
    return line


@pytest.mark.parametrize(
    "flushed_blocks,unflushed_blocks,complete",
    [(20, 5, False), (20, 5, True), (0, 3, False), (13, 0, False)],
)
def test_sigkilled_writer_leaves_exactly_the_flushed_data(
    trial_path: Path, flushed_blocks: int, unflushed_blocks: int, complete: bool
) -> None:
    seed = 99
    writer = start_child(
        WRITER_SCRIPT, trial_path, seed, flushed_blocks, unflushed_blocks, int(complete)
    )
    try:
        claimed = json.loads(read_line(writer))
        assert read_line(writer).strip() == "written"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=CHILD_TIMEOUT_S)
    synthetic = SyntheticTrial(seed=seed, block_count=flushed_blocks + unflushed_blocks)
    frames_flushed = synthetic.frames_through(flushed_blocks)
    samples_flushed = synthetic.samples_through(flushed_blocks)
    with h5py.File(trial_path, "r", swmr=True) as h5file:
        frame_chunk = h5file["/cameras/cam_left/frame_id"].chunks[0]
        sample_chunk = h5file["/daq/analog"].chunks[0]
    if complete:
        assert claimed["frames"] == frames_flushed
        assert claimed["samples"] == samples_flushed
    else:  # periodic flushes commit whole chunks
        assert claimed["frames"] == frames_flushed // frame_chunk * frame_chunk
        assert claimed["samples"] == samples_flushed // sample_chunk * sample_chunk
    frames, samples, pulses, pose = (
        claimed[key] for key in ("frames", "samples", "pulses", "pose")
    )

    with open_trial(trial_path) as trial:
        assert trial.closed_cleanly is False
        assert trial.opened_in_swmr_mode  # the crash left the file marked open for writing
        for camera in CAMERAS:
            np.testing.assert_array_equal(
                trial.frames(camera.name), synthetic.frames[camera.name][:frames]
            )
            table = trial.frame_table(camera.name)
            for column, expected in synthetic.columns[camera.name].items():
                np.testing.assert_array_equal(table[column], expected[:frames], err_msg=column)
        np.testing.assert_array_equal(trial.daq_analog(), synthetic.analog[:samples])
        np.testing.assert_array_equal(trial.daq_trigger_line(), synthetic.trigger_line[:samples])
        np.testing.assert_array_equal(trial.trigger_sample_index(), synthetic.pulses[:pulses])
        np.testing.assert_array_equal(
            trial.read("/pose2d/cam_left"), synthetic.stream_rows["/pose2d/cam_left"][:pose]
        )
        problems = trial.verify()
        summary = trial.summary()
    # The only thing wrong with a crashed file is that it was not closed.
    assert len(problems) == 1 and "not closed cleanly" in problems[0], problems
    assert summary["closed_cleanly"] is False
    assert summary["daq"]["samples"] == samples


def test_swmr_reader_in_another_process_sees_only_committed_rows(
    open_writer: WriterFactory, trial_path: Path
) -> None:
    synthetic = SyntheticTrial(seed=8, block_count=25)
    writer = open_writer()
    for block in range(10):
        synthetic.write_block(writer, block)
    writer.flush()
    reader = start_child(READER_SCRIPT, trial_path)

    def ask() -> dict[str, object]:
        assert reader.stdin is not None
        reader.stdin.write("read\n")
        reader.stdin.flush()
        answer: dict[str, object] = json.loads(read_line(reader))
        return answer

    def expected_answer() -> dict[str, object]:
        frames, samples = writer.frames_committed("cam_left"), writer.samples_committed()
        expected: dict[str, object] = {
            "swmr": True,
            "committed": {camera.name: frames for camera in CAMERAS},
            "analog": digest(synthetic.analog[:samples]),
            "samples": samples,
            "pulses": synthetic.pulses[: writer.pulses_committed()].tolist(),
        }
        for camera in CAMERAS:
            expected[camera.name] = digest(synthetic.frames[camera.name][:frames])
            expected[camera.name + "/daq_sample_index"] = synthetic.pulses[:frames].tolist()
        return expected

    try:
        first = ask()
        assert first == expected_answer()
        assert first["committed"] == {camera.name: 64 for camera in CAMERAS}

        # Appended but not flushed: invisible to the reader.
        for block in range(10, 20):
            synthetic.write_block(writer, block)
        assert ask() == first

        writer.flush()
        after_flush = ask()
        assert after_flush == expected_answer()
        assert after_flush["committed"] == {camera.name: 192 for camera in CAMERAS}

        # The writer finishes the trial while the reader still holds the file open.
        for block in range(20, 25):
            synthetic.write_block(writer, block)
        writer.finalize(closed_cleanly=True, end_reason="completed")
        assert reader.stdin is not None
        reader.stdin.write("quit\n")
        reader.stdin.flush()
        reader.communicate(timeout=CHILD_TIMEOUT_S)
        assert reader.returncode == 0
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.communicate(timeout=CHILD_TIMEOUT_S)
    with open_trial(trial_path) as trial:
        assert trial.closed_cleanly is True
        assert trial.opened_in_swmr_mode is False
        np.testing.assert_array_equal(trial.frames("cam_right"), synthetic.frames["cam_right"])
        assert trial.verify() == []


# Writes and flushes block after block until killed.
ENDLESS_WRITER_SCRIPT = """
import sys
from pathlib import Path
from trialfile_synthetic import SyntheticTrial, create_writer
path, seed, block_count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
synthetic = SyntheticTrial(seed=seed, block_count=block_count)
writer = create_writer(Path(path))
print("created", flush=True)
for block in range(block_count):
    synthetic.write_block(writer, block)
    if block % 2:
        writer.flush()
print("finished", flush=True)
"""


@pytest.mark.slow
def test_killed_at_random_moments_every_file_reads_back_its_committed_prefix(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(5)
    seed, block_count = 7, 400
    synthetic = SyntheticTrial(seed=seed, block_count=block_count)
    committed_frames = []
    for attempt in range(20):
        path = tmp_path / f"killed_{attempt}.h5"
        writer = start_child(ENDLESS_WRITER_SCRIPT, path, seed, block_count)
        try:
            assert read_line(writer).strip() == "created"
            with contextlib.suppress(subprocess.TimeoutExpired):
                writer.wait(timeout=float(rng.uniform(0.05, 1.5)))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.communicate(timeout=CHILD_TIMEOUT_S)
        with open_trial(path) as trial:
            frames = trial.frames("cam_left")
            count = frames.shape[0]
            np.testing.assert_array_equal(frames, synthetic.frames["cam_left"][:count])
            samples = trial.daq_analog().shape[0]
            np.testing.assert_array_equal(trial.daq_analog(), synthetic.analog[:samples])
            problems = [p for p in trial.verify() if "not closed cleanly" not in p]
        assert problems == [], problems
        committed_frames.append(count)
    print(f"\nframes committed when killed: {committed_frames}")
