"""Cost per structure of the foundation-model node features: CHGNet 0.3.0, SevenNet-0, both; batched vs one by one.

Measured side by side in one run on one CPU thread: the per-atom embeddings (:mod:`optiladder.foundation`) of 64
bundled Alexandria train structures, one structure per forward and in batches of 32 (two forwards), for CHGNet
0.3.0 alone, SevenNet-0 alone and both (``optimate+foundation`` with ``foundation=["chgnet-0.3.0",
"sevennet-0"]``); the whole graph of the same structures with the plain OptiMate featurizer for scale; and each
model's first load in the process. Times are CPU times of this one-thread process (medians over ``--repeats``
runs after one warm-up), which a machine shared with other jobs stretches far less than wall times. Writes
``bench/predict/foundation_models.json`` and the "Foundation models side by side" section of
``bench/predict/foundation.md`` (the rest of that file is ``foundation.py``'s).

Run from the repository root: ``python bench/predict/foundation_models.py`` (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

SECTION = "<!-- foundation_models.py -->"

from run import _cpu_ms  # noqa: E402  (bench/predict/run.py, same folder)


def write_section(md: Path, lines: list[str]) -> None:
    """Replace (or append) the marked section of ``md``: everything from :data:`SECTION` to the end."""
    head = md.read_text().split(SECTION)[0].rstrip("\n") if md.exists() else ""
    md.write_text((head + "\n\n" if head else "") + SECTION + "\n" + "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n", type=int, default=64, help="structures")
    args = ap.parse_args()

    import sevenn
    import torch

    from optiladder import foundation
    from optiladder.foundation import FoundationSpec, embeddings
    from optiladder.graphs import DEFAULT_FEATURIZER, structure_graph
    from optiladder.structures import alexandria

    torch.set_num_threads(1)
    entries = alexandria("train")[: args.n]
    structs = [e["structure"] for e in entries]
    atoms = sum(e["nsites"] for e in entries)
    res: dict = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "load_avg_1min": os.getloadavg()[0], "torch": torch.__version__, "sevenn": sevenn.__version__},
        "n": len(structs), "atoms": atoms, "repeats": args.repeats,
    }  # fmt: skip
    t0 = time.process_time()
    foundation._load_chgnet()
    res["chgnet_load_cpu_s"] = round(time.process_time() - t0, 2)
    t0 = time.process_time()
    foundation._load_sevennet()
    res["sevennet_load_cpu_s"] = round(time.process_time() - t0, 2)
    res["graph_plain_ms"] = _cpu_ms(
        lambda: [structure_graph(s, DEFAULT_FEATURIZER) for s in structs], 3
    ) / len(structs)
    rows = {}
    for label, models in (
        ("CHGNet 0.3.0", ("chgnet-0.3.0",)),
        ("SevenNet-0", ("sevennet-0",)),
        ("both", ("chgnet-0.3.0", "sevennet-0")),
    ):
        spec = FoundationSpec(models)
        embeddings(structs[:2], spec)  # warm-up (first forward, lazy imports)
        one = _cpu_ms(lambda spec=spec: [embeddings([s], spec) for s in structs], args.repeats) / len(structs)
        batched = _cpu_ms(lambda spec=spec: embeddings(structs, spec, batch_size=32), args.repeats) / len(
            structs
        )
        rows[label] = {"models": list(models), "dim": spec.dim, "one_by_one_ms": one, "batch32_ms": batched}
    res["embeddings"] = rows
    out = Path(__file__).with_name("foundation_models.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        "## Foundation models side by side: CHGNet 0.3.0, SevenNet-0, both",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{res['machine']['load_avg_1min']:.1f}, torch {res['machine']['torch']}, sevenn "
        f"{res['machine']['sevenn']}: median CPU time of one thread, per structure, over {res['n']} bundled "
        f"Alexandria train structures ({res['atoms']} atoms), one run. Regenerate: "
        "`python bench/predict/foundation_models.py` (writes `foundation_models.json` and this section).",
        "",
        "| node features (values per atom) | one structure per forward | 32 per forward | batching saves |",
        "|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} ({r['dim']}) | {r['one_by_one_ms']:.2f} ms | {r['batch32_ms']:.2f} ms | "
            f"×{r['one_by_one_ms'] / r['batch32_ms']:.1f} |"
        )
    lines += [
        f"| plain OptiMate graph, for scale (no foundation model) | {res['graph_plain_ms']:.2f} ms | | |",
        "",
        "SevenNet-0: its 128 l = 0 node features after the last interaction block, through sevenn's graph builder "
        "and `torch_geometric` collation. Both: the two models run one after the other (embeddings concatenated). "
        "First load in a process (CPU time, its package import included): CHGNet 0.3.0 "
        f"{res['chgnet_load_cpu_s']:.1f} s, SevenNet-0 {res['sevennet_load_cpu_s']:.1f} s. Dataset structures pay "
        "each model once (embedding cache per model and structure); the `Predictor` embeds unseen structures in "
        "batches of up to 32.",
    ]
    write_section(Path(__file__).with_name("foundation.md"), lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
