"""``python -m rig.batch FILES_OR_DIR [...]``: the same as ``rig batch``."""

from rig.batch.command import main

raise SystemExit(main())
