"""Fast CLI checks of ``optiladder campaign`` (errors before any work starts)."""

from __future__ import annotations

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
