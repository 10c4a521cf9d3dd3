"""The trial file: one crash-safe HDF5 file per trial (layout and reasons in docs/format.md)."""

from rig.trialfile.layout import SCHEMA_VERSION
from rig.trialfile.reader import TrialFile, TrialFileError, open_trial
from rig.trialfile.writer import CameraLayout, DaqLayout, StreamLayout, TrialFileWriter

__all__ = [
    "SCHEMA_VERSION",
    "CameraLayout",
    "DaqLayout",
    "StreamLayout",
    "TrialFile",
    "TrialFileError",
    "TrialFileWriter",
    "open_trial",
]
