"""The HTTP API through the real app (FastAPI TestClient): predictions, errors, materials, map, docs, pages."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from optiladder.data.store import Store
from optiladder.service.app import create_app
from optiladder.spectra import similarity_coefficient


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_upload=64 * 1024)) as c:
        yield c


def test_predict_upload_cif(client, examples):
    r = client.post("/predict", files={"file": ("SiC.cif", (examples / "SiC.cif").read_bytes())})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["formula"] == "SiC" and d["nsites"] == 2 and d["name"] == "SiC.cif"
    assert set(d["spectra"]) == {"ipa", "rpa"}
    rpa = d["spectra"]["rpa"]
    assert len(rpa["omega_eV"]) == 2001 and rpa["omega_eV"][-1] == 20.0
    assert min(rpa["eps_im"]) >= 0 and max(rpa["eps_im"]) > 1
    assert rpa["eps_re"][0] == pytest.approx(rpa["eps_inf"], abs=1e-3)
    assert isinstance(d["ipa_good_enough"], bool) and d["verdict"].startswith("IPA is")
    assert d["ipa_good_enough"] == (d["sc_rpa_ipa"] >= d["threshold"])
    assert set(d["models"]) == {"ipa", "rpa", "sc"}
    assert d["novel_bonds"] == ["C-Si"]  # no training crystal has a Si–C bond


def test_predict_lists_novel_bonds(client, examples):
    r = client.post(
        "/predict?stride=10&optics=false", files={"file": ("BN.cif", (examples / "BN.cif").read_bytes())}
    )
    assert r.status_code == 200, r.text
    assert r.json()["novel_bonds"] == ["B-N"]


def test_predict_pasted_poscar_matches_python_api(client, predictor, examples):
    text = (examples / "AlP.POSCAR").read_text()
    r = client.post("/predict?stride=4&optics=false", data={"text": text})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["formula"] == "AlP" and d["name"] == "pasted"
    assert len(d["spectra"]["rpa"]["omega_eV"]) == 501 and "alpha_cm" not in d["spectra"]["rpa"]
    ref = predictor.predict_one(examples / "AlP.POSCAR")
    assert np.allclose(
        d["spectra"]["rpa"]["eps_im"], ref.spectra["rpa"].trace_im()[::4], rtol=1e-4, atol=1e-4
    )
    assert d["sc_rpa_ipa"] == pytest.approx(ref.sc, abs=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "status", "start"),
    [
        ({}, 400, "request: no structure"),
        ({"data": {"text": "   "}}, 422, "pasted: empty input"),
        ({"data": {"text": "not a crystal at all", "filename": "x.cif"}}, 422, "x.cif: unreadable CIF"),
        ({"files": {"file": ("big.cif", b"#" * (70 * 1024))}}, 413, "big.cif: larger than the limit"),
        ({"files": {"file": ("bin.cif", bytes(range(256)))}}, 422, "bin.cif: not a text file"),
    ],
)
def test_predict_bad_requests_get_one_line_4xx(client, kwargs, status, start):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert detail.startswith(start) and "\n" not in detail


@pytest.mark.parametrize(
    ("fixture", "needle"),
    [
        ("partial.cif", "partial occupancies"),
        ("overlapping.cif", "overlapping atoms"),
        ("no_setup_TcO.cif", "element Tc is not in the featurizer"),
        ("garbage.cif", "unreadable CIF"),
    ],
)
def test_predict_malformed_crystals(client, fixtures, fixture, needle):
    r = client.post("/predict", files={"file": (fixture, (fixtures / "bad" / fixture).read_bytes())})
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"{fixture}: ") and needle in r.json()["detail"]


def test_upload_limits_before_reading_the_body(client):
    big = b"#" * (100 * 1024)  # above the limit plus the multipart allowance: refused from its header
    r = client.post("/predict", files={"file": ("huge.cif", big)})
    assert r.status_code == 413 and r.json()["detail"].startswith("request: ")
    chunked = client.post(
        "/predict",
        content=iter([b"--x\r\n", b"data"]),  # a generator body is sent chunked, without Content-Length
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert chunked.status_code == 411 and "Content-Length required" in chunked.json()["detail"]


def test_request_validation_errors_are_one_line(client, examples):
    r = client.post("/predict?stride=0", files={"file": ("SiC.cif", (examples / "SiC.cif").read_bytes())})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("stride: ")


def test_material_record_and_prediction(client):
    store = Store()
    mat_id = "agm003157621"  # SiC, test split: never trained on
    assert mat_id in store
    r = client.get(f"/materials/{mat_id}", params={"predict": True})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["formula"] == "SiC" and d["split"] == "test" and d["protocol"] == "gpaw-pbe-v1"
    rec = store.get(mat_id)
    assert d["spectra"]["rpa"]["omega_eV"] == pytest.approx(rec["omega"], abs=1e-6)
    assert set(d["spectra"]["ipa"]) >= {
        "eps_im",
        "eps_re",
        "eps_im_x",
        "eps_im_y",
        "eps_im_z",
        "alpha_cm",
        "R",
    }
    pred = d["prediction"]
    assert pred["ok"] and set(pred["sc_vs_dft"]) == {"ipa", "rpa"}
    # the endpoint's SC[ML; DFT] is the one the Python API and the record give
    from pymatgen.core import Structure

    from optiladder.spectra import MODEL_GRID, interpolate

    res = client.app.state.optiladder.predictor.predict_one(Structure.from_dict(rec["structure"]))
    ref = interpolate(
        np.asarray(rec["omega"]), np.mean([rec["spectra"][f"rpa_im_{c}"] for c in "xyz"], axis=0), MODEL_GRID
    )
    assert pred["sc_vs_dft"]["rpa"] == pytest.approx(
        float(similarity_coefficient(res.spectra["rpa"].trace_im(), ref)), abs=1e-3
    )
    assert -1 < d["sc_rpa_ipa"] <= 1


@pytest.mark.parametrize(
    ("mat_id", "status"), [("agm999999999", 404), ("..%2F..%2Fetc", 404), ("a$b", 400), ("-x", 400)]
)
def test_material_errors(client, mat_id, status):
    r = client.get(f"/materials/{mat_id}")
    assert r.status_code == status
    assert "\n" not in r.json()["detail"]


def test_map_has_every_point_with_coordinates_and_sc(client):
    d = client.get("/map").json()
    n = d["n"]
    assert (
        n >= 50 and len(d["ids"]) == len(d["x"]) == len(d["y"]) == len(d["sc_dft"]) == len(d["sc_pred"]) == n
    )
    assert "embedding" not in d
    assert d["model"]["id"] == client.get("/models").json()["cards"]["sc"]["id"]
    full = client.get("/map", params={"embeddings": True}).json()
    emb = np.asarray(full["embedding"])
    assert emb.shape[0] == n and emb.shape[1] >= 16
    # the colour is the DFT similarity of each record
    store = Store()
    i = d["ids"].index("agm003157621")
    t = store.table(ids=["agm003157621"])
    assert d["sc_dft"][i] == pytest.approx(float(similarity_coefficient(t.rpa, t.ipa, t.grid)[0]), abs=1e-3)


def test_map_is_reproducible_from_the_stored_embeddings(client):
    """The stored embeddings are the sc model's: re-embedding a few records gives the same vectors."""
    d = client.get("/map", params={"embeddings": True}).json()
    p = client.app.state.optiladder.predictor
    store = Store()
    ids = d["ids"][:5]
    recs = [store.get(i)["structure"] for i in ids]
    res = p.predict(recs, ids, embed=True, levels=())
    for r, i in zip(res, ids, strict=True):
        assert np.allclose(r.embedding, d["embedding"][d["ids"].index(i)], atol=2e-3)


def test_openapi_docs_and_pages(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/materials/{mat_id}", "/map"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    for page, marker in (("/", 'id="predict-form"'), ("/ui/map", 'id="map"'), ("/docs", 'id="endpoints"'),
                         ("/ui/materials/agm003157621", 'id="plot-im"')):  # fmt: skip
        r = client.get(page)
        assert r.status_code == 200 and marker in r.text
        assert not re.search(r'(src|href)="(https?:)?//', r.text)  # nothing loaded from the internet
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000 and b"plotly.js" in js.content[:200]
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.slow
def test_build_map_is_reproducible(predictor, tmp_path):
    """`optiladder pretrained map` on a 30-record store: same seed → same embeddings and same 2-D map."""
    import shutil

    from optiladder.service.mapdata import build_map, load_map

    src = Store()
    (tmp_path / "records").mkdir()
    for p in src.paths()[:30]:
        shutil.copy(p, tmp_path / "records" / p.name)
    store = Store(tmp_path / "records")
    a = build_map(predictor, store, tmp_path / "a.json.gz", n_neighbors=5)
    b = build_map(predictor, store, tmp_path / "b.json.gz", n_neighbors=5)
    assert load_map(tmp_path / "a.json.gz") == a
    assert a["n"] == 30 and a["ids"] == store.ids()
    assert a["embedding"] == b["embedding"]
    assert np.allclose(a["x"], b["x"]) and np.allclose(a["y"], b["y"])
    assert np.all(np.isfinite(a["x"])) and np.ptp(a["x"]) > 0
