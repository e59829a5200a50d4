"""Slow: a trial with `outcomes:`, `dose:` and `mediation:` through the whole workflow, twice (byte-identical)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import yaml

from bad_inputs.cohort import Workdir, base_cohort
from test_workflow import dry_run_jobs


def _trial(root) -> Workdir:
    _, sheet = base_cohort()
    rng = np.random.default_rng(1)
    sheet["wellbeing"] = np.round(rng.normal(3, 1, len(sheet)), 2)
    sheet.loc[3, "wellbeing"] = np.nan  # one questionnaire not returned
    sheet["connectedness"] = np.round(rng.normal(3, 1, len(sheet)), 2)
    acts = {p: int(rng.integers(0, 20)) for p in sheet["participant"].unique()}
    sheet["acts"] = [acts[p] if arm != "control" else np.nan for p, arm in zip(sheet["participant"], sheet["arm"])]
    w = Workdir(root)
    w.write_cohort(sheet=sheet, outcomes=["wellbeing", "connectedness"], dose="acts", mediation={"bootstrap": 500})
    w.write_config()
    return w


@pytest.mark.slow
def test_outcome_trial_runs_end_to_end_and_reruns_byte_identical(tmp_path):
    w = _trial(tmp_path)
    result = w.snakemake("results/s/report.html", cores=2)
    assert result.returncode == 0, result.stdout + result.stderr
    study = w.results / "s"
    tables = {name: (study / name).read_bytes() for name in ("contrasts.tsv", "mediation.tsv")}
    contrasts = pd.read_csv(study / "contrasts.tsv", sep="\t", keep_default_na=False)
    assert list(contrasts.columns[:7]) == ["score", "model", "role", "contrast", "arm", "time", "term"]
    outcome_rows = contrasts[contrasts["score"].isin(["wellbeing", "connectedness"])]
    assert set(outcome_rows["contrast"]) == {"arm_x_time", "change"} and set(outcome_rows["role"]) == {"exploratory"}
    assert set(contrasts.loc[contrasts["term"] != "", "contrast"]) == {"within_person", "between_person", "dose_x_time"}
    assert (contrasts.loc[contrasts["term"] == "", "role"] != "").all()
    mediation = pd.read_csv(study / "mediation.tsv", sep="\t")
    assert len(mediation) == 4 * 2 * 1 * 1 * 2 * 5  # scores x outcomes x arms x times x orderings x paths
    html = (study / "report.html").read_text()
    assert 'id="outcomes"' in html and "fig-mediation" in html
    assert "missing at 1 of 48 draws" in (study / "logs" / "validate.log").read_text()
    for name in ("contrasts.tsv", "mediation.tsv", "work/outcome_contrasts.tsv", "report.html"):
        (study / name).unlink()
    again = w.snakemake("results/s/report.html", cores=2)
    assert again.returncode == 0, again.stdout + again.stderr
    for name, content in tables.items():
        assert (study / name).read_bytes() == content, name
    # the mediation rule reads only its own settings: a new seed reruns it and the report, nothing else
    config = yaml.safe_load((w.root / "config.yaml").read_text())
    config["studies"]["s"]["mediation"]["seed"] = 7
    assert dry_run_jobs(w.root, config) == {"mediation": 1, "report": 1}
