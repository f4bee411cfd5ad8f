"""Parameter sweeps: a ``[sweep]`` table (a grid of values) -> one Slurm array task per point.

Keys are the dotted override keys of ``hpcjobs run --set`` and values are lists; nested TOML
tables are read the same way, so both of these sweep ``n_clusters`` and ``seed``::

    [sweep]
    max_parallel = 2                      # at most 2 tasks at once (--array=0-5%2)
    "step.km.params.n_clusters" = [2, 4, 8]
    step.km.params.seed = [0, 1]

Task ``i`` is point ``i`` of the grid (the last key varies fastest) and writes its result to
the subgroup ``task-<i>`` of the job's output group, whose attributes list every point.

Example
-------
>>> sweep = expand_sweep({"max_parallel": 2, "step": {"km": {"params": {"seed": [0, 1, 2]}}}})
>>> sweep.array_spec, sweep.points[2]
('0-2%2', {'step.km.params.seed': 2})
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hpcjobs.errors import UserError

RESERVED = {"max_parallel": "at most this many tasks run at once (the %M of --array)"}
MAX_TASKS = 1000  # Slurm's default MaxArraySize is 1001


@dataclass(frozen=True)
class Sweep:
    keys: tuple[str, ...]
    points: tuple[dict, ...]
    max_parallel: int | None = None

    @property
    def array_spec(self) -> str:
        spec = f"0-{len(self.points) - 1}"
        return f"{spec}%{self.max_parallel}" if self.max_parallel else spec

    def task_output(self, output: str, task: int) -> str:
        return f"{output.rstrip('/')}/{task_group(task)}"


def task_group(task: int) -> str:
    """The output subgroup of array task ``task``."""
    return f"task-{task}"


def _flatten(table: dict, prefix: str, where: str) -> dict:
    out = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + ".", where))
        else:
            out[dotted] = value
    return out


def expand_sweep(table: dict | None, *, where: str = "[sweep]") -> Sweep | None:
    """Validate a ``[sweep]`` table and list its grid points; None when there is no sweep."""
    if not table:
        return None
    if not isinstance(table, dict):
        raise UserError(f"{where}: expected a table of 'key = [values]', found {table!r}")
    max_parallel = table.get("max_parallel")
    if max_parallel is not None and (isinstance(max_parallel, bool)
                                     or not isinstance(max_parallel, int) or max_parallel < 1):
        raise UserError(f"{where}: max_parallel: expected an integer >= 1, "
                        f"found {max_parallel!r}")
    grid = _flatten({k: v for k, v in table.items() if k not in RESERVED}, "", where)
    if not grid:
        raise UserError(f"{where}: no parameters to sweep; add e.g. "
                        "\"step.km.params.n_clusters\" = [2, 4, 8]")
    for key, values in grid.items():
        if not key.startswith(("step.", "cluster.")):
            raise UserError(f"{where}: {key}: only step parameters and cluster settings can be "
                            "swept (keys like step.<name>.params.<param>)")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: {key}: expected a non-empty list of values, "
                            f"found {values!r}")
    keys = tuple(grid)
    points = tuple(dict(zip(keys, combo, strict=True))
                   for combo in itertools.product(*(grid[k] for k in keys)))
    if len(points) > MAX_TASKS:
        raise UserError(f"{where}: {len(points)} grid points; at most {MAX_TASKS} array tasks "
                        "per submission: split the sweep")
    return Sweep(keys=keys, points=points, max_parallel=max_parallel)
