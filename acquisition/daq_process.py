"""The DAQ process: samples on the master clock go to the writer; pulses go to the twin's cameras.

Entry point :func:`run_daq`. It also hosts the twin trigger box's firmware emulator when the
trigger box is simulated, since in the twin the box's pulses are generated on the DAQ's clock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np
import zmq

from acquisition.control import WorkerControl
from acquisition.daq.interface import Daq, pack_block, rising_edges
from acquisition.daq.simulated import SimulatedDaq
from acquisition.errors import DeviceError
from acquisition.settings import DaqConfig, SimConfig, TriggerBoxConfig, TriggerConfig
from acquisition.sim.skeleton import JumpModel
from acquisition.transport import (
    MONITOR_HWM,
    RECORD_HWM,
    RECORD_LINGER_MS,
    TOPIC_DAQ,
    TOPIC_EOS,
    TOPIC_TRIGGER,
    TWIN_LINE_HWM,
    Endpoints,
    Header,
    array_header,
    eos_header,
    make_socket,
    send_message,
)
from acquisition.worker import setup_worker

ROLE = "daq"
STREAM = "daq"
TWIN_LINE_STREAM = "trigger_line"
READY_TIMEOUT_S = 10.0
# The twin cameras start with the DAQ; on a loaded machine a camera process took more than 10 s
# to import its libraries and subscribe (the trial then failed to start). Wait as long as the
# supervisor waits for READY: heartbeats go on meanwhile.
SUBSCRIBERS_TIMEOUT_S = 60.0
TWIN_LINE_LINGER_MS = 30_000


def make_daq(config: DaqConfig, trigger: TriggerConfig, sim: SimConfig) -> Daq:
    if config.backend == "sim":
        return SimulatedDaq(config, trigger, sim)
    if config.backend == "nidaqmx":
        from acquisition.daq.nidaq import NiDaq

        return NiDaq(config, trigger, config.nidaqmx)
    raise ValueError(f"unknown DAQ backend {config.backend!r}")


# Builds the DAQ of the DAQ process (the replay offers its own, reading a trial file).
DaqFactory = Callable[[DaqConfig, TriggerConfig, SimConfig], Daq]


def run_daq(
    config: DaqConfig,
    trigger: TriggerConfig,
    triggerbox: TriggerBoxConfig,
    sim: SimConfig,
    endpoints: Endpoints,
    twin_camera_names: Sequence[str],
    abort: Event,
    daq_factory: DaqFactory = make_daq,
) -> None:
    """Run the DAQ for one trial, driven by the supervisor's commands.

    Every block goes to the writer (lossless), to the jump detector at ``endpoints.jump_input``
    (if any; never waiting: a block it cannot take is counted in ``jump_feed_dropped``) and to
    the preview's ``endpoints.monitor`` (if any; dropped when the preview lags).
    """
    log = setup_worker(ROLE)
    context = zmq.Context()
    control = WorkerControl(context, endpoints.control, ROLE)
    try:
        _run(
            config,
            trigger,
            triggerbox,
            sim,
            endpoints,
            twin_camera_names,
            abort,
            context,
            control,
            daq_factory,
        )
    except Exception as error:
        log.exception("DAQ failed")
        code = error.code if isinstance(error, DeviceError) else None
        control.send("error", reason=f"DAQ: {error}", code=code)
        raise SystemExit(1) from error
    finally:
        control.close()
        context.destroy(linger=1000)


def _run(
    config: DaqConfig,
    trigger: TriggerConfig,
    triggerbox: TriggerBoxConfig,
    sim: SimConfig,
    endpoints: Endpoints,
    twin_camera_names: Sequence[str],
    abort: Event,
    context: zmq.Context,
    control: WorkerControl,
    daq_factory: DaqFactory,
) -> None:
    with contextlib.ExitStack() as resources:
        daq = resources.enter_context(daq_factory(config, trigger, sim))
        info: dict[str, Any] = {"daq": daq.info()}
        # Fault knobs that act once acquisition runs.
        started_callbacks: list[Callable[[], None]] = []
        if trigger.source == "triggerbox" and triggerbox.backend == "sim":
            from acquisition.triggerbox.emulator import TriggerBoxEmulator

            if not isinstance(daq, SimulatedDaq):
                raise ValueError("the simulated trigger box needs the simulated DAQ")
            emulator = resources.enter_context(TriggerBoxEmulator(daq.pulses))
            info["triggerbox_port"] = emulator.port_path
            unplug_after_s = sim.faults.triggerbox_unplug_after_s
            if unplug_after_s > 0:
                unplug = threading.Timer(unplug_after_s, emulator.unplug)
                unplug.daemon = True
                started_callbacks.append(unplug.start)
                resources.callback(unplug.cancel)

        record = make_socket(context, zmq.PUSH, endpoints.record, bind=False, hwm=RECORD_HWM)
        resources.callback(_close_unless_aborted, record, abort)
        # Side feeds that must never hold up the recording: sent without waiting.
        side_feeds = []
        if endpoints.jump_input:
            jump_feed = make_socket(
                context, zmq.PUSH, endpoints.jump_input, bind=False, hwm=RECORD_HWM
            )
            resources.callback(_close_unless_aborted, jump_feed, abort)
            side_feeds.append(("jump_feed_dropped", jump_feed))
        if endpoints.monitor:
            monitor = make_socket(context, zmq.PUB, endpoints.monitor, bind=False, hwm=MONITOR_HWM)
            resources.callback(monitor.close, 0)
            side_feeds.append(("", monitor))
        twin_line = None
        jump = JumpModel(sim.jump)
        if twin_camera_names:
            twin_line = make_socket(
                context,
                zmq.XPUB,
                endpoints.trigger_line,
                bind=True,
                hwm=TWIN_LINE_HWM,
                # Report every subscription, not only the first per topic, to count the cameras.
                options={zmq.XPUB_VERBOSE: 1},
            )
            # Pulses still queued for a lagging camera must reach it after this process ends.
            resources.callback(twin_line.close, TWIN_LINE_LINGER_MS)
            _wait_for_subscribers(twin_line, len(twin_camera_names), control)

        status: dict[str, Any] = {"samples": 0, "pulses": 0, "jump_feed_dropped": 0}
        control.ready(**info)
        command = control.wait_command("start", READY_TIMEOUT_S * 6, status)
        if command["type"] == "abort":
            return
        daq.start()
        for callback in started_callbacks:
            callback()
        control.ack(command)

        seq = 0
        pulses = 0
        first_pulse_sample: int | None = None
        previous_level = 0
        stop_at_sample: int | None = None
        n_channels = len(config.channels)
        while True:
            if abort.is_set():
                break
            request = control.poll_command()
            if request is not None:
                if request["type"] == "start_trigger":
                    daq.start_pulses(float(request["rate_hz"]))
                    control.ack(request)
                elif request["type"] == "stop_trigger":
                    daq.stop_pulses()
                    control.ack(request)
                elif request["type"] == "stop":
                    # Read what the clock has produced up to now, then stop: a DAQ process
                    # that runs behind real time must not chase a clock that keeps ticking.
                    stop_at_sample = status["samples"] + daq.samples_due()
                elif request["type"] == "abort":
                    break
            # Stop once every sample up to the stop is read: the last pulse is in the file.
            if stop_at_sample is not None and (
                status["samples"] >= stop_at_sample or daq.samples_due() < config.block_samples
            ):
                break
            block = daq.read_block(timeout_s=0.05)
            if block is not None:
                edges = rising_edges(block.trigger_line, block.first_sample_index, previous_level)
                previous_level = int(block.trigger_line[-1])
                header = Header(
                    stream=STREAM,
                    seq=seq,
                    t_host_ns=block.t_host_ns,
                    shape=(block.n_samples,),
                    dtype="daq_block",
                    extra={
                        "first_sample_index": block.first_sample_index,
                        "n_channels": n_channels,
                    },
                )
                payload = pack_block(block)
                send_message(record, TOPIC_DAQ, header, payload)
                for dropped_key, feed in side_feeds:
                    try:
                        send_message(feed, TOPIC_DAQ, header, payload, flags=zmq.NOBLOCK)
                    except zmq.Again:
                        if dropped_key:
                            status[dropped_key] += 1
                seq += 1
                status["samples"] = block.first_sample_index + block.n_samples
                for sample_index in edges.tolist():
                    if first_pulse_sample is None:
                        first_pulse_sample = sample_index
                    if twin_line is not None:
                        t_twin_ns = round(
                            (sample_index - first_pulse_sample) * 1e9 / config.rate_hz
                        )
                        # The body's pose at this pulse, computed once here for every twin camera.
                        pose = jump.points_mm(np.array([t_twin_ns * 1e-9]))[0]
                        pulse = array_header(
                            TWIN_LINE_STREAM,
                            pulses,
                            pose,
                            trigger_index=pulses,
                            extra={"daq_sample_index": sample_index, "t_twin_ns": t_twin_ns},
                        )
                        send_message(twin_line, TOPIC_TRIGGER, pulse, pose)
                    pulses += 1
                status["pulses"] = pulses
            if control.heartbeat_due():
                control.heartbeat(**status)
        daq.stop()
        end = eos_header(STREAM, seq, samples=status["samples"])
        if abort.is_set():
            # Aborted (the writer may be gone): offer the end-of-stream, never wait on it.
            with contextlib.suppress(zmq.Again):
                send_message(record, TOPIC_EOS, end, flags=zmq.NOBLOCK)
        else:
            send_message(record, TOPIC_EOS, end)
        for _, feed in side_feeds:
            with contextlib.suppress(zmq.Again):
                send_message(feed, TOPIC_EOS, end, flags=zmq.NOBLOCK)
        if twin_line is not None:
            send_message(twin_line, TOPIC_EOS, eos_header(TWIN_LINE_STREAM, pulses))
        control.done(
            samples=status["samples"],
            pulses=pulses,
            messages=seq,
            jump_feed_dropped=status["jump_feed_dropped"],
        )


def _close_unless_aborted(socket: zmq.Socket, abort: Event) -> None:
    """Close a lossless socket: its queued messages get RECORD_LINGER_MS to go out, unless the
    trial was aborted (then nobody may be left to take them)."""
    socket.close(linger=0 if abort.is_set() else RECORD_LINGER_MS)


def _wait_for_subscribers(xpub: zmq.Socket, expected: int, control: WorkerControl) -> None:
    """Block until every twin camera has subscribed, so no pulse is published to nobody."""
    subscribers = 0
    deadline = time.monotonic() + SUBSCRIBERS_TIMEOUT_S
    while subscribers < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {subscribers} of {expected} twin cameras subscribed to the trigger line"
            )
        if control.heartbeat_due():
            control.heartbeat(samples=0, pulses=0)
        if xpub.poll(50, zmq.POLLIN) and xpub.recv()[:1] == b"\x01":
            subscribers += 1
