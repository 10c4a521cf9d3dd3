"""A camera whose fetches time out or return unreadable buffers on a share of pulses (issue 7,
fault 6): each such frame is lost and counted as dropped with its trigger index, no frame id is
written twice, and nothing hangs."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zmq

from acquisition.cameras.simulated import SimulatedCamera
from acquisition.settings import CameraConfig, CameraFaultConfig, FaultsConfig, SimConfig
from acquisition.sim.faults import camera_fetch_fault, fetch_failed_trigger_indices
from acquisition.sim.skeleton import JumpModel
from acquisition.transport import TOPIC_TRIGGER, array_header, make_socket, send_message
from tests.faults.fault_trials import CAMERAS, fault_config, only_trial_file
from tests.rig.trial_configs import rig

SEED = 1


def test_fetch_faults_are_reproducible_and_take_their_share() -> None:
    faults = CameraFaultConfig(fetch_timeout_probability=0.1, fetch_error_probability=0.05)
    kinds = [camera_fetch_fault(faults, SEED, "cam_left", k) for k in range(5000)]
    again = [camera_fetch_fault(faults, SEED, "cam_left", k) for k in range(5000)]
    assert kinds == again
    timeouts, errors = kinds.count("timeout"), kinds.count("error")
    print(f"of 5000 fetches: {timeouts} timed out, {errors} returned an unreadable buffer")
    assert 0.08 < timeouts / 5000 < 0.12
    assert 0.035 < errors / 5000 < 0.065  # 5% of the fetches that did not time out
    other = [camera_fetch_fault(faults, SEED, "cam_right", k) for k in range(5000)]
    assert other != kinds
    listed = fetch_failed_trigger_indices(faults, SEED, "cam_left", 5000)
    np.testing.assert_array_equal(listed, [k for k, kind in enumerate(kinds) if kind])
    assert camera_fetch_fault(CameraFaultConfig(), SEED, "cam_left", 3) is None


def test_the_twin_camera_loses_failed_fetches_and_goes_on() -> None:
    """A timed-out fetch waits out the read's timeout and returns nothing; an unreadable one
    returns nothing at once; the next pulse's frame comes with its own frame id."""
    camera_faults = CameraFaultConfig(fetch_timeout_probability=0.2, fetch_error_probability=0.2)
    sim = SimConfig(faults=FaultsConfig(cameras={"cam_left": camera_faults}))
    pulses = 40
    kinds = [camera_fetch_fault(camera_faults, sim.seed, "cam_left", k) for k in range(pulses)]
    assert "timeout" in kinds and "error" in kinds and None in kinds
    context = zmq.Context()
    line = make_socket(context, zmq.PUB, "inproc://trigger_line", bind=True, hwm=100_000)
    camera = SimulatedCamera(
        CameraConfig(name="cam_left", width=64, height=48),
        sim,
        ["cam_left", "cam_right"],
        context,
        "inproc://trigger_line",
    )
    jump = JumpModel(sim.jump)
    read_timeout_s = 0.05
    try:
        camera.open()
        camera.arm()
        time.sleep(0.2)  # let the subscription reach the publisher
        for k in range(pulses):
            pose = jump.points_mm(np.array([k * 5e-3]))[0]
            header = array_header(
                "trigger_line", k, pose, trigger_index=k, extra={"t_twin_ns": k * 5_000_000}
            )
            send_message(line, TOPIC_TRIGGER, header, pose)
        seen: list[int] = []
        waits: dict[str, list[float]] = {"timeout": [], "error": [], "frame": []}
        for kind in kinds:
            started = time.monotonic()
            frame = camera.read(read_timeout_s)
            waited = time.monotonic() - started
            if kind is None:
                assert frame is not None
                assert frame.image.shape == (48, 64)
                seen.append(frame.frame_id)
                waits["frame"].append(waited)
            else:
                assert frame is None
                waits[kind].append(waited)
        print({kind: f"median {np.median(w) * 1e3:.1f} ms" for kind, w in waits.items()})
        assert seen == [k for k, kind in enumerate(kinds) if kind is None]
        assert camera.failed_fetches == [k for k, kind in enumerate(kinds) if kind]
        assert min(waits["timeout"]) >= read_timeout_s * 0.9  # the timeout is waited out
        assert camera.read(read_timeout_s) is None  # no more pulses: nothing, no hang
    finally:
        camera.close()
        line.close(linger=0)
        context.term()


@pytest.mark.timeout(300)
def test_a_trial_with_failing_fetches_accounts_for_every_lost_frame(tmp_path: Path) -> None:
    per_camera = {
        "cam_left": CameraFaultConfig(fetch_timeout_probability=0.03),
        "cam_right": CameraFaultConfig(fetch_error_probability=0.05),
        "cam_front": CameraFaultConfig(
            fetch_timeout_probability=0.02, fetch_error_probability=0.02
        ),
    }
    extra = "".join(
        f"[sim.faults.cameras.{name}]\n"
        f"fetch_timeout_probability = {faults.fetch_timeout_probability}\n"
        f"fetch_error_probability = {faults.fetch_error_probability}\n"
        for name, faults in per_camera.items()
    )
    config = fault_config(tmp_path, extra=extra, frame_size=(160, 120))
    out = tmp_path / "out"
    started = time.monotonic()
    result = rig("run", "--config", str(config), "--duration-s", "2", "--output", str(out))
    print(f"rig run took {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with h5py.File(only_trial_file(out), "r") as f:
        assert f.attrs["closed_cleanly"]
        assert f.attrs["accounting_balanced"]
        pulses = f["daq/trigger_sample_index"].shape[0]
        print(f"{pulses} pulses; stop decided {f.attrs['stop_requested_after_s']:.2f} s in")
        assert f.attrs["stop_requested_after_s"] < 4.0  # nothing held the trial up
        for camera in CAMERAS:
            group = f[f"cameras/{camera}"]
            frame_id = group["frame_id"][:]
            expected_lost = fetch_failed_trigger_indices(
                per_camera.get(camera, CameraFaultConfig()), SEED, camera, pulses
            )
            assert np.unique(frame_id).size == frame_id.size, f"{camera}: a frame id repeats"
            assert np.all(np.diff(frame_id) > 0)
            np.testing.assert_array_equal(group["trigger_index"][:], frame_id)
            np.testing.assert_array_equal(group["dropped_trigger_indices"][:], expected_lost)
            assert group.attrs["frames_dropped"] == expected_lost.size
            assert frame_id.size + expected_lost.size == pulses
            print(f"{camera}: {frame_id.size} frames, {expected_lost.size} lost to failed fetches")
        assert f["cameras/cam_left/dropped_trigger_indices"].shape[0] > 0
        assert f["cameras/cam_right/dropped_trigger_indices"].shape[0] > 0
