"""A bounded load test on loopback: 200 uploads at a fixed concurrency against the real server (uvicorn)."""

from __future__ import annotations

import pytest

from optiladder.service.app import create_app
from optiladder.service.loadtest import ThreadedServer, example_files, run_load

pytestmark = pytest.mark.slow


def test_200_requests_without_errors(predictor, examples):
    app = create_app(predictor)
    with ThreadedServer(app) as server:
        run_load(server.url, example_files(examples), requests=16, concurrency=4)  # warm up (first calls)
        res = run_load(server.url, example_files(examples), requests=200, concurrency=8, deadline=240)
        sizes = list(app.state.optiladder.batcher.batch_sizes)
    assert res.errors == 0, res.first_error
    assert sum(sizes) == 216 and max(sizes) > 1  # concurrent requests shared forward passes
    assert res.requests == 200
    # generous bound for a loaded 2-core CI machine; bench/predict/run.py records the measured numbers
    assert res.p99_ms < 5000


def test_load_test_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        run_load("http://10.0.0.1:8000", [("a.cif", b"x")], requests=1)


def test_micro_batcher_gives_the_same_answers(predictor, examples):
    from concurrent.futures import ThreadPoolExecutor

    from optiladder.predict import read_structure
    from optiladder.service.batching import MicroBatcher

    files = sorted(examples.glob("*.cif")) + sorted(examples.glob("*.POSCAR"))
    structures = [read_structure(f) for f in files] * 4
    batcher = MicroBatcher(predictor, max_batch=8, max_wait_ms=20)
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = list(pool.map(lambda s: batcher.submit(s, s.formula), structures))
        results = [f.result(timeout=60) for f in futures]
    finally:
        batcher.close()
    assert max(batcher.batch_sizes) > 1 and sum(batcher.batch_sizes) == len(structures)
    direct = predictor.predict(structures)
    for a, b in zip(results, direct, strict=True):
        assert a.formula == b.formula
        assert abs(a.sc - b.sc) < 1e-5


def test_serve_command_starts_answers_and_stops(examples, tmp_path):
    """``optiladder serve`` as a user runs it: a real uvicorn process on a free loopback port."""
    import subprocess
    import sys
    import time

    import httpx

    from optiladder.service.loadtest import free_port

    port = free_port()
    cmd = [sys.executable, "-c", "from optiladder.cli import main; main()", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).json()["models_loaded"]:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() - t0 < 120, "server did not start"
            time.sleep(0.2)
        r = httpx.post(
            url + "/predict", files={"file": ("KInSe.POSCAR", (examples / "KInSe.POSCAR").read_bytes())}
        )
        assert r.status_code == 200 and r.json()["formula"] == "KInSe"
        assert httpx.get(url + "/map", timeout=60).json()["n"] >= 50
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode in (0, -15)
