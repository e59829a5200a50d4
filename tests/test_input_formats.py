"""End to end on files as core facilities and paper supplements deliver them (issue 11).

One Snakemake run over five studies, each the same simulated cohort (tests/bad_inputs/cohort.py)
written as another kind of file, through to the report:

* ``salmon``: nf-core/rnaseq ``salmon.merged.gene_counts.tsv`` (gene_id with GENCODE versions,
  gene_name, estimated counts); CD3E's Ensembl id "changed" (found by gene_name) and IGLL3P has none;
* ``rsem``: nf-core/rnaseq ``rsem.merged.gene_counts.tsv`` (gene_id, transcript_id(s), expected counts);
* ``gencode``: GENCODE ids with versions and ``_PAR_Y`` rows, gzipped;
* ``xlsx``: an ``.xlsx`` sample sheet (a README worksheet first) with ids 001..048, as text cells and as
  numbers formatted ``000``, and padded cells;
* ``wide``: one row per sample with the design, covariates and a free-text column beside the genes,
  the sample sheet being that same file.

Every study must give the same scores as the plain integer table of the same cohort would, up to
what the format changes (the genes found): checked against a sixth, ``plain``, study.

The Snakemake run takes ~3 minutes on a loaded 2-core machine, so its tests are ``slow`` (run by
.ci/run); the default run covers every one of these files through ``ctra validate`` in the bad-input
catalogue (its ``..._works`` cases).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_snakemake
from bad_inputs.cohort import (
    CONFIG_SCHEMA,
    REPO,
    base_cohort,
    rsem_table,
    salmon_table,
    study_block,
    write_table,
    write_xlsx,
)

FAST = {"permutations": 50, "gene_sets": 20}
slow = pytest.mark.slow


def _numbered(counts: pd.DataFrame, sheet: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    ids = [f"{i + 1:03d}" for i in range(len(sheet))]
    counts = counts.rename(columns=dict(zip(sheet["sample"], ids)))
    sheet = sheet.assign(sample=ids, age=sheet["age"].astype(int))
    sheet.loc[[1, 8], "arm"] = " " + sheet.loc[[1, 8], "arm"] + " "
    formats = {(r, 0): (r + 1, "000") for r in range(0, len(sheet), 2)}
    return counts, sheet, formats


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    data = root / "data"
    counts, sheet = base_cohort()
    write_table(sheet, data / "samples.tsv", index=False)
    write_table(counts, data / "plain.tsv")
    write_table(salmon_table(counts), data / "salmon.merged.gene_counts.tsv", index=False)
    write_table(rsem_table(counts), data / "rsem.merged.gene_counts.tsv", index=False)
    gencode = salmon_table(counts, renumbered=(), par_y=4).drop(columns=["gene_name"])
    gencode.iloc[:, 1:] = np.rint(gencode.iloc[:, 1:].astype(float)).astype(int)
    (data / "gencode.tsv.gz").write_bytes(gzip.compress(gencode.to_csv(sep="\t", index=False).encode()))
    numbered_counts, numbered_sheet, formats = _numbered(counts, sheet)
    write_table(numbered_counts, data / "numbered_counts.tsv")
    write_xlsx(
        numbered_sheet,
        data / "samples.xlsx",
        sheet="samples",
        number_formats=formats,
        before={"README": [["Sample sheet"], ["ids are zero-padded"]]},
    )
    wide = pd.concat([sheet.assign(note=["ok"] * len(sheet)), counts.T.reset_index(drop=True)], axis=1)
    write_table(wide, data / "wide.tsv", index=False)
    studies = {
        "plain": study_block("data/plain.tsv", "data/samples.tsv"),
        "salmon": study_block("data/salmon.merged.gene_counts.tsv", "data/samples.tsv"),
        "rsem": study_block("data/rsem.merged.gene_counts.tsv", "data/samples.tsv"),
        "gencode": study_block("data/gencode.tsv.gz", "data/samples.tsv"),
        "xlsx": study_block("data/numbered_counts.tsv", "data/samples.xlsx", sheet="samples"),
        "wide": study_block("data/wide.tsv", "data/wide.tsv"),
    }
    for study in studies.values():
        study["robustness"] = dict(FAST)
    (root / "config.yaml").write_text(yaml.safe_dump({"studies": studies}, sort_keys=False))
    result = run_snakemake(root, "--cores", "2", timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    return root / "results"


def _used(run: Path, study: str) -> pd.DataFrame:
    return pd.read_csv(run / study / "genes_used.tsv", sep="\t", keep_default_na=False).set_index("gene")


def _scores(run: Path, study: str) -> pd.DataFrame:
    return pd.read_csv(run / study / "scores.tsv", sep="\t", dtype={"sample": str}).set_index("sample")


def _log(run: Path, study: str) -> str:
    return (run / study / "logs" / "validate.log").read_text()


@slow
@pytest.mark.parametrize("study", ["plain", "salmon", "rsem", "gencode", "xlsx", "wide"])
def test_every_format_runs_to_the_report(run, study):
    assert (run / study / "report.html").stat().st_size > 0
    assert len(_scores(run, study)) == 48 and _scores(run, study)["ctra"].notna().all()


@slow
def test_salmon_table_matched_on_both_ids_and_rounded(run):
    used = _used(run, "salmon")
    assert used.loc["IL1B", "matched_by"] == "ensembl_id" and used.loc["IL1B", "matched_id"].startswith(
        "ENSG00000125538."
    )
    assert used.loc["IGLL3P", "matched_by"] == "symbol" and used.loc["CD3E", "matched_by"] == "symbol"
    assert (used["matched_by"] != "").all()  # every gene of the set and marker found
    norm = ad.read_h5ad(run / "salmon" / "normalized.h5ad", backed="r")
    assert norm.uns["non_integer_counts"]["cells"] > 10000
    assert norm.uns["normalization"]["non_integer_counts_rounded"] == norm.uns["non_integer_counts"]["cells"]
    report = (run / "salmon" / "report.html").read_text()
    assert re.search(r"[\d,]+ non-integer values \(estimated counts\) were rounded", report)
    assert "'gene_name'" in _log(run, "salmon")
    # the estimates are within 0.49 of the integer counts, so rounding gives back the plain table
    np.testing.assert_allclose(_scores(run, "salmon")["ctra"], _scores(run, "plain")["ctra"], atol=1e-9)


@slow
def test_rsem_table(run):
    used = _used(run, "rsem")
    assert used.loc["IGLL3P", "matched_id"] == "" and used.loc["IL6", "matched_by"] == "ensembl_id"
    assert "'transcript_id(s)'" in _log(run, "rsem")


@slow
def test_gencode_par_y_rows(run):
    validated = ad.read_h5ad(run / "gencode" / "validated.h5ad", backed="r")
    assert validated.uns["par_y_rows"]["rows"] == 4 and validated.uns["par_y_rows"]["merged_into_chrX"] == 4
    assert "4 GENCODE _PAR_Y row(s)" in _log(run, "gencode")
    used = _used(run, "gencode")
    assert used.loc["IL1A", "matched_id"].startswith("ENSG00000115008.")


@slow
def test_xlsx_sheet_keeps_zero_padded_ids(run):
    scores = _scores(run, "xlsx")
    assert list(scores.index[:3]) == ["001", "002", "003"]
    np.testing.assert_allclose(scores["ctra"].to_numpy(), _scores(run, "plain")["ctra"].to_numpy(), atol=1e-9)
    log = _log(run, "xlsx")
    assert "samples.xlsx: read from Excel, worksheet 'samples'" in log and "whitespace stripped from 2 cell(s)" in log


@slow
def test_wide_table_with_covariates_in_the_same_file(run):
    np.testing.assert_allclose(_scores(run, "wide")["ctra"], _scores(run, "plain")["ctra"], atol=1e-9)
    log = _log(run, "wide")
    assert "layout: samples_by_genes; the sample sheet is this same file" in log
    assert "set aside as sample-sheet columns, not genes" in log and "'note'" in log


def test_readme_config_lines_are_valid_config():
    """The README's config example for the accepted files passes the schema (as Snakemake checks it)."""
    from snakemake.utils import validate

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Score your own cohort") : readme.index("## Configuration")]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    config = yaml.safe_load("\n".join(line[3:] for line in block.splitlines()))
    validate(config, str(CONFIG_SCHEMA))
    assert {"sheet", "layout", "non_integer_counts"} <= {k for s in config["studies"].values() for k in s}
