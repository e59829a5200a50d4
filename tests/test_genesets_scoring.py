"""Gene-id matching and the CTRA score arithmetic, against hand-worked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import GENE_SETS
from ctra.errors import InputError
from ctra.genesets import SCORE_NAMES, id_kind, load_gene_set, match_genes, strip_version
from ctra.scoring import compute_scores, score_terms, zscore


@pytest.fixture(scope="module")
def ctra53() -> pd.DataFrame:
    return load_gene_set(GENE_SETS / "ctra53.tsv")


def test_old_symbols_map_to_the_set_names(ctra53):
    ids = pd.Index(["IL8", "IGJ", "IGLL3P", "IFIT1B", "GAPDH"])
    match = match_genes(ids, ctra53, "counts.tsv")
    assert match.rows_for_gene["CXCL8"] == ["IL8"]
    assert match.rows_for_gene["JCHAIN"] == ["IGJ"]
    assert match.rows_for_gene["IGLL3P"] == ["IGLL3P"]
    assert "GAPDH" not in match.gene_for_row


def test_alias_and_current_symbol_rows_are_both_claimed_for_merging(ctra53):
    match = match_genes(pd.Index(["CXCL8", "IL8", "TNF"]), ctra53, "counts.tsv")
    assert match.rows_for_gene["CXCL8"] == ["CXCL8", "IL8"]


def test_symbols_match_case_insensitively(ctra53):
    assert match_genes(pd.Index(["il1b"]), ctra53, "x").rows_for_gene["IL1B"] == ["il1b"]


def test_ensembl_ids_with_version_suffix_match(ctra53):
    match = match_genes(pd.Index(["ENSG00000125538.12", "ENSG00000000003.15"]), ctra53, "counts.tsv")
    assert match.kind == "ensembl"
    assert match.rows_for_gene["IL1B"] == ["ENSG00000125538.12"]
    assert strip_version("ENSG00000125538.12") == "ENSG00000125538"


def test_mixed_ensembl_and_symbols_is_refused():
    with pytest.raises(InputError, match="counts.tsv: gene ids mix Ensembl ids"):
        id_kind(pd.Index(["ENSG00000125538", "IL6"]), "counts.tsv")


def test_gene_set_file_with_bad_direction_names_the_line(tmp_path):
    path = tmp_path / "set.tsv"
    path.write_text("gene\tgroup\tdirection\nIL6\tinflammatory\tup\n")
    with pytest.raises(InputError, match=r"set.tsv: line 2, column 'direction'"):
        load_gene_set(path)


def test_zscore_uses_sample_sd_like_scipy():
    values = np.random.default_rng(0).normal(size=(9, 4))
    assert np.allclose(zscore(values), stats.zscore(values, axis=0, ddof=1))


def test_scores_by_hand():
    # two genes, three samples; gene 1 up-weighted (+1), gene 2 sign-inverted (-1)
    vst = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 10.0]])
    z1 = np.array([-1.0, 0.0, 1.0])  # mean 2, sd 1
    z2 = (vst[:, 1] - 7.0) / np.sqrt(7.0)  # mean 7, var ((4+1+9)/2) = 7
    scores = compute_scores(vst, np.array([1.0, -1.0]), np.array(["inflammatory", "antiviral"]))
    assert np.allclose(scores["ctra"], (z1 - z2) / 2)
    assert np.allclose(scores["inflammatory"], z1)
    assert np.allclose(scores["antiviral"], z2)  # unsigned: antiviral up means CTRA down
    assert scores["antibody"].isna().all()
    assert (scores["n_genes"] == 2).all()


def test_gene_summaries_apply_the_expression_rule_gene_by_gene():
    """Blockwise summaries equal the rule written out per gene with the standard library."""
    import statistics

    import anndata as ad

    from ctra.scoring import gene_summaries

    rng = np.random.default_rng(8)
    counts = rng.poisson(rng.gamma(0.6, 3.0, 23), (10, 23)).astype(float)
    counts[:, 4] = 7.0
    factors = rng.uniform(0.5, 2.0, 10)
    vst = np.log2(counts / factors[:, None] + 1)
    vst[:, 4] = 3.0  # expressed, but a constant VST: not used
    counts[:, 7] = np.where(np.arange(10) < 6, 2.0 * factors, 0.0)  # normalized count exactly 2 in 60 %
    vst[:, 7] = np.log2(counts[:, 7] / factors + 1)
    adata = ad.AnnData(
        obs=pd.DataFrame({"size_factor": factors}, index=[f"s{i}" for i in range(10)]),
        layers={"counts": counts, "vst": vst},
    )
    got = gene_summaries(adata, min_count=2, min_fraction=0.6, block_genes=5)
    for j in range(23):
        normed = [c / f for c, f in zip(counts[:, j], factors)]
        expected = sum(v >= 2 for v in normed) / 10 >= 0.6 and statistics.pstdev(vst[:, j]) > 0
        assert bool(got["expressed"].iloc[j]) == expected, j
        assert got["vst_mean"].iloc[j] == pytest.approx(statistics.fmean(vst[:, j]))
        assert got["vst_var"].iloc[j] == pytest.approx(statistics.variance(vst[:, j]))
    assert not got["expressed"].iloc[4] and got["expressed"].iloc[7] and 0 < got["expressed"].sum() < 23


def test_ensembl_first_then_symbol_fallback(ctra53):
    ids = pd.Index(["ENSG00000125538.12", "ENSG99999999999.1", "ENSG99999999998.1", "ENSG99999999997.1"])
    symbols = ["IL1B", "IGLL3", "IL1B", "IL8"]  # IL1B again on another row: not taken, IL1B found by id
    match = match_genes(ids, ctra53, "salmon.tsv", symbols, "symbol")
    assert match.rows_for_gene["IL1B"] == ["ENSG00000125538.12"] and match.matched_by["IL1B"] == "ensembl_id"
    assert match.rows_for_gene["IGLL3P"] == ["ENSG99999999999.1"] and match.matched_by["IGLL3P"] == "symbol"
    assert match.rows_for_gene["CXCL8"] == ["ENSG99999999997.1"] and match.matched_by["CXCL8"] == "symbol"
    assert "ENSG99999999998.1" not in match.gene_for_row


def test_symbol_table_with_an_ensembl_column_matches_ensembl_first(ctra53):
    ids = pd.Index(["il1b_old_name", "IGLL3"])
    match = match_genes(ids, ctra53, "t.tsv", ["ENSG00000125538.3", ""], "ensembl")
    assert match.matched_by == {"IL1B": "ensembl_id", "IGLL3P": "symbol"}


def test_gencode_par_y_ids_are_ensembl_but_not_the_chrx_gene():
    assert id_kind(pd.Index(["ENSG00000002586.20", "ENSG00000002586.20_PAR_Y"]), "x") == "ensembl"
    assert strip_version("ENSG00000002586.20_PAR_Y") == "ENSG00000002586_PAR_Y"
    assert strip_version("ENSG00000002586_PAR_Y") == "ENSG00000002586_PAR_Y"


def test_the_null_scores_the_real_set_as_scores_tsv(register_toy_method):
    """The random-gene-set null scores a set by the same function as the score stage: given the real
    set's own genes it reproduces the score stage's table (scores.tsv) exactly."""
    import anndata as ad

    from conftest import REPO
    from ctra.genesets import set_genes
    from ctra.safeguards import random_set_scores
    from ctra.scoring import SCORE_COLUMNS, score_study

    rng = np.random.default_rng(4)
    genes = load_gene_set(REPO / "resources" / "gene_sets" / "ctra53.tsv")
    names = [*genes["gene"], *(f"other{j}" for j in range(20))]
    obs = pd.DataFrame(
        {"participant": [f"p{i // 2}" for i in range(30)], "arm": "a", "time": ["pre", "post"] * 15},
        index=[f"s{i}" for i in range(30)],
    )
    adata = ad.AnnData(obs=obs, var=pd.DataFrame(index=names), layers={"vst": rng.normal(8, 1, (30, len(names)))})
    usage = genes[["gene", "group", "direction"]].assign(used=rng.random(len(genes)) > 0.2)
    usage = pd.concat(
        [usage, pd.DataFrame({"gene": ["PTPRC"], "group": ["marker"], "direction": [1], "used": [True]})],
        ignore_index=True,
    )
    used = set_genes(usage)
    picks = adata.var_names.get_indexer(used["gene"])[None, :]
    for method in ("mean_z", "median_z"):  # the shipped method, and one registered here
        null = random_set_scores(adata, picks, used.reset_index(drop=True), method)
        table = score_study(adata, usage, method)
        for score in SCORE_COLUMNS:
            np.testing.assert_array_equal(null[score][:, 0], table[score].to_numpy())
    assert not np.allclose(table["ctra"], score_study(adata, usage)["ctra"])  # the registered method was used


def median_z(vst, directions, groups):
    """The README's example of a new score method (Developing ctra), registered by the fixture below."""
    z = zscore(vst)
    return {score: np.median(score_terms(z, directions, groups, score), axis=1) for score in SCORE_NAMES}


@pytest.fixture
def register_toy_method(monkeypatch):
    from ctra import scoring

    monkeypatch.setitem(scoring.SCORE_METHODS, "median_z", median_z)


def test_schema_offers_exactly_the_registered_score_methods():
    import yaml

    from conftest import REPO
    from ctra.scoring import DEFAULT_SCORE_METHOD, SCORE_METHODS

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    study = schema["properties"]["studies"]["additionalProperties"]["properties"]
    assert study["score_method"]["enum"] == list(SCORE_METHODS)
    assert study["score_method"]["default"] == DEFAULT_SCORE_METHOD
