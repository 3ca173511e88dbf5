"""``exchange stats publish|report`` on a node's store (no broker needed: publishing queues)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.cli import main
from tests.helpers.federation import Federation, make_federation


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return make_federation(tmp_path / "fed")


def test_publish_queues_once_then_only_on_change(
    fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first publish of a period queues revision 1; the same counts queue nothing;
    --force queues revision 2, replacing 1."""
    config = str(fed.config_path("FR"))
    assert main(["stats", "publish", "--config", config, "--period", "2026-10"]) == 0
    assert "for 2026-10 revision 1" in capsys.readouterr().out
    assert main(["stats", "publish", "--config", config, "--period", "2026-10"]) == 0
    assert "unchanged since revision 1" in capsys.readouterr().out
    assert main(["stats", "publish", "--config", config, "--period", "2026-10", "--force"]) == 0
    assert "revision 2, replaces r1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["publish", "--period", "2026-13"], "--period"),
        (["report", "--out", "report.txt"], "--out"),
        (["report", "--since", "last tuesday"], "--since"),
        (["report", "--measure", "ARRESTS"], "--measure"),
    ],
)
def test_bad_options_exit_two_naming_the_option(
    fed: Federation, capsys: pytest.CaptureFixture[str], args: list[str], field: str
) -> None:
    """A bad period, output suffix, time or measure: exit 2, the option named."""
    code = main(["stats", args[0], "--config", str(fed.config_path("FR")), *args[1:]])
    assert code == 2
    assert f"error: {field}:" in capsys.readouterr().err


def test_report_on_a_store_without_indicators_says_so(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No indicators stored yet: the table says so and the JSON lists none."""
    out = tmp_path / "r.json"
    assert main(["stats", "report", "--config", str(fed.config_path("FR")), "--out", str(out)]) == 0
    assert "(no indicators in the window)" in capsys.readouterr().out
    assert '"indicators": []' in out.read_text()
