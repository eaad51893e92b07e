"""The clients a Celery executor holds, handed as one bundle to what works for it.

A set's run (:mod:`.run`), the publisher and lost-sub-job recovery (:mod:`.recovery`)
take this bundle, not the executor: they need its connections, never its policy, and the
executor module imports them, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

from ...settings import Settings
from .store import SignedStore


@dataclass(frozen=True)
class Clients:
    """The Celery app (publishing, control, result keys), Redis and the signed store."""

    app: Celery
    redis: Any  # the results' server: redis.Redis, or Sentinel's master client
    broker: Any  # the queues' server: the same client when both are one server
    store: SignedStore
    settings: Settings
