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
    validated model), and a mismatch shows on first read as a ValueError.
    """

    __slots__ = ("_data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
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
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __contains__(self, key: object) -> bool:
        return key in self._parsed()

    def __repr__(self) -> str:
        return f"JsonText({self.text!r})"

    def __reduce__(self) -> tuple[type[JsonText], tuple[str]]:
        return (JsonText, (self.text,))
