"""ctra.synthesis: random-effects meta-analysis checked against metafor (committed fixtures, made by
tests/reference/make_meta_fixtures.R), the choice of studies and its messages, the synthesis report, and the
calibration of its p-values (benchmarks/meta_calibration.py)."""

from __future__ import annotations

import copy
import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from conftest import REPO
from ctra import synthesis as syn
from ctra.config import synthesis_studies
from ctra.errors import InputError
from ctra.planning_report import render_synthesis

FIXTURES = REPO / "tests" / "reference" / "fixtures" / "meta"
CASES = sorted(p.name.removesuffix("_input.tsv") for p in FIXTURES.glob("*_input.tsv"))


def test_fixture_cases_cover_the_example_seeds_and_published_estimates():
    assert {"example_seeds", "bcg", "published_style", "homogeneous"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_agrees_with_metafor_reml_knha(case):
    """REML tau^2, Hartung-Knapp CI and p, Q, I^2, H^2, DL and leave-one-out: metafor's rma(method = "REML",
    test = "knha"), leave1out() and rma(method = "DL") to 1e-8. Prediction intervals: meta.tsv's pi_low / pi_high
    (t with k - 2 df) against predict(pi.type = "riley") for k >= 3, and the t(k - 1) interval of metafor's default
    predict() against reml_hk's pi_low_k1 / pi_high_k1 (not reported)."""
    data = pd.read_csv(FIXTURES / f"{case}_input.tsv", sep="\t", dtype={"study": str})
    reference = pd.read_csv(FIXTURES / f"{case}_metafor.tsv", sep="\t", dtype={"study": str})
    reference["study"] = reference["study"].str.strip()
    y, v = data["yi"].to_numpy(), data["vi"].to_numpy()
    ours = {"random_effects_reml_hk": syn.reml_hk(y, v), "random_effects_dl": syn.dersimonian_laird(y, v)}
    loo = syn.leave_one_out(y, v) if len(y) >= 3 else []
    for row in reference.itertuples(index=False):
        if row.analysis == "leave_one_out":
            value = loo[list(data["study"]).index(row.study)][row.quantity]
        else:
            value = ours[row.analysis][row.quantity]
        assert float(value) == pytest.approx(row.value, rel=1e-8, abs=1e-10), (row.analysis, row.study, row.quantity)


def test_prediction_interval_uses_k_minus_2_df_and_is_empty_below_three_studies():
    y, v = np.array([-0.5, -0.2, 0.1, -0.4]), np.array([0.04, 0.05, 0.03, 0.06])
    fit = syn.reml_hk(y, v)
    spread = math.sqrt(fit["se"] ** 2 + fit["tau2"])
    assert fit["pi_high"] - fit["estimate"] == pytest.approx(stats.t.ppf(0.975, 2) * spread)
    assert fit["pi_high_k1"] - fit["estimate"] == pytest.approx(stats.t.ppf(0.975, 3) * spread)
    two = syn.reml_hk(y[:2], v[:2])
    assert np.isnan(two["pi_low"]) and np.isnan(two["pi_high"])
    effects = [
        syn.StudyEffect(s, "ctra", "active", "post", "counts", 30, yi, math.sqrt(vi), yi - 0.4, yi + 0.4)
        for s, yi, vi in zip("ab", y[:2], v[:2])
    ]
    pooled = syn.meta_table(effects).set_index("analysis").loc["random_effects_reml_hk"]
    assert np.isnan(pooled["pi_low"]) and "no prediction interval" in pooled["note"]


def test_meta_table_rows_and_p_value_only_where_calibrated():
    data = pd.read_csv(FIXTURES / "published_style_input.tsv", sep="\t")
    effects = [
        syn.StudyEffect(
            s, "ctra", "active", "post", "counts", 30, y, np.sqrt(v), y - 2 * np.sqrt(v), y + 2 * np.sqrt(v)
        )
        for s, y, v in zip(data["study"], data["yi"], data["vi"])
    ]
    table = syn.meta_table(effects)
    assert list(table.columns) == list(syn.META_COLUMNS)
    assert table["analysis"].value_counts().to_dict() == {
        "study": 5,
        "leave_one_out": 5,
        "random_effects_reml_hk": 1,
        "random_effects_dl": 1,
    }
    assert table.loc[table["analysis"] == "study", "weight"].sum() == pytest.approx(100)
    # the pooled Hartung-Knapp p has a calibration behind it (README Calibration); the DL z test does not
    assert table["p_value"].notna().tolist() == (table["analysis"] == "random_effects_reml_hk").tolist()
    two = syn.meta_table(effects[:2])
    assert "leave_one_out" not in set(two["analysis"])
    assert table["note"].iloc[5] == ""  # heterogeneous: the Hartung-Knapp CI is the wider one
    seeds = pd.read_csv(FIXTURES / "example_seeds_input.tsv", sep="\t")
    close = [
        syn.StudyEffect(s, "ctra", "a", "post", "counts", 60, y, np.sqrt(v), y, y)
        for s, y, v in zip(seeds["study"], seeds["yi"], seeds["vi"])
    ]
    pooled = syn.meta_table(close).query("analysis == 'random_effects_reml_hk'").iloc[0]
    assert pooled["note"].startswith("the Hartung-Knapp CI is narrower than the DerSimonian-Laird Wald CI")


def _config(**studies) -> dict:
    base = {"control": "control", "primary": {"score": "ctra", "contrast": "arm_x_time"}}
    return {"studies": {name: {**base, **extra} for name, extra in studies.items()}}


def test_synthesis_true_pools_every_trial_study_with_the_same_score():
    config = _config(a={}, b={}, single={"control": None})
    config["synthesis"] = True
    assert [s["study"] for s in synthesis_studies(config)] == ["a", "b"]
    config["studies"]["b"]["primary"] = {"score": "antiviral", "contrast": "arm_x_time"}
    with pytest.raises(InputError, match="different ones: 'a' \\(ctra\\), 'b' \\(antiviral\\)"):
        synthesis_studies(config)
    assert synthesis_studies(_config(a={})) == []  # no synthesis block: nothing to pool


@pytest.mark.parametrize(
    "listed, expected",
    [
        (
            ["a", "nosuch"],
            "study 'nosuch' is not defined under studies: (defined: 'a', 'b', 'one_arm', 'other', 'three')",
        ),
        (["a", "one_arm"], "study 'one_arm' is not a trial (no control arm)"),
        (["a", "other"], "study 'other' has primary score 'antibody', but 'a' has 'ctra'"),
        (["a"], "needs two or more trial studies with the same primary score (only 'a')"),
        (["a", "a"], "study 'a' is listed more than once"),
        (["a", "three"], "study 'three' has 2 active arms (arm_levels): name the one to pool"),
    ],
)
def test_a_study_that_cannot_be_pooled_is_named(listed, expected):
    config = _config(
        a={},
        b={},
        one_arm={"control": None},
        other={"primary": {"score": "antibody", "contrast": "arm_x_time"}},
        three={"arm_levels": ["control", "x", "y"]},
    )
    config["synthesis"] = {"studies": listed}
    with pytest.raises(InputError) as error:
        synthesis_studies(config)
    assert any(expected in p for p in error.value.problems), error.value.problems
    assert len(error.value.problems) == 1


def test_a_study_named_synthesis_is_refused():
    with pytest.raises(InputError, match="study named 'synthesis'"):
        synthesis_studies(_config(synthesis={}))


def _effect(**row) -> dict:
    base = {"contrast": "arm_x_time", "arm": "kind", "time": "post", "estimate": -0.5, "se": 0.2}
    base.update(ci_low=-0.9, ci_high=-0.1, df=50.0, p_value=0.02, n_participants=40)
    return {"score": "ctra", "input": "counts", "primary_rows": [{**base, **row}]}


def test_a_failed_study_and_an_ambiguous_one_are_named():
    with pytest.raises(InputError, match="study 'broken' has no usable primary estimate"):
        syn.study_effect("broken", _effect(estimate=float("nan")), None, None)
    two = _effect()
    two["primary_rows"].append({**two["primary_rows"][0], "arm": "self"})
    with pytest.raises(InputError, match="study 'multi' has 2 primary rows .* choose one"):
        syn.study_effect("multi", two, None, None)
    assert syn.study_effect("multi", two, "self", None).arm == "self"


def test_meta_tsv_records_each_studys_estimand_and_notes_mixed_marker_adjustment():
    """Per study: markers, covariates, time and baseline SD; a pooled note when marker adjustment differs;
    the baseline-SD sensitivity pooling of y_i / sd_i with se_i / sd_i."""
    adjusted = {**_effect(estimate=-0.6), "markers_used": ["CD3D", "CD14"], "covariates": ["age"], "score_sd": 0.6}
    plain = {**_effect(estimate=-0.2), "markers_used": [], "covariates": ["age", "bmi"], "score_sd": 0.4}
    third = {**_effect(estimate=-0.4), "markers_used": ["CD3D"], "covariates": ["age"], "score_sd": 0.5}
    effects = [syn.study_effect(n, e, None, None) for n, e in (("x", adjusted), ("y", plain), ("z", third))]
    table = syn.meta_table(effects)
    rows = table[table["analysis"] == "study"].set_index("study")
    assert rows.loc["x", "markers"] == "CD3D,CD14" and rows.loc["y", "markers"] == "none"
    assert rows.loc["y", "covariates"] == "age,bmi" and rows.loc["x", "time"] == "post"
    assert rows.loc["y", "score_sd"] == pytest.approx(0.4)
    note = table.set_index("analysis").loc["random_effects_reml_hk", "note"]
    assert "differ in leukocyte-marker adjustment (adjusted: x, z; not adjusted: y)" in note
    assert "different covariates" in note
    sd = np.array([0.6, 0.4, 0.5])
    y, se = np.array([-0.6, -0.2, -0.4]), np.full(3, 0.2)
    scaled = table.set_index("analysis").loc["random_effects_reml_hk_baseline_sd"]
    assert scaled["estimate"] == pytest.approx(float(syn.reml_hk(y / sd, (se / sd) ** 2)["estimate"]))
    text = render_synthesis(table, versions={"ctra": "0"}, generated="now")
    assert "not adjusted" in text and "differ in leukocyte-marker adjustment" in text
    assert "baseline SD of the score (sensitivity)" in text
    same = syn.meta_table([syn.study_effect(n, third, None, None) for n in ("p", "q", "r")])
    assert "marker" not in same.set_index("analysis").loc["random_effects_reml_hk", "note"]


def test_synthesis_report_is_offline_and_escapes_study_names():
    hostile = "<script>alert('x')</script>"
    effects = [
        syn.StudyEffect(name, "ctra", "kind<b>", "post", "counts", 40, y, 0.15, y - 0.3, y + 0.3)
        for name, y in ((hostile, -0.6), ("b & c", -0.2), ("d", -0.4))
    ]
    text = render_synthesis(syn.meta_table(effects), versions={"ctra": "0"}, generated="now")
    assert hostile not in text and "kind<b>" not in text
    assert "&lt;script&gt;" in text
    assert 'src="http' not in text and "cdn.plot.ly" not in text.split("</script>", 1)[1]
    assert "Hartung-Knapp" in text and "prediction interval" in text


def _calibration():
    spec = importlib.util.spec_from_file_location("meta_calibration", REPO / "benchmarks" / "meta_calibration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hartung_knapp_p_holds_its_size_with_three_studies_quick():
    """1,000 null meta-analyses of three heterogeneous trials (the README table has 4,000 per design)."""
    row = _calibration().design_row(3, "moderate", 1000, seed=7)
    share, low, high = row["hk_p"]
    assert low <= 0.075 and high >= 0.025, row["hk_p"]


@pytest.mark.slow
def test_meta_calibration_table():
    """Every design of the README table: the Hartung-Knapp p and Cochran's Q hold their size (exact 95 % CI
    overlaps [2.5 %, 7.5 %]) and the Hartung-Knapp CI covers at least 93 %."""
    for row in _calibration().calibrate(4000):
        assert row["hk_p"][1] <= 0.075 and row["hk_p"][2] >= 0.025, row
        if row["q_p"] is not None:
            assert row["q_p"][1] <= 0.075 and row["q_p"][2] >= 0.025, row
        assert row["hk_coverage"][0] >= 0.93, row


def test_synthesis_stage_end_to_end_from_primary_effect_files(tmp_path):
    """The synthesis stage on three studies' primary_effect.json files (in-process; the CLI and the rule run in
    the slow workflow test), twice: byte-identical meta.tsv."""
    from ctra import stages
    from ctra.config import SynthesisSettings

    paths = []
    for i, estimate in enumerate((-0.7, -0.5, -0.2)):
        effect = {**_effect(estimate=estimate), "input": ["counts", "log2_expression", "counts"][i]}
        path = tmp_path / f"s{i}.json"
        path.write_text(json.dumps(effect))
        paths.append(str(path))
    settings = SynthesisSettings.from_study({"studies": [{"study": f"s{i}"} for i in range(3)]})
    for name in ("meta.tsv", "again.tsv"):
        stages.synthesis(settings, effects=paths, meta=str(tmp_path / name), out=str(tmp_path / "report.html"))
    assert (tmp_path / "again.tsv").read_bytes() == (tmp_path / "meta.tsv").read_bytes()
    meta = pd.read_csv(tmp_path / "meta.tsv", sep="\t")
    assert meta.loc[meta["analysis"] == "study", "input"].tolist() == ["counts", "log2_expression", "counts"]
    report = (tmp_path / "report.html").read_text()
    assert "log2 expression (microarray, log2 TPM)" in report and "RNA-seq counts" in report


@pytest.mark.slow
def test_workflow_synthesis_of_the_example_and_seed_copies_reproduces_the_fixture(tmp_path):
    """The whole workflow on the bundled example and two copies with other seeds (make_meta_inputs.py's run):
    the same meta.tsv as the committed one, whose study rows are metafor's input."""
    spec = importlib.util.spec_from_file_location(
        "make_meta_inputs", REPO / "tests" / "reference" / "make_meta_inputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.run(tmp_path)  # `snakemake results/synthesis/report.html`: the rules and the CLI
    produced = (tmp_path / "results" / "synthesis" / "meta.tsv").read_bytes()
    assert produced == (FIXTURES / "example_seeds_ctra_meta.tsv").read_bytes()
    report = (tmp_path / "results" / "synthesis" / "report.html").read_text()
    assert "Synthesis of 3 studies" in report
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert copy.deepcopy(config)["synthesis"]["studies"][0]["arm"] == "kind_others"
