"""Dataset statistics: records by split, cell size, protocol (physics), numerics and level; excluded materials
(plus a campaign's failures if given)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..targets import LEVELS
from .store import Store


@dataclass
class DatasetStats:
    """Counts of the valid records of a store (and of failures, if a campaign database was given)."""

    root: Path
    n: int
    by_split: dict[str, int]
    by_size: dict[int, dict[str, int]]
    by_protocol: dict[str, int]
    by_level: dict[str, int]
    invalid: list[str]
    by_numerics: dict[str, int] = field(default_factory=dict)
    #: excluded materials present in the store: id → reason (kept on disk, never trained or evaluated on)
    excluded: dict[str, str] = field(default_factory=dict)
    failures: dict[str, Any] = field(default_factory=dict)


def dataset_stats(store: Store, failures: dict[str, Any] | None = None) -> DatasetStats:
    """Count the store's valid records; ``failures``: a campaign's failed jobs
    (:func:`optiladder.campaign.status.campaign_failures`), shown as they are."""
    store.errors = []
    by_split: Counter[str] = Counter()
    by_size: dict[int, Counter[str]] = defaultdict(Counter)
    by_protocol: Counter[str] = Counter()
    by_level: Counter[str] = Counter()
    by_numerics: Counter[str] = Counter()
    excluded: dict[str, str] = {}
    n = 0
    for row in store.index():
        n += 1
        by_split[row["split"]] += 1
        by_size[row["nsites"]][row["split"]] += 1
        by_protocol[row["protocol"] or "?"] += 1
        by_numerics[row["numerics"]] += 1
        if row["excluded"]:
            excluded[row["mat_id"]] = row["excluded"]
    for lv in LEVELS:  # every valid record holds both levels (validated on read)
        by_level[lv] = n
    st = DatasetStats(
        root=store.root,
        n=n,
        by_split=dict(sorted(by_split.items())),
        by_size={k: dict(v) for k, v in sorted(by_size.items())},
        by_protocol=dict(by_protocol),
        by_level=dict(by_level),
        invalid=list(store.errors),
        by_numerics=dict(by_numerics),
        excluded=excluded,
    )
    if failures:
        st.failures = failures
    return st


def format_stats(st: DatasetStats) -> str:
    """Plain-text tables of :class:`DatasetStats`."""
    splits = sorted({s for row in st.by_size.values() for s in row} | set(st.by_split))
    lines = [f"{st.root}: {st.n} valid records"]
    if st.by_protocol:
        lines.append("protocols (physics): " + ", ".join(f"{k} {v}" for k, v in st.by_protocol.items()))
    if st.by_numerics:
        lines.append("numerics: " + ", ".join(f"{k} {v}" for k, v in st.by_numerics.items()))
    lines.append("levels: " + ", ".join(f"{k.upper()} {v}" for k, v in st.by_level.items()))
    lines += ["", f"{'atoms':>6} " + " ".join(f"{s:>10}" for s in splits) + f" {'total':>6}"]
    for size, row in st.by_size.items():
        lines.append(
            f"{size:>6} " + " ".join(f"{row.get(s, 0):>10}" for s in splits) + f" {sum(row.values()):>6}"
        )
    lines.append(f"{'all':>6} " + " ".join(f"{st.by_split.get(s, 0):>10}" for s in splits) + f" {st.n:>6}")
    if st.excluded:
        lines += ["", f"excluded from training and evaluation ({len(st.excluded)}, kept on disk):"]
        lines += [f"  {k}: {v}" for k, v in sorted(st.excluded.items())]
    if st.invalid:
        lines += ["", f"invalid records ({len(st.invalid)}, skipped):", *(f"  {e}" for e in st.invalid)]
    if st.failures:
        f = st.failures
        lines += ["", f"campaign failures in {f['db']}: {f['failed']} ({f['permanent']} permanent)"]
        lines += [f"  {k}: {v}" for k, v in f["by_reason"].items()]
    return "\n".join(lines)
