"""`rig export nwb`: one trial as a Neurodata Without Borders file (pynwb + ndx-pose).

docs/export.md lists what goes where. In short: time 0 is DAQ sample 0 (the DAQ's sample clock
is the session's master clock); the cameras are ndx-pose ``CalibratedCamera`` devices; the poses
are in ``processing/behavior`` (:mod:`rig.export.nwb_poses`); EMG and force are TimeSeries in
``acquisition`` and the trigger pulses and frames EventsTables (:mod:`rig.export.nwb_signals`);
the jump detector's events are EventsTables and the jumps TimeIntervals
(:mod:`rig.export.nwb_events`); videos are referenced, stored or left out
(:mod:`rig.export.nwb_video`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.export.nwb_events import add_jump_events
from rig.export.nwb_poses import add_poses
from rig.export.nwb_session import SessionMetadata, add_devices, new_nwbfile
from rig.export.nwb_signals import (
    add_analog_series,
    add_frame_table,
    add_pulse_table,
    series_timing,
)
from rig.export.nwb_video import (
    VIDEO_MODES,
    VideoJob,
    VideoMode,
    image_series,
    video_path,
    write_videos,
)
from rig.export.timing import RowTimes, frame_times
from rig.export.trial_contents import ExportError, TrialContents, opened_trial
from rig.trialfile.reader import TrialFile

NWB_SUFFIX = ".nwb"
# The containers' nominal frame rate when the config does not give the trigger rate.
FALLBACK_FPS = 100.0


@dataclass(frozen=True)
class NwbExport:
    """What an export wrote."""

    nwb_path: Path
    video_paths: tuple[Path, ...]
    frames_exported: dict[str, int]  # per camera: frames with a time (in the video and poses)
    frames_left_out: dict[str, int]  # per camera: frames whose pulse is unknown
    pose3d_rows: int
    event_count: int
    notes: tuple[str, ...]  # what a user should know: data left out, metadata assumed


def default_nwb_path(trial_path: Path | str) -> Path:
    """``trial_0001.h5`` -> ``trial_0001.nwb`` beside it."""
    return Path(trial_path).with_suffix(NWB_SUFFIX)


def export_nwb(
    trial_path: Path | str,
    output_path: Path | str | None = None,
    *,
    videos: VideoMode = "reference",
    metadata: SessionMetadata | None = None,
    overwrite: bool = False,
) -> NwbExport:
    """Write the trial at ``trial_path`` as an NWB file (by default beside it, ``.nwb``) and,
    with ``videos="reference"``, one lossless video per camera beside that.

    Raises ExportError for a trial that cannot be read or an output that exists (unless
    ``overwrite``). The NWB file is written under a temporary name and renamed once complete;
    a failed export leaves neither it nor its videos behind.
    """
    if videos not in VIDEO_MODES:
        raise ValueError(f"videos must be one of {', '.join(VIDEO_MODES)}, got {videos!r}")
    metadata = metadata or SessionMetadata()
    nwb_path = Path(output_path) if output_path is not None else default_nwb_path(trial_path)
    if nwb_path.suffix != NWB_SUFFIX:
        raise ExportError(f"{nwb_path}: an NWB file's name must end in {NWB_SUFFIX}")
    with opened_trial(trial_path) as (trial, contents):
        videos_planned = (
            [video_path(nwb_path, camera.name) for camera in contents.cameras]
            if videos == "reference"
            else []
        )
        if not overwrite:
            existing = [path for path in (nwb_path, *videos_planned) if path.exists()]
            if existing:
                raise ExportError(f"{existing[0]} exists; allow overwriting to replace it")
        nwb_path.parent.mkdir(parents=True, exist_ok=True)
        partial = nwb_path.with_name(f".{nwb_path.stem}.partial{NWB_SUFFIX}")
        try:
            return _export(trial, contents, metadata, nwb_path, partial, videos)
        except BaseException:
            for path in videos_planned:
                path.unlink(missing_ok=True)
            raise
        finally:
            partial.unlink(missing_ok=True)


def _export(
    trial: TrialFile,
    contents: TrialContents,
    metadata: SessionMetadata,
    nwb_path: Path,
    partial: Path,
    videos: VideoMode,
) -> NwbExport:
    from pynwb import NWBHDF5IO

    notes: list[str] = []
    daq = contents.daq
    nwbfile = new_nwbfile(contents, metadata, notes)
    devices = add_devices(nwbfile, contents)
    add_analog_series(nwbfile, daq, _physical_channels(contents), notes)
    add_pulse_table(nwbfile, daq, notes)
    times: dict[str, RowTimes] = {
        camera.name: frame_times(
            camera.trigger_index, camera.daq_sample_index, daq.trigger_sample_index, daq.rate_hz
        )
        for camera in contents.cameras
    }
    rows = {
        camera.name: add_frame_table(nwbfile, camera, times[camera.name], daq.rate_hz, notes)
        for camera in contents.cameras
    }
    jobs = [
        VideoJob(camera=camera, rows=rows[camera.name], path=video_path(nwb_path, camera.name))
        for camera in contents.cameras
        if rows[camera.name].size
    ]
    if videos == "reference":
        write_videos(trial, jobs, _nominal_fps(contents))
    video_series: dict[str, Any] = {}
    if videos != "none":
        for job in jobs:
            name = job.camera.name
            timing = series_timing(times[name].times_s[job.rows], daq.rate_hz)
            video_series[name] = image_series(videos, trial, job, timing, devices[name])
            nwbfile.add_acquisition(video_series[name])
    pose3d_rows = add_poses(nwbfile, contents, devices, rows, times, video_series, notes)
    add_jump_events(nwbfile, contents.events, daq.pulse0_sample / daq.rate_hz, daq.rate_hz, notes)
    with NWBHDF5IO(str(partial), "w") as io:
        io.write(nwbfile)
    os.replace(partial, nwb_path)
    return NwbExport(
        nwb_path=nwb_path,
        video_paths=tuple(job.path for job in jobs) if videos == "reference" else (),
        frames_exported={name: int(frame_rows.size) for name, frame_rows in rows.items()},
        frames_left_out={
            camera.name: camera.frame_count - int(rows[camera.name].size)
            for camera in contents.cameras
        },
        pose3d_rows=pose3d_rows,
        event_count=len(contents.events),
        notes=tuple(notes),
    )


def _physical_channels(contents: TrialContents) -> dict[str, str]:
    """Channel name -> the input it was wired to (``Dev1/ai0``), from the trial's config."""
    daq = contents.config.get("daq", {})
    entries = daq.get("channels", []) if isinstance(daq, dict) else []
    return {
        str(entry["name"]): str(entry["physical"])
        for entry in entries
        if isinstance(entry, dict) and "name" in entry and "physical" in entry
    }


def _nominal_fps(contents: TrialContents) -> float:
    """The trigger rate from the config, else the median pulse rate, else FALLBACK_FPS."""
    trigger = contents.config.get("trigger", {})
    rate = trigger.get("rate_hz") if isinstance(trigger, dict) else None
    if isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    steps = np.diff(contents.daq.trigger_sample_index)
    if steps.size and np.median(steps) > 0:
        return float(contents.daq.rate_hz / np.median(steps))
    return FALLBACK_FPS
