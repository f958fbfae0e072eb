"""SC[RPA; IPA] predictors for a trained RPA ensemble: which recipe predicts "is IPA good enough?" best.

The ``sc`` model answers, for a crystal nobody has computed, how similar its RPA spectrum is to its IPA spectrum
(SC[RPA; IPA], 1 = local fields change nothing). It is trained on the same train + none materials as the RPA
ensemble it ships beside (the ensemble card's ``training.train_ids``), with the SC of their GPAW spectra as the
label. The recipes (:data:`RECIPES`; by default the first three, :data:`DEFAULT_RECIPES`), trained and scored side
by side in one run (:func:`run_sc_study`), chosen on validation (:func:`choose_recipe`):

* ``ipa-heads`` (the recipe of v2026.12.06b and before, the baseline): ``per_parent`` 1-value networks with the
  full 3×1024 head, all weights fine-tuned from the IPA model's body, their mean;
* ``member-heads``: one 1-value network per RPA ensemble member, all weights fine-tuned from that member's body
  (it has learnt the local fields) with a small head (``hidden``, default 2×128), their mean: a quarter of the
  parameters (2.1 M against 8.6 M). Measured (2 seeds each) for v2026.12.06b's ensemble: validation MAE 0.0246
  against 0.0257, test 0.0273 against 0.0266; for v2026.12.07's, inside its levers run: validation 0.0225 against
  0.0232, test 0.0269 against 0.0289; for v2026.12.07b's (``reports/levers/sc/README.md``): validation 0.0210
  against 0.0227, test 0.0281 against 0.0293. The shipped ``sc`` of v2026.12.07 and of v2026.12.07b is a
  member-heads model;
* ``member-heads-frozen``: the same small heads trained on each member's frozen body: the body stays
  bit-identical to the member's, so the fast prediction path (:class:`~optiladder.nn.stacked.StackedOptiMate`)
  computes it once for the ``rpa`` member and its ``sc`` network (5 of the 11 bodies of a prediction saved).
  For v2026.12.07b's ensemble its validation MAE is 0.0261 against member-heads' 0.0216, worse in 99.8 % of
  paired resamples (``reports/sc/README.md``): not chosen;
* ``member-heads-pool`` and ``member-heads-conv2`` (not trained unless asked: :data:`DEFAULT_RECIPES`): the
  small head with the pooling (and the last GATv2 layer) trained on the member's otherwise frozen body, to see
  whether a partly shared body could keep member-heads' accuracy. Measured for v2026.12.07b's ensemble in one
  run (2 seeds, ``reports/sc/partial_freeze``): validation MAE 0.0262 and 0.0238 against member-heads' 0.0209
  (frozen body: 0.0261 in the run above): the SC knowledge needs the node MLP and the first GATv2 layer
  fine-tuned, so no body prefix is worth sharing and the fast path shares whole bodies only.

:func:`train_scalar_heads` is the one place every recipe is trained (the levers study's gap model too). The winner
is saved as a model folder (``models/sc``) whose card names the RPA ensemble it came from; ``optiladder study ship
--only sc`` installs it beside the shipped ``ipa`` and ``rpa``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: recipe name → (which parents, head hidden widths, networks per parent, what trains); ``None`` widths: the
#: parent's own head; what trains: ``all`` weights, or the parameter groups joined by ``+`` (e.g. ``pool+head``:
#: the node MLP and GATv2 layers frozen; ``head`` alone: the parent's body frozen, batch norm included, so the
#: network's body stays bit-identical to its parent's and the fast path computes it once for both)
RECIPES: dict[str, tuple[str, tuple[int, ...] | None, int, str]] = {
    "ipa-heads": ("ipa", None, 3, "all"),
    "member-heads": ("rpa", (128, 128), 1, "all"),
    "member-heads-frozen": ("rpa", (128, 128), 1, "head"),
    "member-heads-pool": ("rpa", (128, 128), 1, "pool+head"),
    "member-heads-conv2": ("rpa", (128, 128), 1, "convs.1+pool+head"),
}
#: what each recipe does, for the report
RECIPE_NOTES: dict[str, str] = {
    "ipa-heads": "fine-tunes 1-value networks with the IPA model's full head (OptiMate 3×1024, CGAT a residual "
    "head 512 wide) from the IPA model (the sc recipe up to v2026.12.06b)",
    "member-heads": "fine-tunes one network with a small head from each member of the RPA ensemble, all weights",
    "member-heads-frozen": "trains only that small head on the member's frozen body (bit-identical to the "
    "member's, so a prediction computes the body once for both)",
    "member-heads-pool": "trains the small head and the attention pooling on the member's frozen node MLP and "
    "GATv2 layers (a measurement of where the SC knowledge sits; the fast path shares whole bodies only, so it "
    "costs a prediction as much as member-heads)",
    "member-heads-conv2": "trains the small head, the pooling and the second GATv2 layer (``convs.1``), the node "
    "MLP and first GATv2 layer frozen (a measurement, as member-heads-pool)",
}
#: the recipes a study trains unless asked for others (the partial-freeze ones are measurements: not cheaper at
#: prediction, since the fast path shares whole bodies only)
DEFAULT_RECIPES = ("ipa-heads", "member-heads", "member-heads-frozen")
BASELINE_RECIPE = "ipa-heads"
#: the recipe that costs a prediction least (its networks add no body: the stacked forward of one CIF without the
#: 5 sc bodies took 5.4 CPU ms against 7.1–7.4 with them, measured once on 2026-12-07, not in bench/predict): it is
#: chosen unless the most accurate recipe on validation has the lower MAE in
#: at least :data:`CHEAPEST_UNLESS` of the paired bootstrap resamples of the validation materials (the shipping
#: rule's bar for a real difference, docs/predict.md)
CHEAPEST_RECIPE = "member-heads-frozen"
CHEAPEST_UNLESS = 0.95


#: fine-tuning of every 1-value network: the levers study's ``aux`` runs (Adam, epoch-bounded with early stopping
#: on validation; ``max_seconds`` only a safety cap per network)
TRAIN: dict[str, Any] = dict(
    lr=3e-4, weight_decay=1e-4, batch_size=32, max_epochs=60, patience=15, max_seconds=90.0
)


@dataclass(frozen=True)
class ScOptions:
    """Settings of :func:`run_sc_study`: ``recipes`` to train, each ``seeds`` times (chosen on the mean validation
    MAE over them); ``ipa_heads``: networks of the ``ipa-heads`` recipe; ``train``: the
    :class:`~optiladder.training.TrainSettings` fields of every network (default :data:`TRAIN`; its seed comes from
    ``seed`` and the network); ``pool_limit``: a seeded random subset of the pool (0: all)."""

    recipes: tuple[str, ...] = DEFAULT_RECIPES
    seeds: int = 2
    ipa_heads: int = RECIPES["ipa-heads"][2]
    train: tuple[tuple[str, Any], ...] = tuple(TRAIN.items())
    seed: int = 0
    pool_limit: int = 0
    save_models: bool = True
    quick: bool = False

    @classmethod
    def quick_mode(cls, **overrides: Any) -> ScOptions:
        """A CI-sized run: 60 pool materials, a few epochs per network."""
        quick = {**TRAIN, "max_epochs": 4, "patience": 2, "max_seconds": 5.0}
        base = dict(seeds=1, train=tuple(quick.items()), pool_limit=60, save_models=True, quick=True)
        base.update(overrides)
        return cls(**base)

    def settings(self, seed: int):
        from ..training import TrainSettings

        return TrainSettings(**dict(self.train), seed=seed)


def trained_groups(trainable: str) -> tuple[str, ...]:
    """A recipe's "what trains" (``"all"``, ``"head"``, ``"pool+head"``, …) as ``OptiMate.set_trainable``'s groups."""
    return tuple(trainable.split("+"))


def head_widths(config: dict[str, Any]) -> list[int]:
    """The hidden widths of a network's head from its config: OptiMate's ``head_hidden``; CGAT's residual head
    as ``head_width`` repeated ``head_blocks + 1`` times (its input layer and blocks)."""
    if "head_hidden" in config:
        return [int(h) for h in config["head_hidden"]]
    return [int(config["head_width"])] * (int(config["head_blocks"]) + 1)


def sc_labels(arrays: Any) -> np.ndarray:
    """SC[RPA; IPA] of a table's GPAW spectra ``[n]`` (the sc model's target)."""
    from ..spectra import similarity_coefficient

    return similarity_coefficient(arrays.rpa, arrays.ipa, arrays.grid)


def train_scalar_heads(
    parents: list,
    train: list,
    y_train: np.ndarray,
    val: list,
    y_val: np.ndarray,
    settings_of: Any,
    *,
    hidden: tuple[int, ...] | None = None,
    per_parent: int = 1,
    trainable: str = "all",
) -> list:
    """1-value OptiMate networks fine-tuned from the bodies of ``parents`` on the labels ``y_train``
    (SC[RPA; IPA] here; the levers study's gap model of the onset rule too).

    ``per_parent`` networks per parent (network ``k`` of parent ``p`` trains with ``settings_of(seed)``, seed
    ``p`` for ``k = 0`` else ``500 + 10·p + k``); ``hidden``: head widths (None: the parent's); ``trainable``:
    ``"all"``, or the parameter groups that train joined by ``+`` (``"head"``: the parent's body frozen;
    ``"pool+head"``: its node MLP and GATv2 layers frozen; ``OptiMate.set_trainable``). The target is standardised
    inside the head (shift/scale from ``y_train``). Returns the networks (eval mode) in order."""
    from ..training import fit, seed_everything, with_targets
    from ..training.freelabels import transfer_body

    y_train = np.asarray(y_train, np.float64)
    tr, va = with_targets(train, y_train[:, None]), with_targets(val, np.asarray(y_val)[:, None])
    out = []
    for p, parent in enumerate(parents):
        cfg = {
            k: v
            for k, v in parent.config.items()
            if k not in ("out_dim", "output_activation", "target_shift", "target_scale")
        }
        if hidden is not None:
            cfg.update(type(parent).head_config(hidden))
        for k in range(per_parent):
            settings = settings_of(p if k == 0 else 500 + 10 * p + k)
            seed_everything(
                settings.seed
            )  # the head's initial weights from this seed, not from earlier draws
            model = type(parent)(  # the parent's architecture with a 1-value head and a linear output
                **cfg, out_dim=1, output_activation="none", target_shift=float(y_train.mean()),
                target_scale=float(y_train.std() or 1.0),
            )  # fmt: skip
            transfer_body(parent, model)
            if trainable != "all":
                model.set_trainable(trained_groups(trainable))
            fit(model, tr, va, settings)
            out.append(model.eval())
    return out


def paired_bootstrap(
    err_a: np.ndarray, err_b: np.ndarray, *, draws: int = 10000, seed: int = 0
) -> dict[str, float]:
    """How sure is "``a`` has the lower mean absolute error than ``b``" on these materials? Paired per-material
    errors ``[n]``: the mean difference ``b − a``, its standard error, and the fraction of ``draws`` bootstrap
    resamples of the materials in which ``a``'s MAE is the lower (``p_better``)."""
    a, b = np.asarray(err_a, float), np.asarray(err_b, float)
    n = a.size
    idx = np.random.default_rng(seed).integers(0, n, (draws, n))
    d = b - a
    return {
        "mae_difference": float(d.mean()),
        "se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "p_better": float(np.mean(a[idx].mean(axis=1) < b[idx].mean(axis=1))),
    }


def choose_recipe(
    mean_mae: dict[str, float], errors: dict[str, np.ndarray]
) -> tuple[str, dict[str, Any] | None]:
    """The recipe to ship from the validation numbers: ``mean_mae`` (recipe → its mean validation MAE over seeds)
    and ``errors`` (recipe → per-material validation errors of its first seed). :data:`CHEAPEST_RECIPE` unless
    the recipe of the lowest mean MAE has the lower MAE in ≥ :data:`CHEAPEST_UNLESS` of the paired bootstrap
    resamples; without it, the lowest mean MAE. Returns ``(winner, comparison or None)``."""
    best = min(mean_mae, key=mean_mae.__getitem__)
    if CHEAPEST_RECIPE not in mean_mae or best == CHEAPEST_RECIPE:
        return best, None
    vs = {
        "best": best,
        "cheapest": CHEAPEST_RECIPE,
        **paired_bootstrap(errors[best], errors[CHEAPEST_RECIPE]),
    }
    return (CHEAPEST_RECIPE if vs["p_better"] < CHEAPEST_UNLESS else best), vs


def _by_size(err: np.ndarray, nsites: np.ndarray) -> dict[str, list[float]]:
    return {
        str(int(k)): [int((nsites == k).sum()), float(np.mean(err[nsites == k]))] for k in np.unique(nsites)
    }


def run_sc_study(
    out: str | Path,
    options: ScOptions | None = None,
    *,
    rpa: Any,
    ipa: Any,
    store: Any = None,
    models_dir: str | Path | None = None,
    command: str = "optiladder study sc",
    card_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the ``options.recipes`` for the RPA ensemble ``rpa`` (a model folder or a
    :class:`~optiladder.training.Model` whose card lists its training ids; ``optiladder study sc`` resolves the
    shipped names; ``ipa``: the IPA model of the baseline recipe, likewise), score them on validation (choosing)
    and test (reporting), save the winner to ``models_dir`` (default ``out/models/sc``) when
    ``options.save_models`` (``card_extra``: more card sections, e.g. the levers study's); writes
    ``results.json`` and ``README.md`` (which name ``command``) to ``out`` and returns the results. Validation and
    test are the store's records of those splits (a levers run's ``extra`` folders are not read).
    """
    import datetime as dt

    from ..data.splits import check_trainable
    from ..data.store import Store
    from ..graphs import GraphCache
    from ..targets import get_target
    from ..training import Model, load_model_dir, make_card, make_data, predict, save_model
    from ..training.model import parent_ref

    opts = options or ScOptions()
    unknown = [r for r in opts.recipes if r not in RECIPES]
    if unknown or not opts.recipes:
        raise ValueError(f"unknown recipe(s) {unknown}; known: {list(RECIPES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    models = {n: m if isinstance(m, Model) else load_model_dir(m) for n, m in (("rpa", rpa), ("ipa", ipa))}
    spec = models["rpa"].featurizer.spec()
    if models["ipa"].featurizer.spec() != spec:
        raise ValueError(f"{ipa} and {rpa} read different node features")
    table = (store or Store()).table()
    train_ids = set(models["rpa"].card["training"]["train_ids"])
    in_pool = np.array([i in train_ids for i in table.ids])
    if in_pool.sum() != len(train_ids):
        log.warning(
            "sc study: %d of the ensemble's %d training materials have no record here; the pool is the other %d",
            len(train_ids) - int(in_pool.sum()), len(train_ids), int(in_pool.sum()),
        )  # fmt: skip
    if opts.pool_limit and in_pool.sum() > opts.pool_limit:
        keep = np.flatnonzero(in_pool)
        keep = keep[np.random.default_rng(opts.seed).permutation(keep.size)[: opts.pool_limit]]
        in_pool = np.isin(np.arange(len(table.ids)), keep)
    sets = {
        "pool": table.subset(in_pool),
        "validation": table.split("validation"),
        "test": table.split("test"),
    }
    check_trainable(sets["pool"].ids, context="sc study pool")
    if len(sets["pool"]) < 4 or not len(sets["validation"]) or not len(sets["test"]):
        raise ValueError("the sc study needs ≥ 4 training, ≥ 1 validation and ≥ 1 test material")
    cache = GraphCache(models["rpa"].featurizer)  # the ensemble's own node features, graphs cached on disk
    data = {
        n: make_data(cache.graphs(list(es.ids), list(es.structures)), None, list(es.ids))
        for n, es in sets.items()
    }
    y = {n: sc_labels(es) for n, es in sets.items()}
    log.info(
        "sc study: pool %d, validation %d, test %d", *(len(sets[n]) for n in ("pool", "validation", "test"))
    )

    results: dict[str, Any] = {
        "recipes": {},
        "rpa": parent_ref(models["rpa"]),
        "ipa": parent_ref(models["ipa"]),
    }
    nets: dict[str, list] = {}
    errors: dict[str, np.ndarray] = {}
    mean_baseline = {n: float(np.mean(np.abs(y["pool"].mean() - y[n]))) for n in ("validation", "test")}
    for recipe in opts.recipes:
        which, hidden, per_parent, trainable = RECIPES[recipe]
        per_parent = max(1, opts.ipa_heads) if recipe == "ipa-heads" else per_parent
        t = time.perf_counter()
        row: dict[str, Any] = {
            "parents": which,
            "head_hidden": list(hidden or head_widths(models[which].nets[0].config)),
            "trainable": trainable,
        }
        # repeats with other seeds (a recipe's MAE moves by ~0.002 with the heads' initial weights); the first is
        # the one reported per material and saved
        for rep in range(max(1, opts.seeds)):
            trained = train_scalar_heads(
                models[which].nets, data["pool"], y["pool"], data["validation"], y["validation"],
                lambda s, rep=rep: opts.settings(opts.seed + 1000 * rep + s), hidden=hidden, per_parent=per_parent,
                trainable=trainable,
            )  # fmt: skip
            for n in ("validation", "test"):
                each = np.stack([predict(m, data[n])[:, 0] for m in trained])
                err = np.abs(each.mean(axis=0) - y[n])
                if rep:
                    row[n]["mae_seeds"].append(float(err.mean()))
                    continue
                if n == "validation":
                    errors[recipe] = err
                row[n] = {
                    "mae": float(err.mean()),
                    "mae_seeds": [float(err.mean())],
                    "mae_by_nsites": _by_size(err, sets[n].nsites),
                    "single_mae": [round(float(np.mean(np.abs(e - y[n]))), 5) for e in each],
                    "pearson_r": float(np.corrcoef(each.mean(axis=0), y[n])[0, 1]) if len(y[n]) > 1 else None,
                }
            if not rep:
                nets[recipe] = trained
        for n in ("validation", "test"):
            row[n]["mae_mean_over_seeds"] = float(np.mean(row[n]["mae_seeds"]))
        row.update(
            networks=len(nets[recipe]),
            parameters=int(sum(p.numel() for m in nets[recipe] for p in m.parameters())),
            seconds=round(time.perf_counter() - t, 1),
        )
        results["recipes"][recipe] = row
        log.info("sc study: %s validation MAE %s test %s (%.0f s)", recipe,
                 " ".join(f"{x:.4f}" for x in row["validation"]["mae_seeds"]),
                 " ".join(f"{x:.4f}" for x in row["test"]["mae_seeds"]), row["seconds"])  # fmt: skip
    winner, vs_cheapest = choose_recipe(
        {r: results["recipes"][r]["validation"]["mae_mean_over_seeds"] for r in opts.recipes}, errors
    )
    if vs_cheapest:
        results["best_vs_cheapest_validation"] = vs_cheapest
    if BASELINE_RECIPE in opts.recipes and winner != BASELINE_RECIPE:
        # is the winner's validation gain more than the luck of 79 materials? (the README says how sure)
        results["winner_vs_baseline_validation"] = paired_bootstrap(errors[winner], errors[BASELINE_RECIPE])
    results.update(
        winner=winner,
        baseline=BASELINE_RECIPE if BASELINE_RECIPE in opts.recipes else None,
        mean_baseline_mae=mean_baseline,
        options=asdict(opts),
        n={n: len(es) for n, es in sets.items()},
        cells={
            n: {int(k): int(v) for k, v in zip(*np.unique(es.nsites, return_counts=True), strict=True)}
            for n, es in sets.items()
        },
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        command=command,
        seconds=round(time.perf_counter() - t0, 1),
    )
    if opts.save_models:
        which = RECIPES[winner][0]
        card = make_card(
            name=f"sc-{winner}",
            target=get_target("sc_rpa_ipa"),
            train_ids=sets["pool"].ids,
            n_validation=len(sets["validation"]),
            train_splits=("train", "none"),
            trainable=trained_groups(RECIPES[winner][3]),
            settings=asdict(replace(opts.settings(opts.seed), seed=opts.seed)),
            parent=parent_ref(models[which]),
            description=f"SC[RPA; IPA]: the mean of {len(nets[winner])} 1-value networks ({winner}, chosen on "
            f"validation by `{command}`)",
            extra={**(card_extra or {}),
                   "sc_study": {"recipe": winner, "parents": which,
                                "validation_mae": results["recipes"][winner]["validation"]["mae"],
                                "validation_mae_mean_over_seeds":
                                    results["recipes"][winner]["validation"]["mae_mean_over_seeds"],
                                "date": results["date"]}},
        )  # fmt: skip
        save_model(
            Path(models_dir) if models_dir else out / "models" / "sc",
            Model(nets[winner], models[which].featurizer, get_target("sc_rpa_ipa"), card),
        )
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_sc_readme(out, results)
    return results


def _seeds(row: dict[str, Any]) -> str:
    each = row.get("mae_seeds", [row["mae"]])
    if len(each) == 1:
        return f"{each[0]:.4f}"
    return f"**{np.mean(each):.4f}** ({', '.join(f'{x:.4f}' for x in each)})"


def write_sc_readme(out: Path, res: dict[str, Any]) -> Path:
    """The study's report: one table of the recipes side by side (validation chooses, test reports)."""
    rec = res["recipes"]
    sizes = sorted({int(k) for r in rec.values() for k in r["test"]["mae_by_nsites"]})
    head = (
        "| recipe | networks | parameters | validation MAE (each seed) | test MAE (each seed) | "
        + " | ".join(f"test, {k} atoms (first seed)" for k in sizes)
    )
    lines = [
        "# SC[RPA; IPA] predictors: recipes side by side",
        "",
        f"Run {res['date']} by `{res.get('command', 'optiladder study sc')}{' --quick' if res['options']['quick'] else ''}` "
        f"({res['seconds']:.0f} s) for the RPA ensemble {res['rpa']['name']} (id {res['rpa']['id']}): pool "
        f"{res['n']['pool']} train + none materials (its training set), validation {res['n']['validation']}, "
        f"test {res['n']['test']}. Chosen on validation: **{res['winner']}**"
        + (f"; baseline: {res['baseline']}." if res.get("baseline") else "."),
        "",
        head + " |",
        "|" + "---|" * (5 + len(sizes)),
    ]
    for name, r in rec.items():
        by = r["test"]["mae_by_nsites"]
        cells = " | ".join(
            f"{by[str(k)][1]:.4f} (n = {by[str(k)][0]})" if str(k) in by else "—" for k in sizes
        )
        lines.append(
            f"| {name}{' (chosen)' if name == res['winner'] else ''} | {r['networks']} | {r['parameters'] / 1e6:.2f} M "
            f"| {_seeds(r['validation'])} | {_seeds(r['test'])} | {cells} |"
        )
    bc = res.get("best_vs_cheapest_validation")
    if bc:
        lines += [
            "",
            f"Lowest validation MAE: {bc['best']}; against it the cheapest recipe at prediction time, {bc['cheapest']} "
            f"(no body of its own), has an MAE higher by {bc['mae_difference']:.4f} ± {bc['se']:.4f}; {bc['best']} is the "
            f"lower in {100 * bc['p_better']:.1f} % of 10,000 paired bootstrap resamples of the validation materials, "
            f"so {res['winner']} is chosen ({bc['cheapest']} unless that share is ≥ {100 * CHEAPEST_UNLESS:.0f} %).",
        ]
    vs = res.get("winner_vs_baseline_validation")
    if vs:
        lines += [
            "",
            f"The chosen recipe against the baseline on validation, paired by material: MAE lower by "
            f"{vs['mae_difference']:.4f} ± {vs['se']:.4f} (standard error); lower in {100 * vs['p_better']:.1f} % of "
            f"10,000 bootstrap resamples of the validation materials.",
        ]
    lines += [
        "",
        f"Predicting the pool's mean SC: validation MAE {res['mean_baseline_mae']['validation']:.4f}, test "
        f"{res['mean_baseline_mae']['test']:.4f}. One network's validation MAE by recipe (first seed): "
        + "; ".join(
            f"{n}: {', '.join(f'{x:.4f}' for x in r['validation']['single_mae'])}" for n, r in rec.items()
        )
        + ".",
        "",
        "Recipes (`optiladder.study.sc.RECIPES`): "
        + "; ".join(f"`{r}` {RECIPE_NOTES.get(r, '(no note)')}" for r in res["recipes"])
        + ". Adam, early stopping on validation.",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


__all__ = [
    "CHEAPEST_RECIPE",
    "RECIPES",
    "ScOptions",
    "choose_recipe",
    "paired_bootstrap",
    "run_sc_study",
    "sc_labels",
    "train_scalar_heads",
    "write_sc_readme",
]
