"""``exchange schemas``: check schema evolution and documentation; list fingerprints.

``exchange schemas check [--schemas DIR]`` fails (exit 1) when the current schemas
cannot read data written with any released version under ``DIR/history/<version>/``
(Avro schema resolution, the new schema as reader and the old as writer), naming
the release, record and field and why; or when a record, enum, fixed or field has
no ``doc``. ``exchange schemas list`` prints every schema's fingerprint.

Releasing: copy ``schemas/*.avsc`` to ``schemas/history/<next version>/`` in the
release commit; from then on the check holds every later change to it.

Beyond Avro's rules the check also refuses a changed ``logicalType`` (the bytes
would still resolve, but their meaning would not).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.codec import SchemaRegistry

__all__ = ["compatibility_problems", "doc_problems", "register", "run_check"]

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "error", "enum", "fixed")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _named_types(schema: Any, namespace: str = "") -> dict[str, dict[str, Any]]:
    """Every named type defined in an expanded schema: full name -> definition."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, ns)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                full = _full(node["name"], node.get("namespace", ns))
                found[full] = node
                ns = full.rpartition(".")[0]
                for fld in node.get("fields", []):
                    walk(fld["type"], ns)
            elif kind == "array":
                walk(node["items"], ns)
            elif kind == "map":
                walk(node["values"], ns)
            elif isinstance(kind, dict | list):
                walk(kind, ns)

    walk(schema, namespace)
    return found


def _full(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _short(name: str) -> str:
    return name.rpartition(".")[2]


@dataclass
class _Resolver:
    """Avro schema resolution rules, reader (new) against writer (old)."""

    reader_names: dict[str, dict[str, Any]]
    writer_names: dict[str, dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)

    @staticmethod
    def _deref(node: Any, names: dict[str, dict[str, Any]]) -> Any:
        """A named reference -> its definition; a primitive name -> ``{"type": name}``."""
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return {"type": node}
            if node in names:
                return names[node]
            return next((d for f, d in names.items() if _short(f) == node), {"type": node})
        return node

    @staticmethod
    def _kind(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, list):
            return "union"
        kind = node.get("type")
        return kind if isinstance(kind, str) else "union"

    @staticmethod
    def _describe(node: Any) -> str:
        if isinstance(node, dict) and "name" in node:
            return f"{node['type']} {_short(node['name'])}"
        if isinstance(node, dict):
            logical = node.get("logicalType")
            return f"{node['type']} ({logical})" if logical else str(node["type"])
        if isinstance(node, list):
            return "union"
        return str(node)

    def matches(self, reader: Any, writer: Any) -> bool:
        """Whether writer data can be read as reader, without recording problems."""
        trial = _Resolver(self.reader_names, self.writer_names, seen=set(self.seen))
        trial.check(reader, writer, "")
        return not trial.problems

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = self._deref(reader, self.reader_names)
        writer = self._deref(writer, self.writer_names)
        rk, wk = self._kind(reader), self._kind(writer)
        if wk == "union":
            for branch in writer if isinstance(writer, list) else []:
                if rk == "union":
                    if not any(self.matches(r, branch) for r in reader):
                        self._unmatched_branch(reader, branch, path)
                else:
                    self.check(reader, branch, path)
            return
        if rk == "union":
            if not any(self.matches(r, writer) for r in reader):
                self.problems.append(
                    f"{path}: type changed from {self._describe(writer)} to a union without it"
                )
            return
        if rk != wk:
            if wk in _PROMOTIONS and rk in _PROMOTIONS[wk]:
                return
            self.problems.append(
                f"{path}: type changed incompatibly from {self._describe(writer)}"
                f" to {self._describe(reader)}"
            )
            return
        if isinstance(reader, dict) and isinstance(writer, dict):
            r_logical, w_logical = reader.get("logicalType"), writer.get("logicalType")
            if r_logical != w_logical:
                self.problems.append(
                    f"{path}: logical type changed from {w_logical} to {r_logical}"
                    " (same bytes, different meaning)"
                )
            if rk in ("record", "error"):
                self._check_record(reader, writer, path)
            elif rk == "enum":
                self._check_enum(reader, writer, path)
            elif rk == "fixed":
                self._check_fixed(reader, writer, path)
            elif rk == "array":
                self.check(reader["items"], writer["items"], f"{path}[]")
            elif rk == "map":
                self.check(reader["values"], writer["values"], f"{path}{{}}")

    def _unmatched_branch(self, reader: list[Any], branch: Any, path: str) -> None:
        """Explain why no reader branch reads an old writer branch."""
        branch = self._deref(branch, self.writer_names)
        kind = self._kind(branch)
        name = _short(branch.get("name", "")) if isinstance(branch, dict) else ""
        for candidate in reader:
            resolved = self._deref(candidate, self.reader_names)
            if self._kind(resolved) == kind and (
                not name or _short(resolved.get("name", "")) == name
            ):
                self.check(resolved, branch, path)  # records the specific problem
                return
        self.problems.append(
            f"{path}: the union no longer accepts {self._describe(branch)}"
            " that old writers may have written"
        )

    def _names_match(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> bool:
        names = {_short(reader["name"]), *(_short(a) for a in reader.get("aliases", []))}
        if _short(writer["name"]) not in names:
            self.problems.append(
                f"{path}: {writer['type']} {_short(writer['name'])} renamed to"
                f" {_short(reader['name'])} without an alias"
            )
            return False
        return True

    def _check_record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if not self._names_match(reader, writer, path):
            return
        pair = (reader["name"], writer["name"])
        if pair in self.seen:
            return
        self.seen.add(pair)
        record = _short(reader["name"])
        old = {f["name"]: f for f in writer["fields"]}
        for fld in reader["fields"]:
            here = f"{path}.{fld['name']}" if path else fld["name"]
            source = next(
                (old[n] for n in (fld["name"], *fld.get("aliases", [])) if n in old), None
            )
            if source is None:
                if "default" not in fld:
                    self.problems.append(
                        f"{here}: field {fld['name']!r} of record {record} was added without a"
                        " default, so data written before it cannot be read"
                    )
                continue
            self.check(fld["type"], source["type"], here)

    def _check_enum(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if not self._names_match(reader, writer, path):
            return
        removed = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if removed and "default" not in reader:
            self.problems.append(
                f"{path}: enum {_short(reader['name'])} lost symbol(s) {', '.join(removed)}"
                " and has no default to read them as"
            )

    def _check_fixed(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if self._names_match(reader, writer, path) and reader["size"] != writer["size"]:
            self.problems.append(
                f"{path}: fixed {_short(reader['name'])} size changed from"
                f" {writer['size']} to {reader['size']}"
            )


def compatibility_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (expanded schemas)."""
    resolver = _Resolver(_named_types(reader), _named_types(writer))
    resolver.check(reader, writer, _short(reader["name"]))
    return resolver.problems


def doc_problems(schema: dict[str, Any]) -> Iterator[str]:
    """Every named type and every field without a non-empty ``doc``."""
    for full, definition in _named_types(schema).items():
        if not str(definition.get("doc", "")).strip():
            yield f"{_short(full)}: {definition['type']} has no doc"
        for fld in definition.get("fields", []):
            if not str(fld.get("doc", "")).strip():
                yield f"{_short(full)}.{fld['name']}: field has no doc"


def run_check(root: Path | None = None) -> tuple[list[str], SchemaRegistry]:
    """(problems, registry) for the schema folder ``root`` (default: the installed one)."""
    registry = SchemaRegistry(root)
    current = registry.names()
    problems = sorted({p for name in current for p in doc_problems(_schema(registry, name))})
    for version, schemas in registry.versions().items():
        for name, old in schemas.items():
            if name not in current:
                problems.append(
                    f"release {version}: {_short(name)} was removed; its data can no longer be read"
                )
                continue
            new = registry.current(name)
            if new.schema == old.schema:
                continue
            problems.extend(
                f"release {version}: {p}" for p in compatibility_problems(new.schema, old.schema)
            )
    return problems, registry


def _schema(registry: SchemaRegistry, name: str) -> dict[str, Any]:
    return registry.current(name).schema


def _check(args: argparse.Namespace) -> int:
    problems, registry = run_check(Path(args.schemas) if args.schemas else None)
    for problem in problems:
        print(f"error: {problem}")
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    releases = ", ".join(registry.versions()) or "none"
    print(f"ok: {len(registry.names())} schemas documented; compatible with releases: {releases}")
    return 0


def _list(args: argparse.Namespace) -> int:
    registry = SchemaRegistry(Path(args.schemas) if args.schemas else None)
    for ps in registry.all():
        print(f"{ps.fingerprint.hex()}  {ps.version:>8}  {ps.name}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``exchange schemas check|list``."""
    group = subparsers.add_parser("schemas", help="check and list the Avro schemas")
    sub = group.add_subparsers(dest="schemas_command", metavar="ACTION")
    sub.required = True
    for name, func, text in (
        ("check", _check, "check documentation and compatibility with released versions"),
        ("list", _list, "print each schema's fingerprint (current and released)"),
    ):
        parser = sub.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--schemas",
            metavar="DIR",
            help="schema folder with history/<version>/ (default: the installed schemas)",
        )
        parser.set_defaults(func=func)
