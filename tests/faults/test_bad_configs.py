"""Ten and more kinds of bad config through `rig run` (issue 7, fault 11): each fails with exit
code 2 before any hardware is armed, naming the file and the key, and makes no trial file.

tests/rig/test_config.py checks the validation itself (load_config); this drives the command a
user types, in-process so that a trial started by mistake is caught: the supervisor's
``run_trial`` is replaced by one that fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.cli import main as rig_main
from tests.rig.trial_configs import MODEL_DIR, config_with, tracked_config_with

# (kind, edit: (old, new) replaced once or text appended, key named, problem named)
BAD_CONFIGS = [
    (
        "unknown key",
        ('subject = "sim-mouse"', 'subjekt = "sim-mouse"'),
        "trial.subjekt",
        "unknown key",
    ),
    ("wrong type", ("rate_hz = 200.0", 'rate_hz = "fast"'), "trigger.rate_hz", "expected a number"),
    (
        "out of range",
        ("brightness = 1.0", "brightness = 0.0"),
        "sim.brightness",
        "must be at least",
    ),
    (
        "not one of the choices",
        ('source = "triggerbox"', 'source = "wall_clock"'),
        "trigger.source",
        "must be one of",
    ),
    ("duplicate name", "[[cameras]]\nname = 'cam_left'\n", "cameras[4].name", "duplicate"),
    (
        "required key missing",
        "[[cameras]]\nwidth = 640\n",
        "cameras[4].name",
        "required key is missing",
    ),
    (
        "names a camera that does not exist",
        "[sim.faults.cameras.cam_nowhere]\ndrift_ppm = 5.0\n",
        "sim.faults.cameras.cam_nowhere",
        "no camera named",
    ),
    (
        "bad list item",
        "[sim.faults.cameras.cam_left]\ndrop_trigger_indices = [3, -1]\n",
        "sim.faults.cameras.cam_left.drop_trigger_indices[1]",
        "start at 0",
    ),
    (
        "keys that do not fit together",
        ("rate_hz = 200.0", "rate_hz = 6000.0"),
        "trigger.rate_hz",
        "2 samples per trigger pulse",
    ),
    (
        "required by another key",
        ('backend = "sim"', 'backend = "serial"'),
        "triggerbox.port",
        "required when",
    ),
    (
        "probability above 1",
        "[sim.faults.cameras.cam_top]\nfetch_error_probability = 1.5\n",
        "sim.faults.cameras.cam_top.fetch_error_probability",
        "at most 1",
    ),
    (
        "missing model folder (tracking on)",
        (f'model = "{MODEL_DIR}"', 'model = "/nowhere/model"'),
        "tracking.model",
        "is not a model folder",
    ),
]


@pytest.fixture
def no_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to run a trial (spawn workers, arm hardware) fails the test."""
    import rig.supervisor

    def armed(*args: object, **kwargs: object) -> None:
        raise AssertionError("a trial was started with a bad config")

    monkeypatch.setattr(rig.supervisor.Supervisor, "run_trial", armed)


@pytest.mark.parametrize(
    ("kind", "edit", "key", "problem"), BAD_CONFIGS, ids=[kind for kind, *_ in BAD_CONFIGS]
)
def test_a_bad_config_fails_before_anything_runs_naming_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_trial: None,
    kind: str,
    edit: tuple[str, str] | str,
    key: str,
    problem: str,
) -> None:
    tracking = "tracking" in kind
    config = tracked_config_with(tmp_path, "") if tracking else config_with(tmp_path, "")
    text = config.read_text()
    if isinstance(edit, tuple):
        old, new = edit
        assert old in text, f"the default config has no {old!r} any more"
        text = text.replace(old, new, 1)
    else:
        text += "\n" + edit
    config.write_text(text)
    out = tmp_path / "out"
    code = rig_main(["run", "--config", str(config), "--output", str(out)])
    stderr = capsys.readouterr().err
    print(f"{kind}: {stderr.strip()}")
    assert code == 2
    assert str(config) in stderr
    assert f"key '{key}'" in stderr
    assert problem in stderr
    assert not out.exists() or not list(out.rglob("*.h5"))
