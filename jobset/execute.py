"""Run one sub-batch on an Aer simulator: the work a worker (or a local executor) does."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qiskit import QuantumCircuit
from qiskit.result import Result

from .plan import SubBatch

# Options that configure the distribution, not the simulation: they never reach a worker.
DISTRIBUTION_OPTIONS = ("executor", "max_job_size", "max_shot_size")


def portable_backend(backend: Any) -> Any:
    """A copy of ``backend`` without the executor and split options, fit to be pickled.

    An executor does not pickle, and a worker must not split again.  The caller's backend
    is left untouched.
    """
    clone = copy.copy(backend)
    options = copy.copy(backend.options)
    clone._options = options
    present = {name: None for name in DISTRIBUTION_OPTIONS if name in dict(options.items())}
    if present:
        options.update_options(**present)
    return clone


def available_cores() -> int:
    """CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota.

    A container started with ``cpus: 2`` (compose) or ``--cpus 2`` sees every core of the
    host in its affinity mask; only the cgroup quota says it may use two.  Counting the
    host's cores there would give each task far more Aer threads than the container has.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return cores


def cgroup_cpu_quota(
    proc_cgroup: str | None = None, root: str | os.PathLike[str] = "/sys/fs/cgroup"
) -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup or its ancestors; None if unlimited.

    Reads cgroup v2 ``cpu.max`` and cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
    along the path that ``/proc/self/cgroup`` names, up to ``root`` (inside a container the
    named path may not exist; the container's own cgroup is then mounted at the root).
    """
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    base = Path(root)
    limits: list[float] = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            limits += _quotas(base, path, _cpu_max)
        elif "cpu" in controllers.split(","):
            for mount in (base / controllers, base / "cpu", base / "cpu,cpuacct"):
                if mount.is_dir():
                    limits += _quotas(mount, path, _cfs_quota)
                    break
    return min(limits) if limits else None


def _quotas(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    directory = mount / path.strip("/")
    found = []
    while True:
        quota = read(directory)
        if quota is not None:
            found.append(quota)
        if directory == mount or mount not in directory.parents:
            return found
        directory = directory.parent


def _cpu_max(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _cfs_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def run_sub_batch(backend: Any, batch: SubBatch, *, threads: int | None = None) -> Result:
    """Run ``batch`` on ``backend`` and return Aer's ``Result``.

    ``threads`` caps Aer's OpenMP threads for this run, so that concurrent runs on one
    machine never ask for more threads than it has cores.
    """
    kwargs = batch.run_kwargs()
    if threads is not None:
        requested = kwargs.get("max_parallel_threads") or backend.options.get(
            "max_parallel_threads", 0
        )
        kwargs["max_parallel_threads"] = min(requested, threads) if requested else threads
    circuits = list(batch.circuits)
    if batch.pad_clbits:
        # Last, so every real experiment keeps its seed; see jobset.plan on pad_clbits.
        circuits.append(QuantumCircuit(1, batch.pad_clbits, name="jobset-pad"))
        if "parameter_binds" in kwargs:
            kwargs["parameter_binds"].append({})
    result = backend.run(circuits, **kwargs).result()
    if batch.pad_clbits:
        result.results = result.results[:-1]
    return result


def local_runner(backend: Any) -> Any:
    """The ``fn`` of a job set on a ``concurrent.futures`` executor: sub-batch -> Result."""
    return _LocalRunner(portable_backend(backend))


class _LocalRunner:
    """Picklable callable, so a ``ProcessPoolExecutor`` can run sub-batches too."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __call__(self, batch: SubBatch) -> Result:
        return run_sub_batch(self.backend, batch)


def machine_memory_bytes(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> int | None:
    """Memory this process may use: physical memory, capped by a cgroup v2/v1 limit."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for name in ("memory.max", "memory/memory.limit_in_bytes", "memory.limit_in_bytes"):
        try:
            raw = (Path(root) / name).read_text().strip()
        except OSError:
            continue
        if raw.isdigit():
            total = min(total, int(raw))
    return int(total)
