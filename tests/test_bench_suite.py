"""The suite as a centre's tool: roofline fractions, --workers scaling, bench compare."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from hpcjobs.bench import harness, roofline
from hpcjobs.bench.spec import Benchmark, Impl
from hpcjobs.cli import cli


def test_bandwidth_probe_measures_read_and_triad():
    bw = roofline.probe_bandwidth(2 * 2**20, passes=2)
    assert bw["array_bytes"] == 2 * 2**20 and bw["threads"] >= 1
    # any machine this runs on streams between 100 MB/s and 10 TB/s
    assert 1e8 < bw["read_Bps"] < 1e13 and 1e8 < bw["triad_Bps"] < 1e13


def test_roofline_fields_per_record():
    bench = Benchmark(name="r", kernel="r", sizes=[{"n": 1000}],
                      make_data=lambda size, rng: rng.standard_normal(size["n"]),
                      bytes=lambda size: 8 * size["n"], repeats=2,
                      impls=[Impl("hpcjobs", lambda x: x.sum()),
                             Impl("np", lambda x: x.sum(), peer=True)])
    bw = {"read_Bps": 8e9, "triad_Bps": 9e9, "threads": 2}
    recs = harness.run_benchmark(bench, bandwidth=bw)
    for rec in recs:
        assert rec["bytes"] == 8000 and rec["roofline_s"] == pytest.approx(1e-6)
        assert rec["roofline_fraction"] == pytest.approx(1e-6 / rec["median_s"])
        assert rec["machine"]["bandwidth"] == bw
    assert "%" in harness.format_table(recs)
    assert "roofline: bytes a call must move / 8.00 GB/s" in harness.format_summary(recs)
    # no bytes, no probe: no fractions
    bench.bytes = None
    (rec, _) = harness.run_benchmark(bench, bandwidth=bw)
    assert rec["bytes"] is None and rec["roofline_fraction"] is None


def _write_scaling_defs(folder):
    """A benchmark whose cluster implementation reports the workers it was given."""
    folder.mkdir()
    (folder / "scale.py").write_text(textwrap.dedent("""
        from hpcjobs.bench.harness import dask_client
        from hpcjobs.bench.spec import Benchmark, Impl, Sample

        def on_cluster(x):
            from distributed import get_client

            client = get_client()
            total = sum(client.gather(client.map(sum, [x[i::4] for i in range(4)])))
            return Sample(fields={"workers_seen": len(client.scheduler_info()["workers"]),
                                  "n": int(x.size), "total": float(total)})

        BENCHMARKS = [Benchmark(
            name="scale", kernel="ks", sizes=[{"n": 1000}], repeats=1,
            make_data=lambda size, rng: rng.standard_normal(size["n"]),
            impls=[Impl("hpcjobs", lambda x: x.sum()),
                   Impl("hpcjobs-dask", on_cluster, cluster=True,
                        context=lambda: dask_client(processes=False))])]
    """))


@pytest.mark.slow
@pytest.mark.parametrize("weak", [False, True])
def test_workers_scaling_runs_cluster_impls_per_worker_count(tmp_path, monkeypatch, weak):
    _write_scaling_defs(tmp_path / "defs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "defs"))
    out = tmp_path / "s.jsonl"
    cores = harness.usable_cores()
    # strong: the last count more than the cores (allowed, and flagged); weak: 1 and 2
    counts = [1, 2] if weak else [1, 2, 2 * cores]
    args = ["bench", "ks", "--workers", ",".join(map(str, counts)), "--no-probe",
            "--json-out", str(out)] + (["--weak"] if weak else [])
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    recs = harness.read_jsonl(out)
    assert [x["impl"] for x in recs] == ["hpcjobs-dask"] * len(counts)  # cluster impls only
    assert [x["workers"] for x in recs] == sorted(set(counts))
    assert [x["measured"]["workers_seen"] for x in recs] == sorted(set(counts))
    assert [x["oversubscribed"] for x in recs] == [w > cores for w in sorted(set(counts))]
    assert all(x["scaling"] == ("weak" if weak else "strong") for x in recs)
    sizes = [x["measured"]["n"] for x in recs]
    assert sizes == ([1000 * w for w in counts] if weak else [1000] * len(counts))
    first = recs[0]
    assert first["scaling_speedup"] == pytest.approx(1.0)
    assert first["scaling_efficiency"] == pytest.approx(1.0)
    for x in recs[1:]:
        t = first["median_s"] / x["median_s"]
        w = x["workers"]
        expect = (w * t, t) if weak else (t, t / w)
        assert (x["scaling_speedup"], x["scaling_efficiency"]) == pytest.approx(expect)
    assert "efficiency" in r.output and (weak or f"{2 * cores}!" in r.output)
    pytest.importorskip("matplotlib")
    png = tmp_path / "s.png"
    r = CliRunner().invoke(cli, ["bench", "--from", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_workers_bad_input_is_one_line_exit_2(tmp_path, monkeypatch):
    _write_scaling_defs(tmp_path / "defs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "defs"))
    for args, words in ((["--workers", "0,2"], "worker counts of at least 1"),
                        (["--workers", "a"], "worker counts of at least 1"),
                        (["--weak"], "--weak needs --workers")):
        r = CliRunner().invoke(cli, ["bench", "ks", "--no-json", *args])
        assert r.exit_code == 2 and words in r.output, r.output
        assert "Traceback" not in r.output


def _record(bench, impl, median, n=1000, peer=False, ratio=None, status="ok"):
    return {"schema": harness.SCHEMA, "benchmark": bench, "kernel": bench, "size": {"n": n},
            "impl": impl, "peer": peer, "status": status, "median_s": median, "ratio": ratio,
            "workers": None}


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_compare_flags_regressions_past_the_threshold(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [
        _record("describe", "hpcjobs", 1.0), _record("describe", "np", 2.0, peer=True, ratio=0.5),
        _record("pca", "hpcjobs", 1.0), _record("lof", "hpcjobs", 1.0),
        _record("gone", "hpcjobs", 1.0)])
    b = _jsonl(tmp_path / "b.jsonl", [
        _record("describe", "hpcjobs", 1.5), _record("describe", "np", 2.0, peer=True, ratio=0.75),
        _record("pca", "hpcjobs", 0.5), _record("lof", "hpcjobs", 1.05),
        _record("new", "hpcjobs", 1.0)])
    r = CliRunner().invoke(cli, ["bench", "compare", a, b])
    assert r.exit_code == 0, r.output
    rows = {line.split()[0] + " " + line.split()[2]: line for line in r.output.splitlines()
            if line.split() and line.split()[0] in ("describe", "pca", "lof", "gone", "new")}
    assert "1.50" in rows["describe hpcjobs"] and "SLOWER" in rows["describe hpcjobs"]
    assert "0.50 -> 0.75" in rows["describe np"] and "SLOWER" not in rows["describe np"]
    assert "faster" in rows["pca hpcjobs"]
    assert "SLOWER" not in rows["lof hpcjobs"] and "faster" not in rows["lof hpcjobs"]
    assert "only in A" in rows["gone hpcjobs"] and "only in B" in rows["new hpcjobs"]
    assert "1 slower, 1 faster, of 4 compared" in r.output
    r = CliRunner().invoke(cli, ["bench", "compare", a, b, "--threshold", "1.6", "--fail"])
    assert r.exit_code == 0 and "0 slower" in r.output
    r = CliRunner().invoke(cli, ["bench", "compare", a, b, "--fail"])
    assert r.exit_code == 1 and "1 benchmark(s) slower than x1.1" in r.output
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    r = CliRunner().invoke(cli, ["bench", "compare", a, b, "--plot", str(png)])
    assert r.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_bad_input_is_one_line_exit_2(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", [_record("describe", "hpcjobs", 1.0)])
    b = _jsonl(tmp_path / "b.jsonl", [_record("pca", "hpcjobs", 1.0)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    for args, words in (([a, b], "no benchmark ran in both"),
                        ([a, a, "--threshold", "0.9"], "expected a ratio above 1"),
                        ([a, str(bad)], "line 1: not JSON"),
                        ([a, str(tmp_path / "missing.jsonl")], "does not exist"),
                        ([a], "Missing argument")):
        r = CliRunner().invoke(cli, ["bench", "compare", *args])
        assert r.exit_code == 2 and words in r.output, (args, r.output)
        assert "Traceback" not in r.output
