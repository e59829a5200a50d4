"""The as-published per-gene test (model ``per_gene_t``): the one-sample t over the direction-signed
per-gene coefficients of Fredrickson et al. 2013 PNAS, as Brown et al. 2014 PNAS describe it in their
critique.

Each used gene's term of the score (``ctra.scoring.score_terms``: its direction-signed z for ``ctra``,
its unsigned z for a subscore) is fitted on the main model's design (its own REML fit, or least
squares with one draw per participant), each contrast's per-gene coefficients are averaged, and the
mean is tested with a one-sample t over genes (df = genes - 1). With least squares the mean of the
per-gene coefficients is exactly the composite score's coefficient; only the SE differs. It is not the
Cole lab's bootstrap, which resampled residual vectors and so keeps the correlation between the genes;
ctra does not claim the two give the same answer.

It is deliberately anti-conservative and never the primary endpoint: it treats genes as independent
replicates, but the genes are correlated within a person and participants are the unit (Brown et al.
2014 PNAS; Walker 2016 PeerJ). ctra reports it so that a lab can reproduce a published number and
show, beside it, how the honest tests judge the same data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import DesignSettings
from ..genesets import set_genes
from ..scoring import score_terms, zscore
from .mixed import SCORES, contrast_rows, contrast_specs, fit_reml_batch
from ..design import study_design

NOTE = (
    "as published (per-gene regressions, one-sample t over genes, df = genes - 1): anti-conservative, "
    "since the genes are correlated within a person and participants, not genes, are the unit"
)


def per_gene_table(adata, usage: pd.DataFrame, design, scores: tuple[str, ...] = SCORES) -> pd.DataFrame:
    """Contrast rows (model per_gene_t) for each score with at least two used genes."""
    specs = contrast_specs(design)
    L = np.array([s.vector for s in specs])
    used = set_genes(usage)
    z = zscore(np.asarray(adata[:, used["gene"].tolist()].layers["vst"], dtype=float))
    tables = []
    for score in scores:
        terms = score_terms(z, used["direction"].to_numpy(float), used["group"].to_numpy(), score)
        k = terms.shape[1]
        if k < 2:
            continue
        beta, _ = fit_reml_batch(design, terms)
        per_gene = beta @ L.T  # genes x contrasts
        se = per_gene.std(axis=0, ddof=1) / np.sqrt(k)
        table = contrast_rows(design, specs, per_gene.mean(axis=0), se, np.full(len(specs), float(k - 1)))
        table.insert(0, "score", score)
        table.insert(1, "model", "per_gene_t")
        table["note"] = NOTE
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def fit(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: DesignSettings) -> pd.DataFrame:
    """The registry's fit (``ctra.models.OTHER_MODELS``): ``per_gene_table`` on the main model's design."""
    design, _ = study_design(adata, usage, settings)
    return per_gene_table(adata, usage, design)
