"""SevenNet-0 node features (alone and after CHGNet's): invariant, permuting with the sites, batched = one by one,
cached per model, recorded in featurizer.json; the shipped featurizer's keys, and CHGNet-alone's unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "src" / "optiladder" / "pretrained").glob("*/*/featurizer.json"))
BOTH = ("chgnet-0.3.0", "sevennet-0")


def _train_structures(n: int, min_sites: int = 1) -> list[dict]:
    """The first ``n`` bundled Alexandria train structures with at least ``min_sites`` sites (dicts)."""
    from optiladder.structures import alexandria

    return [e["structure"] for e in alexandria("train") if e["nsites"] >= min_sites][:n]


def _moved(structure, seed: int):
    """The same crystal rotated by a random proper rotation and translated by a random vector (Å)."""
    from pymatgen.core import Lattice, Structure
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(random_state=seed).as_matrix()
    shift = np.random.default_rng(seed).normal(size=3) * 2.0
    return Structure(
        Lattice(structure.lattice.matrix @ rot.T),
        structure.species,
        structure.cart_coords @ rot.T + shift,
        coords_are_cartesian=True,
    )


# ---- no package needed -------------------------------------------------------------------------------
def test_shipped_featurizers_and_their_cache_keys_are_unchanged():
    """The shipped models' featurizer.json (CHGNet 0.3.0 alone since v2026.12.07b; CHGNet and SevenNet-0 in
    v2026.12.06b–v2026.12.07) reads back to the same spec, written byte for byte as saved, 77 node features, with
    the CHGNet-only keys it always had (graph cache 20a6acbbb09725f8, embeddings chgnet-0.3.0.npz); the two-model
    featurizer of the studies' free+chgnet+sevennet variant keeps its keys (d90c63b15a99f4dd, one embedding file
    per model, CHGNet's the same file), so earlier caches stay valid."""
    from optiladder.foundation import EmbeddingCache, FoundationSpec
    from optiladder.graphs import FoundationFeaturizer, GraphCache, featurizer_from_spec
    from optiladder.training.model import _plain

    assert len(SHIPPED) == 3
    for path in SHIPPED:
        text = path.read_text()
        feat = featurizer_from_spec(json.loads(text))
        assert isinstance(feat, FoundationFeaturizer)
        assert json.dumps(_plain(feat.spec()), indent=1) + "\n" == text
        assert feat.models == ("chgnet-0.3.0",) and feat.node_dim == 77
        assert feat.hash() == "20a6acbbb09725f8" == FoundationFeaturizer().hash()
        assert GraphCache(feat, root="/nonexistent").path.name == "graphs-20a6acbbb09725f8.npz"
        cache = EmbeddingCache(FoundationSpec(feat.models), root="/nonexistent")
        assert {k: v.name for k, v in cache.paths.items()} == {"chgnet-0.3.0": "chgnet-0.3.0.npz"}
    both = FoundationFeaturizer(foundation=BOTH)
    assert both.hash() == "d90c63b15a99f4dd" and both.models == BOTH and both.node_dim == 205
    assert GraphCache(both, root="/nonexistent").path.name == "graphs-d90c63b15a99f4dd.npz"
    cache = EmbeddingCache(FoundationSpec(BOTH), root="/nonexistent")
    assert {k: v.name for k, v in cache.paths.items()} == {m: f"{m}.npz" for m in BOTH}
    assert EmbeddingCache(FoundationSpec(), root="/nonexistent").path.name == "chgnet-0.3.0.npz"


def test_two_model_featurizer_round_trips_through_featurizer_json(tmp_path):
    from optiladder.foundation import FoundationSpec
    from optiladder.graphs import FoundationFeaturizer, GraphCache, featurizer_from_spec

    feat = FoundationFeaturizer(foundation=BOTH)
    assert feat.models == BOTH and feat.node_dim == 13 + 64 + 128 and feat.foundation_dim == 192
    spec = feat.spec()
    assert spec["name"] == "optimate+foundation" and spec["params"]["foundation"] == list(BOTH)
    (tmp_path / "featurizer.json").write_text(json.dumps(spec, indent=1))
    back = featurizer_from_spec(json.loads((tmp_path / "featurizer.json").read_text()))
    assert back == feat and back.hash() == feat.hash() and back.node_dim == 205
    # another model set, another order: another graph cache
    hashes = {
        FoundationFeaturizer().hash(),
        feat.hash(),
        FoundationFeaturizer(foundation=BOTH[::-1]).hash(),
        FoundationFeaturizer(foundation="sevennet-0").hash(),
    }
    assert len(hashes) == 4
    assert GraphCache(feat, root=tmp_path).path.name == f"graphs-{feat.hash()}.npz"
    assert FoundationFeaturizer(foundation=["chgnet-0.3.0"]) == FoundationFeaturizer()
    for bad in ("chgnet-9", ["chgnet-0.3.0", "chgnet-0.3.0"], []):
        with pytest.raises(ValueError):
            featurizer_from_spec(
                {"name": "optimate+foundation", "params": {**spec["params"], "foundation": bad}}
            )
    # the spec of the embeddings: sizes, the old one-model dict form
    fs = FoundationSpec(BOTH)
    assert fs.dims == (64, 128) and fs.dim == 192 and fs.name == "chgnet-0.3.0+sevennet-0"
    assert FoundationSpec.from_dict(fs.to_dict()) == fs
    assert FoundationSpec.from_dict({"model": "chgnet-0.3.0", "dim": 64}) == FoundationSpec()
    with pytest.raises(ValueError, match="192"):
        FoundationSpec(BOTH, dim=64)


def test_missing_sevenn_is_one_line(monkeypatch):
    """A featurizer naming SevenNet-0 without the sevenn package (simulated): one line naming the package and
    the extra, when the model loads (check_available), not a traceback at the first prediction."""
    from optiladder import foundation
    from optiladder.graphs import FoundationFeaturizer

    monkeypatch.setitem(foundation.PACKAGES, "sevennet-0", "sevenn_not_installed_here")
    FoundationFeaturizer().check_available()  # CHGNet alone does not need it
    with pytest.raises(ValueError) as info:
        FoundationFeaturizer(foundation=BOTH).check_available()
    msg = str(info.value)
    assert "\n" not in msg and "sevennet-0" in msg
    assert (
        "'sevenn_not_installed_here' package, which is not installed" in msg
        and "optiladder[foundation]" in msg
    )


# ---- with sevenn ----------------------------------------------------------------------------------------
def test_sevennet_invariant_to_rotation_translation_and_site_order():
    pytest.importorskip("sevenn")
    from pymatgen.core import Structure

    from optiladder.foundation import FoundationSpec, embeddings

    spec = FoundationSpec("sevennet-0")
    (d,) = _train_structures(1, min_sites=6)
    s = Structure.from_dict(d)
    perm = np.random.default_rng(1).permutation(len(s))
    assert (perm != np.arange(len(s))).any()
    permuted = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    moved = _moved(s, 3)
    assert not np.allclose(s.cart_coords, moved.cart_coords)
    a, b, c = embeddings([s, moved, permuted], spec)
    assert a.shape == (len(s), 128) and a.dtype == np.float32
    np.testing.assert_allclose(b, a, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(c, a[perm], atol=2e-5, rtol=1e-5)
    # not a constant: a strained copy and different sites give different vectors
    strained = s.copy()
    strained.apply_strain(0.05)
    (e,) = embeddings([strained], spec)
    assert np.abs(e - a).max() > 1e-2
    assert np.abs(a[0] - a[-1]).max() > 1e-1


def test_batched_equals_one_by_one_and_a_bad_input_fails_alone():
    """40 structures in batches of 32 (two forwards) give each the embedding it gets alone; a structure SevenNet-0
    cannot describe (radon: not in its training data) gets its own one-line error, the rest of its batch go on."""
    pytest.importorskip("sevenn")
    from pymatgen.core import Lattice, Structure

    from optiladder.foundation import FoundationInputError, model_embeddings_each

    structs = _train_structures(40)
    batched = model_embeddings_each(structs, "sevennet-0", batch_size=32)
    alone = model_embeddings_each(structs, "sevennet-0", batch_size=1)
    for x, y, d in zip(batched, alone, structs, strict=True):
        assert x.shape == (len(d["sites"]), 128)
        np.testing.assert_allclose(x, y, atol=2e-5, rtol=1e-5)
    radon = Structure(Lattice.cubic(4.0), ["Rn", "Si"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    out = model_embeddings_each([structs[0], radon, structs[1]], "sevennet-0")
    assert isinstance(out[1], FoundationInputError) and out[1].model == "sevennet-0"
    assert "\n" not in str(out[1]) and "Rn" in str(out[1])
    np.testing.assert_allclose(out[0], alone[0], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(out[2], alone[1], atol=2e-5, rtol=1e-5)


def test_two_model_cache_shares_each_model_file(tmp_path, monkeypatch):
    """CHGNet ‖ SevenNet-0 embeddings are the two models' embeddings side by side; the cache keeps one file per
    model, so the CHGNet-only spec reads the same CHGNet values back without running any model."""
    pytest.importorskip("sevenn")
    pytest.importorskip("chgnet")
    from optiladder import foundation
    from optiladder.foundation import EmbeddingCache, FoundationSpec, embeddings

    structs = _train_structures(3)
    both = EmbeddingCache(FoundationSpec(BOTH), root=tmp_path).get(structs)
    assert set(p.name for p in tmp_path.glob("*.npz")) == {"chgnet-0.3.0.npz", "sevennet-0.npz"}
    direct = embeddings(structs, FoundationSpec(BOTH))
    for e, f, d in zip(both, direct, structs, strict=True):
        assert e.shape == (len(d["sites"]), 192)
        np.testing.assert_allclose(e, f, atol=2e-4)

    def no_model(_):
        raise AssertionError("a cached embedding was computed again")

    monkeypatch.setitem(foundation._BATCH_FUNCS, "chgnet-0.3.0", no_model)
    monkeypatch.setitem(foundation._BATCH_FUNCS, "sevennet-0", no_model)
    chg = EmbeddingCache(FoundationSpec(), root=tmp_path).get(structs)
    sev = EmbeddingCache(FoundationSpec("sevennet-0"), root=tmp_path).get(structs)
    for e, c, s in zip(both, chg, sev, strict=True):
        np.testing.assert_array_equal(e, np.concatenate([c, s], axis=1))


def test_two_model_graphs_isolate_a_bad_input():
    """The two-model featurizer builds each graph as it does alone (13 + 192 node features); an input CHGNet
    cannot describe fails alone, naming the model."""
    pytest.importorskip("sevenn")
    pytest.importorskip("chgnet")
    from pymatgen.core import Lattice, Structure

    from optiladder.graphs import FoundationFeaturizer, GraphError, structure_graph, structure_graphs

    feat = FoundationFeaturizer(foundation=BOTH)
    good = [Structure.from_dict(d) for d in _train_structures(2)]
    lonely = Structure(Lattice.cubic(7.5), ["Na"], [[0, 0, 0]])  # no neighbour within CHGNet's 6 Å
    out = structure_graphs([good[0], lonely, good[1]], feat)
    assert isinstance(out[1], GraphError) and str(out[1]).startswith("no chgnet-0.3.0 features")
    for g, s in zip([out[0], out[2]], good, strict=True):
        alone = structure_graph(s, feat)
        assert g.x.shape == (len(s), 205)
        np.testing.assert_allclose(g.x, alone.x, atol=2e-4)
