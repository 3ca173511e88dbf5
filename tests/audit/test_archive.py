"""The audit archive: an Avro object container of raw Kafka records (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from exchange.audit.archive import (
    ARCHIVE_SCHEMA,
    META_KEY,
    ArchiveWriter,
    read_archive,
    read_description,
)
from exchange.audit.reader import RawRecord
from exchange.errors import InputError

RECORDS: list[RawRecord] = [
    ("ncp.alerts.v1", 0, 0, 1_000, b"k0", b"v0"),
    ("ncp.alerts.v1", 1, 7, 2_000, None, b"\x00\xff"),
    ("ncp.indicators.v1", 0, 3, 3_000, b"k2", None),
]


def write(path: Path, records: list[RawRecord]) -> None:
    with path.open("wb") as fo:
        w = ArchiveWriter(fo, {"source": {"kind": "test"}})
        w.write_batch(records)
        w.close()
    assert w.count == len(records)


def test_round_trip_keeps_every_field_and_byte(tmp_path: Path) -> None:
    """Records written to an archive read back identical, nulls and raw bytes included."""
    path = tmp_path / "a.avro"
    write(path, RECORDS)
    got = [r for batch in read_archive(path) for r in batch]
    assert got == RECORDS
    assert read_description(path) == {"source": {"kind": "test"}}


def test_archive_is_a_standard_avro_container(tmp_path: Path) -> None:
    """Any Avro reader reads the archive: the schema is stored and the records decode."""
    path = tmp_path / "a.avro"
    write(path, RECORDS)
    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        assert reader.metadata["avro.codec"] == "deflate"
        assert META_KEY in reader.metadata
        rows: list[Any] = list(reader)
    assert [r["offset"] for r in rows] == [0, 7, 3]
    parsed: Any = fastavro.parse_schema(ARCHIVE_SCHEMA)
    assert parsed["name"] == "eu.ncp.exchange.audit.KafkaRecord"


def test_read_filters_by_topic_and_time(tmp_path: Path) -> None:
    """Reading applies the topic filter and since <= timestamp < until."""
    path = tmp_path / "a.avro"
    write(path, RECORDS)
    since = datetime.fromtimestamp(1.5, UTC)
    until = datetime.fromtimestamp(3.0, UTC)
    got = [r for b in read_archive(path, since=since, until=until) for r in b]
    assert [r[2] for r in got] == [7]
    got = [r for b in read_archive(path, topics=["ncp.indicators.v1"]) for r in b]
    assert [r[2] for r in got] == [3]


def test_batches_are_bounded(tmp_path: Path) -> None:
    """Records come in batches of at most batch_records."""
    path = tmp_path / "a.avro"
    write(path, RECORDS * 5)
    sizes = [len(b) for b in read_archive(path, batch_records=4)]
    assert sizes == [4, 4, 4, 3]


def test_not_an_avro_file_is_refused_naming_the_archive(tmp_path: Path) -> None:
    """Garbage instead of an archive: InputError naming the file, no fastavro exception."""
    path = tmp_path / "bad.avro"
    path.write_bytes(b"not avro at all")
    with pytest.raises(InputError, match="not an Avro object container") as info:
        list(read_archive(path))
    assert info.value.problems[0][0] == "archive"


def test_other_avro_file_is_refused(tmp_path: Path) -> None:
    """An Avro file that is not an audit export is refused with the reason."""
    path = tmp_path / "other.avro"
    with path.open("wb") as fo:
        fastavro.writer(fo, {"type": "record", "name": "X", "fields": []}, [{}])
    with pytest.raises(InputError, match="not an exchange audit export"):
        list(read_archive(path))


def test_truncated_archive_is_refused(tmp_path: Path) -> None:
    """A truncated archive is refused as unreadable rather than read in part silently."""
    path = tmp_path / "a.avro"
    write(path, RECORDS * 200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(InputError, match="unreadable Avro data"):
        list(read_archive(path))


def test_missing_archive_is_refused(tmp_path: Path) -> None:
    """A missing archive file: InputError naming it."""
    with pytest.raises(InputError, match=r"missing\.avro"):
        list(read_archive(tmp_path / "missing.avro"))
