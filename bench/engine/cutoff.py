"""Cost of a 500 eV cutoff (gpaw-pbe-v2) beside gpaw-pbe-v1, both with the same numerics (``--numerics``,
default the engine's default; rows made before the option are gpaw-direct-v1).

For each material: v1 then v2, each in a child forked from this pre-imported process; CPU seconds per phase
(the records' ``provenance.cpu_seconds``) and of the whole job (``wait4``), the gap change and SC[v2; v1] of the
trace of Im ε (IPA, RPA). Appends to ``cutoff.jsonl`` and rewrites ``cutoff.md``.

    python bench/engine/cutoff.py [--numerics NAME] agm002176626 agm003157770 agm002766960
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import _serial_env, preimport, sc_table  # noqa: E402

#: the numerics of rows that do not name theirs (made before ``--numerics`` existed)
OLD_ROWS_NUMERICS = "gpaw-direct-v1"


def _job(mat: str, protocol: str, out: str, numerics: str) -> None:
    from optiladder.engine.calculate import compute
    from optiladder.engine.records import write_record

    write_record(compute(mat, protocol, numerics=numerics), out, overwrite=True)


def main() -> None:
    from optiladder.campaign.forker import fork_call
    from optiladder.engine.numerics import DEFAULT_NUMERICS, get_numerics
    from optiladder.engine.records import read_record

    args = sys.argv[1:]
    numerics = DEFAULT_NUMERICS
    if args[:1] == ["--numerics"]:
        numerics, args = get_numerics(args[1]).name, args[2:]
    _serial_env()
    preimport()
    path = HERE / "cutoff.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        for mat in args:
            row: dict = {"mat_id": mat, "numerics": numerics}
            recs = {}
            for proto in ("gpaw-pbe-v1", "gpaw-pbe-v2"):
                out = Path(tmp) / f"{mat}.{proto}.json.gz"
                res = fork_call(_job, mat, proto, str(out), numerics)
                if res.error:
                    row[proto] = {"error": res.error}
                    continue
                rec = recs[proto] = read_record(out)
                row[proto] = {
                    "cpu": res.cpu_seconds,
                    "peak_mb": res.peak_rss_mb,
                    "phase_cpu": rec["provenance"]["cpu_seconds"],
                    "gap": rec["gap_indirect"],
                    "load": os.getloadavg()[0],
                }
                row.update(formula=rec["formula"], nsites=rec["nsites"], n_ibz_k=rec["n_ibz_k"])
            if len(recs) == 2:
                row["sc_v2_vs_v1"] = sc_table(recs["gpaw-pbe-v2"], recs["gpaw-pbe-v1"])
            with open(path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    write(path)


def write(path: Path) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows = [r for r in rows if "sc_v2_vs_v1" in r]
    lines = [
        "# Cutoff cost: gpaw-pbe-v2 (500 eV) vs gpaw-pbe-v1 (300 eV), each pair with the same numerics",
        "",
        "One core, forked jobs, CPU seconds (user + system). SC = SC[v2; v1] of the trace of Im ε. The dataset"
        " stays v1; this is the price of v2. Each material: v1 then v2 in one run.",
        "",
    ]
    for numerics in sorted({r.get("numerics", OLD_ROWS_NUMERICS) for r in rows}):
        lines += _table(numerics, [r for r in rows if r.get("numerics", OLD_ROWS_NUMERICS) == numerics])
    (HERE / "cutoff.md").write_text("\n".join(lines) + "\n")


def _table(numerics: str, rows: list[dict]) -> list[str]:
    lines = [
        f"## numerics {numerics}",
        "",
        "| material | formula | atoms | k (IBZ) | v1 gs/nscf/df CPU s | v2 gs/nscf/df CPU s | v1 job s | v2 job s"
        " | v2/v1 | gap v1 → v2 eV | SC IPA | SC RPA |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for r in rows:
        a, b = r["gpaw-pbe-v1"], r["gpaw-pbe-v2"]
        ratios.append(b["cpu"] / a["cpu"])

        def ph(m: dict) -> str:
            return "/".join(f"{m['phase_cpu'][p]:.1f}" for p in ("gs", "nscf", "df"))

        lines.append(
            f"| {r['mat_id']} | {r['formula']} | {r['nsites']} | {r['n_ibz_k']} | {ph(a)} | {ph(b)}"
            f" | {a['cpu']:.1f} | {b['cpu']:.1f} | {b['cpu'] / a['cpu']:.2f} | {a['gap']:.2f} → {b['gap']:.2f}"
            f" | {r['sc_v2_vs_v1']['ipa_trace']:.3f} | {r['sc_v2_vs_v1']['rpa_trace']:.3f} |"
        )
    if ratios:
        lines += [
            "",
            f"Median cost ratio v2/v1: {statistics.median(ratios):.2f} over {len(ratios)} materials"
            f" (total {sum(r['gpaw-pbe-v2']['cpu'] for r in rows) / sum(r['gpaw-pbe-v1']['cpu'] for r in rows):.2f}).",
            "",
        ]
    return lines


if __name__ == "__main__":
    main()
