"""Check a study's inputs against its config and assemble them into one AnnData.

Every check runs before anything is computed and all problems are reported together, each naming
the file, the row or column and what is wrong: the sample sheet and the count table are both read
and checked even when the other one is broken, and checks that depend on a broken part are skipped
rather than reported as follow-on noise. Nothing is dropped silently: excluded samples, samples
dropped for missing covariates, merged gene rows and HTSeq counter rows are recorded in
``adata.uns`` and in the log.

Line numbers in messages are file lines (the header is line 1).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anndata as ad
import numpy as np
import pandas as pd

from .config import ValidateSettings
from .errors import InputError, ProblemList
from .genesets import PAR_Y_SUFFIX, SCORE_GROUPS, id_kind, match_genes, strip_version
from .io import (
    CountTable,
    detect_layout,
    is_excel,
    line_hint,
    locate_rows,
    read_count_table,
    read_sample_sheet,
    read_wide_table,
    row_lines,
    sha256sum,
)

CANONICAL = ("sample", "participant", "arm", "time", "period")
MIN_PARTICIPANTS_PER_ARM = 2
MIN_FRACTION_SET_GENES = 0.5
LOG2_LOOKS_LIKE_COUNTS = 100.0
LOG2_MAX = 40.0  # log2 expression above this is not on a log scale
TPM_TOTAL = 1e6
MISSING_COVARIATE = ("", "NA")  # a covariate cell with one of these (after stripping) is missing
LINE = "_line"  # obs column carrying each sample's sheet line until the checks are done

T = TypeVar("T")
log = logging.getLogger("ctra")


def _at(lines: Iterable[int], limit: int = 5) -> str:
    """'line 5' / 'lines 5, 7 and 9' / 'lines 5, 7, 9, 11, 13 and 4 more'."""
    lines = [int(x) for x in lines]
    if len(lines) > limit:
        return "lines " + ", ".join(map(str, lines[:limit])) + f" and {len(lines) - limit} more"
    return line_hint(lines)


def _rows(mask: pd.Series, lines: pd.Series | None = None, limit: int = 5) -> str:
    """File lines of the True rows: from ``lines`` (aligned to mask) or the mask's own index."""
    source = lines if lines is not None else pd.Series(mask.index, index=mask.index)
    return _at(source[mask.to_numpy()].tolist(), limit)


def _listing(items: list[str], limit: int = 8) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(f"'{i}'" for i in items[:limit]) + more


def level_key(value: str) -> str:
    """Case- and spacing-insensitive form used to catch 'Control' vs 'control ' style variants."""
    return re.sub(r"\s+", " ", str(value).strip()).casefold()


def _attempt(func: Callable[..., T], *args, problems: ProblemList) -> T | None:
    """Run a reader/check; on InputError record its problems and return None."""
    try:
        return func(*args)
    except InputError as err:
        for problem in err.problems:
            problems.add(problem)
        return None


# ----------------------------------------------------------------------------------------------
# Sample sheet
# ----------------------------------------------------------------------------------------------


def _column_label(key: str, names: dict[str, str]) -> str:
    """How a canonical column is named in messages: the sheet's own name (and the role if different)."""
    name = names.get(key, key)
    return f"column '{name}'" if name == key else f"column '{name}' (the {key})"


def _check_text_column(
    obs: pd.DataFrame, column: str, names: dict[str, str], path: Path, problems: ProblemList
) -> None:
    """Empty cells, and values differing only in case or inner spacing (the reader has stripped
    surrounding whitespace)."""
    label = _column_label(column, names)
    values = obs[column].fillna("").astype(str)
    stripped = values.str.strip()
    empty = stripped == ""
    if empty.any():
        problems.add(f"{path}: {label} is empty on {_rows(empty)}; every sample needs a {column}.")
    if column == "sample":
        return  # sample ids differing in case can be different samples; matching to the counts is exact
    spellings: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for line, value in stripped[~empty].items():
        spellings[level_key(value)][value].append(line)
    clashes = [variants for variants in spellings.values() if len(variants) > 1]
    if clashes:
        shown = "; ".join(
            " vs ".join(f"'{v}' ({_at(lines, 3)})" for v, lines in variants.items()) for variants in clashes[:3]
        )
        problems.add(
            f"{path}: {label} has values that differ only in case or spacing: {shown}; use one spelling for each level."
        )


def rename_sheet_columns(
    sheet: pd.DataFrame, settings: ValidateSettings, path: Path, problems: ProblemList
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """Map the study's column names to canonical ones (sample, participant, arm, time, period).

    Returns the renamed frame (design columns and covariates only) and the sheet name of each
    canonical column, or None when the columns the config names are not usable.
    """
    names = settings.columns.named()
    covariates = list(settings.covariates)
    predictors = list(dict.fromkeys(settings.predictors))
    n_before = len(problems.problems)
    if settings.design == "association":  # no arm; the draw's time only when `time` names it
        names = {key: names[key] for key in ("sample", "participant")}
        if settings.time:
            names["time"] = settings.time
        for predictor in predictors:
            if predictor in covariates:
                problems.add(
                    f"config: '{predictor}' is listed in both `predictors` and `covariates`; a column is "
                    "either tested or adjusted for: remove it from one."
                )
        covariates = [*covariates, *[p for p in predictors if p not in covariates]]
    roles: dict[str, list[str]] = defaultdict(list)
    for key, name in names.items():
        roles[name].append(key)
    for name, keys in roles.items():
        if len(keys) > 1:
            problems.add(
                f"config: `columns` maps {' and '.join(keys)} to the same sheet column '{name}'; each "
                "needs its own column."
            )
    repeated = sorted({c for c in covariates if covariates.count(c) > 1})
    if repeated:
        problems.add(f"config: `covariates` lists {_listing(repeated)} more than once.")
    for covariate in dict.fromkeys(covariates):
        if covariate in roles:
            what = "predictor" if covariate in predictors else "covariate"
            problems.add(
                f"{path}: {what} '{covariate}' is the study's {roles[covariate][0]} column; it is part "
                f"of the model already: remove it from `{what}s`."
            )
        elif covariate in CANONICAL:
            problems.add(
                f"{path}: covariate column '{covariate}' has a name ctra reserves for the {covariate} "
                f"(which this study takes from another column); rename it in the sheet and in "
                "`covariates`."
            )
    missing = [(name, f"for {roles[name][0]}") for name in roles if name not in sheet.columns]
    missing += [
        (c, "predictor" if c in predictors else "covariate")
        for c in dict.fromkeys(covariates)
        if c not in sheet.columns and c not in roles
    ]
    from .validate_outcomes import config_problems, sheet_roles

    trial_columns = sheet_roles(settings)
    for problem in config_problems(settings, names):
        problems.add(problem)
    missing += [(c, role) for c, role in trial_columns if c not in sheet.columns and c not in roles]
    if missing:
        described = []
        for name, role in missing:
            near = [c for c in sheet.columns if level_key(c) == level_key(name)]
            described.append(f"'{name}' ({role}{f'; found {near[0]!r}' if near else ''})")
        problems.add(
            f"{path}: sample sheet lacks column(s) {', '.join(described)}; it has "
            f"{_listing([str(c) for c in sheet.columns], 12)}. Fix the sheet or the config's "
            "`columns`/`covariates`"
            + ("/`outcomes`/`dose`." if any(role in ("outcome", "dose") for _, role in missing) else ".")
        )
    if len(problems.problems) > n_before:
        return None, names
    keep = [*names.values(), *[c for c in dict.fromkeys(covariates)]]
    keep += [c for c, _ in trial_columns if c not in keep]
    return sheet[keep].rename(columns={name: key for key, name in names.items()}), names


def _ordered_levels(
    values: pd.Series,
    lines: pd.Series,
    reference: str | None,
    configured: tuple[str, ...] | None,
    what: str,
    names: dict[str, str],
    path: Path,
    problems: ProblemList,
) -> list[str]:
    """Levels with the reference first, then the configured order or order of first appearance."""
    present = list(dict.fromkeys(values))
    label = _column_label(what, names)
    if configured:
        unknown = [v for v in present if v not in configured]
        if unknown:
            where = _rows(values.isin(unknown), lines)
            near = {v: c for v in unknown for c in configured if level_key(c) == level_key(v)}
            hint = f" (did you mean {_listing(sorted(set(near.values())))}?)" if near else "; a typo?"
            problems.add(
                f"{path}: {label} has value(s) {_listing(unknown)} on {where} that are not in the "
                f"config's {what}_levels {list(configured)}{hint}"
            )
        order = [v for v in configured if v in present]
    else:
        order = present
    if reference is not None:
        if reference not in present:
            near = [v for v in present if level_key(v) == level_key(reference)]
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            key = "baseline" if what == "time" else "control"
            problems.add(
                f"{path}: the config's {key} '{reference}' does not occur in {label}, "
                f"which has {_listing(present)}{hint}."
            )
            return order
        order = [reference, *[v for v in order if v != reference]]
    return order


def _check_design(
    obs: pd.DataFrame, settings: ValidateSettings, names: dict[str, str], path: Path, problems: ProblemList
) -> dict[str, list[str]]:
    lines = obs[LINE]
    arms = _ordered_levels(obs["arm"], lines, settings.control, settings.arm_levels, "arm", names, path, problems)
    times = _ordered_levels(obs["time"], lines, settings.baseline, settings.time_levels, "time", names, path, problems)
    if len(times) < 2:
        problems.add(
            f"{path}: {_column_label('time', names)} has only one time point ({_listing(times)}); "
            "a change from baseline needs at least two."
        )
    if settings.control is None and len(arms) > 1:
        problems.add(
            f"{path}: {_column_label('arm', names)} has {len(arms)} arms ({_listing(arms)}) but the "
            "config sets no `control`; name the reference arm."
        )
    unit = ["participant", "period"] if "period" in obs else ["participant"]
    arms_per_unit = obs.groupby(unit, sort=True, observed=True)["arm"].nunique()
    mixed = arms_per_unit[arms_per_unit > 1]
    if len(mixed):
        keys = [k if isinstance(k, tuple) else (k,) for k in mixed.index]
        shown = [" / ".join(map(str, k)) for k in keys]
        in_mixed = obs[unit].apply(tuple, axis=1).isin(keys)
        fix = (
            "each participant x period must stay in one arm"
            if "period" in obs
            else "set `columns: period` for a crossover design, or fix the sheet"
        )
        problems.add(
            f"{path}: {len(mixed)} participant(s) appear in more than one arm ({_listing(shown)}; "
            f"{_rows(in_mixed, lines)}); {fix}."
        )
    per_arm = obs.groupby("arm", sort=False)["participant"].nunique()
    small = [f"'{a}' ({n})" for a, n in per_arm.items() if n < MIN_PARTICIPANTS_PER_ARM]
    if small:
        problems.add(
            f"{path}: arm(s) {', '.join(small)} have fewer than {MIN_PARTICIPANTS_PER_ARM} "
            "participants; a change from baseline cannot be estimated against participant variation."
        )
    return {"arm": arms, "time": times}


MAX_CODE_LEVELS = 5  # a numeric covariate with this many distinct integers or fewer may be a code


def _covariates(
    obs: pd.DataFrame, settings: ValidateSettings, path: Path, problems: ProblemList
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Type covariates and handle missing values per the config.

    A covariate listed in ``categorical`` is categorical; any other is numeric if every value parses
    as a number, else categorical. A numeric covariate with at most ``MAX_CODE_LEVELS`` distinct
    integer values (site or batch codes 1/2/3?) is kept numeric, one linear term, and a warning is
    returned for the log and the report.
    """
    dropped: list[str] = []
    warnings: list[str] = []
    predictors = list(dict.fromkeys(settings.predictors)) if settings.design == "association" else []
    covariates = list(dict.fromkeys([*settings.covariates, *predictors]))
    categorical = set(settings.categorical)
    for name in sorted(categorical - set(covariates)):
        listed = "`covariates` or `predictors`" if predictors else "`covariates`"
        problems.add(
            f"config: `categorical` lists '{name}', which is not in {listed}; list it there too "
            "(or remove it from `categorical`)."
        )
    for name in covariates:
        role = "predictor" if name in predictors else "covariate"
        missing = obs[name].fillna("").str.strip().isin(MISSING_COVARIATE)
        if missing.any():
            if settings.drop_incomplete_samples:
                dropped += obs.index[missing.to_numpy()].tolist()
            else:
                problems.add(
                    f"{path}: {role} '{name}' is missing (empty or NA) for {int(missing.sum())} "
                    f"sample(s) ({_rows(missing, obs[LINE])}); fill them in, or set "
                    "`drop_incomplete_samples: true` to drop those samples (they are then listed in "
                    "the log and the report)."
                )
    dropped = [s for s in obs.index if s in set(dropped)]
    obs = obs.drop(index=dropped)
    for name in covariates:
        role = "predictor" if name in predictors else "covariate"
        text = obs[name].fillna("").str.strip()
        present = ~text.isin(MISSING_COVARIATE)
        numeric = pd.to_numeric(text.where(present), errors="coerce")
        not_numeric = present & numeric.isna()
        if name in categorical:
            obs[name] = text
        elif role == "predictor" and not_numeric.any():
            problems.add(
                f"{path}: predictor '{name}' is not numeric on {_rows(not_numeric, obs[LINE])} (e.g. "
                f"'{text[not_numeric].iloc[0]}'); list it under `categorical` to test its levels against the "
                "first, or write numbers there."
            )
            continue
        elif present.any() and not not_numeric.any():
            obs[name] = numeric.astype(float)
            distinct = obs[name].dropna().unique()
            if len(distinct) <= MAX_CODE_LEVELS and np.all(distinct == np.round(distinct)):
                warnings.append(
                    f"covariate '{name}' is numeric with only {len(distinct)} distinct integer values "
                    f"({', '.join(f'{v:g}' for v in sorted(distinct))}); it enters the model as one "
                    "linear term. If it is a code (site, batch, group), list it under `categorical`."
                )
        elif not_numeric.sum() < present.sum() / 2:
            problems.add(
                f"{path}: covariate '{name}' is numeric except on {_rows(not_numeric, obs[LINE])} "
                f"(e.g. '{text[not_numeric].iloc[0]}'); write numbers there (leave a cell empty if the "
                "value is missing)."
            )
            continue
        else:
            obs[name] = text
        if obs.loc[present, name].nunique() < 2:
            problems.add(
                f"{path}: {role} '{name}' has the same value for every sample; it cannot be "
                f"estimated: remove it from `{role}s`."
            )
    return obs, dropped, warnings


def _check_rank(
    obs: pd.DataFrame, levels: dict[str, list[str]], covariates: list[str], path: Path, problems: ProblemList
) -> None:
    """The fixed design without marker genes must be of full rank (checked again with markers later)."""
    from .design import build_design, check_full_rank

    design = build_design(obs, levels, covariates)
    try:
        check_full_rank(design.X, design.columns, str(path))
    except InputError as err:
        for problem in err.problems:
            problems.add(
                f"{problem} A covariate that repeats the arm, the time or another covariate (or a "
                "combination of them) cannot be estimated: remove or recode it in `covariates`."
            )


def build_obs(
    sheet: pd.DataFrame, settings: ValidateSettings, path: Path, problems: ProblemList
) -> tuple[pd.DataFrame | None, dict | None]:
    """Canonical obs frame (index = sample) plus levels and what was dropped.

    Problems go to ``problems``; obs is still returned when it could be built (so that the count
    table can be matched against it), and is None when the design columns themselves are unusable.
    Checks that would only repeat an earlier problem in other words are skipped.
    """
    n_before = len(problems.problems)
    obs, names = rename_sheet_columns(sheet, settings, path, problems)
    if obs is None:
        return None, None
    for column in [c for c in CANONICAL if c in obs]:
        _check_text_column(obs, column, names, path, problems)
    duplicated = obs["sample"].duplicated(keep=False)
    originals = sheet.attrs.get("stripped", {})
    sample_column = names["sample"]
    collided = [line for line in obs.index[duplicated.to_numpy()] if (line, sample_column) in originals]
    if collided:
        groups = defaultdict(list)
        for line in obs.index[duplicated.to_numpy()]:
            groups[obs.loc[line, "sample"]].append(line)
        shown = "; ".join(
            " and ".join(f"'{originals.get((line, sample_column), value)}' (line {line})" for line in lines)
            for value, lines in groups.items()
            if any(line in collided for line in lines)
        )
        problems.add(
            f"{path}: sample ids {shown} are the same once surrounding whitespace is stripped; they "
            "may be different samples: make the ids distinct (or remove the duplicate row)."
        )
        return None, None
    if duplicated.any():
        problems.add(
            f"{path}: sample id(s) {_listing(sorted(set(obs['sample'][duplicated])))} appear more than "
            f"once ({_rows(duplicated)}); each sample (blood draw) needs one row."
        )
        return None, None
    if len(problems.problems) > n_before:
        return None, None  # ids with spaces, case variants or gaps: matching them would only echo the problem
    obs = obs.assign(**{LINE: obs.index}).set_index("sample")
    obs.index.name = None
    excluded = [s for s in settings.exclude_samples if s in obs.index]
    obs = obs.drop(index=excluded)
    n_covariate = len(problems.problems)
    obs, dropped, warnings = _covariates(obs, settings, path, problems)
    covariates_ok = len(problems.problems) == n_covariate
    record = {
        "levels": None,
        "excluded_samples": excluded,
        "dropped_incomplete": dropped,
        "covariate_warnings": warnings,
    }
    n_design = len(problems.problems)
    if settings.design == "association":
        from .validate_association import check_association

        record["levels"] = check_association(obs, settings, path, problems, check_rank=covariates_ok)
        return obs, record
    from .validate_association import conflicting_keys

    for message in conflicting_keys(settings):  # association keys in a trial
        problems.add(message)
    record["levels"] = _check_design(obs, settings, names, path, problems)
    if settings.outcomes or settings.dose:
        from .validate_outcomes import type_outcomes

        obs, record["outcome_notes"] = type_outcomes(
            obs, settings, record["levels"], path, lambda mask: _rows(mask, obs[LINE]), problems.add
        )
    if covariates_ok and len(problems.problems) == n_design:
        _check_rank(obs, record["levels"], list(dict.fromkeys(settings.covariates)), path, problems)
    return obs, record


# ----------------------------------------------------------------------------------------------
# Count table
# ----------------------------------------------------------------------------------------------

SCAN_CELLS = 1 << 21  # cells per block of samples in the value checks (16 MB of float64)


@dataclass
class _Cells:
    """Cells of one kind found by the value scan: how many, and the first in file order as
    (gene position, sample position), i.e. the earliest gene, then the leftmost sample."""

    count: int = 0
    first: tuple[int, int] | None = None

    def add(self, mask: np.ndarray, rows: np.ndarray) -> None:
        """Count the True cells of ``mask`` (a samples x genes block of the samples ``rows``)."""
        found = int(np.count_nonzero(mask))
        if not found:
            return
        self.count += found
        gene = int(mask.any(axis=0).argmax())
        cell = (gene, int(rows[mask[:, gene].argmax()]))
        self.first = cell if self.first is None else min(self.first, cell)


@dataclass
class _ValueScan:
    """What one pass over the checked samples found (see :func:`_scan_values`)."""

    non_finite: _Cells
    negative: _Cells
    fractional: _Cells
    above_log2_max: _Cells
    totals: np.ndarray  # per checked sample
    maximum: float


def _row_blocks(rows: np.ndarray, n_genes: int) -> Iterator[np.ndarray]:
    """``rows`` in consecutive pieces of about ``SCAN_CELLS`` cells."""
    size = max(1, SCAN_CELLS // max(n_genes, 1))
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _block(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]``: a view when the rows are consecutive, else a copy of just this block."""
    if rows[-1] - rows[0] == len(rows) - 1:
        return values[rows[0] : rows[-1] + 1]
    return values[rows]


def _scan_values(values: np.ndarray, rows: np.ndarray, mode: str) -> _ValueScan:
    """One pass over the samples ``rows`` of a samples x genes array, a block of samples at a time,
    so that no mask or temporary is the size of the whole matrix. After the first non-finite
    value only non-finite values are counted (the other findings would be meaningless)."""
    scan = _ValueScan(_Cells(), _Cells(), _Cells(), _Cells(), np.zeros(len(rows)), -np.inf)
    done = 0
    for block_rows in _row_blocks(rows, values.shape[1]):
        block = _block(values, block_rows)
        scan.non_finite.add(~np.isfinite(block), block_rows)
        if not scan.non_finite.count:
            scan.fractional.add(block != np.round(block), block_rows)
            if mode == "counts":
                scan.negative.add(block < 0, block_rows)
            else:
                scan.above_log2_max.add(block > LOG2_MAX, block_rows)
            scan.totals[done : done + len(block_rows)] = block.sum(axis=1)
            scan.maximum = max(scan.maximum, float(block.max()))
        done += len(block_rows)
    return scan


def _first_cell(table: CountTable, cells: _Cells, path: Path) -> str:
    """ "gene 'X' (line N), sample 'Y'" for the first cell found."""
    gene_i, sample_i = cells.first
    lines = row_lines(path, table.genes, gene_i) if table.layout == "genes_by_samples" else []
    where = f" ({line_hint(lines)})" if lines else ""
    symbol = (
        f" ({table.alt_column} '{table.alt_ids[gene_i]}')"
        if table.alt_ids is not None and table.alt_kind == "symbol"
        else ""
    )
    return f"gene '{table.genes[gene_i]}'{symbol}{where}, sample '{table.samples[sample_i]}'"


def _first_value(table: CountTable, cells: _Cells) -> float:
    gene_i, sample_i = cells.first
    return float(table.values[sample_i, gene_i])


def _check_values(
    table: CountTable, rows: np.ndarray, mode: str, path: Path, problems: ProblemList, non_integer: str
) -> dict | None:
    """Counts must be finite non-negative integers; log2 values must be finite and log-scale.

    Only the samples at positions ``rows`` are checked (excluded samples are not). In counts mode,
    non-integer values (estimated counts of Salmon/RSEM/kallisto) are rounded to the nearest
    integer in place when ``non_integer == "round"``, as DESeq2 users do (``round()``, or tximport's
    ``DESeqDataSetFromTximport``), unless every sample sums to 1e6 (TPM/CPM, always refused).
    Returns what was rounded (``None`` if nothing was).
    """
    if len(rows) == 0 or len(table.genes) == 0:
        return None
    scan = _scan_values(table.values, rows, mode)
    if scan.non_finite.count:
        problems.add(
            f"{path}: {scan.non_finite.count} missing or non-finite value(s) (empty, NA, NaN or Inf), "
            f"first at {_first_cell(table, scan.non_finite, path)}; every cell needs a number."
        )
        return None
    integral = scan.fractional.count == 0
    rounded = None
    if mode == "counts":
        if scan.negative.count:
            problems.add(
                f"{path}: {scan.negative.count} negative count(s), first at "
                f"{_first_cell(table, scan.negative, path)} ({_first_value(table, scan.negative):g}); "
                "counts cannot be negative. If these are log-scale values, set `input: log2_expression`."
            )
        totals = scan.totals
        if not integral:
            first = f"first at {_first_cell(table, scan.fractional, path)} ({_first_value(table, scan.fractional):g})"
            if np.all(np.abs(scan.totals - TPM_TOTAL) <= 0.01 * TPM_TOTAL):
                what = (
                    f"every sample's values sum to {TPM_TOTAL:,.0f}, so these look like TPM (or CPM), not raw "
                    "counts. ctra needs raw integer counts (featureCounts/HTSeq, or estimated counts, which "
                    "it rounds); with TPM only, give log2(TPM + 1) and set `input: log2_expression`"
                )
                problems.add(f"{path}: {scan.fractional.count} non-integer value(s), {first}; {what}.")
            elif non_integer != "round":
                what = (
                    "these look like estimated counts (RSEM/Salmon/kallisto) or normalized values, not raw "
                    "counts (TPM/CPM would sum to 1,000,000 per sample; these do not). Give raw integer "
                    "counts, set `non_integer_counts: round` (the default) to round estimated counts to "
                    "the nearest integer as DESeq2 users do, or give log2-scale values and set "
                    "`input: log2_expression`"
                )
                problems.add(
                    f"{path}: {scan.fractional.count} non-integer value(s), {first}; {what} "
                    "(the config has `non_integer_counts: error`)."
                )
            elif not scan.negative.count:
                first_cell = _first_cell(table, scan.fractional, path)
                first_value = _first_value(table, scan.fractional)
                totals, samples = _round_in_place(table.values, rows)
                rounded = {
                    "policy": "round",
                    "cells": int(scan.fractional.count),
                    "samples": int(samples),
                    "first": f"{first_cell} ({first_value:g} -> {np.rint(first_value):g})",
                }
        zero = rows[totals == 0]
        if len(zero):
            after = " once rounded" if rounded else ""
            problems.add(
                f"{path}: sample(s) {_listing([table.samples[i] for i in zero])} have zero counts for "
                f"every gene{after} (a failed or empty library); remove them (or list them in "
                "`exclude_samples`)."
            )
    elif integral and scan.maximum > LOG2_LOOKS_LIKE_COUNTS:
        problems.add(
            f"{path}: `input: log2_expression` but the values are integers up to {scan.maximum:g}; "
            "these look like raw counts: set `input: counts`."
        )
    elif scan.maximum > LOG2_MAX:
        problems.add(
            f"{path}: `input: log2_expression` but values reach {scan.maximum:g} (first above "
            f"{LOG2_MAX:g} at {_first_cell(table, scan.above_log2_max, path)}); log2 expression stays "
            "below ~25. Transform them (e.g. log2(TPM + 1)) or, for raw counts, set `input: counts`."
        )
    return rounded


def _round_in_place(values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Round the samples ``rows`` to the nearest integer (half to even, as R's round()), a block at a
    time; returns their new totals and how many samples had a non-integer value."""
    totals = np.zeros(len(rows))
    changed = 0
    done = 0
    for block_rows in _row_blocks(rows, values.shape[1]):
        block = _block(values, block_rows)
        fractional = (block != np.round(block)).any(axis=1)
        changed += int(np.count_nonzero(fractional))
        is_view = np.shares_memory(block, values)
        np.rint(block, out=block)
        if not is_view:
            values[block_rows] = block
        totals[done : done + len(block_rows)] = block.sum(axis=1)
        done += len(block_rows)
    return totals, changed


def _match_samples(
    samples: list[str],
    obs: pd.DataFrame,
    ignored: set[str],
    counts_path: Path,
    samples_path: Path,
    problems: ProblemList,
    layout: str = "genes_by_samples",
    why: str = "",
) -> None:
    in_counts = set(samples)
    missing = [s for s in obs.index if s not in in_counts]
    extra = [s for s in samples if s not in obs.index and s not in ignored]
    unit = "row" if layout == "samples_by_genes" else "column"
    if missing and unit == "row" and not (set(obs.index) & in_counts):  # the layout may be the wrong one
        problems.add(
            f"{counts_path}: no sample id of the sheet is a row of the count table, read with one row "
            f"per sample (layout: {layout}; {why or 'the default'}); if the table has one column per "
            "sample, set `layout: genes_by_samples`."
        )
        return
    if missing:
        in_lines = obs.loc[missing, LINE].tolist()
        near = {s: c for s in missing for c in samples if level_key(c) == level_key(s)}
        hint = (
            "; the count table has "
            + ", ".join(f"'{c}' for '{s}'" for s, c in list(near.items())[:3])
            + " (ids differ in case or spacing)"
            if near
            else ""
        )
        problems.add(
            f"{samples_path}: {len(missing)} sample(s) of the sheet have no {unit} in {counts_path}: "
            f"{_listing(missing)} ({_at(in_lines)}){hint}."
        )
    if extra:
        problems.add(
            f"{counts_path}: {len(extra)} {unit}(s) are not in the sample sheet {samples_path}: "
            f"{_listing(extra)}; add them to the sheet or to `exclude_samples`."
        )


def merge_gene_rows(
    table: CountTable, gene_table: pd.DataFrame, mode: str, path: Path
) -> tuple[CountTable, pd.DataFrame]:
    """Rename matched rows to the gene-set names, summing several rows of one gene (counts only).

    Works in place: a merged gene's sum goes to its first row and its other rows are dropped, so
    only those few rows are touched. Returns the table and a var frame with ``input_ids``,
    ``group`` and ``direction``.
    """
    ids = pd.Index(table.genes, dtype=object)
    match = match_genes(ids, gene_table, str(path), table.alt_ids, table.alt_kind)
    gene_for_row = match.gene_for_row
    merged = {g: rows for g, rows in match.rows_for_gene.items() if len(rows) > 1}
    if merged and mode != "counts":
        lines = locate_rows(path, [r for rows in merged.values() for r in rows], limit=1)
        shown = "; ".join(
            f"{g} <- " + " + ".join(f"'{r}'" + (f" ({line_hint(lines[r])})" if lines.get(r) else "") for r in rows)
            for g, rows in list(merged.items())[:5]
        )
        raise InputError(
            f"{path}: several rows map to one gene of the gene set after alias mapping ({shown}); "
            "log2 values cannot be merged by summing: keep one row per gene."
        )
    new_ids = ids.map(lambda row: gene_for_row.get(row, row))
    duplicated = new_ids.duplicated(keep=False) & ~new_ids.isin(list(merged))
    if duplicated.any():
        repeated = sorted(set(ids[duplicated]))
        lines = locate_rows(path, repeated[:5])
        shown = ", ".join(f"'{i}'" + (f" ({line_hint(lines[i])})" if lines.get(i) else "") for i in repeated[:5])
        more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        raise InputError(
            f"{path}: {len(repeated)} gene id(s) appear on more than one row: {shown}{more}; give "
            "each gene one row (ambiguous rows are not summed silently)."
        )
    input_ids = np.asarray(ids, dtype=object).copy()
    keep = np.ones(len(ids), dtype=bool)
    for positions in (np.flatnonzero(ids.isin(rows)) for rows in merged.values()):
        table.values[:, positions[0]] = table.values[:, positions].sum(axis=1)
        input_ids[positions[0]] = ";".join(ids[positions])  # in file order
        keep[positions[1:]] = False
    table.genes = np.asarray(new_ids, dtype=object)
    table.keep_genes(keep)
    info = gene_table.set_index("gene")
    var = pd.DataFrame(index=pd.Index(table.genes, dtype=object))
    var["input_ids"] = input_ids[keep]
    var["group"] = info["group"].reindex(var.index).fillna("").to_numpy()
    var["direction"] = info["direction"].reindex(var.index).fillna(0).astype(int).to_numpy()
    var["matched_by"] = pd.Series(match.matched_by, dtype=object).reindex(var.index).fillna("").to_numpy()
    return table, var


def _check_set_coverage(var: pd.DataFrame, gene_set: pd.DataFrame, kind: str, path: Path) -> None:
    found = set(var.index[var["group"].isin(SCORE_GROUPS)])
    missing = [g for g in gene_set["gene"] if g not in found]
    if len(found) < MIN_FRACTION_SET_GENES * len(gene_set):
        looks = "Ensembl gene ids" if kind == "ensembl" else "gene symbols"
        example = ", ".join(var.index[:3])
        raise InputError(
            f"{path}: only {len(found)} of {len(gene_set)} gene-set genes were found (the ids look "
            f"like {looks}, e.g. {example}); missing: {', '.join(missing)}. Check that the gene "
            "column holds human HGNC symbols or human Ensembl gene ids."
        )


def _check_genes(
    table: CountTable, gene_set: pd.DataFrame, markers: pd.DataFrame, mode: str, path: Path
) -> tuple[CountTable, pd.DataFrame, str, dict | None]:
    gene_table = pd.concat([gene_set, markers[~markers["gene"].isin(gene_set["gene"])]], ignore_index=True)
    kind = id_kind(pd.Index(table.genes, dtype=object), str(path))
    par = _par_y_rows(table, mode) if kind == "ensembl" else None
    table, var = merge_gene_rows(table, gene_table, mode, path)
    _check_set_coverage(var, gene_set, kind, path)
    return table, var, kind, par


def _par_y_rows(table: CountTable, mode: str) -> dict | None:
    """GENCODE's ``_PAR_Y`` rows: the chrY copies of the pseudoautosomal genes (the reads of a PAR gene go
    to either copy; most Y copies are all zero). Counts: each is added to its chrX gene's row (the
    same id without the suffix), so the gene's count covers both copies, and removed; a Y copy whose
    chrX row is missing becomes that gene's row. Log2 values cannot be summed: the Y rows are dropped.
    Works in place on the few rows concerned. Returns what was done (None without such rows)."""
    genes = table.genes
    par = np.flatnonzero(pd.Series(genes, dtype=object).str.endswith(PAR_Y_SUFFIX).to_numpy(dtype=bool))
    if not par.size:
        return None
    position = {g: i for i, g in enumerate(genes)}
    by_base = {strip_version(g): i for i, g in enumerate(genes) if not str(g).endswith(PAR_Y_SUFFIX)}
    keep = np.ones(len(genes), dtype=bool)
    nonzero = int(np.count_nonzero((table.values[:, par] != 0).any(axis=0)))
    merged = renamed = 0
    for i in par:
        base = str(genes[i])[: -len(PAR_Y_SUFFIX)]
        x = position.get(base, by_base.get(strip_version(base)))
        if mode == "counts" and x is not None:
            table.values[:, x] += table.values[:, i]
            merged += 1
        elif mode == "counts":
            genes[i] = base
            renamed += 1
            continue
        keep[i] = False
    table.keep_genes(keep)
    return {
        "rows": int(par.size),
        "with_reads": nonzero,
        "merged_into_chrX": merged,
        "renamed": renamed,
        "dropped": int(par.size) - merged - renamed if mode != "counts" else 0,
    }


def _input_notes(table: CountTable, var: pd.DataFrame, kind: str, path: Path) -> list[str]:
    notes = []
    if table.layout == "samples_by_genes":
        if table.annotation:
            notes.append(
                f"{path.name}: {len(table.annotation)} column(s) set aside as sample-sheet columns, not genes: "
                f"{_listing(table.annotation, 12)}."
            )
    elif table.annotation:
        notes.append(
            f"{path.name}: {len(table.annotation)} annotation column(s) beside the gene ids, not samples: "
            f"{', '.join(repr(c) for c in table.annotation)}."
        )
    matching = _matching_note(table, var, kind)
    if matching:
        notes.append(f"{path.name}: {matching}")
    return notes


def _matching_note(table: CountTable, var: pd.DataFrame, kind: str) -> str | None:
    """How the genes of the set were found, when the table has a second id column."""
    if table.alt_ids is None or table.alt_kind == kind:
        return None
    by = var.loc[var["matched_by"] != "", "matched_by"].value_counts()
    fallback = [g for g in var.index[var["matched_by"] == "symbol"]]
    return (
        f"genes of the gene set and markers matched on two id columns, Ensembl id first: "
        f"{int(by.get('ensembl_id', 0))} by Ensembl id, {int(by.get('symbol', 0))} by symbol "
        f"(column '{table.alt_column if table.alt_kind == 'symbol' else 'the first column'}')"
        + (f" ({', '.join(fallback[:10])}{' ...' if len(fallback) > 10 else ''})" if fallback else "")
        + "; genes_used.tsv records which (column matched_by)."
    )


# ----------------------------------------------------------------------------------------------
# One study
# ----------------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _layout(
    layout: str,
    counts_path: Path,
    counts_sheet,
    same_file: bool,
    sheet: pd.DataFrame | None,
    sample_column: str,
) -> tuple[str, str]:
    """The count table's layout and why: the config's `layout`, else samples_by_genes when the sample
    sheet is the count table itself or when the sheet's sample ids label the table's rows."""
    if layout != "auto":
        return layout, "`layout` in the config"
    if same_file:
        return "samples_by_genes", "the sample sheet is this same file"
    if sheet is None or sample_column not in sheet.columns:
        return "genes_by_samples", "the default"
    try:
        return detect_layout(counts_path, counts_sheet, set(sheet[sample_column]))
    except InputError:
        return "genes_by_samples", "the default"  # the reader reports the file's problem


def _worksheets(
    sheet: str | int | dict | None, samples_path: Path, counts_path: Path, problems: ProblemList
) -> tuple[str | int | None, str | int | None]:
    """The worksheet to read from each file: `sheet: <name or position>` is the sample sheet's (and the
    count table's when both are one workbook); `sheet: {samples: ..., counts: ...}` names each."""
    if sheet is None:
        return None, None
    if isinstance(sheet, dict):
        chosen = {"samples": sheet.get("samples"), "counts": sheet.get("counts")}
    else:
        chosen = {"samples": sheet, "counts": sheet if counts_path == samples_path else None}
    for key, path in (("samples", samples_path), ("counts", counts_path)):
        if chosen[key] is not None and not is_excel(path):
            problems.add(
                f"config: `sheet` chooses worksheet {chosen[key]!r} of the {key} file, but {path} is not an "
                "Excel workbook (.xlsx); remove `sheet` (TSV/CSV files have one table)."
            )
            chosen[key] = None
    return chosen["samples"], chosen["counts"]


def validate_study(
    study_name: str, settings: ValidateSettings, gene_set: pd.DataFrame, markers: pd.DataFrame
) -> ad.AnnData:
    """Read and check everything for one study; return samples x genes AnnData of raw values.

    The returned object carries the canonical obs columns, ``var`` gene annotation, and in ``uns``
    the level order, what was excluded or merged, input checksums and the stage's settings as it
    received them. All problems found are raised together. Its X is the array the count table was
    read into (checked, merged and reordered in place), not a copy.
    """
    counts_path, samples_path = Path(settings.counts), Path(settings.samples)
    problems = ProblemList()
    samples_sheet, counts_sheet = _worksheets(settings.sheet, samples_path, counts_path, problems)
    same_file = _same_file(counts_path, samples_path)
    sample_column = settings.columns.sample
    # a wide table that is its own sample sheet: only the columns the study names are sheet columns
    sheet_columns = (
        set(settings.columns.named().values())
        | {"sample", "participant", "arm", "time"}
        | set(settings.covariates)
        | set(settings.predictors)
        | ({settings.time} if settings.time else set())
        | set(settings.outcomes)
        | ({settings.dose} if settings.dose else set())
        if same_file
        else None
    )
    sheet = _attempt(read_sample_sheet, samples_path, samples_sheet, sheet_columns, problems=problems)
    layout, why = _layout(settings.layout, counts_path, counts_sheet, same_file, sheet, sample_column)
    if layout == "samples_by_genes":
        not_genes = set(sheet.columns) if sheet is not None else (sheet_columns or set())
        table = _attempt(
            read_wide_table,
            counts_path,
            counts_sheet,
            sample_column if same_file else None,
            not_genes,
            problems=problems,
        )
    else:
        table = _attempt(read_count_table, counts_path, counts_sheet, problems=problems)
    obs, record = build_obs(sheet, settings, samples_path, problems) if sheet is not None else (None, None)
    config_excluded = list(settings.exclude_samples)
    if table is not None and len(table.genes) == 0:
        problems.add(f"{counts_path}: has a header but no gene rows.")
        table = None
    genes = None
    rounded = None
    if table is not None:
        ignored = set(config_excluded + (record["dropped_incomplete"] if record else []))
        in_counts = set(table.samples)
        if obs is not None:
            _match_samples(table.samples, obs, ignored, counts_path, samples_path, problems, layout, why)
        if sheet is not None and obs is not None:
            sheet_samples = set(sheet[sample_column])
            unknown = [s for s in config_excluded if s not in in_counts and s not in sheet_samples]
            if unknown:
                problems.add(
                    f"config: `exclude_samples` names sample(s) found in neither {samples_path} nor "
                    f"{counts_path}: {_listing(unknown)}."
                )
        checked = np.array(
            [i for i, s in enumerate(table.samples) if s not in ignored and (obs is None or s in obs.index)],
            dtype=np.intp,
        )
        rounded = _check_values(table, checked, settings.input, counts_path, problems, settings.non_integer_counts)
        genes = _attempt(_check_genes, table, gene_set, markers, settings.input, counts_path, problems=problems)
    problems.raise_if_any()
    assert obs is not None and record is not None and genes is not None
    table, var, kind, par = genes
    position = {s: i for i, s in enumerate(table.samples)}
    table.take_samples([position[s] for s in obs.index])
    obs = obs.drop(columns=[LINE])
    adata = ad.AnnData(X=table.values, obs=obs, var=var)
    adata.uns["levels"] = record["levels"]
    adata.uns["excluded_samples"] = record["excluded_samples"]
    adata.uns["dropped_incomplete"] = record["dropped_incomplete"]
    adata.uns["covariate_warnings"] = record["covariate_warnings"]
    if "outcome_notes" in record:  # trials with `outcomes:` / `dose:` only (other studies' uns unchanged)
        adata.uns["outcome_notes"] = record["outcome_notes"]
        for note in record["outcome_notes"]:
            log.info("%s", note)
    adata.uns["merged_genes"] = json.dumps({g: ids for g, ids in zip(var.index, var["input_ids"]) if ";" in ids})
    # stored as JSON text: h5py would read '/' in dict keys (file paths) as nested groups
    adata.uns["input_checksums"] = json.dumps(
        {str(counts_path): sha256sum(counts_path), str(samples_path): sha256sum(samples_path)}
    )
    adata.uns["id_kind"] = kind
    notes = _input_notes(table, var, kind, counts_path)
    notes.insert(
        0,
        f"{counts_path.name}: read as {'one row per sample, genes as columns' if layout == 'samples_by_genes' else 'one row per gene, samples as columns'} "
        f"(layout: {layout}; {why}).",
    )
    adata.uns["layout"] = layout
    stripped = len(sheet.attrs.get("stripped", {})) + int(sheet.attrs.get("stripped_headers", 0))
    if stripped:
        notes.insert(
            0,
            f"{samples_path.name}: surrounding whitespace stripped from {stripped} cell(s)"
            f"{' and column name(s)' if sheet.attrs.get('stripped_headers') else ''} of the sample sheet "
            f"(e.g. {_listing(list(sheet.attrs.get('stripped', {}).values())[:3] or ['a column name'], 3)}).",
        )
    for path, chosen in {counts_path: counts_sheet, samples_path: samples_sheet}.items():
        if is_excel(path):
            notes.insert(
                0,
                f"{path.name}: read from Excel, "
                f"{'the first worksheet' if chosen is None else f'worksheet {chosen!r}'}.",
            )
    if table.stripped_names:
        notes.insert(
            0, f"{counts_path.name}: surrounding whitespace stripped from {table.stripped_names} sample name(s)."
        )
    adata.uns["whitespace_stripped"] = {"sample_sheet_cells": stripped, "count_table_names": table.stripped_names}
    if par:
        adata.uns["par_y_rows"] = par
        what = (
            f"added to their chrX gene's counts ({par['merged_into_chrX']}) and removed"
            + (f", {par['renamed']} without a chrX row kept as that gene" if par["renamed"] else "")
            if settings.input == "counts"
            else "dropped (log2 values cannot be summed)"
        )
        notes.append(
            f"{counts_path.name}: {par['rows']} GENCODE _PAR_Y row(s) (chrY copies of pseudoautosomal genes, "
            f"{par['with_reads']} with any reads) {what}."
        )
    if rounded:
        # recorded for normalize (uns is carried into normalized.h5ad) and the report's Methods
        adata.uns["non_integer_counts"] = rounded
        notes.append(
            f"{counts_path.name}: {rounded['cells']} non-integer count(s) in {rounded['samples']} "
            f"sample(s) (estimated counts) rounded to the nearest integer (`non_integer_counts: round`), "
            f"as DESeq2 does for estimated counts; first at {rounded['first']}."
        )
    for note in notes:
        log.info("%s", note)
    # what was done to the inputs as read (annotation columns, id matching, ...): log and report Methods
    adata.uns["input_notes"] = notes
    adata.uns["study"] = study_name
    adata.uns["study_config"] = json.dumps(settings.config, sort_keys=True)
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
