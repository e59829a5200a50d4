"""Reading count tables into one samples x genes array, and the value checks that run over it.

The expected values are written out by hand (or are numpy's own indexing), never computed the way
ctra computes them. Small ``BLOCK_BYTES`` / ``TEXT_BLOCK_BYTES`` / ``SCAN_CELLS`` make a tiny table
span many parser batches and value-check blocks, so the seams between them are exercised.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ctra import io, validate
from ctra.errors import InputError, ProblemList
from ctra.io import CountTable, read_count_table

GENES = [f"G{i:03d}" for i in range(40)]
SAMPLES = ["s1", "s2", "s3"]


def known_values() -> np.ndarray:
    """genes x samples, with values whose text forms vary (see ``cell_text``)."""
    values = np.arange(len(GENES) * len(SAMPLES), dtype=np.float64).reshape(len(GENES), len(SAMPLES)) * 7
    values[3, 1] = 1e6
    values[4, 0] = -2.5
    values[5, 2] = 0.125
    values[6] = [123456789.0, 1e-3, 2.0]
    return values


def cell_text(value: float, row: int, column: int) -> str:
    """Number formats a count table may hold, rotated over the cells."""
    forms = [repr(float(value)), f"{value:.17g}", f"{value:.16e}"]
    if value == int(value):
        forms.append(str(int(value)))
    return forms[(row + column) % len(forms)]


def write_table(
    path: Path,
    cells: list[list[str]],
    header: list[str],
    sep: str = "\t",
    newline: str = "\n",
    trailing_newline: bool = True,
    prefix: bytes = b"",
) -> Path:
    lines = [sep.join(header)] + [sep.join(row) for row in cells]
    text = newline.join(lines) + (newline if trailing_newline else "")
    data = prefix + text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def known_cells(values: np.ndarray) -> list[list[str]]:
    """One list of fields (gene id, then the values as text) per row of ``values``."""
    return [
        [gene, *(cell_text(v, r, c) for c, v in enumerate(row))] for r, (gene, row) in enumerate(zip(GENES, values))
    ]


def count_batches(monkeypatch) -> list[int]:
    """Record the number of rows of every parser batch (one list entry per batch)."""
    sizes: list[int] = []
    batches = io._batches

    def counted(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(io, "_batches", counted)
    return sizes


@pytest.fixture
def small_batches(monkeypatch) -> list[int]:
    """Tiny parser batches (the reader raises them to 4x the header and first row, ~250 bytes):
    the 40-row tables below arrive in several batches. Returns the batch sizes seen."""
    monkeypatch.setattr(io, "BLOCK_BYTES", 100)
    monkeypatch.setattr(io, "TEXT_BLOCK_BYTES", 100)
    return count_batches(monkeypatch)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["t.tsv", "t.tsv.gz", "t.csv", "t.csv.gz"])
@pytest.mark.parametrize("batches", ["one", "many"])
def test_streamed_read_equals_the_written_values(tmp_path, monkeypatch, name, batches):
    if batches == "many":
        monkeypatch.setattr(io, "BLOCK_BYTES", 100)
    sizes = count_batches(monkeypatch)
    values = known_values()
    sep = "," if ".csv" in name else "\t"
    path = write_table(tmp_path / name, known_cells(values), ["gene", *SAMPLES], sep=sep)
    table = read_count_table(path)
    assert list(table.genes) == GENES and table.samples == SAMPLES
    assert table.values.shape == (3, 40) and table.values.dtype == np.float64
    assert table.values.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(table.values, values.T)
    # the frame view matches the frame pandas reads from the same file
    expected = pd.read_csv(path, sep=sep, index_col=0).astype(np.float64)
    pd.testing.assert_frame_equal(table.frame(), expected, check_names=False)
    assert np.shares_memory(table.frame().to_numpy(), table.values)
    assert sum(sizes) == 40 and (len(sizes) > 3 if batches == "many" else len(sizes) == 1)


def test_missing_words_and_infinities(tmp_path, small_batches):
    cells = [[g, "1", "2", "3"] for g in GENES]
    cells[7][1:] = ["", "NA", "NaN"]
    cells[30][1:] = ["nan", "NULL", "inf"]
    cells[31][1:] = ["-inf", "Inf", "1e3"]
    table = read_count_table(write_table(tmp_path / "t.tsv", cells, ["gene", *SAMPLES]))
    np.testing.assert_array_equal(table.values[:, 7], [np.nan] * 3)
    np.testing.assert_array_equal(table.values[:, 30], [np.nan, np.nan, np.inf])
    np.testing.assert_array_equal(table.values[:, 31], [-np.inf, np.inf, 1000.0])
    assert table.values[0, 8] == 1.0


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_line_ends_bom_and_last_line(tmp_path, small_batches, newline, trailing_newline):
    values = known_values()
    path = write_table(
        tmp_path / "t.tsv.gz",
        known_cells(values),
        ["gene", *SAMPLES],
        newline=newline,
        trailing_newline=trailing_newline,
        prefix=b"\xef\xbb\xbf",
    )
    table = read_count_table(path)
    assert list(table.genes) == GENES
    np.testing.assert_array_equal(table.values, values.T)
    assert len(small_batches) > 3


def test_blank_lines_r_style_header_and_htseq_rows(tmp_path, small_batches):
    """Blank lines leave the array with spare columns (it is sized by lines), which are compacted
    away; R's write.table header has no label over the gene column; HTSeq counters are dropped."""
    values = known_values()
    rows = ["\t".join(cells) for cells in known_cells(values)]
    body = "\n".join(
        [
            "\t".join(SAMPLES),
            *rows[:10],
            "",
            "",
            "",
            *rows[10:],
            "__no_feature\t1\t2\t3",
            "__ambiguous\t4\t5\t6",
            "",
            "",
        ]
    )
    path = tmp_path / "t.tsv"
    path.write_text(body + "\n")
    table = read_count_table(path)
    assert list(table.genes) == GENES and table.samples == SAMPLES
    np.testing.assert_array_equal(table.values, values.T)


def test_spaces_around_numbers_take_the_text_path(tmp_path, small_batches):
    values = known_values()
    cells = known_cells(values)
    cells[25][2] = f"  {cells[25][2]} "
    table = read_count_table(write_table(tmp_path / "t.tsv", cells, ["gene", *SAMPLES]))
    np.testing.assert_array_equal(table.values, values.T)


def test_featurecounts_table(tmp_path, small_batches):
    values = known_values()
    bams = ["/data/run1/s1.bam", "/data/run1/s2.bam", "C:\\runs\\s3.bam"]
    header = ["Geneid", "Chr", "Start", "End", "Strand", "Length", *bams]
    cells = [[row[0], "chr1", "100", "200", "+", "101", *row[1:]] for row in known_cells(values)]
    path = tmp_path / "fc.txt"
    write_table(path, cells, header)
    path.write_text('# Program:featureCounts v2.0.1; Command:"featureCounts" "-a" "x.gtf"\n' + path.read_text())
    table = read_count_table(path)
    assert table.samples == SAMPLES and list(table.genes) == GENES
    np.testing.assert_array_equal(table.values, values.T)


def test_h5ad_input_uses_the_counts_layer(tmp_path):
    values = known_values()
    adata = ad.AnnData(X=np.zeros((3, 40)), layers={"counts": values.T.copy()})
    adata.obs_names, adata.var_names = SAMPLES, GENES
    adata.write_h5ad(tmp_path / "t.h5ad")
    table = read_count_table(tmp_path / "t.h5ad")
    assert table.samples == SAMPLES and list(table.genes) == GENES
    np.testing.assert_array_equal(table.values, values.T)


# ----------------------------------------------------------------------------------------------
# Bad cells and rows far from the start: the message names the right line
# ----------------------------------------------------------------------------------------------


def _message(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_count_table(path)
    return "\n".join(caught.value.problems)


def test_bad_cell_in_a_later_batch_names_its_line(tmp_path, small_batches):
    cells = known_cells(known_values())
    cells[33][2] = "abc"  # gene G033 on line 35, sample s2
    cells[36][2] = "n/a"
    message = _message(write_table(tmp_path / "t.tsv.gz", cells, ["gene", *SAMPLES]))
    assert small_batches[0] < 33  # the bad cell is not in the first batch
    assert "column 's2', gene 'G033' on line 35: 'abc' is not a number; 2 such cell(s)" in message
    assert message.count("is not a number") == 1


def test_bad_cell_on_a_repeated_gene_id_names_the_repeat(tmp_path, small_batches):
    """The first bad cell is on the 2nd row with id G005 (line 32), not on the 1st (line 7)."""
    cells = known_cells(known_values())
    cells[30][0] = "G005"
    cells[30][3] = "1,234"
    message = _message(write_table(tmp_path / "t.tsv", cells, ["gene", *SAMPLES]))
    assert "column 's3', gene 'G005' on line 32: '1,234' is not a number (thousands separators" in message


def test_true_false_column(tmp_path, small_batches):
    cells = [[g, "1", "true" if i % 2 else "FALSE", "3"] for i, g in enumerate(GENES)]
    message = _message(write_table(tmp_path / "t.tsv", cells, ["gene", *SAMPLES]))
    assert "column 's2' holds true/false values, not counts" in message


def test_ragged_row_in_a_later_batch_names_its_line(tmp_path, small_batches):
    cells = known_cells(known_values())
    cells[37] = cells[37][:-1]
    message = _message(write_table(tmp_path / "t.tsv.gz", cells, ["gene", *SAMPLES]))
    assert "line 39 (gene 'G037') has 3 fields but the header implies 4" in message


def test_empty_gene_id_in_a_later_batch(tmp_path, small_batches):
    cells = known_cells(known_values())
    cells[29][0] = " "
    assert "1 row(s) have an empty gene id (line 31)" in _message(
        write_table(tmp_path / "t.tsv", cells, ["gene", *SAMPLES])
    )


# ----------------------------------------------------------------------------------------------
# In-place reshaping of the one array
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_keep_genes_in_place_equals_numpy_indexing(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(7, 50))
    keep = rng.random(50) < 0.6
    expected = values[:, keep].copy()
    table = CountTable(
        genes=np.array([f"g{i}" for i in range(50)], dtype=object), samples=list("abcdefg"), values=values
    )
    table.keep_genes(keep)
    np.testing.assert_array_equal(table.values, expected)
    assert list(table.genes) == [f"g{i}" for i in np.flatnonzero(keep)]
    assert np.shares_memory(table.values, values) and table.values.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("seed", range(5))
def test_take_samples_in_place_equals_numpy_indexing(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(12, 9))
    order = [int(i) for i in rng.permutation(12)[: int(rng.integers(1, 13))]]
    expected = values[order].copy()
    table = CountTable(
        genes=np.array(list("abcdefghi"), dtype=object), samples=[f"s{i}" for i in range(12)], values=values
    )
    table.take_samples(order)
    np.testing.assert_array_equal(table.values, expected)
    assert table.samples == [f"s{i}" for i in order]
    assert np.shares_memory(table.values, values) and table.values.flags["C_CONTIGUOUS"]


def test_merge_sums_only_the_rows_of_one_gene():
    gene_table = pd.DataFrame(
        {
            "gene": ["CXCL8", "TNF"],
            "group": ["inflammatory", "inflammatory"],
            "direction": [1, 1],
            "symbol": ["", ""],
            "ensembl_id": ["", ""],
            "entrez_id": ["", ""],
            "aliases": ["IL8", ""],
        }
    )
    values = np.array(
        [[1.0, 2.0, 3.0, 4.0, 5.0], [10.0, 20.0, 30.0, 40.0, 50.0]]
    )  # 2 samples x genes IL8, A, TNF, CXCL8, B
    table = CountTable(
        genes=np.array(["IL8", "A", "TNF", "CXCL8", "B"], dtype=object), samples=["x", "y"], values=values
    )
    table, var = validate.merge_gene_rows(table, gene_table, "counts", Path("t.tsv"))
    assert list(table.genes) == ["CXCL8", "A", "TNF", "B"]
    np.testing.assert_array_equal(table.values, [[5.0, 2.0, 3.0, 5.0], [50.0, 20.0, 30.0, 50.0]])
    assert list(var["input_ids"]) == ["IL8;CXCL8", "A", "TNF", "B"]
    assert list(var["group"]) == ["inflammatory", "", "inflammatory", ""]


# ----------------------------------------------------------------------------------------------
# Value checks in blocks of samples
# ----------------------------------------------------------------------------------------------


def _checked(
    values: np.ndarray, mode: str = "counts", rows: list[int] | None = None, non_integer: str = "error"
) -> str:
    table = CountTable(
        genes=np.array([f"g{i}" for i in range(values.shape[1])], dtype=object),
        samples=[f"s{i}" for i in range(values.shape[0])],
        values=values,
    )
    problems = ProblemList()
    validate._check_values(
        table,
        np.arange(values.shape[0]) if rows is None else np.array(rows),
        mode,
        Path("t.h5ad"),
        problems,
        non_integer,
    )
    return "\n".join(problems.problems)


@pytest.fixture
def small_scan_blocks(monkeypatch):
    monkeypatch.setattr(validate, "SCAN_CELLS", 20)  # 2 samples of 10 genes per block


def test_first_negative_is_the_earliest_gene_across_blocks(small_scan_blocks):
    values = np.ones((9, 10))
    values[1, 7] = -4  # first block, later gene
    values[6, 2] = -3  # later block, earlier gene: first in file order
    values[8, 2] = -1
    message = _checked(values)
    assert "3 negative count(s), first at gene 'g2', sample 's6' (-3)" in message


def test_non_finite_in_a_later_block_is_counted_and_stops_the_other_checks(small_scan_blocks):
    values = np.ones((9, 10))
    values[0, 0] = -1
    values[5, 4] = np.nan
    values[8, 1] = np.inf
    message = _checked(values)
    assert "2 missing or non-finite value(s)" in message and "first at gene 'g1', sample 's8'" in message
    assert "negative" not in message


def test_fractional_zero_library_and_excluded_samples(small_scan_blocks):
    values = np.ones((9, 10))
    values[3] = 0  # zero library
    values[4, 5] = 2.5
    values[7, 0] = -1  # not checked: only rows 0..6 are
    message = _checked(values, rows=[0, 1, 2, 3, 4, 5, 6])
    assert "1 non-integer value(s), first at gene 'g5', sample 's4' (2.5)" in message
    assert "sample(s) 's3' have zero counts" in message
    assert "negative" not in message


def test_tpm_like_values_are_named(small_scan_blocks):
    values = np.full((5, 10), 1e5)
    values[:, 0] = 1e5 + 0.5
    values[:, 1] = 1e5 - 0.5
    assert "look like TPM" in _checked(values)
    assert "look like TPM" in _checked(values.copy(), non_integer="round")  # never rounded
    values[:, 2] = 1.002e5  # sums 1.0002e6: still within 1 %
    assert "look like TPM" in _checked(values.copy(), non_integer="round")


def test_estimated_counts_rounded_in_place_across_blocks(small_scan_blocks):
    """Half to even as R's round(); only the checked samples; sums 1e6 in some samples only: not TPM."""
    values = np.full((9, 10), 3.0)
    values[0, :] = 1e5
    values[1, 2] = 2.5
    values[6, 4] = 0.4999
    values[6, 5] = 7.5
    values[8, 1] = 1.25  # not checked
    table = CountTable(
        genes=np.array([f"g{i}" for i in range(10)], dtype=object), samples=[f"s{i}" for i in range(9)], values=values
    )
    problems = ProblemList()
    record = validate._check_values(table, np.array([0, 1, 3, 6]), "counts", Path("t.tsv"), problems, "round")
    assert problems.problems == []
    assert (
        record["cells"] == 3 and record["samples"] == 2 and "'g2'" in record["first"] and "2.5 -> 2" in record["first"]
    )
    expected = np.full((9, 10), 3.0)
    expected[0, :] = 1e5
    expected[1, 2], expected[6, 4], expected[6, 5], expected[8, 1] = 2, 0, 8, 1.25
    np.testing.assert_array_equal(table.values, expected)


def test_rounding_to_an_empty_library_is_named(small_scan_blocks):
    values = np.full((4, 10), 3.0)
    values[2] = 0.3
    assert "'s2' have zero counts for every gene once rounded" in _checked(values, non_integer="round")


def test_log2_checks(small_scan_blocks):
    integers = np.full((5, 10), 3.0)
    integers[4, 9] = 500
    assert "integers up to 500" in _checked(integers, mode="log2_expression")
    big = np.full((5, 10), 3.5)
    big[3, 6] = 60.5
    big[4, 2] = 41.5
    message = _checked(big, mode="log2_expression")
    assert "values reach 60.5 (first above 40 at gene 'g2', sample 's4')" in message


# ----------------------------------------------------------------------------------------------
# The whole validate step on the in-place array
# ----------------------------------------------------------------------------------------------


def test_validated_matrix_follows_the_sheet_and_sums_alias_rows(tmp_path, monkeypatch, small_scan_blocks):
    """Sample columns in another order than the sheet, one excluded and one dropped sample, and an
    alias row (IL8) before its gene's row (CXCL8): X must equal the table picked out by name."""
    from bad_inputs.cohort import CTRA53, MARKERS, base_cohort, study_block, validate_settings

    from ctra.genesets import load_gene_set

    monkeypatch.setattr(io, "BLOCK_BYTES", 1 << 12)
    counts, sheet = base_cohort()
    il8 = counts.loc[["CXCL8"]].rename(index={"CXCL8": "IL8"}) + 3
    counts = pd.concat([counts.iloc[:2], il8, counts.iloc[2:]])
    assert list(counts.index).index("CXCL8") > 2
    counts = counts[list(np.random.default_rng(3).permutation(counts.columns))]
    sheet.loc[sheet["sample"] == "P05_post", "age"] = ""
    counts.to_csv(tmp_path / "counts.tsv.gz", sep="\t")
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    settings = validate_settings(
        study_block(
            str(tmp_path / "counts.tsv.gz"),
            str(tmp_path / "samples.tsv"),
            exclude_samples=["P03_pre"],
            drop_incomplete_samples=True,
        )
    )
    gene_set, markers = load_gene_set(CTRA53), load_gene_set(MARKERS, allowed_groups=("marker",))

    adata = validate.validate_study("s", settings, gene_set, markers)

    samples = [s for s in sheet["sample"] if s not in ("P03_pre", "P05_post")]
    genes = [("CXCL8" if g == "IL8" else g) for g in counts.index if g != "CXCL8"]
    expected = counts.drop(index="IL8").astype(np.float64)
    expected.loc["CXCL8"] += counts.loc["IL8"]
    assert list(adata.obs_names) == samples and list(adata.var_names) == genes
    assert adata.X.dtype == np.float64 and adata.X.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(adata.X, expected.loc[genes, samples].to_numpy().T)
    assert adata.var.loc["CXCL8", "input_ids"] == "IL8;CXCL8"
    again = validate.validate_study("s", settings, gene_set, markers)
    np.testing.assert_array_equal(again.X, adata.X)


# ----------------------------------------------------------------------------------------------
# Annotation columns (nf-core/rnaseq salmon and RSEM tables, featureCounts --extraAttributes)
# ----------------------------------------------------------------------------------------------


def test_salmon_table_gene_name_is_annotation_and_a_second_id(tmp_path, small_batches):
    values = known_values()
    cells = [[f"ENSG{i:011d}.3", f"SYM{i}", *row[1:]] for i, row in enumerate(known_cells(values))]
    path = write_table(tmp_path / "salmon.merged.gene_counts.tsv", cells, ["gene_id", "gene_name", *SAMPLES])
    table = read_count_table(path)
    assert table.samples == SAMPLES and table.annotation == ["gene_name"]
    assert table.alt_kind == "symbol" and table.alt_column == "gene_name"
    assert list(table.alt_ids) == [f"SYM{i}" for i in range(40)] and table.genes[0] == "ENSG00000000000.3"
    np.testing.assert_array_equal(table.values, values.T)
    table.keep_genes(np.arange(40) % 2 == 0)
    assert list(table.alt_ids) == [f"SYM{i}" for i in range(0, 40, 2)]


def test_rsem_and_unnamed_text_annotation_columns(tmp_path, small_batches):
    """transcript_id(s) by name; a leading column of text under any name ('chr_band') by its values."""
    values = known_values()
    cells = [
        [f"ENSG{i:011d}", f"ENST{i:011d},ENST{i + 1:011d}", f"1p{i}", *row[1:]]
        for i, row in enumerate(known_cells(values))
    ]
    table = read_count_table(
        write_table(tmp_path / "rsem.tsv", cells, ["gene_id", "transcript_id(s)", "chr_band", *SAMPLES])
    )
    assert table.samples == SAMPLES and table.annotation == ["transcript_id(s)", "chr_band"]
    assert table.alt_ids is None
    np.testing.assert_array_equal(table.values, values.T)


def test_featurecounts_extra_attributes(tmp_path, small_batches):
    values = known_values()
    header = ["Geneid", "Chr", "Start", "End", "Strand", "Length", "gene_name", "s1.bam", "s2.bam", "s3.bam"]
    cells = [
        [f"ENSG{i:011d}", "chr1", "100", "200", "+", "101", f"SYM{i}", *row[1:]]
        for i, row in enumerate(known_cells(values))
    ]
    path = write_table(tmp_path / "fc.txt", cells, header)
    path.write_text("# Program:featureCounts v2.0.1\n" + path.read_text())
    table = read_count_table(path)
    assert table.samples == SAMPLES and table.alt_column == "gene_name" and table.alt_ids[5] == "SYM5"
    np.testing.assert_array_equal(table.values, values.T)


def test_a_sample_column_with_a_bad_cell_is_still_a_sample(tmp_path, small_batches):
    cells = known_cells(known_values())
    cells[3][1] = "abc"
    message = _message(write_table(tmp_path / "t.tsv", cells, ["gene", *SAMPLES]))
    assert "column 's1', gene 'G003' on line 5: 'abc' is not a number" in message


def test_excel_cells_as_the_text_excel_shows():
    import datetime as dt

    text = io._excel_text
    assert text("001", "General") == "001" and text(1, "000") == "001" and text(7.0, "00000") == "00007"
    assert text(12.0, "General") == "12" and text(0.1 + 0.2, "General") == "0.3" and text(-3, "000") == "-3"
    assert text(None, None) == "" and text(True, None) == "TRUE"
    assert text(dt.datetime(2024, 3, 5), "yyyy-mm-dd") == "2024-03-05"


# ----------------------------------------------------------------------------------------------
# Wide tables (one row per sample)
# ----------------------------------------------------------------------------------------------


def _wide_rows(values: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """40 samples (rows) x 3 genes, with a text covariate and a numeric one between id and genes."""
    header = ["sample", "sex", "age", "GA", "GB", "GC"]
    cells = [
        [f"S{r:02d}", "F" if r % 2 else "M", str(20 + r), *(cell_text(v, r, c) for c, v in enumerate(row))]
        for r, row in enumerate(values)
    ]
    return header, cells


@pytest.mark.parametrize("name", ["w.tsv", "w.csv.gz"])
def test_wide_table_streamed_in_many_batches(tmp_path, small_batches, name):
    values = known_values()  # 40 x 3, read here as 40 samples x 3 genes
    header, cells = _wide_rows(values)
    path = write_table(tmp_path / name, cells, header, sep="," if ".csv" in name else "\t")
    table = io.read_wide_table(path, not_genes={"age"})
    assert table.samples == [f"S{r:02d}" for r in range(40)] and list(table.genes) == ["GA", "GB", "GC"]
    assert table.annotation == ["sex", "age"] and table.layout == "samples_by_genes"
    assert table.values.flags["C_CONTIGUOUS"] and table.values.flags["WRITEABLE"]
    np.testing.assert_array_equal(table.values, values)
    # without the sheet's column names, the numeric 'age' column is a gene
    assert list(io.read_wide_table(path).genes) == ["age", "GA", "GB", "GC"]


def test_wide_table_bad_cell_in_a_later_batch_names_sample_and_line(tmp_path, small_batches):
    header, cells = _wide_rows(known_values())
    cells[33][3] = "abc"  # field 3 is GA
    with pytest.raises(InputError) as caught:
        io.read_wide_table(write_table(tmp_path / "w.tsv", cells, header), not_genes={"age"})
    assert "column 'GA', sample 'S33' on line 35: 'abc' is not a number" in str(caught.value)


def test_layout_detected_from_the_first_column(tmp_path):
    header, cells = _wide_rows(known_values())
    wide = write_table(tmp_path / "w.tsv", cells, header)
    long = write_table(tmp_path / "l.tsv", known_cells(known_values()), ["gene", *SAMPLES])
    ids = {f"S{r:02d}" for r in range(40)}
    assert io.detect_layout(wide, None, ids)[0] == "samples_by_genes"
    assert io.detect_layout(long, None, set(SAMPLES))[0] == "genes_by_samples"
    assert io.detect_layout(long, None, {"other"}) == ("genes_by_samples", "the default")
