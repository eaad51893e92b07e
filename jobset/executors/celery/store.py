"""The signed store: every signed value the project keeps in Redis goes through here.

``put(kind, ref, obj)`` builds the key from validated parts
(:func:`jobset.protocol.signed_key`), signs the value as a value of that kind stored at
that key, and writes it with a TTL; ``get(kind, ref)`` reads it back and verifies it
before anything is unpickled.  Producers and workers both use it, so no other module
signs or verifies with a key it built by hand: a value can only verify as the kind, and
under the key, it was written for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ... import codec
from ...errors import DecodeError
from ...protocol import Kind, Ref, signed_key
from ...settings import Settings
from .connect import execute_replicated


class SignedStore:
    """Signed values in ``client`` (a redis-py client), signed with the settings' key.

    Writes go to ``pipe`` when one is given (the caller executes it), so a producer can
    store a set's payloads in one round trip.
    """

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self._sign_key = settings.secret_key
        self._verify_keys = settings.verify_keys
        self.ttl_s = settings.result_ttl_s
        self.settings = settings

    @staticmethod
    def key(kind: Kind, ref: Ref) -> str:
        return signed_key(kind, ref)

    def encode(self, kind: Kind, ref: Ref, obj: Any, *, cache_ttl_s: int = 0) -> tuple[str, bytes]:
        """The key and the signed bytes of ``obj``, without writing them."""
        key = signed_key(kind, ref)
        if kind is Kind.BATCH:
            blob = codec.dumps_batch(obj, key=self._sign_key, context=key, cache_ttl_s=cache_ttl_s)
        else:
            blob = codec.dumps(obj, kind=kind, key=self._sign_key, context=key)
        return key, blob

    def write(self, key: str, blob: bytes, *, pipe: Any = None, ttl_s: int | None = None) -> None:
        """Write what :meth:`encode` made."""
        (pipe if pipe is not None else self.client).set(key, blob, ex=ttl_s or self.ttl_s)

    def write_replicated(
        self, key: str, blob: bytes, *, also: Callable[[Any], None] | None = None
    ) -> None:
        """Write what :meth:`encode` made and, on a replicated Redis, return once a replica
        has it (:func:`~.connect.execute_replicated`): a value written before what
        announces it (a result before its "done") then survives the loss of the primary.
        ``also(pipe)`` adds the caller's own writes to the same round trip."""
        pipe = self.client.pipeline(transaction=False)
        self.write(key, blob, pipe=pipe)
        if also is not None:
            also(pipe)
        execute_replicated(pipe, self.settings)

    def put(
        self,
        kind: Kind,
        ref: Ref,
        obj: Any,
        *,
        pipe: Any = None,
        ttl_s: int | None = None,
        cache_ttl_s: int = 0,
    ) -> int:
        """Sign and write ``obj``; returns the size of the signed value in bytes."""
        key, blob = self.encode(kind, ref, obj, cache_ttl_s=cache_ttl_s)
        self.write(key, blob, pipe=pipe, ttl_s=ttl_s)
        return len(blob)

    def decode(self, kind: Kind, ref: Ref, blob: object) -> Any:
        """Verify ``blob`` as the value of ``kind`` named ``ref``, then decode it."""
        key = signed_key(kind, ref)
        if kind is Kind.BATCH:
            return codec.loads_batch(blob, keys=self._verify_keys, context=key)
        return codec.loads(blob, kind=kind, keys=self._verify_keys, context=key)

    def get(self, kind: Kind, ref: Ref, *, expect: type | None = None) -> Any:
        """The verified value; :class:`DecodeError` when there is none."""
        value = self.decode(kind, ref, self.client.get(signed_key(kind, ref)))
        return _expect(value, expect, kind, ref)

    def find(self, kind: Kind, ref: Ref, *, expect: type | None = None) -> Any:
        """Like :meth:`get`, but None when nothing is stored."""
        blob = self.client.get(signed_key(kind, ref))
        return None if blob is None else _expect(self.decode(kind, ref, blob), expect, kind, ref)

    def get_each(self, *wanted: tuple[Kind, Ref]) -> list[Any]:
        """The verified values of several ``(kind, ref)`` in one MGET; :class:`DecodeError`
        for any that is missing, as :meth:`get`."""
        blobs = self.client.mget([signed_key(kind, ref) for kind, ref in wanted])
        return [
            self.decode(kind, ref, blob) for (kind, ref), blob in zip(wanted, blobs, strict=True)
        ]

    def get_many(
        self, kind: Kind, refs: Iterable[Ref], *, expect: type | None = None
    ) -> list[Any | None]:
        """The verified values of ``refs`` in one MGET; None where nothing is stored."""
        wanted: Sequence[Ref] = list(refs)
        if not wanted:
            return []
        blobs = self.client.mget([signed_key(kind, r) for r in wanted])
        return [
            None if blob is None else _expect(self.decode(kind, ref, blob), expect, kind, ref)
            for ref, blob in zip(wanted, blobs, strict=True)
        ]


def _expect(value: Any, expect: type | None, kind: Kind, ref: Ref) -> Any:
    if expect is not None and not isinstance(value, expect):
        raise DecodeError(
            f"the {kind.value} at {signed_key(kind, ref)} is a {type(value).__name__}, "
            f"not a {expect.__name__}"
        )
    return value
