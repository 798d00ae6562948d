"""fsspec filesystem ``ipfs-kit://CID/path``: pandas, pyarrow, dask and xarray read through the
node, and write into it (registered by the ``fsspec.specs`` entry point).

Reads are ranges: a file opened here fetches only the byte ranges asked for, through the RPC's
``cat`` with offset/length, which reads only the blocks holding them; so pyarrow reads a
Parquet footer and one column without the rest of the file. Why ``cat`` and not the gateway's
Range requests: one address and one set of credentials (the RPC the client already talks to;
the gateway may be off), and the same typed errors. There is no cache in the client: the node's
tiered store is the cache (memory tier, disk tier, then peers).

Writes add: ``pipe``/``put``/``open(..., "wb")`` store the bytes as a UnixFS file (pinned) and
the CID is in ``info(path)["cid"]`` and ``fs.last_cid``; content addressing means the name
written to only remembers which CID those bytes got.

The protocol is ``ipfs-kit``, not ``ipfs_kit``: pandas hands only URLs whose scheme matches
``[A-Za-z][A-Za-z0-9+.-]*`` to fsspec. ``ipfs://`` belongs to ipfsspec.
"""

from __future__ import annotations

import threading
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from .client import Client
from .errors import ApiError

PROTOCOL = "ipfs-kit"


class IpfsKitFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Files and folders on an ipfs-kit-node daemon, addressed ``CID[/a/b]``.

    Args (as ``fsspec.filesystem("ipfs-kit", ...)`` or ``storage_options``): ``api``,
    ``repo``, ``timeout``, ``auth`` as for ``Client``.
    """

    protocol = (PROTOCOL,)
    root_marker = ""

    def __init__(self, api: str | None = None, repo: str | None = None, timeout: float = 60.0,
                 auth: str | tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = Client(api, repo=repo, timeout=timeout, auth=auth)
        self.written: dict[str, str] = {}  # name written to -> the CID its bytes got
        self.last_cid: str | None = None
        self._lock = threading.Lock()
        self.bytes_fetched = 0  # file bytes asked of the daemon (range reads included)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        if text.startswith(PROTOCOL + "://"):
            text = text[len(PROTOCOL) + 3:]
        text = text.lstrip("/")
        if text.startswith("ipfs/"):
            text = text[5:]
        return text.rstrip("/")

    def _count(self, n: int) -> None:
        with self._lock:
            self.bytes_fetched += n

    def _cid_path(self, path: str) -> str:
        path = self._strip_protocol(path)
        return self.written.get(path, path)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        if not name:
            raise FileNotFoundError("ipfs-kit:// needs a CID (ipfs-kit://CID/path)")
        try:
            stat = self.client.stat(self._cid_path(name))
        except ApiError as exc:
            raise FileNotFoundError(f"{name}: {exc}") from None
        kind = "directory" if stat.type == "directory" else "file"
        return {"name": name, "size": stat.size if kind == "file" else 0, "type": kind,
                "cid": stat.cid}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        info = self.info(path)
        if info["type"] != "directory":
            return [info] if detail else [info["name"]]
        base = info["name"]
        out = [{"name": f"{base}/{e.name}", "type": "directory" if e.type == "directory"
                else "file", "size": e.size if e.type != "directory" else 0, "cid": e.cid}
               for e in self.client.iter_ls(self._cid_path(base))]
        return out if detail else [e["name"] for e in out]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None,
                 **kwargs: Any) -> bytes:
        cid_path = self._cid_path(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.info(path)["size"]
            start = size + start if start is not None and start < 0 else start
            end = size + end if end is not None and end < 0 else end
        offset = start or 0
        length = None if end is None else max(0, end - offset)
        try:
            data = self.client.cat(cid_path, offset, length)
        except ApiError as exc:
            raise FileNotFoundError(f"{path}: {exc}") from None
        self._count(len(data))
        return data

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> str:
        cid = self.client.add_bytes(bytes(value))
        return self._remember(path, cid)

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> str:
        cid = self.client.add(lpath, recursive=True)
        return self._remember(rpath, cid)

    def _remember(self, path: str, cid: str) -> str:
        name = self._strip_protocol(path)
        if name:
            self.written[name] = cid
        self.last_cid = cid
        return cid

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        pass  # folders are made by the files added into them

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        pass

    def rm_file(self, path: str) -> None:
        raise PermissionError("content on IPFS is immutable: unpin it instead "
                              "(Client().pin.rm)")

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> IpfsKitFile:
        return IpfsKitFile(self, path, mode, block_size or 1 << 20,
                           autocommit=autocommit, cache_options=cache_options,
                           cache_type=kwargs.get("cache_type", "readahead"))

    def ukey(self, path: str) -> str:
        return str(self.info(path)["cid"])  # content-addressed: the CID is the version


class IpfsKitFile(AbstractBufferedFile):  # type: ignore[misc]
    """A file read by ranges (``cat`` offset/length), or written as one add on close."""

    fs: IpfsKitFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start, end)

    def _initiate_upload(self) -> None:
        self._parts: list[bytes] = []

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        self._parts.append(self.buffer.read())
        if final:
            self.fs.pipe_file(self.path, b"".join(self._parts))
            self._parts = []
        return True
