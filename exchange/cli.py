"""The ``exchange`` console script.

Sub-command groups register themselves: each module below (and each
``exchange.commands`` entry point, which is how ``nodes`` adds ``node`` and
``alert`` without ``exchange`` importing it) exposes
``register(subparsers) -> None`` and sets ``func`` on its parsers; ``func(args)``
returns the exit code. A command imports only its own group's module when that can be
told from its name (see :func:`build_parser`); ``exchange --help`` loads them all.
Exit codes: 0 success, 1 the checked thing is bad (violations, failed verification),
2 usage, input or connection errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from exchange.errors import ExchangeError, InputError

#: Built-in command groups, as "module:function".
BUILTIN_GROUPS = (
    "exchange.commands.federation:register",
    "exchange.commands.keys:register",
    "exchange.commands.trust:register",
    "exchange.commands.schemas:register",
    "exchange.audit.cli:register",
    "exchange.commands.admin:register",
)

Register = Callable[[Any], None]


def _load(spec: str) -> Register:
    module, _, attr = spec.partition(":")
    fn: Register = getattr(importlib.import_module(module), attr)
    return fn


def _parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog="exchange",
        description=(
            "Federated exchange of cyber-crime intelligence between EU national contact points."
        ),
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    return parser, sub


def _may_register(group: str, spec: str) -> bool:
    """Whether the built-in ``spec`` is the likely home of ``group`` (its module path names
    it: ``exchange.commands.trust``, ``exchange.audit.cli``)."""
    return group in spec.partition(":")[0].split(".")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``exchange`` parser with every command group; or, given the ``argv`` to parse,
    with only the group it names when that group's module can be told without importing the
    others (a built-in whose module path names the group, an entry point of that name).
    Anything else (``--help``, no group, a group registered under another name or unknown)
    gets every group, so usage and errors are the same either way."""
    group = argv[0] if argv and not argv[0].startswith("-") else None
    plugins = entry_points(group="exchange.commands")
    if group is not None:
        parser, sub = _parser()
        for spec in BUILTIN_GROUPS:
            if _may_register(group, spec):
                _load(spec)(sub)
        for ep in plugins:
            if ep.name == group:
                ep.load()(sub)
        if group in sub.choices:
            return parser
    parser, sub = _parser()
    for spec in BUILTIN_GROUPS:
        _load(spec)(sub)
    for ep in plugins:
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return func(args)
    except InputError as exc:
        for field, reason in exc.problems:
            print(f"error: {field}: {reason}", file=sys.stderr)
        return 2
    except ExchangeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
