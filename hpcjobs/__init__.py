"""hpcjobs: Numba kernels as Dask jobs over Zarr, run on a laptop or on Slurm over MPI.

Importing the package is cheap: Dask, Numba and Zarr load only when a command needs them.
"""

from hpcjobs._version import __version__

__all__ = ["__version__"]
