"""Engine benchmark: seconds per phase and peak memory for a fixed list of seed materials.

Each material runs ``compute`` with gpaw-pbe-v1 in a fresh process (one core: OMP/OpenBLAS threads = 1), so its
peak RSS is its own. The seed records' own timings (GPAW 26.7.0, one core, measured when the seed set was made)
stand beside ours as the reference; ``ratio`` = ours / seed. SC of the trace of Im ε against the seed record is
reported as a correctness check of the same run.

    python bench/engine/run.py            # writes bench/engine/results.md
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: fixed list: 1-, 2- and 3-atom seed materials (the seed set has no 4-atom cells)
MATERIALS = [
    "agm004442517",  # Ne
    "agm004442521",  # Ar
    "agm001192057",  # SrO
    "agm001192059",  # CaO
    "agm003157614",  # BN (P6_3mc)
    "agm001235145",
    "agm001236521",
    "agm001258144",
    "agm001260009",
    "agm001260168",
]

CHILD = r"""
import json, resource, sys, time
from optiladder.engine.calculate import compute
from optiladder.engine import read_record, record_spectra
mat, ref_path = sys.argv[1], sys.argv[2]
t = time.time()
rec = compute(mat, "gpaw-pbe-v1")
wall = time.time() - t
ref = read_record(ref_path)
a, b = record_spectra(rec), record_spectra(ref)
print(json.dumps({
    "mat_id": mat, "formula": rec["formula"], "nsites": rec["nsites"], "n_ibz_k": rec["n_ibz_k"],
    "nbands": rec["nbands"], "seconds": rec["seconds"], "wall": wall, "ref_seconds": ref["seconds"],
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "load": __import__("os").getloadavg()[0],
    "sc_ipa": a["ipa"].similarity(b["ipa"]), "sc_rpa": a["rpa"].similarity(b["rpa"]),
}))
"""


def main() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    rows = []
    for mat in MATERIALS:
        ref = REPO / "dataset" / "records" / f"{mat}.json.gz"
        res = subprocess.run(
            [sys.executable, "-c", CHILD, mat, str(ref)], capture_output=True, text=True, env=env
        )
        if res.returncode != 0:
            print(f"{mat}: failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    write(rows)


def write(rows: list[dict]) -> None:
    phases = ("gs", "nscf", "df")
    lines = [
        "# Engine benchmark (gpaw-pbe-v1, one core per material)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({platform.processor() or platform.machine()},"
        f" {os.cpu_count()} cores), `python bench/engine/run.py`; mean 1-min load average during the run"
        f" {sum(r.get('load', float('nan')) for r in rows) / max(len(rows), 1):.1f} (the dataset campaign uses one core;"
        " a load above 2 means the benchmark shared its core and the ratios are upper bounds)."
        " Seed = the seed record's own timing (same code, GPAW 26.7.0, one core); ratio = ours / seed.",
        "",
        "| material | formula | atoms | k (IBZ) | bands | gs s | nscf s | df s | total s | seed total s | ratio |"
        " peak MB | SC IPA | SC RPA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tot, ref_tot = 0.0, 0.0
    for r in rows:
        t = sum(r["seconds"][p] for p in phases)
        rt = sum(r["ref_seconds"][p] for p in phases)
        tot, ref_tot = tot + t, ref_tot + rt
        lines.append(
            f"| {r['mat_id']} | {r['formula']} | {r['nsites']} | {r['n_ibz_k']} | {r['nbands']} | "
            + " | ".join(f"{r['seconds'][p]:.1f}" for p in phases)
            + f" | {t:.1f} | {rt:.1f} | {t / rt:.2f} | {r['peak_mb']:.0f} | {r['sc_ipa']:.4f} | {r['sc_rpa']:.4f} |"
        )
    if rows:
        share = {p: sum(r["seconds"][p] for r in rows) / tot for p in phases}
        lines += [
            "",
            f"Total {tot:.0f} s vs seed {ref_tot:.0f} s (ratio {tot / ref_tot:.2f}). Share of time: "
            + ", ".join(f"{p} {share[p]:.0%}" for p in phases)
            + f". Peak memory max {max(r['peak_mb'] for r in rows):.0f} MB."
            f" Minimum SC against the seed records: IPA {min(r['sc_ipa'] for r in rows):.4f},"
            f" RPA {min(r['sc_rpa'] for r in rows):.4f}.",
        ]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
