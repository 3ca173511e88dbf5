"""One SASL_SSL broker (SCRAM-SHA-512, StandardAuthorizer) for the module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.broker import free_port
from tests.helpers.secure import SecureBroker


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    """A secured broker on free ports with users FR, DE, NL, an outsider (XX), an auditor and
    the operator;
    stopped and wiped at the end."""
    broker = SecureBroker(
        tmp_path_factory.mktemp("secure"),
        free_port(),
        free_port(),
        users=("FR", "DE", "NL", "XX", "auditor"),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        broker.reset()
