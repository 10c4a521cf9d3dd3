"""Messages between the console and a ``rig worker`` on another host, on the control channel.

A ``rig worker`` connects a DEALER to the supervisor's control ROUTER with the identity
``worker-host/<role>`` (the worker process it starts connects with the role itself, as on one
host). JSON messages with a ``type``, as the rest of the control channel (acquisition.control):

from the worker host
    ``hello`` (idle, every :data:`AGENT_HEARTBEAT_S`: host, pid, jumprig version),
    ``launched`` (the worker process started: its pid), ``launch_failed`` (reason),
    ``heartbeat`` (while the worker process runs), ``exited`` (its exit code);
from the console
    ``launch`` (the trial's resolved config as TOML text, the :class:`~rig.workers.TrialPlan`,
    the camera factory's spec), ``abort`` (end the worker process now), ``kill`` (SIGKILL it: the
    twin's fault knob), ``ping`` (at least every :data:`CONSOLE_PING_S` while a trial runs).
"""

from __future__ import annotations

AGENT_PREFIX = "worker-host/"
AGENT_HEARTBEAT_S = 0.2
CONSOLE_PING_S = 0.5
# A worker host that hears nothing from the console for this long while its worker process runs
# takes the console for gone and aborts the worker (which then ends as it would on a Ctrl-C).
CONSOLE_SILENT_S = 15.0
# A worker process that has not ended this long after an abort is killed.
ABORT_GRACE_S = 30.0


def agent_identity(role: str) -> str:
    return AGENT_PREFIX + role


def role_of_agent(identity: str) -> str | None:
    """The role of a worker host's identity, or None if ``identity`` is not a worker host's."""
    return identity[len(AGENT_PREFIX) :] if identity.startswith(AGENT_PREFIX) else None
