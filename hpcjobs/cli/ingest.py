"""``hpcjobs ingest``: CSV, .npy, Parquet or basket file -> Zarr group."""

from __future__ import annotations

import click

from hpcjobs.cli._errors import wrap_errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(dir_okay=False, path_type=str))
@click.argument("dest", type=click.Path(path_type=str))
@click.option("--name", default=None, metavar="ARRAY",
              help="Array (or transactions group) name inside DEST; default: the file stem.")
@click.option("--chunks", type=click.IntRange(min=1), default=None, metavar="ROWS",
              help="Rows per Zarr chunk (entries for basket files); default: about 64 MiB "
                   "per chunk.")
@click.option("--format", "fmt", type=click.Choice(["csv", "npy", "parquet", "basket"]),
              default=None, help="Input format; default: from the suffix (.csv .tsv .npy "
                                 ".parquet .pq .basket .dat, optionally .gz).")
@click.option("--delimiter", default=None, metavar="CHAR",
              help="CSV delimiter; default ',' (tab for .tsv). Use '\\t' for a tab.")
@click.option("--header/--no-header", default=None,
              help="Whether the CSV's first line holds column names; default: auto-detect.")
@click.option("--columns", default=None, metavar="A,B,...",
              help="CSV/Parquet: keep only these columns (header names or 0-based indices), "
                   "in this order.")
@click.option("--codec", default=None, metavar="NAME",
              help="How chunks are compressed: blosc-lz4 (the default: fastest to decode), "
                   "blosc-zstd (integers and labels much smaller, as fast), zstd (smooth "
                   "floats smaller, a quarter of the speed), none; each is followed by a "
                   "CRC-32C checksum (docs/data.md).")
@click.option("--shard/--no-shard", default=None,
              help="Store chunks together in shards of about 512 MiB along the rows (one "
                   "file per shard); default: shard when the data holds a whole shard.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing DEST (only once the new one is complete).")
@wrap_errors
def ingest(src: str, dest: str, name: str | None, chunks: int | None, fmt: str | None,
           delimiter: str | None, header: bool | None, columns: str | None,
           codec: str | None, shard: bool | None, overwrite: bool) -> None:
    """Turn SRC (CSV, .npy, Parquet or a basket file) into a Zarr group at DEST.

    The file is streamed chunk by chunk, so it may be larger than memory. CSV and Parquet
    give one 2-D float64 array (column names in its `columns` attribute); .npy keeps its
    dtype; a basket file (one transaction per line, items separated by spaces or commas)
    gives a group with `indptr`, `items` and `labels` (CSR). An empty line is an empty
    transaction. DEST appears only when complete; an existing DEST is refused unless
    --overwrite. Chunks are compressed for decode speed (Blosc LZ4 with byte shuffle) and
    checksummed; data of 512 MiB or more is sharded (a terabyte is about 2000 files).

    \b
    Examples:
      hpcjobs ingest readings.csv data/sensors.zarr --name readings
      hpcjobs ingest shop.basket data/shop.zarr --chunks 1000000
      hpcjobs ingest archive.npy data/archive.zarr --codec blosc-zstd --no-shard
    """
    from hpcjobs.ingest import ingest as run_ingest

    if delimiter == "\\t":
        delimiter = "\t"
    result = run_ingest(src, dest, name=name, chunks=chunks, format=fmt, delimiter=delimiter,
                        header=header, columns=columns, overwrite=overwrite, codec=codec,
                        shard=shard)
    click.echo(result.summary())
