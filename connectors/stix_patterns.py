"""STIX 2.1 patterns <-> alert indicators: the pure part of the STIX mapping.

Export: each alert indicator becomes one STIX pattern of one observation, e.g.
``[url:value = 'https://x.example/']``, ``[file:hashes.'SHA-256' = '...']``,
``[user-account:account_login = 'h' AND user-account:account_type = 'Telegram']``,
``[x-ncp-crypto-wallet:value = 'bc1..' AND x-ncp-crypto-wallet:currency = 'BTC']``.

Import: a pattern maps when it is one observation of ``=`` comparisons on the object types
and properties above (several values of one type joined by OR or AND give several
indicators). Anything else is refused with the reason: qualifiers (WITHIN, REPEATS,
START/STOP), several observations, other operators, other object types or properties. The
canonical one-comparison form is read by a strict regular expression; every other pattern
goes through the OASIS pattern grammar (``stix2patterns``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from stix2patterns.v21.pattern import Pattern

__all__ = ["PatternRefused", "indicators_from_pattern", "pattern_for"]

#: Alert hash algorithm -> STIX hash name (hashing-algorithm-ov).
HASH_NAMES = {"MD5": "MD5", "SHA1": "SHA-1", "SHA256": "SHA-256", "SHA512": "SHA-512"}
_HASH_BACK = {v: k for k, v in HASH_NAMES.items()}
WALLET = "x-ncp-crypto-wallet"

#: object type -> (property, alert indicator type) for the single-value observables.
_SIMPLE: dict[str, tuple[str, str]] = {
    "url": ("value", "URL"),
    "domain-name": ("value", "DOMAIN"),
    "ipv4-addr": ("value", "IP_ADDRESS"),
    "ipv6-addr": ("value", "IP_ADDRESS"),
    "email-addr": ("value", "EMAIL"),
}
_CANONICAL = re.compile(
    r"^\[(url|domain-name|ipv4-addr|ipv6-addr|email-addr):value = '((?:[^'\\]|\\.)*)'\]$"
)


class PatternRefused(ValueError):  # noqa: N818 - a verdict on input, as RecordRejected
    """A STIX pattern that cannot become alert indicators; the message says why."""


def quote(value: str) -> str:
    """A STIX pattern string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unquote(literal: str) -> str:
    if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
        raise PatternRefused(f"{literal} is not a string literal")
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def pattern_for(indicator: Mapping[str, Any]) -> str:
    """The STIX pattern of one alert indicator (a validated ``Indicator`` as JSON)."""
    kind = indicator["type"]
    value = str(indicator["value"])
    if kind == "URL":
        return f"[url:value = {quote(value)}]"
    if kind == "DOMAIN":
        return f"[domain-name:value = {quote(value)}]"
    if kind == "IP_ADDRESS":
        version = ipaddress.ip_address(value.split("/")[0]).version
        return f"[ipv{version}-addr:value = {quote(value)}]"
    if kind == "EMAIL":
        return f"[email-addr:value = {quote(value)}]"
    if kind == "FILE_HASH":
        name = HASH_NAMES[str(indicator["hash_algorithm"])]
        return f"[file:hashes.{quote(name)} = {quote(value)}]"
    if kind == "CRYPTO_WALLET":
        currency = quote(str(indicator["currency"]))
        return f"[{WALLET}:value = {quote(value)} AND {WALLET}:currency = {currency}]"
    if kind == "ONLINE_HANDLE":
        platform = quote(str(indicator["platform"]))
        return (
            f"[user-account:account_login = {quote(value)} AND "
            f"user-account:account_type = {platform}]"
        )
    raise PatternRefused(f"no STIX pattern for indicator type {kind}")


def _path(parts: list[Any]) -> str:
    return ".".join(str(p).strip("'") for p in parts)


def indicators_from_pattern(pattern: str) -> list[dict[str, Any]]:
    """The alert indicators a STIX pattern states; PatternRefused naming the reason."""
    canonical = _CANONICAL.match(pattern)
    if canonical is not None:  # the common case, without the grammar's cost
        kind = _SIMPLE[canonical.group(1)][1]
        return [{"type": kind, "value": unquote(f"'{canonical.group(2)}'")}]
    try:
        data = Pattern(pattern).inspect()
    except Exception as exc:  # the grammar's own errors: not a valid pattern at all
        raise PatternRefused(f"not a valid STIX 2.1 pattern: {exc}") from None
    if data.qualifiers:
        raise PatternRefused(f"qualifiers are not supported: {sorted(data.qualifiers)}")
    if data.observation_ops:
        raise PatternRefused(
            f"only one observation is supported, not {sorted(data.observation_ops)}"
        )
    found: list[dict[str, Any]] = []
    for object_type, comparisons in data.comparisons.items():
        values: dict[str, list[str]] = {}
        for parts, op, literal in comparisons:
            path = _path(parts)
            if op != "=":
                raise PatternRefused(f"operator {op!r} on {object_type}:{path} is not supported")
            values.setdefault(path, []).append(unquote(literal))
        found.extend(_observables(object_type, values))
    if not found:
        raise PatternRefused("the pattern states no observable")
    return found


def _observables(object_type: str, values: dict[str, list[str]]) -> list[dict[str, Any]]:
    def only(*allowed: str) -> None:
        extra = sorted(set(values) - set(allowed))
        if extra:
            raise PatternRefused(f"{object_type} properties {extra} are not supported")

    if object_type in _SIMPLE:
        prop, kind = _SIMPLE[object_type]
        only(prop)
        return [{"type": kind, "value": v} for v in values[prop]]
    if object_type == "file":
        out = []
        for path, found in values.items():
            head, _, name = path.partition(".")
            if head != "hashes" or name not in _HASH_BACK:
                supported = sorted(_HASH_BACK)
                raise PatternRefused(f"file:{path} is not supported (only hashes {supported})")
            for v in found:
                out.append({"type": "FILE_HASH", "hash_algorithm": _HASH_BACK[name], "value": v})
        return out
    pairs = {
        WALLET: ("value", "currency", "CRYPTO_WALLET", "currency"),
        "user-account": ("account_login", "account_type", "ONLINE_HANDLE", "platform"),
    }
    if object_type in pairs:
        main, qualifier, kind, field = pairs[object_type]
        only(main, qualifier)
        if len(values.get(main, [])) != 1 or len(values.get(qualifier, [])) != 1:
            raise PatternRefused(f"{object_type} needs exactly one {main} and one {qualifier}")
        return [{"type": kind, field: values[qualifier][0], "value": values[main][0]}]
    raise PatternRefused(f"object type {object_type!r} has no alert indicator type")
