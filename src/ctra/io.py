"""Reading count tables and sample sheets, with messages that point at the bad cell.

Count tables arrive as TSV/CSV (optionally gzipped, gene column header possibly empty as R's
``write.table`` writes it), featureCounts output, or AnnData ``.h5ad``. Everything is returned as a
genes x samples float64 frame indexed by the gene ids as written; id mapping happens in
:mod:`ctra.genesets`, value checks in :mod:`ctra.validate`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import InputError

FEATURECOUNTS_ANNOTATION = ["Chr", "Start", "End", "Strand", "Length"]
HTSEQ_SPECIAL_PREFIX = "__"


def sha256sum(path: str | Path) -> str:
    """Hex SHA-256 of a file, recorded in the report so a reviewer can tie results to inputs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _head_lines(path: Path, n: int) -> list[str]:
    """First n lines (without line ends); a clear error for missing, binary or empty files."""
    if not path.exists():
        raise InputError(f"{path}: file not found.")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a table file.")
    try:
        with _open_text(path) as handle:
            lines = []
            for _ in range(n):
                line = handle.readline()
                if not line:
                    break
                lines.append(line.rstrip("\r\n"))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as err:
        raise InputError(f"{path}: cannot be read as UTF-8 text ({type(err).__name__}: {err}); "
                         "is it a binary file or a truncated .gz?") from None
    if any("\x00" in line for line in lines):
        raise InputError(f"{path}: contains NUL bytes; it looks like a binary file, not a table.")
    if not lines or not lines[0].strip():
        raise InputError(f"{path}: file is empty.")
    return lines


def _delimiter(path: Path, header: str) -> str:
    """Tab unless the file is named .csv or the header has commas and no tabs."""
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if stem.endswith(".csv") or ("\t" not in header and "," in header):
        return ","
    return "\t"


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

    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # anndata raises many types for corrupt files
        raise InputError(f"{path}: cannot be read as AnnData .h5ad ({err}).") from None
    matrix = adata.layers["counts"] if "counts" in adata.layers else adata.X
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return pd.DataFrame(np.asarray(matrix, dtype=np.float64).T,
                        index=adata.var_names.astype(str), columns=adata.obs_names.astype(str))


def _read_featurecounts(path: Path, skip: int) -> pd.DataFrame:
    table = _arrow_read(path, delimiter="\t", skip_rows=skip, column_names=None)
    frame = table.to_pandas()
    frame = frame.drop(columns=[c for c in FEATURECOUNTS_ANNOTATION if c in frame.columns])
    frame = frame.set_index(frame.columns[0])
    frame.columns = [_featurecounts_sample_name(c) for c in frame.columns]
    return _to_float_matrix(frame, path)


def _featurecounts_sample_name(column: str) -> str:
    """featureCounts names samples by BAM path: keep the file name without .bam."""
    name = column.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.endswith(".bam") else name


def _read_delimited_matrix(path: Path, lines: list[str]) -> pd.DataFrame:
    """Plain gene x sample table; the gene column's header may be missing (R style) or empty."""
    delimiter = _delimiter(path, lines[0])
    header = lines[0].split(delimiter)
    if len(lines) < 2:
        raise InputError(f"{path}: has a header line but no gene rows.")
    n_fields = len(lines[1].split(delimiter))
    if n_fields == len(header) + 1:
        names = ["gene_id", *header]  # R write.table: no label over the row names
    elif n_fields == len(header):
        names = ["gene_id", *header[1:]]
    else:
        raise InputError(f"{path}: line 2 has {n_fields} fields but the header has {len(header)}; "
                         f"is the delimiter {'tab' if delimiter == chr(9) else 'comma'} right, or do "
                         "numbers use thousands separators?")
    if len(names) < 2:
        raise InputError(f"{path}: has no sample columns (delimiter "
                         f"{'tab' if delimiter == chr(9) else 'comma'}); is it the right file and delimiter?")
    _check_unique_columns(path, names[1:])
    table = _arrow_read(path, delimiter=delimiter, skip_rows=1, column_names=names)
    frame = table.to_pandas().set_index("gene_id")
    return _to_float_matrix(frame, path)


def _check_unique_columns(path: Path, samples: list[str]) -> None:
    seen: dict[str, int] = {}
    duplicated = []
    for position, name in enumerate(samples, start=2):
        if name in seen:
            duplicated.append(f"'{name}' (columns {seen[name]} and {position})")
        seen.setdefault(name, position)
    if duplicated:
        raise InputError(f"{path}: duplicate sample columns: {', '.join(duplicated)}.")
    empty = [str(i) for i, name in enumerate(samples, start=2) if not name.strip()]
    if empty:
        raise InputError(f"{path}: sample column(s) {', '.join(empty)} have an empty header.")


def _arrow_read(path: Path, delimiter: str, skip_rows: int, column_names: list[str] | None) -> pa.Table:
    """Multi-threaded CSV parse; every column read as text first is too slow, so only the gene
    column is forced to string and the rest inferred (then checked to be numeric)."""
    read_options = pacsv.ReadOptions(skip_rows=skip_rows, column_names=column_names, block_size=1 << 24)
    convert_options = pacsv.ConvertOptions(
        column_types={column_names[0]: pa.string()} if column_names else None,
        strings_can_be_null=False, null_values=["", "NA", "NaN", "nan", "NULL"])
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    try:
        if column_names is None:
            # featureCounts: first column name comes from the file itself
            head = pacsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                                  convert_options=pacsv.ConvertOptions(include_columns=[]))
            first = head.schema.names[0] if head.schema.names else "Geneid"
            convert_options.column_types = {first: pa.string()}
        return pacsv.read_csv(path, read_options=read_options, parse_options=parse_options,
                              convert_options=convert_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise InputError(f"{path}: cannot be parsed as a {'tab' if delimiter == chr(9) else 'comma'}"
                         f"-separated table: {_short_arrow_message(err)}") from None


def _short_arrow_message(err: Exception) -> str:
    return str(err).split("\n")[0][:500]


def _to_float_matrix(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Coerce sample columns to float64, naming the first non-numeric cell of each bad column."""
    problems = []
    out = {}
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            out[column] = values.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() & values.notna()
        row = int(np.flatnonzero(bad.to_numpy())[0])
        hint = " (thousands separators are not allowed)" if "," in str(values.iloc[row]) else ""
        problems.append(f"{path}: column '{column}', gene '{frame.index[row]}' (data row {row + 1}): "
                        f"'{values.iloc[row]}' is not a number{hint}; {int(bad.sum())} such cells in this column.")
    if problems:
        raise InputError(problems[:10] + ([f"{path}: ... and {len(problems) - 10} more columns."] if len(problems) > 10 else []))
    matrix = pd.DataFrame(out, index=frame.index.astype(str))
    matrix.index.name = "gene_id"
    matrix = matrix[~matrix.index.str.startswith(HTSEQ_SPECIAL_PREFIX)]
    return matrix


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read a sample sheet as text (every cell a str, empty cells ''), BOM and CRLF tolerated."""
    path = Path(path)
    lines = _head_lines(path, 2)
    delimiter = _delimiter(path, lines[0])
    try:
        sheet = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False,
                            encoding="utf-8-sig", skip_blank_lines=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be parsed as a {'tab' if delimiter == chr(9) else 'comma'}"
                         f"-separated sample sheet: {str(err).splitlines()[0]}") from None
    if sheet.empty:
        raise InputError(f"{path}: sample sheet has a header but no rows.")
    unnamed = [c for c in sheet.columns if str(c).startswith("Unnamed:")]
    if unnamed:
        raise InputError(f"{path}: {len(unnamed)} column(s) have an empty header.")
    return sheet
