"""Checks of resources/gene_sets against independently known facts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
GS = ROOT / "resources" / "gene_sets"
DB = Path("/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite")
COLUMNS = ["gene", "group", "direction", "symbol", "ensembl_id", "entrez_id", "aliases"]

INFLAMMATORY = (
    "IL1A IL1B IL6 CXCL8 TNF PTGS1 PTGS2 FOS FOSB FOSL1 FOSL2 JUN JUNB JUND NFKB1 NFKB2 REL RELA RELB"
).split()
ANTIVIRAL = (
    "GBP1 IFI16 IFI27 IFI27L1 IFI27L2 IFI30 IFI35 IFI44 IFI44L IFI6 IFIH1 IFIT1 "
    "IFIT2 IFIT3 IFIT5 IFIT1B IFITM1 IFITM2 IFITM3 IFITM4P IFITM5 IFNB1 IRF2 IRF7 "
    "IRF8 MX1 MX2 OAS1 OAS2 OAS3 OASL"
).split()
ANTIBODY = ["JCHAIN", "IGLL1", "IGLL3P"]
MARKERS = ["CD3D", "CD3E", "CD4", "CD8A", "CD19", "FCGR3A", "NCAM1", "CD14"]


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(GS / name, sep="\t", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def ctra() -> pd.DataFrame:
    return load("ctra53.tsv")


@pytest.fixture(scope="module")
def markers() -> pd.DataFrame:
    return load("leukocyte_markers.tsv")


def aliases(df: pd.DataFrame, gene: str) -> set[str]:
    value = df.loc[df.gene == gene, "aliases"].item()
    return {a for a in value.split(";") if a}


def test_columns(ctra, markers):
    assert list(ctra.columns) == COLUMNS
    assert list(markers.columns) == COLUMNS


def test_ctra_rows_groups_directions_order(ctra):
    assert len(ctra) == 53
    assert ctra.group.value_counts().to_dict() == {"antiviral": 31, "inflammatory": 19, "antibody": 3}
    expected_dir = {"inflammatory": "1", "antiviral": "-1", "antibody": "-1"}
    assert (ctra.direction == ctra.group.map(expected_dir)).all()
    assert ctra.gene.tolist() == INFLAMMATORY + ANTIVIRAL + ANTIBODY
    assert ctra[ctra.group == "antibody"].gene.tolist() == ANTIBODY


def test_marker_file(markers):
    assert markers.gene.tolist() == MARKERS
    assert (markers.group == "marker").all() and (markers.direction == "1").all()


def test_ensembl_ids_well_formed(ctra, markers):
    both = pd.concat([ctra, markers])
    for gene, ids in zip(both.gene, both.ensembl_id):
        if gene == "IGLL3P" and not ids:  # pseudogene without an Ensembl gene in the db
            continue
        for part in ids.split(";"):
            assert re.fullmatch(r"ENSG\d{11}", part), (gene, part)


def test_entrez_ids_numeric_unique(ctra, markers):
    both = pd.concat([ctra, markers])
    assert both.entrez_id.str.fullmatch(r"\d+").all()
    assert both.entrez_id.is_unique


def test_aliases_do_not_shadow_genes_or_symbols(ctra, markers):
    both = pd.concat([ctra, markers])
    genes = set(both.gene)
    for gene, symbol, value in zip(both.gene, both.symbol, both.aliases):
        al = {a for a in value.split(";") if a}
        assert al == {a.upper() for a in al}, gene
        assert not al & genes, gene
        other_symbols = set(both.symbol[both.gene != gene])
        assert not al & other_symbols, gene
        if symbol == gene:  # the own symbol is listed only when it differs from gene
            assert symbol not in al, gene
    names = [n for g, v in zip(both.gene, both.aliases) for n in [g] + [a for a in v.split(";") if a]]
    assert len(names) == len(set(names)), "a name resolves to two rows"


def test_known_facts(ctra, markers):
    assert "IL8" in aliases(ctra, "CXCL8")
    assert "IGJ" in aliases(ctra, "JCHAIN")
    assert "IGLL3" in aliases(ctra, "IGLL3P")
    assert "IFIT1L" in aliases(ctra, "IFIT1B")
    ens = dict(zip(ctra.gene, ctra.ensembl_id))
    assert ens["IL1B"] == "ENSG00000125538"
    assert "ENSG00000232810" in ens["TNF"].split(";")
    assert markers.loc[markers.gene == "CD14", "entrez_id"].item() == "929"
    assert ctra.loc[ctra.gene == "TNF", "entrez_id"].item() == "7124"


@pytest.mark.parametrize("name", ["IGJ", "IGLL3P", "IFIT1B"])
def test_whole_blood_row_names_resolve(ctra, name):
    hits = ctra[(ctra.gene == name) | ctra.aliases.str.split(";").apply(lambda a: name in a)]
    assert len(hits) == 1


def test_source_records_provenance():
    src = load("SOURCE.tsv")
    keys = set(src.key)
    assert {
        "db_path",
        "debian_package_version",
        "metadata:EGSOURCEDATE",
        "metadata:DBSCHEMAVERSION",
        "metadata:ENSOURCEDATE",
    } <= keys


@pytest.mark.skipif(
    not DB.is_file(),
    reason=f"org.Hs.eg.db not installed ({DB}); apt-get install r-bioc-org.hs.eg.db to check the rebuild",
)
def test_rebuild_is_byte_identical(tmp_path):
    script = GS / "build_gene_sets.py"
    subprocess.run([sys.executable, str(script), "--db", str(DB), "--out-dir", str(tmp_path)], check=True)
    for name in ["ctra53.tsv", "leukocyte_markers.tsv", "SOURCE.tsv"]:
        assert (tmp_path / name).read_bytes() == (GS / name).read_bytes(), name
