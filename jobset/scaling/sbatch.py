"""Workers as Slurm jobs: the batch script, and the ``sbatch``/``squeue``/``scancel`` calls.

One Slurm job runs one ``celery worker`` (its pool of ``concurrency`` processes) on the CPUs
and memory Slurm gave it.  The script is built from the producer's settings:

* No secret is written into the script or onto a command line.  A secret (or a URL with a
  password) reaches the worker as the path of a file, through its ``_FILE`` variable
  (``JOBSET_SECRET_KEY_FILE``, ...), which the worker reads on the node: the file must be
  on a filesystem the nodes share, and its owner's alone.  Plain settings are exported as
  values.  ``--export`` names only ``PATH``, ``HOME`` and ``LANG``, so a secret in the
  submitting shell's environment is not copied into the job (sbatch's default copies the
  whole environment into the controller's state).
* Worker concurrency x Aer threads never exceeds the CPUs of the allocation: Slurm's
  ``task/none`` and many sites do not pin a job's CPUs, so a worker's own default (the
  cores it sees) would oversubscribe the node.
* The batch shell ``exec``s the worker, so Slurm's signals reach it, and the worker runs
  with ``REMAP_SIGTERM=SIGQUIT``: SIGTERM (``scancel``, preemption, and ``--signal`` a
  lead time before the time limit) is Celery's cold shutdown, which stops the running
  sub-jobs and gives their messages back to the queue at once, instead of the lease
  lapsing a visibility timeout later.  SIGINT is Celery's warm shutdown: the worker stops
  taking sub-jobs, finishes the running ones and exits; the scaler drains with it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..protocol import DEFAULT_QUEUE, GPU_QUEUE
from ..settings import ENV_AER_THREADS, ENV_WORKER_MEMORY_MB, Settings, read_secret_file, variables

JOB_NAME = "jobset-worker"
# Celery hostnames of Slurm workers: the job id makes each one's Slurm job known.
HOSTNAME_PREFIX = "slurm-"
DEFAULT_SIGNAL_LEAD_S = 60
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
_NAME = re.compile(r"^[A-Za-z0-9_.,:@%+=-]+$")
_EXPORTED = "PATH,HOME,LANG"
COMMAND_TIMEOUT_S = 30


@dataclass(frozen=True)
class SlurmWorkerSpec:
    """What one Slurm worker job asks for and runs.

    ``cpus`` and ``memory_mb`` are the allocation of one job; ``concurrency`` pool
    processes share it, each running ``cpus // concurrency`` Aer threads (or
    ``aer_threads``, refused when concurrency x threads would exceed ``cpus``).  ``gpus``
    asks for that many GPUs (``--gres=gpu:N``) and consumes the GPU queue unless
    ``queues`` says otherwise.
    """

    partition: str | None = None
    time_limit: str = "1:00:00"
    cpus: int = 1
    memory_mb: int | None = None
    concurrency: int = 1
    aer_threads: int | None = None
    gpus: int = 0
    queues: tuple[str, ...] = ()
    signal_lead_s: int = DEFAULT_SIGNAL_LEAD_S
    workdir: Path = field(default_factory=Path.cwd)
    python: str = sys.executable
    output: str | None = None
    job_name: str = JOB_NAME
    loglevel: str = "INFO"
    # Shell lines run before the worker starts (``module load cuda``, ``source env.sh``).
    setup: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.cpus < 1 or self.concurrency < 1 or self.gpus < 0:
            raise ConfigurationError("cpus and concurrency must be at least 1, gpus at least 0")
        if self.concurrency > self.cpus:
            raise ConfigurationError(
                f"concurrency {self.concurrency} exceeds the {self.cpus} CPU(s) of the job"
            )
        if self.aer_threads is not None and self.aer_threads * self.concurrency > self.cpus:
            raise ConfigurationError(
                f"concurrency {self.concurrency} x {self.aer_threads} Aer threads exceeds the "
                f"{self.cpus} CPU(s) of the job"
            )
        if self.memory_mb is not None and self.memory_mb < self.concurrency:
            raise ConfigurationError("memory_mb must give every pool process at least 1 MiB")
        if not _TIME.match(self.time_limit):
            raise ConfigurationError(
                f"time limit must be Slurm's [D-]HH:MM:SS or minutes, got {self.time_limit!r}"
            )
        if self.signal_lead_s < 0:
            raise ConfigurationError("signal_lead_s must not be negative")
        for name in (self.partition, self.job_name, self.loglevel, *self.queues):
            if name is not None and not _NAME.match(name):
                raise ConfigurationError(f"not a Slurm or queue name: {name!r}")

    @property
    def threads(self) -> int:
        """Aer threads per pool process."""
        return self.aer_threads or max(1, self.cpus // self.concurrency)

    @property
    def worker_queues(self) -> tuple[str, ...]:
        return self.queues or ((GPU_QUEUE,) if self.gpus else (DEFAULT_QUEUE,))


def worker_exports(environ: Mapping[str, str], spec: SlurmWorkerSpec) -> dict[str, str]:
    """The variables a Slurm worker is started with, from the producer's environment.

    A secret, or a URL with a password, set as a value is refused: it would be written into
    the script.  Its ``_FILE`` form is passed on as an absolute path, after checking here
    that the file is readable and private (the worker checks it again on its node).
    """
    exports: dict[str, str] = {}
    for _, var in variables(Settings):
        path = environ.get(var.file_env, "") if var.file_env else ""
        value = environ.get(var.env, "")
        if path and var.file_env:
            read_secret_file(path, variable=var.file_env)
            exports[var.file_env] = os.path.abspath(path)
        elif value:
            if var.secret or (var.url and _has_password(value)):
                raise ConfigurationError(
                    f"{var.env} would be written into the batch script: put it in a file "
                    f"that only you can read (chmod 600) on a filesystem the nodes share, "
                    f"and set {var.file_env} to its path instead"
                )
            exports[var.env] = value
    if ENV_AER_THREADS in exports:
        threads = int(exports[ENV_AER_THREADS])
        if threads * spec.concurrency > spec.cpus:
            raise ConfigurationError(
                f"{ENV_AER_THREADS}={threads} x concurrency {spec.concurrency} exceeds the "
                f"{spec.cpus} CPU(s) of the job"
            )
    else:
        exports[ENV_AER_THREADS] = str(spec.threads)
    if spec.memory_mb is not None and ENV_WORKER_MEMORY_MB not in exports:
        exports[ENV_WORKER_MEMORY_MB] = str(spec.memory_mb // spec.concurrency)
    return exports


def _has_password(url: str) -> bool:
    return any(urlsplit(part).password for part in url.split(";"))


def batch_script(spec: SlurmWorkerSpec, exports: Mapping[str, str]) -> str:
    """The sbatch script of one worker job (no secret in it: see :func:`worker_exports`)."""
    directives = [
        f"--job-name={spec.job_name}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={spec.cpus}",
        f"--time={spec.time_limit}",
        f"--export={_EXPORTED}",
        # To the batch shell (the worker, exec'd) before the limit: a cold shutdown.
        f"--signal=B:TERM@{spec.signal_lead_s}",
        f"--output={spec.output or f'{spec.workdir}/{spec.job_name}-%j.out'}",
    ]
    if spec.partition:
        directives.append(f"--partition={spec.partition}")
    if spec.memory_mb is not None:
        directives.append(f"--mem={spec.memory_mb}M")
    if spec.gpus:
        directives.append(f"--gres=gpu:{spec.gpus}")
    command = [
        spec.python,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        f"--concurrency={spec.concurrency}",
        f"--queues={','.join(spec.worker_queues)}",
        f"--hostname={HOSTNAME_PREFIX}${{SLURM_JOB_ID}}@%h",
        f"--loglevel={spec.loglevel}",
    ]
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {d}" for d in directives),
        "# Written by `jobset slurm`.  Secrets reach the worker as paths (*_FILE), never values.",
        "set -eu",
        *(f"export {name}={shlex.quote(value)}" for name, value in sorted(exports.items())),
        "# SIGTERM (scancel, preemption, the time limit's --signal) is a cold shutdown: the",
        "# running sub-jobs go back to the queue at once.  SIGINT drains (a warm shutdown).",
        "export REMAP_SIGTERM=SIGQUIT",
        f"cd {shlex.quote(str(spec.workdir))}",
        *spec.setup,
        "exec " + " ".join(_quote_keeping_job_id(c) for c in command),
    ]
    return "\n".join(lines) + "\n"


def _quote_keeping_job_id(word: str) -> str:
    if "${SLURM_JOB_ID}" in word:
        head, tail = word.split("${SLURM_JOB_ID}")
        return f'{shlex.quote(head)}"${{SLURM_JOB_ID}}"{shlex.quote(tail)}'
    return shlex.quote(word)


def job_id_of(hostname: str) -> str | None:
    """The Slurm job id in a Slurm worker's Celery hostname (``slurm-123@node``), if any."""
    name = hostname.split("@", 1)[0]
    if name.startswith(HOSTNAME_PREFIX) and name[len(HOSTNAME_PREFIX) :].isdigit():
        return name[len(HOSTNAME_PREFIX) :]
    return None


class Slurm:
    """The Slurm client commands, with ``env`` (``SLURM_CONF`` and the like) for each."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)

    def _run(self, args: Sequence[str], *, stdin: str | None = None) -> str:
        try:
            done = subprocess.run(
                list(args),
                input=stdin,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
            )
        except FileNotFoundError:
            raise ConfigurationError(f"{args[0]}: not found (is Slurm installed?)") from None
        except subprocess.TimeoutExpired:
            raise ConfigurationError(f"{args[0]} did not answer in {COMMAND_TIMEOUT_S} s") from None
        if done.returncode != 0:
            raise ConfigurationError(f"{args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def submit(self, script: str) -> str:
        """Submit ``script`` (on sbatch's standard input); the new job's id."""
        out = self._run(["sbatch", "--parsable"], stdin=script).strip()
        job_id = out.split(";", 1)[0]
        if not job_id.isdigit():
            raise ConfigurationError(f"sbatch answered {out!r}, not a job id")
        return job_id

    def jobs(self, job_name: str = JOB_NAME) -> dict[str, str]:
        """Job id -> state (``PENDING``, ``RUNNING``, ...) of this user's jobs of that name."""
        out = self._run(["squeue", "--noheader", f"--name={job_name}", "--format=%i %T"])
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())

    def drain(self, job_id: str) -> None:
        """Ask the worker of ``job_id`` to finish its running sub-jobs and exit (SIGINT)."""
        self._run(["scancel", "--batch", "--signal=INT", _job(job_id)])

    def cancel(self, job_id: str) -> None:
        """End ``job_id`` now; its worker gives its running sub-jobs back (SIGTERM)."""
        self._run(["scancel", _job(job_id)])


def _job(job_id: str) -> str:
    if not job_id.isdigit():
        raise ConfigurationError(f"not a Slurm job id: {job_id!r}")
    return job_id
