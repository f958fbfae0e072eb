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


@study_app.command("levers")
def levers(
    out: Annotated[Path, typer.Option(help="Report folder (README.md, results.json, CSVs)")] = Path(
        "reports/levers"
    ),
    dataset: Annotated[
        Path | None, typer.Option(help="Records folder (default: the repository's dataset)")
    ] = None,
    extra: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of evaluation-only records (validation/test ids only); repeatable"),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per variant (mean ± std reported)")] = 3,
    sizes: Annotated[str, typer.Option(help="Comma-separated RPA training-set sizes (plus all)")] = "100",
    variants: Annotated[
        str, typer.Option(help="Comma-separated variants (default: all)")
    ] = "faithful-paper,faithful-tuned,free-labels,foundation,free+foundation",
    ensemble: Annotated[int, typer.Option(help="Ensemble members for the winner")] = 5,
    quick: Annotated[bool, typer.Option("--quick", help="A few-minute smoke run (CI)")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: idle cores)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Faithful OptiMate vs free labels, foundation features, ensembles and the onset rule; one report."""
    from ..data.store import Store
    from ..study.levers import LeverOptions, run_levers

    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    kw = dict(
        extra=tuple(str(e) for e in extra or ()),
        sizes=tuple(int(s) for s in sizes.split(",") if s.strip()),
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        threads=threads,
    )
    try:
        opts = LeverOptions.quick_mode(**kw) if quick else LeverOptions(seeds=seeds, ensemble=ensemble, **kw)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    res = run_levers(out, opts, Store(dataset) if dataset else Store())
    for key, row in res["table"].items():
        typer.echo(f"{key:<28} val {row['validation']['median_sc']:.3f}  test {row['test']['median_sc']:.3f}")
    typer.echo(
        f"baseline {res['baseline']}, winner {res['winner']}; report: {out / 'README.md'} ({res['seconds']:.0f} s)"
    )


@study_app.command("acquire")
def acquire(
    models: Annotated[
        Path, typer.Option(help="An RPA ensemble model folder, or a study levers models/ folder")
    ] = Path("reports/levers/models"),
    out: Annotated[Path, typer.Option(help="Ranked id file for `campaign run --order`")] = Path(
        "acquisition.txt"
    ),
    dataset: Annotated[
        Path | None, typer.Option(help="Records folder (computed materials are skipped)")
    ] = None,
    max_atoms: Annotated[int, typer.Option(help="Largest cell to propose")] = 6,
    limit: Annotated[int, typer.Option(help="Rank only the first N candidates (0: all)")] = 0,
) -> None:
    """Rank uncomputed train/none structures by ensemble uncertainty and diversity; write the id list."""
    from ..data.store import Store
    from ..study.acquire import acquire as run_acquire
    from ..study.acquire import write_order

    try:
        ranked = run_acquire(models, Store(dataset) if dataset else Store(), max_atoms=max_atoms, limit=limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_order(out, ranked, note=f"ensemble {models}")
    for r in ranked[:10]:
        typer.echo(
            f"{r['mat_id']}  {r['formula']:<12} {r['nsites']} atoms  uncertainty {r['uncertainty']:.3f}  distance {r['distance']:.2f}"
        )
    typer.echo(f"{len(ranked)} candidates ranked; order file: {out}")


@study_app.command("ship")
def ship_levers(
    version: Annotated[
        str, typer.Option(help="Version string of the new ipa/rpa/sc models, e.g. v2026.11.29")
    ],
    models: Annotated[Path, typer.Option(help="The models/ folder a `study levers` run wrote")] = Path(
        "reports/levers/models"
    ),
    dataset: Annotated[Path | None, typer.Option(help="Records folder (test metrics)")] = None,
) -> None:
    """Install the levers winner as the shipped ipa, rpa (ensemble) and sc models (then regenerate the
    prediction snapshot: python tests/predict/make_snapshot.py)."""
    from ..data.store import Store
    from ..pretrained.ship import ship
    from ..study.levers import training_settings

    paths = ship(models, version, store=Store(dataset) if dataset else Store(), settings_of=training_settings)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")
    typer.echo("now regenerate the snapshot fixture: python tests/predict/make_snapshot.py")
