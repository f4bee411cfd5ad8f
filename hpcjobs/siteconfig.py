"""Site profiles: defaults for ``[slurm]`` and ``[cluster]`` from Dask's own configuration.

A centre's partition, account, QOS, setup lines and sizes belong to the centre, not to the
job file: with them in an ``hpcjobs`` section of Dask's configuration, one job file runs at
two centres. The section is read where Dask reads its own (``/etc/dask/``,
``~/.config/dask/*.yaml``, ``$DASK_CONFIG``, ``DASK_HPCJOBS__SLURM__PARTITION=...``,
``dask.config.set`` in a notebook)::

    # ~/.config/dask/hpcjobs.yaml
    hpcjobs:
      slurm:
        partition: cpu
        account: proj-42
        setup: ["module load mpi"]
      cluster:
        memory_limit: 4GiB

Precedence, lowest first: hpcjobs' own defaults, the site profile, the job file, the command
line. :func:`profile_table` gives a table's values, :func:`profile_sources` says where each
came from (``hpcjobs config`` prints them).

Example
-------
>>> import dask
>>> with dask.config.set({"hpcjobs.slurm.partition": "debug"}):
...     profile_table("slurm")["partition"]
'debug'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hpcjobs.errors import UserError

SECTION = "hpcjobs"
TABLES = ("slurm", "cluster")
IN_PROCESS = "dask.config.set (in this process)"


@dataclass(frozen=True)
class ProfileValue:
    """One site-profile value and where it came from (a file, a variable, or this process)."""

    table: str
    key: str
    value: Any
    source: str


def _norm(key: str) -> str:
    return str(key).replace("-", "_")


def profile_table(table: str) -> dict:
    """The site profile's ``hpcjobs.<table>`` values (keys with ``_``), from dask.config."""
    import dask.config

    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    section = dask.config.get(SECTION, default=None) or {}
    if not isinstance(section, dict):
        raise UserError(f"dask config {SECTION}: expected a section with 'slurm' and "
                        f"'cluster' tables, found {section!r}")
    unknown = sorted(_norm(k) for k in section if _norm(k) not in TABLES)
    if unknown:
        raise UserError(f"{profile_label(unknown[0])}: unknown table; valid: "
                        + ", ".join(TABLES))
    values = next((v for k, v in section.items() if _norm(k) == table), None) or {}
    if not isinstance(values, dict):
        raise UserError(f"{profile_label(table)}: expected a table of settings, "
                        f"found {values!r}")
    return {_norm(k): v for k, v in values.items()}


def _sources() -> list[tuple[str, dict]]:
    """Dask's configuration sources, lowest priority first: YAML files, then variables."""
    import dask.config

    found = [(str(path), config) for path, config in
             dask.config.collect_yaml(dask.config.paths, return_paths=True)]
    env = {k: v for k, v in os.environ.items() if k.startswith("DASK_HPCJOBS__")}
    if env:
        found.append(("environment (DASK_HPCJOBS__...)", dask.config.collect_env(env)))
    return found


def _section_of(config: dict) -> dict:
    section = next((v for k, v in config.items() if _norm(k) == SECTION), None)
    return section if isinstance(section, dict) else {}


def profile_sources() -> list[ProfileValue]:
    """Every site-profile value in effect, with the file or variable it came from."""
    origin: dict[tuple[str, str], str] = {}
    seen: dict[tuple[str, str], Any] = {}
    for source, config in _sources():
        for table, values in _section_of(config).items():
            if isinstance(values, dict):
                for key, value in values.items():
                    origin[(_norm(table), _norm(key))] = source
                    seen[(_norm(table), _norm(key))] = value
    out = []
    for table in TABLES:
        for key, value in sorted(profile_table(table).items()):
            source = origin.get((table, key), IN_PROCESS)
            if (table, key) in seen and seen[(table, key)] != value:
                source = IN_PROCESS
            out.append(ProfileValue(table, key, value, source))
    return out


def where_defined(table: str, key: str | None = None) -> str:
    """The source that sets ``hpcjobs.<table>[.<key>]`` (for error messages)."""
    where = IN_PROCESS
    for source, config in _sources():
        values = _section_of(config).get(table) if key is not None else _section_of(config)
        if isinstance(values, dict) and any(_norm(k) == _norm(key or table) for k in values):
            where = source
    return where


def slurm_defaults() -> dict:
    """The profile's ``[slurm]`` values, checked like a job file's table."""
    from hpcjobs.slurm.script import resolve_options

    values = profile_table("slurm")
    resolve_options({}, where=profile_label("slurm"), site=values,
                    site_where=profile_label("slurm"), min_tasks=1)
    return values


def cluster_defaults() -> dict:
    """The profile's ``[cluster]`` values (local clusters), checked like a job file's."""
    from hpcjobs.jobspec import check_cluster_table

    values = profile_table("cluster")
    check_cluster_table(values, profile_label("cluster"))
    return values


def validate_profile() -> None:
    """Raise ``UserError`` naming the key when a profile value is not valid."""
    slurm_defaults()
    cluster_defaults()


def profile_label(table: str) -> str:
    """How errors name the site profile's table and where it is set, e.g.
    ``dask config hpcjobs.slurm (from /home/me/.config/dask/hpcjobs.yaml)``."""
    return f"dask config {SECTION}.{table} (from {where_defined(table)})"


__all__ = ["ProfileValue", "profile_table", "profile_sources", "where_defined",
           "profile_label", "slurm_defaults", "cluster_defaults", "validate_profile", "TABLES"]
