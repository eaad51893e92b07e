"""Fixtures with real processes: a private server and a local cluster of Celery workers.

Session-scoped, because starting workers costs seconds and CI machines have two cores;
tests that stop or kill workers start their own cluster instead of using these.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jobset import CeleryExecutor
from jobset.local import LocalCluster, RedisServer
from jobset.settings import Settings


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(workers=2, concurrency=1, loglevel="INFO") as local:
        yield local


@pytest.fixture(scope="session")
def settings(cluster: LocalCluster) -> Settings:
    return cluster.settings


@pytest.fixture(scope="module")
def executor(cluster: LocalCluster) -> Iterator[CeleryExecutor]:
    """A producer on the session cluster (a module may override it with its own)."""
    with CeleryExecutor(cluster.settings) as ex:
        yield ex
