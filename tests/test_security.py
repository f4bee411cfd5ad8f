"""Local clusters on a shared host: TLS with a certificate per cluster, scheduler files only
their owner reads, and a second Unix user who cannot get in."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess

import pytest

from hpcjobs.errors import UserError
from hpcjobs.runtime.local import connect, plan_cluster, start_local_cluster
from hpcjobs.runtime.security import load_connection, write_connection_file
from tests.conftest import start_cluster, stop_cluster

OTHER_USER = "hpcjobs-test-other"


def test_local_clusters_speak_tls_unless_asked_not_to():
    from distributed import Client

    with start_local_cluster(plan_cluster({"workers": 1})) as cluster:
        assert cluster.scheduler_address.startswith("tls://127.0.0.1:")
        with Client(cluster) as client:  # the cluster's own certificate
            assert client.submit(os.getpid).result() != os.getpid()
        with pytest.raises(UserError, match="speaks TLS: connect with its scheduler file"):
            connect(address=cluster.scheduler_address)
    with start_local_cluster(plan_cluster({"workers": 1, "tls": False})) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")


def test_connection_files_are_private_from_the_start(tmp_path):
    from distributed.security import Security

    sec = Security.temporary()
    path = write_connection_file(tmp_path / "scheduler.json", address="tls://127.0.0.1:1",
                                 security=sec, dashboard=None)
    assert path.stat().st_mode & 0o777 == 0o600
    address, loaded = load_connection(path)
    assert address == "tls://127.0.0.1:1" and loaded.tls_client_key == sec.tls_client_key
    assert json.loads(path.read_text())["address"] == address  # a Dask scheduler file too
    assert load_connection(write_connection_file(tmp_path / "plain.json",
                                                 address="tcp://x:1"))[1] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "scheduler.json"]


def test_cluster_command_writes_a_private_certificate_and_refuses_strangers(tmp_path):
    from distributed import Client
    from distributed.security import Security

    sched = tmp_path / "scheduler.json"
    proc = start_cluster(sched)
    try:
        assert sched.stat().st_mode & 0o777 == 0o600
        info = json.loads(sched.read_text())
        assert info["address"].startswith("tls://") and info["tls"]["key"]
        with connect(scheduler_file=str(sched)) as client:  # the owner, through the file
            assert client.submit(sum, [1, 2]).result() == 3
        with pytest.raises(OSError):  # a certificate of its own: refused by the cluster's CA
            Client(info["address"], security=Security.temporary(), timeout=5)
        with pytest.raises((TypeError, OSError)):  # none at all
            Client(info["address"], timeout=5)
    finally:
        out = stop_cluster(proc)
    assert "TLS: only holders of the scheduler file get in" in out
    assert "other users of this host can open it" in out and "ssh -N -L" in out


def test_insecure_cluster_says_what_it_gives_away(tmp_path):
    sched = tmp_path / "scheduler.json"
    out = stop_cluster(start_cluster(sched, "--insecure", "--no-dashboard"))
    assert "warning: --insecure" in out and "run code as you" in out
    assert "dashboard:" not in out


# -- a second Unix user on the same host ---------------------------------------------------------


@pytest.fixture(scope="module")
def other_user():
    """A second account (made as root), the real test of isolation on a shared host."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root to make a second user")
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh",
                        OTHER_USER], check=True, capture_output=True)
    return OTHER_USER


INTRUDER = r"""
import json, socket, ssl, sys
path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    open(path).read()
    print("read the scheduler file")
except PermissionError:
    print("scheduler file: permission denied")
except OSError as exc:
    print("scheduler file:", type(exc).__name__)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"x" * 64)
            data = tls.recv(64)
    print("tls without a certificate:", "answered" if data else "closed")
except (ssl.SSLError, OSError) as exc:
    print("tls without a certificate: refused", type(exc).__name__)
"""


@pytest.fixture
def open_folder():
    """A folder every user can enter (pytest's own tmp folders are private to root), so
    that only the scheduler file's own mode protects it."""
    import tempfile

    folder = tempfile.mkdtemp(prefix="hpcjobs-shared-", dir="/tmp")
    os.chmod(folder, 0o755)
    yield __import__("pathlib").Path(folder)
    shutil.rmtree(folder, ignore_errors=True)


def intrude(user: str, folder, secret, address: str) -> str:
    """What ``user`` gets, with the system's Python, from ``secret`` (a file) and the
    scheduler at ``address``: the intruder script's output."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if system_python is None:
        pytest.skip("needs /usr/bin/python3 for the other user")
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    script = folder / "intruder.py"
    script.write_text(INTRUDER)
    os.chmod(script, 0o644)
    out = subprocess.run(["runuser", "-u", user, "--", system_python, str(script), str(secret),
                          host, port], capture_output=True, text=True, timeout=60)
    return out.stdout + out.stderr


def assert_kept_out(said: str) -> None:
    assert "permission denied" in said, said
    assert "tls without a certificate: refused" in said or \
        "tls without a certificate: closed" in said, said


def test_another_user_of_the_host_cannot_get_in(open_folder, other_user):
    sched = open_folder / "scheduler.json"
    proc = start_cluster(sched)
    try:
        said = intrude(other_user, open_folder, sched, json.loads(sched.read_text())["address"])
    finally:
        stop_cluster(proc)
    assert_kept_out(said)


def test_another_user_cannot_read_a_run_folder(open_folder, other_user):
    from hpcjobs.slurm.runs import new_run

    run = new_run("private", open_folder / "runs")
    (run.path / "secret").write_text("certificate")
    os.chmod(open_folder / "runs", 0o755)  # even where the root is open, the run is not
    said = intrude(other_user, open_folder, run.path / "secret", "tls://127.0.0.1:9")
    assert "scheduler file: permission denied" in said, said
