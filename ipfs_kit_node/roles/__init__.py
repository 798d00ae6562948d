"""Role modules: what a master, a worker or a leecher does on top of the shared node.

A role is a Service built from the node's Components. Adding a role is one module here and one
line in ``ROLES``; the node never imports a role module directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError
from ..service import Service

if TYPE_CHECKING:
    from ..components import Components
    from .mesh import TaskBackend


class Role(Service, Protocol):
    """A Service with the task backend the API's task routes call (a master answers, the
    other roles forward to a master)."""

    tasks: TaskBackend

ROLES = {
    "master": "ipfs_kit_node.roles.master:MasterRole",
    "worker": "ipfs_kit_node.roles.worker:WorkerRole",
    "leecher": "ipfs_kit_node.roles.leecher:LeecherRole",
}


def load_role(name: str) -> Callable[[Components], Role]:
    try:
        module, _, attr = ROLES[name].partition(":")
    except KeyError:
        raise ConfigError("--role", "role", f"unknown role {name!r} (known: {', '.join(ROLES)})"
                          ) from None
    factory: Callable[[Components], Role] = getattr(importlib.import_module(module), attr)
    return factory
