"""The models ctra fits, and the registry of the models beside the main one.

* ``mixed``: the main model (``lmm``), REML with Satterthwaite df, per score and per gene; the contrasts
  and the one contrast-row builder (``contrast_table``), on the study's design (``ctra.design``);
* ``gls``: GLS with the variance components held fixed (whitening by participant block), for the
  safeguards' thousands of closed-form refits;
* ``gee``: the gene-level GEE (``gee_genes``);
* ``sensitivity``: the main model without covariates and/or markers;
* ``per_gene_t``: the as-published per-gene regressions with a one-sample t over genes
  (anti-conservative, shown beside the honest tests);
* ``association``: the terms of association studies (predictors, one draw or several per participant)
  and their Freedman-Lane permutations.

``OTHER_MODELS`` lists the models whose rows follow the main model's in contrasts.tsv, in that order:
its name (the ``model`` column), its fit (``adata, scores, usage, DesignSettings -> contrast rows``,
empty when it does not apply to the study) and how the report names it. Adding a model is one module
with such a fit and one line here (README, "Developing ctra").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import pandas as pd

from ..config import DesignSettings
from . import gee, per_gene_t, sensitivity

MAIN_MODEL = "lmm"


@dataclass(frozen=True)
class Model:
    name: str  # the `model` column of contrasts.tsv
    fit: Callable[..., pd.DataFrame]
    label: str  # how the report names it


OTHER_MODELS = (
    Model("gee_genes", gee.fit, "Gene-level GEE (exchangeable, bias-reduced sandwich SE, t reference)"),
    *(
        Model(name, partial(sensitivity.refit, name=name, covariates=covariates, markers=markers), label)
        for (name, covariates, markers), label in zip(
            sensitivity.VARIANTS, ("Without covariates", "Without cell markers", "Without covariates or markers")
        )
    ),
    Model(
        "per_gene_t", per_gene_t.fit, "Per-gene regressions, one-sample t over genes (as published; anti-conservative)"
    ),
)


def fit_other_models(adata, scores: pd.DataFrame, usage: pd.DataFrame, settings: DesignSettings) -> pd.DataFrame:
    """The contrast rows of every model in ``OTHER_MODELS``, in its order."""
    tables = [model.fit(adata, scores, usage, settings) for model in OTHER_MODELS]
    tables = [table for table in tables if len(table)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
