"""What every worker process does first: its own logging, leaving Ctrl-C to the supervisor, and
ending with it."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys


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
    log = logging.getLogger(role)
    _end_with_parent(log)
    return log


# prctl(2) option: the signal this process gets when the thread that started it ends.
_PR_SET_PDEATHSIG = 1


def _end_with_parent(log: logging.Logger) -> None:
    """Have Linux send this worker SIGTERM when the process that started it dies.

    A supervisor killed with SIGKILL cannot stop its workers: without this they ran on (the
    writer holding the file open) until killed by hand. SIGTERM ends a worker as a crash would,
    except the writer, which flushes and closes its file on it.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        log.warning("cannot ask to end with the supervisor: %s", os.strerror(ctypes.get_errno()))
        return
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():
        # The parent died before the request was made: end now, as the request would have.
        os.kill(os.getpid(), signal.SIGTERM)
