"""End to end: `snakemake` on the bundled example (known truth) and on the real whole-blood cohort."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REAL_COHORT, REPO, requires_real_cohort, run_example

TABLES = ("scores.tsv", "genes_used.tsv", "contrasts.tsv", "genes.tsv")


def test_example_outputs_complete(example_run):
    for name in (*TABLES, "normalized.h5ad", "report.html"):
        assert (example_run / name).stat().st_size > 0, name
    assert (example_run / "report.html").stat().st_size < 10 * 2**20


def test_example_recovers_known_ctra_reduction(example_run):
    truth = pd.read_csv(REPO / "resources" / "example" / "truth.tsv", sep="\t")
    contrasts = pd.read_csv(example_run / "contrasts.tsv", sep="\t")
    main = contrasts[(contrasts["model"] == "lmm") & (contrasts["contrast"] == "arm_x_time")].set_index(
        ["score", "arm"]
    )
    true_ctra = truth.set_index("name").loc["ctra", "truth"]
    treated = main.loc[("ctra", "kind_others")]
    assert treated["estimate"] < 0, "CTRA should fall in the kind_others arm"
    assert treated["ci_low"] <= true_ctra <= treated["ci_high"]
    assert treated["p_value"] < 0.05
    untreated = main.loc[("ctra", "kind_self")]
    assert untreated["ci_low"] <= 0 <= untreated["ci_high"]


def test_example_gene_level_effects_match_simulated_log2_change(example_run):
    genes = pd.read_csv(example_run / "genes.tsv", sep="\t")
    treated = genes[(genes["contrast"] == "arm_x_time") & (genes["arm"] == "kind_others")]
    signed = (treated["estimate"] * treated["direction"]).mean()
    assert signed == pytest.approx(-0.45, abs=0.1)  # EFFECT_LOG2 in ctra.example
    assert (treated.groupby("time")["fdr"].count() == len(treated)).all()


def test_example_records_alias_and_unused_genes(example_run):
    used = pd.read_csv(example_run / "genes_used.tsv", sep="\t", keep_default_na=False).set_index("gene")
    assert used.loc["CXCL8", "matched_id"] == "IL8"
    assert used.loc["CXCL8", "used"] in (True, "True")
    assert used.loc["IFNB1", "reason"].startswith("not expressed")
    assert len(used) == 53 + 8


def test_example_power_plans_from_the_observed_effect_and_the_cautious_bound(example_run):
    """power.tsv and the report's Power section: the observed primary estimate and the CI bound nearer zero,
    participants per arm for 80 % and 90 %, and the plain sentence with the attrition."""
    contrasts = pd.read_csv(example_run / "contrasts.tsv", sep="\t")
    primary = contrasts[(contrasts["role"] == "primary") & (contrasts["arm"] == "kind_others")].iloc[0]
    power = pd.read_csv(example_run / "power.tsv", sep="\t", keep_default_na=False, na_values=[""])
    sizes = power[(power["kind"] == "sample_size") & (power["arm"] == "kind_others")].set_index(
        ["effect_label", "target"]
    )
    assert sizes.loc[("observed", 0.9), "effect"] == pytest.approx(primary["estimate"], abs=1e-9)
    assert abs(sizes.loc[("ci_bound", 0.9), "effect"]) == pytest.approx(abs(primary["ci_high"]), abs=1e-9)
    n = int(sizes.loc[("observed", 0.9), "per_arm"])
    assert n < int(sizes.loc[("ci_bound", 0.9), "per_arm"])
    report = (example_run / "report.html").read_text()
    assert (
        f"To detect the observed {primary['estimate']:+.2f} (score units; "
        f"{sizes.loc[('observed', 0.9), 'effect_baseline_sd']:+.2f} baseline SD) (kind_others vs control at post) "
        "with 90 % power" in report
    )
    assert (
        f"needs {n} participants per arm; with 10 % of participants lost before any draw, "
        f"{int(sizes.loc[('observed', 0.9), 'enrolled_per_arm'])}" in report
    )
    assert "winner&#39;s curse" in report


def test_synthesis_joins_the_dag_when_configured(example_run, tmp_path):
    """`synthesis: true` with two trial studies adds the synthesis (and each study's primary summary) to `all`;
    `power: enabled: false` leaves that study's power out (its summary is still made for the synthesis)."""
    config = yaml.safe_load((example_run.parents[1] / "config.yaml").read_text())
    study = config["studies"]["example"]
    config = {"studies": {"example": study, "copy": {**study, "power": {"enabled": False}}}, "synthesis": True}
    jobs = dry_run_jobs(tmp_path, config)
    assert jobs["synthesis"] == 1 and jobs["effect"] == 2 and jobs["power"] == 1 and jobs["report"] == 2


def dry_run_jobs(workdir: Path, config: dict) -> dict[str, int]:
    """{rule: jobs} that `snakemake -n` would run with this config (its "Job stats" table), `all` left out."""
    result = run_example(workdir, config, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    if "Job stats:" not in result.stdout:
        assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
        return {}
    table = result.stdout.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M) if rule != "all"}


def test_a_setting_reruns_only_the_stages_that_read_it(example_run, tmp_path):
    """Each rule gets only its stage's settings (ctra.config.STAGE_KEYS): a report-only setting reruns the report,
    `robustness.chunks` the null draws and what gathers them, with the same tables."""
    workdir = tmp_path / "copy"
    shutil.copytree(example_run.parents[1], workdir, symlinks=True)  # the finished run, metadata included
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    assert dry_run_jobs(workdir, config) == {}
    study = config["studies"]["example"]
    assert dry_run_jobs(workdir, {"studies": {"example": {**study, "show_participant_ids": True}}}) == {"report": 1}
    chunked = {"studies": {"example": {**study, "robustness": {"chunks": 2}}}}
    assert dry_run_jobs(workdir, chunked) == {"null_chunk": 2, "robustness": 1, "report": 1}
    before = {name: (workdir / "results" / "example" / name).read_bytes() for name in TABLES}
    result = run_example(workdir, chunked)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in TABLES:
        assert (workdir / "results" / "example" / name).read_bytes() == before[name], name


@pytest.mark.slow  # the whole workflow on 25,342 genes x 45 samples: the default suite's longest test
@requires_real_cohort
def test_real_whole_blood_cohort_end_to_end(tmp_path):
    config = {
        "studies": {
            "lemay2019": {
                "counts": str(REAL_COHORT / "fixed_combinedCounts.txt.gz"),
                "samples": str(REAL_COHORT / "samples.tsv"),
                "columns": {
                    "sample": "count_column",
                    "participant": "Subject",
                    "arm": "Arm",
                    "time": "time",
                    "period": "Day",
                },
                "baseline": "0h",
                "control": "Placebo_SunflowerOil",
            }
        }
    }
    result = run_example(tmp_path, config)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results" / "lemay2019"
    used = pd.read_csv(out / "genes_used.tsv", sep="\t", keep_default_na=False).set_index("gene")
    assert used.loc["JCHAIN", "matched_id"] == "IGJ"
    assert used.loc["IGLL3P", "matched_id"] == "IGLL3P"
    assert used.loc["IFIT1B", "matched_id"] == "IFIT1B"
    scores = pd.read_csv(out / "scores.tsv", sep="\t")
    assert len(scores) == 45 and scores["ctra"].notna().all()
    contrasts = pd.read_csv(out / "contrasts.tsv", sep="\t")
    main = contrasts[contrasts["model"] == "lmm"]
    # 2 arms x 2 later draws (arm x time) + 3 arms x 2 changes, for 4 scores
    assert len(main) == 4 * (4 + 6)
    assert main[["estimate", "se", "df", "p_value"]].notna().all().all()
    model = (out / "model.json").read_text()
    assert "(1 | participant:period)" in model
    assert (out / "report.html").stat().st_size > 0
