"""NaN/inf checks of row blocks, shared by the passes over NumPy, Dask and worker-group blocks.

A kernel that does not check its whole input up front (that would be one more pass over
Dask data) asks its next pass to check every block it reads instead
(:meth:`FiniteCheck.check_finite_next`), raising the kernel's own one-line error.
"""

from __future__ import annotations

import functools

import numpy as np

from hpcjobs.kernels._jit import njit


@njit
def all_finite(X):
    """True when the 2-D array ``X`` holds no NaN and no +-inf."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            x = X[i, j]
            if not (x - x == 0):  # NaN and +-inf
                return False
    return True


def _checked(chunk, func, block, offset, *args):
    """``chunk(block, offset, *args)`` after checking ``block`` for NaN and inf."""
    from hpcjobs.kernels._validation import nonfinite_error

    block = np.ascontiguousarray(block)
    if not all_finite(block):
        raise nonfinite_error("X", func)
    return chunk(block, offset, *args)


class FiniteCheck:
    """The "check the next pass for NaN/inf" switch of a set of blocks."""

    _check: str | None = None

    def check_finite_next(self, func: str) -> None:
        """Have the next pass also check every chunk for NaN/inf (the data is not checked up
        front), raising the error of ``func``."""
        self._check = func

    def _take_check(self):
        func, self._check = self._check, None
        return func

    def _next_chunk(self, chunk):
        """``chunk``, checking its block first if a check was asked for (once)."""
        func = self._take_check()
        if func is None:
            return chunk
        return functools.partial(_checked, chunk, func)
