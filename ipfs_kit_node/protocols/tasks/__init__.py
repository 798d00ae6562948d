"""The task mesh's wire format (the roles in ``ipfs_kit_node.roles`` speak it)."""

from .codec import EnvelopeError, Result, ResultBatch, Status, Task, TaskBatch, decode, encode

__all__ = ["EnvelopeError", "Result", "ResultBatch", "Status", "Task", "TaskBatch", "decode",
           "encode"]
