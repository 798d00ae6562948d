"""structlog set-up: JSON lines for journald and pipes, a readable console on a TTY.

py-libp2p logs through the standard library (and turns its own propagation off on import);
its records are routed through the same formatter, at their own level.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def wants_json(fmt: str, stream: TextIO) -> bool:
    if fmt != "auto":
        return fmt == "json"
    return bool(os.environ.get("JOURNAL_STREAM")) or not stream.isatty()


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    libp2p_level: str = "warning",
    stream: TextIO | None = None,
) -> None:
    """Install one handler on the root logger; structlog and stdlib records share it."""
    stream = stream or sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if wants_json(fmt, stream)
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])

    # py-libp2p sets propagate=False on its logger at import; route it to ours on purpose.
    # Some of its modules also pin their own level (auto_connector: INFO); reset those.
    libraries = ("libp2p", "multiaddr", "zeroconf")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(tuple(lib + "." for lib in libraries)):
            logging.getLogger(name).setLevel(logging.NOTSET)
    for name in libraries:
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(max(LEVELS[libp2p_level], LEVELS[level]))
    # httpx logs every request at INFO (the pinning drivers'): our own lines say what matters.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, LEVELS[level]))

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return log.bind(**context) if context else log
