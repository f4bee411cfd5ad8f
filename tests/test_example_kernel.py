"""The example kernel of docs/adding-a-kernel.md works as the page says: the same result for
NumPy and Dask inputs of 1, 2 and 4 chunks, its declared parameter checked in Python and in
job files, and a job running it in one pass with describe; the page quotes its code."""

from __future__ import annotations

import re
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from hpcjobs import registry
from hpcjobs.errors import JobFileError
from hpcjobs.jobspec import load_job
from hpcjobs.kernels._validation import InvalidInput
from hpcjobs.runner import run_job
from tests import example_kernel as ex
from tests.conftest import make_input, write_job

ROOT = Path(__file__).resolve().parents[1]


def _reference(X, min_count=1):
    count = (~np.isnan(X)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_count, np.nansum(X, axis=0) / count, np.nan)


@pytest.fixture
def data():
    X = np.random.default_rng(0).normal(size=(1000, 3))
    X[::7, 1] = np.nan
    X[:, 2] = np.nan
    X[5, 2] = 1.5
    return X


@pytest.mark.parametrize("chunks", [None, 1000, 500, 250])
def test_the_same_result_whatever_the_chunking(data, chunks):
    X = data if chunks is None else da.from_array(data, chunks=(chunks, 3))
    np.testing.assert_allclose(ex.column_mean(X), _reference(data), rtol=1e-12)
    np.testing.assert_allclose(ex.column_mean(X, min_count=2), _reference(data, 2),
                               rtol=1e-12)


def test_the_declared_parameter_is_checked():
    with pytest.raises(InvalidInput, match=r"'min_count' parameter of column_mean must be an "
                                           r"int in the range \[1, inf\). Got 0 instead"):
        ex.column_mean(np.ones((2, 2)), min_count=0)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(registry.all_kernels(), "column_mean", ex.SPEC)


def test_a_job_runs_it_in_one_pass_with_describe(tmp_path, data, registered, dask_client):
    make_input(tmp_path / "in.zarr", {"X": (data, (250, 3))})
    job = load_job(write_job(tmp_path, """
        [input]
        path = "in.zarr"
        [[step]]
        kernel = "describe"
        input = "X"
        [[step]]
        kernel = "column_mean"
        input = "X"
        params = { min_count = 2 }
        [output]
        path = "out.zarr"
    """))
    lines: list[str] = []
    summary = run_job(job, client=dask_client, log=lines.append)
    assert summary.status == "complete"
    assert any("describe" in line and "column_mean" in line and "(one pass)" in line
               for line in lines), lines
    import zarr

    out = zarr.open_group(str(job.output_path), mode="r")
    np.testing.assert_allclose(out["column_mean/mean"][:], _reference(data, 2), rtol=1e-12)
    np.testing.assert_allclose(out["describe/mean"][:2], np.nanmean(data[:, :2], axis=0))


def test_a_job_file_gets_the_same_words(tmp_path, registered):
    make_input(tmp_path / "in.zarr", {"X": (np.ones((10, 2)), (5, 2))})
    with pytest.raises(JobFileError, match="'min_count' parameter of column_mean"):
        load_job(write_job(tmp_path, """
            [input]
            path = "in.zarr"
            [[step]]
            kernel = "column_mean"
            input = "X"
            params = { min_count = 0 }
            [output]
            path = "out.zarr"
        """))


def test_the_walkthrough_quotes_this_example():
    page = (ROOT / "docs" / "adding-a-kernel.md").read_text()
    source = (ROOT / "tests" / "example_kernel.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        assert block.strip() in source, block[:200]
