"""How a job set shows itself: HTML for Jupyter (``_repr_html_``) and one line of text.

Pure: a :class:`SetView` is a snapshot a job set takes of itself (one tally read, the
failures only when there are some), and the functions here turn snapshots into markup.
Everything that comes from data (ids, tags, backend names, a worker's error message) is
escaped: a set's record and its failures are input from whoever can write to Redis.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# Order and colours of the progress bar's segments (colour-blind safe: Okabe-Ito).
STATES = ("DONE", "RUNNING", "QUEUED", "ERROR", "CANCELLED")
COLOURS = {
    "DONE": "#009E73",
    "RUNNING": "#0072B2",
    "QUEUED": "#BBBBBB",
    "ERROR": "#D55E00",
    "CANCELLED": "#E69F00",
    "INITIALIZING": "#DDDDDD",
}
# Failures listed in the view; the rest are counted ("and 12 more").
SHOWN_FAILURES = 5
# A worker's message is cut here in the view (the full text stays on ``.failures``).
MESSAGE_CHARS = 300


@dataclass(frozen=True)
class FailureLine:
    """One failed or cancelled sub-job, as the view lists it."""

    index: int
    task_id: str
    status: str
    message: str


@dataclass(frozen=True)
class SetView:
    """A job set at one moment, as its views show it."""

    job_id: str
    status: str
    counts: Mapping[str, int]
    sub_jobs: int
    experiments: int
    created_at: float | None = None  # Unix time
    elapsed_s: float | None = None
    backend_name: str = ""
    tags: tuple[str, ...] = ()
    failures: tuple[FailureLine, ...] = ()
    failed: int = 0  # how many failed in all (failures lists the first few)
    kind: str = "AerJobSet"


@dataclass(frozen=True)
class ListingRow:
    """One line of a listing of sets."""

    job_id: str
    created_at: float
    status: str
    sub_jobs: int
    experiments: int
    backend_name: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def when(unix_s: float | None) -> str:
    """A Unix time as a date a person reads (UTC), or an empty string."""
    if unix_s is None:
        return ""
    try:
        return datetime.fromtimestamp(unix_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "?"


def duration(seconds: float | None) -> str:
    """``4.2 s``, ``3 min 05 s``, ``2 h 01 min``."""
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def text_line(view: SetView) -> str:
    """One line: id, status, sub-jobs per state, elapsed time."""
    parts = "  ".join(f"{name} {view.counts.get(name, 0)}" for name in STATES)
    tail = f"  {duration(view.elapsed_s)}" if view.elapsed_s is not None else ""
    return f"{view.kind} {view.job_id}: {view.status}  {parts}  of {view.sub_jobs}{tail}"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def progress_bar(counts: Mapping[str, int], total: int, *, width_px: int = 320) -> str:
    """A bar of ``total`` sub-jobs, one coloured segment per state, with a legend."""
    total = max(total, sum(counts.values()), 1)
    segments = []
    for name in STATES:
        n = max(0, int(counts.get(name, 0)))
        if n:
            pct = 100.0 * n / total
            segments.append(
                f'<div title="{_e(name)}: {n}" style="width:{pct:.3f}%;'
                f'background:{COLOURS[name]};height:100%"></div>'
            )
    legend = " ".join(
        f'<span style="color:{COLOURS[name]}">&#9632;</span> {_e(name.lower())} '
        f"{int(counts.get(name, 0))}"
        for name in STATES
        if counts.get(name, 0)
    )
    return (
        f'<div class="jobset-progress" style="display:flex;width:{width_px}px;height:12px;'
        f'background:#eee;border-radius:3px;overflow:hidden">{"".join(segments)}</div>'
        f'<div style="font-size:0.85em">{legend}</div>'
    )


def _badge(status: str) -> str:
    colour = COLOURS.get(status, "#777")
    return (
        f'<span class="jobset-status" style="background:{colour};color:white;padding:0 6px;'
        f'border-radius:3px">{_e(status)}</span>'
    )


def set_html(view: SetView) -> str:
    """The job set as an HTML block: header, progress bar, facts, failures."""
    rows = [
        ("sub-jobs", f"{view.sub_jobs} ({view.experiments} experiments)"),
        ("backend", view.backend_name),
        ("created", when(view.created_at)),
        ("elapsed", duration(view.elapsed_s)),
        ("tags", ", ".join(view.tags)),
    ]
    facts = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{_e(k)}</th><td>{_e(v)}</td></tr>'
        for k, v in rows
        if v
    )
    failures = ""
    if view.failures:
        items = "".join(
            f"<li>sub-job {f.index} (<code>{_e(f.task_id)}</code>) {_e(f.status)}: "
            f"{_e(_cut(f.message))}</li>"
            for f in view.failures
        )
        more = view.failed - len(view.failures)
        extra = f"<li>and {more} more (see <code>.failures</code>)</li>" if more > 0 else ""
        failures = (
            f'<details open class="jobset-failures"><summary>{view.failed} failed or cancelled'
            f"</summary><ul>{items}{extra}</ul></details>"
        )
    return (
        f'<div class="jobset-view" data-jobset-id="{_e(view.job_id)}">'
        f"<div><b>{_e(view.kind)}</b> <code>{_e(view.job_id)}</code> {_badge(view.status)}"
        f"</div>{progress_bar(view.counts, view.sub_jobs)}"
        f'<table style="font-size:0.9em">{facts}</table>{failures}</div>'
    )


def _cut(message: str) -> str:
    return message if len(message) <= MESSAGE_CHARS else message[: MESSAGE_CHARS - 3] + "..."


def listing_html(rows: Sequence[ListingRow]) -> str:
    """A table of sets: id, created (a date), status, sub-jobs, experiments, tags."""
    if not rows:
        return "<p>no job sets</p>"
    head = "".join(
        f'<th style="text-align:left">{h}</th>'
        for h in ("id", "created", "status", "sub-jobs", "experiments", "backend", "tags")
    )
    body = "".join(
        f"<tr><td><code>{_e(r.job_id)}</code></td><td>{_e(when(r.created_at))}</td>"
        f"<td>{_badge(r.status)}</td><td>{r.sub_jobs}</td><td>{r.experiments}</td>"
        f"<td>{_e(r.backend_name)}</td><td>{_e(', '.join(r.tags))}</td></tr>"
        for r in rows
    )
    return f'<table class="jobset-listing"><tr>{head}</tr>{body}</table>'


def listing_text(rows: Iterable[ListingRow]) -> str:
    """The listing as aligned text (what ``repr`` of a listing shows)."""
    lines = [f"{'ID':36}  {'CREATED (UTC)':23}  {'STATUS':9}  SUB-JOBS  EXPERIMENTS  TAGS"]
    for r in rows:
        lines.append(
            f"{r.job_id:36}  {when(r.created_at):23}  {r.status:9}  "
            f"{r.sub_jobs:8}  {r.experiments:11}  {','.join(r.tags)}"
        )
    return "\n".join(lines)


def failure_lines(failures: Iterable[Any]) -> tuple[FailureLine, ...]:
    """:class:`FailureLine` of ``SubJobFailure`` objects."""
    return tuple(
        FailureLine(int(f.index), str(f.task_id), str(f.status), str(f.message)) for f in failures
    )
