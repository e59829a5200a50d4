"""The REML mixed model against statsmodels (an independent implementation), and design checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ctra.errors import InputError
from ctra.models.mixed import benjamini_hochberg, contrast_specs, contrast_table, fit_reml
from ctra.design import build_design, check_full_rank

LEVELS = {"arm": ["control", "a", "b"], "time": ["pre", "post", "fu"]}


def cohort(seed: int, n: int = 45, effect: float = 0.0, drop: float = 0.2, period: bool = False) -> pd.DataFrame:
    """Participants with random intercepts; some miss their last draw."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        arm = LEVELS["arm"][i % 3]
        u = rng.normal(0, 0.8)
        for t in LEVELS["time"]:
            if t == "fu" and rng.random() < drop:
                continue
            y = u + rng.normal() + (effect if (arm == "a" and t != "pre") else 0.0)
            rows.append(
                {
                    "sample": f"s{i}{t}",
                    "participant": f"p{i:02d}",
                    "arm": arm,
                    "time": t,
                    "age": rng.normal(50, 10),
                    "sex": rng.choice(["F", "M"]),
                    "y": y,
                }
            )
    return pd.DataFrame(rows).set_index("sample")


def test_fixed_effects_and_variances_match_statsmodels_mixedlm():
    obs = cohort(1)
    design = build_design(obs, LEVELS, ["age", "sex"])
    fit = fit_reml(design, obs["y"].to_numpy())
    data = obs.assign(age=obs["age"] - obs["age"].mean())
    reference = smf.mixedlm(
        "y ~ C(arm, Treatment('control')) * C(time, Treatment('pre')) + age + C(sex)", data, groups=data["participant"]
    ).fit(reml=True)
    ours = pd.Series(fit.beta, index=design.columns)
    assert np.isclose(fit.component_variances[0], float(reference.cov_re.iloc[0, 0]), rtol=1e-3)
    assert np.isclose(fit.sigma2, reference.scale, rtol=1e-3)
    assert np.isclose(ours["age"], reference.fe_params["age"], atol=1e-5)
    names = reference.fe_params.index
    inter = [n for n in names if ":" in n and "T.a]" in n and "T.post]" in n][0]
    assert np.isclose(ours["arm[T.a]:time[T.post]"], reference.fe_params[inter], atol=1e-4)
    se_ref = reference.bse_fe[inter]
    j = design.columns.index("arm[T.a]:time[T.post]")
    se_ours = np.sqrt(fit.cov_beta[j, j])
    assert np.isclose(se_ours, se_ref, rtol=1e-3)


def test_contrasts_are_the_documented_linear_combinations():
    obs = cohort(2)
    design = build_design(obs, LEVELS, [])
    fit = fit_reml(design, obs["y"].to_numpy())
    table = contrast_table(fit, design, contrast_specs(design)).set_index(["contrast", "arm", "time"])
    beta = pd.Series(fit.beta, index=design.columns)
    assert np.isclose(table.loc[("arm_x_time", "a", "post"), "estimate"], beta["arm[T.a]:time[T.post]"])
    assert np.isclose(table.loc[("change", "control", "fu"), "estimate"], beta["time[T.fu]"])
    assert np.isclose(
        table.loc[("change", "b", "post"), "estimate"], beta["time[T.post]"] + beta["arm[T.b]:time[T.post]"]
    )
    # 2 non-control arms x 2 later times, then 3 arms x 2 changes
    assert len(table) == 4 + 6
    assert (table["ci_low"] < table["estimate"]).all() and (table["estimate"] < table["ci_high"]).all()


def test_balanced_design_without_missing_draws_recovers_ordinary_difference_in_differences():
    obs = cohort(3, n=30, drop=0.0)
    design = build_design(obs, LEVELS, [])
    fit = fit_reml(design, obs["y"].to_numpy())
    table = contrast_table(fit, design, contrast_specs(design)).set_index(["contrast", "arm", "time"])
    cell = obs.groupby(["arm", "time"])["y"].mean()
    did = (cell["a", "post"] - cell["a", "pre"]) - (cell["control", "post"] - cell["control", "pre"])
    assert np.isclose(table.loc[("arm_x_time", "a", "post"), "estimate"], did, atol=1e-8)


def test_reference_levels_follow_config_not_alphabet():
    obs = cohort(4)
    levels = {"arm": ["b", "control", "a"], "time": ["post", "pre", "fu"]}
    design = build_design(obs, levels, [])
    assert "arm[T.control]" in design.columns and "arm[T.b]" not in design.columns
    assert "time[T.pre]" in design.columns and "time[T.post]" not in design.columns


def test_period_adds_a_nested_variance_component():
    obs = cohort(5, drop=0.0)
    obs["period"] = np.where(obs["time"] == "pre", "1", "2")
    design = build_design(obs, LEVELS, [])
    assert design.component_names == ["participant", "participant:period"]
    assert "(1 | participant:period)" in design.formula


def test_rank_deficient_design_names_the_offending_column():
    obs = cohort(6)
    obs["group"] = obs["arm"]  # a covariate that repeats the arm
    design = build_design(obs, LEVELS, ["group"])
    with pytest.raises(InputError) as err:
        check_full_rank(design.X, design.columns, "samples.tsv")
    message = str(err.value)
    assert "group[T." in message and "arm[T." in message and "samples.tsv" in message


def test_empty_arm_time_cell_is_reported_as_all_zero_column():
    obs = cohort(7)
    obs = obs[~((obs["arm"] == "b") & (obs["time"] == "fu"))]
    design = build_design(obs, LEVELS, [])
    with pytest.raises(InputError, match=r"arm\[T.b\]:time\[T.fu\]' is all zero"):
        check_full_rank(design.X, design.columns, "samples.tsv")


def test_benjamini_hochberg_matches_hand_computed_values():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    # sorted: 0.01*4/1=0.04, 0.03*4/2=0.06, 0.04*4/3=0.0533, 0.2 -> step-up min: 0.04, 0.0533, 0.0533, 0.2
    assert np.allclose(benjamini_hochberg(p), [0.04, 0.05333333, 0.05333333, 0.2])


def test_crossover_period_effects_are_fixed_so_unbalanced_sequences_do_not_bias_arm_x_time():
    """16 AB / 8 BA, a period x time effect and participant effects, no arm effect: the arm x time
    estimate is exactly 0 (the design absorbs the period effect); the old model gave a biased one."""
    rows = []
    rng = np.random.default_rng(3)
    for i in range(24):
        sequence = ("control", "a") if i < 16 else ("a", "control")
        u = rng.normal()
        for p, arm in enumerate(sequence):
            for t in ("pre", "post"):
                y = u + 0.3 * p + 0.5 * (p == 1 and t == "post") + rng.normal(0, 1e-9)
                rows.append({"participant": f"p{i:02d}", "arm": arm, "time": t, "period": str(p + 1), "y": y})
    obs = pd.DataFrame(rows, index=[f"s{j}" for j in range(len(rows))])
    levels = {"arm": ["control", "a"], "time": ["pre", "post"]}
    design = build_design(obs, levels, [])
    assert {"period[T.2]", "period[T.2]:time[T.post]"} <= set(design.columns)
    assert "period + period:time" in design.formula and "(1 | participant:period)" in design.formula
    table = contrast_table(fit_reml(design, obs["y"].to_numpy()), design, contrast_specs(design))
    assert abs(table.set_index("contrast").loc["arm_x_time", "estimate"]) < 1e-6
    old = build_design(obs.drop(columns="period"), levels, [])  # period only through the random intercept
    old.components, old.component_names = design.components, design.component_names
    biased = contrast_table(fit_reml(old, obs["y"].to_numpy()), old, contrast_specs(old))
    assert abs(biased.set_index("contrast").loc["arm_x_time", "estimate"]) > 0.1


def test_crossover_change_is_averaged_over_periods():
    """With period x time in the model, an arm's change is the mean of its per-period changes."""
    rows = []
    for i in range(12):
        sequence = ("control", "a") if i < 8 else ("a", "control")
        for p, arm in enumerate(sequence):
            for t in ("pre", "post"):
                change = {"control": 0.2, "a": 1.0}[arm] + (0.6 if p == 1 else 0.0)  # period 2 adds 0.6
                rows.append(
                    {
                        "participant": f"p{i:02d}",
                        "arm": arm,
                        "time": t,
                        "period": str(p + 1),
                        "y": 0.1 * i + (change if t == "post" else 0.0) + 1e-6 * ((i * 7 + p * 3) % 5),
                    }
                )
    obs = pd.DataFrame(rows, index=[f"s{j}" for j in range(len(rows))])
    design = build_design(obs, {"arm": ["control", "a"], "time": ["pre", "post"]}, [])
    table = contrast_table(fit_reml(design, obs["y"].to_numpy()), design, contrast_specs(design))
    change = table[table["contrast"] == "change"].set_index("arm")["estimate"]
    assert change["control"] == pytest.approx(0.2 + 0.3, abs=1e-4)  # (0.2 + 0.8) / 2
    assert change["a"] == pytest.approx(1.0 + 0.3, abs=1e-4)


def test_markers_auto_leaves_them_out_of_small_trials_and_says_why():
    import anndata as ad

    from ctra.config import DesignSettings
    from ctra.design import MIN_MARKER_RESIDUAL_DF, marker_decision, study_design

    def markers_setting(value) -> DesignSettings:
        return DesignSettings(source="sheet", covariates=(), adjust_for_cell_markers=value)

    markers = ["CD3D", "CD4", "CD14"]
    usage = pd.DataFrame({"gene": markers, "group": "marker", "direction": 0, "used": True})

    def study_of(n: int) -> ad.AnnData:
        obs = cohort(1, n=n, drop=0.0)
        adata = ad.AnnData(
            obs=obs,
            var=pd.DataFrame(index=markers),
            layers={"vst": np.random.default_rng(0).normal(size=(len(obs), 3))},
        )
        adata.uns["levels"] = LEVELS
        return adata

    # 3 arms x 3 times, 9 fixed effects: 8 participants = 24 samples -> 24 - 9 - 3 = 12 df; 12 -> 24 df
    small, large = study_of(8), study_of(12)
    used, why = marker_decision(small, usage, markers_setting("auto"))
    assert used == [] and f"fewer than {MIN_MARKER_RESIDUAL_DF}" in why and "12 residual df" in why
    assert marker_decision(small, usage, markers_setting(True)) == (markers, "")
    assert marker_decision(large, usage, markers_setting("auto")) == (markers, "")
    assert marker_decision(large, usage, markers_setting(False)) == ([], "")
    design, used = study_design(small, usage, markers_setting("auto"))
    assert used == [] and "CD3D" not in design.columns
