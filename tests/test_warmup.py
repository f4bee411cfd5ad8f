"""Compile once per machine: the cache's lock, warm-up plans and stamps, and whole jobs from a
cold cache (each kernel function compiled by one process, none by the job's chunks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hpcjobs.cli import cli
from hpcjobs.jobspec import load_job
from hpcjobs.warmup import FromStep, missing_stamps, plan_examples, plan_job
from tests.conftest import make_input, write_job

JOB = """
name = "warm"
[input]
path = "in.zarr"
[[step]]
name = "summary"
kernel = "describe"
input = "readings"
params = { bins = 8 }
[[step]]
name = "km"
kernel = "kmeans"
input = "readings"
params = { n_clusters = 3, seed = 0, init = "random", max_iter = 4 }
[[step]]
name = "density"
kernel = "aggregate2d"
input = { x = "readings[:, 0]", y = "readings[:, 1]" }
params = { shape = [16, 16] }
[[step]]
name = "labels"
kernel = "minmax"
input = "km/labels"
params = { n_out = 100 }
[output]
path = "out.zarr"
"""


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    """An empty Numba cache for every process started from here on (worker processes
    inherit it; this process keeps the cache it already loaded)."""
    folder = tmp_path / "numba-cache"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(folder))
    monkeypatch.setenv("HPCJOBS_KERNEL_CACHE", str(tmp_path / "generated"))
    return folder


# -- plans and signatures -----------------------------------------------------------------------


def test_a_job_plan_slices_its_inputs_and_chains_its_steps(input_dir):
    plan = plan_job(load_job(write_job(input_dir, JOB)))
    assert [s.name for s in plan] == ["summary", "km", "density", "labels"]
    summary, km, density, labels = plan
    assert summary.inputs["X"].shape == (4000, 3)  # the whole (small) input: warm_rows 65536
    assert summary.chunk_rows == 500  # the input's own chunks
    assert density.inputs["x"].shape == (4000,)
    assert labels.inputs["y"] == FromStep("km", "labels", None) and labels.needs == ("km",)
    assert summary.needs == km.needs == ()


# the same steps, but k-means reads standardize's output
SCALED = JOB.replace('params = { bins = 8 }\n[[step]]', '[[step]]\nname = "scaled"\n'
                     'kernel = "standardize"\ninput = "readings"\n[[step]]', 1).replace(
    'input = "readings"\nparams = { n_clusters = 3', 'input = "scaled/Z"\nparams = { n_clusters = 3')


def test_an_output_shaped_like_its_input_is_stood_in_for_and_families_spread(input_dir):
    from hpcjobs.warmup import _submission_order

    plan = plan_job(load_job(write_job(input_dir, SCALED)))
    assert [s.name for s in plan][:4] == ["summary", "scaled", "km", "density"]
    km = plan[2]
    # standardize's Z has the shape of its X: k-means warms up at once on a stand-in
    assert not km.needs and km.inputs["X"].shape == (4000, 3)
    assert km.inputs["X"].dtype == np.float64
    # two stats kernels share functions: the second waits until every family has started
    order = [plan[i].name for i in _submission_order(plan, list(range(len(plan))))]
    assert order[:4] == ["summary", "km", "density", "scaled"]


def test_signatures_follow_code_paths_not_numbers(input_dir):
    def signature(params: str) -> str:
        body = JOB.replace('params = { bins = 8 }', params)
        return plan_job(load_job(write_job(input_dir, body)))[0].signature

    base = signature("params = { bins = 8 }")
    assert signature("params = { bins = 32 }") == base  # a number compiles nothing new
    assert signature("params = { range = [0, 1] }") != base  # a range instead of none
    agg = JOB.replace('input = { x = "readings[:, 0]", y = "readings[:, 1]" }\n'
                      'params = { shape = [16, 16] }',
                      'input = { x = "readings[:, 0]", y = "readings[:, 1]", values = '
                      '"readings[:, 2]" }\nparams = { shape = [16, 16], agg = "max" }')
    assert agg != JOB
    count, maximum = (plan_job(load_job(write_job(input_dir, body)))[2].signature
                      for body in (JOB, agg))
    assert count != maximum


def test_done_steps_are_not_warmed_and_feed_from_the_output(input_dir, dask_client):
    from hpcjobs.runner import run_job

    job = load_job(write_job(input_dir, JOB))
    run_job(job, client=dask_client)
    plan = plan_job(job, done=["km"])
    assert [s.name for s in plan] == ["summary", "density", "labels"]
    labels = plan[2].inputs["y"]
    assert not isinstance(labels, FromStep) and labels.shape == (4000,) and not plan[2].needs


def test_every_kernel_has_an_example():
    plan = plan_examples()
    from hpcjobs import registry

    assert {s.kernel for s in plan} == set(registry.all_kernels())
    assert plan_examples(["motifs"])[0].kernel == "matrix_profile"  # its producer first


# -- the cache's lock ----------------------------------------------------------------------------


COMPILES = """
import sys
from hpcjobs.warmup import _compile_counter
counter = _compile_counter()
import numpy as np
from hpcjobs.kernels import pyramid
sys.stdin.readline()  # start together
pyramid(np.random.default_rng(0).random((64, 64)), 2)
print(counter.count)
"""


def test_processes_compiling_at_once_compile_each_function_once(cold_cache):
    procs = [subprocess.Popen([sys.executable, "-c", COMPILES], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = [int(p.communicate(timeout=300)[0].split()[-1]) for p in procs]
    alone = subprocess.run([sys.executable, "-c", COMPILES], input="go\n", capture_output=True,
                           text=True, env={**os.environ, "NUMBA_CACHE_DIR": str(cold_cache) + "2"},
                           timeout=300)
    assert sum(counts) == int(alone.stdout.split()[-1]) > 0, (counts, alone.stdout)
    assert any(path.suffix == ".lock" for path in cold_cache.rglob("*"))


def test_a_read_only_package_caches_in_the_users_folder(tmp_path, monkeypatch):
    from hpcjobs.kernels import _jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(_jit.os, "access", lambda path, mode: False)
    where = _jit.cache_location()
    assert where == (str(tmp_path / "hpcjobs" / "numba"), "user")
    func = _jit.njit(lambda x: x + 1)
    assert func(1) == 2
    assert str(func._cache.cache_path).startswith(where.folder)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert _jit.cache_location().how == "NUMBA_CACHE_DIR"


# -- whole jobs from a cold cache ------------------------------------------------------------------


def _record_compiles():
    import builtins

    from numba.core import event

    class Recorder(event.Listener):
        def on_start(self, ev):
            func = getattr(ev.data.get("dispatcher"), "py_func", None)
            if getattr(func, "__module__", "").startswith("hpcjobs"):
                builtins._hpcjobs_compiled.append(f"{func.__module__}.{func.__qualname__}"
                                                  f"{tuple(map(str, ev.data['args']))}")

        def on_end(self, ev):
            pass

    builtins._hpcjobs_compiled = []
    event.register("numba:compile", Recorder())


def _compiled():
    import builtins

    return list(builtins._hpcjobs_compiled)


def _run(job_file, log):
    from distributed import Client, LocalCluster

    from hpcjobs.runner import run_job

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(_record_compiles)
        run_job(load_job(job_file), client=client, mode="overwrite", log=log.append)
        return client.run(_compiled)


@pytest.mark.slow
def test_a_cold_job_compiles_each_function_once_and_a_warm_one_nothing(input_dir, cold_cache):
    rng = np.random.default_rng(1)
    make_input(input_dir / "in.zarr", {"readings": (rng.normal(size=(40_000, 3)), (10_000, 3))})
    job_file = write_job(input_dir, JOB)
    log: list[str] = []
    by_worker = _run(job_file, log)
    compiled = [f for funcs in by_worker.values() for f in funcs]
    twice = sorted({f for f in compiled if compiled.count(f) > 1})
    assert compiled and not twice, (twice, by_worker)
    assert all(by_worker.values()), "both workers compile, each its own functions"
    text = "\n".join(log)
    assert "compiling kernels for this machine (first run only)" in text
    assert "4/4 labels" in text or "/4 labels" in text
    warm_log: list[str] = []
    again = _run(job_file, warm_log)  # new worker processes, the cache now warm
    assert not any(again.values()), again
    assert not any("compiling kernels" in line for line in warm_log), warm_log


def test_warmup_command_warms_once(cold_cache):
    first = CliRunner().invoke(cli, ["warmup", "pyramid", "--workers", "1", "--no-progress"])
    assert first.exit_code == 0, first.output
    assert "warmed 1 step(s)" in first.output and "pyramid" in first.output
    stamps = list(cold_cache.glob("hpcjobs-warm/*/*.json"))
    assert len(stamps) == 1 and json.loads(stamps[0].read_text())["kernel"] == "pyramid"
    assert missing_stamps([plan_examples(["pyramid"])[0].signature]) == []
    again = CliRunner().invoke(cli, ["warmup", "pyramid", "--workers", "1"])
    assert again.exit_code == 0 and "already warm: 1 step(s)" in again.output, again.output


def test_warmup_command_refuses_unknown_kernels():
    result = CliRunner().invoke(cli, ["warmup", "kmeanz"])
    assert result.exit_code == 2 and "unknown kernel 'kmeanz'" in result.output


def test_warmup_of_a_job_file(input_dir, cold_cache):
    body = textwrap.dedent(JOB).split("[[step]]")[0] + '[[step]]\nkernel = "pyramid"\n' \
        'input = "raster"\nparams = { levels = 2 }\n[output]\npath = "out.zarr"\n'
    make_input(input_dir / "in.zarr", {"raster": (np.random.default_rng(0).random((64, 64)),
                                                  (32, 32))})
    job = write_job(input_dir, body)
    result = CliRunner().invoke(cli, ["warmup", str(job), "--workers", "1"])
    assert result.exit_code == 0 and "warmed 1 step(s)" in result.output, result.output
    assert Path(job).exists()
