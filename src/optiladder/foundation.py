"""Foundation-model node features: frozen per-atom embeddings of universal interatomic potentials.

Two potentials whose weights ship inside their PyPI wheels (so they load offline, nothing is downloaded):

* ``chgnet-0.3.0``: CHGNet (B. Deng et al., Nat. Mach. Intell. 5, 1031 (2023)), model version 0.3.0 of the
  ``chgnet`` package: the 64-value atom feature after its last atom-convolution layer (``atom_fea``).
* ``sevennet-0``: SevenNet-0 (Y. Park et al., J. Chem. Theory Comput. 20, 4857 (2024)), the
  ``SevenNet_0__11Jul2024`` checkpoint inside the ``sevenn`` wheel (its ``7net-0``): the node features
  (``sevenn._keys.NODE_FEATURE``, ``"x"``) after its last interaction block (``4_equivariant_gate``), which are
  its 128 l = 0 (``128x0e``, scalar) channels only: the last block keeps no l > 0 channel. The readout
  (``reduce_input_to_hidden`` onwards) is not run. Structures go through sevenn's own graph builder (5 Å) and
  ``torch_geometric`` collation, 32 structures per forward.

Both depend only on interatomic distances and angles, so they are invariant to rotating and translating the
crystal and permute with its sites (tested). A spec (:class:`FoundationSpec`) names one or more of them: their
embeddings are concatenated per atom in the spec's order (``("chgnet-0.3.0", "sevennet-0")``: 64 + 128 values),
appended to OptiMate's 13-value one-hot node features (:func:`augment`), frozen (never trained), and cached per
model and structure (:class:`EmbeddingCache`), so a dataset pays each potential's cost once; an unseen structure
pays it at prediction time (``bench/predict`` measures it). Every model trained on these features records its
featurizer (``featurizer.json``), so inference builds the same node features.

Structures are embedded in batches (``batch_size``, 32); a batch that fails is rerun one structure at a time, so
only the structure that cannot be described gets an error (:func:`embeddings_each`; one line, naming the model).
The packages are optional dependencies (extra ``foundation``); asking for the features without them raises
:class:`FoundationError` (one line).

Units: the embeddings are dimensionless network activations; shapes are ``[n_atoms, dim]`` float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: foundation models known here: name → embedding values per atom
KNOWN_MODELS: dict[str, int] = {"chgnet-0.3.0": 64, "sevennet-0": 128}
#: foundation model → the Python package that provides it (and its weights)
PACKAGES: dict[str, str] = {"chgnet-0.3.0": "chgnet", "sevennet-0": "sevenn"}
#: the model of the shipped featurizers (a spec of this model alone)
DEFAULT_MODEL = "chgnet-0.3.0"
#: structures per foundation-model forward
BATCH_SIZE = 32
MISSING_PACKAGE = (
    "foundation features ({model}) need the '{package}' package, which is not installed: "
    "pip install 'optiladder[foundation]' (scripts/setup.sh installs it)"
)


class FoundationError(RuntimeError):
    """The foundation model cannot be loaded or run (package missing, unreadable structure)."""


class FoundationInputError(FoundationError):
    """The foundation model ran but cannot describe this structure (e.g. an atom with no neighbour within
    CHGNet's 6 Å graph cutoff): a problem of the input, not of the installation. ``model``: which model."""

    def __init__(self, message: str, model: str = DEFAULT_MODEL):
        super().__init__(message)
        self.model = model


def normalize_models(models: str | Iterable[str]) -> tuple[str, ...]:
    """A model name or several → a tuple of known, distinct model names (order kept); ``ValueError`` if not."""
    names = (models,) if isinstance(models, str) else tuple(str(m) for m in models)
    if not names:
        raise ValueError("no foundation model named")
    unknown = [m for m in names if m not in KNOWN_MODELS]
    if unknown:
        raise ValueError(f"unknown foundation model {unknown[0]!r}; known: {sorted(KNOWN_MODELS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"foundation model named twice in {list(names)}")
    return names


@dataclass(frozen=True, init=False)
class FoundationSpec:
    """Which frozen foundation-model embeddings are appended to the node features (in this order).

    ``FoundationSpec()`` is CHGNet 0.3.0 alone (64 values per atom); ``FoundationSpec(("chgnet-0.3.0",
    "sevennet-0"))`` both (64 + 128). ``dim``, if given, must equal the summed size (a check).
    """

    models: tuple[str, ...]

    def __init__(self, models: str | Iterable[str] = (DEFAULT_MODEL,), dim: int | None = None):
        object.__setattr__(self, "models", normalize_models(models))
        if dim is not None and int(dim) != self.dim:
            raise ValueError(f"{'+'.join(self.models)} gives {self.dim} values per atom, not {dim}")

    @property
    def dims(self) -> tuple[int, ...]:
        """Values per atom of each model."""
        return tuple(KNOWN_MODELS[m] for m in self.models)

    @property
    def dim(self) -> int:
        """Values per atom of all models together."""
        return sum(self.dims)

    @property
    def name(self) -> str:
        """``"chgnet-0.3.0"`` or ``"chgnet-0.3.0+sevennet-0"``."""
        return "+".join(self.models)

    def to_dict(self) -> dict[str, Any]:
        return {"models": list(self.models), "dim": self.dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FoundationSpec:
        """Also reads the one-model form ``{"model": ..., "dim": ...}`` of earlier versions."""
        return cls(d["models"] if "models" in d else d["model"], d.get("dim"))


def require_package(model: str = DEFAULT_MODEL) -> None:
    """Raise :class:`FoundationError` (one line) if the package of foundation model ``model`` is not installed
    (checked without importing it)."""
    import importlib.util

    package = PACKAGES[model]
    if importlib.util.find_spec(package) is None:
        raise FoundationError(MISSING_PACKAGE.format(model=model, package=package))


def _one_line(exc: BaseException, limit: int = 160) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


# ------------------------------------------------------------------------------------------------
# CHGNet 0.3.0
# ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=2)
def _load_chgnet():
    """The CHGNet 0.3.0 model on CPU (eval mode), loaded once per process (~2 s after the import)."""
    try:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from chgnet.model import CHGNet

            with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its size even with verbose=False
                model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    except ImportError:
        raise FoundationError(MISSING_PACKAGE.format(model="chgnet-0.3.0", package="chgnet")) from None
    except Exception as exc:  # noqa: BLE001 - missing weights, bad install
        raise FoundationError(f"CHGNet 0.3.0 could not be loaded ({type(exc).__name__}: {exc})") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    del torch
    return model


def _to_pymatgen(structure: Any):
    from pymatgen.core import Structure

    if isinstance(structure, dict):
        return Structure.from_dict(structure)
    if hasattr(structure, "get_cell") and hasattr(structure, "get_positions"):
        from pymatgen.io.ase import AseAtomsAdaptor

        return AseAtomsAdaptor.get_structure(structure)
    return structure


def _chgnet_batch(structures: Sequence[Any]) -> list[np.ndarray]:
    """CHGNet 0.3.0 ``atom_fea`` ``[n_atoms, 64]`` of each structure, one batched forward; raises
    :class:`FoundationInputError` if the batch fails."""
    model = _load_chgnet()
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            pmg = [_to_pymatgen(s) for s in structures]
            out = model.predict_structure(pmg, task="e", return_atom_feas=True, batch_size=len(pmg))
        except Exception as exc:  # noqa: BLE001 - CHGNet's graph builder raises several types
            raise FoundationInputError(f"CHGNet failed ({_one_line(exc)})", "chgnet-0.3.0") from None
    if isinstance(out, dict):
        out = [out]
    return [
        np.asarray(o["atom_fea"], dtype=np.float32).reshape(len(s), KNOWN_MODELS["chgnet-0.3.0"])
        for o, s in zip(out, pmg, strict=True)
    ]


# ------------------------------------------------------------------------------------------------
# SevenNet-0
# ------------------------------------------------------------------------------------------------
#: the node-feature key of sevenn's data (``sevenn._keys.NODE_FEATURE``) read after the last interaction block
SEVENNET_FEATURE_KEY = "x"


@lru_cache(maxsize=2)
def _load_sevennet():
    """(SevenNet-0 model on CPU in eval mode, its cutoff in Å, the name of its last interaction block's last
    module), loaded once per process from the checkpoint inside the ``sevenn`` wheel (never downloaded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import sevenn._const as const
            import sevenn._keys as keys
            from sevenn.util import load_checkpoint

            path = Path(const.SEVENNET_0_11Jul2024)
            if not path.is_file():
                raise FileNotFoundError(f"{path} is not in the sevenn package")
            with contextlib.redirect_stdout(io.StringIO()):
                cp = load_checkpoint(str(path))  # a file path: sevenn resolves no name, downloads nothing
                model = cp.build_model()
            cutoff = float(cp.config[keys.CUTOFF])
    except ImportError:
        raise FoundationError(MISSING_PACKAGE.format(model="sevennet-0", package="sevenn")) from None
    except Exception as exc:  # noqa: BLE001 - missing weights, bad install
        raise FoundationError(f"SevenNet-0 could not be loaded ({type(exc).__name__}: {exc})") from None
    gates = [name for name in model._modules if name.endswith("_equivariant_gate")]
    if not gates or keys.NODE_FEATURE != SEVENNET_FEATURE_KEY:
        raise FoundationError(
            "SevenNet-0: unexpected model layout in this sevenn version (no interaction block)"
        )
    model.eval()
    model.set_is_batch_data(True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, cutoff, gates[-1]


def _sevennet_batch(structures: Sequence[Any]) -> list[np.ndarray]:
    """SevenNet-0 l = 0 node features ``[n_atoms, 128]`` after its last interaction block, one batched forward
    (sevenn's graph builder, ``torch_geometric`` collation); raises :class:`FoundationInputError` if it fails."""
    model, cutoff, last = _load_sevennet()
    import torch
    from ase import Atoms

    from .structures import cell_arrays

    dim = KNOWN_MODELS["sevennet-0"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph
        from torch_geometric.data import Batch

        try:
            graphs = []
            for s in structures:
                lattice, cart, symbols = cell_arrays(s)
                atoms = Atoms(symbols=symbols, positions=cart, cell=lattice, pbc=True)
                unknown = sorted({a.symbol for a in atoms if int(a.number) not in model.type_map})
                if unknown:
                    raise ValueError(f"no element {', '.join(unknown)} in its training data")
                graphs.append(AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, cutoff)))
            data = model._preprocess(Batch.from_data_list(graphs))
            for name, module in model._modules.items():
                data = module(data)
                if name == last:
                    break
            x = data[SEVENNET_FEATURE_KEY]
            ptr = data["ptr"].tolist()
        except Exception as exc:  # noqa: BLE001 - unknown element, graph builder, e3nn shapes
            raise FoundationInputError(f"SevenNet-0 failed ({_one_line(exc)})", "sevennet-0") from None
    if x.shape[1] != dim:
        raise FoundationError(f"SevenNet-0 gave {x.shape[1]} node features, not {dim}")
    x = x.numpy().astype(np.float32)
    return [x[ptr[k] : ptr[k + 1]].copy() for k in range(len(structures))]


#: foundation model → batched embedding function
_BATCH_FUNCS: dict[str, Callable[[Sequence[Any]], list[np.ndarray]]] = {
    "chgnet-0.3.0": _chgnet_batch,
    "sevennet-0": _sevennet_batch,
}


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------
def model_embeddings_each(
    structures: Sequence[Any], model: str, *, batch_size: int = BATCH_SIZE
) -> list[np.ndarray | FoundationInputError]:
    """Embeddings ``[n_atoms, dim]`` of one model for each structure, or the :class:`FoundationInputError` that
    structure alone raises: batches of ``batch_size``; a failing batch is rerun one structure at a time."""
    func = _BATCH_FUNCS[normalize_models(model)[0]]
    out: list[np.ndarray | FoundationInputError] = []
    for start in range(0, len(structures), max(1, batch_size)):
        chunk = list(structures[start : start + max(1, batch_size)])
        try:
            out.extend(func(chunk))
        except FoundationInputError as exc:
            if len(chunk) == 1:
                out.append(exc)
                continue
            for s in chunk:
                try:
                    out.extend(func([s]))
                except FoundationInputError as one:
                    out.append(one)
    return out


def embeddings_each(
    structures: Sequence[Any], spec: FoundationSpec | None = None, *, batch_size: int = BATCH_SIZE
) -> list[np.ndarray | FoundationInputError]:
    """Per-atom embeddings ``[n_atoms, spec.dim]`` float32 (site order; the spec's models concatenated) of each
    structure, or the :class:`FoundationInputError` of the first model that cannot describe it (the next
    models skip it)."""
    spec = spec or FoundationSpec()
    parts: list[list[np.ndarray] | FoundationInputError] = [[] for _ in structures]
    for model in spec.models:
        todo = [k for k, p in enumerate(parts) if not isinstance(p, Exception)]
        embs = model_embeddings_each([structures[k] for k in todo], model, batch_size=batch_size)
        for k, e in zip(todo, embs, strict=True):
            if isinstance(e, Exception):
                parts[k] = e
            else:
                parts[k].append(e)  # type: ignore[union-attr]
    return [
        p if isinstance(p, Exception) else (p[0] if len(p) == 1 else np.concatenate(p, axis=1)) for p in parts
    ]


def embeddings(
    structures: Sequence[Any], spec: FoundationSpec | None = None, *, batch_size: int = BATCH_SIZE
) -> list[np.ndarray]:
    """Per-atom foundation embeddings of every structure, each ``[n_atoms, spec.dim]`` float32 (site order).

    ``structures``: pymatgen ``Structure`` objects or their dicts, or ASE ``Atoms``. Raises the
    :class:`FoundationInputError` of the first structure a model cannot describe (:func:`embeddings_each`
    keeps going). One thread is enough (``bench/predict/foundation.md``, last section): per structure in
    batches of 32 on one CPU core, CHGNet 0.3.0 ~3.5 ms, SevenNet-0 ~11 ms; one at a time about 3x more.
    """
    out = embeddings_each(structures, spec, batch_size=batch_size)
    for e in out:
        if isinstance(e, Exception):
            raise e
    return out  # type: ignore[return-value]


def structure_hash(structure: dict) -> str:
    """sha256 (16 hex) of a pymatgen structure dict's canonical JSON: the cache key of its embedding."""
    text = json.dumps(structure, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _ModelStore:
    """One model's embeddings in ``<root>/<model>.npz`` (keys, row pointers, values; atomic writes)."""

    def __init__(self, model: str, root: Path):
        self.model, self.dim = model, KNOWN_MODELS[model]
        self.path = root / f"{model}.npz"
        self._entries: dict[str, np.ndarray] | None = None

    def load(self) -> dict[str, np.ndarray]:
        if self._entries is None:
            entries: dict[str, np.ndarray] = {}
            if self.path.exists():
                try:
                    with np.load(self.path, allow_pickle=False) as z:
                        keys, ptr, values = [str(k) for k in z["keys"]], z["ptr"], z["values"]
                        for k, key in enumerate(keys):
                            entries[key] = values[ptr[k] : ptr[k + 1]]
                except (OSError, KeyError, ValueError) as exc:
                    log.warning("embedding cache %s unreadable (%s); rebuilding", self.path, exc)
                    entries = {}
            self._entries = entries
        return self._entries

    def save(self) -> None:
        entries = self.load()
        keys = sorted(entries)
        ptr = np.concatenate([[0], np.cumsum([len(entries[k]) for k in keys])]).astype(np.int64)
        values = np.concatenate([entries[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(keys, dtype=str), ptr=ptr, values=values.astype(np.float32))
        os.replace(tmp, self.path)


class EmbeddingCache:
    """Foundation embeddings of structures, one ``<model>.npz`` per model of the spec under ``root``.

    Keyed by model and structure hash (:func:`structure_hash`), so the same crystal is embedded once per model
    whatever its id, and a spec of two models shares each model's file with the one-model specs
    (``paths``: model → file; ``path``: the first model's file). ``root`` default: ``<optiladder cache>/foundation``.
    """

    def __init__(self, spec: FoundationSpec | None = None, root: str | Path | None = None):
        from . import cache_dir

        self.spec = spec or FoundationSpec()
        self.root = Path(root) if root is not None else cache_dir() / "foundation"
        self._stores = {m: _ModelStore(m, self.root) for m in self.spec.models}
        self.paths = {m: s.path for m, s in self._stores.items()}
        self.path = self.paths[self.spec.models[0]]

    def get(self, structures: Iterable[dict], *, save: bool = True) -> list[np.ndarray]:
        """Embeddings ``[n_atoms, dim]`` of structure dicts (same order); computes and stores what is missing.

        Raises the :class:`FoundationInputError` of the first structure a model cannot describe, after storing
        the embeddings of the others."""
        structures = list(structures)
        keys = [structure_hash(s) for s in structures]
        parts = []
        for model, store in self._stores.items():
            entries = store.load()
            todo = sorted(
                {k: i for i, k in enumerate(keys) if k not in entries}.items(), key=lambda kv: kv[1]
            )
            error, added = None, 0
            if todo:
                log.info("foundation cache: embedding %d new structure(s) with %s", len(todo), model)
                new = model_embeddings_each([structures[i] for _, i in todo], model)
                for (k, _), e in zip(todo, new, strict=True):
                    if isinstance(e, Exception):
                        error = error or e
                    else:
                        entries[k], added = e, added + 1
                if save and added:
                    try:
                        store.save()
                    except OSError as exc:
                        log.warning("embedding cache %s not written (%s)", store.path, exc)
            if error is not None:
                raise error
            parts.append([entries[k] for k in keys])
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate(row, axis=1) for row in zip(*parts, strict=True)]


#: structures whose embeddings a :class:`EmbeddingMemo` keeps by default (``Predictor(embedding_memo=...)``)
DEFAULT_MEMO_SIZE = 4096


def cell_key(structure: Any) -> str:
    """sha256 (16 hex) of a structure's lattice, Cartesian positions (float64 bytes) and element symbols: the
    same crystal given twice (as a file, a ``Structure`` or a dict) gets the same key, any change another."""
    from .structures import cell_arrays

    lattice, cart, symbols = cell_arrays(structure)
    h = hashlib.sha256(np.ascontiguousarray(lattice, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(cart, dtype=np.float64).tobytes())
    h.update(" ".join(symbols).encode())
    return h.hexdigest()[:16]


class EmbeddingMemo:
    """In-memory LRU of per-atom foundation embeddings, keyed by model spec and structure (:func:`cell_key`):
    a repeated structure (the same crystal predicted again in a process) does not run the foundation models.

    ``maxsize``: structures kept (0: nothing kept, every call computes). :meth:`each` has the contract of
    :func:`embeddings_each` (an embedding or that structure's :class:`FoundationInputError`; errors are not
    kept). ``hits``/``misses`` count structures.
    """

    def __init__(self, maxsize: int = DEFAULT_MEMO_SIZE):
        from collections import OrderedDict

        self.maxsize = int(maxsize)
        self._store: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()

    def each(
        self, structures: Sequence[Any], spec: FoundationSpec | None = None
    ) -> list[np.ndarray | FoundationInputError]:
        spec = spec or FoundationSpec()
        if self.maxsize <= 0:
            return embeddings_each(list(structures), spec)
        keys = [(spec.name, cell_key(s)) for s in structures]
        out: list[Any] = [self._store.get(k) for k in keys]
        todo = [i for i, e in enumerate(out) if e is None]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        for k in keys:
            if k in self._store:
                self._store.move_to_end(k)
        if todo:
            for i, e in zip(todo, embeddings_each([structures[i] for i in todo], spec), strict=True):
                out[i] = e
                if not isinstance(e, Exception):
                    self._store[keys[i]] = e
                    self._store.move_to_end(keys[i])
            while len(self._store) > self.maxsize:
                self._store.popitem(last=False)
        return out


def augment(x: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Node features ``[n_atoms, 13]`` ‖ embeddings ``[n_atoms, dim]`` → ``[n_atoms, 13 + dim]`` float32."""
    if x.shape[0] != emb.shape[0]:
        raise ValueError(f"{x.shape[0]} atoms in the graph but {emb.shape[0]} embeddings")
    return np.concatenate([x, emb], axis=1).astype(np.float32)
