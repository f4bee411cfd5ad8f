"""The parameters of the statistics kernels, declared once (see :mod:`hpcjobs.kernels._params`)."""

from __future__ import annotations

from hpcjobs.kernels._params import Param, Params

DESCRIBE = Params(
    "describe",
    Param("bins", "int", 64, "histogram bins per column (bins x columns at most 67,108,864)",
          low=1, high=1_000_000),
    # Python also takes one (lo, hi) pair per column: the kernel checks it against X
    Param("range", "floats", None, "fixed histogram range [lo, hi] for every column (one pass "
          "over the data instead of two)", length=2, nullable=True, kernel_checks=True),
)
