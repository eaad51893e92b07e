"""Pictures of a job set: the timeline of its sub-jobs per worker, and a 2-D sweep.

Needs matplotlib (the ``plot`` extra).  Figures are built with ``matplotlib.figure.Figure``
and saved through the Agg canvas: no pyplot, no display, no global state, so it works on a
server and in threads.  Everything drawn comes from :class:`~jobset.observe.timeline.Timeline`,
which validated what it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .timeline import Timeline

# Okabe-Ito, as the notebook view.
RUN_COLOURS = {"SUCCESS": "#009E73", "FAILURE": "#D55E00", "REVOKED": "#E69F00", "RETRY": "#999999"}
STATE_COLOURS = {
    "queued": "#BBBBBB",
    "running": "#0072B2",
    "done": "#009E73",
    "failed": "#D55E00",
}


def timeline_figure(timeline: Timeline, *, sub_jobs: int, title: str | None = None) -> Figure:
    """Two panels over one time axis (seconds since submit): each worker's runs as bars
    (colour: how the run ended; a sub-job that ran twice shows twice), and how many sub-jobs
    were queued, running and done; the merge is a dashed line on both."""
    runs = sorted(timeline.runs, key=lambda r: r.started_at)
    t0 = timeline.created_at
    if t0 is None:
        t0 = runs[0].started_at if runs else 0.0
    workers = timeline.workers
    lane = {w: i for i, w in enumerate(workers)}
    fig = Figure(figsize=(10, 2.2 + 0.45 * max(1, len(workers)) + 2.2), layout="constrained")
    top, bottom = fig.subplots(
        2, 1, sharex=True, height_ratios=[max(1.0, 0.45 * len(workers)), 2.0]
    )
    span = max([r.ended_at - t0 for r in runs] + [1e-3])
    for run in runs:
        start, width = run.started_at - t0, run.ended_at - run.started_at
        top.barh(
            lane[run.worker],
            max(width, span / 1000),
            left=start,
            height=0.7,
            color=RUN_COLOURS.get(run.state, "#777777"),
            edgecolor="white",
            linewidth=0.5,
        )
        if width > span / 25:
            top.text(
                start + width / 2,
                lane[run.worker],
                str(run.index),
                ha="center",
                va="center",
                fontsize=7,
                color="white",
            )
    top.set_yticks(range(len(workers)), [_short(w) for w in workers], fontsize=8)
    top.invert_yaxis()
    top.set_ylabel("worker")
    seen = sorted({r.state for r in runs}, key=list(RUN_COLOURS).index)
    top.legend(
        handles=[Patch(color=RUN_COLOURS[s], label=s.lower()) for s in seen],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
    )
    times, queued, running, done, failed = state_counts(timeline, t0, sub_jobs)
    layers = [("done", done), ("failed", failed), ("running", running), ("queued", queued)]
    shown = [(name, values) for name, values in layers if name != "failed" or values.any()]
    bottom.stackplot(
        times,
        *(values for _, values in shown),
        labels=[name for name, _ in shown],
        colors=[STATE_COLOURS[name] for name, _ in shown],
        step="post",
    )
    bottom.set_ylim(0, max(1, sub_jobs))
    bottom.set_ylabel("sub-jobs")
    bottom.set_xlabel("seconds since submit")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    for axes in (top, bottom):
        axes.axvline(0, color="black", linewidth=0.8)
        if timeline.merged_at is not None:
            axes.axvline(timeline.merged_at - t0, color="black", linestyle="--", linewidth=1)
    if timeline.merged_at is not None:
        top.annotate(
            "merged",
            (timeline.merged_at - t0, 0),
            xycoords=("data", "axes fraction"),
            xytext=(3, 3),
            textcoords="offset points",
            fontsize=8,
        )
    fig.suptitle(
        title or f"job set {timeline.jobset_id}: {len(runs)} run(s) on {len(workers)} worker(s)",
        fontsize=10,
    )
    return fig


def _short(name: str, chars: int = 28) -> str:
    return name if len(name) <= chars else name[: chars - 1] + "\u2026"


def state_counts(
    timeline: Timeline, t0: float, sub_jobs: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Queued, running, done and failed sub-jobs over time: a sub-job runs from its first
    start to its last end, and ends as its last run did; one never seen running stays
    queued."""
    first: dict[int, float] = {}
    last: dict[int, tuple[float, str]] = {}
    for run in timeline.runs:
        first[run.index] = min(first.get(run.index, run.started_at), run.started_at)
        if run.index not in last or run.ended_at >= last[run.index][0]:
            last[run.index] = (run.ended_at, run.state)
    end = max([*(e for e, _ in last.values()), timeline.merged_at or t0, t0]) - t0
    times = np.unique(
        np.array([0.0, *(v - t0 for v in first.values()), *(e - t0 for e, _ in last.values()), end])
    )
    starts = np.sort(np.array(list(first.values())) - t0)
    ends_ok = np.sort(np.array([e for e, state in last.values() if state == "SUCCESS"]) - t0)
    ends_bad = np.sort(np.array([e for e, state in last.values() if state != "SUCCESS"]) - t0)
    started = np.searchsorted(starts, times, side="right")
    done = np.searchsorted(ends_ok, times, side="right")
    failed = np.searchsorted(ends_bad, times, side="right")
    return times, sub_jobs - started, started - done - failed, done, failed


def landscape_figure(
    values: Any,
    x: Sequence[float],
    y: Sequence[float],
    *,
    title: str,
    label: str,
    xlabel: str = "a",
    ylabel: str = "b",
) -> Figure:
    """A 2-D sweep as a heat map: ``values[i, j]`` at ``(x[j], y[i])`` (NaN: not run)."""
    data = np.ma.masked_invalid(np.asarray(values, dtype=float))
    fig = Figure(figsize=(6, 5), layout="constrained")
    axes = fig.subplots()
    mesh = axes.pcolormesh(x, y, data, shading="nearest", cmap="viridis")
    fig.colorbar(mesh, ax=axes, label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.set_aspect("equal")
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (through Agg); returns the path."""
    out = Path(path)
    fig.savefig(out, dpi=120, format="png")
    return out
