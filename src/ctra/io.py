"""Reading count tables and sample sheets, with messages that point at the bad cell.

Count tables arrive as TSV/CSV (optionally gzipped, gene column header possibly empty as R's
``write.table`` writes it), featureCounts output, or AnnData ``.h5ad``. Everything is returned as a
genes x samples float64 frame indexed by the gene ids as written; id mapping happens in
:mod:`ctra.genesets`, value checks in :mod:`ctra.validate`.

Every problem becomes an :class:`~ctra.errors.InputError` naming the file and the line, column or
cell: a parser's own exception never reaches the user. A UTF-8 byte-order mark and CRLF line ends
are accepted silently (invisible artefacts of Excel and Windows editors); spaces inside values are
kept as written so that validation can point at them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import InputError

FEATURECOUNTS_ANNOTATION = ["Chr", "Start", "End", "Strand", "Length"]
HTSEQ_SPECIAL_PREFIX = "__"
NULL_VALUES = ["", "NA", "NaN", "nan", "NULL"]
# magic bytes of files people hand over instead of a text table
MAGIC = {
    b"PK\x03\x04": "an Excel workbook (.xlsx) or another zip archive; export the sheet as TSV or CSV",
    b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls); export the sheet as TSV or CSV",
    b"\x89HDF": "an HDF5 file; give AnnData files the .h5ad extension",
    b"%PDF": "a PDF document, not a table",
    b"BZh": "a bzip2-compressed file; decompress it or recompress it with gzip (.gz)",
    b"\xfd7zXZ": "an xz-compressed file; decompress it or recompress it with gzip (.gz)",
}
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
        raise InputError(f"{path}: is named .gz but is not gzip-compressed; rename it without .gz "
                         "(or compress it with gzip).")
    if not _is_gz(path) and is_gzip:
        raise InputError(f"{path}: is gzip-compressed but not named .gz; add the .gz extension.")
    for magic, what in MAGIC.items():
        if start.startswith(magic):
            raise InputError(f"{path}: looks like {what}.")


def _decode_problem(path: Path, err: Exception, line: int | None) -> InputError:
    where = f" on line {line}" if line else ""
    if isinstance(err, UnicodeDecodeError):
        return InputError(f"{path}: is not UTF-8 text{where} (byte 0x{err.object[err.start]:02x}); it looks like "
                          "a binary file, or text saved in another encoding: save it as UTF-8 TSV/CSV.")
    if isinstance(err, (EOFError, zlib.error, gzip.BadGzipFile)):
        return InputError(f"{path}: the gzip stream is truncated or corrupt{where} ({err}); "
                          "copy or download the file again.")
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
            raise InputError(f"{path}: the header line has no tab or comma but {count} "
                             f"{DELIMITER_NAMES[candidate]}(s): the {what} seems to be "
                             f"{DELIMITER_NAMES[candidate]}-separated; ctra reads tab-separated (TSV) or "
                             "comma-separated (CSV) files: export it again as TSV.")
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
    if path.suffix == ".h5ad" or not wanted:
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


def line_hint(lines: list[int]) -> str:
    if not lines:
        return ""
    return f"line {lines[0]}" if len(lines) == 1 else "lines " + ", ".join(map(str, lines[:-1])) + f" and {lines[-1]}"


# ----------------------------------------------------------------------------------------------
# Count tables
# ----------------------------------------------------------------------------------------------

def read_counts(path: str | Path) -> pd.DataFrame:
    """Read a gene x sample table (TSV/CSV[.gz], featureCounts, or .h5ad) as float64.

    Returns a frame indexed by gene id (str) with one column per sample. Values are not checked
    here beyond being numeric or empty (NaN), so that validation can list every problem at once.
    """
    path = Path(path)
    if path.suffix == ".h5ad":
        return _read_h5ad_counts(path)
    lines = _head_lines(path, 5)
    comment_lines = len(lines) - len([line for line in lines if not line.startswith("#")])
    if comment_lines < len(lines) and lines[comment_lines].startswith("Geneid\tChr\tStart\tEnd\tStrand\tLength"):
        return _read_featurecounts(path, skip=comment_lines)
    return _read_delimited_matrix(path, lines)


def _read_h5ad_counts(path: Path) -> pd.DataFrame:
    import anndata

    if not path.exists():
        raise InputError(f"{path}: file not found.")
    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # anndata raises many types for corrupt files
        raise InputError(f"{path}: cannot be read as AnnData .h5ad ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}).") from None
    matrix = adata.layers["counts"] if "counts" in adata.layers else adata.X
    if matrix is None:
        raise InputError(f"{path}: the AnnData file has no X matrix and no 'counts' layer.")
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    frame = pd.DataFrame(np.asarray(matrix, dtype=np.float64).T,
                         index=adata.var_names.astype(str), columns=adata.obs_names.astype(str))
    _check_unique_columns(path, list(frame.columns), first_position=1)
    frame.index.name = "gene_id"
    return frame


def _read_featurecounts(path: Path, skip: int) -> pd.DataFrame:
    header = _head_lines(path, skip + 1)[skip]
    names = header.split("\t")
    _check_unique_columns(path, names[len(FEATURECOUNTS_ANNOTATION) + 1:],
                          first_position=len(FEATURECOUNTS_ANNOTATION) + 2)
    names[0] = "gene_id"
    table = _arrow_read(path, delimiter="\t", skip_rows=skip + 1, column_names=names)
    frame = table.to_pandas()
    frame = frame.drop(columns=[c for c in FEATURECOUNTS_ANNOTATION if c in frame.columns])
    frame = frame.set_index("gene_id")
    _check_gene_column(path, frame, None, first_line=skip + 2)
    frame.columns = [_featurecounts_sample_name(c) for c in frame.columns]
    _check_unique_columns(path, list(frame.columns), first_position=len(FEATURECOUNTS_ANNOTATION) + 2,
                          note=" (after reducing BAM paths to file names)")
    return _to_float_matrix(frame, path)


def _featurecounts_sample_name(column: str) -> str:
    """featureCounts names samples by BAM path: keep the file name without .bam."""
    name = column.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".bam") else name


def _read_delimited_matrix(path: Path, lines: list[str]) -> pd.DataFrame:
    """Plain gene x sample table; the gene column's header may be missing (R style) or empty."""
    delimiter = _delimiter(path, lines[0], "count table")
    name = DELIMITER_NAMES[delimiter]
    header = next(csv.reader([lines[0]], delimiter=delimiter))
    if len(lines) < 2:
        raise InputError(f"{path}: has a header line but no gene rows.")
    n_fields = _field_count(lines[1], delimiter)
    if n_fields == len(header) + 1:
        names = ["gene_id", *header]  # R write.table: no label over the row names
    elif n_fields == len(header):
        names = ["gene_id", *header[1:]]
    else:
        raise InputError(f"{path}: line 2 has {n_fields} {name}-separated fields but the header (line 1) has "
                         f"{len(header)}; is the delimiter right, or do numbers use thousands separators?")
    if len(names) < 2:
        raise InputError(f"{path}: has no sample columns ({name}-separated, one column only); is it the right "
                         "file and delimiter?")
    _check_unique_columns(path, names[1:], first_position=2)
    table = _arrow_read(path, delimiter=delimiter, skip_rows=1, column_names=names)
    frame = table.to_pandas().set_index("gene_id")
    _check_gene_column(path, frame, header[0] if n_fields == len(header) else None, first_line=2)
    return _to_float_matrix(frame, path)


def _check_gene_column(path: Path, frame: pd.DataFrame, label: str | None, first_line: int) -> None:
    """Gene ids must not be empty, and a first column holding only numbers is not gene ids.

    ``first_line`` is the file line of the first data row (blank lines would shift the numbers).
    """
    ids = frame.index.to_series()
    empty = (ids.isna() | (ids.astype(str).str.strip() == "")).to_numpy()
    if empty.any():
        rows = np.flatnonzero(empty)
        raise InputError(f"{path}: {len(rows)} row(s) have an empty gene id ({_lines_text(rows + first_line)}); "
                         "every row needs a gene id.")
    if len(ids) and pd.to_numeric(ids, errors="coerce").notna().all():
        shown = f" ('{label}')" if label else ""
        raise InputError(f"{path}: column 1{shown} holds only numbers, not gene ids: the gene id column seems "
                         "to be missing (write the table with its row names), or the ids are Entrez numbers, "
                         "which ctra does not map: use HGNC symbols or Ensembl gene ids.")


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
        problems.append(f"{path}: duplicate sample column name(s){note}: {', '.join(duplicated[:10])}"
                        f"{' ...' if len(duplicated) > 10 else ''}; each sample must have one column.")
    empty = [str(i) for i, name in enumerate(samples, start=first_position) if not name.strip()]
    if empty:
        problems.append(f"{path}: sample column(s) {', '.join(empty[:10])} have an empty header.")
    if problems:
        raise InputError(problems)


def _arrow_read(path: Path, delimiter: str, skip_rows: int, column_names: list[str]) -> pa.Table:
    """Multi-threaded CSV parse; every column read as text first is too slow, so only the gene
    column is forced to string and the rest inferred (then checked to be numeric). Parser errors
    are turned into messages naming the line (ragged rows) or the cell (non-numbers)."""
    read_options = pacsv.ReadOptions(skip_rows=skip_rows, column_names=column_names, block_size=1 << 24)
    convert_options = pacsv.ConvertOptions(column_types={column_names[0]: pa.string()},
                                           strings_can_be_null=False, null_values=NULL_VALUES)
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    try:
        return pacsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                              convert_options=convert_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        message = str(err)
        if "Expected" in message and "columns" in message:
            bad = _first_bad_line(path, delimiter, len(column_names), skip_rows)
            if bad is not None:
                number, fields, text = bad
                gene = text.split(delimiter, 1)[0]
                hint = (" A number seems to use thousands separators (e.g. '1,234'): write plain numbers."
                        if delimiter == "," and fields > len(column_names) and re.search(r"\d,\d{3}\b", text)
                        else " Is a value missing, or is there an extra delimiter?")
                raise InputError(f"{path}: line {number} (gene '{gene}') has {fields} fields but the header "
                                 f"implies {len(column_names)}.{hint}") from None
        if "conversion error" in message:
            # a later block did not fit the inferred type: reread as text, name the cell
            try:
                convert_options.column_types = {c: pa.string() for c in column_names}
                return pacsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                                      convert_options=convert_options)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
                pass
        raise InputError(f"{path}: cannot be parsed as a {DELIMITER_NAMES.get(delimiter, delimiter)}-separated "
                         f"table: {_short_arrow_message(err)}") from None
    except OSError as err:  # e.g. a truncated gzip stream
        if _is_gz(path):
            raise InputError(f"{path}: the gzip stream is truncated or corrupt ({_short_arrow_message(err)}); "
                             "copy or download the file again.") from None
        raise InputError(f"{path}: cannot be read: {_short_arrow_message(err)}.") from None


def _short_arrow_message(err: Exception) -> str:
    return str(err).split("\n")[0][:300]


def _to_float_matrix(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Coerce sample columns to float64, naming the first non-numeric cell of each bad column."""
    problems = []
    bad_cells = []
    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values):
            problems.append(f"{path}: column '{column}' holds true/false values, not counts.")
            continue
        if pd.api.types.is_numeric_dtype(values):
            out[column] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        text = values.astype("string").str.strip()
        numeric = pd.to_numeric(text.replace(NULL_VALUES, pd.NA), errors="coerce")
        bad = numeric.isna() & text.notna() & ~text.isin(NULL_VALUES)
        if not bad.any():
            out[column] = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        row = int(np.flatnonzero(bad.to_numpy())[0])
        bad_cells.append((column, str(frame.index[row]), str(values.iloc[row]), int(bad.sum())))
    if bad_cells:
        lines = locate_rows(path, [gene for _, gene, _, _ in bad_cells[:10]], limit=1)
        for column, gene, value, count in bad_cells[:10]:
            hint = (" (thousands separators are not allowed: write plain numbers)"
                    if re.fullmatch(r"-?\d{1,3}([,.' ]\d{3})+([.,]\d+)?", value.strip()) else "")
            where = f" on {line_hint(lines.get(gene, []))}" if lines.get(gene) else ""
            problems.append(f"{path}: column '{column}', gene '{gene}'{where}: '{value}' is not a number{hint}; "
                            f"{count} such cell(s) in this column.")
        if len(bad_cells) > 10:
            problems.append(f"{path}: ... and {len(bad_cells) - 10} more columns with cells that are not numbers.")
    if problems:
        raise InputError(problems)
    matrix = pd.DataFrame(out, index=frame.index.astype(str))
    matrix.index.name = "gene_id"
    matrix = matrix[~matrix.index.str.startswith(HTSEQ_SPECIAL_PREFIX)]
    return matrix


# ----------------------------------------------------------------------------------------------
# Sample sheets
# ----------------------------------------------------------------------------------------------

def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read a sample sheet as text (every cell a str, empty cells '').

    The frame's index is the file line number of each row (header = line 1), so that messages can
    name lines even after rows are dropped. A BOM and CRLF line ends are accepted; rows that are
    entirely empty (Excel's trailing ``\\t\\t\\t`` rows) and trailing columns without a header or a
    value are skipped; ragged rows, duplicate or missing column names are errors.
    """
    path = Path(path)
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
        raise InputError(f"{path}: cannot be parsed as a {name}-separated sample sheet near line {start}: "
                         f"{err}.") from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
        raise _decode_problem(path, err, None) from None
    (_, header), body = rows[0], [(n, r) for n, r in rows[1:] if any(cell.strip() for cell in r)]
    # Excel pads exported sheets with empty trailing columns: drop those that are empty everywhere
    while header and not header[-1].strip() and all(len(r) < len(header) or not r[len(header) - 1].strip()
                                                   for _, r in body):
        header = header[:-1]
        body = [(n, r[: len(header)] if len(r) > len(header) else r) for n, r in body]
    problems = []
    seen: dict[str, int] = {}
    for position, column in enumerate(header, start=1):
        if not column.strip():
            problems.append(f"{path}: column {position} has an empty header; name it or delete the column.")
        elif column in seen:
            problems.append(f"{path}: column name '{column}' appears twice (columns {seen[column]} and "
                            f"{position}); column names must be unique.")
        seen.setdefault(column, position)
    ragged = [(n, len(r)) for n, r in body if len(r) != len(header)]
    if ragged:
        shown = "; ".join(f"line {n} has {k}" for n, k in ragged[:5])
        more = f" (and {len(ragged) - 5} more lines)" if len(ragged) > 5 else ""
        problems.append(f"{path}: the header has {len(header)} {name}-separated fields but {shown}{more}; "
                        "every row needs one value per column (leave a cell empty, but keep its delimiter).")
    if not body and not problems:
        problems.append(f"{path}: sample sheet has a header but no rows.")
    if problems:
        raise InputError(problems)
    sheet = pd.DataFrame([r for _, r in body], columns=header, index=[n for n, _ in body], dtype=str)
    return sheet
