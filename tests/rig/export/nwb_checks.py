"""Checking NWB exports with nwbinspector, the NWB community's checker (imported, not
collected)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nwbinspector import Importance, inspect_nwbfile

# At or above CRITICAL: the file is invalid or very likely wrong (DANDI refuses it).
SERIOUS = (Importance.CRITICAL, Importance.PYNWB_VALIDATION, Importance.ERROR)


def inspector_findings(path: Path) -> list[Any]:
    """Every finding of nwbinspector on ``path``, printed for the test log."""
    findings = [finding for finding in inspect_nwbfile(nwbfile_path=path) if finding is not None]
    for finding in findings:
        print(
            f"nwbinspector {finding.importance.name} {finding.check_function_name} "
            f"{finding.location}: {finding.message[:160]}"
        )
    return findings


def serious(findings: list[Any]) -> list[str]:
    """The findings at CRITICAL or above, as text."""
    return [
        f"{finding.importance.name} {finding.check_function_name} {finding.location}: "
        f"{finding.message}"
        for finding in findings
        if finding.importance in SERIOUS
    ]
