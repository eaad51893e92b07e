"""Which of Celery's remote control commands a worker obeys.

Celery's control channel is a Redis channel that every client allowed to publish on it
can use, Flower's read-mostly Redis user included (Flower asks workers for their state
there).  The commands that change what a worker consumes or runs would let such a client
steer the workers: ``add_consumer`` for a list it can write would have them run messages
it pushes there.  So a worker drops those commands from its control panel, unless the
operator names them in ``JOBSET_WORKER_CONTROL``; a command it dropped is answered as
unknown.  Revoke stays: a producer's cancel needs it (and a revoke only stops work).

Workers also keep kombu's scripts loaded (:class:`KombuScripts`), so that Flower's user
needs no SCRIPT LOAD.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps
from celery.worker.control import Panel
from kombu.transport import redis as kombu_redis

from jobset.executors.celery.connect import redis_client
from jobset.protocol import WORKER_HEARTBEAT_S

logger = logging.getLogger(__name__)

# The Lua scripts kombu's Redis transport runs by EVALSHA (kombu 5.7: queue bindings with
# an expiry, such as a control client's reply queue, and their sweep).
KOMBU_SCRIPTS = tuple(
    script
    for script in (
        getattr(kombu_redis, "REFRESH_BINDING", None),
        getattr(kombu_redis, "SWEEP_BINDINGS", None),
    )
    if script
)

STEERING_COMMANDS = (
    "add_consumer",
    "cancel_consumer",
    "autoscale",
    "pool_grow",
    "pool_shrink",
    "pool_restart",
    "time_limit",
    "rate_limit",
    "shutdown",
)


def enabled_commands(setting: str) -> frozenset[str]:
    """The steering commands named in ``setting`` (comma-separated); unknown names raise."""
    names = frozenset(n.strip() for n in setting.split(",") if n.strip())
    unknown = names - set(STEERING_COMMANDS)
    if unknown:
        raise ValueError(
            f"unknown control command(s) {sorted(unknown)}: choose among {STEERING_COMMANDS}"
        )
    return names


def drop_steering_commands(enabled: frozenset[str]) -> list[str]:
    """Remove from this process's control panel every steering command not ``enabled``."""
    dropped = [n for n in STEERING_COMMANDS if n not in enabled and n in Panel.data]
    for name in dropped:
        del Panel.data[name]
        Panel.meta.pop(name, None)
    return dropped


class KombuScripts(bootsteps.StartStopStep):
    """Keep kombu's binding scripts loaded in the broker, for clients that may not load any.

    kombu declares a control client's reply queue with a Lua script run by EVALSHA, and
    loads it on a miss with SCRIPT LOAD, which would let its user run any Lua (a busy loop
    blocks Redis).  Flower's Redis user has EVALSHA only, so the workers load the scripts:
    at start and every heartbeat (a restarted Redis has forgotten them).
    """

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        self.client: redis.Redis | None = None

    def start(self, worker: Any) -> None:
        settings = worker.app.conf.jobset_settings
        self.client = redis_client(
            settings.broker_url, settings, socket_timeout=settings.connect_timeout_s
        )
        self._load()
        self.tref = worker.timer.call_repeatedly(WORKER_HEARTBEAT_S, self._load)

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
        if self.client is not None:
            self.client.close()

    def _load(self) -> None:
        assert self.client is not None
        try:
            for script in KOMBU_SCRIPTS:
                self.client.script_load(script)
        except redis.RedisError:
            logger.warning("could not load kombu's scripts; will retry", exc_info=True)
