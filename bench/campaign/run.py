"""Campaign benchmark: throughput by cell size and the job queue's overhead per job.

1. **Throughput** — materials per core-hour by cell size, from the calculation seconds in the store's records
   (``seconds`` = ground state + nscf + response, one core each) and, if a campaign database is given, from the
   wall seconds of its finished attempts (which include the calculation process's start-up).
2. **Queue overhead** — one job's full round trip through the queue as a campaign task does it: ``claim`` (with
   the reaping of expired leases) → ``heartbeat`` → ``complete`` (with the record's index row), measured on
   synthetic jobs in a fresh SQLite file and, if available, a fresh PostgreSQL database; reported per job and as a
   fraction of the median calculation time. A campaign task also sends a heartbeat every lease/6 s (20 s by
   default); that cost per calculation-hour is reported as well.
3. **End-to-end** (``--real``) — a small real campaign (``test`` protocol, two 1-atom cells, one worker) through the
   CLI: per-job wall time vs. the record's own calculation seconds (task + process start-up overhead).

    python bench/campaign/run.py [--store dataset/records] [--db campaign.db] [--pg URL] [--real]

Writes bench/campaign/results.md and results.json. ``--pg`` defaults to $OPTILADDER_TEST_PG_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def throughput_from_store(store: Path) -> dict[int, dict]:
    """{nsites: {n, median_s, p90_s, per_core_hour}} from the records' calculation seconds."""
    from optiladder.data.store import Store

    by: dict[int, list[float]] = defaultdict(list)
    for row in Store(store).index():
        if row["seconds"]:
            by[row["nsites"]].append(row["seconds"])
    return {n: _summ(v) for n, v in sorted(by.items())}


def throughput_from_db(db: str) -> dict[int, dict]:
    """{nsites: ...} from the wall seconds of a campaign's finished attempts."""
    from optiladder.campaign.queue import open_queue

    with open_queue(db, create=False) as q:
        nsites = {j["id"]: j["nsites"] for j in q.jobs()}
        by: dict[int, list[float]] = defaultdict(list)
        for a in q.attempts():
            if a["outcome"] == "done" and a["seconds"] and a["job_id"] in nsites:
                by[nsites[a["job_id"]]].append(a["seconds"])
    return {n: _summ(v) for n, v in sorted(by.items())}


def _summ(v: list[float]) -> dict:
    v = sorted(v)
    med = statistics.median(v)
    return {
        "n": len(v),
        "median_s": round(med, 2),
        "p90_s": round(v[min(len(v) - 1, int(0.9 * len(v)))], 2),
        "per_core_hour": round(3600.0 / med, 1),
    }


def queue_overhead(url: str, n: int = 500) -> dict:
    """Per-job seconds of claim → heartbeat → complete on a fresh database (one process, synthetic jobs)."""
    from optiladder.campaign.dummy import add_dummy_jobs
    from optiladder.campaign.queue import open_queue

    index = {
        "split": "train",
        "nsites": 3,
        "formula": "X",
        "spacegroup": 1,
        "gap": 1.0,
        "gap_direct": 1.0,
        "seconds": 50.0,
        "protocol": "bench",
        "path": "/x",
        "sha256": "0" * 64,
    }
    with open_queue(url) as q:
        add_dummy_jobs(q, n)
        claim, beat, done, total = [], [], [], []
        while True:
            t0 = time.perf_counter()
            lease = q.claim(lease_seconds=120, kind="dummy")
            t1 = time.perf_counter()
            if lease is None:
                break
            assert q.heartbeat(lease.token, 120)
            t2 = time.perf_counter()
            assert q.complete(lease.token, dict(index, mat_id=lease.job.id), seconds=50.0)
            t3 = time.perf_counter()
            claim.append(t1 - t0)
            beat.append(t2 - t1)
            done.append(t3 - t2)
            total.append(t3 - t0)
    ms = lambda v: round(1000 * statistics.median(v), 3)  # noqa: E731
    return {
        "jobs": len(total),
        "claim_ms": ms(claim),
        "heartbeat_ms": ms(beat),
        "complete_ms": ms(done),
        "round_trip_ms": ms(total),
        "round_trip_p95_ms": round(1000 * sorted(total)[int(0.95 * len(total))], 3),
    }


def _fresh_pg(admin: str):
    import psycopg

    name = f"optiladder_bench_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{admin.rpartition('/')[0]}/{name}", name


def _drop_pg(admin: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def real_run() -> dict:
    """A tiny real campaign through the CLI (test protocol, He and Ne, 1 worker): wall vs calculation seconds."""
    from optiladder.campaign.queue import open_queue
    from optiladder.engine.records import read_record

    src = REPO / "tests" / "campaign" / "fixtures" / "structures"
    tmp = Path(tempfile.mkdtemp(prefix="optiladder-bench-"))
    try:
        inputs = tmp / "in"
        inputs.mkdir()
        for name in ("agm004442529.json", "agm004442517.json"):
            shutil.copy(src / name, inputs)
        cli = Path(sys.executable).with_name("optiladder")
        cmd = [str(cli), "campaign", "run", str(inputs), "--protocol", "test", "--db", str(tmp / "c.db")]
        cmd += [
            "--store",
            str(tmp / "store"),
            "--workdir",
            str(tmp / "work"),
            "--workers",
            "1",
            "--no-progress",
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        t0 = time.time()
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=tmp)
        wall = time.time() - t0
        rows = []
        with open_queue(tmp / "c.db", create=False) as q:
            for a in q.attempts():
                if a["outcome"] == "done":
                    rec = read_record(tmp / "store" / f"{a['job_id']}.json.gz")
                    calc = sum(rec["seconds"].values())
                    rows.append(
                        {"mat_id": a["job_id"], "attempt_s": round(a["seconds"], 2), "calc_s": round(calc, 2)}
                    )
        return {"campaign_wall_s": round(wall, 1), "jobs": rows}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, default=REPO / "dataset" / "records")
    p.add_argument("--db", default=None, help="campaign database for measured attempt times")
    p.add_argument("--pg", default=os.environ.get("OPTILADDER_TEST_PG_URL"), help="PostgreSQL admin URL")
    p.add_argument("--jobs", type=int, default=500, help="synthetic jobs per queue measurement")
    p.add_argument("--real", action="store_true", help="also run a tiny real campaign (test protocol)")
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args()

    res: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min_at_start": load_average(),
        "store": str(args.store),
    }
    res["throughput_records"] = throughput_from_store(args.store)
    if args.db:
        res["throughput_campaign"] = throughput_from_db(args.db)
    all_secs = []
    from optiladder.data.store import Store

    all_secs = [r["seconds"] for r in Store(args.store).index() if r["seconds"]]
    median_calc = statistics.median(all_secs)
    smallest = res["throughput_records"][min(res["throughput_records"])]["median_s"]
    res["median_calc_s"] = round(median_calc, 2)

    overhead = {}
    with tempfile.TemporaryDirectory() as tmp:
        overhead["sqlite"] = queue_overhead(str(Path(tmp) / "bench.db"), args.jobs)
    if args.pg:
        url, name = _fresh_pg(args.pg)
        try:
            overhead["postgresql"] = queue_overhead(url, args.jobs)
        finally:
            _drop_pg(args.pg, name)
    for o in overhead.values():
        o["fraction_of_median_calc"] = o["round_trip_ms"] / 1000 / median_calc
        o["fraction_of_smallest_cells"] = o["round_trip_ms"] / 1000 / smallest
        # heartbeats every 20 s (lease 120 s / 6) during one hour of calculation
        o["heartbeat_s_per_calc_hour"] = round(180 * o["heartbeat_ms"] / 1000, 4)
    res["queue_overhead"] = overhead
    if args.real:
        res["real_run"] = real_run()

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out / "results.md").write_text(report(res))
    sys.stdout.write(report(res))
    return 0


def report(res: dict) -> str:
    lines = [
        "# Campaign benchmark",
        "",
        f"{res['date']} on {res['host']} ({res['cpu']}); 1-min load average at start {res['load_average_1min_at_start']}"
        " (a background campaign may share the cores). Reproduce: `python bench/campaign/run.py --real`"
        " (after `source .ci/postgres.sh` for the PostgreSQL column).",
        "",
        "## Throughput by cell size (one core per material)",
        "",
        f"From the calculation seconds in the records of `{res['store']}` (gpaw-pbe-v1; ground state + nscf + response):",
        "",
        "| atoms | records | median s | p90 s | materials per core-hour |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, r in res["throughput_records"].items():
        lines.append(f"| {n} | {r['n']} | {r['median_s']} | {r['p90_s']} | {r['per_core_hour']} |")
    if res.get("throughput_campaign"):
        lines += [
            "",
            "From the campaign database's finished attempts (wall time of the calculation process, start-up included):",
            "",
            "| atoms | attempts | median s | p90 s | materials per core-hour |",
            "|---:|---:|---:|---:|---:|",
        ]
        for n, r in res["throughput_campaign"].items():
            lines.append(f"| {n} | {r['n']} | {r['median_s']} | {r['p90_s']} | {r['per_core_hour']} |")
    lines += [
        "",
        "## Queue overhead per job",
        "",
        "claim (with reaping of expired leases) → heartbeat → complete (with the index row), median over "
        f"synthetic jobs, one process; median calculation time {res['median_calc_s']} s over all records.",
        "",
        "| backend | jobs | claim ms | heartbeat ms | complete ms | round trip ms (p95) | fraction of median calc |"
        " fraction for 1-atom cells | heartbeat s per calc-hour |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, o in res["queue_overhead"].items():
        lines.append(
            f"| {name} | {o['jobs']} | {o['claim_ms']} | {o['heartbeat_ms']} | {o['complete_ms']} | "
            f"{o['round_trip_ms']} ({o['round_trip_p95_ms']}) | {o['fraction_of_median_calc']:.1e} | "
            f"{o['fraction_of_smallest_cells']:.1e} | {o['heartbeat_s_per_calc_hour']} |"
        )
    if "postgresql" not in res["queue_overhead"]:
        lines.append("\n(PostgreSQL not measured: no --pg URL / OPTILADDER_TEST_PG_URL.)")
    if res.get("real_run"):
        rr = res["real_run"]
        lines += [
            "",
            "## End-to-end: a tiny real campaign (`test` protocol, 1 worker)",
            "",
            f"Whole CLI run (start-up of Dask included): {rr['campaign_wall_s']} s.",
            "",
            "| material | attempt wall s | calculation s (record) | overhead s |",
            "|---|---:|---:|---:|",
        ]
        for j in rr["jobs"]:
            lines.append(
                f"| {j['mat_id']} | {j['attempt_s']} | {j['calc_s']} | {round(j['attempt_s'] - j['calc_s'], 2)} |"
            )
        lines += [
            "",
            "The per-job overhead of a real task is dominated by the calculation process's start-up (Python,"
            " pymatgen, GPAW imports, symmetrization), not by the queue.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
