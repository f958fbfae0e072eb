"""Crystal structure → graph, exactly as the OptiMate model (Grunert, Großmann & Runge 2025) builds it.

* **Edges**: every neighbour j of atom i within ``cutoff`` (5 Å), each periodic image its own edge (a
  multigraph); an atom's own periodic images are neighbours too, only the atom itself at distance 0 is not.
  ``edge_index[0]`` is the centre atom i, ``edge_index[1]`` the neighbour j (the neighbour list is
  symmetric, so every edge also exists reversed).
* **Edge features**: ``n_gaussians`` (51) Gaussians ``prefactor · exp(−width (d − μ_k)²)`` of the distance d (Å),
  ``μ_k = 0, 0.1, …, 5 Å``, ``width = 10 Å⁻²``. The public OptiMate code multiplies by ``sqrt(width/π)``
  (a normalised Gaussian); :class:`Featurizer` keeps that prefactor so graphs match it.
* **Node features**: one-hot of the main group (8: groups 1, 2, 13–18) followed by one-hot of the row
  (5: periods 1–5), 13 values per atom. Only main-group elements of periods 1–5 are known (34 elements,
  the chemistry of the Alexandria ≤ 8-atom semiconductor set); any other element raises :class:`GraphError`.

The neighbour search is vectorised NumPy over (image, i, j) (no Python loop over atom pairs): the images
needed are bounded from the interplanar spacings of the cell. :func:`structure_graph` returns plain NumPy
arrays (:class:`Graph`); :func:`to_data` turns one into a ``torch_geometric.data.Data`` (torch is imported
only there). :class:`GraphCache` keeps the graphs of a dataset on disk, keyed by featurizer hash and by each
record's id and structure hash.

Units: Å for lengths and distances.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import cache_dir

log = logging.getLogger(__name__)

#: The main-group elements of periods 1–5: symbol → (group index 0–7, row index 0–4).
#: Group index: groups 1, 2 → 0, 1; groups 13…18 → 2…7 (as OptiMate: ``group − 1``, minus 10 above 1).
MAIN_GROUP_TABLE: tuple[tuple[str, int, int], ...] = (
    ("H", 0, 0), ("He", 7, 0),
    ("Li", 0, 1), ("Be", 1, 1), ("B", 2, 1), ("C", 3, 1), ("N", 4, 1), ("O", 5, 1), ("F", 6, 1), ("Ne", 7, 1),
    ("Na", 0, 2), ("Mg", 1, 2), ("Al", 2, 2), ("Si", 3, 2), ("P", 4, 2), ("S", 5, 2), ("Cl", 6, 2), ("Ar", 7, 2),
    ("K", 0, 3), ("Ca", 1, 3), ("Ga", 2, 3), ("Ge", 3, 3), ("As", 4, 3), ("Se", 5, 3), ("Br", 6, 3), ("Kr", 7, 3),
    ("Rb", 0, 4), ("Sr", 1, 4), ("In", 2, 4), ("Sn", 3, 4), ("Sb", 4, 4), ("Te", 5, 4), ("I", 6, 4), ("Xe", 7, 4),
)  # fmt: skip


#: Largest neighbour search accepted: periodic images × atoms² (a 64-atom cell with 1 Å spacings needs 9e6).
MAX_PAIR_IMAGES = 5e7
#: (image, i, j) triples evaluated at once in :func:`neighbor_list` (bounds its memory to ~32 B each).
PAIR_CHUNK = 1 << 20


class GraphError(ValueError):
    """A structure that cannot be turned into a graph (unknown element, bad lattice, no sites)."""


#: what one structure's own graph building may raise (a bad input, not a bug): kept per structure
INPUT_ERRORS = (ValueError, ArithmeticError, MemoryError)


@dataclass(frozen=True)
class Featurizer:
    """How a structure becomes a graph; saved with every model so inference builds graphs as training did.

    ``cutoff``: neighbour cutoff in Å (inclusive). ``centers``: Gaussian centres μ_k in Å, shape
    ``[n_gaussians]``. ``width``: γ in exp(−γ (d − μ)²), Å⁻². ``prefactor``: constant factor of every
    Gaussian (OptiMate: sqrt(γ/π) ≈ 1.784). ``elements``: (symbol, group index, row index) rows;
    ``n_groups``/``n_rows``: one-hot sizes.
    """

    cutoff: float = 5.0
    centers: tuple[float, ...] = tuple(round(0.1 * k, 10) for k in range(51))
    width: float = 10.0
    prefactor: float = float(np.sqrt(10.0 / np.pi))
    elements: tuple[tuple[str, int, int], ...] = MAIN_GROUP_TABLE
    n_groups: int = 8
    n_rows: int = 5
    _index: dict[str, int] = field(default=None, init=False, repr=False, compare=False, hash=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "centers", tuple(float(c) for c in self.centers))
        object.__setattr__(self, "elements", tuple((str(s), int(g), int(r)) for s, g, r in self.elements))
        if self.cutoff <= 0:
            raise ValueError("cutoff must be positive")
        for s, g, r in self.elements:
            if not (0 <= g < self.n_groups and 0 <= r < self.n_rows):
                raise ValueError(f"element {s}: group {g} / row {r} outside the one-hot sizes")
        object.__setattr__(self, "_index", {s: i for i, (s, _, _) in enumerate(self.elements)})

    # ---- sizes --------------------------------------------------------------------------------
    @property
    def node_dim(self) -> int:
        """Length of a node feature vector (13)."""
        return self.n_groups + self.n_rows

    @property
    def edge_dim(self) -> int:
        """Length of an edge feature vector (51)."""
        return len(self.centers)

    # ---- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, floats, str): the parameters of the saved spec (:meth:`spec`)."""
        d = asdict(self)
        d.pop("_index", None)
        d["centers"] = list(self.centers)
        d["elements"] = [list(e) for e in self.elements]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Featurizer:
        d = dict(d)
        d["centers"] = tuple(d["centers"])
        d["elements"] = tuple(tuple(e) for e in d["elements"])
        return cls(**d)

    #: the featurizer's name in saved specs (:data:`FEATURIZERS`); a subclass that adds node features (e.g.
    #: frozen foundation-model embeddings) registers itself under its own name with its own parameters
    kind: ClassVar[str] = "optimate"

    def spec(self) -> dict[str, Any]:
        """The declared, saved form ``{"name": kind, "params": to_dict()}`` (``featurizer.json`` of a model)."""
        return {"name": self.kind, "params": self.to_dict()}

    def hash(self) -> str:
        """sha256 (hex, first 16 characters) of the canonical JSON of :meth:`to_dict`."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ---- features --------------------------------------------------------------------------------
    def species_index(self, symbols: Sequence[str]) -> np.ndarray:
        """Row of each element in :attr:`elements`, shape ``[n_atoms]`` (int64); unknown elements raise."""
        try:
            return np.array([self._index[s] for s in symbols], dtype=np.int64)
        except KeyError as exc:
            raise GraphError(
                f"element {exc.args[0]} is not in the featurizer's table (main groups, periods 1–5 only)"
            ) from None

    def node_features(self, species: np.ndarray) -> np.ndarray:
        """One-hot group ‖ one-hot row of element rows ``species`` ``[n]`` → ``[n, 13]`` float32."""
        table = np.asarray([(g, r) for _, g, r in self.elements], dtype=np.int64).reshape(-1, 2)
        gr = table[np.asarray(species, dtype=np.int64)]
        out = np.zeros((gr.shape[0], self.n_groups + self.n_rows), dtype=np.float32)
        rows = np.arange(gr.shape[0])
        out[rows, gr[:, 0]] = 1.0
        out[rows, self.n_groups + gr[:, 1]] = 1.0
        return out

    def structure_node_features(
        self, structures: Sequence[Any], species: Sequence[np.ndarray], *, cached: bool = False
    ) -> list[np.ndarray]:
        """Node features ``[n_atoms, node_dim]`` of several structures (their element rows ``species``).

        The one-hot features depend on the elements only; a subclass whose features depend on the structure
        (:class:`FoundationFeaturizer`) overrides this. ``cached``: results may be kept in an on-disk cache
        (dataset records); unseen structures at prediction time are not cached.
        """
        return [self.node_features(s) for s in species]

    def structure_node_features_each(
        self, structures: Sequence[Any], species: Sequence[np.ndarray], memo: Any = None
    ) -> list[np.ndarray | Exception]:
        """:meth:`structure_node_features` of each structure on its own: its features, or the exception that it
        alone raises (:data:`INPUT_ERRORS`), so a batch of inputs goes on past a bad one. ``memo``: an
        :class:`optiladder.foundation.EmbeddingMemo` for structure-dependent features (unused here)."""
        out: list[np.ndarray | Exception] = []
        for st, sp in zip(structures, species, strict=True):
            try:
                out.append(self.structure_node_features([st], [sp])[0])
            except INPUT_ERRORS as exc:
                out.append(exc)
        return out

    def check_available(self) -> None:
        """Raise ``ValueError`` (one line) if a package these features need is not installed (none here)."""

    def edge_features(self, distances: np.ndarray) -> np.ndarray:
        """Gaussian expansion of distances ``[n_edges]`` (Å) → ``[n_edges, n_gaussians]`` float32."""
        d = np.asarray(distances, dtype=np.float64)[:, None]
        mu = np.asarray(self.centers, dtype=np.float64)[None, :]
        return (self.prefactor * np.exp(-self.width * (d - mu) ** 2)).astype(np.float32)


DEFAULT_FEATURIZER = Featurizer()


@dataclass(frozen=True)
class FoundationFeaturizer(Featurizer):
    """OptiMate's graph with node features one-hot ‖ frozen foundation-model embeddings per atom.

    ``foundation``: the embedding model, or several whose embeddings are concatenated in this order
    (:data:`optiladder.foundation.KNOWN_MODELS`: ``"chgnet-0.3.0"``, 64 values per atom; ``"sevennet-0"``, 128;
    all rotation- and translation-invariant). Held as a tuple (:attr:`models`); saved (``featurizer.json``,
    the graph-cache hash) as the model's name when it is one model (``"chgnet-0.3.0"``, the shipped models'
    form, unchanged) and as a list of names when several (``["chgnet-0.3.0", "sevennet-0"]``). ``node_dim`` =
    13 + the embedding sizes (77 for CHGNet alone, 205 for both). Dataset graphs use the on-disk embedding
    cache (:class:`optiladder.foundation.EmbeddingCache`, per model and structure); an unseen structure pays one
    batched forward per model (``bench/predict`` measures it). Needs each model's package (``chgnet``,
    ``sevenn``).
    """

    foundation: str | tuple[str, ...] = "chgnet-0.3.0"
    kind: ClassVar[str] = "optimate+foundation"

    def __post_init__(self) -> None:
        super().__post_init__()
        from .foundation import normalize_models

        object.__setattr__(self, "foundation", normalize_models(self.foundation))

    @property
    def models(self) -> tuple[str, ...]:
        """The foundation models, in the order their embeddings follow the one-hot features."""
        return self.foundation  # type: ignore[return-value]

    def _spec(self):
        from .foundation import FoundationSpec

        return FoundationSpec(self.models)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["foundation"] = self.models[0] if len(self.models) == 1 else list(self.models)
        return d

    @property
    def foundation_dim(self) -> int:
        """Embedding values per atom (all models)."""
        return self._spec().dim

    @property
    def node_dim(self) -> int:
        """One-hot group and row (13) plus the embedding size (64 for CHGNet 0.3.0, + 128 for SevenNet-0)."""
        return self.n_groups + self.n_rows + self.foundation_dim

    def check_available(self) -> None:
        """Raise ``ValueError`` if a foundation model's package is missing (checked when a model loads, so
        a missing ``chgnet`` or ``sevenn`` is one line, not a traceback at the first prediction)."""
        from .foundation import FoundationError, require_package

        try:
            for model in self.models:
                require_package(model)
        except FoundationError as exc:
            raise ValueError(str(exc)) from None

    def structure_node_features(
        self, structures: Sequence[Any], species: Sequence[np.ndarray], *, cached: bool = False
    ) -> list[np.ndarray]:
        from .foundation import EmbeddingCache, FoundationInputError, augment, embeddings

        if cached:  # dataset records: a structure no model can describe is an error of the dataset
            dicts = [s if isinstance(s, dict) else s.as_dict() for s in structures]
            embs = EmbeddingCache(self._spec()).get(dicts)
        else:
            try:
                embs = embeddings(list(structures), self._spec())
            except FoundationInputError as exc:  # one structure's problem: the caller's per-input error
                raise GraphError(f"no {exc.model} features: {exc}") from None
        return [augment(self.node_features(sp), e) for sp, e in zip(species, embs, strict=True)]

    def structure_node_features_each(
        self, structures: Sequence[Any], species: Sequence[np.ndarray], memo: Any = None
    ) -> list[np.ndarray | Exception]:
        """Node features of several structures in batched foundation-model forwards; a batch that fails is
        rerun one structure at a time, so one bad input gets its own error and the others their features.
        ``memo``: an :class:`optiladder.foundation.EmbeddingMemo` (a structure seen before is not embedded again)."""
        from .foundation import augment, embeddings_each

        embs = (memo.each if memo is not None else embeddings_each)(list(structures), self._spec())
        out: list[np.ndarray | Exception] = []
        for sp, e in zip(species, embs, strict=True):
            if isinstance(e, Exception):
                out.append(GraphError(f"no {e.model} features: {e}"))
                continue
            try:
                out.append(augment(self.node_features(sp), e))
            except INPUT_ERRORS as exc:
                out.append(exc)
        return out


#: featurizer name → class, for :func:`featurizer_from_spec`
FEATURIZERS: dict[str, type[Featurizer]] = {
    Featurizer.kind: Featurizer,
    FoundationFeaturizer.kind: FoundationFeaturizer,
}


def featurizer_from_spec(spec: dict[str, Any]) -> Featurizer:
    """The featurizer a saved spec (:meth:`Featurizer.spec`) declares; raises ``ValueError`` if unknown/bad."""
    if not isinstance(spec, dict) or "name" not in spec or "params" not in spec:
        raise ValueError("not a featurizer spec (needs 'name' and 'params')")
    cls = FEATURIZERS.get(spec["name"])
    if cls is None:
        raise ValueError(f"unknown featurizer {spec['name']!r}; known: {', '.join(FEATURIZERS)}")
    try:
        return cls.from_dict(spec["params"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad featurizer parameters ({type(exc).__name__}: {exc})") from None


@dataclass
class Graph:
    """One crystal graph as plain arrays.

    ``species``: element row per atom ``[n_atoms]`` int64; ``x``: node features ``[n_atoms, 13]`` float32;
    ``edge_index``: ``[2, n_edges]`` int64 (centre, neighbour); ``distances``: ``[n_edges]`` float32 (Å);
    ``edge_attr``: ``[n_edges, 51]`` float32.
    """

    species: np.ndarray
    x: np.ndarray
    edge_index: np.ndarray
    distances: np.ndarray
    edge_attr: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.species.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def compressed(self, decimals: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Identical edges collapsed: ``(edge_index [2, m], edge_attr [m, 51], multiplicity [m])``.

        Edges with the same centre, neighbour and distance (rounded to ``decimals`` Å digits) are one row
        with their count as multiplicity (float32); :class:`optiladder.nn.GATv2` treats it exactly as that
        many copies. The first edge of each group gives the features.
        """
        if self.num_edges == 0:
            return self.edge_index, self.edge_attr, np.zeros(0, np.float32)
        key = np.stack(
            [
                self.edge_index[0],
                self.edge_index[1],
                np.round(self.distances.astype(np.float64) * 10**decimals),
            ]
        )
        _, first, counts = np.unique(key, axis=1, return_index=True, return_counts=True)
        return self.edge_index[:, first], self.edge_attr[first], counts.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# structure parsing (structures.cell_arrays: fast path for pymatgen dicts, no Structure object needed)
# ------------------------------------------------------------------------------------------------
def _lattice_and_sites(structure: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(lattice ``[3, 3]`` Å, Cartesian positions ``[n, 3]`` Å, symbols) through the one structure reader,
    :func:`optiladder.structures.cell_arrays`; its errors become :class:`GraphError`."""
    from .structures import StructureError, cell_arrays

    try:
        return cell_arrays(structure)
    except StructureError as exc:
        raise GraphError(exc.problem) from None


def neighbor_list(
    lattice: np.ndarray, cart: np.ndarray, cutoff: float, *, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j, image) with 0 < |r_j + image − r_i| ≤ cutoff under periodic boundary conditions.

    ``lattice``: rows a₁, a₂, a₃ in Å ``[3, 3]``; ``cart``: positions ``[n, 3]`` in Å. Returns
    ``(i, j, d)``: centre indices ``[n_edges]``, neighbour indices ``[n_edges]``, distances ``[n_edges]`` (Å),
    sorted by (i, j, d). Each periodic image is its own entry; i = j with d > 0 (own images) is kept.
    """
    lattice = np.asarray(lattice, dtype=np.float64)
    cart = np.asarray(cart, dtype=np.float64)
    # wrap into the cell: fractional coordinates in [0, 1)
    inv = np.linalg.inv(lattice)
    frac = cart @ inv
    frac -= np.floor(frac)
    wrapped = frac @ lattice
    # interplanar spacings h_k = V / |a_l × a_m|; images needed: differences of wrapped coordinates lie
    # in (−1, 1), so ceil(cutoff / h_k) + 1 images each way are always enough
    volume = abs(np.linalg.det(lattice))
    cross = np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]])
    spacing = volume / np.linalg.norm(cross, axis=1)
    with np.errstate(all="ignore"):
        nmax = np.ceil(cutoff / spacing) + 1
    n = len(wrapped)
    # bound the work and memory before allocating anything (structures.check_geometry keeps real inputs far
    # below: ≤ 13³ images for spacings ≥ 1 Å)
    if not np.all(np.isfinite(nmax)) or float(np.prod(2 * nmax + 1)) * n * n > MAX_PAIR_IMAGES:
        raise GraphError(
            f"neighbour search too large (interplanar spacings {np.round(spacing, 3).tolist()} Å, {n} atoms)"
        )
    ranges = [np.arange(-m, m + 1) for m in nmax.astype(int)]
    images = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float64)
    shifts = images @ lattice  # [n_img, 3]
    step = max(1, PAIR_CHUNK // max(1, n * n))  # images per chunk: peak memory ~ 32 B · PAIR_CHUNK
    parts_i, parts_j, parts_d = [], [], []
    for start in range(0, len(shifts), step):
        # displacement r_j + shift − r_i: [chunk, n, n, 3]
        disp = (
            wrapped[None, None, :, :]
            - wrapped[None, :, None, :]
            + shifts[start : start + step, None, None, :]
        )
        dist = np.sqrt(np.einsum("kijx,kijx->kij", disp, disp))
        mask = (dist <= cutoff + tol) & (dist > tol)
        _, ci, cj = np.nonzero(mask)
        parts_i.append(ci)
        parts_j.append(cj)
        parts_d.append(dist[mask])
    i, j, d = np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_d)
    order = np.lexsort((d, j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), d[order]


def structure_graph(structure: Any, featurizer: Featurizer = DEFAULT_FEATURIZER) -> Graph:
    """The OptiMate graph of a structure (pymatgen ``Structure``/dict or ASE ``Atoms``) as NumPy arrays."""
    g = structure_graphs([structure], featurizer)[0]
    if isinstance(g, Exception):
        raise g
    return g


def structure_graphs(
    structures: Sequence[Any], featurizer: Featurizer = DEFAULT_FEATURIZER, *, memo: Any = None
) -> list[Graph | Exception]:
    """:func:`structure_graph` of several structures: each a :class:`Graph`, or the exception that structure
    alone raised (:class:`GraphError` or another of :data:`INPUT_ERRORS`), so a batch goes on past a bad input.
    Structure-dependent node features (a foundation model) run as one batched forward (``memo``: an
    :class:`optiladder.foundation.EmbeddingMemo` that skips structures seen before)."""
    out: list[Graph | Exception | None] = [None] * len(structures)
    parts: list[tuple[int, Any, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    for k, structure in enumerate(structures):
        try:
            lattice, cart, symbols = _lattice_and_sites(structure)
            species = featurizer.species_index(symbols)
            parts.append((k, structure, species, neighbor_list(lattice, cart, featurizer.cutoff)))
        except INPUT_ERRORS as exc:
            out[k] = exc
    feats = featurizer.structure_node_features_each([p[1] for p in parts], [p[2] for p in parts], memo=memo)
    for (k, _, species, (i, j, d)), x in zip(parts, feats, strict=True):
        if isinstance(x, Exception):
            out[k] = x
            continue
        out[k] = Graph(
            species=species,
            x=x,
            edge_index=np.stack([i, j]),
            distances=d.astype(np.float32),
            edge_attr=featurizer.edge_features(d),
        )
    return out  # type: ignore[return-value]


def to_data(graph: Graph, *, compress: bool = True, **attrs: Any):
    """A ``torch_geometric.data.Data`` with ``x``, ``edge_index``, ``edge_attr`` (+ tensors/values in ``attrs``).

    ``compress=True`` collapses identical edges (:meth:`Graph.compressed`) and adds ``edge_mult``
    ``[n_edges]``: the OptiMate model gives the same output (exactly, up to float rounding) at a fraction of
    the cost. ``compress=False`` keeps the full multigraph (what ``torch_geometric.nn.GATv2Conv`` expects).
    Array-valued ``attrs`` (e.g. ``y`` of shape ``[1, out_dim]``) become float32 tensors; others are kept as is.
    """
    import torch
    from torch_geometric.data import Data

    extra = {}
    for k, v in attrs.items():
        extra[k] = torch.as_tensor(np.asarray(v, dtype=np.float32)) if isinstance(v, np.ndarray) else v
    if compress:
        eidx, eattr, mult = graph.compressed()
        extra["edge_mult"] = torch.from_numpy(mult)
    else:
        eidx, eattr = graph.edge_index, graph.edge_attr
    return Data(
        x=torch.from_numpy(graph.x),
        edge_index=torch.from_numpy(np.ascontiguousarray(eidx)),
        edge_attr=torch.from_numpy(np.ascontiguousarray(eattr)),
        num_nodes=graph.num_nodes,
        **extra,
    )


def collate(graphs: Sequence[Graph], *, compress: bool = True):
    """A ``torch_geometric.data.Batch`` of several graphs (for a forward pass without targets)."""
    from torch_geometric.data import Batch

    return Batch.from_data_list([to_data(g, compress=compress) for g in graphs])


# ------------------------------------------------------------------------------------------------
# cache
# ------------------------------------------------------------------------------------------------


def structure_key(mat_id: str, structure: dict) -> str:
    """Cache key of a record: ``"<id>:<sha256 of the structure's canonical JSON, 16 hex>"``."""
    text = json.dumps(structure, sort_keys=True, separators=(",", ":"))
    return f"{mat_id}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class GraphCache:
    """Graphs of dataset records, kept in one ``graphs-<featurizer hash>.npz`` file under ``root``.

    Stored compactly (species, edge_index, distances); features are re-expanded on load (cheap). A record
    is keyed by its id and a hash of its structure, so a changed structure is rebuilt, and a growing dataset
    only builds the new records. Writes are atomic (temporary file + rename).
    """

    def __init__(self, featurizer: Featurizer = DEFAULT_FEATURIZER, root: str | Path | None = None):
        self.featurizer = featurizer
        self.root = Path(root) if root is not None else cache_dir() / "graphs"
        self.path = self.root / f"graphs-{featurizer.hash()}.npz"
        self._entries: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def _load(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self._entries is not None:
            return self._entries
        entries: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    keys = [str(k) for k in z["keys"]]
                    nodes, edges = z["node_ptr"], z["edge_ptr"]
                    species, eidx, dist = z["species"], z["edge_index"], z["distances"]
                    for k, key in enumerate(keys):
                        entries[key] = (
                            species[nodes[k] : nodes[k + 1]].astype(np.int64),
                            eidx[:, edges[k] : edges[k + 1]].astype(np.int64),
                            dist[edges[k] : edges[k + 1]],
                        )
            except (OSError, KeyError, ValueError) as exc:
                log.warning("graph cache %s unreadable (%s); rebuilding", self.path, exc)
                entries = {}
        self._entries = entries
        return entries

    def _save(self) -> None:
        entries = self._load()
        keys = sorted(entries)
        species = [entries[k][0] for k in keys]
        eidx = [entries[k][1] for k in keys]
        dist = [entries[k][2] for k in keys]
        node_ptr = np.concatenate([[0], np.cumsum([len(s) for s in species])]).astype(np.int64)
        edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in eidx])]).astype(np.int64)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            keys=np.array(keys, dtype=str),
            node_ptr=node_ptr,
            edge_ptr=edge_ptr,
            species=np.concatenate(species).astype(np.int16) if species else np.zeros(0, np.int16),
            edge_index=np.concatenate(eidx, axis=1).astype(np.int32) if eidx else np.zeros((2, 0), np.int32),
            distances=np.concatenate(dist).astype(np.float32) if dist else np.zeros(0, np.float32),
        )
        os.replace(tmp, self.path)

    def graphs(self, ids: Iterable[str], structures: Iterable[dict], *, save: bool = True) -> list[Graph]:
        """Graphs of records (``ids`` and their pymatgen structure dicts, same order); builds what is missing."""
        entries = self._load()
        out, built = [], 0
        f = self.featurizer
        structures = list(structures)
        rows = []
        for mat_id, struct in zip(ids, structures, strict=True):
            key = structure_key(mat_id, struct)
            if key not in entries:
                lattice, cart, symbols = _lattice_and_sites(struct)
                i, j, d = neighbor_list(lattice, cart, f.cutoff)
                entries[key] = (f.species_index(symbols), np.stack([i, j]), d.astype(np.float32))
                built += 1
            rows.append(entries[key])
        xs = f.structure_node_features(structures, [r[0] for r in rows], cached=True)
        for (species, eidx, dist), x in zip(rows, xs, strict=True):
            out.append(Graph(species, x, eidx, dist, f.edge_features(dist)))
        if built:
            log.info("graph cache: built %d new graph(s), %d cached", built, len(out) - built)
            if save:
                try:
                    self._save()
                except OSError as exc:  # a read-only cache is not fatal
                    log.warning("graph cache %s not written (%s)", self.path, exc)
        return out
