"""Turn CSV, NumPy ``.npy``, Parquet and basket files into Zarr (format 3) input groups.

Every source is streamed: at most one stored row block (a Zarr chunk, or a shard of up to
512 MiB where the array is sharded) plus one read block is held in memory, so a file larger
than memory ingests fine. The output is written to a temporary
sibling ``DEST.tmp-<pid>`` and renamed into place only when complete, so an error or Ctrl-C
never leaves a half-written ``DEST``. An existing ``DEST`` is refused unless ``overwrite``.

Layout written at ``DEST`` (a Zarr group, format 3):

- CSV, ``.npy``, Parquet: one array ``DEST/<name>`` (``name`` defaults to the file stem) with
  ``dimension_names`` ``["row", "column"]`` (``["row"]`` for a 1-D ``.npy``), so
  ``xarray.open_zarr(DEST)`` reads it. CSV and Parquet give float64 with the column names in
  the array attribute ``columns``; ``.npy`` keeps its dtype.
- Basket files (one transaction per line, items separated by spaces and/or commas): a group
  ``DEST/<name>`` with attribute ``hpcjobs_kind = "transactions"`` and arrays ``indptr``
  (int64, n+1), ``items`` (int32 ids, sorted by position: transaction ``i`` holds
  ``items[indptr[i]:indptr[i+1]]``) and ``labels`` (strings; id ``k`` is ``labels[k]``, ids
  numbered in order of first appearance). An empty (or blank) line is a legal empty
  transaction: it counts in ``n`` but holds no item. The newline that ends the last line
  does not start another transaction. An item repeated within one transaction is kept once.

The group attribute ``ingest`` records the source path, format, options (the codec and the
shard choice among them), row count and time; ``hpcjobs_version`` the version that wrote it.

Codecs (``codec``): ``blosc-lz4`` (default: Blosc LZ4, byte shuffle, level 1, the fastest to
decode), ``blosc-zstd``, ``zstd`` or ``none``, each followed by a CRC-32C of every stored chunk
(``hpcjobs.zarrio.CODECS``; zarr's own metadata names them). Sharding (``shard``): an array
that holds at least one shard (``SHARD_BYTES``, 512 MiB of whole chunks along the rows) is
stored one shard per file, written whole, once; ``shard=False``/``True`` decide otherwise.
Each array's per-block statistics (count, NaN count, min, max per column; a block is a shard
where sharded, else a chunk) are recorded as it is written, in
``<array>/.hpcjobs-stats.npz`` (``hpcjobs.chunkstats``).

Default chunking: rows per chunk = 64 MiB // (bytes per row), capped at the number of rows
when it is known up front (``.npy``, Parquet), at least 1. Chunks span all columns. For
basket files each of ``indptr`` and ``items`` gets 64 MiB chunks (2**23 and 2**24 entries).

CSV details: the header is auto-detected (the first non-blank line is a header if any cell
is not a number) unless ``header`` is given; blank lines are skipped; an empty cell is a
missing value (NaN); ``nan``/``inf`` are read as such; fields may be quoted with ``"``;
``.tsv`` files default to a tab delimiter; ``columns`` keeps some columns (by header name or
0-based index) so that others, e.g. text labels, may hold anything; ``.gz`` compressed CSV
and basket files are read transparently. A ragged row or a non-numeric cell is an error
naming the file, line and cell.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import os
import re
import shutil
import time
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hpcjobs._version import __version__
from hpcjobs.errors import OutputExistsError, UserError
from hpcjobs.zarrio import CODECS, DEFAULT_CODEC, create_array

FORMATS = ("csv", "npy", "parquet", "basket")

#: target bytes per Zarr chunk when ``chunks`` is not given
CHUNK_BYTES = 64 * 2**20

#: target bytes per shard (whole chunks along the rows); an array of at least one shard is
#: sharded unless ``shard=False``
SHARD_BYTES = 512 * 2**20

#: the largest chunk ``chunks`` may ask for (a chunk is held in memory whole, and Blosc
#: compresses at most 2 GiB at once)
MAX_CHUNK_BYTES = 2**30

#: lines parsed per block when streaming text (independent of the Zarr chunk size)
READ_LINES = 65_536

#: what reading a damaged file raises: gzip (OSError, EOFError, zlib.error) and the rest
_READ_ERRORS = (OSError, EOFError, zlib.error)

_SUFFIXES = {
    ".csv": "csv", ".tsv": "csv",
    ".npy": "npy",
    ".parquet": "parquet", ".pq": "parquet",
    ".basket": "basket", ".dat": "basket", ".transactions": "basket",
}


@dataclass
class IngestResult:
    """What :func:`ingest` wrote: the group path, and per array its shape, dtype and chunks."""

    dest: Path
    format: str
    name: str
    arrays: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{k} {'x'.join(map(str, a['shape']))} {a['dtype']} (chunks {a['chunks'][0]}"
                 + (f", shards {a['shards'][0]}" if a.get("shards") else "") + ")"
                 for k, a in self.arrays.items()]
        return (f"Wrote {self.dest} ({self.format}): " + ", ".join(parts)
                + f" in {self.seconds:.2f} s")


# --------------------------------------------------------------------------- public API


def detect_format(src: str | os.PathLike) -> str:
    """Return the format of ``src`` from its suffix (``.gz`` is looked through).

    Examples
    --------
    >>> detect_format("data/sales.csv.gz")
    'csv'
    """
    path = Path(src)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise UserError(f"{src}: cannot tell the format from the name (known suffixes: {known});"
                        f" pass --format {'|'.join(FORMATS)}")
    return fmt


def default_chunk_rows(row_bytes: int, n_rows: int | None = None) -> int:
    """Rows per chunk so that one chunk holds about ``CHUNK_BYTES`` (64 MiB) or less.

    Examples
    --------
    >>> default_chunk_rows(10 * 8)       # 10 float64 columns
    838860
    >>> default_chunk_rows(80, n_rows=1000)
    1000
    """
    rows = max(1, CHUNK_BYTES // max(1, int(row_bytes)))
    if n_rows is not None:
        rows = min(rows, max(1, int(n_rows)))
    return int(rows)


def ingest(src: str | os.PathLike, dest: str | os.PathLike, *, name: str | None = None,
           chunks: int | None = None, format: str | None = None,
           delimiter: str | None = None, header: bool | None = None,
           columns: list[str] | str | None = None, overwrite: bool = False,
           codec: str | None = None, shard: bool | None = None) -> IngestResult:
    """Convert ``src`` (CSV, ``.npy``, Parquet or basket file) into a Zarr group at ``dest``.

    Parameters
    ----------
    src : path
        The file to read; its format comes from the suffix unless ``format`` is given.
    dest : path
        The Zarr group to create. It must not exist unless ``overwrite``.
    name : str, optional
        Name of the array (or transactions group) inside ``dest``; default: the file stem.
    chunks : int, optional
        Rows per Zarr chunk (entries for basket arrays); default about 64 MiB per chunk.
    format : {"csv", "npy", "parquet", "basket"}, optional
    delimiter : str, optional
        CSV delimiter; default ``","`` (tab for ``.tsv``).
    header : bool, optional
        Whether the CSV's first line is a header; default: auto-detected.
    columns : list of str, or a comma-separated str, optional
        CSV and Parquet: keep only these columns (header names or 0-based indices), in this
        order; other columns may hold anything. Default: all columns (CSV) or all numeric
        columns (Parquet; the others are listed in the attribute ``skipped_columns``).
    overwrite : bool
        Replace an existing ``dest`` (only once the new one is complete).
    codec : {"blosc-lz4", "blosc-zstd", "zstd", "none"}, optional
        How chunks are compressed (``hpcjobs.zarrio.CODECS``; each is followed by a CRC-32C);
        default ``"blosc-lz4"``, the fastest to decode (``hpcjobs bench codecs``).
    shard : bool, optional
        Store whole chunks together in shards of about ``SHARD_BYTES`` (512 MiB) along the
        rows (zarr v3 sharding: one file per shard). Default: sharded when the array holds
        at least one whole shard.

    Returns
    -------
    IngestResult

    Raises
    ------
    hpcjobs.errors.UserError
        Missing or empty source, unknown format, bad cell or ragged row, existing ``dest``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "x.npy"), np.ones((4, 2)))
    >>> ingest(os.path.join(d, "x.npy"), os.path.join(d, "x.zarr")).arrays["x"]["shape"]
    [4, 2]
    """
    t0 = time.perf_counter()
    src_path = Path(src)
    dest_path = Path(dest)
    if not src_path.exists():
        raise UserError(f"{src}: no such file")
    if src_path.is_dir():
        raise UserError(f"{src}: is a folder; give one file")
    if format is None:
        format = detect_format(src_path)
    elif format not in FORMATS:
        raise UserError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    codec = DEFAULT_CODEC if codec is None else codec
    if codec not in CODECS:
        raise UserError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    if chunks is not None and (isinstance(chunks, bool) or int(chunks) < 1):
        raise UserError(f"chunks must be a positive number of rows, got {chunks!r}")
    if name is None:
        name = _stem(src_path)
    _check_name(name)
    if delimiter is None:
        delimiter = "\t" if ".tsv" in [s.lower() for s in src_path.suffixes] else ","
    if format == "csv" and (len(delimiter) != 1 or delimiter in '\r\n"'):
        raise UserError(f"the delimiter must be one character other than a newline or '\"', "
                        f"got {delimiter!r}")
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    if columns is not None:
        columns = [str(c) for c in columns]
        if not columns:
            raise UserError("columns: give at least one column name or index")
        if format not in ("csv", "parquet"):
            raise UserError(f"columns can only be chosen for CSV and Parquet, not {format}")
    _check_dest(dest_path, overwrite)

    tmp = dest_path.with_name(f"{dest_path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    result = IngestResult(dest=dest_path, format=format, name=name)
    try:
        import zarr

        try:
            group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        except PermissionError as exc:
            raise UserError(f"{dest_path.parent}: cannot write here ({exc.strerror})") from None
        writer = {"csv": _ingest_csv, "npy": _ingest_npy, "parquet": _ingest_parquet,
                  "basket": _ingest_basket}[format]
        info = writer(src_path, group, name, chunks=chunks, delimiter=delimiter, header=header,
                      columns=columns, store={"codec": codec, "shard": shard})
        group.attrs.update({
            "hpcjobs_version": __version__,
            "ingest": {
                "source": str(src_path.resolve()),
                "format": format,
                "name": name,
                "options": {"chunks": chunks, "delimiter": delimiter if format == "csv" else None,
                            "header": header, "columns": columns, "codec": codec,
                            "shard": shard},
                "rows": info.pop("_rows"),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        })
        result.arrays = info
        with warnings.catch_warnings():
            # consolidated metadata is not (yet) in the v3 spec, but xarray opens it without
            # a warning and with one read instead of one per array
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(tmp))
        _replace(tmp, dest_path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.seconds = time.perf_counter() - t0
    return result


# --------------------------------------------------------------------------- helpers


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        if suffix.lower() in (*_SUFFIXES, ".gz"):
            name = name[: -len(suffix)]
        else:
            break
    return name or "data"


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith((".", "__")) or \
            len(name.encode()) > 200 or not name.isprintable():
        raise UserError(f"bad array name {_short(name)!r}: use a plain name of at most 200 "
                        "bytes without '/', not starting with '.' or '__'")


def _reason(exc: BaseException) -> str:
    """A library's error as words for a one-line message: its first line, without the
    names of exception classes it quotes."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return re.sub(r"\b[A-Z]\w*(?:Exception|Error): ", "", text) or "damaged"


def _check_dest(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"{dest}: already exists; pass --overwrite to replace it")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{parent}: no such folder for the output {dest}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{parent}: not writable, cannot create {dest.name} there")


def _replace(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``dest``; an old ``dest`` goes only after the move."""
    old = None
    if dest.exists() or dest.is_symlink():
        if not overwrite:  # appeared while we worked
            raise OutputExistsError(f"{dest}: already exists; pass --overwrite to replace it")
        old = dest.with_name(f"{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def _open_text(path: Path) -> Iterator[io.TextIOBase]:
    """``path`` (or ``path.gz``) as UTF-8 text; a binary file or another encoding is bad
    input, named in one line, wherever in the file it shows."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as raw:
        try:
            head = raw.read(8192)
        except _READ_ERRORS as exc:  # e.g. not gzip at all
            raise UserError(f"{path}: cannot read it: {_reason(exc)}") from None
    if b"\0" in head:
        raise UserError(f"{path}: a binary file (it holds NUL bytes), not CSV or basket text; "
                        "ingest reads text files, .npy and Parquet")
    with opener(path, "rt", encoding="utf-8-sig", newline=None) as fh:
        try:
            yield fh
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r}"
                            f": {exc.reason}); save it as UTF-8, or give .npy or Parquet")\
                from None


def _blocks(fh, first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number of the block's first line, lines)``, READ_LINES at a time."""
    lineno = first_line
    while True:
        try:
            lines = list(itertools.islice(fh, READ_LINES))
        except UnicodeDecodeError as exc:
            raise UserError(f"{getattr(fh, 'name', '?')}: not UTF-8 text near line {lineno}: "
                            f"{exc.reason}") from None
        except _READ_ERRORS as exc:  # e.g. a corrupt gzip stream
            raise UserError(f"{getattr(fh, 'name', '?')}: cannot read near line {lineno}: "
                            f"{_reason(exc)}") from None
        if not lines:
            return
        yield lineno, lines
        lineno += len(lines)


def shard_rows_for(chunk_rows: int, row_bytes: int) -> int:
    """Rows per shard: the most whole chunks within ``SHARD_BYTES`` (512 MiB), at least one.

    Examples
    --------
    >>> shard_rows_for(1_000_000, 64)          # 64 MB chunks: 8 per shard
    8000000
    >>> shard_rows_for(10, 64)                 # tiny chunks: many per shard
    8388600
    """
    chunk_rows = max(1, int(chunk_rows))
    per = max(1, SHARD_BYTES // max(1, chunk_rows * int(row_bytes)))
    return chunk_rows * per


class _RowWriter:
    """Append row blocks to a Zarr array, one whole stored row block per write: a chunk, or
    a shard where the array is sharded.

    Rows are buffered until a block is full, so every write but the last covers exactly one
    chunk or shard (no read-modify-write of either). The array is created at the first write
    (so a source shorter than one chunk gets a chunk of its own length, not a mostly empty
    one) and grows with ``resize`` unless its final length is known up front.

    ``shard``: True shards in shards of :func:`shard_rows_for` rows; False never; None
    (default) shards an array that holds at least one whole shard: decided up front when the
    length is known, else once a shard's rows have arrived (the source ending sooner gives an
    unsharded array). Each written block's statistics (count, NaN count, min, max per column)
    go to ``<array>/.hpcjobs-stats.npz`` at :meth:`close` (``hpcjobs.chunkstats``).
    """

    def __init__(self, group, name: str, tail: tuple[int, ...], dtype, chunk_rows: int,
                 dims: list[str], n_rows: int | None = None, attrs: dict | None = None,
                 codec: str = DEFAULT_CODEC, shard: bool | None = None):
        from hpcjobs import chunkstats

        self.group, self.name, self.dims, self.attrs = group, name, dims, attrs or {}
        self.tail = tuple(tail)
        self.dtype = np.dtype(dtype)
        self.chunk_rows = int(chunk_rows)
        self.codec = codec
        row_bytes = self.dtype.itemsize * int(np.prod(self.tail, dtype=np.int64))
        if self.chunk_rows > 1 and self.chunk_rows * row_bytes > MAX_CHUNK_BYTES:
            most = max(1, MAX_CHUNK_BYTES // max(1, row_bytes))
            raise UserError(f"chunks: {self.chunk_rows:,} rows of {row_bytes} bytes make a chunk "
                            f"larger than {MAX_CHUNK_BYTES // 2**20} MiB; give at most {most:,} "
                            "rows (or none: about 64 MiB a chunk)")
        self.shard_rows = shard_rows_for(self.chunk_rows, row_bytes)
        self.sharded = shard  # None: not decided yet
        if shard is None and (self.shard_rows == self.chunk_rows or (
                n_rows is not None and n_rows < self.shard_rows)):
            self.sharded = False
        elif shard is None and n_rows is not None:
            self.sharded = True
        self.n_rows = n_rows
        self.array = None
        self.buf = None
        self.fill = 0
        self.n = 0
        self.stats = chunkstats.Recorder(self.tail[0] if len(self.tail) == 1 else 1)

    @property
    def block_rows(self) -> int:
        """Rows per write: a shard's unless the array is known to be unsharded."""
        return self.chunk_rows if self.sharded is False else self.shard_rows

    def _create(self, chunk_rows: int) -> None:
        self.chunk_rows = max(1, int(chunk_rows))
        shards = None
        if self.sharded:
            shards = (self.shard_rows, *self.tail)
        self.array = create_array(
            self.group, self.name, shape=(self.n_rows or 0, *self.tail),
            chunks=(self.chunk_rows, *self.tail), shards=shards, dtype=self.dtype,
            dimension_names=self.dims, attributes=self.attrs, codec=self.codec)

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=self.dtype)  # native byte order, for the statistics
        pos = 0
        total = len(block)
        while pos < total:
            rows = self.block_rows
            if self.fill == 0 and total - pos >= rows:  # aligned: write directly
                self._full(block[pos:pos + rows])
                pos += rows
                continue
            take = min(rows - self.fill, total - pos)
            self._room(self.fill + take, rows)
            self.buf[self.fill:self.fill + take] = block[pos:pos + take]
            self.fill += take
            pos += take
            if self.fill == rows:
                self._full(self.buf[:rows])
                self.fill = 0

    def _room(self, need: int, rows: int) -> None:
        """A buffer for ``need`` rows; it grows by doubling up to one block (``rows``), so a
        small source never holds a whole shard's worth."""
        have = 0 if self.buf is None else len(self.buf)
        if have >= need:
            return
        size = min(rows, max(need, self.chunk_rows, 2 * have))
        grown = np.empty((size, *self.tail), dtype=self.dtype)
        if self.fill:
            grown[:self.fill] = self.buf[:self.fill]
        self.buf = grown

    def _full(self, rows: np.ndarray) -> None:
        """A whole block's rows: a shard's decide an undecided array (it holds one)."""
        if self.sharded is None:
            self.sharded = True
        self._write(rows)

    def flush(self) -> None:
        if self.fill:
            self._write(self.buf[:self.fill])
            self.fill = 0

    def _write(self, rows: np.ndarray) -> None:
        if self.array is None:
            if self.sharded is None:  # the source ended within the first shard
                self.sharded = False
            self._create(self.chunk_rows)
        start, stop = self.n, self.n + len(rows)
        if stop > self.array.shape[0]:
            self.array.resize((stop, *self.tail))
        self.array[start:stop] = rows
        stored = self.shard_rows if self.sharded else self.chunk_rows
        for k in range(0, len(rows), stored):  # writes start on a stored block's first row
            self.stats.add((start + k) // stored, rows[k:k + stored])
        self.n = stop

    def close(self) -> dict:
        if self.array is None and self.fill <= self.chunk_rows:
            # everything fits in one chunk: size the chunk (and a forced shard) to the data
            self.sharded = bool(self.sharded)
            self.shard_rows = self.fill or 1
            self._create(self.fill or 1)
        self.flush()
        if self.array.shape[0] != self.n:
            self.array.resize((self.n, *self.tail))
        self.buf = None
        self.stats.save(_folder_of(self.array))
        return {"shape": [self.n, *self.tail], "dtype": str(self.dtype),
                "chunks": [self.chunk_rows, *self.tail],
                "shards": [self.shard_rows, *self.tail] if self.sharded else None,
                "codec": self.codec}


def _folder_of(array) -> Path:
    """The folder on disk of an array in a local store."""
    return Path(str(array.store_path.store.root), array.store_path.path)


# --------------------------------------------------------------------------- CSV


def _is_number(cell: str) -> bool:
    cell = cell.strip()
    if not cell:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter, quotechar='"'), [])


def _resolve_columns(src: Path, wanted: list[str], names: list[str] | None,
                     ncols: int) -> list[int]:
    """Indices of the ``wanted`` columns (names from the header, or 0-based indices)."""
    out = []
    for token in wanted:
        if names is not None and token in names:
            out.append(names.index(token))
            continue
        try:
            k = int(token)
        except ValueError:
            have = ", ".join(names) if names is not None else "no header: use 0-based indices"
            raise UserError(f"{src}: no column {token!r} (columns: {have})") from None
        if not 0 <= k < ncols:
            raise UserError(f"{src}: column index {k} out of range: the file has {ncols} "
                            f"columns (0..{ncols - 1})")
        out.append(k)
    if len(set(out)) != len(out):
        raise UserError(f"{src}: a column is selected twice in {wanted}")
    return out


def _ingest_csv(src: Path, group, name: str, *, chunks, delimiter, header, columns=None,
                store, **_) -> dict:
    with _open_text(src) as fh:
        # first non-blank line: header or data
        lineno = 0
        first = None
        for raw in fh:
            lineno += 1
            if raw.strip():
                first = raw
                break
        if first is None:
            raise UserError(f"{src}: empty file: no rows to ingest")
        cells = _split(first, delimiter)
        ncols = len(cells)
        by_name = columns is not None and any(not c.lstrip("-").isdigit() for c in columns)
        if header is None:
            if by_name:
                header = True  # names can only refer to a header
            else:
                look = cells
                if columns is not None:
                    look = [cells[i] for i in _resolve_columns(src, columns, None, ncols)]
                header = not all(map(_is_number, look))
        elif by_name and not header:
            raise UserError(f"{src}: columns chosen by name need a header (drop --no-header "
                            "or choose them by 0-based index)")
        names = [c.strip() for c in cells] if header else [f"c{i}" for i in range(ncols)]
        usecols = None
        if columns is not None:
            usecols = _resolve_columns(src, columns, names if header else None, ncols)
        kept_names = names if usecols is None else [names[i] for i in usecols]
        width = len(kept_names)
        pending = [] if header else [first]
        chunk_rows = chunks or default_chunk_rows(8 * width)
        attrs = {"columns": kept_names}
        if usecols is not None:
            attrs["source_columns"] = usecols
        writer = _RowWriter(group, name, (width,), np.float64, chunk_rows, ["row", "column"],
                            attrs=attrs, **store)
        first_what = "the header has" if header else "the first row has"

        def parse(start: int, lines: list[str]) -> None:
            block = _parse_block(src, start, lines, delimiter, ncols, names, first_what,
                                 usecols)
            if len(block):
                writer.append(block)

        if pending:
            parse(lineno, pending)
        for start, lines in _blocks(fh, lineno + 1):
            parse(start, lines)
    info = writer.close()
    if info["shape"][0] == 0:
        raise UserError(f"{src}: no data rows (only a header)")
    return {name: info, "_rows": info["shape"][0]}


def _parse_block(src: Path, start: int, lines: list[str], delimiter: str, ncols: int,
                 columns: list[str], first_what: str = "the first row has",
                 usecols: list[int] | None = None) -> np.ndarray:
    """Parse lines into a (rows, len(usecols) or ncols) float64 array; skip blank lines.

    The fast path is NumPy's C parser; if it refuses the block, a line-by-line pass finds
    the offending line and cell (or reads empty cells as NaN, which the fast path cannot).
    Only the ``usecols`` cells must be numbers; every row must have ``ncols`` cells.
    """
    width = ncols if usecols is None else len(usecols)
    kept = [line for line in lines if line.strip()]
    if not kept:
        return np.empty((0, width))
    # with usecols NumPy does not notice extra cells: count delimiters (quotes -> slow path)
    if usecols is None or all(line.count(delimiter) == ncols - 1 for line in kept):
        try:
            out = np.loadtxt(kept, delimiter=delimiter, comments=None, quotechar='"',
                             dtype=np.float64, ndmin=2, usecols=usecols)
            if out.shape[1] == width:
                return out
        except ValueError:
            pass
    wanted = range(ncols) if usecols is None else usecols
    rows = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        lineno = start + offset
        cells = _split(line, delimiter)
        if len(cells) != ncols:
            raise UserError(f"{src}: line {lineno}: ragged row: {len(cells)} cells where "
                            f"{first_what} {ncols}")
        row = np.empty(width)
        for k, j in enumerate(wanted):
            text = cells[j].strip()
            if not text:
                row[k] = np.nan
                continue
            try:
                row[k] = float(text)
            except ValueError:
                raise UserError(f"{src}: line {lineno}, column {j + 1} ({columns[j]!r}): "
                                f"{_short(text)!r} is not a number") from None
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, width)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# --------------------------------------------------------------------------- .npy


def _ingest_npy(src: Path, group, name: str, *, chunks, store, **_) -> dict:
    if src.suffix.lower() == ".gz":
        raise UserError(f"{src}: compressed .npy is not supported; decompress it first")
    with open(src, "rb") as fh:
        magic = fh.read(6)
    if magic[:2] == b"PK":  # a zip: .npz renamed .npy
        raise UserError(f"{src}: is an .npz archive; save each array with numpy.save")
    if magic != b"\x93NUMPY":
        raise UserError(f"{src}: cannot read as .npy (it does not start with NumPy's magic "
                        "bytes); save arrays with numpy.save, or pass --format")
    try:
        data = np.load(src, mmap_mode="r", allow_pickle=False)
    except EOFError:
        raise UserError(f"{src}: cannot read as .npy (truncated: it ends inside its header)") \
            from None
    except (ValueError, OverflowError, OSError, SyntaxError, TypeError) as exc:
        why = _reason(exc)
        if "mmap length is greater than file size" in why:
            why = "truncated: its header's shape and dtype need more bytes than the file holds"
        elif "Python objects" in why:
            why = "it holds Python objects (dtype object), not numbers"
        raise UserError(f"{src}: cannot read as .npy ({why})") from None
    if data.dtype.kind not in "biuf":
        raise UserError(f"{src}: dtype {data.dtype} is not numeric (expected bool, int or "
                        "float)")
    if data.ndim == 0 or data.shape[0] == 0 or data.size == 0:
        raise UserError(f"{src}: empty array of shape {data.shape}: no rows to ingest")
    n = data.shape[0]
    tail = data.shape[1:]
    dims = ["row", "column", *[f"dim_{i}" for i in range(2, data.ndim)]][: data.ndim]
    row_bytes = data.dtype.itemsize * int(np.prod(tail, dtype=np.int64))
    chunk_rows = min(chunks, n) if chunks else default_chunk_rows(row_bytes, n)
    writer = _RowWriter(group, name, tail, data.dtype.newbyteorder("="), chunk_rows, dims,
                        n_rows=n, **store)
    step = writer.block_rows  # a whole shard at a time where sharded
    for start in range(0, n, step):
        writer.append(np.ascontiguousarray(data[start:start + step]))
    info = writer.close()
    del data
    return {name: info, "_rows": n}


# --------------------------------------------------------------------------- Parquet


def _ingest_parquet(src: Path, group, name: str, *, chunks, store, columns=None, **_) -> dict:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(src)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{src}: cannot read as Parquet ({_reason(exc)})") from None
    schema = pf.schema_arrow
    numeric, skipped = [], []
    fields = list(schema)
    if columns is not None:
        all_names = [f.name for f in fields]
        picked = []
        for token in columns:
            if token in all_names:
                picked.append(fields[all_names.index(token)])
            elif token.lstrip("-").isdigit() and 0 <= int(token) < len(fields):
                picked.append(fields[int(token)])
            else:
                raise UserError(f"{src}: no column {token!r} (columns: {', '.join(all_names)})")
        fields = picked
    for fld in fields:
        t = fld.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) \
                or pa.types.is_decimal(t):
            numeric.append(fld.name)
        elif columns is not None:
            raise UserError(f"{src}: column {fld.name!r} is not numeric ({t})")
        else:
            skipped.append(fld.name)
    if not numeric:
        raise UserError(f"{src}: no numeric column (found {', '.join(skipped) or 'none'})")
    n = pf.metadata.num_rows
    if n == 0:
        raise UserError(f"{src}: empty file: no rows to ingest")
    d = len(numeric)
    chunk_rows = min(chunks, n) if chunks else default_chunk_rows(8 * d, n)
    attrs = {"columns": numeric}
    if skipped:
        attrs["skipped_columns"] = skipped
    writer = _RowWriter(group, name, (d,), np.float64, chunk_rows, ["row", "column"],
                        n_rows=n, attrs=attrs, **store)
    batch_rows = max(1, min(chunk_rows, 1 << 20))
    block = np.empty((batch_rows, d))
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=numeric):
            m = batch.num_rows
            for j in range(d):
                # to float64 even where that rounds (integers beyond 2**53)
                col = pc.cast(batch.column(j), pa.float64(), safe=False)
                if col.null_count:
                    col = pc.fill_null(col, float("nan"))
                block[:m, j] = col.to_numpy(zero_copy_only=False)
            writer.append(block[:m])
    except (pa.ArrowException, OSError) as exc:  # a damaged page: seen only as it is read
        raise UserError(f"{src}: cannot read as Parquet, damaged after row "
                        f"{writer.n + writer.fill} ({_reason(exc)})") from None
    info = writer.close()
    if info["shape"][0] != n:  # pragma: no cover - a lying footer
        raise UserError(f"{src}: footer says {n} rows, read {info['shape'][0]}")
    return {name: info, "_rows": n}


# --------------------------------------------------------------------------- baskets


def _ingest_basket(src: Path, group, name: str, *, chunks, store, **_) -> dict:
    sub = group.create_group(name, attributes={"hpcjobs_kind": "transactions"})
    ptr = _RowWriter(sub, "indptr", (), np.int64, chunks or CHUNK_BYTES // 8,
                     ["transaction_bound"], **store)
    items = _RowWriter(sub, "items", (), np.int32, chunks or CHUNK_BYTES // 4, ["entry"],
                       **store)
    ids: dict[str, int] = {}
    ptr.append(np.zeros(1, dtype=np.int64))
    n_tx = 0
    n_items = 0
    with _open_text(src) as fh:
        for _start, lines in _blocks(fh):
            bounds = np.empty(len(lines), dtype=np.int64)
            block: list[int] = []
            for i, line in enumerate(lines):
                seen = dict.fromkeys(line.replace(",", " ").split())
                for label in seen:
                    k = ids.get(label)
                    if k is None:
                        k = ids[label] = len(ids)
                    block.append(k)
                bounds[i] = n_items + len(block)
            if len(ids) > np.iinfo(np.int32).max:  # pragma: no cover - 2**31 distinct items
                raise UserError(f"{src}: more than 2**31 distinct items")
            items.append(np.asarray(block, dtype=np.int32))
            ptr.append(bounds)
            n_items += len(block)
            n_tx += len(lines)
    if n_tx == 0:
        raise UserError(f"{src}: empty file: no transactions")
    info_ptr = ptr.close()
    info_items = items.close()
    labels = np.array(list(ids), dtype=np.dtypes.StringDType()) if ids else \
        np.empty(0, dtype=np.dtypes.StringDType())
    lab = create_array(sub, "labels", shape=labels.shape,
                       chunks=(max(1, min(len(labels), 1 << 20)),),
                       dtype=str, dimension_names=["label"], codec=store["codec"])
    if len(labels):
        lab[:] = labels
    sub.attrs.update({"n_transactions": n_tx, "n_labels": len(ids)})
    return {
        f"{name}/indptr": info_ptr,
        f"{name}/items": info_items,
        f"{name}/labels": {"shape": [len(labels)], "dtype": "str", "chunks": list(lab.chunks),
                           "shards": None, "codec": store["codec"]},
        "_rows": n_tx,
    }
