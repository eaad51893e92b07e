"""Prometheus metrics of a worker, per worker and per job set, served by its main process.

Set ``JOBSET_METRICS_PORT`` and the worker serves ``/metrics`` on that port (off when
unset).  Sub-jobs run in the prefork pool children, so the children count and the main
process serves: prometheus_client's multiprocess mode keeps each process's values in
files under ``PROMETHEUS_MULTIPROC_DIR`` (one directory per worker; a private temporary
one when unset), which the main process sums at each scrape.  The directory's metric files
are removed when the worker starts, so a restart begins from zero (Prometheus reads that
as a counter reset), and a pool child that exits is marked dead so its live gauges go.

Per worker, labelled ``worker`` (the Celery hostname): sub-jobs by final state, experiments
and shots completed, a histogram of sub-job seconds, sub-jobs running now, concurrency and
Aer threads.  Per job set, labelled ``worker`` and ``jobset``: sub-jobs by state,
experiments, shots, seconds, running now and the time of the last activity.  Set ids are
unbounded, so a set's series are exported only while it has a sub-job running here or
for ``JOBSET_METRICS_SET_TTL_S`` (default one hour) after its last sub-job started or
ended here; a scraper keeps the last values it saw.  The per-worker series never expire.
The files keep every set's values until the worker restarts (about a kilobyte per set
and pool process), so a process labels at most ``MAX_SET_LABELS`` sets by id and later
ones as ``other``: recycle workers that serve more sets than that.

States: ``succeeded``, ``failed``, ``cancelled`` (revoked, or skipped because the set was
cancelled: the only sub-jobs a worker ignores), ``retried``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.signals import (
    celeryd_init,
    task_postrun,
    task_prerun,
    task_revoked,
    worker_process_shutdown,
    worker_shutdown,
)
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    values,
)
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.metrics_core import Metric

from jobset.errors import ConfigurationError, InvalidInputError
from jobset.protocol import RUN_SUB_JOB_TASK, check_jobset_id
from jobset.settings import ENV_MULTIPROC_DIR, MetricsSettings

from .lifecycle import runtime

logger = logging.getLogger(__name__)

SET_RUNNING_NAME = "jobset_set_sub_jobs_running"
SET_LAST_ACTIVITY_NAME = "jobset_set_last_activity_timestamp_seconds"

# Only files that prometheus_client writes are removed at start: the directory is the
# operator's to choose, and may hold other things.
_METRIC_FILE = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_\d+\.db$")
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

_SUB_JOB_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)

_STATES = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "cancelled",
    "IGNORED": "cancelled",  # the task ignores only sub-jobs whose set was cancelled
    "RETRY": "retried",
}


# Every metric has labels, so its values are made at .labels() time, after the worker
# switched prometheus_client to multiprocess mode.  registry=None: the worker exports the
# files, not these objects (and Flower, which imports the app too, never shows them).
WORKER_SUB_JOBS = Counter(
    "jobset_worker_sub_jobs",
    "Sub-jobs this worker finished, by state",
    ["worker", "state"],
    registry=None,
)
WORKER_EXPERIMENTS = Counter(
    "jobset_worker_experiments", "Experiments this worker completed", ["worker"], registry=None
)
WORKER_SHOTS = Counter(
    "jobset_worker_shots", "Shots this worker completed", ["worker"], registry=None
)
WORKER_SUB_JOB_SECONDS = Histogram(
    "jobset_worker_sub_job_seconds",
    "Wall time of one sub-job on this worker (load, simulate, store)",
    ["worker"],
    buckets=_SUB_JOB_BUCKETS_S,
    registry=None,
)
WORKER_RUNNING = Gauge(
    "jobset_worker_sub_jobs_running",
    "Sub-jobs running on this worker now",
    ["worker"],
    multiprocess_mode="livesum",
    registry=None,
)
WORKER_CONCURRENCY = Gauge(
    "jobset_worker_concurrency",
    "Pool processes of this worker",
    ["worker"],
    multiprocess_mode="max",
    registry=None,
)
WORKER_AER_THREADS = Gauge(
    "jobset_worker_aer_threads",
    "Aer OpenMP threads per sub-job on this worker",
    ["worker"],
    multiprocess_mode="max",
    registry=None,
)
SET_SUB_JOBS = Counter(
    "jobset_set_sub_jobs",
    "Sub-jobs of a job set this worker finished, by state",
    ["worker", "jobset", "state"],
    registry=None,
)
SET_EXPERIMENTS = Counter(
    "jobset_set_experiments",
    "Experiments of a job set this worker completed",
    ["worker", "jobset"],
    registry=None,
)
SET_SHOTS = Counter(
    "jobset_set_shots",
    "Shots of a job set this worker completed",
    ["worker", "jobset"],
    registry=None,
)
SET_SECONDS = Counter(
    "jobset_set_simulation_seconds",
    "Wall seconds this worker spent on sub-jobs of a job set",
    ["worker", "jobset"],
    registry=None,
)
SET_RUNNING = Gauge(
    SET_RUNNING_NAME,
    "Sub-jobs of a job set running on this worker now",
    ["worker", "jobset"],
    multiprocess_mode="livesum",
    registry=None,
)
SET_LAST_ACTIVITY = Gauge(
    SET_LAST_ACTIVITY_NAME,
    "When a sub-job of a job set last started or ended on this worker (Unix time)",
    ["worker", "jobset"],
    multiprocess_mode="max",
    registry=None,
)


class _State:
    """Set in the main process before the pool forks, so every child inherits it."""

    worker = ""
    directory: Path | None = None
    owns_directory = False
    started: dict[str, float] = {}  # task id -> monotonic start, in the child running it


_state = _State()


def prepare_directory(path: str | os.PathLike[str] | None) -> Path:
    """Make the multiprocess directory, remove old metric files, switch to multiprocess mode.

    prometheus_client chooses its mode when it is imported, from ``PROMETHEUS_MULTIPROC_DIR``;
    the ``celery`` command may import it before this worker's app is loaded (Flower's
    plugin does), so the mode is switched here too, before any value exists.
    """
    if path is None:
        directory = Path(tempfile.mkdtemp(prefix="jobset-metrics-"))
        _state.owns_directory = True
    else:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        remove_metric_files(directory)
    os.environ[ENV_MULTIPROC_DIR] = str(directory)
    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.MultiProcessValue()
    _state.directory = directory
    return directory


def remove_metric_files(directory: Path) -> None:
    """Remove the files prometheus_client wrote there, and nothing else."""
    for entry in directory.iterdir():
        if _METRIC_FILE.match(entry.name):
            entry.unlink(missing_ok=True)


def mark_dead_processes(directory: Path) -> None:
    """Drop the live gauges of pool children that died without saying so (SIGKILL)."""
    for entry in directory.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            prom_multiprocess.mark_process_dead(pid, str(directory))
        except PermissionError:  # alive, someone else's
            continue


def drop_expired_sets(families: Iterable[Metric], cutoff: float) -> Iterator[Metric]:
    """The families without the per-set samples of sets idle since before ``cutoff``.

    A set is kept while a sub-job of it runs, or while its last activity is at or after
    ``cutoff`` (Unix time).
    """
    families = list(families)
    last: dict[str, float] = {}
    running: dict[str, float] = {}
    for family in families:
        if family.name == SET_LAST_ACTIVITY_NAME:
            for s in family.samples:
                last[s.labels["jobset"]] = max(last.get(s.labels["jobset"], 0.0), s.value)
        elif family.name == SET_RUNNING_NAME:
            for s in family.samples:
                running[s.labels["jobset"]] = running.get(s.labels["jobset"], 0.0) + s.value
    live = {j for j, t in last.items() if t >= cutoff} | {j for j, n in running.items() if n > 0}
    for family in families:
        if not any("jobset" in s.labels for s in family.samples):
            yield family
            continue
        kept = Metric(family.name, family.documentation, family.type, family.unit)
        kept.samples = [s for s in family.samples if s.labels.get("jobset") in live]
        if kept.samples:
            yield kept


class SetExpiringCollector:
    """Sums the worker's metric files; drops the series of sets idle past their TTL."""

    def __init__(self, directory: Path, set_ttl_s: float) -> None:
        self.directory = directory
        self.set_ttl_s = set_ttl_s
        self._files = prom_multiprocess.MultiProcessCollector(None, str(directory))

    def collect(self) -> Iterator[Metric]:
        mark_dead_processes(self.directory)
        return drop_expired_sets(self._files.collect(), time.time() - self.set_ttl_s)


@celeryd_init.connect
def _prepare(sender: str, conf: Any, **kwargs: Any) -> None:
    settings: MetricsSettings | None = conf.get("jobset_metrics")
    if settings is None or settings.port is None:
        return
    _state.worker = sender
    prepare_directory(settings.multiproc_dir)


# The label of sub-jobs whose message names no valid set: an attacker who can write to
# Redis must not be able to mint one label per message.
INVALID_SET_LABEL = "invalid"
# A process labels at most this many sets by their id (each costs its metric files about
# a kilobyte until the worker restarts); later ones share OTHER_SETS_LABEL.  A valid but
# invented set id per message then adds nothing past the cap.
MAX_SET_LABELS = 10_000
OTHER_SETS_LABEL = "other"
_labelled: set[str] = set()


def set_label(kwargs: Any) -> str:
    """The set id label of a message: its set id if that is a canonical UUID and this
    process has labelled fewer than ``MAX_SET_LABELS`` other sets."""
    raw = kwargs.get("jobset_id") if isinstance(kwargs, dict) else None
    try:
        jobset_id = check_jobset_id(raw)
    except InvalidInputError:
        return INVALID_SET_LABEL
    if jobset_id not in _labelled:
        if len(_labelled) >= MAX_SET_LABELS:
            return OTHER_SETS_LABEL
        _labelled.add(jobset_id)
        if len(_labelled) == MAX_SET_LABELS:
            logger.warning(
                "%d job sets labelled in this process: later sets share the label %r",
                MAX_SET_LABELS,
                OTHER_SETS_LABEL,
            )
    return jobset_id


@task_prerun.connect
def _on_prerun(task_id: str, task: Any, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    if _state.directory is None or task.name != RUN_SUB_JOB_TASK:
        return
    jobset_id = set_label(kwargs)
    _state.started[task_id] = time.monotonic()
    WORKER_RUNNING.labels(_state.worker).inc()
    SET_RUNNING.labels(_state.worker, jobset_id).inc()
    SET_LAST_ACTIVITY.labels(_state.worker, jobset_id).set(time.time())


@task_postrun.connect
def _on_postrun(
    task_id: str,
    task: Any,
    kwargs: dict[str, Any] | None = None,
    retval: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    if _state.directory is None or task.name != RUN_SUB_JOB_TASK:
        return
    worker, jobset_id = _state.worker, set_label(kwargs)
    started = _state.started.pop(task_id, None)
    if started is not None:
        WORKER_RUNNING.labels(worker).dec()
        SET_RUNNING.labels(worker, jobset_id).dec()
        seconds = time.monotonic() - started
        WORKER_SUB_JOB_SECONDS.labels(worker).observe(seconds)
        SET_SECONDS.labels(worker, jobset_id).inc(seconds)
    _count(jobset_id, _STATES.get(state or "", (state or "unknown").lower()))
    if state == "SUCCESS" and isinstance(retval, dict):
        experiments = int(retval.get("experiments", 0))
        shots = int(retval.get("shots", 0))
        WORKER_EXPERIMENTS.labels(worker).inc(experiments)
        WORKER_SHOTS.labels(worker).inc(shots)
        SET_EXPERIMENTS.labels(worker, jobset_id).inc(experiments)
        SET_SHOTS.labels(worker, jobset_id).inc(shots)


@task_revoked.connect
def _on_revoked(request: Any = None, **_: Any) -> None:
    """In the main process: a sub-job dropped on arrival, or killed while it ran."""
    if _state.directory is None or getattr(request, "task", None) != RUN_SUB_JOB_TASK:
        return
    _count(set_label(getattr(request, "kwargs", None)), "cancelled")


def _count(jobset_id: str, state: str) -> None:
    WORKER_SUB_JOBS.labels(_state.worker, state).inc()
    SET_SUB_JOBS.labels(_state.worker, jobset_id, state).inc()
    SET_LAST_ACTIVITY.labels(_state.worker, jobset_id).set(time.time())


@worker_process_shutdown.connect
def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    if _state.directory is not None:
        prom_multiprocess.mark_process_dead(pid or os.getpid(), str(_state.directory))


class MetricsServer(bootsteps.StartStopStep):
    """Serve the worker's metrics over HTTP from the main process (``JOBSET_METRICS_PORT``)."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.server: Any = None

    def start(self, worker: Any) -> None:
        settings: MetricsSettings | None = worker.app.conf.get("jobset_metrics")
        if settings is None or settings.port is None or _state.directory is None:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SetExpiringCollector(_state.directory, settings.set_ttl_s))
        try:
            self.server, _thread = start_http_server(
                settings.port, addr=settings.addr, registry=registry
            )
        except OSError as e:
            raise ConfigurationError(
                f"cannot serve metrics on {settings.addr}:{settings.port}: {e}"
            ) from e
        WORKER_CONCURRENCY.labels(_state.worker).set(int(worker.concurrency or 1))
        WORKER_AER_THREADS.labels(_state.worker).set(runtime.aer_threads)
        logger.info(
            "jobset worker %s: metrics on http://%s:%d/metrics (files in %s)",
            _state.worker,
            settings.addr,
            settings.port,
            _state.directory,
        )

    def stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@worker_shutdown.connect
def _remove_own_directory(**_: Any) -> None:
    """After the pool is gone: remove the directory if the worker made it for itself."""
    if _state.owns_directory and _state.directory is not None:
        shutil.rmtree(_state.directory, ignore_errors=True)
