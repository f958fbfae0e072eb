"""Validation only: does a longer IPA stage (the parent hit the 80-epoch cap) help the RPA fine-tuning?"""

import copy
from dataclasses import replace

import numpy as np
import torch

from optiladder.data.store import Store
from optiladder.study import levers as L
from optiladder.training import fit, predict, probe_then_fit, with_targets

torch.set_num_threads(1)
opts = L.LeverOptions()
pool, val, test = L.study_sets(Store())
del test
pool_ids = set(pool.arrays.ids)
feat = L.Featurize()
found = L.CHGNET
pdata = feat.data(pool.arrays.ids, pool.arrays.structures, foundation=found)
vdata = feat.data(val.arrays.ids, val.arrays.structures, foundation=found)
y_ipa, y_rpa = pool.arrays.ipa.astype(np.float32), pool.arrays.rpa.astype(np.float32)
p80 = torch.load("runs/tlsweep/parent.pt", weights_only=False)
p160 = copy.deepcopy(p80)
fr = fit(
    p160, with_targets(pdata, y_ipa), with_targets(vdata, val.arrays.ipa), L._settings(opts, "scratch", 0)
)
print("continued", fr.best_epoch, fr.epochs_run, fr.best_val_loss, flush=True)
from optiladder.training import batches, evaluate  # noqa: E402

for nm, p in (("p80", p80), ("p160", p160)):
    print(nm, "ipa val loss", evaluate(p, batches(with_targets(vdata, val.arrays.ipa), 256)), flush=True)
tuned = L._settings(opts, "tuned", 0)
for n in (50, 100):
    for draw in range(3):
        ids = np.sort(np.random.default_rng(100 + draw).permutation(len(pool))[:n])
        tr = with_targets([pdata[i] for i in ids], y_rpa[ids])
        vv = with_targets(vdata, val.arrays.rpa)
        for nm, p in (("p80", p80), ("p160", p160)):
            for rec in ("tuned", "lpft"):
                m = copy.deepcopy(p)
                if rec == "lpft":
                    probe_then_fit(m, tr, vv, replace(tuned, seed=draw), L._settings(opts, "probe", draw))
                else:
                    fit(m, tr, vv, replace(tuned, seed=draw))
                _, summ = L._scores(L._finish(predict(m, vdata)), val)
                print(
                    dict(n=n, draw=draw, parent=nm, recipe=rec, val=round(summ["median_sc"], 4)), flush=True
                )
