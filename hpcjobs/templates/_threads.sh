# each worker rank runs one Dask thread per core Slurm gave it (cpus_per_task), each with one
# Numba/BLAS thread: never more threads than cores
export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export PYTHONUNBUFFERED=1
