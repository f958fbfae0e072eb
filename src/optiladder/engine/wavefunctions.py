"""Export of Kohn–Sham states for the wavefunction rung (Hou, Wu & Qiu, Nat. Commun. 2024): |φ_nk(r)| and ρ̃(r).

``export_wavefunctions(structure, protocol)`` runs a GPAW PBE ground state (the engine protocol named by the
wavefunction protocol: same cutoff, functional, k density and smearing as the dataset), then a non-self-consistent
step on a uniform Γ-centred k-grid **without symmetry reduction** (``symmetry="off"``: every point of the full grid
is computed directly, so nothing has to be unfolded from the irreducible wedge, at the price of
prod(kgrid)/n_ibz more diagonalizations — small for ≤ 2-atom cells). It keeps N valence + N conduction bands and
returns, on the cell's real-space (coarse, PW-mode) grid ``(n1, n2, n3)``:

- ``wf``: |φ̃_nk(r)|, the modulus of the PAW pseudo-wavefunction, Å^-3/2, ``[n_k, n_bands, n1, n2, n3]``;
  the modulus of the periodic part u_nk equals that of φ_nk (|e^{ik·r}| = 1);
- ``density``: the pseudo-density ρ̃(r) of the ground state, electrons/Å³, ``[n1, n2, n3]``;
- ``eigenvalues`` (eV) ``[n_k, n_bands]``, ``kpts`` (scaled) ``[n_k, 3]``, ``bands`` (GPAW band indices),
  the cell, and the provenance (protocols, code versions, grid, timings).

Stored as float16 in one compressed ``.npz`` per material under the cache folder
(``$OPTILADDER_CACHE/wavefunctions/<protocol>/<id>.npz``, never in git): ``optiladder wavefunction export``
regenerates it. GPAW is imported inside the functions (the engine never imports torch).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import cache_dir
from .. import structures as st
from .calculate import EngineError, _versions, alexandria_entry, band_gaps, prepare
from .protocols import Protocol, get_protocol

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class WavefunctionProtocol:
    """What is exported: ground state by the engine protocol ``ground_state``, then a full uniform k-grid.

    ``kgrid``: Γ-centred Monkhorst–Pack sizes of the non-self-consistent step (no symmetry reduction).
    ``nside``: N valence and N conduction bands (fewer valence bands if the crystal has fewer filled ones).
    """

    name: str
    ground_state: str = "gpaw-pbe-v1"
    kgrid: tuple[int, int, int] = (4, 4, 4)
    nside: int = 4
    production: bool = True

    def engine(self) -> Protocol:
        return get_protocol(self.ground_state)

    def as_record(self) -> dict:
        d = asdict(self)
        d.pop("production")
        d["kgrid"] = list(self.kgrid)
        d["k_sampling"] = "uniform Gamma-centred grid, symmetry off (no irreducible-wedge unfolding needed)"
        d["quantity"] = "|pseudo-wavefunction| on the coarse real-space grid, float16, A^-3/2"
        return d


WF_PROTOCOLS: dict[str, WavefunctionProtocol] = {
    p.name: p
    for p in (
        WavefunctionProtocol(name="wf-pbe-v1"),
        WavefunctionProtocol(name="test", ground_state="test", kgrid=(2, 2, 2), nside=2, production=False),
    )
}
DEFAULT_WF_PROTOCOL = "wf-pbe-v1"


def get_wf_protocol(name: str | WavefunctionProtocol) -> WavefunctionProtocol:
    if isinstance(name, WavefunctionProtocol):
        return name
    try:
        return WF_PROTOCOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown wavefunction protocol {name!r}; known: {', '.join(WF_PROTOCOLS)}"
        ) from None


def wavefunction_path(
    mat_id: str, protocol: str = DEFAULT_WF_PROTOCOL, root: str | Path | None = None
) -> Path:
    """Default file of one material's export: ``<root or cache>/wavefunctions/<protocol>/<id>.npz``."""
    base = Path(root) if root is not None else cache_dir() / "wavefunctions"
    return base / protocol / f"{mat_id}.npz"


def ground_state(atoms, proto: Protocol, txt: str | Path, *, kpts: dict | None = None):
    """A converged GPAW PW ground state of ``atoms`` under ``proto`` (cutoff, xc, k density, smearing).

    Returns ``(calc, nocc)``; ``nocc`` = number of doubly occupied bands. GPAW failures become EngineError.
    """
    from gpaw import GPAW, PW, FermiDirac

    calc = GPAW(
        mode=PW(proto.pw_ecut),
        xc=proto.xc,
        kpts=kpts or {"density": proto.gs_kdensity, "gamma": True},
        occupations=FermiDirac(proto.smearing),
        txt=str(txt),
    )
    atoms.calc = calc
    atoms.get_potential_energy()
    nocc = math.ceil(round(calc.get_number_of_electrons(), 6) / 2)
    return calc, nocc


def export_wavefunctions(
    source,
    protocol: str | WavefunctionProtocol = DEFAULT_WF_PROTOCOL,
    *,
    name: str | None = None,
    mat_id: str | None = None,
    max_atoms: int = 2,
    workdir: str | Path | None = None,
    symmetrize: bool = True,
) -> dict:
    """|φ_nk(r)|, ρ̃(r), eigenvalues and provenance of one crystal (see the module docstring for shapes/units).

    ``source`` as for :func:`optiladder.engine.compute` (file, Alexandria id, Atoms, Structure). The cell is
    symmetrized as in the engine; cells with more than ``max_atoms`` atoms are refused (StructureError).
    Materials with a ground-state gap below the engine protocol's ``min_gap`` raise MetallicError.
    ``symmetrize=False`` keeps the cell exactly as given (lattice-vector order, origin), for invariance tests.
    """
    from .calculate import MetallicError

    wp = get_wf_protocol(protocol)
    proto = wp.engine()
    t_start = time.time()
    started = datetime.now(UTC)
    if symmetrize:
        mat_id, sym, input_hash = prepare(source, name=name, max_atoms=max_atoms, mat_id=mat_id)
    else:
        raw = st.load(source, name=name, max_atoms=max_atoms)
        input_hash = st.structure_hash(raw)
        sym = st.Symmetrized(structure=raw, spacegroup=None, symprec=None, target_spacegroup=None)
        mat_id = mat_id or name or raw.composition.reduced_formula
    label = name or mat_id
    atoms = st.to_atoms(sym.structure)
    private = Path(tempfile.mkdtemp(prefix=f"optiladder-wf-{mat_id}-", dir=workdir))
    seconds: dict[str, float] = {}
    try:
        t0 = time.time()
        try:
            calc, nocc = ground_state(atoms, proto, private / "gs.txt")
        except Exception as exc:
            raise EngineError(label, f"ground state failed ({type(exc).__name__}: {exc})") from exc
        seconds["gs"] = time.time() - t0
        if calc.get_number_of_spins() != 1:
            raise EngineError(label, "spin-polarized ground state: export supports non-magnetic crystals")
        t0 = time.time()
        nval = min(wp.nside, nocc)
        bands = np.arange(nocc - nval, nocc + wp.nside)
        try:
            nscf = calc.fixed_density(
                kpts={"size": list(wp.kgrid), "gamma": True},
                symmetry="off",
                nbands=int(bands[-1]) + 1 + 4,
                convergence={"bands": int(bands[-1]) + 1},
                txt=str(private / "nscf.txt"),
            )
            kpts = np.asarray(nscf.get_ibz_k_points())
            nk = len(kpts)
            if nk != int(np.prod(wp.kgrid)):
                raise EngineError(
                    label, f"expected {int(np.prod(wp.kgrid))} k-points without symmetry, got {nk}"
                )
            eig_all = np.array([nscf.get_eigenvalues(kpt=k, spin=0) for k in range(nk)])
            gap_ind, gap_dir = band_gaps(eig_all[None], nocc)
            if gap_ind < proto.min_gap:
                raise MetallicError(
                    label, f"PBE gap {gap_ind:.2f} eV < {proto.min_gap} eV (metallic or nearly so)"
                )
            first = np.abs(nscf.get_pseudo_wave_function(band=0, kpt=0, spin=0, periodic=True))
            grid = first.shape
            wf = np.empty((nk, len(bands), *grid), dtype=np.float16)
            for k in range(nk):
                for i, n in enumerate(bands):
                    psi = nscf.get_pseudo_wave_function(band=int(n), kpt=k, spin=0, periodic=True)
                    wf[k, i] = np.abs(psi)
            density = np.asarray(calc.get_pseudo_density())
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(
                label, f"non-self-consistent step failed ({type(exc).__name__}: {exc})"
            ) from exc
        if density.shape != grid:
            raise EngineError(
                label, f"density grid {density.shape} differs from the wavefunction grid {grid}"
            )
        seconds["nscf_export"] = time.time() - t0
    finally:
        shutil.rmtree(private, ignore_errors=True)
    entry = alexandria_entry(mat_id)
    cell = np.asarray(atoms.cell[:], dtype=float)
    meta = {
        "format_version": FORMAT_VERSION,
        "mat_id": mat_id,
        "formula": sym.structure.composition.reduced_formula,
        "nsites": len(sym.structure),
        "spacegroup": sym.spacegroup,
        "alexandria_split": entry["split"] if entry else None,
        "structure": sym.structure.as_dict(),
        "protocol": wp.as_record(),
        "ground_state_protocol": proto.as_record(),
        "nocc": int(nocc),
        "grid": list(grid),
        "gap_indirect": float(gap_ind),
        "gap_direct": float(gap_dir),
        "vbm": float(eig_all[:, nocc - 1].max()),
        "cbm": float(eig_all[:, nocc].min()),
        "units": {"wf": "A^-3/2", "density": "electrons/A^3", "eigenvalues": "eV", "cell": "A"},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "provenance": {
            "versions": _versions(),
            "start": started.isoformat(timespec="seconds"),
            "wall_seconds": round(time.time() - t_start, 2),
            "structure_hash": st.structure_hash(sym.structure),
            "input_hash": input_hash,
            "threads": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    return {
        "wf": wf,
        "density": density.astype(np.float16),
        "eigenvalues": eig_all[:, bands].astype(np.float64),
        "kpts": kpts.astype(np.float64),
        "bands": bands.astype(np.int64),
        "cell": cell,
        "meta": json.loads(json.dumps(meta)),  # JSON-normal (lists, not tuples): equal to what is read back
    }


ARRAYS = ("wf", "density", "eigenvalues", "kpts", "bands", "cell")


def atomic_write(path: str | Path, write, *, overwrite: bool = False) -> Path:
    """Call ``write(binary file)`` on a temporary file beside ``path``, then rename it into place.

    Refuses to replace an existing file unless ``overwrite`` (nothing stored is lost); a failed write leaves no file.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_wavefunctions(data: dict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write one export atomically (temporary file + rename) as a compressed ``.npz``; refuses to overwrite."""
    arrays = {k: data[k] for k in ARRAYS}
    meta = np.array(json.dumps(data["meta"], sort_keys=True))
    return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays, meta=meta), overwrite=overwrite)


class WavefunctionFileError(ValueError):
    """An unreadable or inconsistent export file (message ``FILE: problem``)."""


def read_wavefunctions(path: str | Path) -> dict:
    """Read an export written by :func:`write_wavefunctions`; arrays as stored (float16 fields stay float16)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in ARRAYS}
            out["meta"] = json.loads(str(z["meta"]))
    except FileNotFoundError:
        raise WavefunctionFileError(f"{path}: no such file") from None
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise WavefunctionFileError(
            f"{path}: not a wavefunction export ({type(exc).__name__}: {exc})"
        ) from None
    nk, nb = out["eigenvalues"].shape
    if out["wf"].shape[:2] != (nk, nb) or out["wf"].shape[2:] != out["density"].shape:
        raise WavefunctionFileError(
            f"{path}: inconsistent shapes wf {out['wf'].shape}, density {out['density'].shape}"
        )
    return out
