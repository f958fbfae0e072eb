"""The levers study: what beats faithful OptiMate on few spectra, on larger cells, and when not to trust it.

One run trains, for every seed, the same IPA → RPA transfer-learning pipeline in several variants and scores all
of them on the same validation (choosing) and test (reporting) materials:

* ``faithful-paper`` / ``faithful-tuned``: the published OptiMate (one-hot group/row node features, 51 Gaussian
  edge features, batch norm, GATv2 48×4 → 96×4, attention pooling, 3×1024 head), IPA from scratch, then RPA
  fine-tuning of all weights with the paper's settings (lr 1e-5, batch 128) or ours (lr 2e-4, batch 32);
  ``faithful-lpft``: the same, the head alone first (:func:`optiladder.training.probe_then_fit`). The best of them
  on the first seed's validation median (the one seed the paper's settings run) is *the* baseline every gain is
  measured against;
* ``free-labels``: the body first learns Alexandria's PBE direct/indirect gaps and formation energies of the
  train + none structures (:mod:`optiladder.training.freelabels`), then IPA, then RPA;
* ``foundation``: node features ‖ frozen CHGNet 0.3.0 per-atom embeddings (:mod:`optiladder.foundation`);
* ``free+foundation``: both;
* ``chgnet+sevennet`` / ``free+chgnet+sevennet``: as ``foundation`` / ``free+foundation`` with CHGNet 0.3.0 ‖
  SevenNet-0 (l = 0 channels) per-atom embeddings (64 + 128 values per atom).

RPA fine-tuning runs at every training size (``sizes``, nested seeded subsets of the pool, and "all"). The
variant with the best validation median SC at "all" (mean over seeds) is the winner; for it (phase 2), every seed
gets a K-member ensemble (K − 1 more fine-tunings from the same IPA model), a calibrated expected SC with an 80 %
interval and a warning rule (:mod:`optiladder.evaluation.uncertainty`, fitted on validation; its novel-bond
limit flags crystals with a first-shell element pair no pool crystal has, :mod:`optiladder.domain`, whose
expected SC is below the validation first quartile), an absorption-onset
rule from a gap model trained on our records' ``gap_direct`` (:mod:`optiladder.onset`; kept only if it helps on
validation), and SC[RPA; IPA] predictors (a 1-value head, and the SC of the predicted spectra).

Evaluation-only records (e.g. 4-atom validation/test cells computed elsewhere) come from ``extra`` folders; their
ids must be validation or test materials (they are never trained on; a train/none id there is refused).
Free-label pretraining is done once per node-feature kind (seed ``seed``) and shared by all seeds. The network's
``node_dim`` always comes from the variant's featurizer.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..data.splits import check_trainable, split_of
from ..targets import LEVELS

log = logging.getLogger(__name__)

#: foundation models of the node features: none (one-hot only), CHGNet 0.3.0, CHGNet 0.3.0 ‖ SevenNet-0
PLAIN: tuple[str, ...] = ()
CHGNET: tuple[str, ...] = ("chgnet-0.3.0",)
CHGNET_SEVENNET: tuple[str, ...] = ("chgnet-0.3.0", "sevennet-0")


class Variant(NamedTuple):
    """One row of the ablation: free-label pretraining on or off, the foundation models of the node features,
    the RPA fine-tuning settings (``paper``, ``tuned``, or ``lpft``: the head alone first, then all weights with
    ``tuned``'s settings, :func:`optiladder.training.probe_then_fit`) and the network (``optimate`` or ``cgat``, the CGAT body
    of issue 12 under the same model format)."""

    free: bool
    found: tuple[str, ...]
    tl: str
    arch: str = "optimate"


#: variant name → its levers
VARIANTS: dict[str, Variant] = {
    "faithful-paper": Variant(False, PLAIN, "paper"),
    "faithful-tuned": Variant(False, PLAIN, "tuned"),
    "free-labels": Variant(True, PLAIN, "tuned"),
    "foundation": Variant(False, CHGNET, "tuned"),
    "free+foundation": Variant(True, CHGNET, "tuned"),
    "chgnet+sevennet": Variant(False, CHGNET_SEVENNET, "tuned"),
    "free+chgnet+sevennet": Variant(True, CHGNET_SEVENNET, "tuned"),
    "free+foundation+cgat": Variant(True, CHGNET, "tuned", "cgat"),
    "faithful-lpft": Variant(False, PLAIN, "lpft"),
    "free+foundation+cgat+lpft": Variant(True, CHGNET, "lpft", "cgat"),
}
#: network class of each ``Variant.arch``
ARCHS: tuple[str, ...] = ("optimate", "cgat")
#: the faithful OptiMate variants; the best of them on the first seed's validation median is the baseline
BASELINES: tuple[str, ...] = ("faithful-paper", "faithful-tuned", "faithful-lpft")


@dataclass(frozen=True)
class LeverOptions:
    """Settings of :func:`run_levers`. Runs are bounded by epochs (``max_epochs``/``patience`` from scratch,
    ``tl_epochs``/``tl_patience`` for fine-tuning, ``free_epochs`` for free labels) so that results do not depend
    on the machine's load; the ``*_seconds`` are only safety caps per run. ``paper_seeds``: seeds that also
    train the paper's fine-tuning settings (slow; the better faithful setting is chosen on validation)."""

    seeds: int = 3
    seed: int = 0
    sizes: tuple[int, ...] = (100,)
    variants: tuple[str, ...] = tuple(VARIANTS)
    ensemble: int = 5
    sc_members: int = 3
    extra: tuple[str, ...] = ()
    ipa_seconds: float = 240.0
    tl_seconds: float = 120.0
    paper_tl_seconds: float = 180.0
    free_seconds: float = 600.0
    free_epochs: int = 6
    aux_seconds: float = 90.0
    max_epochs: int = 80
    patience: int = 20
    tl_epochs: int = 60
    tl_patience: int = 15
    probe_epochs: int = 20
    probe_patience: int = 5
    paper_seeds: int = 1
    quick: bool = False
    pool_limit: int = 0
    free_limit: int = 0
    threads: int | None = None
    save_models: bool = True

    @classmethod
    def quick_mode(cls, **overrides: Any) -> LeverOptions:
        """A few-minute run for CI: 60 pool materials, 300 free labels, short runs, 1 seed, K = 3."""
        base = dict(
            seeds=1, sizes=(30,), ensemble=3, sc_members=2, ipa_seconds=8.0, tl_seconds=4.0, paper_tl_seconds=4.0,
            free_seconds=8.0, free_epochs=3, aux_seconds=3.0, max_epochs=15, patience=5, tl_epochs=10, tl_patience=4, probe_epochs=4, probe_patience=2, quick=True, pool_limit=60,
            free_limit=300, save_models=False,
        )  # fmt: skip
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    """Model-grid arrays of a set of records plus their direct gaps (eV, ``[n]``)."""

    arrays: Any
    gaps: np.ndarray

    def __len__(self) -> int:
        return len(self.arrays)


def _concat(a, b):
    """Rows of ``b`` appended to ``a`` (two ``DatasetArrays`` on the same grid, same levels)."""
    from ..data.store import DatasetArrays

    if a.grid.shape != b.grid.shape or not np.allclose(a.grid, b.grid):
        raise ValueError("cannot join tables on different grids")
    return DatasetArrays(
        a.ids + b.ids,
        np.concatenate([a.splits, b.splits]),
        np.concatenate([a.nsites, b.nsites]),
        a.formulas + b.formulas,
        {lv: np.concatenate([a.spectra[lv], b.spectra[lv]]) for lv in a.spectra},
        a.structures + b.structures,
        a.grid,
        np.concatenate([a.protocols, b.protocols]),
        np.concatenate([a.numerics, b.numerics]),
        a.components,
    )


def load_sets(store, extra: tuple[str, ...] = ()) -> dict[str, EvalSet]:
    """``pool`` (train + none), ``validation`` and ``test`` sets of ``store`` plus ``extra`` evaluation folders."""
    from ..data.store import Store

    data = store.table()
    gaps = {r["mat_id"]: r.get("gap_direct") for r in store.index()}
    for folder in extra:
        ex_store = Store(Path(folder))
        ex = ex_store.table()
        bad = [i for i in ex.ids if split_of(i) not in ("validation", "test")]
        if bad:
            raise ValueError(
                f"{folder}: {len(bad)} record(s) are not validation/test materials (e.g. {bad[0]})"
            )
        keep = [i not in set(data.ids) for i in ex.ids]
        gaps.update({r["mat_id"]: r.get("gap_direct") for r in ex_store.index()})
        data = _concat(data, ex.subset(keep))
    g = np.array([np.nan if gaps.get(i) is None else float(gaps[i]) for i in data.ids])
    out = {}
    for name, splits in (("pool", ("train", "none")), ("validation", ("validation",)), ("test", ("test",))):
        mask = np.isin(data.splits, splits)
        out[name] = EvalSet(data.subset(mask), g[mask])
    check_trainable(out["pool"].arrays.ids, context="levers pool")
    return out


def study_sets(store, extra: tuple[str, ...] = (), pool_limit: int = 0, seed: int = 0, study: str = "levers"):
    """:func:`load_sets` with the pool cut to a seeded random ``pool_limit`` materials (0: all); checks that
    there are ≥ 4 training, ≥ 1 validation and ≥ 1 test material. Returns ``(pool, validation, test)``."""
    sets = load_sets(store, extra)
    pool, val, test = sets["pool"], sets["validation"], sets["test"]
    if pool_limit and len(pool) > pool_limit:
        keep = np.zeros(len(pool), bool)
        keep[np.random.default_rng(seed).permutation(len(pool))[:pool_limit]] = True
        pool = EvalSet(pool.arrays.subset(keep), pool.gaps[keep])
    if len(pool) < 4 or not len(val) or not len(test):
        raise ValueError(f"the {study} study needs ≥ 4 training, ≥ 1 validation and ≥ 1 test material")
    return pool, val, test


def found_label(models: tuple[str, ...]) -> str:
    """``"none"`` or the foundation models joined by ``+`` (keys of ``results.json``)."""
    return "+".join(models) or "none"


class Featurize:
    """Graph ``Data`` lists of structures with the node features of some foundation models (a tuple of names;
    ``()``: one-hot only), graphs and embeddings cached on disk."""

    def __init__(self):
        self.featurizers: dict[tuple[str, ...], Any] = {}

    def featurizer(self, models: tuple[str, ...] = PLAIN):
        """The featurizer of node features ‖ ``models``' embeddings (the plain OptiMate one for ``()``)."""
        from ..graphs import DEFAULT_FEATURIZER, FoundationFeaturizer

        models = tuple(models)
        if models not in self.featurizers:
            self.featurizers[models] = (
                FoundationFeaturizer(foundation=models) if models else DEFAULT_FEATURIZER
            )
        return self.featurizers[models]

    def data(
        self, ids, structures, *, foundation: tuple[str, ...] = PLAIN, y: np.ndarray | None = None
    ) -> list:
        from ..graphs import GraphCache
        from ..training import make_data

        graphs = GraphCache(self.featurizer(foundation)).graphs(list(ids), list(structures))
        return make_data(graphs, y, list(ids))


# --------------------------------------------------------------------------------------------------
# training pieces
# --------------------------------------------------------------------------------------------------
def _settings(opts: LeverOptions, kind: str, seed: int):
    from ..training import TrainSettings

    base = TrainSettings(max_epochs=opts.max_epochs, patience=opts.patience, seed=seed)
    if kind == "scratch":
        return replace(base, lr=1e-3, weight_decay=1e-5, batch_size=32, max_seconds=opts.ipa_seconds)
    tl = replace(base, max_epochs=opts.tl_epochs, patience=opts.tl_patience)
    if kind in ("tuned", "lpft"):  # lpft: these are its second stage's (all weights) settings
        return replace(tl, lr=2e-4, weight_decay=1e-4, batch_size=32, max_seconds=opts.tl_seconds)
    if kind == "paper":  # lr 1e-5, batch 128: ~3 steps per epoch here, so more epochs than ours
        return replace(
            TrainSettings.paper_transfer(seed=seed),
            max_epochs=opts.tl_epochs * 3,
            patience=opts.tl_patience * 3,
            max_seconds=opts.paper_tl_seconds,
        )
    if kind == "probe":  # lpft's first stage: the head alone, a larger step, a short run
        return replace(
            tl, lr=1e-3, weight_decay=1e-4, batch_size=32, max_epochs=opts.probe_epochs,
            patience=opts.probe_patience, max_seconds=opts.tl_seconds,
        )  # fmt: skip
    if kind == "aux":
        return replace(tl, lr=3e-4, weight_decay=1e-4, batch_size=32, max_seconds=opts.aux_seconds)
    if kind == "free":  # epoch-bounded (a time cap would make the lever depend on the machine's load)
        return replace(
            base, lr=1e-3, weight_decay=1e-5, batch_size=64, max_epochs=opts.free_epochs, patience=opts.free_epochs,
            max_seconds=opts.free_seconds,
        )  # fmt: skip
    raise ValueError(kind)


def training_settings(options: dict[str, Any], variant: str, name: str, seed: int) -> dict[str, Any]:
    """The settings (a ``TrainSettings`` as a dict) a run with ``options`` (``LeverOptions.to_dict()``, e.g. from
    ``results.json``) used for the winner ``variant``'s model ``name`` (``ipa``, ``rpa`` members, ``sc``)."""
    from dataclasses import fields

    known = {f.name for f in fields(LeverOptions)}
    opts = LeverOptions(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in known}
    )
    kind = {"ipa": "scratch", "rpa": VARIANTS[variant].tl, "sc": "aux"}[name]
    out = asdict(_settings(opts, kind, seed))
    if kind == "lpft":
        out["probe"] = asdict(_settings(opts, "probe", seed))
    return out


def _fine_tune(model, train: list, val: list, opts: LeverOptions, kind: str, seed: int):
    """RPA fine-tuning of ``model`` (a copy of the IPA parent) with the variant's ``kind`` of settings."""
    from ..training import fit, probe_then_fit

    if kind == "lpft":
        return probe_then_fit(model, train, val, _settings(opts, kind, seed), _settings(opts, "probe", seed))
    return fit(model, train, val, _settings(opts, kind, seed))


def _new_model(node_dim: int, arch: str = "optimate", **kw: Any):
    """A fresh network of ``arch`` (OptiMate with batch norm, or CGAT) on ``node_dim`` node features."""
    from ..nn import CGAT, OptiMate

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {ARCHS}")
    return (CGAT if arch == "cgat" else OptiMate)(node_dim=node_dim, norm="batch_norm", **kw)


def _finish(raw: np.ndarray) -> np.ndarray:
    """Raw RPA network output ``[n, G]`` → the reported spectrum (the RPA target's post-processing: the
    same as the Predictor and the model cards)."""
    from ..targets import get_target

    return get_target(LEVELS[1]).finish(raw)


def _scores(pred: np.ndarray, es: EvalSet) -> tuple[Any, dict[str, Any]]:
    """Per-material scores and summary of post-processed predictions ``pred`` ``[n, G]``."""
    from ..evaluation import by_cell_size, scores_for, summary

    frame = scores_for(pred, es.arrays, LEVELS[1])
    return frame, {
        **summary(frame),
        "by_cell_size": {
            int(r["nsites"]): float(r["median_sc"]) for r in by_cell_size(frame).to_dict("records")
        },
    }


# --------------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------------
def run_levers(out: str | Path, options: LeverOptions | None = None, store=None) -> dict[str, Any]:
    """Run the levers study; writes ``results.json``, ``test_scores.csv``, ``uncertainty_test.csv`` and
    ``README.md`` to ``out`` and returns the results."""
    import datetime as dt

    import pandas as pd
    import torch

    from ..data.store import Store
    from ..domain import first_shell_pairs
    from ..evaluation.uncertainty import (
        Calibration,
        LatentDomain,
        coverage,
        ensemble_stats,
        spearman,
        warning_report,
        warning_thresholds,
    )
    from ..onset import apply_onset
    from ..spectra import similarity_coefficient
    from ..targets import get_target
    from ..training import Model, embed, fit, make_card, predict, save_model, seed_everything, with_targets
    from ..training.freelabels import free_label_set, pretrain_free_labels, transfer_body
    from .paper import choose_threads
    from .report_levers import write_levers_readme
    from .sc import train_scalar_heads

    opts = options or LeverOptions()
    unknown = [v for v in opts.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(choose_threads(opts.threads))
    t0 = time.perf_counter()
    pool, val, test = study_sets(store or Store(), opts.extra, opts.pool_limit, opts.seed)
    log.info("levers: pool %d, validation %d, test %d", len(pool), len(val), len(test))
    feat = Featurize()
    kinds = sorted({VARIANTS[v].found for v in opts.variants})
    for found in kinds:  # a missing foundation package: one line, before any training
        feat.featurizer(found).check_available()
    node_dim = {found: feat.featurizer(found).node_dim for found in kinds}
    data: dict[tuple[str, tuple[str, ...]], list] = {}
    for name, es in (("pool", pool), ("validation", val), ("test", test)):
        for found in kinds:
            data[(name, found)] = feat.data(es.arrays.ids, es.arrays.structures, foundation=found)
    y_ipa, y_rpa = pool.arrays.ipa.astype(np.float32), pool.arrays.rpa.astype(np.float32)
    # first-shell element pairs no pool crystal has (what the Predictor's domain of the saved cards says)
    pool_bonds = set().union(*(first_shell_pairs(s) for s in pool.arrays.structures))
    novel = {
        name: np.array([bool(first_shell_pairs(s) - pool_bonds) for s in es.arrays.structures], bool)
        for name, es in (("validation", val), ("test", test))
    }
    perm = np.random.default_rng(opts.seed).permutation(len(pool))
    sizes = [s for s in sorted(set(opts.sizes)) if s < len(pool)] + [len(pool)]
    size_label = {s: ("all" if s == len(pool) else str(s)) for s in sizes}
    results: dict[str, Any] = {"runs": {}, "skipped_sizes": [s for s in opts.sizes if s >= len(pool)]}

    # ---- free-label pretraining, once per node-feature kind -----------------------------------------
    free_models: dict[tuple[tuple[str, ...], str], Any] = {}  # (foundation models, arch) → pretrained network
    if any(VARIANTS[v].free for v in opts.variants):
        fl = free_label_set()
        if opts.free_limit and len(fl) > opts.free_limit:
            idx = np.random.default_rng(opts.seed).permutation(len(fl))[: opts.free_limit]
            fl.ids = [fl.ids[i] for i in idx]
            fl.structures = [fl.structures[i] for i in idx]
            fl.nsites, fl.y = fl.nsites[idx], fl.y[idx]
        results["free_labels"] = {
            "n": len(fl),
            "nsites": {
                int(k): int(v) for k, v in zip(*np.unique(fl.nsites, return_counts=True), strict=True)
            },
        }
        for found, arch in sorted(
            {(VARIANTS[v].found, VARIANTS[v].arch) for v in opts.variants if VARIANTS[v].free}
        ):
            fdata = feat.data(fl.ids, fl.structures, foundation=found)
            model, res = pretrain_free_labels(
                fdata, fl.y, settings=_settings(opts, "free", opts.seed),
                model_kwargs={"node_dim": node_dim[found], "norm": "batch_norm"},
                model_class=type(_new_model(node_dim[found], arch)),
            )  # fmt: skip
            free_models[(found, arch)] = model
            label = f"foundation={found_label(found)}" + ("" if arch == "optimate" else f" arch={arch}")
            results["free_labels"][label] = {
                "best_epoch": res.best_epoch, "epochs": res.epochs_run, "val_l1_std_units": res.best_val_loss,
                "seconds": round(res.seconds, 1),
            }  # fmt: skip

    # ---- phase 1: variants × seeds × sizes -----------------------------------------------------------
    ipa_models: dict[tuple[bool, tuple[str, ...], str, int], Any] = {}
    tl_models: dict[tuple[str, int], Any] = {}
    frames = []
    per: dict[str, dict[str, list]] = {}
    for j in range(opts.seeds):
        seed = opts.seed + j
        for v in opts.variants:
            if v == "faithful-paper" and j >= opts.paper_seeds:
                continue
            free, found, tl_kind, arch = VARIANTS[v]
            key = (free, found, arch, seed)
            if key not in ipa_models:
                # initial weights from this seed alone, not from the RNG state the runs before left behind
                seed_everything(seed)
                model = _new_model(node_dim[found], arch)
                if free:
                    transfer_body(free_models[(found, arch)], model)
                fr = fit(model, with_targets(data[("pool", found)], y_ipa),
                         with_targets(data[("validation", found)], val.arrays.ipa), _settings(opts, "scratch", seed))  # fmt: skip
                ipa_models[key] = model
                arch_label = "" if arch == "optimate" else f" arch={arch}"
                results["runs"][f"ipa free={free} found={found_label(found)}{arch_label} seed={seed}"] = {
                    "best_epoch": fr.best_epoch, "epochs": fr.epochs_run, "seconds": round(fr.seconds, 1)}  # fmt: skip
            for s in sizes:
                import copy

                ids = np.sort(perm[:s])
                model = copy.deepcopy(ipa_models[key])
                tr = [data[("pool", found)][i] for i in ids]
                fr = _fine_tune(model, with_targets(tr, y_rpa[ids]),
                                with_targets(data[("validation", found)], val.arrays.rpa), opts, tl_kind, seed)  # fmt: skip
                row = per.setdefault(f"{v}|{size_label[s]}", {"validation": [], "test": [], "seconds": []})
                for name, es in (("validation", val), ("test", test)):
                    frame, summ = _scores(_finish(predict(model, data[(name, found)])), es)
                    row[name].append(summ)
                    if name == "test" and j == 0:
                        frames.append(frame.assign(model=v, size=size_label[s]))
                row["seconds"].append(round(fr.seconds, 1))
                if s == len(pool):
                    tl_models[(v, seed)] = model
                log.info("levers: %s size %s seed %d: val %.3f test %.3f (%.0f s)", v, size_label[s], seed,
                         row["validation"][-1]["median_sc"], row["test"][-1]["median_sc"], fr.seconds)  # fmt: skip

    def agg(rows: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [k for k in ("median_sc", "mean_sc", "p10_sc", "median_mse") if k in rows[0]]
        out_ = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        out_.update({f"{k}_std": float(np.std([r[k] for r in rows])) for k in keys})
        out_["median_sc_seeds"] = [r["median_sc"] for r in rows]
        cells = sorted({c for r in rows for c in r["by_cell_size"]})
        out_["by_cell_size"] = {
            c: float(np.mean([r["by_cell_size"][c] for r in rows if c in r["by_cell_size"]])) for c in cells
        }
        out_["n"] = rows[0]["n"]
        return out_

    table = {
        k: {"validation": agg(r["validation"]), "test": agg(r["test"]), "seconds": r["seconds"]}
        for k, r in per.items()
    }
    results["table"] = table
    all_label = size_label[len(pool)]
    base_cands = [b for b in BASELINES if f"{b}|{all_label}" in table]
    baseline = (
        # on the first seed's validation median (the paper's settings may run on fewer seeds)
        max(base_cands, key=lambda b: per[f"{b}|{all_label}"]["validation"][0]["median_sc"])
        if base_cands
        else None
    )
    winner = max(opts.variants, key=lambda v: table[f"{v}|{all_label}"]["validation"]["median_sc"])
    results.update(baseline=baseline, winner=winner)
    log.info("levers: baseline %s, winner %s", baseline, winner)

    # ---- phase 2: ensemble, uncertainty, domain, onset and SC predictors for the winner ---------------
    free, found, tl_kind, arch = VARIANTS[winner]
    ens_rows: list[dict[str, Any]] = []
    unc_frames = []
    members_by_seed: dict[int, tuple[list, dict[str, Any]]] = {}  # seed → (members, their evaluation)

    def evaluate(members: list, preds: dict | None = None, latent: tuple | None = None) -> dict[str, Any]:
        """An ensemble's raw member outputs (what an ensemble Model's one forward averages; the reported spectrum
        is the post-processed mean, the agreement comes from the raw mean and spread, as in the Predictor), the
        first member's latent domain, its calibration and warning rule fitted on validation, and their
        ``summary`` (the results.json keys). ``preds`` (``{split: [K, n, G]}``) and ``latent`` (``(domain,
        {split: z})`` of ``members[0]``), when given, are reused instead of recomputed."""
        if preds is None:
            preds = {
                n: np.stack([predict(m, data[(n, found)]) for m in members]) for n in ("validation", "test")
            }
        if latent is None:
            z = {n: embed(members[0], data[(n, found)]) for n in ("pool", "validation", "test")}
            latent = (LatentDomain.fit(z["pool"]), z)
        domain, z = latent
        st = {n: ensemble_stats(preds[n], val.arrays.grid) for n in preds}
        for n in st:
            st[n]["mean"] = _finish(st[n]["mean"])
        dist = {n: domain.distance(z[n]) for n in preds}
        sets_ = {"validation": val, "test": test}
        actual = {
            n: similarity_coefficient(st[n]["mean"], sets_[n].arrays.rpa, val.arrays.grid) for n in preds
        }
        cal = Calibration.fit(st["validation"]["agreement"], dist["validation"], actual["validation"])
        exp = {n: cal.expected(st[n]["agreement"], dist[n]) for n in preds}
        lo, hi = cal.interval(exp["test"])
        rule = warning_thresholds(exp["validation"], dist["validation"], actual["validation"])
        summary = {
            "ensemble_validation": _scores(st["validation"]["mean"], val)[1],
            "ensemble_test": _scores(st["test"]["mean"], test)[1],
            "calibration": cal.to_dict(),
            "spearman_test": spearman(exp["test"], actual["test"]),
            "spearman_validation": spearman(exp["validation"], actual["validation"]),
            "spearman_agreement_only_test": spearman(st["test"]["agreement"], actual["test"]),
            "coverage80_test": coverage(lo, hi, actual["test"]),
            "warning_rule": rule.to_dict(),
            "warnings_validation": warning_report(rule, exp["validation"], dist["validation"], actual["validation"],
                                                  novel["validation"]),
            "warnings_test": warning_report(rule, exp["test"], dist["test"], actual["test"], novel["test"]),
        }  # fmt: skip
        return dict(preds=preds, domain=domain, z=z, st=st, dist=dist, actual=actual, cal=cal, exp=exp, lo=lo, hi=hi,
                    rule=rule, summary=summary)  # fmt: skip

    saved_rpa: dict[str, Any] = {}
    for j in range(opts.seeds):
        seed = opts.seed + j
        import copy

        parent = ipa_models[(free, found, arch, seed)]
        members = [tl_models[(winner, seed)]]
        for k in range(1, opts.ensemble):
            m = copy.deepcopy(parent)
            _fine_tune(m, with_targets(data[("pool", found)], y_rpa),
                       with_targets(data[("validation", found)], val.arrays.rpa), opts, tl_kind, seed * 1000 + k)  # fmt: skip
            members.append(m)
        ev = evaluate(members)
        members_by_seed[seed] = (members, ev)
        preds, st, dist, actual = ev["preds"], ev["st"], ev["dist"], ev["actual"]
        cal, exp, lo, hi, rule, domain = ev["cal"], ev["exp"], ev["lo"], ev["hi"], ev["rule"], ev["domain"]
        sets_ = {"validation": val, "test": test}
        # onset rule from a gap model (our gap_direct), kept only if it helps on validation
        gmask = np.isfinite(pool.gaps)
        (gap_model,) = train_scalar_heads(
            [parent], [d for d, ok in zip(data[("pool", found)], gmask, strict=True) if ok], pool.gaps[gmask],
            data[("validation", found)], np.nan_to_num(val.gaps), lambda _s, seed=seed: _settings(opts, "aux", seed),
        )  # fmt: skip
        gap_pred = {n: predict(gap_model, data[(n, found)])[:, 0] for n in preds}
        onset = {n: apply_onset(st[n]["mean"], val.arrays.grid, gap_pred[n]) for n in preds}
        onset_sc = {n: similarity_coefficient(onset[n], sets_[n].arrays.rpa, val.arrays.grid) for n in preds}
        oracle_sc = similarity_coefficient(apply_onset(st["test"]["mean"], val.arrays.grid, np.nan_to_num(test.gaps)),
                                           test.arrays.rpa, val.arrays.grid)  # fmt: skip
        # SC[RPA; IPA] of the predicted spectra (the 1-value networks are trained once, for the ensemble that
        # ships, after the seeds: optiladder.study.sc)
        sc_pool = similarity_coefficient(pool.arrays.rpa, pool.arrays.ipa, pool.arrays.grid)
        sc_val = similarity_coefficient(val.arrays.rpa, val.arrays.ipa, val.arrays.grid)
        sc_test = similarity_coefficient(test.arrays.rpa, test.arrays.ipa, test.arrays.grid)
        ipa_pred = {n: get_target(LEVELS[0]).finish(predict(parent, data[(n, found)])) for n in preds}
        sc_spec = {
            n: similarity_coefficient(st[n]["mean"], np.clip(ipa_pred[n], 0, None), val.arrays.grid)
            for n in preds
        }
        sc_ref = {"validation": sc_val, "test": sc_test}

        def mae(p, n, ref=sc_ref):
            return float(np.mean(np.abs(p[n] - ref[n])))

        row = {
            "seed": seed,
            "members": len(members),
            **ev["summary"],
            "single_test_median_sc": float(np.median(similarity_coefficient(_finish(preds["test"][0]), test.arrays.rpa, val.arrays.grid))),
            "onset": {
                "validation_median_sc": [float(np.median(actual["validation"])), float(np.median(onset_sc["validation"]))],
                "test_median_sc": [float(np.median(actual["test"])), float(np.median(onset_sc["test"]))],
                "test_median_sc_true_gap": float(np.median(oracle_sc)),
                "gap_mae_validation": float(np.nanmean(np.abs(gap_pred["validation"] - val.gaps))),
            },
            "sc_predictor": {
                "spectra_mae_validation": mae(sc_spec, "validation"), "spectra_mae_test": mae(sc_spec, "test"),
                "mean_baseline_mae_test": float(np.mean(np.abs(sc_pool.mean() - sc_test))),
            },
        }  # fmt: skip
        ens_rows.append(row)
        if j == 0:
            unc_frames.append(pd.DataFrame({
                "mat_id": test.arrays.ids, "formula": test.arrays.formulas, "nsites": test.arrays.nsites,
                "sc": actual["test"], "sc_onset": onset_sc["test"], "expected_sc": exp["test"], "lo80": lo, "hi80": hi,
                "agreement": st["test"]["agreement"], "latent_distance": dist["test"],
                "novel_bond": novel["test"], "warning": rule.flags(exp["test"], dist["test"], novel["test"]),
                "gap_direct": test.gaps, "gap_pred": gap_pred["test"],
                "sc_rpa_ipa": sc_test, "sc_rpa_ipa_spectra": sc_spec["test"],
            }))  # fmt: skip
            if opts.save_models:
                lever = {"variant": winner, "free_labels": free, "foundation": list(found), "arch": arch,
                         "seed": seed}  # fmt: skip
                common = dict(
                    train_ids=pool.arrays.ids, n_validation=len(val), train_splits=("train", "none")
                )
                saved_rpa.update(lever=lever, common=common, domain_scale=domain.scale, members=members,
                                 cal=cal, rule=rule)  # fmt: skip
                ipa_card = make_card(
                    name=f"levers-ipa-{winner}",
                    target=get_target(LEVELS[0]),
                    extra={"levers": lever},
                    **common,
                )
                save_model(
                    out / "models" / "ipa",
                    Model([parent], feat.featurizer(found), get_target(LEVELS[0]), ipa_card),
                )
    results["ensemble"] = ens_rows

    # ---- an ensemble across the seeds' IPA parents (round-robin over seeds; member 0 is seed 0's, so the latent
    # domain is the same), against seed 0's ensemble of one parent: the one with the better validation median ships
    seeds_run = sorted(members_by_seed)
    choice = {"shipped": "one-parent", "reason": "fewer than 2 seeds"}
    cross: list | None = None
    if len(seeds_run) >= 2:
        k_all = len(members_by_seed[seeds_run[0]][0])
        picks = [(seeds_run[k % len(seeds_run)], k // len(seeds_run)) for k in range(k_all)]
        cross = [members_by_seed[s][0][i] for s, i in picks]
        # the members' outputs and member 0's latent domain were computed in the seeds' own evaluations
        first = members_by_seed[seeds_run[0]][1]
        ev = evaluate(cross, preds={n: np.stack([members_by_seed[s][1]["preds"][n][i] for s, i in picks])
                                    for n in ("validation", "test")},
                      latent=(first["domain"], first["z"]))  # fmt: skip
        c_val = ev["summary"]["ensemble_validation"]
        one_val = ens_rows[0]["ensemble_validation"]["median_sc"]
        better = c_val["median_sc"] > one_val
        results["ensemble_cross_parents"] = {"members": [list(p) for p in picks], **ev["summary"]}
        choice = {
            "shipped": "cross-parents" if better else "one-parent",
            "reason": f"validation median {c_val['median_sc']:.4f} (cross) vs {one_val:.4f} (seed {seeds_run[0]})",
        }
        if better and saved_rpa:
            saved_rpa.update(members=cross, cal=ev["cal"], rule=ev["rule"], domain_scale=ev["domain"].scale)
    results["ensemble_choice"] = choice
    ship_members = cross if choice["shipped"] == "cross-parents" else members_by_seed[seeds_run[0]][0]
    sc_extra: dict[str, Any] = {}
    if saved_rpa:
        lever, common, cal, rule = (
            saved_rpa["lever"],
            saved_rpa["common"],
            saved_rpa["cal"],
            saved_rpa["rule"],
        )
        members = saved_rpa["members"]
        # the seed of each member's IPA parent (the shipped ipa model is seed ``lever["seed"]``'s)
        parents = (
            [m[0] for m in results["ensemble_cross_parents"]["members"]]
            if choice["shipped"] == "cross-parents"
            else [lever["seed"]] * len(members)
        )
        lever = {**lever, "ensemble": choice["shipped"], "member_parents": parents}
        sc_extra = {"levers": lever}
        uncertainty = {
            "calibration": cal.to_dict(), "rule": rule.to_dict(), "latent_scale": saved_rpa["domain_scale"],
            "fitted_on": f"validation split ({len(val)} materials), {choice['shipped']} ensemble",
            "agreement": "1 - integral(spread) / integral(|mean|), raw outputs",
        }  # fmt: skip
        how = (f"fine-tuned from the IPA models of seeds {seeds_run} (round-robin; member 0 from the shipped ipa)"
               if choice["shipped"] == "cross-parents" else "fine-tuned from one IPA model")  # fmt: skip
        rpa_card = make_card(
            name=f"levers-rpa-{winner}", target=get_target(LEVELS[1]), full_name=f"RPA ensemble of {len(members)} ({winner})",
            description=f"levers study winner: ensemble members {how}",
            extra={"levers": lever, "uncertainty": uncertainty}, **common,
        )  # fmt: skip
        save_model(
            out / "models" / "rpa-ensemble",
            Model(members, feat.featurizer(found), get_target(LEVELS[1]), rpa_card),
        )

    # ---- SC[RPA; IPA] networks for the ensemble that ships: the recipes of optiladder.study.sc side by side
    # (fine-tuned from the IPA parent, or one from each member), the better on validation saved as models/sc
    from .sc import ScOptions, run_sc_study

    tl = _settings(opts, "aux", opts.seed)
    ids = dict(train_ids=pool.arrays.ids, n_validation=len(val), train_splits=("train", "none"))
    sc_res = run_sc_study(
        out / "sc",
        ScOptions(train=tuple((k, v) for k, v in asdict(tl).items() if k != "seed"), seed=opts.seed,
                  ipa_heads=opts.sc_members, seeds=1 if opts.quick else 2, save_models=opts.save_models,
                  quick=opts.quick),
        rpa=Model(ship_members, feat.featurizer(found), get_target(LEVELS[1]),
                  make_card(name=f"levers-rpa-{winner}", target=get_target(LEVELS[1]), **ids)),
        ipa=Model([ipa_models[(free, found, arch, seeds_run[0])]], feat.featurizer(found), get_target(LEVELS[0]),
                  make_card(name=f"levers-ipa-{winner}", target=get_target(LEVELS[0]), **ids)),
        store=store, models_dir=out / "models" / "sc", command="optiladder study levers", card_extra=sc_extra,
    )  # fmt: skip
    results["sc"] = {
        k: sc_res[k]
        for k in (
            "recipes",
            "winner",
            "baseline",
            "mean_baseline_mae",
            "seconds",
            "best_vs_cheapest_validation",
        )
        if k in sc_res
    }
    results.update(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        options=opts.to_dict(),
        n={"pool": len(pool), "validation": len(val), "test": len(test)},
        cells={
            n: {int(k): int(v) for k, v in zip(*np.unique(es.arrays.nsites, return_counts=True), strict=True)}
            for n, es in (("pool", pool), ("validation", val), ("test", test))
        },  # fmt: skip
        seconds=round(time.perf_counter() - t0, 1),
    )
    if frames:
        pd.concat(frames, ignore_index=True).to_csv(out / "test_scores.csv", index=False, float_format="%.5f")
    if unc_frames:
        unc_frames[0].to_csv(out / "uncertainty_test.csv", index=False, float_format="%.5f")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_levers_readme(out, results)
    log.info("levers study written to %s in %.0f s", out, results["seconds"])
    return results


__all__ = [
    "VARIANTS",
    "Variant",
    "Featurize",
    "found_label",
    "LeverOptions",
    "load_sets",
    "run_levers",
    "study_sets",
    "training_settings",
]
