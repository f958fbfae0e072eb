"""Dense eigensolvers on plane-wave H, S matrices saved from one material (``.npz`` with ``H<k>``, ``S<k>``,
``nbands``): LAPACK zhegvx (GPAW's call), a Cholesky reduction + zheevr/zheevx, and single-precision cheevr for
``nbands + 8`` pairs followed by a Rayleigh–Ritz step in double precision. CPU seconds, one BLAS thread.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/engine/eigbench.py --dump agm005117180 hs.npz
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/engine/eigbench.py hs.npz
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.linalg as sla


def timed(f, *a, **k):
    t = time.process_time()
    r = f(*a, **k)
    return r, time.process_time() - t


def to_standard(h, s):
    low = sla.cholesky(s, lower=True, check_finite=False)
    a = sla.solve_triangular(low, h, lower=True, check_finite=False)
    return sla.solve_triangular(low, a.conj().T, lower=True, check_finite=False)


def rayleigh_ritz(a, x):
    ax = a @ x
    e, c = sla.eigh(x.conj().T @ ax, x.conj().T @ x)
    return e, x @ c, ax @ c - (x @ c) * e


def dump(mat: str, out: str, kpts: tuple[int, ...] = (0, 7, 20)) -> None:
    """H and S (``pw_matrix_direct``) of a few k-points of ``mat`` at gpaw-pbe-v1."""
    import math

    from gpaw import GPAW, PW, FermiDirac

    from optiladder import structures as st
    from optiladder.engine.calculate import prepare
    from optiladder.engine.numerics import fixed_density_without_scf, pw_matrix_direct
    from optiladder.engine.protocols import get_protocol

    proto = get_protocol("gpaw-pbe-v1")
    atoms = st.to_atoms(prepare(mat)[1].structure)
    atoms.calc = GPAW(
        mode=PW(proto.pw_ecut),
        xc=proto.xc,
        kpts={"density": proto.gs_kdensity, "gamma": True},
        occupations=FermiDirac(proto.smearing),
        txt=None,
    )
    atoms.get_potential_energy()
    nocc = math.ceil(round(atoms.calc.get_number_of_electrons(), 6) / 2)
    kd = {"density": proto.nscf_kdensity, "gamma": True}
    nscf = fixed_density_without_scf(atoms.calc, txt=None, kpts=kd, nbands=nocc + 4)
    pot = nscf.dft.potential
    out_d = {"nbands": proto.nbands(nocc, atoms.get_volume())}
    for i, wfs in enumerate(nscf.dft.ibzwfs):
        if i in kpts:
            dS = [s.dO_ii for s in wfs.setups]
            h, s = pw_matrix_direct(
                wfs.psit_nX.desc, wfs.pt_aiX, pot.dH_asii[:, wfs.spin], dS, pot.vt_sR[wfs.spin]
            )
            out_d[f"H{i}"], out_d[f"S{i}"] = h.data.copy(), s.data.copy()
    np.savez(out, **out_d)


def main() -> None:
    if sys.argv[1] == "--dump":
        dump(sys.argv[2], sys.argv[3])
        return
    d = np.load(sys.argv[1])
    nb = int(d["nbands"])
    for key in [k for k in d.files if k.startswith("H")]:
        h, s = d[key], d["S" + key[1:]]
        (w0, _), t0 = timed(sla.eigh, h, s, lower=True, subset_by_index=(0, nb - 1), check_finite=False)
        print(key, "npw", h.shape[0], "nbands", nb, "zhegvx", round(t0, 3))
        a, tc = timed(to_standard, h, s)
        for drv in ("evr", "evx"):
            (w, _), t = timed(
                sla.eigh, a, lower=True, subset_by_index=(0, nb - 1), driver=drv, check_finite=False
            )
            print(f"  cholesky+trsm {tc:.3f}  zhe{drv} {t:.3f}  max |Δe| {np.abs(w - w0).max():.1e}")
        (w4, v4), t4 = timed(
            sla.eigh,
            a.astype(np.complex64),
            lower=True,
            subset_by_index=(0, nb + 7),
            driver="evr",
            check_finite=False,
        )
        print(f"  cheevr (nbands+8) {t4:.3f}  max |Δe| {np.abs(w4[:nb] - w0).max():.1e}")
        (w5, _, r), t5 = timed(rayleigh_ritz, a, v4.astype(complex))
        res = np.linalg.norm(r[:, :nb], axis=0).max()
        print(
            f"  + Rayleigh-Ritz (double) {t5:.3f}  max |Δe| {np.abs(w5[:nb] - w0).max():.1e}  residual {res:.1e}"
        )


if __name__ == "__main__":
    main()
