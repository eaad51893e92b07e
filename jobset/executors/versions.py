"""Pure: which versions a producer and a worker must share for a sub-job to run the same.

A worker publishes its versions in its heartbeat and every sub-job message carries the
producer's.  The rule, strictest where results depend on it:

- ``qiskit-aer``: the same release.  Its simulators, seeding and noise sampling give the
  counts; a patch release may change them, and a seeded set must be reproducible.
- ``qiskit``: the same major.minor.  Circuits and results travel as pickles of qiskit
  objects, whose layout changes between minor releases.
- ``qiskit-aer-jobset``: the same major.minor (this project's wire format and merge).

A missing entry on either side is not compared: an old message without versions runs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import metadata

PACKAGES = ("qiskit", "qiskit-aer", "qiskit-aer-jobset")
_EXACT = frozenset({"qiskit-aer"})


def runtime_versions() -> dict[str, str]:
    """The installed versions of :data:`PACKAGES` in this process."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def producer_versions() -> tuple[tuple[str, str], ...]:
    """This process's :func:`runtime_versions`, sorted: what its sub-job messages carry."""
    return tuple(sorted(runtime_versions().items()))


def _release(version: str, parts: int) -> tuple[str, ...]:
    return tuple(version.split("+", 1)[0].split(".")[:parts])


def version_mismatch(producer: Mapping[str, str], worker: Mapping[str, str]) -> str | None:
    """Why a worker with ``worker`` versions must not run ``producer``'s sub-jobs; None: it may."""
    problems = []
    for name in PACKAGES:
        want, have = producer.get(name), worker.get(name)
        if want is None or have is None:
            continue
        parts = 3 if name in _EXACT else 2
        if _release(want, parts) != _release(have, parts):
            problems.append(f"{name} {want} on the producer, {have} on the worker")
    if not problems:
        return None
    return "; ".join(problems)
