"""Limits and timeouts of the node's HTTP servers (control API, Kubo RPC, gateway), in one
place: what a client may send, and how long it may make the server wait."""

from __future__ import annotations

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
READ_SIZE = 64 * 1024
# A streamed request body (an upload of blocks) is read in pieces this big: each piece costs
# a wake-up, an h11 pass and a handler step, and 64 KiB ones cost a 64 MiB add ~0.15 s.
BODY_READ_SIZE = 1024 * 1024
# The kernel's buffer for answers on the unix socket (Linux's default ~208 KiB holds less
# than one 256 KiB block: `cat` waited on the reader for every block; net.core.wmem_max caps
# it).
UNIX_SEND_BUFFER = 4 * 1024 * 1024
# A kept-alive connection with no request for this long is closed (Go's net/http, which Kubo
# uses, closes idle ones too); a request whose bytes stop arriving for READ_TIMEOUT likewise
# (read at each use: tests lower it).
IDLE_TIMEOUT = 120.0
READ_TIMEOUT = 60.0
# A client that stops reading a response for this long is dropped (its handler cancelled).
WRITE_TIMEOUT = 60.0
# Bytes a client may pipeline while its previous request is being answered.
MAX_PIPELINED_BYTES = 64 * 1024
