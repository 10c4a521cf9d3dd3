"""What one trial of a batch is, and when its output counts as finished.

An output is finished when it opens as a trial file, was closed cleanly, its frame accounting
balances, it records that it replayed the very bytes of its source (``replay_of_sha256``) and it
was made with the batch's settings (``batch_settings``). Only such a file ever gets the output's
final name, and only such a file is skipped by a later batch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rig.batch import ATTR_BATCH_SETTINGS
from rig.replay import OPEN_TIMEOUT_S
from rig.trialfile import layout


@dataclass(frozen=True)
class ReplaySettings:
    """How every trial of a batch is replayed (always at ``max`` speed).

    ``model``/``calibration``: absolute paths replacing the recorded ones (None: as recorded);
    ``tracking``: on, off, or None as recorded.
    """

    model: str | None = None
    calibration: str | None = None
    tracking: bool | None = None

    def __post_init__(self) -> None:
        if self.tracking is False and (self.model is not None or self.calibration is not None):
            raise ValueError("a replay without tracking cannot take a model or a calibration")

    def to_attribute(self) -> str:
        """The settings as the output's ``batch_settings`` root attribute (JSON, sorted keys)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class TrialJob:
    """One trial of a batch: replay ``source`` into ``output`` (both absolute paths, seen the same
    by the client and every worker)."""

    source: str
    output: str
    settings: ReplaySettings
    open_timeout_s: float = OPEN_TIMEOUT_S

    @property
    def stem(self) -> str:
        return Path(self.output).stem

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrialJob:
        fields: dict[str, Any] = json.loads(text)
        return cls(
            source=str(fields["source"]),
            output=str(fields["output"]),
            settings=ReplaySettings(**fields["settings"]),
            open_timeout_s=float(fields["open_timeout_s"]),
        )


def output_problems(
    path: Path, settings: ReplaySettings, source_sha256: str | None, timeout_s: float
) -> list[str]:
    """Why ``path`` is not a finished output of a batch with ``settings``; [] when it is.

    ``source_sha256`` None skips the check of the source's hash (the replay itself just wrote it).
    """
    from rig.trialfile.reader import TrialFileError, open_trial

    try:
        with open_trial(path, timeout_s=timeout_s) as trial:
            attrs = trial.attrs
            closed_cleanly = trial.closed_cleanly
            end_reason = trial.end_reason
    except TrialFileError as error:
        return [str(error)]
    problems = []
    if not closed_cleanly:
        problems.append(f"not closed cleanly (end reason {end_reason!r})")
    if not attrs.get("accounting_balanced", False):
        problems.append(
            f"frame accounting does not balance: {attrs.get('accounting_problems', '')!r}"
        )
    recorded_sha256 = attrs.get("replay_of_sha256")
    if not recorded_sha256:
        problems.append("does not record the SHA-256 of the file it replayed")
    elif source_sha256 is not None and recorded_sha256 != source_sha256:
        problems.append("replayed another version of the source (its SHA-256 differs)")
    made_with = attrs.get(ATTR_BATCH_SETTINGS)
    if made_with != settings.to_attribute():
        problems.append(f"made with other settings ({made_with!r}, now {settings.to_attribute()})")
    if attrs.get(layout.ATTR_FORMAT) != layout.FILE_FORMAT:
        problems.append(f"root attribute {layout.ATTR_FORMAT!r} is not {layout.FILE_FORMAT!r}")
    return problems
