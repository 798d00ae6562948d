"""`task submit|status|wait|list|stats|cancel`, `workers` and `cluster state` over HTTP.

Every role registers the same routes against its TaskBackend: a master answers from its
scheduler, a worker or leecher forwards to a master.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...errors import ApiError
from ...jsonsafe import loads as json_loads
from ...roles.mesh import TaskBackend
from ...roles.submission import info_json, parse_submission
from ..server import Request, Response, Router

MAX_WAIT = 24 * 3600.0


def register_task_routes(router: Router, backend: TaskBackend, me: str,
                         origins: Callable[[], tuple[str, ...]]) -> None:
    """``origins``: our addresses, sent with tasks that have inputs (we hold them)."""

    async def submit(request: Request) -> Response:
        doc = json_loads(request.body or b"{}")  # JsonInputError (400) if not JSON or too deep
        items = doc.get("tasks") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError("the body must be JSON: {\"tasks\": [{\"handler\": ...}, ...]}", 400)
        now = time.time()
        here = origins()
        tasks = [parse_submission(item, me, here, now) for item in items]
        accepted, refused = await backend.submit(tasks)
        return Response.json({"Accepted": accepted, "Refused": [list(r) for r in refused]})

    async def status(request: Request) -> Response:
        return Response.json(info_json(await backend.info(request.require())))

    async def wait(request: Request) -> Response:
        try:
            timeout = min(float(request.arg("timeout") or MAX_WAIT), MAX_WAIT)
        except ValueError:
            raise ApiError("timeout must be a number of seconds", 400) from None
        return Response.json(info_json(await backend.wait(request.require(), timeout)))

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

