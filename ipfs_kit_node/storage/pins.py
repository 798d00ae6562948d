"""The pin set: roots and their mode, persisted (fsynced, atomically replaced) before a pin
or unpin is acknowledged. Which blocks a recursive pin covers is derived by walking the DAG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

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

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        body = json.dumps({"version": 1, "pins": self.roots}, indent=0, sort_keys=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
