"""Fixtures for the statistics tests: a fresh three-member federation per integration test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.helpers.broker import unique_prefix
from tests.helpers.federation import NOW, Federation, make_federation


@pytest.fixture
def live_federation(tmp_path: Path, kafka_bootstrap: str) -> Federation:
    """FR, DE and NL on the real broker, under a topic prefix of their own."""
    return make_federation(
        tmp_path / "fed",
        prefix=unique_prefix(),
        bootstrap=kafka_bootstrap,
        valid_from=NOW - timedelta(days=30),
    )
