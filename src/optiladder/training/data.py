"""Dataset records → lists of ``torch_geometric`` ``Data`` with learning targets.

The targets are :class:`optiladder.targets.TargetSpec` objects (or their names in
:data:`optiladder.targets.TARGETS`): ``y`` has shape ``[1, out_dim]`` (Im ε on the target's grid, or one
value such as SC[RPA; IPA]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..graphs import DEFAULT_FEATURIZER, Featurizer, Graph, GraphCache, structure_graph, to_data
from ..targets import TargetSpec, get_target

if TYPE_CHECKING:
    from ..data.store import DatasetArrays


def target_values(arrays: DatasetArrays, target: str | TargetSpec) -> np.ndarray:
    """Targets of every material, ``[n, out_dim]`` float32 (see :meth:`TargetSpec.values`)."""
    return get_target(target).values(arrays)


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


def with_targets(data: Sequence, y: np.ndarray) -> list:
    """Shallow copies of ``Data`` objects (e.g. from :func:`make_data` without targets) with ``y`` ``[n, out]``:
    one graph list serves several targets (IPA, RPA, a scalar) without rebuilding it."""
    import torch

    out = []
    for d, row in zip(data, np.asarray(y, np.float32), strict=True):
        c = d.clone()
        c.y = torch.as_tensor(row)[None, :]
        out.append(c)
    return out
