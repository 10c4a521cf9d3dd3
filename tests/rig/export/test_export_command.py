"""`rig export nwb|dlc`: the subcommands as the rig's CLI wires them (add_export_parser), their
exit codes and messages."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from pynwb import NWBHDF5IO

from rig.export.command import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_export_parser
from tests.rig.export.export_trials import TRIAL_ID, SmallTrial


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rig")
    add_export_parser(parser.add_subparsers(metavar="COMMAND"))
    return parser


def run(*argv: str) -> int:
    """Parse ``argv`` as the rig's CLI does and call the handler it sets."""
    args = parser().parse_args(list(argv))
    return int(args.handler(args))


def test_export_nwb_with_the_sessions_metadata(
    small_trial: SmallTrial, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "session.nwb"
    code = run(
        *("export", "nwb", str(small_trial.path), "--output", str(output)),
        *("--videos", "none", "--experimenter", "Doe, Jane", "--experimenter", "Roe, Rick"),
        *("--lab", "Motor Lab", "--institution", "Example U", "--sex", "M", "--age", "P60D/"),
    )
    assert code == EXIT_OK
    printed = capsys.readouterr().out
    assert f"wrote {output}" in printed
    assert "3D poses: 31; events: 4" in printed
    assert "note: cam_left: 1 frames without a known pulse left out" in printed
    with NWBHDF5IO(str(output), "r") as nwb_io:
        nwbfile = nwb_io.read()
        assert list(nwbfile.experimenter) == ["Doe, Jane", "Roe, Rick"]
        assert (nwbfile.lab, nwbfile.institution) == ("Motor Lab", "Example U")
        assert (nwbfile.subject.sex, nwbfile.subject.age) == ("M", "P60D/")


def test_export_nwb_by_default_writes_beside_the_trial_and_refuses_to_overwrite(
    small_trial: SmallTrial, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trial = tmp_path / "trial.h5"
    trial.write_bytes(small_trial.path.read_bytes())
    assert run("export", "nwb", str(trial)) == EXIT_OK
    printed = capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "trial.h5",
        "trial.nwb",
        "trial_cam_left.mkv",
        "trial_cam_right.mkv",
    ]
    assert "note: subject age unknown" in printed
    assert run("export", "nwb", str(trial)) == EXIT_FAILED
    assert "trial.nwb exists" in capsys.readouterr().err
    assert run("export", "nwb", str(trial), "--overwrite") == EXIT_OK


def test_export_dlc(
    small_trial: SmallTrial, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("export", "dlc", str(small_trial.path), "--output", str(tmp_path)) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"{TRIAL_ID}_cam_leftDLC_twin.h5 and .csv (33 frames)" in printed
    assert len(list(tmp_path.glob("*.h5"))) == len(list(tmp_path.glob("*.csv"))) == 2


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["nwb", "{missing}"], EXIT_FAILED, "no such file"),
        (["nwb", "{trial}", "--age", "ninety days"], EXIT_USAGE, "ISO 8601"),
        (["dlc", "{untracked}"], EXIT_FAILED, "no 2D poses"),
    ],
)
def test_failures_exit_with_a_message(
    argv: list[str],
    code: int,
    message: str,
    small_trial: SmallTrial,
    untracked_trial: SmallTrial,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {
        "missing": str(tmp_path / "missing.h5"),
        "trial": str(small_trial.path),
        "untracked": str(untracked_trial.path),
    }
    assert run("export", *(arg.format(**paths) for arg in argv)) == code
    assert message in capsys.readouterr().err


def test_export_without_a_format_shows_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("export") == EXIT_USAGE
    assert "nwb" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser().parse_args(["export", "nwb", "trial.h5", "--videos", "mp4"])


def test_the_command_module_imports_no_heavy_library() -> None:
    """The rig's CLI imports the command module at start: NWB, pandas and movement load only
    when an export runs."""
    code = (
        "import sys, rig.export.command; "
        "print(sorted(m for m in ('pynwb', 'hdmf', 'pandas', 'movement', 'xarray') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
