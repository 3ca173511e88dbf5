"""Avro single-object encoding of the federation's records, with schema resolution.

Byte layout (Avro 1.12 specification, "Single object encoding")::

    C3 01 | fingerprint: 8 bytes | Avro binary encoding of the record
    fingerprint = CRC-64-AVRO of the writer schema's Parsing Canonical Form, little-endian

The SignedEnvelope record that follows its 10-byte header is three Avro values::

    long len | envelope bytes | long len | signature bytes | long len | key_id UTF-8

(``long`` = zig-zag varint of at most 10 bytes.) That record is read and written by
hand (:func:`decode_signed`, :func:`encode_signed`): several times faster than
fastavro on a ``BytesIO``, and tested byte for byte against fastavro.

Schema files (``schemas/*.avsc``, installed as ``exchange.schemas``): each file holds
exactly one named type, named like the file. A type used by several records
(``Uuid``, ``OffenceCategory``) has its own file and is referenced by name;
a type used by one record is defined inline. On loading, every file's type is
expanded into a self-contained schema (each named type defined at its first use),
which is what is fingerprinted, parsed by fastavro and handed to other Avro
implementations. Released versions live in ``schemas/history/<version>/`` with the
same layout; a decoder finds a writer schema among the current and released ones
by fingerprint and resolves it into the current schema of the same name.

Only :class:`~exchange.errors.WireError` leaves :func:`decode`; a decoded value must
use every byte (trailing bytes are refused).
"""

from __future__ import annotations

import copy
import functools
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema, to_parsing_canonical_form

from exchange.errors import ExchangeError, Reason, WireError

MARKER = b"\xc3\x01"
HEADER_SIZE = 10
NAMESPACE = "eu.ncp.exchange"

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "enum", "fixed", "error"})

# --- CRC-64-AVRO (Rabin fingerprint), as given in the Avro specification ---------------

_EMPTY = 0xC15D213AA4D7A795


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _crc_table()


def crc64_avro(data: bytes) -> int:
    """The CRC-64-AVRO value of ``data`` (the spec's 64-bit Rabin fingerprint)."""
    fp = _EMPTY
    for b in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ b) & 0xFF]
    return fp


def canonical_form(schema: dict[str, Any] | str | list[Any]) -> str:
    """The Parsing Canonical Form of a self-contained (expanded) schema."""
    text: str = to_parsing_canonical_form(schema)
    return text


def fingerprint(schema: dict[str, Any] | str | list[Any]) -> bytes:
    """8 bytes: CRC-64-AVRO of the schema's Parsing Canonical Form, little-endian."""
    return _fingerprint_of(canonical_form(schema))


def _fingerprint_of(canonical: str) -> bytes:
    return crc64_avro(canonical.encode()).to_bytes(8, "little")


# --- loading schema files ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedSchema:
    """One named schema, expanded, parsed and fingerprinted."""

    name: str  #: full name, e.g. "eu.ncp.exchange.Envelope"
    version: str  #: "current", or the release folder under schemas/history/
    schema: dict[str, Any]  #: self-contained JSON schema (named types defined at first use)
    parsed: Any  #: fastavro's parsed form of ``schema``
    canonical: str  #: Parsing Canonical Form
    fingerprint: bytes  #: 8 bytes, little-endian

    @property
    def short_name(self) -> str:
        return self.name.rpartition(".")[2]

    @property
    def header(self) -> bytes:
        """The 10-byte single-object header of this schema."""
        return MARKER + self.fingerprint


def _schema_error(where: str, detail: str) -> ExchangeError:
    return ExchangeError(Reason.BAD_CONFIG, detail, field=where)


def _full(name: str, namespace: str) -> str:
    return name if "." in name else f"{namespace}.{name}"


def _read_definitions(folder: Traversable) -> dict[str, dict[str, Any]]:
    """Every ``*.avsc`` in ``folder`` (not recursive): full name -> its JSON definition."""
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".avsc") or not entry.is_file():
            continue
        try:
            schema = json.loads(entry.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise _schema_error(entry.name, f"not JSON: {exc}") from None
        if not isinstance(schema, dict) or schema.get("type") not in _NAMED:
            raise _schema_error(entry.name, "a schema file must hold one named type")
        full = _full(str(schema.get("name", "")), str(schema.get("namespace", NAMESPACE)))
        if full.rpartition(".")[2] + ".avsc" != entry.name:
            raise _schema_error(entry.name, f"file holds {full}; name the file after the type")
        found[full] = schema
    return found


def _expand(root: str, defs: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """``defs[root]`` with each referenced file-level type defined inline at first use."""
    defined: set[str] = set()

    def walk(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            full = _full(node, namespace)
            if full in defined:
                return node
            if full not in defs:
                raise _schema_error(root, f"unknown type {node!r}")
            return walk(copy.deepcopy(defs[full]), namespace)
        if isinstance(node, list):
            return [walk(branch, namespace) for branch in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind in _NAMED:
            ns = str(node.get("namespace", namespace))
            full = _full(str(node["name"]), ns)
            defined.add(full)
            node.setdefault("namespace", full.rpartition(".")[0])
            if kind in ("record", "error"):
                for fld in node.get("fields", []):
                    fld["type"] = walk(fld["type"], full.rpartition(".")[0])
            return node
        if kind == "array":
            node["items"] = walk(node["items"], namespace)
        elif kind == "map":
            node["values"] = walk(node["values"], namespace)
        elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            node["type"] = walk(kind, namespace)
        return node

    expanded: dict[str, Any] = walk(copy.deepcopy(defs[root]), NAMESPACE)
    return expanded


def load_folder(folder: Traversable | Path, version: str = "current") -> dict[str, ParsedSchema]:
    """Parse every schema file in ``folder``: full name -> :class:`ParsedSchema`."""
    defs = _read_definitions(folder)
    out: dict[str, ParsedSchema] = {}
    for name in defs:
        schema = _expand(name, defs)
        try:
            parsed = parse_schema(schema, named_schemas={})
            canonical = canonical_form(schema)
        except Exception as exc:  # fastavro's SchemaParseException, UnknownType, ValueError
            raise _schema_error(f"{version}/{name}", f"invalid schema: {exc}") from None
        out[name] = ParsedSchema(
            name, version, schema, parsed, canonical, _fingerprint_of(canonical)
        )
    return out


class SchemaRegistry:
    """Current schemas and every released version, by name and by fingerprint.

    Loads lazily on first use (thread-safe), from ``root`` (default: the installed
    ``exchange.schemas`` package) and ``root/history/<version>/``.
    """

    def __init__(self, root: Traversable | Path | None = None) -> None:
        self._root = root
        self._lock = threading.Lock()
        self._current: dict[str, ParsedSchema] | None = None
        self._history: dict[str, dict[str, ParsedSchema]] = {}
        self._by_fp: dict[bytes, ParsedSchema] = {}
        self._short: dict[str, str] = {}

    def _load(self) -> dict[str, ParsedSchema]:
        with self._lock:
            if self._current is not None:
                return self._current
            root = self._root if self._root is not None else files("exchange.schemas")
            current = load_folder(root)
            history: dict[str, dict[str, ParsedSchema]] = {}
            hist_dir = root / "history"
            if hist_dir.is_dir():
                for sub in sorted(hist_dir.iterdir(), key=lambda e: e.name):
                    if sub.is_dir() and not sub.name.startswith(("_", ".")):
                        history[sub.name] = load_folder(sub, sub.name)
            by_fp: dict[bytes, ParsedSchema] = {}
            for ps in current.values():
                by_fp[ps.fingerprint] = ps
            for version in history.values():
                for ps in version.values():
                    by_fp.setdefault(ps.fingerprint, ps)
            self._short = {n.rpartition(".")[2]: n for n in current}
            self._history, self._by_fp = history, by_fp
            self._current = current
            return current

    def current(self, name: str) -> ParsedSchema:
        """The current schema by full or short record name ("OffenceAlert")."""
        current = self._current if self._current is not None else self._load()
        ps = current.get(name) or current.get(self._short.get(name, ""))
        if ps is None:
            raise WireError(Reason.UNKNOWN_SCHEMA, f"no current schema named {name!r}")
        return ps

    def by_fingerprint(self, fp: bytes) -> ParsedSchema:
        """The writer schema (current or released) with this fingerprint."""
        if self._current is None:
            self._load()
        ps = self._by_fp.get(fp)
        if ps is None:
            raise WireError(Reason.UNKNOWN_SCHEMA, f"unknown schema fingerprint {fp.hex()}")
        return ps

    def names(self) -> list[str]:
        """Full names of every current schema."""
        return sorted(self._current if self._current is not None else self._load())

    def versions(self) -> dict[str, dict[str, ParsedSchema]]:
        """Released versions: version -> full name -> schema."""
        if self._current is None:
            self._load()
        return dict(self._history)

    def all(self) -> Iterator[ParsedSchema]:
        """Every known schema, current first."""
        yield from (self._current if self._current is not None else self._load()).values()
        for version in self._history.values():
            yield from version.values()


REGISTRY = SchemaRegistry()


# --- generic encode / decode ---------------------------------------------------------------


def encode(name: str, record: Mapping[str, Any], registry: SchemaRegistry | None = None) -> bytes:
    """The single-object encoding of ``record`` with the current schema ``name``.

    Raises WireError(INVALID_PAYLOAD) when the record does not fit the schema.
    """
    ps = (registry or REGISTRY).current(name)
    out = BytesIO()
    out.write(MARKER)
    out.write(ps.fingerprint)
    try:
        schemaless_writer(out, ps.parsed, record, strict=True, strict_allow_default=True)
    except Exception as exc:  # fastavro: ValueError, TypeError, KeyError, AttributeError...
        raise WireError(
            Reason.INVALID_PAYLOAD, f"record does not fit {ps.short_name}: {exc}"
        ) from None
    return out.getvalue()


def split_header(data: bytes) -> tuple[bytes, memoryview]:
    """(fingerprint, body) of a single-object encoding; WireError(MALFORMED) without one."""
    if len(data) < HEADER_SIZE or data[:2] != MARKER:
        raise WireError(Reason.MALFORMED, "not an Avro single-object encoding (no C3 01 header)")
    return bytes(data[2:HEADER_SIZE]), memoryview(data)[HEADER_SIZE:]


def decode(
    data: bytes, expected: str | None = None, registry: SchemaRegistry | None = None
) -> tuple[str, dict[str, Any]]:
    """Decode a single-object encoding: (full record name, record as a dict).

    The writer schema is found by fingerprint (current or released) and resolved into
    the current schema of the same name. ``expected`` (full or short name) refuses any
    other record. Raises WireError(MALFORMED | UNKNOWN_SCHEMA), nothing else.
    """
    reg = registry or REGISTRY
    fp, body = split_header(data)
    writer = reg.by_fingerprint(fp)
    if expected is not None and expected not in (writer.name, writer.short_name):
        raise WireError(
            Reason.MALFORMED, f"expected a {expected} record, found {writer.short_name}"
        )
    if writer.version == "current":
        reader_parsed = None
    else:
        try:
            reader_parsed = reg.current(writer.name).parsed
        except WireError:
            raise WireError(
                Reason.UNKNOWN_SCHEMA,
                f"{writer.short_name} (release {writer.version}, fingerprint {fp.hex()})"
                " has no current reader schema",
            ) from None
    return writer.name, _read(body, writer, reader_parsed)


def _read(body: memoryview, writer: ParsedSchema, reader_parsed: Any) -> dict[str, Any]:
    fo = BytesIO(body)
    try:
        record: Any = schemaless_reader(fo, writer.parsed, reader_parsed)
    except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ...
        raise WireError(
            Reason.MALFORMED, f"bad {writer.short_name} bytes: {type(exc).__name__}: {exc}"
        ) from None
    if fo.tell() != len(body):
        raise WireError(
            Reason.MALFORMED, f"{len(body) - fo.tell()} trailing bytes after {writer.short_name}"
        )
    if not isinstance(record, dict):
        raise WireError(Reason.MALFORMED, f"{writer.short_name} is not a record")
    return record


# --- the SignedEnvelope fast path ------------------------------------------------------------

_signed_header: bytes | None = None


def _signed() -> bytes:
    global _signed_header
    if _signed_header is None:
        _signed_header = REGISTRY.current("SignedEnvelope").header
    return _signed_header


def encode_long(n: int) -> bytes:
    """Avro ``long``: zig-zag, then little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def encode_signed(envelope: bytes, signature: bytes, key_id: str) -> bytes:
    """The single-object encoding of SignedEnvelope{envelope, signature, key_id}."""
    kid = key_id.encode("utf-8")
    return b"".join(
        (
            _signed_header or _signed(),
            encode_long(len(envelope)),
            envelope,
            encode_long(len(signature)),
            signature,
            encode_long(len(kid)),
            kid,
        )
    )


SIGNATURE_SIZE = 64
_SIGNATURE_LENGTH = b"\x80\x01"  # the Avro long 64


def _malformed(what: str) -> WireError:
    return WireError(Reason.MALFORMED, f"bad SignedEnvelope bytes: {what}")


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, next position) of the Avro ``long`` at ``pos``: zig-zag varint, <= 10 bytes."""
    if pos >= end:
        raise _malformed("truncated length")
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    n = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise _malformed("truncated length")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise _malformed("varint longer than 10 bytes")
    n &= 0xFFFFFFFFFFFFFFFF  # as Java and fastavro: bits past 64 are dropped
    return (n >> 1) ^ -(n & 1), pos


def decode_signed(data: bytes) -> tuple[bytes, bytes, str]:
    """(envelope, signature, key_id) of a SignedEnvelope single-object encoding.

    The current schema is parsed by hand; a released (older) SignedEnvelope schema goes
    through :func:`decode`. Refuses what Avro refuses (truncation, negative lengths,
    varints over 10 bytes, invalid UTF-8) and trailing bytes. Only WireError escapes.

    Every record read takes this path, so the usual shape is recognised inline: an
    envelope length of two varint bytes (64 B to 8 KB), a 64-byte signature and a
    one-byte key id length ending the data. Anything else is read field by field.
    """
    if data[:HEADER_SIZE] != (_signed_header or _signed()):
        _, rec = decode(data, "SignedEnvelope")
        return rec["envelope"], rec["signature"], rec["key_id"]
    head = data[HEADER_SIZE : HEADER_SIZE + 2]
    if len(head) == 2 and head[0] & 0x81 == 0x80 and head[1] < 0x80:
        stop = HEADER_SIZE + 2 + (((head[1] << 7) | (head[0] & 0x7F)) >> 1)
        if data[stop : stop + 2] == _SIGNATURE_LENGTH:
            at = stop + 2 + SIGNATURE_SIZE  # the key id's length
            if at < len(data) and not data[at] & 0x81 and at + 1 + (data[at] >> 1) == len(data):
                try:
                    key_id = data[at + 1 :].decode("utf-8")
                except UnicodeDecodeError:
                    raise _malformed("key_id is not UTF-8") from None
                return data[HEADER_SIZE + 2 : stop], data[stop + 2 : at], key_id
    return _decode_signed_fields(data)


def may_name_key(data: bytes, key_ids: frozenset[str]) -> bool:
    """False only when ``data`` cannot be a SignedEnvelope naming one of ``key_ids``; True
    when it may (then :func:`decode_signed` says), and for every older schema.

    In the current schema the key id is the last field and nothing may follow it, so the
    data of any such record ends with the key id's UTF-8 bytes, whatever the encoding of
    its length (a varint may be padded). A cheap test for the consumer's hot path, which
    otherwise decodes every record's framing only to learn that its key is not its own.
    """
    if data[:HEADER_SIZE] != (_signed_header or _signed()):
        return True
    return data.endswith(_utf8(key_ids))


@functools.lru_cache(maxsize=64)
def _utf8(key_ids: frozenset[str]) -> tuple[bytes, ...]:
    return tuple(k.encode("utf-8") for k in key_ids)


def _field(data: bytes, pos: int, end: int, name: str) -> tuple[int, int]:
    """(start, stop) of the length-prefixed bytes at ``pos``."""
    size, start = _varint(data, pos, end)
    stop = start + size
    if size < 0 or stop > end:
        raise _malformed(f"{name} length {size} exceeds the data")
    return start, stop


def _decode_signed_fields(data: bytes) -> tuple[bytes, bytes, str]:
    end = len(data)
    pos, stop = _field(data, HEADER_SIZE, end, "envelope")
    envelope = data[pos:stop]
    pos, stop = _field(data, stop, end, "signature")
    signature = data[pos:stop]
    pos, stop = _field(data, stop, end, "key_id")
    if stop != end:
        raise _malformed(f"{end - stop} trailing bytes")
    try:
        key_id = data[pos:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("key_id is not UTF-8") from None
    return envelope, signature, key_id
