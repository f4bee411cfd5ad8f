"""Job files: TOML -> a validated :class:`JobSpec`, checked against the kernel registry.

Everything is checked before anything runs: keys, types, kernel names, parameters, input
arrays (existence, rank, dtype kind) and how steps feed each other. Every error names the
file, the key, what was expected and what was found, and nothing is written.

Relative paths (``input.path``, ``output.path``) are relative to the job file's folder, so a
job runs the same from any working directory.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcjobs.errors import JobFileError
from hpcjobs.kernels._params import Param, Params
from hpcjobs.kernels._validation import InvalidInput, message

TOP_LEVEL_KEYS = ("name", "description", "input", "step", "output", "cluster", "slurm", "sweep")
STEP_KEYS = ("name", "kernel", "input", "params")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REF_RE = re.compile(r"^(?P<path>[A-Za-z0-9_.\-/]+?)(?:\[(?P<index>[^\[\]]*)\])?$")


def _memory_limit(value, func: str):
    what = "a size such as \"4GiB\", a number of bytes or \"auto\""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return value
    size = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip():
        from dask.utils import parse_bytes

        try:
            size = parse_bytes(value)
        except (ValueError, TypeError):
            size = None
    if size is None or size < 1:
        raise InvalidInput(message("memory_limit", func, what, value))
    return value


def _dashboard_address(value: str, func: str) -> str:
    port = value.strip().rpartition(":")[2]
    if value.strip().lower() not in ("", "none", "false") and not (
            ":" in value and port.isdigit() and int(port) <= 65535):
        raise InvalidInput(message("dashboard_address", func, "HOST:PORT such as "
                                   "\"127.0.0.1:8787\" (port 0: any free one) or \"none\"",
                                   value))
    return value


#: a job's [cluster] table, declared as the kernels declare their parameters (and checked
#: by the same validators); the README says what each means. None: planned from the cores.
CLUSTER = Params(
    "[cluster]",
    Param("workers", "int", None, "Dask worker processes (or threads)", low=1),
    Param("threads_per_worker", "int", None, "Dask threads per worker", low=1),
    Param("numba_threads", "int", None, "Numba threads per Dask thread", low=1),
    Param("memory_limit", "any", None, "per worker: a size, a number of bytes or \"auto\"",
          check=_memory_limit),
    Param("processes", "bool", None, "workers as processes (true) or threads (false)"),
    Param("dashboard_address", "str", None, "HOST:PORT of the dashboard, or \"none\"",
          check=_dashboard_address),
)
#: the keys of a job's [cluster] table
CLUSTER_KEYS = tuple(p.name for p in CLUSTER)


@dataclass(frozen=True)
class ArrayRef:
    """Where a step input comes from: an array of the input group or an earlier step's output."""

    text: str
    step: str | None
    name: str
    index: tuple | None = None

    def ndim_after(self, ndim: int) -> int:
        if self.index is None:
            return ndim
        return ndim - sum(1 for i in self.index if isinstance(i, int))


@dataclass(frozen=True)
class StepSpec:
    name: str
    kernel: str
    inputs: dict[str, ArrayRef]
    params: dict[str, Any]
    key: str


@dataclass(frozen=True)
class JobSpec:
    """A validated job. ``slurm`` and ``sweep`` are the raw tables (validated by hpcjobs.slurm)."""

    name: str
    file: Path
    text: str
    data: dict
    input_path: Path
    steps: tuple[StepSpec, ...]
    output_path: Path
    cluster: dict = field(default_factory=dict)
    slurm: dict = field(default_factory=dict)
    sweep: dict = field(default_factory=dict)
    description: str = ""

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)


# ---------------------------------------------------------------------------------------------


def load_job(path: str | os.PathLike, *, overrides: dict | None = None,
             check_inputs: bool = True) -> JobSpec:
    """Read, parse and validate the job file at ``path``.

    ``overrides`` are dotted keys applied before validation, e.g. ``{"output.path": "x.zarr",
    "step.km.params.n_clusters": 4, "cluster.workers": 2}`` (steps addressed by name).
    ``check_inputs=False`` skips opening the input Zarr (for rendering a Slurm script on a
    login node where the data lives elsewhere).
    """
    file = Path(path)
    shown = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JobFileError(shown, None, "file not found") from None
    except IsADirectoryError:
        raise JobFileError(shown, None, "is a folder; expected a TOML job file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise JobFileError(shown, None, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} on "
                                        f"line {line}); save the job file as UTF-8") from None
    except OSError as exc:  # permissions, a name too long, ...
        raise JobFileError(shown, None, f"cannot read it: {exc.strerror or exc}") from None
    if "\0" in text:
        raise JobFileError(shown, None, "holds NUL bytes: a binary file, not a TOML job file")
    return parse_job(text, file=file, overrides=overrides, check_inputs=check_inputs)


def parse_job(text: str, *, file: str | os.PathLike = "<job>", overrides: dict | None = None,
              check_inputs: bool = True) -> JobSpec:
    """Validate job-file ``text``; paths are relative to ``file``'s folder."""
    file = Path(file)
    shown = str(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise JobFileError(shown, None, f"not valid TOML: {exc}") from None
    data = _apply_overrides(copy.deepcopy(data), overrides or {}, shown)
    return _Validator(shown, file.resolve().parent if file.name != "<job>" else Path.cwd(),
                      check_inputs).job(text, file, data)


def _apply_overrides(data: dict, overrides: dict, shown: str) -> dict:
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = data
        if parts[0] == "step" and len(parts) >= 3:
            steps = data.get("step", [])
            match = [s for s in steps if isinstance(s, dict)
                     and s.get("name", s.get("kernel")) == parts[1]]
            if not match:
                raise JobFileError(shown, dotted, f"no step named {parts[1]!r} to override")
            node, parts = match[0], parts[2:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise JobFileError(shown, dotted, "cannot override inside a non-table value")
        node[parts[-1]] = value
    return data


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


class _Validator:
    def __init__(self, shown: str, base: Path, check_inputs: bool):
        self.shown, self.base, self.check_inputs = shown, base, check_inputs

    def fail(self, key: str | None, problem: str):
        raise JobFileError(self.shown, key, problem)

    def expect(self, value, types, key: str, what: str):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in
                                            (types if isinstance(types, tuple) else (types,))):
            self.fail(key, f"expected {what}, found {_type_name(value)} ({value!r})")
        return value

    def table(self, data: dict, key: str, required: bool = True) -> dict:
        if key not in data:
            if required:
                self.fail(key, f"missing [{key}] table")
            return {}
        return self.expect(data[key], dict, key, "a table")

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.base / p)

    # -- the job ---------------------------------------------------------------------------

    def job(self, text: str, file: Path, data: dict) -> JobSpec:
        unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
        if unknown:
            self.fail(unknown[0], "unknown key; valid top-level keys: " + ", ".join(TOP_LEVEL_KEYS))
        name = data.get("name", file.stem if file.name != "<job>" else "job")
        self.expect(name, str, "name", "a string")
        if not _NAME_RE.match(name):
            self.fail("name", f"expected 1-64 letters, digits, '.', '_' or '-' (no spaces), "
                              f"found {name!r}")
        description = self.expect(data.get("description", ""), str, "description", "a string")

        input_table = self.table(data, "input")
        self._only(input_table, ("path",), "input")
        if "path" not in input_table:
            self.fail("input.path", "missing: the Zarr group to read, e.g. path = \"data.zarr\"")
        input_path = self.path(self.expect(input_table["path"], str, "input.path",
                                           "a path string"))
        group = self._open_input(input_path) if self.check_inputs else None

        output_table = self.table(data, "output")
        self._only(output_table, ("path",), "output")
        if "path" not in output_table:
            self.fail("output.path", "missing: where the result group goes, e.g. "
                                     "path = \"results/out.zarr\"")
        output_path = self.path(self.expect(output_table["path"], str, "output.path",
                                            "a path string"))
        self._check_output(output_path, input_path)

        steps = self._steps(data.get("step"), group)
        cluster = self._cluster(self.table(data, "cluster", required=False))
        slurm = self.table(data, "slurm", required=False)
        sweep = self.table(data, "sweep", required=False)
        return JobSpec(name=name, file=file, text=text, data=data, input_path=input_path,
                       steps=tuple(steps), output_path=output_path, cluster=cluster,
                       slurm=slurm, sweep=sweep, description=description)

    def _only(self, table: dict, allowed, key: str):
        for k in table:
            if k not in allowed:
                self.fail(f"{key}.{k}", "unknown key; valid keys: " + ", ".join(allowed))

    def _check_output(self, output: Path, input_path: Path) -> None:
        """The output must be neither the input, nor inside it, nor hold it (``--overwrite``
        would delete the input), and its path one the file system takes."""
        try:
            out, inp = output.resolve(), input_path.resolve()
            if out == inp:
                self.fail("output.path", "is the input path; write results to another path")
            if out.is_relative_to(inp):
                self.fail("output.path", f"{output} is inside the input {input_path}; write "
                                         "results elsewhere (the input is never written)")
            if inp.is_relative_to(out):
                self.fail("output.path", f"{output} holds the input {input_path}; write results "
                                         "elsewhere (--overwrite would delete the input)")
            output.exists()  # raises for a name too long
        except OSError as exc:  # e.g. a name too long for the file system
            self.fail("output.path", f"cannot use {output}: {exc.strerror or exc}")

    def _open_input(self, path: Path):
        try:
            found = path.exists()
        except OSError as exc:  # e.g. a name too long for the file system
            self.fail("input.path", f"cannot use {path}: {exc.strerror or exc}")
        if not found:
            self.fail("input.path", f"{path} does not exist (expected a Zarr group; "
                                    "make one with `hpcjobs ingest`)")
        import zarr

        try:
            return zarr.open_group(str(path), mode="r")
        except Exception:  # noqa: BLE001 - zarr raises several kinds for "not a group"
            self.fail("input.path", f"{path} is not a Zarr group (expected a folder with "
                                    "zarr.json; make one with `hpcjobs ingest`)")

    # -- steps ----------------------------------------------------------------------------

    def _steps(self, raw, group) -> list[StepSpec]:
        from hpcjobs import registry

        if raw is None:
            self.fail("step", "missing: add at least one [[step]] with a kernel")
        if isinstance(raw, dict):
            raw = [raw]
        self.expect(raw, list, "step", "an array of tables ([[step]])")
        if not raw:
            self.fail("step", "is empty: add at least one [[step]] with a kernel")
        steps: list[StepSpec] = []
        # name -> output ports (name -> (ndim, dtype kind)); known shapes of earlier outputs
        produced: dict[str, dict[str, tuple[int, str]]] = {}
        for i, table in enumerate(raw):
            key = f"step[{i}]"
            self.expect(table, dict, key, "a table")
            self._only(table, STEP_KEYS, key)
            if "kernel" not in table:
                self.fail(f"{key}.kernel", "missing: which kernel to run (`hpcjobs kernels` "
                                           "lists them)")
            kname = self.expect(table["kernel"], str, f"{key}.kernel", "a kernel name")
            try:
                spec = registry.get(kname)
            except LookupError as exc:
                self.fail(f"{key}.kernel", str(exc))
            name = self.expect(table.get("name", kname), str, f"{key}.name", "a string")
            if not _NAME_RE.match(name) or "/" in name:
                self.fail(f"{key}.name", f"expected letters, digits, '.', '_' or '-', found "
                                         f"{name!r}")
            if name in produced:
                self.fail(f"{key}.name", f"step name {name!r} is used twice; give each step "
                                         "its own name = \"...\"")
            key = f"step[{i}] ({name})"
            params = self.expect(table.get("params", {}), dict, f"{key}.params", "a table")
            try:
                params = spec.validate_params(params)
            except InvalidInput as exc:
                self.fail(f"{key}.params", str(exc))
            inputs = self._inputs(table.get("input"), spec, key, group, produced)
            produced[name] = {p.name: (p.ndim, p.dtype) for p in spec.outputs}
            steps.append(StepSpec(name=name, kernel=kname, inputs=inputs, params=params,
                                  key=key))
        return steps

    def _inputs(self, raw, spec, key, group, produced) -> dict[str, ArrayRef]:
        required = [p for p in spec.inputs if not p.optional]
        if raw is None:
            self.fail(f"{key}.input", "missing: the array to read, e.g. input = \"readings\"")
        if isinstance(raw, str):
            if len(required) != 1:
                names = ", ".join(p.name for p in spec.inputs)
                self.fail(f"{key}.input", f"kernel {spec.name} takes several inputs ({names}); "
                                          "give a table, e.g. input = { x = \"...\", y = \"...\" }")
            raw = {required[0].name: raw}
        self.expect(raw, dict, f"{key}.input", "an array name or a table of them")
        for port_name in raw:
            if spec.input(port_name) is None:
                valid = ", ".join(p.name for p in spec.inputs)
                self.fail(f"{key}.input.{port_name}", f"kernel {spec.name} has no input of that "
                                                      f"name; valid inputs: {valid}")
        for port in required:
            if port.name not in raw:
                self.fail(f"{key}.input.{port.name}", f"missing input of kernel {spec.name} "
                                                      f"({port.help or port.name})")
        refs = {}
        for port_name, text in raw.items():
            pkey = f"{key}.input.{port_name}"
            self.expect(text, str, pkey, "an array reference such as \"readings\" or "
                                         "\"km/labels\"")
            ref = self._parse_ref(text, pkey, produced)
            self._check_ref(ref, spec.input(port_name), pkey, group, produced)
            refs[port_name] = ref
        return refs

    def _parse_ref(self, text: str, key: str, produced) -> ArrayRef:
        m = _REF_RE.match(text.strip())
        if not m:
            self.fail(key, f"expected \"array\", \"array[:, 0]\" or \"step/output\", found "
                           f"{text!r}")
        path, index = m.group("path").strip("/"), m.group("index")
        if any(part in ("", ".", "..") for part in path.split("/")):
            self.fail(key, f"expected \"array\", \"array[:, 0]\" or \"step/output\", found "
                           f"{text!r} ('.', '..' and empty names are not arrays)")
        idx = None if index is None else self._parse_index(index, key, text)
        head, _, rest = path.partition("/")
        if rest and head in produced:
            return ArrayRef(text=text, step=head, name=rest, index=idx)
        return ArrayRef(text=text, step=None, name=path, index=idx)

    def _parse_index(self, index: str, key: str, text: str) -> tuple:
        items: list = []
        for part in index.split(","):
            part = part.strip()
            try:
                if ":" in part:
                    bits = part.split(":")
                    if len(bits) > 3:
                        raise ValueError
                    items.append(slice(*(int(b) if b.strip() else None for b in bits)))
                else:
                    items.append(int(part))
            except ValueError:
                self.fail(key, f"bad index [{index}] in {text!r}: use integers and slices "
                               "like [:, 0] or [100:200]")
        return tuple(items)

    def _check_ref(self, ref: ArrayRef, port, key: str, group, produced):
        if ref.step is not None:
            outputs = produced[ref.step]
            match = outputs.get(ref.name) or next(
                (v for n, v in outputs.items() if n.endswith("*") and ref.name.startswith(n[:-1])),
                None)
            if match is None:
                self.fail(key, f"step {ref.step!r} has no output {ref.name!r}; its outputs: "
                               + ", ".join(outputs))
            ndim, dtype = match
            kind = _dtype_kind(dtype)
        else:
            if group is None:
                return
            try:
                node = group[ref.name]
            except KeyError:
                names = ", ".join(sorted(_array_names(group))) or "none"
                self.fail(key, f"no array {ref.name!r} in the input group; arrays there: {names}")
            except Exception as exc:  # noqa: BLE001 - zarr's several kinds of "cannot open"
                self.fail(key, f"cannot open {ref.name!r} in the input group: {exc}")
            if port.kind == "csr":
                if not hasattr(node, "members") or "indptr" not in node or "items" not in node:
                    self.fail(key, f"{ref.name!r} is not a transactions group (indptr, items, "
                                   "labels); make one with `hpcjobs ingest baskets.txt`")
                return
            if not hasattr(node, "shape"):
                self.fail(key, f"{ref.name!r} is a group, expected an array")
            if ref.index is not None and len(ref.index) > len(node.shape):
                self.fail(key, f"{ref.text!r} indexes {len(ref.index)} dimensions of a "
                               f"{len(node.shape)}-D array")
            ndim, kind = len(node.shape), node.dtype.kind
            if 0 in node.shape:
                self.fail(key, f"array {ref.name!r} is empty (shape {tuple(node.shape)})")
        if port.kind == "csr":
            return
        ndim = ref.ndim_after(ndim)
        if ndim != port.ndim:
            self.fail(key, f"input {port.name!r} must be {port.ndim}-D ({', '.join(port.dims)}); "
                           f"{ref.text!r} is {ndim}-D")
        if kind and kind not in port.kinds:
            self.fail(key, f"input {port.name!r} must be numeric (dtype kinds {port.kinds!r}); "
                           f"{ref.text!r} has dtype kind {kind!r}")

    # -- cluster --------------------------------------------------------------------------

    def _cluster(self, table: dict) -> dict:
        self._only(table, CLUSTER_KEYS, "cluster")
        for key, value in table.items():
            try:
                CLUSTER[key].validate(value, "[cluster]")
            except InvalidInput as exc:
                self.fail(f"cluster.{key}", str(exc))
        return dict(table)


def check_cluster_table(table: dict, shown: str) -> dict:
    """Check a ``[cluster]`` table that is not in a job file (a site profile's): the same
    rules, errors named after ``shown``."""
    return _Validator(shown, Path("."), check_inputs=False)._cluster(dict(table))


def _dtype_kind(dtype: str) -> str:
    import numpy as np

    try:
        return np.dtype(dtype).kind
    except TypeError:
        return ""


def _array_names(group, prefix: str = "") -> list[str]:
    names = []
    for name, node in group.members():
        if hasattr(node, "shape"):
            names.append(prefix + name)
        elif node.attrs.get("hpcjobs_kind") == "transactions":
            names.append(prefix + name)
        else:
            names.extend(_array_names(node, prefix + name + "/"))
    return names
