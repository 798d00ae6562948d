"""The worker role. Runs tasks on data fetched by CID (the task mesh comes later)."""

from __future__ import annotations

from .base import BaseRole


class WorkerRole(BaseRole):
    name = "worker"
