"""The QP gap correction for a scissor (``--scissor gw``): from a G0W0 record, or from a structure-level model.

Spectra are optical: the scissor Δ is the correction of the **direct** gap, Δ = E_g,dir(G0W0) − E_g,dir(PBE),
on the G0W0 protocol's k-grid (:mod:`optiladder.engine.gw`). Two sources, in this order:

1. **A G0W0 record** of the material (``dataset/gw/gpaw-g0w0-v2``, else ``gpaw-g0w0-v1``): Δ from it, with the
   uncertainty :data:`RECORD_SIGMA` (the RMS difference of our v2 gap corrections from Shishkin & Kresse's
   G0W0@PBE ones over the five validation crystals of docs/gw.md).
2. **The gap model** (:class:`GapModel`, no wavefunctions): ridge regression of Δ on features of the material,
   fitted on the G0W0 labels of **trainable** materials only (train split and unlisted; validation/test labels
   are refused, :class:`~optiladder.data.splits.LeakageError`). The feature set and the ridge strength are chosen
   together by leave-one-out error on those labels among :data:`CANDIDATES` × :data:`ALPHAS`: the direct PBE gap,
   the electronegativity spread (max − min Pauling χ; 0 for an element), and the screening of the PBE RPA
   spectrum, 1/ε∞ and gap/ε∞ (the dielectric scaling of the QP correction: the exact-exchange fraction of a
   dielectric-dependent hybrid is 1/ε∞; Skone, Govoni & Galli, PRB 89, 195112 (2014)). ε∞ of a label is the
   RPA ε∞ of the material's spectra record in the dataset; the candidates that need it are compared on the labels
   that have it (and dropped when fewer than :data:`MIN_LABELS` have it). Uncertainty: the leave-one-out RMSE. A
   query outside the labels' domain (gap range, elements, too few labels) gets one warning line per reason.
   :data:`BASELINE_CANDIDATES` at :data:`RIDGE_ALPHA` is the first model ([gap] or [gap, Δχ]), kept callable
   (``GapModel.fit(..., candidates=BASELINE_CANDIDATES, alphas=(RIDGE_ALPHA,))``) as the baseline of
   reports/wavefunction/gap_model.py.

For a **computed** spectrum the direct PBE gap is the record's own ``gap_direct`` and ε∞ its RPA ε∞. For a
**predicted** one there is no band structure: the gap is estimated from the predicted Im ε by :func:`onset_gap`
(first energy where Im ε reaches :data:`ONSET_FRACTION` of its maximum, plus :data:`ONSET_OFFSET`), whose error
is propagated, and ε∞ is the predicted RPA ε∞.

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
#: fewer trainable labels than this: the model says so (and the ε∞ candidates need this many labels with ε∞)
MIN_LABELS = 10
#: the ridge strength of the baseline model (on standardized features)
RIDGE_ALPHA = 1e-2
#: the ridge strengths the gap model chooses from (leave-one-out, with the feature set)
ALPHAS: tuple[float, ...] = (1e-2, 0.1, 0.3, 1.0, 3.0)
#: the baseline's feature sets: [direct PBE gap] or [gap, electronegativity spread]
BASELINE_CANDIDATES: tuple[tuple[str, ...], ...] = (("gap",), ("gap", "chi_spread"))
#: every feature set the gap model chooses from (``inv_eps`` = 1/ε∞ of the PBE RPA spectrum, ``gap_inv_eps`` =
#: direct gap / ε∞)
CANDIDATES: tuple[tuple[str, ...], ...] = BASELINE_CANDIDATES + (
    ("inv_eps",),
    ("gap", "inv_eps"),
    ("inv_eps", "gap_inv_eps"),
    ("gap", "inv_eps", "gap_inv_eps"),
    ("gap", "chi_spread", "inv_eps"),
)
#: features that need ε∞
EPS_FEATURES = frozenset({"inv_eps", "gap_inv_eps"})


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


def feature_row(gap_direct: float, elements: Sequence[str], eps_inf: float | None = None) -> dict[str, float]:
    """The gap model's features of one material (the ε∞ features only with ``eps_inf``)."""
    row = {"gap": float(gap_direct), "chi_spread": chi_spread(elements)}
    if eps_inf is not None and np.isfinite(eps_inf) and eps_inf > 0:
        row.update(inv_eps=1.0 / eps_inf, gap_inv_eps=float(gap_direct) / eps_inf)
    return row


def spectra_eps_inf(spectra: dict) -> tuple[float, str]:
    """(ε∞, level) of spectra (level → Spectrum): the RPA ε∞ the gap model is fitted on, else IPA's."""
    level = "rpa" if "rpa" in spectra else next(iter(spectra))
    return float(spectra[level].eps_inf), level


def label_eps_inf(mat_ids: Iterable[str], root: str | Path | None = None) -> dict[str, float]:
    """RPA ε∞ of each material's spectra record in the dataset store (``root``, default the dataset's records);
    materials without a record (or without RPA) are left out."""
    from ..data.store import default_root
    from ..engine.records import RecordError, read_record, record_path, record_spectra

    base = Path(root) if root is not None else default_root()
    out = {}
    for m in mat_ids:
        path = record_path(base, m)
        if not path.exists():
            continue
        try:
            sp = record_spectra(read_record(path))
        except RecordError as exc:
            log.warning("%s", exc)
            continue
        if "rpa" in sp:
            out[m] = float(sp["rpa"].eps_inf)
    return out


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
    alpha: float = RIDGE_ALPHA

    @property
    def needs_eps(self) -> bool:
        return bool(EPS_FEATURES & set(self.features))

    @classmethod
    def fit(
        cls,
        records: dict[str, dict],
        *,
        candidates: Sequence[tuple[str, ...]] | None = None,
        alphas: Sequence[float] = ALPHAS,
        eps_inf: dict[str, float] | None = None,
    ) -> GapModel:
        """Fit on G0W0 records of trainable materials; a validation/test record raises LeakageError.

        ``candidates`` (default :data:`CANDIDATES`) × ``alphas`` are compared by leave-one-out RMSE on the labels
        that have every feature of the candidates compared (ε∞: ``eps_inf``, default :func:`label_eps_inf` of the
        dataset's records; the ε∞ candidates are dropped when fewer than :data:`MIN_LABELS` labels have it); the
        chosen one is refitted on every label that has its features.
        """
        bad = sorted(m for m, r in records.items() if held_out(m, r.get("split")))
        if bad:
            raise LeakageError(
                f"gap model: {len(bad)} validation/test material(s) may not be trained on ({', '.join(bad[:3])})"
            )
        if len(records) < 3:
            raise ValueError(f"gap model: {len(records)} trainable G0W0 labels; need at least 3")
        cands = [tuple(c) for c in (candidates or CANDIDATES)]
        if any(EPS_FEATURES & set(c) for c in cands):
            eps_inf = label_eps_inf(records) if eps_inf is None else eps_inf
            if sum(m in eps_inf for m in records) < MIN_LABELS:
                cands = [c for c in cands if not EPS_FEATURES & set(c)]
                if not cands:
                    raise ValueError(f"gap model: fewer than {MIN_LABELS} labels have ε∞")
        eps_inf = eps_inf or {}
        rows = {
            m: feature_row(r["gap_pbe_direct"], record_elements(r), eps_inf.get(m))
            for m, r in records.items()
        }
        y_all = {m: direct_correction(r) for m, r in records.items()}
        need = set().union(*cands)
        common = sorted(m for m in records if need <= rows[m].keys())  # every candidate compared on these
        y = np.array([y_all[m] for m in common])
        best = None
        for feats in cands:
            x = np.array([[rows[m][f] for f in feats] for m in common])
            for alpha in alphas:
                score = float(np.sqrt(np.mean(_loo_errors(x, y, alpha) ** 2)))
                if best is None or score < best[0] - 1e-9:
                    best = (score, feats, alpha)
        _, feats, alpha = best
        ids = sorted(m for m in records if set(feats) <= rows[m].keys())
        x = np.array([[rows[m][f] for f in feats] for m in ids])
        y = np.array([y_all[m] for m in ids])
        err = _loo_errors(x, y, alpha)
        mean, scale, coef = _ridge(x, y, alpha)
        elements = frozenset(e for m in ids for e in record_elements(records[m]))
        gaps = np.array([rows[m]["gap"] for m in ids])
        return cls(feats, mean, scale, coef, float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err))), ids,
                   (float(gaps.min()), float(gaps.max())), elements, alpha)  # fmt: skip

    def _delta(self, row: dict[str, float]) -> float:
        x = np.array([row[f] for f in self.features])
        return float(self.coef[0] + ((x - self.mean) / self.scale) @ self.coef[1:])

    def predict(
        self,
        gap_direct: float,
        elements: Sequence[str],
        *,
        gap_sigma: float = 0.0,
        eps_inf: float | None = None,
    ) -> Correction:
        """Δ for a material of direct PBE gap ``gap_direct`` (eV; its own uncertainty ``gap_sigma``) and RPA
        ``eps_inf`` (needed by a model on ε∞ features: ValueError without it)."""
        row = feature_row(gap_direct, elements, eps_inf)
        missing = [f for f in self.features if f not in row]
        if missing:
            raise ValueError(f"gap model [{', '.join(self.features)}] needs ε∞ (eps_inf) for {missing}")
        delta = self._delta(row)
        dg = 1e-3  # the gap's uncertainty through every feature that holds it
        slope = (self._delta(feature_row(gap_direct + dg, elements, eps_inf)) - delta) / dg
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
        how = (
            f"gap model [{', '.join(self.features)}] (ridge α {self.alpha:g}) on {len(self.mat_ids)} G0W0 labels, "
            "leave-one-out RMSE"
        )
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


def _loo_errors(x: np.ndarray, y: np.ndarray, alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Leave-one-out prediction errors of the ridge fit."""
    err = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        mean, scale, coef = _ridge(x[keep], y[keep], alpha)
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


def model_correction(
    model: GapModel, gap_direct: float, elements: Sequence[str], spectra: dict, *, gap_sigma: float = 0.0
) -> Correction:
    """The gap model's Δ for a material with ``spectra`` (level → Spectrum: ε∞ for the ε∞ features, RPA; IPA's
    only when there is no RPA, said in a warning)."""
    eps, level = spectra_eps_inf(spectra)
    c = model.predict(gap_direct, elements, gap_sigma=gap_sigma, eps_inf=eps)
    if model.needs_eps:
        c.source += f"; ε∞ {eps:.2f} ({level.upper()})"
        if level != "rpa":
            c.warnings.append(f"ε∞ from {level.upper()} (the model is fitted on RPA ε∞)")
    return c


def computed_correction(
    rec: dict, labels: dict[str, dict] | None = None, model: GapModel | None = None
) -> Correction:
    """Δ for a computed spectra record: its material's G0W0 record if there is one, else the gap model on the
    record's own direct gap (``gap_direct``), elements and RPA ε∞."""
    labels = load_labels() if labels is None else labels
    own = record_correction(rec["mat_id"], labels)
    if own is not None:
        return own
    from pymatgen.core import Structure

    from ..engine.records import record_spectra

    elements = [e.symbol for e in Structure.from_dict(rec["structure"]).composition.elements]
    return model_correction(model or default_model(), float(rec["gap_direct"]), elements, record_spectra(rec))


def predicted_correction(spectra: dict, structure, model: GapModel | None = None) -> Correction:
    """Δ for predicted spectra (level → :class:`~optiladder.spectra.Spectrum`): the gap model on the direct gap
    estimated from the predicted Im ε (RPA if predicted, else IPA; :func:`onset_gap`, error propagated) and the
    predicted ε∞."""
    sp = spectra.get("rpa") or spectra.get("ipa") or next(iter(spectra.values()))
    gap = onset_gap(sp.omega, sp.trace_im())
    elements = [e.symbol for e in structure.composition.elements]
    c = model_correction(model or default_model(), gap, elements, spectra, gap_sigma=ONSET_SIGMA)
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
