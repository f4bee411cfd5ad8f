"""What a benchmark definition in ``benchmarks/*.py`` looks like.

A definition module holds a module-level ``BENCHMARKS`` list. Each :class:`Benchmark` makes
data for each size once, then times every :class:`Impl` on it side by side in the same run:
one warm-up call first (its time is reported as ``compile_s``, since that is where Numba
compiles) and untimed calls for a second more, then ``repeats`` timed calls. Peers whose
modules are not installed are skipped and reported as such. Ratios are ours / peer, per
size, from the medians.

Example (``benchmarks/describe.py``)::

    BENCHMARKS = [Benchmark(
        name="describe", kernel="describe",
        sizes=[{"n": 10**6, "d": 8}, {"n": 10**7, "d": 10}],
        make_data=lambda size, rng: rng.standard_normal((size["n"], size["d"])),
        items=lambda size: size["n"] * size["d"], unit="values",
        impls=[Impl("hpcjobs", lambda X: describe(X)),
               Impl("numpy", lambda X: (X.mean(0), X.std(0)), peer=True)],
    )]
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Impl:
    """One implementation to time.

    ``fn(data)`` is the timed call (it must finish the work: compute Dask results).
    ``prepare(data, size)`` runs untimed before the warm-up and returns what ``fn`` receives
    (e.g. a Dask array of the data, or a fitted object). ``context()`` (optional) is entered
    around all of this implementation's calls for one size (e.g. a LocalCluster and Client).
    ``requires`` lists importable module names; if any is missing the impl is skipped.
    ``peer=True`` marks a library people would otherwise use: ratios are computed against it.
    ``sizes`` optionally limits the impl to some size indices (slow peers at big sizes).
    ``baseline`` (peers only) names the implementation this peer is compared with; default
    the benchmark's ``baseline`` (e.g. compare ``dask.array`` with our Dask variant).
    ``self_timed=True``: ``fn`` returns the seconds it measured itself, and those are the
    samples instead of its wall time (e.g. a fresh child process that times its own first
    call, without the interpreter's start-up).
    """

    name: str
    fn: Callable[[Any], Any]
    peer: bool = False
    prepare: Callable[[Any, dict], Any] | None = None
    context: Callable[[], AbstractContextManager] | None = None
    requires: tuple[str, ...] = ()
    sizes: tuple[int, ...] | None = None
    note: str = ""
    baseline: str | None = None
    self_timed: bool = False


@dataclass
class Benchmark:
    """A kernel benchmark over growing sizes.

    ``make_data(size, rng)`` builds the data for one size (a dict from ``sizes``) once;
    ``items(size)`` is the number of items processed per call, for throughput in ``unit``/s.
    ``quick_sizes`` are small sizes for the smoke run (``hpcjobs bench --quick``, used by the
    tests); by default the first of ``sizes``.
    ``baseline`` names the implementation the ratios are taken for (ours).
    """

    name: str
    kernel: str
    sizes: list[dict]
    make_data: Callable[[dict, Any], Any]
    impls: list[Impl]
    items: Callable[[dict], float] = lambda size: float(size.get("n", 1))
    unit: str = "items"
    repeats: int = 5
    baseline: str = "hpcjobs"
    description: str = ""
    quick_sizes: list[dict] | None = field(default=None)
