"""Handle normalization: one spelling per pseudonym, so a hit does not depend on typing.

Every node normalizes a handle the same way before it indexes or blinds it; a query
for ``@J0hn_Doe`` and an index entry spelled in full-width letters must meet. The steps, in order:

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
    "\u0430": "a",
    "\u0410": "A",
    "\u0412": "B",
    "\u0441": "c",
    "\u0421": "C",
    "\u0435": "e",
    "\u0415": "E",
    "\u04bb": "h",
    "\u041d": "H",
    "\u0456": "i",
    "\u0406": "I",
    "\u0458": "j",
    "\u0408": "J",
    "\u043a": "k",
    "\u041a": "K",
    "\u043c": "m",
    "\u041c": "M",
    "\u043e": "o",
    "\u041e": "O",
    "\u0440": "p",
    "\u0420": "P",
    "\u051b": "q",
    "\u0455": "s",
    "\u0405": "S",
    "\u0442": "t",
    "\u0422": "T",
    "\u0443": "y",
    "\u0423": "Y",
    "\u0445": "x",
    "\u0425": "X",
    "\u0501": "d",
    "\u051d": "w",
    "\u051c": "W",
    "\u03b1": "a",
    "\u0391": "A",
    "\u0392": "B",
    "\u03b5": "e",
    "\u0395": "E",
    "\u0397": "H",
    "\u03b9": "i",
    "\u0399": "I",
    "\u039a": "K",
    "\u03ba": "k",
    "\u039c": "M",
    "\u039d": "N",
    "\u03bd": "v",
    "\u03bf": "o",
    "\u039f": "O",
    "\u03a1": "P",
    "\u03c1": "p",
    "\u03a4": "T",
    "\u03c4": "t",
    "\u03c5": "u",
    "\u03a7": "X",
    "\u03c7": "x",
    "\u03a5": "Y",
    "\u0396": "Z",
}  # Cyrillic then Greek; escapes, so the source shows which letter is meant
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
