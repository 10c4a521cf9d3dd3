"""Settings of the NI-DAQmx backend: the ``[daq.nidaqmx]`` table of the rig's TOML config.

Only plain field types with defaults, so the generic loader in ``rig.config`` can read the table.
Bounds live in field ``metadata`` (``gt``, ``ge``, ``lt``, ``le``) as in ``acquisition.settings``;
they are written out here rather than imported: ``acquisition.settings`` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# How an analog input is referenced: "differential" measures the pair aiN and aiN+8 against each
# other (EMG electrodes: rejects the mains hum both leads pick up), "rse" against the DAQ's
# ground, "nrse" against AI SENSE, "pseudo_differential" on devices that have it, "default" the
# device's own choice.
TerminalConfig = Literal["differential", "rse", "nrse", "pseudo_differential", "default"]
TriggerLineMode = Literal["digital_input", "counter_edges"]


@dataclass(frozen=True)
class NiDaqSettings:
    # Terminal configuration per channel kind (``daq.channels[].kind``).
    emg_terminal_config: TerminalConfig = "differential"
    force_terminal_config: TerminalConfig = "differential"
    other_terminal_config: TerminalConfig = "differential"
    # Size of the driver's input buffer in seconds of samples; the DAQ process may fall this far
    # behind before the driver reports a buffer overrun (NI error -200279) and the trial ends.
    buffer_seconds: float = field(default=10.0, metadata={"ge": 0.1, "le": 600.0})
    # The counter that generates the camera pulse train when ``trigger.source = "daq_counter"``,
    # and the terminal its pulses come out on (wire it to every camera and to the trigger line).
    pulse_counter: str = "Dev1/ctr0"
    co_pulse_term: str = "/Dev1/PFI12"
    # How the trigger line (``daq.trigger_line.physical``) is recorded on the AI sample clock:
    # "digital_input": a hardware-timed digital line ("Dev1/port0/line0"), one level per sample;
    # "counter_edges": a counter counts rising edges on a terminal ("/Dev1/PFI8"), so pulses
    # shorter than one sample period are not missed.
    trigger_line_mode: TriggerLineMode = "digital_input"
    # The counter used for "counter_edges"; must differ from ``pulse_counter``.
    edge_counter: str = "Dev1/ctr1"
    # An optional hardware start trigger for the analog input ("/Dev1/PFI0"); empty starts on
    # software command. The trigger line follows the AI sample clock, so it starts with it.
    start_trigger_source: str = ""
    start_trigger_edge: Literal["rising", "falling"] = "rising"
    # Timeout of each driver read once a whole block is known to be in the buffer.
    read_timeout_s: float = field(default=1.0, metadata={"gt": 0.0, "le": 60.0})
