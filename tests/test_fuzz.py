"""Seeded fuzzing of the CLI (issue 14, item 4): bad input anywhere gets exit 2 and one line.

Mutated job files go through ``hpcjobs validate`` and, where they validate, ``hpcjobs run`` (on
the shared in-process cluster, on a few hundred rows); mutated data files through ``hpcjobs
ingest``; inputs holding NaN or inf through every kernel, against the table in README.md
("NaN and inf"). Every case must end with exit 0 or 2, never 1 and never a traceback; exit 2
must say what was wrong in one line (``Error: ...``, no Python exception names) and leave
nothing behind: no output, no ingest destination, no temporary sibling, an untouched input.

Deterministic: every mutation comes from ``numpy.random.default_rng(SEED)``; a failing case is
named by its label (base, mutation, index), so it reproduces.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hpcjobs import registry
from hpcjobs.cli import cli
from tests.conftest import make_input

pytestmark = pytest.mark.slow

SEED = 20_140_4
ROOT = Path(__file__).resolve().parent.parent
N = 300  # rows of every input

#: a Python exception's name in a message means an exception escaped unexplained
EXCEPTION_NAME = re.compile(r"\b(?:[A-Z]\w*(?:Error|Exception)|Arrow[A-Z]\w*)\b")
#: lines that may precede the one error line: click's usage hint, and `run`'s progress log
USAGE_LINES = re.compile(r"^(Usage: |Try '|$)")


# ----------------------------------------------------------------------------- the checks


def check(result, *, kind: str, label: str, written: list[Path], before: dict) -> list[str]:
    """The problems of one case (empty when it behaved): exit 0 or 2, no traceback, one
    error line on exit 2 and nothing written then (``before``: the watched folders' listing
    beforehand, see :func:`listing`)."""
    out = result.output
    problems = []
    if result.exit_code not in (0, 2):
        exc = result.exception
        what = f"{type(exc).__name__}: {exc}" if exc is not None else out.strip()[-300:]
        return [f"{label}: exit {result.exit_code}: {what}"[:400]]
    if "Traceback" in out:
        problems.append("a traceback in the output")
    if result.exit_code == 2:
        lines = out.rstrip("\n").splitlines()
        errors = [i for i, line in enumerate(lines) if line.startswith("Error: ")]
        if len(errors) != 1 or errors[0] != len(lines) - 1:
            problems.append(f"not one error line at the end: {out[-400:]!r}")
        elif kind != "run" and not all(USAGE_LINES.match(line) for line in lines[:-1]):
            problems.append(f"more than the error line: {out[-400:]!r}")
        else:
            message = lines[-1][len("Error: "):]
            if EXCEPTION_NAME.search(message):
                problems.append(f"an exception's name in the message: {message[:300]!r}")
            if len(message) < 15:
                problems.append(f"a message that says little: {message!r}")
        for path in written:
            if path.exists():
                problems.append(f"{path.name} exists after exit 2")
        after = listing(*before)
        if after != before:
            new = {k: sorted(set(after[k]) ^ set(before[k])) for k in before
                   if after[k] != before[k]}
            problems.append(f"files changed after exit 2: {new}")
    return [f"{label}: {p}" for p in problems]


def listing(*folders: Path) -> dict:
    """Every file and folder under ``folders`` (recursively), for 'nothing written' checks."""
    return {f: sorted(str(p.relative_to(f)) for p in f.rglob("*")) for f in folders}


def stamp(folder: Path) -> list:
    """Every file under ``folder`` with its size and modification time: what 'the input
    was not written' compares."""
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file())


def invoke(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def report(failures: list[str], cases: int) -> None:
    assert not failures, (f"{len(failures)} of {cases} cases misbehaved:\n"
                          + "\n".join(failures[:60]))


# ----------------------------------------------------------------------------- TOML out


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def dumps(data: dict) -> str:
    """A job dict as TOML (tables and arrays of tables as sections, the rest inline)."""
    lines = []
    for k, v in data.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v and
                                            all(isinstance(x, dict) for x in v)):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_key(k)}]")
            lines += [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for table in v:
                lines.append(f"\n[[{_key(k)}]]")
                lines += [f"{_key(a)} = {_value(b)}" for a, b in table.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the data


def _series(rng) -> np.ndarray:
    return np.sin(np.arange(N) / 7.0) + 0.1 * rng.normal(size=N)


def _with(a: np.ndarray, value: float) -> np.ndarray:
    b = a.astype(np.float64, copy=True)
    b.flat[[5, 17, 150, b.size - 7]] = value  # inside: minmax_lttb keeps both ends
    return b


def make_world(folder: Path) -> Path:
    """``folder/in.zarr``: X (300 x 3), W (300 x 100), t (300), r (32 x 32), p (a profile),
    idx (ints), u (sorted x), words (strings), tx (transactions), and ``<name>nan`` /
    ``<name>inf`` variants."""
    import zarr

    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(N, 3))
    t = _series(rng)
    r = rng.random((32, 32)) * 10
    p = np.abs(rng.normal(size=N)) + 1
    arrays = {"idx": (rng.integers(0, N - 10, N), (100,)), "u": (np.arange(N) * 0.5, (100,)),
              "W": (rng.normal(size=(N, 100)), (100, 100)),
              "words": (np.array(["a", "b"]), (2,))}
    for name, a, chunks in (("X", X, (100, 3)), ("t", t, (100,)), ("r", r, (16, 16)),
                            ("p", p, (100,))):
        arrays[name] = (a, chunks)
        arrays[name + "nan"] = (_with(a, np.nan), chunks)
        arrays[name + "inf"] = (_with(a, np.inf), chunks)
    path = make_input(folder / "in.zarr", arrays)
    g = zarr.open_group(str(path / "tx"), mode="w", zarr_format=3,
                        attributes={"hpcjobs_kind": "transactions"})
    items = rng.integers(0, 6, size=(N, 3))
    indptr = np.arange(0, 3 * N + 1, 3, dtype=np.int64)
    for name, data in (("indptr", indptr), ("items", items.ravel().astype(np.int32))):
        a = g.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(256,))
        a[...] = data
    labels = g.create_array("labels", shape=(6,), dtype=str, chunks=(6,))
    labels[...] = np.array(list("abcdef"))
    return path


# ----------------------------------------------------------------------------- job files


def _step(kernel: str, input, name: str | None = None, **params) -> dict:
    step = {"kernel": kernel, "input": input}
    if name:
        step = {"name": name, **step}
    if params:
        step["params"] = params
    return step


#: valid jobs that together run every kernel; the fuzzer mutates them
BASES = {
    "stats": [_step("describe", "X", bins=16),
              _step("aggregate2d", {"x": "X[:, 0]", "y": "X[:, 1]"}, "agg", shape=[16, 16]),
              _step("standardize", "X[:, 0:2]", "z"),
              _step("describe", "z/Z", "zstats", range=[-3.0, 3.0])],
    "clusters": [_step("kmeans", "X", "km", n_clusters=3, seed=0),
                 _step("minibatch_kmeans", "X", "mb", n_clusters=2, batch_size=64, seed=1),
                 _step("dbscan", "X[:, 0:2]", "db", eps=0.5, min_samples=4)],
    "series": [_step("lttb", "t", n_out=20),
               _step("minmax", {"y": "t"}, n_out=20),
               _step("m4", {"y": "t", "x": "u"}, "m4", n_out=20),
               _step("minmax_lttb", "t", n_out=30, minmax_ratio=3)],
    "profile": [_step("matrix_profile", "t", "mp", m=8),
                _step("discords", "mp/profile", m=8, k=2),
                _step("motifs", {"profile": "mp/profile", "index": "mp/index"}, m=8)],
    "raster": [_step("aggregate2d", {"x": "X[:, 0]", "y": "X[:, 1]", "values": "X[:, 2]"},
                     "agg", shape=[32, 32], agg="mean", range=[[-3, 3], [-3, 3]]),
               _step("shade", "agg/raster", how="log"),
               _step("pyramid", "agg/raster", levels=3, method="max")],
    "points": [_step("knn_outliers", "X", k=3), _step("lof", "X", k=5),
               _step("pca", "X", n_components=2)],
    "baskets": [_step("frequent_itemsets", "tx", "fi", min_support=0.1, max_len=3),
                _step("association_rules", {"indptr": "fi/indptr", "items": "fi/items",
                                            "counts": "fi/counts",
                                            "n_transactions": "fi/n_transactions"},
                      min_confidence=0.5)],
}


def base_job(name: str, out: str) -> dict:
    return {"name": f"fuzz-{name}", "input": {"path": "in.zarr"},
            "step": [dict(s) for s in BASES[name]], "output": {"path": out},
            "cluster": {"workers": 1}}


NAN, INF = float("nan"), float("inf")
#: values for any key: wrong types, extremes, non-finite numbers
VALUES = ["abc", "", True, False, [], [1, 2, 3], {}, {"a": 1}, -1, 0, 1, 2, 3, 10**6, 10**9,
          10**12, 2**63 - 1, -(2**63), 10**30, 1e12, 1e-300, 0.5, -0.5, NAN, INF, -INF,
          [1e12, 1], [10**6, 10**6], [NAN, 1.0], [INF, -INF], [[0, 1], [0, 1]],
          [[1, 0], [0, 1]], [0, 0, 0, 0], "k-means++", "count_cat", [[NAN]], "\u00e9\u4e2d",
          "x" * 300, [[1.0, 2.0, 3.0]], [[1.0, 2.0], [3.0]]]
#: absurd sizes, per parameter (the ones that size what a kernel allocates)
ABSURD = {"bins": [10**9, 10**12, 2**63 - 1], "shape": [[1e12, 1], [10**6, 10**6],
                                                         [10**5, 10**5], [1, 10**12]],
          "n_out": [10**9, 10**12], "n_clusters": [10**9, 10**12], "levels": [10**9],
          "k": [10**9, 10**12], "m": [10**9], "tile": [10**9, 10**12],
          "batch_size": [10**12], "n_components": [10**6, 10**9],
          "n_categories": [10**9, 10**6], "minmax_ratio": [10**9, 10**12],
          "max_len": [10**9], "exclusion_zone": [10**12], "min_samples": [10**12]}
#: parameters that count iterations: a huge valid value is a long run, not bad input
ITERATIONS = {"max_iter", "init_rounds", "max_no_improvement"}
REFS = ["X[:, 99]", "X[999:]", "X[:, :, 0]", "X[0]", "X[0, 0]", "nope", "km/nope",
        "nostep/out", "../X", "X[::0]", "X[::-1]", "X[1e3]", "X[:, -1]", "X[-5000:]", "X[a]",
        "", "/", "X[", "X]", "X[:,0][0]", "words", "tx", "idx", "X[10:5]", "X[5:5]",
        "X[:, 0:0]", "X[:, 1:0]", "X[0:1]", "r", "t[0:2]", "p", "X[:, 0]", "idx[0]",
        "X[99999999999999999999]", "X[:, 2::5]", "in.zarr", "X/../X", "X\u00e9", 42, ["X"],
        {"X": "X"}, "zarr.json", ".", "X[0:300:7]"]
CLUSTER = [("workers", 0), ("workers", -1), ("workers", 10**6), ("workers", "2"),
           ("workers", 1.5), ("threads_per_worker", 10**9), ("numba_threads", 0),
           ("memory_limit", "abc"), ("memory_limit", "-1GB"), ("memory_limit", -5),
           ("memory_limit", 0), ("memory_limit", "1e30TB"), ("memory_limit", 1.5),
           ("processes", "yes"), ("dashboard_address", 5), ("dashboard_address", ":::"),
           ("dashboard_address", "host:notaport"), ("dashboard_address", ""), ("tls", False)]
PATHS = ["in.zarr", "in.zarr/out.zarr", ".", "", "/", "in.zarr/X/zarr.json/x",
         "/proc/fuzz.zarr", "nofolder/deeper/out.zarr", "out\u00e9.zarr", "x" * 300,
         "in.zarr/X", "job.toml"]
NON_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"caf\xe9", b"\x80\x80", b"\xed\xa0\x80"]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _random_step(rng, job: dict) -> dict:
    steps = [s for s in job.get("step", []) if isinstance(s, dict)]
    return _pick(rng, steps)


def mutate_job(rng, job: dict, text: str) -> tuple[str, bytes]:
    """One mutation of ``job`` (whose TOML is ``text``): its name and the new file's bytes."""
    op = _pick(rng, ["flip", "truncate", "delete_line", "duplicate_line", "swap_lines",
                     "non_utf8", "param", "param", "param", "absurd", "absurd", "unknown_key",
                     "ref", "ref", "drop_key", "steps", "table_type", "cluster", "path",
                     "kernel"])
    raw = text.encode()
    if op == "flip":
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            b[i] ^= int(rng.integers(1, 256))
        return op, bytes(b)
    if op == "truncate":
        return op, raw[:int(rng.integers(len(raw)))]
    lines = raw.split(b"\n")
    if op in ("delete_line", "duplicate_line", "swap_lines"):
        i, j = (int(x) for x in rng.integers(len(lines), size=2))
        if op == "delete_line":
            del lines[i]
        elif op == "duplicate_line":
            lines.insert(i, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return op, b"\n".join(lines)
    if op == "non_utf8":
        i = int(rng.integers(len(raw) + 1))
        return op, raw[:i] + _pick(rng, NON_UTF8) + raw[i:]

    job = json.loads(json.dumps(job))  # a deep copy
    step = _random_step(rng, job)
    spec = registry.get(step["kernel"])
    if op == "param":
        names = [p.name for p in spec.params] or ["bins"]
        name = _pick(rng, names)
        value = _pick(rng, VALUES)
        if name in ITERATIONS and isinstance(value, int) and not isinstance(value, bool) \
                and value > 1000:
            value = -value
        step.setdefault("params", {})[name] = value
        op = f"param {name}={value!r}"[:80]
    elif op == "absurd":
        names = [p.name for p in spec.params if p.name in ABSURD]
        if not names:
            step = next(s for s in job["step"] if registry.get(s["kernel"]).params)
            spec = registry.get(step["kernel"])
            names = [p.name for p in spec.params if p.name in ABSURD] or ["bins"]
        name = _pick(rng, names)
        step.setdefault("params", {})[name] = _pick(rng, ABSURD[name])
        if name == "n_categories":
            step["params"]["agg"] = "count_cat"
            step["input"] = {"x": "X[:, 0]", "y": "X[:, 1]", "values": "idx"}
        op = f"absurd {name}={step['params'][name]!r}"
    elif op == "unknown_key":
        where = _pick(rng, ["top", "step", "params", "input", "output", "cluster"])
        if where == "top":
            job["nonsense"] = 1
        elif where == "step":
            step["nonsense"] = 1
        elif where == "params":
            step.setdefault("params", {})["nonsense"] = 1
        elif where == "input":
            step["input"] = ({**step["input"], "nonsense": "X"} if isinstance(
                step["input"], dict) else {"nonsense": step["input"]})
        else:
            job[where]["nonsense"] = 1
        op = f"unknown key in {where}"
    elif op == "ref":
        ref = _pick(rng, REFS)
        if isinstance(step["input"], dict):
            port = _pick(rng, sorted(step["input"]))
            step["input"][port] = ref
        else:
            step["input"] = ref
        op = f"ref {ref!r}"
    elif op == "drop_key":
        where = _pick(rng, ["name", "input", "output", "step", "kernel", "step.input",
                            "params", "param", "input.path", "output.path"])
        if where == "kernel":
            step.pop("kernel")
        elif where == "step.input":
            step.pop("input")
        elif where == "param":
            if step.get("params"):
                step["params"].pop(_pick(rng, sorted(step["params"])))
        elif where == "params":
            step.pop("params", None)
        elif "." in where:
            job[where.split(".")[0]].pop("path")
        else:
            job.pop(where, None)
        op = f"drop {where}"
    elif op == "steps":
        how = _pick(rng, ["duplicate", "delete_first", "reverse", "empty", "rename"])
        if how == "duplicate":
            job["step"].append(dict(step))
        elif how == "delete_first":
            job["step"] = job["step"][1:]
        elif how == "reverse":
            job["step"] = job["step"][::-1]
        elif how == "empty":
            job["step"] = []
        else:
            step["name"] = _pick(rng, ["a b", "../x", "", "x/y", "-x", "n" * 80, "ok.name"])
        op = f"steps {how}"
    elif op == "table_type":
        key = _pick(rng, ["input", "output", "cluster", "step", "params", "step.input"])
        value = _pick(rng, ["text", 5, [1], [], True])
        if key == "params":
            step["params"] = value
        elif key == "step.input":
            step["input"] = value
        else:
            job[key] = value
        op = f"{key} = {value!r}"
    elif op == "cluster":
        key, value = _pick(rng, CLUSTER)
        job["cluster"][key] = value
        op = f"cluster.{key} = {value!r}"
    elif op == "path":
        which = _pick(rng, ["input", "output"])
        job[which]["path"] = _pick(rng, PATHS)
        op = f"{which}.path = {job[which]['path']!r}"[:80]
    else:  # kernel
        step["kernel"] = _pick(rng, ["nope", 5, "", "Describe", "describe ", "kmeans"])
        op = f"kernel = {step['kernel']!r}"
    return op, dumps(job).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The fuzz folder (``in.zarr`` inside); chunk statistics of the input go to a cache of
    its own, never the user's."""
    top = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(top / "cache"))
        (top / "w").mkdir()
        make_world(top / "w")
        yield top / "w"


def _output_of(path: Path) -> Path | None:
    from hpcjobs.jobspec import load_job

    try:
        return load_job(path, check_inputs=False).output_path
    except ValueError:
        return None


def _tidy(folder: Path, before: dict) -> None:
    """Remove what a case added to ``folder`` (a run's output)."""
    old = set(before[folder])
    for p in sorted(folder.iterdir()):
        if p.name not in old:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


JOB_CASES = 330


def test_mutated_job_files(world, dask_client):
    """Each mutated job file through validate, then run (on the shared cluster)."""
    rng = np.random.default_rng(SEED)
    address = dask_client.scheduler.address
    failures, ran, refused_at_run = [], 0, 0
    names = list(BASES)
    for i in range(JOB_CASES):
        base = names[i % len(names)]
        job = base_job(base, f"out-{i}.zarr")
        text = dumps(job)
        op, data = ("unchanged", text.encode()) if i < len(names) else \
            mutate_job(rng, job, text)
        label = f"job {i} ({base}: {op})"
        path = world / f"job-{i}.toml"
        path.write_bytes(data)
        before, input_before = listing(world), stamp(world / "in.zarr")
        out = _output_of(path)
        written = [p for p in [world / f"out-{i}.zarr", out] if p is not None and not
                   p.exists()]
        result = invoke("validate", path)
        failures += check(result, kind="validate", label=label + " validate", written=written,
                          before=before)
        if i < len(names) and result.exit_code != 0:
            failures.append(f"{label}: the unchanged job does not validate: {result.output}")
        result = invoke("run", path, "--address", address, "--no-progress")
        failures += check(result, kind="run", label=label + " run", written=written,
                          before=before)
        if result.exit_code == 0:
            ran += 1
            if out is None or not out.is_dir():
                failures.append(f"{label}: run said OK but wrote no {out}")
        elif "Error: " in result.output and "running fuzz" in result.output:
            refused_at_run += 1
        if i < len(names) and result.exit_code != 0:
            failures.append(f"{label}: the unchanged job does not run: {result.output}")
        if stamp(world / "in.zarr") != input_before:
            failures.append(f"{label}: the input changed")
        path.unlink()
        _tidy(world, before)
    print(f"{JOB_CASES} job files: {ran} ran, {refused_at_run} refused while running")
    assert ran >= len(names)
    report(failures, JOB_CASES)


#: (base job, step, parameters): sizes no machine has, refused by validate (the parameters
#: alone tell), or as the step starts (they need the data's size), before anything is
#: allocated or written; the message says the limit
ABSURD_CASES = [
    ("validate", "stats", 0, {"bins": 10**9}),
    ("validate", "stats", 0, {"bins": 2**63 - 1}),
    ("validate", "stats", 1, {"shape": [10**6, 10**6]}),
    ("validate", "stats", 1, {"shape": [10**5, 10**5]}),
    ("validate", "stats", 1, {"shape": [1e12, 1]}),
    ("validate", "stats", 1, {"shape": [1, 10**12]}),
    ("validate", "raster", 0, {"agg": "count_cat", "n_categories": 10**9}),
    ("validate", "raster", 0, {"agg": "count_cat", "n_categories": 10**5}),
    ("validate", "raster", 2, {"levels": 10**9}),
    ("run", "stats", 0, {"bins": 10**6, "__input": "W"}),
    ("run", "clusters", 0, {"n_clusters": 10**12}),
    ("run", "clusters", 1, {"n_clusters": 10**9}),
    ("run", "clusters", 2, {"eps": 1e-300}),
    ("run", "series", 0, {"n_out": 10**12}),
    ("run", "series", 2, {"n_out": 10**12}),
    ("run", "profile", 0, {"m": 10**9}),
    ("run", "profile", 1, {"k": 10**12}),
    ("run", "points", 0, {"k": 10**12}),
    ("run", "points", 1, {"k": 10**9}),
    ("run", "points", 2, {"n_components": 10**9}),
]


def test_absurd_sizes_are_refused(world, dask_client):
    failures = []
    for i, (where, base, k, params) in enumerate(ABSURD_CASES):
        job = base_job(base, f"absurd-{i}.zarr")
        step = job["step"][k]
        params = dict(params)
        if "__input" in params:
            step["input"] = params.pop("__input")
        if params.get("agg") == "count_cat":
            step["input"] = {"x": "X[:, 0]", "y": "X[:, 1]", "values": "idx"}
            step["params"].pop("range", None)
        step["params"] = {**step.get("params", {}), **params}
        label = f"absurd {i} ({step['kernel']} {params})"
        path = world / f"absurd-{i}.toml"
        path.write_text(dumps(job))
        before = listing(world)
        result = invoke("validate", path)
        if where == "run":
            if result.exit_code != 0:
                failures.append(f"{label}: validate refused it: {result.output.strip()}")
            result = invoke("run", path, "--address", dask_client.scheduler.address,
                            "--no-progress")
        failures += check(result, kind=where, label=label, written=[world / f"absurd-{i}.zarr"],
                          before=before)
        message = result.output.strip().splitlines()[-1] if result.output.strip() else ""
        if result.exit_code != 2 or not re.search(r"at most|at least|range \[", message):
            failures.append(f"{label}: exit {result.exit_code} at {where}, no limit named: "
                            f"{message[:300]}")
        _tidy(world, before)
        path.unlink()
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- data files


def _csv(rng) -> bytes:
    X = rng.normal(size=(N, 3))
    rows = "\n".join(",".join(f"{v:.6g}" for v in row) for row in X)
    return ("a,b,c\n" + rows + "\n").encode()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=100)
    return buf.getvalue()


def _tables(rng):
    """Parquet tables: numeric, with nulls, strings only, no rows, odd types."""
    import decimal

    import pyarrow as pa

    x = rng.normal(size=N)
    nulls = [None if i % 7 == 0 else float(v) for i, v in enumerate(x)]
    return {
        "plain": pa.table({"a": x, "b": rng.integers(0, 9, N), "s": [str(i) for i in range(N)]}),
        "nulls": pa.table({"a": pa.array(nulls, pa.float64()), "b": x}),
        "strings": pa.table({"s": ["x"] * N}),
        "empty": pa.table({"a": pa.array([], pa.float64())}),
        "extremes": pa.table({"u": pa.array([2**64 - 1] * N, pa.uint64()),
                              "i": pa.array([-(2**63)] * N, pa.int64()),
                              "f": np.full(N, np.inf), "n": np.full(N, np.nan)}),
        "odd": pa.table({"t": pa.array(np.arange(N).astype("datetime64[s]")),
                         "l": pa.array([[1.0]] * N), "d": pa.array(
                             [decimal.Decimal("1.5")] * N, pa.decimal128(5, 2)),
                         "bool": pa.array([True] * N), "a": x}),
        "halfs": pa.table({"h": pa.array(x.astype(np.float16))}),
        "dict": pa.table({"c": pa.array(["a", "b"] * (N // 2)).dictionary_encode(), "a": x}),
    }


CELLS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999", "9" * 400,
         "1e308", "abc", "0x1F", "1_000", "--1", "+", ".", "e5", "1e", '"1"', '"1,2"', '"', "",
         " ", "\t", "nan(0x1)", "\uff11", "\u216b", "\u221e", "1.0.0", "true", "None", "null",
         "1" * 100_000, "\u00e9"]


def ingest_cases(rng) -> list[tuple[str, str, bytes, list[str]]]:
    """``(label, source file name, its bytes, extra arguments)`` for every ingest case."""
    cases = []
    csv = _csv(rng)
    lines = csv.split(b"\n")
    add = cases.append
    add(("csv unchanged", "a.csv", csv, []))
    for k in range(22):
        b = bytearray(csv)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
        add((f"csv flip {k}", "a.csv", bytes(b), []))
    for k in range(8):
        add((f"csv truncated {k}", "a.csv", csv[:int(rng.integers(len(csv)))], []))
    for k in range(8):
        i = int(rng.integers(len(csv)))
        add((f"csv garbage {k}", "a.csv", csv[:i] + rng.bytes(int(rng.integers(1, 64)))
             + csv[i:], []))
    for k, bad in enumerate(NON_UTF8 + [b"\0"]):
        i = int(rng.integers(len(csv)))
        add((f"csv non-UTF-8 {k}", "a.csv", csv[:i] + bad + csv[i:], []))
    for k in range(6):  # ragged rows: a cell fewer, a cell more
        r = list(lines)
        i = int(rng.integers(1, N))
        r[i] = r[i].rsplit(b",", 1)[0] if k % 2 else r[i] + b",5"
        add((f"csv ragged {k}", "a.csv", b"\n".join(r), []))
    for cell in CELLS:
        r = list(lines)
        i = int(rng.integers(1, N))
        cells = r[i].split(b",")
        cells[int(rng.integers(3))] = cell.encode()
        r[i] = b",".join(cells)
        add((f"csv cell {cell[:12]!r}", "a.csv", b"\n".join(r), []))
    for label, data in [("empty", b""), ("blank lines", b"\n\n \n"), ("header only", b"a,b,c\n"),
                        ("BOM only", b"\xef\xbb\xbf"), ("BOM", b"\xef\xbb\xbf" + csv),
                        ("CRLF", csv.replace(b"\n", b"\r\n")), ("CR", csv.replace(b"\n", b"\r")),
                        ("one cell", b"1"), ("delimiters only", b",,,\n,,,\n"),
                        ("duplicate header", b"a,a,a\n1,2,3\n"),
                        ("open quote", b'a,b\n"1,2\n3,4\n'), ("semicolons", csv.replace(b",", b";")),
                        ("spaces", b"a b c\n1 2 3\n")]:
        add((f"csv {label}", "a.csv", data, []))
    for label, args in [("--delimiter ;", ["--delimiter", ";"]),
                        ("--delimiter ab", ["--delimiter", "ab"]),
                        ("--delimiter empty", ["--delimiter", ""]),
                        ("--delimiter tab", ["--delimiter", "\\t"]),
                        ("--delimiter newline", ["--delimiter", "\n"]),
                        ("--delimiter quote", ["--delimiter", '"']),
                        ("--header", ["--header"]), ("--no-header", ["--no-header"]),
                        ("--columns b,a", ["--columns", "b,a"]), ("--columns z", ["--columns", "z"]),
                        ("--columns 99", ["--columns", "99"]), ("--columns -1", ["--columns", "-1"]),
                        ("--columns 0,0", ["--columns", "0,0"]), ("--columns ,", ["--columns", ","]),
                        ("--columns a,1", ["--columns", "a,1"]),
                        ("--chunks 0", ["--chunks", "0"]), ("--chunks 7", ["--chunks", "7"]),
                        ("--chunks 1e12", ["--chunks", str(10**12)]),
                        ("--chunks huge", ["--chunks", str(10**30)]),
                        ("--name empty", ["--name", ""]), ("--name ../x", ["--name", "../x"]),
                        ("--name .hidden", ["--name", ".hidden"]), ("--name a/b", ["--name", "a/b"]),
                        ("--name long", ["--name", "n" * 300]),
                        ("--format npy", ["--format", "npy"]),
                        ("--format parquet", ["--format", "parquet"]),
                        ("--format basket", ["--format", "basket"]),
                        ("--format nope", ["--format", "nope"]), ("--codec nope", ["--codec", "nope"]),
                        ("--codec none --shard", ["--codec", "none", "--shard"])]:
        add((f"csv {label}", "a.csv", csv, args))
    # gzip
    gz = gzip.compress(csv)
    for k in range(5):
        add((f"gz truncated {k}", "a.csv.gz", gz[:int(rng.integers(10, len(gz)))], []))
    for k in range(4):
        b = bytearray(gz)
        b[int(rng.integers(10, len(b)))] ^= int(rng.integers(1, 256))
        add((f"gz flip {k}", "a.csv.gz", bytes(b), []))
    add(("gz of garbage", "a.csv.gz", gzip.compress(rng.bytes(500)), []))
    add(("gz empty file", "a.csv.gz", b"", []))
    add(("gz not gzip", "a.csv.gz", csv, []))
    add(("gz header only", "a.csv.gz", gz[:10], []))
    add(("gz bad CRC", "a.csv.gz", gz[:-8] + b"\0\0\0\0" + gz[-4:], []))
    # .npy
    npy = _npy(rng.normal(size=(N, 3)))
    add(("npy unchanged", "a.npy", npy, []))
    header_end = npy.index(b"\n") + 1
    header = npy[:header_end].decode("latin-1")
    for old, new in [("'<f8'", "'<f9'"), ("'<f8'", "'|O'"), ("'<f8'", "'<U3'"),
                     ("'<f8'", "'<c16'"), ("'<f8'", "'<M8[s]'"), ("'<f8'", "[('a', '<f8')]"),
                     ("'<f8'", "'>f8'"), ("'<f8'", "'<f2'"), ("'<f8'", "'|b1'"),
                     ("'<f8'", "'<V8'"), ("(300, 3)", "(300, -3)"), ("(300, 3)", f"({10**12}, 3)"),
                     ("(300, 3)", "()"), ("(300, 3)", "(0, 3)"), ("(300, 3)", "(300, 0)"),
                     ("(300, 3)", "(3, 300, 1)"), ("(300, 3)", "(300, 4)"),
                     ("(300, 3)", "(1, 1, 1, 1, 1, 900)"), ("False", "True"),
                     ("False", "'yes'"), ("{", "["), ("'descr'", "'dtype'")]:
        h = header.replace(old, new, 1)
        h = h[:-1].ljust(len(header) - 1) + "\n" if len(h) <= len(header) else h
        add((f"npy header {old}->{new}", "a.npy", h.encode("latin-1") + npy[header_end:], []))
    for k in range(4):
        add((f"npy truncated {k}", "a.npy", npy[:int(rng.integers(len(npy)))], []))
    add(("npy truncated header", "a.npy", npy[:20], []))
    add(("npy bad magic", "a.npy", b"\x93NUMPZ" + npy[6:], []))
    add(("npy version 9", "a.npy", npy[:6] + b"\x09\x00" + npy[8:], []))
    add(("npy header length huge", "a.npy", npy[:8] + b"\xff\xff" + npy[10:], []))
    add(("npy empty", "a.npy", b"", []))
    add(("npy garbage", "a.npy", rng.bytes(2000), []))
    add(("npy object dtype", "a.npy", _npy(np.array([{"a": 1}, None], dtype=object)), []))
    add(("npy strings", "a.npy", _npy(np.array(["a", "b"])), []))
    add(("npy 0-d", "a.npy", _npy(np.float64(1.0)), []))
    add(("npy (0, 3)", "a.npy", _npy(np.zeros((0, 3))), []))
    add(("npy nan/inf", "a.npy", _npy(_with(rng.normal(size=(N, 3)), np.nan) * [1, np.inf, 1]),
         []))
    add(("npy int8", "a.npy", _npy(rng.integers(-9, 9, (N, 2), dtype=np.int8)), []))
    add(("npy complex", "a.npy", _npy(np.ones(4, dtype=complex)), []))
    add(("npy 4-D", "a.npy", _npy(np.ones((5, 2, 2, 2))), []))
    add(("npy npz inside", "a.npy", _npz(rng), []))
    add(("npy gz", "a.npy.gz", gzip.compress(npy), []))
    add(("npy --columns", "a.npy", npy, ["--columns", "0"]))
    add(("npy --chunks 1e12", "a.npy", npy, ["--chunks", str(10**12)]))
    # Parquet
    tables = _tables(rng)
    for name, table in tables.items():
        add((f"parquet {name}", "a.parquet", _parquet(table), []))
    pq_bytes = _parquet(tables["plain"])
    for k in range(8):
        add((f"parquet truncated {k}", "a.parquet",
             pq_bytes[:int(rng.integers(len(pq_bytes)))], []))
    for k in range(8):
        b = bytearray(pq_bytes)
        for _ in range(int(rng.integers(1, 8))):
            b[int(rng.integers(4, len(b) - 8))] ^= int(rng.integers(1, 256))
        add((f"parquet flip {k}", "a.parquet", bytes(b), []))
    add(("parquet empty file", "a.parquet", b"", []))
    add(("parquet magic only", "a.parquet", b"PAR1PAR1", []))
    add(("parquet --columns s", "a.parquet", pq_bytes, ["--columns", "s"]))
    add(("parquet --columns 9", "a.parquet", pq_bytes, ["--columns", "9"]))
    add(("parquet --columns b,a", "a.parquet", pq_bytes, ["--columns", "b,a"]))
    # baskets
    basket = "\n".join(" ".join(rng.choice(list("abcdef"), 3)) for _ in range(N)).encode()
    add(("basket unchanged", "a.basket", basket, []))
    for k in range(6):
        b = bytearray(basket)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
        add((f"basket flip {k}", "a.basket", bytes(b), []))
    for label, data in [("empty", b""), ("blank", b"\n\n\n"), ("NUL", basket + b"\0"),
                        ("latin-1", basket + "caf\u00e9".encode("latin-1")),
                        ("garbage", rng.bytes(800)), ("long line", b"x " * 200_000),
                        ("separators", b",,, ,\n; ;\n\t\t")]:
        add((f"basket {label}", "a.basket", data, []))
    bgz = gzip.compress(basket)
    add(("basket gz truncated", "a.basket.gz", bgz[:len(bgz) // 2], []))
    add(("basket gz", "a.basket.gz", bgz, []))
    add(("no suffix", "data", csv, []))
    return cases


def _npz(rng) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(3))
    return buf.getvalue()


def test_mutated_data_files(tmp_path):
    """Each mutated data file (and option) through ingest."""
    rng = np.random.default_rng(SEED + 1)
    folder = tmp_path / "ing"
    folder.mkdir()
    cases = ingest_cases(rng)
    failures, wrote = [], 0
    for i, (label, name, data, args) in enumerate(cases):
        src = folder / f"{i}-{name}"
        src.write_bytes(data)
        dest = folder / f"d{i}.zarr"
        before = listing(folder)
        result = invoke("ingest", src, dest, *args)
        failures += check(result, kind="ingest", label=f"ingest {i} ({label})", written=[dest],
                          before=before)
        if result.exit_code == 0:
            wrote += 1
            if not dest.is_dir():
                failures.append(f"ingest {i} ({label}): exit 0 but no {dest.name}")
            leftovers = [p.name for p in folder.iterdir() if p.name.startswith(dest.name + ".")]
            if leftovers:
                failures.append(f"ingest {i} ({label}): leftovers {leftovers}")
        _tidy(folder, {folder: [p for p in before[folder] if "/" not in p and p != src.name]})
    print(f"{len(cases)} data files: {wrote} ingested")
    assert len(cases) >= 150 and wrote >= 10
    report(failures, len(cases))


# ----------------------------------------------------------------------------- NaN and inf


#: per kernel: its inputs on data holding NaN or inf ({v} is "nan" or "inf"), and parameters
NONFINITE_JOBS = {
    "describe": ({"X": "X{v}"}, {}),
    "standardize": ({"X": "X{v}"}, {}),
    "aggregate2d": ({"x": "X{v}[:, 0]", "y": "X{v}[:, 0]"}, {"shape": [8, 8]}),
    "shade": ({"raster": "r{v}"}, {}),
    "pyramid": ({"raster": "r{v}"}, {"levels": 3}),
    "lttb": ({"y": "t{v}"}, {"n_out": 20}),
    "minmax": ({"y": "t{v}"}, {"n_out": 20}),
    "m4": ({"y": "t{v}"}, {"n_out": 20}),
    "minmax_lttb": ({"y": "t{v}"}, {"n_out": 20}),
    "pca": ({"X": "X{v}"}, {}),
    "kmeans": ({"X": "X{v}"}, {"n_clusters": 3, "seed": 0}),
    "minibatch_kmeans": ({"X": "X{v}"}, {"n_clusters": 2, "seed": 0}),
    "dbscan": ({"X": "X{v}"}, {"eps": 0.5}),
    "knn_outliers": ({"X": "X{v}"}, {"k": 3}),
    "lof": ({"X": "X{v}"}, {"k": 5}),
    "matrix_profile": ({"T": "t{v}"}, {"m": 8}),
    "discords": ({"profile": "p{v}"}, {"m": 8}),
    "motifs": ({"profile": "p{v}", "index": "idx"}, {"m": 8}),
    "frequent_itemsets": ({"transactions": "X{v}"}, {"min_support": 0.1}),
    "association_rules": ({"indptr": "X{v}[:, 0]", "items": "idx", "counts": "idx",
                           "n_transactions": "idx[0]"}, {}),
}
#: the table's words -> the exit code they promise
PROMISES = {"skipped": 0, "passed": 0, "refused": 2, "n/a": 2}


def nonfinite_table() -> dict[str, tuple[str, str]]:
    """README.md's NaN/inf table: kernel -> (what NaN does, what inf does)."""
    text = (ROOT / "README.md").read_text()
    rows = text.split("<!-- nan-inf-table -->", 1)[1].strip().split("\n\n", 1)[0]
    table = {}
    for line in rows.splitlines()[2:]:
        names, nan, inf = (c.strip() for c in line.strip().strip("|").split("|"))
        for name in re.findall(r"`(\w+)`", names):
            table[name] = (nan, inf)
    return table


def test_the_table_and_the_bases_cover_every_kernel():
    table = nonfinite_table()
    assert sorted(table) == sorted(registry.all_kernels()) == sorted(NONFINITE_JOBS)
    assert {s["kernel"] for steps in BASES.values() for s in steps} == set(table)
    for nan, inf in table.values():
        assert nan.split()[0].rstrip(":") in PROMISES and inf.split()[0].rstrip(":") in PROMISES


@pytest.mark.parametrize("kernel", sorted(NONFINITE_JOBS))
def test_nan_and_inf_as_the_table_says(kernel, world, dask_client):
    table = nonfinite_table()
    inputs, params = NONFINITE_JOBS[kernel]
    failures = []
    for v, said in zip(("nan", "inf"), table[kernel], strict=True):
        out = world / f"nonfinite-{kernel}-{v}.zarr"
        job = {"name": f"nonfinite-{kernel}", "input": {"path": "in.zarr"},
               "step": [{"kernel": kernel, "input": {k: r.format(v=v) for k, r in inputs.items()},
                         "params": params}], "output": {"path": out.name}}
        path = world / f"nonfinite-{kernel}-{v}.toml"
        path.write_text(dumps(job))
        before = listing(world)
        result = invoke("run", path, "--address", dask_client.scheduler.address, "--no-progress")
        label = f"{kernel} on {v}"
        failures += check(result, kind="run", label=label, written=[out], before=before)
        expected = PROMISES[said.split()[0].rstrip(":")]
        if result.exit_code != expected:
            failures.append(f"{label}: exit {result.exit_code}, the table says {said!r}: "
                            f"{result.output.strip().splitlines()[-1:]}")
        if result.exit_code == 2 and kernel not in result.output.split("Error: ")[-1] and \
                "input" not in result.output.split("Error: ")[-1]:
            failures.append(f"{label}: the message names neither the kernel nor the input: "
                            f"{result.output.strip().splitlines()[-1]}")
        _tidy(world, before)
        path.unlink()
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- real processes


def test_a_real_process_says_one_line(world):
    """The same through ``python -m hpcjobs`` on its own local cluster: a kernel refusing NaN
    inside a worker's task is one line on stderr (no worker traceback), and a job file that
    is not UTF-8 too."""
    job = {"name": "nan-proc", "input": {"path": "in.zarr"},
           "step": [{"kernel": "dbscan", "input": "Xnan", "params": {"eps": 0.5}}],
           "output": {"path": "proc.zarr"}}
    path = world / "proc.toml"
    path.write_text(dumps(job))
    bad = world / "bad.toml"
    bad.write_bytes(dumps(job).encode() + b"\n# caf\xe9\n")
    try:
        for args, words in ([["run", path, "--workers", "1", "--no-progress"], "dbscan"],
                            [["validate", bad], "not UTF-8"]):
            proc = subprocess.run([sys.executable, "-m", "hpcjobs", *map(str, args)],
                                  capture_output=True, text=True, cwd=world, timeout=120)
            assert proc.returncode == 2, proc.stderr
            assert "Traceback" not in proc.stderr and "Compute Failed" not in proc.stderr, \
                proc.stderr
            errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
            assert len(errors) == 1 and words in errors[0], proc.stderr
            assert proc.stderr.rstrip("\n").splitlines()[-1] == errors[0]
            assert not EXCEPTION_NAME.search(errors[0]), errors[0]
        assert not (world / "proc.zarr").exists()
    finally:
        path.unlink()
        bad.unlink()
