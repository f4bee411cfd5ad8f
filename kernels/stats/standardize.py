"""``standardize``: z-scores per column, ``(X - mean) / std``, chunk by chunk.

The column means and standard deviations come from :func:`describe`'s mergeable bases (one
reduction over the chunks); the scaling itself is a map over the chunks, so a Dask input gives
a Dask output of the same chunks. Constant columns (std 0) become 0 rather than NaN, as in
``sklearn.preprocessing.StandardScaler``. NaN stays NaN.
"""

from __future__ import annotations

import numba
import numpy as np

from hpcjobs.kernels._jit import njit, task_threads
from hpcjobs.kernels._validation import InvalidInput, check_array, is_dask, message


@njit(parallel=True)
def _scale(X, mean, scale, out):
    n, d = X.shape
    for i in numba.prange(n):
        for j in range(d):
            out[i, j] = (X[i, j] - mean[j]) * scale[j]


def _scale_block(block, mean, scale):
    task_threads()  # a prange sized by this thread's Numba count
    block = np.ascontiguousarray(block)
    out = np.empty(block.shape, dtype=np.float64)
    _scale(block, mean, scale, out)
    return out


def standardize(X, *, mean=None, std=None):
    """Scale each column of a 2-D array to zero mean and unit standard deviation (ddof=0).

    Parameters
    ----------
    X : numpy or dask array, shape (n, d)
    mean, std : array of shape (d,), optional
        Use these instead of computing them (e.g. to apply a training set's scaling).

    Returns
    -------
    numpy or dask array (like ``X``), float64, shape (n, d)

    Examples
    --------
    >>> import numpy as np
    >>> standardize(np.array([[1.0], [3.0]])).ravel()
    array([-1.,  1.])
    """
    X = check_array(X, "X", "standardize", ndim=2, allow_nan=True)
    if mean is None or std is None:
        from hpcjobs.kernels.stats.describe import describe

        try:
            stats = describe(X, bins=1)
        except ValueError as exc:  # describe's words about inf, with this function's name
            if "free of inf" not in str(exc):
                raise
            raise InvalidInput(message("X", "standardize", "free of inf (NaN stays NaN)",
                                       "an array holding inf",
                                       "Replace or drop the infinite values first.")) from None
        mean = stats.mean if mean is None else mean
        std = stats.std if std is None else std
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    with np.errstate(divide="ignore"):
        scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)
    if is_dask(X):
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})
        return X.map_blocks(_scale_block, mean, scale, dtype=np.float64)
    return _scale_block(X, mean, scale)
