"""Scaling laws, the two-size law, its backtest and the planner on synthetic points with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.study.laws import (
    Law,
    Plane,
    backtest,
    fit_plane,
    fit_power_law,
    format_plan,
    plan,
    slopes_differ,
)

SIZES = np.array([25, 50, 100, 200, 400])


def test_power_law_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    n = np.repeat(SIZES, 3)  # three "seeds" per size
    y = 3.0 * n**-0.35 * np.exp(rng.normal(0, 0.03, n.size))
    law = fit_power_law(n, y)
    assert abs(law.slope + 0.35) < 0.05 and law.slope_ci[1] - law.slope_ci[0] < 0.1
    # the 95 % interval holds the true slope in ~95 % of repeated experiments
    hits = [
        (lambda f: f.slope_ci[0] < -0.35 < f.slope_ci[1])(
            fit_power_law(n, 3.0 * n**-0.35 * np.exp(rng.normal(0, 0.03, n.size)))
        )
        for _ in range(300)
    ]
    assert 0.91 <= np.mean(hits) <= 0.99
    assert law.r2 > 0.95 and law.n_points == 15 and law.n_sizes == 5
    assert law.straight is True  # a power law has no curvature on log-log axes
    # a saturating error (a floor) is not a straight line, and the check says so
    bent = 0.1 + 3.0 * n**-0.8
    assert fit_power_law(n, bent * np.exp(rng.normal(0, 0.01, n.size))).straight is False
    # two slopes: the same law twice does not differ, a much flatter one does
    flat = fit_power_law(n, 3.0 * n**-0.05 * np.exp(rng.normal(0, 0.03, n.size)))
    assert not slopes_differ(law, fit_power_law(n, y[::-1][::-1]))["differ"]
    assert slopes_differ(law, flat)["differ"]


def test_power_law_refuses_too_few_points():
    with pytest.raises(ValueError, match="≥ 3 points"):
        fit_power_law([25, 50], [0.3, 0.2])
    with pytest.raises(ValueError):
        fit_power_law([25, 25, 25], [0.3, 0.2, 0.25])


def _cells(a=-0.2, b=-0.1, c=0.0, noise=0.01, seeds=3):
    rng = np.random.default_rng(1)
    out = []
    for p in (25, 50, 100, 200, 269):
        for r in (25, 50, 100, 200, 269):
            for _ in range(seeds):
                err = np.exp(c + a * np.log(r) + b * np.log(p) + rng.normal(0, noise))
                out.append({"n_rpa": r, "n_pre": p, "sc": 1 - err})
    return out


def test_plane_and_backtest_recover_the_full_data():
    cells = _cells()
    plane = fit_plane([c["n_rpa"] for c in cells], [c["n_pre"] for c in cells], [c["sc"] for c in cells])
    assert plane.slope_ci(1)[0] < -0.2 < plane.slope_ci(1)[1]
    assert plane.slope_ci(2)[0] < -0.1 < plane.slope_ci(2)[1]
    truth = 1 - np.exp(-0.2 * np.log(269) - 0.1 * np.log(269))
    sc, lo, hi = plane.predict(269, 269)
    assert lo < truth < hi and abs(sc - truth) < 0.01
    bt = backtest(cells, (269, 269))
    assert bt["fitted_on"] == 4 * 4 * 3  # only cells below the full data on both axes
    assert bt["measured_in_predicted"] and bt["predicted_half_width"] < 0.03 and bt["passes"]
    # a law that does not hold (the full data far better than the trend) fails the backtest
    bad = [dict(c, sc=c["sc"] + 0.1) if (c["n_rpa"], c["n_pre"]) == (269, 269) else c for c in cells]
    assert not backtest(bad, (269, 269))["passes"]


def _plane(a, b, noise=1e-4):
    return Plane([0.0, a, b], [[noise, 0, 0], [0, noise, 0], [0, 0, noise]], 40, 0.99, 43, 269, 269)


COSTS = {"ipa+rpa": {2: 20.0, 3: 50.0, 4: 100.0}, "cheap-ipa": {2: 4.0, 3: 10.0, 4: 20.0}}
AVAIL = {"ipa+rpa": {2: 50, 3: 500, 4: 5000}, "cheap-ipa": {2: 50, 3: 500, 4: 5000}}


def test_planner_follows_the_slopes():
    # pre-training does nothing: every core-hour goes to IPA + RPA
    p = plan(10, _plane(-0.3, 0.0), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    assert p.counts["ipa+rpa"] and not p.counts["cheap-ipa"] and p.n_rpa > 269
    assert sum(p.core_hours.values()) <= 10 + 1e-9 and p.sc > p.now[0]
    # the cheapest cells first, each size at most what is available
    assert p.counts["ipa+rpa"][2] == 50
    # RPA size does nothing, pre-training does: everything on cheap IPA
    q = plan(10, _plane(0.0, -0.3), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    assert q.counts["cheap-ipa"] and not q.counts["ipa+rpa"] and q.n_pre > p.n_pre
    assert any("RPA-size slope" in w for w in q.warnings) and not q.decisive
    # more budget never predicts less
    r = plan(40, _plane(-0.3, -0.1), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    s = plan(10, _plane(-0.3, -0.1), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    assert r.sc >= s.sc and r.interval[0] <= r.sc <= r.interval[1]
    assert "expected median test SC" in format_plan(r)


def test_planner_says_when_it_cannot_answer():
    z = plan(0.001, _plane(-0.3, -0.1), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    assert not any(z.counts.values()) and any("buys no calculation" in w for w in z.warnings)
    vague = plan(10, _plane(-0.3, -0.1, noise=0.5), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    assert not vague.decisive and any("too uncertain" in w for w in vague.warnings)
    only = plan(
        10, _plane(-0.3, -0.1), n_rpa=269, n_pre=269, costs={"ipa+rpa": COSTS["ipa+rpa"]}, available=AVAIL
    )
    assert any("no measured cost for cheap-ipa" in w for w in only.warnings)
    with pytest.raises(ValueError):
        plan(-1, _plane(-0.3, -0.1), n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)


def test_planner_prices_each_structure_and_never_buys_one_twice():
    # 3-atom cells: one cheap, two dear. The per-size median (1000 s) would buy no 3-atom cell for 30 s; per
    # structure the cheap one goes first, beside the 4-atom one
    cands = {"ipa+rpa": [("a3", 3, 10.0), ("b3", 3, 1000.0), ("c3", 3, 1000.0), ("d4", 4, 20.0)]}
    p = plan(30 / 3600, _plane(-0.3, 0.0), n_rpa=269, n_pre=269, candidates=cands)
    assert p.ids["ipa+rpa"] == ["a3", "d4"] and p.counts["ipa+rpa"] == {3: 1, 4: 1}
    assert p.core_hours["ipa+rpa"] == pytest.approx(30 / 3600)
    medians = {"ipa+rpa": {3: 1000.0, 4: 20.0}}
    q = plan(
        30 / 3600, _plane(-0.3, 0.0), n_rpa=269, n_pre=269, costs=medians, available={"ipa+rpa": {3: 3, 4: 1}}
    )
    assert q.counts["ipa+rpa"] == {4: 1} and p.n_rpa == q.n_rpa + 1
    # the cheap IPA part does not buy what the IPA + RPA part bought (its IPA spectrum comes with it)
    cands["cheap-ipa"] = [("a3", 3, 2.0), ("e2", 2, 3.0), ("d4", 4, 4.0), ("b3", 3, 200.0)]
    r = plan(14 / 3600, _plane(-0.6, -0.3), n_rpa=269, n_pre=269, candidates=cands)
    assert r.ids == {"ipa+rpa": ["a3"], "cheap-ipa": ["e2"]}
    assert (r.n_rpa, r.n_pre) == (270, 271)
    assert "ids" not in r.alternatives[0] and r.to_dict()["ids"] == r.ids
    z = plan(1 / 3600, _plane(-0.6, -0.3), n_rpa=269, n_pre=269, candidates=cands)
    assert any("cheapest costs 0.001 core-hours" in w for w in z.warnings)


# ---- laws with an irreducible error, by cell size, bootstrap intervals, choice on validation -------------
GRID = (25, 50, 100, 269)


def _floor_cells(floor=0.2, seeds=4, noise=0.006, sizes=GRID, rng_seed=3):
    """Median SC of a saturating law E = E∞ + 2·N_RPA^-0.5 + 1.5·N_pre^-0.5 (seeds: noise in SC)."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for s in range(seeds):
        for p in sizes:
            for r in sizes:
                e = floor + 2.0 * r**-0.5 + 1.5 * p**-0.5
                out.append({"n_rpa": r, "n_pre": p, "seed": s, "sc": 1 - e + rng.normal(0, noise)})
    return out


def test_floor_law_recovers_a_saturating_error_where_the_plane_overshoots():
    from optiladder.study.laws import fit_form, fit_law, law_error

    cells = _floor_cells()
    p = fit_form(
        "floor-sum", [c["n_rpa"] for c in cells], [c["n_pre"] for c in cells], [c["sc"] for c in cells]
    )
    assert abs(p[0] - 0.2) < 0.03 and -0.8 < p[2] < -0.3 and -0.8 < p[4] < -0.3
    truth = 1 - (0.2 + 2.0 * 269**-0.5 + 1.5 * 269**-0.5)
    assert abs(float(1 - law_error("floor-sum", p, np.log(269), np.log(269))) - truth) < 0.01
    # the backtest: the floor law holds the full data, the plane (no floor) overshoots it
    good = backtest(cells, (269, 269), "floor-sum")
    assert good["bootstrap"] == "seeds" and good["fitted_on"] == 9 * 4
    assert good["measured_in_predicted"] and good["predicted_half_width"] <= 0.03 and good["passes"]
    plane = backtest(cells, (269, 269))
    assert plane["predicted"] > plane["measured"] and abs(good["error"]) < abs(plane["error"])
    # a fitted law: interval holds its point, narrows with more seeds, round-trips through a dict
    law = fit_law(cells, "floor-sum", n_boot=60)
    sc, lo, hi = law.predict(269, 269)
    _, lo4, hi4 = law.predict(269, 269, seeds=4)
    assert lo <= sc <= hi and hi4 - lo4 < hi - lo
    again = Law.from_dict(law.to_dict())
    assert again.predict(400, 800) == law.predict(400, 800)
    a_lo, a_hi = law.slope_ci(1)
    assert a_lo < a_hi < 0  # more RPA spectra still help, less than on a plane


def test_law_by_cell_size_follows_the_composition_of_the_test_split():
    """Two cell sizes with different floors: the law per size, mapped through the per-material SC of the
    reference model, predicts the median over the mixed test split; the overall median cannot see that the
    small-cell share saturates while the large-cell share keeps improving."""
    from optiladder.study.laws import fit_law

    rng = np.random.default_rng(5)
    nsites = np.array([3] * 40 + [4] * 60)
    spread = rng.normal(0, 0.05, nsites.size)

    def err(k, r, p):
        return (0.18 + 0.5 * r**-0.5 + 0.5 * p**-0.5) if k == 3 else (0.05 + 3.0 * r**-0.5 + 3.0 * p**-0.5)

    cells, pm = [], {}
    for s in range(3):
        for p in GRID:
            for r in GRID:
                e = np.where(nsites == 3, err(3, r, p), err(4, r, p)) * np.exp(
                    spread + rng.normal(0, 0.01, nsites.size)
                )
                v = 1 - e
                pm[(s, r, p)] = v.tolist()
                cells.append({"n_rpa": r, "n_pre": p, "seed": s, "sc": float(np.median(v)),
                              "by_size": {"3": float(np.median(v[nsites == 3])), "4": float(np.median(v[nsites == 4]))}})  # fmt: skip
    below = [c for c in cells if c["n_rpa"] < 269 and c["n_pre"] < 269]
    pm_below = {k: v for k, v in pm.items() if k[1] < 269 and k[2] < 269}
    law = fit_law(below, "floor-sum", per_material=pm_below, nsites=nsites.tolist(), n_boot=40)
    assert law.by_size and law.reference["n_rpa"] == 100 and law.reference["n_pre"] == 100
    measured = np.mean([c["sc"] for c in cells if (c["n_rpa"], c["n_pre"]) == (269, 269)])
    sc, lo, hi = law.predict(269, 269, seeds=3)
    assert abs(sc - measured) < 0.015 and lo <= measured <= hi
    # at the reference cell itself the mapping is the identity
    ref = np.mean([np.median(pm[(s, 100, 100)]) for s in range(3)])
    assert abs(law.predict(100, 100)[0] - ref) < 1e-9


def test_choose_law_on_validation_prefers_the_law_that_backtests():
    from optiladder.study.laws import choose_law, law_from_analysis

    ch = choose_law(_floor_cells(rng_seed=7), (269, 269), n_boot=30)
    assert ch["chosen"]["form"] != "plane" and ch["chosen"]["by_size"] is False
    plane_row = next(d for d in ch["designs"] if d["form"] == "plane")
    best_row = next(d for d in ch["designs"] if d["form"] == ch["chosen"]["form"])
    assert best_row["max_abs_error"] < plane_row["max_abs_error"]
    # the planner reads the chosen law (or the plane of an older report) from a report's analysis
    from optiladder.study.laws import fit_law

    law = fit_law(_floor_cells(), "floor-sum", n_boot=30)
    assert isinstance(law_from_analysis({"law": law.to_dict(), "plane": {}}), Law)
    assert isinstance(law_from_analysis({"plane": _plane(-0.3, -0.1).to_dict()}), Plane)
    with pytest.raises(ValueError):
        law_from_analysis({"plane": {"error": "no heat map"}})
    p = plan(10, law, n_rpa=269, n_pre=269, costs=COSTS, available=AVAIL)
    assert p.interval[0] <= p.sc <= p.interval[1] and p.sc >= p.now[0]
    assert "expected median test SC" in format_plan(p)
