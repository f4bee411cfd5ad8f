"""The benchmark harness (hpcjobs bench) on synthetic definitions with a fake clock."""

from __future__ import annotations

import contextlib
import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from hpcjobs.bench import harness
from hpcjobs.bench.spec import Benchmark, Impl
from hpcjobs.cli import cli
from hpcjobs.errors import UserError


class FakeClock:
    """perf_counter stand-in: implementations advance it by their simulated cost."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def advance(self, s):
        self.now += s


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(harness, "_clock", c)
    return c


def _synthetic(clock, log):
    """ours costs 1 s per 1e6 items after a 5 s first call; the peer costs 2x; one peer missing."""
    compiled = {"ours": False}

    def ours(data):
        if not compiled["ours"]:
            compiled["ours"] = True
            clock.advance(5.0)  # "compilation" on the first call only
        clock.advance(data.size / 1e6)
        return data.sum()

    def peer(data):
        clock.advance(2 * data.size / 1e6)
        return data.sum()

    def prepare(data, size):
        log.append(("prepare", size["n"]))
        clock.advance(100.0)  # must never show up in timings
        return data

    @contextlib.contextmanager
    def ctx():
        log.append(("enter",))
        yield
        log.append(("exit",))

    def make(size, rng):
        log.append(("make", size["n"]))
        return rng.standard_normal(size["n"])

    def broken(data):
        raise RuntimeError("boom")

    return Benchmark(
        name="synth", kernel="synthk",
        sizes=[{"n": 1_000_000}, {"n": 4_000_000}],
        quick_sizes=[{"n": 100_000}],
        make_data=make, items=lambda s: s["n"], unit="values", repeats=4,
        impls=[
            Impl("hpcjobs", ours, prepare=prepare, context=ctx),
            Impl("peer", peer, peer=True),
            Impl("ghost", peer, peer=True, requires=("no_such_module_hpcjobs_test",)),
            Impl("broken", broken, peer=True),
            Impl("smallonly", peer, sizes=(0,)),
        ],
    )


def test_timings_exclude_warmup_and_prepare_ratios_from_medians(clock):
    log = []
    bench = _synthetic(clock, log)
    recs = harness.run_benchmark(bench, repeats=4)
    by = {(r["impl"], r["size"]["n"]): r for r in recs}
    assert len(recs) == 2 * 5
    ours = by[("hpcjobs", 1_000_000)]
    assert ours["status"] == "ok"
    assert ours["times_s"] == [pytest.approx(1.0)] * 4  # neither the 5 s warm-up nor prepare
    assert ours["median_s"] == pytest.approx(1.0)
    assert ours["min_s"] == pytest.approx(1.0) and ours["max_s"] == pytest.approx(1.0)
    assert ours["warmup_s"] == pytest.approx(6.0)
    assert ours["compile_s"] == pytest.approx(5.0)
    assert ours["throughput"] == pytest.approx(1e6)
    # after compilation the first call of the bigger size costs no compile time
    assert by[("hpcjobs", 4_000_000)]["compile_s"] == pytest.approx(0.0)
    peer = by[("peer", 4_000_000)]
    assert peer["median_s"] == pytest.approx(8.0)
    assert peer["ratio"] == pytest.approx(0.5) and peer["speedup"] == pytest.approx(2.0)
    assert peer["against"] == "hpcjobs"
    assert by[("hpcjobs", 4_000_000)]["ratios"] == {"peer": pytest.approx(0.5)}
    # data made once per size; context and prepare once per size around ours
    assert [e for e in log if e[0] == "make"] == [("make", 1_000_000), ("make", 4_000_000)]
    assert log.count(("enter",)) == 2 and log.count(("exit",)) == 2
    assert log.index(("prepare", 1_000_000)) == log.index(("enter",)) + 1


def test_missing_peer_error_and_size_limits_are_reported(clock):
    recs = harness.run_benchmark(_synthetic(clock, []), repeats=2)
    by = {(r["impl"], r["size"]["n"]): r for r in recs}
    ghost = by[("ghost", 1_000_000)]
    assert ghost["status"] == "skipped"
    assert ghost["reason"] == "missing module no_such_module_hpcjobs_test"
    assert ghost["ratio"] is None and ghost["times_s"] == []
    broken = by[("broken", 1_000_000)]
    assert broken["status"] == "error" and "RuntimeError: boom" in broken["reason"]
    assert by[("smallonly", 1_000_000)]["status"] == "ok"
    assert by[("smallonly", 4_000_000)]["status"] == "skipped"
    assert "ghost" not in by[("hpcjobs", 1_000_000)]["ratios"]
    summary = harness.format_summary(recs)
    assert "skipped: synth/ghost (missing module no_such_module_hpcjobs_test)" in summary
    assert "error: synth/broken" in summary
    table = harness.format_table(recs)
    assert "peer (peer)" in table and "0.50" in table and "skipped" in table


def test_quick_sizes_and_size_selection(clock):
    recs = harness.run_benchmark(_synthetic(clock, []), quick=True)
    assert {r["size"]["n"] for r in recs} == {100_000}
    assert all(r["quick"] for r in recs)
    assert max(r["repeats"] for r in recs) == 3  # quick caps repeats at 3
    recs = harness.run_benchmark(_synthetic(clock, []), sizes=[1], repeats=1)
    assert {r["size"]["n"] for r in recs} == {4_000_000}
    with pytest.raises(UserError, match="size index 5 out of range"):
        harness.run_benchmark(_synthetic(clock, []), sizes=[5])


def test_short_calls_are_repeated_within_a_sample(clock):
    bench = Benchmark(name="tiny", kernel="tiny", sizes=[{"n": 1}],
                      make_data=lambda s, rng: None,
                      impls=[Impl("hpcjobs", lambda d: clock.advance(1e-4))], repeats=3)
    (rec,) = harness.run_benchmark(bench)
    # (the fake clock's float sums may round one call either way)
    assert rec["number"] == pytest.approx(harness.MIN_SAMPLE_S / 1e-4, abs=1)
    assert rec["median_s"] == pytest.approx(1e-4)
    assert len(rec["times_s"]) == 3
    assert rec["warmup_calls"] == harness.MAX_WARMUP_CALLS  # 200 calls of 0.1 ms: the cap


def test_every_implementation_warms_up_for_a_second_before_its_samples(clock):
    calls = []

    def ours(data):
        calls.append(clock.now)
        clock.advance(0.3)

    bench = Benchmark(name="warm", kernel="warm", sizes=[{"n": 1}], quick_sizes=[{"n": 1}],
                      make_data=lambda s, rng: None, impls=[Impl("hpcjobs", ours)], repeats=2)
    (rec,) = harness.run_benchmark(bench)
    assert rec["warmup_calls"] == 4  # 0.9 s after three calls, 1.2 s after four
    assert len(calls) == 4 + 2 and rec["times_s"] == [pytest.approx(0.3)] * 2
    (quick,) = harness.run_benchmark(bench, quick=True)
    assert quick["warmup_calls"] == 1  # quick runs: the first call only


def test_self_timed_implementations_report_their_own_seconds(clock):
    """A self-timed fn's returned seconds are its samples; its wall time is not."""
    reported = iter([0.5, 0.7, 0.4, 0.6, 0.2, 0.3])

    def child(data):
        clock.advance(10.0)  # e.g. an interpreter's start-up: not part of the samples
        return next(reported)

    bench = Benchmark(name="st", kernel="st", sizes=[{"n": 1}], make_data=lambda s, rng: None,
                      impls=[Impl("hpcjobs", child, self_timed=True)], repeats=3)
    (rec,) = harness.run_benchmark(bench)
    assert rec["warmup_s"] == 0.5 and rec["warmup_calls"] == 2  # 0.5 + 0.7 s reach 1 s
    assert rec["times_s"] == [0.4, 0.6, 0.2] and rec["median_s"] == 0.4


def test_first_call_benchmark_covers_every_kernel_and_times_a_child():
    """benchmarks/startup.py lists every public kernel; its child prints its first call."""
    import subprocess
    import sys

    from hpcjobs import kernels

    (bench,) = [b for b in harness.discover(["first-call"])[0]]
    assert sorted(i.name for i in bench.impls) == sorted(kernels.__all__)
    assert all(i.self_timed for i in bench.impls)
    script = harness.benchmarks_dir() / "startup.py"
    proc = subprocess.run([sys.executable, str(script), "lttb", "2000"], capture_output=True,
                          text=True, check=True, timeout=600)
    assert 0 < float(proc.stdout.split()[-1]) < 600
    seconds = bench.impls[[i.name for i in bench.impls].index("minmax")].fn({"n": 2000})
    assert 0 < seconds < 600


def test_jsonl_round_trip_and_machine_info(clock, tmp_path):
    recs = harness.run_benchmark(_synthetic(clock, []), repeats=2)
    path = harness.write_jsonl(recs, tmp_path / "r.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(recs)
    parsed = [json.loads(line) for line in lines]  # strict JSON: no NaN
    for rec in parsed:
        assert rec["schema"] == harness.SCHEMA
        for key in ("benchmark", "kernel", "size", "impl", "peer", "status", "median_s",
                    "min_s", "max_s", "compile_s", "throughput", "unit", "ratio", "machine",
                    "timestamp"):
            assert key in rec
        m = rec["machine"]
        assert m["cores"] >= 1 and m["python"] and m["cpu"]
        assert m["libraries"]["numpy"] == np.__version__
        assert set(harness.CORE_LIBRARIES) <= set(m["libraries"])
        assert "no_such_module_hpcjobs_test" in m["libraries"]  # peer versions recorded
    assert harness.read_jsonl(path) == parsed
    harness.write_jsonl(recs[:2], path, append=True)
    assert len(harness.read_jsonl(path)) == len(recs) + 2


def _write_defs(folder):
    folder.mkdir()
    (folder / "_shared.py").write_text("COST = 0.001\n")
    (folder / "alpha.py").write_text(textwrap.dedent("""
        import time
        from hpcjobs.bench.spec import Benchmark, Impl
        from ._shared import COST

        BENCHMARKS = [Benchmark(
            name="alpha", kernel="ka", sizes=[{"n": 10}, {"n": 20}],
            make_data=lambda size, rng: rng.standard_normal(size["n"]),
            impls=[Impl("hpcjobs", lambda x: time.sleep(COST)),
                   Impl("np", lambda x: time.sleep(2 * COST), peer=True)],
            repeats=2)]
    """))
    (folder / "beta.py").write_text("import no_such_module_hpcjobs_test\n")


def test_discovery_filters_and_reports_broken_modules(tmp_path, monkeypatch):
    _write_defs(tmp_path / "defs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "defs"))
    benches, problems = harness.discover()
    assert [b.name for b in benches] == ["alpha"]
    assert list(problems) == [str(tmp_path / "defs" / "beta.py")]
    assert "ModuleNotFoundError" in next(iter(problems.values()))
    assert [b.name for b in harness.discover(["ka"])[0]] == ["alpha"]
    with pytest.raises(UserError, match="no benchmark for kernel 'zz'; known: ka"):
        harness.discover(["zz"])
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="no benchmarks folder"):
        harness.discover()


def test_default_folder_is_repo_benchmarks(monkeypatch):
    monkeypatch.delenv("HPCJOBS_BENCHMARKS", raising=False)
    folder = harness.benchmarks_dir()
    assert folder.name == "benchmarks" and (folder / "describe.py").is_file()


def test_cli_runs_lists_writes_and_plots(tmp_path, monkeypatch):
    _write_defs(tmp_path / "defs")
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(tmp_path / "defs"))
    runner = CliRunner()
    r = runner.invoke(cli, ["bench", "--list"])
    assert r.exit_code == 0, r.output
    assert "alpha (kernel ka" in r.output and "np: peer vs hpcjobs, available" in r.output
    assert "not loaded:" in r.output and "beta.py" in r.output
    out = tmp_path / "a.jsonl"
    r = runner.invoke(cli, ["bench", "ka", "--sizes", "1", "--repeats", "2",
                            "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    recs = harness.read_jsonl(out)
    assert [(x["impl"], x["size"]) for x in recs] == [("hpcjobs", {"n": 20}), ("np", {"n": 20})]
    assert recs[1]["ratio"] is not None and 0 < recs[1]["ratio"] < 5
    assert "ours/peer" in r.output and "np (peer)" in r.output
    pytest.importorskip("matplotlib")
    png = tmp_path / "a.png"
    r = runner.invoke(cli, ["bench", "--from", str(out), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # bad input: one line, exit 2
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(cli, ["bench", "nokernel"])
    assert r.exit_code == 2 and "no benchmark for kernel 'nokernel'" in r.output
    assert not list(tmp_path.glob("bench-*.jsonl"))  # nothing written for a bad call
    r = runner.invoke(cli, ["bench", "ka", "--sizes", "x"])
    assert r.exit_code == 2
    r = runner.invoke(cli, ["bench", "ka", "--sizes", "9", "--no-json"])
    assert r.exit_code == 2 and "out of range" in r.output


@pytest.mark.slow
def test_cli_bench_describe_quick(tmp_path, monkeypatch):
    """The real describe definitions at their quick size, Dask cluster impls included."""
    monkeypatch.delenv("HPCJOBS_BENCHMARKS", raising=False)
    out = tmp_path / "d.jsonl"
    r = CliRunner().invoke(cli, ["bench", "describe", "--quick", "--repeats", "1",
                                 "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    recs = harness.read_jsonl(out)
    by = {x["impl"]: x for x in recs}
    assert set(by) == {"hpcjobs", "hpcjobs-1thread", "numpy", "sklearnex", "hpcjobs-dask",
                       "dask.array"}
    assert all(x["status"] == "ok" for x in recs), [x["reason"] for x in recs]
    assert by["sklearnex"]["ratio"] > 0  # oneDAL, a peer the test extra installs
    bw = by["hpcjobs"]["machine"]["bandwidth"]
    assert bw["read_Bps"] > 0 and bw["triad_Bps"] > 0
    assert by["hpcjobs"]["bytes"] == 8 * 20_000 * 4
    assert by["hpcjobs"]["roofline_fraction"] == pytest.approx(
        by["hpcjobs"]["bytes"] / bw["read_Bps"] / by["hpcjobs"]["median_s"])
    assert "roofline" in r.output
    assert by["numpy"]["against"] == "hpcjobs" and by["numpy"]["ratio"] > 0
    assert by["dask.array"]["against"] == "hpcjobs-dask" and by["dask.array"]["ratio"] > 0
    assert by["hpcjobs"]["items"] == 20_000 * 4
    assert by["hpcjobs"]["machine"]["libraries"]["distributed"]
    assert "describe" in r.output and "dask.array (peer)" in r.output


def test_cli_failed_impl_exits_1_results_saved_per_size(tmp_path, monkeypatch):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "gamma.py").write_text(textwrap.dedent("""
        from hpcjobs.bench.spec import Benchmark, Impl

        def bad(x):
            raise ValueError("kaputt")

        BENCHMARKS = [Benchmark(
            name="gamma", kernel="kg", sizes=[{"n": 10}, {"n": 20}],
            make_data=lambda size, rng: rng.standard_normal(size["n"]),
            impls=[Impl("hpcjobs", lambda x: x.sum()), Impl("bad", bad, peer=True)],
            repeats=1)]
    """))
    monkeypatch.setenv("HPCJOBS_BENCHMARKS", str(folder))
    out = tmp_path / "g.jsonl"
    r = CliRunner().invoke(cli, ["bench", "kg", "--json-out", str(out)])
    assert r.exit_code == 1
    assert "2 benchmark run(s) failed: gamma/bad: ValueError: kaputt" in r.output
    recs = harness.read_jsonl(out)
    assert [(x["impl"], x["status"]) for x in recs] == [
        ("hpcjobs", "ok"), ("bad", "error"), ("hpcjobs", "ok"), ("bad", "error")]
    assert recs[0]["machine"]["cores"] >= 1  # filled before the first size was saved
    r = CliRunner().invoke(cli, ["bench", "kg", "--json-out", str(tmp_path / "no" / "x.jsonl")])
    assert r.exit_code == 2 and "cannot write results" in r.output
