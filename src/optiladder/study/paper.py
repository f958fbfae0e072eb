"""The paper's study on our data: IPA pretraining, direct (DL) vs transfer (TL) learning curves, TL on small
cells only, and the SC[RPA; IPA] predictor — trained on whatever dataset exists when it runs.

Protocol (Grunert, Großmann & Runge 2025, adapted to a small CPU budget):

* training pool = the ``train`` split plus ``none`` (materials in no published list); validation split for
  early stopping only; test split for every reported number;
* IPA model: Im ε(IPA) of the whole pool, from scratch;
* DL / TL: Im ε(RPA) of the first N materials of one seeded permutation of the pool (nested subsets), for
  N in ``sizes`` and "all"; sizes larger than the pool are skipped and reported as such. DL starts from random
  weights, TL from the IPA model (``tl_trainable``: parameter groups, comma-separated; all weights by default,
  as in the paper);
* TL on small cells: the pool materials with ≤ k atoms (k in ``max_atoms``); a set equal to one already
  trained is not trained twice but reported as the same model;
* SC predictor: the same network with a 1-value head, trained on SC[RPA_DFT; IPA_DFT] of the pool.

With ``seeds`` > 1 every run is trained that many times (seed ``seed + j``; TL seed j starts from IPA
seed j); tables report the mean over seeds of each test median and its [min, max] (``test_spread``), the
per-material files and figures show seed 0.

Each run's wall-clock time is capped so that the whole study fits ``budget_minutes`` (shared out by the
number of training materials of the runs still to do); ``max_epochs`` and ``patience`` bound it further.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.splits import check_trainable
from ..evaluation import by_cell_size, card_metrics, ipa_baseline, summary
from ..targets import LEVELS

log = logging.getLogger(__name__)
#: the two rungs the study climbs: pretraining on the lower, DL/TL learning curves on the higher
LOW, HIGH = LEVELS[0], LEVELS[1]


@dataclass(frozen=True)
class StudyOptions:
    """Settings of :func:`run_paper_study` (all have CLI options).

    Learning rates etc. are for Adam on the L1 loss. ``model_kwargs`` override OptiMate sizes (default: the
    published architecture). ``norm``: normalisation in the MLPs; batch norm by default, the published layout
    (the ``torch_geometric`` MLP default) and that of the shipped models, so the study and the shipped models
    are the same network (with a few hundred materials in batches of 32 layer norm generalised better on the
    48-spectrum fixture: median test SC 0.71–0.72 vs 0.65–0.67; ``--norm layer_norm``). ``threads``: torch CPU
    threads (None: free cores from the load average).
    """

    sizes: tuple[int, ...] = (100, 300, 1000)
    max_atoms: tuple[int, ...] = (2, 3, 4)
    budget_minutes: float = 18.0
    max_epochs: int = 300
    patience: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    tl_lr: float = 2e-4
    tl_weight_decay: float = 1e-4
    tl_trainable: str = "all"
    seed: int = 0
    threads: int | None = None
    norm: str = "batch_norm"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    save_models: bool = True
    seeds: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threads(requested: int | None = None) -> int:
    """Torch CPU threads: ``requested``, else the cores not busy by the 1-minute load average (≥ 1).

    On a shared 2-core machine (a GPAW campaign on one core) one thread is ~10× faster than two: OpenMP
    threads that wait for a busy core stall every small matrix product.
    """
    if requested:
        return int(requested)
    n = os.cpu_count() or 1
    try:
        busy = int(round(os.getloadavg()[0]))
    except OSError:
        busy = 0
    return max(1, min(n, n - busy))


@dataclass
class Run:
    """One planned training run of the study."""

    name: str
    kind: str  # ipa | dl | tl | tl_small | sc
    target: str
    ids: list[str]
    size_requested: int | str
    parent: str | None = None
    status: str = "planned"  # planned | ok | skipped | same
    note: str = ""
    same_as: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _numeric(key: str, value: Any) -> bool:
    return key != "n" and isinstance(value, int | float)


def _mean_over_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every numeric entry (``n`` and non-numeric entries such as the post-processing kept
    from the first seed); one seed: the metrics as they are."""
    if len(rows) == 1:
        return dict(rows[0])
    return {k: float(np.mean([r[k] for r in rows])) if _numeric(k, v) else v for k, v in rows[0].items()}


def _spread_over_seeds(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """[min, max] over seeds of every numeric entry but ``n``."""
    return {
        k: [float(min(r[k] for r in rows)), float(max(r[k] for r in rows))]
        for k, v in rows[0].items()
        if _numeric(k, v)
    }


def plan_runs(pool_ids: list[str], pool_nsites: np.ndarray, options: StudyOptions) -> list[Run]:
    """The runs of the study for a training pool (ids and atom counts), in training order."""
    rng = np.random.default_rng(options.seed)
    perm = [pool_ids[i] for i in rng.permutation(len(pool_ids))]
    n = len(pool_ids)
    runs = [Run(LOW, "ipa", LOW, list(pool_ids), "all")]
    seen: dict[frozenset[str], str] = {}
    sizes: list[int | str] = [s for s in sorted(set(options.sizes))] + ["all"]
    for size in sizes:
        label = f"{size}"
        if size == "all":
            ids = list(perm)
        elif size > n:
            for kind in ("dl", "tl"):
                runs.append(
                    Run(f"{kind}-{label}", kind, HIGH, [], size, status="skipped",
                        note=f"only {n} training materials exist")
                )  # fmt: skip
            continue
        else:
            ids = perm[:size]
        key = frozenset(ids)
        if key in seen:
            for kind in ("dl", "tl"):
                runs.append(
                    Run(f"{kind}-{label}", kind, HIGH, ids, size, status="same",
                        same_as=f"{kind}-{seen[key]}", note=f"same materials as {kind}-{seen[key]}")
                )  # fmt: skip
            continue
        seen[key] = label
        runs.append(Run(f"dl-{label}", "dl", HIGH, ids, size))
        runs.append(Run(f"tl-{label}", "tl", HIGH, ids, size, parent=LOW))
    for k in sorted(set(options.max_atoms)):
        ids = [i for i, ns in zip(pool_ids, pool_nsites, strict=True) if ns <= k]
        key = frozenset(ids)
        name = f"tl-le{k}"
        if len(ids) < 2:
            runs.append(Run(name, "tl_small", HIGH, ids, f"<={k} atoms", status="skipped",
                            note=f"{len(ids)} training material(s) with ≤ {k} atoms"))  # fmt: skip
        elif key in seen:
            runs.append(Run(name, "tl_small", HIGH, ids, f"<={k} atoms", status="same",
                            same_as=f"tl-{seen[key]}", note=f"same materials as tl-{seen[key]}"))  # fmt: skip
        else:
            seen[key] = f"le{k}"
            runs.append(Run(name, "tl_small", HIGH, ids, f"<={k} atoms", parent=LOW))
    runs.append(Run("sc", "sc", f"sc_{HIGH}_{LOW}", list(pool_ids), "all"))
    return runs


def _dataset_info(store, data) -> dict[str, Any]:
    protocols: Counter[str] = Counter()
    for rec in store.iter_records():
        protocols[rec["protocol"].get("name", "?")] += 1
    return {
        "n_records": len(data),
        "splits": {k: int(v) for k, v in sorted(Counter(map(str, data.splits)).items())},
        "nsites": {int(k): int(v) for k, v in sorted(Counter(map(int, data.nsites)).items())},
        "protocols": dict(protocols),
        "invalid_records": len(store.errors),
    }


def run_paper_study(out: str | Path, options: StudyOptions | None = None, store=None) -> dict[str, Any]:
    """Run the study on the dataset in ``store`` (default: the repository's), write ``out``; return results.

    Writes ``results.json`` (everything below), ``training_ids.json`` (the ids each model was trained on),
    ``test_scores.csv`` (per-material test metrics of every model), the figures and ``README.md``.
    """
    import datetime as dt

    import pandas as pd
    import torch

    from ..data.store import Store
    from ..targets import get_target
    from ..training import TrainSettings, save_model, train_model
    from .figures import make_figures
    from .report import write_readme

    options = options or StudyOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = choose_threads(options.threads)
    torch.set_num_threads(threads)
    t_start = time.perf_counter()
    store = store or Store()
    data = store.table()
    info = _dataset_info(store, data)
    pool = data.split("train", "none")
    test = data.split("test")
    log.info("study: %d records, pool %d, test %d, %d thread(s)", len(data), len(pool), len(test), threads)
    if len(pool) < 2 or len(test) == 0 or len(data.split("validation")) == 0:
        raise ValueError("the study needs ≥ 2 training, ≥ 1 validation and ≥ 1 test material")

    runs = plan_runs(pool.ids, pool.nsites, options)
    base_settings = TrainSettings(
        lr=options.lr,
        weight_decay=options.weight_decay,
        batch_size=options.batch_size,
        max_epochs=options.max_epochs,
        patience=options.patience,
        seed=options.seed,
    )
    tl_settings = replace(base_settings, lr=options.tl_lr, weight_decay=options.tl_weight_decay)
    budget = options.budget_minutes * 60.0
    models: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    score_frames = []
    baseline = ipa_baseline(test).assign(model="ipa_baseline")
    score_frames.append(baseline)
    sc_pred = None
    data_info = {
        "source": "optiladder dataset, GPAW " + ", ".join(sorted(info["protocols"])),
        "protocol": ", ".join(sorted(info["protocols"])),
        "numerics": sorted(set(map(str, data.numerics))),
        "records": len(data),
    }
    n_seeds = max(1, int(options.seeds))
    for k, run in enumerate(runs):
        if run.status != "planned":
            continue
        todo = [r for r in runs[k:] if r.status == "planned"]
        weight = {r.name: max(len(r.ids), 1) for r in todo}
        remaining = budget - (time.perf_counter() - t_start) - 10.0 * len(todo)  # evaluation and figures
        max_seconds = max(5.0, remaining * weight[run.name] / sum(weight.values()) / n_seeds)
        check_trainable(run.ids, context=f"study run {run.name}")
        per_seed: list[dict[str, Any]] = []
        for j in range(n_seeds):
            settings = tl_settings if run.parent else base_settings
            settings = replace(settings, max_seconds=max_seconds, seed=options.seed + j)
            log.info("study: %s seed %d on %d materials (≤ %.0f s)", run.name, j, len(run.ids), max_seconds)
            res = train_model(
                data,
                target=run.target,
                train_splits=("train", "none"),
                ids=run.ids,
                parent=models[(run.parent, j)].model if run.parent else None,
                trainable=options.tl_trainable.split(",") if run.parent else "all",
                settings=settings,
                model_kwargs={"norm": options.norm, **options.model_kwargs},
                name=f"optimate-{run.name}" + (f"-seed{j}" if j else ""),
                data_info=data_info,
            )
            models[(run.name, j)] = res
            target = get_target(run.target)
            # the one metric pipeline (the cards use it too): post-processing as the target records it
            block = card_metrics(res.model, data, "test", keep=True)
            ev = block.pop("_evaluation")
            metrics = block["values"]
            if not target.is_spectrum:
                if j == 0:
                    sc_pred = pd.DataFrame(
                        {
                            "mat_id": test.ids,
                            "nsites": test.nsites,
                            "sc_dft": ev.ref[:, 0],
                            "sc_ml": ev.pred[:, 0],
                        }
                    )
            elif j == 0:  # per-material tables and figures show the first seed
                frame = ev.scores.assign(model=run.name)
                score_frames.append(frame)
                run.result["by_cell_size"] = by_cell_size(frame).to_dict(orient="records")
                preds[run.name] = ev.pred
            per_seed.append(metrics)
            res.card["metrics"] = block
            if j == 0:
                run.result["fit"] = res.card["training"]["fit"]
                run.result["train_ids_sha256"] = res.card["training"]["train_ids_sha256"]
            if options.save_models:
                suffix = f"-seed{j}" if j else ""
                save_model(out / "models" / f"{run.name}{suffix}", res.model)
        run.result["n_train"] = len(run.ids)
        run.result["test"] = _mean_over_seeds(per_seed)
        if n_seeds > 1:
            run.result["test_seeds"] = per_seed
            run.result["test_spread"] = _spread_over_seeds(per_seed)
        run.status = "ok"
        log.info("study: %s done: %s", run.name, run.result["test"])

    scores = pd.concat(score_frames, ignore_index=True)
    scores.to_csv(out / "test_scores.csv", index=False, float_format="%.5f")
    train_ids = {r.name: sorted(r.ids) for r in runs if r.status == "ok"}
    (out / "training_ids.json").write_text(json.dumps(train_ids, indent=0, sort_keys=True) + "\n")
    if sc_pred is not None:
        sc_pred.to_csv(out / "sc_predictor_test.csv", index=False, float_format="%.5f")
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dataset": info,
        "pool": len(pool),
        "validation": len(data.split("validation")),
        "test": len(test),
        "threads": threads,
        "options": options.to_dict(),
        "baseline": summary(baseline),
        "baseline_by_cell_size": by_cell_size(baseline).to_dict(orient="records"),
        "runs": [
            {
                "name": r.name,
                "kind": r.kind,
                "target": r.target,
                "size_requested": r.size_requested,
                "status": r.status,
                "note": r.note,
                "same_as": r.same_as,
                "parent": r.parent,
                **r.result,
            }
            for r in runs
        ],
        "seconds_training": round(time.perf_counter() - t_start, 1),
    }
    make_figures(out, results, scores, test, preds, sc_pred)
    results["seconds_total"] = round(time.perf_counter() - t_start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_readme(out, results)
    log.info("study written to %s in %.0f s", out, results["seconds_total"])
    return results
