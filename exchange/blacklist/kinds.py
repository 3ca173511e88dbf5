"""The kinds of blacklist entry (the wire's BlacklistEntryKind); no imports, so the payload
models and the normalizer can both use it."""

from __future__ import annotations

from enum import StrEnum


class EntryKind(StrEnum):
    """What a list entry blocks."""

    URL = "URL"
    DOMAIN = "DOMAIN"
    HASH = "HASH"
    IP = "IP"
