"""The local cluster: real ``celery worker`` processes on a Redis-protocol server.

:class:`LocalCluster` starts N workers exactly as an operator would
(``celery -A workers.app worker``), each with exactly ``settings.to_env()`` for its
environment, and returns once every worker has advertised its heartbeat in Redis.
``stop()`` runs from ``__exit__`` and, as a safety net, from ``atexit``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..deadline import Deadline, growing_sleep, poll
from ..errors import ConfigurationError, JobSetStateError
from ..executors.celery.connect import redis_client
from ..executors.machine import available_cores
from ..protocol import WORKERS_INDEX_KEY, worker_key, worker_names
from ..settings import MetricsSettings, Settings, variables
from .processes import StartStop, free_port, kill_group, log_tail, spawn_logged, wait_exit
from .server import RedisServer

_SETTINGS_VARIABLES = frozenset(var.env for _, var in variables(Settings))
# What a worker must not inherit: another configuration's variables, or a metrics directory
# that workers sharing it would count each other's sub-jobs in.
_NOT_INHERITED = _SETTINGS_VARIABLES | {var.env for _, var in variables(MetricsSettings)}


@dataclass
class WorkerHandle:
    """One ``celery worker`` process of a :class:`LocalCluster`."""

    index: int
    nodename: str  # as passed to --hostname; Celery expands %h
    process: subprocess.Popen[bytes]
    log_path: Path
    queues: tuple[str, ...] | None
    settings: Settings  # exactly what it runs with
    hostname: str | None = None  # the expanded name, read back from the heartbeat
    metrics_port: int | None = None  # where it serves Prometheus metrics, if it does
    swept: bool = False  # its group was killed after it exited: never signal that id again

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


class LocalCluster(StartStop):
    """``workers`` real Celery worker processes on this machine, and their server.

    Every worker runs with exactly ``settings.to_env()``, and :attr:`settings` is what they
    run with.  Without ``settings``, the cluster starts a private server (with a password:
    loopback is shared by every local user) and makes a signing key.  With ``settings``, the
    workers connect where they say; ``private_server=True`` starts the private server
    anyway and points the settings at it.  ``aer_threads=None`` becomes the cluster's share
    of the cores (the workers' own default divides the cores by one worker's concurrency,
    which oversubscribes a machine that runs several workers).

    ``extra_env`` adds variables that are not settings (a test's fault injection, say); a
    settings variable there is refused, since the workers would then disagree with
    :attr:`settings`.  With ``metrics=True`` each worker serves Prometheus metrics on its
    own free loopback port (``WorkerHandle.metrics_port``) from its own multiprocess
    directory under the log directory.

    It is the in-notebook cluster: ``cluster = LocalCluster(workers=2).start()``, then
    ``CeleryExecutor(cluster.settings)``; it stops with ``cluster.stop()``, the ``with``
    block or the kernel, and keeps nothing (``scripts/cluster`` keeps its sets).
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        settings: Settings | None = None,
        private_server: bool = False,
        concurrency: int = 1,
        queues: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        loglevel: str = "WARNING",
        startup_timeout_s: float = 60.0,
        metrics: bool = False,
    ) -> None:
        if workers < 0 or concurrency < 1:
            raise ConfigurationError("workers must be >= 0 and concurrency >= 1")
        self.workers: list[WorkerHandle] = []
        self._count = workers
        self._concurrency = concurrency
        self._settings_arg = settings
        self._private_server = private_server or settings is None
        self._queues = tuple(queues) if queues else None
        self._extra_env = _checked_extra_env(extra_env)
        self._log_dir_arg = Path(log_dir) if log_dir is not None else None
        self._loglevel = loglevel
        self.startup_timeout_s = startup_timeout_s
        self._metrics = metrics
        self._id = uuid.uuid4().hex[:8]  # keeps node names apart on a shared Redis
        self._server: RedisServer | None = None
        self._settings: Settings | None = None
        self._log_dir: Path | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            raise JobSetStateError("the local cluster is not started")
        return self._settings

    @property
    def redis_url(self) -> str:
        return self.settings.broker_url

    @property
    def server(self) -> RedisServer | None:
        return self._server

    @property
    def log_dir(self) -> Path:
        if self._log_dir is None:
            raise JobSetStateError("the local cluster is not started")
        return self._log_dir

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.running()]

    @property
    def worker_hostnames(self) -> list[str]:
        return [w.hostname or w.nodename for w in self.workers if w.running()]

    def start(self) -> LocalCluster:
        if self._settings is not None:
            return self
        atexit.register(self.stop)
        try:
            if self._log_dir_arg is not None:
                self._log_dir_arg.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._log_dir_arg.chmod(0o700)
                self._log_dir = self._log_dir_arg
            else:
                self._log_dir = Path(tempfile.mkdtemp(prefix="jobset-cluster-"))
            self._settings = self._cluster_settings()
            started = [self._spawn() for _ in range(self._count)]
            self._wait_ready(started, Deadline(self.startup_timeout_s))
        except BaseException:
            self._stop(keep_logs=True)  # the error names the log files
            raise
        return self

    def _cluster_settings(self) -> Settings:
        settings = self._settings_arg
        if self._private_server:
            self._server = RedisServer(requirepass=secrets.token_hex(16)).start()
            url = self._server.url
            if settings is None:
                settings = Settings(broker_url=url, secret_key=secrets.token_hex(32).encode())
            settings = dataclasses.replace(settings, broker_url=url, result_backend=None)
        assert settings is not None  # without settings, the cluster has its own server
        if settings.aer_threads is None:
            # Started empty, the cluster cannot know how many workers will come
            # (add_worker): one thread per task never oversubscribes.
            slots = self._count * self._concurrency or available_cores()
            settings = dataclasses.replace(settings, aer_threads=max(1, available_cores() // slots))
        return settings

    def add_worker(
        self,
        *,
        settings: Settings | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerHandle:
        """Start one more worker (say, on other queues); by default wait for its heartbeat.

        It runs with exactly ``settings`` (say, another signing key), by default the
        cluster's; its :attr:`WorkerHandle.settings` says which.
        """
        handle = self._spawn(
            settings=settings,
            concurrency=concurrency,
            queues=queues,
            extra_env=_checked_extra_env(extra_env),
        )
        if wait:
            try:
                self._wait_ready([handle], Deadline(self.startup_timeout_s))
            except BaseException:
                self.stop_worker(handle, signal.SIGKILL)
                raise
        return handle

    def stop_worker(
        self, worker: WorkerHandle | int, sig: int = signal.SIGTERM, timeout_s: float = 30.0
    ) -> None:
        """Send ``sig`` (SIGTERM: warm shutdown), then SIGKILL the group after ``timeout_s``."""
        handle = self.workers[worker] if isinstance(worker, int) else worker
        if handle.running():
            with contextlib.suppress(ProcessLookupError):
                handle.process.send_signal(sig)
        self._reap([handle], Deadline(timeout_s))

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` and its pool children at once, like a crashed machine.

        Its heartbeat key stays in Redis until its TTL runs out.
        """
        handle = self.workers[index]
        self._reap([handle], Deadline(0))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Warm-shut-down every worker, SIGKILL what is left, stop the server. Idempotent."""
        self._stop(timeout_s)

    def _stop(self, timeout_s: float = 10.0, *, keep_logs: bool = False) -> None:
        atexit.unregister(self.stop)
        running = [w for w in self.workers if w.running()]
        for w in running:
            with contextlib.suppress(ProcessLookupError):
                w.process.send_signal(signal.SIGTERM)
        self._reap(self.workers, Deadline(timeout_s))
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._log_dir_arg is None and self._log_dir is not None and not keep_logs:
            shutil.rmtree(self._log_dir, ignore_errors=True)
        self._settings = None
        self._log_dir = None

    def _reap(self, handles: Sequence[WorkerHandle], deadline: Deadline) -> None:
        for h in handles:
            if h.swept:
                continue  # once its group is empty, the id may belong to someone else
            if not wait_exit(h.process, deadline):
                kill_group(h.pid)
                h.process.wait()
            # A worker that exited can leave pool children behind in its group.
            kill_group(h.pid)
            h.swept = True

    def _spawn(
        self,
        *,
        settings: Settings | None = None,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> WorkerHandle:
        index = len(self.workers)
        nodename = f"local{index}-{self._id}@%h"
        queues_t = tuple(queues) if queues else self._queues
        settings = settings or self.settings
        args = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker",
            "--concurrency", str(concurrency or self._concurrency),
            "--pool", "prefork",
            "--loglevel", self._loglevel,
            "--hostname", nodename,
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if queues_t:
            args += ["-Q", ",".join(queues_t)]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("JOBSET_") and k not in _NOT_INHERITED
        }
        env.update(settings.to_env())
        metrics_port = None
        if self._metrics:
            metrics_port = free_port()
            metrics = MetricsSettings(
                port=metrics_port,
                addr="127.0.0.1",
                multiproc_dir=str(self.log_dir / f"metrics-{index}"),
            )
            env.update(metrics.to_env())
        env.update(self._extra_env)
        env.update(extra_env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_path = self.log_dir / f"worker-{index}.log"
        process = spawn_logged(args, log_path=log_path, env=env)
        handle = WorkerHandle(
            index, nodename, process, log_path, queues_t, settings, metrics_port=metrics_port
        )
        self.workers.append(handle)
        return handle

    def _wait_ready(self, handles: Sequence[WorkerHandle], deadline: Deadline) -> None:
        """Poll Redis until each worker's heartbeat appears (the workers' index names it);
        fail fast if one dies."""
        pending = {h.nodename.split("@", 1)[0] + "@": h for h in handles}
        client = redis_client(self.settings.backend_url, self.settings, socket_timeout=2.0)

        def all_beating() -> bool | None:
            for hostname in worker_names(client.zrange(WORKERS_INDEX_KEY, 0, -1)):
                prefix = hostname.split("@", 1)[0] + "@"
                beat = client.get(worker_key(hostname)) if prefix in pending else None
                if beat is not None:  # None: not ours, or an earlier worker of the name, gone
                    pending.pop(prefix).hostname = _heartbeat_hostname(beat) or hostname
            dead = [h for h in pending.values() if not h.running()]
            if dead:
                failed("exited", dead)
            return None if pending else True

        def failed(why: str, handles: Iterable[WorkerHandle]) -> NoReturn:
            tails = "\n".join(
                f"--- worker {h.index} ({h.log_path}):\n{log_tail(h.log_path)}" for h in handles
            )
            raise ConfigurationError(f"local cluster: worker(s) {why}\n{tails}")

        def timed_out() -> NoReturn:
            failed(f"sent no heartbeat within {self.startup_timeout_s} s", pending.values())

        try:
            poll(all_beating, deadline, timed_out, pause=growing_sleep(0.1, 0.1))
        finally:
            client.close()


def _checked_extra_env(extra_env: Mapping[str, str] | None) -> dict[str, str]:
    settings = sorted(_SETTINGS_VARIABLES & set(extra_env or {}))
    if settings:
        raise ConfigurationError(
            f"{', '.join(settings)}: pass settings=, so that the cluster's settings are "
            "what its workers run with"
        )
    return dict(extra_env or {})


def _heartbeat_hostname(raw: object) -> str | None:
    if not isinstance(raw, (bytes, str)):
        return None
    try:
        record = json.loads(raw)
    except ValueError:  # not a record this project wrote
        return None
    hostname = record.get("hostname") if isinstance(record, dict) else None
    return hostname if isinstance(hostname, str) else None
