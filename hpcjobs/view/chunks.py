"""Windows of stored arrays for ``hpcjobs view``, read chunk by chunk through a small LRU.

A tile or a series window touches a few stored chunks: :class:`ArrayReader` decodes exactly
those (``zarrio.read_chunk``, the direct path jobs read with: CRC-checked, no Zarr
machinery; Zarr's own read of that chunk's region for layouts it cannot decode) and keeps
the decoded chunks in one :class:`ChunkCache` shared by all arrays, bounded in bytes, least
recently used first out. Neighbouring tiles and the next zoom step then cost no decoding,
and the server holds at most the cache's budget of any dataset, never a whole array.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from itertools import product
from pathlib import Path

import numpy as np

#: default budget of decoded chunks kept, in bytes ($HPCJOBS_VIEW_CACHE_MB overrides)
CACHE_BYTES = 512 * 2**20


def cache_budget() -> int:
    value = os.environ.get("HPCJOBS_VIEW_CACHE_MB")
    return int(float(value) * 2**20) if value else CACHE_BYTES


class ChunkCache:
    """Decoded chunks by (array path, chunk index), at most ``budget`` bytes in all.

    ``get(key, load)`` returns the cached chunk or calls ``load()`` once for it: threads
    that ask for the same chunk at once wait for the one decode.
    """

    def __init__(self, budget: int | None = None):
        self.budget = cache_budget() if budget is None else budget
        self._data: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict = {}
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key, load):
        with self._lock:
            found = self._data.get(key)
            if found is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return found
            event = self._loading.get(key)
            if event is None:
                self._loading[key] = threading.Event()
                self.misses += 1
        if event is not None:  # another thread decodes it: wait, then look again
            event.wait()
            return self.get(key, load)
        try:
            value = load()
            with self._lock:
                self._data[key] = value
                self._bytes += value.nbytes
                while self._bytes > self.budget and len(self._data) > 1:
                    _, old = self._data.popitem(last=False)
                    self._bytes -= old.nbytes
        finally:
            with self._lock:
                self._loading.pop(key).set()
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0


_shared: ChunkCache | None = None


def shared_cache() -> ChunkCache:
    """The process's one cache (made on first use)."""
    global _shared
    if _shared is None:
        _shared = ChunkCache()
    return _shared


class ArrayReader:
    """A stored Zarr array read by regions, each decoded chunk kept in a :class:`ChunkCache`."""

    def __init__(self, path: str | os.PathLike, cache: ChunkCache | None = None):
        import zarr

        from hpcjobs.zarrio import StoredLayout

        self.path = Path(path).resolve()
        self.array = zarr.open_array(str(self.path), mode="r")
        self.shape = tuple(int(s) for s in self.array.shape)
        self.dtype = self.array.dtype
        self.chunks = tuple(int(c) for c in self.array.chunks)
        self.layout = StoredLayout.of(self.array)  # None: Zarr decodes instead
        self.cache = cache or shared_cache()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def chunk(self, index: tuple[int, ...]) -> np.ndarray:
        """The decoded chunk ``index``, cut to the array's extent (read-only)."""
        return self.cache.get((self.path, index), lambda: self._decode(index))

    def _decode(self, index: tuple[int, ...]) -> np.ndarray:
        if self.layout is not None:
            from hpcjobs.zarrio import read_chunk

            out = read_chunk(str(self.path), self.layout, index)
        else:
            region = tuple(slice(i * c, min((i + 1) * c, s))
                           for i, c, s in zip(index, self.chunks, self.shape, strict=True))
            out = np.asarray(self.array[region])
        out.flags.writeable = False
        return out

    def read(self, *bounds: tuple[int, int]) -> np.ndarray:
        """The region ``[start, stop)`` per axis (clipped to the array; missing axes whole)."""
        box = [(max(0, int(a)), min(s, int(b))) for (a, b), s in zip(bounds, self.shape,
                                                                     strict=False)]
        box += [(0, s) for s in self.shape[len(box):]]
        out = np.empty(tuple(max(0, b - a) for a, b in box), dtype=self.dtype)
        if out.size == 0:
            return out
        ranges = [range(a // c, (b - 1) // c + 1) for (a, b), c in zip(box, self.chunks,
                                                                       strict=True)]
        for index in product(*ranges):
            data = self.chunk(index)
            src, dst = [], []
            for i, (a, b), c in zip(index, box, self.chunks, strict=True):
                lo, hi = max(a, i * c), min(b, (i + 1) * c)
                src.append(slice(lo - i * c, hi - i * c))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = data[tuple(src)]
        return out

    def column(self, start: int, stop: int, col: int | None) -> np.ndarray:
        """Rows ``[start, stop)`` of a 1-D array, or of one column of a 2-D one."""
        if col is None:
            return self.read((start, stop))
        return self.read((start, stop), (col, col + 1))[:, 0]
