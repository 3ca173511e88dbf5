"""Where the chain checks put verified records once memory holds enough: scratch files.

Chains span partitions, which Kafka does not order among themselves, so no record can
be judged before the whole history is read. In memory each verified record costs 112
bytes of columns (:class:`~exchange.audit.chains.Columns`); past
``ChainChecker(run_records=...)`` records the checks move every chain's columns to a
file of its own (:class:`Spill`, a handful of copies, no work per record), and at the
end read back one chain at a time: memory holds one run of records plus the longest
chain, not the history.

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
from collections.abc import Container, Iterator
from pathlib import Path

from exchange.audit.chains import MID, Columns

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
    """Each chain's columns, appended to a file of its own run by run."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._folder = _Folder(folder)
        self.chains: set[int] = set()  # chain numbers with something on disk
        self.records = 0

    def dump(self, chain: int, columns: Columns) -> None:
        """Append ``columns`` to chain ``chain``'s file."""
        with (self._folder.path() / f"chain-{chain}.bin").open("ab") as f:
            columns.dump(f)
        self.chains.add(chain)
        self.records += len(columns)

    def load(self, chain: int, into: Columns) -> Columns:
        """Chain ``chain``'s records from its file, appended to ``into``."""
        path = self._folder.path() / f"chain-{chain}.bin"
        size = path.stat().st_size
        with path.open("rb") as f:
            while f.tell() < size:
                into.load(f)
        return into

    @property
    def bytes_on_disk(self) -> int:
        """The size of the files written so far."""
        if not self._folder.used:
            return 0
        return sum(p.stat().st_size for p in self._folder.path().iterdir())

    def close(self) -> None:
        """Remove the files."""
        self._folder.close()


class IdBuckets:
    """(sender number, 16-byte message id) keys, to find the ones given twice or more."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self._folder = _Folder(folder)
        self._buffers = [bytearray() for _ in range(BUCKETS)]
        self._buffered = 0
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

    def _flush(self) -> None:
        folder = self._folder.path()
        for k, buffer in enumerate(self._buffers):
            if buffer:
                with (folder / f"ids-{k}.bin").open("ab") as f:
                    f.write(buffer)
                self._buffers[k] = bytearray()
        self._buffered = 0

    def repeats(self) -> set[bytes]:
        """The keys (sender number + id) added twice or more; one bucket in memory at a time."""
        out: set[bytes] = set()
        for k in range(BUCKETS):
            data = bytes(self._buffers[k])
            if self._folder.used:
                path = self._folder.path() / f"ids-{k}.bin"
                if path.exists():
                    data = path.read_bytes() + data
            out.update(_repeated(data))
        return out

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
