"""The bad-input catalogue: one broken thing per case, each on a fresh copy of a tiny cohort.

Every failing case asserts a non-zero exit, one message naming the file and the offending
row / column / id (specific substrings), no Python traceback on stdout or stderr, and no stage
output under results/ (nothing that looks like a finished analysis). Most cases run the
``validate`` stage through the CLI exactly as workflow/rules/validate.smk calls it; the ones that
need Snakemake itself (config schema, unknown study, full-rank design, unwritable or full output
directory) run ``snakemake`` in the case's tmp dir.

Decisions recorded here (and in the report of the change):

* A sample sheet with a UTF-8 byte-order mark and/or CRLF line ends that is otherwise fine WORKS:
  both are invisible artefacts of Excel / Windows editors, stripping them cannot change meaning.
* Leading/trailing whitespace in sheet cells (and around count-table sample names) is STRIPPED and
  counted in the log and ``uns`` (issue 11: Excel exports pad cells; this replaced an earlier
  decision that refused it). Ids that stripping makes identical are an ERROR naming both lines and
  spellings: ``'P03_pre '`` and ``'P03_pre'`` on two rows may be different samples to the user.
  Spaces inside a value are kept, so 'week 4' vs 'week  4' is still refused.
* Non-integer values in counts mode (estimated counts: Salmon, RSEM) are ROUNDED by default
  (``non_integer_counts: round``, recorded); ``non_integer_counts: error`` refuses them. TPM/CPM (every
  sample summing to 1e6 +/- 1 %) is an ERROR either way, with the ``input: log2_expression`` suggestion.
* Count-table annotation columns (nf-core's gene_name, RSEM's transcript_id(s), any leading text column)
  WORK; GENCODE ``_PAR_Y`` rows WORK (added to the chrX gene's counts, dropped for log2 input, counted).
* Wide tables (one row per sample) WORK, with covariates in the same file when ``samples:`` is it.
* ``.xlsx`` sheets and count tables WORK (first worksheet or ``sheet:``); ``.xls`` is an ERROR.
* "Output directory not writable": the test runs as root, which ignores permission bits, so it is
  simulated twice: ``results`` is a regular FILE (always), and ``results/`` is made immutable with
  ``chattr +i`` (when chattr works on this file system; skipped otherwise).
* "Disk full": a 64 KiB tmpfs mounted on ``<tmp>/results`` (when ``mount`` is permitted; skipped
  otherwise): the first large write (validated.h5ad) fails with ENOSPC.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from .cohort import TRACEBACK, Workdir, base_cohort, rsem_table, salmon_table, write_table, write_xlsx


@dataclass
class Case:
    build: Callable[[Workdir], None]
    expect: list[str]
    runner: str = "validate"  # or "snakemake"
    ok: bool = False
    targets: tuple[str, ...] = ("results/s/contrasts.tsv",)
    check: Callable[[Workdir, subprocess.CompletedProcess], None] | None = None
    needs: Callable[[], str | None] | None = None  # returns a skip reason or None
    cleanup: Callable[[Workdir], None] | None = None
    # the message comes from ctra's generic "internal error" handler (see the disk-full case)
    internal_ok: bool = False
    marks: list = field(default_factory=list)


CASES: dict[str, Case] = {}


def case(expect: list[str], **options) -> Callable:
    def register(build: Callable[[Workdir], None]) -> Callable:
        CASES[build.__name__] = Case(build=build, expect=expect, **options)
        return build

    return register


def counts_path(w: Workdir) -> Path:
    return w.root / "data" / "s_counts.tsv"


def sheet_path(w: Workdir) -> Path:
    return w.root / "data" / "s_samples.tsv"


# ----------------------------------------------------------------------------------------------
# File-level problems
# ----------------------------------------------------------------------------------------------


@case(["s_counts.tsv", "empty"])
def counts_empty(w):
    w.write_cohort()
    counts_path(w).write_bytes(b"")


@case(["s_samples.tsv", "empty"])
def sheet_empty(w):
    w.write_cohort()
    sheet_path(w).write_bytes(b"")


@case(["s_counts.tsv", "binary"])
def counts_binary(w):
    w.write_cohort()
    counts_path(w).write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())


@case(["s_samples.xlsx", "Excel"])
def sheet_excel_file(w):
    w.write_cohort()
    w.studies["s"]["samples"] = "data/s_samples.xlsx"
    (w.root / "data" / "s_samples.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 8)


def _numbered_cohort(w, sheet_name: str = "Sheet1", before: dict | None = None) -> None:
    """The cohort with sample ids 001..048 on an .xlsx sheet: odd rows as text cells, even rows as the
    numbers 1..48 with Excel's '000' format (both show 001); ages as numbers; some arm cells padded."""
    counts, sheet = base_cohort()
    ids = [f"{i + 1:03d}" for i in range(len(sheet))]
    counts = counts.rename(columns=dict(zip(sheet["sample"], ids)))
    sheet["sample"] = ids
    sheet["age"] = sheet["age"].astype(int)
    sheet.loc[[0, 5, 17], "arm"] = sheet.loc[[0, 5, 17], "arm"] + "  "
    formats = {(r, 0): (r + 1, "000") for r in range(1, len(sheet), 2)}
    w.write_cohort(counts=counts)
    sheet_path(w).unlink()
    write_xlsx(sheet, w.root / "data" / "s_samples.xlsx", sheet=sheet_name, before=before, number_formats=formats)
    w.studies["s"]["samples"] = "data/s_samples.xlsx"


def _xlsx_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert list(adata.obs_names[:4]) == ["001", "002", "003", "004"] and adata.n_obs == 48
    assert set(adata.obs["arm"]) == {"control", "treat"}
    assert adata.obs["age"].dtype.kind == "f" and adata.obs["age"].between(25, 70).all()
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "s_samples.xlsx: read from Excel" in log and "whitespace stripped from 3 cell(s)" in log


@case([], ok=True, check=_xlsx_ok)
def sheet_xlsx_with_numbered_ids_works(w):
    """Ids like 001 stay 001, whether a text cell or the number 1 shown with Excel's '000' format."""
    _numbered_cohort(w)


@case([], ok=True, check=_xlsx_ok)
def sheet_xlsx_chosen_worksheet_works(w):
    _numbered_cohort(w, sheet_name="samples", before={"README": [["Sample sheet of study s"], ["version 3"]]})
    w.studies["s"]["sheet"] = "samples"


@case(["s_samples.xls", "old Excel workbook (.xls)", "save it as .xlsx"])
def sheet_old_xls_refused(w):
    w.write_cohort()
    (w.root / "data" / "s_samples.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    w.studies["s"]["samples"] = "data/s_samples.xls"


@case(["s_samples.xlsx", "no worksheet 'Samples'", "'README'", "'samples'"])
def sheet_xlsx_unknown_worksheet(w):
    _numbered_cohort(w, sheet_name="samples", before={"README": [["Sample sheet of study s"]]})
    w.studies["s"]["sheet"] = "Samples"


@case(["config", "`sheet`", "s_samples.tsv", "not an Excel workbook"])
def config_sheet_for_a_tsv(w):
    w.write_cohort()
    w.studies["s"]["sheet"] = "samples"


def _xlsx_counts_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    counts, _ = base_cohort()
    assert adata.n_obs == 48 and adata.var.loc["IGLL3P", "matched_by"] == "symbol"
    np.testing.assert_array_equal(adata[["P05_post"], ["TNF"]].X[0, 0], round(counts.loc["TNF", "P05_post"]))


@case([], ok=True, check=_xlsx_counts_ok)
def counts_xlsx_salmon_works(w):
    """A count table on a worksheet (a salmon table pasted into Excel, estimated counts)."""
    counts, _ = base_cohort()
    w.write_cohort()
    table = salmon_table(counts, renumbered=())
    write_xlsx(table, w.root / "data" / "s_counts.xlsx")
    w.studies["s"]["counts"] = "data/s_counts.xlsx"


@case(["s_counts.xlsx", "column 'P03_pre'", "'IL6'", "'n.d.'", "is not a number"])
def counts_xlsx_text_cell(w):
    counts, _ = base_cohort()
    w.write_cohort()
    counts = counts.astype(object)
    counts.loc["IL6", "P03_pre"] = "n.d."
    write_xlsx(counts, w.root / "data" / "s_counts.xlsx", index=True)
    w.studies["s"]["counts"] = "data/s_counts.xlsx"


def _wide_frame(with_sheet: bool = True) -> pd.DataFrame:
    """One row per sample: (sheet columns, a free-text note,) then the genes, as paper supplements look."""
    counts, sheet = base_cohort()
    genes = counts.T.reset_index(drop=True)
    if not with_sheet:
        return pd.concat([sheet[["sample"]], genes], axis=1)
    sheet = sheet.assign(note=["hemolysed" if i % 7 == 0 else "ok" for i in range(len(sheet))])
    return pd.concat([sheet, genes], axis=1)


def _wide_ok(layout_why: str):
    def check(w, result):
        adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
        counts, _ = base_cohort()
        assert adata.n_obs == 48 and adata.uns["layout"] == "samples_by_genes"
        assert adata.n_vars == len(counts) and "age" not in adata.var_names and "note" not in adata.var_names
        np.testing.assert_array_equal(adata[["P05_post"], ["TNF"]].X[0, 0], counts.loc["TNF", "P05_post"])
        log = (w.results / "s" / "logs" / "validate.log").read_text()
        assert "read as one row per sample, genes as columns (layout: samples_by_genes; " + layout_why in log

    return check


@case([], ok=True, check=_wide_ok("the sample sheet is this same file"))
def counts_wide_with_covariates_works(w):
    """A samples-as-rows table with the design and covariate columns in the same file (`samples:` is it)."""
    w.write_cohort()
    write_table(_wide_frame(), w.root / "data" / "wide.tsv", index=False)
    w.studies["s"].update(counts="data/wide.tsv", samples="data/wide.tsv")


@case([], ok=True, check=_wide_ok("detected: 48 of its first 48 rows start with a sample id"))
def counts_wide_detected_beside_a_sheet(w):
    w.write_cohort()
    write_table(_wide_frame(with_sheet=False), counts_path(w), index=False)


@case([], ok=True, check=_wide_ok("`layout` in the config"))
def counts_wide_xlsx_one_workbook(w):
    """A supplement workbook: the README worksheet first, then samples x genes with covariates."""
    w.write_cohort()
    write_xlsx(
        _wide_frame(),
        w.root / "data" / "supplement.xlsx",
        sheet="Table S2",
        before={"README": [["Supplementary table 2: whole-blood counts"]]},
    )
    w.studies["s"].update(
        counts="data/supplement.xlsx", samples="data/supplement.xlsx", sheet="Table S2", layout="samples_by_genes"
    )


@case(["wide.tsv", "column 'IL6'", "sample 'P03_pre'", "line 6", "'n.d.'", "is not a number"])
def counts_wide_text_cell(w):
    w.write_cohort()
    frame = _wide_frame().astype({"IL6": object})
    frame.loc[4, "IL6"] = "n.d."
    write_table(frame, w.root / "data" / "wide.tsv", index=False)
    w.studies["s"].update(counts="data/wide.tsv", samples="data/wide.tsv")


@case(["s_counts.tsv", "no sample id of the sheet is a row", "layout: samples_by_genes", "`layout: genes_by_samples`"])
def counts_wrong_layout_configured(w):
    """`layout: samples_by_genes` on an ordinary count table: the message suggests the other layout."""
    w.write_cohort(layout="samples_by_genes")


@case(["s_counts.tsv", "'P02_pre'", "lines 4 and 6", "more than one row"])
def counts_wide_repeated_sample(w):
    w.write_cohort()
    frame = _wide_frame(with_sheet=False)
    frame.loc[4, "sample"] = "P02_pre"
    write_table(frame, counts_path(w), index=False)
    w.studies["s"]["layout"] = "samples_by_genes"


@case(["s_counts.tsv.gz", "gzip"])
def counts_gz_not_gzipped(w):
    w.write_cohort()
    shutil.copy(counts_path(w), w.root / "data" / "s_counts.tsv.gz")
    w.studies["s"]["counts"] = "data/s_counts.tsv.gz"


@case(["s_counts.tsv.gz", "truncated"])
def counts_gz_truncated(w):
    w.write_cohort()
    data = gzip.compress(counts_path(w).read_bytes())
    (w.root / "data" / "s_counts.tsv.gz").write_bytes(data[: len(data) // 2])
    w.studies["s"]["counts"] = "data/s_counts.tsv.gz"


@case(["s_counts.tsv", "semicolon"])
def counts_semicolon_delimited(w):
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(counts, counts_path(w), sep=";")


@case(["s_samples.tsv", "semicolon"])
def sheet_semicolon_delimited(w):
    _, sheet = base_cohort()
    w.write_cohort()
    write_table(sheet, sheet_path(w), sep=";", index=False)


@case(["s_counts.tsv", "space"])
def counts_space_delimited(w):
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(counts, counts_path(w), sep=" ")


@case(["s_counts.tsv", "no gene rows"])
def counts_header_only(w):
    w.write_cohort()
    counts_path(w).write_text(counts_path(w).read_text().splitlines()[0] + "\n")


@case(["s_samples.tsv", "no rows"])
def sheet_header_only(w):
    w.write_cohort()
    sheet_path(w).write_text(sheet_path(w).read_text().splitlines()[0] + "\n")


@case(["s_counts.tsv", "line 7", "fields"])
def counts_ragged_row(w):
    w.write_cohort()
    lines = counts_path(w).read_text().splitlines()
    lines[6] = lines[6].rsplit("\t", 1)[0]
    counts_path(w).write_text("\n".join(lines) + "\n")


@case(["s_samples.tsv", "line 9", "fields"])
def sheet_ragged_row(w):
    w.write_cohort()
    lines = sheet_path(w).read_text().splitlines()
    lines[8] = lines[8].rsplit("\t", 2)[0]
    sheet_path(w).write_text("\n".join(lines) + "\n")


@case(["s_counts.tsv", "file not found"])
def counts_file_missing(w):
    w.write_cohort()
    counts_path(w).unlink()


# ----------------------------------------------------------------------------------------------
# Count table structure and values
# ----------------------------------------------------------------------------------------------


@case(["s_counts.tsv", "'P01_pre'", "gene id"])
def counts_gene_column_missing(w):
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(counts, counts_path(w), index=False)


@case(["s_counts.tsv", "duplicate sample column", "'P03_pre'"])
def counts_duplicate_sample_columns(w):
    counts, _ = base_cohort()
    columns = counts.columns.tolist()
    columns[7] = "P03_pre"
    counts.columns = columns
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "'SYN00010'", "lines 72 and 1202"])
def counts_duplicate_gene_ids(w):
    counts, _ = base_cohort()
    counts = pd.concat([counts, counts.loc[["SYN00010"]]])
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "'IL8'", "'CXCL8'", "log2"])
def counts_alias_duplicate_log2(w):
    counts, _ = base_cohort()
    log2 = np.log2(counts + 1).round(4)
    log2 = pd.concat([log2, log2.loc[["CXCL8"]].rename(index={"CXCL8": "IL8"})])
    w.write_cohort(counts=log2, input="log2_expression")


@case(["s_counts.tsv", "Ensembl", "ENSG00000115008", "CD3D"])
def counts_ensembl_mixed_with_symbols(w):
    counts, _ = base_cohort()
    ctra = pd.read_csv(Path(__file__).parents[2] / "resources/gene_sets/ctra53.tsv", sep="\t")
    ensembl = ctra["ensembl_id"].str.split(";").str[0]
    counts = counts.rename(index=dict(zip(ctra["gene"][ensembl.notna()], ensembl[ensembl.notna()])))
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "TPM", "input: log2_expression", "'IL1A'", "'P01_pre'"])
def counts_are_tpm(w):
    counts, _ = base_cohort()
    w.write_cohort(counts=(counts / counts.sum() * 1e6).round(3))


@case(
    [
        "s_counts.tsv",
        "non-integer",
        "'SYN00005'",
        "'P02_post'",
        "12.5",
        "input: log2_expression",
        "non_integer_counts: error",
        "non_integer_counts: round",
    ]
)
def counts_with_fractional_values(w):
    """Decision: non-integer counts are refused only when the config asks for it (default: rounded)."""
    counts, _ = base_cohort()
    counts = counts.astype(float)
    counts.loc["SYN00005", "P02_post"] = 12.5
    w.write_cohort(counts=counts, non_integer_counts="error")


def _rounded_recorded(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    counts, _ = base_cohort()
    assert adata.uns["non_integer_counts"]["cells"] == 2 and adata.uns["non_integer_counts"]["samples"] == 1
    assert adata[["P02_post"], ["SYN00005"]].X[0, 0] == 12  # 12.5 -> 12 (half to even, as R's round)
    assert adata[["P02_post"], ["SYN00006"]].X[0, 0] == counts.loc["SYN00006", "P02_post"] + 1  # +0.7
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "2 non-integer count(s) in 1 sample(s)" in log and "rounded to the nearest integer" in log


@case([], ok=True, check=_rounded_recorded)
def counts_with_fractional_values_rounded(w):
    counts, _ = base_cohort()
    counts = counts.astype(float)
    counts.loc["SYN00005", "P02_post"] = 12.5
    counts.loc["SYN00006", "P02_post"] += 0.7
    w.write_cohort(counts=counts)


def _salmon_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    var = adata.var
    assert adata.n_obs == 48 and adata.uns["id_kind"] == "ensembl"
    assert var.loc["IL1B", "matched_by"] == "ensembl_id" and var.loc["IL1B", "input_ids"].startswith("ENSG00000125538.")
    assert var.loc["IGLL3P", "matched_by"] == "symbol"  # no Ensembl id in the gene set
    assert var.loc["CD3E", "matched_by"] == "symbol"  # its id 'changed': found by gene_name
    assert var.loc["CXCL8", "matched_by"] == "ensembl_id"
    assert adata.uns["non_integer_counts"]["cells"] > 10000
    assert float(np.abs(adata.X - np.round(adata.X)).max()) == 0
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "annotation column(s) beside the gene ids, not samples: 'gene_name'" in log
    assert "by symbol (column 'gene_name') (IGLL3P, CD3E)" in log


@case([], ok=True, check=_salmon_ok)
def counts_nfcore_salmon_works(w):
    """nf-core/rnaseq salmon.merged.gene_counts.tsv: gene_id + gene_name, estimated counts."""
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(salmon_table(counts), counts_path(w), index=False)


def _rsem_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.n_obs == 48 and "IGLL3P" not in adata.var_names  # no symbol column: IGLL3P has no Ensembl id
    assert (adata.var.loc[["IL1A", "CD3E"], "matched_by"] == "ensembl_id").all()
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "'transcript_id(s)'" in log and "rounded" in log


@case([], ok=True, check=_rsem_ok)
def counts_nfcore_rsem_works(w):
    """nf-core/rnaseq rsem.merged.gene_counts.tsv: gene_id, transcript_id(s), expected counts."""
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(rsem_table(counts), counts_path(w), index=False)


def _par_y_merged(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    counts, _ = base_cohort()
    assert adata.uns["par_y_rows"]["rows"] == 5 and adata.uns["par_y_rows"]["merged_into_chrX"] == 5
    assert adata.uns["par_y_rows"]["with_reads"] == 1
    assert not any(str(g).endswith("_PAR_Y") for g in adata.var["input_ids"])
    assert adata.n_vars == len(counts)
    # IL1A's Y copy had 2 reads in every sample: added to its estimated (rounded) count
    salmon = salmon_table(counts).set_index("gene_name")
    expected = np.rint(salmon.loc["IL1A", adata.obs_names].to_numpy(float)) + 2
    np.testing.assert_array_equal(adata[:, "IL1A"].X[:, 0], expected)
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "5 GENCODE _PAR_Y row(s)" in log and "added to their chrX gene's counts (5)" in log


@case([], ok=True, check=_par_y_merged)
def counts_gencode_par_y_rows_merged(w):
    """GENCODE ids with versions and _PAR_Y rows (once refused as 'mixed id kinds')."""
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(salmon_table(counts, par_y=5), counts_path(w), index=False)


def _par_y_dropped(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.uns["par_y_rows"]["dropped"] == 3 and adata.n_vars == 1200
    assert "3 GENCODE _PAR_Y row(s)" in (w.results / "s" / "logs" / "validate.log").read_text()


@case([], ok=True, check=_par_y_dropped)
def log2_gencode_par_y_rows_dropped(w):
    counts, _ = base_cohort()
    table = salmon_table(counts, par_y=3)
    table.iloc[:, 2:] = np.log2(table.iloc[:, 2:].astype(float) + 1).round(4)
    w.write_cohort(input="log2_expression")
    write_table(table.drop(columns=["gene_name"]), counts_path(w), index=False)


@case(["s_counts.tsv", "no sample columns", "'gene_name'"])
def counts_only_annotation_columns(w):
    counts, _ = base_cohort()
    w.write_cohort()
    write_table(salmon_table(counts).iloc[:, :2], counts_path(w), index=False)


@case(["s_counts.tsv", "TPM", "input: log2_expression", "'IL1A'"])
def counts_salmon_tpm_refused(w):
    """nf-core's salmon.merged.gene_tpm.tsv given as counts: refused, although estimated counts are rounded."""
    counts, _ = base_cohort()
    table = salmon_table(counts)
    values = table.iloc[:, 2:]
    table.iloc[:, 2:] = (values / values.sum() * 1e6).round(4)
    w.write_cohort()
    write_table(table, counts_path(w), index=False)


@case(["s_counts.tsv", "negative", "'TNF'", "'P04_pre'", "-3"])
def counts_negative(w):
    counts, _ = base_cohort()
    counts.loc["TNF", "P04_pre"] = -3
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "2 missing", "'SYN00020'", "'P05_post'", "line 82"])
def counts_nan_and_empty_cells(w):
    counts, _ = base_cohort()
    w.write_cohort(counts=counts)
    lines = counts_path(w).read_text().splitlines()
    fields = lines[81].split("\t")  # SYN00020: gene 81 (0-based 80) is on line 82
    assert fields[0] == "SYN00020"
    fields[counts.columns.get_loc("P05_post") + 1] = ""
    fields[counts.columns.get_loc("P06_post") + 1] = "NA"
    lines[81] = "\t".join(fields)
    counts_path(w).write_text("\n".join(lines) + "\n")


@case(["s_counts.tsv", "thousands separators", "'1,234'", "'IL1B'", "'P01_post'"])
def counts_thousands_separators_tsv(w):
    counts, _ = base_cohort()
    counts = counts.astype(object)
    counts.loc["IL1B", "P01_post"] = "1,234"
    w.write_cohort(counts=counts)


@case(["s_counts.csv", "line 301", "thousands separators"])
def counts_thousands_separators_csv(w):
    counts, _ = base_cohort()
    w.write_cohort()
    path = w.root / "data" / "s_counts.csv"
    write_table(counts, path, sep=",")
    lines = path.read_text().splitlines()
    fields = lines[300].split(",")
    fields[3] = "1,234"  # an unquoted thousands separator: one field too many on line 301
    lines[300] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    w.studies["s"]["counts"] = "data/s_counts.csv"


@case(["s_counts.tsv", "'abc'", "'SYN00100'", "'P07_pre'"])
def counts_non_numeric_cell(w):
    counts, _ = base_cohort()
    counts = counts.astype(object)
    counts.loc["SYN00100", "P07_pre"] = "abc"
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "'P07_pre'", "zero counts for every gene"])
def counts_all_zero_sample(w):
    counts, _ = base_cohort()
    counts["P07_pre"] = 0
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "input: log2_expression", "raw counts", "input: counts"])
def counts_given_as_log2(w):
    w.write_cohort(input="log2_expression")


@case(["s_counts.tsv", "of 53", "gene symbols", "missing:", "IL1A", "IFITM5"])
def counts_few_ctra_genes_symbols(w):
    counts, _ = base_cohort()
    ctra = counts.index[:53]
    counts = counts.rename(index={g: f"X{g}" for g in ctra[:40]})
    w.write_cohort(counts=counts)


@case(["s_counts.tsv", "of 53", "Ensembl gene ids", "missing:", "IL1A"])
def counts_few_ctra_genes_ensembl(w):
    counts, _ = base_cohort()
    ids = [f"ENSG{90000000 + i:011d}" for i in range(len(counts))]
    ctra = pd.read_csv(Path(__file__).parents[2] / "resources/gene_sets/ctra53.tsv", sep="\t")
    for i, ens in enumerate(
        ctra["ensembl_id"].str.split(";").str[0][40:], start=40
    ):  # only 13 of 53 carry their real id
        if isinstance(ens, str) and ens:
            ids[i] = ens
    counts.index = pd.Index(ids, name="gene")
    w.write_cohort(counts=counts)


# ----------------------------------------------------------------------------------------------
# Sample sheet and its agreement with the counts
# ----------------------------------------------------------------------------------------------


@case(["s_samples.tsv", "'P05_post'", "no column in", "s_counts.tsv"])
def sheet_sample_missing_from_counts(w):
    counts, _ = base_cohort()
    w.write_cohort(counts=counts.drop(columns=["P05_post"]))


@case(["s_counts.tsv", "'P05_post'", "not in the sample sheet"])
def counts_sample_missing_from_sheet(w):
    _, sheet = base_cohort()
    w.write_cohort(sheet=sheet[sheet["sample"] != "P05_post"])


def _bom_crlf_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.n_obs == 48 and "P01_pre" in adata.obs_names
    assert set(adata.obs["arm"]) == {"control", "treat"} and set(adata.obs["time"]) == {"pre", "post"}
    assert {float(a) for a in adata.obs["age"]} <= set(range(20, 80))


@case([], ok=True, check=_bom_crlf_ok)
def sheet_bom_and_crlf_works(w):
    """Decision: a BOM/CRLF sheet that is otherwise fine is read normally (see module docstring)."""
    _, sheet = base_cohort()
    w.write_cohort()
    text = sheet.to_csv(sep="\t", index=False, lineterminator="\r\n")
    sheet_path(w).write_bytes(b"\xef\xbb\xbf" + text.encode())


@case([], ok=True, check=_bom_crlf_ok)
def counts_bom_and_crlf_works(w):
    counts, _ = base_cohort()
    w.write_cohort()
    counts_path(w).write_bytes(b"\xef\xbb\xbf" + counts.to_csv(sep="\t", lineterminator="\r\n").encode())


def _stripped_recorded(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.n_obs == 48 and "P03_pre" in adata.obs_names and adata.obs.loc["P03_pre", "time"] == "pre"
    assert set(adata.obs["arm"]) == {"control", "treat"}
    assert adata.uns["whitespace_stripped"]["sample_sheet_cells"] == 3
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "surrounding whitespace stripped from 3 cell(s)" in log and "'P03_pre '" in log


@case([], ok=True, check=_stripped_recorded)
def sheet_trailing_spaces_in_ids(w):
    """Decision (changed by issue 11): surrounding whitespace in sheet cells is stripped and counted, as
    Excel exports often pad cells; only ids that stripping makes identical are an error (next case)."""
    _, sheet = base_cohort()
    sheet.loc[4, "sample"] = "P03_pre "
    sheet.loc[7, "arm"] = " control"
    sheet.loc[9, "time"] = "post\t"
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "'P03_pre' (line 6)", "' P03_pre' (line 7)", "once surrounding whitespace is stripped"])
def sheet_ids_identical_after_stripping(w):
    """Two rows whose sample ids differ only by surrounding whitespace may be different samples: refused."""
    _, sheet = base_cohort()
    sheet.loc[5, "sample"] = " P03_pre"  # P03_post's row
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "'age'", "'age '", "once surrounding whitespace is stripped"])
def sheet_column_names_identical_after_stripping(w):
    _, sheet = base_cohort()
    sheet["age "] = sheet["age"]
    w.write_cohort(sheet=sheet)


def _count_names_stripped(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.n_obs == 48 and adata.uns["whitespace_stripped"]["count_table_names"] == 2


@case([], ok=True, check=_count_names_stripped)
def counts_sample_names_padded(w):
    counts, _ = base_cohort()
    w.write_cohort(counts=counts.rename(columns={"P01_pre": " P01_pre", "P02_post": "P02_post  "}))


@case(["s_samples.tsv", "column 'arm'", "'Treat'", "'treat'", "line"])
def sheet_arm_differs_in_case(w):
    _, sheet = base_cohort()
    sheet.loc[sheet["participant"] == "P20", "arm"] = "Treat"
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "column 'time'", "'week  4'", "'week 4'", "line 5", "case or spacing"])
def sheet_time_differs_in_spacing(w):
    """Spaces inside a value are kept as written: 'week  4' vs 'week 4' is refused, not merged."""
    _, sheet = base_cohort()
    sheet["time"] = sheet["time"].replace({"post": "week 4"})
    sheet.loc[3, "time"] = "week  4"
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "baseline 'baseline'", "column 'time'", "'pre'"])
def config_baseline_not_present(w):
    w.write_cohort(baseline="baseline")


@case(["s_samples.tsv", "control 'placebo'", "column 'arm'", "'control'"])
def config_control_arm_not_present(w):
    w.write_cohort(control="placebo")


@case(["s_samples.tsv", "'P03'", "more than one arm", "period"])
def sheet_participant_in_two_arms(w):
    _, sheet = base_cohort()
    sheet.loc[5, "arm"] = "treat"  # P03_post
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "'psot'", "time_levels", "line 11"])
def sheet_time_typo_with_levels(w):
    _, sheet = base_cohort()
    sheet.loc[9, "time"] = "psot"  # P05_post
    w.write_cohort(sheet=sheet, time_levels=["pre", "post"])


@case(["s_samples.tsv", "covariate 'age'", "3 sample(s)", "drop_incomplete_samples: true"])
def covariate_missing_values(w):
    _, sheet = base_cohort()
    sheet.loc[[2, 11, 30], "age"] = ""
    w.write_cohort(sheet=sheet)


def _dropped_recorded(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert list(adata.uns["dropped_incomplete"]) == ["P02_pre", "P06_post", "P16_pre"]
    assert adata.n_obs == 45
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "P02_pre" in log and "P16_pre" in log


@case([], ok=True, check=_dropped_recorded)
def covariate_missing_values_dropped(w):
    _, sheet = base_cohort()
    sheet.loc[[2, 11, 30], "age"] = ""
    w.write_cohort(sheet=sheet, drop_incomplete_samples=True)


@case(["s_samples.tsv", "covariate 'site'", "same value for every sample"])
def covariate_constant(w):
    _, sheet = base_cohort()
    sheet["site"] = "Berlin"
    w.write_cohort(sheet=sheet, covariates=["age", "sex", "site"])


@case(["config", "`categorical`", "'site'", "not in `covariates`"])
def categorical_not_a_covariate(w):
    w.write_cohort(categorical=["site"])


def _site_code_warned(w, result):
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "covariate 'site' is numeric with only 3 distinct integer values" in log and "`categorical`" in log


@case([], ok=True, check=_site_code_warned)
def covariate_integer_codes_warned(w):
    _, sheet = base_cohort()
    sheet["site"] = [str(1 + i % 3) for i in range(len(sheet))]
    w.write_cohort(sheet=sheet, covariates=["age", "sex", "site"])


def _site_categorical(w, result):
    import anndata as ad

    obs = ad.read_h5ad(w.results / "s" / "validated.h5ad").obs
    assert not pd.api.types.is_numeric_dtype(obs["site"]) and set(obs["site"].astype(str)) == {"1", "2", "3"}
    assert "site" not in (w.results / "s" / "logs" / "validate.log").read_text()


@case([], ok=True, check=_site_categorical)
def covariate_listed_categorical(w):
    _, sheet = base_cohort()
    sheet["site"] = [str(1 + i % 3) for i in range(len(sheet))]
    w.write_cohort(sheet=sheet, covariates=["age", "sex", "site"], categorical=["site"])


@case(["s_samples.tsv", "'treat' (1)", "fewer than 2 participants"])
def arm_with_one_participant(w):
    _, sheet = base_cohort()
    sheet.loc[sheet["participant"] > "P13", "arm"] = "control"
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "lacks column", "'time'"])
def sheet_missing_column(w):
    _, sheet = base_cohort()
    w.write_cohort(sheet=sheet.rename(columns={"time": "visit"}))


@case(["s_samples.tsv", "'P04_pre'", "more than once", "lines 8 and 9"])
def sheet_duplicate_sample_ids(w):
    _, sheet = base_cohort()
    sheet.loc[7, "sample"] = "P04_pre"  # P04_post's row
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "column 'participant'", "empty", "line 12"])
def sheet_empty_participant_cell(w):
    _, sheet = base_cohort()
    sheet.loc[10, "participant"] = ""
    w.write_cohort(sheet=sheet)


@case(["s_samples.tsv", "'arm'", "twice", "columns 3 and 7"])
def sheet_duplicate_column_names(w):
    _, sheet = base_cohort()
    sheet.insert(6, "arm_again", sheet["arm"])
    w.write_cohort()
    text = sheet.to_csv(sep="\t", index=False, lineterminator="\n").replace("arm_again", "arm", 1)
    sheet_path(w).write_text(text)


@case(["s_samples.tsv", "covariate", "'arm'", "arm column"])
def covariate_is_the_arm_column(w):
    w.write_cohort(covariates=["age", "arm"])


@case(["exclude_samples", "'P99_pre'"])
def config_exclude_unknown_sample(w):
    w.write_cohort(exclude_samples=["P99_pre"])


@case(["s_samples.tsv", "'P05_post'", "line 11", "'p05_post' for 'P05_post'"])
def sample_ids_differ_in_case_between_files(w):
    counts, _ = base_cohort()
    w.write_cohort(counts=counts.rename(columns={"P05_post": "p05_post"}))


@case(["s_samples.tsv", "covariate 'age'", "numeric except on line 8", "'unknown'"])
def covariate_numeric_with_text(w):
    _, sheet = base_cohort()
    sheet.loc[6, "age"] = "unknown"
    w.write_cohort(sheet=sheet)


@case(["`columns` maps", "participant", "'sample'"])
def config_two_roles_one_column(w):
    w.write_cohort()
    w.studies["s"]["columns"]["participant"] = "sample"


@case(["s_counts.tsv", "input: log2_expression", "log2(TPM + 1)", "'IL1A'"])
def log2_input_not_on_log_scale(w):
    counts, _ = base_cohort()
    w.write_cohort(counts=(counts / counts.sum() * 1e6).round(3), input="log2_expression")


def _excel_padding_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.n_obs == 48 and list(adata.obs.columns[:3]) == ["participant", "arm", "time"]


@case([], ok=True, check=_excel_padding_ok)
def sheet_excel_padding_works(w):
    """Excel exports pad with empty trailing columns and all-empty rows: ignored, not errors."""
    _, sheet = base_cohort()
    w.write_cohort()
    text = sheet.to_csv(sep="\t", index=False, lineterminator="\n")
    lines = [line + "\t\t" for line in text.splitlines()] + ["\t" * 7] * 3
    sheet_path(w).write_text("\n".join(lines) + "\n")


@case(["3 problems found", "covariate 'age'", "negative", "'P01_pre'", "'EXTRA1'", "not in the sample sheet"])
def every_problem_listed_at_once(w):
    """Sheet, count-table and agreement problems in one run: all are listed, not just the first."""
    counts, sheet = base_cohort()
    sheet.loc[[2], "age"] = ""
    counts.loc["TNF", "P01_pre"] = -1
    counts["EXTRA1"] = 5
    w.write_cohort(counts=counts, sheet=sheet)


# ----------------------------------------------------------------------------------------------
# Trials with `outcomes:`, `dose:` and `mediation:` (issue 13)
# ----------------------------------------------------------------------------------------------


def _trial_sheet() -> pd.DataFrame:
    """The base sheet with an outcome at every draw and a per-participant dose in the treated arm."""
    _, sheet = base_cohort()
    rng = np.random.default_rng(13)
    sheet["wellbeing"] = [f"{v:.2f}" for v in rng.normal(3, 1, len(sheet))]
    acts = {p: str(int(rng.integers(0, 20))) for p in sheet["participant"]}
    sheet["acts"] = [acts[p] if arm == "treat" else "" for p, arm in zip(sheet["participant"], sheet["arm"])]
    return sheet


@case(["s_samples.tsv", "lacks column(s) 'wellbeng' (outcome)", "'actsx' (dose)", "`outcomes`/`dose`"])
def outcome_and_dose_unknown_columns(w):
    w.write_cohort(sheet=_trial_sheet(), outcomes=["wellbeng"], dose="actsx")


@case(["s_samples.tsv", "outcome 'wellbeing' is not numeric", "lines 4 and 9", "'high'"])
def outcome_not_numeric(w):
    sheet = _trial_sheet()
    sheet.loc[[2, 7], "wellbeing"] = "high"
    w.write_cohort(sheet=sheet, outcomes=["wellbeing"])


@case(
    [
        "s_samples.tsv",
        "dose column 'acts' differs between the draws of participant(s) 'P13'",
        "one value per participant",
    ]
)
def dose_not_constant_within_participant(w):
    sheet = _trial_sheet()
    sheet.loc[sheet["sample"] == "P13_post", "acts"] = "99"
    w.write_cohort(sheet=sheet, dose="acts")


@case(["config", "`mediation` is set but `outcomes` is not"])
def mediation_without_outcomes(w):
    w.write_cohort(sheet=_trial_sheet(), mediation={"bootstrap": 500})


def _outcome_gap_noted(w, result):
    log = (w.results / "s" / "logs" / "validate.log").read_text()
    assert "outcome 'wellbeing': missing at 2 of 48 draws (lines 4 and 9)" in log and "46 draws used" in log
    obs = ad.read_h5ad(w.results / "s" / "validated.h5ad").obs
    assert obs["wellbeing"].isna().sum() == 2 and pd.api.types.is_float_dtype(obs["wellbeing"])
    assert obs.loc["P13_pre", "acts"] == obs.loc["P13_post", "acts"] and obs["acts"].isna().sum() == 24


@case([], ok=True, check=_outcome_gap_noted)
def outcome_missing_at_some_draws_works(w):
    sheet = _trial_sheet()
    sheet.loc[[2, 7], "wellbeing"] = ""
    w.write_cohort(sheet=sheet, outcomes=["wellbeing"], dose="acts", mediation={})


# ----------------------------------------------------------------------------------------------
# Cases that need Snakemake (config, CLI targets, whole-workflow checks, file system)
# ----------------------------------------------------------------------------------------------


@case(["s_samples.tsv", "not of full rank", "group[T.treat]", "arm[T.treat]"], runner="snakemake")
def design_not_full_rank(w):
    _, sheet = base_cohort()
    sheet["group"] = sheet["arm"]
    w.write_cohort(sheet=sheet, covariates=["age", "group"])


@case(["'covariate'", "unexpected"], runner="snakemake")
def config_key_misspelled(w):
    w.write_cohort()
    w.studies["s"]["covariate"] = w.studies["s"].pop("covariates")


@case(["'../x'", "study name"], runner="snakemake")
def config_study_name_escapes_results(w):
    study = w.write_cohort()
    w.studies = {"../x": study}


@case(
    [
        "studies -> s -> power -> alpha",
        "studies -> s -> power -> effects -> 0",
        "studies -> s -> power -> targets -> 1",
    ],
    runner="snakemake",
)
def config_power_out_of_range(w):
    """alpha outside (0, 1), a negative planning effect (a magnitude is meant), a power target of 1.2: the schema
    names each key."""
    w.write_cohort(power={"alpha": 1.5, "effects": [-0.2, 0.3], "targets": [0.8, 1.2]})


@case(
    [
        "synthesis cannot run",
        "study 'nosuch' is not defined",
        "study 'one_arm' is not a trial",
        "study 'other' has primary score 'antibody'",
    ],
    runner="snakemake",
)
def synthesis_studies_that_cannot_be_pooled(w):
    """An unknown study, a single-arm one and one with another primary score, named each in one message."""
    w.write_cohort()
    w.write_cohort(name="one_arm", control=None)
    w.write_cohort(name="other", primary={"score": "antibody"})
    w.write_config({"studies": w.studies, "synthesis": {"studies": ["s", "nosuch", "one_arm", "other"]}})


def _no_side_effect(w, result):
    assert not (w.root / "PWNED").exists()


@case(["not valid JSON or YAML"], runner="snakemake", check=_no_side_effect)
def config_python_object_tag(w):
    """A `!!python/object/apply` tag must not run code: snakemake (yte) loads YAML with FullLoader."""
    w.write_cohort()
    w.write_config()
    text = (w.root / "config.yaml").read_text()
    text = text.replace("baseline: pre", f"baseline: !!python/object/apply:os.system ['touch {w.root}/PWNED']")
    (w.root / "config.yaml").write_text(text)


@case(["baseline", "is not of type 'string'"], runner="snakemake")
def config_python_name_tag(w):
    """`!!python/name:` (allowed by FullLoader, a reference, never a call) is refused by the schema."""
    w.write_cohort()
    w.write_config()
    text = (w.root / "config.yaml").read_text().replace("baseline: pre", "baseline: !!python/name:os.system")
    (w.root / "config.yaml").write_text(text)


@case(["unknown study 'nosuch'", "config.yaml", "'s'"], runner="snakemake", targets=("results/nosuch/report.html",))
def unknown_study_on_command_line(w):
    w.write_cohort()


@case(["results", "not a directory"], runner="snakemake")
def output_dir_is_a_file(w):
    """Root ignores permission bits, so 'not writable' is simulated by `results` being a FILE."""
    w.write_cohort()
    w.results.write_text("not a directory\n")


def _chattr_works() -> str | None:
    if shutil.which("chattr") is None:
        return "chattr not available"
    return None


def _chattr_off(w):
    subprocess.run(["chattr", "-i", str(w.results)], check=False, capture_output=True)


@case(["results", "not writable"], runner="snakemake", needs=_chattr_works, cleanup=_chattr_off)
def output_dir_not_writable(w):
    """`chattr +i results/`: even root cannot create files in it."""
    w.write_cohort()
    w.results.mkdir()
    done = subprocess.run(["chattr", "+i", str(w.results)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.strip()}")


def _can_mount() -> str | None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root and mount to create a tiny tmpfs"
    return None


def _umount(w):
    subprocess.run(["umount", str(w.results)], check=False, capture_output=True)


@case(["No space left on device", "validated", "free space"], runner="snakemake", needs=_can_mount, cleanup=_umount)
def disk_full(w):
    """A 64 KiB tmpfs on results/: logs fit, validated.h5ad (~0.5 MB) does not.

    The write error surfaces in ctra/cli.py's generic handler ("internal error ... OSError: [Errno 28]
    ... No space left on device", exit 2, traceback only in the log). It names the file and the
    problem, but is framed as a bug of ours; cli.py should report OSError from writing outputs as
    "cannot write <file>: No space left on device" instead (change requested from its owner).
    """
    w.write_cohort()
    w.results.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(w.results)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted: {done.stderr.strip()}")


# ----------------------------------------------------------------------------------------------
# Association studies (design: association): one draw per participant, predictors
# ----------------------------------------------------------------------------------------------


SLOW = [pytest.mark.slow]  # the default suite runs three association cases (works, VIF, trial key); the rest here


def _association_cohort(w, edit: Callable[[pd.DataFrame], None] | None = None, **study) -> None:
    """The cohort's baseline draws as a one-draw association study of a numeric predictor."""
    counts, sheet = base_cohort()
    sheet = sheet[sheet["time"] == "pre"].drop(columns=["arm", "time"]).reset_index(drop=True)
    rng = np.random.default_rng(13)
    sheet["loneliness"] = np.round(rng.uniform(1, 3, len(sheet)), 2).astype(str)
    sheet["mood"] = rng.choice(["low", "mid", "high"], len(sheet))
    if edit:
        edit(sheet)
    w.write_cohort(counts[sheet["sample"].tolist()], sheet)
    block = w.studies["s"]
    for key in ("baseline", "control"):
        block.pop(key)
    block["columns"] = {"sample": "sample", "participant": "participant"}
    block.update({"design": "association", "predictors": ["loneliness"], **study})


def _association_ok(w, result):
    adata = ad.read_h5ad(w.results / "s" / "validated.h5ad")
    assert adata.n_obs == 24 and adata.obs["loneliness"].dtype == float and "arm" not in adata.obs


@case([], ok=True, check=_association_ok)
def association_study_works(w):
    _association_cohort(w)


@case(["s_samples.tsv", "'lonely' (predictor)"], marks=SLOW)
def association_unknown_predictor(w):
    _association_cohort(w, predictors=["lonely"])


@case(["s_samples.tsv", "predictor 'loneliness' has the same value for every sample"], marks=SLOW)
def association_constant_predictor(w):
    _association_cohort(w, edit=lambda sheet: sheet.__setitem__("loneliness", "2"))


def _collinear(sheet: pd.DataFrame) -> None:
    noise = np.random.default_rng(2).normal(0, 0.01, len(sheet))
    sheet["loneliness"] = (sheet["age"].astype(float) / 20 + noise).round(4).astype(str)


@case(["s_samples.tsv", "predictor column 'loneliness' is collinear with 'age'", "variance inflation factor"])
def association_predictor_collinear_with_covariate(w):
    _association_cohort(w, edit=_collinear)


@case(["s_samples.tsv", "predictor 'mood' is not numeric", "`categorical`"], marks=SLOW)
def association_text_predictor_not_declared(w):
    _association_cohort(w, predictors=["mood"])


@case([], ok=True, marks=SLOW)
def association_categorical_predictor_works(w):
    _association_cohort(w, predictors=["mood"], categorical=["mood"])


@case(["config", "`control` is a key of trials", "design: association"])
def association_with_control(w):
    _association_cohort(w, control="control")


@case(["config", "`baseline` is a key of trials"], marks=SLOW)
def association_with_baseline(w):
    _association_cohort(w, baseline="pre")


@case(["config", "`predictors` is a key of association studies", "design: trial"], marks=SLOW)
def trial_with_predictors(w):
    w.write_cohort()
    w.studies["s"]["predictors"] = ["age"]


@case(["config", "'age' is listed in both `predictors` and `covariates`"], marks=SLOW)
def association_predictor_also_covariate(w):
    _association_cohort(w, predictors=["age"])


@case(["config", "`primary: term: mood` is not one of the `predictors`"], runner="snakemake", marks=SLOW)
def association_primary_term_not_a_predictor(w):
    _association_cohort(w, primary={"term": "mood"})


@case(["s_samples.tsv", "predictor 'loneliness' is missing", "drop_incomplete_samples"], marks=SLOW)
def association_missing_predictor(w):
    _association_cohort(w, edit=lambda sheet: sheet.__setitem__("loneliness", ["", *sheet["loneliness"][1:]]))


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [pytest.param(name, marks=CASES[name].marks) for name in CASES])
def test_bad_input(name, tmp_path):
    spec = CASES[name]
    if spec.needs and (reason := spec.needs()):
        pytest.skip(reason)
    w = Workdir(tmp_path)
    try:
        spec.build(w)
        if spec.runner == "validate":
            result = w.validate_cli()
        else:
            if not (w.root / "config.yaml").exists():
                w.write_config()
            result = w.snakemake(*spec.targets)
        output = result.stdout + result.stderr
        if spec.ok:
            assert result.returncode == 0, output
        else:
            assert result.returncode != 0, output
            if spec.runner == "validate":
                # exit 1 = a user-input problem; exit 2 would be a crash of ours ("internal error")
                assert result.returncode == 1, output
                assert output.count("ctra ERROR") == 1, output
            for expected in spec.expect:
                assert expected in output, f"{expected!r} not in:\n{output}"
            assert TRACEBACK not in output, output
            if not spec.internal_ok:
                assert "internal error" not in output, output
            assert w.outputs() == [], f"stage outputs left after a failure: {w.outputs()}"
        if spec.check:
            spec.check(w, result)
    finally:
        if spec.cleanup:
            spec.cleanup(w)


def test_catalogue_size():
    assert len(CASES) >= 30
