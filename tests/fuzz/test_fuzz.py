"""Seeded fuzzing: 2,000 mutated CIF/POSCAR inputs through the Python API, 200 through the running service.

Asserted: no exception escapes; every input gets its answer (a prediction or a one-line error naming it) within
the hang detector's 60 s; the service answers 200 or a one-line JSON 4xx, never 500, and ``/health`` keeps
answering; every unmutated input is still accepted. Seeds are fixed (``FUZZ_SEED`` overrides for more runs).
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections import Counter

import numpy as np
import pytest

from optiladder.predict import prepare_input

from .conftest import hang_detector
from .mutate import corpus, mutate

SEED = int(os.environ.get("FUZZ_SEED", "20261129"))
N_API_TEXT = 1000
N_API_FILES = 1000
N_SERVICE = 200


def _mutated(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    base = corpus()
    out = []
    for i in range(n):
        name, text = rng.choice(base)
        out.append((f"m{i:04d}-{name}", mutate(text, rng)))
    return out


def _check(res, name: str) -> None:
    if res.ok:
        assert set(res.spectra) == {"ipa", "rpa"} and res.sc is not None and np.isfinite(res.sc)
        for sp in res.spectra.values():
            assert np.all(np.isfinite(sp.trace_im())) and np.all(np.isfinite(sp.trace_re()))
    else:
        assert res.error.startswith(f"{name}: ") and "\n" not in res.error, res.error
        assert not res.spectra


def test_unmutated_inputs_are_all_accepted(predictor):
    base = corpus()
    res = [predictor.predict_text(text, name) for name, text in base]
    assert [r.error for r in res] == [None] * len(base)
    assert len(base) >= 12


def test_fuzz_python_api_2000_inputs(predictor, tmp_path):
    """1,000 mutated texts through :func:`prepare_input` + :meth:`Predictor.predict_prepared` (the service's
    path) and 1,000 mutated files through :meth:`Predictor.predict` (the CLI's path), batched by 64."""
    warnings.simplefilter("ignore")
    texts = _mutated(N_API_TEXT, SEED)
    outcome: Counter[str] = Counter()
    prepared = []
    for name, text in texts:
        with hang_detector():
            res, graphs = prepare_input(
                text, name, predictor.featurizers, predictor.domain, max_atoms=predictor.max_atoms, text=True
            )
        if graphs is None:
            _check(res, name)
            outcome["refused"] += 1
        else:
            prepared.append((res, graphs))
    for start in range(0, len(prepared), 64):
        with hang_detector():
            for res in predictor.predict_prepared(prepared[start : start + 64]):
                _check(res, res.name)
                outcome["predicted"] += 1
    files = _mutated(N_API_FILES, SEED + 1)
    paths = []
    for name, text in files:
        p = tmp_path / name
        p.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        paths.append(str(p))
    for start in range(0, len(paths), 64):
        with hang_detector():
            results = predictor.predict(paths[start : start + 64])
        for path, res in zip(paths[start : start + 64], results, strict=True):
            _check(res, path)
            outcome["predicted" if res.ok else "refused"] += 1
    assert sum(outcome.values()) == N_API_TEXT + N_API_FILES
    # the mutations are not all destructive: both outcomes are well represented
    assert outcome["predicted"] > 300 and outcome["refused"] > 300, outcome


def test_fuzz_service_200_requests(predictor):
    """200 mutated uploads, 8 at a time, against the real server on loopback (uvicorn, worker processes)."""
    import asyncio

    import httpx

    from optiladder.service.app import create_app
    from optiladder.service.loadtest import ThreadedServer

    texts = _mutated(N_SERVICE, SEED + 2)
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    health_ms: list[float] = []

    async def main(url: str) -> None:
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for item in texts:
            queue.put_nowait(item)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def worker() -> None:
                while not queue.empty():
                    name, text = queue.get_nowait()
                    data = text.encode("utf-8", errors="surrogateescape")
                    r = await client.post("/predict", files={"file": (name, data)})
                    statuses[r.status_code] += 1
                    detail = r.json().get("detail") if r.status_code != 200 else None
                    if r.status_code >= 500 or (detail is not None and "\n" in detail):
                        problems.append(f"{name}: {r.status_code} {r.text[:200]}")

            async def health() -> None:
                while not queue.empty():
                    t0 = time.perf_counter()
                    r = await client.get("/health")
                    assert r.status_code == 200
                    health_ms.append((time.perf_counter() - t0) * 1e3)
                    await asyncio.sleep(0.2)

            await asyncio.gather(*(worker() for _ in range(8)), health())

    app = create_app(predictor, workers={"workers": 2, "timeout": 30})
    with ThreadedServer(app) as server, hang_detector(300):
        asyncio.run(main(server.url))
    assert not problems, problems[:5]
    assert sum(statuses.values()) == N_SERVICE and set(statuses) <= {200, 400, 413, 422}, statuses
    assert statuses[200] > 30 and statuses[422] > 30, statuses
    # /health kept answering under the fuzz load (the 1 s bound while a hostile cell is read, without other
    # load, is asserted in tests/service/test_service_hardening.py; here 8 requests compete for the CPU)
    assert health_ms and max(health_ms) < 5000, max(health_ms)


@pytest.mark.parametrize("seed", [SEED + 3])
def test_mutations_are_reproducible(seed):
    assert _mutated(20, seed) == _mutated(20, seed)
