"""``optiladder plan --budget H``: which further calculations buy the most test SC for H core-hours.

The fitted two-size law of the scaling study (``reports/scaling/results.json``, :mod:`optiladder.study.laws`)
and the measured cost per material (the campaign's cost model, :func:`optiladder.campaign.status.cost_model`, fed
with the records' own calculation seconds by protocol and cell size) decide how to split the budget between
cheap IPA-only calculations and full IPA + RPA ones, and which cell sizes to buy (cheapest first among the
uncomputed train/none structures).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import typer

from ._app import DatasetOption, app

#: the protocol of each kind of calculation the planner can buy
PROTOCOL_OF = {"ipa+rpa": "gpaw-pbe-v1", "cheap-ipa": "gpaw-pbe-ipa-lite"}


def measured_costs(
    roots: list[Path], max_atoms: int
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, int]]]:
    """Core-seconds per material by kind and cell size (1 … ``max_atoms``) from the records' own timings in
    ``roots`` (median per measured size, the campaign's power law elsewhere), and the number of records each
    median rests on. A kind without any record of its protocol gets no cost."""
    from ..campaign.status import cost_model
    from ..data.store import Store

    seconds: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for root in roots:
        if not Path(root).is_dir():
            continue
        for r in Store(Path(root)).index():
            if r["seconds"] and r["nsites"]:
                seconds[r["protocol"]][int(r["nsites"])].append(float(r["seconds"]))
    costs, counts = {}, {}
    for kind, proto in PROTOCOL_OF.items():
        measured = seconds.get(proto)
        if not measured:
            continue
        cm = cost_model(dict(measured))
        costs[kind] = {n: float(cm.seconds(n)) for n in range(1, max_atoms + 1)}
        counts[kind] = {n: len(v) for n, v in measured.items()}
    return costs, counts


def available_structures(done: dict[str, set[str]], max_atoms: int) -> dict[str, dict[int, int]]:
    """Uncomputed train/none Alexandria structures by cell size, per kind (``done[kind]``: ids that already
    have that kind's spectra; a v1 record also counts as done for cheap IPA)."""
    from ..data.splits import TRAINABLE, split_of
    from ..structures import alexandria

    out: dict[str, dict[int, int]] = {k: defaultdict(int) for k in PROTOCOL_OF}
    for e in alexandria():
        n = int(e["nsites"])
        if n > max_atoms or split_of(e["mat_id"]) not in TRAINABLE:
            continue
        for kind in PROTOCOL_OF:
            if e["mat_id"] not in done.get(kind, set()):
                out[kind][n] += 1
    return {k: dict(v) for k, v in out.items()}


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON")] = False,
) -> None:
    """Split a budget (core-hours) between cheap IPA and IPA + RPA calculations, by cell size, to maximise the
    expected median test SC of the fitted scaling law; prints the plan with its 95 % interval."""
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
    costs, counts = measured_costs([store.root, lite], max_atoms)
    if not costs:
        raise typer.BadParameter(f"{store.root}: no record carries its calculation time; no cost model")
    avail = available_structures({"ipa+rpa": v1_ids, "cheap-ipa": v1_ids | lite_ids}, max_atoms)
    try:
        p = plan(budget, law, n_rpa=len(v1_ids), n_pre=len(v1_ids | lite_ids), costs=costs,
                 available=avail)  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if as_json:
        typer.echo(
            json.dumps({**p.to_dict(), "costs_seconds": costs, "cost_records": counts}, indent=1, default=str)
        )
        return
    typer.echo(format_plan(p))
    for kind, c in costs.items():
        typer.echo(
            f"cost ({PROTOCOL_OF[kind]}, core-seconds per material, measured sizes {sorted(counts[kind])}): "
            + ", ".join(f"{n} at. {s:.0f}" for n, s in c.items())
        )
    what = law.describe() if hasattr(law, "describe") else "plane (ln E = c + a·ln N_RPA + b·ln N_pre)"
    typer.echo(f"law: {path}: {what}, {law.n_points} cell×seed points")
