"""The control API: server (in the daemon) and client (in the CLI)."""

from .server import ApiServer, Request, Response, Router

__all__ = ["ApiServer", "Request", "Response", "Router"]
