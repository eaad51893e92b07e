"""Fixtures with real processes: a private server, a local cluster of Celery workers, and
the local executors the parity tests compare with (a thread pool and a real Dask cluster).

Session-scoped, because starting workers costs seconds and CI machines have two cores;
tests that stop or kill workers start their own cluster instead of using these.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator

import pytest
from distributed import Client
from distributed import LocalCluster as DaskCluster

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


@pytest.fixture(scope="session")
def thread_pool() -> Iterator[cf.ThreadPoolExecutor]:
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A ``dask.distributed`` cluster of one worker with 2 threads, in this process.

    Threads, because the 2 cores are shared with the Celery workers; its dashboard on a
    free port, so that two clusters never compete for 8787.
    """
    with (
        DaskCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
