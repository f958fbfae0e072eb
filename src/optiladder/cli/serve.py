"""``optiladder serve``: the web service (FastAPI on uvicorn) with the predict page and the dataset map."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ._app import app

log = logging.getLogger(__name__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    map_path: Annotated[
        Path | None, typer.Option("--map", help="Map file (default: the shipped one)")
    ] = None,
    max_upload: Annotated[int, typer.Option(help="Largest accepted structure in bytes")] = 256 * 1024,
    threads: Annotated[int, typer.Option(help="torch threads per request")] = 1,
    parse_workers: Annotated[
        int, typer.Option(help="Processes that read uploads and build graphs (killed when stuck)")
    ] = 2,
    parse_timeout: Annotated[float, typer.Option(help="Seconds one upload may take to read")] = 20.0,
    parse_memory_mb: Annotated[
        int, typer.Option(help="Address-space limit of a reading process (MiB)")
    ] = 3072,
    body_timeout: Annotated[float, typer.Option(help="Seconds for a request body to arrive")] = 10.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve POST /predict, GET /materials/{id}, GET /map, the pages (/, /ui/map) and the API docs (/docs)."""
    import torch
    import uvicorn

    from ..pretrained import PretrainedError
    from ..service import DEFAULT_MAP_PATH
    from ..service.app import create_app

    torch.set_num_threads(max(1, threads))
    try:
        application = create_app(
            map_path=map_path or DEFAULT_MAP_PATH,
            max_upload=max_upload,
            preload=True,
            body_timeout=body_timeout,
            workers={
                "workers": max(1, parse_workers),
                "timeout": parse_timeout,
                "memory_mb": parse_memory_mb,
            },
        )
    except PretrainedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"optiladder: serving on http://{host}:{port}/  (API docs: /docs)", err=True)
    uvicorn.run(application, host=host, port=port, log_level=log_level)
