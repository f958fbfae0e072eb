"""Record plots: one PNG per record, every level, on the model grid's energy range."""

from __future__ import annotations

import gzip
import json

from optiladder.viz import plot_record


def test_plot_record(tmp_path, learn_fixtures):
    rec = json.loads(gzip.decompress((learn_fixtures / "agm003157414.json.gz").read_bytes()))
    path = plot_record(rec, tmp_path / "cbn.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (660, 396) and len(data) > 20_000  # 6 × 3.6 in at 110 dpi, two curves drawn
