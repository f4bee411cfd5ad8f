"""Clustering kernels: k-means (Lloyd with k-means|| / k-means++ seeding, mini-batch,
prediction) in :mod:`.kmeans` and exact grid DBSCAN in :mod:`.dbscan`.

The public names (``kmeans``, ``kmeans_predict``, ``minibatch_kmeans``, ``dbscan``) are
exported lazily by :mod:`hpcjobs.kernels`.
"""
