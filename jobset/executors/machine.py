"""What this machine (or its container) gives a process: cores and memory, cgroups included."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path


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
