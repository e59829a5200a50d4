"""CTRA scores: per-gene z-scores of the VST, direction-signed and averaged.

Rule for a gene to be *used* (documented in the README and reported per gene in
``genes_used.tsv``): it is present in the input and, for count input, it is expressed, meaning a
normalized count of at least ``min_count`` in at least ``min_fraction`` of the samples; and its VST
is not constant. Each gene is z-scored over all samples of the study (ddof = 1). ``ctra`` is the
mean of the direction-signed z-scores of the used genes; each subscore is the unsigned mean z of its
group, so a rise in ``antiviral`` lowers ``ctra``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from .genesets import SCORE_NAMES, set_genes

if TYPE_CHECKING:
    import anndata as ad

SCORE_COLUMNS = SCORE_NAMES


def usage_table(
    adata: ad.AnnData, gene_table: pd.DataFrame, min_count: float = 1.0, min_fraction: float = 0.5
) -> pd.DataFrame:
    """One row per gene of the set (and markers): used or not, the input id(s) matched, by which id
    (``matched_by``: ``ensembl_id`` or ``symbol``), and why not."""
    rows = []
    has_counts = "counts" in adata.layers
    for record in gene_table.itertuples(index=False):
        row = {
            "gene": record.gene,
            "group": record.group,
            "direction": record.direction,
            "used": False,
            "matched_id": "",
            "matched_by": "",
            "reason": "",
        }
        if record.gene not in adata.var_names:
            row["reason"] = "absent from input"
        else:
            j = adata.var_names.get_loc(record.gene)
            row["matched_id"] = adata.var["input_ids"].iloc[j]
            if "matched_by" in adata.var:
                row["matched_by"] = adata.var["matched_by"].iloc[j]
            row["reason"] = _unused_reason(adata, j, has_counts, min_count, min_fraction)
            row["used"] = row["reason"] == ""
        rows.append(row)
    return pd.DataFrame(rows)


def gene_summaries(
    adata: ad.AnnData, min_count: float = 1.0, min_fraction: float = 0.5, block_genes: int = 2048
) -> pd.DataFrame:
    """Per gene (index = var_names): ``expressed`` (the rule above, less the set membership),
    ``vst_mean`` and ``vst_var`` (ddof = 1).

    Computed once, in the normalize stage, and stored in ``var`` so that later stages can pick the
    random-gene-set pool, its expression deciles and the most variable genes without loading every
    gene. Blocks of genes keep the temporaries small.
    """
    vst = adata.layers["vst"]
    counts = adata.layers["counts"] if "counts" in adata.layers else None
    factors = adata.obs["size_factor"].to_numpy(dtype=float)[:, None] if counts is not None else None
    n_genes = adata.n_vars
    expressed, mean, var = np.empty(n_genes, bool), np.empty(n_genes), np.empty(n_genes)
    for start in range(0, n_genes, block_genes):
        genes = slice(start, min(start + block_genes, n_genes))
        block = np.asarray(vst[:, genes], dtype=np.float64)
        mean[genes] = block.mean(axis=0)
        var[genes] = block.var(axis=0, ddof=1) if len(block) > 1 else np.nan
        expressed[genes] = np.nanstd(block, axis=0) > 0
        if counts is not None:
            normed = np.asarray(counts[:, genes], dtype=np.float64) / factors
            expressed[genes] &= (normed >= min_count).mean(axis=0) >= min_fraction
    return pd.DataFrame({"expressed": expressed, "vst_mean": mean, "vst_var": var}, index=adata.var_names)


def _unused_reason(adata: ad.AnnData, j: int, has_counts: bool, min_count: float, min_fraction: float) -> str:
    if has_counts:
        normed = adata.layers["counts"][:, j] / adata.obs["size_factor"].to_numpy()
        fraction = float(np.mean(normed >= min_count))
        if fraction < min_fraction:
            return (
                f"not expressed: normalized count >= {min_count:g} in {fraction:.0%} of samples "
                f"(< {min_fraction:.0%} required)"
            )
    vst = adata.layers["vst"][:, j]
    if np.nanstd(vst) == 0:
        return "constant across samples"
    return ""


def zscore(values: np.ndarray) -> np.ndarray:
    """Column-wise z-scores over samples (ddof = 1)."""
    return (values - values.mean(axis=0)) / values.std(axis=0, ddof=1)


def score_terms(z: np.ndarray, directions: np.ndarray, groups: np.ndarray, score: str) -> np.ndarray:
    """The per-gene terms (samples x genes) whose mean over genes is ``score``, from the z-scores of a
    gene set: the direction-signed z of every gene for ``ctra``, the unsigned z of the group's genes
    for a subscore. The gene-level GEE models these terms, ``set_scores`` averages them."""
    if score == "ctra":
        return z * directions
    return z[:, groups == score]


def set_scores(vst: np.ndarray, directions: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """The CTRA score and its subscores per sample from the VST of a gene set (samples x genes): the
    one definition used for ``scores.tsv`` and for every random gene set of the safeguards.

    ``ctra`` is the mean of the direction-signed z-scores; each subscore the unsigned mean z of its
    group, NaN when the group has no gene.
    """
    z = zscore(vst)
    scores = {}
    for score in SCORE_NAMES:
        terms = score_terms(z, directions, groups, score)
        scores[score] = terms.mean(axis=1) if terms.shape[1] else np.full(len(z), np.nan)
    return scores


# The config's `score_method` choices (workflow/schemas/config.schema.yaml lists the same names): each scores
# the VST of a gene set (samples x genes) from its directions and groups, one array per score name. The score
# stage and the random-gene-set null both look the study's method up here, so they always score alike.
ScoreMethod = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]
SCORE_METHODS: dict[str, ScoreMethod] = {"mean_z": set_scores}
DEFAULT_SCORE_METHOD = "mean_z"


def compute_scores(
    vst: np.ndarray, directions: np.ndarray, groups: np.ndarray, method: str = DEFAULT_SCORE_METHOD
) -> pd.DataFrame:
    """The scores of ``method`` as a table, with the number of genes scored."""
    frame = pd.DataFrame(SCORE_METHODS[method](vst, directions, groups))
    frame["n_genes"] = vst.shape[1]
    return frame


def score_study(adata: ad.AnnData, usage: pd.DataFrame, method: str = DEFAULT_SCORE_METHOD) -> pd.DataFrame:
    """The scores.tsv table: sample, participant, arm, time, [period], scores, n_genes."""
    used = set_genes(usage)
    vst = adata[:, used["gene"].tolist()].layers["vst"]
    scores = compute_scores(
        np.asarray(vst, dtype=np.float64),
        used["direction"].to_numpy(dtype=float),
        used["group"].to_numpy(),
        method,
    )
    design = ["participant", "arm", "time", *(["period"] if "period" in adata.obs else [])]
    table = adata.obs[design].reset_index(names="sample")
    return pd.concat([table, scores], axis=1)
