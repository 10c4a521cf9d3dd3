"""The writer process: every frame, sample and pulse of a trial into one HDF5 file.

Entry point :func:`run_writer`. It binds the recording endpoint (a PULL socket every camera and
the DAQ push to), appends what arrives, flushes every ``trial.flush_interval_s`` so a crash loses
at most that much, and on ``finish`` (or SIGTERM) drains the streams, does the frame accounting,
adds the twin's ground truth and closes the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import zmq

from acquisition.control import WorkerControl
from acquisition.daq.interface import rising_edges, unpack_block
from acquisition.transport import (
    RECORD_HWM,
    TOPIC_DAQ,
    TOPIC_EOS,
    TOPIC_FRAME,
    TOPIC_JUMP,
    TOPIC_POSE2D,
    TOPIC_POSE3D,
    Endpoints,
    Message,
    SequenceChecker,
    make_socket,
    recv_message,
)
from acquisition.worker import setup_worker
from rig.accounting import CameraAccounting, account_camera
from rig.calibration_record import TWIN, calibration_datasets, trial_camera_group
from rig.clock_drift import ClockFit, fit_camera_clock
from rig.config import RigConfig
from rig.trialfile.writer import CameraLayout, DaqLayout, StreamLayout, TrialFileWriter
from rig.twin_truth import twin_truth_datasets
from tracking.jump_detection import EVENTS_TABLE_DTYPE, JumpEvent, events_from_table, events_table
from tracking.jump_process import (
    EVENTS_DTYPE_NAME,
    LIVE_POSE_WAIT_MS,
    POSES_USED_DTYPE_NAME,
    JumpChannels,
    jump_channels,
)
from tracking.jump_process import STREAM as JUMP_STREAM
from tracking.pose import read_model_folder
from tracking.pose_process import pose_stream
from tracking.triangulator_process import STREAM as POSE3D_STREAM
from tracking.triangulator_process import pose3d_record_dtype

ROLE = "writer"
DAQ_STREAM = "daq"
# After "finish", how long to wait for every stream's end-of-stream before closing anyway, counted
# from the last message that arrived (a loaded machine may still be delivering).
FINISH_TIMEOUT_S = 10.0
MESSAGES_PER_POLL = 256


@dataclass
class _CameraState:
    checker: SequenceChecker = field(default_factory=SequenceChecker)
    trigger_indices: list[int] = field(default_factory=list)
    t_device_ns: list[int] = field(default_factory=list)
    dropped_by_pipeline: list[int] = field(default_factory=list)
    # Live 2D poses: trigger index -> (K, 3) x, y, likelihood.
    poses: dict[int, np.ndarray] = field(default_factory=dict)
    pose_checker: SequenceChecker = field(default_factory=SequenceChecker)


def live_pose2d_path(camera: str, column: str) -> str:
    return f"/tracking_live/pose2d/{camera}/{column}"


def live_pose3d_path(column: str) -> str:
    return f"/tracking_live/pose3d/{column}"


def trial_jump_channels(config: RigConfig) -> JumpChannels | None:
    """The DAQ channels the live jump detector reads; None (no detector) without two forces."""
    channels = config.daq.channels
    return jump_channels([c.name for c in channels], [c.kind for c in channels])


def tracking_streams(config: RigConfig) -> list[StreamLayout]:
    """The appendable datasets that hold live tracking results while the trial is written."""
    if not config.tracking.enabled:
        return []
    streams: list[StreamLayout] = []
    parts = 0
    for camera in config.camera_names:
        parts = len(read_model_folder(config.tracking.model_for(camera)).body_parts)
        streams.append(StreamLayout(live_pose2d_path(camera, "trigger_index"), (), "int64"))
        streams.append(StreamLayout(live_pose2d_path(camera, "points"), (parts, 3), "float32"))
    n_cameras = len(config.camera_names)
    streams += [
        StreamLayout(live_pose3d_path("trigger_index"), (), "int64"),
        # When the writer received it (time.monotonic_ns, as the frames' t_host_ns): the live
        # latency of 3D is this minus the frames' host time.
        StreamLayout(live_pose3d_path("t_received_ns"), (), "int64"),
        StreamLayout(live_pose3d_path("points"), (parts, 3), "float32"),
        StreamLayout(live_pose3d_path("reprojection_error"), (parts,), "float32"),
        StreamLayout(live_pose3d_path("cameras_used"), (parts, n_cameras), "bool"),
    ]
    return streams


class _Recording:
    """What the writer has taken in so far, stream by stream."""

    def __init__(self, config: RigConfig, writer: TrialFileWriter, detect_jumps: bool) -> None:
        self.config = config
        self.detect_jumps = detect_jumps
        self.writer = writer
        self.cameras = {name: _CameraState() for name in config.camera_names}
        self.daq_checker = SequenceChecker()
        self.ended: set[str] = set()
        self.daq_samples = 0
        self.trigger_level = 0
        self.pulse_samples: list[int] = []
        self.slow_disk_s = config.sim.faults.slow_disk_ms_per_frame * 1e-3
        self.pose3d_checker = SequenceChecker()
        self.pose3d_rows: list[np.ndarray] = []
        self.pose3d_trigger_indices: list[int] = []
        self.jump_checker = SequenceChecker()
        self.events: list[JumpEvent] = []
        self.jump_poses_used = np.zeros(0, dtype=np.int64)
        self.jump_problem = ""

    @property
    def expected_streams(self) -> set[str]:
        streams = {*self.cameras, DAQ_STREAM}
        if self.config.tracking.enabled:
            streams |= {pose_stream(name) for name in self.cameras} | {POSE3D_STREAM}
        if self.detect_jumps:
            streams.add(JUMP_STREAM)
        return streams

    def take(self, message: Message) -> None:
        header = message.header
        if message.topic == TOPIC_FRAME:
            camera = self.cameras[header.stream]
            camera.checker.observe(header.seq)
            self.writer.append_frame(
                header.stream,
                bytes(message.payload),
                frame_id=header.frame_id,
                trigger_index=header.trigger_index,
                t_host_ns=header.t_host_ns,
                t_device_ns=header.t_device_ns,
            )
            camera.trigger_indices.append(header.trigger_index)
            camera.t_device_ns.append(header.t_device_ns)
            if self.slow_disk_s:
                time.sleep(self.slow_disk_s)
        elif message.topic == TOPIC_DAQ:
            self.daq_checker.observe(header.seq)
            first = int(header.extra["first_sample_index"])
            if first != self.daq_samples:
                raise RuntimeError(
                    f"DAQ block starts at sample {first}, expected {self.daq_samples}"
                )
            analog, line = unpack_block(message.payload, int(header.extra["n_channels"]))
            edges = rising_edges(line, first, self.trigger_level)
            self.trigger_level = int(line[-1]) if line.size else self.trigger_level
            self.writer.append_daq(analog, line, edges)
            self.pulse_samples.extend(edges.tolist())
            self.daq_samples += line.size
        elif message.topic == TOPIC_POSE2D:
            camera_name = header.stream.split("/", 1)[-1]
            state = self.cameras[camera_name]
            state.pose_checker.observe(header.seq)
            pose = message.array()
            state.poses[header.trigger_index] = pose.copy()
            self.writer.append_rows(
                live_pose2d_path(camera_name, "trigger_index"),
                np.array([header.trigger_index], dtype=np.int64),
            )
            self.writer.append_rows(live_pose2d_path(camera_name, "points"), pose[None])
        elif message.topic == TOPIC_POSE3D:
            self.pose3d_checker.observe(header.seq)
            row = np.frombuffer(
                message.payload,
                dtype=pose3d_record_dtype(int(header.extra["parts"]), len(self.cameras)),
            )
            self.pose3d_rows.append(row.copy())
            self.pose3d_trigger_indices.append(header.trigger_index)
            self.writer.append_rows(
                live_pose3d_path("trigger_index"), np.array([header.trigger_index], np.int64)
            )
            self.writer.append_rows(
                live_pose3d_path("t_received_ns"), np.array([time.monotonic_ns()], np.int64)
            )
            for column in ("points", "reprojection_error", "cameras_used"):
                self.writer.append_rows(live_pose3d_path(column), row[column])
        elif message.topic == TOPIC_JUMP:
            self.jump_checker.observe(header.seq)
            if header.dtype == EVENTS_DTYPE_NAME:
                table = np.frombuffer(message.payload, dtype=EVENTS_TABLE_DTYPE)
                self.events += events_from_table(table)
            elif header.dtype == POSES_USED_DTYPE_NAME:
                self.jump_poses_used = np.frombuffer(message.payload, dtype=np.int64).copy()
        elif message.topic == TOPIC_EOS:
            self.ended.add(header.stream)
            if header.stream == JUMP_STREAM:
                if self.jump_checker.finish(header.seq):
                    self.jump_problem = "lost messages of the jump detector"
                self.jump_problem = str(header.extra.get("problem", "")) or self.jump_problem
            elif header.stream == DAQ_STREAM:
                self.daq_checker.finish(header.seq)
            elif header.stream == POSE3D_STREAM:
                self.pose3d_checker.finish(header.seq)
            elif header.stream.startswith("pose2d/"):
                self.cameras[header.stream.split("/", 1)[-1]].pose_checker.finish(header.seq)
            elif header.stream in self.cameras:
                camera = self.cameras[header.stream]
                camera.checker.finish(header.seq)
                camera.dropped_by_pipeline = list(header.extra.get("dropped_trigger_indices", []))

    def status(self) -> dict[str, Any]:
        return {
            "frames": {name: len(state.trigger_indices) for name, state in self.cameras.items()},
            "daq_samples": self.daq_samples,
        }

    def tracking_datasets(self) -> dict[str, np.ndarray]:
        """/pose2d/<camera> aligned with its frames; /pose3d sorted by trigger index."""
        if not self.config.tracking.enabled:
            return {}
        datasets: dict[str, np.ndarray] = {}
        parts = 0
        for name, state in self.cameras.items():
            parts = len(read_model_folder(self.config.tracking.model_for(name)).body_parts)
            rows = {index: row for row, index in enumerate(state.trigger_indices)}
            poses = np.full((len(state.trigger_indices), parts, 3), np.nan, dtype=np.float32)
            inferred_live = np.zeros(len(state.trigger_indices), dtype=bool)
            for index, pose in state.poses.items():
                if index in rows:
                    poses[rows[index]] = pose
                    inferred_live[rows[index]] = True
            datasets[f"/pose2d/{name}"] = poses
            datasets[f"/tracking/inferred_live/{name}"] = inferred_live
        order = np.argsort(np.array(self.pose3d_trigger_indices, dtype=np.int64))
        rows3d = (
            np.concatenate(self.pose3d_rows)[order]
            if self.pose3d_rows
            else np.zeros(0, dtype=pose3d_record_dtype(parts, len(self.cameras)))
        )
        datasets["/pose3d/trigger_index"] = np.array(self.pose3d_trigger_indices, np.int64)[order]
        datasets["/pose3d/points"] = rows3d["points"]
        datasets["/pose3d/reprojection_error"] = rows3d["reprojection_error"]
        datasets["/pose3d/cameras_used"] = rows3d["cameras_used"]
        return datasets

    def jump_datasets(self) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        """/events as the live detector found them, and which 3D poses it used."""
        if not self.detect_jumps:
            return {}, {}
        datasets = {
            "/events": events_table(self.events),
            "/tracking_live/jump_pose3d_used": self.jump_poses_used,
        }
        attrs = {
            "/events": {
                "source": "live",
                "live_problem": self.jump_problem,
                "pose_wait_ms": LIVE_POSE_WAIT_MS,
            }
        }
        return datasets, attrs

    def camera_clock(self, camera: str, pulse_samples: np.ndarray) -> ClockFit:
        """The camera clock's drift against the DAQ's, from its frames' device timestamps."""
        state = self.cameras[camera]
        trigger_index = np.array(state.trigger_indices, dtype=np.int64)
        known = (trigger_index >= 0) & (trigger_index < pulse_samples.size)
        daq_sample_index = np.full(trigger_index.size, -1, dtype=np.int64)
        daq_sample_index[known] = pulse_samples[trigger_index[known]]
        return fit_camera_clock(
            daq_sample_index, np.array(state.t_device_ns, dtype=np.int64), self.config.daq.rate_hz
        )

    def accounting(self, pulses_sent: int) -> list[CameraAccounting]:
        return [
            account_camera(
                name,
                np.array(state.trigger_indices, dtype=np.int64),
                pulses_sent,
                state.dropped_by_pipeline,
                state.checker.lost,
            )
            for name, state in self.cameras.items()
        ]


def run_writer(
    config: RigConfig,
    endpoints: Endpoints,
    trial_path: str,
    root_attrs: dict[str, Any],
    abort: Event,
) -> None:
    """Record one trial into ``trial_path``, driven by the supervisor's commands."""
    log = setup_worker(ROLE)
    terminated: list[str] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not terminated:  # a second SIGTERM (the supervisor's, then its death's) says nothing new
            terminated.append("writer received SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    context = zmq.Context()
    control = WorkerControl(context, endpoints.control, ROLE)
    try:
        _run(config, endpoints, Path(trial_path), root_attrs, abort, context, control, terminated)
    except Exception as error:
        log.exception("writer failed")
        control.send("error", reason=f"writer: {describe_writer_error(error, trial_path)}")
        raise SystemExit(1) from error
    finally:
        control.close()
        context.destroy(linger=0)


def describe_writer_error(error: BaseException, trial_path: str) -> str:
    """A writer's failure in one line; a full disk is named as such (HDF5's own message for it
    is long, and comes as an OSError or a RuntimeError with the errno in its text)."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text:
        return (
            f"disk full (no space left on device) while writing {trial_path}; the file holds "
            "what was committed before"
        )
    return text


def _run(
    config: RigConfig,
    endpoints: Endpoints,
    trial_path: Path,
    root_attrs: dict[str, Any],
    abort: Event,
    context: zmq.Context,
    control: WorkerControl,
    terminated: list[str],
) -> None:
    pull = make_socket(context, zmq.PULL, endpoints.record, bind=True, hwm=RECORD_HWM)
    # On the console the supervisor made the folder; a writer on another host makes its own.
    trial_path.parent.mkdir(parents=True, exist_ok=True)
    writer = TrialFileWriter.create(
        trial_path,
        root_attrs=root_attrs,
        cameras=[CameraLayout(c.name, c.height, c.width) for c in config.cameras],
        daq=DaqLayout(
            rate_hz=config.daq.rate_hz,
            channel_names=tuple(c.name for c in config.daq.channels),
            channel_units=tuple(c.units for c in config.daq.channels),
            channel_kinds=tuple(c.kind for c in config.daq.channels),
            trigger_line_name=config.daq.trigger_line.name,
        ),
        streams=tracking_streams(config),
    )
    recording = _Recording(config, writer, trial_jump_channels(config) is not None)
    try:
        control.ready(path=str(trial_path))
        finish: dict[str, Any] | None = None
        finish_deadline = 0.0
        last_flush = time.monotonic()
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(control.socket, zmq.POLLIN)
        while not terminated and not abort.is_set():
            ready = dict(poller.poll(50))
            if pull in ready:
                finish_deadline = max(finish_deadline, time.monotonic() + FINISH_TIMEOUT_S)
                for _ in range(MESSAGES_PER_POLL):
                    try:
                        recording.take(recv_message(pull, zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    if control.heartbeat_due():
                        control.heartbeat(**recording.status())
            if control.socket in ready:
                command = control.poll_command()
                if command is not None and command["type"] == "finish":
                    finish = command
                    # Streams of workers that died will never end: do not wait for them.
                    recording.ended.update(command.get("dead_streams", []))
                    finish_deadline = time.monotonic() + FINISH_TIMEOUT_S
                    control.ack(command)
            if time.monotonic() - last_flush >= config.trial.flush_interval_s:
                writer.flush()
                last_flush = time.monotonic()
            if control.heartbeat_due():
                control.heartbeat(**recording.status())
            if finish is not None and (
                recording.ended >= recording.expected_streams or time.monotonic() > finish_deadline
            ):
                break
        reasons = list(terminated)
        if abort.is_set():
            reasons.append("trial aborted")
        if finish is not None:
            reasons.insert(0, str(finish.get("reason", "completed")))
        missing = sorted(recording.expected_streams - recording.ended)
        if missing:
            reasons.append(f"no end-of-stream from {', '.join(missing)}")
        summary = _finalize(
            writer,
            recording,
            config,
            end_reason="; ".join(reasons) or "completed",
            triggerbox=(finish or {}).get("triggerbox", {}),
            stop_requested_after_s=(finish or {}).get("stop_requested_after_s"),
        )
        control.done(**summary)
    except BaseException:
        # The first error is the one to report: on a full disk close() fails again, and its
        # error would hide why the trial stopped.
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()


def _finalize(
    writer: TrialFileWriter,
    recording: _Recording,
    config: RigConfig,
    end_reason: str,
    triggerbox: dict[str, Any],
    stop_requested_after_s: float | None,
) -> dict[str, Any]:
    # Everything is in: write the partial last chunks too, so the counters cover every row.
    writer.flush(complete=True)
    pulses_sent = writer.pulses_committed()
    if pulses_sent != len(recording.pulse_samples):
        raise RuntimeError(
            f"{len(recording.pulse_samples)} pulses received but {pulses_sent} committed"
        )
    accounts = recording.accounting(pulses_sent)
    problems = [f"{a.camera}: {p}" for a in accounts for p in a.problems]
    box_pulses = triggerbox.get("pulses_sent")
    if box_pulses is not None and box_pulses != pulses_sent:
        problems.append(
            f"the trigger box sent {box_pulses} pulses but the DAQ recorded {pulses_sent}"
        )
    group_attrs: dict[str, dict[str, Any]] = {}
    datasets: dict[str, np.ndarray] = {}
    pulse_samples = np.array(recording.pulse_samples, dtype=np.int64)
    for account in accounts:
        group = f"/cameras/{account.camera}"
        clock = recording.camera_clock(account.camera, pulse_samples)
        group_attrs[group] = {
            "frames_dropped": account.frames_dropped,
            "pulses_sent": account.pulses_sent,
            "dropped_by_pipeline": len(account.dropped_by_pipeline),
            "accounting_balanced": account.balanced,
            "clock_drift_ppm": clock.drift_ppm,
            "clock_fit_residual_rms_ns": clock.residual_rms_ns,
            "clock_fit_residual_max_ns": clock.residual_max_ns,
        }
        datasets[f"{group}/dropped_trigger_indices"] = account.dropped_trigger_indices
    root_attrs: dict[str, Any] = {
        "pulses_sent": pulses_sent,
        "daq_samples": recording.daq_samples,
        "accounting_problems": "\n".join(problems),
        # Every camera's own balance too, not only the problems found on the way.
        "accounting_balanced": not problems and all(account.balanced for account in accounts),
    }
    if stop_requested_after_s is not None:
        root_attrs["stop_requested_after_s"] = float(stop_requested_after_s)
    if triggerbox:
        root_attrs["triggerbox_pulses_sent"] = int(box_pulses if box_pulses is not None else -1)
        root_attrs["triggerbox_firmware"] = str(triggerbox.get("firmware_version", ""))
    if config.daq.backend == "sim":
        truth_datasets, truth_attrs = twin_truth_datasets(
            config, np.array(recording.pulse_samples, dtype=np.int64)
        )
        datasets.update(truth_datasets)
        for path, attrs in truth_attrs.items():
            group_attrs.setdefault(path, {}).update(attrs)
    datasets.update(recording.tracking_datasets())
    jump_datasets, jump_attrs = recording.jump_datasets()
    datasets.update(jump_datasets)
    group_attrs.update(jump_attrs)
    camera_group = trial_camera_group(config)
    if camera_group is not None:
        calibration_source = config.tracking.calibration
        if calibration_source == TWIN:
            calibration_source = "digital twin (exact)"
        calibration, calibration_attrs = calibration_datasets(camera_group, calibration_source)
        datasets.update(calibration)
        for path, attrs in calibration_attrs.items():
            group_attrs.setdefault(path, {}).update(attrs)
    writer.finalize(
        closed_cleanly=True,
        end_reason=end_reason,
        root_attrs={**root_attrs, "closed_utc": dt.datetime.now(dt.UTC).isoformat()},
        group_attrs=group_attrs,
        datasets=datasets,
    )
    return {
        "end_reason": end_reason,
        "pulses_sent": pulses_sent,
        "daq_samples": recording.daq_samples,
        "daq_rate_hz": config.daq.rate_hz,
        "accounting": [a.as_dict() for a in accounts],
        "problems": problems,
    }
