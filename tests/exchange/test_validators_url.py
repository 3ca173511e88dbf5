"""The URL check's fast path accepts and refuses exactly what the general path does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.models import validators


def _verdict(check: object, value: str) -> bool:
    try:
        check(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


_schemes = st.sampled_from(["http", "https", "HTTPS", "ftp", "Ftp", "gopher", "http:", ""])
_hosts = st.one_of(
    st.sampled_from(
        [
            "example.com",
            "Example.COM.",
            "a-b.example",
            "-bad.example",
            "1.2.3.4",
            "1.2.3",
            "256.1.1.1",
            "localhost",
            "xn--bcher-kva.example",
            "ex_ample.com",
            ".",
            "a..b",
            "[::1]",
            "user@example.com",
            "example.123",
        ]
    ),
    st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
)
_ports = st.one_of(st.just(""), st.sampled_from([":80", ":65535", ":65536", ":", ":0", ":8a"]))
_paths = st.sampled_from(["", "/", "/a/b?c=d#e", "?q", "#f", "/%20x", "abc", "/ü"])


@settings(max_examples=400)
@given(_schemes, _hosts, _ports, _paths)
def test_fast_and_general_paths_agree(scheme: str, host: str, port: str, path: str) -> None:
    """For URL-like strings of every shape the fast path gives the general path's verdict."""
    value = f"{scheme}://{host}{port}{path}"
    assert _verdict(validators.url, value) == _verdict(validators._general_url, value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://phish.example/login", True),
        ("http://192.0.2.10:8080/x", True),
        ("http://example.com:65536/", False),
        ("javascript://example.com/", False),
        ("https://-bad-.example/", False),
        ("https://[2001:db8::1]/", True),
    ],
)
def test_url_verdicts(value: str, ok: bool) -> None:
    """Typical indicator URLs are judged as the URL rules say."""
    assert _verdict(validators.url, value) is ok
