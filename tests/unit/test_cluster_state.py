"""The local cluster's folder: private files, a kept identity, a pid file that is verified."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobset import CeleryExecutor
from jobset.deadline import wait_for
from jobset.errors import ConfigurationError
from jobset.local import command
from jobset.local.state import (
    IDENTITY_FILE,
    PID_FILE,
    load_identity,
    private_dir,
    process_signature,
    read_private,
    running_pid,
    write_pid_file,
    write_private,
)


def test_the_identity_is_made_once_private_and_read_back_unchanged(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "c")
    first, made = load_identity(folder, new_port=40001)
    again, made_again = load_identity(folder, new_port=40002)
    assert made and not made_again and again == first and again.redis_port == 40001
    assert oct((folder / IDENTITY_FILE).stat().st_mode & 0o777) == "0o600"
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_an_identity_file_others_can_read_or_a_symlink_is_refused(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "c")
    load_identity(folder, new_port=40001)
    (folder / IDENTITY_FILE).chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable or writable by others"):
        load_identity(folder, new_port=40001)
    (folder / IDENTITY_FILE).unlink()
    elsewhere = tmp_path / "planted.json"
    write_private(elsewhere, "{}")
    (folder / IDENTITY_FILE).symlink_to(elsewhere)
    with pytest.raises(ConfigurationError, match="cannot be read safely"):
        read_private(folder / IDENTITY_FILE)


def test_writing_a_private_file_replaces_a_planted_symlink_instead_of_following_it(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    link = tmp_path / "jobset.env"
    link.symlink_to(victim)
    write_private(link, "secret\n")
    assert victim.read_text() == "untouched"
    assert not link.is_symlink() and link.read_text() == "secret\n"


def test_a_pid_file_naming_another_process_is_never_taken_for_the_cluster(
    tmp_path: Path,
) -> None:
    folder = private_dir(tmp_path / "c")
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        # The pid of a live process of ours, but not the cluster command.
        write_pid_file(folder, stranger.pid)
        assert running_pid(folder) is None
        # The cluster command's signature, but a pid that now names another process.
        forged = {"pid": stranger.pid, "signature": "1 python -m jobset.local.command"}
        write_private(folder / PID_FILE, json.dumps(forged))
        assert running_pid(folder) is None
        assert command.main(["stop", "--dir", str(folder)]) == 0
        assert command.main(["status", "--dir", str(folder)]) == command.NOT_RUNNING
        assert stranger.poll() is None and process_signature(stranger.pid) is not None
    finally:
        stranger.kill()
        stranger.wait()


def test_the_pid_file_of_this_very_command_is_recognised(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "c")
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "jobset.local.command"]
    )
    try:
        # Its command line is the parent's until the child has exec'd: wait for its own.
        wait_for(
            lambda: "jobset.local.command" in (process_signature(child.pid) or ""),
            60,
            "the child to run its command",
        )
        write_pid_file(folder, child.pid)
        assert running_pid(folder) == child.pid
    finally:
        child.kill()
        child.wait()
    assert running_pid(folder) is None  # gone: a stale file reads as not running
    assert os.path.exists(folder / PID_FILE)


def test_connecting_to_a_cluster_reads_its_env_file_and_says_when_none_runs(
    tmp_path: Path,
) -> None:
    folder = private_dir(tmp_path / "c")
    with pytest.raises(ConfigurationError, match=r"no local cluster is running .*--detach"):
        CeleryExecutor.from_cluster(folder)
    key = "ab" * 32
    write_private(
        folder / "jobset.env",
        f"# a comment\nJOBSET_BROKER_URL=redis://:pw@127.0.0.1:40001/0\nJOBSET_SECRET_KEY={key}\n",
    )
    executor = CeleryExecutor.from_cluster(folder)
    try:
        assert executor.settings.broker_url == "redis://:pw@127.0.0.1:40001/0"
        assert executor.settings.secret_key == key.encode()
    finally:
        executor.close()
