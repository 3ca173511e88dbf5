"""Fixtures for the pseudonym tests: a live three-member federation per test."""

from __future__ import annotations

from tests.helpers.postgres import postgres_server, postgres_url, store_url

__all__ = ["postgres_server", "postgres_url", "store_url"]
