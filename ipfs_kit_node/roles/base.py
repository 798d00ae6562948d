"""A node on the task mesh that is not a master: it keeps a session to each configured master,
forwards submissions there, heartbeats, and follows outcomes on the results topic.

The worker adds running tasks on top; the leecher is exactly this.
"""

from __future__ import annotations

from functools import partial

import trio
from libp2p.peer.id import ID

from ..components import Components
from ..logs import get_logger
from ..protocols.tasks import Result, ResultBatch, Task, TaskBatch
from ..protocols.tasks.frames import Frame, Hello
from ..service import TaskStatus
from .mesh import Heartbeats, MasterLink, TaskBackend, Topics, decode_quietly, forever
from .submitter import RemoteTasks


class MeshMember:
    name = "member"

    def __init__(self, components: Components) -> None:
        c = self.c = components
        self.me = str(c.host.get_id())
        self.log = get_logger(f"ipfs_kit_node.roles.{self.name}", role=self.name)
        self.topics = Topics.of(c.config.node.cluster)
        self.masters = set(c.config.node.masters)
        self.link = MasterLink(c, self.hello, self.on_frame)
        self.heartbeats = Heartbeats(c, self.topics, self.capacity, self.running_count)
        self.remote = RemoteTasks(self.link, self.heartbeats.board,
                                  c.config.tasks.heartbeat_timeout)
        self.tasks: TaskBackend = self.remote  # the task routes forward to a master

    def capacity(self) -> int:
        return 0

    def running_count(self) -> int:
        return 0

    def hello(self) -> Hello:
        return Hello(self.name, self.capacity())

    async def on_frame(self, master: ID, frame: Frame) -> None:
        if not await self.remote.on_frame(master, frame):
            self.log.warning("unexpected task frame from a master ignored", peer=str(master),
                             op=type(frame).__name__)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for name, loop in [
                ("master link", self.link.run), ("status topic", self.heartbeats.watch_forever),
                ("heartbeat", partial(self.heartbeats.publish_forever, self.link.send_status)),
                ("tasks topic", self._watch_tasks), ("results topic", self._watch_results),
            ]:
                nursery.start_soon(forever, self.log, name, loop)
            self.start_more(nursery)
            self.log.info("role started", cluster=self.c.config.node.cluster,
                          masters=len(self.masters))
            task_status.started()

    def start_more(self, nursery: trio.Nursery) -> None:
        """Subclasses add their own long-lived tasks here (each under ``forever``)."""

    async def _watch_tasks(self) -> None:
        """Only a configured master may announce tasks; anything else is logged and dropped."""
        async for message in self.c.pubsub.subscribe(self.topics.tasks):
            sender = str(message.sender)
            if sender == self.me or (sender in self.masters
                                     and message.sender in self.link.sessions):
                continue  # a nudge to a session already open: no need to decode its batch
            body = decode_quietly(message)
            if body is None:
                continue
            if not isinstance(body, Task | TaskBatch):
                self.log.warning("non-task message on the tasks topic ignored", peer=sender)
            elif sender not in self.masters:
                count = len(body.tasks) if isinstance(body, TaskBatch) else 1
                self.log.warning("task from a peer that is not a configured master ignored",
                                 peer=sender, tasks=count)
            else:
                self.link.nudge(message.sender)

    async def _watch_results(self) -> None:
        async for message in self.c.pubsub.subscribe(self.topics.results):
            sender = str(message.sender)
            body = decode_quietly(message)
            if body is None:
                continue
            if sender not in self.masters:
                self.log.warning("result from a peer that is not a configured master ignored",
                                 peer=sender)
                continue
            results = body.results if isinstance(body, ResultBatch) else \
                (body,) if isinstance(body, Result) else ()
            for result in results:
                self.remote.outcome(result)
