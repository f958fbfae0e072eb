"""The shipped models' predictions do not change with the code (snapshot written by ``make_snapshot.py``).

Trace of Im ε (IPA and RPA, after the models' recorded post-processing) and the predicted SC[RPA; IPA] for the
bundled examples and 20 dataset structures agree with the snapshot to 1e-5 (absolute), on the float32 path
(``head_precision="fp32"``: the default float16 heads are bounded against it in test_fast.py). Only retraining
the shipped models may change them; the snapshot is then regenerated in the same commit.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _snapshot_module():
    spec = importlib.util.spec_from_file_location("make_snapshot", HERE / "make_snapshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_predictions_match_snapshot(predictor):
    mod = _snapshot_module()
    with np.load(mod.OUT) as z:
        want = {k: z[k] for k in z.files}
    assert len(want["names"]) == 25 and want["ipa"].shape == (25, 2001)
    from optiladder.predict import Predictor

    got = mod.predictions(Predictor(predictor.models, head_precision="fp32"))
    assert list(got["names"]) == list(want["names"])
    for key in ("ipa", "rpa"):
        assert want[key].max() > 1.0  # real spectra, not zeros
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(got["sc"], want["sc"], rtol=0, atol=1e-5)
