"""``optiladder pretrained``: list, verify and rebuild the shipped models; rebuild the dataset map."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from ._app import app

log = logging.getLogger(__name__)

pretrained_app = typer.Typer(
    help="The shipped models (ipa, rpa, sc): list, verify, rebuild; the dataset map.",
    no_args_is_help=True,
)
app.add_typer(pretrained_app, name="pretrained")


def _metric(card: dict) -> str:
    v = card.get("metrics", {}).get("values", {})
    if "median_sc" in v:
        return f"test median SC {v['median_sc']:.3f}"
    if "mae" in v:
        return f"test MAE {v['mae']:.3f}"
    return "no metrics"


@pretrained_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the full cards as JSON")] = False,
    all_versions: Annotated[
        bool, typer.Option("--all", help="Every installed version, not only the newest")
    ] = False,
) -> None:
    """One line per shipped model (and version): name, version, target, training size, test metric, id and
    checksum status."""
    from ..pretrained import PretrainedError, available, model_dir, verify, versions

    cards = {}
    bad = 0
    for name in available():
        for version in versions(name) if all_versions else [None]:
            label = name if version is None else f"{name}@{version}"
            try:
                card = verify(name, version)
                status = "ok"
            except PretrainedError as exc:
                card, status = {}, f"error: {exc}"
                bad += 1
            cards[label] = card
            if as_json:
                continue
            where = model_dir(name, version).name if status == "ok" else "?"
            typer.echo(
                f"{name:<4} {where:<12} {card.get('target', '?'):<11} train "
                f"{card.get('training', {}).get('n_train', '?'):>4}  {_metric(card)}  id {card.get('id', '?')}  "
                f"[{status}]"
            )
    if as_json:
        typer.echo(json.dumps(cards, indent=1))
    if bad:
        raise typer.Exit(1)


@pretrained_app.command("rebuild")
def rebuild_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="Models to retrain (default: ipa rpa sc)")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of the package")] = None,
    max_seconds: Annotated[float, typer.Option(help="Training time budget per model (s)")] = 240.0,
    threads: Annotated[int, typer.Option(help="torch threads")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    with_map: Annotated[bool, typer.Option("--map/--no-map", help="Rebuild the dataset map too")] = True,
) -> None:
    """Retrain the shipped models from the current dataset (train+none to train, validation to stop early,
    test for the card's metrics) and rewrite their folders and cards."""
    from ..pretrained import MODEL_NAMES
    from ..pretrained.rebuild import RebuildSettings, rebuild

    names = tuple(names or MODEL_NAMES)
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}; known: {', '.join(MODEL_NAMES)}")
    settings = RebuildSettings(max_seconds=max_seconds, threads=threads, seed=seed)
    try:
        cards = rebuild(out=out, settings=settings, names=names)
    except (RuntimeError, ValueError) as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(1) from None
    for name, c in cards.items():
        typer.echo(f"{name}: {c['full_name']}  train {c['training']['n_train']}  {_metric(c)}  id {c['id']}")
    if with_map and out is None and "sc" in names:
        map_cmd()


@pretrained_app.command("metrics")
def metrics_cmd() -> None:
    """Recompute the shipped models' test-split metrics on the current dataset and rewrite their cards."""
    import torch

    from ..pretrained import PretrainedError
    from ..pretrained.rebuild import refresh_metrics

    torch.set_num_threads(1)
    try:
        cards = refresh_metrics()
    except (PretrainedError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for name, c in cards.items():
        typer.echo(f"{name}: test n={c['metrics']['n']}  {_metric(c)}")


@pretrained_app.command("map")
def map_cmd(
    out: Annotated[Path | None, typer.Option(help="Map file (default: the shipped one)")] = None,
    seed: Annotated[int, typer.Option(help="UMAP random seed")] = 0,
    n_neighbors: Annotated[int, typer.Option(help="UMAP n_neighbors")] = 15,
    min_dist: Annotated[float, typer.Option(help="UMAP min_dist")] = 0.1,
) -> None:
    """Embed every dataset record with the sc model, project with UMAP, write the map file."""
    import torch

    from ..data.store import Store
    from ..predict import Predictor
    from ..pretrained import PretrainedError
    from ..service import DEFAULT_MAP_PATH
    from ..service.mapdata import MapError, build_map
    from ..targets import LEVELS

    torch.set_num_threads(1)
    try:
        predictor = Predictor.from_pretrained(LEVELS[:1], sc=True)
        data = build_map(
            predictor,
            Store(),
            out or DEFAULT_MAP_PATH,
            seed=seed if seed is not None else 0,
            n_neighbors=n_neighbors,
            min_dist=min_dist,
        )
    except (PretrainedError, MapError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"map of {data['n']} materials -> {out or DEFAULT_MAP_PATH}")
