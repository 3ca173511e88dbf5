"""The ``exchange`` script loads only the command group a command names (when its module can
be told from the name), and parses every group exactly as with all groups loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from exchange.cli import build_parser, main


def _groups(parser: Any) -> dict[str, Any]:
    (action,) = [a for a in parser._actions if a.dest == "group"]
    return dict(action.choices)


def _shape(parser: Any) -> dict[str, Any]:
    """Each sub-command's options (flags and destinations), recursively."""
    out: dict[str, Any] = {}
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):
            out[action.dest] = {name: _shape(p) for name, p in action.choices.items()}
        else:
            out[str(action.option_strings or action.dest)] = action.dest
    return out


ALL = sorted(_groups(build_parser()))


def test_every_builtin_and_plugin_group_is_offered_by_the_full_parser() -> None:
    """Without a command, the parser holds the built-in groups and the nodes plugins' groups."""
    assert {"federation", "keys", "trust", "schemas", "audit", "admin"} <= set(ALL)
    assert {"node", "alert", "stats", "blacklist", "connector", "pseudonym"} <= set(ALL)


@pytest.mark.parametrize("group", ALL)
def test_a_command_gets_its_group_as_the_full_parser_has_it(group: str) -> None:
    """The parser built for ``exchange GROUP ...`` offers GROUP with the same actions and
    options as the parser with every group."""
    full = _groups(build_parser())[group]
    assert _shape(_groups(build_parser([group, "--help"]))[group]) == _shape(full)


def test_an_unknown_command_is_refused_naming_every_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``exchange nope`` exits 2 and its message lists every group, as before."""
    with pytest.raises(SystemExit) as exited:
        main(["nope"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err
    for group in ALL:
        assert f"'{group}'" in err


def test_a_command_imports_no_other_groups_module() -> None:
    """Parsing ``exchange keys id ...`` imports neither the node's nor the auditor's CLI
    (a fresh interpreter: the test process has them all loaded)."""
    probe = (
        "import json, sys; from exchange.cli import build_parser; "
        "build_parser(['keys', 'id', 'x.pub']); "
        "print(json.dumps([m for m in ('nodes.cli', 'exchange.audit.cli', 'aiokafka')"
        " if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
