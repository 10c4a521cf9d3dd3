"""What hardware this machine offers the configured rig: `rig devices`, and the pre-flight check.

The pre-flight check runs before a trial creates anything: a missing driver or device is a clear
message, not a traceback from a worker process after the file was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

from acquisition.errors import HardwareUnavailable
from rig.config import RigConfig


@dataclass(frozen=True)
class DeviceReport:
    """One kind of device: what was found, and what is missing."""

    kind: str
    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def survey(config: RigConfig) -> list[DeviceReport]:
    """Look for every device kind the config uses, and for serial ports and NI devices anyway."""
    return [_cameras(config), _daq(config), _serial_ports(config)]


def preflight_problems(config: RigConfig) -> list[str]:
    """Missing drivers and devices that would stop this config's trial; empty when it can run."""
    problems: list[str] = []
    for report in survey(config):
        problems.extend(report.missing)
    return problems


def print_survey(reports: list[DeviceReport], stream: TextIO) -> None:
    for report in reports:
        stream.write(f"{report.kind}:\n")
        for line in report.found:
            stream.write(f"  {line}\n")
        for line in report.missing:
            stream.write(f"  MISSING: {line}\n")
        if not report.found and not report.missing:
            stream.write("  (none configured)\n")


def _cameras(config: RigConfig) -> DeviceReport:
    report = DeviceReport("cameras")
    for camera in config.cameras:
        if f"camera:{camera.name}" in config.remote.roles:
            report.found.append(f"{camera.name}: on another host (its `rig worker` checks it)")
            continue
        if camera.backend == "sim":
            report.found.append(f"{camera.name}: digital twin camera")
            continue
        from acquisition.cameras.genicam import list_devices

        try:
            devices = list_devices(camera.genicam)
        except HardwareUnavailable as error:
            report.missing.append(f"{camera.name}: {error}")
            continue
        wanted = camera.genicam.serial_number or camera.genicam.user_id
        matching = [
            d for d in devices if not wanted or wanted in (d["serial_number"], d["user_id"])
        ]
        if matching:
            device = matching[0]
            report.found.append(
                f"{camera.name}: {device['vendor']} {device['model']} "
                f"serial {device['serial_number']} (user id {device['user_id']!r})"
            )
        else:
            seen = ", ".join(d["serial_number"] for d in devices) or "none"
            report.missing.append(f"{camera.name}: no GenICam camera {wanted!r} (found: {seen})")
    return report


def _daq(config: RigConfig) -> DeviceReport:
    report = DeviceReport("DAQ")
    if config.daq.backend == "sim":
        report.found.append("digital twin DAQ")
        return report
    from acquisition.daq.nidaq import list_devices

    try:
        devices = list_devices()
    except HardwareUnavailable as error:
        report.missing.append(str(error))
        return report
    for device in devices:
        report.found.append(
            f"{device['name']}: {device['product_type']} serial {device['serial_number']}"
        )
    if config.daq.device not in {d["name"] for d in devices}:
        report.missing.append(f"no NI device named {config.daq.device!r} (daq.device)")
    return report


def _serial_ports(config: RigConfig) -> DeviceReport:
    report = DeviceReport("trigger box / serial ports")
    uses_box = config.trigger.source == "triggerbox"
    if uses_box and config.triggerbox.backend == "sim":
        report.found.append("digital twin trigger box (emulated firmware on a pseudo-terminal)")
    from acquisition.triggerbox.serial_box import list_serial_ports

    try:
        ports = list_serial_ports()
    except HardwareUnavailable as error:
        report.missing.append(str(error))
        return report
    for port in ports:
        usb = f" [{port['usb_id']}]" if port["usb_id"] else ""
        report.found.append(f"{port['device']}: {port['description']}{usb}")
    if uses_box and config.triggerbox.backend == "serial":
        wanted = config.triggerbox.port
        if "://" not in wanted and wanted not in {p["device"] for p in ports}:
            report.missing.append(f"serial port {wanted!r} (triggerbox.port) not found")
    return report
