"""The Typer application object shared by the command modules (no heavy imports here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: the ``--dataset`` option of the study and plan commands
DatasetOption = Annotated[
    Path | None, typer.Option(help="Records folder (default: the repository's dataset)")
]

app = typer.Typer(
    name="optiladder",
    help="Optical spectra of crystals: GPAW IPA/RPA engine, dataset campaign, OptiMate and CGAT models, prediction.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Optical spectra of crystals: GPAW IPA/RPA engine, dataset campaign, OptiMate and CGAT models, prediction."""
