"""k-means on the workers (``Blocks.run_group``): a worker group whose members swap each
pass's results directly."""

from __future__ import annotations

import pickle
import threading

import dask.array as da
import numpy as np
import pytest

from hpcjobs.kernels import kmeans

distributed = pytest.importorskip("distributed")
datasets = pytest.importorskip("sklearn.datasets")

from hpcjobs.kernels import _worker_group  # noqa: E402  (needs distributed)
from hpcjobs.kernels._worker_group import _group, _pipes  # noqa: E402
from hpcjobs.kernels.clustering import _common  # noqa: E402


def blobs(n, d=3, centers=5, seed=0):
    X, _ = datasets.make_blobs(n, n_features=d, centers=centers, cluster_std=1.0,
                               center_box=(-20, 20), random_state=seed)
    return X


def chunked(X, n_chunks):
    return da.from_array(X, chunks=(-(-len(X) // n_chunks), X.shape[1]))


@pytest.fixture
def group_calls(monkeypatch):
    """How many times the loop ran on the workers."""
    calls = []
    original = _common.Blocks.run_group

    def spy(self, func, *args):
        calls.append(len(self.kept.placement))
        return original(self, func, *args)

    monkeypatch.setattr(_common.Blocks, "run_group", spy)
    return calls


def test_loop_on_workers_relocates_empty_clusters(dask_client, group_calls):
    X = blobs(2000, d=2, centers=3, seed=1)
    C0 = np.vstack([X[:2], [[1e3, 1e3]]])  # the third centroid gets no row at first
    ref = kmeans(X, 3, init=C0, max_iter=6, tol=0)
    r = kmeans(chunked(X, 5), 3, init=C0, max_iter=6, tol=0)
    assert group_calls == [2]  # both workers hold blocks: two members
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)
    np.testing.assert_array_equal(r.labels.compute(), ref.labels)
    assert r.inertia == pytest.approx(ref.inertia, rel=1e-12) and r.n_iter == ref.n_iter


def test_converged_loop_on_workers_stops_where_in_memory_stops(dask_client, group_calls):
    X = blobs(3000, d=4, centers=6, seed=2)
    ref = kmeans(X, 6, init=X[:6], tol=1e-4)
    r = kmeans(chunked(X, 7), 6, init=X[:6], tol=1e-4)
    assert group_calls == [2]
    assert r.n_iter == ref.n_iter and 1 < r.n_iter < 300
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)


@pytest.mark.parametrize("tol", [0.0, 1e-4])  # found by the first pass / the moments pass
def test_non_finite_chunk_stops_every_member(dask_client, tol):
    X = blobs(1200)
    X[1100, 1] = np.nan  # in the last chunk: one member finds it, its peer must stop too
    with pytest.raises(ValueError, match="finite"):
        kmeans(chunked(X, 4), 3, init=X[:3], tol=tol)
    assert kmeans(chunked(X[:1000], 4), 3, init=X[:3], tol=0).n_iter >= 1  # cluster fine


@pytest.mark.parametrize("init", ["random", "k-means++", "k-means||"])
def test_seeding_on_workers_matches_in_memory(dask_client, group_calls, init):
    # the seeding runs on the members too: rows drawn by global index, passes per centroid
    X = blobs(2500, d=3, centers=5, seed=11)
    ref = kmeans(X, 5, init=init, seed=4)
    r = kmeans(chunked(X, 6), 5, init=init, seed=4)
    assert group_calls == [2]
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)
    np.testing.assert_array_equal(r.labels.compute(), ref.labels)
    assert r.n_iter == ref.n_iter


def test_a_generator_moves_on_as_in_memory(dask_client):
    X = blobs(2000, d=2, centers=4, seed=12)
    g_mem, g_group = np.random.default_rng(8), np.random.default_rng(8)
    kmeans(X, 4, seed=g_mem)
    kmeans(chunked(X, 4), 4, seed=g_group)
    assert g_mem.integers(2**62) == g_group.integers(2**62)  # the next call draws alike


def test_two_loops_at_once_do_not_wait_on_each_other(dask_client):
    # 2 workers x 1 thread: each loop's members leave the worker's pool, so neither loop can
    # hold the slot the other's member needs
    X = blobs(2000, d=3, centers=4, seed=5)
    ref = kmeans(X, 4, init=X[:4], max_iter=20, tol=0)
    results, errors = [], []

    def run():
        try:
            results.append(kmeans(chunked(X, 4), 4, init=X[:4], max_iter=20, tol=0))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 2
    for r in results:
        np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)


class _Mailbox:
    def __init__(self):
        self.inbox, self.arrived = {}, threading.Condition()


def test_silent_peer_is_reported_not_waited_on_forever(monkeypatch):
    monkeypatch.setattr(_group, "_MIN_WAIT", 0.2)
    group = _worker_group.Group(_Mailbox(), "g", ["tcp://a:1", "tcp://b:2"], member=0)
    with pytest.raises(_worker_group.MemberLost, match=r"member 1 \(tcp://b:2\) sent nothing"):
        group._receive(0, 1)


def test_failed_peer_error_is_raised_by_the_others():
    box = _Mailbox()
    box.inbox[("g", _group._ABORT, 1)] = pickle.dumps(ValueError("X has NaN"))
    group = _worker_group.Group(box, "g", ["tcp://a:1", "tcp://b:2"], member=0)
    with pytest.raises(ValueError, match="X has NaN"):
        group._receive(3, 1)


def test_one_worker_with_two_threads_runs_its_blocks_side_by_side(group_calls):
    X = blobs(3000, d=3, centers=4, seed=9)
    ref = kmeans(X, 4, init=X[:4], max_iter=15, tol=0)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, client.as_current():
        r = kmeans(chunked(X, 5), 4, init=X[:4], max_iter=15, tol=0)
        labels = r.labels.compute()
    assert group_calls == [1]  # one member: no messages at all
    np.testing.assert_allclose(r.centroids, ref.centroids, rtol=1e-9)
    np.testing.assert_array_equal(labels, ref.labels)


# --------------------------------------------------------------------------- transport


def _swap(group, blocks, offsets, sizes):
    """Allgather parts of the given byte sizes; return what came back and how it was sent."""
    seen = []
    for size in sizes:
        parts = group.allgather(bytes([group.member]) * size)
        seen.append([len(p) == size and p[:1] == bytes([r]) for r, p in enumerate(parts)])
    return seen, dict(group.sent)


def _run_swap(client, sizes):
    workers = sorted(client.scheduler_info()["workers"])
    futures = [client.scatter(np.zeros(1), workers=[w], hash=False) for w in workers]
    placement = {w: [i] for i, w in enumerate(workers)}
    members = _worker_group.run_group(client, placement, futures, [0, 1], _swap, sizes)
    return client.gather(members)


def _private_folder():
    import os
    import tempfile

    base = os.path.join(tempfile.gettempdir(), f"hpcjobs-{os.getuid()}")
    return set(os.listdir(base)) if os.path.isdir(base) else set()


def test_members_on_one_machine_swap_small_parts_through_pipes(dask_client):
    before = _private_folder()
    # 3 handshake rounds over the comms, then 5 small parts and one past PIPE_BUF
    sizes = [100, 1, 2000, 3000, 50, 10_000]
    for seen, sent in _run_swap(dask_client, sizes):
        assert all(all(ok) for ok in seen)  # every member got every part, in member order
        assert sent == {"comms": 3 + 1, "pipe": 5}
    assert _private_folder() == before  # the pipes' names and folders are gone


@pytest.mark.parametrize("why", ["other machines", "no private folder"])
def test_without_pipes_every_part_goes_over_the_comms(dask_client, monkeypatch, why):
    if why == "other machines":  # (both workers live in this process: tell them apart)
        monkeypatch.setattr(_group, "machine_id",
                            lambda: distributed.get_worker().address)
    else:
        monkeypatch.setattr(_pipes, "_private_base", lambda: None)
    for seen, sent in _run_swap(dask_client, [100, 5000, 7]):
        assert all(all(ok) for ok in seen)
        assert sent == {"comms": 3 + 3, "pipe": 0}


def test_a_full_pipe_sends_over_the_comms(tmp_path):
    # a part that does not fit the pipe right now goes the other way, never blocking
    from hpcjobs.kernels._worker_group._pipes import LIMIT, LocalPipes

    reader, writer = LocalPipes("g", 0), LocalPipes("g", 1)
    try:
        assert reader.make_inbound([1])
        writer.open_outbound(1, {0: reader.folder})
        reader.unlink()
        part = b"x" * (LIMIT - 64)
        sent = 0
        while writer.send(0, sent, part):
            sent += 1
            assert sent < 10_000
        assert sent >= 1
        assert not writer.send(0, sent, b"y" * (LIMIT + 1))  # too big for one atomic write
        reader.wait(0.1)
        assert sorted(reader.got) == [(r, 1) for r in range(sent)]
        assert all(p == part for p in reader.got.values())
    finally:
        reader.close()
        writer.close()
