"""``hpcjobs verify``: read every chunk of a Zarr group and name the ones that are corrupt.

Arrays that hpcjobs writes carry a CRC-32C checksum per chunk (``hpcjobs.zarrio.create_array``),
so a chunk whose stored bytes changed fails its read. This walks a group (a job's result, an
ingested input), reads each array chunk by chunk, and reports the chunks that fail, and the
arrays that have no checksum (written by other tools: only a failing decode shows there).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from hpcjobs.errors import UserError


@dataclass
class VerifyReport:
    """What :func:`verify` found: per array, its chunk count and the bad chunks' indices."""

    arrays: int = 0
    chunks: int = 0
    corrupt: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.corrupt


def has_checksum(array) -> bool:
    """Whether the array's codecs end with a checksum of the stored bytes."""
    codecs = getattr(array.metadata, "codecs", ()) or ()
    return any("crc32c" in type(c).__name__.lower() for c in codecs)


def verify(path: str | Path) -> VerifyReport:
    """Read every chunk of every array under the Zarr group (or array) at ``path``."""
    import zarr

    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a Zarr group or array ({type(exc).__name__}: {exc})"
                        ) from None
    if isinstance(node, zarr.Array):
        arrays = [("", node)]
    else:
        arrays = [(name, a) for name, a in node.members(max_depth=None)
                  if isinstance(a, zarr.Array)]
    report = VerifyReport()
    for name, array in sorted(arrays, key=lambda item: item[0]):
        report.arrays += 1
        if not has_checksum(array):
            report.unchecked.append(name or str(path))
        grid = [range(math.ceil(s / c)) if s else range(0) for s, c in
                zip(array.shape, array.chunks, strict=True)]
        for idx in itertools.product(*grid):
            report.chunks += 1
            box = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, array.chunks, strict=True))
            try:
                array[box]
            except Exception as exc:  # noqa: BLE001 - a checksum or a decode that fails
                report.corrupt.append((name or str(path), idx, f"{type(exc).__name__}: "
                                       f"{str(exc).splitlines()[0] if str(exc) else ''}"))
    return report
