"""``jobset slurm`` and ``jobset scale``: workers as Slurm jobs, and the backlog scaler.

Registered on the ``jobset`` command by :func:`register`.  Like every edge they read the
``JOBSET_*`` variables (and ``SLURM_CONF`` and the like, through the Slurm commands).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from ..errors import JobSetError
from ..executors.celery.executor import CeleryExecutor
from ..protocol import DEFAULT_QUEUE
from ..settings import Settings
from .backends import Backend, ComposeBackend, SlurmBackend
from .backlog import DEFAULT_WORK_RATE, BacklogReader
from .loop import Scaler
from .reconcile import ScalePolicy
from .sbatch import (
    DEFAULT_SIGNAL_LEAD_S,
    JOB_NAME,
    Slurm,
    SlurmWorkerSpec,
    batch_script,
    worker_exports,
)


class _Failure(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def slurm_options(fn: Any) -> Any:
    """The options that describe one Slurm worker job (shared by ``slurm`` and ``scale``)."""
    options = [
        click.option("--partition", default=None, help="Slurm partition (default: Slurm's)."),
        click.option(
            "--time",
            "time_limit",
            default="1:00:00",
            show_default=True,
            help="Time limit of each worker job ([D-]HH:MM:SS or minutes).",
        ),
        click.option(
            "--cpus",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="CPUs per worker job.",
        ),
        click.option(
            "--mem",
            "memory_mb",
            type=click.IntRange(min=1),
            default=None,
            help="Memory per worker job, MiB (default: Slurm's).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Pool processes per worker (at most --cpus).",
        ),
        click.option(
            "--aer-threads",
            type=click.IntRange(min=1),
            default=None,
            help="Aer threads per pool process (default: cpus // concurrency).",
        ),
        click.option(
            "--gpus",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="GPUs per worker job (--gres=gpu:N); such workers consume jobset.gpu.",
        ),
        click.option(
            "--queue",
            "queues",
            multiple=True,
            help="Queue to consume (repeatable; default jobset.cpu, or jobset.gpu with --gpus).",
        ),
        click.option(
            "--signal-lead",
            "signal_lead_s",
            type=click.IntRange(min=0),
            default=DEFAULT_SIGNAL_LEAD_S,
            show_default=True,
            help="Seconds before the time limit at which the worker gives its sub-jobs back.",
        ),
        click.option(
            "--workdir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder the worker runs in (it must import workers.app; default: here).",
        ),
        click.option(
            "--python",
            default=sys.executable,
            show_default=False,
            help="The Python (with this project installed) on the nodes (default: this one).",
        ),
        click.option("--output", default=None, help="sbatch --output (default: in WORKDIR)."),
        click.option("--job-name", default=JOB_NAME, show_default=True),
        click.option(
            "--setup",
            multiple=True,
            help="A shell line the job runs before the worker (repeatable), e.g. "
            "'module load cuda'.  Not for secrets: the script is stored with the job.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def spec_from(options: dict[str, Any]) -> SlurmWorkerSpec:
    workdir = options.pop("workdir", None)
    return SlurmWorkerSpec(
        workdir=(workdir or Path.cwd()).resolve(),
        queues=tuple(options.pop("queues", ())),
        setup=tuple(options.pop("setup", ())),
        **options,
    )


@click.command()
@slurm_options
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many worker jobs to submit.",
)
@click.option("--dry-run", is_flag=True, help="Print the script; submit nothing.")
def slurm(workers: int, dry_run: bool, **options: Any) -> None:
    """Submit Celery workers as Slurm batch jobs, built from the JOBSET_* settings.

    Secrets must be given as files (JOBSET_SECRET_KEY_FILE, JOBSET_BROKER_URL_FILE when the
    URL has a password, ...) on a filesystem the nodes share; the script holds their paths
    only.  Prints one job id per line.
    """
    try:
        spec = spec_from(options)
        script = batch_script(spec, worker_exports(os.environ, spec))
        if dry_run:
            click.echo(script, nl=False)
            return
        client = Slurm()
        for _ in range(workers):
            click.echo(client.submit(script))
    except JobSetError as e:
        raise _Failure(str(e)) from None


@click.command()
@click.option("--min", "min_workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--max", "max_workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--backend",
    "backend_name",
    type=click.Choice(["slurm", "compose", "none"]),
    required=True,
    help="Where workers run: Slurm jobs, the containers of the compose service, or none "
    "(only serve the gauges, for KEDA or the Kubernetes HPA).",
)
@click.option(
    "--scale-queue",
    "queue",
    default=DEFAULT_QUEUE,
    show_default=True,
    help="The queue whose backlog is followed.",
)
@click.option(
    "--target-drain",
    "target_drain_s",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    help="Add workers while the backlog would take longer (s) to drain.",
)
@click.option(
    "--idle-grace",
    "idle_grace_s",
    type=click.FloatRange(min=0),
    default=120,
    show_default=True,
    help="Drain a worker that ran nothing this long (s), nothing queued.",
)
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.5),
    default=10,
    show_default=True,
    help="Seconds between reconciles.",
)
@click.option(
    "--work-rate",
    type=click.FloatRange(min=1),
    default=DEFAULT_WORK_RATE,
    show_default=True,
    help="Estimated work units (jobset.cost) one worker slot does a second.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the Prometheus gauges on this port.",
)
@click.option("--metrics-addr", default="0.0.0.0", show_default=True)
@click.option("--once", is_flag=True, help="One reconcile, then exit.")
@click.option(
    "--compose-file",
    "compose_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="compose: a compose file (repeatable).",
)
@click.option("--compose-service", default="worker", show_default=True)
@click.option(
    "--compose-slots",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="compose: pool processes per worker container (WORKER_CONCURRENCY).",
)
@slurm_options
def scale(
    min_workers: int,
    max_workers: int,
    backend_name: str,
    queue: str,
    target_drain_s: float,
    idle_grace_s: float,
    interval_s: float,
    work_rate: float,
    metrics_port: int | None,
    metrics_addr: str,
    once: bool,
    compose_files: tuple[Path, ...],
    compose_service: str,
    compose_slots: int,
    **options: Any,
) -> None:
    """Scale workers on the backlog: queued sub-jobs and their estimated work, per queue.

    Adds workers while the queued work would take longer than --target-drain to drain on
    the live ones, drains (finish, then exit) workers idle for --idle-grace, within --min
    and --max; logs every decision and serves the gauges with --metrics-port.  The Slurm
    options describe each worker job, as for `jobset slurm`.  Stops on SIGINT or SIGTERM.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        backend: Backend | None = None
        slots = 1
        if backend_name == "slurm":
            spec = spec_from(options)
            backend = SlurmBackend(
                Slurm(), batch_script(spec, worker_exports(os.environ, spec)), spec.job_name
            )
            slots = spec.concurrency
        elif backend_name == "compose":
            backend = ComposeBackend(
                project_dir=Path.cwd(), files=compose_files, service=compose_service
            )
            slots = compose_slots
        policy = ScalePolicy(
            min_workers, max_workers, slots, target_drain_s=target_drain_s,
            idle_grace_s=idle_grace_s,
        )  # fmt: skip
        executor = CeleryExecutor(Settings.from_env())
    except JobSetError as e:
        raise _Failure(str(e)) from None
    scaler = Scaler(BacklogReader(executor, work_rate=work_rate), backend, policy, queue)
    if metrics_port is not None:
        scaler.metrics.serve(metrics_port, metrics_addr)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with executor:
        scaler.run(interval_s=interval_s, stop=stop, once=once)


def register(main: click.Group) -> None:
    """Add this module's commands to the ``jobset`` command."""
    main.add_command(slurm)
    main.add_command(scale)
