"""The GenICam backend through the real harvesters code path, against GenICam's simulators.

TLSimu (software triggers) stands in for a hardware-triggered camera; viky (free run only) for a
camera of another vendor. TLSimu draws frame n of an acquisition as ``(x + y + n) % 256``, which
tells which frame of the simulator an image really is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from acquisition.cameras.genicam import GenICamCamera, TriggerLinePulses, list_devices
from acquisition.cameras.genicam_settings import GenICamSettings
from acquisition.cameras.interface import CameraFrame
from acquisition.errors import DeviceError, HardwareUnavailable
from acquisition.transport import TOPIC_TRIGGER, Header, make_socket, send_message

pytestmark = pytest.mark.timeout(30)

Settings = Callable[..., GenICamSettings]


def tlsimu_pattern(height: int, width: int, simulator_frame: int) -> np.ndarray:
    """(height, width) uint8: the image TLSimu draws as frame ``simulator_frame``."""
    rows, columns = np.mgrid[0:height, 0:width]
    return ((rows + columns + simulator_frame) % 256).astype(np.uint8)


def read_all(camera: GenICamCamera, quiet_s: float = 0.2) -> list[CameraFrame]:
    """Every frame until none comes for ``quiet_s``."""
    frames = []
    while (frame := camera.read(quiet_s)) is not None:
        frames.append(frame)
    return frames


# --- software trigger per pulse (TLSimu) ----------------------------------------------------


def test_one_frame_per_pulse_numbered_by_pulse_and_copied_out(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    pulse_count = 40
    # Fewer buffers than frames: the producer reuses them, so a view instead of a copy would show
    # a later frame's pixels.
    pulses = list_pulses(range(pulse_count))
    camera = make_camera(tlsimu_settings(num_buffers=5), width=320, height=240, pulse_source=pulses)
    camera.open()
    camera.arm()
    started_ns = time.monotonic_ns()
    frames = read_all(camera)
    elapsed_s = (time.monotonic_ns() - started_ns) / 1e9
    camera.disarm()
    print(f"TLSimu software trigger per pulse: {pulse_count} frames, {elapsed_s:.3f} s")

    assert [frame.frame_id for frame in frames] == list(range(pulse_count))
    for frame in frames:
        assert frame.image.shape == (240, 320)
        assert frame.image.dtype == np.uint8
        assert frame.image.flags.owndata
        np.testing.assert_array_equal(frame.image, tlsimu_pattern(240, 320, frame.frame_id))
    host_times = [frame.t_host_ns for frame in frames]
    assert host_times == sorted(host_times)
    assert all(frame.t_device_ns > 0 for frame in frames)  # TLSimu's buffers carry a timestamp
    assert camera.pulses_without_frame == []


def test_info_records_device_and_every_node_it_set(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    camera = make_camera(tlsimu_settings(), width=256, height=128, pulse_source=list_pulses([]))
    camera.open()
    info = camera.info()
    assert info["backend"] == "genicam"
    assert info["serial"] == "SN_InterfaceA_0"
    assert info["model"] == "TLSimuMono"
    assert info["vendor"] == "EMVA_D"
    assert info["device_nodes"]["DeviceModelName"] == "TLSimu"
    assert info["nodes"]["Width"] == 256
    assert info["nodes"]["Height"] == 128
    assert info["nodes"]["PixelFormat"] == "Mono8"
    assert info["nodes"]["TriggerMode"] == "On"
    assert info["nodes"]["TriggerSource"] == "Software"
    # TLSimu has chunk mode but no FrameID chunk: the frame id is the pulse number.
    assert info["frame_id_source"] == "pulse"
    assert info["chunk_data"].startswith("unavailable")
    assert info["cti_files"] == [str(Path(info["settings"]["cti_files"][0]).absolute())]
    assert info["settings"]["trigger"] == "software_per_pulse"


def test_a_skipped_pulse_is_a_gap(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    pulses = [0, 1, 2, 4, 5, 6]
    camera = make_camera(tlsimu_settings(), pulse_source=list_pulses(pulses))
    camera.open()
    camera.arm()
    frames = read_all(camera)
    assert [frame.frame_id for frame in frames] == pulses


def test_a_frame_that_never_comes_is_a_gap_not_a_misnumbering(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any, captured_acquirers: list[Any]
) -> None:
    lost_pulse = 3

    def before_pulse(pulse: int) -> None:
        # The simulator stops acquiring for one pulse: its trigger produces nothing.
        node_map = captured_acquirers[0].remote_device.node_map
        if pulse == lost_pulse:
            node_map.AcquisitionStop.execute()
        elif pulse == lost_pulse + 1:
            node_map.AcquisitionStart.execute()

    pulses = list_pulses(range(8), before_pulse=before_pulse)
    camera = make_camera(tlsimu_settings(fetch_timeout_s=0.2), pulse_source=pulses)
    camera.open()
    camera.arm()
    frames = read_all(camera, quiet_s=0.5)

    assert [frame.frame_id for frame in frames] == [0, 1, 2, 4, 5, 6, 7]
    assert camera.pulses_without_frame == [lost_pulse]
    assert camera.info()["pulses_without_frame"] == [lost_pulse]
    # The frame of pulse 4 is the simulator's fourth frame (number 3): it belongs to pulse 4,
    # nothing shifted.
    by_pulse = {frame.frame_id: frame for frame in frames}
    np.testing.assert_array_equal(by_pulse[4].image, tlsimu_pattern(240, 320, 3))
    np.testing.assert_array_equal(by_pulse[7].image, tlsimu_pattern(240, 320, 6))


def test_read_times_out_with_none_and_then_continues(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any, captured_acquirers: list[Any]
) -> None:
    """A frame that is late: each read returns None at its own timeout, the frame still counts."""
    state = {"stopped": False}

    def before_pulse(pulse: int) -> None:
        if pulse == 0:
            captured_acquirers[0].remote_device.node_map.AcquisitionStop.execute()
            state["stopped"] = True

    camera = make_camera(
        tlsimu_settings(fetch_timeout_s=5.0),
        pulse_source=list_pulses([0], before_pulse=before_pulse),
    )
    camera.open()
    camera.arm()
    timeout_s = 0.05
    started_ns = time.monotonic_ns()
    assert camera.read(timeout_s) is None
    elapsed_s = (time.monotonic_ns() - started_ns) / 1e9
    print(f"read({timeout_s}) with no frame returned None after {elapsed_s * 1e3:.1f} ms")
    assert state["stopped"]
    assert camera.read(timeout_s) is None
    # The simulator resumes; pulse 0's trigger was lost with it, so fire through the device
    # directly, as a late frame would arrive, and it is still pulse 0's.
    node_map = captured_acquirers[0].remote_device.node_map
    node_map.AcquisitionStart.execute()
    node_map.TriggerSoftware.execute()
    frame = camera.read(1.0)
    assert frame is not None
    assert frame.frame_id == 0
    assert camera.pulses_without_frame == []


def test_no_pulse_means_no_frame(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    camera = make_camera(tlsimu_settings(), pulse_source=list_pulses([]))
    camera.open()
    camera.arm()
    assert camera.read(0.05) is None


def test_arm_again_restarts_the_numbering(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    pulses = list_pulses([0, 1, 2])
    camera = make_camera(tlsimu_settings(), pulse_source=pulses)
    camera.open()
    camera.arm()
    assert [frame.frame_id for frame in read_all(camera)] == [0, 1, 2]
    camera.disarm()
    pulses._pulses.extend([0, 1])
    camera.arm()
    assert [frame.frame_id for frame in read_all(camera)] == [0, 1]


def test_pulses_from_the_twin_trigger_line(make_camera: Any, tlsimu_settings: Settings) -> None:
    """The wiring of the rig's tests: pulses published by the DAQ process over ZeroMQ."""
    context = zmq.Context()
    publisher = make_socket(context, zmq.PUB, "tcp://127.0.0.1:*", bind=True)
    endpoint = publisher.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        camera = make_camera(tlsimu_settings(), pulse_source=TriggerLinePulses(context, endpoint))
        camera.open()
        camera.arm()
        time.sleep(0.2)  # a SUB socket sees only what is published after it has joined
        pulse_count = 20
        for pulse in range(pulse_count):
            header = Header(
                stream="trigger_line",
                seq=pulse,
                t_host_ns=time.monotonic_ns(),
                trigger_index=pulse,
                extra={"daq_sample_index": 50 * pulse},
            )
            send_message(publisher, TOPIC_TRIGGER, header)
            time.sleep(0.01)
        frames = read_all(camera)
        camera.close()
    finally:
        publisher.close(0)
        context.term()
    assert [frame.frame_id for frame in frames] == list(range(pulse_count))


def test_trigger_line_pulses_time_out_with_none() -> None:
    context = zmq.Context()
    publisher = make_socket(context, zmq.PUB, "tcp://127.0.0.1:*", bind=True)
    pulses = TriggerLinePulses(context, publisher.getsockopt(zmq.LAST_ENDPOINT).decode())
    try:
        assert pulses.next_pulse(0.02) is None
    finally:
        pulses.close()
        pulses.close()
        publisher.close(0)
        context.term()


# --- configuration ----------------------------------------------------------------------------


def test_vendor_node_names_are_used(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    # TLSimu exposes the register behind Width as WidthReg: map the standard name onto it.
    settings = tlsimu_settings(node_names={"Width": "WidthReg"})
    camera = make_camera(settings, width=200, height=100, pulse_source=list_pulses([0]))
    camera.open()
    assert camera.info()["nodes"]["WidthReg"] == 200
    assert "Width" not in camera.info()["nodes"]
    camera.arm()
    frame = camera.read(1.0)
    assert frame is not None
    assert frame.image.shape == (100, 200)


def test_a_line_trigger_on_a_camera_without_lines_is_refused(
    make_camera: Any, tlsimu_settings: Settings, tlsimu_cti: Path, list_pulses: Any
) -> None:
    camera = make_camera(tlsimu_settings(trigger="line"))
    refused = r"TriggerSource has no entry 'Line0' \(it offers Software\)"
    with pytest.raises(DeviceError, match=refused):
        camera.open()
    # The failed open released the device: another camera can have it.
    again = make_camera(tlsimu_settings(), pulse_source=list_pulses([]))
    again.open()


def test_a_size_the_camera_cannot_take_is_refused(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    camera = make_camera(tlsimu_settings(), width=5000, pulse_source=list_pulses([]))
    with pytest.raises(DeviceError, match="Width = 5000"):
        camera.open()


def test_a_node_value_the_camera_lacks_is_refused(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    settings = tlsimu_settings(node_values={"AcquisitionFrameRate": "100"})
    camera = make_camera(settings, pulse_source=list_pulses([]))
    with pytest.raises(DeviceError, match=r"node_values\.AcquisitionFrameRate"):
        camera.open()


# --- free run (viky) --------------------------------------------------------------------------


def test_viky_free_run_delivers_counted_frames(make_camera: Any, viky_cti: Path) -> None:
    settings = GenICamSettings(
        cti_files=(str(viky_cti),),
        serial_number="1",
        trigger="free_run",
        node_values={"AcquisitionFrameRate": "200"},
    )
    camera = make_camera(settings, width=320, height=240)
    camera.open()
    info = camera.info()
    # viky starts in RGBa8: the backend switched it to Mono8.
    assert info["nodes"]["PixelFormat"] == "Mono8"
    assert float(info["nodes"]["AcquisitionFrameRate"]) == 200.0
    assert info["frame_id_source"] == "counted"
    assert info["model"] == "Viky"
    camera.arm()
    frame_count = 20
    started_ns = time.monotonic_ns()
    frames = [camera.read(1.0) for _ in range(frame_count)]
    elapsed_s = (time.monotonic_ns() - started_ns) / 1e9
    camera.disarm()
    print(f"viky free run: {frame_count} frames in {elapsed_s:.3f} s")
    assert all(frame is not None for frame in frames)
    assert [frame.frame_id for frame in frames if frame] == list(range(frame_count))
    assert all(frame.image.shape == (240, 320) for frame in frames if frame)
    assert all(frame.t_device_ns == -1 for frame in frames if frame)  # viky has no clock
    assert camera.info()["device_timestamp_source"] == "none"


# --- what is missing --------------------------------------------------------------------------


def test_a_missing_cti_file_is_named(make_camera: Any, tmp_path: Path) -> None:
    missing = tmp_path / "vendor" / "Producer.cti"
    camera = make_camera(GenICamSettings(cti_files=(str(missing),), trigger="free_run"))
    with pytest.raises(HardwareUnavailable, match=r"producer file not found: .*Producer\.cti"):
        camera.open()


def test_a_file_that_is_not_a_producer_is_named(
    make_camera: Any, tmp_path: Path, tlsimu_cti: Path
) -> None:
    text_file = tmp_path / "Broken.cti"
    text_file.write_text("not a shared library")
    camera = make_camera(GenICamSettings(cti_files=(str(text_file),), trigger="free_run"))
    with pytest.raises(HardwareUnavailable, match=r"Broken\.cti is not a loadable GenTL producer"):
        camera.open()
    # A shared library, but not a GenTL producer: TLSimu's helper library.
    helper = tlsimu_cti.parent / "libVirtualFG.so"
    camera = make_camera(GenICamSettings(cti_files=(str(helper),), trigger="free_run"))
    with pytest.raises(HardwareUnavailable, match=r"libVirtualFG\.so is not a GenTL producer"):
        camera.open()


def test_no_producer_configured_anywhere(
    make_camera: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    camera = make_camera(GenICamSettings(trigger="free_run"))
    with pytest.raises(HardwareUnavailable, match="GENICAM_GENTL64_PATH"):
        camera.open()


def test_producers_are_found_on_the_gentl_path(
    make_camera: Any, monkeypatch: pytest.MonkeyPatch, viky_cti: Path
) -> None:
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(viky_cti.parent))
    camera = make_camera(GenICamSettings(trigger="free_run", serial_number="2"))
    camera.open()
    assert camera.info()["cti_files"] == [str(viky_cti)]
    assert camera.info()["serial"] == "2"


def test_a_wrong_serial_is_named_with_what_was_found(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    camera = make_camera(tlsimu_settings(serial_number="NOPE-42"), pulse_source=list_pulses([]))
    with pytest.raises(HardwareUnavailable, match="serial_number 'NOPE-42'") as error:
        camera.open()
    assert "SN_InterfaceA_0" in str(error.value)


def test_an_ambiguous_user_id_is_refused(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    # All four TLSimu devices carry the user id "Center".
    camera = make_camera(
        tlsimu_settings(serial_number="", user_id="Center"), pulse_source=list_pulses([])
    )
    with pytest.raises(HardwareUnavailable, match="4 devices match user_id 'Center'"):
        camera.open()


def test_no_device_is_named(make_camera: Any, tlsimu_settings: Settings, list_pulses: Any) -> None:
    # While one camera holds the producer, it lists no devices to a second Harvester in the
    # same process: the situation of a camera that is not connected.
    first = make_camera(tlsimu_settings(), pulse_source=list_pulses([]))
    first.open()
    second = make_camera(
        tlsimu_settings(serial_number="SN_InterfaceB_0"), pulse_source=list_pulses([])
    )
    with pytest.raises(HardwareUnavailable, match=r"no GenICam device found through .*TLSimu\.cti"):
        second.open()


def test_missing_harvesters_package_is_hardware_unavailable(
    make_camera: Any, monkeypatch: pytest.MonkeyPatch, viky_cti: Path
) -> None:
    monkeypatch.setitem(sys.modules, "harvesters", None)
    monkeypatch.setitem(sys.modules, "harvesters.core", None)
    camera = make_camera(GenICamSettings(cti_files=(str(viky_cti),), trigger="free_run"))
    with pytest.raises(HardwareUnavailable, match="'harvesters' and 'genicam' packages"):
        camera.open()


def test_list_devices(viky_cti: Path) -> None:
    devices = list_devices(GenICamSettings(cti_files=(str(viky_cti),)))
    assert [device["serial_number"] for device in devices] == ["0", "1", "2"]
    assert {device["model"] for device in devices} == {"Viky"}


# --- failures in use and lifecycle -------------------------------------------------------------


def test_a_device_lost_during_fetch_is_a_device_error(
    make_camera: Any, viky_cti: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genicam import gentl
    from harvesters.core import ImageAcquirer

    camera = make_camera(GenICamSettings(cti_files=(str(viky_cti),), trigger="free_run"))
    camera.open()
    camera.arm()
    assert camera.read(1.0) is not None

    def unplugged(self: Any, **kwargs: Any) -> Any:
        raise gentl.IoException("device removed")

    monkeypatch.setattr(ImageAcquirer, "fetch", unplugged)
    with pytest.raises(DeviceError, match=r"lost the device .*device removed"):
        camera.read(1.0)


def test_close_is_idempotent_and_final(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    pulses = list_pulses([0])
    camera = make_camera(tlsimu_settings(), pulse_source=pulses)
    camera.close()  # never opened
    camera = make_camera(tlsimu_settings(), pulse_source=pulses)
    camera.open()
    camera.arm()
    camera.close()  # while armed
    camera.close()
    assert pulses.closed
    with pytest.raises(RuntimeError, match="after close"):
        camera.open()
    # The device is free again.
    with make_camera(tlsimu_settings(), pulse_source=list_pulses([])) as again:
        assert again.info()["serial"] == "SN_InterfaceA_0"


def test_read_before_arm_is_an_error(
    make_camera: Any, tlsimu_settings: Settings, list_pulses: Any
) -> None:
    camera = make_camera(tlsimu_settings(), pulse_source=list_pulses([]))
    with pytest.raises(RuntimeError, match="arm"):
        camera.read(0.01)
    with pytest.raises(RuntimeError, match="open"):
        camera.arm()


def test_constructor_checks_its_arguments(tlsimu_settings: Settings) -> None:
    with pytest.raises(ValueError, match="needs a pulse source"):
        GenICamCamera("cam", 320, 240, "Mono8", tlsimu_settings())
    with pytest.raises(ValueError, match="only Mono8"):
        GenICamCamera("cam", 320, 240, "Mono16", tlsimu_settings(trigger="free_run"))
    with pytest.raises(ValueError, match="positive"):
        GenICamCamera("cam", 0, 240, "Mono8", tlsimu_settings(trigger="free_run"))


# --- chunk data (viky's chunks, mapped onto the FrameID chunk) ---------------------------------


def viky_bounce_counter_as_frame_id(viky_cti: Path, **overrides: Any) -> GenICamSettings:
    """viky has no FrameID chunk but a NrBounces chunk (bounces of its ball, 0 for the first
    second or so): mapped onto FrameID, it runs the chunk path of harvesters and of the backend
    with a counter that does not advance."""
    fields: dict[str, Any] = {
        "cti_files": (str(viky_cti),),
        "serial_number": "0",
        "trigger": "free_run",
        "node_names": {"FrameID": "NrBounces", "ChunkFrameID": "ChunkNrBounces"},
        "node_values": {"AcquisitionFrameRate": "200"},
    }
    fields.update(overrides)
    return GenICamSettings(**fields)


def test_frame_id_read_from_chunks_and_a_stuck_counter_is_an_error(
    make_camera: Any, viky_cti: Path
) -> None:
    camera = make_camera(viky_bounce_counter_as_frame_id(viky_cti))
    camera.open()
    info = camera.info()
    assert info["frame_id_source"] == "chunk"
    assert info["chunk_data"] == "on (ChunkFrameID)"
    assert info["nodes"]["ChunkModeActive"] is True
    assert info["nodes"]["ChunkEnable[NrBounces]"] is True
    camera.arm()
    first = camera.read(1.0)
    assert first is not None
    assert first.frame_id == 0
    # The second frame carries the same counter value: numbering it would be a guess.
    with pytest.raises(DeviceError, match="did not advance"):
        camera.read(1.0)


def test_a_chunk_counter_below_its_configured_start_is_an_error(
    make_camera: Any, viky_cti: Path
) -> None:
    camera = make_camera(viky_bounce_counter_as_frame_id(viky_cti, chunk_frame_id_at_start=1))
    camera.open()
    camera.arm()
    with pytest.raises(DeviceError, match=r"below cameras\.genicam\.chunk_frame_id_at_start = 1"):
        camera.read(1.0)


def test_chunk_data_off_leaves_counting(make_camera: Any, viky_cti: Path) -> None:
    camera = make_camera(viky_bounce_counter_as_frame_id(viky_cti, chunk_data=False))
    camera.open()
    info = camera.info()
    assert info["frame_id_source"] == "counted"
    # viky starts with chunk mode on: the backend turned it off.
    assert info["nodes"]["ChunkModeActive"] is False
