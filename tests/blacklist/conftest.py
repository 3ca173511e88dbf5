"""Fixtures for the blacklist tests: the store on each backend, and delta builders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import pytest

from exchange.blacklist.deltas import Delta, parse_delta
from nodes.blacklist.db import BlacklistDB, opened
from tests.helpers.federation import NOW
from tests.helpers.postgres import postgres_server, postgres_url, store_url

__all__ = ["postgres_server", "postgres_url", "store_url"]


@pytest.fixture
async def db(store_url: str) -> AsyncIterator[BlacklistDB]:
    """The blacklist tables of a fresh store on each backend."""
    async with opened(store_url) as found:
        yield found


def delta(
    sender: str,
    list_id: str,
    base: int,
    version: int,
    added: Sequence[tuple[str, str]] = (),
    removed: Sequence[tuple[str, str]] = (),
    *,
    kind: str = "DELTA",
    category: str = "CHILD_SEXUAL_ABUSE_MATERIAL",
    expires_at: datetime | None = None,
    at: datetime = NOW,
) -> Delta:
    """A canonical delta; entries as (kind, value) pairs (HASH values as 'ALGO:hex')."""

    def item(k: str, v: str) -> dict[str, Any]:
        algo = None
        if k == "HASH":
            algo, v = v.split(":", 1)
        return {"kind": k, "value": v, "algorithm": algo}

    return parse_delta(
        sender,
        {
            "list_id": list_id,
            "base_version": base,
            "version": version,
            "kind": kind,
            "reason": "test",
            "added": [
                {
                    **item(k, v),
                    "category": category,
                    "added_at": at.isoformat(),
                    "expires_at": None if expires_at is None else expires_at.isoformat(),
                }
                for k, v in added
            ],
            "removed": [item(k, v) for k, v in removed],
        },
    )
