"""sd_notify over the NOTIFY_SOCKET datagram socket: READY, WATCHDOG, STOPPING.

A few lines instead of a dependency. Without NOTIFY_SOCKET every call is a no-op, so the
daemon behaves the same outside systemd.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import trio

from .logs import get_logger
from .service import TaskStatus

log = get_logger(__name__)


class SystemdNotifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        # A leading "@" names a socket in the abstract namespace.
        self._address = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog_interval: float | None = (
            int(usec) / 1e6 / 2 if usec.isdigit() and int(usec) > 0 and ours else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    async def notify(self, state: str) -> None:
        if not self._address:
            return
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with sock:
            try:
                await sock.sendto(state.encode(), self._address)
            except OSError as exc:
                log.warning("sd_notify failed", state=state, error=str(exc))

    async def watchdog(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                       ) -> None:
        """Ping the watchdog at half its period for as long as the event loop runs."""
        task_status.started()
        if self.watchdog_interval is None or not self._address:
            return
        while True:
            await self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog_interval)
