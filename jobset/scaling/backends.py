"""Where the scaler starts and drains workers: Slurm jobs, or the containers of compose.

A backend knows the workers it started (``members``: id -> starting or live), which live
worker (by its heartbeat) is which of its members (``member_of``), how to start ``n`` more
(``add``) and how to drain one (``drain``): the worker stops taking sub-jobs, finishes
the running ones and exits (Celery's warm shutdown), so nothing is lost or run twice.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import ConfigurationError
from .backlog import LiveWorker
from .sbatch import JOB_NAME, Slurm, job_id_of

STARTING = "starting"
LIVE = "live"
_CONTAINER_ID = re.compile(r"^[0-9a-f]{12,64}$")


class Backend(Protocol):
    name: str

    def members(self) -> dict[str, str]: ...

    def member_of(self, worker: LiveWorker) -> str | None: ...

    def add(self, count: int) -> list[str]: ...

    def drain(self, member: str) -> None: ...


@dataclass
class SlurmBackend:
    """Workers as Slurm jobs of one name, each running ``script`` (:mod:`.sbatch`)."""

    slurm: Slurm
    script: str
    job_name: str = JOB_NAME
    name: str = "slurm"

    def members(self) -> dict[str, str]:
        # A job Slurm still lists but that is completing is on its way out: not counted.
        states = self.slurm.jobs(self.job_name)
        return {
            job: LIVE if state == "RUNNING" else STARTING
            for job, state in states.items()
            if state in {"PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "RESIZING"}
        }

    def member_of(self, worker: LiveWorker) -> str | None:
        return job_id_of(worker.hostname)

    def add(self, count: int) -> list[str]:
        return [self.slurm.submit(self.script) for _ in range(count)]

    def drain(self, member: str) -> None:
        self.slurm.drain(member)


Runner = Callable[[Sequence[str]], str]


def run_command(args: Sequence[str]) -> str:
    """Run ``args``; its standard output, or a :class:`ConfigurationError` with its error."""
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise ConfigurationError(f"{args[0]}: not found") from None
    if done.returncode != 0:
        raise ConfigurationError(f"{' '.join(args[:3])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


@dataclass
class ComposeBackend:
    """Workers as the containers of one compose service (``worker``).

    Scaling up is ``docker compose up -d --no-recreate --no-deps --scale worker=N worker``.
    Draining one container is ``docker stop`` (SIGTERM: Celery's warm shutdown, within the
    service's ``stop_grace_period``) then ``docker rm``, so the next scale counts without
    it.  A worker's heartbeat names its host, which is its container's short id.
    """

    project_dir: Path = field(default_factory=Path.cwd)
    files: tuple[Path, ...] = ()
    service: str = "worker"
    stop_timeout_s: int = 600
    compose: tuple[str, ...] = ("docker", "compose")
    docker: tuple[str, ...] = ("docker",)
    runner: Runner = run_command
    name: str = "compose"

    def _compose(self, *args: str) -> list[str]:
        command = [*self.compose, "--project-directory", str(self.project_dir)]
        for f in self.files:
            command += ["--file", str(f)]
        return [*command, *args]

    def members(self) -> dict[str, str]:
        out = self.runner(self._compose("ps", "--quiet", "--status", "running", self.service))
        return {line.strip(): LIVE for line in out.splitlines() if line.strip()}

    def member_of(self, worker: LiveWorker) -> str | None:
        short = worker.host
        if not _CONTAINER_ID.match(short):
            return None
        return next((m for m in self.members() if m.startswith(short)), None)

    def scale_command(self, total: int) -> list[str]:
        return self._compose(
            "up", "--detach", "--no-recreate", "--no-deps", "--scale", f"{self.service}={total}",
            self.service,
        )  # fmt: skip

    def add(self, count: int) -> list[str]:
        before = set(self.members())
        self.runner(self.scale_command(len(before) + count))
        return sorted(set(self.members()) - before)

    def drain_commands(self, member: str) -> list[list[str]]:
        if not _CONTAINER_ID.match(member):
            raise ConfigurationError(f"not a container id: {member!r}")
        return [
            [*self.docker, "stop", "--time", str(self.stop_timeout_s), member],
            [*self.docker, "rm", member],
        ]

    def drain(self, member: str) -> None:
        for command in self.drain_commands(member):
            self.runner(command)
