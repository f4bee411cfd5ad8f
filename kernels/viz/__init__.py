"""Visualisation preprocessing: 2-D aggregation, shading, pyramids, downsampling, projection."""
