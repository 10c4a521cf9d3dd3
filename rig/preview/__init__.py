"""The live preview: a web page on localhost that shows the rig while trials run.

:class:`PreviewServer` runs it in its own process for a whole ``rig run`` session; the rig's
stages publish on the monitor feed it binds. See docs/preview.md.
"""

from rig.preview.process import DEFAULT_HOST, DEFAULT_PORT, PreviewError, PreviewServer

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "PreviewError", "PreviewServer"]
