"""Write (or check) the bundled cost feature table ``src/optiladder/resources/alexandria/cost_features.json.gz``.

    python scripts/make_cost_features.py            # all 3,538 bundled structures, default protocol (~2 min)
    python scripts/make_cost_features.py --check    # recompute and compare with the file, change nothing

Features (n_ibz_k, nbands, volume) as GPAW will see each structure: :func:`optiladder.data.costs.structure_features`
on the engine's symmetrized cell. Needs GPAW's setups for the valence counts (copied into the table).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

from optiladder.data.costs import FEATURE_TABLE, build_feature_table, write_feature_table

OUT = Path(__file__).resolve().parents[1] / "src" / "optiladder" / "resources" / FEATURE_TABLE


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare a fresh computation with --out")
    args = ap.parse_args()
    t0 = time.time()
    payload = build_feature_table(log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.check:
        old = json.loads(gzip.decompress(args.out.read_bytes()))
        same = old["rows"] == payload["rows"] and old["parameters"] == payload["parameters"]
        print(
            f"{args.out}: {'matches' if same else 'DIFFERS FROM'} a fresh computation ({time.time() - t0:.0f} s)"
        )
        return 0 if same else 1
    write_feature_table(payload, args.out)
    n_bad = sum(1 for r in payload["rows"] if r[2] is None)
    print(f"{args.out}: {len(payload['rows'])} structures ({n_bad} without features), "
          f"{args.out.stat().st_size / 1024:.1f} KB, {time.time() - t0:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
