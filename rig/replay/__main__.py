"""``python -m rig.replay FILE [...]``: the same as ``rig replay``."""

from rig.replay.command import main

raise SystemExit(main())
