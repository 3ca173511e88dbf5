"""Exporting topic history to an Avro object container file, and reading it back.

Layout: a standard Avro object container (``Obj\\x01`` magic, header with the writer
schema and metadata, deflate-compressed blocks), readable by any Avro tool. Each
datum is one Kafka record exactly as it was on the bus: :data:`ARCHIVE_SCHEMA`
(topic, partition, offset, timestamp in ms since the epoch, key bytes, value bytes).
The header metadata key :data:`META_KEY` holds a JSON description of the export
(source cluster, topics, offset ranges, time filter, when it was written). A replay
of the archive verifies the very same bytes as a replay from the bus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import fastavro
from fastavro.write import Writer

from exchange.audit.reader import RawRecord, to_ms
from exchange.errors import InputError

META_KEY = "ncp.audit.export"

ARCHIVE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "KafkaRecord",
    "namespace": "eu.ncp.exchange.audit",
    "doc": "One Kafka record of the federation's topics, as it was on the bus.",
    "fields": [
        {"name": "topic", "type": "string", "doc": "The topic the record was read from."},
        {"name": "partition", "type": "int", "doc": "Its partition."},
        {"name": "offset", "type": "long", "doc": "Its offset in the partition."},
        {
            "name": "timestamp",
            "type": "long",
            "doc": "The Kafka record timestamp, milliseconds since 1970-01-01T00:00:00Z.",
        },
        {"name": "key", "type": ["null", "bytes"], "doc": "The record key bytes, if any."},
        {"name": "value", "type": ["null", "bytes"], "doc": "The record value bytes, if any."},
    ],
}
_PARSED = fastavro.parse_schema(ARCHIVE_SCHEMA)
_FIELDS = [f["name"] for f in ARCHIVE_SCHEMA["fields"]]


class ArchiveWriter:
    """Writes records to an open binary file; :meth:`close` flushes the last block."""

    def __init__(self, fo: IO[bytes], description: dict[str, Any]) -> None:
        meta = json.dumps(description, sort_keys=True, separators=(",", ":"))
        self._writer = Writer(fo, _PARSED, codec="deflate", metadata={META_KEY: meta})
        self.count = 0

    def write_batch(self, batch: Sequence[RawRecord]) -> None:
        """Append records."""
        write = self._writer.write
        for topic, partition, offset, ts, key, value in batch:
            write(
                {
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "timestamp": ts,
                    "key": key,
                    "value": value,
                }
            )
        self.count += len(batch)

    def close(self) -> None:
        """Write the last block out."""
        self._writer.flush()


def _bad(path: Path, reason: str) -> InputError:
    return InputError([("archive", f"{path}: {reason}")])


def read_description(path: Path) -> dict[str, Any]:
    """The export description stored in the archive's header."""
    try:
        with path.open("rb") as fo:
            meta = fastavro.reader(fo).metadata.get(META_KEY)
    except OSError as exc:
        raise _bad(path, exc.strerror or str(exc)) from None
    except Exception as exc:  # fastavro raises bare ValueError/EOFError/... on bad files
        raise _bad(path, f"not an Avro object container ({type(exc).__name__}: {exc})") from None
    if meta is None:
        raise _bad(path, f"no {META_KEY} metadata: not an exchange audit export")
    try:
        described: dict[str, Any] = json.loads(meta)
    except ValueError as exc:
        raise _bad(path, f"{META_KEY} metadata is not JSON: {exc}") from None
    return described


def read_archive(
    path: Path,
    *,
    topics: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_records: int = 2000,
) -> Iterator[list[RawRecord]]:
    """The archived records in batches, filtered by topic and ``since <= timestamp < until``.

    Raises :class:`InputError` naming the archive when it cannot be read or is not an
    exchange audit export.
    """
    wanted = set(topics) if topics else None
    since_ms, until_ms = to_ms(since), to_ms(until)
    read_description(path)
    try:
        with path.open("rb") as fo:
            reader = fastavro.reader(fo)
            schema: Any = reader.writer_schema
            fields = schema.get("fields", []) if isinstance(schema, dict) else []
            names = [f.get("name") for f in fields]
            if names != _FIELDS:
                raise _bad(path, f"unexpected record fields {names}, expected {_FIELDS}")
            batch: list[RawRecord] = []
            for d in reader:
                rec: Any = d
                ts = rec["timestamp"]
                if wanted is not None and rec["topic"] not in wanted:
                    continue
                if (since_ms is not None and ts < since_ms) or (
                    until_ms is not None and ts >= until_ms
                ):
                    continue
                batch.append(
                    (rec["topic"], rec["partition"], rec["offset"], ts, rec["key"], rec["value"])
                )
                if len(batch) >= batch_records:
                    yield batch
                    batch = []
            if batch:
                yield batch
    except InputError:
        raise
    except OSError as exc:
        raise _bad(path, exc.strerror or str(exc)) from None
    except Exception as exc:  # a truncated or corrupt block
        raise _bad(path, f"unreadable Avro data ({type(exc).__name__}: {exc})") from None
