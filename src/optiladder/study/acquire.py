"""Acquisition: which uncomputed training structures should the campaign compute next?

The ensemble (K RPA members saved by the levers study, ``<models>/rpa-ensemble``) predicts every uncomputed
Alexandria structure of the trainable splits (``train`` + ``none``, cells of at most ``max_atoms`` atoms). A
structure is worth computing when the members disagree on it (uncertainty ``1 − mean_k SC[p_k; p̄]``) and when
it is unlike what is already known (latent distance to the nearest computed or already chosen structure, in units
of the computed set's median nearest-neighbour distance). The ranking is greedy: each step takes the structure
with the largest ``uncertainty × min(distance, 3)`` and then updates the distances, so a cluster of similar
uncertain crystals is not bought twice.

**Cost-aware** (the default): a structure is worth its value per cost. Each greedy step divides the score by
the structure's predicted core-seconds to the power ``cost_exponent`` (default 0.5; 0 gives the cost-blind
ranking): ``uncertainty × min(distance, 3) / seconds^α``. The seconds come from the per-structure cost model of
the store's own records (:func:`optiladder.data.costs.fit_costs`, the default protocol and numerics) and the
bundled features of each candidate. The exponent ½ rather than 1 because the model's error is a factor ~1.5
(rms 0.4 in ln s) and the value of a spectrum is not proportional to its uncertainty: it prefers cheap
structures without ranking an uncertain crystal behind every cheap one.

The result is a plain ranked id file (one id per line, ``#`` comments, extra columns ignored) that
``optiladder campaign run --order FILE`` reads; the campaign never imports a model. Its header states the rule.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: distances (training-NN units) are capped here in the score: beyond it a crystal is simply "new"
DIVERSITY_CAP = 3.0
#: the default exponent of the predicted seconds in the cost-aware score
COST_EXPONENT = 0.5


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


def greedy_rank(
    uncertainty: np.ndarray,
    z: np.ndarray,
    z_known: np.ndarray,
    scale: float,
    cost: np.ndarray | None = None,
    cost_exponent: float = COST_EXPONENT,
) -> np.ndarray:
    """Candidate order ``[n]`` (indices): greedy max of ``uncertainty × min(d / scale, DIVERSITY_CAP)`` where ``d``
    is the distance of a candidate's embedding ``z`` ``[n, D]`` to the nearest known or already chosen one,
    divided by ``cost ** cost_exponent`` when the candidates' predicted ``cost`` (seconds, ``[n]``) is given."""
    from ..evaluation.uncertainty import nearest_distance

    u = np.asarray(uncertainty, float)
    if cost is not None:
        u = u / np.maximum(np.asarray(cost, float), 1e-9) ** cost_exponent
    d = nearest_distance(z, z_known) / scale if len(z_known) else np.full(len(z), DIVERSITY_CAP)
    order, free = [], np.ones(len(u), bool)
    for _ in range(len(u)):
        score = np.where(free, u * np.minimum(d, DIVERSITY_CAP), -np.inf)
        i = int(np.argmax(score))
        order.append(i)
        free[i] = False
        d = np.minimum(d, np.linalg.norm(z - z[i], axis=1) / scale)
    return np.array(order, dtype=np.int64)


def predicted_seconds(
    store, entries: list[dict[str, Any]], numerics: str | None = None
) -> tuple[np.ndarray, str]:
    """Predicted core-seconds of each entry under the default protocol (per-structure cost model of the store's
    records and the bundled features; per-size medians for a structure without features) and a line saying
    what priced them. Raises ``ValueError`` when the store holds no timed record of the protocol."""
    from ..data.costs import bundled_features, records_cost_model
    from ..engine.protocols import DEFAULT_PROTOCOL

    model, _ = records_cost_model([store.root])
    group, note = model.resolve(DEFAULT_PROTOCOL, numerics)
    if group is None:
        raise ValueError(f"{store.root}: {note}: no cost model (run with --no-cost-aware)")
    feats = bundled_features(DEFAULT_PROTOCOL)
    f = np.array([feats.get(e["mat_id"], (np.nan,) * 3) for e in entries], float).reshape(-1, 3)
    secs = group.seconds(f, [int(e["nsites"]) for e in entries]) if entries else np.zeros(0)
    line = group.describe() + (f" ({note})" if note else "")
    return np.asarray(secs, float), line


def acquire(
    models: str | Path,
    store=None,
    *,
    max_atoms: int = 6,
    limit: int = 0,
    cost_aware: bool = True,
    cost_exponent: float = COST_EXPONENT,
    info: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Ranked candidates: dicts with ``mat_id``, ``nsites``, ``formula``, ``uncertainty``, ``distance`` and
    ``seconds`` (predicted core-seconds; None when not ``cost_aware``), best first. ``cost_aware``: the greedy
    score is divided by ``seconds ** cost_exponent``. ``info`` (a dict) receives ``rule`` and ``cost_model``."""
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
    secs, line = predicted_seconds(store, cands) if cost_aware else (None, "")
    order = greedy_rank(unc, z, zk, scale, cost=secs, cost_exponent=cost_exponent)
    if info is not None:
        info["rule"] = rule_text(cost_aware, cost_exponent)
        info["cost_model"] = line
    dist = nearest_distance(z, zk) / scale if len(zk) else np.full(len(z), np.inf)
    return [
        {
            "mat_id": cands[i]["mat_id"],
            "nsites": int(cands[i]["nsites"]),
            "formula": cands[i]["formula"],
            "uncertainty": float(unc[i]),
            "distance": float(dist[i]),
            "seconds": None if secs is None else float(secs[i]),
        }
        for i in order
    ]


def rule_text(cost_aware: bool, cost_exponent: float = COST_EXPONENT) -> str:
    """The ranking rule in words (the order file's header)."""
    base = f"greedy max of uncertainty × min(distance, {DIVERSITY_CAP:g})"
    if not cost_aware:
        return base + " (cost-blind)"
    return base + f" / predicted_seconds^{cost_exponent:g} (value per cost; cost_exponent {cost_exponent:g})"


def write_order(
    path: str | Path, ranked: list[dict[str, Any]], note: str = "", *, rule: str = "", cost_model: str = ""
) -> Path:
    """Write the ranked id file (``campaign run --order`` format): ``id nsites formula uncertainty distance
    predicted_seconds`` (``-`` where not predicted), the rule and the cost model in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# acquisition order{': ' + note if note else ''}"]
    if rule:
        lines.append(f"# rule: {rule}")
    if cost_model:
        lines.append(f"# predicted seconds: {cost_model}")
    lines.append("# mat_id nsites formula uncertainty distance predicted_seconds")
    lines += [
        f"{r['mat_id']} {r['nsites']} {r['formula']} {r['uncertainty']:.4f} {r['distance']:.3f} "
        + ("-" if r.get("seconds") is None else f"{r['seconds']:.0f}")
        for r in ranked
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
