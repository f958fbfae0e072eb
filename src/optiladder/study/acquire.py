"""Acquisition: which uncomputed training structures should the campaign compute next?

The ensemble (K RPA members saved by the levers study, ``<models>/rpa-ensemble``) predicts every uncomputed
Alexandria structure of the trainable splits (``train`` + ``none``, cells of at most ``max_atoms`` atoms). A
structure is worth computing when the members disagree on it (uncertainty ``1 − mean_k SC[p_k; p̄]``) and when
it is unlike what is already known (latent distance to the nearest computed or already chosen structure, in units
of the computed set's median nearest-neighbour distance). The ranking is greedy: each step takes the structure
with the largest ``uncertainty × min(distance, 3)`` and then updates the distances, so a cluster of similar
uncertain crystals is not bought twice.

The result is a plain ranked id file (one id per line, ``#`` comments, extra columns ignored) that
``optiladder campaign run --order FILE`` reads; the campaign never imports a model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: distances (training-NN units) are capped here in the score: beyond it a crystal is simply "new"
DIVERSITY_CAP = 3.0


def load_members(models: str | Path):
    """The RPA ensemble (:class:`~optiladder.training.Model`, K ≥ 2) of a levers-study model folder
    (``<models>/rpa-ensemble``) or of a model folder given directly."""
    from ..training import load_model_dir

    folder = Path(models)
    if (folder / "rpa-ensemble").is_dir():
        folder = folder / "rpa-ensemble"
    model = load_model_dir(folder)
    if model.members < 2:
        raise ValueError(f"{folder}: needs an ensemble (≥ 2 members), this model has {model.members}")
    return model


def greedy_rank(uncertainty: np.ndarray, z: np.ndarray, z_known: np.ndarray, scale: float) -> np.ndarray:
    """Candidate order ``[n]`` (indices): greedy max of ``uncertainty × min(d / scale, DIVERSITY_CAP)`` where ``d``
    is the distance of a candidate's embedding ``z`` ``[n, D]`` to the nearest known or already chosen one."""
    from ..evaluation.uncertainty import nearest_distance

    u = np.asarray(uncertainty, float)
    d = nearest_distance(z, z_known) / scale if len(z_known) else np.full(len(z), DIVERSITY_CAP)
    order, free = [], np.ones(len(u), bool)
    for _ in range(len(u)):
        score = np.where(free, u * np.minimum(d, DIVERSITY_CAP), -np.inf)
        i = int(np.argmax(score))
        order.append(i)
        free[i] = False
        d = np.minimum(d, np.linalg.norm(z - z[i], axis=1) / scale)
    return np.array(order, dtype=np.int64)


def acquire(models: str | Path, store=None, *, max_atoms: int = 6, limit: int = 0) -> list[dict[str, Any]]:
    """Ranked candidates: dicts with ``mat_id``, ``nsites``, ``formula``, ``uncertainty``, ``distance``, best first."""
    from ..data.splits import TRAINABLE, check_trainable, split_of
    from ..data.store import Store
    from ..evaluation.uncertainty import LatentDomain, ensemble_stats, nearest_distance
    from ..graphs import GraphCache
    from ..structures import alexandria
    from ..training import embed, make_data, predict

    model = load_members(models)
    store = store or Store()
    done = set(store.ids())
    known = [e for e in alexandria() if e["mat_id"] in done and split_of(e["mat_id"]) in TRAINABLE]
    cands = [
        e
        for e in alexandria()
        if e["mat_id"] not in done and split_of(e["mat_id"]) in TRAINABLE and e["nsites"] <= max_atoms
    ]
    check_trainable([e["mat_id"] for e in cands], context="acquisition candidates")
    if limit:
        cands = cands[:limit]
    if not cands:
        return []
    cache = GraphCache(model.featurizer)
    cdata = make_data(cache.graphs([e["mat_id"] for e in cands], [e["structure"] for e in cands]), None,
                      [e["mat_id"] for e in cands])  # fmt: skip
    kdata = make_data(cache.graphs([e["mat_id"] for e in known], [e["structure"] for e in known]), None,
                      [e["mat_id"] for e in known])  # fmt: skip
    members = model.nets
    preds = np.stack([predict(m, cdata) for m in members])
    unc = 1.0 - ensemble_stats(preds)["agreement"]
    z = np.mean([embed(m, cdata) for m in members], axis=0)
    zk = np.mean([embed(m, kdata) for m in members], axis=0) if kdata else np.zeros((0, z.shape[1]))
    scale = LatentDomain.fit(zk).scale if len(zk) > 1 else 1.0
    order = greedy_rank(unc, z, zk, scale)
    dist = nearest_distance(z, zk) / scale if len(zk) else np.full(len(z), np.inf)
    return [
        {
            "mat_id": cands[i]["mat_id"],
            "nsites": int(cands[i]["nsites"]),
            "formula": cands[i]["formula"],
            "uncertainty": float(unc[i]),
            "distance": float(dist[i]),
        }
        for i in order
    ]


def write_order(path: str | Path, ranked: list[dict[str, Any]], note: str = "") -> Path:
    """Write the ranked id file (``campaign run --order`` format): ``id nsites formula uncertainty distance``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# acquisition order{': ' + note if note else ''}",
        "# mat_id nsites formula uncertainty distance",
    ]
    lines += [
        f"{r['mat_id']} {r['nsites']} {r['formula']} {r['uncertainty']:.4f} {r['distance']:.3f}"
        for r in ranked
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
