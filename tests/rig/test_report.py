"""`rig report`: the PNGs of a real simulated trial, and the numbers behind them against the file.

One tracked trial (2 s on the twin, take-off at 1.53 s, three frames of cam_left dropped) is
recorded once for the whole session through `rig run`, as a user records one (about 70 s on an
idle 2-core machine, most of it pose inference on every frame).
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from rig.config import DEFAULT_CONFIG_PATH
from rig.report import (
    EMG_ENVELOPE_MS,
    EXIT_FAILED,
    EXIT_OK,
    MAX_DRAWN_POINTS,
    aligned_traces,
    body_speed,
    drawable_trace,
    emg_envelope,
    frame_accounting,
    jumps_from_events,
    load_trial,
    report_main,
    summary_rows,
    write_report,
)
from tracking.jump_detection import EMG_ONSET_PREFIX, JumpEvent, events_from_table, events_table

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "tracking" / "models" / "twin"
DROPPED_CAM_LEFT = [10, 11, 300]
TRIAL_S = 2.0
CROUCH_ONSET_S = 1.1
TRIAL_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def tracked_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default simulated rig with tracking on (completed after the trial)."""
    folder = tmp_path_factory.mktemp("report_trial")
    text = DEFAULT_CONFIG_PATH.read_text().replace(
        'model = "../tracking/models/twin"', f'model = "{MODEL}"'
    )
    assert f'model = "{MODEL}"' in text and "complete_after_trial = true" in text
    # The jump 0.4 s earlier than the default (body weight is still known 1 s into the trial),
    # so a 2 s trial holds it with its landing settled: 20% fewer frames to track than 2.5 s.
    assert "crouch_onset_s = 1.5" in text
    text = text.replace("crouch_onset_s = 1.5", f"crouch_onset_s = {CROUCH_ONSET_S}")
    text += f"\n[sim.faults.cameras.cam_left]\ndrop_trigger_indices = {DROPPED_CAM_LEFT}\n"
    config = folder / "report.toml"
    config.write_text(text)
    started_s = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "rig.cli", "run", "--config", str(config)),
            *("--duration-s", str(TRIAL_S), "--output", str(folder)),
        ],
        capture_output=True,
        text=True,
        timeout=TRIAL_TIMEOUT_S,
        check=False,
    )
    print(f"tracked {TRIAL_S} s trial recorded in {time.monotonic() - started_s:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = folder.glob("*.h5")
    return path


@pytest.fixture(scope="session")
def report_run(
    tracked_trial: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, str, Path]:
    folder = tmp_path_factory.mktemp("report_png") / "out"
    stream = io.StringIO()
    started_s = time.monotonic()
    code = report_main(tracked_trial, folder, stream)
    print(f"report written in {time.monotonic() - started_s:.2f} s")
    return code, stream.getvalue(), folder


def trial_id(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return str(f.attrs["trial_id"])


def check_png(path: Path, min_width: int = 600, min_height: int = 300) -> np.ndarray:
    """A readable PNG of a sensible size that is not blank; returns it (H, W, 3) uint8."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height, (path, image.shape)
    assert width <= 4000 and height <= 4000, (path, image.shape)
    # A drawn figure: many pixels that are not the white background, and real contrast.
    not_white = np.any(image < 250, axis=-1).mean()
    assert not_white > 0.02, (path, not_white)
    assert float(image.std()) > 10.0, (path, image.std())
    return image


def copy_without(source: Path, folder: Path, *paths: str) -> Path:
    """A copy of the trial without ``paths`` and without its video, which the report never
    reads: each camera's frames become an unwritten dataset of the same shape (a few kB, where
    copying the frames would cost seconds)."""
    copy = folder / source.name
    with h5py.File(source, "r") as original, h5py.File(copy, "w") as target:
        for key, value in original.attrs.items():
            target.attrs[key] = value
        for name in original:
            if name != "cameras":
                original.copy(original[name], target, name=name)
        cameras = target.create_group("cameras")
        for key, value in original["cameras"].attrs.items():
            cameras.attrs[key] = value
        for camera, group in original["cameras"].items():
            camera_copy = cameras.create_group(camera)
            for key, value in group.attrs.items():
                camera_copy.attrs[key] = value
            for name, dataset in group.items():
                if name == "frames":
                    camera_copy.create_dataset(
                        name, shape=dataset.shape, dtype=dataset.dtype, chunks=dataset.chunks
                    )
                else:
                    group.copy(dataset, camera_copy, name=name)
        for path in paths:
            del target[path]
    return copy


# --- the report of a tracked trial ---------------------------------------------------------------


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_report_writes_four_readable_pngs(
    tracked_trial: Path, report_run: tuple[int, str, Path]
) -> None:
    code, stdout, folder = report_run
    assert code == EXIT_OK, stdout
    identity = trial_id(tracked_trial)
    expected = [
        folder / f"{identity}_{what}.png"
        for what in ("force_emg", "trajectory", "frame_accounting", "summary")
    ]
    assert sorted(folder.iterdir()) == sorted(expected)
    listed = [Path(line.strip()) for line in stdout.splitlines() if line.endswith(".png")]
    assert listed == expected
    for png in expected:
        check_png(png)
    assert "note:" not in stdout
    # The jump's numbers are printed too.
    assert "jump height, 3D (mm)" in stdout


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_default_output_folder_is_beside_the_file(tracked_trial: Path, tmp_path: Path) -> None:
    copy = tmp_path / tracked_trial.name
    copy.symlink_to(tracked_trial)
    stream = io.StringIO()
    assert report_main(copy, None, stream) == EXIT_OK
    folder = tmp_path / f"{trial_id(copy)}_report"
    assert len(list(folder.glob("*.png"))) == 4
    assert str(folder) in stream.getvalue()


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_force_and_emg_are_aligned_to_the_takeoff_event(tracked_trial: Path) -> None:
    data = load_trial(tracked_trial)
    with h5py.File(tracked_trial, "r") as f:
        events = events_from_table(f["events"][:])
        analog = f["daq/analog"][:]
        rate_hz = float(f["daq/analog"].attrs["rate_hz"])
        kinds = [str(k) for k in f["daq/analog"].attrs["kinds"]]
    (takeoff,) = [e for e in events if e.name == "takeoff"]
    (landing,) = [e for e in events if e.name == "landing"]
    (crouch,) = [e for e in events if e.name == "crouch_onset"]
    (jump,) = data.jumps
    traces = aligned_traces(data, jump)
    # The sample nearest t = 0 is the take-off event's sample.
    assert traces.first_sample + int(np.argmin(np.abs(traces.time_ms))) == takeoff.daq_sample_index
    np.testing.assert_allclose(np.diff(traces.time_ms), 1000.0 / rate_hz)
    np.testing.assert_array_equal(
        traces.raw, analog[traces.first_sample : traces.first_sample + traces.raw.shape[0]]
    )
    # The window holds crouch onset and landing, where the file puts them.
    assert traces.time_ms[0] < (crouch.daq_sample_index - takeoff.daq_sample_index) / rate_hz * 1e3
    assert (
        traces.time_ms[-1] > (landing.daq_sample_index - takeoff.daq_sample_index) / rate_hz * 1e3
    )
    # Content: the take-off platform is loaded just before t = 0 and empty just after.
    takeoff_platform = kinds.index("force")
    force = traces.raw[:, takeoff_platform]
    before = force[(traces.time_ms > -30) & (traces.time_ms < -10)].mean()
    after = force[(traces.time_ms > 10) & (traces.time_ms < 30)].mean()
    print(f"take-off platform: {before:.3f} N before take-off, {after:.3f} N after")
    assert before > 5 * abs(after)
    # EMG: the envelope is the rectified, smoothed channel; force channels have none.
    emg = [c for c, kind in enumerate(kinds) if kind == "emg"]
    assert np.isnan(traces.envelope[:, takeoff_platform]).all()
    width = round(EMG_ENVELOPE_MS * 1e-3 * rate_hz)
    for channel in emg:
        rectified = np.abs(analog[:, channel].astype(np.float64) - np.median(analog[:, channel]))
        for row in (width, traces.raw.shape[0] // 2, traces.raw.shape[0] - width):
            sample = traces.first_sample + row
            expected = rectified[sample - width // 2 : sample - width // 2 + width].mean()
            assert traces.envelope[row, channel] == pytest.approx(expected, rel=1e-9)
        # The burst: the envelope peaks between the channel's EMG onset and shortly after take-off.
        onset_ms = jump.emg_onset_from_takeoff_s[data.channel_names[channel]] * 1e3
        peak_ms = traces.time_ms[int(np.argmax(traces.envelope[:, channel]))]
        print(f"{data.channel_names[channel]}: onset {onset_ms:.1f} ms, peak {peak_ms:.1f} ms")
        assert onset_ms < peak_ms < 20.0


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_speed_is_the_gradient_of_the_3d_positions(tracked_trial: Path) -> None:
    data = load_trial(tracked_trial)
    assert data.pose3d is not None
    (jump,) = data.jumps
    speed = body_speed(data, data.pose3d, jump.takeoff_sample)
    with h5py.File(tracked_trial, "r") as f:
        points = f["pose3d/points"][:].astype(np.float64)
        trigger_index = f["pose3d/trigger_index"][:]
        parts = [str(p) for p in f["pose3d/points"].attrs["body_parts"]]
        pulses = f["daq/trigger_sample_index"][:]
        rate_hz = float(f["daq/analog"].attrs["rate_hz"])
        takeoff_speed = float(
            f["events"][(f["events"]["value_name"] == b"takeoff_speed_mm_per_s")]["value"][0]
        )
    time_s = pulses[trigger_index] / rate_hz
    centre = points[:, [parts.index("nose"), parts.index("tail_base")]].mean(axis=1)
    expected = np.linalg.norm(np.gradient(centre, time_s, axis=0), axis=-1)
    np.testing.assert_array_equal(speed.trigger_index, trigger_index)
    np.testing.assert_allclose(speed.centre_speed_mm_per_s, expected, rtol=1e-9, equal_nan=True)
    toe = parts.index("toe")
    np.testing.assert_allclose(
        speed.part_speed_mm_per_s[:, toe],
        np.linalg.norm(np.gradient(points[:, toe], time_s, axis=0), axis=-1),
        rtol=1e-9,
        equal_nan=True,
    )
    np.testing.assert_allclose(
        speed.time_ms, (pulses[trigger_index] - jump.takeoff_sample) / rate_hz * 1e3
    )
    # In flight the centre moves about as fast as the jump's fitted take-off speed.
    flight = (speed.time_ms > 10) & (speed.time_ms < 100)
    in_flight = np.nanmedian(speed.centre_speed_mm_per_s[flight])
    still = np.nanmedian(speed.centre_speed_mm_per_s[speed.time_ms < -500])
    print(f"centre speed: {still:.0f} mm/s still, {in_flight:.0f} in flight ({takeoff_speed:.0f})")
    assert 0.6 * takeoff_speed < in_flight < 1.2 * takeoff_speed
    assert still < 0.1 * takeoff_speed


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_frame_accounting_matches_the_file(tracked_trial: Path, tmp_path: Path) -> None:
    accounts = {a.camera: a for a in frame_accounting(load_trial(tracked_trial))}
    with h5py.File(tracked_trial, "r") as f:
        pulses = int(f["daq/trigger_sample_index"].shape[0])
        assert list(accounts) == [str(name) for name in f["cameras"].attrs["names"]]
        for camera, account in accounts.items():
            group = f[f"cameras/{camera}"]
            assert account.pulses == pulses
            assert account.frames_written == group["trigger_index"].shape[0]
            assert account.frames_written + account.frames_dropped == pulses
            np.testing.assert_array_equal(
                account.dropped_trigger_indices, f[f"sim/dropped/{camera}"][:]
            )
            assert account.interval_clock == "device"
            np.testing.assert_allclose(
                account.interframe_interval_ms, np.diff(group["t_device_ns"][:]) / 1e6
            )
    left = accounts["cam_left"]
    assert left.dropped_trigger_indices.tolist() == DROPPED_CAM_LEFT
    # Two frames missing in a row leave a gap of three periods, one missing a gap of two.
    period_ms = float(np.median(left.interframe_interval_ms))
    gaps = np.round(left.interframe_interval_ms / period_ms).astype(int)
    assert sorted(gaps[gaps > 1].tolist()) == [2, 3]
    # A file the rig never finished has no dropped_trigger_indices: they come from the frames.
    unfinished = copy_without(
        tracked_trial,
        tmp_path,
        *(f"/cameras/{camera}/dropped_trigger_indices" for camera in accounts),
    )
    recomputed = {a.camera: a for a in frame_accounting(load_trial(unfinished))}
    for camera, account in accounts.items():
        np.testing.assert_array_equal(
            recomputed[camera].dropped_trigger_indices, account.dropped_trigger_indices
        )


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_summary_rows_are_the_events_values(tracked_trial: Path) -> None:
    data = load_trial(tracked_trial)
    rows = dict(summary_rows(data.jumps))
    with h5py.File(tracked_trial, "r") as f:
        table = f["events"][:]
    jump_rows = table[table["name"] == b"jump"]
    values = {row["value_name"].decode(): float(row["value"]) for row in jump_rows}
    assert rows["flight time (ms)"] == [f"{values['flight_time_s'] * 1000:.1f}"]
    assert rows["jump height, 3D (mm)"] == [f"{values['jump_height_mm']:.1f}"]
    assert rows["jump distance (mm)"] == [f"{values['jump_distance_mm']:.1f}"]
    assert rows["take-off speed (mm/s)"] == [f"{values['takeoff_speed_mm_per_s']:.0f}"]
    assert rows["peak push-off force (N)"] == [f"{values['peak_push_off_force_n']:.3f}"]
    emg = [name for name in values if name.startswith(EMG_ONSET_PREFIX)]
    assert emg
    for name in emg:
        channel = name[len(EMG_ONSET_PREFIX) :]
        assert rows[f"EMG onset {channel} (ms)"] == [f"{values[name] * 1000:.1f}"]


# --- files with less in them ---------------------------------------------------------------------


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_file_without_tracking(tracked_trial: Path, tmp_path: Path) -> None:
    untracked = copy_without(tracked_trial, tmp_path, "/pose2d", "/pose3d", "/events", "/tracking")
    out = tmp_path / "report"
    stream = io.StringIO()
    assert report_main(untracked, out, stream) == EXIT_OK
    stdout = stream.getvalue()
    print(stdout)
    assert "/pose3d" in stdout and "trajectory plot is skipped" in stdout
    assert "/events" in stdout
    identity = trial_id(untracked)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{identity}_{what}.png" for what in ("force_emg", "frame_accounting", "summary")
    )
    for png in out.iterdir():
        check_png(png, min_height=150)
    # Without a jump the force and EMG span the whole trial, timed from pulse 0.
    data = load_trial(untracked)
    assert data.jumps == () and data.pose3d is None and data.events is None
    traces = aligned_traces(data, None)
    assert traces.raw.shape == data.analog.shape
    assert traces.time_ms[int(data.pulse_samples[0])] == 0.0


@pytest.mark.timeout(TRIAL_TIMEOUT_S)
def test_several_jumps_get_a_figure_each(tracked_trial: Path, tmp_path: Path) -> None:
    data = load_trial(tracked_trial)
    assert data.events is not None
    shift_s = 0.25
    shifted = [
        JumpEvent(
            e.name,
            e.trigger_index + 50,
            e.daq_sample_index + round(shift_s * data.daq_rate_hz),
            e.t_s + shift_s,
            {
                k: v + shift_s
                if k.endswith("_s") and k != "flight_time_s" and not k.startswith(EMG_ONSET_PREFIX)
                else v
                for k, v in e.values.items()
            },
        )
        for e in data.events
    ]
    copy = copy_without(tracked_trial, tmp_path, "/events")
    with h5py.File(copy, "r+") as f:
        f.create_dataset("events", data=events_table([*data.events, *shifted]))
    out = tmp_path / "out"
    written = write_report(copy, out)
    names = sorted(p.name.removeprefix(data.trial_id + "_") for p in written)
    assert names == sorted(
        [
            "force_emg_jump1.png",
            "force_emg_jump2.png",
            "trajectory.png",
            "frame_accounting.png",
            "summary.png",
        ]
    )
    jumps = load_trial(copy).jumps
    assert [j.number for j in jumps] == [1, 2]
    assert jumps[1].takeoff_sample - jumps[0].takeoff_sample == pytest.approx(
        shift_s * data.daq_rate_hz
    )
    assert [len(values) for _, values in summary_rows(jumps)] == [2] * len(summary_rows(jumps))


def test_jumps_from_takeoff_events_when_the_summary_never_came() -> None:
    rate_hz, pulse0 = 10_000.0, 250
    events = [
        JumpEvent("crouch_onset", 100, 10_250, 1.0, {}),
        JumpEvent("takeoff", 140, 14_250, 1.4, {"peak_push_off_force_n": 0.8}),
        JumpEvent("landing", 170, 15_750, 1.55, {"flight_time_s": 0.15}),
        JumpEvent("takeoff", 400, 40_250, 4.0, {}),
        # Without pulses an event has no time: it cannot be placed, so it is left out.
        JumpEvent("takeoff", -1, 50_000, math.nan, {}),
    ]
    first, second = jumps_from_events(events, pulse0, rate_hz)
    assert first.takeoff_sample == pytest.approx(14_250)
    assert first.crouch_onset_sample == pytest.approx(10_250)
    assert first.landing_sample == pytest.approx(15_750)
    assert first.values == {"peak_push_off_force_n": 0.8, "flight_time_s": 0.15}
    assert second.takeoff_sample == pytest.approx(40_250)
    assert math.isnan(second.landing_sample) and math.isnan(second.crouch_onset_sample)
    summary = JumpEvent(
        "jump",
        140,
        14_250,
        1.4,
        {
            "takeoff_s": 1.4,
            "landing_s": 1.55,
            "crouch_onset_s": math.nan,
            f"{EMG_ONSET_PREFIX}emg_a": -0.04,
        },
    )
    (jump,) = jumps_from_events([*events, summary], pulse0, rate_hz)
    assert jump.landing_sample == pytest.approx(15_750)
    assert math.isnan(jump.crouch_onset_sample)
    assert jump.emg_onset_from_takeoff_s == {"emg_a": -0.04}


def test_emg_envelope_of_a_burst() -> None:
    rate_hz = 10_000.0
    rng = np.random.default_rng(3)
    signal = rng.normal(0.0, 0.01, 20_000) + 0.5
    burst = slice(8_000, 12_000)
    signal[burst] += 0.3 * np.sign(np.sin(np.arange(4_000) * 2 * np.pi * 200 / rate_hz))
    envelope = emg_envelope(signal, rate_hz)
    assert envelope.shape == signal.shape
    assert envelope[10_000] == pytest.approx(0.3, abs=0.02)
    assert envelope[2_000] == pytest.approx(0.008, abs=0.004)  # mean |noise| of SD 0.01
    with pytest.raises(ValueError, match=r"\(S,\)"):
        emg_envelope(np.zeros((3, 2)), rate_hz)


def test_long_traces_are_drawn_whole_as_minima_and_maxima() -> None:
    samples = 3 * MAX_DRAWN_POINTS + 17
    time = np.arange(samples) * 0.1
    values = np.sin(np.arange(samples) * 0.01)
    values[samples - 5] = 7.0  # a spike in the last, partial run
    values[100] = np.nan
    drawn_time, drawn = drawable_trace(time, values)
    assert drawn.size <= MAX_DRAWN_POINTS and drawn_time.shape == drawn.shape
    assert drawn_time[0] == time[0] and drawn_time[-1] > 0.99 * time[-1]
    assert np.nanmax(drawn) == 7.0 and np.nanmin(drawn) == pytest.approx(-1.0, abs=1e-3)
    assert not np.isnan(drawn).any()
    short_time, short = drawable_trace(time[:100], values[:100])
    np.testing.assert_array_equal(short_time, time[:100])
    np.testing.assert_array_equal(short, values[:100])


# --- files that are not trials -------------------------------------------------------------------


def test_a_file_that_is_not_hdf5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("not a trial\n")
    stream = io.StringIO()
    assert report_main(path, tmp_path / "out", stream) == EXIT_FAILED
    error = capsys.readouterr().err
    assert str(path) in error and "not an HDF5 file" in error
    assert not (tmp_path / "out").exists()
    assert stream.getvalue() == ""


def test_an_hdf5_file_that_is_not_a_trial(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
    errors = io.StringIO()
    assert report_main(path, None, io.StringIO(), error_stream=errors) == EXIT_FAILED
    assert "schema_version" in errors.getvalue() and "not a trial file" in errors.getvalue()
    assert list(tmp_path.iterdir()) == [path]


def test_a_missing_file(tmp_path: Path) -> None:
    errors = io.StringIO()
    assert report_main(tmp_path / "absent.h5", None, io.StringIO(), errors) == EXIT_FAILED
    assert "no such file" in errors.getvalue()
