"""The receive thread: drains the monitor feed into the preview's state as fast as it arrives.

The preview binds one SUB socket (subscribed to everything); every live stage of the rig connects
a PUB socket to it and sends without waiting. The thread applies each message to the state at
once, which keeps only the newest of each kind, so nothing queues behind a slow browser.
"""

from __future__ import annotations

import logging
import threading

import zmq

from acquisition.transport import MONITOR_HWM, recv_message
from rig.preview.state import FeedError, PreviewState

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 100
# A message that cannot be read is logged at most this often (and always counted).
BAD_MESSAGE_LOG_INTERVAL = 100


class FeedReceiver:
    """Binds a SUB socket at ``endpoint`` on construction; :meth:`start` runs the thread.

    The socket is made and bound here (so a taken address fails at once, in the caller), then
    used and closed only by the thread.
    """

    def __init__(self, context: zmq.Context, endpoint: str, state: PreviewState) -> None:
        if not endpoint:
            raise ValueError("the monitor endpoint must not be empty")
        self.state = state
        socket = context.socket(zmq.SUB)
        try:
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.RCVHWM, MONITOR_HWM)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            socket.bind(endpoint)
        except zmq.ZMQError:
            socket.close()
            raise
        self._socket = socket
        # The address actually bound (a wildcard tcp port resolved).
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="preview-feed", daemon=True)
        self._started = False
        self.bad_messages = 0

    def start(self) -> None:
        if self._started:
            raise RuntimeError("the feed receiver was started already")
        self._started = True
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the socket; safe to call twice."""
        self._stop.set()
        if self._started:
            self._thread.join(timeout_s)
        elif not self._socket.closed:
            self._socket.close()

    def _run(self) -> None:
        socket = self._socket
        try:
            while not self._stop.is_set():
                if not socket.poll(POLL_TIMEOUT_MS, zmq.POLLIN):
                    continue
                while not self._stop.is_set():
                    try:
                        message = recv_message(socket, zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    except (ValueError, TypeError, KeyError) as error:
                        # Not the project's [topic, header, payload] message.
                        self._count_bad(f"unreadable message: {error}")
                        continue
                    try:
                        self.state.apply(message)
                    except FeedError as error:
                        self._count_bad(str(error))
        finally:
            socket.close()

    def _count_bad(self, problem: str) -> None:
        if self.bad_messages % BAD_MESSAGE_LOG_INTERVAL == 0:
            log.warning("preview: %s (%d so far)", problem, self.bad_messages + 1)
        self.bad_messages += 1
