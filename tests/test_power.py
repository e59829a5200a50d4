"""ctra.power: the closed-form GLS variance and df of the planned design, the non-central t power, the sample
size search, and agreement with Monte-Carlo fits of whole simulated cohorts through ctra's REML code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctra import power as pw
from ctra.config import PowerSettings
from ctra.models.mixed import BlockStructure, contrast_specs
from ctra.design import build_design


def planned(
    gamma=2.0,
    sigma2=0.07,
    times=("pre", "post"),
    patterns=((0, 1),),
    shares=(1.0,),
    q_within=0,
    markers=0,
    rule=False,
    arms=2,
):
    return pw.PlannedDesign(
        times=times,
        patterns=patterns,
        shares=shares,
        gamma=gamma,
        sigma2=sigma2,
        q_within=q_within,
        markers=markers,
        marker_rule=rule,
        p_between=1,
        arms=arms,
    )


def test_complete_two_draw_design_is_the_two_sample_t_test_on_changes():
    """Complete pre/post: Var = 2 (2 sigma^2) / n whatever gamma, df = 2n - 2, and the power is that of the
    textbook two-sample t test on the changes (the non-central t with 2n - 2 df)."""
    from scipy import stats

    for gamma in (0.0, 0.5, 4.0):
        design = planned(gamma=gamma)
        assert pw.unit_variance(design, "post") == pytest.approx(4.0)
    design = planned()
    n = np.array([5, 20, 80])
    assert pw.design_df(design, n).tolist() == [8, 38, 158]
    delta = 0.3
    sd_change = math.sqrt(2 * design.sigma2)
    nc = delta / (sd_change * np.sqrt(2 / n))
    crit = stats.t.ppf(0.975, 2 * n - 2)
    textbook = stats.nct.sf(crit, 2 * n - 2, nc) + stats.nct.cdf(-crit, 2 * n - 2, nc)
    assert pw.power(design, "post", delta, n, 0.05) == pytest.approx(textbook, rel=1e-12)


def test_single_arm_plans_the_change_from_baseline():
    """No control (arms = 1): the change's variance 2 sigma^2 / n, df n - 1 for complete pre/post."""
    design = planned(arms=1)
    assert pw.unit_variance(design, "post") == pytest.approx(2.0)
    assert pw.design_df(design, np.array([10])).tolist() == [9]


@pytest.mark.parametrize(
    "times, patterns, shares, per_arm",
    [
        (("pre", "post"), ((0, 1), (0,)), (0.9, 0.1), 20),
        (("pre", "w4", "w8"), ((0, 1, 2), (0, 1), (0, 2), (1, 2)), (0.7, 0.1, 0.1, 0.1), 30),
    ],
)
def test_closed_form_variance_equals_the_gls_variance_of_the_planned_cohort(times, patterns, shares, per_arm):
    """With missed draws the closed form is exact for known variance components when the pattern counts are
    n x shares: compare with (X' V^-1 X)^-1 of ctra's own design matrix of that cohort."""
    design = planned(gamma=1.7, times=times, patterns=patterns, shares=shares)
    sheet = pw.planned_sheet(design, per_arm)
    fixed = build_design(sheet, {"arm": ["control", "arm1"], "time": list(times)}, [])
    structure = BlockStructure(fixed)
    _, xhx, _, _ = structure.crossprods(np.array([design.gamma]), fixed.X, np.zeros((len(sheet), 1)))
    cov = design.sigma2 * np.linalg.inv(xhx)
    for spec in contrast_specs(fixed):
        if spec.contrast == "arm_x_time":
            expected = design.sigma2 * pw.unit_variance(design, spec.time) / per_arm
            assert spec.vector @ cov @ spec.vector == pytest.approx(expected, rel=1e-10)


def test_sample_size_is_the_first_n_reaching_the_target_and_scales_to_10000_per_arm():
    design = planned()
    n, achieved = pw.sample_size(design, "post", 0.2, 0.9, 0.05, 2000)
    assert achieved >= 0.9
    assert pw.power(design, "post", 0.2, n - 1, 0.05) < 0.9
    big, _ = pw.sample_size(design, "post", 0.02, 0.8, 0.05, 10_000)  # a 10,000-per-arm search: one call
    assert 5000 < big <= 10_000
    # far tails, where scipy's non-central t gives NaN, are 0 and 1
    assert np.isfinite(pw.power(design, "post", 2.0, np.arange(2, 10_001), 0.05)).all()
    assert pw.sample_size(design, "post", 0.0, 0.8, 0.05, 100)[0] is None  # a zero effect is never reached


def test_auto_markers_leave_the_small_planned_trial_as_the_model_would():
    """`adjust_for_cell_markers: auto` keeps 8 markers only from 20 residual df: small planned trials lose no df."""
    design = planned(markers=8, rule="auto")
    kept = pw.markers_kept(design, np.array([5, 7, 8, 30]))  # 4 n - 4 columns - 8 markers >= 20 from n = 8
    assert kept.tolist() == [False, False, True, True]
    assert pw.design_df(design, np.array([7, 8])).tolist() == [12, 14 - 8]


def test_below_the_marker_threshold_power_uses_the_fit_without_markers():
    """`auto` leaves 8 markers out below n = 8 per arm: there the variance components are the no-marker fit's
    (larger residual variance), from n = 8 on the fit with markers."""
    with_markers = pw.PlannedDesign(
        times=("pre", "post"),
        patterns=((0, 1),),
        shares=(1.0,),
        gamma=2.0,
        sigma2=0.05,
        q_within=0,
        markers=8,
        marker_rule="auto",
        p_between=1,
        arms=2,
        gamma_no_markers=1.5,
        sigma2_no_markers=0.10,
    )
    n = np.array([5, 7, 8, 30])
    got = pw.power(with_markers, "post", 0.4, n, 0.05)
    plain = pw.power(planned(gamma=1.5, sigma2=0.10), "post", 0.4, n[:2], 0.05)
    kept = pw.power(planned(gamma=2.0, sigma2=0.05, markers=8, rule=True), "post", 0.4, n[2:], 0.05)
    np.testing.assert_allclose(got, np.concatenate([plain, kept]), rtol=1e-12)
    assert got[1] < float(pw.power(planned(gamma=2.0, sigma2=0.05), "post", 0.4, 7, 0.05))  # the optimistic old value
    assert "fit without markers" in pw.without_markers_note(with_markers, 7)
    assert pw.without_markers_note(with_markers, 8) == ""


def test_power_table_rows_and_labels():
    effect = {
        "has_control": True,
        "times": ["pre", "post"],
        "patterns": [[0, 1], [0]],
        "pattern_shares": [0.95, 0.05],
        "gamma": 4.3,
        "sigma2": 0.065,
        "q_within": 0,
        "markers_used": [],
        "marker_rule": "auto",
        "p_between": 4,
        "score_sd": 0.6,
        "primary_rows": [
            {"contrast": "arm_x_time", "arm": "a", "time": "post", "estimate": -0.7, "ci_low": -0.95, "ci_high": -0.45}
        ],
    }
    settings = PowerSettings(effects=(0.2, 0.5), alpha=0.05, targets=(0.8, 0.9), attrition=0.1, max_per_arm=500, arms=2)
    table = pw.power_table(effect, settings)
    sizes = table[table["kind"] == "sample_size"]

    def row(label, target):
        (index,) = np.flatnonzero((sizes["effect_label"] == label) & (sizes["target"] == target))
        return sizes.iloc[index]

    assert row("observed", 0.9)["effect"] == -0.7
    assert row("ci_bound", 0.9)["effect"] == pytest.approx(-0.45)
    # the CI bound is nearer zero than the estimate: it needs more participants (winner's curse row)
    assert row("ci_bound", 0.9)["per_arm"] > row("observed", 0.9)["per_arm"]
    assert row("observed", 0.9)["enrolled_per_arm"] == math.ceil(row("observed", 0.9)["per_arm"] / 0.9)
    assert len(sizes[sizes["effect_label"] == "user"]) == 4
    curves = table[table["kind"] == "curve"]
    assert curves["per_arm"].max() == 500
    assert (curves.groupby(["effect_label", "effect"])["power"].apply(lambda p: np.all(np.diff(p) >= -1e-12))).all()


def test_user_effects_are_in_baseline_sd_and_planned_in_score_units():
    """power.effects are multiples of the baseline SD of the score: with score_sd 2, a 0.5 planning effect is 1.0
    score unit, and its sample size is that of a 1.0 score-unit effect (not of 0.5)."""
    effect = {
        "has_control": True,
        "times": ["pre", "post"],
        "patterns": [[0, 1]],
        "pattern_shares": [1.0],
        "gamma": 1.0,
        "sigma2": 1.0,
        "q_within": 0,
        "markers_used": [],
        "marker_rule": False,
        "p_between": 1,
        "score_sd": 2.0,
        "primary_rows": [
            {"contrast": "arm_x_time", "arm": "a", "time": "post", "estimate": -3.0, "ci_low": -5.0, "ci_high": -1.0}
        ],
    }
    settings = PowerSettings(effects=(0.5,), alpha=0.05, targets=(0.9,), attrition=0.0, max_per_arm=2000, arms=2)
    table = pw.power_table(effect, settings)
    sizes = table[table["kind"] == "sample_size"].set_index("effect_label")
    assert sizes.loc["user", "effect"] == pytest.approx(1.0)
    assert sizes.loc["user", "effect_baseline_sd"] == pytest.approx(0.5)
    assert sizes.loc["observed", "effect"] == pytest.approx(-3.0)
    assert sizes.loc["observed", "effect_baseline_sd"] == pytest.approx(-1.5)
    design = pw.PlannedDesign.from_effect(effect, 2)
    assert sizes.loc["user", "per_arm"] == pw.sample_size(design, "post", 1.0, 0.9, 0.05, 2000)[0]
    assert sizes.loc["user", "per_arm"] < pw.sample_size(design, "post", 0.5, 0.9, 0.05, 2000)[0]
    with pytest.raises(ValueError, match="baseline SD"):
        pw.power_table({**effect, "score_sd": float("nan")}, settings)


def test_analytic_power_agrees_with_monte_carlo_fits_of_whole_cohorts():
    """One grid point (default suite): 400 seeded cohorts fitted by ctra's REML with Satterthwaite df."""
    design = planned(gamma=4.3, sigma2=0.065, patterns=((0, 1), (0,)), shares=(0.9, 0.1))
    analytic = float(pw.power(design, "post", 0.2, 12, 0.05))
    observed, low, high = pw.simulate_power(design, "post", 0.2, 12, 0.05, cohorts=400, seed=14)
    se = math.sqrt(analytic * (1 - analytic) / 400)
    assert abs(observed - analytic) < 3 * se, (observed, analytic, low, high)


@pytest.mark.slow
@pytest.mark.parametrize(
    "times, patterns, shares, per_arm, effect",
    [
        (("pre", "post"), ((0, 1),), (1.0,), 8, 0.3),
        (("pre", "post"), ((0, 1), (0,)), (0.9, 0.1), 20, 0.15),
        (("pre", "post"), ((0, 1), (0,)), (0.9, 0.1), 40, 0.0),  # size under the null
        (("pre", "w4", "w8"), ((0, 1, 2), (0, 1)), (0.8, 0.2), 15, 0.2),
    ],
)
def test_analytic_power_agrees_with_monte_carlo_on_a_grid(times, patterns, shares, per_arm, effect):
    design = planned(gamma=2.0, sigma2=0.065, times=times, patterns=patterns, shares=shares)
    analytic = float(pw.power(design, times[-1], effect, per_arm, 0.05))
    cohorts = 2000
    observed, low, high = pw.simulate_power(design, times[-1], effect, per_arm, 0.05, cohorts=cohorts, seed=per_arm)
    se = math.sqrt(analytic * (1 - analytic) / cohorts)
    assert abs(observed - analytic) < 3 * se, (observed, analytic, low, high)
