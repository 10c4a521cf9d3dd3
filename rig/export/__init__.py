"""The trial in the formats of the tools the rig's users work with (docs/export.md).

- :func:`export_nwb`: Neurodata Without Borders (pynwb, ndx-pose), `rig export nwb`;
- :func:`export_dlc`: DeepLabCut's pose tables, `rig export dlc`;
- :func:`to_movement_dataset`: a movement poses dataset (xarray) of the 2D or 3D poses.

The calibration the rig writes (``tracking.camera_group.CameraGroup.save``) is already anipose's
TOML, which aniposelib's ``CameraGroup.load`` reads.
"""

from __future__ import annotations

from rig.export.dlc_tables import DlcExport, export_dlc, pose_table
from rig.export.nwb_file import NwbExport, default_nwb_path, export_nwb
from rig.export.nwb_session import SessionMetadata
from rig.export.pose_dataset import to_movement_dataset
from rig.export.trial_contents import ExportError, TrialContents, read_trial_contents

__all__ = [
    "DlcExport",
    "ExportError",
    "NwbExport",
    "SessionMetadata",
    "TrialContents",
    "default_nwb_path",
    "export_dlc",
    "export_nwb",
    "pose_table",
    "read_trial_contents",
    "to_movement_dataset",
]
