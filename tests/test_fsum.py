"""The compiled exactly rounded sum of squared differences against ``math.fsum``."""

import math

import numpy as np
import pytest

from hpcjobs.kernels._fsum import _msum_squared_differences, squared_distance_fsum


def reference(A, B):
    return math.fsum(((A - B) ** 2).ravel().tolist())


@pytest.mark.parametrize("seed", range(6))
def test_equals_math_fsum_on_wide_ranges(seed):
    # squares over 2000 binades, exact zeros among them: the sum keeps many partials (more
    # than the first buffer holds) and rounding across them matters; every result to the
    # bit, and the compiled path taken
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 20)), int(rng.integers(1, 800)))
    A = rng.standard_normal(shape) * 10.0 ** rng.integers(-150, 150, shape)
    B = A + rng.standard_normal(shape) * 10.0 ** rng.integers(-160, 150, shape)
    total, exact = _msum_squared_differences(A, B, np.inf)
    assert exact
    assert total == reference(A, B)
    assert squared_distance_fsum(A, B) == reference(A, B)


def test_half_even_rounding_across_partials():
    # the squares 1e-16, 1 and 1e16 (as in CPython's own fsum test: rounds up to ...02)
    A = np.sqrt(np.array([[1e-16, 1.0, 1e16]]))
    B = np.zeros_like(A)
    assert squared_distance_fsum(A, B) == reference(A, B)
    # values whose naive sum is off: 1 + 2^-53 + 2^-53 (naive: 1.0; exact: 1 + 2^-52)
    A = np.sqrt(np.array([[1.0, 2.0 ** -53, 2.0 ** -53]]))
    assert squared_distance_fsum(A, np.zeros_like(A)) == 1.0 + 2.0 ** -52
    assert squared_distance_fsum(A, np.zeros_like(A)) == reference(A, np.zeros_like(A))


def test_zero_and_empty():
    A = np.ones((3, 4))
    assert squared_distance_fsum(A, A) == 0.0
    assert squared_distance_fsum(np.empty((0, 4)), np.empty((0, 4))) == 0.0


def test_overflow_and_non_finite_as_math_fsum():
    # finite squares whose sum overflows: math.fsum's own error; inf and nan: its results
    A = np.sqrt(np.array([[1.5e308, 1.5e308]]))
    with pytest.raises(OverflowError):
        reference(A, np.zeros_like(A))
    assert _msum_squared_differences(A, np.zeros_like(A), np.inf)[1] is False
    with pytest.raises(OverflowError):
        squared_distance_fsum(A, np.zeros_like(A))
    A = np.array([[np.inf, 1.0]])
    assert squared_distance_fsum(A, np.zeros_like(A)) == np.inf
    A = np.array([[np.nan, 1.0]])
    assert math.isnan(squared_distance_fsum(A, np.zeros_like(A)))


def test_float32_as_before():
    # float32 arrays keep NumPy's float32 differences and squares, summed by math.fsum
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 50)).astype(np.float32)
    B = rng.standard_normal((4, 50)).astype(np.float32)
    assert squared_distance_fsum(A, B) == reference(A, B)


@pytest.mark.parametrize("seed", range(4))
def test_above_gives_the_same_comparisons(seed):
    # thresholds from far below the exact sum to far above, and within a few ulps of it:
    # the value returned compares with the threshold, and with 0, as the exact sum does;
    # exact where it is near
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((10, 784)) * 10.0 ** rng.integers(-3, 3, (10, 784))
    B = A + rng.standard_normal((10, 784)) * 1e-3
    exact = reference(A, B)
    near = [exact * (1 + e * 2.0 ** -52) for e in range(-6, 7)]
    for above in [0.0, exact / 2, exact * (1 - 1e-9), *near, exact * 2, np.inf]:
        got = squared_distance_fsum(A, B, above=above)
        assert (got <= above) == (exact <= above) and (got == 0) == (exact == 0)
        if above >= exact * (1 - 1e-12):
            assert got == exact
    assert squared_distance_fsum(A, A, above=0.0) == 0.0
    # far above the threshold: the sum in order, within its error bound of the exact one
    plain, _ = _msum_squared_differences(A, B, 0.0)
    naive = 0.0
    for v in ((A - B) ** 2).ravel().tolist():
        naive += v
    assert plain == naive and abs(plain - exact) <= 2 * A.size * 2.0 ** -53 * exact
