"""`rig recover`: what a crashed trial file holds, and its incomplete mark (data untouched)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers the Blosc filter of the frames)
import numpy as np
import pytest

from rig.recover import (
    ATTR_INCOMPLETE,
    ATTR_RECOVERED_UTC,
    ATTR_RECOVERY,
    RECOVERED_END_REASON,
    recover_main,
)
from rig.trialfile.reader import TrialFileError, open_trial
from tests.rig.trialfile.trialfile_synthetic import (
    PULSES_PER_BLOCK,
    SyntheticTrial,
    create_writer,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The synthetic trial's module, importable by a child process by its own name (an installed
# package named "tests" hides this project's tests folder outside pytest).
SYNTHETIC_DIR = PROJECT_ROOT / "tests" / "rig" / "trialfile"

# Writes `flushed` blocks with a flush after each, `unflushed` more without one, then dies by
# SIGKILL like a crashed recording process.
CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from trialfile_synthetic import SyntheticTrial, create_writer
path, flushed, unflushed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with_streams = sys.argv[4] == "1"
synthetic = SyntheticTrial(seed=7, block_count=flushed + unflushed)
writer = create_writer(Path(path)) if with_streams else create_writer(Path(path), streams=())
if not with_streams:
    synthetic.stream_rows = {}
for block in range(flushed):
    synthetic.write_block(writer, block)
    writer.flush()
for block in range(flushed, flushed + unflushed):
    synthetic.write_block(writer, block)
os.kill(os.getpid(), signal.SIGKILL)
"""


def crashed_trial_file(
    path: Path, flushed: int = 12, unflushed: int = 3, with_streams: bool = True
) -> Path:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SYNTHETIC_DIR), str(PROJECT_ROOT)]),
    }
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_WRITER,
            str(path),
            str(flushed),
            str(unflushed),
            str(int(with_streams)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )
    assert child.returncode == -9, child.stderr
    return path


def dataset_digests(path: Path) -> dict[str, str]:
    """SHA-256 of every dataset's whole extent (committed or not), read as SWMR if need be."""
    digests: dict[str, str] = {}

    def collect(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            data = np.ascontiguousarray(item[()])
            digests[name] = hashlib.sha256(data.tobytes()).hexdigest()

    try:
        h5file = h5py.File(path, "r", locking=False)
    except OSError:
        h5file = h5py.File(path, "r", swmr=True, locking=False)
    with h5file:
        h5file.visititems(collect)
    return digests


def recover(path: Path, **options: bool) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = recover_main(path, out, err, **options)
    return code, out.getvalue(), err.getvalue()


def test_a_crashed_file_is_reported_and_marked_incomplete_without_touching_data(
    tmp_path: Path,
) -> None:
    path = crashed_trial_file(tmp_path / "crashed.h5", flushed=12, unflushed=3)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r", locking=False)  # the crashed writer's mark: plain opens fail
    before = dataset_digests(path)
    with open_trial(path) as trial:
        committed_frames = len(trial.frame_table("cam_left")["frame_id"])
        committed_samples = trial.daq_analog().shape[0]
        committed_pulses = trial.trigger_sample_index().size

    code, text, errors = recover(path)
    print(text)
    assert code == 0, errors
    assert "NOT closed cleanly" in text
    assert f"cam_left     {committed_frames:>7} frames" in text
    assert f"DAQ: {committed_samples} samples" in text
    assert f"{committed_pulses} trigger pulses" in text
    assert "at most one flush interval (0.5 s)" in text
    assert "marked incomplete" in text

    # Flushed blocks are committed, unflushed ones are not (a chunk may still be waiting).
    assert 0 < committed_frames <= 12 * PULSES_PER_BLOCK
    with h5py.File(path, "r") as f:  # the write mark is cleared: a plain open works now
        assert f.attrs[ATTR_INCOMPLETE] == 1
        assert f.attrs["closed_cleanly"] == 0
        assert f.attrs["end_reason"] == RECOVERED_END_REASON
        assert f.attrs[ATTR_RECOVERED_UTC]
        recovery = json.loads(f.attrs[ATTR_RECOVERY])
    assert recovery["cameras"][0]["frames"] == committed_frames
    assert recovery["daq_samples"] == committed_samples
    assert dataset_digests(path) == before

    # The committed rows read back exactly as written.
    synthetic = SyntheticTrial(seed=7, block_count=15)
    with open_trial(path) as trial:
        np.testing.assert_array_equal(
            trial.frames("cam_left"), synthetic.frames["cam_left"][:committed_frames]
        )
        np.testing.assert_array_equal(trial.daq_analog(), synthetic.analog[:committed_samples])


def test_recovering_twice_keeps_the_first_mark(tmp_path: Path) -> None:
    path = crashed_trial_file(tmp_path / "crashed.h5", flushed=4, unflushed=1)
    assert recover(path)[0] == 0
    with h5py.File(path, "r") as f:
        first = f.attrs[ATTR_RECOVERED_UTC]
    code, text, _ = recover(path)
    assert code == 0
    assert "marked incomplete earlier" in text
    with h5py.File(path, "r") as f:
        assert f.attrs[ATTR_RECOVERED_UTC] == first


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    path = crashed_trial_file(tmp_path / "crashed.h5", flushed=4, unflushed=1)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, text, _ = recover(path, mark=False)
    assert code == 0
    assert "not marked (dry run)" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_cleanly_closed_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "clean.h5"
    synthetic = SyntheticTrial(seed=3, block_count=3)
    writer = create_writer(path)
    for block in range(3):
        synthetic.write_block(writer, block)
    writer.finalize(closed_cleanly=True, end_reason="completed")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, text, _ = recover(path, as_json=True)
    assert code == 0
    report = json.loads(text)
    assert report["closed_cleanly"] is True
    assert report["marked"] == {}
    assert [camera["frames"] for camera in report["cameras"]] == [3 * PULSES_PER_BLOCK] * 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_gaps_in_a_camera_are_listed_with_their_trigger_indices(tmp_path: Path) -> None:
    path = tmp_path / "gaps.h5"
    synthetic = SyntheticTrial(seed=5, block_count=4)
    writer = create_writer(path)
    for block in range(4):
        synthetic.write_block(writer, block)
    writer.flush(complete=True)
    writer.close()  # closed, not finalized: closed_cleanly stays 0
    # Rewrite cam_right's trigger indices as if pulses 3, 4 and 17 had no frame.
    with h5py.File(path, "r+") as f:
        rows = f["cameras/cam_right/trigger_index"].shape[0]
        shifted = np.setdiff1d(np.arange(rows + 3), [3, 4, 17])[:rows]
        f["cameras/cam_right/trigger_index"][:] = shifted
        f["cameras/cam_right/frame_id"][:] = shifted
        pulses = synthetic.pulses
        f["cameras/cam_right/daq_sample_index"][:] = np.where(
            shifted < pulses.size, pulses[np.minimum(shifted, pulses.size - 1)], -1
        )
    code, text, _ = recover(path, mark=False, as_json=True)
    assert code == 0
    report = json.loads(text)
    right = next(camera for camera in report["cameras"] if camera["camera"] == "cam_right")
    assert right["missing_trigger_indices"] == [3, 4, 17]
    assert right["trigger_indices_contiguous"] is False
    left = next(camera for camera in report["cameras"] if camera["camera"] == "cam_left")
    assert left["missing_trigger_indices"] == [] and left["trigger_indices_contiguous"]
    code, text, _ = recover(path, mark=False)
    assert code == 0
    assert "3 pulses without a frame (3, 4, 17)" in text


def test_a_file_that_is_not_a_trial_fails_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("not HDF5")
    code, text, errors = recover(path)
    assert code == 1
    assert str(path) in errors and "not an HDF5 file" in errors
    assert text == ""


def test_verifying_a_crashed_file_leaves_its_pulses_readable(tmp_path: Path) -> None:
    # Without pose streams the pulses are the last dataset in the file: the one HDF5 read wrongly
    # after verify() when two handles of it were open and one was refreshed.
    path = crashed_trial_file(tmp_path / "crashed.h5", flushed=30, unflushed=1, with_streams=False)
    synthetic = SyntheticTrial(seed=7, block_count=31)
    with open_trial(path) as trial:
        assert trial.opened_in_swmr_mode
        problems = trial.verify()
        pulses = trial.trigger_sample_index()
        assert problems == ["the file was not closed cleanly: trust the committed rows"]
        np.testing.assert_array_equal(pulses, synthetic.pulses[: pulses.size])
        assert pulses.size > 64  # more than one chunk
        columns = trial.frame_table("cam_left")
        np.testing.assert_array_equal(
            columns["daq_sample_index"], synthetic.pulses[: columns["daq_sample_index"].size]
        )
    assert recover(path)[0] == 0


# Opens a trial file to write outside SWMR mode (as finishing it does) and dies by SIGKILL.
DIES_WHILE_FILE_OPEN = """
import os, signal, sys
import h5py
h5file = h5py.File(sys.argv[1], "r+", libver="latest")
h5file.attrs["note"] = "being finished"
h5file.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_file_left_open_outside_swmr_is_unmarked_and_recovered(tmp_path: Path) -> None:
    path = tmp_path / "left_open.h5"
    synthetic = SyntheticTrial(seed=9, block_count=3)
    writer = create_writer(path)
    for block in range(3):
        synthetic.write_block(writer, block)
    writer.close()  # everything committed, never finalized
    child = subprocess.run(
        [sys.executable, "-c", DIES_WHILE_FILE_OPEN, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -9, child.stderr
    with pytest.raises(TrialFileError, match="already open for write"):
        open_trial(path)
    code, _, errors = recover(path, mark=False)
    assert code == 1 and "already open for write" in errors  # a dry run changes nothing
    code, text, errors = recover(path)
    assert code == 0, errors
    assert "cleared HDF5's 'open for writing' mark" in errors
    assert "marked incomplete" in text
    with open_trial(path) as trial:
        np.testing.assert_array_equal(trial.frames("cam_left"), synthetic.frames["cam_left"])
        assert trial.attrs[ATTR_INCOMPLETE] == 1
