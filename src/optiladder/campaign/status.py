"""``campaign status``: jobs by state, cell size and split; core-hours spent; ETA from the per-structure cost model.

The ETA prices every queued or running job with the per-structure cost model of the records' own timings
(:func:`optiladder.data.costs.fit_costs`: ln CPU seconds on ln n_ibz_k, ln nbands and ln V, for the database's
protocol and the numerics the queue runs with) and the job's features from the bundled table
(:func:`optiladder.data.costs.bundled_features`). A job without table features (a structure of one's own) or a
protocol/numerics without a fitted model is priced by the cost per cell size below.

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

from ..data import costs as pcosts
from ..data.costs import MIN_EXPONENT, SizeCosts, size_costs  # noqa: F401  (MIN_EXPONENT: its earlier home)
from .queue import STATES, JobQueue, open_queue
from .stages import stage_table

#: the per-size model (kept under its earlier names: :class:`optiladder.data.costs.SizeCosts`)
CostModel = SizeCosts
cost_model = size_costs


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
    #: the per-structure cost model of the records' own timings (:func:`optiladder.data.costs.fit_costs`)
    model: pcosts.CostModel | None = None
    #: (protocol, numerics) the ETA is priced for, and why a fallback was taken ("" when none)
    priced_as: tuple[str, str] | None = None
    model_note: str = ""
    #: queued/running jobs priced by the per-structure model and by the per-size medians
    priced: dict[str, int] = field(default_factory=dict)
    #: nsites -> (median predicted seconds, jobs) of the queued/running jobs the per-structure model priced
    predicted_by_size: dict[int, tuple[float, int]] = field(default_factory=dict)
    #: what the per-size medians alone would say remains (core-seconds), for comparison
    remaining_median_core_seconds: float = 0.0

    def eta_seconds(self, workers: int) -> float:
        """Wall-clock seconds to finish the queue with ``workers`` single-core workers."""
        return self.remaining_core_seconds / max(1, workers)


def campaign_status(q: JobQueue, *, max_failures: int = 10, numerics: str | None = None) -> CampaignStatus:
    """Read the status of a campaign database (of the job kind it was made for: its ``kind`` meta key);
    ``numerics``: how the queue's jobs will be computed (default: the engine's default), for the ETA."""
    from ..engine.numerics import DEFAULT_NUMERICS
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
    cost = size_costs(measured)
    timings = _timings(records)
    model = pcosts.fit_costs(timings)
    protocol = q.meta().get("protocol") or kind.protocol
    numerics = numerics or DEFAULT_NUMERICS
    group, note = _exact_group(model, protocol, numerics)
    try:
        feats = pcosts.bundled_features(protocol) if group is not None else {}
    except ValueError:  # an unknown protocol name
        feats = {}
    if group is not None and not feats:
        note = f"no bundled features for {protocol}'s k-density and bands"
    remaining = remaining_med = 0.0
    running = []
    priced = {"model": 0, "median": 0}
    predicted: dict[int, list[float]] = defaultdict(list)
    for j in jobs:
        if j["state"] not in ("queued", "running"):
            continue
        med = cost.seconds(j["nsites"])
        f = feats.get(j["id"])
        if f is not None:
            sec = float(group.seconds(f, j["nsites"]))
            priced["model"] += 1
            predicted[j["nsites"]].append(sec)
        else:
            sec = med
            priced["median"] += 1
        elapsed = 0.0
        if j["state"] == "running":
            elapsed = now - (j["claimed_at"] or now)
            running.append({**j, "elapsed": elapsed, "lease_left": (j["lease_expires"] or now) - now})
        remaining += max(0.0, sec - elapsed)
        remaining_med += max(0.0, med - elapsed)
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
        record_cpu=record_cpu_cost(records, timings=timings),
        model=model,
        priced_as=(protocol, numerics),
        model_note=note,
        priced=priced,
        predicted_by_size={n: (float(np.median(v)), len(v)) for n, v in sorted(predicted.items())},
        remaining_median_core_seconds=remaining_med,
    )


def _exact_group(model: pcosts.CostModel, protocol: str | None, numerics: str):
    """The fitted group of exactly (protocol, numerics) (a model of other numerics would misprice the queue
    ~2.5×: the per-size medians price it then), and why not."""
    g = model.groups.get((protocol or "?", numerics))
    if g is None:
        return None, f"no {protocol}/{numerics} records"
    if g.coef is None:
        return None, f"{protocol}/{numerics}: {g.note}"
    return g, ""


def _timings(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timing rows (:func:`optiladder.data.costs.read_timing`) of indexed records, with the index's protocol
    and cell size (the index is the source of truth; the light read does not validate)."""
    out = []
    for r in records:
        if not r.get("nsites") or not r.get("path"):
            continue
        t = pcosts.read_timing(r["path"])
        if t is None:
            continue
        out.append(
            {**t, "protocol": r.get("protocol") or t.get("protocol") or "?", "nsites": int(r["nsites"])}
        )
    return out


def record_cpu_cost(
    records: list[dict[str, Any]], *, timings: list[dict[str, Any]] | None = None
) -> dict[tuple[str, str, int], tuple[float, int, str]]:
    """Median seconds per material by (protocol, numerics, cell size) from the records' own timings: CPU seconds
    of the phases where every record of the group holds them, else wall seconds (older records). ``timings``:
    the rows :func:`_timings` read already (else they are read from the records' files)."""
    groups: dict[tuple[str, str, int], list[tuple[float | None, float | None]]] = defaultdict(list)
    for t in _timings(records) if timings is None else timings:
        groups[(t["protocol"], t["numerics"], int(t["nsites"]))].append((t["cpu"], t["wall"]))
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
        f"{'atoms':>6} {'done':>6} {'running':>8} {'queued':>7} {'failed':>7} {'total':>6}  {'s/material':>10}"
        f"  {'predicted':>9}",
    ]
    for n, c in st.by_size.items():
        med = st.cost.medians.get(n)
        if med:
            cs = f"{med[0]:10.0f}"
        else:
            cs = f"{'~' + format(st.cost.seconds(n), '.0f') if n > 0 else '':>10}"  # 0: unreadable inputs
        pred = st.predicted_by_size.get(n)
        ps = f"{pred[0]:9.0f}" if pred else f"{'':>9}"
        lines.append(
            f"{n:>6} {c['done']:>6} {c['running']:>8} {c['queued']:>7} {c['failed']:>7} {sum(c.values()):>6}  {cs}"
            f"  {ps}".rstrip()
        )
    if st.predicted_by_size:
        lines.append(
            "(s/material: median per cell size of the measured seconds; predicted: median of the per-structure"
            " model over the cell size's queued and running jobs)"
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
    if st.model is not None and st.model.groups:
        lines += [
            "",
            "per-structure cost model from the records' own timings (ln s = c + a·ln n_ibz_k + b·ln nbands + d·ln V;"
            " rms and leave-one-out rms in ln s beside the per-size median's):",
        ]
        lines += [f"  {d}" for d in st.model.describe()]
    lines += ["", f"core-hours spent: {st.core_seconds / 3600:.2f} ({st.attempts} attempts)"]
    n_model, n_med = st.priced.get("model", 0), st.priced.get("median", 0)
    if n_model:
        proto, num = st.priced_as or ("?", "?")
        how = f"{n_model} jobs by the per-structure model of {proto}/{num}"
        how += f", {n_med} by the per-size medians" if n_med else ""
        how += f"; per-size medians alone: ~{st.remaining_median_core_seconds / 3600:.1f} core-hours"
    else:
        how = "per-size medians" + (f": {st.model_note}" if st.model_note else "")
    lines.append(
        f"remaining: ~{st.remaining_core_seconds / 3600:.1f} core-hours ({how}); "
        f"ETA {_hms(st.eta_seconds(workers))} with {workers} worker(s)"
    )
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
