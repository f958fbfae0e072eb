"""A bounded load test on loopback: 200 uploads at a fixed concurrency against the real server (uvicorn)."""

from __future__ import annotations

import pytest

from optiladder.service.app import create_app
from optiladder.service.loadtest import ThreadedServer, example_files, run_load

pytestmark = pytest.mark.slow


def test_200_requests_without_errors(predictor, examples):
    with ThreadedServer(create_app(predictor)) as server:
        res = run_load(server.url, example_files(examples), requests=200, concurrency=8, deadline=240)
    assert res.errors == 0, res.first_error
    assert res.requests == 200
    # generous bound for a loaded 2-core CI machine; bench/predict/run.py records the measured numbers
    assert res.p99_ms < 5000


def test_load_test_refuses_non_loopback_targets():
    with pytest.raises(ValueError, match="loopback"):
        run_load("http://10.0.0.1:8000", [("a.cif", b"x")], requests=1)
