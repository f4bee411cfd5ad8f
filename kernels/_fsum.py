"""``math.fsum`` in Numba: the exactly rounded sum of float64 values, in compiled code.

k-means compares its squared centroid shift with the tolerance exactly rounded, so that the
members of a worker group on different CPUs agree on when to stop. ``math.fsum`` over the
``k * d`` squares took half a millisecond an iteration at d = 784, k = 10 (a Python float
each, plus the list to hold them): 5 % of ``hpcjobs bench kmeans-lloyd``'s time at that size.

Most iterations are not close to stopping: where a plain float64 sum, less its error bound,
is still above the tolerance, the exact sum would be too, and that plain sum is returned (on
the same side of the tolerance and of 0: every comparison comes out the same).

The exact algorithm is CPython's (``Modules/mathmodule.c``, after Shewchuk's "Adaptive precision
floating-point arithmetic"): non-overlapping partial sums kept exactly, then added from the
largest down with round-half-even carried across the partials; the result is the same
double. Where CPython raises (intermediate overflow) or a value is not finite, the compiled
code gives up and :func:`squared_distance_fsum` calls ``math.fsum`` itself for the same
result or error.
"""

from __future__ import annotations

import math

import numpy as np

from hpcjobs.kernels._jit import njit

#: partials to start with (they grow as needed; a handful for k-means' squares)
_PARTIALS = 32


#: float64's unit roundoff
_U = 2.0 ** -53


@njit
def _msum_squared_differences(A, B, above):
    """(exactly rounded ``sum((A - B)**2)`` over the 2-D ``A``/``B``, True), or (0, False)
    where a square is not finite or the sum overflows (left to ``math.fsum``); or (plain
    sum, True) where that proves the exact sum above ``above``."""
    count = A.shape[0] * A.shape[1]
    plain = 0.0
    for r in range(A.shape[0]):
        for c in range(A.shape[1]):
            t = A[r, c] - B[r, c]
            plain += t * t
    # in any order, n non-negative terms sum to within (n - 1) u / (1 - (n - 1) u) of the
    # exact sum: below 2 n u while n u < 1/4. With the test's own rounding, it passing means
    # exact sum > above (1 + 11 u), which rounds above ``above`` too
    if (math.isfinite(plain) and count * _U < 0.25
            and plain * (1.0 - 2.0 * count * _U) > above * (1.0 + 16.0 * _U)):
        return plain, True
    p = np.empty(_PARTIALS)
    n = 0
    for r in range(A.shape[0]):
        for c in range(A.shape[1]):
            t = A[r, c] - B[r, c]
            x = t * t
            i = 0
            for j in range(n):
                y = p[j]
                if abs(x) < abs(y):
                    x, y = y, x
                hi = x + y
                lo = y - (hi - x)
                if lo != 0.0:
                    p[i] = lo
                    i += 1
                x = hi
            n = i
            if x != 0.0:
                if not math.isfinite(x):
                    return 0.0, False
                if n == p.shape[0]:
                    grown = np.empty(2 * n)
                    grown[:n] = p
                    p = grown
                p[n] = x
                n += 1
    hi = 0.0
    lo = 0.0
    if n > 0:
        n -= 1
        hi = p[n]
        while n > 0:  # from the top, until the sum becomes inexact
            x = hi
            n -= 1
            y = p[n]
            hi = x + y
            lo = y - (hi - x)
            if lo != 0.0:
                break
        # round half to even across the partials left
        if n > 0 and ((lo < 0.0 and p[n - 1] < 0.0) or (lo > 0.0 and p[n - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            if y == x - hi:
                hi = x
    return hi, True


def squared_distance_fsum(A: np.ndarray, B: np.ndarray, above: float = np.inf) -> float:
    """``math.fsum(((A - B) ** 2).ravel())`` for 2-D arrays of one shape (compiled for
    float64 ones), or, where the sum is provably above ``above`` (>= 0), a float64 sum that
    is too: compared with ``above`` or with 0, either value gives the same answer."""
    if A.dtype == B.dtype == np.float64 and A.ndim == 2:
        total, exact = _msum_squared_differences(A, B, above)
        if exact:
            return total
    # a list: fsum takes Python floats half again as fast as it iterates a NumPy array
    return math.fsum(((A - B) ** 2).ravel().tolist())
