"""The map of the dataset: the sc model's pooled latent embeddings of every record, projected to 2-D by UMAP.

The file (gzip'ed JSON) keeps the embeddings and the 2-D coordinates together with the ids, so the map is
reproducible: the same model and records give the same embeddings, and UMAP runs with a fixed seed. Colours
are the DFT similarity SC[RPA; IPA] of each record; the predicted SC is kept for comparison.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import DEFAULT_MAP_PATH

log = logging.getLogger(__name__)

MAP_FORMAT_VERSION = 1


class MapError(RuntimeError):
    """A missing or unreadable map file (one-line message)."""


def build_map(
    predictor: Any,
    store: Any,
    out: str | Path = DEFAULT_MAP_PATH,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> dict:
    """Embed every valid record of ``store`` with the predictor's sc model, run UMAP, write ``out``.

    ``predictor``: an :class:`optiladder.predict.Predictor` with the ``sc`` model (its pooled embedding is the
    latent space, ``[n, 384]``). Returns the map dict that was written.
    """
    import umap

    from ..data.splits import split_of
    from ..spectra import similarity_coefficient
    from ..targets import record_traces

    if predictor.sc_model is None:
        raise MapError("map: the predictor has no sc model")
    sc_target = predictor.models[predictor.sc_model].target
    x_level, y_level = sc_target.levels
    ids, structures, formulas, splits, nsites, sc_dft = [], [], [], [], [], []
    for rec in store.iter_records():
        traces = record_traces(rec, sc_target.grid, sc_target.levels)
        ids.append(rec["mat_id"])
        structures.append(rec["structure"])
        formulas.append(rec["formula"])
        splits.append(rec.get("split") or split_of(rec["mat_id"]))
        nsites.append(int(rec["nsites"]))
        sc_dft.append(float(similarity_coefficient(traces[x_level], traces[y_level], sc_target.omega())))
    if len(ids) < 5:
        raise MapError(f"map: {len(ids)} records in {store.root} are too few for a map")
    results = predictor.predict(structures, ids, embed=True, levels=())
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise MapError(f"map: {len(failed)} records could not be embedded (e.g. {failed[0]})")
    emb = np.stack([r.embedding for r in results])
    reducer = umap.UMAP(
        n_neighbors=min(n_neighbors, len(ids) - 1),
        min_dist=min_dist,
        n_components=2,
        random_state=seed,
        metric="euclidean",
        n_jobs=1,  # a fixed seed makes UMAP single-threaded anyway; saying so silences its warning
    )
    xy = reducer.fit_transform(emb)
    card = predictor.models[predictor.sc_model].card
    data = {
        "format_version": MAP_FORMAT_VERSION,
        "created": _dt.date.today().isoformat(),
        "model": {
            "name": predictor.sc_model,
            "full_name": card.get("full_name"),
            "version": card.get("version"),
            "id": card.get("id"),
        },
        "umap": {
            "n_neighbors": reducer.n_neighbors,
            "min_dist": min_dist,
            "seed": seed,
            "metric": "euclidean",
        },
        "n": len(ids),
        "ids": ids,
        "formulas": formulas,
        "splits": splits,
        "nsites": nsites,
        "sc_dft": [round(v, 4) for v in sc_dft],
        "sc_pred": [round(float(r.sc), 4) for r in results],
        "x": [round(float(v), 4) for v in xy[:, 0]],
        "y": [round(float(v), 4) for v in xy[:, 1]],
        "embedding": np.round(emb, 4).tolist(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), mtime=0))
    tmp.replace(out)
    log.info("map of %d materials written to %s", len(ids), out)
    return data


def load_map(path: str | Path = DEFAULT_MAP_PATH) -> dict:
    """Read a map file written by :func:`build_map` (raises :class:`MapError`)."""
    path = Path(path)
    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        raise MapError(f"{path}: no map yet (run `optiladder pretrained map`)") from None
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise MapError(f"{path}: unreadable map ({type(exc).__name__}: {exc})") from None
