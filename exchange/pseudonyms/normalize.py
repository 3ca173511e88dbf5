"""Handle normalization: one spelling per pseudonym, so a hit does not depend on typing.

Every node normalizes a handle the same way before it indexes or blinds it; a query
for ``@J0hn_Doe`` and an index entry ``ｊ０ｈｎ_ｄｏｅ`` must meet. The steps, in order:

1. Unicode NFKC (compatibility forms: full-width letters, ligatures, super/subscripts);
2. drop format and invisible characters (zero-width space/joiner, BOM, soft hyphen);
3. strip surrounding white space; inner white space is refused (no platform allows it);
4. per-platform rules (:data:`PLATFORM_RULES`): a leading ``@`` on platforms where it is
   not part of the name, a ``u/`` prefix on Reddit, dots ignored where the platform
   ignores them;
5. confusable letters folded to their Latin look-alike (:data:`CONFUSABLES`: the Cyrillic
   and Greek letters that render like Latin ones). An explicit table, not a library:
   ``confusable_homoglyphs`` detects mixed scripts but gives no skeleton to fold to, and
   ICU's spoof checker would add a native dependency for a table of ~40 letters;
6. Unicode case folding (``str.casefold``: ``ß`` -> ``ss``), then NFKC again (folding can
   denormalize).

Platforms are named in lower case; an unknown platform gets the common steps only.
Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping

__all__ = ["CONFUSABLES", "PLATFORM_RULES", "HandleError", "normalize_handle", "normalize_platform"]

MAX_HANDLE = 256
MAX_PLATFORM = 100

#: Cyrillic and Greek letters that look like Latin ones (Unicode confusables.txt, the
#: subset that renders identically in common fonts), folded before case folding.
CONFUSABLES: Mapping[str, str] = {
    # Cyrillic lower / upper
    "а": "a", "А": "A", "в": "b", "В": "B", "с": "c", "С": "C", "е": "e", "Е": "E",
    "һ": "h", "Н": "H", "і": "i", "І": "I", "ј": "j", "Ј": "J", "к": "k", "К": "K",
    "м": "m", "М": "M", "о": "o", "О": "O", "р": "p", "Р": "P", "ԛ": "q", "ѕ": "s",
    "Ѕ": "S", "т": "t", "Т": "T", "у": "y", "У": "Y", "х": "x", "Х": "X", "ԁ": "d",
    "ԝ": "w", "Ԝ": "W",
    # Greek
    "α": "a", "Α": "A", "Β": "B", "ε": "e", "Ε": "E", "Η": "H", "ι": "i", "Ι": "I",
    "Κ": "K", "κ": "k", "Μ": "M", "Ν": "N", "ν": "v", "ο": "o", "Ο": "O", "Ρ": "P",
    "ρ": "p", "Τ": "T", "τ": "t", "υ": "u", "Χ": "X", "χ": "x", "Υ": "Y", "Ζ": "Z",
}  # fmt: skip
_CONFUSABLE_TABLE = str.maketrans(dict(CONFUSABLES))
#: Format characters that render as nothing.
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e")


class HandleError(ValueError):
    """A handle that cannot be normalized (empty, too long, inner white space, controls)."""


def _strip_at(handle: str) -> str:
    return handle[1:] if handle.startswith("@") else handle


def _reddit(handle: str) -> str:
    for prefix in ("/u/", "u/"):
        if handle.startswith(prefix):
            return handle[len(prefix) :]
    return handle


def _gmail_like(handle: str) -> str:
    local, at, domain = handle.partition("@")
    return local.replace(".", "") + at + domain if at else handle.replace(".", "")


#: Per-platform rules, applied after NFKC and before folding (platform in lower case).
PLATFORM_RULES: Mapping[str, Callable[[str], str]] = {
    "twitter": _strip_at,
    "x": _strip_at,
    "instagram": _strip_at,
    "tiktok": _strip_at,
    "telegram": _strip_at,
    "threads": _strip_at,
    "mastodon": _strip_at,  # @user@server: the first @ only
    "reddit": _reddit,
    "gmail": _gmail_like,
}


def normalize_platform(platform: str) -> str:
    """A platform's name as indexed and queried: NFKC, trimmed, case-folded."""
    value = unicodedata.normalize("NFKC", platform).strip().casefold()
    if not value:
        raise HandleError("platform is empty")
    if len(value) > MAX_PLATFORM:
        raise HandleError(f"platform is longer than {MAX_PLATFORM} characters")
    return value


def normalize_handle(platform: str, handle: str) -> str:
    """The canonical form of ``handle`` on ``platform`` (see the module doc); HandleError
    when there is nothing left or it cannot be a handle."""
    value = unicodedata.normalize("NFKC", handle)
    value = "".join(ch for ch in value if ch not in _INVISIBLE).strip()
    if any(ch.isspace() for ch in value):
        raise HandleError("a handle has no inner white space")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise HandleError("a handle has no control characters")
    rule = PLATFORM_RULES.get(normalize_platform(platform))
    if rule is not None:
        value = rule(value)
    value = unicodedata.normalize("NFKC", value.translate(_CONFUSABLE_TABLE).casefold())
    if not value:
        raise HandleError("handle is empty")
    if len(value) > MAX_HANDLE:
        raise HandleError(f"handle is longer than {MAX_HANDLE} characters")
    return value
