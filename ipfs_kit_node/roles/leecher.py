"""The leecher role. Submits tasks and consumes results; runs none (the task mesh comes later)."""

from __future__ import annotations

from .base import BaseRole


class LeecherRole(BaseRole):
    name = "leecher"
