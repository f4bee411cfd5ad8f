"""Nothing hpcjobs writes rots unnoticed: a checksum per chunk, and ``hpcjobs verify``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from hpcjobs import ingest as ing
from hpcjobs.cli import cli
from hpcjobs.jobspec import load_job
from hpcjobs.runner import run_job
from hpcjobs.verify import has_checksum, verify
from tests.conftest import write_job

JOB = """
name = "rot"
[input]
path = "in.zarr"
[[step]]
name = "scaled"
kernel = "standardize"
input = "readings"
[[step]]
name = "summary"
kernel = "describe"
input = "readings"
[output]
path = "out.zarr"
"""


def _flip_a_bit(chunk: Path, byte: int = 7) -> None:
    data = bytearray(chunk.read_bytes())
    data[min(byte, len(data) - 1)] ^= 0x10
    chunk.write_bytes(bytes(data))


@pytest.fixture
def result(input_dir, dask_client) -> Path:
    run_job(load_job(write_job(input_dir, JOB)), client=dask_client)
    return input_dir / "out.zarr"


def test_outputs_carry_checksums_and_verify_clean(result):
    g = zarr.open_group(str(result), mode="r")
    assert has_checksum(g["scaled/Z"]) and has_checksum(g["summary/mean"])
    report = verify(result)
    assert report.ok and report.arrays >= 8 and report.chunks >= 8 + 7
    assert report.unchecked == []


def test_a_flipped_bit_fails_the_read_and_verify_names_the_chunk(result):
    chunk = result / "scaled" / "Z" / "c" / "3" / "0"
    _flip_a_bit(chunk)
    with pytest.raises(ValueError, match="checksum"):
        zarr.open_array(str(result / "scaled" / "Z"), mode="r")[...]
    out = CliRunner().invoke(cli, ["verify", str(result)])
    assert out.exit_code == 1, out.output
    assert "CORRUPT scaled/Z chunk 3.0" in out.output and "checksum" in out.output
    assert "1 corrupt, 0 other" in out.output


def test_ingested_data_carries_checksums(tmp_path):
    src = tmp_path / "x.npy"
    np.save(src, np.arange(1000.0).reshape(250, 4))
    ing.ingest(src, tmp_path / "x.zarr", chunks=100)
    (chunk,) = [p for p in (tmp_path / "x.zarr").rglob("c/1/0")]
    assert verify(tmp_path / "x.zarr").ok
    _flip_a_bit(chunk)
    report = verify(tmp_path / "x.zarr")
    assert [(name, idx) for name, idx, _ in report.corrupt] == [("x", (1, 0))]


def test_foreign_arrays_are_listed_as_unchecked(tmp_path):
    g = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    g.create_array("a", shape=(10,), chunks=(5,), dtype="f8")[:] = 1.0
    report = verify(tmp_path / "plain.zarr")
    assert report.ok and report.unchecked == ["a"] and report.chunks == 2
    bad = CliRunner().invoke(cli, ["verify", str(tmp_path / "missing.zarr")])
    assert bad.exit_code == 2 and "not a Zarr group or array" in bad.output


def test_resume_recomputes_a_finished_chunk_that_rotted(input_dir, dask_client, result):
    g = zarr.open_group(str(result), mode="r")
    before = g["scaled/Z"][...]
    _flip_a_bit(result / "scaled" / "Z" / "c" / "5" / "0")
    root = zarr.open_group(str(result), mode="r+")
    root.attrs["status"] = "interrupted"  # as a stopped run leaves it
    root["scaled"].attrs["status"] = "running"
    assert not verify(result).ok
    summary = run_job(load_job(write_job(input_dir, JOB)), client=dask_client, mode="resume")
    assert summary.steps[0].chunks_written == 1 and summary.steps[0].chunks_reused == 7
    np.testing.assert_array_equal(zarr.open_array(str(result / "scaled" / "Z"))[...], before)
    assert verify(result).ok


def test_verify_checks_the_completion_record(result):
    (result / "scaled" / "Z" / ".done" / "2.0").unlink()
    root = zarr.open_group(str(result), mode="r+")
    root["summary"].attrs["status"] = "running"
    del root.attrs["fingerprint"]
    out = CliRunner().invoke(cli, ["verify", str(result)])
    assert out.exit_code == 1
    assert "PROBLEM scaled/Z: chunk 2.0 has no completion marker" in out.output
    assert "PROBLEM step summary: status 'running'" in out.output
    assert "PROBLEM provenance lacks fingerprint" in out.output


def test_sharded_input_verify_names_inner_chunks_and_shards(tmp_path, monkeypatch,
                                                            dask_client):
    """A sharded input (ingest above one shard) is checked inner chunk by inner chunk, and a
    job that reads it writes unsharded outputs that verify clean."""
    monkeypatch.setattr(ing, "SHARD_BYTES", 4 * 100 * 3 * 8)  # shards of 4 chunks of 100 rows
    rng = np.random.default_rng(0)
    np.save(tmp_path / "readings.npy", rng.normal(size=(1000, 3)))
    ing.ingest(tmp_path / "readings.npy", tmp_path / "in.zarr", chunks=100)
    arr = zarr.open_array(str(tmp_path / "in.zarr" / "readings"))
    assert arr.shards == (400, 3) and has_checksum(arr)
    report = verify(tmp_path / "in.zarr")
    assert report.ok and report.chunks == 10 and report.unchecked == []
    run_job(load_job(write_job(tmp_path, JOB)), client=dask_client)
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert out["scaled/Z"].shards is None  # written block by block by parallel tasks
    assert verify(tmp_path / "out.zarr").ok
    shard = tmp_path / "in.zarr" / "readings" / "c" / "1" / "0"
    _flip_a_bit(shard, 20)  # in the first inner chunk of shard 1: chunk 4
    res = CliRunner().invoke(cli, ["verify", str(tmp_path / "in.zarr")])
    assert res.exit_code == 1, res.output
    assert "CORRUPT readings chunk 4.0: checksum does not match (in shard 1.0)" in res.output
    assert "10 chunks checked, 1 corrupt" in res.output
    _flip_a_bit(shard, shard.stat().st_size - 6)  # its index: chunks 4-7 cannot be found
    report = verify(tmp_path / "in.zarr")
    assert [idx for _, idx, _ in report.corrupt] == [(4, 0), (5, 0), (6, 0), (7, 0)]
    assert all("shard 1.0, whose index is unreadable" in why for _, _, why in report.corrupt)
