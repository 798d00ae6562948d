"""How client commands write what they print: JSON for scripts, sizes as Kubo prints them,
streamed bytes to a stdout whose reader may leave early."""

from __future__ import annotations

import json
import math
import sys

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import Any


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def _si_bytes(n: int) -> str:
    """Bytes as Kubo's CLI prints them (go-humanize.Bytes: SI units, one decimal under 10)."""
    if n < 10:
        return f"{n} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    exp = min(int(math.log(n, 1000)), len(units) - 1)
    value = math.floor(n / 1000**exp * 10 + 0.5) / 10
    return f"{value:.1f} {units[exp]}" if value < 10 else f"{value:.0f} {units[exp]}"


def _stream_to_stdout(client: Any, command: str, cid: str) -> int:
    """A streamed answer written to stdout as it arrives (a reader that leaves is no error)."""
    try:
        sys.stdout.flush()
        with client.stream(command, {"arg": cid}) as response:
            response.copy_to(sys.stdout.fileno())
    except BrokenPipeError:
        _stdout_gone()
    return 0


def _stdout_gone() -> None:
    """`cat CID | head` closed our stdout early: stop quietly (no error at exit's flush)."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
