"""``jobset slurm`` and ``jobset scale``: workers as Slurm jobs, and the backlog scaler.

Registered on the ``jobset`` command by :func:`register`.  Like every edge they read the
``JOBSET_*`` variables (and ``SLURM_CONF`` and the like, through the Slurm commands).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import JobSetError
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
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def spec_from(options: dict[str, Any]) -> SlurmWorkerSpec:
    workdir = options.pop("workdir", None)
    return SlurmWorkerSpec(
        workdir=(workdir or Path.cwd()).resolve(),
        queues=tuple(options.pop("queues", ())),
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


def register(main: click.Group) -> None:
    """Add this module's commands to the ``jobset`` command."""
    main.add_command(slurm)
