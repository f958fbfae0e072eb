"""The campaign's order as stages: which cells are claimed first, and why.

Every claim about larger cells rests on evaluation cells of that size, so the queue is worked in stages
(lower priority number first; within a stage by the ``--order`` file's rank, then the stage's own rank, then
cell size):

1. ``eval-4`` — 4-atom validation and test cells, until the store holds ``QUOTA`` of each split
   (≥ 60 test, ≥ 40 validation); the split whose quota is met leaves the stage.
2. ``small`` — the remaining cells of ≤ 3 atoms (all splits).
3. ``train-4`` — training cells of 4 atoms, most diverse first: a greedy order that each time takes the cell
   adding the most elements, then prototypes, not yet in the done training records or earlier in the order.
4. ``rest`` — everything else, smallest first (4-atom evaluation cells beyond the quota, then 5, 6, … atoms).

:func:`restage` recomputes the stages of the queued jobs from the database (done records, queued jobs); the
campaign calls it when it starts and after each finished job (``diversity=False`` then: the quota only).
A ranked id list (``campaign run --order FILE``, e.g. written by a model-based acquisition command) ranks jobs
within their stage; the campaign only reads the file, it never imports models.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .queue import JobQueue

log = logging.getLogger(__name__)

#: done 4-atom cells per evaluation split before stage eval-4 ends for that split
QUOTA: dict[str, int] = {"test": 60, "validation": 40}
STAGES: tuple[tuple[str, int, str], ...] = (
    ("eval-4", 1, "4-atom validation and test cells until ≥ 60 test and ≥ 40 validation are done"),
    ("small", 2, "remaining cells of ≤ 3 atoms"),
    ("train-4", 3, "training cells of 4 atoms, most diverse (elements, prototypes) first"),
    ("rest", 4, "everything else, smallest first"),
)
PRIORITY = {name: prio for name, prio, _ in STAGES}
_ELEMENT = re.compile(r"([A-Z][a-z]?)")


def elements_of(formula: str | None) -> frozenset[str]:
    """Element symbols of a formula (``"KLiH2"`` → {K, Li, H})."""
    return frozenset(_ELEMENT.findall(formula or ""))


@dataclass
class StagePlan:
    """The stage of every job and the evaluation quota's progress."""

    stage_of: dict[str, str] = field(default_factory=dict)
    rank_of: dict[str, float] = field(default_factory=dict)
    eval_done: dict[str, int] = field(default_factory=dict)


def _prototypes() -> dict[str, str]:
    """Alexandria prototype id per material id (empty for inputs that are not in the bundled list)."""
    from ..structures import alexandria

    return {e["mat_id"]: e.get("prototype_id") or "" for e in alexandria()}


def diversity_order(
    candidates: list[dict], seen_elements: set[str], seen_protos: set[str], protos: dict[str, str]
) -> list[str]:
    """Greedy diversity order of jobs (dicts with ``id``, ``formula``, ``volume``): each step takes the job with
    the most elements not seen yet, then a new prototype, then the smallest volume; returns the ids."""
    seen_e, seen_p = set(seen_elements), set(seen_protos)
    left = {
        c["id"]: (elements_of(c["formula"]), protos.get(c["id"], ""), c.get("volume") or 0.0)
        for c in candidates
    }

    def key(i: str) -> tuple:
        els, proto, volume = left[i]
        old_proto = (proto in seen_p) if proto else True
        return (-len(els - seen_e), old_proto, volume, i)

    out: list[str] = []
    while left:
        best = min(left, key=key)
        els, proto, _ = left.pop(best)
        seen_e |= els
        if proto:
            seen_p.add(proto)
        out.append(best)
    return out


def plan_stages(jobs: list[dict], quota: dict[str, int] | None = None, diversity: bool = True) -> StagePlan:
    """The stage of every job (see the module docstring). ``jobs``: rows of :meth:`JobQueue.jobs`."""
    quota = QUOTA if quota is None else quota
    plan = StagePlan()
    done4 = Counter(j["split"] for j in jobs if j["nsites"] == 4 and j["state"] == "done")
    plan.eval_done = {s: done4.get(s, 0) for s in quota}
    open_eval = {s for s, n in quota.items() if done4.get(s, 0) < n}
    train4: list[dict] = []
    for j in jobs:
        n, split = j["nsites"], j["split"]
        if n == 4 and split in quota:
            stage = "eval-4" if split in open_eval or j["state"] == "done" else "rest"
        elif 0 < n <= 3:
            stage = "small"
        elif n == 4 and split == "train":
            stage = "train-4"
            if j["state"] == "queued":
                train4.append(j)
        else:
            stage = "rest"
        plan.stage_of[j["id"]] = stage
    if diversity and train4:
        protos = _prototypes()
        done_train = [j for j in jobs if j["state"] == "done" and j["split"] == "train"]
        seen_e = set().union(*(elements_of(j["formula"]) for j in done_train)) if done_train else set()
        seen_p = {protos.get(j["id"], "") for j in done_train} - {""}
        for r, job_id in enumerate(diversity_order(train4, seen_e, seen_p, protos)):
            plan.rank_of[job_id] = float(r)
    return plan


def restage(q: JobQueue, *, quota: dict[str, int] | None = None, diversity: bool = True) -> StagePlan:
    """Recompute and store the stage, priority and (with ``diversity``) rank of every material job."""
    jobs = q.jobs(kind="material")
    plan = plan_stages(jobs, quota, diversity)
    rows = []
    for j in jobs:
        stage = plan.stage_of[j["id"]]
        rank = plan.rank_of.get(j["id"], j["rank"] if not diversity else None)
        if (j["stage"], j["priority"], j["rank"]) != (stage, PRIORITY[stage], rank):
            rows.append((j["id"], stage, PRIORITY[stage], rank))
    q.set_stages(rows)
    return plan


def read_order(path: str | Path, known: set[str] | None = None) -> list[str]:
    """A ranked id list: one material id per line (first whitespace- or comma-separated field), ``#`` comments
    and blank lines ignored, duplicates keep their first rank. Unknown ids are logged (``file:line: …``) and
    skipped. Raises ``ValueError("<file>: problem")`` for an unreadable or empty file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the order file ({exc})") from None
    ids: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        job_id = re.split(r"[\s,]+", line)[0]
        if known is not None and job_id not in known:
            log.warning("%s:%d: %s is not a job of this campaign (skipped)", path, n, job_id)
            continue
        if job_id not in seen:
            seen.add(job_id)
            ids.append(job_id)
    if not ids:
        raise ValueError(f"{path}: no known material ids in the order file")
    return ids


def stage_table(jobs: list[dict], quota: dict[str, int] | None = None) -> list[dict]:
    """Per stage (in claim order): name, description, counts by state, and for eval-4 the quota progress."""
    quota = QUOTA if quota is None else quota
    rows = []
    for name, prio, desc in STAGES:
        counts = Counter(j["state"] for j in jobs if (j["stage"] or "") == name)
        rows.append(
            {
                "stage": name,
                "priority": prio,
                "description": desc,
                **{s: counts.get(s, 0) for s in ("done", "running", "queued", "failed")},
            }
        )
    unstaged = Counter(j["state"] for j in jobs if not j["stage"])
    if unstaged:
        rows.append(
            {
                "stage": "(none)",
                "priority": None,
                "description": "not staged yet",
                **{s: unstaged.get(s, 0) for s in ("done", "running", "queued", "failed")},
            }
        )
    done4 = Counter(j["split"] for j in jobs if j["nsites"] == 4 and j["state"] == "done")
    rows[0]["quota"] = {s: (done4.get(s, 0), n) for s, n in quota.items()}
    return rows
