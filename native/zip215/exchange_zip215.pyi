"""ZIP-215 Ed25519 verification through ed25519-zebra (native/zip215/src/lib.rs)."""

from collections.abc import Sequence

from _typeshed import ReadableBuffer

RULE: str

def verify(public_key: ReadableBuffer, message: ReadableBuffer, signature: ReadableBuffer) -> bool:
    """Whether ``signature`` is valid for ``message`` by ``public_key`` (False on wrong lengths)."""

def verify_batch(
    items: Sequence[tuple[ReadableBuffer, ReadableBuffer, ReadableBuffer]],
) -> list[bool]:
    """The verdict of each ``(public_key, message, signature)``, in order (one batch check)."""
