"""quick_init: a frozen slotted dataclass built faster, and otherwise the same."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from exchange.quickinit import quick_init
from exchange.seal import Opened
from nodes.pipeline.records import OpenedRecord, RawRecord, Skipped
from nodes.rules import Incoming
from nodes.store.base import QuarantineEntry, StoredRecord


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str
    c: tuple[int, ...] = ()
    d: int | None = None


@quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class Quick:  # Plain's fields
    a: int
    b: str
    c: tuple[int, ...] = ()
    d: int | None = None


def test_it_builds_what_the_generated_init_builds() -> None:
    """Positional, keyword and defaulted arguments give the same fields as the dataclass's
    own __init__; equality, hash, repr and replace() are unchanged."""
    pairs = [
        (Plain(1, "x"), Quick(1, "x")),
        (Plain(1, "x", (2,), d=4), Quick(1, "x", (2,), d=4)),
        (Plain(b="y", a=2), Quick(b="y", a=2)),
    ]
    for plain, quick in pairs:
        assert dataclasses.astuple(plain) == dataclasses.astuple(quick)
    q = Quick(1, "x")
    assert q == Quick(a=1, b="x")
    assert hash(q) == hash(Quick(1, "x"))
    assert repr(q) == "Quick(a=1, b='x', c=(), d=None)"
    assert dataclasses.replace(q, d=3) == Quick(1, "x", (), 3)


def test_it_stays_frozen_and_refuses_wrong_arguments() -> None:
    """Assignment still raises FrozenInstanceError; a missing or unknown argument is a
    TypeError, as with the generated __init__."""
    q = Quick(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(q, "a", 2)  # noqa: B010 - the assignment under test
    with pytest.raises(TypeError):
        Quick(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, "x", e=5)  # type: ignore[call-arg]


def test_it_refuses_classes_it_cannot_build_faithfully() -> None:
    """Not frozen, not slotted, a default factory or a __post_init__: refused at import."""

    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (Mutable, NoSlots, Factory, PostInit):
        with pytest.raises(TypeError):
            quick_init(cls)


@pytest.mark.parametrize(
    "cls", [RawRecord, Skipped, OpenedRecord, StoredRecord, QuarantineEntry, Incoming, Opened]
)
def test_hot_path_records_keep_their_dataclass_signature(cls: type) -> None:
    """The records built per message take the same arguments, with the same defaults,
    as their dataclass declares."""
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.default is (
            inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        )
