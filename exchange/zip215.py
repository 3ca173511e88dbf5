"""Ed25519 signature verification under ZIP-215, the protocol's one rule.

The rule (``docs/signature-rule.md``): the cofactored check ``[8][S]B = [8]R + [8][k]A``,
non-canonical encodings of A and R accepted, S canonical (``S < l``). Under it single and
batch verification accept exactly the same signatures, so no verdict depends on what
else shares a batch.

Two backends give the same verdicts:

``"native"``
    ``exchange_zip215`` (``native/zip215``, built by ``make install`` where ``cargo`` is
    on PATH): ed25519-zebra through PyO3. :func:`verify_batch` does one batch check over
    all items and falls back to a single check of each only when the batch fails. Both
    functions release the GIL while verifying.
``"zebra-bindings"``
    the PyPI wheel ``py-ed25519-zebra-bindings`` (import ``ed25519_zebra``), also
    ed25519-zebra, single verification only: a batch is a loop of single checks, a
    quarter to a fifth of the native batch's speed (``tests/bench/bench_zip215.py``),
    holding the GIL. Importing this module without the native extension warns once with
    :class:`NativeVerifierMissingWarning`.

:data:`BACKEND` names the one in use. Malformed input is never an exception: a public
key that is not 32 bytes or a signature that is not 64 bytes is not a valid signature,
so it is False. Only a wrong type raises, as a caller's programming error: TypeError for
a value that is not bytes, bytearray or memoryview or a batch item that is not a tuple,
ValueError for a tuple that is not of three.

Pure and synchronous: call it from a worker thread or process, never on an event loop
with a large batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = [
    "BACKEND",
    "PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "Backend",
    "NativeVerifierMissingWarning",
    "bindings_backend",
    "native_backend",
    "verify",
    "verify_batch",
]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

ByteLike = bytes | bytearray | memoryview
Item = tuple[ByteLike, ByteLike, ByteLike]
"""One batch item: ``(public_key, message, signature)``."""


class NativeVerifierMissingWarning(RuntimeWarning):
    """The native verifier is not installed: verification runs through the slower wheel."""


MISSING_MESSAGE = (
    "the native ZIP-215 verifier (exchange_zip215) is not installed: verifying through "
    "py-ed25519-zebra-bindings, single checks only (install a Rust toolchain and run "
    "`make install` for batch verification)"
)


class Backend(NamedTuple):
    """One implementation of the rule: its name and its two functions."""

    name: str
    verify: Callable[[ByteLike, ByteLike, ByteLike], bool]
    verify_batch: Callable[[Sequence[Item]], list[bool]]


def native_backend() -> Backend:
    """The PyO3 extension ``exchange_zip215``; ImportError when it is not installed."""
    import exchange_zip215

    return Backend("native", exchange_zip215.verify, exchange_zip215.verify_batch)


def bindings_backend() -> Backend:
    """The ``py-ed25519-zebra-bindings`` wheel (single checks); ImportError without it."""
    from ed25519_zebra import ed_verify

    def as_bytes(value: ByteLike) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise TypeError(f"a bytes-like object is required, not {type(value).__name__!r}")

    def verify_one(public_key: ByteLike, message: ByteLike, signature: ByteLike) -> bool:
        key, msg, sig = as_bytes(public_key), as_bytes(message), as_bytes(signature)
        # The wheel returns False on wrong lengths too; checked here so that no future
        # version of it can turn them into an exception.
        if len(key) != PUBLIC_KEY_BYTES or len(sig) != SIGNATURE_BYTES:
            return False
        return bool(ed_verify(sig, msg, key))

    def verify_many(items: Sequence[Item]) -> list[bool]:
        verdicts = []
        for item in items:
            if not isinstance(item, tuple):
                raise TypeError(f"a batch item must be a tuple, not {type(item).__name__!r}")
            public_key, message, signature = item
            verdicts.append(verify_one(public_key, message, signature))
        return verdicts

    return Backend("zebra-bindings", verify_one, verify_many)


def _load() -> Backend:
    try:
        return native_backend()
    except ImportError:
        warnings.warn(MISSING_MESSAGE, NativeVerifierMissingWarning, stacklevel=3)
        return bindings_backend()


_backend = _load()
_verify = _backend.verify
_verify_batch = _backend.verify_batch

BACKEND: str = _backend.name
"""``"native"`` or ``"zebra-bindings"``: which backend :func:`verify` and
:func:`verify_batch` use."""


def verify(public_key: ByteLike, message: ByteLike, signature: ByteLike) -> bool:
    """Whether ``signature`` is a valid ZIP-215 signature of ``message`` by ``public_key``.

    Wrong lengths give False; never raises on any bytes given.
    """
    return _verify(public_key, message, signature)


def verify_batch(items: Sequence[Item]) -> list[bool]:
    """The verdict of each ``(public_key, message, signature)`` item, in order.

    With the native backend: one batch check, then single checks only if it fails, so
    exactly the bad items are False. The verdicts are those of :func:`verify` on each.
    """
    return _verify_batch(items)
