"""Connecting to an interactive cluster, without Slurm: which runs may be connected to, what a
cluster that is not up says, and the dashboard's link and tunnel."""

from __future__ import annotations

import pytest

from hpcjobs.errors import UserError
from hpcjobs.slurm.runs import new_run

INFO = {"address": "tls://10.0.0.5:4000", "dashboard_port": 8788,
        "dashboard_host": "127.0.0.1", "node": "node7", "end_time": None}


def test_dashboard_link_honours_dask_config_and_names_the_tunnel():
    import dask

    from hpcjobs.cli.cluster import dashboard_lines
    from hpcjobs.slurm.connect import dashboard_link

    assert dashboard_link(INFO) == "http://localhost:8788/status"
    lines = dashboard_lines(INFO)
    assert "ssh -N -L 8788:127.0.0.1:8788 node7" in lines[1]
    assert "-J " in lines[2] and lines[2].endswith(" node7")
    # jupyter-server-proxy: the dashboard listens on the node's address, the link is the hub's
    proxied = {**INFO, "dashboard_host": "0.0.0.0"}
    with dask.config.set({"distributed.dashboard.link": "/user/me/proxy/{host}:{port}/status"}):
        assert dashboard_link(proxied) == "/user/me/proxy/node7:8788/status"
        assert dashboard_lines(proxied) == ["dashboard    /user/me/proxy/node7:8788/status"]
    assert dashboard_link({**INFO, "dashboard_port": None}) is None


def test_connect_refuses_batch_runs_and_says_when_a_cluster_is_not_up(tmp_path, monkeypatch):
    import hpcjobs
    from hpcjobs.slurm import connect as connect_mod

    monkeypatch.setenv("HPCJOBS_RUNS", str(tmp_path))
    batch = new_run("batch")
    batch.update_state(job_id="11")
    with pytest.raises(UserError, match="is a batch job, not an interactive cluster"):
        hpcjobs.connect(batch.run_id)
    cluster = new_run("cluster")
    cluster.update_state(job_id="12", kind="cluster")
    monkeypatch.setattr(connect_mod, "_not_up", lambda r: UserError(f"{r.run_id} is not up"))
    with pytest.raises(UserError, match="is not up"):
        hpcjobs.connect("12")  # by Slurm job id
    with pytest.raises(UserError, match="no run or Slurm job id"):
        hpcjobs.connect("nosuch")
