"""The ``jobset`` command line, on top of the public API.

Reads the ``JOBSET_*`` variables like every edge.  Errors a user can cause (an unknown id,
an unreachable Redis, a bad file) print one line and exit with status 2, never a traceback.
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
import kombu.exceptions
import redis
from qiskit import QuantumCircuit, qpy
from qiskit.providers import JobStatus
from qiskit_aer import AerSimulator

from .celery_executor import CeleryExecutor
from .errors import JobSetError
from .jobset import AerJobSet
from .settings import Settings, redact_url
from .simulator import run
from .status import FINAL

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
        except (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError) as e:
            url = _settings_url()
            raise UsageFailure(f"cannot reach Redis at {url}: {e}") from None
        except (JobSetError, redis.RedisError, OSError) as e:
            raise UsageFailure(str(e).splitlines()[0]) from None

    return wrapper  # type: ignore[return-value]


def _settings_url() -> str:
    try:
        return redact_url(Settings.from_env().broker_url)
    except JobSetError:
        return "(unconfigured)"


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
    """A live progress bar until the set is final; exit 0 only when it is DONE."""
    with _executor() as executor:
        job = AerJobSet.retrieve(job_id, executor)
        total = len(job.plan.sub_batches)
        with click.progressbar(length=total, label=job_id, show_pos=True) as bar:
            shown = 0
            while True:
                counts = job.progress()
                final = sum(counts.get(s.name, 0) for s in FINAL)
                bar.update(final - shown)
                shown = final
                # The counts are the workers' unsigned tally: the end is the set's status,
                # which the signed proofs back (jobset.evidence).
                if final == total and job.status() in FINAL:
                    break
                time.sleep(interval)
        final_status = job.status()
        click.echo(f"{job_id}: {final_status.name}")
        click.echo(_counts_line(job))
        sys.exit(0 if final_status is JobStatus.DONE else 1)


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
        output.write_text(text + "\n")
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
@_one_line_errors
def list_sets() -> None:
    """Known job sets, oldest first."""
    skipped: list[str] = []
    with _executor() as executor:
        infos = AerJobSet.list_sets(executor, on_skip=lambda job_id, _: skipped.append(job_id))
    if skipped:
        shown = ", ".join(repr(s) for s in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        click.echo(
            f"skipped {len(skipped)} job set(s) that could not be read or verified: {shown}",
            err=True,
        )
    if not infos:
        click.echo("no job sets")
        return
    click.echo(f"{'ID':36}  {'CREATED (UTC)':19}  {'STATUS':9}  SUB-JOBS  EXPERIMENTS  TAGS")
    for info in infos:
        created = datetime.fromtimestamp(info.created_at, tz=timezone.utc)
        click.echo(
            f"{info.job_id:36}  {created:%Y-%m-%d %H:%M:%S}  {info.status.name:9}  "
            f"{info.sub_jobs:8}  {info.experiments:11}  {','.join(info.tags)}"
        )


@main.command()
@click.argument("job_id")
@_one_line_errors
def delete(job_id: str) -> None:
    """Remove the set's record, payloads and results (cancelling it first if it runs)."""
    with _executor() as executor:
        AerJobSet.retrieve(job_id, executor).delete()
    click.echo(f"{job_id}: deleted")


if __name__ == "__main__":
    main()
