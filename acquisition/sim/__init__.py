"""The digital twin of the jumping rig: a mouse skeleton that jumps (``skeleton``), calibrated
virtual cameras (``camera_model``) that render it to frames (``render``), the EMG and platform
forces a DAQ would record (``signals``), and the fault knobs of the simulated devices
(``faults``). Everything is a pure function of the settings, the seed and time, so a simulated
trial can be scored against its exact ground truth."""
