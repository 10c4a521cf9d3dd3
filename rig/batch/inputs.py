"""The trials of a batch: trial files from files and folders, and the name of each output.

A folder contributes every ``*.h5`` directly in it (not in subfolders, where earlier outputs
live) that is a trial file; an HDF5 file without the trial file's ``schema_version`` attribute
(an export, another tool's file) is left out with a note. A file that cannot be read at all (not
HDF5, truncated) stays in: its replay fails and reports why, and the other trials go on. A file
named on the command line always stays in.

Outputs are ``<output folder>/<source stem>.h5``: the same input always gets the same output,
which is what lets a second batch find and skip the trials already done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rig.batch import DEFAULT_OUTPUT_FOLDER
from rig.replay import OPEN_TIMEOUT_S
from rig.trialfile import layout

OUTPUT_SUFFIX = ".h5"


class BatchInputError(ValueError):
    """Inputs or an output folder a batch cannot start with; the message says which."""


@dataclass(frozen=True)
class BatchInputs:
    """``sources``: absolute paths of the trials, in the order given (a folder's files sorted by
    name), each once; ``left_out``: (file, why) for the folders' files that are not trial files."""

    sources: tuple[Path, ...]
    left_out: tuple[tuple[Path, str], ...]


def find_inputs(paths: Sequence[Path], timeout_s: float = OPEN_TIMEOUT_S) -> BatchInputs:
    """The trials named by ``paths`` (files and folders); raises BatchInputError for a path that
    does not exist, or when there is no trial at all."""
    sources: list[Path] = []
    left_out: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.glob(f"*{OUTPUT_SUFFIX}")):
                if not candidate.is_file():
                    continue
                reason = not_a_trial_file(candidate, timeout_s)
                if reason is None:
                    sources.append(candidate.resolve())
                else:
                    left_out.append((candidate, reason))
        elif path.is_file():
            sources.append(path.resolve())
        else:
            raise BatchInputError(f"{path}: no such file or folder")
    unique = tuple(dict.fromkeys(sources))
    if not unique:
        named = ", ".join(str(path) for path in paths)
        raise BatchInputError(f"no trial files in {named}")
    return BatchInputs(sources=unique, left_out=tuple(left_out))


def not_a_trial_file(path: Path, timeout_s: float = OPEN_TIMEOUT_S) -> str | None:
    """Why ``path`` is not a trial file, or None when it is one, or may be a damaged one."""
    from rig.trialfile.reader import TrialFileError, open_trial

    try:
        with open_trial(path, timeout_s=timeout_s):
            return None
    except TrialFileError as error:
        # An HDF5 file that opens but lacks the schema: some other file. Anything else is a
        # trial file (or a file in its place) that cannot be read: the batch reports it.
        if layout.ATTR_SCHEMA_VERSION in error.dataset and error.problem.startswith("missing"):
            return f"not a trial file (no {layout.ATTR_SCHEMA_VERSION!r} attribute)"
        return None


def default_output_folder(sources: Sequence[Path]) -> Path:
    """``batch/`` beside the inputs; inputs in several folders need ``--output``."""
    parents = sorted({str(source.parent) for source in sources})
    if len(parents) != 1:
        raise BatchInputError(
            f"the trials are in {len(parents)} folders ({', '.join(parents)}): give --output"
        )
    return Path(parents[0]) / DEFAULT_OUTPUT_FOLDER


def output_paths(sources: Sequence[Path], output_folder: Path) -> tuple[Path, ...]:
    """``output_folder/<stem>.h5`` for every source; raises BatchInputError when two sources share
    a stem (they would share an output) or an output would replace its own source."""
    folder = output_folder.resolve()
    by_stem: dict[str, list[Path]] = {}
    for source in sources:
        by_stem.setdefault(source.stem, []).append(source)
    clashes = {stem: files for stem, files in by_stem.items() if len(files) > 1}
    if clashes:
        listed = "; ".join(
            f"{stem}: {', '.join(str(file) for file in files)}" for stem, files in clashes.items()
        )
        raise BatchInputError(
            f"trials with the same name would have the same output ({listed}): rename one, or "
            "run them in separate batches with different --output folders"
        )
    outputs = tuple(folder / f"{source.stem}{OUTPUT_SUFFIX}" for source in sources)
    for source, output in zip(sources, outputs, strict=True):
        if output == source.resolve():
            raise BatchInputError(
                f"{output}: the output would replace its source: choose another --output folder"
            )
    return outputs
