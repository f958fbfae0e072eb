"""Numerics variants on one material, one forked job each (as run.py's new jobs), for choosing what goes into a
named numerics before the full old/new benchmark.

    python bench/engine/variants.py agm002764590 gpaw-direct-v1 lrm lr rt lrmrt

Prints, per variant, the job's CPU seconds (rusage), the record's per-phase CPU seconds, and the minimum SC
(trace, xx, yy, zz; IPA and RPA) against the first variant of the line. Readings: ``variants.md``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402

from optiladder.engine.numerics import NUMERICS, Numerics  # noqa: E402

VARIANTS: dict[str, Numerics] = dict(NUMERICS)


def _v(name: str, **kw) -> None:
    VARIANTS[name] = Numerics(
        name=name, **{"iterative_pass": False, "direct_hamiltonian": True, "gpw_roundtrip": False, **kw}
    )


for _k in (2, 3, 4):
    _v(f"gs{_k}", gs_extra_bands=_k)  # ground state with nocc + k bands
_v("fgc", fast_group_check=True)
_v("gs2fgc", gs_extra_bands=2, fast_group_check=True)
_v("rt", gpw_roundtrip=True)  # response from a .gpw file
_v("lr", eigensolver="lowrank")
_v("lrm", eigensolver="lowrank-mixed")
_v("lrmrt", eigensolver="lowrank-mixed", gpw_roundtrip=True)
_v("lrmgs2", eigensolver="lowrank-mixed", gs_extra_bands=2, fast_group_check=True)
_v("v2", eigensolver="lowrank-mixed", fast_group_check=True)  # = gpaw-direct-v2


def _job(mat: str, num: Numerics, nice: int | None) -> dict:
    from optiladder.engine.calculate import compute

    if nice is not None:
        try:
            Path("/proc/self/autogroup").write_text(str(nice))
        except OSError:
            pass
    return compute(mat, "gpaw-pbe-v1", numerics=num)


def main() -> None:
    from optiladder.campaign.forker import fork_call

    bench._serial_env()
    bench.preimport()
    mat, recs = sys.argv[1], {}
    for name in sys.argv[2:]:
        t = time.time()
        res = fork_call(_job, mat, VARIANTS[name], bench._autogroup_nice())
        if res.error:
            print(name, "ERROR", res.error, flush=True)
            continue
        rec = recs[name] = res.value
        first = next(iter(recs))
        sc = min(bench.sc_table(rec, recs[first]).values()) if name != first else 1.0
        print(
            f"{mat} {name:10s} job {res.cpu_seconds:6.1f} phases {rec['provenance']['cpu_seconds']}"
            f" wall {time.time() - t:5.1f} gap {rec['gap_indirect']:.5f} minSC vs {first} {sc:.6f}"
            f" load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
