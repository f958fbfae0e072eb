"""Crystal structures in: read any common format, validate, symmetrize (PROTOCOL.md step 0).

Every problem with an input is raised as :class:`StructureError` whose message is one line,
``"<name>: <problem>"``, so batch commands can print it and go on with the next input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Default largest cell (atoms per primitive cell) accepted by the engine and the predictor.
DEFAULT_MAX_ATOMS = 64
#: Atoms closer than this (Å) are "overlapping".
MIN_DISTANCE = 0.5

# Geometry bounds checked before any neighbour search (:func:`check_geometry`, docs/structures.md). The 3,538
# bundled Alexandria structures span: cell lengths 2.31–16.9 Å, volume per atom 5.72–95.8 Å³, angles between
# cell vectors 17.8–166.1°, interplanar spacings 2.00–15.7 Å; every bound leaves a margin of 2× or more
# (angles: 12°/9° on either side). With them the number of neighbours within 5 Å is bounded (at most
# ~4/3·π·5.5³/MIN_VOLUME_PER_ATOM ≈ 350 per atom on average) and a 5 Å neighbour search needs at most
# 13 periodic images along each cell vector.
#: Shortest and longest accepted cell vector (Å).
MIN_CELL_LENGTH, MAX_CELL_LENGTH = 1.0, 100.0
#: Smallest and largest accepted volume per atom (Å³).
MIN_VOLUME_PER_ATOM, MAX_VOLUME_PER_ATOM = 2.0, 500.0
#: Smallest and largest accepted angle between two cell vectors (degrees).
MIN_CELL_ANGLE, MAX_CELL_ANGLE = 5.0, 175.0
#: Smallest accepted distance between lattice planes of the cell (Å): V / |a_i × a_j|.
MIN_SPACING = 1.0
#: Largest accepted |fractional coordinate|: a site written a few cells away is the same crystal, but one at
#: 1e13 cells has lost its position to rounding and sends neighbour searches (CHGNet's among them) out of memory.
MAX_FRACTIONAL = 100.0
#: A sheared or skewed cell is LLL-reduced (same crystal, other cell vectors) only when its vectors are within
#: this length (Å); beyond, the cell is refused as it is.
_MAX_REDUCIBLE_LENGTH = 1e4
#: Tolerances tried in order when symmetrizing (Å), PROTOCOL.md step 0.
SYMPRECS = (1e-5, 1e-3, 1e-2, 0.1)
DEFAULT_SYMPREC = 1e-3

# Elements with a PBE PAW setup in gpaw-data 1.2: H–Rn except Tc, Po and At (measured on the installed
# package; `gpaw_elements` checks the installed setups at run time when GPAW is importable).
_NO_SETUP = {"Tc", "Po", "At"}


class StructureError(ValueError):
    """A bad input structure; ``str(err)`` is one line, ``"<name>: <problem>"``."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


@dataclass(frozen=True)
class Symmetrized:
    """A standard primitive cell and how it was found."""

    structure: Any  # pymatgen Structure
    spacegroup: int
    symprec: float
    target_spacegroup: int | None


@lru_cache(maxsize=1)
def gpaw_elements() -> frozenset[str]:
    """Element symbols with a PBE PAW setup: from the installed gpaw-data where possible (read once per
    process: finding the setups reads and decompresses ~90 files, ~0.3 s)."""
    from pymatgen.core.periodic_table import Element

    try:  # the real list from the installed setups
        from gpaw import setup_paths  # noqa: F401
        from gpaw.setup_data import search_for_file

        found = set()
        for el in Element:
            if el.Z > 86:
                continue
            try:
                search_for_file(f"{el.symbol}.PBE")
                found.add(el.symbol)
            except (RuntimeError, FileNotFoundError, OSError):
                pass
        if found:
            return frozenset(found)
    except Exception:  # gpaw not installed (prediction-only install): use the static list
        pass
    return frozenset(el.symbol for el in Element if el.Z <= 86 and el.symbol not in _NO_SETUP)


def _from_file(path: Path):
    from pymatgen.core import Structure

    if not path.exists():
        raise StructureError(path, "no such file")
    if path.is_dir():
        raise StructureError(path, "is a directory, not a structure file")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise StructureError(path, f"unreadable ({exc.strerror})") from None
    if not text.strip():
        raise StructureError(path, "empty file")
    name = path.name.lower()
    errors = []
    if name.endswith(".json") or name.endswith(".json.gz"):
        import gzip

        try:
            raw = gzip.decompress(text) if name.endswith(".gz") else text
            d = json.loads(raw)
            return from_any(d.get("structure", d), name=str(path))
        except StructureError:
            raise
        except Exception as exc:
            raise StructureError(
                path, f"not a pymatgen structure JSON ({type(exc).__name__}: {exc})"
            ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # pymatgen knows CIF (with occupancies) and POSCAR well
            return Structure.from_file(str(path))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        try:
            from ase.io import read

            return _from_atoms(read(str(path)), str(path))
        except StructureError:
            raise
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    detail = next((e for e in errors if not e.endswith(": ")), "")
    detail = f": {detail.splitlines()[0][:160]}" if detail else ""
    raise StructureError(
        path, f"unreadable structure (not a CIF, POSCAR, XYZ or other ASE-readable file{detail})"
    )


def _from_atoms(atoms, name: str):
    from pymatgen.io.ase import AseAtomsAdaptor

    if not all(atoms.pbc):
        raise StructureError(name, f"not 3-D periodic (pbc={list(map(bool, atoms.pbc))})")
    if abs(np.linalg.det(np.asarray(atoms.cell))) < 1e-6:
        raise StructureError(name, "not 3-D periodic (cell volume is zero)")
    if len(atoms) == 0:
        raise StructureError(name, "no atoms")
    return AseAtomsAdaptor.get_structure(atoms)


def from_any(source, name: str | None = None):
    """A pymatgen ``Structure`` from a path, ASE ``Atoms``, pymatgen ``Structure`` or its dict.

    Raises :class:`StructureError` for anything unreadable.
    """
    from pymatgen.core import Structure

    if isinstance(source, Structure):
        return source.copy()
    if isinstance(source, (str, Path)):
        return _from_file(Path(source))
    if isinstance(source, dict):
        label = name or source.get("mat_id", "<dict>")
        try:
            return Structure.from_dict(source)
        except Exception as exc:
            raise StructureError(
                label, f"not a pymatgen structure dict ({type(exc).__name__}: {exc})"
            ) from None
    try:
        from ase import Atoms

        if isinstance(source, Atoms):
            return _from_atoms(source, name or source.get_chemical_formula())
    except ImportError:
        pass
    raise StructureError(name or repr(type(source).__name__), "unsupported structure type")


def cell_geometry(lattice: np.ndarray) -> dict[str, np.ndarray | float]:
    """Lengths ``[3]`` (Å), angles ``[3]`` (α = ∠(b, c), β = ∠(a, c), γ = ∠(a, b), degrees), interplanar
    spacings ``[3]`` (Å, V / |a_j × a_k|) and volume (Å³) of a cell given as rows ``[3, 3]`` in Å."""
    m = np.asarray(lattice, dtype=np.float64)
    with np.errstate(all="ignore"):
        gram = m @ m.T
        lengths = np.sqrt(np.diag(gram))
        volume = float(abs(np.linalg.det(m)))
        cos = np.array([gram[1, 2], gram[0, 2], gram[0, 1]]) / (lengths[[1, 0, 0]] * lengths[[2, 2, 1]])
        angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
        # |a_j × a_k| = sqrt(|a_j|²|a_k|² − (a_j·a_k)²)
        cross = np.sqrt(
            np.maximum(lengths[[1, 2, 0]] ** 2 * lengths[[2, 0, 1]] ** 2 - gram[[1, 2, 0], [2, 0, 1]] ** 2, 0)
        )
        spacings = volume / cross
    return {"lengths": lengths, "angles": angles, "spacings": spacings, "volume": volume}


def _cell_problem(lattice: np.ndarray, g: dict | None = None) -> str | None:
    """The first cell bound a lattice breaks (lengths, angles, spacings), as words; None if within all."""
    g = g or cell_geometry(lattice)
    lengths, angles, spacings = g["lengths"], g["angles"], g["spacings"]
    if lengths.min() < MIN_CELL_LENGTH:
        return f"cell vector of {lengths.min():.3g} Å is shorter than {MIN_CELL_LENGTH} Å"
    if lengths.max() > MAX_CELL_LENGTH:
        return f"cell vector of {lengths.max():.4g} Å is longer than {MAX_CELL_LENGTH:g} Å"
    if angles.min() < MIN_CELL_ANGLE or angles.max() > MAX_CELL_ANGLE:
        bad = angles.min() if angles.min() < MIN_CELL_ANGLE else angles.max()
        return f"cell angle of {bad:.3g}° is outside {MIN_CELL_ANGLE:g}–{MAX_CELL_ANGLE:g}°"
    if not np.all(spacings >= MIN_SPACING):
        return f"interplanar spacing of {np.nanmin(spacings):.3g} Å is below {MIN_SPACING} Å (a flat or sheared cell)"
    return None


def check_geometry(structure, name: str):
    """Bound a structure's geometry before any neighbour search; returns it (LLL-reduced if its cell was skewed).

    Refuses (one-line :class:`StructureError`): non-finite lattice or coordinates; a fractional coordinate beyond
    ±:data:`MAX_FRACTIONAL`; volume per atom outside
    [:data:`MIN_VOLUME_PER_ATOM`, :data:`MAX_VOLUME_PER_ATOM`] Å³; and a cell whose vector lengths, angles or
    interplanar spacings are outside [:data:`MIN_CELL_LENGTH`, :data:`MAX_CELL_LENGTH`] Å,
    [:data:`MIN_CELL_ANGLE`, :data:`MAX_CELL_ANGLE`]° and ≥ :data:`MIN_SPACING` Å even after LLL reduction. A
    cell that only breaks the angle or spacing bounds as given (a valid crystal written with skewed vectors) is
    replaced by its LLL-reduced cell: the same crystal, so graphs and spectra do not change.
    """
    if len(structure) == 0:
        raise StructureError(name, "no atoms")
    matrix = np.asarray(structure.lattice.matrix, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise StructureError(name, "lattice is not finite (NaN or infinite cell parameters)")
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    if not np.all(np.isfinite(frac)):
        raise StructureError(name, "atomic coordinates are not finite (NaN or infinite)")
    if np.abs(frac).max() > MAX_FRACTIONAL:
        raise StructureError(
            name,
            f"fractional coordinate {frac.flat[np.abs(frac).argmax()]:.3g} is more than {MAX_FRACTIONAL:g} cells "
            "away from the cell",
        )
    geometry = cell_geometry(matrix)
    volume = geometry["volume"]
    if not np.isfinite(volume) or volume < 1e-3:
        raise StructureError(name, f"not 3-D periodic (cell volume {volume:.3g} Å³)")
    per_atom = volume / len(structure)
    if per_atom < MIN_VOLUME_PER_ATOM:
        raise StructureError(
            name,
            f"volume per atom {per_atom:.3g} Å³ is below {MIN_VOLUME_PER_ATOM} Å³ (atoms packed too densely)",
        )
    if per_atom > MAX_VOLUME_PER_ATOM:
        raise StructureError(
            name,
            f"volume per atom {per_atom:.4g} Å³ is above {MAX_VOLUME_PER_ATOM:g} Å³ "
            "(isolated atoms or vacuum: not a bulk crystal)",
        )
    problem = _cell_problem(matrix, geometry)
    if problem is None:
        return structure
    lengths = geometry["lengths"]
    if lengths.max() <= _MAX_REDUCIBLE_LENGTH and lengths.min() >= 1e-3:
        reduced = structure.get_reduced_structure(reduction_algo="LLL")
        if _cell_problem(reduced.lattice.matrix) is None:
            log.info("%s: %s; using the LLL-reduced cell", name, problem)
            return reduced
        problem = _cell_problem(reduced.lattice.matrix)
    raise StructureError(name, problem)


@lru_cache(maxsize=64)
def _images(n1: int, n2: int, n3: int) -> np.ndarray:
    """Integer image offsets ``[-n..n]³`` as rows ``[(2n1+1)(2n2+1)(2n3+1), 3]`` (float64)."""
    ranges = [np.arange(-k, k + 1) for k in (n1, n2, n3)]
    return np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3).astype(np.float64)


def min_distance(lattice: np.ndarray, frac: np.ndarray, cutoff: float) -> float | None:
    """Shortest distance (Å) ≤ ``cutoff`` between two atoms or an atom and its own periodic image; None if none.

    ``lattice``: rows ``[3, 3]`` Å, ``frac``: fractional coordinates ``[n, 3]``. Loops over the periodic images
    needed (bounded by the interplanar spacings; call after :func:`check_geometry`), memory ``[n, n]`` each.
    """
    m = np.asarray(lattice, dtype=np.float64)
    f = np.asarray(frac, dtype=np.float64)
    cart = (f - np.floor(f)) @ m
    nmax = np.ceil(cutoff / cell_geometry(m)["spacings"]).astype(int) + 1
    shifts = _images(*(int(k) for k in nmax)) @ m  # [n_img, 3]
    diff = cart[None, :, :] - cart[:, None, :]  # r_j − r_i, [n, n, 3]
    n = len(cart)
    self_pair = np.eye(n, dtype=bool)
    step = max(1, (1 << 18) // max(1, n * n))  # images per chunk: memory ~ 32 B × 2^18
    best = np.inf
    for start in range(0, len(shifts), step):
        sh = shifts[start : start + step]
        d = np.sqrt(
            np.einsum("kijx,kijx->kij", diff[None] + sh[:, None, None], diff[None] + sh[:, None, None])
        )
        zero = len(shifts) // 2 - start  # the zero shift is the middle image
        if 0 <= zero < len(sh):
            d[zero][self_pair] = np.inf  # an atom and itself is no pair
        best = min(best, float(d.min()))
    return best if best <= cutoff else None


def validate(structure, name: str, *, max_atoms: int = DEFAULT_MAX_ATOMS, check_setups: bool = True):
    """Check a pymatgen ``Structure`` for the problems that would waste or spoil a calculation; return it.

    Raises :class:`StructureError` (one line) for: no atoms, partial occupancies, too many atoms, a geometry
    outside the bounds of :func:`check_geometry` (non-finite, too dense, too sparse, flat or sheared cells;
    checked before any neighbour search), overlapping atoms (< 0.5 Å), elements without a GPAW setup. Returns
    the structure, or its LLL-reduced copy when only its cell vectors were skewed.
    """
    if len(structure) == 0:
        raise StructureError(name, "no atoms")
    if not structure.is_ordered:
        bad = next(s for s in structure if not s.is_ordered)
        raise StructureError(
            name, f"partial occupancies ({bad.species.formula} at {np.round(bad.frac_coords, 3).tolist()})"
        )
    if len(structure) > max_atoms:
        raise StructureError(name, f"{len(structure)} atoms exceed the limit of {max_atoms}")
    structure = check_geometry(structure, name)
    # every pair within MIN_DISTANCE, periodic images (and a site's own image in a tiny cell) included
    closest = min_distance(structure.lattice.matrix, structure.frac_coords, MIN_DISTANCE)
    if closest is not None:
        raise StructureError(name, f"overlapping atoms ({closest:.3f} Å apart, minimum {MIN_DISTANCE} Å)")
    if check_setups:
        ok = gpaw_elements()
        missing = sorted({el.symbol for el in structure.composition.elements} - ok)
        if missing:
            raise StructureError(name, f"no GPAW PAW setup for {', '.join(missing)}")
    return structure


def load(source, name: str | None = None, *, max_atoms: int = DEFAULT_MAX_ATOMS, check_setups: bool = True):
    """Read and validate: :func:`from_any` then :func:`validate`."""
    label = name or (str(source) if isinstance(source, (str, Path)) else None)
    s = from_any(source, name=label)
    return validate(s, label or s.composition.reduced_formula, max_atoms=max_atoms, check_setups=check_setups)


def symmetrize(structure, target_spacegroup: int | None = None, *, name: str = "structure") -> Symmetrized:
    """Standard primitive cell at the smallest tolerance that recovers ``target_spacegroup`` (PROTOCOL.md step 0).

    Tries symprec = 1e-5, 1e-3, 1e-2, 0.1 Å in order and keeps the first whose space group equals the target
    (the source database's, e.g. Alexandria's ``spg``). Without a target, symprec = 1e-3 Å. If no tolerance
    recovers the target, the 1e-3 Å cell is used and the found space group recorded.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    def at(t):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sga = SpacegroupAnalyzer(structure, symprec=t)
            return sga.get_space_group_number(), sga.get_primitive_standard_structure()

    if target_spacegroup is not None:
        for t in SYMPRECS:
            try:
                spg, prim = at(t)
            except Exception:
                continue
            if spg == target_spacegroup:
                return Symmetrized(prim, spg, t, target_spacegroup)
        log.info(
            "%s: no tolerance recovers space group %s; using %g Å", name, target_spacegroup, DEFAULT_SYMPREC
        )
    try:
        spg, prim = at(DEFAULT_SYMPREC)
    except Exception as exc:
        raise StructureError(name, f"symmetry analysis failed ({exc})") from None
    return Symmetrized(prim, spg, DEFAULT_SYMPREC, target_spacegroup)


def structure_hash(structure) -> str:
    """A short SHA-256 of species, lattice and fractional coordinates rounded to 1e-4 (Å / fractional)."""
    payload = {
        "lattice": np.round(structure.lattice.matrix, 4).tolist(),
        "sites": sorted(
            (site.specie.symbol, *np.round(np.mod(site.frac_coords, 1.0), 4).tolist()) for site in structure
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def to_atoms(structure):
    """pymatgen ``Structure`` → ASE ``Atoms`` (3-D periodic)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def alexandria(split: str | None = None) -> list[dict]:
    """The bundled Alexandria structure list (3,538 entries, see resources/alexandria/SOURCE.md).

    Each entry: mat_id, split, formula, elements, spg, nsites, pbe_band_gap_ind/dir, e_above_hull, e_form,
    prototype_id, structure (pymatgen dict). ``split`` filters by the entry's split.
    """
    import gzip
    from importlib import resources

    with resources.files("optiladder.resources").joinpath("alexandria/structures.json.gz").open("rb") as fh:
        entries = json.loads(gzip.decompress(fh.read()))
    if split is not None:
        entries = [e for e in entries if e["split"] == split]
    return entries


def cell_arrays(structure: Any, name: str = "structure") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(lattice rows ``[3, 3]`` Å, Cartesian positions ``[n, 3]`` Å, element symbols) of a structure.

    Accepts a pymatgen ``Structure``, its ``as_dict()`` form (read directly, without building a ``Structure``:
    the fast path of graph building), or an ASE ``Atoms``. Raises :class:`StructureError` (``name: problem``).
    """
    if isinstance(structure, dict):
        try:
            lattice = np.asarray(structure["lattice"]["matrix"], dtype=np.float64)
            sites = structure["sites"]
            frac = np.asarray([s["abc"] for s in sites], dtype=np.float64)
            symbols = []
            for s in sites:
                species = s["species"]
                if len(species) != 1 or float(species[0].get("occu", 1)) != 1.0:
                    raise StructureError(name, "disordered sites (partial occupancy) are not supported")
                symbols.append(str(species[0]["element"]))
        except (KeyError, TypeError, IndexError) as exc:
            raise StructureError(
                name, f"not a pymatgen structure dict ({type(exc).__name__}: {exc})"
            ) from None
        cart = frac.reshape(-1, 3) @ lattice
    elif hasattr(structure, "lattice") and hasattr(structure, "cart_coords"):  # pymatgen Structure
        if not structure.is_ordered:
            raise StructureError(name, "disordered sites (partial occupancy) are not supported")
        lattice = np.asarray(structure.lattice.matrix, dtype=np.float64)
        cart = np.asarray(structure.cart_coords, dtype=np.float64)
        symbols = [sp.symbol for sp in structure.species]
    elif hasattr(structure, "get_cell") and hasattr(structure, "get_positions"):  # ASE Atoms
        lattice = np.asarray(structure.get_cell(), dtype=np.float64)
        cart = np.asarray(structure.get_positions(), dtype=np.float64)
        symbols = list(structure.get_chemical_symbols())
    else:
        raise StructureError(name, f"cannot read a structure from {type(structure).__name__}")
    if lattice.shape != (3, 3) or not np.all(np.isfinite(lattice)) or abs(np.linalg.det(lattice)) < 1e-6:
        raise StructureError(name, "lattice is not a finite, non-degenerate 3×3 matrix")
    if len(symbols) == 0:
        raise StructureError(name, "structure has no sites")
    if not np.all(np.isfinite(cart)):
        raise StructureError(name, "atomic positions are not finite")
    return lattice, cart.reshape(-1, 3), symbols
