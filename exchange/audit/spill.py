"""Where the chain checks put verified records once memory holds enough: scratch files.

Chains span partitions, which Kafka does not order among themselves, so no record can
be judged before the whole history is read. In memory each verified record costs 112
bytes of columns (:class:`~exchange.audit.chains.Columns`); past
``ChainChecker(run_records=...)`` records the checks move every chain's columns to a
file of its own (:class:`Spill`) as one *run*, sorted by sequence (numpy's stable sort
and gathers: no Python work per record) and written in pieces of
:data:`PIECE_RECORDS`. At the end each chain is read back as a merge of its runs, in
windows of ascending sequences (:meth:`Spill.windows`), a piece per run at most and
usually one piece in all, since a chain's records arrive in about sequence order.
Memory holds one run of records while reading, then a window: neither the history
nor the longest chain (a 10M-record chain is 1.1 GB of columns; one member may write
most of a federation's history).

File layout (this process's own, never shared): a chain's file is its runs one after
another, each run its pieces, each piece one pickle of
:meth:`~exchange.audit.chains.Columns.parts` (the seven columns' bytes, then the few
values kept by index); where each run starts and each piece's first sequence are kept
in memory.

Duplicate message ids are found across chains without a set of every id:
:class:`IdBuckets` writes each (sender, id) as an 18-byte key to one of 256 bucket
files chosen by the key's hash (Python's, randomised per process: no sender can aim
its ids at one bucket), then reads one bucket at a time into a set. Every key is
compared in full: nothing is lost to a probabilistic filter or a truncated id.

Files live in a private temporary directory (mode 0700), made on first use and
removed when closed or collected.
"""

from __future__ import annotations

import tempfile
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any, TypeVar

from exchange.audit.chains import HASH, MID, Columns

_V = TypeVar("_V")
#: Records of a sorted run written (and read back) at a time: 112 bytes each.
PIECE_RECORDS = 16_384
#: Buckets of (sender, message id) keys; a power of two.
BUCKETS = 256
#: Bytes of keys held in memory before they are appended to the bucket files.
KEY_BUFFER_BYTES = 8 << 20
SID = 2  # the sender's number, big-endian
KEY = SID + MID


class _Folder:
    """A private temporary directory, made on first use, removed on close or collection."""

    def __init__(self, parent: str | Path | None) -> None:
        self._parent = parent
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._closer: weakref.finalize[[], _Folder] | None = None

    def path(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="ncp-audit-", dir=self._parent)
            self._closer = weakref.finalize(self, self._dir.cleanup)
        return Path(self._dir.name)

    @property
    def used(self) -> bool:
        return self._dir is not None

    def close(self) -> None:
        if self._closer is not None:
            self._closer()


class Spill:
    """Each chain's runs, sorted by sequence, appended to a file of its own in pieces;
    read back a window of sequences at a time (:meth:`windows`)."""

    def __init__(self, folder: str | Path | None = None, piece_records: int | None = None) -> None:
        self._folder = _Folder(folder)
        self.piece_records = PIECE_RECORDS if piece_records is None else piece_records
        self.chains: set[int] = set()  # chain numbers with something on disk
        self.records = 0
        # chain: a (file offset, each piece's first sequence) a run
        self._runs: dict[int, list[tuple[int, array[int]]]] = {}

    def _path(self, chain: int) -> Path:
        return self._folder.path() / f"chain-{chain}.bin"

    def dump(self, chain: int, columns: Columns) -> None:
        """Append ``columns`` to chain ``chain``'s file as one run, sorted by sequence."""
        if not len(columns):
            return
        with self._path(chain).open("ab") as f:
            offset = f.tell()
            firsts = array("q")
            for piece in by_sequence(columns, max(1, self.piece_records)):
                firsts.append(piece.sequences[0])
                piece.dump(f)
        self._runs.setdefault(chain, []).append((offset, firsts))
        self.chains.add(chain)
        self.records += len(columns)

    def windows(self, chain: int) -> Iterator[Columns]:
        """Chain ``chain``'s records, every one once, in windows of ascending sequences.

        Each window holds every record of the sequences it has (a fork or a re-send is
        never cut in two) and only sequences above the previous window's: the merge of
        the chain's sorted runs, a piece of each at a time. Memory holds about one piece
        per run and one window, whatever the chain's length (records sharing one sequence
        number are the exception: they are held together, however many).
        """
        path = self._path(chain)
        runs = self._runs.get(chain, [])
        yield from _merge([_Cursor(path, offset, firsts) for offset, firsts in runs])

    @property
    def bytes_on_disk(self) -> int:
        """The size of the files written so far."""
        if not self._folder.used:
            return 0
        return sum(p.stat().st_size for p in self._folder.path().iterdir())

    def close(self) -> None:
        """Remove the files."""
        self._folder.close()


class _Cursor:
    """One sorted run of a chain, read a piece at a time into ``buffer`` when asked (the
    file opened for each piece: a chain may have many runs; no descriptor is held)."""

    def __init__(self, path: Path, offset: int, firsts: array[int]) -> None:
        self.path = path
        self.offset = offset
        self.firsts = firsts  # the first sequence of each piece
        self.read = 0  # pieces read
        self.buffer = Columns()

    @property
    def floor(self) -> int | None:
        """The lowest sequence not yet read (None when all is read)."""
        return self.firsts[self.read] if self.read < len(self.firsts) else None

    def more(self) -> None:
        """Append the run's next piece to the buffer (there is one: ``floor`` is not None)."""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            self.buffer.load(f)
            self.offset = f.tell()
        self.read += 1


def _merge(cursors: list[_Cursor]) -> Iterator[Columns]:
    """Windows of the records of ``cursors`` (sorted runs), by ascending sequence.

    Below the lowest sequence that no run has read yet, every record is in a buffer
    (runs are sorted): those records are a window. When there are none, the run that
    holds that lowest unread sequence reads its next piece. So a run is read only when
    the merge reaches its sequences: for runs that follow one another (a chain's
    records arrive in about sequence order), one piece at a time is held.
    """
    while cursors:
        floors = [(f, n) for n, c in enumerate(cursors) if (f := c.floor) is not None]
        if not floors:
            window = Columns()
            for c in cursors:
                window.append_columns(c.buffer)
            if len(window):
                yield window
            return
        bound, lowest = min(floors)
        window = Columns()
        for c in cursors:
            k = bisect_left(c.buffer.sequences, bound)
            if k:
                window.append_columns(c.buffer.cut(k))
        if len(window):
            yield window
        else:
            cursors[lowest].more()
        cursors = [c for c in cursors if len(c.buffer) or c.floor is not None]


def by_sequence(columns: Columns, step: int) -> Iterator[Columns]:
    """``columns`` sorted by sequence (records with one sequence in arrival order), in
    pieces of ``step`` records: each piece a copy, the whole never copied at once, and
    the values kept by index (:attr:`Columns.odd_mids`, ...) moved in one pass."""
    import numpy  # here: the verification workers import the checks, and need no numpy

    n = len(columns)
    seqs = numpy.frombuffer(columns.sequences, dtype=numpy.int64)
    order: Any = None  # None: already sorted
    if n > 1 and not bool(numpy.all(seqs[1:] >= seqs[:-1])):
        order = numpy.argsort(seqs, kind="stable")
    del seqs  # the columns' arrays may not change size while a view holds them
    odd = columns.no_previous or columns.odd_hashes or columns.odd_previous or columns.odd_mids
    where: Any = None  # None: each record stays where it is
    if odd and order is not None:
        where = numpy.empty(n, dtype=numpy.int64)
        where[order] = numpy.arange(n)
    views = [
        _rows(columns.sequences, 8),
        _rows(columns.timestamps, 8),
        _rows(columns.partitions, 8),
        _rows(columns.offsets, 8),
        _rows(columns.message_ids, MID),
        _rows(columns.previous, HASH),
        _rows(columns.hashes, HASH),
    ]
    pieces = -(-n // step)
    no_previous = _by_piece(dict.fromkeys(columns.no_previous, 0), where, step, pieces)
    odd_hashes = _by_piece(columns.odd_hashes, where, step, pieces)
    odd_previous = _by_piece(columns.odd_previous, where, step, pieces)
    odd_mids = _by_piece(columns.odd_mids, where, step, pieces)
    for k in range(pieces):
        start, stop = k * step, min(n, (k + 1) * step)
        if order is None:
            seq_b, time_b, part_b, off_b, mid_b, prev_b, hash_b = (
                bytes(view[start:stop].tobytes()) for view in views
            )
        else:
            part = order[start:stop]
            seq_b, time_b, part_b, off_b, mid_b, prev_b, hash_b = (
                bytes(view[part].tobytes()) for view in views
            )
        piece = Columns()
        piece.append_parts(
            (
                seq_b,
                time_b,
                part_b,
                off_b,
                mid_b,
                prev_b,
                hash_b,
                sorted(no_previous[k]),
                odd_hashes[k],
                odd_previous[k],
                odd_mids[k],
            )
        )
        yield piece


def _by_piece(odd: dict[int, _V], where: Any, step: int, pieces: int) -> list[dict[int, _V]]:
    """``odd`` (values by record index) moved to where ``where`` sends each record (None:
    nowhere), split by piece of ``step`` records: one dict a piece, indices within it."""
    out: list[dict[int, _V]] = [{} for _ in range(pieces)] if odd else [{}] * pieces
    for i, v in odd.items():
        k, at = divmod(i if where is None else int(where[i]), step)
        out[k][at] = v
    return out


def _rows(column: bytes | bytearray | array[int], width: int) -> Any:
    """A column as an array of ``width``-byte rows (a view: no copy)."""
    import numpy

    return numpy.frombuffer(column, dtype=numpy.dtype((numpy.void, width)))


class IdBuckets:
    """(sender number, 16-byte message id) keys, to find the ones given twice or more."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._folder = _Folder(folder)
        self._buffers = [bytearray() for _ in range(BUCKETS)]
        self._buffered = 0
        self._paths: list[Path] = []
        self.keys = 0

    def add(self, sid: int, mids: bytes | bytearray, skip: Container[int] = ()) -> None:
        """The ids in ``mids`` (16 bytes each) of sender ``sid``; indices in ``skip`` are not
        16-byte ids (kept elsewhere)."""
        prefix = sid.to_bytes(SID, "big")
        buffers, mask = self._buffers, BUCKETS - 1
        view = bytes(mids)
        n = len(view) // MID
        for i in range(n):
            if skip and i in skip:
                continue
            key = prefix + view[MID * i : MID * i + MID]
            buffers[hash(key) & mask] += key
        self.keys += n
        self._buffered += KEY * n
        if self._buffered >= KEY_BUFFER_BYTES:
            self._flush()

    def _bucket_paths(self) -> list[Path]:
        """The buckets' files, named once (a Path made per flush would intern its name
        again each time: the interpreter's intern table churns and grows)."""
        if not self._paths:
            folder = self._folder.path()
            self._paths = [folder / f"ids-{k}.bin" for k in range(BUCKETS)]
        return self._paths

    def _flush(self) -> None:
        paths = self._bucket_paths()
        for k, buffer in enumerate(self._buffers):
            if buffer:
                with paths[k].open("ab") as f:
                    f.write(buffer)
                self._buffers[k] = bytearray()
        self._buffered = 0

    def repeats(self, limit: int | None = None) -> tuple[set[bytes], int]:
        """The keys (sender number + id) added twice or more, at most ``limit`` of them (a
        member re-sending millions of ids must not fill memory with them), and how many
        repeats the keys left out add up to. One bucket in memory at a time."""
        out: set[bytes] = set()
        left_out = 0
        for k in range(BUCKETS):
            data = bytes(self._buffers[k])
            if self._folder.used:
                path = self._bucket_paths()[k]
                if path.exists():
                    data = path.read_bytes() + data
            for key in _repeated(data):
                if key in out:
                    continue
                if limit is None or len(out) < limit:
                    out.add(key)
                else:
                    left_out += 1
        return out, left_out

    @staticmethod
    def key(sid: int, mid: bytes) -> bytes:
        """The key of one id, as :meth:`repeats` returns it."""
        return sid.to_bytes(SID, "big") + mid

    def close(self) -> None:
        """Remove the files."""
        self._folder.close()


def _repeated(data: bytes) -> Iterator[bytes]:
    seen: set[bytes] = set()
    for i in range(0, len(data), KEY):
        key = data[i : i + KEY]
        if key in seen:
            yield key
        else:
            seen.add(key)
