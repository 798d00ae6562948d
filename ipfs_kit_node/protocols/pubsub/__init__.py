"""gossipsub for the task mesh: signed messages on named topics."""

from .service import PROTOCOLS, PubsubMessage, PubsubService

__all__ = ["PROTOCOLS", "PubsubMessage", "PubsubService"]
