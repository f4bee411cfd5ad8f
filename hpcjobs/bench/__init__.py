"""The benchmark harness behind ``hpcjobs bench``: definitions live in ``benchmarks/``."""

from hpcjobs.bench.spec import Benchmark, Impl

__all__ = ["Benchmark", "Impl"]
