"""The pseudonym CSV: good rows kept, every bad row named with its line and reason."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.pseudonyms.csvfile import parse_text

HEADER = "platform,handle,case_reference,contact_unit,first_seen,last_seen\n"


def test_good_rows_are_normalized_and_kept_beside_bad_ones() -> None:
    """Line 3 and 5 are wrong; lines 2 and 4 are imported; each problem names its line."""
    text = (
        HEADER
        + "Telegram,@Seller,DE-1,BKA,2026-10-01,2026-10-02\n"
        + "Telegram,two words,DE-2,BKA,2026-10-01,\n"
        + "X,bob,DE-3,BKA,2026-10-01T12:00:00+02:00,\n"
        + "X,carol,,BKA,yesterday,2026-10-01\n"
    )
    result = parse_text(text)
    assert [(e.platform, e.handle, e.case_reference) for e in result.entries] == [
        ("telegram", "seller", "DE-1"),
        ("x", "bob", "DE-3"),
    ]
    assert result.entries[1].first_seen == datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
    assert result.entries[1].last_seen == result.entries[1].first_seen
    assert [str(p) for p in result.problems] == [
        "line 3: handle: a handle has no inner white space",
        "line 5: case_reference: is empty",
        "line 5: first_seen: not an ISO 8601 time: 'yesterday'",
    ]


def test_last_seen_before_first_seen_is_refused() -> None:
    """A window that ends before it starts is a bad row."""
    result = parse_text(HEADER + "x,bob,C1,U1,2026-10-02,2026-10-01\n")
    assert result.entries == []
    assert [str(p) for p in result.problems] == ["line 2: last_seen: is before first_seen"]


def test_a_header_missing_or_adding_columns_refuses_the_file_on_line_one() -> None:
    """Unknown or missing columns: nothing is read, the header is named."""
    result = parse_text("platform,handle,notes\nx,bob,hi\n")
    assert result.entries == []
    assert [p.line for p in result.problems] == [1, 1]
    assert "case_reference" in result.problems[0].reason
    assert "notes" in result.problems[1].reason


def test_a_row_with_more_fields_than_the_header_is_refused() -> None:
    """Extra fields are not silently dropped."""
    result = parse_text(HEADER + "x,bob,C1,U1,2026-10-01,,surplus\n")
    assert [str(p) for p in result.problems] == ["line 2: row: more fields than the header names"]
