"""Live progress of a job set: in place in Jupyter, a ``tqdm`` bar elsewhere.

In a Jupyter kernel the set's HTML view is displayed once and replaced on every poll
(``display(..., display_id=True)`` then ``update``): one output that updates in place,
saved with the notebook in its final state, with no widget extension to install.  In a
terminal a ``tqdm`` bar counts finished sub-jobs (rate and ETA); piped, it prints a plain
line now and then instead of redrawing.  IPython is never imported here: a kernel has
already imported it, and a script pays nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from qiskit.providers import JobStatus

from ..plan import Plan
from ..status import FINAL
from .view import STATES, SetView, set_html, text_line


class Watched(Protocol):
    """What a live view reads of a set (an ``AerJobSet`` or a primitive's job)."""

    def job_id(self) -> str: ...

    def status(self) -> JobStatus: ...

    @property
    def plan(self) -> Plan: ...

    def snapshot(self, *, kind: str = ...) -> SetView: ...

    def wait_for_final_state(
        self,
        timeout: float | None = ...,
        wait: float = ...,
        callback: Callable[[str, JobStatus, Any], None] | None = ...,
    ) -> None: ...


# Piped output gets a plain line at most this often (and on every change of state counts
# past that), so a log stays readable.
PLAIN_LINE_EVERY_S = 5.0


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython already imported, its app a kernel)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Html:
    """What ``display`` shows: a snapshot's HTML (and its text line for plain frontends)."""

    def __init__(self, view: SetView) -> None:
        self.view = view

    def _repr_html_(self) -> str:
        return set_html(self.view)

    def __repr__(self) -> str:
        return text_line(self.view)


def finished(counts: dict[str, int]) -> int:
    return sum(counts.get(s.name, 0) for s in FINAL)


# Each end of a sub-job wakes a wait: redraw the view at most this often (and at the end).
NOTEBOOK_REDRAW_S = 0.2


def notebook_updater(kind: str = "AerJobSet") -> Callable[[Watched], None]:
    """A callback that shows the set's view in place, in the cell that runs it."""
    display = sys.modules["IPython"].display.display
    handle: Any = None
    drawn_at = 0.0

    def show(job: Watched) -> None:
        nonlocal handle, drawn_at
        view = job.snapshot(kind=kind)
        now = time.monotonic()
        final = view.status in {s.name for s in FINAL}
        if handle is None:
            handle = display(_Html(view), display_id=True)
        elif final or now - drawn_at >= NOTEBOOK_REDRAW_S:
            handle.update(_Html(view))
        else:
            return
        drawn_at = now

    return show


def terminal_updater(
    total: int, label: str, *, stream: TextIO | None = None, tty: bool | None = None
) -> tuple[Callable[[SetView], None], Callable[[], None]]:
    """A progress bar of ``total`` sub-jobs on a terminal, plain lines when piped.

    Returns ``(update, close)``; ``update`` takes a snapshot of the set.
    """
    out = sys.stderr if stream is None else stream
    if tty is None:
        tty = bool(getattr(out, "isatty", lambda: False)())
    if tty:
        from tqdm import tqdm  # only a terminal that shows the bar pays for the import

        try:
            columns = os.get_terminal_size(out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        # A terminal that reports no size (a bare pty) gets a bar of a usual size (tqdm
        # would draw nothing on a screen of zero rows).
        bar = tqdm(
            total=total,
            desc=label,
            unit="sub-job",
            file=out,
            dynamic_ncols=columns > 0,
            ncols=None if columns > 0 else 100,
            nrows=None if columns > 0 else 24,
        )

        def update_bar(view: SetView) -> None:
            done = finished(dict(view.counts))
            bar.update(done - bar.n)
            bar.set_postfix_str(
                " ".join(f"{n.lower()} {view.counts[n]}" for n in STATES if view.counts.get(n))
            )

        return update_bar, bar.close

    last: list[Any] = [None, 0.0]  # what was printed last, and when

    def update_line(view: SetView) -> None:
        now = time.monotonic()
        counts = tuple(view.counts.get(n, 0) for n in STATES)
        final = view.status in {s.name for s in FINAL}
        if counts != last[0] and (final or now - last[1] >= PLAIN_LINE_EVERY_S or not last[1]):
            print(text_line(view), file=out, flush=True)
            last[0], last[1] = counts, now

    return update_line, lambda: None


def watch(job: Watched, *, timeout: float | None, interval_s: float) -> JobStatus:
    """Show ``job`` live until it is final (see :meth:`AerJobSet.watch`)."""
    if in_notebook():
        show = notebook_updater()
        job.wait_for_final_state(timeout, interval_s, callback=lambda _i, _s, j: show(j))
        status: JobStatus = job.status()
        return status
    update, close = terminal_updater(len(job.plan.sub_batches), job.job_id()[:8])
    try:
        job.wait_for_final_state(
            timeout, interval_s, callback=lambda _i, _s, j: update(j.snapshot())
        )
    finally:
        close()
    status = job.status()
    return status
