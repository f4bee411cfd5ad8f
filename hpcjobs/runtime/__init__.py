"""Where a job's Dask cluster comes from: a local cluster, an existing scheduler, or MPI ranks.

The sizes the MPI launchers need live here, light to import, so that rendering a batch script
(``hpcjobs.slurm.script``) takes them from the launchers without importing them.
"""

#: ranks of a batch job: a scheduler, a driver and one worker at least (submit's fewest tasks)
MIN_WORLD = 3
#: ranks of an interactive cluster (``mpi_cluster``): a scheduler and one worker, no driver
MIN_CLUSTER_WORLD = 2
#: seconds a rank waits for the others at start (the ``[slurm]`` option's default too)
STARTUP_TIMEOUT = 120
#: seconds a batch job's tasks wait once every worker rank is gone before they fail (the ranks
#: of an MPI job never come back, so the job ends and ``--resume`` finishes it, instead of
#: waiting out the walltime)
NO_WORKERS_TIMEOUT = 60
