"""The cheap IPA rung: cost and fidelity of ``gpaw-pbe-ipa-lite`` against ``gpaw-pbe-v1``, in one run.

Two modes, each appending one JSON row per calculation to a ``.jsonl`` file as it goes and then writing a summary:

* ``--choose``: candidate IPA-only settings (:data:`CANDIDATES`) on :data:`CHOOSE` (8 materials of 1–4 atoms,
  training split where the dataset has them, validation for 4 atoms): per material v1 once, then every
  candidate; (a first candidate, v1 with only the nscf k-density at 3, was dropped after Ne: same SC and
  CPU as B) CPU seconds of each job and SC of the IPA trace against the stored v1 record. Output:
  ``ipa_lite_choose.jsonl`` / ``ipa_lite_choose.md``. The chosen candidate became ``gpaw-pbe-ipa-lite``.
* ``--measure`` (default): fidelity of ``gpaw-pbe-ipa-lite`` on :data:`FIDELITY` (35 materials of 1–4 atoms,
  disjoint from :data:`CHOOSE`): SC of the IPA trace and of xx/yy/zz of Im ε against the committed v1 record
  of ``dataset/records`` (v1 is reproduced by the current engine at SC 1.0000, ``results.md``); and the CPU
  ratio v1/lite on :data:`RATIO` (8 of them, 1–4 atoms), measured interleaved (v1, lite, v1, lite, …,
  ``--repeats`` pairs per material) so that machine drift falls on both alike. Output: ``ipa_lite.jsonl`` /
  ``ipa_lite.md``.

Every job is a child forked from this pre-imported driver (:func:`run.preimport`, as the campaign's forking
worker does); CPU seconds = user + system of the child from ``wait4`` (:func:`optiladder.campaign.forker.fork_call`),
one BLAS/OpenMP thread. v1 runs with the campaign's default numerics ``gpaw-direct-v1``; so does lite.

    OMP_NUM_THREADS=1 nice python bench/engine/ipa_lite.py --choose
    OMP_NUM_THREADS=1 nice python bench/engine/ipa_lite.py --measure --repeats 2
    python bench/engine/ipa_lite.py --summary-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as engine_bench  # noqa: E402  (bench/engine/run.py: preimport, sc_table, find_ref, _serial_env)

log = logging.getLogger("bench.ipa_lite")
V1, LITE, NUMERICS = "gpaw-pbe-v1", "gpaw-pbe-ipa-lite", "gpaw-direct-v1"

#: candidate choice: 1-3 atoms of the training split (or none), 4 atoms of validation (no training 4-atom records)
CHOOSE = [
    "agm004442517",  # Ne, 1
    "agm004442521",  # Ar, 1
    "agm003157736",  # BeO, 2
    "agm003283723",  # BAs, 2
    "agm001249852",  # MgHF, 3
    "agm002015936",  # Be2C, 3
    "agm002147522",  # AlF3, 4 (validation)
    "agm003163144",  # HC, 4 (validation)
]
#: fidelity set (disjoint from CHOOSE): 4 one-atom, 11 two-atom, 11 three-atom (train/none), 9 four-atom (validation)
FIDELITY = [
    "agm004442523",  # He
    "agm004442527",  # Xe
    "agm004442528",  # Kr
    "agm004442532",  # Kr
    "agm001192057",  # SrO
    "agm001192059",  # CaO
    "agm001192117",  # SnS
    "agm001192136",  # MgSe
    "agm001192163",  # KH
    "agm003157626",  # GaP
    "agm003157746",  # AlAs
    "agm003157609",  # NaCl
    "agm003273599",  # AlN
    "agm003273604",  # GaN
    "agm003283740",  # BP
    "agm001236521",  # SrHF
    "agm001235422",  # NaLiO
    "agm001239533",  # LiCaN
    "agm001270636",  # KBeAs
    "agm002165993",  # NaMgAs
    "agm003090259",  # LiAlC
    "agm003160361",  # LiBeAs
    "agm003160913",  # Na2O
    "agm003161304",  # Li2O
    "agm003161704",  # CaHF
    "agm003160991",  # LiMgN
    "agm001122738",  # KNaF2
    "agm001216110",  # NaInCl2
    "agm002147615",  # GaF3
    "agm002165315",  # RbNa2P
    "agm002210957",  # KCl2F
    "agm002766960",  # AlHO2
    "agm003613906",  # Ca2HN
    "agm005211670",  # GaSiAsS
    "agm003079207",  # InHSe2
]
#: CPU ratio subset: two cells each of 1, 2, 3 and 4 atoms
RATIO = [
    "agm004442523",  # He
    "agm004442528",  # Kr
    "agm001192057",  # SrO
    "agm003157626",  # GaP
    "agm001235422",  # NaLiO
    "agm003161304",  # Li2O
    "agm002147615",  # GaF3
    "agm001122738",  # KNaF2
]


def candidates() -> dict:
    """The IPA-only settings tried by ``--choose`` (each a Protocol; v1 is the reference)."""
    from optiladder.engine.protocols import get_protocol

    v1 = get_protocol(V1)
    ipa = dataclasses.replace(v1, levels=("ipa",), lfe_ecut=1.0, production=False)
    lean = {"gs_kdensity": 2.0, "nbands_extra": 6, "nbands_per_volume": 0.35}
    return {
        "B:k3-lean": dataclasses.replace(ipa, name="B:k3-lean", nscf_kdensity=3.0, **lean),
        "C:k3.5-lean": dataclasses.replace(ipa, name="C:k3.5-lean", nscf_kdensity=3.5, **lean),
        # dropped after 3 materials: the 250 eV cutoff moves the gap of BeO by -0.85 eV (SC 0.87)
        "D:k3-lean-250eV": dataclasses.replace(
            ipa,
            name="D:k3-lean-250eV",
            nscf_kdensity=3.0,
            pw_ecut=250.0,
            gs_convergence=(("density", 1e-3),),
            **lean,
        ),
        "E:k4-lean": dataclasses.replace(ipa, name="E:k4-lean", nscf_kdensity=4.0, **lean),
        "F:k4-lean-gs1.5": dataclasses.replace(
            ipa,
            name="F:k4-lean-gs1.5",
            nscf_kdensity=4.0,
            gs_convergence=(("density", 1e-3),),
            **{**lean, "gs_kdensity": 1.5},
        ),
    }


#: candidates no longer run (their rows stay in the jsonl and the summary)
DROPPED = {"D:k3-lean-250eV"}
#: run on the first four CHOOSE materials only (time on a machine with load 8-11 on 2 cores): B is dominated in
#: fidelity by C, E in cost by F
FIRST_FOUR_ONLY = {"B:k3-lean", "E:k4-lean"}


def _compute(mat: str, protocol, numerics: str) -> dict:
    from optiladder.engine.calculate import compute

    return compute(mat, protocol, numerics=numerics)


def job(mat: str, protocol, numerics: str = NUMERICS) -> tuple[dict, dict]:
    """One calculation in a forked child: (record, {cpu, wall, peak_mb}); raises RuntimeError on failure."""
    from optiladder.campaign.forker import fork_call

    t = time.time()
    res = fork_call(_compute, mat, protocol, numerics)
    if res.error:
        raise RuntimeError(f"{mat}: {getattr(protocol, 'name', protocol)} failed: {res.error}")
    rec = res.value
    return rec, {
        "cpu": round(res.cpu_seconds, 2),
        "wall": round(time.time() - t, 2),
        "peak_mb": round(res.peak_rss_mb),
        "phase_cpu": rec["provenance"]["cpu_seconds"],
        "n_ibz_k": rec["n_ibz_k"],
        "nbands": rec["nbands"],
    }


def reference(mat: str) -> dict:
    from optiladder.engine.records import read_record

    path = engine_bench.find_ref(mat, [])
    if path is None:
        raise FileNotFoundError(f"{mat}: no v1 record in dataset/records")
    return read_record(path)


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def _row(mat: str, ref: dict, kind: str, rep: int) -> dict:
    return {
        "mat_id": mat,
        "formula": ref["formula"],
        "nsites": ref["nsites"],
        "split": ref.get("split"),
        "kind": kind,
        "repeat": rep,
        "start": datetime.now(UTC).isoformat(timespec="seconds"),
        "load": round(os.getloadavg()[0], 2),
    }


def run_one(path: Path, mat: str, ref: dict, kind: str, protocol, rep: int) -> None:
    row = _row(mat, ref, kind, rep)
    try:
        rec, m = job(mat, protocol)
    except RuntimeError as exc:
        log.error("%s", exc)
        row["error"] = str(exc)
        _append(path, row)
        return
    row.update(m)
    row["sc_vs_v1"] = engine_bench.sc_table(rec, ref, levels=("ipa",))
    row["gap_diff"] = round(rec["gap_indirect"] - ref["gap_indirect"], 4)
    log.info(
        "%s %s rep %d: cpu %.1f s, SC ipa trace %.4f", mat, kind, rep, m["cpu"], row["sc_vs_v1"]["ipa_trace"]
    )
    _append(path, row)


def _done(path: Path) -> set[tuple[str, str, int]]:
    if not path.exists():
        return set()
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {(r["mat_id"], r["kind"], r["repeat"]) for r in rows if "error" not in r}


def choose(path: Path) -> None:
    from optiladder.engine.protocols import get_protocol

    done = _done(path)
    cands = candidates()
    for mat in CHOOSE:
        ref = reference(mat)
        for kind, proto in [("v1", get_protocol(V1)), *cands.items()]:
            late = kind in FIRST_FOUR_ONLY and mat not in CHOOSE[:4]
            if (mat, kind, 0) not in done and kind not in DROPPED and not late:
                run_one(path, mat, ref, kind, proto, 0)


def measure(path: Path, repeats: int, part: str = "all") -> None:
    """Interleaved v1/lite pairs on RATIO (``repeats`` rounds; ``part`` ratio or all), then lite alone on the
    rest of FIDELITY (``part`` fidelity or all; the two parts may run as two processes, appending to one file)."""
    from optiladder.engine.protocols import get_protocol

    done = _done(path)
    v1, lite = get_protocol(V1), get_protocol(LITE)
    refs = {m: reference(m) for m in FIDELITY}
    if part in ("ratio", "all"):
        for rep in range(repeats):
            for mat in RATIO:
                for kind, proto in (("v1", v1), ("lite", lite)):
                    if (mat, kind, rep) not in done:
                        run_one(path, mat, refs[mat], kind, proto, rep)
    if part in ("fidelity", "all"):
        for mat in FIDELITY:
            if mat not in RATIO and (mat, "lite", 0) not in done:
                run_one(path, mat, refs[mat], "lite", lite, 0)


def _q(xs: list[float], p: float) -> float:
    """The p-quantile (0–1) by linear interpolation (numpy's default)."""
    import numpy as np

    return float(np.quantile(np.asarray(xs, float), p))


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def _head(title: str) -> list[str]:
    return [
        f"# {title}",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores, shared with the"
        " background campaign and other sessions; 1-min load average per row in the jsonl). One BLAS/OpenMP thread;"
        " every job a child forked from a pre-imported driver; CPU s = user + system of the child (wait4 rusage);"
        f" numerics {NUMERICS} for both. SC = similarity coefficient of Im ε (IPA) on the model grid (0–20 eV)"
        " against the committed gpaw-pbe-v1 record of `dataset/records`.",
        "",
    ]


def summary_choose(path: Path) -> None:
    rows = [r for r in _rows(path) if "error" not in r]
    kinds = ["v1", *candidates()]
    by = {(r["mat_id"], r["kind"]): r for r in rows}
    lines = _head("IPA-lite candidates (bench/engine/ipa_lite.py --choose)")
    c = candidates()
    for k in kinds[1:]:
        p = c[k]
        lines.append(
            f"- **{k}**: nscf k-density {p.nscf_kdensity}, ground state k-density {p.gs_kdensity}, PW {p.pw_ecut:g}"
            f" eV, bands max(nocc+{p.nbands_extra}, ceil({p.nbands_per_volume}·V)), IPA only (response cutoff"
            f" {p.lfe_ecut:g} eV), ground-state convergence {dict(p.gs_convergence or ()) or 'GPAW default'}."
        )
    lines += [
        "",
        "| material | formula | atoms | v1 CPU s | "
        + " | ".join(f"{k} CPU s / SC" for k in kinds[1:])
        + " |",
        "|---|---|---|---|" + "---|" * (len(kinds) - 1),
    ]
    agg: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds[1:]}
    for mat in CHOOSE:
        v = by.get((mat, "v1"))
        if v is None:
            continue
        cells = []
        for k in kinds[1:]:
            r = by.get((mat, k))
            if r is None:
                cells.append("–")
                continue
            sc = r["sc_vs_v1"]["ipa_trace"]
            agg[k].append((v["cpu"] / r["cpu"], sc))
            cells.append(f"{r['cpu']:.1f} / {sc:.3f}")
        lines.append(
            f"| {mat} | {v['formula']} | {v['nsites']} | {v['cpu']:.1f} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    for k, xs in agg.items():
        if xs:
            ratios, scs = zip(*xs, strict=True)
            lines.append(
                f"- {k}: CPU ratio v1/candidate median {statistics.median(ratios):.2f} (range {min(ratios):.2f}–"
                f"{max(ratios):.2f}); SC of the IPA trace vs v1 median {statistics.median(scs):.3f}, min {min(scs):.3f}"
                f" ({len(xs)} materials)."
            )
    (HERE / "ipa_lite_choose.md").write_text("\n".join(lines) + "\n")


def summary_measure(path: Path) -> None:
    from optiladder.engine.protocols import get_protocol

    rows = [r for r in _rows(path) if "error" not in r]
    errors = [r for r in _rows(path) if "error" in r]
    p = get_protocol(LITE)
    lite = {}
    for r in rows:
        if r["kind"] == "lite":
            lite.setdefault(r["mat_id"], r)  # the first repeat: one fidelity value per material
    lines = _head(
        "gpaw-pbe-ipa-lite: fidelity and cost against gpaw-pbe-v1 (bench/engine/ipa_lite.py --measure)"
    )
    lines.append(
        f"Protocol {LITE}: {json.dumps(p.as_record())}"
        " (`optiladder.engine.protocols`, docs/protocol.md). v1: gpaw-pbe-v1 (IPA and RPA)."
    )
    scs = [r["sc_vs_v1"]["ipa_trace"] for r in lite.values()]
    comp = [min(r["sc_vs_v1"][f"ipa_{c}"] for c in "xyz") for r in lite.values()]
    if scs:
        lines += [
            "",
            "## Fidelity (SC of the IPA trace of Im ε, lite vs v1)",
            "",
            f"**{len(scs)} materials** of 1–4 atoms: median SC **{statistics.median(scs):.3f}**, p10"
            f" **{_q(scs, 0.1):.3f}**, min {min(scs):.3f}; worst of xx/yy/zz per material: median"
            f" {statistics.median(comp):.3f}, p10 {_q(comp, 0.1):.3f}.",
            "",
            "| atoms | materials | median SC | p10 SC | min SC | median |Δgap| eV |",
            "|---|---|---|---|---|---|",
        ]
        for n in sorted({r["nsites"] for r in lite.values()}):
            s = [r["sc_vs_v1"]["ipa_trace"] for r in lite.values() if r["nsites"] == n]
            g = [abs(r["gap_diff"]) for r in lite.values() if r["nsites"] == n]
            lines.append(
                f"| {n} | {len(s)} | {statistics.median(s):.3f} | {_q(s, 0.1):.3f} | {min(s):.3f}"
                f" | {statistics.median(g):.3f} |"
            )
    pairs = []
    lines += [
        "",
        "## Cost (CPU seconds per material, interleaved v1, lite, v1, lite, …)",
        "",
        "| material | formula | atoms | repeats | v1 CPU s | lite CPU s | ratio v1/lite | v1 k (IBZ) / bands"
        " | lite k (IBZ) / bands | v1 gs/nscf/df | lite gs/nscf/df |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    tot = [0.0, 0.0]
    for mat in RATIO:
        v = [r for r in rows if r["mat_id"] == mat and r["kind"] == "v1"]
        li = [r for r in rows if r["mat_id"] == mat and r["kind"] == "lite"]
        reps = sorted({r["repeat"] for r in v} & {r["repeat"] for r in li})
        if not reps:
            continue
        vc = statistics.median(r["cpu"] for r in v if r["repeat"] in reps)
        lc = statistics.median(r["cpu"] for r in li if r["repeat"] in reps)
        pairs.append(vc / lc)
        tot[0] += vc
        tot[1] += lc

        def ph(rs: list[dict]) -> str:
            return "/".join(
                f"{statistics.median(r['phase_cpu'][k] for r in rs):.1f}" for k in ("gs", "nscf", "df")
            )

        lines.append(
            f"| {mat} | {v[0]['formula']} | {v[0]['nsites']} | {len(reps)} | {vc:.1f} | {lc:.1f} | {vc / lc:.2f}"
            f" | {v[0]['n_ibz_k']} / {v[0]['nbands']} | {li[0]['n_ibz_k']} / {li[0]['nbands']} | {ph(v)} | {ph(li)} |"
        )
    if pairs:
        lines += [
            "",
            f"**CPU ratio v1/lite on {len(pairs)} materials**: total {tot[0] / tot[1]:.2f} ({tot[0]:.0f} s vs"
            f" {tot[1]:.0f} s), geometric mean of per-material ratios {engine_bench._geo(pairs):.2f}, range"
            f" {min(pairs):.2f}–{max(pairs):.2f}. Job CPU includes what the forked child does besides the three"
            " phases (symmetrization, record building).",
        ]
    if errors:
        lines += ["", "Failed jobs: " + "; ".join(r["error"] for r in errors)]
    missing = [m for m in FIDELITY if m not in lite]
    if missing:
        lines += [
            "",
            f"Not measured ({len(missing)} of {len(FIDELITY)}; stopped at the session's deadline on a machine with"
            f" load 8–13 on 2 cores): {', '.join(missing)}. Complete with `OMP_NUM_THREADS=1 nice python"
            " bench/engine/ipa_lite.py --measure --repeats 2` (resumes; `--summary-only` rewrites this file).",
        ]
    first = [r for r in _rows(HERE / "ipa_lite_lean_bands.jsonl") if "error" not in r]
    if first:
        lines += [
            "",
            "A first run with fewer bands, max(nocc + 6, ⌈0.35·V⌉) (candidate F of `ipa_lite_choose.md`), was stopped"
            " after "
            + str(len(first))
            + " jobs (`ipa_lite_lean_bands.jsonl`): SC of the IPA trace "
            + ", ".join(
                f"{r['formula']} {r['sc_vs_v1']['ipa_trace']:.3f}" for r in first if r["kind"] == "lite"
            )
            + " — the bands cut the Ca 3d conduction bands of CaO for little time, so the protocol keeps v1's bands.",
        ]
    lines += ["", "Per-material SC (IPA trace / worst component) and lite CPU s:", ""]
    lines += [
        f"- {m} {r['formula']} ({r['nsites']} atoms, {r['split']}): {r['sc_vs_v1']['ipa_trace']:.3f} /"
        f" {min(r['sc_vs_v1'][f'ipa_{c}'] for c in 'xyz'):.3f}, {r['cpu']:.1f} s, gap {r['gap_diff']:+.3f} eV vs v1"
        for m, r in sorted(lite.items(), key=lambda kv: (kv[1]["nsites"], kv[0]))
    ]
    (HERE / "ipa_lite.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--choose", action="store_true", help="try the candidate settings on CHOOSE")
    mode.add_argument(
        "--measure", action="store_true", help="fidelity on FIDELITY, CPU ratio on RATIO (default)"
    )
    ap.add_argument("--repeats", type=int, default=2, help="interleaved v1/lite pairs per RATIO material")
    ap.add_argument("--part", choices=("all", "ratio", "fidelity"), default="all", help="with --measure")
    ap.add_argument("--summary-only", action="store_true", help="rewrite the .md from the .jsonl")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    engine_bench._serial_env()
    path = HERE / ("ipa_lite_choose.jsonl" if args.choose else "ipa_lite.jsonl")
    if not args.summary_only:
        engine_bench.preimport()
        choose(path) if args.choose else measure(path, args.repeats, args.part)
    summary_choose(path) if args.choose else summary_measure(path)


if __name__ == "__main__":
    main()
