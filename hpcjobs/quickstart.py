"""The quickstart: synthetic sensor data, the example job file, one run."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import numpy as np

from hpcjobs import chunkstats
from hpcjobs.errors import UserError
from hpcjobs.zarrio import create_array

N_FEATURES = 4
N_CLUSTERS = 6


def make_sensor_data(path: Path, rows: int, *, chunk_rows: int = 250_000, seed: int = 0) -> None:
    """Write ``rows`` synthetic sensor readings (a mixture of Gaussian clusters) as Zarr.

    The group holds ``readings`` (rows, 4) float64 and ``true_labels`` (rows,) int32, written
    chunk by chunk so large ``rows`` never need the whole array in memory.
    """
    import zarr

    rng = np.random.default_rng(seed)
    centers = rng.uniform(-20, 20, size=(N_CLUSTERS, N_FEATURES))
    spread = rng.uniform(0.5, 2.5, size=N_CLUSTERS)
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.attrs.update({"description": "synthetic sensor readings (Gaussian clusters)",
                    "seed": seed, "n_clusters": N_CLUSTERS})
    readings = create_array(g, "readings", shape=(rows, N_FEATURES), dtype="f8",
                            chunks=(chunk_rows, N_FEATURES), dimension_names=["row", "feature"])
    labels = create_array(g, "true_labels", shape=(rows,), dtype="i4", chunks=(chunk_rows,),
                          dimension_names=["row"])
    # per-chunk statistics as ingest records them: the job's ranges cost no pass
    stats = {name: (chunkstats.Recorder(cols), (a.shards or a.chunks)[0])
             for name, a, cols in (("readings", readings, N_FEATURES), ("true_labels", labels, 1))}
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        lab = rng.integers(0, N_CLUSTERS, size=stop - start)
        X = centers[lab] + rng.standard_normal((stop - start, N_FEATURES)) * spread[lab, None]
        readings[start:stop] = X
        labels[start:stop] = lab.astype(np.int32)
        for name, block in (("readings", X), ("true_labels", lab)):
            recorder, block_rows = stats[name]
            recorder.add(start // block_rows, block)
    for name, (recorder, _) in stats.items():
        recorder.save(Path(path) / name)


def prepare(directory: Path, rows: int, *, force: bool = False) -> Path:
    """Create ``directory`` with ``data/sensors.zarr`` and ``job.toml``; return the job path."""
    job = write_job_file(directory, rows, force=force)
    make_sensor_data(data_path(directory), rows)
    return job


def write_job_file(directory: Path, rows: int, *, force: bool = False) -> Path:
    """The first half of :func:`prepare`: check, copy the example job file into ``directory``
    and remove an earlier result; the data (:func:`make_sensor_data`) can follow while a
    cluster starts."""
    directory = Path(directory)
    job = directory / "job.toml"
    if job.exists() and not force:
        raise UserError(f"{job} already exists; pass --force to make the quickstart again")
    if rows < 1:
        raise UserError(f"--rows must be at least 1, got {rows}")
    directory.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("hpcjobs.examples") / "quickstart.toml") as src:
        shutil.copyfile(src, job)
    results = directory / "results" / "quickstart.zarr"
    if results.exists():
        shutil.rmtree(results)
    return job


def data_path(directory: Path) -> Path:
    """Where the quickstart's input group lives in ``directory`` (the job file's input)."""
    return Path(directory) / "data" / "sensors.zarr"
