"""``hpcjobs kernels``: the registry, as a table, one kernel's details, or JSON."""

from __future__ import annotations

import json

import click

from hpcjobs import registry
from hpcjobs.cli._errors import CLIError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", required=False)
@click.option("--family", help="Only kernels of this family (stats, clustering, viz, mining).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def kernels(name: str | None, family: str | None, as_json: bool) -> None:
    """List the kernels, or show the parameters, inputs and outputs of kernel NAME."""
    specs = registry.all_kernels()
    if name is not None:
        try:
            spec = registry.get(name)
        except LookupError as exc:
            raise CLIError(str(exc)) from None
        if as_json:
            click.echo(json.dumps(spec.to_dict(), indent=2))
        else:
            click.echo(format_kernel(spec))
        return
    chosen = [s for s in specs.values() if family is None or s.family == family]
    if family is not None and not chosen:
        families = sorted({s.family for s in specs.values()})
        raise CLIError(f"no kernels in family {family!r}; families: {', '.join(families)}")
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in chosen], indent=2))
        return
    width = max((len(s.name) for s in chosen), default=4)
    fam_width = max((len(s.family) for s in chosen), default=6)
    click.echo(f"{'KERNEL':<{width}}  {'FAMILY':<{fam_width}}  SUMMARY")
    for s in chosen:
        click.echo(f"{s.name:<{width}}  {s.family:<{fam_width}}  {s.summary}")
    click.echo("\n`hpcjobs kernels NAME` shows a kernel's parameters, inputs and outputs.")


def format_kernel(spec: registry.KernelSpec) -> str:
    lines = [f"{spec.name} ({spec.family})", f"  {spec.summary}", "", "parameters:"]
    if not spec.params:
        lines.append("  (none)")
    for p in spec.params:
        default = "required" if p.required else f"default {p.default!r}"
        lines.append(f"  {p.name:<16} {p.describe_type()}, {default}")
        if p.help:
            lines.append(f"  {'':<16} {p.help}")
    lines += ["", "inputs:"]
    for port in spec.inputs:
        opt = ", optional" if port.optional else ""
        what = "transactions (CSR group)" if port.kind == "csr" else f"({', '.join(port.dims)})"
        lines.append(f"  {port.name:<16} {what}{opt}  {port.help}")
    lines += ["", "outputs:"]
    for port in spec.outputs:
        lines.append(f"  {port.name:<16} ({', '.join(port.dims)}) {port.dtype}  {port.help}")
    return "\n".join(lines)
