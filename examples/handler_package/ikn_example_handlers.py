"""Example task handlers: install this package beside ipfs-kit-node on the workers and add
the names to ``[tasks] handlers``."""

from __future__ import annotations

import json
import time
from typing import IO, Any

from ipfs_kit_node.handler import handler


@handler
def word_count(inputs: list[bytes], params: dict[str, Any]) -> bytes:
    """JSON {"words": N} over all inputs; ``sleep`` (seconds) makes each task take longer."""
    time.sleep(float(params.get("sleep", 0)))
    return json.dumps({"words": sum(len(data.split()) for data in inputs)}).encode()


@handler(inputs="file")
def upper(inputs: list[IO[bytes]], params: dict[str, Any]) -> bytes:
    """The inputs' bytes upper-cased, read as file objects."""
    return b"".join(f.read().upper() for f in inputs)
