"""Making and rotating the federation pseudonym key inside the trust list.

:func:`rotate` returns the next trust-list version with a fresh key wrapped for every
member's current encryption key; the keys that were current get ``grace_until = now +
grace`` (queries blinded under them are answered until then), and keys whose grace has
ended are dropped. The first call on a list without keys only adds one. Pure.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from exchange.crypto import Recipient
from exchange.errors import ExchangeError
from exchange.pseudonyms.keys import PseudonymKey, new_key, wrap
from exchange.trust import TrustList

__all__ = ["DEFAULT_GRACE", "recipients_of", "rotate"]

DEFAULT_GRACE = timedelta(hours=24)


def recipients_of(trust: TrustList, now: datetime) -> list[Recipient]:
    """Every member that has an encryption key usable at ``now``."""
    out: list[Recipient] = []
    for node in sorted(trust.members):
        try:
            entry = trust.encryption_key(node, now)
        except ExchangeError:
            continue  # no usable key: it gets the next key once it has one
        out.append(Recipient(node, entry.key_id, entry.public_key))
    return out


def rotate(
    trust: TrustList,
    now: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
    key: PseudonymKey | None = None,
    issued_at: datetime | None = None,
) -> TrustList:
    """The next version of ``trust`` with a new current pseudonym key (see the module doc)."""
    fresh = key or new_key(now)
    kept = []
    for w in trust.pseudonym_keys:
        if w.grace_until is None:
            kept.append(replace(w, grace_until=now + grace))
        elif w.grace_until > now:
            kept.append(w)
    wrapped = wrap(fresh, recipients_of(trust, now))
    return trust.with_pseudonym_keys((*kept, wrapped), issued_at=issued_at or now)
