"""Scratch arrays kept from one kernel call to the next.

A fresh array of tens of megabytes comes as fresh pages, which the operating system zeroes
on first touch: making k-means' float32 copy of 20000 x 784 rows took 3-4 ms more in new
pages than in pages used before (15 -> 12 ms for the pass that makes it; more on a virtual
machine whose host hands the memory back), and a user who fits several models on the same
data (k from 2 to 20, restarts) pays that every time. As allocators that keep freed memory
for the next request do (TBB's, which oneDAL uses), :func:`workspace` lends the caller a
kept buffer when one is large enough and keeps it again afterwards, up to ``KEEP_BYTES``
(larger ones are freed as usual). :func:`release_workspaces` frees what is kept.

A buffer is lent to one caller at a time: calls that overlap (Dask's threads) get a fresh
one each. The contents are whatever the last user left: callers overwrite what they read.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np

#: the largest buffer kept between calls (one per name)
KEEP_BYTES = 256 * 2**20

_lock = threading.Lock()
_kept: dict[str, np.ndarray] = {}


@contextlib.contextmanager
def workspace(name: str, shape: tuple[int, ...], dtype) -> Iterator[np.ndarray]:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype`` for the ``with`` block:
    the buffer kept under ``name`` where it is large enough and not in use, else a new one
    (kept afterwards if no larger one is and it is at most ``KEEP_BYTES``)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    with _lock:
        buf = _kept.pop(name, None)
    if buf is None or buf.nbytes < nbytes:
        if buf is not None:  # too small: back for a smaller request
            _keep(name, buf)
        buf = np.empty(max(nbytes, 1), dtype=np.uint8)
    try:
        yield buf[:nbytes].view(dtype).reshape(shape)
    finally:
        _keep(name, buf)


def _keep(name: str, buf: np.ndarray) -> None:
    if buf.nbytes > KEEP_BYTES:
        return
    with _lock:
        kept = _kept.get(name)
        if kept is None or kept.nbytes < buf.nbytes:
            _kept[name] = buf


def release_workspaces() -> int:
    """Free every kept buffer (their memory goes back once no array refers to it); returns
    the bytes released."""
    with _lock:
        freed = sum(b.nbytes for b in _kept.values())
        _kept.clear()
    return freed
