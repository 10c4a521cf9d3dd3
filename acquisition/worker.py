"""What every worker process does first: its own logging, and leaving Ctrl-C to the supervisor."""

from __future__ import annotations

import logging
import os
import signal


def setup_worker(role: str) -> logging.Logger:
    """Configure this process's logging and signals; returns its logger.

    SIGINT is ignored: Ctrl-C at the console reaches the whole process group, and the supervisor
    alone decides how to end the trial (it stops the workers in order so every queue drains).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("JUMPRIG_LOG_LEVEL", "WARNING"),
        format=f"%(asctime)s {role} %(levelname)s %(message)s",
    )
    return logging.getLogger(role)
