"""What the local cluster keeps in its folder between runs: its identity and its pid file.

A restart must serve every set written before it, so the secrets a cluster is made of (the
signing key, the servers' passwords, Flower's login) and its Redis port are drawn once
and kept in ``identity.json``; the AOF next to it holds the sets themselves.  The folder
is the owner's alone (mode 0700) and every file in it is written as a fresh
``O_EXCL | O_NOFOLLOW`` temporary file of mode 0600, then renamed into place, so that no
other local user can read a secret, plant a symlink or swap a file half-way through.

``cluster.pid`` names the process that runs the cluster, with what identifies that
process beyond its number (its start time and command line): a pid reused after a crash
is never taken for the cluster, so ``stop`` never signals a stranger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError

IDENTITY_FILE = "identity.json"
PID_FILE = "cluster.pid"
COMMAND_MODULE = "jobset.local.command"
# What the command line of a cluster command holds: the module, or the console script.
_COMMAND_MARKS = (COMMAND_MODULE, "jobset-cluster")


def private_dir(path: Path) -> Path:
    """``path`` as a folder of its owner's alone (made if missing, mode 0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"{path} is not a folder (a symlink is refused)")
    if info.st_uid != os.getuid():
        raise ConfigurationError(f"{path} belongs to another user")
    path.chmod(0o700)
    return path


def _temp_file(path: Path, text: str) -> Path:
    """A new mode-0600 file next to ``path`` holding ``text``; never follows a link."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only, replacing it at once."""
    tmp = _temp_file(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_private(path: Path, text: str) -> bool:
    """Like :func:`write_private`, but only where ``path`` does not exist yet (False then):
    of two processes that create it at once, one wins and the other reads the winner's."""
    tmp = _temp_file(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def read_private(path: Path) -> str | None:
    """The text of ``path`` (None when missing), refused unless it is a regular file of
    this user that no one else can read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigurationError(f"{path}: cannot be read safely ({e})") from None
    with os.fdopen(fd) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise ConfigurationError(f"{path} is not a file of this user: refused")
        if info.st_mode & 0o077:
            raise ConfigurationError(
                f"{path} is readable or writable by others (mode {info.st_mode & 0o777:o}): "
                f"refused; make it the owner's only (chmod 600 {path})"
            )
        return f.read()


@dataclass(frozen=True)
class ClusterIdentity:
    """The secrets and the port a local cluster keeps from one run to the next."""

    secret_key: str
    redis_password: str
    redis_port: int
    sentinel_password: str
    flower_auth: str

    @classmethod
    def fresh(cls, redis_port: int) -> ClusterIdentity:
        return cls(
            secret_key=secrets.token_hex(32),
            redis_password=secrets.token_hex(16),
            redis_port=redis_port,
            sentinel_password=secrets.token_hex(16),
            flower_auth=f"admin:{secrets.token_urlsafe(12)}",
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> ClusterIdentity:
        try:
            data = json.loads(text)
            fields = {f.name: f.type for f in dataclasses.fields(cls)}
            if not isinstance(data, dict) or set(data) != set(fields):
                raise ValueError("unexpected fields")
            identity = cls(**data)
            if not all(isinstance(getattr(identity, n), str) for n in fields if n != "redis_port"):
                raise ValueError("a secret is not a string")
            if not isinstance(identity.redis_port, int) or not 0 < identity.redis_port < 65536:
                raise ValueError("bad port")
        except (ValueError, TypeError) as e:
            raise ConfigurationError(
                f"{path} is not a local cluster's identity ({e}); move it away to start a "
                "new cluster (the sets written under the old key are then unreadable)"
            ) from None
        return identity


def load_identity(directory: Path, *, new_port: int) -> tuple[ClusterIdentity, bool]:
    """The cluster's identity kept in ``directory``, made (with ``new_port``) on first use;
    and whether it was made now."""
    path = directory / IDENTITY_FILE
    text = read_private(path)
    if text is not None:
        return ClusterIdentity.from_json(text, path), False
    identity = ClusterIdentity.fresh(new_port)
    if create_private(path, identity.to_json()):
        return identity, True
    text = read_private(path)  # another start made it first: use that one
    assert text is not None
    return ClusterIdentity.from_json(text, path), False


def save_identity(directory: Path, identity: ClusterIdentity) -> None:
    write_private(directory / IDENTITY_FILE, identity.to_json())


# --------------------------------------------------------------------------- the pid file


def process_signature(pid: int) -> str | None:
    """What tells process ``pid`` apart from a later one with the same number: its start
    time and command line; None when no such process of this user runs."""
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if proc.stat().st_uid != os.getuid():
                return None
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            return None
        if fields[0] in ("Z", "X"):
            return None
        return f"{fields[19]} {cmdline.strip()}"  # field 22 of stat: start time in ticks
    try:  # no /proc (macOS, BSD): ps says the same
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "uid=,lstart=,command="],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return None
    if not out or out.split(None, 1)[0] != str(os.getuid()):
        return None
    return out.split(None, 1)[1]


def write_pid_file(directory: Path, pid: int) -> None:
    signature = process_signature(pid)
    write_private(directory / PID_FILE, json.dumps({"pid": pid, "signature": signature}) + "\n")


def running_pid(directory: Path) -> int | None:
    """The pid of the cluster command that serves ``directory``, if one runs; a pid file
    left by a crash, or whose pid now names another process, reads as None."""
    try:
        text = read_private(directory / PID_FILE)
    except ConfigurationError:
        return None
    if text is None:
        return None
    try:
        data = json.loads(text)
        pid, signature = data["pid"], data["signature"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return None
    now = process_signature(pid)
    if now is None or now != signature or not any(m in now for m in _COMMAND_MARKS):
        return None
    return pid


def remove_pid_file(directory: Path, pid: int) -> None:
    """Remove the pid file if it still names ``pid`` (a newer start's stays)."""
    path = directory / PID_FILE
    with contextlib.suppress(ConfigurationError, ValueError, TypeError, KeyError):
        text = read_private(path)
        if text is not None and json.loads(text)["pid"] == pid:
            path.unlink(missing_ok=True)
