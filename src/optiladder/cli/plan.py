"""``optiladder plan --budget H``: which further calculations buy the most test SC for H core-hours.

The fitted two-size law of the scaling study (``reports/scaling/results.json``, :mod:`optiladder.study.laws`)
and the per-structure cost model (:func:`optiladder.data.costs.fit_costs` on the records' own timings, each
uncomputed train/none structure priced from its features in the bundled table) decide how to split the budget
between cheap IPA-only calculations and full IPA + RPA ones, and which structures to buy (cheapest first within
each kind; the cheap IPA part never buys a structure the IPA + RPA part bought).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ._app import DatasetOption, app

#: the protocol of each kind of calculation the planner can buy
PROTOCOL_OF = {"ipa+rpa": "gpaw-pbe-v1", "cheap-ipa": "gpaw-pbe-ipa-lite"}


def priced_candidates(
    model, done: dict[str, set[str]], max_atoms: int, *, numerics: str | None = None
) -> tuple[dict[str, list[tuple[str, int, float]]], dict[str, dict[str, Any]]]:
    """Every uncomputed train/none Alexandria structure of at most ``max_atoms`` atoms, per kind
    (``done[kind]``: ids that already have that kind's spectra), as ``(id, nsites, predicted core-seconds)``
    sorted cheapest first, and per kind what priced it (the cost group, its note). ``model``: a
    :class:`~optiladder.data.costs.CostModel`; a kind whose protocol has no records gets no candidates.
    Structures without table features are priced by the group's per-size medians."""
    from ..data.costs import bundled_features
    from ..data.splits import TRAINABLE, split_of
    from ..structures import alexandria

    pool = [e for e in alexandria() if int(e["nsites"]) <= max_atoms and split_of(e["mat_id"]) in TRAINABLE]
    cands, info = {}, {}
    for kind, proto in PROTOCOL_OF.items():
        group, note = model.resolve(proto, numerics)
        if group is None:
            continue
        feats = bundled_features(proto)
        todo = [e for e in pool if e["mat_id"] not in done.get(kind, set())]
        f = np.array([feats.get(e["mat_id"], (np.nan,) * 3) for e in todo], float).reshape(-1, 3)
        secs = group.seconds(f, [int(e["nsites"]) for e in todo]) if todo else np.zeros(0)
        cands[kind] = sorted(
            ((e["mat_id"], int(e["nsites"]), float(t)) for e, t in zip(todo, secs, strict=True)),
            key=lambda c: (c[2], c[0]),
        )
        info[kind] = {"group": group, "note": note, "without_features": int(np.isnan(f).any(axis=1).sum())}
    return cands, info


def _by_size(cands: list[tuple[str, int, float]]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for _, n, t in cands:
        out.setdefault(n, []).append(t)
    return dict(sorted(out.items()))


@app.command("plan")
def plan_cmd(
    budget: Annotated[float, typer.Option(help="Core-hours to spend")],
    report: Annotated[Path, typer.Option(help="Scaling study report folder (its results.json)")] = Path(
        "reports/scaling"
    ),
    dataset: DatasetOption = None,
    lite_root: Annotated[
        Path | None, typer.Option(help="Cheap IPA record folder (default: dataset/ipa-lite)")
    ] = None,
    max_atoms: Annotated[int, typer.Option(help="Largest cell to buy")] = 6,
    numerics: Annotated[
        str | None, typer.Option(help="Numerics the calculations will run with (default: the engine's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON")] = False,
) -> None:
    """Split a budget (core-hours) between cheap IPA and IPA + RPA calculations, each structure priced by the
    per-structure cost model (cheapest first), to maximise the expected median test SC of the fitted scaling
    law; prints the plan with its 95 % interval (--json: with the ids bought)."""
    from ..data.costs import records_cost_model
    from ..data.splits import TRAINABLE, split_of
    from ..data.store import Store
    from ..study.laws import format_plan, law_from_analysis, plan

    path = report / "results.json"
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(
            f"{path}: cannot read the scaling study ({exc}); run `optiladder study scaling`"
        ) from None
    try:  # the design chosen on validation by the report's backtests, else (an older report) its plane
        law = law_from_analysis(res.get("analysis", {}))
    except ValueError as exc:
        raise typer.BadParameter(f"{path}: {exc}") from None
    store = Store(dataset) if dataset else Store()
    lite = lite_root or store.root.parent / "ipa-lite"
    v1_ids = {r["mat_id"] for r in store.index() if split_of(r["mat_id"]) in TRAINABLE}
    lite_ids = (
        {r["mat_id"] for r in Store(lite).index() if split_of(r["mat_id"]) in TRAINABLE}
        if lite.is_dir()
        else set()
    )
    model, _ = records_cost_model([store.root, lite])
    cands, info = priced_candidates(
        model, {"ipa+rpa": v1_ids, "cheap-ipa": v1_ids | lite_ids}, max_atoms, numerics=numerics
    )
    if not info:
        raise typer.BadParameter(f"{store.root}: no record carries its calculation time; no cost model")
    try:
        p = plan(budget, law, n_rpa=len(v1_ids), n_pre=len(v1_ids | lite_ids), candidates=cands)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    by_size = {k: _by_size(c) for k, c in cands.items()}
    if as_json:
        extra = {
            "costs_seconds": {k: {n: float(np.median(v)) for n, v in b.items()} for k, b in by_size.items()},
            "cost_records": {k: {n: m for n, (_, m) in i["group"].sizes.medians.items()} for k, i in info.items()},
            "cost_model": {k: {**i["group"].to_dict(), "fallback": i["note"]} for k, i in info.items()},
        }  # fmt: skip
        typer.echo(json.dumps({**p.to_dict(), **extra}, indent=1, default=str))
        return
    typer.echo(format_plan(p))
    for kind, i in info.items():
        g = i["group"]
        how = "per-structure model" if g.coef is not None else "per-size medians"
        fit = f", rms {g.rms:.2f} (leave-one-out {g.loo_rms:.2f}) in ln s" if g.coef is not None else ""
        typer.echo(
            f"cost ({PROTOCOL_OF[kind]}, {how} of {g.numerics}: {g.n} records{fit}"
            + (f"; {i['note']}" if i["note"] else "")
            + "; predicted core-seconds of the uncomputed structures by cell size, median [10–90 %]): "
            + ", ".join(
                f"{n} at. {np.median(v):.0f} [{np.percentile(v, 10):.0f}–{np.percentile(v, 90):.0f}]"
                for n, v in by_size[kind].items()
            )
        )
    what = law.describe() if hasattr(law, "describe") else "plane (ln E = c + a·ln N_RPA + b·ln N_pre)"
    typer.echo(f"law: {path}: {what}, {law.n_points} cell×seed points")
