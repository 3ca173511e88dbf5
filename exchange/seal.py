"""The recipe: seal a payload into a Kafka record value, and verify / open one.

Record value = SignedEnvelope single-object encoding (see exchange.codec)::

    C3 01 | fp(SignedEnvelope) | len | envelope bytes | len | Ed25519 signature (64) | len | key_id

``envelope bytes`` = Envelope single-object encoding (see exchange.envelope); the
signature covers exactly those bytes; envelope_hash = SHA-256 of them. The Kafka
record key is the UTF-8 of ``Envelope.key``.

This module is the recipe's one front door and holds no code of its own; its parts:

- :mod:`exchange.seal_write`: sealing (:class:`Sealed`, :func:`seal`,
  :func:`seal_encoded`);
- :mod:`exchange.seal_check`: step 1 of reading, the signature
  (:class:`SignatureChecked`, :func:`check_signature`, :func:`check_signatures`,
  :func:`check_own`);
- :mod:`exchange.seal_open`: the rest of verification and opening, with the order of
  the checks, the rules on time and the measured rates (:class:`Verified`,
  :class:`Opened`, :func:`verify_record`, :func:`verify_checked`, :func:`open_record`,
  :func:`open_verified`);
- :mod:`exchange.seal_rules`: what both sides apply (``DEFAULT_MAX_SKEW``,
  ``MAX_ID_AGE``, the type-on-topic and handling rules).
"""

from __future__ import annotations

from exchange.seal_check import SignatureChecked, check_own, check_signature, check_signatures
from exchange.seal_open import (
    Opened,
    Verified,
    open_record,
    open_verified,
    verify_checked,
    verify_record,
)
from exchange.seal_rules import DEFAULT_MAX_SKEW, MAX_ID_AGE
from exchange.seal_write import Sealed, encode_payload, seal, seal_encoded

__all__ = [
    "DEFAULT_MAX_SKEW",
    "MAX_ID_AGE",
    "Opened",
    "Sealed",
    "SignatureChecked",
    "Verified",
    "check_own",
    "check_signature",
    "check_signatures",
    "encode_payload",
    "open_record",
    "open_verified",
    "seal",
    "seal_encoded",
    "verify_checked",
    "verify_record",
]
