"""Retrain the shipped models from the current dataset and rewrite their folders and cards.

Recipe (``optiladder pretrained rebuild``):

1. ``ipa``: OptiMate trained directly on IPA spectra of the ``train`` + ``none`` splits, early-stopped on the
   ``validation`` split.
2. ``rpa``: transfer learning — every weight of the ``ipa`` model retrained on the RPA spectra of the same
   materials (the paper's "full transfer"), early-stopped on ``validation``.
3. ``sc``: the same body with a 1-value head, trained directly on SC[RPA_DFT; IPA_DFT] of each material.

Each step runs with :attr:`RebuildSettings.n_seeds` seeds (the ipa → rpa chain as a whole) and keeps the run
with the lowest validation L1; every card records the seeds, their validation losses and the one kept.

The ``test`` split is touched only after training, to write the test metrics into each card; the metrics are
computed from the shipped (float16-stored) weights through :class:`optiladder.predict.Predictor`, exactly the
path users take. The training functions are those of :mod:`optiladder.training` (leakage guard included).

Head size: the published head is ``MLP[384 → 1024 → 1024 → 1024 → 2001]`` (~4.5 M parameters, ~9 MB per
model in float16). With a few hundred training spectra a narrower head (:data:`HEAD_HIDDEN`) generalises as
well and keeps the three shipped models at a few MB in total.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import MODEL_NAMES, package_dir, save_model

log = logging.getLogger(__name__)

#: hidden sizes of the spectrum and scalar heads of the shipped models (the paper: 1024, 1024, 1024)
HEAD_HIDDEN: tuple[int, ...] = (512, 512, 512)
SC_HEAD_HIDDEN: tuple[int, ...] = (256, 256)
#: version tag in the full names, ``OptiMate-<data>-<target>-v<date>``
DATA_TAG = "gpaw-pbe-v1"


@dataclass(frozen=True)
class RebuildSettings:
    """Training settings of the three shipped models (seconds are wall-clock budgets per model).

    ``lr``/``batch_size``/``max_epochs``/``patience``: direct training (``ipa``, ``sc``). ``tl_lr``,
    ``tl_max_epochs``, ``tl_patience``: the transfer step (``rpa``). ``n_seeds``: independent runs (seeds
    ``seed``, ``seed + 1``, …) of which the one with the lowest validation L1 is kept (the run-to-run spread of
    the validation median SC is ~0.04 with a few hundred training spectra). ``threads``: torch threads.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 32
    max_epochs: int = 400
    patience: int = 60
    tl_lr: float = 3e-4
    tl_weight_decay: float = 1e-4
    tl_max_epochs: int = 400
    tl_patience: int = 60
    max_seconds: float = 240.0
    seed: int = 0
    n_seeds: int = 3
    dropout: float = 0.0
    threads: int = 1
    head_hidden: tuple[int, ...] = HEAD_HIDDEN
    sc_head_hidden: tuple[int, ...] = SC_HEAD_HIDDEN
    dtype: str = "float16"


def _spectrum_metrics(pred: np.ndarray, ref: np.ndarray, grid: np.ndarray) -> dict[str, float]:
    from ..spectra import mae, mse, similarity_coefficient

    sc = similarity_coefficient(pred, ref, grid)
    return {
        "median_sc": round(float(np.median(sc)), 4),
        "mean_sc": round(float(np.mean(sc)), 4),
        "median_mse": round(float(np.median(mse(pred, ref, grid))), 5),
        "median_mae": round(float(np.median(mae(pred, ref, grid))), 5),
    }


def test_metrics(predictor: Any, data: Any) -> dict[str, dict[str, float]]:
    """Metrics of each loaded model on the records of ``data`` (a ``DatasetArrays``, e.g. the test split).

    Spectra: median/mean SC, median MSE and MAE against the DFT trace of Im ε (paper eqs. 6–8). ``sc``: MAE
    and median absolute error of SC[RPA; IPA]. Also ``ipa_as_rpa``: the baseline that uses the DFT IPA spectrum
    as the RPA prediction.
    """
    from ..spectra import similarity_coefficient

    results = predictor.predict(data.structures, data.ids)
    bad = [r.error for r in results if not r.ok]
    if bad:
        raise RuntimeError(f"test metrics: {len(bad)} records failed (e.g. {bad[0]})")
    out: dict[str, dict[str, float]] = {"n": {"materials": len(results)}}
    for lv in predictor.levels:
        pred = np.stack([r.spectra[lv].trace_im() for r in results])
        ref = data.ipa if lv == "ipa" else data.rpa
        out[lv] = _spectrum_metrics(pred, ref, data.grid)
    if "sc" in predictor.models:
        true = similarity_coefficient(data.rpa, data.ipa, data.grid)
        err = np.abs(np.array([r.sc for r in results]) - true)
        good_true = true >= predictor.threshold
        good_pred = np.array([r.ipa_good_enough for r in results])
        out["sc"] = {
            "mae": round(float(err.mean()), 4),
            "median_abs_error": round(float(np.median(err)), 4),
            "verdict_accuracy": round(float(np.mean(good_true == good_pred)), 4),
            "true_fraction_ipa_good_enough": round(float(good_true.mean()), 4),
            "pearson_r": round(float(np.corrcoef([r.sc for r in results], true)[0, 1]), 4),
        }
    out["ipa_as_rpa"] = _spectrum_metrics(data.ipa, data.rpa, data.grid)
    return out


def rebuild(
    *,
    store: Any = None,
    out: str | Path | None = None,
    settings: RebuildSettings | None = None,
    names: tuple[str, ...] = MODEL_NAMES,
) -> dict[str, dict]:
    """Train ``names`` (default all three) from ``store`` and write them to ``out`` (default: the package).

    Returns name → card. Models are trained in a temporary folder and moved into place only when all of them
    are written, so a failed rebuild leaves the shipped models untouched. ``rpa`` needs ``ipa`` (trained in the
    same run, or the one in ``out``).
    """
    import torch

    from ..data.store import Store
    from ..training import Checkpoint, TrainSettings, train_model
    from . import load_model

    settings = settings or RebuildSettings()
    torch.set_num_threads(settings.threads)
    store = store or Store()
    out = Path(out) if out is not None else package_dir()
    data = store.table()
    if store.errors:
        log.warning("%d invalid record(s) skipped, e.g. %s", len(store.errors), store.errors[0])
    train_mask = np.isin(data.splits, ("train", "none"))
    n_train, n_val, n_test = (
        int(train_mask.sum()),
        int((data.splits == "validation").sum()),
        int((data.splits == "test").sum()),
    )
    if n_train < 10 or n_val < 2 or n_test < 2:
        raise RuntimeError(f"rebuild: too few records (train {n_train}, validation {n_val}, test {n_test})")
    today = _dt.date.today()
    version = f"v{today:%Y.%m.%d}"
    common = {
        "lr": settings.lr,
        "weight_decay": settings.weight_decay,
        "batch_size": settings.batch_size,
        "max_epochs": settings.max_epochs,
        "patience": settings.patience,
        "max_seconds": settings.max_seconds,
        "seed": settings.seed,
    }
    direct = TrainSettings(**common)
    transfer = TrainSettings(
        **{
            **common,
            "lr": settings.tl_lr,
            "weight_decay": settings.tl_weight_decay,
            "max_epochs": settings.tl_max_epochs,
            "patience": settings.tl_patience,
        }
    )
    data_block = {
        "source": f"optiladder dataset, GPAW protocol {DATA_TAG} (PBE, Alexandria structures)",
        "records": len(data),
        "train": n_train,
        "validation": n_val,
        "test": n_test,
        "splits": {"train": ["train", "none"], "early_stopping": "validation", "metrics": "test"},
        "split_lists": "the published OptiMate train/validation/test id lists (Grunert et al. 2025)",
        "max_nsites": int(data.nsites.max()),
    }
    tmp = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=out if out.is_dir() else None))
    cards: dict[str, dict] = {}
    seeds = [settings.seed + k for k in range(max(1, settings.n_seeds))]

    def train(name: str, seed: int, parent_ckpt: Any = None) -> tuple[Any, float]:
        t0 = time.perf_counter()
        target = {"ipa": "ipa", "rpa": "rpa", "sc": "sc_rpa_ipa"}[name]
        st = transfer if name == "rpa" else direct
        kwargs: dict[str, Any] = {}
        if name == "rpa":
            kwargs = {"parent": parent_ckpt, "trainable": "all"}
        else:
            hidden = settings.sc_head_hidden if name == "sc" else settings.head_hidden
            kwargs = {"model_kwargs": {"head_hidden": list(hidden), "dropout": settings.dropout}}
        res = train_model(
            data,
            target=target,
            settings=dataclasses.replace(st, seed=seed),
            name=name,
            data_note=data_block["source"],
            **kwargs,
        )
        log.info("%s (seed %d): val L1 %.4g, %s", name, seed, res.fit.best_val_loss, res.card.get("fit"))
        return res, time.perf_counter() - t0

    def val_l1(res: Any) -> float:
        return float(res.fit.best_val_loss)

    chosen: dict[str, tuple[Any, float, dict]] = {}
    try:
        # ipa → rpa chains, one per seed; the chain whose last model has the lowest validation L1 is kept
        if "ipa" in names or "rpa" in names:
            chains = []
            for seed in seeds:
                if "ipa" in names:
                    ipa, t_ipa = train("ipa", seed)
                    parent_ckpt = ipa.checkpoint
                else:
                    ipa, t_ipa = None, 0.0
                    lm = load_model("ipa", root=out)
                    parent_ckpt = Checkpoint(lm.model, lm.featurizer, {**lm.card, "name": "ipa"})
                rpa, t_rpa = train("rpa", seed, parent_ckpt) if "rpa" in names else (None, 0.0)
                chains.append((seed, ipa, t_ipa, rpa, t_rpa))
            key = 3 if "rpa" in names else 1
            scores = [val_l1(c[key]) for c in chains]
            best = int(np.argmin(scores))
            selection = {
                "seeds": seeds,
                "val_l1": [round(v, 5) for v in scores],
                "criterion": f"lowest validation L1 of the {'rpa' if key == 3 else 'ipa'} model",
                "chosen_seed": chains[best][0],
            }
            if "ipa" in names:
                chosen["ipa"] = (chains[best][1], chains[best][2], selection)
            if "rpa" in names:
                chosen["rpa"] = (chains[best][3], chains[best][4], selection)
        if "sc" in names:
            runs = [(seed, *train("sc", seed)) for seed in seeds]
            scores = [val_l1(r[1]) for r in runs]
            best = int(np.argmin(scores))
            chosen["sc"] = (
                runs[best][1],
                runs[best][2],
                {
                    "seeds": seeds,
                    "val_l1": [round(v, 5) for v in scores],
                    "criterion": "lowest validation L1",
                    "chosen_seed": runs[best][0],
                },
            )
        for name in names:
            res, seconds, selection = chosen[name]
            target = {"ipa": "ipa", "rpa": "rpa", "sc": "sc_rpa_ipa"}[name]
            card = {
                "name": name,
                "full_name": f"OptiMate-{DATA_TAG}-{target.upper().replace('_', '-')}-{version}",
                "task": res.card["task"],
                "target": target,
                "description": {
                    "ipa": "trace of Im ε at the independent-particle level, 2001 points on 0–20 eV",
                    "rpa": "trace of Im ε in the RPA (local-field effects), 2001 points on 0–20 eV; "
                    "transfer-learned from ipa (all weights retrained)",
                    "sc": "similarity coefficient SC[RPA_DFT; IPA_DFT] of a material (one value)",
                }[name],
                "parent": "ipa" if name == "rpa" else None,
                "parent_detail": res.card.get("parent"),
                "created": today.isoformat(),
                "data": data_block,
                "training": {
                    "settings": res.card.get("settings"),
                    "fit": res.card.get("fit"),
                    "val_l1": res.card.get("metrics", {}).get("val_l1"),
                    "selection": selection,
                    "train_ids_sha256": res.card.get("train_ids_sha256"),
                    "train_ids": res.card.get("train_ids"),
                    "seconds": round(seconds, 1),
                    "torch_threads": settings.threads,
                },
                "versions": res.card.get("versions"),
                "citation": "Grunert, Großmann & Runge, Nat. Commun. 16, 8142 (2025) (OptiMate architecture)",
            }
            save_model(tmp / name, res.model, res.featurizer, card, dtype=settings.dtype)
        # test metrics from the stored weights through the Predictor (the users' path)
        roots = {n: _root_for(tmp, out, n) for n in MODEL_NAMES}
        cards.update(write_test_metrics(data, roots, names))
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            dest = out / name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.move(str(tmp / name), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cards


def write_test_metrics(data: Any, roots: dict[str, Path], names: tuple[str, ...]) -> dict[str, dict]:
    """Compute the test-split metrics of models ``names`` (folders ``roots[name] / name``) and write them into
    their cards (the weights, and so the checksums, are untouched). Returns name → updated card."""
    from ..predict import Predictor
    from . import load_model

    loaded = {n: load_model(n, root=r) for n, r in roots.items() if (r / n / "card.json").exists()}
    test = data.split("test")
    m = test_metrics(Predictor(loaded), test)
    cards = {}
    for name in names:
        card_path = roots[name] / name / "card.json"
        card = json.loads(card_path.read_text())
        card["metrics"] = {
            "split": "test",
            "n": m["n"]["materials"],
            "computed": _dt.date.today().isoformat(),
            "test_ids_sha256": _ids_sha256(test.ids),
        }
        if name in ("ipa", "rpa"):
            card["metrics"]["spectrum"] = m[name]
        else:
            card["metrics"]["sc"] = m["sc"]
        if name == "rpa":
            card["metrics"]["baseline_ipa_dft_as_rpa"] = m["ipa_as_rpa"]
        tmp = card_path.with_name(f".{card_path.name}.tmp")
        tmp.write_text(json.dumps(card, indent=1) + "\n")
        tmp.replace(card_path)
        cards[name] = card
    return cards


def refresh_metrics(*, store: Any = None, root: str | Path | None = None) -> dict[str, dict]:
    """Recompute the shipped models' test metrics on the current dataset (e.g. after the campaign added test
    records) and rewrite their cards; no training."""
    from ..data.store import Store

    store = store or Store()
    base = Path(root) if root is not None else package_dir()
    names = tuple(n for n in MODEL_NAMES if (base / n / "card.json").exists())
    return write_test_metrics(store.table(), dict.fromkeys(names, base), names)


def _ids_sha256(ids: Any) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _root_for(tmp: Path, out: Path, name: str) -> Path:
    """Where model ``name`` is: freshly trained in ``tmp`` or already shipped in ``out``."""
    return tmp if (tmp / name / "card.json").exists() else out
