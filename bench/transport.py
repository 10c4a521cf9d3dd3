"""Transport benchmark: frames from a camera process to the writer side, next to the memcpy limit.

Run: ``.venv/bin/python bench/transport.py [--quick] [--json PATH]``

Every measurement is a real pair of processes (``spawn``): a sender standing in for a camera
process and a receiver (this process) standing in for the writer. In the same run it measures

- ``zmq_ipc`` / ``zmq_tcp``: the project's own messages (``acquisition.transport``: ``Header``,
  ``send_message`` zero-copy, ``recv_message``, ``make_socket``) over PUSH/PULL ``ipc://`` and
  ``tcp://127.0.0.1``, the socket options of the recording path;
- ``zmq_ipc_compressed``: the same, but the sender first compresses every frame with
  ``acquisition.frame_codec.encode_frame_chunk`` as the camera processes do;
- ``shm_memcpy`` (the physical limit between processes): the sender copies each frame into a ring
  of slots in ``multiprocessing.shared_memory`` and the receiver copies it out again, one
  semaphore pair per ring. These are the two copies any transport between processes must make
  unless the processes share frame buffers;
- ``pipe``: the kernel's byte stream (``multiprocessing`` ``Connection.send_bytes`` /
  ``recv_bytes_into`` over an OS pipe), the path ``ipc://`` sockets also take;
- ``memcpy_1proc``: ``np.copyto`` of the same frames inside one process (one core's bandwidth).

Throughput is timed at the receiver, from the first to the last timed frame after a warm-up. One-way
latency is measured with the sender paced at ``--latency-rate-hz`` (500 frames/s): the sender
stamps ``time.monotonic_ns()`` (one clock for all processes on Linux) when the frame exists, before
compression; the receiver stamps again once the frame is in its hands.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import tempfile
import time
from collections.abc import Callable
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from benchlib import (
    GB,
    Column,
    add_common_arguments,
    best_of_runs,
    load_average_1min,
    machine_info,
    parse_size,
    percentiles_us,
    print_machine,
    print_table,
    size_label,
    synthetic_frames,
    use_single_threaded_compute,
    write_json,
)

from acquisition.frame_codec import encode_frame_chunk
from acquisition.transport import (
    ENCODING_H5CHUNK,
    ENCODING_RAW,
    RECORD_HWM,
    TOPIC_EOS,
    TOPIC_FRAME,
    Header,
    SequenceChecker,
    eos_header,
    make_socket,
    recv_message,
    send_message,
)

NAME = "transport"
# The sender cycles through distinct frames filling more memory than a CPU's last-level cache
# (32 MiB here), as frames that a camera's DMA wrote to RAM are not in any cache either.
FRAME_POOL_BYTES = 128 * 1024 * 1024
MIN_FRAME_POOL = 16
MAX_FRAME_POOL = 512  # small frames: enough distinct content without rendering for long
SHM_RING_SLOTS = 8
WARMUP_FRAMES = 20
DEFAULT_SIZES = [(480, 640), (1024, 1280)]  # (height, width)
QUICK_SIZES = [(120, 160)]
# Long enough for a spawned child to import numpy, zmq and h5py on a busy machine.
RECEIVE_TIMEOUT_MS = 60_000
METHODS_THROUGHPUT = (
    "memcpy_1proc",
    "shm_memcpy",
    "pipe",
    "zmq_ipc",
    "zmq_tcp",
    "zmq_ipc_compressed",
)
METHODS_LATENCY = ("shm_memcpy", "zmq_ipc", "zmq_tcp", "zmq_ipc_compressed")

_spawn = multiprocessing.get_context("spawn")


# --- senders (the camera side; each runs in its own spawned process) ----------------------------


def frame_pool_size(height: int, width: int) -> int:
    return min(MAX_FRAME_POOL, max(MIN_FRAME_POOL, -(-FRAME_POOL_BYTES // (height * width))))


@functools.cache
def _frame_pool(height: int, width: int) -> np.ndarray:
    """(P, height, width) uint8, made once per size and handed to every sender."""
    frames, _ = synthetic_frames(frame_pool_size(height, width), height, width, seed=1)
    frames.setflags(write=False)
    return frames


def _wait_until(deadline_ns: int) -> None:
    remaining_ns = deadline_ns - time.monotonic_ns()
    if remaining_ns > 0:
        time.sleep(remaining_ns / 1e9)


def _zmq_sender(
    endpoint: str,
    pool: np.ndarray,
    frames: int,
    compress: bool,
    pace_hz: float,
    conn: multiprocessing.connection.Connection,
) -> None:
    """Send WARMUP_FRAMES + ``frames`` of ``pool`` (P, H, W) uint8 as a camera process does."""
    _, height, width = pool.shape
    context = zmq.Context()
    push = make_socket(context, zmq.PUSH, endpoint, bind=False, hwm=RECORD_HWM)
    total = WARMUP_FRAMES + frames
    period_ns = int(1e9 / pace_hz) if pace_hz > 0 else 0
    encode_ns = 0
    wire_bytes = 0
    start_ns = time.monotonic_ns()
    for seq in range(total):
        if period_ns:
            _wait_until(start_ns + seq * period_ns)
        frame = pool[seq % len(pool)]
        t_host_ns = time.monotonic_ns()
        payload: np.ndarray | bytes
        if compress:
            payload = encode_frame_chunk(frame)
            encode_ns += time.monotonic_ns() - t_host_ns
            wire_bytes += len(payload)
        else:
            payload = frame
            wire_bytes += frame.nbytes
        header = Header(
            stream="bench",
            seq=seq,
            t_host_ns=t_host_ns,
            frame_id=seq,
            trigger_index=seq,
            shape=(height, width),
            dtype=frame.dtype.str,
            encoding=ENCODING_H5CHUNK if compress else ENCODING_RAW,
        )
        send_message(push, TOPIC_FRAME, header, payload)
    send_message(push, TOPIC_EOS, eos_header("bench", total))
    conn.send({"encode_ns": encode_ns, "wire_bytes": wire_bytes, "messages": total})
    _wait_for_release(conn)
    push.close()
    context.term()


def _shm_sender(
    shm_name: str,
    pool: np.ndarray,
    frames: int,
    pace_hz: float,
    free_slots: multiprocessing.synchronize.Semaphore,
    filled_slots: multiprocessing.synchronize.Semaphore,
    conn: multiprocessing.connection.Connection,
) -> None:
    """Copy each frame of ``pool`` (P, H, W) into the next free ring slot, with its time stamp."""
    _, height, width = pool.shape
    shm = SharedMemory(name=shm_name)
    try:
        slots, stamps = _ring_views(shm, height, width)
        period_ns = int(1e9 / pace_hz) if pace_hz > 0 else 0
        start_ns = time.monotonic_ns()
        for seq in range(WARMUP_FRAMES + frames):
            if period_ns:
                _wait_until(start_ns + seq * period_ns)
            slot = seq % SHM_RING_SLOTS
            t_host_ns = time.monotonic_ns()
            free_slots.acquire()
            np.copyto(slots[slot], pool[seq % len(pool)])
            stamps[slot] = t_host_ns
            filled_slots.release()
        conn.send({"messages": WARMUP_FRAMES + frames})
        _wait_for_release(conn)
        del slots, stamps
    finally:
        shm.close()


def _pipe_sender(
    pool: np.ndarray, frames: int, data: multiprocessing.connection.Connection
) -> None:
    for seq in range(WARMUP_FRAMES + frames):
        data.send_bytes(pool[seq % len(pool)].reshape(-1))
    data.close()


def _wait_for_release(conn: multiprocessing.connection.Connection) -> None:
    """Keep the sender's sockets open until the receiver has everything."""
    with contextlib.suppress(EOFError):
        conn.recv()


def _ring_views(shm: SharedMemory, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(SHM_RING_SLOTS, height, width) uint8 slots and (SHM_RING_SLOTS,) int64 time stamps."""
    frame_bytes = height * width
    slots: np.ndarray = np.ndarray((SHM_RING_SLOTS, height, width), dtype=np.uint8, buffer=shm.buf)
    stamps: np.ndarray = np.ndarray(
        (SHM_RING_SLOTS,), dtype=np.int64, buffer=shm.buf, offset=SHM_RING_SLOTS * frame_bytes
    )
    return slots, stamps


# --- receivers (the writer side: this process) --------------------------------------------------


def _receive_zmq(
    endpoint_kind: str, height: int, width: int, frames: int, compress: bool, pace_hz: float
) -> dict[str, Any]:
    context = zmq.Context()
    with tempfile.TemporaryDirectory(prefix="jumprig-bench-") as ipc_dir:
        endpoint = f"ipc://{ipc_dir}/record" if endpoint_kind == "ipc" else "tcp://127.0.0.1:*"
        pull = make_socket(context, zmq.PULL, endpoint, bind=True, hwm=RECORD_HWM)
        pull.setsockopt(zmq.RCVTIMEO, RECEIVE_TIMEOUT_MS)
        endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
        parent_conn, child_conn = _spawn.Pipe()
        sender = _spawn.Process(
            target=_zmq_sender,
            args=(endpoint, _frame_pool(height, width), frames, compress, pace_hz, child_conn),
            daemon=True,
        )
        sender.start()
        try:
            checker = SequenceChecker()
            latencies_ns = np.empty(frames, dtype=np.int64)
            first_ns = last_ns = 0
            while True:
                message = recv_message(pull)
                received_ns = time.monotonic_ns()
                header = message.header
                if message.topic == TOPIC_EOS:
                    lost = checker.finish(header.seq)
                    break
                checker.observe(header.seq)
                timed_index = header.seq - WARMUP_FRAMES
                if timed_index >= 0:
                    latencies_ns[timed_index] = received_ns - header.t_host_ns
                    if timed_index == 0:
                        first_ns = received_ns
                    last_ns = received_ns
            sender_stats = parent_conn.recv()
            parent_conn.send("done")
        finally:
            sender.join(timeout=30)
            if sender.is_alive():
                sender.terminate()
            pull.close()
            context.term()
    if lost:
        raise RuntimeError(f"{endpoint_kind}: {lost} messages lost; the transport is broken")
    return _result(
        frames, height, width, first_ns, last_ns, latencies_ns, sender_stats, compress=compress
    )


def _receive_shm(height: int, width: int, frames: int, pace_hz: float) -> dict[str, Any]:
    frame_bytes = height * width
    shm = SharedMemory(create=True, size=SHM_RING_SLOTS * (frame_bytes + 8))
    try:
        slots, stamps = _ring_views(shm, height, width)
        free_slots = _spawn.Semaphore(SHM_RING_SLOTS)
        filled_slots = _spawn.Semaphore(0)
        parent_conn, child_conn = _spawn.Pipe()
        sender = _spawn.Process(
            target=_shm_sender,
            args=(
                shm.name,
                _frame_pool(height, width),
                frames,
                pace_hz,
                free_slots,
                filled_slots,
                child_conn,
            ),
            daemon=True,
        )
        sender.start()
        received = np.empty((height, width), dtype=np.uint8)
        latencies_ns = np.empty(frames, dtype=np.int64)
        first_ns = last_ns = 0
        try:
            for seq in range(WARMUP_FRAMES + frames):
                if not filled_slots.acquire(timeout=RECEIVE_TIMEOUT_MS / 1e3):
                    raise RuntimeError("shared-memory sender stopped sending")
                slot = seq % SHM_RING_SLOTS
                np.copyto(received, slots[slot])
                t_host_ns = int(stamps[slot])
                free_slots.release()
                received_ns = time.monotonic_ns()
                timed_index = seq - WARMUP_FRAMES
                if timed_index >= 0:
                    latencies_ns[timed_index] = received_ns - t_host_ns
                    if timed_index == 0:
                        first_ns = received_ns
                    last_ns = received_ns
            sender_stats = parent_conn.recv()
            parent_conn.send("done")
        finally:
            sender.join(timeout=30)
            if sender.is_alive():
                sender.terminate()
            del slots, stamps
    finally:
        shm.close()
        shm.unlink()
    return _result(frames, height, width, first_ns, last_ns, latencies_ns, sender_stats)


def _receive_pipe(height: int, width: int, frames: int) -> dict[str, Any]:
    receiver_conn, sender_conn = _spawn.Pipe(duplex=False)
    sender = _spawn.Process(
        target=_pipe_sender, args=(_frame_pool(height, width), frames, sender_conn), daemon=True
    )
    sender.start()
    sender_conn.close()
    received = bytearray(height * width)
    first_ns = last_ns = 0
    try:
        for seq in range(WARMUP_FRAMES + frames):
            if not receiver_conn.poll(RECEIVE_TIMEOUT_MS / 1e3):
                raise RuntimeError("pipe sender stopped sending")
            nbytes = receiver_conn.recv_bytes_into(received)
            if nbytes != height * width:
                raise RuntimeError(f"pipe delivered {nbytes} bytes, expected {height * width}")
            if seq == WARMUP_FRAMES:
                first_ns = time.monotonic_ns()
            last_ns = time.monotonic_ns()
    finally:
        sender.join(timeout=30)
        if sender.is_alive():
            sender.terminate()
        receiver_conn.close()
    return _result(frames, height, width, first_ns, last_ns, None, {})


def _memcpy_one_process(height: int, width: int, frames: int) -> dict[str, Any]:
    pool = _frame_pool(height, width)
    destination = np.empty((height, width), dtype=np.uint8)
    for index in range(WARMUP_FRAMES):
        np.copyto(destination, pool[index % len(pool)])
    first_ns = time.monotonic_ns()
    for index in range(frames):
        np.copyto(destination, pool[index % len(pool)])
    last_ns = time.monotonic_ns()
    # Same convention as the receivers: ``frames`` copies took the whole interval here.
    return _result(frames + 1, height, width, first_ns, last_ns, None, {})


def _result(
    frames: int,
    height: int,
    width: int,
    first_ns: int,
    last_ns: int,
    latencies_ns: np.ndarray | None,
    sender_stats: dict[str, Any],
    compress: bool = False,
) -> dict[str, Any]:
    """Rates over the ``frames - 1`` intervals between the first and the last timed frame."""
    if frames < 2:
        raise ValueError(f"need at least 2 timed frames, got {frames}")
    elapsed_s = max(last_ns - first_ns, 1) / 1e9
    frames_per_s = (frames - 1) / elapsed_s
    frame_bytes = height * width
    result: dict[str, Any] = {
        "frames": frames,
        "elapsed_s": elapsed_s,
        "frames_per_s": frames_per_s,
        "gb_per_s": frames_per_s * frame_bytes / GB,
    }
    if compress:
        messages = sender_stats["messages"]
        mean_chunk_bytes = sender_stats["wire_bytes"] / messages
        result["compression_ratio"] = frame_bytes / mean_chunk_bytes
        result["wire_gb_per_s"] = frames_per_s * mean_chunk_bytes / GB
        result["encode_ms_per_frame"] = sender_stats["encode_ns"] / messages / 1e6
        result["encode_mb_per_s_per_core"] = (
            frame_bytes * messages / (sender_stats["encode_ns"] / 1e9) / 1e6
        )
    if latencies_ns is not None:
        result["latencies_ns"] = latencies_ns
    return result


# --- the benchmark -------------------------------------------------------------------------------


def measure_throughput(
    method: str, height: int, width: int, frames: int, repeats: int
) -> dict[str, Any]:
    """The median run (by frames/s) of ``repeats`` runs of one method, with every run's rate."""
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "memcpy_1proc": lambda: _memcpy_one_process(height, width, frames),
        "shm_memcpy": lambda: _receive_shm(height, width, frames, pace_hz=0.0),
        "pipe": lambda: _receive_pipe(height, width, frames),
        "zmq_ipc": lambda: _receive_zmq("ipc", height, width, frames, False, pace_hz=0.0),
        "zmq_tcp": lambda: _receive_zmq("tcp", height, width, frames, False, pace_hz=0.0),
        "zmq_ipc_compressed": lambda: _receive_zmq("ipc", height, width, frames, True, pace_hz=0.0),
    }
    runs = [runners[method]() for _ in range(repeats)]
    for run in runs:
        run.pop("latencies_ns", None)
    median_run = dict(best_of_runs(runs, "frames_per_s"))
    median_run["frames_per_s_runs"] = [run["frames_per_s"] for run in runs]
    return {"size": size_label(height, width), "method": method, **median_run}


def measure_latency(
    method: str, height: int, width: int, frames: int, rate_hz: float
) -> dict[str, Any]:
    if method == "shm_memcpy":
        run = _receive_shm(height, width, frames, pace_hz=rate_hz)
    else:
        kind = "tcp" if method == "zmq_tcp" else "ipc"
        run = _receive_zmq(kind, height, width, frames, method.endswith("compressed"), rate_hz)
    return {
        "size": size_label(height, width),
        "method": method,
        "rate_hz": rate_hz,
        "frames": frames,
        **percentiles_us(run["latencies_ns"]),
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's frames/s as a share of the two memcpy limits of the same frame size."""
    limits = {(row["size"], row["method"]): row["frames_per_s"] for row in rows}
    for row in rows:
        row["ratio_to_shm_memcpy"] = row["frames_per_s"] / limits[(row["size"], "shm_memcpy")]
        row["ratio_to_memcpy_1proc"] = row["frames_per_s"] / limits[(row["size"], "memcpy_1proc")]


def frames_for(height: int, width: int, gb_per_run: float, minimum: int) -> int:
    return max(minimum, int(gb_per_run * GB / (height * width)))


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()  # before the load of the benchmark itself
    thread_settings = use_single_threaded_compute()
    quick: bool = arguments.quick
    sizes: list[tuple[int, int]] = arguments.sizes or (QUICK_SIZES if quick else DEFAULT_SIZES)
    gb_per_run = 0.01 if quick else arguments.gb_per_run
    repeats = 1 if quick else arguments.repeats
    latency_frames = 30 if quick else arguments.latency_frames
    throughput: list[dict[str, Any]] = []
    for height, width in sizes:
        frames = frames_for(height, width, gb_per_run, minimum=10)
        for method in METHODS_THROUGHPUT:
            row = measure_throughput(method, height, width, frames, repeats)
            throughput.append(row)
            print(
                f"  {row['size']:>9} {method:<20} {row['frames_per_s']:>9.0f} frames/s",
                flush=True,
            )
    add_ratios(throughput)
    latency = [
        measure_latency(method, height, width, latency_frames, arguments.latency_rate_hz)
        for height, width in sizes
        for method in METHODS_LATENCY
    ]
    return {
        "benchmark": NAME,
        "quick": quick,
        "machine": {**machine, "load_average_1min_end": load_average_1min()},
        "settings": {
            "sizes": [size_label(h, w) for h, w in sizes],
            "gb_per_run": gb_per_run,
            "repeats": repeats,
            "warmup_frames": WARMUP_FRAMES,
            "frame_pool": {size_label(h, w): frame_pool_size(h, w) for h, w in sizes},
            "frames_source": synthetic_frames(1, 8, 8)[1],
            "record_hwm": RECORD_HWM,
            "shm_ring_slots": SHM_RING_SLOTS,
            "latency_rate_hz": arguments.latency_rate_hz,
            "latency_frames": latency_frames,
            "sender_thread_settings": thread_settings,
            "gb": "1e9 bytes",
        },
        "throughput": throughput,
        "latency": latency,
    }


def print_results(results: dict[str, Any]) -> None:
    print_machine(results["machine"])
    print_table(
        "Throughput, camera process -> writer side (median of repeats)",
        results["throughput"],
        [
            Column("size", "size"),
            Column("method", "method"),
            Column("frames_per_s", "frames/s", ",.0f"),
            Column("gb_per_s", "GB/s raw", ".2f"),
            Column("ratio_to_shm_memcpy", "/shm memcpy", ".2f"),
            Column("ratio_to_memcpy_1proc", "/1-proc memcpy", ".2f"),
            Column("compression_ratio", "compr.", ".2f"),
            Column("wire_gb_per_s", "GB/s wire", ".2f"),
            Column("encode_ms_per_frame", "encode ms", ".3f"),
        ],
    )
    print_table(
        f"One-way latency at {results['settings']['latency_rate_hz']:.0f} frames/s",
        results["latency"],
        [
            Column("size", "size"),
            Column("method", "method"),
            Column("frames", "frames"),
            Column("p50_us", "p50 us", ".0f"),
            Column("p99_us", "p99 us", ".0f"),
            Column("max_us", "max us", ".0f"),
        ],
    )


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, NAME)
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",")],
        default=None,
        help="frame sizes WIDTHxHEIGHT, comma separated (default: 640x480,1280x1024; "
        "with --quick 160x120)",
    )
    parser.add_argument(
        "--gb-per-run", type=float, default=2.0, help="raw GB moved per throughput run"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; median reported")
    parser.add_argument("--latency-rate-hz", type=float, default=500.0)
    parser.add_argument("--latency-frames", type=int, default=1000)
    arguments = parser.parse_args(argv)
    if arguments.gb_per_run <= 0:
        parser.error("--gb-per-run must be positive")
    if arguments.repeats < 1:
        parser.error("--repeats must be >= 1")
    if arguments.latency_rate_hz <= 0:
        parser.error("--latency-rate-hz must be positive")
    if arguments.latency_frames < 2:
        parser.error("--latency-frames must be >= 2")
    return arguments


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    json_path: Path = arguments.json
    results = run(arguments)
    print_results(results)
    write_json(results, json_path)


if __name__ == "__main__":
    main()
