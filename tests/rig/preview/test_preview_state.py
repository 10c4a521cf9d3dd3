"""The preview's state, fed over real ZeroMQ: PUB sockets connected to the receiver's SUB."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq

from acquisition.daq.interface import DaqBlock, pack_block
from acquisition.transport import (
    LATEST_HWM,
    TOPIC_DAQ,
    TOPIC_EOS,
    TOPIC_JUMP,
    TOPIC_LIVE_FRAME,
    TOPIC_POSE2D,
    TOPIC_POSE3D,
    TOPIC_STATUS,
    Header,
    array_header,
    eos_header,
    make_socket,
    send_message,
)
from rig.config import RigConfig
from rig.preview.layout import layout_from_config
from rig.preview.receiver import FeedReceiver
from rig.preview.state import PreviewState
from tracking.triangulator_process import pose3d_record_dtype

WAIT_S = 5.0
K = 10


@dataclass
class Feed:
    state: PreviewState
    receiver: FeedReceiver
    publisher: zmq.Socket
    context: zmq.Context

    def send(self, topic: bytes, header: Header, payload: np.ndarray | bytes = b"") -> None:
        version = self.state.version
        send_message(self.publisher, topic, header, payload)
        wait_until(lambda: self.state.version > version)

    def connect_another(self) -> zmq.Socket:
        socket = make_socket(self.context, zmq.PUB, self.receiver.endpoint, bind=False)
        prime(socket, self.state)
        return socket


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the preview's state did not change in time")
        time.sleep(0.002)


def prime(socket: zmq.Socket, state: PreviewState) -> None:
    """Send harmless messages until one arrives: PUB drops what it sends before it is connected."""
    deadline = time.monotonic() + WAIT_S
    before = state.snapshot()["feed"]["messages"].get("prime", 0)
    while state.snapshot()["feed"]["messages"].get("prime", 0) == before:
        if time.monotonic() > deadline:
            raise TimeoutError("the publisher never reached the preview")
        send_message(socket, b"prime", Header("prime", 0, time.monotonic_ns()))
        time.sleep(0.01)


@pytest.fixture
def feed(rig_config: RigConfig, tmp_path: Path) -> Iterator[Feed]:
    context = zmq.Context()
    state = PreviewState(layout_from_config(rig_config))
    receiver = FeedReceiver(context, f"ipc://{tmp_path}/monitor", state)
    receiver.start()
    publisher = make_socket(context, zmq.PUB, receiver.endpoint, bind=False)
    try:
        prime(publisher, state)
        yield Feed(state, receiver, publisher, context)
    finally:
        publisher.close(linger=0)
        receiver.stop()
        context.term()


def frame_of(value: int, height: int = 240, width: int = 320) -> np.ndarray:
    """A smooth test picture (JPEG keeps it close), different for each value."""
    y, x = np.mgrid[0:height, 0:width]
    return ((x + 2 * y + 7 * value) % 256).astype(np.uint8)


def send_frame(feed: Feed, camera: str, trigger_index: int, seq: int | None = None) -> np.ndarray:
    frame = frame_of(trigger_index)
    header = array_header(
        camera,
        trigger_index if seq is None else seq,
        frame,
        frame_id=trigger_index,
        trigger_index=trigger_index,
    )
    feed.send(TOPIC_LIVE_FRAME, header, frame)
    return frame


def send_pose(feed: Feed, camera: str, trigger_index: int, seq: int, x: float) -> None:
    pose = np.zeros((K, 3), dtype=np.float32)
    pose[:, 0] = x
    pose[:, 1] = np.arange(K)
    pose[:, 2] = 0.9
    header = array_header(
        "pose2d/" + camera, seq, pose, trigger_index=trigger_index, frame_id=trigger_index
    )
    feed.send(TOPIC_POSE2D, header, pose)


def send_daq(feed: Feed, first_sample: int, analog: np.ndarray, seq: int) -> None:
    block = DaqBlock(
        first_sample, analog, np.zeros(analog.shape[0], dtype=np.uint8), time.monotonic_ns()
    )
    header = Header(
        stream="daq",
        seq=seq,
        t_host_ns=block.t_host_ns,
        shape=(analog.shape[0],),
        dtype="daq_block",
        extra={"first_sample_index": first_sample, "n_channels": analog.shape[1]},
    )
    feed.send(TOPIC_DAQ, header, pack_block(block))


def send_status(feed: Feed, trial_id: str, seq: int, **fields: Any) -> None:
    extra = {
        "trial_id": trial_id,
        "state": "running",
        "elapsed_s": 1.5,
        "frames": {"cam_left": 300},
        "dropped": {"cam_left": 2},
        "daq_samples": 15000,
        "pulses": 300,
        **fields,
    }
    feed.send(TOPIC_STATUS, Header("status", seq, time.monotonic_ns(), extra=extra))


def strict_json(raw: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(raw, parse_constant=refuse)


# --- frames ----------------------------------------------------------------------------------


def test_the_newest_frame_is_kept_and_encoded_only_when_asked(feed: Feed) -> None:
    for trigger_index in range(5):
        send_frame(feed, "cam_left", trigger_index)
    camera = feed.state.snapshot()["cameras"]["cam_left"]
    assert camera["frame_seq"] == 5
    assert camera["frame_id"] == 4
    assert (camera["width"], camera["height"]) == (320, 240)
    # Nobody looked: nothing was encoded.
    assert feed.state.jpeg_encodes()["cam_left"] == 0
    jpeg = feed.state.jpeg("cam_left")
    assert jpeg is not None
    assert (jpeg.frame_seq, jpeg.trigger_index) == (5, 4)
    decoded = cv2.imdecode(np.frombuffer(jpeg.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    difference = np.abs(decoded.astype(int) - frame_of(4).astype(int))
    assert decoded.shape == (240, 320)
    assert np.median(difference) <= 3
    # Asked again (another browser): the same bytes, no second encoding.
    again = feed.state.jpeg("cam_left")
    assert again is not None
    assert again.jpeg == jpeg.jpeg
    assert feed.state.jpeg_encodes()["cam_left"] == 1
    send_frame(feed, "cam_left", 5)
    newer = feed.state.jpeg("cam_left")
    assert newer is not None
    assert newer.frame_seq == 6
    assert feed.state.jpeg_encodes()["cam_left"] == 2


def test_no_frame_yet_and_unknown_cameras(feed: Feed) -> None:
    assert feed.state.jpeg("cam_right") is None
    with pytest.raises(KeyError):
        feed.state.jpeg("no_such_camera")
    # A camera the config does not name is shown all the same.
    send_frame(feed, "cam_extra", 0)
    assert "cam_extra" in feed.state.snapshot()["cameras"]
    assert feed.state.jpeg("cam_extra") is not None


def test_wide_frames_are_shrunk_before_encoding(rig_config: RigConfig) -> None:
    from acquisition.transport import Message

    state = PreviewState(layout_from_config(rig_config), max_frame_width_px=160)
    frame = frame_of(3)
    state.apply(Message(TOPIC_LIVE_FRAME, array_header("cam_top", 0, frame), frame.tobytes()))
    jpeg = state.jpeg("cam_top")
    assert jpeg is not None
    decoded = cv2.imdecode(np.frombuffer(jpeg.jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (120, 160)


def test_the_pose_nearest_the_frame_comes_with_it(feed: Feed) -> None:
    send_frame(feed, "cam_front", 100)
    jpeg = feed.state.jpeg("cam_front")
    assert jpeg is not None and jpeg.pose is None
    send_pose(feed, "cam_front", 90, 0, x=1.0)
    send_pose(feed, "cam_front", 102, 1, x=2.0)
    send_pose(feed, "cam_front", 120, 2, x=3.0)
    jpeg = feed.state.jpeg("cam_front")
    assert jpeg is not None and jpeg.pose is not None
    assert jpeg.pose["trigger_index"] == 102
    assert jpeg.pose["points"][0] == [2.0, 0.0, 0.9]
    assert len(jpeg.pose["points"]) == K
    # Encoded once; the pose is looked up at every request.
    assert feed.state.jpeg_encodes()["cam_front"] == 1
    camera = feed.state.snapshot()["cameras"]["cam_front"]
    assert camera["pose_trigger_index"] == 120
    assert camera["poses_received"] == 3


def test_a_pose_too_far_from_the_frame_is_not_drawn_on_it(
    feed: Feed, rig_config: RigConfig
) -> None:
    max_age = round(feed.state.layout.pose_max_age_s * rig_config.trigger.rate_hz)
    send_frame(feed, "cam_left", 1000)
    send_pose(feed, "cam_left", 1000 - max_age - 1, 0, x=5.0)
    jpeg = feed.state.jpeg("cam_left")
    assert jpeg is not None and jpeg.pose is None


def test_a_flood_of_frames_leaves_only_the_newest(feed: Feed) -> None:
    """The rig sends without waiting (PUB drops at its high-water mark, never blocks), and
    whatever got through, the preview ends up holding the newest frame."""
    publisher = make_socket(
        feed.context, zmq.PUB, feed.receiver.endpoint, bind=False, hwm=LATEST_HWM
    )
    try:
        prime(publisher, feed.state)
        frame = frame_of(0)
        started = time.monotonic()
        for trigger_index in range(2000):
            header = array_header(
                "cam_top", trigger_index, frame, frame_id=trigger_index, trigger_index=trigger_index
            )
            send_message(publisher, TOPIC_LIVE_FRAME, header, frame, flags=zmq.NOBLOCK)
        print(f"2000 frames offered in {(time.monotonic() - started) * 1e3:.0f} ms")
        # The last one may have been dropped too: offer a final frame until it arrives.
        final = array_header("cam_top", 2000, frame, frame_id=2000, trigger_index=2000)
        deadline = time.monotonic() + WAIT_S
        while feed.state.snapshot()["cameras"]["cam_top"]["frame_id"] != 2000:
            assert time.monotonic() < deadline, "the newest frame never arrived"
            send_message(publisher, TOPIC_LIVE_FRAME, final, frame, flags=zmq.NOBLOCK)
            time.sleep(0.01)
        camera = feed.state.snapshot()["cameras"]["cam_top"]
        print(f"{camera['frames_received']} of the 2000 + final frames reached the preview")
        assert 1 <= camera["frames_received"] <= 2000 + 500
        jpeg = feed.state.jpeg("cam_top")
        assert jpeg is not None and jpeg.frame_id == 2000
    finally:
        publisher.close(linger=0)


# --- 3D, DAQ, jumps, status -------------------------------------------------------------------


def test_3d_poses_and_the_trajectory(feed: Feed, rig_config: RigConfig) -> None:
    cameras = list(rig_config.camera_names)
    for seq, trigger_index in enumerate((10, 20, 30)):
        record = np.zeros(1, dtype=pose3d_record_dtype(K, len(cameras)))
        record["points"][0] = np.arange(K * 3, dtype=np.float32).reshape(K, 3) + trigger_index
        record["points"][0, 3] = np.nan  # a part nobody saw
        record["reprojection_error"][0] = 1.25
        record["cameras_used"][0, :, :2] = True
        header = Header(
            "pose3d",
            seq,
            time.monotonic_ns(),
            trigger_index=trigger_index,
            shape=(1,),
            dtype="pose3d_record",
            extra={"parts": K, "cameras": cameras},
        )
        feed.send(TOPIC_POSE3D, header, record)
    raw = feed.state.snapshot_json()
    snapshot = strict_json(raw)
    pose3d = snapshot["pose3d"]
    assert pose3d["trigger_index"] == 30
    assert pose3d["points"][0] == [30.0, 31.0, 32.0]
    assert pose3d["points"][3] == [None, None, None]
    assert pose3d["reprojection_error"][0] == 1.25
    assert pose3d["cameras_used"] == [2] * K
    assert pose3d["cameras"] == cameras
    # The trajectory: centre of the parts seen, (trigger index, x, z), oldest first.
    seen = np.delete(np.arange(K * 3, dtype=float).reshape(K, 3), 3, axis=0).mean(axis=0)
    assert [row[0] for row in snapshot["trajectory"]] == [10, 20, 30]
    assert snapshot["trajectory"][-1][1:] == pytest.approx([seen[0] + 30, seen[2] + 30], abs=0.01)


def test_a_malformed_message_is_counted_and_the_feed_goes_on(feed: Feed) -> None:
    header = Header("pose3d", 0, time.monotonic_ns(), extra={"parts": K, "cameras": ["a", "b"]})
    send_message(feed.publisher, TOPIC_POSE3D, header, b"too short")
    send_message(feed.publisher, b"mystery", Header("mystery", 0, time.monotonic_ns()))
    # A message that is not [topic, header, payload] at all.
    feed.publisher.send_multipart([TOPIC_DAQ, b"not json"])
    wait_until(lambda: feed.receiver.bad_messages >= 2)
    send_frame(feed, "cam_left", 7)
    snapshot = feed.state.snapshot()
    assert snapshot["feed"]["bad_messages"] == 1
    assert "pose3d" in snapshot["feed"]["last_bad"]
    assert snapshot["feed"]["messages"]["mystery"] == 1
    assert snapshot["feed"]["unknown_topics"] >= 1
    assert snapshot["cameras"]["cam_left"]["frame_id"] == 7


def test_force_and_emg_traces(feed: Feed, rig_config: RigConfig) -> None:
    n_channels = len(rig_config.daq.channels)
    rng = np.random.default_rng(5)
    samples = rng.standard_normal((3000, n_channels)).astype(np.float32)
    samples[:, -1] += 10.0
    for seq, start in enumerate(range(0, 3000, 100)):
        send_daq(feed, start, samples[start : start + 100], seq)
    traces = strict_json(feed.state.snapshot_json())["traces"]
    layout = feed.state.layout
    spb = traces["samples_per_bin"]
    assert spb == round(rig_config.daq.rate_hz / layout.trace_bins_per_s)
    assert len(traces["channels"]) == len(layout.channels)
    assert traces["end_sample"] == 3000
    assert (traces["first_bin"], traces["last_bin"]) == (0, 3000 // spb - 1)
    for channel, trace in zip(layout.channels, traces["channels"], strict=True):
        column = samples[:, channel.column].reshape(-1, spb)
        np.testing.assert_allclose(trace["low"], column.min(axis=1), rtol=1e-3, atol=2e-3)
        np.testing.assert_allclose(trace["high"], column.max(axis=1), rtol=1e-3, atol=2e-3)
    # A page that has the window already asks for what is new.
    send_daq(feed, 3000, samples[:100], 30)
    newer = feed.state.snapshot(trace_from_bin=traces["last_bin"])["traces"]
    assert newer["first_bin"] == traces["last_bin"]
    assert newer["last_bin"] == 3100 // spb - 1


def test_jump_phase_events_and_numbers(feed: Feed) -> None:
    values = {"jump_height_mm": 31.5, "flight_time_s": 0.155, "takeoff_angle_deg": math.nan}
    events = [
        {"name": "takeoff", "trigger_index": 146, "daq_sample_index": 7300, "t_s": 0.73},
        {
            "name": "jump",
            "trigger_index": 146,
            "daq_sample_index": 7300,
            "t_s": 0.73,
            "values": values,
        },
    ]
    extra = {"phase": "flight", "events": events, "last_jump": None}
    feed.send(TOPIC_JUMP, Header("jumps", 0, time.monotonic_ns(), extra=extra))
    jump = strict_json(feed.state.snapshot_json())["jump"]
    assert jump["phase"] == "flight"
    assert [event["name"] for event in jump["events"]] == ["takeoff", "jump"]
    assert jump["jumps_seen"] == 1
    assert jump["last_jump"] == {
        "jump_height_mm": 31.5,
        "flight_time_s": 0.155,
        "takeoff_angle_deg": None,
    }
    # A later message with the detector's own last_jump replaces it; no events: none added.
    extra = {"phase": "landing", "events": [], "last_jump": {"jump_height_mm": 30.0}}
    feed.send(TOPIC_JUMP, Header("jumps", 1, time.monotonic_ns(), extra=extra))
    jump = feed.state.snapshot()["jump"]
    assert jump["phase"] == "landing"
    assert len(jump["events"]) == 2
    assert jump["last_jump"] == {"jump_height_mm": 30.0}


def test_status_and_a_new_trial_clears_the_old_ones_data(feed: Feed) -> None:
    send_status(feed, "trial_0001", 0)
    send_frame(feed, "cam_left", 3)
    send_pose(feed, "cam_left", 3, 0, x=1.0)
    send_daq(feed, 0, np.ones((100, 6), dtype=np.float32), 0)
    extra = {"phase": "crouch", "events": [], "last_jump": {"jump_height_mm": 30.0}}
    feed.send(TOPIC_JUMP, Header("jumps", 0, time.monotonic_ns(), extra=extra))
    snapshot = feed.state.snapshot()
    assert snapshot["trial"]["trial_id"] == "trial_0001"
    assert snapshot["trial"]["status"]["dropped"] == {"cam_left": 2}
    assert snapshot["trial"]["status_age_s"] >= 0
    assert snapshot["jump"]["phase"] == "crouch"

    send_status(feed, "trial_0002", 1, state="armed")
    snapshot = feed.state.snapshot()
    assert snapshot["trial"]["trial_id"] == "trial_0002"
    assert snapshot["trial"]["trials_seen"] == 2
    assert snapshot["trial"]["status"]["state"] == "armed"
    assert snapshot["jump"] == {"phase": "", "events": [], "last_jump": None, "jumps_seen": 0}
    assert snapshot["traces"]["last_bin"] == -1
    assert snapshot["traces"]["generation"] == 1
    camera = snapshot["cameras"]["cam_left"]
    assert camera["poses_received"] == 0 and camera["pose_trigger_index"] is None
    # The newest picture stays on screen until the new trial's frames come.
    assert camera["frame_seq"] == 1
    assert feed.state.jpeg("cam_left") is not None


def test_the_status_phase_is_shown_without_a_jump_detector(feed: Feed) -> None:
    send_status(feed, "trial_0001", 0, phase="still")
    assert feed.state.snapshot()["jump"]["phase"] == "still"


def test_sequence_gaps_are_counted_and_restarts_are_not_gaps(feed: Feed) -> None:
    for seq in (0, 1, 5):  # 3 lost
        send_pose(feed, "cam_right", trigger_index=10 * seq, seq=seq, x=1.0)
    send_message(feed.publisher, TOPIC_EOS, eos_header("pose2d/cam_right", 6))
    send_pose(feed, "cam_right", trigger_index=0, seq=0, x=1.0)  # the next trial's process
    # Live frames come decimated (seq = frame id): their gaps are by design.
    send_frame(feed, "cam_right", 0)
    send_frame(feed, "cam_right", 7)
    assert feed.state.snapshot()["feed"]["seq_gaps"] == 3


def test_several_publishers_reach_one_preview(feed: Feed) -> None:
    others = [feed.connect_another() for _ in range(3)]
    try:
        for index, socket in enumerate(others):
            frame = frame_of(index)
            header = array_header(f"cam_{index}", 0, frame, frame_id=index, trigger_index=index)
            send_message(socket, TOPIC_LIVE_FRAME, header, frame)
        wait_until(lambda: {"cam_0", "cam_1", "cam_2"} <= set(feed.state.camera_names()))
    finally:
        for socket in others:
            socket.close(linger=0)


def test_the_state_json_is_reused_until_something_changes(feed: Feed) -> None:
    first = feed.state.snapshot_json()
    assert feed.state.snapshot_json() is first
    send_frame(feed, "cam_left", 1)
    assert feed.state.snapshot_json() is not first


def test_the_receiver_refuses_a_tcp_address_in_use(rig_config: RigConfig) -> None:
    context = zmq.Context()
    first = FeedReceiver(context, "tcp://127.0.0.1:*", PreviewState(layout_from_config(rig_config)))
    try:
        assert first.endpoint.startswith("tcp://127.0.0.1:")
        with pytest.raises(zmq.ZMQError):
            FeedReceiver(context, first.endpoint, PreviewState(layout_from_config(rig_config)))
    finally:
        first.stop()
        context.term()


def test_an_empty_endpoint_is_refused(rig_config: RigConfig) -> None:
    context = zmq.Context()
    try:
        with pytest.raises(ValueError, match="endpoint"):
            FeedReceiver(context, "", PreviewState(layout_from_config(rig_config)))
    finally:
        context.term()
