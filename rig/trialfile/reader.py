"""Reads trial files, finished, crashed or still being written, trusting the committed counters.

Every failure is a :class:`TrialFileError` that names the file and the dataset (and the rows,
where one chunk is damaged), so a user knows what is wrong without reading HDF5 messages.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc filter the frames are compressed with
import numpy as np

from rig.trialfile import layout

# HDF5 looks for its signature at 0 and at every power of two from 512 on (after a user block).
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FIRST_USER_BLOCK_OFFSET = 512
# What h5py raises for damaged files: OSError for I/O and checksums, KeyError or RuntimeError when
# an object header or heap is damaged.
_HDF5_ERRORS = (OSError, KeyError, RuntimeError)
# Enough of a superblock (any version, 8-byte addresses) to reach its end-of-file address.
_SUPERBLOCK_PREFIX_BYTES = 64
# verify() reads committed data in blocks of about this many bytes, chunk-aligned.
_VERIFY_BLOCK_BYTES = 32 * 1024 * 1024
# verify() lists at most this many damaged chunks per dataset, then counts the rest.
_MAX_REPORTED_CHUNKS = 10


class TrialFileError(Exception):
    """A trial file that cannot be read as one; ``path`` and ``dataset`` say where."""

    def __init__(self, path: Path | str, dataset: str, problem: str) -> None:
        super().__init__(f"{path}: {dataset}: {problem}")
        self.path = str(path)
        self.dataset = dataset
        self.problem = problem


def open_trial(path: Path | str, timeout_s: float = 10.0) -> TrialFile:
    """Open a trial file read-only, finished, crashed or still being written; never hangs.

    Raises TrialFileError for a missing file, a file that is not HDF5, a truncated or damaged
    file, a file from a newer schema version, or one that lacks a required dataset.

    How it avoids hanging: HDF5 calls hold Python's GIL, so no thread can time them out. The
    file's first bytes (signature, superblock, end-of-file address) are therefore checked in
    plain Python in a worker thread under ``timeout_s`` (a stalled file system, a truncated
    file), and HDF5 then opens the file with a bounded number of metadata read retries, so
    damaged metadata fails within milliseconds instead of HDF5's SWMR back-off (which doubles
    its sleep on every one of 100 retries and never returns in practice).
    """
    path = Path(path)
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    outcome: dict[str, BaseException] = {}

    def check_in_worker() -> None:
        try:
            _check_file_bytes(path)
        except BaseException as error:
            outcome["error"] = error

    worker = threading.Thread(target=check_in_worker, name=f"check {path.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TrialFileError(path, "/", f"reading the file did not finish within {timeout_s} s")
    if "error" in outcome:
        raise outcome["error"]
    return _open_and_validate(path)


class TrialFile:
    """One open trial file, read-only. A context manager; ``close`` may be called twice.

    Data methods return committed rows only: what the writer had flushed when the file was
    opened (or at the last :meth:`refresh`, for a file still being written).
    """

    def __init__(self, path: Path, h5file: h5py.File, live: bool) -> None:
        # Use open_trial: it checks the file before building this.
        self.path = path
        self._file = h5file
        self._live = live
        self._committed: dict[str, int] = {}
        # One handle per dataset, reused: refreshing a SWMR dataset while a second handle of it is
        # open makes HDF5 1.14 read other chunks' data through both (measured: the pulses of a
        # crashed trial came back as copies of their first chunk, silently).
        self._datasets: dict[str, h5py.Dataset] = {}
        self.attrs: dict[str, Any] = {key: _plain(value) for key, value in h5file.attrs.items()}
        self.schema_version = int(self.attrs[layout.ATTR_SCHEMA_VERSION])
        self.camera_names: tuple[str, ...] = _camera_names(h5file)
        analog_attrs = h5file[layout.DAQ_ANALOG].attrs
        self.daq_rate_hz = float(analog_attrs.get(layout.ATTR_RATE_HZ, math.nan))
        self.daq_channel_names: tuple[str, ...] = tuple(
            _plain(analog_attrs.get(layout.ATTR_CHANNEL_NAMES, []))
        )
        self.daq_channel_units: tuple[str, ...] = tuple(
            _plain(analog_attrs.get(layout.ATTR_UNITS, []))
        )
        self._read_committed_rows()

    # --- identity --------------------------------------------------------------------------------

    @property
    def closed_cleanly(self) -> bool:
        return bool(self.attrs.get(layout.ATTR_CLOSED_CLEANLY, 0))

    @property
    def end_reason(self) -> str:
        return str(self.attrs.get(layout.ATTR_END_REASON, ""))

    @property
    def opened_in_swmr_mode(self) -> bool:
        """The writer had not closed the file (still writing, or it crashed): opened in SWMR
        mode, so :meth:`refresh` sees rows committed since."""
        return self._live

    def committed_rows(self, path: str) -> int | None:
        """Rows of ``path`` the writer committed, or None for a dataset without a counter."""
        return self._committed.get(_absolute(path))

    def refresh(self) -> None:
        """Re-read the committed counters of a file that is still being written."""
        self._read_committed_rows()

    # --- data ------------------------------------------------------------------------------------

    def frames(self, camera: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed frames ``[start, stop)`` of ``camera``: (n, H, W) uint8."""
        return self.read(layout.camera_dataset(self._camera(camera), layout.FRAMES), start, stop)

    def frame_table(self, camera: str) -> dict[str, np.ndarray]:
        """The committed per-frame columns of ``camera``: each (N,) int64."""
        self._camera(camera)
        return {
            column: self.read(layout.camera_dataset(camera, column))
            for column in layout.FRAME_COLUMNS
        }

    def daq_analog(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Committed analog samples: (S, C) float32 in each channel's units."""
        return self.read(layout.DAQ_ANALOG, start, stop)

    def daq_trigger_line(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The recorded camera trigger line: (S,) uint8, 0 or 1."""
        return self.read(layout.DAQ_TRIGGER_LINE, start, stop)

    def trigger_sample_index(self) -> np.ndarray:
        """DAQ sample index of every committed trigger pulse: (P,) int64."""
        return self.read(layout.DAQ_TRIGGER_SAMPLE_INDEX)

    def read(self, path: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Any dataset; rows ``[start, stop)`` of the committed rows where a counter applies."""
        path = _absolute(path)
        dataset = self._dataset(path)
        if dataset.shape == ():
            return np.asarray(self._read_block(dataset, ()))
        available = self._available_rows(path, dataset)
        stop = available if stop is None else min(max(stop, 0), available)
        start = min(max(start, 0), stop)
        return self._read_rows(dataset, start, stop)

    def raw_frame_chunk(self, camera: str, row: int) -> tuple[int, bytes]:
        """(filter mask, stored bytes) of committed frame ``row`` of ``camera``, as on disk.

        Not checked: the checksum is part of the bytes, so two identical chunks hold identical
        frames, and a damaged one differs. Use :meth:`frames` for checked pixels.
        """
        path = layout.camera_dataset(self._camera(camera), layout.FRAMES)
        dataset = self._dataset(path)
        rows = self._available_rows(path, dataset)
        if not 0 <= row < rows:
            raise IndexError(f"{self.path}: {path}: row {row} outside the {rows} committed rows")
        try:
            filter_mask, chunk = dataset.id.read_direct_chunk((row, 0, 0))
        except _HDF5_ERRORS as error:
            raise self._error(path, f"frame row {row} cannot be read: {error}") from error
        return int(filter_mask), bytes(chunk)

    def copy_object(self, path: str, destination: h5py.Group, name: str) -> None:
        """Copy the group or dataset ``path``, attributes and all, to ``destination[name]`` (an
        open group of another file)."""
        path = _absolute(path)
        source = _open_object(self.path, self._file, path)
        if source is None:
            raise self._error(path, "no such group or dataset in this file")
        try:
            self._file.copy(source, destination, name)
        except _HDF5_ERRORS as error:
            raise self._error(path, f"cannot be copied: {error}") from error

    def dataset_attrs(self, path: str) -> dict[str, Any]:
        """The attributes of dataset ``path`` (bytes decoded to text)."""
        try:
            items = list(self._dataset(path).attrs.items())
        except _HDF5_ERRORS as error:
            raise self._error(path, f"attributes cannot be read: {error}") from error
        return {
            name: value.decode() if isinstance(value, bytes) else value for name, value in items
        }

    def dataset_paths(self) -> list[str]:
        """Absolute paths of every dataset in the file, in HDF5's (alphabetical) order."""
        return [path for path, _ in _iter_datasets(self._file)]

    # --- checks ----------------------------------------------------------------------------------

    def check_readable(self, path: str) -> None:
        """Read every committed row of ``path``; a damaged chunk raises :class:`TrialFileError`
        naming the dataset and its rows, so no damage is found halfway through a long job."""
        path = _absolute(path)
        dataset = self._dataset(path)
        if dataset.shape == ():
            self._read_block(dataset, ())
            return
        rows = self._available_rows(path, dataset)
        chunk_rows = dataset.chunks[0] if dataset.chunks else max(rows, 1)
        row_bytes = max(1, dataset.dtype.itemsize * math.prod(dataset.shape[1:]))
        block_rows = max(1, _VERIFY_BLOCK_BYTES // row_bytes)
        for block_start, block_stop in _chunk_aligned_blocks(0, rows, chunk_rows, block_rows):
            self._read_rows(dataset, block_start, block_stop)

    def verify(self) -> list[str]:
        """Read every chunk and check counters and contiguity; an empty list means no problem."""
        problems: list[str] = []
        if not self.closed_cleanly:
            reason = f" (end_reason {self.end_reason!r})" if self.end_reason else ""
            problems.append(f"the file was not closed cleanly{reason}: trust the committed rows")
        for path in self.dataset_paths():
            problems += self._verify_dataset(path, self._dataset(path))
        problems += self._verify_counters_agree()
        pulses = self._safe_read(layout.DAQ_TRIGGER_SAMPLE_INDEX, problems)
        if pulses is not None:
            problems += _pulse_problems(pulses, self._committed[layout.DAQ_ANALOG])
        for camera in self.camera_names:
            problems += self._verify_camera(camera, pulses)
        return problems

    def summary(self) -> dict[str, Any]:
        """A JSON-serializable overview of the trial (counts, drops, timing, compression)."""
        samples = self._committed[layout.DAQ_ANALOG]
        pulses = self.trigger_sample_index()
        spacing = np.diff(pulses)
        cameras = {
            camera: self._camera_summary(camera, len(pulses)) for camera in self.camera_names
        }
        raw_bytes = sum(camera["frames_raw_bytes"] for camera in cameras.values())
        stored_bytes = sum(camera["frames_stored_bytes"] for camera in cameras.values())
        if samples and self.daq_rate_hz > 0:
            duration_s: float | None = samples / self.daq_rate_hz
        else:
            duration_s = _host_time_span_s(self)
        return {
            "path": str(self.path),
            "file_size_bytes": self.path.stat().st_size,
            "schema_version": self.schema_version,
            "trial_id": _json_value(self.attrs.get(layout.ATTR_TRIAL_ID)),
            "subject": _json_value(self.attrs.get(layout.ATTR_SUBJECT)),
            "started_utc": _json_value(self.attrs.get(layout.ATTR_STARTED_UTC)),
            "closed_utc": _json_value(self.attrs.get(layout.ATTR_CLOSED_UTC)),
            "closed_cleanly": self.closed_cleanly,
            "end_reason": self.end_reason,
            "duration_s": duration_s,
            "cameras": cameras,
            "daq": {
                "samples": samples,
                "seconds": samples / self.daq_rate_hz if self.daq_rate_hz > 0 else None,
                "rate_hz": self.daq_rate_hz,
                "channels": list(self.daq_channel_names),
                "units": list(self.daq_channel_units),
            },
            "pulses": {
                "count": len(pulses),
                "spacing_samples_min": int(spacing.min()) if spacing.size else None,
                "spacing_samples_max": int(spacing.max()) if spacing.size else None,
            },
            "frames_compression_ratio": raw_bytes / stored_bytes if stored_bytes else None,
        }

    # --- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def __enter__(self) -> TrialFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------

    def _error(self, dataset: str, problem: str) -> TrialFileError:
        return TrialFileError(self.path, dataset, problem)

    def _camera(self, camera: str) -> str:
        if camera not in self.camera_names:
            raise KeyError(f"{self.path}: no camera {camera!r}; cameras: {list(self.camera_names)}")
        return camera

    def _dataset(self, path: str) -> h5py.Dataset:
        dataset = self._datasets.get(path)
        if dataset is None:
            dataset = _open_object(self.path, self._file, path)
            if dataset is None:
                raise self._error(path, "no such dataset in this file")
            if not isinstance(dataset, h5py.Dataset):
                raise self._error(path, "is a group, not a dataset")
            self._datasets[path] = dataset
        if self._live:
            try:
                dataset.refresh()
            except _HDF5_ERRORS as error:
                raise self._error(path, f"cannot be refreshed: {error}") from error
        return dataset

    def _read_committed_rows(self) -> None:
        """Counters from the two commit slots: the larger of each among the slots that read.

        The writer writes the slots in turn, so a write torn by a crash spoils at most one slot,
        and every slot that passes its checksum claims only flushed rows.
        """
        try:
            dataset = self._file[layout.COMMITTED_ROWS]
            if self._live:
                dataset.refresh()
            names = _plain(dataset.attrs[layout.ATTR_COMMITTED_DATASETS])
            slot_count = int(dataset.shape[0]) if dataset.ndim == 2 else 0
        except _HDF5_ERRORS as error:
            raise self._error(layout.COMMITTED_ROWS, f"cannot be read: {error}") from error
        if slot_count < 1 or dataset.shape[1] != len(names):
            raise self._error(
                layout.COMMITTED_ROWS,
                f"shape {dataset.shape} does not hold slots of {len(names)} counters, one per "
                "name in its 'datasets' attribute",
            )
        slots = []
        failures = []
        for slot in range(slot_count):
            try:
                slots.append(np.asarray(dataset[slot], dtype=np.int64))
            except _HDF5_ERRORS as error:
                failures.append(f"slot {slot}: {error}")
        if not slots:
            raise self._error(layout.COMMITTED_ROWS, f"no slot can be read: {'; '.join(failures)}")
        counts = np.max(np.stack(slots), axis=0)
        self._committed = {str(name): int(count) for name, count in zip(names, counts, strict=True)}

    def _available_rows(self, path: str, dataset: h5py.Dataset) -> int:
        committed = self._committed.get(path)
        if committed is None:
            return int(dataset.shape[0])
        if committed > dataset.shape[0]:
            raise self._error(
                path, f"counter claims {committed} rows but the dataset holds {dataset.shape[0]}"
            )
        return committed

    def _read_rows(self, dataset: h5py.Dataset, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop); a damaged chunk raises TrialFileError naming its rows."""
        try:
            return self._read_block(dataset, np.s_[start:stop])
        except TrialFileError:
            bad_rows = self._first_damaged_rows(dataset, start, stop)
            if bad_rows is None:
                raise
            first, last = bad_rows
            rows = f"row {first}" if first == last else f"rows {first}..{last}"
            noun = "frame " if dataset.name.endswith("/" + layout.FRAMES) else ""
            raise self._error(
                dataset.name, f"{noun}{rows} cannot be read: checksum failure or damaged chunk"
            ) from None

    def _read_block(self, dataset: h5py.Dataset, selection: Any) -> np.ndarray:
        try:
            return np.asarray(dataset[selection])
        except _HDF5_ERRORS as error:
            raise self._error(dataset.name, f"cannot be read: {error}") from error

    def _first_damaged_rows(
        self, dataset: h5py.Dataset, start: int, stop: int
    ) -> tuple[int, int] | None:
        chunk_rows = dataset.chunks[0] if dataset.chunks else stop - start
        for block_start, block_stop in _chunk_aligned_blocks(start, stop, chunk_rows, chunk_rows):
            try:
                dataset[block_start:block_stop]
            except _HDF5_ERRORS:
                return block_start, block_stop - 1
        return None

    def _safe_read(self, path: str, problems: list[str]) -> np.ndarray | None:
        try:
            return self.read(path)
        except TrialFileError as error:
            problems.append(str(error))
            return None

    def _verify_dataset(self, path: str, dataset: h5py.Dataset) -> list[str]:
        problems: list[str] = []
        if dataset.shape == () or dataset.shape[0] == 0:
            return problems
        committed = self._committed.get(path)
        rows = int(dataset.shape[0])
        if committed is not None:
            if committed > rows:
                return [f"{path}: counter claims {committed} rows but the dataset holds {rows}"]
            if self.closed_cleanly and committed != rows:
                problems.append(f"{path}: holds {rows} rows, {committed} committed (not trimmed)")
            rows = committed
        chunk_rows = dataset.chunks[0] if dataset.chunks else rows
        row_bytes = max(1, dataset.dtype.itemsize * math.prod(dataset.shape[1:]))
        block_rows = max(1, _VERIFY_BLOCK_BYTES // row_bytes)
        damaged: list[str] = []
        for block_start, block_stop in _chunk_aligned_blocks(0, rows, chunk_rows, block_rows):
            try:
                dataset[block_start:block_stop]
            except _HDF5_ERRORS:
                damaged += self._damaged_chunks(dataset, block_start, block_stop, chunk_rows)
        if damaged:
            shown = ", ".join(damaged[:_MAX_REPORTED_CHUNKS])
            more = (
                f" and {len(damaged) - _MAX_REPORTED_CHUNKS} more"
                if len(damaged) > _MAX_REPORTED_CHUNKS
                else ""
            )
            problems.append(f"{path}: damaged chunks (checksum failure) at {shown}{more}")
        return problems

    def _damaged_chunks(
        self, dataset: h5py.Dataset, start: int, stop: int, chunk_rows: int
    ) -> list[str]:
        damaged = []
        for chunk_start, chunk_stop in _chunk_aligned_blocks(start, stop, chunk_rows, chunk_rows):
            try:
                dataset[chunk_start:chunk_stop]
            except _HDF5_ERRORS:
                last = chunk_stop - 1
                damaged.append(
                    f"row {chunk_start}" if last == chunk_start else f"rows {chunk_start}..{last}"
                )
        return damaged

    def _verify_counters_agree(self) -> list[str]:
        problems = []
        for camera in self.camera_names:
            counts = {
                self._committed.get(layout.camera_dataset(camera, dataset))
                for dataset in layout.CAMERA_DATASETS
            }
            if len(counts) != 1:
                problems.append(
                    f"{layout.camera_group(camera)}: datasets have different counters {counts}"
                )
        analog_rows = self._committed[layout.DAQ_ANALOG]
        trigger_line_rows = self._committed[layout.DAQ_TRIGGER_LINE]
        if analog_rows != trigger_line_rows:
            problems.append(
                f"{layout.DAQ_GROUP}: analog and trigger_line counters differ "
                f"({analog_rows} vs {trigger_line_rows})"
            )
        return problems

    def _verify_camera(self, camera: str, pulses: np.ndarray | None) -> list[str]:
        group = layout.camera_group(camera)
        problems: list[str] = []
        try:
            table = self.frame_table(camera)
        except TrialFileError as error:
            return [str(error)]
        for column in (layout.FRAME_ID, layout.TRIGGER_INDEX):
            gaps = _gap_rows(table[column])
            if gaps.size:
                shown = ", ".join(str(row) for row in gaps[:_MAX_REPORTED_CHUNKS])
                problems.append(
                    f"{group}/{column}: not contiguous: {gaps.size} jumps, after rows {shown}"
                )
        if pulses is None:
            return problems
        trigger_index = table[layout.TRIGGER_INDEX]
        daq_sample_index = table[layout.DAQ_SAMPLE_INDEX]
        known = (trigger_index >= 0) & (trigger_index < len(pulses))
        expected = np.full_like(daq_sample_index, -1)
        expected[known] = pulses[trigger_index[known]]
        missing = known & (daq_sample_index == -1)
        wrong = known & (daq_sample_index != -1) & (daq_sample_index != expected)
        if missing.any():
            problems.append(
                f"{group}/{layout.DAQ_SAMPLE_INDEX}: {int(missing.sum())} frames have -1 although "
                "their pulse is recorded (the writer stopped before filling them in)"
            )
        if wrong.any():
            problems.append(
                f"{group}/{layout.DAQ_SAMPLE_INDEX}: {int(wrong.sum())} frames disagree with "
                f"{layout.DAQ_TRIGGER_SAMPLE_INDEX}[trigger_index]"
            )
        unpulsed = int((trigger_index >= len(pulses)).sum())
        # A crash cuts the DAQ's record at its last commit, which may end before the frames'.
        if unpulsed and self.closed_cleanly:
            problems.append(
                f"{group}: {unpulsed} frames have a trigger_index beyond the recorded pulses"
            )
        return problems

    def _camera_summary(self, camera: str, pulse_count: int) -> dict[str, Any]:
        group = self._file[layout.camera_group(camera)]
        frames = group[layout.FRAMES]
        table = self.frame_table(camera)
        frame_count = len(table[layout.FRAME_ID])
        trigger_index = table[layout.TRIGGER_INDEX]
        known_triggers = trigger_index[trigger_index >= 0]
        height, width = int(frames.shape[1]), int(frames.shape[2])
        raw_bytes = frame_count * height * width
        stored_bytes = int(frames.id.get_storage_size()) if frame_count else 0
        # Pulses without a frame are drops the camera may not have counted itself.
        recorded = np.unique(known_triggers[known_triggers < pulse_count])
        return {
            "frames": frame_count,
            "height": height,
            "width": width,
            "frames_dropped": _json_value(group.attrs.get(layout.ATTR_FRAMES_DROPPED)),
            "pulses_without_frame": int(pulse_count - recorded.size) if pulse_count else None,
            "first_trigger_index": int(known_triggers[0]) if known_triggers.size else None,
            "last_trigger_index": int(known_triggers[-1]) if known_triggers.size else None,
            "frame_ids_contiguous": bool(_gap_rows(table[layout.FRAME_ID]).size == 0),
            "trigger_indices_contiguous": bool(_gap_rows(trigger_index).size == 0),
            "frames_without_daq_sample": int((table[layout.DAQ_SAMPLE_INDEX] == -1).sum()),
            "frames_raw_bytes": raw_bytes,
            "frames_stored_bytes": stored_bytes,
            "compression_ratio": raw_bytes / stored_bytes if stored_bytes else None,
        }


# --- opening -------------------------------------------------------------------------------------


def _check_file_bytes(path: Path) -> None:
    """Signature and superblock in plain Python: not HDF5, or shorter than HDF5 says, raises."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            offset = 0
            while offset + len(_HDF5_SIGNATURE) <= size:
                handle.seek(offset)
                if handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                    handle.seek(offset)
                    stored_eof = _superblock_end_of_file(handle.read(_SUPERBLOCK_PREFIX_BYTES))
                    break
                offset = _FIRST_USER_BLOCK_OFFSET if offset == 0 else offset * 2
            else:
                raise TrialFileError(path, "/", "not an HDF5 file (no HDF5 signature)")
    except FileNotFoundError:
        raise TrialFileError(path, "/", "no such file") from None
    except OSError as error:
        raise TrialFileError(path, "/", f"cannot be read: {error}") from error
    # A live or crashed SWMR writer's file was measured never to be shorter than this address
    # (HDF5 writes the data before the superblock that points past it), so shorter is truncated.
    if stored_eof is not None and size < stored_eof:
        raise TrialFileError(
            path, "/", f"truncated: {size} bytes, but its superblock says {stored_eof}"
        )


def _superblock_end_of_file(superblock: bytes) -> int | None:
    """The end-of-file address a superblock (starting at its signature) stores, if readable."""
    if len(superblock) < 16:
        return None
    version = superblock[8]
    if version >= 2:
        offset_bytes, address_start, address_index = superblock[9], 12, 2
    elif version in (0, 1):
        offset_bytes, address_index = superblock[13], 2
        address_start = 24 if version == 0 else 28
    else:
        return None
    if offset_bytes not in (2, 4, 8):
        return None
    field_start = address_start + address_index * offset_bytes
    field = superblock[field_start : field_start + offset_bytes]
    if len(field) != offset_bytes:
        return None
    address = int.from_bytes(field, "little")
    # All ones is HDF5's undefined address.
    return None if address == (1 << (8 * offset_bytes)) - 1 else address


def _open_and_validate(path: Path) -> TrialFile:
    h5file, live = _open_h5(path)
    try:
        _check_schema(path, h5file)
        _check_required_datasets(path, h5file)
        return TrialFile(path, h5file, live)
    except _HDF5_ERRORS as error:
        h5file.close()
        raise TrialFileError(path, "/", f"damaged metadata: {error}") from error
    except BaseException:
        h5file.close()
        raise


def _open_object(path: Path, h5file: h5py.File, object_path: str) -> Any:
    """The group or dataset at ``object_path``; None if there is none; damage raises."""
    try:
        if object_path not in h5file:
            return None
        return h5file[object_path]
    except _HDF5_ERRORS as error:
        raise TrialFileError(path, object_path, f"cannot be opened (damaged?): {error}") from error


def _open_h5(path: Path) -> tuple[h5py.File, bool]:
    """(file, opened in SWMR mode).

    A finished file opens normally (HDF5 then checks it is complete). A file still being
    written, or left by a crash, opens only in SWMR mode, with bounded metadata retries. The
    file lock is not taken, so a reader cannot stop the writer from finishing the file; HDF5
    refuses that only when this same process holds the file with the lock, and then it is used.
    """
    first_error: OSError | None = None
    for swmr, locking in ((False, False), (True, False), (True, True), (False, True)):
        try:
            return _h5_open_read_only(path, swmr=swmr, locking=locking), swmr
        except OSError as error:
            if "truncated" in str(error):
                raise TrialFileError(path, "/", f"truncated: {error}") from error
            first_error = first_error or error
    hint = ""
    if "already open for write" in str(first_error):
        # Marked open for writing but not as a SWMR file: a crash while the writer finalized.
        hint = "; it was left open outside SWMR mode: clear the mark on a copy with `h5clear -s`"
    raise TrialFileError(
        path, "/", f"HDF5 cannot open it (damaged?): {first_error}{hint}"
    ) from first_error


def _h5_open_read_only(path: Path, *, swmr: bool, locking: bool) -> h5py.File:
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    if not locking:
        access.set_file_locking(False, True)
    flags = h5py.h5f.ACC_RDONLY
    if swmr:
        flags |= h5py.h5f.ACC_SWMR_READ
        _limit_metadata_read_attempts(access)
    file_id = h5py.h5f.open(os.fsencode(path), flags, fapl=access)
    return h5py.File(file_id)


# HDF5 retries a metadata read whose checksum fails (a SWMR writer may be mid-write), sleeping
# 1 ns, 2 ns, 4 ns, ... in between: 24 attempts wait at most ~17 ms in all, plenty for a writer's
# metadata write, where the default 100 would wait longer than anyone lives.
_SWMR_METADATA_READ_ATTEMPTS = 24


def _limit_metadata_read_attempts(access: Any) -> None:
    library = _hdf5_library()
    if library is None:
        return
    library.H5Pset_metadata_read_attempts(access.id, _SWMR_METADATA_READ_ATTEMPTS)


@functools.cache
def _hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 library h5py itself uses (h5py does not wrap H5Pset_metadata_read_attempts).

    Only a library already loaded into this process (or shipped inside h5py's wheel) is used:
    loading a second HDF5 would start a second, separate library.
    """
    for candidate in _hdf5_library_candidates():
        try:
            library = ctypes.CDLL(str(candidate))
            set_attempts = library.H5Pset_metadata_read_attempts
            get_attempts = library.H5Pget_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        set_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        set_attempts.restype = ctypes.c_int
        get_attempts.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_uint)]
        get_attempts.restype = ctypes.c_int
        # Prove it is h5py's instance: it must know a property list h5py just made.
        probe = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        attempts = ctypes.c_uint(0)
        if (
            set_attempts(probe.id, 3) >= 0
            and get_attempts(probe.id, ctypes.byref(attempts)) >= 0
            and attempts.value == 3
        ):
            return library
    return None


def _hdf5_library_candidates() -> list[Path]:
    candidates: list[Path] = []
    maps = Path("/proc/self/maps")
    if maps.exists():
        for line in maps.read_text().splitlines():
            mapped = line.split()[-1]
            name = Path(mapped).name
            if name.startswith("libhdf5") and not name.startswith("libhdf5_hl") and ".so" in name:
                candidates.append(Path(mapped))
    h5py_dir = Path(h5py.__file__).resolve().parent
    candidates += sorted((h5py_dir.parent / "h5py.libs").glob("libhdf5-*.so*"))
    candidates += sorted((h5py_dir / ".dylibs").glob("libhdf5.*dylib"))
    candidates += [h5py_dir / "hdf5.dll"]
    unique = list(dict.fromkeys(candidates))
    return [candidate for candidate in unique if candidate.exists()]


def _check_schema(path: Path, h5file: h5py.File) -> None:
    where = f"/ (attribute {layout.ATTR_SCHEMA_VERSION})"
    if layout.ATTR_SCHEMA_VERSION not in h5file.attrs:
        raise TrialFileError(path, where, "missing: not a trial file")
    try:
        version = int(h5file.attrs[layout.ATTR_SCHEMA_VERSION])
    except (TypeError, ValueError) as error:
        raise TrialFileError(path, where, f"is not an integer: {error}") from error
    if version > layout.SCHEMA_VERSION:
        raise TrialFileError(
            path,
            where,
            f"the file has schema version {version}, this reader knows up to "
            f"{layout.SCHEMA_VERSION}: update the software to read it",
        )
    if version < 1:
        raise TrialFileError(path, where, f"invalid schema version {version}")


def _check_required_datasets(path: Path, h5file: h5py.File) -> None:
    required = [
        layout.COMMITTED_ROWS,
        layout.DAQ_ANALOG,
        layout.DAQ_TRIGGER_LINE,
        layout.DAQ_TRIGGER_SAMPLE_INDEX,
    ]
    if _open_object(path, h5file, layout.CAMERAS_GROUP) is None:
        raise TrialFileError(path, layout.CAMERAS_GROUP, "required group is missing")
    for camera in _camera_names(h5file):
        required += [layout.camera_dataset(camera, dataset) for dataset in layout.CAMERA_DATASETS]
    for dataset_path in required:
        if not isinstance(_open_object(path, h5file, dataset_path), h5py.Dataset):
            raise TrialFileError(path, dataset_path, "required dataset is missing")
    committed = h5file[layout.COMMITTED_ROWS]
    if layout.ATTR_COMMITTED_DATASETS not in committed.attrs:
        raise TrialFileError(
            path, layout.COMMITTED_ROWS, f"attribute {layout.ATTR_COMMITTED_DATASETS!r} is missing"
        )
    counted = [str(name) for name in _plain(committed.attrs[layout.ATTR_COMMITTED_DATASETS])]
    for dataset_path in counted:
        if dataset_path not in h5file:
            raise TrialFileError(path, dataset_path, "counted dataset is missing")
    for dataset_path in required[1:]:
        if dataset_path not in counted:
            raise TrialFileError(path, dataset_path, f"has no counter in {layout.COMMITTED_ROWS}")


def _camera_names(h5file: h5py.File) -> tuple[str, ...]:
    cameras = h5file[layout.CAMERAS_GROUP]
    if layout.ATTR_CAMERA_NAMES in cameras.attrs:
        return tuple(str(name) for name in _plain(cameras.attrs[layout.ATTR_CAMERA_NAMES]))
    return tuple(name for name in cameras if isinstance(cameras[name], h5py.Group))


# --- helpers -------------------------------------------------------------------------------------


def _iter_datasets(h5file: h5py.File) -> Iterator[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []

    def collect(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            found.append(("/" + name, item))

    h5file.visititems(collect)
    return iter(found)


def _chunk_aligned_blocks(
    start: int, stop: int, chunk_rows: int, block_rows: int
) -> Iterator[tuple[int, int]]:
    """[start, stop) cut at multiples of ``chunk_rows``, each block about ``block_rows`` long."""
    chunk_rows = max(1, int(chunk_rows))
    step = max(chunk_rows, (block_rows // chunk_rows) * chunk_rows)
    block_start = start
    while block_start < stop:
        block_stop = min(stop, (block_start // chunk_rows) * chunk_rows + step)
        yield block_start, block_stop
        block_start = block_stop


def _gap_rows(values: np.ndarray) -> np.ndarray:
    """Rows after which (N,) values do not go up by exactly one."""
    return np.flatnonzero(np.diff(values) != 1)


def _pulse_problems(pulses: np.ndarray, samples: int) -> list[str]:
    problems = []
    if pulses.size and np.any(np.diff(pulses) <= 0):
        problems.append(
            f"{layout.DAQ_TRIGGER_SAMPLE_INDEX}: sample indices do not strictly increase"
        )
    if pulses.size and (pulses[0] < 0 or pulses[-1] >= samples):
        problems.append(
            f"{layout.DAQ_TRIGGER_SAMPLE_INDEX}: pulses outside the {samples} committed samples"
        )
    return problems


def _host_time_span_s(trial_file: TrialFile) -> float | None:
    spans = []
    for camera in trial_file.camera_names:
        t_host_ns = trial_file.read(layout.camera_dataset(camera, layout.T_HOST_NS))
        if t_host_ns.size:
            spans.append((int(t_host_ns.max()) - int(t_host_ns.min())) / 1e9)
    return max(spans) if spans else None


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _plain(value: Any) -> Any:
    """An attribute value as plain Python: text as str, numbers as int/float, arrays as lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [_plain(item) for item in value.ravel()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_value(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
