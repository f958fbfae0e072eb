"""Ship the levers study's winner as the ``ipa``, ``rpa`` and ``sc`` models (new versions in the registry).

The study (``optiladder study levers``) saves, for its winner chosen on validation, the IPA model, the RPA
ensemble (K members, calibrated uncertainty in its card) and the SC[RPA; IPA] head, all trained on the train +
none pool only. :func:`ship` renames them ``ipa`` / ``rpa`` / ``sc`` with one version string, links the parents,
states the data, installs them (``pretrained/<name>/<version>/``, float16 weights), and writes their test-split
metrics with the one metric pipeline (:func:`optiladder.evaluation.card_metrics`) into the cards. The newest
version is what ``Predictor.from_pretrained()`` loads, so the prediction snapshot fixture
(``tests/predict/make_snapshot.py``) must be regenerated in the same commit; each card says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    "ipa": "trace of Im ε in the independent-particle approximation on the target's grid",
    "rpa": "trace of Im ε in the RPA (local-field effects) on the target's grid; ensemble fine-tuned from ipa "
    "(all weights), mean and per-energy spread, calibrated expected SC and warnings",
    "sc": "SC[RPA; IPA] (is IPA good enough?), 1-value head on the ipa body",
}


def ship(
    models: str | Path, version: str, *, store: Any = None, root: str | Path | None = None
) -> dict[str, Path]:
    """Install the winner's models of a levers-study ``models`` folder as ``ipa``, ``rpa``, ``sc`` ``version``."""
    from ..data.store import Store
    from ..training import load_model_dir
    from ..training.model import parent_ref
    from . import install
    from .rebuild import DATA_TAG, _write_test_metrics

    models = Path(models)
    store = store or Store()
    data = store.table(protocol=DATA_TAG)
    counts = {k: int((data.splits == k).sum()) for k in ("train", "none", "validation", "test")}
    out: dict[str, Path] = {}
    installed: dict[str, Any] = {}
    for name, folder in (("ipa", "ipa"), ("rpa", "rpa-ensemble"), ("sc", "sc")):
        m = load_model_dir(models / folder)
        card = dict(m.card)
        lever = card.get("levers", {})
        card.update(
            name=name,
            version=version,
            full_name=f"OptiMate-{DATA_TAG}-{name.upper()}-{version}",
            description=DESCRIPTIONS[name]
            + (f"; levers: {lever.get('variant')} (chosen on validation)" if lever else ""),
            data={
                "source": f"optiladder dataset, GPAW protocol {DATA_TAG} (PBE, Alexandria structures)",
                "protocol": DATA_TAG,
                "records": len(data),
                **counts,
                "splits": {"train": ["train", "none"], "early_stopping": "validation", "metrics": "test"},
                "max_nsites": int(
                    max(data.nsites[[i in set(card["training"]["train_ids"]) for i in data.ids]])
                ),
                "node_features": m.featurizer.spec()["name"],
            },
            retrained="retrained by optiladder study levers: the prediction snapshot fixture "
            "(tests/predict/fixtures/snapshot.npz, tests/predict/make_snapshot.py) was regenerated with it",
        )
        if name in ("rpa", "sc"):
            card["training"] = {**card["training"], "parent": parent_ref(installed["ipa"])}
        m.card = card
        path = install(m, root)
        _write_test_metrics(path, data)
        installed[name] = load_model_dir(path)
        out[name] = path
        log.info("shipped %s %s -> %s", name, version, path)
    return out
