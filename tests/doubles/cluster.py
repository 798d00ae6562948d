"""A TEST DOUBLE of the IPFS Cluster REST API (v1.1.6 wire format), not IPFS Cluster.

No IPFS Cluster can be installed on these machines, so this stands in for one in the tests.
It follows the wire format of ipfs-cluster's api/rest/restapi.go, api/common/api.go and
api/types.go (see ../shared/reference/ipfs-cluster-rest-api.md): objects as JSON lines,
streaming endpoints as one object per line with a ``Trailer: X-Stream-Error`` that is always
sent (empty when nothing failed), 204 and no body for an empty stream, errors as
``{"code", "message"}``, GlobalPinInfo for /pins even with local=true, TrackerStatus strings.

It keeps pins in memory and answers on a real loopback socket (a thread running
http.server). ``fault`` makes the next requests fail the ways a real one can: "500",
"truncate" (the connection drops mid-body), "bad-json", "stream-error" (a trailer error).
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

ZERO_TIME = "0001-01-01T00:00:00Z"
STATUSES = {"undefined", "cluster_error", "pin_error", "unpin_error", "error", "pinned",
            "pinning", "unpinning", "unpinned", "remote", "pin_queued", "unpin_queued",
            "queued", "sharded", "unexpectedly_unpinned"}
GROUPS = {"error": {"cluster_error", "pin_error", "unpin_error"},
          "queued": {"pin_queued", "unpin_queued"}}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ClusterDouble:
    def __init__(self, peers: int = 3, ipfs_addresses: list[list[str]] | None = None,
                 basic: str | None = None, token: str | None = None, port: int = 0) -> None:
        self.peer_ids = [f"12D3KooWClusterPeer{i}xxxxxxxxxxxxxxxxxxxxxxxxxxxxx" for i in
                         range(peers)]
        self.ipfs_addresses = ipfs_addresses or [[] for _ in range(peers)]
        self.basic = basic  # "user:password"
        self.token = token
        self.pins: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.fault: str | None = None
        self.fault_count = 0
        self.pin_calls = 0
        self._lock = threading.Lock()
        self._port = port
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ClusterDouble:
        double = self

        class Handler(_Handler):
            pass

        Handler.double = double
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self._port}"

    def fail(self, mode: str, count: int = 1) -> None:
        self.fault, self.fault_count = mode, count

    def take_fault(self) -> str | None:
        with self._lock:
            if self.fault_count <= 0:
                return None
            self.fault_count -= 1
            return self.fault

    # -- the model ---------------------------------------------------------------------------

    def pin(self, cid: str, q: dict[str, list[str]]) -> dict[str, Any]:
        def one(name: str, default: Any = None) -> Any:
            return q[name][0] if name in q else default

        rmin = int(one("replication-min", one("replication", -1)))
        rmax = int(one("replication-max", one("replication", -1)))
        allocations = self.peer_ids if rmax == -1 else self.peer_ids[:rmax]
        pin = {
            "replication_factor_min": rmin, "replication_factor_max": rmax,
            "name": one("name", ""), "mode": one("mode", "recursive"), "shard_size": 0,
            "user_allocations": one("user-allocations", "").split(",")
            if one("user-allocations") else None,
            "expire_at": ZERO_TIME,
            "metadata": {k[5:]: v[0] for k, v in q.items() if k.startswith("meta-")} or None,
            "pin_update": None,
            "origins": one("origins", "").split(",") if one("origins") else [],
            "cid": cid, "type": "pin", "allocations": allocations,
            "max_depth": 0 if one("mode") == "direct" else -1, "reference": None,
            "timestamp": now(),
        }
        with self._lock:
            self.pins[cid] = pin
            self.pin_calls += 1
        return pin

    def global_info(self, cid: str) -> dict[str, Any]:
        pin = self.pins.get(cid)
        peer_map = {}
        for i, peer in enumerate(self.peer_ids):
            allocated = pin is not None and peer in pin["allocations"]
            peer_map[peer] = {
                "peername": f"peer{i}", "ipfs_peer_id": f"12D3KooWIpfs{i}",
                "ipfs_peer_addresses": self.ipfs_addresses[i],
                "status": "pinned" if allocated else ("remote" if pin else "unpinned"),
                "timestamp": now(), "error": "", "attempt_count": 0, "priority_pin": False,
            }
        return {"cid": cid, "name": pin["name"] if pin else "",
                "allocations": pin["allocations"] if pin else [],
                "origins": pin["origins"] if pin else [],
                "created": pin["timestamp"] if pin else ZERO_TIME,
                "metadata": pin["metadata"] if pin else None, "peer_map": peer_map}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    double: ClusterDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode() + b"\n"
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"code": status, "message": message})

    def _stream(self, items: list[Any], fault: str | None) -> None:
        if not items and fault is None:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Stream-Error")
        self.end_headers()
        for n, item in enumerate(items):
            line = json.dumps(item).encode() + b"\n"
            if fault == "bad-json" and n == 0:
                line = b'{"cid": "bafy' + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            if fault == "truncate":
                self.wfile.flush()
                self.close_connection = True
                return  # no terminating chunk: the connection just ends
        error = "ipfs daemon unreachable" if fault == "stream-error" else ""
        self.wfile.write(b"0\r\nX-Stream-Error: " + error.encode() + b"\r\n\r\n")

    def _authorised(self) -> bool:
        d = self.double
        if d.basic is None and d.token is None:
            return True
        header = self.headers.get("Authorization", "")
        if d.basic is not None and header == "Basic " + base64.b64encode(
                d.basic.encode()).decode():
            return True
        return d.token is not None and header == f"Bearer {d.token}"

    def _route(self, method: str) -> None:
        d = self.double
        url = urlparse(self.path)
        q = parse_qs(url.query)
        parts = [p for p in url.path.split("/") if p]
        d.requests.append((method, url.path, q))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if not self._authorised():
            return self._error(401, "Unauthorized")
        fault = d.take_fault()
        if fault == "500":
            return self._error(500, "ipfs daemon unreachable: connection refused")
        if fault == "bad-json" and parts != ["pins"]:
            body = b'{"cid": '
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        if method == "GET" and parts == ["id"]:
            return self._send(200, {
                "id": d.peer_ids[0], "addresses": [], "cluster_peers": d.peer_ids,
                "cluster_peers_addresses": [], "version": "1.1.6", "commit": "",
                "rpc_protocol_version": "/ipfscluster/1.1/rpc", "error": "",
                "ipfs": {"id": "12D3KooWIpfs0", "addresses": d.ipfs_addresses[0],
                         "error": ""}, "peername": "peer0"})
        if method == "GET" and parts == ["version"]:
            return self._send(200, {"version": "1.1.6"})
        if method == "POST" and parts == ["token"]:
            return self._send(200, {"token": d.token or "jwt"})
        if method == "GET" and parts == ["peers"]:
            return self._stream([{"id": p, "peername": f"peer{i}", "version": "1.1.6",
                                  "ipfs": {"addresses": d.ipfs_addresses[i]}}
                                 for i, p in enumerate(d.peer_ids)], fault)
        if parts[:1] == ["pins"] and len(parts) == 1 and method == "GET":
            wanted: set[str] = set()
            for f in (q.get("filter", [""])[0].split(",") if "filter" in q else []):
                if f not in STATUSES:
                    return self._error(400, "invalid filter value")
                wanted |= GROUPS.get(f, {f})
            infos = [d.global_info(c) for c in list(d.pins)]
            if "cids" in q:
                infos = [d.global_info(c) for c in q["cids"][0].split(",")]
            if wanted:
                infos = [i for i in infos if
                         {p["status"] for p in i["peer_map"].values()} & wanted]
            return self._stream(infos, fault)
        if parts[:1] == ["pins"] and len(parts) == 2:
            cid = parts[1]
            if method == "POST":
                return self._send(200, d.pin(cid, q))
            if method == "DELETE":
                pin = d.pins.pop(cid, None)
                if pin is None:
                    return self._error(404, "not found")
                return self._send(200, pin)
            if method == "GET":
                return self._send(200, d.global_info(cid))
        if parts[:1] == ["pins"] and len(parts) == 3 and parts[2] == "recover":
            return self._send(200, d.global_info(parts[1]))
        if method == "GET" and parts == ["allocations"]:
            return self._stream(list(d.pins.values()), fault)
        if method == "GET" and parts[:1] == ["allocations"] and len(parts) == 2:
            pin = d.pins.get(parts[1])
            return self._send(200, pin) if pin else self._error(404, "not found")
        if method == "GET" and parts == ["health"]:
            return self._send(204)
        return self._error(404, "404 page not found")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

