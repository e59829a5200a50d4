"""Reading count tables and sample sheets, with messages that point at the bad cell.

Count tables arrive as TSV/CSV (optionally gzipped, gene column header possibly empty as R's
``write.table`` writes it), featureCounts output, or AnnData ``.h5ad``. Everything is returned as a
:class:`CountTable`: the gene ids as written, the sample names, and one samples x genes float64
array that text tables are parsed straight into, batch by batch (a table of 10,000 samples is
~1.6 GB as floats, so no second copy of it is ever made); id mapping happens in
:mod:`ctra.genesets`, value checks in :mod:`ctra.validate`.

Every problem becomes an :class:`~ctra.errors.InputError` naming the file and the line, column or
cell: a parser's own exception never reaches the user. A UTF-8 byte-order mark and CRLF line ends
are accepted silently (invisible artefacts of Excel and Windows editors); surrounding whitespace in
sample-sheet cells and sample names is stripped (and counted), spaces inside values are kept as
written so that validation can point at them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .errors import InputError

FEATURECOUNTS_ANNOTATION = ["Chr", "Start", "End", "Strand", "Length"]
# Annotation columns a count table may carry between the id column and the samples (nf-core/rnaseq's
# salmon/RSEM tables: gene_name, transcript_id(s); featureCounts: Chr..Length; Ensembl/GENCODE
# exports: gene_type, description...). Matched case-insensitively; a leading column whose values are
# mostly text (not numbers) is an annotation column too, whatever its name.
SYMBOL_COLUMNS = {
    "gene_name",
    "gene_symbol",
    "symbol",
    "hgnc_symbol",
    "external_gene_name",
    "gene name",
    "genesymbol",
    "gene.name",
    "gene_names",
}
ENSEMBL_COLUMNS = {
    "gene_id",
    "ensembl_gene_id",
    "ensembl_id",
    "ensembl",
    "gene_ids",
    "gene.id",
    "gene stable id",
    "geneid",
}
ANNOTATION_COLUMNS = {
    *SYMBOL_COLUMNS,
    *ENSEMBL_COLUMNS,
    *(c.casefold() for c in FEATURECOUNTS_ANNOTATION),
    "transcript_id(s)",
    "transcript_ids",
    "transcript_id",
    "gene_type",
    "gene_biotype",
    "biotype",
    "description",
    "gene_description",
    "chromosome",
    "chrom",
    "strand",
    "length",
    "effective_length",
    "entrez_id",
    "entrezid",
    "entrez",
}
ANNOTATION_SCAN_ROWS = 50  # data rows looked at to tell a text (annotation) column from a sample column
WIDE_SCAN_ROWS = 20  # rows of a wide table looked at to tell covariate (text) columns from genes
HTSEQ_SPECIAL_PREFIX = "__"
NULL_VALUES = ["", "NA", "NaN", "nan", "NULL"]
BOOLEAN_WORDS = {"true", "false", "True", "False", "TRUE", "FALSE"}
BLOCK_BYTES = 1 << 24  # text per parsed batch: few batches, each small next to the whole matrix
TEXT_BLOCK_BYTES = 1 << 22  # smaller when values are converted as text (a Python string per cell)
# magic bytes of files people hand over instead of a text table
MAGIC = {
    b"PK\x03\x04": "an Excel workbook or another zip archive; give workbooks the .xlsx extension (or export "
    "the sheet as TSV or CSV)",
    b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls), which ctra does not read; save it as .xlsx in Excel (or "
    "export the sheet as TSV or CSV)",
    b"\x89HDF": "an HDF5 file; give AnnData files the .h5ad extension",
    b"%PDF": "a PDF document, not a table",
    b"BZh": "a bzip2-compressed file; decompress it or recompress it with gzip (.gz)",
    b"\xfd7zXZ": "an xz-compressed file; decompress it or recompress it with gzip (.gz)",
}
THOUSANDS = re.compile(r"-?\d{1,3}([,.' ]\d{3})+([.,]\d+)?")
DELIMITER_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}


def sha256sum(path: str | Path) -> str:
    """Hex SHA-256 of a file, recorded in the report so a reviewer can tie results to inputs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_gz(path: Path) -> bool:
    return path.suffix == ".gz"


def _open_text(path: Path) -> io.TextIOBase:
    if _is_gz(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _check_file(path: Path) -> None:
    """Exists, is a file, is not empty, is not a known binary format, and .gz means gzip."""
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a table file.")
    with open(path, "rb") as handle:
        start = handle.read(8)
    if not start:
        raise InputError(f"{path}: file is empty (0 bytes).")
    is_gzip = start[:2] == b"\x1f\x8b"
    if _is_gz(path) and not is_gzip:
        raise InputError(
            f"{path}: is named .gz but is not gzip-compressed; rename it without .gz (or compress it with gzip)."
        )
    if not _is_gz(path) and is_gzip:
        raise InputError(f"{path}: is gzip-compressed but not named .gz; add the .gz extension.")
    if is_excel(path) and start.startswith(b"PK\x03\x04"):
        return  # a workbook, read with openpyxl
    for magic, what in MAGIC.items():
        if start.startswith(magic):
            raise InputError(f"{path}: looks like {what}.")


def _decode_problem(path: Path, err: Exception, line: int | None) -> InputError:
    where = f" on line {line}" if line else ""
    if isinstance(err, UnicodeDecodeError):
        return InputError(
            f"{path}: is not UTF-8 text{where} (byte 0x{err.object[err.start]:02x}); it looks like "
            "a binary file, or text saved in another encoding: save it as UTF-8 TSV/CSV."
        )
    if isinstance(err, (EOFError, zlib.error, gzip.BadGzipFile)):
        return InputError(
            f"{path}: the gzip stream is truncated or corrupt{where} ({err}); copy or download the file again."
        )
    return InputError(f"{path}: cannot be read{where}: {err}.")


def _head_lines(path: Path, n: int) -> list[str]:
    """First n lines (without line ends); a clear error for missing, binary or empty files."""
    _check_file(path)
    lines: list[str] = []
    try:
        with _open_text(path) as handle:
            for _ in range(n):
                line = handle.readline()
                if not line:
                    break
                lines.append(line.rstrip("\r\n"))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise _decode_problem(path, err, len(lines) + 1) from None
    if any("\x00" in line for line in lines):
        raise InputError(f"{path}: contains NUL bytes; it looks like a binary file, not a TSV/CSV table.")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{path}: file is empty (no text lines).")
    return lines


def _delimiter(path: Path, header: str, what: str) -> str:
    """Tab, or comma for .csv files / headers with commas and no tabs; anything else is refused."""
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if "\t" in header:
        return "\t"
    if stem.endswith(".csv") or "," in header:
        return ","
    for candidate in (";", "|", " "):
        if candidate in header.strip():
            count = header.strip().count(candidate)
            raise InputError(
                f"{path}: the header line has no tab or comma but {count} "
                f"{DELIMITER_NAMES[candidate]}(s): the {what} seems to be "
                f"{DELIMITER_NAMES[candidate]}-separated; ctra reads tab-separated (TSV) or "
                "comma-separated (CSV) files: export it again as TSV."
            )
    return "\t"


def _field_count(line: str, delimiter: str) -> int:
    return len(next(csv.reader([line], delimiter=delimiter)))


def _iter_lines(path: Path):
    """(line number, text without line end) over the whole file; decoding errors name the line."""
    number = 0
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise _decode_problem(path, err, number + 1) from None


def _first_bad_line(path: Path, delimiter: str, expected: int, skip: int) -> tuple[int, int, str] | None:
    """(line number, fields, text) of the first non-empty line after ``skip`` lines whose field
    count differs from ``expected``; None if every line agrees."""
    for number, line in _iter_lines(path):
        if number <= skip or not line.strip():
            continue
        fields = _field_count(line, delimiter)
        if fields != expected:
            return number, fields, line
    return None


def locate_rows(path: str | Path, ids: list[str], limit: int = 5) -> dict[str, list[int]]:
    """File line numbers on which each of ``ids`` is the first field (gene id), up to ``limit`` each.

    Used only to word error messages, so it rereads the file rather than tracking lines while parsing.
    """
    path = Path(path)
    wanted = set(ids)
    found: dict[str, list[int]] = {i: [] for i in ids}
    if str(path) in _SHEET_ROW_LINES:  # a workbook's table: its rows were noted when it was read
        lines = _SHEET_ROW_LINES[str(path)]
        return {i: lines.get(i, [])[:limit] for i in ids}
    if path.suffix == ".h5ad" or is_excel(path) or not wanted:
        return found
    try:
        header = _head_lines(path, 1)[0]
        delimiter = "\t" if "\t" in header else ","
        for number, line in _iter_lines(path):
            first = line.split(delimiter, 1)[0].strip('"')
            if first in wanted and len(found[first]) < limit:
                found[first].append(number)
    except InputError:
        pass
    return found


def row_lines(path: str | Path, genes: np.ndarray, row: int) -> list[int]:
    """The file line of data row ``row`` (0-based, as counted in ``genes``), as a list of 0 or 1.

    Found by its gene id: the k-th line starting with that id when ``row`` is the k-th row that
    carries it, so the line is right even when an id repeats. Used only to word messages.
    """
    gene = str(genes[row])
    occurrence = int(np.count_nonzero(genes[:row] == gene))
    lines = locate_rows(path, [gene], limit=occurrence + 1)[gene]
    return lines[occurrence : occurrence + 1]


def line_hint(lines: list[int]) -> str:
    if not lines:
        return ""
    return f"line {lines[0]}" if len(lines) == 1 else "lines " + ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"


# ----------------------------------------------------------------------------------------------
# Count tables
# ----------------------------------------------------------------------------------------------


@dataclass
class CountTable:
    """A count table as read: gene ids in file order, sample names, and the values.

    ``values`` is one C-ordered float64 array of samples x genes (``values[i, j]`` is sample
    ``samples[i]``, gene ``genes[j]``), the orientation of the validated AnnData's X: validation
    checks, merges and reorders it in place and hands it on, so the process never holds a second
    copy of the matrix.
    """

    genes: np.ndarray  # object array of str
    samples: list[str]
    values: np.ndarray
    # a second id column of the other kind (a symbol column beside Ensembl ids, e.g. nf-core/rnaseq's
    # gene_name, or Ensembl ids beside symbols), aligned with ``genes``; matching tries Ensembl first
    alt_ids: np.ndarray | None = None
    alt_kind: str = ""  # "symbol" or "ensembl"
    alt_column: str = ""
    annotation: list[str] | None = None  # annotation column names, which are not samples
    stripped_names: int = 0  # sample names that had surrounding whitespace (stripped)
    layout: str = "genes_by_samples"  # or "samples_by_genes": one row per sample (then annotation = set aside)

    def frame(self) -> pd.DataFrame:
        """Genes x samples frame indexed by gene id; a view of ``values``, not a copy."""
        return pd.DataFrame(
            self.values.T, index=pd.Index(self.genes, dtype=object, name="gene_id"), columns=self.samples, copy=False
        )

    def keep_genes(self, keep: np.ndarray) -> None:
        """Drop the genes where the boolean mask ``keep`` is False (in place)."""
        self.values = _compact_columns(self.values, keep)
        self.genes = self.genes[keep]
        if self.alt_ids is not None:
            self.alt_ids = self.alt_ids[keep]

    def take_samples(self, order: list[int]) -> None:
        """Keep the samples at positions ``order`` (distinct), in that order, in place."""
        self.values = _take_rows_in_place(self.values, order)
        self.samples = [self.samples[i] for i in order]


def _compact_columns(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``values[:, keep]`` of a C-ordered 2-D array, built inside the array's own buffer.

    Row i of the result goes to offset ``i * kept``, never past the start of input row i + 1, so
    every input row is still intact when it is read: no second matrix-sized buffer is needed.
    """
    n_rows, n_columns = values.shape
    kept = int(np.count_nonzero(keep))
    if kept == n_columns:
        return values
    flat = values.reshape(-1)  # a view: values is C-contiguous
    for i in range(n_rows):
        flat[i * kept : (i + 1) * kept] = values[i, keep]  # boolean indexing copies the row first
    return flat[: n_rows * kept].reshape(n_rows, kept)


def _take_rows_in_place(values: np.ndarray, order: list[int]) -> np.ndarray:
    """``values[order]`` (distinct row indices) built inside the array's own buffer.

    The rows not in ``order`` are appended to make a permutation, which is applied one cycle at
    a time with a single saved row; the first ``len(order)`` rows are then the result.
    """
    n_rows = values.shape[0]
    if list(order) == list(range(n_rows)):
        return values
    taken = set(order)
    source = [*order, *(i for i in range(n_rows) if i not in taken)]  # row k <- row source[k]
    done = np.zeros(n_rows, dtype=bool)
    for start in range(n_rows):
        if done[start] or source[start] == start:
            continue
        saved = values[start].copy()
        k = start
        while source[k] != start:
            values[k] = values[source[k]]
            done[k] = True
            k = source[k]
        values[k] = saved
        done[k] = True
    return values[: len(order)]


def read_count_table(path: str | Path, sheet: str | int | None = None) -> CountTable:
    """Read a gene x sample table (TSV/CSV[.gz], featureCounts, .xlsx or .h5ad) into a :class:`CountTable`.

    ``sheet`` chooses the worksheet of an Excel workbook (a name, or a position counted from 1).

    Values are not checked here beyond being numeric or empty (NaN), so that validation can list
    every problem at once. HTSeq's ``__`` counter rows of text tables are dropped.
    """
    path = Path(path)
    if path.suffix == ".h5ad":
        return _read_h5ad_counts(path)
    if is_excel(path):
        return _read_excel_counts(path, sheet)
    lines = _head_lines(path, 5)
    comment_lines = len(lines) - len([line for line in lines if not line.startswith("#")])
    if comment_lines < len(lines) and lines[comment_lines].startswith("Geneid\tChr\tStart\tEnd\tStrand\tLength"):
        return _read_featurecounts(path, skip=comment_lines)
    return _read_delimited_matrix(path, lines)


def read_counts(path: str | Path) -> pd.DataFrame:
    """:func:`read_count_table` as a genes x samples float64 frame indexed by gene id (a view)."""
    return read_count_table(path).frame()


def _read_h5ad_counts(path: Path) -> CountTable:
    import anndata

    if not path.exists():
        raise InputError(f"{path}: file not found.")
    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # anndata raises many types for corrupt files
        raise InputError(
            f"{path}: cannot be read as AnnData .h5ad ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})."
        ) from None
    matrix = adata.layers["counts"] if "counts" in adata.layers else adata.X
    if matrix is None:
        raise InputError(f"{path}: the AnnData file has no X matrix and no 'counts' layer.")
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    samples = [str(s) for s in adata.obs_names]
    _check_unique_columns(path, samples, first_position=1)
    return CountTable(
        genes=np.asarray(adata.var_names.astype(str), dtype=object),
        samples=samples,
        values=np.ascontiguousarray(matrix, dtype=np.float64),
    )


def _read_featurecounts(path: Path, skip: int) -> CountTable:
    header = _head_lines(path, skip + 1)[skip]
    names = header.split("\t")
    # fields after Length that hold text are annotation too (featureCounts --extraAttributes gene_name)
    first = _first_sample_field(path, "\t", names, skip, len(FEATURECOUNTS_ANNOTATION) + 1)
    if len(names) <= first:
        raise InputError(
            f"{path}: featureCounts table without sample columns (the header has only {', '.join(names)})."
        )
    _check_unique_columns(path, names[first:], first_position=first + 1)
    alt = _alt_id_field(names, first)
    genes, extras, values, bad = _stream_values(
        path, "\t", skip + 1, len(names), first, extra=[alt] if alt is not None else []
    )
    _check_gene_column(path, genes, None, first_line=skip + 2)
    samples = [_featurecounts_sample_name(c.strip()) for c in names[first:]]
    _check_unique_columns(path, samples, first_position=first + 1, note=" (after reducing BAM paths to file names)")
    return _count_table(path, genes, samples, values, bad, annotation=names[1:first], alt=(alt, names, extras))


def _featurecounts_sample_name(column: str) -> str:
    """featureCounts names samples by BAM path: keep the file name without .bam."""
    name = column.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".bam") else name


def _read_delimited_matrix(path: Path, lines: list[str]) -> CountTable:
    """Plain gene x sample table; the gene column's header may be missing (R style) or empty.

    Annotation columns right after the id column (see ``ANNOTATION_COLUMNS``) are not samples.
    """
    delimiter = _delimiter(path, lines[0], "count table")
    name = DELIMITER_NAMES[delimiter]
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    if len(lines) < 2:
        raise InputError(f"{path}: has a header but no gene rows.")
    n_fields = _field_count(lines[1], delimiter)
    if n_fields == len(header) + 1:
        names = ["", *header]  # R write.table: no label over the row names
    elif n_fields == len(header):
        names = header
    else:
        raise InputError(
            f"{path}: line 2 has {n_fields} {name}-separated fields but the header (line 1) has "
            f"{len(header)}; is the delimiter right, or do numbers use thousands separators?"
        )
    first = _first_sample_field(path, delimiter, names, 0, 1)
    written = names[first:]
    samples = [name.strip() for name in written]
    if not samples:
        what = (
            f"only an id column and annotation column(s) {', '.join(repr(n) for n in names[1:])}"
            if first > 1
            else "one column only"
        )
        raise InputError(
            f"{path}: has no sample columns ({name}-separated, {what}); is it the right file and delimiter?"
        )
    stripped = sum(a != b for a, b in zip(written, samples))
    _check_unique_columns(
        path, samples, first_position=first + 1, note=" (after stripping surrounding whitespace)" if stripped else ""
    )
    alt = _alt_id_field(names, first)
    genes, extras, values, bad = _stream_values(
        path, delimiter, 1, n_fields, first, extra=[alt] if alt is not None else []
    )
    _check_gene_column(path, genes, header[0] if n_fields == len(header) else None, first_line=2)
    table = _count_table(path, genes, samples, values, bad, annotation=names[1:first], alt=(alt, names, extras))
    table.stripped_names = stripped
    return table


def _looks_like_text(values: list[str]) -> bool:
    """Most non-empty cells are neither numbers nor true/false: an annotation column, not a sample."""
    cells = [v.strip() for v in values if v.strip() and v.strip() not in NULL_VALUES]
    if not cells or all(c in BOOLEAN_WORDS for c in cells):
        return False
    text = 0
    for cell in cells:
        try:
            float(cell)
        except ValueError:  # '1,234' is a badly written number, reported as such, not text
            text += not THOUSANDS.fullmatch(cell)
    return text > len(cells) / 2


def _first_sample_field(path: Path, delimiter: str, names: list[str], skip: int, start: int) -> int:
    """Field index of the first sample: fields from ``start`` on that are annotation columns (a known
    annotation name, or mostly text in the first ``ANNOTATION_SCAN_ROWS`` data rows) are skipped."""
    rows = [
        next(csv.reader([line], delimiter=delimiter))
        for line in _head_lines(path, skip + 1 + ANNOTATION_SCAN_ROWS)[skip + 1 :]
        if line.strip()
    ]
    return _first_sample_index(names, rows, start)


def _first_sample_index(names: list[str], rows: list[list[str]], start: int) -> int:
    """See :func:`_first_sample_field`; ``rows`` are the first data rows as lists of cells."""
    field_index = start
    while field_index < len(names):
        known = names[field_index].strip().casefold() in ANNOTATION_COLUMNS
        if not known and not _looks_like_text([r[field_index] for r in rows if len(r) > field_index]):
            break
        field_index += 1
    return field_index


def _alt_id_field(names: list[str], first_sample: int) -> int | None:
    """The annotation field holding a second kind of gene id (symbols, or Ensembl ids), if any."""
    for wanted in (SYMBOL_COLUMNS, ENSEMBL_COLUMNS):
        for index in range(1, first_sample):
            if names[index].strip().casefold() in wanted:
                return index
    return None


def _check_gene_column(path: Path, genes: np.ndarray, label: str | None, first_line: int) -> None:
    """Gene ids must not be empty, and a first column holding only numbers is not gene ids.

    ``first_line`` is the file line of the first data row (blank lines would shift the numbers).
    """
    ids = pd.Series(genes, dtype=object)
    empty = (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)
        raise InputError(
            f"{path}: {len(rows)} row(s) have an empty gene id ({_lines_text(rows + first_line)}); "
            "every row needs a gene id."
        )
    if len(ids) and pd.to_numeric(ids, errors="coerce").notna().all():
        shown = f" ('{label}')" if label else ""
        raise InputError(
            f"{path}: column 1{shown} holds only numbers, not gene ids: the gene id column seems "
            "to be missing (write the table with its row names), or the ids are Entrez numbers, "
            "which ctra does not map: use HGNC symbols or Ensembl gene ids."
        )


def _lines_text(lines, limit: int = 5) -> str:
    lines = [int(x) for x in lines]
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return ("line " if len(lines) == 1 else "lines ") + ", ".join(map(str, lines[:limit])) + more


def _check_unique_columns(path: Path, samples: list[str], first_position: int = 2, note: str = "") -> None:
    seen: dict[str, int] = {}
    duplicated = []
    for position, name in enumerate(samples, start=first_position):
        if name in seen:
            duplicated.append(f"'{name}' (columns {seen[name]} and {position})")
        seen.setdefault(name, position)
    problems = []
    if duplicated:
        problems.append(
            f"{path}: duplicate sample column name(s){note}: {', '.join(duplicated[:10])}"
            f"{' ...' if len(duplicated) > 10 else ''}; each sample must have one column."
        )
    empty = [str(i) for i, name in enumerate(samples, start=first_position) if not name.strip()]
    if empty:
        problems.append(f"{path}: sample column(s) {', '.join(empty[:10])} have an empty header.")
    if problems:
        raise InputError(problems)


# --- streaming the values into one array -------------------------------------------------------


@dataclass
class _BadColumn:
    """Cells of one sample column that are not numbers: the first (data row, text) and how many."""

    row: int
    value: str
    count: int = 0
    only_booleans: bool = True


class _NotNumeric(Exception):
    """A sample cell failed the fast float64 conversion: reread the values as text."""


def _stream_values(
    path: Path, delimiter: str, skip_rows: int, n_fields: int, first_sample: int, extra: list[int] | tuple = ()
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, dict[int, _BadColumn]]:
    """Parse the table straight into one samples x genes float64 array.

    Fields ``first_sample`` .. ``n_fields - 1`` are samples, field 0 the gene id, anything between
    is skipped except the ``extra`` fields, returned as text. Returns gene ids, the extra fields, the
    array (with as many columns as there are data rows) and the non-numeric cells by sample. The array is sized from the number of lines, an upper bound on the
    rows, because batches are written into it as they are parsed; a first pass parses
    numbers natively, and only if a cell is not a number is the table parsed again as text, to
    accept what the slower converter accepts (e.g. spaces around a number) and name every bad cell.
    """
    capacity = max(_count_lines(path) - skip_rows, 0)
    values = np.empty((n_fields - first_sample, capacity), dtype=np.float64)
    bad: dict[int, _BadColumn] = {}
    extra = list(extra)
    try:
        genes, extras, n_rows = _fill(
            values, _batches(path, delimiter, skip_rows, n_fields, first_sample, False, extra), bad, len(extra)
        )
    except _NotNumeric:
        genes, extras, n_rows = _fill(
            values, _batches(path, delimiter, skip_rows, n_fields, first_sample, True, extra), bad, len(extra)
        )
    return genes, extras, _compact_columns(values, np.arange(capacity) < n_rows), bad


def _count_lines(path: Path) -> int:
    """Lines of the decompressed file as Arrow's CSV parser splits them (LF, CRLF or a lone CR end
    a line; a last line without an end counts too); an upper bound on the table's rows."""
    ends = 0
    last = b""
    try:
        with pa.input_stream(str(path), compression="gzip" if _is_gz(path) else None) as stream:
            while chunk := stream.read(1 << 22):
                split_crlf = last == b"\r" and chunk.startswith(b"\n")
                ends += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n") - split_crlf
                last = chunk[-1:]
    except (OSError, pa.ArrowException) as err:
        raise _read_problem(path, err) from None
    return ends + (last not in (b"", b"\n", b"\r"))


def _batches(
    path: Path,
    delimiter: str,
    skip_rows: int,
    n_fields: int,
    first_sample: int,
    as_text: bool,
    extra: list[int] | tuple = (),
) -> Iterator[pa.RecordBatch]:
    """Record batches of the gene column (text), the ``extra`` fields (text) and the sample columns
    (float64, or text).

    Fields are named by position, so odd or repeated header names cannot clash. A parser's error
    becomes an :class:`InputError` naming the line; a cell that is not a number raises
    :class:`_NotNumeric` in the float64 pass.
    """
    names = [str(i) for i in range(n_fields)]
    samples = names[first_sample:]
    sample_type = pa.string() if as_text else pa.float64()
    # the skipped lines and whole rows must fit in a block: make it 4x the head and first row
    head = sum(len(line.encode()) + 2 for line in _head_lines(path, skip_rows + 1))
    read_options = pacsv.ReadOptions(
        skip_rows=skip_rows, column_names=names, block_size=max(TEXT_BLOCK_BYTES if as_text else BLOCK_BYTES, 4 * head)
    )
    texts = ["0", *(names[i] for i in extra)]
    convert_options = pacsv.ConvertOptions(
        column_types={**{t: pa.string() for t in texts}, **{s: sample_type for s in samples}},
        include_columns=[*texts, *samples],
        strings_can_be_null=False,
        null_values=NULL_VALUES,
    )
    yield from _arrow_batches(path, read_options, convert_options, delimiter, n_fields, skip_rows, as_text)


def _fill(
    values: np.ndarray, batches: Iterator[pa.RecordBatch], bad: dict[int, _BadColumn], n_extra: int = 0
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Write each batch's sample columns into ``values[:, rows]``; returns gene ids, the ``n_extra``
    text columns after the gene column, and the row count.

    Text batches (sample columns of type string) are converted here, their bad cells noted in ``bad``.
    """
    genes: list[np.ndarray] = []
    extras: list[list[np.ndarray]] = [[] for _ in range(n_extra)]
    start = 0
    for batch in batches:
        stop = start + batch.num_rows
        if stop > values.shape[1]:
            raise RuntimeError(f"more rows than lines ({stop} > {values.shape[1]})")
        genes.append(batch.column(0).to_numpy(zero_copy_only=False))
        for k in range(n_extra):
            extras[k].append(batch.column(1 + k).to_numpy(zero_copy_only=False))
        columns = batch.columns[1 + n_extra :]
        if columns and pa.types.is_string(columns[0].type):
            values[:, start:stop] = _text_to_float(columns, start, bad)
        else:
            for i, column in enumerate(columns):
                values[i, start:stop] = column.to_numpy(zero_copy_only=False)  # nulls become NaN
        start = stop
    join = lambda parts: np.concatenate(parts) if parts else np.array([], dtype=object)  # noqa: E731
    return join(genes), [join(parts) for parts in extras], start


def _text_to_float(columns: list[pa.Array], first_row: int, bad: dict[int, _BadColumn]) -> np.ndarray:
    """Sample columns read as text -> samples x rows floats, read as pandas reads numbers (spaces
    around a number allowed, the ``NULL_VALUES`` words missing); cells that are not numbers are
    noted in ``bad`` by column, with data rows counted from ``first_row``."""
    shape = (len(columns), len(columns[0]))
    text = pc.utf8_trim_whitespace(pa.concat_arrays(columns))
    missing = pc.is_in(text, value_set=pa.array(NULL_VALUES))
    try:  # the usual batch: every cell a number (or missing) once trimmed; Arrow converts it fast
        numbers = pc.cast(pc.if_else(missing, pa.scalar(None, pa.string()), text), pa.float64())
        return numbers.to_numpy(zero_copy_only=False).reshape(shape)
    except pa.ArrowInvalid:
        return _text_cells_to_float(text, missing, shape, first_row, bad)


def _text_cells_to_float(
    text: pa.Array, missing: pa.Array, shape: tuple[int, int], first_row: int, bad: dict[int, _BadColumn]
) -> np.ndarray:
    """The slow path of :func:`_text_to_float` for a batch with cells that are not numbers."""
    boolean = pc.is_in(text, value_set=pa.array(sorted(BOOLEAN_WORDS))).to_numpy(zero_copy_only=False)
    text = text.to_numpy(zero_copy_only=False).reshape(shape)
    numbers = pd.to_numeric(text.reshape(-1), errors="coerce").astype(np.float64, copy=False).reshape(shape)
    not_number = np.isnan(numbers) & ~missing.to_numpy(zero_copy_only=False).reshape(shape)
    other_text = (not_number & ~boolean.reshape(shape)).any(axis=1)
    for column in np.flatnonzero(not_number.any(axis=1)):
        row = int(not_number[column].argmax())
        found = bad.setdefault(int(column), _BadColumn(row=first_row + row, value=str(text[column, row])))
        found.count += int(np.count_nonzero(not_number[column]))
        found.only_booleans &= not other_text[column]
    return numbers


def _count_table(
    path: Path,
    genes: np.ndarray,
    samples: list[str],
    values: np.ndarray,
    bad: dict[int, _BadColumn],
    annotation: list[str] | None = None,
    alt: tuple[int | None, list[str], list[np.ndarray]] | None = None,
) -> CountTable:
    """The table without HTSeq counter rows; first raises the non-numeric cells found, if any."""
    if bad:
        raise InputError(_not_number_problems(path, genes, samples, bad))
    table = CountTable(genes=genes, samples=samples, values=values, annotation=list(annotation or []))
    if alt is not None and alt[0] is not None:
        field_index, names, extras = alt
        table.alt_ids = np.asarray(extras[0], dtype=object)
        table.alt_column = names[field_index]
        table.alt_kind = "symbol" if names[field_index].strip().casefold() in SYMBOL_COLUMNS else "ensembl"
    table.keep_genes(~pd.Series(genes, dtype=object).str.startswith(HTSEQ_SPECIAL_PREFIX).to_numpy(dtype=bool))
    return table


def _not_number_problems(path: Path, genes: np.ndarray, samples: list[str], bad: dict[int, _BadColumn]) -> list[str]:
    """One message per column with cells that are not numbers (the first 10 columns), each naming
    the first such cell by gene, line and value."""
    problems = [
        f"{path}: column '{samples[i]}' holds true/false values, not counts."
        for i, column in sorted(bad.items())
        if column.only_booleans
    ]
    cells = [(samples[i], column) for i, column in sorted(bad.items()) if not column.only_booleans]
    for sample, column in cells[:10]:
        value = column.value
        hint = (
            " (thousands separators are not allowed: write plain numbers)" if THOUSANDS.fullmatch(value.strip()) else ""
        )
        lines = row_lines(path, genes, column.row)
        where = f" on {line_hint(lines)}" if lines else ""
        problems.append(
            f"{path}: column '{sample}', gene '{genes[column.row]}'{where}: '{value}' is not a "
            f"number{hint}; {column.count} such cell(s) in this column."
        )
    if len(cells) > 10:
        problems.append(f"{path}: ... and {len(cells) - 10} more columns with cells that are not numbers.")
    return problems


def _parse_problem(path: Path, err: Exception, delimiter: str, n_fields: int, skip_rows: int) -> InputError:
    """A parser error as a message: ragged rows name the line (found by rereading the file)."""
    message = str(err)
    if "Expected" in message and "columns" in message:
        found = _first_bad_line(path, delimiter, n_fields, skip_rows)
        if found is not None:
            number, fields, text = found
            gene = text.split(delimiter, 1)[0]
            hint = (
                " A number seems to use thousands separators (e.g. '1,234'): write plain numbers."
                if delimiter == "," and fields > n_fields and re.search(r"\d,\d{3}\b", text)
                else " Is a value missing, or is there an extra delimiter?"
            )
            return InputError(
                f"{path}: line {number} (gene '{gene}') has {fields} fields but the header implies {n_fields}.{hint}"
            )
    return InputError(
        f"{path}: cannot be parsed as a {DELIMITER_NAMES.get(delimiter, delimiter)}-separated "
        f"table: {_short_arrow_message(err)}"
    )


def _read_problem(path: Path, err: Exception) -> InputError:
    if _is_gz(path):
        return InputError(
            f"{path}: the gzip stream is truncated or corrupt ({_short_arrow_message(err)}); "
            "copy or download the file again."
        )
    return InputError(f"{path}: cannot be read: {_short_arrow_message(err)}.")


def _short_arrow_message(err: Exception) -> str:
    return str(err).split("\n")[0][:300]


# ----------------------------------------------------------------------------------------------
# Sample sheets
# ----------------------------------------------------------------------------------------------


def read_sample_sheet(
    path: str | Path, sheet: str | int | None = None, columns: set[str] | None = None
) -> pd.DataFrame:
    """Read a sample sheet as text (every cell a str, empty cells '').

    TSV/CSV, or an Excel workbook (``.xlsx``: its first worksheet, or ``sheet``, a name or a
    position counted from 1), whose cells are turned into the text Excel shows (see :func:`_excel_text`).
    With ``columns``, only the columns of those names are kept (a wide count table that is its own
    sample sheet: its thousands of gene columns are not sheet columns).

    The frame's index is the file line number of each row (header = line 1), so that messages can
    name lines even after rows are dropped. Surrounding whitespace is stripped from every cell and
    column name; ``attrs["stripped"]`` maps (line, column) to the original of each changed cell,
    ``attrs["stripped_headers"]`` counts changed names. A BOM and CRLF line ends are accepted; rows that are
    entirely empty (Excel's trailing ``\\t\\t\\t`` rows) and trailing columns without a header or a
    value are skipped; ragged rows, duplicate or missing column names are errors.
    """
    path = Path(path)
    if is_excel(path):
        rows = list(_excel_rows(path, sheet))
        if not rows:
            raise InputError(f"{path}: {_sheet_label(path, sheet)} is empty.")
        width = max(len(r) for _, r in rows)
        rows = [(n, r + [""] * (width - len(r))) for n, r in rows]  # Excel rows have no delimiters to count
        return _sheet_frame(path, rows, "Excel", columns)
    lines = _head_lines(path, 2)
    delimiter = _delimiter(path, lines[0], "sample sheet")
    name = DELIMITER_NAMES[delimiter]
    rows: list[tuple[int, list[str]]] = []
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            start = 1
            for record in reader:
                rows.append((start, record))
                start = reader.line_num + 1
    except csv.Error as err:
        raise InputError(
            f"{path}: cannot be parsed as a {name}-separated sample sheet near line {start}: {err}."
        ) from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise _decode_problem(path, err, None) from None
    return _sheet_frame(path, rows, name, columns)


def _sheet_frame(
    path: Path, rows: list[tuple[int, list[str]]], name: str, columns: set[str] | None = None
) -> pd.DataFrame:
    """The sample sheet frame from (line, cells) rows, the first being the header; see read_sample_sheet."""
    (_, header), body = rows[0], [(n, r) for n, r in rows[1:] if any(cell.strip() for cell in r)]
    # Excel pads exported sheets with empty trailing columns: drop those that are empty everywhere
    while (
        header
        and not header[-1].strip()
        and all(len(r) < len(header) or not r[len(header) - 1].strip() for _, r in body)
    ):
        header = header[:-1]
        body = [(n, r[: len(header)] if len(r) > len(header) else r) for n, r in body]
    problems = []
    seen: dict[str, int] = {}
    written = header
    header = [column.strip() for column in header]
    wanted = [j for j, column in enumerate(header) if columns is None or column in columns]
    for position, column in enumerate(header, start=1):
        if columns is not None and column not in columns:
            continue
        if not column:
            problems.append(f"{path}: column {position} has an empty header; name it or delete the column.")
        elif column in seen:
            first = seen[column]
            if written[first - 1] != written[position - 1]:
                problems.append(
                    f"{path}: column names '{written[first - 1]}' (column {first}) and "
                    f"'{written[position - 1]}' (column {position}) are the same once surrounding "
                    "whitespace is stripped; rename one of them."
                )
            else:
                problems.append(
                    f"{path}: column name '{column}' appears twice (columns {first} and "
                    f"{position}); column names must be unique."
                )
        seen.setdefault(column, position)
    ragged = [(n, len(r)) for n, r in body if len(r) != len(header)]
    if ragged:
        shown = "; ".join(f"line {n} has {k}" for n, k in ragged[:5])
        more = f" (and {len(ragged) - 5} more lines)" if len(ragged) > 5 else ""
        problems.append(
            f"{path}: the header has {len(header)} {name}-separated fields but {shown}{more}; "
            "every row needs one value per column (leave a cell empty, but keep its delimiter)."
        )
    if not body and not problems:
        problems.append(f"{path}: sample sheet has a header but no rows.")
    if problems:
        raise InputError(problems)
    # surrounding whitespace is stripped from every cell (Excel exports often pad them); the original
    # spellings of changed cells are kept, so that ids made identical by stripping can be named
    originals: dict[tuple[int, str], str] = {}
    cells = []
    for number, record in body:
        record = [record[j] for j in wanted]
        row = [cell.strip() for cell in record]
        for column, cell, stripped in zip([header[j] for j in wanted], record, row):
            if cell != stripped:
                originals[(number, column)] = cell
        cells.append(row)
    sheet = pd.DataFrame(cells, columns=[header[j] for j in wanted], index=[n for n, _ in body], dtype=str)
    sheet.attrs["stripped"] = originals
    sheet.attrs["stripped_headers"] = sum(written[j] != header[j] for j in wanted)
    return sheet


# ----------------------------------------------------------------------------------------------
# Excel workbooks
# ----------------------------------------------------------------------------------------------

EXCEL_SUFFIXES = (".xlsx", ".xlsm")
ZERO_PADDED = re.compile(r"^0+$")


def is_excel(path: str | Path) -> bool:
    return Path(path).suffix.lower() in EXCEL_SUFFIXES


def _sheet_label(path: Path, sheet: str | int | None) -> str:
    if sheet is None:
        return "the first worksheet"
    return f"worksheet {sheet!r}" if isinstance(sheet, str) else f"worksheet {sheet} (counted from 1)"


def _excel_text(value: object, number_format: str | None) -> str:
    """A cell as the text Excel shows for the usual cases, so that ids stay as written.

    Text cells are kept as they are ('001' stays '001'); whole numbers lose Excel's float form (12.0
    -> '12') and, with a zero-padded number format such as '000' (how Excel shows 001 when the cell
    holds the number 1), are padded to it; other numbers get Excel's 15 significant digits; dates
    are ISO dates; true/false are TRUE/FALSE; an empty cell is ''.
    """
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not np.isfinite(value):
            return str(value)
        if float(value) == int(value) and abs(value) < 1e15:
            text = str(int(value))
            if number_format and ZERO_PADDED.match(number_format) and value >= 0:
                text = text.zfill(len(number_format))
            return text
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _excel_rows(path: Path, sheet: str | int | None) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells as text) of one worksheet, with openpyxl (read-only, cached formula values)."""
    import zipfile

    import openpyxl

    _check_file(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as err:
        raise InputError(
            f"{path}: cannot be read as an Excel workbook (.xlsx): {type(err).__name__}: "
            f"{str(err)[:200]}; open it in Excel and save it again as .xlsx, or export the sheet "
            "as TSV."
        ) from None
    try:
        names = workbook.sheetnames
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif isinstance(sheet, int) and not isinstance(sheet, bool):
            if not 1 <= sheet <= len(names):
                raise InputError(
                    f"{path}: has {len(names)} worksheet(s) ({', '.join(repr(n) for n in names)}); "
                    f"`sheet: {sheet}` (counted from 1) is not one of them."
                )
            worksheet = workbook.worksheets[sheet - 1]
        elif sheet in names:
            worksheet = workbook[sheet]
        else:
            near = [n for n in names if n.strip().casefold() == str(sheet).strip().casefold()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise InputError(
                f"{path}: has no worksheet {sheet!r}{hint}; its worksheets are {', '.join(repr(n) for n in names)}."
            )
        for number, row in enumerate(worksheet.iter_rows(), start=1):
            cells = [_excel_text(cell.value, getattr(cell, "number_format", None)) for cell in row]
            while cells and cells[-1] == "":
                cells.pop()
            yield number, cells
    finally:
        workbook.close()


# file lines (worksheet rows) of each gene id of the workbook tables read, for messages (locate_rows)
_SHEET_ROW_LINES: dict[str, dict[str, list[int]]] = {}


def _read_excel_counts(path: Path, sheet: str | int | None) -> CountTable:
    """A gene x sample table on a worksheet. Held as text once (a workbook is at most Excel-sized;
    biobank-scale tables belong in TSV), then converted as the TSV reader's text path does."""
    rows = [(n, r) for n, r in _excel_rows(path, sheet) if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"{path}: {_sheet_label(path, sheet)} is empty.")
    (_, header), body = rows[0], rows[1:]
    if not body:
        raise InputError(f"{path}: has a header but no gene rows.")
    width = max(len(header), *(len(r) for _, r in body))
    names = header + [""] * (width - len(header))
    cells = [r + [""] * (width - len(r)) for _, r in body]
    first = _first_sample_index(names, [r for r in cells[:ANNOTATION_SCAN_ROWS]], 1)
    samples = [name.strip() for name in names[first:]]
    if not samples:
        raise InputError(f"{path}: has no sample columns (an id column and annotation column(s) only).")
    _check_unique_columns(path, samples, first_position=first + 1)
    genes = np.array([r[0].strip() for r in cells], dtype=object)
    lines: dict[str, list[int]] = {}
    for (number, _), gene in zip(body, genes):
        lines.setdefault(gene, []).append(number)
    _SHEET_ROW_LINES[str(path)] = lines
    _check_gene_column(path, genes, names[0] or None, first_line=2)
    bad: dict[int, _BadColumn] = {}
    columns = [pa.array([r[j] for r in cells], type=pa.string()) for j in range(first, width)]
    values = np.require(_text_to_float(columns, 0, bad), np.float64, ["C_CONTIGUOUS", "WRITEABLE"])
    alt = _alt_id_field(names, first)
    extras = [np.array([r[alt] for r in cells], dtype=object)] if alt is not None else []
    table = _count_table(path, genes, samples, values, bad, annotation=names[1:first], alt=(alt, names, extras))
    table.stripped_names = sum(a != b for a, b in zip(names[first:], samples))
    return table


# ----------------------------------------------------------------------------------------------
# Wide tables: one row per sample, genes as columns
# ----------------------------------------------------------------------------------------------

LAYOUTS = ("genes_by_samples", "samples_by_genes")
LAYOUT_SCAN_ROWS = 1000


def _table_head(path: Path, sheet: str | int | None, n_rows: int) -> tuple[str | None, list[str], list[list[str]]]:
    """(delimiter or None for a workbook, header cells, up to ``n_rows`` data rows as cells)."""
    if is_excel(path):
        rows = []
        for _, cells in _excel_rows(path, sheet):
            if any(c.strip() for c in cells):
                rows.append(cells)
            if len(rows) > n_rows:
                break
        if not rows:
            raise InputError(f"{path}: {_sheet_label(path, sheet)} is empty.")
        return None, rows[0], rows[1:]
    lines = _head_lines(path, 1 + n_rows)
    delimiter = _delimiter(path, lines[0], "count table")
    cells = [next(csv.reader([line], delimiter=delimiter)) for line in lines if line.strip()]
    return delimiter, cells[0], cells[1:]


def _first_fields(path: Path, sheet: str | int | None, n_rows: int) -> tuple[list[str], list[str]]:
    """The header's cells and the first cell of up to ``n_rows`` data rows; a text table's rows are
    not split beyond their first field (a wide table's rows hold tens of thousands)."""
    if is_excel(path):
        _, header, rows = _table_head(path, sheet, n_rows)
        return header, [row[0] if row else "" for row in rows]
    first_line = _head_lines(path, 1)[0]
    delimiter = _delimiter(path, first_line, "count table")
    header = next(csv.reader([first_line], delimiter=delimiter))
    firsts: list[str] = []
    for number, line in _iter_lines(path):  # one line at a time: only its first field is kept
        if number > 1 and line.strip():
            firsts.append(line.split(delimiter, 1)[0].strip('"'))
            if len(firsts) >= n_rows:
                break
    return header, firsts


def detect_layout(path: str | Path, sheet: str | int | None, sample_ids: set[str]) -> tuple[str, str]:
    """(layout, why): ``samples_by_genes`` when the sheet's sample ids label the table's rows (its first
    column) rather than its columns, else ``genes_by_samples`` (the usual count table)."""
    path = Path(path)
    if path.suffix == ".h5ad" or not sample_ids:
        return "genes_by_samples", "the default"
    header, rows = _first_fields(path, sheet, LAYOUT_SCAN_ROWS)
    in_header = sum(name.strip() in sample_ids for name in header)
    in_rows = sum(first.strip() in sample_ids for first in rows)
    if in_rows > in_header:
        return "samples_by_genes", (
            f"detected: {in_rows} of its first {len(rows)} rows start with a sample id of "
            f"the sheet, {in_header} of its column names are one"
        )
    return "genes_by_samples", (
        f"detected: {in_header} of its column names are sample ids of the sheet" if in_header else "the default"
    )


def read_wide_table(
    path: str | Path,
    sheet: str | int | None = None,
    id_column: str | None = None,
    not_genes: set[str] | frozenset = frozenset(),
) -> CountTable:
    """A samples x genes table (one row per sample): the sample id in ``id_column`` (default the first
    column), genes in every other column except those named in ``not_genes`` (the sample sheet's
    columns when the sheet is this same file) and columns of text (covariates such as sex or arm);
    the columns set aside are listed in ``annotation``. Text tables are streamed into the array row
    block by row block (the orientation of the result), workbooks read as text first.
    """
    path = Path(path)
    if path.suffix == ".h5ad":
        raise InputError(
            f"{path}: an AnnData file has its own orientation (obs = samples); `layout: "
            "samples_by_genes` applies to text and Excel tables: remove it."
        )
    delimiter, header, head = _table_head(path, sheet, WIDE_SCAN_ROWS)
    names = [name.strip() for name in header]
    if id_column is not None and id_column in names:
        id_field = names.index(id_column)
    else:
        id_field = 0
    genes, aside = [], []
    for j, name in enumerate(names):
        if j == id_field:
            continue
        values = [row[j] for row in head if len(row) > j]
        (aside if name in not_genes or _looks_like_text(values) else genes).append(j)
    if not genes:
        raise InputError(
            f"{path}: read with one row per sample (`layout: samples_by_genes`), but no column holds "
            f"numbers (columns: {', '.join(repr(n) for n in names[:12])}); is the layout right?"
        )
    empty = [str(j + 1) for j in genes if not names[j]]
    if empty:
        raise InputError(f"{path}: gene column(s) {', '.join(empty[:10])} have an empty header.")
    if delimiter is None:
        ids, workbook_lines, values, bad = _wide_from_workbook(path, sheet, id_field, genes)
        lines = lambda: workbook_lines  # noqa: E731
    else:
        ids, values, bad = _stream_wide(path, delimiter, len(header), id_field, genes)
        lines = lambda: _data_lines(path, len(ids))  # noqa: E731  (reread only to word a message)
    gene_names = [names[j] for j in genes]
    if bad:
        raise InputError(_wide_not_number_problems(path, ids, lines(), gene_names, bad))
    samples = [str(i).strip() for i in ids]
    if any(not sample for sample in samples) or len(set(samples)) < len(samples):
        _wide_id_problems(path, samples, lines())
    table = CountTable(
        genes=np.array(gene_names, dtype=object),
        samples=samples,
        values=values,
        annotation=[names[j] for j in aside],
        layout="samples_by_genes",
    )
    table.stripped_names = sum(str(a) != b for a, b in zip(ids, samples))
    table.keep_genes(~pd.Series(gene_names, dtype=object).str.startswith(HTSEQ_SPECIAL_PREFIX).to_numpy(dtype=bool))
    return table


def _wide_id_problems(path: Path, samples: list[str], lines: list[int]) -> None:
    blank = [str(line) for line, sample in zip(lines, samples) if not sample]
    if blank:
        raise InputError(
            f"{path}: {len(blank)} row(s) have an empty sample id (line(s) {', '.join(blank[:5])}); "
            "every row needs the sample id in its first column."
        )
    seen: dict[str, int] = {}
    repeated = []
    for line, sample in zip(lines, samples):
        if sample in seen:
            repeated.append(f"'{sample}' (lines {seen[sample]} and {line})")
        seen.setdefault(sample, line)
    if repeated:
        raise InputError(
            f"{path}: sample id(s) {', '.join(repeated[:10])} appear on more than one row; each sample "
            "(blood draw) needs one row."
        )


def _stream_wide(
    path: Path, delimiter: str, n_fields: int, id_field: int, genes: list[int]
) -> tuple[np.ndarray, np.ndarray, dict[int, _BadColumn]]:
    """Rows of a wide text table straight into a samples x genes array (rows as they come)."""
    capacity = max(_count_lines(path) - 1, 0)
    values = np.empty((capacity, len(genes)), dtype=np.float64)
    bad: dict[int, _BadColumn] = {}

    def fill(as_text: bool) -> tuple[np.ndarray, int]:
        ids, start = [], 0
        for batch in _wide_batches(path, delimiter, n_fields, id_field, genes, as_text):
            stop = start + batch.num_rows
            ids.append(batch.column(0).to_numpy(zero_copy_only=False))
            columns = batch.columns[1:]
            if as_text:
                values[start:stop] = _text_to_float(columns, start, bad).T
            else:
                for j, column in enumerate(columns):
                    values[start:stop, j] = column.to_numpy(zero_copy_only=False)
            start = stop
        return (np.concatenate(ids) if ids else np.array([], dtype=object)), start

    try:
        ids, n_rows = fill(False)
    except _NotNumeric:
        ids, n_rows = fill(True)
    return ids, values[:n_rows], bad


def _data_lines(path: Path, n_rows: int) -> list[int]:
    """File line of each non-blank data row (for messages about rows of a wide table)."""
    lines = [number for number, line in _iter_lines(path) if number > 1 and line.strip()]
    return lines[:n_rows] if len(lines) >= n_rows else list(range(2, n_rows + 2))


def _wide_batches(
    path: Path, delimiter: str, n_fields: int, id_field: int, genes: list[int], as_text: bool
) -> Iterator[pa.RecordBatch]:
    names = [str(i) for i in range(n_fields)]
    kept = [names[j] for j in genes]
    head = sum(len(line.encode()) + 2 for line in _head_lines(path, 2))
    read_options = pacsv.ReadOptions(
        skip_rows=1, column_names=names, block_size=max(TEXT_BLOCK_BYTES if as_text else BLOCK_BYTES, 4 * head)
    )
    convert_options = pacsv.ConvertOptions(
        column_types={names[id_field]: pa.string(), **{k: pa.string() if as_text else pa.float64() for k in kept}},
        include_columns=[names[id_field], *kept],
        strings_can_be_null=False,
        null_values=NULL_VALUES,
    )
    yield from _arrow_batches(path, read_options, convert_options, delimiter, n_fields, 1, as_text)


def _wide_from_workbook(
    path: Path, sheet: str | int | None, id_field: int, genes: list[int]
) -> tuple[np.ndarray, list[int], np.ndarray, dict[int, _BadColumn]]:
    rows = [(n, r) for n, r in _excel_rows(path, sheet) if any(c.strip() for c in r)][1:]
    width = max([id_field + 1, *(j + 1 for j in genes)])
    cells = [r + [""] * (width - len(r)) for _, r in rows]
    ids = np.array([r[id_field] for r in cells], dtype=object)
    bad: dict[int, _BadColumn] = {}
    columns = [pa.array([r[j] for r in cells], type=pa.string()) for j in genes]
    values = np.ascontiguousarray(_text_to_float(columns, 0, bad).T) if cells else np.empty((0, len(genes)))
    return ids, [n for n, _ in rows], values, bad


def _wide_not_number_problems(
    path: Path, ids: np.ndarray, lines: list[int], genes: list[str], bad: dict[int, _BadColumn]
) -> list[str]:
    problems = [
        f"{path}: column '{genes[j]}' holds true/false values, not numbers."
        for j, column in sorted(bad.items())
        if column.only_booleans
    ]
    cells = [(j, column) for j, column in sorted(bad.items()) if not column.only_booleans]
    for j, column in cells[:10]:
        problems.append(
            f"{path}: column '{genes[j]}', sample '{str(ids[column.row]).strip()}' on line "
            f"{lines[column.row]}: '{column.value}' is not a number; {column.count} such cell(s) in "
            "this column (columns of text are read as covariates only when most of their cells are text)."
        )
    if len(cells) > 10:
        problems.append(f"{path}: ... and {len(cells) - 10} more columns with cells that are not numbers.")
    return problems


def _arrow_batches(
    path, read_options, convert_options, delimiter: str, n_fields: int, skip_rows: int, as_text: bool
) -> Iterator[pa.RecordBatch]:
    """pyarrow's streaming CSV reader over ``path``, its errors turned into ctra's messages (a
    conversion error in a numeric read becomes ``_NotNumeric``, so the caller can re-read as text)."""
    try:
        with pacsv.open_csv(
            path,
            read_options=read_options,
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=convert_options,
        ) as reader:
            yield from reader
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        if "conversion error" in str(err) and not as_text:
            raise _NotNumeric() from None
        raise _parse_problem(path, err, delimiter, n_fields, skip_rows) from None
    except OSError as err:  # e.g. a truncated gzip stream
        raise _read_problem(path, err) from None
