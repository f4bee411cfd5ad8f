"""``hpcjobs verify``: read every chunk of a Zarr group and name the ones that are corrupt.

Arrays that hpcjobs writes carry a CRC-32C checksum per chunk (``hpcjobs.zarrio.create_array``),
so a chunk whose stored bytes changed fails its check. This walks a group (a job's result, an
ingested input) and checks each array chunk by chunk: checksummed ones on their stored bytes
(nothing decoded, at the speed of the disk: ``zarrio.damaged_chunks``), others by decoding
them (written by other tools: only a failing decode shows there). In a sharded array each
inner chunk is checked, and each is named: one whose checksum fails ("in shard i.j"), or all
of a shard whose index fails its own checksum. For a job's result it also checks the completion record:
the root's and every step's status, a marker for every chunk of a chunked output, and the
provenance a result must carry.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from hpcjobs.errors import UserError
from hpcjobs.zarrio import DONE_DIR, damaged_chunks, has_checksum


@dataclass
class VerifyReport:
    """What :func:`verify` found: per array, its chunk count and the bad chunks' indices."""

    arrays: int = 0
    chunks: int = 0
    corrupt: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # of the result's completion record

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.problems


#: what the root of a job's result always records (``hpcjobs.runner``)
PROVENANCE = ("job", "fingerprint", "steps", "versions", "hpcjobs_version", "host", "runs")


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
        checked = has_checksum(array)
        if not checked:
            report.unchecked.append(name or str(path))
        where = path / name if name else path
        grid = [range(math.ceil(s / c)) if s else range(0) for s, c in
                zip(array.shape, array.chunks, strict=True)]
        markers = where / DONE_DIR
        if checked:  # every stored chunk (inner chunk of a shard) on its bytes
            report.corrupt.extend((name or str(path), idx, why)
                                  for idx, why in damaged_chunks(where, array))
        for idx in itertools.product(*grid):
            report.chunks += 1
            if not checked:
                _decode(array, name or str(path), idx, report)
            key = ".".join(map(str, idx))
            if markers.is_dir() and not (markers / key).exists():
                report.problems.append(f"{name}: chunk {key} has no completion marker "
                                       "(unfinished: run again with --resume)")
    if not isinstance(node, zarr.Array) and "job_name" in node.attrs:  # a job's result
        _check_result(node, report)
    return report


def _decode(array, name: str, idx: tuple[int, ...], report: VerifyReport) -> None:
    box = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, array.chunks, strict=True))
    try:
        array[box]
    except Exception as exc:  # noqa: BLE001 - any decode that fails
        report.corrupt.append((name, idx, f"{type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}"))


def _check_result(root, report: VerifyReport) -> None:
    """A job's result: complete, every step complete, its provenance all there."""
    attrs = root.attrs
    missing = [k for k in PROVENANCE if k not in attrs]
    if missing:
        report.problems.append(f"provenance lacks {', '.join(missing)}")
    if attrs.get("status") != "complete":
        report.problems.append(f"status is {attrs.get('status')!r}, not 'complete'")
    for step in attrs.get("steps", []):
        if step not in root:
            report.problems.append(f"step {step}: missing")
        elif root[step].attrs.get("status") != "complete":
            report.problems.append(f"step {step}: status {root[step].attrs.get('status')!r}")
