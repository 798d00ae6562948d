"""`task submit|status|wait|list|stats|cancel`, `workers` and `cluster state` over HTTP.

Every role registers the same routes against its TaskBackend: a master answers from its
scheduler, a worker or leecher forwards to a master.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from ...errors import ApiError
from ...jsonsafe import loads as json_loads
from ...roles.mesh import TaskBackend, TaskError
from ...roles.submission import info_json, parse_submission
from ..router import Request, Response, Router

MAX_WAIT = 24 * 3600.0


def register_task_routes(router: Router, backend: TaskBackend, me: str,
                         origins: Callable[[], tuple[str, ...]]) -> None:
    """``origins``: our addresses, sent with tasks that have inputs (we hold them)."""

    async def submit(request: Request) -> Response:
        """``wait=true``: answer once every accepted task has finished (or ``timeout``
        passed), its outcomes in ``Tasks``: one request where submit + wait take two. A task
        that cannot be waited on (forgotten since, no master reachable) gets its error in its
        own entry: the others were accepted and their outcomes still count."""
        doc = json_loads(request.body or b"{}")  # JsonInputError (400) if not JSON or too deep
        items = doc.get("tasks") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError("the body must be JSON: {\"tasks\": [{\"handler\": ...}, ...]}", 400)
        waits = request.flag("wait")
        timeout = _timeout(request) if waits else 0.0
        now = time.time()
        here = origins()
        tasks = [parse_submission(item, me, here, now) for item in items]
        accepted, refused = await backend.submit(tasks, waiting=waits)
        answer: dict[str, object] = {"Accepted": accepted, "Refused": [list(r) for r in refused]}
        if waits:
            deadline = trio.current_time() + timeout
            answer["Tasks"] = [await _outcome(backend, task_id, deadline)
                               for task_id in accepted]
        return Response.json(answer)

    async def status(request: Request) -> Response:
        return Response.json(info_json(await backend.info(request.require())))

    async def wait(request: Request) -> Response:
        return Response.json(info_json(await backend.wait(request.require(), _timeout(request))))

    async def list_(request: Request) -> Response:
        infos = backend.list_tasks(request.arg("state"))
        return Response.json({"Tasks": [info_json(i) for i in infos]})

    async def stats(request: Request) -> Response:
        return Response.json({"States": backend.stats()})

    async def cancel(request: Request) -> Response:
        return Response.json(info_json(await backend.cancel(request.require())))

    async def workers(request: Request) -> Response:
        return Response.json({"Workers": backend.workers()})

    async def state(request: Request) -> Response:
        return Response.json(backend.cluster_state())

    router.add("POST", "/api/v0/task/submit", submit)
    router.add("POST", "/api/v0/task/status", status)
    router.add("POST", "/api/v0/task/wait", wait)
    router.add("POST", "/api/v0/task/list", list_)
    router.add("POST", "/api/v0/task/cancel", cancel)
    router.add("POST", "/api/v0/task/stats", stats)
    router.add("POST", "/api/v0/workers", workers)
    router.add("POST", "/api/v0/cluster/state", state)


async def _outcome(backend: TaskBackend, task_id: str, deadline: float) -> dict[str, object]:
    """One entry of ``task/submit?wait=true``'s ``Tasks``; ``State`` null and the reason in
    ``Error`` when the task cannot be waited on."""
    try:
        return info_json(await backend.wait(task_id, max(0.0, deadline - trio.current_time())))
    except TaskError as exc:
        return {"ID": task_id, "State": None, "Handler": None, "Worker": None, "Output": None,
                "Error": str(exc), "Attempts": None}


def _timeout(request: Request) -> float:
    """The ``timeout`` argument of a wait, in seconds (at most a day; none: a day)."""
    try:
        timeout = float(request.arg("timeout") or MAX_WAIT)
    except ValueError:
        raise ApiError("timeout must be a number of seconds", 400) from None
    if not timeout >= 0:  # NaN too
        raise ApiError("timeout must be a number of seconds >= 0", 400)
    return min(timeout, MAX_WAIT)
