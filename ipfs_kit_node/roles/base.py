"""What every role shares until the task mesh gives each its own work."""

from __future__ import annotations

import trio

from ..components import Components
from ..logs import get_logger
from ..service import TaskStatus


class BaseRole:
    name = "role"

    def __init__(self, components: Components) -> None:
        self.components = components
        self.log = get_logger(f"ipfs_kit_node.roles.{self.name}", role=self.name)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        self.log.info("role started", cluster=self.components.config.node.cluster)
        task_status.started()
        await trio.sleep_forever()
