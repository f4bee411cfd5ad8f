"""``hpcjobs config``: the site profile in effect (Dask's config, section ``hpcjobs``)."""

from __future__ import annotations

import json

import click

from hpcjobs.cli._errors import wrap_errors

CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@wrap_errors
def config(as_json):
    """Print the site profile: [slurm] and [cluster] defaults from Dask's configuration
    (section `hpcjobs`), each with the file or variable it came from.

    Sources, lowest priority first: /etc/dask/, the environment's etc/dask/,
    ~/.config/dask/*.yaml, $DASK_CONFIG, DASK_HPCJOBS__SLURM__PARTITION=... variables.
    A job file's tables and the command line override these values.
    """
    import dask.config

    from hpcjobs.siteconfig import profile_sources, validate_profile

    validate_profile()
    values = profile_sources()
    if as_json:
        click.echo(json.dumps([{"key": f"{v.table}.{v.key}", "value": v.value,
                                "source": v.source} for v in values], indent=1))
        return
    if not values:
        click.echo("no site profile: Dask's configuration has no 'hpcjobs' section")
    width = max((len(f"{v.table}.{v.key}") for v in values), default=0)
    for v in values:
        click.echo(f"{v.table}.{v.key:<{width - len(v.table) - 1}}  {v.value!r:<24}  {v.source}")
    click.echo("searched: " + ", ".join(dask.config.paths)
               + ", DASK_HPCJOBS__* variables (e.g. DASK_HPCJOBS__SLURM__PARTITION=cpu)")
