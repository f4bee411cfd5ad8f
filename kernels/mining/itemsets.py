"""``frequent_itemsets`` (Eclat on bitsets, SON over Dask chunks) and ``association_rules``.

Mining is Eclat on vertical bitsets: every frequent item gets one bit per transaction, an
itemset's support is the popcount of the AND of its items' bitsets, and the search is depth
first over equivalence classes (items in ascending support order, so the deep branches start
from rare prefixes and stay small). The top-level branches are independent; they are dealt to
the task's Numba threads (``task_threads()``; the njit code releases the GIL), each with its own buffers.

Distributed, the SON algorithm: each Dask chunk of transactions is mined on its own at the
proportional threshold ``ceil(c * n_j / n)`` (``c`` the global minimum count), which cannot miss
an itemset that is frequent overall; the union of the local results is then counted exactly in
every chunk and the counts summed. The result is identical to the single-machine one for any
chunking.

The minimum count is the smallest integer ``c`` with ``c / n >= min_support`` in floating point,
which is the rule mlxtend applies, so itemsets and supports (``count / n``) are identical to
``mlxtend.frequent_patterns.fpgrowth``/``apriori``. Rules follow
``mlxtend.frequent_patterns.association_rules`` (metric ``confidence``) formula for formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations

import numpy as np

from hpcjobs.kernels._jit import njit, task_threads
from hpcjobs.kernels._validation import (
    InvalidInput,
    InvalidType,
    is_dask,
    message,
)
from hpcjobs.kernels.mining.params import ASSOCIATION_RULES, FREQUENT_ITEMSETS

_FUNC = "frequent_itemsets"
#: the pair counts are kept (``_pair_counts``) up to this many frequent items: 64 MiB of int32
_MAX_PAIR_ROWS = 4096


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class FrequentItemsets:
    """Frequent itemsets as CSR arrays, with their supports.

    ``itemsets`` (list of frozensets of labels, or of item ids when there are no labels) and
    ``support`` (float64) follow the design contract; ``indptr``/``items`` hold the same sets as
    CSR (item ids, ascending within a set), ``counts`` the number of transactions holding each.
    Sets are ordered by length, then lexicographically by item id.
    """

    indptr: np.ndarray
    items: np.ndarray
    counts: np.ndarray
    support: np.ndarray
    n_transactions: int
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @cached_property
    def itemsets(self) -> list[frozenset]:
        return _to_frozensets(self.indptr, self.items, self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


@dataclass(frozen=True)
class AssociationRules:
    """Association rules ``antecedent -> consequent`` with the mlxtend metrics.

    Antecedents and consequents are CSR arrays of item ids (``antecedent_indptr``,
    ``antecedent_items``, ...); ``antecedents``/``consequents`` give them as frozensets of
    labels (or ids). Each metric is a float64 array with one entry per rule.
    """

    antecedent_indptr: np.ndarray
    antecedent_items: np.ndarray
    consequent_indptr: np.ndarray
    consequent_items: np.ndarray
    antecedent_support: np.ndarray
    consequent_support: np.ndarray
    support: np.ndarray
    confidence: np.ndarray
    lift: np.ndarray
    leverage: np.ndarray
    conviction: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.support.shape[0])

    @cached_property
    def antecedents(self) -> list[frozenset]:
        return _to_frozensets(self.antecedent_indptr, self.antecedent_items, self.labels)

    @cached_property
    def consequents(self) -> list[frozenset]:
        return _to_frozensets(self.consequent_indptr, self.consequent_items, self.labels)


def _to_frozensets(indptr, items, labels) -> list[frozenset]:
    values = items.tolist() if labels is None else np.asarray(labels, dtype=object)[items].tolist()
    bounds = indptr.tolist()
    return [frozenset(values[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]


# ---------------------------------------------------------------------------------------------
# chunk level


@njit(inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit
def _and_count(a, b, out, n_words):
    """``out[:n] = a[:n] & b[:n]`` over the first ``n_words`` words; return the set bits."""
    total = np.uint64(0)
    for w in range(n_words):
        x = a[w] & b[w]
        out[w] = x
        total += _popcount(x)
    return np.int64(total)


@njit
def _gather_and(a, b, words, n_words, out):
    """``out[i] = a[words[i]] & b[words[i]]`` for the first ``n_words`` of ``words``."""
    for i in range(n_words):
        w = words[i]
        out[i] = a[w] & b[w]


@njit
def _pair_counts(indptr, items, row_of, n_rows):
    """Transactions holding each pair of frequent items (rows ``i < j``: ``pairs[i, j]``).

    One scan of the baskets, as Borgelt's programs count the 2-itemsets in a triangular
    array: candidate pairs that are not frequent are then never intersected at all."""
    pairs = np.zeros((n_rows, n_rows), dtype=np.int32)
    last = np.full(n_rows, -1, dtype=np.int64)
    buf = np.empty(n_rows, dtype=np.int64)
    base = indptr[0]
    for t in range(indptr.shape[0] - 1):
        m = 0
        for k in range(indptr[t] - base, indptr[t + 1] - base):
            it = items[k]
            if it < row_of.shape[0]:
                r = row_of[it]
                if r >= 0 and last[r] != t:
                    last[r] = t
                    # insertion sort: the rows in ascending order, so no branch below
                    j = m
                    while j > 0 and buf[j - 1] > r:
                        buf[j] = buf[j - 1]
                        j -= 1
                    buf[j] = r
                    m += 1
        for x in range(m - 1):
            row = pairs[buf[x]]
            for y in range(x + 1, m):
                row[buf[y]] += 1
    return pairs


@njit
def _check_items(items, n_items):
    """Index of the first item id outside ``[0, n_items)`` (``n_items < 0``: no upper bound), or -1."""
    for k in range(items.shape[0]):
        it = items[k]
        if it < 0 or (n_items >= 0 and it >= n_items):
            return k
    return -1


@njit
def _item_counts(indptr, items, n_items):
    """Number of transactions holding each item (an item repeated in a basket counts once)."""
    counts = np.zeros(n_items, dtype=np.int64)
    last = np.full(n_items, -1, dtype=np.int64)
    base = indptr[0]
    for t in range(indptr.shape[0] - 1):
        for k in range(indptr[t] - base, indptr[t + 1] - base):
            it = items[k]
            if last[it] != t:
                last[it] = t
                counts[it] += 1
    return counts


@njit
def _build_bits(indptr, items, row_of, n_rows):
    """One bitset row per item with ``row_of[item] >= 0``: bit t set if transaction t holds it."""
    n = indptr.shape[0] - 1
    n_words = max((n + 63) // 64, 1)
    bits = np.zeros((n_rows, n_words), dtype=np.uint64)
    base = indptr[0]
    for t in range(n):
        word = t >> 6
        mask = np.uint64(1) << np.uint64(t & 63)
        for k in range(indptr[t] - base, indptr[t + 1] - base):
            it = items[k]
            if it < row_of.shape[0]:
                r = row_of[it]
                if r >= 0:
                    bits[r, word] |= mask
    return bits


@njit
def _eclat_branches(bits, counts, pairs, branches, min_count, max_len):
    """Depth-first Eclat from the top-level items ``branches`` (rows of ``bits``, in order).

    Item ``b``'s branch holds the frequent itemsets whose first item (in row order) is ``b``.
    Returns the itemsets as CSR over row numbers (``items``, ``lengths``) and their counts.
    The stack of equivalence classes lives in one growable pool of bitset rows.

    Every set in ``b``'s branch is a subset of ``b``'s transactions, so the branch works on
    the words of ``b``'s bitset that are not zero only, gathered once (for a rare item a few
    words instead of n / 64). ``pairs`` (``_pair_counts``, or a 0 x 0 array when it is not
    kept) skips every extension by an item that is not frequent together with the last one.
    """
    n_freq, n_words = bits.shape
    use_pairs = pairs.shape[0] == n_freq
    words = np.empty(n_words, dtype=np.int64)
    out_items = np.empty(1024, dtype=np.int32)
    out_len = np.empty(256, dtype=np.int32)
    out_cnt = np.empty(256, dtype=np.int64)
    n_out_items = 0
    n_sets = 0
    cap = max(2 * n_freq, 16)
    pool = np.empty((cap, n_words), dtype=np.uint64)
    pool_item = np.empty(cap, dtype=np.int32)
    pool_cnt = np.empty(cap, dtype=np.int64)
    depth_cap = n_freq + 2
    lvl_start = np.zeros(depth_cap, dtype=np.int64)
    lvl_end = np.zeros(depth_cap, dtype=np.int64)
    lvl_pos = np.zeros(depth_cap, dtype=np.int64)
    prefix = np.empty(depth_cap, dtype=np.int32)
    for bi in range(branches.shape[0]):
        b = branches[bi]
        n_nz = 0  # the words of b's bitset that are not zero
        for w in range(n_words):
            if bits[b, w] != 0:
                words[n_nz] = w
                n_nz += 1
        gather = 4 * n_nz <= n_words  # else whole rows: contiguous words are faster
        if not gather:
            n_nz = n_words
        prefix[0] = b
        depth = 0
        count = counts[b]
        top = 0
        while True:
            # emit prefix[0 : depth + 1] with its count
            if n_sets == out_len.shape[0]:
                out_len = np.concatenate((out_len, np.empty(n_sets, dtype=np.int32)))
                out_cnt = np.concatenate((out_cnt, np.empty(n_sets, dtype=np.int64)))
            while n_out_items + depth + 1 > out_items.shape[0]:
                out_items = np.concatenate((out_items, np.empty(out_items.shape[0], np.int32)))
            for q in range(depth + 1):
                out_items[n_out_items + q] = prefix[q]
            n_out_items += depth + 1
            out_len[n_sets] = depth + 1
            out_cnt[n_sets] = count
            n_sets += 1
            # extend: the class of the itemset just emitted
            new_start = top
            if depth + 1 < max_len:
                if depth == 0:
                    lo, hi = b + 1, n_freq
                else:
                    p = lvl_pos[depth] - 1
                    lo, hi = p + 1, lvl_end[depth]
                for q in range(lo, hi):
                    if top == cap:
                        cap *= 2
                        grown = np.empty((cap, n_words), dtype=np.uint64)
                        grown[:top] = pool[:top]
                        pool = grown
                        pool_item = np.concatenate((pool_item, np.empty(top, np.int32)))
                        pool_cnt = np.concatenate((pool_cnt, np.empty(top, np.int64)))
                    if depth == 0:
                        item = q
                        if use_pairs and pairs[b, q] < min_count:
                            continue
                        if gather:
                            _gather_and(bits[b], bits[q], words, n_nz, pool[top])
                            c = _and_count(pool[top], pool[top], pool[top], n_nz)
                        else:
                            c = _and_count(bits[b], bits[q], pool[top], n_nz)
                    else:
                        item = pool_item[q]
                        if use_pairs and pairs[pool_item[p], item] < min_count:
                            continue
                        c = _and_count(pool[p], pool[q], pool[top], n_nz)
                    if c >= min_count:
                        pool_item[top] = item
                        pool_cnt[top] = c
                        top += 1
            if top > new_start:
                depth += 1
                lvl_start[depth] = new_start
                lvl_end[depth] = top
                lvl_pos[depth] = new_start
            # next member: pop finished classes
            while depth > 0 and lvl_pos[depth] >= lvl_end[depth]:
                top = lvl_start[depth]
                depth -= 1
            if depth == 0:
                break
            p = lvl_pos[depth]
            lvl_pos[depth] = p + 1
            prefix[depth] = pool_item[p]
            count = pool_cnt[p]
    return out_items[:n_out_items], out_len[:n_sets], out_cnt[:n_sets]


@njit
def _count_sorted(bits, cand_indptr, cand_rows):
    """Transactions holding each candidate; candidates sorted lexicographically (rows of ``bits``).

    The AND of each prefix is kept on a stack, so a candidate sharing a prefix with the one before
    costs only its new items.
    """
    n_cand = cand_indptr.shape[0] - 1
    n_words = bits.shape[1]
    max_len = 1
    for c in range(n_cand):
        max_len = max(max_len, cand_indptr[c + 1] - cand_indptr[c])
    stack = np.empty((max_len, n_words), dtype=np.uint64)
    prev = np.full(max_len, -1, dtype=np.int64)
    prev_len = 0
    counts = np.empty(n_cand, dtype=np.int64)
    for c in range(n_cand):
        s = cand_indptr[c]
        length = cand_indptr[c + 1] - s
        p = 0
        while p < length and p < prev_len and prev[p] == cand_rows[s + p]:
            p += 1
        for q in range(p, length):
            r = cand_rows[s + q]
            prev[q] = r
            if q == 0:
                stack[0, :] = bits[r]
            else:
                for w in range(n_words):
                    stack[q, w] = stack[q - 1, w] & bits[r, w]
        total = np.uint64(0)
        for w in range(n_words):
            total += _popcount(stack[length - 1, w])
        prev_len = length
        counts[c] = np.int64(total)
    return counts


@njit
def _sort_segments(indptr, items):
    for s in range(indptr.shape[0] - 1):
        seg = items[indptr[s]:indptr[s + 1]]
        seg.sort()


# ---------------------------------------------------------------------------------------------
# array level: one chunk


def _pairs_pay(indptr: np.ndarray, row_counts: np.ndarray, n_words: int) -> bool:
    """Whether counting the pairs first (``_pair_counts``) costs less than the intersections
    of the first level it saves. Counting is one increment per pair of items in a basket,
    about 10x the cost of a word of an intersection (measured); each first-level candidate
    pair costs the words of its rarer item's bitset that are not zero (at most one per
    transaction that holds it). It pays with many frequent items: low supports, large
    catalogues."""
    lengths = np.diff(indptr)
    scan = 0.5 * float(np.sum(lengths * lengths))  # (no BLAS dot: its threads cost more here)
    later = np.arange(row_counts.size - 1, -1, -1)  # the candidates after each item
    words = float(np.sum(later * np.minimum(row_counts, n_words)))
    return 10.0 * scan < words


def _mine_chunk(indptr: np.ndarray, items: np.ndarray, min_count: int, max_len: int,
                n_items: int, n_threads: int):
    """Frequent itemsets of one chunk (ids ascending within a set): ``(indptr, items, counts)``."""
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    items = np.ascontiguousarray(items, dtype=np.int32)
    _raise_bad_items(items, n_items)
    size = n_items if n_items >= 0 else (int(items.max()) + 1 if items.size else 0)
    counts = _item_counts(indptr, items, size) if size else np.zeros(0, np.int64)
    freq = np.flatnonzero(counts >= min_count)
    if freq.size == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
    order = freq[np.lexsort((freq, counts[freq]))]  # ascending support, then id
    row_of = np.full(size, -1, dtype=np.int32)
    row_of[order] = np.arange(order.size, dtype=np.int32)
    bits = _build_bits(indptr, items, row_of, order.size)
    row_counts = counts[order]
    if max_len > 1 and order.size <= _MAX_PAIR_ROWS and _pairs_pay(indptr, row_counts,
                                                                    bits.shape[1]):
        pairs = _pair_counts(indptr, items, row_of, order.size)
    else:
        pairs = np.zeros((0, 0), dtype=np.int32)
    n_groups = min(order.size, 4 * n_threads) if n_threads > 1 else 1
    groups = [np.arange(g, order.size, n_groups, dtype=np.int64) for g in range(n_groups)]
    if n_groups == 1:
        parts = [_eclat_branches(bits, row_counts, pairs, groups[0], min_count, max_len)]
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            parts = list(pool.map(
                lambda g: _eclat_branches(bits, row_counts, pairs, g, min_count, max_len),
                groups))
    rows = np.concatenate([p[0] for p in parts])
    lengths = np.concatenate([p[1] for p in parts]).astype(np.int64)
    set_counts = np.concatenate([p[2] for p in parts])
    out_indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_indptr[1:])
    out_items = order[rows].astype(np.int32)
    _sort_segments(out_indptr, out_items)
    return out_indptr, out_items, set_counts


def _raise_bad_items(items: np.ndarray, n_items: int) -> None:
    bad = _check_items(items, n_items) if items.size else -1
    if bad >= 0:
        expected = (f"item ids in [0, {n_items}) (one per label)" if n_items >= 0
                    else "non-negative item ids")
        raise InvalidInput(message("transactions", _FUNC, expected, int(items[bad])))


def _canonical(indptr: np.ndarray, items: np.ndarray, counts: np.ndarray | None = None):
    """Sort sets by (length, items), drop duplicates: returns ``(indptr, items, counts, keep)``."""
    n_sets = indptr.size - 1
    lengths = np.diff(indptr)
    width = int(lengths.max()) if n_sets else 0
    padded = np.full((n_sets, width), -1, dtype=np.int64)
    if n_sets:
        rows = np.repeat(np.arange(n_sets), lengths)
        cols = np.arange(items.size) - np.repeat(indptr[:-1], lengths)
        padded[rows, cols] = items
    keys = [padded[:, j] for j in range(width - 1, -1, -1)] + [lengths]
    order = np.lexsort(keys) if n_sets else np.zeros(0, np.int64)
    padded, lengths = padded[order], lengths[order]
    if n_sets > 1:
        first = np.ones(n_sets, dtype=bool)
        first[1:] = (padded[1:] != padded[:-1]).any(axis=1) | (lengths[1:] != lengths[:-1])
        order, padded, lengths = order[first], padded[first], lengths[first]
    new_indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    new_items = padded[padded >= 0].astype(np.int32) if width else np.zeros(0, np.int32)
    return new_indptr, new_items, (None if counts is None else counts[order]), order


def _lex_rows(indptr: np.ndarray, items: np.ndarray):
    """Order sets lexicographically by item (prefixes first), for prefix sharing in counting."""
    n_sets = indptr.size - 1
    lengths = np.diff(indptr)
    width = int(lengths.max()) if n_sets else 0
    padded = np.full((n_sets, width), -1, dtype=np.int64)
    if n_sets:
        rows = np.repeat(np.arange(n_sets), lengths)
        cols = np.arange(items.size) - np.repeat(indptr[:-1], lengths)
        padded[rows, cols] = items
    return np.lexsort([padded[:, j] for j in range(width - 1, -1, -1)]) if n_sets else \
        np.zeros(0, np.int64)


def _count_chunk(indptr: np.ndarray, items: np.ndarray, cand_indptr: np.ndarray,
                 cand_items: np.ndarray, n_items: int) -> np.ndarray:
    """Exact transaction counts of the candidates (CSR, any order) in one chunk."""
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    items = np.ascontiguousarray(items, dtype=np.int32)
    _raise_bad_items(items, n_items)
    n_cand = cand_indptr.size - 1
    if n_cand == 0:
        return np.zeros(0, np.int64)
    used = np.unique(cand_items)
    row_of = np.full(int(used[-1]) + 1, -1, dtype=np.int32)
    row_of[used] = np.arange(used.size, dtype=np.int32)
    bits = _build_bits(indptr, items, row_of, used.size)
    order = _lex_rows(cand_indptr, cand_items)
    lengths = np.diff(cand_indptr)[order]
    sorted_indptr = np.zeros(n_cand + 1, dtype=np.int64)
    np.cumsum(lengths, out=sorted_indptr[1:])
    starts = cand_indptr[:-1][order]
    idx = np.repeat(starts - sorted_indptr[:-1], lengths) + np.arange(lengths.sum())
    sorted_rows = row_of[cand_items[idx]].astype(np.int64)
    counts_sorted = _count_sorted(bits, sorted_indptr, sorted_rows)
    counts = np.empty(n_cand, dtype=np.int64)
    counts[order] = counts_sorted
    return counts


def _union(parts: list) -> tuple[np.ndarray, np.ndarray]:
    indptrs, items = [], []
    offset = 0
    for p_indptr, p_items, _ in parts:
        indptrs.append(p_indptr[1:] + offset if indptrs else p_indptr + offset)
        offset += int(p_indptr[-1])
        items.append(p_items)
    indptr = np.concatenate(indptrs) if indptrs else np.zeros(1, np.int64)
    cat = np.concatenate(items) if items else np.zeros(0, np.int32)
    new_indptr, new_items, _, _ = _canonical(indptr, cat)
    return new_indptr, new_items


def _sum_counts(parts: list) -> np.ndarray:
    return np.sum(parts, axis=0)


# ---------------------------------------------------------------------------------------------
# array level: public


def _min_count(min_support: float, n: int) -> int:
    """Smallest count ``c`` with ``c / n >= min_support`` in float64 (mlxtend's test)."""
    c = max(math.ceil(min_support * n), 1)
    while c > 1 and (c - 1) / float(n) >= min_support:
        c -= 1
    while c / float(n) < min_support:
        c += 1
    return c


def _from_lists(transactions) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    baskets = []
    for t in transactions:
        if isinstance(t, str | bytes) or not hasattr(t, "__iter__"):
            raise InvalidType(message("transactions", _FUNC, "a list of item lists (or CSR "
                                      "arrays 'indptr' and 'items')", transactions))
        baskets.append(list(t))
    flat = [x for b in baskets for x in b]
    lengths = np.fromiter((len(b) for b in baskets), dtype=np.int64, count=len(baskets))
    indptr = np.zeros(len(baskets) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    ints = all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in flat)
    if ints:
        items = np.asarray(flat, dtype=np.int64)
        if items.size and items.min() < 0:
            raise InvalidInput(message("transactions", _FUNC, "non-negative item ids",
                                       int(items.min())))
        if items.size and items.max() > np.iinfo(np.int32).max:
            raise InvalidInput(message("transactions", _FUNC, "item ids below 2**31",
                                       int(items.max())))
        return indptr, items.astype(np.int32), None
    try:
        labels = sorted(set(flat))
    except TypeError:
        labels = list(dict.fromkeys(flat))
    index = {label: i for i, label in enumerate(labels)}
    items = np.fromiter((index[x] for x in flat), dtype=np.int32, count=len(flat))
    return indptr, items, np.asarray(labels, dtype=object)


def _as_csr(transactions):
    """``(indptr, items, labels)``; arrays may be Dask arrays."""
    if isinstance(transactions, Mapping):
        get = transactions.get
    elif hasattr(transactions, "indptr") and hasattr(transactions, "items") and \
            not isinstance(transactions, Mapping):
        def get(key, default=None):
            return getattr(transactions, key, default)
    elif isinstance(transactions, np.ndarray) and transactions.ndim == 2:
        if transactions.dtype != np.bool_:
            raise InvalidType(message("transactions", _FUNC, "a boolean one-hot matrix "
                                      "(transactions x items) when given as a 2-D array",
                                      transactions, "Use X.astype(bool) for 0/1 data."))
        rows, cols = np.nonzero(transactions)
        indptr = np.zeros(transactions.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=transactions.shape[0]), out=indptr[1:])
        return indptr, cols.astype(np.int32), None
    elif isinstance(transactions, Sequence | np.ndarray) and not isinstance(transactions, str):
        return _from_lists(transactions)
    else:
        raise InvalidType(message("transactions", _FUNC, "CSR arrays {'indptr', 'items', "
                                  "'labels'} or a list of item lists", transactions))
    indptr, items, labels = get("indptr"), get("items"), get("labels", None)
    for name, arr in (("indptr", indptr), ("items", items)):
        if arr is None:
            raise InvalidType(message("transactions", _FUNC, "CSR arrays with keys 'indptr' and "
                                      f"'items' ('{name}' is missing)", transactions))
    if not is_dask(indptr):
        indptr = np.asarray(indptr)
    if not is_dask(items):
        items = np.asarray(items)
    for name, arr in (("indptr", indptr), ("items", items)):
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise InvalidType(message("transactions", _FUNC, f"a 1-D integer '{name}' array", arr))
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise InvalidInput(message("transactions", _FUNC, "1-D 'labels'", labels))
    return indptr, items, labels


@FREQUENT_ITEMSETS
def frequent_itemsets(transactions, min_support: float, *,
                      max_len: int | None = None) -> FrequentItemsets:
    """Itemsets held by at least ``min_support`` of the transactions (Eclat; SON over Dask).

    Parameters
    ----------
    transactions : mapping or list of lists
        CSR arrays ``{"indptr": int64 (n+1,), "items": int32, "labels": str (optional)}``, NumPy
        or Dask (as ``hpcjobs ingest`` writes baskets), a list of item lists (ints are item
        ids; any other hashable items become sorted labels), or a 2-D boolean one-hot array
        (column j is item j, as mlxtend's DataFrame). Dask chunks of ``indptr`` (or else of
        ``items``) are the SON chunks.
    min_support : float in (0, 1]
        Minimum fraction of transactions holding an itemset.
    max_len : int, optional
        Longest itemset to report.

    Returns
    -------
    FrequentItemsets
        ``.itemsets`` (frozensets of labels or ids) and ``.support``, plus CSR arrays and counts.

    Examples
    --------
    >>> r = frequent_itemsets([["milk", "bread"], ["milk"], ["bread", "eggs"]], 0.5)
    >>> sorted((sorted(s), p) for s, p in zip(r.itemsets, r.support.tolist()))
    [(['bread'], 0.6666666666666666), (['milk'], 0.6666666666666666)]
    """
    indptr, items, labels = _as_csr(transactions)
    n_items = -1 if labels is None else int(labels.shape[0])
    transaction_bounds = None
    if is_dask(indptr):
        sizes = np.asarray(indptr.chunks[0], dtype=np.int64)
        indptr = np.asarray(indptr.compute())
        transaction_bounds = np.cumsum(np.concatenate(([0], sizes)))
    n = int(indptr.shape[0]) - 1
    if n < 1:
        raise InvalidInput(message("transactions", _FUNC, "at least one transaction",
                                   transactions if not isinstance(transactions, Mapping)
                                   else "no transactions"))
    n_items_total = int(items.shape[0])
    if indptr[0] != 0 or indptr[-1] != n_items_total or np.any(np.diff(indptr) < 0):
        raise InvalidInput(message("transactions", _FUNC, "a CSR 'indptr' rising from 0 to "
                                   f"len(items) = {n_items_total}", indptr))
    min_count = _min_count(min_support, n)
    length_cap = np.iinfo(np.int32).max if max_len is None else max_len
    n_threads = task_threads()
    if is_dask(items) or transaction_bounds is not None:
        if transaction_bounds is None:
            item_bounds = np.cumsum((0,) + items.chunks[0])
            transaction_bounds = np.searchsorted(indptr, item_bounds, side="left")
        bounds = np.unique(np.clip(transaction_bounds, 0, n))
        if bounds[0] != 0:
            bounds = np.concatenate(([0], bounds))
        if bounds[-1] != n:
            bounds = np.concatenate((bounds, [n]))
        out_indptr, out_items, counts = _son(indptr, items, bounds, min_count, length_cap,
                                             n_items, n_threads)
    else:
        items = np.asarray(items)
        out_indptr, out_items, counts = _mine_chunk(indptr, items, min_count, length_cap,
                                                    n_items, n_threads)
        out_indptr, out_items, counts, _ = _canonical(out_indptr, out_items, counts)
    support = counts / float(n)
    return FrequentItemsets(indptr=out_indptr, items=out_items, counts=counts.astype(np.int64),
                            support=support, n_transactions=n, labels=labels)


def _son(indptr, items, bounds, min_count, max_len, n_items, n_threads):
    """SON over the transaction chunks ``bounds``: local mining, union, exact global counts."""
    import dask

    n = int(indptr.shape[0]) - 1
    mined, slices, local_indptrs = [], [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        a, b = int(a), int(b)
        lo, hi = int(indptr[a]), int(indptr[b])
        local = indptr[a:b + 1] - lo
        part = items[lo:hi]
        n_j = b - a
        local_min = max(-(-(min_count * n_j) // n), 1)  # ceil(c * n_j / n)
        mined.append(dask.delayed(_mine_chunk, pure=True)(local, part, local_min, max_len,
                                                          n_items, n_threads))
        slices.append(part)
        local_indptrs.append(local)
    candidates = dask.delayed(_union, pure=True)(mined)
    cand_indptr, cand_items = candidates[0], candidates[1]
    counted = [dask.delayed(_count_chunk, pure=True)(ip, part, cand_indptr, cand_items, n_items)
               for ip, part in zip(local_indptrs, slices, strict=True)]
    while len(counted) > 1:
        counted = [dask.delayed(_sum_counts, pure=True)(counted[i:i + 8])
                   for i in range(0, len(counted), 8)]
    (c_indptr, c_items), counts = dask.compute(candidates, counted[0])
    keep = counts >= min_count
    lengths = np.diff(c_indptr)[keep]
    out_indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_indptr[1:])
    item_keep = np.repeat(keep, np.diff(c_indptr))
    return out_indptr, c_items[item_keep], counts[keep]


# ---------------------------------------------------------------------------------------------
# association rules


@ASSOCIATION_RULES
def association_rules(itemsets: FrequentItemsets, min_confidence: float = 0.8) -> AssociationRules:
    """Rules ``A -> C`` from frequent itemsets with confidence at least ``min_confidence``.

    For every frequent itemset ``S`` of two items or more and every non-empty proper subset
    ``A`` of it, the rule ``A -> S \\ A`` is kept if ``support(S) / support(A) >=
    min_confidence``. Metrics as in ``mlxtend.frequent_patterns.association_rules``: support,
    confidence, lift, leverage and conviction (``inf`` when confidence is 1).

    Parameters
    ----------
    itemsets : FrequentItemsets
        The result of :func:`frequent_itemsets`.
    min_confidence : float in [0, 1] (default 0.8)

    Returns
    -------
    AssociationRules

    Examples
    --------
    >>> fi = frequent_itemsets([[0, 1], [0, 1], [0], [2]], 0.5)
    >>> r = association_rules(fi, 0.9)
    >>> r.antecedents, r.consequents, r.confidence
    ([frozenset({1})], [frozenset({0})], array([1.]))
    """
    func = "association_rules"
    if not isinstance(itemsets, FrequentItemsets):
        raise InvalidType(message("itemsets", func, "the result of frequent_itemsets", itemsets))
    n = float(itemsets.n_transactions)
    indptr, items, support = itemsets.indptr, itemsets.items, itemsets.support
    bounds = indptr.tolist()
    sets = [tuple(items[bounds[i]:bounds[i + 1]].tolist()) for i in range(len(bounds) - 1)]
    lookup = dict(zip(sets, support.tolist(), strict=True))
    ante, cons, s_a, s_c, s_ac = [], [], [], [], []
    for key, s_ab in zip(sets, support.tolist(), strict=True):
        size = len(key)
        if size < 2:
            continue
        for r in range(size - 1, 0, -1):
            for a in combinations(key, r):
                sa = lookup[a]
                conf = (s_ab * n) / (sa * n)
                if conf >= min_confidence:
                    c = tuple(x for x in key if x not in a)
                    ante.append(a)
                    cons.append(c)
                    s_a.append(sa)
                    s_c.append(lookup[c])
                    s_ac.append(s_ab)
    s_a_arr = np.asarray(s_a, dtype=np.float64)
    s_c_arr = np.asarray(s_c, dtype=np.float64)
    s_ac_arr = np.asarray(s_ac, dtype=np.float64)
    confidence = (s_ac_arr * n) / (s_a_arr * n)
    conviction = np.full(confidence.shape, np.inf)
    below = confidence < 1.0
    conviction[below] = (1.0 - s_c_arr[below]) / (1.0 - confidence[below])
    a_indptr, a_items = _tuples_to_csr(ante)
    c_indptr, c_items = _tuples_to_csr(cons)
    return AssociationRules(
        antecedent_indptr=a_indptr, antecedent_items=a_items,
        consequent_indptr=c_indptr, consequent_items=c_items,
        antecedent_support=s_a_arr, consequent_support=s_c_arr, support=s_ac_arr,
        confidence=confidence, lift=confidence / s_c_arr,
        leverage=s_ac_arr - s_a_arr * s_c_arr, conviction=conviction, labels=itemsets.labels)


def _tuples_to_csr(tuples: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(t) for t in tuples), dtype=np.int64, count=len(tuples))
    indptr = np.zeros(len(tuples) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.fromiter((x for t in tuples for x in t), dtype=np.int32, count=int(indptr[-1]))
    return indptr, flat
