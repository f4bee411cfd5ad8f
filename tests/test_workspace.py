"""Scratch buffers kept between kernel calls (kernels/_workspace.py)."""

import threading

import numpy as np
import pytest

from hpcjobs.kernels import _workspace
from hpcjobs.kernels._workspace import release_workspaces, workspace


@pytest.fixture(autouse=True)
def empty():
    release_workspaces()
    yield
    release_workspaces()


def test_kept_and_lent_again():
    with workspace("t", (100, 7), np.float32) as a:
        assert a.shape == (100, 7) and a.dtype == np.float32 and a.flags.c_contiguous
        a[:] = 1.5
    with workspace("t", (10, 70), np.float32) as b:  # same size: the same memory
        assert np.shares_memory(a, b) and (b == 1.5).all()
    with workspace("t", (50, 7), np.float64) as c:  # smaller: a part of it
        assert np.shares_memory(a, c) and c.shape == (50, 7)
    with workspace("u", (100, 7), np.float32) as d:  # another name: its own
        assert not np.shares_memory(a, d)
    assert release_workspaces() == 2 * 100 * 7 * 4


def test_larger_request_replaces_the_kept_one():
    with workspace("t", (10,), np.float64) as a:
        pass
    with workspace("t", (1000,), np.float64) as b:
        assert not np.shares_memory(a, b)
    with workspace("t", (1000,), np.float64) as c:
        assert np.shares_memory(b, c)
    assert release_workspaces() == 8000


def test_overlapping_users_get_their_own():
    with workspace("t", (64,), np.float64) as a:
        with workspace("t", (64,), np.float64) as b:  # in use: a fresh one
            assert not np.shares_memory(a, b)
    # across threads too: each caller writes and reads back its own values
    errors = []
    barrier = threading.Barrier(4)

    def use(v):
        with workspace("t", (4096,), np.float64) as buf:
            buf[:] = v
            barrier.wait()
            if not (buf == v).all():
                errors.append(v)

    threads = [threading.Thread(target=use, args=(float(v),)) for v in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_too_large_not_kept(monkeypatch):
    monkeypatch.setattr(_workspace, "KEEP_BYTES", 1000)
    with workspace("t", (200,), np.float64):
        pass
    assert release_workspaces() == 0
    with workspace("t", (100,), np.float64):
        pass
    assert release_workspaces() == 800
