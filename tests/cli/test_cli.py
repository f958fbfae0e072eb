"""The CLI as a whole: every verb is there; `pretrained list` shows versions, ids and checksum status;
`dataset stats` lists the excluded materials. (Each verb's own behaviour is tested beside its package.)"""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from optiladder.cli import app
from optiladder.pretrained import MODEL_NAMES, read_card


def test_verbs():
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for verb in ("compute", "campaign", "dataset", "predict", "pretrained", "serve", "study", "tune"):
        assert verb in r.output, verb


def test_pretrained_list():
    r = CliRunner().invoke(app, ["pretrained", "list"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == len(MODEL_NAMES)
    for name, line in zip(sorted(MODEL_NAMES), lines, strict=True):
        card = read_card(name)
        assert (
            line.startswith(name) and card["id"] in line and card["version"] in line and line.endswith("[ok]")
        )


def test_dataset_stats_shows_exclusions(learn_fixtures, tmp_path):
    store = tmp_path / "records"
    shutil.copytree(learn_fixtures, store)
    r = CliRunner().invoke(
        app, ["dataset", "stats", "--store", str(store), "--db", str(tmp_path / "none.db")]
    )
    assert r.exit_code == 0, r.output
    assert "76 valid records" in r.output and "agm001850264: odd number of valence electrons" in r.output
