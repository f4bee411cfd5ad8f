"""``hpcjobs bench job-scale`` (benchmarks/job_scale.py) and what it added to the harness:
a context shared by a size's implementations, calls without warm-up, fields measured by the
calls, default sizes, a benchmark's own table."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

from hpcjobs.bench import harness
from hpcjobs.bench.spec import Benchmark, Impl, Sample
from hpcjobs.cli import cli


@pytest.fixture(scope="module")
def js():
    """The definition module (imported as the harness imports it)."""
    benches, _ = harness.discover(["job-scale"])
    assert [b.name for b in benches] == ["job-scale"]
    return sys.modules[f"{harness._PACKAGE}.job_scale"]


# --------------------------------------------------------------------------- harness additions


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_setup_once_per_size_no_warmup_measured_fields_finish_and_defaults(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(harness, "_clock", clock)
    log, finished = [], []

    @contextlib.contextmanager
    def setup(data, size):
        log.append(("enter", size["n"]))
        yield {"data": data, "shared": size["n"]}
        log.append(("exit", size["n"]))

    def call(name, seconds):
        def fn(run):
            log.append((name, run["shared"]))
            clock.now += seconds
            return Sample(fields={"calls": sum(1 for e in log if e[0] == name)})
        return fn

    def timed(run):
        log.append(("timed", run["shared"]))
        return Sample(seconds=2.0 + len(log) / 100, fields={"passes": len(log)})

    bench = Benchmark(
        name="whole", kernel="whole", sizes=[{"n": 1}, {"n": 2}, {"n": 3}],
        make_data=lambda size, rng: size["n"], repeats=3, warmup=False, setup=setup,
        default_sizes=(1, 2), finish=finished.append,
        impls=[Impl("a", call("a", 0.5)), Impl("b", timed, self_timed=True, peer=True,
                                                   baseline="a")])
    recs = harness.run_benchmark(bench)
    assert [r["size"]["n"] for r in recs] == [2, 2, 3, 3]  # default_sizes
    # one setup per size around all implementations, and no untimed calls
    assert log[:8] == [("enter", 2)] + [("a", 2)] * 3 + [("timed", 2)] * 3 + [("exit", 2)]
    a, b = recs[0], recs[1]
    assert a["warmup_calls"] == 0 and a["warmup_s"] is None and a["compile_s"] is None
    assert a["times_s"] == [0.5] * 3 and a["measured"] == {"calls": 2}  # the median's (2nd)
    assert b["times_s"] == [pytest.approx(2.05), pytest.approx(2.06), pytest.approx(2.07)]
    assert b["measured"] == {"passes": 6}  # the sample whose time is the median
    assert b["ratio"] == pytest.approx(0.5 / 2.06)
    assert [len(f) for f in finished] == [2, 2] and finished[0][0] is a
    assert [r["size"]["n"] for r in harness.run_benchmark(bench, sizes=[0])] == [1, 1]
    json.dumps(recs)


def test_cli_prints_a_benchmarks_report_also_from_a_file(tmp_path, monkeypatch):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "rep.py").write_text(textwrap.dedent("""
        from hpcjobs.bench.spec import Benchmark, Impl, Sample

        def report(records):
            return "REPORT " + ",".join(f"{r['impl']}={r['measured']['x']}" for r in records)

        BENCHMARKS = [Benchmark(
            name="rep", kernel="rep", sizes=[{"n": 1}], make_data=lambda size, rng: None,
            impls=[Impl("one", lambda d: Sample(0.01, {"x": 7}), self_timed=True)],
            repeats=1, warmup=False, report=report)]
    """))
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(folder))
    out = tmp_path / "r.jsonl"
    r = CliRunner().invoke(cli, ["bench", "rep", "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    assert "REPORT one=7" in r.output
    harness._loaded.clear()  # --from finds the definition again
    r = CliRunner().invoke(cli, ["bench", "--from", str(out)])
    assert r.exit_code == 0 and "REPORT one=7" in r.output


# --------------------------------------------------------------------------- the pieces


def test_read_rule_counts_chunk_reads_fused_or_not(js):
    assert js.read_rule(("read-zarr-0a1b", 3, 0)) == "read-zarr"
    assert js.read_rule(("from-zarr-0a1b", 3, 0), ["original-from-zarr-0a1b"]) == "from-zarr"
    # dask fused the read into a later task: it depends on the array object
    assert js.read_rule(("sum-9f", 2, 0), ["original-from-zarr-0a1b"]) == "original-*"
    assert js.read_rule(("take-9f", 2, 0), [("original-array-77",)]) == "original-*"
    assert js.read_rule("original-from-zarr-0a1b") is None  # the array object itself
    assert js.read_rule(("take-9f", 2, 0), [("read-zarr-0a1b", 2, 0)]) is None
    assert js.read_rule(("reduce-describe-chunk", 1), [("getitem-1", 1)]) is None


def test_step_windows_from_the_runners_log(js):
    logs = [(10.0, "dashboard: x"), (11.0, "steps d + a: describe + aggregate2d, one pass ..."),
            (14.0, "steps d + a: done in 2.90 s (one pass)"), (14.1, "step km: kmeans ..."),
            (20.1, "step km: done in 6.00 s"), (20.2, "step other: x ...")]
    w = js.step_windows([("d", 3.0), ("a", 3.5), ("km", 6.0), ("other", 1.0), ("lost", 1.0)],
                        logs)
    assert w["d"] == (10.5, 14.0, ["a"]) and w["a"] == (10.5, 14.0, ["d"])
    assert w["km"] == (pytest.approx(14.1), 20.1, [])
    assert w["other"] == (20.2, pytest.approx(21.2), [])  # no done line: start + seconds
    assert "lost" not in w


def test_memory_limit_is_a_quarter_of_the_data_over_the_workers(js, monkeypatch):
    assert js.memory_limit(32 * 10**9) == 4 * 10**9
    assert js.memory_limit(2 * 10**9) == js.memory_limit(8 * 10**9) == js.MIN_LIMIT == 10**9
    monkeypatch.setenv("HPCJOBS_BENCH_MEMORY_LIMIT", "768MiB")
    assert js.memory_limit(32 * 10**9) == 768 * 2**20
    assert js.rows_of({"gb": 2}) == 31_250_000


def test_sampler_catches_a_peak_between_samples(js):
    """A child holds 300 MB for a moment, then 0: the peak is found although every sample
    but (at most) one sees the small RSS."""
    code = ("import sys, time, numpy as np; sys.stdin.readline(); a = np.ones(300 * 2**20 // 8);"
            "del a; print('freed', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        with js.MemorySampler([child.pid], interval=0.5) as sampler:
            time.sleep(0.6)
            t0 = time.time()
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "freed"
            t1 = time.time()
            monitor = js.Monitor(_NoScheduler(), sampler, js.MIN_LIMIT, stored_bytes=1)
            win = monitor.window(t0, t1, blocks=1)
        assert win["rss_method"] == "peak"  # this Linux resets the peak (clear_refs)
        assert win["peak_rss_bytes"] > 300 * 2**20
        assert win["memory_limit_bytes"] == js.MIN_LIMIT and win["passes"] == 0.0
        assert win["bytes_read"] is not None and win["worker_restarts"] == 0
    finally:
        child.kill()
        child.wait()


class _NoScheduler:
    def run_on_scheduler(self, func, **kw):
        return []


def test_dataset_is_written_once_block_by_block_and_rewritten_when_hpcjobs_writes_otherwise(
        js, tmp_path, monkeypatch):
    import zarr

    size = {"gb": 0.001, "kind": "walk", "chunk_rows": 4000}  # 15,625 rows, 4 chunks
    d = js.dataset(size, root=tmp_path, log=lambda m: None)
    assert not d.reused and d.rows == 15_625 and d.raw_bytes == 15_625 * 64
    assert d.info["chunks"] == 4 and d.stored_bytes > 0 and d.info["ratio"] > 1
    X = zarr.open_array(str(d.array_path), mode="r")
    assert X.shape == (15_625, 8) and X.chunks == (4000, 8)
    values = X[:]
    assert np.array_equal(values, np.round(values, 3))  # sensor-like readings
    assert np.abs(np.diff(values, axis=0)).max() < 0.1  # one walk across the blocks
    again = js.dataset(size, root=tmp_path, log=lambda m: None)
    assert again.reused and again.group == d.group
    assert not list(tmp_path.glob("*.npy"))
    real = js._writer_settings()
    monkeypatch.setattr(js, "_writer_settings", lambda: {**real, "meta": {"codecs": "other"}})
    other = js.dataset(size, root=tmp_path, log=lambda m: None)
    assert not other.reused and other.group != d.group and not d.group.exists()
    r = js.dataset({**size, "kind": "random"}, root=tmp_path, log=lambda m: None)
    v = zarr.open_array(str(r.array_path), mode="r")[:]
    assert v.min() >= 0 and v.max() < 1 and len(np.unique(v)) > 0.99 * v.size


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, monkeypatch):
    """``hpcjobs bench job-scale --quick``: every record holds every field, the bare decode
    pass reads every chunk exactly once, the range + histogram pass twice, RSS is there."""
    monkeypatch.setenv("HPCJOBS_BENCH_DATA", str(tmp_path / "data"))
    out = tmp_path / "js.jsonl"
    r = CliRunner().invoke(cli, ["bench", "job-scale", "--quick", "--sizes", "0",
                                 "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    recs = {rec["impl"]: rec for rec in harness.read_jsonl(out)}
    assert set(recs) == {"decode", "decode-zarr", "hpcjobs", "hpcjobs-describe",
                         "hpcjobs-aggregate2d", "dask-sum", "dask-stats", "dask-histogram2d",
                         "datashader"}
    window = {"seconds", "gb_per_s", "read_tasks", "read_tasks_by_rule", "blocks_per_pass",
              "passes", "bytes_read", "read_passes", "peak_rss_bytes", "peak_rss_per_worker",
              "memory_limit_bytes", "rss_method", "worker_restarts", "x_decode"}
    for rec in recs.values():
        if rec["impl"] == "datashader" and rec["status"] == "skipped":
            continue
        assert rec["status"] == "ok", rec["reason"]
        m = rec["measured"]
        assert window <= set(m), window - set(m)
        assert m["input"]["chunks"] == 8 and m["input"]["rows"] == 781_250
        cluster = dict(m["cluster"])
        idle = cluster.pop("idle_rss_bytes")
        assert cluster == {"workers": 2, "threads_per_worker": 1, "numba_threads": 1,
                           "memory_limit_bytes": 10**9}
        assert len(idle) == 2 and all(50 * 2**20 < b < 10**9 for b in idle)
        assert 50 * 2**20 < m["peak_rss_bytes"] < 2 * m["memory_limit_bytes"]
        assert len(m["peak_rss_per_worker"]) == 2 and m["worker_restarts"] == 0
        assert m["seconds"] == rec["median_s"] > 0
    d, z = recs["decode"]["measured"], recs["decode-zarr"]["measured"]
    assert d["read_tasks"] == 8 and d["passes"] == 1.0 and d["x_decode"] == 1.0
    assert d["read_tasks_by_rule"] == {"read-zarr": 8}
    assert z["passes"] == 1.0 and set(z["read_tasks_by_rule"]) <= {"from-zarr", "original-*"}
    assert recs["dask-sum"]["measured"]["passes"] == 1.0  # the read fused into "sum" tasks
    assert recs["dask-histogram2d"]["measured"]["passes"] == 2.0  # range, then histogram
    job = recs["hpcjobs"]["measured"]
    steps = {s["kernel"]: s for s in job["steps"]}
    assert list(steps) == ["describe", "aggregate2d", "kmeans"]
    for s in steps.values():
        assert (window - {"gb_per_s"}) <= set(s) and s["seconds"] > 0 and s["passes"] >= 1
        assert s["window"][0] < s["window"][1] and s["peak_rss_bytes"] > 50 * 2**20
        assert s["x_decode_per_pass"] == pytest.approx(s["x_decode"] / s["passes"])
    assert job["passes"] >= max(s["passes"] for s in steps.values())
    assert {t["target"] for t in job["targets"]} == set(harness_targets())
    for kernel in ("describe", "aggregate2d"):  # each step's own target: from its job alone
        alone = recs[f"hpcjobs-{kernel}"]["measured"]["steps"]
        assert [s["kernel"] for s in alone] == [kernel] and alone[0]["passes"] == 1.0
        target = next(t for t in job["targets"] if t["target"] == f"{kernel} x decode")
        assert target["value"] == alone[0]["x_decode"]
        zarr = next(t for t in job["targets_zarr"] if t["target"] == f"{kernel} x decode")
        assert zarr["value"] == alone[0]["x_decode_zarr"]  # the dask.array decode pass's
        decode, decode_zarr = recs["decode"]["median_s"], recs["decode-zarr"]["median_s"]
        assert zarr["value"] == pytest.approx(target["value"] * decode / decode_zarr)
        assert f"| hpcjobs {kernel} alone" in r.output
    # the printed table
    assert "| step " in r.output and "| hpcjobs kmeans" in r.output
    assert "| decode pass (hpcjobs read)" in r.output and "target kmeans x decode" in r.output
    assert "(decode pass: hpcjobs read)" in r.output and "(decode pass: da.from_zarr)" in r.output
    r = CliRunner().invoke(cli, ["bench", "--from", str(out)])
    assert r.exit_code == 0 and "| hpcjobs describe" in r.output


def harness_targets():
    return sys.modules[f"{harness._PACKAGE}.job_scale"].TARGETS
