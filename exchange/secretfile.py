"""Secrets read from files (a systemd credential, a mounted secret), never from argv."""

from __future__ import annotations

from pathlib import Path

from exchange.errors import InputError, Reason


def read_secret(path: Path, field: str) -> str:
    """The first line of ``path``, stripped; ``InputError(BAD_CONFIG)`` naming ``field`` when
    the file cannot be read or holds nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            [(field, f"cannot read {path}: {exc}")], reason=Reason.BAD_CONFIG
        ) from None
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise InputError([(field, f"{path} is empty")], reason=Reason.BAD_CONFIG)
    return secret
