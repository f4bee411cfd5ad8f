"""frequent_itemsets / association_rules against a brute-force reference and mlxtend."""

from __future__ import annotations

from itertools import combinations

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import association_rules, frequent_itemsets

pd = pytest.importorskip("pandas")
fp = pytest.importorskip("mlxtend.frequent_patterns")


def _baskets(n, n_items, avg, seed, *, labels=False):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_items + 1)
    p /= p.sum()
    out = []
    for size in np.maximum(rng.poisson(avg, n), 0):
        basket = rng.choice(n_items, size=int(size), p=p).tolist()  # duplicates kept on purpose
        out.append([f"item{i:02d}" for i in basket] if labels else basket)
    return out


def _csr(baskets):
    indptr = np.zeros(len(baskets) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(b) for b in baskets])
    items = np.fromiter((x for b in baskets for x in b), dtype=np.int32, count=int(indptr[-1]))
    return indptr, items


def _naive(baskets, min_support, max_len=None):
    """Brute force: every combination of frequent single items, counted directly."""
    sets = [frozenset(b) for b in baskets]
    n = len(sets)
    universe = sorted({x for s in sets for x in s})
    out = {}
    for size in range(1, (max_len or len(universe)) + 1):
        found = False
        for combo in combinations(universe, size):
            c = frozenset(combo)
            if any(frozenset(sub) not in out for sub in combinations(combo, size - 1) if sub):
                continue
            count = sum(c <= s for s in sets)
            if count / float(n) >= min_support:
                out[c] = count / float(n)
                found = True
        if not found:
            break
    return out


def _mlxtend(baskets, min_support, algo="fpgrowth", max_len=None):
    from mlxtend.preprocessing import TransactionEncoder

    te = TransactionEncoder()
    df = pd.DataFrame(te.fit(baskets).transform(baskets), columns=te.columns_)
    func = getattr(fp, algo)
    return func(df, min_support=min_support, use_colnames=True, max_len=max_len)


def _as_dict(result):
    return dict(zip(result.itemsets, result.support.tolist(), strict=True))


@pytest.fixture(scope="module")
def baskets():
    return _baskets(800, 30, 6, seed=1)


def test_matches_naive_reference():
    b = _baskets(120, 12, 4, seed=3)
    got = _as_dict(frequent_itemsets(b, 0.05))
    assert got == _naive(b, 0.05)
    assert len(got) > 20


@pytest.mark.parametrize("algo", ["fpgrowth", "apriori"])
@pytest.mark.parametrize("min_support", [0.02, 0.05, 0.2])
def test_identical_to_mlxtend(baskets, algo, min_support):
    ref = _mlxtend(baskets, min_support, algo)
    got = frequent_itemsets(baskets, min_support)
    assert _as_dict(got) == dict(zip(ref.itemsets, ref.support, strict=True))  # supports bit-identical
    assert got.support.dtype == np.float64


def test_max_len_matches_mlxtend(baskets):
    ref = _mlxtend(baskets, 0.02, max_len=2)
    got = frequent_itemsets(baskets, 0.02, max_len=2)
    assert _as_dict(got) == dict(zip(ref.itemsets, ref.support, strict=True))
    assert got.lengths.max() == 2


def test_labels_from_lists_and_csr():
    b = _baskets(300, 15, 5, seed=4, labels=True)
    ref = _mlxtend(b, 0.04)
    got = frequent_itemsets(b, 0.04)
    assert _as_dict(got) == dict(zip(ref.itemsets, ref.support, strict=True))
    # the same data as CSR ids with a labels array
    labels = np.array(sorted({x for t in b for x in t}))
    index = {s: i for i, s in enumerate(labels)}
    indptr, items = _csr([[index[x] for x in t] for t in b])
    csr = frequent_itemsets({"indptr": indptr, "items": items, "labels": labels}, 0.04)
    assert _as_dict(csr) == _as_dict(got)
    assert all(isinstance(x, str) for s in csr.itemsets for x in s)


@pytest.mark.parametrize("n_chunks", [1, 2, 4, 7])
def test_son_chunks_identical(baskets, n_chunks):
    indptr, items = _csr(baskets)
    single = frequent_itemsets({"indptr": indptr, "items": items}, 0.03)
    chunk = -(-indptr.size // n_chunks)
    dist = frequent_itemsets({"indptr": da.from_array(indptr, chunks=chunk),
                              "items": da.from_array(items, chunks=997)}, 0.03)
    assert da.from_array(indptr, chunks=chunk).numblocks[0] == n_chunks
    for field in ("indptr", "items", "counts", "support"):
        np.testing.assert_array_equal(getattr(dist, field), getattr(single, field))
    # chunks taken from ``items`` when indptr is in memory
    dist2 = frequent_itemsets({"indptr": indptr, "items": da.from_array(items, chunks=
                               -(-items.size // n_chunks))}, 0.03)
    np.testing.assert_array_equal(dist2.counts, single.counts)
    np.testing.assert_array_equal(dist2.items, single.items)


def test_one_hot_matrix(baskets):
    from mlxtend.preprocessing import TransactionEncoder

    te = TransactionEncoder().fit(baskets)
    onehot = te.transform(baskets)
    got = frequent_itemsets(onehot, 0.03)  # ids are column numbers
    named = {frozenset(te.columns_[i] for i in s): p for s, p in _as_dict(got).items()}
    assert named == _as_dict(frequent_itemsets(baskets, 0.03))
    with pytest.raises(TypeError, match="boolean one-hot"):
        frequent_itemsets(onehot.astype(float), 0.03)


def test_son_uneven_chunks_catch_locally_rare_sets():
    # an itemset frequent overall but concentrated in one chunk, and one spread thinly
    b = [[0, 1]] * 30 + [[2]] * 70 + [[3, 4]] * 5 + [[5]] * 95
    indptr, items = _csr(b)
    single = _as_dict(frequent_itemsets(b, 0.1))
    for chunks in ((50, 50, 101), (7, 60, 134), (200, 1)):
        got = frequent_itemsets({"indptr": da.from_array(indptr, chunks=(chunks,)),
                                 "items": da.from_array(items)}, 0.1)
        assert _as_dict(got) == single
    assert frozenset({0, 1}) in single and frozenset({3, 4}) not in single


def test_duplicates_empty_baskets_and_threshold_boundary():
    b = [[1, 1, 2], [1], [], [2, 2], [1, 2], [], [3], [], [], []]
    got = _as_dict(frequent_itemsets(b, 0.3))
    assert got == {frozenset({1}): 0.3, frozenset({2}): 0.3}  # 3/10 counts at 0.3 exactly
    assert _as_dict(frequent_itemsets(b, 0.31)) == {}
    assert _as_dict(frequent_itemsets([[], []], 0.5)) == {}
    everywhere = frequent_itemsets([[0, 1], [1, 0, 2], [1, 0]], 1.0)
    assert _as_dict(everywhere) == {frozenset({0}): 1.0, frozenset({1}): 1.0,
                                    frozenset({0, 1}): 1.0}


def test_csr_output_layout(baskets):
    r = frequent_itemsets(baskets, 0.05)
    assert r.indptr.dtype == np.int64 and r.items.dtype == np.int32
    assert r.indptr[0] == 0 and r.indptr[-1] == r.items.size == r.lengths.sum()
    for i in range(len(r)):
        seg = r.items[r.indptr[i]:r.indptr[i + 1]]
        assert np.all(np.diff(seg) > 0)
    assert np.all(np.diff(r.lengths) >= 0)
    np.testing.assert_array_equal(r.support, r.counts / len(baskets))


def _rules_dict(rules):
    cols = ("antecedent_support", "consequent_support", "support", "confidence", "lift",
            "leverage", "conviction")
    if hasattr(rules, "antecedent_indptr"):
        values = zip(*(getattr(rules, c) for c in cols), strict=True)
        keys = zip(rules.antecedents, rules.consequents, strict=True)
    else:
        values = zip(*(rules[c.replace("_", " ")] for c in cols), strict=True)
        keys = zip(rules["antecedents"], rules["consequents"], strict=True)
    return {k: tuple(v) for k, v in zip(keys, values, strict=True)}


@pytest.mark.parametrize("min_confidence", [0.0, 0.3, 0.8])
def test_rules_identical_to_mlxtend(baskets, min_confidence):
    ref_sets = _mlxtend(baskets, 0.02)
    ref = fp.association_rules(ref_sets, len(baskets), metric="confidence",
                               min_threshold=min_confidence)
    got = association_rules(frequent_itemsets(baskets, 0.02), min_confidence)
    mine, theirs = _rules_dict(got), _rules_dict(ref)
    assert mine.keys() == theirs.keys() and len(mine) > 0
    for key, values in mine.items():
        np.testing.assert_allclose(values, theirs[key], rtol=1e-12)


def test_rules_conviction_and_csr():
    fi = frequent_itemsets([[0, 1], [0, 1], [0], [2]], 0.25)
    rules = association_rules(fi, 0.5)
    d = _rules_dict(rules)
    assert d[(frozenset({1}), frozenset({0}))][3] == 1.0
    assert d[(frozenset({1}), frozenset({0}))][6] == np.inf
    assert d[(frozenset({0}), frozenset({1}))][3] == pytest.approx(2 / 3)
    assert rules.antecedent_indptr[-1] == rules.antecedent_items.size
    assert len(rules) == len(rules.antecedents) == rules.confidence.size


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), "0.1", None])
def test_bad_min_support(bad):
    with pytest.raises((ValueError, TypeError), match="'min_support' parameter of "
                       "frequent_itemsets"):
        frequent_itemsets([[0, 1]], bad)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one transaction"):
        frequent_itemsets([], 0.1)
    with pytest.raises(ValueError, match="at least one transaction"):
        frequent_itemsets({"indptr": np.zeros(1, np.int64), "items": np.zeros(0, np.int32)}, 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        frequent_itemsets([[0, -1]], 0.1)
    with pytest.raises(ValueError, match="one per label"):
        frequent_itemsets({"indptr": np.array([0, 2]), "items": np.array([0, 5]),
                           "labels": np.array(["a", "b"])}, 0.1)
    with pytest.raises(ValueError, match="indptr"):
        frequent_itemsets({"indptr": np.array([0, 3, 2]), "items": np.array([0, 1])}, 0.1)
    with pytest.raises(TypeError, match="'transactions'"):
        frequent_itemsets("abc", 0.1)
    with pytest.raises(TypeError, match="'transactions'"):
        frequent_itemsets({"indptr": np.array([0, 1])}, 0.1)
    with pytest.raises(ValueError, match="'max_len'"):
        frequent_itemsets([[0]], 0.1, max_len=0)
    with pytest.raises(TypeError, match="'itemsets' parameter of association_rules"):
        association_rules([frozenset({1})], 0.5)
    with pytest.raises(ValueError, match="'min_confidence'"):
        association_rules(frequent_itemsets([[0]], 0.1), 1.5)


def test_bad_items_in_dask_chunk():
    indptr = da.from_array(np.array([0, 1, 2, 3]), chunks=2)
    items = da.from_array(np.array([0, 1, -4], dtype=np.int32), chunks=2)
    with pytest.raises(ValueError, match="non-negative"):
        frequent_itemsets({"indptr": indptr, "items": items}, 0.1)


def test_job_end_to_end(tmp_path, dask_client):
    """A transactions group in Zarr, then frequent_itemsets -> association_rules in a job."""
    zarr = pytest.importorskip("zarr")
    from hpcjobs.jobspec import load_job
    from hpcjobs.runner import run_job
    from tests.conftest import write_job

    b = _baskets(400, 12, 4, seed=8)
    indptr, items = _csr(b)
    # the layout `hpcjobs ingest` writes for basket files (without labels: ids are the names)
    root = zarr.open_group(str(tmp_path / "in.zarr"), mode="w", zarr_format=3)
    shop = root.create_group("shop", attributes={"hpcjobs_kind": "transactions"})
    shop.create_array("indptr", shape=indptr.shape, dtype=np.int64, chunks=(150,))[...] = indptr
    shop.create_array("items", shape=items.shape, dtype=np.int32, chunks=(300,))[...] = items
    job = load_job(write_job(tmp_path, """
        [input]
        path = "in.zarr"
        [[step]]
        name = "fi"
        kernel = "frequent_itemsets"
        input = "shop"
        params = { min_support = 0.05 }
        [[step]]
        name = "rules"
        kernel = "association_rules"
        params = { min_confidence = 0.3 }
        [step.input]
        indptr = "fi/indptr"
        items = "fi/items"
        counts = "fi/counts"
        n_transactions = "fi/n_transactions"
        [output]
        path = "out.zarr"
    """))
    assert run_job(job, client=dask_client).status == "complete"
    out = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    labels = np.asarray(out["fi/labels"][:], dtype=object)
    fi_indptr, fi_items = out["fi/indptr"][:], out["fi/items"][:]
    got = {frozenset(int(x) for x in labels[fi_items[fi_indptr[i]:fi_indptr[i + 1]]]): s
           for i, s in enumerate(out["fi/support"][:].tolist())}
    ref = _mlxtend(b, 0.05)
    assert got == dict(zip(ref.itemsets, ref.support, strict=True))
    rules = fp.association_rules(ref, len(b), metric="confidence", min_threshold=0.3)
    assert out["rules/confidence"].shape == (len(rules),)
    np.testing.assert_allclose(np.sort(out["rules/lift"][:]), np.sort(rules["lift"].to_numpy()),
                               rtol=1e-12)


@pytest.mark.parametrize("pairs", [False, True])
def test_pair_counts_and_gathered_words_give_the_same_sets(monkeypatch, pairs):
    """A large catalogue at a low support (many frequent items, most of them rare): the
    2-itemset counts first, or not, and the rare items' branches on their own words only,
    give exactly the sets of the brute force, with duplicates in baskets counted once."""
    from hpcjobs.kernels.mining import itemsets

    baskets = _baskets(3_000, 400, 6, 11)
    monkeypatch.setattr(itemsets, "_pairs_pay", lambda *args: pairs)
    indptr, items = _csr(baskets)
    r = frequent_itemsets({"indptr": indptr, "items": items}, 0.004)
    assert (r.lengths == 1).sum() > 100 and r.lengths.max() >= 3
    naive = _naive(baskets, 0.004, max_len=3)
    got = {s: p for s, p in zip(r.itemsets, r.support.tolist(), strict=True) if len(s) <= 3}
    assert got == pytest.approx(naive)


def test_pair_counts_pay_only_with_many_frequent_items():
    from hpcjobs.kernels.mining.itemsets import _pairs_pay

    indptr = np.arange(0, 10 * 50_001, 10)  # 50,000 baskets of 10 items
    dense = np.full(150, 5_000)  # 150 items in 10 % of the baskets each
    rare = np.full(2_000, 40)  # 2,000 items in 40 baskets each
    assert not _pairs_pay(indptr, dense, 782)
    assert _pairs_pay(indptr, rare, 782)
