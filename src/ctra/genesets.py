"""Gene sets as data, and matching their genes to the ids a count table uses.

A gene-set file is a TSV with columns ``gene, group, direction`` and optionally ``symbol,
ensembl_id, entrez_id, aliases`` (``;``-separated). ``gene`` is the name shown in every output;
a row of the input table matches it by Ensembl id (any version suffix stripped) when the table uses
Ensembl ids, otherwise by ``gene``, ``symbol`` or an alias, case-insensitively. Several input rows
matching one gene (e.g. both ``IL8`` and ``CXCL8``) are merged by the caller and recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import InputError

SCORE_GROUPS = ("inflammatory", "antiviral", "antibody")
MARKER_GROUP = "marker"
SCORE_NAMES = ("ctra", *SCORE_GROUPS)  # the columns of scores.tsv and the `score` column of every table
ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
REQUIRED_COLUMNS = ("gene", "group", "direction")
OPTIONAL_COLUMNS = ("symbol", "ensembl_id", "entrez_id", "aliases")


def load_gene_set(path: str | Path, allowed_groups: tuple[str, ...] = SCORE_GROUPS) -> pd.DataFrame:
    """Read and check a gene-set TSV; returns it with all optional columns present (as '')."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: gene-set file not found.")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: gene-set file lacks column(s) {', '.join(missing)} "
                         f"(has {', '.join(table.columns)}).")
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    problems = []
    for row, record in enumerate(table.itertuples(index=False), start=2):
        if record.group not in allowed_groups:
            problems.append(f"{path}: line {row}, column 'group': '{record.group}' is not one of "
                            f"{', '.join(allowed_groups)}.")
        if record.direction not in ("1", "-1", "+1"):
            problems.append(f"{path}: line {row}, column 'direction': '{record.direction}' must be 1 or -1.")
    duplicated = table["gene"][table["gene"].str.upper().duplicated()].tolist()
    if duplicated:
        problems.append(f"{path}: gene(s) listed twice: {', '.join(duplicated)}.")
    if problems:
        raise InputError(problems)
    table["direction"] = table["direction"].astype(int)
    return table[[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]]


def set_genes(usage: pd.DataFrame, score: str = "ctra") -> pd.DataFrame:
    """The rows of genes_used.tsv that a score is made of: the used genes of the set (``ctra``), or of
    one group (a subscore); markers never."""
    used = usage[usage["used"].astype(bool) & (usage["group"] != MARKER_GROUP)]
    return used if score == "ctra" else used[used["group"] == score]


def marker_genes(usage: pd.DataFrame) -> list[str]:
    """The used leukocyte markers (the models adjust for their VST)."""
    return usage.loc[(usage["group"] == MARKER_GROUP) & usage["used"].astype(bool), "gene"].tolist()


def looks_like_ensembl(gene_id: str) -> bool:
    return bool(ENSEMBL_PATTERN.match(gene_id))


def strip_version(gene_id: str) -> str:
    return gene_id.split(".", 1)[0] if looks_like_ensembl(gene_id) else gene_id


def id_kind(ids: pd.Index, source: str) -> str:
    """'ensembl' or 'symbol'; a table mixing the two is refused (mapping would be ambiguous)."""
    is_ensembl = ids.to_series().map(looks_like_ensembl)
    n_ensembl = int(is_ensembl.sum())
    if n_ensembl == 0:
        return "symbol"
    if n_ensembl == len(ids):
        return "ensembl"
    examples_e = ", ".join(ids[is_ensembl.to_numpy()][:3])
    examples_s = ", ".join(ids[~is_ensembl.to_numpy()][:3])
    raise InputError(f"{source}: gene ids mix Ensembl ids ({n_ensembl}, e.g. {examples_e}) and other ids "
                     f"({len(ids) - n_ensembl}, e.g. {examples_s}); use one kind of id for all rows.")


@dataclass
class GeneMatch:
    """Which input rows stand for which gene of the set (several rows = merged)."""

    kind: str
    rows_for_gene: dict[str, list[str]] = field(default_factory=dict)

    @property
    def gene_for_row(self) -> dict[str, str]:
        return {row: gene for gene, rows in self.rows_for_gene.items() for row in rows}


def _candidate_names(record: pd.Series, kind: str) -> list[str]:
    """Every name that stands for this gene in a table of the given id kind."""
    if kind == "ensembl":
        return [e.strip().upper() for e in record["ensembl_id"].split(";") if e.strip()]
    aliases = [a.strip().upper() for a in record["aliases"].split(";") if a.strip()]
    return [record["gene"].upper(), *([record["symbol"].upper()] if record["symbol"] else []), *aliases]


def match_genes(input_ids: pd.Index, genes: pd.DataFrame, source: str) -> GeneMatch:
    """Find the input rows for each gene of ``genes`` (a gene-set table, markers included).

    A gene takes every input row under any of its names (its Ensembl ids, or its name, symbol and
    aliases), so a table with both IL8 and CXCL8 rows has them merged by the caller. An input row
    claimed by two genes is an error naming both, since counting it twice would be wrong.
    """
    kind = id_kind(input_ids, source)
    lookup: dict[str, list[str]] = {}
    for row_id in input_ids:
        key = strip_version(row_id).upper() if kind == "ensembl" else row_id.upper()
        lookup.setdefault(key, []).append(row_id)
    match = GeneMatch(kind=kind)
    for _, record in genes.iterrows():
        rows = sorted({row for name in _candidate_names(record, kind) for row in lookup.get(name, [])})
        if rows:
            match.rows_for_gene[record["gene"]] = rows
    claimed: dict[str, str] = {}
    for gene, rows in match.rows_for_gene.items():
        for row in rows:
            if row in claimed:
                raise InputError(f"{source}: row '{row}' matches two genes of the gene set "
                                 f"({claimed[row]} and {gene}); fix the gene-set aliases.")
            claimed[row] = gene
    return match
