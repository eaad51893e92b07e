"""Proof that a set ended: what a Redis writer without ``JOBSET_SECRET_KEY`` cannot forge.

The tally (:mod:`.tally`) and Celery's records are plain Redis values: whoever can
write to Redis could copy a finished set's hashes onto a queued one and make it read
DONE.  So a final state that ends a wait, reads DONE, or makes ``cancel()`` answer
"already final" is believed only once every sub-job's end is proven, by one of:

- its **end record**: field ``k`` of ``jobset:{id}:ends`` holds the final letter and a MAC
  over (kind "end", the field's name, the letter), written by the worker in the same
  round trip as the tally move and before it, so a tally that reads final has its
  records (:func:`record_move`);
- its **signed result** (a sub-job whose end record was lost: the worker stores the result
  before its task returns);
- the set's **signed cancel mark** (a sub-job that never started in a cancelled set: its
  message was dropped and workers skip it); the mark's value is a MAC over (kind
  "cancel", its key), so an attacker can neither make one nor move one from another set.

:func:`proven_status` reads the records once, in chunks, when the cheap tally first says
final: a running set costs what it did before.  The MACs are 128-bit truncated
HMAC-SHA256 (:func:`jobset.codec.mac_input` framing, so no field verifies as another).
"""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from qiskit.providers import JobStatus
from qiskit.result import Result

from ... import codec
from ...errors import JobSetError
from ...protocol import Kind, SubJobRef, cancel_key, check_index, ends_key
from ...settings import Settings
from ...status import aggregate_counts
from . import tally
from .store import SignedStore

logger = logging.getLogger(__name__)

_MAC_BYTES = 16
# End records and results read per round trip while proving a set's end.
_CHUNK = 5000
_CANCELLED_BODY = b"cancelled"
_LETTER_STATUS = {
    tally.DONE: JobStatus.DONE,
    tally.FAILED: JobStatus.ERROR,
    tally.CANCELLED: JobStatus.CANCELLED,
}


def _mac(key: bytes, kind: Kind, context: str, body: bytes) -> str:
    return hmac.digest(key, codec.mac_input(kind, context, 0, body), "sha256")[:_MAC_BYTES].hex()


def _framed(field: bytes) -> bytes:
    return len(field).to_bytes(8, "big") + field


class _EndMacs:
    """The end-record MACs of one set under one key: the MAC's state after the fields
    every record of the set shares (magic, kind "end", the hash's key) is computed once,
    so proving a set of 100 000 sub-jobs costs a copy and two short updates each."""

    def __init__(self, key: bytes, jobset_id: str) -> None:
        shared = (codec.MAGIC, Kind.END.value.encode(), ends_key(jobset_id).encode())
        self._base = hmac.new(key, b"".join(map(_framed, shared)), "sha256")

    def token(self, index: int, letter: str) -> str:
        mac = self._base.copy()
        mac.update(_framed(str(check_index(index)).encode()) + _framed(letter.encode()))
        return letter + mac.digest()[:_MAC_BYTES].hex()


def end_token(key: bytes, jobset_id: str, index: int, letter: str) -> str:
    """The value of sub-job ``index``'s end record: its letter, then the MAC."""
    return _EndMacs(key, jobset_id).token(index, letter)


def cancel_token(key: bytes, jobset_id: str) -> str:
    """The value of the set's durable cancel mark: proof that a key holder cancelled it."""
    return _mac(key, Kind.CANCEL, cancel_key(jobset_id), _CANCELLED_BODY)


def _text(raw: object) -> str | None:
    if isinstance(raw, bytes):
        return raw.decode("ascii", errors="replace")
    return raw if isinstance(raw, str) else None


def verified_letter(macs: Sequence[_EndMacs], index: int, raw: object) -> str | None:
    text = _text(raw)
    if not text or text[0] not in _LETTER_STATUS:
        return None
    letter = text[0]
    if any(hmac.compare_digest(text, m.token(index, letter)) for m in macs):
        return letter
    return None


def cancel_proven(client: Any, settings: Settings, jobset_id: str) -> bool:
    """Whether the set's cancel mark carries a valid MAC (a marker "1" does not)."""
    text = _text(client.get(cancel_key(jobset_id)))
    return bool(text) and any(
        hmac.compare_digest(text or "", cancel_token(k, jobset_id))
        for k in settings.verify_keys
        if k
    )


def write_end(pipe: Any, settings: Settings, jobset_id: str, index: int, letter: str) -> None:
    """Queue on ``pipe`` the end record of sub-job ``index`` (a final ``letter``)."""
    key, token = ends_key(jobset_id), end_token(settings.secret_key, jobset_id, index, letter)
    pipe.hset(key, str(check_index(index)), token)
    pipe.expire(key, settings.result_ttl_s)


def forget_ends(pipe: Any, jobset_id: str, indices: Iterable[int]) -> None:
    """Queue on ``pipe`` the removal of end records: those sub-jobs run again."""
    fields = [str(check_index(i)) for i in indices]
    if fields:
        pipe.hdel(ends_key(jobset_id), *fields)


def record_move(
    client: Any, settings: Settings, ref: SubJobRef, letter: str, *, start: bool = False
) -> None:
    """Move the tally (:func:`.tally.move`) and, for a final letter, write the end
    record first, in one round trip; back to not started drops the record.  A failure is
    logged, never raised: the sub-job's own outcome is stored already."""
    try:
        pipe = client.pipeline(transaction=False)
        if letter in tally.FINAL_LETTERS:
            write_end(pipe, settings, ref.jobset_id, ref.index, letter)
        elif letter == tally.RESET:
            forget_ends(pipe, ref.jobset_id, [ref.index])
        tally.move(pipe, ref.jobset_id, ref.index, letter, ttl_s=settings.result_ttl_s, start=start)
        pipe.execute()
    except Exception:
        logger.warning("could not tally sub-job %d of %s", ref.index, ref.jobset_id, exc_info=True)


def _result_letter(store: SignedStore, jobset_id: str, index: int, blob: object) -> str | None:
    try:
        result = store.decode(Kind.RESULT, (jobset_id, index), blob)
    except JobSetError:
        return None
    if not isinstance(result, Result):
        return None
    return tally.DONE if result.success else tally.FAILED


def proven_letters(store: SignedStore, jobset_id: str, total: int) -> dict[int, str]:
    """The final letter of each sub-job whose end is proven (see the module doc)."""
    client, settings = store.client, store.settings
    macs = [_EndMacs(k, jobset_id) for k in settings.verify_keys if k]
    letters: dict[int, str] = {}
    for start in range(0, total, _CHUNK):
        indices = range(start, min(total, start + _CHUNK))
        raw = client.hmget(ends_key(jobset_id), [str(i) for i in indices])
        for index, value in zip(indices, raw, strict=True):
            letter = verified_letter(macs, index, value) if value else None
            if letter is not None:
                letters[index] = letter
    missing = [i for i in range(total) if i not in letters]
    if missing and cancel_proven(client, settings, jobset_id):
        return {**letters, **dict.fromkeys(missing, tally.CANCELLED)}
    for start in range(0, len(missing), _CHUNK):
        chunk = missing[start : start + _CHUNK]
        blobs = client.mget([store.key(Kind.RESULT, (jobset_id, i)) for i in chunk])
        for index, blob in zip(chunk, blobs, strict=True):
            letter = _result_letter(store, jobset_id, index, blob) if blob else None
            if letter is not None:
                letters[index] = letter
    return letters


def proven_status(store: SignedStore, jobset_id: str, total: int) -> tuple[JobStatus | None, int]:
    """The set's final status as its proofs give it, or None while any sub-job's end is
    unproven; and how many ends are proven."""
    letters = proven_letters(store, jobset_id, total)
    if len(letters) < total:
        return None, len(letters)
    counted = Counter(_LETTER_STATUS[letter] for letter in letters.values())
    return aggregate_counts(counted, total), total
