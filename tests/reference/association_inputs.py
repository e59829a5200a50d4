"""Inputs of the association-design R reference (``make_association_fixtures.R``), and ctra's side of it.

    python tests/reference/association_inputs.py && Rscript tests/reference/make_association_fixtures.R

Two cases:

* ``hrs``: the Cole et al. 2015 Health and Retirement Study cohort (``../shared/data/real/
  cole2015_hrs_loneliness/``, read in place), configured as ``config/hrs.yaml``: one draw per
  participant, predictors loneliness and zeudaimonia, the nine Cole 2015 covariates and the 8 markers
  (n = 108 complete cases). ctra's own validate, normalize and score code makes the model inputs;
  they are written to ``results/reference_association/hrs/`` (not tracked: individual data of the real
  cohort stay out of the repository), and R writes only its aggregate results to
  ``tests/reference/fixtures/association_hrs/``.
* ``multidraw``: a simulated cohort (seeded, ``simulate_multidraw``) of 30 participants with 1-3 draws
  (times t0, t1, t2), a time-varying predictor ``stress``, a participant-level ``group`` (categorical)
  and covariate ``age``, log2 expression of the 53 CTRA genes; committed in
  ``tests/reference/fixtures/association_multidraw/`` (``samples.tsv``, ``expression.tsv``).

Per case, R reads ``lm_input.tsv`` (one row per sample: participant, [time], predictors, covariates,
marker VST, ctra's four scores) and ``gene_input.tsv`` (one row per sample, ctra's used genes' VST,
``genes.tsv`` their group and direction).
"""

from __future__ import annotations

import copy
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = HERE / "fixtures"
HRS_DIR = REPO.parent / "shared" / "data" / "real" / "cole2015_hrs_loneliness"
HRS_OUT = REPO / "results" / "reference_association" / "hrs"
MULTIDRAW_DIR = FIXTURES / "association_multidraw"
MULTIDRAW_SEED = 20261201
GENE_SETS = REPO / "resources" / "gene_sets"


def with_defaults(study: dict) -> dict:
    from snakemake.utils import validate

    config = {"studies": {"s": copy.deepcopy(study)}}
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config["studies"]["s"]


def hrs_study() -> dict:
    """config/hrs.yaml's study, its paths made absolute (the data are read where they are)."""
    study = yaml.safe_load((REPO / "config" / "hrs.yaml").read_text())["studies"]["hrs"]
    study["counts"] = str(HRS_DIR / "expression_log2.tsv")
    study["samples"] = str(HRS_DIR / "samples.tsv")
    return with_defaults(study)


def prepared(study: dict) -> tuple[ad.AnnData, pd.DataFrame, pd.DataFrame]:
    """ctra's validate, normalize and score of a study, in process: (normalized AnnData, scores, usage)."""
    from ctra.config import ValidateSettings
    from ctra.genesets import load_gene_set
    from ctra.normalize import normalize
    from ctra.scoring import gene_summaries, score_study, usage_table
    from ctra.validate import validate_study

    genes, markers = (
        load_gene_set(str(GENE_SETS / "ctra53.tsv")),
        load_gene_set(str(GENE_SETS / "leukocyte_markers.tsv"), allowed_groups=("marker",)),
    )
    validated = validate_study("s", ValidateSettings.from_study(study), genes, markers)
    adata = normalize(validated, input_kind=study["input"], method="fast")
    rule = study["expression_filter"]
    adata.var[["expressed", "vst_mean", "vst_var"]] = gene_summaries(adata, rule["min_count"], rule["min_fraction"])[
        ["expressed", "vst_mean", "vst_var"]
    ]
    usage = usage_table(adata, pd.concat([genes, markers], ignore_index=True).drop_duplicates("gene"))
    return adata, score_study(adata, usage), usage


def simulate_multidraw(seed: int = MULTIDRAW_SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sample sheet, log2 expression samples x genes) of the simulated multi-draw cohort."""
    from ctra.genesets import load_gene_set

    rng = np.random.default_rng(seed)
    genes = load_gene_set(str(GENE_SETS / "ctra53.tsv"))["gene"].tolist()
    rows = []
    for i in range(30):
        draws = 1 + int(rng.integers(0, 3))
        age, group = int(rng.integers(30, 70)), ["a", "b", "c"][i % 3]
        for t in range(draws):
            rows.append(
                {
                    "sample": f"S{i + 1:02d}_{t}",
                    "participant": f"S{i + 1:02d}",
                    "time": f"t{t}",
                    "stress": f"{rng.normal(3, 1):.3f}",
                    "group": group,
                    "age": str(age),
                }
            )
    sheet = pd.DataFrame(rows)
    person = pd.factorize(sheet["participant"])[0]
    effect = rng.normal(0, 0.4, (person.max() + 1, len(genes)))[person]
    shared = rng.normal(0, 0.3, (person.max() + 1, 1))[person]
    values = 8 + effect + shared + rng.normal(0, 0.5, (len(sheet), len(genes)))
    return sheet, pd.DataFrame(np.round(values, 6), index=sheet["sample"], columns=genes)


def multidraw_study(directory: Path = MULTIDRAW_DIR) -> dict:
    return with_defaults(
        {
            "design": "association",
            "counts": str(directory / "expression.tsv"),
            "samples": str(directory / "samples.tsv"),
            "input": "log2_expression",
            "layout": "samples_by_genes",
            "columns": {"sample": "sample", "participant": "participant"},
            "predictors": ["stress", "group"],
            "categorical": ["group"],
            "covariates": ["age"],
            "time": "time",
            "adjust_for_cell_markers": False,
        }
    )


def export(adata: ad.AnnData, scores: pd.DataFrame, usage: pd.DataFrame, study: dict, out: Path) -> None:
    """lm_input.tsv, gene_input.tsv and genes.tsv for R."""
    from ctra.genesets import marker_genes, set_genes

    out.mkdir(parents=True, exist_ok=True)
    obs = adata.obs
    columns = ["participant", *(["time"] if "time" in obs else []), *study["predictors"], *study["covariates"]]
    table = obs[columns].copy()
    markers = marker_genes(usage) if study["adjust_for_cell_markers"] is True else []
    for gene in markers:
        table[gene] = np.asarray(adata[:, gene].layers["vst"]).ravel()
    table = table.join(scores.set_index("sample")[["ctra", "inflammatory", "antiviral", "antibody"]])
    table.reset_index(names="sample").to_csv(out / "lm_input.tsv", sep="\t", index=False, float_format="%.17g")
    used = set_genes(usage)
    vst = pd.DataFrame(np.asarray(adata[:, used["gene"].tolist()].layers["vst"]), index=obs.index, columns=used["gene"])
    vst.reset_index(names="sample").to_csv(out / "gene_input.tsv", sep="\t", index=False, float_format="%.17g")
    used[["gene", "group", "direction"]].to_csv(out / "genes.tsv", sep="\t", index=False)
    (out / "design.yaml").write_text(
        yaml.safe_dump(
            {
                "predictors": list(study["predictors"]),
                "covariates": list(study["covariates"]),
                "categorical": list(study.get("categorical", [])),
                "time": study.get("time"),
                "markers": markers,
            },
            sort_keys=False,
        )
    )


def main() -> None:
    sheet, expression = simulate_multidraw()
    MULTIDRAW_DIR.mkdir(parents=True, exist_ok=True)
    sheet.to_csv(MULTIDRAW_DIR / "samples.tsv", sep="\t", index=False)
    expression.reset_index().to_csv(MULTIDRAW_DIR / "expression.tsv", sep="\t", index=False)
    study = multidraw_study()
    export(*prepared(study), study, MULTIDRAW_DIR)
    if HRS_DIR.is_dir():
        study = hrs_study()
        export(*prepared(study), study, HRS_OUT)
    else:
        print(f"{HRS_DIR} absent: the hrs case is not exported")


if __name__ == "__main__":
    main()
