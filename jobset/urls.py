"""Redis URLs: the plain ones, and Celery's Sentinel form, read the same way by every client.

A Sentinel URL names the sentinels, not the server::

    sentinel://[USER:PASSWORD@]HOST:PORT;sentinel://HOST:PORT[/DB][?ssl_cert_reqs=...]

kombu and Celery take the credentials and the database from the first ``sentinel://`` part
only, and each part's host and port as one sentinel.  Written as users often do
(the database on the last part only), both would read database 0 while the user meant
another; so :func:`parse_sentinel` takes the database from whichever part names it (parts
that disagree are refused), and :func:`celery_url` writes it and the credentials back on
every part: the project's own client, kombu's transport and Celery's result
backend then reach the same database.  ``ssl_*`` query options mean TLS to the servers and
the sentinels; Celery gets them as ``broker_use_ssl`` and ``redis_backend_use_ssl``.

Pure: no Redis import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

REDIS_SCHEMES = ("redis", "rediss", "unix", "valkey", "valkeys")
SENTINEL_SCHEME = "sentinel"
SENTINEL_DEFAULT_PORT = 26379
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_PART_SEP = ";"


@dataclass(frozen=True)
class SentinelUrl:
    """The sentinels to ask, the database, the server's credentials and TLS options."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    tls: dict[str, str] = field(default_factory=dict)


def is_sentinel(url: str) -> bool:
    return url.split(":", 1)[0].lower() == SENTINEL_SCHEME


def check(url: str) -> None:
    """Raise ValueError unless ``url`` is a Redis URL or a valid Sentinel URL."""
    if is_sentinel(url):
        parse_sentinel(url)
    elif urlsplit(url).scheme not in REDIS_SCHEMES:
        raise ValueError("the schemes are redis, rediss, unix, valkey, valkeys and sentinel")


def parse_sentinel(url: str) -> SentinelUrl:
    """The parts of a Sentinel URL; ValueError naming what is wrong (never the password)."""
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    credentials: set[tuple[str | None, str | None]] = set()
    tls: dict[str, str] = {}
    for part in url.split(_PART_SEP):
        parts = urlsplit(part.strip())
        if parts.scheme != SENTINEL_SCHEME or not parts.hostname:
            raise ValueError("every part of a Sentinel URL is sentinel://HOST:PORT")
        try:
            port = parts.port or SENTINEL_DEFAULT_PORT
        except ValueError as e:
            raise ValueError(f"a sentinel port is not a number: {e}") from None
        sentinels.append((parts.hostname, port))
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"the database of a Sentinel URL is a number, got {path!r}")
            dbs.add(int(path))
        if parts.username is not None or parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            secret = unquote(parts.password) if parts.password is not None else None
            credentials.add((user, secret))
        for name, value in parse_qsl(parts.query):
            if name not in TLS_OPTIONS:
                raise ValueError(f"unknown option {name!r} in a Sentinel URL")
            if tls.get(name, value) != value:
                raise ValueError(f"the parts of a Sentinel URL disagree on {name}")
            tls[name] = value
    if len(dbs) > 1:
        raise ValueError(f"the parts of a Sentinel URL name different databases {sorted(dbs)}")
    if len(credentials) > 1:
        raise ValueError("the parts of a Sentinel URL carry different credentials")
    username, password = next(iter(credentials), (None, None))
    return SentinelUrl(tuple(sentinels), next(iter(dbs), 0), username, password, tls)


def celery_url(url: str) -> str:
    """``url`` as kombu and Celery read it: for Sentinel, the database and the credentials
    on every part (kombu's failover to the next part takes that part's credentials), TLS
    options left to Celery's ``*_use_ssl`` settings."""
    if not is_sentinel(url):
        return url
    parsed = parse_sentinel(url)
    parts = []
    for host, port in parsed.sentinels:
        userinfo = ""
        if parsed.username or parsed.password is not None:
            userinfo = f"{_quote(parsed.username or '')}"
            if parsed.password is not None:
                userinfo += f":{_quote(parsed.password)}"
            userinfo += "@"
        address = f"[{host}]" if ":" in host else host
        parts.append(f"{SENTINEL_SCHEME}://{userinfo}{address}:{port}/{parsed.db}")
    return _PART_SEP.join(parts)


def _quote(value: str) -> str:
    return quote(value, safe="")


def redact(url: str) -> str:
    """The URL with any password replaced, part by part, fit for logs and messages."""
    return _PART_SEP.join(_redact_one(part) for part in url.split(_PART_SEP))


def _redact_one(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
