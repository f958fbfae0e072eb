"""Foundation-model node features: frozen per-atom embeddings of a universal interatomic potential.

CHGNet (B. Deng et al., Nat. Mach. Intell. 5, 1031 (2023); weights of model version 0.3.0 ship inside the
``chgnet`` wheel, so they load offline) turns a crystal into a 64-value feature vector per atom after its last
atom-convolution layer. These vectors depend only on interatomic distances and angles, so they are invariant to
rotating and translating the crystal (tested). They are appended to OptiMate's 13-value one-hot node features
(:func:`augment`), frozen (never trained), and cached per structure (:class:`EmbeddingCache`), so a dataset pays
the potential's cost once; an unseen structure pays it at prediction time (``bench/predict`` measures it).

Spec (:class:`FoundationSpec`): ``model`` (``"chgnet-0.3.0"``) and ``dim`` (64); recorded with every model
trained on these features so inference builds the same node features. The ``chgnet`` package is an optional
dependency (extra ``foundation``); asking for the features without it raises :class:`FoundationError`.

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
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: foundation models known here: name → (embedding size, loader)
KNOWN_MODELS: dict[str, int] = {"chgnet-0.3.0": 64}


class FoundationError(RuntimeError):
    """The foundation model cannot be loaded or run (package missing, unreadable structure)."""


class FoundationInputError(FoundationError):
    """The foundation model ran but cannot describe these structures (e.g. an atom with no neighbour within
    CHGNet's 6 Å graph cutoff): a problem of the input, not of the installation."""


@dataclass(frozen=True)
class FoundationSpec:
    """Which frozen foundation-model embedding is appended to the node features, and its size."""

    model: str = "chgnet-0.3.0"
    dim: int = 64

    def __post_init__(self) -> None:
        if self.model not in KNOWN_MODELS:
            raise ValueError(f"unknown foundation model {self.model!r}; known: {sorted(KNOWN_MODELS)}")
        if self.dim != KNOWN_MODELS[self.model]:
            raise ValueError(f"{self.model} gives {KNOWN_MODELS[self.model]} values per atom, not {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FoundationSpec:
        return cls(**d)


#: foundation model → the Python package that provides it
PACKAGES: dict[str, str] = {"chgnet-0.3.0": "chgnet"}
MISSING_PACKAGE = (
    "foundation features ({model}) need the '{package}' package, which is not installed: "
    "pip install 'optiladder[foundation]' (scripts/setup.sh installs it)"
)


def require_package(model: str = "chgnet-0.3.0") -> None:
    """Raise :class:`FoundationError` (one line) if the package of foundation model ``model`` is not installed
    (checked without importing it)."""
    import importlib.util

    package = PACKAGES[model]
    if importlib.util.find_spec(package) is None:
        raise FoundationError(MISSING_PACKAGE.format(model=model, package=package))


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


def embeddings(
    structures: Sequence[Any], spec: FoundationSpec | None = None, *, batch_size: int = 32
) -> list[np.ndarray]:
    """Per-atom foundation embeddings of every structure, each ``[n_atoms, spec.dim]`` float32 (site order).

    ``structures``: pymatgen ``Structure`` objects or their dicts, or ASE ``Atoms``. One thread is enough:
    ~17 ms per small cell in batches on one CPU core (CHGNet 0.3.0).
    """
    spec = spec or FoundationSpec()
    if not structures:
        return []
    model = _load_chgnet()
    import torch

    pmg = [_to_pymatgen(s) for s in structures]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            out = model.predict_structure(pmg, task="e", return_atom_feas=True, batch_size=batch_size)
        except Exception as exc:  # noqa: BLE001 - CHGNet's graph builder raises several types
            detail = " ".join(str(exc).split())[:160]
            raise FoundationInputError(f"CHGNet failed ({type(exc).__name__}: {detail})") from None
    if isinstance(out, dict):
        out = [out]
    embs = [
        np.asarray(o["atom_fea"], dtype=np.float32).reshape(len(s), spec.dim)
        for o, s in zip(out, pmg, strict=True)
    ]
    return embs


def structure_hash(structure: dict) -> str:
    """sha256 (16 hex) of a pymatgen structure dict's canonical JSON: the cache key of its embedding."""
    text = json.dumps(structure, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EmbeddingCache:
    """Foundation embeddings of structures kept in one ``<model>.npz`` under ``root`` (atomic writes).

    Keyed by the structure hash (:func:`structure_hash`), so the same crystal is embedded once whatever its id.
    ``root`` default: ``<optiladder cache>/foundation``.
    """

    def __init__(self, spec: FoundationSpec | None = None, root: str | Path | None = None):
        from . import cache_dir

        self.spec = spec or FoundationSpec()
        self.root = Path(root) if root is not None else cache_dir() / "foundation"
        self.path = self.root / f"{self.spec.model}.npz"
        self._entries: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
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

    def _save(self) -> None:
        entries = self._load()
        keys = sorted(entries)
        ptr = np.concatenate([[0], np.cumsum([len(entries[k]) for k in keys])]).astype(np.int64)
        values = (
            np.concatenate([entries[k] for k in keys]) if keys else np.zeros((0, self.spec.dim), np.float32)
        )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(keys, dtype=str), ptr=ptr, values=values.astype(np.float32))
        os.replace(tmp, self.path)

    def get(self, structures: Iterable[dict], *, save: bool = True) -> list[np.ndarray]:
        """Embeddings ``[n_atoms, dim]`` of structure dicts (same order); computes and stores what is missing."""
        structures = list(structures)
        entries = self._load()
        keys = [structure_hash(s) for s in structures]
        todo = sorted({k: i for i, k in enumerate(keys) if k not in entries}.items(), key=lambda kv: kv[1])
        if todo:
            log.info("foundation cache: embedding %d new structure(s) with %s", len(todo), self.spec.model)
            new = embeddings([structures[i] for _, i in todo], self.spec)
            for (k, _), e in zip(todo, new, strict=True):
                entries[k] = e
            if save:
                try:
                    self._save()
                except OSError as exc:
                    log.warning("embedding cache %s not written (%s)", self.path, exc)
        return [entries[k] for k in keys]


def augment(x: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """Node features ``[n_atoms, 13]`` ‖ embeddings ``[n_atoms, dim]`` → ``[n_atoms, 13 + dim]`` float32."""
    if x.shape[0] != emb.shape[0]:
        raise ValueError(f"{x.shape[0]} atoms in the graph but {emb.shape[0]} embeddings")
    return np.concatenate([x, emb], axis=1).astype(np.float32)
