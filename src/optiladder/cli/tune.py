"""``optiladder tune``: Optuna search with k-fold cross-validation on the training pool."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ._app import app


@app.command()
def tune(
    mode: Annotated[
        str, typer.Option(help="dl | tl | ipa | sc (tl searches optimiser settings only)")
    ] = "dl",
    parent: Annotated[Path | None, typer.Option(help="Parent model folder for --mode tl")] = None,
    trials: Annotated[int, typer.Option(help="Maximum number of trials")] = 20,
    timeout: Annotated[float, typer.Option(help="Time budget of the whole search (s)")] = 600.0,
    folds: Annotated[int, typer.Option(help="k of k-fold cross-validation")] = 3,
    size: Annotated[int, typer.Option(help="Use a seeded subset of the pool (0 = all)")] = 0,
    max_epochs: Annotated[int, typer.Option()] = 150,
    patience: Annotated[int, typer.Option()] = 20,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: idle cores)")] = None,
    dataset: Annotated[Path | None, typer.Option(help="Records folder (default: the repository's)")] = None,
    out: Annotated[Path, typer.Option(help="JSON file with the best parameters and all trials")] = Path(
        "tune.json"
    ),
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Search hyperparameters by k-fold CV on the training pool (never validation/test); write JSON."""
    import torch

    from ..data.store import Store
    from ..study.paper import choose_threads
    from ..study.tune import MODES, TuneOptions, run_tune, write_tune

    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    if mode not in MODES:
        raise typer.BadParameter(f"mode must be one of {MODES}")
    torch.set_num_threads(choose_threads(threads))
    data = (Store(dataset) if dataset else Store()).table()
    opts = TuneOptions(
        mode=mode, trials=trials, timeout=timeout, folds=folds, size=size,
        max_epochs=max_epochs, patience=patience, seed=seed,
    )  # fmt: skip
    try:
        res = run_tune(data, opts, parent=parent)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_tune(out, res)
    typer.echo(
        f"best {res['best_value']} with {res['best_params']} ({len(res['trials'])} trials, {res['seconds']} s) -> {out}"
    )
