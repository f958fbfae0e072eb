"""Numerics of the non-self-consistent step and the response: same physics, different cost.

A protocol (:mod:`.protocols`) fixes the physics: basis, k-points, bands, broadening, local-field cutoff and
frequency grid. A *numerics* option fixes how GPAW is driven to get it. Records carry a top-level
``numerics`` block (``{"name": ..., parameters}``); a record without one was made with ``gpaw-dense-v1``.

``gpaw-dense-v1`` (the baseline, PROTOCOL.md step 2 literally):
    ``calc.fixed_density(...)`` — which in GPAW 26 runs a full iterative (PPCG) solve of ``nocc + 4`` bands
    to ``convergence={'bands': nocc}`` — then ``diagonalize_full_hamiltonian(nbands=NB)``, which builds the
    plane-wave Hamiltonian row by row with one FFT pair per plane wave, then a ``.gpw`` with mode ``'all'``
    is written and read back for the response.

``gpaw-direct-v1`` (measured in ``bench/engine``):
    * no iterative pass: the fixed-density calculator is built as GPAW's ``fixed_density`` builds it, with
      random initial wave functions and without its SCF loop (the dense diagonalisation that follows
      replaces every wave function, so the iterative pass only cost time);
    * the local-potential block of H is read off one FFT of the effective potential,
      ``H[G, G'] = dv / N * FFT(v)[(G' - G) mod grid]`` — exactly what GPAW's row-by-row
      ``FFT(v * IFFT(e_G))`` computes (circular convolution on the same grid), in O(npw²) instead of
      O(npw · N log N); kinetic, PAW-projector and overlap terms as in GPAW;
    * the same generalized eigensolver (LAPACK ``zhegvx`` for the lowest NB pairs, as GPAW's own
      ``diagonalize_full_hamiltonian`` calls it);
    * the response reads the wave functions from memory (no ``.gpw`` written and read back).

``gpaw-direct-v2`` (gpaw-direct-v1 plus, measured in ``bench/engine``):
    * the dense eigensolver works on the standard problem ``A = S⁻¹ᐟ² H S⁻¹ᐟ²``: the PAW overlap is
      ``dv·1`` plus a rank-nI projector term, so ``S⁻¹ᐟ²`` comes from an nI × nI eigenproblem and the
      reduction costs O(npw² nI) instead of GPAW's Cholesky reduction (zhegvx: zpotrf + zhegst, O(npw³));
    * ``A`` is diagonalised in single precision (LAPACK cheevr, ``nbands + 8`` pairs), then one
      Rayleigh–Ritz step in double precision on those vectors gives eigenvalues to ~1e-11 Ha and S-orthonormal
      eigenvectors with residuals ``|A y − e y|`` of ~1e-5 Ha (single-precision rounding); a k-point whose
      largest residual exceeds 1e-4 Ha is solved again in double precision (LAPACK zheevr);
    * GPAW's symmetry-group sanity check (an O(n_ops³) Python loop, ~1 s per calculator on cubic cells)
      runs as one vectorised comparison.
    On KBrF₂ the non-self-consistent step drops from 45 to 20 CPU s (double-precision zheevr alone: 36 s).
    The ground state and the response are those of gpaw-direct-v1 (``gs_extra_bands``, GS bands ``nocc + k``,
    and ``gpw_roundtrip=True`` for the response were measured and not kept: see bench/engine/notes.md).

The results agree with the baseline to rounding (tests/engine compares H matrices, eigenpairs and spectra).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Numerics:
    """How the non-self-consistent step and the response are carried out (not what they compute).

    ``iterative_pass``: run GPAW's fixed-density SCF loop (PPCG, ``nocc + 4`` bands) before the dense
    diagonalisation; ``direct_hamiltonian``: build the plane-wave Hamiltonian from one FFT of the potential;
    ``gpw_roundtrip``: write the ``.gpw`` (mode ``'all'``) and let the response read it back.
    """

    name: str
    iterative_pass: bool = True
    direct_hamiltonian: bool = False
    gpw_roundtrip: bool = True
    #: ground-state bands: ``None`` = GPAW's default (``ceil(1.2 nocc) + 4``), an int ``k`` = ``nocc + k``
    gs_extra_bands: int | None = None
    #: GPAW's symmetry-group sanity check as one vectorised comparison instead of an O(n_ops³) Python loop
    fast_group_check: bool = False
    #: dense eigensolver of the direct Hamiltonian: ``"gvx"`` (GPAW's: LAPACK zhegvx on H, S), ``"lowrank"``
    #: (S⁻¹ᐟ² from the low-rank PAW overlap, then LAPACK zheevr on the standard problem, double precision) or
    #: ``"lowrank-mixed"`` (the same in single precision for ``nbands + eig_buffer`` pairs, then a Rayleigh–Ritz
    #: step in double precision; falls back to ``"lowrank"`` where the residual exceeds ``eig_tolerance``)
    eigensolver: str = "gvx"
    eig_buffer: int = 8
    eig_tolerance: float = 1e-4

    def as_record(self) -> dict:
        """The record's top-level ``numerics`` block."""
        return asdict(self)


NUMERICS: dict[str, Numerics] = {
    n.name: n
    for n in (
        Numerics(name="gpaw-dense-v1"),
        Numerics(name="gpaw-direct-v1", iterative_pass=False, direct_hamiltonian=True, gpw_roundtrip=False),
        Numerics(
            name="gpaw-direct-v2",
            iterative_pass=False,
            direct_hamiltonian=True,
            gpw_roundtrip=False,
            fast_group_check=True,
            eigensolver="lowrank-mixed",
        ),
    )
}
#: the numerics of records that carry no ``numerics`` block
BASELINE_NUMERICS = "gpaw-dense-v1"
#: what :func:`optiladder.engine.compute` (and so the campaign) uses unless told otherwise: proven equal to the
#: baseline on every material of bench/engine (SC 1.00000, IPA and RPA, trace and xx/yy/zz; 20 materials of 1–6
#: atoms) at 2.4–2.5× more materials per CPU-hour (bench/engine/results.md)
DEFAULT_NUMERICS = "gpaw-direct-v2"


def get_numerics(name: str | Numerics | None) -> Numerics:
    """A :class:`Numerics` by name (``None``: the default)."""
    if isinstance(name, Numerics):
        return name
    if name is None:
        name = DEFAULT_NUMERICS
    try:
        return NUMERICS[name]
    except KeyError:
        raise ValueError(f"unknown numerics {name!r}; known: {', '.join(NUMERICS)}") from None


def record_numerics(rec: dict) -> str:
    """The numerics name of a record (``gpaw-dense-v1`` when it has no ``numerics`` block)."""
    block = rec.get("numerics")
    if isinstance(block, dict) and isinstance(block.get("name"), str):
        return block["name"]
    return BASELINE_NUMERICS


# --- the GPAW side (imported lazily by calculate.py) ------------------------------------------------------------


def group_check_vectorized(self) -> None:
    """GPAW's ``Symmetries.group_check`` (closure of the operations under composition) without the
    O(n_ops³) Python loop: every product ``(U1 U2, t1 U2 + t2)`` must equal some ``(U3, t3)`` with
    ``t - t3`` integer to 1e-10. Raises GPAW's ``SymmetryAnalysisBug`` where GPAW's own check would."""
    from gpaw.new.symmetry import SymmetryAnalysisBug

    r_scc = np.asarray(self.rotation_scc)
    t_sc = np.asarray(self.translation_sc, float)
    u_abcc = np.einsum("aij,bjk->abik", r_scc, r_scc)
    t_abc = np.einsum("ai,bij->abj", t_sc, r_scc) + t_sc[None, :, :]
    for a in range(len(r_scc)):  # one row of products at a time: memory O(n_ops² · 9)
        same_u = (u_abcc[a][:, None] == r_scc[None]).all(axis=(2, 3))  # [b, c]
        dt = t_abc[a][:, None, :] - t_sc[None, :, :]
        same_t = np.abs(dt - dt.round()).max(axis=2) <= 1e-10
        if not (same_u & same_t).any(axis=1).all():
            raise SymmetryAnalysisBug("Sorry!  Try using spglib.standardize_cell(...)")


@contextmanager
def gpaw_patches(num: Numerics):
    """Replace GPAW internals that cost time but not results, for the duration of one calculation."""
    if not num.fast_group_check:
        yield
        return
    from gpaw.new.symmetry import Symmetries

    original = Symmetries.group_check
    Symmetries.group_check = group_check_vectorized
    try:
        yield
    finally:
        Symmetries.group_check = original


def fixed_density_without_scf(calc, *, txt, kpts, nbands: int):
    """A fixed-density calculator for new k-points, as GPAW 26's ``ASECalculator.fixed_density`` builds it,
    but with random initial wave functions and without running its SCF loop.

    Only good as input to :func:`diagonalize_full`, which replaces every wave function.
    """
    from gpaw.dft import Parameters
    from gpaw.new.ase_interface import ASECalculator
    from gpaw.new.calculation import DFT
    from gpaw.new.logger import Logger

    old_params = calc.params.todict()
    old_params.pop("h", None)
    dft = calc.dft
    kwargs = {
        **old_params,
        "kpts": kpts,
        "nbands": nbands,
        "random": True,
        "gpts": dft.density.nt_sR.desc.size,
        "mode": {**old_params["mode"]},
    }
    params = Parameters(**kwargs)
    logger = Logger(txt, calc.comm)
    builder = params.dft_component_builder(calc.atoms, log=logger)
    basis_set = builder.create_basis_set()
    kbcomm1 = dft.ibzwfs.kpt_band_comm
    kbcomm2 = builder.communicators["D"]
    potential = dft.potential.redist(
        builder.grid, builder.electrostatic_potential_desc, builder.atomdist, kbcomm1, kbcomm2
    )
    density = dft.density.redist(builder.grid, builder.interpolation_desc, builder.atomdist, kbcomm1, kbcomm2)
    ibzwfs = builder.create_ibz_wave_functions(basis_set, potential)
    ibzwfs.fermi_levels = dft.ibzwfs.fermi_levels
    scf_loop = builder.create_scf_loop()
    scf_loop.update_density_and_potential = False
    scf_loop.fix_fermi_level = True
    for key in ("energy", "density", "forces"):
        scf_loop.convergence.pop(key, None)
    new = DFT.from_components(
        calc.atoms,
        ibzwfs,
        density,
        potential,
        builder.setups,
        scf_loop,
        builder.create_potential_calculator(),
        logger,
        params=params,
        energies=dft.energies,
        converge=False,
    )
    return ASECalculator(params, log=logger, dft=new, atoms=calc.atoms)


def pw_matrix_direct(pw, pt_aiG, dH_aii, dS_aii, vt_R, block: int = 256, parts: dict | None = None):
    """H and S of one k-point in the plane-wave basis (serial), as ``gpaw.new.pw.fulldiag.pw_matrix``.

    The local potential enters through its FFT: row G of ``FFT(v · IFFT(e_G))`` is
    ``FFT(v)[(G' - G) mod grid] / N``. Returns (H, S) as GPAW ``Matrix`` objects of shape ``[npw, npw]``.
    ``parts``: if given, receives ``B`` ([npw, nI]) and ``dS`` ([nI, nI]) with ``S = dv·1 + B dS Bᴴ``.
    """
    from gpaw.core.matrix import create_distribution
    from gpaw.mpi import serial_comm

    assert pw.dtype == complex
    npw = pw.shape[0]
    dist = create_distribution(npw, npw, serial_comm, -1, 1)
    H_GG = dist.matrix(complex)
    S_GG = dist.matrix(complex)
    dv = pw.dv
    v_R = np.asarray(vt_R.data)
    shape = np.array(v_R.shape)
    v_Q = np.fft.fftn(v_R) * (dv / v_R.size)
    m_cG = np.asarray(pw.indices_cG)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    flat = v_Q.ravel()
    for g1 in range(0, npw, block):
        g2 = min(npw, g1 + block)
        d = (m_cG[:, None, :] - m_cG[:, g1:g2, None]) % shape[:, None, None]
        H_GG.data[g1:g2] = flat[np.tensordot(strides, d, axes=1)]
    H_GG.add_to_diagonal(dv * pw.ekin_G)
    S_GG.data[:] = 0.0
    S_GG.add_to_diagonal(dv)

    pt_aiG._lazy_init()
    f_GI = pt_aiG._lfc.expand()
    nI = f_GI.shape[1]
    dH_II = np.zeros((nI, nI))
    dS_II = np.zeros((nI, nI))
    i1 = 0
    for a, dH_ii in dH_aii.items():
        dS_ii = dS_aii[a]
        i2 = i1 + len(dS_ii)
        dH_II[i1:i2, i1:i2] = dH_ii
        dS_II[i1:i2, i1:i2] = dS_ii
        i1 = i2
    H_GG.data += (f_GI.conj() @ dH_II) @ f_GI.T
    S_GG.data += (f_GI.conj() @ dS_II) @ f_GI.T
    if parts is not None:
        parts["B"] = f_GI.conj()
        parts["dS"] = dS_II
    return H_GG, S_GG


def eigh_lowrank(
    H: np.ndarray,
    B: np.ndarray,
    dS: np.ndarray,
    dv: float,
    nbands: int,
    *,
    mixed: bool,
    buffer: int = 8,
    tolerance: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The lowest ``nbands`` pairs of ``H x = e S x`` with ``S = dv (1 + B (dS/dv) Bᴴ)`` (the PAW overlap:
    identity plus a low-rank projector term), H Hermitian (both triangles filled).

    ``S⁻¹ᐟ² = dv⁻¹ᐟ² (1 + U diag((1 + λ)⁻¹ᐟ² − 1) Uᴴ)`` from the eigenpairs (λ, U) of the small projector block,
    so the standard problem ``A = S⁻¹ᐟ² H S⁻¹ᐟ²`` costs O(npw² nI) instead of a Cholesky reduction (O(npw³)).
    ``mixed``: ``A`` is diagonalised in single precision (``nbands + buffer`` pairs), then a Rayleigh–Ritz step
    in double precision on those vectors gives eigenvalues to ~1e-11 and S-orthonormal vectors; if the
    largest residual ``|A y − e y|`` of the ``nbands`` pairs exceeds ``tolerance`` (Hartree) the double
    precision solve is used instead. Returns (eigenvalues [nbands], eigenvectors [npw, nbands], residual).
    """
    import scipy.linalg as sla

    n = H.shape[0]
    Q, R = np.linalg.qr(B)
    K = (R * (1.0 / dv)) @ dS @ R.conj().T
    lam, W = np.linalg.eigh((K + K.conj().T) / 2)
    if not lam.min() > -1.0:
        raise RuntimeError("PAW overlap not positive definite")
    U = Q @ W
    d = 1.0 / np.sqrt(1.0 + lam) - 1.0
    HU = H @ U
    G = HU * d + 0.5 * (U @ ((d[:, None] * (U.conj().T @ HU)) * d[None, :]))
    A = H + U @ G.conj().T
    A += G @ U.conj().T
    A *= 1.0 / dv
    resid = 0.0
    y = None
    if mixed:
        m = min(n, nbands + buffer)
        _, y32 = sla.eigh(
            A.astype(np.complex64),
            lower=True,
            subset_by_index=(0, m - 1),
            driver="evr",
            overwrite_a=True,
            check_finite=False,
        )
        y = y32.astype(complex)
        Ay = A @ y
        # Rayleigh–Ritz on span(y) (y is orthonormal to single precision only: generalized small problem)
        e, c = sla.eigh(y.conj().T @ Ay, y.conj().T @ y, check_finite=False)
        y = y @ c[:, :nbands]
        e = e[:nbands]
        r = Ay @ c[:, :nbands] - y * e
        resid = float(np.sqrt((r.conj() * r).real.sum(axis=0)).max())
        if not resid <= tolerance:
            y = None
    if y is None:
        e, y = sla.eigh(
            A, lower=True, subset_by_index=(0, nbands - 1), driver="evr", overwrite_a=True, check_finite=False
        )
    x = y + U @ (d[:, None] * (U.conj().T @ y))
    x *= 1.0 / np.sqrt(dv)
    return e, x, resid


def diagonalize_full(
    calc, nbands: int, eigensolver: str = "gvx", buffer: int = 8, tolerance: float = 1e-4
) -> None:
    """``calc.diagonalize_full_hamiltonian(nbands)`` (serial, PW mode, no meta-GGA) with
    :func:`pw_matrix_direct`; the same occupation step. ``eigensolver``: ``"gvx"`` (GPAW's own LAPACK call)
    or ``"lowrank"`` / ``"lowrank-mixed"`` (:func:`eigh_lowrank`)."""
    if eigensolver not in ("gvx", "lowrank", "lowrank-mixed"):
        raise ValueError(f"unknown eigensolver {eigensolver!r}")
    from gpaw.new.pwfd.ibzwfs import PWFDIBZWaveFunctions
    from gpaw.new.pwfd.wave_functions import PWFDWaveFunctions

    dft = calc.dft
    potential = dft.potential
    ibzwfs = dft.ibzwfs
    assert isinstance(ibzwfs, PWFDIBZWaveFunctions)
    if potential.dedtaut_sR is not None:
        raise NotImplementedError("meta-GGA potentials need GPAW's own diagonalize_full_hamiltonian")
    if ibzwfs.band_comm.size != 1 or ibzwfs.kpt_comm.size != 1:
        raise NotImplementedError("serial only")
    occ_calc = dft.scf_loop.occ_calc
    occ_calc._set_nbands(nbands)
    wfs_u = []
    for wfs in ibzwfs:
        dS_aii = [setup.dO_ii for setup in wfs.setups]
        pw = wfs.psit_nX.desc
        parts: dict = {}
        H_GG, S_GG = pw_matrix_direct(
            pw, wfs.pt_aiX, potential.dH_asii[:, wfs.spin], dS_aii, potential.vt_sR[wfs.spin], parts=parts
        )
        psit_nG = pw.empty(nbands)
        if eigensolver == "gvx":
            eig_n = H_GG.eigh(S_GG, limit=nbands)
            H_GG.complex_conjugate()
            psit_nG.data[:] = H_GG.data[:nbands]
        else:
            del S_GG
            eig_n, x_Gn, _ = eigh_lowrank(
                H_GG.data,
                parts["B"],
                parts["dS"],
                pw.dv,
                nbands,
                mixed=eigensolver == "lowrank-mixed",
                buffer=buffer,
                tolerance=tolerance,
            )
            del H_GG
            psit_nG.data[:] = x_Gn.T.conj()  # H and S are GPAW's transposed (conjugated) matrices
        if not eig_n[0] > -1000:
            raise RuntimeError("eigensolver failure (GPAW issue #241)")
        new_wfs = PWFDWaveFunctions.from_wfs(wfs, psit_nX=psit_nG)
        new_wfs.eig_n = eig_n
        wfs_u.append(new_wfs)
    new_ibzwfs = PWFDIBZWaveFunctions(
        ibzwfs.ibz,
        ncomponents=ibzwfs.ncomponents,
        wfs_u=wfs_u,
        kpt_comm=ibzwfs.kpt_comm,
        kpt_band_comm=ibzwfs.kpt_band_comm,
        comm=ibzwfs.comm,
    )
    new_ibzwfs.calculate_occs(occ_calc, dft.density.nvalence + dft.density.charge)
    dft.ibzwfs = new_ibzwfs
    calc.params.nbands = new_ibzwfs.nbands
    if "nbands" not in calc.params._non_defaults:
        calc.params._non_defaults.append("nbands")
