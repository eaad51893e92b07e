"""Signed envelopes for everything that crosses Redis.

Circuits with Aer save instructions, Kraus noise models, ``from_backend`` targets and
Aer results only round-trip exactly through pickle, and pickle read from Redis is code
execution for whoever can write to Redis.  So every payload is wrapped as::

    MAGIC (4 bytes) | flags (1 byte) | HMAC-SHA256 (32 bytes) | body

The MAC covers :func:`mac_input`, an injective encoding of (magic, purpose, context,
flags, body): every field is preceded by its length, so no two different tuples give the
same bytes, and no re-cut of an envelope (moving bytes between the context and the body)
verifies.  The *purpose* names what the value is (:class:`~jobset.protocol.Kind`: a
backend, a batch, a result, a record, a cache entry, a primitive record), so a value of
one kind never verifies as another; the *context* is the Redis key it is stored under, so
a value never verifies under another key.  Nothing is unpickled before the MAC is checked.
Large bodies are zlib-compressed (the flag is covered by the MAC too).

Envelopes are signed with the first key of a keyring and verified against any of them,
which lets a deployment rotate ``JOBSET_SECRET_KEY`` without downtime.

Sub-batches carry their circuits as QPY inside the envelope when QPY round-trips them
exactly (standard gates, measurements, unitaries), which is about 4x cheaper than pickle
both ways; everything else (save instructions, noise, control flow) stays pickle.
"""

from __future__ import annotations

import copyreg
import dataclasses
import functools
import hashlib
import hmac
import io
import pickle
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qiskit import QuantumCircuit, qpy
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.result import Result
from qiskit.result.models import ExperimentResult

from .errors import DecodeError, SecurityError
from .plan import SubBatch
from .protocol import Kind

MAGIC = b"AJS2"
# Envelopes of earlier versions: refused with a clear word, never verified or unpickled.
OLD_MAGICS = (b"AJS1",)
_FLAG_ZLIB = 0x01
_KNOWN_FLAGS = _FLAG_ZLIB
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER_SIZE = len(MAGIC) + 1 + _MAC_SIZE
COMPRESS_ABOVE_BYTES = 64 * 1024
_LENGTH_BYTES = 8


def _framed(field: bytes) -> bytes:
    return len(field).to_bytes(_LENGTH_BYTES, "big") + field


def mac_input(kind: Kind, context: str, flags: int, body: bytes) -> bytes:
    """The bytes the MAC covers: each field length-prefixed, so the encoding is injective."""
    fields = (MAGIC, kind.value.encode(), context.encode(), bytes([flags]), body)
    return b"".join(_framed(f) for f in fields)


# Bodies up to this size are MACed in one call over mac_input() (a copy of a few KiB
# costs less than six streamed updates); larger ones are streamed, not copied.
_ONE_SHOT_MAC_BYTES = 16 * 1024


def body_mac(key: bytes, kind: Kind, context: str, flags: int, body: bytes) -> bytes:
    if len(body) <= _ONE_SHOT_MAC_BYTES:
        return hmac.digest(key, mac_input(kind, context, flags, body), "sha256")
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for field in (MAGIC, kind.value.encode(), context.encode(), bytes([flags])):
        mac.update(_framed(field))
    mac.update(len(body).to_bytes(_LENGTH_BYTES, "big"))
    mac.update(body)
    return mac.digest()


def _check_kind(kind: object) -> Kind:
    if not isinstance(kind, Kind):
        raise SecurityError(f"unknown payload kind {kind!r}")
    return kind


def seal(body: bytes, *, kind: Kind, key: bytes, context: str) -> bytes:
    """Sign already-serialised ``body`` as a value of ``kind`` stored at ``context``."""
    if not key:
        raise SecurityError("refusing to sign with an empty key")
    kind = _check_kind(kind)
    flags = 0
    if len(body) > COMPRESS_ABOVE_BYTES:
        body = zlib.compress(body, 1)
        flags |= _FLAG_ZLIB
    return MAGIC + bytes([flags]) + body_mac(key, kind, context, flags, body) + body


# qiskit's Result and ExperimentResult answer unknown attributes from ``self._metadata``
# in ``__getattr__``; unpickled the default way, pickle asks a still-empty object for
# ``__setstate__``, and that lookup recurses through ``__getattr__`` to Python's recursion
# limit (about 0.7 ms per experiment, measured on qiskit 2.6: most of a big set's merge).
# They are pickled as "a new object with exactly this ``__dict__``" instead: the same
# attributes, rebuilt without the lookup.


def _rebuild_experiment_result(state: dict[str, Any]) -> ExperimentResult:
    obj = ExperimentResult.__new__(ExperimentResult)
    obj.__dict__.update(state)
    return obj


def _rebuild_result(state: dict[str, Any]) -> Result:
    obj = Result.__new__(Result)
    obj.__dict__.update(state)
    return obj


_DISPATCH: dict[type, Any] = {
    **copyreg.dispatch_table,
    ExperimentResult: lambda obj: (_rebuild_experiment_result, (obj.__dict__,)),
    Result: lambda obj: (_rebuild_result, (obj.__dict__,)),
}


def pickle_dumps(obj: Any) -> bytes:
    """``pickle.dumps`` at the highest protocol, with Aer results in the fast form above."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return buffer.getvalue()


def dumps(obj: Any, *, kind: Kind, key: bytes, context: str) -> bytes:
    """Pickle ``obj`` and sign it as a value of ``kind`` stored at ``context``."""
    return seal(pickle_dumps(obj), kind=kind, key=key, context=context)


def unseal(blob: object, *, kind: Kind, keys: Sequence[bytes], context: str) -> bytes:
    """The body of ``blob`` once its MAC checks out for ``kind`` at ``context`` under a key.

    Raises :class:`DecodeError` when ``blob`` is missing or not an envelope of this
    protocol (an older version's envelope says so), :class:`SecurityError` when the
    signature does not match any key (wrong key, altered bytes, a value of another kind
    or moved from another key).
    """
    kind = _check_kind(kind)
    if blob is None:
        raise DecodeError(f"no payload stored at {context}")
    if not isinstance(blob, bytes):
        raise DecodeError(f"payload at {context} is not bytes")
    if blob[: len(MAGIC)] in OLD_MAGICS:
        raise DecodeError(
            f"payload at {context} was written by an older version of qiskit-aer-jobset "
            f"(envelope {blob[: len(MAGIC)]!r}, this version reads {MAGIC!r}); submit the "
            "set again with producers and workers of one version"
        )
    if len(blob) < _HEADER_SIZE or not blob.startswith(MAGIC):
        raise DecodeError(f"payload at {context} is not a signed envelope (protocol {MAGIC!r})")
    flags = blob[len(MAGIC)]
    mac = blob[len(MAGIC) + 1 : _HEADER_SIZE]
    body = blob[_HEADER_SIZE:]
    if not any(
        hmac.compare_digest(mac, body_mac(k, kind, context, flags, body)) for k in keys if k
    ):
        raise SecurityError(
            f"payload at {context} failed its signature check as a {kind.value}: it was "
            "altered, forged, copied from another key, or signed with another JOBSET_SECRET_KEY"
        )
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(f"payload at {context} has unknown flags {flags:#04x}")
    if flags & _FLAG_ZLIB:
        try:
            body = zlib.decompress(body)
        except zlib.error as e:
            raise DecodeError(f"payload at {context} is signed but cannot be decoded: {e}") from e
    return body


def loads(blob: object, *, kind: Kind, keys: Sequence[bytes], context: str) -> Any:
    """Verify ``blob`` as a value of ``kind`` stored at ``context``, then unpickle it."""
    body = unseal(blob, kind=kind, keys=keys, context=context)
    try:
        return pickle.loads(body)
    except Exception as e:
        raise DecodeError(f"payload at {context} is signed but cannot be decoded: {e}") from e


# --------------------------------------------------------------------------- sub-batches

# Operations that QPY writes and reads back as the very same instruction (measured on
# qiskit 2.6): standard gates, measure/reset/barrier/delay, unitary matrices.  Anything
# else (Aer save instructions, Aer noise instructions, control flow, custom gates) travels
# as pickle, which is exact for all of them but several times slower for plain circuits.
_QPY_EXACT_EXTRA = frozenset({"measure", "reset", "barrier", "delay", "unitary"})


@functools.cache
def _standard_base_classes() -> dict[str, type]:
    return {name: gate.base_class for name, gate in get_standard_gate_name_mapping().items()}


def _qpy_exact(circuit: QuantumCircuit) -> bool:
    standard = _standard_base_classes()
    for inst in circuit.data:
        if inst.is_standard_gate():  # one of Qiskit's own gates, with no Python object to build
            continue
        op = inst.operation
        if op.name in _QPY_EXACT_EXTRA and op.base_class.__module__.startswith("qiskit.circuit"):
            continue
        if standard.get(op.name) is not op.base_class:
            return False
    return True


@dataclass(frozen=True)
class SignedBatch:
    """A sub-batch as the worker reads it: the circuits and options, and what the producer
    asked of its result (``cache_ttl_s`` > 0: reuse and store it in the result cache)."""

    batch: SubBatch
    cache_ttl_s: int = 0
    # The circuits as QPY, as the producer wrote them (None: they travelled as pickle).
    # Circuits loaded from QPY get fresh anonymous bits, so a digest is taken of these.
    circuits_qpy: bytes | None = None


def dumps_batch(batch: SubBatch, *, key: bytes, context: str, cache_ttl_s: int = 0) -> bytes:
    """Sign a sub-batch, its circuits as QPY where that is exact and faster, else pickle.

    ``cache_ttl_s`` travels inside the signature: no message can turn the cache on.
    """
    circuits_qpy: bytes | None = None
    if batch.circuits and all(_qpy_exact(c) for c in batch.circuits):
        buffer = io.BytesIO()
        try:
            qpy.dump(list(batch.circuits), buffer)
            circuits_qpy = buffer.getvalue()
        except Exception:  # e.g. metadata that is not JSON: pickle handles it
            circuits_qpy = None
    shell = dataclasses.replace(batch, circuits=()) if circuits_qpy else batch
    return dumps((shell, circuits_qpy, int(cache_ttl_s)), kind=Kind.BATCH, key=key, context=context)


def loads_batch(blob: object, *, keys: Sequence[bytes], context: str) -> SignedBatch:
    """Verify and decode what :func:`dumps_batch` wrote."""
    body = loads(blob, kind=Kind.BATCH, keys=keys, context=context)
    try:
        batch, circuits_qpy, cache_ttl_s = body
        if circuits_qpy is not None:
            batch = dataclasses.replace(batch, circuits=tuple(qpy.load(io.BytesIO(circuits_qpy))))
    except Exception as e:
        raise DecodeError(f"payload at {context} is not a sub-batch: {e}") from e
    if not isinstance(batch, SubBatch) or not isinstance(cache_ttl_s, int):
        raise DecodeError(f"payload at {context} is a {type(batch).__name__}, not a sub-batch")
    return SignedBatch(batch, cache_ttl_s, circuits_qpy)


def batch_digest(
    options: Mapping[str, Any], batch: SubBatch, versions: Any = (), *, circuits_qpy: Any = None
) -> str:
    """SHA-256 of what a sub-job's result depends on: circuits, options, seed, shots.

    Equal digests mean equal inputs (the pickles are equal); equal inputs may still give
    different digests (say, a parameter rebuilt with a new identity): a cache miss, never
    a wrong hit.  ``versions`` keeps results of other qiskit / Aer versions apart.
    ``circuits_qpy``, when the circuits came as QPY, stands for them (exact, and the same
    bytes for equal circuits).
    """
    body = (
        [(name, options[name]) for name in sorted(options)],
        batch.circuits if circuits_qpy is None else circuits_qpy,
        batch.parameter_binds,
        sorted(batch.run_kwargs().items()),
        batch.pad_clbits,
        versions,
    )
    return hashlib.sha256(pickle.dumps(body, protocol=4)).hexdigest()
