"""The campaign status's cost per material by protocol, numerics and cell size, from the records' own timings."""

from __future__ import annotations

import gzip
import json

from optiladder.campaign.status import record_cpu_cost


def _write(path, *, numerics=None, cpu=None, wall=None):
    rec = {"seconds": wall or {}, "provenance": {} if cpu is None else {"cpu_seconds": cpu}}
    if numerics:
        rec["numerics"] = {"name": numerics}
    path.write_bytes(gzip.compress(json.dumps(rec).encode()))
    return str(path)


def test_record_cpu_cost_splits_protocol_numerics_and_size(tmp_path):
    rows = [
        {"nsites": 3, "protocol": "gpaw-pbe-v1", "path": _write(tmp_path / "a.json.gz", numerics="gpaw-direct-v2",
                                                                cpu={"gs": 2.0, "nscf": 1.0, "df": 3.0}, wall={"gs": 9.0})},
        {"nsites": 3, "protocol": "gpaw-pbe-v1", "path": _write(tmp_path / "b.json.gz", numerics="gpaw-direct-v2",
                                                                cpu={"gs": 4.0, "nscf": 2.0, "df": 4.0}, wall={"gs": 9.0})},
        # an older record without CPU seconds nor numerics block: gpaw-dense-v1, wall seconds
        {"nsites": 3, "protocol": "gpaw-pbe-v1", "path": _write(tmp_path / "c.json.gz", wall={"gs": 5.0, "df": 15.0})},
        {"nsites": 4, "protocol": "gpaw-pbe-ipa-lite", "path": _write(tmp_path / "d.json.gz", numerics="gpaw-direct-v2",
                                                                      cpu={"gs": 1.0, "nscf": 1.0, "df": 1.0})},
        {"nsites": 4, "protocol": "gpaw-pbe-v1", "path": str(tmp_path / "missing.json.gz")},  # unreadable: skipped
    ]  # fmt: skip
    cost = record_cpu_cost(rows)
    assert cost[("gpaw-pbe-v1", "gpaw-direct-v2", 3)] == (8.0, 2, "CPU")
    assert cost[("gpaw-pbe-v1", "gpaw-dense-v1", 3)] == (20.0, 1, "wall")
    assert cost[("gpaw-pbe-ipa-lite", "gpaw-direct-v2", 4)] == (3.0, 1, "CPU")
    assert ("gpaw-pbe-v1", "?", 4) not in cost
