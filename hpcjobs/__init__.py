"""hpcjobs: Numba kernels as Dask jobs over Zarr, run on a laptop or on Slurm over MPI.

Importing the package is cheap: Dask, Numba and Zarr load only when a command needs them.
``hpcjobs.connect(RUN)`` returns a ``distributed.Client`` of a cluster that
``hpcjobs cluster --slurm`` started (see ``hpcjobs.slurm.connect``).
"""

from hpcjobs._version import __version__

__all__ = ["__version__", "connect"]


def __getattr__(name: str):
    if name == "connect":  # imports distributed: only when asked for
        from hpcjobs.slurm.connect import connect

        return connect
    raise AttributeError(f"module 'hpcjobs' has no attribute {name!r}")
