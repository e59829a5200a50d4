"""Sensitivity refits: the main model without covariates, without markers, and without both."""

from __future__ import annotations

import pandas as pd

from ..config import DesignSettings
from .mixed import fit_scores
from ..design import marker_decision, study_design

# (model name, keep covariates, keep markers), in the order of contrasts.tsv
VARIANTS = (("lmm_no_covariates", False, True), ("lmm_no_markers", True, False), ("lmm_unadjusted", False, False))


def refit(
    adata,
    scores: pd.DataFrame,
    usage: pd.DataFrame,
    settings: DesignSettings,
    *,
    name: str,
    covariates: bool,
    markers: bool,
) -> pd.DataFrame:
    """The main model's contrast rows (model ``name``) without the covariates and/or markers; empty when
    the study has none of what is left out (nothing to compare)."""
    has_covariates = bool(settings.covariates)
    has_markers = bool(marker_decision(adata, usage, settings)[0])
    if (not covariates and not has_covariates) or (not markers and not has_markers):
        return pd.DataFrame()
    design, _ = study_design(adata, usage, settings, covariates=covariates, markers=markers)
    return fit_scores(design, scores, name)[0]


def sensitivity_table(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: DesignSettings) -> pd.DataFrame:
    """The main model refitted without covariates, without markers, and without both (when configured)."""
    tables = [
        refit(adata, scores, usage, settings, name=name, covariates=covariates, markers=markers)
        for name, covariates, markers in VARIANTS
    ]
    tables = [table for table in tables if len(table)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
