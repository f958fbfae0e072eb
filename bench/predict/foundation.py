"""What foundation features and ensembles add to a prediction, on one CPU thread.

Measured side by side in one run: the graph of an unseen structure with the plain OptiMate featurizer vs the
``optimate+foundation`` featurizer (one CHGNet 0.3.0 forward per structure; nothing cached), one at a time and in
batches of 64; and the forward of one network vs a K-member ensemble (one call for all members). Structures: the
bundled examples (single) and 64 bundled Alexandria train structures (batch). Writes
``bench/predict/foundation.md`` and ``foundation.json``.

Run from the repository root: ``python bench/predict/foundation.py [--members 5]`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[2]

from run import _median_ms  # noqa: E402  (bench/predict/run.py, same folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    import torch
    from pymatgen.core import Structure

    from optiladder.foundation import embeddings
    from optiladder.graphs import DEFAULT_FEATURIZER, FoundationFeaturizer, structure_graph
    from optiladder.nn import OptiMate
    from optiladder.predict import GraphBatch
    from optiladder.structures import alexandria
    from optiladder.targets import get_target
    from optiladder.training import Model

    torch.set_num_threads(1)
    found = FoundationFeaturizer()
    one = Structure.from_file(ROOT / "examples" / "SiC.cif")
    batch = [Structure.from_dict(e["structure"]) for e in alexandria("train")[:64]]
    t0 = time.perf_counter()
    embeddings([one])  # loads CHGNet once per process
    load_s = time.perf_counter() - t0
    res: dict = {"machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                             "load_avg_1min": os.getloadavg()[0]}}  # fmt: skip
    res["graph_plain_ms"] = _median_ms(lambda: structure_graph(one, DEFAULT_FEATURIZER), args.repeats)
    res["graph_foundation_ms"] = _median_ms(lambda: structure_graph(one, found), args.repeats)
    res["embed_batch64_ms_per_structure"] = _median_ms(lambda: embeddings(batch), 3) / len(batch)
    res["graph_plain_batch64_ms_per_structure"] = _median_ms(
        lambda: [structure_graph(s, DEFAULT_FEATURIZER) for s in batch], 3
    ) / len(batch)
    res["chgnet_first_use_s"] = round(load_s, 2)
    graphs = [structure_graph(s, found) for s in batch]
    gb1 = GraphBatch.from_graphs(graphs[:1])
    gb = GraphBatch.from_graphs(graphs)
    nets = [OptiMate(node_dim=found.node_dim).eval() for _ in range(args.members)]
    single = Model(nets[:1], found, get_target("rpa"))
    ens = Model(nets, found, get_target("rpa"))
    with torch.inference_mode():
        res["forward_single_ms"] = _median_ms(lambda: single(gb1), args.repeats)
        res[f"forward_ensemble{args.members}_ms"] = _median_ms(lambda: ens.forward(gb1), args.repeats)
        res["forward_single_batch64_ms_per_structure"] = _median_ms(lambda: single(gb), 5) / len(graphs)
        res[f"forward_ensemble{args.members}_batch64_ms_per_structure"] = _median_ms(
            lambda: ens.forward(gb), 5
        ) / len(graphs)
    out = Path(__file__).with_name("foundation.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    k = args.members
    lines = [
        "# Foundation features and ensembles: cost per prediction (one CPU thread)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {res['machine']['load_avg_1min']:.1f} "
        "(the machine is shared; medians). Regenerate: `python bench/predict/foundation.py`.",
        "",
        "| step | plain OptiMate | with CHGNet 0.3.0 node features / ensemble | added |",
        "|---|---|---|---|",
        f"| graph of one unseen CIF (SiC) | {res['graph_plain_ms']:.2f} ms | {res['graph_foundation_ms']:.2f} ms | "
        f"{res['graph_foundation_ms'] - res['graph_plain_ms']:+.2f} ms |",
        f"| graph, batch of 64 unseen structures, per structure | {res['graph_plain_batch64_ms_per_structure']:.2f} ms | "
        f"{res['graph_plain_batch64_ms_per_structure'] + res['embed_batch64_ms_per_structure']:.2f} ms | "
        f"{res['embed_batch64_ms_per_structure']:+.2f} ms (CHGNet) |",
        f"| forward, one structure | {res['forward_single_ms']:.2f} ms (1 network) | {res[f'forward_ensemble{k}_ms']:.2f} ms "
        f"({k} members, one call) | ×{res[f'forward_ensemble{k}_ms'] / res['forward_single_ms']:.1f} |",
        f"| forward, batch of 64, per structure | {res['forward_single_batch64_ms_per_structure']:.3f} ms | "
        f"{res[f'forward_ensemble{k}_batch64_ms_per_structure']:.3f} ms | "
        f"×{res[f'forward_ensemble{k}_batch64_ms_per_structure'] / res['forward_single_batch64_ms_per_structure']:.1f} |",
        "",
        "Dataset structures pay the CHGNet cost once (embeddings cached on disk by structure hash); an unseen "
        "structure pays it at every prediction. Loading CHGNet itself (first use in a process): "
        f"{res['chgnet_first_use_s']:.1f} s.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
