"""A local cluster: a private Redis-protocol server and real ``celery worker`` processes.

The demo and the integration tests need the whole distributed path (broker, result
backend, worker processes, signed payloads) on one machine without Docker and without
touching a Redis someone else runs.  Each module imports only those listed above it:

``processes``  starting a project process in its own session with a log, stopping its group
``server``     :class:`RedisServer`, a throw-away server on a free loopback port, never 6379
``cluster``    :class:`LocalCluster`, N workers run with exactly ``settings.to_env()``
``flower``     :class:`FlowerProcess`, Flower with basic auth, as compose runs it
``state``      the cluster folder's private files: its kept identity, its verified pid file
``report``     the sets a cluster holds: unfinished ones, ones another key wrote
``command``    ``scripts/cluster``: compose's topology on this machine (start, status, stop)

This package is the one part of ``jobset`` that starts processes; the library proper
never imports it.
"""

from __future__ import annotations

from .cluster import LocalCluster, WorkerHandle
from .flower import FlowerProcess
from .processes import PROJECT_ROOT, RESERVED_PORT, StartStop, free_port
from .server import RedisServer, TlsFiles, find_server_binary

__all__ = [
    "PROJECT_ROOT",
    "RESERVED_PORT",
    "FlowerProcess",
    "LocalCluster",
    "RedisServer",
    "StartStop",
    "TlsFiles",
    "WorkerHandle",
    "find_server_binary",
    "free_port",
]
