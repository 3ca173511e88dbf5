"""Every entry has one canonical form, and anything that is not an entry is refused."""

from __future__ import annotations

import pytest

from exchange.blacklist import entry_items
from exchange.blacklist import normalize as n
from exchange.blacklist.entries_file import parse_additions, parse_removals
from tests.helpers.federation import NOW


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  example.com ", "example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.Example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # UTS 46 non-transitional: ß is kept, not mapped to ss
    ],
)
def test_domains_are_lower_case_a_labels_without_trailing_dot(given: str, canonical: str) -> None:
    assert n.domain(given) == canonical


@pytest.mark.parametrize(
    "bad", ["", ".", "localhost", "exa mple.com", "-bad.example", "a..b", "1.2.3.4"]
)
def test_what_is_not_a_domain_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"domain|required|numeric"):
        n.domain(bad)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x?q=%2f#frag", "https://example.com:8443/x?q=%2F"),
        ("http://Bücher.example/p", "http://xn--bcher-kva.example/p"),
        ("http://[2001:DB8::1]/", "http://[2001:db8::1]/"),
        ("ftp://example.com:21/f", "ftp://example.com/f"),
    ],
)
def test_urls_have_one_canonical_form(given: str, canonical: str) -> None:
    assert n.url(given) == canonical


@pytest.mark.parametrize(
    "bad", ["example.com/path", "javascript:alert(1)", "http://user:pw@example.com/", "http:// x"]
)
def test_what_is_not_a_blockable_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"URL|url|scheme|host|space"):
        n.url(bad)


def test_hashes_are_lower_case_hex_of_their_algorithm_length() -> None:
    assert n.file_hash("AB" * 32, "SHA256") == "ab" * 32
    with pytest.raises(ValueError, match="64 hex digits"):
        n.file_hash("ab" * 16, "SHA256")
    with pytest.raises(ValueError, match="32 hex digits"):
        n.file_hash("zz" * 16, "MD5")
    with pytest.raises(ValueError, match="algorithm"):
        n.file_hash("ab" * 16, None)


def test_ip_addresses_and_networks_are_compressed_and_strict() -> None:
    assert n.ip("192.0.2.1") == "192.0.2.1"
    assert n.ip("192.0.2.0/24") == "192.0.2.0/24"
    assert n.ip("2001:DB8:0:0::/64") == "2001:db8::/64"
    assert n.ip("2001:db8::1/128") == "2001:db8::1"
    with pytest.raises(ValueError, match="host bits"):
        n.ip("192.0.2.1/24")
    with pytest.raises(ValueError, match="not an IP address"):
        n.ip("300.1.1.1")


def test_an_algorithm_on_a_non_hash_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="HASH entries only"):
        n.entry("DOMAIN", "example.com", "SHA256")


def test_an_entry_file_with_bad_lines_yields_every_problem_with_its_line() -> None:
    text = "\n".join(
        [
            "# comment",
            "DOMAIN good.example",
            "DOMAIN not a domain",
            "HASH SHA256 " + "ab" * 32,
            "HASH MD5 123",
            '{"kind": "IP", "value": "192.0.2.1/24"}',
            "URL http://good.example/x",
            "DOMAIN GOOD.example.",
        ]
    )
    entries, problems = parse_additions(text, category="OTHER", reason="r", now=NOW)
    assert [p[0] for p in problems] == ["line 3", "line 5", "line 6", "line 8"]
    assert "already on line 2" in problems[-1][1]
    assert {e.value for e in entries} == {"good.example", "ab" * 32, "http://good.example/x"}


def test_a_removal_file_is_normalized_like_additions() -> None:
    keys, problems = parse_removals("DOMAIN Good.Example.\nIP 10.0.0.0/8\nURL nope\n")
    assert keys == [("DOMAIN", "good.example", ""), ("IP", "10.0.0.0/8", "")]
    assert [p[0] for p in problems] == ["line 3"]


def test_entries_given_as_objects_are_normalized_and_each_problem_names_its_field() -> None:
    """The REST API's entries: canonical values, the change's reason as default, and every
    bad field named ``add[i].<field>``; a duplicate after normalization is refused too."""
    items = [
        {"kind": "domain", "value": "Good.Example.", "category": "OTHER"},
        {"kind": "HASH", "value": "AB" * 32, "algorithm": "SHA256", "category": "OTHER"},
        {"kind": "DOMAIN", "value": "good.example", "category": "OTHER"},
        {"kind": "URL", "value": "nope", "category": "NOT_ONE", "expires_at": "soon"},
        {"kind": "DOMAIN", "value": "x.example", "algorithm": "MD5", "category": "OTHER"},
    ]
    entries, problems = entry_items.parse_additions(items, reason="listed", now=NOW)
    assert [(e.value, e.reason) for e in entries] == [
        ("good.example", "listed"),
        ("ab" * 32, "listed"),
    ]
    assert [f for f, _ in problems] == [
        "add[2].value",
        "add[3].value",
        "add[3].category",
        "add[3].expires_at",
        "add[4].algorithm",
    ]
    keys, bad = entry_items.parse_removals([{"kind": "IP", "value": "10.0.0.0/8"}, {"kind": "X"}])
    assert keys == [("IP", "10.0.0.0/8", "")]
    assert [f for f, _ in bad] == ["remove[1].kind", "remove[1].value"]
