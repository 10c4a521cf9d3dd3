"""Messages over real ZeroMQ sockets: zero-copy arrays, headers, sequence accounting."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from acquisition.transport import (
    TOPIC_EOS,
    TOPIC_FRAME,
    Header,
    SequenceChecker,
    array_header,
    eos_header,
    make_socket,
    recv_message,
    send_message,
)


@pytest.fixture
def pair() -> tuple[zmq.Socket, zmq.Socket]:
    context = zmq.Context()
    pull = make_socket(context, zmq.PULL, "tcp://127.0.0.1:*", bind=True)
    endpoint = pull.getsockopt(zmq.LAST_ENDPOINT).decode()
    push = make_socket(context, zmq.PUSH, endpoint, bind=False)
    pull.setsockopt(zmq.RCVTIMEO, 5000)
    yield push, pull
    push.close(0)
    pull.close(0)
    context.term()


def test_array_arrives_bit_exact_with_its_header(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    push, pull = pair
    frame = np.random.default_rng(0).integers(0, 256, (480, 640), dtype=np.uint8)
    header = array_header("cam_left", 3, frame, frame_id=3, trigger_index=3, t_device_ns=42)
    send_message(push, TOPIC_FRAME, header, frame)
    message = recv_message(pull)
    assert message.topic == TOPIC_FRAME
    assert message.header == header
    np.testing.assert_array_equal(message.array(), frame)


def test_non_contiguous_arrays_are_sent_correctly(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    push, pull = pair
    data = np.arange(200, dtype=np.float32).reshape(20, 10)[:, ::2]
    send_message(push, TOPIC_FRAME, array_header("s", 0, data), data)
    np.testing.assert_array_equal(recv_message(pull).array(), data)


def test_header_round_trip_keeps_extras() -> None:
    header = eos_header("daq", 12, dropped_trigger_indices=[1, 5])
    again = Header.from_bytes(header.to_bytes())
    assert again == header
    assert again.extra["dropped_trigger_indices"] == [1, 5]


def test_end_of_stream_proves_nothing_was_lost(pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    push, pull = pair
    sent = [0, 1, 2, 4, 5, 8]  # 3, 6 and 7 "lost" on the way
    for seq in sent:
        send_message(push, TOPIC_FRAME, Header(stream="s", seq=seq, t_host_ns=0))
    send_message(push, TOPIC_EOS, eos_header("s", 10))
    checker = SequenceChecker()
    while True:
        message = recv_message(pull)
        if message.topic == TOPIC_EOS:
            checker.finish(message.header.seq)
            break
        checker.observe(message.header.seq)
    assert checker.received == len(sent)
    assert checker.lost == 4  # 3, 6, 7 in the gaps and 9 after the last message


def test_sequence_going_backwards_is_an_error() -> None:
    checker = SequenceChecker()
    checker.observe(0)
    checker.observe(1)
    with pytest.raises(ValueError, match="backwards"):
        checker.observe(1)
