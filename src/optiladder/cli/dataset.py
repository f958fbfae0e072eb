"""``optiladder dataset import|stats|export``: the record store."""

from __future__ import annotations

import typer

from ._app import app

dataset_app = typer.Typer(
    help="The dataset store: import, statistics, export for training.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")
