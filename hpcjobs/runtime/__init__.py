"""Where a job's Dask cluster comes from: a local cluster, an existing scheduler, or MPI ranks."""
