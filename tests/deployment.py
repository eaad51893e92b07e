"""Reading the deployment files as Docker would: compose interpolation, env file, Dockerfile.

There is no Docker engine where the tests run, so the tests parse docker-compose.yml,
resolve ``${VAR}`` the way compose does, and run the services' command lines as local
processes; these helpers do the reading.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "config" / "jobset.env.example"

# compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ...
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})"
)


class MissingVariableError(KeyError):
    """Raised when a ``${VAR:?message}`` variable is unset, as ``docker compose`` fails then."""


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def compose_variables() -> set[str]:
    """Every variable docker-compose.yml interpolates."""
    text = COMPOSE_FILE.read_text()
    return {m["bare"] or m["braced"] for m in _VARIABLE.finditer(text) if not m["escaped"]}


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """``value`` (a parsed compose structure) with variables substituted as compose does."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["bare"] or m["braced"]
        op, arg = m["op"], m["arg"] or ""
        present = name in env
        nonempty = bool(env.get(name))
        if op in (":-", "-"):
            use_default = not nonempty if op == ":-" else not present
            return arg if use_default else env[name]
        if op in (":?", "?"):
            if (op == ":?" and not nonempty) or (op == "?" and not present):
                raise MissingVariableError(f"{name}: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (nonempty if op == ":+" else present) else ""
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file, comments and blank lines skipped."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def local_argv(command: list[str]) -> list[str]:
    """A service's ``celery ...`` command line, run with this interpreter's Celery."""
    assert command[0] == "celery", command
    return [sys.executable, "-m", "celery", *command[1:]]


def replace_option(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with ``--option=...`` set to ``value`` (it must be there: nothing is added)."""
    prefix = f"{option}="
    matches = [i for i, a in enumerate(argv) if a.startswith(prefix)]
    assert len(matches) == 1, (option, argv)
    out = list(argv)
    out[matches[0]] = prefix + value
    return out


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, continuation lines joined, heredoc bodies kept
    as the arguments' tail."""
    lines = DOCKERFILE.read_text().splitlines()
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?'?\"?([A-Z]+)'?\"?", line)
        if heredoc:
            body = []
            while lines[i] != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            line = line + "\n" + "\n".join(body)
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest))
    return out


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions, keyed by name; ``FROM`` first."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else f"#{len(stages)}"
            current = stages[name] = []
        if current is not None:
            current.append((word, rest))
    return stages
