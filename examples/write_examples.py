"""Write the bundled example crystals from the Alexandria list shipped with optiladder.

All five are **test-split** materials (the paper's held-out list), so no shipped model was trained, tuned or
early-stopped on them, and each has a GPAW record in ``dataset/records/`` to compare predictions with.

Run from the repository root: ``python examples/write_examples.py`` (rewrites the files below).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from optiladder.structures import alexandria

log = logging.getLogger("examples")

#: Alexandria id → output file (CIF or POSCAR, chosen to exercise both readers).
EXAMPLES = {
    "agm003157621": "SiC.cif",
    "agm003157614": "BN.cif",
    "agm001262269": "SrClF.cif",
    "agm003157747": "AlP.POSCAR",
    "agm003160166": "KInSe.POSCAR",
}


def main(out: Path = Path(__file__).resolve().parent) -> None:
    entries = {e["mat_id"]: e for e in alexandria("test")}
    for mat_id, fname in EXAMPLES.items():
        entry = entries[mat_id]  # KeyError = not a test-split material any more
        s = Structure.from_dict(entry["structure"])
        path = out / fname
        if fname.endswith(".cif"):
            CifWriter(s).write_file(path)
            text = path.read_text()
            path.write_text(f"# {mat_id} {entry['formula']} (Alexandria, test split)\n{text}")
        else:
            Poscar(s, comment=f"{mat_id} {entry['formula']} (Alexandria, test split)").write_file(path)
        log.info("%s -> %s", mat_id, path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
