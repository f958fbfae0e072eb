"""Validation-only sweep of small-N fine-tuning recipes for the CGAT parent (free+foundation+cgat).
Never scores test. One thread."""

import copy
import json
import time
import types
from dataclasses import replace

import numpy as np
import torch

from optiladder.data.store import Store
from optiladder.study import levers as L
from optiladder.training import fit, predict, seed_everything, with_targets
from optiladder.training.freelabels import free_label_set, pretrain_free_labels, transfer_body

torch.set_num_threads(1)
opts = L.LeverOptions(seeds=1, free_epochs=20)
pool, val, test = L.study_sets(Store())
del test
print("pool", len(pool), "val", len(val), flush=True)
feat = L.Featurize()
found = L.CHGNET
nd = feat.featurizer(found).node_dim
pdata = feat.data(pool.arrays.ids, pool.arrays.structures, foundation=found)
vdata = feat.data(val.arrays.ids, val.arrays.structures, foundation=found)
y_ipa, y_rpa = pool.arrays.ipa.astype(np.float32), pool.arrays.rpa.astype(np.float32)
fl = free_label_set()
fdata = feat.data(fl.ids, fl.structures, foundation=found)
t0 = time.time()
fm, _ = pretrain_free_labels(
    fdata,
    fl.y,
    settings=L._settings(opts, "free", 0),
    model_kwargs={"node_dim": nd, "norm": "batch_norm"},
    model_class=type(L._new_model(nd, "cgat")),
)
print("free", time.time() - t0, flush=True)
seed_everything(0)
parent = L._new_model(nd, "cgat")
transfer_body(fm, parent)
fr = fit(
    parent, with_targets(pdata, y_ipa), with_targets(vdata, val.arrays.ipa), L._settings(opts, "scratch", 0)
)
print("ipa", fr.seconds, fr.best_epoch, flush=True)
torch.save(parent, "runs/tlsweep/parent.pt")


def freeze_bn(m):
    bns = [x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)]
    orig = type(m).train

    def train(self, mode=True):
        orig(self, mode)
        for b in bns:
            b.eval()
        return self

    m.train = types.MethodType(train, m)


tuned = L._settings(opts, "tuned", 0)
recipes = {
    "tuned": dict(s=tuned),
    "lr1e-4": dict(s=replace(tuned, lr=1e-4)),
    "lr5e-4": dict(s=replace(tuned, lr=5e-4)),
    "bs16": dict(s=replace(tuned, batch_size=16)),
    "bnfrozen": dict(s=tuned, bn=True),
    "bnfrozen-lr5e-4": dict(s=replace(tuned, lr=5e-4), bn=True),
    "lpft": dict(s=tuned, lp=True),
    "wd1e-3": dict(s=replace(tuned, weight_decay=1e-3)),
}
rows = []
for n in (50, 100):
    for draw in range(3):
        ids = np.sort(np.random.default_rng(100 + draw).permutation(len(pool))[:n])
        tr = with_targets([pdata[i] for i in ids], y_rpa[ids])
        vv = with_targets(vdata, val.arrays.rpa)
        for name, r in recipes.items():
            m = copy.deepcopy(parent)
            if r.get("bn"):
                freeze_bn(m)
            t1 = time.time()
            if r.get("lp"):
                m.set_trainable("head")
                fit(m, tr, vv, replace(r["s"], lr=1e-3, max_epochs=20, patience=5))
                m.set_trainable("all")
            fit(m, tr, vv, replace(r["s"], seed=draw))
            _, summ = L._scores(L._finish(predict(m, vdata)), val)
            rows.append(dict(n=n, draw=draw, recipe=name, val=summ["median_sc"], sec=time.time() - t1))
            print(rows[-1], flush=True)
json.dump(rows, open("runs/tlsweep/rows.json", "w"))
import pandas as pd  # noqa: E402

df = pd.DataFrame(rows)
print(df.pivot_table(index="recipe", columns="n", values="val", aggfunc=["mean", "std"]).round(4))
