"""``hpcjobs preview``: a PNG quick look at one step of a result."""

from __future__ import annotations

from pathlib import Path

import click

from hpcjobs.cli._errors import wrap_errors


@click.command("preview")
@click.argument("result", type=click.Path(path_type=Path))
@click.option("-s", "--step", help="Step to draw (default: the job's last step).")
@click.option("-l", "--level", type=click.IntRange(min=0),
              help="Pyramid level to draw (default: the largest that fits 2048 pixels).")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              default=Path("preview.png"), show_default=True, help="PNG file to write.")
@wrap_errors
def preview(result: Path, step: str | None, level: int | None, output: Path) -> None:
    """Draw one step of RESULT (a result group) into a PNG.

    Rasters are shaded (histogram equalisation), pyramids show one level, downsampled
    series a line plot, embeddings a scatter coloured by a labels array if the result
    has one, k-means centroids as one profile line per cluster (with its size).
    """
    from hpcjobs.preview import preview as render

    text = render(result, output, step=step, level=level)
    click.echo(f"wrote {output}: {text}")
