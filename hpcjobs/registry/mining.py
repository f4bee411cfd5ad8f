"""Data-mining kernels for job files: frequent itemsets and rules, matrix profile, outliers.

Itemsets and rules are small results written whole, as CSR arrays of item ids (``indptr``,
``items``) with one row of metrics per set or rule; the item names are the ``labels`` output
of ``frequent_itemsets`` (``labels[items[indptr[i]:indptr[i + 1]]]`` is set ``i``). The matrix
profile and the outlier scores have one value per window or row and are Dask outputs, written
chunk by chunk.
"""

from __future__ import annotations

from hpcjobs.kernels.mining.params import (
    ASSOCIATION_RULES,
    DISCORDS,
    FREQUENT_ITEMSETS,
    KNN_OUTLIERS,
    LOF,
    MATRIX_PROFILE,
    PROFILE_WINDOW,
)
from hpcjobs.registry import KernelSpec, Port


def _numpy(x):
    import numpy as np

    return np.asarray(x.compute() if hasattr(x, "__dask_graph__") else x)


def run_frequent_itemsets(inputs: dict, params: dict) -> tuple[dict, dict]:
    import numpy as np

    from hpcjobs.kernels import frequent_itemsets

    r = frequent_itemsets(inputs["transactions"], params["min_support"],
                          max_len=params["max_len"])
    if r.labels is not None:
        labels = np.asarray(r.labels, dtype=object).astype(str)  # (StringDType too)
    else:  # no names: the ids themselves, as text, so that labels[items] always works
        top = int(r.items.max()) + 1 if r.items.size else 0
        labels = np.arange(top).astype(str)
    return {"indptr": r.indptr, "items": r.items, "support": r.support, "counts": r.counts,
            "labels": labels, "n_transactions": int(r.n_transactions)}, {}


def run_association_rules(inputs: dict, params: dict) -> tuple[dict, dict]:
    import numpy as np

    from hpcjobs.kernels import association_rules
    from hpcjobs.kernels.mining.itemsets import FrequentItemsets

    counts = _numpy(inputs["counts"]).astype(np.int64)
    n = int(_numpy(inputs["n_transactions"]))
    itemsets = FrequentItemsets(indptr=_numpy(inputs["indptr"]).astype(np.int64),
                                items=_numpy(inputs["items"]).astype(np.int32),
                                counts=counts, support=counts / float(n), n_transactions=n)
    r = association_rules(itemsets, params["min_confidence"])
    return {"antecedent_indptr": r.antecedent_indptr, "antecedent_items": r.antecedent_items,
            "consequent_indptr": r.consequent_indptr, "consequent_items": r.consequent_items,
            "antecedent_support": r.antecedent_support,
            "consequent_support": r.consequent_support, "support": r.support,
            "confidence": r.confidence, "lift": r.lift, "leverage": r.leverage,
            "conviction": r.conviction}, {}


def run_matrix_profile(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import matrix_profile

    r = matrix_profile(inputs["T"], params["m"], tile=params["tile"])
    return {"profile": r.profile, "index": r.index}, {"m": r.m, "exclusion_zone": r.exclusion_zone}


def _profile(inputs: dict, params: dict):
    import math

    from hpcjobs.kernels.mining.matrix_profile import MatrixProfile

    excl = params["exclusion_zone"]
    if excl is None:
        excl = int(math.ceil(params["m"] / 4))
    index = inputs.get("index")
    index = _numpy(index) if index is not None else None
    return MatrixProfile(_numpy(inputs["profile"]), index, params["m"], excl)


def run_discords(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import discords

    r = discords(_profile(inputs, params), params["k"])
    return {"index": r.index, "distance": r.distance}, {}


def run_motifs(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import motifs

    r = motifs(_profile(inputs, params), params["k"])
    return {"index": r.index, "distance": r.distance}, {}


def run_knn_outliers(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import knn_outliers

    return {"score": knn_outliers(inputs["X"], params["k"])}, {}


def run_lof(inputs: dict, params: dict) -> tuple[dict, dict]:
    from hpcjobs.kernels import lof

    return {"lof": lof(inputs["X"], params["k"])}, {}


_X = Port("X", ("row", "column"), "2-D numeric array; each row is a point")
# discords and motifs of a profile array: k, the window length the profile has, the exclusion
# zone (motifs declares the same k and exclusion_zone as discords)
_PICK_PARAMS = (DISCORDS["k"], PROFILE_WINDOW, DISCORDS["exclusion_zone"])

KERNELS = [
    KernelSpec(
        name="frequent_itemsets",
        example={"min_support": 0.05}, warm_rows=4096,
        family="mining",
        summary="Frequent itemsets of transactions (Eclat on bitsets; SON over chunks, exact).",
        run="hpcjobs.registry.mining:run_frequent_itemsets",
        inputs=(Port("transactions", ("transaction",), "transactions group (indptr, items, "
                     "labels) as `hpcjobs ingest` writes basket files", kind="csr"),),
        outputs=(
            Port("indptr", ("itemset_bound",), "CSR offsets: set i is "
                 "items[indptr[i]:indptr[i+1]]", dtype="int64"),
            Port("items", ("itemset_item",), "item ids of every set, ascending within a set",
                 dtype="int32"),
            Port("support", ("itemset",), "fraction of transactions holding the set"),
            Port("counts", ("itemset",), "transactions holding the set", dtype="int64"),
            Port("labels", ("item",), "name of each item id", dtype="str"),
            Port("n_transactions", (), "number of transactions", dtype="int64"),
        ),
        params=FREQUENT_ITEMSETS.params,
    ),
    KernelSpec(
        name="association_rules",
        example_from="frequent_itemsets",
        family="mining",
        summary="Association rules A -> C of frequent itemsets with mlxtend's metrics.",
        run="hpcjobs.registry.mining:run_association_rules",
        inputs=(
            Port("indptr", ("itemset_bound",), "frequent_itemsets' indptr", kinds="iu"),
            Port("items", ("itemset_item",), "frequent_itemsets' items", kinds="iu"),
            Port("counts", ("itemset",), "frequent_itemsets' counts", kinds="iu"),
            Port("n_transactions", (), "frequent_itemsets' n_transactions", kinds="iu"),
        ),
        outputs=(
            Port("antecedent_indptr", ("rule_bound",), "CSR offsets of the antecedents",
                 dtype="int64"),
            Port("antecedent_items", ("antecedent_item",), "item ids of the antecedents",
                 dtype="int32"),
            Port("consequent_indptr", ("rule_bound",), "CSR offsets of the consequents",
                 dtype="int64"),
            Port("consequent_items", ("consequent_item",), "item ids of the consequents",
                 dtype="int32"),
            Port("antecedent_support", ("rule",), "support of A"),
            Port("consequent_support", ("rule",), "support of C"),
            Port("support", ("rule",), "support of A and C together"),
            Port("confidence", ("rule",), "support(A+C) / support(A)"),
            Port("lift", ("rule",), "confidence / support(C)"),
            Port("leverage", ("rule",), "support(A+C) - support(A) support(C)"),
            Port("conviction", ("rule",), "(1 - support(C)) / (1 - confidence); inf at 1"),
        ),
        params=ASSOCIATION_RULES.params,
    ),
    KernelSpec(
        name="matrix_profile",
        example={"m": 32}, warm_rows=4096,
        family="mining",
        summary="z-normalised matrix profile and nearest-match index (STOMP, tiled over Dask).",
        run="hpcjobs.registry.mining:run_matrix_profile",
        inputs=(Port("T", ("time",), "1-D time series (NaN/inf windows are never matched)"),),
        outputs=(
            Port("profile", ("window",), "distance of each window to its nearest match"),
            Port("index", ("window",), "start of the nearest match (-1: none)", dtype="int64"),
        ),
        params=MATRIX_PROFILE.params,
    ),
    KernelSpec(
        name="discords",
        example={"m": 32}, example_from="matrix_profile",
        family="mining",
        summary="Top-k discords (anomalous windows) of a matrix profile.",
        run="hpcjobs.registry.mining:run_discords",
        inputs=(Port("profile", ("window",), "a matrix profile"),),
        outputs=(
            Port("index", ("discord",), "window start of each discord", dtype="int64"),
            Port("distance", ("discord",), "its profile value"),
        ),
        params=_PICK_PARAMS,
    ),
    KernelSpec(
        name="motifs",
        example={"m": 32}, example_from="matrix_profile",
        family="mining",
        summary="Top-k motif pairs (closest pairs of windows) of a matrix profile.",
        run="hpcjobs.registry.mining:run_motifs",
        inputs=(Port("profile", ("window",), "a matrix profile"),
                Port("index", ("window",), "its nearest-match index", kinds="iu")),
        outputs=(
            Port("index", ("motif", "pair"), "window starts of each pair", dtype="int64"),
            Port("distance", ("motif",), "their distance"),
        ),
        params=_PICK_PARAMS,
    ),
    KernelSpec(
        name="knn_outliers",
        warm_rows=8192,
        family="mining",
        summary="Distance of each point to its k-th nearest other point (exact).",
        run="hpcjobs.registry.mining:run_knn_outliers",
        inputs=(_X,),
        outputs=(Port("score", ("row",), "distance to the k-th nearest other point"),),
        params=KNN_OUTLIERS.params,
    ),
    KernelSpec(
        name="lof",
        warm_rows=8192,
        family="mining",
        summary="Local outlier factor of each point (exact; ~1 inliers, larger outliers).",
        run="hpcjobs.registry.mining:run_lof",
        inputs=(_X,),
        outputs=(Port("lof", ("row",), "local outlier factor"),),
        params=LOF.params,
    ),
]
