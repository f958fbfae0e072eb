"""Free labels: Alexandria's PBE gaps and formation energies as a pretraining stage ahead of IPA spectra.

The bundled Alexandria list carries, for all 3,538 structures, the PBE indirect and direct band gaps (eV) and the
formation energy (eV/atom) of converged VASP calculations. Those of the ``train`` and ``none`` splits (never
``validation`` or ``test``: :func:`free_label_set` checks every id with the leakage guard) train the OptiMate body
with a 3-value head (standardised targets, L1 loss); :func:`transfer_body` then copies the body (node MLP,
attention layers, pooling) into a fresh spectrum model that learns IPA spectra (inter-property transfer; the study
measures whether it helps).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.splits import TRAINABLE, check_trainable

log = logging.getLogger(__name__)

#: the free labels, in head order: Alexandria PBE direct gap (eV), indirect gap (eV), formation energy (eV/atom)
FREE_LABELS: tuple[str, ...] = ("pbe_band_gap_dir", "pbe_band_gap_ind", "e_form")


@dataclass
class FreeLabelSet:
    """Alexandria structures of the trainable splits with their free labels.

    ``ids`` ``[n]``, ``structures`` (pymatgen dicts), ``nsites`` ``[n]``, ``y`` ``[n, 3]`` (``FREE_LABELS`` order,
    eV and eV/atom).
    """

    ids: list[str]
    structures: list[dict]
    nsites: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def free_label_set(max_atoms: int | None = None, exclude: Sequence[str] = ()) -> FreeLabelSet:
    """The free-label set: bundled Alexandria entries of the ``train`` and ``none`` splits with all three labels.

    ``max_atoms``: keep cells of at most that many atoms; ``exclude``: ids left out (e.g. a held-out fold).
    The ids are checked with :func:`~optiladder.data.splits.check_trainable` (a validation/test id raises).
    """
    from ..data.splits import split_of
    from ..structures import alexandria

    skip = set(exclude)
    rows = []
    for e in alexandria():
        if e["mat_id"] in skip or split_of(e["mat_id"]) not in TRAINABLE:
            continue
        if max_atoms is not None and int(e["nsites"]) > max_atoms:
            continue
        vals = [e.get(k) for k in FREE_LABELS]
        if any(v is None or not np.isfinite(float(v)) for v in vals):
            continue
        rows.append((e["mat_id"], e["structure"], int(e["nsites"]), [float(v) for v in vals]))
    ids = [r[0] for r in rows]
    check_trainable(ids, context="free labels")
    return FreeLabelSet(
        ids,
        [r[1] for r in rows],
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.float64).reshape(-1, len(FREE_LABELS)),
    )


def standardise(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mean, std)`` with ``z = (y − mean) / std`` per column (std 0 → 1)."""
    mean, std = y.mean(axis=0), y.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (y - mean) / std, mean, std


def transfer_body(src, dst) -> None:
    """Copy the body (node MLP, attention convolutions, pooling; CGAT's edge embedding and composition context
    too) of ``src`` into ``dst`` in place.

    Both models must be of one architecture with the same body sizes; the heads are left alone (``dst`` keeps
    its own).
    """
    if type(src) is not type(dst):
        raise TypeError(
            f"cannot transfer a body between architectures: {type(src).__name__} -> {type(dst).__name__}"
        )
    for name in src.body_modules():
        getattr(dst, name).load_state_dict(getattr(src, name).state_dict(), strict=True)


def pretrain_free_labels(
    data: list,
    y: np.ndarray,
    *,
    val_fraction: float = 0.1,
    settings=None,
    model_kwargs: dict[str, Any] | None = None,
    model_class: type | None = None,
):
    """Train an OptiMate (or ``model_class``, e.g. CGAT) with a 3-value head on standardised free labels;
    returns ``(model, FitResult)``.

    ``data``: ``Data`` graphs (with ``mat_id``) of a :class:`FreeLabelSet`, ``y`` its labels ``[n, 3]``. A seeded
    ``val_fraction`` of the set (still train/none materials) steers early stopping.
    """
    import torch

    from ..nn import OptiMate
    from .loop import TrainSettings, fit, seed_everything

    settings = settings or TrainSettings()
    if len(data) != len(y):
        raise ValueError(f"{len(data)} graphs but {len(y)} label rows")
    z, _, _ = standardise(np.asarray(y, float))
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(data))
    n_val = max(1, int(round(val_fraction * len(data))))
    for k, d in enumerate(data):
        d.y = torch.as_tensor(z[k], dtype=torch.float32)[None, :]
    val = [data[i] for i in order[:n_val]]
    train = [data[i] for i in order[n_val:]]
    seed_everything(settings.seed)
    kw = dict(model_kwargs or {})
    kw.update(out_dim=len(FREE_LABELS), output_activation="none")
    model = (model_class or OptiMate)(**kw)
    res = fit(model, train, val, settings)
    return model, res
