"""Acute rhombohedral cells: does the standard primitive cell (angles down to ~18°) give a real error?

GPAW warns "angles … results may be wrong, Niggli-reduce" on the acute standard primitive cells of rhombohedral
crystals (space groups 160/166). The engine keeps the spglib standard primitive cell (PROTOCOL.md step 0). This
check computes, for each material, the same crystal in the standard cell and in its Niggli-reduced cell (same
Cartesian frame, so xx/yy/zz stay comparable) with gpaw-pbe-v1 physics and the gpaw-direct-v1 numerics, at the
protocol's k-density and at a denser one. The two cells sample the Brillouin zone on different k-grids, so some
difference is k-sampling noise; a real error of the acute cell would not shrink as both grids are refined.

    python bench/engine/niggli.py agm004086539:v1 agm004082564     # appends niggli.jsonl, rewrites niggli.md

``MAT:v1`` computes only the pair at the protocol's k-density (the denser pair of a very acute cell costs hours
on a shared core); a bare ``MAT`` computes both pairs. One row per (material, k-density) in ``niggli.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import _serial_env, preimport, sc_table  # noqa: E402

DENSE = 1.5  # k-density factor of the refined pair


def _job(structure_dict: dict, dense: bool) -> dict:
    import tempfile

    from pymatgen.core import Structure

    from optiladder.engine.calculate import _run_gpaw
    from optiladder.engine.numerics import get_numerics
    from optiladder.engine.protocols import get_protocol

    proto = get_protocol("gpaw-pbe-v1")
    if dense:
        proto = dataclasses.replace(
            proto, gs_kdensity=proto.gs_kdensity * DENSE, nscf_kdensity=proto.nscf_kdensity * DENSE
        )
    with tempfile.TemporaryDirectory() as tmp:
        res = _run_gpaw(Structure.from_dict(structure_dict), proto, Path(tmp), "niggli", get_numerics(None))
    return {k: res[k] for k in ("omega", "spectra", "n_ibz_k", "gap_indirect", "gap_direct", "cpu_seconds")}


def cells(mat: str):
    """(standard primitive cell as the engine makes it, its Niggli reduction), with their smallest angles."""
    from optiladder.engine.calculate import prepare

    _, sym, _ = prepare(mat)
    std = sym.structure
    nig = std.get_reduced_structure("niggli")
    return std, nig


def main() -> None:
    from optiladder.campaign.forker import fork_call

    _serial_env()
    preimport()
    path = HERE / "niggli.jsonl"
    for arg in sys.argv[1:]:
        mat, _, mode = arg.partition(":")
        std, nig = cells(mat)
        head: dict = {
            "mat_id": mat,
            "formula": std.composition.reduced_formula,
            "nsites": len(std),
            "angles_standard": [round(a, 2) for a in std.lattice.angles],
            "angles_niggli": [round(a, 2) for a in nig.lattice.angles],
        }
        for dense in (False, True) if mode != "v1" else (False,):
            runs = {}
            for name, s in (("standard", std), ("niggli", nig)):
                r = fork_call(_job, s.as_dict(), dense)
                if r.error:
                    runs[name] = {"error": r.error}
                    continue
                runs[name] = r.value
                runs[name]["job_cpu"] = r.cpu_seconds
            row = {**head, "kdensity": "dense" if dense else "v1", "load": os.getloadavg()[0]}
            if all("error" not in v for v in runs.values()):
                row["sc_niggli_vs_standard"] = sc_table(runs["niggli"], runs["standard"])
                for n in runs:
                    for k in ("n_ibz_k", "gap_indirect", "gap_direct", "job_cpu"):
                        row[f"{n}_{k}"] = runs[n][k]
            else:
                row["errors"] = {n: v.get("error") for n, v in runs.items()}
            print(json.dumps(row), flush=True)
            with open(path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    summarize(path)


def summarize(path: Path) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    lines = [
        "# Acute rhombohedral cells: standard primitive vs Niggli-reduced cell (gpaw-pbe-v1 physics)",
        "",
        "Written by `bench/engine/niggli.py` from `niggli.jsonl`. Each material is computed in the engine's "
        "standard primitive cell and in its Niggli reduction (same Cartesian frame), with the gpaw-direct-v1 "
        f"numerics, at the protocol's k-density (v1) and, where run, at {DENSE}× that density (dense). "
        "SC = similarity coefficient of Im ε on the model grid, Niggli vs standard; min over trace, xx, yy, zz. "
        "CPU = the job's CPU seconds (rusage), machine shared (load given).",
        "",
        "| material | formula | atoms | smallest angle std / Niggli | k-density | k (IBZ) std / Niggli | "
        "min SC IPA | min SC RPA | SC trace IPA / RPA | direct gap std / Niggli (eV) | CPU s std / Niggli | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sc = r.get("sc_niggli_vs_standard")
        if not sc:
            lines.append(
                f"| {r['mat_id']} | {r['formula']} | {r['nsites']} | | {r['kdensity']} | "
                f"failed: {r.get('errors')} | | | | | | |"
            )
            continue

        def mn(lv: str, sc: dict = sc) -> float:
            return min(x for k, x in sc.items() if k.startswith(lv))

        lines.append(
            f"| {r['mat_id']} | {r['formula']} | {r['nsites']} | {min(r['angles_standard']):.1f}° / "
            f"{min(r['angles_niggli']):.1f}° | {r['kdensity']} | {r['standard_n_ibz_k']} / {r['niggli_n_ibz_k']} | "
            f"{mn('ipa'):.4f} | {mn('rpa'):.4f} | {sc['ipa_trace']:.4f} / {sc['rpa_trace']:.4f} | "
            f"{r['standard_gap_direct']:.3f} / {r['niggli_gap_direct']:.3f} | "
            f"{r['standard_job_cpu']:.0f} / {r['niggli_job_cpu']:.0f} | {r['load']:.1f} |"
        )
    (path.with_suffix(".md")).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary-only"]:
        summarize(HERE / "niggli.jsonl")
    else:
        main()
