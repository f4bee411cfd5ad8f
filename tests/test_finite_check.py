"""The finite check of NumPy inputs: the threaded pass over large arrays finds every NaN and
inf, wherever it lies, and a kernel refuses such an input with the one-line message."""

from __future__ import annotations

import numpy as np
import pytest

from hpcjobs.kernels import kmeans
from hpcjobs.kernels._validation import _PARALLEL_CHECK, InvalidInput, all_finite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_position_of_a_large_array(dtype):
    n = _PARALLEL_CHECK + 12345
    X = np.random.default_rng(0).standard_normal(n).astype(dtype)
    assert all_finite(X)
    for value in (np.nan, np.inf, -np.inf):
        for pos in (0, n // 2 - 1, n // 2, n - 1):  # first, both sides of the threads' split, last
            Y = X.copy()
            Y[pos] = value
            assert not all_finite(Y), (value, pos)
    assert all_finite(np.full(n, np.finfo(dtype).max, dtype=dtype))  # the largest are finite
    assert all_finite(np.full((n // 4, 4), -np.finfo(dtype).tiny / 2, dtype=dtype))


def test_a_kernel_refuses_a_large_input_holding_nan():
    X = np.ones((_PARALLEL_CHECK // 4 + 1, 4))
    X[-1, -1] = np.nan
    with pytest.raises(InvalidInput, match="must be finite"):
        kmeans(X, 2)
