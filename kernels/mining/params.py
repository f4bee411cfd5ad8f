"""The parameters of the data-mining kernels, declared once (see :mod:`hpcjobs.kernels._params`)."""

from __future__ import annotations

from hpcjobs.kernels._params import Param, Params

FREQUENT_ITEMSETS = Params(
    "frequent_itemsets",
    Param("min_support", "float", help="minimum fraction of transactions", low=0.0, high=1.0,
          low_open=True),
    Param("max_len", "int", None, "longest itemset (null: no limit)", low=1, nullable=True),
)

ASSOCIATION_RULES = Params(
    "association_rules",
    Param("min_confidence", "float", 0.8, "minimum confidence of a rule", low=0.0, high=1.0),
)

MATRIX_PROFILE = Params(
    "matrix_profile",
    # the kernel checks m against T, naming the whole range ([3, len(T) / 2])
    Param("m", "int", help="window length, 3 <= m <= len(T) / 2", low=3, kernel_checks=True),
    Param("tile", "int", None, "windows per tile side (null: T's chunk length, at least 1/64 "
          "of the series)", low=1, nullable=True),
)

#: a job file's discords and motifs read a profile array: its window length comes with it
PROFILE_WINDOW = Param("m", "int", help="window length the profile was computed with", low=3)

# k is at most the profile's length, and exclusion_zone needed when the profile is a plain
# array: the kernels check both against the profile, naming the whole range
_K_PICKS = Param("k", "int", 3, "how many to report", low=1, kernel_checks=True)
_EXCLUSION = Param("exclusion_zone", "int", None, "windows excluded either side of a pick "
                   "(null: ceil(m / 4), as matrix_profile)", low=0, nullable=True,
                   kernel_checks=True)
DISCORDS = Params("discords", _K_PICKS, _EXCLUSION)
MOTIFS = Params("motifs", _K_PICKS, _EXCLUSION)

# k is at most the rows - 1: the kernels check it against X, naming the whole range
KNN_OUTLIERS = Params("knn_outliers", Param("k", "int", 5, "which neighbour (1: the nearest)",
                                            low=1, kernel_checks=True))
LOF = Params("lof", Param("k", "int", 20, "number of neighbours (n_neighbors)", low=1,
                          kernel_checks=True))
