"""Starting and stopping the local cluster's processes: sessions, logs, groups, ports.

Every process is started in a new session, so it leads its own process group: Ctrl-C in a
terminal reaches only the producer (which then stops the cluster in order), and stopping
a process can kill its whole group, a worker's prefork pool children included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from ..deadline import Deadline

_S = TypeVar("_S", bound="StartStop")

RESERVED_PORT = 6379  # the conventional Redis port: someone else's server may live there
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_LOG_TAIL_BYTES = 4000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != RESERVED_PORT:
            return port


def log_tail(path: Path) -> str:
    """The end of a log, for an error message that says why a process did not start."""
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


def wait_exit(process: subprocess.Popen[bytes], deadline: Deadline) -> bool:
    """Whether the process exited before the deadline."""
    try:
        process.wait(timeout=deadline.remaining())
        return True
    except subprocess.TimeoutExpired:
        return False


def kill_group(pgid: int) -> None:
    """SIGKILL a process group; only ever one this package created (pid == pgid)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
