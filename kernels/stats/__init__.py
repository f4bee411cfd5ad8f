"""Summary statistics kernels."""
