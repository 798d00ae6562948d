"""The exception hierarchy: one base, one class per condition a user can act on.

Messages say what happened and what to do about it; the CLI prints them as they are.
"""

from __future__ import annotations

import errno

TYPE_CHECKING = False  # importing typing costs a CLI command ~4 ms
if TYPE_CHECKING:
    from typing import TypeGuard


class IpfsKitError(Exception):
    """Base class of every error ipfs-kit-node raises on purpose."""

    http_status: int | None = None  # when the class alone decides the API status


class ConfigError(IpfsKitError):
    """The configuration is invalid: names the source, the key and the reason."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


class RepoError(IpfsKitError):
    """The repository folder cannot be created, read or used."""

    exit_code = 2  # the daemon cannot start: like a configuration error


class RepoLockedError(RepoError):
    """Another daemon holds the repository lock."""

    def __init__(self, repo: str, pid: int | None) -> None:
        self.repo = repo
        self.pid = pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"repo {repo} is in use by {holder}; stop that daemon or pass another --repo"
        )


class DaemonNotRunningError(IpfsKitError):
    """A client command found no daemon to talk to."""

    def __init__(self, repo: str, detail: str) -> None:
        self.repo = repo
        super().__init__(
            f"no ipfs-kit-node daemon is running on repo {repo} ({detail}); "
            "start one with `ipfs-kit-node --role worker` or pass the right --repo"
        )


class ApiError(IpfsKitError):
    """The daemon answered a control API call with an error."""

    def __init__(self, message: str, status: int = 500) -> None:
        self.status = status
        super().__init__(message)


class ClosedNodeError(IpfsKitError):
    """The node was used after it stopped (we closed it)."""


class PeerBrokenError(IpfsKitError):
    """A peer failed or broke the protocol (they did); the cause is in ``__cause__``."""


class StoreError(IpfsKitError):
    """The block store refused or failed an operation."""


class BlockNotFoundError(StoreError, KeyError):
    """The block is not in the store (or was corrupt and has been quarantined)."""

    def __init__(self, cid: str, hint: str = "") -> None:
        self.cid = cid
        super().__init__(f"block {cid} not found in the store" + (f" ({hint})" if hint else ""))

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class BlockUnavailableError(BlockNotFoundError):
    """No peer sent the block in time."""


class HashMismatchError(StoreError, ValueError):
    """Bytes do not hash to the CID they were given with."""


class PinnedBlockError(StoreError):
    """The operation would remove a pinned block."""


class StoreFullError(StoreError):
    """No room left: over the configured budget with only pinned blocks, or the disk is full."""


class InvalidCidError(StoreError, ValueError):
    """A string or bytes value is not a CID."""


class CodecError(IpfsKitError, ValueError):
    """A block could not be decoded with its codec (malformed dag-pb, UnixFS data...)."""


class PinningError(IpfsKitError):
    """Kubo or IPFS Cluster failed, refused, or answered something we cannot read."""

    #: Worth trying again later (unreachable, overloaded, broke mid-answer).
    transient = True


class RemoteUnavailableError(PinningError):
    """Cannot reach the service, or it timed out or answered 5xx: the queue retries."""

    http_status = 503


class RemoteRefusedError(PinningError, ValueError):
    """The service refused the request itself (bad CID, no permission): retrying won't help."""

    transient = False


class RemoteProtocolError(PinningError):
    """The answer was malformed (wrong JSON, truncated stream, an error in a trailer)."""

    http_status = 502


class JsonInputError(IpfsKitError, ValueError):
    """A request body is not JSON, or nests deeper than we parse (see ``jsonsafe``)."""

    http_status = 400


class DiskFullError(IpfsKitError):
    """A durable write found no room on the disk: refused, nothing lost, the node keeps
    running and the same request succeeds once space is freed."""

    http_status = 507


class ListenError(IpfsKitError):
    """A listen address cannot be used (taken by another program, or not ours to bind)."""

    exit_code = 2

    def __init__(self, address: str, reason: str, key: str = "[node] listen") -> None:
        self.address = address
        flag = " (or --listen)" if key == "[node] listen" else ""
        super().__init__(f"cannot listen on {address}: {reason}; free it or change {key}{flag}")


def is_disk_full(exc: BaseException) -> TypeGuard[OSError]:
    """Whether an error is the disk (or the user's quota) being full: the one test every
    layer uses before saying so in its own words."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class PathNotFoundError(IpfsKitError, LookupError):
    """A content path names nothing: no such entry in a folder, or a segment past a file."""

    http_status = 404


class CarImportError(IpfsKitError, ValueError):
    """A CAR archive could not be imported (malformed, truncated, or a block that does not
    match its CID): names the block; blocks stored before it stay, nothing is pinned."""

    http_status = 400


class ApiTimeoutError(ApiError):
    """The daemon did not answer (or stopped sending) within the client's timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=504)


class TaskFailedError(IpfsKitError):
    """A task ended failed or cancelled on the mesh: the task's own error, with its ID."""

    def __init__(self, task_id: str, state: str, error: str | None) -> None:
        self.task_id = task_id
        self.state = state
        self.error = error
        super().__init__(f"task {task_id} {state}" + (f": {error}" if error else ""))


class StoreBusyError(StoreError):
    """A block kept moving while it was read (compaction): temporary, try again. Never
    reported as missing, which would drop a good block from the index."""

    http_status = 503
