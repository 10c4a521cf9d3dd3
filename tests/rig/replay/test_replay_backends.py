"""The replay devices in this process, without the rig around them: the DAQ gives back the
recorded samples block by block and waits for credit; the camera answers pulses with the
recorded frames and skips the pulses the recording has no frame for; the governor pauses the DAQ
while the writer is behind."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from replay_recordings import ROOT, SMALL_DROPPED

from acquisition.daq.interface import DaqBlock, rising_edges
from acquisition.settings import CameraConfig, DaqChannelConfig, DaqConfig
from acquisition.transport import TOPIC_TRIGGER, Header, send_message
from rig.config import RigConfig
from rig.replay.cameras import ReplayCamera
from rig.replay.config import ReplayConfigError, replay_config
from rig.replay.daq import ReplayDaq
from rig.replay.pacing import (
    PAUSE_BACKLOG_FRAMES,
    PAUSE_IN_FLIGHT_FRAMES,
    PULSE_WINDOW,
    REPLAY_MIN_BUFFERED_FRAMES,
    CreditSender,
    backlog_message,
    decode_credit_message,
)
from rig.replay.run import BacklogGovernor
from rig.replay.source import RecordedTrial, check_recording
from rig.supervisor import StatusSnapshot, TrialState
from rig.trialfile.reader import open_trial

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def recorded(small_recording: Path) -> RecordedTrial:
    return check_recording(small_recording)


@pytest.fixture(scope="module")
def config(recorded: RecordedTrial, tmp_path_factory: pytest.TempPathFactory) -> RigConfig:
    return replay_config(recorded, output_dir=tmp_path_factory.mktemp("out"))


def recorded_daq(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with open_trial(path) as trial:
        return trial.daq_analog(), trial.daq_trigger_line(), trial.trigger_sample_index()


def test_check_recording_describes_the_file(recorded: RecordedTrial, small_recording: Path) -> None:
    analog, _, pulses = recorded_daq(small_recording)
    assert recorded.samples == analog.shape[0]
    assert recorded.pulses == pulses.size
    assert recorded.duration_s == pytest.approx(analog.shape[0] / recorded.daq_rate_hz)
    by_name = {camera.name: camera for camera in recorded.cameras}
    assert by_name["cam_left"].pulses_without_frame == len(SMALL_DROPPED)
    assert by_name["cam_left"].frames == recorded.pulses - len(SMALL_DROPPED)
    assert by_name["cam_top"].pulses_without_frame == 0
    assert (by_name["cam_top"].height, by_name["cam_top"].width) == (48, 64)
    assert recorded.has_twin_truth


def test_replay_config_swaps_the_devices(config: RigConfig, recorded: RecordedTrial) -> None:
    assert all(camera.backend == "sim" for camera in config.cameras)
    assert all(
        camera.max_buffered_frames >= REPLAY_MIN_BUFFERED_FRAMES for camera in config.cameras
    )
    assert config.daq.backend == "sim"
    assert config.trigger.source == "daq_counter"
    assert config.sim.faults.cameras == {}
    assert config.trial.duration_s == pytest.approx(recorded.duration_s)
    assert config.tracking.enabled is False
    assert str(recorded.path) in config.source_path


def test_replay_config_takes_model_and_calibration(recorded: RecordedTrial, tmp_path: Path) -> None:
    from replay_recordings import MODEL_DIR

    calibration = tmp_path / "calibration.toml"
    calibration.write_text("# read only when the trial starts\n")
    config = replay_config(recorded, output_dir=tmp_path, model=MODEL_DIR, calibration=calibration)
    assert config.tracking.enabled
    assert config.tracking.model == str(MODEL_DIR.resolve())
    assert config.tracking.calibration == str(calibration.resolve())
    with pytest.raises(ReplayConfigError, match=r"tracking\.model"):
        replay_config(recorded, output_dir=tmp_path, model=tmp_path / "no-model")
    off = replay_config(recorded, output_dir=tmp_path, model=MODEL_DIR, tracking=False)
    assert not off.tracking.enabled


def test_a_recording_made_over_several_hosts_replays_on_one(
    recorded: RecordedTrial, tmp_path: Path
) -> None:
    """The recorded [endpoints] and [remote] (tcp:// on other hosts) do not carry over: the
    replay runs here, on ipc:// sockets (found by replaying a trial of config/multi-host.toml)."""
    import dataclasses
    import tomllib

    import tomli_w

    table = tomllib.loads(recorded.config_toml)
    multi_host = tomllib.loads((ROOT / "config" / "multi-host.toml").read_text())
    table.update(endpoints=multi_host["endpoints"], remote=multi_host["remote"])
    other = dataclasses.replace(recorded, config_toml=tomli_w.dumps(table))
    config = replay_config(other, output_dir=tmp_path)
    assert config.remote.roles == ()
    assert config.endpoints.control == "" and config.endpoints.live_frames == {}


def test_replay_config_must_match_the_file(recorded: RecordedTrial, tmp_path: Path) -> None:
    import dataclasses

    other = dataclasses.replace(
        recorded, config_toml=recorded.config_toml.replace('name = "cam_top"', 'name = "cam_x"')
    )
    with pytest.raises(ReplayConfigError, match=r"cameras .* the file has"):
        replay_config(other, output_dir=tmp_path)
    broken = dataclasses.replace(recorded, config_toml="[trial\n")
    with pytest.raises(ReplayConfigError, match="not valid TOML"):
        replay_config(broken, output_dir=tmp_path)


def read_all_blocks(daq: ReplayDaq) -> list[DaqBlock]:
    blocks = []
    daq.start()
    while daq.samples_due() > 0:
        block = daq.read_block(timeout_s=0.5)
        assert block is not None
        blocks.append(block)
    assert daq.read_block(timeout_s=0.01) is None
    return blocks


def test_replay_daq_gives_back_every_sample(small_recording: Path, config: RigConfig) -> None:
    analog, line, pulses = recorded_daq(small_recording)
    with ReplayDaq(small_recording, config.daq) as daq:
        blocks = read_all_blocks(daq)
    assert [block.first_sample_index for block in blocks] == list(
        np.cumsum([0] + [block.n_samples for block in blocks[:-1]])
    )
    # Every block is a whole block, or the tail joined to the last one.
    assert all(block.n_samples == config.daq.block_samples for block in blocks[:-1])
    assert config.daq.block_samples <= blocks[-1].n_samples < 2 * config.daq.block_samples
    np.testing.assert_array_equal(np.concatenate([b.analog for b in blocks]), analog)
    replayed_line = np.concatenate([b.trigger_line for b in blocks])
    np.testing.assert_array_equal(replayed_line, line)
    np.testing.assert_array_equal(rising_edges(replayed_line, 0, 0), pulses)


def test_replay_daq_paces_at_the_given_speed(small_recording: Path, config: RigConfig) -> None:
    with ReplayDaq(small_recording, config.daq, speed_factor=4.0) as daq:
        started = time.monotonic()
        read_all_blocks(daq)
        elapsed_s = time.monotonic() - started
    recorded_s = daq.samples_recorded / config.daq.rate_hz
    print(f"{recorded_s:.3f} s replayed at 4x in {elapsed_s:.3f} s")
    assert elapsed_s >= recorded_s / 4 * 0.99


def test_replay_daq_waits_for_camera_credit(small_recording: Path, config: RigConfig) -> None:
    _, _, pulses = recorded_daq(small_recording)
    context = zmq.Context()
    endpoint = "inproc://credit"
    try:
        with ReplayDaq(small_recording, config.daq, math.inf, endpoint, context) as daq:
            sender = context.socket(zmq.PUSH)
            sender.connect(endpoint)
            daq.start()
            blocks = []
            while (block := daq.read_block(timeout_s=0.05)) is not None:
                blocks.append(block)
            samples = blocks[-1].first_sample_index + blocks[-1].n_samples
            emitted = int(np.searchsorted(pulses, samples))
            # No camera has delivered a frame: at most PULSE_WINDOW pulses went out.
            assert PULSE_WINDOW - 2 <= emitted <= PULSE_WINDOW + 1
            for camera in config.camera_names:
                message = {"camera": camera, "frames": 1_000_000}
                sender.send(json.dumps(message).encode())
            sender.send(backlog_message(True))
            time.sleep(0.05)
            assert daq.read_block(timeout_s=0.05) is None  # the writer is behind
            assert daq.credit_waits > 0
            sender.send(backlog_message(False))
            while daq.samples_due() > 0:
                assert daq.read_block(timeout_s=1.0) is not None
            sender.close(linger=0)
    finally:
        context.term()


def test_replay_daq_stops_waiting_for_a_stalled_camera(
    small_recording: Path, config: RigConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rig.replay.daq.CAMERA_STALL_S", 0.2)
    context = zmq.Context()
    try:
        with ReplayDaq(small_recording, config.daq, math.inf, "inproc://credit", context) as daq:
            daq.start()
            # No camera ever reports: after the stall time the DAQ plays on to the end.
            while daq.samples_due() > 0:
                daq.read_block(timeout_s=0.05)
            assert daq.credit_waits > 0
    finally:
        context.term()


def test_replay_camera_answers_pulses_with_recorded_frames(
    small_recording: Path, config: RigConfig
) -> None:
    with open_trial(small_recording) as trial:
        frames = trial.frames("cam_left")
        table = trial.frame_table("cam_left")
        pulses = trial.trigger_sample_index().size
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.bind("inproc://trigger_line")
    camera_config = next(c for c in config.cameras if c.name == "cam_left")
    camera = ReplayCamera(small_recording, camera_config, context, "inproc://trigger_line")
    try:
        with camera:
            camera.arm()
            time.sleep(0.05)  # the subscription reaches the publisher
            for pulse in range(pulses):
                header = Header(stream="trigger_line", seq=pulse, t_host_ns=0, trigger_index=pulse)
                send_message(publisher, TOPIC_TRIGGER, header)
            replayed = []
            while (frame := camera.read(timeout_s=0.2)) is not None:
                replayed.append(frame)
            assert camera.pulses_without_frame == len(SMALL_DROPPED)
            assert camera.info()["frames_recorded"] == frames.shape[0]
    finally:
        publisher.close(linger=0)
        context.term()
    assert len(replayed) == frames.shape[0]
    assert [f.frame_id for f in replayed] == table["frame_id"].tolist()
    assert [f.t_device_ns for f in replayed] == table["t_device_ns"].tolist()
    np.testing.assert_array_equal(np.stack([f.image for f in replayed]), frames)


def test_replay_camera_refuses_a_wrong_frame_size(small_recording: Path) -> None:
    context = zmq.Context()
    camera = ReplayCamera(
        small_recording, CameraConfig(name="cam_left", width=640, height=480), context, "inproc://x"
    )
    try:
        with pytest.raises(ValueError, match="recorded 64x48 frames, the config says 640x480"):
            camera.open()
        camera.close()
    finally:
        context.term()


def test_replay_daq_refuses_other_channels(small_recording: Path) -> None:
    config = DaqConfig(channels=(DaqChannelConfig(name="emg", kind="emg"),))
    with pytest.raises(ValueError, match="recorded channels"):
        ReplayDaq(small_recording, config).open()


def status(frames: int, recorded: int, buffered: int = 0) -> StatusSnapshot:
    names = ("cam_left", "cam_right")
    return StatusSnapshot(
        state=TrialState.STOPPING,
        elapsed_s=1.0,
        frames=dict.fromkeys(names, frames),
        dropped=dict.fromkeys(names, 0),
        buffered={"cam_left": 0, "cam_right": buffered},
        daq_samples=0,
        pulses=frames,
        recorded_frames=dict.fromkeys(names, recorded),
    )


def test_backlog_governor_pauses_while_the_writer_is_behind(recorded: RecordedTrial) -> None:
    context = zmq.Context()
    receiver = context.socket(zmq.PULL)
    receiver.bind("inproc://governor")
    shown: list[StatusSnapshot] = []
    sender = CreditSender(context, "inproc://governor")
    governor = BacklogGovernor(sender, recorded, shown.append)

    def sent() -> list[bool]:
        messages = []
        while receiver.poll(50):
            messages.append(decode_credit_message(receiver.recv())["writer_backlog"])
        return messages

    try:
        governor(status(frames=100, recorded=90))
        assert sent() == []
        governor(status(frames=100 + PAUSE_IN_FLIGHT_FRAMES + 1, recorded=100))
        assert sent() == [True]
        governor(status(frames=2000, recorded=1500))  # still behind: nothing new
        assert sent() == []
        governor(status(frames=2000, recorded=1990))
        assert sent() == [False]
        governor(status(frames=2000, recorded=1990, buffered=PAUSE_BACKLOG_FRAMES + 1))
        assert sent() == [True]
        assert governor.pauses == 2
        assert governor.peak_in_flight_frames == PAUSE_IN_FLIGHT_FRAMES + 1
        assert governor.peak_backlog_frames == PAUSE_BACKLOG_FRAMES + 1
        # Until everything is delivered the console is told the replay runs.
        assert shown[0].state is TrialState.RUNNING
        assert governor.delivered_after_s is None
    finally:
        sender.close()
        receiver.close(linger=0)
        context.term()
