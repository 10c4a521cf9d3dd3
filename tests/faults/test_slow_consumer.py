"""A slow consumer on a ZeroMQ stream (issue 7, fault 9), on real sockets with the rig's own
pieces: the camera process's live publisher (PUB, LATEST_HWM) and lossless sender (PUSH with its
bounded backlog), the pose process's newest-frame reader, and SequenceChecker.

- The tracking path keeps only the newest frames: a slow consumer skips frames, and counts
  exactly which from the sequence numbers (the frame ids): inferred + skipped = published.
- The recording path loses nothing: a slow writer gets every frame, in order, intact.
- Neither slows the producer down (the camera loop never waits on a consumer).
"""

from __future__ import annotations

import collections
import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import zmq

from acquisition.camera_process import _publish_live, _send_backlog
from acquisition.cameras.interface import CameraFrame
from acquisition.frame_codec import encode_frame_chunk
from acquisition.transport import (
    ENCODING_H5CHUNK,
    LATEST_HWM,
    TOPIC_EOS,
    TOPIC_LIVE_FRAME,
    Header,
    Message,
    SequenceChecker,
    eos_header,
    make_socket,
    recv_message,
    send_message,
)
from tracking.pose_process import _take_waiting

FRAMES = 600
FRAME_PERIOD_S = 0.002  # 500 fps
INFERENCE_S = 0.025  # a slow pose estimator: 40 frames/s
WRITE_S = 0.003  # a writer slower than the camera
WRITER_STALL_S = 0.3  # ... that also stalls at the start, as on a busy disk
SMALL_RECORD_HWM = 8


def frame_image(frame_id: int) -> np.ndarray:
    rng = np.random.default_rng(frame_id)
    return rng.integers(0, 255, (48, 64), dtype=np.uint8)


def digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def test_a_slow_tracker_counts_its_losses_exactly_and_the_recording_loses_nothing(
    tmp_path: Path,
) -> None:
    context = zmq.Context()
    live_endpoint = f"ipc://{tmp_path}/live"
    record_endpoint = f"ipc://{tmp_path}/record"
    live = make_socket(context, zmq.PUB, live_endpoint, bind=True, hwm=LATEST_HWM)
    # The lossless path with a small high-water mark (the rig's is RECORD_HWM), so that the slow
    # writer fills the socket within the test and the camera's own backlog takes over.
    pull = make_socket(context, zmq.PULL, record_endpoint, bind=True, hwm=SMALL_RECORD_HWM)
    record = make_socket(context, zmq.PUSH, record_endpoint, bind=False, hwm=SMALL_RECORD_HWM)
    tracker = make_socket(
        context,
        zmq.SUB,
        live_endpoint,
        bind=False,
        hwm=LATEST_HWM,
        subscribe=[TOPIC_LIVE_FRAME],
    )
    published = [0]  # frames published so far, read by the tracker to measure staleness
    stop_tracking = threading.Event()
    tracking = SequenceChecker()
    staleness: list[int] = []
    recording = SequenceChecker()
    recorded: list[tuple[int, str]] = []

    def track() -> None:
        waiting: dict[int, Message] = {}
        while not stop_tracking.is_set():
            # As the pose process does: take what waits, infer the newest, skip the rest.
            _take_waiting(tracker, waiting, every_n=1)
            if not waiting:
                tracker.poll(5)
                continue
            message = waiting.pop(max(waiting))
            waiting.clear()
            tracking.observe(message.header.seq)
            staleness.append(published[0] - 1 - message.header.seq)
            time.sleep(INFERENCE_S)

    def write() -> None:
        time.sleep(WRITER_STALL_S)
        while True:
            message = recv_message(pull)
            if message.topic == TOPIC_EOS:
                recording.finish(message.header.seq)
                return
            recording.observe(message.header.seq)
            recorded.append((message.header.frame_id, digest(message.payload)))
            time.sleep(WRITE_S)

    tracker_thread = threading.Thread(target=track, daemon=True)
    writer_thread = threading.Thread(target=write, daemon=True)
    time.sleep(0.3)  # let the subscription reach the publisher
    tracker_thread.start()
    writer_thread.start()

    backlog: collections.deque[tuple[Header, bytes]] = collections.deque()
    sent_digests = []
    loop_s = []
    largest_backlog = 0
    for frame_id in range(FRAMES):
        started = time.monotonic()
        image = frame_image(frame_id)
        frame = CameraFrame(image=image, frame_id=frame_id, t_device_ns=-1, t_host_ns=0)
        chunk = encode_frame_chunk(image)
        sent_digests.append(digest(chunk))
        header = Header(
            stream="cam",
            seq=frame_id,
            t_host_ns=time.monotonic_ns(),
            frame_id=frame_id,
            trigger_index=frame_id,
            shape=image.shape,
            dtype=image.dtype.str,
            encoding=ENCODING_H5CHUNK,
        )
        # What the camera loop does with every frame: queue it for the writer, offer it live.
        backlog.append((header, chunk))
        _send_backlog(record, backlog, block=False)
        _publish_live(live, "cam", frame)
        published[0] = frame_id + 1
        largest_backlog = max(largest_backlog, len(backlog))
        loop_s.append(time.monotonic() - started)
        time.sleep(max(0.0, FRAME_PERIOD_S - (time.monotonic() - started)))
    record.setsockopt(zmq.SNDTIMEO, 30_000)
    _send_backlog(record, backlog, block=True)
    send_message(record, TOPIC_EOS, eos_header("cam", FRAMES))
    writer_thread.join(timeout=60)
    time.sleep(0.2)
    stop_tracking.set()
    tracker_thread.join(timeout=10)
    tracking.finish(FRAMES)  # frame ids run 0..FRAMES-1: the last ones unseen are skipped too
    for socket in (live, pull, record, tracker):
        socket.close(linger=0)
    context.term()

    print(
        f"tracking: {tracking.received} of {FRAMES} frames inferred, {tracking.lost} skipped "
        f"(counted from frame ids); staleness when taken: median {np.median(staleness):.0f}, "
        f"max {max(staleness)} frames"
    )
    print(
        f"recording: {recording.received} frames, {recording.lost} lost; the producer's "
        f"backlog peaked at {largest_backlog} frames; camera loop: median "
        f"{np.median(loop_s) * 1e3:.2f} ms, max {max(loop_s) * 1e3:.2f} ms"
    )
    assert not writer_thread.is_alive() and not tracker_thread.is_alive()
    # Tracking: exact accounting from sequence numbers, and it really was too slow.
    assert tracking.received + tracking.lost == FRAMES
    assert tracking.lost > FRAMES // 2
    assert 0 < tracking.received < FRAMES
    # Recording: every frame, in order, byte for byte.
    assert recording.lost == 0
    assert recording.received == FRAMES
    assert [frame_id for frame_id, _ in recorded] == list(range(FRAMES))
    assert [chunk_digest for _, chunk_digest in recorded] == sent_digests
    assert largest_backlog > SMALL_RECORD_HWM  # the camera's backlog did take the overflow
