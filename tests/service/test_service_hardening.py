"""The service under hostile input (issue 11): killable workers, per-request isolation, headers, ids, errors."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from optiladder.data.store import Store
from optiladder.service.app import MAT_ID_RE, SECURITY_HEADERS, create_app
from optiladder.service.loadtest import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
SIC = (ROOT / "examples" / "SiC.cif").read_text()
ALP = (ROOT / "examples" / "AlP.POSCAR").read_text()


def _huge_a(a: str = "1e30") -> str:
    return SIC.replace("_cell_length_a   3.09652723", f"_cell_length_a   {a}")


def _sheared_alp(factor: float = 1e6) -> str:
    lines = ALP.splitlines()
    a = [float(x) for x in lines[2].split()]
    c = [float(x) for x in lines[4].split()]
    lines[4] = " ".join(f"{ci + factor * ai:.10f}" for ai, ci in zip(a, c, strict=True))
    return "\n".join(lines) + "\n"


def _slow_cif(n_atoms: int = 5500) -> str:
    """A ~235 KB CIF of 5,500 atoms: within the 256 KB upload limit, >10 s to parse (then refused as too large)."""
    head = SIC.split("_atom_site_occupancy")[0] + "_atom_site_occupancy\n"
    rows = [
        f"  Si  Si{k}  1  {k / n_atoms:.6f}  {(k * 7 % n_atoms) / n_atoms:.6f}  0.1  1"
        for k in range(n_atoms)
    ]
    return head + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def server(predictor):
    app = create_app(predictor, workers={"workers": 2, "timeout": 4.0}, body_timeout=1.0)
    with ThreadedServer(app) as s:
        # warm up: workers load CHGNet, the trust embeds the training crystals (minutes on a loaded machine)
        httpx.post(s.url + "/predict", files={"file": ("SiC.cif", SIC.encode())}, timeout=600)
        yield s, app


def _health_while(url: str, request) -> tuple[httpx.Response, list[float]]:
    """Send ``request`` (an async function of a client) and poll /health every 50 ms until it returns."""

    async def main():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            task = asyncio.create_task(request(client))
            times = []
            while not task.done():
                t0 = time.perf_counter()
                r = await client.get("/health", timeout=5)
                assert r.status_code == 200
                times.append((time.perf_counter() - t0) * 1e3)
                await asyncio.sleep(0.05)
            return await task, times

    return asyncio.run(main())


def test_health_answers_while_a_1e30_cell_is_read(server):
    s, _ = server
    r, times = _health_while(
        s.url, lambda c: c.post("/predict", files={"file": ("huge.cif", _huge_a().encode())})
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("huge.cif: volume per atom")
    assert times and max(times) < 1000


def test_a_worker_stuck_on_an_input_is_killed_and_replaced(server):
    s, app = server
    pool = app.state.optiladder.pool
    before, pids = pool.restarts, set(pool.pids())
    r, times = _health_while(
        s.url, lambda c: c.post("/predict", files={"file": ("slow.cif", _slow_cif().encode())})
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "slow.cif: reading took longer than 4 s (stopped)"
    assert len(times) >= 10 and max(times) < 1000  # /health answered throughout
    assert pool.restarts == before + 1 and set(pool.pids()) != pids
    good = httpx.post(s.url + "/predict", files={"file": ("SiC.cif", SIC.encode())}, timeout=60)
    assert good.status_code == 200 and good.json()["formula"] == "SiC"


def test_one_bad_structure_does_not_fail_its_neighbours(server):
    """A sheared POSCAR sent with 16 good concurrent requests: the 16 succeed, the bad one alone gets 422."""
    s, app = server
    files = [("AlP.POSCAR", ALP), ("SiC.cif", SIC)] * 8 + [("POSCAR_sheared", _sheared_alp())]

    async def main():  # generous timeout: a replaced worker loads CHGNet first (slow on a loaded machine)
        async with httpx.AsyncClient(base_url=s.url, timeout=300) as client:
            return await asyncio.gather(
                *(client.post("/predict", files={"file": (n, t.encode())}) for n, t in files)
            )

    responses = asyncio.run(main())
    codes = [r.status_code for r in responses]
    assert codes[:16] == [200] * 16 and codes[16] == 422
    assert responses[16].json()["detail"].startswith("POSCAR_sheared: cell vector")


def test_stalled_upload_gets_408_and_releases_the_connection(server):
    s, _ = server
    host, port = "127.0.0.1", int(s.url.rsplit(":", 1)[1])
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 5000\r\n\r\n--b\r\n"
        )
        t0 = time.perf_counter()
        reply = b""
        while b"body not received" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 408") and "body not received within 1 s" in reply
    assert time.perf_counter() - t0 < 5


@pytest.fixture(scope="module")
def client(predictor, tmp_path_factory):
    """The app on a copy of two real records plus a corrupt one (TestClient)."""
    src = Store()
    d = tmp_path_factory.mktemp("records")
    for mat_id in ("agm003157621", "agm001192057"):
        (d / f"{mat_id}.json.gz").write_bytes((src.root / f"{mat_id}.json.gz").read_bytes())
    good = (d / "agm001192057.json.gz").read_bytes()
    (d / "agm001192059.json.gz").write_bytes(good[:10] + bytes(b ^ 0x5A for b in good[10:80]) + good[80:])
    (d / "agm001192117.json.gz").write_bytes(gzip.compress(b'{"mat_id": "agm001192117", "protocol": "x"}'))
    with TestClient(create_app(predictor, store=Store(d), workers={"workers": 1})) as c:
        c.store_dir = d
        yield c


@pytest.mark.parametrize(
    "path", ["/", "/health", "/docs", "/ui/map", "/static/app.js", "/materials/x%0a", "/nope"]
)
def test_security_headers_on_every_response(client, path):
    r = client.get(path)
    for k, v in SECURITY_HEADERS.items():
        assert r.headers[k] == v
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp


def test_pages_have_no_inline_script(client):
    for page in ("/", "/ui/map", "/docs", "/ui/materials/agm003157621"):
        html = client.get(page).text
        assert "<script>" not in html and "onclick=" not in html


@pytest.mark.parametrize("mat_id", ["agm001192057\n", "agm001192057\r", "a/b", "..", "x" * 65, "-x"])
def test_strict_id_pattern(client, mat_id):
    assert not MAT_ID_RE.match(mat_id)
    r = client.get("/materials/" + quote(mat_id, safe="").replace(".", "%2E"))
    assert r.status_code in (400, 404) and "\n" not in r.json()["detail"]


def test_corrupt_stored_records_give_one_line_json_without_paths(client):
    for mat_id, phrase in (("agm001192059", "unreadable or truncated"), ("agm001192117", "missing keys")):
        r = client.get(f"/materials/{mat_id}")
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        detail = r.json()["detail"]
        assert detail.startswith(f"{mat_id}: stored record is invalid") and phrase in detail, detail
        assert str(client.store_dir) not in detail and "/" not in detail and "\n" not in detail
    ok = client.get("/materials/agm003157621")
    assert ok.status_code == 200 and ok.json()["formula"] == "SiC"


def test_prediction_carries_domain_warnings_and_models_state_the_domain(client):
    al = "Al\n1.0\n0 2.02 2.02\n2.02 0 2.02\n2.02 2.02 0\nAl\n1\ndirect\n0 0 0\n"
    r = client.post("/predict", data={"text": al, "filename": "POSCAR_Al"})
    assert r.status_code == 200
    d = r.json()
    assert d["in_domain"] is False and any("odd number of electrons" in w for w in d["warnings"])
    assert "UNCERTAIN" in d["verdict"]
    m = client.get("/models").json()["domain"]
    assert m["max_nsites"] == 4 and m["n_train"] > 100 and "Si" in m["elements"]
    # the page states the training cells by size (they add up to the training set) and where warnings start
    assert sum(m["cell_sizes"].values()) == m["n_train"] and max(map(int, m["cell_sizes"])) == m["max_nsites"]
    assert m["warn_above_nsites"] == max(m["max_nsites"], m["calibrated_max_nsites"] or 0)


def test_missing_map_is_a_503_without_the_server_path(predictor, tmp_path):
    missing = tmp_path / "secret-folder" / "map.json.gz"
    with TestClient(create_app(predictor, map_path=missing, workers={"workers": 1})) as c:
        r = c.get("/map")
    assert r.status_code == 503 and r.json()["detail"].startswith("map: no map yet")
    assert "secret-folder" not in r.text
