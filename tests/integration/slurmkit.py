"""A real single-node Slurm for tests: ``munged``, ``slurmctld`` and ``slurmd`` on this host.

Everything lives in a temporary folder: the munge key and socket, the Slurm config, state
and spool folders, pid and log files; the daemons listen on private ports.  They run as
root (``SlurmUser=root``) with process tracking and task plugins that need no cgroups
(``proctrack/linuxproc``, ``task/none``), which is what a container or a shared VM allows.
They are stopped by pid.  Debian's ``slurm-wlm`` and ``munge`` packages provide the
binaries; ``scripts/test`` installs them where it can (root with apt).

Client commands (``sbatch``, ``squeue``, ``scancel``) find this cluster through
:meth:`SlurmCluster.env` (``SLURM_CONF``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobset.local.processes import free_port

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
PARTITION = "jobset"


def require_slurm() -> None:
    """Skip (fail under ``CI=true``) where Slurm or munge is not installed or not root."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    reason = None
    if missing:
        reason = f"Slurm is not installed (missing {', '.join(missing)}; scripts/test installs it)"
    elif os.geteuid() != 0:
        reason = "the test Slurm runs its daemons as root"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


class SlurmCluster:
    """One node, one partition (``jobset``), all of this machine's CPUs."""

    def __init__(self, *, cpus: int | None = None, kill_wait_s: int = 5) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="jobset-slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.kill_wait_s = kill_wait_s
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"

    # -- configuration --------------------------------------------------------------------
    def _write_config(self) -> None:
        for folder in ("munge", "state", "spool", "log", "jobs"):
            (self.root / folder).mkdir(mode=0o700)
        memory_mb = max(256, _memory_mb() - 1024)
        ctld_port, d_port = free_port(), free_port()
        lines = {
            "ClusterName": "jobsettest",
            "SlurmctldHost": self.host,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": d_port,
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "log" / "slurmctld.log",
            "SlurmdLogFile": self.root / "log" / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core_Memory",
            "SchedulerType": "sched/backfill",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/none",
            "MpiDefault": "none",
            "ReturnToService": 2,
            "KillWait": self.kill_wait_s,
            "MinJobAge": 30,
            "SlurmctldTimeout": 30,
            "SlurmdTimeout": 30,
            "InactiveLimit": 0,
            "SchedulerParameters": "sched_interval=1",
            "SlurmdDebug": "info",
            "SlurmctldDebug": "info",
        }
        text = "".join(f"{k}={v}\n" for k, v in lines.items())
        text += (
            f"NodeName={self.host} CPUs={self.cpus} RealMemory={memory_mb} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE "
            "State=UP\n"
        )
        self.conf.write_text(text)

    def env(self) -> dict[str, str]:
        """The environment client commands need to reach this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 (kept with the process)
        self.processes[name] = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
        )
        log.close()

    def start(self) -> SlurmCluster:
        self._write_config()
        key = self.root / "munge" / "munge.key"
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), "munged's socket")
        # -D: stay in the foreground, so the pid is ours; -i: ignore stale state; -c: fresh.
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-c", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf)])
        self._wait(self._node_idle, "the node to be idle")
        return self

    def _wait(self, ready: object, what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        pause = 0.05
        while not ready():  # type: ignore[operator]
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waiting for {what}: {self.log_tail('slurmctld')}")
            time.sleep(pause)
            pause = min(0.5, pause * 1.5)

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return out.strip() in {"idle", "mix", "alloc"}

    def log_tail(self, name: str, lines: int = 20) -> str:
        for path in (self.root / "log" / f"{name}.log", self.root / "log" / f"{name}.out"):
            if path.exists():
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def run(self, *args: str, check: bool = True) -> str:
        """A Slurm client command against this cluster; its standard output."""
        done = subprocess.run(
            list(args), env=self.env(), capture_output=True, text=True, timeout=30
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> dict[str, str]:
        """Job id -> state of every job Slurm still lists."""
        out = self.run("squeue", "-h", "-o", "%i %T", check=False)
        return dict(line.split() for line in out.splitlines() if line.strip())

    def _running_jobs(self) -> bool:
        try:
            return any(s in {"RUNNING", "COMPLETING", "PENDING"} for s in self.jobs().values())
        except (OSError, subprocess.SubprocessError):
            return False

    def stop(self) -> None:
        """Cancel every job, then stop the daemons by pid (slurmd, slurmctld, munged)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--partition", PARTITION, check=False)
            deadline = time.monotonic() + 3 * self.kill_wait_s + 10
            while self._running_jobs() and time.monotonic() < deadline:
                time.sleep(0.2)
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def slurm_cluster() -> Iterator[SlurmCluster]:
    """The body of a fixture: a started cluster, stopped afterwards."""
    require_slurm()
    with SlurmCluster() as cluster:
        yield cluster
