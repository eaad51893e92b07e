"""One deadline for a whole wait, and the one loop that polls for something within it.

Every wait of the library (a set's states, a worker's heartbeat, a server's first ping)
is :func:`poll`: ask, return what is ready, raise the caller's own error once the deadline
has passed, otherwise pause (a sleep that grows, or a subscription's next notice) for no
longer than what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")

# What a pause does by default: a short first sleep, growing to a ceiling.
POLL_START_S = 0.01
POLL_MAX_S = 0.25

Pause = Callable[[float | None], None]


class Deadline:
    """A point on the monotonic clock, or none at all (``Deadline(None)`` never passes)."""

    __slots__ = ("at",)

    def __init__(self, timeout_s: float | None) -> None:
        self.at = None if timeout_s is None else time.monotonic() + timeout_s

    def __repr__(self) -> str:
        return f"Deadline(remaining={self.remaining()})"

    def remaining(self) -> float | None:
        """Seconds left (never negative); None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def bound(self, seconds: float) -> float:
        """``seconds``, or what is left when that is less."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)


def growing_sleep(start_s: float = POLL_START_S, most_s: float = POLL_MAX_S) -> Pause:
    """A pause that sleeps ``start_s``, then half as long again each call, up to ``most_s``,
    and never past the ``remaining`` seconds it is given."""
    delay = start_s

    def pause(remaining: float | None) -> None:
        nonlocal delay
        time.sleep(max(0.0, delay if remaining is None else min(delay, remaining)))
        delay = min(delay * 1.5, most_s)

    return pause


def poll(
    ready: Callable[[], T | None],
    deadline: Deadline,
    on_timeout: Callable[[], NoReturn],
    *,
    pause: Pause | None = None,
) -> T:
    """``ready()``'s first value that is not None, asked again after each ``pause``.

    Once ``deadline`` has passed (after one last ``ready()``), ``on_timeout()`` raises
    whatever the caller's wait raises.  ``pause(remaining)`` returns within ``remaining``
    seconds; the default sleeps a little longer each time, up to a quarter of a second.
    """
    pause = growing_sleep() if pause is None else pause
    while True:
        value = ready()
        if value is not None:
            return value
        if deadline.passed():
            on_timeout()
        pause(deadline.remaining())


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    error: type[Exception] = TimeoutError,
    pause_s: float = 0.05,
) -> T:
    """``predicate()``'s first truthy value; ``error`` naming ``what`` after ``timeout_s``."""

    def ready() -> T | None:
        value = predicate()
        return value if value else None

    def timed_out() -> NoReturn:
        raise error(f"timed out after {timeout_s:g} s waiting for {what}")

    return poll(ready, Deadline(timeout_s), timed_out, pause=growing_sleep(pause_s, pause_s))
