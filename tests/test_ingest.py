"""hpcjobs ingest: CSV, .npy, Parquet and basket files into Zarr, streamed and atomic."""

from __future__ import annotations

import gzip
import os
import tracemalloc

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from hpcjobs import ingest as ing
from hpcjobs.cli import cli
from hpcjobs.errors import OutputExistsError, UserError


def _leftovers(folder) -> list[str]:
    return sorted(p for p in os.listdir(folder) if ".tmp-" in p or ".old-" in p)


def _write(path, text: str):
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- CSV


def test_csv_with_header_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((257, 4))
    src = tmp_path / "readings.csv"
    np.savetxt(src, X, delimiter=",", header="a,b,c,d", comments="", fmt="%.17g")
    res = ing.ingest(src, tmp_path / "out.zarr", chunks=50)
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    arr = g["readings"]
    assert arr.shape == (257, 4) and arr.dtype == np.float64
    assert arr.chunks == (50, 4)
    np.testing.assert_array_equal(arr[:], X)
    assert arr.attrs["columns"] == ["a", "b", "c", "d"]
    assert arr.metadata.dimension_names == ("row", "column")
    assert g.attrs["ingest"]["format"] == "csv"
    assert g.attrs["ingest"]["source"] == str(src.resolve())
    assert g.attrs["ingest"]["rows"] == 257
    assert g.attrs["hpcjobs_version"]
    assert res.arrays["readings"]["shape"] == [257, 4]
    assert _leftovers(tmp_path) == []


def test_csv_no_header_detected_blank_lines_empty_cells(tmp_path):
    src = _write(tmp_path / "x.csv", '1, 2,3\n\n4,,"6"\n  \nnan,inf,-1e3\n')
    ing.ingest(src, tmp_path / "x.zarr")
    arr = zarr.open_group(str(tmp_path / "x.zarr"), mode="r")["x"]
    np.testing.assert_array_equal(arr[:], [[1, 2, 3], [4, np.nan, 6], [np.nan, np.inf, -1e3]])
    assert arr.attrs["columns"] == ["c0", "c1", "c2"]


def test_csv_header_flags_and_delimiter(tmp_path):
    src = _write(tmp_path / "x.txt", "10;20\n30;40\n")
    # forced header: the first numeric line becomes names
    ing.ingest(src, tmp_path / "h.zarr", format="csv", delimiter=";", header=True, name="v")
    arr = zarr.open_group(str(tmp_path / "h.zarr"), mode="r")["v"]
    assert arr.attrs["columns"] == ["10", "20"]
    np.testing.assert_array_equal(arr[:], [[30, 40]])
    # --no-header with a text first line: a precise error
    src2 = _write(tmp_path / "y.csv", "a,b\n1,2\n")
    with pytest.raises(UserError, match=r"y\.csv: line 1, column 1 \('c0'\): 'a' is not a number"):
        ing.ingest(src2, tmp_path / "y.zarr", header=False)
    assert not (tmp_path / "y.zarr").exists()


def test_tsv_and_gzip(tmp_path):
    (tmp_path / "t.tsv").write_text("x\ty\n1\t2\n3\t4\n")
    ing.ingest(tmp_path / "t.tsv", tmp_path / "t.zarr")
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "t.zarr"))["t"][:],
                                  [[1, 2], [3, 4]])
    with gzip.open(tmp_path / "g.csv.gz", "wt") as fh:
        fh.write("p,q\n" + "".join(f"{i},{2 * i}\n" for i in range(1000)))
    ing.ingest(tmp_path / "g.csv.gz", tmp_path / "g.zarr", chunks=64)
    arr = zarr.open_group(str(tmp_path / "g.zarr"))["g"]
    np.testing.assert_array_equal(arr[:, 1], 2 * np.arange(1000.0))


@pytest.mark.parametrize("text, message", [
    ("a,b,c\n1,2,3\n4,5\n", r"bad\.csv: line 3: ragged row: 2 cells where the header has 3"),
    ("1,2,3\n4,5\n", r"bad\.csv: line 2: ragged row: 2 cells where the first row has 3"),
    ("a,b,c\n1,2,3\n4,5,6,7\n", r"line 3: ragged row: 4 cells"),
    ("a,b,c\n1,2,3\n4,x,5\n", r"bad\.csv: line 3, column 2 \('b'\): 'x' is not a number"),
    ("a,b\n\n\n1,2\n3,4\n5,six\n", r"line 6, column 2 \('b'\): 'six' is not a number"),
    ("", r"empty file: no rows"),
    ("\n\n  \n", r"empty file: no rows"),
    ("a,b,c\n", r"no data rows"),
])
def test_csv_bad_input_one_line_error_nothing_written(tmp_path, text, message):
    src = _write(tmp_path / "bad.csv", text)
    with pytest.raises(UserError, match=message) as info:
        ing.ingest(src, tmp_path / "bad.zarr")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad.zarr").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("data, suffix, message", [
    (bytes(range(256)) * 16, ".csv", r"bin\.csv: a binary file \(it holds NUL bytes\)"),
    (b"a,b\n1,2\n" + bytes(range(1, 256)) * 64, ".csv", r"not UTF-8 text \(byte b'\\x80'"),
    (b"a,b\n" + b"1,2\n" * 5000 + "caf\u00e9,3\n".encode("latin-1"), ".csv",
     r"bin\.csv: not UTF-8 text near line 2"),
    (b"milk bread\n" + "caf\u00e9 tea\n".encode("latin-1"), ".basket",
     r"bin\.basket: not UTF-8 text"),
    (b"\x1f\x8b not really gzip", ".csv.gz", r"bin\.csv\.gz: cannot read it"),
])
def test_binary_or_foreign_text_is_bad_input_in_one_line(tmp_path, data, suffix, message):
    src = tmp_path / f"bin{suffix}"
    src.write_bytes(data)
    result = CliRunner().invoke(cli, ["ingest", str(src), str(tmp_path / "bin.zarr")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    import re

    assert re.search(message, result.output), result.output
    assert not (tmp_path / "bin.zarr").exists() and _leftovers(tmp_path) == []


def test_csv_columns_selection(tmp_path):
    src = _write(tmp_path / "s.csv", 'id,x,label,y\nA1,1.5,"red, dark",2\nB2,3,blue,4\n')
    ing.ingest(src, tmp_path / "a.zarr", columns=["y", "x"])
    arr = zarr.open_group(str(tmp_path / "a.zarr"))["s"]
    np.testing.assert_array_equal(arr[:], [[2, 1.5], [4, 3]])
    assert arr.attrs["columns"] == ["y", "x"] and arr.attrs["source_columns"] == [3, 1]
    # by index, no header: the text column is left out, so the first line is data
    src2 = _write(tmp_path / "n.csv", "A1,1,2\nB2,3,4\n")
    ing.ingest(src2, tmp_path / "n.zarr", columns="1,2")
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "n.zarr"))["n"][:],
                                  [[1, 2], [3, 4]])
    # a ragged row is still caught when only some columns are read
    _write(tmp_path / "r.csv", "id,x\nA,1\nB,2,3\n")
    with pytest.raises(UserError, match="line 3: ragged row: 3 cells where the header has 2"):
        ing.ingest(tmp_path / "r.csv", tmp_path / "r.zarr", columns=["x"])
    with pytest.raises(UserError, match=r"no column 'z' \(columns: id, x, label, y\)"):
        ing.ingest(src, tmp_path / "b.zarr", columns=["z"])
    with pytest.raises(UserError, match="column index 7 out of range"):
        ing.ingest(src2, tmp_path / "b.zarr", columns="7")
    with pytest.raises(UserError, match="need a header"):
        ing.ingest(src, tmp_path / "b.zarr", columns=["x"], header=False)
    with pytest.raises(UserError, match="only be chosen for CSV and Parquet"):
        np.save(tmp_path / "v.npy", np.ones(3))
        ing.ingest(tmp_path / "v.npy", tmp_path / "b.zarr", columns=["0"])
    assert not (tmp_path / "b.zarr").exists() and not (tmp_path / "r.zarr").exists()


def test_csv_error_far_into_file_reports_physical_line(tmp_path, monkeypatch):
    monkeypatch.setattr(ing, "READ_LINES", 100)  # the bad line is in a later read block
    lines = ["a,b"] + [f"{i},{i}" for i in range(1000)]
    lines[777] = "1,oops"
    src = _write(tmp_path / "far.csv", "\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"line 778, column 2 \('b'\): 'oops'"):
        ing.ingest(src, tmp_path / "far.zarr", chunks=64)
    assert not (tmp_path / "far.zarr").exists()


@pytest.mark.parametrize("shard", [False, None])
def test_csv_is_streamed_not_loaded_whole(tmp_path, monkeypatch, shard):
    """Peak Python/NumPy memory stays far below the size of the data when chunks (and
    shards: here 4 chunks, so the data is sharded by default) are small."""
    monkeypatch.setattr(ing, "READ_LINES", 2000)
    monkeypatch.setattr(ing, "SHARD_BYTES", 4 * 5000 * 4 * 8)
    n, d = 200_000, 4
    src = tmp_path / "big.csv"
    with open(src, "w") as fh:
        for start in range(0, n, 20_000):
            block = np.arange(start, start + 20_000, dtype=np.float64)
            np.savetxt(fh, np.column_stack([block] * d), delimiter=",", fmt="%d")
    data_bytes = n * d * 8  # 6.4 MB of float64; the text is larger still
    tracemalloc.start()
    try:
        ing.ingest(src, tmp_path / "big.zarr", chunks=5000, shard=shard)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < data_bytes / 2, peak
    arr = zarr.open_group(str(tmp_path / "big.zarr"))["big"]
    assert arr.shape == (n, d) and arr.chunks == (5000, d)
    assert arr.shards == (None if shard is False else (20_000, d))
    np.testing.assert_array_equal(arr[-3:, 0], [n - 3, n - 2, n - 1])


def test_default_chunks_rule():
    assert ing.default_chunk_rows(80) == 64 * 2**20 // 80
    assert ing.default_chunk_rows(80, n_rows=10) == 10
    assert ing.default_chunk_rows(10**9) == 1


# ----------------------------------------------------------------------------- .npy


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16, np.bool_])
def test_npy_round_trip_keeps_dtype(tmp_path, dtype):
    X = (np.arange(103 * 3).reshape(103, 3) % 5).astype(dtype)
    np.save(tmp_path / "a.npy", X)
    res = ing.ingest(tmp_path / "a.npy", tmp_path / "a.zarr", chunks=10, name="arr")
    arr = zarr.open_group(str(tmp_path / "a.zarr"))["arr"]
    assert arr.dtype == np.dtype(dtype) and arr.chunks == (10, 3)
    np.testing.assert_array_equal(arr[:], X)
    assert res.arrays["arr"]["chunks"] == [10, 3]


def test_npy_1d_fortran_order_and_big_endian(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(50.0))
    ing.ingest(tmp_path / "v.npy", tmp_path / "v.zarr", chunks=7)
    arr = zarr.open_group(str(tmp_path / "v.zarr"))["v"]
    assert arr.metadata.dimension_names == ("row",)
    np.testing.assert_array_equal(arr[:], np.arange(50.0))
    F = np.asfortranarray(np.arange(40.0).reshape(10, 4)).astype(">f8")
    np.save(tmp_path / "f.npy", F)
    ing.ingest(tmp_path / "f.npy", tmp_path / "f.zarr", chunks=3)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "f.zarr"))["f"][:], F)


def test_npy_bad_inputs(tmp_path):
    np.save(tmp_path / "e.npy", np.empty((0, 3)))
    with pytest.raises(UserError, match="empty array"):
        ing.ingest(tmp_path / "e.npy", tmp_path / "e.zarr")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(UserError, match="not numeric"):
        ing.ingest(tmp_path / "s.npy", tmp_path / "s.zarr")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(UserError, match="cannot read as .npy"):
        ing.ingest(tmp_path / "junk.npy", tmp_path / "j.zarr")
    assert not any(p.suffix == ".zarr" for p in tmp_path.iterdir())


def test_xarray_reads_output(tmp_path):
    xr = pytest.importorskip("xarray")
    np.save(tmp_path / "m.npy", np.ones((20, 2)))
    ing.ingest(tmp_path / "m.npy", tmp_path / "m.zarr", chunks=8)
    ds = xr.open_zarr(tmp_path / "m.zarr")
    assert ds["m"].dims == ("row", "column") and ds["m"].shape == (20, 2)
    assert float(ds["m"].sum()) == 40.0


# ----------------------------------------------------------------------------- Parquet


def test_parquet_numeric_columns_nulls_and_batches(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = 1000
    table = pa.table({
        "x": pa.array(np.arange(n, dtype=np.float64)),
        "k": pa.array(np.arange(n, dtype=np.int32)),
        "name": pa.array([f"r{i}" for i in range(n)]),
        "y": pa.array([None if i % 10 == 0 else float(i) for i in range(n)]),
        "flag": pa.array([i % 2 == 0 for i in range(n)]),
    })
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=128)
    ing.ingest(tmp_path / "t.parquet", tmp_path / "t.zarr", chunks=100)
    arr = zarr.open_group(str(tmp_path / "t.zarr"))["t"]
    assert arr.shape == (n, 4) and arr.chunks == (100, 4)
    assert arr.attrs["columns"] == ["x", "k", "y", "flag"]
    assert arr.attrs["skipped_columns"] == ["name"]
    got = arr[:]
    np.testing.assert_array_equal(got[:, 0], np.arange(n))
    np.testing.assert_array_equal(got[:, 1], np.arange(n))
    expected_y = np.where(np.arange(n) % 10 == 0, np.nan, np.arange(n))
    np.testing.assert_array_equal(got[:, 2], expected_y)
    np.testing.assert_array_equal(got[:, 3], (np.arange(n) % 2 == 0))


def test_parquet_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "s": ["p", "q"], "b": [3, 4]}),
                   tmp_path / "c.parquet")
    ing.ingest(tmp_path / "c.parquet", tmp_path / "c.zarr", columns="b,a")
    arr = zarr.open_group(str(tmp_path / "c.zarr"))["c"]
    np.testing.assert_array_equal(arr[:], [[3, 1], [4, 2]])
    assert arr.attrs["columns"] == ["b", "a"]
    with pytest.raises(UserError, match="column 's' is not numeric"):
        ing.ingest(tmp_path / "c.parquet", tmp_path / "d.zarr", columns=["a", "s"])


def test_parquet_bad_inputs(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"s": ["a", "b"]}), tmp_path / "s.parquet")
    with pytest.raises(UserError, match="no numeric column"):
        ing.ingest(tmp_path / "s.parquet", tmp_path / "s.zarr")
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), tmp_path / "e.parquet")
    with pytest.raises(UserError, match="empty file"):
        ing.ingest(tmp_path / "e.parquet", tmp_path / "e.zarr")
    (tmp_path / "junk.parquet").write_text("hello")
    with pytest.raises(UserError, match="cannot read as Parquet"):
        ing.ingest(tmp_path / "junk.parquet", tmp_path / "j.zarr")


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("No module named 'pyarrow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError, match="pip install pyarrow"):
        ing.ingest(tmp_path / "t.parquet", tmp_path / "t.zarr")
    assert _leftovers(tmp_path) == [] and not (tmp_path / "t.zarr").exists()


# ----------------------------------------------------------------------------- baskets


def _read_tx(dest, name):
    g = zarr.open_group(str(dest), mode="r")[name]
    indptr, items, labels = g["indptr"][:], g["items"][:], g["labels"][:]
    tx = [[str(labels[k]) for k in items[indptr[i]:indptr[i + 1]]] for i in range(len(indptr) - 1)]
    return g, tx


def test_basket_csr_labels_empty_lines(tmp_path):
    src = _write(tmp_path / "shop.basket",
                 "milk bread\n\nbread,eggs  milk\nmilk milk\n   \nbeer\n")
    res = ing.ingest(src, tmp_path / "shop.zarr", chunks=2)
    g, tx = _read_tx(tmp_path / "shop.zarr", "shop")
    assert g.attrs["hpcjobs_kind"] == "transactions"
    # 6 lines -> 6 transactions; blank lines are empty transactions; a repeat counts once;
    # the final newline adds nothing
    assert tx == [["milk", "bread"], [], ["bread", "eggs", "milk"], ["milk"], [], ["beer"]]
    assert g["indptr"].dtype == np.int64 and g["items"].dtype == np.int32
    assert list(g["labels"][:]) == ["milk", "bread", "eggs", "beer"]  # first appearance
    np.testing.assert_array_equal(g["indptr"][:], [0, 2, 2, 5, 6, 6, 7])
    assert g["items"].chunks == (2,)
    assert g.attrs["n_transactions"] == 6
    assert res.arrays["shop/indptr"]["shape"] == [7]


def test_basket_no_trailing_newline_and_streaming(tmp_path, monkeypatch):
    monkeypatch.setattr(ing, "READ_LINES", 7)
    rng = np.random.default_rng(3)
    words = [f"i{k}" for k in range(30)]
    expected = [sorted(set(rng.choice(words, size=rng.integers(0, 6)).tolist()))
                for _ in range(200)]
    text = "\n".join(",".join(t) for t in expected)  # no newline at EOF
    src = _write(tmp_path / "r.dat", text)
    ing.ingest(src, tmp_path / "r.zarr", chunks=16)
    _, tx = _read_tx(tmp_path / "r.zarr", "r")
    assert len(tx) == 200
    assert [sorted(t) for t in tx] == expected


def test_basket_empty_file(tmp_path):
    src = _write(tmp_path / "e.basket", "")
    with pytest.raises(UserError, match="empty file: no transactions"):
        ing.ingest(src, tmp_path / "e.zarr")
    assert not (tmp_path / "e.zarr").exists() and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- atomicity


def test_existing_dest_refused_and_overwrite_replaces(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 2)))
    ing.ingest(tmp_path / "a.npy", tmp_path / "a.zarr")
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        ing.ingest(tmp_path / "a.npy", tmp_path / "a.zarr")
    np.save(tmp_path / "a.npy", np.zeros((7, 2)))
    ing.ingest(tmp_path / "a.npy", tmp_path / "a.zarr", overwrite=True)
    assert zarr.open_group(str(tmp_path / "a.zarr"))["a"].shape == (7, 2)
    assert _leftovers(tmp_path) == []


def test_failed_overwrite_keeps_old_dest(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((5, 2)))
    ing.ingest(tmp_path / "a.npy", tmp_path / "a.zarr")
    _write(tmp_path / "a.csv", "1,2\n3\n")
    with pytest.raises(UserError, match="ragged"):
        ing.ingest(tmp_path / "a.csv", tmp_path / "a.zarr", overwrite=True, name="a")
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "a.zarr"))["a"][:],
                                  np.ones((5, 2)))
    assert _leftovers(tmp_path) == []


def test_interrupt_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = ing._RowWriter._write

    def interrupted(self, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, rows)

    monkeypatch.setattr(ing._RowWriter, "_write", interrupted)
    np.save(tmp_path / "a.npy", np.ones((100, 2)))
    with pytest.raises(KeyboardInterrupt):
        ing.ingest(tmp_path / "a.npy", tmp_path / "a.zarr", chunks=10)
    assert calls["n"] == 3
    assert not (tmp_path / "a.zarr").exists() and _leftovers(tmp_path) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        ing.ingest(tmp_path / "missing.csv", tmp_path / "m.zarr")
    _write(tmp_path / "x.xyz", "1\n")
    with pytest.raises(UserError, match="cannot tell the format"):
        ing.ingest(tmp_path / "x.xyz", tmp_path / "m.zarr")
    with pytest.raises(UserError, match="unknown format 'xls'"):
        ing.ingest(tmp_path / "x.xyz", tmp_path / "m.zarr", format="xls")
    with pytest.raises(UserError, match="no such folder"):
        ing.ingest(tmp_path / "x.xyz", tmp_path / "nope" / "m.zarr", format="csv")
    real_access = os.access
    with pytest.MonkeyPatch.context() as mp:  # root may write anywhere: simulate a read-only folder
        mp.setattr(ing.os, "access",
                   lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
        with pytest.raises(UserError, match="not writable, cannot create m.zarr there"):
            ing.ingest(tmp_path / "x.xyz", tmp_path / "m.zarr", format="csv")
    with pytest.raises(UserError, match="bad array name"):
        ing.ingest(tmp_path / "x.xyz", tmp_path / "m.zarr", format="csv", name="a/b")
    assert not (tmp_path / "m.zarr").exists()


# ----------------------------------------------------------------------------- CLI


def test_cli_ingest_ok_and_errors(tmp_path):
    runner = CliRunner()
    _write(tmp_path / "x.csv", "a;b\n1;2\n3;4\n")
    r = runner.invoke(cli, ["ingest", str(tmp_path / "x.csv"), str(tmp_path / "x.zarr"),
                            "--delimiter", ";", "--name", "pts", "--chunks", "1",
                            "--columns", "a,b"])
    assert r.exit_code == 0, r.output
    assert "pts 2x2 float64" in r.output
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "x.zarr"))["pts"][:],
                                  [[1, 2], [3, 4]])
    # existing output: exit 2, one line, no traceback
    r = runner.invoke(cli, ["ingest", str(tmp_path / "x.csv"), str(tmp_path / "x.zarr")])
    assert r.exit_code == 2
    assert "already exists" in r.output and "Traceback" not in r.output
    # bad cell
    _write(tmp_path / "b.csv", "a,b\n1,2\n3,q\n")
    r = runner.invoke(cli, ["ingest", str(tmp_path / "b.csv"), str(tmp_path / "b.zarr")])
    assert r.exit_code == 2 and "line 3, column 2 ('b'): 'q' is not a number" in r.output
    assert not (tmp_path / "b.zarr").exists()
    # unknown --format value is a usage error (exit 2)
    r = runner.invoke(cli, ["ingest", str(tmp_path / "b.csv"), str(tmp_path / "b.zarr"),
                            "--format", "xls"])
    assert r.exit_code == 2
    # basket through the CLI, tab delimiter spelled as \t for CSV
    _write(tmp_path / "s.basket", "a b\n\nc\n")
    r = runner.invoke(cli, ["ingest", str(tmp_path / "s.basket"), str(tmp_path / "s.zarr")])
    assert r.exit_code == 0, r.output
    _, tx = _read_tx(tmp_path / "s.zarr", "s")
    assert tx == [["a", "b"], [], ["c"]]
    _write(tmp_path / "t.txt", "1\t2\n")
    r = runner.invoke(cli, ["ingest", str(tmp_path / "t.txt"), str(tmp_path / "t.zarr"),
                            "--format", "csv", "--delimiter", "\\t"])
    assert r.exit_code == 0, r.output


# ----------------------------------------------------------------------------- codecs, shards


def test_codec_option_and_its_record(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(300.0).reshape(100, 3))
    for codec, last_two in [(None, ("BloscCodec", "Crc32cCodec")),
                            ("blosc-zstd", ("BloscCodec", "Crc32cCodec")),
                            ("zstd", ("ZstdCodec", "Crc32cCodec")),
                            ("none", ("BytesCodec", "Crc32cCodec"))]:
        dest = tmp_path / f"{codec}.zarr"
        res = ing.ingest(tmp_path / "a.npy", dest, codec=codec, chunks=30)
        g = zarr.open_group(str(dest), mode="r")
        assert tuple(type(c).__name__ for c in g["a"].metadata.codecs[-2:]) == last_two
        assert g.attrs["ingest"]["options"]["codec"] == (codec or "blosc-lz4")
        assert res.arrays["a"]["codec"] == (codec or "blosc-lz4")
        np.testing.assert_array_equal(g["a"][...], np.arange(300.0).reshape(100, 3))
    assert zarr.open_array(str(tmp_path / "blosc-zstd.zarr" / "a")).metadata.codecs[1] \
        .cname.value == "zstd"
    with pytest.raises(UserError, match="unknown codec 'lz5'; choose one of blosc-lz4, "
                                        "blosc-zstd, zstd, none"):
        ing.ingest(tmp_path / "a.npy", tmp_path / "bad.zarr", codec="lz5")
    assert not (tmp_path / "bad.zarr").exists()


def test_cli_codec_and_shard_options(tmp_path, monkeypatch):
    monkeypatch.setattr(ing, "SHARD_BYTES", 2 * 10 * 3 * 8)  # shards of 2 chunks of 10 rows
    np.save(tmp_path / "a.npy", np.arange(300.0).reshape(100, 3))
    runner = CliRunner()
    r = runner.invoke(cli, ["ingest", str(tmp_path / "a.npy"), str(tmp_path / "a.zarr"),
                            "--codec", "zstd", "--chunks", "10"])
    assert r.exit_code == 0, r.output
    assert "a 100x3 float64 (chunks 10, shards 20)" in r.output
    a = zarr.open_array(str(tmp_path / "a.zarr" / "a"))
    assert a.shards == (20, 3) and a.chunks == (10, 3)
    r = runner.invoke(cli, ["ingest", str(tmp_path / "a.npy"), str(tmp_path / "b.zarr"),
                            "--chunks", "10", "--no-shard"])
    assert r.exit_code == 0, r.output
    assert zarr.open_array(str(tmp_path / "b.zarr" / "a")).shards is None
    r = runner.invoke(cli, ["ingest", str(tmp_path / "a.npy"), str(tmp_path / "c.zarr"),
                            "--codec", "gzip"])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == ["Error: unknown codec 'gzip'; choose one of blosc-lz4, blosc-zstd, "
                     "zstd, none"]
    assert not (tmp_path / "c.zarr").exists()


def test_default_sharding_rule(tmp_path, monkeypatch):
    """Sharded when the data fills at least one shard; --shard/--no-shard decide otherwise."""
    monkeypatch.setattr(ing, "SHARD_BYTES", 4 * 10 * 2 * 8)  # 4 chunks of 10 rows x 2
    assert ing.shard_rows_for(10, 16) == 40
    assert ing.shard_rows_for(10, 10**6) == 10  # a chunk larger than a shard: one a shard
    cases = [(39, None, None), (40, None, (40, 2)), (95, None, (40, 2)),
             (95, False, None), (25, True, (40, 2)), (5, True, (5, 2))]
    for n, shard, want in cases:
        X = np.arange(2.0 * n).reshape(n, 2)
        np.save(tmp_path / "x.npy", X)
        np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%d")
        for src in ("x.npy", "x.csv"):  # length known up front, and not
            dest = tmp_path / f"{src}-{n}-{shard}.zarr"
            res = ing.ingest(tmp_path / src, dest, chunks=10, shard=shard)
            a = zarr.open_array(str(dest / "x"))
            assert a.shards == want, (src, n, shard)
            assert res.arrays["x"]["shards"] == (list(want) if want else None)
            np.testing.assert_array_equal(a[...], X)
            files = sorted(p.relative_to(dest / "x" / "c").as_posix()
                           for p in (dest / "x" / "c").rglob("*") if p.is_file())
            block = want[0] if want else min(10, n)
            assert files == [f"{i}/0" for i in range(-(-n // block))]


def test_shards_are_written_whole_never_read_back(tmp_path, monkeypatch):
    """Each shard is written once, with all its rows; zarr looks for an earlier one before
    it writes a shard, and finds none: nothing stored is read back and rewritten."""
    from zarr.storage import LocalStore

    monkeypatch.setattr(ing, "SHARD_BYTES", 3 * 7 * 2 * 8)  # shards of 3 chunks of 7 rows
    monkeypatch.setattr(ing, "READ_LINES", 5)  # CSV blocks that cut across chunks and shards
    found, written = [], []
    real_get, real_set = LocalStore.get, LocalStore.set

    async def get(self, key, *args, **kwargs):
        got = await real_get(self, key, *args, **kwargs)
        if "/c/" in key:
            found.append((key, got is not None))
        return got

    async def set(self, key, value):
        if "/c/" in key:
            written.append(key)
        return await real_set(self, key, value)

    monkeypatch.setattr(LocalStore, "get", get)
    monkeypatch.setattr(LocalStore, "set", set)
    X = np.arange(200.0).reshape(100, 2)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%d")
    np.save(tmp_path / "x.npy", X)
    for src in ("x.csv", "x.npy"):
        ing.ingest(tmp_path / src, tmp_path / f"{src}.zarr", chunks=7)
    assert [key for key, there in found if there] == []
    assert sorted(written) == sorted([f"x/c/{i}/0" for i in range(5)] * 2)  # 100 rows / 21
    monkeypatch.setattr(LocalStore, "get", real_get)
    for src in ("x.csv", "x.npy"):
        a = zarr.open_array(str(tmp_path / f"{src}.zarr" / "x"))
        assert a.shards == (21, 2)
        np.testing.assert_array_equal(a[...], X)


@pytest.mark.parametrize("shard", [False, True])
def test_ingest_records_chunk_statistics(tmp_path, monkeypatch, shard):
    from hpcjobs import chunkstats

    monkeypatch.setattr(ing, "SHARD_BYTES", 2 * 50 * 3 * 8)  # shards of 2 chunks of 50 rows
    rng = np.random.default_rng(7)
    X = rng.normal(size=(333, 3)) * [1, 10, 100]
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:, 2][:60] = np.nan  # a column whose first chunk has no value
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%.17g")
    np.save(tmp_path / "x.npy", X)
    for src in ("x.csv", "x.npy"):
        dest = tmp_path / f"{src}.zarr"
        ing.ingest(tmp_path / src, dest, chunks=50, shard=shard)
        a = zarr.open_array(str(dest / "x"))
        assert (a.shards is not None) == shard
        stats = chunkstats.load(dest / "x")
        assert stats is not None, src
        assert stats.block_rows == (100 if shard else 50)
        assert stats.extremes.shape[0] == (4 if shard else 7)
        for j in range(3):
            col = X[:, j]
            assert stats.column_range(j) == (np.nanmin(col), np.nanmax(col),
                                             int(np.isfinite(col).sum()),
                                             int(np.isnan(col).sum()))
    # 1-D integer data (.npy), and the basket arrays
    v = rng.integers(-5, 9, size=1234)
    np.save(tmp_path / "v.npy", v)
    ing.ingest(tmp_path / "v.npy", tmp_path / "v.zarr", chunks=100, shard=shard)
    assert chunkstats.load(tmp_path / "v.zarr" / "v").column_range(0) == (-5, 8, 1234, 0)
    _write(tmp_path / "b.basket", "a b\nc\n\nb d a\n")
    ing.ingest(tmp_path / "b.basket", tmp_path / "b.zarr", chunks=2, shard=shard)
    assert chunkstats.load(tmp_path / "b.zarr" / "b" / "items").column_range(0) == \
        (0, 3, 6, 0)
    assert chunkstats.load(tmp_path / "b.zarr" / "b" / "indptr").column_range(0) == \
        (0, 6, 5, 0)
