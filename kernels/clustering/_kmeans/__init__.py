"""k-means, split by job (see kernels/clustering/kmeans.py for the public functions)."""
