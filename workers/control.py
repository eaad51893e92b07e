"""Which of Celery's remote control commands a worker obeys.

Celery's control channel is a Redis channel that every client allowed to publish on it
can use, Flower's read-mostly Redis user included (Flower asks workers for their state
there).  The commands that change what a worker consumes or runs would let such a client
steer the workers: ``add_consumer`` for a list it can write would have them run messages
it pushes there.  So a worker drops those commands from its control panel, unless the
operator names them in ``JOBSET_WORKER_CONTROL``; a command it dropped is answered as
unknown.  Revoke stays: a producer's cancel needs it (and a revoke only stops work).
"""

from __future__ import annotations

import logging

from celery.worker.control import Panel

logger = logging.getLogger(__name__)

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
