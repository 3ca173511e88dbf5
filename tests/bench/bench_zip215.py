"""ZIP-215 verification (exchange.zip215) against PyNaCl's single verify, one core.

30,000 signatures (``ctx.n(30_000)``) of 600-byte messages under three signing keys, as
a federation's traffic has few senders. Figures (signatures per second, best of
``ROUNDS`` interleaved rounds, all against PyNaCl's single verify in the same run):

* native single verify (``exchange_zip215.verify``);
* native batches of 64, 256 and 1,024 (``verify_batch``): target >= 3.0x PyNaCl;
* native batches of 256 with one bad signature in each: the batch check fails and each
  item is checked alone (what a flood of bad records costs);
* the fallback, py-ed25519-zebra-bindings, single verify;
* native batches of 1,024 in two threads against one (the GIL is released: ~2x when a
  second core is free, ~1x on a loaded machine).

No broker is needed: ``ctx`` only scales the work. Without the native extension only the
fallback's figure is given.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence

import nacl.bindings
import nacl.exceptions
import nacl.signing

from exchange.zip215 import Backend, bindings_backend, native_backend
from tests.bench.harness import BenchContext, Figure

ROUNDS = 3
open_signed = nacl.bindings.crypto_sign_open
MESSAGE_BYTES = 600
KEYS = 3

Item = tuple[bytes, bytes, bytes]


def make_items(n: int) -> list[Item]:
    """``n`` (public key, message, signature) of random 600-byte messages, three keys."""
    signers = [nacl.signing.SigningKey.generate() for _ in range(KEYS)]
    items = []
    for i in range(n):
        signer = signers[i % KEYS]
        message = os.urandom(MESSAGE_BYTES)
        items.append((bytes(signer.verify_key), message, signer.sign(message).signature))
    return items


def chunks(items: Sequence[Item], size: int) -> list[Sequence[Item]]:
    """``items`` cut into batches of ``size`` (the last one shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def best_rates(runs: dict[str, Callable[[], int]], rounds: int = ROUNDS) -> dict[str, float]:
    """Signatures per second of each run (it returns how many it verified): the best round.

    Rounds are interleaved (A, B, C, A, B, C, ...) so that load from other processes on a
    shared machine hits every run alike, and the best round filters it out.
    """
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            count = run()
            best[name] = max(best[name], count / (time.perf_counter() - t0))
    return best


def singles(verify: Callable[[bytes, bytes, bytes], bool], items: Sequence[Item]) -> int:
    """Verify each item alone; every one must pass."""
    for key, message, signature in items:
        if not verify(key, message, signature):
            raise AssertionError("a valid signature failed")
    return len(items)


def batches(backend: Backend, batched: Sequence[Sequence[Item]], expect_false: int = 0) -> int:
    """Verify each batch; exactly ``expect_false`` items of each must fail."""
    total = 0
    for batch in batched:
        verdicts = backend.verify_batch(batch)
        if verdicts.count(False) != min(expect_false, len(batch)):
            raise AssertionError("unexpected verdicts")
        total += len(batch)
    return total


def in_threads(work: Callable[[], int], k: int) -> int:
    """Run ``work`` in ``k`` threads at once; the total it verified."""
    counts = [0] * k

    def one(i: int) -> None:
        counts[i] = work()

    pool = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts)


def run(ctx: BenchContext) -> list[Figure]:
    n = ctx.n(30_000, minimum=1024)
    items = make_items(n)
    fallback = bindings_backend()

    def pynacl_verify(key: bytes, message: bytes, signature: bytes) -> bool:
        # What exchange.crypto.verify does (libsodium through PyNaCl), whatever its API.
        try:
            open_signed(signature + message, key)
        except nacl.exceptions.BadSignatureError:
            return False
        return True

    def pynacl() -> int:
        return singles(pynacl_verify, items)

    runs: dict[str, Callable[[], int]] = {
        "pynacl": pynacl,
        "fallback": lambda: singles(fallback.verify, items),
    }
    try:
        native: Backend | None = native_backend()
    except ImportError:
        native = None
    sizes = (64, 256, 1024)
    if native is not None:
        nat = native
        runs["native"] = lambda: singles(nat.verify, items)
        for size in sizes:
            batched = chunks(items, size)
            runs[f"batch{size}"] = lambda b=batched: batches(nat, b)  # type: ignore[misc]
        poisoned = [
            [*batch[:-1], (batch[-1][0], batch[-1][1], bytes(64))] for batch in chunks(items, 256)
        ]
        runs["poisoned256"] = lambda: batches(nat, poisoned, expect_false=1)
        half = chunks(items[: n // 2], 1024)
        runs["threads1"] = lambda: in_threads(lambda: batches(nat, half), 1)
        runs["threads2"] = lambda: in_threads(lambda: batches(nat, half), 2)

    r = best_rates(runs)
    base = ("PyNaCl single verify", r["pynacl"])
    what = f"{n:,} sigs, {MESSAGE_BYTES} B messages, {KEYS} keys"
    figures = [
        Figure(f"zip215: PyNaCl single verify ({what})", r["pynacl"], "sig/s"),
        Figure("zip215: fallback (zebra-bindings) single verify", r["fallback"], "sig/s", *base),
    ]
    if native is None:
        return figures
    figures.append(Figure("zip215: native single verify", r["native"], "sig/s", *base))
    figures += [
        Figure(f"zip215: native batches of {size:,}", r[f"batch{size}"], "sig/s", *base)
        for size in sizes
    ]
    figures += [
        Figure(
            "zip215: native batches of 256, one bad in each",
            r["poisoned256"],
            "sig/s",
            *base,
        ),
        Figure(
            "zip215: native batches of 1,024 in 2 threads",
            r["threads2"],
            "sig/s",
            "1 thread",
            r["threads1"],
        ),
    ]
    return figures
