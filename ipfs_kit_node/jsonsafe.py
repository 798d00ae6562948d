"""JSON from strangers, parsed with a nesting limit.

``json.loads`` recurses once per nesting level: a 200 KB body of ``[`` raises RecursionError
(which no route expects) and anything that walks the parsed document later may recurse as
deep. ``loads`` measures the nesting first and refuses a document deeper than ``max_depth``
before the parser sees it. The measure runs on the event loop, so it is done with C-level
bytes operations wherever it can (see ``depth``) and stops as soon as the limit is passed.

``json.loads`` itself holds the GIL for its whole run (about 0.1 s a MB here): moving it to a
thread would not free the event loop, so it is not moved.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from .errors import JsonInputError

MAX_DEPTH = 64

# Only brackets and quotes matter to the nesting; everything else is deleted first.
_DROP = bytes(b for b in range(256) if b not in b'[]{}"')
# A string that still holds brackets (or an unterminated one): its brackets do not count.
_STRING = re.compile(rb'"[^"]*"?')
# Opening brackets become 1, closing ones -1 (as signed bytes); everything else is dropped.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_OTHERS = bytes(b for b in range(256) if b not in b"[{]}")
_LEAF = b"\x01\xff"  # an innermost container: [] or {} once the rest is gone
_CHUNK = 1 << 16


def depth(data: bytes | str, limit: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``data`` (brackets in strings ignored).
    With ``limit``, it stops as soon as the nesting passes it and returns a number above it
    (not the full depth).

    Exact for JSON; for other text an upper bound (the parser rejects that text anyway).
    Escapes are dropped (``\\\\`` then ``\\"``), then all but brackets and quotes; adjacent
    quotes (a string with no bracket in it) go with one ``replace``, and a regex drops what
    strings are left. Each ``replace`` of ``[]``/``{}`` pairs then removes one level of leaves
    (all of a wide document's small containers at C speed); what is left is summed."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DROP)
    kept = kept.replace(b'""', b"")
    if b'"' in kept:
        kept = _STRING.sub(b"", kept)
    steps = kept.translate(_STEPS, _OTHERS)
    levels = 0  # leaf levels removed so far
    while steps:
        fewer = steps.replace(_LEAF, b"")
        if len(fewer) == len(steps):
            break
        levels, shrunk, steps = levels + 1, len(fewer) * 4 < len(steps) * 3, fewer
        if limit is not None and levels > limit:
            return levels
        if not shrunk and len(steps) > _CHUNK:
            break  # deep and narrow: passes no longer pay; the sum below does the rest
    deepest = level = 0
    view = memoryview(steps).cast("b")
    for start in range(0, len(view), _CHUNK):
        end = start + _CHUNK
        opens = steps.count(1, start, end)
        if level + opens > deepest:  # else this chunk cannot go deeper than we have been
            deepest = max(deepest, max(accumulate(view[start:end], initial=level)))
            if limit is not None and levels + deepest > limit:
                break
        level += 2 * opens - len(view[start:end])
    return levels + deepest


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH, what: str = "the body") -> Any:
    """``json.loads`` for untrusted input: JsonInputError (HTTP 400) when ``data`` is not JSON
    or nests deeper than ``max_depth``; never RecursionError."""
    if depth(data, max_depth) > max_depth:
        raise JsonInputError(f"{what} nests JSON more than {max_depth} levels deep")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise JsonInputError(f"{what} is not JSON: {exc}") from None
