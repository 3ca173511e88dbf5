"""One canonical form per blacklist entry, so that two members listing the same thing agree.

- DOMAIN: trimmed, trailing dot dropped, lower case, IDNA (UTS 46, non-transitional) to
  its ASCII A-label form (``Bücher.Example.`` -> ``xn--bcher-kva.example``); at least two
  labels, no numeric top-level label.
- URL: scheme and host lower case (host as a DOMAIN, or an IP address), default port
  dropped (80 http, 443 https, 21 ftp), empty path -> ``/``, fragment dropped, user info
  refused, percent escapes in upper-case hex; path and query otherwise kept as given.
- HASH: trimmed, lower-case hex of the algorithm's length (MD5 32, SHA1 40, SHA256 64,
  SHA512 128).
- IP: an address (``2001:db8::1``, ``192.0.2.1``) or a network in CIDR form with no host
  bits set (``192.0.2.0/24``), in Python's compressed form; a /32 or /128 is the address.

Each function returns the canonical value or raises ``ValueError`` with the reason.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

import idna

from exchange.blacklist.kinds import EntryKind
from exchange.models import validators

HASH_HEX_LENGTHS = validators.HASH_HEX_LENGTHS
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_HEX = re.compile(r"[0-9a-f]+\Z")


def domain(value: str) -> str:
    """The canonical A-label form of a domain name."""
    name = value.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("a domain name is required")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(
                f"{value!r} is not a valid internationalised domain name: {exc}"
            ) from None
    name = name.lower()
    validators.domain(name)
    if "." not in name:
        raise ValueError(f"{value!r} is not a fully qualified domain name")
    return name


def _host(host: str) -> str:
    if host.startswith("["):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return domain(host)


def url(value: str) -> str:
    """The canonical form of an http, https or ftp URL."""
    text = value.strip()
    validators.url(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"URL {value!r} carries user info; list the URL without it")
    host = parts.hostname or ""
    canon_host = _host(host)
    netloc = f"[{canon_host}]" if ":" in canon_host else canon_host
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _ESCAPE.sub(lambda m: m.group(0).upper(), parts.path) or "/"
    query = _ESCAPE.sub(lambda m: m.group(0).upper(), parts.query)
    return urlunsplit((scheme, netloc, path, query, ""))


def file_hash(value: str, algorithm: str | None) -> str:
    """A digest as lower-case hex of its algorithm's length."""
    if algorithm is None:
        raise ValueError("a HASH entry needs its algorithm (MD5, SHA1, SHA256, SHA512)")
    want = HASH_HEX_LENGTHS.get(str(algorithm))
    if want is None:
        raise ValueError(f"unknown hash algorithm {algorithm!r}")
    digest = value.strip().lower()
    if len(digest) != want or not _HEX.match(digest):
        raise ValueError(f"a {algorithm} digest is {want} hex digits, not {value!r}")
    return digest


def ip(value: str) -> str:
    """An IP address, or a CIDR network with no host bits set, in compressed form."""
    text = value.strip()
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IP address or network: {exc}") from None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def entry(kind: EntryKind | str, value: str, algorithm: str | None = None) -> tuple[str, str]:
    """The canonical (value, algorithm) of an entry; algorithm is "" except for HASH."""
    kind = EntryKind(kind)
    if kind is not EntryKind.HASH and algorithm:
        raise ValueError(f"algorithm is for HASH entries only, not {kind.value}")
    if kind is EntryKind.DOMAIN:
        return domain(value), ""
    if kind is EntryKind.URL:
        return url(value), ""
    if kind is EntryKind.IP:
        return ip(value), ""
    return file_hash(value, algorithm), str(algorithm)
