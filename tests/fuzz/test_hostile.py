"""The hostile inputs of issue 11 as named regression tests (Python API and CLI; the service's in
tests/service/test_service_hardening.py)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from optiladder.cli import app

from .conftest import hang_detector
from .mutate import HOSTILE, poscar_with

runner = CliRunner()


@pytest.mark.parametrize("key", sorted(HOSTILE))
def test_hostile_cell_gets_a_one_line_error_quickly(predictor, key):
    filename, text, phrase = HOSTILE[key]
    t0 = time.perf_counter()
    with hang_detector():
        res = predictor.predict_text(text, filename)
    assert time.perf_counter() - t0 < 5
    assert not res.ok and res.error.startswith(f"{filename}: ") and phrase in res.error, res.error
    assert "\n" not in res.error


def test_predict_cli_goes_on_after_an_infinite_coordinate(examples, tmp_path):
    (tmp_path / "POSCAR_inf").write_text(poscar_with(8, "inf 0.75 0.75 P"))
    (tmp_path / "nan.cif").write_text(HOSTILE["a_nan"][1])
    files = [
        str(examples / "SiC.cif"),
        str(tmp_path / "POSCAR_inf"),
        str(tmp_path / "nan.cif"),
        str(examples / "BN.cif"),
    ]
    r = runner.invoke(app, ["predict", *files])
    assert r.exit_code == 1
    assert "SiC.cif  SiC" in r.stdout and "BN.cif  BN" in r.stdout  # the input after the bad ones too
    assert f"error: {tmp_path / 'POSCAR_inf'}: atomic coordinates are not finite" in r.stderr
    assert f"error: {tmp_path / 'nan.cif'}: lattice is not finite" in r.stderr
    assert "2 of 4 inputs failed" in r.stderr and "Traceback" not in r.output


def test_compute_cli_names_every_bad_input_and_goes_on(tmp_path):
    bad = {"POSCAR_inf": poscar_with(8, "inf 0.75 0.75 P"), **{k: HOSTILE[k][1] for k in ("a_1e30", "a_nan")}}
    paths = []
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    r = runner.invoke(app, ["compute", *paths, "--protocol", "test", "--out", str(tmp_path / "out")])
    assert r.exit_code == 1 and "3 of 3 inputs failed" in r.stderr
    for p in paths:
        assert f"error: {p}: " in r.stderr
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()


def test_campaign_inputs_name_hostile_files_before_queueing(tmp_path, examples):
    from optiladder.campaign.inputs import file_jobs

    for key in ("a_1e30", "a_nan", "coordinate_inf"):
        filename, text, _ = HOSTILE[key]
        (tmp_path / filename).write_text(text)
    (tmp_path / "SiC.cif").write_text((examples / "SiC.cif").read_text())
    jobs, bad = file_jobs([tmp_path])
    assert [j.id for j in jobs] == ["SiC"]
    reasons = sorted(reason for _, reason in bad)
    assert len(reasons) == 3 and all("\n" not in r for r in reasons)
    assert any("volume per atom" in r for r in reasons) and sum("not finite" in r for r in reasons) == 2
