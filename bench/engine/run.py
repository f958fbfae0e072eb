"""Engine benchmark: old vs new numerics side by side, in the same run, over interleaved repeats.

For every material of a fixed list the two job kinds run one after the other, ``repeats`` times
(old, new, old, new, …), so that machine drift and the load of the other processes on this machine fall on
both alike:

* **old** — what the campaign did at the start of issue 10: a fresh Python process per job
  (``python -c``: imports, then ``compute(..., numerics="gpaw-dense-v1")``);
* **new** — a child forked from this pre-imported driver (what the campaign's forking worker does), computing
  with the new numerics (``--new``, default ``gpaw-direct-v2``).

The numerics pair is explicit (``--old`` / ``--new``): every row of ``runs.jsonl`` records the numerics of its
two jobs, and the summary compares only rows of the chosen pair (other pairs in the file are listed apart).
The forked child is given the scheduling weight of this driver's session (its autogroup nice), as the old job
(a plain child process) has it, so that both kinds of job share the machine alike.

Measured per run: CPU seconds of the whole job process (``wait4`` rusage: user + system, imports included),
CPU and wall seconds per phase (the record's ``provenance.cpu_seconds`` and ``seconds``), peak RSS. Core-hours
are CPU time, not wall time. The spectra of the old and new runs are compared (SC of the trace and of each of
xx/yy/zz, IPA and RPA) and, where the repository or ``--refs`` holds a reference record, against it too.
Results are appended to ``runs.jsonl`` as they come (so a stopped run keeps what it measured; ``--resume``
skips material/repeat pairs already there) and summarized in ``results.md`` / ``results.json``.

    python bench/engine/run.py --resume --set all --repeats 2 --new gpaw-direct-v2   # append what is missing
    python bench/engine/run.py --summary-only --new gpaw-direct-v2                   # rewrite results.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OLD, NEW = "gpaw-dense-v1", "gpaw-direct-v2"

#: 1-, 2- and 3-atom seed materials (references: dataset/records)
SMALL = [
    "agm004442517",  # Ne
    "agm004442521",  # Ar
    "agm001192057",  # SrO
    "agm001192059",  # CaO
    "agm003157614",  # BN (P6_3mc)
    "agm001235145",  # SrMgGe
    "agm001236521",  # SrHF
    "agm001258144",  # GeBrF
    "agm001260009",  # RbLiO
    "agm001260168",  # SnBrF
]
#: 4-, 5- and 6-atom validation/test cells (4-atom references: ../shared/data/campaign-extra, passed as --refs)
LARGE = [
    "agm002766960",  # AlHO2, 4 atoms, R-3m (166), 35.7°
    "agm005112965",  # KLiH2, 4 atoms, R3m (160), 31.2°
    "agm005104248",  # NaGaO2, 4 atoms, R3m (160), 30.0°
    "agm001942750",  # Mg2SeS, 4 atoms, R-3m (166)
    "agm002764590",  # KBrF2, 4 atoms, R-3m (166)
    "agm005117180",  # LiGaI2, 4 atoms, R3m (160)
    "agm001105251",  # SrLiH3, 5 atoms, Pm-3m (221)
    "agm002471317",  # KMgF3, 5 atoms, Pm-3m (221)
    "agm003200742",  # LiBH4, 6 atoms, F-43m (216)
    "agm002153375",  # KBH4, 6 atoms, F-43m (216)
]
SETS = {"small": SMALL, "large": LARGE, "all": LARGE + SMALL}

OLD_CHILD = r"""
import json, sys
from optiladder.engine.calculate import compute
from optiladder.engine.records import write_record
rec = compute(sys.argv[1], "gpaw-pbe-v1", numerics=sys.argv[2])
write_record(rec, sys.argv[3], overwrite=True)
"""

log = logging.getLogger("bench.engine")


def _serial_env() -> None:
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = "1"


def run_old(mat: str, out: Path, numerics: str) -> dict:
    """A fresh interpreter per job (imports included), baseline numerics."""
    t = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-c", OLD_CHILD, mat, numerics, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{mat}: old job failed: {err.strip().splitlines()[-1:]}")
    return {"cpu": ru.ru_utime + ru.ru_stime, "wall": time.time() - t, "peak_mb": ru.ru_maxrss / 1024}


def run_new(mat: str, out: Path, numerics: str) -> dict:
    """A child forked from this pre-imported process, new numerics."""
    from optiladder.campaign.forker import fork_call

    t = time.time()
    res = fork_call(_compute_and_write, mat, numerics, str(out), _autogroup_nice())
    if res.error:
        raise RuntimeError(f"{mat}: new job failed: {res.error}")
    return {"cpu": res.cpu_seconds, "wall": time.time() - t, "peak_mb": res.peak_rss_mb}


def _autogroup_nice() -> int | None:
    """The nice value of this process's scheduling autogroup (Linux), or None."""
    try:
        return int(Path("/proc/self/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _compute_and_write(mat: str, numerics: str, out: str, nice: int | None = None) -> None:
    from optiladder.engine.calculate import compute
    from optiladder.engine.records import write_record

    if nice is not None:  # fork_call's setsid() gave the child a new autogroup (nice 0): restore the parent's
        try:
            Path("/proc/self/autogroup").write_text(str(nice))
        except OSError:
            pass

    write_record(compute(mat, "gpaw-pbe-v1", numerics=numerics), out, overwrite=True)


def sc_table(a: dict, b: dict, levels: tuple[str, ...] = ("ipa", "rpa")) -> dict[str, float]:
    """SC[a; b] on the model grid of the trace and of xx/yy/zz of Im ε at each of ``levels``."""
    import numpy as np

    from optiladder.spectra import MODEL_GRID, interpolate, similarity_coefficient

    def im(rec: dict, lv: str) -> dict[str, np.ndarray]:
        om = np.asarray(rec["omega"], float)
        out = {
            c: interpolate(om, np.asarray(rec["spectra"][f"{lv}_im_{c}"], float), MODEL_GRID) for c in "xyz"
        }
        out["trace"] = (out["x"] + out["y"] + out["z"]) / 3
        return out

    table = {}
    for lv in levels:
        ya, yb = im(a, lv), im(b, lv)
        for c in ("trace", "x", "y", "z"):
            table[f"{lv}_{c}"] = float(similarity_coefficient(ya[c], yb[c], MODEL_GRID))
    return table


def find_ref(mat: str, refs: list[Path]) -> Path | None:
    for root in [REPO / "dataset" / "records", *refs]:
        p = root / f"{mat}.json.gz"
        if p.exists():
            return p
    return None


def preimport() -> None:
    """What the campaign's forking worker imports once (so each job starts warm)."""
    import gpaw.new.pw.fulldiag  # noqa: F401
    import gpaw.response.df  # noqa: F401

    import optiladder.engine.calculate as calc

    calc._alex_index()
    calc._versions()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), default="large")
    ap.add_argument("--materials", nargs="*", help="instead of --set")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--refs", nargs="*", type=Path, default=[], help="folders with reference records")
    ap.add_argument("--resume", action="store_true", help="skip (material, repeat) pairs in runs.jsonl")
    ap.add_argument("--summary-only", action="store_true", help="rewrite results.md from runs.jsonl")
    ap.add_argument("--old", default=OLD, help=f"numerics of the old jobs (fresh process; default {OLD})")
    ap.add_argument("--new", default=NEW, help=f"numerics of the new jobs (forked worker; default {NEW})")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _serial_env()
    runs_path = HERE / "runs.jsonl"
    done = set()
    if runs_path.exists():
        for line in runs_path.read_text().splitlines():
            r = json.loads(line)
            if _pair(r) == (args.old, args.new):
                done.add((r["mat_id"], r["repeat"]))
    if not args.summary_only:
        if not args.resume and runs_path.exists():
            runs_path.rename(runs_path.with_suffix(f".{int(time.time())}.jsonl"))
            done = set()
        preimport()
        mats = args.materials or SETS[args.set]
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
            for rep in range(args.repeats):
                for mat in mats:
                    if (mat, rep) in done:
                        continue
                    row = one(mat, rep, Path(tmp), args.refs, args.old, args.new)
                    with open(runs_path, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
    write_summary(runs_path, args.old, args.new)


def _pair(row: dict) -> tuple[str | None, str | None]:
    """(old, new) numerics of a row of runs.jsonl."""
    return tuple((row.get(k) or {}).get("numerics") for k in ("old", "new"))  # type: ignore[return-value]


def one(mat: str, rep: int, tmp: Path, refs: list[Path], old: str = OLD, new: str = NEW) -> dict:
    from optiladder.engine.records import read_record

    row: dict = {"mat_id": mat, "repeat": rep, "start": datetime.now(UTC).isoformat(timespec="seconds")}
    recs = {}
    for kind, fn, num in (("old", run_old, old), ("new", run_new, new)):
        out = tmp / f"{mat}.{kind}.json.gz"
        load0 = os.getloadavg()[0]
        try:
            m = fn(mat, out, num)
        except RuntimeError as exc:
            log.error("%s", exc)
            row[kind] = {"error": str(exc)}
            continue
        rec = read_record(out)
        recs[kind] = rec
        m.update(
            numerics=num,
            seconds=rec["seconds"],
            phase_cpu=rec["provenance"].get("cpu_seconds"),
            load=(load0 + os.getloadavg()[0]) / 2,
        )
        row[kind] = m
        row.update(
            formula=rec["formula"],
            nsites=rec["nsites"],
            spacegroup=rec["spacegroup"],
            n_ibz_k=rec["n_ibz_k"],
            nbands=rec["nbands"],
        )
        log.info("%s rep %d %s: cpu %.1f s, phases %s", mat, rep, kind, m["cpu"], m["phase_cpu"])
    if len(recs) == 2:
        row["sc_new_vs_old"] = sc_table(recs["new"], recs["old"])
        row["gap_diff"] = abs(recs["new"]["gap_indirect"] - recs["old"]["gap_indirect"])
        ref = find_ref(mat, refs)
        if ref is not None:
            r = read_record(ref)
            row["ref"] = str(ref.relative_to(REPO) if ref.is_relative_to(REPO) else ref.name)
            row["sc_new_vs_ref"] = sc_table(recs["new"], r)
            row["ref_seconds"] = r.get("seconds")
        log.info("%s rep %d: min SC new vs old %.5f", mat, rep, min(row["sc_new_vs_old"].values()))
    return row


def _geo(xs: list[float]) -> float:
    import math

    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def write_summary(runs_path: Path, old: str = OLD, new: str = NEW) -> None:
    rows = [json.loads(x) for x in runs_path.read_text().splitlines()] if runs_path.exists() else []
    rows = [r for r in rows if "sc_new_vs_old" in r]
    others: dict[tuple, list[dict]] = {}
    for r in rows:
        if _pair(r) != (old, new):
            others.setdefault(_pair(r), []).append(r)
    rows = [r for r in rows if _pair(r) == (old, new)]
    by_mat: dict[str, list[dict]] = {}
    for r in rows:
        by_mat.setdefault(r["mat_id"], []).append(r)
    phases = ("gs", "nscf", "df")
    lines = [
        f"# Engine benchmark: numerics {new} (forked worker) vs {old} (fresh process)",
        "",
        f"Summary written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}"
        f" ({os.cpu_count()} cores, shared with the background campaign and other sessions: the 1-min load"
        " average is given per material; CPU time, not wall time, is the measure). Protocol gpaw-pbe-v1, one"
        f" BLAS/OpenMP thread. Old = a fresh `python` per job, numerics {old} (the campaign at the start"
        f" of issue 10); new = a child forked from a pre-imported process, numerics {new}. Each"
        " material: old, new, old, new, … (`repeats` pairs), CPU seconds = user + system of the job process"
        " (rusage via wait4, imports included); phase columns = the records' own per-phase CPU seconds"
        " (medians over repeats). SC = similarity coefficient of Im ε (trace and each of xx, yy, zz; IPA and"
        " RPA), min over all eight and all repeats.",
        "",
        "| material | formula | atoms | spg | k (IBZ) | bands | repeats | old gs/nscf/df CPU s | new gs/nscf/df CPU s"
        " | old job CPU s | new job CPU s | ratio old/new | old MB | new MB | min SC new vs old | min SC vs ref"
        " | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[float]] = {"small": [], "large": []}
    totals = {"small": [0.0, 0.0], "large": [0.0, 0.0]}
    for mat, rs in by_mat.items():
        r0 = rs[0]
        old_cpu = statistics.median(r["old"]["cpu"] for r in rs)
        new_cpu = statistics.median(r["new"]["cpu"] for r in rs)

        def ph(kind: str, rs: list[dict] = rs) -> str:
            vals = [r[kind].get("phase_cpu") or {} for r in rs]
            return "/".join(f"{statistics.median(v.get(p, float('nan')) for v in vals):.1f}" for p in phases)

        sc = min(min(r["sc_new_vs_old"].values()) for r in rs)
        scr = [min(r["sc_new_vs_ref"].values()) for r in rs if "sc_new_vs_ref" in r]
        g = "large" if r0["nsites"] >= 4 else "small"
        groups[g].append(old_cpu / new_cpu)
        totals[g][0] += old_cpu
        totals[g][1] += new_cpu
        load = statistics.mean((r["old"]["load"] + r["new"]["load"]) / 2 for r in rs)
        lines.append(
            f"| {mat} | {r0['formula']} | {r0['nsites']} | {r0['spacegroup']} | {r0['n_ibz_k']} | {r0['nbands']}"
            f" | {len(rs)} | {ph('old')} | {ph('new')} | {old_cpu:.1f} | {new_cpu:.1f} | {old_cpu / new_cpu:.2f}"
            f" | {max(r['old']['peak_mb'] for r in rs):.0f} | {max(r['new']['peak_mb'] for r in rs):.0f}"
            f" | {sc:.5f} | {min(scr):.4f} | {load:.1f} |"
            if scr
            else f"| {mat} | {r0['formula']} | {r0['nsites']} | {r0['spacegroup']} | {r0['n_ibz_k']}"
            f" | {r0['nbands']} | {len(rs)} | {ph('old')} | {ph('new')} | {old_cpu:.1f} | {new_cpu:.1f}"
            f" | {old_cpu / new_cpu:.2f} | {max(r['old']['peak_mb'] for r in rs):.0f}"
            f" | {max(r['new']['peak_mb'] for r in rs):.0f} | {sc:.5f} | – | {load:.1f} |"
        )
    lines.append("")
    for g, label in (("large", "4–6 atoms"), ("small", "1–3 atoms")):
        if groups[g]:
            o, n = totals[g]
            lines.append(
                f"- **{label}** ({len(groups[g])} materials): materials per CPU-hour new/old = {o / n:.2f}"
                f" (total job CPU {o:.0f} s old vs {n:.0f} s new); geometric mean of per-material ratios"
                f" {_geo(groups[g]):.2f}, range {min(groups[g]):.2f}–{max(groups[g]):.2f}."
            )
    if rows:
        worst = min(min(r["sc_new_vs_old"].values()) for r in rows)
        lines.append(
            f"- Same physics: minimum SC new vs old over every material, repeat, level and component: {worst:.5f}."
        )
    for (o, n), rs in sorted(others.items(), key=lambda kv: str(kv[0])):
        tot: dict[str, list[float]] = {}
        for r in rs:
            g = "4–6 atoms" if r["nsites"] >= 4 else "1–3 atoms"
            t = tot.setdefault(g, [0.0, 0.0, 0])
            t[0] += r["old"]["cpu"]
            t[1] += r["new"]["cpu"]
            t[2] += 1
        lines.append(
            f"- Other pair in runs.jsonl, not in the table: {n} vs {o}, "
            + "; ".join(
                f"{g}: {t[0] / t[1]:.2f}× over {t[2]} runs (sum of job CPU)" for g, t in sorted(tot.items())
            )
            + "."
        )
    missing = [m for m in SETS["all"] if m not in by_mat]
    if missing:
        lines += [
            "",
            f"Not yet measured ({len(missing)}): {', '.join(missing)}. Complete with"
            f" `OMP_NUM_THREADS=1 python bench/engine/run.py --resume --set all --repeats 2 --old {old} --new {new}"
            " --refs ../shared/data/campaign-extra`.",
        ]
    notes = HERE / "notes.md"  # the reading of these numbers, written by hand (kept across summaries)
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    (HERE / "results.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
