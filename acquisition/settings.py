"""Settings of the devices and of the digital twin: the tables of the rig's TOML config.

They live here, not in ``rig``, so that the capture processes can take them without importing
the rig (imports point one way). ``rig.config`` reads the TOML file into these frozen dataclasses;
field ``metadata`` carries the bounds it enforces (``gt``, ``ge``, ``lt``, ``le``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from acquisition.cameras.genicam_settings import GenICamSettings
from acquisition.daq.nidaq_settings import NiDaqSettings
from acquisition.sim.skeleton import JumpParameters


def gt(bound: float) -> dict[str, Any]:
    return {"gt": bound}


def ge(bound: float) -> dict[str, Any]:
    return {"ge": bound}


def between(low: float, high: float) -> dict[str, Any]:
    return {"ge": low, "le": high}


@dataclass(frozen=True)
class TriggerConfig:
    # Who paces the cameras: the serial trigger box or a counter output of the DAQ.
    source: Literal["triggerbox", "daq_counter"] = "triggerbox"
    rate_hz: float = field(default=200.0, metadata=between(0.1, 10_000.0))
    duty_cycle: float = field(default=0.5, metadata={"gt": 0.0, "lt": 1.0})


@dataclass(frozen=True)
class TriggerBoxConfig:
    # "sim": the trigger box firmware emulator of the digital twin, hosted by the simulated DAQ
    # and reached over a pseudo-terminal, through the same serial client as the real box.
    backend: Literal["sim", "serial"] = "sim"
    port: str = ""
    baudrate: int = field(default=115_200, metadata=gt(0))
    timeout_s: float = field(default=1.0, metadata=gt(0))


@dataclass(frozen=True)
class DaqChannelConfig:
    name: str
    kind: Literal["emg", "force", "other"]
    units: str = "V"
    # The physical channel on a real DAQ ("Dev1/ai0"); the simulator ignores it.
    physical: str = ""
    range_v: float = field(default=10.0, metadata=gt(0))


@dataclass(frozen=True)
class TriggerLineConfig:
    name: str = "camera_trigger"
    physical: str = ""


@dataclass(frozen=True)
class DaqConfig:
    # "sim": the twin's DAQ; "nidaqmx": a National Instruments DAQ (docs/daq.md).
    backend: Literal["sim", "nidaqmx"] = "sim"
    device: str = "Dev1"
    rate_hz: float = field(default=10_000.0, metadata=between(1.0, 2_000_000.0))
    # Samples per block read from the device and sent to the writer.
    block_samples: int = field(default=100, metadata=between(1, 1_000_000))
    channels: tuple[DaqChannelConfig, ...] = ()
    trigger_line: TriggerLineConfig = TriggerLineConfig()
    nidaqmx: NiDaqSettings = NiDaqSettings()


@dataclass(frozen=True)
class CameraConfig:
    name: str
    # "sim": a twin camera; "genicam": a GenICam camera through a GenTL producer (harvesters).
    backend: Literal["sim", "genicam"] = "sim"
    width: int = field(default=640, metadata=between(8, 8192))
    height: int = field(default=480, metadata=between(8, 8192))
    pixel_format: Literal["Mono8"] = "Mono8"
    # Frames the camera process may hold while the writer is behind; beyond this it drops and
    # counts them (the recording path never drops silently).
    max_buffered_frames: int = field(default=1000, metadata=between(1, 1_000_000))
    genicam: GenICamSettings = GenICamSettings()

    @property
    def needs_twin_trigger_line(self) -> bool:
        """Whether this camera takes its pulses from the twin's trigger line (not a wire)."""
        return self.backend == "sim" or (
            self.backend == "genicam" and self.genicam.trigger == "software_per_pulse"
        )


@dataclass(frozen=True)
class CameraFaultConfig:
    drop_trigger_indices: tuple[int, ...] = ()
    drop_probability: float = field(default=0.0, metadata=between(0.0, 1.0))
    drift_ppm: float = field(default=0.0, metadata=between(-10_000.0, 10_000.0))
    # Limb switching (the poster's first problem): on these pulses the camera sees the right
    # limbs where the labelled left ones are, so its pose labels land on the wrong limb.
    swap_limbs_trigger_indices: tuple[int, ...] = ()
    swap_limbs_probability: float = field(default=0.0, metadata=between(0.0, 1.0))
    # Fetches that fail, as a real camera's do now and then; either way the pulse's frame is lost
    # (a gap in frame_id) and the camera goes on. A timeout: no frame comes, and the read waits
    # out its whole timeout; an error: the buffer came back unreadable, and the read returns at
    # once with nothing (what harvesters does with a buffer it cannot read).
    fetch_timeout_probability: float = field(default=0.0, metadata=between(0.0, 1.0))
    fetch_error_probability: float = field(default=0.0, metadata=between(0.0, 1.0))


@dataclass(frozen=True)
class FaultsConfig:
    cameras: dict[str, CameraFaultConfig] = field(default_factory=dict)
    # Extra time the writer spends on every frame, standing in for a slow disk.
    slow_disk_ms_per_frame: float = field(default=0.0, metadata=ge(0))
    # Pull the twin trigger box's cable this long after the DAQ starts (0 = never).
    triggerbox_unplug_after_s: float = field(default=0.0, metadata=ge(0))
    # SIGKILL this worker ("writer", "daq", "camera:<name>", "pose:<names joined by +>",
    # "triangulator", "jumps")
    # this long after the pulses start, as a crash would.
    kill_worker: str = ""
    kill_worker_after_s: float = field(default=1.0, metadata=ge(0))
    # The DAQ's input buffer overruns this long after acquisition starts (0 = never): reading
    # fails with NI-DAQmx's error -200279, as a real DAQ's does when the host reads too slowly.
    daq_overrun_after_s: float = field(default=0.0, metadata=ge(0))


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    noise_dn: float = field(default=2.0, metadata=ge(0))
    blur_px: float = field(default=0.0, metadata=ge(0))
    brightness: float = field(default=1.0, metadata=between(0.01, 4.0))
    jump: JumpParameters = JumpParameters()
    faults: FaultsConfig = FaultsConfig()

    def camera_faults(self, camera: str) -> CameraFaultConfig:
        return self.faults.cameras.get(camera, CameraFaultConfig())
