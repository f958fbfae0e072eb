"""Write src/optiladder/resources/alexandria/first_shell_pairs.json.gz: the first-shell element pairs of every
bundled Alexandria structure (:func:`optiladder.domain.first_shell_pairs`), read by
:class:`optiladder.domain.TrainingDomain` for its ``bonds``. Rerun when the bundled structures or
``FIRST_SHELL_FACTOR`` change (``tests/domain/test_bonds.py`` checks the table against a fresh computation).

Run from the repository root: ``python scripts/make_bond_table.py``.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

from optiladder.domain import BOND_TABLE, FIRST_SHELL_FACTOR, bond_table
from optiladder.structures import alexandria


def main() -> None:
    entries = alexandria()
    t0 = time.perf_counter()
    pairs = bond_table(entries)
    seconds = time.perf_counter() - t0
    text = json.dumps({"factor": FIRST_SHELL_FACTOR, "pairs": pairs}, separators=(",", ":"), sort_keys=True)
    path = Path(__file__).resolve().parents[1] / "src" / "optiladder" / "resources" / BOND_TABLE
    path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    kinds = sorted({p for v in pairs.values() for p in v})
    print(
        f"{len(pairs)} structures, {len(kinds)} pair types in {seconds:.2f} s -> {path} ({path.stat().st_size} B)"
    )


if __name__ == "__main__":
    main()
