"""The one wait loop: a value when ready, the caller's error at the deadline, pauses bounded."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import NoReturn

import pytest

from jobset.deadline import Deadline, growing_sleep, poll, wait_for

ROOT = Path(__file__).resolve().parents[2]


class Expired(Exception):
    pass


def expired() -> NoReturn:
    raise Expired


def test_poll_returns_the_first_value_that_is_not_none():
    answers = iter([None, None, 0, 5])
    paused: list[float | None] = []
    value = poll(lambda: next(answers), Deadline(None), expired, pause=paused.append)
    assert value == 0  # falsy but ready: only None means "not yet"
    assert paused == [None, None]


def test_poll_asks_once_more_after_the_deadline_and_then_raises_the_callers_error():
    calls = []
    deadline = Deadline(0.05)
    with pytest.raises(Expired):
        poll(lambda: calls.append(time.monotonic()), deadline, expired)
    assert calls and calls[-1] >= deadline.at


def test_a_pause_is_never_given_more_than_what_is_left():
    deadline = Deadline(0.2)
    given: list[float | None] = []

    def pause(remaining: float | None) -> None:
        given.append(remaining)
        time.sleep(0.02)

    with pytest.raises(Expired):
        poll(lambda: None, deadline, expired, pause=pause)
    assert all(r is not None and 0.0 <= r <= 0.2 for r in given)
    assert given == sorted(given, reverse=True)


def test_no_deadline_never_passes_and_bounds_nothing():
    forever = Deadline(None)
    assert not forever.passed() and forever.remaining() is None and forever.bound(3.0) == 3.0
    assert Deadline(0).passed() and Deadline(0).remaining() == 0.0


def test_growing_sleep_grows_to_its_ceiling_and_stops_at_the_remaining_time():
    pause = growing_sleep(0.001, 0.004)
    started = time.monotonic()
    for _ in range(10):
        pause(None)
    assert time.monotonic() - started < 0.2
    started = time.monotonic()
    growing_sleep(10.0, 10.0)(0.01)
    assert time.monotonic() - started < 1.0


def test_wait_for_gives_the_truthy_value_or_names_what_it_waited_for():
    values = iter([[], [], [3]])
    assert wait_for(lambda: next(values), 5, "a list", pause_s=0.001) == [3]
    with pytest.raises(AssertionError, match="waiting for the moon"):
        wait_for(lambda: False, 0.05, "the moon", error=AssertionError, pause_s=0.01)


def test_the_library_writes_its_wait_loops_with_poll_only():
    """No module but jobset.deadline compares the clock with a deadline in a loop."""
    offenders = []
    for path in sorted((ROOT / "jobset").rglob("*.py")) + sorted((ROOT / "workers").rglob("*.py")):
        if path.name == "deadline.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.While) and "monotonic" in ast.unparse(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
