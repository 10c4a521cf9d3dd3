"""Two trial files, dataset by dataset: what a replay reproduced and where it differs.

Every dataset of either file is compared, committed rows only. Frames are compared chunk by chunk
as stored (the bytes include the checksum, so equal bytes are equal frames); chunks that differ
are decoded and compared pixel by pixel, so a frame encoded differently but identical still
counts as identical. Everything else is compared element by element, bit for bit.

Some datasets differ by nature and do not count against identity:

- host times (``t_host_ns``, ``t_received_ns``): when a process saw the data, not what it was;
- live tracking (``/tracking_live``, ``/tracking/inferred_live``): which frames the live pose
  process took depends on how busy the machine was; the completed ``/pose2d``, ``/pose3d`` and
  ``/events`` are what the replay must reproduce;
- ``/commit``: the writer's bookkeeping of its flushes.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from rig.replay import OPEN_TIMEOUT_S
from rig.trialfile import layout
from rig.trialfile.reader import TrialFile, TrialFileError, open_trial

# Datasets shown first, in this order (the rest follow alphabetically).
_ORDER = ("/cameras/", "/daq/", "/pose2d/", "/pose3d/", "/events", "/calibration", "/sim/")
_HOST_TIME_NAMES = (layout.T_HOST_NS, "t_received_ns")
_LIVE_PREFIXES = ("/tracking_live/", "/tracking/inferred_live/")
_BOOKKEEPING_PREFIXES = (layout.COMMIT_GROUP + "/",)


class Status(enum.Enum):
    IDENTICAL = "identical"
    DIFFERENT = "different"
    MISSING = "missing"
    UNREADABLE = "unreadable"
    HOST_TIME = "differs (host time)"
    LIVE = "differs (live tracking)"


@dataclass(frozen=True)
class DatasetComparison:
    dataset: str
    status: Status
    first_difference: str = ""
    max_abs_difference: float | None = None

    @property
    def counts(self) -> bool:
        """Whether this row makes the files different (host time and live tracking do not)."""
        return self.status in (Status.DIFFERENT, Status.MISSING, Status.UNREADABLE)


@dataclass(frozen=True)
class Comparison:
    original: Path
    replay: Path
    rows: tuple[DatasetComparison, ...]

    @property
    def identical(self) -> bool:
        return not any(row.counts for row in self.rows)

    @property
    def differences(self) -> tuple[DatasetComparison, ...]:
        return tuple(row for row in self.rows if row.counts)

    def row(self, dataset: str) -> DatasetComparison:
        for row in self.rows:
            if row.dataset == dataset:
                return row
        raise KeyError(f"{dataset} was not compared")


def compare_trials(
    original: Path | str, replay: Path | str, timeout_s: float = OPEN_TIMEOUT_S
) -> Comparison:
    """Compare every dataset of two trial files; raises TrialFileError if one cannot be opened."""
    original, replay = Path(original), Path(replay)
    with open_trial(original, timeout_s) as first, open_trial(replay, timeout_s) as second:
        first_paths, second_paths = set(first.dataset_paths()), set(second.dataset_paths())
        rows = []
        for path in sorted(first_paths | second_paths, key=_display_order):
            if path.startswith(_BOOKKEEPING_PREFIXES):
                continue
            if path not in second_paths:
                row = DatasetComparison(path, Status.MISSING, "only in the original")
            elif path not in first_paths:
                row = DatasetComparison(path, Status.MISSING, "only in the replay")
            else:
                row = _compare_dataset(first, second, path)
            rows.append(_by_nature(row))
    return Comparison(original, replay, tuple(rows))


def _by_nature(row: DatasetComparison) -> DatasetComparison:
    """A difference in a dataset that differs by nature is shown as such, and does not count."""
    if row.status not in (Status.DIFFERENT, Status.MISSING):
        return row
    if row.dataset.rsplit("/", 1)[-1] in _HOST_TIME_NAMES:
        return dataclasses.replace(row, status=Status.HOST_TIME)
    if row.dataset.startswith(_LIVE_PREFIXES):
        return dataclasses.replace(row, status=Status.LIVE)
    return row


def _display_order(path: str) -> tuple[int, str]:
    for rank, prefix in enumerate(_ORDER):
        if path.startswith(prefix):
            return rank, path
    return len(_ORDER), path


def _compare_dataset(first: TrialFile, second: TrialFile, path: str) -> DatasetComparison:
    try:
        camera = _frames_camera(path)
        if camera is not None:
            status, where, largest = _compare_frames(first, second, camera)
        else:
            status, where, largest = compare_arrays(first.read(path), second.read(path))
    except TrialFileError as error:
        return DatasetComparison(path, Status.UNREADABLE, f"{error.path}: {error.problem}")
    return DatasetComparison(path, status, where, largest)


def _frames_camera(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == layout.CAMERAS_GROUP.strip("/") and parts[2] == "frames":
        return parts[1]
    return None


def _compare_frames(
    first: TrialFile, second: TrialFile, camera: str
) -> tuple[Status, str, float | None]:
    path = layout.camera_dataset(camera, layout.FRAMES)
    first_rows = first.committed_rows(path) or 0
    second_rows = second.committed_rows(path) or 0
    first_difference = ""
    largest: float | None = None
    if first_rows != second_rows:
        first_difference = f"{first_rows} frames vs {second_rows}"
    for row in range(min(first_rows, second_rows)):
        if first.raw_frame_chunk(camera, row) == second.raw_frame_chunk(camera, row):
            continue
        a = first.frames(camera, row, row + 1)[0]
        b = second.frames(camera, row, row + 1)[0]
        if a.shape != b.shape:
            first_difference = first_difference or f"frame {row}: shape {a.shape} vs {b.shape}"
            continue
        if np.array_equal(a, b):
            continue  # encoded differently, same pixels
        difference = np.abs(a.astype(np.int16) - b.astype(np.int16))
        largest = max(largest or 0.0, float(difference.max()))
        if not first_difference:
            y, x = np.unravel_index(int(np.argmax(difference > 0)), difference.shape)
            first_difference = f"frame {row}, pixel (x {x}, y {y}): {a[y, x]} vs {b[y, x]}"
    if first_difference:
        return Status.DIFFERENT, first_difference, largest
    return Status.IDENTICAL, "", None


def compare_arrays(a: np.ndarray, b: np.ndarray) -> tuple[Status, str, float | None]:
    """(status, first difference, max abs difference) of two arrays, bit for bit.

    NaN equals NaN. Tables (compound dtypes) are compared field by field; text by equality.
    """
    if a.shape != b.shape:
        return Status.DIFFERENT, f"shape {a.shape} vs {b.shape}", _common_max_abs(a, b)
    if a.dtype != b.dtype and (a.dtype.names is not None or b.dtype.names is not None):
        return Status.DIFFERENT, f"dtype {a.dtype} vs {b.dtype}", None
    if a.dtype.names is not None:
        return _compare_tables(a, b)
    if a.dtype.kind in "OSUV" or b.dtype.kind in "OSUV":
        equal = np.asarray(a == b, dtype=bool)
        if equal.all():
            return Status.IDENTICAL, "", None
        index = _first_index(~equal)
        return Status.DIFFERENT, f"at {index}: {a[index]!r} vs {b[index]!r}", None
    if a.dtype == b.dtype and a.tobytes() == b.tobytes():
        return Status.IDENTICAL, "", None
    first_values = a.astype(np.float64)
    second_values = b.astype(np.float64)
    both_nan = np.isnan(first_values) & np.isnan(second_values)
    differs = (first_values != second_values) & ~both_nan
    if not differs.any():
        if a.dtype == b.dtype:
            return Status.DIFFERENT, "equal values, different bits (signed zero?)", 0.0
        return Status.IDENTICAL, "", None
    index = _first_index(differs)
    return (
        Status.DIFFERENT,
        f"at {index}: {_value(a[index])} vs {_value(b[index])}",
        _max_abs(first_values, second_values, differs),
    )


def _compare_tables(a: np.ndarray, b: np.ndarray) -> tuple[Status, str, float | None]:
    first_row: int | None = None
    where = ""
    largest: float | None = None
    for name in a.dtype.names or ():
        status, field_where, field_largest = compare_arrays(a[name], b[name])
        if status is Status.IDENTICAL:
            continue
        if field_largest is not None:
            largest = max(largest or 0.0, field_largest)
        row = _row_of(a[name], b[name])
        if first_row is None or (row is not None and row < first_row):
            first_row = row if row is not None else first_row
            where = f"field {name!r} {field_where}"
    if not where:
        return Status.IDENTICAL, "", None
    return Status.DIFFERENT, where, largest


def _row_of(a: np.ndarray, b: np.ndarray) -> int | None:
    try:
        differs = (a != b) & ~(_nan_mask(a) & _nan_mask(b))
    except TypeError:
        return None
    differs = np.asarray(differs)
    if differs.ndim == 0 or not differs.any():
        return None
    return int(np.argwhere(differs)[0][0])


def _nan_mask(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    return np.zeros(values.shape, dtype=bool)


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _max_abs(a: np.ndarray, b: np.ndarray, differs: np.ndarray) -> float:
    """Largest |a - b| where both are numbers; inf where one is NaN and the other is not."""
    finite = differs & np.isfinite(a) & np.isfinite(b)
    largest = float(np.max(np.abs(a[finite] - b[finite]))) if finite.any() else 0.0
    return math.inf if (differs & ~finite).any() else largest


def _common_max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    """Max abs difference over the leading rows both have, where the row shapes agree."""
    if a.ndim == 0 or b.ndim == 0 or a.shape[1:] != b.shape[1:]:
        return None
    if a.dtype.names is not None or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
        return None
    rows = min(a.shape[0], b.shape[0])
    if rows == 0:
        return None
    first, second = a[:rows].astype(np.float64), b[:rows].astype(np.float64)
    differs = (first != second) & ~(np.isnan(first) & np.isnan(second))
    return _max_abs(first, second, differs) if differs.any() else 0.0


def _value(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.9g}"
    return str(value)


def print_comparison(comparison: Comparison, stream: TextIO) -> None:
    """The comparison as a table, one dataset per line, and a verdict."""
    write = stream.write
    width = max([len("dataset"), *(len(row.dataset) for row in comparison.rows)])
    write(f"\ncomparison: {comparison.original}\n        vs  {comparison.replay}\n")
    write(f"  {'dataset':<{width}}  {'status':<23}  {'max abs difference':>18}  first difference\n")
    for row in comparison.rows:
        largest = "" if row.max_abs_difference is None else f"{row.max_abs_difference:.6g}"
        write(
            f"  {row.dataset:<{width}}  {row.status.value:<23}  {largest:>18}  "
            f"{row.first_difference}\n"
        )
    by_nature = sum(row.status in (Status.HOST_TIME, Status.LIVE) for row in comparison.rows)
    counted = len(comparison.rows) - by_nature
    differences = comparison.differences
    note = f" ({by_nature} differ by nature: host time, live tracking)" if by_nature else ""
    if not differences:
        write(f"\nIDENTICAL: all {counted} datasets compared are identical{note}\n")
    else:
        write(f"\nDIFFERENT: {len(differences)} of {counted} datasets differ{note}\n")
