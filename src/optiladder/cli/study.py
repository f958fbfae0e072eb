"""``optiladder study paper``: the OptiMate paper's study on the current dataset (report + figures)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ._app import app

study_app = typer.Typer(help="Learning studies on the dataset.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("paper")
def paper(
    out: Annotated[Path, typer.Option(help="Report folder (README.md, PNGs, results.json)")] = Path(
        "reports/paper"
    ),
    dataset: Annotated[
        Path | None, typer.Option(help="Records folder (default: the repository's dataset)")
    ] = None,
    sizes: Annotated[
        str, typer.Option(help="Comma-separated RPA training-set sizes (plus 'all')")
    ] = "100,300,1000",
    max_atoms: Annotated[
        str, typer.Option(help="Comma-separated cell-size limits for TL on small cells")
    ] = "2,3,4",
    budget_minutes: Annotated[float, typer.Option(help="Wall-clock budget of all training")] = 18.0,
    max_epochs: Annotated[int, typer.Option(help="Epoch limit per model")] = 300,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs)")] = 40,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate from scratch (IPA, DL, SC)")] = 1e-3,
    weight_decay: Annotated[float, typer.Option()] = 1e-5,
    tl_lr: Annotated[float, typer.Option(help="Learning rate of transfer learning")] = 2e-4,
    tl_weight_decay: Annotated[float, typer.Option()] = 1e-4,
    tl_trainable: Annotated[
        str,
        typer.Option(
            help="What TL retrains: parameter groups all | head | body | submodule names, comma-separated"
        ),
    ] = "all",
    norm: Annotated[
        str,
        typer.Option(
            help="MLP normalisation: batch_norm (published, the shipped models') | layer_norm | none"
        ),
    ] = "batch_norm",
    seed: Annotated[int, typer.Option()] = 0,
    seeds: Annotated[int, typer.Option(help="Train every model with this many seeds; report the mean")] = 1,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: idle cores)")] = None,
    save_models: Annotated[bool, typer.Option(help="Write the models (model folders) to OUT/models/")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Train IPA, DL/TL learning curves, TL on small cells and the SC predictor; write the report."""
    from ..data.store import Store
    from ..study.paper import StudyOptions, run_paper_study

    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    if norm not in ("layer_norm", "batch_norm", "none"):
        raise typer.BadParameter("norm must be layer_norm, batch_norm or none")
    from ..nn import OptiMate

    groups = OptiMate(head_hidden=(1,), out_dim=1).parameter_groups()
    bad = [g for g in tl_trainable.split(",") if g not in groups]
    if bad:
        raise typer.BadParameter(f"unknown parameter group(s) {bad}; e.g. all, head, body, convs.1")
    try:
        opts = StudyOptions(
            sizes=tuple(int(s) for s in sizes.split(",") if s.strip()),
            max_atoms=tuple(int(s) for s in max_atoms.split(",") if s.strip()),
            budget_minutes=budget_minutes,
            max_epochs=max_epochs,
            patience=patience,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            tl_lr=tl_lr,
            tl_weight_decay=tl_weight_decay,
            tl_trainable=tl_trainable,
            seed=seed,
            seeds=seeds,
            norm=norm,
            threads=threads,
            save_models=save_models,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    store = Store(dataset) if dataset else Store()
    res = run_paper_study(out, opts, store)
    for r in res["runs"]:
        t = r.get("test", {})
        val = t.get("median_sc", t.get("mae"))
        typer.echo(
            f"{r['name']:<10} {r['status']:<8} n={r.get('n_train', '-'):<5} {'' if val is None else f'{val:.3f}'}  {r['note']}"
        )
    typer.echo(
        f"baseline median SC {res['baseline']['median_sc']:.3f}; report: {out / 'README.md'} ({res['seconds_total']:.0f} s)"
    )
