"""Which frames the live pose process infers: a trigger index its cameras share."""

from __future__ import annotations

import numpy as np
import zmq

from acquisition.transport import TOPIC_LIVE_FRAME, Message, array_header, make_socket, send_message
from tracking.pose_process import WAITING_FRAMES, _take_waiting, choose_trigger_index


def frame(index: int) -> Message:
    image = np.zeros((2, 2), np.uint8)
    return Message(TOPIC_LIVE_FRAME, array_header("cam", index, image, trigger_index=index), b"")


def test_the_newest_index_two_cameras_share_is_chosen() -> None:
    waiting = {
        "cam_left": {30: frame(30), 40: frame(40), 50: frame(50)},
        "cam_right": {30: frame(30), 40: frame(40)},  # lagging behind
        "cam_top": {20: frame(20), 40: frame(40)},
    }
    assert choose_trigger_index(waiting) == 40


def test_without_a_shared_index_the_newest_is_chosen() -> None:
    assert choose_trigger_index({"cam_left": {10: frame(10), 20: frame(20)}}) == 20
    assert choose_trigger_index({"a": {10: frame(10)}, "b": {30: frame(30)}}) == 30
    assert choose_trigger_index({"a": {}, "b": {}}) is None


def test_waiting_frames_keep_the_newest_multiples_only() -> None:
    context = zmq.Context()
    try:
        endpoint = "inproc://live"
        publisher = make_socket(context, zmq.PAIR, endpoint, bind=True)
        receiver = make_socket(context, zmq.PAIR, endpoint, bind=False)
        image = np.zeros((2, 2), np.uint8)
        for index in range(0, 100):
            header = array_header("cam", index, image, trigger_index=index)
            send_message(publisher, TOPIC_LIVE_FRAME, header, image)
        waiting: dict[int, Message] = {}
        deadline = 0
        while len(waiting) < WAITING_FRAMES or max(waiting) < 90:
            _take_waiting(receiver, waiting, every_n=10)
            deadline += 1
            assert deadline < 10_000
        assert sorted(waiting) == [90 - 10 * k for k in range(WAITING_FRAMES)][::-1]
        publisher.close(linger=0)
        receiver.close(linger=0)
    finally:
        context.term()
