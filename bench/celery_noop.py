"""The Celery side of bench/tasks.py: one no-op task, Redis as broker and result backend.

The broker URL comes from $BENCH_REDIS_URL (the benchmark starts its own redis-server).
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("celery_noop", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="noop")
def noop() -> None:
    return None
