"""Write ``fixtures/snapshot.npz``: the shipped models' predictions for the bundled examples and 20 dataset
structures (trace of Im ε of IPA and RPA on the model grid after post-processing, and the predicted SC).

Run it only when the shipped models are retrained (the card then says so): ``python tests/predict/make_snapshot.py``.
The snapshot test (``test_snapshot.py``) checks that code changes leave these predictions unchanged (1e-5).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "fixtures" / "snapshot.npz"
#: structures of tests/fixtures/learn in the snapshot: every third record (sorted by id), 20 of them
N_DATASET = 20


def inputs() -> tuple[list, list[str]]:
    """(sources, names): the example files, then 20 structures of tests/fixtures/learn (every 3rd id, sorted)."""
    from pymatgen.core import Structure

    examples = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix in (".cif", ".POSCAR"))
    records = sorted((ROOT / "tests" / "fixtures" / "learn").glob("*.json.gz"))[::3][:N_DATASET]
    sources: list = [str(p) for p in examples]
    names = [p.name for p in examples]
    for p in records:
        rec = json.loads(gzip.decompress(p.read_bytes()))
        sources.append(Structure.from_dict(rec["structure"]))
        names.append(rec["mat_id"])
    return sources, names


def predictions(predictor) -> dict[str, np.ndarray]:
    sources, names = inputs()
    res = predictor.predict(sources, names)
    bad = [r.error for r in res if not r.ok]
    assert not bad, bad
    return {
        "names": np.array(names),
        "ipa": np.stack([r.spectra["ipa"].trace_im() for r in res]),
        "rpa": np.stack([r.spectra["rpa"].trace_im() for r in res]),
        "sc": np.array([r.sc for r in res]),
    }


def main() -> None:
    import torch

    from optiladder.predict import Predictor

    torch.set_num_threads(1)
    # the float32 path: what the models compute (the default float16 heads are bounded against it in test_fast.py)
    p = predictions(Predictor.from_pretrained(("ipa", "rpa"), sc=True, head_precision="fp32"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT, names=p["names"], ipa=p["ipa"].astype(np.float32), rpa=p["rpa"].astype(np.float32), sc=p["sc"]
    )
    print(f"{OUT}: {len(p['names'])} structures, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
