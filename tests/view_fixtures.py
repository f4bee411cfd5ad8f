"""A real job result holding every kind of view, for the ``hpcjobs view`` tests.

The input group has clustered points ``X`` (n x 3), a long series ``t`` (a random walk with
bursts), a short series ``u`` for the matrix profile and basket transactions ``tx``; the job
runs every viewable kernel family over them through ``run_job`` on the shared cluster.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from hpcjobs.ingest import ingest
from tests.conftest import make_input

JOB = """
name = "view-demo"
[input]
path = "in.zarr"

[[step]]
name = "stats"
kernel = "describe"
input = "X"
params = {{ bins = 24 }}

[[step]]
name = "km"
kernel = "kmeans"
input = "X"
params = {{ n_clusters = 4, seed = 0 }}

[[step]]
name = "emb"
kernel = "pca"
input = "X"

[[step]]
name = "density"
kernel = "aggregate2d"
input = {{ x = "X[:, 0]", y = "X[:, 1]" }}
params = {{ shape = [{raster}, {raster}] }}

[[step]]
name = "pyr"
kernel = "pyramid"
input = "density/raster"
params = {{ levels = 4 }}

[[step]]
name = "series"
kernel = "minmax_lttb"
input = "t"
params = {{ n_out = 400 }}

[[step]]
name = "mp"
kernel = "matrix_profile"
input = "u"
params = {{ m = 32 }}

[[step]]
name = "disc"
kernel = "discords"
input = "mp/profile"
params = {{ m = 32, k = 2 }}

[[step]]
name = "mot"
kernel = "motifs"
input = {{ profile = "mp/profile", index = "mp/index" }}
params = {{ m = 32, k = 2 }}

[[step]]
name = "outliers"
kernel = "knn_outliers"
input = "X[0:2000]"
params = {{ k = 5 }}

[[step]]
name = "fi"
kernel = "frequent_itemsets"
input = "tx"
params = {{ min_support = 0.05, max_len = 3 }}

[[step]]
name = "rules"
kernel = "association_rules"
params = {{ min_confidence = 0.3 }}
[step.input]
indptr = "fi/indptr"
items = "fi/items"
counts = "fi/counts"
n_transactions = "fi/n_transactions"

[output]
path = "result.zarr"
"""


def demo_data(n_points: int = 20_000, n_series: int = 200_000, seed: int = 0):
    """Points in four blobs, a bursty random walk, a periodic series with an anomaly."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.0, -1.0, 0.0], [2.0, 1.5, 1.0], [0.0, 3.0, -1.0], [3.0, -2.0, 2.0]])
    X = centres[rng.integers(0, 4, n_points)] + rng.normal(0, 0.6, (n_points, 3))
    steps = rng.normal(0, 1.0, n_series)
    steps[n_series // 3: n_series // 3 + 2000] *= 8  # a burst to find by zooming
    t = np.cumsum(steps)
    k = np.arange(2000)
    u = np.sin(2 * np.pi * k / 50) + rng.normal(0, 0.05, k.size)
    u[1200:1232] += np.linspace(0, 2, 32)  # a discord
    return X, t, u


def build_result(folder: Path, client, *, raster: int = 256) -> Path:
    """Write the input group and job into ``folder``, run the job, return the result path."""
    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job

    X, t, u = demo_data()
    make_input(folder / "in.zarr", {"X": (X, (5000, 3)), "t": (t, (50_000,)),
                                    "u": (u, (2000,))})
    names = ["milk", "bread", "butter", "beer", "nappies", "eggs", "tea", "jam"]
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(400):
        basket = set(rng.choice(names, size=rng.integers(1, 5), replace=False, p=None))
        if "bread" in basket and rng.random() < 0.7:
            basket.add("butter")
        lines.append(" ".join(sorted(basket)))
    (folder / "tx.basket").write_text("\n".join(lines) + "\n")
    _add_basket(folder)
    job_file = folder / "job.toml"
    job_file.write_text(textwrap.dedent(JOB.format(raster=raster)))
    run_job(load_job(job_file), client=client)
    return folder / "result.zarr"


def _add_basket(folder: Path) -> None:
    """Ingest the basket file into a group of its own, then move it into ``in.zarr``."""
    import shutil

    ingest(folder / "tx.basket", folder / "tx.zarr", name="tx")
    shutil.move(str(folder / "tx.zarr" / "tx"), str(folder / "in.zarr" / "tx"))
    shutil.rmtree(folder / "tx.zarr")


@pytest.fixture(scope="session")
def view_result(tmp_path_factory, dask_client) -> Path:
    """The demo job's result (made once per session)."""
    return build_result(tmp_path_factory.mktemp("view-demo"), dask_client)
