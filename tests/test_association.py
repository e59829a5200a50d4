"""The association design (``design: association``) and the per_gene_t model against R, and their safeguards.

R fixtures: ``tests/reference/make_association_fixtures.R`` (lm / lmerTest on ctra's own scores, and the
per-gene one-sample t), inputs from ``tests/reference/association_inputs.py``. The HRS case reads the
real cohort in place and skips when ``../shared/data/real/`` is absent; the simulated multi-draw case's
inputs are committed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctra.config import ModelSettings, NullSettings
from ctra.models import per_gene_t
from ctra.models.association import exchangeable_blocks, freedman_lane
from ctra.models.mixed import fit_study
from ctra.design import study_design

REFERENCE = Path(__file__).parent / "reference"
_spec = importlib.util.spec_from_file_location("association_inputs", REFERENCE / "association_inputs.py")
inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inputs)


def _ctra_rows(study: dict):
    adata, scores, usage = inputs.prepared(study)
    settings = ModelSettings.from_study(study)
    contrasts, _, info = fit_study(adata, scores, usage, settings)
    per_gene = per_gene_t.fit(adata, scores.set_index("sample"), usage, settings.design)
    return adata, scores, usage, contrasts, per_gene, info


@pytest.fixture(scope="module")
def hrs():
    if not inputs.HRS_DIR.is_dir():
        pytest.skip(f"{inputs.HRS_DIR} absent (the real HRS cohort is not part of the repository)")
    return _ctra_rows(inputs.hrs_study())


@pytest.fixture(scope="module")
def multidraw():
    return _ctra_rows(inputs.multidraw_study())


def _compare(ours: pd.DataFrame, fixture: str, tolerances: dict[str, tuple[float, float]]) -> None:
    reference = pd.read_csv(REFERENCE / "fixtures" / fixture, sep="\t")
    merged = reference.merge(ours, on=["score", "term"], suffixes=("_r", ""), validate="one_to_one")
    assert len(merged) == len(reference) > 0
    for column, (rtol, atol) in tolerances.items():
        np.testing.assert_allclose(merged[column], merged[f"{column}_r"], rtol=rtol, atol=atol, err_msg=column)


def test_hrs_ols_matches_lm(hrs):
    """One draw per participant: OLS, df = n - p, to 1e-8 of R's lm (same scores, covariates, markers)."""
    adata, _, _, contrasts, _, info = hrs
    assert adata.n_obs == 108 and info["random_intercept"] is False
    assert info["formula"].startswith("score ~ loneliness + zeudaimonia + age") and "participant" not in info["formula"]
    tight = (1e-8, 1e-12)
    _compare(
        contrasts, "association_hrs/r_composite.tsv", {"estimate": tight, "se": tight, "df": tight, "p_value": tight}
    )


def test_hrs_per_gene_t_matches_r(hrs):
    """The as-published test: the mean coefficient equals the composite's (OLS is linear), the SE is
    the genes' SD / sqrt(genes), far smaller than the honest SE."""
    _, _, _, contrasts, per_gene, _ = hrs
    tight = (1e-8, 1e-12)
    _compare(
        per_gene, "association_hrs/r_per_gene_t.tsv", {"estimate": tight, "se": tight, "df": (0, 0), "p_value": tight}
    )
    ctra = lambda frame: frame[(frame["score"] == "ctra") & (frame["term"] == "loneliness")].iloc[0]  # noqa: E731
    assert ctra(per_gene)["estimate"] == pytest.approx(ctra(contrasts)["estimate"], rel=1e-10)
    assert ctra(per_gene)["se"] < ctra(contrasts)["se"] / 2 and ctra(per_gene)["df"] == 52
    assert "anti-conservative" in ctra(per_gene)["note"]


def test_hrs_one_draw_gee_estimate_is_the_composite_ols_estimate(hrs):
    """One draw per participant: every gene of a cluster has the same design row, so the exchangeable
    GEE's estimate is the composite score's OLS estimate (only the SE, a bias-reduced sandwich, differs)."""
    from ctra.models.gee import gee_table

    adata, _, usage, contrasts, _, _ = hrs
    design, _ = study_design(adata, usage, ModelSettings.from_study(inputs.hrs_study()).design)
    gee = gee_table(adata, usage, design).set_index(["score", "term"])
    ols = contrasts.set_index(["score", "term"]).loc[gee.index]
    np.testing.assert_allclose(gee["estimate"], ols["estimate"], rtol=1e-7, atol=1e-10)
    assert not np.allclose(gee["se"], ols["se"], rtol=1e-3)


def test_multidraw_matches_lmertest(multidraw):
    """Several draws: participant random intercept, REML and Satterthwaite df, as lmerTest; a
    categorical predictor is one term per level, time a covariate."""
    _, _, _, contrasts, per_gene, info = multidraw
    assert info["random_intercept"] is True and "(1 | participant)" in info["formula"]
    assert set(contrasts["term"]) == {"stress", "group[T.b]", "group[T.c]"}
    _compare(
        contrasts,
        "association_multidraw/r_composite.tsv",
        {"estimate": (0, 1e-6), "se": (1e-4, 0), "df": (1e-3, 0), "p_value": (1e-3, 0)},
    )
    _compare(
        per_gene,
        "association_multidraw/r_per_gene_t.tsv",
        {"estimate": (0, 1e-5), "se": (1e-3, 0), "p_value": (1e-3, 0)},
    )


def test_primary_endpoint_is_the_first_predictor(multidraw):
    info = multidraw[5]
    assert info["primary"] == {"score": "ctra", "contrast": "association", "term": "stress", "terms": ["stress"]}


def test_freedman_lane_chunks_and_observed(multidraw):
    """Chunks give the same draws; the observed t is the GLS t at the null model's variance components;
    permutations move whole participants among those with the same draws."""
    adata, scores, usage, contrasts, _, _ = multidraw
    design, _ = study_design(adata, usage, ModelSettings.from_study(inputs.multidraw_study()).design)
    strata, samples = exchangeable_blocks(design)
    for members in strata:  # same draw pattern within a stratum
        counts = {(samples[i] >= 0).sum() for i in members}
        assert len(counts) == 1
    y = scores["ctra"].to_numpy(float)
    _, observed, whole = freedman_lane(design, y, 0, seed=7, draws=range(60))
    _, _, first = freedman_lane(design, y, 0, seed=7, draws=range(25))
    _, _, rest = freedman_lane(design, y, 0, seed=7, draws=range(25, 60))
    np.testing.assert_allclose(whole, np.concatenate([first, rest]), rtol=1e-12)  # same draws, any batching
    lmm = contrasts[(contrasts["score"] == "ctra") & (contrasts["term"] == "stress")].iloc[0]
    assert observed[0, 0] == pytest.approx(lmm["estimate"] / lmm["se"], rel=0.05)
    assert np.isfinite(whole).all() and not np.allclose(whole[:, 0], whole[0, 0])


def test_null_draws_and_robustness_rows(multidraw):
    """The null stage's permutation draws and the robustness stage's columns on an association study;
    the simulated cohort has no pool of other genes, so geneset_p is empty with the reason in note."""
    from ctra.safeguards import null_draws, robustness_table

    adata, scores, usage, contrasts, _, info = multidraw
    study = inputs.multidraw_study()
    study["robustness"] = {**study["robustness"], "permutations": 99}
    settings = NullSettings.from_study(study)
    adata.var["group"] = usage.set_index("gene")["group"].reindex(adata.var_names).fillna("").to_numpy()
    score_table = scores.set_index("sample")
    draws = null_draws(adata, score_table, usage, settings, 0)
    assert set(draws["kind"]) == {"permutation", "permutation_observed"} and "term" in draws
    # the other models' rows pass through as they are (the GEE's are checked end to end, slow test)
    table = robustness_table(adata, score_table, usage, settings, contrasts, info["relative_variances"], draws)
    main = table[table["model"] == "lmm"]
    assert main["perm_p"].between(0, 1).all() and (main["n_permutations"] == 99).all()
    assert main["note"].str.contains("no random gene sets").all()
    assert main["loo_participant"].notna().all()
    # a categorical predictor's level rows say what their two p-values test; a numeric predictor's do not
    levels = main["term"].str.startswith("group[T.")
    assert levels.sum() == 2 * main["score"].nunique()
    assert (
        main.loc[levels, "note"].str.contains("perm_p is under the joint null (every level of group", regex=False).all()
    )
    assert main.loc[levels, "note"].str.contains("p_value tests this level against the reference").all()
    assert not main.loc[~levels, "note"].str.contains("joint null").any()


@pytest.mark.slow
def test_hrs_runs_end_to_end_with_a_report(tmp_path):
    """config/hrs.yaml's study through the workflow (every stage and the report), from another directory."""
    import subprocess
    import sys

    import yaml

    if not inputs.HRS_DIR.is_dir():
        pytest.skip(f"{inputs.HRS_DIR} absent (the real HRS cohort is not part of the repository)")
    config = yaml.safe_load((inputs.REPO / "config" / "hrs.yaml").read_text())
    study = config["studies"]["hrs"]
    study.update(counts=str(inputs.HRS_DIR / "expression_log2.tsv"), samples=str(inputs.HRS_DIR / "samples.tsv"))
    study["robustness"] = {"permutations": 999}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(inputs.REPO / "workflow" / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    contrasts = pd.read_csv(tmp_path / "results" / "hrs" / "contrasts.tsv", sep="\t")
    primary = contrasts[contrasts["role"] == "primary"]
    assert list(primary["term"]) == ["loneliness"] and (primary["n_samples"] == 108).all()
    assert primary["note"].str.contains("no random gene sets").all() and primary["perm_p"].between(0, 1).all()
    report = (tmp_path / "results" / "hrs" / "report.html").read_text()
    assert "association with loneliness (primary)" in report and "anti-conservative" in report


def test_standardized_predictors_are_per_sd(multidraw):
    """standardize_predictors: the numeric predictor's estimate and SE scale by its SD (a time-varying
    predictor's: over samples, ddof 1), its t and p do not change; a categorical predictor is untouched."""
    from ctra.design import build_association_design
    from ctra.models.mixed import fit_scores

    adata, scores, _, contrasts, _, _ = multidraw
    design = build_association_design(adata.obs, ["stress", "group"], ["age"], "time", standardize=True)
    sd = float(np.std(adata.obs["stress"].to_numpy(float), ddof=1))
    assert design.scales == {"stress": pytest.approx(sd)}
    per_sd = fit_scores(design, scores.set_index("sample").loc[adata.obs_names], "lmm")[0].set_index(["score", "term"])
    per_unit = contrasts.set_index(["score", "term"])
    ratio = per_sd.loc[("ctra", "stress"), "estimate"] / per_unit.loc[("ctra", "stress"), "estimate"]
    assert ratio == pytest.approx(sd, rel=1e-6)
    np.testing.assert_allclose(per_sd["p_value"], per_unit.loc[per_sd.index, "p_value"], rtol=1e-5)


def test_a_participant_level_predictor_is_standardized_by_the_sd_over_participants(multidraw):
    """A predictor constant within each participant (age, with 1-3 draws each) is divided by the SD of
    its participant values, each participant once, not by the SD over samples (which counts participants
    with more draws more often)."""
    from ctra.design import build_association_design

    obs = multidraw[0].obs
    design = build_association_design(obs, ["age", "stress"], [], "time", standardize=True)
    per_person = obs.groupby("participant", observed=True)["age"].first().to_numpy(float)
    over_samples = float(np.std(obs["age"].to_numpy(float), ddof=1))
    assert design.scales["age"] == pytest.approx(np.std(per_person, ddof=1), rel=1e-12)
    assert abs(design.scales["age"] / over_samples - 1) > 1e-3  # the two differ here, so the test can fail
    assert design.scales["stress"] == pytest.approx(np.std(obs["stress"].to_numpy(float), ddof=1), rel=1e-12)
    age = design.X[:, design.columns.index("age")]
    assert np.std(age[~obs["participant"].duplicated().to_numpy()], ddof=1) == pytest.approx(1.0)


def test_report_of_an_association_study_escapes_predictor_names(tmp_path):
    """A predictor named like markup reaches the report only escaped (tables, sentences and figures)."""
    from ctra.endpoints import mark_endpoints
    from ctra.report import render_report

    hostile = "<img src=x onerror=alert(1)>"
    sheet = pd.read_csv(inputs.MULTIDRAW_DIR / "samples.tsv", sep="\t", dtype=str).rename(columns={"stress": hostile})
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    (tmp_path / "expression.tsv").write_text((inputs.MULTIDRAW_DIR / "expression.tsv").read_text())
    study = inputs.multidraw_study(tmp_path)
    study["predictors"] = [hostile, "group"]
    adata, scores, usage = inputs.prepared(study)
    contrasts, genes, info = fit_study(adata, scores, usage, ModelSettings.from_study(study))
    text = render_report(
        study="s",
        adata=adata,
        scores=scores,
        contrasts=mark_endpoints(contrasts, info["primary"]),
        genes=genes,
        genes_used=usage,
        methods=info,
    )
    assert hostile not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "association with &lt;img" in text  # the primary verdict names the predictor


def test_study_summary_of_an_association_study_has_no_arms(multidraw):
    """The report's study summary of an association study: one row of all participants, a column per draw
    time, no "Arm" header or "All arms" row."""
    from ctra.endpoints import mark_endpoints
    from ctra.report import render_report

    adata, scores, usage, _, _, _ = multidraw
    contrasts, genes, info = fit_study(adata, scores, usage, ModelSettings.from_study(inputs.multidraw_study()))
    text = render_report(
        study="s",
        adata=adata.copy(),
        scores=scores,
        contrasts=mark_endpoints(contrasts, info["primary"]),
        genes=genes,
        genes_used=usage,
        methods=info,
    )
    summary = text[text.index('id="design"') : text.index('id="qc"')]
    assert "Arm" not in summary and "All arms" not in summary and "per arm" not in summary
    assert "Cohort" in summary and "All participants" in summary
    people, samples = adata.obs["participant"].nunique(), adata.n_obs
    assert f"{people} / {samples}" in summary
    for t in sorted(set(adata.obs["time"].astype(str))):
        sub = adata.obs[adata.obs["time"].astype(str) == t]
        assert f"time {t}" in summary and f"{sub['participant'].nunique()} / {len(sub)}" in summary
