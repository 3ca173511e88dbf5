"""Export formats for the people who block: an RPZ zone, a hosts file, plain lists.

Every file opens with a comment header naming the joint list, the export's serial (it
increases with every change of the content), and the version set it reflects
(``versions: fr.csam=3 nl.csam=2``), so an ISP can say exactly what it applied.

- ``rpz``: a DNS Response Policy Zone (RFC draft-vixie-dnsop-dns-rpz). Each domain is
  answered NXDOMAIN for itself and its subdomains (``name CNAME .`` and ``*.name CNAME .``);
  each IP address or network is an ``rpz-ip`` trigger. URLs and hashes cannot be expressed.
- ``hosts``: ``0.0.0.0 name`` per domain.
- ``domains`` / ``urls``: one per line. ``hashes``: ``<algorithm> <hex>`` per line.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from exchange.blacklist.deltas import EntryKey


class ExportFormat(StrEnum):
    RPZ = "rpz"
    HOSTS = "hosts"
    DOMAINS = "domains"
    URLS = "urls"
    HASHES = "hashes"


#: The entry kinds each format carries.
KINDS: Mapping[ExportFormat, frozenset[str]] = {
    ExportFormat.RPZ: frozenset({"DOMAIN", "IP"}),
    ExportFormat.HOSTS: frozenset({"DOMAIN"}),
    ExportFormat.DOMAINS: frozenset({"DOMAIN"}),
    ExportFormat.URLS: frozenset({"URL"}),
    ExportFormat.HASHES: frozenset({"HASH"}),
}


@dataclass(frozen=True, slots=True)
class Header:
    joint: str
    serial: int
    versions: Mapping[str, int]  # list id -> version reflected
    generated_at: datetime
    zone: str = "rpz.ncp.invalid."  # the RPZ's origin (rpz only)

    def version_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in sorted(self.versions.items())) or "-"


def parse_header(lines: Iterable[str]) -> tuple[int | None, dict[str, int]]:
    """The serial and the version set named in an export's header (what a consumer
    confirms it applied)."""
    serial: int | None = None
    versions: dict[str, int] = {}
    for line in lines:
        text = line.lstrip(";#").strip()
        if not line.startswith((";", "#")):
            break
        if text.startswith("serial:"):
            serial = int(text.split(":", 1)[1])
        elif text.startswith("versions:"):
            for item in text.split(":", 1)[1].split():
                if "=" in item:
                    name, _, number = item.partition("=")
                    versions[name] = int(number)
    return serial, versions


def _comment(fmt: ExportFormat, header: Header) -> Iterator[str]:
    mark = ";" if fmt is ExportFormat.RPZ else "#"
    yield f"{mark} ncp-exchange joint blacklist {header.joint} ({fmt.value})"
    yield f"{mark} serial: {header.serial}"
    yield f"{mark} versions: {header.version_text()}"
    yield f"{mark} generated-at: {header.generated_at.isoformat()}"


def rpz_ip_owner(network: str) -> str:
    """The rpz-ip owner name of an address or network (``192.0.2.0/24`` ->
    ``24.0.2.0.192.rpz-ip``; IPv6 with ``zz`` for the longest run of zero groups)."""
    net = ipaddress.ip_network(network)
    prefix = net.prefixlen
    if net.version == 4:
        labels = list(reversed(str(net.network_address).split(".")))
    else:
        text = net.network_address.compressed
        left, sep, right = text.partition("::")
        lgroups = [g for g in left.split(":") if g]
        rgroups = [g for g in right.split(":") if g]
        groups = lgroups + (["zz"] if sep else []) + rgroups
        labels = list(reversed(groups))
    return ".".join([str(prefix), *labels, "rpz-ip"])


def render(fmt: ExportFormat, header: Header, keys: Iterable[EntryKey]) -> Iterator[str]:
    """The export's lines (no newlines), header first; ``keys`` are the confirmed entries
    (any kinds: those the format cannot carry are left out)."""
    yield from render_head(fmt, header)
    yield from render_entries(fmt, keys, header.zone)


def render_head(fmt: ExportFormat, header: Header) -> Iterator[str]:
    """The comment header (and, for RPZ, the zone's TTL, SOA with the serial, and NS)."""
    yield from _comment(fmt, header)
    if fmt is ExportFormat.RPZ:
        yield "$TTL 300"
        yield f"@ IN SOA localhost. hostmaster.localhost. {header.serial} 3600 600 86400 300"
        yield "@ IN NS localhost."


#: The longest DNS name, in presentation form without the final dot.
MAX_NAME = 253


def fits_zone(name: str, zone: str) -> bool:
    """Whether ``*.name`` under ``zone`` is a legal DNS name: a domain too long for it would
    make BIND refuse the whole zone, so one listing must never break every ISP's RPZ."""
    return len(f"*.{name}.{zone.rstrip('.')}") <= MAX_NAME


def render_entries(
    fmt: ExportFormat, keys: Iterable[EntryKey], zone: str = "rpz.ncp.invalid."
) -> Iterator[str]:
    """The lines for ``keys`` alone (RPZ: under ``zone``; a domain too long to fit under it
    is left out of the RPZ, and stays in the other formats)."""
    kinds = KINDS[fmt]
    for kind, value, algorithm in keys:
        if kind not in kinds:
            continue
        if fmt is ExportFormat.RPZ:
            if kind == "DOMAIN":
                if not fits_zone(value, zone):
                    continue
                yield f"{value} CNAME ."
                yield f"*.{value} CNAME ."
            else:
                yield f"{rpz_ip_owner(value)} CNAME ."
        elif fmt is ExportFormat.HOSTS:
            yield f"0.0.0.0 {value}"
        elif fmt is ExportFormat.HASHES:
            yield f"{algorithm.lower()} {value}"
        else:
            yield value
