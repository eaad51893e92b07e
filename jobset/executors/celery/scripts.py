"""The project's Lua scripts, read from the ``lua`` folder beside this module, run by digest.

A script that names a library part on a ``-- requires: NAME.lua`` line (``transition.lua``,
the tally's one move) is sent with that part before its body, so a change of the move
reaches every script that makes one.  On a client,
:func:`run` sends EVALSHA and loads the script only when the server does not know it yet
(what redis-py's ``Script`` does), so the hot path never ships the source; in a pipeline it sends
EVAL, which needs no extra round trip to check what the server holds.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.client import Pipeline
from redis.exceptions import NoScriptError

_REQUIRES = "-- requires: "


@functools.cache
def source(name: str) -> str:
    """The full text of script ``name`` (``move.lua``, ``begin.lua``): the library parts it
    requires, then its body."""
    folder = resources.files(__package__).joinpath("lua")
    body = folder.joinpath(name).read_text()
    parts = [
        folder.joinpath(line[len(_REQUIRES) :].strip()).read_text()
        for line in body.splitlines()
        if line.startswith(_REQUIRES)
    ]
    return "\n".join([*parts, body])


@functools.cache
def digest(name: str) -> str:
    """The SHA-1 that Redis names script ``name`` by."""
    return hashlib.sha1(source(name).encode()).hexdigest()


def run(client: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run script ``name`` on ``client`` (a redis-py client or pipeline)."""
    if isinstance(client, Pipeline):
        return client.eval(source(name), len(keys), *keys, *args)
    try:
        return client.evalsha(digest(name), len(keys), *keys, *args)
    except NoScriptError:  # a server that restarted, or one this process never used
        client.script_load(source(name))
        return client.evalsha(digest(name), len(keys), *keys, *args)
