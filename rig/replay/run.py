"""One replay: a recorded trial through the live pipeline, into a new trial file.

The supervisor runs the replay like any trial, with the replay's device factories
(:class:`~rig.replay.cameras.ReplayCameraFactory`, :class:`~rig.replay.daq.ReplayDaqFactory`)
and the recorded config adapted by :func:`~rig.replay.config.replay_config`. Everything downstream
of the devices (writer, pose, triangulation, jump detection, preview) is the live code.

How the replay ends: the supervisor's running phase lasts as long as the pacing needs (the
recorded length over the speed factor; nothing at ``max``), then it stops the DAQ, and the replay
DAQ, which counts every recorded sample not replayed yet as due, plays the rest before it ends
(the DAQ process drains what is due before stopping). So the replay always reaches the end of the
recording, and a short replay at ``max`` is not held back by a timer. The supervisor waits at
most ``DONE_TIMEOUT_S`` for that drain, so for a recording that a replay at the slowest pace
planned for (:data:`SLOWEST_PACE`) might not finish within :data:`DRAIN_BUDGET_S`, the running
phase is made longer (:func:`running_phase_s`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import zmq

from rig.complete_tracking import CompletionSummary, complete_tracking
from rig.config import RigConfig
from rig.replay import DEFAULT_OUTPUT_FOLDER, OPEN_TIMEOUT_S
from rig.replay.cameras import ReplayCameraFactory
from rig.replay.config import ReplayConfigError, replay_config
from rig.replay.daq import ReplayDaqFactory
from rig.replay.pacing import (
    PAUSE_BACKLOG_FRAMES,
    PAUSE_IN_FLIGHT_FRAMES,
    RESUME_BACKLOG_FRAMES,
    RESUME_IN_FLIGHT_FRAMES,
    CreditSender,
    ReplaySpeed,
    backlog_message,
)
from rig.replay.source import RecordedTrial, check_recording, file_sha256
from rig.supervisor import DONE_TIMEOUT_S, StatusSnapshot, Supervisor, TrialResult, TrialState
from rig.trialfile import layout
from rig.trialfile.reader import open_trial

MAX_SPEED = ReplaySpeed(math.inf)
TWIN_TRUTH_GROUP = "/sim"
# The share of the supervisor's DAQ drain timeout a replay plans to use.
DRAIN_BUDGET_S = DONE_TIMEOUT_S - 10.0
# The slowest pace a replay is planned for (measured: 0.44x at max on 2 cores that other work kept
# at a load average of 10; a replay at max without inference costs about what the recording did).
SLOWEST_PACE = 0.5


@dataclass
class BacklogGovernor:
    """``on_status`` of a replay: pauses the replay DAQ while the writer is behind (frames made
    by a camera but not taken in by the writer, or a camera process holding a backlog), so the
    lossless path never fills up and drops.

    Also notes when the replay has delivered everything.
    """

    sender: CreditSender | None
    recorded: RecordedTrial
    forward: Callable[[StatusSnapshot], None] | None = None
    paused: bool = False
    pauses: int = 0
    peak_backlog_frames: int = 0
    peak_in_flight_frames: int = 0
    started_s: float = field(default_factory=time.monotonic)
    delivered_after_s: float | None = None

    def __call__(self, status: StatusSnapshot) -> None:
        backlog = max(status.buffered.values(), default=0)
        # Without the writer's counts yet (no heartbeat), nothing is known to be in flight.
        in_flight = max(
            (
                made - status.recorded_frames[camera]
                for camera, made in status.frames.items()
                if camera in status.recorded_frames
            ),
            default=0,
        )
        self.peak_backlog_frames = max(self.peak_backlog_frames, backlog)
        self.peak_in_flight_frames = max(self.peak_in_flight_frames, in_flight)
        behind = backlog > PAUSE_BACKLOG_FRAMES or in_flight > PAUSE_IN_FLIGHT_FRAMES
        caught_up = backlog < RESUME_BACKLOG_FRAMES and in_flight < RESUME_IN_FLIGHT_FRAMES
        if self.sender is not None:
            if not self.paused and behind:
                self.paused = True
                self.pauses += 1
                self.sender.send(backlog_message(True))
            elif self.paused and caught_up:
                self.paused = False
                self.sender.send(backlog_message(False))
            else:
                self.sender.retry()
        if self.delivered_after_s is None and self._all_delivered(status):
            self.delivered_after_s = time.monotonic() - self.started_s
        if self.forward is not None:
            if status.state is TrialState.STOPPING and self.delivered_after_s is None:
                # The supervisor is stopping, but the DAQ is still draining the recording:
                # to the user the replay is running.
                status = dataclasses.replace(status, state=TrialState.RUNNING)
            self.forward(status)

    def _all_delivered(self, status: StatusSnapshot) -> bool:
        frames_done = all(
            status.recorded_frames.get(camera.name, 0) >= camera.frames
            for camera in self.recorded.cameras
        )
        # Pulses, not samples: the DAQ's last heartbeat may come before its last block.
        return frames_done and status.pulses >= self.recorded.pulses


@dataclass(frozen=True)
class ReplayResult:
    recorded: RecordedTrial
    config: RigConfig
    speed: ReplaySpeed
    trial: TrialResult
    wall_s: float  # the whole replay: processes started, trial run, file closed
    delivered_after_s: float | None  # supervisor start to every frame and sample delivered
    # Host seconds from the first replayed frame to the last (None: fewer than two frames).
    frame_span_s: float | None
    peak_backlog_frames: int  # most frames a camera process buffered for the writer
    peak_in_flight_frames: int  # most frames of a camera made but not yet taken in by the writer
    backlog_pauses: int
    completion: CompletionSummary | None
    completion_s: float

    @property
    def path(self) -> Path:
        return self.trial.path

    @property
    def pace(self) -> float | None:
        """The replay's speed as a multiple of the recorded pace: the recorded time from first to
        last pulse over the replay's time from first to last frame (process start-up left out)."""
        if not self.frame_span_s or not self.recorded.pulse_span_s:
            return None
        return self.recorded.pulse_span_s / self.frame_span_s

    @property
    def frames_per_s(self) -> float | None:
        """Frames of all cameras replayed per second, from the first frame to the last."""
        if not self.frame_span_s:
            return None
        return self.frames_written / self.frame_span_s

    @property
    def frames_written(self) -> int:
        accounts = self.trial.writer_summary.get("accounting", [])
        return sum(int(account.get("frames_written", 0)) for account in accounts)

    @property
    def frames_dropped(self) -> int:
        """Frames the replay's pipeline dropped (not those the recording had dropped)."""
        accounts = self.trial.writer_summary.get("accounting", [])
        return sum(len(account.get("dropped_by_pipeline", [])) for account in accounts)


def replay_trial(
    source: Path | str,
    *,
    output_dir: Path | str | None = None,
    speed: ReplaySpeed = MAX_SPEED,
    model: Path | None = None,
    calibration: Path | None = None,
    tracking: bool | None = None,
    complete: bool = True,
    on_status: Callable[[StatusSnapshot], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
    open_timeout_s: float = OPEN_TIMEOUT_S,
    hosts: Path | None = None,
) -> ReplayResult:
    """Replay ``source`` into a new trial file in ``output_dir`` (default: ``replays`` beside it).

    ``model``/``calibration`` replace the recorded ones, ``tracking`` switches tracking on or off
    (None: as recorded); with ``complete`` the tracking is completed after the trial, as
    ``rig run`` does. ``hosts``: a rig config whose ``[endpoints]`` and ``[remote]`` run roles of
    the replay on other hosts, through their ``rig worker`` (docs/multi-host.md). Raises
    TrialFileError for a bad source file and ReplayConfigError for a config that cannot be
    replayed, before any process starts.
    """
    source = Path(source)
    started_s = time.monotonic()
    recorded = check_recording(source, timeout_s=open_timeout_s)
    output = Path(output_dir) if output_dir is not None else source.parent / DEFAULT_OUTPUT_FOLDER
    config = replay_config(
        recorded,
        output_dir=output,
        model=model,
        calibration=calibration,
        tracking=tracking,
        hosts=hosts,
    )
    remote_cameras = [role for role in config.remote.roles if role.startswith("camera:")]
    if remote_cameras and not config.endpoints.replay_credit.startswith("tcp://"):
        raise ReplayConfigError(
            f"{hosts}: key 'endpoints.replay_credit': replay cameras on other hosts "
            f"({', '.join(remote_cameras)}) report their progress to the replay's DAQ there: "
            "it must be tcp://ADDRESS:PORT of this host"
        )
    provenance = _provenance(recorded, config, speed, model, calibration)
    run_phase_s = running_phase_s(speed, recorded.duration_s)
    with (
        tempfile.TemporaryDirectory(prefix="jumprig-replay-") as folder,
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as hasher,
    ):
        # Hashed while the replay runs (hashlib lets go of the GIL); written once the file closes.
        digest = hasher.submit(file_sha256, source)
        credit_endpoint = config.endpoints.replay_credit or f"ipc://{folder}/credit"
        context = zmq.Context()
        sender = CreditSender(context, credit_endpoint)
        governor = BacklogGovernor(sender, recorded, on_status)
        try:
            supervisor = Supervisor(
                config,
                camera_factory=ReplayCameraFactory(str(source.resolve()), credit_endpoint),
                daq_factory=ReplayDaqFactory(str(source.resolve()), speed.factor, credit_endpoint),
            )
            result = supervisor.run_trial(
                subject=recorded.subject,
                duration_s=run_phase_s,
                output_dir=output,
                on_status=governor,
                extra_root_attrs=provenance,
            )
        finally:
            sender.close()
            context.term()
        sha256 = digest.result()
    wall_s = time.monotonic() - started_s
    frame_span_s = None
    if result.writer_summary:
        _finish_output(result.path, recorded, sha256)
        frame_span_s = frame_host_span_s(result.path)
    completion = None
    completion_started_s = time.monotonic()
    tracking_settings = config.tracking
    if (
        complete
        and tracking_settings.enabled
        and tracking_settings.complete_after_trial
        and result.writer_summary
    ):
        completion = complete_tracking(result.path, tracking_settings, on_progress=on_progress)
    return ReplayResult(
        recorded=recorded,
        config=config,
        speed=speed,
        trial=result,
        wall_s=wall_s,
        delivered_after_s=governor.delivered_after_s,
        frame_span_s=frame_span_s,
        peak_backlog_frames=governor.peak_backlog_frames,
        peak_in_flight_frames=governor.peak_in_flight_frames,
        backlog_pauses=governor.pauses,
        completion=completion,
        completion_s=time.monotonic() - completion_started_s if completion else 0.0,
    )


def running_phase_s(speed: ReplaySpeed, recorded_s: float) -> float:
    """How long the supervisor's running phase lasts for a replay of ``recorded_s``.

    What the pacing needs, but long enough that what is left for the DAQ's drain, at the slowest
    pace planned for, fits in DRAIN_BUDGET_S (the supervisor waits DONE_TIMEOUT_S for it).
    """
    return max(speed.paced_seconds(recorded_s), recorded_s / SLOWEST_PACE - DRAIN_BUDGET_S, 0.0)


def _provenance(
    recorded: RecordedTrial,
    config: RigConfig,
    speed: ReplaySpeed,
    model: Path | None,
    calibration: Path | None,
) -> dict[str, Any]:
    """Root attributes of the replay's file: what was replayed, with what."""
    tracking = config.tracking
    return {
        "replay_of": str(recorded.path.resolve()),
        "replay_of_trial_id": recorded.trial_id,
        "replay_of_started_utc": recorded.started_utc,
        "replay_of_closed_cleanly": recorded.closed_cleanly,
        "replay_speed": speed.label,
        "replay_tracking": tracking.enabled,
        "replay_model": tracking.model if tracking.enabled else "",
        "replay_model_source": "--model" if model is not None else "recorded",
        "replay_calibration": tracking.calibration if tracking.enabled else "",
        "replay_calibration_source": "--calibration" if calibration is not None else "recorded",
    }


def frame_host_span_s(path: Path) -> float | None:
    """Host seconds from the first frame any camera of ``path`` delivered to the last one."""
    with open_trial(path) as trial:
        times = [
            trial.read(layout.camera_dataset(camera, layout.T_HOST_NS))
            for camera in trial.camera_names
        ]
    stamps = [t for t in times if t.size]
    if not stamps:
        return None
    span_ns = max(int(t.max()) for t in stamps) - min(int(t.min()) for t in stamps)
    return span_ns / 1e9 if span_ns > 0 else None


def _finish_output(path: Path, recorded: RecordedTrial, sha256: str) -> None:
    """After the trial: the source's hash, and the source's twin truth.

    The writer computes ``/sim`` for every trial on the simulated DAQ from the trial's config, but
    the truth of a replay is the truth of the recording (with the drops the recording's fault
    knobs made, which the replay's config no longer has): copied from the source, or removed
    where the source has none (a real rig's trial).
    """
    with h5py.File(path, "r+") as output:
        output.attrs["replay_of_sha256"] = sha256
        if TWIN_TRUTH_GROUP in output:
            del output[TWIN_TRUTH_GROUP]
        if recorded.has_twin_truth:
            with open_trial(recorded.path) as source:
                source.copy_object(TWIN_TRUTH_GROUP, output, TWIN_TRUTH_GROUP)
