"""Fixtures for the node tests: a real three-member federation (FR, DE, NL) on disk."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers.federation import NOW, Federation, make_federation


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """FR, DE and NL with keys valid since 30 days before NOW, topic prefix ``ncp``."""
    return make_federation(
        tmp_path_factory.mktemp("federation"), valid_from=NOW - timedelta(days=30)
    )
