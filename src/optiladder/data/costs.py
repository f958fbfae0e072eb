"""What one calculation costs: per-structure features, their table for the bundled structures, and a cost model
fitted on the records' own timings.

The cost of a GPAW calculation of the IPA + RPA protocol (PROTOCOL.md) is set by three numbers GPAW itself
derives from the structure, known before anything is computed:

* ``n_ibz_k``: the irreducible k-points of the non-self-consistent Γ-centred Monkhorst–Pack mesh
  (``kpts={"density": protocol.nscf_kdensity, "gamma": True}`` on the engine's symmetrized cell), reduced by
  the operations GPAW uses: the lattice operations with entries in {−1, 0, 1} that map the atoms onto
  themselves **without a fractional translation** (GPAW's default ``symmorphic=True``: screw axes and glide
  planes are not used), plus time reversal where there is no inversion;
* ``nbands``: the protocol's rule ``max(nocc + nbands_extra, ceil(nbands_per_volume · V))`` with ``nocc`` from
  the valence electrons of GPAW's default PAW setups;
* ``volume``: V in Å³ (the plane-wave count grows with it).

:func:`structure_features` reproduces GPAW's own ``n_ibz_k`` and ``nbands`` for every record of the dataset
(the engine's symmetrization, :func:`optiladder.structures.symmetrize`, comes first: the bundled cells are not
all the cell GPAW sees). The bundled table (``resources/alexandria/cost_features.json.gz``,
:func:`bundled_features`) holds them for all bundled structures under the default protocol's k-density and
bands rule; ``scripts/make_cost_features.py`` writes it.

:func:`fit_costs` fits ``ln s = c + a·ln n_ibz_k + b·ln nbands + d·ln V`` (s: the calculation phases' total CPU
seconds of one record, wall seconds for older records without CPU times) per (protocol, numerics) group with at
least :data:`MIN_RECORDS` records. Every group of at least :data:`MIN_OFFSET_RECORDS` records also tries its own
offset on the slopes of each other fitted group; the design with the smaller leave-one-out rms prices the group
(a small group nearly always borrows: its own four parameters overfit; bench/engine/costs.md). Below that a group
keeps the per-size medians (:class:`SizeCosts`, the campaign's earlier cost model). Every group reports n, its
rms and leave-one-out rms in ln s, and the leave-one-out rms of the per-size median on the same records.
NumPy only (spglib-free: the symmetry search is GPAW's, in NumPy); pymatgen for the engine's symmetrization.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

#: the bundled feature table (under ``optiladder/resources``)
FEATURE_TABLE = "alexandria/cost_features.json.gz"
FEATURE_FORMAT = "optiladder.cost_features"
#: records a (protocol, numerics) group needs for its own slopes
MIN_RECORDS = 15
#: records a group needs for its own offset on borrowed slopes (fewer: per-size medians)
MIN_OFFSET_RECORDS = 3
#: GPAW's symmetry tolerance (Å; gpaw.new.symmetry.create_symmetries_object's default)
SYMMETRY_TOLERANCE = 1e-5
#: smallest exponent of the per-size extrapolation t = a * nsites**b (see :func:`size_costs`)
MIN_EXPONENT = 2.0
#: the names of the model's regressors, in order after the intercept
REGRESSORS = ("ln n_ibz_k", "ln nbands", "ln V")


class Features(NamedTuple):
    """What a calculation's cost depends on: irreducible k-points, bands, cell volume (Å³)."""

    n_ibz_k: int
    nbands: int
    volume: float


# --------------------------------------------------------------------------------------------------
# features: GPAW's irreducible k-points and the protocol's bands
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _unimodular_candidates() -> np.ndarray:
    """The 3×3 integer matrices with entries in {−1, 0, 1} and determinant ±1 (GPAW's candidate operations)."""
    c = 1 - np.indices([3] * 9, dtype=np.int64)
    u = c.reshape((3, 3, 3**9)).transpose((2, 0, 1))
    det = np.rint(np.linalg.det(u.astype(float)))
    return u[np.abs(det) == 1]


def lattice_rotations(cell: np.ndarray, tol: float = SYMMETRY_TOLERANCE) -> np.ndarray:
    """Operations ``U`` (in the basis of the lattice vectors) that keep the metric of ``cell`` (rows, Å), as
    GPAW's ``find_set_of_lattice_symmetries`` finds them: ``|U M Uᵀ − M|ᵢⱼ ≤ (Lᵢ + Lⱼ)·tol``."""
    u = _unimodular_candidates()
    m = cell @ cell.T
    mu = np.einsum("sij,jk,slk->sil", u, m, u)
    lengths = np.sqrt(m.diagonal())
    return u[(np.abs(mu - m) <= np.add.outer(lengths, lengths) * tol).all(axis=(1, 2))]


def symmorphic_rotations(
    cell: np.ndarray, frac: np.ndarray, numbers: Sequence[int], tol: float = SYMMETRY_TOLERANCE
) -> np.ndarray:
    """The lattice operations that map every atom onto an atom of the same element with no fractional
    translation (GPAW's ``prune_symmetries`` with ``symmorphic=True``; distances in Å against ``tol``)."""
    frac = np.asarray(frac, float)
    numbers = np.asarray(numbers)
    keep = []
    for u in lattice_rotations(cell, tol):
        rot = frac @ u
        ok = True
        for z in np.unique(numbers):
            same = frac[numbers == z]
            d = rot[numbers == z][:, None, :] - same[None, :, :]
            d -= np.rint(d)
            dist2 = ((d @ cell) ** 2).sum(-1)
            if not ((dist2 < tol**2).sum(axis=1) == 1).all():
                ok = False
                break
        if ok:
            keep.append(u)
    return np.array(keep, dtype=np.int64).reshape(-1, 3, 3)


def kpoint_mesh(cell: np.ndarray, kdensity: float) -> np.ndarray:
    """GPAW's Monkhorst–Pack size for ``{"density": kdensity}``: ``ceil(2π |b_i| · kdensity)`` per axis (ASE's
    ``kptdensity2monkhorstpack`` without rounding to even, as ``kpts2sizeandoffsets`` calls it)."""
    recip = np.linalg.inv(np.asarray(cell, float)).T
    return np.array([int(math.ceil(2 * math.pi * np.linalg.norm(recip[i]) * kdensity)) for i in range(3)])


def irreducible_kpoints(cell: np.ndarray, frac: np.ndarray, numbers: Sequence[int], kdensity: float) -> int:
    """The number of irreducible k-points GPAW finds for the Γ-centred mesh of ``kdensity`` on this cell.

    The same algorithm as GPAW's ``reduce_kpts``: the operations (and their negatives for time reversal when
    there is no inversion) map mesh points; an operation that does not map the mesh onto itself only links the
    points whose images are on it; points are taken from the last to the first, each claiming its images.
    """
    cell = np.asarray(cell, float)
    n = kpoint_mesh(cell, kdensity)
    ops = symmorphic_rotations(cell, frac, numbers)
    if not (ops == -np.eye(3, dtype=np.int64)).all(axis=(1, 2)).any():
        ops = np.concatenate([ops, -ops])
    idx = np.indices(n).transpose((1, 2, 3, 0)).reshape(-1, 3)
    # ASE's monkhorst_pack point i is (i + ½)/n − ½, plus ½/n on even axes for Γ: the numerator below, over n
    shift = np.where(n % 2 == 1, -(n - 1) // 2, 1 - n // 2)
    r = (idx + shift) / n
    npts = len(r)
    images = np.full((npts + 1, len(ops)), npts, dtype=np.int64)  # row npts: a sentinel
    for s, u in enumerate(ops):
        k = (r @ u.T) * n
        q = np.rint(k)
        on_mesh = np.all(np.abs(k - q) < 1e-6, axis=1)
        i = np.mod(q.astype(np.int64) - shift, n)
        lin = (i[:, 0] * n[1] + i[:, 1]) * n[2] + i[:, 2]
        images[:npts, s] = np.where(on_mesh, lin, npts)
    owner = np.full(npts + 1, -1, dtype=np.int64)
    count = 0
    for k in range(npts - 1, -1, -1):
        if owner[k] == -1:
            owner[images[k]] = k
            count += 1
    return count


@lru_cache(maxsize=1)
def _table_payload() -> dict[str, Any]:
    from importlib import resources

    with resources.files("optiladder.resources").joinpath(FEATURE_TABLE).open("rb") as fh:
        return json.loads(gzip.decompress(fh.read()))


def _valence(symbols: Sequence[str], xc: str) -> int:
    """Valence electrons of GPAW's default PAW setups: from GPAW where it is installed, else from the bundled
    table's copy (written from GPAW's setups with the table)."""
    try:
        from ..engine.calculate import valence_electrons

        return valence_electrons(symbols, xc)
    except ImportError:
        table = _table_payload()
        if xc != table["parameters"]["xc"]:
            raise ValueError(
                f"no GPAW here and the bundled valence table is for {table['parameters']['xc']}"
            ) from None
        missing = sorted(set(symbols) - set(table["valence"]))
        if missing:
            raise ValueError(f"no GPAW here and no bundled valence count for {', '.join(missing)}") from None
        return int(sum(table["valence"][s] for s in symbols))


def feature_parameters(protocol=None) -> dict[str, Any]:
    """The protocol parameters the features depend on (two protocols with equal ones share the table)."""
    from ..engine.protocols import DEFAULT_PROTOCOL, get_protocol

    p = get_protocol(protocol or DEFAULT_PROTOCOL)
    return {"nscf_kdensity": p.nscf_kdensity, "nbands_extra": p.nbands_extra,
            "nbands_per_volume": p.nbands_per_volume, "xc": p.xc}  # fmt: skip


def structure_features(
    structure, protocol=None, *, spacegroup: int | None = None, symmetrized: bool = False
) -> Features:
    """``(n_ibz_k, nbands, volume)`` of a structure under ``protocol`` (default: the default protocol), as GPAW
    will see it: the engine's symmetrized standard primitive cell (target ``spacegroup``, e.g. Alexandria's
    ``spg``; ``symmetrized=True``: the structure is that cell already, e.g. a record's), the protocol's
    non-self-consistent k-density and bands rule.

    ``structure``: anything :func:`optiladder.structures.from_any` reads (pymatgen dict or ``Structure``, ASE
    ``Atoms``, a file). Raises :class:`~optiladder.structures.StructureError` for a bad structure and
    ``ValueError`` for an element without a valence count.
    """
    from .. import structures as st
    from ..engine.protocols import DEFAULT_PROTOCOL, get_protocol

    proto = get_protocol(protocol or DEFAULT_PROTOCOL)
    s = st.from_any(structure)
    if not symmetrized:
        s = st.symmetrize(s, spacegroup).structure
    cell = np.asarray(s.lattice.matrix, float)
    frac = np.asarray(s.frac_coords, float)
    numbers = [sp.Z for sp in s.species]
    nk = irreducible_kpoints(cell, frac, numbers, proto.nscf_kdensity)
    volume = float(abs(np.linalg.det(cell)))
    nocc = math.ceil(_valence([sp.symbol for sp in s.species], proto.xc) / 2)
    return Features(int(nk), int(proto.nbands(nocc, volume)), volume)


def build_feature_table(entries: Iterable[dict] | None = None, protocol=None, *, log=None) -> dict[str, Any]:
    """The feature table of Alexandria entries (default: all bundled ones) under ``protocol``: a JSON payload
    ``{"format", "version", "parameters", "valence", "versions", "columns", "rows"}``; ``rows`` are
    ``[mat_id, nsites, n_ibz_k, nbands, volume]``, ``null`` features where a structure cannot be priced
    (``errors`` says why)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import structures as st

    entries = list(st.alexandria() if entries is None else entries)
    rows, errors, symbols = [], {}, set()
    for i, e in enumerate(entries):
        try:
            f = structure_features(e["structure"], protocol, spacegroup=e.get("spg"))
            rows.append([e["mat_id"], int(e["nsites"]), f.n_ibz_k, f.nbands, round(f.volume, 4)])
        except (ValueError, RuntimeError) as exc:
            rows.append([e["mat_id"], int(e["nsites"]), None, None, None])
            errors[e["mat_id"]] = " ".join(str(exc).split())[:200]
        symbols.update(sp["element"] for site in e["structure"]["sites"] for sp in site["species"])
        if log and (i + 1) % 250 == 0:
            log(f"{i + 1}/{len(entries)}")
    params = feature_parameters(protocol)
    valence = {}
    for sym in sorted(symbols):
        try:
            valence[sym] = _valence([sym], params["xc"])
        except (ValueError, OSError, RuntimeError):
            continue
    versions = {}
    for pkg in ("optiladder", "gpaw", "pymatgen", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {
        "format": FEATURE_FORMAT,
        "version": 1,
        "parameters": params,
        "valence": valence,
        "versions": versions,
        "columns": ["mat_id", "nsites", "n_ibz_k", "nbands", "volume"],
        "rows": rows,
        "errors": errors,
    }


def write_feature_table(payload: dict[str, Any], path: str | Path) -> Path:
    """Write a feature table (compact gzip'ed JSON, deterministic bytes)."""
    path = Path(path)
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    return path


@lru_cache(maxsize=4)
def _bundled(params_key: str) -> dict[str, tuple[int, Features | None]]:
    table = _table_payload()
    if json.dumps(table["parameters"], sort_keys=True) != params_key:
        return {}
    out = {}
    for mid, nsites, nk, nb, v in table["rows"]:
        out[mid] = (int(nsites), None if nk is None else Features(int(nk), int(nb), float(v)))
    return out


def bundled_features(protocol=None) -> dict[str, Features]:
    """Material id → :class:`Features` of every bundled structure the table could price, when ``protocol``'s
    k-density and bands rule are the table's (the default protocol's; also gpaw-pbe-ipa-lite's); else empty."""
    key = json.dumps(feature_parameters(protocol), sort_keys=True)
    return {k: f for k, (_, f) in _bundled(key).items() if f is not None}


# --------------------------------------------------------------------------------------------------
# the records' own timings (a light read: no validation, partial records are fine)
# --------------------------------------------------------------------------------------------------
def record_timing(rec: dict[str, Any]) -> dict[str, Any]:
    """The cost row of one record: ``mat_id``, ``protocol``, ``numerics``, ``nsites``, ``cpu`` and ``wall``
    (total seconds of the calculation phases, None where absent), ``n_ibz_k``, ``nbands``, ``volume`` (Å³,
    from the stored cell; None where absent)."""
    from ..engine.numerics import record_numerics

    def total(d):
        try:
            return float(sum(d.values())) if isinstance(d, dict) and d else None
        except (TypeError, ValueError):
            return None

    proto = rec.get("protocol")
    volume = None
    try:
        volume = float(abs(np.linalg.det(np.asarray(rec["structure"]["lattice"]["matrix"], float))))
    except (KeyError, TypeError, ValueError):
        pass
    return {
        "mat_id": rec.get("mat_id"),
        "protocol": proto.get("name") if isinstance(proto, dict) else proto,
        "numerics": record_numerics(rec),
        "nsites": rec.get("nsites"),
        "cpu": total((rec.get("provenance") or {}).get("cpu_seconds")),
        "wall": total(rec.get("seconds")),
        "n_ibz_k": rec.get("n_ibz_k"),
        "nbands": rec.get("nbands"),
        "volume": volume,
    }


def read_timing(path: str | Path) -> dict[str, Any] | None:
    """:func:`record_timing` of one record file, read without validation (guarded gunzip); None if unreadable."""
    from ..engine.records import parse_record_bytes

    path = Path(path)
    try:
        rec = parse_record_bytes(path.read_bytes(), str(path), gz=path.name.endswith(".gz"))
    except (OSError, ValueError):  # RecordError is a ValueError
        return None
    if not isinstance(rec, dict):
        return None
    return {**record_timing(rec), "path": str(path)}


def read_timings(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """:func:`read_timing` of every readable file."""
    return [t for t in (read_timing(p) for p in paths) if t is not None]


# --------------------------------------------------------------------------------------------------
# per-size medians (the campaign's earlier model, and the fallback)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SizeCosts:
    """Core-seconds per material by cell size: measured medians, else ``a * nsites**b``."""

    medians: dict[int, tuple[float, int]]  # nsites -> (median seconds, number of measurements)
    a: float
    b: float

    def seconds(self, nsites: int) -> float:
        if nsites in self.medians:
            return self.medians[nsites][0]
        return self.a * max(nsites, 1) ** self.b


def size_costs(measured: dict[int, list[float]]) -> SizeCosts:
    """Medians per cell size (``{nsites: [seconds, ...]}``) and ``t = a · nsites**b`` for the other sizes, ``b``
    kept in [2, 4] (3 with one measured size): the non-self-consistent step grows with (plane waves)³ ×
    k-points, and the small cells measured first flatten the fit (start-up overhead)."""
    med = {n: (float(np.median(v)), len(v)) for n, v in sorted(measured.items()) if v}
    good = {n: s for n, (s, _) in med.items() if n > 0 and s > 0}
    if len(good) >= 2:
        x, y = np.log(list(good)), np.log(list(good.values()))
        b = float(np.clip(np.polyfit(x, y, 1)[0], MIN_EXPONENT, 4.0))
        a = float(np.exp(np.mean(y - b * x)))
    elif good:
        n0, s0 = next(iter(good.items()))
        b, a = 3.0, s0 / n0**3
    else:
        b, a = 3.0, 60.0  # nothing measured: 1 minute × nsites³ (PROTOCOL.md order of magnitude)
    return SizeCosts(med, a, b)


def loo_size_median(nsites: Sequence[int], seconds: Sequence[float]) -> tuple[float | None, int]:
    """Leave-one-out rms (ln s) of the per-size median: each record against the median of the other records
    of its cell size (records alone in their size are skipped); (rms, records scored)."""
    ns, ly = np.asarray(nsites), np.log(np.asarray(seconds, float))
    err = []
    for i in range(len(ly)):
        other = ly[(ns == ns[i]) & (np.arange(len(ly)) != i)]
        if len(other):
            err.append(ly[i] - np.log(np.median(np.exp(other))))
    return (float(np.sqrt(np.mean(np.square(err)))) if err else None), len(err)


# --------------------------------------------------------------------------------------------------
# the per-structure model
# --------------------------------------------------------------------------------------------------
def _design(features) -> np.ndarray:
    f = np.atleast_2d(np.asarray(features, float))
    return np.column_stack([np.ones(len(f)), np.log(f[:, 0]), np.log(f[:, 1]), np.log(f[:, 2])])


@dataclass(frozen=True)
class GroupCost:
    """The cost model of one (protocol, numerics) group.

    ``method``: ``"fit"`` (own coefficients), ``"offset"`` (own intercept on the slopes of ``donor``) or
    ``"median"`` (per-size medians only). ``coef``: ``[c, a, b, d]`` of ``ln s = c + a·ln n_ibz_k + b·ln nbands
    + d·ln V``; ``rms``/``loo_rms``: residual and leave-one-out rms in ln s; ``spread``: the sd of ln s;
    ``median_loo_rms``: the per-size median's leave-one-out rms on the same records; ``time``: which seconds
    (``CPU``: the phases' CPU seconds; ``wall``: older records without them).
    """

    protocol: str
    numerics: str
    method: str
    n: int
    time: str
    sizes: SizeCosts
    coef: tuple[float, ...] | None = None
    rms: float | None = None
    loo_rms: float | None = None
    spread: float | None = None
    median_loo_rms: float | None = None
    donor: tuple[str, str] | None = None
    note: str = ""

    def seconds(self, features, nsites=None) -> float | np.ndarray:
        """Predicted seconds of one structure (``features`` a :class:`Features`, ``nsites`` its cell size) or of
        many (``[n, 3]`` features, ``[n]`` sizes). A structure without features (None, or a row with a NaN) and
        a median group are priced by the per-size medians (then ``nsites`` is needed)."""
        single = features is None or np.ndim(features) == 1
        if features is None:
            f = np.full((1, 3), np.nan)
        else:
            f = np.array(np.atleast_2d(features), dtype=float)
        ns = None if nsites is None else np.atleast_1d(np.asarray(nsites))
        out = np.full(len(f), np.nan)
        ok = np.isfinite(f).all(axis=1) & (f > 0).all(axis=1)
        if self.coef is not None and ok.any():
            out[ok] = np.exp(_design(f[ok]) @ np.asarray(self.coef))
        rest = ~np.isfinite(out)
        if rest.any():
            if ns is None:
                raise ValueError(f"{self.protocol}/{self.numerics}: pricing by cell size needs nsites")
            out[rest] = [self.sizes.seconds(int(n)) for n in ns[rest]]
        return float(out[0]) if single else out

    def describe(self) -> str:
        head = f"{self.protocol} {self.numerics}: {self.n} records ({self.time} s)"
        if self.coef is None:
            return f"{head}: per-size medians ({self.note})"
        c, a, b, d = self.coef
        what = "fit" if self.method == "fit" else self.note
        loo = f", leave-one-out {self.loo_rms:.2f}" if self.loo_rms is not None else ""
        med = f"; per-size median leave-one-out {self.median_loo_rms:.2f}" if self.median_loo_rms else ""
        spread = f" (spread {self.spread:.2f})" if self.spread is not None else ""
        return (f"{head}: ln s = {c:.2f} {a:+.2f}·ln n_ibz_k {b:+.2f}·ln nbands {d:+.2f}·ln V [{what}]; "
                f"rms {self.rms:.2f}{loo} in ln s{spread}{med}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "numerics": self.numerics, "method": self.method, "n": self.n,
                "time": self.time, "coef": None if self.coef is None else list(self.coef),
                "regressors": ["1", *REGRESSORS], "rms": self.rms, "loo_rms": self.loo_rms, "spread": self.spread,
                "median_loo_rms": self.median_loo_rms, "donor": None if self.donor is None else list(self.donor),
                "note": self.note, "size_medians": {str(k): list(v) for k, v in self.sizes.medians.items()},
                "size_power_law": [self.sizes.a, self.sizes.b]}  # fmt: skip


@dataclass
class CostModel:
    """Per-structure costs by (protocol, numerics): :class:`GroupCost` each (:func:`fit_costs`)."""

    groups: dict[tuple[str, str], GroupCost] = field(default_factory=dict)

    def resolve(self, protocol=None, numerics: str | None = None) -> tuple[GroupCost | None, str]:
        """The group that prices ``protocol`` run with ``numerics`` (default: the engine's default numerics) and
        a note: the group itself, else the same protocol's best-founded fitted group (its numerics differ: the
        note says so), else None."""
        from ..engine.numerics import DEFAULT_NUMERICS
        from ..engine.protocols import DEFAULT_PROTOCOL

        protocol = protocol or DEFAULT_PROTOCOL
        numerics = numerics or DEFAULT_NUMERICS
        g = self.groups.get((protocol, numerics))
        if g is not None:
            return g, ""
        same = [g for (p, _), g in self.groups.items() if p == protocol]
        if not same:
            return None, f"no records of {protocol}"
        best = max(same, key=lambda g: (g.coef is not None, g.method == "fit", g.n))
        return best, f"no {numerics} records of {protocol}: priced with {best.numerics}'s model"

    def seconds(self, features, nsites=None, *, protocol=None, numerics: str | None = None):
        """Predicted seconds (:meth:`GroupCost.seconds`) under ``protocol``/``numerics`` (:meth:`resolve`);
        raises ``KeyError`` when no record of the protocol exists."""
        g, note = self.resolve(protocol, numerics)
        if g is None:
            raise KeyError(note)
        return g.seconds(features, nsites)

    def describe(self) -> list[str]:
        return [g.describe() for _, g in sorted(self.groups.items())]

    def to_dict(self) -> dict[str, Any]:
        return {f"{p}/{n}": g.to_dict() for (p, n), g in sorted(self.groups.items())}


def _ols_loo(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, float]:
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    e = y - x @ beta
    h = np.einsum("ij,ji->i", x, np.linalg.pinv(x))
    loo = e / np.clip(1.0 - h, 1e-9, None)
    return beta, float(np.sqrt(np.mean(e**2))), float(np.sqrt(np.mean(loo**2)))


def _as_timing(r: dict[str, Any]) -> dict[str, Any]:
    return record_timing(r) if ("spectra" in r or "provenance" in r or "structure" in r) else r


def fit_costs(
    records: Iterable[dict[str, Any]], *, min_records: int = MIN_RECORDS, min_offset: int = MIN_OFFSET_RECORDS
) -> CostModel:
    """The per-structure cost model of ``records``: timing rows (:func:`record_timing`, :func:`read_timings`)
    or whole records. Groups by (protocol, numerics); the seconds of a group are the CPU seconds of the
    calculation phases where every record holds them, else the wall seconds (one core per calculation).
    See the module docstring for the fit, the borrowed slopes and the fallback."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        t = _as_timing(r)
        if t.get("protocol") and t.get("nsites"):
            groups[(str(t["protocol"]), str(t.get("numerics") or "?"))].append(t)
    prepared = {}
    for key, rows in groups.items():
        if rows and all(r.get("cpu") for r in rows):
            what, secs = "CPU", [r["cpu"] for r in rows]
        else:
            what, secs = "wall", [r.get("wall") for r in rows]
        use = [(r, s) for r, s in zip(rows, secs, strict=True) if s and s > 0]
        feats = [(r, s) for r, s in use if all((r.get(k) or 0) > 0 for k in ("n_ibz_k", "nbands", "volume"))]
        prepared[key] = (what, use, feats)
    own: dict[tuple[str, str], GroupCost] = {}
    data: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for key, (what, use, feats) in prepared.items():
        if not feats:
            continue
        x = _design([[r["n_ibz_k"], r["nbands"], r["volume"]] for r, _ in feats])
        y = np.log([s for _, s in feats])
        data[key] = (x, y)
        if len(feats) >= min_records and np.linalg.matrix_rank(x) == 4:
            beta, rms, loo = _ols_loo(x, y)
            own[key] = GroupCost(*key, "fit", len(feats), what, size_costs(_by_size(use)),
                                 tuple(float(v) for v in beta), rms, loo, float(np.std(y)))  # fmt: skip
    out: dict[tuple[str, str], GroupCost] = {}
    for key, (what, use, feats) in prepared.items():
        if not use:
            continue
        sizes = size_costs(_by_size(use))
        mloo = loo_size_median([int(r["nsites"]) for r, _ in use], [s for _, s in use])[0]
        # an own offset on the slopes of each other fitted group, scored by leave-one-out
        best = None
        if len(feats) >= min_offset:
            x, y = data[key]
            n = len(y)
            for dkey, d in own.items():
                if dkey == key:
                    continue
                resid = y - x[:, 1:] @ np.asarray(d.coef[1:])
                e = resid - resid.mean()
                loo = float(np.sqrt(np.mean((e * n / (n - 1)) ** 2)))
                if best is None or loo < best[0]:
                    best = (loo, float(np.sqrt(np.mean(e**2))), float(resid.mean()), d)
        g = own.get(key)
        if g is not None and (best is None or g.loo_rms <= best[0]):
            out[key] = GroupCost(*key, "fit", g.n, what, sizes, g.coef, g.rms, g.loo_rms, g.spread, mloo,
                                 note="" if best is None else f"own slopes: leave-one-out {g.loo_rms:.3f} ≤ "
                                 f"{best[0]:.3f} on the slopes of {best[3].protocol}/{best[3].numerics}")  # fmt: skip
        elif best is not None:
            loo, rms, c, d = best
            why = (f"leave-one-out {loo:.3f} < {g.loo_rms:.3f} of its own slopes" if g is not None
                   else f"{len(feats)} records < {min_records} for its own slopes")  # fmt: skip
            out[key] = GroupCost(*key, "offset", len(feats), what, sizes, (c, *d.coef[1:]), rms, loo,
                                 float(np.std(data[key][1])), mloo, donor=(d.protocol, d.numerics),
                                 note=f"own offset on the slopes of {d.protocol}/{d.numerics}: {why}")  # fmt: skip
        else:
            why = f"{len(feats)} records with features < {min_offset}" if own else "no fitted group"
            out[key] = GroupCost(*key, "median", len(use), what, sizes, median_loo_rms=mloo,
                                 note=f"{why}: per-size medians")  # fmt: skip
    return CostModel(dict(sorted(out.items())))


def _by_size(use: list[tuple[dict[str, Any], float]]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = defaultdict(list)
    for r, s in use:
        out[int(r["nsites"])].append(float(s))
    return dict(out)


def records_cost_model(roots: Iterable[str | Path]) -> tuple[CostModel, list[dict[str, Any]]]:
    """:func:`fit_costs` on the records of the given folders (``*.json.gz``; absent folders skipped) and the
    timing rows it rests on."""
    paths = []
    for root in roots:
        root = Path(root)
        if root.is_dir():
            paths += sorted(p for p in root.glob("*.json.gz") if not p.name.startswith("."))
    rows = read_timings(paths)
    return fit_costs(rows), rows


__all__ = [
    "CostModel",
    "Features",
    "GroupCost",
    "SizeCosts",
    "build_feature_table",
    "bundled_features",
    "feature_parameters",
    "fit_costs",
    "irreducible_kpoints",
    "loo_size_median",
    "read_timing",
    "read_timings",
    "record_timing",
    "records_cost_model",
    "size_costs",
    "structure_features",
    "write_feature_table",
]
