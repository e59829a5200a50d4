"""Gene sets as data, and matching their genes to the ids a count table uses.

A gene-set file is a TSV with columns ``gene, group, direction`` and optionally ``symbol,
ensembl_id, entrez_id, aliases`` (``;``-separated). ``gene`` is the name shown in every output;
a row of the input table matches it by Ensembl id (any version suffix stripped) when the table uses
Ensembl ids, otherwise by ``gene``, ``symbol`` or an alias, case-insensitively. A table with both
kinds of id (nf-core/rnaseq's ``gene_id`` + ``gene_name``) is matched on both: Ensembl id first, the
symbol for genes whose Ensembl id is not in the table (an id retired or renumbered between
annotation releases, or a gene of the set without one); which one matched is recorded per gene.
Several input rows matching one gene (e.g. both ``IL8`` and ``CXCL8``) are merged by the caller and
recorded.
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
ENSEMBL_PATTERN = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?(_PAR_Y)?$")  # GENCODE: chrY copies of PAR genes
PAR_Y_SUFFIX = "_PAR_Y"
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
        raise InputError(
            f"{path}: gene-set file lacks column(s) {', '.join(missing)} (has {', '.join(table.columns)})."
        )
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    problems = []
    for row, record in enumerate(table.itertuples(index=False), start=2):
        if record.group not in allowed_groups:
            problems.append(
                f"{path}: line {row}, column 'group': '{record.group}' is not one of {', '.join(allowed_groups)}."
            )
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
    """``ENSG00000002586.20`` -> ``ENSG00000002586``; GENCODE's chrY copy ``ENSG00000002586.20_PAR_Y`` keeps
    its suffix (``ENSG00000002586_PAR_Y``): it is not the chrX gene's row."""
    if not looks_like_ensembl(gene_id):
        return gene_id
    par = PAR_Y_SUFFIX if gene_id.endswith(PAR_Y_SUFFIX) else ""
    return gene_id.split(".", 1)[0].removesuffix(PAR_Y_SUFFIX) + par


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
    raise InputError(
        f"{source}: gene ids mix Ensembl ids ({n_ensembl}, e.g. {examples_e}) and other ids "
        f"({len(ids) - n_ensembl}, e.g. {examples_s}); use one kind of id for all rows."
    )


@dataclass
class GeneMatch:
    """Which input rows stand for which gene of the set (several rows = merged)."""

    kind: str
    rows_for_gene: dict[str, list[str]] = field(default_factory=dict)
    matched_by: dict[str, str] = field(default_factory=dict)  # gene -> "ensembl_id" or "symbol"

    @property
    def gene_for_row(self) -> dict[str, str]:
        return {row: gene for gene, rows in self.rows_for_gene.items() for row in rows}


def _candidate_names(record: pd.Series, kind: str) -> list[str]:
    """Every name that stands for this gene in a table of the given id kind."""
    if kind == "ensembl":
        return [e.strip().upper() for e in record["ensembl_id"].split(";") if e.strip()]
    aliases = [a.strip().upper() for a in record["aliases"].split(";") if a.strip()]
    return [record["gene"].upper(), *([record["symbol"].upper()] if record["symbol"] else []), *aliases]


def match_genes(input_ids: pd.Index, genes: pd.DataFrame, source: str, alt_ids=None, alt_kind: str = "") -> GeneMatch:
    """Find the input rows for each gene of ``genes`` (a gene-set table, markers included).

    A gene takes every input row under any of its names (its Ensembl ids, or its name, symbol and
    aliases), so a table with both IL8 and CXCL8 rows has them merged by the caller. An input row
    claimed by two genes is an error naming both, since counting it twice would be wrong.

    ``alt_ids`` (aligned with ``input_ids``) is a second id column of kind ``alt_kind``; when it is
    the other kind, genes are matched by Ensembl id first and by symbol where that finds no row
    (rows already matched by Ensembl id are not taken again).
    """
    kind = id_kind(input_ids, source)
    rows = [str(r) for r in input_ids]
    keys: dict[str, list[str]] = {}
    if kind == "ensembl":
        keys["ensembl"] = [strip_version(r).upper() for r in rows]
    else:
        keys["symbol"] = [r.upper() for r in rows]
    if alt_ids is not None and alt_kind in ("ensembl", "symbol") and alt_kind != kind:
        alt = ["" if a is None or pd.isna(a) else str(a).strip() for a in alt_ids]
        keys[alt_kind] = (
            [strip_version(a).upper() if looks_like_ensembl(a) else "" for a in alt]
            if alt_kind == "ensembl"
            else [a.upper() for a in alt]
        )
    match = GeneMatch(kind=kind)
    taken: set[str] = set()
    for by, label in (("ensembl", "ensembl_id"), ("symbol", "symbol")):
        if by not in keys:
            continue
        lookup: dict[str, list[str]] = {}
        for row_id, key in zip(rows, keys[by]):
            if key and row_id not in taken:
                lookup.setdefault(key, []).append(row_id)
        for _, record in genes.iterrows():
            if record["gene"] in match.rows_for_gene:
                continue
            found = sorted({row for name in _candidate_names(record, by) for row in lookup.get(name, [])})
            if found:
                match.rows_for_gene[record["gene"]] = found
                match.matched_by[record["gene"]] = label
        taken |= {row for found in match.rows_for_gene.values() for row in found}
    claimed: dict[str, str] = {}
    for gene, found in match.rows_for_gene.items():
        for row in found:
            if row in claimed:
                raise InputError(
                    f"{source}: row '{row}' matches two genes of the gene set "
                    f"({claimed[row]} and {gene}); fix the gene-set aliases."
                )
            claimed[row] = gene
    return match
