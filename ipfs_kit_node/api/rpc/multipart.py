"""multipart/form-data as Kubo's RPC receives it (``add``, ``block/put``, ``dag/put``,
``pubsub/pub``): a sans-IO parser, bytes in, events out, memory bounded by the part headers.

Clients (kubo-rpc-client, aioipfs, go-ipfs-cmds) send one part per file or folder, the path in
``filename`` (URL-encoded) and the kind in ``Content-Type``: ``application/x-directory`` for a
folder, ``application/symlink`` for a symlink (its target as the body), anything else a file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote

from ...errors import ApiError

MAX_PART_HEADER_BYTES = 16 * 1024
MAX_BOUNDARY = 200  # RFC 2046: at most 70; some clients go a little over


@dataclass(frozen=True)
class PartHeaders:
    headers: dict[str, str]  # names lower-cased

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream").split(";")[0] \
            .strip().lower()

    def _disposition(self) -> Message:
        message = Message()
        message["content-disposition"] = self.headers.get("content-disposition", "")
        return message

    @property
    def filename(self) -> str:
        """The part's path, URL-decoded (clients percent-encode it)."""
        value = self._disposition().get_param("filename", header="content-disposition")
        text = value if isinstance(value, str) else ""
        return unquote(text)

    @property
    def field(self) -> str:
        value = self._disposition().get_param("name", header="content-disposition")
        return value if isinstance(value, str) else ""

    @property
    def kind(self) -> str:
        """file, directory or symlink."""
        if self.content_type == "application/x-directory":
            return "directory"
        if self.content_type == "application/symlink":
            return "symlink"
        return "file"


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartHeaders | PartData | PartEnd


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type; a 400 if there is none."""
    message = Message()
    message["content-type"] = content_type or ""
    if message.get_content_type() not in ("multipart/form-data", "multipart/mixed"):
        raise ApiError(f"expected a multipart/form-data body, got {content_type!r}", 400)
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= MAX_BOUNDARY:
        raise ApiError("multipart body without a usable boundary", 400)
    return boundary.encode("latin-1")


class MultipartParser:
    """Feed body bytes, get events: PartHeaders, then PartData pieces, then PartEnd, per part.
    ``close()`` after the last byte raises ApiError (400) if the body was cut short."""

    def __init__(self, boundary: bytes) -> None:
        self._dash = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._buf = bytearray()
        self._state = "preamble"  # preamble, after-boundary, headers, body, done

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while True:
            if self._state == "preamble":
                # The first boundary may open the body, or follow a preamble and a CRLF.
                if self._buf.startswith(self._dash):
                    del self._buf[:len(self._dash)]
                    self._state = "after-boundary"
                    continue
                at = self._buf.find(self._delimiter)
                if at < 0:
                    keep = len(self._delimiter) - 1
                    if len(self._buf) > keep:
                        del self._buf[:len(self._buf) - keep]
                    return events
                del self._buf[:at + len(self._delimiter)]
                self._state = "after-boundary"
            elif self._state == "after-boundary":
                if len(self._buf) < 2:
                    return events
                if self._buf[:2] == b"--":
                    self._state = "done"
                    self._buf.clear()
                    return events
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > 1024:
                        raise ApiError("malformed multipart body: junk after a boundary", 400)
                    return events
                del self._buf[:end + 2]  # transport padding, then CRLF
                self._state = "headers"
            elif self._state == "headers":
                # no headers at all: -2 (checked first, as its body may hold a blank line)
                end = -2 if self._buf.startswith(b"\r\n") else self._buf.find(b"\r\n\r\n")
                if end == -1:
                    if len(self._buf) > MAX_PART_HEADER_BYTES:
                        raise ApiError(f"multipart part headers over {MAX_PART_HEADER_BYTES} "
                                       "bytes", 400)
                    return events
                block = bytes(self._buf[:max(end, 0)])
                del self._buf[:end + 4]
                events.append(PartHeaders(_parse_headers(block)))
                self._state = "body"
            elif self._state == "body":
                at = self._buf.find(self._delimiter)
                if at < 0:
                    safe = len(self._buf) - (len(self._delimiter) - 1)
                    if safe > 0:
                        events.append(PartData(bytes(self._buf[:safe])))
                        del self._buf[:safe]
                    return events
                if at:
                    events.append(PartData(bytes(self._buf[:at])))
                del self._buf[:at + len(self._delimiter)]
                events.append(PartEnd())
                self._state = "after-boundary"
            else:  # done: an epilogue is ignored
                self._buf.clear()
                return events

    def close(self) -> None:
        if self._state != "done":
            raise ApiError("the multipart body ended before its closing boundary", 400)


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise ApiError(f"malformed multipart header line {line[:80]!r}", 400)
        headers.setdefault(name.strip().lower().decode("latin-1"),
                           value.strip().decode("utf-8", "replace"))
    return headers


async def events(chunks: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[Event]:
    """The events of a streamed body, as it arrives."""
    parser = MultipartParser(boundary)
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
    parser.close()


def body_data(body: bytes, content_type: str | None) -> bytes:
    """Kubo's clients send data as a multipart file; our CLI sends it as the body itself."""
    if (content_type or "").lower().startswith("multipart/"):
        parser = MultipartParser(boundary_of(content_type))
        out = bytearray()
        seen = 0
        for event in parser.feed(body):
            if isinstance(event, PartHeaders):
                seen += 1
            elif isinstance(event, PartData) and seen == 1:
                out += event.data
        if not seen:
            raise ApiError("the multipart body holds no part", 400)
        return bytes(out)
    return body
