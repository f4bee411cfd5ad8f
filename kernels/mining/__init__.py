"""Data-mining kernels: frequent itemsets and association rules, matrix profile, outlier scores."""
