"""Ship the levers study's winner as the ``ipa``, ``rpa`` and ``sc`` models (new versions in the registry).

The study (``optiladder study levers``) saves, for its winner chosen on validation, the IPA model, the RPA
ensemble (K members, calibrated uncertainty in its card) and the SC[RPA; IPA] head, all trained on the train +
none pool only. :func:`ship` renames them ``ipa`` / ``rpa`` / ``sc`` with one version string, links the parents,
states the data, installs them (``pretrained/<name>/<version>/``, float16 weights), and writes their test-split
metrics with the one metric pipeline (:func:`optiladder.evaluation.card_metrics`) into the cards. The newest
version is what ``Predictor.from_pretrained()`` loads, so the prediction snapshot fixture
(``tests/predict/make_snapshot.py``) must be regenerated in the same commit; each card says so.

The cards state the training domain the static checks and the page read (:mod:`optiladder.domain`): the cell
sizes and elements of the training crystals (``data.train_nsites``, ``data.elements``) and, for the ensemble,
the cell sizes of the validation crystals its uncertainty was calibrated on (``uncertainty.fitted_nsites``). The
warning rule is the study's as written into the ensemble's card, ``novel_bond_max_expected`` included (studies
run before that key leave it out, and such cards never fire the novel-bond warning).
When the study's ``results.json`` lies beside ``models/``, the cards also record the study's fine-tuning
settings and the winner's validation and test medians (``levers.study``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "ipa": "trace of Im ε in the independent-particle approximation on the target's grid",
    "rpa": "trace of Im ε in the RPA (local-field effects) on the target's grid; ensemble fine-tuned (all weights) "
    "from ipa, or round-robin from the IPA models of several seeds with member 0 from ipa (card: levers.ensemble), "
    "mean and per-energy spread, calibrated expected SC and warnings",
    "sc": "SC[RPA; IPA] (is IPA good enough?), the mean of 1-value networks fine-tuned from ipa or, since "
    "v2026.12.07, one from each member of the rpa ensemble (card: training.parent, sc_study.recipe)",
}


def _study_summary(models: Path, seed: int, ensemble: str = "one-parent") -> dict[str, Any] | None:
    """What the levers run that wrote ``models`` says about its winner (from ``../results.json``), or None;
    ``ensemble``: which RPA ensemble the run saved (the card's ``levers.ensemble``), whose medians are quoted."""
    path = models.parent / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    rows = [r for r in res.get("ensemble", []) if r.get("seed") == seed]
    if not rows:
        return None
    row = rows[0]
    ens = res["ensemble_cross_parents"] if ensemble == "cross-parents" else row
    return {
        "date": res.get("date"),
        "winner": res.get("winner"),
        "baseline": res.get("baseline"),
        "n": res.get("n"),
        "cells": res.get("cells"),
        "options": res.get("options"),
        "ensemble": ensemble,
        "ensemble_median_sc": {
            "validation": ens["ensemble_validation"]["median_sc"],
            "test": ens["ensemble_test"]["median_sc"],
        },
        "single_member_test_median_sc": row.get("single_test_median_sc"),
        "sc_head_mae": _shipped_sc_mae(res.get("sc") or row["sc_predictor"]),
    }


def _shipped_sc_mae(sc: dict[str, Any]) -> dict[str, Any]:
    """Validation and test MAE of the SC[RPA; IPA] model the study saved: its recipe's (runs since 2026-12-07:
    ``results["sc"]``), else the mean of the heads on the IPA body when it shipped more than one, else one head."""
    if "recipes" in sc:
        row = sc["recipes"][sc["winner"]]
        return {
            "validation": row["validation"]["mae"],
            "test": row["test"]["mae"],
            "members": row["networks"],
            "recipe": sc["winner"],
        }
    key = "heads_mae" if sc.get("shipped_members", 1) > 1 else "head_mae"
    return {
        "validation": sc[f"{key}_validation"],
        "test": sc[f"{key}_test"],
        "members": sc.get("shipped_members", 1),
    }


def ship(
    models: str | Path,
    version: str,
    *,
    store: Any = None,
    root: str | Path | None = None,
    settings_of: Callable[[dict[str, Any], str, str, int], dict[str, Any]] | None = None,
    only: tuple[str, ...] = ("ipa", "rpa", "sc"),
) -> dict[str, Path]:
    """Install the winner's models of a levers-study ``models`` folder as ``ipa``, ``rpa``, ``sc`` ``version``.

    ``only``: the names to install (the others stay as shipped), e.g. ``("sc",)`` for the ``models`` folder of
    ``optiladder study sc``, whose sc networks were fine-tuned from the shipped rpa ensemble's members: a card's
    parent is the installed model it was fine-tuned from (rpa: ipa; sc: ipa, or rpa for the ``member-heads``
    recipe), by id.

    ``settings_of(options, variant, name, seed)``: the training settings the study used for model ``name``
    (``optiladder study ship`` passes :func:`optiladder.study.levers.training_settings`; this package does not
    import the study), written into cards that lack them."""
    from ..data.store import Store
    from ..domain import TrainingDomain
    from ..training import load_model_dir
    from ..training.model import parent_ref
    from . import install, load_model
    from .rebuild import DATA_TAG, _write_test_metrics

    models = Path(models)
    store = store or Store()
    data = store.table(protocol=DATA_TAG)
    out: dict[str, Path] = {}
    unknown = [n for n in only if n not in DESCRIPTIONS]
    if unknown or not only:
        raise ValueError(f"unknown model name(s) {unknown}; known: {list(DESCRIPTIONS)}")
    installed: dict[str, Any] = {}

    def parent_model(name: str) -> Any:
        """The installed ``name``: shipped in this call, else the one installed before."""
        if name not in installed:
            installed[name] = load_model(name, root=root)
        return installed[name]

    for name, folder in (("ipa", "ipa"), ("rpa", "rpa-ensemble"), ("sc", "sc")):
        if name not in only:
            continue
        m = load_model_dir(models / folder)
        card = dict(m.card)
        lever = dict(card.get("levers", {}))
        train_ids = list(card["training"]["train_ids"])
        domain = TrainingDomain.from_ids(train_ids)
        if domain is None or domain.n_train != len(set(train_ids)):
            raise ValueError(f"{models / folder}: the card's training ids are not all bundled structures")
        study = _study_summary(models, int(lever.get("seed", 0)), str(lever.get("ensemble", "one-parent")))
        if study is not None:
            lever["study"] = study
            card["levers"] = lever
            if not card["training"].get("settings") and settings_of is not None and study["options"]:
                card["training"] = {
                    **card["training"],
                    "settings": settings_of(
                        study["options"], str(lever.get("variant")), name, int(lever.get("seed", 0))
                    ),
                }
        unc = card.get("uncertainty")
        if unc is not None and study is not None and "fitted_nsites" not in unc:
            # the validation crystals the calibration and warning thresholds were fitted on, by cell size
            card["uncertainty"] = {**unc, "fitted_nsites": study["cells"]["validation"]}
        card.update(
            name=name,
            version=version,
            full_name=f"{type(m.nets[0]).__name__}-{DATA_TAG}-{name.upper()}-{version}",  # OptiMate or CGAT
            description=DESCRIPTIONS[name]
            + (f"; levers: {lever.get('variant')} (chosen on validation)" if lever else ""),
            data={
                "source": f"optiladder dataset, GPAW protocol {DATA_TAG} (PBE, Alexandria structures)",
                "protocol": DATA_TAG,
                "records_at_ship": len(data),
                "train": len(train_ids),
                "validation": int(card["training"].get("n_validation") or 0),
                "test": int((data.splits == "test").sum()),
                "splits": {"train": ["train", "none"], "early_stopping": "validation", "metrics": "test"},
                "max_nsites": domain.max_nsites,
                "train_nsites": {str(k): v for k, v in domain.cell_sizes},
                "elements": sorted(domain.elements),
                "node_features": m.featurizer.spec()["name"],
            },
            retrained="retrained by optiladder study levers: the prediction snapshot fixture "
            "(tests/predict/fixtures/snapshot.npz, tests/predict/make_snapshot.py) was regenerated with it",
        )
        if name in ("rpa", "sc"):
            # an sc model says which model its networks were fine-tuned from (``sc_study.parents``, since
            # 2026-12-07), else its parent's name does
            from_rpa = name == "sc" and (
                card.get("sc_study", {}).get("parents", (card["training"].get("parent") or {}).get("name"))
                == "rpa"
            )
            if from_rpa and "rpa" not in only:
                own = (card["training"].get("parent") or {}).get("train_ids_sha256")
                if own != parent_model("rpa").card["training"]["train_ids_sha256"]:
                    raise ValueError(
                        f"{models / folder}: its networks come from an rpa ensemble trained on other materials than "
                        "the installed rpa (train_ids_sha256 differs): ship them together"
                    )
            card["training"] = {
                **card["training"],
                "parent": parent_ref(parent_model("rpa" if from_rpa else "ipa")),
            }
        m.card = card
        path = install(m, root)
        _write_test_metrics(path, data)
        installed[name] = load_model_dir(path)
        out[name] = path
        log.info("shipped %s %s -> %s", name, version, path)
    return out
