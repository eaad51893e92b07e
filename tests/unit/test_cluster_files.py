"""scripts/cluster's folder and secret files: owner-only, never written through a link."""

from __future__ import annotations

import os
import stat

from jobset.local.state import private_dir
from jobset.local.state import write_private as _write_private


def test_the_cluster_folder_and_its_parts_are_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        directory = private_dir(tmp_path / "new" / "cluster")
        parts = [private_dir(directory / sub) for sub in ("logs", "redis")]  # as the command does
    finally:
        os.umask(old)
    for path in (directory, *parts):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_a_secret_file_is_written_owner_only_and_never_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    target = tmp_path / "jobset.env"
    # The name the old writer used for its temporary file, planted as a link.
    (tmp_path / "jobset.env.tmp").symlink_to(victim)
    _write_private(target, "JOBSET_SECRET_KEY=k\n")
    assert victim.read_text() == "untouched"
    assert target.read_text() == "JOBSET_SECRET_KEY=k\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    _write_private(target, "second\n")  # replaces at once
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobset.env", "jobset.env.tmp", "victim"]
