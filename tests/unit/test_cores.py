"""A worker counts the CPUs its container may use, not the host's cores."""

from __future__ import annotations

import os
from pathlib import Path

from jobset.executors.machine import available_cores, cgroup_cpu_quota


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_cgroup_v2_cpu_max_quota_is_read_in_cpus(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota("0::/\n", tmp_path) == 1.5


def test_no_quota_in_cpu_max_means_no_limit(tmp_path: Path) -> None:
    _write(tmp_path / "system.slice" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota("0::/system.slice\n", tmp_path) is None


def test_the_tightest_quota_along_the_cgroup_path_wins(tmp_path: Path) -> None:
    _write(tmp_path / "pods" / "cpu.max", "200000 100000\n")
    _write(tmp_path / "pods" / "job" / "cpu.max", "400000 100000\n")
    assert cgroup_cpu_quota("0::/pods/job\n", tmp_path) == 2.0


def test_a_cgroup_v1_quota_is_found_at_the_mount_when_the_named_path_is_the_hosts(
    tmp_path: Path,
) -> None:
    # Inside a container without a cgroup namespace /proc/self/cgroup names the host's path,
    # and the container's own cgroup is mounted at the root of the hierarchy.
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "300000\n")
    _write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    text = "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n"
    assert cgroup_cpu_quota(text, tmp_path) == 3.0


def test_a_cgroup_v1_quota_of_minus_one_means_no_limit(tmp_path: Path) -> None:
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota("2:cpu:/\n", tmp_path) is None


def test_missing_or_unreadable_cgroup_files_mean_no_limit(tmp_path: Path) -> None:
    _write(tmp_path / "cpu.max", "garbage\n")
    assert cgroup_cpu_quota("0::/\n", tmp_path) is None
    assert cgroup_cpu_quota("", tmp_path / "absent") is None


def test_available_cores_is_at_least_one_and_at_most_the_affinity() -> None:
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))
