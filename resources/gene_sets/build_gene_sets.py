#!/usr/bin/env python3
"""Build the CTRA gene-set resources from Debian's org.Hs.eg.db SQLite file.

What
----
Writes, next to this script (or into ``--out-dir``):

* ``ctra53.tsv`` -- the 53-gene CTRA set (19 inflammatory, direction +1;
  31 type-I interferon / antiviral and 3 antibody genes, direction -1);
* ``leukocyte_markers.tsv`` -- 8 leukocyte-subset marker genes
  (group ``marker``, direction +1), used as covariates;
* ``SOURCE.tsv`` -- provenance: db path and SHA-256, Debian package version,
  the key/value rows of the db's ``metadata`` table, and any manual fix-ups.

Both gene tables have the columns
``gene group direction symbol ensembl_id entrez_id aliases``.

Why
---
Count tables name genes inconsistently (current HGNC symbols, retired
symbols such as IL8 / IGJ, or Ensembl ids).  Resolving the literature gene
names once, offline, against a versioned annotation db makes the mapping
reproducible and reviewable instead of an ad-hoc lookup at run time.

Rules
-----
* A list name is resolved via the db's official symbols first, then via its
  alias table; no match, or more than one Entrez gene, is a hard error.
* ``aliases`` = list name and official symbol (if they differ) plus every
  alias of that Entrez gene, upper-cased, minus (a) official symbols of other
  genes, (b) names shared with another gene of either set, (c) the row's own
  ``gene``.  Retired names that must stay resolvable (IL8, IGJ, IGLL3,
  IFIT1L) are added manually when the db lacks them, recorded in SOURCE.tsv.

Usage: ``python resources/gene_sets/build_gene_sets.py [--db PATH] [--out-dir DIR]``
(stdlib + pandas only).  Output is deterministic for a given db file.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DEFAULT_DB = "/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
DEBIAN_PACKAGE = "r-bioc-org.hs.eg.db"
COLUMNS = ["gene", "group", "direction", "symbol", "ensembl_id", "entrez_id", "aliases"]

# (group, direction, list names in the CTRA literature order)
CTRA_GROUPS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    (
        "inflammatory",
        1,
        (
            "IL1A",
            "IL1B",
            "IL6",
            "CXCL8",
            "TNF",
            "PTGS1",
            "PTGS2",
            "FOS",
            "FOSB",
            "FOSL1",
            "FOSL2",
            "JUN",
            "JUNB",
            "JUND",
            "NFKB1",
            "NFKB2",
            "REL",
            "RELA",
            "RELB",
        ),
    ),
    (
        "antiviral",
        -1,
        (
            "GBP1",
            "IFI16",
            "IFI27",
            "IFI27L1",
            "IFI27L2",
            "IFI30",
            "IFI35",
            "IFI44",
            "IFI44L",
            "IFI6",
            "IFIH1",
            "IFIT1",
            "IFIT2",
            "IFIT3",
            "IFIT5",
            "IFIT1B",
            "IFITM1",
            "IFITM2",
            "IFITM3",
            "IFITM4P",
            "IFITM5",
            "IFNB1",
            "IRF2",
            "IRF7",
            "IRF8",
            "MX1",
            "MX2",
            "OAS1",
            "OAS2",
            "OAS3",
            "OASL",
        ),
    ),
    ("antibody", -1, ("JCHAIN", "IGLL1", "IGLL3P")),
)
MARKER_GROUPS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("marker", 1, ("CD3D", "CD3E", "CD4", "CD8A", "CD19", "FCGR3A", "NCAM1", "CD14")),
)
# Retired names used by papers / count tables that must resolve to these rows.
REQUIRED_ALIASES: dict[str, str] = {
    "CXCL8": "IL8",
    "JCHAIN": "IGJ",
    "IGLL3P": "IGLL3",
    "IFIT1B": "IFIT1L",
}


@dataclass(frozen=True)
class Db:
    """The parts of org.Hs.eg.db used here, upper-cased names."""

    genes: pd.DataFrame  # _id, entrez_id, symbol
    alias: pd.DataFrame  # _id, alias
    ensembl: pd.DataFrame  # _id, ensembl_id


@dataclass(frozen=True)
class Entry:
    gene: str
    group: str
    direction: int
    db_id: int
    via_alias: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default=DEFAULT_DB, help=f"org.Hs.eg.sqlite (default {DEFAULT_DB})")
    p.add_argument("--out-dir", type=Path, default=here, help="output directory (default: this script's dir)")
    return p.parse_args(argv)


def die(msg: str) -> None:
    sys.exit(f"build_gene_sets: ERROR: {msg}")


def load_db(con: sqlite3.Connection) -> Db:
    genes = pd.read_sql_query(
        "SELECT g._id, g.gene_id AS entrez_id, UPPER(i.symbol) AS symbol "
        "FROM genes g JOIN gene_info i USING (_id) ORDER BY g._id",
        con,
    )
    alias = pd.read_sql_query("SELECT DISTINCT _id, UPPER(alias_symbol) AS alias FROM alias ORDER BY _id, alias", con)
    ensembl = pd.read_sql_query("SELECT DISTINCT _id, ensembl_id FROM ensembl ORDER BY _id, ensembl_id", con)
    return Db(genes=genes, alias=alias, ensembl=ensembl)


def read_metadata(con: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = con.execute("SELECT name, value FROM metadata ORDER BY name").fetchall()
    return [(str(k), str(v)) for k, v in rows]


def debian_version() -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", DEBIAN_PACKAGE], capture_output=True, text=True, check=False
        )
    except OSError:
        return "NA"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "NA"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(name: str, db: Db) -> tuple[int, bool]:
    """Return (_id, resolved_via_alias) for a list name; fail on none/ambiguous."""
    hits = sorted(set(db.genes.loc[db.genes.symbol == name, "_id"]))
    if len(hits) == 1:
        return int(hits[0]), False
    if len(hits) > 1:
        die(f"{name}: official symbol of several Entrez genes {hits}")
    hits = sorted(set(db.alias.loc[db.alias.alias == name, "_id"]))
    if len(hits) == 1:
        return int(hits[0]), True
    if not hits:
        die(f"{name}: not an official symbol nor an alias in the db")
    entrez = sorted(db.genes.loc[db.genes._id.isin(hits), "entrez_id"])
    die(f"{name}: alias of several Entrez genes {entrez}; refusing to guess")
    raise AssertionError  # unreachable


def make_entries(groups: tuple[tuple[str, int, tuple[str, ...]], ...], db: Db) -> list[Entry]:
    out = []
    for group, direction, names in groups:
        for name in names:
            db_id, via_alias = resolve(name, db)
            out.append(Entry(name, group, direction, db_id, via_alias))
    return out


def candidate_names(e: Entry, db: Db) -> set[str]:
    """List name, official symbol and all db aliases of the entry's gene."""
    symbol = db.genes.loc[db.genes._id == e.db_id, "symbol"].iloc[0]
    return {e.gene, symbol} | set(db.alias.loc[db.alias._id == e.db_id, "alias"])


def alias_sets(entries: list[Entry], db: Db) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Filtered aliases per list name, plus SOURCE rows for manual additions."""
    names = {e.gene: candidate_names(e, db) for e in entries}
    owners: dict[str, set[int]] = {}
    for e in entries:
        for n in names[e.gene]:
            owners.setdefault(n, set()).add(e.db_id)
    symbol_owner = db.genes.groupby("symbol")["_id"].apply(set).to_dict()
    manual: list[tuple[str, str]] = []
    result: dict[str, list[str]] = {}
    for e in entries:
        extra = REQUIRED_ALIASES.get(e.gene)
        if extra and extra not in names[e.gene]:
            names[e.gene].add(extra)
            owners.setdefault(extra, set()).add(e.db_id)
            manual.append(("manual_alias", f"{extra}->{e.gene}"))
        keep = sorted(
            n
            for n in names[e.gene]
            if n != e.gene
            and symbol_owner.get(n, {e.db_id}) == {e.db_id}  # (a)
            and owners[n] == {e.db_id}  # (b)
        )
        if extra and extra not in keep:
            die(f"required alias {extra} of {e.gene} is ambiguous in the db")
        result[e.gene] = keep
    return result, manual


def gene_table(entries: list[Entry], aliases: dict[str, list[str]], db: Db) -> pd.DataFrame:
    info = db.genes.set_index("_id")
    ens = db.ensembl.groupby("_id")["ensembl_id"].apply(lambda s: ";".join(sorted(set(s))))
    rows = [
        {
            "gene": e.gene,
            "group": e.group,
            "direction": e.direction,
            "symbol": info.at[e.db_id, "symbol"],
            "ensembl_id": ens.get(e.db_id, ""),
            "entrez_id": info.at[e.db_id, "entrez_id"],
            "aliases": ";".join(aliases[e.gene]),
        }
        for e in entries
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def check_tables(tables: list[pd.DataFrame]) -> None:
    """Every name (gene or alias) must point at exactly one row overall."""
    seen: dict[str, str] = {}
    for df in tables:
        for gene, al in zip(df.gene, df.aliases):
            for n in [gene] + [a for a in al.split(";") if a]:
                if any(c in n for c in "\t;\n") or (n in seen and seen[n] != gene):
                    die(f"name {n!r} of {gene} clashes with {seen.get(n)} or has bad characters")
                seen[n] = gene


def source_rows(
    db_path: Path,
    entries: list[Entry],
    manual: list[tuple[str, str]],
    metadata: list[tuple[str, str]],
    tables: dict[str, pd.DataFrame],
) -> pd.DataFrame:
    rows = [
        ("db_path", str(db_path)),
        ("db_sha256", sha256(db_path)),
        ("debian_package", DEBIAN_PACKAGE),
        ("debian_package_version", debian_version()),
        ("ensembl_source", "org.Hs.eg.db table ensembl (ENSEMBL map, NCBI gene2ensembl)"),
    ]
    rows += [("metadata:" + k, v) for k, v in metadata]
    sym = {g: s for df in tables.values() for g, s in zip(df.gene, df.symbol)}
    rows += [("resolved_via_alias", f"{e.gene}->{sym[e.gene]}") for e in entries if e.via_alias]
    rows += manual
    rows += [("no_ensembl_id", g) for df in tables.values() for g, x in zip(df.gene, df.ensembl_id) if not x]
    return pd.DataFrame(rows, columns=["key", "value"])


def write_tsv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, sep="\t", index=False, lineterminator="\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    db_path = Path(args.db)
    if not db_path.is_file():
        die(f"{db_path} not found; apt-get install {DEBIAN_PACKAGE}")
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
        db, metadata = load_db(con), read_metadata(con)
    ctra, markers = make_entries(CTRA_GROUPS, db), make_entries(MARKER_GROUPS, db)
    aliases, manual = alias_sets(ctra + markers, db)
    tables = {"ctra53.tsv": gene_table(ctra, aliases, db), "leukocyte_markers.tsv": gene_table(markers, aliases, db)}
    check_tables(list(tables.values()))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        write_tsv(df, args.out_dir / name)
    write_tsv(source_rows(db_path, ctra + markers, manual, metadata, tables), args.out_dir / "SOURCE.tsv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
