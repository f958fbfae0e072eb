"""The QP gap correction for a scissor (``--scissor gw``): from a G0W0 record, or from a structure-level model.

Spectra are optical: the scissor Δ is the correction of the **direct** gap, Δ = E_g,dir(G0W0) − E_g,dir(PBE),
on the G0W0 protocol's k-grid (:mod:`optiladder.engine.gw`). Two sources, in this order:

1. **A G0W0 record** of the material (``dataset/gw/gpaw-g0w0-v2``, else ``gpaw-g0w0-v1``): Δ from it, with the
   uncertainty :data:`RECORD_SIGMA` (the RMS difference of our v2 gap corrections from Shishkin & Kresse's
   G0W0@PBE ones over the five validation crystals of docs/gw.md).
2. **The gap model** (:class:`GapModel`, no wavefunctions): ridge regression of Δ on the material's direct PBE
   gap and its electronegativity spread (max − min Pauling χ of its elements; 0 for an element), fitted on the
   G0W0 labels of **trainable** materials only (train split and unlisted; validation/test labels are refused,
   :class:`~optiladder.data.splits.LeakageError`) and chosen between [gap] and [gap, Δχ] by leave-one-out
   error on those labels. Uncertainty: the leave-one-out RMSE. A query outside the labels' domain (gap range,
   elements, too few labels) gets one warning line per reason.

For a **computed** spectrum the direct PBE gap is the record's own ``gap_direct``. For a **predicted** one there
is no band structure: the gap is estimated from the predicted Im ε by :func:`onset_gap` (first energy where
Im ε reaches :data:`ONSET_FRACTION` of its maximum, plus :data:`ONSET_OFFSET`), whose error is propagated.

The VAE route (Δ from the downstream model on the state latents of a wavefunction export) is not used for the
scissor: with the labels that exist its cross-validated MAE is worse than the linear scissor baseline's
(reports/wavefunction/README.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.splits import LeakageError, held_out
from ..engine.gw import read_gw_record

log = logging.getLogger(__name__)

#: G0W0 protocols whose records give labels, preferred first (v1 records of cells with ≥ 40 bands at 60 eV,
#: Si and AlP, are computed exactly as v2 would)
LABEL_PROTOCOLS: tuple[str, ...] = ("gpaw-g0w0-v2", "gpaw-g0w0-v1")
#: uncertainty (eV) of a correction taken from a G0W0 record: RMS of (ours − Shishkin & Kresse) over the v2
#: corrections of C, MgO, BN, SiC, LiF (1.53/1.38, 2.43/2.49, 1.77/1.65, 0.90/0.92, 4.07/4.33 eV; docs/gw.md)
RECORD_SIGMA = 0.15
#: the onset estimate of the direct gap from Im ε (:func:`onset_gap`): first ω with Im ε ≥ 10 % of its maximum,
#: + 0.16 eV. Measured on the 335 train/none gpaw-pbe-v1 RPA records (trace; reports/wavefunction/gap_model.py):
#: median (onset − gap_direct) −0.155 eV at 10 %, mean |error| 0.255 eV after the shift (5 %: −0.52 / 0.23 eV;
#: 20 %: +0.28 / 0.33 eV). 10 % rather than 5 %: less sensitive to the weak absorption that models put below
#: the gap (optiladder.onset).
ONSET_FRACTION = 0.1
ONSET_OFFSET = 0.16
ONSET_SIGMA = 0.26
#: fewer trainable labels than this: the model says so
MIN_LABELS = 10
RIDGE_ALPHA = 1e-2


def gw_root(protocol: str) -> Path:
    """The dataset's folder of a G0W0 protocol's records: ``dataset/gw/<protocol>``."""
    from ..data.store import default_root

    return default_root().parent / "gw" / protocol


def load_labels(roots: Iterable[str | Path] | None = None) -> dict[str, dict]:
    """G0W0 records by material id from ``roots`` (default: the dataset's :data:`LABEL_PROTOCOLS` folders);
    the first root that has a material wins. Invalid files are logged and skipped."""
    roots = [gw_root(p) for p in LABEL_PROTOCOLS] if roots is None else [Path(r) for r in roots]
    out: dict[str, dict] = {}
    for root in roots:
        files = sorted(root.glob("*.json.gz")) if root.is_dir() else ([root] if root.exists() else [])
        for path in files:
            try:
                rec = read_gw_record(path)
            except ValueError as exc:
                log.warning("%s", exc)
                continue
            out.setdefault(rec["mat_id"], rec)
    return out


def direct_correction(rec: dict) -> float:
    """Δ of a G0W0 record: direct G0W0 gap − direct PBE gap (eV)."""
    return float(rec["gap_g0w0_direct"] - rec["gap_pbe_direct"])


def chi_spread(elements: Sequence[str]) -> float:
    """Max − min Pauling electronegativity of the elements (0 for one element; elements without χ count 0)."""
    els = sorted(set(elements))
    if len(els) < 2:
        return 0.0
    from pymatgen.core import Element

    xs = [Element(e).X for e in els]
    xs = [x for x in xs if np.isfinite(x)]
    return float(max(xs) - min(xs)) if len(xs) >= 2 else 0.0


def record_elements(rec: dict) -> list[str]:
    from pymatgen.core import Structure

    return [el.symbol for el in Structure.from_dict(rec["structure"]).composition.elements]


def onset_gap(omega: np.ndarray, eps_im: np.ndarray) -> float:
    """Direct-gap estimate (eV) from Im ε: the first ω where it reaches :data:`ONSET_FRACTION` of its maximum,
    plus :data:`ONSET_OFFSET` (uncertainty :data:`ONSET_SIGMA`)."""
    omega, eps_im = np.asarray(omega, float), np.asarray(eps_im, float)
    if not np.any(eps_im > 0):
        raise ValueError("Im ε is nowhere positive: no absorption onset")
    i = int(np.argmax(eps_im >= ONSET_FRACTION * eps_im.max()))
    return float(omega[i] + ONSET_OFFSET)


@dataclass
class Correction:
    """A scissor Δ (eV) with its 1σ uncertainty, where it comes from and why it may not hold."""

    delta: float
    sigma: float
    source: str
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        n = len(self.warnings)
        tail = f"; OUTSIDE the GW model's domain ({n} warning{'s' if n > 1 else ''})" if n else ""
        return f"scissor gw: Δ = {self.delta:+.2f} ± {self.sigma:.2f} eV ({self.source}){tail}"

    def as_dict(self) -> dict:
        return {
            "delta_eV": round(self.delta, 4),
            "sigma_eV": round(self.sigma, 4),
            "source": self.source,
            "warnings": list(self.warnings),
        }


@dataclass
class GapModel:
    """Ridge model Δ = w · [1, features] of the direct-gap correction (see the module docstring)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    loo_rmse: float
    loo_mae: float
    mat_ids: list[str]
    gap_range: tuple[float, float]
    elements: frozenset[str]

    @classmethod
    def fit(
        cls, records: dict[str, dict], *, candidates: Sequence[tuple[str, ...]] | None = None
    ) -> GapModel:
        """Fit on G0W0 records of trainable materials; a validation/test record raises LeakageError."""
        bad = sorted(m for m, r in records.items() if held_out(m, r.get("split")))
        if bad:
            raise LeakageError(
                f"gap model: {len(bad)} validation/test material(s) may not be trained on ({', '.join(bad[:3])})"
            )
        if len(records) < 3:
            raise ValueError(f"gap model: {len(records)} trainable G0W0 labels; need at least 3")
        ids = sorted(records)
        table = {
            "gap": np.array([records[m]["gap_pbe_direct"] for m in ids], float),
            "chi_spread": np.array([chi_spread(record_elements(records[m])) for m in ids], float),
        }
        y = np.array([direct_correction(records[m]) for m in ids], float)
        best = None
        for feats in candidates or (("gap",), ("gap", "chi_spread")):
            x = np.column_stack([table[f] for f in feats])
            err = _loo_errors(x, y)
            score = float(np.sqrt(np.mean(err**2)))
            if best is None or score < best[0] - 1e-9:
                best = (score, feats, err)
        score, feats, err = best
        x = np.column_stack([table[f] for f in feats])
        mean, scale, coef = _ridge(x, y)
        elements = frozenset(e for m in ids for e in record_elements(records[m]))
        gaps = table["gap"]
        return cls(feats, mean, scale, coef, score, float(np.mean(np.abs(err))), ids,
                   (float(gaps.min()), float(gaps.max())), elements)  # fmt: skip

    def predict(self, gap_direct: float, elements: Sequence[str], *, gap_sigma: float = 0.0) -> Correction:
        """Δ for a material of direct PBE gap ``gap_direct`` (eV; its own uncertainty ``gap_sigma``)."""
        row = {"gap": float(gap_direct), "chi_spread": chi_spread(elements)}
        x = np.array([row[f] for f in self.features])
        delta = float(self.coef[0] + ((x - self.mean) / self.scale) @ self.coef[1:])
        slope = self.coef[1] / self.scale[0] if self.features[0] == "gap" else 0.0
        sigma = float(np.hypot(self.loo_rmse, slope * gap_sigma))
        warnings = []
        lo, hi = self.gap_range
        margin = 0.1 * (hi - lo)
        if not lo - margin <= gap_direct <= hi + margin:
            warnings.append(
                f"direct PBE gap {gap_direct:.2f} eV outside the labelled range {lo:.2f}-{hi:.2f} eV"
            )
        new = sorted(set(elements) - self.elements)
        if new:
            warnings.append(f"element(s) {', '.join(new)} in no G0W0 label")
        if len(self.mat_ids) < MIN_LABELS:
            warnings.append(f"the model rests on {len(self.mat_ids)} labelled materials (< {MIN_LABELS})")
        how = f"gap model [{', '.join(self.features)}] on {len(self.mat_ids)} G0W0 labels, leave-one-out RMSE"
        return Correction(max(delta, 0.0), sigma, how, warnings)


def _ridge(
    x: np.ndarray, y: np.ndarray, alpha: float = RIDGE_ALPHA
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature mean, feature scale, [intercept, weights]) of a ridge fit on standardized features."""
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - mean) / scale
    a = np.column_stack([np.ones(len(z)), z])
    reg = alpha * np.eye(a.shape[1])
    reg[0, 0] = 0.0  # the intercept is not shrunk
    coef = np.linalg.solve(a.T @ a + reg, a.T @ y)
    return mean, scale, coef


def _loo_errors(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out prediction errors of the ridge fit."""
    err = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean, scale, coef = _ridge(x[keep], y[keep])
        err[i] = coef[0] + ((x[i] - mean) / scale) @ coef[1:] - y[i]
    return err


def trainable(records: dict[str, dict]) -> dict[str, dict]:
    """The records of trainable materials (train split and unlisted) only."""
    return {m: r for m, r in records.items() if not held_out(m, r.get("split"))}


def record_correction(mat_id: str, records: dict[str, dict]) -> Correction | None:
    """Δ from the material's own G0W0 record, if it has one."""
    rec = records.get(mat_id)
    if rec is None:
        return None
    return Correction(
        direct_correction(rec), RECORD_SIGMA, f"G0W0 record {rec['protocol']['name']} of {mat_id}"
    )


_MODEL: dict[str, GapModel] = {}


def default_model() -> GapModel:
    """The gap model fitted on the trainable labels of the dataset's G0W0 folders (fitted once per process)."""
    if "m" not in _MODEL:
        _MODEL["m"] = GapModel.fit(trainable(load_labels()))
    return _MODEL["m"]


def computed_correction(
    rec: dict, labels: dict[str, dict] | None = None, model: GapModel | None = None
) -> Correction:
    """Δ for a computed spectra record: its material's G0W0 record if there is one, else the gap model on the
    record's own direct gap (``gap_direct``) and elements."""
    labels = load_labels() if labels is None else labels
    own = record_correction(rec["mat_id"], labels)
    if own is not None:
        return own
    from pymatgen.core import Structure

    elements = [e.symbol for e in Structure.from_dict(rec["structure"]).composition.elements]
    return (model or default_model()).predict(float(rec["gap_direct"]), elements)


def predicted_correction(spectra: dict, structure, model: GapModel | None = None) -> Correction:
    """Δ for predicted spectra (level → :class:`~optiladder.spectra.Spectrum`): the gap model on the direct gap
    estimated from the predicted Im ε (RPA if predicted, else IPA; :func:`onset_gap`, error propagated)."""
    sp = spectra.get("rpa") or spectra.get("ipa") or next(iter(spectra.values()))
    gap = onset_gap(sp.omega, sp.trace_im())
    elements = [e.symbol for e in structure.composition.elements]
    c = (model or default_model()).predict(gap, elements, gap_sigma=ONSET_SIGMA)
    c.source += f"; direct gap {gap:.2f} eV from the predicted {sp.level.upper()} onset"
    return c


def scissored(spectra: dict, corr: Correction) -> dict:
    """level → the spectrum shifted by ``corr.delta`` (:meth:`optiladder.spectra.Spectrum.scissor`)."""
    return {lv: sp.scissor(corr.delta, **corr.as_dict()) for lv, sp in spectra.items()}


def _echo(text: str, err: bool = False) -> None:
    import sys

    print(text, file=sys.stderr if err else sys.stdout)


def write_scissored(rec: dict, spectra: dict, path: str | Path, echo=_echo) -> Path:
    """``optiladder compute --scissor gw``: Δ for a computed record, its scissored trace spectra (Im ε, Re ε by
    KK) as JSON at ``path``, one line (and a ``warning:`` line per domain warning) through ``echo``."""
    import json

    corr = computed_correction(rec)
    shifted = scissored(spectra, corr)
    out = {
        "mat_id": rec["mat_id"],
        "formula": rec.get("formula"),
        "gap_direct_pbe": rec["gap_direct"],
        "scissor": corr.as_dict(),
        "convention": "Im eps'(w) = (w - D)/w * Im eps(w - D) (f-sum preserving); Re eps by Kramers-Kronig",
        "omega_eV": np.round(spectra[next(iter(spectra))].omega, 6).tolist(),
        "spectra": {
            lv: {
                "eps_im": np.round(sp.trace_im(), 6).tolist(),
                "eps_re": np.round(sp.trace_re(), 6).tolist(),
                "eps_inf": round(sp.eps_inf, 4),
            }
            for lv, sp in shifted.items()
        },
    }
    path = Path(path)
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    eps = "  ".join(
        f"{lv.upper()} {spectra[lv].eps_inf:.3f} -> {sp.eps_inf:.3f}" for lv, sp in shifted.items()
    )
    echo(f"{rec['mat_id']}  {corr.line()}  eps_inf {eps}  -> {path}")
    for w in corr.warnings:
        echo(f"warning: {rec['mat_id']}: GW scissor outside the GW model's domain: {w}", err=True)
    return path
