"""Prediction benchmark of the default path (``Predictor.from_pretrained()``: ipa, rpa, sc), side by side with
the previously shipped models in one run: latency of one CIF on one core (read / graph / forward / whole
``predict_one``) and batch throughput over every dataset structure on one core; optionally a bounded load
test of ``optiladder serve`` on loopback (``--load-test``). Writes ``bench/predict/results.md`` and
``results.json``.

The previous models are taken from git history (``--baseline-commit``, default the commit before v2026.11.29
was shipped) into a temporary folder and loaded with ``Predictor.from_pretrained(root=...)``, so both run the
same code. Run from the repository root: ``python bench/predict/run.py`` (a few minutes). The paper's numbers
for comparison (Grunert et al. 2025, RTX 3060 laptop GPU): CIF read 6.7 ms + graph 4.6 ms + forward 3.5 ms.
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
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: the last commit whose package shipped the plain-OptiMate models v2026.11.22
BASELINE_COMMIT = "716e219"
BASELINE_MODELS = "src/optiladder/pretrained"
#: issue 14's targets for the default path on one core
TARGET_MS_PER_CIF, TARGET_PER_SECOND = 10.0, 300.0
log = logging.getLogger("bench.predict")


def _median_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls by ``clock`` (wall time by default)."""
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return statistics.median(times)


def _cpu_ms(fn, repeats: int) -> float:
    """Median CPU milliseconds of this process (one torch/BLAS thread: the work itself, which a machine shared
    with other jobs stretches far less than the wall time)."""
    return _median_ms(fn, repeats, time.process_time)


def baseline_root(commit: str, into: Path) -> Path:
    """The shipped-models folder of ``commit`` (``git archive``) extracted under ``into``; returns the root."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, BASELINE_MODELS], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar, check=True)
    return into / BASELINE_MODELS


def load_predictor(root: Path | None, batch_size: int = 64):
    from optiladder.predict import Predictor

    return Predictor.from_pretrained(("ipa", "rpa"), sc=True, root=root, batch_size=batch_size)


def single(root: Path | None, repeats: int) -> dict:
    """Median ms of each stage for examples/SiC.cif, one torch thread (a new CIF every call: nothing cached)."""
    import torch

    from optiladder.predict import GraphBatch

    torch.set_num_threads(1)
    p = load_predictor(root)
    cif = EXAMPLES / "SiC.cif"
    t0 = time.perf_counter()
    p.predict_one(cif)  # first call: imports, CHGNet load, training embeddings of the trust
    first_s = time.perf_counter() - t0
    for _ in range(10):  # warm up (allocator, first-call overheads)
        p.predict_one(cif)
    s = p.read(cif)
    graphs = p.graph(s)
    rpa = p.models["rpa"]
    batch = GraphBatch.from_graphs([graphs[p._model_feat["rpa"]]])
    out = {"first_call_s": round(first_s, 2)}
    out["read_ms"] = _median_ms(lambda: p.read(cif), repeats)
    out["graph_ms"] = _median_ms(lambda: p.graph(s), repeats)
    with torch.inference_mode():
        out["forward_rpa_ms"] = _median_ms(lambda: rpa.forward(batch), repeats)
    out["forward_all_ms"] = _median_ms(lambda: p.forward([graphs]), repeats)
    p.timings = dict.fromkeys(p.timings, 0.0)
    out["end_to_end_ms"] = _median_ms(lambda: p.predict_one(cif), repeats)
    out["post_ms"] = p.timings["post"] / repeats * 1e3  # smoothing, KK, Spectrum objects, trust
    out["graph_cpu_ms"] = _cpu_ms(lambda: p.graph(s), repeats)
    with torch.inference_mode():
        out["forward_rpa_cpu_ms"] = _cpu_ms(lambda: rpa.forward(batch), repeats)
    out["end_to_end_cpu_ms"] = _cpu_ms(lambda: p.predict_one(cif), repeats)
    out["n_edges"] = int(graphs[p._model_feat["rpa"]].num_edges)
    out["params"] = {n: m.num_parameters() for n, m in p.models.items()}
    out["members"] = {n: m.members for n, m in p.models.items()}
    out["featurizer"] = p.models["rpa"].featurizer.kind
    out["version"] = p.models["rpa"].version
    return out


def _predict_per_input(p, structures, ids) -> list:
    """The path before chunks were prepared together: each input read and its graphs built alone
    (:func:`optiladder.predict.prepare_input`, one CHGNet forward per structure), then the batched forward."""
    out = []
    for start in range(0, len(structures), p.batch_size):
        chunk = zip(structures[start : start + p.batch_size], ids[start : start + p.batch_size], strict=True)
        out += p.predict_prepared([p.prepare(s, i) for s, i in chunk])
    return out


def throughput(root: Path | None, threads: int = 1, batch_size: int = 64, per_input: bool = False) -> dict:
    """Materials per second for every dataset structure (pymatgen dicts → spectra + verdict + warnings);
    ``per_input``: graphs built one input at a time (:func:`_predict_per_input`), the baseline of batching."""
    import torch

    from optiladder.data.store import Store

    torch.set_num_threads(threads)
    data = Store().table()
    p = load_predictor(root, batch_size)
    p.predict(data.structures[:batch_size], data.ids[:batch_size])  # warm up
    p.timings = dict.fromkeys(p.timings, 0.0)
    t0, c0 = time.perf_counter(), time.process_time()
    if per_input:
        res = _predict_per_input(p, data.structures, data.ids)
    else:
        res = p.predict(data.structures, data.ids)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(r.ok for r in res)
    return {
        "cpu_seconds": round(cpu, 3),
        "per_cpu_second": round(len(res) / cpu, 1),
        "threads": threads,
        "batch_size": batch_size,
        "materials": len(res),
        "seconds": round(dt, 3),
        "per_second": round(len(res) / dt, 1),
        "stage_seconds": {k: round(v, 3) for k, v in p.timings.items()},
    }


def load_test(requests: int, concurrency: int) -> dict:
    """Start ``optiladder serve`` on a free loopback port, send the requests, stop the server."""
    import httpx

    from optiladder.service.loadtest import example_files, free_port, run_load

    port = free_port()
    cmd = [sys.executable, "-c", "from optiladder.cli import main; main()"]
    cmd += ["serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        files = example_files(EXAMPLES)
        run_load(url, files, requests=20, concurrency=2)  # warm up
        res = run_load(url, files, requests=requests, concurrency=concurrency, deadline=300)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return res.to_dict()


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_md(results: dict, path: Path) -> None:
    m = results["machine"]
    (old_label, old), (new_label, new) = results["models"].items()
    so, sn = old["single"], new["single"]
    to, tn = old["throughput"], new["throughput"]

    def row(name: str, key: str, fmt: str = "{:.2f} ms") -> str:
        return f"| {name} | {fmt.format(so[key])} | {fmt.format(sn[key])} | ×{sn[key] / so[key]:.1f} |"

    lines = [
        "# Prediction benchmark: the default path, shipped models against the previous ones",
        "",
        f"Measured {results['date']} by `python bench/predict/run.py` on {m['cpu']} ({m['cores']} cores), "
        f"torch {m['torch']}; load average at the start {m['load_average']} (other jobs share this machine and "
        "its two cores, so absolute times are upper bounds; the ratios are measured side by side in one run). "
        f"Previous models: `git archive {results['baseline_commit']}`, loaded with "
        "`Predictor.from_pretrained(root=...)` by the same code.",
        "",
        f"| one CIF (examples/SiC.cif), one core, median | {old_label} | {new_label} | ratio |",
        "|---|---|---|---|",
        f"| models | {so['featurizer']}, rpa {so['members']['rpa']} network | {sn['featurizer']}, rpa ensemble of "
        f"{sn['members']['rpa']} | |",
        row("read CIF + validate", "read_ms"),
        row("graph (node features; CHGNet for the new models)", "graph_ms"),
        row("forward, rpa model", "forward_rpa_ms"),
        row("forward, ipa + rpa + sc", "forward_all_ms"),
        row("post-processing (smoothing, KK, trust)", "post_ms"),
        f"| **whole `predict_one`** | **{so['end_to_end_ms']:.2f} ms** | **{sn['end_to_end_ms']:.2f} ms** | "
        f"**×{sn['end_to_end_ms'] / so['end_to_end_ms']:.1f}** |",
        row("CPU time: graph", "graph_cpu_ms"),
        row("CPU time: forward, rpa model", "forward_rpa_cpu_ms"),
        f"| **CPU time: whole `predict_one`** | **{so['end_to_end_cpu_ms']:.2f} ms** | "
        f"**{sn['end_to_end_cpu_ms']:.2f} ms** | **×{sn['end_to_end_cpu_ms'] / so['end_to_end_cpu_ms']:.1f}** |",
        f"| first call in a process (loads, CHGNet, training embeddings) | {so['first_call_s']:.1f} s | "
        f"{sn['first_call_s']:.1f} s | |",
        f"| **batch throughput**, {tn['materials']} dataset structures, batches of {tn['batch_size']}, one core | "
        f"**{to['per_second']} /s** | **{tn['per_second']} /s** | **×{tn['per_second'] / to['per_second']:.2f}** |",
        f"| batch throughput per CPU second | {to['per_cpu_second']} /s | {tn['per_cpu_second']} /s | "
        f"×{tn['per_cpu_second'] / to['per_cpu_second']:.2f} |",
        f"| read / graph / forward / post (s) | {' / '.join(str(v) for v in to['stage_seconds'].values())} | "
        f"{' / '.join(str(v) for v in tn['stage_seconds'].values())} | |",
        "",
        f"Parameters: previous {', '.join(f'{k} {v:,}' for k, v in so['params'].items())}; shipped "
        f"{', '.join(f'{k} {v:,}' for k, v in sn['params'].items())}.",
        "",
        f"Issue 14's targets for the default path (≤ {TARGET_MS_PER_CIF:.0f} ms per CIF, ≥ {TARGET_PER_SECOND:.0f} "
        f"materials/s on one core): the shipped models need {sn['end_to_end_cpu_ms']:.1f} CPU ms per CIF and reach "
        f"{tn['per_cpu_second']} materials per CPU second here (wall: {sn['end_to_end_ms']:.1f} ms, "
        f"{tn['per_second']} /s on the shared machine) — "
        + ("met." if sn["end_to_end_cpu_ms"] <= TARGET_MS_PER_CIF and tn["per_cpu_second"] >= TARGET_PER_SECOND
           else "**not met**: every unseen structure pays one CHGNet forward and the rpa forward runs 5 members "
                f"(see `foundation.md` for each part). In the same run the previous models needed "
                f"{so['end_to_end_cpu_ms']:.1f} CPU ms and reached {to['per_cpu_second']} /CPU s: the shipped ones "
                f"cost ×{sn['end_to_end_cpu_ms'] / so['end_to_end_cpu_ms']:.1f} per CIF and give "
                f"×{tn['per_cpu_second'] / to['per_cpu_second']:.2f} the throughput. On this oversubscribed machine "
                "even the previous models miss the targets they met on a quieter one (9.0 ms, 574 /s on "
                "2026-11-22), so the ratios, not the absolute times, are the result.")
        ,
    ]  # fmt: skip
    pi = results.get("per_input")
    if pi:
        lines += [
            "",
            "## Chunks prepared together (one batched CHGNet forward per chunk) against one input at a time",
            "",
            "Shipped models, same run, one core, every dataset structure in batches of "
            f"{pi['batch_size']}: graphs built per input (the code path before, `prepare_input` per structure then "
            f"`predict_prepared`) **{pi['per_cpu_second']} /CPU s** ({pi['per_second']} /s wall), chunk prepared "
            f"together (`Predictor.predict`) **{tn['per_cpu_second']} /CPU s** ({tn['per_second']} /s wall): "
            f"**×{tn['per_cpu_second'] / pi['per_cpu_second']:.2f}** materials per CPU second. Graph stage "
            f"{pi['stage_seconds']['graph']} s → {tn['stage_seconds']['graph']} s.",
        ]
    lt = results.get("load")
    if lt:
        lines += [
            "",
            "## Load test of `optiladder serve` on loopback (shipped models)",
            "",
            "| requests | concurrency | errors | p50 | p90 | p99 | max | requests/s |",
            "|---|---|---|---|---|---|---|---|",
            f"| {lt['requests']} | {lt['concurrency']} | **{lt['errors']}** | {lt['p50_ms']} ms | {lt['p90_ms']} ms | "
            f"**{lt['p99_ms']} ms** | {lt['max_ms']} ms | {lt['rps']} |",
        ]
    lines += ["", "Raw numbers: `bench/predict/results.json`.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--baseline-commit", default=BASELINE_COMMIT)
    ap.add_argument("--load-test", action="store_true", help="also run the loopback load test of serve")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--render", action="store_true", help="only rewrite results.md from results.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.render:
        write_md(json.loads((args.out / "results.json").read_text()), args.out / "results.md")
        return
    import datetime

    results = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "baseline_commit": args.baseline_commit,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        old_root = baseline_root(args.baseline_commit, Path(tmp))
        for label, root in (("previous (v2026.11.22)", old_root), ("shipped", None)):
            log.info("%s: single-structure latency …", label)
            single_res = single(root, args.repeats)
            log.info("%s", single_res)
            log.info("%s: throughput …", label)
            thr = throughput(root)
            log.info("%s", thr)
            if root is None:
                label = f"shipped ({single_res['version']})"
            results["models"][label] = {"single": single_res, "throughput": thr}
        log.info("shipped, graphs built per input: throughput …")
        results["per_input"] = throughput(None, per_input=True)
        log.info("%s", results["per_input"])
    if args.load_test:
        log.info("load test …")
        results["load"] = load_test(args.requests, args.concurrency)
        log.info("%s", results["load"])
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_md(results, args.out / "results.md")
    log.info("-> %s", args.out / "results.md")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
