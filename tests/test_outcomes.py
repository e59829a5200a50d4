"""Trials with `outcomes:`, `dose:` and `mediation:` (issue 13, parts 3-4): the models against R, the mediation
decomposition, its vectorized bootstrap, a simulated mediated effect, and the report section."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bad_inputs.cohort import study_block, validate_settings
from ctra.config import DesignSettings, MediationSettings, OutcomeSettings, ValidateSettings
from ctra.mediation import mediation_table, resample_counts, weighted_coefs
from ctra.models.outcomes import fit_outcomes, person_centred
from ctra.simulate_outcomes import simulate_trial

FIXTURES = Path(__file__).parent / "reference" / "fixtures" / "outcomes"
LEVELS2 = {"arm": ["control", "kind"], "time": ["pre", "post"]}
NO_GENES = pd.DataFrame({"gene": [], "group": [], "direction": [], "used": []})


def _adata(obs: pd.DataFrame, levels: dict) -> ad.AnnData:
    adata = ad.AnnData(X=np.zeros((len(obs), 0)), obs=obs)
    adata.uns["levels"] = levels
    return adata


def _outcome_settings(**kw) -> OutcomeSettings:
    design = DesignSettings(source="samples.tsv", covariates=("age",), adjust_for_cell_markers="auto")
    return OutcomeSettings(design=design, **{"outcomes": ("wellbeing",), "dose": "acts", **kw})


def _mediation_settings(bootstrap=2000, seed=7) -> MediationSettings:
    return MediationSettings(
        source="samples.tsv", covariates=("age",), outcomes=("wellbeing",), bootstrap=bootstrap, seed=seed
    )


@pytest.fixture(scope="module")
def reference_cohort():
    table = pd.read_csv(FIXTURES / "cohort.tsv", sep="\t", dtype={"participant": str, "arm": str, "time": str})
    table = table.set_index("sample")
    table.index.name = None
    return table.drop(columns=["ctra"]), table[["ctra"]]


def test_outcome_within_between_and_dose_models_match_lmertest(reference_cohort):
    obs, scores = reference_cohort
    levels = {"arm": ["control", "kind", "self"], "time": ["pre", "post"]}
    rows = fit_outcomes(_adata(obs, levels), scores, NO_GENES, _outcome_settings())
    r = pd.read_csv(FIXTURES / "lmer.tsv", sep="\t")
    ours = {
        "outcome_arm_x_time": rows[(rows["score"] == "wellbeing") & (rows["contrast"] == "arm_x_time")],
        "within_person": rows[(rows["score"] == "ctra") & (rows["contrast"] == "within_person")],
        "between_person": rows[(rows["score"] == "ctra") & (rows["contrast"] == "between_person")],
        "dose_x_time": rows[(rows["score"] == "ctra") & (rows["contrast"] == "dose_x_time")],
    }
    for analysis, expected in r.groupby("analysis", sort=False):
        got = ours[analysis]
        assert len(got) == len(expected), analysis
        np.testing.assert_allclose(got["estimate"], expected["estimate"], rtol=1e-6, atol=1e-9, err_msg=analysis)
        np.testing.assert_allclose(got["se"], expected["se"], rtol=1e-5, err_msg=analysis)
        np.testing.assert_allclose(got["df"], expected["df"], rtol=1e-3, err_msg=analysis)
        np.testing.assert_allclose(got["p_value"], expected["p_value"], rtol=1e-3, err_msg=analysis)
    assert set(rows["role"]) == {"exploratory"}
    assert (
        rows["note"]
        .str.endswith("no permutation / random-gene-set / leave-one-out for outcome rows (their columns stay empty)")
        .all()
    )
    assert (rows.loc[rows["contrast"] == "within_person", "term"] == "wellbeing").all()
    assert "of 120 draws with the outcome" in rows.loc[rows["score"] == "wellbeing", "note"].iloc[0]


def test_mediation_paths_match_r_lm(reference_cohort):
    obs, scores = reference_cohort
    levels = {"arm": ["control", "kind", "self"], "time": ["pre", "post"]}
    table = mediation_table(obs, levels, scores, _mediation_settings(bootstrap=200))
    kind = table[(table["arm"] == "kind") & (table["score"] == "ctra")]
    got = kind[(kind["mediator"] == "wellbeing") & (kind["variant"] == "change_score")].set_index("path")
    r = pd.read_csv(FIXTURES / "lm.tsv", sep="\t").set_index("path")
    for path in r.index:
        for column in ("estimate", "se", "p_value"):
            assert got.loc[path, column] == pytest.approx(r.loc[path, column], rel=1e-8), (path, column)
    assert (got["n_participants"] == r["n"].iloc[0]).all()
    # the baseline-adjusted (ANCOVA) variant, both orderings: lm(... + baseline wellbeing + baseline ctra)
    adjusted = pd.read_csv(FIXTURES / "lm_adjusted.tsv", sep="\t")
    for mediator, r in adjusted.groupby("mediator"):
        got = kind[(kind["mediator"] == mediator) & (kind["variant"] == "baseline_adjusted")].set_index("path")
        for path, column in ((p, c) for p in r["path"] for c in ("estimate", "se", "p_value")):
            expected = r.set_index("path").loc[path, column]
            assert got.loc[path, column] == pytest.approx(expected, rel=1e-8), (mediator, path, column)


def test_indirect_bootstrap_ci_agrees_with_r_boot(reference_cohort):
    """R's boot::boot (stratified percentile, 20,000 resamples, its own random numbers) and ctra's bootstrap of
    the same size give the same CI up to Monte Carlo error (about 0.005 here)."""
    obs, scores = reference_cohort
    obs = obs[obs["arm"] != "self"]
    table = mediation_table(obs, LEVELS2, scores.loc[obs.index], _mediation_settings(bootstrap=20000))
    got = table[(table["arm"] == "kind") & (table["mediator"] == "wellbeing") & (table["variant"] == "change_score")]
    got = got.set_index("path").loc["indirect"]
    r = pd.read_csv(FIXTURES / "boot.tsv", sep="\t").iloc[0]
    assert got["estimate"] == pytest.approx(r["estimate"], rel=1e-8)
    assert got["ci_low"] == pytest.approx(r["ci_low"], abs=0.025)
    assert got["ci_high"] == pytest.approx(r["ci_high"], abs=0.025)


def test_total_is_direct_plus_indirect_in_both_orderings():
    obs, scores = simulate_trial(n_per_arm=30, seed=4)
    table = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=200))
    for _, rows in table.groupby(["mediator", "variant"]):
        paths = rows.set_index("path")["estimate"]
        assert paths["total"] == pytest.approx(paths["direct"] + paths["indirect"], abs=1e-10)
        assert paths["indirect"] == pytest.approx(paths["a"] * paths["b"], rel=1e-12)
    primary = table[table["variant"] == "change_score"]
    forward = primary[primary["mediator"] == "wellbeing"].set_index("path")["estimate"]
    reverse = primary[primary["mediator"] == "ctra"].set_index("path")["estimate"]
    assert forward["a"] == pytest.approx(reverse["total"])  # the arm's effect on the outcome change, both ways
    assert table.loc[table["path"] == "indirect", "note"].str.contains("different tests and can disagree").all()
    assert set(table["role"]) == {"exploratory"} and list(table.columns).index("role") == len(table.columns) - 2


def test_resamples_keep_arm_sizes_and_weighted_fit_equals_refit_on_resampled_rows():
    rng = np.random.default_rng(3)
    strata = np.array([0] * 7 + [1] * 5)
    counts = resample_counts(strata, 50, np.random.default_rng(1))
    assert (counts[:, :7].sum(axis=1) == 7).all() and (counts[:, 7:].sum(axis=1) == 5).all()
    X = np.column_stack([np.ones(12), strata, rng.normal(size=12)])
    Y = rng.normal(size=(12, 2))
    coefs = weighted_coefs(counts, X, Y)
    for k in range(5):
        rows = np.repeat(np.arange(12), counts[k].astype(int))
        expected = np.linalg.lstsq(X[rows], Y[rows], rcond=None)[0]
        np.testing.assert_allclose(coefs[k], expected, atol=1e-10)


def test_singular_resample_is_left_out_not_an_error():
    strata = np.array([0, 0, 0, 1, 1, 1])
    X = np.column_stack([np.ones(6), strata, [1.0, 1, 1, 1, 2, 3]])
    weights = np.array([[1, 1, 1, 3, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=float)  # first: x constant
    coefs = weighted_coefs(weights, X, np.arange(6.0)[:, None])
    assert np.isnan(coefs[0]).all() and np.isfinite(coefs[1]).all()


# the truth of simulate_trial's defaults: a = 0.8, b = 0.5, indirect 0.4, direct 0.2, total 0.6
TRUTH = {"a": 0.8, "b": 0.5, "indirect": 0.4, "direct": 0.2, "total": 0.6}


def test_simulated_mediated_effect_is_recovered_and_its_bootstrap_ci_covers_the_truth():
    obs, scores = simulate_trial(n_per_arm=100, seed=20261201)
    table = mediation_table(obs, LEVELS2, scores, _mediation_settings())
    forward = table[(table["mediator"] == "wellbeing") & (table["variant"] == "change_score")].set_index("path")
    for path, truth in TRUTH.items():
        assert forward.loc[path, "ci_low"] <= truth <= forward.loc[path, "ci_high"], (path, forward.loc[path])
    indirect = forward.loc["indirect"]
    assert indirect["n_boot"] == 2000
    assert indirect["ci_low"] > 0  # and the CI excludes 0: n = 200 has the power for 0.4
    assert indirect["p_value"] == max(forward.loc["a", "p_value"], forward.loc["b", "p_value"])


def test_baseline_adjusted_variant_removes_the_regression_to_the_mean_bias_of_the_change_score_b():
    """The score change depends on the baseline outcome (0.5 per unit), not on the outcome change (b = 0): the
    outcome change regresses to the mean (correlated with its baseline, -0.5 in expectation here), so the
    change-score b is biased (about -0.25) and the indirect CI excludes 0; adjusting for both baselines recovers
    b = 0 and an indirect CI around 0."""
    obs, scores = simulate_trial(n_per_arm=100, a=0.8, b=0.0, direct=0.0, baseline_slope=0.5, seed=3)
    table = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=1000))
    forward = table[table["mediator"] == "wellbeing"].set_index(["variant", "path"])
    change, adjusted = forward.loc["change_score"], forward.loc["baseline_adjusted"]
    assert change.loc["b", "ci_high"] < 0 and change.loc["indirect", "ci_high"] < 0
    for path in ("b", "indirect"):
        assert adjusted.loc[path, "ci_low"] <= 0 <= adjusted.loc[path, "ci_high"], adjusted.loc[path]
    assert adjusted.loc["indirect", "n_boot"] == change.loc["indirect", "n_boot"] == 1000
    assert adjusted.loc["total", "estimate"] == pytest.approx(
        adjusted.loc["direct", "estimate"] + adjusted.loc["indirect", "estimate"], abs=1e-10
    )
    assert adjusted["note"].str.startswith("baseline-adjusted (ANCOVA").all()


def test_bootstrap_is_seeded():
    obs, scores = simulate_trial(n_per_arm=20, seed=5)
    one = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=300, seed=1))
    again = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=300, seed=1))
    other = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=300, seed=2))
    pd.testing.assert_frame_equal(one, again)
    indirect = one["path"] == "indirect"
    assert not np.allclose(one.loc[indirect, "ci_low"], other.loc[indirect, "ci_low"])
    assert np.allclose(one.loc[~indirect, "estimate"], other.loc[~indirect, "estimate"])


def test_missing_outcome_draws_leave_that_participant_out_of_its_mediation():
    obs, scores = simulate_trial(n_per_arm=20, seed=5)
    obs.loc[obs.index[1], "wellbeing"] = np.nan  # control_000's post outcome
    table = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=200))
    assert (table["n_participants"] == 39).all()


def test_too_few_participants_for_the_baseline_adjusted_models_leave_them_empty():
    obs, scores = simulate_trial(n_per_arm=3, seed=5)  # 6 participants: the adjusted b model has no residual df
    table = mediation_table(obs, LEVELS2, scores, _mediation_settings(bootstrap=50))
    adjusted = table["variant"] == "baseline_adjusted"
    assert table.loc[adjusted, "estimate"].isna().all() and table.loc[~adjusted, "estimate"].notna().all()
    assert table.loc[adjusted, "note"].str.contains("6 participants leave no residual df").all()


def test_person_centring():
    values = pd.Series([1.0, 3.0, 10.0, 14.0, 5.0])
    people = pd.Series(["a", "a", "b", "b", "c"])
    within, between = person_centred(values, people)
    np.testing.assert_allclose(within, [-1, 1, -2, 2, 0])
    np.testing.assert_allclose(between, np.array([2, 2, 12, 12, 5]) - 19 / 3)


def test_dose_moderation_recovers_a_dose_slope_and_outcome_rows_have_no_markers():
    obs, scores = simulate_trial(n_per_arm=60, dose_slope=0.05, seed=8)
    rows = fit_outcomes(_adata(obs, LEVELS2), scores, NO_GENES, _outcome_settings())
    dose = rows[rows["contrast"] == "dose_x_time"].iloc[0]
    assert dose["ci_low"] <= 0.05 <= dose["ci_high"] and dose["ci_low"] > 0
    assert dose["arm"] == "kind" and dose["n_participants"] == 60 and dose["term"] == "acts"
    assert dose["note"].startswith("moderation of the change within the active arms (non-randomised, exploratory)")
    assert "no leukocyte markers" in rows.loc[rows["score"] == "wellbeing", "note"].iloc[0]


# ---------------------------------------------------------------- the report


def test_report_section_shows_outcomes_and_mediation_escaped():
    from test_report import HOSTILE_SCRIPT, make_inputs

    from ctra.report import render_report

    from ctra.report_outcomes import outcome_context, split_rows

    inputs = make_inputs(arms=("control", "a"))
    scores, extra = split_rows(inputs["contrasts"])  # studies without the keys: no such section
    assert extra.empty and scores is inputs["contrasts"]
    assert outcome_context(type("Inputs", (), {"outcome_contrasts": extra, "mediation": None})()) == {"outcomes": None}
    name = HOSTILE_SCRIPT
    contrasts = inputs["contrasts"].copy()
    contrasts["term"] = ""
    extra = pd.DataFrame(
        [
            {
                "score": name,
                "model": "lmm",
                "role": "exploratory",
                "contrast": "arm_x_time",
                "term": "",
                "arm": "a",
                "time": "post",
                "estimate": 0.9,
                "ci_low": 0.4,
                "ci_high": 1.4,
                "p_value": 0.001,
            },
            {
                "score": "ctra",
                "model": "lmm",
                "role": "exploratory",
                "contrast": "within_person",
                "term": name,
                "arm": np.nan,  # as read_table reads an empty cell
                "time": np.nan,
                "estimate": 0.1,
                "ci_low": -0.1,
                "ci_high": 0.3,
                "p_value": 0.3,
            },
        ]
    )
    mediation = pd.DataFrame(
        [
            {
                "score": "ctra",
                "outcome": name,
                "mediator": name,
                "arm": "a",
                "time": "post",
                "variant": variant,
                "path": p,
                "estimate": 0.2,
                "ci_low": 0.1,
                "ci_high": 0.3,
                "p_value": 0.01,
                "n_boot": 2000 if p == "indirect" else None,
            }
            for variant in ("change_score", "baseline_adjusted")
            for p in ("a", "b", "indirect", "direct", "total")
        ]
    )
    text = render_report(
        **{**inputs, "contrasts": pd.concat([contrasts, extra], ignore_index=True)}, mediation=mediation
    )
    assert 'id="outcomes"' in text and "fig-mediation" in text and "fig-outcome-effects" in text
    assert "no unmeasured confounding of the mediator-response relation" in text
    assert "Dose: moderation of the change within the\nactive arms (non-randomised, exploratory)" in text
    assert "different tests and can disagree" in text and "baseline_adjusted rows" in text
    assert text.count('post: indirect"') == 2  # in the figure (trace text, tick) for the change score only
    assert "no arm × mediator interaction" in text and "linear relations" in text
    assert "only if the assumptions below hold" in text and "× ordering (2)" in text
    assert "<script>alert" not in text
    assert ">nan<" not in text  # within/between rows have no arm or time
    assert len(re.findall(r"<script>(.*?)</script>", text, flags=re.S)) == 1 + text.count("Plotly.newPlot(")


# ---------------------------------------------------------------- config and validation (no subprocess)


def _settings(**keys) -> ValidateSettings:
    """The validate stage's settings of the bad-input cohort's study block with ``keys``."""
    return validate_settings(study_block(**keys))


def test_config_problems_name_the_key_and_column():
    from ctra.validate_outcomes import config_problems

    design = {"sample": "sample", "participant": "participant", "arm": "arm", "time": "time"}
    problems = config_problems(_settings(outcomes=["age", "ctra", "arm"], covariates=["age"], dose="age"), design)
    assert any("'age' is listed both as a covariate and as the outcome" in p for p in problems)
    assert any("outcome column 'ctra' has the name of a CTRA score" in p for p in problems)
    assert any("outcome column 'arm' is the study's arm column" in p for p in problems)
    assert any("listed both in `outcomes` and as `dose`" in p for p in problems)
    assert config_problems(_settings(mediation={}), design) == [
        "config: `mediation` is set but `outcomes` is not; mediation needs the outcome columns whose change "
        "may carry the arm effect (e.g. `outcomes: [wellbeing]`), or remove `mediation`."
    ]
    single_arm = _settings(mediation={}, outcomes=["w"], control=None)
    assert any("needs a `control` arm" in p for p in config_problems(single_arm, design))
    assert config_problems(_settings(outcomes=["w"], dose="d"), design) == []
    crossover = config_problems(_settings(outcomes=["w"], dose="d", mediation={}), {**design, "period": "day"})
    assert len(crossover) == 2 and all("crossover" in p for p in crossover)


def test_typed_settings_build_from_their_stage_keys_alone():
    from snakemake.utils import validate

    from ctra import config as cfg

    config = {
        "studies": {
            "t": {
                "counts": "c.tsv",
                "samples": "s.tsv",
                "baseline": "pre",
                "control": "control",
                "covariates": ["age"],
                "outcomes": ["wellbeing", "connectedness"],
                "dose": "acts",
                "mediation": {"bootstrap": 500},
            }
        }
    }
    validate(config, str(Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml"))
    study = config["studies"]["t"]
    assert study["mediation"] == {"bootstrap": 500, "seed": 20261201}
    for stage, kind in (("outcomes", cfg.OutcomeSettings), ("mediation", cfg.MediationSettings)):
        assert kind.from_study(cfg.stage_settings(study, stage)) == kind.from_study(study)
    assert cfg.OutcomeSettings.from_study(study).dose == "acts"
    # validate reads only whether mediation is set: its bootstrap settings rerun the mediation rule alone
    assert cfg.stage_settings(study, "validate")["mediation"] is True
    # studies without the keys: no outcome keys in any stage's settings (their params, hence reruns, unchanged)
    del study["outcomes"], study["dose"], study["mediation"]
    assert not any(k in cfg.stage_settings(study, s) for s in cfg.STAGE_KEYS for k in ("outcomes", "dose", "mediation"))


def _typed(sheet: pd.DataFrame, **study):
    from ctra.validate_outcomes import type_outcomes

    problems = []
    levels = {"arm": ["control", "kind"], "time": ["pre", "post"]}
    obs, notes = type_outcomes(
        sheet.copy(),
        _settings(**study),
        levels,
        Path("s.tsv"),
        lambda m: f"{int(m.sum())} rows",
        problems.append,
    )
    return obs, notes, problems


def test_type_outcomes_messages():
    obs, _ = simulate_trial(n_per_arm=4, seed=1)
    sheet = obs.astype(str).replace("nan", "")
    typed, notes, problems = _typed(sheet, outcomes=["wellbeing"], dose="acts")
    assert problems == [] and notes == [] and typed["wellbeing"].dtype == float
    assert typed.loc[typed["arm"] == "control", "acts"].isna().all()
    bad = sheet.assign(acts=sheet["acts"].where(sheet["arm"] == "control", "many"))
    assert "dose column 'acts' is not numeric on 8 rows" in _typed(bad, dose="acts")[2][0]
    gap = sheet.copy()
    gap.loc[(gap["arm"] == "kind") & (gap["time"] == "post"), "wellbeing"] = "NA"
    assert "outcome 'wellbeing' has no value for kind at post" in _typed(gap, outcomes=["wellbeing"])[2][0]
    constant = sheet.assign(wellbeing="3")
    assert "same value for every sample" in _typed(constant, outcomes=["wellbeing"])[2][0]
    lacking = sheet.copy()
    lacking.loc[lacking["participant"] == "kind_001", "acts"] = ""
    _, notes, problems = _typed(lacking, dose="acts")
    assert problems == [] and notes == [
        "dose 'acts': missing for 1 participant(s) of the active arms; they are left out of the dose model."
    ]
