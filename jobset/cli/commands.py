"""The ``jobset`` command line, on top of the public API.

Reads the ``JOBSET_*`` variables like every edge.  Errors a user can cause (an unknown id,
an unreachable Redis, a bad file) print one line and exit with status 2, never a traceback.
Only the project's errors are caught here (and Aer's, for a simulator option): Redis's,
kombu's and Celery's reach this module already mapped by the executor
(:mod:`jobset.executors.celery.boundary`), so an unreachable or frozen Redis is a
:class:`~jobset.errors.BrokerUnavailableError` within the bound the connect timeout sets.
"""

from __future__ import annotations

import functools
import json
import runpy
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click
from qiskit import QuantumCircuit, qpy
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator
from qiskit_aer.aererror import AerError

from .. import __version__
from ..errors import DecodeError, JobSetError, JobSetNotFoundError, SecurityError
from ..executors.celery.executor import CeleryExecutor
from ..jobset import AerJobSet
from ..observe import live
from ..scaling import cli as scaling_cli
from ..settings import Settings
from ..simulator import run
from ..status import FINAL
from ..validate import check_method

F = TypeVar("F", bound=Callable[..., Any])
_STATES = ("QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED")


class UsageFailure(click.ClickException):
    """A one-line error and exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _one_line_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (JobSetError, AerError) as e:
            raise UsageFailure(str(e).splitlines()[0]) from None

    return wrapper  # type: ignore[return-value]


def _write(path: Path, write: Callable[[Path], object]) -> None:
    """``write(path)``, a file the user named: a failure is one line, not a traceback."""
    try:
        write(path)
    except OSError as e:
        raise UsageFailure(f"{path}: cannot write ({e.strerror or e})") from None


def _executor() -> CeleryExecutor:
    return CeleryExecutor(Settings.from_env())


def load_circuits(path: Path) -> tuple[list[QuantumCircuit], Any, Any]:
    """Circuits (and an optional backend and noise model) from a QPY or a Python file.

    QPY loses Aer save instructions and noise models, so a Python file that defines
    ``circuits`` (and optionally ``backend`` or ``noise_model``) is the exact form.
    """
    if not path.is_file():
        raise UsageFailure(f"{path}: no such file")
    if path.suffix == ".qpy":
        try:
            with path.open("rb") as f:
                return list(qpy.load(f)), None, None
        except Exception as e:
            raise UsageFailure(f"{path}: not a readable QPY file ({e})") from None
    if path.suffix == ".py":
        try:
            namespace = runpy.run_path(str(path))
        except Exception as e:
            raise UsageFailure(f"{path}: failed to run ({type(e).__name__}: {e})") from None
        if "circuits" not in namespace:
            raise UsageFailure(f"{path}: defines no `circuits`")
        circuits = namespace["circuits"]
        if isinstance(circuits, QuantumCircuit):
            circuits = [circuits]
        return list(circuits), namespace.get("backend"), namespace.get("noise_model")
    raise UsageFailure(f"{path}: expected a .qpy or a .py file")


@click.group()
@click.version_option(__version__, "--version", "-V", prog_name="jobset")
def main() -> None:
    """Distributed Qiskit Aer job sets over Celery and Redis (settings: JOBSET_* variables)."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--shots", type=click.IntRange(min=1), default=None, help="Shots per experiment.")
@click.option("--max-job-size", type=click.IntRange(min=1), default=None)
@click.option("--max-shot-size", type=click.IntRange(min=1), default=None)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="seed_simulator.")
@click.option("--method", default=None, help="AerSimulator method, e.g. statevector.")
@click.option("--memory/--no-memory", default=False, help="Keep per-shot memory.")
@click.option("--tag", "tags", multiple=True, help="A tag stored with the set (repeatable).")
@_one_line_errors
def submit(
    file: Path,
    shots: int | None,
    max_job_size: int | None,
    max_shot_size: int | None,
    seed: int | None,
    method: str | None,
    memory: bool,
    tags: tuple[str, ...],
) -> None:
    """Submit the circuits of FILE (.qpy, or .py defining `circuits`); prints the set's id last."""
    circuits, backend, noise_model = load_circuits(file)
    if backend is None:
        backend = AerSimulator(noise_model=noise_model)
    if method is not None:
        check_method(method)
        backend.set_options(method=method)
    options: dict[str, Any] = {"memory": True} if memory else {}
    if shots is not None:
        options["shots"] = shots
    if seed is not None:
        options["seed_simulator"] = seed
    with _executor() as executor:
        job = run(
            backend,
            circuits,
            executor=executor,
            max_job_size=max_job_size,
            max_shot_size=max_shot_size,
            tags=tags,
            **options,
        )
        click.echo(
            f"submitted {len(job.plan.experiments)} experiment(s) in "
            f"{len(job.plan.sub_batches)} sub-job(s), seed {job.plan.seed_simulator}"
        )
        click.echo(job.job_id())


def _counts_line(job: AerJobSet) -> str:
    counts = job.progress()
    return "  ".join(f"{name} {counts.get(name, 0)}" for name in _STATES)


@main.command()
@click.argument("job_id")
@_one_line_errors
def status(job_id: str) -> None:
    """The set's status and its sub-jobs per state."""
    with _executor() as executor:
        job = AerJobSet.retrieve(job_id, executor)
        click.echo(f"{job_id}: {job.status().name}")
        click.echo(_counts_line(job))


@main.command()
@click.argument("job_id")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True)
@_one_line_errors
def watch(job_id: str, interval: float) -> None:
    """Progress until the set is final; exit 0 only when it is DONE.

    On a terminal: a progress bar with rate and ETA.  Piped: a plain line when the counts
    change (at most every few seconds), and the last one.
    """
    with _executor() as executor:
        job = AerJobSet.retrieve(job_id, executor)
        update, close = live.terminal_updater(
            len(job.plan.sub_batches), job_id[:8], stream=sys.stdout
        )
        try:
            while True:
                view = job.snapshot()
                update(view)
                if view.status in _FINAL_NAMES:
                    break
                time.sleep(interval)
        finally:
            close()
        final_status = job.status()
        click.echo(f"{job_id}: {final_status.name}")
        click.echo(_counts_line(job))
        sys.exit(0 if final_status is JobStatus.DONE else 1)


_FINAL_NAMES = frozenset(s.name for s in FINAL)


@main.command()
@click.argument("job_id")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Seconds to wait.")
@_one_line_errors
def result(job_id: str, output: Path | None, timeout: float | None) -> None:
    """Counts per experiment, in input order, as JSON; exit 1 if any experiment failed."""
    with _executor() as executor:
        job = AerJobSet.retrieve(job_id, executor)
        merged = job.result(timeout=timeout, partial=True)
    experiments = []
    for i, exp in enumerate(merged.results):
        header = exp.header if isinstance(exp.header, dict) else {}
        entry: dict[str, Any] = {
            "index": i,
            "name": header.get("name", job.plan.experiments[i].name),
            "success": bool(exp.success),
            "shots": int(exp.shots),
        }
        if exp.success and getattr(exp.data, "counts", None) is not None:
            entry["counts"] = merged.get_counts(i)
        if not exp.success:
            entry["error"] = str(exp.status)
        experiments.append(entry)
    document = {
        "job_id": job_id,
        "success": bool(merged.success),
        "seed_simulator": job.plan.seed_simulator,
        "time_taken": merged.time_taken,
        "experiments": experiments,
    }
    text = json.dumps(document, indent=2)
    if output is None:
        click.echo(text)
    else:
        _write(output, lambda path: path.write_text(text + "\n"))
        click.echo(f"wrote {len(experiments)} experiment(s) to {output}")
    sys.exit(0 if merged.success else 1)


@main.command()
@click.argument("job_id")
@_one_line_errors
def cancel(job_id: str) -> None:
    """Cancel the set: queued sub-jobs dropped, running ones stopped."""
    with _executor() as executor:
        job = AerJobSet.retrieve(job_id, executor)
        if job.cancel():
            click.echo(f"{job_id}: cancelled")
        else:
            click.echo(f"{job_id}: already {job.status().name}, nothing to cancel")


@main.command(name="ls")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show at most."
)
@click.option("--all", "show_all", is_flag=True, help="Show every set (no limit).")
@_one_line_errors
def list_sets(limit: int, show_all: bool) -> None:
    """Known job sets, newest first."""
    skipped: list[str] = []
    with _executor() as executor:
        total = len(executor.stored_ids())
        infos = AerJobSet.list_sets(
            executor,
            on_skip=lambda job_id, _: skipped.append(job_id),
            newest_first=True,
            limit=None if show_all else limit,
        )
    if skipped:
        shown = ", ".join(repr(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        click.echo(
            f"skipped {len(skipped)} job set(s) that could not be read or verified (written by "
            f"another deployment's key, or altered): {shown}; `jobset prune` removes them",
            err=True,
        )
    if not infos:
        click.echo("no job sets")
        return
    hidden = max(0, total - len(infos) - len(skipped))
    click.echo(f"{'ID':36}  {'CREATED (UTC)':19}  {'STATUS':9}  SUB-JOBS  EXPERIMENTS  TAGS")
    for info in infos:
        created = datetime.fromtimestamp(info.created_at, tz=timezone.utc)
        click.echo(
            f"{info.job_id:36}  {created:%Y-%m-%d %H:%M:%S}  {info.status.name:9}  "
            f"{info.sub_jobs:8}  {info.experiments:11}  {','.join(info.tags)}"
        )
    if hidden:
        click.echo(f"... and {hidden} older (--limit N or --all to see more)")


@main.command()
@click.argument("job_id")
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Draw the timeline into this PNG (needs the `plot` extra).",
)
@_one_line_errors
def timeline(job_id: str, png: Path | None) -> None:
    """Which worker ran which sub-job when: queued, ran, merged (seconds since submit)."""
    with _executor() as executor:
        job = AerJobSet.retrieve(job_id, executor)
        recorded = job.timeline()
    sub_jobs = len(job.plan.sub_batches)
    if png is not None:
        try:
            # matplotlib is an optional extra, and slow to import: only this command loads it.
            from ..observe import plot
        except ImportError:
            raise UsageFailure(
                "drawing needs matplotlib: pip install 'qiskit-aer-jobset[plot]'"
            ) from None
        figure = plot.timeline_figure(recorded, sub_jobs=sub_jobs)
        _write(png, lambda path: plot.save(figure, path))
        click.echo(f"wrote the timeline of {len(recorded.runs)} run(s) to {png}")
        return
    t0 = recorded.created_at or min((r.started_at for r in recorded.runs), default=0.0)
    click.echo(f"{'SUB-JOB':>7}  {'WORKER':32}  {'STARTED':>8}  {'RAN':>8}  STATE")
    for r in sorted(recorded.runs, key=lambda r: (r.started_at, r.index)):
        click.echo(
            f"{r.index:7}  {r.worker[:32]:32}  {r.started_at - t0:7.2f}s  "
            f"{r.ended_at - r.started_at:7.2f}s  {r.state}"
        )
    ran = {r.index for r in recorded.runs}
    click.echo(f"{len(recorded.runs)} run(s) of {len(ran)} of {sub_jobs} sub-job(s)")
    if recorded.merged_at is not None:
        click.echo(f"merged {recorded.merged_at - t0:.2f} s after submit")


@main.command()
@click.argument("job_id")
@click.option(
    "--force",
    is_flag=True,
    help="Also remove a set whose record cannot be verified (another deployment's key).",
)
@_one_line_errors
def delete(job_id: str, force: bool) -> None:
    """Remove the set's record, payloads and results (cancelling it first if it runs)."""
    with _executor() as executor:
        try:
            AerJobSet.retrieve(job_id, executor).delete()
        except (SecurityError, DecodeError, JobSetNotFoundError):
            if not force:
                raise
            keys = executor.discard(job_id)
            if not keys:
                raise
            click.echo(f"{job_id}: removed {keys} key(s) without verifying them (--force)")
            return
    click.echo(f"{job_id}: deleted")


@main.command()
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_one_line_errors
def prune(dry_run: bool) -> None:
    """Drop records this key cannot verify, and expired index entries; says what went."""
    with _executor() as executor:
        removed = executor.prune(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        keys = f", {entry.keys} key(s)" if entry.keys else ""
        click.echo(f"{verb} {entry.job_id}: {entry.reason}{keys}")
    click.echo(f"{verb} {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")


scaling_cli.register(main)
