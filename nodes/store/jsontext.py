"""A JSON object kept as its compact text: parsed only when something reads it.

An opened record's payload is written as JSON text once, where it is opened (in a worker
process, by pydantic's serializer); it crosses the process pool as that text and, when no
rule changes it, reaches the store as that same text. The consumer's process then neither
parses nor encodes it: a default rule chain reads the envelope's facts, not the payload.
A rule that reads a field parses the whole text once (then it is a dict); a rule that
changes the payload returns a new mapping, which the store encodes as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


class JsonText(Mapping[str, Any]):
    """A read-only mapping over the JSON object ``text`` (compact, as ``dump_json`` writes).

    ``text`` must be a JSON object; it is not checked here (the caller made it from a
    validated model), and a mismatch shows on first read as a ValueError. ``known``: some
    of its top-level values, read ahead by whoever wrote the text (the offence category, for
    the rules and the store's column): reading one of them does not parse the text.
    """

    __slots__ = ("_data", "known", "text")

    def __init__(self, text: str, known: Mapping[str, Any] | None = None) -> None:
        self.text = text
        self.known = known
        self._data: dict[str, Any] | None = None

    def _parsed(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            data = json.loads(self.text)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            self._data = data
        return data

    def __getitem__(self, key: str) -> Any:
        known = self.known
        if known is not None and self._data is None and key in known:
            return known[key]
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __contains__(self, key: object) -> bool:
        known = self.known
        if known is not None and self._data is None and key in known:
            return True
        return key in self._parsed()

    def __repr__(self) -> str:
        return f"JsonText({self.text!r})"

    def __reduce__(self) -> tuple[type[JsonText], tuple[str, Mapping[str, Any] | None]]:
        return (JsonText, (self.text, self.known))
