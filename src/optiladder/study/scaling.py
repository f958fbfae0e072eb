"""The scaling study: how the RPA error falls with the number of cheap (IPA) and costly (RPA) spectra, which
transfer works, and CGAT beside OptiMate (issue 12; after Hoffmann et al., Digital Discovery 2, 1368 (2023)).

Built from the levers study's pieces (:mod:`optiladder.study.levers`: the same sets, graphs, training settings,
post-processing and scores), one grid per seed:

* **direct learning** (DL): OptiMate (and CGAT) from random weights on the RPA spectra of N_RPA pool materials;
* **transfer learning** (TL): an IPA model pretrained on N_pre IPA spectra (optionally after the free-label stage:
  Alexandria PBE gaps and formation energies of train/none structures), then RPA fine-tuning of all weights
  ("full") or of the regression head only ("head"), on N_RPA materials. Full transfer fills the heat map
  N_pre × N_RPA; head-only, free labels and CGAT run along the two edges (N_pre = all for every N_RPA; N_RPA =
  ``rpa_ref`` for every N_pre);
* subsets are nested prefixes of one seeded permutation per seed (of the pool for RPA, of the pretraining set for
  IPA);
* early stopping on the validation split, every reported number on the test split (median SC[RPA_ML; RPA_DFT],
  median MAE, by cell size).

The IPA pretraining source is a parameter: ``v1`` (the IPA spectra of the pool's own v1 records, so N_pre ≤ the
pool), ``lite`` (records of the cheap IPA-only protocol, read by ``optiladder.data.store.cheap_ipa_records`` when
that function exists and the folder holds records) or ``auto`` (lite when available with more materials than the
pool, else v1). Validation and test materials of any source are refused (never trained on, at any level).

Analysis (:mod:`.laws`): power-law fits with 95 % intervals of ``1 − median SC`` and of the median MAE against N,
the two-size law over the heat map, its backtest and the paper's claims one by one (:func:`analyse`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.splits import TRAINABLE, check_trainable, split_of
from ..targets import LEVELS

log = logging.getLogger(__name__)

#: the IPA pretraining sources
IPA_SOURCES: tuple[str, ...] = ("auto", "v1", "lite")
#: the cheap IPA protocol's record folder, beside ``dataset/records``
LITE_FOLDER = "ipa-lite"


@dataclass(frozen=True)
class ScalingOptions:
    """Settings of :func:`run_scaling`. Sizes larger than the available materials are dropped and "all" is
    always added. Runs are bounded by epochs (``max_epochs``/``patience`` from scratch, ``tl_epochs``/
    ``tl_patience`` for fine-tuning, ``free_epochs`` for the free-label stage on ``free_limit`` structures);
    ``run_seconds`` is only a safety cap per run. ``dl=False`` skips direct learning (e.g. extra seeds of the
    heat map only, for the backtest of the law)."""

    seeds: int = 3
    seed: int = 0
    pre_sizes: tuple[int, ...] = (25, 50, 100, 200, 400, 800, 1600)
    rpa_sizes: tuple[int, ...] = (25, 50, 100, 200)
    rpa_ref: int = 100
    heatmap: bool = True
    dl: bool = True
    free_labels: bool = True
    head_only: bool = True
    cgat: bool = True
    ipa_source: str = "auto"
    lite_root: str | None = None
    max_epochs: int = 60
    patience: int = 12
    tl_epochs: int = 40
    tl_patience: int = 10
    free_epochs: int = 4
    free_limit: int = 1000
    run_seconds: float = 900.0
    pool_limit: int = 0
    extra: tuple[str, ...] = ()
    quick: bool = False
    threads: int | None = None

    @classmethod
    def quick_mode(cls, **overrides: Any) -> ScalingOptions:
        """A few-minute CI run: 60 pool materials, sizes 15/30 (+ all), 1 seed, a few epochs, 150 free labels."""
        base = dict(
            seeds=1, pre_sizes=(20,), rpa_sizes=(15, 30), rpa_ref=30, max_epochs=6, patience=3, tl_epochs=4,
            tl_patience=3, free_epochs=2, free_limit=150, run_seconds=30.0, pool_limit=60, quick=True,
        )  # fmt: skip
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lever_options(self):
        """The levers study's options carrying these epoch bounds (its ``_settings`` builds every run)."""
        from .levers import LeverOptions

        s = self.run_seconds
        return LeverOptions(
            max_epochs=self.max_epochs, patience=self.patience, tl_epochs=self.tl_epochs,
            tl_patience=self.tl_patience, free_epochs=self.free_epochs, ipa_seconds=s, tl_seconds=s,
            free_seconds=s, paper_tl_seconds=s, aux_seconds=s,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# the IPA pretraining source
# --------------------------------------------------------------------------------------------------
@dataclass
class PretrainSet:
    """IPA pretraining material: ``ids`` ``[n]``, pymatgen ``structures``, ``y`` Im ε(IPA) ``[n, G]``, ``nsites``."""

    source: str
    ids: list[str]
    structures: list[dict]
    y: np.ndarray
    nsites: np.ndarray
    refused: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def _lite_root(store_root: Path, lite_root: str | None) -> Path:
    return Path(lite_root) if lite_root else Path(store_root).parent / LITE_FOLDER


def cheap_ipa_set(root: Path, grid: np.ndarray) -> PretrainSet | None:
    """The cheap-IPA records of ``root`` through ``optiladder.data.store.cheap_ipa_records`` (None when the
    function or the folder does not exist, or holds nothing). Validation/test materials are dropped (counted in
    ``refused``), the rest checked with the leakage guard. Accepts the function returning a ``DatasetArrays``
    (with an ``ipa`` level) or an iterable of records."""
    try:
        from ..data.store import cheap_ipa_records  # added with the cheap IPA protocol
    except ImportError:
        return None
    if not Path(root).is_dir():
        return None
    from ..targets import TRACE, Grid, record_traces

    got = cheap_ipa_records(root)
    if hasattr(got, "ids") and hasattr(got, "spectra"):
        ids, structs, nsites = list(got.ids), list(got.structures), np.asarray(got.nsites)
        y = np.asarray(got.spectrum(LEVELS[0]), float)
        if y.shape[1] != len(grid) or (hasattr(got, "grid") and not np.allclose(got.grid, grid)):
            raise ValueError(f"{root}: cheap IPA spectra are not on the model grid")
    else:
        recs = list(got)
        g = Grid.of(grid)
        ids = [r["mat_id"] for r in recs]
        structs = [r["structure"] for r in recs]
        nsites = np.array([int(r["nsites"]) for r in recs])
        y = np.stack([record_traces(r, g, (LEVELS[0],), (TRACE,))[LEVELS[0]] for r in recs]) if recs else None
    if not ids:
        return None
    keep = np.array([split_of(i) in TRAINABLE for i in ids])
    ids = [i for i, k in zip(ids, keep, strict=True) if k]
    check_trainable(ids, context=f"cheap IPA records {root}")
    return PretrainSet("lite", ids, [s for s, k in zip(structs, keep, strict=True) if k], y[keep], nsites[keep],
                       refused=int((~keep).sum()))  # fmt: skip


def pretrain_set(source: str, pool, store_root: Path, lite_root: str | None = None) -> PretrainSet:
    """The IPA pretraining set of ``source`` (:data:`IPA_SOURCES`); ``pool``: the levers ``EvalSet`` pool."""
    if source not in IPA_SOURCES:
        raise ValueError(f"unknown IPA source {source!r}; known: {IPA_SOURCES}")
    a = pool.arrays
    v1 = PretrainSet(
        "v1", list(a.ids), list(a.structures), a.spectrum(LEVELS[0]).astype(np.float32), a.nsites
    )
    if source == "v1":
        return v1
    lite = cheap_ipa_set(_lite_root(store_root, lite_root), a.grid)
    if source == "lite":
        if lite is None:
            raise ValueError(
                f"no cheap IPA records: {_lite_root(store_root, lite_root)} or data.store.cheap_ipa_records missing"
            )
        return lite
    return lite if lite is not None and len(lite) > len(v1) else v1


# --------------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------------
def _sizes(requested: tuple[int, ...], n: int) -> list[int]:
    return [s for s in sorted(set(requested)) if 0 < s < n] + [n]


def run_scaling(out: str | Path, options: ScalingOptions | None = None, store=None) -> dict[str, Any]:
    """Run the scaling study; writes ``results.json``, ``cells.csv``, ``training_ids.json``, figures and
    ``README.md`` to ``out`` (rewritten after every seed, so a stopped run leaves a labelled partial report)."""
    import datetime as dt

    import torch

    from ..data.store import Store
    from ..nn import CGAT
    from ..training import fit, ids_sha256, predict, seed_everything, with_targets
    from ..training.freelabels import free_label_set, pretrain_free_labels, transfer_body
    from .levers import Featurize, _finish, _new_model, _scores, _settings, study_sets
    from .paper import choose_threads
    from .report_scaling import write_scaling_report

    opts = options or ScalingOptions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(choose_threads(opts.threads))
    t0 = time.perf_counter()
    store = store or Store()
    pool, val, test = study_sets(store, opts.extra, opts.pool_limit, opts.seed, "scaling")
    pre = pretrain_set(opts.ipa_source, pool, store.root, opts.lite_root)
    lo = opts.lever_options()
    feat = Featurize()
    g = {n: feat.data(es.arrays.ids, es.arrays.structures, foundation=())
         for n, es in (("pool", pool), ("validation", val), ("test", test))}  # fmt: skip
    g["pre"] = g["pool"] if pre.source == "v1" else feat.data(pre.ids, pre.structures, foundation=())
    y_rpa = pool.arrays.rpa.astype(np.float32)
    val_ipa, val_rpa = (
        with_targets(g["validation"], val.arrays.ipa),
        with_targets(g["validation"], val.arrays.rpa),
    )
    pre_sizes, rpa_sizes = _sizes(opts.pre_sizes, len(pre)), _sizes(opts.rpa_sizes, len(pool))
    n_pre_all = pre_sizes[-1]
    rpa_ref = min(rpa_sizes, key=lambda s: abs(s - opts.rpa_ref))
    log.info("scaling: pool %d, %s IPA %d, validation %d, test %d; N_pre %s, N_RPA %s", len(pool), pre.source,
             len(pre), len(val), len(test), pre_sizes, rpa_sizes)  # fmt: skip
    results: dict[str, Any] = {
        "options": opts.to_dict(),
        "n": {"pool": len(pool), "pretrain": len(pre), "validation": len(val), "test": len(test)},
        "ipa_source": {"source": pre.source, "n": len(pre), "refused_validation_test": pre.refused},
        "pre_sizes": pre_sizes, "rpa_sizes": rpa_sizes, "rpa_ref": rpa_ref,
        "cells_by_set": {n: {int(k): int(v) for k, v in zip(*np.unique(es.arrays.nsites, return_counts=True), strict=True)}
                         for n, es in (("pool", pool), ("validation", val), ("test", test))},
        "cells": [], "seeds_done": 0,
    }  # fmt: skip
    train_ids: dict[str, list[str]] = {}
    # per-material SC of every model on validation and test (for bootstraps over materials and the
    # composition-aware backtest of :mod:`.laws`), written to ``per_material.json``
    per_material: dict[str, Any] = {
        "ids": {"validation": list(val.arrays.ids), "test": list(test.arrays.ids)},
        "nsites": {
            "validation": [int(n) for n in val.arrays.nsites],
            "test": [int(n) for n in test.arrays.nsites],
        },
        "sc": {},
    }

    # ---- free-label stage (once, shared by all seeds, as in the levers study; trained when first needed) --
    free_models: list = []

    def free_model():
        if free_models:
            return free_models[0]
        fl = free_label_set()
        if opts.free_limit and len(fl) > opts.free_limit:
            idx = np.random.default_rng(opts.seed).permutation(len(fl))[: opts.free_limit]
            fl.ids, fl.structures = [fl.ids[i] for i in idx], [fl.structures[i] for i in idx]
            fl.nsites, fl.y = fl.nsites[idx], fl.y[idx]
        check_trainable(fl.ids, context="scaling free labels")
        model, fr = pretrain_free_labels(
            feat.data(fl.ids, fl.structures, foundation=()), fl.y, settings=_settings(lo, "free", opts.seed),
            model_kwargs={"node_dim": feat.featurizer(()).node_dim, "norm": "batch_norm"},
        )  # fmt: skip
        train_ids["free-labels"] = sorted(fl.ids)
        results["free_labels"] = {"n": len(fl), "epochs": fr.epochs_run, "seconds": round(fr.seconds, 1)}
        free_models.append(model)
        return model

    def new_net(arch: str, seed: int):
        """A fresh network, its initial weights fixed by ``seed`` (not by what ran before it)."""
        seed_everything(seed)
        node_dim = feat.featurizer(()).node_dim
        return CGAT(node_dim=node_dim) if arch == "cgat" else _new_model(node_dim)

    def train(
        model,
        data: list,
        y: np.ndarray,
        ids: list[str],
        val_data: list,
        kind: str,
        seed: int,
        trainable="all",
    ):
        check_trainable(ids, context=f"scaling {kind}")
        model.set_trainable(trainable)
        fr = fit(model, with_targets(data, y), val_data, _settings(lo, kind, seed))
        model.set_trainable("all")
        return fr

    def record(model, *, arch, method, free, n_pre, n_rpa, seed, fr, ids):
        row = {"model": arch, "method": method, "free": free, "n_pre": n_pre, "n_rpa": n_rpa, "seed": seed,
               "seconds": round(fr.seconds, 1), "epochs": fr.epochs_run, "best_epoch": fr.best_epoch,
               "train_ids_sha256": ids_sha256(ids)}  # fmt: skip
        key = f"{arch}|{method}|free={free}|pre={n_pre}|rpa={n_rpa}|seed={seed}"
        sc = per_material["sc"].setdefault(key, {})
        for name, es in (("validation", val), ("test", test)):
            frame, row[name] = _scores(_finish(predict(model, g[name])), es)
            sc[name] = [round(float(v), 5) for v in frame["sc"]]
        results["cells"].append(row)
        train_ids[key] = sorted(ids)
        log.info("scaling: %s: val %.3f test %.3f (%.0f s)", key, row["validation"]["median_sc"],
                 row["test"]["median_sc"], fr.seconds)  # fmt: skip

    def checkpoint(progress: str, laws: bool):
        results.update(progress=progress, date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       seconds=round(time.perf_counter() - t0, 1))  # fmt: skip
        (out / "training_ids.json").write_text(json.dumps(train_ids, indent=0, sort_keys=True) + "\n")
        (out / "per_material.json").write_text(json.dumps(per_material, separators=(",", ":")) + "\n")
        write_scaling_report(out, results, laws)

    low = pre_sizes[:-1]  # N_pre below all
    rest = [s for s in rpa_sizes if s != rpa_ref]  # the heat map's other columns
    for j in range(opts.seeds):
        seed = opts.seed + j
        rng = np.random.default_rng(seed)
        perm_rpa, perm_pre = rng.permutation(len(pool)), rng.permutation(len(pre))
        rpa_idx = {s: np.sort(perm_rpa[:s]) for s in rpa_sizes}
        pre_idx = {s: np.sort(perm_pre[:s]) for s in pre_sizes}

        def rpa_data(s, rpa_idx=rpa_idx):
            idx = rpa_idx[s]
            return [g["pool"][i] for i in idx], y_rpa[idx], [pool.arrays.ids[i] for i in idx]

        def dl(arch, seed=seed, rpa_data=rpa_data):
            for s in rpa_sizes:
                m = new_net(arch, seed)
                d, y, ids = rpa_data(s)
                fr = train(m, d, y, ids, val_rpa, "scratch", seed)
                record(m, arch=arch, method="dl", free=False, n_pre=0, n_rpa=s, seed=seed, fr=fr, ids=ids)

        ipa_models: dict[tuple[str, bool, int], tuple[Any, list[str]]] = {}

        def tl(arch, free, p, sizes, seed=seed, rpa_data=rpa_data, pre_idx=pre_idx, ipa_models=ipa_models):
            """IPA model on N_pre = p (trained once per seed), then RPA fine-tuning at each N_RPA of ``sizes``."""
            if (arch, free, p) not in ipa_models:
                ipa = new_net(arch, seed)
                if free:
                    transfer_body(free_model(), ipa)
                idx = pre_idx[p]
                pids = [pre.ids[i] for i in idx]
                train(ipa, [g["pre"][i] for i in idx], pre.y[idx], pids, val_ipa, "scratch", seed)
                ipa_models[(arch, free, p)] = (ipa, pids)
            ipa, pids = ipa_models[(arch, free, p)]
            head = opts.head_only and p == n_pre_all and not free and arch == "optimate"
            for s in sizes:
                for method in ("tl", "tl-head") if head else ("tl",):
                    m = copy.deepcopy(ipa)
                    d, y, ids = rpa_data(s)
                    fr = train(m, d, y, ids, val_rpa, "tuned", seed, "head" if method == "tl-head" else "all")
                    record(m, arch=arch, method=method, free=free, n_pre=p, n_rpa=s, seed=seed, fr=fr,
                           ids=sorted(set(ids) | set(pids)))  # fmt: skip

        # the most informative cells first, so that a run stopped early still reports them: the N_RPA curves
        # at N_pre = all, the N_pre curve at N_RPA = rpa_ref (with them the two-size law), CGAT TL, free labels,
        # CGAT DL, then the rest of the heat map and the free-label N_pre curve
        stages = [("OptiMate DL", lambda: dl("optimate"))] if opts.dl else []
        stages += [("OptiMate TL N_pre=all", lambda: tl("optimate", False, n_pre_all, rpa_sizes))]
        stages += [
            (f"OptiMate TL N_pre={p}, N_RPA={rpa_ref}", lambda p=p: tl("optimate", False, p, [rpa_ref]))
            for p in low
        ]
        if opts.cgat:
            stages += [("CGAT TL", lambda: tl("cgat", False, n_pre_all, rpa_sizes))]
        if opts.free_labels:
            stages += [("free labels TL N_pre=all", lambda: tl("optimate", True, n_pre_all, rpa_sizes))]
        if opts.cgat and opts.dl:
            stages += [("CGAT DL", lambda: dl("cgat"))]
        if opts.heatmap:
            stages += [(f"heat map N_pre={p}", lambda p=p: tl("optimate", False, p, rest)) for p in low]
        if opts.free_labels:
            stages += [
                (f"free labels TL N_pre={p}", lambda p=p: tl("optimate", True, p, [rpa_ref])) for p in low
            ]
        for k, (name, stage) in enumerate(stages):
            stage()
            last = k == len(stages) - 1
            results["seeds_done"] = j + 1 if last else j
            checkpoint(
                "complete"
                if last and j == opts.seeds - 1
                else f"seed {seed}: {name} done ({k + 1}/{len(stages)} stages)",
                laws=last,  # the laws' bootstraps once per seed
            )
        log.info("scaling: seed %d done (%.0f s)", seed, results["seconds"])
    return json.loads((out / "results.json").read_text())


# --------------------------------------------------------------------------------------------------
# merging separately run seeds
# --------------------------------------------------------------------------------------------------
#: options that must agree between runs merged into one report
SAME_OPTIONS = ("max_epochs", "patience", "tl_epochs", "tl_patience", "ipa_source", "pool_limit", "extra")


def _cell_key(c: dict[str, Any]) -> tuple:
    return (c["model"], c["method"], c["free"], c["n_pre"], c["n_rpa"], c["seed"])


def _pool_hashes(res: dict[str, Any]) -> set[str]:
    """The training-ids hashes of the cells trained on the whole pool (N_RPA = all; DL or N_pre = all)."""
    r_all, p_all = res["rpa_sizes"][-1], res["pre_sizes"][-1]
    return {c["train_ids_sha256"] for c in res["cells"] if c["n_rpa"] == r_all and c["n_pre"] in (0, p_all)}


def merge_runs(out: str | Path, sources: list[str | Path]) -> dict[str, Any]:
    """Add the cells, training ids and per-material SC of other runs of the same study (e.g. further seeds of
    the heat map alone, ``dl=False``) to the report in ``out`` and rewrite it.

    The runs must share the pool (the training-ids hash of the whole-pool cells), the validation and test
    materials, the grid and the training settings (:data:`SAME_OPTIONS`); otherwise ``ValueError``. A cell
    already in ``out`` (same model, method, free labels, sizes and seed) is kept, and whether the other run's
    scores are identical (the runs are deterministic) is recorded in ``results["merged_runs"]``.
    """
    from .report_scaling import write_scaling_report

    out = Path(out)
    res = json.loads((out / "results.json").read_text())
    pm_path, ids_path = out / "per_material.json", out / "training_ids.json"
    pm = json.loads(pm_path.read_text()) if pm_path.is_file() else None
    ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
    have = {_cell_key(c): c for c in res["cells"]}
    for src in map(Path, sources):
        other = json.loads((src / "results.json").read_text())
        bad = [k for k in SAME_OPTIONS if other["options"].get(k) != res["options"].get(k)]
        for k in ("pre_sizes", "rpa_sizes", "n"):
            if other[k] != res[k]:
                bad.append(k)
        hashes = _pool_hashes(res) | _pool_hashes(other)
        if len(hashes) > 1:
            bad.append("pool (training ids of the whole-pool cells differ)")
        opm = (
            json.loads((src / "per_material.json").read_text())
            if (src / "per_material.json").is_file()
            else None
        )
        if pm and opm and (pm["ids"] != opm["ids"]):
            bad.append("validation/test materials")
        if bad:
            raise ValueError(f"{src}: not the same study as {out}: {', '.join(bad)}")
        added, dup, same = 0, 0, True
        for c in other["cells"]:
            k = _cell_key(c)
            if k in have:
                dup += 1
                same &= all(
                    abs(have[k][s]["median_sc"] - c[s]["median_sc"]) < 1e-9 for s in ("validation", "test")
                )
                continue
            res["cells"].append(c)
            have[k] = c
            added += 1
        if opm:
            if pm is None:
                pm = {"ids": opm["ids"], "nsites": opm["nsites"], "sc": {}}
            for k, v in opm["sc"].items():
                pm["sc"].setdefault(k, v)
        other_ids = (
            json.loads((src / "training_ids.json").read_text())
            if (src / "training_ids.json").is_file()
            else {}
        )
        for k, v in other_ids.items():
            ids.setdefault(k, v)
        res.setdefault("merged_runs", []).append({
            "source": src.name, "date": other.get("date"), "seeds": sorted({c["seed"] for c in other["cells"]}),
            "added": added, "duplicates": dup, "identical": bool(same), "progress": other.get("progress"),
        })  # fmt: skip
    if pm is not None:
        pm_path.write_text(json.dumps(pm, separators=(",", ":")) + "\n")
    ids_path.write_text(json.dumps(ids, indent=0, sort_keys=True) + "\n")
    write_scaling_report(out, res)
    return json.loads((out / "results.json").read_text())


__all__ = [
    "IPA_SOURCES",
    "PretrainSet",
    "ScalingOptions",
    "cheap_ipa_set",
    "merge_runs",
    "pretrain_set",
    "run_scaling",
]
