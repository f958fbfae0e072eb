"""Cost-aware acquisition: value per predicted cost in the greedy ranking, the rule in the order file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optiladder.study.acquire import greedy_rank, predicted_seconds, rule_text, write_order

DATASET = Path(__file__).resolve().parents[2] / "dataset" / "records"


def test_greedy_rank_weighs_value_per_cost_and_keeps_diversity():
    z = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0], [5.0, 0.0]])
    u = np.array([0.5, 0.4, 0.3, 0.5])
    cost = np.array([400.0, 100.0, 25.0, 400.0])
    blind = greedy_rank(u, z, np.zeros((1, 2)), 1.0)
    assert blind.tolist()[:3] == [0, 1, 2] and blind.tolist()[-1] == 3
    aware = greedy_rank(u, z, np.zeros((1, 2)), 1.0, cost=cost)
    assert aware.tolist() == [2, 1, 0, 3]  # 0.3/5 > 0.4/10 > 0.5/20; the twin of 0 still waits behind it
    assert greedy_rank(u, z, np.zeros((1, 2)), 1.0, cost=cost, cost_exponent=0.0).tolist() == blind.tolist()


def test_order_file_states_the_rule_and_the_predicted_seconds(tmp_path):
    ranked = [{"mat_id": "agm1", "nsites": 3, "formula": "NaCl", "uncertainty": 0.2, "distance": 1.0, "seconds": 42.4},
              {"mat_id": "agm2", "nsites": 4, "formula": "KCl", "uncertainty": 0.1, "distance": 2.0, "seconds": None}]  # fmt: skip
    path = write_order(tmp_path / "o.txt", ranked, rule=rule_text(True, 0.5), cost_model="gpaw-pbe-v1 …")
    text = path.read_text().splitlines()
    assert "# rule: greedy max of uncertainty × min(distance, 3) / predicted_seconds^0.5" in text[1]
    assert text[2].startswith("# predicted seconds: ") and text[3].endswith("predicted_seconds")
    assert text[4] == "agm1 3 NaCl 0.2000 1.000 42" and text[5].endswith(" -")
    assert "cost-blind" in rule_text(False)


def test_predicted_seconds_come_from_the_stores_records(tmp_path):
    from optiladder.data.costs import bundled_features, read_timing, records_cost_model
    from optiladder.data.store import Store
    from optiladder.structures import alexandria

    v2 = [
        p
        for p in sorted(DATASET.glob("*.json.gz"))
        if (read_timing(p) or {}).get("numerics") == "gpaw-direct-v2"
    ]
    if len(v2) < 16:
        pytest.skip("needs 16 gpaw-direct-v2 records in dataset/records")
    for p in v2[:16]:
        shutil.copy(p, tmp_path / p.name)
    entries = [e for e in alexandria() if e["nsites"] == 5][:10]
    secs, line = predicted_seconds(Store(tmp_path), entries)
    g = records_cost_model([tmp_path])[0].groups[("gpaw-pbe-v1", "gpaw-direct-v2")]
    feats = bundled_features()
    assert np.allclose(secs, [g.seconds(feats[e["mat_id"]], 5) for e in entries])
    assert "gpaw-direct-v2: 16 records" in line
    with pytest.raises(ValueError, match="no-cost-aware"):
        predicted_seconds(Store(tmp_path / "empty"), entries)


def test_acquire_command_has_the_cost_switch():
    from optiladder.cli import app

    r = CliRunner().invoke(app, ["study", "acquire", "--help"], terminal_width=200)
    assert r.exit_code == 0 and "--cost-aware" in r.output and "--no-cost-aware" in r.output
    assert "--cost-exponent" in r.output
