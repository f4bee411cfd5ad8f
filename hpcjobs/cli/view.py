"""``hpcjobs view``: a result in the browser, served on loopback behind a token."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from hpcjobs.cli._errors import wrap_errors


@click.command("view")
@click.argument("result", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; open no browser.")
@click.option("--verbose", is_flag=True, help="Log every request on stderr.")
@wrap_errors
def view(result: Path, port: int, no_browser: bool, verbose: bool) -> None:
    """Serve RESULT (a result group) as a page to pan and zoom: maps of rasters and
    pyramids, long series re-downsampled at every zoom, embeddings, centroids, tables.
    The page opens in your browser where there is a display (not over plain ssh).

    The server listens on 127.0.0.1 only and needs the random token in the URL it prints
    (from a laptop: ssh -L PORT:127.0.0.1:PORT login-node, then open the URL). Ctrl-C stops it.
    """
    import webbrowser

    from hpcjobs.errors import UserError
    from hpcjobs.view.server import ViewServer

    try:
        server = ViewServer(result, port=port,
                            log=(lambda line: click.echo(line, err=True)) if verbose else None)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})"
                        "; choose another port or 0 for any free one") from None
    click.echo(f"hpcjobs view: {result}")
    click.echo(f"    {server.url}")
    click.echo("(Ctrl-C stops the server)", err=True)
    # a login node over ssh has no display: a console browser must not take the terminal
    if not no_browser and (sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY")
                           or os.environ.get("WAYLAND_DISPLAY")):
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
