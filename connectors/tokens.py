"""Bearer tokens for the connectors that serve HTTP (REST inbound, TAXII): hashed in config.

A connector's options list its clients; the config holds only each token's SHA-256, so a
leaked config file grants nothing::

    [[connectors.options.tokens]]
    name = "bank-x"                      # who it is, in logs and DISCLOSURE events
    sha256 = "9f86d0..."                 # 64 hex digits; never the token itself
    roles = ["report"]                   # what it may do: see Role
    categories = ["IDENTITY_FRAUD"]        # offence categories it may file or read ("*": any)
    max_tlp = "AMBER"                    # the most restricted TLP it may read
    max_handling_code = "H1"             # the most restricted handling code it may read

:meth:`TokenTable.authenticate` takes an ``Authorization`` header's value and answers the
grant, or None; the comparison of digests is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from exchange.errors import InputError, Reason
from exchange.models.common import HandlingCode, OffenceCategory, Tlp

__all__ = ["Grant", "Role", "TokenTable", "hash_token", "new_token"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

#: TLP from least to most restricted (a grant reads everything up to its max_tlp).
TLP_ORDER: tuple[Tlp, ...] = (Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED)
HANDLING_ORDER: tuple[HandlingCode, ...] = tuple(HandlingCode)


class Role(StrEnum):
    """What a token may do. SUBMIT: file alerts, blacklist changes, pseudonym queries.
    REPORT: file offence reports only, of its categories (a victim company). READ: read
    shared records (TAXII, status) up to its max_tlp and max_handling_code."""

    SUBMIT = "submit"
    REPORT = "report"
    READ = "read"


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``'s UTF-8 bytes: what the config keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token (256 bits, URL-safe) and its hash for the config."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


@dataclass(frozen=True, slots=True)
class Grant:
    """One client's rights."""

    name: str
    sha256: str
    roles: frozenset[Role]
    categories: frozenset[str]  # OffenceCategory values, or {"*"}
    max_tlp: Tlp
    max_handling_code: HandlingCode

    def may(self, role: Role) -> bool:
        return role in self.roles

    def category_allowed(self, category: str | None) -> bool:
        return "*" in self.categories or (category is not None and category in self.categories)

    def may_read(self, tlp: str, handling_code: str, category: str | None) -> bool:
        """Whether a record with these markings is within this grant's reading rights."""
        try:
            tlp_rank = TLP_ORDER.index(Tlp(tlp))
            code_rank = HANDLING_ORDER.index(HandlingCode(handling_code))
        except ValueError:
            return False  # an unknown marking is never readable
        return (
            Role.READ in self.roles
            and tlp_rank <= TLP_ORDER.index(self.max_tlp)
            and code_rank <= HANDLING_ORDER.index(self.max_handling_code)
            and self.category_allowed(category)
        )


def _grant(index: int, raw: Any, where: str) -> tuple[Grant | None, list[tuple[str, str]]]:
    field = f"{where}[{index}]"
    if not isinstance(raw, Mapping):
        return None, [(field, "must be a table with name, sha256 and roles")]
    problems: list[tuple[str, str]] = []
    unknown = set(raw) - {"name", "sha256", "roles", "categories", "max_tlp", "max_handling_code"}
    if unknown:
        problems.append((field, f"unknown keys {sorted(unknown)}"))
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append((f"{field}.name", "1-64 letters, digits, '.', '_' or '-'"))
    digest = raw.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        problems.append((f"{field}.sha256", "the token's SHA-256: 64 lower-case hex digits"))
    roles: set[Role] = set()
    raw_roles = raw.get("roles")
    if not isinstance(raw_roles, list) or not raw_roles:
        problems.append((f"{field}.roles", f"a non-empty list of {[r.value for r in Role]}"))
    else:
        for role in raw_roles:
            try:
                roles.add(Role(role))
            except ValueError:
                problems.append((f"{field}.roles", f"unknown role {role!r}"))
    categories = raw.get("categories", ["*"])
    known = {c.value for c in OffenceCategory} | {"*"}
    if not isinstance(categories, list) or not all(
        isinstance(c, str) and c in known for c in categories
    ):
        allowed = sorted(known)
        problems.append((f"{field}.categories", f"a list of offence categories or '*': {allowed}"))
        categories = []
    try:
        max_tlp = Tlp(raw.get("max_tlp", Tlp.GREEN.value))
    except ValueError:
        problems.append((f"{field}.max_tlp", f"one of {[t.value for t in Tlp]}"))
        max_tlp = Tlp.CLEAR
    try:
        max_code = HandlingCode(raw.get("max_handling_code", HandlingCode.H0.value))
    except ValueError:
        problems.append((f"{field}.max_handling_code", f"one of {list(HandlingCode)}"))
        max_code = HandlingCode.H0
    if problems:
        return None, problems
    grant = Grant(
        str(name), str(digest), frozenset(roles), frozenset(categories), max_tlp, max_code
    )
    return grant, []


class TokenTable:
    """The grants of one connector, looked up by the presented token's digest."""

    def __init__(self, grants: Iterable[Grant]) -> None:
        self._by_digest: dict[bytes, Grant] = {}
        for grant in grants:
            self._by_digest[bytes.fromhex(grant.sha256)] = grant

    @classmethod
    def from_options(cls, raw: Any, where: str = "options.tokens") -> TokenTable:
        """Parse a connector's ``tokens`` option; every problem listed, or none taken."""
        if not isinstance(raw, list):
            raise InputError([(where, "a list of tokens is required")], reason=Reason.BAD_CONFIG)
        grants: list[Grant] = []
        problems: list[tuple[str, str]] = []
        for i, item in enumerate(raw):
            grant, found = _grant(i, item, where)
            problems.extend(found)
            if grant is not None:
                grants.append(grant)
        names = [g.name for g in grants]
        digests = [g.sha256 for g in grants]
        if len(set(names)) != len(names):
            problems.append((where, "token names must be unique"))
        if len(set(digests)) != len(digests):
            problems.append((where, "the same token appears twice"))
        if problems:
            raise InputError(problems, reason=Reason.BAD_CONFIG)
        return cls(grants)

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, authorization: str | None) -> Grant | None:
        """The grant for an ``Authorization: Bearer <token>`` value, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode("utf-8")).digest()
        for known, grant in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return grant
        return None
