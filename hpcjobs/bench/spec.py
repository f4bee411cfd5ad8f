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
    call, without the interpreter's start-up). ``fn`` may also return a :class:`Sample`:
    its ``seconds`` (when self-timed) and the ``fields`` it measured, which the record keeps.
    ``cluster=True``: ``context`` starts a local Dask cluster through
    :func:`hpcjobs.bench.harness.dask_client` without a fixed worker count, so that
    ``hpcjobs bench --workers 1,2,4`` can size it; only such implementations run in a
    scaling run.
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
    cluster: bool = False


@dataclass
class Sample:
    """What one call of ``Impl.fn`` may return: ``seconds`` it timed itself (used where
    ``Impl.self_timed``) and ``fields`` it measured besides (JSON-able: passes over the input,
    peak memory, per-step times, ...). The record keeps the fields of the sample whose time
    is the median as ``measured``."""

    seconds: float | None = None
    fields: dict = field(default_factory=dict)


@dataclass
class Benchmark:
    """A kernel benchmark over growing sizes.

    ``make_data(size, rng)`` builds the data for one size (a dict from ``sizes``) once;
    ``items(size)`` is the number of items processed per call, for throughput in ``unit``/s.
    ``quick_sizes`` are small sizes for the smoke run (``hpcjobs bench --quick``, used by the
    tests); by default the first of ``sizes``.
    ``baseline`` names the implementation the ratios are taken for (ours).
    ``bytes(size)`` (optional): the bytes one call must move at least (its input read once
    per pass it cannot avoid, plus its outputs); with the bandwidth probe at the start of a
    run it gives each record's roofline time and fraction (:mod:`hpcjobs.bench.roofline`).

    For runs of whole jobs (``benchmarks/job_scale.py``):
    ``setup(data, size)`` (optional) is a context manager entered once per size around all
    implementations; what it yields is what they receive (one cluster they all share, so
    they run side by side on the same workers). ``warmup=False``: no untimed calls before
    the samples (a call that takes minutes; ``prepare`` can warm up on a little of the
    data). ``default_sizes``: the size indices run when none are asked for (not with
    ``--quick``). ``finish(records)`` gets one size's records once all its implementations
    ran, before they are saved, to add fields across them (each step as a ratio to a
    baseline's time). ``report(records)`` formats this benchmark's records as text printed
    below the main table (also for ``hpcjobs bench --from``).
    """

    name: str
    kernel: str
    sizes: list[dict]
    make_data: Callable[[dict, Any], Any]
    impls: list[Impl]
    items: Callable[[dict], float] = lambda size: float(size.get("n", 1))
    unit: str = "items"
    bytes: Callable[[dict], float] | None = None
    repeats: int = 5
    baseline: str = "hpcjobs"
    description: str = ""
    quick_sizes: list[dict] | None = field(default=None)
    setup: Callable[[Any, dict], AbstractContextManager] | None = None
    warmup: bool = True
    default_sizes: tuple[int, ...] | None = None
    finish: Callable[[list[dict]], None] | None = None
    report: Callable[[list[dict]], str] | None = None
