"""The three-broker cluster tests: marked ``cluster``, run by ``.ci/run`` after ``make test``
(``pytest -m cluster tests/cluster``), deselected from every run that does not ask for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.cluster import LocalCluster


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "cluster" in (config.getoption("markexpr") or ""):
        return
    skipped = [i for i in items if i.get_closest_marker("cluster") is not None]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [i for i in items if i.get_closest_marker("cluster") is None]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Three brokers on free ports; stopped and wiped at the end."""
    c = LocalCluster()
    c.start()
    try:
        yield c
    finally:
        c.stop()
        c.reset()
