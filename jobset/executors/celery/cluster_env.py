"""Connecting to a local cluster from its folder, in one line.

``scripts/cluster`` writes the variables its producers need to ``<folder>/jobset.env``
while it runs.  :func:`cluster_settings` reads them back as :class:`Settings`, so a
notebook says ``CeleryExecutor.from_cluster(".local-cluster")`` instead of parsing the
file into ``os.environ`` by hand (and, having forgotten to, silently targeting the
conventional ``redis://localhost:6379/0``, which on a shared machine is someone else's).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import ConfigurationError
from ...settings import Settings

DEFAULT_CLUSTER_DIR = ".local-cluster"
ENV_FILE = "jobset.env"


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``NAME=value`` lines of a file like ``jobset.env``; comments and blanks skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ConfigurationError(f"{path}:{number}: expected NAME=value")
        values[name.strip()] = value.strip()
    return values


def cluster_settings(directory: str | os.PathLike[str] = DEFAULT_CLUSTER_DIR) -> Settings:
    """The settings of the local cluster that serves ``directory``.

    Raises :class:`ConfigurationError` when no cluster runs there (it writes the file once
    ready and removes it when it stops).
    """
    folder = Path(directory).expanduser()
    path = folder / ENV_FILE
    if not path.is_file():
        raise ConfigurationError(
            f"no local cluster is running in {folder} (no {ENV_FILE} there): start one with "
            f"`jobset-cluster start --detach --dir {folder}` (scripts/cluster in a checkout)"
        )
    return Settings.from_env(read_env_file(path))
