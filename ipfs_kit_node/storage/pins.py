"""Pins live in the block index database (blockdb.py), beside the reference counts of the
blocks they cover, so that a pin and its counts change in one transaction. Older repos kept
them in ``datastore/pins.json``; the store imports that file once (recovery.py ``_migrate``).
"""

from __future__ import annotations

from .blockdb import Pin, PinMode

__all__ = ["Pin", "PinMode"]
