"""k-means split by job (the public functions and their checks are in
``hpcjobs.kernels.clustering.kmeans``), as scikit-learn splits ``_kmeans`` from its Lloyd,
Elkan and mini-batch modules:

- ``_chunks``: the Numba loops over a chunk (nearest centroid, Lloyd's assign + accumulate
  step, assignment, k-means++ trial scoring), each written once;
- ``_specialised``: which loop runs a chunk (the generic ones, or the same loops around a
  distance step unrolled for narrow data); ``assign_accumulate`` is Lloyd's per-chunk step;
- ``_passes``: the chunk functions and combines of each pass (what Dask tasks run);
- ``_seeding``: k-means||, k-means++, random rows, and the tolerance;
- ``_lloyd``: Lloyd's loop, empty clusters, the final labels and inertia;
- ``_bounded``/``_elkan``: Lloyd's loop on in-memory data with Hamerly's bounds (narrow data,
  the direct kernels) or Elkan's (wide data, the distances of a float32 copy);
- ``_on_workers``: the whole of k-means as a worker group (``hpcjobs.kernels._worker_group``);
- ``_minibatch``: mini-batch k-means.
"""
