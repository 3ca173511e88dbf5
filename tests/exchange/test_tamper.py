"""Tampering: any change to a signed record is refused with a typed error, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exchange import codec
from exchange.errors import ExchangeError, Reason
from exchange.seal import Sealed, verify_record
from tests.helpers.federation import NOW, Federation, make_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(tmp_path_factory.mktemp("tamper"))


@pytest.fixture(scope="module")
def plain(fed: Federation) -> Sealed:
    return fed.seal_alert("FR")


@pytest.fixture(scope="module")
def encrypted(fed: Federation) -> Sealed:
    return fed.seal_alert("FR", recipients=["DE", "NL"])


def _refusal(fed: Federation, value: bytes, sealed: Sealed) -> ExchangeError | None:
    try:
        verify_record(value, topic=sealed.envelope.topic, key=sealed.key, trust=fed.trust, now=NOW)
    except ExchangeError as exc:
        return exc
    return None


@pytest.mark.parametrize("which", ["plain", "encrypted"])
@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_byte_is_refused(
    fed: Federation, request: pytest.FixtureRequest, which: str, mask: int
) -> None:
    """Changing any single byte of a sealed value makes verify_record raise an ExchangeError."""
    sealed: Sealed = request.getfixturevalue(which)
    assert _refusal(fed, sealed.value, sealed) is None
    reasons: set[Reason] = set()
    for i in range(len(sealed.value)):
        bad = bytearray(sealed.value)
        bad[i] ^= mask
        exc = _refusal(fed, bytes(bad), sealed)
        assert exc is not None, f"byte {i} flipped with {mask:#x} was accepted"
        reasons.add(exc.reason)
    # signature and envelope bytes: BAD_SIGNATURE; structure: MALFORMED / UNKNOWN_SCHEMA; key id
    assert Reason.BAD_SIGNATURE in reasons
    assert reasons <= {
        Reason.BAD_SIGNATURE,
        Reason.MALFORMED,
        Reason.UNKNOWN_SCHEMA,
        Reason.UNKNOWN_KEY,
    }


@pytest.mark.parametrize("which", ["plain", "encrypted"])
def test_truncating_at_any_length_is_refused(
    fed: Federation, request: pytest.FixtureRequest, which: str
) -> None:
    """Every proper prefix of a sealed value (and the value with a byte appended) is refused."""
    sealed: Sealed = request.getfixturevalue(which)
    for n in range(len(sealed.value)):
        assert _refusal(fed, sealed.value[:n], sealed) is not None, f"prefix of {n} bytes accepted"
    assert _refusal(fed, sealed.value + b"\0", sealed) is not None


def test_signature_over_other_bytes_is_bad_signature(fed: Federation, plain: Sealed) -> None:
    """Swapping in the signature of another record is BAD_SIGNATURE."""
    other = fed.seal_alert("FR", advance=False)
    envelope, _, key_id = codec.decode_signed(plain.value)
    _, signature, _ = codec.decode_signed(other.value)
    exc = _refusal(fed, codec.encode_signed(envelope, signature, key_id), plain)
    assert exc is not None
    assert exc.reason is Reason.BAD_SIGNATURE


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_exchange_errors(
    fed: Federation, plain: Sealed, data: bytes
) -> None:
    """Arbitrary bytes given to verify_record raise an ExchangeError subclass and nothing else."""
    with pytest.raises(ExchangeError):
        verify_record(data, topic=plain.envelope.topic, key=plain.key, trust=fed.trust, now=NOW)


@settings(
    max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(head=st.integers(min_value=0, max_value=1200), junk=st.binary(min_size=1, max_size=64))
def test_spliced_records_raise_only_exchange_errors(
    fed: Federation, plain: Sealed, head: int, junk: bytes
) -> None:
    """A valid record with junk spliced in at any place is refused with an ExchangeError."""
    value = plain.value[:head] + junk + plain.value[head + len(junk) :]
    assume(value != plain.value)
    with pytest.raises(ExchangeError):
        verify_record(value, topic=plain.envelope.topic, key=plain.key, trust=fed.trust, now=NOW)
