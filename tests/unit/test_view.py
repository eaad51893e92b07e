"""The HTML and text views of a job set: pure, no server."""

from __future__ import annotations

import io
import re

from jobset.observe import live, view
from jobset.observe.view import FailureLine, ListingRow, SetView


def _view(**changes) -> SetView:
    base = dict(
        job_id="0c5a4c46-2f38-4b7e-9d1c-0f1b2a3c4d5e",
        status="RUNNING",
        counts={"DONE": 3, "RUNNING": 1, "QUEUED": 4},
        sub_jobs=8,
        experiments=16,
        created_at=1_780_000_000.0,
        elapsed_s=75.0,
    )
    base.update(changes)
    return SetView(**base)


def test_the_bar_has_one_segment_per_state_sized_by_its_share():
    bar = view.progress_bar({"DONE": 3, "RUNNING": 1, "QUEUED": 4}, 8)
    widths = dict(re.findall(r'title="(\w+): \d+" style="width:([\d.]+)%', bar))
    assert widths == {"DONE": "37.500", "RUNNING": "12.500", "QUEUED": "50.000"}
    assert "done 3" in bar and "error" not in bar


def test_dates_are_dates_and_durations_read_as_a_person_would():
    assert view.when(0.0) == "1970-01-01 00:00:00 UTC"
    assert view.when(None) == "" and view.when(1e30) == "?"
    assert [view.duration(s) for s in (4.24, 185, 7260)] == ["4.2 s", "3 min 05 s", "2 h 01 min"]


def test_everything_from_data_is_escaped():
    hostile = "<script>alert(1)</script>"
    shown = view.set_html(
        _view(
            job_id=hostile,
            backend_name=hostile,
            tags=(hostile,),
            failures=(FailureLine(2, hostile, "ERROR", hostile),),
            failed=1,
        )
    )
    assert "<script>" not in shown and shown.count("&lt;script&gt;") == 6
    table = view.listing_html([ListingRow(hostile, 0.0, "DONE", 1, 1, hostile, (hostile,))])
    assert "<script>" not in table


def test_failures_list_the_first_few_and_count_the_rest_with_long_messages_cut():
    failures = tuple(FailureLine(i, f"t-{i}", "ERROR", "x" * 1000) for i in range(5))
    shown = view.set_html(_view(status="ERROR", failures=failures, failed=12))
    assert "12 failed or cancelled" in shown and "and 7 more" in shown
    assert "x" * view.MESSAGE_CHARS not in shown and "x" * (view.MESSAGE_CHARS - 3) in shown


def test_the_text_line_names_every_state_and_the_elapsed_time():
    assert view.text_line(_view()) == (
        "AerJobSet 0c5a4c46-2f38-4b7e-9d1c-0f1b2a3c4d5e: RUNNING  DONE 3  RUNNING 1  "
        "QUEUED 4  ERROR 0  CANCELLED 0  of 8  1 min 15 s"
    )


def test_piped_progress_prints_plain_lines_only_when_counts_change_and_at_the_end():
    out = io.StringIO()
    update, close = live.terminal_updater(8, "set", stream=out, tty=False)
    update(_view())
    update(_view())  # same counts: nothing new
    update(_view(status="DONE", counts={"DONE": 8}))
    close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[-1].startswith("AerJobSet") and "DONE 8" in lines[-1]


def test_a_terminal_gets_a_bar_with_rate_and_eta():
    out = io.StringIO()
    update, close = live.terminal_updater(8, "set", stream=out, tty=True)
    update(_view())
    update(_view(status="DONE", counts={"DONE": 8}))
    close()
    text = out.getvalue()
    assert "8/8" in text and "sub-job/s" in text and "<" in text  # tqdm's rate and ETA


def test_no_notebook_outside_a_kernel():
    assert live.in_notebook() is False
