"""What a set records of its sub-jobs' runs, for pictures: who ran what, when.

Each time a worker finishes running a sub-job (any outcome), it appends one entry to the
set's list ``jobset:{id}:timeline``: the index, the worker's name, the queue, start and end
(Unix times) and Celery's final state.  A redelivered sub-job therefore has one entry per
run that ended.  The producer appends ``{"merged": t}`` when ``result()`` first merges.

Pure: building and reading entries.  Whoever can write to Redis can write this list, and it
is unsigned (it only draws pictures): every entry is validated as it is read, and a bad one
is skipped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

# Entries read at most (a set with more runs is drawn from its first ones).
MAX_ENTRIES = 200_000
# Worker and queue names are cut to this many characters.
NAME_CHARS = 200
STATES = ("SUCCESS", "FAILURE", "REVOKED", "RETRY")


@dataclass(frozen=True)
class Run:
    """One run of one sub-job on one worker."""

    index: int
    worker: str
    queue: str
    started_at: float
    ended_at: float
    state: str


@dataclass(frozen=True)
class Timeline:
    """A set's runs, from its creation to its merge (Unix times)."""

    jobset_id: str
    created_at: float | None
    runs: tuple[Run, ...]
    merged_at: float | None = None

    @property
    def workers(self) -> list[str]:
        """Workers in the order they first started a sub-job."""
        seen: dict[str, float] = {}
        for run in sorted(self.runs, key=lambda r: r.started_at):
            seen.setdefault(run.worker, run.started_at)
        return list(seen)


def run_entry(
    index: int, worker: str, queue: str, started_at: float, ended_at: float, state: str
) -> str:
    return json.dumps(
        {"i": index, "w": worker, "q": queue, "s": started_at, "e": ended_at, "st": state},
        separators=(",", ":"),
    )


def merged_entry(at: float) -> str:
    return json.dumps({"merged": at}, separators=(",", ":"))


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and 0 < value < 1e11 else None


def _name(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return "".join(c for c in value[:NAME_CHARS] if c.isprintable())


def parse(
    jobset_id: str, created_at: float | None, raw: Iterable[object], *, sub_jobs: int
) -> Timeline:
    """The timeline of ``raw`` entries; any that is not well formed is skipped."""
    runs, merged = [], None
    for item in raw:
        try:
            entry = json.loads(item)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if not isinstance(entry, dict):
            continue
        if "merged" in entry:
            at = _time(entry["merged"])
            merged = at if merged is None and at is not None else merged
            continue
        index, worker, queue = entry.get("i"), _name(entry.get("w")), _name(entry.get("q"))
        start, end, state = _time(entry.get("s")), _time(entry.get("e")), entry.get("st")
        if (
            isinstance(index, int)
            and not isinstance(index, bool)
            and 0 <= index < sub_jobs
            and worker is not None
            and queue is not None
            and start is not None
            and end is not None
            and start <= end
            and state in STATES
        ):
            runs.append(Run(index, worker, queue, start, end, str(state)))
    return Timeline(jobset_id, created_at, tuple(runs), merged)
