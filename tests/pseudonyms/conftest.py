"""Fixtures for the pseudonym tests: a live three-member federation per test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers.broker import unique_prefix
from tests.helpers.federation import NOW, Federation, make_federation
from tests.helpers.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


@pytest.fixture
def live_federation(tmp_path: Path, kafka_bootstrap: str) -> Federation:
    """FR, DE, NL with their own folder, stores and topic prefix on the real broker."""
    return make_federation(
        tmp_path / "fed",
        prefix=unique_prefix(),
        bootstrap=kafka_bootstrap,
        valid_from=NOW - timedelta(days=30),
    )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=[pytest.mark.integration, pytest.mark.postgres]),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    return str(request.getfixturevalue("postgres_url"))
