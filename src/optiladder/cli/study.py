"""``optiladder study paper|levers|scaling|acquire|sc|ship``: learning studies on the current dataset (reports + figures)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ..study.levers import VARIANTS
from ._app import DatasetOption, app

study_app = typer.Typer(help="Learning studies on the dataset.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("paper")
def paper(
    out: Annotated[Path, typer.Option(help="Report folder (README.md, PNGs, results.json)")] = Path(
        "reports/paper"
    ),
    dataset: DatasetOption = None,
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
    dataset: DatasetOption = None,
    extra: Annotated[
        list[Path] | None,
        typer.Option(help="Folder of evaluation-only records (validation/test ids only); repeatable"),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per variant (mean ± std reported)")] = 3,
    sizes: Annotated[str, typer.Option(help="Comma-separated RPA training-set sizes (plus all)")] = "100",
    variants: Annotated[
        str,
        typer.Option(help=f"Comma-separated variants, or all ({', '.join(VARIANTS)})"),
    ] = "all",
    ensemble: Annotated[int, typer.Option(help="Ensemble members for the winner")] = 5,
    sc_members: Annotated[
        int, typer.Option(help="SC[RPA; IPA] heads (their mean ships if better on validation)")
    ] = 3,
    free_epochs: Annotated[int, typer.Option(help="Epochs of the free-label pretraining stage")] = 6,
    quick: Annotated[bool, typer.Option("--quick", help="A few-minute smoke run (CI)")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: idle cores)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Faithful OptiMate vs free labels, foundation features, ensembles and the onset rule; one report."""
    from ..data.store import Store
    from ..study.levers import LeverOptions, run_levers

    if variants.strip() == "all":
        variants = ",".join(VARIANTS)
    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    kw = dict(
        extra=tuple(str(e) for e in extra or ()),
        sizes=tuple(int(s) for s in sizes.split(",") if s.strip()),
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        threads=threads,
    )
    try:
        opts = (
            LeverOptions.quick_mode(**kw)
            if quick
            else LeverOptions(
                seeds=seeds, ensemble=ensemble, sc_members=sc_members, free_epochs=free_epochs, **kw
            )
        )
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
    cost_aware: Annotated[
        bool,
        typer.Option(
            "--cost-aware/--no-cost-aware",
            help="Rank by value per cost: the greedy score / predicted seconds^EXPONENT (per-structure cost model)",
        ),
    ] = True,
    cost_exponent: Annotated[
        float, typer.Option(help="Exponent of the predicted seconds in the cost-aware score")
    ] = 0.5,
) -> None:
    """Rank uncomputed train/none structures by ensemble uncertainty and diversity (per predicted cost unless
    --no-cost-aware); write the id list with the rule in its header."""
    from ..data.store import Store
    from ..study.acquire import acquire as run_acquire
    from ..study.acquire import write_order

    if cost_exponent < 0:
        raise typer.BadParameter("--cost-exponent must be ≥ 0")
    info: dict = {}
    try:
        ranked = run_acquire(models, Store(dataset) if dataset else Store(), max_atoms=max_atoms, limit=limit,
                             cost_aware=cost_aware, cost_exponent=cost_exponent, info=info)  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_order(out, ranked, note=f"ensemble {models}", rule=info.get("rule", ""),
                cost_model=info.get("cost_model", ""))  # fmt: skip
    for r in ranked[:10]:
        cost = "" if r.get("seconds") is None else f"  predicted {r['seconds']:.0f} s"
        typer.echo(
            f"{r['mat_id']}  {r['formula']:<12} {r['nsites']} atoms  uncertainty {r['uncertainty']:.3f}  distance {r['distance']:.2f}{cost}"
        )
    typer.echo(f"{len(ranked)} candidates ranked ({info.get('rule', '')}); order file: {out}")


@study_app.command("sc")
def sc_study(
    out: Annotated[Path, typer.Option(help="Report folder (README.md, results.json, models/sc)")] = Path(
        "reports/sc"
    ),
    rpa: Annotated[str, typer.Option(help="The RPA ensemble: a shipped name or a model folder")] = "rpa",
    ipa: Annotated[str, typer.Option(help="The IPA model of the baseline recipe")] = "ipa",
    dataset: DatasetOption = None,
    recipes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated recipes of optiladder.study.sc.RECIPES (default: its DEFAULT_RECIPES)"
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A CI-sized run (60 pool materials, 4 epochs)")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """SC[RPA; IPA] predictor recipes for an RPA ensemble, side by side; saves the one chosen on validation."""
    from ..data.store import Store
    from ..pretrained import PretrainedError, load_model
    from ..study.sc import ScOptions, run_sc_study

    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    kw = dict(recipes=tuple(r.strip() for r in recipes.split(",") if r.strip())) if recipes else {}
    opts = ScOptions.quick_mode(**kw) if quick else ScOptions(**kw)
    try:
        models = {name: load_model(given) for name, given in (("rpa", rpa), ("ipa", ipa))}  # name or folder
        res = run_sc_study(out, opts, **models, store=Store(dataset) if dataset else Store())
    except (ValueError, PretrainedError) as exc:
        raise typer.BadParameter(str(exc)) from None
    for name, row in res["recipes"].items():
        typer.echo(
            f"{name:<19} validation MAE {row['validation']['mae']:.4f}  test MAE {row['test']['mae']:.4f}"
        )
    typer.echo(f"chosen on validation: {res['winner']}; report: {out / 'README.md'} ({res['seconds']:.0f} s)")


@study_app.command("ship")
def ship_levers(
    version: Annotated[
        str, typer.Option(help="Version string of the new ipa/rpa/sc models, e.g. v2026.11.29")
    ],
    models: Annotated[Path, typer.Option(help="The models/ folder a `study levers` run wrote")] = Path(
        "reports/levers/models"
    ),
    dataset: Annotated[Path | None, typer.Option(help="Records folder (test metrics)")] = None,
    only: Annotated[
        str, typer.Option(help="Comma-separated models to install (e.g. sc for a `study sc` models/ folder)")
    ] = "ipa,rpa,sc",
) -> None:
    """Install the levers winner as the shipped ipa, rpa (ensemble) and sc models, or some of them (then
    regenerate the prediction snapshot: python tests/predict/make_snapshot.py)."""
    from ..data.store import Store
    from ..pretrained.ship import ship
    from ..study.levers import training_settings

    try:
        paths = ship(
            models, version, store=Store(dataset) if dataset else Store(), settings_of=training_settings,
            only=tuple(n.strip() for n in only.split(",") if n.strip()),
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")
    typer.echo("now regenerate the snapshot fixture: python tests/predict/make_snapshot.py")


@study_app.command("scaling")
def scaling(
    out: Annotated[Path, typer.Option(help="Report folder (README.md, PNGs, results.json)")] = Path(
        "reports/scaling"
    ),
    dataset: DatasetOption = None,
    seeds: Annotated[int, typer.Option(help="Seeds (mean ± std reported)")] = 3,
    pre_sizes: Annotated[
        str, typer.Option(help="Comma-separated IPA pre-training sizes N_pre (plus all)")
    ] = "25,50,100,200,400,800,1600",
    rpa_sizes: Annotated[
        str, typer.Option(help="Comma-separated RPA training sizes N_RPA (plus all)")
    ] = "25,50,100,200",
    rpa_ref: Annotated[int, typer.Option(help="N_RPA of the curves against N_pre")] = 100,
    ipa_source: Annotated[
        str, typer.Option(help="IPA pre-training source: auto | v1 (the pool's records) | lite (cheap IPA)")
    ] = "auto",
    lite_root: Annotated[
        Path | None, typer.Option(help="Cheap IPA record folder (default: dataset/ipa-lite)")
    ] = None,
    max_epochs: Annotated[int, typer.Option(help="Epoch limit from scratch (IPA, DL)")] = 60,
    patience: Annotated[int, typer.Option()] = 12,
    tl_epochs: Annotated[int, typer.Option(help="Epoch limit of fine-tuning")] = 40,
    tl_patience: Annotated[int, typer.Option()] = 10,
    free_limit: Annotated[int, typer.Option(help="Free-label structures (0: all)")] = 1000,
    free_epochs: Annotated[int, typer.Option()] = 4,
    no_heatmap: Annotated[bool, typer.Option("--no-heatmap", help="Only the two edges of the grid")] = False,
    no_free: Annotated[bool, typer.Option("--no-free", help="Skip the free-label rows")] = False,
    no_cgat: Annotated[bool, typer.Option("--no-cgat", help="Skip CGAT")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="A few-minute smoke run (CI)")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads (default: idle cores)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Learning curves and heat map over N_pre × N_RPA, full vs head-only transfer, free labels, CGAT vs
    OptiMate; power-law fits with 95 % intervals, the two-size law and its backtest, the paper's claims."""
    from ..data.store import Store
    from ..study.scaling import ScalingOptions, run_scaling

    if verbose:
        logging.getLogger("optiladder").setLevel(logging.INFO)
    try:
        kw = dict(ipa_source=ipa_source, lite_root=str(lite_root) if lite_root else None, threads=threads)
        if quick:
            opts = ScalingOptions.quick_mode(**kw)
        else:
            opts = ScalingOptions(
                seeds=seeds, pre_sizes=tuple(int(s) for s in pre_sizes.split(",") if s.strip()),
                rpa_sizes=tuple(int(s) for s in rpa_sizes.split(",") if s.strip()), rpa_ref=rpa_ref,
                max_epochs=max_epochs, patience=patience, tl_epochs=tl_epochs, tl_patience=tl_patience,
                free_limit=free_limit, free_epochs=free_epochs, heatmap=not no_heatmap, free_labels=not no_free,
                cgat=not no_cgat, **kw,
            )  # fmt: skip
        res = run_scaling(out, opts, Store(dataset) if dataset else Store())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for label, c in res["analysis"]["rpa_curves"].items():
        f = c.get("fit_1msc", {})
        slope = (
            f"slope {f['slope']:.2f} [{f['slope_ci'][0]:.2f}, {f['slope_ci'][1]:.2f}]" if "slope" in f else ""
        )
        typer.echo(f"{label:<32} test median SC at all: {c['table'][-1]['test_median_sc']:.3f}  {slope}")
    typer.echo(f"report: {out / 'README.md'} ({res['seconds']:.0f} s)")
