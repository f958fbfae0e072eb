"""Dataset records → lists of ``torch_geometric`` ``Data`` with learning targets.

Targets (``Target``): ``"ipa"`` / ``"rpa"`` — trace Im ε on the 2001-point model grid, ``y`` shape ``[1, 2001]``;
``"sc_rpa_ipa"`` — the scalar SC[RPA_DFT; IPA_DFT] (paper eq. 6 with the RPA spectrum as X and IPA as Y),
``y`` shape ``[1, 1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from ..graphs import DEFAULT_FEATURIZER, Featurizer, Graph, GraphCache, structure_graph, to_data
from ..spectra import similarity_coefficient

if TYPE_CHECKING:
    from ..data.store import DatasetArrays

Target = Literal["ipa", "rpa", "sc_rpa_ipa"]
TARGETS: tuple[str, ...] = get_args(Target)
#: level of theory of each target (recorded in the model card)
TARGET_LEVEL: dict[str, str] = {"ipa": "ipa", "rpa": "rpa", "sc_rpa_ipa": "rpa"}


def target_values(arrays: DatasetArrays, target: Target) -> np.ndarray:
    """Targets of every material: ``[n, 2001]`` (Im ε, ``ipa``/``rpa``) or ``[n, 1]`` (``sc_rpa_ipa``)."""
    if target == "ipa":
        return np.asarray(arrays.ipa, dtype=np.float32)
    if target == "rpa":
        return np.asarray(arrays.rpa, dtype=np.float32)
    if target == "sc_rpa_ipa":
        return similarity_coefficient(arrays.rpa, arrays.ipa, arrays.grid).astype(np.float32)[:, None]
    raise ValueError(f"target must be one of {TARGETS}, not {target!r}")


def dataset_graphs(
    arrays: DatasetArrays,
    featurizer: Featurizer = DEFAULT_FEATURIZER,
    cache: GraphCache | bool | None = True,
) -> list[Graph]:
    """Graphs of every record of ``arrays`` (same order); ``cache=True`` uses the default on-disk cache."""
    if cache is True:
        cache = GraphCache(featurizer)
    if isinstance(cache, GraphCache):
        if cache.featurizer != featurizer:
            raise ValueError("the graph cache was made for another featurizer")
        return cache.graphs(arrays.ids, arrays.structures)
    return [structure_graph(s, featurizer) for s in arrays.structures]


def make_data(graphs: Sequence[Graph], y: np.ndarray | None, ids: Sequence[str]) -> list:
    """``Data`` objects with ``y`` ``[1, out_dim]`` (if given) and ``mat_id``."""
    out = []
    for k, g in enumerate(graphs):
        attrs = {"mat_id": ids[k]}
        if y is not None:
            attrs["y"] = np.asarray(y[k], dtype=np.float32)[None, :]
        out.append(to_data(g, **attrs))
    return out
