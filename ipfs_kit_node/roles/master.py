"""The master role: schedules tasks and serves the DHT (the task mesh comes later)."""

from __future__ import annotations

from .base import BaseRole


class MasterRole(BaseRole):
    name = "master"
