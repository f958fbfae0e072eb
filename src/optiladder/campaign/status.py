"""``campaign status``: jobs by state, cell size and split; core-hours spent; ETA from measured cost per cell size.

Cost per cell size (seconds of one core per material) is the median, for that number of atoms, of the campaign's
own finished attempts (wall time of the calculation process) pooled with the indexed records' calculation
seconds (e.g. the seed records, which have no attempts); sizes without any measurement are extrapolated with a power law
``t = a * nsites**b`` fitted to the measured medians, with ``b`` kept in [2, 4] (``b`` = 3 if only one size was
measured): the non-self-consistent step grows with (plane waves)³ × k-points (PROTOCOL.md), and the small cells
measured first flatten the fit (start-up overhead), so without the floor larger cells would be underestimated.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .queue import STATES, JobQueue, open_queue
from .stages import stage_table


@dataclass
class CampaignStatus:
    """Counts and costs of one campaign database (seconds are core-seconds: one core per job)."""

    name: str
    meta: dict[str, str]
    by_size: dict[int, dict[str, int]]
    by_split: dict[str, dict[str, int]]
    totals: dict[str, int]
    core_seconds: float
    attempts: int
    cost: CostModel
    remaining_core_seconds: float
    running: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    #: the claim order (:func:`optiladder.campaign.stages.stage_table`)
    stages: list[dict[str, Any]] = field(default_factory=list)
    #: (protocol, nsites) -> (median calculation seconds of the stored records, count): the records' own timings
    #: (one core each, so wall ≈ CPU seconds; gs + nscf + response)
    record_cost: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)
    #: (protocol, numerics, nsites) -> (median seconds, count, "CPU" or "wall"): the records' own per-phase CPU
    #: seconds (``provenance.cpu_seconds``) where they hold them, else their wall seconds; the numerics (how GPAW
    #: is driven) change the cost of the same physics ~2.5×, so they are told apart
    record_cpu: dict[tuple[str, str, int], tuple[float, int, str]] = field(default_factory=dict)

    def eta_seconds(self, workers: int) -> float:
        """Wall-clock seconds to finish the queue with ``workers`` single-core workers."""
        return self.remaining_core_seconds / max(1, workers)


#: smallest exponent of the extrapolation t = a * nsites**b (see the module docstring)
MIN_EXPONENT = 2.0


@dataclass(frozen=True)
class CostModel:
    """Core-seconds per material by cell size: measured medians, else ``a * nsites**b``."""

    medians: dict[int, tuple[float, int]]  # nsites -> (median seconds, number of measurements)
    a: float
    b: float

    def seconds(self, nsites: int) -> float:
        if nsites in self.medians:
            return self.medians[nsites][0]
        return self.a * max(nsites, 1) ** self.b


def cost_model(measured: dict[int, list[float]]) -> CostModel:
    """Fit the cost model to measured seconds per cell size (``{nsites: [seconds, ...]}``)."""
    med = {n: (float(np.median(v)), len(v)) for n, v in sorted(measured.items()) if v}
    good = {n: s for n, (s, _) in med.items() if n > 0 and s > 0}
    if len(good) >= 2:
        x, y = np.log(list(good)), np.log(list(good.values()))
        b = float(np.clip(np.polyfit(x, y, 1)[0], MIN_EXPONENT, 4.0))
        a = float(np.exp(np.mean(y - b * x)))
    elif good:
        n0, s0 = next(iter(good.items()))
        b, a = 3.0, s0 / n0**3
    else:
        b, a = 3.0, 60.0  # nothing measured: 1 minute × nsites³ (PROTOCOL.md order of magnitude)
    return CostModel(med, a, b)


def campaign_status(q: JobQueue, *, max_failures: int = 10) -> CampaignStatus:
    """Read the status of a campaign database (of the job kind it was made for: its ``kind`` meta key)."""
    from .kinds import get_kind

    kind = get_kind(q.meta().get("kind", "material"))
    jobs = q.jobs(kind=kind.name)
    attempts = q.attempts()
    now = q.now()
    by_size: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    by_split: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
    totals = dict.fromkeys(STATES, 0)
    nsites_of = {}
    for j in jobs:
        by_size[j["nsites"]][j["state"]] += 1
        by_split[j["split"] or "none"][j["state"]] += 1
        totals[j["state"]] += 1
        nsites_of[j["id"]] = j["nsites"]
    measured: dict[int, list[float]] = defaultdict(list)
    core = 0.0
    n_att = 0
    timed: set[str] = set()
    for a in attempts:
        if a["job_id"] not in nsites_of:
            continue  # dummy jobs
        n_att += 1
        if a["outcome"] == "running":
            core += max(0.0, now - (a["claimed_at"] or now))
        elif a["seconds"]:
            core += float(a["seconds"])
        if a["outcome"] == "done" and a["seconds"]:
            measured[nsites_of[a["job_id"]]].append(float(a["seconds"]))
            timed.add(a["job_id"])
    from_records: dict[int, list[float]] = defaultdict(list)
    by_protocol: dict[tuple[str, int], list[float]] = defaultdict(list)
    records = q.records_index()
    for r in records:
        if r["nsites"] and r["seconds"]:
            by_protocol[(r["protocol"] or "?", int(r["nsites"]))].append(float(r["seconds"]))
        if r["nsites"] and r["seconds"] and r["mat_id"] not in timed:
            from_records[int(r["nsites"])].append(float(r["seconds"]))
    for (
        n,
        v,
    ) in from_records.items():  # pooled with the campaign's own wall times (seed records have no attempts)
        measured[n] = measured.get(n, []) + v
    cost = cost_model(measured)
    remaining = 0.0
    running = []
    for j in jobs:
        if j["state"] == "queued":
            remaining += cost.seconds(j["nsites"])
        elif j["state"] == "running":
            elapsed = now - (j["claimed_at"] or now)
            remaining += max(0.0, cost.seconds(j["nsites"]) - elapsed)
            running.append({**j, "elapsed": elapsed, "lease_left": (j["lease_expires"] or now) - now})
    failures = [j for j in jobs if j["state"] == "failed" or (j["state"] == "queued" and j["error"])]
    failures.sort(key=lambda j: -(j["finished_at"] or 0))
    return CampaignStatus(
        name=q.name,
        meta=q.meta(),
        by_size=dict(sorted(by_size.items())),
        by_split=dict(sorted(by_split.items())),
        totals=totals,
        core_seconds=core,
        attempts=n_att,
        cost=cost,
        remaining_core_seconds=remaining,
        running=running,
        failures=failures[:max_failures] if max_failures >= 0 else failures,
        stages=stage_table(jobs) if kind.staged else [],
        record_cost={k: (float(np.median(v)), len(v)) for k, v in sorted(by_protocol.items())},
        record_cpu=record_cpu_cost(records),
    )


def _record_timing(path: str) -> tuple[str, float | None, float | None]:
    """(numerics name, CPU seconds, wall seconds) of the calculation phases of one stored record file."""
    import gzip
    import json

    from ..engine.numerics import record_numerics

    try:
        raw = (
            gzip.decompress(open(path, "rb").read()) if str(path).endswith(".gz") else open(path, "rb").read()
        )
        rec = json.loads(raw)
    except (OSError, ValueError):
        return "?", None, None
    cpu = (rec.get("provenance") or {}).get("cpu_seconds")
    wall = rec.get("seconds")
    total = lambda d: float(sum(d.values())) if isinstance(d, dict) and d else None  # noqa: E731
    return record_numerics(rec), total(cpu), total(wall)


def record_cpu_cost(records: list[dict[str, Any]]) -> dict[tuple[str, str, int], tuple[float, int, str]]:
    """Median seconds per material by (protocol, numerics, cell size) from the records' own timings: CPU seconds
    of the phases where every record of the group holds them, else wall seconds (older records)."""
    groups: dict[tuple[str, str, int], list[tuple[float | None, float | None]]] = defaultdict(list)
    for r in records:
        if not r.get("nsites") or not r.get("path"):
            continue
        num, cpu, wall = _record_timing(r["path"])
        groups[(r.get("protocol") or "?", num, int(r["nsites"]))].append((cpu, wall))
    out = {}
    for k, v in sorted(groups.items()):
        if all(c is not None for c, _ in v):
            out[k] = (float(np.median([c for c, _ in v])), len(v), "CPU")
        elif any(w is not None for _, w in v):
            w = [w for _, w in v if w is not None]
            out[k] = (float(np.median(w)), len(w), "wall")
    return out


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {s:02d}s"


def format_status(st: CampaignStatus, *, workers: int = 1) -> str:
    """A plain-text report (tables by cell size and by split, cost, ETA, running jobs, recent failures)."""
    lines = [
        f"{st.name}: {st.meta.get('kind', 'material')} jobs, protocol {st.meta.get('protocol', '?')},"
        f" store {st.meta.get('store', '?')}",
        "",
        f"{'atoms':>6} {'done':>6} {'running':>8} {'queued':>7} {'failed':>7} {'total':>6}  {'s/material':>10}",
    ]
    for n, c in st.by_size.items():
        med = st.cost.medians.get(n)
        if med:
            cs = f"{med[0]:10.0f}"
        else:
            cs = f"{'~' + format(st.cost.seconds(n), '.0f') if n > 0 else '':>10}"  # 0: unreadable inputs
        lines.append(
            f"{n:>6} {c['done']:>6} {c['running']:>8} {c['queued']:>7} {c['failed']:>7} {sum(c.values()):>6}  {cs}"
        )
    t = st.totals
    lines.append(
        f"{'all':>6} {t['done']:>6} {t['running']:>8} {t['queued']:>7} {t['failed']:>7} {sum(t.values()):>6}"
    )
    lines += ["", f"{'split':>10} {'done':>6} {'running':>8} {'queued':>7} {'failed':>7} {'total':>6}"]
    for name, c in st.by_split.items():
        lines.append(
            f"{name:>10} {c['done']:>6} {c['running']:>8} {c['queued']:>7} {c['failed']:>7} {sum(c.values()):>6}"
        )
    if st.stages:
        lines += [
            "",
            "stages (claim order):",
            f"  {'stage':<8} {'done':>6} {'running':>8} {'queued':>7} {'failed':>7}  what",
        ]
        for row in st.stages:
            what = row["description"]
            if row.get("quota"):
                what += " (now: " + ", ".join(f"{s} {d}/{n}" for s, (d, n) in row["quota"].items()) + ")"
            lines.append(
                f"  {row['stage']:<8} {row['done']:>6} {row['running']:>8} {row['queued']:>7} {row['failed']:>7}  {what}"
            )
    if st.record_cpu:
        lines += [
            "",
            "cost per material from the records' own timings by protocol, numerics and cell size (median seconds of"
            " the calculation phases on one core: CPU where the records hold it, else wall):",
        ]
        for (proto, num, n), (sec, cnt, what) in st.record_cpu.items():
            lines.append(
                f"  {proto:<17} {n:>2} atoms: {sec:8.1f} {what} s  ({cnt} records, {3600 / max(sec, 1e-9):.0f} per"
                f" core-hour; numerics {num})"
            )
    elif st.record_cost:
        lines += [
            "",
            "cost per material from the records' own timings (median calculation seconds, one core):",
        ]
        for (proto, n), (sec, cnt) in st.record_cost.items():
            lines.append(
                f"  {proto:<17} {n:>2} atoms: {sec:8.1f} s  ({cnt} records, {3600 / sec:.0f} per core-hour)"
            )
    lines += [
        "",
        f"core-hours spent: {st.core_seconds / 3600:.2f} ({st.attempts} attempts)",
        f"remaining: ~{st.remaining_core_seconds / 3600:.1f} core-hours; ETA {_hms(st.eta_seconds(workers))} "
        f"with {workers} worker(s)",
    ]
    if st.running:
        lines += ["", "running:"]
        for j in st.running:
            lines.append(
                f"  {j['id']} ({j['nsites']} atoms) on {j['owner_host']}:{j['owner_pid']} for {_hms(j['elapsed'])}, "
                f"attempt {j['attempts']}, lease {'expired' if j['lease_left'] < 0 else 'ok'}"
            )
    if st.failures:
        lines += ["", "failures (latest first):"]
        for j in st.failures:
            kind = (
                "permanent" if j["permanent"] else f"transient, attempt {j['attempts']}/{j['max_attempts']}"
            )
            state = "" if j["state"] == "failed" else " [will retry]"
            lines.append(f"  {j['error']} ({kind}){state}")
    return "\n".join(lines)


def campaign_failures(db: str) -> dict[str, Any]:
    """``{"db": name, "failed": n, "permanent": n, "by_reason": {reason kind: n}, "jobs": [(id, error)]}``."""
    with open_queue(db, create=False) as q:
        failed = q.jobs(state="failed")
        name = q.name
    reasons: Counter[str] = Counter()
    for j in failed:
        reasons[_reason_kind(j["error"] or "")] += 1
    return {
        "db": name,
        "failed": len(failed),
        "permanent": sum(1 for j in failed if j["permanent"]),
        "by_reason": dict(reasons.most_common()),
        "jobs": [(j["id"], j["error"]) for j in failed],
    }


def _reason_kind(error: str) -> str:
    text = error.partition(": ")[2] or error
    for key, label in (
        ("metallic", "metallic (gap below the protocol's minimum)"),
        ("no GPAW PAW setup", "unsupported element"),
        ("timeout", "timeout"),
        ("lease expired", "worker lost"),
        ("died", "calculation process died"),
        ("overlapping", "bad structure"),
        ("partial occupancies", "bad structure"),
        ("exceed the limit", "too many atoms"),
        ("invalid record", "invalid record in the store"),
    ):
        if key in text:
            return label
    return text.split("(")[0].strip()[:60] or "unknown"
