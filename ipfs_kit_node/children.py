"""Short-lived child processes for work the daemon must not do in its own memory (pyarrow)."""

from __future__ import annotations

import sys

import trio

from .logs import get_logger

log = get_logger(__name__)


async def run_exporter(module: str, *args: str, timeout: float, what: str) -> bool:
    """``python -m module args…`` at low CPU priority (starting pyarrow costs ~0.5 s of CPU
    that tasks and Bitswap should not wait on). Best effort: a failure is logged, not raised."""
    command = ["nice", "-n", "10", sys.executable, "-m", module, *args]
    with trio.move_on_after(timeout) as scope:
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                        check=False)
    if scope.cancelled_caught:
        log.warning(f"{what} timed out; it is refreshed at the next snapshot", timeout=timeout)
        return False
    if result.returncode != 0:
        log.warning(f"{what} failed",
                    error=result.stderr.decode(errors="replace").strip()[-500:])
        return False
    return True
