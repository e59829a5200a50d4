"""The gene-level GEE (model ``gee_genes``): the multivariate model of the Cole lab.

In long format over the used genes, ``z ~ gene + arm * time + covariates [+ markers]``, GEE with
exchangeable correlation within participant, bias-reduced (Mancl-DeRouen) sandwich covariance and a
t reference on participants - fixed effects df (every column of the sample-level design, those that
vary within participants too, such as time and arm x time; not the per-gene intercepts); not fitted
below ``MIN_GEE_PARTICIPANTS`` participants or ``MIN_GEE_DF`` df. With one draw per participant every
gene of a cluster has the same design row, so the estimate is the composite score's OLS estimate; only
the SE (the bias-reduced sandwich, robust to heteroscedasticity) differs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..genesets import set_genes
from ..scoring import score_terms, zscore
from ..config import DesignSettings
from .mixed import SCORES, contrast_rows, contrast_specs
from ..design import Design, study_design

MIN_GEE_PARTICIPANTS = 10  # below this a sandwich covariance is not trusted, corrected or not
MIN_GEE_DF = 4  # participants - fixed effects; the t reference needs a few df


def gene_long_format(
    adata, usage: pd.DataFrame, design: Design, score: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Response, design and groups for the long-format gene model of one score.

    The response is the score's per-gene terms (``ctra.scoring.score_terms``, whose mean is the
    score): for ``ctra`` every used gene's direction-signed z, for a subscore its group's genes'
    unsigned z. Rows are ordered by participant, then sample, then gene (as geepack expects clusters
    contiguous).
    """
    used = set_genes(usage, score)
    z = score_terms(
        zscore(np.asarray(adata[:, used["gene"].tolist()].layers["vst"], dtype=float)),
        used["direction"].to_numpy(float),
        used["group"].to_numpy(),
        score,
    )
    n, k = z.shape
    order = np.lexsort((np.arange(n), design.participant))
    sample = np.repeat(order, k)
    gene = np.tile(np.arange(k), n)
    dummies = np.zeros((n * k, k - 1))
    rows = np.flatnonzero(gene > 0)
    dummies[rows, gene[rows] - 1] = 1.0
    exog = np.hstack([design.X[sample], dummies])
    names = design.columns + [f"gene[T.{g}]" for g in used["gene"].iloc[1:]]
    return z[sample, gene], exog, design.participant[sample], names


def fit_gene_gee(adata, usage: pd.DataFrame, design: Design, score: str = "ctra", cov_type: str = "bias_reduced"):
    """statsmodels GEE (Gaussian, exchangeable) of the long-format gene model.

    ``cov_type="bias_reduced"`` also computes the Mancl-DeRouen covariance (``cov_robust_bc``);
    the plain sandwich (``cov_robust``) is there either way (and is what geepack reports).
    """
    # imported here, and only the GEE module (statsmodels.api takes seconds to import)
    from statsmodels.genmod.cov_struct import Exchangeable
    from statsmodels.genmod.families import Gaussian
    from statsmodels.genmod.generalized_estimating_equations import GEE

    endog, exog, groups, names = gene_long_format(adata, usage, design, score)
    model = GEE(endog, exog, groups=groups, cov_struct=Exchangeable(), family=Gaussian())
    # start from least squares by the normal equations: the same solution as statsmodels' own start
    # (a GLM fit of the long table), without its SVDs
    start = np.linalg.solve(exog.T @ exog, exog.T @ endog)
    result = model.fit(maxiter=100, ddof_scale=0, start_params=start, cov_type=cov_type)  # scale, alpha over N
    return result, names


def gee_df(design: Design) -> int:
    """Reference df of the GEE's t: participants (clusters) minus every column of the sample-level
    design (intercept, arm, time, arm x time, covariates, markers: also the columns that vary within
    participants, so conservative in multi-draw designs; the per-gene intercepts are not counted, as
    they are estimated from every participant's many genes)."""
    return int(design.participant.max() + 1 - design.X.shape[1])


def gee_table(adata, usage: pd.DataFrame, design: Design, scores: tuple[str, ...] = SCORES) -> pd.DataFrame:
    """Contrast rows (model gee_genes) for each score with at least two genes: bias-reduced sandwich
    SE, t reference on ``gee_df`` df. Too few participants or df: the rows are kept, empty, with the
    reason in ``note``."""
    specs = contrast_specs(design)
    people, df = design.participant.max() + 1, gee_df(design)
    skip = ""
    if people < MIN_GEE_PARTICIPANTS:
        skip = (
            f"GEE not fitted: {people} participants, fewer than {MIN_GEE_PARTICIPANTS} (a sandwich covariance "
            "needs many participants)"
        )
    elif df < MIN_GEE_DF:
        skip = (
            f"GEE not fitted: {people} participants - {design.X.shape[1]} fixed effects = {df} df, fewer than "
            f"{MIN_GEE_DF} (drop covariates or markers)"
        )
    tables = []
    for score in scores:
        if len(set_genes(usage, score)) < 2:
            continue
        estimate = se = np.full(len(specs), np.nan)
        note = np.full(len(specs), skip, dtype=object)
        if not skip:
            result, names = fit_gene_gee(adata, usage, design, score)
            L = np.array([np.concatenate([s.vector, np.zeros(len(names) - len(s.vector))]) for s in specs])
            estimate = L @ result.params
            with np.errstate(invalid="ignore"):
                se = np.sqrt(np.einsum("cp,pq,cq->c", L, result.cov_robust_bc, L))
            note[~np.isfinite(se)] = "GEE not estimable: the bias-reduced covariance is degenerate"
        table = contrast_rows(design, specs, estimate, se, np.full(len(specs), np.nan if skip else float(df)))
        table.insert(0, "score", score)
        table.insert(1, "model", "gee_genes")
        table["note"] = note
        tables.append(table)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def fit(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: DesignSettings) -> pd.DataFrame:
    """The registry's fit (``ctra.models.OTHER_MODELS``): ``gee_table`` on the main model's design."""
    design, _ = study_design(adata, usage, settings)
    return gee_table(adata, usage, design)
