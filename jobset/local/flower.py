"""Flower for the local cluster: ``celery -A workers.app flower`` as compose runs it.

On 127.0.0.1, with basic auth and persistent state, and a throw-away signing key:
Flower never reads or signs a payload.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from ..deadline import Deadline, growing_sleep, poll
from ..errors import ConfigurationError
from ..settings import ENV_BROKER_URL, ENV_SECRET_KEY
from .processes import StartStop, free_port, kill_group, log_tail, spawn_logged, wait_exit

FLOWER_PORT = 5555
# Flower shows these columns on its tasks page: kwargs carries the set id, index and size.
FLOWER_TASK_COLUMNS = "name,uuid,state,kwargs,result,received,runtime,worker"


def flower_secret_key() -> str:
    """Flower never reads or signs a payload: it gets a throw-away key, not the signing key."""
    return secrets.token_hex(32)


class FlowerProcess(StartStop):
    """``celery -A workers.app flower`` on 127.0.0.1, with basic auth and persistent state."""

    def __init__(
        self,
        broker_url: str,
        *,
        basic_auth: str,
        db_path: str | os.PathLike[str],
        log_path: str | os.PathLike[str],
        port: int = FLOWER_PORT,
        startup_timeout_s: float = 60.0,
        sentinel: Mapping[str, str] | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.sentinel = dict(sentinel or {})  # JOBSET_SENTINEL_* for a sentinel:// URL
        self.basic_auth = basic_auth
        self.db_path = Path(db_path)
        self.log_path = Path(log_path)
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "workers.app", "flower",
            "--address=127.0.0.1",
            f"--port={self.port}",
            "--persistent=True",
            f"--db={self.db_path}",
            "--state_save_interval=60000",
            "--purge_offline_workers=600",
            f"--tasks_columns={FLOWER_TASK_COLUMNS}",
        ]  # fmt: skip

    def start(self) -> FlowerProcess:
        if self.process is not None:
            return self
        if not self.port:
            self.port = free_port()
        # Inherited FLOWER_* options or a metrics directory would change this Flower.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("JOBSET_", "FLOWER_")) and k != "PROMETHEUS_MULTIPROC_DIR"
        }
        env.update(
            {
                ENV_BROKER_URL: self.broker_url,
                ENV_SECRET_KEY: flower_secret_key(),
                "FLOWER_BASIC_AUTH": self.basic_auth,
                "PYTHONUNBUFFERED": "1",
                **self.sentinel,
            }
        )
        self.process = spawn_logged(self.argv(), log_path=self.log_path, env=env)
        try:
            self._wait_ready(Deadline(self.startup_timeout_s))
        except BaseException:
            self.stop(timeout_s=1.0)
            raise
        return self

    def _wait_ready(self, deadline: Deadline) -> None:
        # /healthcheck answers without the login once Flower serves HTTP.
        def serving() -> bool | None:
            if self.process is None or self.process.poll() is not None:
                raise ConfigurationError(f"Flower exited:\n{log_tail(self.log_path)}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/healthcheck", timeout=2) as response,
            ):
                if response.status == 200:
                    return True
            return None

        def timed_out() -> NoReturn:
            raise ConfigurationError(
                f"Flower did not answer within {self.startup_timeout_s} s:\n"
                f"{log_tail(self.log_path)}"
            )

        poll(serving, deadline, timed_out, pause=growing_sleep(0.1, 0.1))

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (Flower saves its state), then SIGKILL its group after ``timeout_s``."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            if not wait_exit(process, Deadline(timeout_s)):
                kill_group(process.pid)
                process.wait()
        kill_group(process.pid)
