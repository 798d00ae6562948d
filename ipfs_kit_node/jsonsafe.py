"""JSON from strangers, parsed with a nesting limit.

``json.loads`` recurses once per nesting level: a 200 KB body of ``[`` raises RecursionError
(which no route expects) and anything that walks the parsed document later may recurse as
deep. ``loads`` measures the nesting first, at C speed and in linear time (strings removed by
one regex pass, brackets mapped to +1/-1 and summed), and refuses a document deeper than
``max_depth`` before the parser sees it.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from .errors import JsonInputError

MAX_DEPTH = 64

# A JSON string, or the unterminated tail of one: it never fails after the opening quote, so
# the scan never restarts inside a string and stays linear.
_STRING = re.compile(rb'"(?:[^"\\]+|\\[\s\S])*"?')
# Opening brackets become 1, closing ones -1 (as signed bytes); everything else is dropped.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_OTHERS = bytes(b for b in range(256) if b not in b"[{]}")


def depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets in strings ignored)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    steps = _STRING.sub(b"", raw).translate(_STEPS, _OTHERS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, what: str = "the body") -> Any:
    """``json.loads`` for untrusted input: JsonInputError (HTTP 400) when ``data`` is not JSON
    or nests deeper than ``max_depth``; never RecursionError."""
    deepest = depth(data)
    if deepest > max_depth:
        raise JsonInputError(f"{what} nests JSON {deepest} levels deep (limit {max_depth})")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JsonInputError(f"{what} is not JSON: {exc}") from None
