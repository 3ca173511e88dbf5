"""exchange.zip215: the protocol's one signature rule, ZIP-215, on both backends.

Every behaviour is checked on the backend in use (``exchange.zip215.verify`` and
``verify_batch``) and on the fallback, py-ed25519-zebra-bindings, imported directly.
"""

from __future__ import annotations

import sys
import threading
import time
from array import array
from collections.abc import Callable

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import exchange
from exchange import zip215
from exchange.zip215 import Backend, bindings_backend

MESSAGE = bytes(range(256)) * 2 + b"x" * 88  # 600 bytes, like a record's envelope


def require_native() -> Backend:
    """The native backend. The suite proves it, so it must be built: without a Rust
    toolchain `make install` falls back (a node runs on py-ed25519-zebra-bindings), but
    these tests fail, saying what to install; they never skip."""
    try:
        return zip215.native_backend()
    except ImportError as exc:
        raise AssertionError(
            "the native ZIP-215 verifier is not built: install a Rust toolchain (rustup,"
            " or Debian's cargo) and run `make install` again"
        ) from exc


def backends() -> list[Backend]:
    """The backend in use and the fallback (the same one when the native is missing)."""
    current = Backend(zip215.BACKEND, zip215.verify, zip215.verify_batch)
    return [current, bindings_backend()]


@pytest.fixture(params=backends(), ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    chosen: Backend = request.param
    return chosen


@pytest.fixture(scope="module")
def signed() -> tuple[bytes, bytes, bytes]:
    """A public key, a 600-byte message and PyNaCl's signature of it."""
    key = nacl.signing.SigningKey(bytes(range(32)))
    return bytes(key.verify_key), MESSAGE, key.sign(MESSAGE).signature


def test_native_is_built_where_cargo_is() -> None:
    """`make install` built the native backend (a Rust toolchain is there) and it is in use."""
    require_native()
    assert zip215.BACKEND == "native"


def test_pynacl_signature_verifies(backend: Backend, signed: tuple[bytes, bytes, bytes]) -> None:
    """A signature made by PyNaCl (libsodium) verifies, alone and in a batch."""
    key, message, signature = signed
    assert backend.verify(key, message, signature) is True
    assert backend.verify_batch([(key, message, signature)] * 3) == [True] * 3


def test_byte_like_inputs_verify(backend: Backend, signed: tuple[bytes, bytes, bytes]) -> None:
    """bytearray and memoryview inputs are read like bytes."""
    key, message, signature = signed
    assert backend.verify(bytearray(key), memoryview(message), bytearray(signature))


def test_every_signature_bit_flip_fails(
    backend: Backend, signed: tuple[bytes, bytes, bytes]
) -> None:
    """Flipping any one of the signature's 512 bits makes it invalid, alone and in a batch."""
    key, message, signature = signed
    flipped = []
    for bit in range(len(signature) * 8):
        changed = bytearray(signature)
        changed[bit // 8] ^= 1 << (bit % 8)
        flipped.append(bytes(changed))
        assert not backend.verify(key, message, bytes(changed)), bit
    items = [(key, message, s) for s in flipped]
    assert backend.verify_batch(items) == [False] * len(items)


def test_message_bit_flips_fail(backend: Backend, signed: tuple[bytes, bytes, bytes]) -> None:
    """Flipping any bit of the message's first and last bytes, or one of every byte, fails."""
    key, message, signature = signed
    bits = [*range(8), *range(len(message) * 8 - 8, len(message) * 8)]
    bits += [8 * i + i % 8 for i in range(len(message))]
    for bit in bits:
        changed = bytearray(message)
        changed[bit // 8] ^= 1 << (bit % 8)
        assert not backend.verify(key, bytes(changed), signature), bit
    assert not backend.verify(key, message + b"\x00", signature)
    assert not backend.verify(key, message[:-1], signature)


@pytest.mark.parametrize("key_len", [0, 31, 33, 64])
def test_wrong_public_key_length_is_false(
    backend: Backend, signed: tuple[bytes, bytes, bytes], key_len: int
) -> None:
    """A public key that is not 32 bytes is False, never an exception, alone and in a batch."""
    key, message, signature = signed
    bad = (key * 3)[:key_len]
    assert backend.verify(bad, message, signature) is False
    good = (key, message, signature)
    assert backend.verify_batch([good, (bad, message, signature), good]) == [True, False, True]


@pytest.mark.parametrize("sig_len", [0, 32, 63, 65, 128])
def test_wrong_signature_length_is_false(
    backend: Backend, signed: tuple[bytes, bytes, bytes], sig_len: int
) -> None:
    """A signature that is not 64 bytes is False, never an exception, alone and in a batch."""
    key, message, signature = signed
    bad = (signature * 2)[:sig_len]
    assert backend.verify(key, message, bad) is False
    good = (key, message, signature)
    assert backend.verify_batch([good, (key, message, bad)]) == [True, False]


def test_empty_batch(backend: Backend) -> None:
    """An empty batch has no verdicts."""
    assert backend.verify_batch([]) == []


def test_wrong_types_raise(backend: Backend, signed: tuple[bytes, bytes, bytes]) -> None:
    """A value that is not bytes-like, or a batch item that is no 3-tuple, is a caller's error."""
    key, message, signature = signed
    with pytest.raises(TypeError):
        backend.verify(key, "a str", signature)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        backend.verify_batch([[key, message, signature]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="3"):
        backend.verify_batch([(key, message)])  # type: ignore[list-item]


def test_fallback_warns_when_native_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extension the module warns NativeVerifierMissingWarning and uses the wheel."""
    monkeypatch.setitem(sys.modules, "exchange_zip215", None)  # makes the import fail
    monkeypatch.delitem(sys.modules, "exchange.zip215")
    monkeypatch.setattr(exchange, "zip215", zip215)  # restored after the re-import
    with pytest.warns(RuntimeWarning, match="not installed") as caught:
        import exchange.zip215 as fresh
    assert [w.category for w in caught] == [fresh.NativeVerifierMissingWarning]
    assert fresh.BACKEND == "zebra-bindings"
    # All-zero key, R and S: small-order points, which ZIP-215 accepts.
    assert fresh.verify(bytes(32), b"", bytes(64)) is True


def _signed_items(n: int, keys: int = 3) -> list[tuple[bytes, bytes, bytes]]:
    """``n`` valid signatures of distinct 600-byte messages under ``keys`` signing keys."""
    signers = [nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(keys)]
    items = []
    for i in range(n):
        signer = signers[i % keys]
        message = i.to_bytes(8, "big") + MESSAGE[8:]
        items.append((bytes(signer.verify_key), message, signer.sign(message).signature))
    return items


@pytest.fixture(scope="module")
def batch_256() -> list[tuple[bytes, bytes, bytes]]:
    """256 valid signatures under three keys."""
    return _signed_items(256)


@pytest.mark.parametrize("position", [0, 1, 128, 255])
@pytest.mark.parametrize("damage", ["signature", "message", "key"])
def test_one_bad_among_256_is_the_only_false(
    backend: Backend,
    batch_256: list[tuple[bytes, bytes, bytes]],
    position: int,
    damage: str,
) -> None:
    """A batch of 256 with one damaged item returns False for exactly that item."""
    items = list(batch_256)
    key, message, signature = items[position]
    if damage == "signature":
        signature = signature[:40] + bytes([signature[40] ^ 0x10]) + signature[41:]
    elif damage == "message":
        message = b"!" + message[1:]
    else:
        key = items[position ^ 1][0]  # a neighbour: signed by another key
    items[position] = (key, message, signature)
    verdicts = backend.verify_batch(items)
    assert [i for i, ok in enumerate(verdicts) if not ok] == [position]


def test_all_valid_batch_of_256(
    backend: Backend, batch_256: list[tuple[bytes, bytes, bytes]]
) -> None:
    """256 valid signatures under three keys are all True."""
    assert backend.verify_batch(batch_256) == [True] * 256


#: The calls below must last at least this long for the verdict to mean something.
LONG_ENOUGH_S = 0.03


def _ran_during(work: Callable[[], object]) -> tuple[int, float]:
    """(stamps a Python thread took in the middle third of the call of ``work``, its duration).

    The other thread stamps the time every 64 iterations of a loop. A call that holds the
    GIL can only let it run at its edges (the handover around the call, which a loaded
    machine can stretch by some milliseconds), never in its middle third; one that releases
    it leaves stamps all along. No comparison of rates, which a shared machine skews.
    """
    stop = threading.Event()
    counting = threading.Event()
    stamps = array("d")

    def counter() -> None:
        n = 0
        counting.set()
        while not stop.is_set():
            n += 1
            if not n & 63:
                stamps.append(time.perf_counter())

    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    thread = threading.Thread(target=counter)
    thread.start()
    try:
        counting.wait()
        t0 = time.perf_counter()
        work()
        t1 = time.perf_counter()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
    third = (t1 - t0) / 3
    inside = sum(1 for t in stamps if t0 + third < t < t1 - third)
    return inside, t1 - t0


def _assert_released(work: Callable[[], object]) -> None:
    inside, took = _ran_during(work)
    assert took > LONG_ENOUGH_S, f"the call took {took * 1000:.1f} ms: too short to tell"
    assert inside > 0, f"no Python ran during a {took * 1000:.0f} ms call: it holds the GIL"


def test_the_gil_check_tells_a_call_that_holds_it() -> None:
    """The check itself: a C call that keeps the GIL (bytes.count) leaves no stamp inside."""
    big = bytes(512 << 20)
    inside, took = _ran_during(lambda: big.count(b"\x01"))
    assert took > LONG_ENOUGH_S
    assert inside == 0


@pytest.fixture
def native() -> Backend:
    """The native backend (see :func:`require_native`)."""
    return require_native()


def test_batch_releases_the_gil(native: Backend) -> None:
    """A Python thread keeps counting while a large batch verifies (and falls back to singles)."""
    items = _signed_items(64) * 60
    items[-1] = (items[-1][0], items[-1][1], bytes(64))  # the batch fails: 3,840 singles
    _assert_released(lambda: native.verify_batch(items))


def test_single_verify_releases_the_gil(native: Backend) -> None:
    """A Python thread keeps counting while one signature over 32 MB is verified."""
    signer = nacl.signing.SigningKey(bytes(32))
    big = bytes(32 << 20)
    signature = signer.sign(big).signature
    key = bytes(signer.verify_key)
    _assert_released(lambda: native.verify(key, big, signature))


_HONEST = _signed_items(4, keys=2)
_SMALL_ORDER_POINTS = [
    bytes.fromhex("0100000000000000000000000000000000000000000000000000000000000000"),
    bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000080"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]
_L = 2**252 + 27742317777372353535851937790883648493

_points = st.one_of(
    st.sampled_from([item[0] for item in _HONEST] + _SMALL_ORDER_POINTS),
    st.sampled_from([item[2][:32] for item in _HONEST]),
    st.binary(min_size=32, max_size=32),
)
_scalars = st.one_of(
    st.sampled_from([item[2][32:] for item in _HONEST] + [bytes(32), _L.to_bytes(32, "little")]),
    st.integers(0, 2**256 - 1).map(lambda n: n.to_bytes(32, "little")),
)
_triples = st.one_of(
    st.sampled_from(_HONEST),
    st.tuples(
        _points,
        st.one_of(st.sampled_from([item[1] for item in _HONEST]), st.binary(max_size=64)),
        st.builds(bytes.__add__, _points, _scalars),
    ),
    st.tuples(st.binary(max_size=40), st.binary(max_size=8), st.binary(max_size=70)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_triples, max_size=12))
def test_backends_agree_on_arbitrary_inputs(items: list[tuple[bytes, bytes, bytes]]) -> None:
    """On honest, small-order, non-canonical and random inputs both backends agree, alone and
    in a batch."""
    native = require_native()
    fallback = bindings_backend()
    singles = [native.verify(*item) for item in items]
    assert singles == [fallback.verify(*item) for item in items]
    assert native.verify_batch(items) == singles
