"""Writes one trial file: crash-safe HDF5 with committed counters that readers trust.

The life of a file (docs/format.md has the layout and the reasons):

1. :meth:`TrialFileWriter.create` makes every group, dataset and attribute the trial will need,
   then switches the file to SWMR (single writer, multiple readers): from then on nothing may be
   created, only appended, and readers can open the file while it is written.
2. Frames arrive already compressed and checksummed (:mod:`acquisition.frame_codec`) and go to
   disk at once with ``write_direct_chunk``; per-frame columns, DAQ samples and other rows are
   buffered and written at each :meth:`~TrialFileWriter.flush`, in whole chunks only, so a chunk
   that holds committed rows is never rewritten while the file is live.
3. :meth:`~TrialFileWriter.flush` writes what is buffered, flushes HDF5, and only then advances the
   committed counters (``/commit/committed_rows``, two slots written in turn) and flushes again,
   so a counter never claims a row that is not on disk. A file cut off at any moment (SIGKILL,
   power) holds the rows the counters claim.
4. :meth:`~TrialFileWriter.finalize` leaves SWMR, trims every dataset to its committed rows and
   writes the closing attributes (``closed_cleanly``, ``end_reason``, ``closed_utc``, drop counts,
   extra datasets such as ground truth).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from acquisition.frame_codec import chunk_frame_nbytes, frame_dataset_options
from rig.trialfile import layout

_EMPTY_MAPPING: Mapping[str, Any] = MappingProxyType({})

# Measured (docs/format.md): resizing the frames dataset before every frame gave ~2,900 frames/s,
# growing it 16-64 frames at a time ~9,400 frames/s. Readers trust the counters, not the extent.
FRAME_GROWTH_ROWS = 64
# While the file is live, rows are written (and committed) only in whole chunks: rewriting a chunk
# that holds committed rows is not crash-safe (a SIGKILL can tear the rewrite, and the chunk's
# checksum then fails for the committed rows too; measured, docs/format.md). Small chunks keep the
# committed rows close behind the appended ones.
# Per-frame columns: 64 int64 rows (512 B), 0.13 s of a camera at 500 fps.
FRAME_COLUMN_CHUNK_ROWS = 64
PULSE_CHUNK_ROWS = 64
# DAQ chunks hold about this long a stretch of samples (a power of two of samples).
DAQ_CHUNK_DURATION_S = 0.1
DAQ_CHUNK_ROWS_MIN = 64
DAQ_CHUNK_ROWS_MAX = 16384
STREAM_CHUNK_BYTES = 8 * 1024
# A frame whose trigger pulse has not arrived this long after the frame is written with
# daq_sample_index -1 (filled in at finalize if the pulse comes later); until then it waits,
# because its row may not be rewritten once written.
PULSE_WAIT_NS = 2_000_000_000
# Buffered rows are written (not yet committed) once a buffer holds this much, so a caller that
# flushes rarely cannot make the writer hoard memory.
MAX_BUFFERED_BYTES = 16 * 1024 * 1024
MAX_BUFFERED_FRAME_ROWS = 64 * 1024


@dataclass(frozen=True)
class CameraLayout:
    """One camera's frames: (N, height, width) uint8."""

    name: str
    height: int
    width: int

    def __post_init__(self) -> None:
        layout.check_camera_name(self.name)
        if int(self.height) < 1 or int(self.width) < 1:
            raise ValueError(f"camera {self.name!r}: frame size {self.height}x{self.width}")


@dataclass(frozen=True)
class DaqLayout:
    """The DAQ's analog channels (one name, unit and kind each) and its recorded trigger line."""

    rate_hz: float
    channel_names: tuple[str, ...]
    channel_units: tuple[str, ...]
    channel_kinds: tuple[str, ...]
    trigger_line_name: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate_hz) or self.rate_hz <= 0:
            raise ValueError(f"DAQ rate_hz must be a positive number, got {self.rate_hz!r}")
        if not self.channel_names:
            raise ValueError("the DAQ needs at least one analog channel")
        if len(set(self.channel_names)) != len(self.channel_names):
            raise ValueError(f"DAQ channel names repeat: {self.channel_names}")
        lengths = {len(self.channel_names), len(self.channel_units), len(self.channel_kinds)}
        if len(lengths) != 1:
            raise ValueError(
                f"DAQ has {len(self.channel_names)} channel names, {len(self.channel_units)} units "
                f"and {len(self.channel_kinds)} kinds; they must match one to one"
            )


@dataclass(frozen=True)
class StreamLayout:
    """An extra appendable dataset (N, *row_shape), e.g. ``/pose2d/cam_left`` rows (10, 3) float32.

    Declared at creation because SWMR forbids creating datasets later.
    """

    path: str
    row_shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        layout.check_dataset_path(self.path)
        if any(int(extent) < 1 for extent in self.row_shape):
            raise ValueError(f"stream {self.path}: row_shape {self.row_shape} must be positive")
        dtype = np.dtype(self.dtype)
        if dtype.kind not in "biuf" or dtype.byteorder == ">":
            raise ValueError(f"stream {self.path}: dtype {self.dtype!r} must be a native number")


class TrialFileWriter:
    """The one writer of one trial file. Not thread-safe: call it from one thread.

    ``close`` is idempotent; after ``finalize`` or ``close`` every other call raises.
    """

    def __init__(
        self,
        path: Path,
        h5file: h5py.File,
        cameras: Sequence[CameraLayout],
        daq: DaqLayout,
        streams: Sequence[StreamLayout],
    ) -> None:
        # Use TrialFileWriter.create: this only wires up datasets that already exist.
        self._path = path
        self._file: h5py.File | None = h5file
        self._finalized = False
        self._cameras = {camera.name: _CameraWriter(h5file, camera) for camera in cameras}
        self._analog = _AppendableDataset(h5file[layout.DAQ_ANALOG])
        self._trigger_line = _AppendableDataset(h5file[layout.DAQ_TRIGGER_LINE])
        self._pulses = _AppendableDataset(h5file[layout.DAQ_TRIGGER_SAMPLE_INDEX])
        self._pulse_sample_indices = _GrowingInt64Array()
        self._samples_appended = 0
        self._streams = {stream.path: _AppendableDataset(h5file[stream.path]) for stream in streams}
        self._stream_layouts = {stream.path: stream for stream in streams}
        self._daq = daq
        self._commit_rows = h5file[layout.COMMITTED_ROWS]
        self._commit_clock = h5file[layout.COMMIT_CLOCK]
        self._committed_paths = _committed_paths(cameras, streams)
        self._committed = dict.fromkeys(self._committed_paths, 0)
        self._flush_count = 0

    # --- creation --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        root_attrs: Mapping[str, Any],
        cameras: Sequence[CameraLayout],
        daq: DaqLayout,
        streams: Sequence[StreamLayout] = (),
        group_attrs: Mapping[str, Mapping[str, Any]] = _EMPTY_MAPPING,
        datasets: Mapping[str, np.ndarray] = _EMPTY_MAPPING,
    ) -> TrialFileWriter:
        """Create the file with every dataset the trial needs, then enter SWMR mode.

        ``group_attrs`` and ``datasets`` add what is known at the start (camera models, the
        calibration); ``group_attrs`` keys may name groups or datasets, missing groups are made.
        Refuses to overwrite an existing file (FileExistsError).
        """
        path = Path(path)
        _check_layouts(cameras, streams)
        _check_root_attrs(root_attrs)
        if path.exists():
            raise FileExistsError(f"{path}: trial file already exists; refusing to overwrite it")
        try:
            h5file = h5py.File(path, "x", libver="latest")
        except FileExistsError:
            raise
        except OSError as error:
            if path.exists():
                raise FileExistsError(f"{path}: trial file already exists") from error
            raise
        try:
            _create_layout(h5file, root_attrs, cameras, daq, streams)
            # Datasets first: attributes may be meant for one of them.
            _create_static_datasets(h5file, datasets)
            _write_group_attrs(h5file, group_attrs)
            h5file.flush()
            h5file.swmr_mode = True
            return cls(path, h5file, cameras, daq, streams)
        except BaseException:
            # The file is ours and half made: leave nothing behind that looks like a trial.
            h5file.close()
            path.unlink(missing_ok=True)
            raise

    # --- appending -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    def append_frame(
        self,
        camera: str,
        chunk: bytes | bytearray | memoryview,
        *,
        frame_id: int,
        trigger_index: int,
        t_host_ns: int,
        t_device_ns: int,
    ) -> None:
        """Store one frame chunk from ``encode_frame_chunk`` at once; its per-frame columns go to
        disk at a flush once its trigger pulse is known (see :class:`_CameraWriter`).

        ``trigger_index`` -1 means unknown (its ``daq_sample_index`` then stays -1).
        """
        self._require_open()
        camera_writer = self._camera(camera)
        if trigger_index < -1:
            raise ValueError(
                f"camera {camera!r}: trigger_index {trigger_index} (use -1 for unknown)"
            )
        daq_sample_index = -1
        if 0 <= trigger_index < len(self._pulse_sample_indices):
            daq_sample_index = int(self._pulse_sample_indices.values[trigger_index])
        camera_writer.append_frame(
            chunk,
            frame_id=int(frame_id),
            trigger_index=int(trigger_index),
            daq_sample_index=daq_sample_index,
            t_host_ns=int(t_host_ns),
            t_device_ns=int(t_device_ns),
        )
        if camera_writer.buffered_rows >= MAX_BUFFERED_FRAME_ROWS:
            camera_writer.write_pending(self._pulse_sample_indices.values, complete=False)

    def append_daq(
        self, analog: np.ndarray, trigger_line: np.ndarray, trigger_sample_indices: np.ndarray
    ) -> None:
        """One contiguous DAQ block: analog (n, C) float32, trigger_line (n,) uint8 and the
        (k,) int64 absolute sample indices of the rising edges found in this block."""
        self._require_open()
        channel_count = len(self._daq.channel_names)
        analog = np.asarray(analog)
        if analog.ndim != 2 or analog.shape[1] != channel_count or analog.dtype.kind != "f":
            raise ValueError(
                f"analog must be (n, {channel_count}) floating point, "
                f"got {analog.dtype} {analog.shape}"
            )
        sample_count = analog.shape[0]
        trigger_line = np.asarray(trigger_line)
        if trigger_line.shape != (sample_count,) or trigger_line.dtype.kind not in "biu":
            raise ValueError(
                f"trigger_line must be ({sample_count},) integers like analog's rows, "
                f"got {trigger_line.dtype} {trigger_line.shape}"
            )
        if sample_count and (trigger_line.min() < 0 or trigger_line.max() > 1):
            raise ValueError("trigger_line must hold 0 and 1 only")
        pulses = np.asarray(trigger_sample_indices)
        if pulses.ndim != 1 or (pulses.size and pulses.dtype.kind not in "iu"):
            raise ValueError(f"trigger_sample_indices must be (k,) integers, got {pulses.shape}")
        pulses = pulses.astype(np.int64)
        first_sample, end_sample = self._samples_appended, self._samples_appended + sample_count
        if pulses.size:
            if pulses[0] < first_sample or pulses[-1] >= end_sample:
                raise ValueError(
                    f"trigger_sample_indices must lie in this block [{first_sample}, {end_sample}),"
                    f" got {pulses[0]}..{pulses[-1]}"
                )
            if np.any(np.diff(pulses) <= 0):
                raise ValueError("trigger_sample_indices must be strictly increasing")
        self._analog.append(np.array(analog, dtype=np.float32, copy=True))
        self._trigger_line.append(np.array(trigger_line, dtype=np.uint8, copy=True))
        if pulses.size:
            self._pulses.append(pulses)
            self._pulse_sample_indices.extend(pulses)
        self._samples_appended = end_sample

    def append_rows(self, path: str, rows: np.ndarray) -> None:
        """Rows (n, *row_shape) for a stream declared at creation; cast to its dtype."""
        self._require_open()
        stream = self._stream_layouts.get(path)
        if stream is None:
            raise KeyError(f"{path!r} is not a declared stream; declared: {sorted(self._streams)}")
        rows = np.asarray(rows)
        if rows.shape[1:] != tuple(stream.row_shape) or rows.ndim != len(stream.row_shape) + 1:
            raise ValueError(
                f"stream {path}: rows must be (n, {', '.join(map(str, stream.row_shape))}), "
                f"got {rows.shape}"
            )
        dtype = np.dtype(stream.dtype)
        if not np.can_cast(rows.dtype, dtype, casting="same_kind"):
            raise ValueError(f"stream {path}: cannot store {rows.dtype} rows as {dtype}")
        self._streams[path].append(np.array(rows, dtype=dtype, copy=True))

    # --- committing ------------------------------------------------------------------------------

    def flush(self, *, complete: bool = False) -> None:
        """Write what is buffered, flush HDF5, then advance the committed counters and flush again.

        The counters are written only after the rows they count are on disk, so a crash at any
        point leaves counters that claim flushed rows only. Rows go to disk in whole chunks, so
        the last partial chunk of each dataset waits for the next flush (and a frame waits for
        its trigger pulse, up to PULSE_WAIT_NS). ``complete=True`` writes and commits those too:
        use it once the trial's data is all in (``close`` and ``finalize`` do), because rows
        appended after it rewrite a committed chunk, which a crash could damage.
        """
        self._require_open()
        h5file = self._h5file()
        pulse_sample_indices = self._pulse_sample_indices.values
        for camera_writer in self._cameras.values():
            camera_writer.write_pending(pulse_sample_indices, complete=complete)
        for appendable in (self._analog, self._trigger_line, self._pulses, *self._streams.values()):
            appendable.write_pending(complete=complete)
        h5file.flush()
        written = self._rows_written()
        counts = np.array([written[path] for path in self._committed_paths], np.int64)
        # Two slots, written in turn: a write torn by a crash spoils only the slot being written,
        # and the other still holds the previous commit (readers take the larger valid counts).
        slot = self._flush_count % 2
        self._commit_rows[slot] = counts
        self._commit_clock[slot] = np.array([self._flush_count + 1, time.monotonic_ns()], np.int64)
        h5file.flush()
        self._flush_count += 1
        self._committed = written

    def frames_committed(self, camera: str) -> int:
        self._camera(camera)
        return self._committed[layout.camera_dataset(camera, layout.FRAMES)]

    def samples_committed(self) -> int:
        return self._committed[layout.DAQ_ANALOG]

    def pulses_committed(self) -> int:
        return self._committed[layout.DAQ_TRIGGER_SAMPLE_INDEX]

    def rows_committed(self, path: str) -> int:
        """Committed rows of any appendable dataset (a stream path or a camera/DAQ dataset)."""
        if path not in self._committed:
            raise KeyError(f"{path!r} is not an appendable dataset of this file")
        return self._committed[path]

    # --- closing ---------------------------------------------------------------------------------

    def finalize(
        self,
        *,
        closed_cleanly: bool,
        end_reason: str,
        root_attrs: Mapping[str, Any] = _EMPTY_MAPPING,
        group_attrs: Mapping[str, Mapping[str, Any]] = _EMPTY_MAPPING,
        datasets: Mapping[str, np.ndarray] = _EMPTY_MAPPING,
    ) -> None:
        """Flush, leave SWMR, trim every dataset to its committed rows and write closing data.

        ``group_attrs`` maps an object path (``"/cameras/cam_left"``, ``"/"``, a dataset) to
        attributes; ``datasets`` maps a new path to its data (e.g. ``"/sim/truth/points"``).
        Root attributes always written: ``closed_cleanly``, ``end_reason`` and ``closed_utc``
        (now, unless ``root_attrs`` gives it).
        Call it once; ``close`` afterwards does nothing.
        """
        self._require_open()
        _check_root_attrs(root_attrs)
        if not isinstance(end_reason, str):
            raise ValueError(f"end_reason must be text, got {type(end_reason).__name__}")
        for path in group_attrs:
            if path in ("/", "") and set(group_attrs[path]) & layout.RESERVED_ROOT_ATTRS:
                raise ValueError(
                    f"root attributes {sorted(layout.RESERVED_ROOT_ATTRS)} are the writer's"
                )
        self.flush(complete=True)
        committed = dict(self._committed)
        pulse_sample_indices = self._pulse_sample_indices.values.copy()
        self._h5file().close()
        self._file = None
        self._finalized = True
        with _reopen_for_update(self._path) as h5file:
            for path, rows in committed.items():
                dataset = h5file[path]
                if dataset.shape[0] != rows:
                    dataset.resize(rows, axis=0)
            for camera_writer in self._cameras.values():
                # Outside SWMR a rewrite is allowed: fill in pulses that came too late.
                camera_writer.fill_late_pulses(h5file, pulse_sample_indices)
            counts = np.array([committed[path] for path in self._committed_paths], np.int64)
            h5file[layout.COMMITTED_ROWS][:] = np.stack([counts, counts])
            clock = np.array([self._flush_count, time.monotonic_ns()], np.int64)
            h5file[layout.COMMIT_CLOCK][:] = np.stack([clock, clock])
            for camera in self._cameras:
                camera_attrs = h5file[layout.camera_group(camera)].attrs
                camera_attrs[layout.ATTR_FRAMES_COMMITTED] = np.int64(
                    committed[layout.camera_dataset(camera, layout.FRAMES)]
                )
            daq_attrs = h5file[layout.DAQ_GROUP].attrs
            daq_attrs[layout.ATTR_SAMPLES_COMMITTED] = np.int64(committed[layout.DAQ_ANALOG])
            daq_attrs[layout.ATTR_PULSES_COMMITTED] = np.int64(
                committed[layout.DAQ_TRIGGER_SAMPLE_INDEX]
            )
            # Datasets first: attributes may be meant for one of them.
            _create_static_datasets(h5file, datasets)
            _write_group_attrs(h5file, group_attrs)
            h5file.attrs[layout.ATTR_CLOSED_UTC] = _utc_now_iso()
            for key, value in root_attrs.items():
                h5file.attrs[key] = _attr_value(key, value)
            h5file.attrs[layout.ATTR_END_REASON] = end_reason
            # Last, so a file that says it closed cleanly has everything above.
            h5file.attrs[layout.ATTR_CLOSED_CLEANLY] = np.uint8(bool(closed_cleanly))

    def close(self) -> None:
        """Flush everything and close without finalizing (``closed_cleanly`` stays 0).

        Safe to call twice; does nothing after ``finalize``.
        """
        if self._file is None:
            return
        try:
            self.flush(complete=True)
        finally:
            h5file, self._file = self._file, None
            h5file.close()

    def __enter__(self) -> TrialFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self._file is None:
            state = "finalized" if self._finalized else "closed"
            raise RuntimeError(f"{self._path}: trial file writer is already {state}")

    def _h5file(self) -> h5py.File:
        if self._file is None:
            self._require_open()  # raises, naming the state
            raise RuntimeError(f"{self._path}: trial file writer is closed")
        return self._file

    def _camera(self, camera: str) -> _CameraWriter:
        try:
            return self._cameras[camera]
        except KeyError:
            raise KeyError(f"unknown camera {camera!r}; cameras: {sorted(self._cameras)}") from None

    def _rows_written(self) -> dict[str, int]:
        """Rows each appendable dataset may claim now: written, and consistent across datasets."""
        written: dict[str, int] = {}
        for name, camera_writer in self._cameras.items():
            rows = camera_writer.rows_written
            for dataset in layout.CAMERA_DATASETS:
                written[layout.camera_dataset(name, dataset)] = rows
        samples = min(self._analog.rows_written, self._trigger_line.rows_written)
        written[layout.DAQ_ANALOG] = samples
        written[layout.DAQ_TRIGGER_LINE] = samples
        # Claim only pulses inside the claimed samples, so every committed pulse can be looked up.
        pulses_in_samples = int(
            np.searchsorted(self._pulse_sample_indices.values, samples, side="left")
        )
        written[layout.DAQ_TRIGGER_SAMPLE_INDEX] = min(self._pulses.rows_written, pulses_in_samples)
        for path, appendable in self._streams.items():
            written[path] = appendable.rows_written
        return written


# --- appendable datasets -------------------------------------------------------------------------


class _AppendableDataset:
    """Rows buffered in memory, written in batches, the dataset grown a chunk multiple at a time."""

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.rows_written = 0
        self._pending: list[np.ndarray] = []
        self._pending_bytes = 0
        self.chunk_rows = int(dataset.chunks[0])

    def append(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        self._pending.append(rows)
        self._pending_bytes += rows.nbytes
        if self._pending_bytes >= MAX_BUFFERED_BYTES:
            self.write_pending(complete=False)

    def write_pending(self, *, complete: bool) -> None:
        """Write the pending rows that fill whole chunks, or all of them if ``complete``."""
        if not self._pending:
            return
        block = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        if complete:
            row_count = len(block)
        else:
            whole_chunk_end = (self.rows_written + len(block)) // self.chunk_rows * self.chunk_rows
            row_count = max(0, whole_chunk_end - self.rows_written)
        self._pending = [block[row_count:]] if row_count < len(block) else []
        self._pending_bytes = sum(rows.nbytes for rows in self._pending)
        if row_count == 0:
            return
        end_row = self.rows_written + row_count
        _ensure_rows(self.dataset, end_row)
        self.dataset[self.rows_written : end_row] = block[:row_count]
        self.rows_written = end_row


def _ensure_rows(dataset: h5py.Dataset, rows: int) -> None:
    """Grow the dataset's first axis to at least ``rows``, a whole number of chunks at a time."""
    if rows > dataset.shape[0]:
        chunk_rows = int(dataset.chunks[0])
        dataset.resize(math.ceil(rows / chunk_rows) * chunk_rows, axis=0)


class _GrowingInt64Array:
    """An int64 array that grows by doubling: trigger pulse sample indices kept in memory."""

    def __init__(self) -> None:
        self._storage = np.empty(1024, dtype=np.int64)
        self._length = 0

    def __len__(self) -> int:
        return self._length

    @property
    def values(self) -> np.ndarray:
        return self._storage[: self._length]

    def extend(self, values: np.ndarray) -> None:
        needed = self._length + len(values)
        if needed > len(self._storage):
            grown = np.empty(max(needed, 2 * len(self._storage)), dtype=np.int64)
            grown[: self._length] = self._storage[: self._length]
            self._storage = grown
        self._storage[self._length : needed] = values
        self._length = needed


class _CameraWriter:
    """One camera's frames (written at once) and per-frame columns (written in whole chunks).

    A frame's ``daq_sample_index`` is the sample of its trigger pulse. Frames usually arrive
    before the DAQ block that holds their pulse, and a column row may not be rewritten once
    written (see FRAME_COLUMN_CHUNK_ROWS), so a row waits in memory until its pulse is known or
    PULSE_WAIT_NS has passed; then it is written with -1 and filled in at finalize if the pulse
    came later. A frame whose pulse never comes keeps -1.
    """

    def __init__(self, h5file: h5py.File, camera: CameraLayout) -> None:
        self.name = camera.name
        self.frame_bytes = camera.height * camera.width
        self.frames = h5file[layout.camera_dataset(camera.name, layout.FRAMES)]
        self.frames_written = 0
        self.columns = {
            column: h5file[layout.camera_dataset(camera.name, column)]
            for column in layout.FRAME_COLUMNS
        }
        self.chunk_rows = int(self.columns[layout.FRAME_ID].chunks[0])
        self.columns_written = 0
        # Rows [columns_written, frames_written), one list per column.
        self._buffered: dict[str, list[int]] = {column: [] for column in layout.FRAME_COLUMNS}
        # Buffered rows still waiting for their pulse: row, trigger index, when appended.
        self._waiting_rows: list[int] = []
        self._waiting_trigger_indices: list[int] = []
        self._waiting_since_ns: list[int] = []
        # Rows written with daq_sample_index -1 whose pulse may still come: row, trigger index.
        self._late_rows: list[int] = []
        self._late_trigger_indices: list[int] = []

    @property
    def buffered_rows(self) -> int:
        return self.frames_written - self.columns_written

    @property
    def rows_written(self) -> int:
        return min(self.frames_written, self.columns_written)

    def append_frame(
        self,
        chunk: bytes | bytearray | memoryview,
        *,
        frame_id: int,
        trigger_index: int,
        daq_sample_index: int,
        t_host_ns: int,
        t_device_ns: int,
    ) -> None:
        frame_bytes = chunk_frame_nbytes(chunk)
        if frame_bytes != self.frame_bytes:
            raise ValueError(
                f"camera {self.name!r}: chunk holds a {frame_bytes}-byte frame, "
                f"the camera's frames have {self.frame_bytes} bytes"
            )
        row = self.frames_written
        if row >= self.frames.shape[0]:
            self.frames.resize(row + FRAME_GROWTH_ROWS, axis=0)
        self.frames.id.write_direct_chunk((row, 0, 0), chunk)
        self.frames_written = row + 1
        buffered = self._buffered
        buffered[layout.FRAME_ID].append(frame_id)
        buffered[layout.TRIGGER_INDEX].append(trigger_index)
        buffered[layout.DAQ_SAMPLE_INDEX].append(daq_sample_index)
        buffered[layout.T_HOST_NS].append(t_host_ns)
        buffered[layout.T_DEVICE_NS].append(t_device_ns)
        if daq_sample_index < 0 <= trigger_index:
            self._waiting_rows.append(row)
            self._waiting_trigger_indices.append(trigger_index)
            self._waiting_since_ns.append(time.monotonic_ns())

    def write_pending(self, pulse_sample_indices: np.ndarray, *, complete: bool) -> None:
        """Write the buffered rows that are ready, in whole chunks (all of them if complete)."""
        first_row = self.columns_written
        daq_sample_index = self._buffered[layout.DAQ_SAMPLE_INDEX]
        give_up_before_ns = time.monotonic_ns() - PULSE_WAIT_NS
        still_waiting: tuple[list[int], list[int], list[int]] = ([], [], [])
        for row, trigger_index, since_ns in zip(
            self._waiting_rows, self._waiting_trigger_indices, self._waiting_since_ns, strict=True
        ):
            if trigger_index < len(pulse_sample_indices):
                daq_sample_index[row - first_row] = int(pulse_sample_indices[trigger_index])
            elif complete or since_ns < give_up_before_ns:
                self._late_rows.append(row)
                self._late_trigger_indices.append(trigger_index)
            else:
                still_waiting[0].append(row)
                still_waiting[1].append(trigger_index)
                still_waiting[2].append(since_ns)
        self._waiting_rows, self._waiting_trigger_indices, self._waiting_since_ns = still_waiting
        ready_end = self._waiting_rows[0] if self._waiting_rows else self.frames_written
        if not complete:
            ready_end = first_row + (ready_end - first_row) // self.chunk_rows * self.chunk_rows
        row_count = ready_end - first_row
        if row_count <= 0:
            return
        for column, dataset in self.columns.items():
            _ensure_rows(dataset, ready_end)
            dataset[first_row:ready_end] = np.asarray(self._buffered[column][:row_count], np.int64)
            del self._buffered[column][:row_count]
        self.columns_written = ready_end

    def fill_late_pulses(self, h5file: h5py.File, pulse_sample_indices: np.ndarray) -> None:
        """At finalize, outside SWMR: daq_sample_index of rows whose pulse came too late."""
        if not self._late_rows:
            return
        rows = np.asarray(self._late_rows, dtype=np.int64)
        trigger_indices = np.asarray(self._late_trigger_indices, dtype=np.int64)
        known = (trigger_indices < len(pulse_sample_indices)) & (rows < self.rows_written)
        dataset = h5file[layout.camera_dataset(self.name, layout.DAQ_SAMPLE_INDEX)]
        _write_rows_in_place(dataset, rows[known], pulse_sample_indices[trigger_indices[known]])


def _write_rows_in_place(dataset: h5py.Dataset, rows: np.ndarray, values: np.ndarray) -> None:
    """dataset[rows] = values, one slice write per run of consecutive rows."""
    if rows.size == 0:
        return
    order = np.argsort(rows, kind="stable")
    rows, values = rows[order], values[order]
    run_starts = np.flatnonzero(np.diff(rows) != 1) + 1
    for row_run, value_run in zip(
        np.split(rows, run_starts), np.split(values, run_starts), strict=True
    ):
        dataset[int(row_run[0]) : int(row_run[-1]) + 1] = value_run


# --- layout creation -----------------------------------------------------------------------------


def _committed_paths(cameras: Sequence[CameraLayout], streams: Sequence[StreamLayout]) -> list[str]:
    """Every appendable dataset, in the order of ``/commit/committed_rows``."""
    paths = [
        layout.camera_dataset(camera.name, dataset)
        for camera in cameras
        for dataset in layout.CAMERA_DATASETS
    ]
    paths += [layout.DAQ_ANALOG, layout.DAQ_TRIGGER_LINE, layout.DAQ_TRIGGER_SAMPLE_INDEX]
    paths += [stream.path for stream in streams]
    return paths


def _check_layouts(cameras: Sequence[CameraLayout], streams: Sequence[StreamLayout]) -> None:
    names = [camera.name for camera in cameras]
    if len(set(names)) != len(names):
        raise ValueError(f"camera names repeat: {names}")
    reserved = set(_committed_paths(cameras, ())) | {layout.COMMITTED_ROWS, layout.COMMIT_CLOCK}
    reserved_prefixes = (
        layout.CAMERAS_GROUP + "/",
        layout.DAQ_GROUP + "/",
        layout.COMMIT_GROUP + "/",
    )
    stream_paths = [stream.path for stream in streams]
    if len(set(stream_paths)) != len(stream_paths):
        raise ValueError(f"stream paths repeat: {stream_paths}")
    for path in stream_paths:
        if path in reserved or path.startswith(reserved_prefixes):
            raise ValueError(f"stream {path} lies inside a group the writer owns")
        for other in stream_paths:
            if other.startswith(path + "/"):
                raise ValueError(f"stream {other} lies inside stream {path}")


def _check_root_attrs(root_attrs: Mapping[str, Any]) -> None:
    clashing = set(root_attrs) & layout.RESERVED_ROOT_ATTRS
    if clashing:
        raise ValueError(
            f"root attributes {sorted(clashing)} are set by the writer, not the caller"
        )


def _create_layout(
    h5file: h5py.File,
    root_attrs: Mapping[str, Any],
    cameras: Sequence[CameraLayout],
    daq: DaqLayout,
    streams: Sequence[StreamLayout],
) -> None:
    h5file.attrs[layout.ATTR_SCHEMA_VERSION] = np.int64(layout.SCHEMA_VERSION)
    h5file.attrs[layout.ATTR_FORMAT] = layout.FILE_FORMAT
    h5file.attrs[layout.ATTR_CLOSED_CLEANLY] = np.uint8(0)
    h5file.attrs[layout.ATTR_END_REASON] = ""
    for key, value in root_attrs.items():
        h5file.attrs[key] = _attr_value(key, value)

    cameras_group = h5file.create_group(layout.CAMERAS_GROUP)
    cameras_group.attrs[layout.ATTR_CAMERA_NAMES] = _text_array([camera.name for camera in cameras])
    for camera in cameras:
        group = h5file.create_group(layout.camera_group(camera.name))
        group.attrs[layout.ATTR_HEIGHT] = np.int64(camera.height)
        group.attrs[layout.ATTR_WIDTH] = np.int64(camera.width)
        group.create_dataset(layout.FRAMES, **frame_dataset_options(camera.height, camera.width))
        for column in layout.FRAME_COLUMNS:
            group.create_dataset(column, **_column_options(FRAME_COLUMN_CHUNK_ROWS, (), np.int64))

    daq_group = h5file.create_group(layout.DAQ_GROUP)
    daq_group.attrs[layout.ATTR_RATE_HZ] = np.float64(daq.rate_hz)
    channel_count = len(daq.channel_names)
    daq_chunk_rows = _daq_chunk_rows(daq.rate_hz)
    analog = h5file.create_dataset(
        layout.DAQ_ANALOG, **_column_options(daq_chunk_rows, (channel_count,), np.float32)
    )
    analog.attrs[layout.ATTR_RATE_HZ] = np.float64(daq.rate_hz)
    analog.attrs[layout.ATTR_CHANNEL_NAMES] = _text_array(daq.channel_names)
    analog.attrs[layout.ATTR_UNITS] = _text_array(daq.channel_units)
    analog.attrs[layout.ATTR_KINDS] = _text_array(daq.channel_kinds)
    trigger_line = h5file.create_dataset(
        layout.DAQ_TRIGGER_LINE,
        **_column_options(daq_chunk_rows, (), np.uint8),
        **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE),
    )
    trigger_line.attrs[layout.ATTR_LINE_NAME] = daq.trigger_line_name
    trigger_line.attrs[layout.ATTR_RATE_HZ] = np.float64(daq.rate_hz)
    h5file.create_dataset(
        layout.DAQ_TRIGGER_SAMPLE_INDEX, **_column_options(PULSE_CHUNK_ROWS, (), np.int64)
    )

    for stream in streams:
        dtype = np.dtype(stream.dtype)
        row_bytes = dtype.itemsize * math.prod(stream.row_shape)
        chunk_rows = int(min(4096, max(16, STREAM_CHUNK_BYTES // row_bytes)))
        try:
            h5file.create_dataset(
                stream.path, **_column_options(chunk_rows, tuple(stream.row_shape), dtype)
            )
        except ValueError as error:
            raise ValueError(f"stream {stream.path}: cannot create it ({error})") from error

    paths = _committed_paths(cameras, streams)
    commit_group = h5file.create_group(layout.COMMIT_GROUP)
    del commit_group  # the datasets below carry the meaning; the group has no attributes
    # Two slots (rows), each its own chunk, written in turn by successive flushes.
    committed_rows = h5file.create_dataset(
        layout.COMMITTED_ROWS,
        data=np.zeros((2, len(paths)), dtype=np.int64),
        chunks=(1, len(paths)),
        maxshape=(2, len(paths)),
        fletcher32=True,
    )
    committed_rows.attrs[layout.ATTR_COMMITTED_DATASETS] = _text_array(paths)
    h5file.create_dataset(
        layout.COMMIT_CLOCK,
        data=np.zeros((2, 2), dtype=np.int64),
        chunks=(1, 2),
        maxshape=(2, 2),
        fletcher32=True,
    )


def _daq_chunk_rows(rate_hz: float) -> int:
    """A power of two of samples lasting about DAQ_CHUNK_DURATION_S, within the limits."""
    rows = 2 ** round(math.log2(max(1.0, rate_hz * DAQ_CHUNK_DURATION_S)))
    return int(min(DAQ_CHUNK_ROWS_MAX, max(DAQ_CHUNK_ROWS_MIN, rows)))


def _column_options(chunk_rows: int, row_shape: tuple[int, ...], dtype: Any) -> dict[str, Any]:
    """An appendable (0, *row_shape) dataset with fletcher32 and a fill value that means 'none'."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        fill: Any = np.nan
    elif dtype.kind == "i":
        fill = -1
    else:
        fill = 0
    return {
        "shape": (0, *row_shape),
        "maxshape": (None, *row_shape),
        "chunks": (chunk_rows, *row_shape),
        "dtype": dtype,
        "fillvalue": fill,
        "fletcher32": True,
    }


def _write_group_attrs(h5file: h5py.File, group_attrs: Mapping[str, Mapping[str, Any]]) -> None:
    for path, attrs in group_attrs.items():
        target_path = path or "/"
        if target_path != "/":
            layout.check_dataset_path(target_path)
        target = h5file[target_path] if target_path in h5file else h5file.create_group(target_path)
        for key, value in attrs.items():
            target.attrs[key] = _attr_value(key, value)


def _create_static_datasets(h5file: h5py.File, datasets: Mapping[str, np.ndarray]) -> None:
    for path, data in datasets.items():
        layout.check_dataset_path(path)
        if path in h5file:
            raise ValueError(f"dataset {path} already exists in the trial file")
        array = np.asarray(data)
        if array.dtype.kind == "U" or array.dtype == object:
            # HDF5 has no fixed-width unicode: store variable-length UTF-8 text.
            h5file.create_dataset(path, data=array.astype(str).astype(h5py.string_dtype()))
        elif array.size and array.ndim and _fixed_size(array.dtype):
            h5file.create_dataset(path, data=array, fletcher32=True, chunks=True)
        else:
            h5file.create_dataset(path, data=array)


def _fixed_size(dtype: np.dtype) -> bool:
    """Numbers, fixed-length bytes, and tables (compound) made only of those: checksummable."""
    if dtype.names is not None:
        return all(_fixed_size(dtype[name]) for name in dtype.names)
    return dtype.kind in "biufcS"


def _attr_value(key: str, value: Any) -> Any:
    """A Python value as an attribute MATLAB and h5py both read back plainly.

    bool -> uint8 0/1; str -> UTF-8 text; int/float -> int64/float64; a sequence of str -> text
    array; a mapping -> JSON text; numbers and arrays as they are.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"attribute name {key!r} must be non-empty text")
    if isinstance(value, bool | np.bool_):
        return np.uint8(bool(value))
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, int | np.integer):
        return np.int64(value)
    if isinstance(value, float | np.floating):
        return np.float64(value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US" or value.dtype == object:
            return _text_array([str(item) for item in value.ravel()])
        if value.dtype == np.bool_:
            return value.astype(np.uint8)
        return value
    if isinstance(value, list | tuple):
        if all(isinstance(item, str) for item in value) and value:
            return _text_array(value)
        array = np.asarray(value)
        if array.dtype.kind in "biuf":
            return array.astype(np.uint8) if array.dtype == np.bool_ else array
    raise ValueError(
        f"attribute {key!r}: cannot store a {type(value).__name__} as an HDF5 attribute"
    )


def _text_array(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=h5py.string_dtype())


def _reopen_for_update(path: Path) -> h5py.File:
    """The finished file opened read-write without SWMR; unlocked if a reader's lock refuses.

    A SWMR reader (a live viewer) holds a file lock that would otherwise stop the writer from
    finishing the trial; finishing the file matters more than that reader's view of it.
    """
    try:
        return h5py.File(path, "r+", libver="latest")
    except OSError as error:
        if "lock" not in str(error).lower():
            raise
        return h5py.File(path, "r+", libver="latest", locking=False)


def _utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
