"""One material, ground state → non-self-consistent step → response: IPA and RPA dielectric tensors with GPAW.

``compute(structure, protocol)`` runs the three phases of PROTOCOL.md in a private work directory that is
removed afterwards (also on failure) and returns a record (format version 2, see :mod:`.records`).
Import-light: GPAW is imported inside :func:`compute`.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import resource
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import structures as st
from ..spectra import COMPONENTS
from ..targets import LEVELS
from .numerics import Numerics, get_numerics, gpaw_patches
from .protocols import DEFAULT_PROTOCOL, Protocol, get_protocol
from .records import FORMAT_VERSION, round_sig, validate_record

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """A calculation that cannot give a valid spectrum. ``permanent`` failures must not be retried."""

    permanent = False

    def __init__(self, name: str, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


class MetallicError(EngineError):
    """Gap below the protocol's ``min_gap``: the IPA/RPA protocol (no intraband term) would be wrong."""

    permanent = True


class OpenShellError(EngineError):
    """An odd number of valence electrons: a closed-shell (spin-paired) protocol would give a half-filled band
    and a meaningless gap and spectrum (e.g. KF₂, RbF₂: 23 electrons). Raised before any SCF."""

    permanent = True


def valence_electrons(symbols, xc: str = "PBE") -> int:
    """Number of valence electrons of GPAW's default PAW setups for ``symbols`` (reads the setup files only)."""
    from gpaw.setup_data import SetupData

    cache: dict[str, float] = {}
    total = 0.0
    for sym in symbols:
        if sym not in cache:
            cache[sym] = float(SetupData(sym, xc, "paw").Nv)
        total += cache[sym]
    return int(round(total))


def check_closed_shell(atoms, proto: Protocol, label: str) -> int:
    """The number of valence electrons; raises :class:`OpenShellError` if it is odd."""
    n = valence_electrons(atoms.get_chemical_symbols(), proto.xc)
    if n % 2:
        raise OpenShellError(
            label,
            f"odd number of valence electrons ({n}): an open shell, which the spin-paired protocol "
            f"{proto.name} would treat as a half-filled band (needs a spin-polarised protocol)",
        )
    return n


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("optiladder", "gpaw", "gpaw-data", "ase", "pymatgen", "spglib", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def band_gaps(eigenvalues: np.ndarray, nocc: int) -> tuple[float, float]:
    """(indirect, direct) gap in eV from eigenvalues ``[n_spin, n_k, n_bands]`` with ``nocc`` filled bands."""
    vb = eigenvalues[..., nocc - 1]
    cb = eigenvalues[..., nocc]
    return float(cb.min() - vb.max()), float((cb - vb).min())


def prepare(
    source,
    *,
    name: str | None = None,
    spacegroup: int | None = None,
    max_atoms: int = st.DEFAULT_MAX_ATOMS,
    mat_id: str | None = None,
) -> tuple[str, st.Symmetrized, str]:
    """Read, validate and symmetrize an input; returns (material id, symmetrized cell, input hash).

    The target space group is ``spacegroup`` if given, else Alexandria's for a known Alexandria material
    (given by id, or found by matching the structure), else none (symprec 1e-3 Å).
    """
    label = name or (str(source) if isinstance(source, (str, Path)) else None)
    entry = None
    if isinstance(source, str) and not Path(source).exists() and source.startswith("agm"):
        entry = alexandria_entry(source)
        if entry is None:
            raise st.StructureError(source, "no such file and not a bundled Alexandria id")
        structure = st.from_any(entry["structure"], name=source)
        mat_id = mat_id or source
    else:
        structure = st.from_any(source, name=label)
    label = label or mat_id or structure.composition.reduced_formula
    structure = st.validate(structure, label, max_atoms=max_atoms)
    if spacegroup is None:
        entry = entry or (alexandria_entry(mat_id) if mat_id else None) or match_alexandria(structure)
        if entry is not None:
            spacegroup = entry["spg"]
            mat_id = mat_id or entry["mat_id"]
    if mat_id is None:
        base = Path(label).name if isinstance(source, (str, Path)) else label
        for suffix in (".gz", ".json", ".cif", ".vasp", ".xyz", ".extxyz", ".poscar"):
            base = base.removesuffix(suffix)
        mat_id = base or st.structure_hash(structure)
    sym = st.symmetrize(structure, spacegroup, name=label)
    st.validate(sym.structure, label, max_atoms=max_atoms)
    return mat_id, sym, st.structure_hash(structure)


_ALEX: dict | None = None


def _alex_index() -> dict:
    global _ALEX
    if _ALEX is None:
        _ALEX = {e["mat_id"]: e for e in st.alexandria()}
    return _ALEX


def alexandria_entry(mat_id: str) -> dict | None:
    return _alex_index().get(mat_id)


def match_alexandria(structure) -> dict | None:
    """The bundled Alexandria entry that is the same crystal as ``structure`` (pymatgen StructureMatcher), if any."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    formula = structure.composition.reduced_formula
    candidates = [e for e in _alex_index().values() if e["formula"] == formula]
    if not candidates:
        return None
    matcher = StructureMatcher()
    for e in candidates:
        if matcher.fit(structure, Structure.from_dict(e["structure"])):
            return e
    return None


def compute(
    source,
    protocol: str | Protocol = DEFAULT_PROTOCOL,
    *,
    name: str | None = None,
    mat_id: str | None = None,
    spacegroup: int | None = None,
    split: str | None = None,
    max_atoms: int = st.DEFAULT_MAX_ATOMS,
    workdir: str | Path | None = None,
    numerics: str | Numerics | None = None,
) -> dict:
    """IPA and RPA dielectric tensors of one crystal (IPA alone for an IPA-only protocol such as
    ``gpaw-pbe-ipa-lite``); returns a validated record (format version 2).

    ``source``: a file path, a bundled Alexandria id (``agm…``), ASE ``Atoms``, pymatgen ``Structure`` or dict.
    ``workdir``: parent of the private work directory (default: the system temp dir); the private directory is
    always removed. ``numerics``: how GPAW is driven (:mod:`.numerics`; default ``DEFAULT_NUMERICS``), stored
    as the record's ``numerics`` block. Raises :class:`~optiladder.structures.StructureError` for bad input,
    :class:`OpenShellError` for an odd number of valence electrons (before any SCF), :class:`MetallicError`
    for gaps below ``protocol.min_gap`` and :class:`EngineError` for failed calculations.
    """
    proto = get_protocol(protocol)
    num = get_numerics(numerics)
    started = datetime.now(UTC)
    t_start = time.time()
    mat_id, sym, input_hash = prepare(
        source, name=name, spacegroup=spacegroup, max_atoms=max_atoms, mat_id=mat_id
    )
    label = name or mat_id
    if split is None:
        entry = alexandria_entry(mat_id)
        split = entry["split"] if entry else None
    n_valence = check_closed_shell(st.to_atoms(sym.structure), proto, label)
    private = Path(tempfile.mkdtemp(prefix=f"optiladder-{mat_id}-", dir=workdir))
    try:
        with gpaw_patches(num):
            result = _run_gpaw(sym.structure, proto, private, label, num, n_valence)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    structure = sym.structure
    rec = {
        "format_version": FORMAT_VERSION,
        "mat_id": mat_id,
        "formula": structure.composition.reduced_formula,
        "nsites": len(structure),
        "split": split,
        "spacegroup": sym.spacegroup,
        "symprec": sym.symprec,
        "structure": structure.as_dict(),
        "protocol": proto.as_record(),
        "numerics": num.as_record(),
        "code": f"gpaw {_versions().get('gpaw', '?')}",
        **{k: result[k] for k in ("nocc", "nbands", "n_ibz_k", "gap_indirect", "gap_direct", "seconds")},
        "omega": round_sig(result["omega"]),
        "spectra": {k: round_sig(v) for k, v in result["spectra"].items()},
        "provenance": {
            "versions": _versions(),
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "start": started.isoformat(timespec="seconds"),
            "end": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.time() - t_start, 2),
            "cpu_seconds": result["cpu_seconds"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "structure_hash": st.structure_hash(structure),
            "input_hash": input_hash,
            "target_spacegroup": sym.target_spacegroup,
            "threads": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    return validate_record(rec, label)


def _run_gpaw(structure, proto: Protocol, private: Path, label: str, num: Numerics, n_valence: int) -> dict:
    from ase.units import Hartree  # noqa: F401  (GPAW returns eV already)
    from gpaw import GPAW, PW, FermiDirac
    from gpaw.mpi import serial_comm  # noqa: F401
    from gpaw.response.df import DielectricFunction

    from .numerics import diagonalize_full, fixed_density_without_scf

    atoms = st.to_atoms(structure)
    seconds: dict[str, float] = {}  # wall seconds per phase
    cpu: dict[str, float] = {}  # CPU seconds of this process per phase
    try:
        t0, c0 = time.time(), time.process_time()
        extra = {"convergence": dict(proto.gs_convergence)} if proto.gs_convergence else {}
        if num.gs_extra_bands is not None:  # nocc + k bands
            extra["nbands"] = n_valence // 2 + num.gs_extra_bands
        calc = GPAW(
            mode=PW(proto.pw_ecut),
            xc=proto.xc,
            kpts={"density": proto.gs_kdensity, "gamma": True},
            occupations=FermiDirac(proto.smearing),
            txt=str(private / "gs.txt"),
            **extra,
        )
        atoms.calc = calc
        try:
            atoms.get_potential_energy()
        except Exception as exc:
            raise EngineError(label, f"ground state failed ({type(exc).__name__}: {exc})") from exc
        seconds["gs"] = time.time() - t0
        cpu["gs"] = time.process_time() - c0

        t0, c0 = time.time(), time.process_time()
        n_valence = calc.get_number_of_electrons()
        nocc = math.ceil(round(n_valence, 6) / 2)
        nbands = proto.nbands(nocc, atoms.get_volume())
        nscf_kpts = {"density": proto.nscf_kdensity, "gamma": True}
        if num.iterative_pass:
            nscf = calc.fixed_density(
                kpts=nscf_kpts,
                nbands=nocc + 4,
                convergence={"bands": nocc},
                txt=str(private / "nscf.txt"),
            )
        else:
            nscf = fixed_density_without_scf(
                calc, kpts=nscf_kpts, nbands=nocc + 4, txt=str(private / "nscf.txt")
            )
        if num.direct_hamiltonian:
            diagonalize_full(nscf, nbands, num.eigensolver, num.eig_buffer, num.eig_tolerance)
        else:
            nscf.diagonalize_full_hamiltonian(nbands=nbands)
        ibzk = nscf.get_ibz_k_points()
        nspins = nscf.get_number_of_spins()
        eig = np.array(
            [[nscf.get_eigenvalues(kpt=k, spin=s) for k in range(len(ibzk))] for s in range(nspins)]
        )
        gap_ind, gap_dir = band_gaps(eig, nocc)
        if gap_ind < proto.min_gap:
            raise MetallicError(
                label,
                f"PBE gap {gap_ind:.2f} eV < {proto.min_gap} eV (metallic or nearly so); "
                "IPA/RPA without intraband terms would be wrong",
            )
        if num.gpw_roundtrip:
            gpw = private / "nscf.gpw"
            nscf.write(str(gpw), mode="all")
            gs_input = str(gpw)
            del nscf
        else:
            gs_input = nscf
        seconds["nscf"] = time.time() - t0
        cpu["nscf"] = time.process_time() - c0
        del calc

        t0, c0 = time.time(), time.process_time()
        df = DielectricFunction(
            gs_input,
            frequencies=proto.frequencies(),
            eta=proto.eta,
            ecut=proto.lfe_ecut,
            nbands=nbands,
            hilbert=True,
            intraband=False,
            txt=str(private / "df.txt"),
        )
        omega = df.get_frequencies()
        keep = omega <= proto.omegamax + 1e-9
        spectra = {}
        for c in COMPONENTS:  # χ0 is computed once (GPAW caches it) and projected on each direction
            eps0, eps = df.get_dielectric_function(direction=c, filename=None)
            for lv, arr in zip(LEVELS[:2], (eps0, eps), strict=True):  # IPA, RPA
                if lv not in proto.levels:
                    continue
                spectra[f"{lv}_im_{c}"] = np.asarray(arr).imag[keep]
                spectra[f"{lv}_re_{c}"] = np.asarray(arr).real[keep]
        seconds["df"] = time.time() - t0
        cpu["df"] = time.process_time() - c0
        del df, gs_input
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(label, f"{type(exc).__name__}: {exc}") from exc
    bad = [k for k, v in spectra.items() if not np.all(np.isfinite(v))]
    if bad:
        raise EngineError(label, f"non-finite values in {', '.join(bad)}")
    return {
        "nocc": int(nocc),
        "nbands": int(nbands),
        "n_ibz_k": len(ibzk),
        "gap_indirect": gap_ind,
        "gap_direct": gap_dir,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "omega": omega[keep],
        "spectra": {k: spectra[k] for k in sorted(spectra)},
    }
