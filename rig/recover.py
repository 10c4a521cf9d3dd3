"""``rig recover FILE``: what a trial file still holds after a crash, and a mark that says so.

A trial whose recording process was killed (``kill -9``, a power cut, a full disk) leaves a file
that was never closed: ``closed_cleanly`` is 0, its ``end_reason`` is empty, and HDF5 still marks
it as open for writing, so some tools refuse to open it. The committed counters say what in it is
trustworthy (docs/format.md). This command

1. opens the file the way the rig's reader does, reads every committed row (checksums included)
   and reports per camera the committed frames, whether their frame ids and trigger indices run
   without gaps, the trigger pulses and DAQ samples, and how much may have been lost: whatever
   came after the last commit, at most one flush interval plus the rows waiting to fill a chunk;
2. marks a file that was not closed cleanly as incomplete, in the file itself: root attributes
   ``incomplete`` = 1, ``recovered_utc``, ``recovery`` (the report as JSON text) and, when the
   file has none, an ``end_reason``. It clears HDF5's "open for writing" mark (as HDF5's
   ``h5clear -s`` does) so every HDF5 tool opens the file. No dataset is touched: the rows beyond
   the counters stay where they are, and ``closed_cleanly`` stays 0.

A file that was closed cleanly is reported and left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import tomllib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from rig.config import TrialConfig
from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, TrialFileError, _hdf5_library, open_trial
from rig.trialfile.writer import DAQ_CHUNK_DURATION_S, FRAME_COLUMN_CHUNK_ROWS

EXIT_OK = 0
EXIT_FAILED = 1

ATTR_INCOMPLETE = "incomplete"
ATTR_RECOVERED_UTC = "recovered_utc"
ATTR_RECOVERY = "recovery"
RECOVERED_END_REASON = "recovered after the recording process ended without closing the file"
# Trigger indices shown per camera where frames are missing; the rest are counted.
SHOWN_GAPS = 8


@dataclass(frozen=True)
class CameraContents:
    """One camera's committed frames."""

    camera: str
    frames: int
    first_trigger_index: int | None
    last_trigger_index: int | None
    frame_ids_contiguous: bool
    trigger_indices_contiguous: bool
    # Pulses between the first and last frame that have no frame (dropped or lost), sorted.
    missing_trigger_indices: tuple[int, ...]
    # Frames whose pulse lies beyond the committed pulses (the DAQ's last rows were not committed).
    frames_beyond_committed_pulses: int


@dataclass(frozen=True)
class TrialContents:
    """What a trial file holds, by its committed counters, and what may have been lost."""

    path: str
    trial_id: str
    closed_cleanly: bool
    end_reason: str
    already_marked: bool
    cameras: tuple[CameraContents, ...]
    pulses: int
    pulse_spacing_samples: tuple[int, int] | None  # (min, max)
    daq_samples: int
    daq_rate_hz: float
    commits: int
    # Host time from the newest committed frame's t_host_ns to the last commit (None: no frame).
    last_commit_after_newest_frame_s: float | None
    flush_interval_s: float
    # Rows a crash may also lose per dataset, waiting to fill a chunk (docs/format.md).
    chunk_frames: int
    chunk_seconds_of_daq: float
    problems: tuple[str, ...]

    @property
    def daq_seconds(self) -> float | None:
        return self.daq_samples / self.daq_rate_hz if self.daq_rate_hz > 0 else None

    def as_dict(self) -> dict[str, Any]:
        report = asdict(self)
        report["daq_seconds"] = self.daq_seconds
        return report


def add_recover_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rig recover``; the handler is :func:`recover_command`."""
    parser.add_argument("file", type=Path, help="the trial file (.h5)")
    parser.add_argument(
        "--dry-run", action="store_true", help="report what the file holds; change nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def recover_command(args: argparse.Namespace, stream: TextIO, error_stream: TextIO) -> int:
    """``rig recover`` with the arguments of :func:`add_recover_arguments`."""
    return recover_main(
        args.file, stream, error_stream, mark=not args.dry_run, as_json=bool(args.json)
    )


def recover_main(
    path: Path,
    stream: TextIO,
    error_stream: TextIO,
    *,
    mark: bool = True,
    as_json: bool = False,
) -> int:
    """Report what the trial file at ``path`` holds and, with ``mark``, mark it incomplete if it
    was not closed cleanly. Returns 0, or 1 when the file cannot be read, a committed row is
    damaged, or the mark cannot be written (the reason goes to ``error_stream``)."""
    path = Path(path)
    try:
        contents = read_trial_contents(path)
    except TrialFileError as error:
        if not (mark and "already open for write" in str(error)):
            error_stream.write(f"rig: {error}\n")
            return EXIT_FAILED
        # Left marked "open for writing" outside SWMR mode (a crash while the file was open to
        # finish or mark it): readers refuse it. Clearing the mark changes no data.
        try:
            with _open_clearing_write_mark(path):
                pass
            contents = read_trial_contents(path)
        except (OSError, RuntimeError, TrialFileError) as retry_error:
            error_stream.write(f"rig: {error}; clearing the mark failed: {retry_error}\n")
            return EXIT_FAILED
        error_stream.write(
            f"rig: {path}: cleared HDF5's 'open for writing' mark (no data changed)\n"
        )
    marked: dict[str, Any] = {}
    if mark and not contents.closed_cleanly and not contents.already_marked:
        try:
            marked = mark_incomplete(path, contents)
        except (OSError, RuntimeError) as error:
            error_stream.write(
                f"rig: {path}: cannot mark the file incomplete: {error} (is the disk full or "
                "the file read-only? the data is unchanged; free space and run this again)\n"
            )
            _print_contents(contents, {}, stream, as_json)
            return EXIT_FAILED
    _print_contents(contents, marked, stream, as_json)
    if contents.problems:
        error_stream.write(
            f"rig: {path}: {len(contents.problems)} problem(s) with the committed data\n"
        )
        return EXIT_FAILED
    return EXIT_OK


def read_trial_contents(path: Path) -> TrialContents:
    """Open the trial file, read every committed row, and say what it holds."""
    with open_trial(path) as trial:
        problems = [
            problem
            for problem in trial.verify()
            if not problem.startswith("the file was not closed cleanly") and not _is_note(problem)
        ]
        pulses = trial.trigger_sample_index()
        cameras = tuple(
            _camera_contents(trial, camera, len(pulses)) for camera in trial.camera_names
        )
        spacing = np.diff(pulses)
        commit_clock = trial.read(layout.COMMIT_CLOCK)
        newest_slot = int(np.argmax(commit_clock[:, 0]))
        commits = int(commit_clock[newest_slot, 0])
        last_commit_ns = int(commit_clock[newest_slot, 1])
        newest_frame_ns = max(
            (
                int(t.max())
                for t in (
                    trial.read(layout.camera_dataset(camera, layout.T_HOST_NS))
                    for camera in trial.camera_names
                )
                if t.size
            ),
            default=None,
        )
        return TrialContents(
            path=str(path),
            trial_id=str(trial.attrs.get(layout.ATTR_TRIAL_ID, path.stem)),
            closed_cleanly=trial.closed_cleanly,
            end_reason=trial.end_reason,
            already_marked=ATTR_RECOVERED_UTC in trial.attrs,
            cameras=cameras,
            pulses=len(pulses),
            pulse_spacing_samples=(int(spacing.min()), int(spacing.max()))
            if spacing.size
            else None,
            daq_samples=trial.committed_rows(layout.DAQ_ANALOG) or 0,
            daq_rate_hz=trial.daq_rate_hz,
            commits=commits,
            last_commit_after_newest_frame_s=(
                (last_commit_ns - newest_frame_ns) * 1e-9
                if newest_frame_ns is not None and commits
                else None
            ),
            flush_interval_s=_flush_interval_s(trial),
            chunk_frames=FRAME_COLUMN_CHUNK_ROWS,
            chunk_seconds_of_daq=DAQ_CHUNK_DURATION_S,
            problems=tuple(problems),
        )


def mark_unfinished(path: Path, end_reason: str) -> None:
    """Mark a trial file whose writer died as incomplete, with ``end_reason``, reading none of
    its data (quick: the rig does it right after such a trial). ``rig recover`` later adds its
    report. Raises OSError or RuntimeError when the file cannot be written (a full disk)."""
    with _open_clearing_write_mark(path) as h5file:
        h5file.attrs[ATTR_INCOMPLETE] = np.uint8(1)
        h5file.attrs[layout.ATTR_END_REASON] = end_reason


def mark_incomplete(path: Path, contents: TrialContents) -> dict[str, Any]:
    """Write the recovery attributes on the file's root; returns what was written.

    Only root attributes change; HDF5's "open for writing" mark of the crashed writer is cleared
    on the way (it would refuse a normal open otherwise)."""
    attrs: dict[str, Any] = {
        ATTR_INCOMPLETE: np.uint8(1),
        ATTR_RECOVERED_UTC: dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        ATTR_RECOVERY: json.dumps(contents.as_dict(), sort_keys=True),
    }
    if not contents.end_reason:
        attrs[layout.ATTR_END_REASON] = RECOVERED_END_REASON
    with _open_clearing_write_mark(path) as h5file:
        for key, value in attrs.items():
            h5file.attrs[key] = value
    return {
        key: (int(value) if isinstance(value, np.integer) else value)
        for key, value in attrs.items()
    }


# --- internals -----------------------------------------------------------------------------------


def _camera_contents(trial: TrialFile, camera: str, pulse_count: int) -> CameraContents:
    table = trial.frame_table(camera)
    trigger_index = table[layout.TRIGGER_INDEX]
    known = trigger_index[trigger_index >= 0]
    missing: np.ndarray = np.zeros(0, dtype=np.int64)
    if known.size:
        expected = np.arange(int(known.min()), int(known.max()) + 1, dtype=np.int64)
        missing = np.setdiff1d(expected, known)
    return CameraContents(
        camera=camera,
        frames=int(trigger_index.size),
        first_trigger_index=int(known.min()) if known.size else None,
        last_trigger_index=int(known.max()) if known.size else None,
        frame_ids_contiguous=bool(np.all(np.diff(table[layout.FRAME_ID]) == 1)),
        trigger_indices_contiguous=bool(np.all(np.diff(trigger_index) == 1)),
        missing_trigger_indices=tuple(int(i) for i in missing),
        frames_beyond_committed_pulses=int((trigger_index >= pulse_count).sum()),
    )


def _is_note(problem: str) -> bool:
    """Findings of ``verify()`` that describe the recording, not damage: gaps in a camera's
    frames (drops, reported per camera) and frames whose pulse came too late to be filled in
    (the writer fills them in at finalize, which a crashed trial never reached)."""
    return ": not contiguous:" in problem or "frames have -1 although their pulse" in problem


def _flush_interval_s(trial: TrialFile) -> float:
    """The flush interval the trial was recorded with (its stored config), else the default."""
    default = TrialConfig().flush_interval_s
    try:
        stored = tomllib.loads(str(trial.attrs.get(layout.ATTR_CONFIG, "")))
        value = float(stored.get("trial", {}).get("flush_interval_s", default))
    except (tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError):
        return default
    return value if math.isfinite(value) and value > 0 else default


@contextlib.contextmanager
def _open_clearing_write_mark(path: Path) -> Iterator[h5py.File]:
    """The file opened read-write, HDF5's "open for writing" status flags cleared."""
    library = _hdf5_library()
    if library is None:
        raise RuntimeError(
            "the HDF5 library h5py uses cannot be reached to clear the file's write mark; "
            "run `h5clear -s` on the file first"
        )
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    # h5clear's way: the file access property "clear_status_flags" (HDF5 has no public function
    # for it, but H5Pset sets a property by name).
    set_property = library.H5Pset
    set_property.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
    set_property.restype = ctypes.c_int
    clear = ctypes.c_bool(True)
    if set_property(access.id, b"clear_status_flags", ctypes.byref(clear)) < 0:
        raise RuntimeError("HDF5 refused the 'clear_status_flags' file access property")
    h5file = h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, fapl=access))
    try:
        yield h5file
    finally:
        h5file.close()


def _print_contents(
    contents: TrialContents, marked: dict[str, Any], stream: TextIO, as_json: bool
) -> None:
    if as_json:
        report = contents.as_dict()
        report["marked"] = marked
        json.dump(report, stream, indent=2)
        stream.write("\n")
        return
    write = stream.write
    if contents.closed_cleanly:
        state = f"closed cleanly ({contents.end_reason})"
    elif contents.already_marked:
        state = f"not closed cleanly, marked incomplete earlier ({contents.end_reason})"
    else:
        reason = f": {contents.end_reason}" if contents.end_reason else ""
        state = f"NOT closed cleanly{reason}"
    write(f"{contents.path}\n  trial {contents.trial_id}: {state}\n")
    write("  committed frames per camera:\n")
    for camera in contents.cameras:
        write(f"    {camera.camera:<12} {camera.frames:>7} frames{_camera_detail(camera)}\n")
    spacing = contents.pulse_spacing_samples
    spacing_text = (
        ""
        if spacing is None
        else f", {spacing[0]} samples apart"
        if spacing[0] == spacing[1]
        else f", {spacing[0]} to {spacing[1]} samples apart"
    )
    seconds = contents.daq_seconds
    write(
        f"  DAQ: {contents.daq_samples} samples"
        + (f" ({seconds:.2f} s at {contents.daq_rate_hz:g} Hz)" if seconds is not None else "")
        + f", {contents.pulses} trigger pulses{spacing_text}\n"
    )
    if not contents.closed_cleanly:
        age = contents.last_commit_after_newest_frame_s
        write(
            f"  commits: {contents.commits}"
            + (
                f"; the last one {age:.2f} s after the newest committed frame was read"
                if age is not None
                else ""
            )
            + "\n"
        )
        write(
            "  lost: only what came after the last commit, at most one flush interval "
            f"({contents.flush_interval_s:g} s) plus rows waiting to fill a chunk (up to "
            f"{contents.chunk_frames} frames per camera, {contents.chunk_seconds_of_daq:g} s of "
            "DAQ samples)\n"
        )
    for problem in contents.problems:
        write(f"  PROBLEM: {problem}\n")
    if marked:
        written = ", ".join(sorted(marked))
        write(f"  marked incomplete: root attributes {written} written; no data changed\n")
    elif not contents.closed_cleanly and not contents.already_marked:
        write("  not marked (dry run)\n")


def _camera_detail(camera: CameraContents) -> str:
    if not camera.frames:
        return ""
    parts = [f", trigger indices {camera.first_trigger_index}..{camera.last_trigger_index}"]
    missing = camera.missing_trigger_indices
    if missing:
        shown = ", ".join(str(i) for i in missing[:SHOWN_GAPS])
        more = ", ..." if len(missing) > SHOWN_GAPS else ""
        parts.append(f", {len(missing)} pulses without a frame ({shown}{more})")
    else:
        parts.append(", no gaps")
    if not camera.frame_ids_contiguous and not missing:
        parts.append(", frame ids not contiguous")
    if camera.frames_beyond_committed_pulses:
        parts.append(f", {camera.frames_beyond_committed_pulses} frames past the committed pulses")
    return "".join(parts)
