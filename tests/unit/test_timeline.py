"""A set's timeline: entries read as untrusted input, counts over time, the picture."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from jobset.observe import timeline
from jobset.observe.timeline import Run, Timeline

SET = "0c5a4c46-2f38-4b7e-9d1c-0f1b2a3c4d5e"
T0 = 1_780_000_000.0


def test_well_formed_entries_become_runs_and_the_first_merge_counts():
    raw = [
        timeline.run_entry(0, "w1@h", "jobset.cpu", T0 + 1, T0 + 2, "SUCCESS"),
        timeline.run_entry(1, "w2@h", "jobset.cpu", T0 + 1.5, T0 + 3, "FAILURE").encode(),
        timeline.merged_entry(T0 + 4),
        timeline.merged_entry(T0 + 9),
    ]
    read = timeline.parse(SET, T0, raw, sub_jobs=2)
    assert [r.index for r in read.runs] == [0, 1] and read.merged_at == T0 + 4
    assert read.runs[1] == Run(1, "w2@h", "jobset.cpu", T0 + 1.5, T0 + 3, "FAILURE")
    assert read.workers == ["w1@h", "w2@h"]


@pytest.mark.parametrize(
    "entry",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"i": 5, "w": "w", "q": "q", "s": T0, "e": T0, "st": "SUCCESS"}),  # index
        json.dumps({"i": True, "w": "w", "q": "q", "s": T0, "e": T0, "st": "SUCCESS"}),
        json.dumps({"i": 0, "w": 7, "q": "q", "s": T0, "e": T0, "st": "SUCCESS"}),
        json.dumps({"i": 0, "w": "w", "q": "q", "s": T0 + 1, "e": T0, "st": "SUCCESS"}),
        json.dumps({"i": 0, "w": "w", "q": "q", "s": "NaN", "e": T0, "st": "SUCCESS"}),
        json.dumps({"i": 0, "w": "w", "q": "q", "s": 1e300, "e": 1e300, "st": "SUCCESS"}),
        json.dumps({"i": 0, "w": "w", "q": "q", "s": T0, "e": T0, "st": "<script>"}),
        json.dumps({"merged": "soon"}),
    ],
)
def test_a_malformed_entry_is_skipped(entry):
    read = timeline.parse(SET, T0, [entry], sub_jobs=2)
    assert read.runs == () and read.merged_at is None


def test_names_are_cut_and_stripped_of_control_characters():
    raw = [timeline.run_entry(0, "w\x1b[31m" + "x" * 500, "q\n", T0, T0 + 1, "SUCCESS")]
    (run,) = timeline.parse(SET, T0, raw, sub_jobs=1).runs
    assert "\x1b" not in run.worker and len(run.worker) < timeline.NAME_CHARS and run.queue == "q"


def _two_workers() -> Timeline:
    runs = (
        Run(0, "a", "q", T0 + 1, T0 + 3, "SUCCESS"),
        Run(1, "b", "q", T0 + 1, T0 + 2, "FAILURE"),
        Run(1, "a", "q", T0 + 3, T0 + 5, "SUCCESS"),  # the same sub-job ran again
    )
    return Timeline(SET, T0, runs, merged_at=T0 + 6)


def test_queued_running_and_done_over_time_count_each_sub_job_once():
    plot = pytest.importorskip("jobset.observe.plot")
    times, queued, running, done, failed = plot.state_counts(_two_workers(), T0, sub_jobs=3)
    assert list(times) == [0.0, 1.0, 3.0, 5.0, 6.0]
    assert list(queued) == [3, 1, 1, 1, 1]  # sub-job 2 never ran: queued throughout
    assert list(running) == [0, 2, 1, 0, 0]  # sub-job 1: first start 1 s, last end 5 s
    assert list(done) == [0, 0, 1, 2, 2]
    assert list(failed) == [0, 0, 0, 0, 0]  # its first run failed, its last succeeded
    assert np.all(queued + running + done + failed == 3)


def test_a_sub_job_whose_last_run_failed_counts_as_failed():
    plot = pytest.importorskip("jobset.observe.plot")
    runs = (
        Run(0, "a", "q", T0 + 1, T0 + 2, "FAILURE"),
        Run(1, "a", "q", T0 + 2, T0 + 3, "SUCCESS"),
    )
    times, _, _, done, failed = plot.state_counts(Timeline(SET, T0, runs), T0, sub_jobs=2)
    assert list(times) == [0.0, 1.0, 2.0, 3.0]
    assert list(failed) == [0, 0, 1, 1] and list(done) == [0, 0, 0, 1]


def test_the_timeline_picture_has_a_bar_per_run_a_lane_per_worker_and_the_merge():
    plot = pytest.importorskip("jobset.observe.plot")
    fig = plot.timeline_figure(_two_workers(), sub_jobs=3)
    lanes, counts = fig.axes[0], fig.axes[1]
    assert len(lanes.patches) == 3
    assert [t.get_text() for t in lanes.get_yticklabels()] == ["a", "b"]
    assert any(line.get_xdata()[0] == 6.0 for line in lanes.get_lines())  # merged at 6 s
    legend = [t.get_text() for t in counts.get_legend().get_texts()]
    assert legend == ["done", "running", "queued"]  # nothing ended failed: no such layer
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_landscape_masks_points_that_did_not_run():
    plot = pytest.importorskip("jobset.observe.plot")
    values = np.array([[0.5, -0.5], [1.0, np.nan]])
    fig = plot.landscape_figure(values, [0, 1], [0, 1], title="t", label="<Z>")
    mesh = fig.axes[0].collections[0]
    assert mesh.get_array().mask.ravel().tolist() == [False, False, False, True]
