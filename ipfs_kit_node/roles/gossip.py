"""The master's side of the task topics: accepted tasks and final outcomes announced in
batches, and submissions from listed submitters taken from the tasks topic.

Gossip is the shared, best-effort view; the direct streams carry what must arrive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
import trio

from ..components import Components
from ..errors import DiskFullError
from ..protocols.tasks import Result, ResultBatch, Task, TaskBatch, encode
from ..protocols.tasks.frames import batches
from .mesh import TaskError, Topics, decode_quietly

PUBLISH_BATCH = 200
# Seconds between gossip messages of new tasks and outcomes. Nothing waits on them (the
# streams carry tasks, results and each submitter's outcomes; a remote waiter asks again
# every 2 s), and each message is signed here and verified by every peer.
PUBLISH_EVERY = 1.0
PUBLISH_BUDGET = 192 * 1024  # bytes of tasks or results per message (pubsub takes 256 KiB)

Submit = Callable[[list[Task], str], Awaitable[object]]


class TaskGossip:
    """``announce`` and ``publish`` queue without waiting; ``publish_forever`` sends."""

    def __init__(self, c: Components, topics: Topics, me: str, submitters: set[str],
                 submit: Submit, log: structlog.stdlib.BoundLogger) -> None:
        self.c = c
        self.topics = topics
        self.me = me
        self.submitters = submitters
        self.submit = submit
        self.log = log
        self.pending_tasks: list[Task] = []
        self.pending_results: list[Result] = []
        self._wake = trio.Event()
        self._pacing = False  # the publisher waits out PUBLISH_EVERY after a message

    def announce(self, tasks: list[Task]) -> None:
        self.pending_tasks += tasks
        self._nudge()

    def publish(self, results: list[Result]) -> None:
        self.pending_results += results
        self._nudge()

    def _nudge(self) -> None:
        """Wake the publisher only when it has something to do: the first item after a quiet
        spell, or a full message's worth (not once per task while it waits out its period)."""
        pending = len(self.pending_tasks) + len(self.pending_results)
        if not self._pacing or pending >= PUBLISH_BATCH:
            self._wake.set()

    async def publish_forever(self) -> None:
        """Announcements and outcomes, batched: gossip is the shared view, not the carrier."""
        while True:
            if not (self.pending_tasks or self.pending_results):
                await self._wake.wait()
            self._wake = trio.Event()
            announce, self.pending_tasks = self.pending_tasks, []
            publish, self.pending_results = self.pending_results, []
            messages = [(self.topics.tasks, encode(TaskBatch(tasks))) for tasks in batches(
                announce, budget=PUBLISH_BUDGET, max_items=PUBLISH_BATCH)]
            messages += [(self.topics.results, encode(ResultBatch(results))) for results in
                         batches(publish, budget=PUBLISH_BUDGET, max_items=PUBLISH_BATCH)]
            for topic, data in messages:
                try:
                    await self.c.pubsub.publish(topic, data)
                except Exception as exc:  # gossip is best effort; the streams carry the rest
                    self.log.info("task-mesh publish failed", topic=topic, error=str(exc))
            # Coalesce into fewer, larger messages: each one is signed here and verified by
            # every peer (at 100 tasks/s, 0.05 s cost a tenth of the master's CPU). A full
            # message's worth goes out at once (a burst is not held back to one message/s).
            self._pacing = True
            try:
                with trio.move_on_after(PUBLISH_EVERY):
                    while len(self.pending_tasks) + len(self.pending_results) < PUBLISH_BATCH:
                        await self._wake.wait()
                        self._wake = trio.Event()
            finally:
                self._pacing = False

    async def watch_submissions(self) -> None:
        """Listed submitters may also submit on the topic; anyone else is refused, loudly."""
        async for message in self.c.pubsub.subscribe(self.topics.tasks):
            sender = str(message.sender)
            if sender == self.me:
                continue
            body = decode_quietly(message)
            if body is None:
                continue
            tasks = list(body.tasks) if isinstance(body, TaskBatch) else \
                [body] if isinstance(body, Task) else None
            if tasks is None:
                self.log.warning("non-task message on the tasks topic ignored", peer=sender)
            elif sender not in self.submitters:
                self.log.warning("task from a peer not in tasks.submitters ignored",
                                 peer=sender, tasks=len(tasks))
            else:
                try:
                    await self.submit(tasks, sender)
                except (TaskError, DiskFullError) as exc:  # it can ask again on the stream
                    self.log.warning("tasks from the topic refused", peer=sender,
                                     tasks=len(tasks), error=str(exc))
