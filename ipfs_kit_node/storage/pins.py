"""The pin set: roots and their mode, persisted (fsynced, atomically replaced) before a pin
or unpin is acknowledged. Which blocks a recursive pin covers is derived by walking the DAG.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from ..journal import atomic_write

PinMode = Literal["recursive", "direct"]


class PinSet:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.roots: dict[str, PinMode] = {}

    def load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        self.roots = {cid: mode for cid, mode in data["pins"].items()
                      if mode in ("recursive", "direct")}

    def save(self, roots: dict[str, PinMode] | None = None) -> None:
        """Write ``roots`` (default: the current ones) durably; raises OSError, leaving the
        file as it was. The caller adopts new roots only once this returns."""
        body = json.dumps({"version": 1, "pins": self.roots if roots is None else roots},
                          indent=0, sort_keys=True)
        atomic_write(self.path, body.encode())
