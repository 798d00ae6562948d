"""Every HTTP route of the node, one module per area, over the services' narrow interfaces.

Services never import this package; the node calls :func:`register_routes` once it has built
them, so the HTTP layer sits on top and points down only.
"""

from __future__ import annotations

from ...components import Components
from ...roles import Role
from ...roles.mesh import own_origins
from ..router import Router
from ..rpc import register_rpc_routes
from .bitswap import register_bitswap_routes
from .blocks import register_block_routes
from .car import register_car_routes
from .core import register_core_routes
from .dht import register_dht_routes
from .localpins import register_local_pin_routes
from .pins import register_remote_pin_routes
from .pubsub import register_pubsub_routes
from .tasks import register_task_routes
from .unixfs import register_unixfs_routes

__all__ = ["register_routes"]


def register_routes(router: Router, c: Components, role: Role) -> None:
    register_core_routes(router, c)
    register_block_routes(router, c.blocks, c.repo.path)
    register_local_pin_routes(router, c.blocks, c.fetch)
    register_unixfs_routes(router, c.fetch)
    register_car_routes(router, c.fetch, c.blocks)
    register_bitswap_routes(router, c.fetch)
    register_dht_routes(router, c.dht)
    register_pubsub_routes(router, c.pubsub)
    register_remote_pin_routes(router, c.pins)
    register_task_routes(router, role.tasks, str(c.host.get_id()), lambda: own_origins(c))
    register_rpc_routes(router, c)  # last: it adds Kubo's names for routes made above
