"""Slurm: batch scripts, the one client that shells out, run folders, status, sweeps.

Layered like dask-jobqueue and submitit: ``script`` renders (pure), ``client`` runs Slurm's
commands (the one choke point), ``status`` parses their output (pure), ``runs`` keeps one folder
per submission, ``submit`` ties them together and holds what runs inside the allocation.
"""
