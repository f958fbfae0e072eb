"""The target spec: the one place for levels, the grid and target kinds; a model on another grid end to end."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from optiladder.targets import (
    COMPONENTS,
    DEFAULT_GRID,
    LEVELS,
    MODEL_GRID,
    SPECTRUM_POSTPROCESS,
    TARGETS,
    Grid,
    PostProcess,
    TargetError,
    TargetSpec,
    get_target,
    levels_of,
    record_traces,
    sc_target,
    spectrum_target,
)


def test_default_grid_and_names():
    assert (DEFAULT_GRID.start, DEFAULT_GRID.stop, DEFAULT_GRID.n) == (0.0, 20.0, 2001)
    assert DEFAULT_GRID.step == pytest.approx(0.01) and np.array_equal(MODEL_GRID, DEFAULT_GRID.values())
    assert LEVELS == ("ipa", "rpa") and set(TARGETS) == {"ipa", "rpa", "sc_rpa_ipa"}
    assert levels_of("both") == LEVELS and levels_of("rpa") == ("rpa",)
    with pytest.raises(TargetError):
        levels_of("gw")
    assert Grid.of(np.linspace(0, 10, 501)) == Grid(0, 10, 501)
    with pytest.raises(TargetError, match="not uniform"):
        Grid.of(np.array([0.0, 1.0, 3.0]))


def test_spec_round_trip_and_validation():
    for spec in (*TARGETS.values(), spectrum_target("rpa", tensor=True, grid=Grid(0, 8, 81), loss="mse")):
        back = TargetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert back == spec and back.hash() == spec.hash()
    assert get_target("rpa").out_dim == 2001 and get_target("sc_rpa_ipa").out_dim == 1
    assert spectrum_target("ipa", tensor=True).out_dim == 3 * 2001
    assert get_target("rpa").postprocess == SPECTRUM_POSTPROCESS and sc_target().postprocess == PostProcess()
    with pytest.raises(TargetError, match="unknown level"):
        spectrum_target("gw")
    with pytest.raises(TargetError, match="loss"):
        spectrum_target("rpa", loss="huber")
    with pytest.raises(TargetError, match="unknown target"):
        get_target("bse")
    with pytest.raises(TargetError, match="not a target"):
        TargetSpec.from_dict({"name": "x"})


def test_postprocess_smooths_clips_per_component():
    g = Grid(0, 10, 1001)
    x = g.values()
    noisy = np.where(np.arange(g.n) % 2 == 0, 1.0, -1.0) + (x > 5)  # ±1 point-to-point noise and a step
    out = PostProcess(smooth_ev=0.1, clip_min=0.0).apply(noisy[None, :], g)
    assert out.min() >= 0 and abs(out[0, 200] - 0.0) < 1e-3 and abs(out[0, 800] - 1.0) < 1e-3
    two = np.concatenate([np.full(g.n, 5.0), np.zeros(g.n)])[None, :]  # two components, smoothed separately
    both = PostProcess(smooth_ev=0.1).apply(two, g, n_components=2).reshape(2, -1)
    assert np.allclose(both[0], 5.0) and np.allclose(both[1], 0.0)  # nothing leaks across the boundary


def test_record_traces_and_target_values(arrays, learn_fixtures):
    import gzip

    from optiladder.data.store import Store
    from optiladder.spectra import similarity_coefficient

    rec = json.loads(gzip.decompress((learn_fixtures / f"{arrays.ids[0]}.json.gz").read_bytes()))
    tr = record_traces(rec)
    assert np.allclose(tr["rpa"], arrays.rpa[0]) and tr["ipa"].shape == (2001,)
    xyz = record_traces(rec, components=COMPONENTS)["rpa"].reshape(3, -1)
    assert np.allclose(xyz.mean(axis=0), tr["rpa"])
    sc = get_target("sc_rpa_ipa").values(arrays)[:, 0]
    assert np.allclose(sc, similarity_coefficient(arrays.rpa, arrays.ipa), atol=1e-6)
    tensor = Store(learn_fixtures).table(ids=arrays.ids[:3], components=COMPONENTS)
    assert spectrum_target("rpa", tensor=True).values(tensor).shape == (3, 3 * 2001)
    with pytest.raises(TargetError, match="components"):
        get_target("rpa").values(tensor)
    with pytest.raises(TargetError, match="0.0"):  # a target on another grid refuses the default-grid data
        get_target("rpa", grid=Grid(0, 10, 501)).values(arrays)


def test_model_on_another_grid_prediction_plot_and_export_follow_it(tmp_path, learn_fixtures, examples):
    """A tiny model trained on 0–10 eV with 501 points: predictions, plots and exports use its grid."""
    from optiladder.cli.predict import _to_csv
    from optiladder.data.export import export, read_export
    from optiladder.data.store import Store
    from optiladder.predict import Predictor, prediction_figure
    from optiladder.pretrained import load_model
    from optiladder.training import TrainSettings, save_model, train_model

    grid = Grid(0.0, 10.0, 501)
    store = Store(learn_fixtures)
    data = store.table(grid=grid)
    small = {"node_hidden": [8, 8], "gat_channels": [8, 8], "gat_heads": [1, 1], "head_hidden": [16]}
    res = train_model(data, target=get_target("rpa", grid=grid), settings=TrainSettings(max_epochs=2),
                      model_kwargs=small, cache=False)  # fmt: skip
    model = load_model(save_model(tmp_path / "rpa10", res.model))
    assert model.target.grid == grid and model.net.config["out_dim"] == 501
    [pred] = Predictor({"rpa": model}).predict([examples / "SiC.cif"])
    sp = pred.spectra["rpa"]
    assert (
        np.array_equal(sp.omega, grid.values())
        and sp.trace_im().shape == (501,)
        and sp.trace_re().shape == (501,)
    )
    assert sp.provenance["model_id"] == model.id
    fig = prediction_figure(pred)
    assert fig.axes[0].get_xlim() == (0.0, 10.0) and fig.axes[0].lines[0].get_xdata()[-1] == 10.0
    rows = list(csv.DictReader(io.StringIO(_to_csv([pred]))))
    assert len(rows) == 501 and float(rows[-1]["omega_eV"]) == 10.0
    out = export(store, tmp_path / "rpa10.npz", level="rpa", splits=("train",), grid=model.target.grid)
    back = read_export(out.path)
    assert back["omega"].shape == (501,) and back["omega"][-1] == 10.0 and back["eps_im"].shape[1] == 501
    assert "501 points" in out.line()
