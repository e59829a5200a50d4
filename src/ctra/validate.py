"""Check a study's inputs against its config and assemble them into one AnnData.

Every check runs before anything is computed and all problems are reported together, each naming
the file, the row or column and what is wrong. Nothing is dropped silently: excluded samples,
samples dropped for missing covariates, merged gene rows and HTSeq counter rows are recorded in
``adata.uns`` and in the log.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from .errors import InputError, ProblemList
from .genesets import SCORE_GROUPS, id_kind, match_genes
from .io import read_counts, read_sample_sheet, sha256sum

CANONICAL = ("sample", "participant", "arm", "time", "period")
MIN_PARTICIPANTS_PER_ARM = 2
MIN_FRACTION_SET_GENES = 0.5
LOG2_LOOKS_LIKE_COUNTS = 100.0


def _rows(mask: pd.Series, limit: int = 5) -> str:
    """File line numbers (header is line 1) of the True rows, shortened."""
    lines = [str(i + 2) for i in np.flatnonzero(mask.to_numpy())]
    more = f" and {len(lines) - limit} more" if len(lines) > limit else ""
    return ", ".join(lines[:limit]) + more


def _listing(items: list[str], limit: int = 8) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(f"'{i}'" for i in items[:limit]) + more


def level_key(value: str) -> str:
    """Case- and spacing-insensitive form used to catch 'Control' vs 'control ' style variants."""
    return re.sub(r"\s+", " ", value.strip()).casefold()


def _check_text_column(sheet: pd.DataFrame, column: str, path: Path, problems: ProblemList) -> None:
    values = sheet[column]
    empty = values.str.strip() == ""
    if empty.any():
        problems.add(f"{path}: column '{column}' is empty on line(s) {_rows(empty)}.")
    padded = (values != values.str.strip()) & ~empty
    if padded.any():
        problems.add(f"{path}: column '{column}' has leading/trailing spaces on line(s) {_rows(padded)} "
                     f"(e.g. '{values[padded].iloc[0]}'); remove them so ids match exactly.")
    variants: dict[str, set[str]] = defaultdict(set)
    for value in values[~empty]:
        variants[level_key(value)].add(value)
    clashes = [sorted(v) for v in variants.values() if len(v) > 1]
    if clashes and column != "sample":
        shown = "; ".join(" vs ".join(f"'{x}'" for x in clash) for clash in clashes[:3])
        problems.add(f"{path}: column '{column}' has values that differ only in case or spacing: {shown}.")


def rename_sheet_columns(sheet: pd.DataFrame, study: dict, path: Path) -> pd.DataFrame:
    """Map the study's column names to canonical ones (sample, participant, arm, time, period)."""
    columns = study["columns"]
    wanted = {columns[key]: key for key in CANONICAL if columns.get(key)}
    missing = [f"'{name}' (for {key})" for name, key in wanted.items() if name not in sheet.columns]
    missing += [f"'{c}' (covariate)" for c in study.get("covariates", []) if c not in sheet.columns]
    if missing:
        raise InputError(f"{path}: sample sheet lacks column(s) {', '.join(missing)}; it has "
                         f"{', '.join(repr(c) for c in sheet.columns)}.")
    clashing = [c for c in study.get("covariates", []) if c in CANONICAL and c not in wanted.values()]
    if clashing:
        raise InputError(f"{path}: covariate name(s) {', '.join(clashing)} are reserved; rename the column(s).")
    keep = [*wanted, *[c for c in study.get("covariates", []) if c not in wanted]]
    return sheet[keep].rename(columns=wanted)


def _ordered_levels(values: pd.Series, reference: str | None, configured: list[str] | None,
                    what: str, path: Path, problems: ProblemList) -> list[str]:
    """Levels with the reference first, then the configured order or order of first appearance."""
    present = list(dict.fromkeys(values))
    if configured:
        unknown = [v for v in present if v not in configured]
        if unknown:
            problems.add(f"{path}: column '{what}' has value(s) {_listing(unknown)} not in the config's "
                         f"{what}_levels {configured}; a typo?")
        order = [v for v in configured if v in present]
    else:
        order = present
    if reference is not None:
        if reference not in present:
            near = [v for v in present if level_key(v) == level_key(reference)]
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            key = "baseline" if what == "time" else "control"
            problems.add(f"{path}: the config's {key} '{reference}' does not occur in column '{what}', "
                         f"which has {_listing(present)}{hint}.")
            return order
        order = [reference, *[v for v in order if v != reference]]
    return order


def _check_design(obs: pd.DataFrame, study: dict, path: Path, problems: ProblemList) -> dict[str, list[str]]:
    columns = study["columns"]
    arms = _ordered_levels(obs["arm"], study.get("control"), study.get("arm_levels"), "arm", path, problems)
    times = _ordered_levels(obs["time"], study["baseline"], study.get("time_levels"), "time", path, problems)
    if len(times) < 2:
        problems.add(f"{path}: column '{columns['time']}' has only one time point ({_listing(times)}); "
                     "a change from baseline needs at least two.")
    if study.get("control") is None and len(arms) > 1:
        problems.add(f"{path}: column '{columns['arm']}' has {len(arms)} arms ({_listing(arms)}) but the config "
                     "sets no `control`; name the reference arm.")
    unit = ["participant", "period"] if "period" in obs else ["participant"]
    arms_per_unit = obs.groupby(unit, sort=True, observed=True)["arm"].nunique()
    mixed = arms_per_unit[arms_per_unit > 1]
    if len(mixed):
        names = [" / ".join(map(str, k)) if isinstance(k, tuple) else str(k) for k in mixed.index]
        fix = ("each participant x period must stay in one arm" if "period" in obs else
               "set `columns: period` for a crossover design, or fix the sheet")
        problems.add(f"{path}: {len(mixed)} participant(s) appear in more than one arm "
                     f"({_listing(names)}); {fix}.")
    per_arm = obs.groupby("arm", sort=False)["participant"].nunique()
    small = [f"'{a}' ({n})" for a, n in per_arm.items() if n < MIN_PARTICIPANTS_PER_ARM]
    if small:
        problems.add(f"{path}: arm(s) {', '.join(small)} have fewer than {MIN_PARTICIPANTS_PER_ARM} "
                     "participants; a change from baseline cannot be estimated against participant variation.")
    return {"arm": arms, "time": times}


def _covariates(obs: pd.DataFrame, study: dict, path: Path, problems: ProblemList) -> tuple[pd.DataFrame, list[str]]:
    """Type covariates (numeric if every value parses) and handle missing values per the config."""
    dropped: list[str] = []
    for name in study.get("covariates", []):
        missing = obs[name].str.strip() == ""
        if missing.any():
            if study.get("drop_incomplete_samples", False):
                dropped += obs.index[missing.to_numpy()].tolist()
            else:
                problems.add(f"{path}: covariate '{name}' is missing for {int(missing.sum())} sample(s) "
                             f"(line(s) {_rows(missing)}); fill them in, or set `drop_incomplete_samples: "
                             "true` to drop those samples (they are then listed in the report).")
    obs = obs.drop(index=sorted(set(dropped)))
    for name in study.get("covariates", []):
        numeric = pd.to_numeric(obs[name], errors="coerce")
        if numeric.notna().all():
            obs[name] = numeric.astype(float)
        if obs[name].nunique() < 2:
            problems.add(f"{path}: covariate '{name}' has the same value for every sample; it cannot be "
                         "estimated, remove it from `covariates`.")
    return obs, sorted(set(dropped))


def build_obs(sheet: pd.DataFrame, study: dict, path: Path, problems: ProblemList) -> tuple[pd.DataFrame, dict]:
    """Canonical obs frame (index = sample) plus levels and what was dropped."""
    obs = rename_sheet_columns(sheet, study, path)
    for column in [c for c in CANONICAL if c in obs]:
        _check_text_column(obs, column, path, problems)
    duplicated = obs["sample"].duplicated(keep=False)
    if duplicated.any():
        problems.add(f"{path}: sample id(s) {_listing(sorted(set(obs['sample'][duplicated])))} appear more than "
                     f"once (lines {_rows(duplicated)}).")
        raise InputError(problems.problems)
    obs = obs.set_index("sample")
    obs.index.name = None
    excluded = [s for s in study.get("exclude_samples", []) if s in obs.index]
    obs = obs.drop(index=excluded)
    obs, dropped = _covariates(obs, study, path, problems)
    problems.raise_if_any()
    levels = _check_design(obs, study, path, problems)
    return obs, {"levels": levels, "excluded_samples": excluded, "dropped_incomplete": dropped}


def _check_values(matrix: pd.DataFrame, mode: str, path: Path, problems: ProblemList) -> None:
    """Counts must be finite non-negative integers; log2 values must be finite and log-scale."""
    values = matrix.to_numpy()
    finite = np.isfinite(values)
    if not finite.all():
        gene_i, sample_i = np.nonzero(~finite)
        problems.add(f"{path}: {int((~finite).sum())} missing or non-finite value(s), first at gene "
                     f"'{matrix.index[gene_i[0]]}', sample '{matrix.columns[sample_i[0]]}'.")
        return
    integral = bool(np.all(values == np.round(values)))
    if mode == "counts":
        if (values < 0).any():
            gene_i, sample_i = np.nonzero(values < 0)
            problems.add(f"{path}: {len(gene_i)} negative count(s), first at gene '{matrix.index[gene_i[0]]}', "
                         f"sample '{matrix.columns[sample_i[0]]}' ({values[gene_i[0], sample_i[0]]:g}).")
        if not integral:
            gene_i, sample_i = np.nonzero(values != np.round(values))
            problems.add(f"{path}: {len(gene_i)} non-integer value(s), first at gene '{matrix.index[gene_i[0]]}', "
                         f"sample '{matrix.columns[sample_i[0]]}' ({values[gene_i[0], sample_i[0]]:g}). "
                         "This looks like TPM/FPKM or normalized values, not raw counts: give raw counts, or set "
                         "`input: log2_expression` with log2-scale values.")
        zero = np.flatnonzero(values.sum(axis=0) == 0)
        if len(zero):
            problems.add(f"{path}: sample(s) {_listing(matrix.columns[zero].tolist())} have zero counts for "
                         "every gene; remove them (or list them in `exclude_samples`).")
    elif integral and values.max() > LOG2_LOOKS_LIKE_COUNTS:
        problems.add(f"{path}: `input: log2_expression` but the values are integers up to {values.max():g}; "
                     "these look like raw counts: set `input: counts`.")


def _match_samples(matrix: pd.DataFrame, obs: pd.DataFrame, excluded: list[str], counts_path: Path,
                   samples_path: Path, problems: ProblemList) -> None:
    missing = [s for s in obs.index if s not in matrix.columns]
    extra = [s for s in matrix.columns if s not in obs.index and s not in excluded]
    if missing:
        problems.add(f"{samples_path}: {len(missing)} sample(s) of the sheet have no column in {counts_path}: "
                     f"{_listing(missing)}.")
    if extra:
        problems.add(f"{counts_path}: {len(extra)} column(s) are not in the sample sheet {samples_path}: "
                     f"{_listing(extra)}; add them to the sheet or to `exclude_samples`.")


def merge_gene_rows(matrix: pd.DataFrame, gene_table: pd.DataFrame, mode: str, path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rename matched rows to the gene-set names, summing several rows of one gene (counts only).

    Returns the matrix and a var frame with ``input_ids``, ``group`` and ``direction``.
    """
    match = match_genes(matrix.index, gene_table, str(path))
    gene_for_row = match.gene_for_row
    merged = {g: rows for g, rows in match.rows_for_gene.items() if len(rows) > 1}
    if merged and mode != "counts":
        shown = "; ".join(f"{g} <- {' + '.join(rows)}" for g, rows in list(merged.items())[:5])
        raise InputError(f"{path}: several rows map to one gene after alias mapping ({shown}); log2 values "
                         "cannot be merged by summing: keep one row per gene.")
    new_index = matrix.index.map(lambda row: gene_for_row.get(row, row))
    duplicated = new_index.duplicated(keep=False) & ~new_index.isin(list(merged))
    if duplicated.any():
        raise InputError(f"{path}: gene id(s) {_listing(sorted(set(new_index[duplicated])))} appear on more "
                         "than one row; give each gene one row (ambiguous rows are not summed silently).")
    input_ids = pd.Series(matrix.index, index=new_index).groupby(level=0, sort=False).agg(";".join)
    matrix = matrix.groupby(new_index, sort=False).sum() if merged else matrix.set_axis(new_index)
    info = gene_table.set_index("gene")
    var = pd.DataFrame(index=matrix.index)
    var["input_ids"] = input_ids.reindex(matrix.index).to_numpy()
    var["group"] = info["group"].reindex(matrix.index).fillna("").to_numpy()
    var["direction"] = info["direction"].reindex(matrix.index).fillna(0).astype(int).to_numpy()
    return matrix, var


def _check_set_coverage(var: pd.DataFrame, gene_set: pd.DataFrame, kind: str, path: Path) -> None:
    found = set(var.index[var["group"].isin(SCORE_GROUPS)])
    missing = [g for g in gene_set["gene"] if g not in found]
    if len(found) < MIN_FRACTION_SET_GENES * len(gene_set):
        looks = "Ensembl gene ids" if kind == "ensembl" else "gene symbols"
        raise InputError(f"{path}: only {len(found)} of {len(gene_set)} gene-set genes were found (the ids look "
                         f"like {looks}); missing: {', '.join(missing)}. Check that the gene column holds "
                         "HGNC symbols or human Ensembl ids.")


def validate_study(study_name: str, study: dict, gene_set: pd.DataFrame, markers: pd.DataFrame) -> ad.AnnData:
    """Read and check everything for one study; return samples x genes AnnData of raw values.

    ``study`` is the study's config block after schema defaults. The returned object carries the
    canonical obs columns, ``var`` gene annotation, and in ``uns`` the level order, what was
    excluded or merged, and input checksums.
    """
    counts_path, samples_path = Path(study["counts"]), Path(study["samples"])
    problems = ProblemList()
    sheet = read_sample_sheet(samples_path)
    obs, record = build_obs(sheet, study, samples_path, problems)
    matrix = read_counts(counts_path)
    if matrix.shape[0] == 0:
        raise InputError(f"{counts_path}: has a header but no gene rows.")
    _match_samples(matrix, obs, record["excluded_samples"] + record["dropped_incomplete"],
                   counts_path, samples_path, problems)
    unknown_excluded = [s for s in study.get("exclude_samples", []) if s not in matrix.columns and s not in obs.index]
    if unknown_excluded:
        problems.add(f"config: `exclude_samples` names sample(s) found in neither file: {_listing(unknown_excluded)}.")
    problems.raise_if_any()
    matrix = matrix[obs.index]
    _check_values(matrix, study["input"], counts_path, problems)
    problems.raise_if_any()
    gene_table = pd.concat([gene_set, markers[~markers["gene"].isin(gene_set["gene"])]], ignore_index=True)
    kind = id_kind(matrix.index, str(counts_path))
    matrix, var = merge_gene_rows(matrix, gene_table, study["input"], counts_path)
    _check_set_coverage(var, gene_set, kind, counts_path)
    adata = ad.AnnData(X=matrix.T.to_numpy(dtype=np.float64), obs=obs, var=var)
    adata.uns["levels"] = record["levels"]
    adata.uns["excluded_samples"] = record["excluded_samples"]
    adata.uns["dropped_incomplete"] = record["dropped_incomplete"]
    adata.uns["merged_genes"] = json.dumps({g: ids for g, ids in zip(var.index, var["input_ids"]) if ";" in ids})
    # stored as JSON text: h5py would read '/' in dict keys (file paths) as nested groups
    adata.uns["input_checksums"] = json.dumps({str(counts_path): sha256sum(counts_path),
                                               str(samples_path): sha256sum(samples_path)})
    adata.uns["id_kind"] = kind
    adata.uns["study"] = study_name
    adata.uns["study_config"] = json.dumps(study, sort_keys=True)
    return adata


def validate_sample_schema(obs: pd.DataFrame, schema_path: str | Path, source: str) -> None:
    """Check the canonical sample columns against the workflow's JSON schema (snakemake's validator)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    table = obs.reset_index(names="sample")[[c for c in CANONICAL if c in obs.columns or c == "sample"]]
    try:
        validate(table, str(schema_path), set_default=False)
    except WorkflowError as err:
        raise InputError(f"{source}: sample sheet does not match {schema_path}: {str(err).splitlines()[0]}") from None
