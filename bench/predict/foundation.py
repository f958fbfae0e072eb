"""What foundation features and the ensemble add to a prediction, on one CPU thread.

Measured side by side in one run: the graph of an unseen structure with the plain OptiMate featurizer vs the
``optimate+foundation`` featurizer of the shipped models (one CHGNet 0.3.0 forward per structure), one at a time
and in batches of 64; the same structure's embedding when it is already in the on-disk embedding cache (what a
dataset structure pays: hashing and a lookup); and the forward of the previous shipped rpa model (one plain
network, from git history) vs the shipped rpa ensemble (5 members, one call). Structures: examples/SiC.cif
(single) and 64 bundled Alexandria train structures (batch). Times are CPU times of this one-thread process
(medians), which a machine shared with other jobs stretches far less than wall times. Writes ``bench/predict/foundation.md`` and
``foundation.json``.

Run from the repository root: ``python bench/predict/foundation.py`` (about a minute). The section of
``foundation.md`` from ``<!-- foundation_models.py -->`` on is ``foundation_models.py``'s (CHGNet 0.3.0 vs
SevenNet-0 vs both) and is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]

from run import BASELINE_COMMIT, _cpu_ms, baseline_root  # noqa: E402  (bench/predict/run.py, same folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    args = ap.parse_args()

    import torch
    from pymatgen.core import Structure

    from optiladder.foundation import EmbeddingCache, FoundationSpec, embeddings
    from optiladder.graphs import DEFAULT_FEATURIZER, structure_graph
    from optiladder.predict import GraphBatch
    from optiladder.pretrained import load_model
    from optiladder.structures import alexandria

    torch.set_num_threads(1)
    new = load_model("rpa")
    found = new.featurizer
    one = Structure.from_file(ROOT / "examples" / "SiC.cif")
    batch = [Structure.from_dict(e["structure"]) for e in alexandria("train")[:64]]
    t0 = time.perf_counter()
    embeddings([one])  # loads CHGNet once per process
    load_s = time.perf_counter() - t0
    res: dict = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                             "load_avg_1min": os.getloadavg()[0]}}  # fmt: skip
    res["graph_plain_ms"] = _cpu_ms(lambda: structure_graph(one, DEFAULT_FEATURIZER), args.repeats)
    res["graph_foundation_ms"] = _cpu_ms(lambda: structure_graph(one, found), args.repeats)
    res["embed_uncached_ms"] = _cpu_ms(lambda: embeddings([one]), args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(FoundationSpec(), root=tmp)
        d = one.as_dict()
        cache.get([d])  # computed and stored once
        res["embed_cached_ms"] = _cpu_ms(lambda: cache.get([d], save=False), args.repeats)
        res["embed_cached_cold_ms"] = _cpu_ms(
            lambda: EmbeddingCache(FoundationSpec(), root=tmp).get([d], save=False), args.repeats
        )  # a new process: reads the cache file first
        dicts = [s.as_dict() for s in batch]
        cache.get(dicts)
        res["embed_cached_batch64_ms_per_structure"] = _cpu_ms(lambda: cache.get(dicts, save=False), 5) / 64
    res["embed_batch64_ms_per_structure"] = _cpu_ms(lambda: embeddings(batch), 3) / len(batch)
    res["graph_plain_batch64_ms_per_structure"] = _cpu_ms(
        lambda: [structure_graph(s, DEFAULT_FEATURIZER) for s in batch], 3
    ) / len(batch)
    res["chgnet_first_use_s"] = round(load_s, 2)
    with tempfile.TemporaryDirectory() as tmp:
        old = load_model(baseline_root(args.baseline_commit, Path(tmp)) / "rpa")
    k = new.members
    g_old = [structure_graph(s, old.featurizer) for s in batch]
    g_new = [structure_graph(s, found) for s in batch]
    with torch.inference_mode():
        res["forward_previous_ms"] = _cpu_ms(
            lambda: old.forward(GraphBatch.from_graphs(g_old[:1])), args.repeats
        )
        res["forward_shipped_ms"] = _cpu_ms(
            lambda: new.forward(GraphBatch.from_graphs(g_new[:1])), args.repeats
        )
        res["forward_previous_batch64_ms_per_structure"] = _cpu_ms(
            lambda: old.forward(GraphBatch.from_graphs(g_old)), 5) / 64  # fmt: skip
        res["forward_shipped_batch64_ms_per_structure"] = _cpu_ms(
            lambda: new.forward(GraphBatch.from_graphs(g_new)), 5) / 64  # fmt: skip
    res["members"] = k
    out = Path(__file__).with_name("foundation.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        "# Foundation features and the ensemble: cost per prediction (one CPU thread)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{res['machine']['load_avg_1min']:.1f}: the machine is shared, so every number is the median **CPU time** of "
        "this one-thread process (the work itself; wall times on this machine are several times longer), "
        "measured side by side in one run. "
        "Regenerate: `python bench/predict/foundation.py`.",
        "",
        "| step | plain OptiMate (previous models) | shipped: CHGNet 0.3.0 node features, rpa ensemble | added |",
        "|---|---|---|---|",
        f"| graph of one unseen CIF (SiC), uncached | {res['graph_plain_ms']:.2f} ms | "
        f"{res['graph_foundation_ms']:.2f} ms | {res['graph_foundation_ms'] - res['graph_plain_ms']:+.2f} ms |",
        f"| its CHGNet embedding alone: uncached / from the embedding cache (warm) / cache file read first | | "
        f"{res['embed_uncached_ms']:.2f} / {res['embed_cached_ms']:.3f} / {res['embed_cached_cold_ms']:.2f} ms | |",
        f"| graph, batch of 64 unseen structures, per structure | {res['graph_plain_batch64_ms_per_structure']:.2f} ms | "
        f"{res['graph_plain_batch64_ms_per_structure'] + res['embed_batch64_ms_per_structure']:.2f} ms | "
        f"{res['embed_batch64_ms_per_structure']:+.2f} ms (CHGNet) |",
        f"| embedding, batch of 64, from the cache, per structure | | "
        f"{res['embed_cached_batch64_ms_per_structure']:.3f} ms | |",
        f"| forward of the rpa model, one structure | {res['forward_previous_ms']:.2f} ms (1 network) | "
        f"{res['forward_shipped_ms']:.2f} ms ({k} members, one call) | "
        f"×{res['forward_shipped_ms'] / res['forward_previous_ms']:.1f} |",
        f"| forward of the rpa model, batch of 64, per structure | "
        f"{res['forward_previous_batch64_ms_per_structure']:.3f} ms | "
        f"{res['forward_shipped_batch64_ms_per_structure']:.3f} ms | "
        f"×{res['forward_shipped_batch64_ms_per_structure'] / res['forward_previous_batch64_ms_per_structure']:.1f} |",
        "",
        "Dataset structures (training, the map, the trust's training embeddings) pay CHGNet once: their embeddings "
        "are cached on disk by structure hash. The `Predictor` does not cache user inputs, so an unseen structure "
        "pays the uncached row at every prediction. Loading CHGNet itself (first use in a process): "
        f"{res['chgnet_first_use_s']:.1f} s.",
    ]
    md = out.with_suffix(".md")
    # keep foundation_models.py's section (everything from its marker on)
    marker = "<!-- foundation_models.py -->"
    tail = md.read_text().partition(marker) if md.exists() else ("", "", "")
    md.write_text("\n".join(lines) + "\n" + (f"\n{marker}{tail[2]}" if tail[1] else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
