"""Fast CLI checks of ``optiladder campaign`` (errors before any work starts)."""

from __future__ import annotations

from pathlib import Path

from optiladder.data.store import default_root

from .conftest import run_cli


def test_test_protocol_needs_its_own_store(tmp_path, tiny_inputs):
    r = run_cli(
        "campaign",
        "run",
        str(tiny_inputs),
        "--protocol",
        "test",
        "--db",
        str(tmp_path / "c.db"),
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "need their own --store" in r.stderr
    r = run_cli(
        "campaign", "run", "--protocol", "test", "--db", str(tmp_path / "c.db"), "--store", str(default_root()),
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1 and "may not go into the dataset" in r.stderr


def test_status_without_database_agrees_with_the_records(tmp_path, monkeypatch):
    """In a fresh clone (no campaign.db) `campaign status` counts the store's records, like `dataset stats`."""
    import shutil

    from typer.testing import CliRunner

    from optiladder.cli import app

    store = tmp_path / "records"
    store.mkdir()
    fixtures = Path(__file__).parents[1] / "fixtures" / "records"
    for p in fixtures.glob("*.json.gz"):
        shutil.copy(p, store / p.name)
    monkeypatch.setenv("OPTILADDER_DATASET", str(store))
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["campaign", "status"])
    assert res.exit_code == 0, res.output
    assert "from the 3 records" in res.output
    (total,) = [ln for ln in res.output.splitlines() if ln.split()[:1] == ["all"] and len(ln.split()) == 6]
    done, running, queued, failed, n = map(int, total.split()[1:6])
    assert (done, running, failed, n) == (3, 0, 0, 3538) and queued == 3535
    stats = CliRunner().invoke(app, ["dataset", "stats"])
    assert stats.exit_code == 0 and "3 valid records" in stats.output
