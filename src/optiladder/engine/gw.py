"""G0W0@PBE quasiparticle energies with GPAW: the labels of the wavefunction rung (see docs/gw.md).

``compute_gw(structure, protocol)`` runs, in a private work directory removed afterwards:

1. a PBE ground state at the protocol's plane-wave cutoff (converged for the gap: 300 eV is not, see docs/gw.md)
   on a Γ-centred ``kgrid`` (GPAW's symmetry reduction to the irreducible wedge is kept: G0W0 needs the IBZ),
2. exact diagonalization of the full Hamiltonian for the unoccupied bands the response sums need,
3. G0W0 (full-frequency, Wigner–Seitz-truncated Coulomb integration at q → 0) for N valence + N conduction
   bands at every irreducible k-point, with the response cutoff and the band sum extrapolated to infinity
   (GPAW's ``ecut_extrapolation``: three cutoffs, bands = plane waves at each, 1/N_G^(3/2) fit),

and returns a compact JSON-able record (format ``FORMAT_VERSION``): the ε_DFT, ε_QP and Z per (irreducible
k-point, band), the full-grid → irreducible map so that states on the full grid (the wavefunction export) find
their label, PBE and G0W0 gaps, timings and provenance. Import-light: GPAW is imported inside the functions.

The hook for a campaign job kind: ``record = compute_gw(structure_or_id, "gpaw-g0w0-v1")``; it raises
:class:`~optiladder.structures.StructureError` for bad input, :class:`~.calculate.MetallicError` (permanent)
for gaps below ``min_gap`` and :class:`~.calculate.EngineError` otherwise; :func:`write_gw_record` stores it
atomically and never overwrites.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import platform
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .. import structures as st
from .calculate import (
    EngineError,
    MetallicError,
    OpenShellError,
    _versions,
    alexandria_entry,
    band_gaps,
    prepare,
)
from .protocols import get_protocol
from .wavefunctions import ground_state

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class GWProtocol:
    """Every parameter of one G0W0@PBE calculation (energies in eV)."""

    name: str
    xc: str = "PBE"
    #: ground-state plane-wave cutoff (PBE gap of LiF, 4×4×4 k: 7.94 eV at 300, 8.69 at 450, 8.74 at 600 and 800)
    pw_ecut: float = 500.0
    kgrid: tuple[int, int, int] = (4, 4, 4)
    smearing: float = 0.001
    #: response (screening) cutoff; with ``ecut_extrapolation`` the largest of the three cutoffs
    ecut: float = 60.0
    ecut_extrapolation: bool = True
    #: bands for the response sum when not extrapolating (None: as many as plane waves at ``ecut``)
    nbands: int | None = None
    #: raise ``ecut`` (per material) until the response has at least this many plane waves = bands (None: off);
    #: v1 had none and gave small cells (C, BN: V ≈ 12 Å³) only 11-12 bands at 60 eV
    min_bands: int | None = None
    #: N valence + N conduction bands get QP energies (1: the top valence and bottom conduction band)
    nside: int = 1
    integrate_gamma: str = "WS"
    eta: float = 0.1
    min_gap: float = 0.2
    production: bool = True

    def as_record(self) -> dict:
        d = asdict(self)
        d.pop("production")
        if d["min_bands"] is None:
            d.pop("min_bands")  # absent from v1 records, which predate it
        d["kgrid"] = list(self.kgrid)
        d["method"] = "G0W0@PBE, full frequency (GPAW nonlinear grid), Hilbert transform, RPA screening"
        return d


GW_PROTOCOLS: dict[str, GWProtocol] = {
    p.name: p
    for p in (
        GWProtocol(name="gpaw-g0w0-v1"),
        GWProtocol(name="gpaw-g0w0-v2", min_bands=40),
        GWProtocol(
            name="test",
            pw_ecut=250.0,
            kgrid=(2, 2, 2),
            ecut=25.0,
            ecut_extrapolation=False,
            nbands=30,
            nside=1,
            production=False,
        ),
    )
}
DEFAULT_GW_PROTOCOL = "gpaw-g0w0-v2"
HARTREE, BOHR = 27.211386, 0.529177


def plane_waves(volume: float, ecut: float) -> int:
    """GPAW's band count for a response cutoff: plane waves below ``ecut`` (eV) in a cell of ``volume`` (Å³)."""
    return int(volume / BOHR**3 * (ecut / HARTREE) ** 1.5 * 2**0.5 / 3 / np.pi**2)


def response_cutoff(gp: GWProtocol, volume: float) -> float:
    """The response cutoff (eV) used for a cell: ``gp.ecut``, raised to give ``gp.min_bands`` plane waves."""
    if not gp.min_bands:
        return gp.ecut
    need = HARTREE * (gp.min_bands * 3 * np.pi**2 / (2**0.5 * volume / BOHR**3)) ** (2 / 3)
    return max(gp.ecut, float(np.ceil(need)))


def get_gw_protocol(name: str | GWProtocol) -> GWProtocol:
    if isinstance(name, GWProtocol):
        return name
    try:
        return GW_PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown GW protocol {name!r}; known: {', '.join(GW_PROTOCOLS)}") from None


def compute_gw(
    source,
    protocol: str | GWProtocol = DEFAULT_GW_PROTOCOL,
    *,
    name: str | None = None,
    mat_id: str | None = None,
    max_atoms: int = 2,
    workdir: str | Path | None = None,
) -> dict:
    """G0W0@PBE QP energies of one crystal (≤ ``max_atoms`` atoms); returns a record dict (see module doc)."""
    gp = get_gw_protocol(protocol)
    started = datetime.now(UTC)
    t_start = time.time()
    mat_id, sym, input_hash = prepare(source, name=name, max_atoms=max_atoms, mat_id=mat_id)
    label = name or mat_id
    private = Path(tempfile.mkdtemp(prefix=f"optiladder-gw-{mat_id}-", dir=workdir))
    cwd = os.getcwd()
    try:
        os.chdir(private)  # GPAW's G0W0 writes its caches relative to the working directory
        result = _run_gw(sym.structure, gp, private, label)
    finally:
        os.chdir(cwd)
        shutil.rmtree(private, ignore_errors=True)
    entry = alexandria_entry(mat_id)
    structure = sym.structure
    rec = {
        "kind": "g0w0",
        "format_version": FORMAT_VERSION,
        "mat_id": mat_id,
        "formula": structure.composition.reduced_formula,
        "nsites": len(structure),
        "split": entry["split"] if entry else None,
        "spacegroup": sym.spacegroup,
        "structure": structure.as_dict(),
        "protocol": gp.as_record(),
        "code": f"gpaw {_versions().get('gpaw', '?')}",
        **result,
        "provenance": {
            "versions": _versions(),
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "start": started.isoformat(timespec="seconds"),
            "wall_seconds": round(time.time() - t_start, 2),
            "structure_hash": st.structure_hash(structure),
            "input_hash": input_hash,
            "threads": os.environ.get("OMP_NUM_THREADS"),
        },
    }
    return json.loads(json.dumps(rec))


def _run_gw(structure, gp: GWProtocol, private: Path, label: str) -> dict:
    from gpaw.response.g0w0 import G0W0

    proto = get_protocol("gpaw-pbe-v1")
    from dataclasses import replace

    proto = replace(proto, name=gp.name, pw_ecut=gp.pw_ecut, xc=gp.xc, smearing=gp.smearing)
    atoms = st.to_atoms(structure)
    seconds = {}
    t0 = time.time()
    try:
        calc, nocc = ground_state(
            atoms, proto, private / "gs.txt", kpts={"size": list(gp.kgrid), "gamma": True}
        )
    except Exception as exc:
        raise EngineError(label, f"ground state failed ({type(exc).__name__}: {exc})") from exc
    if calc.get_number_of_spins() != 1:
        raise OpenShellError(label, "spin-polarized ground state: G0W0 labels are for non-magnetic crystals")

    def check_gap(calc, final: bool) -> None:
        """MetallicError below ``min_gap``; without an empty band (GPAW gives solid Ne only its 4 occupied
        bands in the ground state) the check waits for the full diagonalization (``final``)."""
        nk = len(calc.get_ibz_k_points())
        eig = np.array([[calc.get_eigenvalues(kpt=k, spin=0) for k in range(nk)]])
        if eig.shape[-1] <= nocc and not final:
            return
        gap_ind, _ = band_gaps(eig, nocc)
        if gap_ind < gp.min_gap:
            raise MetallicError(
                label, f"PBE gap {gap_ind:.2f} eV < {gp.min_gap} eV: no G0W0 labels for metals"
            )

    check_gap(calc, final=False)
    nval = min(gp.nside, nocc)
    bands = (nocc - nval, nocc + gp.nside)
    try:
        volume = atoms.get_volume()
        ecut = response_cutoff(gp, volume)
        # enough bands for the largest response cutoff (GPAW picks nbands = plane waves at each ecut)
        ndiag = max(plane_waves(volume, ecut), gp.nbands or 0, bands[1]) + 8
        calc.diagonalize_full_hamiltonian(nbands=ndiag)
        check_gap(calc, final=True)
        gpw = private / "gs.gpw"
        calc.write(str(gpw), mode="all")
        kd = calc.gs_adapter().kd
        bzk = np.asarray(kd.bzk_kc)
        bz2ibz = np.asarray(kd.bz2ibz_k)
        ibzk = np.asarray(kd.ibzk_kc)
        seconds["gs"] = time.time() - t0
        del calc
        t0 = time.time()
        kwargs = {"nbands": gp.nbands} if not gp.ecut_extrapolation else {}
        gw = G0W0(
            str(gpw),
            filename=str(private / "g0w0"),
            bands=bands,
            ecut=ecut,
            ecut_extrapolation=gp.ecut_extrapolation,
            integrate_gamma=gp.integrate_gamma,
            eta=gp.eta,
            **kwargs,
        )
        res = gw.calculate()
        seconds["g0w0"] = time.time() - t0
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(label, f"G0W0 failed ({type(exc).__name__}: {exc})") from exc
    eps = np.asarray(res["eps"])[0]  # [n_ibz_k, n_bands] eV
    qp = np.asarray(res["qp"])[0]
    z = np.asarray(res["Z"])[0]
    if not (np.all(np.isfinite(qp)) and np.all(np.isfinite(eps))):
        raise EngineError(label, "non-finite G0W0 energies")
    iv = nval - 1  # index of the top valence band within ``bands``
    return {
        "nocc": int(nocc),
        "ecut_response": ecut,
        "nbands_response": plane_waves(volume, ecut) if gp.nbands is None else gp.nbands,
        "bands": list(range(*bands)),
        "ibz_kpts": np.round(ibzk, 8).tolist(),
        "bz_kpts": np.round(bzk, 8).tolist(),
        "bz2ibz": bz2ibz.astype(int).tolist(),
        "eps_dft": np.round(eps, 5).tolist(),
        "eps_qp": np.round(qp, 5).tolist(),
        "z": np.round(z, 4).tolist(),
        "gap_pbe": round(float(eps[:, iv + 1].min() - eps[:, iv].max()), 4),
        "gap_g0w0": round(float(qp[:, iv + 1].min() - qp[:, iv].max()), 4),
        "gap_pbe_direct": round(float((eps[:, iv + 1] - eps[:, iv]).min()), 4),
        "gap_g0w0_direct": round(float((qp[:, iv + 1] - qp[:, iv]).min()), 4),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def state_corrections(rec: dict, kpts: np.ndarray, bands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ε_DFT, ε_QP − ε_DFT) in eV, ``[len(kpts), len(bands)]``, for states on any k of the record's full grid.

    ``kpts``: scaled k-points (e.g. a wavefunction export's), matched modulo reciprocal lattice vectors to the
    record's full grid; ``bands``: GPAW band indices. Unknown k-points or bands raise ValueError.
    """
    bzk = np.asarray(rec["bz_kpts"])
    bz2ibz = np.asarray(rec["bz2ibz"])
    have = list(rec["bands"])
    eps, qp = np.asarray(rec["eps_dft"]), np.asarray(rec["eps_qp"])
    cols = []
    for n in bands:
        if int(n) not in have:
            raise ValueError(f"{rec['mat_id']}: band {int(n)} has no G0W0 label (labelled: {have})")
        cols.append(have.index(int(n)))
    rows = []
    for k in np.asarray(kpts, dtype=float):
        d = (bzk - k + 0.5) % 1.0 - 0.5
        hit = np.flatnonzero(np.all(np.abs(d) < 1e-6, axis=1))
        if len(hit) == 0:
            raise ValueError(
                f"{rec['mat_id']}: k-point {k.tolist()} is not on the G0W0 grid {rec['protocol']['kgrid']}"
            )
        rows.append(bz2ibz[hit[0]])
    e = eps[np.ix_(rows, cols)]
    return e, qp[np.ix_(rows, cols)] - e


def gw_record_path(root: str | Path, mat_id: str) -> Path:
    return Path(root) / f"{mat_id}.json.gz"


def encode_gw_record(rec: dict) -> bytes:
    """The stored bytes of a record: gzipped canonical JSON (gzip mtime 0, so equal records give equal bytes)."""
    return gzip.compress(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode(), mtime=0)


def write_gw_record(rec: dict, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a record atomically as gzipped JSON (temporary file, fsync, then ``os.link``); refuses to overwrite
    an existing one, also against a concurrent writer (``FileExistsError``; nothing stored is lost)."""
    from .records import RecordError, write_bytes_atomic

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass overwrite=True to replace it)")
    try:
        return write_bytes_atomic(encode_gw_record(rec), path, overwrite=overwrite)
    except RecordError as exc:  # another writer linked the file meanwhile
        raise FileExistsError(str(exc)) from None


def read_gw_record(path: str | Path) -> dict:
    """Read a record written by :func:`write_gw_record`; ValueError ``FILE: problem`` for a bad file."""
    path = Path(path)
    try:
        with gzip.open(path, "rt") as fh:
            rec = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a G0W0 record ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("mat_id", "bands", "eps_dft", "eps_qp", "bz2ibz", "bz_kpts") if k not in rec]
    if rec.get("kind") != "g0w0" or missing:
        raise ValueError(f"{path}: not a G0W0 record (kind {rec.get('kind')!r}, missing {missing})")
    return rec
